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
# # Your own images
#
# The paper closes with ImageWoof, ten dog breeds photographed in the wild
# (SPEC section 9.10), to show the signals on real photographs. This chapter does
# the same on a folder of labelled images, the layout most image collections
# already have: one sub-folder per class. One command trains a head on a frozen
# pretrained backbone over the folder, computes TracIn and every signal, and writes
# a table of suspects and a page of thumbnails.
#
# So that the page builds offline, the folder is written here from the embedded
# Fashion-MNIST subset, with a few images deliberately filed in the wrong class
# folder; the chapter then checks whether the scan finds them.

# %% tags=["parameters"]
dataset = "fmnist"  # embedded data the example folder is written from
classes = [0, 1, 5, 7, 8]  # classes written (T-shirt/top, Trouser, Sandal, Sneaker, Bag)
per_class = 50  # images per class
misfiled_ratio = 0.06  # share of images written into a wrong class folder
seed = 0  # draws the images, the misfiled ones, the split and the head
results_dir = "results"  # the folder and the scan's output go under results_dir/own_images

# %% [markdown]
# We import the library.

# %%
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown

import glitchlib as g

# %% [markdown]
# ## A labelled folder with misfiled images
#
# We draw `per_class` images of each chosen class, pick a share of them with
# uniform label noise (SPEC section 2) and write every image into the folder of the
# label it is *given*, so the noisy ones land in a wrong folder.

# %%
data = g.data.load(dataset)
y_all = data.y_train.numpy()
rng = np.random.default_rng(seed)
chosen = np.concatenate([rng.choice(np.flatnonzero(y_all == c), per_class, replace=False) for c in classes])
y_true = np.searchsorted(classes, y_all[chosen])  # labels 0 .. len(classes) - 1
noise = g.glitches.uniform_noise(y_true, ratio=misfiled_ratio, seed=seed, n_classes=len(classes))
names = [data.class_names[c].replace("/", "-") for c in classes]

# %% [markdown]
# The folder, written from scratch:

# %%
folder = Path(results_dir) / "own_images" / "folder"
shutil.rmtree(folder, ignore_errors=True)
written = g.data.folders.write_image_folder(data.x_train[chosen], noise.y, class_names=names, path=folder)
files = [str(Path(f).resolve()) for f in written]
misfiled = {f for f, wrong in zip(files, noise.mask) if wrong}
Markdown(f"{len(files)} images in {len(names)} class folders under `{folder}`; "
         f"{len(misfiled)} of them misfiled (data: embedded {dataset}, seed {seed}).")

# %% [markdown]
# ## One command
#
# On the command line the scan is
#
# ```bash
# glitchlib scan results/own_images/folder --out results/own_images/scan --ratio-hint 0.06
# ```
#
# and in Python it is `glitchlib.scan.scan_folder`. It holds out a stratified 15 %
# of every class as the validation set, trains a linear head on the frozen
# ImageNet-pretrained EfficientNet-Lite0 with one checkpoint per epoch, and computes
# the influence matrices and every signal (SPEC sections 3 and 4).

# %%
result = g.scan.scan_folder(folder, out=Path(results_dir) / "own_images" / "scan",
                            ratio_hint=misfiled_ratio, seed=seed, progress=False)
Markdown(f"{len(result.suspects)} training images, validation accuracy {result.val_acc:.3f}; "
         f"output in `{result.out}`.")

# %% [markdown]
# ## The table of suspects
#
# `suspects.csv` has one row per training image: its file, the label its folder
# gives it, the label the influence suggests ($c^*$, the class it hurts most), every
# signal's score and the rank by CNCI, PCID and CFRank (1 = most suspicious).
# Its first rows, most suspicious by CNCI first:

# %%
head = result.suspects.head(10).assign(file=lambda t: t["file"].map(lambda f: "/".join(Path(f).parts[-2:])))
head[["file", "given_label", "suggested_label", "cnci", "rank_cnci", "rank_pcid", "rank_cfrank"]]

# %% [markdown]
# ## The top suspects, as the page shows them
#
# `index.html` shows the top suspects as thumbnails, given and suggested label
# under each. Here the top twelve by CNCI; a red frame marks an image we misfiled.

# %%
top = result.suspects.head(12)
fig, axes = plt.subplots(2, 6, figsize=(11, 4.4))
for ax, row in zip(axes.flat, top.itertuples()):
    ax.imshow(plt.imread(row.file), cmap="gray")
    ax.set_title(f"{row.given_label}\n→ {row.suggested_label}", fontsize=8)
    ax.set_xticks([]), ax.set_yticks([])
    for side in ax.spines.values():
        side.set(color="red" if row.file in misfiled else "lightgrey", linewidth=3)
plt.tight_layout()

# %% [markdown]
# ## Did it find them?
#
# We know which images we misfiled, so we can score the ranking as the paper
# scores a run: F1 when the $k$ highest-scoring images are flagged, $k$ = the number
# of misfiled images (SPEC section 5), for CNCI, CFRank and self-influence.

# %%
truth = result.suspects["file"].isin(misfiled).to_numpy()
found = pd.Series({s: g.metrics.detection_f1(result.suspects[s].to_numpy(), truth) for s in ("cnci", "cfrank", "si")},
                  name=f"F1 at k = {int(truth.sum())}")
found.to_frame().T.round(3)

# %% [markdown]
# Among the misfiled images that landed in the training split, the suggested
# label $c^*$ is the true class for this share of them (repair accuracy):

# %%
true_names = {f: names[t] for f, t in zip(files, y_true)}
rows = result.suspects[truth]
Markdown(f"{(rows['suggested_label'] == rows['file'].map(true_names)).mean():.0%} "
         f"of {len(rows)} misfiled training images.")

# %% [markdown]
# ## On a real folder
#
# Point the command at any folder with one sub-folder per class (or with `train/`
# and `val/` above them, which are then used as the split):
#
# ```bash
# glitchlib scan ~/pictures/labelled --out ~/pictures/scan --ratio-hint 0.05
# ```
#
# Images are decoded with PIL, converted to RGB and resized to the backbone's
# input; an unreadable file, an empty class folder or a single class stops the scan
# with a message naming it. The backbone's features and the checkpoints are kept in
# `--out`, so a scan that is interrupted resumes, and a finished one is read back.
# `--device cuda` runs it on a GPU. ImageWoof itself is
# `glitchlib.data.load("imagewoof", download=True)`; its runs are in the `paper`
# profile.
