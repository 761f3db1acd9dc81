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
# # What the model does with each glitch
#
# Why do influence signals see glitches at all? The paper looks at what the
# trained model does with them, in three parts:
#
# 1. the average loss and the accuracy of the model on its own training
#    samples, per kind of sample: it fits clean samples and anomalies, and does
#    not fit mislabeled ones;
# 2. what glitches cost: validation accuracy of each glitched run minus that
#    of its **clean twin**, the same run (same data, seed and model) with
#    nothing injected (glitch `none`);
# 3. hard but clean samples: clean samples of high self-influence are the
#    ones the model gets wrong, which is why SI also flags clean samples.
#
# The loss of a training sample $z_i = (x_i, y_i)$ is the cross-entropy of the
# final model against the label $y_i$ *given* to training (the wrong one for a
# mislabeled sample):
#
# $$\ell_i = -\log \operatorname{softmax}(f(x_i))_{y_i}.$$

# %% tags=["parameters"]
profile = "embedded"  # embedded, paper, tiny, or a profile YAML file
results_dir = "results"  # the results store
compute_missing = True  # compute missing runs (slow on a CPU)
seeds = 5  # seeds per dataset and model (the first ones of the profile)

# %% [markdown]
# We load the library.

# %%
import pandas as pd
import seaborn as sns
from IPython.display import Markdown

import glitchlib as g
from glitchlib import report

sns.set_theme(style="whitegrid")

# %% [markdown]
# The runs: the profile's glitched runs at their own ratio (10 %) and their
# clean twins (`glitchlib.studies.clean_twins`); missing ones are computed now.

# %%
settings = g.profiles.profile_settings(profile)
glitched = [s for s in g.studies.base_cells(settings) if s.seed < seeds]
needed = glitched + g.studies.clean_twins(settings, seeds=seeds)
chapter = report.chapter(profile, results_dir=results_dir, cells=needed, compute=compute_missing)
chapter.summary

# %% [markdown]
# The numbers on this page come from these runs:

# %%
runs, store = chapter.runs, chapter.store
Markdown(chapter.provenance)

# %% [markdown]
# ## Loss and accuracy per kind of sample
#
# Every run keeps each training sample's loss and prediction
# (`glitchlib.experiments.load_predictions`). For one run with mixed glitches,
# the mean of $\ell_i$ and the accuracy per kind:

# %%
example = report.pick_run(glitched, runs, glitch="mixed", seed=0) or report.pick_run(glitched, runs)
predictions = g.experiments.load_predictions(example, store=store) if example else pd.DataFrame(
    columns=["kind", "loss", "correct"])
Markdown(report.run_caption(example))

# %% [markdown]
# Mean loss and accuracy per kind of sample in that run:

# %%
predictions.groupby("kind")[["loss", "correct"]].mean().rename(columns={"correct": "accuracy"})

# %% [markdown]
# The same averages over every run, mean ± std over seeds, and below them the
# paper's ResNet-20 numbers (10 % glitches). The model fits the anomalies,
# even their one random label; it does not fit the mislabeled samples, whose
# given label it contradicts (low accuracy, high loss).

# %%
report.kind_table(runs)

# %% [markdown]
# ## What the glitches cost
#
# Validation accuracy (always on the clean validation set) of each glitched
# run minus that of its clean twin, mean ± std over seeds; the paper's
# ResNet-20 differences below ours.

# %%
pairs = report.twin_pairs(glitched)
report.twin_difference_table(runs, pairs)

# %% [markdown]
# ## Hard but clean
#
# The clean training samples of the uniform-noise runs, binned by their
# self-influence (deciles within each run): the model's training accuracy per
# bin, mean over seeds (band = ± one standard deviation). The paper's claim:
# accuracy falls as SI grows.

# %%
uniform = [s for s in glitched if s.glitch == "uniform" and s.key() in set(runs["key"])]
per_run = [g.experiments.load_predictions(s, store=store).assign(run=s.key(), dataset=s.dataset) for s in uniform]
columns = ["run", "dataset", "kind", "si", "correct"]
deciles = report.si_decile_accuracy(pd.concat(per_run, ignore_index=True) if per_run else pd.DataFrame(columns=columns))
fig = report.plot_si_deciles(deciles)

# %% [markdown]
# The same numbers, mean accuracy per bin and dataset:

# %%
report.pretty(deciles).pivot_table(index="dataset", columns="bin", values="accuracy", aggfunc="mean").round(3)
