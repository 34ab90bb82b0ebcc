"""Degenerate stationary points and an exact search for local descent along simple curves.

Independent ground truth for the escape, higher-order and search kinds: this module never imports
``certify``. Everything is exact (:class:`fractions.Fraction`).

* :func:`taylor` -- the Taylor coefficients ``c_0, ..., c_K`` of the mean loss along the curve
  ``theta(t) = theta + sum_k t^k T_k`` for ``t -> 0+``, on the piece the curve enters: every
  pre-activation is a polynomial in ``t`` whose first nonzero coefficient decides its sign for all
  small ``t > 0`` (so the activation's slope), and every loss piece is chosen the same way. The
  coefficients are exact; ``L(theta(t)) = sum_k c_k t^k + O(t^{K+1})``.
* :func:`local_descent` -- the first nonzero ``c_k`` (``k >= 1``) is negative: the loss drops for
  every small ``t > 0`` (a *local* descent, as a refutation must be).
* :func:`simple_search` -- single coordinates, pairs, chains of weights along a path (a bias or an
  input weight of a unit, its outgoing weight, the next layer's weight, ...), each with every sign
  pattern, judged by :func:`taylor`.
* :func:`degenerate_point` -- a random small degenerate point (zero weights, planted kinks, zero
  output weights) with square-loss labels chosen so the point is *d-stationary with inert kinks*:
  the residual ``r`` solves ``J' r = 0`` and ``c_k(r) = 0`` for every unit kink (kink units blocked),
  so ``L'(theta; .) = 0`` identically and only second or higher order decides.
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction
from typing import Optional, Sequence

from tests import exact

F0 = Fraction(0)


# ----------------------------------------------------------------------------- polynomials in t
def _pmul(a: list, b: list, K: int) -> list:
    out = [F0] * (K + 1)
    for i, ai in enumerate(a):
        if ai:
            for j in range(min(len(b), K + 1 - i)):
                if b[j]:
                    out[i + j] += ai * b[j]
    return out


def _padd(a: list, b: list) -> list:
    return [x + y for x, y in zip(a, b)]


def _lex_sign(a: list) -> int:
    for v in a:
        if v:
            return 1 if v > 0 else -1
    return 0


def _slopes(activation):
    if activation == "relu":
        return Fraction(1), F0
    if activation == "abs":
        return Fraction(1), Fraction(-1)
    if activation == "identity":
        return Fraction(1), Fraction(1)
    return Fraction(1), exact.as_fraction(activation[1])


def taylor(layers, X, y, activation, loss_name: str, terms: Sequence[Sequence], K: int = 4,
           weight_decay=0) -> list:
    """Exact ``c_0..c_K`` of ``L(theta + sum_k t^k terms[k-1])`` as ``t -> 0+`` (see the module doc).

    ``terms`` are flat directions (Fractions, the order of :func:`tests.exact.flatten`); rational
    losses only.
    """
    shapes = exact.shapes_of(layers)
    theta = exact.flatten(layers)
    p = len(theta)
    polys = []
    for i in range(p):
        pc = [theta[i]] + [exact.as_fraction(T[i]) for T in list(terms)[:K]]
        polys.append((pc + [F0] * (K + 1))[:K + 1])
    s_pos, s_neg = _slopes(activation)
    # unflatten the polynomial parameters
    net, k = [], 0
    for n_out, n_in in shapes:
        W = [[polys[k + r * n_in + c] for c in range(n_in)] for r in range(n_out)]
        k += n_out * n_in
        b = [polys[k + r] for r in range(n_out)]
        k += n_out
        net.append((W, b))
    total = [F0] * (K + 1)
    L = len(net)
    for xi, yi in zip(X, y):
        a = [[exact.as_fraction(v)] + [F0] * K for v in xi]
        for l, (W, b) in enumerate(net, start=1):
            z = []
            for row, bj in zip(W, b):
                acc = list(bj)
                for w, av in zip(row, a):
                    acc = _padd(acc, _pmul(w, av, K))
                z.append(acc)
            if l < L:
                a = []
                for zz in z:
                    sg = _lex_sign(zz)
                    s = s_pos if sg > 0 else (s_neg if sg < 0 else F0)
                    a.append([s * v for v in zz])
            else:
                a = z
        total = _padd(total, _loss_poly(a, yi, loss_name, K))
    n = len(X)
    out = [c / n for c in total]
    lam = exact.as_fraction(weight_decay)
    if lam:
        for pc in polys:
            sq = _pmul(pc, pc, K)
            out = [o + lam / 2 * s for o, s in zip(out, sq)]
    return out


def _lex_max(polys: list) -> list:
    best = polys[0]
    for q in polys[1:]:
        for a, b in zip(q, best):
            if a != b:
                if a > b:
                    best = q
                break
    return best


def _loss_poly(f: list, yi, loss_name: str, K: int) -> list:
    one = [Fraction(1)] + [F0] * K
    if loss_name == "square":
        targets = yi if isinstance(yi, (list, tuple)) else [yi]
        out = [F0] * (K + 1)
        for fc, yc in zip(f, targets):
            r = list(fc)
            r[0] -= exact.as_fraction(yc)
            out = _padd(out, [v / 2 for v in _pmul(r, r, K)])
        return out
    if loss_name == "absolute":
        targets = yi if isinstance(yi, (list, tuple)) else [yi]
        out = [F0] * (K + 1)
        for fc, yc in zip(f, targets):
            r = list(fc)
            r[0] -= exact.as_fraction(yc)
            out = _padd(out, [_lex_sign(r) * v for v in r])
        return out
    if loss_name == "hinge":
        yv = exact.as_fraction(yi)
        m = [o - yv * v for o, v in zip(one, f[0])]
        return _lex_max([[F0] * (K + 1), m])
    if loss_name == "multiclass_hinge":
        c = int(yi)
        pieces = []
        for j in range(len(f)):
            pieces.append([a - b + (o if j != c else F0) for a, b, o in zip(f[j], f[c], one)])
        return _lex_max(pieces)
    raise ValueError(f"no exact Taylor expansion for {loss_name!r}")


def leading(coeffs: list) -> Optional[tuple]:
    """``(k, c_k)`` for the first nonzero ``c_k`` with ``k >= 1`` (None: all zero up to K)."""
    for k, c in enumerate(coeffs[1:], start=1):
        if c:
            return k, c
    return None


def local_descent(coeffs: list) -> bool:
    """The loss drops for every small ``t > 0``: the first nonzero ``c_k`` (``k >= 1``) is negative."""
    lead = leading(coeffs)
    return lead is not None and lead[1] < 0


# ----------------------------------------------------------------------------- the simple search
def _index(shapes):
    """Flat index of ``W_l[r, c]`` and ``b_l[r]`` (1-based layers)."""
    offs, k = [], 0
    for n_out, n_in in shapes:
        offs.append(k)
        k += n_out * (n_in + 1)

    def w(l, r, c):
        n_out, n_in = shapes[l - 1]
        return offs[l - 1] + r * n_in + c

    def b(l, r):
        n_out, n_in = shapes[l - 1]
        return offs[l - 1] + n_out * n_in + r

    return w, b


def chains(shapes) -> list:
    """Index sets of weights along paths: a start (an input weight or a bias of a unit), then the
    weights from that unit to a unit of the next layer, ... , to an output (every sub-path too)."""
    w, b = _index(shapes)
    L = len(shapes)
    out = []

    def extend(path, l, r):
        # path ends at unit r of layer l; continue to the next layers
        if len(path) >= 2:
            out.append(tuple(path))
        if l == L:
            return
        n_next = shapes[l][0]
        for r2 in range(n_next):
            extend(path + [w(l + 1, r2, r)], l + 1, r2)

    for l in range(1, L + 1):
        n_out, n_in = shapes[l - 1]
        for r in range(n_out):
            starts = [b(l, r)] + [w(l, r, c) for c in range(n_in)] if l == 1 else [b(l, r)]
            for s in starts:
                extend([s], l, r)
    return sorted(set(out), key=lambda c: (len(c), c))


def simple_search(layers, X, y, activation, loss_name: str, *, K: int = 4, max_pairs: int = 2000,
                  max_chains: int = 400, weight_decay=0) -> Optional[dict]:
    """Single coordinates, pairs and chains with every sign pattern, judged exactly by :func:`taylor`.

    Returns the first local descent found (``{"d": ..., "order": k, "coefficient": c_k, "kind": ...}``)
    or None. The chains are the path products that make a degenerate point's leading term (a weight
    of a unit, its outgoing weight, the next layer's ...).
    """
    shapes = exact.shapes_of(layers)
    p = exact.n_params(shapes)

    def judge(d, kind):
        c = taylor(layers, X, y, activation, loss_name, [d], K=K, weight_decay=weight_decay)
        if local_descent(c):
            k, ck = leading(c)
            return {"d": tuple(d), "order": k, "coefficient": ck, "kind": kind, "coefficients": c}
        return None

    for i in range(p):
        for s in (1, -1):
            d = [F0] * p
            d[i] = Fraction(s)
            hit = judge(d, "single")
            if hit:
                return hit
    pairs = list(itertools.combinations(range(p), 2))[:max_pairs]
    for i, j in pairs:
        for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            d = [F0] * p
            d[i], d[j] = Fraction(si), Fraction(sj)
            hit = judge(d, "pair")
            if hit:
                return hit
    for ch in [c for c in chains(shapes) if len(c) >= 3][:max_chains]:
        for signs in itertools.product((1, -1), repeat=len(ch)):
            d = [F0] * p
            for i, s in zip(ch, signs):
                d[i] = Fraction(s)
            hit = judge(d, "chain")
            if hit:
                return hit
    return None


# ----------------------------------------------------------------------------- degenerate points
def _blocked_adjoints(layers, x, activation):
    """Per output c: (d f_c / d theta, {(l, j): d f_c / d x^l_j}) with kink units blocked (slope 0)."""
    s_pos, s_neg = _slopes(activation)
    L = len(layers)
    acts, pres, slopes = [[exact.as_fraction(v) for v in x]], [], []
    for l, (W, b) in enumerate(layers, start=1):
        z = [sum((wv * av for wv, av in zip(row, acts[-1])), exact.as_fraction(bj)) for row, bj in zip(W, b)]
        pres.append(z)
        if l < L:
            sl = [s_pos if v > 0 else (s_neg if v < 0 else F0) for v in z]
            slopes.append(sl)
            acts.append([s * v for s, v in zip(sl, z)])
    C = len(layers[-1][1])
    out = []
    for c in range(C):
        delta = [Fraction(int(k == c)) for k in range(C)]   # d f_c / d z^L
        grads = [None] * L
        xadj = {}
        for l in range(L, 0, -1):
            W, b = layers[l - 1]
            a_in = acts[l - 1]
            gW = [[dv * av for av in a_in] for dv in delta]
            grads[l - 1] = (gW, list(delta))
            if l > 1:
                adj = [sum((W[r][j] * delta[r] for r in range(len(W))), F0) for j in range(len(a_in))]
                for j, v in enumerate(adj):
                    xadj[(l - 1, j)] = v
                delta = [v * s for v, s in zip(adj, slopes[l - 2])]
        flat = []
        for gW, gb in grads:
            for row in gW:
                flat.extend(row)
            flat.extend(gb)
        out.append((flat, xadj))
    return out, pres


def _nullspace(rows: list, m: int) -> list:
    """Basis of ``{r in Q^m : row . r = 0 for every row}`` (Fraction Gauss-Jordan)."""
    A = [list(r) for r in rows if any(r)]
    piv_cols, r0 = [], 0
    for c in range(m):
        piv = next((i for i in range(r0, len(A)) if A[i][c] != 0), None)
        if piv is None:
            continue
        A[r0], A[piv] = A[piv], A[r0]
        pv = A[r0][c]
        A[r0] = [v / pv for v in A[r0]]
        for i in range(len(A)):
            if i != r0 and A[i][c] != 0:
                f = A[i][c]
                A[i] = [a - f * b for a, b in zip(A[i], A[r0])]
        piv_cols.append(c)
        r0 += 1
        if r0 == len(A):
            break
    free = [c for c in range(m) if c not in piv_cols]
    basis = []
    for fc in free:
        v = [F0] * m
        v[fc] = Fraction(1)
        for i, pc in enumerate(piv_cols):
            v[pc] = -A[i][fc]
        basis.append(v)
    return basis


_VALUES = (Fraction(1), Fraction(-1), Fraction(2), Fraction(-2), Fraction(1, 2), Fraction(-1, 2))


def degenerate_point(seed: int) -> dict:
    """A small degenerate d-stationary point with inert kinks (square loss); see the module doc.

    Returns ``{"layers", "X", "y", "activation", "loss", "seed", "residual"}`` with exact entries
    (dyadic, so float64 holds them exactly).
    """
    rng = random.Random(seed)
    depth = rng.choice((1, 2, 2, 2, 3))
    d_in = rng.choice((1, 1, 2))
    C = rng.choice((1, 1, 1, 2))
    widths = [d_in] + [rng.choice((1, 2, 2, 3)) for _ in range(depth)] + [C]
    n = rng.choice((2, 3, 4, 5, 6))
    activation = rng.choice(("relu", "relu", "relu", ("leaky_relu", Fraction(1, 4)), "abs"))
    X = [[Fraction(rng.randint(-2, 2)) for _ in range(d_in)] for _ in range(n)]
    p_zero = rng.choice((0.3, 0.5, 0.7))
    layers = []
    for l in range(1, len(widths)):
        n_in, n_out = widths[l - 1], widths[l]
        W = [[F0 if rng.random() < p_zero else rng.choice(_VALUES) for _ in range(n_in)] for _ in range(n_out)]
        b = [F0 if rng.random() < p_zero else rng.choice(_VALUES) for _ in range(n_out)]
        layers.append((W, b))
    # plant kinks: make some hidden pre-activations exactly zero at a chosen sample
    for l in range(1, len(widths) - 1):
        for j in range(widths[l]):
            if rng.random() < 0.5:
                i = rng.randrange(n)
                W, b = layers[l - 1]
                a_prev = _activations(layers, X[i], activation)[l - 1]
                b[j] = -sum((wv * av for wv, av in zip(W[j], a_prev)), F0)
    # zero output weights now and then (escape units)
    if rng.random() < 0.5:
        W, b = layers[-1]
        for r in range(len(W)):
            for c in range(len(W[r])):
                if rng.random() < 0.6:
                    W[r][c] = F0
    f_vals = [exact.forward(layers, x, activation) for x in X]
    # residuals: J' r = 0 and c_k(r) = 0 at every unit kink (kink units blocked)
    rows = []
    p = exact.n_params(exact.shapes_of(layers))
    per_sample = [_blocked_adjoints(layers, x, activation) for x in X]
    m = n * C
    for k in range(p):
        row = [F0] * m
        for i, (outs, _) in enumerate(per_sample):
            for c, (flat, _) in enumerate(outs):
                row[i * C + c] = flat[k]
        rows.append(row)
    for i, (outs, pres) in enumerate(per_sample):
        for l in range(1, len(widths) - 1):
            for j, v in enumerate(pres[l - 1]):
                if v == 0:
                    row = [F0] * m
                    for c, (_, xadj) in enumerate(outs):
                        row[i * C + c] = xadj.get((l, j), F0)
                    rows.append(row)
    basis = _nullspace(rows, m)
    r = [F0] * m
    for v in basis:
        coef = Fraction(rng.choice((-2, -1, 1, 2)))
        r = [a + coef * b for a, b in zip(r, v)]
    # dyadic residuals: clear denominators, then scale by a power of two
    from math import lcm
    den = 1
    for v in r:
        den = lcm(den, v.denominator)
    r = [v * den for v in r]
    big = max((abs(v) for v in r), default=Fraction(1)) or Fraction(1)
    shift = 0
    while big / 2 ** shift > 4:
        shift += 1
    r = [v / 2 ** shift for v in r]
    y = []
    for i in range(n):
        if C == 1:
            y.append(f_vals[i][0] - r[i])
        else:
            y.append(tuple(f_vals[i][c] - r[i * C + c] for c in range(C)))
    return {"layers": tuple((tuple(tuple(row) for row in W), tuple(b)) for W, b in layers), "X": tuple(map(tuple, X)),
            "y": tuple(y), "activation": activation, "loss": "square", "seed": seed, "residual": tuple(r)}


def _activations(layers, x, activation) -> list:
    """Inputs of every layer: ``[x^0, x^1, ...]`` (exact)."""
    h = exact.activation_function(activation)
    a = [exact.as_fraction(v) for v in x]
    out = [a]
    for l, (W, b) in enumerate(layers, start=1):
        z = [sum((wv * av for wv, av in zip(row, a)), exact.as_fraction(bj)) for row, bj in zip(W, b)]
        a = z if l == len(layers) else [h(v) for v in z]
        out.append(a)
    return out


def is_d_stationary_inert(point: dict) -> bool:
    """Re-check the construction: ``L'(theta; d) = 0`` for every coordinate direction (and its negative)."""
    layers = point["layers"]
    p = exact.n_params(exact.shapes_of(layers))
    for i in range(p):
        for s in (1, -1):
            d = [F0] * p
            d[i] = Fraction(s)
            c = taylor(layers, point["X"], point["y"], point["activation"], point["loss"], [d], K=1)
            if c[1] != 0:
                return False
    return True


def nontrivial_point(seed: int, tries: int = 50) -> dict:
    """:func:`degenerate_point` for sub-seeds ``seed * 1000 + k`` until the residual is not 0 (a zero
    residual is a zero-loss global minimum: trivial). Deterministic in ``seed``."""
    for k in range(tries):
        pt = degenerate_point(seed * 1000 + k)
        if any(pt["residual"]):
            pt["seed"] = seed
            pt["subseed"] = seed * 1000 + k
            return pt
    raise RuntimeError(f"no degenerate point with a nonzero residual for seed {seed}")
