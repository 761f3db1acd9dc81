"""glitchlib: data glitch discovery with influence-based model explanation.

The library behind the reproduction of *Data Glitches Discovery using
Influence-based Model Explanation*: seeded glitch injection, frozen pretrained
backbones, checkpointed training, exact TracIn kernels, the influence signals
(SI, MI, MAI, AAI, MPI, NIL, NIL-opt, #SLIP, #SLIN, GD-class) and the paper's
own (CNCI, PCID, CFRank), detection metrics and a resumable results store.

Submodules are imported on first use, so ``import glitchlib as g`` is cheap and
``g.data.load("fmnist")`` works without importing the rest.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "data",
    "glitches",
    "models",
    "features",
    "train",
    "settings",
    "influence",
    "signals",
    "metrics",
    "detect",
    "peers",
    "store",
    "profiles",
    "studies",
    "grid",
    "experiments",
    "report",
    "loor",
    "loo_study",
    "scan",
    "cost",
    "cli",
)

# the command line's module (``glitchlib.cli``) is the console script, not an API: importable, not listed
__all__ = [name for name in _SUBMODULES if name != "cli"] + ["__version__"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'glitchlib' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
