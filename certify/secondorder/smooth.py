"""Smooth cell: no kink at all, so ``L`` is C^2 near theta and its Hessian decides.

The Hessian (dense, ``p`` Hessian-vector products) on the complement of the symmetry and flat
directions (:mod:`certify.secondorder.symmetry`): positive definite -> a local minimum, strict
modulo rescaling (Morse–Bott); a negative eigenvalue -> a saddle, refuted along its eigenvector
with a verified decrease; singular -> not decisive.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ..checks import Check, close
from ..data import Problem
from ..network import ForwardPass
from ..refute import search_curve
from ..tangent import dense_hessian, piece_slopes
from .base import DENSE_P, TOL_CURVATURE, Context, SecondOrder
from .symmetry import symmetry_basis

NAME = "hessian"


def applies(ctx: Context) -> str | None:
    if ctx.kinks.n_total:
        return "the Hessian test needs a point without kinks"
    if ctx.problem.n_params > DENSE_P:
        return f"p = {ctx.problem.n_params} is above the dense-Hessian limit ({DENSE_P})"
    return None


def run(ctx: Context) -> SecondOrder:
    return smooth_hessian_test(ctx.problem, ctx.fwd, deadline=ctx.deadline, cache=ctx.cache)


def smooth_hessian_test(problem: Problem, fwd: ForwardPass, deadline: float | None = None,
                        cache: dict | None = None) -> SecondOrder:
    """Hessian on the complement of the symmetry directions (no kinks: ``L`` is C^2 here)."""
    p = problem.n_params
    D = piece_slopes(problem, fwd)
    Q, counts = symmetry_basis(problem, fwd)
    N = sla.null_space(Q.T) if Q.shape[1] else np.eye(p)
    H = dense_hessian(problem, fwd, D, deadline=deadline)
    H = 0.5 * (H + H.T)
    Hr = N.T @ H @ N
    Hr = 0.5 * (Hr + Hr.T)
    evals, evecs = np.linalg.eigh(Hr) if Hr.size else (np.zeros(0), np.zeros((0, 0)))
    scale = float(np.linalg.norm(H))
    tol = TOL_CURVATURE * max(scale, 1e-300)
    q = float(evals[0]) if evals.size else np.inf
    if cache is not None:   # the higher-order kind (certify.secondorder.higher_order) reads the null space
        cache["reduced_hessian"] = {"basis": N, "evals": evals, "evecs": evecs, "tolerance": tol}
    cert = {"kind": "reduced_hessian", "min_eigenvalue": q, "max_eigenvalue": float(evals[-1]) if evals.size else None,
            "tolerance": tol, "hessian_frobenius": scale, "reduced_dimension": int(N.shape[1]),
            "symmetry": counts, "n_negative": int(np.count_nonzero(evals < -tol)),
            "n_zero": int(np.count_nonzero(np.abs(evals) <= tol))}
    if q > tol:
        dead, shift = counts.get("dead_units", 0), counts.get("beyond_rescaling", 0) - counts.get("dead_units", 0)
        # strict: modulo the rescaling orbits only; dead units, translations, GL and partly dead units are flat
        flags = {"strict": dead + shift == 0, "flat_directions": dead + shift > 0, "differentiable": True}
        what = ("a strict local minimum modulo rescaling" if dead + shift == 0 else
                f"a local minimum, strict modulo rescaling and the flat directions of {dead} dead unit(s) and "
                f"{shift} translation, GL or partly-dead direction(s) (certify.secondorder.symmetry)")
        return SecondOrder("local_min", "hessian", reason=f"no kink; the Hessian is positive definite "
                           f"(smallest eigenvalue {q:.3g}) on the complement of the {Q.shape[1]} symmetry/flat "
                           f"directions: {what}", flags=flags, certificate=cert)
    if q < -tol:
        d = N @ evecs[:, 0]
        d /= np.abs(d).max()
        from ..kinks import find_kinks
        kinks = find_kinks(problem, fwd, 0.0)
        curve = search_curve(problem, fwd, kinks, d)
        curve["curvature"] = q
        if curve["verified"]:
            return SecondOrder("saddle", "hessian", reason=f"no kink; the Hessian has a negative eigenvalue {q:.3g} "
                               f"off the symmetry directions; the loss drops by {curve['decrease']:.3g} along its "
                               f"eigenvector (verified)", flags={"differentiable": True, "strict": False},
                               certificate=cert, refutation=curve)
        return SecondOrder(None, "hessian", reason=f"negative curvature {q:.3g} but no verified decrease",
                           certificate=cert)
    return SecondOrder(None, "hessian", reason=f"the reduced Hessian is singular ({cert['n_zero']} zero "
                       f"eigenvalue(s) beyond symmetry): second order is not decisive", certificate=cert)


def recheck(ctx: Context, cert: dict, checks: list) -> None:
    from ..kinks import find_kinks
    problem, fwd = ctx.problem, ctx.fwd
    kinks = find_kinks(problem, fwd, 0.0)
    if kinks.n_total:
        checks.append(Check("smooth_cell", False, "a pre-activation or loss term is exactly on a kink: the Hessian "
                            "test needs a smooth cell"))
        return
    Q, _ = symmetry_basis(problem, fwd)
    N = sla.null_space(Q.T) if Q.shape[1] else np.eye(problem.n_params)
    H = dense_hessian(problem, fwd, piece_slopes(problem, fwd))
    H = 0.5 * (H + H.T)
    Hr = N.T @ H @ N
    q = float(np.linalg.eigvalsh(0.5 * (Hr + Hr.T))[0])
    tol = TOL_CURVATURE * max(float(np.linalg.norm(H)), 1e-300)
    claimed = float(cert.get("min_eigenvalue", np.nan))
    agree = close(q, claimed, max(abs(q), tol))
    try:
        np.linalg.cholesky(Hr - 0.5 * q * np.eye(Hr.shape[0]))
        chol = q > tol
    except np.linalg.LinAlgError:
        chol = False
    checks.append(Check("reduced_hessian", agree and chol,
                        f"smallest eigenvalue {q:.6g} off the symmetry directions (report: {claimed:.6g}); "
                        f"Cholesky of H_r - q/2 I {'succeeds' if chol else 'fails'}"))
