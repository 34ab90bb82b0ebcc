"""Branch and bound over concave and nested kinks: a d-stationarity certificate numpy re-checks.

Where ``L'(theta; .)`` is not convex -- a concave kink, or a kink feeding another one -- the first-order
question ``min_d L'(theta; d) >= 0`` is a MILP, and HiGHS's proven bound is a claim ``verify`` can
only *attest*. Here the same question is answered by a tree whose leaves each carry a certificate
numpy re-checks, in the spirit of VIPR (Cheung, Gleixner & Steffy 2017, *Verifying integer
programming results*):

* kinks with identical rows are merged and the tree branches only on what is left that is concave
  or feeds another kink (:func:`certify.formulate.leaf.branch_set`; pairs of a concave and a
  stronger convex kink on one row, the usual way LIKQ fails at a minimum, need no branching);
* at every node the kinks not yet fixed are *relaxed* where that is possible (a kink feeding only
  loss kinks: ``r_k >= max(v_k, 0)``), HiGHS solves the node's LP and its duals, polished to close
  the multiplier equations to rounding (:func:`polish`), prove the node: it is a leaf, **pruned by
  its bound** -- the whole subtree below it needs no visit;
* otherwise the node branches on the next kink (those that cannot be relaxed first, upstream first);
  at a node with every kink fixed the LP is exact: its direction, if the tangent network confirms a
  descent, ends the search (``theta`` is not d-stationary; the refutation is checked on the loss),
  else its duals are the leaf's Farkas certificate.

The leaves cover every direction (every internal node has both children), so proved leaves prove
d-stationarity. :func:`certify.checks.check_tree` re-checks the tree's shape and every leaf's
certificate against the model rebuilt from the network, without a solver. ``MAX_NODES`` caps the
tree; beyond it, or when a full leaf's multipliers do not close, the MILP decides and its bound stays
attested (the report says why the tree was not used).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from .formulate.leaf import Node, NotRelaxable, branch_set, merged_model, node, node_lp, node_residual, relaxable
from .solvers import SolveStatus, solve
from .tangent import FirstOrderModel

log = logging.getLogger(__name__)

#: largest tree searched (nodes)
MAX_NODES = 4095
#: deepest proof tree returned as a certificate: the report stores the tree as nested JSON, which
#: Python's JSON reader parses recursively (within its recursion limit, 1,000; ``verify``'s own walk
#: keeps a stack). A deeper search still ends a descent it finds at a leaf; it cannot end in a
#: certificate.
MAX_PROOF_DEPTH = 400


@dataclass
class TreeOutcome:
    """``stationary`` True (``certificate`` set), False (``direction``, ``value``) or None (``reason``)."""

    stationary: bool | None
    certificate: dict = field(default_factory=dict)
    direction: np.ndarray | None = None
    value: float | None = None
    reason: str = ""
    solver_calls: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)


class _Stop(Exception):
    def __init__(self, outcome: TreeOutcome):
        super().__init__(outcome.reason)
        self.outcome = outcome


def decide_tree(fo: FirstOrderModel, *, time_limit: float = 60.0, max_nodes: int | None = None) -> TreeOutcome:
    """Search the tree of ``fo`` (module docstring); at most ``max_nodes`` (default :data:`MAX_NODES`) nodes."""
    t0 = time.perf_counter()
    max_nodes = MAX_NODES if max_nodes is None else max_nodes
    mfo, group = merged_model(fo)
    B = branch_set(mfo)
    ok_relax = relaxable(mfo)
    order = [int(k) for k in B if not ok_relax[k]] + [int(k) for k in B if ok_relax[k]]
    tol = max(fo.tolerance(), 1e-300)
    p = fo.n_params
    stats = {"branch_kinks": int(B.size), "nodes": 0, "leaves": 0, "relaxed_leaves": 0, "depth": 0, "lp_s": 0.0}
    leaves: list = []
    calls: list = []

    def lp(nd: Node):
        prog, layout = node_lp(nd)
        res = solve(prog, time_limit=max(1e-3, time_limit - (time.perf_counter() - t0)))
        stats["lp_s"] += res.time_s
        if len(calls) < 3:
            calls.append({"purpose": "first-order tree node LP", **res.to_dict()})
        return res, layout

    def settle(signs: list):
        """The node whose first ``len(signs)`` kinks of ``order`` have ``signs``: a leaf (its entry in
        the tree), or None when it must branch. Raises _Stop when the search ends (a descent found,
        the node or time limit, a leaf that does not close)."""
        stats["nodes"] += 1
        if stats["nodes"] > max_nodes:
            raise _Stop(TreeOutcome(None, reason=f"the first-order tree needs more than {max_nodes} nodes "
                                                 f"({B.size} kinks to branch on)"))
        if time.perf_counter() - t0 > time_limit:
            raise _Stop(TreeOutcome(None, reason=f"the first-order tree ran out of time after {stats['nodes']} "
                                                 f"nodes"))
        fixed, free = order[:len(signs)], order[len(signs):]
        nd = None
        if ok_relax[free].all():
            try:
                nd = node(mfo, fixed, signs)
            except NotRelaxable:
                nd = None
        if nd is not None:
            res, layout = lp(nd)
            if not free and (res.status != SolveStatus.OPTIMAL or res.x is None):
                raise _Stop(TreeOutcome(None, reason=f"a leaf LP of the first-order tree ended {res.raw_status}"))
            if res.status == SolveStatus.OPTIMAL and res.x is not None:
                if not free:
                    d = np.clip(res.x[:p], -1.0, 1.0)
                    value = fo.evaluate(d)               # the tangent network, not the LP
                    if value < -tol:
                        raise _Stop(TreeOutcome(False, direction=d, value=value))
                if res.objective is None or res.objective >= -tol:
                    cert = node_certificate(nd, res, layout)
                    if cert is not None:
                        leaves.append(cert)
                        stats["depth"] = max(stats["depth"], len(signs))
                        stats["leaves"] += 1
                        stats["relaxed_leaves"] += int(bool(free))
                        return {"leaf": len(leaves) - 1}
            if not free:
                raise _Stop(TreeOutcome(None, reason=f"the leaf with signs {dict(zip(fixed, signs))} has no "
                                                     f"descent, but its multipliers do not close to rounding"))
        return None

    def visit():
        """Depth first, the minus side of a kink before its plus side, with an explicit stack: a
        path through a thousand kinks (nested kinks of collapsed units) is deeper than Python's
        recursion limit. The kinks fixed at a node are always a prefix of ``order``."""
        root = {}
        stack = [(root, "tree", [])]
        while stack:
            parent, side, signs = stack.pop()
            entry = settle(signs)
            if entry is None:
                entry = {"kink": order[len(signs)], "minus": None, "plus": None}
                stack.append((entry, "plus", signs + [1]))
                stack.append((entry, "minus", signs + [-1]))
            parent[side] = entry
        return root["tree"]

    try:
        tree = visit()
    except _Stop as stop:
        out = stop.outcome
        out.solver_calls = calls
        stats["time_s"] = time.perf_counter() - t0
        out.stats = stats
        return out
    stats["time_s"] = time.perf_counter() - t0
    if stats["depth"] > MAX_PROOF_DEPTH:
        return TreeOutcome(None, reason=f"the first-order tree proves every leaf, but it is {stats['depth']} kinks "
                                        f"deep (a certificate holds at most {MAX_PROOF_DEPTH})",
                           solver_calls=calls, stats=stats)
    certificate = {"kind": "branch_and_bound", "branch": [int(k) for k in B],
                   "branch_kink_ids": [int(fo.kink_ids[np.nonzero(group == k)[0][0]]) for k in B],
                   "tree": tree, "leaves": leaves,
                   "n_leaves": len(leaves), "n_nodes": stats["nodes"], "relaxed_leaves": stats["relaxed_leaves"],
                   "full_tree_leaves": 2 ** int(B.size),
                   "max_residual_ratio": max((c["residual_ratio"] for c in leaves), default=0.0)}
    return TreeOutcome(True, certificate=certificate, solver_calls=calls, stats=stats)


def node_certificate(nd: Node, res, layout: dict) -> dict | None:
    """A node's multipliers from its LP's row duals, polished to close both equations to rounding."""
    if res.row_duals is None:
        return None
    one = nd.one
    J = layout["gen"]
    y = np.abs(res.row_duals)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.clip(np.where(one.gamma > 0, y[:J] / one.gamma, 0.0), 0.0, 1.0)
    pos = J
    pis = []
    for m in layout["multi"]:
        z = y[pos:pos + m]
        pis.append(z / z.sum() if z.sum() > 0 else np.full(m, 1.0 / m))
        pos += m
    F, U = layout["region"], layout["relaxed"]
    mu = y[pos:pos + F]
    nu = y[pos + F:pos + F + U]
    xi = y[pos + F + U:pos + F + 2 * U]
    out = polish(nd, lam, pis, mu, nu, xi)
    if out is None:
        return None
    lam, pis, mu, nu, xi = out
    rho, bound = node_residual(nd, lam, pis, mu, nu, xi)
    if not np.all(np.abs(rho) <= bound):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.max(np.where(rho == 0, 0.0, np.abs(rho) / bound), initial=0.0))
    return {"fixed": [int(k) for k in nd.fixed], "signs": [int(s) for s in nd.signs],
            "relaxed": [int(k) for k in nd.free], "lambda": lam, "pi": pis, "mu": mu, "nu": nu, "xi": xi,
            "residual_ratio": ratio}


def _columns(nd: Node):
    """The certificate's linear system: columns (for lambda, pi, mu, nu, xi) over the ``d`` and ``r``
    equations, the right-hand side, bounds, and the simplex rows."""
    one = nd.one
    p, J, U, F = one.g.size, one.n_generators, nd.n_relaxed, nd.region.shape[0]
    sizes = [S.shape[0] for _, S in one.multi]
    cols_d, cols_r = [], []
    if J:
        cols_d.append(one.a.T.multiply(one.gamma[None, :]).toarray())
        cols_r.append((nd.e * one.gamma[:, None]).T if U else np.zeros((0, J)))
    for (G, S), Eq in zip(one.multi, nd.E):
        cols_d.append(np.asarray(G.T @ S.T, dtype=np.float64) / one.n)
        cols_r.append(Eq.T / one.n if U else np.zeros((0, S.shape[0])))
    cols_d.append(-nd.region.T.toarray())
    cols_r.append(np.zeros((U, F)))
    cols_d.append(nd.relaxed.T.toarray())
    cols_r.append(-np.eye(U))
    cols_d.append(np.zeros((p, U)))
    cols_r.append(-np.eye(U))
    C = np.vstack([np.hstack(cols_d), np.hstack(cols_r)])
    rhs = -np.concatenate([one.g, nd.kappa])
    n_var = C.shape[1]
    lo = np.zeros(n_var)
    hi = np.concatenate([np.ones(J), np.full(n_var - J, np.inf)])
    E = np.zeros((len(sizes), n_var))
    pos = J
    for q, m in enumerate(sizes):
        E[q, pos:pos + m] = 1.0
        pos += m
    return C, rhs, lo, hi, E, sizes


def polish(nd: Node, lam, pis, mu, nu, xi, rounds: int = 6):
    """Close a node's equations to rounding from approximate multipliers (an active-set refinement).

    Multipliers within a small distance of a bound are put on it, the others moved by the
    least-norm correction that solves the equations (and ``sum pi_q = 1``), with one step of
    iterative refinement; one pushed out of its set is fixed at the bound and the solve repeated.
    Returns ``(lambda, pis, mu, nu, xi)`` or None.
    """
    from scipy.linalg import lstsq
    C, rhs, lo, hi, E, sizes = _columns(nd)
    J = nd.one.n_generators
    F, U = nd.region.shape[0], nd.n_relaxed
    x = np.concatenate([np.asarray(lam, float)] + [np.asarray(p_, float) for p_ in pis]
                       + [np.asarray(mu, float), np.asarray(nu, float), np.asarray(xi, float)])
    scale = max(float(np.abs(C).max(initial=0.0)), 1e-300)
    A = np.vstack([C, E * scale])
    b = np.concatenate([rhs, np.ones(len(sizes)) * scale])
    span = np.maximum(1.0, np.abs(x))
    at_lo = x <= lo + 1e-9 * span
    at_hi = x >= hi - 1e-9 * span
    for _ in range(rounds):
        free = np.nonzero(~(at_lo | at_hi))[0]
        x = np.where(at_lo, lo, np.where(at_hi, hi, x))
        if free.size:
            Af = A[:, free]
            for _ in range(2):                          # the correction, then one refinement step
                x[free] += lstsq(Af, b - A @ x, lapack_driver="gelsy", check_finite=False)[0]
        below, above = x < lo - 1e-12, x > hi + 1e-12
        if not (below.any() or above.any()):
            x = np.clip(x, lo, hi)
            pos = J
            pis_o = []
            for m in sizes:
                pis_o.append(x[pos:pos + m])
                pos += m
            return x[:J], pis_o, x[pos:pos + F], x[pos + F:pos + F + U], x[pos + F + U:pos + F + 2 * U]
        at_lo |= below
        at_hi |= above
    return None
