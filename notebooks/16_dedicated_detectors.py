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
# # Against dedicated detectors
#
# A reader of the detection chapters will ask: should I use CNCI, or the tool I
# already know? Label errors are usually hunted with **confident learning**
# (cleanlab), anomalies with **out-of-distribution scores**. The paper compares
# CNCI with cleanlab and claims that **CNCI detects better than cleanlab on both
# noise types, and repairs better** (SPEC.md section 9.6). This chapter puts the
# influence signals and six dedicated detectors side by side on the same runs:
# same data, same model (the frozen backbone's features and the same head for
# images; the tabular models, trained whole, for tables), same training settings.

# %% tags=["parameters"]
profile = "embedded"  # embedded, paper, tiny, or a profile YAML file
results_dir = "results"  # the results store
compute_missing = True  # compute missing runs (slow on a CPU)
ratio = 0.1  # glitch ratio of the runs compared
example_dataset = None  # dataset of the run recomputed step by step (None: the first)
example_seed = 0  # seed of that run

# %% [markdown]
# We load the library.

# %%
import numpy as np
import seaborn as sns
from cleanlab.filter import find_label_issues
from IPython.display import Markdown

import glitchlib as g
from glitchlib import report

sns.set_theme(style="whitegrid")

# %% [markdown]
# Every cell of the profile takes part, at the chosen `ratio` (the profile's own
# runs when it is the profile's ratio): each glitch asks a different question of
# the detectors. Missing runs are computed now.

# %%
settings = [s for s in g.profiles.profile_settings(profile) if s.glitch in report.GLITCH_NAMES]
needed = report.at_ratio(settings, ratio=ratio, seeds=1 + max(s.seed for s in settings))
chapter = report.chapter(profile, results_dir=results_dir, cells=needed, compute=compute_missing)
chapter.summary

# %% [markdown]
# The numbers on this page come from these runs:

# %%
runs, metrics, store = chapter.runs, chapter.metrics, chapter.store
timings = chapter.table("timings")
Markdown(chapter.provenance)

# %% [markdown]
# ## The detectors
#
# Every run's signals stage scores each training sample $i$ (features $h_i$,
# given label $y_i$, logits $z_t(h_i)$ after epoch $t = 1..T$) with six
# detectors from `glitchlib.peers`, higher meaning more suspicious:
#
# | column | score | source |
# |---|---|---|
# | `cleanlab` | $1 - \hat p^{\,(-f(i))}(y_i \mid h_i)$, the label quality of cleanlab's `get_label_quality_scores` (self-confidence), with out-of-sample probabilities from 5-fold cross-validation of the same head | Northcutt et al., 2021 |
# | `loss` | $-\log \operatorname{softmax}(z_T(h_i))_{y_i}$ | small-loss criterion |
# | `aum` | $-\frac{1}{T}\sum_t \big(z_t(h_i)_{y_i} - \max_{c \ne y_i} z_t(h_i)_c\big)$ | Pleiss et al., 2020 |
# | `knn` | $\lVert \hat u_i - \hat u'_{(k)} \rVert$, distance to the $k$-th nearest validation sample ($k = 10$) of the unit-normalised penultimate features | Sun et al., 2022 |
# | `mahalanobis` | $\min_c (u_i - \mu_c)^\top \Sigma^{-1} (u_i - \mu_c)$, class means and tied Ledoit-Wolf covariance of the validation features | Lee et al., 2018 |
# | `energy` | $-\log \sum_c e^{z_T(h_i)_c}$ | Liu et al., 2020 |
#
# The first three look for label errors, the last three for inputs unlike the
# clean validation set. cleanlab's repair suggestion is
# $\arg\max_c \hat p^{\,(-f(i))}(c \mid h_i)$, CNCI's is $c^*_i$ (SPEC.md section 4).
#
# ## One run, step by step
#
# We recompute the detectors of one class-based run from its stored features
# and checkpoints, as its signals stage did.

# %%
example = report.pick_run(needed, runs, glitch="class-based", dataset=example_dataset, seed=example_seed)
detectors = g.experiments.recompute_peers(example, store=store) if example else None
Markdown(report.run_caption(example))

# %% [markdown]
# cleanlab's score from the cross-validated probabilities, computed again with
# `glitchlib.peers.cleanlab_scores`, against the score stored with the run
# (largest absolute difference, expected 0 up to rounding):

# %%
scores = report.run_scores(store, example)
if example:
    again = g.peers.cleanlab_scores(scores["y"].to_numpy(), detectors.pred_probs)
    print(f"largest difference: {np.abs(again - scores['cleanlab'].to_numpy()).max():.2e}")

# %% [markdown]
# The book flags exactly $k$ samples, $k$ the number of glitches, for every
# signal. Left to itself, cleanlab's `find_label_issues` (confident learning's
# estimate of the number of label errors) flags this many, with this F1:

# %%
if example:
    flagged = find_label_issues(scores["y"].to_numpy(), detectors.pred_probs)
    mask = scores["mask"].to_numpy().astype(bool)
    f1 = 2 * (flagged & mask).sum() / (flagged.sum() + mask.sum())
    print(f"flagged {flagged.sum()} samples for k = {mask.sum()} glitches; F1 = {f1:.2f}")

# %% [markdown]
# ## Detection, per glitch
#
# F1 of the top-$k$ flags, mean ± std over seeds: the best influence signal of
# SPEC.md section 4 in each row (named), the paper's CNCI, PCID and CFRank, and
# the six detectors.

# %%
report.detector_table(metrics, metric="f1")

# %% [markdown]
# Who wins each row (highest mean F1), and how far behind the best influence
# signal is when a detector wins:

# %%
Markdown(report.winner_summary(metrics, metric="f1"))

# %% [markdown]
# The same as bars: red the influence signals (dark: the best one), blue the
# label-error detectors, green the out-of-distribution detectors.

# %%
fig = report.plot_detectors(metrics, metric="f1")

# %% [markdown]
# Average precision scores the whole ranking (a random ranking scores the
# glitch ratio):

# %%
report.detector_table(metrics, metric="ap")

# %% [markdown]
# AUROC: the probability that a random glitch scores higher than a random clean
# sample (0.5 for a random ranking):

# %%
report.detector_table(metrics, metric="auroc")

# %% [markdown]
# ## Repair
#
# For **every** mislabeled sample, detected or not, is the suggested label the
# true one? CNCI suggests $c^*_i$, cleanlab the argmax of its out-of-sample
# probabilities (mean ± std over seeds). Guessing among the $C-1$ other classes
# is right with probability $1/(C-1)$: about 11 % with ten classes, 50 % on wine
# (three classes) and always on breast cancer (two classes), where any detected
# label error has only one possible repair.

# %%
report.repair_comparison(runs)

# %% [markdown]
# ## The paper's claims, checked
#
# SPEC.md section 9.6: CNCI detects better than cleanlab (F1 at $k$) on uniform
# and class-based noise, on tabular and vision data, and repairs better, except
# with FT-Transformer on class-based noise. Here they are checked on the runs of
# this page. Each row compares the means over seeds; "seeds CNCI better" counts
# the seeds in which CNCI is strictly ahead.

# %%
claims = report.detector_claims(metrics, runs)
claims

# %% [markdown]
# In words:

# %%
Markdown(report.claim_summary(claims))

# %% [markdown]
# ## What each costs
#
# Wall-clock seconds per run, as measured when each stage ran on the machine
# named above (mean over the runs of each dataset and model). The influence
# signals cost the influence and counterfactual stages plus their part of the
# signals stage; cleanlab's time includes its five trainings of the head; the
# loss, AUM and energy share one pass of the checkpoints, k-NN and Mahalanobis
# one pass for the penultimate features. Training is shown for scale.

# %%
report.detector_cost_table(runs, timings)
