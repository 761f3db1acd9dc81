"""Koh and Liang's influence function with the exact Hessian, for small models (SPEC.md section 9.8).

Koh and Liang (ICML 2017, "Understanding black-box predictions via influence
functions") estimate how the loss of a test sample ``z'`` changes when a training
sample ``z`` is up-weighted by ``eps``:
``I_up,loss(z, z') = -grad L(z')^T H^{-1} grad L(z)``, with ``H`` the Hessian of
the mean training loss at the trained weights. Removing ``z`` is up-weighting it
by ``-1/n``, so ``loss(z'; without z) - loss(z'; all) ~ -I_up,loss(z, z') / n``.

:class:`InfluenceFunction` returns ``-I_up,loss`` with a damped Hessian::

    IF[i, j] = grad L(z'_j)^T (H + damping * Id)^{-1} grad L(z_i)

so that its sign means what TracIn's does: positive when training sample ``i``
lowers the loss of test sample ``j``. The Hessian is exact (``torch.func``:
``jacrev`` of ``grad`` of the mean cross-entropy over the influence parameters),
and the solve is a Cholesky solve, so the cost grows with the square (memory)
and cube (time) of the number of influence parameters; above
:data:`MAX_PARAMETERS` the constructor refuses.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jacrev, vmap

from .. import _validation
from ._gradients import per_sample_loss
from ._layers import resolve_layers

__all__ = ["InfluenceFunction", "MAX_PARAMETERS"]

#: Largest number of influence parameters for which the exact Hessian is built
#: (4,096 parameters: a 128 MiB float64 Hessian and a Cholesky solve of seconds).
MAX_PARAMETERS = 4096

_VMAP_CHUNK = 256  # samples (or Hessian rows) per torch.func vmap call


class InfluenceFunction:
    """Influence-function estimate of training samples on test losses (Koh and Liang, 2017).

    Parameters
    ----------
    model : nn.Module
        Any model returning logits ``n x C`` (e.g. a ``GlitchModel`` suffix on
        cached features). It is deep-copied, cast to ``dtype`` and put in eval
        mode; the caller's model is never modified.
    checkpoint : (state_dict, learning_rate) pair, or a state dict
        The weights at which gradients and the Hessian are taken, normally the
        last ``glitchlib.train.Checkpoint``. The learning rate, if given, is not
        used. Keys are names relative to ``model``; missing entries keep the
        values they have in ``model``.
    layers : sequence of str, or None
        Influence layers, as for :class:`~glitchlib.influence.TracIn`: a
        ``Linear``/``Conv2d`` module, a container standing for every such module
        inside it, ``""`` for the model itself, None for every such module.
    damping : float
        ``lambda >= 0`` added to the Hessian's diagonal (default 0.001).
    dtype : torch.dtype
        ``torch.float64`` (default) or ``torch.float32``; also the result's dtype.
    device : str or torch.device, optional
        Where the computation happens (default CPU): ``"cpu"``, ``"cuda"``,
        ``"cuda:<index>"`` or ``"mps"``, one this machine has (otherwise
        ``ValueError``); results come back on the CPU.
    max_parameters : int
        Refuse models with more influence parameters than this (default
        :data:`MAX_PARAMETERS`).

    Raises
    ------
    ValueError
        Bad arguments, unknown layer names, or more influence parameters than
        ``max_parameters`` (the message gives the count).

    Notes
    -----
    The Hessian ``H`` is that of the mean cross-entropy over the training set
    passed to :meth:`train_test`, with respect to the influence parameters only
    (the other weights are held fixed). For a non-convex model ``H`` may have
    negative eigenvalues; when ``H + damping * Id`` is then not positive definite,
    :meth:`train_test` raises ``ValueError`` with the smallest eigenvalue.
    """

    def __init__(
        self,
        model: nn.Module,
        checkpoint: Any,
        *,
        layers: Sequence[str] | None,
        damping: float = 0.001,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
        max_parameters: int = MAX_PARAMETERS,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        try:
            damping = float(damping)
        except (TypeError, ValueError) as err:
            raise ValueError(f"damping must be a non-negative number, got {damping!r}") from err
        if not damping >= 0:
            raise ValueError(f"damping must be a non-negative number, got {damping!r}")
        self.damping = damping
        self.dtype = dtype
        self.device = _validation.as_device(device, optional=True)
        self._model = copy.deepcopy(model).to(device=self.device, dtype=dtype).eval()
        self._model.requires_grad_(False)
        self._layers = resolve_layers(self._model, layers=layers)
        self._state = self._load(checkpoint)
        self._names = [p for layer in self._layers for p in layer.parameter_names]
        self._shapes = [self._state[p].shape for p in self._names]
        self.n_parameters = sum(self._state[p].numel() for p in self._names)
        if self.n_parameters > max_parameters:
            raise ValueError(
                f"the influence layers {self.layers} hold {self.n_parameters} parameters, more than "
                f"max_parameters={max_parameters}: the exact Hessian would be {self.n_parameters} x "
                f"{self.n_parameters}; choose fewer layers (e.g. the head) or a smaller model"
            )

    def _load(self, checkpoint: Any) -> dict[str, Tensor]:
        if isinstance(checkpoint, Sequence) and len(checkpoint) == 2 and isinstance(checkpoint[0], Mapping):
            checkpoint = checkpoint[0]
        if not isinstance(checkpoint, Mapping):
            raise ValueError(
                "checkpoint must be a (state_dict, learning_rate) pair or a state dict, "
                f"got {type(checkpoint).__name__}"
            )
        state = {**dict(self._model.named_parameters()), **dict(self._model.named_buffers())}
        unknown = [k for k in checkpoint if k not in state]
        if unknown:
            raise ValueError(f"checkpoint holds keys that are not in the model: {unknown[:5]}; keys must be "
                             f"relative to `model` (e.g. {list(state)[:3]})")
        for key, value in checkpoint.items():
            value = torch.as_tensor(value)
            if tuple(value.shape) != tuple(state[key].shape):
                raise ValueError(f"checkpoint[{key!r}] has shape {tuple(value.shape)}, the model's is "
                                 f"{tuple(state[key].shape)}")
            cast = self.dtype if value.is_floating_point() else value.dtype
            state[key] = value.detach().to(device=self.device, dtype=cast)
        return state

    @property
    def layers(self) -> list[str]:
        """Names of the differentiated ``Linear``/``Conv2d`` modules (containers expanded)."""
        return [layer.name for layer in self._layers]

    def __repr__(self) -> str:
        return (f"InfluenceFunction(layers={self.layers}, n_parameters={self.n_parameters}, "
                f"damping={self.damping}, dtype={self.dtype})")

    # ------------------------------------------------------------ internals
    def _theta(self) -> Tensor:
        return torch.cat([self._state[p].reshape(-1) for p in self._names])

    def _loss(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """Per-sample cross-entropy ``(n,)`` with the influence parameters set to ``theta``."""
        params, start = dict(self._state), 0
        for name, shape in zip(self._names, self._shapes):
            size = shape.numel()
            params[name] = theta[start:start + size].view(shape)
            start += size
        return per_sample_loss(functional_call(self._model, params, (x,)), y)

    def _inputs(self, x: Any, y: Any, x_name: str, y_name: str) -> tuple[Tensor, Tensor]:
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        if y.dim() != 1 or y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError(f"{y_name} must be a 1-D tensor of integer class indices, got {y.dtype} "
                             f"of shape {tuple(y.shape)}")
        if x.dim() < 1 or len(x) != len(y):
            raise ValueError(f"{x_name} ({tuple(x.shape)}) and {y_name} ({len(y)}) need the same number of samples")
        cast = self.dtype if x.is_floating_point() else x.dtype
        x, y = x.to(device=self.device, dtype=cast), y.to(self.device).long()
        if len(y):
            with torch.no_grad():
                n_classes = functional_call(self._model, self._state, (x[:1],)).shape[-1]
            if int(y.min()) < 0 or int(y.max()) >= n_classes:
                raise ValueError(f"{y_name} holds labels outside [0, {n_classes}): the model has {n_classes} outputs")
        return x, y

    # ------------------------------------------------------------ public API
    def per_sample_gradients(self, x: Any, y: Any) -> Tensor:
        """``grad L(z)`` of every sample: ``n x p`` (``p`` = :attr:`n_parameters`), on the CPU.

        Parameters are flattened layer by layer, weight then bias.
        """
        return self._gradients(*self._inputs(x, y, "x", "y")).cpu()

    def hessian(self, x_train: Any, y_train: Any) -> Tensor:
        """Exact Hessian ``p x p`` of the mean training cross-entropy over the influence parameters, on the CPU."""
        return self._hessian(*self._inputs(x_train, y_train, "x_train", "y_train")).cpu()

    def _gradients(self, x: Tensor, y: Tensor) -> Tensor:
        def one(theta: Tensor, xi: Tensor, yi: Tensor) -> Tensor:
            return self._loss(theta, xi[None], yi[None])[0]

        if len(x) == 0:
            return torch.zeros(0, self.n_parameters, dtype=self.dtype, device=self.device)
        return vmap(grad(one), in_dims=(None, 0, 0), chunk_size=_VMAP_CHUNK)(self._theta(), x, y)

    def _hessian(self, x: Tensor, y: Tensor) -> Tensor:
        if len(x) == 0:
            raise ValueError("x_train is empty; the Hessian of the training loss needs training samples")

        def mean_loss(theta: Tensor) -> Tensor:
            return self._loss(theta, x, y).mean()

        return jacrev(grad(mean_loss), chunk_size=_VMAP_CHUNK)(self._theta())

    def train_test(self, x_train: Any, y_train: Any, x_test: Any, y_test: Any) -> Tensor:
        """``IF[i, j] = grad L(z'_j)^T (H + damping Id)^{-1} grad L(z_i)`` (SPEC.md section 9.8).

        Parameters
        ----------
        x_train : Tensor
            Training inputs ``n x ...``; ``H`` is the Hessian of their mean loss.
        y_train : Tensor
            Training labels ``(n,)``.
        x_test : Tensor
            Test (validation) inputs ``m x ...``.
        y_test : Tensor
            Test labels ``(m,)``.

        Returns
        -------
        Tensor
            ``n x m`` on the CPU. Positive ``IF[i, j]`` means training sample ``i``
            lowers the loss of test sample ``j`` (the negative of Koh and Liang's
            ``I_up,loss``, TracIn's sign); ``IF[i, j] / n`` estimates the change of
            test loss ``j`` when sample ``i`` is left out.

        Raises
        ------
        ValueError
            Inconsistent inputs, or ``H + damping Id`` not positive definite.
        """
        x_train, y_train = self._inputs(x_train, y_train, "x_train", "y_train")
        x_test, y_test = self._inputs(x_test, y_test, "x_test", "y_test")
        if x_train.shape[1:] != x_test.shape[1:]:
            raise ValueError(f"x_train samples have shape {tuple(x_train.shape[1:])} but x_test samples have shape "
                             f"{tuple(x_test.shape[1:])}; both must be inputs of the same model")
        h = self._hessian(x_train, y_train)
        damped = h + self.damping * torch.eye(len(h), dtype=h.dtype, device=h.device)
        factor, info = torch.linalg.cholesky_ex(damped)
        if int(info) != 0:
            smallest = float(torch.linalg.eigvalsh(h)[0])
            raise ValueError(
                f"H + damping * Id is not positive definite (the Hessian's smallest eigenvalue is "
                f"{smallest:.3g}, damping={self.damping}); use damping > {max(-smallest, 0.0):.3g}"
            )
        g_train, g_test = self._gradients(x_train, y_train), self._gradients(x_test, y_test)
        return (g_train @ torch.cholesky_solve(g_test.T.contiguous(), factor)).cpu()
