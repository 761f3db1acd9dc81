"""Tables: loading, split, preprocessing fitted on training rows only, offline failure, settings (SPEC.md 9.7)."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from glitchlib import data, experiments
from glitchlib.settings import ExperimentSettings
from glitchlib.data import tabular
from glitchlib.profiles import profile_settings, runnable, tabular_cells


@pytest.mark.parametrize("name, rows, features, classes", [
    ("breast_cancer", 569, 30, 2), ("wine", 178, 13, 3), ("digits", 1797, 64, 10)])
def test_shipped_tables_load_with_their_shapes_and_classes(name, rows, features, classes):
    from sklearn import datasets

    raw = getattr(datasets, f"load_{name}")()
    ds = data.load(name, seed=3)
    assert ds.x_train.shape[1] == ds.x_test.shape[1] == features and ds.x_train.dtype == torch.float32
    assert len(ds.y_train) + len(ds.y_test) == rows and ds.n_classes == classes
    assert len(ds.y_test) == round(0.2 * rows)
    rows_used = np.concatenate([ds.train_index, ds.test_index])
    assert sorted(rows_used) == list(range(rows))  # disjoint, every row used
    np.testing.assert_array_equal(ds.y_train.numpy(), raw.target[ds.train_index])
    np.testing.assert_array_equal(ds.y_test.numpy(), raw.target[ds.test_index])
    # stratified: every class keeps its share in the validation set (to one sample)
    for c in range(classes):
        assert abs((ds.y_test == c).sum().item() - 0.2 * (raw.target == c).sum()) <= 1
    assert not np.array_equal(data.load(name, seed=4).test_index, ds.test_index)
    torch.testing.assert_close(data.load(name, seed=3).x_train, ds.x_train, rtol=0, atol=0)


def test_digits_are_the_8x8_images_as_64_features():
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import QuantileTransformer

    ds = data.load("digits", seed=0)
    images = load_digits().images.reshape(-1, 64)
    # the transform is monotone per pixel: the order of the rows is that of the raw pixel values
    for j in (20, 36, 43):
        raw, out = images[ds.train_index, j], ds.x_train[:, j].numpy()
        assert np.all(np.diff(out[np.argsort(raw, kind="stable")]) >= -1e-6)
    assert isinstance(tabular._fit_quantile_transform(images[:100], seed=0), QuantileTransformer)


def _fake_table(monkeypatch, x: np.ndarray, y: np.ndarray) -> None:
    table = tabular.Table(x.astype(np.float32), y.astype(np.int64), ["a", "b"], "fixture")
    monkeypatch.setattr(data, "read_table", lambda name, *, root, download=False: table)


def test_quantile_transform_is_fitted_on_training_rows_only(monkeypatch):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 3)), np.repeat([0, 1], 100)
    train_index, test_index = tabular._train_validation_split(y, seed=5)
    _fake_table(monkeypatch, x, y)
    clean = data.load("wine", seed=5)

    planted = x.copy()
    planted[test_index[0]] = 1e6  # an outlier in a validation row
    _fake_table(monkeypatch, planted, y)
    with_outlier = data.load("wine", seed=5)
    torch.testing.assert_close(with_outlier.x_train, clean.x_train, rtol=0, atol=0)
    torch.testing.assert_close(with_outlier.x_test[1:], clean.x_test[1:], rtol=0, atol=0)

    # the same outlier in a training row does move the transform (so the check above can fail)
    planted = x.copy()
    planted[train_index[0]] = 1e6
    _fake_table(monkeypatch, planted, y)
    assert not torch.equal(data.load("wine", seed=5).x_test, clean.x_test)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_fails_fast_offline_and_names_the_file(tmp_path, monkeypatch):
    import sklearn.datasets

    def never(*args, **kwargs):
        raise AssertionError("the downloader must not start when the host is unreachable")

    monkeypatch.setattr(sklearn.datasets, "fetch_openml", never)
    monkeypatch.setattr(sklearn.datasets, "fetch_covtype", never)
    monkeypatch.setattr(tabular, "_PORT", _closed_port())
    for name in ("covtype", "jannis", "epsilon"):
        what, _, page = tabular._SOURCES[name]
        monkeypatch.setitem(tabular._SOURCES, name, (what, "127.0.0.1", page))
        with pytest.raises(RuntimeError) as error:
            data.load(name, root=tmp_path, download=True)
        message = str(error.value)
        assert f"cannot download {name}" in message and "127.0.0.1 is unreachable" in message
        assert str(tmp_path / "tabular" / f"{name}.npz") in message and page in message
        with pytest.raises(FileNotFoundError, match=f"{name} is not downloaded.*download=True"):
            data.load(name, root=tmp_path)


def test_a_cached_table_loads_without_network(tmp_path):
    rng = np.random.default_rng(1)
    table = tabular.Table(rng.normal(size=(70, 54)).astype(np.float32), np.arange(70) % 7,
                          [str(c) for c in range(1, 8)], "fixture")
    tabular._save(table, tabular._table_cache_path("covtype", tmp_path))
    ds = data.load("covtype", seed=0, root=tmp_path)
    assert ds.x_train.shape == (56, 54) and ds.x_test.shape == (14, 54) and ds.n_classes == 7
    assert "cached in" in ds.source


def test_anomalies_and_image_models_are_refused_for_tables():
    with pytest.raises(ValueError, match="anomalies are not defined for tables"):
        ExperimentSettings(dataset="wine", model="mlp", pretrained=False, glitch="anomalies")
    with pytest.raises(ValueError, match="glitch='mixed'"):
        ExperimentSettings(dataset="wine", model="mlp", pretrained=False, glitch="mixed")
    with pytest.raises(ValueError, match="name='wine' is a table"):
        data.load_ood("wine")
    with pytest.raises(ValueError, match="model='efficientnet_lite0' does not fit dataset='wine'"):
        ExperimentSettings(dataset="wine", model="efficientnet_lite0", glitch="uniform")
    with pytest.raises(ValueError, match="model='mlp' does not fit dataset='mnist'"):
        ExperimentSettings(dataset="mnist", model="mlp", pretrained=False)
    with pytest.raises(ValueError, match="pretrained=True"):
        ExperimentSettings(dataset="wine", model="mlp", glitch="uniform", pretrained=True)
    assert ExperimentSettings(dataset="wine", model="mlp", glitch="uniform").pretrained is False  # the default


def test_tabular_cells_of_the_profiles():
    embedded = [s for s in profile_settings("embedded") if s.dataset in data.TABULAR_DATASETS]
    assert embedded == tabular_cells("embedded") and len(embedded) == 24
    assert all(runnable(s) == (True, "") for s in embedded)
    assert {s.glitch for s in embedded} == {"uniform"} and {s.seed for s in embedded} == {0, 1, 2}
    paper = [s for s in profile_settings("paper") if s.dataset in data.TABULAR_DATASETS]
    assert {(s.dataset, s.model) for s in paper} == {
        (d, m) for d in ("covtype", "jannis", "epsilon") for m in ("mlp", "tabular_resnet", "ft_transformer")}
    for s in paper:
        ok, reason = runnable(s.replace(data_root="/nonexistent"))
        assert not ok and f"{s.dataset} is not downloaded" in reason and "download=True" in reason
    with pytest.raises(ValueError, match="profile='huge'"):
        tabular_cells("huge")


def test_a_table_runs_through_the_whole_pipeline(tmp_path):
    settings = ExperimentSettings(dataset="wine", model="tabular_resnet", pretrained=False, glitch="uniform",
                                  ratio=0.1, seed=0, epochs=2, n_train=60, n_test=20)
    result = experiments.run(settings, store=tmp_path / "results", progress=False)
    assert result.summary["n_train"] == 60 and result.summary["n_glitches"] == 6
    assert set(result.metrics.signal) >= {"si", "cnci"}
    assert result.matrix("influence").shape == (60, 20)


def test_tabular_claim_and_peer_scores_tables():
    import pandas as pd

    from glitchlib import report

    rows = [{"dataset": "wine", "model": m, "seed": seed, "signal": sig, "f1": f1, "pretrained": False}
            for m, cnci in (("mlp", 0.8), ("ft_transformer", 0.4))
            for seed in (0, 1) for sig, f1 in (("cnci", cnci), ("si", 0.6), ("cleanlab", 0.9))]
    claim = report.tabular_claim(pd.DataFrame(rows))
    assert list(claim.index) == ["paper", "ours"]
    assert claim.loc["paper", "mean F1 of CNCI"] == 0.65 and claim.loc["ours", "mean F1 of CNCI"] == 0.6
    assert claim.loc["ours", "CNCI at least as good as every earlier signal"] == "1 of 2 dataset x model pairs"

    class Scores:  # a store whose one run has a peer column: 4 samples, 2 mislabeled, k = 2
        def load_scores(self, key):
            return pd.DataFrame({"mask": [True, True, False, False], "cnci": [0.0, -1.0, -0.5, -2.0],
                                 "cleanlab": [0.9, 0.8, 0.1, 0.2]})

    cell = tabular_cells("tiny")[0]
    peers = report.peer_f1(Scores(), [cell], peer="cleanlab")
    assert dict(zip(peers.signal, peers.f1)) == {"cnci": 0.5, "cleanlab": 1.0}  # CNCI flags rows 0 and 2
    assert report.peer_f1(Scores(), [cell], peer="confident_learning").empty
