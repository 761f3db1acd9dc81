"""The results store: one directory per experiment, atomic writes, a stage log, tidy loaders.

Layout under the store's root (default ``results/``)::

    features/                  backbone features, shared by every run (content-keyed cache)
    locks/                     lock files (one per entry, one per feature set)
    runs/<key>/                one entry per ExperimentSettings.key()
        settings.json          the settings (plus the resolved training settings)
        stages.json            the stage log: finished stages with their files and
                               checksums, and one event per stage per attempt
        data.json, data.npz    ... stage outputs (see glitchlib.experiments)
        environment.json       package versions, device, machine, git commit
        record.json            the summary; written last, it marks the entry complete

Every file is written to a temporary name in the same directory, flushed and
renamed over the target (``os.replace``), so a process killed at any point leaves
either the old file or the new one, never a torn one. A stage is finished only once
its files are written *and* the stage log says so, and the log is itself written
atomically, so a killed run resumes after its last finished stage; the files of a
stage that did not finish are deleted before it is computed again, never read.

Every file of an entry is listed with its size and sha256 in the stage log and in
``record.json``; the two JSON documents carry the sha256 of their own content. A
file is checked against its checksum when it is read (a check is remembered per
file version, so reading it again costs nothing) and :meth:`Store.state` checks
the checksums of every file but the bulky matrices and checkpoints (all of them
with ``deep=True``, ``glitchlib status --verify``). An entry that cannot be trusted
(unreadable JSON, a missing or altered file, other settings under its key, another
format version) is reported through ``logging`` and recomputed by
:func:`glitchlib.experiments.run` from its first damaged stage on; the loaders skip
it with a warning. Nothing is silently reused.

A write that fails (full disk, read-only directory) raises an ``OSError`` that
names the file and the reason, and leaves the previous version of the file in
place; no temporary file is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch

__all__ = ["Store", "Entry", "IncompatibleEntry", "RESULT_FORMAT", "as_store"]

log = logging.getLogger(__name__)

#: Version of the entry layout and of the meaning of its numbers; entries with
#: another version are recomputed.
RESULT_FORMAT = 1

SETTINGS_FILE = "settings.json"
STAGES_FILE = "stages.json"
RECORD_FILE = "record.json"
ENVIRONMENT_FILE = "environment.json"
METRICS_FILE = "metrics.csv"
SCORES_FILE = "scores.csv.gz"
HISTORY_FILE = "history.csv"

#: Suffix of the bulky files (matrices, checkpoints) whose sha256 is checked when they are
#: read and by the deep checks; every quick look at an entry checks their size only.
BULK_SUFFIX = ".pt"

#: Settings columns repeated in every tidy table, in this order.
SETTINGS_COLUMNS = ["dataset", "model", "glitch", "ratio", "seed", "pretrained", "influence"]


class IncompatibleEntry(RuntimeError):
    """An entry that cannot be used as it is: corrupt, other settings, other format."""


# --------------------------------------------------------------------- atomic I/O
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _temporary_prefix(name: str) -> str:
    """Prefix of the temporary files of ``name`` written by this process (host and pid in the name)."""
    return f".{name}.{socket.gethostname()}.{os.getpid()}."


def _open_temporary(fd: int, binary: bool):
    """The file object every atomic write goes to (the temporary file behind ``fd``)."""
    return os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"}))


class _Sink:
    """A file object that remembers the ``OSError`` of a failed write.

    ``torch.save`` turns the ``OSError`` of its file object into an unhelpful
    ``RuntimeError``; the remembered error lets :func:`atomic_write` say what happened.
    """

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self):
        self.f.flush()


_WRITE_REASONS = {
    errno.ENOSPC: "no space left on the device (the disk is full)",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file exceeds the size limit of this file system or process",
    errno.EACCES: "the directory is not writable (permission denied)",
    errno.EPERM: "the directory is not writable (operation not permitted)",
    errno.EROFS: "the file system is read-only",
}


def _write_error(path: Path, exc: OSError) -> OSError:
    reason = _WRITE_REASONS.get(exc.errno, exc.strerror or str(exc))
    return OSError(exc.errno, f"cannot write {path}: {reason}; the previous version of the file, "
                              "if any, is left as it was")


def _file_mode() -> int:
    """The mode a plainly created file gets here: ``0o666`` less the process umask.

    ``tempfile.mkstemp`` creates its files ``0o600``; results renamed from them
    would stay private to their writer, whatever the umask says, and a store
    shared between accounts (a cluster's file system) could not be read by the
    others. The umask is read from ``/proc`` where it can be, without changing it
    (changing it, even briefly, races with other threads creating files).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], *, binary: bool = True) -> None:
    """Write a file atomically: ``write(fileobj)`` into a temporary file, then rename.

    The temporary file lives in the target's directory, so ``os.replace`` is an
    atomic rename on the same file system.

    Raises
    ------
    OSError
        When the file cannot be written (full disk, quota, read-only or
        non-writable directory); the message names the file and the reason. The
        target keeps its previous content and no temporary file is left.
    """
    path = Path(path)
    tmp = None
    sink = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path.name), suffix=".tmp")
        os.fchmod(fd, _file_mode())  # as a plainly created file (mkstemp's are 0o600)
        with _open_temporary(fd, binary) as f:
            sink = _Sink(f)
            write(sink)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        cause = sink.error if sink is not None and sink.error is not None else exc
        if isinstance(cause, OSError) and not isinstance(cause, (FileNotFoundError, IsADirectoryError)):
            raise _write_error(path, cause) from exc
        raise


def remove_orphans(directory: str | os.PathLike, *, recursive: bool = False, any_process: bool = False) -> list[Path]:
    """Delete temporary files (``.*.tmp``) left in ``directory`` by killed writers.

    Only files of processes of this host that no longer run are deleted, unless
    ``any_process`` (the caller holds the lock of every writer of ``directory``).
    Returns the deleted paths.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    host = socket.gethostname()
    removed = []
    for path in directory.rglob(".*.tmp") if recursive else directory.glob(".*.tmp"):
        if not any_process and not _dead_writer(path.name, host):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def _dead_writer(name: str, host: str) -> bool:
    marker = f".{host}."
    if marker not in name:
        return False
    pid = name.rsplit(marker, 1)[1].split(".", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    atomic_write(path, lambda f: f.write(text), binary=False)


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: sha256 of the file versions this process has read, keyed by what changes with every
#: write (inode, size, modification and change times; the change time cannot be set back).
_CHECKED: dict[tuple, str] = {}


def checked_sha256(path: str | os.PathLike) -> str:
    """:func:`sha256_file`, computed once per version of the file in this process."""
    st = os.stat(path)
    version = (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if version not in _CHECKED:
        _CHECKED[version] = sha256_file(path)
    return _CHECKED[version]


def _content_sha256(document: dict[str, Any]) -> str:
    body = {k: v for k, v in document.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _sealed(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with ``sha256``: the checksum of its own content."""
    return {**{k: v for k, v in document.items() if k != "sha256"}, "sha256": _content_sha256(document)}


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Exclusive lock on ``path`` between threads, processes and machines sharing the store.

    A POSIX record lock (``fcntl.lockf``) on the whole lock file, which network
    file systems hand to the file server (NFSv3 via ``lockd``, NFSv4 natively,
    Lustre with ``-o flock``, GPFS, BeeGFS), so two machines never hold it at
    once; threads of one process take turns on a thread lock first. Waits for the
    holder; the lock dies with its process, so a killed run never leaves a stale
    lock behind. See :func:`glitchlib._filelock.hold`.

    Raises
    ------
    OSError
        The file system refuses POSIX locks; the message names the file and what to do.
    """
    from ._filelock import hold

    with hold(path):
        yield


# --------------------------------------------------------------------------- entry
class Entry:
    """One experiment's directory in the store: typed atomic I/O plus the stage log.

    Parameters
    ----------
    path : Path
        The entry's directory (``<root>/runs/<key>``).
    key : str
        The entry's key.
    lock_path : Path
        Lock file guarding the entry against two concurrent runs.
    """

    def __init__(self, path: Path, key: str, lock_path: Path):
        self.path = Path(path)
        self.key = key
        self.lock_path = Path(lock_path)

    def __repr__(self) -> str:
        return f"Entry({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        return (self.path / name).is_file()

    def lock(self) -> contextlib.AbstractContextManager:
        """Context manager holding the entry's inter-process lock."""
        return file_lock(self.lock_path)

    # -------------------------------------------------------------- typed I/O
    def write_json(self, name: str, obj: Any) -> Path:
        write_json(self.path / name, obj)
        return self.path / name

    def read_json(self, name: str) -> Any:
        return read_json(self.path / name)

    def save_tensor(self, name: str, tensor: torch.Tensor) -> Path:
        """Save a tensor (contiguous, on CPU) with ``torch.save``, atomically."""
        tensor = tensor.detach().to("cpu").contiguous()
        atomic_write(self.path / name, lambda f: torch.save(tensor, f))
        return self.path / name

    def load_tensor(self, name: str) -> torch.Tensor:
        return torch.load(self.path / name, map_location="cpu", weights_only=True)

    def save_object(self, name: str, obj: Any) -> Path:
        """Save tensors in plain containers (lists, dicts) with ``torch.save``, atomically."""
        atomic_write(self.path / name, lambda f: torch.save(obj, f))
        return self.path / name

    def load_object(self, name: str) -> Any:
        return torch.load(self.path / name, map_location="cpu", weights_only=True)

    def save_arrays(self, name: str, **arrays: np.ndarray) -> Path:
        """Save numpy arrays in one ``.npz``, atomically (no pickled objects)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
        atomic_write(self.path / name, lambda f: f.write(buffer.getvalue()))
        return self.path / name

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.path / name, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def write_frame(self, name: str, frame: pd.DataFrame) -> Path:
        """Save a DataFrame as CSV (gzip when ``name`` ends with ``.gz``), atomically."""
        data = frame.to_csv(index=False).encode()
        if name.endswith(".gz"):
            data = gzip.compress(data, mtime=0)  # mtime 0: same table, same bytes
        atomic_write(self.path / name, lambda f: f.write(data))
        return self.path / name

    def read_frame(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.path / name, keep_default_na=False, na_values=[""])

    # -------------------------------------------------------------- stage log
    def read_stages(self, *, required: bool = False) -> dict[str, Any]:
        """The stage log: ``{"format", "finished": {stage: info}, "events": [...]}``.

        An absent log is an empty one (with ``required``, the log of a complete
        entry, it raises); an unreadable or altered log raises
        :class:`IncompatibleEntry`.
        """
        path = self.path / STAGES_FILE
        if not path.is_file():
            if required:
                raise IncompatibleEntry(f"stage log {path} is missing")
            return {"format": RESULT_FORMAT, "finished": {}, "events": []}
        try:
            stages = read_json(path)
            if not isinstance(stages.get("finished"), dict) or not isinstance(
                stages.get("events"), list
            ):
                raise ValueError("missing 'finished' or 'events'")
        except (ValueError, OSError, AttributeError) as exc:
            raise IncompatibleEntry(f"unreadable stage log {path}: {exc}") from exc
        if stages.get("format") != RESULT_FORMAT:
            raise IncompatibleEntry(
                f"stage log {path} has format {stages.get('format')!r}, this glitchlib writes "
                f"{RESULT_FORMAT}"
            )
        # logs written before checksums were kept have none; their files are still checked
        if "sha256" in stages and stages["sha256"] != _content_sha256(stages):
            raise IncompatibleEntry(f"stage log {path} does not match its own sha256 (altered)")
        return stages

    def finish_stage(self, stage: str, seconds: float, files: list[str], **info: Any) -> None:
        """Record that ``stage`` finished: its time, its files with sizes and sha256."""
        stages = self.read_stages()
        stages["finished"][stage] = {
            "seconds": seconds,
            "finished_at": _now(),
            "files": {name: self._file_info(name) for name in files},
            **info,
        }
        stages["events"].append(
            {"stage": stage, "action": "computed", "seconds": seconds, "at": _now(), **info}
        )
        self._write_stages(stages)

    def log_reuse(self, stage: str) -> None:
        """Record that a finished stage was reused by a later attempt."""
        stages = self.read_stages()
        stages["events"].append({"stage": stage, "action": "reused", "seconds": 0.0, "at": _now()})
        self._write_stages(stages)

    def forget_stages(self, stages_to_forget: list[str]) -> None:
        """Mark stages as not finished (their outputs are then recomputed)."""
        stages = self.read_stages()
        changed = False
        for stage in stages_to_forget:
            changed |= stages["finished"].pop(stage, None) is not None
        if changed:
            self._write_stages(stages)

    def _write_stages(self, stages: dict[str, Any]) -> None:
        write_json(self.path / STAGES_FILE, _sealed(stages))

    def stage_files(self, *, stages: list[str] | None = None) -> list[str]:
        """Files of the finished ``stages`` (default: all), as the stage log lists them."""
        finished = self.read_stages()["finished"]
        return [name for stage, info in finished.items() if stages is None or stage in stages
                for name in info.get("files", {})]

    def stage_problem(self, stage: str, *, deep: bool = True) -> str | None:
        """Why the finished stage ``stage`` cannot be reused, or ``None`` if it can.

        Checks that the stage is logged as finished and that each of its files is
        present with its recorded size and sha256 (with ``deep=False``, the sha256
        of the bulky matrices and checkpoints is not checked).
        """
        info = self.read_stages()["finished"].get(stage)
        if info is None:
            return "not finished"
        return self._files_problem(info.get("files", {}), deep=deep)

    def events(self) -> list[dict[str, Any]]:
        """The stage log's events, oldest first (one per stage per attempt)."""
        return self.read_stages()["events"]

    def _file_info(self, name: str) -> dict[str, Any]:
        path = self.path / name
        return {"size": path.stat().st_size, "sha256": checked_sha256(path)}

    def _files_problem(self, files: dict[str, dict[str, Any]], *, deep: bool) -> str | None:
        if not isinstance(files, dict):
            return "its list of files is not a JSON object"
        for name, expected in files.items():
            path = self.path / name
            if not isinstance(expected, dict):
                return f"the entry of file {name} is not a JSON object"
            if not path.is_file():
                return f"file {name} is missing"
            if path.stat().st_size != expected.get("size"):
                return f"file {name} has {path.stat().st_size} bytes, {expected.get('size')} expected"
            if (deep or not name.endswith(BULK_SUFFIX)) and checked_sha256(path) != expected.get("sha256"):
                return f"file {name} does not match its recorded sha256"
        return None

    def file_problem(self, name: str, record: dict[str, Any]) -> str | None:
        """Why ``name``, as listed in ``record``, cannot be read (missing, altered), or ``None``."""
        listed = record.get("files", {})
        if name not in listed:
            return f"file {name} is not listed in the record"
        return self._files_problem({name: listed[name]}, deep=True)

    # ----------------------------------------------------------------- record
    def write_record(self, record: dict[str, Any], files: list[str]) -> None:
        """Write ``record.json`` last: the entry is complete from then on."""
        record = {
            "format": RESULT_FORMAT,
            "key": self.key,
            "completed_at": _now(),
            **record,
            "files": {name: self._file_info(name) for name in files},
        }
        write_json(self.path / RECORD_FILE, _sealed(record))

    def read_record(self, *, settings: dict[str, Any] | None = None, deep: bool = False) -> dict[str, Any]:
        """The complete entry's record, checked; raises :class:`IncompatibleEntry`.

        Checks that ``record.json`` parses, has this format version and this key,
        that it matches its own sha256, that its settings agree with every field of
        ``settings`` (when given), and that every file it lists is present with its
        size and sha256 (with ``deep=False``, the sha256 of the bulky matrices and
        checkpoints is not checked).
        """
        path = self.path / RECORD_FILE
        try:
            record = read_json(path)
        except FileNotFoundError:
            raise
        except (ValueError, OSError) as exc:
            raise IncompatibleEntry(f"unreadable record {path}: {exc}") from exc
        if not isinstance(record, dict):
            raise IncompatibleEntry(f"record {path} is not a JSON object")
        if record.get("format") != RESULT_FORMAT:
            raise IncompatibleEntry(
                f"record {path} has format {record.get('format')!r}, this glitchlib writes "
                f"{RESULT_FORMAT}"
            )
        if "sha256" not in record:
            raise IncompatibleEntry(f"record {path} has no checksum of its own (written by an older "
                                    "glitchlib; a rerun rewrites it without recomputing)")
        if record["sha256"] != _content_sha256(record):
            raise IncompatibleEntry(f"record {path} does not match its own sha256 (altered)")
        if record.get("key") != self.key:
            raise IncompatibleEntry(f"record {path} belongs to key {record.get('key')!r}")
        stored = record.get("settings")
        if settings is not None and (
            not isinstance(stored, dict) or {k: stored.get(k) for k in settings} != settings
        ):
            raise IncompatibleEntry(f"record {path} holds other settings than {self.key}")
        problem = self._files_problem(record.get("files", {}), deep=deep)
        if problem:
            raise IncompatibleEntry(f"entry {self.path}: {problem}")
        return record

    def is_complete(self) -> bool:
        try:
            self.read_record()
        except (FileNotFoundError, IncompatibleEntry):
            return False
        return True

    def invalidate_record(self) -> None:
        """Remove ``record.json`` (the entry is then incomplete, its stages kept)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path / RECORD_FILE)

    def wipe(self) -> None:
        """Delete the entry's directory (renamed away first, so no half-deleted entry is seen)."""
        if not self.path.exists():
            return
        trash = self.path.with_name(f".trash-{self.path.name}-{os.getpid()}-{time.time_ns()}")
        os.replace(self.path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def remove_orphans(self) -> list[Path]:
        """Delete what killed runs of this entry left: temporary files and ``.trash-*`` folders.

        Call it holding the entry's lock. Returns the deleted paths.
        """
        removed = remove_orphans(self.path, recursive=True, any_process=True)
        if self.path.parent.is_dir():
            for trash in self.path.parent.glob(f".trash-{self.key}-*"):
                shutil.rmtree(trash, ignore_errors=True)
                removed.append(trash)
        return removed


# --------------------------------------------------------------------------- store
class Store:
    """A results store rooted at a directory (created on first write).

    Parameters
    ----------
    root : str or Path
        Root directory, ``results/`` by default. It need not exist yet.

    Raises
    ------
    ValueError
        ``root`` is not a path, or is (or lies under) a file.

    The tidy loaders (``load_*``) read complete entries only; a corrupt entry is
    reported with a warning and left out.
    """

    def __init__(self, *, root: str | os.PathLike = "results"):
        from ._validation import ArgumentError, as_text

        self.root = Path(as_text(root, "root"))
        existing = next((p for p in (self.root, *self.root.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            where = "is a file" if existing == self.root else f"lies under the file {str(existing)!r}"
            raise ArgumentError("root", str(root), f"{where}, not a directory; pass a directory for the "
                                                   "results store (it is created on first write)")

    def __repr__(self) -> str:
        return f"Store(root={str(self.root)!r})"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def features_dir(self) -> Path:
        """Shared backbone-feature cache (``features.compute_features(cache_dir=...)``)."""
        return self.root / "features"

    def lock_path(self, name: str) -> Path:
        return self.root / "locks" / f"{name}.lock"

    def entry(self, key: str) -> Entry:
        """The entry of ``key`` (an ExperimentSettings.key()); it may not exist yet."""
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"key={key!r} is not a valid entry key")
        return Entry(self.runs_dir / key, key, self.lock_path(key))

    def keys(self) -> list[str]:
        """Keys of every entry directory, complete or not, sorted."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def state(self, key: str, *, settings: dict[str, Any] | None = None, deep: bool = False) -> str:
        """``"done"``, ``"partial"`` (some stages finished), ``"missing"`` or ``"corrupt: <why>"``.

        A done entry has an intact record, stage log and files: every file matches its
        sha256 (with ``deep=False``, the bulky matrices and checkpoints only their size).
        """
        entry = self.entry(key)
        if not entry.path.is_dir():
            return "missing"
        try:
            entry.read_record(settings=settings, deep=deep)
            entry.read_stages(required=True)
            return "done"
        except FileNotFoundError:
            pass
        except IncompatibleEntry as exc:
            return f"corrupt: {exc}"
        try:
            finished = entry.read_stages()["finished"]
        except IncompatibleEntry as exc:
            return f"corrupt: {exc}"
        return "partial" if finished else "missing"

    def records(self) -> list[dict[str, Any]]:
        """Records of every complete entry (corrupt ones are reported, once, and left out).

        Each record and every file the tidy tables read from it are checked
        against their sha256.
        """
        records = []
        for key in self.keys():
            entry = self.entry(key)
            try:
                records.append(entry.read_record())
            except FileNotFoundError:
                continue  # incomplete: still running or killed, not a result yet
            except IncompatibleEntry as exc:
                message = f"skipping {key}: {exc} (`glitchlib grid` or a rerun recomputes it)"
                if (str(self.root), message) not in _WARNED:
                    _WARNED.add((str(self.root), message))
                    log.warning("%s", message)
        return records

    def load_record(self, key: str) -> dict[str, Any]:
        """The record of one complete entry; raises ``FileNotFoundError`` or :class:`IncompatibleEntry`."""
        entry = self.entry(key)
        try:
            return entry.read_record()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no complete results for key {key!r} in {self.root} (run it first)"
            ) from None

    # ----------------------------------------------------------- tidy tables
    def load_runs(self) -> pd.DataFrame:
        """One row per complete run: settings, sizes, accuracies, provenance."""
        rows = [_run_row(r) for r in self.records()]
        columns = [
            "key", *SETTINGS_COLUMNS, "n_train", "n_test", "n_glitches", "val_acc",
            "repair_acc", "char_acc_mislabeled", "char_acc_anomaly", "train_acc_clean",
            "train_acc_mislabeled", "train_acc_anomaly", "data_source", "weights_id",
            "device", "machine",
        ]
        return _frame(rows, columns)

    def load_metrics(self) -> pd.DataFrame:
        """One row per (run, signal): detection F1, average precision, AUROC."""
        return self._per_run_table(METRICS_FILE, ["signal", "f1", "ap", "auroc"])

    def load_histories(self) -> pd.DataFrame:
        """One row per (run, epoch): training loss and accuracy, validation accuracy."""
        return self._per_run_table(HISTORY_FILE, ["epoch", "train_loss", "train_acc", "val_acc"])

    def _per_run_table(self, filename: str, value_columns: list[str]) -> pd.DataFrame:
        """Every complete run's table ``filename``, each row prefixed with the run's settings."""
        frames = []
        for record in self.records():
            frame = self.entry(record["key"]).read_frame(filename)
            for column, value in reversed(list(_settings_columns(record).items())):
                frame.insert(0, column, value)
            frames.append(frame)
        return _concat(frames, ["key", *SETTINGS_COLUMNS, *value_columns])

    def load_timings(self) -> pd.DataFrame:
        """One row per (run, stage): seconds the stage took when it was computed."""
        rows = []
        for record in self.records():
            base = _settings_columns(record)
            for stage, seconds in record.get("timings", {}).items():
                rows.append({**base, "stage": stage, "seconds": seconds})
        return _frame(rows, ["key", *SETTINGS_COLUMNS, "stage", "seconds"])

    def load_scores(self, key: str) -> pd.DataFrame:
        """Per training sample of one run: labels, kind of sample, suggestions, every signal."""
        self.load_record(key)  # complete and intact (scores.csv.gz checked), or raise
        return self.entry(key).read_frame(SCORES_FILE)

    def checked_file(self, key: str, name: str) -> Path:
        """Path of file ``name`` of a complete entry, once it matches its recorded sha256.

        Raises ``FileNotFoundError`` (not complete) or :class:`IncompatibleEntry`.
        """
        entry = self.entry(key)
        problem = entry.file_problem(name, self.load_record(key))
        if problem:
            raise IncompatibleEntry(f"entry {entry.path}: {problem}")
        return entry.file(name)


#: Warnings already given by :meth:`Store.records` in this process (each is given once).
_WARNED: set[tuple[str, str]] = set()


def as_store(store: "Store | str | os.PathLike | None") -> Store:
    """``store`` itself if it is a :class:`Store`, else a store rooted there (default ``results/``)."""
    if store is None:
        return Store()
    return store if isinstance(store, Store) else Store(root=store)


def _settings_columns(record: dict[str, Any]) -> dict[str, Any]:
    settings = record.get("settings", {})
    return {"key": record["key"], **{c: settings.get(c) for c in SETTINGS_COLUMNS}}


def _run_row(record: dict[str, Any]) -> dict[str, Any]:
    summary = record.get("summary", {})
    environment = record.get("environment", {})
    return {
        **_settings_columns(record),
        **summary,
        "device": environment.get("device"),
        "machine": environment.get("machine"),
    }


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame:
            frame[column] = pd.Series(dtype=object) if frame.empty else None
    rest = [c for c in frame.columns if c not in columns]
    return frame[columns + rest]


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return pd.concat(frames, ignore_index=True)
