"""Grids on Dask: same bits as a serial run, dying workers, two grids on one store, no orphans.

Also the store's lock between processes that share no memory. The cells are those
of the ``tiny`` profile at 100 training and 40 validation samples, two epochs, so
a cell takes seconds, most of it the backbone features of its dataset. The
oracle of every grid is a serial run of the same cells in this process: the
scores of every cell must equal it bit for bit.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from glitchlib import cli
from glitchlib.grid import grid_status, load_cluster_options, run_grid
from glitchlib.profiles import profile_settings
from glitchlib.store import Store, file_lock

distributed = pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"n_train": 100, "n_test": 40, "epochs": 2}
CELLS = [s.replace(**SMALL) for s in profile_settings("tiny")]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _profile_file(path: Path, cells) -> Path:
    path.write_text(yaml.safe_dump([s.to_dict() for s in cells]))
    return path


def _assert_same_scores(store, reference, cells):
    """Every cell is done and its scores equal the serial run's, bit for bit."""
    assert grid_status(cells, store=store)["status"].tolist() == ["done"] * len(cells)
    for s in cells:
        got, expected = Store(root=store).load_scores(s.key()), Store(root=reference).load_scores(s.key())
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        for column in expected.select_dtypes("number"):
            assert np.array_equal(got[column].to_numpy(), expected[column].to_numpy(), equal_nan=True), column


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The cells run serially, in this process: the oracle of every grid below."""
    root = tmp_path_factory.mktemp("serial") / "results"
    outcome = run_grid(CELLS, store=root, progress=False)
    assert outcome.ok and sorted(outcome.computed) == sorted(s.key() for s in CELLS)
    return root


# ------------------------------------------------------------------ bit identity
def test_local_cluster_of_two_workers_gives_the_serial_bits(reference, tmp_path):
    store = tmp_path / "results"
    outcome = run_grid(CELLS, store=store, cluster="local", workers=2, progress=False)
    assert outcome.ok and sorted(outcome.computed) == sorted(s.key() for s in CELLS)
    _assert_same_scores(store, reference, CELLS)
    threads = {Store(root=store).entry(s.key()).read_json("environment.json")["torch_threads"] for s in CELLS}
    assert threads == {1}


# ------------------------------------------------------------------ dying worker
def test_a_worker_killed_mid_cell_costs_only_a_retry(reference, tmp_path):
    cells = [CELLS[0], CELLS[4]]  # one per dataset: each worker computes its own features
    victim = cells[0]
    store = tmp_path / "results"
    entry = Store(root=store).entry(victim.key())
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)  # worker address -> pid
        outcome = {}
        grid = threading.Thread(target=lambda: outcome.update(
            result=run_grid(cells, store=store, scheduler=client, progress=False)))
        grid.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until a stage of the victim is on disk, the cell still running
            if entry.exists("stages.json") and entry.read_stages()["finished"] and not entry.exists("record.json"):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the victim cell never got under way")
        running = [w for w, keys in client.processing().items() if f"glitchlib-cell-{victim.key()}" in keys]
        assert len(running) == 1
        killed = pids[running[0]]
        os.kill(killed, signal.SIGKILL)
        grid.join(timeout=240)
        assert not grid.is_alive()
        assert not _alive(killed)
    result = outcome["result"]
    assert result.ok and sorted(result.computed) == sorted(s.key() for s in cells)
    events = [(e["stage"], e["action"]) for e in entry.events()]
    assert events[0] == ("data", "computed") and ("data", "reused") in events  # resumed after the kill
    entry.read_record(deep=True)  # every file of the entry matches its recorded checksum
    _assert_same_scores(store, reference, cells)


# ------------------------------------------------------------------ failing cell
def test_a_failing_cell_is_reported_in_one_line_and_the_others_go_on(reference, tmp_path, capsys):
    # runnable (its settings are valid), but training diverges to NaN and the influence stage refuses it;
    # settings that cannot run at all (a garbage weights file, say) are refused before the grid starts
    broken = CELLS[0].replace(lr=1e38, batch_size=128)
    profile = _profile_file(tmp_path / "grid.yaml", [broken, CELLS[0]])
    store = tmp_path / "results"
    shutil.copytree(reference / "features", store / "features")  # the good cell reuses the serial features
    code = cli.main(argv=["grid", "--profile", str(profile), "--store", str(store), "--quiet",
                     "--cluster", "local", "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "computed 1," in out and "failed 1" in out
    failed = [line for line in out.splitlines() if line.startswith("  failed:")]
    assert len(failed) == 1 and broken.key() in failed[0] and "Traceback" not in out
    _assert_same_scores(store, reference, [CELLS[0]])


# ------------------------------------------------------------- two grids at once
def test_two_grids_at_once_on_one_store_compute_every_cell_once(reference, tmp_path, capsys):
    cells = [CELLS[0], CELLS[4], CELLS[1], CELLS[5]]
    profile = _profile_file(tmp_path / "grid.yaml", cells)
    store = tmp_path / "results"
    base = [sys.executable, "-m", "glitchlib.cli", "grid", "--profile", str(profile), "--store", str(store), "--quiet"]
    grids = [subprocess.Popen(base + extra, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for extra in (["-j", "1"], ["--cluster", "local", "--workers", "1"])]
    try:
        while not (store / "runs").is_dir() and all(g.poll() is None for g in grids):
            time.sleep(0.1)
        assert cli.main(argv=["status", "--profile", str(profile), "--store", str(store)]) == 0  # while they run
        assert "4 cells" in capsys.readouterr().out
        outputs = [g.communicate(timeout=300) for g in grids]
    finally:
        for g in grids:
            g.kill()
    assert [g.returncode for g in grids] == [0, 0], outputs
    computed = [int(out.split("computed ")[1].split(",")[0]) for out, _ in outputs]
    assert sum(computed) == len(cells), outputs
    for s in cells:
        actions = [(e["stage"], e["action"]) for e in Store(root=store).entry(s.key()).events()]
        stages = [stage for stage, action in actions if action == "computed"]
        assert len(stages) == len(set(stages)), f"{s.label()}: a stage computed twice: {actions}"
    _assert_same_scores(store, reference, cells)


# ------------------------------------------------------------ no orphan workers
def test_a_killed_parent_leaves_no_worker_behind(reference, tmp_path):
    profile = _profile_file(tmp_path / "grid.yaml", CELLS)
    store = tmp_path / "results"
    parent = subprocess.Popen([sys.executable, "-m", "glitchlib.cli", "grid", "--profile", str(profile),
                               "--store", str(store), "--quiet", "--cluster", "local", "--workers", "2"],
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    family: list = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and parent.poll() is None:  # workers up and working
            family = psutil.Process(parent.pid).children(recursive=True)
            if len(family) >= 2 and list(store.glob("runs/*/stages.json")):
                break
            time.sleep(0.1)
        assert parent.poll() is None, "the grid ended before it could be killed"
        family = psutil.Process(parent.pid).children(recursive=True)
        assert len(family) >= 2
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        _, alive = psutil.wait_procs(family, timeout=30)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], "worker processes outlived the grid"
    finally:
        for p in family:
            if _alive(p.pid):
                p.kill()
        if parent.poll() is None:
            parent.kill()
    status = grid_status(CELLS, store=store)
    assert "corrupt" not in set(status["status"])


# ---------------------------------------------------------- lock across processes
_COUNTER = """
import sys, time
from glitchlib.store import file_lock
lock, counter, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(n):
    with file_lock(lock):  # read, wait, write: without the lock, updates get lost
        with open(counter) as f:
            value = int(f.read())
        time.sleep(0.002)
        with open(counter, "w") as f:
            f.write(str(value + 1))
"""

_HOLDER = """
import sys, time
from glitchlib.store import file_lock
with file_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_file_lock_excludes_processes_that_share_no_memory(tmp_path):
    lock, counter = tmp_path / "locks" / "x.lock", tmp_path / "counter"
    counter.write_text("0")
    workers = [subprocess.Popen([sys.executable, "-c", _COUNTER, str(lock), str(counter), "60"], env=_env())
               for _ in range(2)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    assert counter.read_text() == "120"


def test_file_lock_is_a_posix_record_lock_released_when_its_holder_dies(tmp_path):
    lock = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(lock)], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with open(lock, "r+") as f:  # the lock NFS forwards to its server: fcntl record locks
            with pytest.raises(OSError):
                fcntl.lockf(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        taken = threading.Event()

        def take():
            with file_lock(lock):
                taken.set()

        threading.Thread(target=take, daemon=True).start()
        assert taken.wait(timeout=10), "the lock of a killed process was not released"
    finally:
        holder.kill()


def test_file_lock_excludes_threads_of_one_process_and_nests(tmp_path):
    lock, count = tmp_path / "x.lock", [0]

    def bump():
        for _ in range(50):
            with file_lock(lock):
                value = count[0]
                time.sleep(0.0005)
                with file_lock(lock):  # nested in the same thread: no deadlock
                    count[0] = value + 1

    threads = [threading.Thread(target=bump) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert count[0] == 150


# --------------------------------------------------------------- configuration
def test_the_slurm_example_builds_a_job_script(tmp_path):
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    options = load_cluster_options(ROOT / "scripts" / "slurm.yaml")
    with dask_jobqueue.SLURMCluster(**options, scheduler_options={"dashboard_address": ":0"}) as cluster:
        script = cluster.job_script()
    assert f"#SBATCH --cpus-per-task={options['job_cpu']}" in script
    assert f"#SBATCH -t {options['walltime']}" in script
    assert all(f"#SBATCH {d}" in script for d in options["job_extra_directives"])
    assert "--nthreads 1" in script  # one cell at a time per worker
    readme = (ROOT / "README.md").read_text()
    documented = readme.split("(`scripts/slurm.yaml`", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(documented) == options  # the README shows the file as it is


def test_a_file_system_without_posix_locks_is_an_error_that_says_so(tmp_path, monkeypatch):
    import errno

    def refuse(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", refuse)
    with pytest.raises(OSError, match=r"cannot lock .*x\.lock.*POSIX locks.*lockd"):
        with file_lock(tmp_path / "x.lock"):
            pass


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--scheduler", "tcp://h:8786", "--cluster", "local"], ["--scheduler", "--cluster"]),
        (["--scheduler", "tcp://h:8786", "-j", "2"], ["--scheduler", "-j/--jobs"]),
        (["--workers", "2"], ["--workers", "--cluster local"]),
        (["--cluster", "local", "--workers", "0"], ["--workers", "positive"]),
        (["--cluster", "local", "-j", "2"], ["-j/--jobs", "--workers"]),
        (["--threads", "0"], ["--threads", "positive"]),
        (["--cluster", "mars"], ["--cluster", "local", "slurm"]),
        (["--cluster", "slurm", "--cluster-config", "absent.yaml"],
         ["--cluster-config", "absent.yaml", "does not exist"]),
    ],
)
def test_bad_grid_arguments_exit_2_and_name_the_argument(capsys, tmp_path, argv, expected):
    with pytest.raises(SystemExit) as info:
        cli.main(argv=["grid", "--profile", "tiny", "--store", str(tmp_path / "r"), *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, f"{text!r} missing from: {err}"


def test_unknown_cluster_option_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="cluster_options.*LocalCluster.*warp_drive"):
        run_grid(CELLS[:1], store=tmp_path / "r", cluster="local", workers=1, cluster_options={"warp_drive": 9},
                 progress=False)
