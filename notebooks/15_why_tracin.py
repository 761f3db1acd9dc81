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
# # Why TracIn
#
# Every signal of this book is built on TracIn (Pruthi et al., 2020). The
# classic alternative is the influence function of Koh and Liang (2017). The
# paper chooses TracIn for a measured reason: retrain the model once without each
# training sample (leave-one-out retraining, LOOR, the quantity both methods
# estimate) and check which estimate follows it more closely. Its claim:
# **TracIn correlates better with LOOR than the influence function**. This
# chapter repeats the experiment on small models, where LOOR and the influence
# function's exact Hessian can both be computed.

# %% tags=["parameters"]
profile = "embedded"  # embedded or paper: full sizes; tiny or a profile YAML file: small ones
results_dir = "results"  # the results store (LOOR matrices are cached there)
compute_missing = True  # compute LOOR matrices that are not in the store yet
n_jobs = None  # processes for the retraining (None: every core)

# %% [markdown]
# ## What is compared
#
# For training sample $z_i$ and validation sample $z'_j$, with $\ell$ the
# cross-entropy and $w$ the trained weights:
#
# - **LOOR**, the reference: $\mathrm{LOOR}[i, j] = \ell(w_{-i}; z'_j) - \ell(w; z'_j)$,
#   where $w_{-i}$ comes from training again without $z_i$: the same initial
#   weights, the same batches minus $z_i$ (its batch keeps its divisor, so the
#   one difference is $z_i$'s missing loss term), the same schedule. Positive
#   means $z_i$ helped $z'_j$.
# - **TracIn**: $I[i, j] = \sum_t \eta_t\, \nabla \ell(w_t; z_i) \cdot \nabla \ell(w_t; z'_j)$
#   over the checkpoints $w_t$ saved after every epoch.
# - **Influence function**, with TracIn's sign:
#   $\mathrm{IF}[i, j] = \nabla \ell(w; z'_j)^\top (H + \lambda I)^{-1} \nabla \ell(w; z_i)$,
#   with $H$ the exact Hessian of the mean training loss and a small damping $\lambda$.
#   This is minus Koh and Liang's $\mathcal{I}_{\mathrm{up,loss}}$.
#
# The estimates differ in scale from LOOR, so we compare shapes: per training
# sample $i$, the Pearson correlation $r_i$ of the row $I[i, :]$ (or
# $\mathrm{IF}[i, :]$) with $\mathrm{LOOR}[i, :]$ across validation samples.

# %% [markdown]
# We load the library.

# %%
import pandas as pd
import seaborn as sns
from IPython.display import Markdown

from glitchlib import loo_study, loor

sns.set_theme(style="whitegrid")

# %% [markdown]
# ## Data and models
#
# Three datasets: scikit-learn's breast cancer (2 classes) and wine (3 classes),
# standardised on the training rows; MNIST, as features of the frozen
# `efficientnet_lite0` backbone reduced by a PCA fitted on the training rows.
# Each gets a logistic regression (convex: the influence function's home ground)
# and an MLP with one hidden layer of 16 ReLU units, trained in float64 with plain
# SGD. Every training sample is left out once. The cells of this profile:

# %%
cells = loo_study.chapter_settings(profile)
pd.DataFrame([s.to_dict() for s in cells])

# %% [markdown]
# For each cell we train the model, compute TracIn and the influence function,
# retrain once per training sample in parallel processes (or read the LOOR
# matrix from the results store) and correlate the rows.

# %%
studies = [loo_study.run_study(s, results_dir=results_dir, compute=compute_missing, n_jobs=n_jobs) for s in cells]

# %% [markdown]
# The numbers on this page come from:

# %%
Markdown(loo_study.provenance_markdown(studies))

# %% [markdown]
# ## One training sample
#
# What a correlation looks like: each dot is one validation sample, LOOR on the
# x-axis, the estimate on the y-axis, for the MNIST logistic regression and the
# training sample whose TracIn correlation is the median one.

# %%
mnist = next(s for s in studies if s.settings.dataset == "mnist")
fig = loo_study.plot_sample(mnist)

# %% [markdown]
# The correlation of that row is what `loor.row_correlations` computes for
# every left-out sample at once (mean over the samples of this cell):

# %%
pd.Series({"TracIn": loor.row_correlations(mnist.tracin, mnist.loor.matrix).mean(),
           "influence function": loor.row_correlations(mnist.influence, mnist.loor.matrix).mean()}).round(3)

# %% [markdown]
# ## The distribution of the correlations
#
# The paper's figure: the empirical CDF of $r_i$ over the training samples, per
# method. A curve further to the right is the better estimate.

# %%
fig = loo_study.plot_ecdf(studies)

# %% [markdown]
# Mean and median of $r_i$ per cell, with the paper's claim beside them
# (its figure gives no numbers). `damping` is the $\lambda$ used: 0.001, plus
# the magnitude of the Hessian's most negative eigenvalue when the model is
# not convex (otherwise $H + \lambda I$ has no Cholesky factor).

# %%
table = loo_study.correlation_table(studies)
table.round(3)

# %% [markdown]
# In short:

# %%
Markdown(loo_study.summary_markdown(studies))

# %% [markdown]
# ## How long LOOR took
#
# Seconds per cell: training once, the two estimates, and the leave-one-out
# retraining ($n + 1$ trainings, run in parallel processes; `from cache` says
# whether this build read the matrix from the results store, in which case the
# time is that of the build that computed it).

# %%
loo_study.timing_table(studies).round(2)

# %% [markdown]
# ## Reading the result
#
# - On these small models the influence function has everything it needs: the
#   exact Hessian, a solve in float64, and for the logistic regression a convex
#   loss. It estimates how the *final* weights move when a sample's weight
#   changes. TracIn sums gradient dot products along the training path instead,
#   with one checkpoint per epoch, so it sees a coarse version of the
#   trajectory.
# - LOOR here keeps every batch but the left-out sample's, so it isolates the
#   effect of that one sample; a retraining with a new batch order would add
#   noise that neither estimate can follow.
# - The exactness does not scale: the Hessian has as many rows as the model has
#   influence parameters, so its memory grows with their square and the solve
#   with their cube, while TracIn's cost grows linearly. For the vision models of
#   the other chapters the inverse Hessian has to be approximated (Koh and Liang
#   use conjugate gradients or stochastic estimates), where the influence
#   function is expected to lose accuracy (not measured in this chapter). The
#   paper does not say which models and which approximation its comparison
#   used; the one above is the favourable case for Koh and Liang.
# - Each cell above is one seed (the study's `seed`, listed in its settings):
#   the verdict holds in every cell measured, not as a mean over seeds.
