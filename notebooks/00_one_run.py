# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python (glitchlib)
#     language: python
#     name: glitchlib
# ---

# %% [markdown]
# # One run, step by step
#
# This chapter follows one experiment of the paper from the raw data to the F1
# score of every signal, calling the library's primitives one at a time: inject
# glitches, compute the frozen backbone's features, train the head with one
# checkpoint per epoch, compute the TracIn matrices, then each signal by name.
# Nothing here reads the results store or the report helpers; the later chapters
# run the same steps through `glitchlib.experiments.run` for every seed and
# dataset.
#
# The defaults are student-sized: about 1,000 training samples of the embedded
# Fashion-MNIST subset, 10 % class-based label noise, seed 0, the frozen
# ImageNet-pretrained EfficientNet-Lite0 backbone and a new linear head. On a
# laptop CPU the whole page runs in about a minute.

# %% tags=["parameters"]
dataset = "fmnist"  # mnist or fmnist (the embedded subsets)
model_name = "efficientnet_lite0"  # a registry name of glitchlib.models.create
n_train = 1000  # training samples drawn (stratified) from the 6,000 embedded ones
n_test = 300  # clean validation samples drawn from the 1,000 embedded ones
ratio = 0.1  # share of every class relabelled to its target class
seed = 0  # fixes the draw, the noise, the head's initialisation and the batch order
results_dir = "results"  # only its features/ folder is used, as a cache of backbone outputs

# %% [markdown]
# We import the library and the plotting tools.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown

import glitchlib as g

# %% [markdown]
# ## The data
#
# The embedded subset holds 6,000 training and 1,000 validation images, normalised
# to $[-1, 1]$. We draw a stratified sample of each with the seed.

# %%
data = g.data.load(dataset)
train_idx = g.data.stratified_indices(data.y_train.numpy(), fraction=n_train / len(data.y_train), seed=seed)
test_idx = g.data.stratified_indices(data.y_test.numpy(), fraction=n_test / len(data.y_test), seed=seed)
x_train, y_clean = data.x_train[train_idx], data.y_train[train_idx]
x_test, y_test = data.x_test[test_idx], data.y_test[test_idx]
Markdown(f"{len(x_train)} training and {len(x_test)} validation images of shape "
         f"{tuple(x_train.shape[1:])}, {data.n_classes} classes, from `{data.source}`.")

# %% [markdown]
# ## Injecting class-based noise
#
# Every class $c$ gets a random target class $T(c) \ne c$, and
# $\lfloor r \, n_c \rfloor$ of its samples are relabelled $T(c)$ (SPEC section 2).
# The injector returns the dirty labels and the ground truth: the mask of glitched
# samples and their true labels.

# %%
dirty = g.glitches.class_based_noise(y_clean.numpy(), ratio=ratio, seed=seed)
y_train = torch.as_tensor(dirty.y)
pd.DataFrame({"class": data.class_names,
              "relabelled to": [data.class_names[dirty.target_classes[c]] for c in range(data.n_classes)],
              "flipped": np.bincount(dirty.y_true[dirty.mask], minlength=data.n_classes)}).set_index("class").T

# %% [markdown]
# ## Features of the frozen backbone
#
# Only the head is trained, so the backbone's output (1,280 pooled features per
# image for EfficientNet-Lite0) is computed once and cached by content.

# %%
model = g.models.create(model_name, n_classes=data.n_classes, seed=seed)
cache = f"{results_dir}/features"
f_train = g.features.compute_features(model, x_train, cache_dir=cache)
f_test = g.features.compute_features(model, x_test, cache_dir=cache)
Markdown(f"Data: `{data.source}`, seed {seed}. Weights: `{model.weights_id}` (frozen). "
         f"Features: {tuple(f_train.shape)} (training), {tuple(f_test.shape)} (validation); "
         f"influence layers: `{model.influence_layers}`.")

# %% [markdown]
# ## Training with one checkpoint per epoch
#
# Plain SGD with the settings of the training-settings chapter. Each checkpoint
# keeps the weights $w_t$ and the learning rate $\eta_t$ used in its epoch:
# TracIn needs both.

# %%
train_settings = g.settings.training_settings(dataset, model_name)
fit = g.train.fit(model.suffix, f_train, y_train, f_test, y_test, settings=train_settings, seed=seed, progress=False)
fit.history.round(3).set_index("epoch").T

# %% [markdown]
# ## The influence matrix $I$ and self-influence $SI$
#
# With $g_t(z)$ the gradient of the loss of sample $z$ at checkpoint $t$ with
# respect to the influence parameters (SPEC section 3),
#
# $$I[i, j] = \sum_t \eta_t \, \langle g_t(z_i), g_t(z'_j) \rangle, \qquad
#   SI[i] = \sum_t \eta_t \, \lVert g_t(z_i) \rVert^2 .$$
#
# $I[i, j] > 0$ means that training on $z_i$ lowered the loss of validation
# sample $z'_j$. `TracIn` computes both in one pass over the checkpoints.

# %%
engine = g.influence.TracIn(model.suffix, fit.checkpoints, layers=model.influence_layers)
I, SI = engine.train_test_and_self_influence(f_train, y_train, f_test, y_test)
Markdown(f"$I$ is {I.shape[0]} x {I.shape[1]} over {engine.n_checkpoints} checkpoints; "
         f"{(I > 0).float().mean():.0%} of its entries are positive.")

# %% [markdown]
# ## One mislabeled sample, looked at closely
#
# Take the first mislabeled training sample. Its row of $I$ summed over the
# validation samples of each class $c$ splits into a harmful part
# $N_c = \sum_{j \in J_c} \min(I[i,j], 0)$ and a helpful part
# $P_c = \sum_{j \in J_c} \max(I[i,j], 0)$. A mislabeled sample hurts its true class
# most: that class minimises $N_c$.

# %%
i = int(np.flatnonzero(dirty.mask)[0])
row, classes = I[i].numpy(), y_test.numpy()
per_class = pd.DataFrame({"N_c (harm)": [np.minimum(row[classes == c], 0).sum() for c in range(data.n_classes)],
                          "P_c (help)": [np.maximum(row[classes == c], 0).sum() for c in range(data.n_classes)]},
                         index=data.class_names)
Markdown(f"Sample {i}: given label **{data.class_names[dirty.y[i]]}**, "
         f"true label **{data.class_names[dirty.y_true[i]]}**.")

# %% [markdown]
# The per-class sums of its row:

# %%
ax = per_class.plot.bar(figsize=(8, 3), color=["tab:red", "tab:green"])
ax.axhline(0, color="black", lw=0.8)
ax.set_ylabel("sum of I[i, j] over the class")
plt.xticks(rotation=30, ha="right")
plt.tight_layout()

# %% [markdown]
# ## The counterfactual label $c^*$ and the matrix $I^*$
#
# NIL-opt's label $c^*_i = \arg\min_c N_c[i]$ is the class the sample hurts most;
# for a mislabeled sample it is usually its true class, hence a repair suggestion.
# CNCI recomputes the influence at the last checkpoint as if every training sample
# carried its label $c^*$: $I^*[i,j] = \eta_T \langle g_T(z_i, c^*_i), g_T(z'_j)\rangle$.

# %%
c_star = g.signals.counterfactual_labels(I, y_test)
I_star = engine.last_checkpoint().train_test(f_train, torch.as_tensor(c_star), f_test, y_test)
Markdown(f"For sample {i}: $c^*$ = **{data.class_names[c_star[i]]}**. Over all mislabeled samples, "
         f"$c^*$ is the true label for {g.metrics.repair_accuracy(c_star, dirty.y_true, dirty.mask):.0%} of them.")

# %% [markdown]
# The same sample's influence on the validation samples of its *given* class,
# before ($I$, label as given) and after ($I^*$, label $c^*$) the substitution:

# %%
given = classes == dirty.y[i]
rows = pd.DataFrame({"I[i, j]": row[given], "I*[i, j]": I_star[i].numpy()[given]})
rows.describe().loc[["mean", "min", "max"]].round(5)

# %% [markdown]
# ## Every signal, by name
#
# Each signal maps the matrices to one score per training sample, **higher = more
# likely a glitch** (SPEC section 4). We keep them in one table.

# %%
scores = {}

# %% [markdown]
# **SI**, self-influence: $\mathrm{SI}[i]$. Samples the model finds hard to fit
# have large gradients.

# %%
scores["SI"] = g.signals.si(SI)

# %% [markdown]
# **MI**, total influence: $\sum_j I[i,j]$ (higher = helped validation more, so it
# ranks glitches low by construction).

# %%
scores["MI"] = g.signals.mi(I)

# %% [markdown]
# **MAI**, total absolute influence: $\sum_j |I[i,j]|$, and **AAI**, its mean
# $\frac{1}{m}\sum_j |I[i,j]|$.

# %%
scores["MAI"] = g.signals.mai(I)
scores["AAI"] = g.signals.aai(I)

# %% [markdown]
# **MPI**, total positive influence: $\sum_j \max(I[i,j], 0)$.

# %%
scores["MPI"] = g.signals.mpi(I)

# %% [markdown]
# **NIL**, negative influence on the given label's class:
# $-\sum_{j \in J_{y_i}} \min(I[i,j], 0)$.

# %%
scores["NIL"] = g.signals.nil(I, y_train, y_test)

# %% [markdown]
# **NIL-opt**: $-\min_c N_c[i]$, the harm done to the class hurt most.

# %%
scores["NIL-opt"] = g.signals.nil_opt(I, y_train, y_test)

# %% [markdown]
# **#SLIP** and **#SLIN**: the number of validation samples of the given class
# with $I[i,j] > 0$, and with $I[i,j] < 0$.

# %%
scores["#SLIP"] = g.signals.slip(I, y_train, y_test)
scores["#SLIN"] = g.signals.slin(I, y_train, y_test)

# %% [markdown]
# **GD-class**: $-\min_c \sum_{j \in J_c} I[i,j]$.

# %%
scores["GD-class"] = g.signals.gd_class(I, y_train, y_test)

# %% [markdown]
# **CNCI** (the paper's signal for mislabeled samples):
# $\mathrm{CNCI}[i] = \sum_{j \in J_{y_i}} \min(I^*[i,j], 0)$. A correctly labelled
# sample, moved to $c^*$, now harms its own class strongly (very negative); a
# mislabeled one, moved to its true class, barely harms the class of its wrong
# label (near zero, the top of the ranking).

# %%
scores["CNCI"] = g.signals.cnci(I_star, y_train, y_test)

# %% [markdown]
# **PCID** (the paper's signal for anomalies): with $P_c$ as above, $b_i$ the class
# with the second largest $P_c[i]$ and $P^b_c$ the same sums from $I^b$ (labels $b$),
# $\mathrm{PCID}[i] = 1 / (\mathrm{MPI}[i] \cdot \max_c |P_c[i] - P^b_c[i]|)$.
# There are no anomalies in this run, so PCID is shown only for completeness.

# %%
b = g.signals.second_best_labels(I, y_test)
I_b = engine.last_checkpoint().train_test(f_train, torch.as_tensor(b), f_test, y_test)
scores["PCID"] = g.signals.pcid(I, I_b, y_test)

# %% [markdown]
# **CFRank** (mixed glitches): the larger of CNCI's and PCID's ascending ranks.

# %%
scores["CFRank"] = g.signals.cfrank(scores["CNCI"], scores["PCID"])

# %% [markdown]
# ## How well each signal finds the glitches
#
# Flag the $k$ highest-scoring samples, $k$ = the number of injected glitches,
# and compare with the mask: F1 at exactly $k$ (SPEC section 5), with average
# precision and AUROC, which need no $k$.

# %%
table = pd.DataFrame({name: {"F1": g.metrics.detection_f1(s, dirty.mask),
                             "AP": g.metrics.average_precision(s, dirty.mask),
                             "AUROC": g.metrics.auroc(s, dirty.mask)} for name, s in scores.items()}).T
table.sort_values("F1", ascending=False).round(3)

# %% [markdown]
# As a picture, F1 per signal:

# %%
ax = table["F1"].sort_values().plot.barh(figsize=(6, 4), color="tab:blue")
ax.set_xlabel(f"detection F1 at k = {int(dirty.mask.sum())}")
ax.set_xlim(0, 1)
plt.tight_layout()

# %% [markdown]
# Three signals need a remark on this model. The head is linear and the pooled
# features are non-negative, so a sample's gradient on its own class's validation
# samples always points the same way: every same-class influence is $\ge 0$. NIL
# and #SLIN are then 0 for every sample and #SLIP is the class's validation count,
# so their F1 above comes from tie-breaking alone (AP at the glitch ratio, AUROC
# at 0.5). With influence layers that include convolutions (ResNet-20 in the
# `paper` profile, which needs its CIFAR-10 weights) they would carry information.
#
# The later chapters repeat these steps for every seed and both datasets through
# `glitchlib.experiments.run`, which stores each step's output so that nothing is
# computed twice.
