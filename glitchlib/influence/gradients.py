"""Per-sample gradients of the cross-entropy loss, in factored or flat form.

Three pieces, each with one job:

* :func:`per_sample_loss` says what is differentiated: the cross-entropy of each
  sample alone (SPEC.md section 3).
* :func:`linear_factors` gives, for every influence ``Linear`` module applied once
  to a 2-D input, its input activations ``a`` (``n x d_in``, with a column of ones
  appended when the bias is differentiated) and its output gradients ``d``
  (``n x d_out``), from one batched forward and backward pass. The per-sample
  gradient of that layer is the outer product ``d_i a_i^T``, so
  ``<g_i, g_j> = (a_i . a_j) (d_i . d_j)`` without materialising ``g``. The batched
  pass is exact because, in eval mode, sample ``i``'s loss depends on sample ``i``
  alone: the gradient of the summed loss with respect to the layer output is, row
  by row, the per-sample output gradient.
* :func:`flat_gradients` gives materialised per-sample gradients (``n x p``) for all
  other influence parameters (``Conv2d``, and ``Linear`` modules applied to
  sequences or several times per forward pass), with ``torch.func``
  (``vmap`` of ``grad`` over ``functional_call``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from .layers import InfluenceLayer


def per_sample_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of each sample alone: ``(n,)`` from logits ``n x C`` and labels ``(n,)``."""
    return F.cross_entropy(logits, y, reduction="none")


@dataclass
class Factors:
    """Per-sample gradient information of ``n`` samples at one checkpoint.

    Attributes
    ----------
    linear : list of (Tensor, Tensor)
        One ``(a, d)`` pair per closed-form ``Linear`` layer: ``a`` is ``n x d_in``
        (``n x (d_in + 1)`` with the bias's column of ones), ``d`` is ``n x d_out``.
    flat : Tensor or None
        ``n x p`` materialised (possibly projected) gradients of all other influence
        parameters, or None when there are none.
    """

    linear: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    flat: Tensor | None = None

    def __len__(self) -> int:
        if self.flat is not None:
            return self.flat.shape[0]
        return self.linear[0][1].shape[0] if self.linear else 0

    @property
    def dims(self) -> int:
        """Numbers stored per sample."""
        width = sum(a.shape[1] + d.shape[1] for a, d in self.linear)
        return width + (self.flat.shape[1] if self.flat is not None else 0)

    def materialise(self) -> Tensor:
        """All per-sample gradients flattened: ``n x p`` (flat part first, then each linear layer)."""
        parts = [] if self.flat is None else [self.flat]
        parts += [torch.einsum("no,ni->noi", d, a).reshape(d.shape[0], -1) for a, d in self.linear]
        return torch.cat(parts, dim=1)

    @staticmethod
    def cat(chunks: Sequence["Factors"]) -> "Factors":
        """Concatenate factors of consecutive sample chunks."""
        first = chunks[0]
        if len(chunks) == 1:
            return first
        linear = [
            (torch.cat([c.linear[k][0] for c in chunks]), torch.cat([c.linear[k][1] for c in chunks]))
            for k in range(len(first.linear))
        ]
        flat = None if first.flat is None else torch.cat([c.flat for c in chunks])
        return Factors(linear, flat)


@dataclass(frozen=True)
class Plan:
    """How each influence layer is handled for a given input shape.

    Attributes
    ----------
    closed_form : tuple of InfluenceLayer
        ``Linear`` layers called once per forward pass on 2-D inputs.
    generic : tuple of InfluenceLayer
        Every other influence layer (per-sample gradients with ``torch.func``).
    n_classes : int
        Width of the model's output.
    """

    closed_form: tuple[InfluenceLayer, ...]
    generic: tuple[InfluenceLayer, ...]
    n_classes: int

    @property
    def generic_parameters(self) -> list[str]:
        return [p for layer in self.generic for p in layer.parameter_names]


def _forward(model: nn.Module, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    out = functional_call(model, dict(params), (x,))
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"model must return logits of shape (n, n_classes); it returned {shape}")
    return out


def make_plan(
    model: nn.Module, params: Mapping[str, Tensor], layers: Sequence[InfluenceLayer], x: Tensor
) -> Plan:
    """Probe one forward pass on ``x`` (a few samples) to classify the influence layers."""
    calls: dict[int, list[int]] = {id(layer.module): [] for layer in layers}

    def record(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        calls[id(module)].append(inputs[0].dim() if inputs and isinstance(inputs[0], Tensor) else -1)

    handles = [layer.module.register_forward_hook(record) for layer in layers]
    try:
        with torch.no_grad():
            logits = _forward(model, params, x)
    finally:
        for h in handles:
            h.remove()
    closed, generic = [], []
    for layer in layers:
        if layer.is_linear and calls[id(layer.module)] == [2]:
            closed.append(layer)
        else:
            generic.append(layer)
    return Plan(tuple(closed), tuple(generic), int(logits.shape[1]))


def linear_factors(
    model: nn.Module,
    params: Mapping[str, Tensor],
    layers: Sequence[InfluenceLayer],
    x: Tensor,
    y: Tensor,
) -> list[tuple[Tensor, Tensor]]:
    """Input activations and output gradients of closed-form ``Linear`` layers.

    Parameters
    ----------
    model : nn.Module
        Model in eval mode.
    params : mapping of str to Tensor
        Parameters and buffers to evaluate the model with (``functional_call``).
    layers : sequence of InfluenceLayer
        ``Linear`` layers, each called exactly once per forward pass on a 2-D input.
    x : Tensor
        Inputs, ``n x ...``.
    y : Tensor
        Labels, ``(n,)`` int64.

    Returns
    -------
    list of (Tensor, Tensor)
        ``(a, d)`` per layer: ``a`` is ``n x d_in`` with a column of ones appended
        when the layer's bias is differentiated, ``d = dloss_i / d output_i`` is
        ``n x d_out``.
    """
    if not layers:
        return []
    records: dict[int, tuple[Tensor, Tensor]] = {}

    def capture(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        if id(module) in records:
            raise RuntimeError(f"{type(module).__name__} called twice in one forward pass")
        records[id(module)] = (inputs[0].detach().clone(), output)
        # Downstream code receives a copy, so that in-place ops after this layer
        # (e.g. ReLU(inplace=True)) cannot change the tensor we differentiate by.
        return output.clone()

    wanted = {p for layer in layers for p in layer.parameter_names}
    call_params = {k: (v.detach().requires_grad_(True) if k in wanted else v) for k, v in params.items()}
    handles = [layer.module.register_forward_hook(capture) for layer in layers]
    try:
        with torch.enable_grad():
            logits = _forward(model, call_params, x)
            loss = per_sample_loss(logits, y).sum()
            outputs = [records[id(layer.module)][1] for layer in layers]
            grads = torch.autograd.grad(loss, outputs, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    result = []
    for layer, d in zip(layers, grads):
        a, out = records[id(layer.module)]
        d = torch.zeros_like(out) if d is None else d.detach()
        if layer.has_bias:
            a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)
        result.append((a, d))
    return result


def flat_gradients(
    model: nn.Module,
    params: Mapping[str, Tensor],
    parameter_names: Sequence[str],
    x: Tensor,
    y: Tensor,
    *,
    vmap_chunk: int | None = None,
) -> Tensor:
    """Materialised per-sample gradients with ``torch.func``.

    Parameters
    ----------
    model, params : as in :func:`linear_factors`
    parameter_names : sequence of str
        Full names of the parameters to differentiate.
    x : Tensor
        Inputs, ``n x ...``.
    y : Tensor
        Labels, ``(n,)``.
    vmap_chunk : int, optional
        Samples per vectorised batch inside ``vmap`` (bounds its memory).

    Returns
    -------
    Tensor
        ``n x p`` with ``p`` the total size of the named parameters, in the given order.
    """
    names = list(parameter_names)
    diff = {k: params[k] for k in names}
    rest = {k: v for k, v in params.items() if k not in diff}

    def loss_one(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        logits = functional_call(model, (rest, p), (xi.unsqueeze(0),))
        return per_sample_loss(logits, yi.unsqueeze(0)).sum()

    grads = vmap(grad(loss_one), in_dims=(None, 0, 0), chunk_size=vmap_chunk)(diff, x, y)
    return torch.cat([grads[k].reshape(x.shape[0], -1) for k in names], dim=1)
