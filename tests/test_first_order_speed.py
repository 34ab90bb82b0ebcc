"""The cheap paths of the first-order check at a not-stationary point (issue 12, goal 1).

* the loss bounds that replace the absolute forward pass (:mod:`certify.loss_bound`) contain the
  exact rational loss (:mod:`tests.exact`, which never imports certify);
* at a smooth not-stationary point the absolute twin of the tangent network is never built: the
  nonzero gradient is shown from output-layer entries, the refutation from the loss bounds;
* weight gradients computed in the fast BLAS orientation equal the plain product.
"""

import numpy as np
import pytest

import certify
from certify.data import Dataset, Problem
from certify.evaluate import loss_with_bound
from certify.kinks import find_kinks
from certify.loss_bound import loss_at_forward, loss_rank_one
from certify.network import Network
from certify.tangent import first_order_model, outer_sum
from certify.first_order import decide_first_order
from certify.refute import refute
from tests import exact

LOSSES = {"square": 1, "absolute": 2, "hinge": 1, "multiclass_hinge": 3}


def _random_problem(seed, loss, activation="relu", widths=(3, 5, 4), n=7, weight_decay=0.0):
    rng = np.random.default_rng(seed)
    C = LOSSES[loss] if loss != "square" else widths[-1]
    widths = tuple(widths[:-1]) + (C,)
    weights = [rng.standard_normal((o, i)) for i, o in zip(widths[:-1], widths[1:])]
    biases = [rng.standard_normal(o) for o in widths[1:]]
    X = rng.standard_normal((n, widths[0]))
    if loss in ("hinge",):
        y = rng.choice([-1.0, 1.0], size=n)
    elif loss == "multiclass_hinge":
        y = rng.integers(0, C, size=n).astype(float)
    else:
        y = rng.standard_normal((n, C))
    net = Network(tuple(weights), tuple(biases), activation)
    return Problem(net, Dataset(X, y), loss, weight_decay)


def _exact_loss(problem, theta):
    net = problem.network
    layers = net.split(theta)
    ex_layers = [([[exact.as_fraction(float(v)) for v in row] for row in W], [exact.as_fraction(float(v)) for v in b])
                 for W, b in layers]
    act = net.activation
    spec = act.name if act.name != "leaky_relu" else ("leaky_relu", exact.as_fraction(act.alpha))
    y = problem.data.y
    if problem.loss.name in ("hinge", "multiclass_hinge"):
        ys = [int(v) if problem.loss.name == "multiclass_hinge" else exact.as_fraction(float(v)) for v in y]
    else:
        ys = [[exact.as_fraction(float(v)) for v in row] for row in problem.Y]
    X = [[exact.as_fraction(float(v)) for v in row] for row in problem.X]
    return exact.loss(ex_layers, X, ys, spec, problem.loss.name, exact.as_fraction(problem.weight_decay))


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("activation", ["relu", "leaky_relu:0.3", "abs"])
def test_rank_one_bound_contains_the_exact_loss(loss, activation):
    for seed in range(3):
        problem = _random_problem(seed, loss, activation, weight_decay=0.25 if seed == 2 else 0.0)
        theta = problem.theta + 1e-3 * np.random.default_rng(seed + 10).standard_normal(problem.n_params)
        got = loss_rank_one(problem, theta)
        truth = _exact_loss(problem, theta)
        assert abs(exact.as_fraction(got.value) - truth) <= exact.as_fraction(got.error)
        # not absurdly loose: within a few thousand times the absolute-pass bound
        ref = loss_with_bound(problem, theta)
        assert got.error <= 1e4 * max(ref.error, 1e-300)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_bound_from_the_forward_pass_contains_the_exact_loss(loss):
    for seed in range(3):
        problem = _random_problem(seed, loss, "leaky_relu:0.25")
        fwd = problem.network.forward(problem.X, with_scale=True)
        got = loss_at_forward(problem, fwd)
        truth = _exact_loss(problem, problem.theta)
        assert abs(exact.as_fraction(got.value) - truth) <= exact.as_fraction(got.error)
        assert got.value == loss_with_bound(problem, problem.theta).value
    assert loss_at_forward(problem, problem.network.forward(problem.X)) is None   # no scale: no bound


def test_rank_one_bound_is_not_fooled_by_cancellation():
    """Large opposite terms cancel to a small loss: the bound must still cover the rounding."""
    W1 = np.array([[1e8, -1e8 + 1e-3], [3.0, 1.0]])
    b1 = np.array([0.5, -0.25])
    W2 = np.array([[1.0, -1e-8]])
    b2 = np.array([0.1])
    X = np.array([[1.0, 1.0], [0.3, 0.7], [1 / 3, 1 / 7]])
    y = np.array([0.2, -0.4, 1.0])
    problem = Problem(Network((W1, W2), (b1, b2), "relu"), Dataset(X, y), "square")
    got = loss_rank_one(problem, problem.theta)
    truth = _exact_loss(problem, problem.theta)
    assert abs(exact.as_fraction(got.value) - truth) <= exact.as_fraction(got.error)


def test_absolute_twin_is_not_built_at_a_smooth_not_stationary_point():
    """Regression (issue 12): the twin (a whole absolute backward pass) was built for every check."""
    problem = _random_problem(0, "square", "relu", widths=(4, 30, 3), n=200)
    fwd = problem.network.forward(problem.X, with_scale=True)
    kinks = find_kinks(problem, fwd)
    assert kinks.n_total == 0
    fo = first_order_model(problem, fwd, kinks)
    out = decide_first_order(problem, fwd, kinks, fo)
    assert out.stationary is False and out.certificate["nonzero_entry"]["rounding_bound"] > 0
    i = out.certificate["nonzero_entry"]["index"]
    assert abs(fo.g[i]) > out.certificate["nonzero_entry"]["rounding_bound"]
    ref = refute(problem, fwd, kinks, fo, out.direction)
    assert ref["verified"]
    assert fo.__dict__.get("_absolute") is None
    # and the nonzero entry's bound is the full twin's bound at that entry
    assert fo.g_error[i] == pytest.approx(out.certificate["nonzero_entry"]["rounding_bound"], rel=1e-12)


def test_check_refutes_with_several_outputs_and_verify_agrees():
    problem = _random_problem(1, "square", "leaky_relu:0.1", widths=(5, 40, 6), n=300)
    net = problem.network
    model = list(zip(net.weights, net.biases))
    report = certify.check(model, problem.X, problem.data.y, activation="leaky_relu:0.1", loss="square")
    assert report.verdict.value == "not_stationary"
    assert certify.verify(report.to_dict(), model, problem.X, problem.data.y).ok


@pytest.mark.parametrize("shapes", [((50, 3), (50, 40)), ((50, 40), (50, 3)), ((7, 1), (7, 1))])
def test_outer_sum_is_the_weight_gradient(shapes):
    rng = np.random.default_rng(0)
    delta, x = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    np.testing.assert_allclose(outer_sum(delta, x), delta.T @ x, rtol=1e-12, atol=1e-12)


def test_benchmark_numpy_pass_is_the_loss_and_gradient():
    """The benchmark's baseline (plain numpy, written apart from certify) computes the same thing."""
    from benchmarks.first_order import numpy_pass
    from certify.tangent import loss_gradient
    problem = _random_problem(2, "square", "leaky_relu:0.2", widths=(4, 9, 3), n=20)
    net = problem.network
    loss, grads = numpy_pass(net.weights, net.biases, problem.X, problem.Y, "leaky_relu:0.2")
    assert loss == pytest.approx(problem.value(), rel=1e-12)
    flat = np.concatenate([np.concatenate([gW.ravel(), gb]) for gW, gb in grads])
    np.testing.assert_allclose(flat, loss_gradient(problem), rtol=1e-10, atol=1e-13)


def test_cheap_candidate_directions_stop_at_their_deadline():
    """4,000 candidates at 10 ms each would take 40 s; the search stops at its deadline, proving nothing."""
    import time
    from types import SimpleNamespace

    import scipy.sparse as sp

    from certify.first_order import _cheap_descent
    rng = np.random.default_rng(0)
    one = SimpleNamespace(g=np.zeros(50), a=sp.csr_matrix(rng.standard_normal((3000, 50))))
    calls = []

    def flat(d):                    # no candidate descends
        calls.append(1)
        time.sleep(0.01)
        return 0.0
    t0 = time.perf_counter()
    assert _cheap_descent(one, 1e-12, evaluate=flat, deadline=t0 + 0.2) is None
    assert time.perf_counter() - t0 < 1.0 and len(calls) < 100
    # a descending candidate is still found and returned when there is time: -e_1 along g = e_1
    one = SimpleNamespace(g=np.eye(50)[0], a=sp.csr_matrix((0, 50)))
    out = _cheap_descent(one, 1e-12, evaluate=lambda d: float(one.g @ d), deadline=time.perf_counter() + 5)
    assert out is not None and out.stationary is False and out.min_value == -1.0


def test_a_milp_too_large_for_the_time_left_is_not_started(monkeypatch):
    from types import SimpleNamespace

    import certify.first_order as F

    def never(*a, **k):
        raise AssertionError("HiGHS must not be called")
    monkeypatch.setattr(F, "solve", never)
    prog = SimpleNamespace(n_cols=1_000_000)
    out = F._milp_outcome(prog, {}, lambda d: 0.0, 1e-12, time_limit=1.0)
    assert out.stationary is None and "not attempted" in out.reason and "1,000,000 columns" in out.reason
