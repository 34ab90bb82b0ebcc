"""Brute-force oracle for deep and multi-output nets: exact pieces, exact KKT, exact curvature.

A third independent ground truth next to :mod:`tests.exact` and :mod:`tests.bruteforce` (which
covers one hidden layer with one output). It never imports ``certify`` except inside
:func:`compare`, which runs ``certify.check`` / ``certify.verify`` on an instance.

Scope
-----
Fully connected nets of any depth (the generator draws two hidden layers, or one hidden layer with
two outputs), ``z^l = W_l x^{l-1} + b_l`` with ``W_l`` of shape (out, in), activation ``relu``,
``("leaky_relu", alpha)`` or ``abs`` on the hidden layers (``h(z) = z`` for ``z >= 0``,
``s_minus z`` for ``z < 0``; ``s_minus = 0, alpha, -1``), output ``f = z^L``; loss ``square``
(``1/2 ||f - y||^2``), ``hinge`` (one output, ``y = +-1``) or ``absolute`` (``||f - y||_1``),
mean over samples, no weight decay. ``theta = (W1 row-major, b1, W2 row-major, b2, ...)``.
Every number is a :class:`~fractions.Fraction`; the generator's numbers are dyadic, so float64
holds them exactly and ``certify`` sees exactly the oracle's point.

Kinks and pieces
----------------
A *kink* is a hidden pre-activation ``z^l_j(x_i) == 0`` (exactly) or a loss term at its kink
(hinge margin ``y_i f_i == 1``, absolute residual ``f_io == y_io``); each kink ``k`` has a switching
function ``phi_k`` (the pre-activation, ``1 - y f``, ``f_o - y_o``). A sign pattern
``sigma in {-,+}^K`` picks a side of every kink; with the slopes it fixes, every upstream quantity
is a polynomial, so ``phi_k^sigma`` (the switching function computed with the upstream kinks on their
``sigma`` sides) and the loss ``L_sigma`` are polynomials in theta, and near theta
``L = L_sigma`` on ``D_sigma = {sigma_k phi_k^sigma >= 0 for all k}``. The regions cover a
neighbourhood of theta (give each kink the side it is on). Hence:

* **First order.** ``L'(theta; .)`` is piecewise linear: on the cone
  ``F_sigma = {d : sigma_k grad(phi_k^sigma) . d >= 0}`` it equals ``grad(L_sigma) . d`` (by induction
  over the layers, the tangent of every kink is ``grad(phi_k^sigma) . d``, whose sign agrees with
  ``sigma_k`` or is 0, where both slopes give the same value). The cones cover ``R^p``, so theta is
  d-stationary iff ``min {g_sigma . d : d in F_sigma, |d| <= 1} = 0`` for every sigma. Each piece's
  LP (``scipy.optimize.linprog``, HiGHS) is then *proved* in Fractions: a negative value by a
  rationalised direction with exact ``L'(theta; d) < 0`` (:meth:`Net.directional_derivative`, a
  one-sided forward mode that does not use pieces) and an exact decrease ``L(theta + t d) < L(theta)``
  at a dyadic step (:mod:`tests.exact`); a zero value by exact Farkas multipliers
  ``g_sigma = sum_k mu_k sigma_k grad(phi_k^sigma)``, ``mu >= 0`` (exact solve on the support of a
  simplex vertex). Kinks that cannot reach ``L'`` (unit with an all-zero outgoing column; sample
  whose loss term has zero derivative and no loss kink) are left out of the first-order pieces.
* **Second order.** ``mu`` above are KKT multipliers of ``min L_sigma s.t. sigma_k phi_k^sigma >= 0``
  (the problem of the piece). The classical second-order sufficient condition -- KKT plus
  ``u' H u > 0`` for every nonzero ``u`` of the critical cone, ``H`` the Lagrangian Hessian
  ``hess(L_sigma) - sum_k mu_k sigma_k hess(phi_k^sigma)`` -- proves a strict local minimum of the
  piece without any constraint qualification (Nocedal & Wright, Thm 12.6). It is applied on a
  *slice* transverse to the exact invariances of ``L``: vector fields along whose flows ``L`` is
  constant near theta (rescaling ``(w_j, b_j, a_j) -> (c w_j, c b_j, a_j / c)`` of every hidden unit;
  the coordinates of a ReLU unit whose pre-activations are all < 0; for units whose
  pre-activations all have one strict sign, the bias translations and the GL mixing of units with a
  common slope). If ``T`` are their (linearly independent) values at theta and ``N`` spans
  ``T^perp``, the map ``(s, u) -> Phi^1_{s_1} o ... o Phi^r_{s_r}(theta + N u)`` is a local
  diffeomorphism and keeps the loss, so theta is a local minimum of ``L`` iff ``u = 0`` is one of
  ``u -> L(theta + N u)``. On the slice, per piece: the critical cone is
  ``{u : R_k N u = 0 (mu_k > 0), R_k N u >= 0 (mu_k = 0)}``; the equalities are eliminated exactly
  (``u = V z``), and ``Q = (N V)' H (N V)`` is proved strictly copositive on ``{G z >= 0}``
  (:func:`cone_curvature`: exact LDL' when ``Q`` is positive definite; otherwise, for ``G`` of full
  row rank, ``z = Y w + K v`` with ``w = G z >= 0`` and ``v`` free, ``Q_vv`` positive definite
  and the Schur complement strictly copositive on the orthant, decided by the supports ``J`` of
  the minimiser on the simplex: ``S_JJ w = c 1, 1'w = 1, w >= 0, c <= 0`` has no solution). All
  pieces pass: **local minimum** (exact). Hessians are assembled exactly from the layer structure
  (:meth:`Net.hessian`), and checked against exact polynomial expansions in the tests.
* **Other exact minima.** ``L(theta) == 0`` (every loss is >= 0); outputs that minimise the loss
  over all output vectors (:func:`output_space_minimum`); a locally affine net (no unit kink, every
  unit strictly on one side at every sample) whose affine map is an exact minimiser of the convex
  affine-fit problem (exact subgradient multipliers).
* **Saddles.** A d-stationary point is refuted by an exact local descent curve
  ``theta + t d + t^2/2 e``: :func:`curve_expansion` computes the exact polynomial of the loss
  along it on the piece the curve enters (each pre-activation along the curve is a polynomial
  whose lowest nonzero coefficient fixes its side for all small ``t > 0``); a negative lowest
  coefficient proves that theta is not a local minimum, and an exact decrease is exhibited at a
  dyadic step. Candidates: the directions where a piece's curvature test failed (with ``e``
  holding the touched kinks to second order), escape directions of units with a zero outgoing
  column, and the simple search of :func:`simple_search` (coordinates, pairs, paths, random).

Anything else -- too many kinks, an undecided curvature test, no descent found -- is ``"unsure"``
(excluded from comparisons). So every ``local_min`` / ``not_stationary`` / ``saddle`` of the
oracle is proved in exact arithmetic.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Optional

import numpy as np
from scipy.optimize import linprog

from tests import exact

F = Fraction
ZERO = Fraction(0)
ONE = Fraction(1)

#: largest number of first-order kinks enumerated (2^K pieces)
MAX_KINKS = 10
#: largest number of kinks whose pieces get the exact second-order test
MAX_PIECE_KINKS = 8
#: LP values with ``|value| <= TOL_TIE`` are near ties (proved exactly either way, or unsure)
TOL_TIE = 1e-12
LOSSES = ("square", "hinge", "absolute")


def _q(v) -> Fraction:
    return v if isinstance(v, Fraction) else exact.as_fraction(v)


# =============================================================================================
# Exact linear algebra (lists of Fractions)
# =============================================================================================

def rref(M, ncols):
    """Reduced row echelon form of ``M`` (rows of Fractions): (nonzero rows, pivot columns)."""
    rows = [list(r) for r in M]
    pivots = []
    r = 0
    for col in range(ncols):
        piv = next((i for i in range(r, len(rows)) if rows[i][col] != 0), None)
        if piv is None:
            continue
        rows[r], rows[piv] = rows[piv], rows[r]
        pv = rows[r][col]
        if pv != 1:
            rows[r] = [v / pv for v in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][col] != 0:
                fct = rows[i][col]
                rows[i] = [x - fct * y for x, y in zip(rows[i], rows[r])]
        pivots.append(col)
        r += 1
        if r == len(rows):
            break
    return rows[:r], pivots


def rank(M, ncols) -> int:
    return len(rref(M, ncols)[1]) if M else 0


def nullspace(M, ncols) -> list:
    """Exact basis (list of vectors) of ``{v : M v = 0}``."""
    rows, pivots = rref(M, ncols) if M else ([], [])
    basis = []
    pset = set(pivots)
    for fcol in (c for c in range(ncols) if c not in pset):
        v = [ZERO] * ncols
        v[fcol] = ONE
        for row, pcol in zip(rows, pivots):
            v[pcol] = -row[fcol]
        basis.append(v)
    return basis


def solve(A, b, unique: bool = False):
    """One exact solution of ``A x = b`` (free variables 0), or None if inconsistent.

    With ``unique=True`` also None when the solution is not unique.
    """
    ncols = len(A[0]) if A else 0
    aug = [list(r) + [bi] for r, bi in zip(A, b)]
    rows, pivots = rref(aug, ncols + 1)
    if ncols in pivots:
        return None
    if unique and len(pivots) < ncols:
        return None
    x = [ZERO] * ncols
    for row, pcol in zip(rows, pivots):
        x[pcol] = row[ncols]
    return x


def dot(u, v) -> Fraction:
    return sum((a * b for a, b in zip(u, v) if a and b), ZERO)


def matvec(A, v) -> list:
    return [dot(row, v) for row in A]


def quadratic_form(H, u) -> Fraction:
    return dot(u, matvec(H, u))


def congruence(H, cols) -> list:
    """``C' H C`` for ``C`` with columns ``cols``."""
    HC = [matvec(H, c) for c in cols]
    m = len(cols)
    return [[dot(cols[a], HC[b]) for b in range(m)] for a in range(m)]


def ldl_test(Q):
    """Exact test of positive definiteness by symmetric Gaussian elimination (Sylvester).

    Returns ``(True, None)`` if ``Q`` is positive definite, else ``(False, z)`` with ``z != 0`` and
    ``z' Q z <= 0`` (from the first non-positive pivot: the Schur complement of the leading
    block, which is positive definite).
    """
    m = len(Q)
    A = [list(r) for r in Q]
    for k in range(m):
        if A[k][k] <= 0:
            lead = [r[:k] for r in Q[:k]]
            rhs = [-Q[i][k] for i in range(k)]
            sol = solve(lead, rhs) if k else []
            z = list(sol) + [ONE] + [ZERO] * (m - k - 1)
            assert quadratic_form(Q, z) <= 0
            return False, z
        piv = A[k][k]
        for i in range(k + 1, m):
            if A[i][k]:
                fct = A[i][k] / piv
                for j in range(k, m):
                    if A[k][j]:
                        A[i][j] -= fct * A[k][j]
    return True, None


def copositive_orthant(S):
    """Is ``w' S w > 0`` for every ``w >= 0, w != 0``? Exact; ("yes" | "no" | "unknown", witness).

    The minimiser of ``w' S w`` on the simplex has a support ``J`` on which ``S_JJ w = c 1`` with
    ``c`` the minimum value; conversely any ``w >= 0`` with ``S_JJ w = c 1, 1'w = 1, c <= 0`` gives
    ``w' S w = c <= 0``. So ``S`` is strictly copositive iff no support ``J`` admits such a ``w``.
    Each ``J`` is one exact linear system in ``(w, c)``; a ``J`` whose system has several solutions
    makes the answer ``"unknown"``. The witness is ``w`` (``w' S w <= 0``).
    """
    r = len(S)
    unknown = False
    for size in range(1, r + 1):
        for J in itertools.combinations(range(r), size):
            A = [[S[a][b] for b in J] + [-ONE] for a in J] + [[ONE] * size + [ZERO]]
            rhs = [ZERO] * size + [ONE]
            full = solve(A, rhs)
            if full is None:
                continue
            if rank(A, size + 1) < size + 1:
                unknown = True
                continue
            w, c = full[:size], full[size]
            if c <= 0 and all(v >= 0 for v in w):
                out = [ZERO] * r
                for a, v in zip(J, w):
                    out[a] = v
                return "no", out
    return ("unknown", None) if unknown else ("yes", None)


def extreme_rays(G, m) -> list:
    """Extreme rays of the pointed part of ``{z : G z >= 0}`` (inside the row space of ``G``).

    The cone is ``C_p + ker G`` with ``C_p = {z in row(G) : G z >= 0}`` pointed; a ray of ``C_p``
    is cut out by ``rank G - 1`` independent active rows. Exact enumeration over row subsets.
    """
    rows_, _ = rref(G, m)
    B = rows_                                   # basis of the row space
    d0 = len(B)
    if d0 == 0:
        return []
    A = [[dot(g, b) for b in B] for g in G]     # G z for z = B' c
    rays = []
    seen = set()
    for S in itertools.combinations(range(len(G)), d0 - 1):
        null = nullspace([A[k] for k in S], d0) if S else [[ONE if r == c else ZERO for r in range(d0)]
                                                             for c in range(d0)]
        if len(null) != 1:
            continue
        c = null[0]
        for sgn in (1, -1):
            cc = [sgn * v for v in c]
            vals = [dot(a, cc) for a in A]
            if all(v >= 0 for v in vals) and any(vals):
                big = max(abs(v) for v in cc)
                key = tuple(v / big for v in cc)
                if key not in seen:
                    seen.add(key)
                    rays.append([sum((cc[a] * B[a][u] for a in range(d0)), ZERO) for u in range(m)])
    return rays


def irredundant_rows(G) -> list:
    """Drop rows of ``{z : G z >= 0}`` implied by the others (``g_k`` in the cone of the other
    rows, exact Farkas certificate) and repeated rows; the cone is unchanged."""
    rows = []
    for g in G:
        if any(g) and not any(_positive_multiple(h, g) for h in rows):
            rows.append(list(g))
    k = 0
    while k < len(rows) and len(rows) > 1:
        others = rows[:k] + rows[k + 1:]
        if farkas(rows[k], others) is not None:
            rows = others
        else:
            k += 1
    return rows


def _positive_multiple(h, g) -> bool:
    ratio = None
    for a, b in zip(h, g):
        if (a == 0) != (b == 0):
            return False
        if a:
            q = a / b
            if q <= 0 or (ratio is not None and q != ratio):
                return False
            ratio = q
    return True


def cone_curvature(Q, G):
    """Strict copositivity of ``Q`` on the cone ``{z : G z >= 0}``, exactly.

    Returns ``("pd", None)`` (``z'Qz > 0`` for every nonzero ``z`` of the cone), ``("negative", z)``
    or ``("zero", z)`` (a nonzero ``z`` of the cone with ``z'Qz < 0`` / ``= 0``), or
    ``("unknown", reason)``. ``Q`` positive definite decides at once. Otherwise the cone is
    ``{Y w + K v : w >= 0}`` with ``Y`` the extreme rays of its pointed part (:func:`extreme_rays`)
    and ``K`` a basis of ``ker G``; ``Y w + K v = 0`` with ``w >= 0`` forces ``w = 0, v = 0``, so
    ``Q`` is strictly copositive on the cone iff ``Q_vv = K'QK`` is positive definite and the
    Schur complement ``S = Y'QY - Y'QK Q_vv^-1 K'QY`` is strictly copositive on the orthant
    (:func:`copositive_orthant`).
    """
    m = len(Q)
    if m == 0:
        return "pd", None
    pd, z = ldl_test(Q)
    if pd:
        return "pd", None
    G = [g for g in G if any(g)]
    if all(dot(g, z) >= 0 for g in G) or all(dot(g, z) <= 0 for g in G):
        if not all(dot(g, z) >= 0 for g in G):
            z = [-v for v in z]
        val = quadratic_form(Q, z)
        return ("negative" if val < 0 else "zero"), z
    G = irredundant_rows(G)
    Ycols = extreme_rays(G, m)
    K = nullspace(G, m)
    if K:
        Qvv = congruence(Q, K)
        pd, v = ldl_test(Qvv)
        if not pd:
            zz = [sum((v[a] * K[a][c] for a in range(len(K))), ZERO) for c in range(m)]
            return ("negative" if quadratic_form(Q, zz) < 0 else "zero"), zz
    r = len(Ycols)
    if r == 0:
        return "pd", None
    QY = [matvec(Q, y) for y in Ycols]
    Qww = [[dot(Ycols[a], QY[b]) for b in range(r)] for a in range(r)]
    if K:
        Qvw = [[dot(K[a], QY[b]) for b in range(r)] for a in range(len(K))]       # (mk x r)
        X = []                                                                   # Qvv^-1 Qvw
        for b in range(r):
            X.append(solve(Qvv, [Qvw[a][b] for a in range(len(K))], unique=True))
        S = [[Qww[a][b] - sum((Qvw[c][a] * X[b][c] for c in range(len(K))), ZERO) for b in range(r)]
             for a in range(r)]
    else:
        X, S = None, Qww
    status, w = copositive_orthant(S)
    if status == "yes":
        return "pd", None
    if status == "unknown":
        return "unknown", "copositivity of the Schur complement undecided (singular support system)"
    zz = [sum((w[b] * Ycols[b][c] for b in range(r)), ZERO) for c in range(m)]
    if K:
        v = [-sum((X[b][a] * w[b] for b in range(r)), ZERO) for a in range(len(K))]
        for a in range(len(K)):
            for c in range(m):
                zz[c] += v[a] * K[a][c]
    val = quadratic_form(Q, zz)
    assert val <= 0 and all(dot(g, zz) >= 0 for g in G) and any(zz)
    return ("negative" if val < 0 else "zero"), zz


def _rationalize(values, max_den=10 ** 6) -> list:
    return [Fraction(float(v)).limit_denominator(max_den) for v in values]


def exact_bounded_solution(A, b, lo, hi):
    """Exact ``x`` with ``A x = b`` and ``lo <= x <= hi`` (None bounds are infinite), or None.

    A simplex vertex from HiGHS gives the variables at their bounds; they are fixed there and the
    others solved exactly (free ones 0); the bounds are then checked in Fractions. Never trusts the
    solver: a returned ``x`` is exactly feasible.
    """
    nv = len(lo)
    if nv == 0:
        return [] if not any(b) else None
    Af = np.array([[float(v) for v in r] for r in A]) if A else np.zeros((0, nv))
    bf_ = np.array([float(v) for v in b])
    bounds = [(None if l is None else float(l), None if h is None else float(h)) for l, h in zip(lo, hi)]
    res = linprog(np.zeros(nv), A_eq=Af if A else None, b_eq=bf_ if A else None, bounds=bounds,
                  method="highs-ds")
    if res.status != 0:
        return None
    x = res.x
    scale = max(1.0, float(np.max(np.abs(x))) if x.size else 1.0)
    for tol in (1e-9, 1e-6):
        fixed = {}
        for k in range(nv):
            if lo[k] is not None and abs(x[k] - float(lo[k])) <= tol * scale:
                fixed[k] = lo[k]
            elif hi[k] is not None and abs(x[k] - float(hi[k])) <= tol * scale:
                fixed[k] = hi[k]
        free = [k for k in range(nv) if k not in fixed]
        rhs = [bi - sum((row[k] * v for k, v in fixed.items()), ZERO) for row, bi in zip(A, b)]
        sub = [[row[k] for k in free] for row in A]
        sol = solve(sub, rhs) if free else ([] if not any(rhs) else None)
        if sol is None:
            continue
        out = [ZERO] * nv
        for k, v in fixed.items():
            out[k] = v
        for k, v in zip(free, sol):
            out[k] = v
        if all((lo[k] is None or out[k] >= lo[k]) and (hi[k] is None or out[k] <= hi[k]) for k in range(nv)):
            return out
    xq = _rationalize(x, 10 ** 6)
    if all((lo[k] is None or xq[k] >= lo[k]) and (hi[k] is None or xq[k] <= hi[k]) for k in range(nv)) \
            and all(dot(row, xq) == bi for row, bi in zip(A, b)):
        return xq
    return None


def farkas(g, rows):
    """Exact ``mu >= 0`` with ``g = sum_k mu_k rows_k``, or None."""
    if not any(g):
        return [ZERO] * len(rows)
    if not rows:
        return None
    p = len(g)
    A = [[r[c] for r in rows] for c in range(p)]
    return exact_bounded_solution(A, list(g), [ZERO] * len(rows), [None] * len(rows))


# =============================================================================================
# Polynomials in t (coefficient lists, lowest degree first)
# =============================================================================================

def padd(p, q):
    out = [ZERO] * max(len(p), len(q))
    for k, v in enumerate(p):
        out[k] += v
    for k, v in enumerate(q):
        out[k] += v
    return out


def pmul(p, q):
    out = [ZERO] * (len(p) + len(q) - 1)
    for i, u in enumerate(p):
        if u:
            for j, v in enumerate(q):
                if v:
                    out[i + j] += u * v
    return out


def pscale(p, s):
    return [s * v for v in p]


def eventual_sign(p) -> int:
    """Sign of the polynomial ``p(t)`` for all small ``t > 0`` (0 if identically 0)."""
    for v in p:
        if v:
            return 1 if v > 0 else -1
    return 0


# =============================================================================================
# Instances
# =============================================================================================

def _s_minus(activation) -> Fraction:
    """Slope of ``h`` on ``z < 0``: relu 0, leaky alpha, abs -1."""
    if activation == "relu":
        return ZERO
    if activation == "abs":
        return -ONE
    if isinstance(activation, (tuple, list)) and activation[0] == "leaky_relu":
        alpha = _q(activation[1])
        if not 0 <= alpha < 1:
            raise ValueError(f"leaky_relu needs 0 <= alpha < 1, got {alpha}")
        return alpha
    raise ValueError(f"activation {activation!r} is outside the oracle's scope")


def activation_spec(activation) -> str:
    """certify's activation string: ``"relu"``, ``"leaky_relu:0.25"``, ``"abs"``."""
    if isinstance(activation, (tuple, list)):
        return f"{activation[0]}:{float(activation[1])!r}"
    return activation


def _act_to_json(activation):
    return activation if isinstance(activation, str) else [activation[0], str(_q(activation[1]))]


def _act_from_json(activation):
    return activation if isinstance(activation, str) else (activation[0], F(activation[1]))


@dataclass(frozen=True)
class Instance:
    """A network, its data and loss, all exact.

    Attributes
    ----------
    layers : tuple of (W, b)
        ``W`` a tuple of rows (shape (out, in)), ``b`` a tuple; Fractions.
    X : tuple of rows
        Inputs (n, d_x).
    Y : tuple of rows
        Targets, one row of ``n_out`` entries per sample (``+-1`` for hinge).
    activation : str or tuple
    loss : str
    family : str
        How it was built (metadata; the oracle never reads it).
    seed : int or None
    """

    layers: tuple
    X: tuple
    Y: tuple
    activation: Any
    loss: str
    family: str = ""
    seed: Optional[int] = None

    @property
    def widths(self) -> list:
        return [len(self.X[0])] + [len(W) for W, _ in self.layers]

    @property
    def n(self) -> int:
        return len(self.X)

    @property
    def theta(self) -> list:
        return exact.flatten(self.layers)

    @property
    def y_exact(self) -> list:
        """Targets in :mod:`tests.exact`'s convention (a scalar per sample for one output)."""
        return [r[0] if len(r) == 1 else list(r) for r in self.Y]

    def loss_value(self) -> Fraction:
        return exact.loss(self.layers, self.X, self.y_exact, self.activation, self.loss)

    def loss_at(self, theta) -> Fraction:
        layers = exact.unflatten(theta, exact.shapes_of(self.layers))
        return exact.loss(layers, self.X, self.y_exact, self.activation, self.loss)

    def with_theta(self, theta) -> "Instance":
        layers = exact.unflatten(theta, exact.shapes_of(self.layers))
        return Instance(layers=tuple((tuple(tuple(r) for r in W), tuple(b)) for W, b in layers),
                        X=self.X, Y=self.Y, activation=self.activation, loss=self.loss,
                        family=self.family, seed=self.seed)

    def certify_args(self) -> dict:
        """Arguments of ``certify.check`` (float64 arrays; exact: every number is dyadic)."""
        nums = self.theta + [v for r in self.X for v in r] + [v for r in self.Y for v in r]
        for v in nums:
            if Fraction(float(v)) != v:
                raise ValueError(f"{v} is not exactly representable in float64")
        if len(self.Y[0]) == 1:
            y = np.array([float(r[0]) for r in self.Y], dtype=np.float64)
        else:
            y = np.array([[float(v) for v in r] for r in self.Y], dtype=np.float64)
        return dict(model=exact.to_float_arrays(self.layers), X=exact.X_to_numpy(self.X), y=y,
                    activation=activation_spec(self.activation), loss=self.loss)

    def to_dict(self) -> dict:
        """JSON-friendly exact description (numbers as strings such as ``"-3/2"``)."""
        return {"layers": [[[[str(v) for v in r] for r in W], [str(v) for v in b]] for W, b in self.layers],
                "X": [[str(v) for v in r] for r in self.X], "Y": [[str(v) for v in r] for r in self.Y],
                "activation": _act_to_json(self.activation), "loss": self.loss, "family": self.family,
                "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> "Instance":
        layers = tuple((tuple(tuple(F(v) for v in r) for r in W), tuple(F(v) for v in b))
                       for W, b in d["layers"])
        return cls(layers=layers, X=tuple(tuple(F(v) for v in r) for r in d["X"]),
                   Y=tuple(tuple(F(v) for v in r) for r in d["Y"]),
                   activation=_act_from_json(d["activation"]), loss=d["loss"],
                   family=d.get("family", ""), seed=d.get("seed"))

    @classmethod
    def from_case(cls, case) -> "Instance":
        """From a :class:`tests.reference.cases.Case` (targets as rows)."""
        Y = tuple(tuple(_q(v) for v in y) if isinstance(y, (tuple, list)) else (_q(y),) for y in case.y)
        return cls(layers=case.layers, X=case.X, Y=Y, activation=case.activation, loss=case.loss,
                   family=case.name)

    def source(self) -> str:
        """One line that rebuilds the instance."""
        return f"Instance.from_dict({json.dumps(self.to_dict())})"


# =============================================================================================
# Exact network calculus
# =============================================================================================

class Net:
    """Exact forward values, one-sided derivatives, pieces and Hessians of an instance.

    Layers are indexed ``l = 0 .. nl-1`` here (``W_l`` maps ``x^l`` -- the input of layer ``l``,
    ``x^0 = x`` -- to ``z^l``); hidden layers are ``0 .. nl-2``. A unit kink is ``("u", l, i, j)``,
    a loss kink ``("l", i, o)``.
    """

    def __init__(self, inst: Instance):
        if inst.loss not in LOSSES:
            raise ValueError(f"loss {inst.loss!r} is outside the oracle's scope")
        self.inst = inst
        self.W = [[[_q(v) for v in r] for r in W] for W, _ in inst.layers]
        self.b = [[_q(v) for v in b] for _, b in inst.layers]
        self.nl = len(self.W)
        self.widths = [len(inst.X[0])] + [len(W) for W in self.W]
        self.n = len(inst.X)
        self.n_out = self.widths[-1]
        self.loss = inst.loss
        self.sm = _s_minus(inst.activation)
        self.Y = [[_q(v) for v in r] for r in inst.Y]
        if any(len(r) != self.n_out for r in self.Y):
            raise ValueError("every target row needs one entry per output")
        if self.loss == "hinge" and (self.n_out != 1 or any(r[0] not in (-1, 1) for r in self.Y)):
            raise ValueError("hinge needs one output and labels +-1")
        self.off = []
        k = 0
        for l in range(self.nl):
            self.off.append(k)
            k += self.widths[l + 1] * (self.widths[l] + 1)
        self.p = k
        self.xin = [[[_q(v) for v in r] for r in inst.X]]       # xin[l][i]: input of layer l
        self.z = []
        for l in range(self.nl):
            zl = [[sum((w * v for w, v in zip(self.W[l][j], self.xin[l][i]) if w and v), self.b[l][j])
                   for j in range(self.widths[l + 1])] for i in range(self.n)]
            self.z.append(zl)
            if l < self.nl - 1:
                self.xin.append([[self.h(v) for v in row] for row in zl])
        self.f = self.z[-1]
        self._memo_piece = {}
        self._memo_hess = {}
        self._float = None

    # ---------------------------------------------------------------- layout
    def iW(self, l, r, s) -> int:
        return self.off[l] + r * self.widths[l] + s

    def ib(self, l, r) -> int:
        return self.off[l] + self.widths[l + 1] * self.widths[l] + r

    def unit_in_slots(self, l, j) -> list:
        """Slots of unit j's incoming weights and bias (layer l), aligned with ``(x^l, 1)``."""
        return [self.iW(l, j, s) for s in range(self.widths[l])] + [self.ib(l, j)]

    def unit_out_slots(self, l, j) -> list:
        """Slots of the outgoing column ``W_{l+1}[:, j]`` of hidden unit j of layer l."""
        return [self.iW(l + 1, r, j) for r in range(self.widths[l + 2])]

    def theta(self) -> list:
        out = []
        for l in range(self.nl):
            for row in self.W[l]:
                out.extend(row)
            out.extend(self.b[l])
        return out

    # ---------------------------------------------------------------- scalar pieces
    def h(self, z):
        return z if z >= 0 else self.sm * z

    def h_dir(self, z, t):
        """One-sided derivative ``h'(z; t)``."""
        if z > 0:
            return t
        if z < 0:
            return self.sm * t
        return t if t >= 0 else self.sm * t

    def loss_value(self) -> Fraction:
        total = ZERO
        for i in range(self.n):
            for o in range(self.n_out):
                f, y = self.f[i][o], self.Y[i][o]
                if self.loss == "square":
                    total += (f - y) ** 2 / 2
                elif self.loss == "hinge":
                    total += max(ZERO, 1 - y * f)
                else:
                    total += abs(f - y)
        return total / self.n

    def loss_dir(self, i, df) -> Fraction:
        """One-sided derivative of sample i's loss along the output tangent ``df``."""
        out = ZERO
        for o in range(self.n_out):
            f, y, t = self.f[i][o], self.Y[i][o], df[o]
            if self.loss == "square":
                out += (f - y) * t
            elif self.loss == "hinge":
                m = y * f
                out += ZERO if m > 1 else (-y * t if m < 1 else max(ZERO, -y * t))
            else:
                r = f - y
                out += t if r > 0 else (-t if r < 0 else abs(t))
        return out

    def loss_slope(self, i, o, sign=None) -> Fraction:
        """``dl/df_o`` at sample i; at a loss kink the slope of side ``sign``."""
        f, y = self.f[i][o], self.Y[i][o]
        if self.loss == "square":
            return f - y
        if self.loss == "hinge":
            m = y * f
            if m == 1:
                return -y if sign > 0 else ZERO
            return ZERO if m > 1 else -y
        r = f - y
        if r == 0:
            return ONE if sign > 0 else -ONE
        return ONE if r > 0 else -ONE

    # ---------------------------------------------------------------- one-sided derivatives
    def directional_derivative(self, d) -> Fraction:
        """Exact ``L'(theta; d)`` by one-sided forward mode (no pieces involved)."""
        d = [_q(v) for v in d]
        total = ZERO
        for i in range(self.n):
            dx = [ZERO] * self.widths[0]
            for l in range(self.nl):
                dz = []
                for r in range(self.widths[l + 1]):
                    acc = d[self.ib(l, r)]
                    for s in range(self.widths[l]):
                        acc += d[self.iW(l, r, s)] * self.xin[l][i][s] + self.W[l][r][s] * dx[s]
                    dz.append(acc)
                if l < self.nl - 1:
                    dx = [self.h_dir(self.z[l][i][r], dz[r]) for r in range(len(dz))]
                else:
                    dx = dz
            total += self.loss_dir(i, dx)
        return total / self.n

    def curve_expansion(self, d, e=None) -> list:
        """Exact coefficients of ``L(theta + t d + t^2/2 e) - L(theta)`` for all small ``t > 0``.

        Along the curve every pre-activation is a polynomial in ``t``; for small ``t > 0`` its side
        is the sign of its lowest nonzero coefficient (identically 0: ``h`` gives 0 on both sides),
        and likewise for the hinge / absolute loss terms. So on some interval ``(0, eps)`` the loss
        difference is this one polynomial. The linear coefficient is ``L'(theta; d)``.
        """
        d = [_q(v) for v in d]
        e = [ZERO] * self.p if e is None else [_q(v) for v in e]
        th = self.theta()
        par = [[th[k], d[k], e[k] / 2] for k in range(self.p)]
        total = [ZERO]
        for i in range(self.n):
            a = [[v] for v in self.xin[0][i]]
            for l in range(self.nl):
                zs = []
                for r in range(self.widths[l + 1]):
                    acc = list(par[self.ib(l, r)])
                    for s in range(self.widths[l]):
                        acc = padd(acc, pmul(par[self.iW(l, r, s)], a[s]))
                    zs.append(acc)
                if l < self.nl - 1:
                    a = []
                    for zp in zs:
                        sg = eventual_sign(zp)
                        a.append(zp if sg >= 0 else pscale(zp, self.sm))
                else:
                    a = zs
            for o in range(self.n_out):
                y = self.Y[i][o]
                fo = a[o]
                if self.loss == "square":
                    rr = padd(fo, [-y])
                    li = pscale(pmul(rr, rr), F(1, 2))
                elif self.loss == "hinge":
                    u = padd([ONE], pscale(fo, -y))
                    li = u if eventual_sign(u) > 0 else [ZERO]
                else:
                    rr = padd(fo, [-y])
                    li = pscale(rr, eventual_sign(rr))
                total = padd(total, li)
        total = [v / self.n for v in total]
        total[0] -= self.loss_value()
        assert total[0] == 0, "expansion does not start at L(theta)"
        while len(total) > 1 and total[-1] == 0:
            total.pop()
        return total

    def screen_expansion(self, d, e=None, rel: float = 1e-9) -> bool:
        """Float64 copy of :meth:`curve_expansion` used only to skip hopeless candidates: True when
        the loss change along the curve *may* be eventually negative (the exact test decides)."""
        if self._float is None:
            self._float = ([[[float(v) for v in r] for r in W] for W in self.W],
                           [[float(v) for v in b] for b in self.b],
                           [[float(v) for v in r] for r in self.xin[0]],
                           [[float(v) for v in r] for r in self.Y], [float(v) for v in self.theta()])
        _, _, Xf, Yf, th = self._float
        d = [float(v) for v in d]
        e = [0.0] * self.p if e is None else [float(v) / 2 for v in e]
        sm = float(self.sm)

        def sign(poly, scale):
            for v in poly:
                if abs(v) > rel * scale:
                    return 1 if v > 0 else -1
            return 0

        def add(p_, q_):
            if len(p_) < len(q_):
                p_, q_ = q_, p_
            out = list(p_)
            for k, v in enumerate(q_):
                out[k] += v
            return out

        def mul(p_, q_):
            out = [0.0] * (len(p_) + len(q_) - 1)
            for i, u in enumerate(p_):
                if u:
                    for j, v in enumerate(q_):
                        out[i + j] += u * v
            return out

        total = [0.0]
        scale_total = 0.0
        for i in range(self.n):
            a = [[v] for v in Xf[i]]
            for l in range(self.nl):
                zs = []
                for r in range(self.widths[l + 1]):
                    k = self.ib(l, r)
                    acc = [th[k], d[k], e[k]]
                    for s_ in range(self.widths[l]):
                        k = self.iW(l, r, s_)
                        acc = add(acc, mul([th[k], d[k], e[k]], a[s_]))
                    zs.append(acc)
                if l < self.nl - 1:
                    a = []
                    for zp in zs:
                        sc = max(1.0, max(abs(v) for v in zp))
                        sg = sign(zp, sc)
                        a.append(zp if sg >= 0 else [sm * v for v in zp])
                else:
                    a = zs
            for o in range(self.n_out):
                y = Yf[i][o]
                fo = add(a[o], [-y])
                sc = max(1.0, max(abs(v) for v in fo))
                if self.loss == "square":
                    li = [0.5 * v for v in mul(fo, fo)]
                elif self.loss == "hinge":
                    u = [1.0 - y * a[o][0]] + [-y * v for v in a[o][1:]]
                    li = u if sign(u, sc) > 0 else [0.0]
                else:
                    li = [sign(fo, sc) * v for v in fo]
                total = add(total, li)
                scale_total += max(abs(v) for v in li)
        total[0] = 0.0
        return sign(total, max(scale_total, 1e-300)) <= 0 and any(v < 0 for v in total[1:])

    # ---------------------------------------------------------------- kinks
    def unit_kinks(self) -> list:
        return [("u", l, i, j) for l in range(self.nl - 1) for i in range(self.n)
                for j in range(self.widths[l + 1]) if self.z[l][i][j] == 0]

    def loss_kinks(self) -> list:
        if self.loss == "square":
            return []
        if self.loss == "hinge":
            return [("l", i, 0) for i in range(self.n) if self.Y[i][0] * self.f[i][0] == 1]
        return [("l", i, o) for i in range(self.n) for o in range(self.n_out) if self.f[i][o] == self.Y[i][o]]

    def kinks(self) -> list:
        return self.unit_kinks() + self.loss_kinks()

    def sample_reaches_loss(self, i) -> bool:
        """False if sample i's loss term has derivative 0 in every direction of its output."""
        if any(k[1] == i for k in self.loss_kinks()):
            return True
        return any(self.loss_slope(i, o) != 0 for o in range(self.n_out))

    def first_order_kinks(self) -> list:
        """Kinks that can reach ``L'(theta; .)``: loss kinks, and unit kinks of samples whose loss
        term has a nonzero derivative, in units with a nonzero outgoing column."""
        out = []
        for k in self.unit_kinks():
            _, l, i, j = k
            if not self.sample_reaches_loss(i):
                continue
            if not any(self.W[l + 1][r][j] for r in range(self.widths[l + 2])):
                continue
            out.append(k)
        return out + self.loss_kinks()

    # ---------------------------------------------------------------- slopes and backprop
    def slopes(self, i, signs: dict) -> list:
        """``D[l][j]``: slope of hidden unit j of layer l at sample i (``signs[(l, j)]`` at kinks;
        a kink without a sign gets +, which only happens for kinks that cannot matter)."""
        D = []
        for l in range(self.nl - 1):
            row = []
            for j in range(self.widths[l + 1]):
                z = self.z[l][i][j]
                if z > 0:
                    row.append(ONE)
                elif z < 0:
                    row.append(self.sm)
                else:
                    row.append(ONE if signs.get((l, j), 1) > 0 else self.sm)
            D.append(row)
        return D

    def backprop(self, i, D, top, c) -> list:
        """Gradient in theta of ``c . z^top`` at sample i with the slopes ``D`` fixed."""
        g = [ZERO] * self.p
        delta = list(c)
        for l in range(top, -1, -1):
            xin = self.xin[l][i]
            for r, dr in enumerate(delta):
                if not dr:
                    continue
                for s in range(self.widths[l]):
                    if xin[s]:
                        g[self.iW(l, r, s)] += dr * xin[s]
                g[self.ib(l, r)] += dr
            if l > 0:
                delta = [D[l - 1][s] * sum((delta[r] * self.W[l][r][s] for r in range(len(delta))
                                            if delta[r] and self.W[l][r][s]), ZERO)
                         for s in range(self.widths[l])]
                if not any(delta):
                    break
        return g

    def hessian(self, i, D, top, c) -> dict:
        """Hessian in theta of ``c . z^top`` at sample i with the slopes ``D`` fixed (sparse dict
        ``{(u, v): value}``, both triangles).

        ``z^top`` is affine in each layer's parameters, so only pairs from layers ``a < b`` meet:
        ``d2 / dW_a[j,k] dW_b[r,s] = delta^b_r P^{b,a}_{sj} x^a_k`` (and ``x^a_k -> 1`` for
        ``b_a[j]``), where ``delta^b = d(c . z^top)/dz^b`` and ``P^{b,a} = dx^b/dz^a =
        D_{b-1} W_{b-1} ... W_{a+1} D_a``; derivatives with respect to ``b_b`` vanish.
        """
        H = {}
        deltas = {top: list(c)}
        for b in range(top, 0, -1):
            dl = deltas[b]
            deltas[b - 1] = [D[b - 1][s] * sum((dl[r] * self.W[b][r][s] for r in range(len(dl))
                                                if dl[r] and self.W[b][r][s]), ZERO)
                             for s in range(self.widths[b])]
        for a in range(top):
            P = [[D[a][s] if s == j else ZERO for j in range(self.widths[a + 1])]
                 for s in range(self.widths[a + 1])]
            xa = self.xin[a][i]
            for b in range(a + 1, top + 1):
                db = deltas[b]
                for r in range(self.widths[b + 1]):
                    if not db[r]:
                        continue
                    for s in range(self.widths[b]):
                        ws = self.iW(b, r, s)
                        for j in range(self.widths[a + 1]):
                            coef = db[r] * P[s][j]
                            if not coef:
                                continue
                            for k in range(self.widths[a]):
                                if xa[k]:
                                    _hadd(H, ws, self.iW(a, j, k), coef * xa[k])
                            _hadd(H, ws, self.ib(a, j), coef)
                if b < top:
                    P = [[D[b][r] * sum((self.W[b][r][s] * P[s][j] for s in range(self.widths[b])
                                         if self.W[b][r][s] and P[s][j]), ZERO)
                          for j in range(self.widths[a + 1])] for r in range(self.widths[b + 1])]
        return H

    # ---------------------------------------------------------------- pieces
    def _sample_piece(self, i, kinks_i, signs_i):
        """Memoised: (loss-gradient contribution of sample i, rows of its kinks) for its signs."""
        key = (i, tuple(kinks_i), tuple(signs_i))
        got = self._memo_piece.get(key)
        if got is not None:
            return got
        unit_signs = {(k[1], k[3]): s for k, s in zip(kinks_i, signs_i) if k[0] == "u"}
        loss_signs = {k[2]: s for k, s in zip(kinks_i, signs_i) if k[0] == "l"}
        D = self.slopes(i, unit_signs)
        c = [self.loss_slope(i, o, loss_signs.get(o)) for o in range(self.n_out)]
        g = self.backprop(i, D, self.nl - 1, c) if any(c) else [ZERO] * self.p
        rows = []
        for k, s in zip(kinks_i, signs_i):
            if k[0] == "u":
                _, l, _, j = k
                e = [ONE if jj == j else ZERO for jj in range(self.widths[l + 1])]
                row = self.backprop(i, D, l, e)
            else:
                o = k[2]
                e = [ONE if oo == o else ZERO for oo in range(self.n_out)]
                row = self.backprop(i, D, self.nl - 1, e)
                if self.loss == "hinge":
                    row = [-self.Y[i][0] * v for v in row]
            rows.append([s * v for v in row] if s < 0 else row)
        got = (D, c, g, rows)
        self._memo_piece[key] = got
        return got

    def piece(self, kinks, sigma):
        """``(g_sigma, rows)``: gradient of ``L_sigma`` and the rows ``sigma_k grad(phi_k^sigma)``
        (``row . d >= 0`` on the piece), in the order of ``kinks``."""
        by_sample = {}
        for idx, (k, s) in enumerate(zip(kinks, sigma)):
            by_sample.setdefault(k[2] if k[0] == "u" else k[1], []).append((idx, k, s))
        g = [ZERO] * self.p
        rows = [None] * len(kinks)
        for i in range(self.n):
            items = by_sample.get(i, [])
            _, _, gi, ri = self._sample_piece(i, [k for _, k, _ in items], [s for _, _, s in items])
            for u in range(self.p):
                if gi[u]:
                    g[u] += gi[u]
            for (idx, _, _), row in zip(items, ri):
                rows[idx] = row
        return [v / self.n for v in g], rows

    def _sample_hessians(self, i, kinks_i, signs_i):
        """Memoised sparse Hessians at sample i for its signs: (loss term, [phi_k for its kinks])."""
        key = (i, tuple(kinks_i), tuple(signs_i))
        got = self._memo_hess.get(key)
        if got is not None:
            return got
        D, c, _, _ = self._sample_piece(i, kinks_i, signs_i)
        Hi = dict(self.hessian(i, D, self.nl - 1, c)) if any(c) else {}
        if self.loss == "square":
            for o in range(self.n_out):
                e = [ONE if oo == o else ZERO for oo in range(self.n_out)]
                J = self.backprop(i, D, self.nl - 1, e)
                nz = [u for u in range(self.p) if J[u]]
                for u in nz:
                    for v in nz:
                        Hi[(u, v)] = Hi.get((u, v), ZERO) + J[u] * J[v]
        Hk = []
        for k in kinks_i:
            if k[0] == "u":
                _, l, _, j = k
                Hk.append(self.hessian(i, D, l, [ONE if jj == j else ZERO for jj in range(self.widths[l + 1])]))
            else:
                o = k[2]
                e = [ONE if oo == o else ZERO for oo in range(self.n_out)]
                Hf = self.hessian(i, D, self.nl - 1, e)
                if self.loss == "hinge":
                    Hf = {uv: -self.Y[i][0] * v for uv, v in Hf.items()}
                Hk.append(Hf)
        got = (Hi, Hk)
        self._memo_hess[key] = got
        return got

    def _by_sample(self, kinks, sigma) -> dict:
        by_sample = {}
        for idx, (k, s) in enumerate(zip(kinks, sigma)):
            by_sample.setdefault(k[2] if k[0] == "u" else k[1], []).append((idx, k, s))
        return by_sample

    def lagrangian_hessian(self, kinks, sigma, mu) -> list:
        """Dense ``hess(L_sigma) - sum_k mu_k sigma_k hess(phi_k^sigma)`` (p x p)."""
        by_sample = self._by_sample(kinks, sigma)
        H = [[ZERO] * self.p for _ in range(self.p)]
        for i in range(self.n):
            items = by_sample.get(i, [])
            Hi, Hk = self._sample_hessians(i, [k for _, k, _ in items], [s for _, _, s in items])
            for (u, v), val in Hi.items():
                H[u][v] += val / self.n
            for (idx, _, s), Hphi in zip(items, Hk):
                m = mu[idx]
                if m:
                    for (u, v), val in Hphi.items():
                        H[u][v] -= m * s * val
        return H

    def phi_hessian(self, kinks, sigma, k) -> dict:
        """Sparse Hessian of the switching function ``phi_k^sigma`` (without the sign sigma_k)."""
        kk = kinks[k]
        i = kk[2] if kk[0] == "u" else kk[1]
        items = self._by_sample(kinks, sigma).get(i, [])
        _, Hk = self._sample_hessians(i, [x for _, x, _ in items], [s for _, _, s in items])
        for (idx, _, _), Hphi in zip(items, Hk):
            if idx == k:
                return Hphi
        raise KeyError(k)

    # ---------------------------------------------------------------- invariances
    def invariance_vectors(self) -> list:
        """Values at theta of vector fields along whose flows ``L`` is constant near theta.

        Rescaling of every hidden unit (exact for positively homogeneous ``h``); every coordinate of
        a ReLU unit whose pre-activations are all < 0 (incoming and outgoing weights: ``L`` does
        not depend on them nearby); for units whose pre-activations all have one strict sign with
        slope ``s``: the translation ``b_l[j] += e, b_{l+1} -= s W_{l+1}[:, j] e`` and, for two such
        units ``a != c`` of one layer with the same slope, the GL generator ``W_l[a] += W_l[c]``,
        ``b_l[a] += b_l[c]``, ``W_{l+1}[:, c] -= W_{l+1}[:, a]``.
        """
        vecs = []
        for l in range(self.nl - 1):
            one_sided = {}
            for j in range(self.widths[l + 1]):
                v = [ZERO] * self.p
                for slot in self.unit_in_slots(l, j):
                    v[slot] = self._theta_at(slot)
                for slot in self.unit_out_slots(l, j):
                    v[slot] = -self._theta_at(slot)
                if any(v):
                    vecs.append(v)
                zs = [self.z[l][i][j] for i in range(self.n)]
                if all(z > 0 for z in zs):
                    one_sided.setdefault(ONE, []).append(j)
                elif all(z < 0 for z in zs) and self.sm != 0:
                    one_sided.setdefault(self.sm, []).append(j)
            for s, units in one_sided.items():
                for j in units:
                    v = [ZERO] * self.p
                    v[self.ib(l, j)] = ONE
                    for r in range(self.widths[l + 2]):
                        v[self.ib(l + 1, r)] -= s * self.W[l + 1][r][j]
                    vecs.append(v)
                for a in units:
                    for c in units:
                        if a == c:
                            continue
                        v = [ZERO] * self.p
                        for s_ in range(self.widths[l]):
                            v[self.iW(l, a, s_)] += self.W[l][c][s_]
                        v[self.ib(l, a)] += self.b[l][c]
                        for r in range(self.widths[l + 2]):
                            v[self.iW(l + 1, r, c)] -= self.W[l + 1][r][a]
                        if any(v):
                            vecs.append(v)
        for slot in self.dead_slots(self.strictly_dead()):
            e = [ZERO] * self.p
            e[slot] = ONE
            vecs.append(e)
        return vecs

    def strictly_dead(self) -> set:
        """Hidden units ``(l, j)`` with slope 0 on a neighbourhood: ReLU, ``z < 0`` at every sample."""
        if self.sm != 0:
            return set()
        return {(l, j) for l in range(self.nl - 1) for j in range(self.widths[l + 1])
                if all(self.z[l][i][j] < 0 for i in range(self.n))}

    def dead_slots(self, dead: set) -> list:
        """Parameters ``L`` does not depend on while the units ``dead`` keep slope 0 everywhere.

        A unit is *live* if it is an output or is not dead and feeds (through any weight, zero or
        not, since weights move) a live unit. The incoming weights and bias of a unit that is not
        live, and the outgoing weights of a dead unit or into a unit that is not live, reach the
        loss only through a unit whose output is 0 whatever they are.
        """
        live = {(self.nl - 1, o) for o in range(self.n_out)}
        for l in range(self.nl - 2, -1, -1):
            for j in range(self.widths[l + 1]):
                if (l, j) not in dead and any((l + 1, k) in live for k in range(self.widths[l + 2])):
                    live.add((l, j))
        slots = []
        for l in range(self.nl):
            for j in range(self.widths[l + 1]):
                if (l, j) not in live:
                    slots.extend(self.unit_in_slots(l, j))
                elif l > 0:
                    for s_ in range(self.widths[l]):
                        if (l - 1, s_) in dead:
                            slots.append(self.iW(l, j, s_))
        return slots

    def _theta_at(self, slot) -> Fraction:
        for l in range(self.nl - 1, -1, -1):
            if slot >= self.off[l]:
                k = slot - self.off[l]
                nin, nout = self.widths[l], self.widths[l + 1]
                if k < nout * nin:
                    return self.W[l][k // nin][k % nin]
                return self.b[l][k - nout * nin]
        raise IndexError(slot)

    def slice_basis(self) -> list:
        """Columns ``N`` spanning the orthogonal complement of the invariance vectors."""
        T = self.invariance_vectors()
        if not T:
            return [[ONE if r == c else ZERO for r in range(self.p)] for c in range(self.p)]
        return nullspace(T, self.p)


def _hadd(H, u, v, val):
    H[(u, v)] = H.get((u, v), ZERO) + val
    H[(v, u)] = H.get((v, u), ZERO) + val


# =============================================================================================
# Exact decreases
# =============================================================================================

def exact_decrease(inst: Instance, d, e=None, t0=None, max_halvings: int = 240):
    """Largest ``t = 2^-k t0`` with ``L(theta + t d + t^2/2 e) < L(theta)`` (exact, by
    :func:`tests.exact.loss`): ``(t, decrease)`` or None."""
    base = inst.loss_value()
    theta = inst.theta
    d = [_q(v) for v in d]
    e = None if e is None else [_q(v) for v in e]
    t = F(1, 4) if t0 is None else _q(t0)
    for _ in range(max_halvings):
        if e is None:
            pt = [th + t * dv for th, dv in zip(theta, d)]
        else:
            pt = [th + t * dv + t * t / 2 * ev for th, dv, ev in zip(theta, d, e)]
        diff = base - inst.loss_at(pt)
        if diff > 0:
            return t, diff
        t /= 2
    return None


def prove_curve(net: Net, d, e=None):
    """If the exact expansion along ``theta + t d + t^2/2 e`` is eventually negative: a proof.

    Returns ``(coefficients, t, decrease)`` -- the exact polynomial of the loss change on the piece
    entered and an exact decrease at a dyadic step -- or None.
    """
    coeffs = net.curve_expansion(d, e)
    if eventual_sign(coeffs) >= 0:
        return None
    order = next(k for k, v in enumerate(coeffs) if v)
    lead = -coeffs[order]
    # start near where the leading term dominates (cheap); halving does the rest
    rest = sum((abs(v) for v in coeffs[order + 1:]), ZERO)
    t0 = F(1, 4)
    if rest:
        while t0 * rest > lead / 2 and t0 > F(1, 2 ** 200):
            t0 /= 2
    dec = exact_decrease(net.inst, d, e, t0=t0)
    if dec is None:
        raise AssertionError("eventually decreasing curve without an exact decrease: oracle bug")
    return coeffs, dec[0], dec[1]


# =============================================================================================
# First order
# =============================================================================================

@dataclass
class FirstOrder:
    """d-stationarity decided by enumeration: ``stationary`` True / False / None (undecided).

    ``multipliers[sigma]`` are exact Farkas multipliers per piece (``kinks`` order); for a descent:
    ``direction`` (exact), ``slope = L'(theta; d) < 0``, ``step`` and ``decrease`` (exact).
    """

    stationary: Optional[bool]
    reason: str
    kinks: list = field(default_factory=list)
    multipliers: dict = field(default_factory=dict)
    direction: Optional[list] = None
    slope: Optional[Fraction] = None
    step: Optional[Fraction] = None
    decrease: Optional[Fraction] = None
    piece: Optional[tuple] = None
    n_lps: int = 0


def _lp_min(g, rows):
    p = len(g)
    kw = {}
    if rows:
        kw = dict(A_ub=-np.array([[float(v) for v in r] for r in rows]), b_ub=np.zeros(len(rows)))
    res = linprog(np.array([float(v) for v in g]), bounds=[(-1.0, 1.0)] * p, method="highs", **kw)
    if res.status != 0:
        return None
    return float(res.fun), np.asarray(res.x)


def descent_proof(net: Net, d_float):
    """Rationalise an LP direction; exact ``L'(theta; d) < 0`` gives ``(d, slope)``."""
    for max_den in (16, 1024, None):
        d = [Fraction(float(v)) for v in d_float] if max_den is None else _rationalize(d_float, max_den)
        slope = net.directional_derivative(d)
        if slope < 0:
            return d, slope
    return None


def piece_by_algebra(g, rows):
    """Decide one piece exactly when its rows are linearly independent (no LP).

    Then the multipliers of ``g = sum_k mu_k rows_k`` are unique if they exist: all ``>= 0`` is
    the Farkas certificate; ``mu_k < 0`` gives the exact descent ``d`` with ``rows d = e_k``
    (``g . d = mu_k < 0``, ``d`` in the piece's cone); ``g`` outside the row space gives ``d`` in
    the rows' null space with ``g . d < 0``. Returns ``("stationary", mu)``, ``("descent", d)`` or
    None (dependent rows).
    """
    p = len(g)
    K = len(rows)
    if K and (K > p or np.linalg.matrix_rank(np.array([[float(v) for v in r] for r in rows])) < K
              or rank(rows, p) < K):
        return None             # (the float rank only skips the exact one when it is clearly short)
    A = [[r[c] for r in rows] for c in range(p)]
    mu = solve(A, list(g)) if K else (None if any(g) else [])
    if mu is not None:
        neg = [k for k in range(K) if mu[k] < 0]
        if not neg:
            return "stationary", mu
        k = min(neg, key=lambda kk: mu[kk])
        d = solve(rows, [ONE if kk == k else ZERO for kk in range(K)])
        assert dot(g, d) == mu[k]
        return "descent", d
    for n_ in nullspace(rows, p) if K else [[ONE if r == c else ZERO for r in range(p)] for c in range(p)]:
        v = dot(g, n_)
        if v:
            return "descent", [(-x if v > 0 else x) for x in n_]
    raise AssertionError("g outside the row space but orthogonal to the null space")


def one_level_terms(net: Net, kinks):
    """``L'(theta; d) = g . d + sum_k c_k max(a_k . d, 0)`` when every kink is a first-layer unit
    kink at a sample without a loss kink, or a loss kink at a sample without unit kinks (then the
    kinks do not interact): returns ``(g, [(c_k, a_k)])`` exactly, or None.

    A first-layer kink's tangent is ``s_- (a . d) + (1 - s_-) max(a . d, 0)`` and enters its
    sample's (linear) loss tangent with the coefficient ``c = (1 - s_-) dL/dz`` (``a`` the row of
    the ``+`` side minus the ``-`` side); a hinge / absolute loss kink is ``max(0, -y df)`` /
    ``|df| = 2 max(df, 0) - df`` of the sample's linear output tangent.
    """
    unit_samples = {k[2] for k in kinks if k[0] == "u"}
    loss_samples = {k[1] for k in kinks if k[0] == "l"}
    if any(k[0] == "u" and k[1] != 0 for k in kinks) or unit_samples & loss_samples:
        return None
    minus = tuple(-1 for _ in kinks)
    g, rows = net.piece(kinks, minus)
    terms = []
    for idx, k in enumerate(kinks):
        one = list(minus)
        one[idx] = 1
        g1, _ = net.piece(kinks, tuple(one))
        a = [-v for v in rows[idx]]                     # grad(phi_k)
        # g1 - g is c_k * a (the + side adds c_k max(a.d, 0) with slope c_k on a.d > 0)
        diff = [x - y for x, y in zip(g1, g)]
        piv = next((u for u in range(net.p) if a[u]), None)
        if piv is None:
            if any(diff):
                return None
            continue
        c = diff[piv] / a[piv]
        if any(dv != c * av for dv, av in zip(diff, a)):
            return None
        terms.append((c, a))
    return g, terms


def _first_order_one_level(net: Net, kinks, decrease: bool) -> Optional[FirstOrder]:
    """Many non-interacting convex kinks: d-stationary iff ``0 in g + sum_k c_k [0, 1] a_k``
    (exact multipliers ``lambda_k in [0, 1]``); otherwise the LP over the box gives a direction
    whose ``L'(theta; d) < 0`` is proved exactly. None when the structure does not apply."""
    got = one_level_terms(net, kinks)
    if got is None:
        return None
    g, terms = got
    if any(c < 0 for c, _ in terms):
        return None
    K = len(terms)
    A = [[c * a[u] for c, a in terms] for u in range(net.p)]
    lam = exact_bounded_solution(A, [-v for v in g], [ZERO] * K, [ONE] * K) if K else \
        ([] if not any(g) else None)
    if lam is not None:
        return FirstOrder(True, f"one level of {len(kinks)} convex kinks: 0 in g + sum c_k [0, 1] a_k (exact "
                          "multipliers)", kinks=kinks, multipliers={}, n_lps=1)
    # min g.d + sum c_k t_k, t_k >= a_k . d, t_k >= 0, |d| <= 1
    import numpy as np
    p = net.p
    cost = np.array([float(v) for v in g] + [float(c) for c, _ in terms])
    A_ub = np.zeros((K, p + K))
    for k, (c, a) in enumerate(terms):
        A_ub[k, :p] = [float(v) for v in a]
        A_ub[k, p + k] = -1.0
    res = linprog(cost, A_ub=A_ub if K else None, b_ub=np.zeros(K) if K else None,
                  bounds=[(-1, 1)] * p + [(0, None)] * K, method="highs")
    if res.status != 0:
        return None
    proof = descent_proof(net, res.x[:p])
    if proof is None:
        return None
    d, slope = proof
    step = dec = None
    if decrease:
        got = exact_decrease(net.inst, d)
        if got is None:
            raise AssertionError("L' < 0 without an exact decrease: oracle bug")
        step, dec = got
    return FirstOrder(False, f"one level of {len(kinks)} convex kinks: exact L'(theta; d) = {slope} < 0",
                      kinks=kinks, direction=d, slope=slope, step=step, decrease=dec, n_lps=2)


def first_order(net: Net, max_kinks: int = MAX_KINKS, decrease: bool = True) -> FirstOrder:
    """Decide d-stationarity by enumerating the pieces of the first-order kinks (see the module
    docstring); above 8 non-interacting convex kinks by one exact zonotope certificate instead
    (:func:`_first_order_one_level`; no per-piece multipliers then). ``decrease=False`` skips the
    exact step search of a descent (it always exists)."""
    kinks = net.first_order_kinks()
    K = len(kinks)
    if K > MAX_PIECE_KINKS:
        fast = _first_order_one_level(net, kinks, decrease)
        if fast is not None:
            return fast
    if K > max_kinks:
        return FirstOrder(None, f"{K} first-order kinks > {max_kinks}", kinks=kinks)
    mults = {}
    unsure = None
    n_lps = 0
    for sigma in itertools.product((1, -1), repeat=K):
        g, rows = net.piece(kinks, sigma)
        if not any(g):
            mults[sigma] = [ZERO] * K
            continue
        alg = piece_by_algebra(g, rows)
        if alg is not None:
            if alg[0] == "stationary":
                mults[sigma] = alg[1]
                continue
            d = alg[1]
            slope = net.directional_derivative(d)
            if slope != dot(g, d):
                raise AssertionError("L'(theta; d) differs from g_sigma . d inside the piece: oracle bug")
            step = dec = None
            if decrease:
                got = exact_decrease(net.inst, d)
                if got is None:
                    raise AssertionError("L' < 0 without an exact decrease: oracle bug")
                step, dec = got
            return FirstOrder(False, f"piece {sigma}: exact L'(theta; d) = {slope} < 0", kinks=kinks,
                              direction=d, slope=slope, step=step, decrease=dec, piece=sigma, n_lps=n_lps)
        n_lps += 1
        mu = farkas(g, rows)                # one LP decides most stationary pieces
        if mu is not None:
            mults[sigma] = mu
            continue
        n_lps += 1
        sol = _lp_min(g, rows)
        if sol is None:
            unsure = f"piece {sigma}: LP failed"
            continue
        value, x = sol
        if value < -TOL_TIE or value < 0:
            proof = descent_proof(net, x)
            if proof is not None:
                d, slope = proof
                step = dec = None
                if decrease:
                    got = exact_decrease(net.inst, d)
                    if got is None:
                        raise AssertionError("L' < 0 without an exact decrease: oracle bug")
                    step, dec = got
                return FirstOrder(False, f"piece {sigma}: exact L'(theta; d) = {slope} < 0", kinks=kinks,
                                  direction=d, slope=slope, step=step, decrease=dec, piece=sigma, n_lps=n_lps)
            if value < -TOL_TIE:
                unsure = f"piece {sigma}: LP value {value:.3g} but no exact descent"
                continue
        unsure = f"piece {sigma}: LP value {value:.3g}, no exact Farkas certificate"
    if unsure is not None:
        return FirstOrder(None, unsure, kinks=kinks, n_lps=n_lps)
    return FirstOrder(True, f"d-stationary on all {2 ** K} pieces (exact Farkas certificates)", kinks=kinks,
                      multipliers=mults, n_lps=n_lps)


# =============================================================================================
# Exact minima without second order
# =============================================================================================

def output_space_minimum(net: Net) -> bool:
    """True if the outputs minimise the loss over *all* output vectors (a global minimum).

    Samples with equal inputs get equal outputs from any network; the loss is separable over
    output coordinates and convex, so ``f(theta)`` is a global minimiser iff, for every group of
    equal inputs and every output coordinate, both one-sided slopes of the group's loss are >= 0.
    """
    groups = {}
    for i, x in enumerate(net.xin[0]):
        groups.setdefault(tuple(x), []).append(i)
    for members in groups.values():
        for o in range(net.n_out):
            for t in (ONE, -ONE):
                df = [ZERO] * net.n_out
                df[o] = t
                if sum((net.loss_dir(i, df) for i in members), ZERO) < 0:
                    return False
    return True


def affine_fit_minimum(net: Net) -> Optional[str]:
    """A reason string if theta is proved a local minimum by the affine-fit argument, else None.

    Requires every *live* hidden unit (:meth:`Net.dead_slots`; dead ReLU units output 0 nearby and
    units feeding only them do not reach the loss) to be strictly on one side at every sample. Then
    every live unit keeps one slope at every sample near theta, so the net maps ``x`` affinely,
    ``f = M x + m`` (with ``M = 0`` when no first-layer unit is live), and
    ``L(theta') >= min_{M, m} (1/n) sum l(M x_i + m, y_i)`` near theta. If theta's own map attains
    that convex minimum -- exact subgradients ``rho_io in dl/df_o`` with
    ``sum_i rho_io (x_i, 1) = 0`` (``sum_i rho_io = 0`` when ``M = 0``) for every output -- theta
    is a local minimum.
    """
    dead = net.strictly_dead()
    flat = set(net.dead_slots(dead))
    live = [(l, j) for l in range(net.nl - 1) for j in range(net.widths[l + 1])
            if (l, j) not in dead and not all(s in flat for s in net.unit_in_slots(l, j))]
    for l, j in live:
        zs = [net.z[l][i][j] for i in range(net.n)]
        if not (all(z > 0 for z in zs) or all(z < 0 for z in zs)):
            return None
    constant = not any(l == 0 for l, _ in live)
    lk = set((k[1], k[2]) for k in net.loss_kinks())
    xbar = [[ONE] if constant else list(r) + [ONE] for r in net.xin[0]]
    for o in range(net.n_out):
        free = [i for i in range(net.n) if (i, o) in lk]
        fixed = {i: net.loss_slope(i, o) for i in range(net.n) if (i, o) not in lk}
        A = [[xbar[i][c] for i in free] for c in range(len(xbar[0]))]
        b = [-sum((fixed[i] * xbar[i][c] for i in fixed), ZERO) for c in range(len(xbar[0]))]
        if net.loss == "hinge":
            lo = [min(ZERO, -net.Y[i][0]) for i in free]
            hi = [max(ZERO, -net.Y[i][0]) for i in free]
        else:
            lo, hi = [-ONE] * len(free), [ONE] * len(free)
        if free:
            if exact_bounded_solution(A, b, lo, hi) is None:
                return None
        elif any(b):
            return None
    what = "constant in x" if constant else "affine in x"
    return (f"the net is locally {what} (live units keep one slope at every sample) at an exact "
            "minimiser of the convex fitting problem over such maps (exact subgradient multipliers)")


# =============================================================================================
# Second order
# =============================================================================================

@dataclass
class SecondOrder:
    """Per-piece second-order sufficiency: ``proved`` True when every piece passes.

    ``failures``: (sigma, status, direction d, Lagrangian Hessian value d'Hd) of the pieces that
    did not pass; ``status`` "negative" / "zero" / "unknown".
    """

    proved: bool
    reason: str
    failures: list = field(default_factory=list)
    n_pieces: int = 0
    slice_dim: int = 0


def piece_invariances(net: Net, kinks, sigma, mu):
    """Flows that keep the *relaxed* problem of piece sigma invariant: ``(vectors, dropped kinks)``.

    On a piece the slopes are fixed, so ``L_sigma`` has more invariances than ``L``; each one moves
    the switching functions of some kinks, which are then dropped from the piece's problem -- only
    allowed when their multipliers are 0 (a larger region with the same KKT point: a minimum of the
    relaxed problem is one of the piece's). With the kept constraints invariant too, the slice
    argument of the module docstring applies to the relaxed problem. The flows:

    * hidden units with slope 0 at every sample on this piece (ReLU): the parameters that reach the
      loss only through them (:meth:`Net.dead_slots`; drops the kinks of the units that are then
      no longer live);
    * a first-layer unit with slope 0 at some samples: moving ``(w_j, b_j)`` orthogonally to the
      ``(x_i, 1)`` of the samples where its slope is nonzero (drops its kinks at the others);
    * units with one common slope ``s`` at every sample on this piece: the bias translation of each
      (drops its kinks) and the GL generators ``E_ac`` (drops the kinks of unit ``a``).
    """
    n = net.n
    by_sample = net._by_sample(kinks, sigma)
    Ds = []
    for i in range(n):
        items = by_sample.get(i, [])
        Ds.append(net._sample_piece(i, [k for _, k, _ in items], [sg for _, _, sg in items])[0])
    of_unit, at = {}, {}
    for idx, k in enumerate(kinks):
        if k[0] == "u":
            of_unit.setdefault((k[1], k[3]), []).append(idx)
            at[(k[1], k[3], k[2])] = idx
    vecs, dropped = [], set()

    def free(req):
        return all(mu[k] == 0 for k in req)

    dead = {(l, j) for l in range(net.nl - 1) for j in range(net.widths[l + 1])
            if all(Ds[i][l][j] == 0 for i in range(n))}
    strict = net.strictly_dead()
    if dead - strict:
        # units dead on this piece: the loss and the kept constraints ignore the parameters that
        # reach the loss only through them; the kinks of units that are no longer live are dropped
        slots = set(net.dead_slots(dead))
        req = [idx for idx, k in enumerate(kinks) if k[0] == "u" and
               any(slot in slots for slot in net.unit_in_slots(k[1], k[3]))]
        if free(req):
            for slot in sorted(slots - set(net.dead_slots(strict))):
                e = [ZERO] * net.p
                e[slot] = ONE
                vecs.append(e)
            dropped.update(req)
    for l in range(net.nl - 1):
        groups = {}
        for j in range(net.widths[l + 1]):
            sl = [Ds[i][l][j] for i in range(n)]
            if all(v == 0 for v in sl):
                continue
            if l == 0 and any(v == 0 for v in sl):
                req = [at[(0, j, i)] for i in range(n) if sl[i] == 0 and (0, j, i) in at]
                if req and free(req):
                    active = [list(net.xin[0][i]) + [ONE] for i in range(n) if sl[i] != 0]
                    for v in nullspace(active, net.widths[0] + 1):
                        e = [ZERO] * net.p
                        for slot, vk in zip(net.unit_in_slots(0, j), v):
                            e[slot] = vk
                        vecs.append(e)
                    dropped.update(req)
            if len(set(sl)) == 1:
                groups.setdefault(sl[0], []).append(j)
        for sl, units in groups.items():
            for j in units:
                req = of_unit.get((l, j), [])
                if req and free(req):
                    v = [ZERO] * net.p
                    v[net.ib(l, j)] = ONE
                    for r in range(net.widths[l + 2]):
                        v[net.ib(l + 1, r)] -= sl * net.W[l + 1][r][j]
                    vecs.append(v)
                    dropped.update(req)
            for a in units:
                req = of_unit.get((l, a), [])
                if not free(req):
                    continue
                for c in units:
                    if a == c or not (req or of_unit.get((l, c))):
                        continue            # both kink-free: a global invariance already
                    v = [ZERO] * net.p
                    for s_ in range(net.widths[l]):
                        v[net.iW(l, a, s_)] += net.W[l][c][s_]
                    v[net.ib(l, a)] += net.b[l][c]
                    for r in range(net.widths[l + 2]):
                        v[net.iW(l + 1, r, c)] -= net.W[l + 1][r][a]
                    if any(v):
                        vecs.append(v)
                        dropped.update(req)
    return vecs, dropped


def _piece_curvature(net: Net, kinks, sigma, mu, rows, N, dropped=()):
    """Exact curvature test of one piece on the slice spanned by ``N`` (constraints ``dropped``
    removed): ``(status, d, d'Hd)`` with status "pd" / "negative" / "zero" / "unknown"."""
    K = len(kinks)
    keep = [k for k in range(K) if k not in dropped]
    RN = {k: [dot(rows[k], col) for col in N] for k in keep}
    eq = [RN[k] for k in keep if mu[k] > 0]
    V = nullspace(eq, len(N)) if eq else [[ONE if r == c else ZERO for r in range(len(N))]
                                            for c in range(len(N))]
    if not V:
        return "pd", None, None
    M = [[sum((v[a] * N[a][u] for a in range(len(N)) if v[a]), ZERO) for u in range(net.p)] for v in V]
    G = [[dot(rows[k], m) for m in M] for k in keep if mu[k] == 0]
    G = [gr for gr in G if any(gr)]
    H = net.lagrangian_hessian(kinks, sigma, mu)
    Q = congruence(H, M)
    status, z = cone_curvature(Q, G)
    if status in ("pd", "unknown"):
        return status, None, None
    d = [sum((z[a] * M[a][u] for a in range(len(M)) if z[a]), ZERO) for u in range(net.p)]
    return status, d, quadratic_form(H, d)


def second_order(net: Net, fo: FirstOrder, max_kinks: int = MAX_PIECE_KINKS, stop_at_first: bool = False
                 ) -> SecondOrder:
    """Exact second-order sufficiency on every piece of all kinks, on the invariance slice (and,
    where that is not decisive, on the slice of the piece's relaxed problem)."""
    kinks = net.kinks()
    K = len(kinks)
    if K > max_kinks:
        return SecondOrder(False, f"{K} kinks > {max_kinks} for the piece test")
    T = net.invariance_vectors()
    N = nullspace(T, net.p) if T else [[ONE if r == c else ZERO for r in range(net.p)] for c in range(net.p)]
    pos = {k: idx for idx, k in enumerate(fo.kinks)}
    failures = []
    n_relaxed = 0
    for sigma in itertools.product((1, -1), repeat=K):
        sub = tuple(sigma[kinks.index(k)] for k in fo.kinks)
        mu_fo = fo.multipliers.get(sub)
        if mu_fo is None:
            return SecondOrder(False, f"no first-order multipliers for piece {sub}")
        mu = [mu_fo[pos[k]] if k in pos else ZERO for k in kinks]
        g, rows = net.piece(kinks, sigma)
        if any(sum((m * r[u] for m, r in zip(mu, rows)), ZERO) != g[u] for u in range(net.p)):
            raise AssertionError("first-order multipliers do not close the piece's KKT equation")
        status, d, val = _piece_curvature(net, kinks, sigma, mu, rows, N)
        if status in ("zero", "unknown"):
            extra, dropped = piece_invariances(net, kinks, sigma, mu)
            if extra:
                N2 = nullspace(T + extra, net.p)
                st2, d2, val2 = _piece_curvature(net, kinks, sigma, mu, rows, N2, dropped)
                if st2 == "pd":
                    n_relaxed += 1
                    continue
                if st2 == "negative":
                    status, d, val = st2, d2, val2
        if status == "pd":
            continue
        failures.append((sigma, status, d, val, mu))
        if stop_at_first:
            break
    if failures:
        kinds = sorted(set(f[1] for f in failures))
        return SecondOrder(False, f"{len(failures)} of {2 ** K} pieces fail the exact curvature test "
                           f"({', '.join(kinds)})", failures=failures, n_pieces=2 ** K, slice_dim=len(N))
    extra = f"; {n_relaxed} on the relaxed problem's slice (piece invariances)" if n_relaxed else ""
    return SecondOrder(True, f"second-order sufficiency on all {2 ** K} pieces of {K} kinks (exact KKT, "
                       f"Lagrangian curvature > 0 on every critical cone, slice of dimension {len(N)}{extra})",
                       n_pieces=2 ** K, slice_dim=len(N))


def holding_curvatures(net: Net, kinks, sigma, d, which):
    """``e`` with ``grad(phi_k) . e = -d' hess(phi_k) d`` for the kinks ``which`` (exact, or None),
    so that the curve ``theta + t d + t^2/2 e`` keeps those kinks at 0 up to second order."""
    _, rows = net.piece(kinks, sigma)
    A, b = [], []
    for k in which:
        s = sigma[k]
        row = [s * v for v in rows[k]]          # grad(phi_k^sigma)
        Hphi = net.phi_hessian(kinks, sigma, k)
        quad = sum((d[u] * val * d[v] for (u, v), val in Hphi.items() if d[u] and d[v]), ZERO)
        A.append(row)
        b.append(-quad)
    if not A:
        return [ZERO] * net.p
    return solve(A, b)


# =============================================================================================
# Descent search (saddles)
# =============================================================================================

def _escape_directions(net: Net) -> list:
    """Lines that turn on a hidden unit with an all-zero outgoing column (second-order escapes)."""
    out = []
    for l in range(net.nl - 1):
        for j in range(net.widths[l + 1]):
            outs = net.unit_out_slots(l, j)
            if any(net._theta_at(s) for s in outs):
                continue
            ins = net.unit_in_slots(l, j)
            for r in range(len(outs)):
                for sgn in (1, -1):
                    for v in itertools.product((-1, 0, 1), repeat=len(ins)):
                        if not any(v):
                            continue
                        d = [ZERO] * net.p
                        d[outs[r]] = F(sgn)
                        for slot, vk in zip(ins, v):
                            d[slot] = F(vk)
                        out.append(d)
    return out


def _path_directions(net: Net, rng: random.Random, n_paths: int = 40) -> list:
    """Chains of weights along a path input -> unit -> unit -> output, each +-1 (cubic-order
    escapes such as a deep linear net at 0)."""
    out = []
    for _ in range(n_paths):
        d = [ZERO] * net.p
        s = rng.randrange(net.widths[0] + 1)            # input index or the bias
        for l in range(net.nl):
            r = rng.randrange(net.widths[l + 1])
            slot = net.ib(l, r) if (l == 0 and s == net.widths[0]) or (l > 0 and rng.random() < 0.2) \
                else net.iW(l, r, min(s, net.widths[l] - 1))
            d[slot] = F(rng.choice((-1, 1)))
            s = r
        out.append(d)
    return out


def simple_search(net: Net, extra=(), rng: Optional[random.Random] = None, n_random: int = 120,
                  pairs: bool = True, curves: bool = True, screen: bool = True):
    """Exact search for a local descent: returns ``(d, e, coeffs, t, decrease, what)`` or None.

    Candidates in order: ``extra`` (directions or ``(d, e)`` pairs), single coordinates ``+-e_k``,
    escape lines of zero-output units, pairs ``+-e_a +- e_b``, paths of weights through the layers,
    sparse and dense random directions; with ``curves``, each line's ``d`` is also tried with ``e``
    holding the kinks it touches to second order. Every hit is proved by :func:`prove_curve`;
    with ``screen`` a float64 copy of the expansion (:meth:`Net.screen_expansion`) first skips
    candidates whose loss change is clearly not eventually negative (speed only: a skipped
    candidate is never counted either way).
    """
    rng = rng or random.Random(0)
    tried = set()

    def attempt(d, e, what):
        key = (tuple(d), None if e is None else tuple(e))
        if key in tried or not any(d):
            return None
        tried.add(key)
        if screen and not net.screen_expansion(d, e):
            return None
        got = prove_curve(net, d, e)
        if got is not None:
            return d, e, got[0], got[1], got[2], what
        return None

    for item in extra:
        d, e = item if isinstance(item, tuple) else (item, None)
        for dd, ee in ((d, e), ([-v for v in d], e)):
            got = attempt(list(dd), ee, "candidate")
            if got:
                return got
    for k in range(net.p):
        for sgn in (1, -1):
            d = [ZERO] * net.p
            d[k] = F(sgn)
            got = attempt(d, None, "coordinate")
            if got:
                return got
    for d in _escape_directions(net):
        got = attempt(d, None, "escape line")
        if got:
            return got
    if pairs:
        for a in range(net.p):
            for b in range(a + 1, net.p):
                for sa in (1, -1):
                    for sb in (1, -1):
                        d = [ZERO] * net.p
                        d[a], d[b] = F(sa), F(sb)
                        got = attempt(d, None, "pair")
                        if got:
                            return got
    for d in _path_directions(net, rng):
        got = attempt(d, None, "path")
        if got:
            return got
    for _ in range(n_random):
        if rng.random() < 0.5:
            d = [ZERO] * net.p
            for k in rng.sample(range(net.p), min(net.p, rng.choice((2, 3, 4)))):
                d[k] = F(rng.choice((-2, -1, 1, 2)), 2)
        else:
            d = [F(rng.randint(-4, 4), 4) for _ in range(net.p)]
        got = attempt(d, None, "random")
        if got:
            return got
        if curves:
            e = [F(rng.randint(-4, 4), 4) for _ in range(net.p)]
            got = attempt(d, e, "random curve")
            if got:
                return got
    return None


def saddle_candidates(net: Net, so: SecondOrder) -> list:
    """``(d, e)`` from the pieces whose curvature test failed: ``e = 0`` and ``e`` holding the kinks
    the direction leaves at 0 (all of them, then those with a positive multiplier)."""
    kinks = net.kinks()
    out = []
    for sigma, status, d, _, mu in so.failures:
        if d is None:
            continue
        out.append((d, None))
        _, rows = net.piece(kinks, sigma)
        touched = [k for k in range(len(kinks)) if dot(rows[k], d) == 0]
        for which in (touched, [k for k in touched if mu[k] > 0]):
            e = holding_curvatures(net, kinks, sigma, d, which)
            if e is not None and any(e):
                out.append((d, e))
    return out


# =============================================================================================
# The oracle
# =============================================================================================

@dataclass
class OracleResult:
    """What the oracle decided, with its exact evidence.

    ``verdict``: ``"local_min"``, ``"not_stationary"``, ``"saddle"`` (d-stationary, exact local
    descent curve) or ``"unsure"``. ``how``: which argument decided (``"pieces"``,
    ``"zero_loss"``, ``"output_space"``, ``"affine_fit"``, ``"first_order"``, ``"curve"``).
    ``d_stationary`` True / False when proved. For a refutation: ``direction``, ``curve`` (``e`` or
    None), ``slope`` (exact ``L'(theta; d)`` of a first-order descent), ``step``, ``decrease`` (exact, ``L(theta) - L(theta') > 0``) and ``expansion`` (exact
    coefficients of the loss change along the curve on the piece it enters).
    """

    verdict: str
    reason: str
    how: str = ""
    d_stationary: Optional[bool] = None
    n_kinks: int = 0
    n_first_order_kinks: int = 0
    nested: bool = False
    direction: Optional[list] = None
    curve: Optional[list] = None
    slope: Optional[Fraction] = None
    step: Optional[Fraction] = None
    decrease: Optional[Fraction] = None
    expansion: Optional[list] = None
    stats: dict = field(default_factory=dict)


def is_nested(net: Net) -> bool:
    """Some sample sits on kinks of two different layers (or a unit kink and a loss kink)."""
    per_sample = {}
    for k in net.kinks():
        i = k[2] if k[0] == "u" else k[1]
        per_sample.setdefault(i, set()).add(k[1] if k[0] == "u" else "loss")
    return any(len(v) >= 2 for v in per_sample.values())


def oracle(inst: Instance, *, search: bool = True, rng_seed: int = 0) -> OracleResult:
    """Decide local minimality of ``inst`` exactly (see the module docstring)."""
    net = Net(inst)
    kinks = net.kinks()
    base = dict(n_kinks=len(kinks), nested=is_nested(net))
    fo = first_order(net)
    base["n_first_order_kinks"] = len(fo.kinks)
    zero = net.loss_value() == 0
    outspace = output_space_minimum(net)
    if fo.stationary is False:
        if zero or outspace:
            raise AssertionError("descent at a global minimum: oracle bug")
        return OracleResult("not_stationary", fo.reason, "first_order", False, direction=fo.direction,
                            slope=fo.slope, step=fo.step, decrease=fo.decrease, expansion=None,
                            stats={"lps": fo.n_lps}, **base)
    if zero:
        return OracleResult("local_min", "the loss is exactly 0 (every loss is >= 0): a global minimum",
                            "zero_loss", fo.stationary, **base)
    if outspace:
        return OracleResult("local_min", "global minimum in output space: for every group of equal inputs "
                            "and every output, the convex loss has one-sided slopes >= 0",
                            "output_space", fo.stationary, **base)
    if fo.stationary is None:
        return OracleResult("unsure", fo.reason, "first_order", None, **base)
    so = second_order(net, fo)
    if so.proved:
        return OracleResult("local_min", so.reason, "pieces", True,
                            stats={"pieces": so.n_pieces, "slice_dim": so.slice_dim, "lps": fo.n_lps}, **base)
    affine = affine_fit_minimum(net)
    if affine:
        return OracleResult("local_min", affine, "affine_fit", True, **base)
    if search:
        found = simple_search(net, extra=saddle_candidates(net, so), rng=random.Random(rng_seed))
        if found is not None:
            d, e, coeffs, t, dec, what = found
            order = next(k for k, v in enumerate(coeffs) if v)
            return OracleResult("saddle", f"d-stationary; exact descent along a {what} "
                                f"(loss change {coeffs[order]} t^{order} + ..., decrease {dec} at t = {t}); "
                                f"second order: {so.reason}", "curve", True, direction=d, curve=e, step=t,
                                decrease=dec, expansion=coeffs, **base)
    return OracleResult("unsure", f"d-stationary; {so.reason}; no exact descent found", "pieces", True,
                        stats={"pieces": so.n_pieces}, **base)


# =============================================================================================
# Instance generator
# =============================================================================================

_XV = [F(-2), F(-1), F(-1, 2), F(0), F(1, 2), F(1), F(2), F(3, 2), F(-3, 2)]
_WV = [F(-2), F(-1), F(-1, 2), F(1, 2), F(1), F(2), F(0)]
_AV = [F(-2), F(-3, 2), F(-1), F(-1, 2), F(1, 2), F(1), F(3, 2), F(2)]
_BV = [F(k, 2) for k in range(-4, 5)]
_ACTIVATIONS = ["relu", "relu", ("leaky_relu", F(1, 4)), ("leaky_relu", F(1, 2)), "abs", "abs"]


def _draw_layers(rng: random.Random, widths, X, zero_out: bool, plant1=0.7, plant2=0.6):
    """Dyadic layers with kinks planted exactly: ``b = -w . x_i`` (layer 1) and
    ``b = -w . x^1_i`` (layer 2, often at a sample already on a layer-1 kink: nested)."""
    n = len(X)
    layers = []
    xin = [list(r) for r in X]
    planted1 = []
    nl = len(widths) - 1
    for l in range(nl):
        nin, nout = widths[l], widths[l + 1]
        W, b = [], []
        for j in range(nout):
            vals = _AV if l == nl - 1 else _WV
            w = [rng.choice(vals) for _ in range(nin)]
            if l < nl - 1 and not any(w) and rng.random() < 0.7:
                w[rng.randrange(nin)] = rng.choice(_WV[:-1])
            W.append(w)
            if l == nl - 1:
                b.append(rng.choice(_BV[2:7]))
                continue
            plant = plant1 if l == 0 else plant2
            if rng.random() < plant:
                if l > 0 and planted1 and rng.random() < 0.6:
                    i = rng.choice(planted1)
                else:
                    i = rng.randrange(n)
                if l == 0:
                    planted1.append(i)
                b.append(-sum((wk * xk for wk, xk in zip(w, xin[i])), ZERO))
            else:
                b.append(rng.choice(_BV))
        layers.append((W, b))
        if l < nl - 1:
            z = [[sum((wk * xk for wk, xk in zip(W[j], xin[i])), b[j]) for j in range(nout)] for i in range(n)]
            xin = [list(row) for row in z]     # raw z: _try_instance re-plants with h(z)
    if zero_out:        # an all-zero outgoing column: a second-order escape candidate
        l = rng.randrange(nl - 1)
        j = rng.randrange(widths[l + 1])
        W_next = layers[l + 1][0]
        for r in range(len(W_next)):
            W_next[r][j] = ZERO
    return layers


def _mk(layers, X, Y, activation, loss, family, seed) -> Instance:
    return Instance(layers=tuple((tuple(tuple(r) for r in W), tuple(b)) for W, b in layers),
                    X=tuple(tuple(r) for r in X), Y=tuple(tuple(r) for r in Y), activation=activation,
                    loss=loss, family=family, seed=seed)


def _float_stationary(net: Net) -> bool:
    """Float pre-filter: every first-order piece's LP value >= -1e-9 (no exact proof)."""
    kinks = net.first_order_kinks()
    if len(kinks) > 6:
        return False
    for sigma in itertools.product((1, -1), repeat=len(kinks)):
        g, rows = net.piece(kinks, sigma)
        if not any(g):
            continue
        sol = _lp_min(g, rows)
        if sol is None or sol[0] < -1e-9:
            return False
    return True


def _stationary_residuals(net: Net, rng: random.Random):
    """Residuals ``r = f - y`` (square loss) that make theta d-stationary, from one LP over all
    pieces: ``(1/n) sum_i J_i^sigma' r_i = sum_k mu^sigma_k rows_k^sigma`` for every sigma,
    ``mu^sigma >= 0``; the conditions are homogeneous in ``r``, so an exact vertex scaled by a
    positive dyadic factor stays stationary. Returns dyadic rows or None."""
    kinks = [k for k in net.unit_kinks()
             if any(net.W[k[1] + 1][r][k[3]] for r in range(net.widths[k[1] + 2]))]
    K = len(kinks)
    if K > 5:
        return None
    nr = net.n * net.n_out
    blocks = []
    for sigma in itertools.product((1, -1), repeat=K):
        by_sample = net._by_sample(kinks, sigma)
        Jcols = []          # one column per (i, o): (1/n) J_io
        for i in range(net.n):
            items = by_sample.get(i, [])
            signs = {(k[1], k[3]): s for _, k, s in items}
            D = net.slopes(i, signs)
            for o in range(net.n_out):
                e = [ONE if oo == o else ZERO for oo in range(net.n_out)]
                Jcols.append([v / net.n for v in net.backprop(i, D, net.nl - 1, e)])
        _, rows = net.piece(kinks, sigma)
        blocks.append((Jcols, rows))
    nv = nr + K * len(blocks)
    A = np.zeros((net.p * len(blocks), nv))
    for bi, (Jcols, rows) in enumerate(blocks):
        for u in range(net.p):
            for c in range(nr):
                A[bi * net.p + u, c] = float(Jcols[c][u])
            for k in range(K):
                A[bi * net.p + u, nr + bi * K + k] = -float(rows[k][u])
    bounds = [(-1, 1)] * nr + [(0, 50)] * (K * len(blocks))
    for _ in range(4):
        w = np.array([rng.choice((-1, 1)) * rng.randint(1, 3) for _ in range(nr)] + [0] * (nv - nr), float)
        res = linprog(-w, A_eq=A, b_eq=np.zeros(A.shape[0]), bounds=bounds, method="highs-ds")
        if res.status != 0 or -res.fun < 1e-7:
            continue
        r = [Fraction(float(v)).limit_denominator(64) for v in res.x[:nr]]
        if not any(r):
            continue
        den = 1
        for v in r:
            den = den * v.denominator // np.gcd(den, v.denominator)
        ints = [int(v * den) for v in r]
        big = max(abs(v) for v in ints)
        k = 0
        while big / 2 ** k > 2:
            k += 1
        shift = rng.choice((0, 0, 1, 2))
        scaled = [F(v, 2 ** (k + shift)) for v in ints]
        return [scaled[i * net.n_out:(i + 1) * net.n_out] for i in range(net.n)]
    return None


def _try_instance(rng: random.Random, seed: int, fallback: bool = False) -> Optional[Instance]:
    u = rng.random()
    arch = "deep" if u < 0.6 else "multi" if u < 0.9 else "deep_multi"
    dx = rng.choice((1, 1, 2))
    if arch == "multi":
        widths = [dx, rng.choice((1, 1, 2, 3)), 2]
        loss = rng.choices(("square", "absolute"), weights=(6, 4))[0]
    else:
        widths = [dx, rng.choice((1, 1, 2, 2, 3)), rng.choice((1, 1, 2, 2, 3)), 2 if arch == "deep_multi" else 1]
        loss = rng.choices(LOSSES, weights=(4, 3, 3))[0] if arch == "deep" else \
            rng.choice(("square", "absolute"))
    activation = rng.choice(_ACTIVATIONS)
    n = rng.choice((2, 3, 4, 4, 5, 5, 6, 6))
    X = []
    for _ in range(n):
        if X and rng.random() < 0.15:
            X.append(list(rng.choice(X)))
        else:
            X.append([rng.choice(_XV) for _ in range(dx)])
    zero_out = rng.random() < 0.15
    layers = _draw_layers(rng, widths, X, zero_out)
    # layer-2 planting used raw z of layer 1; re-plant with h(z) so the kinks are exact
    h = lambda z: z if z >= 0 else _s_minus(activation) * z
    xin = [list(r) for r in X]
    for l, (W, b) in enumerate(layers[:-1]):
        z = [[sum((wk * xk for wk, xk in zip(W[j], xin[i])), b[j]) for j in range(len(W))] for i in range(n)]
        xin_next = [[h(v) for v in row] for row in z]
        if l + 1 < len(layers) - 1:
            W2, b2 = layers[l + 1]
            for j in range(len(W2)):
                # if the drawn bias came from planting (value -w.x for some sample's raw z), redo it
                for i in range(n):
                    raw = sum((wk * xk for wk, xk in zip(W2[j], z[i])), ZERO)
                    if b2[j] == -raw and raw != 0:
                        b2[j] = -sum((wk * xk for wk, xk in zip(W2[j], xin_next[i])), ZERO)
                        break
        xin = xin_next
    u = rng.random()
    target = "stationary" if u < 0.6 else "perturbed" if u < 0.75 else "random"
    family = f"{arch}/{loss}/{target}" + ("/zero_out" if zero_out else "")
    zeroY = [[ZERO] * widths[-1] for _ in range(n)]
    net0 = Net(_mk(layers, X, zeroY, activation, "square", "", seed))
    f = net0.f
    if loss == "hinge":             # put one margin on 1 through the output bias
        k = rng.randrange(n)
        layers[-1][1][0] = layers[-1][1][0] + rng.choice((-1, 1)) - f[k][0]
        net0 = Net(_mk(layers, X, zeroY, activation, "square", "", seed))
        f = net0.f
    if len(net0.unit_kinks()) > MAX_PIECE_KINKS:
        return None
    if loss == "square":
        rho = None
        if target in ("stationary", "perturbed"):
            rho = _stationary_residuals(net0, rng)
            if rho is not None and target == "perturbed":
                i, o = rng.randrange(n), rng.randrange(widths[-1])
                rho[i][o] += rng.choice((F(-1, 2), F(-1, 4), F(1, 4), F(1, 2)))
        if rho is None:
            if target != "random" and not fallback:
                return None
            family = f"{arch}/{loss}/random" + ("/zero_out" if zero_out else "")
            rho = [[rng.choice((ZERO, ZERO, F(-1), F(-1, 2), F(1, 2), F(1))) for _ in range(widths[-1])]
                   for _ in range(n)]
        Y = [[fo - ro for fo, ro in zip(fi, ri)] for fi, ri in zip(f, rho)]
        inst = _mk(layers, X, Y, activation, loss, family, seed)
        if target == "stationary" and not fallback and output_space_minimum(Net(inst)) and rng.random() < 0.8:
            return None                 # prefer minima that are not global in output space
        return inst
    if loss == "hinge":
        pats = list(itertools.product((-1, 1), repeat=n))
        rng.shuffle(pats)
        chosen = None
        for pat in pats[:24]:
            Y = [[F(v)] for v in pat]
            inst = _mk(layers, X, Y, activation, loss, family, seed)
            if target == "random":
                chosen = inst
                break
            net = Net(inst)
            if len(net.kinks()) > MAX_PIECE_KINKS:
                continue
            if _float_stationary(net):
                if output_space_minimum(net) and rng.random() < 0.8:
                    continue
                chosen = inst
                if target == "perturbed":
                    k = rng.randrange(n)
                    Y[k] = [-Y[k][0]]
                    chosen = _mk(layers, X, Y, activation, loss, family, seed)
                break
        if chosen is None:
            if not fallback:
                return None
            chosen = _mk(layers, X, [[F(v)] for v in pats[0]], activation, loss,
                         f"{arch}/{loss}/random" + ("/zero_out" if zero_out else ""), seed)
        return chosen
    # absolute
    chosen = None
    for _ in range(30):
        Y = []
        for i in range(n):
            row = []
            for o in range(widths[-1]):
                cat = rng.choice(("interp", "interp", "above", "below"))
                off = ZERO if cat == "interp" else rng.choice((F(1, 2), ONE, F(2))) * (1 if cat == "above" else -1)
                row.append(f[i][o] + off)
            Y.append(row)
        inst = _mk(layers, X, Y, activation, loss, family, seed)
        if target == "random":
            chosen = inst
            break
        net = Net(inst)
        if len(net.kinks()) > MAX_PIECE_KINKS:
            continue
        if target == "perturbed" or _float_stationary(net):
            if output_space_minimum(net) and rng.random() < 0.8:
                continue
            chosen = inst
            break
    if chosen is None:
        if not fallback:
            return None
        Y = [[fo + rng.choice((ZERO, F(-1), F(1, 2))) for fo in fi] for fi in f]
        chosen = _mk(layers, X, Y, activation, loss, f"{arch}/{loss}/random" + ("/zero_out" if zero_out else ""),
                     seed)
    return chosen


def random_instance(seed: int) -> Instance:
    """A reproducible random instance (two hidden layers, or one hidden layer with two outputs;
    exact kinks planted in both layers, often nested; labels that make the point stationary,
    perturbed or random). Retries internally."""
    for attempt in range(200):
        inst = _try_instance(random.Random(seed * 7919 + attempt), seed, fallback=attempt >= 120)
        if inst is None:
            continue
        net = Net(inst)
        if len(net.first_order_kinks()) > MAX_KINKS or len(net.kinks()) > MAX_PIECE_KINKS + 2:
            continue
        return inst
    raise RuntimeError(f"no instance for seed {seed}")


# =============================================================================================
# Comparison with certify
# =============================================================================================

#: outcome classes of :func:`compare`
OUTCOMES = ("agree", "disagree", "certify_inconclusive", "oracle_unsure")


@dataclass
class Comparison:
    """One instance compared: certify's verdict, the oracle's, and every failed check.

    ``outcome``: ``"disagree"`` when ``problems`` is non-empty (a certify ``local_min`` where the
    oracle proves a descent, a certify refutation where the oracle proves a minimum, a wrong
    first-order claim, a refutation whose stored point is not exactly lower, a certificate that
    ``certify.verify`` rejects); otherwise ``"oracle_unsure"``, ``"certify_inconclusive"`` or
    ``"agree"``.
    """

    instance: Instance
    oracle: OracleResult
    certify_verdict: str
    certify_kind: Optional[str]
    problems: list
    notes: list
    seconds_certify: float
    seconds_oracle: float

    @property
    def outcome(self) -> str:
        if self.problems:
            return "disagree"
        if self.oracle.verdict == "unsure":
            return "oracle_unsure"
        if self.certify_verdict == "inconclusive":
            return "certify_inconclusive"
        return "agree"


def float_point(theta, d, t, e=None) -> list:
    """The float64 point ``theta + t d (+ t^2/2 e)`` as numpy computes it, as exact Fractions."""
    th = np.array([float(v) for v in theta])
    d = np.asarray(d, dtype=np.float64)
    new = th + t * d
    if e is not None:
        new = th + t * d + 0.5 * t * t * np.asarray(e, dtype=np.float64)
    return [Fraction(float(v)) for v in new]


def check_refutation(inst: Instance, ref: dict) -> tuple:
    """Exact re-check of a certify refutation: ``(problems, notes)``.

    The stored point (float64 arithmetic as numpy does it, or exactly when the report says its
    point is exact) must have an exactly lower loss; the curve must be a *local* descent curve by
    the exact expansion (a note otherwise, with coefficients of rounding size ignored).
    """
    problems, notes = [], []
    if ref.get("verified") is not True:
        return ["refutation not verified"], notes
    if ref.get("direction") is None or ref.get("step") is None:
        return ["refutation has no direction/step"], notes
    e = ref.get("curvature_direction")
    d_q = [Fraction(float(x)) for x in np.asarray(ref["direction"], dtype=np.float64)]
    e_q = None if e is None else [Fraction(float(x)) for x in np.asarray(e, dtype=np.float64)]
    t = ref["step"]
    t_q = _q(t) if isinstance(t, str) else Fraction(float(t))
    if ref.get("exact_point"):
        th = inst.theta
        pt = [a + t_q * b + (t_q * t_q / 2 * c if e_q else 0) for a, b, c in
              zip(th, d_q, e_q or [ZERO] * len(th))]
    else:
        pt = float_point(inst.theta, ref["direction"], float(t), e)
    before, after = inst.loss_value(), inst.loss_at(pt)
    if not after < before:
        problems.append(f"exact loss does not decrease at certify's point ({after} >= {before})")
    coeffs = Net(inst).curve_expansion(d_q, e_q)
    if eventual_sign(coeffs) >= 0:
        size = max((abs(c) for c in coeffs), default=ZERO)
        cleaned = [ZERO if abs(c) <= 1e-12 * max(size, ONE) else c for c in coeffs]
        if eventual_sign(cleaned) >= 0:
            lead = next((f"t^{k} coefficient {float(c):.3g}" for k, c in enumerate(coeffs) if c), "identically 0")
            notes.append(f"certify's curve is not a descent curve near theta (exact expansion: {lead}); "
                         f"only its stored point is lower")
    return problems, notes


def compare(inst: Instance, oracle_result: Optional[OracleResult] = None, time_limit: float = 60.0
            ) -> Comparison:
    """Run ``certify.check`` (and ``certify.verify`` on a certificate) and compare with the oracle.

    ``time_limit`` is passed to ``certify.check`` (its budget per solver call / search).
    """
    import time

    import certify

    t0 = time.perf_counter()
    orc = oracle(inst) if oracle_result is None else oracle_result
    t1 = time.perf_counter()
    args = inst.certify_args()
    model, X, y = args.pop("model"), args.pop("X"), args.pop("y")
    report = certify.check(model, X, y, time_limit=time_limit, **args)
    t2 = time.perf_counter()
    v = report.verdict.value
    kind = ((report.second_order or {}).get("certificate") or {}).get("kind")
    stationary = (report.first_order or {}).get("stationary")
    problems, notes = [], []
    o = orc.verdict
    if v == "local_min" and o in ("not_stationary", "saddle"):
        problems.append(f"UNSOUND local_min: oracle proves {o} ({orc.reason})")
    if v in ("not_stationary", "saddle") and o == "local_min":
        problems.append(f"UNSOUND {v}: oracle proves a local minimum ({orc.reason})")
    if v == "saddle" and o == "not_stationary":
        problems.append(f"certify says saddle (d-stationary) but the oracle proves L' < 0 ({orc.reason})")
    if v == "not_stationary" and orc.d_stationary:
        problems.append(f"certify says not_stationary but the oracle proves d-stationarity ({orc.reason})")
    if v in ("not_stationary", "saddle"):
        p_, n_ = check_refutation(inst, report.refutation or {})
        problems += [f"{v}: {x}" for x in p_]
        notes += [f"{v}: {x}" for x in n_]
    if v == "local_min":
        res = certify.verify(report.to_dict(), model, X, y)
        if not res.ok:
            problems.append(f"certify.verify rejects the local_min certificate: {res}")
    if stationary is not None and orc.d_stationary is not None and bool(stationary) != orc.d_stationary:
        msg = (f"first_order['stationary'] = {stationary} but the oracle proves d-stationary = "
               f"{orc.d_stationary} (verdict {v})")
        if v == "inconclusive":
            notes.append(msg)
        elif not problems:
            problems.append(msg)
    return Comparison(inst, orc, v, kind, problems, notes, t2 - t1, t1 - t0)
