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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import _validation
from ._gradients import Factors, Plan, _as_args, _n_samples, _take, batched_gradients, flat_gradients, make_plan
from ._kernels import Workspace, accumulate_cross, self_scores
from ._layers import InfluenceLayer, _parameter_aliases, resolve_layers
from ._projection import GaussianProjector, IdentityProjector

__all__ = ["TracIn"]

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
        A model with several inputs is called as ``model(*x)`` with ``x`` a tuple.
        ``nn.DataParallel``/``DistributedDataParallel`` and ``torch.compile``
        wrappers are unwrapped (layer names and state-dict keys may keep their
        ``module.``/``_orig_mod.`` prefix); a TorchScript module is refused.
        Tied parameters (``b.weight = a.weight``) count once, with their full
        gradient (the sum over every use). It is deep-copied (moved to ``device``
        and ``dtype``, put in eval mode); the caller's model is never modified.
    checkpoints : sequence of (state_dict, learning_rate)
        One pair per checkpoint ``t`` (``glitchlib.train.Checkpoint`` works). A state
        dict may hold only some entries; the others keep the values they have in
        ``model``. Keys are names relative to ``model`` (``model.state_dict()``
        works, tied names included; a ``module.`` or ``_orig_mod.`` prefix on every
        key is removed). Values are finite tensors; the learning rate a finite
        number > 0 of any numeric type.

    layers : sequence of str, or None
        Influence layers, names relative to ``model``: a ``Linear``/``Conv2d``
        module, or a container standing for every ``Linear``/``Conv2d`` module
        inside it (unlike captum, which silently skips containers); ``""`` is the
        model itself; None means every ``Linear``/``Conv2d`` module. Their weights
        (and biases) are differentiated; normalisation layers are not.
    device : str or torch.device, optional
        Where all computation happens (default CPU): ``"cpu"``, ``"cuda"``,
        ``"cuda:<index>"`` or ``"mps"``, one this machine has (otherwise
        ``ValueError``). Results come back on the CPU.
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

    Raises
    ------
    ValueError
        At construction: a model that is not an ``nn.Module`` (or is TorchScript),
        unknown layer names, state-dict keys not in the model or of the wrong
        shape, tied names with different values, NaN or infinite weights, a
        learning rate that is not a finite positive number, bad options. The
        message names the argument.

    Notes
    -----
    Gradients are exact per-sample gradients computed from batched passes, which
    relies on samples being independent in eval mode (no batch statistics).
    ``Linear`` layers applied once to 2-D inputs use the closed form
    ``<g_i, g_j> = (a_i . a_j + 1)(d_i . d_j)``; ``Conv2d`` layers (and ``Linear``
    layers on sequences) get materialised per-sample gradients from the same
    forward/backward hooks; layers whose module is never called fall back to
    ``torch.func`` (see ``glitchlib.influence._gradients``).
    """

    def __init__(
        self,
        model: nn.Module,
        checkpoints: Sequence[tuple[Mapping[str, Tensor], float]],
        *,
        layers: Sequence[str] | None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        chunk_size: int | None = None,
        test_chunk_size: int | None = None,
        projection_dim: int | None = None,
        seed: int = 0,
        bias: bool = True,
        progress: bool = True,
    ) -> None:
        model, prefix = _unwrap_model(model)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        chunk_size = _validation.as_int(chunk_size, "chunk_size", low=1, optional=True)
        test_chunk_size = _validation.as_int(test_chunk_size, "test_chunk_size", low=1, optional=True)
        projection_dim = _validation.as_int(projection_dim, "projection_dim", low=1, optional=True)
        seed = _validation.as_seed(seed)
        bias = _validation.as_bool(bias, "bias")
        progress = _validation.as_bool(progress, "progress")
        if layers is not None and not isinstance(layers, str) and prefix:
            layers = [_strip_prefix(name, (prefix,)) if isinstance(name, str) else name for name in layers]
        self.device = _validation.as_device(device, optional=True)
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.test_chunk_size = test_chunk_size
        self.progress = progress
        self.bias = bias
        self.projector: IdentityProjector | GaussianProjector = (
            IdentityProjector() if projection_dim is None else GaussianProjector(dim=projection_dim, seed=seed)
        )

        self._model = copy.deepcopy(model).to(device=self.device, dtype=dtype).eval()
        self._model.requires_grad_(False)
        self._layers: list[InfluenceLayer] = resolve_layers(self._model, layers=layers, bias=bias)
        base = {**dict(self._model.named_parameters()), **dict(self._model.named_buffers())}
        self._aliases = _parameter_aliases(self._model)
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
            lr = _validation.as_positive(lr, f"checkpoints[{t}] learning rate")
            state = self._canonical_state(state, t)
            loaded = dict(base)
            for key, value in state.items():
                if not isinstance(value, Tensor):
                    raise ValueError(f"checkpoints[{t}][{key!r}] must be a tensor, got {type(value).__name__}")
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise ValueError(f"checkpoints[{t}][{key!r}] contains NaN or infinite values; "
                                     "pass the weights of a model that trained without diverging")
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

    def _canonical_state(self, state: Mapping[str, Tensor], t: int) -> dict[str, Tensor]:
        """``state`` with wrapper prefixes removed and tied names mapped to their canonical name."""
        keys = list(state)
        aliases = self._aliases
        if keys and not any(k in aliases for k in keys):
            for prefix in _WRAPPER_PREFIXES:
                stripped = [_strip_prefix(k, (prefix,)) for k in keys]
                if all(k.startswith(prefix + ".") for k in keys) and any(k in aliases for k in stripped):
                    state = dict(zip(stripped, state.values()))
                    keys = stripped
                    break
        unknown = [k for k in keys if k not in aliases]
        if unknown:
            raise ValueError(
                f"checkpoints[{t}] holds keys that are not in the model: {unknown[:5]}"
                f"{' ...' if len(unknown) > 5 else ''}; state dict keys must be relative to `model` "
                f"(e.g. {list(aliases)[:3]})"
            )
        out: dict[str, Tensor] = {}
        names: dict[str, str] = {}
        for key, value in state.items():
            if isinstance(value, np.ndarray):  # a state dict saved as NumPy arrays
                value = torch.from_numpy(value)
            canonical = aliases[key]
            if canonical in out:
                if not (isinstance(value, Tensor) and value.shape == out[canonical].shape
                        and torch.equal(value.to(out[canonical].device), out[canonical])):
                    raise ValueError(
                        f"checkpoints[{t}] gives the tied parameters {names[canonical]!r} and {key!r} "
                        "different values; they are one tensor in the model"
                    )
                continue
            out[canonical], names[canonical] = value, key
        return out

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
    def _inputs(self, x: Any, y: Any, x_name: str, y_name: str) -> tuple[Any, Tensor]:
        if isinstance(x, (tuple, list)):  # a model with several inputs: model(*x)
            if len(x) == 0:
                raise ValueError(f"{x_name} is an empty tuple; pass the model's input tensors")
            x = tuple(_as_tensor(t, f"{x_name}[{k}]") for k, t in enumerate(x))
            names = [f"{x_name}[{k}]" for k in range(len(x))]
        else:
            x = _as_tensor(x, x_name)
            names = [x_name]
        y = _as_tensor(y, y_name)
        for name, t in zip(names, _as_args(x)):
            if t.dim() < 1:
                raise ValueError(f"{name} must have a leading sample dimension, got shape {tuple(t.shape)}")
        sizes = {len(t) for t in _as_args(x)}
        if len(sizes) > 1:
            shown = ", ".join(f"{name}: {len(t)}" for name, t in zip(names, _as_args(x)))
            raise ValueError(f"the tensors of {x_name} must share their first (sample) dimension; got {shown}")
        if y.dim() != 1:
            raise ValueError(f"{y_name} must be a 1-D tensor of class indices, got shape {tuple(y.shape)}")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"{y_name} must hold integer class indices, got dtype {y.dtype}")
        if _n_samples(x) != len(y):
            raise ValueError(f"{x_name} has {_n_samples(x)} samples but {y_name} has {len(y)} labels")
        return x, y.long()

    @staticmethod
    def _sample_shape(x: Any) -> tuple:
        return tuple((tuple(t.shape[1:]), t.dtype) for t in _as_args(x)) if isinstance(x, tuple) \
            else (tuple(x.shape[1:]), x.dtype)

    def _plan(self, x: Any) -> Plan:
        key = self._sample_shape(x)
        if key not in self._plans:
            probe = self._to_device(_take(x, 0, 2))
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

    def _to_device(self, x: Any) -> Any:
        if isinstance(x, tuple):
            return tuple(self._to_device(t) for t in x)
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
        params, n = self._params[t], _n_samples(x)
        n_hooked = sum(len(layer.parameter_names) for layer in plan.hooked)
        if buffers is None and plan.flat_parameters:
            buffers = [params[k].new_empty((n, params[k].numel())) for k in plan.flat_parameters]
        linear_parts = []
        for a, b in _ranges(n, _FORWARD_BATCH):
            out = None if buffers is None else [block[a:b] for block in buffers]
            linear, _ = batched_gradients(
                self._model, params, plan.closed_form, plan.hooked, _take(x, a, b), y[a:b],
                out=None if out is None else out[:n_hooked],
            )
            if plan.generic:
                flat_gradients(
                    self._model, params, plan.generic_parameters, _take(x, a, b), y[a:b], vmap_chunk=_VMAP_CHUNK,
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
                                         workspace=self._workspace)
                if self_inf is not None:
                    self_inf += self_scores([flat], [lr])
            linear.append(Factors(factors.linear, []))
        if linear[0].linear:
            linear = _share_activations(linear)
            if block is not None:
                for a, c, test_factors in test:
                    accumulate_cross(block[:, a:c], linear, [Factors(f.linear, []) for f in test_factors],
                                     self._lrs, workspace=self._workspace)
            if self_inf is not None:
                self_inf += self_scores(linear, self._lrs)

    # ------------------------------------------------------------- public API
    def self_influence(self, x: Any, y: Any) -> Tensor:
        """Self-influence ``SI[i] = sum_t lr_t ||g_t(z_i)||^2`` (SPEC.md section 3).

        Parameters
        ----------
        x : Tensor or tuple of Tensor
            Inputs ``n x ...`` (features or images, as ``model`` expects); a tuple
            of tensors sharing their first dimension for a model with several inputs.
        y : Tensor
            Labels ``(n,)``, integers in ``[0, C)``.

        Returns
        -------
        Tensor
            ``(n,)`` on the CPU, dtype of the engine; larger means the sample is
            harder to fit (more suspicious).
        """
        x, y = self._inputs(x, y, "x", "y")
        n = _n_samples(x)
        out = torch.zeros(n, dtype=self.dtype)
        if n == 0:
            return out
        plan = self._plan(x)
        self._check_labels(y, plan, "y")
        size, _ = self._chunk_sizes(plan, 1)
        buffers = self._buffers(plan, min(size, n))
        for start, stop in tqdm(_ranges(n, size), desc="TracIn self-influence", disable=not self.progress):
            scores = torch.zeros(stop - start, dtype=self.dtype, device=self.device)
            self._chunk(plan, _take(x, start, stop), y[start:stop], buffers, None, [], scores)
            out[start:stop] = scores.to("cpu")
        return out

    def train_test(self, x_train: Any, y_train: Any, x_test: Any, y_test: Any) -> Tensor:
        """Train-to-test influence ``I[i, j] = sum_t lr_t <g_t(z_i), g_t(z'_j)>`` (SPEC.md section 3).

        Parameters
        ----------
        x_train : Tensor or tuple of Tensor
            Training inputs ``n x ...`` (a tuple for a model with several inputs).
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
        shapes = [[tuple(t.shape[1:]) for t in _as_args(x)] for x in (x_train, x_test)]
        if shapes[0] != shapes[1] or isinstance(x_train, tuple) != isinstance(x_test, tuple):
            raise ValueError(
                f"x_train samples have shape {shapes[0]} but x_test samples have shape "
                f"{shapes[1]}; both must be inputs of the same model"
            )
        n, m = _n_samples(x_train), _n_samples(x_test)
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
                    (a - j0, c - j0, self._factors(plan, _take(x_test, a, c), y_test[a:c]))
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
                    self._chunk(plan, _take(x_train, i0, i1), y_train[i0:i1], buffers, block, test, scores)
                    if scores is not None:
                        self_inf[i0:i1] = scores.to("cpu")
                    if not on_cpu:
                        out[i0:i1, j0:j1].copy_(block)
                    bar.update()
        return out, self_inf


#: Prefixes that wrappers add to parameter names: nn.DataParallel / DistributedDataParallel, torch.compile.
_WRAPPER_PREFIXES = ("module", "_orig_mod")


def _strip_prefix(name: str, prefixes: Sequence[str]) -> str:
    for prefix in prefixes:
        if name == prefix:
            return ""
        if name.startswith(prefix + "."):
            return name[len(prefix) + 1:]
    return name


def _unwrap_model(model: Any) -> tuple[nn.Module, str]:
    """The module inside the usual wrappers, and the name prefix the wrapper added ("" if none)."""
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError(
            "model is a TorchScript module; TracIn needs the original torch.nn.Module "
            "(per-sample gradients go through torch.func.functional_call)"
        )
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    prefix = ""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model, prefix = model.module, prefix or "module"
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model, prefix = model._orig_mod, prefix or "_orig_mod"
        else:
            return model, prefix


def _share_activations(factors: list[Factors]) -> list[Factors]:
    """Make equal input activations of a closed-form layer the same tensor across checkpoints."""
    first = factors[0]
    for f in factors[1:]:
        for k, (a, d) in enumerate(f.linear):
            a0 = first.linear[k][0]
            if a is not a0 and a.shape == a0.shape and torch.equal(a, a0):
                f.linear[k] = (a0, d)
    return factors
