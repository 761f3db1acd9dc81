"""Timers and memory meters for the cost measurements (SPEC.md section 9.9).

Three primitives, each with one job:

* :func:`timed` runs a call and returns its result with its wall-clock seconds
  (waiting for a CUDA device to finish first, so asynchronous kernels are counted);
* :class:`PeakMemory` measures the peak memory a block of code adds: on a CUDA
  device the peak allocated by torch, on the CPU the peak resident set size of
  the process sampled by a background thread;
* :func:`matmul_seconds` times ``torch.mm`` of given shapes, the matrix-multiply
  bound of a set of dot products.
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .. import _validation

__all__ = ["PeakMemory", "matmul_seconds", "timed"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(call: Callable[[], Any], *, device: str | torch.device = "cpu") -> tuple[Any, float]:
    """Run ``call()``; return ``(result, seconds)`` of wall-clock time.

    On a CUDA ``device`` the device is synchronised before and after, so the
    seconds include every kernel the call launched. A ``device`` this machine
    does not have raises ``ValueError``.
    """
    device = _validation.as_device(device)
    _synchronize(device)
    start = time.perf_counter()
    result = call()
    _synchronize(device)
    return result, time.perf_counter() - start


def _release_free_memory() -> None:
    """Hand the C heap's free memory back to the system (glibc ``malloc_trim``), so that
    memory freed earlier and reused by the measured block does not hide its growth."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _resident_bytes() -> int | None:
    """Resident set size of this process in bytes (Linux ``/proc``), None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Context manager: the peak memory (bytes) the block adds to what was in use before.

    Parameters
    ----------
    device : str or torch.device
        ``"cuda..."``: torch's peak allocated device memory
        (``torch.cuda.max_memory_allocated``) minus the memory allocated on entry.
        ``"cpu"``: the peak resident set size of the process minus the one on
        entry, sampled every ``interval`` seconds by a background thread (torch
        releases the GIL in its kernels, so the thread keeps sampling); a peak
        shorter than the interval can be missed. On entry, free heap memory is
        handed back to the system (glibc's ``malloc_trim``), so that the block's
        allocations show in the resident size rather than reuse freed pages.
    interval : float
        Sampling period on the CPU, in seconds (> 0).

    A ``device`` this machine does not have, or a bad ``interval``, raises ``ValueError``.

    Attributes
    ----------
    peak_bytes : int or None
        Set on exit; None where the process's resident size cannot be read
        (the CPU meter needs Linux's ``/proc``).
    """

    def __init__(self, *, device: str | torch.device = "cpu", interval: float = 0.002) -> None:
        self.interval = _validation.as_positive(interval, "interval")
        self.device = _validation.as_device(device)
        self.peak_bytes: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0
        self._peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _resident_bytes() or 0)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            _synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        gc.collect()
        _release_free_memory()
        start = _resident_bytes()
        if start is None:
            return self
        self._start = self._peak = start
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            _synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._start
            return
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _resident_bytes() or 0)
        self.peak_bytes = self._peak - self._start


def matmul_seconds(
    shapes: Sequence[tuple[int, int, int, int]],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    max_inner: int = 8192,
    repeats: int = 2,
    seed: int = 0,
) -> float:
    """Seconds ``torch.mm`` needs for the products ``shapes``: the matrix-multiply bound.

    Parameters
    ----------
    shapes : sequence of (rows, inner, cols, count)
        ``count`` products of a ``rows x inner`` by an ``inner x cols`` matrix,
        accumulated into one ``rows x cols`` output (``addmm``), as the dot
        products of ``rows`` gradients with ``cols`` gradients of ``inner``
        numbers each, ``count`` times (e.g. once per checkpoint).
    device : str or torch.device
        Where to multiply: ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or ``"mps"``,
        one this machine has (otherwise ``ValueError``).
    dtype : torch.dtype
        Element type of the operands.
    max_inner : int
        Inner dimensions above this are multiplied in slices of at most this
        many (same FLOPs, bounded memory: the operands are ``rows x max_inner``
        and ``max_inner x cols``, reused for every slice).
    repeats : int
        Timed repetitions after one untimed warm-up; the fastest is returned
        (the least disturbed by other processes).
    seed : int
        Seed of the random operands (the time does not depend on their values).

    Returns
    -------
    float
        Seconds of the fastest repetition for all products together.

    Raises
    ------
    ValueError
        An empty ``shapes``, a non-positive size or count, or ``repeats < 1``.
    """
    if not shapes:
        raise ValueError("shapes is empty; give at least one (rows, inner, cols, count) product")
    if repeats < 1 or max_inner < 1:
        raise ValueError(f"repeats and max_inner must be >= 1, got {repeats} and {max_inner}")
    for shape in shapes:
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError(f"every entry of shapes must be 4 positive ints (rows, inner, cols, count), got {shape}")
    device = _validation.as_device(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    rows, cols = max(s[0] for s in shapes), max(s[2] for s in shapes)
    width = min(max_inner, max(s[1] for s in shapes))
    a = torch.randn(rows, width, generator=gen, device=device, dtype=dtype)
    b = torch.randn(width, cols, generator=gen, device=device, dtype=dtype)
    out = torch.empty(rows, cols, device=device, dtype=dtype)

    def run() -> None:
        for r, inner, c, count in shapes:
            target = out[:r, :c]
            for _ in range(count):
                for start in range(0, inner, width):
                    k = min(width, inner - start)
                    target.addmm_(a[:r, :k], b[:k, :c])

    run()
    return min(timed(run, device=device)[1] for _ in range(repeats))
