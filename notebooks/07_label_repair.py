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
# # Label repair
#
# Finding a mislabeled sample is half the work; a person must then give it the
# right label. CNCI comes with a suggestion: the class $c^*_i$ that the sample
# hurts most on the validation set (the NIL-opt argmin), which for a mislabeled
# sample is usually its true class. This chapter measures how often the
# suggestion is right.

# %% tags=["parameters"]
profile = "embedded"  # embedded, paper, tiny, or a profile YAML file
results_dir = "results"  # the results store
compute_missing = True  # compute missing runs (slow on a CPU)
example_dataset = None  # dataset of the run shown (None: the first)
example_seed = 0  # seed of the run shown

# %% [markdown]
# We load the library.

# %%
import seaborn as sns
from IPython.display import Markdown

from glitchlib import report

sns.set_theme(style="whitegrid")

# %% [markdown]
# Label repair concerns the runs with mislabeled samples: class-based and
# uniform noise. Missing ones are computed now.

# %%
chapter = report.chapter(profile, results_dir=results_dir, glitch=("class-based", "uniform"), compute=compute_missing)
chapter.summary

# %% [markdown]
# The numbers on this page come from these runs:

# %%
runs, store = chapter.runs, chapter.store
Markdown(chapter.provenance)

# %% [markdown]
# ## Repair accuracy
#
# Among all mislabeled samples, the share whose suggested label equals the true
# label (mean ± std over seeds). Guessing among the nine other classes would be
# right about 11 % of the time.

# %%
report.repair_table(runs)

# %% [markdown]
# ## One run in detail
#
# We look at one class-based run: which labels were given, and which ones CNCI
# suggests.

# %%
example = report.pick_run(chapter.cells, runs, glitch="class-based", dataset=example_dataset, seed=example_seed)
scores = report.run_scores(store, example)
Markdown(report.run_caption(example))

# %% [markdown]
# The injected noise: each true class (rows) of a mislabeled sample was sent to
# one other class (columns), so every row has a single non-zero cell.

# %%
dataset = example.dataset if example else None
fig = report.plot_confusion(report.label_confusion(scores, dataset=dataset, column="y"), title="injected noise")

# %% [markdown]
# CNCI's suggestions for the same samples: a perfect repair puts every count on
# the diagonal.

# %%
suggested = report.label_confusion(scores, dataset=dataset, column="suggested_label")
fig = report.plot_confusion(suggested, title="CNCI's suggestions")

# %% [markdown]
# In practice one repairs the samples CNCI flags (its top $k$), not all of
# them. The repair accuracy on those, beside all mislabeled samples:

# %%
report.repair_summary(scores, signal="cnci") if len(scores) else scores
