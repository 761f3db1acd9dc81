"""Glitch injection (SPEC.md section 2), checked against counts and invariants."""

import math

import numpy as np
import pytest
import torch

from glitchlib import glitches as G


def labels(counts, seed=0):
    """Shuffled labels with ``counts[c]`` samples of class ``c``."""
    y = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(y)


def ood_pool(per_class=(30, 30, 30), shape=(1, 4, 4), seed=1):
    y = labels(per_class, seed)
    x = np.random.default_rng(seed).normal(size=(len(y),) + shape).astype(np.float32)
    return x, y


# ------------------------------------------------------------------ glitch_count

@pytest.mark.parametrize("ratio,n,expected", [(0.1, 6000, 600), (0.29, 100, 29),
                                              (0.07, 100, 7), (0.5, 7, 3), (0.1, 9, 0)])
def test_glitch_count_is_floor(ratio, n, expected):
    assert G.glitch_count(ratio, n) == expected


# ------------------------------------------------------------------ uniform noise

@pytest.mark.parametrize("ratio,n", [(0.1, 1000), (0.29, 100), (0.5, 37), (0.05, 6000)])
def test_uniform_noise_counts_and_flips(ratio, n):
    y = labels([n // 4, n // 4, n // 4, n - 3 * (n // 4)])
    g = G.uniform_noise(y, ratio=ratio, seed=3, n_classes=4)
    k = math.floor(ratio * n + 1e-9)
    assert g.n_glitches == k == int(g.mask.sum())
    assert np.array_equal(g.y_true, y)
    assert np.array_equal(g.mask, g.y != y)            # every flip changes the label
    assert np.array_equal(g.y[~g.mask], y[~g.mask])
    assert set(g.kind[g.mask]) == {"mislabeled"} and set(g.kind[~g.mask]) == {"clean"}
    assert g.y.dtype == np.int64 and g.y_true.dtype == np.int64 and g.mask.dtype == bool
    assert g.y.min() >= 0 and g.y.max() < 4
    assert g.x is None and g.ood_index.size == 0 and g.target_classes is None
    assert g.glitch == "uniform" and len(g) == n


def test_uniform_noise_new_label_is_uniform_over_other_classes():
    y = np.zeros(20000, dtype=np.int64)
    y[:2] = [1, 2]                                       # three classes present
    g = G.uniform_noise(y, ratio=0.5, seed=0, n_classes=3)
    flipped = g.y[g.mask & (y == 0)]
    share = np.bincount(flipped, minlength=3) / len(flipped)
    assert share[0] == 0
    assert abs(share[1] - 0.5) < 0.02 and abs(share[2] - 0.5) < 0.02


def test_uniform_noise_seeds():
    y = labels([50] * 10)
    a, b = G.uniform_noise(y, ratio=0.1, seed=7), G.uniform_noise(y, ratio=0.1, seed=7)
    c = G.uniform_noise(y, ratio=0.1, seed=8)
    assert np.array_equal(a.y, b.y) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.mask, c.mask)


def test_uniform_noise_accepts_torch_labels_and_returns_numpy():
    y = torch.as_tensor(labels([20, 20, 20]))
    g = G.uniform_noise(y, ratio=0.2, seed=0)
    assert isinstance(g.y, np.ndarray) and g.n_glitches == 12
    assert np.array_equal(g.y_true, y.numpy())


# ------------------------------------------------------------------ class-based noise

def test_class_based_noise_per_class_counts_and_targets():
    counts = [100, 57, 80, 33, 120]
    y = labels(counts)
    ratio = 0.3
    g = G.class_based_noise(y, ratio=ratio, seed=5)
    assert g.glitch == "class-based"
    assert sorted(g.target_classes) == [0, 1, 2, 3, 4]
    for c, n_c in enumerate(counts):
        in_class = y == c
        assert g.mask[in_class].sum() == math.floor(ratio * n_c)
        new = set(g.y[in_class & g.mask].tolist())
        assert new == {g.target_classes[c]}             # one target per class
        assert g.target_classes[c] != c                  # never the class itself
    assert np.array_equal(g.mask, g.y != y)
    assert set(g.kind[g.mask]) == {"mislabeled"}


def test_class_based_noise_targets_vary_over_seeds():
    y = labels([10] * 4)
    seen = {c: set() for c in range(4)}
    for seed in range(60):
        for c, t in G.class_based_noise(y, ratio=0.2, seed=seed).target_classes.items():
            seen[c].add(t)
    assert all(seen[c] == set(range(4)) - {c} for c in range(4))


@pytest.mark.parametrize("k", [1, 3])
def test_class_based_noise_n_contaminated(k):
    counts = [40, 40, 40, 40, 40, 40]
    y = labels(counts)
    g = G.class_based_noise(y, ratio=0.25, seed=2, n_contaminated=k)
    assert len(g.target_classes) == k
    dirty = set(np.unique(y[g.mask]).tolist())
    assert dirty == set(g.target_classes)
    assert g.n_glitches == k * 10


def test_class_based_noise_seeds():
    y = labels([30] * 5)
    a, b = G.class_based_noise(y, ratio=0.1, seed=1), G.class_based_noise(y, ratio=0.1, seed=1)
    assert np.array_equal(a.y, b.y) and a.target_classes == b.target_classes
    c = G.class_based_noise(y, ratio=0.1, seed=2)
    assert not (np.array_equal(a.y, c.y) and a.target_classes == c.target_classes)


# ------------------------------------------------------------------ anomalies

@pytest.mark.parametrize("as_torch", [False, True])
def test_anomalies_appended_from_one_class_with_one_label(as_torch):
    y = labels([25, 25, 25, 25])
    x = np.random.default_rng(0).normal(size=(100, 1, 4, 4)).astype(np.float32)
    x_ood, y_ood = ood_pool((30, 12, 30))
    ratio = 0.1
    if as_torch:
        x, x_ood, y_ood = torch.as_tensor(x), torch.as_tensor(x_ood), torch.as_tensor(y_ood)
    g = G.anomalies(x, y, x_ood, y_ood, ratio=ratio, seed=4)
    k = 10
    assert isinstance(g.x, torch.Tensor if as_torch else np.ndarray)
    assert g.x.shape == (100 + k, 1, 4, 4)
    xo, yo = np.asarray(x_ood), np.asarray(y_ood)
    assert np.array_equal(np.asarray(g.x[:100]), np.asarray(x))
    assert np.array_equal(np.asarray(g.x[100:]), xo[g.ood_index])
    assert len(set(g.ood_index.tolist())) == k             # without replacement
    assert len(set(yo[g.ood_index].tolist())) == 1         # a single OOD class
    assert np.array_equal(g.y_true[100:], yo[g.ood_index])
    assert len(set(g.y[100:].tolist())) == 1 and 0 <= g.y[100] < 4
    assert np.array_equal(g.y[:100], y) and np.array_equal(g.y_true[:100], y)
    assert np.array_equal(g.mask, np.arange(110) >= 100)
    assert set(g.kind[100:]) == {"anomaly"} and set(g.kind[:100]) == {"clean"}
    assert g.glitch == "anomalies" and g.ood_index.dtype == np.int64


def test_anomalies_seeds():
    y = labels([50, 50])
    x = np.zeros((100, 1, 4, 4), np.float32)
    x_ood, y_ood = ood_pool((40, 40, 40, 40))
    a = G.anomalies(x, y, x_ood, y_ood, ratio=0.2, seed=3)
    b = G.anomalies(x, y, x_ood, y_ood, ratio=0.2, seed=3)
    c = G.anomalies(x, y, x_ood, y_ood, ratio=0.2, seed=4)
    assert np.array_equal(a.ood_index, b.ood_index) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.ood_index, c.ood_index)


def test_anomalies_class_and_label_cover_all_choices_over_seeds():
    y = labels([20, 20, 20])
    x = np.zeros((60, 1, 4, 4), np.float32)
    x_ood, y_ood = ood_pool((10, 10, 10, 10))
    classes, given = set(), set()
    for seed in range(40):
        g = G.anomalies(x, y, x_ood, y_ood, ratio=0.1, seed=seed)
        classes.add(int(y_ood[g.ood_index[0]]))
        given.add(int(g.y[-1]))
    assert classes == {0, 1, 2, 3} and given == {0, 1, 2}


def _bilinear_oracle(img, out_h, out_w):
    """Bilinear resize with half-pixel centres and clamped edges (upsampling only)."""
    in_h, in_w = img.shape
    def axis(n_out, n_in):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo
    r0, r1, fr = axis(out_h, in_h)
    c0, c1, fc = axis(out_w, in_w)
    top = img[r0][:, c0] * (1 - fc) + img[r0][:, c1] * fc
    bottom = img[r1][:, c0] * (1 - fc) + img[r1][:, c1] * fc
    return top * (1 - fr[:, None]) + bottom * fr[:, None]


def test_anomalies_resized_and_channel_matched():
    y = labels([10, 10])
    x = torch.zeros(20, 3, 8, 8)
    x_ood = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (12, 1, 5, 5)),
                            dtype=torch.float32)
    y_ood = torch.as_tensor([0] * 6 + [1] * 6)
    g = G.anomalies(x, y, x_ood, y_ood, ratio=0.1, seed=0)
    assert g.x.shape == (22, 3, 8, 8) and g.x.dtype == torch.float32
    for row, i in zip(g.x[20:], g.ood_index):
        expected = _bilinear_oracle(x_ood[i, 0].double().numpy(), 8, 8)
        for channel in range(3):                          # grey repeated on 3 channels
            np.testing.assert_allclose(row[channel].numpy(), expected, atol=1e-5)


def test_anomalies_rgb_pool_into_grey_images():
    y = labels([10, 10])
    x = np.zeros((20, 1, 4, 4), np.float32)
    x_ood = np.stack([np.full((3, 4, 4), v, np.float32) for v in (0.5, -0.5)] * 3)
    x_ood[:, 1] = 0.0
    y_ood = np.zeros(6, np.int64)
    g = G.anomalies(x, y, x_ood, y_ood, ratio=0.1, seed=0)
    expected = (0.299 + 0.114) * x_ood[g.ood_index, 0]    # luma of (v, 0, v)
    np.testing.assert_allclose(g.x[20:, 0], expected, atol=1e-6)


# ------------------------------------------------------------------ mixed

def test_mixed_counts_kinds_and_seeds():
    y = labels([30, 30, 40])
    x = np.random.default_rng(0).normal(size=(100, 1, 4, 4)).astype(np.float32)
    x_ood, y_ood = ood_pool((20, 20))
    g = G.mixed(x, y, x_ood, y_ood, ratio=0.1, seed=9)
    assert g.glitch == "mixed" and len(g) == 110 and g.x.shape[0] == 110
    assert (g.kind[:100] == "mislabeled").sum() == 10
    assert np.array_equal(g.mask[:100], g.y[:100] != y)
    assert set(g.kind[100:]) == {"anomaly"} and g.mask[100:].all()
    assert np.array_equal(g.mask, g.kind != "clean")
    assert len(set(g.y[100:].tolist())) == 1 and len(set(y_ood[g.ood_index].tolist())) == 1
    again = G.mixed(x, y, x_ood, y_ood, ratio=0.1, seed=9)
    assert np.array_equal(g.y, again.y) and np.array_equal(g.x, again.x)
    other = G.mixed(x, y, x_ood, y_ood, ratio=0.1, seed=10)
    assert not np.array_equal(g.mask, other.mask)


def test_inject_dispatches():
    y = labels([20, 20])
    x = np.zeros((40, 1, 4, 4), np.float32)
    x_ood, y_ood = ood_pool((10, 10))
    assert np.array_equal(G.inject("uniform", y, ratio=0.1, seed=1).y, G.uniform_noise(y, ratio=0.1, seed=1).y)
    assert G.inject("class-based", y, ratio=0.1, seed=1, n_contaminated=1).target_classes == \
        G.class_based_noise(y, ratio=0.1, seed=1, n_contaminated=1).target_classes
    for glitch, f in (("anomalies", G.anomalies), ("mixed", G.mixed)):
        got = G.inject(glitch, y, ratio=0.1, seed=1, x=x, x_ood=x_ood, y_ood=y_ood)
        assert np.array_equal(got.y, f(x, y, x_ood, y_ood, ratio=0.1, seed=1).y)
    assert G.GLITCHES == ("uniform", "class-based", "anomalies", "mixed", "corruption", "none")


# ------------------------------------------------------------------ bad inputs

@pytest.mark.parametrize("ratio", [0, -0.1, 0.51, 1.0, float("nan"), True, "0.1", None])
@pytest.mark.parametrize("glitch", G.GLITCHES)
def test_bad_ratio(glitch, ratio):
    y = labels([20, 20])
    x_ood, y_ood = ood_pool((30, 30))
    with pytest.raises(ValueError, match="ratio"):
        G.inject(glitch, y, ratio=ratio, seed=0, x=np.zeros((40, 1, 4, 4), np.float32),
                 x_ood=x_ood, y_ood=y_ood)


@pytest.mark.parametrize("y", [[], np.zeros((4, 5), int), [0.0, 1.0, 1.0, 0.0],
                               [0, -1, 1, 1], [True, False]])
@pytest.mark.parametrize("glitch", G.GLITCHES)
def test_bad_labels(glitch, y):
    n = len(y)
    x_ood, y_ood = ood_pool((30, 30))
    with pytest.raises(ValueError, match=r"\by\b"):
        G.inject(glitch, y, ratio=0.5, seed=0, x=np.zeros((n, 1, 4, 4), np.float32),
                 x_ood=x_ood, y_ood=y_ood)


@pytest.mark.parametrize("glitch", G.GLITCHES)
def test_label_outside_n_classes(glitch):
    y = [0, 1, 2, 3] * 5
    x_ood, y_ood = ood_pool((30, 30))
    with pytest.raises(ValueError, match="n_classes"):
        G.inject(glitch, y, ratio=0.1, seed=0, n_classes=3, x=np.zeros((20, 1, 4, 4), np.float32),
                 x_ood=x_ood, y_ood=y_ood)


@pytest.mark.parametrize("f", [G.anomalies, G.mixed])
def test_x_y_length_mismatch(f):
    x_ood, y_ood = ood_pool((30, 30))
    with pytest.raises(ValueError, match=r"\bx\b.*\by\b"):
        f(np.zeros((19, 1, 4, 4), np.float32), labels([10, 10]), x_ood, y_ood, ratio=0.1, seed=0)


@pytest.mark.parametrize("f", [G.anomalies, G.mixed])
def test_x_ood_y_ood_length_mismatch(f):
    x_ood, y_ood = ood_pool((30, 30))
    with pytest.raises(ValueError, match="x_ood"):
        f(np.zeros((20, 1, 4, 4), np.float32), labels([10, 10]), x_ood[:-1], y_ood, ratio=0.1, seed=0)


@pytest.mark.parametrize("f", [G.anomalies, G.mixed])
def test_ood_class_too_small(f):
    x_ood, y_ood = ood_pool((30, 9))                     # 10 anomalies needed
    with pytest.raises(ValueError, match="y_ood"):
        f(np.zeros((100, 1, 4, 4), np.float32), labels([50, 50]), x_ood, y_ood, ratio=0.1, seed=0)


@pytest.mark.parametrize("k", [0, 4, -1, 1.5])
def test_bad_n_contaminated(k):
    with pytest.raises(ValueError, match="n_contaminated"):
        G.class_based_noise(labels([10, 10, 10]), ratio=0.1, seed=0, n_contaminated=k)


def test_bad_seed_glitch_and_missing_inputs():
    y = labels([10, 10])
    with pytest.raises(ValueError, match="seed"):
        G.uniform_noise(y, ratio=0.1, seed=-1)
    with pytest.raises(ValueError, match="glitch"):
        G.inject("gaussian", y, ratio=0.1, seed=0)
    with pytest.raises(ValueError, match="x_ood"):
        G.inject("anomalies", y, ratio=0.1, seed=0, x=np.zeros((20, 1, 4, 4)))
    with pytest.raises(ValueError, match="n_contaminated"):
        G.inject("uniform", y, ratio=0.1, seed=0, n_contaminated=1)
    with pytest.raises(ValueError, match="ratio"):     # selects no sample
        G.uniform_noise(labels([3, 3]), ratio=0.1, seed=0)


@pytest.mark.parametrize("n", [1, 2, 3, 40])
def test_no_sample_message_suggests_only_what_is_allowed(n):
    import re
    y = labels([n, n])
    for call in (lambda r: G.uniform_noise(y, ratio=r, seed=0),
                 lambda r: G.class_based_noise(y, ratio=r, seed=0)):
        with pytest.raises(ValueError, match="selects no sample") as info:
            call(0.01)
        suggested = re.search(r"raise ratio to at least ([0-9.]+)", str(info.value))
        if suggested:                     # a ratio only where one is allowed, and it works
            ratio = float(suggested.group(1))
            assert ratio <= G.MAX_RATIO
            assert call(ratio).n_glitches >= 1
        else:
            assert "at most 0.5" in str(info.value) and "n_train" in str(info.value)
