"""Tests for glitchlib.metrics: hand examples and scikit-learn as oracle."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from glitchlib import metrics as M


def test_rank_and_top_k_hand_example():
    scores = [0.5, 2.0, 0.5, -1.0, 2.0]
    # descending, ties by index: 1, 4, 0, 2, 3
    np.testing.assert_array_equal(M.suspicion_order(scores), [1, 4, 0, 2, 3])
    np.testing.assert_array_equal(M.rank(scores), [2, 4, 1, 0, 3])
    np.testing.assert_array_equal(M.top_k(scores, k=3), [1, 4, 0])
    np.testing.assert_array_equal(M.flag_top_k(scores, k=3), [True, True, False, False, True])
    assert M.rank(scores).dtype == np.int64


@pytest.mark.parametrize("seed", range(3))
def test_rank_is_a_permutation_consistent_with_top_k(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=50).astype(float)  # many ties
    r = M.rank(scores)
    np.testing.assert_array_equal(np.sort(r), np.arange(50))
    for k in (1, 7, 50):
        np.testing.assert_array_equal(np.sort(M.top_k(scores, k=k)), np.sort(np.flatnonzero(r >= 50 - k)))
    # a higher score always gets a higher rank
    assert all(r[i] > r[j] for i in range(50) for j in range(50) if scores[i] > scores[j])


def test_signed_zeros_tie():
    np.testing.assert_array_equal(M.rank([0.0, -0.0, 0.0]), [2, 1, 0])


def test_detection_f1_hand_example():
    scores = [0.9, 0.8, 0.7, 0.1, 0.0]
    mask = [True, False, True, False, False]
    # k = 2 flags samples 0 and 1: tp = 1, precision = recall = F1 = 0.5
    assert M.detection_f1(scores, mask) == pytest.approx(0.5)
    # k = 3 flags 0, 1, 2: tp = 2, precision 2/3, recall 1, F1 = 0.8
    assert M.detection_f1(scores, mask, k=3) == pytest.approx(0.8)
    # ties broken by index: scores all equal, k = 2 flags samples 0 and 1
    assert M.detection_f1([1.0] * 5, mask) == pytest.approx(0.5)
    assert M.detection_f1([1.0] * 5, [False, False, False, True, True]) == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_detection_f1_matches_sklearn_on_the_flags(seed):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal(200)
    mask = rng.random(200) < 0.1
    for k in (None, 5, 40):
        flags = M.flag_top_k(scores, k=int(mask.sum()) if k is None else k)
        assert M.detection_f1(scores, mask, k=k) == pytest.approx(f1_score(mask, flags))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tied", [False, True])
def test_average_precision_and_auroc_match_sklearn(seed, tied):
    rng = np.random.default_rng(seed)
    mask = rng.random(300) < 0.15
    scores = rng.standard_normal(300) + 1.5 * mask
    if tied:
        scores = np.round(scores)  # heavy ties
    assert M.average_precision(scores, mask) == pytest.approx(average_precision_score(mask, scores), abs=1e-12)
    assert M.auroc(scores, mask) == pytest.approx(roc_auc_score(mask, scores), abs=1e-12)


def test_metrics_do_not_depend_on_sample_order():
    rng = np.random.default_rng(9)
    mask = rng.random(100) < 0.2
    scores = rng.standard_normal(100) + mask
    perm = rng.permutation(100)
    assert M.average_precision(scores[perm], mask[perm]) == pytest.approx(M.average_precision(scores, mask))
    assert M.auroc(scores[perm], mask[perm]) == pytest.approx(M.auroc(scores, mask))
    assert M.detection_f1(scores[perm], mask[perm]) == pytest.approx(M.detection_f1(scores, mask))


def test_perfect_and_torch_inputs():
    mask = np.array([False, True, False, True])
    scores = torch.tensor([0.1, 0.9, 0.2, 0.8])
    assert M.detection_f1(scores, torch.from_numpy(mask)) == 1.0
    assert M.average_precision(scores, mask) == 1.0
    assert M.auroc(scores, mask) == 1.0
    assert M.auroc(-scores, mask) == 0.0
    assert M.detection_f1(scores, mask.astype(int)) == 1.0


def test_repair_accuracy():
    suggested = np.array([1, 2, 0, 3, 3])
    y_true = np.array([1, 0, 0, 3, 1])
    mask = np.array([True, True, False, True, False])
    assert M.repair_accuracy(suggested, y_true, mask) == pytest.approx(2 / 3)
    assert M.repair_accuracy(torch.tensor(suggested), torch.tensor(y_true), mask) == pytest.approx(2 / 3)


def test_characterization_accuracy():
    true = np.array(["clean", "mislabeled", "mislabeled", "anomaly", "anomaly", "anomaly", "clean"])
    pred = np.array(["anomaly", "mislabeled", "anomaly", "anomaly", "anomaly", "mislabeled", "mislabeled"])
    flagged = np.array([True, True, True, True, True, False, True])
    # flagged mislabeled: 1 right of 2; flagged anomalies: 2 of 2; overall 3 of 4; clean ignored
    got = M.characterization_accuracy(pred, true, flagged)
    assert list(got) == ["anomaly", "mislabeled", "overall"]
    assert got["mislabeled"] == pytest.approx(0.5)
    assert got["anomaly"] == pytest.approx(1.0)
    assert got["overall"] == pytest.approx(0.75)
    # no flagged anomaly: undefined share, NaN
    got = M.characterization_accuracy(pred, true, np.array([False, True, True, False, False, False, False]))
    assert np.isnan(got["anomaly"]) and got["mislabeled"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: M.detection_f1([1.0, 2.0], [True]), "mask"),
        (lambda: M.detection_f1([1.0, 2.0], [False, False]), "mask"),
        (lambda: M.detection_f1([1.0, 2.0], [True, False], k=0), "k"),
        (lambda: M.detection_f1([1.0, 2.0], [True, False], k=3), "k"),
        (lambda: M.detection_f1([1.0, 2.0], [True, False], k=1.5), "k"),
        (lambda: M.detection_f1([], []), "scores"),
        (lambda: M.detection_f1([[1.0]], [True]), "scores"),
        (lambda: M.detection_f1([np.nan, 1.0], [True, False]), "scores"),
        (lambda: M.detection_f1([1.0, 2.0], [0.5, 1.0]), "mask"),
        (lambda: M.average_precision([1.0, 2.0], [False, False]), "mask"),
        (lambda: M.auroc([1.0, 2.0], [True, True]), "mask"),
        (lambda: M.auroc([1.0, 2.0], [False, False]), "mask"),
        (lambda: M.top_k([1.0, 2.0], k=3), "k"),
        (lambda: M.repair_accuracy([1, 2], [1], [True, True]), "y_true"),
        (lambda: M.repair_accuracy([1, 2], [1, 2], [False, False]), "mask"),
        (lambda: M.repair_accuracy([1.0, 2.0], [1, 2], [True, True]), "suggested"),
        (lambda: M.repair_accuracy([], [], []), "suggested"),
        (lambda: M.characterization_accuracy(["anomaly"], ["clean", "anomaly"], [True]), "true_kind"),
        (lambda: M.characterization_accuracy(["anomaly"], ["anomaly"], [True, False]), "flagged"),
        (lambda: M.characterization_accuracy([1], ["anomaly"], [True]), "predicted_kind"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("pred, true, match", [
    (["anomalies", "mislabeled"], ["anomaly", "mislabeled"],
     r"^predicted_kind holds 'anomalies', not a kind glitchlib.signals.characterize predicts; "
     r"pass values among 'mislabeled', 'anomaly'"),
    (["clean", "mislabeled"], ["anomaly", "mislabeled"], r"^predicted_kind holds 'clean'"),
    (["anomaly", "mislabeled"], ["anomalies", "mislabeled"],
     r"^true_kind holds 'anomalies', not a sample kind; pass values among 'clean', 'mislabeled', 'anomaly', "
     r"'corrupted'"),
    (["anomaly", "mislabeled"], ["foo", "uniform"], r"^true_kind holds 'foo', 'uniform', not a sample kind"),
])
def test_characterization_accuracy_takes_sample_kinds_only(pred, true, match):
    with pytest.raises(ValueError, match=match):
        M.characterization_accuracy(pred, true, [True, True])


def test_characterization_accuracy_takes_every_sample_kind_as_the_truth():
    got = M.characterization_accuracy(["anomaly"] * 4, ["clean", "mislabeled", "anomaly", "corrupted"], [True] * 4)
    assert got == {"anomaly": 1.0, "corrupted": 0.0, "mislabeled": 0.0, "overall": pytest.approx(1 / 3)}
