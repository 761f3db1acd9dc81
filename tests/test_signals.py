"""Tests for glitchlib.signals against hand-computed numbers and a loop oracle."""

import numpy as np
import pytest
import torch

from glitchlib import signals as S
from glitchlib.signals import SIGNALS

TINY = np.finfo(np.float64).tiny

# ---------------------------------------------------------------------------
# A 3 x 4 example, 2 classes, checked on paper.
#   J_0 = {0, 1}, J_1 = {2, 3}; y_train = (0, 1, 1)
#   row 0: J_0 -> (2, -1)   J_1 -> (3, -4)
#   row 1: J_0 -> (-2, -3)  J_1 -> (1, 0)
#   row 2: J_0 -> (1, 1)    J_1 -> (-1, -1)
I_HAND = np.array([[2, -1, 3, -4], [-2, -3, 1, 0], [1, 1, -1, -1]], dtype=float)
I_CF_HAND = np.array([[1, -2, 0, 0], [0, 0, -1, -3], [-1, 2, 4, -5]], dtype=float)
I_B_HAND = np.array([[2, -1, 1, -4], [-2, -3, 1, 0], [0, 3, -1, 2]], dtype=float)
SI_HAND = np.array([0.5, 2.0, 1.0])
Y_TRAIN_HAND = np.array([0, 1, 1])
Y_TEST_HAND = np.array([0, 0, 1, 1])

EXPECTED_HAND = {
    "si": [0.5, 2.0, 1.0],
    "mi": [0.0, -4.0, 0.0],  # 2-1+3-4, -2-3+1+0, 1+1-1-1
    "mai": [10.0, 6.0, 4.0],
    "aai": [2.5, 1.5, 1.0],  # MAI / 4
    "mpi": [5.0, 1.0, 2.0],
    "nil": [1.0, 0.0, 2.0],  # -N_{y_i}: N = (-1,-4), (-5,0), (0,-2)
    "nil_opt": [4.0, 5.0, 2.0],  # -min_c N_c
    "slip": [1.0, 1.0, 0.0],  # positives in J_{y_i}
    "slin": [1.0, 0.0, 2.0],  # negatives in J_{y_i}
    "gd_class": [1.0, 5.0, 2.0],  # class sums (1,-1), (-5,1), (2,-2)
    "cnci": [-2.0, -4.0, -5.0],  # neg(I_cf) over J_{y_i}: -2; -1-3; 0-5
    # P = (2,3), (0,1), (2,0); P^b = (2,1), (0,1), (3,2); MPI = 5, 1, 2
    # max |P - P^b| = 2, 0, 2 -> denominators 10, 0 (guard), 4
    "pcid": [0.1, 1.0 / TINY, 0.25],
    # ranks of CNCI (-2,-4,-5) -> (2,1,0); of PCID (0.1, huge, 0.25) -> (0,2,1)
    "cfrank": [2.0, 2.0, 1.0],
}


def test_hand_example_single_functions():
    got = {
        "si": S.si(SI_HAND),
        "mi": S.mi(I_HAND),
        "mai": S.mai(I_HAND),
        "aai": S.aai(I_HAND),
        "mpi": S.mpi(I_HAND),
        "nil": S.nil(I_HAND, Y_TRAIN_HAND, Y_TEST_HAND),
        "nil_opt": S.nil_opt(I_HAND, Y_TRAIN_HAND, Y_TEST_HAND),
        "slip": S.slip(I_HAND, Y_TRAIN_HAND, Y_TEST_HAND),
        "slin": S.slin(I_HAND, Y_TRAIN_HAND, Y_TEST_HAND),
        "gd_class": S.gd_class(I_HAND, Y_TRAIN_HAND, Y_TEST_HAND),
        "cnci": S.cnci(I_CF_HAND, Y_TRAIN_HAND, Y_TEST_HAND),
        "pcid": S.pcid(I_HAND, I_B_HAND, Y_TEST_HAND),
    }
    got["cfrank"] = S.cfrank(got["cnci"], got["pcid"])
    for name in SIGNALS:
        assert got[name].dtype == np.float64, name
        assert got[name].shape == (3,), name
        np.testing.assert_allclose(got[name], EXPECTED_HAND[name], rtol=1e-12, err_msg=name)


def test_hand_example_labels_and_characterization():
    np.testing.assert_array_equal(S.counterfactual_labels(I_HAND, Y_TEST_HAND), [1, 0, 1])
    np.testing.assert_array_equal(S.second_best_labels(I_HAND, Y_TEST_HAND), [0, 0, 1])
    c = S.cnci(I_CF_HAND, Y_TRAIN_HAND, Y_TEST_HAND)
    p = S.pcid(I_HAND, I_B_HAND, Y_TEST_HAND)
    # r_CNCI = (2,1,0), r_PCID = (0,2,1): only sample 0 has r_CNCI > r_PCID
    np.testing.assert_array_equal(S.characterize(c, p), ["mislabeled", "anomaly", "anomaly"])


def test_hand_example_class_sums():
    s = S._class_sums(I_HAND, Y_TEST_HAND)
    np.testing.assert_array_equal(s.neg, [[-1, -4], [-5, 0], [0, -2]])
    np.testing.assert_array_equal(s.pos, [[2, 3], [0, 1], [2, 0]])
    np.testing.assert_array_equal(s.n_pos, [[1, 1], [0, 1], [2, 0]])
    np.testing.assert_array_equal(s.n_neg, [[1, 1], [2, 0], [0, 2]])
    np.testing.assert_array_equal(s.present, [True, True])
    assert (s.n_train, s.n_classes, s.n_test) == (3, 2, 4)


def test_signals_from_class_sums_matches_single_functions():
    s = S._class_sums(I_HAND, Y_TEST_HAND)
    cf = S._class_sums(I_CF_HAND, Y_TEST_HAND, parts=("neg",))
    b = S._class_sums(I_B_HAND, Y_TEST_HAND, parts=("pos",))
    table = S._signals_from_class_sums(SI_HAND, s, cf, b, Y_TRAIN_HAND)
    assert list(table) == list(SIGNALS)
    for name in SIGNALS:
        np.testing.assert_allclose(table[name], EXPECTED_HAND[name], rtol=1e-12, err_msg=name)


# ---------------------------------------------------------------------------
# Loop oracle on random matrices


def _loop_rank(s):
    """Ascending rank, ties: the lower index counts as more suspicious."""
    n = len(s)
    return np.array([sum(1 for k in range(n) if s[k] < s[i] or (s[k] == s[i] and k > i)) for i in range(n)])


def _loop_signals(I, SI, I_cf, I_b, y_train, y_test, C):
    n, m = I.shape
    present = [bool(np.any(y_test == c)) for c in range(C)]
    out = {name: np.zeros(n) for name in SIGNALS}
    c_star = np.zeros(n, dtype=int)
    b = np.zeros(n, dtype=int)
    for i in range(n):
        N, P, T, Pb = [0.0] * C, [0.0] * C, [0.0] * C, [0.0] * C
        cn = 0.0
        slip = slin = 0
        for j in range(m):
            v, c = I[i, j], y_test[j]
            out["mi"][i] += v
            out["mai"][i] += abs(v)
            out["mpi"][i] += max(v, 0.0)
            N[c] += min(v, 0.0)
            P[c] += max(v, 0.0)
            T[c] += v
            Pb[c] += max(I_b[i, j], 0.0)
            if c == y_train[i]:
                slip += v > 0
                slin += v < 0
                cn += min(I_cf[i, j], 0.0)
        out["si"][i] = SI[i]
        out["aai"][i] = out["mai"][i] / m
        out["nil"][i] = -N[y_train[i]]
        out["nil_opt"][i] = -min(N)
        out["slip"][i] = slip
        out["slin"][i] = slin
        out["gd_class"][i] = -min(T)
        out["cnci"][i] = cn
        denominator = out["mpi"][i] * max(abs(P[c] - Pb[c]) for c in range(C))
        out["pcid"][i] = 1.0 / max(denominator, TINY)
        c_star[i] = min(range(C), key=lambda c: (N[c], not present[c], c))
        b[i] = sorted(range(C), key=lambda c: (-P[c], not present[c], c))[1]
    r_c, r_p = _loop_rank(out["cnci"]), _loop_rank(out["pcid"])
    out["cfrank"] = np.maximum(r_c, r_p).astype(float)
    kind = np.where(r_c > r_p, "mislabeled", "anomaly")
    return out, c_star, b, kind


def _random_problem(seed, n=23, m=17, C=4, integer=True, absent=(), dtype=np.float64):
    rng = np.random.default_rng(seed)
    classes = [c for c in range(C) if c not in absent]
    y_test = rng.choice(classes, size=m)
    y_test[: len(classes)] = classes  # every non-absent class appears
    y_train = rng.integers(0, C, size=n)

    def matrix():
        if integer:  # exact sums, many zeros and ties
            return rng.integers(-3, 4, size=(n, m)).astype(dtype)
        return rng.standard_normal((n, m)).astype(dtype)

    return matrix(), rng.random(n), matrix(), matrix(), y_train, y_test


def _all_signals(I, SI, I_cf, I_b, y_train, y_test, C):
    got = {
        "si": S.si(SI),
        "mi": S.mi(I),
        "mai": S.mai(I),
        "aai": S.aai(I),
        "mpi": S.mpi(I),
        "nil": S.nil(I, y_train, y_test, n_classes=C),
        "nil_opt": S.nil_opt(I, y_train, y_test, n_classes=C),
        "slip": S.slip(I, y_train, y_test, n_classes=C),
        "slin": S.slin(I, y_train, y_test, n_classes=C),
        "gd_class": S.gd_class(I, y_train, y_test, n_classes=C),
        "cnci": S.cnci(I_cf, y_train, y_test, n_classes=C),
        "pcid": S.pcid(I, I_b, y_test, n_classes=C),
    }
    got["cfrank"] = S.cfrank(got["cnci"], got["pcid"])
    return got


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("absent", [(), (2,)])
def test_integer_matrices_match_loop_exactly(seed, absent):
    C = 4
    I, SI, I_cf, I_b, y_train, y_test = _random_problem(seed, C=C, absent=absent)
    expected, c_star, b, kind = _loop_signals(I, SI, I_cf, I_b, y_train, y_test, C)
    got = _all_signals(I, SI, I_cf, I_b, y_train, y_test, C)
    for name in SIGNALS:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    np.testing.assert_array_equal(S.counterfactual_labels(I, y_test, n_classes=C), c_star)
    np.testing.assert_array_equal(S.second_best_labels(I, y_test, n_classes=C), b)
    np.testing.assert_array_equal(S.characterize(got["cnci"], got["pcid"]), kind)
    table = S._signals_from_class_sums(
        SI,
        S._class_sums(I, y_test, n_classes=C),
        S._class_sums(I_cf, y_test, n_classes=C, parts=("neg",)),
        S._class_sums(I_b, y_test, n_classes=C, parts=("pos",)),
        y_train,
    )
    for name in SIGNALS:
        np.testing.assert_array_equal(table[name], expected[name], err_msg=name)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_continuous_matrices_match_loop(dtype, rtol):
    C = 3
    I, SI, I_cf, I_b, y_train, y_test = _random_problem(7, n=31, m=29, C=C, integer=False, dtype=dtype)
    expected, c_star, b, _ = _loop_signals(
        I.astype(float), SI, I_cf.astype(float), I_b.astype(float), y_train, y_test, C
    )
    got = _all_signals(I, SI, I_cf, I_b, y_train, y_test, C)
    for name in SIGNALS:
        if name == "cfrank":
            continue  # ranks may swap on float32 near-ties; checked exactly above
        assert got[name].dtype == np.float64
        np.testing.assert_allclose(got[name], expected[name], rtol=rtol, atol=rtol * 10, err_msg=name)
    np.testing.assert_array_equal(S.counterfactual_labels(I, y_test, n_classes=C), c_star)
    np.testing.assert_array_equal(S.second_best_labels(I, y_test, n_classes=C), b)


def test_row_chunks_do_not_change_results(monkeypatch):
    C = 4
    I, SI, I_cf, I_b, y_train, y_test = _random_problem(11, C=C)
    expected = _all_signals(I, SI, I_cf, I_b, y_train, y_test, C)
    monkeypatch.setattr(S, "_CHUNK_ELEMENTS", 40)  # 2 rows of 17 per chunk, last chunk partial
    got = _all_signals(I, SI, I_cf, I_b, y_train, y_test, C)
    for name in SIGNALS:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_torch_inputs_give_the_same_results_and_are_not_copied():
    C = 4
    I, SI, I_cf, I_b, y_train, y_test = _random_problem(3, C=C, dtype=np.float32)
    expected = _all_signals(I, SI, I_cf, I_b, y_train, y_test, C)
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    got = _all_signals(t(I), t(SI), t(I_cf), t(I_b), t(y_train), t(y_test), C)
    for name in SIGNALS:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    tensor = torch.from_numpy(I)
    assert np.shares_memory(S._matrix(tensor, "I"), I)
    assert S._matrix(I, "I") is I


def test_invariant_to_validation_order():
    C = 4
    I, SI, I_cf, I_b, y_train, y_test = _random_problem(5, n=20, m=40, C=C, integer=False)
    expected = _all_signals(I, SI, I_cf, I_b, y_train, y_test, C)
    perm = np.random.default_rng(0).permutation(I.shape[1])
    got = _all_signals(I[:, perm], SI, I_cf[:, perm], I_b[:, perm], y_train, y_test[perm], C)
    for name in SIGNALS:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_array_equal(
        S.counterfactual_labels(I[:, perm], y_test[perm], n_classes=C), S.counterfactual_labels(I, y_test, n_classes=C)
    )
    np.testing.assert_array_equal(S.second_best_labels(I[:, perm], y_test[perm], n_classes=C), S.second_best_labels(I, y_test, n_classes=C))


# ---------------------------------------------------------------------------
# Planted glitches


def test_planted_mislabeled_sample_tops_cnci_and_is_repaired():
    rng = np.random.default_rng(0)
    n, m, C = 40, 30, 3
    y_test = np.arange(m) % C
    y_train = np.arange(n) % C
    planted, true_class = 17, 0  # given label y_train[17] = 2
    I = rng.uniform(-0.3, 1.0, size=(n, m))
    I[planted] = rng.uniform(-0.3, 0.3, size=m)
    I[planted, y_test == true_class] = -rng.uniform(1.0, 2.0, size=(y_test == true_class).sum())
    # Relabelled with c*, a clean sample hurts the validation samples of its given class;
    # the mislabeled one, relabelled with its true class, barely touches them.
    I_cf = rng.uniform(-1.0, 1.0, size=(n, m))
    own = y_test[None, :] == y_train[:, None]
    I_cf[own] = -rng.uniform(0.5, 1.5, size=own.sum())
    I_cf[planted, own[planted]] = rng.uniform(-0.01, 0.01, size=own[planted].sum())
    scores = S.cnci(I_cf, y_train, y_test)
    assert np.argmax(scores) == planted
    assert S.counterfactual_labels(I, y_test)[planted] == true_class
    assert np.argmax(S.nil_opt(I, y_train, y_test)) == planted


def test_planted_anomaly_tops_pcid():
    rng = np.random.default_rng(1)
    n, m, C = 40, 30, 3
    y_test = np.arange(m) % C
    y_train = np.arange(n) % C
    planted = 33
    own = y_test[None, :] == y_train[:, None]
    I = np.where(own, rng.uniform(0.5, 1.5, size=(n, m)), rng.uniform(-0.5, 0.1, size=(n, m)))
    # with the second-best label, a clean sample stops helping its class
    I_b = np.where(own, rng.uniform(-1.0, 0.0, size=(n, m)), rng.uniform(-0.5, 0.5, size=(n, m)))
    I[planted] = rng.uniform(-0.01, 0.01, size=m)  # an anomaly helps nobody much...
    I_b[planted] = I[planted] + rng.uniform(-0.001, 0.001, size=m)  # ...whatever its label
    scores = S.pcid(I, I_b, y_test)
    assert np.argmax(scores) == planted
    assert np.isfinite(scores).all()
    assert S.cfrank(np.zeros(n), scores)[planted] == n - 1


# ---------------------------------------------------------------------------
# Degenerate inputs: never NaN or inf


@pytest.mark.parametrize("value", [0.0, 1.0, -2.5])
def test_constant_matrices_are_finite(value):
    n, m = 6, 5
    I = np.full((n, m), value)
    y_train = np.array([0, 1, 2, 0, 1, 2])
    y_test = np.array([0, 1, 2, 0, 1])
    got = _all_signals(I, np.zeros(n), I, I, y_train, y_test, 3)
    for name in SIGNALS:
        assert np.isfinite(got[name]).all(), name
    # I_b equal to I: every denominator is zero -> the documented guard value
    np.testing.assert_array_equal(got["pcid"], S.PCID_ZERO_DENOMINATOR_SCORE)
    assert S.PCID_ZERO_DENOMINATOR_SCORE == 1.0 / TINY
    # signed zeros are normalised
    for name in ("nil", "nil_opt", "gd_class", "cnci"):
        assert not np.signbit(got[name][got[name] == 0]).any(), name


def test_zero_rows_get_the_largest_pcid_and_finite_signals():
    rng = np.random.default_rng(2)
    I = rng.standard_normal((5, 8))
    I[[1, 3]] = 0.0
    y_test = np.arange(8) % 2
    y_train = np.array([0, 1, 0, 1, 0])
    got = _all_signals(I, np.zeros(5), I, -I, y_train, y_test, 2)
    for name in SIGNALS:
        assert np.isfinite(got[name]).all(), name
    assert got["pcid"][1] == got["pcid"][3] == S.PCID_ZERO_DENOMINATOR_SCORE
    assert got["pcid"].max() == S.PCID_ZERO_DENOMINATOR_SCORE
    assert got["mi"][1] == got["mai"][1] == got["nil"][1] == got["slip"][1] == 0.0


def test_class_absent_from_validation_contributes_zero():
    # classes 0, 1 validated; class 2 absent (n_classes=3)
    I = np.array([[1.0, 2.0], [-1.0, 3.0]])
    y_test = np.array([0, 1])
    y_train = np.array([2, 0])
    # sample 0 carries label 2: no validation sample of its class
    np.testing.assert_array_equal(S.nil(I, y_train, y_test), [0.0, 1.0])
    np.testing.assert_array_equal(S.slip(I, y_train, y_test), [0.0, 0.0])
    np.testing.assert_array_equal(S.slin(I, y_train, y_test), [0.0, 1.0])
    np.testing.assert_array_equal(S.cnci(I, y_train, y_test), [0.0, -1.0])
    # class sums (1, 2, 0) and (-1, 3, 0): the empty class's zero takes part in the minimum
    np.testing.assert_array_equal(S.gd_class(I, y_train, y_test), [0.0, 1.0])
    np.testing.assert_array_equal(S.nil_opt(I, y_train, y_test), [0.0, 1.0])
    # labels prefer classes that have validation samples
    np.testing.assert_array_equal(S.counterfactual_labels(I, y_test, n_classes=3), [0, 0])
    np.testing.assert_array_equal(S.second_best_labels(I, y_test, n_classes=3), [0, 0])
    s = S._class_sums(I, y_test, n_classes=3)
    np.testing.assert_array_equal(s.present, [True, True, False])


def test_label_ties_are_deterministic():
    # no negative influence at all: every N_c = 0 -> c* is the lowest class present in validation
    I = np.ones((2, 3))
    y_test = np.array([1, 2, 2])
    np.testing.assert_array_equal(S.counterfactual_labels(I, y_test, n_classes=3), [1, 1])
    # P = (0, 1, 2): best 2, second 1; a present class with P = 0 beats an absent one
    np.testing.assert_array_equal(S.second_best_labels(I, y_test, n_classes=3), [1, 1])
    np.testing.assert_array_equal(S.second_best_labels(np.array([[0.0, 0.0, 1.0]]), y_test, n_classes=3), [1])
    # equal best sums: the lower index first, the other one second
    np.testing.assert_array_equal(S.second_best_labels(np.array([[1.0, 1.0]]), np.array([0, 1])), [1])
    # only one class validated: the second-best label is an absent class
    np.testing.assert_array_equal(S.second_best_labels(np.array([[1.0, 1.0]]), np.array([1, 1]), n_classes=3), [0])


def test_cfrank_ties_favour_the_lower_index():
    # equal scores: the earlier sample ranks as more suspicious
    np.testing.assert_array_equal(S.cfrank([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]), [2.0, 1.0, 0.0])
    np.testing.assert_array_equal(S.characterize([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]), ["anomaly"] * 3)


# ---------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: S.nil(I_HAND, Y_TRAIN_HAND[:2], Y_TEST_HAND), "y_train"),
        (lambda: S.nil(I_HAND, Y_TRAIN_HAND, Y_TEST_HAND[:3]), "y_test"),
        (lambda: S.nil(I_HAND, Y_TRAIN_HAND, Y_TEST_HAND, n_classes=1), "y_train"),
        (lambda: S.nil(I_HAND, Y_TRAIN_HAND, np.array([0, 0, 1, 5]), n_classes=2), "y_test"),
        (lambda: S.nil(I_HAND, np.array([0, -1, 1]), Y_TEST_HAND), "y_train"),
        (lambda: S.nil(I_HAND, Y_TRAIN_HAND.astype(float), Y_TEST_HAND), "y_train"),
        (lambda: S.nil(I_HAND, Y_TRAIN_HAND, Y_TEST_HAND, n_classes=0), "n_classes"),
        (lambda: S.nil(np.zeros((0, 4)), np.zeros(0, int), Y_TEST_HAND), "I"),
        (lambda: S.mi(np.zeros((3, 0))), "I"),
        (lambda: S.mi(np.zeros(3)), "I"),
        (lambda: S.mi(np.array([[1.0, np.nan]])), "I"),
        (lambda: S.mpi(np.array([[1.0, np.inf]])), "I"),
        (lambda: S.slip(np.array([[1.0, np.nan]]), [0], [0, 1]), "I"),
        (lambda: S.mi(np.array([["a"]])), "I"),
        (lambda: S.cnci(I_CF_HAND[:, :3], Y_TRAIN_HAND, Y_TEST_HAND), "y_test"),
        (lambda: S.pcid(I_HAND, I_B_HAND[:2], Y_TEST_HAND), "I_b"),
        (lambda: S.second_best_labels(I_HAND, np.array([0, 0, 0, 0]), n_classes=1), "n_classes"),
        (lambda: S.si(np.zeros(0)), "self_influence"),
        (lambda: S.si(np.zeros((2, 2))), "self_influence"),
        (lambda: S.si([1.0, np.nan]), "self_influence"),
        (lambda: S.cfrank([1.0, 2.0], [1.0]), "pcid_scores"),
        (lambda: S.cfrank([np.nan, 2.0], [1.0, 2.0]), "cnci_scores"),
        (lambda: S._class_sums(I_HAND, Y_TEST_HAND, parts=("bogus",)), "parts"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_signals_from_class_sums_checks_its_inputs():
    s = S._class_sums(I_HAND, Y_TEST_HAND)
    neg_only = S._class_sums(I_HAND, Y_TEST_HAND, parts=("neg",))
    with pytest.raises(ValueError, match="pos"):
        S._signals_from_class_sums(SI_HAND, s, neg_only, neg_only, Y_TRAIN_HAND)
    with pytest.raises(ValueError, match="self_influence"):
        S._signals_from_class_sums(SI_HAND[:2], s, s, s, Y_TRAIN_HAND)
    with pytest.raises(ValueError, match="cf_sums"):
        S._signals_from_class_sums(SI_HAND, s, S._class_sums(I_HAND[:2], Y_TEST_HAND), s, Y_TRAIN_HAND)
