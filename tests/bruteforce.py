"""Brute-force cross-check: an enumeration oracle for tiny one-hidden-layer networks.

This module is a second, independent ground truth next to :mod:`tests.exact`. It never imports
``certify`` except inside :func:`compare`, which runs ``certify.check`` / ``certify.verify`` on an
instance and compares the answers with the oracle's.

Scope (where the truth is decidable by enumeration)
---------------------------------------------------
One hidden layer, scalar output, ``f(x) = sum_j a_j h(w_j . x + b_j) + c``; activation ``relu``,
``("leaky_relu", alpha)`` or ``abs`` (all three are ``h(z) = z`` for ``z >= 0`` and
``h(z) = s_minus z`` for ``z < 0`` with ``s_minus = 0, alpha, -1``); loss ``square``
(``1/2 (f - y)^2``), ``hinge`` (``max(0, 1 - y f)``, ``y = +-1``) or ``absolute`` (``|f - y|``);
mean over samples; no weight decay. Parameters ``theta = (W1 row-major, b1, a, c)``.

Theory (REFERENCES.md A4.5, item 1)
-----------------------------------
If every output weight ``a_j != 0``, theta is a local minimum iff it is d-stationary,
``L'(theta; d) >= 0`` for every direction ``d``. ``L'(theta; .)`` is piecewise linear: with the
*active kinks* -- pre-activations ``z_ij == 0`` (exactly, in Fractions) of units with
``a_j != 0``, hinge margins ``y_i f_i == 1``, absolute residuals ``f_i == y_i`` -- a sign pattern
``sigma in {-,+}^K`` fixes a polyhedral cone ``D_sigma`` (``sigma_k grad(phi_k) . d >= 0``, the
loss-kink rows taken with the unit-kink branches of ``sigma``) on which ``L'(theta; d) =
g_sigma . d``. The cones cover the whole space, so d-stationarity holds iff
``min {g_sigma . d : d in D_sigma, -1 <= d <= 1} = 0`` for every ``sigma``.

How the oracle decides (:func:`oracle`)
---------------------------------------
* Every piece LP is solved with ``scipy.optimize.linprog(method="highs")`` and the answer is then
  proved in exact arithmetic, never taken from the solver:

  - value ``< 0``: the LP's direction (rationalised) must have an exact, *piece-independent*
    directional derivative ``L'(theta; d) < 0`` (:func:`directional_derivative`), and an exact
    step ``t = 2^-k`` with ``L(theta + t d) < L(theta)`` is found with :func:`tests.exact.loss`;
  - value ``0``: an exact Farkas certificate ``g_sigma = sum_k lambda_k sigma_k grad(phi_k)``,
    ``lambda >= 0`` (from the LP duals, rationalised, checked with Fractions).

  A piece where neither proof goes through (a near tie, ``|value| <= 1e-12``, or a failed
  rationalisation) makes the instance ``"unsure"``; such instances are excluded from the
  comparison. So every ``local_min`` / ``not_stationary`` / ``saddle`` of the oracle is exact.
* Zero output weights (``a_j == 0``). A ReLU unit with ``a_j == 0`` whose pre-activations are all
  strictly negative is removed (exact: near theta it outputs 0 whatever ``a_j, w_j, b_j``). For
  any other unit with ``a_j == 0`` the theorem does not apply. Then: not d-stationary ->
  ``"not_stationary"`` (d-stationarity is necessary in general); d-stationary -> an exact probe
  along second-order escape directions (``delta a_j = +-1``, ``(delta w_j, delta b_j) = v``, the
  first-order change of ``f`` cancelled exactly through ``delta a_k, delta c``) and then
  :func:`tests.exact.probe`; an exact decrease gives ``"saddle"``, none gives ``"unsure"``
  (excluded: the oracle never calls such a point a local minimum).
* Outputs that minimise the loss over all output vectors (:func:`output_space_minimum`, e.g.
  ``L(theta) == 0``) make theta a global minimum whatever the output weights: this decides the
  points that zero output weights or too many kinks would leave ``"unsure"`` (and is checked
  against the enumeration everywhere else: a descent at such a point is an oracle bug).
* More than :data:`MAX_KINKS` active kinks: ``"unsure"``.

Instances (:func:`random_instance`)
-----------------------------------
Tiny nets (``d_x`` 1-2, 1-3 hidden units, 3-6 samples), dyadic weights and data (exact in
float64, so ``certify`` sees exactly the oracle's point), kinks planted by ``b_j = -w_j . x_i``,
hinge margins put on 1 through ``c``, absolute residuals put on 0 through ``y``; labels chosen so
that the point is stationary (exact null-space construction for the square loss, a subgradient
feasibility pre-filter for hinge / absolute), Clarke-balanced at a concave kink, perturbed, or
random. See :func:`random_instance`.
"""

from __future__ import annotations

import itertools
import json
import math
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

#: Largest number of active kinks enumerated (2^K pieces).
MAX_KINKS = 10
#: LP values with ``|value| <= TOL_TIE`` are near ties: proved exactly or the instance is unsure.
TOL_TIE = 1e-12
LOSSES = ("square", "hinge", "absolute")


# =============================================================================================
# Instances
# =============================================================================================

def _q(v) -> Fraction:
    return v if isinstance(v, Fraction) else Fraction(v)


def _s(v: Fraction) -> str:
    return str(v)


@dataclass(frozen=True)
class Instance:
    """A one-hidden-layer, scalar-output instance with exact (dyadic) numbers.

    Attributes
    ----------
    W : tuple of rows
        Hidden weights, shape (m, d_x), Fractions.
    b : tuple
        Hidden biases (m).
    a : tuple
        Output weights (m) -- the single row of ``W2``.
    c : Fraction
        Output bias.
    X : tuple of rows
        Inputs (n, d_x).
    y : tuple
        Targets (Fractions; ``+-1`` for hinge).
    activation : str or tuple
        ``"relu"``, ``("leaky_relu", alpha)`` or ``"abs"``.
    loss : str
        ``"square"``, ``"hinge"`` or ``"absolute"``.
    family : str
        How the generator built it (metadata only; the oracle never reads it).
    seed : int or None
    """

    W: tuple
    b: tuple
    a: tuple
    c: Fraction
    X: tuple
    y: tuple
    activation: Any
    loss: str
    family: str = ""
    seed: Optional[int] = None

    # ---------------------------------------------------------------- shapes
    @property
    def m(self) -> int:
        return len(self.W)

    @property
    def dx(self) -> int:
        return len(self.X[0])

    @property
    def n(self) -> int:
        return len(self.X)

    @property
    def n_params(self) -> int:
        return self.m * (self.dx + 2) + 1

    @property
    def layers(self) -> tuple:
        """``((W1, b1), (W2, b2))`` in the convention of :mod:`tests.exact`."""
        return ((tuple(tuple(r) for r in self.W), tuple(self.b)), ((tuple(self.a),), (self.c,)))

    @property
    def theta(self) -> list:
        return exact.flatten(self.layers)

    # ---------------------------------------------------------------- bridges
    def certify_args(self) -> dict:
        """Arguments of ``certify.check`` (float64 arrays; exact, since every number is dyadic)."""
        for v in self.theta + [v for r in self.X for v in r] + list(self.y):
            if Fraction(float(v)) != v:
                raise ValueError(f"{v} is not exactly representable in float64")
        return dict(model=exact.to_float_arrays(self.layers), X=exact.X_to_numpy(self.X),
                    y=np.array([float(v) for v in self.y], dtype=np.float64),
                    activation=activation_spec(self.activation), loss=self.loss)

    def to_dict(self) -> dict:
        """JSON-friendly exact description (numbers as strings such as ``"-3/2"``)."""
        act = self.activation if isinstance(self.activation, str) else \
            [self.activation[0], _s(_q(self.activation[1]))]
        return {"W1": [[_s(v) for v in r] for r in self.W], "b1": [_s(v) for v in self.b],
                "W2": [[_s(v) for v in self.a]], "b2": [_s(self.c)],
                "X": [[_s(v) for v in r] for r in self.X], "y": [_s(v) for v in self.y],
                "activation": act, "loss": self.loss, "family": self.family, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> "Instance":
        act = d["activation"]
        if not isinstance(act, str):
            act = (act[0], F(act[1]))
        return cls(W=tuple(tuple(F(v) for v in r) for r in d["W1"]), b=tuple(F(v) for v in d["b1"]),
                   a=tuple(F(v) for v in d["W2"][0]), c=F(d["b2"][0]),
                   X=tuple(tuple(F(v) for v in r) for r in d["X"]), y=tuple(F(v) for v in d["y"]),
                   activation=act, loss=d["loss"], family=d.get("family", ""), seed=d.get("seed"))

    def source(self) -> str:
        """One line that rebuilds the instance: ``Instance.from_dict({...})``."""
        return f"Instance.from_dict({json.dumps(self.to_dict())})"


def activation_spec(activation) -> str:
    """certify's activation string: ``"relu"``, ``"leaky_relu:0.25"``, ``"abs"``."""
    if isinstance(activation, (tuple, list)):
        return f"{activation[0]}:{float(activation[1])!r}"
    return activation


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
    raise ValueError(f"activation {activation!r} is outside the brute-force scope")


# =============================================================================================
# Exact first-order calculus (independent of certify)
# =============================================================================================

class _Net:
    """Exact forward values of an instance (or of a reduced copy) and the parameter layout."""

    def __init__(self, W, b, a, c, X, y, activation, loss):
        if loss not in LOSSES:
            raise ValueError(f"loss {loss!r} is outside the brute-force scope")
        self.W = [list(map(_q, r)) for r in W]
        self.b = list(map(_q, b))
        self.a = list(map(_q, a))
        self.c = _q(c)
        self.X = [list(map(_q, r)) for r in X]
        self.y = list(map(_q, y))
        self.activation = activation
        self.loss = loss
        self.sm = _s_minus(activation)
        self.m, self.n, self.dx = len(self.W), len(self.X), len(self.X[0])
        self.p = self.m * (self.dx + 2) + 1
        self.xbar = [r + [ONE] for r in self.X]
        self.z = [[sum((w * v for w, v in zip(self.W[j], self.X[i])), self.b[j])
                   for j in range(self.m)] for i in range(self.n)]
        self.f = [sum((self.a[j] * self.h(self.z[i][j]) for j in range(self.m)), self.c)
                  for i in range(self.n)]
        if loss == "hinge" and any(v not in (-1, 1) for v in self.y):
            raise ValueError("hinge labels must be -1 or +1")

    def theta(self) -> list:
        """Flat parameters in the slot order below."""
        return [v for r in self.W for v in r] + self.b + self.a + [self.c]

    def loss_value(self) -> Fraction:
        total = ZERO
        for f, y in zip(self.f, self.y):
            if self.loss == "square":
                total += (f - y) ** 2 / 2
            elif self.loss == "hinge":
                total += max(ZERO, 1 - y * f)
            else:
                total += abs(f - y)
        return total / self.n

    # parameter slots: W1 row-major, b1, a, c
    def iw(self, j, k):
        return j * self.dx + k

    def ib(self, j):
        return self.m * self.dx + j

    def ia(self, j):
        return self.m * self.dx + self.m + j

    @property
    def ic(self):
        return self.m * (self.dx + 2)

    def unit_slots(self, j):
        """Slots of ``(w_j, b_j)``, aligned with ``xbar_i``."""
        return [self.iw(j, k) for k in range(self.dx)] + [self.ib(j)]

    def h(self, z):
        return z if z >= 0 else self.sm * z

    def h_dir(self, z, t):
        """One-sided derivative ``h'(z; t)``."""
        if z > 0:
            return t
        if z < 0:
            return self.sm * t
        return t if t >= 0 else self.sm * t

    def dz(self, i, j, d):
        return sum((d[s] * v for s, v in zip(self.unit_slots(j), self.xbar[i])), ZERO)

    def df(self, i, d):
        """Exact one-sided derivative of ``f_i`` along ``d``."""
        out = d[self.ic]
        for j in range(self.m):
            out += d[self.ia(j)] * self.h(self.z[i][j]) + self.a[j] * self.h_dir(self.z[i][j],
                                                                                 self.dz(i, j, d))
        return out

    def loss_dir(self, i, t):
        """One-sided derivative of the sample loss at ``f_i`` in the direction ``t``."""
        f, y = self.f[i], self.y[i]
        if self.loss == "square":
            return (f - y) * t
        if self.loss == "hinge":
            margin = y * f
            if margin > 1:
                return ZERO
            if margin < 1:
                return -y * t
            return max(ZERO, -y * t)
        r = f - y
        if r > 0:
            return t
        if r < 0:
            return -t
        return abs(t)

    def directional_derivative(self, d) -> Fraction:
        """Exact ``L'(theta; d)`` from the one-sided chain rule (no pieces involved)."""
        d = [_q(v) for v in d]
        return sum((self.loss_dir(i, self.df(i, d)) for i in range(self.n)), ZERO) / self.n

    # ------------------------------------------------------------ kinks and pieces
    def unit_kinks(self):
        """``(i, j)`` with ``z_ij == 0`` and ``a_j != 0`` (a zero ``a_j`` hides the kink from L')."""
        return [(i, j) for i in range(self.n) for j in range(self.m)
                if self.z[i][j] == 0 and self.a[j] != 0]

    def loss_kinks(self):
        if self.loss == "square":
            return []
        if self.loss == "hinge":
            return [i for i in range(self.n) if self.y[i] * self.f[i] == 1]
        return [i for i in range(self.n) if self.f[i] == self.y[i]]

    def smooth_coefficient(self, i) -> Fraction:
        """``dl/df`` at a sample whose loss is not on a kink."""
        f, y = self.f[i], self.y[i]
        if self.loss == "square":
            return f - y
        if self.loss == "hinge":
            return ZERO if y * f > 1 else -y
        return ONE if f > y else -ONE

    def piece(self, unit_kinks, loss_kinks, sigma):
        """Gradient ``g_sigma`` and cone rows (``row . d >= 0``) of the piece ``sigma``."""
        unit_sign = dict(zip(unit_kinks, sigma[:len(unit_kinks)]))
        loss_sign = dict(zip(loss_kinks, sigma[len(unit_kinks):]))
        rows = []
        for (i, j), s in unit_sign.items():
            row = [ZERO] * self.p
            for slot, v in zip(self.unit_slots(j), self.xbar[i]):
                row[slot] = s * v
            rows.append(row)
        g = [ZERO] * self.p
        for i in range(self.n):
            G = [ZERO] * self.p
            G[self.ic] = ONE
            for j in range(self.m):
                G[self.ia(j)] = self.h(self.z[i][j])
                z = self.z[i][j]
                if z > 0:
                    slope = ONE
                elif z < 0:
                    slope = self.sm
                elif (i, j) in unit_sign:
                    slope = ONE if unit_sign[(i, j)] > 0 else self.sm
                else:       # a_j == 0: the slot carries a_j * slope = 0 anyway
                    slope = ZERO
                for slot, v in zip(self.unit_slots(j), self.xbar[i]):
                    G[slot] = self.a[j] * slope * v
            if i in loss_sign:
                s = loss_sign[i]
                if self.loss == "hinge":        # u = -y df; s=+: u >= 0, l' = u; s=-: u <= 0, l' = 0
                    rows.append([s * (-self.y[i]) * v for v in G])
                    coef = -self.y[i] if s > 0 else ZERO
                else:                           # absolute: s=+: df >= 0, l' = df; s=-: l' = -df
                    rows.append([s * v for v in G])
                    coef = ONE if s > 0 else -ONE
            else:
                coef = self.smooth_coefficient(i)
            if coef:
                for k in range(self.p):
                    g[k] += coef * G[k]
        g = [v / self.n for v in g]
        return g, rows


# =============================================================================================
# Exact linear algebra helpers
# =============================================================================================

def _rref(M, ncols):
    rows = [list(r) for r in M]
    pivots = []
    r = 0
    for col in range(ncols):
        piv = next((i for i in range(r, len(rows)) if rows[i][col] != 0), None)
        if piv is None:
            continue
        rows[r], rows[piv] = rows[piv], rows[r]
        pv = rows[r][col]
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


def nullspace(M, ncols) -> list:
    """Exact basis (list of Fraction vectors) of ``{v : M v = 0}``."""
    rows, pivots = _rref(M, ncols) if M else ([], [])
    basis = []
    for fcol in (c for c in range(ncols) if c not in pivots):
        v = [ZERO] * ncols
        v[fcol] = ONE
        for r, pcol in zip(rows, pivots):
            v[pcol] = -r[fcol]
        basis.append(v)
    return basis


def solve_exact(A, b) -> Optional[list]:
    """One exact solution of ``A x = b`` (free variables 0), or None if inconsistent."""
    ncols = len(A[0]) if A else 0
    aug = [list(r) + [bi] for r, bi in zip(A, b)]
    rows, pivots = _rref(aug, ncols + 1)
    if ncols in pivots:
        return None
    x = [ZERO] * ncols
    for r, pcol in zip(rows, pivots):
        x[pcol] = r[ncols]
    return x


def _rationalize(values, max_den=10**6) -> list:
    return [Fraction(float(v)).limit_denominator(max_den) for v in values]


# =============================================================================================
# The oracle
# =============================================================================================

@dataclass
class OracleResult:
    """What the oracle decided, with its exact evidence.

    ``verdict`` is ``"local_min"``, ``"not_stationary"``, ``"saddle"`` (d-stationary with a zero
    output weight, exact decrease found) or ``"unsure"`` (excluded from comparisons).
    ``output_space_min``: the outputs minimise the loss over all output vectors (an "easy"
    minimum, global; see :func:`output_space_minimum`).
    ``d_stationary`` is True / False when proved, None otherwise. For a decrease: ``direction``
    (Fractions, full parameter order), ``step`` and ``decrease = L(theta) - L(theta + step d) > 0``
    (exact); ``slope`` is the exact ``L'(theta; d)`` for a first-order descent.
    """

    verdict: str
    reason: str
    d_stationary: Optional[bool] = None
    n_kinks: int = 0
    n_pieces: int = 0
    piece: Optional[tuple] = None
    direction: Optional[tuple] = None
    slope: Optional[Fraction] = None
    step: Optional[Fraction] = None
    decrease: Optional[Fraction] = None
    removed_units: tuple = ()
    zero_units: tuple = ()
    output_space_min: Optional[bool] = None
    stats: dict = field(default_factory=dict)


def _lp(g, rows):
    p = len(g)
    c = np.array([float(v) for v in g])
    kw = {}
    if rows:
        kw = dict(A_ub=-np.array([[float(v) for v in r] for r in rows]), b_ub=np.zeros(len(rows)))
    res = linprog(c, bounds=[(-1.0, 1.0)] * p, method="highs", **kw)
    if res.status != 0:
        return None
    lam = (-np.asarray(res.ineqlin.marginals)) if rows else np.zeros(0)
    return float(res.fun), np.asarray(res.x), lam


def _farkas(g, rows, lam_float) -> bool:
    """Exact check that ``g = sum_k lambda_k rows_k`` for some ``lambda >= 0``."""
    if not any(g):
        return True
    if not rows:
        return False
    p = len(g)
    for max_den in (10**3, 10**6):
        lam = [max(ZERO, v) for v in _rationalize(lam_float, max_den)]
        if all(sum((l * r[k] for l, r in zip(lam, rows)), ZERO) == g[k] for k in range(p)):
            return True
    # exact solve on the support of the float multipliers (free variables 0)
    support = [k for k, v in enumerate(lam_float) if v > 1e-9]
    for cand in (support, list(range(len(rows)))):
        if not cand:
            continue
        A = [[rows[k][col] for k in cand] for col in range(p)]
        x = solve_exact(A, g)
        if x is not None and all(v >= 0 for v in x):
            return True
    return False


def _descent_proof(net: _Net, d_float, full: "_Net", embed) -> Optional[tuple]:
    """Exact ``L'(theta; d) < 0`` for a rationalised ``d``; returns (d_full, slope)."""
    for max_den in (16, 1024, None):
        if max_den is None:
            d = [Fraction(float(v)) for v in d_float]
        else:
            d = _rationalize(d_float, max_den)
        slope = net.directional_derivative(d)
        if slope < 0:
            d_full = embed(d)
            slope_full = full.directional_derivative(d_full)
            if slope_full != slope:
                raise AssertionError("reduction changed the directional derivative")
            expansion = curve_expansion(full, d_full)
            if len(expansion) < 2 or expansion[1] != slope:
                raise AssertionError("chain rule and curve expansion disagree on L'(theta; d)")
            return tuple(d_full), slope
    return None


def exact_decrease(inst: Instance, d, max_halvings: int = 60, t0=F(1, 4), e=None):
    """Largest ``t = 2^-k t0`` with ``L(theta + t d [+ t^2/2 e]) < L(theta)``: (t, decrease) or None."""
    base = exact.loss(inst.layers, inst.X, inst.y, inst.activation, inst.loss)
    t = _q(t0)
    for _ in range(max_halvings):
        pt = exact.on_curve(inst.layers, d, t, e)
        diff = base - exact.loss(pt, inst.X, inst.y, inst.activation, inst.loss)
        if diff > 0:
            return t, diff
        t /= 2
    return None


# ---------------------------------------------------------------- exact expansions along curves
def _padd(p, q):
    out = [ZERO] * max(len(p), len(q))
    for k, v in enumerate(p):
        out[k] += v
    for k, v in enumerate(q):
        out[k] += v
    return out


def _pmul(p, q):
    out = [ZERO] * (len(p) + len(q) - 1)
    for i, u in enumerate(p):
        if u:
            for j, v in enumerate(q):
                out[i + j] += u * v
    return out


def _pscale(p, s):
    return [s * v for v in p]


def eventual_sign(p) -> int:
    """Sign of the polynomial ``p(t)`` for all small ``t > 0`` (0 if ``p`` is identically 0)."""
    for v in p:
        if v:
            return 1 if v > 0 else -1
    return 0


def curve_expansion(net: "_Net", d, e=None) -> list:
    """Exact coefficients of ``L(theta + t d + t^2/2 e) - L(theta)`` for small ``t > 0``.

    Along the curve every pre-activation is a polynomial ``z_ij(t)`` of degree <= 2; for small
    ``t > 0`` its sign is the sign of its lowest non-zero coefficient, which fixes the branch of
    ``h`` (and likewise the branch of the hinge / absolute loss at each sample). So on some
    interval ``(0, eps)`` the loss difference is one polynomial; its lowest non-zero coefficient
    decides whether the loss drops arbitrarily close to theta (a proof that theta is not a local
    minimum when negative). The linear coefficient is ``L'(theta; d)``.
    """
    d = [_q(v) for v in d]
    e = [ZERO] * net.p if e is None else [_q(v) for v in e]
    theta = net.theta()

    def par(s):
        return [theta[s], d[s], e[s] / 2]

    total = [ZERO]
    for i in range(net.n):
        fi = par(net.ic)
        for j in range(net.m):
            zp = [net.z[i][j], net.dz(i, j, d), net.dz(i, j, e) / 2]
            sgn = eventual_sign(zp)
            slope = ONE if sgn > 0 else net.sm if sgn < 0 else ZERO
            fi = _padd(fi, _pmul(par(net.ia(j)), _pscale(zp, slope)))
        y = net.y[i]
        if net.loss == "square":
            r = _padd(fi, [-y])
            li = _pscale(_pmul(r, r), F(1, 2))
        elif net.loss == "hinge":
            u = _padd([ONE], _pscale(fi, -y))
            li = u if eventual_sign(u) > 0 else [ZERO]
        else:
            r = _padd(fi, [-y])
            li = _pscale(r, eventual_sign(r))
        total = _padd(total, li)
    total = [v / net.n for v in total]
    total[0] -= net.loss_value()
    assert total[0] == 0, "expansion does not start at L(theta)"
    return total


def _reduce(inst: Instance):
    """Drop ReLU units with ``a_j == 0`` and every ``z_ij < 0`` (exactly irrelevant near theta)."""
    full = _Net(inst.W, inst.b, inst.a, inst.c, inst.X, inst.y, inst.activation, inst.loss)
    removed = []
    if inst.activation == "relu":
        removed = [j for j in range(full.m)
                   if full.a[j] == 0 and all(full.z[i][j] < 0 for i in range(full.n))]
    keep = [j for j in range(full.m) if j not in removed]
    red = _Net([inst.W[j] for j in keep], [inst.b[j] for j in keep], [inst.a[j] for j in keep],
               inst.c, inst.X, inst.y, inst.activation, inst.loss)

    def embed(d_red):
        d = [ZERO] * full.p
        for jr, j in enumerate(keep):
            for sr, s in zip(red.unit_slots(jr), full.unit_slots(j)):
                d[s] = d_red[sr]
            d[full.ia(j)] = d_red[red.ia(jr)]
        d[full.ic] = d_red[red.ic]
        return d
    return full, red, tuple(removed), embed


_OUTSPACE = ("global minimum in output space: for every group of equal inputs the convex loss of "
             "a common output shift has one-sided slopes >= 0")


def output_space_minimum(net: _Net) -> bool:
    """True if the outputs ``f(theta)`` minimise the loss over *all* output vectors.

    Samples with equal inputs get equal outputs from any network, so the loss is a sum over groups
    of equal ``x`` of convex functions ``phi_G(F_G)``; ``f(theta)`` is a global minimiser iff each
    ``phi_G`` has both one-sided slopes ``>= 0`` at ``f_G`` (exact). Then ``L(theta') >= L(theta)``
    for every ``theta'``: a global, hence local, minimum whatever the output weights.
    """
    groups = {}
    for i, x in enumerate(net.X):
        groups.setdefault(tuple(x), []).append(i)
    for members in groups.values():
        for t in (ONE, -ONE):
            if sum((net.loss_dir(i, t) for i in members), ZERO) < 0:
                return False
    return True


def oracle(inst: Instance, *, max_kinks: int = MAX_KINKS, probe_zero_units: bool = True) -> OracleResult:
    """Decide local minimality of ``inst`` by enumerating all pieces (see the module docstring)."""
    full, net, removed, embed = _reduce(inst)
    zero_units = tuple(j for j in range(full.m) if full.a[j] == 0 and j not in removed)
    outspace = output_space_minimum(full)
    uk, lk = net.unit_kinks(), net.loss_kinks()
    K = len(uk) + len(lk)
    base = dict(n_kinks=K, removed_units=removed, zero_units=zero_units, output_space_min=outspace)
    if K > max_kinks:
        if outspace:
            return OracleResult("local_min", _OUTSPACE, d_stationary=True, **base)
        return OracleResult("unsure", f"{K} active kinks > {max_kinks}", **base)
    n_lp = n_trivial = 0
    unsure = None
    for sigma in itertools.product((1, -1), repeat=K):
        g, rows = net.piece(uk, lk, sigma)
        if not any(g):
            n_trivial += 1
            continue
        n_lp += 1
        sol = _lp(g, rows)
        if sol is None:
            unsure = f"piece {sigma}: LP failed"
            continue
        value, x, lam = sol
        if value < -TOL_TIE:
            proof = _descent_proof(net, x, full, embed)
            if proof is None:
                unsure = f"piece {sigma}: LP value {value:.3g} but no exact descent"
                continue
            d, slope = proof
            dec = exact_decrease(inst, d)
            if dec is None:     # cannot happen for L' < 0; kept as a guard
                unsure = f"piece {sigma}: L' = {slope} < 0 but no exact decrease"
                continue
            if outspace:
                raise AssertionError("descent at a global minimum in output space: oracle bug")
            return OracleResult("not_stationary", f"piece {sigma}: exact L'(theta; d) = {slope} < 0",
                                d_stationary=False, n_pieces=2 ** K, piece=sigma, direction=d,
                                slope=slope, step=dec[0], decrease=dec[1],
                                stats={"lps": n_lp, "trivial": n_trivial}, **base)
        if _farkas(g, rows, lam):
            continue
        proof = _descent_proof(net, x, full, embed) if value < 0 else None
        if proof is not None:
            d, slope = proof
            dec = exact_decrease(inst, d)
            if dec is not None:
                if outspace:
                    raise AssertionError("descent at a global minimum in output space: oracle bug")
                return OracleResult("not_stationary", f"piece {sigma}: exact L' = {slope} < 0 "
                                    f"(near tie {value:.3g})", d_stationary=False, n_pieces=2 ** K,
                                    piece=sigma, direction=d, slope=slope, step=dec[0],
                                    decrease=dec[1], stats={"lps": n_lp, "trivial": n_trivial}, **base)
        unsure = f"piece {sigma}: LP value {value:.3g}, no exact Farkas certificate"
    stats = {"lps": n_lp, "trivial": n_trivial}
    if unsure is not None:
        if outspace:
            return OracleResult("local_min", _OUTSPACE, d_stationary=True, n_pieces=2 ** K,
                                stats=stats, **base)
        return OracleResult("unsure", unsure, n_pieces=2 ** K, stats=stats, **base)
    if not zero_units:
        return OracleResult("local_min", f"d-stationary on all {2 ** K} pieces (exact Farkas "
                            "certificates) and every output weight is non-zero (A4.5-1)",
                            d_stationary=True, n_pieces=2 ** K, stats=stats, **base)
    if outspace:
        return OracleResult("local_min", "d-stationary with zero output weight(s); " + _OUTSPACE,
                            d_stationary=True, n_pieces=2 ** K, stats=stats, **base)
    if probe_zero_units:
        found = escape_probe(inst, full, zero_units)
        if found is not None:
            d, t, diff = found
            return OracleResult("saddle", f"d-stationary; zero output weight(s) {zero_units}: exact "
                                f"decrease {diff} at step {t}", d_stationary=True,
                                n_pieces=2 ** K, direction=tuple(d), step=t, decrease=diff,
                                stats=stats, **base)
    return OracleResult("unsure", f"d-stationary, zero output weight(s) {zero_units}: no exact "
                        "decrease found, theorem A4.5-1 does not apply", d_stationary=True,
                        n_pieces=2 ** K, stats=stats, **base)


def escape_probe(inst: Instance, full: _Net, zero_units, n_random: int = 100):
    """Exact search for a decrease at a d-stationary point with zero output weights.

    Candidate lines ``theta + t d``: first the escape directions of A4.5-2, ``delta a_j = s``,
    ``(delta w_j, delta b_j) = v`` (``v in {-1,0,1}^(d_x+1)``, scaled by 1 and 8), with
    ``delta a_k (k != j), delta c`` solving ``sum_k delta a_k h(z_ik) + delta c = -s h(z_ij)``
    exactly when possible (then ``f`` moves at second order only); then the directions of
    :func:`tests.exact.probe_directions`. A line counts only if :func:`curve_expansion` proves
    that the loss drops for *every* small ``t > 0`` (so theta is not a local minimum); an explicit
    step with an exact decrease is returned with it. Returns (d, t, decrease) or None.
    """
    def check(d):
        if eventual_sign(curve_expansion(full, d)) < 0:
            dec = exact_decrease(inst, d)
            if dec is None:     # cannot happen: the expansion is exact
                raise AssertionError("eventually decreasing line without a decreasing step")
            return d, dec[0], dec[1]
        return None

    for j in zero_units:
        others = [k for k in range(full.m) if k != j]
        A = [[full.h(full.z[i][k]) for k in others] + [ONE] for i in range(full.n)]
        for s in (1, -1):
            comp = solve_exact(A, [-s * full.h(full.z[i][j]) for i in range(full.n)])
            for v in itertools.product((-1, 0, 1), repeat=full.dx + 1):
                if not any(v):
                    continue
                for scale in (1, 8):
                    d = [ZERO] * full.p
                    for slot, vk in zip(full.unit_slots(j), v):
                        d[slot] = F(scale * vk)
                    d[full.ia(j)] = F(s)
                    if comp is not None:
                        for k, val in zip(others, comp):
                            d[full.ia(k)] = val
                        d[full.ic] = comp[-1]
                    found = check(d)
                    if found:
                        return found
    for d in exact.probe_directions(full.p, n_random=n_random, seed=0):
        found = check(list(d))
        if found:
            return found
    return None


# =============================================================================================
# Instance generator
# =============================================================================================

_XV = [F(-2), F(-1), F(-1, 2), F(0), F(1, 2), F(1), F(2), F(3, 2), F(-3, 2)]
_WV = [F(-2), F(-1), F(-1, 2), F(1, 2), F(1), F(2), F(0)]
_AV = [F(-2), F(-3, 2), F(-1), F(-1, 2), F(1, 2), F(1), F(3, 2), F(2)]
_BV = [F(k, 2) for k in range(-4, 5)]
_ACTIVATIONS = ["relu", "relu", ("leaky_relu", F(1, 4)), ("leaky_relu", F(1, 2)), "abs", "abs"]


def _subgradient_system(net: _Net, spec, concave_kink=None):
    """Linear system of the convex-subdifferential condition used to choose labels.

    Variables ``v = (rho_i for non-fixed samples, mu_k for each unit kink)``; ``rho_i`` is the
    loss slope at sample i (``spec[i]``: ``("fixed", value)``, ``("interval", lo, hi)`` or
    ``("free",)``), ``mu_k`` the (scaled) subgradient of unit kink ``k = (i, j)``: it must lie
    in ``q [s_minus, 1]`` with ``q = a_j rho_i`` (``q >= 0``: convex kink); for
    ``concave_kink`` the reverse, ``mu in q [1, s_minus]``, ``q <= 0`` (Clarke-type balance).
    Returns (E, e0, Gin, gin0, var_rho, uk): ``E v + e0 = 0`` (p rows), ``Gin v + gin0 >= 0``.
    """
    uk = net.unit_kinks()
    var_rho = [i for i in range(net.n) if spec[i][0] != "fixed"]
    nv = len(var_rho) + len(uk)
    col_rho = {i: k for k, i in enumerate(var_rho)}
    E = [[ZERO] * nv for _ in range(net.p)]
    e0 = [ZERO] * net.p
    kinked = set(uk)
    for i in range(net.n):
        G = [ZERO] * net.p
        G[net.ic] = ONE
        for j in range(net.m):
            G[net.ia(j)] = net.h(net.z[i][j])
            z = net.z[i][j]
            if (i, j) in kinked or z == 0:
                continue
            slope = ONE if z > 0 else net.sm
            for slot, v in zip(net.unit_slots(j), net.xbar[i]):
                G[slot] = net.a[j] * slope * v
        if i in col_rho:
            for r in range(net.p):
                E[r][col_rho[i]] += G[r]
        else:
            for r in range(net.p):
                e0[r] += spec[i][1] * G[r]
    Gin, gin0 = [], []
    for k, (i, j) in enumerate(uk):
        col = len(var_rho) + k
        for slot, v in zip(net.unit_slots(j), net.xbar[i]):
            E[slot][col] += v
        # q = a_j rho_i as (coefficients, constant)
        qc = [ZERO] * nv
        q0 = ZERO
        if i in col_rho:
            qc[col_rho[i]] = net.a[j]
        else:
            q0 = net.a[j] * spec[i][1]
        lo, hi = (net.sm, ONE) if (i, j) != concave_kink else (ONE, net.sm)
        # mu - lo q >= 0 ; hi q - mu >= 0
        r1 = [-lo * v for v in qc]
        r1[col] += 1
        Gin.append(r1)
        gin0.append(-lo * q0)
        r2 = [hi * v for v in qc]
        r2[col] -= 1
        Gin.append(r2)
        gin0.append(hi * q0)
    return E, e0, Gin, gin0, var_rho, uk


def _feasible_float(net: _Net, spec, concave_kink=None) -> bool:
    """Float LP pre-filter: is the subgradient system feasible (rho within its interval)?"""
    E, e0, Gin, gin0, var_rho, uk = _subgradient_system(net, spec, concave_kink)
    nv = len(var_rho) + len(uk)
    if nv == 0:
        return not any(e0)
    bounds = []
    for i in var_rho:
        _, lo, hi = spec[i]
        bounds.append((float(lo), float(hi)))
    bounds += [(None, None)] * len(uk)
    kw = dict(A_eq=np.array([[float(v) for v in r] for r in E]),
              b_eq=-np.array([float(v) for v in e0]))
    if Gin:
        kw.update(A_ub=-np.array([[float(v) for v in r] for r in Gin]),
                  b_ub=np.array([float(v) for v in gin0]))
    res = linprog(np.zeros(nv), bounds=bounds, method="highs", **kw)
    return res.status == 0


def _int_scale(v) -> list:
    """Positive multiple of a rational vector with coprime integer entries."""
    den = 1
    for x in v:
        den = den * x.denominator // math.gcd(den, x.denominator)
    ints = [int(x * den) for x in v]
    g = 0
    for x in ints:
        g = math.gcd(g, abs(x))
    return [F(x // g) for x in ints] if g else [ZERO] * len(v)


def _square_residuals(net: _Net, rng: random.Random, concave_kink=None, tries: int = 300):
    """Exact residual vectors ``rho`` (r = f - y) satisfying the subgradient system, or None."""
    spec = [("free",)] * net.n
    E, e0, Gin, gin0, var_rho, uk = _subgradient_system(net, spec, concave_kink)
    nv = net.n + len(uk)
    basis = nullspace([r for r in E if any(r)], nv)
    if not basis:
        return None
    found = []
    for _ in range(tries):
        coef = [rng.randint(-3, 3) for _ in basis]
        if not any(coef):
            continue
        v = [sum((c * b[k] for c, b in zip(coef, basis)), ZERO) for k in range(nv)]
        rho = v[:net.n]
        if not any(rho):
            continue
        if any(sum((gk * vk for gk, vk in zip(row, v)), ZERO) < 0 for row in Gin):
            continue
        if concave_kink is not None:
            i, j = concave_kink
            if not net.a[j] * rho[i] < 0:
                continue
        found.append(rho)
        if len(found) >= 3:
            break
    if not found:
        found = _square_residuals_lp(net, basis, Gin, rng, concave_kink)
    if not found:
        return None
    rho = _int_scale(rng.choice(found))
    big = max(abs(x) for x in rho)
    k = 0
    while big / 2 ** k > 2:
        k += 1
    return [x / 2 ** k for x in rho]


def _square_residuals_lp(net: _Net, basis, Gin, rng: random.Random, concave_kink=None) -> list:
    """Vertices of ``{t : Gin N t >= 0, |t| <= 1}`` maximising random ``w . rho``, rationalised
    and checked exactly (``N`` = ``basis``); returns the residual parts that pass."""
    nv = len(basis[0])
    Nt = [[b[k] for b in basis] for k in range(nv)]         # nv x dim
    A = [[sum((g * Nt[k][c] for k, g in enumerate(row)), ZERO) for c in range(len(basis))]
         for row in Gin]
    found = []
    for _ in range(6):
        w = [rng.choice((-1, 1)) * rng.randint(1, 3) for _ in range(net.n)]
        obj = [-float(sum((w[i] * Nt[i][c] for i in range(net.n)), ZERO)) for c in range(len(basis))]
        rows = [list(r) for r in A]
        if concave_kink is not None:
            i, j = concave_kink
            rows.append([-net.a[j] * Nt[i][c] for c in range(len(basis))])     # a_j rho_i <= 0
        kw = {}
        if rows:
            kw = dict(A_ub=-np.array([[float(v) for v in r] for r in rows]), b_ub=np.zeros(len(rows)))
        res = linprog(obj, bounds=[(-1, 1)] * len(basis), method="highs", **kw)
        if res.status != 0 or res.fun > -1e-9:
            continue
        t = _rationalize(res.x, 1000)
        v = [sum((tc * Nt[k][c] for c, tc in enumerate(t)), ZERO) for k in range(nv)]
        rho = v[:net.n]
        if not any(rho) or any(sum((g * x for g, x in zip(row, v)), ZERO) < 0 for row in Gin):
            continue
        if concave_kink is not None and not net.a[concave_kink[1]] * rho[concave_kink[0]] < 0:
            continue
        found.append(rho)
    return found


def _draw_net(rng: random.Random, zero_output: bool):
    dx = rng.choice((1, 1, 2))
    m = rng.choice((1, 2, 2, 3))
    n = rng.randint(3, 6)
    X = []
    for _ in range(n):
        if X and rng.random() < 0.15:
            X.append(list(rng.choice(X)))
        else:
            X.append([rng.choice(_XV) for _ in range(dx)])
    W, b = [], []
    for _ in range(m):
        w = [rng.choice(_WV) for _ in range(dx)]
        if not any(w) and rng.random() < 0.7:
            w[rng.randrange(dx)] = rng.choice(_WV[:-1])
        W.append(w)
        if rng.random() < 0.75:
            i = rng.randrange(n)
            b.append(-sum((wk * xk for wk, xk in zip(w, X[i])), ZERO))
        else:
            b.append(rng.choice(_BV))
    a = [rng.choice(_AV) for _ in range(m)]
    if zero_output:
        a[rng.randrange(m)] = ZERO
    c = rng.choice(_BV[2:7])
    return W, b, a, c, X


def _instance(W, b, a, c, X, y, activation, loss, family, seed) -> Instance:
    return Instance(W=tuple(tuple(r) for r in W), b=tuple(b), a=tuple(a), c=c,
                    X=tuple(tuple(r) for r in X), y=tuple(y), activation=activation, loss=loss,
                    family=family, seed=seed)


def _try_instance(rng: random.Random, seed: int, zero_output: Optional[bool] = None
                  ) -> Optional[Instance]:
    loss = rng.choices(LOSSES, weights=(4, 3, 3))[0]
    activation = rng.choice(_ACTIVATIONS)
    draw = rng.random() < 0.1
    zero_output = draw if zero_output is None else zero_output
    u = rng.random()
    target = "stationary" if u < 0.6 else "concave" if u < 0.75 else "perturbed" if u < 0.87 \
        else "random"
    W, b, a, c, X = _draw_net(rng, zero_output)
    n = len(X)
    net0 = _Net(W, b, a, c, X, [ZERO] * n, activation, "square")
    if loss == "hinge":             # put one output on +-1 through c (more may follow)
        k = rng.randrange(n)
        c = c + rng.choice((-1, 1)) - net0.f[k]
        net0 = _Net(W, b, a, c, X, [ZERO] * n, activation, "square")
    uk = net0.unit_kinks()
    if len(uk) > 8:
        return None
    concave = rng.choice(uk) if (target == "concave" and uk) else None
    if target == "concave" and concave is None:
        target = "perturbed"
    family = f"{loss}/{target}" + ("/zero_a" if zero_output else "")
    f = net0.f

    if loss == "square":
        rho = None
        if target in ("stationary", "perturbed"):
            rho = _square_residuals(net0, rng)
            if rho is None:
                rho = [ZERO] * n if (target == "stationary" and rng.random() < 0.15) else None
                family += "/zero_loss" if rho is not None else ""
            if rho is not None and target == "perturbed":
                i = rng.randrange(n)
                rho[i] += rng.choice((F(-1, 2), F(-1, 4), F(1, 4), F(1, 2)))
        elif target == "concave":
            rho = _square_residuals(net0, rng, concave_kink=concave)
        if rho is None:
            family = f"{loss}/random" + ("/zero_a" if zero_output else "")
            rho = [rng.choice((ZERO, ZERO, F(-1), F(-1, 2), F(1, 2), F(1))) for _ in range(n)]
        y = [fi - ri for fi, ri in zip(f, rho)]
    elif loss == "hinge":
        patterns = list(itertools.product((-1, 1), repeat=n))
        rng.shuffle(patterns)
        y = trivial = None
        for pat in patterns[:32]:
            net = _Net(W, b, a, c, X, [F(v) for v in pat], activation, "hinge")
            spec = []
            for i in range(n):
                margin = net.y[i] * net.f[i]
                if margin == 1:
                    lo, hi = sorted((ZERO, -net.y[i]))
                    spec.append(("interval", lo, hi))
                else:
                    spec.append(("fixed", net.smooth_coefficient(i)))
            if target == "random":
                y = pat
                break
            if target == "concave" and concave[0] in [i for i in range(n) if spec[i][0] == "fixed"] \
                    and spec[concave[0]][1] == 0:
                continue
            if _feasible_float(net, spec, concave if target == "concave" else None):
                if output_space_minimum(net) and rng.random() < 0.8:
                    trivial = trivial or list(pat)      # prefer minima that are not global in f
                    continue
                y = list(pat)
                if target == "perturbed":       # a stationary labelling with one label flipped
                    k = rng.randrange(n)
                    y[k] = -y[k]
                break
        if y is None and trivial is not None:
            y = trivial
        if y is None:
            family = f"{loss}/random" + ("/zero_a" if zero_output else "")
            y = patterns[0]
        y = [F(v) for v in y]
    else:  # absolute
        y = trivial = None
        net = _Net(W, b, a, c, X, list(f), activation, "square")
        for _ in range(40):
            cats = [rng.choice(("interp", "interp", "above", "below")) for _ in range(n)]
            spec = [("interval", -ONE, ONE) if cat == "interp" else
                    ("fixed", -ONE if cat == "above" else ONE) for cat in cats]
            if target in ("random", "perturbed") or \
                    _feasible_float(net, spec, concave if target == "concave" else None):
                cand = [fi if cat == "interp" else
                        fi + rng.choice((F(1, 2), ONE, F(2))) * (1 if cat == "above" else -1)
                        for fi, cat in zip(f, cats)]
                if target != "random" and rng.random() < 0.8 and output_space_minimum(
                        _Net(W, b, a, c, X, cand, activation, "absolute")):
                    trivial = trivial or cand           # prefer minima that are not global in f
                    continue
                y = cand
                break
        if y is None and trivial is not None:
            y = trivial
        if y is None:
            family = f"{loss}/random" + ("/zero_a" if zero_output else "")
            y = [fi + rng.choice((ZERO, ZERO, F(-1), F(1, 2))) for fi in f]
    inst = _instance(W, b, a, c, X, y, activation, loss, family, seed)
    net = _Net(inst.W, inst.b, inst.a, inst.c, inst.X, inst.y, inst.activation, inst.loss)
    if len(net.unit_kinks()) + len(net.loss_kinks()) > MAX_KINKS:
        return None
    return inst


def random_instance(seed: int, zero_output: Optional[bool] = None) -> Instance:
    """A reproducible random instance (see the module docstring); retries internally.

    ``zero_output=True`` forces one output weight to 0 (default: 10% of the instances).
    """
    for attempt in range(100):
        inst = _try_instance(random.Random(seed * 1009 + attempt), seed, zero_output)
        if inst is not None:
            return inst
    raise RuntimeError(f"no instance for seed {seed}")


# =============================================================================================
# Comparison with certify
# =============================================================================================

@dataclass
class Comparison:
    """One instance compared: certify's verdict, the oracle's, and every failed check."""

    instance: Instance
    oracle: OracleResult
    certify_verdict: str
    certify_stationary: Optional[bool]
    problems: list            # disagreements and failed certificate checks (must stay empty)
    seconds_certify: float
    seconds_oracle: float
    notes: list = field(default_factory=list)   # suspicious but not wrong (see compare)

    @property
    def agree(self) -> bool:
        return not self.problems


def _float_point(inst: Instance, d, t, e=None) -> list:
    """The float64 point ``theta + t d + t^2/2 e`` as numpy computes it, as exact Fractions."""
    theta = np.array([float(v) for v in inst.theta])
    d = np.asarray(d, dtype=np.float64)
    new = theta + t * d
    if e is not None:
        new = theta + t * d + 0.5 * t * t * np.asarray(e, dtype=np.float64)
    return [Fraction(float(v)) for v in new]


def compare(inst: Instance, oracle_result: Optional[OracleResult] = None) -> Comparison:
    """Run ``certify.check`` on ``inst`` and compare with the oracle (see benchmarks/bruteforce)."""
    import time

    import certify

    t0 = time.perf_counter()
    orc = oracle(inst) if oracle_result is None else oracle_result
    t1 = time.perf_counter()
    args = inst.certify_args()
    model = args.pop("model")
    X, y = args.pop("X"), args.pop("y")
    report = certify.check(model, X, y, **args)
    t2 = time.perf_counter()
    v = report.verdict.value
    stationary = (report.first_order or {}).get("stationary")
    problems, notes = [], []
    o = orc.verdict
    if v == "local_min" and o in ("not_stationary", "saddle"):
        problems.append(f"UNSOUND local_min: oracle says {o} ({orc.reason})")
    if v in ("not_stationary", "saddle") and o == "local_min":
        problems.append(f"UNSOUND {v}: oracle proves a local minimum ({orc.reason})")
    if v == "saddle" and o == "not_stationary":
        problems.append(f"certify says saddle (d-stationary) but oracle proves L' < 0 ({orc.reason})")
    if v == "not_stationary" and orc.d_stationary:
        problems.append(f"certify says not_stationary but oracle proves d-stationarity ({orc.reason})")
    # certificates
    if v in ("not_stationary", "saddle"):
        ref = report.refutation or {}
        if ref.get("verified") is not True:
            problems.append(f"{v} without a verified refutation")
        elif ref.get("direction") is None or ref.get("step") is None:
            problems.append(f"{v}: refutation has no direction/step")
        else:
            e = ref.get("curvature_direction")
            pt = exact.unflatten(_float_point(inst, ref["direction"], float(ref["step"]), e),
                                 exact.shapes_of(inst.layers))
            before = exact.loss(inst.layers, inst.X, inst.y, inst.activation, inst.loss)
            after = exact.loss(pt, inst.X, inst.y, inst.activation, inst.loss)
            if not after < before:
                problems.append(f"{v}: exact loss does not decrease at certify's point "
                                f"({after} >= {before})")
            net = _Net(inst.W, inst.b, inst.a, inst.c, inst.X, inst.y, inst.activation, inst.loss)
            d_q = [Fraction(float(x)) for x in np.asarray(ref["direction"], dtype=np.float64)]
            e_q = None if e is None else [Fraction(float(x)) for x in np.asarray(e, dtype=np.float64)]
            coeffs = curve_expansion(net, d_q, e_q)
            if eventual_sign(coeffs) >= 0:
                # coefficients of rounding size (d and e are floats) are not counted
                size = max((abs(cf) for cf in coeffs), default=ZERO)
                cleaned = [ZERO if abs(cf) <= 1e-12 * max(size, ONE) else cf for cf in coeffs]
                if eventual_sign(cleaned) >= 0:
                    lead = next((f"t^{k} coefficient {float(cf):.3g}" for k, cf in enumerate(coeffs)
                                 if cf), "identically 0")
                    notes.append(f"{v}: certify's curve is not a descent curve near theta (exact "
                                 f"expansion: {lead}); only its stored point at step "
                                 f"{float(ref['step']):.3g} is lower")
    if v == "saddle" and o == "unsure" and report.refutation and report.refutation.get("verified"):
        if not any("not a descent curve" in nt for nt in notes):
            notes.append("saddle confirmed: certify's curve is an exact descent curve (the oracle's own "
                         "escape search found none)")
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
    return Comparison(inst, orc, v, stationary, problems, t2 - t1, t1 - t0, notes)
