"""``certify demo``: the constructions with their hand-derived verdicts, and the trained checkpoints.

The demo runs once here (``--quick``, through the command line) and every test reads its output and
reports. Independent answers: the constructions' verdicts were derived by hand; the native copies of
the checkpoints are compared with the SHA-256 torch wrote into each sidecar at training time (numpy
only) and, when torch is installed, with the ``.pt`` files themselves; the dead-unit saddle is one
by construction (a unit no gradient can move, REFERENCES.md A4.5 item 2), and its refutation's lower
point is re-evaluated here.
"""

import contextlib
import io
import json

import numpy as np
import pytest

import certify
from benchmarks import trained as tr
from certify.cli import main
from certify.data import Problem
from certify.demo import SLOW, TRAINED, data_dir, trained_problems

OUTCOMES = ("near_minimum", "near_saddle", "not_converged", "undecided")
VERDICTS = ("local_min", "saddle", "not_stationary", "inconclusive")
NATIVE = data_dir() / "trained" / "native"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("demo")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["demo", "--quick", "--out", str(out_dir)])
    return code, buf.getvalue(), out_dir


def _row(out: str, name: str) -> list[str]:
    rows = [line.split() for line in out.splitlines()
            if line.startswith(name + " ") and not line.startswith(name + " (")]   # not the notes below
    assert len(rows) == 1, (name, rows)
    return rows[0]


def test_demo_reproduces_every_hand_derived_verdict(demo):
    code, out, out_dir = demo
    assert code == 0, out
    assert "17 constructions, 17 with a hand-derived verdict, 0 differing" in out
    assert "<-- differs" not in out
    quick = [n for n in TRAINED if n not in SLOW]
    reports = sorted(out_dir.glob("*.json"))
    assert len(reports) == 17 + 2 * len(quick)
    for path in reports:
        assert json.loads(path.read_text())["verdict"] in VERDICTS


def test_demo_shows_the_trained_checkpoints_as_trained_and_polished(demo):
    code, out, out_dir = demo
    quick = [n for n in TRAINED if n not in SLOW]
    assert len(quick) >= 3
    assert f"{len(quick)} trained checkpoints, no hand-derived verdict" in out
    assert "certify.verify, all ok" in out and "FAILED" not in out
    for name in SLOW:
        assert name not in out                                # --quick leaves them out
    for name in quick:
        row = _row(out, name)
        raw = json.loads((out_dir / f"{name}.json").read_text())
        pol = json.loads((out_dir / f"{name}+polish.json").read_text())
        # columns: name, widths, activation, loss, wd, as trained, polished, outcome, moved, (%), change, verify, time
        assert row[5] == raw["verdict"] == "not_stationary"    # a trainer's point is never exactly stationary
        assert row[6] == pol["verdict"] and row[7] == pol["trained"]["outcome"] in OUTCOMES
        assert pol["trained"]["summary"] in out
        assert row[-2] == ("ok" if pol["verdict"] == "local_min" else "-")
    # distinct outcomes, each for its own reason
    assert _row(out, "iris_petal_sq_adam")[6:8] == ["local_min", "near_minimum"]
    assert _row(out, "iris_petal_sq_dead_adam")[6:8] == ["saddle", "near_saddle"]
    assert _row(out, "iris_class_ce_adam")[7] == "not_converged"


def test_demo_local_min_certificates_verify(demo):
    _, _, out_dir = demo
    problems = {name: p for name, p, _ in trained_problems(quick=True)}
    n = 0
    for name, p in problems.items():
        rep = json.loads((out_dir / f"{name}+polish.json").read_text())
        if rep["verdict"] == "local_min":
            assert certify.verify(rep, p.network, data=p.data).ok
            n += 1
    assert n >= 1


def test_demo_dead_unit_saddle_escape_lowers_the_loss(demo):
    _, _, out_dir = demo
    p = dict((n, p) for n, p, _ in trained_problems(quick=True))["iris_petal_sq_dead_adam"]
    net = p.network
    assert np.all(net.weights[0][0] == 0) and net.biases[0][0] == 0 and np.all(net.weights[1][:, 0] == 0)
    rep = json.loads((out_dir / "iris_petal_sq_dead_adam+polish.json").read_text())
    ref = rep["refutation"]
    theta = np.asarray(rep["polish"]["theta"])
    t = ref["step"]
    e = np.zeros_like(theta) if ref.get("curvature_direction") is None else np.asarray(ref["curvature_direction"])
    lower = theta + t * np.asarray(ref["direction"]) + 0.5 * t * t * e
    assert p.value(lower) < p.value(theta) <= p.value(p.theta)


# ============================================================================ the native copies
@pytest.mark.parametrize("name", TRAINED)
def test_native_copy_is_the_trained_checkpoint(name):
    """The float64 arrays are the float32 parameters torch stored: their SHA-256 (computed as
    benchmarks.trained.params_sha256 does on the state dict) is the one in the sidecar."""
    spec = tr.SPEC[name]
    with np.load(NATIVE / f"{name}.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    side = json.loads((tr.DATA_ROOT / f"{name}.json").read_text())
    L = len(spec.widths) - 1
    for l in range(1, L + 1):
        W, b = arrays[f"W{l}"], arrays[f"b{l}"]
        assert W.dtype == b.dtype == np.float64
        assert W.shape == (spec.widths[l], spec.widths[l - 1]) and b.shape == (spec.widths[l],)
        assert np.array_equal(W.astype(np.float32).astype(np.float64), W)
    assert f"W{L + 1}" not in arrays
    assert tr.native_sha256(arrays) == side["params_sha256"] == str(arrays["params_sha256"])
    assert str(arrays["activation"]) == spec.activation and str(arrays["loss"]) == spec.loss
    assert float(arrays["weight_decay"]) == spec.weight_decay
    assert str(arrays["data"]) == side["data_file"] and (tr.DATA_ROOT / side["data_file"]).exists()


def test_native_sha_sees_a_changed_parameter():
    with np.load(NATIVE / f"{TRAINED[0]}.npz", allow_pickle=False) as f:
        arrays = {k: np.array(f[k]) for k in f.files}
    before = tr.native_sha256(arrays)
    arrays["b1"][0] = np.nextafter(np.float32(arrays["b1"][0]), np.float32(np.inf))
    assert tr.native_sha256(arrays) != before


def test_export_native_reproduces_the_committed_files(tmp_path):
    pytest.importorskip("torch")
    names = list(TRAINED[:2])
    assert tr.main(["export-native", "--only", *names, "--out", str(tmp_path)]) == 0
    for name in names:
        with np.load(tmp_path / f"{name}.npz") as new, np.load(NATIVE / f"{name}.npz") as old:
            assert sorted(new.files) == sorted(old.files)
            for key in new.files:
                if key != "made_by":
                    assert np.array_equal(new[key], old[key]), key


def test_native_file_carries_loss_and_weight_decay_for_the_cli(capsys):
    name = "iris_class_mchinge_wd_sgd"
    spec = tr.SPEC[name]
    code = main(["check", str(NATIVE / f"{name}.npz"), "--data",
                 str(tr.DATASET_DIR / f"{spec.data}.npz"), "--json", "--time-limit", "10"])
    rep = json.loads(capsys.readouterr().out)
    assert code == 11 and rep["verdict"] == "not_stationary"
    assert rep["problem"]["loss"] == "multiclass_hinge" and rep["problem"]["weight_decay"] == 1e-3
    assert rep["problem"]["activation"] == "relu"


def test_full_demo_loads_every_checkpoint():
    full = trained_problems(quick=False)
    assert [n for n, _, _ in full] == list(TRAINED)
    for name, p, info in full:
        spec = tr.SPEC[name]
        assert isinstance(p, Problem) and list(p.network.widths) == list(spec.widths)
        assert p.loss.name == spec.loss and p.weight_decay == spec.weight_decay
        assert info["source"] and info["licence"]
