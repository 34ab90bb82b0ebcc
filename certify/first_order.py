"""First order: is ``L'(theta; d) >= 0`` for every direction ``d`` (d-stationarity), exactly?

The decision reads the tangent network (:mod:`certify.tangent`) and the formulations of
:mod:`certify.formulate.first_order`, and sends them to HiGHS (:mod:`certify.solvers`):

* no kink: the gradient;
* one level of convex kinks: the min-norm subgradient QP, whose multipliers are refined and
  re-checked (the LP over the box decides when they do not re-check);
* concave kinks: one least-squares solve under LIKQ, else cheap candidates and a MILP;
* kinks nested in kinks: cheap candidates and a MILP.

A solver's status never decides alone: a descent direction is re-evaluated on the tangent network
(the refutation then checks the loss), a stationarity claim needs multipliers whose residual numpy
re-computes (or, for the MILP, HiGHS's proven bound, which the report marks as solver-attested).
Nothing here imports the driver or the second-order stage; both import this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .checks import compare, multiplier_residual
from .data import Problem
from .formulate.first_order import (OneLevel, clarke_qp, descent_lp, descent_milp, one_level, one_level_milp,
                                    split_multipliers)
from .kinks import KinkStructure
from .network import ForwardPass
from .solvers import SolveStatus, solve
from .tangent import FirstOrderModel

log = logging.getLogger(__name__)

#: dense linear algebra is used for LIKQ and the Clarke QP below this many matrix entries
DENSE_LIMIT = 5e7


@dataclass
class FirstOrder:
    """Outcome of the first-order test."""

    stationary: bool | None
    method: str
    min_value: float | None = None
    tolerance: float = 0.0
    direction: np.ndarray | None = None
    certificate: dict = field(default_factory=dict)
    clarke_distance: float | None = None
    reason: str = ""
    solver_calls: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"stationary": self.stationary, "method": self.method,
                "min_directional_derivative": self.min_value, "tolerance": self.tolerance,
                "clarke_distance": self.clarke_distance, "certificate": self.certificate,
                "note": self.reason or None}



def decide_first_order(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, fo: FirstOrderModel,
                       *, time_limit: float = 60.0) -> FirstOrder:
    """Decide d-stationarity exactly (DESIGN.md §3); see the module docstring for the branches."""
    if fo.smooth:
        return _gradient_test(fo)
    if not fo.nested:
        one = one_level(fo)
        if one.n_generators == 0 and not one.multi:
            return _gradient_test(fo, one)
        return decide_one_level(one, time_limit=time_limit)
    out = _milp_test(fo, time_limit)
    if not out.reason:
        out.reason = "nested kinks: Clarke distance not computed (no closed form for the hull)"
    return out


def decide_one_level(one: OneLevel, *, time_limit: float = 60.0, clarke: bool = True) -> FirstOrder:
    """d-stationarity of ``g.d + sum_j gamma_j max(a_j.d, 0) + ...``: LP, LIKQ solve, or MILP."""
    if one.convex:
        out = _convex_test(one, time_limit)
    else:
        out = _likq_test(one)
        if out is None:
            out = _milp_one_level(one, time_limit)
    if clarke and out.clarke_distance is None:
        c = _clarke(one, time_limit=time_limit)
        if c is not None:
            out.clarke_distance = c[0]
            out.solver_calls.append(c[1])
        if one.convex and out.certificate.get("kind") == "multipliers":
            # the certificate's subgradient is an element of the (convex) subdifferential too
            rho = float(out.certificate.get("residual_2", np.inf))
            out.clarke_distance = rho if out.clarke_distance is None else min(out.clarke_distance, rho)
    return out


def _milp_one_level(one: OneLevel, time_limit: float) -> FirstOrder:
    tol = max(one.tolerance(), 1e-300)
    quick = _cheap_descent(one, tol)
    if quick is not None:
        return quick
    prog, layout = one_level_milp(one)
    return _milp_outcome(prog, layout, one.evaluate, tol, time_limit)


def _cheap_descent(one, tol: float, n_random: int = 64, evaluate=None, rows=None) -> FirstOrder | None:
    """Try obvious directions before a MILP: the kink rows and their negatives, -g, random signs.

    A hit is a descent direction of the exact tangent model (the refutation then checks the loss);
    a miss proves nothing and the MILP decides.
    """
    evaluate = evaluate or one.evaluate
    p = one.g.size
    cands = []
    if np.any(one.g):
        cands.append(-one.g)
    A = (one.a if rows is None else rows).tocsr()
    for j in range(min(A.shape[0], 2000)):
        row = A[j].toarray().ravel()
        cands += [row, -row]
    rng = np.random.default_rng(0)
    cands += list(rng.choice([-1.0, 1.0], size=(n_random, p)))
    best, best_val = None, -tol
    for d in cands:
        m = np.abs(d).max()
        if m == 0:
            continue
        d = d / m
        val = evaluate(d)
        if val < best_val:
            best, best_val = d, val
    if best is None:
        return None
    return FirstOrder(False, "candidates", min_value=best_val, tolerance=tol, direction=best,
                      certificate={"kind": "candidate_direction"})


def _gradient_test(fo: FirstOrderModel, one: OneLevel | None = None) -> FirstOrder:
    """``L'(theta; d) = g . d``: stationary when every entry of ``g`` is zero up to its rounding bound."""
    if one is None:
        g, bound = fo.g, fo.g_error
    else:
        g, bound = one.g, one.residual_bound(np.zeros(0), [])
    res = compare(g, bound)
    norm1 = float(np.abs(g).sum())
    direction = -g / np.abs(g).max() if norm1 > 0 else None
    return FirstOrder(stationary=res.ok, method="gradient", min_value=-norm1, tolerance=float(bound.sum()),
                      direction=direction, clarke_distance=res.two,
                      certificate={"kind": "gradient", "gradient_norm_2": res.two, "gradient_norm_1": norm1,
                                   "gradient_norm_inf": res.inf, "rounding_bound_max": res.bound,
                                   "rounding_ratio": res.ratio})


def _convex_test(one: OneLevel, time_limit: float) -> FirstOrder:
    """Convex kinks: the min-norm subgradient (QP) decides when its answer re-checks; else the LP.

    For convex kinks the subdifferential is ``g + sum_j gamma_j [0,1] a_j + ...``. Its min-norm
    element ``rho`` (the Clarke QP) gives either multipliers with ``rho = 0`` -- refined onto their
    active bounds by one least-squares solve so the residual closes to rounding -- or the steepest
    descent direction ``-rho``, whose slope ``L'(theta; -rho)`` is recomputed on the model. Only when
    neither re-checks does the LP (in ``d``, over the box) decide.
    """
    tol = max(one.tolerance(), 1e-300)
    qp = _clarke(one, time_limit=time_limit)
    calls = []
    if qp is not None and qp[3] is not None:
        dist, call, cert, (lam, pis) = qp
        calls.append(call)
        if not cert["ok"]:
            cert = _refined_certificate(one, lam, pis) or cert
        if cert["ok"]:
            # the certificate's subgradient is an element of the subdifferential: a tighter distance
            dist = min(dist, float(cert.get("residual_2", dist)))
            return FirstOrder(True, "qp", min_value=0.0, tolerance=tol, certificate=cert, clarke_distance=dist,
                              solver_calls=calls)
        rho = one.subgradient(lam, pis)
        if np.any(rho):
            d = -rho / np.abs(rho).max()
            value = one.evaluate(d)
            if value < -tol:
                return FirstOrder(False, "qp", min_value=value, tolerance=tol, direction=d, clarke_distance=dist,
                                  solver_calls=calls)
    out = _lp_test(one, time_limit)
    out.solver_calls = calls + out.solver_calls
    if qp is not None:
        out.clarke_distance = qp[0]   # already solved: do not solve the same QP again
    return out


def _refined_certificate(one: OneLevel, lam: np.ndarray, pis: list) -> dict | None:
    """Snap multipliers within 1e-3 of 0 or 1 onto the bound and solve for the rest exactly."""
    if one.multi:
        return None
    lo, hi = lam <= 1e-3, lam >= 1 - 1e-3
    free = np.nonzero(~(lo | hi))[0]
    lam2 = np.where(hi, 1.0, 0.0)
    W = one.a.T.multiply(one.gamma[None, :]).tocsc()
    rhs = -(one.g + np.asarray(W @ lam2).ravel())
    if free.size:
        Wf = W[:, free]
        if Wf.shape[0] * Wf.shape[1] <= 2e7:
            sol = np.linalg.lstsq(Wf.toarray(), rhs, rcond=None)[0]
        else:
            from scipy.sparse.linalg import lsqr
            sol = lsqr(Wf, rhs, atol=1e-15, btol=1e-15, iter_lim=10 * free.size + 100)[0]
        if np.any(sol < -1e-12) or np.any(sol > 1 + 1e-12):
            return None
        lam2[free] = np.clip(sol, 0.0, 1.0)
    cert = certificate_from_multipliers(one, lam2, pis, source="clarke_qp_refined")
    return cert if cert["ok"] else None


def _lp_test(one: OneLevel, time_limit: float = 60.0) -> FirstOrder:
    prog = descent_lp(one)
    res = solve(prog, time_limit=time_limit)
    call = {"purpose": "first-order LP (convex kinks)", **res.to_dict()}
    p = one.g.size
    tol = max(one.tolerance(), 1e-300)
    if res.status != SolveStatus.OPTIMAL or res.x is None:
        return FirstOrder(None, "lp", tolerance=tol, reason=f"first-order LP ended {res.raw_status}",
                          solver_calls=[call])
    d = np.clip(res.x[:p], -1.0, 1.0)
    value = one.evaluate(d)  # recomputed, not the solver's objective
    if value < -tol:
        return FirstOrder(False, "lp", min_value=value, tolerance=tol, direction=d, solver_calls=[call])
    if res.status != SolveStatus.OPTIMAL:
        return FirstOrder(None, "lp", min_value=value, tolerance=tol, reason=f"first-order LP ended "
                          f"{res.raw_status} without a descent direction", solver_calls=[call])
    cert = _lp_certificate(one, prog, res)
    calls = [call]
    if cert is None or not cert["ok"]:
        return FirstOrder(None, "lp", min_value=value, tolerance=tol, certificate=cert or {},
                          reason="the LP finds no descent, but no multipliers closing the subgradient "
                                 "equation could be confirmed", solver_calls=calls)
    return FirstOrder(True, "lp", min_value=value, tolerance=tol, certificate=cert, solver_calls=calls)


def _lp_certificate(one: OneLevel, prog, res) -> dict | None:
    """Multipliers from the LP's row duals (HiGHS: reduced costs are ``c - A' y``), re-checked."""
    if res.row_duals is None:
        return None
    J = one.n_generators
    y = res.row_duals
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(one.gamma > 0, np.abs(y[:J]) / one.gamma, 0.0)
    lam = np.clip(lam, 0.0, 1.0)
    pis, pos = [], J
    for _, S in one.multi:
        m = S.shape[0]
        z = np.abs(y[pos:pos + m])
        pis.append(z / z.sum() if z.sum() > 0 else np.full(m, 1.0 / m))
        pos += m
    return certificate_from_multipliers(one, lam, pis, source="lp_duals")


def certificate_from_multipliers(one: OneLevel, lam: np.ndarray, pis: list, source: str) -> dict:
    res = multiplier_residual(one, lam, pis)
    return {"kind": "multipliers", "source": source, "lambda": lam, "pi": pis, "generators": one.source,
            "residual_inf": res.inf, "residual_2": res.two, "residual_bound": res.bound,
            "residual_ratio": res.ratio, "ok": res.ok}


def _clarke(one: OneLevel, time_limit: float = 60.0):
    """Clarke distance by the min-norm QP, when the Gram matrix is small enough.

    Returns ``(distance, call, certificate or None, (lambda, pis) or None)`` or None.
    """
    J = one.n_generators + sum(S.shape[0] for _, S in one.multi)
    if J == 0:
        return float(np.linalg.norm(one.g)), {"purpose": "Clarke distance", "status": "closed form"}, None, None
    p = one.g.size
    if J * J > DENSE_LIMIT or min(one.a.nnz * max(J, 1), p * J * J) > 50 * DENSE_LIMIT:
        return None
    prog = clarke_qp(one)
    res = solve(prog, time_limit=time_limit)
    call = {"purpose": "Clarke distance QP", **res.to_dict()}
    if res.x is None:
        return None
    lam, pis = split_multipliers(one, res.x)
    rho = one.subgradient(lam, pis)
    cert = certificate_from_multipliers(one, lam, pis, source="clarke_qp") if one.convex else None
    return float(np.linalg.norm(rho)), call, cert, (lam, pis)


def _likq_test(one: OneLevel) -> FirstOrder | None:
    """Griewank–Walther fast path: with linearly independent kink rows one solve decides."""
    if one.multi:
        return None
    J, p = one.n_generators, one.g.size
    if J * p > DENSE_LIMIT or J > 4000 or J > p:   # more rows than dimensions: never independent
        return None
    A = one.a.toarray()
    gram = A @ A.T
    ev = np.linalg.eigvalsh(gram)
    if ev.size and ev[0] <= 1e-10 * max(ev[-1], 1e-300):
        return None  # LIKQ fails: the MILP decides
    mu = np.linalg.solve(gram, -(A @ one.g))
    resid = one.g + A.T @ mu
    tol = max(one.tolerance(), 1e-300)
    # two kinds of descent: off the tangent space (a tangential residual), or across a kink whose
    # multiplier is outside [0, gamma]; the steeper one is kept (a tiny tangential residual must not
    # hide a large violation)
    found = []
    if np.abs(resid).sum() > tol:
        d = -resid / np.abs(resid).max()
        found.append((one.evaluate(d), d, {"kind": "likq", "tangential_residual": float(np.abs(resid).sum())}))
    viol_low = -mu                       # needs mu >= 0
    viol_high = mu - one.gamma           # needs mu <= gamma
    j_low, j_high = int(np.argmax(viol_low)), int(np.argmax(viol_high))
    worst = max(viol_low[j_low], viol_high[j_high])
    if worst > tol:
        j, u = (j_low, -1.0) if viol_low[j_low] >= viol_high[j_high] else (j_high, 1.0)
        e = np.zeros(J)
        e[j] = u
        d = A.T @ np.linalg.solve(gram, e)
        d /= np.abs(d).max()
        found.append((one.evaluate(d), d, {"kind": "likq", "violating_generator": one.source[j],
                                           "mu": float(mu[j]), "gamma": float(one.gamma[j])}))
    if found:
        value, d, info = min(found, key=lambda x: x[0])
        if value < -tol:
            return FirstOrder(False, "likq", min_value=value, tolerance=tol, direction=d, certificate=info)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.clip(np.where(one.gamma > 0, mu / one.gamma, 0.0), 0.0, 1.0)
    cert = certificate_from_multipliers(one, lam, [], source="likq")
    return FirstOrder(bool(cert["ok"]) or None, "likq", min_value=0.0, tolerance=tol, certificate=cert)


def _milp_test(fo: FirstOrderModel, time_limit: float) -> FirstOrder:
    tol = max(fo.tolerance(), 1e-300)
    rows = sp.vstack([fo.A, fo.G], format="csr") if fo.G.shape[0] else fo.A
    quick = _cheap_descent(fo, tol, rows=rows)
    if quick is not None:
        return quick
    prog, layout = descent_milp(fo)
    return _milp_outcome(prog, layout, fo.evaluate, tol, time_limit)


def _milp_outcome(prog, layout, evaluate, tol, time_limit) -> FirstOrder:
    # stop as soon as an incumbent proves descent (its direction is re-evaluated below)
    res = solve(prog, time_limit=time_limit, options={"objective_target": -2.0 * tol})
    call = {"purpose": "first-order MILP (concave or nested kinks)", **res.to_dict(),
            "n_binary": layout["n_binary"], "big_m_max": layout["big_m_max"]}
    d = None
    value = None
    if res.x is not None:
        d = np.clip(res.x[layout["d"]], -1.0, 1.0)
        value = evaluate(d)  # recomputed on the tangent network
    if value is not None and value < -tol:
        return FirstOrder(False, "milp", min_value=value, tolerance=tol, direction=d, solver_calls=[call])
    if res.status == SolveStatus.OPTIMAL and res.dual_bound is not None and res.dual_bound >= -tol:
        return FirstOrder(True, "milp", min_value=value if value is not None else res.dual_bound, tolerance=tol,
                          certificate={"kind": "milp_bound", "dual_bound": res.dual_bound, "attested_by": "HiGHS MILP",
                                       "rechecked": False},
                          solver_calls=[call])
    return FirstOrder(None, "milp", min_value=value, tolerance=tol,
                      reason=f"first-order MILP stopped ({res.raw_status}) with bound {res.dual_bound} "
                             f"and no verified descent", solver_calls=[call])
