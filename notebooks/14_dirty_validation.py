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
# # A dirty validation set
#
# Every signal reads the training samples through their influence on a
# validation set, and the label-noise signals group it by label: CNCI sums the
# negative counterfactual influence over $J_{y_i}$, the validation samples
# labelled $y_i$,
#
# $$\mathrm{CNCI}[i] = \sum_{j \in J_{y_i}} \min(I^*[i, j], 0).$$
#
# What if those labels are wrong too? The paper gives both sets label noise:
# 10 % in training, **20 % in validation**, with a validation set **15 % the
# size of the training set**, for uniform and class-based noise (the same kind
# in both sets). The influence, hence every signal, uses the dirty validation
# labels; the validation accuracy reported is always measured against the
# clean ones. The paper's claim: **CNCI loses little**.

# %% tags=["parameters"]
profile = "embedded"  # embedded, paper, tiny, or a profile YAML file
results_dir = "results"  # the results store
compute_missing = True  # compute missing runs (slow on a CPU)
test_ratio = 0.2  # label noise of the validation set
test_share = 0.15  # validation samples per training sample
dirty_seeds = 3  # seeds per glitch (the first ones of the profile)

# %% [markdown]
# We load the library.

# %%
import seaborn as sns
from IPython.display import Markdown

import glitchlib as g
from glitchlib import report

sns.set_theme(style="whitegrid")

# %% [markdown]
# The runs come in pairs (`glitchlib.studies.dirty_validation`): the same
# training set and the same validation samples, once with clean validation
# labels and once with `test_ratio` of them changed, `dirty_seeds` seeds each
# (3 on the embedded data). They use 2,000 training samples
# (`glitchlib.studies.SMALL_N_TRAIN`), hence 300 validation samples. Missing
# ones are computed now.

# %%
settings = g.profiles.profile_settings(profile)
needed = g.studies.dirty_validation(settings, test_ratio=test_ratio, test_share=test_share, seeds=dirty_seeds)
chapter = report.chapter(profile, results_dir=results_dir, cells=needed, compute=compute_missing)
chapter.summary

# %% [markdown]
# The numbers on this page come from these runs:

# %%
runs = report.with_fields(chapter.runs, needed, ["test_ratio"])
metrics, store = chapter.metrics, chapter.store
Markdown(chapter.provenance)

# %% [markdown]
# ## The noisy validation labels
#
# The validation noise is injected by the same functions as the training
# noise, with the run's seed (so class-based noise sends each class to the same
# target in both sets). For one run, `glitchlib.glitches.uniform_noise` on its
# clean validation labels, beside the number of noisy labels the run stored:

# %%
example = report.pick_run([s for s in needed if s.test_ratio and s.glitch == "uniform"], runs, seed=0)
text = report.run_caption(example)
if example is not None:
    data = g.experiments.load_training_set(example, store=store)
    noisy = g.glitches.uniform_noise(data.y_test, ratio=example.test_ratio, seed=example.seed, n_classes=len(data.class_names))
    stored = int(runs.loc[runs["key"] == example.key(), "n_test_noisy"].iloc[0])
    text += f" {len(data.y_test)} validation samples, {noisy.n_glitches} noisy labels (stored: {stored})."
Markdown(text)

# %% [markdown]
# ## F1 with a clean and with a dirty validation set
#
# One point per dataset, model, glitch and signal: mean F1 over seeds with
# the clean validation set (x) and with the dirty one (y). Points on the
# diagonal lose nothing; CNCI in red.

# %%
pairs = report.validation_pairs(needed)
table = report.dirty_validation_table(metrics, pairs, metric="f1")
fig = report.plot_dirty_validation(table, metric="F1")

# %% [markdown]
# CNCI's F1 in each pair of settings, and what it loses:

# %%
report.pretty(table[table["signal"] == "cnci"]).round(3)

# %% [markdown]
# How much every signal loses, on average over datasets, models and glitches
# (dirty minus clean F1), from the smallest loss to the largest:

# %%
report.pretty(table).groupby("signal")[["clean", "dirty", "difference"]].mean().sort_values(
    "difference", ascending=False).round(3)

# %% [markdown]
# ## Validation accuracy
#
# Measured against the clean validation labels in both runs of a pair, so the
# model is judged the same way; only the influence sees the noise. Mean ± std
# over seeds, one column per validation noise ratio:

# %%
report.mean_std_table(runs, ["dataset", "model", "glitch"], "test_ratio", "val_acc", digits=3)
