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
# # Anomalies
#
# Here the glitches are images that belong to no class: 10 % more images, all
# from one class of another dataset (Fashion-MNIST clothes among MNIST digits,
# digits among clothes), all carrying one random label, are appended to the
# training set. PCID is the paper's signal for them: an anomaly helps no class
# much (small MPI), and changing its label to the second-best class changes
# little, so $\mathrm{PCID} = 1 / (\mathrm{MPI} \cdot \text{distance})$ is large.

# %% tags=["parameters"]
profile = "embedded"  # embedded, paper, tiny, or a profile YAML file
results_dir = "results"  # the results store
compute_missing = True  # compute missing runs (slow on a CPU)

# %% [markdown]
# We load the library, the profile's runs and the results store.

# %%
import seaborn as sns
from IPython.display import Markdown

import glitchlib as g
from glitchlib import report

sns.set_theme(style="whitegrid")
settings = g.experiments.profile_settings(profile)
store = g.store.Store(results_dir)

# %% [markdown]
# The chapter needs the profile's anomaly runs; missing ones are computed now.

# %%
needed = report.with_glitch(settings, "anomalies")
status = report.ensure_results(needed, store, compute=compute_missing)
report.status_summary(status)

# %% [markdown]
# The numbers on this page come from these runs:

# %%
runs = report.select_keys(store.load_runs(), needed)
metrics = report.select_keys(store.load_metrics(), needed)
Markdown(report.provenance_markdown(runs, profile))

# %% [markdown]
# ## F1 of every signal
#
# F1 of the top-$k$ flags ($k$ = number of anomalies), mean over seeds with
# the standard deviation as error bar; the paper's signals in red.

# %%
fig = report.plot_metric(metrics, "f1")

# %% [markdown]
# PCID against the best existing signal, per dataset and model:

# %%
report.claim_table(metrics, "pcid", "f1")

# %% [markdown]
# ## F1, AP and AUROC
#
# F1 (mean ± std over seeds):

# %%
report.metric_table(metrics, "f1")

# %% [markdown]
# † NIL, #SLIP and #SLIN are uninformative for a linear head on non-negative
# features, such as EfficientNet-Lite0's: every same-class influence is then
# $\ge 0$ (proof: {ref}`same-class-sign`), so NIL and #SLIN are 0,
# #SLIP is the class's validation count, and their F1 only reflects
# tie-breaking. They are informative where the influence layers include
# convolutions.

# %% [markdown]
# Average precision (about 0.09 for a random ranking: the anomalies are 1/11 of
# the enlarged training set):

# %%
report.metric_table(metrics, "ap")

# %% [markdown]
# AUROC (0.5 for a random ranking):

# %%
report.metric_table(metrics, "auroc")

# %% [markdown]
# ## How well the model fits the anomalies
#
# A model can memorise anomalies: the paper reports that ResNet-20 fits all of
# them on MNIST (100 % training accuracy). Training accuracy per kind of
# sample, mean ± std over seeds:

# %%
report.train_accuracy_table(runs)
