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
# # Class-based detection
#
# Class-based noise is the systematic glitch: every class $c$ sends 10 % of its
# samples to one random other class $T(c)$, as an annotator who keeps confusing
# two classes would. The paper's headline figure compares the F1 score of CNCI
# with the existing signals SI, MAI, MI and GD-class on this noise, and claims
# that **CNCI is on par with or better than every existing signal**.

# %% tags=["parameters"]
profile = "embedded"  # embedded, paper, tiny, or a profile YAML file
results_dir = "results"  # the results store
compute_missing = True  # compute missing runs (slow on a CPU)
low_ratio = 0.01  # a second, low noise ratio (None: skip it)
low_ratio_seeds = 1  # seeds run at low_ratio

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
# The chapter needs the profile's class-based runs; missing ones are computed
# now, and cells that cannot run here say why.

# %%
chapter = report.chapter(profile, results_dir=results_dir, glitch="class-based", compute=compute_missing)
chapter.summary

# %% [markdown]
# The numbers on this page come from these runs:

# %%
runs, metrics, store = chapter.runs, chapter.metrics, chapter.store
Markdown(chapter.provenance)

# %% [markdown]
# ## CNCI, recomputed from one stored run
#
# CNCI (SPEC section 4) takes the counterfactual label $c^*_i = \arg\min_c N_c[i]$,
# recomputes the influence $I^*$ at the last checkpoint with the training labels
# $c^*$, and scores
#
# $$\mathrm{CNCI}[i] = \sum_{j \in J_{y_i}} \min(I^*[i,j], 0),$$
#
# near zero for a mislabeled sample (higher = more suspicious). Here it is computed
# again from the first finished run's stored $I^*$ with `g.signals.cnci`, and
# checked against the score the run stored.

# %%
run = g.experiments.load_result(chapter.first_done(), store=store)
ts = g.experiments.load_training_set(run.settings, store=store)
cnci = g.signals.cnci(run.matrix("influence_cnci"), ts.y, ts.y_test)
assert np.allclose(cnci, run.scores()["cnci"], rtol=1e-5, atol=0), "differs from the stored score"
Markdown(f"`{run.key}`: CNCI recomputed for {len(cnci)} samples equals the stored score; "
         f"F1 at k = {ts.mask.sum()}: {g.metrics.detection_f1(cnci, ts.mask):.3f}.")

# %% [markdown]
# ## The paper's figure, with our runs
#
# The paper's README shows this comparison as a bar chart
# ([image on GitHub](https://github.com/anonymoususr95/Influence-Based-Glitch-Detection/assets/159195769/fa0ce8b0-a9a7-44e3-a11e-c23d6c1b2f06)),
# one bar per signal and dataset x model, with CNCI's bar as high as or higher
# than the others. It gives no numbers, so we draw the same bars from our runs:
# F1 of the top-$k$ flags, $k$ = number of mislabeled samples, mean over seeds
# with the standard deviation as error bar.

# %%
fig = report.plot_metric(metrics, metric="f1", signals=["si", "mai", "mi", "gd_class", "cnci"])

# %% [markdown]
# ## Is CNCI on par or better?
#
# For each dataset and model: CNCI's mean F1, the best existing influence
# signal's mean F1 (the signals the paper compares with; the dedicated detectors,
# such as cleanlab or AUM, are compared in *Against dedicated detectors*), their
# difference, and in how many seeds CNCI is at least as good as that signal.

# %%
report.claim_table(metrics, new="cnci", metric="f1")

# %% [markdown]
# ## Every signal
#
# F1 of all signals (mean ± std over seeds). PCID and CFRank are built for
# anomalies and mixed glitches; they are shown for completeness.

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
# F1 depends on the choice of $k$. Average precision (AP) scores the whole
# ranking instead; a random ranking has AP equal to the glitch ratio (0.1).

# %%
report.metric_table(metrics, metric="ap")

# %% [markdown]
# AUROC: the probability that a random mislabeled sample scores higher than a
# random clean one (0.5 for a random ranking).

# %%
report.metric_table(metrics, metric="auroc")

# %% [markdown]
# The same AP numbers as bars, for every signal:

# %%
fig = report.plot_metric(metrics, metric="ap")

# %% [markdown]
# ## At a lower noise ratio
#
# The paper also claims that CNCI beats SI by about 36 % F1 when only 1 % of the
# samples are mislabeled. We run the first `low_ratio_seeds` seeds at
# `low_ratio` and compare CNCI with SI at both ratios (difference in F1 points,
# and relative gain over SI).

# %%
low = report.at_ratio(chapter.cells, ratio=low_ratio, seeds=low_ratio_seeds)
low_status = report.ensure_results(low, store, compute=compute_missing)
both = report.select_keys(store.load_metrics(), chapter.cells + low)
report.compare_signals(both, "cnci", "si", metric="f1")
