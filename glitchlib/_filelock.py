"""Exclusive locks between threads, processes and hosts sharing a file system.

One job: :func:`hold` takes a POSIX record lock (``fcntl.lockf``) on a lock file,
which network file systems pass on to the file server, so the lock excludes
processes on other machines too. :func:`glitchlib.store.file_lock` is its public
face.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from pathlib import Path
from typing import Iterator

__all__ = ["hold"]

log = logging.getLogger("glitchlib.store")

_LOCKS_GUARD = threading.Lock()
_LOCKS: dict[str, threading.RLock] = {}  # per path: the threads of this process take turns
_DEPTH: dict[str, int] = {}  # per path: how deep the holding thread is nested


@contextlib.contextmanager
def hold(path: str | os.PathLike) -> Iterator[None]:
    """Exclusive lock on ``path`` between threads, processes and hosts sharing the file system.

    A POSIX record lock (``fcntl.lockf``, i.e. ``fcntl(F_SETLKW)``) on the whole
    lock file: the kind of lock network file systems hand to the file server
    (NFSv3 through the lock daemon ``lockd``/NLM, NFSv4 natively, Lustre when
    mounted with ``-o flock``, GPFS and BeeGFS natively), so two machines sharing a
    store never hold the same lock at once (``flock`` is only emulated on some
    and machine-local on others). Record locks
    belong to a process, not to a thread, so a per-path thread lock is taken first
    and nested blocks on the same path in one thread are counted, not relocked.

    Waits for the holder to release it. The lock dies with its process (on a
    network file system: when the file server learns that the holder's machine
    rebooted, or its NFSv4 lease ran out), so a killed run never leaves a stale
    lock behind. Without ``fcntl`` (Windows) only the threads of one process are
    excluded.

    Raises
    ------
    OSError
        The file system refuses POSIX locks (``ENOLCK``, ``EOPNOTSUPP``,
        ``ENOSYS``: e.g. NFSv3 without ``lockd``, Lustre without ``-o flock``);
        the message names the lock file and what to do.
    """
    path = Path(path)
    name = os.path.abspath(path)
    with _LOCKS_GUARD:
        thread_lock = _LOCKS.setdefault(name, threading.RLock())
    with thread_lock:
        if _DEPTH.get(name, 0):  # nested in this thread: the process already holds it
            _DEPTH[name] += 1
            try:
                yield
            finally:
                _DEPTH[name] -= 1
            return
        fd = _lock_record(path)
        _DEPTH[name] = 1
        try:
            yield
        finally:
            _DEPTH[name] = 0
            if fd is not None:
                _unlock_record(fd)


def _lock_record(path: Path) -> int | None:
    """Open ``path`` and take its POSIX record lock, waiting if another process holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # not inherited by child processes
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another process holds it
            log.info("waiting for another process holding %s", path)
            fcntl.lockf(fd, fcntl.LOCK_EX)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise OSError(exc.errno, f"cannot lock {path}: the file system refuses POSIX locks "
                                     f"({exc.strerror}); on NFSv3 run the lock daemon (lockd) or use "
                                     "NFSv4, on Lustre mount with -o flock") from exc
        raise
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlock_record(fd: int) -> None:
    import fcntl

    try:
        fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)  # closing would release it too; unlocking first says so
