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
# # Glitch gallery
#
# Numbers say how well a signal ranks glitches; images show what it finds. For
# one run of each glitch we draw the training samples that the paper's
# signal for that kind ranks most suspicious. Each caption gives the rank, the
# label given to training, CNCI's suggested label, the score, and the truth: a
# **red frame** marks a real glitch, a grey one a clean sample that the signal
# flagged anyway.

# %% tags=["parameters"]
profile = "embedded"  # embedded, paper, tiny, or a profile YAML file
results_dir = "results"  # the results store
compute_missing = True  # compute missing runs (slow on a CPU)
example_dataset = None  # dataset of the runs shown (None: the first)
example_seed = 0  # seed of the runs shown
n_images = 16  # suspects per gallery

# %% [markdown]
# We load the library.

# %%
import seaborn as sns
from IPython.display import Markdown

import glitchlib as g
from glitchlib import report

sns.set_theme(style="whitegrid")

# %% [markdown]
# The gallery needs one run of each glitch; missing ones are computed now.

# %%
settings = g.profiles.profile_settings(profile)
chapter = report.chapter(profile, results_dir=results_dir, cells=report.with_seed(settings, seed=example_seed),
                         compute=compute_missing)
chapter.summary

# %% [markdown]
# The images on this page come from these runs:

# %%
runs, needed, store = chapter.runs, chapter.cells, chapter.store
Markdown(chapter.provenance)

# %% [markdown]
# ## Class-based noise, ranked by CNCI
#
# The most suspicious samples by CNCI. A mislabeled sample's suggested label is
# usually its true class.

# %%
example = report.pick_run(needed, runs, glitch="class-based", dataset=example_dataset)
display(Markdown(report.run_caption(example)))
fig = report.suspect_gallery(store, example, "cnci", k=n_images)

# %% [markdown]
# The same run ranked by self-influence (SI), the simplest existing signal, for
# comparison:

# %%
fig = report.suspect_gallery(store, example, "si", k=n_images)

# %% [markdown]
# ## Uniform class noise, ranked by CNCI

# %%
example = report.pick_run(needed, runs, glitch="uniform", dataset=example_dataset)
display(Markdown(report.run_caption(example)))
fig = report.suspect_gallery(store, example, "cnci", k=n_images)

# %% [markdown]
# ## Anomalies, ranked by PCID
#
# Images of another dataset, all given one label: PCID should bring them to
# the top.

# %%
example = report.pick_run(needed, runs, glitch="anomalies", dataset=example_dataset)
display(Markdown(report.run_caption(example)))
fig = report.suspect_gallery(store, example, "pcid", k=n_images)

# %% [markdown]
# ## Mixed glitches, ranked by CFRank
#
# Both kinds at once; the caption's truth says which kind each sample is.

# %%
example = report.pick_run(needed, runs, glitch="mixed", dataset=example_dataset)
display(Markdown(report.run_caption(example)))
fig = report.suspect_gallery(store, example, "cfrank", k=n_images)
