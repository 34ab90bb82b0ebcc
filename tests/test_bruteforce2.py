"""The deep / multi-output brute-force oracle (:mod:`tests.bruteforce2`) and a seeded slice of its
comparison with ``certify`` (the full run is ``python -m benchmarks.bruteforce2 --n 1000``).

Expected answers here are hand derivations (reference cases, REFERENCES.md ground truths, the
issue's example), independent re-computations inside the tests (a fixed-slope polynomial forward
pass for gradients and Hessians, :mod:`tests.exact` for losses), or small matrices whose
copositivity is known by hand -- never the tool's output.
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import pytest

from tests import bruteforce2 as b2
from tests import exact
from tests.reference.cases import CASES, by_name

F = Fraction
ZERO = F(0)

#: seeds of the comparison slice (disjoint from the benchmark's default 0..999)
SLICE = range(10_000, 10_060)
#: certify's own budget per check in the slice (seconds); one 10-kink instance takes ~45 s without
TIME_LIMIT = 2.0


def _in_scope(case) -> bool:
    return (case.loss in b2.LOSSES and case.activation != "identity" and not case.weight_decay)


SCOPE = [c for c in CASES if _in_scope(c)]
#: flat minima beyond symmetry (valleys, a locally constant hinge loss): no exact second-order
#: argument applies, the oracle must say "unsure" there (never another verdict)
FLAT_MINIMA = {"gt09", "gt13", "nested_double_kink", "nested_affine_min"}


# --------------------------------------------------------------------------------------------
# The oracle on hand-derived cases
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", SCOPE, ids=[c.name for c in SCOPE])
def test_oracle_matches_reference_verdicts(case):
    res = b2.oracle(b2.Instance.from_case(case))
    if case.name in FLAT_MINIMA:
        assert res.verdict in ("unsure", "local_min"), res.reason
    else:
        assert res.verdict == case.verdict, res.reason
    if res.d_stationary is not None:
        assert res.d_stationary == case.first_order_stationary


def test_gt6_nested_concave_kink_slope_by_hand():
    """GT-6: L'(d) = -max(2 dv + db + dbeta, 0) (sum) = -(...)/3 (mean); +e_beta descends."""
    inst = b2.Instance.from_case(by_name("gt06"))
    net = b2.Net(inst)
    # order (w, b, v, beta, a, c)
    assert net.directional_derivative([0, 0, 0, 1, 0, 0]) == F(-1, 3)
    assert net.directional_derivative([0, 1, 1, 0, 0, 0]) == F(-1)
    assert net.directional_derivative([0, 0, 0, -1, 0, 0]) == 0
    res = b2.oracle(inst)
    assert res.verdict == "not_stationary" and res.decrease > 0


def test_gt8_nested_convex_kink_is_proved_by_pieces():
    res = b2.oracle(b2.Instance.from_case(by_name("gt08")))
    assert res.verdict == "local_min" and res.how == "pieces" and res.n_kinks == 1


def test_gt12_multi_output_saddle_expansion():
    """GT-12: along dw = da2 = t the sum loss is 4 - 2t^2 + t^4, the mean (n = 2) 2 - t^2 + t^4/2."""
    inst = b2.Instance.from_case(by_name("gt12"))
    net = b2.Net(inst)
    d = [F(0)] * net.p                  # order (w, b, a1, a2, c1, c2)
    d[0], d[3] = F(1), F(1)
    assert net.curve_expansion(d) == [0, 0, -1, 0, F(1, 2)]
    res = b2.oracle(inst)
    assert res.verdict == "saddle" and res.decrease > 0


def test_issue_example_i_is_refuted_exactly():
    """The issue's point: 1-3-2-1 leaky ReLU 0.25, exact L'(theta; -e_2) = -1/51539607552."""
    inst = b2.Instance(
        layers=((((F(-1, 2),), (F(1),), (F(-1),)), (F(-2), F(3), F(-3))),
                (((F(0), F(1), F(2)), (F(2), F(-1), F(1))), (F(0), F(-1))),
                (((F(-1, 2), F(0)),), (F(-2),))),
        X=((F(-2),), (F(0),), (F(2),)),
        Y=((F(-1, 4),), (F(-27, 4),), (F(-21474836479, 17179869184),)),
        activation=("leaky_relu", F(1, 4)), loss="square")
    net = b2.Net(inst)
    e2 = [ZERO] * net.p
    e2[1] = F(-1)                       # -e_2: the coordinate W1[1]
    assert net.directional_derivative(e2) == F(-1, 51539607552)
    res = b2.oracle(inst)
    assert res.verdict == "not_stationary" and res.slope < 0 and res.decrease > 0
    inst.certify_args()                 # every number is a float64


# --------------------------------------------------------------------------------------------
# Exact calculus checked by independent computations
# --------------------------------------------------------------------------------------------

def _fixed_slope_poly(net, i, D, top, c, d):
    """``c . z^top(theta + t d)`` at sample i with the slopes D fixed, as a polynomial in t --
    written here from scratch (no use of Net.backprop / Net.hessian)."""
    th = net.theta()
    a = [[v] for v in net.xin[0][i]]
    for l in range(top + 1):
        nin, nout = net.widths[l], net.widths[l + 1]
        zs = []
        for r in range(nout):
            k = net.ib(l, r)
            acc = [th[k], d[k]]
            for s in range(nin):
                k = net.iW(l, r, s)
                acc = b2.padd(acc, b2.pmul([th[k], d[k]], a[s]))
            zs.append(acc)
        a = zs if l == top else [b2.pscale(zp, D[l][r]) for r, zp in enumerate(zs)]
    out = [ZERO]
    for cr, zp in zip(c, a):
        out = b2.padd(out, b2.pscale(zp, cr))
    return out + [ZERO] * 3


@pytest.mark.parametrize("seed", range(8))
def test_gradient_and_hessian_match_polynomial_expansion(seed):
    rng = random.Random(seed)
    inst = b2.random_instance(seed)
    net = b2.Net(inst)
    for _ in range(3):
        i = rng.randrange(net.n)
        signs = {(l, j): rng.choice((1, -1)) for l in range(net.nl - 1) for j in range(net.widths[l + 1])}
        D = net.slopes(i, signs)
        top = rng.randrange(net.nl)
        c = [F(rng.randint(-3, 3), 2) for _ in range(net.widths[top + 1])]
        g = net.backprop(i, D, top, c)
        H = net.hessian(i, D, top, c)
        d = [F(rng.randint(-4, 4), 4) for _ in range(net.p)]
        poly = _fixed_slope_poly(net, i, D, top, c, d)
        assert poly[1] == b2.dot(g, d)
        assert 2 * poly[2] == sum((val * d[u] * d[v] for (u, v), val in H.items()), ZERO)


@pytest.mark.parametrize("seed", range(12))
def test_directional_derivative_pieces_and_expansion_agree(seed):
    """L'(theta; d) three ways: one-sided forward mode, the piece that d lies in, the curve
    expansion; and the expansion reproduces the exact loss at a tiny step."""
    rng = random.Random(100 + seed)
    inst = b2.random_instance(seed)
    net = b2.Net(inst)
    kinks = net.first_order_kinks()
    for _ in range(4):
        d = [F(rng.randint(-4, 4), 4) for _ in range(net.p)]
        slope = net.directional_derivative(d)
        coeffs = net.curve_expansion(d) + [ZERO, ZERO]
        assert coeffs[1] == slope
        t = F(1, 2 ** 40)
        assert inst.loss_at([a + t * b for a, b in zip(inst.theta, d)]) - inst.loss_value() == \
            sum(c * t ** k for k, c in enumerate(coeffs))
        if len(kinks) <= 8:
            hits = 0
            for sigma in itertools.product((1, -1), repeat=len(kinks)):
                g, rows = net.piece(kinks, sigma)
                if all(b2.dot(r, d) >= 0 for r in rows):
                    hits += 1
                    assert b2.dot(g, d) == slope
            assert hits >= 1


def test_invariance_lines_keep_the_loss_exactly():
    """Dead-unit coordinates and bias translations are straight lines of constant loss."""
    checked = 0
    for seed in range(40):
        inst = b2.random_instance(seed)
        net = b2.Net(inst)
        for v in net.invariance_vectors():
            # rescaling / GL vectors are tangents of curved flows: first order only
            assert net.directional_derivative(v) == 0
            if sum(1 for x in v if x) == 1:
                t = F(1, 64)
                assert inst.loss_at([a + t * b for a, b in zip(inst.theta, v)]) == inst.loss_value()
                checked += 1
    assert checked >= 5


def test_rescaling_keeps_the_loss_exactly():
    inst = b2.random_instance(3)
    layers = [([list(r) for r in W], list(b)) for W, b in inst.layers]
    W, b = layers[0]
    W[0] = [3 * v for v in W[0]]
    b[0] = 3 * b[0]
    W2 = layers[1][0]
    for r in W2:
        r[0] = r[0] / 3
    assert exact.loss(layers, inst.X, inst.y_exact, inst.activation, inst.loss) == inst.loss_value()


# --------------------------------------------------------------------------------------------
# Exact linear algebra and copositivity
# --------------------------------------------------------------------------------------------

def test_ldl_and_copositivity_on_known_matrices():
    assert b2.ldl_test([[F(2), F(1)], [F(1), F(2)]])[0]
    ok, z = b2.ldl_test([[F(1), F(2)], [F(2), F(1)]])
    assert not ok and b2.quadratic_form([[F(1), F(2)], [F(2), F(1)]], z) <= 0
    # [[1, 2], [2, 1]]: indefinite but strictly copositive on the orthant (all entries > 0)
    assert b2.copositive_orthant([[F(1), F(2)], [F(2), F(1)]])[0] == "yes"
    status, w = b2.copositive_orthant([[F(1), F(-2)], [F(-2), F(1)]])
    assert status == "no" and all(v >= 0 for v in w)
    assert b2.quadratic_form([[F(1), F(-2)], [F(-2), F(1)]], w) < 0
    # [[1, -1], [-1, 1]] is copositive but not strictly: (1, 1) gives 0
    status, w = b2.copositive_orthant([[F(1), F(-1)], [F(-1), F(1)]])
    assert status == "no" and b2.quadratic_form([[F(1), F(-1)], [F(-1), F(1)]], w) == 0


def test_cone_curvature_with_dependent_rows():
    Q = [[F(1), F(2), F(0)], [F(2), F(1), F(0)], [F(0), F(0), F(1)]]
    # cone {z1 >= 0, z2 >= 0, z1 + z2 >= 0}: the orthant in (z1, z2), z3 free -> strictly copositive
    G = [[F(1), F(0), F(0)], [F(0), F(1), F(0)], [F(1), F(1), F(0)]]
    assert b2.cone_curvature(Q, G)[0] == "pd"
    # cone {z1 >= 0, -z2 >= 0, z1 - z2 >= 0}: contains (1, -1, 0) with value 1 - 4 + 1 < 0
    G = [[F(1), F(0), F(0)], [F(0), F(-1), F(0)], [F(1), F(-1), F(0)]]
    status, z = b2.cone_curvature(Q, G)
    assert status == "negative" and all(b2.dot(g, z) >= 0 for g in G) and b2.quadratic_form(Q, z) < 0
    assert len(b2.extreme_rays([[F(1), F(0)], [F(0), F(1)], [F(1), F(1)]], 2)) == 2


def test_affine_fit_needs_one_slope_per_unit():
    """Regression (found while writing the oracle): residuals orthogonal to (1, x) do not make a
    minimum when a unit is active on some samples and dead on others -- the net is not affine."""
    inst = b2.Instance(layers=((((F(1),),), (F(0),)), (((F(1),),), (F(0),))),
                       X=((F(-1),), (F(1),), (F(2),)), Y=((F(-1),), (F(4),), (F(0),)),
                       activation="relu", loss="square")
    net = b2.Net(inst)
    # residuals f - y = (1, -3, 2): sum 0 and sum r x = -1 - 3 + 4 = 0
    assert [fi[0] - yi[0] for fi, yi in zip(net.f, net.Y)] == [1, -3, 2]
    assert b2.affine_fit_minimum(net) is None
    assert b2.oracle(inst).verdict == "not_stationary"


# --------------------------------------------------------------------------------------------
# Generator and the comparison slice
# --------------------------------------------------------------------------------------------

def test_generator_is_reproducible_and_exact():
    for seed in range(12):
        inst = b2.random_instance(seed)
        assert inst == b2.random_instance(seed)
        assert b2.Instance.from_dict(inst.to_dict()) == inst
        inst.certify_args()                             # raises unless float64 is exact
        w = inst.widths
        assert (len(w) == 4 and w[-1] in (1, 2)) or (len(w) == 3 and w[-1] == 2)
        assert 1 <= w[0] <= 2 and all(1 <= v <= 3 for v in w[1:-1]) and 2 <= inst.n <= 6


@pytest.fixture(scope="module")
def slice_comparisons():
    return [b2.compare(b2.random_instance(s), time_limit=TIME_LIMIT) for s in SLICE]


def test_generator_mix(slice_comparisons):
    results = [c.oracle for c in slice_comparisons]
    verdicts = [r.verdict for r in results]
    assert verdicts.count("local_min") >= 6
    assert verdicts.count("not_stationary") >= 15
    assert verdicts.count("saddle") >= 2
    assert verdicts.count("unsure") <= 0.3 * len(SLICE)
    assert sum(r.nested for r in results) >= 10


def test_oracle_local_minima_survive_an_exact_probe(slice_comparisons):
    """Non-trivial oracle minima (proved by pieces): no exact decrease at r = 1e-5."""
    chosen = [c for c in slice_comparisons if c.oracle.verdict == "local_min" and c.oracle.how == "pieces"][:3]
    assert chosen
    for c in chosen:
        inst = c.instance
        res = exact.probe(inst.layers, inst.X, inst.y_exact, inst.activation, inst.loss,
                          radii=(F(1, 10 ** 5),), n_random=5, seed=inst.seed)
        assert not res.found_decrease, inst.source()


def test_certify_agrees_with_the_oracle_on_a_seeded_slice(slice_comparisons):
    bad = [(c.instance.seed, c.certify_verdict, c.oracle.verdict, c.problems, c.instance.source())
           for c in slice_comparisons if c.problems]
    assert not bad, bad
    decided = [c for c in slice_comparisons if c.oracle.verdict != "unsure"]
    assert len(decided) >= 40
    assert sum(c.certify_verdict == c.oracle.verdict for c in decided) >= 35
