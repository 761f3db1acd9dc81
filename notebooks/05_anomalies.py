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
# # Anomalies
#
# Here the glitches are images that belong to no class: 10 % more images, all
# from one class of another dataset (Fashion-MNIST clothes among MNIST digits,
# digits among clothes), all carrying one random label, are appended to the
# training set. PCID is the paper's signal for them: an anomaly helps no class
# much (small MPI), and changing its label to the second-best class changes
# little, so $\mathrm{PCID} = 1 / (\mathrm{MPI} \cdot \text{distance})$ is large.

# %% tags=["parameters"]
profile = "embedded"  # embedded, paper, tiny, or a profile YAML file
results_dir = "results"  # the results store
compute_missing = True  # compute missing runs (slow on a CPU)

# %% [markdown]
# We load the library.

# %%
import numpy as np
import seaborn as sns
from IPython.display import Markdown

import glitchlib as g
from glitchlib import report

sns.set_theme(style="whitegrid")

# %% [markdown]
# The chapter needs the profile's anomaly runs; missing ones are computed now.

# %%
chapter = report.chapter(profile, results_dir=results_dir, glitch="anomalies", compute=compute_missing)
chapter.summary

# %% [markdown]
# The numbers on this page come from these runs:

# %%
runs, metrics, store = chapter.runs, chapter.metrics, chapter.store
Markdown(chapter.provenance)

# %% [markdown]
# ## PCID, recomputed from one stored run
#
# With $P_c[i] = \sum_{j \in J_c} \max(I[i,j], 0)$, the counterfactual label
# $b_i$ (the class with the second largest $P_c[i]$), $I^b$ the influence at the last
# checkpoint with training labels $b$ and $P^b_c$ its per-class sums (SPEC section 4):
#
# $$\mathrm{PCID}[i] = \frac{1}{\mathrm{MPI}[i] \cdot \max_c |P_c[i] - P^b_c[i]|}.$$
#
# We recompute it from the first finished run's stored $I$ and $I^b$ with
# `g.signals.pcid` and check it against the stored score.

# %%
run = g.experiments.load_result(chapter.first_done(), store=store)
ts = g.experiments.load_training_set(run.settings, store=store)
pcid = g.signals.pcid(run.matrix("influence"), run.matrix("influence_pcid"), ts.y_test)
assert np.allclose(pcid, run.scores()["pcid"], rtol=1e-5, atol=0), "differs from the stored score"
Markdown(f"`{run.key}`: PCID recomputed for {len(pcid)} samples equals the stored score; "
         f"F1 at k = {ts.mask.sum()}: {g.metrics.detection_f1(pcid, ts.mask):.3f}.")

# %% [markdown]
# ## F1 of every signal
#
# F1 of the top-$k$ flags ($k$ = number of anomalies), mean over seeds with
# the standard deviation as error bar; the paper's signals in red.

# %%
fig = report.plot_metric(metrics, metric="f1")

# %% [markdown]
# PCID against the best existing influence signal (the signals the paper
# compares with; the dedicated detectors are compared in *Against dedicated
# detectors*), per dataset and model:

# %%
report.claim_table(metrics, new="pcid", metric="f1")

# %% [markdown]
# ## F1, AP and AUROC
#
# F1 (mean ± std over seeds):

# %%
report.metric_table(metrics, metric="f1")

# %% [markdown]
# † NIL, #SLIP and #SLIN are uninformative for a linear head on non-negative
# features, such as EfficientNet-Lite0's: every same-class influence is then
# $\ge 0$ (proof: {ref}`same-class-sign`), so NIL and #SLIN are 0,
# #SLIP is the class's validation count, and their F1 only reflects
# tie-breaking. They are informative where the influence layers include
# convolutions.

# %% [markdown]
# Average precision (about 0.09 for a random ranking: the anomalies are 1/11 of
# the enlarged training set):

# %%
report.metric_table(metrics, metric="ap")

# %% [markdown]
# AUROC (0.5 for a random ranking; below 0.5, a signal ranks the anomalies as
# *less* suspicious than the clean samples):

# %%
report.metric_table(metrics, metric="auroc")

# %% [markdown]
# Where the existing signals' AUROC lies below 0.5, the next table suggests why:
# the head fits the anomalies (it learns their one shared label easily), so their
# loss, and with it their gradient, is small at the late checkpoints. Self-influence
# is a sum of squared gradient norms, and the other existing signals sum
# influences, which are products of gradients: both shrink for well-fit samples.
# PCID does not score a gradient's size but how the class profile of a sample's
# influence would change under its second-best label.

# %% [markdown]
# ## How well the model fits the anomalies
#
# A model can memorise anomalies: the paper reports that ResNet-20 fits all of
# them on MNIST (100 % training accuracy). Training accuracy per kind of
# sample, mean ± std over seeds (these runs hold no mislabeled samples, so that
# column is empty for ours):

# %%
report.train_accuracy_table(runs)
