"""The real MNIST and Fashion-MNIST subsets shipped inside the package.

Each ``embedded/<name>.npz`` holds (built by ``scripts/build_embedded_data.py``; the
provenance is in ``embedded/README.md`` and in the ``provenance`` entry):

=============== ============ =====================================================
key             dtype        meaning
=============== ============ =====================================================
images          uint8        ``N x 28 x 28`` every stored image
labels          uint8        ``N`` class of every stored image
train_index     int64        rows of ``images`` forming the training subset
test_index      int64        rows forming the validation ("test") subset
pool_index      int64        rows forming the out-of-distribution pool offered to the
                             *other* dataset's anomaly runs
source_split    uint8        per row, which source file it comes from (see provenance)
source_index    int64        per row, its position inside that source file
provenance      str (0-d)    JSON: sources with sha256, seed, how the subsets were drawn
=============== ============ =====================================================
"""

from __future__ import annotations

import functools
import json
import zipfile
from pathlib import Path

import numpy as np

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
EMBEDDED = ("mnist", "fmnist")
KEYS = ("images", "labels", "train_index", "test_index", "pool_index",
        "source_split", "source_index", "provenance")


def embedded_path(name: str) -> Path:
    return EMBEDDED_DIR / f"{name}.npz"


@functools.lru_cache(maxsize=None)
def read_embedded(name: str) -> dict[str, np.ndarray]:
    """All arrays of ``embedded/<name>.npz`` (read-only, cached per process)."""
    path = embedded_path(name)
    rebuild = "reinstall glitchlib or rebuild it with scripts/build_embedded_data.py"
    if not path.is_file():
        raise FileNotFoundError(f"embedded data file {str(path)!r} is missing; {rebuild}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in KEYS}
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise RuntimeError(f"embedded data file {str(path)!r} is corrupt ({exc}); "
                           f"{rebuild}") from exc
    images, labels = arrays["images"], arrays["labels"]
    ok = (images.dtype == np.uint8 and images.ndim == 3 and labels.shape == (len(images),)
          and labels.max() < 10)
    for key in ("train_index", "test_index", "pool_index"):
        index = arrays[key]
        ok = ok and index.ndim == 1 and index.size > 0 and 0 <= index.min() \
            and index.max() < len(images)
    if not ok:
        raise RuntimeError(f"embedded data file {str(path)!r} has unexpected contents; "
                           f"{rebuild}")
    for array in arrays.values():
        array.setflags(write=False)
    return arrays


def provenance(name: str) -> dict:
    """The build record stored in ``embedded/<name>.npz`` (sources, sha256, seed)."""
    return json.loads(str(read_embedded(name)["provenance"]))
