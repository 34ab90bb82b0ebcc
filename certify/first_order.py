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
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .checks import compare, multiplier_residual
from .data import Problem
from .bnb import decide_tree
from .budget import deadline_after, remaining
from .formulate.leaf import model_of
from .formulate.first_order import (OneLevel, clarke_qp, descent_lp, descent_milp, merge_reaching, one_level,
                                    one_level_milp, split_multipliers)
from .kinks import KinkStructure
from .network import ForwardPass
from .solvers import SolveStatus, solve
from .tangent import FirstOrderModel

log = logging.getLogger(__name__)

#: dense linear algebra is used for the Clarke QP below this many matrix entries
DENSE_LIMIT = 5e7
#: largest Gram matrix of kink rows formed for the LIKQ solve (floating-point operations)
GRAM_FLOPS = 2e10
#: seconds the first-order tree may take before the MILP decides instead
TREE_TIME = 30.0
#: share of the time left that the cheap candidate directions may use before the tree and the MILP
CHEAP_SHARE = 0.5
#: the first-order MILP is not started with less time left than this per column: HiGHS does not stop
#: inside its presolve (a 111,204-column MILP given 6.5 s returned after 18.8 s, 9 s past the check's
#: budget on digits_ce_big_sgd), and a MILP that cannot get past presolve decides nothing
MILP_SECONDS_PER_COLUMN = 2e-4
#: at a proven descent, the diagnostic Clarke-distance QP is solved only up to this many generators
CLARKE_DIAGNOSTIC_MAX = 300


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
    """d-stationarity of ``g.d + sum_j gamma_j max(a_j.d, 0) + ...``: one solve, QP, LP, or MILP.

    Generators on identical rows are merged first (:func:`merge_identical`): a concave kink whose
    row a stronger convex kink shares is convex in sum. With linearly independent rows (LIKQ) one
    least-squares solve decides (:func:`_unique_test`); otherwise convex kinks go to the min-norm QP
    and the LP, concave ones to cheap candidates and the MILP.
    """
    deadline = deadline_after(time_limit)
    merged, group, same = merge_reaching(one)
    group = (group, same)
    out = _unique_test(one, merged, group)
    if out is None:
        if merged.convex:
            out = _convex_test(one, _left(deadline), merged=merged, group=group)
        else:
            out = _milp_one_level(one, _left(deadline))
    if out.certificate.get("kind") == "multipliers":
        # the certificate's subgradient is an element of the (convex) subdifferential: its norm bounds
        # the Clarke distance, and no QP is needed for it
        rho = float(out.certificate.get("residual_2", np.inf))
        out.clarke_distance = rho if out.clarke_distance is None else min(out.clarke_distance, rho)
    n_gen = one.n_generators + sum(S.shape[0] for _, S in one.multi)
    if clarke and out.clarke_distance is None and out.stationary is False and n_gen > CLARKE_DIAGNOSTIC_MAX:
        # a proven descent does not need the diagnostic, and the QP would cost more than the decision
        out.reason = out.reason or (f"Clarke distance not computed ({n_gen} kink generators; the descent "
                                    f"direction decides)")
    elif clarke and out.clarke_distance is None:
        c = _clarke(one, time_limit=_left(deadline))
        if c is not None:
            out.clarke_distance = c[0]
            out.solver_calls.append(c[1])
    return out


def _left(deadline: float) -> float:
    """The time limit for a solver call that follows another: what is left before ``deadline`` (the
    MILP after a 30 s tree test once got the whole limit again and ran 3 s past a check's budget on
    digits_mchinge_wd_sgd); at least 1 ms, so that the call still returns its status."""
    return max(remaining(deadline), 1e-3)


def _share(deadline: float | None, share: float) -> float | None:
    """A deadline ``share`` of the way from now to ``deadline``."""
    return None if deadline is None else time.perf_counter() + share * remaining(deadline)


def _milp_one_level(one: OneLevel, time_limit: float) -> FirstOrder:
    deadline = deadline_after(time_limit)
    tol = max(one.tolerance(), 1e-300)
    quick = _cheap_descent(one, tol, deadline=_share(deadline, CHEAP_SHARE))
    if quick is not None:
        return quick
    tree = _tree_test(model_of(one), tol, _left(deadline))
    if tree.stationary is not None:
        return tree
    prog, layout = one_level_milp(one)
    return _with_tree_note(_milp_outcome(prog, layout, one.evaluate, tol, _left(deadline)), tree)


def _tree_test(fo: FirstOrderModel, tol: float, time_limit: float) -> FirstOrder:
    """The solver-free certificate first (:mod:`certify.bnb`); undecided when it does not fit."""
    out = decide_tree(fo, time_limit=min(time_limit, TREE_TIME))
    if out.stationary is True:
        return FirstOrder(True, "tree", min_value=0.0, tolerance=tol, certificate=out.certificate,
                          solver_calls=out.solver_calls)
    if out.stationary is False:
        return FirstOrder(False, "tree", min_value=out.value, tolerance=tol, direction=out.direction,
                          certificate={"kind": "tree_leaf_descent", **out.stats}, solver_calls=out.solver_calls)
    return FirstOrder(None, "tree", tolerance=tol, reason=out.reason, solver_calls=out.solver_calls,
                      certificate={"tree_stats": out.stats})


def _with_tree_note(out: FirstOrder, tree: FirstOrder) -> FirstOrder:
    """A MILP outcome after the tree did not fit: say why, so a report can tell it was attested."""
    out.solver_calls = tree.solver_calls + out.solver_calls
    if out.certificate.get("kind") == "milp_bound":
        out.certificate["tree_not_used"] = tree.reason
    return out


def _cheap_descent(one, tol: float, n_random: int = 64, evaluate=None, rows=None,
                   deadline: float | None = None) -> FirstOrder | None:
    """Try obvious directions before a MILP: the kink rows and their negatives, -g, random signs.

    A hit is a descent direction of the exact tangent model (the refutation then checks the loss);
    a miss proves nothing and the MILP decides. The candidates are formed one at a time and the
    search stops at ``deadline`` (its 4,000 tangent evaluations took 104 s on a 100,234-parameter
    net, past the check's budget, and forming them all at once would hold 3 GB).
    """
    evaluate = evaluate or one.evaluate
    p = one.g.size
    A = (one.a if rows is None else rows).tocsr()
    rng = np.random.default_rng(0)

    def candidates():
        if np.any(one.g):
            yield -one.g
        for j in range(min(A.shape[0], 2000)):
            row = A[j].toarray().ravel()
            yield row
            yield -row
        for d in rng.choice([-1.0, 1.0], size=(n_random, p)):
            yield d

    best, best_val = None, -tol
    for d in candidates():
        if deadline is not None and time.perf_counter() > deadline:
            break
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
    """``L'(theta; d) = g . d``: stationary when every entry of ``g`` is zero up to its rounding bound.

    A non-zero gradient is usually plain from a few entries: the largest entries of the output
    layer are compared with their own rounding bounds (:func:`certify.tangent.last_layer_twin`,
    ``O(n)`` each) before the whole absolute twin -- one more backward pass -- is built; one entry
    beyond its bound proves ``g != 0``.
    """
    if one is None:
        shown = _nonzero_entry(fo)
        if shown is not None:
            return shown
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


def _nonzero_entry(fo: FirstOrderModel) -> FirstOrder | None:
    """``not stationary`` when an output-layer entry of ``g`` exceeds its rounding bound (else None)."""
    if fo.twin_g_at is None or not np.any(fo.g):
        return None
    g = fo.g
    idx, twin = fo.twin_g_at(g)
    if twin is None:
        return None
    bound = fo.rounding * twin
    over = np.abs(g[idx]) > bound
    if not np.any(over):
        return None
    j = int(np.argmax(np.where(over, np.abs(g[idx]), -1.0)))
    i = int(idx[j])
    norm1 = float(np.abs(g).sum())
    norm2 = float(np.linalg.norm(g))
    return FirstOrder(stationary=False, method="gradient", min_value=-norm1, tolerance=float(bound[j]),
                      direction=-g / np.abs(g).max(), clarke_distance=norm2,
                      certificate={"kind": "gradient", "gradient_norm_2": norm2, "gradient_norm_1": norm1,
                                   "gradient_norm_inf": float(np.abs(g).max()),
                                   "nonzero_entry": {"index": i, "value": float(g[i]),
                                                     "rounding_bound": float(bound[j])}})


def _convex_test(one: OneLevel, time_limit: float, *, merged: OneLevel | None = None,
                 group: tuple | None = None) -> FirstOrder:
    """Convex kinks: the min-norm subgradient (QP) decides when its answer re-checks; else the LP.

    For convex kinks the subdifferential is ``g + sum_j gamma_j [0,1] a_j + ...``. Its min-norm
    element ``rho`` (the Clarke QP) gives either multipliers with ``rho = 0`` -- refined onto their
    active bounds by least-squares solves so the residual closes to rounding -- or the steepest
    descent direction ``-rho``, whose slope ``L'(theta; -rho)`` is recomputed on the model. Only when
    neither re-checks does the LP (in ``d``, over the box) decide. The QP and LP run on ``merged``
    (identical rows merged, :func:`merge_identical`); certificates are stated for ``one``.
    """
    if merged is None:
        merged, group = one, (np.arange(one.n_generators),) * 2
    deadline = deadline_after(time_limit)
    tol = max(one.tolerance(), 1e-300)
    qp = _clarke(merged, time_limit=time_limit, certify=False)
    calls = []
    if qp is not None and qp[3] is not None:
        dist, call, _, (lam, pis) = qp
        calls.append(call)
        cert = certificate_from_multipliers(one, _lift(lam, group), pis, source="clarke_qp", group=group)
        if not cert["ok"]:
            cert = _refined_certificate(one, merged, group, lam, pis) or cert
        if cert["ok"]:
            # the certificate's subgradient is an element of the subdifferential: a tighter distance
            dist = min(dist, float(cert.get("residual_2", dist)))
            return FirstOrder(True, "qp", min_value=0.0, tolerance=tol, certificate=cert, clarke_distance=dist,
                              solver_calls=calls)
        rho = merged.subgradient(lam, pis)
        if np.any(rho):
            d = -rho / np.abs(rho).max()
            value = one.evaluate(d)
            if value < -tol:
                return FirstOrder(False, "qp", min_value=value, tolerance=tol, direction=d, clarke_distance=dist,
                                  solver_calls=calls)
    out = _lp_test(one, _left(deadline), merged=merged, group=group)
    out.solver_calls = calls + out.solver_calls
    if qp is not None:
        out.clarke_distance = qp[0]   # already solved: do not solve the same QP again
    return out


def _refined_certificate(one: OneLevel, merged: OneLevel, group: tuple, lam: np.ndarray, pis: list,
                         rounds: int = 4) -> dict | None:
    """Close the multiplier equation to rounding from approximate multipliers of ``merged``.

    Multipliers within 1e-3 of 0 or 1 are snapped onto the bound and the others solved for by least
    squares (the correction of smallest norm); a multiplier the solve pushes out of ``[0, 1]`` is
    fixed at that bound and the solve repeated (a few rounds of an active-set method). Returns a
    certificate for ``one`` that re-checks, else None.
    """
    if merged.multi or not merged.n_generators:
        return None
    from scipy.linalg import lstsq
    W = merged.a.T.multiply(merged.gamma[None, :]).tocsc()
    small = W.shape[0] * W.shape[1] <= 2e7
    W_dense = W.toarray() if small else None
    lo, hi = lam <= 1e-3, lam >= 1 - 1e-3
    x = np.where(hi, 1.0, np.where(lo, 0.0, lam))
    for _ in range(rounds):
        free = np.nonzero(~(lo | hi))[0]
        fixed = np.where(hi, 1.0, 0.0)
        rhs = -(merged.g + np.asarray(W @ fixed).ravel())
        if free.size:
            Wf = W[:, free]
            r = rhs - np.asarray(Wf @ x[free]).ravel()
            if small:
                # a complete orthogonal factorisation (gelsy): the least-norm correction, several
                # times faster than the SVD and as accurate for this purpose
                Wd = W_dense[:, free]
                step = lstsq(Wd, r, lapack_driver="gelsy", check_finite=False)[0]
                x_free = x[free] + step
                r2 = rhs - Wd @ x_free                      # one step of iterative refinement
                x_free = x_free + lstsq(Wd, r2, lapack_driver="gelsy", check_finite=False)[0]
            else:
                from scipy.sparse.linalg import lsqr
                x_free = x[free] + lsqr(Wf, r, atol=1e-15, btol=1e-15, iter_lim=10 * free.size + 100)[0]
            x = fixed.copy()
            x[free] = x_free
        else:
            x = fixed
        below, above = x < -1e-12, x > 1 + 1e-12
        if not (below.any() or above.any()):
            break
        lo, hi = lo | below, hi | above
    else:
        return None
    x = np.clip(x, 0.0, 1.0)
    cert = certificate_from_multipliers(one, _lift(x, group), pis, source="clarke_qp_refined", group=group)
    return cert if cert["ok"] else None


def _lp_test(one: OneLevel, time_limit: float = 60.0, *, merged: OneLevel | None = None,
             group: tuple | None = None) -> FirstOrder:
    if merged is None:
        merged, group = one, (np.arange(one.n_generators),) * 2
    prog = descent_lp(merged)
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
    cert = _lp_certificate(one, merged, group, res)
    calls = [call]
    if cert is None or not cert["ok"]:
        return FirstOrder(None, "lp", min_value=value, tolerance=tol, certificate=cert or {},
                          reason="the LP finds no descent, but no multipliers closing the subgradient "
                                 "equation could be confirmed", solver_calls=calls)
    return FirstOrder(True, "lp", min_value=value, tolerance=tol, certificate=cert, solver_calls=calls)


def _lp_certificate(one: OneLevel, merged: OneLevel, group: tuple, res) -> dict | None:
    """Multipliers from the LP's row duals (HiGHS: reduced costs are ``c - A' y``), refined, re-checked."""
    if res.row_duals is None:
        return None
    J = merged.n_generators
    y = res.row_duals
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(merged.gamma > 0, np.abs(y[:J]) / merged.gamma, 0.0)
    lam = np.clip(lam, 0.0, 1.0)
    pis, pos = [], J
    for _, S in merged.multi:
        m = S.shape[0]
        z = np.abs(y[pos:pos + m])
        pis.append(z / z.sum() if z.sum() > 0 else np.full(m, 1.0 / m))
        pos += m
    cert = certificate_from_multipliers(one, _lift(lam, group), pis, source="lp_duals", group=group)
    if not cert["ok"]:
        cert = _refined_certificate(one, merged, group, lam, pis) or cert
    return cert


def _lift(lam_merged: np.ndarray, group: tuple) -> np.ndarray:
    """Multipliers of the original generators from the merged ones (a dropped group gets 0)."""
    index = group[0]
    if not lam_merged.size:
        return np.zeros(index.size)
    return np.where(index >= 0, lam_merged[np.maximum(index, 0)], 0.0)


def certificate_from_multipliers(one: OneLevel, lam: np.ndarray, pis: list, source: str,
                                 group: tuple | None = None) -> dict:
    """A multiplier certificate for ``one`` with its residual against the rounding bound.

    ``group`` (``(index, same)`` from :func:`merge_reaching`) names the generators merged because their rows
    are identical;
    the groups holding a concave generator are stored, since only the group as a whole is convex
    (:func:`certify.checks.check_multipliers` re-checks that the rows are identical, the multipliers
    equal and the summed coefficient non-negative).
    """
    res = multiplier_residual(one, lam, pis)
    cert = {"kind": "multipliers", "source": source, "lambda": lam, "pi": pis, "generators": one.source,
            "residual_inf": res.inf, "residual_2": res.two, "residual_bound": res.bound,
            "residual_ratio": res.ratio, "ok": res.ok}
    if group is not None and one.n_generators and np.any(one.gamma < 0):
        same = group[1]
        groups = []
        for gid in np.unique(same[one.gamma < 0]):
            members = np.nonzero(same == gid)[0]
            if members.size > 1:
                groups.append([int(j) for j in members])
        cert["identical_row_groups"] = groups
    return cert


def _clarke(one: OneLevel, time_limit: float = 60.0, certify: bool = True):
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
    cert = certificate_from_multipliers(one, lam, pis, source="clarke_qp") if certify and one.convex else None
    return float(np.linalg.norm(rho)), call, cert, (lam, pis)


def _unique_test(one: OneLevel, merged: OneLevel, group: tuple) -> FirstOrder | None:
    """Griewank–Walther: with linearly independent kink rows (LIKQ) one least-squares solve decides.

    On ``merged`` (identical rows merged, zero coefficients dropped) the multipliers ``mu`` of
    ``0 = g + sum_j mu_j a_j`` are unique when the rows are independent (a pivoted Cholesky
    factorisation of their Gram matrix has full rank). Then ``theta`` is d-stationary iff the
    residual vanishes and every ``mu_j`` lies in ``[0, gamma_j]`` (a concave kink, ``gamma_j < 0``,
    always descends); otherwise the residual, or the kink whose multiplier is outside, gives a
    descent direction (re-evaluated on the model). Returns None when LIKQ fails, the problem is too
    large for dense algebra, or the solve's certificate does not close to rounding (the slower
    methods then decide).
    """
    if merged.multi:
        return None
    J, p = merged.n_generators, merged.g.size
    A = merged.a.tocsr()
    dense = A.nnz > 0.2 * J * p
    if J > 4000 or J > p or (dense and J * J * p > GRAM_FLOPS) or (not dense and A.nnz * J > GRAM_FLOPS):
        return None
    from scipy.linalg import lapack, solve_triangular
    if J:
        if dense:
            Ad = A.toarray()
            gram = Ad @ Ad.T
        else:
            gram = (A @ A.T).toarray()
        scale = float(np.max(np.diag(gram), initial=0.0))
        U, piv, rank, info = lapack.dpstrf(gram, tol=1e-10 * max(scale, 1e-300))
        if info < 0 or rank < J:
            return None  # LIKQ fails
        P = piv - 1

    def solve_gram(rhs):
        if not J:
            return np.zeros(0)
        w = solve_triangular(U, rhs[P], trans="T", lower=False, check_finite=False)
        out = np.empty(J)
        out[P] = solve_triangular(U, w, lower=False, check_finite=False)
        return out

    g = merged.g
    mu = solve_gram(-(A @ g))
    mu += solve_gram(-(A @ (g + A.T @ mu)))    # one step of iterative refinement
    resid = g + A.T @ mu
    tol = max(one.tolerance(), 1e-300)
    gamma = merged.gamma
    # two kinds of descent: off the tangent space (a tangential residual), or across a kink whose
    # multiplier is outside [0, gamma]; the steeper one is kept (a tiny tangential residual must not
    # hide a large violation)
    found = []
    if np.abs(resid).sum() > tol:
        d = -resid / np.abs(resid).max()
        found.append((one.evaluate(d), d, {"kind": "likq", "tangential_residual": float(np.abs(resid).sum())}))
    viol_low = np.where(gamma > 0, -mu, np.abs(mu) + np.abs(gamma))      # needs 0 <= mu <= gamma
    viol_high = np.where(gamma > 0, mu - gamma, np.abs(mu) + np.abs(gamma))
    j_low, j_high = (int(np.argmax(viol_low)), int(np.argmax(viol_high))) if J else (0, 0)
    worst = max(viol_low[j_low], viol_high[j_high]) if J else 0.0
    if worst > tol:
        if gamma[j_low] < 0 or gamma[j_high] < 0:
            j = j_low if gamma[j_low] < 0 else j_high
            # a concave kink: move across it on the side where L' drops
            cands = []
            for u in (1.0, -1.0):
                e = np.zeros(J)
                e[j] = u
                dd = A.T @ solve_gram(e)
                dd /= np.abs(dd).max()
                cands.append((one.evaluate(dd), dd))
            value, d = min(cands, key=lambda c: c[0])
        else:
            j, u = (j_low, -1.0) if viol_low[j_low] >= viol_high[j_high] else (j_high, 1.0)
            e = np.zeros(J)
            e[j] = u
            d = A.T @ solve_gram(e)
            d /= np.abs(d).max()
            value = one.evaluate(d)
        found.append((value, d, {"kind": "likq", "violating_generator": merged.source[j],
                                 "mu": float(mu[j]), "gamma": float(gamma[j])}))
    if found:
        value, d, info = min(found, key=lambda x: x[0])
        if value < -tol:
            return FirstOrder(False, "likq", min_value=value, tolerance=tol, direction=d, certificate=info)
    if np.any(gamma < 0):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.clip(np.where(gamma > 0, mu / gamma, 0.0), 0.0, 1.0)
    cert = certificate_from_multipliers(one, _lift(lam, group), [], source="likq", group=group)
    if not cert["ok"]:
        return None
    return FirstOrder(True, "likq", min_value=0.0, tolerance=tol, certificate=cert)


def _milp_test(fo: FirstOrderModel, time_limit: float) -> FirstOrder:
    deadline = deadline_after(time_limit)
    tol = max(fo.tolerance(), 1e-300)
    rows = sp.vstack([fo.A, fo.G], format="csr") if fo.G.shape[0] else fo.A
    quick = _cheap_descent(fo, tol, rows=rows, deadline=_share(deadline, CHEAP_SHARE))
    if quick is not None:
        return quick
    tree = _tree_test(fo, tol, _left(deadline))
    if tree.stationary is not None:
        return tree
    prog, layout = descent_milp(fo)
    return _with_tree_note(_milp_outcome(prog, layout, fo.evaluate, tol, _left(deadline)), tree)


def _milp_outcome(prog, layout, evaluate, tol, time_limit) -> FirstOrder:
    if time_limit < MILP_SECONDS_PER_COLUMN * prog.n_cols:
        return FirstOrder(None, "milp", tolerance=tol,
                          reason=f"first-order MILP not attempted: {prog.n_cols:,} columns and {time_limit:.3g} s "
                                 f"left (HiGHS's presolve alone would overrun the budget)")
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
