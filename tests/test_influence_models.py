"""TracIn takes the models and checkpoints a PyTorch user hands it, or refuses them at construction.

Oracles: brute-force per-sample autograd over ``model.parameters()`` (which lists
a tied parameter once, with the gradient summed over its uses), and captum's
``TracInCP`` for a model with two inputs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glitchlib.influence import TracIn

LR = (0.3, 0.1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Tied(nn.Module):
    """Two Linear modules sharing one weight (``b.weight = a.weight``), as in weight tying."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(5, 5), nn.Linear(5, 5), nn.Linear(5, 3)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.head(torch.tanh(self.b(torch.tanh(self.a(x)))))


class TwoInputs(nn.Module):
    """A model called as ``model(image_features, tabular)``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.tab = nn.Linear(4, 6)
        self.head = nn.Linear(3 * 4 * 4 + 6, 3)

    def forward(self, image, tabular):
        return self.head(torch.cat([torch.relu(self.conv(image)).flatten(1), torch.relu(self.tab(tabular))], 1))


def _checkpoints(model, steps=2):
    torch.manual_seed(1)
    out = []
    for lr in LR[:steps]:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        out.append(({k: v.clone() for k, v in model.state_dict().items()}, lr))
    return out


def _brute(model, checkpoints, x, y, xt, yt):
    """sum_t lr_t <g_t(z_i), g_t(z'_j)> with per-sample autograd over model.parameters()."""
    def grads(inputs, labels):
        rows = []
        for i in range(len(labels)):
            args = tuple(t[i:i + 1] for t in inputs) if isinstance(inputs, tuple) else (inputs[i:i + 1],)
            loss = F.cross_entropy(model(*args), labels[i:i + 1])
            rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))]))
        return torch.stack(rows)

    total = 0
    for state, lr in checkpoints:
        model.load_state_dict(state)
        total = total + lr * grads(x, y) @ grads(xt, yt).T
    return total


def test_tied_weights_load_from_the_models_own_state_dict_and_count_once():
    torch.manual_seed(0)
    model = Tied().double()
    checkpoints = _checkpoints(model)
    assert "b.weight" in checkpoints[0][0]  # the state dict lists the tied name too
    x, y = torch.randn(7, 5, dtype=torch.float64), torch.randint(0, 3, (7,))
    engine = TracIn(model, checkpoints, layers=None, dtype=torch.float64, progress=False)
    matrix, si = engine.train_test_and_self_influence(x, y, x[:4], y[:4])
    expected = _brute(model, checkpoints, x, y, x[:4], y[:4])
    assert torch.allclose(matrix, expected, atol=1e-12, rtol=1e-10)
    assert torch.allclose(si, torch.diag(_brute(model, checkpoints, x, y, x, y)), atol=1e-12, rtol=1e-10)


def test_tied_weights_of_a_single_layer_take_the_gradient_of_every_use():
    torch.manual_seed(0)
    model = Tied().double()
    checkpoints = _checkpoints(model, steps=1)
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 3, (6,))
    engine = TracIn(model, checkpoints, layers=["b"], dtype=torch.float64, progress=False)
    state, lr = checkpoints[0]
    model.load_state_dict(state)
    rows = []
    for i in range(6):
        loss = F.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, [model.a.weight, model.b.bias])]))
    g = torch.stack(rows)
    assert torch.allclose(engine.train_test(x, y, x, y), lr * g @ g.T, atol=1e-12, rtol=1e-10)


def test_tied_names_with_different_values_are_refused():
    model = Tied()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["b.weight"] = state["b.weight"] + 1
    with pytest.raises(ValueError, match="tied parameters 'a.weight' and 'b.weight' different values"):
        TracIn(model, [(state, 0.1)], layers=None, progress=False)


def test_a_model_with_several_inputs_takes_a_tuple():
    torch.manual_seed(0)
    model = TwoInputs().double()
    checkpoints = _checkpoints(model)
    image, tab = torch.randn(8, 2, 4, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    engine = TracIn(model, checkpoints, layers=None, dtype=torch.float64, progress=False)
    matrix, si = engine.train_test_and_self_influence((image, tab), y, (image[:3], tab[:3]), y[:3])
    expected = _brute(model, checkpoints, (image, tab), y, (image[:3], tab[:3]), y[:3])
    assert torch.allclose(matrix, expected, atol=1e-12, rtol=1e-10)
    assert torch.allclose(engine.self_influence([image, tab], y), si, atol=1e-12)
    with pytest.raises(ValueError, match="share their first"):
        engine.train_test((image, tab[:5]), y, (image, tab), y)
    with pytest.raises(ValueError, match="same model"):
        engine.train_test((image, tab), y, image, y)


def test_several_inputs_agree_with_captum(tmp_path):
    captum_influence = pytest.importorskip("captum.influence")
    torch.manual_seed(0)
    model = TwoInputs()
    checkpoints = _checkpoints(model)
    image, tab, y = torch.randn(6, 2, 4, 4), torch.randn(6, 4), torch.randint(0, 3, (6,))
    paths = []
    for t, (state, lr) in enumerate(checkpoints):
        paths.append(str(tmp_path / f"c{t}.pt"))
        torch.save({"state": state, "lr": lr}, paths[-1])

    def load(net, path):
        saved = torch.load(path, weights_only=True)
        net.load_state_dict(saved["state"])
        return saved["lr"]

    captum = captum_influence.TracInCP(
        model, torch.utils.data.TensorDataset(image, tab, y), paths, checkpoints_load_func=load,
        loss_fn=nn.CrossEntropyLoss(reduction="none"), batch_size=3,
    )
    expected = captum.influence((image[:4], tab[:4], y[:4]), k=None).T
    ours = TracIn(model, checkpoints, layers=None, progress=False).train_test((image, tab), y, (image[:4], tab[:4]), y[:4])
    assert torch.allclose(ours, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("wrap", [
    pytest.param(lambda m: nn.DataParallel(m), id="DataParallel"),
    pytest.param(lambda m: torch.compile(m), id="torch.compile"),
])
def test_wrapped_models_and_their_state_dicts(wrap):
    torch.manual_seed(0)
    model = Tied().double()
    checkpoints = _checkpoints(model, steps=1)
    wrapped = wrap(model)
    state = wrapped.state_dict()  # keys "module.a.weight" / "_orig_mod.a.weight"
    prefix = next(iter(state)).split(".")[0]
    x, y = torch.randn(5, 5, dtype=torch.float64), torch.randint(0, 3, (5,))
    engine = TracIn(wrapped, [(state, 0.1)], layers=[f"{prefix}.head"], dtype=torch.float64, progress=False)
    assert engine.layers == ["head"]
    bare = TracIn(model, [(model.state_dict(), 0.1)], layers=["head"], dtype=torch.float64, progress=False)
    assert torch.equal(engine.train_test(x, y, x, y), bare.train_test(x, y, x, y))
    # a state dict saved from the wrapper works with the bare model too
    prefixed = TracIn(model, [(state, 0.1)], layers=["head"], dtype=torch.float64, progress=False)
    assert torch.equal(prefixed.train_test(x, y, x, y), bare.train_test(x, y, x, y))
    del checkpoints


@pytest.mark.parametrize("lr, message", [
    (float("nan"), "learning rate=nan"), (float("inf"), "learning rate=inf"), (0.0, "learning rate=0.0"),
    (-0.1, "learning rate=-0.1"), (True, "learning rate=True"), ("0.1", "learning rate='0.1'"),
])
def test_learning_rates_are_finite_positive_numbers(lr, message):
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"checkpoints\[0\] " + message.replace("[", r"\[")):
        TracIn(model, [(model.state_dict(), lr)], layers=None, progress=False)


def test_learning_rates_of_any_numeric_type():
    import numpy as np

    model = nn.Linear(3, 2)
    for lr in (np.float32(0.1), np.float64(0.1), torch.tensor(0.1), 1):
        assert TracIn(model, [(model.state_dict(), lr)], layers=None, progress=False).learning_rates[0] > 0


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_nan_weights_and_torchscript_are_refused_at_construction():
    model = nn.Linear(3, 2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["weight"][0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"checkpoints\[0\]\['weight'\] contains NaN"):
        TracIn(model, [(state, 0.1)], layers=None, progress=False)
    with pytest.raises(ValueError, match="TorchScript"):
        TracIn(torch.jit.script(model), [(model.state_dict(), 0.1)], layers=None, progress=False)
    with pytest.raises(ValueError, match="chunk_size=True"):
        TracIn(model, [(model.state_dict(), 0.1)], layers=None, chunk_size=True, progress=False)
