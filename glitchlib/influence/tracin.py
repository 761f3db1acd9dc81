"""TracIn engine: exact, chunked, device-agnostic (SPEC.md section 3).

``I[i, j] = sum_t lr_t <g_t(z_i), g_t(z'_j)>`` and ``SI[i] = sum_t lr_t ||g_t(z_i)||^2``
where ``g_t(z)`` is the gradient of the per-sample cross-entropy at checkpoint ``t``
with respect to the influence parameters.

Work is streamed: the test set is split into blocks whose gradient factors (all
checkpoints) fit a memory budget (2 GiB), the training set into chunks (512 MiB of
gradients); each training sample's gradients are computed once per checkpoint and
test block, each test sample's once per checkpoint, and only a
``chunk x test block`` slice of the output is written at a time. Peak memory
beyond the returned matrix is roughly

    T * test_block * dims * itemsize  +  chunk_size * (p + T * f) * itemsize  +  3 * chunk_size**2 * itemsize

with ``T`` checkpoints, ``f`` the closed-form numbers per sample (``d_in + 1 + d_out``
per closed-form ``Linear`` layer), ``p`` the materialised ones (the parameter count
of the other influence layers) and ``dims = f + p``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .gradients import Factors, Plan, batched_gradients, flat_gradients, make_plan
from .kernels import Workspace, accumulate_cross, self_scores
from .layers import InfluenceLayer, resolve_layers
from .projection import GaussianProjector, IdentityProjector

_TEST_BYTES = 2 * 2**30  # budget for cached test-side factors (all checkpoints)
_TRAIN_BYTES = 512 * 2**20  # budget for one training chunk's factors (all checkpoints)
_BLOCK_BYTES = 128 * 2**20  # budget for one output block (and each scratch matrix)
_VMAP_CHUNK = 64  # samples per torch.func vmap call
_FORWARD_BATCH = 1024  # samples per batched forward/backward pass


def _ranges(n: int, size: int, offset: int = 0) -> list[tuple[int, int]]:
    return [(offset + start, offset + min(start + size, n)) for start in range(0, n, size)]


def _as_tensor(value: Any, name: str) -> Tensor:
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be a tensor or array, got {type(value).__name__}") from err


class TracIn:
    """TracIn influence of training samples, checkpoint by checkpoint (TracInCP).

    Parameters
    ----------
    model : nn.Module
        Any model returning logits ``n x C``; normally the trainable suffix of a
        ``GlitchModel`` applied to cached features, or a full model on raw inputs.
        It is deep-copied (moved to ``device`` and ``dtype``, put in eval mode);
        the caller's model is never modified.
    checkpoints : sequence of (state_dict, learning_rate)
        One pair per checkpoint ``t`` (``glitchlib.train.Checkpoint`` works). A state
        dict may hold only some entries; the others keep the values they have in
        ``model``. Keys are names relative to ``model``.
    layers : sequence of str, or None
        Influence layers, names relative to ``model``: a ``Linear``/``Conv2d``
        module, or a container standing for every ``Linear``/``Conv2d`` module
        inside it (unlike captum, which silently skips containers); ``""`` is the
        model itself; None means every ``Linear``/``Conv2d`` module. Their weights
        (and biases) are differentiated; normalisation layers are not.
    device : str or torch.device, optional
        Where all computation happens (default CPU). Results come back on the CPU.
    dtype : torch.dtype
        ``torch.float32`` (default) or ``torch.float64``; also the result's dtype.
    chunk_size : int, optional
        Training samples per chunk (default: chosen from a memory budget).
    test_chunk_size : int, optional
        Test samples per block whose gradients are kept for all checkpoints
        (default: all of them if they fit in 2 GiB). Training gradients are
        recomputed once per test block.
    projection_dim : int, optional
        If given, per-sample gradients are projected to this many numbers with a
        Gaussian random projection seeded by ``(seed, checkpoint index)``; the
        result is then an unbiased estimate. Default: exact (identity projector).
    seed : int
        Seed of the random projection.
    bias : bool
        Differentiate the biases of the influence layers (default). ``False``
        differentiates weights only, as captum's ``TracInCPFast`` does.
    progress : bool
        Show tqdm progress bars.

    Notes
    -----
    Gradients are exact per-sample gradients computed from batched passes, which
    relies on samples being independent in eval mode (no batch statistics).
    ``Linear`` layers applied once to 2-D inputs use the closed form
    ``<g_i, g_j> = (a_i . a_j + 1)(d_i . d_j)``; ``Conv2d`` layers (and ``Linear``
    layers on sequences) get materialised per-sample gradients from the same
    forward/backward hooks; layers whose module is never called fall back to
    ``torch.func`` (see ``glitchlib.influence.gradients``).
    """

    def __init__(
        self,
        model: nn.Module,
        checkpoints: Sequence[tuple[Mapping[str, Tensor], float]],
        layers: Sequence[str] | None,
        device: str | torch.device | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        chunk_size: int | None = None,
        test_chunk_size: int | None = None,
        projection_dim: int | None = None,
        seed: int = 0,
        bias: bool = True,
        progress: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        for name, value in (("chunk_size", chunk_size), ("test_chunk_size", test_chunk_size)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        self.device = torch.device(device if device is not None else "cpu")
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.test_chunk_size = test_chunk_size
        self.progress = progress
        self.bias = bias
        self.projector: IdentityProjector | GaussianProjector = (
            IdentityProjector() if projection_dim is None else GaussianProjector(projection_dim, seed)
        )

        self._model = copy.deepcopy(model).to(device=self.device, dtype=dtype).eval()
        self._model.requires_grad_(False)
        self._layers: list[InfluenceLayer] = resolve_layers(self._model, layers, bias=bias)
        base = {**dict(self._model.named_parameters()), **dict(self._model.named_buffers())}
        self._params, self._lrs = self._load_checkpoints(checkpoints, base)
        self._indices = list(range(len(self._params)))
        self._plans: dict[tuple, Plan] = {}
        self._workspace = Workspace()

    # ------------------------------------------------------------------ setup
    def _load_checkpoints(
        self, checkpoints: Sequence, base: dict[str, Tensor]
    ) -> tuple[list[dict[str, Tensor]], list[float]]:
        if isinstance(checkpoints, (str, bytes)) or not isinstance(checkpoints, Sequence):
            raise ValueError(
                "checkpoints must be a sequence of (state_dict, learning_rate) pairs, "
                f"got {type(checkpoints).__name__}"
            )
        if len(checkpoints) == 0:
            raise ValueError("checkpoints is empty; TracIn needs at least one (state_dict, learning_rate) pair")
        params, lrs = [], []
        for t, pair in enumerate(checkpoints):
            if not isinstance(pair, Sequence) or len(pair) != 2 or not isinstance(pair[0], Mapping):
                raise ValueError(f"checkpoints[{t}] must be a (state_dict, learning_rate) pair")
            state, lr = pair
            try:
                lr = float(lr)
            except (TypeError, ValueError) as err:
                raise ValueError(f"checkpoints[{t}] learning rate must be a number, got {lr!r}") from err
            if not math.isfinite(lr):
                raise ValueError(f"checkpoints[{t}] learning rate must be finite, got {lr}")
            unknown = [k for k in state if k not in base]
            if unknown:
                raise ValueError(
                    f"checkpoints[{t}] holds keys that are not in the model: {unknown[:5]}"
                    f"{' ...' if len(unknown) > 5 else ''}; state dict keys must be relative to `model` "
                    f"(e.g. {list(base)[:3]})"
                )
            loaded = dict(base)
            for key, value in state.items():
                value = torch.as_tensor(value)
                if tuple(value.shape) != tuple(base[key].shape):
                    raise ValueError(
                        f"checkpoints[{t}][{key!r}] has shape {tuple(value.shape)}, "
                        f"the model's is {tuple(base[key].shape)}"
                    )
                cast = self.dtype if value.is_floating_point() else value.dtype
                loaded[key] = value.detach().to(device=self.device, dtype=cast)
            params.append(loaded)
            lrs.append(lr)
        return params, lrs

    # ------------------------------------------------------------ properties
    @property
    def layers(self) -> list[str]:
        """Names of the differentiated ``Linear``/``Conv2d`` modules (containers expanded)."""
        return [layer.name for layer in self._layers]

    @property
    def learning_rates(self) -> list[float]:
        """``lr_t`` of the checkpoints in use."""
        return list(self._lrs)

    @property
    def n_checkpoints(self) -> int:
        return len(self._params)

    def __repr__(self) -> str:
        return (
            f"TracIn(layers={self.layers}, n_checkpoints={self.n_checkpoints}, device={self.device}, "
            f"dtype={self.dtype}, projector={self.projector!r})"
        )

    def last_checkpoint(self) -> "TracIn":
        """The same engine restricted to the last checkpoint (for counterfactual matrices).

        The model copy is shared, not copied again; a random projection keeps the
        last checkpoint's original stream, so its results match that checkpoint's
        term in the full engine.
        """
        clone = copy.copy(self)
        clone._params = self._params[-1:]
        clone._lrs = self._lrs[-1:]
        clone._indices = self._indices[-1:]
        clone._plans = dict(self._plans)
        clone._workspace = Workspace()
        return clone

    # ---------------------------------------------------------- validation
    def _inputs(self, x: Any, y: Any, x_name: str, y_name: str) -> tuple[Tensor, Tensor]:
        x = _as_tensor(x, x_name)
        y = _as_tensor(y, y_name)
        if x.dim() < 1:
            raise ValueError(f"{x_name} must have a leading sample dimension, got shape {tuple(x.shape)}")
        if y.dim() != 1:
            raise ValueError(f"{y_name} must be a 1-D tensor of class indices, got shape {tuple(y.shape)}")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"{y_name} must hold integer class indices, got dtype {y.dtype}")
        if len(x) != len(y):
            raise ValueError(f"{x_name} has {len(x)} samples but {y_name} has {len(y)} labels")
        return x, y.long()

    def _plan(self, x: Tensor) -> Plan:
        key = (tuple(x.shape[1:]), x.dtype)
        if key not in self._plans:
            probe = self._to_device(x[:2])
            self._plans[key] = make_plan(self._model, self._params[0], self._layers, probe)
        return self._plans[key]

    @staticmethod
    def _check_labels(y: Tensor, plan: Plan, name: str) -> None:
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= plan.n_classes):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise ValueError(
                f"{name} holds label {bad}, outside [0, {plan.n_classes}): the model has "
                f"{plan.n_classes} outputs"
            )

    def _to_device(self, x: Tensor) -> Tensor:
        cast = self.dtype if x.is_floating_point() else x.dtype
        return x.to(device=self.device, dtype=cast)

    # ------------------------------------------------------------- factors
    def _raw_dims(self, plan: Plan) -> tuple[int, int, int]:
        """Numbers per sample and checkpoint: flat blocks, closed-form factors, closed-form materialised."""
        params = dict(self._model.named_parameters())
        flat = sum(params[p].numel() for p in plan.flat_parameters)
        shapes = [
            (layer.module.in_features + int(layer.has_bias), layer.module.out_features) for layer in plan.closed_form
        ]
        return flat, sum(i + o for i, o in shapes), sum(i * o for i, o in shapes)

    def _chunk_sizes(self, plan: Plan, m: int) -> tuple[int, int]:
        """Training chunk and test block sizes from the memory budgets (unless given).

        Test factors are kept for every checkpoint; a training chunk keeps the
        closed-form factors of every checkpoint but only one checkpoint's flat
        blocks at a time (or, with a projection, one materialised gradient).
        """
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        flat, factored, materialised = self._raw_dims(plan)
        t = self.n_checkpoints
        if self.projector.dim is None:
            per_test = t * (flat + factored) * itemsize
            per_train = (flat + t * factored) * itemsize
        else:
            per_test = t * self.projector.dim * itemsize
            per_train = (2 * (flat + materialised) + t * self.projector.dim) * itemsize
        test = min(self.test_chunk_size or max(1, _TEST_BYTES // max(per_test, 1)), max(m, 1))
        train = self.chunk_size or int(
            max(16, min(4096, _TRAIN_BYTES // max(per_train, 1), _BLOCK_BYTES // (test * itemsize)))
        )
        return train, test

    def _buffers(self, plan: Plan, rows: int) -> list[Tensor] | None:
        """Flat gradient blocks for ``rows`` samples, reused across checkpoints and training chunks.

        None when there is nothing to materialise, or when a projection replaces
        the blocks by projected copies anyway.
        """
        if not plan.flat_parameters or self.projector.dim is not None:
            return None
        params = self._params[0]
        return [torch.empty((rows, params[k].numel()), dtype=self.dtype, device=self.device)
                for k in plan.flat_parameters]

    def _factors_at(
        self, plan: Plan, x: Tensor, y: Tensor, t: int, buffers: list[Tensor] | None = None
    ) -> Factors:
        """Factors of samples ``x`` (on the device) at checkpoint ``t``, in forward batches."""
        params, n = self._params[t], len(x)
        n_hooked = sum(len(layer.parameter_names) for layer in plan.hooked)
        if buffers is None and plan.flat_parameters:
            buffers = [params[k].new_empty((n, params[k].numel())) for k in plan.flat_parameters]
        linear_parts = []
        for a, b in _ranges(n, _FORWARD_BATCH):
            out = None if buffers is None else [block[a:b] for block in buffers]
            linear, _ = batched_gradients(
                self._model, params, plan.closed_form, plan.hooked, x[a:b], y[a:b],
                out=None if out is None else out[:n_hooked],
            )
            if plan.generic:
                flat_gradients(
                    self._model, params, plan.generic_parameters, x[a:b], y[a:b], vmap_chunk=_VMAP_CHUNK,
                    out=out[n_hooked:],
                )
            linear_parts.append(linear)
        linear = [
            (torch.cat([part[k][0] for part in linear_parts]), torch.cat([part[k][1] for part in linear_parts]))
            for k in range(len(plan.closed_form))
        ]
        flat = [] if buffers is None else [block[:n] for block in buffers]
        return self.projector.project(Factors(linear, flat), self._indices[t])

    def _factors(self, plan: Plan, x: Tensor, y: Tensor) -> list[Factors]:
        """Factors of samples ``x`` at every checkpoint (input activations shared when equal)."""
        x, y = self._to_device(x), y.to(self.device)
        return _share_activations([self._factors_at(plan, x, y, t) for t in range(self.n_checkpoints)])

    def _chunk(
        self,
        plan: Plan,
        x: Tensor,
        y: Tensor,
        buffers: list[Tensor] | None,
        block: Tensor | None,
        test: list[tuple[int, int, list[Factors]]],
        self_inf: Tensor | None,
    ) -> None:
        """Add one training chunk's influence to ``block`` and its self-influence to ``self_inf``.

        Flat gradient blocks are used checkpoint by checkpoint (one buffer); the
        closed-form factors of all checkpoints are combined at the end, so that
        shared activations are multiplied once.
        """
        x, y = self._to_device(x), y.to(self.device)
        linear = []
        for t, lr in enumerate(self._lrs):
            factors = self._factors_at(plan, x, y, t, buffers)
            flat = Factors([], factors.flat)
            if factors.flat:
                if block is not None:
                    for a, c, test_factors in test:
                        accumulate_cross(block[:, a:c], [flat], [Factors([], test_factors[t].flat)], [lr],
                                         self._workspace)
                if self_inf is not None:
                    self_inf += self_scores([flat], [lr])
            linear.append(Factors(factors.linear, []))
        if linear[0].linear:
            linear = _share_activations(linear)
            if block is not None:
                for a, c, test_factors in test:
                    accumulate_cross(block[:, a:c], linear, [Factors(f.linear, []) for f in test_factors],
                                     self._lrs, self._workspace)
            if self_inf is not None:
                self_inf += self_scores(linear, self._lrs)

    # ------------------------------------------------------------- public API
    def self_influence(self, x: Any, y: Any) -> Tensor:
        """Self-influence ``SI[i] = sum_t lr_t ||g_t(z_i)||^2`` (SPEC.md section 3).

        Parameters
        ----------
        x : Tensor
            Inputs ``n x ...`` (features or images, as ``model`` expects).
        y : Tensor
            Labels ``(n,)``, integers in ``[0, C)``.

        Returns
        -------
        Tensor
            ``(n,)`` on the CPU, dtype of the engine; larger means the sample is
            harder to fit (more suspicious).
        """
        x, y = self._inputs(x, y, "x", "y")
        out = torch.zeros(len(x), dtype=self.dtype)
        if len(x) == 0:
            return out
        plan = self._plan(x)
        self._check_labels(y, plan, "y")
        size, _ = self._chunk_sizes(plan, 1)
        buffers = self._buffers(plan, min(size, len(x)))
        for start, stop in tqdm(_ranges(len(x), size), desc="TracIn self-influence", disable=not self.progress):
            scores = torch.zeros(stop - start, dtype=self.dtype, device=self.device)
            self._chunk(plan, x[start:stop], y[start:stop], buffers, None, [], scores)
            out[start:stop] = scores.to("cpu")
        return out

    def train_test(self, x_train: Any, y_train: Any, x_test: Any, y_test: Any) -> Tensor:
        """Train-to-test influence ``I[i, j] = sum_t lr_t <g_t(z_i), g_t(z'_j)>`` (SPEC.md section 3).

        Parameters
        ----------
        x_train : Tensor
            Training inputs ``n x ...``.
        y_train : Tensor
            Training labels ``(n,)`` (as given, possibly noisy, or counterfactual).
        x_test : Tensor
            Test (validation) inputs ``m x ...``, same sample shape as ``x_train``.
        y_test : Tensor
            Test labels ``(m,)``.

        Returns
        -------
        Tensor
            ``n x m`` on the CPU, dtype of the engine. Positive ``I[i, j]`` means
            training sample ``i`` lowered the loss of test sample ``j``.
        """
        return self._train_test(x_train, y_train, x_test, y_test, with_self=False)[0]

    def train_test_and_self_influence(
        self, x_train: Any, y_train: Any, x_test: Any, y_test: Any
    ) -> tuple[Tensor, Tensor]:
        """``train_test(...)`` and ``self_influence(x_train, y_train)`` in one pass.

        Self-influence comes from the training gradients the matrix needs anyway,
        so this costs about as much as ``train_test`` alone. Arguments as in
        :meth:`train_test`.

        Returns
        -------
        (Tensor, Tensor)
            The ``n x m`` matrix ``I`` and the ``(n,)`` vector ``SI``, on the CPU.
        """
        return self._train_test(x_train, y_train, x_test, y_test, with_self=True)

    def _train_test(
        self, x_train: Any, y_train: Any, x_test: Any, y_test: Any, *, with_self: bool
    ) -> tuple[Tensor, Tensor | None]:
        x_train, y_train = self._inputs(x_train, y_train, "x_train", "y_train")
        x_test, y_test = self._inputs(x_test, y_test, "x_test", "y_test")
        if x_train.shape[1:] != x_test.shape[1:]:
            raise ValueError(
                f"x_train samples have shape {tuple(x_train.shape[1:])} but x_test samples have shape "
                f"{tuple(x_test.shape[1:])}; both must be inputs of the same model"
            )
        n, m = len(x_train), len(x_test)
        out = torch.zeros(n, m, dtype=self.dtype)
        self_inf = torch.zeros(n, dtype=self.dtype) if with_self else None
        if n == 0:
            return out, self_inf
        plan = self._plan(x_train)
        self._check_labels(y_train, plan, "y_train")
        self._check_labels(y_test, plan, "y_test")
        if m == 0:
            return out, (self.self_influence(x_train, y_train) if with_self else None)
        train_size, test_size = self._chunk_sizes(plan, m)
        train_ranges = _ranges(n, train_size)
        buffers = self._buffers(plan, min(train_size, n))
        blocks = _ranges(m, test_size)
        on_cpu = self.device.type == "cpu"
        with tqdm(total=len(train_ranges) * len(blocks), desc="TracIn train-test", disable=not self.progress) as bar:
            for b, (j0, j1) in enumerate(blocks):
                # the test block's factors, kept for all checkpoints, in chunks (no concatenation)
                test = [
                    (a - j0, c - j0, self._factors(plan, x_test[a:c], y_test[a:c]))
                    for a, c in _ranges(j1 - j0, train_size, offset=j0)
                ]
                for i0, i1 in train_ranges:
                    block = (
                        out[i0:i1, j0:j1]
                        if on_cpu
                        else torch.zeros(i1 - i0, j1 - j0, dtype=self.dtype, device=self.device)
                    )
                    scores = None
                    if self_inf is not None and b == 0:
                        scores = torch.zeros(i1 - i0, dtype=self.dtype, device=self.device)
                    self._chunk(plan, x_train[i0:i1], y_train[i0:i1], buffers, block, test, scores)
                    if scores is not None:
                        self_inf[i0:i1] = scores.to("cpu")
                    if not on_cpu:
                        out[i0:i1, j0:j1].copy_(block)
                    bar.update()
        return out, self_inf


def _share_activations(factors: list[Factors]) -> list[Factors]:
    """Make equal input activations of a closed-form layer the same tensor across checkpoints."""
    first = factors[0]
    for f in factors[1:]:
        for k, (a, d) in enumerate(f.linear):
            a0 = first.linear[k][0]
            if a is not a0 and a.shape == a0.shape and torch.equal(a, a0):
                f.linear[k] = (a0, d)
    return factors
