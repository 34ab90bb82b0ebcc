"""The path-space certificate (certify/secondorder/path_fit.py) against independent answers.

* the hand-derived reference cases (tests/reference/cases.py): never ``ok`` at a point that is not
  a minimum; ``ok`` at the deep and one-layer minima it is built for;
* exact constructions (benchmarks.instances.pattern_cells, proof in its docstring: a per-pattern
  affine fit): certified, and a brute-force probe in exact rational arithmetic (tests/exact.py)
  finds no decrease; the refuted variants get an exact decrease;
* the brute-force piece-enumeration oracle (tests/bruteforce.py) on a few random one-hidden-layer
  instances where the certificate applies;
* the two evaluation routes of the equation tensor against a plain einsum; the absolute bound
  against the absolute sum; tampered certificates fail the re-check.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

import certify
from certify.data import Dataset, Problem
from certify.first_order import decide_first_order
from certify.kinks import find_kinks
from certify.loaders import as_network
from certify.secondorder import Context, path_fit
from certify.secondorder.path_fit import chain_bound, chain_tensor, path_test
from certify.tangent import first_order_model
from tests import exact
from tests.helpers import case_inputs
from tests.reference.cases import CASES, by_name


def _context(model, X, y, activation, loss, weight_decay=0.0) -> Context:
    net = as_network(model, activation)
    problem = Problem(net, Dataset(X, y), loss, weight_decay)
    fwd = net.forward(problem.X, with_scale=True)
    kinks = find_kinks(problem, fwd)
    fo = first_order_model(problem, fwd, kinks)
    first = decide_first_order(problem, fwd, kinks, fo)
    return Context(problem, fwd, kinks, fo, first)


def _case_context(case) -> Context:
    a = case_inputs(case)
    return _context(a["model"], a["X"], a["y"], a["activation"], a["loss"], a["weight_decay"])


def _roundtrip(cert: dict) -> dict:
    """The certificate as a report stores it (JSON)."""
    from certify.report import Report  # noqa: F401 - the report's encoder handles numpy arrays
    return json.loads(json.dumps(cert, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


# ------------------------------------------------------------------------------------- tensor
def test_equation_tensor_routes_agree_with_einsum():
    rng = np.random.default_rng(1)
    for _ in range(25):
        n, C, hB, hA, m = (int(v) for v in rng.integers(1, [30, 4, 6, 7, 5]))
        Om, Xb = rng.standard_normal((n, C)), rng.standard_normal((n, m))
        SB = rng.choice([0.0, 1.0, 0.25], size=(n, hB), p=[0.2, 0.7, 0.1])
        SA = rng.choice([0.0, 1.0, -1.0], size=(n, hA), p=[0.2, 0.7, 0.1])
        ref = np.einsum("ic,ik,ij,im->kcjm", Om, SB, SA, Xb)
        for route in ("pattern", "deviation", None):
            assert np.allclose(chain_tensor(Om, SB, SA, Xb, route=route), ref)
        bound = chain_bound(np.abs(Om), np.abs(SB), np.abs(SA), np.abs(Xb))
        assert np.all(bound >= np.einsum("ic,ik,ij,im->kcjm", *map(np.abs, (Om, SB, SA, Xb))) * (1 - 1e-12))


def test_balanced_pattern_groups_cost_nothing():
    """Four samples with one pattern and residuals orthogonal to xbar: their group drops out exactly."""
    Xb = np.array([[2.0, 1.0], [0.0, 1.0], [1.5, 1.0], [0.5, 1.0]])
    Om = np.array([[1.0], [1.0], [-1.0], [-1.0]])                 # sum Om xbar = (2 + 0 - 1.5 - 0.5, 0) = 0
    S = np.ones((4, 3))
    assert not np.any(chain_tensor(Om, S[:, :1], S, Xb, route="pattern"))
    from certify.secondorder.path_fit import _pattern_groups
    assert _pattern_groups(Om, S[:, :1], S, Xb)[0].size == 0


# ------------------------------------------------------------------------------------- reference
#: minima the path-space argument proves (deep and shallow; hand derivations in tests/reference)
PATH_MINIMA = ("gt01_relu", "gt01_leaky", "gt03", "gt04_relu", "gt07", "gt08", "gt09", "gt13", "gt16",
               "abs_convex_kink", "dead_unit", "nested_affine_min", "multi_output_min", "linear_global_min",
               "multiclass_tie_global", "absolute_residual_zero", "hinge_margin_one_min")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_reference_cases_never_certified_wrongly(case):
    res = path_test(*(lambda c: (c.problem, c.fwd, c.kinks, c.fo, c.first))(_case_context(case)))
    if res["status"] == "ok":
        assert case.verdict == "local_min", case.name
    if case.name in PATH_MINIMA:
        assert res["status"] == "ok", f"{case.name}: {res.get('reason')}"


@pytest.mark.parametrize("name", ["gt08", "nested_affine_min", "multiclass_tie_global", "gt13",
                                  "absolute_residual_zero"])
def test_kind_certificate_rechecks(name):
    ctx = _case_context(by_name(name))
    res = path_fit.run(ctx)
    assert res.verdict == "local_min", res.reason
    checks = []
    path_fit.recheck(ctx, _roundtrip(res.certificate), checks)
    assert checks and all(c.ok for c in checks), [(c.name, c.detail) for c in checks if not c.ok]


def test_gt08_through_check_and_verify():
    """GT-8 (nested convex kink, 2 hidden layers): layer 1 is linear near theta and merges away; the
    layer-2 kink enters path space as a convex term with an interior multiplier."""
    case = by_name("gt08")
    a = case_inputs(case)
    report = certify.check(a["model"], a["X"], a["y"], activation=a["activation"], loss=a["loss"])
    assert report.verdict.value == "local_min" and report.flags["method"] == "path_fit"
    cert = report.second_order["certificate"]
    assert cert["nonlinear_layers"] == [2] and cert["kink_copies"] == 1
    assert certify.verify(report.to_dict(), a["model"], a["X"], a["y"]).ok


# ------------------------------------------------------------------------------------- constructions
SMALL = dict(d=5, hidden=(6, 4), n_quads=8, K_zero=4, K_convex=(2, 2))


def _construction(**kw):
    from benchmarks.instances import pattern_cells
    return pattern_cells(**{**SMALL, **kw})


def _exact_layers(inst):
    return [([[Fraction(float(v)) for v in row] for row in W], [Fraction(float(v)) for v in b])
            for W, b in inst.model()]


def _exact_data(inst):
    X = [tuple(Fraction(float(v)) for v in row) for row in inst.X]
    if inst.loss == "hinge":
        y = [int(v) for v in inst.y]
    elif np.ndim(inst.y) == 1:
        y = [Fraction(float(v)) for v in inst.y]
    else:
        y = [tuple(Fraction(float(v)) for v in row) for row in inst.y]
    return X, y


@pytest.mark.parametrize("kw", [dict(hidden=(4, 3), n_quads=6, K_zero=2), dict(hidden=(4, 2), C=2, n_quads=6, K_zero=2),
                                dict(hidden=(4, 3), loss="hinge", n_quads=6, K_zero=2),
                                dict(hidden=(4, 3, 2), K_convex=(2, 0), n_quads=6, K_zero=2)],
                         ids=["depth2", "two_outputs", "hinge", "depth3"])
def test_construction_certified_and_exact_probe_finds_no_decrease(kw):
    inst = _construction(**kw)
    made = inst.expect["convex_kinks"]
    assert made[0] >= 1 and (len(inst.params["hidden"]) != 2 or made[1] >= 1), inst.expect
    report = certify.check(inst.model(), inst.X, inst.y, **inst.options())
    assert report.verdict.value == "local_min", report.reason
    assert report.flags["method"] in ("path_fit", "saturated", "cell_convexity"), report.flags["method"]
    assert certify.verify(report.to_dict(), inst.model(), inst.X, inst.y).ok
    X, y = _exact_data(inst)
    act = "relu"
    # radii well inside the construction's neighbourhood (the quadruples' spread is 2^-7 or less)
    res = exact.probe(_exact_layers(inst), X, y, act, inst.loss, radii=(Fraction(1, 2 ** 16), Fraction(1, 2 ** 24)),
                      n_random=8, seed=3)
    assert not res.found_decrease, (res.min_difference, res.radius)


def test_construction_concave_variant_has_an_exact_decrease():
    """The wrong residual sign at one first-layer kink member: d = -xbar_m on that unit's incoming
    weights descends (pattern_cells docstring); the tool must say not_stationary, never local_min,
    and tests.exact confirms a decrease at a small rational step."""
    inst = _construction(variant="concave")
    ctx = _context(inst.model(), inst.X, inst.y, "relu", inst.loss)
    assert path_test(ctx.problem, ctx.fwd, ctx.kinks, ctx.fo, ctx.first)["status"] != "ok"
    report = certify.check(inst.model(), inst.X, inst.y, **inst.options())
    assert report.verdict.value == "not_stationary", report.reason
    ref = report.refutation
    layers = _exact_layers(inst)
    X, y = _exact_data(inst)
    d = [Fraction(float(v)) for v in ref["direction"]]
    t = Fraction(float(ref["step"]))
    before = exact.loss(layers, X, y, "relu", inst.loss)
    after = exact.loss(exact.perturbed(layers, d, t), X, y, "relu", inst.loss)
    assert after < before


def test_construction_not_stationary_variant():
    inst = _construction(variant="not_stationary")
    report = certify.check(inst.model(), inst.X, inst.y, **inst.options())
    assert report.verdict.value == "not_stationary", report.reason


def test_tampered_path_certificate_fails():
    inst = _construction()
    report = certify.check(inst.model(), inst.X, inst.y, **inst.options())
    assert report.flags["method"] == "path_fit"
    good = report.to_dict()
    assert good["second_order"]["certificate"]["mu"], "the construction has top-layer kinks"
    bad = json.loads(json.dumps(good, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    mu = bad["second_order"]["certificate"]["mu"]
    mu[0][3] = [1.0 - v for v in mu[0][3]] if any(v not in (0.0, 1.0) for v in mu[0][3]) else [0.5] * len(mu[0][3])
    assert not certify.verify(bad, inst.model(), inst.X, inst.y).ok
    bad2 = json.loads(json.dumps(good, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    bad2["second_order"]["certificate"]["dropped_samples"] = bad2["second_order"]["certificate"]["dropped_samples"][1:]
    assert not certify.verify(bad2, inst.model(), inst.X, inst.y).ok


# ------------------------------------------------------------------------------------- brute force
#: seeds of tests.bruteforce.random_instance where the path certificate applies (found once; the
#: oracle, not certify, is the answer)
BF_SEEDS = (5, 9, 15, 19, 34, 46)


@pytest.mark.parametrize("seed", BF_SEEDS)
def test_agrees_with_the_enumeration_oracle(seed):
    from tests import bruteforce as bf
    inst = bf.random_instance(seed)
    a = inst.certify_args()
    ctx = _context(a["model"], a["X"], a["y"], a["activation"], a["loss"])
    res = path_test(ctx.problem, ctx.fwd, ctx.kinks, ctx.fo, ctx.first)
    oracle = bf.oracle(inst)
    if res["status"] == "ok":
        assert oracle.verdict in ("local_min", "unsure"), oracle.reason
    else:
        assert oracle.verdict != "local_min" or res["status"] in ("na", "fail")


def test_construction_is_exact():
    """The construction's facts, recomputed in rational arithmetic by tests/exact.py: every quadruple's
    residuals are orthogonal to xbar, the kink members and zero-loss samples sit exactly on a kink, and
    the zero-loss samples are fitted exactly."""
    inst = _construction(hidden=(4, 3), n_quads=6, K_zero=3)
    layers = _exact_layers(inst)
    X, y = _exact_data(inst)
    nq = 4 * inst.expect["quadruples"]
    def pre_activations(x):
        a, out = list(x), []
        for l, (W, b) in enumerate(layers, start=1):
            z = [sum((w * v for w, v in zip(row, a)), bj) for row, bj in zip(W, b)]
            out.append(z)
            a = [max(v, Fraction(0)) for v in z]
        return out

    outs, zeros = [], 0
    for i, x in enumerate(X):
        pre = pre_activations(x)
        assert pre[-1] == exact.forward(layers, x, "relu")
        outs.append(pre[-1])
        zeros += sum(1 for z in pre[:-1] for v in z if v == 0)
    assert zeros == inst.expect["unit_kinks"]
    for q in range(0, nq, 4):
        r = [outs[i][0] - y[i] for i in range(q, q + 4)]
        xbar = [list(X[i]) + [Fraction(1)] for i in range(q, q + 4)]
        assert all(sum(r[a] * xbar[a][k] for a in range(4)) == 0 for k in range(len(xbar[0])))
    assert all(outs[i][0] == y[i] for i in range(nq, len(X)))
