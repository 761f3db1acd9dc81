"""Experiments end to end: one tiny run, resuming after a failure, corrupt entries, grids.

The runs use the real default model (``efficientnet_lite0`` with its ImageNet
weights) on a seeded sub-sample of 100 training and 40 validation images of the
embedded Fashion-MNIST, two epochs: the backbone features take a few seconds,
the rest well under a second. Every test works on a copy of one finished store,
so the features are computed once for the module.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import numpy as np
import pytest
import torch

import glitchlib.features
import glitchlib.train
from glitchlib import cli, experiments
from glitchlib.settings import ExperimentSettings
from glitchlib.grid import grid_status, run_grid
from glitchlib.report import summary_tables
from glitchlib.profiles import profile_settings, runnable
from glitchlib.peers import PEERS
from glitchlib.signals import SIGNALS
from glitchlib.store import Store

TINY = ExperimentSettings(dataset="fmnist", model="efficientnet_lite0", glitch="mixed", ratio=0.1, seed=0,
                          n_train=100, n_test=40, epochs=2)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The store holding the finished TINY run, and its result."""
    root = tmp_path_factory.mktemp("store") / "results"
    result = experiments.run(TINY, store=root, progress=False)
    return root, result


@pytest.fixture
def store(finished, tmp_path):
    """A private copy of the finished store (features cached, TINY complete)."""
    root = tmp_path / "results"
    shutil.copytree(finished[0], root)
    return Store(root=root)


def _events(store, settings):
    return [(e["stage"], e["action"]) for e in store.entry(settings.key()).events()]


def _top_k_f1(scores, mask):
    """Independent oracle of detection F1: flag the k highest scores (stable order)."""
    k = int(mask.sum())
    flagged = np.zeros(len(scores), dtype=bool)
    flagged[np.argsort(-scores, kind="stable")[:k]] = True
    tp = (flagged & mask).sum()
    return 2 * tp / (flagged.sum() + mask.sum())


# ------------------------------------------------------------------- end to end
def test_tiny_run_computes_every_stage_and_its_record_round_trips(finished):
    root, result = finished
    assert result.computed == experiments.STAGES
    assert set(result.timings) == set(experiments.STAGES)
    assert all(seconds >= 0 for seconds in result.timings.values())

    summary = result.summary
    assert (summary["n_train"], summary["n_test"]) == (110, 40)  # 10 anomalies appended
    assert (summary["n_mislabeled"], summary["n_anomalies"], summary["n_glitches"]) == (10, 10, 20)
    assert summary["val_acc"] == pytest.approx(result.history["val_acc"].iloc[-1])  # two code paths agree
    assert summary["data_source"] == "embedded" and summary["weights_id"].startswith("sha256:")
    assert 0 <= summary["repair_acc"] <= 1 and 0 <= summary["char_acc"] <= 1
    assert list(result.metrics["signal"]) == list(SIGNALS) + list(PEERS)
    assert 0 <= summary["repair_acc_cleanlab"] <= 1
    assert all(summary[f"seconds_{name}"] >= 0 for name in PEERS)
    assert result.environment["versions"]["torch"] == torch.__version__

    # read back from disk: the same result, nothing recomputed
    again = experiments.load_result(TINY, store=root)
    assert again.summary == summary and again.timings == result.timings and again.computed == ()
    assert again.metrics.equals(result.metrics) and again.settings == TINY

    runs = Store(root=root).load_runs()
    assert len(runs) == 1 and runs.loc[0, "key"] == TINY.key()
    assert runs.loc[0, "val_acc"] == summary["val_acc"] and runs.loc[0, "glitch"] == "mixed"
    metrics = Store(root=root).load_metrics()
    assert metrics.set_index("signal")["f1"].to_dict() == result.metrics.set_index("signal")["f1"].to_dict()


def test_stored_scores_agree_with_stored_matrices_and_metrics(finished):
    _, result = finished
    scores = result.scores()
    matrix, si = result.matrix("influence"), result.matrix("self_influence")
    assert matrix.shape == (110, 40) and matrix.dtype == torch.float32
    assert result.matrix("influence_cnci").shape == result.matrix("influence_pcid").shape == (110, 40)
    # float32 sums of mixed-sign rows: tolerance relative to the row's absolute sum
    row_scale = matrix.double().abs().sum(1).numpy()
    np.testing.assert_array_less(np.abs(scores["mi"] - matrix.double().sum(1).numpy()), 1e-6 * row_scale + 1e-9)
    np.testing.assert_allclose(scores["si"], si.double().numpy(), rtol=1e-6)
    kind = scores["kind"].to_numpy()
    assert (kind == "anomaly").sum() == 10 and (kind[-10:] == "anomaly").all()  # appended last
    mask = scores["mask"].to_numpy().astype(bool)
    assert (mask == (kind != "clean")).all()
    f1 = result.metrics.set_index("signal")["f1"]
    for signal in ("si", "cnci", "pcid", "cfrank", *PEERS):
        assert f1[signal] == pytest.approx(_top_k_f1(scores[signal].to_numpy(), mask))
    mislabeled = kind == "mislabeled"
    for column, key in (("suggested_label", "repair_acc"), ("cleanlab_label", "repair_acc_cleanlab")):
        repair = (scores[column].to_numpy() == scores["y_true"].to_numpy())[mislabeled].mean()
        assert result.summary[key] == pytest.approx(repair)


def test_recomputed_peers_agree_with_the_stored_scores(finished):
    root, result = finished
    peers = experiments.recompute_peers(TINY, store=root)
    scores = result.scores()
    for name in PEERS:
        np.testing.assert_allclose(peers.scores[name], scores[name], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(peers.suggested_labels, scores["cleanlab_label"])
    with pytest.raises(FileNotFoundError, match="training"):
        experiments.recompute_peers(TINY.replace(seed=9), store=root)


def test_training_set_of_a_run(finished):
    root, result = finished
    data = experiments.load_training_set(TINY, store=root)
    scores = result.scores()
    assert data.x.shape == (110, 1, 28, 28) and data.x_test.shape == (40, 1, 28, 28)
    assert (data.y == scores["y"].to_numpy()).all() and (data.kind == scores["kind"].to_numpy()).all()
    assert len(data.class_names) == 10 and len(data.ood_class_names) == 10


def test_rerun_reads_the_entry_back(store, monkeypatch):
    before = _events(store, TINY)
    monkeypatch.setattr(glitchlib.train, "fit", _forbidden("training"))
    result = experiments.run(TINY, store=store, progress=False)
    assert result.computed == () and _events(store, TINY) == before


def test_an_entry_of_the_previous_signals_version_recomputes_signals_and_metrics_only(store, caplog):
    # entries written before the dedicated detectors: signals stage without a version, no peer columns
    entry = store.entry(TINY.key())
    stages = entry.read_stages()
    del stages["finished"]["signals"]["version"]
    stages.pop("sha256", None)  # a log without its own checksum, as older logs are
    entry.write_json("stages.json", stages)
    assert grid_status([TINY], store=store)["status"].tolist() == ["partial"]
    with caplog.at_level(logging.WARNING):
        result = experiments.run(TINY, store=store, progress=False)
    assert result.computed == ("signals", "metrics") and "version" in caplog.text
    assert set(PEERS) <= set(result.scores().columns)
    assert grid_status([TINY], store=store)["status"].tolist() == ["done"]


def test_device_is_not_part_of_the_key():
    assert TINY.replace(device="cuda").key() == TINY.key()
    assert TINY.replace(seed=1).key() != TINY.key()
    assert TINY.replace(n_train=None).key() != TINY.key()


# --------------------------------------------------------------------- resume
def _forbidden(what):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} was recomputed")

    return fail


def test_a_failed_run_resumes_after_its_last_finished_stage(store, monkeypatch):
    settings = TINY.replace(glitch="class-based")  # same images: features come from the cache

    def killed(self):
        raise KeyboardInterrupt("killed between stages")

    with monkeypatch.context() as patch:
        patch.setattr(experiments._Pipeline, "_stage_influence", killed)
        with pytest.raises(KeyboardInterrupt):
            experiments.run(settings, store=store, progress=False)
    assert store.state(settings.key()) == "partial"
    first = ["data", "inject", "features", "training"]
    assert _events(store, settings) == [(s, "computed") for s in first]

    # the rerun may neither retrain (the cross-validation of the signals stage trains its own heads)
    # nor run the backbone
    monkeypatch.setattr(experiments._Pipeline, "_stage_training", _forbidden("training"))
    monkeypatch.setattr(glitchlib.features, "_forward", _forbidden("the backbone"))
    result = experiments.run(settings, store=store, progress=False)
    rest = ["influence", "counterfactuals", "signals", "metrics"]
    assert result.computed == tuple(rest)
    assert _events(store, settings)[4:] == [(s, "reused") for s in first] + [(s, "computed") for s in rest]
    assert store.state(settings.key()) == "done"
    assert result.summary["n_mislabeled"] == 10 and result.summary["n_anomalies"] == 0


def test_a_corrupt_matrix_is_detected_and_recomputed_from_its_stage(store, caplog):
    entry = store.entry(TINY.key())
    path = entry.file("matrices/influence.pt")
    data = bytearray(path.read_bytes())
    data[-50] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    original = experiments.load_result(TINY, store=store)
    with caplog.at_level(logging.WARNING, logger="glitchlib.experiments"):
        result = experiments.run(TINY, store=store, progress=False)
    assert TINY.key() in caplog.text and "sha256" in caplog.text
    assert result.computed == ("influence", "counterfactuals", "signals", "metrics")
    assert result.metrics.equals(original.metrics)  # deterministic recomputation
    assert store.state(TINY.key()) == "done"


def test_an_unreadable_record_is_rebuilt_from_the_intact_stages(store, caplog):
    entry = store.entry(TINY.key())
    entry.file("record.json").write_text('{"format": 1, "key": ')
    assert store.state(TINY.key()).startswith("corrupt")
    with caplog.at_level(logging.WARNING):
        result = experiments.run(TINY, store=store, progress=False)
    assert "unreadable record" in caplog.text
    assert result.computed == () and store.state(TINY.key()) == "done"


@pytest.mark.parametrize("damage, message", [
    (lambda e: _edit_json(e.file("settings.json"), lambda d: d["settings"].update(seed=7)), "other settings"),
    (lambda e: _edit_json(e.file("settings.json"), lambda d: d["training"].update(lr=9.0)), "training settings"),
    (lambda e: _edit_json(e.file("stages.json"), lambda d: d.update(format=0)), "format"),
])
def test_an_incompatible_entry_is_reported_and_recomputed(store, caplog, damage, message):
    entry = store.entry(TINY.key())
    entry.invalidate_record()
    damage(entry)
    with caplog.at_level(logging.WARNING, logger="glitchlib.experiments"):
        result = experiments.run(TINY, store=store, progress=False)
    assert message in caplog.text and "recomputing it from scratch" in caplog.text
    assert result.computed == experiments.STAGES
    assert store.state(TINY.key()) == "done"


def _edit_json(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


# ----------------------------------------------------------- settings, profiles
def test_settings_round_trip_and_errors(tmp_path):
    assert ExperimentSettings.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="unknown settings field.*sed.*valid fields.*seed"):
        ExperimentSettings.from_dict({"sed": 1})
    with pytest.raises(ValueError, match="glitch='noise'.*uniform, class-based, anomalies, mixed"):
        ExperimentSettings(glitch="noise")
    with pytest.raises(ValueError, match="n_train=1"):
        ExperimentSettings(n_train=1)
    with pytest.raises(ValueError, match="n_test=1001 exceeds the 1000 samples loaded"):
        experiments.run(TINY.replace(n_test=1001), store=tmp_path / "results", progress=False)


def test_profiles():
    embedded = [s for s in profile_settings("embedded") if s.dataset in ("mnist", "fmnist")]  # tables apart
    assert len(embedded) == 40 and len({s.key() for s in embedded}) == 40
    assert {(s.dataset, s.glitch) for s in embedded} == {
        (d, g) for d in ("mnist", "fmnist") for g in ("uniform", "class-based", "anomalies", "mixed")}
    assert {s.seed for s in embedded} == {0, 1, 2, 3, 4} and all(runnable(s)[0] for s in embedded)
    paper = [s for s in profile_settings("paper") if s.dataset in ("mnist", "fmnist", "cifar10")]
    assert len(paper) == 180
    assert {(s.dataset, s.model) for s in paper} == {
        (d, m) for d in ("mnist", "fmnist", "cifar10") for m in ("resnet20", "vit_b_16", "convnext_tiny")}
    tiny = profile_settings("tiny")
    assert len(tiny) == 8 and all(s.n_train == 300 and s.n_test == 100 for s in tiny)


def test_yaml_profiles(tmp_path):
    product = tmp_path / "p.yaml"
    product.write_text("base: {n_train: 100, n_test: 40}\nproduct:\n  dataset: [mnist, fmnist]\n"
                       "  seed: [0, 1]\ncells:\n  - {glitch: uniform}\n  - {glitch: uniform}\n")
    cells = profile_settings(product)
    assert len(cells) == 5  # 4 products + the listed cell once
    assert {(s.dataset, s.seed) for s in cells[:4]} == {("mnist", 0), ("mnist", 1), ("fmnist", 0), ("fmnist", 1)}
    assert all(s.n_train == 100 for s in cells) and cells[4].glitch == "uniform"
    listed = tmp_path / "l.yaml"
    listed.write_text("- {dataset: mnist}\n- {dataset: fmnist, ratio: 0.2}\n")
    assert [s.ratio for s in profile_settings(listed)] == [0.1, 0.2]
    bad = tmp_path / "b.yaml"
    bad.write_text("- {dataset: mnist, ratio: 0.9}\n")
    with pytest.raises(ValueError, match="b.yaml.*cell 0.*ratio"):
        profile_settings(bad)
    with pytest.raises(ValueError, match="embedded, paper, tiny"):
        profile_settings("nope")


# ------------------------------------------------------------------------ grid
def test_grid_runs_the_missing_cells_in_workers(store, monkeypatch):
    cells = [TINY, TINY.replace(glitch="uniform"), TINY.replace(glitch="anomalies"),
             ExperimentSettings(dataset="cifar10", model="resnet20")]
    monkeypatch.setenv("TORCH_HOME", str(store.root / "no-hub"))
    status = grid_status(cells, store=store)
    assert status["status"].tolist() == ["done", "missing", "missing", "not runnable"]
    outcome = run_grid(cells, store=store, jobs=2, progress=False)
    assert outcome.ok and sorted(outcome.computed) == sorted(c.key() for c in cells[1:3])
    assert outcome.already_done == [TINY.key()] and [k for k, _ in outcome.not_runnable] == [cells[3].key()]
    assert grid_status(cells, store=store)["status"].tolist() == ["done", "done", "done", "not runnable"]
    # a second pass has nothing to do
    again = run_grid(cells, store=store, jobs=2, progress=False)
    assert again.computed == [] and len(again.already_done) == 3


def test_cli_run_reads_back_and_report_prints_tables(store, capsys, monkeypatch):
    monkeypatch.setattr(glitchlib.train, "fit", _forbidden("training"))
    fields = dataclasses.asdict(TINY)
    argv = ["run", "--store", str(store.root), "--quiet"]
    for name in ("dataset", "model", "glitch", "ratio", "seed", "n_train", "n_test", "epochs"):
        argv += ["--" + name.replace("_", "-"), str(fields[name])]
    assert cli.main(argv=argv) == 0
    out = capsys.readouterr().out
    assert "read from the store" in out and "val_acc" in out and "cnci" in out
    assert cli.main(argv=["report", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "validation accuracy" in out and "CNCI" in out and "mixed" in out
    assert "cleanlab" in out and "Mahalanobis" in out  # the dedicated detectors beside the signals
    tables = summary_tables(store=store)
    # the run's settings that are not the defaults name its table: another size would be another table
    assert list(tables) == ["validation accuracy", "detection F1, mixed at ratio 0.1, n_train=100, n_test=40, epochs=2"]



def test_a_chapter_holds_its_finished_runs_their_status_and_provenance(store, monkeypatch):
    import glitchlib.grid
    from glitchlib import report

    monkeypatch.setattr(glitchlib.grid, "run_grid", _forbidden("the grid"))
    missing = dataclasses.replace(TINY, seed=1)
    uniform = dataclasses.replace(TINY, glitch="uniform")
    chapter = report.chapter("tiny", results_dir=store, cells=[TINY, missing, uniform], glitch="mixed",
                             compute="false", progress=False)
    assert chapter.settings == profile_settings("tiny")
    assert chapter.cells == [TINY, missing]  # the mixed cells only
    assert dict(zip(chapter.status["key"], chapter.status["status"])) == {TINY.key(): "done",
                                                                          missing.key(): "missing"}
    assert chapter.done == [TINY.key()]
    assert list(chapter.runs["key"]) == [TINY.key()]
    assert set(chapter.metrics["key"]) == {TINY.key()}
    assert set(chapter.metrics["signal"]) == set(SIGNALS) | set(PEERS)
    assert "1/2 done, 1 missing" in chapter.summary.to_string()
    assert chapter.provenance.startswith("**Profile `tiny`.** 1 runs from the results store")
    assert "seeds 0" in chapter.provenance
    assert set(chapter.table("timings")["key"]) == {TINY.key()}
    with pytest.raises(ValueError, match="name='nope'"):
        chapter.table("nope")

    # cells made sure of but left out of the tables
    chapter = report.chapter("tiny", results_dir=store, cells=[missing], also=[TINY], compute=False)
    assert set(chapter.status["key"]) == {TINY.key(), missing.key()}
    assert chapter.runs.empty and chapter.metrics.empty
    assert chapter.provenance.endswith("No finished runs in the results store for this chapter.")
    chapter = report.chapter("tiny", results_dir=store, cells=[TINY, uniform], glitch=("uniform", "mixed"),
                             compute=False)
    assert chapter.cells == [uniform, TINY]
    with pytest.raises(ValueError, match="glitch='blur'"):
        report.chapter("tiny", results_dir=store, glitch="blur", compute=False)
    with pytest.raises(ValueError, match="glitch=None"):
        report.chapter("tiny", results_dir=store, glitch=("mixed", None), compute=False)

def test_the_papers_signals_recomputed_from_stored_matrices_equal_the_stored_scores(finished):
    """What every detection chapter shows: CNCI, PCID and CFRank again from the stored matrices."""
    from glitchlib import signals

    _, result = finished
    scores = result.scores()
    ts = experiments.load_training_set(result.settings, store=result.store)
    cnci = signals.cnci(result.matrix("influence_cnci"), ts.y, ts.y_test)
    pcid = signals.pcid(result.matrix("influence"), result.matrix("influence_pcid"), ts.y_test)
    np.testing.assert_allclose(cnci, scores["cnci"], rtol=1e-5, atol=0)
    np.testing.assert_allclose(pcid, scores["pcid"], rtol=1e-5, atol=0)
    np.testing.assert_array_equal(signals.cfrank(cnci, pcid), scores["cfrank"].to_numpy())
