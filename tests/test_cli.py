"""The command line on good input: verdicts, exit codes, JSON, --out, --data, help texts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from certify.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
GT5 = DATA / "gt5_concave_kink.npz"  # a concave ReLU kink: refuted, exit 11
GT7 = DATA / "gt7_kink_minimum.npz"  # a kink minimum: first-order stationary (second order pending)

CHECK_FLAGS = ("--data", "--activation", "--loss", "--weight-decay", "--tol", "--time-limit", "--json", "--out")


def run_cli(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_not_stationary_exit_11_with_verdict_line(capsys):
    code, out, err = run_cli(capsys, "check", GT5, "--loss", "square")
    assert code == 11, err
    assert err == ""
    assert out.splitlines()[0] == "verdict: not_stationary"
    assert re.search(r"^reason: .*descent direction", out, re.M)


def test_json_on_stdout(capsys):
    code, out, err = run_cli(capsys, "check", GT5, "--loss", "square", "--json")
    assert code == 11, err
    report = json.loads(out)
    assert report["verdict"] == "not_stationary"
    assert report["refutation"]["verified"] is True


def test_out_writes_the_same_json(tmp_path, capsys):
    out_file = tmp_path / "report.json"
    code, out, err = run_cli(capsys, "check", GT5, "--json", "--out", out_file)
    assert code == 11, err
    assert out_file.read_text() == out
    assert json.loads(out_file.read_text())["verdict"] == "not_stationary"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temporary file left


def test_out_without_json_prints_the_summary(tmp_path, capsys):
    out_file = tmp_path / "report.json"
    code, out, err = run_cli(capsys, "check", GT5, "--out", out_file)
    assert code == 11, err
    assert out.startswith("verdict: not_stationary\n")
    assert json.loads(out_file.read_text())["verdict"] == "not_stationary"


def test_out_replaces_an_existing_file(tmp_path, capsys):
    out_file = tmp_path / "report.json"
    out_file.write_text("old\n")
    code, _, err = run_cli(capsys, "check", GT5, "--out", out_file)
    assert code == 11, err
    assert json.loads(out_file.read_text())["verdict"] == "not_stationary"


def test_separate_data_file(tmp_path, capsys):
    with np.load(GT5) as npz:
        arrays = {k: npz[k] for k in npz.files}
    model, data = tmp_path / "model.npz", tmp_path / "data.npz"
    np.savez(model, **{k: v for k, v in arrays.items() if k not in ("X", "y")})
    np.savez(data, X=arrays["X"], y=arrays["y"])
    code, out, err = run_cli(capsys, "check", model, "--data", data, "--activation", "relu", "--loss", "square")
    assert code == 11, err
    assert out.startswith("verdict: not_stationary\n")


def test_data_flag_overrides_data_in_the_model_file(capsys):
    code, out, err = run_cli(capsys, "check", GT7, "--data", GT5)
    assert code == 11, err


def test_kink_minimum_is_not_refuted(capsys):
    code, out, err = run_cli(capsys, "check", GT7, "--json")
    assert code in (0, 20), err  # 20 while the second-order stage is pending, 0 once it certifies
    assert json.loads(out)["verdict"] in ("local_min", "inconclusive")


def test_boundary_numbers_are_accepted(capsys):
    code, out, err = run_cli(capsys, "check", GT5, "--tol", "0", "--weight-decay", "0", "--time-limit", "0.5")
    assert code == 11, err
    code, out, err = run_cli(capsys, "check", GT5, "--tol=1e-6", "--weight-decay=1e-12", "--time-limit=1e3")
    assert code == 11, err


def test_top_level_help(capsys):
    code, out, err = run_cli(capsys, "--help")
    assert code == 0 and err == ""
    assert "check" in out and "usage: certify" in out


def test_version(capsys):
    code, out, err = run_cli(capsys, "--version")
    assert code == 0
    assert re.fullmatch(r"certify \d+\.\d+\.\d+\S*\n", out)


def test_check_help_mentions_every_flag_and_an_example(capsys):
    code, out, err = run_cli(capsys, "check", "--help")
    assert code == 0 and err == ""
    for flag in CHECK_FLAGS:
        assert flag in out, flag
    assert "example" in out.lower()
    assert re.search(r"^\s+certify check \S+\.npz", out, re.M), "an example command line"
    assert "exit codes" in out


def _console_script():
    """The installed ``certify`` entry point: next to this interpreter first, else on PATH."""
    return shutil.which("certify", path=str(Path(sys.executable).parent)) or shutil.which("certify")


@pytest.mark.skipif(_console_script() is None, reason="the console script 'certify' is not installed")
def test_console_script(tmp_path):
    exe = _console_script()
    env = {**os.environ, "PYTHONWARNINGS": ""}
    done = subprocess.run([exe, "check", str(GT5), "--json"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 11, done.stderr
    assert json.loads(done.stdout)["verdict"] == "not_stationary"
    bad = subprocess.run([exe, "check", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 2 and bad.stdout == ""
    assert re.fullmatch(r"certify: error: model file \S*missing\.npz does not exist\n", bad.stderr)
    assert not (tmp_path / "r.json").exists()


# ------------------------------------------------------------------ certify verify
def test_verify_round_trip(tmp_path, capsys):
    from certify.cli import main
    out = tmp_path / "report.json"
    assert main(["check", "data/gt7_kink_minimum.npz", "--out", str(out)]) in (0, 20)
    capsys.readouterr()
    assert main(["verify", str(out), "data/gt7_kink_minimum.npz"]) == 0
    text = capsys.readouterr().out
    assert "verified:" in text and "FAILED" not in text



def test_verify_says_the_pruned_network_is_a_minimum(tmp_path, capsys):
    """tests/test_prune.py's weight-decay flat valley: inconclusive, and the network without its zero unit a
    certified local minimum; verify re-checks that and says so in its last line."""
    from certify.cli import main
    model = tmp_path / "net.npz"
    np.savez(model, W1=[[0.0], [0.0]], b1=[1.0, 0.0], W2=[[1.0, 0.0]], b2=[1.0], X=[[0.0]], y=[2.5])
    out = tmp_path / "report.json"
    assert main(["check", str(model), "--activation", "relu", "--loss", "square", "--weight-decay", "0.5",
                 "--out", str(out)]) == 20
    capsys.readouterr()
    assert main(["verify", str(out), str(model)]) == 0
    text = capsys.readouterr().out
    assert "pruned_units" in text and text.rstrip().endswith(
        "verified: inconclusive (and the network without its 1 all-zero unit(s) is a local minimum)")
    report = json.loads(out.read_text())
    report["pruned"] = "x"                     # a malformed section: one line on stderr, exit 3, no traceback
    out.write_text(json.dumps(report))
    assert main(["verify", str(out), str(model)]) == 3
    captured = capsys.readouterr()
    assert captured.err == ("certify: verification failed: pruned_units: the report's pruned section is malformed: "
                            "'str' object has no attribute 'get'\n")
    assert captured.out.rstrip().endswith("NOT verified: inconclusive")

def test_verify_tampered_report_exits_3(tmp_path, capsys):
    import json
    from certify.cli import main
    out = tmp_path / "report.json"
    assert main(["check", "data/gt5_concave_kink.npz", "--out", str(out)]) == 11
    report = json.loads(out.read_text())
    report["refutation"]["step"] *= 3.0
    out.write_text(json.dumps(report))
    capsys.readouterr()
    assert main(["verify", str(out), "data/gt5_concave_kink.npz"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("certify: verification failed:")


def test_verify_bad_report_file(tmp_path, capsys):
    from certify.cli import main
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["verify", str(bad), "data/gt5_concave_kink.npz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read" in err and "JSON report" in err


def test_progress_is_reported_to_a_callback_and_never_printed(capsys, monkeypatch):
    """The library reports progress only to a callback; nothing reaches stdout/stderr by itself."""
    from certify.progress import reporting
    from tests.helpers import run_case
    from tests.reference.cases import by_name
    from certify.secondorder import output_order
    # without the output-order argument, nested_double_kink goes to the piece search, which ticks
    monkeypatch.setattr(output_order, "applies", lambda ctx: "off in this test")
    seen = []
    with reporting(lambda stage, done, total: seen.append((stage, done, total))):
        run_case(by_name("nested_double_kink"))   # its critical-cone pieces are ticked
    assert seen and seen[-1][1] == seen[-1][2]
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    run_case(by_name("gt05"))
    assert capsys.readouterr() == ("", "")


def test_polishing_rounds_are_logged_with_verbose(caplog):
    """`check --polish -v` logs every polishing round (round, loss, reduced gradient, kinks held) at
    INFO on the `certify.progress` logger (`-v` shows INFO on stderr)."""
    import logging
    caplog.set_level(logging.INFO, logger="certify")
    assert main(["check", "data/seeds/gt16.npz", "--polish", "-v"]) == 0
    line = next(r.getMessage() for r in caplog.records
                if r.name == "certify.progress" and "polishing: round 1" in r.getMessage())
    assert "loss" in line and "reduced gradient" in line and "kinks held" in line


def test_progress_details_reach_a_callback_and_are_never_printed(capsys):
    """The polisher reports its rounds to a detail callback; without one nothing is printed."""
    from certify.driver import check_polished
    from certify.loaders import load_model, load_data
    from certify.data import Problem
    from certify.progress import reporting_details
    net = load_model("data/seeds/gt16.npz")
    problem = Problem(net, load_data("data/seeds/gt16.npz"), "square", 0.0)
    seen = []
    with reporting_details(lambda stage, info: seen.append((stage, info))):
        check_polished(problem, time_limit=30)
    assert seen and seen[0][0] == "polishing" and {"round", "loss", "reduced_gradient", "kinks_held"} <= set(seen[0][1])
    assert capsys.readouterr() == ("", "")


def test_check_clears_its_progress_line_on_a_terminal(capsys, monkeypatch):
    """On a terminal, `check --polish` draws its polishing rounds on one stderr line and clears it
    before the report is printed (the report started after the last round's text, mid-line)."""
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["check", "data/seeds/gt16.npz", "--polish"]) == 0
    text = term.getvalue()
    assert "polishing: round 1" in text and text.endswith("\r\033[K")
    assert capsys.readouterr().out.startswith("verdict:")



def test_summary_of_an_unverified_descent_says_so():
    """A descent direction without a verified decrease is printed as such, not as 'step n/a ... None'."""
    from certify.report import Report, Verdict
    rep = Report(verdict=Verdict.INCONCLUSIVE, reason="r",
                 refutation={"kind": "descent_direction", "directional_derivative": -0.094, "step": None,
                             "verified": False, "note": "no step gave a decrease larger than the rounding-error bound"})
    line = [ln for ln in rep.summary().splitlines() if ln.startswith("descent:")][0]
    assert line == ("descent: L'(theta; d) = -0.094, no verified decrease along it (no step gave a decrease larger "
                    "than the rounding-error bound)")



def test_summary_says_how_many_kinks_the_polish_held():
    """At a polished point the float zeros within the rounding bound can be none while the polish held 40
    kinks to its tolerance: the kinks line says both (it read "0 unit, 0 loss" alone)."""
    from certify.report import Report, Verdict
    kinks = {"unit_kinks": 0, "loss_kinks": 0, "tolerance": None}
    held = {"kinks_held": {"count": 40, "units": 38, "loss_ties": 2}}
    line = [ln for ln in Report(verdict=Verdict.NOT_STATIONARY, reason="r", kinks=kinks, polish=held)
            .summary().splitlines() if ln.startswith("kinks:")][0]
    assert line == ("kinks:   0 unit, 0 loss (zero up to the rounding-error bound; the polish held 40 to its "
                    "tolerance: 38 unit, 2 loss ties)")
    same = {"unit_kinks": 38, "loss_kinks": 2, "tolerance": None}
    line = [ln for ln in Report(verdict=Verdict.NOT_STATIONARY, reason="r", kinks=same, polish=held)
            .summary().splitlines() if ln.startswith("kinks:")][0]
    assert line == "kinks:   38 unit, 2 loss (zero up to the rounding-error bound)"

def test_time_limit_counts_the_whole_command(capsys, monkeypatch):
    """`--time-limit` is the command's budget from its start: what the imports and loading took before
    the check comes out of the check's share (the command line: from certify's import; main() called
    in a script: from its call)."""
    import certify.cli as cli
    seen = {}

    def fake_check(net, **kw):
        seen["time_limit"] = kw["time_limit"]
        raise KeyboardInterrupt

    monkeypatch.setattr("certify.driver.check", fake_check)
    monkeypatch.setattr(cli, "process_age", lambda: 100.0)
    code, _, err = run_cli(capsys, "check", GT5, "--time-limit", "300")
    assert code == 130 and err == "certify: interrupted\n"
    assert 299.0 < seen["time_limit"] <= 300.0               # main(argv): counted from the call
    monkeypatch.setattr(sys, "argv", ["certify", "check", str(GT5), "--time-limit", "300"])
    assert cli.main() == 130                                  # the command line: from certify's import
    assert 199.0 < seen["time_limit"] <= 200.0
    monkeypatch.setattr(sys, "argv", ["certify", "check", str(GT5), "--time-limit", "50"])
    assert cli.main() == 130                                  # nothing left: a token budget, an answer at once
    assert 0 < seen["time_limit"] <= 1e-3


def test_process_age_counts_from_certifys_import(monkeypatch):
    """The command's age is the time since certify was first imported."""
    import time

    import certify
    from certify.cli_common import process_age
    monkeypatch.setattr(certify, "_IMPORTED", time.perf_counter() - 42.0)
    assert 42.0 <= process_age() < 43.0


def test_readable_report_wraps_to_the_terminal_width_only_on_a_terminal(capsys, monkeypatch):
    """Piped, each line of the report stays whole (scripts grep it); on a terminal it is wrapped to the
    terminal's width, continuation lines indented under the text, and no word lost or split."""
    code, piped, _ = run_cli(capsys, "check", GT5, "--loss", "square")
    assert code == 11
    long = [line for line in piped.splitlines() if len(line) > 60]
    assert long                                   # (the reason and descent lines of this report)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(shutil, "get_terminal_size", lambda *a, **k: os.terminal_size((60, 24)))
    code, shown, _ = run_cli(capsys, "check", GT5, "--loss", "square")
    assert code == 11
    plain = re.sub(r"\x1b\[[0-9;]*m", "", shown)
    assert all(len(line) <= 60 for line in plain.splitlines())
    def words(text):                              # (the time line differs between two runs)
        return " ".join(line for line in text.splitlines() if not line.startswith("time:")).split()
    assert words(plain) == words(piped)           # the same words in the same order
    reason = plain.splitlines().index(next(line for line in plain.splitlines() if line.startswith("reason:")))
    assert plain.splitlines()[reason + 1].startswith(" " * 9)      # under the text after "reason:  "
