"""Tests for glitchlib.detect with a closed-form TracIn engine for a linear softmax classifier."""

import numpy as np
import pandas as pd
import pytest
import torch

from glitchlib import signals as S
from glitchlib.detect import SignalReport, compute_signals, compute_signals_from_matrices
from glitchlib.metrics import rank, top_k


class LinearTracIn:
    """TracIn of ``softmax(W x)`` (no bias) with cross-entropy, in closed form.

    The loss gradient w.r.t. ``W`` is ``(p - e_y) x^T``, so the gradient dot
    product of two samples factors into ``(x . x') ((p - e_y) . (p' - e_y'))``.
    Records every call so tests can check what was asked.
    """

    def __init__(self, weights, learning_rates):
        self.weights = [torch.as_tensor(w, dtype=torch.float64) for w in weights]
        self.learning_rates = list(learning_rates)
        self.calls = []

    def _residual(self, w, x, y):
        p = torch.softmax(x @ w.T, dim=1)
        return p - torch.nn.functional.one_hot(y, w.shape[0]).to(p.dtype)

    def train_test(self, x_train, y_train, x_test, y_test):
        self.calls.append(("train_test", y_train))
        y_train, y_test = torch.as_tensor(y_train), torch.as_tensor(y_test)
        out = torch.zeros(len(x_train), len(x_test), dtype=torch.float64)
        for w, lr in zip(self.weights, self.learning_rates):
            residuals = self._residual(w, x_train, y_train) @ self._residual(w, x_test, y_test).T
            out += lr * (x_train @ x_test.T) * residuals
        return out.float()

    def self_influence(self, x, y):
        self.calls.append(("self_influence", y))
        y = torch.as_tensor(y)
        out = torch.zeros(len(x), dtype=torch.float64)
        for w, lr in zip(self.weights, self.learning_rates):
            out += lr * (x * x).sum(1) * (self._residual(w, x, y) ** 2).sum(1)
        return out.float()

    def last_checkpoint(self):
        self.calls.append(("last_checkpoint", None))
        return LinearTracIn(self.weights[-1:], self.learning_rates[-1:])


def _problem(seed=0, n_per_class=20, n_test_per_class=10, C=3, d=8):
    """Gaussian classes along the first C axes; one mislabeled sample and one anomaly appended."""
    g = torch.Generator().manual_seed(seed)
    means = 3.0 * torch.eye(C, d, dtype=torch.float64)
    means[:, -1] = 1.5  # a shared component: every pair of samples has x . x' > 0

    def draw(k):
        y = torch.arange(C).repeat_interleave(k)
        return means[y] + 0.7 * torch.randn(len(y), d, generator=g, dtype=torch.float64), y

    x_train, y_train = draw(n_per_class)
    x_test, y_test = draw(n_test_per_class)
    mislabeled_x = means[0] + 0.7 * torch.randn(1, d, generator=g, dtype=torch.float64)
    anomaly_x = 0.05 * torch.randn(1, d, generator=g, dtype=torch.float64)  # far from every class
    x_train = torch.cat([x_train, mislabeled_x, anomaly_x])
    y_train = torch.cat([y_train, torch.tensor([1, 2])])  # true class of the mislabeled one: 0
    # two checkpoints of a reasonable classifier
    weights = [0.2 * means, 0.35 * means]
    return LinearTracIn(weights, [0.1, 0.05]), x_train, y_train, x_test, y_test


def test_engine_is_asked_for_each_matrix_once_with_the_right_labels():
    engine, x_train, y_train, x_test, y_test = _problem()
    report = compute_signals(engine, x_train, y_train, x_test, y_test, keep_matrices=True, progress=False)
    assert [c[0] for c in engine.calls] == ["train_test", "self_influence", "last_checkpoint"]
    assert torch.equal(engine.calls[0][1], y_train)
    assert engine.calls[0][1].dtype == torch.int64
    I = report.matrices["I"]
    c_star = S.counterfactual_labels(I, y_test.numpy())
    b = S.second_best_labels(I, y_test.numpy())
    np.testing.assert_array_equal(report.suggested_labels, c_star)
    np.testing.assert_array_equal(report.second_best_labels, b)
    # the counterfactual matrices come from the last checkpoint, with labels c* then b
    last = LinearTracIn(engine.weights[-1:], engine.learning_rates[-1:])
    for key, labels in (("I_cf", c_star), ("I_b", b)):
        expected = last.train_test(x_train, torch.from_numpy(labels), x_test, y_test).numpy()
        np.testing.assert_array_equal(report.matrices[key], expected)


def test_report_matches_the_pure_function_on_the_same_matrices():
    engine, x_train, y_train, x_test, y_test = _problem(seed=1)
    report = compute_signals(engine, x_train, y_train, x_test, y_test, keep_matrices=True, progress=False)
    mats = report.matrices
    again = compute_signals_from_matrices(mats["I"], mats["SI"], mats["I_cf"], mats["I_b"], y_train, y_test)
    pd.testing.assert_frame_equal(report.scores, again.scores)
    np.testing.assert_array_equal(report.characterization, again.characterization)
    np.testing.assert_array_equal(report.suggested_labels, again.suggested_labels)
    assert set(again.timings) == {"signals"}
    # every column equals its single-signal function
    y_tr, y_te = y_train.numpy(), y_test.numpy()
    np.testing.assert_allclose(report.scores["si"], S.si(mats["SI"]))
    np.testing.assert_allclose(report.scores["mi"], S.mi(mats["I"]), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(report.scores["gd_class"], S.gd_class(mats["I"], y_tr, y_te))
    np.testing.assert_array_equal(report.scores["cnci"], S.cnci(mats["I_cf"], y_tr, y_te))
    np.testing.assert_array_equal(report.scores["pcid"], S.pcid(mats["I"], mats["I_b"], y_te))


def test_report_layout():
    engine, x_train, y_train, x_test, y_test = _problem()
    report = compute_signals(engine, x_train, y_train, x_test, y_test, progress=False)
    assert isinstance(report, SignalReport)
    assert list(report.scores.columns) == list(S.SIGNALS)
    assert list(report.scores.columns) == [
        "si", "mi", "mai", "aai", "mpi", "nil", "nil_opt", "slip", "slin", "gd_class", "cnci", "pcid", "cfrank",
    ]
    assert len(report.scores) == len(y_train)
    assert (report.scores.dtypes == np.float64).all()
    assert np.isfinite(report.scores.to_numpy()).all()
    assert report.suggested_labels.dtype == np.int64 and report.second_best_labels.dtype == np.int64
    assert set(report.characterization) <= {"mislabeled", "anomaly"}
    assert set(report.timings) == {"influence", "counterfactuals", "signals"}
    assert all(v >= 0 for v in report.timings.values())
    assert report.matrices is None


def test_planted_glitches_are_found_and_repaired():
    engine, x_train, y_train, x_test, y_test = _problem()
    n = len(y_train)
    mislabeled, anomaly = n - 2, n - 1
    report = compute_signals(engine, x_train, y_train, x_test, y_test, progress=False)
    scores = report.scores
    # CNCI puts the mislabeled sample among the top 3 (the anomaly, helping nobody, is also near zero)
    assert rank(scores["cnci"])[mislabeled] >= n - 3
    assert report.suggested_labels[mislabeled] == 0  # its true class
    assert top_k(scores["pcid"], k=1)[0] == anomaly
    assert scores["cfrank"][anomaly] == n - 1
    assert scores["cfrank"][mislabeled] >= n - 3
    assert report.characterization[anomaly] == "anomaly"


def test_counterfactual_engine_argument_and_numpy_labels():
    engine, x_train, y_train, x_test, y_test = _problem()
    other = LinearTracIn(engine.weights[:1], engine.learning_rates[:1])
    report = compute_signals(
        engine, x_train, y_train.numpy(), x_test, y_test.numpy(), counterfactual_engine=other, progress=False
    )
    assert "last_checkpoint" not in [c[0] for c in engine.calls]
    assert [c[0] for c in other.calls] == ["train_test", "train_test"]
    # labels reach the engine in the container type and dtype of y_train
    assert isinstance(other.calls[0][1], np.ndarray) and other.calls[0][1].dtype == y_train.numpy().dtype
    np.testing.assert_array_equal(np.asarray(other.calls[0][1]), report.suggested_labels)
    np.testing.assert_array_equal(np.asarray(other.calls[1][1]), report.second_best_labels)


def test_bad_inputs():
    engine, x_train, y_train, x_test, y_test = _problem()
    with pytest.raises(ValueError, match="y_train"):
        compute_signals(engine, x_train, y_train, x_test, y_test, n_classes=2, progress=False)
    with pytest.raises(ValueError, match="I_cf"):
        compute_signals_from_matrices(
            np.zeros((3, 4)), np.zeros(3), np.zeros((3, 3)), np.zeros((3, 4)), [0, 1, 1], [0, 0, 1, 1]
        )

    class Broken(LinearTracIn):
        def train_test(self, *args):
            return super().train_test(*args)[:-1]

    broken = Broken(engine.weights, engine.learning_rates)
    with pytest.raises(RuntimeError, match="train_test"):
        compute_signals(broken, x_train, y_train, x_test, y_test, progress=False)


def test_with_the_tracin_engine():
    influence = pytest.importorskip("glitchlib.influence")
    fake, x_train, y_train, x_test, y_test = _problem()
    model = torch.nn.Linear(x_train.shape[1], 3, bias=False)
    checkpoints = [({"weight": w}, lr) for w, lr in zip(fake.weights, fake.learning_rates)]
    engine = influence.TracIn(model, checkpoints, layers=None, dtype=torch.float64, progress=False)
    got = compute_signals(engine, x_train, y_train, x_test, y_test, keep_matrices=True, progress=False)
    expected = compute_signals(fake, x_train, y_train, x_test, y_test, keep_matrices=True, progress=False)
    for key in ("I", "SI", "I_cf", "I_b"):
        np.testing.assert_allclose(got.matrices[key], expected.matrices[key], rtol=1e-5, atol=1e-7, err_msg=key)
    np.testing.assert_array_equal(got.suggested_labels, expected.suggested_labels)
    np.testing.assert_array_equal(got.second_best_labels, expected.second_best_labels)
    for name in S.SIGNALS:
        if name != "cfrank":  # ranks may swap on near-ties
            np.testing.assert_allclose(got.scores[name], expected.scores[name], rtol=1e-4, atol=1e-6, err_msg=name)
