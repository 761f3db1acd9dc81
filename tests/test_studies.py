"""The paper's further experiments (SPEC.md 9.1-9.5): corruptions, clean twins, dirty validation sets.

Expected values are worked out by hand in the comments. The runs use 100
training images of the embedded Fashion-MNIST (features computed once for the
module) and two epochs.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from glitchlib import experiments, glitches, report, studies
from glitchlib.settings import ExperimentSettings

TINY = dict(dataset="fmnist", model="efficientnet_lite0", seed=0, n_train=100, epochs=2)


def _images(p: float, n: int = 1) -> torch.Tensor:
    """``n`` 1 x 28 x 28 images with every pixel ``p`` in [0, 1], normalised as the loaders do."""
    return torch.full((n, 1, 28, 28), (p - 0.5) / 0.5)


# ------------------------------------------------------------------ corruptions


def test_stripe_inverts_columns_0_to_6_and_21_to_27_exactly():
    x = _images(0.25)  # normalised -0.5
    x[0, 0, 3, :] = torch.linspace(-1, 1, 28)  # one row with every column different
    out = glitches.corrupt_images(x, corruption="stripe")
    changed = sorted(set(torch.nonzero(out != x)[:, 3].tolist()))
    assert changed == list(range(0, 7)) + list(range(21, 28))
    # 1 - 0.25 = 0.75 in [0, 1], normalised (0.75 - 0.5) / 0.5 = 0.5
    assert torch.allclose(out[0, 0, 0, :7], torch.full((7,), 0.5))
    assert torch.allclose(out[0, 0, 0, 21:], torch.full((7,), 0.5))
    assert torch.equal(out[..., 7:21], x[..., 7:21])  # untouched bit for bit
    # on normalised values, 1 - v is the negation: column 0 of the ramp row (-1) becomes 1
    assert out[0, 0, 3, 0].item() == pytest.approx(1.0) and out[0, 0, 3, 27].item() == pytest.approx(-1.0)


@pytest.mark.parametrize(("p", "strength", "expected"), [
    (0.25, 0.3, 0.1),   # 0.25 + 0.3 = 0.55 -> (0.55 - 0.5) / 0.5 = 0.1
    (0.9, 0.3, 1.0),    # 1.2 clipped to 1 -> 1
    (0.0, 0.3, -0.4),   # 0.3 -> -0.4
    (0.25, 0.5, 0.5),   # 0.75 -> 0.5
    (1.0, 1.0, 1.0),    # clipped
])
def test_brightness_adds_and_clips_in_unit_range(p, strength, expected):
    out = glitches.corrupt_images(_images(p).numpy(), corruption="brightness", strength=strength)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_corruptions_counts_mask_and_labels():
    y = np.repeat(np.arange(5), 10)  # n = 50 -> floor(0.1 * 50) = 5 corrupted
    x = _images(0.25, 50)
    g = glitches.corruptions(x, y, ratio=0.1, seed=3, corruption="brightness")
    assert g.n_glitches == 5 and g.glitch == "corruption"
    assert set(g.kind[g.mask]) == {"corrupted"} and set(g.kind[~g.mask]) == {"clean"}
    np.testing.assert_array_equal(g.y, y)       # labels stay right
    np.testing.assert_array_equal(g.y_true, y)
    assert torch.equal(g.x[torch.from_numpy(~g.mask)], x[torch.from_numpy(~g.mask)])
    assert torch.allclose(g.x[torch.from_numpy(g.mask)], torch.full((5, 1, 28, 28), 0.1))
    assert torch.equal(x, _images(0.25, 50))   # the input is not modified
    # the same seed corrupts the same samples, whichever the corruption
    np.testing.assert_array_equal(glitches.corruptions(x, y, ratio=0.1, seed=3, corruption="stripe").mask, g.mask)
    assert glitches.inject("corruption", y, ratio=0.2, seed=3, x=x, corruption="stripe").n_glitches == 10


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"corruption": "blur"}, "corruption"),
    ({"strength": 0}, "strength"),
    ({"strength": 1.5}, "strength"),
    ({"strength": -0.1}, "strength"),
])
def test_bad_corruption_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        glitches.corruptions(_images(0.5, 20), np.arange(20) % 2, ratio=0.1, seed=0, **kwargs)
    with pytest.raises(ValueError, match=field):
        glitches.corrupt_images(_images(0.5), **{"corruption": "stripe", **kwargs})


def test_none_injects_nothing():
    y = np.array([0, 1, 2, 1, 0])
    g = glitches.inject("none", y, ratio=0.1, seed=0)
    assert g.n_glitches == 0 and not g.mask.any() and set(g.kind) == {"clean"}
    np.testing.assert_array_equal(g.y, y)
    with pytest.raises(ValueError, match="ratio"):
        glitches.inject("none", y, ratio=0.7, seed=0)


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(("values", "field"), [
    ({"glitch": "corruption", "corruption": "blur"}, "corruption"),
    ({"glitch": "corruption"}, "corruption"),
    ({"glitch": "uniform", "corruption": "stripe"}, "corruption"),
    ({"glitch": "uniform", "test_ratio": -0.1}, "test_ratio"),
    ({"glitch": "uniform", "test_ratio": 0.6}, "test_ratio"),
    ({"glitch": "anomalies", "test_ratio": 0.2}, "test_ratio"),
    ({"glitch": "uniform", "test_share": 0.0}, "test_share"),
    ({"glitch": "uniform", "test_share": 0.2, "n_test": 50}, "test_share"),
])
def test_bad_settings_name_the_field(values, field):
    with pytest.raises(ValueError, match=field):
        ExperimentSettings(**values)


def test_keys_of_earlier_cells_stay():
    # keys written by glitchlib before the fields corruption, test_ratio and test_share existed
    assert ExperimentSettings().key() == "fmnist-efficientnet_lite0-class-based-0.1-s0-5360a6775227"
    old = ExperimentSettings(dataset="mnist", glitch="anomalies", seed=3, n_train=200, n_test=60)
    assert old.key() == "mnist-efficientnet_lite0-anomalies-0.1-s3-97370453f07a"
    assert ExperimentSettings(test_ratio=0.2).key() != ExperimentSettings().key()


# ------------------------------------------------------------------ studies


def test_clean_twin_pairing():
    base = [ExperimentSettings(dataset=d, glitch=g, seed=s, n_train=300)
            for d in ("mnist", "fmnist") for g in ("uniform", "anomalies") for s in range(3)]
    twins = studies.clean_twins(base, seeds=2)
    assert sorted((t.dataset, t.seed) for t in twins) == [("fmnist", 0), ("fmnist", 1), ("mnist", 0), ("mnist", 1)]
    assert all(t.glitch == "none" and t.n_train == 300 for t in twins)
    a = ExperimentSettings(dataset="mnist", glitch="uniform", seed=1, ratio=0.3)
    b = ExperimentSettings(dataset="mnist", glitch="class-based", seed=1, n_contaminated=1)
    assert studies.clean_twin(a) == studies.clean_twin(b) != studies.clean_twin(a.replace(seed=2))
    pairs = report.twin_pairs([a, b, studies.clean_twin(a)])
    assert list(pairs["twin_key"]) == [studies.clean_twin(a).key()] * 2


def test_twin_difference_by_hand():
    runs = pd.DataFrame({
        "key": ["u0", "u1", "t0", "t1"], "dataset": "mnist", "model": "efficientnet_lite0",
        "glitch": ["uniform", "uniform", "none", "none"], "val_acc": [0.90, 0.80, 0.95, 0.90]})
    pairs = pd.DataFrame({"key": ["u0", "u1"], "twin_key": ["t0", "t1"]})
    table = report.twin_difference_table(runs, pairs)
    # differences -0.05 and -0.10: mean -0.075, sample std 0.035355
    assert table.loc[("MNIST", "EfficientNet-Lite0"), "uniform noise"] == "-0.075 ± 0.035"
    assert table.loc[("MNIST", "ResNet-20 (paper)"), "uniform noise"] == "-0.2"


def test_study_cells_reuse_the_ten_percent_cells():
    base = [ExperimentSettings(dataset="mnist", glitch=g, seed=s) for g in studies.PAPER_GLITCHES for s in range(5)]
    ablation = studies.ratio_ablation(base, seeds=3)
    # 3 glitches x 5 ratios x 3 seeds; the label-noise cells at 10 % are the base cells themselves
    assert len(ablation) == 45
    assert {s.key() for s in ablation if s.ratio == 0.1 and s.glitch != "anomalies"} == {
        s.key() for s in base if s.seed < 3 and s.glitch in ("uniform", "class-based")}
    # anomalies at every ratio on 2,000 training samples: 30 % of them fit one class of the pool
    assert {s.n_train for s in ablation if s.glitch == "anomalies"} == {2000}
    assert {s.n_train for s in studies.ratio_ablation([b.replace(n_train=300) for b in base])} == {300}
    assert len(studies.one_contaminated_class(base)) == 5
    assert len(studies.corruption_cells(base)) == 6
    dirty = studies.dirty_validation(base)  # 2 glitches x 3 seeds, each with its clean twin
    assert len(dirty) == 12 and sum(s.test_ratio == 0.2 for s in dirty) == 6
    assert all(s.test_share == 0.15 and s.n_test is None and s.n_train == 2000 for s in dirty)


def test_low_ratio_gain_by_hand():
    metrics = pd.DataFrame({
        "dataset": "mnist", "model": "efficientnet_lite0", "glitch": "uniform", "ratio": 0.01,
        "seed": [0, 0, 1, 1], "signal": ["cnci", "si", "cnci", "si"], "f1": [0.6, 0.5, 0.76, 0.5]})
    table = report.low_ratio_gain(metrics, ratio=0.01)
    # CNCI mean 0.68, SI 0.5: (0.68 - 0.5) / 0.5 = 0.36
    assert table.loc[("MNIST", "EfficientNet-Lite0", "uniform noise"), "relative gain"] == pytest.approx(0.36)
    assert table.loc[("paper: about", "", ""), "relative gain"] == pytest.approx(0.36)
    # the other reading: 0.68 - 0.5 = 0.18 F1
    assert table.loc[("MNIST", "EfficientNet-Lite0", "uniform noise"), "difference"] == pytest.approx(0.18)


def test_si_decile_accuracy_by_hand():
    # 10 clean samples with SI 1..10, correct only for SI <= 6; 2 bins of 5: accuracy 1.0 and 0.2
    predictions = pd.DataFrame({"run": "r", "kind": ["clean"] * 10 + ["mislabeled"], "si": list(range(1, 12)),
                                "correct": [True] * 6 + [False] * 4 + [True]})
    table = report.si_decile_accuracy(predictions, bins=2)
    assert list(table["accuracy"]) == [1.0, 0.2] and list(table["mean_si"]) == [3.0, 8.0]


# ------------------------------------------------------------------ runs


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("studies") / "results"


def test_none_run_has_an_all_false_mask_and_missing_metrics(store):
    result = experiments.run(ExperimentSettings(glitch="none", n_test=40, **TINY), store=store, progress=False)
    assert result.summary["n_glitches"] == 0
    assert result.metrics["f1"].isna().all() and result.metrics["ap"].isna().all()
    assert len(result.metrics) >= 10  # one row per signal, each recorded as missing
    data = experiments.load_training_set(result.settings, store=store)
    assert not data.mask.any() and set(data.kind) == {"clean"}
    assert result.summary["train_loss_mislabeled"] is None and result.summary["train_loss_clean"] > 0


def test_corruption_run_keeps_labels_and_scores_the_corrupted(store):
    settings = ExperimentSettings(glitch="corruption", corruption="stripe", n_test=40, **TINY)
    result = experiments.run(settings, store=store, progress=False)
    experiments.run(studies.clean_twin(settings), store=store, progress=False)
    data = experiments.load_training_set(settings, store=store)
    twin = experiments.load_training_set(studies.clean_twin(settings), store=store)
    assert result.summary["n_corrupted"] == 10 == int(data.mask.sum())  # floor(0.1 * 100)
    np.testing.assert_array_equal(data.y, data.y_true)
    np.testing.assert_array_equal(twin.y, data.y)  # the same samples, labels untouched
    assert set(data.kind[data.mask]) == {"corrupted"}
    changed_rows = (data.x != twin.x).flatten(1).any(1).numpy()
    assert (changed_rows <= data.mask).all()  # only the corrupted images differ ...
    changed_columns = torch.nonzero((data.x != twin.x).any(dim=(0, 1, 2))).ravel().tolist()
    assert set(changed_columns) <= set(range(7)) | set(range(21, 28))  # ... in the stripes only
    assert result.metrics["f1"].notna().all()


def test_dirty_validation_run(store):
    clean = ExperimentSettings(glitch="uniform", test_share=0.4, **TINY)
    dirty = clean.replace(test_ratio=0.2)
    a = experiments.run(clean, store=store, progress=False)
    b = experiments.run(dirty, store=store, progress=False)
    # 0.4 x 100 = 40 validation samples; floor(0.2 x 40) = 8 noisy labels
    assert a.summary["n_test"] == b.summary["n_test"] == 40
    assert a.summary["n_test_noisy"] == 0 and b.summary["n_test_noisy"] == 8
    given = np.load(b.path / "glitch.npz")["y_test"]
    truth = experiments.load_training_set(dirty, store=store).y_test
    assert int((given != truth).sum()) == 8
    # the training set and its labels are the same: the same model, the same accuracy against the clean labels
    assert a.summary["val_acc"] == pytest.approx(b.summary["val_acc"])
    predictions = np.load(b.path / "predictions.npz")["test_pred"]
    assert b.summary["val_acc"] == pytest.approx(float((predictions == truth).mean()))
    # while the influence sees the dirty labels
    assert not torch.allclose(a.matrix("influence"), b.matrix("influence"))
    assert math.isfinite(b.summary["train_loss_clean"])


def test_per_kind_loss_from_the_last_checkpoint(store):
    settings = ExperimentSettings(glitch="uniform", n_test=40, **TINY)
    result = experiments.run(settings, store=store, progress=False)
    predictions = experiments.load_predictions(settings, store=store)
    # independent oracle: the last checkpoint's head on the run's features, cross-entropy by hand
    from glitchlib import features, models, train

    model = models.create(settings.model, n_classes=10, seed=settings.seed)
    checkpoint = train.load_checkpoints(result.path / "checkpoints")[-1]
    model.suffix.load_state_dict(checkpoint.state_dict)
    data = experiments.load_training_set(settings, store=store)
    with torch.no_grad():
        logits = model.suffix(features.compute_features(model, data.x, progress=False)).double()
    loss = -torch.log_softmax(logits, 1)[torch.arange(len(data.y)), torch.from_numpy(data.y)]
    for kind in ("clean", "mislabeled"):
        select = torch.from_numpy(data.kind == kind)
        assert result.summary[f"train_loss_{kind}"] == pytest.approx(loss[select].mean().item(), rel=1e-4)
        assert result.summary[f"train_acc_{kind}"] == pytest.approx(
            (logits.argmax(1)[select] == torch.from_numpy(data.y)[select]).double().mean().item())
    np.testing.assert_allclose(predictions["loss"], loss.numpy(), rtol=1e-4, atol=1e-6)
