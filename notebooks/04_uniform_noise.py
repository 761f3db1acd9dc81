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
# # Uniform class noise
#
# With uniform class noise, 10 % of the training samples get a label drawn
# uniformly from the other classes. The wrong labels are scattered over all
# class pairs, so no class is systematically confused. CNCI was designed for
# mislabeled samples; this chapter checks how it ranks them here against the
# existing signals.

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
# The chapter needs the profile's uniform-noise runs; missing ones are
# computed now.

# %%
chapter = report.chapter(profile, results_dir=results_dir, glitch="uniform", compute=compute_missing)
chapter.summary

# %% [markdown]
# The numbers on this page come from these runs:

# %%
runs, metrics, store = chapter.runs, chapter.metrics, chapter.store
Markdown(chapter.provenance)

# %% [markdown]
# ## CNCI, recomputed from one stored run
#
# As for class-based noise, CNCI scores each training sample with the
# counterfactual influence matrix $I^*$ (training labels replaced by
# $c^*_i = \arg\min_c N_c[i]$, last checkpoint):
#
# $$\mathrm{CNCI}[i] = \sum_{j \in J_{y_i}} \min(I^*[i,j], 0).$$
#
# We recompute it from the first finished run's stored $I^*$ with `g.signals.cnci`
# and check it against the stored score.

# %%
run = g.experiments.load_result(chapter.first_done(), store=store)
ts = g.experiments.load_training_set(run.settings, store=store)
cnci = g.signals.cnci(run.matrix("influence_cnci"), ts.y, ts.y_test)
assert np.allclose(cnci, run.scores()["cnci"], rtol=1e-5, atol=0), "differs from the stored score"
Markdown(f"`{run.key}`: CNCI recomputed for {len(cnci)} samples equals the stored score; "
         f"F1 at k = {ts.mask.sum()}: {g.metrics.detection_f1(cnci, ts.mask):.3f}.")

# %% [markdown]
# ## F1 of every signal
#
# F1 of the top-$k$ flags ($k$ = number of mislabeled samples), mean over seeds
# with the standard deviation as error bar; the paper's signals in red.

# %%
fig = report.plot_metric(metrics, metric="f1")

# %% [markdown]
# CNCI against the best existing signal, per dataset and model:

# %%
report.claim_table(metrics, new="cnci", metric="f1")

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
# Average precision (0.1 for a random ranking):

# %%
report.metric_table(metrics, metric="ap")

# %% [markdown]
# AUROC (0.5 for a random ranking):

# %%
report.metric_table(metrics, metric="auroc")
