"""Zero loss is a global minimum, proved exactly: margins that clear 1 beyond rounding, the rest in
exact arithmetic. Expected answers are by construction (dyadic numbers, margins chosen exactly)."""

from fractions import Fraction

import numpy as np

import certify


def _hinge_net(h=300, d=20, n=250, seed=0):
    """A wide 1-hidden-layer ReLU net whose output is y_i * 2 on every sample (margins exactly 2)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(-8, 9, size=(n, d)) / 8.0
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    W1 = rng.integers(-4, 5, size=(h, d)) / 4.0
    b1 = rng.integers(-4, 5, size=h) / 4.0
    H = np.maximum(X @ W1.T + b1, 0.0)
    return X, y, W1, b1, H


def test_hinge_zero_loss_at_scale_is_a_global_minimum():
    X, y, W1, b1, H = _hinge_net()
    # output weights: least squares to 3 y (margins about 3), then the output bias moves no margin below 1
    w2 = np.linalg.lstsq(H, 3 * y, rcond=None)[0]
    f = H @ w2
    assert np.all(y * f > 1.5)           # margins clear 1 by far more than rounding
    model = [(W1, b1), (w2[None, :], np.zeros(1))]
    r = certify.check(model, X, y, activation="relu", loss="hinge")
    assert r.problem["n_params"] > 6000
    assert r.verdict.value == "local_min" and r.flags["method"] == "zero_loss" and r.flags["global"] is True
    assert "beyond the rounding-error bound" in r.second_order["certificate"]["proof"]
    assert certify.verify(r.to_dict(), model, X, y).ok


def test_margins_exactly_one_are_recomputed_exactly():
    # one unit, f = 2x on x in {-1/2, 1/2, -1, 1}: margins 1, 1, 2, 2 (exact ties at 1: loss exactly 0)
    X = np.array([[-0.5], [0.5], [-1.0], [1.0]]); y = np.array([-1.0, 1.0, -1.0, 1.0])
    model = [(np.array([[1.0], [-1.0]]), np.zeros(2)), (np.array([[2.0, -2.0]]), np.zeros(1))]
    r = certify.check(model, X, y, activation="relu", loss="hinge")
    assert r.verdict.value == "local_min" and r.flags["global"] is True
    assert "2 in exact arithmetic" in r.second_order["certificate"]["proof"]


def test_a_margin_just_below_one_is_not_zero_loss():
    # margin 1 - 2^-60 on one sample: float64 rounds the loss to 0 there, exact arithmetic does not
    eps = 2.0 ** -60
    X = np.array([[1.0], [1.0 + 2.0 ** -52]]); y = np.array([1.0, 1.0])
    W1 = np.array([[1.0]]); b1 = np.array([-eps])          # z = 1 - 2^-60 is not representable: rounds to 1
    model = [(W1, b1), (np.array([[1.0]]), np.zeros(1))]
    f = float(np.maximum(X[0] @ W1.T + b1, 0)[0])
    exact = Fraction(1) - Fraction(eps)                       # the exact output at x = 1
    assert exact < 1 and f == 1.0                             # float64 sees margin 1, exactly it is below
    r = certify.check(model, X, y, activation="relu", loss="hinge")
    assert not (r.verdict.value == "local_min" and r.flags.get("method") == "zero_loss")
