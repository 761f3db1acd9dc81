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
# # Glitch ratio
#
# How many glitches does a signal need to find them? The paper varies the
# glitch ratio "from 1 % up to 30 %" for uniform noise, class-based noise and
# anomalies, and claims:
#
# - **CNCI is the best signal at every ratio**, most clearly at low ratios; at
#   1 % its F1 is **about 36 % higher than SI's**, on average;
# - **PCID's F1 rises with the ratio** and drops sharply at small ratios.
#
# We rerun the three glitches at every ratio of the parameter `ratios`, on the
# first `ratio_seeds` seeds of the profile (a parameter of this chapter). Label noise
# keeps the profile's size (6,000 training samples on the embedded data; its
# 10 % cells are the profile's own runs). All anomalies of a run come from one
# class of the other dataset, and the embedded pools hold no more than about
# 1,000 images per class, so 30 % of 6,000 cannot be drawn: anomalies use **2,000 training
# samples at every ratio** (`glitchlib.studies.SMALL_N_TRAIN`; 30 % = 600
# images). F1 flags the top $k$ samples, $k$ = the number of glitches:
#
# $$F_1 = \frac{2\,P\,R}{P + R}, \qquad P = R = \frac{|\text{top-}k \cap \text{glitches}|}{k}.$$

# %% tags=["parameters"]
profile = "embedded"  # embedded, paper, tiny, or a profile YAML file
results_dir = "results"  # the results store
compute_missing = True  # compute missing runs (slow on a CPU)
ratios = [0.01, 0.05, 0.1, 0.2, 0.3]  # glitch ratios of the ablation
ratio_seeds = 3  # seeds per ratio (the first ones of the profile)

# %% [markdown]
# We load the library.

# %%
import seaborn as sns
from IPython.display import Markdown

import glitchlib as g
from glitchlib import report

sns.set_theme(style="whitegrid")

# %% [markdown]
# The runs of the ablation (`glitchlib.studies.ratio_ablation`): every glitch
# at every ratio, for each dataset and model of the profile. Missing ones are
# computed now; cells that cannot run here say why.

# %%
settings = g.profiles.profile_settings(profile)
needed = g.studies.ratio_ablation(settings, ratios=ratios, seeds=ratio_seeds)
chapter = report.chapter(profile, results_dir=results_dir, cells=needed, compute=compute_missing)
chapter.summary

# %% [markdown]
# The numbers on this page come from these runs:

# %%
runs, metrics, store = chapter.runs, chapter.metrics, chapter.store
Markdown(chapter.provenance)

# %% [markdown]
# ## F1 against the ratio
#
# One panel per glitch and dataset: F1 of every signal (mean over seeds,
# band = ± one standard deviation), CNCI and PCID drawn thick. The x axis is
# logarithmic, so the low ratios get room.

# %%
fig = report.plot_ratio_curves(metrics, metric="f1")

# %% [markdown]
# F1 is computed by `glitchlib.metrics.detection_f1` from a run's scores. For
# example, CNCI on the run at the lowest ratio (uniform noise, seed 0), beside
# the value stored by the run:

# %%
example = report.pick_run([s for s in needed if s.ratio == min(ratios)], runs, glitch="uniform", seed=0)
text = report.run_caption(example)
if example is not None:
    scores = report.run_scores(store, example)
    stored = metrics[(metrics["key"] == example.key()) & (metrics["signal"] == "cnci")]["f1"].iloc[0]
    f1 = g.metrics.detection_f1(scores["cnci"], scores["mask"])
    text += f" {int(scores['mask'].sum())} glitches; CNCI's F1: {f1:.3f} (stored: {stored:.3f})."
Markdown(text)

# %% [markdown]
# ## Is CNCI the best signal at every ratio?
#
# For label noise, per dataset, glitch and ratio: CNCI's mean F1, the best
# other influence signal (the signals the paper compares with; PCID and CFRank
# left out: they are built for anomalies and mixed glitches; the dedicated
# detectors are compared in *Against dedicated detectors*), their difference,
# and in how many seeds CNCI is at least as good.

# %%
noise = metrics[metrics["glitch"].isin(["uniform", "class-based"])]
report.claim_table_by(noise, new="cnci", metric="f1")

# %% [markdown]
# ## CNCI against SI at the lowest ratio
#
# The paper: at 1 % CNCI's F1 is about 36 % higher than SI's. "36 % higher"
# reads as a relative gain, $(F_1^{CNCI} - F_1^{SI}) / F_1^{SI}$, or as a
# difference of 0.36 in F1; the table shows both, per dataset and glitch, their
# average, and the paper's figure:

# %%
report.low_ratio_gain(noise, ratio=min(ratios), signal="cnci", baseline="si", metric="f1")

# %% [markdown]
# ## PCID on anomalies
#
# The paper's claim: PCID's F1 rises with the ratio and drops sharply at small
# ratios. PCID's F1 per ratio (mean ± std over seeds):

# %%
anomalies = metrics[metrics["glitch"] == "anomalies"]
report.signal_by_ratio(anomalies, signal="pcid", metric="f1")

# %% [markdown]
# And whether PCID is the best signal for anomalies at each ratio:

# %%
report.claim_table_by(anomalies, new="pcid", metric="f1")

# %% [markdown]
# ## Average precision
#
# F1 depends on $k$; average precision scores the whole ranking (a random
# ranking scores about the ratio itself). AP of every signal against the ratio:

# %%
fig = report.plot_ratio_curves(metrics, metric="ap")
