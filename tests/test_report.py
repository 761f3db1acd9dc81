"""Tests of glitchlib.report: tables and figures from tidy tables."""

from dataclasses import dataclass, replace

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from glitchlib import report
from glitchlib.report.names import _model_variants
from glitchlib.report.runs import _provenance, _provenance_markdown, _status_summary, _status_table, _with_glitch
from glitchlib.report.samples import _confusion_table
from glitchlib.report.tables import _mean_std, _paper_validation


@dataclass(frozen=True)
class FakeSettings:
    dataset: str = "fmnist"
    model: str = "efficientnet_lite0"
    glitch: str = "class-based"
    ratio: float = 0.1
    seed: int = 0
    pretrained: bool = True
    lr: float | None = None
    batch_size: int | None = None
    epochs: int | None = None

    def key(self):
        return f"{self.dataset}-{self.model}-{self.glitch}-{self.ratio}-{self.seed}"


def _runs():
    rows = []
    for dataset, base in (("mnist", 0.9), ("fmnist", 0.8)):
        for glitch in ("uniform", "class-based"):
            for seed, delta in enumerate((-0.01, 0.01)):
                rows.append(
                    {"key": f"{dataset}{glitch}{seed}", "dataset": dataset, "model": "efficientnet_lite0",
                     "glitch": glitch, "seed": seed, "pretrained": True, "val_acc": base + delta,
                     "train_acc_clean": 0.9, "train_acc_mislabeled": 0.1, "train_acc_anomaly": np.nan,
                     "data_source": "embedded", "weights_id": "abc123", "device": "cpu", "machine": "box"}
                )
    return pd.DataFrame(rows)


def _metrics():
    rows = []
    for seed in range(3):
        for signal, f1 in (("si", 0.2 + 0.1 * seed), ("cnci", 0.6), ("mai", 0.3)):
            rows.append({"key": f"k{seed}", "dataset": "fmnist", "model": "efficientnet_lite0",
                         "glitch": "class-based", "seed": seed, "signal": signal, "f1": f1, "ap": f1, "auroc": 0.7})
    return pd.DataFrame(rows)


def test_format_mean_std():
    assert report.format_mean_std(0.944, std=0.0123) == "0.94 ± 0.01"
    assert report.format_mean_std(0.5) == "0.50"
    assert report.format_mean_std(0.5, std=float("nan"), digits=3) == "0.500"
    assert report.format_mean_std(float("nan"), std=0.1) == ""


def test_mean_std_matches_numpy():
    df = pd.DataFrame({"g": ["a", "a", "a", "b"], "v": [1.0, 2.0, 4.0, 3.0]})
    out = _mean_std(df, ["g"], "v").set_index("g")
    assert out.loc["a", "mean"] == pytest.approx(np.mean([1, 2, 4]))
    assert out.loc["a", "std"] == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert out.loc["a", "n"] == 3
    assert np.isnan(out.loc["b", "std"])


def test_mean_std_names_missing_column():
    with pytest.raises(ValueError, match="val_acc"):
        _mean_std(pd.DataFrame({"g": [1]}), ["g"], "val_acc")


def test_mean_std_table_orders_rows_and_columns():
    table = report.mean_std_table(_runs(), ["dataset"], "glitch", "val_acc")
    assert list(table.index) == ["MNIST", "Fashion-MNIST"]
    assert list(table.columns) == ["uniform noise", "class-based noise"]
    assert table.loc["MNIST", "uniform noise"] == report.format_mean_std(0.9, std=np.std([0.89, 0.91], ddof=1))


def test_paper_validation_has_every_cell():
    paper = _paper_validation()
    assert len(paper) == 27
    cell = paper[(paper.dataset == "mnist") & (paper.model == "vit_b_16") & (paper.glitch == "uniform")]
    assert cell[["mean", "std"]].values.tolist() == [[0.83, 0.03]]


def test_validation_side_by_side_puts_paper_beside_ours():
    table = report.validation_side_by_side(_runs())
    sources = table.index.get_level_values("source")
    assert set(sources) == {"paper", "ours"}
    assert set(table.index.get_level_values("dataset")) == {"MNIST", "Fashion-MNIST"}
    assert table.loc[("MNIST", "ResNet-20", "paper"), "anomalies"] == "0.96 ± 0.01"
    assert table.loc[("Fashion-MNIST", "EfficientNet-Lite0", "ours"), "anomalies"] == ""
    # MNIST rows come first, the paper's rows before ours within a dataset
    assert table.index[0] == ("MNIST", "ResNet-20", "paper")
    assert table.index[3] == ("MNIST", "EfficientNet-Lite0", "ours")


def test_validation_side_by_side_without_runs_shows_the_paper():
    table = report.validation_side_by_side(_runs().iloc[:0])
    assert len(table) == 9


def test_model_variants_keep_random_weights_apart():
    runs = _runs()
    runs.loc[runs.seed == 1, "pretrained"] = False
    models = set(_model_variants(runs)["model"])
    assert models == {"EfficientNet-Lite0", "EfficientNet-Lite0 (random weights)"}


def test_select_keys_and_with_glitch():
    settings = [FakeSettings(seed=s) for s in range(2)]
    df = pd.DataFrame({"key": [settings[0].key(), "other"], "v": [1, 2]})
    assert report.select_keys(df, settings)["v"].tolist() == [1]
    assert _with_glitch(settings, "class-based") == settings
    mixed = _with_glitch(settings + [replace(settings[0], glitch="uniform")], "mixed")
    assert [s.glitch for s in mixed] == ["mixed", "mixed"]
    assert sorted(s.seed for s in mixed) == [0, 1]


def test_status_table():
    settings = [FakeSettings(seed=0), FakeSettings(seed=1), FakeSettings(dataset="cifar10")]
    status = _status_table(
        settings, {settings[0].key()}, lambda s: (s.dataset != "cifar10", "no CIFAR-10 files")
    )
    assert status["status"].tolist() == ["done", "missing", "not runnable"]
    assert status["reason"].tolist()[2] == "no CIFAR-10 files"


def test_provenance():
    runs = _runs()
    prov = _provenance(runs)
    assert prov["dataset"].tolist() == ["MNIST", "Fashion-MNIST"]
    assert set(prov["seeds"]) == {"0, 1"}
    text = _provenance_markdown(runs, "embedded")
    assert "abc123" in text and "embedded" in text and "seeds 0, 1" in text
    assert "No finished runs" in _provenance_markdown(runs.iloc[:0])


def test_metric_table_and_plot():
    metrics = _metrics()
    table = report.metric_table(metrics, metric="f1")
    assert list(table.index) == ["SI", "MAI", "CNCI"]  # signals as rows, so "0.60 ± 0.00" never wraps
    assert list(table.columns) == ["Fashion-MNIST"]
    assert table.loc["CNCI"].iloc[0] == "0.60 ± 0.00"
    assert table.loc["SI"].iloc[0] == report.format_mean_std(0.3, std=0.1)
    fig = report.plot_metric(metrics, metric="f1")
    assert len(fig.axes) == 1
    assert report.plot_metric(metrics.iloc[:0], metric="f1") is not None


def test_metric_table_marks_same_class_sign_signals_on_head_only_models():
    rows = []
    for model, influence in (("efficientnet_lite0", "all"), ("resnet20", "all")):
        for signal in ("si", "nil", "slin", "slip", "cnci"):
            rows.append({"key": model, "dataset": "mnist", "model": model, "influence": influence,
                         "glitch": "uniform", "seed": 0, "signal": signal, "f1": 0.1})
    table = report.metric_table(pd.DataFrame(rows), metric="f1")
    assert list(table.index) == ["SI", "NIL †", "#SLIP †", "#SLIN †", "CNCI"]
    assert list(table.columns) == ["ResNet-20", "EfficientNet-Lite0"]
    convolutional = report.metric_table(pd.DataFrame(rows[5:]), metric="f1")  # ResNet-20: conv influence layers
    assert list(convolutional.index) == ["SI", "NIL", "#SLIP", "#SLIN", "CNCI"]
    assert report.uninformative_signals("resnet20", influence="head") == ("nil", "slip", "slin")
    assert report.uninformative_signals("vit_b_16", influence="all") == ()


def test_same_class_influence_of_a_linear_head_on_non_negative_features_is_never_negative():
    """The proof behind the mark, checked on TracIn matrices of a trained head (brute-force oracle inside TracIn's tests)."""
    import torch

    import glitchlib as g

    torch.manual_seed(0)
    features = torch.rand(120, 6)  # >= 0, as pooled ReLU features
    labels = torch.randint(0, 3, (120,))
    head = torch.nn.Linear(6, 3)
    fit = g.train.fit(head, features, labels, None, None, settings={"lr": 0.5, "batch_size": 16, "epochs": 3}, progress=False)
    matrix = g.influence.TracIn(head, fit.checkpoints, layers=None, progress=False).train_test(
        features, labels, features[:40], labels[:40]).numpy()
    same = labels.numpy()[:, None] == labels.numpy()[None, :40]
    assert (matrix[same] >= 0).all() and (matrix[~same] < 0).any()
    y, y_test = labels.numpy(), labels.numpy()[:40]
    assert (g.signals.nil(matrix, y, y_test) == 0).all() and (g.signals.slin(matrix, y, y_test) == 0).all()
    assert (g.signals.slip(matrix, y, y_test) == np.bincount(y_test, minlength=3)[y]).all()
    features_signed = (features - 0.5) * 4  # features that can be negative: a_i . a_j + 1 < 0 happens
    signed = g.influence.TracIn(head, fit.checkpoints, layers=None, progress=False).train_test(
        features_signed, labels, features_signed[:40], labels[:40]).numpy()
    assert (signed[same] < 0).any()


def test_validation_figure_tick_labels_do_not_overlap():
    import matplotlib

    matplotlib.use("Agg")
    runs = _runs()
    runs = pd.concat([runs, runs.assign(glitch="anomalies", key=runs["key"] + "a"),
                      runs.assign(glitch="mixed", key=runs["key"] + "m")], ignore_index=True)
    fig = report.plot_validation(runs)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:2]:
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        assert len(boxes) == 4
        for left, right in zip(boxes, boxes[1:]):
            assert left.x1 < right.x0, "x tick labels overlap"


def test_top_suspects_is_stable():
    scores = pd.DataFrame({"cnci": [0.0, 5.0, 5.0, 1.0]})
    assert report.top_suspects(scores, "cnci", k=3).index.tolist() == [1, 2, 3]


def test_confusion_table_counts():
    table = _confusion_table([0, 0, 1, 2], [0, 1, 1, 1], ["a", "b", "c"])
    assert table.loc["a", "a"] == 1 and table.loc["a", "b"] == 1 and table.loc["c", "b"] == 1
    assert table.values.sum() == 4
    with pytest.raises(ValueError, match="y_pred"):
        _confusion_table([0, 1], [0])
    assert report.plot_confusion(table) is not None


def test_plot_gallery_checks_lengths():
    images = np.zeros((3, 1, 8, 8))
    assert report.plot_gallery(images, ["a", "b", "c"], [True, False, True]) is not None
    with pytest.raises(ValueError, match="captions"):
        report.plot_gallery(images, ["a"], [True, False, True])


def test_cost_table_share():
    rows = []
    for key, scale in (("a", 1.0), ("b", 3.0)):
        for stage, seconds in (("features", 10.0), ("training", 100.0), ("influence", 5.0),
                               ("counterfactuals", 2.0), ("signals", 1.0)):
            rows.append({"key": key, "dataset": "fmnist", "model": "efficientnet_lite0", "glitch": "uniform",
                         "seed": 0, "stage": stage, "seconds": seconds * scale})
    table = report.cost_table(pd.DataFrame(rows))
    column = "Fashion-MNIST · EfficientNet-Lite0"
    assert list(table.columns) == [column]
    assert table.loc["detection / training", column] == pytest.approx(0.08)
    assert table.loc["training", column] == pytest.approx(200.0)
    assert table.loc["runs", column] == 2
    assert list(table.index[:2]) == ["features", "training"]


def test_train_accuracy_table_has_paper_row():
    table = report.train_accuracy_table(_runs())
    assert list(table.columns) == ["clean", "mislabeled", "anomaly"]
    assert table.iloc[-1].tolist() == ["0.97", "0.05", "1.00"]
    assert table.iloc[0]["anomaly"] == ""


def test_plot_histories():
    hist = pd.DataFrame({"key": "a", "dataset": "mnist", "model": "efficientnet_lite0", "glitch": "uniform",
                         "seed": 0, "epoch": [1, 2], "train_loss": [1.0, 0.5], "train_acc": [0.5, 0.8],
                         "val_acc": [0.6, 0.9]})
    assert report.plot_histories(hist) is not None
    assert report.plot_histories(hist.iloc[:0]) is not None


def test_status_summary():
    settings = [FakeSettings(seed=0), FakeSettings(seed=1), FakeSettings(dataset="cifar10", model="resnet20"),
                FakeSettings(dataset="cifar10", model="resnet20", glitch="uniform")]
    status = _status_table(settings, {settings[0].key()}, lambda s: (s.dataset != "cifar10", "no files"))
    table = _status_summary(status)
    assert table.loc[("Fashion-MNIST", "EfficientNet-Lite0"), "class-based noise"] == "1/2 done, 1 missing"
    assert table.loc[("Fashion-MNIST", "EfficientNet-Lite0"), "why not runnable"] == ""
    runnable_only = _status_summary(status[status.dataset != "cifar10"])
    assert "why not runnable" not in runnable_only.columns
    assert table.loc[("CIFAR-10", "ResNet-20"), "class-based noise"] == "not runnable"
    assert table.loc[("CIFAR-10", "ResNet-20"), "why not runnable"] == "no files"
    assert list(table.columns) == ["uniform noise", "class-based noise", "why not runnable"]


def test_plot_validation():
    assert report.plot_validation(_runs()) is not None
    assert report.plot_validation(_runs().iloc[:0]) is not None


def test_claim_table():
    table = report.claim_table(_metrics(), new="cnci", metric="f1")
    row = table.iloc[0]
    assert row["best existing signal"] == "MAI" or row["best existing signal"] == "SI"
    # SI averages 0.3, MAI 0.3: CNCI (0.6) is 0.3 better and wins every seed
    assert row["difference"] == pytest.approx(0.3)
    assert row["seeds at least as good"] == "3/3"


def test_repair_summary():
    scores = pd.DataFrame({
        "mask": [True, True, False, True], "kind": ["mislabeled", "mislabeled", "clean", "mislabeled"],
        "y_true": [0, 1, 2, 3], "suggested_label": [0, 2, 2, 3], "cnci": [0.9, 0.8, 0.1, 0.0]})
    table = report.repair_summary(scores, signal="cnci")
    assert table["count"].tolist() == [3, 2]
    assert table["repair accuracy"].tolist() == pytest.approx([2 / 3, 0.5])


def test_compare_signals_and_at_ratio():
    metrics = _metrics().assign(ratio=0.1)
    table = report.compare_signals(metrics, "cnci", "si")
    row = table.iloc[0]
    assert row["CNCI"] == pytest.approx(0.6) and row["SI"] == pytest.approx(0.3)
    assert row["CNCI - SI"] == pytest.approx(0.3) and row["relative gain"] == pytest.approx(1.0)
    assert row["seeds"] == 3
    settings = [FakeSettings(seed=s) for s in range(3)]
    low = report.at_ratio(settings, ratio=0.01, seeds=2)
    assert [(s.ratio, s.seed) for s in low] == [(0.01, 0), (0.01, 1)]
    assert report.at_ratio(settings, ratio=None) == []


def test_characterization_table_and_plot_stages():
    runs = _runs().assign(char_acc_mislabeled=0.8, char_acc_anomaly=0.6)
    table = report.characterization_table(runs)
    assert list(table.columns) == ["mislabeled", "anomaly"]
    assert table.iloc[0]["mislabeled"] == "0.80 ± 0.00"
    timings = pd.DataFrame({"key": ["a", "a"], "dataset": "mnist", "model": "efficientnet_lite0",
                            "glitch": "uniform", "seed": 0, "stage": ["training", "signals"], "seconds": [10.0, 1.0]})
    assert report.plot_stages(timings) is not None


def test_pick_run_and_caption():
    settings = [FakeSettings(dataset=d, glitch=g, seed=s) for d in ("fmnist", "mnist")
                for g in ("uniform", "class-based") for s in (0, 1)]
    runs = pd.DataFrame({"key": [s.key() for s in settings if not (s.dataset == "mnist" and s.seed == 0)]})
    chosen = report.pick_run(settings, runs, glitch="class-based")
    assert (chosen.dataset, chosen.glitch, chosen.seed) == ("mnist", "class-based", 1)  # MNIST first, done only
    assert report.pick_run(settings, runs, glitch="class-based", dataset="fmnist", seed=0).seed == 0
    assert report.pick_run(settings, runs, glitch="mixed") is None
    assert "MNIST" in report.run_caption(chosen) and chosen.key() in report.run_caption(chosen)
    assert "No finished run" in report.run_caption(None)
    assert report.run_scores(None, None).empty


def test_label_confusion_names_classes():
    scores = pd.DataFrame({"kind": ["mislabeled", "mislabeled", "clean"], "y_true": [0, 1, 2],
                           "y": [5, 5, 2], "suggested_label": [0, 3, 2]})
    table = report.label_confusion(scores, dataset="fmnist", column="suggested_label")
    assert table.shape == (10, 10) and table.values.sum() == 2
    assert table.loc["T-shirt/top", "T-shirt/top"] == 1 and table.loc["Trouser", "Dress"] == 1
    assert table.columns.name == "suggested label"
    assert report.label_confusion(scores, dataset="fmnist", column="y").loc["Trouser", "Sandal"] == 1
    assert report.plot_confusion(report.label_confusion(scores.iloc[:0], dataset="fmnist")) is not None


def test_repair_table_skips_runs_without_mislabeled_samples():
    runs = _runs().assign(repair_acc=[0.5, 0.7, 0.6, 0.6, 0.4, 0.4, 0.3, 0.5])
    runs.loc[runs.glitch == "uniform", "repair_acc"] = np.nan
    table = report.repair_table(runs)
    assert list(table.columns) == ["class-based noise"]
    assert table.loc[("MNIST", "EfficientNet-Lite0"), "class-based noise"] == report.format_mean_std(
        0.6, std=np.std([0.6, 0.6], ddof=1))


def test_training_settings_table_has_paper_and_ours():
    table = report.training_settings_table(settings=[FakeSettings(dataset="mnist", model="resnet20", lr=0.5)])
    paper = table.loc[("MNIST", "ResNet-20", "paper")]
    assert paper["lr"] == 0.01 and paper["batch size"] == 128 and paper["epochs"] == 7
    assert table.loc[("MNIST", "ResNet-20", "public code"), "lr"] == 0.1
    assert table.loc[("MNIST", "ResNet-20", "this book"), "lr"] == 0.5
    assert len(table.xs("paper", level="source")) == 9


def test_training_notes_lists_public_code_difference():
    text = report.training_notes(settings=[FakeSettings(dataset="mnist", model="resnet20", lr=0.5)])
    assert "MNIST · ResNet-20 (public code)" in text
    assert text.startswith("- ")


@pytest.mark.parametrize("kind", ["anomalies", "uniform", "foo", None])
def test_label_confusion_takes_a_sample_kind_only(kind):
    scores = pd.DataFrame({"kind": ["mislabeled", "clean"], "y_true": [0, 1], "suggested_label": [1, 1]})
    with pytest.raises(ValueError, match=r"^kind=.*: choose from clean, mislabeled, anomaly, corrupted"):
        report.label_confusion(scores, dataset="fmnist", kind=kind)
