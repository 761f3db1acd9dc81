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
# # Cost, and what the model memorises
#
# Influence is not free: TracIn needs the gradient of every training and
# validation sample at every checkpoint, and CNCI and PCID need two more
# (counterfactual) matrices. The paper splits the cost into four parts and claims
# that the signals cost **about 8 % of training time** (MNIST, 10 % of the
# samples, the same epochs, CPU only):
#
# | part | what | grows as |
# |---|---|---|
# | $T_1$ | training | epochs $\times$ $n$ |
# | $T_2$ | the train-to-validation matrix $I_{ij} = \sum_t \eta_t \langle g_t(z_i), g_t(z'_j)\rangle$ | $O(T\,n\,m\,d)$ |
# | $T_3$ | the two counterfactual matrices $I^*$ and $I^b$ (last checkpoint) | $O(n\,m\,d)$ |
# | $T_4$ | the signals | $O(n\,m\,\lvert C\rvert)$ |
#
# with $n$ training and $m$ validation samples, $T$ checkpoints, $d$ influence
# parameters and $\lvert C\rvert$ classes. This chapter measures the four parts, how
# $T_2$ grows, and checks the paper's observation that a model fits clean and
# anomalous training samples but not mislabeled ones.

# %% tags=["parameters"]
profile = "embedded"  # embedded, paper, tiny, or a profile YAML file
results_dir = "results"  # the results store
compute_missing = True  # compute missing runs and cost measurements (slow on a CPU)
timing_sample = 256  # training images timed for the backbone's cost (T1)
recompute_costs = False  # measure T1 and the influence sweep again, even if stored

# %% [markdown]
# We load the library.

# %%
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display

import glitchlib as g
from glitchlib import cost, report

sns.set_theme(style="whitegrid")

# %% [markdown]
# The chapter reads every run of the profile; missing ones are computed now.

# %%
chapter = report.chapter(profile, results_dir=results_dir, compute=compute_missing)
chapter.summary

# %% [markdown]
# The numbers on this page come from these runs:

# %%
runs, settings, store = chapter.runs, chapter.settings, chapter.store
timings = chapter.table("timings")
Markdown(chapter.provenance)

# %% [markdown]
# ## $T_1$ to $T_4$ in the paper's setting
#
# The paper's setting is MNIST, 10 % of the samples (for the `embedded` profile,
# the 6,000 training and 1,000 validation images shipped with the package), with
# each model's own epochs. We take the class-based runs of every model of the
# profile that can run on this machine (models whose weights are missing are
# listed with the reason); the table's last row gives the sizes and epochs used.

# %%
cells, not_runnable = cost.cost_cells(settings, dataset="mnist", glitch="class-based")
Markdown("Models measured: " + ", ".join(f"`{c.dataset}` · `{c.model}`" for c in cells) + ". "
         + "".join(f"Not runnable here: `{m}` ({why}). " for m, why in not_runnable.items()))

# %% [markdown]
# **Training, two ways.** The paper's code trains with the frozen backbone inside
# the model, so every epoch pays the backbone's forward pass:
# $T_1^{\text{paper}} = E \cdot n \cdot c_{\text{epoch}}$, with $c_{\text{epoch}}$ the
# seconds per image of one training epoch of the whole model. Here the backbone
# runs once over the training and validation images and the head trains on the
# cached features: $T_1^{\text{ours}} = (n + m)\, c_{\text{backbone}} + t_{\text{head}}$.
# Timing the paper's way in full would repeat the backbone pass every epoch at every
# build, so both per-image costs are timed on the first `timing_sample` training
# images (one epoch of
# `glitchlib.train.fit` on the whole model; one `compute_features` pass; batches
# of the run's size; the fastest of three passes each, the least slowed down by
# other processes), after an untimed warm-up, and multiplied by the image counts
# above. The measurement is
# stored in the results store and read back on later builds.

# %%
records = {}
for cell in cells:
    spec = cost.TrainingCostSettings.from_experiment(cell, sample=timing_sample)
    records[cell.model] = cost.stored_benchmark(store, "training-cost", settings=spec.to_dict(),
                                                compute=lambda: cost.measure_training_cost(spec),
                                                recompute=recompute_costs, compute_missing=compute_missing)
measured = {model: r["result"] for model, r in records.items()}
pd.DataFrame({model: {**r["result"], "machine": r["environment"]["machine"],
                      "torch threads": r["environment"]["torch_threads"], "measured at": r["created"],
                      "load average": r.get("load_average")} for model, r in records.items()}).T

# %% [markdown]
# **The four parts.** $t_{\text{head}}$, $T_2$ (stage `influence`), $T_3$ (stage
# `counterfactuals`) and $T_4$ (stage `signals`) are the stage times the pipeline
# recorded for these runs (mean over seeds); both $T_1$ come from the per-image
# costs above. The machine is shared, so every time carries its load at the
# moment it was taken (the load average is the number of processes running or
# waiting for one of its cores).

# %%
cost.t1_to_t4_table(timings, runs, measured, cells=cells)

# %% [markdown]
# **Reading the share.** The paper's 8 % is detection over training *the paper's
# way*, so the row to set beside it is the first share. Detection here works on
# cached features with closed-form head gradients, where the paper's code ran
# captum through the backbone. The second share divides the same detection by our
# own training, which pays the backbone once instead of once per epoch; the two
# $T_1$ rows show how much that saves.
#
# ## Every stage of every run
#
# Seconds per run and stage, mean over the runs of each dataset and model.
# `features` is the frozen backbone's forward pass: it is computed once per
# input set and cached, so only the first run of a dataset pays for it and the
# mean spreads that cost over the runs. The row `detection / training` divides
# the detection stages by the head's training on cached features.

# %%
report.cost_table(timings).round(3)

# %% [markdown]
# The same on a log scale:

# %%
fig = report.plot_stages(timings)

# %% [markdown]
# ## How $T_2$ grows with $n$, $m$ and $d$
#
# One influence matrix with `glitchlib.influence.TracIn`, timed: a linear head on
# 1,280 features (what `efficientnet_lite0` feeds it), 4 checkpoints, 2,000
# training and 500 validation samples, random inputs (time does not depend on
# the values).

# %%
head = torch.nn.Linear(1280, 10)
engine = g.influence.TracIn(head, [(head.state_dict(), 0.1)] * 4, layers=[""], progress=False)
x, y = torch.randn(2500, 1280), torch.randint(0, 10, (2500,))
matrix, seconds = cost.timed(lambda: engine.train_test(x[:2000], y[:2000], x[2000:], y[2000:]))
Markdown(f"A {matrix.shape[0]:,} x {matrix.shape[1]:,} matrix in {seconds:.2f} s.")

# %% [markdown]
# The sweep below repeats this over $n$, $m$ and three kinds of influence
# parameters: the linear head ($d$ = 12,810), ResNet-20's `layer3.2` and `fc`
# (random weights, $d$ = 74,378) and the same gradients projected to $k$ numbers.
# Each point also times `torch.mm` doing the same dot products (same shapes, same
# process): the **matrix-multiply bound**. `mm_share` is the bound's time over
# the influence time (1 = as fast as the bare products; the rest is computing
# per-sample gradients). Memory is the peak the call adds; `beyond_matrix_mib`
# leaves out the returned $n \times m$ matrix. These are the book's cheap sizes;
# `benchmarks/influence_scaling.py` runs the full sweep (up to $n$ = 60,000 and
# $m$ = 10,000).

# %%
scaling = cost.stored_benchmark(store, "influence-scaling", settings=cost.BOOK_SCALING.to_dict(),
                                compute=lambda: cost.run_scaling(cost.BOOK_SCALING).to_dict("records"),
                                recompute=recompute_costs, compute_missing=compute_missing)
sweep = pd.DataFrame(scaling["result"])
env = scaling["environment"]
display(Markdown(f"Measured on {env['machine']}, {env['torch_threads']} torch threads, at {scaling['created']}, "
                 f"load average before and after {scaling.get('load_average')}."))
sweep.round(3)

# %% [markdown]
# Time (glitchlib and the `torch.mm` bound) against each size, and peak memory
# against $n$:

# %%
fig = cost.plot_scaling(sweep)

# %% [markdown]
# The growth measured: the slope of $\log$ time against $\log n$ and $\log m$
# (1 = linear, as $O(T\,n\,m\,d)$ predicts at fixed other sizes), and the range
# of the memory beyond the matrix over the $n$ sweep (flat: about the same at
# every $n$). At small sizes, fixed costs and the waiting on a busy machine move
# the slopes away from 1. `benchmarks/influence_peers.py` sets glitchlib's time
# beside captum's and dattri's TracIn on the same models and checkpoints.

# %%
Markdown(cost.growth_summary(sweep))

# %% [markdown]
# ## Training accuracy per kind of sample
#
# Accuracy of the trained model on its own training set, separately on clean,
# mislabeled (measured against the given, wrong label) and anomalous samples,
# beside the paper's claim for ResNet-20 on MNIST.

# %%
report.train_accuracy_table(runs)
