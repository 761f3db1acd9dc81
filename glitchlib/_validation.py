"""One place for the rules every public function applies to its arguments.

Each helper checks one kind of argument and returns it in the form the library
computes with, or raises ``ValueError`` with one kind of message: the argument's
name, the value received and what to pass instead (``"ratio=nan: need a number
in (0, 0.5]"``). The rules:

* numbers are accepted **by value**, whatever their type: Python ``int`` and
  ``float``, NumPy scalars (``np.int64(1)``, ``np.float32(0.1)``), 0-d arrays and
  tensors; an integer argument accepts any number with an integral value
  (``2.0``); ``True``/``False`` are refused as numbers; NaN and infinities are
  refused unless a function says otherwise;
* booleans are ``bool`` or ``np.bool_`` (never a number or a non-empty string read
  for its truth);
* ``text=True`` (notebook parameters, which papermill may hand over as strings)
  also accepts the usual spellings: ``"true"/"false"/"yes"/"no"/"on"/"off"/"1"/"0"``
  for booleans, numeric strings for numbers, ``"none"``/``"null"``/``""`` for an
  optional value;
* arrays (labels, scores, masks, matrices) are NumPy arrays or tensors of the
  stated shape and kind, returned as NumPy arrays.

The structure follows cleanlab's ``cleanlab/internal/validation.py``: the rules
are written once and every public entry point calls them.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["ArgumentError"]  # the rest is private: imported by the library, not by users

_TRUE = frozenset({"true", "yes", "y", "on", "1", "t"})
_FALSE = frozenset({"false", "no", "n", "off", "0", "f"})
_NONE = frozenset({"none", "null", "~", ""})


class ArgumentError(ValueError):
    """A ``ValueError`` about one argument: ``argument`` is its name, ``problem`` what is wrong.

    ``str(error)`` reads ``"<argument>=<value>: <problem>"``; the command line uses
    ``argument`` to name its own option instead.
    """

    def __init__(self, argument: str, value: Any, problem: str):
        self.argument = argument
        self.value = value
        self.problem = problem
        super().__init__(f"{argument}={_show(value)}: {problem}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(name: str, value: Any, need: str) -> ArgumentError:
    return ArgumentError(name, value, need)


def _unwrap(value: Any) -> Any:
    """A 0-d array or tensor as its NumPy scalar; anything else unchanged."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):  # torch.Tensor
        if value.dim() == 0:
            return value.detach().cpu().numpy()[()]
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value[()]
    return value


def is_none_text(value: Any) -> bool:
    """Whether ``value`` is a string spelling "no value" (``"none"``, ``"null"``, ``""``)."""
    return isinstance(value, str) and value.strip().lower() in _NONE


# ---------------------------------------------------------------------- scalars
def as_bool(value: Any, name: str, *, text: bool = False) -> bool:
    """``value`` as a ``bool``; with ``text``, also the usual spellings of true and false."""
    value = _unwrap(value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if text and isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    if text and isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    spellings = " (or one of 'true', 'false', 'yes', 'no', '1', '0')" if text else ""
    return _raise(name, value, f"need True or False{spellings}")


def _raise(name: str, value: Any, need: str):
    raise _fail(name, value, need)


def _range_text(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def _number(value: Any, name: str, need: str, text: bool) -> float | int:
    """A real number from any numeric type (or a numeric string with ``text``)."""
    value = _unwrap(value)
    if text and isinstance(value, str):
        stripped = value.strip()
        try:
            return int(stripped)
        except ValueError:
            pass
        try:
            return float(stripped)
        except ValueError:
            _raise(name, value, need)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        _raise(name, value, need)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, np.floating) and np.dtype(type(value)).itemsize < 8:
        # np.float32(0.1) means 0.1: the shortest decimal that round-trips in its precision
        return float(str(value))
    return float(value)


def as_real(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    optional: bool = False,
    text: bool = False,
) -> float | None:
    """``value`` as a ``float`` within the given bounds.

    ``optional`` accepts ``None`` (and, with ``text``, ``"none"``); ``finite``
    refuses NaN and infinities (NaN is always refused when bounds are given).
    """
    if optional and (value is None or (text and is_none_text(value))):
        return None
    bounds = _range_text(low, high, low_open, high_open)
    need = f"need {'None or ' if optional else ''}a {'finite ' if finite else ''}number{bounds}"
    number = float(_number(value, name, need, text))
    if math.isnan(number) or (finite and math.isinf(number)):
        _raise(name, value, need)
    if low is not None and (number < low or (low_open and number == low)):
        _raise(name, value, need)
    if high is not None and (number > high or (high_open and number == high)):
        _raise(name, value, need)
    return number


def as_int(
    value: Any,
    name: str,
    *,
    low: int | None = None,
    high: int | None = None,
    optional: bool = False,
    text: bool = False,
) -> int | None:
    """``value`` as an ``int`` (any number with an integral value) within ``[low, high]``."""
    if optional and (value is None or (text and is_none_text(value))):
        return None
    need = f"need {'None or ' if optional else ''}an integer{_range_text(low, high, False, False)}"
    number = _number(value, name, need, text)
    if isinstance(number, float):
        if not math.isfinite(number) or number != int(number):
            _raise(name, value, need)
        number = int(number)
    if (low is not None and number < low) or (high is not None and number > high):
        _raise(name, value, need)
    return number


def as_seed(value: Any, name: str = "seed", *, text: bool = False) -> int:
    """A seed: an integer >= 0."""
    try:
        return as_int(value, name, low=0, text=text)
    except ArgumentError:
        raise ArgumentError(name, value, "need a non-negative integer") from None


def as_ratio(value: Any, name: str = "ratio", *, high: float = 0.5, optional: bool = False,
             text: bool = False) -> float | None:
    """A share of samples: a number in ``(0, high]``."""
    return as_real(value, name, low=0.0, high=high, low_open=True, optional=optional, text=text)


def as_positive(value: Any, name: str, *, optional: bool = False, text: bool = False) -> float | None:
    """A finite number > 0 (a learning rate, a scale)."""
    return as_real(value, name, low=0.0, low_open=True, optional=optional, text=text)


def as_choice(value: Any, name: str, choices, *, optional: bool = False) -> Any:
    """One of ``choices`` (compared by equality)."""
    if optional and value is None:
        return None
    if isinstance(value, str) and value in choices:
        return value
    shown = ", ".join(str(c) for c in choices)
    return _raise(name, value, f"choose from {shown}" + (" or None" if optional else ""))


def as_text(value: Any, name: str, *, optional: bool = False, text: bool = False) -> str | None:
    """A string (a path, a name); ``optional`` accepts None (and ``"none"`` with ``text``)."""
    if optional and (value is None or (text and is_none_text(value))):
        return None
    if hasattr(value, "__fspath__"):
        value = str(value.__fspath__())
    if not isinstance(value, str) or not value:
        _raise(name, value, f"need {'None or ' if optional else ''}a non-empty string")
    return value


def as_device(value: Any, name: str = "device", *, optional: bool = False):
    """A ``torch.device`` that exists on this machine: CPU, an available CUDA device or MPS.

    Accepts a string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) or a
    ``torch.device``; ``optional`` accepts ``None`` as the CPU. Refuses what torch
    cannot parse, other device types, and a CUDA (or MPS) device this machine does
    not have, saying which device to pass instead.
    """
    import torch  # here only: this module is imported by torch-free modules

    if optional and value is None:
        return torch.device("cpu")
    need = f"need {'None (the CPU) or ' if optional else ''}'cpu', 'cuda', 'cuda:<index>' or 'mps'"
    if not isinstance(value, (str, torch.device)):
        _raise(name, value, need)
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        return _raise(name, value, need)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            _raise(name, value, f"CUDA is not available on this machine; use {name}='cpu'")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            _raise(name, value, f"this machine has {count} CUDA device(s); use cuda:0 .. cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            _raise(name, value, f"MPS is not available on this machine; use {name}='cpu'")
    elif device.type != "cpu":
        _raise(name, value, need)
    return device


# ----------------------------------------------------------------------- arrays
def to_numpy(x: Any) -> np.ndarray:
    """``x`` as a NumPy array (a CPU tensor shares its memory; bfloat16 becomes float32)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def labels_to_array(y: Any, name: str, *, length: int | None = None, what: str = "",
                    n_classes: int | None = None, allow_empty: bool = False) -> np.ndarray:
    """Class labels: 1-D, integer (or integral floats refused), >= 0, below ``n_classes`` when given."""
    a = to_numpy(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer labels, got shape {a.shape}")
    if a.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty; pass one label per sample")
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class labels, got dtype {a.dtype}")
    if length is not None and a.shape[0] != length:
        against = f"{what} has {length}" if what else f"there are {length} samples"
        raise ValueError(f"{name} has {a.shape[0]} labels but {against}; they must match")
    if a.size and a.min() < 0:
        raise ValueError(f"{name} contains the negative label {int(a.min())}; labels must be in 0 .. n_classes-1")
    if n_classes is not None and a.size and a.max() >= n_classes:
        raise ValueError(f"{name} contains the label {int(a.max())}, outside [0, n_classes={n_classes})")
    return a.astype(np.int64, copy=False)


def scores_to_array(scores: Any, name: str = "scores", *, length: int | None = None) -> np.ndarray:
    """One real, finite score per sample: 1-D float64."""
    a = to_numpy(scores)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per training sample), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty; pass one value per training sample")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be real numbers, got dtype {a.dtype}")
    if length is not None and a.shape[0] != length:
        raise ValueError(f"{name} has length {a.shape[0]} but there are {length} samples")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values; pass finite numbers")
    return a


def mask_to_array(mask: Any, length: int | None, name: str = "mask") -> np.ndarray:
    """A boolean mask of ``length`` samples (0/1 integers are accepted)."""
    a = to_numpy(mask)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if length is not None and a.shape[0] != length:
        raise ValueError(f"{name} has length {a.shape[0]} but there are {length} samples")
    if a.dtype.kind == "b":
        return a
    if a.dtype.kind in "iu" and np.isin(a, (0, 1)).all():
        return a.astype(bool)
    raise ValueError(f"{name} must be a boolean mask (True = glitch), got dtype {a.dtype}")


def matrix_to_array(matrix: Any, name: str) -> np.ndarray:
    """A real, non-empty 2-D matrix (float32 kept, other real dtypes become float64)."""
    a = to_numpy(matrix)
    if a.dtype not in (np.float32, np.float64):
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be a real matrix, got dtype {a.dtype}")
        a = a.astype(np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix (n_train x n_test), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(
            f"{name} is empty (shape {a.shape}); it needs at least one training and one validation sample"
        )
    return a


def strings_to_array(values: Any, name: str, *, length: int | None = None, example: str = "",
                     allowed: tuple[str, ...] | None = None, what: str = "value") -> np.ndarray:
    """A 1-D array of strings (sample kinds, characterisations); with ``allowed``, only those values."""
    a = to_numpy(values)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of strings, got shape {a.shape}")
    if a.dtype.kind not in "UO" or (a.dtype.kind == "O" and not all(isinstance(v, str) for v in a)):
        hint = f" such as {example!r}" if example else ""
        raise ValueError(f"{name} must hold strings{hint}, got dtype {a.dtype}")
    if length is not None and a.shape[0] != length:
        raise ValueError(f"{name} has length {a.shape[0]} but there are {length} samples")
    a = a.astype(str)
    if allowed is not None:
        unknown = [v for v in dict.fromkeys(a.tolist()) if v not in allowed]
        if unknown:
            shown = ", ".join(map(repr, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
            raise ValueError(f"{name} holds {shown}, not a {what}; pass values among "
                             f"{', '.join(map(repr, allowed))}")
    return a
