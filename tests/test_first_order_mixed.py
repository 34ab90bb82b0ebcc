"""Mixed margin and unit kinks, identical kink rows, and what a multiplier certificate may claim.

Expected answers come from exact constructions whose proofs are in the generators' docstrings
(:mod:`benchmarks.instances`; every number dyadic, every kink an exact zero) and from the hand
derivation of GT-5 (REFERENCES.md), never from certify.
"""

import numpy as np
import pytest

import certify
from benchmarks import instances
from certify.checks import Check, check_multipliers
from certify.data import Dataset, Problem
from certify.first_order import _clarke
from certify.formulate.first_order import merge_identical, one_level
from certify.kinks import find_kinks
from certify.network import Network
from certify.tangent import first_order_model
from tests.helpers import run_case
from tests.reference.cases import CASES


def _check(inst, **kw):
    report = certify.check(inst.model(), inst.X, inst.y, **inst.options(), **kw)
    return report, certify.verify(report.to_dict(), inst.model(), inst.X, inst.y)


def test_mixed_margin_and_unit_kinks_are_a_certified_minimum():
    """Margins exactly 1 with partners (multiplier 1) and unit-kink groups (multipliers 1/2)."""
    inst = instances.mixed_hinge_unit_kinks(n_hinge=40, n_unit=40, d=12, h=10, n=300, seed=3)
    report, ver = _check(inst)
    assert report.kinks["unit_kinks"] == 40 and report.kinks["loss_kinks"] == 40
    assert report.verdict.value == "local_min", report.reason
    fo = report.first_order
    assert fo["stationary"] is True and fo["certificate"]["kind"] == "multipliers"
    lam = np.asarray(fo["certificate"]["lambda"])
    loss_gen = [j for j, s in enumerate(fo["certificate"]["generators"]) if s[0] == "loss"]
    np.testing.assert_allclose(lam[loss_gen], 1.0, atol=1e-12)     # the construction's multipliers
    assert ver.ok, [c.detail for c in ver.failed]


def test_mixed_kinks_with_dependent_unit_rows():
    """Many groups on few units: the kink rows are linearly dependent (LIKQ fails), the QP/LP decide."""
    inst = instances.mixed_hinge_unit_kinks(n_hinge=30, n_unit=120, d=8, h=4, n=560, seed=1)
    report, ver = _check(inst)
    assert report.verdict.value == "local_min", report.reason
    assert report.first_order["method"] in ("qp", "lp")
    assert ver.ok, [c.detail for c in ver.failed]


def test_concave_kinks_paired_with_stronger_convex_ones_are_merged():
    """Each concave kink shares its row with a stronger convex one (instances.concave_unit_kinks):
    merged, the model is convex and a multiplier certificate with its groups proves d-stationarity."""
    inst = instances.concave_unit_kinks(n_concave=6, variant="stationary", d=3, h=6)
    report, ver = _check(inst)
    assert report.verdict.value == "local_min", report.reason
    cert = report.first_order["certificate"]
    assert cert["kind"] == "multipliers" and cert["identical_row_groups"]
    assert ver.ok, [c.detail for c in ver.failed]
    # tampering with the groups: dropped, or one member's multiplier moved
    d = report.to_dict()
    d["first_order"]["certificate"]["identical_row_groups"] = []
    assert not certify.verify(d, inst.model(), inst.X, inst.y).ok
    d = report.to_dict()
    grp = d["first_order"]["certificate"]["identical_row_groups"][0]
    lam = list(d["first_order"]["certificate"]["lambda"])
    lam[grp[0]] = 1.0 if lam[grp[0]] != 1.0 else 0.0
    d["first_order"]["certificate"]["lambda"] = lam
    assert not certify.verify(d, inst.model(), inst.X, inst.y).ok


def test_concave_descent_is_found():
    inst = instances.concave_unit_kinks(n_concave=5, variant="descent", d=8, h=8)
    report, ver = _check(inst)
    assert report.verdict.value == "not_stationary"
    assert ver.ok


def test_merge_identical_sums_coefficients_and_keeps_the_function():
    inst = instances.concave_unit_kinks(n_concave=4, variant="stationary", d=3, h=5)
    problem = Problem(Network(inst.weights, inst.biases, inst.activation), Dataset(inst.X, inst.y), inst.loss)
    fwd = problem.network.forward(problem.X, with_scale=True)
    one = one_level(first_order_model(problem, fwd, find_kinks(problem, fwd)))
    merged, group = merge_identical(one)
    assert merged.n_generators < one.n_generators and merged.convex and not one.convex
    rng = np.random.default_rng(0)
    for _ in range(20):
        d = rng.uniform(-1, 1, one.g.size)
        assert merged.evaluate(d) == pytest.approx(one.evaluate(d), rel=1e-12, abs=1e-15)


def test_clarke_multipliers_at_a_concave_kink_do_not_certify_gt5():
    """GT-5: 0 is in the Clarke subdifferential (multipliers in [0,1] close the equation), yet the
    point descends along +b. A multiplier certificate must be refused for the concave kink."""
    case = next(c for c in CASES if c.name == "gt05")
    report = run_case(case)
    assert report.verdict.value == "not_stationary"
    from tests.helpers import case_inputs
    args = case_inputs(case)
    net = certify.loaders.as_network(args["model"], args["activation"])
    problem = Problem(net, Dataset(args["X"], args["y"]), args["loss"], args["weight_decay"])
    fwd = net.forward(problem.X, with_scale=True)
    one = one_level(first_order_model(problem, fwd, find_kinks(problem, fwd)))
    assert not one.convex
    dist, _, _, (lam, pis) = _clarke(one)
    assert dist == pytest.approx(0.0, abs=1e-12)
    checks: list[Check] = []
    cert = {"kind": "multipliers", "lambda": list(lam), "pi": [list(p) for p in pis]}
    check_multipliers(one, cert, "forged", checks)
    assert not checks[0].ok and "concave" in checks[0].detail
