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
