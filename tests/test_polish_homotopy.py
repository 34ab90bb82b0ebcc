"""The smoothing homotopy run after a stalled polish (:mod:`certify.polish.homotopy`).

Checked against independent answers: central differences of the smoothed loss for its gradient,
the losses' own values for the smoothing's limit, a linear program (SciPy's ``linprog``) for the
minimum of least-absolute-deviation regression, and an independent evaluation of the loss for
"never goes up".
"""

import time

import numpy as np
import pytest
from scipy.optimize import linprog

from certify.data import Dataset, Problem
from certify.network import Network
from certify.polish import method as M
from certify.polish.homotopy import smoothed_value_and_gradient, smoothing_descent, smoothing_scales
from certify.polish.result import PolishResult
from tests.test_polish import trained


def small_problem(loss, activation="relu", lam=0.0, seed=0, n_out=1):
    rng = np.random.default_rng(seed)
    n, d, h = 25, 3, 5
    X = rng.standard_normal((n, d))
    if loss in ("hinge", "logistic"):
        y = np.where(X[:, 0] * X[:, 1] > 0, 1.0, -1.0)
    elif loss in ("multiclass_hinge", "cross_entropy"):
        y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)
        n_out = 3
    else:
        y = np.abs(X[:, 0]) - X[:, 2]
    net = Network([rng.standard_normal((h, d)), rng.standard_normal((n_out, h))],
                  [0.1 * rng.standard_normal(h), 0.1 * rng.standard_normal(n_out)], activation)
    return Problem(net, Dataset(X, y), loss, lam)


LOSSES = ["square", "absolute", "hinge", "multiclass_hinge", "logistic", "cross_entropy"]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ["relu", "leaky_relu:0.2", "abs"])
def test_the_gradient_is_the_smoothed_loss_s(loss, activation):
    problem = small_problem(loss, activation, lam=0.01)
    x = problem.theta
    taus, tau_loss = [0.3], 0.2
    _, g = smoothed_value_and_gradient(problem, x, taus, tau_loss)
    rng = np.random.default_rng(1)
    for _ in range(3):
        d = rng.standard_normal(x.size)
        h = 1e-6
        up = smoothed_value_and_gradient(problem, x + h * d, taus, tau_loss)[0]
        down = smoothed_value_and_gradient(problem, x - h * d, taus, tau_loss)[0]
        assert (up - down) / (2 * h) == pytest.approx(g @ d, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("loss", LOSSES)
def test_the_smoothed_loss_tends_to_the_loss(loss):
    problem = small_problem(loss, lam=0.01)
    true = problem.value()
    gaps = [abs(smoothed_value_and_gradient(problem, problem.theta, [tau], tau)[0] - true)
            for tau in (1e-1, 1e-3, 1e-5)]
    assert gaps[2] < 1e-3 * max(gaps[0], 1e-12) or gaps[2] < 1e-9


def test_least_absolute_deviations_reach_the_linear_program_s_minimum():
    # no hidden layer, absolute loss: min_w,b mean |w x + b - y| is a linear program
    rng = np.random.default_rng(3)
    n, d = 40, 2
    X = rng.standard_normal((n, d))
    y = X @ np.array([1.5, -0.5]) + 0.2 + rng.laplace(size=n)
    net = Network([np.zeros((1, d))], [np.zeros(1)], "relu")
    problem = Problem(net, Dataset(X, y), "absolute")
    # variables (w, b, s): minimise mean s subject to -s <= X w + b - y <= s
    A = np.column_stack([X, np.ones(n)])
    c = np.concatenate([np.zeros(d + 1), np.ones(n) / n])
    A_ub = np.block([[A, -np.eye(n)], [-A, -np.eye(n)]])
    b_ub = np.concatenate([y, -y])
    lp = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=[(None, None)] * (d + 1) + [(0, None)] * n, method="highs")
    theta, info = smoothing_descent(problem, deadline=time.perf_counter() + 30, max_distance=100.0)
    assert problem.value(theta) == pytest.approx(lp.fun, rel=1e-5)
    assert problem.value(theta) >= lp.fun - 1e-12            # (the LP's value is the minimum)
    assert info["loss_after"] == problem.value(theta)


def test_the_loss_never_goes_up_and_the_summary_is_the_point_s():
    problem = trained((3, 12, 6, 1), "square", 1, seed=2, n=80, steps=400)
    theta, info = smoothing_descent(problem, deadline=time.perf_counter() + 5)
    assert problem.value(theta) <= problem.value()
    assert info["loss_after"] == problem.value(theta) and info["loss_before"] == problem.value()
    assert [s["tau"] for s in info["stages"]] == sorted((s["tau"] for s in info["stages"]), reverse=True)


def test_a_deadline_in_the_past_returns_the_start():
    problem = trained((3, 12, 1), "square", 1, seed=1, n=50, steps=50)
    theta, info = smoothing_descent(problem, deadline=time.perf_counter() - 1.0)
    assert np.array_equal(theta, problem.theta)
    assert info["stop"] == "the budget ran out"


def test_the_point_stays_within_the_distance_limit():
    problem = trained((3, 12, 1), "square", 1, seed=1, n=50, steps=50)      # far from a minimum
    limit = 0.05 * max(np.linalg.norm(problem.theta), 1.0)
    theta, _ = smoothing_descent(problem, deadline=time.perf_counter() + 5, max_distance=0.05)
    assert np.linalg.norm(theta - problem.theta) <= limit
    assert problem.value(theta) <= problem.value()


def test_the_scales_are_the_layers_rms():
    problem = small_problem("hinge")
    rms, loss_rms = smoothing_scales(problem)
    fwd = problem.network.forward(problem.X)
    assert rms == [pytest.approx(float(np.sqrt(np.mean(fwd.pre[0] ** 2))))]
    vals, _ = problem.loss.pieces(fwd.output, problem.Y)
    assert loss_rms == pytest.approx(float(np.sqrt(np.mean(vals ** 2))))


def result(converged, reason, far=False, no_minimum=False):
    res = PolishResult(theta=np.zeros(1), converged=converged, reason=reason)
    res.far, res.no_minimum = far, no_minimum
    return res


def test_it_runs_only_after_a_polish_that_stopped_short_with_time_left():
    worth = M._homotopy_worth_it
    stalled = "stalled: the loss fell by less than its rounding over the last 5 rounds"
    assert worth(result(False, stalled), left=100.0, budget_s=200.0)
    assert not worth(result(True, "converged: kinks held to rounding"), left=100.0, budget_s=200.0)
    assert not worth(result(False, "the time budget ran out"), left=100.0, budget_s=200.0)
    assert not worth(result(False, stalled, far=True), left=100.0, budget_s=200.0)
    assert not worth(result(False, stalled, no_minimum=True), left=100.0, budget_s=200.0)
    assert not worth(result(False, stalled), left=10.0, budget_s=200.0)


def test_polish_point_goes_on_from_the_homotopy_after_a_stall(monkeypatch):
    problem = trained((3, 12, 6, 1), "square", 1, seed=2, n=80, steps=400)
    calls = []
    real_polish = M.polish

    def stalling_polish(current, **kw):
        if not calls:                      # the first polish stops at once (no round), far from a minimum
            kw["max_rounds"] = 0
        res = real_polish(current, **kw)
        calls.append(current.theta.copy())
        return res

    monkeypatch.setattr(M, "polish", stalling_polish)
    res = M.polish_point(problem, lambda pr, limit: pytest.fail("judged before the homotopy's polish"),
                         budget_s=20.0, max_rounds=2, smoothing=True)
    assert res.homotopy is not None and len(calls) == 2
    assert problem.value(calls[1]) == res.homotopy["loss_after"] < problem.value(calls[0])
    assert res.loss_after <= res.loss_before


def test_it_is_not_the_default(monkeypatch):
    problem = trained((3, 12, 6, 1), "square", 1, seed=2, n=80, steps=400)
    real_polish = M.polish
    monkeypatch.setattr(M, "polish", lambda current, **kw: real_polish(current, **{**kw, "max_rounds": 0}))
    monkeypatch.setattr(M, "smoothing_descent", lambda *a, **k: pytest.fail("the homotopy ran by default"))
    res = M.polish_point(problem, None, budget_s=5.0, max_rounds=2)
    assert res.homotopy is None and res.to_dict()["homotopy"] is None


def test_check_and_the_cli_say_when_it_ran(monkeypatch, tmp_path, capsys):
    import json

    import certify
    from certify.cli import main
    problem = trained((3, 12, 6, 1), "square", 1, seed=2, n=80, steps=400)
    real_polish = M.polish
    calls = []

    def first_stops_at_once(current, **kw):
        if not calls:
            kw["max_rounds"] = 0
        calls.append(1)
        return real_polish(current, **kw)
    monkeypatch.setattr(M, "polish", first_stops_at_once)
    net, X, y = problem.network, problem.data.X, problem.data.y
    report = certify.check(net, X=X, y=y, loss="square", smoothing=True, time_limit=3.0)
    hm = json.loads(report.to_json())["polish"]["homotopy"]
    assert hm["stages"] and hm["loss_after"] <= hm["loss_before"] <= problem.value()
    assert "smoothing homotopy over" in report.summary()
    path = tmp_path / "net.npz"
    np.savez(path, X=X, y=y, **{f"{k}{i}": a for i, (W, b) in enumerate(net.split(net.theta), start=1)
                                for k, a in (("W", W), ("b", b))})
    calls.clear()
    rc = main(["check", str(path), "--loss", "square", "--smoothing", "--json", "--time-limit", "3"])
    out = json.loads(capsys.readouterr().out)
    hm = out["polish"]["homotopy"]
    assert rc in (0, 10, 11, 20) and hm["stages"] and hm["loss_after"] <= hm["loss_before"] <= problem.value()
