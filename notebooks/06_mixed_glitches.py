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
# # Mixed glitches
#
# Real training sets hold several types of glitch at once. Here 10 % of the
# samples get a uniformly random wrong label *and* 10 % anomalies are appended.
# CFRank ranks a sample by the larger of its CNCI rank and its PCID rank, and
# characterises a flagged sample as mislabeled when its CNCI rank is the larger,
# else as an anomaly. The paper gives no number for mixed glitches (SPEC.md
# section 6): it shows CFRank's detection and characterisation, which we
# measure here beside every other signal.

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
# The chapter needs mixed-glitch runs: the profile's, or, when the profile has
# none, its settings with the glitch set to `mixed`. Missing ones are computed
# now.

# %%
chapter = report.chapter(profile, results_dir=results_dir, glitch="mixed", compute=compute_missing)
chapter.summary

# %% [markdown]
# The numbers on this page come from these runs:

# %%
runs, metrics, store = chapter.runs, chapter.metrics, chapter.store
Markdown(chapter.provenance)

# %% [markdown]
# ## CFRank, recomputed from one stored run
#
# CFRank combines the two: with $r_{\mathrm{CNCI}}$ and $r_{\mathrm{PCID}}$ the
# ascending ranks (0 = least suspicious),
#
# $$\mathrm{CFRank}[i] = \max(r_{\mathrm{CNCI}}[i], r_{\mathrm{PCID}}[i]),$$
#
# and a flagged sample is called mislabeled when $r_{\mathrm{CNCI}}[i] > r_{\mathrm{PCID}}[i]$.
# We recompute CNCI and PCID from the first finished run's stored matrices, then
# CFRank with `g.signals.cfrank`, and check it against the stored score.

# %%
run = g.experiments.load_result(chapter.first_done(), store=store)
ts = g.experiments.load_training_set(run.settings, store=store)
cnci = g.signals.cnci(run.matrix("influence_cnci"), ts.y, ts.y_test)
pcid = g.signals.pcid(run.matrix("influence"), run.matrix("influence_pcid"), ts.y_test)
cfrank = g.signals.cfrank(cnci, pcid)
assert np.array_equal(cfrank, run.scores()["cfrank"].to_numpy()), "differs from the stored score"
Markdown(f"`{run.key}`: CFRank recomputed for {len(cfrank)} samples equals the stored score; "
         f"F1 at k = {ts.mask.sum()}: {g.metrics.detection_f1(cfrank, ts.mask):.3f}.")

# %% [markdown]
# ## Detection
#
# F1 of the top-$k$ flags ($k$ = number of glitches of both kinds), mean over
# seeds with the standard deviation as error bar; the paper's signals in red.
# A signal that finds only one kind of glitch fills at most half of the $k$
# flags with glitches, so its F1 stays near 0.5 or below.

# %%
fig = report.plot_metric(metrics, metric="f1")

# %% [markdown]
# CFRank against the best existing influence signal (the signals the paper
# compares with; the dedicated detectors are compared in *Against dedicated
# detectors*), per dataset and model:

# %%
report.claim_table(metrics, new="cfrank", metric="f1")

# %% [markdown]
# F1, then AP and AUROC, of every signal (mean ± std over seeds):

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
# Average precision:

# %%
report.metric_table(metrics, metric="ap")

# %% [markdown]
# AUROC:

# %%
report.metric_table(metrics, metric="auroc")

# %% [markdown]
# ## Characterisation
#
# Among the glitches that CFRank detects (its top $k$), the share of
# mislabeled samples it calls mislabeled, and of anomalies it calls anomalies
# (clean samples in the top $k$ are not counted: they are detection errors, which
# the F1 above measures).

# %%
report.characterization_table(runs)
