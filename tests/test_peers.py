"""The dedicated detectors of glitchlib.peers against independent oracles.

cleanlab is called directly on the same probabilities; k-NN and Mahalanobis
distances are recomputed by brute force in NumPy; the cross-validation is
checked with a sample that only a model trained on it could predict; every
score must rank a planted glitch first. Toy data of a few hundred samples,
seconds on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cleanlab.rank import get_label_quality_scores
from sklearn.covariance import ledoit_wolf

from glitchlib import peers, train
from glitchlib.settings import TrainSettings

SETTINGS = TrainSettings(lr=0.5, batch_size=32, epochs=30)


def _clusters(n_per_class=40, n_classes=3, dim=4, seed=0, spread=0.5):
    """Well separated Gaussian classes: features (float32 tensor), labels (int64), class centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 4
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[y] + rng.normal(size=(len(y), dim)) * spread
    return torch.tensor(x, dtype=torch.float32), y.astype(np.int64), centres


# ----------------------------------------------------------------------------- cleanlab


@pytest.mark.parametrize("method", ["self_confidence", "normalized_margin", "confidence_weighted_entropy"])
def test_cleanlab_scores_agree_with_cleanlab_called_directly(method):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=50)
    y = rng.integers(0, 4, size=50)
    expected = 1.0 - get_label_quality_scores(y, probs, method=method)
    np.testing.assert_allclose(peers.cleanlab_scores(y, probs, method=method), expected, rtol=0, atol=1e-12)
    if method == "self_confidence":  # and by hand
        np.testing.assert_allclose(peers.cleanlab_scores(y, probs), 1.0 - probs[np.arange(50), y], atol=1e-12)
    np.testing.assert_array_equal(peers.cleanlab_suggested_labels(probs), probs.argmax(axis=1))


def test_cleanlab_rejects_bad_input():
    probs = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="pred_probs"):
        peers.cleanlab_scores([0, 1, 0], probs * 2)
    with pytest.raises(ValueError, match="y"):
        peers.cleanlab_scores([0, 1], probs)
    with pytest.raises(ValueError, match="method"):
        peers.cleanlab_scores([0, 1, 0], probs, method="margin")


# ----------------------------------------------------------------------------- cross-validation


def _planted():
    """Clusters plus one extra feature that only sample 0 has, labelled with another class than its cluster."""
    x, y, _ = _clusters(n_per_class=30, n_classes=2, dim=2, seed=2)
    x = torch.cat([x, torch.zeros(len(x), 1)], dim=1)
    x[0, 2] = 10.0
    y = y.copy()
    assert y[0] == 0
    y[0] = 1
    return x, y


def test_a_model_trained_on_the_planted_sample_predicts_its_label():
    # the control: if a sample's own fold were used, its label would be predicted
    x, y = _planted()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        head = torch.nn.Linear(3, 2)
    result = train.fit(head, x, torch.from_numpy(y), None, None, settings=SETTINGS, seed=0, progress=False)
    with torch.no_grad():
        assert result.final_model(x[:1]).argmax(1).item() == 1


def test_cross_validated_probabilities_never_use_the_samples_own_fold():
    x, y = _planted()
    probs = peers.cross_validated_pred_probs(x, y, train_settings=SETTINGS, n_folds=5, seed=0)
    assert probs.shape == (len(y), 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert probs[0].argmax() == 0  # the cluster's class, not the planted label
    again = peers.cross_validated_pred_probs(x, y, train_settings=SETTINGS, n_folds=5, seed=0)
    np.testing.assert_array_equal(probs, again)  # same seed, same numbers


def test_a_class_smaller_than_the_folds_is_still_predicted_out_of_sample(recwarn):
    x, y = _planted()
    y = y.copy()
    y[1:4] = 2  # a third class of three samples, fewer than the five folds
    probs = peers.cross_validated_pred_probs(x, y, train_settings=SETTINGS, n_folds=5, seed=0)
    assert probs.shape == (len(y), 3) and np.isfinite(probs).all()
    assert not [w for w in recwarn if "least populated" in str(w.message)]


def test_cross_validation_rejects_bad_folds():
    x, y = _planted()
    with pytest.raises(ValueError, match="n_folds"):
        peers.cross_validated_pred_probs(x, y, train_settings=SETTINGS, n_folds=1, seed=0)
    with pytest.raises(ValueError, match="n_folds"):
        peers.cross_validated_pred_probs(x, y, train_settings=SETTINGS, n_folds=100, seed=0)
    with pytest.raises(ValueError, match="y"):
        peers.cross_validated_pred_probs(x, y[:-1], train_settings=SETTINGS, seed=0)


# ----------------------------------------------------------------------------- distances against brute force


def test_knn_distance_matches_brute_force():
    rng = np.random.default_rng(3)
    x, ref = rng.normal(size=(30, 5)), rng.normal(size=(20, 5))
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    all_distances = np.sqrt(((unit(x)[:, None, :] - unit(ref)[None, :, :]) ** 2).sum(-1))
    for k in (1, 4, 20):
        expected = np.sort(all_distances, axis=1)[:, k - 1]
        np.testing.assert_allclose(peers.knn_distance(x, ref, k=k), expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="k=21"):
        peers.knn_distance(x, ref, k=21)


def _brute_mahalanobis(x, ref, labels, covariance):
    classes = np.unique(labels)
    means = np.stack([ref[labels == c].mean(0) for c in classes])
    centred = ref - means[labels]
    inverse = np.linalg.inv(covariance(centred))
    distances = [[(v - m) @ inverse @ (v - m) for m in means] for v in x]
    return np.min(distances, axis=1)


def test_mahalanobis_matches_brute_force():
    rng = np.random.default_rng(4)
    ref, labels = rng.normal(size=(60, 6)) @ rng.normal(size=(6, 6)), np.repeat(np.arange(3), 20)
    x = rng.normal(size=(25, 6)) * 2
    empirical = lambda c: c.T @ c / len(c)  # noqa: E731 (maximum likelihood, the data are centred)
    np.testing.assert_allclose(peers.mahalanobis(x, ref, labels, covariance="empirical"),
                               _brute_mahalanobis(x, ref, labels, empirical), rtol=1e-8)
    shrunk = lambda c: ledoit_wolf(c, assume_centered=True)[0]  # noqa: E731
    np.testing.assert_allclose(peers.mahalanobis(x, ref, labels),
                               _brute_mahalanobis(x, ref, labels, shrunk), rtol=1e-8)
    with pytest.raises(ValueError, match="reference_labels"):
        peers.mahalanobis(x, ref, labels[:-1])
    with pytest.raises(ValueError, match="features"):
        peers.mahalanobis(x[:, :5], ref, labels)


def test_loss_aum_and_energy_match_their_formulas():
    rng = np.random.default_rng(5)
    logits, y = rng.normal(size=(3, 10, 4)), rng.integers(0, 4, size=10)
    rows = np.arange(10)
    last = logits[-1]
    np.testing.assert_allclose(peers.training_loss(last, y),
                               -np.log(np.exp(last[rows, y]) / np.exp(last).sum(1)), rtol=1e-12)
    margins = [[z[i, y[i]] - max(z[i, c] for c in range(4) if c != y[i]) for i in rows] for z in logits]
    np.testing.assert_allclose(peers.area_under_margin(logits, y), -np.mean(margins, axis=0), rtol=1e-12)
    np.testing.assert_allclose(peers.energy(last, temperature=2.0), -2.0 * np.log(np.exp(last / 2).sum(1)),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="temperature"):
        peers.energy(last, temperature=0)
    with pytest.raises(ValueError, match="logits_per_epoch"):
        peers.area_under_margin(last, y)


# ----------------------------------------------------------------------------- directions


@pytest.fixture(scope="module")
def flipped_run():
    """A head trained on clusters where sample 5 carries another class's label; its checkpoints."""
    x, y, centres = _clusters(seed=6)
    y = y.copy()
    y[5] = (y[5] + 1) % 3
    with torch.random.fork_rng():
        torch.manual_seed(0)
        head = torch.nn.Linear(x.shape[1], 3)
    result = train.fit(head, x, torch.from_numpy(y), None, None, settings=TrainSettings(lr=0.05, batch_size=32, epochs=5),
                       seed=0, progress=False)
    return head, result.checkpoints, x, y, centres


def test_a_flipped_label_ranks_first_for_the_label_error_scores(flipped_run):
    head, checkpoints, x, y, _ = flipped_run
    probs = peers.cross_validated_pred_probs(x, y, train_settings=SETTINGS, seed=0, head=head)
    assert peers.cleanlab_scores(y, probs).argmax() == 5
    logits = peers._checkpoint_outputs(head, checkpoints, x).logits
    assert logits.shape == (5, len(y), 3)
    assert peers.training_loss(logits[-1], y).argmax() == 5
    assert peers.area_under_margin(logits, y).argmax() == 5


def test_a_planted_outlier_ranks_first_for_the_ood_scores(flipped_run):
    head, checkpoints, x, y, centres = flipped_run
    rng = np.random.default_rng(7)
    reference_labels = np.repeat(np.arange(3), 20)
    reference = centres[reference_labels] + rng.normal(size=(60, x.shape[1])) * 0.5
    samples = x.numpy().astype(np.float64).copy()
    samples[17] = centres.mean(0) + 10 * np.linalg.svd(centres - centres.mean(0))[2][-1]  # off the classes' plane
    assert peers.knn_distance(samples, reference, k=5).argmax() == 17
    assert peers.mahalanobis(samples, reference, reference_labels).argmax() == 17
    # energy: an input the head has no evidence for (all features zero) gets the highest energy
    samples[17] = 0.0
    logits = peers._checkpoint_outputs(head, checkpoints[-1:], torch.tensor(samples, dtype=torch.float32)).logits
    assert peers.energy(logits[-1]).argmax() == 17


def test_compute_peers_returns_every_score_and_the_cleanlab_suggestion(flipped_run):
    head, checkpoints, x, y, centres = flipped_run
    report = peers.compute_peers(head, checkpoints, x, y, x[::2], y[::2], train_settings=SETTINGS, seed=0, head_layer="", k=3)
    assert list(report.scores.columns) == list(peers.PEERS) and len(report.scores) == len(y)
    assert np.isfinite(report.scores.to_numpy()).all()
    np.testing.assert_array_equal(report.suggested_labels, report.pred_probs.argmax(1))
    assert report.suggested_labels[5] != y[5]  # the flipped sample's repair suggestion is its cluster
    assert set(report.timings) == set(peers.PEERS)
    # the penultimate features of a linear head are its inputs: the same k-NN scores
    np.testing.assert_allclose(report.scores["knn"], peers.knn_distance(x, x[::2], k=3), rtol=1e-6)
    with pytest.raises(ValueError, match="head_layer"):
        peers.compute_peers(head, checkpoints, x, y, x, y, train_settings=SETTINGS, seed=0, head_layer="fc")


def test_cross_validation_refuses_train_settings_fit_would_refuse_before_training(monkeypatch):
    x, y, _ = _clusters()
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("trained before checking train_settings"))
    with pytest.raises(ValueError, match=r"^train_settings=.*unknown key\(s\) 'momentum'; the accepted keys are"):
        peers.cross_validated_pred_probs(x, y, train_settings={"lr": 0.5, "batch_size": 32, "epochs": 1,
                                                               "momentum": 0.9}, n_folds=2, seed=0)
    with pytest.raises(ValueError, match=r"^seed=-1"):
        peers.cross_validated_pred_probs(x, y, train_settings=SETTINGS, n_folds=2, seed=-1)
