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
# # Validation performance
#
# How well does a model learn when its training set holds 10 % glitches? The
# paper reports the accuracy on the clean validation set of models trained on
# dirty sets, for each glitch. This chapter puts our numbers (mean ± std
# over seeds) beside the paper's.

# %% tags=["parameters"]
profile = "embedded"  # embedded, paper, tiny, or a profile YAML file
results_dir = "results"  # the results store
compute_missing = True  # compute missing runs (slow on a CPU)

# %% [markdown]
# We load the library.

# %%
import seaborn as sns
from IPython.display import Markdown

from glitchlib import report

sns.set_theme(style="whitegrid")

# %% [markdown]
# Missing runs are computed now. The table says, per dataset, model and glitch,
# how many seeds are done, and why a cell cannot run on this machine (missing
# data files or weights) when it cannot.

# %%
chapter = report.chapter(profile, results_dir=results_dir, compute=compute_missing)
chapter.summary

# %% [markdown]
# The numbers on this page come from these runs:

# %%
runs = chapter.runs
Markdown(chapter.provenance)

# %% [markdown]
# ## Ours beside the paper's
#
# Validation accuracy, mean ± std over seeds (a single seed shows no std).
# The paper's rows are its table for the same datasets; its models differ from
# ours when their weights were not available (see the training settings).

# %%
report.validation_side_by_side(runs)

# %% [markdown]
# The same numbers as a figure: our seeds as dots with their mean ± std, the
# paper's means as black markers.

# %%
fig = report.plot_validation(runs)

# %% [markdown]
# ## The paper's models on this machine
#
# The paper's own grid (`paper` profile: MNIST, Fashion-MNIST and CIFAR-10 with
# ResNet-20, ViT-B/16 and ConvNeXt-T) needs data files and weights that may not
# be on the machine that built this book. Its status here, without computing
# anything:

# %%
report.chapter("paper", results_dir=results_dir, compute=False).summary

# %% [markdown]
# ## What the glitches cost
#
# The accuracy of each run, per seed, shows the spread between seeds; the
# training accuracy on clean and glitched samples is in the cost chapter.

# %%
columns = ["dataset", "model", "glitch", "seed", "n_train", "n_glitches", "val_acc"]
report.pretty(runs[columns]).sort_values(["dataset", "model", "glitch", "seed"]).reset_index(drop=True)
