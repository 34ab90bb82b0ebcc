"""Where to resume training along a verified refutation (:func:`certify.refute.resume_point`) and the
``--escape`` file the CLI writes there. Expected values are derived by hand on a two-sample net."""

import json

import numpy as np
import pytest

import certify
from certify import Dataset, Network, Problem
from certify.cli import _write_escape, main
from certify.refute import resume_point
from certify.report import Report, Verdict


def two_samples():
    """x = (1, 2), y = (1, 2), a 1-1-1 ReLU net; at W1 = 1, b1 = 0, W2 = w, b2 = 0 the outputs are w x and
    the mean square loss is (1/4)((w - 1)^2 + 4 (w - 1)^2) = (5/4)(w - 1)^2."""
    net = Network([np.array([[1.0]]), np.array([[0.8]])], [np.array([0.0]), np.array([0.0])], "relu")
    return Problem(net, Dataset(np.array([[1.0], [2.0]]), np.array([1.0, 2.0])), "square")


def loss_at(w):
    return 1.25 * (w - 1.0) ** 2


def test_the_step_grows_by_4_while_the_loss_falls_up_to_the_cap():
    p = two_samples()
    theta = p.theta                                   # w = 0.8, ||theta|| = sqrt(1.64): the cap is 0.128
    ref = {"direction": np.array([0.0, 0.0, 1.0, 0.0]), "step": 1e-3, "verified": True}
    esc = resume_point(p, theta, ref)
    # steps 1e-3, 4e-3, 1.6e-2, 6.4e-2 lower the loss each time; 0.256 moves past the cap
    assert esc["step"] == pytest.approx(0.064, rel=1e-12) and esc["distance"] == pytest.approx(0.064, rel=1e-12)
    assert esc["loss"] == pytest.approx(loss_at(0.864), rel=1e-12)
    assert esc["decrease"] == pytest.approx(loss_at(0.8) - loss_at(0.864), rel=1e-9) and esc["visible"]
    np.testing.assert_array_equal(esc["theta"], theta + 0.064 * ref["direction"])
    # with a cap of 1 ||theta||: 0.256 (w = 1.056) is lower still, 1.024 (w = 1.824) is higher: 0.256 is kept
    esc = resume_point(p, theta, ref, max_move=1.0)
    assert esc["step"] == pytest.approx(0.256, rel=1e-12) and esc["loss"] == pytest.approx(loss_at(1.056), rel=1e-9)


def test_a_second_order_curve_is_followed():
    p = two_samples()
    theta = p.theta
    e = np.array([0.0, 0.0, 2.0, 0.0])               # theta + t^2/2 e: w = 0.8 + t^2
    esc = resume_point(p, theta, {"direction": np.zeros(4), "curvature_direction": e, "step": 0.1,
                                  "verified": True})
    # t = 0.1: w = 0.81; t = 0.4: w = 0.96 (move 0.16 > cap 0.128): 0.1 is kept
    assert esc["step"] == pytest.approx(0.1) and esc["loss"] == pytest.approx(loss_at(0.81), rel=1e-12)
    assert esc["visible"]


def test_a_descent_float64_cannot_show_is_not_visible():
    p = two_samples()
    theta = np.array([1.0, 0.0, 1.0, 0.0])            # w = 1: loss 0; along -b2 it is t^2 / 2
    esc = resume_point(p, theta, {"direction": np.array([0.0, 0.0, 0.0, -1.0]), "step": 1e-3, "verified": True})
    assert not esc["visible"] and esc["step"] == 1e-3 and esc["decrease"] < 0


@pytest.mark.parametrize("ref", [None, {}, {"direction": [0.0] * 4, "step": 0.1},
                                 {"direction": [0.0] * 4, "verified": True},
                                 {"step": 0.1, "verified": True},
                                 {"direction": [0.0] * 3, "step": 0.1, "verified": True}])
def test_nothing_without_a_verified_step_along_a_direction(ref):
    p = two_samples()
    assert resume_point(p, p.theta, ref) is None


def test_the_cli_writes_the_grown_point_and_says_what_it_gains(tmp_path, capsys):
    """GT-11 (REFERENCES.md: along a = w = t the mean loss is 1/3 - t^2/6 + t^4/3): the file is at least
    as low as the refutation's own step, lower than the point by what the line says."""
    out, rep = tmp_path / "better.npz", tmp_path / "r.json"
    assert main(["check", "data/seeds/gt11.npz", "--escape", str(out), "--out", str(rep)]) == 10
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("escape:"))
    assert "float64 loss lower by" in line and str(out) in line
    data = certify.load_data("data/seeds/gt11.npz")
    before = certify.load_model("data/seeds/gt11.npz")
    p = Problem(before, data, "square")
    ref = json.loads(rep.read_text())["refutation"]
    d, t = np.asarray(ref["direction"]), ref["step"]
    e = np.asarray(ref.get("curvature_direction") or np.zeros_like(d))
    at_step = p.value(p.theta + t * d + 0.5 * t * t * e)
    written = Problem(certify.load_model(out), data, "square").value()
    assert written <= at_step < p.value()
    assert float(line.split("lower by ")[1].rstrip(")")) == pytest.approx(p.value() - written, rel=2e-3)  # (3 digits)


def test_the_cli_says_when_resuming_gains_nothing(tmp_path):
    p = two_samples()
    net = p.network.with_theta(np.array([1.0, 0.0, 1.0, 0.0]))
    rep = Report(verdict=Verdict.SADDLE, reason="", refutation={"direction": [0.0, 0.0, 0.0, -1.0], "step": 1e-3,
                                                                 "verified": True})
    out = tmp_path / "b.npz"
    line = _write_escape(str(out), net, rep, Problem(net, p.data, "square"))
    assert out.exists() and "does not show in float64" in line and "gains nothing" in line


def test_the_trained_answer_says_what_the_escape_gains():
    """A verified saddle at the checkpoint itself (constructed report): near_saddle, and the answer gives the
    escape's gain, (5/4)(0.2^2 - 0.136^2) = 0.02688 at t = 0.064 (first test above)."""
    from certify.driver import trained_answer
    p = two_samples()
    rep = Report(verdict=Verdict.SADDLE, reason="", refutation={"direction": [0.0, 0.0, 1.0, 0.0], "step": 1e-3,
                                                                 "verified": True})
    out = trained_answer(p, p.theta, rep)
    assert out["outcome"] == "near_saddle" and out["end_certified"]
    assert out["summary"].endswith("(--escape): the loss 0.0269 lower, 0.064 away")


def test_a_rise_within_rounding_is_walked_past(monkeypatch):
    """Scripted float64 losses along the curve (a stand-in for rounding noise at small steps): at the
    verified step 1e-17 lower, at 4x 1e-16 *higher* (within the bound 1e-13), at 16x 1e-6 lower, at 64x
    a visible rise. The search must not stop at the noise: the point at 16x is kept, and it shows."""
    import certify.refute as R
    from certify.evaluate import BoundedValue
    p = two_samples()
    theta = p.theta
    base, t0 = 0.05, 1e-6
    profile = {0: base, 1: base - 1e-17, 4: base + 1e-16, 16: base - 1e-6, 64: base + 1.0}

    def scripted(problem, point):
        k = int(round((point[2] - theta[2]) / t0))
        return BoundedValue(profile[k], 5e-14, "float64")
    monkeypatch.setattr(R, "loss_with_bound", scripted)
    esc = R.resume_point(p, theta, {"direction": [0.0, 0.0, 1.0, 0.0], "step": t0, "verified": True})
    assert esc["step"] == pytest.approx(16 * t0) and esc["visible"] and esc["decrease"] == pytest.approx(1e-6)


def test_the_cli_reuses_the_trained_answers_search(tmp_path, monkeypatch):
    """With the trained answer's escape in the report, --escape writes the point at its step without
    searching again."""
    import certify.refute as R
    p = two_samples()
    rep = Report(verdict=Verdict.SADDLE, reason="", refutation={"direction": [0.0, 0.0, 1.0, 0.0], "step": 1e-3,
                                                                 "verified": True})
    from certify.driver import trained_answer
    rep.trained = trained_answer(p, p.theta, rep)
    monkeypatch.setattr(R, "resume_point", lambda *a, **k: pytest.fail("searched again"))
    out = tmp_path / "b.npz"
    line = _write_escape(str(out), p.network, rep, p)
    assert "t = 0.064" in line
    np.testing.assert_allclose(certify.load_model(out).theta, p.theta + np.array([0.0, 0.0, 0.064, 0.0]), rtol=0,
                               atol=1e-15)


# --- the public call, certify.escape(problem, report) ---

def test_escape_after_a_plain_check_is_lower_by_the_hand_formula():
    """certify.check refutes w = 0.8 (the loss is (5/4)(w - 1)^2 there); the escape point's loss, written
    out by hand for the 1-1-1 net (f(x) = W2 relu(W1 x + b1) + b2 on x = 1, 2), is what it reports and lower."""
    p = two_samples()
    rep = certify.check(p.network, p.data.X, p.data.y, loss="square")
    assert rep.verdict is Verdict.NOT_STATIONARY
    esc = certify.escape(p, rep)
    w1, b1, w2, b2 = esc["theta"]
    by_hand = 0.25 * ((w2 * max(w1 + b1, 0.0) + b2 - 1.0) ** 2 + (w2 * max(2.0 * w1 + b1, 0.0) + b2 - 2.0) ** 2)
    assert esc["visible"] and esc["loss"] == pytest.approx(by_hand, rel=1e-12, abs=1e-15)
    assert esc["decrease"] == pytest.approx(loss_at(0.8) - by_hand, rel=1e-9) and by_hand < loss_at(0.8) - 1e-3
    assert esc["distance"] == pytest.approx(float(np.linalg.norm(esc["theta"] - p.theta)), rel=1e-12)


def test_no_escape_from_a_certified_minimum():
    """README's example: x = 1 sits on the unit's kink of an exact local minimum (hand-derived)."""
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0.5, -1.0, 2.0, 1.5])
    net = Network([np.array([[1.0]]), np.array([[1.0]])], [np.array([-1.0]), np.array([0.0])], "relu")
    rep = certify.check(net, X, y, loss="square")
    assert rep.verdict is Verdict.LOCAL_MIN and certify.escape(Problem(net, Dataset(X, y), "square"), rep) is None


def test_escape_starts_from_the_polished_point():
    """A report about a polished point (w = 0.9): the search runs from there, not from the checkpoint:
    steps 1e-3 ... 0.064 lower the loss, 0.256 (w = 1.156) passes the cap 0.1 ||theta|| = 0.135."""
    p = two_samples()
    polished = np.array([1.0, 0.0, 0.9, 0.0])
    rep = Report(verdict=Verdict.NOT_STATIONARY, reason="", polish={"theta": polished.tolist()},
                 refutation={"direction": [0.0, 0.0, 1.0, 0.0], "step": 1e-3, "verified": True})
    esc = certify.escape(p, rep)
    np.testing.assert_allclose(esc["theta"], polished + np.array([0.0, 0.0, 0.064, 0.0]), rtol=0, atol=1e-15)
    assert esc["loss"] == pytest.approx(loss_at(0.964), rel=1e-9) and esc["distance"] == pytest.approx(0.064)


def test_escape_reuses_the_trained_answers_step(monkeypatch):
    import certify.refute as R
    p = two_samples()
    rep = Report(verdict=Verdict.SADDLE, reason="", refutation={"direction": [0.0, 0.0, 1.0, 0.0], "step": 1e-3,
                                                                 "verified": True},
                 trained={"escape": {"step": 0.016, "distance": 0.016, "loss": loss_at(0.816), "decrease": 0.0,
                                     "error_bound": 0.0, "visible": True}})
    monkeypatch.setattr(R, "resume_point", lambda *a, **k: pytest.fail("searched again"))
    np.testing.assert_allclose(certify.escape(p, rep)["theta"], p.theta + np.array([0.0, 0.0, 0.016, 0.0]),
                               rtol=0, atol=1e-15)


def test_escape_names_a_polished_point_of_another_network():
    p = two_samples()
    rep = Report(verdict=Verdict.SADDLE, reason="", polish={"theta": [0.0] * 7},
                 refutation={"direction": [0.0] * 7, "step": 1e-3, "verified": True})
    with pytest.raises(certify.ShapeError, match="polished point has 7 parameters, the problem 4"):
        certify.escape(p, rep)


def test_escape_takes_the_report_as_json_and_checks_it_belongs_to_the_problem():
    p = two_samples()
    rep = certify.check(p.network, p.data.X, p.data.y, loss="square")
    want = certify.escape(p, rep)
    again = certify.escape(p, json.loads(rep.to_json()))           # a report read back from --out
    np.testing.assert_array_equal(again["theta"], want["theta"])
    other = Problem(p.network, Dataset(p.data.X, np.array([1.0, 2.5])), "square")
    with pytest.raises(certify.CertificateError, match="made for other y"):
        certify.escape(other, rep)
    with pytest.raises(certify.CertificateError, match="made for other theta"):
        certify.escape(p.at(p.theta + 1.0), rep)
    with pytest.raises(certify.CertificateError, match="not a certify report"):
        certify.escape(p, {"refutation": {}})


def test_past_its_deadline_the_search_keeps_the_verified_step_and_says_it_was_cut():
    """A deadline already passed: only the refutation's own step 1e-3 is evaluated (loss (5/4)(0.801 - 1)^2,
    lower than at w = 0.8), and the answer says the search was cut."""
    import time
    p = two_samples()
    ref = {"direction": np.array([0.0, 0.0, 1.0, 0.0]), "step": 1e-3, "verified": True}
    esc = resume_point(p, p.theta, ref, deadline=time.perf_counter() - 1.0)
    assert esc["cut"] and esc["step"] == 1e-3 and esc["loss"] == pytest.approx(loss_at(0.801), rel=1e-12)
    assert not resume_point(p, p.theta, ref)["cut"]


def test_escape_searches_again_when_the_trained_answers_search_was_cut():
    """A report whose trained escape was cut at the first step: certify.escape searches to the end
    (steps 1e-3 ... 0.064, as in the first test) instead of reusing t = 1e-3."""
    p = two_samples()
    rep = Report(verdict=Verdict.SADDLE, reason="", refutation={"direction": [0.0, 0.0, 1.0, 0.0], "step": 1e-3,
                                                                 "verified": True},
                 trained={"escape": {"step": 1e-3, "distance": 1e-3, "loss": loss_at(0.801), "decrease": 0.0,
                                     "error_bound": 0.0, "visible": True, "cut": True}})
    esc = certify.escape(p, rep)
    assert esc["step"] == pytest.approx(0.064, rel=1e-12) and not esc["cut"]


def test_the_trained_answer_stops_its_search_at_the_commands_deadline():
    import time
    from certify.driver import trained_answer
    p = two_samples()
    rep = Report(verdict=Verdict.SADDLE, reason="", refutation={"direction": [0.0, 0.0, 1.0, 0.0], "step": 1e-3,
                                                                 "verified": True})
    esc = trained_answer(p, p.theta, rep, deadline=time.perf_counter() - 1.0)["escape"]
    assert esc["cut"] and esc["step"] == 1e-3
