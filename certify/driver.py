"""The order of the tests, the budgets, and the verdict.

``check`` runs: forward pass -> kinks -> tangent network -> first-order decision (gradient, LP,
LIKQ least squares or MILP) -> refutation with a verified decrease, or the second-order stage.
A solver's status never decides alone: a descent direction is re-evaluated on the tangent network
and on the loss itself, a stationarity claim needs multipliers whose residual numpy re-computes
(or, for the MILP, HiGHS's proven bound, which the report marks as solver-attested).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import __version__
from .data import Dataset, Problem
from .formulate.first_order import (OneLevel, clarke_qp, descent_lp, descent_milp, one_level, one_level_milp,
                                    split_multipliers)
from .kinks import DEFAULT_TOL, KinkStructure, find_kinks
from .loaders import as_network
from .network import ForwardPass
from .report import Report, Verdict
from .solvers import SolveStatus, solve
from .refute import refute
from .second_order import decide_second_order
from .tangent import FirstOrderModel, first_order_model

log = logging.getLogger(__name__)

#: relative tolerance on ``min L'(theta; d)`` over the unit box (times the size of its terms)
TOL_FIRST_ORDER = 1e-9
#: relative tolerance on the residual of a multiplier certificate
TOL_CERTIFICATE = 1e-8
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


def check(model, X=None, y=None, *, data=None, activation=None, loss="square", weight_decay=0.0,
          tol: float = DEFAULT_TOL, time_limit: float = 60.0, polish: bool = False) -> Report:
    """Decide whether the network's parameters are a local minimum of its training loss.

    Parameters
    ----------
    model : Network, mapping, list of ``(W, b)``, ``nn.Sequential`` or path
        The point to check: arrays ``{"W1": ..., "b1": ...}`` or a state dict, a torch
        ``nn.Sequential`` (activation read from its layers), or a file (``.npz``, ``.pt``/``.pth``,
        ``.onnx``, ``.safetensors``). Weights in PyTorch orientation ``(out, in)``.
    X, y : arrays, optional
        Training inputs ``(n, d)`` and labels; or pass ``data`` (a :class:`Dataset` or a path).
    activation : str
        ``"relu"``, ``"leaky_relu:ALPHA"``, ``"abs"`` or ``"identity"`` (default: from the
        model when it says, else ``"relu"``).
    loss : str
        ``"square"``, ``"hinge"``, ``"multiclass_hinge"``, ``"absolute"``, ``"logistic"`` or
        ``"cross_entropy"``; the training loss is the mean over samples.
    weight_decay : float
        ``lambda`` in ``+ lambda/2 ||theta||^2``.
    tol : float
        Relative kink tolerance (see :mod:`certify.kinks`).
    time_limit : float
        Seconds allowed to each MILP; a budget ends in ``inconclusive``, never a hang.
    polish : bool
        First move to a nearby point with exact kinks and zero reduced gradient (the cell program
        for one-hidden-layer nets, Newton on the kink manifold otherwise; :mod:`certify.polish`) and
        certify that point; the report's ``polish`` section says where it is and how far it moved.

    Returns
    -------
    Report

    Examples
    --------
    >>> import numpy as np, certify
    >>> X = np.array([[-1.0], [0.0], [1.0]]); y = np.array([-1.0, 1.0, 1.0])
    >>> weights = {"W1": [[1.0]], "b1": [0.0], "W2": [[1.0]], "b2": [0.0]}
    >>> report = certify.check(weights, X, y, activation="relu", loss="square")
    >>> report.verdict.value        # Clarke-stationary, yet b -> b + t lowers the loss
    'not_stationary'
    """
    net = as_network(model, activation)
    if data is None:
        if X is None or y is None:
            from .errors import InvalidValueError
            raise InvalidValueError("no data: pass X and y, or data=")
        data = Dataset(X, y)
    elif not isinstance(data, Dataset):
        from .loaders import load_data
        data = load_data(data)
    problem = Problem(net, data, loss, weight_decay)
    if polish:
        return check_polished(problem, tol=tol, time_limit=time_limit)
    return check_problem(problem, tol=tol, time_limit=time_limit)


def check_polished(problem: Problem, *, tol: float = DEFAULT_TOL, time_limit: float = 60.0) -> Report:
    """Polish (:func:`certify.polish.polish_point`), then check the polished point."""
    from .polish import polish_point
    t0 = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"):
        problem.check_finite()
    pol = polish_point(problem, time_limit=min(time_limit, 5.0))
    report = check_problem(problem.at(pol.theta), tol=tol, time_limit=time_limit)
    info = pol.to_dict()
    info["theta"] = pol.theta
    info["original_fingerprint"] = _problem_info(problem, problem.value())["fingerprint"]["theta"]
    report.polish = info
    report.reason = (f"at the polished point (moved {pol.distance:.3g}, loss {pol.loss_after - pol.loss_before:+.3g}): "
                     + report.reason)
    report.timings["polish_s"] = time.perf_counter() - t0 - report.timings.get("total_s", 0.0)
    report.timings["total_s"] = time.perf_counter() - t0
    return report


def check_problem(problem: Problem, *, tol: float = DEFAULT_TOL, time_limit: float = 60.0) -> Report:
    """:func:`check` on an assembled :class:`Problem`."""
    t0 = time.perf_counter()
    timings = {}
    net = problem.network
    with np.errstate(over="ignore", invalid="ignore"):
        fwd = net.forward(problem.X, with_scale=True)
    problem.check_finite(fwd)
    kinks = find_kinks(problem, fwd, tol)
    timings["kinks_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    fo_model = first_order_model(problem, fwd, kinks)
    timings["tangent_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    fo = decide_first_order(problem, fwd, kinks, fo_model, time_limit=time_limit)
    timings["first_order_s"] = time.perf_counter() - t2
    loss_value = float(np.mean(problem.loss.values(fwd.output, problem.Y)))
    if problem.weight_decay:
        loss_value += 0.5 * problem.weight_decay * float(problem.theta @ problem.theta)
    info = _problem_info(problem, loss_value)
    # differentiable: no kink reaches L' (a kink with zero coefficient leaves L differentiable, not C^2)
    flags = {"differentiable": bool(fo_model.smooth), "at_kink": kinks.n_total > 0,
             "approximate": kinks.n_total > kinks.n_exact}
    refutation = None
    second_order = None
    if fo.direction is not None and not fo.stationary:  # a slope within the tolerance cannot be verified
        t3 = time.perf_counter()
        refutation = refute(problem, fwd, kinks, fo_model, fo.direction)
        timings["refutation_s"] = time.perf_counter() - t3
    if refutation is not None and refutation["verified"]:
        verdict = Verdict.NOT_STATIONARY
        reason = (f"descent direction with L'(theta; d) = {refutation['directional_derivative']:.3g} < 0; "
                  f"the loss drops by {refutation['decrease']:.3g} at step {refutation['step']:.3g} "
                  f"(verified, {refutation['method']})")
        flags["method"] = fo.method
    elif fo.stationary:
        t4 = time.perf_counter()
        so = decide_second_order(problem, fwd, kinks, fo_model, fo, time_limit=time_limit)
        timings["second_order_s"] = time.perf_counter() - t4
        second_order = so.to_dict()
        fo.solver_calls.extend(so.solver_calls)
        flags.update({k: v for k, v in so.flags.items() if v is not None or k not in flags})
        flags["method"] = so.method
        if so.verdict == "local_min":
            verdict, reason = Verdict.LOCAL_MIN, so.reason
            flags.setdefault("global", None)
            flags.setdefault("spurious", None)
            if not flags.get("global"):
                from .second_order import spurious_lower_point
                t5 = time.perf_counter()
                lower = spurious_lower_point(problem)
                timings["spurious_s"] = time.perf_counter() - t5
                if lower is not None:
                    flags["spurious"] = True
                    second_order["lower_point"] = lower
                    reason += (f"; spurious: a point with loss lower by {lower['decrease']:.3g} exists "
                               f"({lower['construction']}; verified)")
        elif so.verdict == "saddle":
            verdict, reason = Verdict.SADDLE, so.reason
            refutation = so.refutation
        else:
            verdict, reason = Verdict.INCONCLUSIVE, so.reason
    elif fo.direction is not None:
        verdict = Verdict.INCONCLUSIVE
        reason = (f"a descent direction was found ({fo.method}, L'(theta; d) = {fo.min_value:.3g}) but no "
                  f"decrease of the loss could be verified along it; the point is stationary only up to "
                  f"rounding")
    else:
        verdict = Verdict.INCONCLUSIVE
        reason = fo.reason or "first-order test undecided"
    timings["total_s"] = time.perf_counter() - t0
    return Report(verdict=verdict, reason=reason, flags=flags, problem=info, kinks=kinks.summary(),
                  first_order=fo.to_dict(), second_order=second_order, refutation=refutation,
                  solver_calls=fo.solver_calls,
                  timings=timings, version=__version__)


# ---------------------------------------------------------------------------- first order
def decide_first_order(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, fo: FirstOrderModel,
                       *, time_limit: float = 60.0) -> FirstOrder:
    """Decide d-stationarity exactly (DESIGN.md §3); see the module docstring for the branches."""
    if fo.smooth:
        return _gradient_test(fo)
    if not fo.nested:
        one = one_level(fo)
        if one.n_generators == 0 and not one.multi:
            return _gradient_test(fo, g=one.g)
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
    tol = TOL_FIRST_ORDER * max(one.scale(), 1e-300)
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


def _gradient_test(fo: FirstOrderModel, g: np.ndarray | None = None) -> FirstOrder:
    g = fo.g if g is None else g
    norm1 = float(np.abs(g).sum())
    scale = _grad_scale(fo, g)
    tol = TOL_FIRST_ORDER * scale
    direction = None
    if norm1 > 0:
        direction = -g / np.abs(g).max()
    return FirstOrder(stationary=norm1 <= tol, method="gradient", min_value=-norm1, tolerance=tol,
                      direction=direction if norm1 > 0 else None, clarke_distance=float(np.linalg.norm(g)),
                      certificate={"kind": "gradient", "gradient_norm_2": float(np.linalg.norm(g)),
                                   "gradient_norm_1": norm1})


def _grad_scale(fo: FirstOrderModel, g: np.ndarray) -> float:
    # the gradient is a sum of per-sample terms; fo.g_scale bounds their sizes (absolute backprop)
    return max(fo.scale(), 1e-300)


def _convex_test(one: OneLevel, time_limit: float) -> FirstOrder:
    """Convex kinks: the min-norm subgradient (QP) decides when its answer re-checks; else the LP.

    For convex kinks the subdifferential is ``g + sum_j gamma_j [0,1] a_j + ...``. Its min-norm
    element ``rho`` (the Clarke QP) gives either multipliers with ``rho = 0`` -- refined onto their
    active bounds by one least-squares solve so the residual closes to rounding -- or the steepest
    descent direction ``-rho``, whose slope ``L'(theta; -rho)`` is recomputed on the model. Only when
    neither re-checks does the LP (in ``d``, over the box) decide.
    """
    tol = TOL_FIRST_ORDER * max(one.scale(), 1e-300)
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
    scale = one.scale()
    tol = TOL_FIRST_ORDER * max(scale, 1e-300)
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
    rho = one.subgradient(lam, pis)
    size = float(np.abs(one.g if one.g_scale is None else one.g_scale).max(initial=0.0))
    if one.n_generators:
        size = max(size, float(np.max(np.abs(one.gamma) * np.asarray(abs(one.a).max(axis=1).todense()).ravel(),
                                      initial=0.0)))
    tol = TOL_CERTIFICATE * max(size, 1e-300)
    resid = float(np.abs(rho).max(initial=0.0))
    return {"kind": "multipliers", "source": source, "lambda": lam, "pi": pis, "generators": one.source,
            "residual_inf": resid, "residual_2": float(np.linalg.norm(rho)), "residual_tolerance": tol,
            "ok": resid <= tol}


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
    if J * p > DENSE_LIMIT or J > 4000:
        return None
    A = one.a.toarray()
    gram = A @ A.T
    ev = np.linalg.eigvalsh(gram)
    if ev.size and ev[0] <= 1e-10 * max(ev[-1], 1e-300):
        return None  # LIKQ fails: the MILP decides
    mu = np.linalg.solve(gram, -(A @ one.g))
    resid = one.g + A.T @ mu
    scale = one.scale()
    tol = TOL_FIRST_ORDER * max(scale, 1e-300)
    if np.abs(resid).sum() > tol:
        d = -resid / np.abs(resid).max()
        return FirstOrder(False, "likq", min_value=one.evaluate(d), tolerance=tol, direction=d,
                          certificate={"kind": "likq", "tangential_residual": float(np.abs(resid).sum())})
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
        return FirstOrder(False, "likq", min_value=one.evaluate(d), tolerance=tol, direction=d,
                          certificate={"kind": "likq", "violating_generator": one.source[j], "mu": float(mu[j]),
                                       "gamma": float(one.gamma[j])})
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.clip(np.where(one.gamma > 0, mu / one.gamma, 0.0), 0.0, 1.0)
    cert = certificate_from_multipliers(one, lam, [], source="likq")
    return FirstOrder(bool(cert["ok"]) or None, "likq", min_value=0.0, tolerance=tol, certificate=cert)


def _milp_test(fo: FirstOrderModel, time_limit: float) -> FirstOrder:
    tol = TOL_FIRST_ORDER * max(fo.scale(), 1e-300)
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


def _problem_info(problem: Problem, loss_value: float) -> dict:
    import hashlib
    net = problem.network

    def digest(arr):
        return hashlib.sha256(np.ascontiguousarray(arr, dtype=np.float64).tobytes()).hexdigest()[:16]

    return {"widths": list(net.widths), "activation": net.activation.spec, "loss": problem.loss.name,
            "weight_decay": problem.weight_decay, "n_samples": problem.n_samples, "n_params": net.n_params,
            "loss_value": loss_value,
            "fingerprint": {"theta": digest(net.theta), "X": digest(problem.X),
                            "y": digest(np.asarray(problem.data.y, dtype=np.float64))}}
