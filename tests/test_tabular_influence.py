"""TracIn on the tabular models equals brute-force per-sample autograd (SPEC.md sections 3 and 9.7).

The oracle differentiates each sample's cross-entropy alone with
``torch.autograd.grad`` and takes the dot products by hand, so it shares nothing
with the engine's batched hooks (closed-form ``Linear`` factors, per-token outer
products of sequence ``Linear`` layers, the feature tokenizer's gradients).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from glitchlib import models
from glitchlib.influence import TracIn

N_FEATURES, N_CLASSES = 5, 3


def _checkpoints(model, n: int = 2):
    """``n`` (state dict, lr) pairs: the initial weights moved by seeded noise."""
    generator = torch.Generator().manual_seed(1)
    out = []
    for t in range(n):
        state = {k: v + 0.05 * (t + 1) * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v
                 for k, v in model.state_dict().items()}
        out.append((state, 0.1 / (t + 1)))
    return out


def _brute_force(model, checkpoints, parameter_names, x, y):
    """``n x p`` per-sample gradients per checkpoint, one autograd call per sample (float64)."""
    grads = []
    for state, _ in checkpoints:
        net = copy.deepcopy(model).double().eval()
        net.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in state.items()})
        params = dict(net.named_parameters())
        rows = []
        for xi, yi in zip(x.double(), y):
            loss = F.cross_entropy(net(xi[None]), yi[None])
            g = torch.autograd.grad(loss, [params[p] for p in parameter_names])
            rows.append(torch.cat([t.reshape(-1) for t in g]))
        grads.append(torch.stack(rows))
    return grads


@pytest.mark.parametrize("name", models.TABULAR_MODELS)
def test_influence_equals_brute_force_autograd(name):
    model = models.create(name, n_classes=N_CLASSES, pretrained=False, n_features=N_FEATURES, seed=0).suffix
    checkpoints = _checkpoints(model)
    generator = torch.Generator().manual_seed(0)
    x_train, x_test = torch.randn(7, N_FEATURES, generator=generator), torch.randn(4, N_FEATURES, generator=generator)
    y_train, y_test = torch.tensor([0, 1, 2, 0, 1, 2, 0]), torch.tensor([2, 1, 0, 1])
    engine = TracIn(model, checkpoints, layers=None, dtype=torch.float64, progress=False)
    matrix, self_influence = engine.train_test_and_self_influence(x_train, y_train, x_test, y_test)

    names = [p for layer in engine._layers for p in layer.parameter_names]
    g_train = _brute_force(model, checkpoints, names, x_train, y_train)
    g_test = _brute_force(model, checkpoints, names, x_test, y_test)
    lrs = [lr for _, lr in checkpoints]
    expected = sum(lr * a @ b.T for lr, a, b in zip(lrs, g_train, g_test))
    expected_self = sum(lr * (a * a).sum(1) for lr, a in zip(lrs, g_train))
    torch.testing.assert_close(matrix, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(self_influence, expected_self, rtol=1e-9, atol=1e-12)


def test_every_linear_and_the_tokenizer_are_differentiated_but_no_normalisation():
    model = models.create("ft_transformer", n_classes=N_CLASSES, pretrained=False, n_features=N_FEATURES).suffix
    engine = TracIn(model, _checkpoints(model, 1), layers=None, progress=False)
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert set(engine.layers) == set(linear) | {"net.cont_embeddings"}
    differentiated = {p for layer in engine._layers for p in layer.parameter_names}
    assert not [p for p in differentiated if "normalization" in p or "cls_embedding" in p]
    # the attention projections run on 3-D token sequences: hooked, not the 2-D closed form
    plan = engine._plan(torch.zeros(2, N_FEATURES))
    assert "net.backbone.blocks.0.attention.W_q" in [layer.name for layer in plan.hooked]
    assert [layer.name for layer in plan.closed_form] == ["net.backbone.output.linear"]
    assert not plan.generic


def test_tabular_models_refuse_pretrained_weights_and_need_n_features():
    with pytest.raises(ValueError, match="pretrained"):
        models.create("mlp", n_classes=2, n_features=4)
    with pytest.raises(ValueError, match="n_features"):
        models.create("mlp", n_classes=2, pretrained=False)
