"""Arguments are checked by value, with one kind of message, by every public entry point.

Numbers of any numeric type are accepted by their value (NumPy scalars, 0-d
arrays and tensors), booleans are refused as numbers, NaN and infinities are
refused where they make no sense, and notebook parameters (which papermill may
pass as text) are read by value or refused, never tested for truth.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import glitchlib as g
from glitchlib import _validation as v
from glitchlib import report
from glitchlib.settings import ExperimentSettings


# ------------------------------------------------------------------ the rules
@pytest.mark.parametrize("value, expected", [
    (0.1, 0.1), (np.float32(0.1), 0.1), (np.float64(0.25), 0.25), (np.array(0.5), 0.5),
    (torch.tensor(0.1), 0.1), (1, 1.0), (np.int8(1), 1.0),
])
def test_numbers_are_read_by_value(value, expected):
    assert v.as_real(value, "x") == expected and type(v.as_real(value, "x")) is float


@pytest.mark.parametrize("value", [True, np.bool_(False), "0.1", None, [0.1], float("nan"), float("inf"),
                                   np.float32("nan"), torch.tensor(float("inf")), 1 + 2j])
def test_bools_text_nan_and_inf_are_not_numbers(value):
    with pytest.raises(ValueError, match=r"^x=.*: need a finite number"):
        v.as_real(value, "x")


@pytest.mark.parametrize("value, expected", [(3, 3), (np.int64(3), 3), (np.uint8(3), 3), (3.0, 3),
                                             (np.float32(3), 3), (torch.tensor(3), 3)])
def test_integers_are_read_by_value(value, expected):
    assert v.as_int(value, "n") == expected and type(v.as_int(value, "n")) is int


@pytest.mark.parametrize("value", [3.5, True, "3", float("inf"), float("nan"), -1])
def test_integers_refuse_fractions_bools_text_and_out_of_range(value):
    with pytest.raises(ValueError, match=r"^n=.*: need an integer >= 0"):
        v.as_int(value, "n", low=0)


@pytest.mark.parametrize("text, expected", [
    ("false", False), ("False", False), ("FALSE", False), ("no", False), ("0", False), ("off", False),
    ("true", True), ("True", True), ("yes", True), ("1", True), ("on", True), (" true ", True),
    (True, True), (np.bool_(False), False), (0, False), (1, True),
])
def test_notebook_booleans_accept_the_usual_spellings(text, expected):
    assert v.as_bool(text, "compute_missing", text=True) is expected


@pytest.mark.parametrize("text", ["maybe", "", "2", 2, 0.5, None, "ture"])
def test_notebook_booleans_refuse_anything_else_naming_the_parameter(text):
    with pytest.raises(ValueError, match=r"^compute_missing=.*: need True or False"):
        v.as_bool(text, "compute_missing", text=True)


def test_a_non_empty_string_is_never_true_outside_text_mode():
    with pytest.raises(ValueError, match="flag="):
        v.as_bool("false", "flag")
    with pytest.raises(ValueError, match="flag="):
        v.as_bool(1, "flag")


def test_notebook_numbers_and_none_from_text():
    assert v.as_ratio("0.01", text=True) == 0.01
    assert v.as_ratio("none", optional=True, text=True) is None
    assert v.as_ratio("null", optional=True, text=True) is None
    assert v.as_int("2", "seeds", text=True) == 2
    with pytest.raises(ValueError, match="ratio='ten'"):
        v.as_ratio("ten", text=True)


# ----------------------------------------------- notebook parameters, kind 1
def test_ensure_results_reads_compute_false_as_false(tmp_path, monkeypatch):
    import glitchlib.grid as grid

    monkeypatch.setattr(grid, "run_grid", lambda *a, **k: pytest.fail("compute='false' ran the grid"))
    settings = [ExperimentSettings(dataset="fmnist", n_train=200, n_test=60)]
    status = report.ensure_results(settings, tmp_path / "results", compute="false")
    assert list(status["status"]) == ["missing"]
    assert not (tmp_path / "results").exists()
    with pytest.raises(ValueError, match="compute='nope'"):
        report.ensure_results(settings, tmp_path / "results", compute="nope")


def test_other_notebook_parameters_are_read_by_value():
    settings = [ExperimentSettings(dataset="fmnist", seed=s) for s in range(3)]
    assert [s.ratio for s in report.at_ratio(settings, ratio="0.01", seeds="2")] == [0.01, 0.01]
    assert report.at_ratio(settings, ratio="None") == []
    assert [s.seed for s in report.with_seed(settings, seed="1")] == [1]
    runs = pd.DataFrame({"key": [s.key() for s in settings]})
    assert report.pick_run(settings, runs, dataset="none", seed="2").seed == 2
    with pytest.raises(ValueError, match="seed='two'"):
        report.pick_run(settings, runs, seed="two")


# ------------------------------------------------------------- settings, kind 4
def test_settings_accept_numpy_numbers_by_value_with_the_same_key():
    plain = ExperimentSettings(ratio=0.1, seed=1, n_train=300, lr=0.02, epochs=3)
    numpy = ExperimentSettings(ratio=np.float32(0.1), seed=np.int64(1), n_train=np.int32(300),
                               lr=np.float64(0.02), epochs=np.int16(3))
    assert numpy == plain and numpy.key() == plain.key()
    assert type(numpy.seed) is int and type(numpy.ratio) is float
    assert ExperimentSettings.from_dict(numpy.to_dict()) == plain


@pytest.mark.parametrize("field, value", [
    ("ratio", float("nan")), ("ratio", True), ("seed", True), ("seed", 1.5), ("lr", float("nan")),
    ("lr", float("inf")), ("lr", 0), ("subset", float("nan")), ("epochs", True), ("pretrained", 1),
    ("pretrained", "false"), ("n_train", np.float64("nan")),
])
def test_settings_refuse_by_value_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^{field}="):
        ExperimentSettings(**{field: value})


def test_train_settings_by_value():
    s = g.settings.TrainSettings(lr=np.float32(0.02), batch_size=np.int64(64), epochs=2.0)
    assert (s.lr, s.batch_size, s.epochs) == (0.02, 64, 2) and type(s.batch_size) is int
    for bad in (float("nan"), float("inf"), -1.0, True):
        with pytest.raises(ValueError, match="^lr="):
            g.settings.TrainSettings(lr=bad)


# -------------------------------------------------------------- train.fit, kind 4
def _toy_fit_inputs():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2), torch.randn(8, 3), torch.randint(0, 2, (8,))


@pytest.mark.parametrize("settings", [
    {"lr": float("nan"), "batch_size": 4, "epochs": 1},
    {"lr": float("inf"), "batch_size": 4, "epochs": 1},
    {"lr": 0.1, "batch_size": True, "epochs": 1},
    {"lr": 0.1, "batch_size": 4, "epochs": 1.5},
])
def test_fit_refuses_a_mapping_with_meaningless_values(settings):
    model, x, y = _toy_fit_inputs()
    with pytest.raises(ValueError, match="^(lr|batch_size|epochs)="):
        g.train.fit(model, x, y, None, None, settings=settings, progress=False)


def test_fit_accepts_a_mapping_with_numpy_numbers():
    model, x, y = _toy_fit_inputs()
    result = g.train.fit(model, x, y, None, None, settings={"lr": np.float32(0.1), "batch_size": np.int64(4),
                                                   "epochs": np.int64(2)}, seed=np.int64(0), progress=False)
    assert len(result.checkpoints) == 2 and result.checkpoints[0].learning_rate == 0.1
    assert all(torch.isfinite(t).all() for t in result.checkpoints[-1].state_dict.values())


def test_fit_refuses_nan_inputs():
    model, x, y = _toy_fit_inputs()
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="x_train contains NaN"):
        g.train.fit(model, x, y, None, None, settings={"lr": 0.1, "batch_size": 4, "epochs": 1}, progress=False)


# ------------------------------------------------ signals, metrics, injectors, kind 4
def test_metrics_take_k_by_value_and_refuse_bools():
    scores, mask = np.array([0.9, 0.1, 0.8, 0.2]), np.array([True, False, True, False])
    assert g.metrics.detection_f1(scores, mask, k=np.int64(2)) == 1.0
    assert g.metrics.detection_f1(scores, mask, k=2.0) == 1.0
    with pytest.raises(ValueError, match="^k=True"):
        g.metrics.detection_f1(scores, mask, k=True)
    with pytest.raises(ValueError, match="scores contains NaN"):
        g.metrics.detection_f1(np.array([np.nan, 0.1, 0.8, 0.2]), mask)


def test_signals_take_n_classes_by_value():
    I = np.array([[1.0, -1.0], [-2.0, 0.5]])
    y_train, y_test = np.array([0, 1]), np.array([0, 1])
    expected = g.signals.nil(I, y_train, y_test)
    assert np.array_equal(g.signals.nil(I, y_train, y_test, n_classes=np.int64(2)), expected)
    with pytest.raises(ValueError, match="^n_classes=True"):
        g.signals.nil(I, y_train, y_test, n_classes=True)


def test_injectors_take_numbers_by_value():
    y = np.repeat(np.arange(4), 10)
    plain = g.glitches.uniform_noise(y, ratio=0.1, seed=3)
    numpy = g.glitches.uniform_noise(y, ratio=np.float32(0.1), seed=np.int64(3), n_classes=np.int64(4))
    assert np.array_equal(plain.y, numpy.y)
    same = g.glitches.class_based_noise(y, ratio=0.2, seed=0, n_contaminated=np.int64(2))
    assert same.mask.sum() == 4
    for ratio in (float("nan"), True, 0.0, 0.6):
        with pytest.raises(ValueError, match="^ratio="):
            g.glitches.uniform_noise(y, ratio=ratio, seed=0)
    with pytest.raises(ValueError, match="^seed="):
        g.glitches.uniform_noise(y, ratio=0.1, seed=-1)


def test_class_based_noise_blames_the_class_size_not_the_sample_count():
    y = np.repeat(np.arange(10), 2)  # 20 samples, 2 per class
    with pytest.raises(ValueError, match=r"ratio=0.1 selects no sample.*n_c = 2.*at least 0.5"):
        g.glitches.class_based_noise(y, ratio=0.1, seed=0)


# --------------------------------------------------------- models and the store
def test_models_create_checks_its_arguments_by_value(tmp_path):
    with pytest.raises(ValueError, match="^n_classes=True"):
        g.models.create("resnet20", n_classes=True, pretrained=False)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"^weights=.*garbage.pth.*cannot be read as a PyTorch state dict"):
        g.models.create("resnet20", n_classes=10, weights=garbage)
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    with pytest.raises(ValueError, match=r"^weights=.*other.pth.*does not fit the architecture"):
        g.models.create("resnet20", n_classes=10, weights=other)


def test_models_create_strips_the_data_parallel_prefix(tmp_path):
    from glitchlib.models._resnet import cifar_resnet20

    net = cifar_resnet20()
    path = tmp_path / "dp.pth"
    torch.save(torch.nn.DataParallel(net).state_dict(), path)
    model = g.models.create("resnet20", n_classes=10, weights=path)  # keys "module.conv1.weight", ...
    sums = {round(float(t.double().sum()), 6) for t in net.state_dict().values()}
    loaded = [round(float(t.double().sum()), 6) for t in model.prefix.state_dict().values()]
    assert loaded and all(s in sums for s in loaded)


def test_store_refuses_a_file(tmp_path):
    path = tmp_path / "results"
    path.write_text("")
    with pytest.raises(ValueError, match=r"^root=.*is a file, not a directory"):
        g.store.Store(root=path)
    with pytest.raises(ValueError, match=r"lies under the file"):
        g.store.Store(root=path / "sub")
    with pytest.raises(ValueError, match=r"^root=3"):
        g.store.Store(root=3)
    assert g.store.Store(root=tmp_path / "new").root == tmp_path / "new"  # created on first write
    assert not (tmp_path / "new").exists()


def test_no_nan_is_silently_accepted_as_a_learning_rate():
    assert math.isnan(float("nan"))  # the old check `nan <= 0` was False
    with pytest.raises(ValueError, match="^lr=nan"):
        ExperimentSettings(lr=float("nan"))


def test_compute_signals_from_matrices_takes_array_likes_and_checks_flags():
    I = [[1.0, -1.0], [-2.0, 0.5], [0.3, 0.2]]
    report = g.detect.compute_signals_from_matrices(I, [1.0, 2.0, 3.0], I, I, [0, 1, 1], [0, 1])
    assert np.allclose(report.scores["nil"], g.signals.nil(np.array(I), [0, 1, 1], [0, 1]))
    with pytest.raises(ValueError, match="^progress='no'"):
        g.detect.compute_signals(None, None, [0, 1], None, [0, 1], progress="no")


@pytest.mark.parametrize("call", [
    lambda: g.data.load("fmnist", download="false"),
    lambda: g.data.load_ood("fmnist", download="no"),
    lambda: g.settings.training_settings("fmnist", "resnet20", pretrained="false"),
    lambda: g.experiments.run(ExperimentSettings(), store="/nonexistent/never", progress="false"),
    lambda: g.models.create("resnet20", n_classes=10, pretrained="false"),
])
def test_a_non_empty_string_is_never_read_as_true(call):
    with pytest.raises(ValueError, match=r"^(download|pretrained|progress)='(false|no)': need True or False"):
        call()


# ------------------------------------------------------------------- devices
@pytest.fixture
def no_gpu(monkeypatch):
    """This machine as one without CUDA or MPS, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_a_device_is_a_torch_device_of_this_machine(no_gpu):
    assert v.as_device("cpu") == torch.device("cpu")
    assert v.as_device(torch.device("cpu")) == torch.device("cpu")
    assert v.as_device(None, optional=True) == torch.device("cpu")
    with pytest.raises(v.ArgumentError, match=r"^device=None: need 'cpu'"):
        v.as_device(None)


@pytest.mark.parametrize("value", ["foo", "gpu", "", "cuda:x", "meta", 3, 1.0, True, ["cpu"]])
def test_a_device_torch_cannot_use_is_refused_naming_it(value):
    with pytest.raises(v.ArgumentError, match=r"^device=.*: need 'cpu', 'cuda', 'cuda:<index>' or 'mps'"):
        v.as_device(value)


@pytest.mark.parametrize("value, problem", [
    ("cuda", "CUDA is not available on this machine; use device='cpu'"),
    ("cuda:0", "CUDA is not available on this machine; use device='cpu'"),
    (torch.device("cuda"), "CUDA is not available on this machine; use device='cpu'"),
    ("mps", "MPS is not available on this machine; use device='cpu'"),
])
def test_a_device_this_machine_lacks_is_refused_saying_what_to_pass(no_gpu, value, problem):
    with pytest.raises(v.ArgumentError, match=rf"^device=.*: {problem}$"):
        v.as_device(value)


def test_a_cuda_index_beyond_the_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert v.as_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(v.ArgumentError, match=r"^device='cuda:2': this machine has 2 CUDA device\(s\); "
                                              r"use cuda:0 \.\. cuda:1"):
        v.as_device("cuda:2")


DEVICE_FUNCTIONS = ["train.fit", "train.evaluate_accuracy", "features.compute_features", "influence.TracIn",
                    "influence.InfluenceFunction", "peers.cross_validated_pred_probs", "peers.compute_peers",
                    "experiments.environment", "cost.timed", "cost.PeakMemory", "cost.matmul_seconds"]


def _device_calls():
    import glitchlib.cost.measure as measure
    from glitchlib import peers  # not imported by ``import glitchlib``

    torch.manual_seed(0)
    head, x, y = torch.nn.Linear(3, 2), torch.randn(8, 3), torch.tensor([0, 1] * 4)
    settings = {"lr": 0.1, "batch_size": 4, "epochs": 1}
    net = g.models.create("resnet20", n_classes=2, pretrained=False, freeze=True)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    return {
        "train.fit": lambda d: g.train.fit(head, x, y, None, None, settings=settings, device=d, progress=False),
        "train.evaluate_accuracy": lambda d: g.train.evaluate_accuracy(head, x, y, device=d),
        "features.compute_features": lambda d: g.features.compute_features(net, images, device=d, progress=False),
        "influence.TracIn": lambda d: g.influence.TracIn(head, [(head.state_dict(), 0.1)], layers=None, device=d),
        "influence.InfluenceFunction": lambda d: g.influence.InfluenceFunction(head, head.state_dict(), layers=None,
                                                                               device=d),
        "peers.cross_validated_pred_probs": lambda d: peers.cross_validated_pred_probs(
            x, y, train_settings=settings, n_folds=2, seed=0, device=d),
        "peers.compute_peers": lambda d: peers.compute_peers(
            head, [], x, y, x, y, train_settings=settings, seed=0, device=d),
        "experiments.environment": lambda d: g.experiments.environment(device=d),
        "cost.timed": lambda d: measure.timed(lambda: None, device=d),
        "cost.PeakMemory": lambda d: measure.PeakMemory(device=d),
        "cost.matmul_seconds": lambda d: measure.matmul_seconds([(2, 2, 2, 1)], device=d),
    }


@pytest.mark.parametrize("function", DEVICE_FUNCTIONS)
def test_every_public_function_taking_a_device_refuses_a_bad_one_naming_it(no_gpu, function):
    calls = _device_calls()
    assert sorted(calls) == sorted(DEVICE_FUNCTIONS)
    call = calls[function]
    with pytest.raises(ValueError, match=r"^device='foo': need .*'cpu', 'cuda'"):
        call("foo")
    with pytest.raises(ValueError, match=r"^device='cuda': CUDA is not available on this machine; use device='cpu'"):
        call("cuda")
    with pytest.raises(ValueError, match=r"^device='mps': MPS is not available"):
        call("mps")
