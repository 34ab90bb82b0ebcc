"""Copositivity: the Lagrangian Hessian is strictly copositive on every piece's critical cone.

Used when a critical cone has too many one-sided rows for face enumeration
(:mod:`certify.secondorder.cone` leaves its model in the context). ``H = S + F'NF + eps I`` with
``S`` PSD and ``N >= 0`` proves ``d'Hd >= eps ||d||^2`` on ``{F d >= 0}`` -- a sufficient condition,
copositivity being co-NP-hard to decide. ``N`` comes from a semidefinite program (cvxpy/Clarabel);
the claim rests on numpy: ``S`` has no negative eigenvalue and ``N`` no negative entry.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ..checks import Check
from ..data import Problem
from ..network import ForwardPass
from ..tangent import dense_hessian
from .base import TOL_CURVATURE, Context, SecondOrder
from .cone import cone_model, piece_of
from .symmetry import symmetry_vectors

NAME = "copositivity"


def applies(ctx: Context) -> str | None:
    if "cone_model" not in ctx.cache:
        return "only where the critical cone has too many faces to enumerate"
    return None


def run(ctx: Context) -> SecondOrder:
    cop = cone_copositivity(ctx.problem, ctx.fwd, ctx.cache["cone_model"], deadline=ctx.deadline)
    if cop["ok"]:
        return SecondOrder("local_min", NAME, reason=(
            "the critical cone has too many faces to enumerate; instead the Lagrangian Hessian is certified "
            "strictly copositive on the critical cone of every piece (H = S + F'NF + eps I with S PSD, N >= 0: "
            "cvxpy/Clarabel, re-checked with numpy)"), flags={"strict": None},
            certificate={"kind": "copositivity", "pieces": cop["pieces"], "symmetry": cop["symmetry"]})
    return SecondOrder(None, NAME, reason="no copositivity certificate was found")


def recheck(ctx: Context, cert: dict, checks: list, fo_cert: dict | None = None) -> None:
    fc = fo_cert or {}
    cm = cone_model(ctx.problem, ctx.fwd, ctx.kinks, ctx.fo, np.asarray(fc.get("lambda", []), dtype=np.float64),
                    [np.asarray(p_, dtype=np.float64) for p_ in fc.get("pi", [])])
    if isinstance(cm, str):
        checks.append(Check("copositivity", False, cm))
        return
    res = cone_copositivity(ctx.problem, ctx.fwd, cm, stored=cert.get("pieces", []))
    checks.append(Check("copositivity", res["ok"], f"H - F'NF - eps I is PSD with N >= 0 on all "
                        f"{len(res['pieces'])} piece(s)" if res["ok"] else "a stored copositivity factor "
                        "does not re-check"))


def cone_copositivity(problem: Problem, fwd: ForwardPass, model: dict, stored: list | None = None,
                      deadline: float | None = None) -> dict:
    """Certify ``d' H d > 0`` on every piece's cone by ``H = S + F' N F + eps I`` (S PSD, N >= 0).

    Used when a cone has too many one-sided rows for face enumeration. On ``{F d >= 0}`` the form
    is then at least ``eps ||d||^2``: a sufficient condition (copositivity is co-NP-hard to decide
    exactly). The factor ``N`` comes from a semidefinite program solved with cvxpy (Clarabel); the
    claim rests on numpy only: ``S = H - F' N F - eps I`` must have no negative eigenvalue and ``N``
    no negative entry. With ``stored`` (a list of ``{"N", "eps"}`` per piece, from a report) nothing
    is solved: the stored factors are re-checked, as ``verify`` does.
    """
    import itertools
    T, counts = symmetry_vectors(problem, fwd)
    p = problem.n_params
    Q = sla.orth(T.toarray()) if T.shape[1] else np.zeros((p, 0))
    E = model["E"]
    base = np.vstack([E, Q.T]) if (E.size or Q.size) else np.zeros((0, p))
    Z0 = sla.null_space(base) if base.shape[0] else np.eye(p)
    slopes = problem.network.activation.slopes
    pieces = []
    signs_all = list(itertools.product((1, -1), repeat=len(model["inert"])))
    for k, signs in enumerate(signs_all):
        D, Fp, _ = piece_of(model, signs, slopes)
        HZ = dense_hessian(problem, fwd, D, basis=Z0, loss_grad=model["loss_grad"], inject=model["inject"],
                           deadline=deadline)
        H0 = Z0.T @ HZ
        H0 = 0.5 * (H0 + H0.T)
        F0 = Fp @ Z0
        scale = max(float(np.linalg.norm(HZ)), 1e-300)
        if stored is None:
            N, eps = _copositive_factor(H0, F0, scale, deadline)
        else:
            N = np.asarray(stored[k]["N"], dtype=np.float64) if k < len(stored) else None
            eps = float(stored[k]["eps"]) if k < len(stored) else 0.0
        ok = False
        least = None
        if N is not None and N.shape == (F0.shape[0], F0.shape[0]) and eps > TOL_CURVATURE * scale:
            S = H0 - F0.T @ N @ F0 - eps * np.eye(H0.shape[0])
            least = float(np.linalg.eigvalsh(0.5 * (S + S.T))[0]) if S.size else 0.0
            ok = bool(np.all(N >= 0) and least >= -1e-12 * scale)
        pieces.append({"signs": list(signs), "N": N, "eps": eps, "ok": ok, "least_eigenvalue_of_S": least})
        if not ok:
            break
    return {"ok": all(pc["ok"] for pc in pieces) and len(pieces) == len(signs_all), "pieces": pieces,
            "symmetry": counts}


def _copositive_factor(H0: np.ndarray, F0: np.ndarray, scale: float, deadline: float | None = None):
    """Largest ``eps`` (and ``N``) with ``H0 - F0' N F0 - eps I`` PSD, ``N >= 0``; (None, 0) on failure."""
    try:
        import cvxpy as cp
    except ImportError:  # pragma: no cover - cvxpy is a core dependency
        return None, 0.0
    m, r = H0.shape[0], F0.shape[0]
    if m == 0:
        return np.zeros((r, r)), scale
    N = cp.Variable((r, r), symmetric=True)
    eps = cp.Variable()
    S = H0 - F0.T @ N @ F0 - eps * np.eye(m)
    prob = cp.Problem(cp.Maximize(eps), [N >= 0, 0.5 * (S + S.T) >> 0, eps <= scale])
    try:
        from ..budget import remaining
        left = remaining(deadline, default=3600.0)
        if left <= 0:
            return None, 0.0
        prob.solve(solver="CLARABEL", time_limit=left)
    except Exception:  # noqa: BLE001 - any solver failure just means no certificate
        return None, 0.0
    if N.value is None or eps.value is None or eps.value <= 0:
        return None, 0.0
    # keep a margin: the re-check uses half of the solver's eps and N clipped to >= 0
    return np.maximum(N.value, 0.0), 0.5 * float(eps.value)
