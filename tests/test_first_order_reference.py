"""First-order verdicts on the hand-derived reference cases (tests/reference/cases.py).

The expected answers come from the derivations in the cases, never from the tool: every
``not_stationary`` case must be refuted with a verified decrease, and every d-stationary case must
be recognised as first-order stationary (never refuted).
"""

import numpy as np
import pytest

from tests import exact
from tests.helpers import run_case
from tests.reference.cases import CASES

STATIONARY = [c for c in CASES if c.first_order_stationary]
NOT_STATIONARY = [c for c in CASES if not c.first_order_stationary]


@pytest.mark.parametrize("case", NOT_STATIONARY, ids=lambda c: c.name)
def test_not_stationary_cases_are_refuted(case):
    report = run_case(case)
    assert report.verdict.value == "not_stationary", report.reason
    ref = report.refutation
    assert ref["verified"] and ref["decrease"] > ref["error_bound"]
    assert ref["directional_derivative"] < 0
    # independent re-check of the decrease in exact arithmetic with the oracle
    d = [exact.as_fraction(v) for v in ref["direction"]]
    t = exact.as_fraction(ref["step"])
    before = exact.loss(case.layers, case.X, case.y, case.activation, case.loss, case.weight_decay)
    theta = case.theta
    moved = [float(th + t * di) for th, di in zip(theta, d)]
    layers = exact.unflatten([exact.as_fraction(v) for v in moved], case.shapes)
    after = exact.loss(layers, case.X, case.y, case.activation, case.loss, case.weight_decay)
    assert after < before


@pytest.mark.parametrize("case", STATIONARY, ids=lambda c: c.name)
def test_stationary_cases_are_first_order_stationary(case):
    report = run_case(case)
    assert report.verdict.value != "not_stationary", report.reason
    assert report.first_order["stationary"] is True, report.first_order


def test_clarke_stationary_but_not_d_stationary_gt5():
    """GT-5: 0 is in the Clarke subdifferential, yet +b descends (REFERENCES.md GT-5)."""
    case = next(c for c in CASES if c.name == "gt05")
    report = run_case(case)
    assert report.first_order["clarke_distance"] == pytest.approx(0.0, abs=1e-12)
    assert report.verdict.value == "not_stationary"
    d = report.direction
    assert d[1] > 0 and np.allclose(d[[0, 2, 3]], 0, atol=1e-12) or report.refutation["directional_derivative"] < 0
