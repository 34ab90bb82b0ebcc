"""certify.verify re-checks certificates with numpy only; tampered certificates fail."""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest

import certify
from tests.helpers import case_inputs, run_case
from tests.reference.cases import CASES, by_name


def _report_and_inputs(name):
    case = by_name(name)
    report = json.loads(run_case(case).to_json())
    return report, case_inputs(case)


def _verify(report, inputs):
    return certify.verify(report, inputs["model"], inputs["X"], inputs["y"])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_report_verifies(case):
    report = json.loads(run_case(case).to_json())
    inputs = case_inputs(case)
    result = _verify(report, inputs)
    assert result.ok, [c for c in result.checks if not c.ok]


def test_flipped_multiplier_fails():
    report, inputs = _report_and_inputs("gt07")  # interior multiplier 1/2 at the kink
    bad = copy.deepcopy(report)
    lam = bad["first_order"]["certificate"]["lambda"]
    assert lam and 0 < lam[0] < 1
    lam[0] = -lam[0]
    result = _verify(bad, inputs)
    assert not result.ok
    assert any(c.name == "first_order_multipliers" for c in result.failed)


def test_altered_direction_fails():
    report, inputs = _report_and_inputs("gt05")
    bad = copy.deepcopy(report)
    d = np.asarray(bad["refutation"]["direction"])
    bad["refutation"]["direction"] = (d * 1.5).tolist()
    result = _verify(bad, inputs)
    assert not result.ok


def test_reversed_direction_fails():
    report, inputs = _report_and_inputs("gt13b_leaky")
    bad = copy.deepcopy(report)
    bad["refutation"]["direction"] = (-np.asarray(bad["refutation"]["direction"])).tolist()
    assert not _verify(bad, inputs).ok


def test_scaled_hessian_bound_fails():
    report, inputs = _report_and_inputs("multi_output_min")
    cert = report["second_order"]["certificate"]
    assert cert["kind"] == "reduced_hessian"
    bad = copy.deepcopy(report)
    bad["second_order"]["certificate"]["min_eigenvalue"] = cert["min_eigenvalue"] * 10
    result = _verify(bad, inputs)
    assert any(c.name == "reduced_hessian" for c in result.failed)


def test_certificate_for_other_data_fails():
    report, inputs = _report_and_inputs("gt07")
    y = inputs["y"].copy()
    y[0] += 1.0
    result = certify.verify(report, inputs["model"], inputs["X"], y)
    assert not result.ok and result.failed[0].name == "fingerprint"


def test_forged_local_min_on_a_saddle_fails():
    report, inputs = _report_and_inputs("gt11")  # a saddle
    forged = copy.deepcopy(report)
    forged["verdict"] = "local_min"
    forged["second_order"]["certificate"] = {"kind": "reduced_hessian", "min_eigenvalue": 0.5}
    assert not _verify(forged, inputs).ok


def test_verify_never_imports_a_solver(tmp_path):
    """Run verify with highspy and cvxpy made unimportable."""
    report, _ = _report_and_inputs("gt16")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    case = by_name("gt16")
    inputs = case_inputs(case)
    np.savez(tmp_path / "m.npz", **{f"W{l}": W for l, (W, _) in enumerate(inputs["model"], 1)},
             **{f"b{l}": b for l, (_, b) in enumerate(inputs["model"], 1)}, X=inputs["X"], y=inputs["y"])
    code = (
        "import sys\n"
        "sys.modules['highspy'] = None\nsys.modules['cvxpy'] = None\n"
        "import certify\n"
        f"r = certify.verify({str(path)!r}, {str(tmp_path / 'm.npz')!r}, data={str(tmp_path / 'm.npz')!r})\n"
        "assert r.ok, r.to_dict()\n"
        "print('verified')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "verified" in out.stdout


def test_far_decrease_is_not_a_saddle_certificate():
    """Regression (brute-force seed 97): along d = (1, -1, 1, 0) the exact loss change is
    t^2/40 - 7 t^3/20 + 13 t^4/40 (derived by hand in exact arithmetic): lower at t = 0.1 but not for
    small t, so that line proves nothing; the refutation must be a local descent curve."""
    from certify.data import Dataset, Problem
    from certify.kinks import find_kinks
    from certify.refute import curve_coefficients, is_local_descent
    layers = [(np.array([[1.0]]), np.array([1.0])), (np.array([[0.0]]), np.array([0.0]))]
    X = np.array([[-1.0], [-1.0], [-1.0], [-0.5], [0.0]])
    y = np.array([1.25, -0.75, -0.25, -0.5, 0.25])
    net = certify.Network([W for W, _ in layers], [b for _, b in layers], "relu")
    problem = Problem(net, Dataset(X, y), "square")
    fwd = net.forward(X, with_scale=True)
    d = np.array([1.0, -1.0, 1.0, 0.0])
    c1, c2, scale = curve_coefficients(problem, fwd, find_kinks(problem, fwd), d)
    assert abs(c1) < 1e-12 and c2 == pytest.approx(2 * (1 / 40) * 5 / 5, rel=1e-9)  # t^2/40 in the mean loss * 2
    assert not is_local_descent(c1, c2, scale)
    assert problem.value(problem.theta + 0.1 * d) < problem.value()   # yet a lower point exists at t = 0.1
    report = certify.check(layers, X, y, activation="relu", loss="square")
    assert report.verdict.value in ("saddle", "inconclusive")
    if report.verdict.value == "saddle":
        forged = report.to_dict()
        forged["refutation"]["direction"] = d.tolist()
        forged["refutation"]["curvature_direction"] = None
        forged["refutation"]["step"] = 0.1
        forged["refutation"]["loss_after"] = problem.value(problem.theta + 0.1 * d)
        res = certify.verify(forged, layers, X, y)
        assert any(c.name == "local_descent" for c in res.failed)


def test_piece_certificate_verifies_and_tampering_fails(monkeypatch):
    """Nested kinks: the per-piece KKT certificate re-checks; a negative multiplier, a scaled
    curvature, a dropped piece or a changed branch set fail. (The path-space and saturated-sample
    kinds, which prove this case first, are taken out of the chain here so that the piece test runs.)"""
    import certify.secondorder as so
    monkeypatch.setattr(so, "KINDS", tuple(k for k in so.KINDS if k.NAME not in ("path_fit", "saturated")))
    report, inputs = _report_and_inputs("nested_affine_min")
    cert = report["second_order"]["certificate"]
    assert cert["kind"] == "piece_kkt" and len(cert["pieces"]) == 2 ** len(cert["branch"])
    assert _verify(report, inputs).ok

    bad = copy.deepcopy(report)
    bad["second_order"]["certificate"]["pieces"][0]["mu"][0] = -0.25
    assert not _verify(bad, inputs).ok

    bad = copy.deepcopy(report)
    pc = next(p for p in bad["second_order"]["certificate"]["pieces"] if p["min_curvature"] is not None)
    pc["min_curvature"] *= 10
    assert not _verify(bad, inputs).ok

    bad = copy.deepcopy(report)
    bad["second_order"]["certificate"]["pieces"].pop()
    result = _verify(bad, inputs)
    assert not result.ok and any("missing" in c.detail for c in result.failed)

    bad = copy.deepcopy(report)
    bad["second_order"]["certificate"]["branch"] = bad["second_order"]["certificate"]["branch"][:1]
    assert any(c.name == "piece_branch_set" for c in _verify(bad, inputs).failed)


def test_piece_kkt_multipliers_close_the_equation(monkeypatch):
    """Every stored piece multiplier closes g_sigma + ... = R' mu to the stated tolerance (the piece
    test run alone, as above: the path-space certificate proves nested_affine_min first)."""
    import certify.secondorder as so
    monkeypatch.setattr(so, "KINDS", tuple(k for k in so.KINDS if k.NAME not in ("path_fit", "saturated")))
    report, _ = _report_and_inputs("nested_affine_min")   # (nested_escape_saddle is refuted before the pieces)
    for pc in report["second_order"]["certificate"]["pieces"]:
        assert pc["kkt_residual"] <= pc["kkt_tolerance"]
        assert min(pc["mu"], default=0.0) >= 0


def test_exact_claim_rechecks_the_rational_multipliers():
    """gt07 (dyadic): the claim is exact; a multiplier moved by 2^-70 no longer closes the equation."""
    report, inputs = _report_and_inputs("gt07")
    assert report["claim"]["level"] == "exact"
    assert _verify(report, inputs).ok
    bad = copy.deepcopy(report)
    cert = bad["first_order"]["exact"]["certificate"]
    from fractions import Fraction
    cert["lambda"][0] = str(Fraction(cert["lambda"][0]) + Fraction(1, 2 ** 70))
    result = _verify(bad, inputs)
    assert not result.ok and any(c.name.startswith("exact") for c in result.failed)


def test_nearby_claim_tampering_fails():
    """gt01 (4/3 is no float): an exact rational minimum theta* within the radius; a smaller radius or a
    moved theta* fails the re-check."""
    report, inputs = _report_and_inputs("gt01_relu")
    claim = report["claim"]
    assert claim["level"] == "nearby" and claim["radius"] < 1e-15
    assert _verify(report, inputs).ok
    small = copy.deepcopy(report)
    small["claim"]["radius"] = claim["radius"] / 4
    assert not _verify(small, inputs).ok
    moved = copy.deepcopy(report)
    from fractions import Fraction
    moved["claim"]["theta_star"][-1] = str(Fraction(moved["claim"]["theta_star"][-1]) + Fraction(1, 2 ** 80))
    assert not _verify(moved, inputs).ok
