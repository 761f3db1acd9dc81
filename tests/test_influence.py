"""Tests of glitchlib.influence against two independent oracles.

* a brute-force loop: one backward pass per sample (torch.autograd.grad), explicit
  dot products, float64;
* captum 0.9.0's TracInCP (sample_wise_grads_per_batch=True, leaf layer names) and
  TracInCPFast, on the same checkpoints saved as files.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glitchlib.influence import TracIn
from glitchlib.influence._layers import resolve_layers
from glitchlib.influence._projection import GaussianProjector, IdentityProjector
from glitchlib.influence._gradients import Factors, batched_gradients, flat_gradients

TOL = 1e-4


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These problems are tiny: one thread is faster, and immune to a busy shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest reference entry."""
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


# --------------------------------------------------------------------- toy nets
class ConvNet(nn.Module):
    """Conv2d + BatchNorm2d (eval) + Conv2d without bias + two Linear layers, in-place ReLUs."""

    def __init__(self, n_classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, bias=False), nn.ReLU(inplace=True))
        self.fc1 = nn.Linear(4 * 3 * 3, 8)
        self.fc2 = nn.Linear(8, n_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.block(x).flatten(1)
        return self.fc2(F.relu(self.fc1(x), inplace=True))


class SequenceNet(nn.Module):
    """A Linear on a token sequence (3-D input), one reused twice, one used only through its weights."""

    def __init__(self):
        super().__init__()
        self.tok = nn.Linear(5, 6)
        self.mix = nn.Linear(6, 6)
        self.proj = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):  # x: n x 4 tokens x 5
        h = torch.tanh(self.tok(x)).mean(1)
        h = torch.tanh(self.mix(torch.tanh(self.mix(h))))
        h = torch.tanh(F.linear(h, self.proj.weight, self.proj.bias))  # module never called
        return self.head(h)


class OddConvNet(nn.Module):
    """Convolutions with groups, reflect/circular padding, 'same'/'valid', dilation, stride, reuse."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding="same", padding_mode="reflect", groups=2)
        self.c2 = nn.Conv2d(4, 4, 3, stride=2, dilation=2, padding=2, padding_mode="circular")
        self.c3 = nn.Conv2d(4, 4, (2, 3), padding="valid", bias=False)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.tanh(self.c1(x))
        h = torch.tanh(self.c2(h))
        h = torch.tanh(self.c3(h))
        h = torch.tanh(self.c3(F.pad(h, (1, 1, 1, 0))))  # c3 used twice
        return self.fc(h.mean((2, 3)))


def randomise_bn(model: nn.Module, gen: torch.Generator) -> None:
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=gen))
            mod.running_var.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)


def make_checkpoints(model: nn.Module, n: int, seed: int = 0, scale: float = 0.3):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in range(n):
        state = {
            k: (v + scale * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone())
            for k, v in model.state_dict().items()
        }
        out.append((state, 0.05 * (t + 1)))
    return out


def brute_force(model_fn, checkpoints, param_names, x, y, xt, yt):
    """Float64 oracle: one backward per sample, explicit dot products."""
    n, m = len(x), len(xt)
    influence = torch.zeros(n, m, dtype=torch.float64)
    self_inf = torch.zeros(n, dtype=torch.float64)
    for state, lr in checkpoints:
        model = model_fn().double()
        model.load_state_dict(state, strict=False)
        model.double().eval()
        params = dict(model.named_parameters())
        wanted = [params[p] for p in param_names]

        def grads(xs, ys):
            rows = []
            for i in range(len(xs)):
                loss = F.cross_entropy(model(xs[i : i + 1].double()), ys[i : i + 1])
                rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, wanted)]))
            return torch.stack(rows)

        g, gt = grads(x, y), grads(xt, yt)
        influence += lr * g @ gt.T
        self_inf += lr * (g * g).sum(1)
    return influence, self_inf


@pytest.fixture(scope="module")
def conv_case():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = ConvNet()
    randomise_bn(model, gen)
    checkpoints = make_checkpoints(model, 3, seed=2)
    x = torch.randn(12, 3, 7, 7, generator=gen)
    y = torch.randint(0, 3, (12,), generator=gen)
    xt = torch.randn(7, 3, 7, 7, generator=gen)
    yt = torch.randint(0, 3, (7,), generator=gen)
    return model, checkpoints, x, y, xt, yt


CONV_PARAMS = ["conv.weight", "conv.bias", "block.0.weight", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
CONV_LAYERS = ["conv", "block.0", "fc1", "fc2"]


# ------------------------------------------------------------- brute-force oracle
@pytest.mark.parametrize("dtype,tol", [(torch.float32, TOL), (torch.float64, 1e-10)])
def test_matches_brute_force_conv_bn_linear(conv_case, dtype, tol):
    model, checkpoints, x, y, xt, yt = conv_case
    ref_i, ref_si = brute_force(ConvNet, checkpoints, CONV_PARAMS, x, y, xt, yt)
    engine = TracIn(model, checkpoints, layers=CONV_LAYERS, dtype=dtype, progress=False)
    influence = engine.train_test(x, y, xt, yt)
    assert influence.shape == (12, 7) and influence.dtype == dtype and influence.device.type == "cpu"
    assert rel_err(influence, ref_i) <= tol
    assert rel_err(engine.self_influence(x, y), ref_si) <= tol


def test_head_only_matches_brute_force_and_shares_activations():
    gen = torch.Generator().manual_seed(3)
    head = nn.Linear(16, 4)
    checkpoints = make_checkpoints(head, 3, seed=4)
    x, xt = torch.randn(20, 16, generator=gen), torch.randn(9, 16, generator=gen)
    y, yt = torch.randint(0, 4, (20,), generator=gen), torch.randint(0, 4, (9,), generator=gen)
    ref_i, ref_si = brute_force(lambda: nn.Linear(16, 4), checkpoints, ["weight", "bias"], x, y, xt, yt)
    engine = TracIn(head, checkpoints, layers=[""], dtype=torch.float64, progress=False)
    assert rel_err(engine.train_test(x, y, xt, yt), ref_i) <= 1e-10
    assert rel_err(engine.self_influence(x, y), ref_si) <= 1e-10
    factors = engine._factors(engine._plan(x), x, y)
    assert all(f.linear[0][0] is factors[0].linear[0][0] for f in factors)  # one A for all checkpoints


def test_conv_variants_match_brute_force_and_torch_func():
    gen = torch.Generator().manual_seed(8)
    model = OddConvNet()
    checkpoints = make_checkpoints(model, 2, seed=9)
    x, xt = torch.randn(9, 2, 9, 9, generator=gen), torch.randn(5, 2, 9, 9, generator=gen)
    y, yt = torch.randint(0, 3, (9,), generator=gen), torch.randint(0, 3, (5,), generator=gen)
    names = ["c1.weight", "c1.bias", "c2.weight", "c2.bias", "c3.weight", "fc.weight", "fc.bias"]
    ref_i, ref_si = brute_force(OddConvNet, checkpoints, names, x, y, xt, yt)
    engine = TracIn(model, checkpoints, layers=None, dtype=torch.float64, progress=False)
    plan = engine._plan(x)
    assert [layer.name for layer in plan.hooked] == ["c1", "c2", "c3"]
    assert rel_err(engine.train_test(x, y, xt, yt), ref_i) <= 1e-10
    assert rel_err(engine.self_influence(x, y), ref_si) <= 1e-10
    # the hooked gradients equal torch.func's, block by block
    params = engine._params[1]
    hooked = batched_gradients(engine._model, params, (), plan.hooked, x.double(), y)[1]
    func = flat_gradients(engine._model, params, plan.flat_parameters, x.double(), y, vmap_chunk=4)
    assert all(rel_err(a, b) <= 1e-12 for a, b in zip(hooked, func))


def test_sequence_and_reused_linear():
    gen = torch.Generator().manual_seed(5)
    model = SequenceNet()
    checkpoints = make_checkpoints(model, 2, seed=6)
    x, xt = torch.randn(10, 4, 5, generator=gen), torch.randn(6, 4, 5, generator=gen)
    y, yt = torch.randint(0, 3, (10,), generator=gen), torch.randint(0, 3, (6,), generator=gen)
    names = [f"{m}.{p}" for m in ("tok", "mix", "proj", "head") for p in ("weight", "bias")]
    ref_i, ref_si = brute_force(SequenceNet, checkpoints, names, x, y, xt, yt)
    engine = TracIn(model, checkpoints, layers=None, dtype=torch.float64, progress=False)
    plan = engine._plan(x)
    assert [layer.name for layer in plan.closed_form] == ["head"]
    assert [layer.name for layer in plan.hooked] == ["tok", "mix"]
    assert [layer.name for layer in plan.generic] == ["proj"]
    assert rel_err(engine.train_test(x, y, xt, yt), ref_i) <= 1e-10
    assert rel_err(engine.self_influence(x, y), ref_si) <= 1e-10


# ------------------------------------------------------------------- captum oracle
def _captum_checkpoints(tmp_path, checkpoints):
    paths = []
    for t, (state, lr) in enumerate(checkpoints):
        path = tmp_path / f"ckpt{t}.pt"
        torch.save({"state": state, "lr": lr}, path)
        paths.append(str(path))

    def load(model, path):
        saved = torch.load(path, weights_only=True)
        model.load_state_dict(saved["state"], strict=False)
        return saved["lr"]

    return paths, load


def test_matches_captum_tracincp(conv_case, tmp_path):
    captum_tracincp = pytest.importorskip("captum.influence")
    model, checkpoints, x, y, xt, yt = conv_case
    paths, load = _captum_checkpoints(tmp_path, checkpoints)
    subject = copy.deepcopy(model).eval()
    captum = captum_tracincp.TracInCP(
        subject,
        torch.utils.data.TensorDataset(x, y),
        paths,
        checkpoints_load_func=load,
        layers=CONV_LAYERS,
        loss_fn=nn.CrossEntropyLoss(reduction="sum"),
        batch_size=5,
        sample_wise_grads_per_batch=True,
    )
    ref_i = captum.influence((xt, yt), k=None).T  # captum: test x train
    ref_si = captum.self_influence((x, y))
    engine = TracIn(model, checkpoints, layers=CONV_LAYERS, progress=False)
    assert rel_err(engine.train_test(x, y, xt, yt), ref_i) <= TOL
    assert rel_err(engine.self_influence(x, y), ref_si) <= TOL


def test_matches_captum_tracincp_fast_weights_only(conv_case, tmp_path):
    captum_influence = pytest.importorskip("captum.influence")
    model, checkpoints, x, y, xt, yt = conv_case
    paths, load = _captum_checkpoints(tmp_path, checkpoints)
    captum = captum_influence.TracInCPFast(
        copy.deepcopy(model).eval(),
        "fc2",
        torch.utils.data.TensorDataset(x, y),
        paths,
        checkpoints_load_func=load,
        loss_fn=nn.CrossEntropyLoss(reduction="sum"),
        batch_size=5,
    )
    engine = TracIn(model, checkpoints, layers=["fc2"], bias=False, progress=False)
    assert rel_err(engine.train_test(x, y, xt, yt), captum.influence((xt, yt), k=None).T) <= TOL
    assert rel_err(engine.self_influence(x, y), captum.self_influence((x, y))) <= TOL


# ---------------------------------------------------------------------- invariants
def test_self_influence_is_diagonal(conv_case):
    model, checkpoints, x, y, *_ = conv_case
    engine = TracIn(model, checkpoints, layers=CONV_LAYERS, progress=False)
    assert rel_err(torch.diag(engine.train_test(x, y, x, y)), engine.self_influence(x, y)) <= TOL


def test_train_test_and_self_influence_in_one_pass(conv_case):
    model, checkpoints, x, y, xt, yt = conv_case
    engine = TracIn(model, checkpoints, layers=CONV_LAYERS, chunk_size=5, test_chunk_size=4, progress=False)
    influence, self_inf = engine.train_test_and_self_influence(x, y, xt, yt)
    assert torch.equal(influence, engine.train_test(x, y, xt, yt))
    assert rel_err(self_inf, engine.self_influence(x, y)) <= 1e-6


def test_learning_rates_weight_checkpoints(conv_case):
    model, checkpoints, x, y, xt, yt = conv_case
    full = TracIn(model, checkpoints[:2], layers=CONV_LAYERS, dtype=torch.float64, progress=False)
    parts = [TracIn(model, [c], layers=CONV_LAYERS, dtype=torch.float64, progress=False) for c in checkpoints[:2]]
    assert rel_err(full.train_test(x, y, xt, yt), sum(p.train_test(x, y, xt, yt) for p in parts)) <= 1e-10
    scaled = TracIn(model, [(s, 3.0 * lr) for s, lr in checkpoints[:2]], layers=CONV_LAYERS, dtype=torch.float64,
                    progress=False)
    assert rel_err(scaled.train_test(x, y, xt, yt), 3.0 * full.train_test(x, y, xt, yt)) <= 1e-10
    assert rel_err(scaled.self_influence(x, y), 3.0 * full.self_influence(x, y)) <= 1e-10


def test_last_checkpoint(conv_case):
    model, checkpoints, x, y, xt, yt = conv_case
    engine = TracIn(model, checkpoints, layers=CONV_LAYERS, progress=False)
    last = engine.last_checkpoint()
    assert last.n_checkpoints == 1 and engine.n_checkpoints == 3
    only = TracIn(model, checkpoints[-1:], layers=CONV_LAYERS, progress=False)
    y_cf = (y + 1) % 3  # counterfactual labels
    assert rel_err(last.train_test(x, y_cf, xt, yt), only.train_test(x, y_cf, xt, yt)) <= 1e-6


def test_partial_state_dicts_and_caller_model_untouched(conv_case):
    model, _, x, y, xt, yt = conv_case
    model = copy.deepcopy(model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(7)
    partial = [({"fc2.weight": torch.randn(3, 8, generator=gen)}, 0.1),
               ({"fc2.weight": torch.randn(3, 8, generator=gen), "fc1.bias": torch.randn(8, generator=gen)}, 0.2)]
    full = [({**before, **state}, lr) for state, lr in partial]
    a = TracIn(model, partial, layers=CONV_LAYERS, dtype=torch.float64, progress=False)
    b = TracIn(model, full, layers=CONV_LAYERS, dtype=torch.float64, progress=False)
    assert rel_err(a.train_test(x, y, xt, yt), b.train_test(x, y, xt, yt)) <= 1e-10
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_chunk_sizes_do_not_change_result(conv_case):
    model, checkpoints, x, y, xt, yt = conv_case
    ref = TracIn(model, checkpoints, layers=CONV_LAYERS, progress=False)
    small = TracIn(model, checkpoints, layers=CONV_LAYERS, chunk_size=5, test_chunk_size=3, progress=False)
    assert rel_err(small.train_test(x, y, xt, yt), ref.train_test(x, y, xt, yt)) <= 1e-6
    assert rel_err(small.self_influence(x, y), ref.self_influence(x, y)) <= 1e-6


def test_container_expands_to_leaves(conv_case):
    model, checkpoints, x, y, xt, yt = conv_case
    assert [layer.name for layer in resolve_layers(model, layers=["block", "fc2"])] == ["block.0", "fc2"]
    a = TracIn(model, checkpoints, layers=["block", "fc2"], progress=False)
    b = TracIn(model, checkpoints, layers=["block.0", "fc2"], progress=False)
    assert a.layers == ["block.0", "fc2"]
    assert torch.equal(a.train_test(x, y, xt, yt), b.train_test(x, y, xt, yt))


# ---------------------------------------------------------------------- projection
def test_identity_projector_is_a_no_op():
    factors = Factors([(torch.ones(2, 3), torch.ones(2, 2))], [torch.ones(2, 4)])
    assert IdentityProjector().project(factors, 0) is factors


def test_random_projection_is_seeded_and_unbiased(conv_case):
    model, checkpoints, x, y, xt, yt = conv_case
    exact = TracIn(model, checkpoints, layers=CONV_LAYERS, dtype=torch.float64, progress=False).train_test(x, y, xt, yt)
    kwargs = dict(dtype=torch.float64, progress=False, projection_dim=2048)
    a = TracIn(model, checkpoints, layers=CONV_LAYERS, seed=1, **kwargs)
    proj = a.train_test(x, y, xt, yt)
    assert torch.equal(proj, TracIn(model, checkpoints, layers=CONV_LAYERS, seed=1, **kwargs).train_test(x, y, xt, yt))
    assert not torch.equal(proj, TracIn(model, checkpoints, layers=CONV_LAYERS, seed=2, **kwargs).train_test(x, y, xt, yt))
    assert rel_err(proj, exact) < 0.2  # JL: spread ~ sqrt(2 / k) of the norms
    # checkpoints keep their own projection stream, also through last_checkpoint()
    first = TracIn(model, checkpoints[:1], layers=CONV_LAYERS, seed=1, **kwargs)
    two = TracIn(model, checkpoints[:2], layers=CONV_LAYERS, seed=1, **kwargs)
    total = first.train_test(x, y, xt, yt) + two.last_checkpoint().train_test(x, y, xt, yt)
    assert rel_err(two.train_test(x, y, xt, yt), total) <= 1e-10


def test_gaussian_projector_validates_dim():
    with pytest.raises(ValueError, match=r"projection_dim=0: need an integer >= 1"):
        GaussianProjector(dim=0)


# ----------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors(conv_case):
    model, checkpoints, x, y, xt, yt = conv_case
    with pytest.raises(ValueError, match=r"unknown layer name 'fc3'.*'fc1'"):
        TracIn(model, checkpoints, layers=["fc3"])
    with pytest.raises(ValueError, match="contains no Linear or Conv2d"):
        TracIn(model, checkpoints, layers=["bn"])
    with pytest.raises(ValueError, match="layers is empty"):
        TracIn(model, checkpoints, layers=[])
    with pytest.raises(ValueError, match="checkpoints is empty"):
        TracIn(model, [], layers=CONV_LAYERS)
    with pytest.raises(ValueError, match="not in the model"):
        TracIn(model, [({"suffix.fc2.weight": torch.zeros(3, 8)}, 0.1)], layers=CONV_LAYERS)
    with pytest.raises(ValueError, match="has shape"):
        TracIn(model, [({"fc2.weight": torch.zeros(8, 3)}, 0.1)], layers=CONV_LAYERS)
    with pytest.raises(ValueError, match="learning rate"):
        TracIn(model, [(checkpoints[0][0], "fast")], layers=CONV_LAYERS)
    with pytest.raises(ValueError, match="dtype"):
        TracIn(model, checkpoints, layers=CONV_LAYERS, dtype=torch.float16)
    engine = TracIn(model, checkpoints, layers=CONV_LAYERS, progress=False)
    with pytest.raises(ValueError, match=r"label 3, outside \[0, 3\)"):
        engine.train_test(x, torch.full_like(y, 3), xt, yt)
    with pytest.raises(ValueError, match="label -1"):
        engine.self_influence(x, torch.full_like(y, -1))
    with pytest.raises(ValueError, match="12 samples but y_train has 11"):
        engine.train_test(x, y[:-1], xt, yt)
    with pytest.raises(ValueError, match="x_train samples have shape"):
        engine.train_test(x, y, xt[:, :2], yt)
    with pytest.raises(ValueError, match="integer class indices"):
        engine.self_influence(x, y.float())


def test_empty_inputs_give_empty_results(conv_case):
    model, checkpoints, x, y, xt, yt = conv_case
    engine = TracIn(model, checkpoints, layers=CONV_LAYERS, progress=False)
    assert engine.train_test(x[:0], y[:0], xt, yt).shape == (0, 7)
    assert engine.self_influence(x[:0], y[:0]).shape == (0,)


# -------------------------------------------------------------------------- device
@pytest.mark.gpu
def test_cuda_matches_cpu(conv_case):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model, checkpoints, x, y, xt, yt = conv_case
    cpu = TracIn(model, checkpoints, layers=CONV_LAYERS, dtype=torch.float64, progress=False)
    gpu = TracIn(model, checkpoints, layers=CONV_LAYERS, device="cuda", dtype=torch.float64, progress=False)
    result = gpu.train_test(x, y, xt, yt)
    assert result.device.type == "cpu"
    assert rel_err(result, cpu.train_test(x, y, xt, yt)) <= 1e-10
    assert rel_err(gpu.self_influence(x, y), cpu.self_influence(x, y)) <= 1e-10
    gpu32 = TracIn(model, checkpoints, layers=CONV_LAYERS, device="cuda", progress=False)
    assert rel_err(gpu32.train_test(x, y, xt, yt), cpu.train_test(x, y, xt, yt)) <= TOL
