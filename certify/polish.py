"""Polishing an approximate point (DESIGN.md §6).

A checkpoint from SGD or Adam is never exactly stationary and its kinks are never exactly zero.
``polish`` finds a nearby point ``theta*`` whose near-kinks are exact and whose reduced gradient is
zero, by Newton's method on the kink manifold ``M = {phi_k(theta) = 0 : k near-active}``:

* the near-active kinks are those within a loose relative tolerance ``tol_near`` (default 1e-4):
  unit pre-activations and loss ties;
* each iterate is projected onto ``M`` by Newton steps on ``phi(theta) = 0`` (exact in one step for
  first-layer kinks, which are linear in theta);
* the step solves the Newton system of ``L`` restricted to ``M`` (reduced Hessian, with a
  Levenberg shift when it is not positive definite) with a backtracking line search;
* it stops when the reduced gradient is zero to machine precision relative to the size of its terms.

Then ``theta*`` is certified like any point, and the report says how far it moved and what the loss
did. Polishing is a heuristic search for the point to certify, never part of a proof: every
certificate is about ``theta*``, exactly as stored in the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from .data import Problem
from .kinks import find_kinks
from .tangent import blocked_slopes, dense_hessian, loss_gradient, piece_slopes, switching_rows

DEFAULT_TOL_NEAR = 1e-4
MAX_POLISH_P = 3000


@dataclass
class PolishResult:
    theta: np.ndarray
    converged: bool
    iterations: int
    n_kinks: int
    distance: float
    loss_before: float
    loss_after: float
    reduced_gradient: float
    note: str = ""

    def to_dict(self) -> dict:
        return {"converged": self.converged, "iterations": self.iterations, "kinks_fixed": self.n_kinks,
                "distance": self.distance, "loss_before": self.loss_before, "loss_after": self.loss_after,
                "loss_change": self.loss_after - self.loss_before, "reduced_gradient": self.reduced_gradient,
                "note": self.note or None}


def _constraints(problem: Problem, spec):
    """Values and gradient rows of the held switching functions at the problem's point."""
    fwd = problem.network.forward(problem.X, with_scale=True)
    kinks = find_kinks(problem, fwd, 0.0)  # no kink blocked: all slopes from the current side
    D = blocked_slopes(problem, fwd, None)
    values, rows = [], []
    units = [s for s in spec if s[0] == "unit"]
    for l in sorted({s[1] for s in units}):
        sel = [s for s in units if s[1] == l]
        smp = np.array([s[2] for s in sel])
        unit = np.array([s[3] for s in sel])
        R, _ = switching_rows(problem, fwd, D, kinks, smp, l, unit)
        values.append(fwd.pre[l - 1][smp, unit])
        rows.append(R.toarray())
    outs = [s for s in spec if s[0] == "out"]
    if outs:
        C = problem.network.n_outputs
        smp = np.array([s[1] for s in outs])
        R, _ = switching_rows(problem, fwd, D, kinks, np.repeat(smp, C), problem.network.n_layers,
                              np.tile(np.arange(C), smp.size))
        R = R.toarray().reshape(smp.size, C, -1)
        for k, s in enumerate(outs):
            w, off = s[2], s[3]
            values.append(np.array([w @ fwd.output[s[1]] + off]))
            rows.append((w @ R[k])[None, :])
    if not rows:
        return np.zeros(0), np.zeros((0, problem.n_params))
    return np.concatenate(values), np.vstack(rows)


def _kink_spec(problem: Problem, tol_near: float) -> list:
    fwd = problem.network.forward(problem.X, with_scale=True)
    kinks = find_kinks(problem, fwd, tol_near)
    spec = [("unit", int(l), int(i), int(u)) for l, i, u in zip(kinks.unit_layer, kinks.unit_sample, kinks.unit_index)]
    if kinks.n_loss:
        vals, slopes = problem.loss.pieces(fwd.output, problem.Y)
        for i, g, act in zip(kinks.loss_sample, kinks.loss_group, kinks.loss_active):
            a0 = act[np.argmax(vals[i, g, act])]
            for b in act:
                if b == a0:
                    continue
                # (S_a0 - S_b) . f + (v_a0 - v_b - (S_a0 - S_b) . f) = 0 holds the tie
                w = slopes[i, g, a0] - slopes[i, g, b]
                off = (vals[i, g, a0] - vals[i, g, b]) - w @ fwd.output[i]
                spec.append(("out", int(i), w, float(off)))
    return spec


def _project(problem: Problem, theta: np.ndarray, spec, iters: int = 20) -> np.ndarray:
    for _ in range(iters):
        c, A = _constraints(problem.at(theta), spec)
        if c.size == 0 or np.abs(c).max() == 0:
            break
        step = np.linalg.lstsq(A, c, rcond=None)[0]
        new = theta - step
        if np.array_equal(new, theta):
            break
        theta = new
    return theta


def polish(problem: Problem, *, tol_near: float = DEFAULT_TOL_NEAR, max_iter: int = 60) -> PolishResult:
    """Newton on the kink manifold from ``problem``'s point; see the module docstring."""
    theta0 = problem.theta
    loss0 = problem.value()
    p = problem.n_params
    if p > MAX_POLISH_P:
        return PolishResult(theta0, False, 0, 0, 0.0, loss0, loss0, np.nan,
                            note=f"p = {p} is above the polishing limit ({MAX_POLISH_P})")
    spec = _kink_spec(problem, tol_near)
    theta = _project(problem, theta0.copy(), spec)
    converged = False
    red = np.inf
    it = 0
    for it in range(1, max_iter + 1):
        prob = problem.at(theta)
        fwd = prob.network.forward(prob.X)
        g = loss_gradient(prob, fwd)
        _, A = _constraints(prob, spec)
        N = sla.null_space(A) if A.shape[0] else np.eye(p)
        r = N.T @ g
        scale = _grad_scale(prob, fwd)
        red = float(np.abs(r).sum())
        if red <= 1e-13 * scale:
            converged = True
            break
        H = dense_hessian(prob, fwd, piece_slopes(prob, fwd), basis=N)
        Hr = N.T @ H
        Hr = 0.5 * (Hr + Hr.T)
        w = np.linalg.eigvalsh(Hr)
        shift = max(0.0, -w[0]) + 1e-10 * max(abs(w[-1]), 1e-300)
        y = np.linalg.solve(Hr + shift * np.eye(Hr.shape[0]), -r)
        base = prob.value()
        t = 1.0
        accepted = False
        for _ in range(30):
            cand = _project(problem, theta + t * (N @ y), spec)
            if problem.value(cand) <= base:
                theta, accepted = cand, True
                break
            t *= 0.5
        if not accepted:
            break
    return PolishResult(theta=theta, converged=converged, iterations=it, n_kinks=len(spec),
                        distance=float(np.linalg.norm(theta - theta0)), loss_before=loss0,
                        loss_after=problem.value(theta), reduced_gradient=red)


def _grad_scale(problem: Problem, fwd) -> float:
    from .tangent import backprop
    D = [np.abs(d) for d in piece_slopes(problem, fwd)]
    n = problem.n_samples
    gs, _ = backprop(problem, fwd, D, np.abs(problem.loss.gradient(fwd.output, problem.Y)) / n, absolute=True)
    return max(float(gs.sum()), 1e-300)


# ---------------------------------------------------------------------------- cell program
CELL_LOSSES = ("square", "hinge", "absolute")


def cell_program_polish(problem: Problem) -> PolishResult | None:
    """Solve the convex program of theta's cell in ``u_j = a_j (w_j, b_j)`` (DESIGN.md §5) and snap.

    One hidden layer, scalar output, no weight decay, square / hinge / absolute loss: inside the
    closed cell of theta's activation pattern the output is linear in ``(u, c)``, so the cell's best
    point is a QP (square) or an LP (hinge, absolute) on HiGHS, with the pattern as linear
    constraints ``sigma_ij sgn(a_j) u_j . xbar_i >= 0``. Units with ``a_j = 0`` are kept as they are.
    The solution is snapped onto its active constraints by a least-squares solve, then mapped back
    with ``(w_j, b_j) = u_j / a_j``. Returns None when the class does not apply.
    """
    import scipy.sparse as sp

    from .problems import LinearProgram, QuadraticProgram
    from .solvers import SolveStatus, solve

    net = problem.network
    if net.n_layers != 2 or net.n_outputs != 1 or problem.weight_decay or problem.loss.name not in CELL_LOSSES:
        return None
    a = net.weights[1][0]
    live = np.nonzero(a != 0)[0]
    X, y = problem.X, problem.Y[:, 0].astype(np.float64)
    n, d = X.shape
    xbar = np.hstack([X, np.ones((n, 1))])
    s_pos, s_neg = net.activation.slopes
    fwd = net.forward(X)
    Z = fwd.pre[0]
    sig = np.where(Z >= 0, 1.0, -1.0)
    h = live.size
    nu = h * (d + 1) + 1
    # f = Phi x
    slope = np.where(sig > 0, s_pos, s_neg)[:, live]          # (n, h)
    Phi = np.hstack([(slope[:, :, None] * xbar[:, None, :]).reshape(n, -1), np.ones((n, 1))])
    # pattern rows: sig_ij sgn(a_j) u_j . xbar_i >= 0
    rows = []
    for k, j in enumerate(live):
        blk = np.zeros((n, nu))
        blk[:, k * (d + 1):(k + 1) * (d + 1)] = (sig[:, j] * np.sign(a[j]))[:, None] * xbar
        rows.append(blk)
    P = np.vstack(rows) if rows else np.zeros((0, nu))
    name = problem.loss.name
    if name == "square":
        Q = sp.csc_matrix(Phi.T @ Phi / n)
        prog = QuadraticProgram(c=-Phi.T @ y / n, A=sp.csr_matrix(P), row_lower=np.zeros(P.shape[0]),
                                row_upper=np.full(P.shape[0], np.inf), col_lower=np.full(nu, -np.inf),
                                col_upper=np.full(nu, np.inf), Q=Q, offset=float(y @ y) / (2 * n))
    else:
        if name == "hinge":   # t_i >= 0, t_i >= 1 - y_i f_i
            T = sp.hstack([sp.csr_matrix(y[:, None] * Phi), sp.identity(n)], format="csr")
            lo = np.ones(n)
        else:                 # absolute: t_i >= f_i - y_i and t_i >= y_i - f_i
            T = sp.vstack([sp.hstack([sp.csr_matrix(-Phi), sp.identity(n)]),
                           sp.hstack([sp.csr_matrix(Phi), sp.identity(n)])], format="csr")
            lo = np.concatenate([-y, y])
        A = sp.vstack([sp.hstack([sp.csr_matrix(P), sp.csr_matrix((P.shape[0], n))]), T], format="csr")
        prog = LinearProgram(c=np.concatenate([np.zeros(nu), np.full(n, 1.0 / n)]), A=A,
                             row_lower=np.concatenate([np.zeros(P.shape[0]), lo]),
                             row_upper=np.full(A.shape[0], np.inf),
                             col_lower=np.concatenate([np.full(nu, -np.inf), np.zeros(n) if name == "hinge"
                                                       else np.full(n, -np.inf)]),
                             col_upper=np.full(nu + n, np.inf))
    res = solve(prog)
    if res.status != SolveStatus.OPTIMAL or res.x is None:
        return PolishResult(problem.theta, False, 0, 0, 0.0, problem.value(), problem.value(), np.nan,
                            note=f"cell program ended {res.raw_status}")
    x = res.x[:nu]
    # snap onto the active pattern rows and (LP) the active loss rows
    scale = np.abs(P).sum(axis=1) * max(np.abs(x).max(), 1.0)
    act = P @ x <= 1e-7 * scale
    B = [P[act]]
    rhs = [np.zeros(int(act.sum()))]
    if name != "square":
        f = Phi @ x
        if name == "hinge":
            tie = np.abs(1 - y * f) <= 1e-7 * (1 + np.abs(f))
            B.append(y[tie, None] * Phi[tie]); rhs.append(np.ones(int(tie.sum())))
        else:
            tie = np.abs(f - y) <= 1e-7 * (1 + np.abs(y))
            B.append(Phi[tie]); rhs.append(y[tie])
    B, rhs = np.vstack(B), np.concatenate(rhs)
    if B.shape[0]:
        if name == "square":   # equality-constrained least squares on the active set (KKT solve)
            K = np.block([[Phi.T @ Phi, B.T], [B, np.zeros((B.shape[0], B.shape[0]))]])
            sol = np.linalg.lstsq(K, np.concatenate([Phi.T @ y, rhs]), rcond=None)[0]
            x = sol[:nu]
        else:                  # the vertex: project onto the active affine set
            x = x - np.linalg.lstsq(B, B @ x - rhs, rcond=None)[0]
    elif name == "square":
        x = np.linalg.lstsq(Phi, y, rcond=None)[0]
    theta = problem.theta.copy()
    layers = net.split(theta)
    W1, b1 = layers[0]
    _, b2 = layers[1]
    for k, j in enumerate(live):
        u = x[k * (d + 1):(k + 1) * (d + 1)]
        W1[j] = u[:d] / a[j]
        b1[j] = u[d] / a[j]
    b2[0] = x[-1]
    return PolishResult(theta=theta, converged=True, iterations=1, n_kinks=int(B.shape[0]),
                        distance=float(np.linalg.norm(theta - problem.theta)), loss_before=problem.value(),
                        loss_after=problem.value(theta), reduced_gradient=0.0,
                        note=f"cell program ({'QP' if name == 'square' else 'LP'}) in u = a (w, b); "
                             f"{int(B.shape[0])} active constraint(s) at its optimum")


def polish_point(problem: Problem, judge, *, tol_near: float = DEFAULT_TOL_NEAR, max_rounds: int = 25,
                 time_limit: float = 5.0) -> PolishResult:
    """The polishing used by ``check(polish=True)``: polish, check, and descend while refuted.

    Each round polishes (the cell program where it applies, else Newton on the kink manifold) and
    checks the result. A ``local_min`` or a ``saddle`` ends the search (a trained saddle stays a
    saddle: polishing never escapes it). A ``not_stationary`` polished point sits on the boundary of a
    better neighbouring cell, or on a kink that should be released: the search steps along the
    descent direction into it and polishes again, for at most ``max_rounds`` rounds. ``time_limit``
    bounds each MILP of the intermediate checks (the final check has its own budget).
    """
    theta0, loss0 = problem.theta, problem.value()
    current = problem
    res = None
    from .progress import tick
    for k in range(max_rounds):
        tick("polishing: rounds", k, max_rounds)
        res = cell_program_polish(current)
        if res is None or not res.converged:
            res = polish(current, tol_near=tol_near)
            max_rounds = min(max_rounds, 4)  # Newton rounds are costly; a few active-set changes at most
        res.iterations = k + 1
        if k + 1 >= max_rounds:
            break
        report = judge(problem.at(res.theta), time_limit)
        verdict = report.verdict.value
        ref = report.refutation or {}
        if verdict in ("local_min", "saddle") or ref.get("direction") is None:
            break
        d = np.asarray(ref["direction"], dtype=np.float64)
        e = ref.get("curvature_direction")
        e = np.zeros_like(d) if e is None else np.asarray(e, dtype=np.float64)
        step = ref.get("step")
        nxt = None
        if step:
            nxt = res.theta + step * d + 0.5 * step * step * e
        else:  # an unverified descent direction (kinks only near zero): a small float-decreasing step
            base = problem.value(res.theta)
            t = 1e-3 * max(1.0, float(np.abs(res.theta).max())) / max(float(np.abs(d).max()), 1e-300)
            for _ in range(20):
                cand = res.theta + t * d
                if problem.value(cand) < base:
                    nxt = cand
                    break
                t *= 0.25
        if nxt is None:
            break
        current = problem.at(nxt)
    res.distance = float(np.linalg.norm(res.theta - theta0))
    res.loss_before = loss0
    res.loss_after = problem.value(res.theta)
    if res.iterations > 1:
        res.note = (res.note + "; " if res.note else "") + f"{res.iterations} polish rounds"
    return res
