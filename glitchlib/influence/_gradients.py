"""Per-sample gradients of the cross-entropy loss, in factored or flat form.

What is differentiated: :func:`per_sample_loss`, the cross-entropy of each sample
alone (SPEC.md section 3), with respect to the influence parameters.

How, by layer (decided by :func:`make_plan` from one probing forward pass):

* **closed form**: a ``Linear`` module called once per forward pass on a 2-D
  input. :func:`batched_gradients` returns its input activations ``a``
  (``n x d_in``, plus a column of ones when the bias is differentiated) and output
  gradients ``d`` (``n x d_out``). Its per-sample gradient is the outer product
  ``d_i a_i^T``, so ``<g_i, g_j> = (a_i . a_j)(d_i . d_j)`` and ``g`` is never
  materialised.
* **hooked**: a ``Conv2d`` module, or a ``Linear`` module applied to sequences
  (inputs with more than 2 dimensions) or several times per pass. From the same
  hooks, :func:`batched_gradients` materialises the per-sample gradient
  ``sum_positions d a^T`` with one batched matrix product over the convolution's
  input patches, the way captum's sample-wise gradients do. For a ``Linear``
  applied to a token sequence ``a_i`` (``S x d_in``, e.g. the FT-Transformer's
  attention projections and feed-forward layers) this is the sum over tokens of
  outer products, ``G_i = sum_s d_{i,s} a_{i,s}^T`` (and ``sum_s d_{i,s}`` for the
  bias), exact for any number of tokens and calls.
* **tokenizer**: the FT-Transformer's numeric feature tokenizer
  (``LinearEmbeddings``, token ``f`` = ``x_f W_f + b_f``) is also hooked; its
  per-sample gradients are ``x_{i,f} d_{i,f}`` for ``W_f`` and ``d_{i,f}`` for
  ``b_f``.
* **generic**: anything else (a module whose parameters are used without calling
  the module, e.g. through ``F.linear(x, module.weight)``, and a module whose
  weight is tied to another parameter, ``b.weight = a.weight``, whose gradient
  is the sum over all of its uses): :func:`flat_gradients` with ``torch.func``
  (``vmap`` of ``grad`` over ``functional_call``, which ties shared parameters).

A model with several inputs gets them as a tuple of tensors sharing their first
(sample) dimension, and is called as ``model(*x)``.

Closed form and hooked layers need one batched forward and backward pass in
total. This is exact because, in eval mode, sample ``i``'s loss depends on sample
``i`` alone: the gradient of the summed loss with respect to a layer's output is,
row by row, the per-sample output gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from ._layers import InfluenceLayer

__all__ = ["Factors", "Plan", "make_plan", "batched_gradients", "flat_gradients", "per_sample_loss"]


def _as_args(x) -> tuple:
    """The positional inputs of the model: ``x`` itself, or the tensors of a tuple ``x``."""
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _n_samples(x) -> int:
    """Samples in ``x`` (a tensor, or a tuple of tensors sharing their first dimension)."""
    return _as_args(x)[0].shape[0]


def _take(x, start: int, stop: int):
    """Samples ``start:stop`` of ``x`` (each tensor of a tuple sliced alike)."""
    return tuple(t[start:stop] for t in x) if isinstance(x, (tuple, list)) else x[start:stop]


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
    flat : list of Tensor
        Materialised (possibly projected) per-sample gradients of all other
        influence parameters, one ``n x p_k`` block per parameter tensor (blocks
        avoid concatenating large matrices; dot products add up over blocks).
    """

    linear: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    flat: list[Tensor] = field(default_factory=list)

    def __len__(self) -> int:
        if self.flat:
            return self.flat[0].shape[0]
        return self.linear[0][1].shape[0] if self.linear else 0

    @property
    def dims(self) -> int:
        """Numbers stored per sample."""
        return sum(a.shape[1] + d.shape[1] for a, d in self.linear) + sum(g.shape[1] for g in self.flat)

    def materialise(self) -> Tensor:
        """All per-sample gradients flattened: ``n x p`` (flat blocks first, then each linear layer)."""
        parts = list(self.flat)
        parts += [torch.einsum("no,ni->noi", d, a).reshape(d.shape[0], -1) for a, d in self.linear]
        return torch.cat(parts, dim=1)


@dataclass(frozen=True)
class Plan:
    """How each influence layer is handled for a given input shape.

    Attributes
    ----------
    closed_form : tuple of InfluenceLayer
        ``Linear`` layers called once per forward pass on 2-D inputs.
    hooked : tuple of InfluenceLayer
        ``Conv2d`` layers and other ``Linear`` layers called as modules.
    generic : tuple of InfluenceLayer
        Layers whose module is never called (per-sample gradients with ``torch.func``).
    n_classes : int
        Width of the model's output.
    """

    closed_form: tuple[InfluenceLayer, ...]
    hooked: tuple[InfluenceLayer, ...]
    generic: tuple[InfluenceLayer, ...]
    n_classes: int

    @property
    def flat_parameters(self) -> list[str]:
        """Parameters with materialised gradients, in block order (hooked, then generic), each once."""
        hooked = [p for layer in self.hooked for p in layer.parameter_names]
        return hooked + self.generic_parameters

    @property
    def generic_parameters(self) -> list[str]:
        """Parameters of the generic layers, each once (tied layers share names)."""
        return list(dict.fromkeys(p for layer in self.generic for p in layer.parameter_names))


def _forward(model: nn.Module, params: Mapping[str, Tensor], x) -> Tensor:
    out = functional_call(model, dict(params), _as_args(x))
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"model must return logits of shape (n, n_classes); it returned {shape}")
    return out


def make_plan(
    model: nn.Module, params: Mapping[str, Tensor], layers: Sequence[InfluenceLayer], x: Tensor
) -> Plan:
    """Probe one forward pass on ``x`` (a few samples) to decide how each layer is handled."""
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
    closed, hooked, generic = [], [], []
    for layer in layers:
        dims = calls[id(layer.module)]  # input dimensions, one per call
        if layer.tied:  # a shared parameter: its full gradient sums every use
            generic.append(layer)
        elif layer.is_linear and dims == [2]:
            closed.append(layer)
        elif layer.is_tokenizer and dims and all(d == 2 for d in dims):
            hooked.append(layer)
        elif not layer.is_tokenizer and dims and all(d >= 2 if layer.is_linear else d == 4 for d in dims):
            hooked.append(layer)
        else:
            generic.append(layer)
    return Plan(tuple(closed), tuple(hooked), tuple(generic), int(logits.shape[1]))


def _conv_patches(module: nn.Conv2d, a: Tensor) -> Tensor:
    """Input patches of a ``Conv2d`` call, ``n x (C_in * kh * kw) x L``, laid out as ``F.unfold``'s.

    Built from a strided view of the padded input and one copy, which is several
    times faster than ``F.unfold`` on CPUs.
    """
    if isinstance(module.padding, str) or module.padding_mode != "zeros":
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        a = F.pad(a, module._reversed_padding_repeated_twice, mode=mode)
    elif any(module.padding):
        ph, pw = module.padding
        a = F.pad(a, (pw, pw, ph, ph))
    a = a.contiguous()
    n, c, h, w = a.shape
    (kh, kw), (dh, dw), (sh, sw) = module.kernel_size, module.dilation, module.stride
    ho, wo = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    s_n, s_c, s_h, s_w = a.stride()
    view = a.as_strided((n, c, kh, kw, ho, wo), (s_n, s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w))
    return view.reshape(n, c * kh * kw, ho * wo)


def _weight_gradient(layer: InfluenceLayer, a: Tensor, d: Tensor, out: Tensor, accumulate: bool) -> None:
    """Write (or add) the per-sample weight gradient of one call into ``out`` (``n x numel``)."""
    n = a.shape[0]
    module = layer.module
    if layer.is_tokenizer:  # output n x F x d = x[..., None] * W + b
        grads = a.unsqueeze(-1) * d  # n x F x d
        if accumulate:
            out.add_(grads.reshape(n, -1))
        else:
            out.copy_(grads.reshape(n, -1))
        return
    if layer.is_linear:
        patches = a.reshape(n, -1, a.shape[-1])  # n x S x d_in
        grads = d.reshape(n, -1, d.shape[-1]).transpose(1, 2)  # n x d_out x S
        target = out.view(n, module.out_features, module.in_features)
        if accumulate:
            target.baddbmm_(grads, patches)
        else:
            torch.bmm(grads, patches, out=target)
        return
    patches = _conv_patches(module, a)  # n x (C_in k k) x L
    grads = d.reshape(n, d.shape[1], -1)  # n x C_out x L
    g = module.groups
    if g == 1:
        target = out.view(n, grads.shape[1], patches.shape[1])
        if accumulate:
            target.baddbmm_(grads, patches.transpose(1, 2))
        else:
            torch.bmm(grads, patches.transpose(1, 2), out=target)
        return
    grouped = torch.einsum(
        "ngol,ngkl->ngok",
        grads.reshape(n, g, -1, grads.shape[-1]),
        patches.reshape(n, g, -1, patches.shape[-1]),
    ).reshape(n, -1)
    if accumulate:
        out.add_(grouped)
    else:
        out.copy_(grouped)


def batched_gradients(
    model: nn.Module,
    params: Mapping[str, Tensor],
    closed_form: Sequence[InfluenceLayer],
    hooked: Sequence[InfluenceLayer],
    x: Tensor,
    y: Tensor,
    *,
    out: Sequence[Tensor] | None = None,
) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor]]:
    """Closed-form factors and hooked per-sample gradients from one batched pass.

    Parameters
    ----------
    model : nn.Module
        Model in eval mode.
    params : mapping of str to Tensor
        Parameters and buffers to evaluate the model with (``functional_call``).
    closed_form : sequence of InfluenceLayer
        ``Linear`` layers, each called exactly once per forward pass on a 2-D input.
    hooked : sequence of InfluenceLayer
        ``Conv2d`` / ``Linear`` layers called as modules (any number of times).
    x : Tensor
        Inputs, ``n x ...``.
    y : Tensor
        Labels, ``(n,)`` int64.
    out : sequence of Tensor, optional
        Preallocated ``n x p_k`` blocks for the hooked parameters (in the order of
        their ``parameter_names``), reused across chunks.

    Returns
    -------
    factors : list of (Tensor, Tensor)
        ``(a, d)`` per closed-form layer: ``a`` is ``n x d_in`` with a column of
        ones appended when the bias is differentiated, ``d = dloss_i / d output_i``
        is ``n x d_out``.
    blocks : list of Tensor
        ``n x p_k`` per-sample gradients, one block per hooked parameter.
    """
    layers = list(closed_form) + list(hooked)
    if not layers:
        return [], []
    n = _n_samples(x)
    records: dict[int, list[tuple[Tensor, Tensor]]] = {id(layer.module): [] for layer in layers}

    def capture(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        records[id(module)].append((inputs[0].detach().clone(), output))
        # Downstream code receives a copy, so that in-place ops after this layer
        # (e.g. ReLU(inplace=True)) cannot change the tensor we differentiate by.
        return output.clone()

    wanted = {p for layer in layers for p in layer.parameter_names}
    call_params = {k: (v.detach().requires_grad_(True) if k in wanted else v) for k, v in params.items()}
    handles = [layer.module.register_forward_hook(capture) for layer in layers]
    try:
        with torch.enable_grad():
            loss = per_sample_loss(_forward(model, call_params, x), y).sum()
            outputs = [output for layer in layers for _, output in records[id(layer.module)]]
            grads = torch.autograd.grad(loss, outputs, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    grads_iter = iter(grads)
    per_layer = []
    for layer in layers:
        calls = [
            (a, torch.zeros_like(output) if g is None else g.detach())
            for (a, output), g in zip(records[id(layer.module)], grads_iter)
        ]
        per_layer.append(calls)

    factors = []
    for layer, calls in zip(closed_form, per_layer):
        (a, d), = calls
        if layer.has_bias:
            a = torch.cat([a, a.new_ones(n, 1)], dim=1)
        factors.append((a, d))

    if out is None:
        blocks = [params[p].new_empty((n, params[p].numel())) for layer in hooked for p in layer.parameter_names]
    else:
        blocks = list(out)
    k = 0
    for layer, calls in zip(hooked, per_layer[len(closed_form):]):
        weight_block = blocks[k]
        for c, (a, d) in enumerate(calls):
            _weight_gradient(layer, a, d, weight_block, accumulate=c > 0)
        k += 1
        if layer.has_bias:
            per_call = [
                d.reshape(n, -1) if layer.is_tokenizer
                else d.reshape(n, -1, d.shape[-1]).sum(1) if layer.is_linear
                else d.reshape(n, d.shape[1], -1).sum(-1)
                for _, d in calls
            ]
            blocks[k].copy_(torch.stack(per_call).sum(0))
            k += 1
    return factors, blocks


def flat_gradients(
    model: nn.Module,
    params: Mapping[str, Tensor],
    parameter_names: Sequence[str],
    x: Tensor,
    y: Tensor,
    *,
    vmap_chunk: int = 64,
    out: Sequence[Tensor] | None = None,
) -> list[Tensor]:
    """Materialised per-sample gradients with ``torch.func`` (any parameters).

    Parameters
    ----------
    model, params : as in :func:`batched_gradients`
    parameter_names : sequence of str
        Full names of the parameters to differentiate.
    x : Tensor
        Inputs, ``n x ...``.
    y : Tensor
        Labels, ``(n,)``.
    vmap_chunk : int
        Samples per vectorised call (bounds the memory of ``vmap``).
    out : sequence of Tensor, optional
        Preallocated ``n x p_k`` blocks to write into.

    Returns
    -------
    list of Tensor
        One ``n x p_k`` block per named parameter (``p_k`` its size), in the given order.
    """
    names = list(parameter_names)
    diff = {k: params[k] for k in names}
    rest = {k: v for k, v in params.items() if k not in diff}
    n = _n_samples(x)
    if out is None:
        out = [params[k].new_empty((n, params[k].numel())) for k in names]

    def loss_one(p: dict[str, Tensor], xi, yi: Tensor) -> Tensor:
        logits = functional_call(model, (rest, p), tuple(t.unsqueeze(0) for t in _as_args(xi)))
        return per_sample_loss(logits, yi.unsqueeze(0)).sum()

    per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))
    for start in range(0, n, vmap_chunk):
        stop = min(start + vmap_chunk, n)
        grads = per_sample(diff, _take(x, start, stop), y[start:stop])
        for k, block in zip(names, out):
            block[start:stop].copy_(grads[k].reshape(stop - start, -1))
    return list(out)
