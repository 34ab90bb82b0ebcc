"""``certify plot`` / :func:`certify.plotting.plot_report`: figures for every kind of verdict."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import certify  # noqa: E402
from certify import cli_plot  # noqa: E402
from certify.data import Dataset, Problem  # noqa: E402
from certify.errors import CertificateError, InvalidValueError, MissingExtraError  # noqa: E402
from certify.plotting import _Evaluator, build_scene, flat_directions, plot_report  # noqa: E402
from tests.helpers import case_inputs, run_case  # noqa: E402
from tests.reference.cases import by_name  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
GT5 = DATA / "gt5_concave_kink.npz"   # not_stationary (a concave ReLU kink)
GT7 = DATA / "gt7_kink_minimum.npz"   # local_min at a kink (cell convexity)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def problem_for(report: dict, model, data=None) -> Problem:
    """The report's objective on a model file, as ``certify plot`` / ``certify verify`` build it."""
    info = report["problem"]
    net = certify.load_model(model, info["activation"])
    return Problem(net, certify.load_data(data or model), info["loss"], info.get("weight_decay", 0.0))


def check_file(path, **kwargs) -> dict:
    net = certify.load_model(path)
    return certify.check(net, data=certify.load_data(path), loss="square", **kwargs).to_dict()


@pytest.fixture(scope="module")
def gt5_report():
    report = check_file(GT5)
    assert report["verdict"] == "not_stationary"
    return report


@pytest.fixture(scope="module")
def gt7_report():
    report = check_file(GT7)
    assert report["verdict"] == "local_min"
    return report


@pytest.fixture
def gt11(tmp_path):
    """GT-11 (a smooth saddle) saved with its model and data as one .npz, and its report as JSON."""
    case = by_name("gt11")
    args = case_inputs(case)
    arrays = {}
    for l, (W, b) in enumerate(args["model"], start=1):
        arrays[f"W{l}"], arrays[f"b{l}"] = W, b
    model = tmp_path / "gt11.npz"
    np.savez(model, **arrays, X=args["X"], y=args["y"], activation=np.array(args["activation"]))
    report = run_case(case).to_dict()
    assert report["verdict"] == "saddle"
    path = tmp_path / "gt11.json"
    path.write_text(json.dumps(report))
    return model, path, report


def assert_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == PNG_MAGIC
    assert b"IEND" in data[-16:]  # complete, not truncated


def run_plot(capsys, *argv):
    """``certify plot ...`` through cli_plot alone (as cli.py registers it)."""
    parser = argparse.ArgumentParser(prog="certify")
    sub = parser.add_subparsers(dest="command")
    cli_plot.add_parser(sub)
    args = parser.parse_args(["plot", *map(str, argv)])
    code = cli_plot.run(args)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------- one figure per verdict
def test_not_stationary_png(tmp_path, gt5_report):
    problem = problem_for(gt5_report, GT5)
    out = plot_report(gt5_report, problem, tmp_path / "gt5.png")
    assert out == tmp_path / "gt5.png"
    assert_png(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt5.png"]  # no temporary file left


def test_not_stationary_scene_marks_the_verified_step(gt5_report):
    problem = problem_for(gt5_report, GT5)
    sc = build_scene(gt5_report, problem)
    ref = gt5_report["refutation"]
    T = ref["step"]
    t, L, _ = sc.lines[0]
    assert t[0] == pytest.approx(-T) and t[-1] == pytest.approx(2 * T)
    assert L[t == 0][0] == pytest.approx(problem.value(), rel=1e-12)
    assert sc.step[0] == T and sc.step[1] == pytest.approx(ref["loss_after"], rel=1e-12)
    assert "drops by" in sc.step[2]
    assert any("first-order model" in label for _, _, label in sc.models)
    assert sc.slice_values.shape == (41, 41)
    assert "not_stationary" in sc.title and "likq" in sc.title


def test_saddle_png_through_the_command(tmp_path, capsys, gt11):
    model, report_path, _ = gt11
    code, out, err = run_plot(capsys, report_path, model)
    assert code == 0, err
    assert err == ""
    written = report_path.with_suffix(".png")   # default: REPORT with the suffix .png
    assert out.strip() == str(written)
    assert_png(written)


def test_saddle_scene_has_the_second_order_model(gt11):
    model, _, report = gt11
    problem = problem_for(report, model)
    sc = build_scene(report, problem)
    (t, L, _), = sc.lines
    (tm, Lm, label), = sc.models
    assert "second-order model" in label
    small = np.abs(t) <= 0.05
    assert np.allclose(L[small], Lm[small], atol=1e-3)     # L + t^2/2 q |d|^2 is the local model
    assert sc.step[1] < problem.value()
    assert sc.how.startswith("smallest eigenvectors of the reduced Hessian")


def test_local_min_png(tmp_path, gt7_report):
    problem = problem_for(gt7_report, GT7)
    out = plot_report(gt7_report, problem, tmp_path / "gt7.png")
    assert_png(out)


def test_local_min_directions_are_off_the_symmetry_orbits(gt7_report):
    from certify.secondorder.symmetry import symmetry_basis
    problem = problem_for(gt7_report, GT7)
    sc = build_scene(gt7_report, problem)
    L0 = problem.value()
    assert len(sc.lines) >= 2
    for _, L, _ in sc.lines:
        assert np.min(L) >= L0 - 1e-12          # a certified minimum looks like one
    dirs, how = flat_directions(problem, gt7_report, 2, probe=0.1)
    Q, _ = symmetry_basis(problem, problem.network.forward(problem.X, with_scale=True))
    for d in dirs:
        assert np.linalg.norm(d.v) == pytest.approx(1.0)
        assert np.abs(Q.T @ d.v).max() <= 1e-10
    assert abs(dirs[0].v @ dirs[1].v) <= 1e-10
    assert "random" in how


def test_svg_and_pdf_by_suffix(tmp_path, gt7_report):
    problem = problem_for(gt7_report, GT7)
    svg = plot_report(gt7_report, problem, tmp_path / "gt7.svg", radius=0.05)
    assert b"<svg" in svg.read_bytes()[:1000]
    pdf = plot_report(gt7_report, problem, tmp_path / "gt7.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    png = plot_report(gt7_report, problem, tmp_path / "noext", fmt="png")
    assert_png(png)


def test_radius_sets_the_range(gt5_report):
    sc = build_scene(gt5_report, problem_for(gt5_report, GT5), radius=0.02)
    t = sc.lines[0][0]
    assert t[0] == pytest.approx(-0.02) and t[-1] == pytest.approx(0.04)
    assert not sc.step_visible                  # the verified step 0.1 is outside [-R, 2R]


# ---------------------------------------------------------------------------- refusals
def test_refuses_a_report_for_another_model(tmp_path, gt5_report):
    other = problem_for(gt5_report, GT7)        # same architecture, other parameters and data
    out = tmp_path / "wrong.png"
    with pytest.raises(CertificateError, match="fingerprints differ") as info:
        plot_report(gt5_report, other, out)
    assert "\n" not in str(info.value)
    assert "plot it with the model and data it was made for" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_refuses_another_loss(gt5_report):
    info = gt5_report["problem"]
    net = certify.load_model(GT5, info["activation"])
    wrong = Problem(net, certify.load_data(GT5), "absolute")
    with pytest.raises(CertificateError, match="loss value"):
        plot_report(gt5_report, wrong, "/nonexistent/never.png")


def test_command_refuses_another_model_with_one_line_and_no_file(tmp_path, capsys, gt5_report):
    report_path = tmp_path / "gt5.json"
    report_path.write_text(json.dumps(gt5_report))
    out = tmp_path / "fig.png"
    code, stdout, err = run_plot(capsys, report_path, GT7, "--out", out)
    assert code == 2
    assert stdout == ""
    assert err.startswith("certify: error: the report was made for other parameters or data")
    assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt5.json"]


def test_command_input_errors(tmp_path, capsys, gt5_report):
    report_path = tmp_path / "gt5.json"
    report_path.write_text(json.dumps(gt5_report))
    code, _, err = run_plot(capsys, report_path, GT5, "--out", tmp_path / "fig.jpg")
    assert code == 2 and "expected a name ending in .png, .svg or .pdf" in err
    code, _, err = run_plot(capsys, report_path, GT5, "--out", tmp_path / "missing" / "fig.png")
    assert code == 2 and "does not exist" in err
    code, _, err = run_plot(capsys, tmp_path / "nope.json", GT5)
    assert code == 2 and "no such report file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt5.json"]
    with pytest.raises(InvalidValueError, match="unsupported plot format"):
        plot_report(gt5_report, problem_for(gt5_report, GT5), tmp_path / "fig.gif")


def test_missing_matplotlib_names_the_extra(monkeypatch, tmp_path, gt5_report):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib -> ImportError
    with pytest.raises(MissingExtraError, match=r"plotting needs `pip install certify\[plot\]`"):
        plot_report(gt5_report, problem_for(gt5_report, GT5), tmp_path / "fig.png")
    assert list(tmp_path.iterdir()) == []


def test_help_text(capsys):
    parser = argparse.ArgumentParser(prog="certify")
    cli_plot.add_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["plot", "--help"])
    text = capsys.readouterr().out
    for word in ("REPORT", "MODEL", "--data", "--out", "--radius", "examples:", "certify plot", "exit codes"):
        assert word in text


# ---------------------------------------------------------------------------- the batched evaluation
@pytest.mark.parametrize("activation,loss,wd,C", [
    ("relu", "square", 0.0, 2), ("leaky_relu:0.25", "cross_entropy", 1e-2, 3),
    ("abs", "hinge", 0.0, 1), ("identity", "absolute", 0.5, 2), ("relu", "multiclass_hinge", 0.0, 3),
    ("leaky_relu:0.1", "logistic", 0.0, 1),
])
def test_batched_values_equal_problem_value(activation, loss, wd, C):
    rng = np.random.default_rng(7)
    widths = [3, 5, 4, C]
    net = certify.Network(tuple(rng.normal(size=(o, i)) for i, o in zip(widths[:-1], widths[1:])),
                          tuple(rng.normal(size=o) for o in widths[1:]), activation)
    n = 11
    if loss in ("hinge", "logistic"):
        y = rng.choice([-1.0, 1.0], size=n)
    elif loss in ("multiclass_hinge", "cross_entropy"):
        y = rng.integers(0, C, size=n)
    else:
        y = rng.normal(size=(n, C))
    problem = Problem(net, Dataset(rng.normal(size=(n, 3)), y), loss, wd)
    basis = [rng.normal(size=problem.n_params) for _ in range(3)]
    coef = rng.normal(size=(25, 3))
    got = _Evaluator(problem)(basis, coef)
    want = [problem.value(problem.theta + np.column_stack(basis) @ c) for c in coef]
    assert np.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_polished_report_is_drawn_at_the_polished_point(tmp_path):
    net = certify.load_model(GT7)
    data = certify.load_data(GT7)
    given = net.with_theta(net.theta + 1e-7)   # a checkpoint near the kink minimum
    report = certify.check(given, data=data, loss="square", polish=True).to_dict()
    assert report["polish"]["theta"] is not None
    problem = Problem(given, data, "square")
    sc = build_scene(report, problem)
    assert sc.loss0 == pytest.approx(report["problem"]["loss_value"], rel=1e-12)
    assert "polished point" in sc.subtitle
    assert_png(plot_report(report, problem, tmp_path / "polished.png"))
    with pytest.raises(CertificateError, match="polished from other parameters"):
        plot_report(report, Problem(net, data, "square"), tmp_path / "other.png")


def _loss_111(theta, X, y):
    """By hand, the mean square loss of a 1-1-1 ReLU net theta = (w1, b1, w2, b2): f(x) = w2 relu(w1 x + b1) + b2."""
    w1, b1, w2, b2 = theta
    f = w2 * np.maximum(w1 * X[:, 0] + b1, 0.0) + b2
    return float(np.mean(0.5 * (f - y) ** 2))


def test_a_polished_report_gets_the_segment_from_the_checkpoint(tmp_path):
    """GT-7 moved off its kink minimum by (1e-3, 2e-3, -1e-3, 0): the third panel is the loss on the
    segment checkpoint -> polished point, each value the hand formula's, and the figure has three panels."""
    net = certify.load_model(GT7)
    data = certify.load_data(GT7)
    given = net.with_theta(net.theta + np.array([1e-3, 2e-3, -1e-3, 0.0]))
    report = certify.check(given, data=data, loss="square", polish=True).to_dict()
    problem = Problem(given, data, "square")
    sc = build_scene(report, problem)
    theta0, theta1 = given.theta, np.asarray(report["polish"]["theta"])
    X, y = np.asarray(data.X), np.asarray(data.y, dtype=np.float64).ravel()
    want = [_loss_111(theta0 + s * (theta1 - theta0), X, y) for s in sc.path_s]
    np.testing.assert_allclose(sc.path_values, want, rtol=1e-12, atol=1e-15)
    assert sc.path_s[0] == -0.25 and sc.path_s[-1] == 1.25 and 0.0 in sc.path_s and 1.0 in sc.path_s
    ends = max(_loss_111(theta0, X, y), _loss_111(theta1, X, y))
    inside = [v for s, v in zip(sc.path_s, want) if 0.0 <= s <= 1.0]
    assert sc.path_barrier == pytest.approx(max(inside) - ends, abs=1e-15)
    assert sc.path_note.startswith(report["trained"]["outcome"] + ": moved")
    from certify.plotting import _draw, _matplotlib
    assert [ax.get_title() for ax in _draw(_matplotlib(), sc).axes].count(sc.path_title) == 1
    assert_png(plot_report(report, problem, tmp_path / "polished3.png"))


def test_an_unpolished_report_has_no_segment(gt7_report):
    problem = problem_for(gt7_report, GT7)
    sc = build_scene(gt7_report, problem)
    assert sc.path_s is None and sc.path_values is None
