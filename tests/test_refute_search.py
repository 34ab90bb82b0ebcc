"""The step search of a refutation (:func:`certify.refute._search`): when the first-order distance
to the next kink puts every shorter step where no decrease can show, longer steps are tried.

The answers come from closed forms: on a network without hidden layer and square loss,
``L(theta + t d)`` is a quadratic in ``t`` computed here by hand.
"""

import numpy as np
import pytest

import certify.refute as R
from certify.data import Dataset, Problem
from certify.driver import check_problem
from certify.network import Network


def line_problem():
    """f(x) = w x + b at w = b = 0 on the samples (1, 1) and (2, 3): L = 1/4 ((w + b - 1)^2 + (2w + b - 3)^2)."""
    X = np.array([[1.0], [2.0]])
    y = np.array([1.0, 3.0])
    net = Network([np.zeros((1, 1))], [np.zeros(1)], "relu")
    return Problem(net, Dataset(X, y), "square")


def loss_along(t, d):
    """L(t d) by hand for :func:`line_problem` (d = (dw, db))."""
    dw, db = d
    return 0.25 * ((t * (dw + db) - 1.0) ** 2 + (t * (2 * dw + db) - 3.0) ** 2)


def test_longer_steps_find_the_decrease_a_tiny_start_misses():
    problem = line_problem()
    theta = problem.theta
    d = np.array([1.0, 0.0])
    point = lambda s: theta + s * d                                   # noqa: E731
    # from 1e-40 every shrinking step leaves theta unchanged in float64: no decrease anywhere
    assert R._search(problem, theta, point, 1e-40, 0.25, 40) is None
    found = R._search(problem, theta, point, 1e-40, 0.25, 40, t_hi=0.1)
    assert found is not None
    t, dec = found
    assert 1e-12 < t <= 0.1
    assert dec.verified
    assert dec.decrease == pytest.approx(loss_along(0.0, d) - loss_along(t, d), rel=1e-9)


def test_a_decrease_only_within_rounding_distance_gives_way_to_a_longer_one():
    problem = line_problem()
    theta = problem.theta
    d = np.array([1.0, 1.0])
    point = lambda s: theta + s * d                                   # noqa: E731
    # the shrinking phase would stop at its first step (1e-14: a decrease verified, but microscopic)
    t, _ = R._search(problem, theta, point, 1e-14, 0.5, 40)
    assert t == 1e-14
    t, dec = R._search(problem, theta, point, 1e-14, 0.5, 40, t_hi=0.1)
    assert t * np.linalg.norm(d) > R.MICROSCOPIC
    assert dec.decrease == pytest.approx(loss_along(0.0, d) - loss_along(t, d), rel=1e-9)


def test_the_checker_refutes_past_a_kink_at_rounding_distance(monkeypatch):
    """The checker's own refutation, with the next kink made to look 1e-40 away along every direction:
    before the longer steps it reported no verified decrease (the diabetes_abs_sgd polished point)."""
    problem = line_problem()
    monkeypatch.setattr(R, "_step_to_next_kink", lambda *a, **k: 1e-40)
    report = check_problem(problem, time_limit=30)
    ref = report.refutation
    assert report.verdict.value == "not_stationary"
    d = np.asarray(ref["direction"])
    assert ref["verified"] and ref["step"] * np.linalg.norm(d) > R.MICROSCOPIC     # (max(||theta||, 1) = 1)
    assert ref["decrease"] == pytest.approx(loss_along(0.0, d) - loss_along(ref["step"], d), rel=1e-9)
