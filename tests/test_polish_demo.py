"""Approximate points from a trainer: polishing and escape (the demo: tests/test_demo.py).

Expected answers are independent of the tool: the trained saddle has a unit that gradient descent
can never move (zero weights in and out, so its escape function decides, REFERENCES.md A4.5 item 2),
and every refutation's lower point is re-evaluated here.
"""

import json

import numpy as np
import pytest

import certify
from certify.cli import main
from certify.data import Dataset, Problem
from certify.demo import data_dir
from certify.driver import check_polished
from tests.helpers import adam, init_network


@pytest.fixture(scope="module")
def iris():
    d = np.load(data_dir() / "iris.npz")
    X = (d["X"] - d["X"].mean(axis=0)) / d["X"].std(axis=0)
    return X, d["X"][:, 3]


def test_trained_minimum_is_certified_after_polishing(iris):
    X, target = iris
    p = adam(Problem(init_network([3, 5, 1], "relu", 2), Dataset(X[:, :3], target), "square"), 4000)
    raw = certify.check(p.network, data=p.data, loss="square")
    assert raw.verdict.value == "not_stationary"       # a trainer's point is never exactly stationary
    rep = check_polished(p)
    assert rep.verdict.value == "local_min", rep.reason
    assert rep.polish["loss_after"] <= rep.polish["loss_before"]
    assert certify.verify(rep.to_dict(), p.network, data=p.data).ok


def test_degenerate_polished_point_is_undecided_not_keep_training(iris):
    """Seed 0 polishes to a KKT point with held kinks whose multipliers are 0 and 1 to 1e-13: exact
    arithmetic refutes the float point only by a descent of ~1e-19 up to a kink ~1e-17 away. That is
    true of the point, but it is no reason to keep training: the trained answer is `undecided`."""
    X, target = iris
    p = adam(Problem(init_network([3, 5, 1], "relu", 0), Dataset(X[:, :3], target), "square"), 4000)
    rep = check_polished(p)
    if rep.verdict.value == "local_min":      # a stronger prover since: nothing to pin
        assert rep.trained["outcome"] in ("near_minimum", "not_converged")
        return
    assert rep.verdict.value == "not_stationary" and rep.refutation["verified"]
    theta = np.asarray(rep.polish["theta"])
    lower = theta + rep.refutation["step"] * np.asarray(rep.refutation["direction"])
    if rep.polish["converged"] and rep.refutation["decrease"] < 1e-12 * rep.polish["loss_after"]:
        assert rep.trained["outcome"] == "undecided" and "degenerate kink" in rep.trained["summary"]
    else:
        # the polish walked on (since kinks whose rows depend on the held ones cross unheld, it does not
        # stop on that degenerate point): a verified lower point far from the checkpoint is keep training
        assert p.value(lower) <= p.value(theta)
        assert rep.trained["lower_point_verified"] and rep.trained["relative_distance"] > 0.05
        assert rep.trained["outcome"] == "not_converged"


def test_trained_saddle_stays_a_saddle_after_polishing(iris):
    X, target = iris
    p = adam(Problem(init_network([3, 5, 1], "relu", 0, dead_unit=True), Dataset(X[:, :3], target), "square"), 4000)
    net = p.network
    assert np.all(net.weights[0][0] == 0) and net.biases[0][0] == 0 and net.weights[1][0, 0] == 0
    rep = check_polished(p)
    assert rep.verdict.value == "saddle", rep.reason
    ref = rep.refutation
    theta = np.asarray(rep.polish["theta"])
    lower = theta + ref["step"] * np.asarray(ref["direction"])
    assert p.value(lower) < p.value(theta)
    assert certify.verify(rep.to_dict(), p.network, data=p.data).ok


def test_polished_report_fails_verify_on_other_parameters(iris):
    X, target = iris
    p = adam(Problem(init_network([3, 5, 1], "relu", 0), Dataset(X[:, :3], target), "square"), 500)
    rep = check_polished(p)
    other = p.network.with_theta(p.theta + 1e-3)
    res = certify.verify(rep.to_dict(), other, data=p.data)
    assert not res.ok and res.failed[0].name == "polished_from"


def test_escape_writes_a_lower_checkpoint(tmp_path, capsys):
    out = tmp_path / "better.npz"
    code = main(["check", "data/seeds/gt11.npz", "--escape", str(out)])
    assert code == 10 and out.exists()
    before = certify.load_model("data/seeds/gt11.npz")
    after = certify.load_model(out)
    data = certify.load_data("data/seeds/gt11.npz")
    assert Problem(after, data, "square").value() < Problem(before, data, "square").value()
    text = capsys.readouterr().out       # the next steps point to the file written, not to the flag given
    assert f"resume training from the verified lower point written to {out}" in text
    assert "--escape better.npz" not in text
    assert main(["check", "data/seeds/gt11.npz"]) == 10
    assert "--escape better.npz" in capsys.readouterr().out


def test_escape_needs_a_checkpoint_suffix(tmp_path, capsys):
    code = main(["check", "data/seeds/gt11.npz", "--escape", str(tmp_path / "better.txt")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected .npz, .pt, .pth or .safetensors" in err


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_escape_in_the_trainer_format(tmp_path, suffix):
    pytest.importorskip("torch" if suffix == ".pt" else "safetensors")
    out = tmp_path / f"better{suffix}"
    assert main(["check", "data/seeds/gt11.npz", "--escape", str(out)]) == 10
    data = certify.load_data("data/seeds/gt11.npz")
    after = certify.load_model(out)
    before = certify.load_model("data/seeds/gt11.npz")
    assert Problem(after, data, "square").value() < Problem(before, data, "square").value()


def test_escape_on_a_minimum_writes_nothing(tmp_path, capsys):
    out = tmp_path / "better.npz"
    assert main(["check", "data/seeds/gt07.npz", "--escape", str(out)]) == 0
    assert not out.exists()
    assert "no escape written" in capsys.readouterr().err


def test_loss_is_read_from_the_bundled_file(capsys):
    # gt14 stores loss='absolute'; read with the square loss it would be another problem
    assert main(["check", "data/seeds/gt14.npz", "--json"]) == 10
    assert json.loads(capsys.readouterr().out)["problem"]["loss"] == "absolute"


def test_trained_answer_calls_a_converged_point_refuted_only_within_rounding_undecided():
    """Constructed report: a converged polish refuted only along a step of 1e-18 (a move below
    1e-12 ||theta||: a kink next to the point, nothing to train along) is `undecided` with the
    degenerate-kink summary; the same refutation along a step of 0.1 is a real descent, and the end
    point's loss 1/20, lower than the checkpoint's 5/16 (hand-computed below), is
    `not_converged`."""
    from certify.driver import trained_answer
    from certify.network import Network
    from certify.report import Report, Verdict
    X = np.array([[1.0], [2.0]])
    y = np.array([1.0, 2.0])
    net = Network([np.array([[1.0]]), np.array([[0.5]])], [np.array([0.0]), np.array([0.0])], "relu")
    p = Problem(net, Dataset(X, y), "square")       # f = x / 2: loss (1/4 (1/4) + 1/4 (1)) = 5/16
    end = np.array([1.0, 0.0, 0.8, 0.0])            # f = 0.8 x: loss (1/4)(0.04 + 0.16) = 1/20
    assert p.value() == 5 / 16 and abs(p.value(end) - 0.05) < 1e-15
    d = np.array([0.0, 0.0, 1.0, 0.0])              # f = (0.8 + t) x: loss (1/4)(0.2 - t)^2 (1 + 4), down to t = 0.2
    for step, outcome in ((1e-18, "undecided"), (0.1, "not_converged")):
        rep = Report(verdict=Verdict.NOT_STATIONARY, reason="",
                     refutation={"direction": d, "step": step, "verified": True, "decrease": 1e-20},
                     polish={"converged": True})
        out = trained_answer(p, end, rep)
        assert out["outcome"] == outcome
        assert ("degenerate kink" in out["summary"]) == (outcome == "undecided")
    # at t = 0.1 the loss is (5/4)(0.01) = 1/80; t = 0.4 (the next step tried) gives (5/4)(0.04) = 1/20 again
    esc = out["escape"]
    assert esc["visible"] and esc["step"] == 0.1 and abs(esc["decrease"] - (0.05 - 0.0125)) < 1e-15


def test_trained_answer_an_exact_descent_float64_cannot_show_is_no_end_point():
    """A saddle whose verified step is not microscopic but along which the float64 loss never falls
    (constructed: the end point f = x has loss 0, and along -b2 the loss is t^2 / 2 at every t) is not a
    certified end point: `undecided`, saying that the descent does not show in float64."""
    from certify.driver import trained_answer
    from certify.network import Network
    from certify.report import Report, Verdict
    X = np.array([[1.0], [2.0]])
    y = np.array([1.0, 2.0])
    net = Network([np.array([[1.0]]), np.array([[0.5]])], [np.array([0.0]), np.array([0.0])], "relu")
    p = Problem(net, Dataset(X, y), "square")
    end = np.array([1.0, 0.0, 1.0, 0.0])
    rep = Report(verdict=Verdict.SADDLE, reason="",
                 refutation={"direction": np.array([0.0, 0.0, 0.0, -1.0]), "step": 0.1, "verified": True,
                             "decrease": 1e-20}, polish={"converged": True})
    out = trained_answer(p, end, rep)
    assert out["outcome"] == "undecided" and out["end_certified"] is False
    assert "does not show in float64" in out["summary"]
    esc = out["escape"]            # only the stored step is tried: at 0.4 the loss (0.08) is higher than at 0.1
    assert not esc["visible"] and esc["step"] == 0.1 and abs(esc["loss"] - 0.005) < 1e-15


def _cut_first_polish(monkeypatch, converged=False):
    """Make the first polish of ``check_polished`` end at once, as a budget cut does; record the starts.
    ``converged``: the cut polish says it converged (a KKT point of the kinks it held)."""
    import certify.driver as drv
    real, calls = drv.polish_problem, []

    def polish_problem(problem, *, time_limit, budget_s, start=None, smoothing=False):
        res = real(problem, time_limit=time_limit, budget_s=1e-9 if start is None else budget_s, start=start,
                   smoothing=smoothing)
        if start is None and converged:
            res.converged = True
        calls.append((start, res.theta.copy()))
        return res
    monkeypatch.setattr(drv, "polish_problem", polish_problem)
    return calls


def test_time_the_end_points_check_leaves_carries_a_cut_polish_on(iris, monkeypatch):
    """A polish cut by its share of the budget ends mid-descent; its end point's check takes a moment
    and refutes it, and the budget left carries the polish on from the lower point along that descent
    to a point certify proves a minimum (re-checked by verify, which calls no solver)."""
    X, target = iris
    p = adam(Problem(init_network([3, 5, 1], "relu", 2), Dataset(X[:, :3], target), "square"), 4000)
    calls = _cut_first_polish(monkeypatch)
    rep = check_polished(p, time_limit=60)
    assert [start is None for start, _ in calls] == [True, False]
    first_end = calls[0][1]
    assert p.value(calls[1][0]) < p.value(first_end)       # the second leg starts lower
    assert rep.verdict.value == "local_min", rep.reason
    assert certify.verify(rep.to_dict(), p.network, data=p.data).ok
    end = np.asarray(rep.polish["theta"])
    assert p.value(end) <= p.value()
    radius = float((rep.claim or {}).get("radius") or 0.0)   # a nearby claim: the minimum is within radius
    assert rep.trained["distance"] == pytest.approx(np.linalg.norm(end - p.theta) + radius, rel=1e-12)


def test_a_converged_polish_the_check_refutes_goes_on_from_the_lower_point(iris, monkeypatch):
    """A polish that stopped at a KKT point of the kinks it held but whose end point the check refutes
    (here: cut at once and said to be converged) goes on from the lower point along the check's descent."""
    X, target = iris
    p = adam(Problem(init_network([3, 5, 1], "relu", 2), Dataset(X[:, :3], target), "square"), 4000)
    calls = _cut_first_polish(monkeypatch, converged=True)
    rep = check_polished(p, time_limit=60)
    assert [start is None for start, _ in calls] == [True, False]
    assert p.value(calls[1][0]) < p.value(calls[0][1])
    assert rep.verdict.value == "local_min", rep.reason
    assert certify.verify(rep.to_dict(), p.network, data=p.data).ok


def test_a_second_leg_that_ends_undecided_leaves_the_first_answer(iris, monkeypatch):
    """When the second end point's check does not decide, the first end point's verified refutation stands."""
    import certify.driver as drv
    from certify.report import Verdict
    X, target = iris
    p = adam(Problem(init_network([3, 5, 1], "relu", 2), Dataset(X[:, :3], target), "square"), 4000)
    calls = _cut_first_polish(monkeypatch)
    real_check, final = drv.check_problem, []

    def check_problem(problem, **kw):
        r = real_check(problem, **kw)
        if kw.get("prefer_nearby"):
            final.append(r.verdict.value)
            if len(final) == 2:
                r.verdict = Verdict.INCONCLUSIVE
        return r
    monkeypatch.setattr(drv, "check_problem", check_problem)
    rep = check_polished(p, time_limit=60)
    assert len(calls) == 2 and final[0] == "not_stationary" and len(final) == 2
    assert rep.verdict.value == "not_stationary"
    assert np.array_equal(np.asarray(rep.polish["theta"]), calls[0][1])
    lower = np.asarray(rep.refutation["direction"]) * rep.refutation["step"] + calls[0][1]
    assert p.value(lower) < p.value(calls[0][1])
