"""The solver-free first-order certificate at concave and nested kinks: a branch-and-bound tree.

Expected answers come from the brute-force oracle (:mod:`tests.bruteforce`: all pieces enumerated
with exact Farkas certificates and exact decreases; it never imports certify). Every certificate
must pass ``verify`` with nothing *attested*, and tampering with the tree must fail it.
"""

import copy

import numpy as np
import pytest

import certify
from certify.data import Dataset, Problem
from certify.formulate.leaf import branch_set, merged_model, model_of, node
from certify.formulate.first_order import one_level
from certify.kinks import find_kinks
from certify.loaders import as_network
from certify.tangent import first_order_model
from tests import bruteforce as bf

STATIONARY_SEEDS = (7, 8, 11)        # nested kinks (a unit kink at a loss kink) at an oracle-proved minimum
DESCENT_SEEDS = (191, 195)           # nested kinks, the oracle finds an exact descent


def _run(seed):
    inst = bf.random_instance(seed)
    a = inst.certify_args()
    report = certify.check(a["model"], a["X"], a["y"], activation=a["activation"], loss=a["loss"])
    return inst, a, report


def _verify(report_dict, a):
    return certify.verify(report_dict, a["model"], a["X"], a["y"])


@pytest.mark.parametrize("seed", STATIONARY_SEEDS)
def test_tree_certifies_what_the_oracle_proves(seed):
    inst, a, report = _run(seed)
    oracle = bf.oracle(inst)
    assert oracle.verdict == "local_min" and oracle.d_stationary is True
    assert report.verdict.value == "local_min", report.reason
    cert = report.first_order["certificate"]
    assert report.first_order["method"] == "tree" and cert["kind"] == "branch_and_bound"
    assert 1 <= cert["n_leaves"] <= 2 ** len(cert["branch"])
    ver = _verify(report.to_dict(), a)
    assert ver.ok, [c.detail for c in ver.failed]
    assert not any(c.attested for c in ver.checks)
    assert any(c.name == "first_order_tree" and c.ok for c in ver.checks)


@pytest.mark.parametrize("seed", DESCENT_SEEDS)
def test_tree_leaf_finds_the_descent_the_oracle_proves(seed):
    inst, a, report = _run(seed)
    oracle = bf.oracle(inst)
    assert oracle.verdict == "not_stationary"
    assert report.verdict.value == "not_stationary"
    assert report.refutation["verified"]
    # the refutation is an exact decrease too
    d = [bf.F(float(v)) for v in report.refutation["direction"]]
    t = bf.F(float(report.refutation["step"]))
    assert bf.exact_decrease(inst, d, max_halvings=1, t0=t) is not None


def _tree_report():
    """Seed 13: nested kinks whose root relaxation does not prove the point, so the tree branches."""
    inst, a, report = _run(13)
    cert = report.first_order["certificate"]
    assert cert["kind"] == "branch_and_bound" and "kink" in cert["tree"]
    assert cert["n_leaves"] < cert["full_tree_leaves"]        # pruned by bounds, not 2^m leaves
    return a, report.to_dict()


def test_a_dropped_leaf_fails():
    a, d = _tree_report()
    tree = d["first_order"]["certificate"]["tree"]
    del tree["plus"]
    ver = _verify(d, a)
    assert not ver.ok and "cover" in " ".join(c.detail for c in ver.failed)


def test_a_flipped_dual_sign_fails():
    a, d = _tree_report()
    leaves = d["first_order"]["certificate"]["leaves"]
    n_flipped = 0
    for key in ("mu", "nu", "xi", "lambda"):
        for lf in leaves:
            vals = np.asarray(lf[key], dtype=float)
            if np.any(vals > 0):
                tampered = copy.deepcopy(d)
                j = int(np.argmax(vals))
                t_leaf = tampered["first_order"]["certificate"]["leaves"][leaves.index(lf)]
                t_leaf[key] = [(-v if i == j else v) for i, v in enumerate(lf[key])]
                assert not _verify(tampered, a).ok, key
                n_flipped += 1
                break
    assert n_flipped >= 1
    # a branch constraint's multiplier made negative (the dual sign of a cone constraint)
    tampered = copy.deepcopy(d)
    lf = tampered["first_order"]["certificate"]["leaves"][0]
    lf["mu"] = [-0.5] + list(lf["mu"][1:])
    ver = _verify(tampered, a)
    assert not ver.ok and "negative multiplier" in " ".join(c.detail for c in ver.failed)


def test_an_altered_branching_fails():
    a, d = _tree_report()
    cert = d["first_order"]["certificate"]
    # children swapped: the leaves' multipliers are checked on the opposite cones. (A swap can be
    # harmless when both sides hold the same certificate; the one below the root's minus child does not.)
    def internal_paths(node, path=()):
        if "kink" in node:
            yield path
            yield from internal_paths(node["minus"], path + ("minus",))
            yield from internal_paths(node["plus"], path + ("plus",))

    failures = 0
    for path in internal_paths(cert["tree"]):
        swapped = copy.deepcopy(d)
        t = swapped["first_order"]["certificate"]["tree"]
        for step in path:
            t = t[step]
        t["minus"], t["plus"] = t["plus"], t["minus"]
        failures += not _verify(swapped, a).ok
    assert failures >= 1
    # a node branching on a kink outside the branch set
    outside = copy.deepcopy(d)
    outside["first_order"]["certificate"]["tree"]["kink"] = max(cert["branch"]) + 1
    assert not _verify(outside, a).ok
    # a kink branched on twice along a path (the other kink never fixed)
    twice = copy.deepcopy(d)
    t = twice["first_order"]["certificate"]["tree"]
    if "kink" in t.get("minus", {}):
        t["minus"]["kink"] = t["kink"]
        assert not _verify(twice, a).ok
    # a different branch set than the model's
    other = copy.deepcopy(d)
    other["first_order"]["certificate"]["branch"] = cert["branch"][:-1]
    assert not _verify(other, a).ok


def test_leaf_models_agree_with_the_tangent_network_on_their_cones():
    """On a leaf's cone the leaf model equals L'(theta; d) (the tangent network), at random directions;
    with the branch kinks relaxed it is a lower bound there (r = max(v, 0) is feasible)."""
    inst = bf.random_instance(16)
    a = inst.certify_args()
    net = as_network(a["model"], a["activation"])
    problem = Problem(net, Dataset(a["X"], a["y"]), a["loss"])
    fwd = net.forward(problem.X, with_scale=True)
    fo = first_order_model(problem, fwd, find_kinks(problem, fwd))
    mfo, _ = merged_model(fo)
    B = branch_set(mfo)
    assert B.size >= 2
    rng = np.random.default_rng(0)
    for _ in range(200):
        d = rng.standard_normal(fo.n_params)
        v, _ = mfo.tangents(d)
        signs = np.where(v[B] >= 0, 1, -1)
        nd = node(mfo, B, signs)
        assert np.all(nd.region @ d >= -1e-12)
        assert nd.one.evaluate(d) == pytest.approx(fo.evaluate(d), rel=1e-9, abs=1e-12)


def test_one_level_models_branch_on_their_concave_generators():
    """model_of turns a one-level model with a concave generator into a tree model with one branch kink."""
    from tests.reference.cases import CASES
    from tests.helpers import case_inputs
    case = next(c for c in CASES if c.name == "gt05")
    args = case_inputs(case)
    net = as_network(args["model"], args["activation"])
    problem = Problem(net, Dataset(args["X"], args["y"]), args["loss"], args["weight_decay"])
    fwd = net.forward(problem.X, with_scale=True)
    one = one_level(first_order_model(problem, fwd, find_kinks(problem, fwd)))
    fo = model_of(one)
    B = branch_set(merged_model(fo)[0])
    assert B.size == int(np.count_nonzero(one.gamma < 0)) >= 1
    rng = np.random.default_rng(1)
    for _ in range(50):
        d = rng.standard_normal(one.g.size)
        assert fo.evaluate(d) == pytest.approx(one.evaluate(d), rel=1e-12, abs=1e-15)


def test_branching_out_of_kink_order_verifies_seed871():
    """Regression: a tree branching first on a kink that cannot be relaxed (kink 4, then 0, 1) stored
    the branch multipliers in path order, while verify rebuilt the node in kink order."""
    inst, a, report = _run(871)
    cert = report.first_order["certificate"]
    assert cert["kind"] == "branch_and_bound" and cert["tree"]["kink"] != min(cert["branch"])
    ver = _verify(report.to_dict(), a)
    assert ver.ok, [c.detail for c in ver.failed]


def test_a_tree_that_does_not_fit_leaves_an_attested_milp_bound_and_says_why(monkeypatch):
    """With a node budget too small for the tree, the MILP decides; verify lists its bound as attested
    and the report says why the tree was not used."""
    import certify.bnb as bnb
    monkeypatch.setattr(bnb, "MAX_NODES", 1)
    inst, a, report = _run(13)
    cert = report.first_order["certificate"]
    assert report.first_order["method"] == "milp" and cert["kind"] == "milp_bound"
    assert "nodes" in cert["tree_not_used"]
    ver = _verify(report.to_dict(), a)
    attested = [c for c in ver.checks if c.attested]
    assert attested and "tree was not used" in attested[0].detail


def test_a_proof_tree_deeper_than_a_certificate_holds_leaves_the_milp_bound(monkeypatch):
    """A proof tree deeper than MAX_PROOF_DEPTH is not returned (its nested JSON and verify's walk
    would pass Python's recursion limit): the MILP decides, and the report says why."""
    import certify.bnb as bnb
    monkeypatch.setattr(bnb, "MAX_PROOF_DEPTH", 0)
    inst, a, report = _run(13)
    cert = report.first_order["certificate"]
    assert report.first_order["method"] == "milp" and cert["kind"] == "milp_bound"
    assert "deep" in cert["tree_not_used"]
    assert _verify(report.to_dict(), a).ok


def test_the_milp_after_the_tree_gets_only_the_time_left(monkeypatch):
    """The first-order MILP runs after the tree test has used its share: it gets what is left of the
    time limit, not all of it (a check with 84 s left ran its MILP 3 s past its budget). The tree
    here is a stub that takes 0.3 s of a 0.5 s limit and decides nothing; the MILP's limit must be at
    most the 0.2 s left."""
    import time
    from types import SimpleNamespace

    import scipy.sparse as sp

    from certify import first_order
    from certify.bnb import TreeOutcome
    from certify.solvers import SolveStatus
    from certify.solvers.base import SolveResult

    limits = []

    def tree(fo, time_limit):
        time.sleep(0.3)
        return TreeOutcome(None, reason="stub")

    def solve(prog, time_limit=None, options=None):
        limits.append(time_limit)
        return SolveResult(SolveStatus.TIME_LIMIT, "stub")

    monkeypatch.setattr(first_order, "_cheap_descent", lambda *a, **k: None)
    monkeypatch.setattr(first_order, "decide_tree", tree)
    monkeypatch.setattr(first_order, "descent_milp", lambda fo: (SimpleNamespace(n_cols=2), {"n_binary": 0, "big_m_max": 0, "d": []}))
    monkeypatch.setattr(first_order, "solve", solve)
    fo = SimpleNamespace(A=sp.csr_matrix((1, 2)), G=sp.csr_matrix((0, 2)), tolerance=lambda: 1e-9, evaluate=None)
    out = first_order._milp_test(fo, 0.5)
    assert out.stationary is None
    assert len(limits) == 1 and 0 < limits[0] <= 0.2


def test_a_path_through_more_kinks_than_the_recursion_limit_is_searched():
    """1,440 nested kinks (every unit of two hidden layers at zero on 60 samples: W1, b1, b2 = 0),
    none relaxable, so the search goes 1,422 kinks deep before its first LP. The point is not
    stationary by hand: the output is 0 everywhere, so dL/db3 = -mean(y) != 0. The recursive search
    raised RecursionError (bc_logistic_deep_sgd's polish judge, a 1,537-parameter checkpoint)."""
    from certify.bnb import decide_tree
    from certify.network import Network
    rng = np.random.default_rng(0)
    n, d, h = 60, 3, 16
    X, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    W = [np.zeros((h, d)), rng.standard_normal((h, h)), rng.standard_normal((1, h))]
    b = [np.zeros(h), np.zeros(h), np.zeros(1)]
    prob = Problem(Network(W, b, "relu"), Dataset(X, y), "square")
    fwd = prob.network.forward(prob.X, with_scale=True)
    fo = first_order_model(prob, fwd, find_kinks(prob, fwd))
    assert branch_set(merged_model(fo)[0]).size > 1000
    out = decide_tree(fo, time_limit=60)
    assert out.stationary is False and out.value < 0
    assert fo.evaluate(out.direction) < 0
    t = 1e-3                                   # the loss itself falls along it (square loss, by hand)
    assert prob.value(prob.theta + t * out.direction) < prob.value()
