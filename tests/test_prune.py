"""The network without its all-zero hidden units (certify.prune) and what the driver does with it.

Answers are derived by hand: the pruning is exact (a unit with zero incoming weights, bias and
outgoing weights adds nothing to any output or to the weight decay); the weight-decay example's
pruned Hessian and its flat valley are computed in the comments; GT-11's descent curve is
REFERENCES.md's.
"""

from __future__ import annotations

import json
import math
import time
from fractions import Fraction

import numpy as np
import pytest

import certify
from certify.data import Dataset, Problem
from certify.exact.structure import structure_for
from certify.network import Network
from certify.prune import embed, prunable, prune, zero_units
from certify.report import Verdict


def _problem(layers, X, y, loss="square", wd=0.0, activation="relu"):
    net = Network(tuple(np.asarray(W, dtype=float) for W, _ in layers),
                  tuple(np.asarray(b, dtype=float) for _, b in layers), activation)
    return Problem(net, Dataset(np.asarray(X, dtype=float), np.asarray(y, dtype=float)), loss, wd)


def test_pruning_is_exact_and_finds_only_all_zero_units():
    rng = np.random.default_rng(3)
    W1, b1 = rng.standard_normal((5, 3)), rng.standard_normal(5)
    W2, b2 = rng.standard_normal((4, 5)), rng.standard_normal(4)
    W3, b3 = rng.standard_normal((2, 4)), rng.standard_normal(2)
    W1[1], b1[1], W2[:, 1] = 0.0, 0.0, 0.0          # all zero: pruned
    W1[3], b1[3] = 0.0, 0.0                          # zero in, nonzero out: kept (its output relu(0) = 0 ...)
    W2[2], b2[2], W3[:, 2] = 0.0, 0.0, 0.0           # all zero in layer 2
    W3[:, 0] = 0.0                                   # zero out, nonzero in: kept (weight decay sees it)
    X, y = rng.standard_normal((7, 3)), rng.standard_normal((7, 2))
    pb = _problem([(W1, b1), (W2, b2), (W3, b3)], X, y, wd=0.1)
    assert zero_units(pb.network) == [(1, 1), (2, 2)] == prunable(pb.network)
    sub = prune(pb, prunable(pb.network))
    assert list(sub.network.widths) == [3, 4, 3, 2]
    assert sub.value() == pytest.approx(pb.value(), rel=1e-15, abs=0)
    d = rng.standard_normal(sub.n_params)
    full = embed(pb.network, prunable(pb.network), d)
    assert full.shape == (pb.n_params,)
    assert np.array_equal(embed(pb.network, [(1, 1), (2, 2)], sub.theta), pb.theta)   # E theta_P = theta
    for t in (1e-3, 0.1, 1.0):
        assert sub.value(sub.theta + t * d) == pytest.approx(pb.value(pb.theta + t * full), rel=1e-14, abs=0)
    with pytest.raises(ValueError, match="kept coordinates"):
        embed(pb.network, [(1, 1)], d)


def test_a_layer_of_zero_units_is_not_pruned():
    pb = _problem([([[0.0], [0.0]], [0.0, 0.0]), ([[0.0, 0.0]], [1.0])], [[1.0]], [1.0])
    assert zero_units(pb.network) == [(1, 0), (1, 1)] and prunable(pb.network) == []


# One sample x = 0, y = 5/2, square loss, weight decay lambda = 1/2; unit 1: w = 0, b = 1, a = 1; unit 2
# all zero; c = 1. f = a relu(b) + c = 2, r = f - y = -1/2. Stationary: dL/db = r a + lambda b = 0,
# dL/da = r b + lambda a = 0, dL/dc = r + lambda c = 0, dL/dw = r a x + lambda w = 0. The pruned net's
# objective 1/2 (a b + c - 5/2)^2 + 1/4 (w^2 + b^2 + a^2 + c^2) has Hessian 1/2 in w and, in (b, a, c),
# [[3/2, 1/2, 1], [1/2, 3/2, 1], [1, 1, 3/2]] (J J' + r d2r + lambda I): eigenvalues 1 and
# (7 +- sqrt 33) / 4, the smallest (7 - sqrt 33) / 4 = 0.3139: a strict local minimum. The zero unit
# regrows at second order iff max_{|u| = 1} |r relu(u_b)| > lambda; that maximum is 1/2 = lambda, at
# u = (0, 1), the active unit's direction (splitting it is flat): certify cannot decide the network
# (it is in fact a global minimum: one hidden layer, a convex loss, decay on every weight and
# max ||Psi|| <= lambda), and says that the pruned network is a certified local minimum.
WD_FLAT = {"W1": [[0.0], [0.0]], "b1": [1.0, 0.0], "W2": [[1.0, 0.0]], "b2": [1.0]}
X1, Y1 = np.array([[0.0]]), np.array([2.5])


def test_weight_decay_flat_valley_reports_the_pruned_certificate():
    rep = certify.check(WD_FLAT, X1, Y1, activation="relu", loss="square", weight_decay=0.5)
    assert rep.verdict == Verdict.INCONCLUSIVE
    assert rep.pruned["units"] == [[1, 1]] and rep.pruned["widths"] == [1, 1, 1]
    assert rep.pruned["verdict"] == "local_min"
    assert "without its 1 all-zero unit(s) (layer 1 unit 1) the network (widths [1, 1, 1]) is a certified local " \
           "minimum" in rep.reason and "whether a zero unit can regrow is not decided" in rep.reason
    # (one hidden layer: the reason says what the bound would prove, README "Collapsed units")
    assert "that bound at this stationary point would make it a global minimum over networks of every width" \
        in rep.reason
    assert f"{(7 - math.sqrt(33)) / 4:.3g}" in rep.pruned["report"]["reason"]        # 0.314
    from certify.report import next_steps
    assert ("the network without its 1 all-zero unit(s) (widths [1, 1, 1]) is a certified local minimum"
            in " ".join(next_steps(rep)))
    d = json.loads(rep.to_json())
    assert d["pruned"]["units"] == [[1, 1]]
    res = certify.verify(d, WD_FLAT, X1, Y1)
    assert res.ok and {"pruned_units", "pruned_fingerprint"} <= {c.name for c in res.checks}
    assert any(c.name.startswith("pruned_") and c.name not in ("pruned_units", "pruned_fingerprint")
               for c in res.checks)


@pytest.mark.parametrize("tamper", ["units", "verdict", "theta", "malformed_units", "malformed_section",
                                    "no_report"])
def test_verify_rejects_a_tampered_pruned_claim(tamper):
    d = json.loads(certify.check(WD_FLAT, X1, Y1, activation="relu", loss="square",
                                 weight_decay=0.5).to_json())
    if tamper == "units":
        d["pruned"]["units"] = [[1, 0]]
    elif tamper == "verdict":
        d["pruned"]["report"]["verdict"] = "saddle"
    elif tamper == "theta":
        d["pruned"]["report"]["problem"]["fingerprint"]["theta"] = "0" * 16
    elif tamper == "malformed_units":
        d["pruned"]["units"] = [[1]]
    elif tamper == "malformed_section":
        d["pruned"] = "x"
    else:
        d["pruned"]["report"] = None
    res = certify.verify(d, WD_FLAT, X1, Y1)
    assert not res.ok and any(c.name.startswith("pruned_") for c in res.failed)


# GT-11 (x = (-1, 0, 1), y = (-1, 0, 1), w = 0, b = 1, a = 0, c = 0: a saddle, the loss falls along
# a = w = t: sum 1 - t^2/2 + t^4) with a second hidden unit all zero. The network without it is GT-11,
# and GT-11's curve with the zero unit kept at 0 is a descent of the network: a saddle.
GT11_ZERO = [([[0.0], [0.0]], [1.0, 0.0]), ([[0.0, 0.0]], [0.0])]
X3, Y3 = np.array([[-1.0], [0.0], [1.0]]), np.array([-1.0, 0.0, 1.0])


def _exact_loss(theta, X, y):
    """Mean 1/2 (f - y)^2 of the 1-2-1 ReLU net, in fractions (theta in certify's order)."""
    w1, w2, b1, b2, a1, a2, c = (Fraction(float(v)) for v in theta)
    total = Fraction(0)
    for x, t in zip(X[:, 0], y):
        x = Fraction(float(x))
        f = a1 * max(w1 * x + b1, 0) + a2 * max(w2 * x + b2, 0) + c
        total += (f - Fraction(float(t))) ** 2 / 2
    return total / len(y)


def test_a_saddle_of_the_pruned_network_is_lifted_and_reverified():
    from certify.driver import _pruned_stage
    pb = _problem(GT11_ZERO, X3, Y3)
    fwd, kinks = structure_for(pb, None)
    lifted, pruned = _pruned_stage(pb, fwd, kinks, prunable(pb.network), None, time.perf_counter() + 60, 60.0,
                                   False)
    assert pruned is None and lifted is not None
    verdict, ref, reason, method = lifted
    assert verdict == Verdict.SADDLE and method.startswith("pruned/")
    assert "keep its 1 all-zero unit(s) (layer 1 unit 1) at 0" in reason
    d = np.asarray(ref["direction"])
    e = np.zeros_like(d) if ref.get("curvature_direction") is None else np.asarray(ref["curvature_direction"])
    zero_coords = [1, 3, 5]                      # W1[1, 0], b1[1], W2[0, 1] in certify's order
    assert not np.any(d[zero_coords]) and not np.any(e[zero_coords])
    t = float(ref["step"])
    after = pb.theta + t * d + 0.5 * t * t * e
    assert _exact_loss(after, X3, Y3) < _exact_loss(pb.theta, X3, Y3) == Fraction(1, 3)


def test_check_of_gt11_with_a_zero_unit_is_a_saddle_and_verifies():
    layers = {"W1": GT11_ZERO[0][0], "b1": GT11_ZERO[0][1], "W2": GT11_ZERO[1][0], "b2": GT11_ZERO[1][1]}
    rep = certify.check(layers, X3, Y3, activation="relu", loss="square")
    assert rep.verdict == Verdict.SADDLE
    assert certify.verify(json.loads(rep.to_json()), layers, X3, Y3).ok



def test_polish_sets_a_shrinking_unit_to_zero():
    """Unit 2 at (w, b, a) = (1e-7, 0, 1e-7) on WD_FLAT's data: x = 0, so it adds a relu(w 0 + b) = 0 to the
    output and only lambda/2 (w^2 + a^2) = 5e-15 to the loss; at 0 that is gone. The polish sets it to 0
    (a unit 1e-7 the size of the layer's largest) and the polished point is WD_FLAT."""
    start = {"W1": [[0.0], [1e-7]], "b1": [1.0, 0.0], "W2": [[1.0, 1e-7]], "b2": [1.0]}
    rep = certify.check(start, X1, Y1, activation="relu", loss="square", weight_decay=0.5, polish=True,
                        time_limit=30)
    theta = np.asarray(rep.polish["theta"])
    assert np.array_equal(theta, [0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    assert rep.polish["loss_before"] - rep.polish["loss_after"] == pytest.approx(5e-15, rel=1e-3)
    assert rep.verdict == Verdict.INCONCLUSIVE and rep.pruned["units"] == [[1, 1]]


def test_snap_threshold_takes_units_a_millionth_of_their_layer():
    """On the trained family units of 3e-8 and 6e-9 of their layer's largest were left shrinking (the
    polish stopped short of a KKT point); the polish snaps below 1e-6 of the layer's largest."""
    from certify.polish.limits import SNAP_DURING
    from certify.polish.pieces import snap_collapsed
    for size, snapped in ((1e-7, True), (1e-5, False)):
        pb = _problem([([[0.5], [size]], [1.0, size]), ([[1.0, size]], [1.0])], [[1.0], [2.0]], [1.0, 3.0], wd=0.1)
        theta, units = snap_collapsed(pb, pb.theta, rel=SNAP_DURING)
        assert (units == [(1, 1)]) is snapped
        assert np.array_equal(theta[[1, 3, 5]], [0.0, 0.0, 0.0]) is snapped


def test_a_descent_of_the_pruned_network_is_lifted_with_its_slope():
    """GT-5 (x = (-1, 0, 1), y = (-1, 1, 1), (w, b, a, c) = (1, 0, 1, 0): L'(theta; d) = -max(db, 0) / 3, not
    stationary) with a second hidden unit all zero: the lifted direction has the same slope."""
    from certify.driver import _pruned_stage
    pb = _problem([([[1.0], [0.0]], [0.0, 0.0]), ([[1.0, 0.0]], [0.0])], X3, [-1.0, 1.0, 1.0])
    fwd, kinks = structure_for(pb, None)
    lifted, pruned = _pruned_stage(pb, fwd, kinks, prunable(pb.network), None, time.perf_counter() + 60, 60.0,
                                   False)
    verdict, ref, reason, method = lifted
    assert verdict == Verdict.NOT_STATIONARY and pruned is None
    d = np.asarray(ref["direction"])
    assert not np.any(d[[1, 3, 5]])
    # residuals (1, -1, 0) at pre-activations (-1, 0, 1): L'(theta; d) = (dc - (max(db, 0) + dc)) / 3 for any d
    assert d[2] > 0 and ref["directional_derivative"] == pytest.approx(-d[2] / 3, rel=1e-12)
    assert "keep its 1 all-zero unit(s) (layer 1 unit 1) at 0" in reason and method.startswith("pruned/")
