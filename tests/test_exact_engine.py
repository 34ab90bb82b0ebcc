"""The exact-arithmetic engine (certify.exact) against independently derived exact answers.

The expected values never come from the engine: they come from the rational oracle ``tests/exact.py``
(which never imports certify) -- losses, pre-activations, and the Taylor coefficients of
``L(theta + t d + t^2/2 e)`` read off by exact polynomial interpolation of oracle losses --, from the
hand derivations in ``tests/reference/cases.py`` (multipliers, stationarity), and from the worked
example of issue 13 (``L'(theta; -e_2) = -1/51539607552``).
"""

from __future__ import annotations

import copy
import json
from fractions import Fraction

import numpy as np
import pytest

import certify
from certify.data import Dataset, Problem
from certify.exact import (QArray, curve_coefficients, directional_derivative, exact_cost, exact_first_order_decision,
                           exact_kinks, exact_multipliers, exact_problem, exact_refutation, exact_step,
                           first_order_model, fits, forward, in_bounds, loss_value, one_level, recheck_certificate,
                           residual_of)
from certify.exact.linalg import bareiss_solve, solve_consistent, tangential_direction
from certify.first_order import decide_first_order
from certify.kinks import find_kinks
from certify.network import Network
from certify.report import Verdict
from certify.tangent import first_order_model as float_first_order_model
from tests import exact as oracle
from tests.helpers import case_inputs
from tests.reference.cases import by_name

F = Fraction
ACTIVATIONS = {"relu": "relu", "leaky_relu:0.25": ("leaky_relu", F(1, 4)), "abs": "abs", "identity": "identity"}


# ---------------------------------------------------------------------------- oracle side
def oracle_case(Ws, bs, X, y, activation, loss):
    """Layers, inputs and targets as the oracle takes them (exact values of the floats)."""
    layers = [([[F(float(v)) for v in row] for row in W], [F(float(v)) for v in b]) for W, b in zip(Ws, bs)]
    Xo = [[F(float(v)) for v in row] for row in X]
    if loss in ("hinge", "multiclass_hinge"):
        yo = [int(v) for v in np.ravel(y)]
    else:
        Y = np.asarray(y, dtype=np.float64).reshape(len(Xo), -1)
        yo = [F(float(r[0])) if Y.shape[1] == 1 else [F(float(v)) for v in r] for r in Y]
    return layers, Xo, yo, ACTIVATIONS.get(activation, activation)


def taylor(layers, X, y, act, loss, wd, d, e=None, tau=F(1, 2 ** 64)):
    """Exact coefficients ``P_0, P_1, ...`` of ``L(theta + t d + t^2/2 e)`` for small ``t > 0``.

    On the piece the curve enters the loss is a polynomial in ``t`` of degree at most ``4 L + 4``
    (``2 L + 2`` on a line);
    it is interpolated exactly through oracle losses at ``t = j tau`` (``tau`` far below the distance
    to any kink of these instances, whose nonzero values are at least 1/64).
    """
    deg = 4 * len(layers) + 4 if e is not None else 2 * len(layers) + 2
    ts = [j * tau for j in range(deg + 1)]
    vals = [oracle.loss(oracle.on_curve(layers, d, t, e), X, y, act, loss, wd) for t in ts]
    n = deg + 1
    A = [[t ** k for k in range(n)] + [v] for t, v in zip(ts, vals)]
    for col in range(n):
        piv = next(r for r in range(col, n) if A[r][col] != 0)
        A[col], A[piv] = A[piv], A[col]
        for r in range(n):
            if r != col and A[r][col] != 0:
                f = A[r][col] / A[col][col]
                A[r] = [a - f * b for a, b in zip(A[r], A[col])]
    return [A[k][n] / A[k][k] for k in range(n)]


def problem_of(Ws, bs, X, y, activation, loss, wd=0.0) -> Problem:
    return Problem(Network(list(Ws), list(bs), activation), Dataset(np.asarray(X, float), np.asarray(y)), loss, wd)


def case_problem(name: str, y=None, theta=None) -> Problem:
    a = case_inputs(by_name(name))
    net = Network([W for W, _ in a["model"]], [b for _, b in a["model"]], a["activation"])
    if theta is not None:
        net = net.with_theta(theta)
    return Problem(net, Dataset(a["X"], a["y"] if y is None else y), a["loss"], a["weight_decay"])


def oracle_of(problem: Problem, theta=None):
    """The oracle's view of a problem (optionally at a rational point)."""
    net = problem.network
    th = [F(float(v)) for v in net.theta] if theta is None else [F(v) for v in theta]
    layers = oracle.unflatten(th, [W.shape for W in net.weights])
    _, Xo, yo, act = oracle_case(net.weights, net.biases, problem.X, problem.data.y, net.activation.spec,
                                 problem.loss.name)
    act = ("leaky_relu", F(net.activation.alpha)) if net.activation.name == "leaky_relu" else net.activation.name
    return layers, Xo, yo, act, problem.loss.name, F(problem.weight_decay)


def float_pipeline(problem: Problem, tol=None):
    fwd = problem.network.forward(problem.X, with_scale=True)
    kinks = find_kinks(problem, fwd, tol)
    model = float_first_order_model(problem, fwd, kinks)
    return decide_first_order(problem, fwd, kinks, model), model, kinks


# ---------------------------------------------------------------------------- random instances
def random_instance(rng, depth: int, activation: str, loss: str, *, nested: bool = False):
    """A small dyadic network with unit kinks planted exactly (``b = -w . x_i``) and, for the
    piecewise losses, a loss kink planted exactly (hinge margin 1, zero residual, a tie)."""
    C = {"hinge": 1, "multiclass_hinge": 3}.get(loss, int(rng.integers(1, 3)))
    widths = [int(rng.integers(1, 3))] + [int(rng.integers(2, 4)) for _ in range(depth - 1)] + [C]
    n = int(rng.integers(3, 6))
    Ws = [rng.integers(-4, 5, size=(widths[l + 1], widths[l])) / 4 for l in range(depth)]
    bs = [rng.integers(-4, 5, size=widths[l + 1]) / 8 for l in range(depth)]
    X = rng.integers(-3, 4, size=(n, widths[0])).astype(float) / 2
    net = Network(Ws, bs, activation)
    if depth > 1:
        for _ in range(2):                                 # unit kinks in layer 1
            i, j = int(rng.integers(n)), int(rng.integers(widths[1]))
            bs[0][j] = -(Ws[0][j] @ X[i])
        if nested and depth > 2:                           # a layer-2 kink at a sample with a layer-1 kink
            i = int(np.nonzero(np.any(Network(Ws, bs, activation).forward(X).pre[0] == 0, axis=1))[0][0])
            x1 = Network(Ws, bs, activation).forward(X).post[1][i]
            bs[1][0] = -(Ws[1][0] @ x1)
    net = Network(Ws, bs, activation)
    out = net(X)
    i = int(rng.integers(n))
    if loss == "hinge":
        y = rng.choice([-1.0, 1.0], n)
        bs[-1][0] += y[i] - out[i, 0]                     # f_i = y_i: margin exactly 1
    elif loss == "multiclass_hinge":
        y = rng.integers(0, C, n)
        j = (int(y[i]) + 1) % C
        bs[-1][j] += out[i, y[i]] - 1.0 - out[i, j]        # f_j + 1 = f_y: a tie with the zero piece
    elif loss == "absolute":
        y = rng.integers(-4, 5, size=(n, C)) / 4
        y[i] = out[i]                                      # residual exactly 0
    else:
        y = rng.integers(-4, 5, size=(n, C)) / 4
    return Ws, bs, X, (y if loss in ("hinge", "multiclass_hinge") or C > 1 else y[:, 0])


INSTANCES = [(seed, depth, act, loss, wd) for seed, (depth, act, loss, wd) in enumerate(
    [(d, a, l, w) for d in (1, 2, 3) for a in ACTIVATIONS for l in ("square", "hinge", "multiclass_hinge", "absolute")
     for w in (0.0, 0.125)][::3])]


@pytest.mark.parametrize("seed,depth,activation,loss,wd", INSTANCES)
def test_exact_quantities_match_the_oracle(seed, depth, activation, loss, wd):
    rng = np.random.default_rng(100 + seed)
    Ws, bs, X, y = random_instance(rng, depth, activation, loss, nested=seed % 2 == 0)
    problem = problem_of(Ws, bs, X, y, activation, loss, wd)
    layers, Xo, yo, act = oracle_case(Ws, bs, X, y, activation, loss)
    ep = exact_problem(problem)
    fwd = forward(ep)
    # pre-activations of every layer: the oracle's output of the network cut after that layer
    for l in range(1, depth + 1):
        want = [oracle.forward(layers[:l], x, act) for x in Xo]
        assert fwd.pre[l - 1].to_fractions().tolist() == want
    assert loss_value(ep) == oracle.loss(layers, Xo, yo, act, loss, F(wd))
    kinks, _ = exact_kinks(ep, fwd)
    zeros = {(l, i, j) for l in range(1, depth) for i, x in enumerate(Xo)
             for j, z in enumerate(oracle.forward(layers[:l], x, act)) if z == 0} if activation != "identity" else set()
    assert set(zip(kinks.unit_layer.tolist(), kinks.unit_sample.tolist(), kinks.unit_index.tolist())) == zeros
    model = first_order_model(ep, fwd, kinks)
    for k in range(4):
        d = rng.integers(-4, 5, size=problem.n_params) / 4
        if k == 0:
            d = np.zeros(problem.n_params)
            d[int(rng.integers(problem.n_params))] = -1.0
        e = None if k < 2 else rng.integers(-2, 3, size=problem.n_params) / 2
        P = taylor(layers, Xo, yo, act, loss, F(wd), [F(v) for v in d], None if e is None else [F(v) for v in e])
        c1, c2 = curve_coefficients(ep, fwd, kinks, d, e)
        assert (c1, c2) == (P[1], 2 * P[2])
        if e is None:
            assert model.evaluate(d) == P[1]
            assert directional_derivative(ep, fwd, kinks, d) == P[1]
            if not model.nested:
                assert one_level(model).evaluate(d) == P[1]


def test_planted_nested_and_loss_kinks_occur():
    """The generator does plant what the oracle test relies on: nested unit kinks and loss kinks."""
    seen_nested = seen_loss = 0
    for seed, depth, activation, loss, wd in INSTANCES:
        rng = np.random.default_rng(100 + seed)
        Ws, bs, X, y = random_instance(rng, depth, activation, loss, nested=seed % 2 == 0)
        ep = exact_problem(problem_of(Ws, bs, X, y, activation, loss, wd))
        fwd = forward(ep)
        kinks, _ = exact_kinks(ep, fwd)
        seen_loss += kinks.n_loss > 0
        seen_nested += first_order_model(ep, fwd, kinks).nested
    assert seen_loss >= 5 and seen_nested >= 2


def test_rational_point_and_rational_data():
    """Points floats cannot represent: GT-1 at its exact rational theta (4/3) has the hand value 1/9."""
    case = by_name("gt01_relu")
    problem = case_problem("gt01_relu")
    ep = exact_problem(problem, list(case.theta), y=[[v] for v in case.y])
    assert loss_value(ep) == case.loss_mean == F(1, 9)
    assert loss_value(exact_problem(problem)) != F(1, 9)      # the float point is not the rational one


# ---------------------------------------------------------------------------- multipliers
STATIONARY = ["gt07", "gt08", "gt09", "gt14", "abs_convex_kink", "hinge_margin_one_min", "absolute_residual_zero",
              "multiclass_tie_global", "multiclass_tie_saddle", "multi_output_min", "linear_global_min",
              "nested_double_kink", "nested_affine_min", "gt11", "gt13", "relu_zero_point"]
#: multipliers derived by hand in tests/reference/cases.py (lambda of each generator, in kink order)
HAND_LAMBDA = {"gt07": [F(1, 2)],                        # L' = 1/2 |dw + db| (sum): interior 1/2
               "hinge_margin_one_min": [F(1, 2), F(1, 2)],   # mu1 = mu3 = 1/2
               "absolute_residual_zero": [F(1, 4), F(1, 4)]}  # mu0 = mu2 = 1/2 in [-1, 1]: lambda = (1 - mu)/2


@pytest.mark.parametrize("name", STATIONARY)
def test_exact_certificate_on_dyadic_stationary_cases(name):
    assert by_name(name).first_order_stationary
    problem = case_problem(name)
    fo, model, kinks = float_pipeline(problem)
    out = exact_first_order_decision(problem, fo, model=model, kinks=kinks)
    assert out.status == "stationary", out.reason
    cert = out.certificate
    if out.kind == "multipliers":
        ep = exact_problem(problem)
        fwd = forward(ep)
        one = one_level(first_order_model(ep, fwd, out.kinks))
        lam = QArray.from_values(cert["lambda"])
        pis = [QArray.from_values(p) for p in cert["pi"]]
        assert not residual_of(one, lam, pis).any() and in_bounds(lam, pis)
        if name in HAND_LAMBDA:
            assert [F(v) for v in cert["lambda"]] == HAND_LAMBDA[name]
        # the same certificate without any float guess
        again = exact_multipliers(one)
        assert again.ok and not again.residual.any()
    elif out.kind == "piece_multipliers":
        assert cert["pieces"] and all(set(pc) >= {"signs", "lambda", "mu"} for pc in cert["pieces"])
    else:
        assert out.kind == "gradient"
    # the solver-free re-check accepts it; a tampered multiplier fails it
    assert all(c.ok for c in recheck_certificate(problem, cert))
    if out.kind in ("multipliers", "piece_multipliers"):
        bad = copy.deepcopy(cert)
        entry = bad if out.kind == "multipliers" else bad["pieces"][0]
        key = "lambda" if entry["lambda"] else ("mu" if entry.get("mu") else "pi")
        vec = entry[key] if key != "pi" else entry["pi"][0]
        vec[0] = str(F(vec[0]) + F(1, 2 ** 70))
        assert not all(c.ok for c in recheck_certificate(problem, bad))
    # independent evidence: the oracle's L'(theta; d) >= 0 on probe directions
    layers, Xo, yo, act, loss, wd = oracle_of(problem)
    for d in oracle.probe_directions(problem.n_params, n_random=3, seed=1):
        assert taylor(layers, Xo, yo, act, loss, wd, list(d))[1] >= 0


# ---------------------------------------------------------------------------- the issue's examples
def issue_problem() -> Problem:
    X = np.array([[-2.0], [0.0], [2.0]])
    y = np.array([-0.25, -6.75, float(F(-21474836479, 17179869184))])
    Ws = [np.array([[-0.5], [1.0], [-1.0]]), np.array([[0.0, 1.0, 2.0], [2.0, -1.0, 1.0]]), np.array([[-0.5, 0.0]])]
    bs = [np.array([-2.0, 3.0, -3.0]), np.array([0.0, -1.0]), np.array([-2.0])]
    return problem_of(Ws, bs, X, y, "leaky_relu:0.25", "square")


def test_issue_example_exact_slope_and_decrease():
    problem = issue_problem()
    assert F(problem.data.y[2]) == F(-21474836479, 17179869184)         # the label is stored exactly
    ep = exact_problem(problem)
    fwd = forward(ep)
    kinks, _ = exact_kinks(ep, fwd)
    e2 = np.zeros(problem.n_params)
    e2[1] = -1.0                                                         # -e_2: the coordinate W1[1]
    layers, Xo, yo, act, loss, wd = oracle_of(problem)
    assert taylor(layers, Xo, yo, act, loss, wd, [F(v) for v in e2])[1] == F(-1, 51539607552)
    assert first_order_model(ep, fwd, kinks).evaluate(e2) == F(-1, 51539607552)
    fo, model, fkinks = float_pipeline(problem)
    # with rigorous rounding-error bounds the float pipeline sees it too (the gradient entry is ~345
    # times its rounding bound); the exact engine proves it whatever the float pipeline says
    assert not fo.stationary
    out = exact_first_order_decision(problem, fo, model=model, kinks=fkinks)
    assert out.status == "not_stationary" and out.directional_derivative < 0
    _assert_oracle_confirms(problem, out)


def _assert_oracle_confirms(problem, out, theta=None):
    """The oracle confirms the engine's slope and its exact decrease at the rational step."""
    layers, Xo, yo, act, loss, wd = oracle_of(problem, theta)
    d = [F(v) for v in (out.direction.to_fractions())]
    assert taylor(layers, Xo, yo, act, loss, wd, d)[1] == out.directional_derivative < 0
    ref = out.refutation
    assert ref["verified"] and ref["exact_point"] and ref["method"] == "exact"
    t = F(ref["step_exact"])
    d_stored = ref.get("direction_exact", ref["direction"])
    moved = oracle.perturbed(layers, [F(v) for v in d_stored], t)
    before, after = oracle.loss(layers, Xo, yo, act, loss, wd), oracle.loss(moved, Xo, yo, act, loss, wd)
    assert after < before and str(before - after) == ref["decrease_exact"]


LABEL_MOVES = [("gt07", (0,), 2 ** -34), ("gt07", (0,), 2 ** -48), ("gt09", (2,), -2 ** -48),
               ("multi_output_min", (0, 0), 2 ** -60), ("absolute_residual_zero", (0,), 2 ** -60),
               ("abs_convex_kink", (3,), 2 ** -34)]


@pytest.mark.parametrize("name,where,shift", LABEL_MOVES)
def test_label_moved_off_stationarity(name, where, shift):
    base = case_inputs(by_name(name))["y"]
    y = np.array(base, dtype=np.float64)
    y[where] += shift
    assert F(y[where]) - F(base[where]) == F(shift)                  # the move is exact in float64
    problem = case_problem(name, y=y)
    fo, model, kinks = float_pipeline(problem)
    out = exact_first_order_decision(problem, fo, model=model, kinks=kinks)
    assert out.status == "not_stationary", out.reason
    _assert_oracle_confirms(problem, out)


@pytest.mark.parametrize("name,index,shift", [("gt07", 1, 2 ** -36), ("gt07", 1, -2 ** -36),
                                              ("gt09", 1, 2 ** -60), ("gt09", 1, -2 ** -60)])
def test_bias_moved_off_a_kink(name, index, shift):
    theta = case_inputs(by_name(name))["model"]
    th = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in theta])
    th[index] += shift
    problem = case_problem(name, theta=th)
    ep = exact_problem(problem)
    kinks, near = exact_kinks(ep)
    assert kinks.n_unit == 0                                         # not a kink any more
    assert near.unit_absolute == abs(shift) and near.unit_where[0] == 1
    # a 1e-9 tolerance (the old default) still sees one; the rounding-error bound does not
    assert find_kinks(problem, problem.network.forward(problem.X, with_scale=True)).n_unit == 0
    float_kinks = find_kinks(problem, problem.network.forward(problem.X, with_scale=True), 1e-9)
    assert float_kinks.n_unit == 1
    fo, model, fkinks = float_pipeline(problem, 1e-9)
    out = exact_first_order_decision(problem, fo, model=model, kinks=fkinks)
    assert out.status == "not_stationary", out.reason
    assert out.kink_comparison["unit_not_exact"] == [tuple(float_kinks_desc) for float_kinks_desc in zip(
        float_kinks.unit_layer.tolist(), float_kinks.unit_sample.tolist(), float_kinks.unit_index.tolist())]
    _assert_oracle_confirms(problem, out)


def test_bias_moved_by_2_to_the_minus_60_at_a_rational_point():
    """gt07's bias -1 + 2^-60 is no float64: the engine decides at the rational point itself."""
    case = by_name("gt07")
    theta = list(case.theta)
    theta[1] += F(1, 2 ** 60)
    problem = case_problem("gt07")
    out = exact_first_order_decision(problem, theta=theta)
    assert out.status == "not_stationary" and out.kinks.n_unit == 0
    _assert_oracle_confirms(problem, out, theta=theta)


def test_stationary_point_off_a_kink_stays_certified():
    """gt09 moved 2^-40 along its flat curve w = 1 + s, b = -s (REFERENCES GT-9) is off the kink, still an
    exact local minimum, and exactly stationary: the gradient is exactly 0 (no descent to find)."""
    s = 2.0 ** -40
    problem = case_problem("gt09", theta=np.array([1.0 + s, -s, 1.0, 0.0]))
    out = exact_first_order_decision(problem)
    assert out.status == "stationary" and out.kind == "gradient"
    layers, Xo, yo, act, loss, wd = oracle_of(problem)
    for d in oracle.probe_directions(4, n_random=4, seed=3):
        assert taylor(layers, Xo, yo, act, loss, wd, list(d))[1] >= 0


# ---------------------------------------------------------------------------- refutations and verify
def _report_with(problem, ref, verdict="not_stationary") -> dict:
    net = problem.network
    rep = certify.check(net, problem.X, problem.data.y, loss=problem.loss.name)
    rep.verdict = Verdict(verdict)
    rep.refutation = ref
    return json.loads(rep.to_json())


def _verify(report, problem):
    return certify.verify(report, problem.network, problem.X, problem.data.y)


def test_exact_refutation_verifies_and_tampering_fails():
    problem = issue_problem()
    d = np.zeros(problem.n_params)
    d[1] = -1.0
    ref = exact_refutation(problem, d)
    assert ref["verified"] and F(ref["directional_derivative_exact"]) == F(-1, 51539607552)
    assert ref["step"] < 1e-10 and F(ref["decrease_exact"]) > 0
    report = _report_with(problem, ref)
    assert _verify(report, problem).ok
    # altered step: a different exact decrease (or none)
    for step in (ref["step"] * 2, ref["step"] * 2.0 ** 40, 1.0):
        bad = copy.deepcopy(report)
        bad["refutation"]["step"], bad["refutation"]["step_exact"] = step, str(F(step))
        assert not _verify(bad, problem).ok
    # altered direction: a flipped sign, a scaled entry
    bad = copy.deepcopy(report)
    bad["refutation"]["direction"][1] = 1.0
    result = _verify(bad, problem)
    assert not result.ok and any(c.name in ("verified_decrease", "stored_decrease") for c in result.failed)
    bad = copy.deepcopy(report)
    bad["refutation"]["direction"][1] = -0.5           # (W1[0] would not do: it does not reach the output)
    assert not _verify(bad, problem).ok
    # forged flag: without "exact_point" the float re-check cannot see a decrease of ~1e-32
    bad = copy.deepcopy(report)
    del bad["refutation"]["exact_point"]
    assert not _verify(bad, problem).ok
    # an exact string that is not the stored float
    bad = copy.deepcopy(report)
    bad["refutation"]["direction_exact"] = [str(F(v)) for v in report["refutation"]["direction"]]
    bad["refutation"]["direction_exact"][1] = "-1/3"
    assert not _verify(bad, problem).ok


def test_exact_direction_that_floats_cannot_store():
    """A direction with entries 1/3: stored as "p/q" strings (direction_exact), re-checked exactly."""
    problem = case_problem("gt07", theta=np.array([1.0, -1.0 + 2.0 ** -36, 1.0, 0.0]))
    d = QArray.from_values([0, "-1/3", 0, "1/3"])
    ref = exact_refutation(problem, d)
    assert ref["verified"] and ref["direction_exact"] == ["0", "-1/3", "0", "1/3"]
    report = _report_with(problem, ref)
    assert _verify(report, problem).ok
    bad = copy.deepcopy(report)
    bad["refutation"]["direction_exact"][3] = "1/5"              # no longer the stored float image
    assert not _verify(bad, problem).ok
    bad["refutation"]["direction"][3] = 0.2                      # consistent again, but another direction
    assert not _verify(bad, problem).ok


def test_forged_exact_flag_on_a_far_decrease_fails():
    """Regression of the brute-force seed 97 case (test_verify): a lower point at t = 1/10 along a line
    whose loss grows for small t. Claiming it as an exact refutation must fail the local-descent check."""
    problem = problem_of([np.array([[1.0]]), np.array([[0.0]])], [np.array([1.0]), np.array([0.0])],
                         np.array([[-1.0], [-1.0], [-1.0], [-0.5], [0.0]]),
                         np.array([1.25, -0.75, -0.25, -0.5, 0.25]), "relu", "square")
    d = np.array([1.0, -1.0, 1.0, 0.0])
    ep = exact_problem(problem)
    far = loss_value(ep, ep.theta + QArray.from_float(d) * F(1, 10))
    assert far < loss_value(ep)                                     # lower far away ...
    ref = exact_refutation(problem, d)
    assert not ref["verified"] and "not a local descent" in ref["note"]
    forged = dict(ref, step=0.1, step_exact="1/10", decrease_exact=str(loss_value(ep) - far), verified=True)
    result = _verify(_report_with(problem, forged, "saddle"), problem)
    assert [c.name for c in result.failed] == ["local_descent"]


def test_exact_curve_refutation_of_a_saddle():
    """gt11 (a saddle, hand curve d = (1, 0, 1, 0)): c1 = 0, c2 < 0 exactly; verified as a saddle."""
    problem = case_problem("gt11")
    d, e = np.array([1.0, 0.0, 1.0, 0.0]), np.zeros(4)
    ref = exact_refutation(problem, d, e)
    layers, Xo, yo, act, loss, wd = oracle_of(problem)
    P = taylor(layers, Xo, yo, act, loss, wd, [F(v) for v in d])
    assert (F(ref["first_order_coefficient_exact"]), F(ref["second_order_coefficient_exact"])) == (P[1], 2 * P[2])
    assert ref["verified"] and ref["kind"] == "descent_curve"
    assert _verify(_report_with(problem, ref, "saddle"), problem).ok


def test_refute_falls_back_to_an_exact_step():
    """The float search cannot verify a decrease of ~1e-32; the hook in certify.refute proves it exactly."""
    from certify.refute import refute
    problem = issue_problem()
    fwd = problem.network.forward(problem.X, with_scale=True)
    kinks = find_kinks(problem, fwd)
    model = float_first_order_model(problem, fwd, kinks)
    d = np.zeros(problem.n_params)
    d[1] = -1.0
    ref = refute(problem, fwd, kinks, model, d)
    assert ref["verified"] and ref["method"] == "exact" and F(ref["decrease_exact"]) > 0
    assert _verify(_report_with(problem, ref), problem).ok


def test_exact_step_below_float_resolution():
    """The decrease happens only for t < 2^-36 (a kink 2^-36 away): the exact point is never rounded."""
    problem = case_problem("gt07", theta=np.array([1.0, -1.0 + 2.0 ** -36, 1.0, 0.0]))
    ep = exact_problem(problem)
    d = QArray.from_float(np.array([0.0, -1.0, 0.0, 0.0]))
    step = exact_step(ep, d)
    assert step is not None and step.k > 36 and step.after < step.before
    layers, Xo, yo, act, loss, wd = oracle_of(problem)
    moved = oracle.perturbed(layers, [F(v) for v in d.to_fractions()], step.t)
    assert oracle.loss(moved, Xo, yo, act, loss, wd) == step.after


def test_evaluate_exact_decrease_at_rational_points():
    from certify.evaluate import curve_point, exact_decrease, exact_loss, verified_decrease
    problem = issue_problem()
    d = np.zeros(problem.n_params)
    d[1] = -1.0
    t = F(1, 2 ** 70)
    point = curve_point(problem.theta, d, t)
    dec = exact_decrease(problem, problem.theta, point)
    layers, Xo, yo, act, loss, wd = oracle_of(problem)
    want = oracle.loss(layers, Xo, yo, act, loss, wd) - oracle.loss(
        oracle.perturbed(layers, [F(v) for v in d], t), Xo, yo, act, loss, wd)
    assert dec.method == "exact" and dec.verified and F(dec.exact) == want > 0
    assert exact_loss(problem) == oracle.loss(layers, Xo, yo, act, loss, wd)
    # float64 points: verified_decrease falls back to the same exact arithmetic
    theta2 = problem.theta + 2.0 ** -40 * d
    dec2 = verified_decrease(problem, problem.theta, theta2)
    want2 = oracle.loss(layers, Xo, yo, act, loss, wd) - oracle.loss(
        oracle.perturbed(layers, [F(v) for v in d], F(2.0 ** -40)), Xo, yo, act, loss, wd)
    assert dec2.method == "exact" and F(dec2.exact) == want2 and dec2.verified == (want2 > 0)


# ---------------------------------------------------------------------------- budget and algebra
def test_budget():
    small = issue_problem()
    assert fits(small) and exact_cost(small).seconds < 0.1
    assert not fits(problem_of([np.ones((1, 1))], [np.zeros(1)], np.ones((3, 1)), np.ones(3), "relu", "logistic"))
    rng = np.random.default_rng(0)
    widths = [5, 14, 14, 1]                                          # p = 309
    Ws = [rng.standard_normal((widths[l + 1], widths[l])) for l in range(3)]
    bs = [rng.standard_normal(widths[l + 1]) for l in range(3)]
    X = rng.standard_normal((50, 5))
    assert fits(problem_of(Ws, bs, X, rng.standard_normal(50), "relu", "square"))
    big = problem_of(Ws, bs, rng.standard_normal((5000, 5)), rng.standard_normal(5000), "relu", "square")
    assert not fits(big)
    out = exact_first_order_decision(big)
    assert out.status == "undecided" and "too large" in out.reason


def test_rational_arrays_and_exact_solves():
    q = QArray.from_float([0.1, -0.0, 5e-324, 2.0 ** 80, -3.5])
    assert [F(v) for v in q.to_fractions()] == [F(0.1), 0, F(5e-324), F(2 ** 80), F(-7, 2)]
    assert np.array_equal(q.to_float(), [0.1, 0.0, 5e-324, 2.0 ** 80, -3.5]) and q.is_float()
    assert not QArray.from_values(["1/3"]).is_float()
    rng = np.random.default_rng(7)
    for _ in range(30):
        r = int(rng.integers(1, 6))
        A = QArray.from_values([[F(int(v), int(rng.integers(1, 5))) for v in row] for row in rng.integers(-3, 4, (r, r))])
        x = QArray.from_values([F(int(v), int(rng.integers(1, 9))) for v in rng.integers(-9, 9, r)])
        sol = bareiss_solve(A, A @ x)
        if sol is not None:
            assert not (sol - x).any()
    # an inconsistent overdetermined system: the residual is exact and the tangential direction is
    # orthogonal to the columns with a negative inner product with the residual
    A = QArray.from_values([[1, 2], [3, 4], [5, 6], [1, 1]])
    b = A @ QArray.from_values(["1/3", "-2/7"]) + QArray.from_values([0, 0, 0, "1/1000"])
    x, rho, cols, rows = solve_consistent(A, b)
    assert rho.any()
    d = tangential_direction(A, rho, cols, rows)
    assert not (A.T @ d).any() and rho.dot(d) < 0


def test_float_multipliers_guess_the_exact_ones():
    """The float certificate's multipliers are mapped to the exact generators by kink (not by position)."""
    from certify.exact import float_guesses, guess_for
    problem = case_problem("hinge_margin_one_min")
    fo, model, kinks = float_pipeline(problem)
    guesses = float_guesses(fo.certificate, model, kinks)
    assert set(guesses) == {("loss", 0, 0), ("loss", 2, 0)}          # the margins at x = -1 and x = 1
    ep = exact_problem(problem)
    fwd = forward(ep)
    one = one_level(first_order_model(ep, fwd, exact_kinks(ep, fwd)[0]))
    lam, _ = guess_for(one, guesses)
    assert np.allclose(lam, [0.5, 0.5])                              # hand: mu1 = mu3 = 1/2


def test_three_way_ties_need_simplex_multipliers():
    """Multiclass hinge, x = 0, biases b = (0, -1, -1): two samples of class 0 tie all three pieces
    exactly; one sample each of class 1 and 2 contribute e0 - e1 and e0 - e2. Stationary iff
    sum_q pi_q1 = sum_q pi_q2 = 1 with pi_q in simplices (derived by hand); L = (0 + 0 + 2 + 2)/4 = 1."""
    problem = problem_of([np.zeros((3, 1))], [np.array([0.0, -1.0, -1.0])], np.zeros((4, 1)),
                         np.array([0, 0, 1, 2]), "relu", "multiclass_hinge")
    assert loss_value(exact_problem(problem)) == 1
    fo, model, kinks = float_pipeline(problem)
    out = exact_first_order_decision(problem, fo, model=model, kinks=kinks)
    assert out.status == "stationary" and out.kind == "multipliers"
    pis = [[F(v) for v in p] for p in out.certificate["pi"]]
    assert len(pis) == 2 and all(sum(p) == 1 and min(p) >= 0 for p in pis)
    assert sum(p[1] for p in pis) == 1 and sum(p[2] for p in pis) == 1
    assert all(c.ok for c in recheck_certificate(problem, out.certificate))
    layers, Xo, yo, act, loss, wd = oracle_of(problem)
    for d in oracle.probe_directions(problem.n_params, n_random=8, seed=2):
        assert taylor(layers, Xo, yo, act, loss, wd, list(d))[1] >= 0


def test_loss_kink_moved_off_is_reported_near():
    """absolute_residual_zero with y_0 moved by 2^-60: the residual is no longer exactly 0."""
    y = np.array(case_inputs(by_name("absolute_residual_zero"))["y"], dtype=np.float64)
    y[0] += 2.0 ** -60
    ep = exact_problem(case_problem("absolute_residual_zero", y=y))
    kinks, near = exact_kinks(ep)
    assert kinks.n_loss == 1 and kinks.loss_sample.tolist() == [2]     # x = 2 still fits exactly
    assert near.loss_where == (0, 0) and near.loss_absolute == 2.0 ** -59   # the two pieces +-r differ by 2|r|


def test_piece_multipliers_when_the_least_squares_guess_is_infeasible():
    """Regression (brute-force seed 39): a local minimum with two concave unit kinks and four absolute
    residuals at 0; on the piece (-, +) the clipped least-squares guess of the multipliers leaves their
    bounds, a bounded least-squares guess does not. The oracle proves d-stationarity on all pieces."""
    from tests import bruteforce
    inst = bruteforce.random_instance(39)
    assert bruteforce.oracle(inst).d_stationary is True
    a = inst.certify_args()
    problem = problem_of([W for W, _ in a["model"]], [b for _, b in a["model"]], a["X"], a["y"],
                         a["activation"], a["loss"])
    out = exact_first_order_decision(problem)
    assert out.status == "stationary" and out.kind == "piece_multipliers"
    assert all(c.ok for c in recheck_certificate(problem, out.certificate))
