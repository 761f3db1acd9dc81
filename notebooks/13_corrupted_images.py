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
# # Corrupted images
#
# Anomalies need not come from another dataset: an image can be damaged and
# keep its right label. Following MNIST-C (Mu and Gilmer, 2019), 10 % of the
# training images are corrupted in place, on pixel values $v \in [0, 1]$:
#
# - **stripe**: $v \mapsto 1 - v$ on the columns 0-6 and 21-27 (of 28);
# - **brightness**: $v \mapsto \operatorname{clip}(v + 0.3, 0, 1)$.
#
# The inputs are normalised again afterwards, as every input; the mask marks
# the corrupted images, and they are scored like anomalies. The paper's claim:
# **PCID is the only signal that detects them** on MNIST-C (every other
# signal has F1 = 0), and it wins in 7 of the 8 dataset x model pairs. The
# backbone has not seen these images: only their features are computed anew.

# %% tags=["parameters"]
profile = "embedded"  # embedded, paper, tiny, or a profile YAML file
results_dir = "results"  # the results store
compute_missing = True  # compute missing runs (slow on a CPU)
corruption_seeds = 3  # seeds per corruption (the first ones of the profile)
gallery_images = 8  # corrupted images in the gallery

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
# The runs (`glitchlib.studies.corruption_cells`: both corruptions for each
# dataset and model, `corruption_seeds` seeds), and the clean twins of seed 0
# (`glitchlib.studies.clean_twin`: nothing injected) for the gallery's
# originals. To keep the new features cheap, the corruption runs use 2,000
# training samples (`glitchlib.studies.SMALL_N_TRAIN`, so 200 corrupted images
# each) and 3 seeds on the embedded data. Missing ones are computed now.

# %%
settings = g.profiles.profile_settings(profile)
needed = g.studies.corruption_cells(settings, seeds=corruption_seeds)
twins = [g.studies.clean_twin(s) for s in needed if s.seed == 0 and s.corruption == "stripe"]
chapter = report.chapter(profile, results_dir=results_dir, cells=needed, also=twins, compute=compute_missing)
chapter.summary

# %% [markdown]
# The numbers on this page come from these runs:

# %%
runs, store = chapter.runs, chapter.store
metrics = report.with_fields(chapter.metrics, needed, ["corruption"])
Markdown(chapter.provenance)

# %% [markdown]
# ## The corrupted images
#
# The corrupted training images of one run beside their originals (the same
# samples, from a run with nothing injected). Stripe and brightness runs of one
# seed corrupt the same samples.

# %%
stripe = report.pick_run([s for s in needed if s.corruption == "stripe"], runs, seed=0)
bright = report.pick_run([s for s in needed if s.corruption == "brightness"], runs, seed=0)
done = set(chapter.done)
trio = [g.studies.clean_twin(stripe), stripe, bright] if stripe and bright else []
sets = [g.experiments.load_training_set(s, store=store) for s in trio if s.key() in done]
corrupted = np.flatnonzero(sets[1].mask) if len(sets) == 3 else np.array([], dtype=int)
index = corrupted[np.linspace(0, len(corrupted) - 1, min(gallery_images, len(corrupted))).astype(int)]
Markdown(report.run_caption(stripe))

# %% [markdown]
# Rows: original, stripe, brightness.

# %%
images = np.concatenate([t.x[index].numpy() for t in sets]) if len(index) else np.empty((0, 1, 28, 28))
names = ("original", "stripe", "bright")
captions = [f"{name} {sets[0].class_names[sets[0].y[i]]}" for name in names for i in index]
hits = [name != "original" for name in names for _ in index]
fig = report.plot_gallery(g.data.denormalize(images), captions, hits, ncols=max(len(index), 1))

# %% [markdown]
# `glitchlib.glitches.corrupt_images` applied to the originals gives the
# stored images exactly:

# %%
{name: bool(np.array_equal(g.glitches.corrupt_images(sets[0].x[index], corruption=name).numpy(), t.x[index].numpy()))
 for name, t in zip(("stripe", "brightness"), sets[1:]) if len(index)}

# %% [markdown]
# ## F1 of every signal
#
# F1 of the top-$k$ flags ($k$ = the number of corrupted images), mean ± std
# over seeds, per dataset, model and corruption:

# %%
report.metric_table(metrics, metric="f1", columns=("dataset", "model", "corruption"))

# %% [markdown]
# The same as bars, one figure per corruption (the paper's signals in red):

# %%
for corruption in ("stripe", "brightness"):
    fig = report.plot_metric(metrics[metrics["corruption"] == corruption], metric="f1", title=corruption)

# %% [markdown]
# ## Is PCID the only one that detects them?
#
# PCID's mean F1, the best other signal's (CNCI and CFRank left out), their
# difference, and in how many seeds PCID is at least as good:

# %%
report.claim_table_by(metrics, new="pcid", metric="f1", by=("dataset", "model", "corruption"))

# %% [markdown]
# If every F1 above stays near the glitch ratio (0.1, what a random ranking
# gets), no signal separates the corrupted images from the clean ones on this
# model, PCID included, and the paper's claim is not reproduced here: the
# frozen ImageNet backbone may map a corrupted digit close to its clean
# class. Average precision (about 0.1 for a random ranking):

# %%
report.metric_table(metrics, metric="ap", columns=("dataset", "model", "corruption"))
