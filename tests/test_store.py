"""The results store: atomic writes, the stage log, corrupt-entry detection, tidy loaders."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from glitchlib.store import RESULT_FORMAT, IncompatibleEntry, Store, atomic_write, file_lock


@pytest.fixture
def store(tmp_path):
    return Store(root=tmp_path / "results")


def _no_temporaries(directory):
    return [p.name for p in directory.rglob(".*.tmp")] == []


# ------------------------------------------------------------------ atomic I/O
def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"old": true}')

    def broken(f):
        f.write(b'{"new": ')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"old": True}
    assert _no_temporaries(tmp_path)


def test_typed_io_round_trips(store):
    entry = store.entry("k")
    matrix = torch.randn(7, 5)
    entry.save_tensor("matrices/m.pt", matrix)
    assert torch.equal(entry.load_tensor("matrices/m.pt"), matrix)

    kinds = np.array(["clean", "mislabeled", "anomaly"])
    entry.save_arrays("a.npz", kind=kinds, y=np.arange(3))
    arrays = entry.load_arrays("a.npz")
    assert arrays["kind"].tolist() == kinds.tolist() and arrays["y"].tolist() == [0, 1, 2]

    frame = pd.DataFrame({"kind": kinds, "score": [0.5, -1.25, 3.0], "flag": [True, False, True]})
    entry.write_frame("s.csv.gz", frame)
    with open(entry.file("s.csv.gz"), "rb") as f:
        assert f.read(2) == b"\x1f\x8b"  # gzip magic
    pd.testing.assert_frame_equal(entry.read_frame("s.csv.gz"), frame)

    entry.write_json("x.json", {"a": np.float32(0.5), "b": np.arange(2)})
    assert entry.read_json("x.json") == {"a": 0.5, "b": [0, 1]}
    assert _no_temporaries(entry.path)


def test_file_lock_excludes_another_process(tmp_path):
    lock = tmp_path / "x.lock"
    probe = textwrap.dedent(f"""
        import fcntl, sys
        f = open({str(lock)!r}, "a+")
        try:  # the POSIX record lock the store takes (it reaches network file systems; flock does not)
            fcntl.lockf(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            sys.exit(3)
        sys.exit(0)
    """)
    with file_lock(lock):
        assert subprocess.run([sys.executable, "-c", probe]).returncode == 3
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0


# ------------------------------------------------------------------- stage log
def test_stage_log_records_computed_and_reused_stages(store):
    entry = store.entry("k")
    entry.write_json("data.json", {"n": 1})
    entry.finish_stage("data", 1.5, ["data.json"])
    entry.log_reuse("data")
    stages = entry.read_stages()
    assert stages["format"] == RESULT_FORMAT
    assert stages["finished"]["data"]["seconds"] == 1.5
    assert set(stages["finished"]["data"]["files"]["data.json"]) == {"size", "sha256"}
    assert [(e["stage"], e["action"]) for e in entry.events()] == [("data", "computed"), ("data", "reused")]
    assert entry.stage_problem("data") is None
    assert entry.stage_problem("inject") == "not finished"
    entry.forget_stages(["data"])
    assert entry.stage_problem("data") == "not finished"


def test_stage_problem_detects_missing_truncated_and_altered_files(store):
    entry = store.entry("k")
    entry.save_tensor("matrices/m.pt", torch.arange(100.0))
    entry.save_arrays("labels.npz", y=np.arange(100))
    entry.finish_stage("influence", 2.0, ["matrices/m.pt", "labels.npz"])
    path = entry.file("matrices/m.pt")
    data = path.read_bytes()

    path.write_bytes(data[:-10])
    assert "bytes" in entry.stage_problem("influence")

    altered = bytearray(data)
    altered[-20] ^= 0xFF
    path.write_bytes(bytes(altered))
    assert entry.stage_problem("influence", deep=False) is None  # same size, bulky file
    assert "sha256" in entry.stage_problem("influence", deep=True)
    path.write_bytes(data)
    small = entry.file("labels.npz")
    altered = bytearray(small.read_bytes())
    altered[len(altered) // 2] ^= 0x01
    small.write_bytes(bytes(altered))
    assert "labels.npz" in entry.stage_problem("influence", deep=False)  # small files: always the sha256

    path.unlink()
    assert "missing" in entry.stage_problem("influence")


def test_unreadable_or_foreign_stage_log_is_incompatible(store):
    entry = store.entry("k")
    entry.path.mkdir(parents=True)
    entry.file("stages.json").write_text("{not json")
    with pytest.raises(IncompatibleEntry, match="unreadable stage log"):
        entry.read_stages()
    entry.file("stages.json").write_text(json.dumps({"format": RESULT_FORMAT + 1, "finished": {}, "events": []}))
    with pytest.raises(IncompatibleEntry, match="format"):
        entry.read_stages()


# --------------------------------------------------------------------- records
SETTINGS = {"dataset": "fmnist", "model": "resnet20", "glitch": "uniform", "ratio": 0.1, "seed": 3,
            "pretrained": False, "influence": "all", "device": "cpu"}


def _complete_entry(store, key, *, seed=3, f1=0.5, val_acc=0.8):
    """A complete entry written through the Entry API, as experiments.run writes one."""
    entry = store.entry(key)
    entry.write_frame("metrics.csv", pd.DataFrame({"signal": ["si", "cnci"], "f1": [f1, f1 + 0.25],
                                                   "ap": [0.4, 0.6], "auroc": [0.7, 0.9]}))
    entry.write_frame("history.csv", pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5],
                                                   "train_acc": [0.6, 0.7], "val_acc": [0.65, val_acc]}))
    entry.write_frame("scores.csv.gz", pd.DataFrame({"index": [0, 1], "y": [1, 2], "si": [0.1, 0.2]}))
    record = {
        "settings": {**SETTINGS, "seed": seed},
        "summary": {"n_train": 2, "n_test": 1, "n_glitches": 1, "val_acc": val_acc, "repair_acc": None,
                    "data_source": "embedded", "weights_id": "random-seed3"},
        "timings": {"data": 0.5, "training": 2.0},
        "environment": {"device": "cpu", "machine": "test machine"},
    }
    entry.finish_stage("metrics", 0.5, ["metrics.csv", "history.csv", "scores.csv.gz"])
    entry.write_record(record, ["metrics.csv", "history.csv", "scores.csv.gz"])
    return entry


def test_record_round_trips_and_marks_the_entry_done(store):
    entry = _complete_entry(store, "run-a")
    record = entry.read_record(settings={"seed": 3, "dataset": "fmnist"})
    assert record["format"] == RESULT_FORMAT and record["key"] == "run-a"
    assert record["summary"]["val_acc"] == 0.8
    assert store.state("run-a") == "done"
    assert store.state("nothing-here") == "missing"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda e: e.file("record.json").write_text("{truncated"), "unreadable record"),
        (lambda e: e.file("metrics.csv").unlink(), "missing"),
        (lambda e: e.file("metrics.csv").write_text("signal,f1\n"), "bytes"),
    ],
)
def test_corrupt_entries_are_detected(store, damage, message):
    entry = _complete_entry(store, "run-a")
    damage(entry)
    with pytest.raises(IncompatibleEntry, match=message):
        entry.read_record()
    assert store.state("run-a").startswith("corrupt")


def test_record_with_other_settings_or_format_is_incompatible(store):
    entry = _complete_entry(store, "run-a")
    with pytest.raises(IncompatibleEntry, match="other settings"):
        entry.read_record(settings={"seed": 4})
    record = json.loads(entry.file("record.json").read_text())
    record["format"] = RESULT_FORMAT + 1
    entry.file("record.json").write_text(json.dumps(record))
    with pytest.raises(IncompatibleEntry, match="format"):
        entry.read_record()


def test_partial_entry_state(store):
    entry = store.entry("run-b")
    entry.write_json("data.json", {})
    entry.finish_stage("data", 0.1, ["data.json"])
    assert store.state("run-b") == "partial"
    entry.invalidate_record()  # no record: nothing to remove, no error
    entry.wipe()
    assert not entry.path.exists() and store.state("run-b") == "missing"


def test_invalid_keys_are_refused(store):
    for key in ("", "../x", ".hidden"):
        with pytest.raises(ValueError, match="key"):
            store.entry(key)


# ----------------------------------------------------------------- tidy loaders
def test_tidy_loaders(store):
    _complete_entry(store, "run-a", seed=0, f1=0.5, val_acc=0.8)
    _complete_entry(store, "run-b", seed=1, f1=0.25, val_acc=0.9)
    store.entry("run-c").finish_stage("data", 0.1, [])  # partial: not a result

    runs = store.load_runs()
    assert list(runs["key"]) == ["run-a", "run-b"]
    assert runs["val_acc"].tolist() == [0.8, 0.9] and runs["seed"].tolist() == [0, 1]
    assert runs["machine"].tolist() == ["test machine"] * 2
    assert {"repair_acc", "train_acc_anomaly", "char_acc_mislabeled", "weights_id"} <= set(runs.columns)

    metrics = store.load_metrics()
    assert list(metrics.columns[:10]) == ["key", "dataset", "model", "glitch", "ratio", "seed", "pretrained",
                                          "influence", "signal", "f1"]
    assert metrics.set_index(["key", "signal"])["f1"].to_dict() == {
        ("run-a", "si"): 0.5, ("run-a", "cnci"): 0.75, ("run-b", "si"): 0.25, ("run-b", "cnci"): 0.5}

    histories = store.load_histories()
    assert len(histories) == 4 and histories["val_acc"].tolist() == [0.65, 0.8, 0.65, 0.9]

    timings = store.load_timings()
    assert timings.set_index(["key", "stage"])["seconds"].to_dict()[("run-b", "training")] == 2.0

    scores = store.load_scores("run-a")
    assert scores["si"].tolist() == [0.1, 0.2]
    with pytest.raises(FileNotFoundError, match="run-c"):
        store.load_scores("run-c")


def test_loaders_skip_corrupt_entries_with_a_warning(store, caplog):
    _complete_entry(store, "run-a", seed=0)
    broken = _complete_entry(store, "run-b", seed=1)
    broken.file("history.csv").unlink()
    with caplog.at_level(logging.WARNING, logger="glitchlib.store"):
        runs = store.load_runs()
    assert list(runs["key"]) == ["run-a"]
    assert "run-b" in caplog.text and "missing" in caplog.text


def test_empty_store_gives_empty_tables_with_columns(store):
    assert store.keys() == []
    for frame, column in ((store.load_runs(), "val_acc"), (store.load_metrics(), "f1"),
                          (store.load_histories(), "epoch"), (store.load_timings(), "seconds")):
        assert frame.empty and column in frame.columns
    assert not os.path.exists(store.root)  # reading creates nothing


# ------------------------------------------------------------- checks on read
def test_a_same_size_edit_is_seen_even_with_the_old_modification_time(store):
    entry = _complete_entry(store, "run-a")
    path = entry.file("metrics.csv")
    before = path.stat()
    assert store.state("run-a") == "done"  # the check is now remembered for this version
    text = path.read_text()
    path.write_text(text.replace("0.75", "0.15"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime
    assert path.stat().st_size == before.st_size
    assert "metrics.csv does not match its recorded sha256" in store.state("run-a")


def test_record_and_stage_log_carry_their_own_checksum(store):
    entry = _complete_entry(store, "run-a")
    record = json.loads(entry.file("record.json").read_text())
    record["summary"]["val_acc"] = 0.99
    entry.file("record.json").write_text(json.dumps(record))
    with pytest.raises(IncompatibleEntry, match="own sha256"):
        entry.read_record()
    del record["sha256"]
    entry.file("record.json").write_text(json.dumps(record))
    with pytest.raises(IncompatibleEntry, match="older glitchlib"):
        entry.read_record()

    stages = json.loads(entry.file("stages.json").read_text())
    stages["finished"]["metrics"]["seconds"] = 99.0
    entry.file("stages.json").write_text(json.dumps(stages))
    with pytest.raises(IncompatibleEntry, match="own sha256"):
        entry.read_stages()
    del stages["sha256"]  # a log written before checksums were kept is read as it is
    entry.file("stages.json").write_text(json.dumps(stages))
    assert entry.read_stages()["finished"]["metrics"]["seconds"] == 99.0


def test_a_complete_entry_needs_its_stage_log(store):
    entry = _complete_entry(store, "run-a")
    entry.file("stages.json").unlink()
    assert "stage log" in store.state("run-a") and store.state("run-a").startswith("corrupt")


def test_loaders_warn_once_per_damaged_entry(store, caplog):
    _complete_entry(store, "run-a", seed=0)
    _complete_entry(store, "run-b", seed=1).file("metrics.csv").write_text("signal,f1\nsi,0.5\n")
    with caplog.at_level(logging.WARNING, logger="glitchlib.store"):
        store.load_runs(), store.load_metrics(), store.load_histories()
    assert caplog.text.count("skipping run-b") == 1


def test_only_temporary_files_of_dead_writers_are_removed(tmp_path):
    import socket

    from glitchlib.store import remove_orphans

    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    orphan = tmp_path / f".a.pt.{host}.{dead}.x1.tmp"
    alive = tmp_path / f".b.pt.{host}.{os.getpid()}.x2.tmp"
    foreign = tmp_path / ".c.pt.otherhost.1.x3.tmp"
    for path in (orphan, alive, foreign):
        path.write_text("partial")
    assert remove_orphans(tmp_path) == [orphan]
    assert alive.exists() and foreign.exists()
    assert sorted(remove_orphans(tmp_path, any_process=True)) == sorted([alive, foreign])


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    """A shared store is readable by others where the umask allows it (mkstemp alone gives 0o600)."""
    import os
    import stat

    from glitchlib.store import atomic_write

    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "a.json", lambda f: f.write("{}"), binary=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~umask
