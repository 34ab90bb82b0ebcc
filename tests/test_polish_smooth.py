"""The L-BFGS first phase of the polish on large networks (:mod:`certify.polish.smooth`).

Its answers are checked against closed forms (ridge regression for a network without hidden layer)
and against the loss evaluated independently; nothing here trusts the phase's own summary.
"""

import time

import numpy as np
import pytest

from certify.data import Dataset, Problem
from certify.network import Network
from certify.polish import polish_point
from certify.polish import smooth as S
from tests.test_polish import trained


def ridge_problem(lam=0.1, n=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.1 * rng.standard_normal(n)
    net = Network([np.zeros((1, d))], [np.zeros(1)], "relu")        # no hidden layer: f = W x + b
    return Problem(net, Dataset(X, y), "square", lam), X, y


def ridge_solution(X, y, lam):
    """argmin 1/(2n) ||X w + b - y||^2 + lam/2 (||w||^2 + b^2), from its normal equations."""
    n = X.shape[0]
    A = np.column_stack([X, np.ones(n)])
    return np.linalg.solve(A.T @ A / n + lam * np.eye(A.shape[1]), A.T @ y / n)


def test_reaches_the_ridge_solution_on_a_smooth_convex_loss():
    problem, X, y = ridge_problem()
    theta, info = S.smooth_descent(problem, deadline=time.perf_counter() + 30, max_distance=10.0)
    assert np.allclose(theta, ridge_solution(X, y, 0.1), atol=1e-7)
    assert info["loss_after"] == pytest.approx(problem.value(theta), rel=0, abs=0)
    assert info["loss_after"] < info["loss_before"] == problem.value()


def test_the_loss_never_goes_up_and_the_point_is_one_it_evaluated():
    problem = trained((3, 12, 6, 1), "square", 1, seed=2, n=80, steps=400)
    theta, info = S.smooth_descent(problem, deadline=time.perf_counter() + 5)
    assert problem.value(theta) <= problem.value()
    assert problem.value(theta) == info["loss_after"]        # the summary's loss is the point's, in float64


def test_a_deadline_in_the_past_returns_the_start():
    problem = trained((3, 12, 1), "square", 1, seed=1, n=50, steps=50)
    theta, info = S.smooth_descent(problem, deadline=time.perf_counter() - 1.0)
    assert np.array_equal(theta, problem.theta)
    assert info["stop"] == "its share of the budget ran out" and info["evaluations"] == 0


def test_the_point_stays_within_the_distance_limit():
    problem = trained((3, 12, 1), "square", 1, seed=1, n=50, steps=50)   # far from a minimum
    free, _ = S.smooth_descent(problem, deadline=time.perf_counter() + 5)
    limit = 0.05 * max(np.linalg.norm(problem.theta), 1.0)
    assert np.linalg.norm(free - problem.theta) > limit                    # (the limit binds)
    theta, info = S.smooth_descent(problem, deadline=time.perf_counter() + 5, max_distance=0.05)
    assert np.linalg.norm(theta - problem.theta) <= limit
    assert problem.value(theta) < problem.value()


def test_it_stops_when_it_stalls_at_a_kink():
    # |w x| at w = 0 with the s_pos branch: L-BFGS oscillates around the kink and cannot lower
    # the loss; it must stop on its own, long before its deadline
    X = np.array([[1.0], [-1.0], [2.0]]); y = np.zeros(3)
    net = Network([np.array([[0.0]]), np.array([[1.0]])], [np.array([0.0]), np.array([0.0])], "relu")
    problem = Problem(net, Dataset(X, y), "absolute", 0.0)
    t0 = time.perf_counter()
    theta, info = S.smooth_descent(problem, deadline=t0 + 20)
    assert time.perf_counter() - t0 < 10
    assert problem.value(theta) <= problem.value()


def test_polish_point_runs_it_only_on_large_networks(monkeypatch):
    problem = trained((3, 12, 6, 1), "square", 1, seed=2, n=80, steps=400)
    assert problem.n_params < S.SMOOTH_MIN_P
    res = polish_point(problem, budget_s=1.0)
    assert res.smooth is None and res.to_dict()["smooth"] is None
    monkeypatch.setattr(S, "SMOOTH_MIN_P", 1)
    res = polish_point(problem, budget_s=1.0)
    assert res.smooth is not None and res.smooth["loss_after"] <= res.smooth["loss_before"]
    assert res.loss_after <= res.loss_before
    assert res.distance == pytest.approx(np.linalg.norm(res.theta - problem.theta))   # from the checkpoint


def test_the_report_says_the_smooth_phase_ran(monkeypatch):
    import json

    import certify
    problem = trained((3, 12, 6, 1), "square", 1, seed=2, n=80, steps=400)
    net, X, y = problem.network, problem.data.X, problem.data.y
    monkeypatch.setattr(S, "SMOOTH_MIN_P", 1)
    report = certify.check(net, X=X, y=y, loss="square", polish=True, time_limit=3.0)
    sm = json.loads(report.to_json())["polish"]["smooth"]
    assert sm["loss_after"] <= sm["loss_before"] and sm["iterations"] >= 0 and sm["stop"]
    assert "L-BFGS first" in report.summary()
    monkeypatch.setattr(S, "SMOOTH_MIN_P", 10**9)
    report = certify.check(net, X=X, y=y, loss="square", polish=True, time_limit=3.0)
    assert "L-BFGS" not in report.summary()
