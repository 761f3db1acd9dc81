"""Image folders, ImageWoof's offline failure and ``glitchlib scan`` on a folder the tests write.

The folder holds three visually distinct classes of generated images (red
squares, green discs, blue stripes) and a few planted misfiled images; the
planted ones must rank near the top. Bad folders must give errors that name the
file or folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from glitchlib import data
from glitchlib.cli import main as cli_main
from glitchlib.data import folders
from glitchlib.scan import scan_folder

CLASSES = ("blue", "green", "red")


def _image(kind: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    img = (rng.random((size, size, 3)) * 60).astype(np.uint8)  # dark noise
    yy, xx = np.mgrid[:size, :size]
    a, b = rng.integers(4, 10, size=2)
    if kind == "red":
        img[a:size - b, a:size - b, 0] = 230
    elif kind == "green":
        img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 2 - a) ** 2, 1] = 230
    else:
        img[(xx // max(a // 2, 2)) % 2 == 0, 2] = 230
    return img


def _write_folder(root, per_class=30, planted=(("red", "green", 2), ("blue", "red", 2)), seed=0):
    """A labelled folder; ``planted`` = (true kind, folder it is misfiled in, count). Returns the planted files."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(_image(c, rng)).save(root / c / f"{c}_{i:03d}.png")
    misfiled = []
    for kind, folder, count in planted:
        for i in range(count):
            path = root / folder / f"zz_{kind}_as_{folder}_{i}.png"
            Image.fromarray(_image(kind, rng)).save(path)
            misfiled.append(str(path))
    return misfiled


# ------------------------------------------------------------------ loading
def test_load_image_folder_splits_stratified_and_normalises(tmp_path):
    from PIL import Image

    for c, value in (("a", 0), ("b", 255)):
        (tmp_path / c).mkdir()
        for i in range(20):
            Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    ds = data.load_image_folder(tmp_path, test_fraction=0.15, seed=0, progress=False)
    assert ds.class_names == ["a", "b"] and ds.n_classes == 2
    assert ds.x_train.shape == (34, 3, 8, 8) and ds.x_test.shape == (6, 3, 8, 8)
    assert np.bincount(ds.y_test.numpy()).tolist() == [3, 3]  # round(0.15 * 20) = 3 per class
    # grey 0 -> -1 and 255 -> +1 on all three channels (RGB conversion, mean 0.5, std 0.5)
    assert torch.equal(ds.x_train[ds.y_train == 0], torch.full_like(ds.x_train[ds.y_train == 0], -1.0))
    assert torch.equal(ds.x_train[ds.y_train == 1], torch.ones_like(ds.x_train[ds.y_train == 1]))
    files = set(ds.train_files) | set(ds.test_files)
    assert len(files) == 40 and not set(ds.train_files) & set(ds.test_files)
    for f, y in zip(ds.train_files, ds.y_train.tolist()):
        assert f.split("/")[-2] == ds.class_names[y]


def test_load_image_folder_train_val_layout_and_resize(tmp_path):
    from PIL import Image

    for split, n in (("train", 5), ("val", 2)):
        for c in ("x", "y"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (10 + i, 7), (255, 0, 0)).save(tmp_path / split / c / f"{i}.jpg")
    ds = data.load_image_folder(tmp_path, image_size=16, progress=False)
    assert ds.x_train.shape == (10, 3, 16, 16) and ds.x_test.shape == (4, 3, 16, 16)
    assert all("/val/" in f for f in ds.test_files)
    # pure red stays pure red after the resize: channel 0 is +1, the others -1 (to JPEG's rounding)
    assert torch.allclose(ds.x_train[:, 0], torch.ones(10, 16, 16), atol=0.05)
    assert torch.allclose(ds.x_train[:, 1:], -torch.ones(10, 2, 16, 16), atol=0.05)


@pytest.mark.parametrize("case", ["not a folder", "no classes", "empty class", "single class", "unreadable",
                                  "sizes differ", "train val mismatch", "bad fraction"])
def test_bad_folders_name_the_culprit(tmp_path, case):
    from PIL import Image

    def img(path, size=(8, 8)):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size).save(path)

    kwargs, expected = {}, None
    root = tmp_path / "imgs"
    root.mkdir()
    if case == "not a folder":
        root = tmp_path / "file.txt"
        root.write_text("x")
        expected = "is not a folder"
    elif case == "no classes":
        expected = "no class folders"
    elif case == "empty class":
        img(root / "a" / "1.png")
        (root / "b").mkdir()
        expected = str(root / "b")
    elif case == "single class":
        img(root / "a" / "1.png")
        expected = "single class"
    elif case == "unreadable":
        for c in "ab":
            for i in range(10):
                img(root / c / f"{i}.png")
        (root / "b" / "broken.png").write_bytes(b"not an image")
        expected = str(root / "b" / "broken.png")
    elif case == "sizes differ":
        for c in "ab":
            for i in range(10):
                img(root / c / f"{i}.png", size=(8, 8 + (c == "b")))
        expected = "image_size"
    elif case == "train val mismatch":
        img(root / "train" / "a" / "1.png")
        img(root / "train" / "b" / "1.png")
        img(root / "val" / "a" / "1.png")
        img(root / "val" / "c" / "1.png")
        expected = "different classes"
    elif case == "bad fraction":
        kwargs, expected = {"test_fraction": 0.9}, "test_fraction"
    with pytest.raises(ValueError, match=None) as info:
        data.load_image_folder(root, progress=False, **kwargs)
    assert expected in str(info.value)


def test_imagewoof_offline_fails_fast_and_says_what_to_place_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="imagewoof2-320"):
        data.load("imagewoof", root=tmp_path)
    # a download that cannot connect (a closed local port) fails at once with the same advice
    start = time.perf_counter()
    with pytest.raises(RuntimeError) as info:
        folders.load_imagewoof(root=tmp_path, download=True, url="http://127.0.0.1:9/imagewoof2-320.tgz")
    assert "imagewoof2-320" in str(info.value) and str(tmp_path) in str(info.value)
    assert not list(tmp_path.glob("*.part"))
    assert time.perf_counter() - start < 60  # a bound on a hang, not a speed target


def test_imagewoof_reads_the_fastai_layout(tmp_path):
    from PIL import Image

    root = tmp_path / folders.IMAGEWOOF_FOLDER
    for split in ("train", "val"):
        for wnid in list(folders.IMAGEWOOF_CLASSES)[:2]:
            (root / split / wnid).mkdir(parents=True)
            for i in range(10):
                Image.new("RGB", (40, 30)).save(root / split / wnid / f"{i}.JPEG")
    ds = data.load("imagewoof", root=tmp_path, subset=0.5)
    assert ds.class_names == ["Shih-Tzu", "Rhodesian ridgeback"]
    assert ds.x_train.shape == (10, 3, 224, 224) and ds.x_test.shape == (10, 3, 224, 224)


# ------------------------------------------------------------------ scan
@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan")
    planted = _write_folder(root / "images")
    result = scan_folder(root / "images", out=root / "out", ratio_hint=0.05, seed=0, progress=False)
    return root, planted, result


def test_scan_ranks_planted_misfiled_images_first(scanned):
    root, planted, result = scanned
    table = result.suspects
    top = set(table.sort_values("rank_cnci").head(2 * len(planted))["file"])
    assert set(planted) <= top, table.head(10)
    # the suggested label of a planted image is the class it really shows
    for f in planted:
        row = table[table["file"] == f].iloc[0]
        assert row["suggested_label"] == f.split("zz_")[1].split("_as_")[0]
    on_disk = (root / "out" / "suspects.csv").read_text().splitlines()[0].split(",")
    for column in ("file", "given_label", "suggested_label", "cnci", "pcid", "cfrank", "si",
                   "rank_cnci", "rank_pcid", "rank_cfrank", "flagged"):
        assert column in on_disk


def test_scan_page_is_self_contained(scanned):
    root, planted, result = scanned
    page = result.page.read_text()
    assert page.count("<img src='data:image/png;base64,") >= 3 * min(24, len(result.suspects))
    assert "http://" not in page and "https://" not in page


@pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser")), reason="needs Chromium")
def test_scan_page_renders_its_thumbnails_in_chromium(scanned, tmp_path):
    browser = next(shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b))
    script = ("<script>window.onload=()=>{const ok=[...document.images].filter(i=>i.complete&&i.naturalWidth>0)"
              ".length;document.title='loaded '+ok+' of '+document.images.length;}</script>")
    page = tmp_path / "page.html"
    page.write_text(scanned[2].page.read_text().replace("</body>", script + "</body>"))
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    n = page.read_text().count("<img ")
    assert f"<title>loaded {n} of {n}</title>" in dom


def test_scan_reads_a_finished_scan_back(scanned):
    root, planted, result = scanned
    again = scan_folder(root / "images", out=root / "out", ratio_hint=0.05, seed=0, progress=False)
    assert not again.computed
    assert again.suspects["file"].tolist() == result.suspects["file"].tolist()


def test_scan_cli_runs_and_refuses_bad_input(scanned, tmp_path, capsys):
    root, planted, result = scanned
    assert cli_main(argv=["scan", str(root / "images"), "--out", str(root / "out"), "--ratio-hint", "0.05",
                     "--quiet"]) == 0
    assert "read back" in capsys.readouterr().out
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a").mkdir()
    for argv, flag in (([str(tmp_path / "only"), "--out", str(tmp_path / "o")], "PATH"),
                       ([str(root / "images"), "--out", str(tmp_path / "o"), "--ratio-hint", "1.5"], "--ratio-hint")):
        proc = subprocess.run([sys.executable, "-m", "glitchlib.cli", "scan", *argv],
                              capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and f"argument {flag}" in proc.stderr


def test_runnability_of_imagewoof_cells_counts_labels_without_decoding_images(tmp_path, monkeypatch):
    from PIL import Image

    from glitchlib.settings import ExperimentSettings
    from glitchlib.profiles import runnable

    root = tmp_path / folders.IMAGEWOOF_FOLDER
    for split, n in (("train", 20), ("val", 10)):
        for wnid in list(folders.IMAGEWOOF_CLASSES)[:3]:
            (root / split / wnid).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8)).save(root / split / wnid / f"{i}.JPEG")

    def no_decoding(*args, **kwargs):
        raise AssertionError("the runnability check decoded images")

    monkeypatch.setattr(folders, "read_images", no_decoding)
    cell = dict(dataset="imagewoof", model="efficientnet_lite0", glitch="uniform", data_root=str(tmp_path))
    assert runnable(ExperimentSettings(**cell, ratio=0.1, subset=0.5)) == (True, "")
    # 30 training images at subset 0.5, 10 % of them: 1 glitch; 1 % selects none, and says so
    ok, reason = runnable(ExperimentSettings(**cell, ratio=0.01, subset=0.5))
    assert not ok and "ratio" in reason
