"""The ``trained`` benchmark family (benchmarks/trained.py): the committed data exports and
checkpoints, the family's coverage, and the neighbourhood probe that judges its ``local_min``
verdicts. No training here (that is ``python -m benchmarks.trained train``).

Independent answers: the data exports are compared with a fresh export from scikit-learn; the
sidecars' final losses (written by torch at training time) with the loss evaluated by
``benchmarks.numerics`` (numpy, no certify); the torch objective with the same numpy losses on
random inputs; the probe on hand-derived points (an exact zero-loss minimum, an exact saddle of
``f = a (w x + b) + c`` at 0, the hand-derived kink minimum GT-7).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import numerics as nm
from benchmarks import trained as tr

COMMITTED = [s for s in tr.SPECS if not s.large]


def _data(name):
    with np.load(tr.DATASET_DIR / f"{name}.npz", allow_pickle=False) as f:
        return {k: np.array(f[k]) for k in f.files}


# ============================================================================ data exports
@pytest.mark.parametrize("name", sorted(tr.DATASETS))
def test_dataset_shapes_and_conventions(name):
    d = _data(name)
    X, y = d["X"], d["y"]
    spec = tr.DATASETS[name]
    assert X.dtype == np.float64 and X.ndim == 2 and len(y) == X.shape[0]
    assert np.array_equal(X.astype(np.float32).astype(np.float64), X)     # exactly the float32 training tensors
    assert np.all(np.abs(X.mean(axis=0)) < 1e-6)
    std = X.std(axis=0)
    assert np.all((np.abs(std - 1) < 1e-6) | (std == 0))                   # constant columns stay 0
    if spec.task == "class":
        assert y.dtype == np.int64 and y.min() == 0 and len(np.unique(y)) == y.max() + 1
    elif spec.task == "pm1":
        assert set(np.unique(y)) == {-1.0, 1.0}
    else:
        assert y.dtype == np.float64 and np.array_equal(y.astype(np.float32).astype(np.float64), y)
        assert np.all(np.abs(y.mean(axis=0)) < 1e-6)
    for key in ("source", "licence", "description"):
        assert str(d[key])


def test_dataset_sizes():
    sizes = {name: _data(name)["X"].shape for name in tr.DATASETS}
    assert sizes == {"iris_class": (150, 4), "iris_vv": (100, 4), "iris_petal": (150, 3), "wine": (178, 13),
                     "breast_cancer": (569, 30), "digits": (1797, 64), "diabetes": (442, 10), "linnerud": (20, 3)}
    assert _data("linnerud")["y"].shape == (20, 3)


@pytest.mark.parametrize("name", sorted(tr.DATASETS))
def test_data_export_is_deterministic(name):
    """A fresh export from scikit-learn gives the committed arrays bit for bit."""
    pytest.importorskip("sklearn")
    fresh = tr.dataset_arrays(name)
    again = tr.dataset_arrays(name)
    committed = _data(name)
    for key in ("X", "y", "x_mean", "x_scale"):
        assert np.array_equal(fresh[key], again[key])
        assert fresh[key].dtype == committed[key].dtype
        assert np.array_equal(fresh[key], committed[key]), key


# ============================================================================ checkpoints
@pytest.mark.parametrize("spec", COMMITTED, ids=lambda s: s.name)
def test_sidecar_matches_spec(spec):
    meta = json.loads((tr.DATA_ROOT / f"{spec.name}.json").read_text())
    assert (tr.DATA_ROOT / f"{spec.name}.pt").exists()
    assert meta["widths"] == list(spec.widths) and meta["p"] == spec.p
    assert (meta["activation"], meta["loss"], meta["weight_decay"]) == (spec.activation, spec.loss, spec.weight_decay)
    assert meta["optimizer"]["name"] == spec.optimizer and meta["seed"] == spec.seed
    assert tr._sidecar_matches(spec, meta)
    assert meta["n"] == _data(spec.data)["X"].shape[0]
    assert len(meta["loss_curve"]) == 101 and meta["loss_curve"][-1][0] == meta["steps"]
    for key in ("final_loss", "grad_norm", "last_rel_change", "rel_change_last_10pct", "params_sha256"):
        assert meta[key] is not None
    assert meta["check"].startswith(f"certify check data/trained/{spec.name}.pt --data data/trained/datasets/")


@pytest.mark.parametrize("spec", COMMITTED, ids=lambda s: s.name)
def test_checkpoint_loads_and_its_loss_is_the_sidecars(spec):
    """The stored float32 parameters load (hash as recorded), and the loss numpy computes from them
    is the final loss torch recorded: the training objective is certify's loss."""
    pytest.importorskip("torch")
    layers, meta = tr.load_checkpoint(spec)
    assert meta["sha_matches"]
    assert [W.shape for W, _ in layers] == [(b, a) for a, b in zip(spec.widths[:-1], spec.widths[1:])]
    assert all(np.array_equal(W.astype(np.float32), W) for W, _ in layers)
    X, y = tr.load_dataset(spec.data)
    value = nm.AutogradNet(layers, X, y, spec.activation, spec.loss, spec.weight_decay).value()
    assert value == pytest.approx(meta["final_loss"], rel=1e-9, abs=1e-12)


def test_certify_reads_the_state_dict():
    pytest.importorskip("torch")
    import certify
    spec = tr.SPEC["iris_vv_hinge_wd_adam"]
    net = certify.load_model(tr.DATA_ROOT / f"{spec.name}.pt", activation=spec.activation)
    layers, _ = tr.load_checkpoint(spec)
    assert np.array_equal(net.theta, nm.flatten(layers))


def test_committed_size_is_small():
    total = sum(p.stat().st_size for p in tr.DATA_ROOT.rglob("*") if p.is_file() and "cache" not in p.parts)
    assert total < 5e6


# ============================================================================ the family
def test_family_coverage():
    specs = tr.SPECS
    assert 20 <= len(specs) <= 30
    assert {s.loss for s in specs} == {"square", "absolute", "hinge", "logistic", "multiclass_hinge",
                                       "cross_entropy"}
    assert {s.optimizer for s in specs} == {"adam", "sgd"}
    assert {s.depth for s in specs} == {1, 2, 3}
    assert any(s.weight_decay > 0 for s in specs) and any(s.weight_decay == 0 for s in specs)
    assert any(s.batch_size for s in specs) and any(not s.batch_size for s in specs)
    assert min(s.p for s in specs) < 100 and max(s.p for s in specs) >= 100_000
    assert {tr.DATASETS[s.data].task for s in specs} == {"class", "pm1", "regression"}
    assert all(s.large == (s.p >= tr.LARGE_P) for s in specs)


def test_instances_quick_and_full():
    quick = tr.instances(full=False)
    full = tr.instances(full=True)
    assert [i.id for i in quick] == [f"trained/{n}{v}" for n in tr.QUICK
                                     for v in ("", "+polish") if not v or n in tr.QUICK_POLISH]
    assert set(tr.QUICK_POLISH) <= set(tr.QUICK)
    assert len(full) == 2 * len(tr.SPECS)
    for inst in full:
        assert inst.family == "trained" and inst.run_certify is not None
        assert inst.params["variant"] in ("checkpoint", "polish")
        assert (inst.methods == ("certify",)) == (inst.params["variant"] == "polish")
    from benchmarks import families
    ids = {i.id for i in families.suite("quick")}
    assert {i.id for i in quick} <= ids


def test_instance_builds_with_unknown_truth():
    pytest.importorskip("torch")
    inst = tr.instances(full=False)[0]
    network, X, y, activation, loss, wd = inst.build()
    assert X.shape[0] == len(y) and network[0][0].shape[1] == X.shape[1]
    assert inst.ground_truth()[0] is None


def test_torch_objective_is_certifys_loss():
    """Every loss in torch equals the numpy loss of benchmarks.numerics (incl. the 1/2 of square)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    F = rng.standard_normal((7, 3))
    for loss, y in (("square", rng.standard_normal((7, 3))), ("absolute", rng.standard_normal((7, 3))),
                    ("multiclass_hinge", rng.integers(0, 3, 7)), ("cross_entropy", rng.integers(0, 3, 7))):
        Ft, yt = torch.from_numpy(F), torch.from_numpy(y)
        assert float(tr.torch_objective(Ft, yt, loss)) == pytest.approx(
            float(np.mean(nm.loss_values(F, nm.prepare_y(y, loss, 3), loss))), rel=1e-12)
    F1 = F[:, :1]
    for loss in ("hinge", "logistic"):
        y = np.where(rng.random(7) < 0.5, -1.0, 1.0)
        assert float(tr.torch_objective(torch.from_numpy(F1), torch.from_numpy(y), loss)) == pytest.approx(
            float(np.mean(nm.loss_values(F1, y[:, None], loss))), rel=1e-12)


# ============================================================================ outcome and probe
def test_derive_outcome():
    assert tr.derive_outcome("local_min", None, 1.0) == "near_minimum"
    assert tr.derive_outcome("saddle", None, 1.0) == "near_saddle"
    assert tr.derive_outcome("not_stationary", None, 1.0) == "undecided"
    assert tr.derive_outcome("not_stationary", {"distance": 0.01}, 1.0) == "not_converged"
    assert tr.derive_outcome("local_min", {"distance": 0.01}, 1.0) == "near_minimum"
    assert tr.derive_outcome("local_min", {"distance": 0.5}, 1.0) == "undecided"      # moved too far
    assert tr.derive_outcome("inconclusive", {"distance": 0.0}, 1.0) == "undecided"



def test_clip_cuts_reasons_at_a_word_boundary():
    # the summary once quoted "t = 1.83e-1" for a reason that said "t = 1.83e-16" past 300 characters
    reason = "x" * 280 + " the loss drops by 4.62e-18 at t = 1.83e-16 (verified, exact)"
    out = tr.clip(reason)
    assert len(out) <= tr.REASON_CHARS and out.endswith("...")
    assert "1.83e-1" not in out and out[:-3] == reason[:len(out) - 3]
    assert reason.startswith(out[:-3]) and reason[len(out) - 3] == " "
    assert tr.clip("short reason") == "short reason" and tr.clip(None) == ""
    assert tr.clip("y" * 400) == "y" * (tr.REASON_CHARS - 3) + "..."      # no space: a hard cut

X2 = np.array([[1.0], [-1.0]])
Y2 = np.array([1.0, -1.0])


def _line(a, w, b=0.0, c=0.0):
    return [(np.array([[w]]), np.array([b])), (np.array([[a]]), np.array([c]))]


def test_probe_refutes_an_exact_saddle():
    """f = a (w x + b) + c at theta = 0, data (1, 1), (-1, -1): every partial derivative is 0 and
    d^2 L / da dw = -mean(x y) = -1, so L = 1/2 - t^2 + O(t^4) along a = w = t: a saddle."""
    res = tr.probe(_line(0.0, 0.0), X2, Y2, "identity", "square", n_dirs=40)
    assert res["refuted"] and res["exact"]
    assert all(item["exact"] for item in res["refuting"])


def test_probe_accepts_an_exact_minimum():
    """f = x fits the data exactly: zero loss, no point is lower."""
    res = tr.probe(_line(1.0, 1.0), X2, Y2, "identity", "square", n_dirs=40)
    assert not res["refuted"] and res["loss"] == 0.0
    assert sum(res["drops_per_radius"].values()) == 0


def test_probe_accepts_the_kink_minimum_gt7():
    """GT-7 (REFERENCES.md): a local minimum with a sample on a unit kink."""
    with np.load(tr.ROOT / "data" / "gt7_kink_minimum.npz", allow_pickle=False) as f:
        d = {k: np.array(f[k]) for k in f.files}
    L = sum(1 for k in d if k.startswith("W"))
    layers = [(d[f"W{l}"], d[f"b{l}"]) for l in range(1, L + 1)]
    act = str(d["activation"]) if "activation" in d else "relu"
    res = tr.probe(layers, d["X"], d["y"], act, str(d["loss"]) if "loss" in d else "square", n_dirs=100)
    assert not res["refuted"]


def test_run_certify_hook_on_the_kink_minimum():
    """The runner's hook: a local_min is re-checked by verify and probed; nothing wrong here."""
    from benchmarks.baselines import Data
    with np.load(tr.ROOT / "data" / "gt7_kink_minimum.npz", allow_pickle=False) as f:
        d = {k: np.array(f[k]) for k in f.files}
    L = sum(1 for k in d if k.startswith("W"))
    layers = [(d[f"W{l}"], d[f"b{l}"]) for l in range(1, L + 1)]
    data = Data(layers, d["X"], d["y"], str(d["activation"]) if "activation" in d else "relu",
                str(d["loss"]) if "loss" in d else "square", 0.0)
    rec = tr.run_certify(data, 10.0, probe_dirs=50)
    assert rec["raw_verdict"] == "local_min"
    assert rec["verify_ok"] and not rec["probe"]["refuted"] and rec["wrong"] is False
    assert rec["outcome"] == "near_minimum" and rec["check_time_s"] > 0



def test_run_certify_hook_records_and_rechecks_a_pruned_certificate():
    """tests/test_prune.py's weight-decay flat valley (one sample x = 0, y = 5/2, lambda = 1/2, unit 2 all
    zero): undecided, the network without unit 2 a certified local minimum, re-checked by verify."""
    from benchmarks.baselines import Data
    layers = [(np.array([[0.0], [0.0]]), np.array([1.0, 0.0])), (np.array([[1.0, 0.0]]), np.array([1.0]))]
    rec = tr.run_certify(Data(layers, np.array([[0.0]]), np.array([2.5]), "relu", "square", 0.5), 10.0)
    assert rec["raw_verdict"] == "inconclusive"
    assert rec["pruned"] == {"units": 1, "widths": [1, 1, 1], "verdict": "local_min", "verify_ok": True}
    assert not rec.get("wrong")

def test_summary_counts_outcomes_and_targets(tmp_path):
    """`python -m benchmarks.trained summarize` on a hand-made results file: the counts by outcome, the
    carried-on `not_converged` ones, the time target and a wrong verdict are reported as they are."""
    def rec(name, variant, verdict, outcome=None, p=100, t=1.0, **kw):
        return {"family": "trained", "method": "certify", "instance": f"trained/{name}" + ("+polish" if variant == "polish" else ""),
                "variant": variant, "verdict": verdict, "outcome": outcome, "p": p, "time_s": t, "loss": "square",
                "params": {"checkpoint": name}, "commit": "abc1234", "date": "2026-12-06", **kw}
    rows = [rec("a", "checkpoint", "not_stationary"), rec("a", "polish", "local_min", "near_minimum", verify_ok=True),
            rec("b", "polish", "saddle", "near_saddle"), rec("c", "polish", "local_min", "not_converged", verify_ok=True),
            rec("d", "polish", "not_stationary", "not_converged", t=100.0),
            rec("e", "polish", "undecided", "undecided", reason="why e"),
            rec("f", "polish", "local_min", "near_minimum", wrong=True, verify_ok=False)]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = tr.summarize(path, tmp_path / "r.md")
    assert "4 / 6 (67%): (a) 2, (b) 1, (c) 1; not_converged without a certified end point 1, undecided 1" in text
    assert "**1 wrong**" in text and "why e" in text
    assert "median time <= 60 s for p <= 10^4 | 1.0 s over 6 checkpoints | yes" in text
    assert (tmp_path / "r.md").read_text() == text
    # a "saddle" refuted only within rounding distance of a kink (end_certified false) is no certified end
    rows.append(rec("g", "polish", "saddle", "not_converged", end_certified=False))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "4 / 7 (57%): (a) 2, (b) 1, (c) 1; not_converged without a certified end point 2" in tr.summarize(path)
    # a pruned network's certificate (certify.prune) is listed with the open checkpoint, not counted as an end point
    rows.append(rec("h", "polish", "undecided", "undecided", reason="why h",
                    pruned={"units": 3, "widths": [13, 13, 3], "verdict": "local_min", "verify_ok": True}))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = tr.summarize(path)
    assert "4 / 8 (50%)" in text and "1 pruned networks certified (without their all-zero units), 1 verify ok" in text
    assert ("why h **Without its 3 all-zero unit(s) the network (widths [13, 13, 3]) is a certified local minimum** "
            "(verify ok)") in text
    # the end points' escapes (trained.escape): listed with their gain, and whether float64 shows it
    rows.append(rec("i", "polish", "saddle", "undecided", end_certified=False,
                    escape={"decrease": 1.4e-17, "error_bound": 1.2e-13, "distance": 5.2e-8, "visible": False}))
    rows.append(rec("j", "polish", "saddle", "near_saddle",
                    escape={"decrease": 2.48e-6, "error_bound": 1e-16, "distance": 0.067, "visible": True}))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = tr.summarize(path)
    assert "| i | saddle | 1.4e-17 | 1.2e-13 | 5.2e-08 | **no** |" in text
    assert "| j | saddle | 2.48e-06 | 1e-16 | 0.067 | yes |" in text
