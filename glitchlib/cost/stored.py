"""Benchmark results kept in the results store, beside the settings that produced them.

Layout: ``<store root>/benchmarks/<name>-<digest>.json`` where ``digest`` hashes
the settings, so results of other settings never mix. Each file holds
``{"name", "settings", "environment", "created", "load_average", "result"}``
(``load_average``: the system's 1-minute load average before and after the
computation, which tells how busy a shared machine was) and is written
atomically (an interrupted run leaves no partial file).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import _validation
from ..store import as_store, read_json, write_json

__all__ = ["stored_benchmark"]


def _load_average() -> float | None:
    """The system's 1-minute load average (processes running or waiting for a core), None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _benchmark_path(store: Any, name: str, settings: Mapping[str, Any]) -> Path:
    """Where the result of benchmark ``name`` with ``settings`` lives in ``store`` (a Store or a path)."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"name={name!r}: use letters, digits, '-' and '_' only")
    digest = hashlib.sha256(json.dumps(dict(settings), sort_keys=True, default=str).encode()).hexdigest()[:12]
    return as_store(store).root / "benchmarks" / f"{name}-{digest}.json"


def stored_benchmark(
    store: Any,
    name: str,
    *,
    settings: Mapping[str, Any],
    compute: Callable[[], Any],
    recompute: bool = False,
    compute_missing: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """The stored result of benchmark ``name`` with ``settings``; computed and stored when missing.

    Parameters
    ----------
    store : Store or path
        The results store.
    name : str
        Benchmark name (file name prefix).
    settings : mapping
        JSON-serialisable settings; they identify the result.
    compute : callable
        Returns the JSON-serialisable result; called when there is no stored
        result, or when ``recompute``.
    recompute : bool
        Compute and overwrite even when a result is stored.
    compute_missing : bool
        When False, a missing result raises instead of being computed.
    device : str
        Recorded in the environment (see :func:`glitchlib.experiments.environment`); when
        computing, one this machine has (checked before ``compute`` is called).

    Returns
    -------
    dict
        ``{"name", "settings", "environment", "created", "load_average", "result", "path"}``.

    Raises
    ------
    FileNotFoundError
        No stored result and ``compute_missing=False`` (the message says how to compute it).
    ValueError
        A result to compute with a ``device`` this machine does not have.
    """
    from ..experiments import environment

    path = _benchmark_path(store, name, settings)
    if path.is_file() and not recompute:
        return {**read_json(path), "path": str(path)}
    if not compute_missing:
        raise FileNotFoundError(
            f"no stored {name} result for these settings at {path}; pass compute_missing=True to compute it"
        )
    _validation.as_device(device)  # before computing: environment() refuses a device this machine lacks
    before = _load_average()
    result = compute()
    record = {
        "name": name,
        "settings": dict(settings),
        "environment": environment(device=device),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average": [before, _load_average()],
        "result": result,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return {**read_json(path), "path": str(path)}
