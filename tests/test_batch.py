"""``certify batch``: expanding checkpoints, serial / joblib / Dask runs, JSON lines, summary, exit codes."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import certify
from certify import batch
from certify.batch import expand_checkpoints, run_batch
from certify.cli import _Parser
from certify.cli_batch import add_parser, run
from certify.errors import InvalidValueError, MissingExtraError, ModelLoadError, UnknownNameError

DATA = Path(__file__).resolve().parents[1] / "data"
GT5 = DATA / "gt5_concave_kink.npz"  # concave kink: not_stationary
GT7 = DATA / "gt7_kink_minimum.npz"  # kink minimum: local_min

# name -> expected verdict; named so that natural order (step_9 before step_10) differs from sorted()
EXPECTED = {
    "step_1.npz": "not_stationary",   # gt5 as is
    "step_2.npz": "local_min",        # gt7 as is
    "step_3.npz": "not_stationary",   # gt7 with its output bias moved by 0.25
    "step_5.npz": "saddle",           # gt5's inputs, a dead-output unit with y = (-1, 0, 1) (REFERENCES GT-11)
    "step_7.npz": "error",            # a truncated file
    "step_10.npz": "saddle",          # gt5's data, a deep linear network at 0 (third-order saddle)
    "step_20.npz": "local_min",       # gt7 rescaled (W1, b1) * 2, W2 / 2: the same function
}
ORDER = list(EXPECTED)
KEYS = ["checkpoint", "verdict", "reason", "exit_code", "loss_value", "n_params", "kinks", "method", "claim", "trained", "time_s",
        "error", "warning"]


def _arrays(path: Path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _variants() -> dict[str, dict]:
    gt5, gt7 = _arrays(GT5), _arrays(GT7)
    shifted = dict(gt7, b2=gt7["b2"] + 0.25)
    saddle = {"W1": np.array([[0.0]]), "b1": np.array([1.0]), "W2": np.array([[0.0]]), "b2": np.array([0.0]),
              "X": gt5["X"], "y": np.array([-1.0, 0.0, 1.0]), "activation": np.array("relu")}
    deep_linear = {"W1": np.zeros((1, 1)), "b1": np.zeros(1), "W2": np.zeros((1, 1)), "b2": np.zeros(1),
                   "W3": np.zeros((1, 1)), "b3": np.zeros(1), "X": gt5["X"], "y": np.array([-1.0, 0.0, 1.0]),
                   "activation": np.array("identity")}
    rescaled = dict(gt7, W1=gt7["W1"] * 2, b1=gt7["b1"] * 2, W2=gt7["W2"] / 2)
    return {"step_1.npz": gt5, "step_2.npz": gt7, "step_3.npz": shifted, "step_5.npz": saddle,
            "step_10.npz": deep_linear, "step_20.npz": rescaled}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> Path:
    """A folder of 6 checkpoints (model and data in each file), one corrupted file and a stray text file."""
    folder = tmp_path_factory.mktemp("ckpts")
    for name, arrays in _variants().items():
        np.savez(folder / name, **arrays)
    (folder / "step_7.npz").write_bytes(GT7.read_bytes()[:100])  # truncated zip
    (folder / "notes.txt").write_text("not a checkpoint\n")
    return folder


@pytest.fixture(scope="module")
def serial(ckpts) -> list[dict]:
    return run_batch(expand_checkpoints([ckpts]), loss="square", progress=False)


def _stable(results):
    """Results without the timings (which differ from run to run)."""
    return [{k: v for k, v in r.items() if k != "time_s"} for r in results]


# ---------------------------------------------------------------------------- expand_checkpoints
def test_folder_expands_to_checkpoints_in_natural_order(ckpts):
    paths = expand_checkpoints([ckpts])
    assert [p.name for p in paths] == ORDER  # notes.txt skipped, step_7 before step_10


def test_glob_file_and_duplicates(ckpts):
    assert [p.name for p in expand_checkpoints([str(ckpts / "step_*.npz")])] == ORDER
    assert [p.name for p in expand_checkpoints([str(ckpts / "step_2?.npz")])] == ["step_20.npz"]
    # an explicit file, then a glob repeating it: first occurrence kept, order of the patterns
    got = expand_checkpoints([ckpts / "step_3.npz", str(ckpts / "step_[123].npz")])
    assert [p.name for p in got] == ["step_3.npz", "step_1.npz", "step_2.npz"]
    assert [p.name for p in expand_checkpoints([str(ckpts.parent / "**" / "step_1*.npz")])] == \
        ["step_1.npz", "step_10.npz"]


def test_nothing_matches_is_a_clear_error(tmp_path, ckpts):
    with pytest.raises(ModelLoadError, match=r"checkpoint .*missing\.npz does not exist"):
        expand_checkpoints([ckpts / "missing.npz"])
    with pytest.raises(ModelLoadError, match=r"does not exist \(no directory"):
        expand_checkpoints([tmp_path / "no_such_dir" / "m.npz"])
    with pytest.raises(ModelLoadError, match=r"pattern '.*nope_\*\.npz' matches no checkpoint: expected files "
                                             r"ending in \.npz"):
        expand_checkpoints([str(ckpts / "nope_*.npz")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"folder .*empty holds no checkpoint"):
        expand_checkpoints([tmp_path / "empty"])
    with pytest.raises(InvalidValueError, match="no checkpoints given"):
        expand_checkpoints([])


def test_the_data_file_in_the_folder_is_not_a_checkpoint(tmp_path):
    gt7 = _arrays(GT7)
    np.savez(tmp_path / "train.npz", X=gt7["X"], y=gt7["y"])
    for i in (1, 2):
        np.savez(tmp_path / f"model_{i}.npz", **{k: v for k, v in gt7.items() if k not in ("X", "y")})
    paths = expand_checkpoints([tmp_path], exclude=[tmp_path / "train.npz"])
    assert [p.name for p in paths] == ["model_1.npz", "model_2.npz"]
    results = run_batch(paths, data=tmp_path / "train.npz", loss="square", progress=False)
    assert [r["verdict"] for r in results] == ["local_min", "local_min"]
    # without --data, model-only checkpoints are per-checkpoint errors naming the fix
    results = run_batch(paths, loss="square", progress=False)
    assert [r["verdict"] for r in results] == ["error", "error"]
    assert "no data" in results[0]["error"] and "--data FILE" in results[0]["error"]


# ---------------------------------------------------------------------------- run_batch
def test_serial_results(serial, ckpts):
    assert [Path(r["checkpoint"]).name for r in serial] == ORDER
    assert [r["verdict"] for r in serial] == list(EXPECTED.values())
    for r in serial:
        assert list(r) == KEYS
        json.dumps(r, allow_nan=False)  # JSON-able, no NaN
        assert r["time_s"] >= 0
    bad = serial[ORDER.index("step_7.npz")]
    assert bad["exit_code"] == 2 and bad["loss_value"] is None and bad["n_params"] is None
    assert "truncated or corrupted" in bad["error"] and "\n" not in bad["error"]
    for r in serial:
        if r["verdict"] == "error":
            continue
        # the same answer as certify.check on that file
        report = certify.check(r["checkpoint"], data=r["checkpoint"], loss="square")
        assert (r["verdict"], r["exit_code"], r["reason"]) == (report.verdict.value, report.exit_code, report.reason)
        assert r["loss_value"] == report.problem["loss_value"]
        assert r["n_params"] == report.problem["n_params"]
        assert r["method"] == report.flags.get("method")
        assert r["error"] is None
    gt7 = serial[ORDER.index("step_2.npz")]
    assert (gt7["kinks"], gt7["n_params"], gt7["method"]) == (1, 4, "cell_convexity")


def test_shared_options_are_checked_once_before_any_checkpoint(ckpts):
    paths = expand_checkpoints([ckpts])
    with pytest.raises(UnknownNameError, match="unknown loss"):
        run_batch(paths, loss="squared_hinge_typo")
    with pytest.raises(UnknownNameError):
        run_batch(paths, loss="square", activation="swish")
    with pytest.raises(InvalidValueError, match="jobs"):
        run_batch(paths, loss="square", jobs=0)
    with pytest.raises(ModelLoadError, match="data file .* does not exist"):
        run_batch(paths, loss="square", data=ckpts / "no_data.npz")
    with pytest.raises(InvalidValueError, match="time limit"):
        run_batch(paths, loss="square", time_limit=0)


def test_joblib_two_workers_same_results_same_order(ckpts, serial):
    pytest.importorskip("joblib")
    parallel = run_batch(expand_checkpoints([ckpts]), loss="square", jobs=2, progress=False)
    assert _stable(parallel) == _stable(serial)


def test_missing_extras_name_the_pip_extra(ckpts, monkeypatch):
    paths = expand_checkpoints([ckpts])
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(MissingExtraError, match=r"--scheduler needs `pip install certify\[dask\]`"):
        run_batch(paths, loss="square", scheduler="tcp://127.0.0.1:8786")
    monkeypatch.setitem(sys.modules, "joblib", None)
    with pytest.raises(MissingExtraError, match=r"pip install certify\[batch\]"):
        run_batch(paths, loss="square", jobs=2)
    assert len(run_batch(paths[:2], loss="square", jobs=1, progress=False)) == 2  # serial needs neither


def test_dask_local_cluster_same_results(ckpts, serial):
    distributed = pytest.importorskip("distributed")
    paths = expand_checkpoints([ckpts])
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        on_cluster = run_batch(paths, loss="square", scheduler=cluster, progress=False)
        assert _stable(on_cluster) == _stable(serial)
        with distributed.Client(cluster) as client:  # a Client is used, not closed
            again = run_batch(paths[:2], loss="square", scheduler=client, data=GT7, progress=False)
            assert client.status == "running"
        assert [r["verdict"] for r in again] == ["not_stationary", "local_min"]  # gt5's weights on gt7's data
        by_address = run_batch(paths[:3], loss="square", scheduler=cluster.scheduler_address, progress=False)
        assert _stable(by_address) == _stable(serial[:3])
    with pytest.raises(InvalidValueError, match="expected an address such as tcp://HOST:8786"):
        run_batch(paths, loss="square", scheduler="nonsense://x")


# ---------------------------------------------------------------------------- progress
class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_silent_unless_a_terminal():
    pipe = io.StringIO()
    bar = batch.Progress(3, stream=pipe)
    for _ in range(3):
        bar.advance({"verdict": "local_min"})
    bar.close()
    assert pipe.getvalue() == ""


def test_progress_counter_without_rich(monkeypatch):
    for name in ("rich", "rich.console", "rich.progress"):
        monkeypatch.setitem(sys.modules, name, None)
    term = _Terminal()
    bar = batch.Progress(3, stream=term)
    for verdict in ("local_min", "error", "saddle"):
        bar.advance({"verdict": verdict})
    bar.close()
    text = term.getvalue()
    assert "checking 0/3 checkpoints" in text and "checking 3/3 checkpoints, 1 error" in text
    assert text.endswith("\r\033[K")  # the line is cleared at the end


def test_progress_with_rich_on_a_terminal():
    pytest.importorskip("rich")
    term = _Terminal()
    bar = batch.Progress(2, stream=term)
    assert bar._rich is not None
    bar.advance({"verdict": "local_min"})
    bar.advance({"verdict": "local_min"})
    bar.close()
    assert "2/2" in term.getvalue()


# ---------------------------------------------------------------------------- command line
def run_cmd(capsys, *argv):
    parser = _Parser(prog="certify")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    add_parser(sub)
    try:
        code = run(parser.parse_args(["batch", *map(str, argv)]))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _table_counts(out: str) -> dict:
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_cli_summary_table_and_exit_4_on_an_errored_checkpoint(capsys, ckpts):
    code, out, err = run_cmd(capsys, ckpts)
    assert code == 4
    assert _table_counts(out) == {"local_min": 2, "saddle": 2, "not_stationary": 2, "inconclusive": 0,
                                  "error": 1, "total": 7}
    assert "slowest:" in out and "s wall" in out
    assert err.count("\n") == 1 and err.startswith("certify: error: ") and "step_7.npz" in err \
        and "truncated or corrupted" in err  # one line per failed checkpoint, no progress bar (not a tty)


def test_cli_exit_0_when_every_checkpoint_was_checked(capsys, ckpts):
    code, out, err = run_cmd(capsys, ckpts / "step_1.npz", ckpts / "step_2.npz", ckpts / "step_5.npz")
    assert code == 0, err
    assert err == ""
    assert _table_counts(out) == {"local_min": 1, "saddle": 1, "not_stationary": 1, "inconclusive": 0, "total": 3}


def test_cli_json_lines_on_stdout_and_out_file(capsys, ckpts, tmp_path, serial):
    out_file = tmp_path / "results.jsonl"
    code, out, err = run_cmd(capsys, str(ckpts / "step_*.npz"), "--json", "--out", out_file, "--jobs", "1")
    assert code == 4
    lines = out.splitlines()
    assert len(lines) == 7
    records = [json.loads(line) for line in lines]
    assert _stable(records) == _stable(serial)
    # the file gets the same lines, each written as its checkpoint finished (serially: input order)
    assert sorted(out_file.read_text().splitlines()) == sorted(lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl"]  # no temporary file left


def test_cli_out_file_with_table(capsys, ckpts, tmp_path):
    out_file = tmp_path / "results.jsonl"
    code, out, err = run_cmd(capsys, ckpts / "step_2.npz", "--out", out_file, "--time-limit", "5", "--tol", "1e-9")
    assert code == 0, err
    assert [json.loads(l)["verdict"] for l in out_file.read_text().splitlines()] == ["local_min"]
    assert f"results: 1 JSON lines in {out_file}" in out


def test_cli_shared_data_flag(capsys, tmp_path):
    gt7 = _arrays(GT7)
    np.savez(tmp_path / "train.npz", X=gt7["X"], y=gt7["y"])
    np.savez(tmp_path / "model.npz", **{k: v for k, v in gt7.items() if k not in ("X", "y")})
    code, out, err = run_cmd(capsys, tmp_path, "--data", tmp_path / "train.npz", "--json")
    assert code == 0, err
    assert [json.loads(l)["verdict"] for l in out.splitlines()] == ["local_min"]


def test_cli_a_checkpoint_without_its_activation_is_named_once(capsys, tmp_path):
    """relu assumed for two files that do not record the activation: one stderr line for the batch,
    and each JSON line says it; a file that records it has no warning."""
    gt7 = _arrays(GT7)
    bare = {k: v for k, v in gt7.items() if k != "activation"}
    np.savez(tmp_path / "a.npz", **bare)
    np.savez(tmp_path / "b.npz", **bare)
    np.savez(tmp_path / "c.npz", **gt7)
    code, out, err = run_cmd(capsys, tmp_path, "--json")
    assert code == 0
    assert err == (f"certify: warning: 2 checkpoints (e.g. {tmp_path / 'a.npz'}) do not record their activation; "
                   f"checked as relu networks (pass --activation if trained with another; the JSON lines' "
                   f"\"warning\" names each)\n")
    records = {Path(r["checkpoint"]).name: r for r in map(json.loads, out.splitlines())}
    assert {n: r["verdict"] for n, r in records.items()} == {"a.npz": "local_min", "b.npz": "local_min",
                                                             "c.npz": "local_min"}
    assert "a.npz does not record its activation" in records["a.npz"]["warning"]
    assert records["c.npz"]["warning"] is None
    code, out, err = run_cmd(capsys, tmp_path / "a.npz", tmp_path / "c.npz", "--activation", "relu")
    assert code == 0 and err == ""


@pytest.mark.parametrize("argv, message", [
    (["{d}/nothing_*.npz"], "matches no checkpoint"),
    (["{d}/missing.npz"], "does not exist"),
    (["{d}", "--loss", "nope"], "unknown loss 'nope'"),
    (["{d}", "--data", "{d}/no_data.npz"], "does not exist"),
    (["{d}", "--scheduler", "bogus://x"], "expected an address"),
])
def test_cli_input_errors_exit_2_without_an_out_file(capsys, ckpts, tmp_path, argv, message):
    out_file = tmp_path / "results.jsonl"
    code, out, err = run_cmd(capsys, *[a.format(d=ckpts) for a in argv], "--out", out_file)
    assert code == 2
    assert out == ""
    assert err.startswith("certify: error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # no partial --out file


def test_cli_usage_errors(capsys, ckpts, tmp_path):
    code, out, err = run_cmd(capsys, ckpts, "--jobs", "0")
    assert code == 2 and "argument -j/--jobs: expected a positive integer or -1" in err
    code, out, err = run_cmd(capsys, ckpts, "--time-limit", "0")
    assert code == 2 and "argument --time-limit: expected a finite number > 0" in err
    code, out, err = run_cmd(capsys)
    assert code == 2 and "CHECKPOINTS" in err
    code, out, err = run_cmd(capsys, ckpts, "--out", tmp_path / "no_dir" / "r.jsonl")
    assert code == 2 and "directory" in err and "does not exist" in err


def test_cli_help_lists_flags_examples_and_exit_codes(capsys):
    code, out, err = run_cmd(capsys, "--help")
    assert code == 0
    for flag in ("--data", "--activation", "--loss", "--weight-decay", "--tol", "--time-limit", "--jobs",
                 "--scheduler", "--out", "--json"):
        assert flag in out
    assert "examples:" in out and "exit codes:" in out and "4 some checkpoints could not be checked" in out


def test_a_killed_batch_keeps_every_finished_line_and_resume_skips_them(capsys, ckpts, tmp_path, monkeypatch):
    """A sweep killed after its second checkpoint keeps those two lines; --resume checks only the rest."""
    out_file = tmp_path / "sweep.jsonl"
    real = batch.check_one
    calls = []

    def killed_after_two(path, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(path)
        return real(path, **kw)

    monkeypatch.setattr(batch, "check_one", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_cmd(capsys, ckpts / "step_1.npz", ckpts / "step_2.npz", ckpts / "step_3.npz", ckpts / "step_5.npz",
                "--out", out_file)
    kept = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [Path(r["checkpoint"]).name for r in kept] == ["step_1.npz", "step_2.npz"]
    with out_file.open("a") as fh:
        fh.write('{"checkpoint": "torn')          # a line the kill interrupted mid-write
    monkeypatch.setattr(batch, "check_one", real)
    seen = []
    monkeypatch.setattr(batch, "check_one", lambda path, **kw: seen.append(Path(path).name) or real(path, **kw))
    code, out, err = run_cmd(capsys, ckpts / "step_1.npz", ckpts / "step_2.npz", ckpts / "step_3.npz",
                             ckpts / "step_5.npz", "--out", out_file, "--resume")
    assert code == 0, err
    assert seen == ["step_3.npz", "step_5.npz"]
    good = []
    for line in out_file.read_text().splitlines():
        try:
            good.append(json.loads(line))
        except json.JSONDecodeError:
            assert line == '{"checkpoint": "torn'
    assert sorted(Path(r["checkpoint"]).name for r in good) == ["step_1.npz", "step_2.npz", "step_3.npz",
                                                                 "step_5.npz"]
    assert "2 kept from before, 2 new" in out


def test_resume_needs_out(capsys, ckpts):
    code, out, err = run_cmd(capsys, ckpts / "step_1.npz", "--resume")
    assert code == 2 and err.strip() == "certify: error: --resume needs --out FILE (the results file to go on with)"


def test_batch_polish_reports_the_trained_answer(ckpts):
    results = run_batch([ckpts / "step_3.npz"], loss="square", progress=False, polish=True)
    assert results[0]["verdict"] in ("local_min", "saddle", "not_stationary", "inconclusive")
    assert results[0]["trained"] is not None and "outcome" in results[0]["trained"]


def test_batch_smoothing_reaches_the_check(ckpts, capsys, monkeypatch):
    import certify.driver as drv
    seen = []
    real = drv.check

    def spy(*args, **kw):
        seen.append((kw.get("polish"), kw.get("smoothing")))
        return real(*args, **kw)
    monkeypatch.setattr(drv, "check", spy)
    results = run_batch([ckpts / "step_3.npz"], loss="square", progress=False, smoothing=True, time_limit=5.0)
    assert seen == [(False, True)] and results[0]["trained"] is not None
    code, out, err = run_cmd(capsys, ckpts / "step_3.npz", "--smoothing", "--json", "--time-limit", "5")
    assert seen[-1] == (False, True) and json.loads(out.splitlines()[0])["trained"] is not None


def test_a_polished_sweep_counts_the_answers_and_the_certified_end_points():
    """Hand-made result lines (as certify batch --polish writes them): the table counts each trained
    outcome and the end points that are certified; a sweep without --polish shows no such table."""
    from certify.batch import format_summary, summarize

    def line(name, verdict, outcome, end):
        return {"checkpoint": name, "verdict": verdict, "time_s": 1.0, "error": None,
                "trained": {"outcome": outcome, "end_certified": end}}
    results = [line("a", "local_min", "near_minimum", True), line("b", "saddle", "not_converged", True),
               line("c", "not_stationary", "not_converged", False), line("d", "inconclusive", "undecided", False)]
    s = summarize(results)
    assert s["outcomes"] == {"near_minimum": 1, "near_saddle": 0, "not_converged": 2, "undecided": 1}
    assert s["end_certified"] == 2
    text = format_summary(s)
    assert "answer (polish)" in text and "2 of 4 end in a certified end point" in text
    plain = summarize([dict(r, trained=None) for r in results])
    assert plain["outcomes"] == {} and "answer (polish)" not in format_summary(plain)
