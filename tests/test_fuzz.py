"""The exact fuzz (:mod:`tests.fuzz`): its judge on hand-derived facts, its generators, and a fast
slice of the comparison with certify (the full runs: ``python -m benchmarks.fuzz --n 2000`` and
``python -m benchmarks.fuzz --degenerate --n 1600``).

Independence: the expected numbers below are derived by hand (in the comments) or re-computed
with :mod:`tests.exact`; the judge itself never imports certify.
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import pytest

from tests import bruteforce as bf
from tests import bruteforce2 as b2
from tests import exact, fuzz

F = Fraction
ZERO = F(0)

#: slice: one base per kind, the unmoved base and six distances
SLICE_KS = (24, 32, 36, 44, 52, 60)


# --------------------------------------------------------------------------------------------
# The issue's examples, exactly
# --------------------------------------------------------------------------------------------

def test_issue_example_i_judge():
    inst = fuzz.issue_example_i()
    net = b2.Net(inst)
    d = [ZERO] * net.p
    d[1] = F(-1)                                   # -e_2, the coordinate W1[1]
    assert net.directional_derivative(d) == F(-1, 51539607552)
    jd = fuzz.judge(inst)
    assert jd.verdict == "descent" and jd.slope < 0 and jd.decrease > 0
    moved = [a + jd.step * b for a, b in zip(inst.theta, jd.direction)]
    assert inst.loss_at(moved) == inst.loss_value() - jd.decrease       # tests.exact re-evaluates


def test_issue_example_ii_drops_for_every_step_2_10_to_2_32():
    """z_A = 2^-36: along -e_{w1} sample A switches off and the loss is the base's: exactly lower
    by ((1 + 2^-36)^2 - 1)/10 for every step t > 2^-36 (hand derivation in the docstring)."""
    moved, base = fuzz.issue_example_ii(36)
    assert fuzz.judge(base).verdict == "local_min"
    drop = ((1 + F(1, 2 ** 36)) ** 2 - 1) / 10
    for k in range(10, 33):
        pt = list(moved.theta)
        pt[0] -= F(1, 2 ** k)                      # theta[0] = W1[0][0] = w_1
        assert moved.loss_value() - moved.loss_at(pt) == drop
    jd = fuzz.judge(moved)
    assert jd.verdict == "descent"
    moved.certify_args()                           # every number is a float64


def test_issue_example_iii_label_moved_by_2_34():
    """gt07 with y_0 = 1/2 + 2^-34: sample 0 is dead (f_0 = c), the residuals summed 0 before, so
    dL/dc = (1/4)(-2^-34) = -2^-36 (hand derivation)."""
    moved, base = fuzz.issue_example_iii(34)
    net = b2.Net(moved)
    d = [ZERO] * net.p
    d[net.ib(1, 0)] = F(1)
    assert net.directional_derivative(d) == -F(1, 2 ** 36)
    assert fuzz.judge(moved).verdict == "descent"
    assert fuzz.judge(base).verdict == "local_min"


# --------------------------------------------------------------------------------------------
# Base constructions and moves
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bases():
    warnings.filterwarnings("ignore")
    out = {}
    for idx in range(len(fuzz.KINDS)):
        bs = fuzz.base(idx)
        assert bs is not None, fuzz.KINDS[idx]
        out[bs.kind] = (idx, bs)
    return out


def test_every_kind_has_a_base_with_an_independent_proof(bases):
    assert set(bases) == set(fuzz.KINDS)
    for kind, (_, bs) in bases.items():
        inst = bs.inst
        inst.certify_args()
        net = b2.Net(inst)
        if kind == "zero_loss":
            assert exact.loss(inst.layers, inst.X, inst.y_exact, inst.activation, inst.loss) == 0
        elif kind == "smooth":
            assert not net.kinks() and b2.oracle(inst, search=False).verdict == "local_min"
        elif kind == "cell":
            (W, b), (W2, b2_) = inst.layers
            bi = bf.Instance(W=W, b=b, a=W2[0], c=b2_[0], X=inst.X, y=tuple(r[0] for r in inst.Y),
                             activation=inst.activation, loss=inst.loss)
            assert bf.oracle(bi).verdict == "local_min" and net.unit_kinks()
        elif kind == "affine":
            assert b2.affine_fit_minimum(net) is not None
        elif kind in ("cone", "pieces"):
            assert net.unit_kinks() and b2.is_nested(net) == (kind == "pieces")
            assert b2.oracle(inst, search=False).verdict == "local_min"
        else:
            assert len(net.kinks()) > 10 and fuzz.one_level_endpoint_proof(net)


def test_moves_are_exact_and_float64(bases):
    for idx, bs in bases.values():
        for case in fuzz.cases_of_base(idx):
            case.inst.certify_args()
            if case.move == "none":
                assert case.inst == bs.inst
                continue
            delta = F(case.sign, 2 ** case.k)
            if case.move == "label":
                diff = [a - b for ra, rb in zip(case.inst.Y, bs.inst.Y) for a, b in zip(ra, rb) if a != b]
                assert diff == [delta] and not case.same_problem
            else:
                diff = [a - b for a, b in zip(case.inst.theta, bs.inst.theta) if a != b]
                assert len(diff) == 1 and abs(diff[0]) in (abs(delta), abs(delta) / 2, abs(delta) * 2, abs(delta))
                assert case.same_problem and case.distance == F(1, 2 ** case.k)
            if case.move in ("kink_bias", "kink_weight"):
                assert len(b2.Net(case.inst).unit_kinks()) < len(b2.Net(bs.inst).unit_kinks())


# --------------------------------------------------------------------------------------------
# Claims and classification
# --------------------------------------------------------------------------------------------

def test_tool_claim_reading():
    assert fuzz.tool_claim({"verdict": "local_min", "flags": {}}) == ("legacy", None)
    assert fuzz.tool_claim({"flags": {"claim": "exact"}})[0] == "exact"
    assert fuzz.tool_claim({"claim": "up to rounding"})[0] == "up_to_rounding"
    assert fuzz.tool_claim({"nearby": {"radius": 1e-9}}) == ("nearby", 1e-9)
    assert fuzz.tool_claim({"second_order": {"certificate": {"claim": "nearby", "radius": 0.5}}}) == ("nearby", 0.5)
    assert fuzz.tool_claim({"polish": {"distance": 1e-7}}) == ("nearby", 1e-7)


def test_classification_rules():
    inst = fuzz.issue_example_i()
    descent = fuzz.Judgement("descent", "exact L' < 0", slope=F(-1), step=F(1), decrease=F(1))
    minimum = fuzz.Judgement("local_min", "proved")
    rep = {"verdict": "local_min", "flags": {}}
    assert fuzz.classify(inst, rep, descent)["outcome"] == "wrong_local_min"
    assert fuzz.classify(inst, {"verdict": "local_min", "flags": {"claim": "exact"}}, descent)["wrong"]
    assert fuzz.classify(inst, rep, minimum)["outcome"] == "right_local_min"
    near = {"verdict": "local_min", "nearby": {"radius": 2.0 ** -30}}
    got = fuzz.classify(inst, near, descent, same_problem=True, distance=F(1, 2 ** 36), base_is_min=True)
    assert got["outcome"] == "nearby_right" and not got["wrong"]
    got = fuzz.classify(inst, near, descent, same_problem=True, distance=F(1, 2 ** 20), base_is_min=True)
    assert got["outcome"] == "nearby_unjudged"
    assert fuzz.classify(inst, {"verdict": "inconclusive"}, descent)["outcome"] == "inconclusive"


# --------------------------------------------------------------------------------------------
# The slice
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slice_rows(bases):
    rows = []
    for kind, (idx, _) in sorted(bases.items()):
        for case in fuzz.cases_of_base(idx):
            if case.move == "none" or case.k in SLICE_KS:
                rows.append(fuzz.run_case(case, time_limit=5.0))
    return rows


def test_slice_is_judged_exactly(slice_rows):
    assert len(slice_rows) >= 45
    assert {r["kind"] for r in slice_rows} == set(fuzz.KINDS)
    for r in slice_rows:
        if r["move"] == "none":
            assert r["judge"] == "local_min"
        if r["judge"] == "descent":
            assert F(r["judge_slope"]) < 0 and F(r["judge_decrease"]) > 0
    assert sum(r["judge"] == "descent" for r in slice_rows) >= 30
    assert not [r for r in slice_rows if r["outcome"] == "wrong_refutation"]


# Issue 13: a tool that accepted kinks and stationarity within a relative tolerance of 1e-9 certified
# points 2^-30 ... 2^-60 from stationarity / from a kink; every local_min now states its claim (exact,
# nearby, up to rounding) and none may be refuted exactly.
def test_no_wrong_local_min_on_the_slice(slice_rows):
    wrong = [(r["id"], r["kind"], r["tool_kind"], r["why"]) for r in slice_rows if r["outcome"] == "wrong_local_min"]
    assert not wrong, wrong


@pytest.mark.parametrize("which", ["i", "ii", "iii"])
def test_issue_examples_are_not_certified(which):
    inst = {"i": fuzz.issue_example_i, "ii": lambda: fuzz.issue_example_ii(36)[0],
            "iii": lambda: fuzz.issue_example_iii(34)[0]}[which]()
    rep = fuzz.run_tool(inst, time_limit=5.0)
    jd = fuzz.judge(inst)
    assert jd.verdict == "descent"
    assert not fuzz.classify(inst, rep, jd)["wrong"], rep["reason"]


# --------------------------------------------------------------------------------------------
# Degenerate points
# --------------------------------------------------------------------------------------------

def test_degenerate_generator_is_reproducible_and_degenerate():
    zeros = 0
    for seed in range(12):
        inst = fuzz.degenerate_instance(seed)
        assert inst == fuzz.degenerate_instance(seed)
        inst.certify_args()
        zeros += sum(1 for v in inst.theta if v == 0)
    assert zeros >= 12 * 3


def test_simple_descent_is_exact():
    found = 0
    for seed in range(12):
        inst = fuzz.degenerate_instance(seed)
        res = fuzz.simple_descent(inst, rng_seed=seed)
        if not res["found"]:
            continue
        found += 1
        d = [F(v) for v in res["direction"]]
        e = None if res["curve"] is None else [F(v) for v in res["curve"]]
        t = F(res["step"])
        pt = [a + t * b + (t * t / 2 * c if e else 0) for a, b, c in zip(inst.theta, d, e or [ZERO] * len(d))]
        assert inst.loss_value() - inst.loss_at(pt) == F(res["decrease"]) > 0
        assert F(res["coefficient"]) < 0
    assert found >= 3


def test_degenerate_slice_has_no_wrong_verdict():
    rows = [fuzz.run_degenerate(seed, time_limit=1.0) for seed in range(12)]
    assert not [(r["seed"], r["tool"], r["refutation_problems"]) for r in rows if r["wrong"]]


# --------------------------------------------------------------------------------------------
# Independence
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, allowed", [("exact.py", set()), ("bruteforce2.py", {"compare"}),
                                           ("fuzz.py", {"run_tool"})])
def test_oracles_import_certify_only_in_their_comparison_functions(name, allowed):
    """The oracles and the judge never use certify's code paths; only the functions that run the
    tool import it (as tests/bruteforce.py's compare does)."""
    import ast
    from pathlib import Path
    tree = ast.parse((Path(__file__).parent / name).read_text())
    where = []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            f = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Import) and any(a.name.split(".")[0] == "certify" for a in child.names):
                where.append(f)
            if isinstance(child, ast.ImportFrom) and (child.module or "").split(".")[0] == "certify":
                where.append(f)
            visit(child, f)
    visit(tree, None)
    assert set(where) <= allowed, where


# The same slice checked as polished end points are (the nearby prover and the exact construction
# first): no point claim refuted exactly, and no constructed theta* (stored in the claim) that the
# exact judge refutes at theta* itself (classify's wrong_nearby).
def test_no_wrong_claim_on_the_slice_as_polished_points(bases):
    rows = []
    for kind, (idx, _) in sorted(bases.items()):
        for case in fuzz.cases_of_base(idx):
            if case.k in SLICE_KS:
                rows.append(fuzz.run_case(case, time_limit=5.0, polished=True))
    assert len(rows) >= 30
    wrong = [(r["id"], r["outcome"], r["why"]) for r in rows if r["wrong"]]
    assert not wrong, wrong
    assert any(r["tool_claim"] == "nearby" for r in rows)


def test_a_constructed_theta_star_is_judged_itself():
    """classify judges the claim's theta* exactly: issue example i is not d-stationary, so a nearby
    claim that names it as theta* is wrong."""
    inst = fuzz.issue_example_i()
    claim = {"verdict": "local_min", "claim": {"level": "nearby", "radius": 1e-12,
                                               "theta_star": [str(v) for v in inst.theta]}}
    got = fuzz.classify(inst, claim, fuzz.judge(inst))
    assert got["outcome"] == "wrong_nearby" and got["wrong"]
