"""The exact cell construction for a polished point (certify.exact.snap, the driver's prefer_nearby).

Independent answers only: the minima below are derived by hand. One hidden unit, ``f(x) = a relu(w x +
b) + c``, absolute loss; at ``(w, b, a, c) = (1/3, 0, 1, 0)`` with the samples

    (-3, 0), (3, 1), (3, 1), (6, 2), (6, 3), (6, 1)

``6 L = |c| + 2 |g1| + |g2| + |f6 - 3| + |f6 - 1|`` near the point (x = -3 inactive, x = 3, 6
active), with ``g1 = 3u + v + c - 1``, ``g2 = 6u + v + c - 2``, ``f6 = g2 + 2`` and ``(u, v) = a (w,
b)``. The last two terms sum to 2 while ``f6`` stays in (1, 3), so ``6 L = 2 + |c| + 2|g1| + |g2|``:
the three forms ``c``, ``g1``, ``g2`` are independent in ``(u, v, c)`` (determinant -3), so the point
is a strict local minimum in ``(u, v, c)`` -- a local minimum modulo the rescaling ``(w, b, a) ->
(w, b, a) / s, s``. The duplicated sample ``(3, 1)`` makes the ties' gradients dependent (LIKQ
fails), so the existence theorem of certify.nearby cannot be used and the construction must.

``1/3`` is no float: at the float point ``w = fl(1/3)`` the residual ``g1 = 3 fl(1/3) - 1 = -2^-54``
is not zero, and exact arithmetic refutes that point (raising ``w`` lowers ``|g1|`` and ``|g2|``).
The exact minimum is one rounding away: ``theta* = (1/3, 0, 1, 0)``, which these tests compare with
the claim's stored rationals.

Replacing ``(6, 1)`` by a second ``(6, 3)`` gives ``6 L = |c| + 2 |g1| + |g2| + 2 |f6 - 3|``: raising
``f6`` alone (``u`` up, ``v`` down by three times as much, ``g1`` and ``c`` fixed) lowers it at slope
-1, so no point near there is a local minimum and nothing may be certified.
"""

from __future__ import annotations

import copy
import json
from fractions import Fraction

import numpy as np

import certify
from certify.data import Dataset, Problem
from certify.driver import check_problem
from certify.exact.snap import snap_cell
from certify.kinks import find_kinks
from certify.network import Network

X = np.array([[-3.0], [3.0], [3.0], [6.0], [6.0], [6.0]])
Y_MIN = np.array([0.0, 1.0, 1.0, 2.0, 3.0, 1.0])
Y_NOT = np.array([0.0, 1.0, 1.0, 2.0, 3.0, 3.0])


def _net(w=1.0 / 3.0, a=1.0, outputs=1):
    W2 = np.full((outputs, 1), a)
    return Network([np.array([[w]]), W2], [np.array([0.0]), np.zeros(outputs)], "relu")


def _problem(y=Y_MIN, loss="absolute", **kw):
    return Problem(_net(**kw), Dataset(X, y), loss)


def test_float_point_is_refuted_exactly_but_its_cell_minimum_is_built():
    pr = _problem()
    assert 3 * Fraction(pr.theta[0]) - 1 == Fraction(-1, 2 ** 54)      # the float point is off its tie
    fwd = pr.network.forward(pr.X, with_scale=True)
    snap = snap_cell(pr, find_kinks(pr, fwd, None))
    assert snap.ok, snap.reason
    assert snap.theta_star.to_strings() == ["1/3", "0", "1", "0"]
    assert 0 < snap.radius < 1e-15


def test_polished_point_gets_a_verified_claim_about_the_exact_minimum():
    pr = _problem()
    report = check_problem(pr, prefer_nearby=True)
    assert report.verdict.value == "local_min", report.reason
    claim = report.claim
    assert claim["level"] == "nearby" and claim["method"] == "rational_snap:cell_u"
    assert claim["theta_star"] == ["1/3", "0", "1", "0"]
    d = json.loads(report.to_json())
    model = [(pr.network.weights[0], pr.network.biases[0]), (pr.network.weights[1], pr.network.biases[1])]
    assert certify.verify(d, model, X, Y_MIN).ok
    # a theta* one 2^-80 off its tie, or a radius too small, fails the re-check
    moved = copy.deepcopy(d)
    moved["claim"]["theta_star"][0] = str(Fraction(1, 3) + Fraction(1, 2 ** 80))
    assert not certify.verify(moved, model, X, Y_MIN).ok
    small = copy.deepcopy(d)
    small["claim"]["radius"] = claim["radius"] / 4
    assert not certify.verify(small, model, X, Y_MIN).ok
    # the theorem needs no weight decay: the same claim for a report that says 1/2 fails the class check
    decayed = copy.deepcopy(d)
    decayed["problem"]["weight_decay"] = 0.5
    failed = [c.name for c in certify.verify(decayed, model, X, Y_MIN).checks if not c.ok]
    assert "nearby_cell_convexity" in failed


def test_no_claim_where_the_cell_is_not_a_minimum():
    pr = _problem(y=Y_NOT)
    fwd = pr.network.forward(pr.X, with_scale=True)
    snap = snap_cell(pr, find_kinks(pr, fwd, None))
    if snap.ok:      # the ties can be held exactly, but theta* is not d-stationary: no certificate
        from certify.exact import exact_first_order_decision
        at = exact_first_order_decision(pr, theta=snap.theta_star.to_fractions().tolist(), refute=False)
        assert at.status != "stationary"
    report = check_problem(pr, prefer_nearby=True)
    assert report.verdict.value != "local_min", report.reason


def test_outside_the_theorem_nothing_is_built():
    assert not snap_cell(_problem(a=0.0)).ok                                   # a zero output weight
    assert not snap_cell(Problem(_net(), Dataset(X, Y_MIN), "absolute", 0.1)).ok   # weight decay
    assert not snap_cell(Problem(_net(outputs=2), Dataset(X, np.c_[Y_MIN, Y_MIN]), "absolute")).ok


# The hinge loss: f(x) = a relu(w x + b) + c at (w, b, a, c) = (2/3, -1, 1, -2) with the samples
#     (-3, -1), (3, -1), (6, +1), (4.5, -1), (4.5, +1)
# z = (-3, 1, 3, 2, 2): x = -3 is inactive (f = c = -2, margin 2, loss 0 and no tie while c < -1), the
# others active with g(x) = u x + beta, (u, beta) = (a w, a b + c) = (2/3, -3). The ties g(3) = -1 and
# g(6) = 1 (margins exactly 1) fix (u, beta); the pair at x = 4.5 costs (1 + g) + (1 - g) = 2 while
# |g(4.5)| < 1, so 5 L = 2 + max(0, 1 + g(3)) + max(0, 1 - g(6)) >= 2 = 5 L(theta): a local minimum
# (not strict: c < -1 and the rescaling are free). At w = fl(2/3) the ties are off by rounding and
# exact arithmetic refutes the point; the construction must hold both ties exactly: theta* = (2/3, -1, 1,
# -2).
X_H = np.array([[-3.0], [3.0], [6.0], [4.5], [4.5]])
Y_H = np.array([-1.0, -1.0, 1.0, -1.0, 1.0])


def test_hinge_vertex_minimum_is_built_from_its_ties():
    net = Network([np.array([[2.0 / 3.0]]), np.array([[1.0]])], [np.array([-1.0]), np.array([-2.0])], "relu")
    pr = Problem(net, Dataset(X_H, Y_H), "hinge")
    fwd = pr.network.forward(pr.X, with_scale=True)
    snap = snap_cell(pr, find_kinks(pr, fwd, None))
    assert snap.ok, snap.reason
    assert snap.theta_star.to_strings() == ["2/3", "-1", "1", "-2"]
    report = check_problem(pr, prefer_nearby=True)
    assert report.verdict.value == "local_min", report.reason
    assert report.claim["method"] == "rational_snap:cell_u"
    assert check_problem(pr).verdict.value == "not_stationary"      # the float point itself, exactly
    model = [(net.weights[0], net.biases[0]), (net.weights[1], net.biases[1])]
    assert certify.verify(json.loads(report.to_json()), model, X_H, Y_H).ok


def test_construction_respects_the_deadline():
    """A polished point's construction is skipped once the command's deadline has passed."""
    import time

    from certify.driver import _try_snap_near
    pr = _problem()
    fwd = pr.network.forward(pr.X, with_scale=True)
    kinks = find_kinks(pr, fwd, None)
    assert _try_snap_near(pr, fwd, kinks, time.perf_counter() + 60) is not None
    assert _try_snap_near(pr, fwd, kinks, time.perf_counter() - 1) is None


def test_a_long_construction_stops_at_its_share_of_the_deadline(monkeypatch):
    """An exact elimination too large for the time left (the near kinks of a polished 10-20-1 net on
    diabetes: one still ran after 9 minutes of a 60 s budget) is stopped by the deadline it runs under,
    SNAP_SHARE of the time left, and the construction claims nothing."""
    import time

    import certify.exact.snap as snap_mod
    from certify import driver
    from certify.exact import linalg
    seen = []

    def endless(problem, kinks=None, *, context=None):     # an elimination that never ends on its own
        seen.append(linalg._DEADLINE.get())
        assert seen[-1] is not None, "the construction runs without a deadline"
        while True:
            linalg.tick()

    monkeypatch.setattr(snap_mod, "snap_cell", endless)
    monkeypatch.setattr(snap_mod, "snap_affine", lambda pr: endless(pr))
    pr = _problem()
    fwd = pr.network.forward(pr.X, with_scale=True)
    start = time.perf_counter()
    deadline = start + 4.0
    assert driver._try_snap_near(pr, fwd, find_kinks(pr, fwd, None), deadline) is None
    assert len(seen) == 1 and seen[0] <= start + driver.SNAP_SHARE * 4.0 + 0.5
    assert time.perf_counter() < deadline         # it left the rest of the budget to the check


def test_exact_elimination_by_hand_and_under_a_passed_deadline():
    """2x + y = 3, x + 3y = 5: x = 4/5, y = 7/5; under a deadline already passed it raises OutOfTime."""
    import time

    import pytest

    from certify.budget import OutOfTime
    from certify.exact.linalg import bareiss_solve, within
    from certify.exact.rational import QArray
    A, b = QArray.from_values([[2, 1], [1, 3]]), QArray.from_values([3, 5])
    assert [str(v) for v in bareiss_solve(A, b).to_fractions()] == ["4/5", "7/5"]
    with within(time.perf_counter() - 1.0), pytest.raises(OutOfTime):
        bareiss_solve(A, b)
    assert [str(v) for v in bareiss_solve(A, b).to_fractions()] == ["4/5", "7/5"]   # (the context ended)
