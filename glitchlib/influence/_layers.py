"""Which parameters TracIn differentiates (SPEC.md sections 3 and 9.7).

The influence parameters are the weights and biases of the ``Linear`` and
``Conv2d`` modules inside the influence layers, and of the numeric feature
tokenizer of the FT-Transformer (``rtdl_revisiting_models.LinearEmbeddings``:
token ``f`` of sample ``x`` is ``x_f W_f + b_f``, one ``Linear(1, d)`` per
feature). A layer name may point at such a module itself or at a container (for
example a ResNet block ``"layer3.2"``), which expands to every such module inside
it. Normalisation layers (BatchNorm, LayerNorm, ...) are never differentiated,
nor are parameters used outside these modules (the FT-Transformer's [CLS]
token, ``nn.Embedding`` tables).

Note the difference with captum 0.9.0: captum silently ignores a container name
and then differentiates nothing of it; here a container stands for its leaves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

__all__ = ["INFLUENCE_MODULE_TYPES", "InfluenceLayer", "influence_module_names", "resolve_layers"]

try:  # the FT-Transformer's numeric feature tokenizer (Gorishniy et al., 2021)
    from rtdl_revisiting_models import LinearEmbeddings as _LinearEmbeddings
except ImportError:  # pragma: no cover - a declared dependency
    _LinearEmbeddings = None

TOKENIZER_TYPES: tuple[type[nn.Module], ...] = () if _LinearEmbeddings is None else (_LinearEmbeddings,)
"""Feature tokenizers ``(n, F) -> (n, F, d)``, ``x_f W_f + b_f``, differentiated like ``Linear``."""

INFLUENCE_MODULE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d, *TOKENIZER_TYPES)
"""Module types whose parameters are influence parameters."""


@dataclass(frozen=True)
class InfluenceLayer:
    """One ``Linear``/``Conv2d`` module whose parameters are differentiated.

    Attributes
    ----------
    name : str
        Module name relative to the model (``""`` is the model itself).
    module : nn.Module
        The module (inside the engine's private copy of the model).
    parameter_names : tuple of str
        Full names of the differentiated parameters, e.g. ``("fc.weight", "fc.bias")``;
        a parameter shared by several modules (tied weights) is named by its first
        name in ``model.named_parameters()``.
    tied : bool
        Whether a parameter of the module is shared with another module (its
        gradient is then the sum over every use).
    """

    name: str
    module: nn.Module
    parameter_names: tuple[str, ...]
    tied: bool = False

    @property
    def is_linear(self) -> bool:
        return isinstance(self.module, nn.Linear)

    @property
    def is_tokenizer(self) -> bool:
        return isinstance(self.module, TOKENIZER_TYPES)

    @property
    def has_bias(self) -> bool:
        return any(p.endswith("bias") for p in self.parameter_names)


def _parameter_aliases(model: nn.Module) -> dict[str, str]:
    """Every parameter and buffer name of ``model`` -> the canonical name of its tensor.

    The canonical name is the one ``named_parameters()``/``named_buffers()`` report
    (the first); a tied parameter (``b.weight = a.weight``) has several names.
    """
    aliases: dict[str, str] = {}
    for named in (model.named_parameters, model.named_buffers):
        first: dict[int, str] = {}
        for name, tensor in named(remove_duplicate=False):
            aliases[name] = first.setdefault(id(tensor), name)
    return aliases


def influence_module_names(model: nn.Module) -> list[str]:
    """Names of every ``Linear`` and ``Conv2d`` module of ``model``, in module order."""
    return [name for name, mod in model.named_modules() if isinstance(mod, INFLUENCE_MODULE_TYPES)]


def _join(prefix: str, name: str) -> str:
    return ".".join(part for part in (prefix, name) if part)


def resolve_layers(
    model: nn.Module, *, layers: Sequence[str] | None, bias: bool = True
) -> list[InfluenceLayer]:
    """Expand and validate influence layer names.

    Parameters
    ----------
    model : nn.Module
        The model the names refer to.
    layers : sequence of str or None
        Module names relative to ``model``. A ``Linear``/``Conv2d`` name stands for
        itself, a container for all ``Linear``/``Conv2d`` modules inside it, ``""``
        for the model itself. ``None`` selects every ``Linear``/``Conv2d`` module.
    bias : bool
        Whether biases are differentiated along with the weights.

    Returns
    -------
    list of InfluenceLayer
        One entry per distinct ``Linear``/``Conv2d`` module, in the order given
        (containers expand in module order); duplicates are dropped.

    Raises
    ------
    ValueError
        If ``layers`` is empty or not a sequence of strings, a name is unknown, or a
        name holds no ``Linear``/``Conv2d`` module. The message lists the valid names.
    """
    valid = influence_module_names(model)
    shown = ", ".join(repr(v) for v in valid[:40]) + (" ..." if len(valid) > 40 else "")
    if layers is None:
        layers = valid
        if not valid:
            raise ValueError("layers=None but the model has no Linear or Conv2d module to differentiate")
    if isinstance(layers, str) or not all(isinstance(n, str) for n in layers):
        raise ValueError(f"layers must be a list of module names (strings), got {layers!r}")
    if len(layers) == 0:
        raise ValueError(f"layers is empty; name at least one module, e.g. one of: {shown}")

    modules = dict(model.named_modules())
    aliases = _parameter_aliases(model)
    counts = Counter(aliases.values())
    shared = {c for c, k in counts.items() if k > 1}
    chosen: list[InfluenceLayer] = []
    seen: set[int] = set()
    for name in layers:
        if name not in modules:
            raise ValueError(
                f"unknown layer name {name!r} in layers; valid Linear/Conv2d module names are: {shown}"
            )
        root = modules[name]
        leaves = [
            (_join(name, sub), mod)
            for sub, mod in root.named_modules()
            if isinstance(mod, INFLUENCE_MODULE_TYPES)
        ]
        if not leaves:
            raise ValueError(
                f"layer {name!r} ({type(root).__name__}) contains no Linear or Conv2d module; "
                f"valid names are: {shown}"
            )
        for full, mod in leaves:
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            params = [_join(full, "weight")]
            if bias and getattr(mod, "bias", None) is not None:
                params.append(_join(full, "bias"))
            params = [aliases.get(p, p) for p in params]
            chosen.append(InfluenceLayer(full, mod, tuple(params), tied=any(p in shared for p in params)))
    return chosen
