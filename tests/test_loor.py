"""Koh and Liang's influence function, leave-one-out retraining and the study built on them (SPEC.md 9.8).

Oracles: a closed-form Hessian of multinomial logistic regression built with
NumPy (softmax Jacobians and Kronecker products); ``torch.autograd.functional.hessian``
for an MLP; an SGD loop written directly with torch in this file; the first-order
loss change of SGD steps; ``scipy.stats.pearsonr``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glitchlib import loo_study, loor, train
from glitchlib.influence import InfluenceFunction, TracIn
from glitchlib.settings import TrainSettings


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy(n=40, m=15, d=4, n_classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + m, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, n_classes, generator=g, dtype=torch.float64)
    y = (x @ w + 0.5 * torch.randn(n + m, n_classes, generator=g, dtype=torch.float64)).argmax(1)
    return x[:n], y[:n], x[n:], y[n:]


def linear(d=4, n_classes=3, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Linear(d, n_classes).double()


# ------------------------------------------------------------------ influence function
def closed_form_influence(w, b, x_train, y_train, x_test, y_test, damping):
    """IF for softmax regression from the hand-built Hessian (NumPy), parameters ordered (W row-major, b)."""
    c, d = w.shape

    def probs(x):
        z = x @ w.T + b
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def grads(x, y):  # per sample: (p - e_y) x^T and (p - e_y)
        r = probs(x) - np.eye(c)[y]
        return np.concatenate([np.einsum("nc,nd->ncd", r, x).reshape(len(x), -1), r], axis=1)

    # Hessian over the augmented weights [W | b] (index c*(d+1)+k): mean of kron(S_i, xt_i xt_i^T)
    xt = np.concatenate([x_train, np.ones((len(x_train), 1))], axis=1)
    p = probs(x_train)
    h_aug = sum(np.kron(np.diag(pi) - np.outer(pi, pi), np.outer(xi, xi)) for pi, xi in zip(p, xt)) / len(xt)
    order = [ci * (d + 1) + k for ci in range(c) for k in range(d)] + [ci * (d + 1) + d for ci in range(c)]
    h = h_aug[np.ix_(order, order)]
    g_train, g_test = grads(x_train, y_train), grads(x_test, y_test)
    return g_train @ np.linalg.solve(h + damping * np.eye(len(h)), g_test.T)


def test_influence_function_equals_the_closed_form_of_logistic_regression():
    x, y, xt, yt = toy()
    model = linear()
    state = {k: v + 0.1 for k, v in model.state_dict().items()}  # the checkpoint is used, not the model
    got = InfluenceFunction(model, (state, 0.1), layers=[""], damping=0.01).train_test(x, y, xt, yt)
    want = closed_form_influence(state["weight"].numpy(), state["bias"].numpy(), x.numpy(), y.numpy(),
                                 xt.numpy(), yt.numpy(), 0.01)
    assert got.shape == (len(x), len(xt))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12 * np.abs(want).max())


def test_influence_function_hessian_of_an_mlp_matches_autograd():
    x, y, xt, yt = toy(n=12, m=5)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    engine = InfluenceFunction(model, model.state_dict(), layers=["2"])  # the last Linear only
    params = dict(model.named_parameters())

    def mean_loss(w, b):
        hidden = torch.tanh(x @ params["0.weight"].T + params["0.bias"])
        return F.cross_entropy(hidden @ w.T + b, y)

    blocks = torch.autograd.functional.hessian(mean_loss, (params["2.weight"].detach(), params["2.bias"].detach()))
    want = torch.cat([torch.cat([blocks[r][c].reshape(9 if r == 0 else 3, 9 if c == 0 else 3) for c in (0, 1)], 1)
                      for r in (0, 1)])
    torch.testing.assert_close(engine.hessian(x, y), want, rtol=1e-10, atol=1e-12)


def test_influence_function_sign_follows_tracin():
    """Positive self-pairs: a sample lowers its own loss (both estimates agree on sign of the diagonal)."""
    x, y, _, _ = toy(n=20)
    model = linear()
    influence = InfluenceFunction(model, model.state_dict(), layers=None).train_test(x, y, x, y)
    assert (influence.diagonal() > 0).all()


def test_influence_function_refuses_too_many_parameters():
    model = nn.Linear(100, 10)
    with pytest.raises(ValueError, match="1010 parameters"):
        InfluenceFunction(model, model.state_dict(), layers=None, max_parameters=1000)
    with pytest.raises(ValueError, match="damping"):
        InfluenceFunction(model, model.state_dict(), layers=None, damping=-1.0)
    x, y, xt, yt = toy()
    with pytest.raises(ValueError, match="y_test holds labels outside"):
        InfluenceFunction(linear(), linear().state_dict(), layers=None).train_test(x, y, xt, yt + 3)


def test_influence_function_reports_an_indefinite_hessian():
    x, y, xt, yt = toy()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    engine = InfluenceFunction(model, model.state_dict(), layers=None, damping=0.001)
    smallest = float(torch.linalg.eigvalsh(engine.hessian(x, y))[0])
    assert smallest < -0.01  # a non-convex model at its initial weights
    with pytest.raises(ValueError, match="not positive definite"):
        engine.train_test(x, y, xt, yt)
    damped = InfluenceFunction(model, model.state_dict(), layers=None, damping=0.001 - smallest)
    assert damped.train_test(x, y, xt, yt).isfinite().all()


# ------------------------------------------------------------------ TracIn as a first-order SGD step
@pytest.mark.parametrize("lr", [1e-2, 1e-3])
def test_tracin_per_step_is_the_first_order_loss_change_of_sgd(lr):
    """A checkpoint per step (weights before the step, learning rate eta), batch size 1:
    TracIn's term of that step, ``eta <g(z_t), g(z'_j)>``, is the first-order change
    ``loss_j(w_t) - loss_j(w_t+1)``; the rest is O(eta) relative to it."""
    x, y, xt, yt = toy(n=5, m=10)
    model = linear()
    for t in range(len(x)):  # sample t at step t
        checkpoint = ({k: v.clone() for k, v in model.state_dict().items()}, lr)
        with torch.no_grad():
            before = F.cross_entropy(model(xt), yt, reduction="none")
        grads = torch.autograd.grad(F.cross_entropy(model(x[t:t + 1]), y[t:t + 1]), list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads):
                p -= lr * g
            actual = before - F.cross_entropy(model(xt), yt, reduction="none")
        engine = TracIn(linear(), [checkpoint], layers=[""], dtype=torch.float64, progress=False)
        estimate = engine.train_test(x[t:t + 1], y[t:t + 1], xt, yt)[0]
        assert float((estimate - actual).abs().max() / actual.abs().max()) < 5 * lr


# ------------------------------------------------------------------ leave-one-out retraining
SETTINGS = TrainSettings(lr=0.2, batch_size=8, epochs=3)


def independent_retraining(model, x, y, lr, batch_size, epochs, seed, remove):
    """The LOOR rule written out: fit's batches, the left-out sample's batch keeps its divisor."""
    import copy

    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            keep = batch[batch != remove]
            if len(keep) == 0:
                continue
            if len(keep) == len(batch):
                loss = F.cross_entropy(model(x[batch]), y[batch])
            else:
                loss = F.cross_entropy(model(x[keep]), y[keep], reduction="sum") / len(batch)
            grads = torch.autograd.grad(loss, list(model.parameters()))
            with torch.no_grad():
                for p, g in zip(model.parameters(), grads):
                    p.add_(g, alpha=-lr)
    return model


def test_retraining_without_a_sample_is_bit_for_bit_an_independent_retraining():
    x, y, _, _ = toy(n=30)
    model = linear()
    for remove in (0, 17, 29):
        got = loor.retrain(model, x, y, settings=SETTINGS, seed=3, remove=remove)
        want = independent_retraining(model, x, y, 0.2, 8, 3, 3, remove)
        for a, b in zip(got.parameters(), want.parameters()):
            assert torch.equal(a, b)
    other = loor.retrain(model, x, y, settings=SETTINGS, seed=3, remove=5)
    assert not torch.equal(other.weight, want.weight)


def test_retraining_on_every_sample_is_fit_bit_for_bit():
    x, y, _, _ = toy(n=30)
    model = linear()
    fitted = train.fit(model, x, y, None, None, settings=SETTINGS, seed=3, progress=False).final_model
    again = loor.retrain(model, x, y, settings=SETTINGS, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(fitted.state_dict().values(), again.state_dict().values()))


def test_leave_one_out_matrix_and_determinism():
    x, y, xt, yt = toy(n=20, m=7)
    model = linear()
    result = loor.leave_one_out(model, x, y, xt, yt, settings=SETTINGS, seed=1, indices=[2, 9], n_jobs=1, progress=False)
    full = loor._sample_losses(loor.retrain(model, x, y, settings=SETTINGS, seed=1), xt, yt)
    without = loor._sample_losses(loor.retrain(model, x, y, settings=SETTINGS, seed=1, remove=9), xt, yt)
    np.testing.assert_array_equal(result.losses, full)
    np.testing.assert_array_equal(result.matrix[1], without - full)
    assert result.matrix.shape == (2, 7) and list(result.indices) == [2, 9]

    every = loor.leave_one_out(model, x, y, xt, yt, settings=SETTINGS, seed=1, n_jobs=1, progress=False)
    again = loor.leave_one_out(model, x, y, xt, yt, settings=SETTINGS, seed=1, n_jobs=2, progress=False)
    np.testing.assert_array_equal(every.matrix, again.matrix)  # same seed, any number of processes
    other = loor.leave_one_out(model, x, y, xt, yt, settings=SETTINGS, seed=2, n_jobs=1, progress=False)
    assert not np.array_equal(every.matrix, other.matrix)


def test_leave_one_out_rejects_bad_input():
    x, y, xt, yt = toy(n=10, m=3)
    with pytest.raises(ValueError, match="indices"):
        loor.leave_one_out(linear(), x, y, xt, yt, settings=SETTINGS, indices=[10], progress=False)
    with pytest.raises(ValueError, match="n_jobs"):
        loor.leave_one_out(linear(), x, y, xt, yt, settings=SETTINGS, n_jobs=0, progress=False)
    empty = loor.leave_one_out(linear(), x, y, xt, yt, settings=SETTINGS, indices=[], progress=False)
    assert empty.matrix.shape == (0, 3)
    with pytest.raises(ValueError, match="remove"):
        loor.retrain(linear(), x, y, settings=SETTINGS, remove=-1)


def test_removal_indices_are_all_or_a_seeded_subset():
    assert list(loor._removal_indices(5, None, 0)) == [0, 1, 2, 3, 4]
    subset = loor._removal_indices(100, 10, 4)
    assert len(set(subset)) == 10 and list(subset) == sorted(subset)
    np.testing.assert_array_equal(subset, loor._removal_indices(100, 10, 4))


def test_row_correlations_are_pearson():
    from scipy.stats import pearsonr

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 9)), rng.normal(size=(4, 9))
    b[1] = 2 * a[1] + 1
    a[3] = 1.0
    r = loor.row_correlations(a, b)
    for k in range(3):
        assert r[k] == pytest.approx(pearsonr(a[k], b[k])[0], abs=1e-12)
    assert r[1] == pytest.approx(1.0) and np.isnan(r[3])


# ------------------------------------------------------------------ the study
def test_study_caches_the_leave_one_out_matrix(tmp_path):
    s = loo_study.StudySettings(dataset="wine", n_train=20, n_test=10, epochs=2, n_removed=6)
    first = loo_study.run_study(s, results_dir=tmp_path, n_jobs=1, progress=False)
    assert not first.loor_cached and first.loor.matrix.shape == (6, 10)
    assert set(first.correlations["method"]) == set(loo_study.METHODS)
    second = loo_study.run_study(s, results_dir=tmp_path, compute=False, progress=False)
    assert second.loor_cached
    np.testing.assert_array_equal(first.loor.matrix, second.loor.matrix)
    table = loo_study.correlation_table([first])
    assert {"TracIn mean", "influence function median", "paper"} <= set(table.columns)
    with pytest.raises(ValueError, match="compute=True"):
        loo_study.run_study(loo_study.StudySettings(dataset="wine", n_train=21, n_test=10, epochs=2), results_dir=tmp_path,
                            compute=False, progress=False)


def test_study_settings_are_validated():
    with pytest.raises(ValueError, match="dataset"):
        loo_study.StudySettings(dataset="iris")
    with pytest.raises(ValueError, match="n_train"):
        loo_study.StudySettings(n_train=0)
    with pytest.raises(ValueError, match="exceeds"):
        loo_study.run_study(loo_study.StudySettings(dataset="wine", n_train=170, n_test=10), results_dir="unused",
                            progress=False)


def test_retraining_refuses_settings_fit_would_refuse():
    x, y, _, _ = toy()
    model = linear()
    with pytest.raises(ValueError, match=r"^settings=.*unknown key\(s\) 'momentum'"):
        loor.retrain(model, x, y, settings={"lr": 0.2, "batch_size": 8, "epochs": 1, "momentum": 0.9})
    with pytest.raises(ValueError, match=r"^settings=.*unknown key\(s\) 'momentum'"):
        loor.leave_one_out(model, x, y, x, y, settings={"lr": 0.2, "batch_size": 8, "epochs": 1, "momentum": 0.9},
                           n_jobs=1, progress=False)
    with pytest.raises(ValueError, match=r"^lr=inf"):
        loor.retrain(model, x, y, settings={"lr": float("inf"), "batch_size": 8, "epochs": 1})
    with pytest.raises(ValueError, match=r"^seed=-1"):
        loor.retrain(model, x, y, settings=SETTINGS, seed=-1)
    # a mapping of TrainSettings' fields is fit's settings, bit for bit
    as_dict = loor.retrain(model, x, y, settings={"lr": 0.2, "batch_size": 8, "epochs": 3}, seed=1)
    as_object = loor.retrain(model, x, y, settings=SETTINGS, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(as_dict.state_dict().values(), as_object.state_dict().values()))
