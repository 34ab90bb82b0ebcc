"""Claim (2) by construction: an exact rational local minimum next to a float point.

A float64 point near an exact construction with non-dyadic numbers (GT-1's ``4/3``, GT-4's ``4/5``)
is not exactly stationary: exact arithmetic refutes it by ``1e-33``. Where the minimum is a *valley*
(the affine-cell and one-hidden-layer cell-convexity theorems, which need no Hessian and allow flat
directions), an existence theorem with a radius has nothing to hold on to -- but the exact minimum
can be *written down*: the first-order conditions of these kinds are linear in a few coordinates.

* **Affine cell** (square loss, no unit kink, every hidden unit one slope on every sample): the
  last layer enters linearly, ``f = W_L phi(x) + b_L`` with the hidden features ``phi`` fixed near
  theta. The exact least-squares last layer (:func:`certify.exact.linalg.solve_consistent` on the
  normal equations, the coordinates outside a float-chosen basis kept at their values, so the move
  is small) gives ``theta*``; it is a local minimum when its residual is exactly orthogonal to
  ``[X, 1]`` (then ``f*`` is the best affine fit and the affine-cell argument applies).
* **One hidden layer, scalar output, cell convexity**: in ``u_j = a_j (w_j, b_j)`` the outputs are
  linear on the cell and the held kinks are linear equations ``u_j . xbar_i = 0``. For the square loss
  the KKT system of that equality-constrained least-squares problem, for the absolute and hinge
  losses the held ties ``f_i = y_i`` with the held kinks, is solved exactly near ``u(theta)``, mapped
  back with ``(w_j, b_j) = u_j / a_j`` (the ``a_j`` unchanged), and ``theta*`` must then pass the
  exact first-order decision -- d-stationarity, which the theorem turns into a local minimum. The
  kinks held are the float64 point's zeros up to rounding: exact arithmetic sees none of them.

Both return ``theta*`` as exact rationals with ``r = ||theta* - theta||`` (rounded up); the caller
re-checks ``theta*`` with the exact engine and ``verify`` does so again, with fractions only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..data import Problem
from .forward import exact_problem, forward
from .kinks import exact_kinks
from .linalg import solve_consistent, tick
from .rational import QArray


@dataclass
class Snap:
    """An exact rational point ``theta_star`` at distance at most ``radius`` from the float point."""

    theta_star: QArray | None
    method: str
    reason: str = ""
    radius: float = float("inf")
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.theta_star is not None

    def to_dict(self) -> dict:
        out = {"method": self.method, "radius": self.radius, "reason": self.reason or None, **self.details}
        if self.theta_star is not None:
            out["theta_star"] = self.theta_star.to_strings()
        return out


def distance_upper(theta_star: QArray, theta: np.ndarray) -> float:
    """A float64 upper bound on ``||theta_star - theta||_2`` (exact square, rounded up)."""
    diff = (theta_star - QArray.from_float(theta)).reduce()
    sq = sum((Fraction(int(v), diff.den) ** 2 for v in diff.num.ravel()), Fraction(0))
    return _sqrt_up(sq)


def _sqrt_up(q: Fraction) -> float:
    if q == 0:
        return 0.0
    r = math.sqrt(float(q))
    while Fraction(r) ** 2 < q:
        r = math.nextafter(r, math.inf)
    return r


# ---------------------------------------------------------------------------- affine cell
def snap_affine(problem: Problem) -> Snap:
    """The exact least-squares last layer of a locally affine network (square loss); see the module."""
    if problem.loss.name != "square" or problem.weight_decay:
        return Snap(None, "affine_last_layer", "needs the square loss without weight decay")
    ep = exact_problem(problem)
    fwd = forward(ep)
    kinks, _ = exact_kinks(ep, fwd)
    if kinks.n_unit:
        return Snap(None, "affine_last_layer", "a unit sits on a kink")
    net = problem.network
    for l, z in enumerate(fwd.pre[:-1], start=1):
        sg = z.sign()
        if sg.size and np.any(sg != sg[0:1, :]):
            return Snap(None, "affine_last_layer", f"layer {l} is not affine near theta")
    n = problem.n_samples
    Phi = QArray.concatenate([fwd.post[-1], QArray.from_values(np.ones((n, 1), dtype=np.int64))], axis=1)
    G = (Phi.T @ Phi).reduce()
    W, b = ep.layers()[-1]
    w0, b0 = net.offsets[-1]
    theta = ep.theta.copy()
    Y = ep.Y
    for c in range(net.n_outputs):
        current = QArray.concatenate([W[c], b[c:c + 1]])
        rhs = (Phi.T @ Y[:, c]).reduce()
        x, residual, _, _ = solve_consistent(G, rhs, default=current)
        if residual.any():
            return Snap(None, "affine_last_layer", "the normal equations of the last layer have no exact solution")
        k = W.shape[1]
        theta[w0 + c * k: w0 + (c + 1) * k] = x[:k]
        theta[b0 + c: b0 + c + 1] = x[k:]
    theta = theta.reduce()
    ok, why = affine_optimal(problem, theta)
    if not ok:
        return Snap(None, "affine_last_layer", why)
    return Snap(theta, "affine_last_layer", radius=distance_upper(theta, problem.theta),
                details={"changed": "last layer"})


def affine_optimal(problem: Problem, theta: QArray) -> tuple[bool, str]:
    """At the rational ``theta``: locally affine, and its residual exactly orthogonal to ``[X, 1]``."""
    ep = exact_problem(problem, theta)
    fwd = forward(ep)
    kinks, _ = exact_kinks(ep, fwd)
    if kinks.n_unit:
        return False, "a unit sits on a kink at theta*"
    for l, z in enumerate(fwd.pre[:-1], start=1):
        sg = z.sign()
        if sg.size and np.any(sg != sg[0:1, :]):
            return False, f"layer {l} is not affine near theta*"
    n = problem.n_samples
    Xbar = QArray.concatenate([ep.X, QArray.from_values(np.ones((n, 1), dtype=np.int64))], axis=1)
    R = (fwd.output - ep.Y).reduce()
    if (Xbar.T @ R).reduce().any():
        return False, "at theta* the residual is not orthogonal to [X, 1]: not the best affine fit"
    return True, "the residual is exactly orthogonal to [X, 1]: the best affine fit"


# ---------------------------------------------------------------------------- one hidden layer
#: the convex losses the cell construction handles: the square loss (a least-squares KKT system) and
#: the piecewise-linear ones, whose minimum on a cell sits where its held ties are exact (``f_i = y_i``:
#: a zero residual of the absolute loss, a margin of exactly 1 for the hinge loss with ``y = +-1``)
CELL_LOSSES = ("square", "absolute", "hinge")


def cell_applies(problem: Problem, a) -> str:
    """Why the cell-convexity theorem (REFERENCES A4.5-1) cannot apply to ``problem``'s class, or ""."""
    net = problem.network
    if net.n_layers != 2 or net.n_outputs != 1:
        return "needs one hidden layer and one output"
    if problem.loss.name not in CELL_LOSSES or problem.weight_decay:
        return "needs the square, absolute or hinge loss and no weight decay"
    if any(v == 0 for v in a):
        return "a unit has output weight 0"
    return ""


def exact_context(problem: Problem) -> tuple:
    """``(exact problem, exact forward pass, exact kinks)`` at ``problem``'s point: what
    :func:`snap_cell` builds on, computed once when it is called for several kink sets."""
    ep = exact_problem(problem)
    fwd = forward(ep)
    return ep, fwd, exact_kinks(ep, fwd)[0]


def snap_cell(problem: Problem, kinks=None, *, context: tuple | None = None) -> Snap:
    """The exact point of theta's cell in ``u = a (w, b)`` that the cell-convexity theorem needs (one
    hidden layer, scalar output, a convex loss of :data:`CELL_LOSSES`, every output weight nonzero).

    The kinks held are those of ``kinks`` that are zero up to rounding (the float structure a float64
    point sits on: exact arithmetic sees none of them as zeros) and every exact zero. In ``u`` the
    outputs are linear on the cell (``f = Phi u``) and a held unit kink is ``u_j . xbar_i = 0``, so

    * square loss: the KKT system of ``min 1/2 ||Phi u - y||^2 s.t. A u = 0`` (see the module);
    * absolute / hinge loss (piecewise linear): the held ties ``Phi_i u = y_i`` with ``A u = 0`` --
      on the cell the loss is linear off the ties, so a point that keeps every held kink and tie exact
      and every other sign has the same subdifferential in ``u`` as the float point's structure.

    Each is solved exactly next to ``u(theta)`` (the coordinates outside a float-chosen basis keep
    their values, so the move is of the size of the equations' residual); ``theta*`` must then pass the
    exact first-order decision, which the theorem turns into a local minimum. ``context``: the point's
    :func:`exact_context`, when the caller already has it.
    """
    net = problem.network
    a = net.weights[1][0] if net.n_layers == 2 else np.zeros(0)
    why = cell_applies(problem, a)
    if why:
        return Snap(None, "cell_u", why)
    ep, fwd, exact = context if context is not None else exact_context(problem)
    n, d = problem.X.shape
    h = a.size
    Xbar = QArray.concatenate([ep.X, QArray.from_values(np.ones((n, 1), dtype=np.int64))], axis=1)
    z = fwd.pre[0]
    s_pos, s_neg = ep.s_pos, ep.s_neg
    held = {(int(i), int(j)) for i, j in zip(exact.unit_sample, exact.unit_index)}
    ties = {int(i) for i in exact.loss_sample}
    if kinks is not None:
        held |= {(int(i), int(j)) for i, j, ok in zip(kinks.unit_sample, kinks.unit_index, kinks.unit_rounding)
                 if ok}
        ties |= {int(i) for i, ok in zip(kinks.loss_sample, kinks.loss_rounding) if ok}
    held, ties = sorted(held), sorted(ties)
    # features of u_j: the unit's slope on its side of the kink (a held kink contributes 0 either way)
    sign = z.sign()
    blocks = []
    for j in range(h):
        slope = QArray.from_values([[0 if (i, j) in held else (s_pos if sign[i, j] > 0 else s_neg)] for i in range(n)])
        blocks.append(Xbar * slope)
    tick()
    Phi = QArray.concatenate(blocks + [QArray.from_values(np.ones((n, 1), dtype=np.int64))], axis=1).reduce()
    m_u = h * (d + 1) + 1
    A = QArray.zeros((len(held), m_u))
    for k, (i, j) in enumerate(held):
        A[k, j * (d + 1):(j + 1) * (d + 1)] = Xbar[i]
    A = A.reduce()
    W1, b1 = ep.layers()[0]
    aq = ep.layers()[1][0][0]
    u0 = [QArray.concatenate([W1[j], b1[j:j + 1]]) * aq[j:j + 1] for j in range(h)]
    current = QArray.concatenate(u0 + [ep.layers()[1][1]]).reduce()
    if problem.loss.name == "square":
        # KKT of min 1/2 ||Phi u - y||^2 s.t. A u = 0:  [Phi'Phi  A'; A 0] [u; nu] = [Phi'y; 0]
        G = (Phi.T @ Phi).reduce()
        tick()
        K = QArray.concatenate([QArray.concatenate([G, A.T], axis=1),
                                QArray.concatenate([A, QArray.zeros((A.shape[0], A.shape[0]))], axis=1)], axis=0)
        rhs = QArray.concatenate([(Phi.T @ ep.Y[:, 0]).reduce(), QArray.zeros(A.shape[0])])
        x, residual, _, _ = solve_consistent(K.reduce(), rhs,
                                             default=QArray.concatenate([current, QArray.zeros(A.shape[0])]))
        what = "the piece's KKT system has no exact solution"
    else:
        T = Phi[ties] if ties else QArray.zeros((0, m_u))
        E = QArray.concatenate([A, T], axis=0).reduce()
        rhs = QArray.concatenate([QArray.zeros(A.shape[0]), ep.Y[ties, 0] if ties else QArray.zeros(0)])
        if E.shape[0] == 0:
            x, residual = current, QArray.zeros(0)
        else:
            x, residual, _, _ = solve_consistent(E, rhs.reduce(), default=current)
        what = "the held kinks and ties have no exact common solution"
    if residual.any():
        return Snap(None, "cell_u", what)
    theta = ep.theta.copy()
    w0, b0 = net.offsets[0]
    _, c0 = net.offsets[1]
    for j in range(h):
        uj = x[j * (d + 1):(j + 1) * (d + 1)]
        inv = QArray.from_values([Fraction(1) / aq[j:j + 1].to_fractions()[0]])
        theta[w0 + j * d: w0 + (j + 1) * d] = uj[:d] * inv
        theta[b0 + j: b0 + j + 1] = uj[d:] * inv
    theta[c0:c0 + 1] = x[h * (d + 1):h * (d + 1) + 1]
    theta = theta.reduce()
    return Snap(theta, "cell_u", radius=distance_upper(theta, problem.theta),
                details={"held_kinks": len(held), "held_ties": len(ties), "changed": "hidden layer and output bias"})
