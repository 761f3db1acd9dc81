"""The results store under faults: SIGKILL at every write, damaged files, a full disk.

Each test works from one uninterrupted reference run of a tiny experiment
(``efficientnet_lite0`` features of 60 training and 20 validation images of the
embedded Fashion-MNIST, mixed glitches, two epochs) and checks the store's
promises against it, bit for bit:

* a run killed (SIGKILL, in a forked child) at any write resumes with nothing
  finished redone, and ends with the same files as the reference and no
  temporary file left;
* a flipped, zeroed, truncated or deleted file of an entry or of the feature
  cache is flagged by ``status`` (and by the report, for what it reads), and
  ``grid`` restores the reference files;
* a full disk raises an ``OSError`` naming the file and leaves the store as it was.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import glitchlib.store
from glitchlib import cli, experiments
from glitchlib.settings import ExperimentSettings
from glitchlib.features import _cache_problems
from glitchlib.grid import _run_cell, grid_status, run_grid
from glitchlib.store import Store

TINY = ExperimentSettings(dataset="fmnist", model="efficientnet_lite0", glitch="mixed", ratio=0.1, seed=0,
                          n_train=60, n_test=20, epochs=2)
#: Same data, same glitches, hence the same three feature files as TINY.
SECOND = TINY.replace(epochs=3)
#: Files that hold times, dates or the machine: equal in content, not in bits.
VOLATILE = {"record.json", "stages.json", "environment.json"}
DAMAGES = ("flip", "zero", "truncate", "delete")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the crash test forks")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every run of this module on one thread (torch and BLAS), as a grid cell runs.

    The killed runs are forked children. A child forked while torch's OpenMP pool
    has threads would wait for them for ever in its first parallel operation; with
    one thread torch never enters the pool. One thread everywhere also makes the
    reference, the killed, the resumed and the grid's runs comparable bit for bit.
    """
    from glitchlib.grid import _cell_threads

    with _cell_threads(1):
        yield


def _sha(path: Path) -> str:
    data = path.read_bytes()
    if path.name == "features.json":  # names the store's own cache folder: compare the rest
        document = json.loads(data)
        document.pop("cache_dir", None)
        data = json.dumps(document).encode()
    return hashlib.sha256(data).hexdigest()


def _entry_bits(root: Path, settings=TINY) -> dict[str, str]:
    """sha256 of every file of the entry but the volatile ones."""
    entry = Path(root) / "runs" / settings.key()
    return {p.relative_to(entry).as_posix(): _sha(p) for p in sorted(entry.rglob("*"))
            if p.is_file() and p.relative_to(entry).as_posix() not in VOLATILE}


def _cache_bits(root: Path) -> dict[str, str]:
    return {p.name: _sha(p) for p in sorted((Path(root) / "features").glob("*")) if p.is_file()}


def _leftovers(root: Path) -> list[str]:
    return [p.name for p in Path(root).rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".trash-")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted reference store (TINY and SECOND) and the files TINY wrote, in order."""
    root = tmp_path_factory.mktemp("reference") / "results"
    writes = []
    real = os.replace

    def counting(src, dst):
        writes.append(Path(dst).relative_to(root).as_posix())
        return real(src, dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", counting)
        experiments.run(TINY, store=root, progress=False)
    experiments.run(SECOND, store=root, progress=False)
    return root, writes


def _fresh_store(tmp_path: Path, reference_root: Path, name: str, features: list[str] = ()) -> Path:
    """An empty store whose feature cache holds the reference's ``features`` files."""
    root = tmp_path / name / "results"
    (root / "features").mkdir(parents=True)
    for file in features:
        shutil.copy2(reference_root / "features" / file, root / "features" / file)
    return root


def _killed_run(root: Path, settings, target: int, phase: str, where: str) -> None:
    """Run ``settings`` in a forked child killed with SIGKILL at its ``target``-th rename under ``where``.

    ``phase`` "inside": the temporary file is written, not renamed yet; "after":
    the file is in place, the next write not begun.
    """
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            real, count = os.replace, [0]

            def replace(src, dst):
                hit = Path(dst).relative_to(root).as_posix().startswith(where)
                count[0] += hit
                if hit and count[0] == target and phase == "inside":
                    os.kill(os.getpid(), signal.SIGKILL)
                real(src, dst)
                if hit and count[0] == target and phase == "after":
                    os.kill(os.getpid(), signal.SIGKILL)

            os.replace = replace
            logging.disable(logging.CRITICAL)
            experiments.run(settings, store=root, progress=False)
        finally:
            os._exit(3)  # the write point was never reached
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child exited with {status}"


def _resume_and_check(root: Path, reference_root: Path, point: str) -> list[str]:
    """Rerun TINY after a kill; what differs from the promises (empty when all hold)."""
    entry = Store(root=root).entry(TINY.key())
    finished = set(entry.read_stages()["finished"]) if entry.path.is_dir() else set()
    result = experiments.run(TINY, store=root, progress=False)
    problems = []
    redone = finished & set(result.computed)
    if redone:
        problems.append(f"{point}: finished stages {sorted(redone)} were computed again")
    expected = tuple(s for s in experiments.STAGES if s not in finished)
    if result.computed != expected:
        problems.append(f"{point}: computed {result.computed}, expected {expected}")
    if _entry_bits(root) != _entry_bits(reference_root):
        differ = {k for k, v in _entry_bits(root).items() if _entry_bits(reference_root).get(k) != v}
        missing = set(_entry_bits(reference_root)) - set(_entry_bits(root))
        problems.append(f"{point}: files differ from the reference: {sorted(differ | missing)}")
    if _cache_bits(root) != _cache_bits(reference_root):
        problems.append(f"{point}: the feature cache differs from the reference")
    if _leftovers(root):
        problems.append(f"{point}: left {_leftovers(root)}")
    if Store(root=root).state(TINY.key(), deep=True) != "done":
        problems.append(f"{point}: state {Store(root=root).state(TINY.key(), deep=True)}")
    return problems


# ------------------------------------------------------------------ crash test
@pytest.mark.slow
def test_a_run_killed_at_any_entry_write_resumes_to_the_reference(reference, tmp_path):
    """SIGKILL inside and after every write of the entry: each file of each stage, each stage log update."""
    ref_root, writes = reference
    cache = [Path(w).name for w in writes if w.startswith("features/")]
    entry_writes = [w for w in writes if w.startswith("runs/")]
    assert len(entry_writes) >= 25  # every stage writes, and logs itself
    problems = []
    for target, name in enumerate(entry_writes, start=1):
        for phase in ("inside", "after"):
            root = _fresh_store(tmp_path, ref_root, f"{target}-{phase}", cache)
            _killed_run(root, TINY, target, phase, "runs/")
            problems += _resume_and_check(root, ref_root, f"killed {phase} write {target} ({name})")
            shutil.rmtree(root.parent)
    assert not problems, "\n".join(problems)


def test_a_run_killed_at_any_feature_cache_write_resumes_to_the_reference(reference, tmp_path):
    ref_root, writes = reference
    cache = [Path(w).name for w in writes if w.startswith("features/")]
    assert len(cache) == 3  # training, validation and out-of-distribution images
    problems = []
    for index, name in enumerate(cache):
        for phase in ("inside", "after"):
            root = _fresh_store(tmp_path, ref_root, f"f{index}-{phase}", cache[:index])
            _killed_run(root, TINY, 1, phase, "features/")
            problems += _resume_and_check(root, ref_root, f"killed {phase} feature write {name}")
    assert not problems, "\n".join(problems)


def test_a_stage_killed_between_its_files_is_computed_again(reference, tmp_path, monkeypatch):
    """The counterfactual stage killed after influence_cnci.pt, before influence_pcid.pt."""
    ref_root, writes = reference
    cache = [Path(w).name for w in writes if w.startswith("features/")]
    entry_writes = [w for w in writes if w.startswith("runs/")]
    target = entry_writes.index(f"runs/{TINY.key()}/matrices/influence_cnci.pt") + 1
    root = _fresh_store(tmp_path, ref_root, "between", cache)
    _killed_run(root, TINY, target, "after", "runs/")
    entry = Store(root=root).entry(TINY.key())
    assert entry.exists("matrices/influence_cnci.pt") and not entry.exists("matrices/influence_pcid.pt")
    assert Store(root=root).state(TINY.key()) == "partial"
    assert _resume_and_check(root, ref_root, "between the counterfactual matrices") == []


# ------------------------------------------------------------- corruption test
def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "flip":
        changed = bytearray(data)
        changed[len(data) // 2] ^= 0x04
        path.write_bytes(bytes(changed))
    elif how == "zero":
        path.write_bytes(bytes(len(data)))
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()


def _copy_store(reference_root: Path, destination: Path) -> Path:
    root = destination / "results"
    (root / "runs").mkdir(parents=True)
    shutil.copytree(reference_root / "features", root / "features")
    shutil.copytree(reference_root / "runs" / TINY.key(), root / "runs" / TINY.key())
    return root


@pytest.mark.slow
def test_every_damaged_entry_file_is_flagged_and_restored_by_grid(reference, tmp_path, caplog):
    ref_root, _ = reference
    entry_dir = ref_root / "runs" / TINY.key()
    names = sorted(p.relative_to(entry_dir).as_posix() for p in entry_dir.rglob("*") if p.is_file())
    assert {"settings.json", "stages.json", "record.json", "metrics.csv", "checkpoints/epoch_001.pt",
            "matrices/influence_pcid.pt"} <= set(names)
    problems = []
    for name in names:
        for how in DAMAGES:
            case = f"{name} {how}"
            root = _copy_store(ref_root, tmp_path / f"{name.replace('/', '_')}-{how}")
            _damage(root / "runs" / TINY.key() / name, how)
            same_size = how in ("flip", "zero")
            # status: the quick look flags all but same-size damage to the .pt files; --verify flags all
            quick = grid_status([TINY], store=root)["status"].iloc[0]
            full = grid_status([TINY], store=root, verify=True)["status"].iloc[0]
            if full == "done" or (quick == "done" and not (same_size and name.endswith(".pt"))):
                problems.append(f"{case}: status says {quick} (quick), {full} (--verify)")
            # the report leaves the run out, with a warning, when it reads the damaged file
            if name not in ("stages.json",) and not (same_size and name.endswith(".pt")):
                caplog.clear()
                with caplog.at_level(logging.WARNING, logger="glitchlib.store"):
                    runs = Store(root=root).load_runs()
                if TINY.key() in set(runs["key"]):
                    problems.append(f"{case}: the report still shows the run")
                elif name != "record.json" or how != "delete":
                    if TINY.key() not in caplog.text:
                        problems.append(f"{case}: the report gave no warning")
            # grid --verify restores the reference bits
            outcome = run_grid([TINY], store=root, jobs=1, progress=False, verify=True)
            if not outcome.ok or outcome.computed != [TINY.key()] and name not in VOLATILE | {"settings.json"}:
                problems.append(f"{case}: grid outcome {outcome}")
            if _entry_bits(root) != _entry_bits(ref_root):
                differ = sorted(k for k, v in _entry_bits(ref_root).items() if _entry_bits(root).get(k) != v)
                problems.append(f"{case}: after grid, files differ from the reference: {differ}")
            if grid_status([TINY], store=root, verify=True)["status"].iloc[0] != "done" or _leftovers(root):
                problems.append(f"{case}: after grid, not done or leftovers {_leftovers(root)}")
            shutil.rmtree(root.parent)
    assert not problems, "\n".join(problems)


def test_every_damaged_feature_cache_file_is_flagged_and_restored(reference, tmp_path, capsys):
    ref_root, _ = reference
    problems = []
    for index, file in enumerate(sorted(_cache_bits(ref_root))):
        for how in DAMAGES:
            case = f"feature file {index} {how}"
            root = _copy_store(ref_root, tmp_path / f"{index}-{how}")
            _damage(root / "features" / file, how)
            flagged = [p.name for p, _ in _cache_problems(root / "features")]
            if how != "delete":
                assert cli.main(argv=["status", "--store", str(root), "--profile", "tiny", "--verify"]) == 0
                if flagged != [file] or file not in capsys.readouterr().out:
                    problems.append(f"{case}: status flags {flagged}")
            # a new cell needs these features: the grid recomputes and replaces the file
            outcome = run_grid([TINY, SECOND], store=root, jobs=1, progress=False)
            if not outcome.ok or outcome.computed != [SECOND.key()]:
                problems.append(f"{case}: grid outcome {outcome}")
            if _cache_bits(root) != _cache_bits(ref_root) or _entry_bits(root, SECOND) != _entry_bits(ref_root, SECOND):
                problems.append(f"{case}: after grid, the cache or the new entry differs from the reference")
            if _cache_problems(root / "features") or _leftovers(root):
                problems.append(f"{case}: after grid, damaged files or leftovers remain")
            shutil.rmtree(root.parent)
    assert not problems, "\n".join(problems)


def test_a_damaged_checkpoint_is_never_resumed_from(reference, tmp_path, caplog):
    """A same-size change to the last checkpoint: training restarts from the verified epochs only."""
    ref_root, _ = reference
    root = _copy_store(ref_root, tmp_path)
    _damage(root / "runs" / TINY.key() / "checkpoints" / "epoch_002.pt", "flip")
    with caplog.at_level(logging.WARNING):
        result = experiments.run(TINY, store=root, progress=False)
    assert "epoch 2" in caplog.text and "sha256" in caplog.text
    assert result.computed == experiments.STAGES[experiments.STAGES.index("training"):]
    assert _entry_bits(root) == _entry_bits(ref_root)


def test_a_same_size_edit_of_the_metrics_is_caught_everywhere(reference, tmp_path, caplog):
    ref_root, _ = reference
    root = _copy_store(ref_root, tmp_path)
    path = root / "runs" / TINY.key() / "metrics.csv"
    text = path.read_text()
    first = text.splitlines()[1].split(",")[1]  # the F1 of the first signal
    edited = first.replace(first[2], "1" if first[2] != "1" else "2", 1)
    path.write_text(text.replace(first, edited, 1))
    assert path.stat().st_size == len(text)
    assert grid_status([TINY], store=root)["status"].iloc[0] == "corrupt"
    with caplog.at_level(logging.WARNING, logger="glitchlib.store"):
        assert Store(root=root).load_metrics().empty
    outcome = run_grid([TINY], store=root, jobs=1, progress=False)
    assert outcome.computed == [TINY.key()] and _entry_bits(root) == _entry_bits(ref_root)


def test_an_edited_record_is_caught(reference, tmp_path):
    """record.json carries the sha256 of its own content: a changed number is caught."""
    ref_root, _ = reference
    root = _copy_store(ref_root, tmp_path)
    path = root / "runs" / TINY.key() / "record.json"
    text = path.read_text()
    value = f'"val_acc": {Store(root=ref_root).load_record(TINY.key())["summary"]["val_acc"]}'
    assert value in text
    path.write_text(text.replace(value, '"val_acc": 0.999'))
    assert grid_status([TINY], store=root)["status"].iloc[0] == "corrupt"
    assert "own sha256" in grid_status([TINY], store=root)["reason"].iloc[0]
    assert Store(root=root).load_runs().empty
    run_grid([TINY], store=root, jobs=1, progress=False)
    assert Store(root=root).load_record(TINY.key())["summary"] == Store(root=ref_root).load_record(TINY.key())["summary"]


# ------------------------------------------------------------------ full disk
class _FullDisk:
    """A file object whose writes fail with ENOSPC, as on a full disk."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="finds file names in /proc")
@pytest.mark.parametrize("full_at", ["data.npz", "checkpoints/epoch_002.pt", "history.csv",
                                     "matrices/influence_pcid.pt", "stages.json", "record.json", "features_"])
def test_a_full_disk_names_the_file_and_leaves_the_store_as_it_was(reference, tmp_path, monkeypatch, full_at):
    ref_root, writes = reference
    cache = [] if full_at == "features_" else [Path(w).name for w in writes if w.startswith("features/")]
    root = _fresh_store(tmp_path, ref_root, "full", cache)
    real_open = glitchlib.store._open_temporary
    seen = []

    prefix = f".{Path(full_at).name}"

    def open_temporary(fd, binary):
        temporary = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        seen.append(temporary)
        # the stage log: its third write (after the features stage)
        hit = temporary.startswith(prefix) and (
            full_at != "stages.json" or sum(s.startswith(prefix) for s in seen) == 3)
        f = real_open(fd, binary)
        return _FullDisk(f) if hit else f

    monkeypatch.setattr(glitchlib.store, "_open_temporary", open_temporary)
    with pytest.raises(OSError) as raised:
        experiments.run(TINY, store=root, progress=False)
    message = str(raised.value)
    assert raised.value.errno == errno.ENOSPC
    assert "disk is full" in message and Path(full_at).name.rstrip("_") in message
    assert "basic_ios" not in message and not _leftovers(root)
    state = Store(root=root).state(TINY.key())
    assert state in ("partial", "missing")
    monkeypatch.undo()  # space freed: the rerun completes to the reference
    assert _resume_and_check(root, ref_root, f"disk full at {full_at}") == []


def test_a_write_to_a_read_only_place_says_so(tmp_path, monkeypatch):
    def refuse(fd, binary):
        os.close(fd)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(glitchlib.store, "_open_temporary", refuse)
    target = tmp_path / "x.json"
    target.write_text("{}")
    with pytest.raises(OSError, match=r"cannot write .*x\.json: the directory is not writable"):
        glitchlib.store.write_json(target, {"a": 1})
    assert target.read_text() == "{}" and not _leftovers(tmp_path)


# ---------------------------------------------------------------- small things
def test_orphans_of_killed_runs_are_removed_by_the_next_run(reference, tmp_path):
    ref_root, _ = reference
    root = _copy_store(ref_root, tmp_path)
    entry = Store(root=root).entry(TINY.key())
    (entry.path / ".metrics.csv.otherhost.12345.abcd.tmp").write_text("torn")
    (entry.path / "matrices" / ".influence.pt.otherhost.1.x.tmp").write_text("torn")
    trash = root / "runs" / f".trash-{TINY.key()}-99-1"
    (trash / "matrices").mkdir(parents=True)
    (trash / "matrices" / "influence.pt").write_text("old")
    assert experiments.run(TINY, store=root, progress=False).computed == ()
    assert _leftovers(root) == []


def test_a_cell_read_back_is_not_reported_as_computed(reference, tmp_path):
    ref_root, _ = reference
    root = _copy_store(ref_root, tmp_path)
    # what a grid worker sees when another process finished the cell while it waited
    assert _run_cell(TINY.to_dict(), str(root), 1, worker=False)[:3] == (TINY.key(), None, False)


def test_report_prints_each_warning_once(reference, tmp_path):
    ref_root, _ = reference
    root = _copy_store(ref_root, tmp_path)
    _damage(root / "runs" / TINY.key() / "history.csv", "flip")
    shutil.copytree(ref_root / "runs" / SECOND.key(), root / "runs" / SECOND.key())
    done = subprocess.run([sys.executable, "-m", "glitchlib.cli", "report", "--store", str(root)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": _source_root()})
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("skipping") == 1 and TINY.key() in done.stderr and "history.csv" in done.stderr


def test_status_into_a_closed_pipe_ends_quietly(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "glitchlib.cli", "status", "--store", str(tmp_path),
                                "--profile", "paper"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": _source_root()})
    process.stdout.close()  # the reader is gone, as after `| head`
    stderr = process.stderr.read().decode()
    assert process.wait() == 0
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def _source_root() -> str:
    return str(Path(glitchlib.store.__file__).resolve().parent.parent)
