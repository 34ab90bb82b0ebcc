"""Saturated samples (certify/secondorder/saturated.py): zero-loss samples on kinks are set aside.

The instance below is derived by hand (its docstring); tests/exact.py probes it in rational arithmetic.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np

import certify
from certify.secondorder import cone
from certify.secondorder.saturated import exact_zero_losses, zero_loss_samples
from tests import exact
from tests.test_path_fit import _context


def rank_one(n_kink: int = 10, nudge: float = 0.0):
    """Two inputs, one ReLU unit, two outputs, square loss: the best *rank-one* linear fit.

    Data ``x = (+-1, 0), (0, +-1)`` with ``y = diag(2, 1) x``, plus ``n_kink`` samples
    ``x = (-2, t)`` on the unit's kink (``w . x + b = 0``) fitted exactly (``y = f(x) = (-4, 0)``).
    ``theta``: ``w = (1, 0), b = 2, W2 = (2, 0)', b2 = (-4, 0)``: ``f(x) = (2 x_1, 0)`` on the four
    data points (pre-activations 1, 2, 3 > 0), residuals ``(0, -x_2)``: loss ``1`` in sum.

    Proof of a local minimum. Near theta the four points stay active, so there
    ``f = M x + m`` with ``M = W2 w'`` of rank <= 1; with ``sum x_i = sum y_i = 0``,
    ``sum x_i x_i' = 2 I``: ``sum_i |M x_i + m - y_i|^2 = 2 |M - D|_F^2 + 4 |m|^2``, whose minimum over
    rank-one ``M`` is at ``M = diag(2, 0)`` (Eckart-Young; singular values 2 > 1) -- theta. The kink
    samples' losses are >= 0 = their value at theta. So ``L(theta') >= L(theta)`` near theta.
    Not a minimum in path space: output 2 alone could fit ``x_2`` (so the path test must fail).
    ``nudge`` moves the first kink sample's target by that amount (no longer fitted exactly).
    """
    W1, b1 = np.array([[1.0, 0.0]]), np.array([2.0])
    W2, b2 = np.array([[2.0], [0.0]]), np.array([-4.0, 0.0])
    X = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]
    y = [[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]]
    for t in range(n_kink):
        X.append([-2.0, float(t - 4)])
        y.append([-4.0 + (nudge if t == 0 else 0.0), 0.0])
    return [(W1, b1), (W2, b2)], np.array(X), np.array(y)


def test_rank_one_minimum_with_ten_zero_residual_kinks():
    model, X, y = rank_one()
    report = certify.check(model, X, y, activation="relu", loss="square")
    assert report.verdict.value == "local_min", report.reason
    assert report.flags["method"] == "saturated"
    cert = report.second_order["certificate"]
    assert cert["kinks_dropped"] == 10 and cert["losses_exactly_zero"] is True
    assert cert["reduced"]["method"] == "hessian"
    assert certify.verify(report.to_dict(), model, X, y).ok
    # without the reduction the critical-cone test would need 2^10 pieces
    ctx = _context(model, X, y, "relu", "square")
    lam = np.asarray(ctx.first.certificate.get("lambda", []), dtype=float)
    why = cone.cone_model(ctx.problem, ctx.fwd, ctx.kinks, ctx.fo, lam, [])
    assert isinstance(why, str) and "2^10" in why
    from certify.secondorder.path_fit import path_test
    assert path_test(ctx.problem, ctx.fwd, ctx.kinks, ctx.fo, ctx.first)["status"] != "ok"


def test_rank_one_exact_probe_finds_no_decrease():
    model, X, y = rank_one(n_kink=4)
    layers = [([[Fraction(float(v)) for v in row] for row in W], [Fraction(float(v)) for v in b]) for W, b in model]
    Xq = [tuple(Fraction(float(v)) for v in row) for row in X]
    yq = [tuple(Fraction(float(v)) for v in row) for row in y]
    res = exact.probe(layers, Xq, yq, "relu", "square", radii=(Fraction(1, 100), Fraction(1, 10 ** 4)), n_random=60)
    assert not res.found_decrease, (res.min_difference, res.direction)
    assert res.loss0 == Fraction(1, 8)


def test_tampered_drop_list_fails():
    model, X, y = rank_one()
    report = certify.check(model, X, y, activation="relu", loss="square")
    bad = json.loads(report.to_json())
    bad["second_order"]["certificate"]["dropped_samples"] = bad["second_order"]["certificate"]["dropped_samples"][1:]
    assert not certify.verify(bad, model, X, y).ok
    bad = json.loads(report.to_json())
    bad["second_order"]["certificate"]["dropped_samples"][0] = 0     # a sample with a nonzero residual
    assert not certify.verify(bad, model, X, y).ok


def test_a_rounding_level_residual_is_not_zero_when_exact_arithmetic_says_so():
    """A kink sample whose target is off by 2^-50: float64 cannot tell the residual from 0 (its rounding
    bound is ~1e-14), but exact rational arithmetic can -- the saturation bound must not be used."""
    model, X, y = rank_one(nudge=2.0 ** -50)
    ctx = _context(model, X, y, "relu", "square")
    zero = zero_loss_samples(ctx.problem, ctx.fwd)
    assert zero[4]                                   # zero up to rounding ...
    assert exact_zero_losses(ctx.problem, [4]) is False   # ... but not exactly
    report = certify.check(model, X, y, activation="relu", loss="square")
    assert not (report.verdict.value == "local_min" and report.flags.get("method") == "saturated")


def test_zero_loss_samples_per_loss():
    import certify.data as cd
    from certify.network import Network
    net = Network([np.array([[1.0]]), np.array([[1.0]])], [np.array([0.0]), np.array([0.0])], "relu")
    X = np.array([[-1.0], [0.5], [2.0]])                      # f = relu(x) = (0, 0.5, 2)
    fwd = net.forward(X, with_scale=True)
    hinge = cd.Problem(net, cd.Dataset(X, np.array([1.0, 1.0, 1.0])), "hinge")
    assert list(zero_loss_samples(hinge, fwd)) == [False, False, True]      # margins 0, 0.5, 2
    sq = cd.Problem(net, cd.Dataset(X, np.array([0.0, 0.25, 2.0])), "square")
    assert list(zero_loss_samples(sq, fwd)) == [True, False, True]
    logi = cd.Problem(net, cd.Dataset(X, np.array([1.0, 1.0, 1.0])), "logistic")
    assert not zero_loss_samples(logi, fwd).any()


def test_saddle_behind_zero_residual_kinks_is_refuted_exactly():
    """benchmarks.instances.pattern_cells(variant="saddle"): an escape unit splits one quadruple
    (proof in its docstring: an indefinite 2x2 Hessian block in a plane where L is C^2). The reduced
    problem's least curvature direction does not descend on the full problem (the set-aside samples
    add curvature), so the escape is searched on the directions that keep them fixed; the decrease is
    then checked here in exact rational arithmetic."""
    from benchmarks.instances import pattern_cells
    from tests.test_path_fit import _exact_data, _exact_layers
    inst = pattern_cells(d=6, hidden=(8, 6), variant="saddle", n_quads=10, K_zero=4, K_convex=(1, 0))
    report = certify.check(inst.model(), inst.X, inst.y, **inst.options())
    assert report.verdict.value == "saddle", report.reason
    ref = report.refutation
    layers = _exact_layers(inst)
    X, y = _exact_data(inst)
    d = [Fraction(float(v)) for v in ref["direction"]]
    e = None if ref.get("curvature_direction") is None else [Fraction(float(v)) for v in ref["curvature_direction"]]
    t = Fraction(float(ref["step"]))
    before = exact.loss(layers, X, y, "relu", "square")
    after = exact.loss(exact.on_curve(layers, d, t, e), X, y, "relu", "square")
    assert after < before


def test_reduced_first_order_tree_is_rechecked_by_verify():
    """bruteforce2 seed 784: the reduced problem's first order is a branch-and-bound tree; verify re-checks
    its leaves (it used to know only multipliers and the MILP bound, and rejected the certificate)."""
    from fractions import Fraction as Q

    import pytest

    import certify
    f = lambda rows: np.array([[float(Q(v)) for v in r] for r in rows])   # noqa: E731
    layers = [(f([["1/2"], ["-1"]]), f([["1/2", "-2"]])[0]), (f([["1", "1"], ["-1/2", "-2"]]), f([["0", "-3/2"]])[0]),
              (f([["1/2", "-3/2"]]), f([["0"]])[0])]
    X = f([["0"], ["-1"], ["-2"], ["1/2"]])
    y = f([["7/4"], ["-1/2"], ["0"], ["-5/8"]])[:, 0]
    rep = certify.check(layers, X, y, activation="relu", loss="square")
    if rep.verdict.value != "local_min" or rep.second_order.get("method") != "saturated":
        pytest.skip(f"decided another way now: {rep.verdict.value} / {rep.second_order.get('method')}")
    res = certify.verify(rep.to_dict(), layers, X, y)
    assert res.ok, [c for c in res.checks if not c.ok]
    assert any(c.name.startswith("reduced_first_order_tree") for c in res.checks)
