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
# (counterfactual) matrices. The paper claims that computing the signals costs
# **about 8 % of training time**. This chapter measures each stage of our runs.
# It also checks the paper's observation that a model fits clean and
# anomalous training samples but not mislabeled ones (ResNet-20 on MNIST:
# about 97 %, 100 % and 5 % training accuracy).

# %% tags=["parameters"]
profile = "embedded"  # embedded, paper, tiny, or a profile YAML file
results_dir = "results"  # the results store
compute_missing = True  # compute missing runs (slow on a CPU)

# %% [markdown]
# We load the library.

# %%
import seaborn as sns
from IPython.display import Markdown

import glitchlib as g
from glitchlib import report

sns.set_theme(style="whitegrid")

# %% [markdown]
# The chapter reads every run of the profile; missing ones are computed now.

# %%
chapter = report.chapter(profile, results_dir, compute=compute_missing)
chapter.summary

# %% [markdown]
# The numbers on this page come from these runs:

# %%
runs, settings, store = chapter.runs, chapter.settings, chapter.store
timings = chapter.table("timings")
Markdown(chapter.provenance)

# %% [markdown]
# ## Time per stage
#
# Seconds per run and stage, mean over the runs of each dataset and model.
# `features` is the frozen backbone's forward pass: it is computed once per
# input set and cached, so only the first run of a dataset pays for it and the
# mean spreads that cost over the runs. `training` trains the head on the
# cached features; `influence`, `counterfactuals` and `signals` are what
# detection adds. The row `detection / training` divides the detection stages
# by training (mean over runs), the quantity of the paper's 8 % claim.

# %%
report.cost_table(timings).round(3)

# %% [markdown]
# The same on a log scale:

# %%
fig = report.plot_stages(timings)

# %% [markdown]
# **Reading the share.** In the paper's code, training runs the backbone's
# forward pass in every epoch, so its training time (the denominator of the
# 8 %) includes that pass. Here the backbone runs once and training works on
# cached features, so training is much cheaper than in the paper, and the same
# detection work is a larger share of it. The `features` row gives the other yardstick: the cost of one
# forward pass of the backbone over the data.
#
# ## Training accuracy per kind of sample
#
# Accuracy of the trained model on its own training set, separately on clean,
# mislabeled (measured against the given, wrong label) and anomalous samples,
# beside the paper's claim for ResNet-20 on MNIST.

# %%
report.train_accuracy_table(runs)
