"""Escape units in any layer (certify.secondorder.escape_any): hand-derived saddles, checked exactly.

Every refutation is re-checked independently of certify: the stored curve ``theta + t d`` is read as
exact rationals (the floats *are* the point) and (1) its exact Taylor coefficients on the piece it
enters (:func:`tests.degenerate.taylor`) must start with a negative one -- a local descent -- and
(2) the exact loss (:func:`tests.exact.loss`) at the reported step must be below the loss at theta.
"""

from fractions import Fraction

import numpy as np
import pytest

import certify
from tests import degenerate, exact
from tests.helpers import run_case
from tests.reference.cases import by_name


def _exact_point(model):
    return [([[Fraction(float(v)) for v in row] for row in np.atleast_2d(W)], [Fraction(float(v)) for v in b])
            for W, b in model]


def assert_exact_local_descent(report, model, X, y, activation, loss):
    """The refutation is a local descent (exact Taylor) with an exact decrease at its step."""
    ref = report.refutation
    assert ref is not None and ref["verified"]
    layers = _exact_point(model)
    Xq = [[Fraction(float(v)) for v in row] for row in np.atleast_2d(X)]
    yq = ([Fraction(float(v)) for v in np.ravel(y)] if np.ndim(y) == 1 else
          [tuple(Fraction(float(v)) for v in row) for row in y])
    if loss in ("hinge", "multiclass_hinge"):
        yq = [int(v) for v in yq]
    d = [Fraction(float(v)) for v in ref["direction"]]
    e = [Fraction(float(v)) / 2 for v in (ref.get("curvature_direction") if ref.get("curvature_direction") is not None
                                          else np.zeros(len(d)))]
    coeffs = degenerate.taylor(layers, Xq, yq, activation, loss, [d, e], K=4)
    assert degenerate.local_descent(coeffs), coeffs
    t = Fraction(float(ref["step"]))
    after = exact.loss(exact.on_curve(layers, d, t, [2 * v for v in e]), Xq, yq, activation, loss)
    before = exact.loss(layers, Xq, yq, activation, loss)
    assert after < before
    return coeffs


@pytest.mark.parametrize("name", ["gt10", "gt11", "gt14", "relu_zero_point", "multiclass_tie_saddle"])
def test_reference_escapes(name):
    """Hand-derived saddles with a zero-output unit (REFERENCES GT-10, GT-11, GT-14, ...): saddle by the
    escape kind, re-checked exactly and by verify."""
    case = by_name(name)
    report = run_case(case)
    assert report.verdict.value == "saddle", report.reason
    assert report.flags["method"] == "escape", report.reason
    model = exact.to_float_arrays(case.layers)
    X, y = exact.X_to_numpy(case.X), exact.y_to_numpy(case.y, case.loss)
    assert certify.verify(report.to_dict(), model, X, y).ok
    assert_exact_local_descent(report, model, X, y, case.activation, case.loss)


def _layer2_escape():
    """1-1-2-1 ReLU. Layer 1: w = 1, b = 2 (pre-activations x + 2 = 1, 2, 3). Layer 2: unit A (weight 1,
    bias 0, active), unit B (weight 0, bias 0: silent, on its kink at every sample). Output (1, 0), -2:
    f = x. Residuals r = (1, -2, 1)/2 are orthogonal to (1, x), so every gradient entry is 0, and unit
    B's kinks have coefficient 0 (its outgoing weight is 0): d-stationary. Escape (by hand): W3[0, 1] = -t,
    (w_B, b_B) = t (1, -5/2): B outputs t (0, 0, 1/2), f_3 drops by t^2/2, the mean loss changes by
    (-t^2/4 + t^4/8) / 3 < 0 (t = 1/2: -7/384)."""
    model = [(np.array([[1.0]]), np.array([2.0])), (np.array([[1.0], [0.0]]), np.array([0.0, 0.0])),
             (np.array([[1.0, 0.0]]), np.array([-2.0]))]
    X = np.array([[-1.0], [0.0], [1.0]])
    y = np.array([-1.5, 1.0, 0.5])
    return model, X, y


def test_hand_escape_in_layer_two():
    model, X, y = _layer2_escape()
    layers = _exact_point(model)
    Xq = [[Fraction(v) for v in row] for row in X.tolist()]
    yq = [Fraction(v) for v in y.tolist()]
    # the hand curve, exactly: theta order W1, b1, W2 (2x1), b2 (2), W3 (1x2), b3
    d = [0, 0, 0, 1, 0, Fraction(-5, 2), 0, -1, 0]
    assert degenerate.taylor(layers, Xq, yq, "relu", "square", [d], K=4)[1:] == [0, Fraction(-1, 12), 0, Fraction(1, 24)]
    assert exact.loss(exact.perturbed(layers, d, Fraction(1, 2)), Xq, yq, "relu", "square") - \
        exact.loss(layers, Xq, yq, "relu", "square") == Fraction(-7, 384)
    assert degenerate.is_d_stationary_inert({"layers": layers, "X": Xq, "y": yq, "activation": "relu",
                                             "loss": "square"})
    report = certify.check(model, X, y, activation="relu", loss="square")
    assert report.verdict.value == "saddle" and report.flags["method"] == "escape", report.reason
    cert = report.second_order["certificate"]
    assert cert["layer"] == 2 and cert["unit"] == 1 and cert["silent"]
    assert certify.verify(report.to_dict(), model, X, y).ok
    coeffs = assert_exact_local_descent(report, model, X, y, "relu", "square")
    assert coeffs[1] == 0 and coeffs[2] < 0          # a second-order escape: c1 = 0, c2 < 0


def test_hinge_escape_with_loss_kinks():
    """Hinge, one hidden unit, silent (w = b = a = 0), c = 1; x = (-1, 0, 1, 2), y = (+1, +1, +1, -1).
    Margins y f = (1, 1, 1, -1): three loss kinks and a loss of 2 at x = 2; L = 1/2. First order:
    L'(dc) = (dc + 3 max(0, -dc)) / 4 >= 0 and every other first-order term vanishes (f does not see the
    silent unit): d-stationary. Escape (by hand): a = -t, (w, b) = t (1, -3/2): the unit outputs
    t (0, 0, 0, 1/2), only x = 2 moves, f_4 = 1 - t^2/2, its loss 2 - t^2/2: L = 1/2 - t^2/8."""
    model = [(np.array([[0.0]]), np.array([0.0])), (np.array([[0.0]]), np.array([1.0]))]
    X = np.array([[-1.0], [0.0], [1.0], [2.0]])
    y = np.array([1.0, 1.0, 1.0, -1.0])
    layers = _exact_point(model)
    Xq = [[Fraction(v) for v in row] for row in X.tolist()]
    yq = [1, 1, 1, -1]
    d = [1, Fraction(-3, 2), -1, 0]
    assert degenerate.taylor(layers, Xq, yq, "relu", "hinge", [d], K=3)[1:] == [0, Fraction(-1, 8), 0]
    report = certify.check(model, X, y, activation="relu", loss="hinge")
    assert report.kinks["loss_kinks"] == 3 and report.kinks["unit_kinks"] == 4
    assert report.verdict.value == "saddle" and report.flags["method"] == "escape", report.reason
    assert certify.verify(report.to_dict(), model, X, y).ok
    assert_exact_local_descent(report, model, X, y, "relu", "hinge")


def test_two_outputs_escape_through_the_second_output():
    """1-1-2 ReLU, the hidden unit silent (w = b = 0, W2 = 0), b2 = 0; x = (-1, 1),
    y = ((0, -2), (0, 2)): output 1 fits exactly (residual 0), output 2 has residuals (2, -2). Mean loss
    2. Escape only through output 2 (by hand): W2[1, 0] = t, (w, b) = t (1, 0): f_2(1) = t^2, L = 2 - t^2
    + t^4/4. Through output 1 nothing moves at second order (its residuals are 0)."""
    model = [(np.array([[0.0]]), np.array([0.0])), (np.array([[0.0], [0.0]]), np.array([0.0, 0.0]))]
    X = np.array([[-1.0], [1.0]])
    y = np.array([[0.0, -2.0], [0.0, 2.0]])
    layers = _exact_point(model)
    Xq = [[Fraction(-1)], [Fraction(1)]]
    yq = [(Fraction(0), Fraction(-2)), (Fraction(0), Fraction(2))]
    assert degenerate.taylor(layers, Xq, yq, "relu", "square", [[1, 0, 0, 1, 0, 0]], K=4)[1:] == [0, -1, 0, Fraction(1, 4)]
    assert degenerate.taylor(layers, Xq, yq, "relu", "square", [[1, 0, 1, 0, 0, 0]], K=4)[1:] == [0, 0, 0, Fraction(1, 4)]
    report = certify.check(model, X, y, activation="relu", loss="square")
    assert report.verdict.value == "saddle" and report.flags["method"] == "escape", report.reason
    a = np.asarray(report.second_order["certificate"]["output_direction"])
    assert a[0] == 0 and a[1] != 0                      # the escape goes through output 2 only
    assert certify.verify(report.to_dict(), model, X, y).ok
    assert_exact_local_descent(report, model, X, y, "relu", "square")


def test_no_escape_when_the_escape_function_vanishes():
    """GT-4 (a spurious local minimum): unit 2 has output weight 0 and constant output 1; its escape
    function sum_i r_i h'(z_i2; xbar_i . v) = v . sum_i r_i xbar_i vanishes because the residuals are
    orthogonal to (1, x) -- only up to rounding in float64 (13/10 and 4/5 are not dyadic), so no escape
    may be claimed: a descent of rounding size is no saddle."""
    report = run_case(by_name("gt04_relu"))
    assert report.verdict.value == "local_min", report.reason


def test_escape_matrix_free_above_the_dense_limit():
    """The layer-two construction padded with 60 dead first-layer units and 60 dead second-layer
    units (p = 3,976, above the dense Hessian limit): decided by the escape kind in a few seconds
    without any Hessian; the curve is the same as by hand (only the silent unit and its outgoing
    weight move)."""
    import time
    from certify.secondorder import DENSE_P
    model, X, y = _layer2_escape()
    h1, h2 = 60, 60
    W1 = np.zeros((1 + h1, 1)); b1 = -np.ones(1 + h1); W1[0, 0] = 1.0; b1[0] = 2.0
    W2 = np.zeros((2 + h2, 1 + h1)); b2 = -np.ones(2 + h2); W2[0, 0] = 1.0; b2[:2] = 0.0
    W3 = np.zeros((1, 2 + h2)); W3[0, 0] = 1.0; b3 = np.array([-2.0])
    W2[2:, 1:] = np.eye(h2, h1)            # dead units feeding dead units (pre-activations -1)
    big = [(W1, b1), (W2, b2), (W3, b3)]
    t0 = time.perf_counter()
    report = certify.check(big, X, y, activation="relu", loss="square")
    elapsed = time.perf_counter() - t0
    assert report.problem["n_params"] > DENSE_P
    assert report.verdict.value == "saddle" and report.flags["method"] == "escape", report.reason
    assert report.second_order["certificate"]["layer"] == 2
    assert elapsed < 30
    assert certify.verify(report.to_dict(), big, X, y).ok


def test_partial_escape_gt12_with_a_kink_above_the_dense_limit():
    """REFERENCES GT-12 (unit A: w = 0, b = 1, weights (1, 0) into the two outputs: a differentiable strict
    saddle whose escape goes through output 2, where A's weight is 0; mean loss 2 - t^2 + t^4/4 along
    dw_A = dW2[1, A] = t), plus a unit K (w = 1, b = -1, weights (1, 0)) that sits on its kink at x = 1
    with coefficient W2[0, K] r_1 = 0 (output 1 is fitted exactly), plus 1,300 dead units: no Hessian test
    applies (a kink, p > DENSE_P), and the partial escape through output 2 decides, matrix-free."""
    from certify.secondorder import DENSE_P
    h = 1302
    W1 = np.zeros((h, 1)); b1 = -5.0 * np.ones(h)
    W1[0, 0], b1[0] = 0.0, 1.0              # unit A
    W1[1, 0], b1[1] = 1.0, -1.0             # unit K: pre-activations (-2, 0)
    W1[2:, 0] = np.linspace(-1, 1, h - 2)
    W2 = np.zeros((2, h)); W2[0, 0] = 1.0; W2[0, 1] = 1.0; W2[:, 2:] = np.linspace(1, 2, h - 2)
    b2 = np.array([-1.0, 0.0])
    X = np.array([[-1.0], [1.0]]); y = np.array([[0.0, -2.0], [0.0, 2.0]])
    model = [(W1, b1), (W2, b2)]
    report = certify.check(model, X, y, activation="relu", loss="square")
    assert report.problem["n_params"] > DENSE_P and report.kinks["unit_kinks"] == 1
    assert report.verdict.value == "saddle" and report.flags["method"] == "escape", report.reason
    assert report.second_order["certificate"]["partial"] == [1]      # through output 2
    assert certify.verify(report.to_dict(), model, X, y).ok
    ref = report.refutation
    assert ref["local"] == "exact" and ref["leading_order"] == 2
    # independent exact check on the stored floats: only units A, K and a few coordinates move
    d = np.asarray(ref["direction"])
    t = Fraction(float(ref["step"]))
    layers = _exact_point(model)
    Xq = [[Fraction(-1)], [Fraction(1)]]
    yq = [(Fraction(0), Fraction(-2)), (Fraction(0), Fraction(2))]
    dq = [Fraction(float(v)) for v in d]
    c = degenerate.taylor(layers, Xq, yq, "relu", "square", [dq], K=3)
    assert c[1] == 0 and c[2] < 0
    assert exact.loss(exact.perturbed(layers, dq, t), Xq, yq, "relu", "square") < 2


def test_escape_search_out_of_time_says_so_without_crashing():
    """A unit with zero outgoing weights and no time left: the kind ends undecided, naming the budget
    (regression: the note list mixed a plain string with per-unit entries and crashed when merged)."""
    import time

    from certify.data import Dataset, Problem
    from certify.first_order import FirstOrder
    from certify.kinks import find_kinks
    from certify.network import Activation, Network
    from certify.secondorder import escape_any
    from certify.secondorder.base import Context
    from certify.tangent import first_order_model
    net = Network((np.array([[1.0], [0.0]]), np.array([[1.0, 0.0]])), (np.zeros(2), np.zeros(1)),
                  Activation.parse("relu"))
    X = np.array([[-1.0], [0.0], [1.0], [2.0], [3.0]])
    problem = Problem(net, Dataset(X, np.array([0.125, -0.25, 0.875, 2.0, 3.25])), "square", 0.125)
    fwd = net.forward(X, with_scale=True)
    kinks = find_kinks(problem, fwd, None)
    ctx = Context(problem, fwd, kinks, first_order_model(problem, fwd, kinks), FirstOrder(True, "test"),
                  deadline=time.perf_counter() - 1.0)
    res = escape_any.run(ctx)
    assert res.verdict is None and "the time budget ran out" in res.reason


def test_silent_unit_escape_that_beats_weight_decay_narrowly():
    """1-1-4 ReLU, one sample x = 1, square loss, weight decay 1/2. The hidden unit is silent (w = b = 0,
    outgoing weights 0), the output biases are b2 = 23/64 and y = 69/128 on all four outputs, so the
    residual is e = -23/128 (1, 1, 1, 1) and e + lambda b2 = 0: stationary (hand derivation; the unit's
    kink has coefficient 0). Along d = (eps a, (v1, v0) / eps) the loss changes at second order by
    t^2 (a . e max(0, v1 + v0) + lambda/2 (eps^2 |a|^2 + |v|^2 / eps^2)); with a = (1, 1, 1, 1),
    v = (1, 1) and the balancing eps^2 = |v| / |a| = 1/sqrt(2) that is t^2 (-23/16 + sqrt(2)) < 0, so the
    point is a saddle -- by 1.6% of the decay term only: the max-norm balance (eps = 1) the escape
    search used gave t^2 (-23/16 + 3/2) > 0 there and found no escape curve."""
    b2 = 23 / 64
    model = [(np.zeros((1, 1)), np.zeros(1)), (np.zeros((4, 1)), np.full(4, b2))]
    X, y = np.array([[1.0]]), np.full((1, 4), 69 / 128)
    layers = _exact_point(model)
    Xq, yq = [[Fraction(1)]], [tuple(Fraction(69, 128) for _ in range(4))]
    half = Fraction(1, 2)
    for i in range(10):                          # every coordinate: L'(e_i) = L'(-e_i) = 0 (the unit is silent)
        for s in (1, -1):
            d_flat = [s if k == i else 0 for k in range(10)]
            assert degenerate.taylor(layers, Xq, yq, "relu", "square", [d_flat], K=1, weight_decay=half)[1] == 0
    report = certify.check(model, X, y, activation="relu", loss="square", weight_decay=0.5)
    assert report.verdict.value == "saddle" and report.flags["method"] == "escape", report.reason
    assert certify.verify(report.to_dict(), model, X, y).ok
    ref = report.refutation
    d = [Fraction(float(v)) for v in ref["direction"]]
    coeffs = degenerate.taylor(layers, Xq, yq, "relu", "square", [d], K=4, weight_decay=half)
    assert coeffs[1] == 0 and coeffs[2] < 0      # a second-order escape, exactly
    t = Fraction(float(ref["step"]))
    before = exact.loss(layers, Xq, yq, "relu", "square", half)
    assert exact.loss(exact.perturbed(layers, d, t), Xq, yq, "relu", "square", half) < before
