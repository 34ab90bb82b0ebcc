"""Exact fuzz: no ``local_min`` on a tolerance; and degenerate points with findable descents.

Generators, the exact judge and the simple descent search live here; the runner is
``python -m benchmarks.fuzz`` (``--degenerate`` for the second fuzz). Nothing in this module
imports ``certify`` except :func:`run_tool` and the two ``run_*`` comparison functions, which call
``certify.check`` and read its report. The judge uses :mod:`tests.bruteforce2`,
:mod:`tests.bruteforce` and :mod:`tests.exact` only.

1. Near-stationary and near-kink points (``semantics.md``: a tolerance never certifies)
--------------------------------------------------------------------------------------
*Base constructions* are exact dyadic points proved to be local minima independently of certify,
one family per certificate structure the tool has (:data:`KINDS`):

``zero_loss``   a net interpolating its data exactly (square or absolute loss, unit kinks planted),
                depth 1-3; proof: the loss is exactly 0.
``smooth``      no kink at all, residuals in the left null space of the exact Jacobian, scaled down
                until :func:`tests.bruteforce2.oracle` proves second-order sufficiency (reduced
                Hessian), depth 1-3.
``cell``        one hidden layer, scalar output, kinks, stationary: :func:`tests.bruteforce.oracle`
                proves it (REFERENCES A4.5-1 with exact Farkas certificates); square, hinge,
                absolute.
``affine``      every unit strictly on one side at every sample and the outputs at the exact affine
                least-squares fit (depth 1-3); proof: :func:`tests.bruteforce2.affine_fit_minimum`.
``cone``        two hidden layers or two outputs, one level of kinks, proved by the exact per-piece
                second-order test of :mod:`tests.bruteforce2` (the tool's critical-cone structure).
``pieces``      the same with kinks nested in two layers at one sample (the tool's piece test).
``copositive``  one level of convex kinks with more than 10 one-sided rows (multipliers at an
                endpoint), where the tool's face enumeration gives way to copositivity; built by an
                LP over residuals and multipliers, proved like ``cone``.

Every base is then moved exactly by ``+-2^-k`` (:data:`KS`, k = 20 ... 60) in one of: a label
(``label``), an output bias (``out_bias``), one weight (``weight``), the bias of a unit on a kink
(``kink_bias``: the sample leaves the kink), or the input weight that only moves that sample's
pre-activation (``kink_weight``); every moved number is checked to be a float64, so certify sees
exactly the judged point. The unmoved base is a case too (``none``).

The *judge* (:func:`judge`) decides the moved point exactly: d-stationary or not by the exact piece
enumeration of :func:`tests.bruteforce2.first_order` (for a kink-free point that is the exact
gradient), with an exact descent witness when it is not (direction, exact ``L'(theta; d) < 0``,
an exact decrease at a dyadic step -- below float resolution when needed); at d-stationary points
the full oracle (second order, exact descent curves) refines it. A tool ``local_min`` that claims
the point itself (claims "exact", "up to rounding", or no claim at all: today's reports) is
**wrong** when the judge holds an exact descent witness. A "nearby" claim with radius ``r`` is
judged right when the moved point's own problem has a proved exact local minimum within ``r``
(the base, when only theta moved, at distance exactly ``2^-k``; or the point itself), and counted
"nearby, unjudged" otherwise.

2. Degenerate points (issue 11 item 5)
-------------------------------------
:func:`degenerate_instance` draws small exact points with many zero weights, dead units, units on
kinks at many samples, zero output weights and zero residuals (1-2 hidden layers). The exact
*simple search* (:func:`simple_descent`) looks for a local descent: the exact first-order
enumeration, then single coordinates, pairs, chains of weights along a path, escape lines of
zero-output units and curves ``theta + t d + t^2/2 e`` -- each judged by the exact Taylor
coefficients of the loss on the piece the curve enters (:meth:`tests.bruteforce2.Net.curve_expansion`),
with an exact decrease at a dyadic step. :func:`run_degenerate` compares with certify's verdict.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

from tests import bruteforce as bf
from tests import bruteforce2 as b2

F = Fraction
ZERO = Fraction(0)
ONE = Fraction(1)

#: distances 2^-k from stationarity / from a kink
KS = (20, 24, 28, 30, 32, 34, 36, 40, 44, 48, 52, 56, 60)
#: base construction families (the certificate structures of certify/secondorder/)
KINDS = ("zero_loss", "smooth", "cell", "affine", "cone", "pieces", "copositive")
MOVES = ("label", "out_bias", "weight", "kink_bias", "kink_weight")
#: cases per base: the unmoved base and one move per k
PER_BASE = 1 + len(KS)
#: claims about the point itself (semantics.md claims 1 and 3; "legacy" = a report without a claim)
POINT_CLAIMS = ("exact", "up_to_rounding", "legacy")

_WV = [F(-2), F(-1), F(-1, 2), F(1, 2), F(1), F(2)]
_XV = [F(-2), F(-1), F(-1, 2), F(0), F(1, 2), F(1), F(2), F(3, 2), F(-3, 2)]
_ACTS = ["relu", ("leaky_relu", F(1, 4)), ("leaky_relu", F(1, 2))]


def is_float(v: Fraction) -> bool:
    """True when ``v`` is exactly a float64."""
    return Fraction(float(v)) == v


def _mk(layers, X, Y, activation, loss, family="", seed=None) -> b2.Instance:
    return b2.Instance(layers=tuple((tuple(tuple(F(v) for v in r) for r in W), tuple(F(v) for v in b))
                                    for W, b in layers),
                       X=tuple(tuple(F(v) for v in r) for r in X), Y=tuple(tuple(F(v) for v in r) for r in Y),
                       activation=activation, loss=loss, family=family, seed=seed)


def _h(activation):
    sm = b2._s_minus(activation)
    return lambda z: z if z >= 0 else sm * z


def _forward_planted(rng, widths, X, activation, plant: float, avoid_zero: bool = False):
    """Random dyadic layers; each hidden unit gets a kink planted at a random sample with
    probability ``plant`` (``b = -w . x^l_i`` with the true activations); with ``avoid_zero`` no
    pre-activation is 0 (None if the draw fails)."""
    h = _h(activation)
    n = len(X)
    xin = [list(r) for r in X]
    layers = []
    nl = len(widths) - 1
    for l in range(nl):
        W, b = [], []
        for j in range(widths[l + 1]):
            w = [rng.choice(_WV) for _ in range(widths[l])]
            W.append(w)
            if l < nl - 1 and rng.random() < plant:
                i = rng.randrange(n)
                b.append(-sum((wk * xk for wk, xk in zip(w, xin[i])), ZERO))
            else:
                b.append(F(rng.randint(-4, 4), 2))
        z = [[sum((wk * xk for wk, xk in zip(W[j], xin[i])), b[j]) for j in range(len(W))] for i in range(n)]
        if avoid_zero and l < nl - 1 and any(v == 0 for row in z for v in row):
            return None
        layers.append((W, b))
        xin = [[h(v) for v in row] for row in z] if l < nl - 1 else z
    return layers, xin          # xin: outputs f


def _widths(rng, depth, dx, n_out=1, small=False):
    choices = (1, 1, 2) if small else (1, 2, 2, 3)
    return [dx] + [rng.choice(choices) for _ in range(depth)] + [n_out]


# =============================================================================================
# Base constructions
# =============================================================================================

@dataclass(frozen=True)
class Base:
    """An exact dyadic point proved to be a local minimum without certify.

    ``kind``: the targeted structure (:data:`KINDS`); ``proof``: the independent argument;
    ``seed``: the generator seed.
    """

    kind: str
    inst: b2.Instance
    proof: str
    seed: int


def _base_zero_loss(rng, seed) -> Optional[Base]:
    depth = rng.choice((1, 2, 3))
    dx = rng.choice((1, 2))
    act = rng.choice(_ACTS)
    loss = rng.choice(("square", "square", "absolute"))
    n = rng.randint(3, 6)
    X = [[rng.choice(_XV) for _ in range(dx)] for _ in range(n)]
    got = _forward_planted(rng, _widths(rng, depth, dx), X, act, plant=0.7)
    layers, f = got
    inst = _mk(layers, X, f, act, loss, "zero_loss", seed)
    if inst.loss_value() != 0:
        return None
    return Base("zero_loss", inst, "the loss is exactly 0 and every loss is >= 0", seed)


def _jacobian_columns(net: b2.Net) -> list:
    """Columns ``(1/n) J_io`` of the exact Jacobian (one per sample and output), no kinks."""
    cols = []
    for i in range(net.n):
        D = net.slopes(i, {})
        for o in range(net.n_out):
            e = [ONE if oo == o else ZERO for oo in range(net.n_out)]
            cols.append(net.backprop(i, D, net.nl - 1, e))
    return cols


def _dyadic_scale(v, top_exp: int) -> list:
    """Positive multiple of the rational vector ``v`` with integer entries, divided by a power of
    two so that ``max |entry| <= 2^top_exp``."""
    den = 1
    for x in v:
        den = den * x.denominator // _gcd(den, x.denominator)
    ints = [int(x * den) for x in v]
    g = 0
    for x in ints:
        g = _gcd(g, abs(x))
    ints = [x // g for x in ints] if g else ints
    big = max(abs(x) for x in ints) or 1
    k = 0
    while F(big, 2 ** k) > F(2) ** top_exp:
        k += 1
    return [F(x, 2 ** k) for x in ints]


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def _base_smooth(rng, seed) -> Optional[Base]:
    depth = rng.choice((1, 2, 3))
    dx = 1
    act = rng.choice(_ACTS)
    widths = _widths(rng, depth, dx, small=True)
    n = rng.randint(4, 8)
    X = [[rng.choice(_XV)] for _ in range(n)]
    if len(set(tuple(x) for x in X)) < 3:
        return None
    got = _forward_planted(rng, widths, X, act, plant=0.0, avoid_zero=True)
    if got is None:
        return None
    layers, f = got
    inst0 = _mk(layers, X, f, act, "square")
    net0 = b2.Net(inst0)
    if net0.kinks():
        return None
    cols = _jacobian_columns(net0)
    A = [[c[u] for c in cols] for u in range(net0.p)]
    basis = b2.nullspace(A, len(cols))
    if not basis:
        return None
    coef = [rng.choice((-2, -1, 1, 2)) for _ in basis]
    r = [sum((c * bv[k] for c, bv in zip(coef, basis)), ZERO) for k in range(len(cols))]
    if not any(r):
        return None
    for top in (-2, -4, -6):
        rr = _dyadic_scale(r, top)
        Y = [[f[i][o] - rr[i * net0.n_out + o] for o in range(net0.n_out)] for i in range(n)]
        inst = _mk(layers, X, Y, act, "square", "smooth", seed)
        if not all(is_float(v) for row in inst.Y for v in row):
            return None
        res = b2.oracle(inst, search=False)
        if res.verdict == "local_min" and res.how == "pieces":
            return Base("smooth", inst, "no kink; exact gradient 0 and exact reduced Hessian positive "
                        "definite modulo the invariances (tests.bruteforce2)", seed)
    return None


def _base_cell(rng, seed) -> Optional[Base]:
    for _ in range(40):
        s = rng.randrange(10 ** 6, 2 * 10 ** 6)
        bi = bf.random_instance(s)
        if "stationary" not in bi.family or "zero_a" in bi.family:
            continue
        res = bf.oracle(bi)
        if res.verdict != "local_min" or res.n_kinks == 0 or res.output_space_min:
            continue
        layers = ((bi.W, bi.b), ((tuple(bi.a),), (bi.c,)))
        inst = _mk(layers, bi.X, [[v] for v in bi.y], bi.activation, bi.loss, "cell", seed)
        return Base("cell", inst, f"one hidden layer, scalar output: {res.reason} (tests.bruteforce)", seed)
    return None


def _base_affine(rng, seed) -> Optional[Base]:
    depth = rng.choice((1, 2, 3))
    dx = rng.choice((1, 2))
    act = rng.choice(_ACTS)
    n = rng.randint(dx + 3, dx + 5)
    X = [[rng.choice(_XV) for _ in range(dx)] for _ in range(n)]
    widths = _widths(rng, depth, dx)
    h = _h(act)
    layers = []
    xin = [list(r) for r in X]
    for l in range(depth + 1):
        W, b = [], []
        for j in range(widths[l + 1]):
            w = [rng.choice(_WV) for _ in range(widths[l])]
            zs = [sum((wk * xk for wk, xk in zip(w, x)), ZERO) for x in xin]
            if l < depth:
                side = rng.choice((1, 1, -1)) if act != "relu" else 1
                bias = (-min(zs) + F(rng.randint(1, 4), 2)) if side > 0 else (-max(zs) - F(rng.randint(1, 4), 2))
                b.append(bias)
            else:
                b.append(F(rng.randint(-2, 2), 2))
            W.append(w)
        layers.append((W, b))
        z = [[sum((wk * xk for wk, xk in zip(W[j], x)), b[j]) for j in range(len(W))] for x in xin]
        xin = [[h(v) for v in row] for row in z] if l < depth else z
    f = xin
    xbar = [list(x) + [ONE] for x in X]
    basis = b2.nullspace([[xb[c] for xb in xbar] for c in range(dx + 1)], n)
    if not basis:
        return None
    coef = [rng.choice((-2, -1, 1, 2)) for _ in basis]
    r = [sum((c * bv[k] for c, bv in zip(coef, basis)), ZERO) for k in range(n)]
    if not any(r):
        return None
    r = _dyadic_scale(r, 0)
    Y = [[f[i][0] - r[i]] for i in range(n)]
    inst = _mk(layers, X, Y, act, "square", "affine", seed)
    net = b2.Net(inst)
    why = b2.affine_fit_minimum(net)
    if why is None or not all(is_float(v) for row in inst.Y for v in row):
        return None
    return Base("affine", inst, why + " (tests.bruteforce2)", seed)


def _base_harvest(rng, seed, nested: bool) -> Optional[Base]:
    """Two hidden layers (or one hidden layer with two outputs), square loss, unit kinks planted in
    one layer (``cone``) or in both layers at one sample (``pieces``: nested), residuals from
    :func:`tests.bruteforce2._stationary_residuals` scaled down until the exact per-piece
    second-order test of :mod:`tests.bruteforce2` proves a local minimum."""
    two_out = (not nested) and rng.random() < 0.3
    dx = rng.choice((1, 1, 2))
    widths = [dx, rng.choice((1, 2, 2)), 2] if two_out else [dx, rng.choice((1, 2, 2)), rng.choice((1, 1, 2)), 1]
    act = rng.choice(_ACTS)
    n = rng.randint(3, 6)
    X = [[rng.choice(_XV) for _ in range(dx)] for _ in range(n)]
    h = _h(act)
    plants = {}
    if nested:
        i = rng.randrange(n)
        plants[(0, rng.randrange(widths[1]))] = i
        plants[(1, rng.randrange(widths[2]))] = i
    else:
        layer = 0 if two_out else rng.choice((0, 1))
        for j in range(widths[layer + 1]):
            if rng.random() < 0.7 or not plants:
                plants[(layer, j)] = rng.randrange(n)
    layers = []
    xin = [list(r) for r in X]
    nl = len(widths) - 1
    for l in range(nl):
        W, b = [], []
        for j in range(widths[l + 1]):
            w = [rng.choice(_WV) for _ in range(widths[l])]
            W.append(w)
            if (l, j) in plants:
                b.append(-sum((wk * xk for wk, xk in zip(w, xin[plants[(l, j)]])), ZERO))
            else:
                b.append(F(rng.randint(-4, 4), 2))
        z = [[sum((wk * xk for wk, xk in zip(W[j], x)), b[j]) for j in range(len(W))] for x in xin]
        layers.append((W, b))
        xin = [[h(v) for v in row] for row in z] if l < nl - 1 else z
    f = xin
    net0 = b2.Net(_mk(layers, X, [[ZERO] * widths[-1]] * n, act, "square"))
    uk = net0.unit_kinks()
    if not uk or len(uk) > 5 or b2.is_nested(net0) != nested:
        return None
    rho = b2._stationary_residuals(net0, rng)
    if rho is None:
        return None
    for shift in (0, 2, 4):
        Y = [[fo - ro / 2 ** shift for fo, ro in zip(fi, ri)] for fi, ri in zip(f, rho)]
        inst = _mk(layers, X, Y, act, "square", "pieces" if nested else "cone", seed)
        net = b2.Net(inst)
        if b2.output_space_minimum(net) or not all(is_float(v) for r in inst.Y for v in r):
            return None
        res = b2.oracle(inst, search=False)
        if res.verdict == "local_min" and res.how == "pieces":
            return Base("pieces" if nested else "cone", inst, res.reason + " (tests.bruteforce2)", seed)
        if res.verdict == "not_stationary":
            return None
    return None


def one_level_endpoint_proof(net: b2.Net) -> Optional[str]:
    """Exact proof of a local minimum where every kink is a first-layer unit kink, convex, with its
    multiplier at the endpoint 0 (many one-sided rows; the piece enumeration would need ``2^K``).

    With every kink on its ``-`` side the piece's gradient ``g_-`` must be exactly 0 and every
    coefficient ``gamma_k = d L / d z_k`` on the ``+`` side positive: then
    ``L'(theta; d) = sum_k gamma_k max(a_k . d, 0) >= 0`` (first-layer switching functions are
    linear). Every piece ``sigma`` has KKT multipliers ``gamma_k`` on its ``+`` rows and 0 on its
    ``-`` rows, and its critical cone lies in ``C = {a_k . d <= 0 for all k}`` with the ``+`` rows at
    0, where the first-layer kinks leave the quadratic form of ``L_sigma`` equal to ``L_-``'s. So
    second-order sufficiency of every piece follows from ``H_-`` strictly copositive on ``C``
    (on the invariance slice; :func:`tests.bruteforce2.cone_curvature`, exact).
    """
    kinks = net.kinks()
    if any(k[0] != "u" or k[1] != 0 for k in kinks) or not kinks:
        return None
    sigma = tuple(-1 for _ in kinks)
    g, rows = net.piece(kinks, sigma)
    if any(g):
        return None
    for idx, k in enumerate(kinks):
        one = list(sigma)
        one[idx] = 1
        g1, _ = net.piece(kinks, tuple(one))
        j = k[3]
        gamma = g1[net.ib(0, j)]               # d L / d b_j on the + side of this kink only
        if not gamma > 0:
            return None
    T = net.invariance_vectors()
    N = b2.nullspace(T, net.p) if T else [[ONE if r == c else ZERO for r in range(net.p)] for c in range(net.p)]
    status, _, _ = b2._piece_curvature(net, kinks, sigma, [ZERO] * len(kinks), rows, N)
    if status != "pd":
        return None
    return (f"{len(kinks)} convex first-layer kinks with multipliers at the endpoint 0: g_- = 0, every gamma_k > 0 "
            "(exact), and the Hessian of the all-minus piece strictly copositive on C modulo the invariances")


def _base_copositive(rng, seed) -> Optional[Base]:
    """More than 10 one-sided kink rows: one hidden layer, two outputs (the cell theorem does not
    apply), ``dx = 2``; unit 0 has its kink on the line ``x_1 = x_2`` holding 11-13 samples, with a
    few active and dead samples off the line; units 1.. are active everywhere. The residuals come
    from an LP: the all-minus piece's gradient 0 and every kink coefficient ``gamma_i =
    r_i . a_0 / n`` positive. Proved by :func:`one_level_endpoint_proof`."""
    n_line = rng.randint(11, 13)
    ts = rng.sample(range(-12, 13), n_line)
    X = [[F(t, 4), F(t, 4)] for t in ts]
    for _ in range(rng.randint(2, 3)):
        u, v = rng.sample(range(-8, 9), 2)
        X.append([F(max(u, v), 4) + F(1, 4), F(min(u, v), 4)])       # x1 > x2: active
    for _ in range(rng.randint(2, 3)):
        u, v = rng.sample(range(-8, 9), 2)
        X.append([F(min(u, v), 4), F(max(u, v), 4) + F(1, 4)])       # x1 < x2: dead
    n = len(X)
    act = rng.choice(("relu", ("leaky_relu", F(1, 4))))
    m = rng.choice((2, 3))
    W1 = [[F(1), F(-1)]]
    b1 = [ZERO]
    for _ in range(m - 1):
        w = [rng.choice(_WV), rng.choice(_WV)]
        zmin = min(w[0] * x[0] + w[1] * x[1] for x in X)
        W1.append(w)
        b1.append(-zmin + F(rng.randint(1, 4), 2))
    W2 = [[rng.choice(_WV) for _ in range(m)] for _ in range(2)]
    layers = [(W1, b1), (W2, [ZERO, ZERO])]
    net = b2.Net(_mk(layers, X, [[ZERO, ZERO]] * n, act, "square"))
    if sorted(net.unit_kinks()) != sorted(("u", 0, i, 0) for i in range(n_line)):
        return None
    sig = {(0, 0): -1}
    cols = []
    for i in range(n):
        D = net.slopes(i, sig)
        for o in range(2):
            cols.append(net.backprop(i, D, 1, [ONE if oo == o else ZERO for oo in range(2)]))
    a0 = [W2[0][0], W2[1][0]]
    # exact vertex of {A r = 0, a0 . r_i - s_i = 1/8, -2 <= r <= 2, s >= 0} (s: slack of gamma_i > 0)
    nv = 2 * n + n_line
    A = [[c[u] for c in cols] + [ZERO] * n_line for u in range(net.p)]
    b = [ZERO] * net.p
    for i in range(n_line):
        row = [ZERO] * nv
        row[2 * i], row[2 * i + 1], row[2 * n + i] = a0[0], a0[1], -ONE
        A.append(row)
        b.append(F(1, 8))
    sol = b2.exact_bounded_solution(A, b, [F(-2)] * (2 * n) + [ZERO] * n_line, [F(2)] * (2 * n) + [None] * n_line)
    if sol is None:
        return None
    r = _dyadic_scale(sol[:2 * n], 0)
    for shift in (0, 2, 4):
        Y = [[net.f[i][o] - r[2 * i + o] / 2 ** shift for o in range(2)] for i in range(n)]
        inst = _mk(layers, X, Y, act, "square", "copositive", seed)
        if not all(is_float(v) for row in inst.Y for v in row):
            return None
        why = one_level_endpoint_proof(b2.Net(inst))
        if why:
            return Base("copositive", inst, why + " (tests.fuzz)", seed)
    return None


_BUILDERS = {"zero_loss": _base_zero_loss, "smooth": _base_smooth, "cell": _base_cell, "affine": _base_affine,
             "cone": functools.partial(_base_harvest, nested=False),
             "pieces": functools.partial(_base_harvest, nested=True), "copositive": _base_copositive}


@functools.lru_cache(maxsize=256)
def base(index: int, seed0: int = 0) -> Optional[Base]:
    """The base construction number ``index`` (kind ``KINDS[index % 7]``), reproducible; None if
    the generator found none (counted by the runner)."""
    kind = KINDS[index % len(KINDS)]
    rng = random.Random((seed0 + 1) * 1_000_003 + index)
    for _ in range(60):
        got = _BUILDERS[kind](rng, index)
        if got is not None:
            return got
    return None


# =============================================================================================
# Moves
# =============================================================================================

@dataclass(frozen=True)
class Case:
    """One fuzz instance: a base, a move and the moved point.

    ``same_problem``: only theta moved (data and loss unchanged), so the base is an exact local
    minimum of the moved point's own problem at distance ``distance`` (exact, Euclidean).
    """

    id: str
    base: Base
    move: str
    k: Optional[int]
    sign: int
    where: str
    inst: b2.Instance
    same_problem: bool
    distance: Optional[Fraction]


def _set_param(inst: b2.Instance, slot: int, value) -> b2.Instance:
    th = list(inst.theta)
    th[slot] = value
    return inst.with_theta(th)


def _move(bs: Base, move: str, k: int, sign: int, rng: random.Random) -> Optional[tuple]:
    """Apply ``move`` by ``sign * 2^-k``: ``(instance, where, same_problem)`` or None."""
    inst = bs.inst
    net = b2.Net(inst)
    delta = F(sign, 2 ** k)
    th = inst.theta
    if move == "label":
        if inst.loss == "hinge":
            return None
        opts = [(i, o) for i in range(net.n) for o in range(net.n_out) if is_float(inst.Y[i][o] + delta)]
        if not opts:
            return None
        i, o = rng.choice(opts)
        Y = [list(r) for r in inst.Y]
        Y[i][o] += delta
        moved = b2.Instance(layers=inst.layers, X=inst.X, Y=tuple(tuple(r) for r in Y), activation=inst.activation,
                            loss=inst.loss, family=inst.family, seed=inst.seed)
        return moved, f"y[{i}][{o}]", False
    if move == "out_bias":
        opts = [net.ib(net.nl - 1, o) for o in range(net.n_out)]
    elif move == "weight":
        opts = list(range(net.p))
    elif move == "kink_bias":
        opts = sorted({net.ib(l, j) for _, l, i, j in net.unit_kinks()})
    elif move == "kink_weight":
        opts = []
        for _, l, i, j in net.unit_kinks():
            if l != 0:
                continue
            for s in range(net.widths[0]):
                x = inst.X[i][s]
                if x and x.numerator in (1, -1) and (x.denominator & (x.denominator - 1)) == 0 \
                        and all(inst.X[ii][s] == 0 for ii in range(net.n) if ii != i and net.z[0][ii][j] == 0):
                    opts.append((net.iW(0, j, s), x))
    else:
        raise ValueError(move)
    rng.shuffle(opts)
    for opt in opts:
        slot, scale = (opt if isinstance(opt, tuple) else (opt, ONE))
        value = th[slot] + delta / scale
        if is_float(value):
            return _set_param(inst, slot, value), f"theta[{slot}]", True
    return None


def cases_of_base(index: int, seed0: int = 0) -> list:
    """The :data:`PER_BASE` cases of base ``index``: the base itself and one move per k."""
    bs = base(index, seed0)
    if bs is None:
        return []
    rng = random.Random((seed0 + 7) * 7_919 + index)
    out = [Case(f"{index}/none", bs, "none", None, 0, "", bs.inst, True, ZERO)]
    moves = list(MOVES)
    for k in KS:
        rng.shuffle(moves)
        for move in moves:
            sign = rng.choice((-1, 1))
            got = _move(bs, move, k, sign, rng) or _move(bs, move, k, -sign, rng)
            if got is not None:
                inst, where, same = got
                out.append(Case(f"{index}/{move}/{k}/{'+' if sign > 0 else '-'}", bs, move, k, sign, where,
                                inst, same, F(1, 2 ** k) if same else None))
                break
    return out


def fuzz_cases(n: int, seed0: int = 0, start: int = 0) -> list:
    """At least ``n`` cases from consecutive bases (round-robin over :data:`KINDS`)."""
    out = []
    index = start
    while len(out) < n:
        out.extend(cases_of_base(index, seed0))
        index += 1
    return out[:n]


# =============================================================================================
# The issue's examples
# =============================================================================================

def issue_example_i() -> b2.Instance:
    """1-3-2-1 leaky ReLU 0.25, n = 3; exactly ``L'(theta; -e_2) = -1/51539607552`` (e_2 = W1[1])."""
    return _mk([([[F(-1, 2)], [F(1)], [F(-1)]], [F(-2), F(3), F(-3)]),
                ([[0, 1, 2], [2, -1, 1]], [0, -1]),
                ([[F(-1, 2), 0]], [-2])],
               [[-2], [0], [2]], [[F(-1, 4)], [F(-27, 4)], [F(-21474836479, 17179869184)]],
               ("leaky_relu", F(1, 4)), "square", "issue_i")


def issue_example_ii(k: int = 36) -> tuple:
    """A kink minimum moved so that one sample's pre-activation is ``2^-k`` instead of 0.

    2-1-1 ReLU, ``f = relu(w . x + b) + c`` with ``w = (0, 1)``, ``b = 0``, ``a = 1``, ``c = 0``;
    samples ``A = (1, 0)`` (on the kink), ``B = (0, 1)``, ``C = (0, 2)``, ``D = (0, 3)`` (active),
    ``E = (0, -1)`` (dead); labels ``y = (-1, 1/2, 3, 5/2, 1)``: residuals ``f - y =
    (1, 1/2, -1, 1/2, -1)``. The base is d-stationary (A's kink is convex, ``a r_A = 1 > 0``, with
    multiplier 0; the active residuals are orthogonal to ``(1, x_2)``; all residuals sum to 0), hence
    a local minimum (one hidden layer, scalar output, ``a != 0``: REFERENCES A4.5-1). Moving ``w_1``
    to ``2^-k`` makes ``z_A = 2^-k > 0`` and moves no other pre-activation (``x_1 = 0`` elsewhere),
    so along ``-e_{w1}`` sample A is off for every step ``t > 2^-k`` and the loss is then the base's:
    a drop of ``((1 + 2^-k)^2 - 1) / 10`` for every step from ``2^-(k-1)`` on (``2^-10 ... 2^-32``
    included). Returns (moved instance, base instance).
    """
    X = [[1, 0], [0, 1], [0, 2], [0, 3], [0, -1]]
    Y = [[F(-1)], [F(1, 2)], [F(3)], [F(5, 2)], [F(1)]]

    def net(w1):
        return _mk([([[w1, F(1)]], [F(0)]), ([[F(1)]], [F(0)])], X, Y, "relu", "square", f"issue_ii/k{k}")
    return net(F(1, 2 ** k)), net(F(0))


def issue_example_iii(k: int = 34) -> tuple:
    """A square-loss local minimum (``gt07``: a kink minimum, dyadic) with one label moved by
    ``2^-k``: returns (the moved instance, the base instance)."""
    from tests.reference.cases import by_name
    base_inst = b2.Instance.from_case(by_name("gt07"))
    Y = [list(r) for r in base_inst.Y]
    Y[0][0] += F(1, 2 ** k)
    moved = b2.Instance(layers=base_inst.layers, X=base_inst.X, Y=tuple(tuple(r) for r in Y),
                        activation=base_inst.activation, loss=base_inst.loss, family=f"issue_iii/k{k}")
    return moved, base_inst


# =============================================================================================
# The judge
# =============================================================================================

@dataclass
class Judgement:
    """The exact verdict on a point.

    ``verdict``: ``"descent"`` (not d-stationary: exact direction with ``L' < 0`` and an exact
    decrease), ``"saddle"`` (d-stationary, exact local descent curve), ``"local_min"`` (proved),
    ``"stationary"`` (d-stationary, nothing more proved) or ``"unsure"``.
    """

    verdict: str
    reason: str
    direction: Optional[list] = None
    curve: Optional[list] = None
    slope: Optional[Fraction] = None
    step: Optional[Fraction] = None
    decrease: Optional[Fraction] = None

    @property
    def has_descent(self) -> bool:
        return self.verdict in ("descent", "saddle")


def judge(inst: b2.Instance, second_order: bool = True) -> Judgement:
    """Decide ``inst`` exactly (see the module docstring); never uses certify."""
    net = b2.Net(inst)
    fo = b2.first_order(net, max_kinks=12)
    if fo.stationary is False:
        return Judgement("descent", fo.reason, direction=fo.direction, slope=fo.slope, step=fo.step,
                         decrease=fo.decrease)
    if fo.stationary is None:
        return Judgement("unsure", fo.reason)
    if not second_order:
        return Judgement("stationary", fo.reason)
    res = b2.oracle(inst)
    if res.verdict == "saddle":
        return Judgement("saddle", res.reason, direction=res.direction, curve=res.curve, step=res.step,
                         decrease=res.decrease)
    if res.verdict == "local_min":
        return Judgement("local_min", res.reason)
    if len(inst.widths) == 3 and inst.widths[-1] == 1 and all(v != 0 for v in inst.layers[1][0][0]):
        return Judgement("local_min", "d-stationary, one hidden layer, scalar output, every output weight "
                         "non-zero (REFERENCES A4.5-1)")
    return Judgement("stationary", f"d-stationary ({fo.reason}); {res.reason}")


# =============================================================================================
# Running certify and classifying
# =============================================================================================

def tool_claim(report: dict) -> tuple:
    """What a ``local_min`` report claims: ``(claim, radius)``.

    ``claim`` is ``"exact"``, ``"nearby"``, ``"up_to_rounding"`` or ``"legacy"`` (a report that
    names no claim -- today's: its verdict is about the point itself). The claim is read from the
    first of ``report["claim"]``, ``flags["claim"]``, ``second_order["claim"]``,
    ``second_order["certificate"]["claim"]``, ``report["nearby"]["claim"]`` that is present; a
    ``"nearby"`` section or a polished point also means "nearby". The radius (Euclidean, about the
    given point) from ``report["nearby"]["radius"]``, ``second_order["certificate"]["radius"]``,
    ``flags["radius"]`` or ``polish["distance"]``.
    """
    flags = report.get("flags") or {}
    so = report.get("second_order") or {}
    cert = so.get("certificate") or {}
    near = report.get("nearby") if isinstance(report.get("nearby"), dict) else {}
    raw = None
    for cand in (report.get("claim"), flags.get("claim"), so.get("claim"), cert.get("claim"), near.get("claim")):
        if cand:
            raw = cand
            break
    claim_dict = raw if isinstance(raw, dict) else {}
    if isinstance(raw, dict):
        raw = raw.get("level") or raw.get("kind") or raw.get("name") or raw.get("claim")
    if raw is None and (near or report.get("polish")):
        raw = "nearby"
    claim = "legacy" if raw is None else str(raw).lower().replace(" ", "_").replace("-", "_")
    if "round" in claim:
        claim = "up_to_rounding"
    elif "near" in claim:
        claim = "nearby"
    elif "exact" in claim:
        claim = "exact"
    radius = None
    for cand in (claim_dict.get("radius"), near.get("radius"), cert.get("radius"), flags.get("radius"),
                 (report.get("polish") or {}).get("distance")):
        if isinstance(cand, (int, float)) and not isinstance(cand, bool):
            radius = cand
            break
    return claim, radius


def run_tool(inst: b2.Instance, time_limit: float = 10.0, polished: bool = False) -> dict:
    """``certify.check`` on ``inst``: the report as a dict (plus ``"_seconds"``). ``polished``: check
    the point as the end point of a polish is checked (``check_problem(prefer_nearby=True)``: the
    nearby prover and the exact construction before anything else)."""
    import time

    import certify
    args = inst.certify_args()
    model, X, y = args.pop("model"), args.pop("X"), args.pop("y")
    t0 = time.perf_counter()
    if polished:
        from certify.data import Dataset, Problem
        from certify.driver import check_problem
        from certify.loaders import as_network
        problem = Problem(as_network(model, args.pop("activation", None)), Dataset(X, y), args.pop("loss", "square"),
                          args.pop("weight_decay", 0.0))
        report = check_problem(problem, time_limit=time_limit, prefer_nearby=True, **args)
    else:
        report = certify.check(model, X, y, time_limit=time_limit, **args)
    out = report.to_dict()
    out["_seconds"] = time.perf_counter() - t0
    return out


def classify(case_inst: b2.Instance, report: dict, jd: Judgement, *, same_problem: bool = False,
             distance: Optional[Fraction] = None, base_is_min: bool = False) -> dict:
    """Judge certify's verdict on one point: ``{"outcome", "wrong", "why"}``.

    Outcomes: ``wrong_local_min`` (a point claim where the judge holds an exact descent),
    ``wrong_nearby`` (a constructed ``theta*`` -- stored in the claim -- where the judge holds one),
    ``wrong_refutation`` (a refutation where the judge proves a minimum, or whose stored point is
    not exactly lower), ``right_local_min``, ``local_min_unjudged`` (the judge found no descent but
    proved no minimum either), ``nearby_right``, ``nearby_unjudged``, ``refuted`` (a correct
    refutation), ``refuted_unjudged``, ``inconclusive``.
    """
    v = report["verdict"]
    if v == "local_min":
        claim, radius = tool_claim(report)
        star = (report.get("claim") or {}).get("theta_star")
        if claim == "nearby" and star is not None:
            # a constructed theta* (exact rationals in the claim): the judge decides theta* itself
            jd_star = judge(case_inst.with_theta([F(v) for v in star]))
            if jd_star.has_descent:
                return {"outcome": "wrong_nearby", "wrong": True,
                        "why": f"theta* of the claim is not a minimum: {jd_star.reason} (decrease "
                               f"{jd_star.decrease} at t = {jd_star.step})"}
            if jd_star.verdict == "local_min":
                return {"outcome": "nearby_right", "wrong": False, "why": f"theta* judged: {jd_star.reason}"}
        if claim == "nearby":
            if jd.verdict == "local_min":
                return {"outcome": "nearby_right", "wrong": False, "why": "the point itself is an exact local minimum"}
            if same_problem and base_is_min and radius is not None and distance is not None \
                    and distance <= F(radius):
                return {"outcome": "nearby_right", "wrong": False,
                        "why": f"the base (an exact local minimum) lies at distance {distance} <= r = {radius}"}
            return {"outcome": "nearby_unjudged", "wrong": False, "why": f"radius {radius}; judge {jd.verdict}"}
        if jd.has_descent:
            return {"outcome": "wrong_local_min", "wrong": True,
                    "why": f"claim {claim}, but exactly: {jd.reason} (decrease {jd.decrease} at t = {jd.step})"}
        if jd.verdict == "local_min":
            return {"outcome": "right_local_min", "wrong": False, "why": jd.reason}
        return {"outcome": "local_min_unjudged", "wrong": False, "why": jd.reason}
    if v in ("not_stationary", "saddle"):
        problems, notes = b2.check_refutation(case_inst, report.get("refutation") or {})
        if problems:
            return {"outcome": "wrong_refutation", "wrong": True, "why": "; ".join(problems)}
        if jd.verdict == "local_min":
            return {"outcome": "wrong_refutation", "wrong": True, "why": f"the judge proves a minimum: {jd.reason}"}
        if jd.has_descent:
            return {"outcome": "refuted", "wrong": False, "why": "; ".join(notes)}
        return {"outcome": "refuted_unjudged", "wrong": False, "why": "; ".join(notes)}
    return {"outcome": "inconclusive", "wrong": False, "why": report.get("reason", "")}


def _kind_of(report: dict) -> Optional[str]:
    return ((report.get("second_order") or {}).get("certificate") or {}).get("kind")


def run_case(case: Case, time_limit: float = 10.0, polished: bool = False) -> dict:
    """Run certify and the judge on one fuzz case; a JSON-friendly record (the unmoved base is
    judged by its own proof). ``polished``: see :func:`run_tool`."""
    import time
    t0 = time.perf_counter()
    jd = Judgement("local_min", case.base.proof) if case.move == "none" else judge(case.inst)
    judge_s = time.perf_counter() - t0
    report = run_tool(case.inst, time_limit, polished)
    cls = classify(case.inst, report, jd, same_problem=case.same_problem, distance=case.distance,
                   base_is_min=True)
    claim, radius = tool_claim(report) if report["verdict"] == "local_min" else (None, None)
    inst = case.inst
    return {"id": case.id, "kind": case.base.kind, "base_seed": case.base.seed, "base_proof": case.base.proof,
            "depth": len(inst.widths) - 2, "widths": inst.widths, "activation": b2.activation_spec(inst.activation),
            "loss": inst.loss, "move": case.move, "k": case.k, "sign": case.sign, "where": case.where,
            "same_problem": case.same_problem, "tool": report["verdict"], "tool_kind": _kind_of(report),
            "tool_claim": claim, "tool_radius": radius, "tool_reason": report.get("reason", "")[:300],
            "tool_approximate": (report.get("flags") or {}).get("approximate"),
            "judge": jd.verdict, "judge_reason": jd.reason[:300],
            "judge_slope": None if jd.slope is None else str(jd.slope),
            "judge_step": None if jd.step is None else str(jd.step),
            "judge_decrease": None if jd.decrease is None else str(jd.decrease),
            "outcome": cls["outcome"], "wrong": cls["wrong"], "why": cls["why"][:400],
            "tool_s": report["_seconds"], "judge_s": judge_s, "instance": inst.to_dict()}


# =============================================================================================
# Degenerate points and the simple search
# =============================================================================================

def degenerate_instance(seed: int) -> b2.Instance:
    """A small degenerate exact point (see the module docstring), reproducible. Three in four are
    drawn until they are first-order stationary (a float pre-filter; the judge is exact), as the
    points where first order cannot decide are the ones this fuzz is about."""
    want_stationary = random.Random(seed).random() < 0.75
    for attempt in range(300):
        rng = random.Random(seed * 104_729 + attempt)
        inst = _try_degenerate(rng, seed)
        if inst is None:
            continue
        net = b2.Net(inst)
        if len(net.first_order_kinks()) > 10 or len(net.kinks()) > 12:
            continue
        if want_stationary and attempt < 250 and not b2._float_stationary(net):
            continue
        return inst
    raise RuntimeError(f"no degenerate instance for seed {seed}")


def _try_degenerate(rng: random.Random, seed: int) -> Optional[b2.Instance]:
    depth = rng.choice((1, 2, 2))
    dx = rng.choice((1, 1, 2))
    widths = [dx] + [rng.choice((1, 2, 2, 3)) for _ in range(depth)] + [1]
    act = rng.choice(("relu", "relu", "relu", ("leaky_relu", F(1, 4)), "abs"))
    loss = rng.choices(("square", "absolute", "hinge"), weights=(6, 2, 2))[0]
    n = rng.randint(3, 6)
    X = []
    for _ in range(n):
        if X and rng.random() < 0.25:
            X.append(list(rng.choice(X)))
        else:
            X.append([rng.choice(_XV) for _ in range(dx)])
    h = _h(act)
    layers = []
    xin = [list(r) for r in X]
    p_zero = rng.choice((0.3, 0.5, 0.7))
    for l in range(depth + 1):
        W, b = [], []
        for j in range(widths[l + 1]):
            w = [ZERO if rng.random() < p_zero else rng.choice(_WV) for _ in range(widths[l])]
            u = rng.random()
            if l < depth and u < 0.2:                      # on its kink at every sample
                w = [ZERO] * widths[l]
                bias = ZERO
            elif l < depth and u < 0.35 and act == "relu":  # dead
                bias = -max(sum((wk * xk for wk, xk in zip(w, x)), ZERO) for x in xin) - F(rng.randint(1, 3), 2)
            elif l < depth and u < 0.75:                   # kink planted at a sample
                i = rng.randrange(n)
                bias = -sum((wk * xk for wk, xk in zip(w, xin[i])), ZERO)
            else:
                bias = ZERO if rng.random() < p_zero else F(rng.randint(-4, 4), 2)
            W.append(w)
            b.append(bias)
        if l == depth and rng.random() < 0.4:              # zero output weights (escape neurons)
            for r in W:
                for s in range(len(r)):
                    if rng.random() < 0.6:
                        r[s] = ZERO
        layers.append((W, b))
        z = [[sum((wk * xk for wk, xk in zip(W[j], x)), b[j]) for j in range(len(W))] for x in xin]
        xin = [[h(v) for v in row] for row in z] if l < depth else z
    f = xin
    mode = rng.choice(("stationary", "stationary", "zero_residuals", "random"))
    if loss == "hinge":
        layers[-1][1][0] += rng.choice((-1, 1)) - f[rng.randrange(n)][0]     # one margin on 1
        Y = [[F(rng.choice((-1, 1)))] for _ in range(n)]
        if mode != "random":
            for _ in range(16):
                inst = _mk(layers, X, Y, act, "hinge", f"degenerate/hinge/{mode}", seed)
                if b2._float_stationary(b2.Net(inst)):
                    return inst
                Y = [[F(rng.choice((-1, 1)))] for _ in range(n)]
        return _mk(layers, X, Y, act, "hinge", "degenerate/hinge/random", seed)
    if loss == "absolute":
        Y = [[fi[0] + (ZERO if rng.random() < 0.5 else rng.choice((F(-1), F(1, 2), F(1))))] for fi in f]
        return _mk(layers, X, Y, act, "absolute", f"degenerate/absolute/{mode}", seed)
    if mode == "stationary":
        net0 = b2.Net(_mk(layers, X, [[ZERO]] * n, act, "square"))
        rho = b2._stationary_residuals(net0, rng)
        if rho is None:
            mode = "zero_residuals"
        else:
            Y = [[fi[0] - ri[0]] for fi, ri in zip(f, rho)]
            return _mk(layers, X, Y, act, "square", "degenerate/square/stationary", seed)
    if mode == "zero_residuals":
        Y = [[fi[0] + (ZERO if rng.random() < 0.6 else rng.choice((F(-1, 2), F(1, 2))))] for fi in f]
    else:
        Y = [[fi[0] + rng.choice((ZERO, F(-1), F(-1, 2), F(1, 2), F(1)))] for fi in f]
    return _mk(layers, X, Y, act, "square", f"degenerate/square/{mode}", seed)


def simple_descent(inst: b2.Instance, rng_seed: int = 0) -> dict:
    """Exact simple search for a local descent at ``inst`` (see the module docstring).

    Returns ``{"found": bool, "how": ..., "order": lowest nonzero order of the loss change,
    "coefficient": its value, "step", "decrease", "direction", "curve"}`` (exact numbers as strings).
    """
    net = b2.Net(inst)
    fo = b2.first_order(net, max_kinks=12)
    if fo.stationary is False:
        return {"found": True, "how": "first_order", "order": 1, "coefficient": str(fo.slope),
                "step": str(fo.step), "decrease": str(fo.decrease), "direction": [str(v) for v in fo.direction],
                "curve": None, "d_stationary": False}
    got = b2.simple_search(net, rng=random.Random(rng_seed), n_random=160)
    if got is None:
        return {"found": False, "how": None, "d_stationary": fo.stationary}
    d, e, coeffs, t, dec, what = got
    order = next(k for k, v in enumerate(coeffs) if v)
    return {"found": True, "how": what, "order": order, "coefficient": str(coeffs[order]), "step": str(t),
            "decrease": str(dec), "direction": [str(v) for v in d], "curve": None if e is None else [str(v) for v in e],
            "d_stationary": fo.stationary}


#: certify's inconclusive reasons grouped for the degenerate summary: (substring, class), by priority
#: (a reason joins the notes of every second-order test tried; the first class that matches wins)
REASON_CLASSES = (
    ("negative curvature", "negative curvature, no verified decrease"),
    ("escape", "zero-output unit: escape not decided"),
    ("time limit", "time limit"),
    ("would need 2^", "too many pieces or faces"),
    ("over the limit", "too many pieces or faces"),
    ("repeated eigenvalue", "curvature ~0 at the tolerance (repeated eigenvalue)"),
    ("curvature 0", "curvature 0: higher order needed"),
    ("higher order", "curvature 0: higher order needed"),
    ("singular", "curvature 0: higher order needed"),
    ("nested", "nested kinks: no test applies"),
    ("rounding", "rounding"),
)


def reason_class(reason: str) -> str:
    low = reason.lower()
    for key, name in REASON_CLASSES:
        if key in low:
            return name
    return "other"


def run_degenerate(seed: int, time_limit: float = 10.0) -> dict:
    """One degenerate point: the exact simple search and certify's verdict; a JSON-friendly record."""
    import time
    inst = degenerate_instance(seed)
    t0 = time.perf_counter()
    found = simple_descent(inst, rng_seed=seed)
    search_s = time.perf_counter() - t0
    report = run_tool(inst, time_limit)
    v = report["verdict"]
    problems = []
    if v in ("not_stationary", "saddle"):
        problems, _ = b2.check_refutation(inst, report.get("refutation") or {})
    wrong = (v == "local_min" and found["found"]) or bool(problems)
    return {"seed": seed, "family": inst.family, "widths": inst.widths, "activation": b2.activation_spec(inst.activation),
            "loss": inst.loss, "n_kinks": len(b2.Net(inst).kinks()), "search_found": found["found"],
            "search_how": found.get("how"), "search_order": found.get("order"),
            "search_coefficient": found.get("coefficient"), "search_decrease": found.get("decrease"),
            "d_stationary": found.get("d_stationary"), "tool": v, "tool_reason": report.get("reason", "")[:1000],
            "tool_reason_class": reason_class(report.get("reason", "")) if v == "inconclusive" else None,
            "tool_kind": _kind_of(report), "refutation_problems": problems, "wrong": wrong,
            "search_s": search_s, "tool_s": report["_seconds"], "instance": inst.to_dict()}
