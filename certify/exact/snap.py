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
* **One hidden layer, scalar output, cell convexity**: in ``u_j = a_j (w_j, b_j)`` the piece's loss
  is a convex quadratic and the held kinks are linear equations ``u_j . xbar_i = 0``; the KKT system
  of that equality-constrained least-squares problem is solved exactly near ``u(theta)``, mapped back
  with ``(w_j, b_j) = u_j / a_j`` (the ``a_j`` unchanged), and ``theta*`` must then pass the exact
  first-order decision -- d-stationarity, which the theorem turns into a local minimum.

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
from .linalg import solve_consistent
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
def snap_cell(problem: Problem) -> Snap:
    """The exact KKT point of theta's piece in ``u = a (w, b)`` (one hidden layer, scalar output,
    square loss, every output weight nonzero); see the module docstring."""
    net = problem.network
    if (net.n_layers != 2 or net.n_outputs != 1 or problem.loss.name != "square" or problem.weight_decay):
        return Snap(None, "cell_u", "needs one hidden layer, one output, the square loss, no weight decay")
    a = net.weights[1][0]
    if np.any(a == 0):
        return Snap(None, "cell_u", "a unit has output weight 0")
    ep = exact_problem(problem)
    fwd = forward(ep)
    kinks, _ = exact_kinks(ep, fwd)
    n, d = problem.X.shape
    h = a.size
    Xbar = QArray.concatenate([ep.X, QArray.from_values(np.ones((n, 1), dtype=np.int64))], axis=1)
    z = fwd.pre[0]
    s_pos, s_neg = ep.s_pos, ep.s_neg
    sign = z.sign()
    # features of u_j: the slope on the unit's side (s_pos on a kink: both sides agree there)
    blocks = []
    for j in range(h):
        slope = QArray.from_values([[s_pos if sg >= 0 else s_neg] for sg in sign[:, j]])
        blocks.append(Xbar * slope)
    Phi = QArray.concatenate(blocks + [QArray.from_values(np.ones((n, 1), dtype=np.int64))], axis=1)
    m_u = h * (d + 1) + 1
    held = [(int(i), int(j)) for i, j in zip(kinks.unit_sample, kinks.unit_index)]
    A = QArray.zeros((len(held), m_u))
    for k, (i, j) in enumerate(held):
        A[k, j * (d + 1):(j + 1) * (d + 1)] = Xbar[i]
    A = A.reduce()
    # KKT of min 1/2 ||Phi u - y||^2 s.t. A u = 0:  [Phi'Phi  A'; A 0] [u; nu] = [Phi'y; 0]
    G = (Phi.T @ Phi).reduce()
    K = QArray.concatenate([QArray.concatenate([G, A.T], axis=1),
                            QArray.concatenate([A, QArray.zeros((A.shape[0], A.shape[0]))], axis=1)], axis=0)
    rhs = QArray.concatenate([(Phi.T @ ep.Y[:, 0]).reduce(), QArray.zeros(A.shape[0])])
    W1, b1 = ep.layers()[0]
    aq = ep.layers()[1][0][0]
    u0 = []
    for j in range(h):
        u0.append(QArray.concatenate([W1[j], b1[j:j + 1]]) * aq[j:j + 1])
    current = QArray.concatenate(u0 + [ep.layers()[1][1], QArray.zeros(A.shape[0])])
    x, residual, _, _ = solve_consistent(K.reduce(), rhs, default=current.reduce())
    if residual.any():
        return Snap(None, "cell_u", "the piece's KKT system has no exact solution")
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
                details={"held_kinks": len(held), "changed": "hidden layer and output bias"})
