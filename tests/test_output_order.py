"""The output-order certificate (certify/secondorder/output_order.py).

Answers come from outside the tool: the hand proof of ``nested_double_kink`` (tests/reference/cases.py),
and random perturbations of the parameters evaluated with plain numpy for the order relations.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import certify
from certify.data import Dataset, Problem
from certify.network import Activation, Network
from certify.secondorder import output_order
from certify.secondorder.output_order import EQ, GE, LE, UNKNOWN, pair_relations
from tests.helpers import case_inputs, run_case
from tests.reference.cases import by_name


def _nested():
    case = by_name("nested_double_kink")
    report = run_case(case)
    args = case_inputs(case)
    return json.loads(json.dumps(report.to_dict(), default=str)), args, report


def test_nested_double_kink_is_certified_exactly_by_the_output_order():
    """Hand proof (cases.py): with a, v > 0 near theta, f(0) >= f(-1), both 0 at theta, and the residuals
    (-1, 1, 0)/3 ask for exactly that order: L >= L(theta)."""
    d, args, report = _nested()
    assert report.verdict.value == "local_min"
    assert report.flags["method"] == "output_order"
    cert = report.second_order["certificate"]
    assert cert["arcs"] == [[0, 0, 1]]                 # sample x=-1 below sample x=0, output 0
    assert cert["exact"] is True and report.claim["level"] == "exact"
    assert certify.verify(d, args["model"], args["X"], args["y"]).ok


@pytest.mark.parametrize("tamper", ["reverse", "untied", "multiplier", "garbage", "negative_bound"])
def test_verify_rejects_a_tampered_output_order_certificate(tamper):
    d, args, _ = _nested()
    t = copy.deepcopy(d)
    cert = t["second_order"]["certificate"]
    if tamper == "reverse":
        cert["arcs"] = [[0, 1, 0]]                    # f(-1) >= f(0) does not hold near theta
    elif tamper == "untied":
        cert["arcs"] = [[0, 0, 2]]                    # f(1) = 1 != f(-1) = 0
    elif tamper == "multiplier":
        cert["fit_certificate"]["lambda"] = [0.1]     # the flow no longer matches the residuals
    elif tamper == "garbage":
        cert["arcs"] = [["a", None]]
    else:
        cert["bound"] = -1.0                          # a negative arc coefficient is no cone
    assert not certify.verify(t, args["model"], args["X"], args["y"]).ok


def test_weight_decay_is_out_of_scope_with_the_reason():
    net = Network((np.array([[1.0]]), np.array([[1.0]])), (np.zeros(1), np.zeros(1)), Activation.parse("relu"))
    data = Dataset(np.array([[1.0], [2.0]]), np.array([1.0, 2.0]))
    problem = Problem(net, data, "square", 0.1)
    assert "weight decay" in output_order.conditions(problem)


# ------------------------------------------------------------------------------------------------
# The relations hold near theta: random perturbations, evaluated with plain numpy
# ------------------------------------------------------------------------------------------------
def _forward(Ws, bs, X, slope_neg):
    h = X
    for l, (W, b) in enumerate(zip(Ws, bs)):
        z = h @ W.T + b
        h = z if l == len(Ws) - 1 else np.where(z > 0, z, slope_neg * z)
    return h


@pytest.mark.parametrize("seed", range(40))
def test_pair_relations_hold_under_random_perturbations(seed):
    rng = np.random.default_rng(seed)
    act = ["relu", "leaky_relu:0.25", "identity"][seed % 3]
    slope_neg = {"relu": 0.0, "leaky_relu:0.25": 0.25, "identity": 1.0}[act]
    depth = 1 + seed % 3
    widths = [int(rng.integers(1, 3))] + [int(rng.integers(1, 4)) for _ in range(depth)] + [int(rng.integers(1, 3))]
    grid = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    Ws = [rng.choice(grid, size=(widths[l + 1], widths[l])) for l in range(len(widths) - 1)]
    bs = [rng.choice(grid, size=widths[l + 1]) for l in range(len(widths) - 1)]
    n = 6
    X = rng.choice(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), size=(n, widths[0]))
    net = Network(tuple(Ws), tuple(bs), Activation.parse(act))
    y = np.zeros((n, widths[-1]))
    problem = Problem(net, Dataset(X, y if widths[-1] > 1 else y[:, 0]), "square", 0.0)
    fwd = net.forward(X, with_scale=True)
    i, j = np.triu_indices(n, 1)
    rel = pair_relations(problem, fwd, i, j)                  # (P, C): f(x_j) against f(x_i)
    assert rel.shape == (i.size, widths[-1])
    for _ in range(300):
        r = 10.0 ** rng.uniform(-8, -3)
        Wp = [W + r * rng.uniform(-1, 1, W.shape) for W in Ws]
        bp = [b + r * rng.uniform(-1, 1, b.shape) for b in bs]
        F = _forward(Wp, bp, X, slope_neg)
        diff = F[j] - F[i]
        slack = 1e-12 * (1 + np.abs(F[j]) + np.abs(F[i]))
        assert np.all(diff[rel == GE] >= -slack[rel == GE]), (seed, r)
        assert np.all(diff[rel == LE] <= slack[rel == LE]), (seed, r)
        assert np.all(np.abs(diff[rel == EQ]) <= slack[rel == EQ]), (seed, r)
    assert np.isin(rel, (EQ, GE, LE, UNKNOWN)).all()


def test_the_relations_are_not_vacuous():
    """Across the seeds above the propagation proves orders beyond the inputs' own (through dead units)."""
    found = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        X = rng.choice(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), size=(6, 1))
        net = Network((np.array([[1.0], [-1.0]]), np.array([[1.0, 0.5]])), (np.array([0.0, -0.5]), np.zeros(1)),
                      Activation.parse("relu"))
        problem = Problem(net, Dataset(X, np.zeros(6)), "square", 0.0)
        i, j = np.triu_indices(6, 1)
        rel = pair_relations(problem, net.forward(X, with_scale=True), i, j)
        found += int(np.isin(rel, (GE, LE)).sum())
    assert found > 0
