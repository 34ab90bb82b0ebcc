"""Lanczos: no kink and ``p`` above the dense limit -- proves saddles only.

The least eigenvalue of the Hessian off the symmetry directions by Lanczos on Hessian-vector
products; a negative Ritz value gives a curve whose decrease is then verified. A Lanczos estimate
bounds the spectrum from above only, so it is never a proof of a minimum.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..data import Problem
from ..network import ForwardPass
from ..refute import search_curve
from ..tangent import piece_slopes
from .base import DENSE_P, Context, SecondOrder
from .symmetry import symmetry_vectors

NAME = "lanczos"


def applies(ctx: Context) -> str | None:
    if ctx.kinks.n_total:
        return "the Lanczos test needs a point without kinks"
    if ctx.problem.n_params <= DENSE_P:
        return "p is within the dense limit: the dense Hessian decides"
    return None


def run(ctx: Context) -> SecondOrder:
    return lanczos_hessian_test(ctx.problem, ctx.fwd, piece_slopes(ctx.problem, ctx.fwd),
                                time_limit=ctx.budget())


def lanczos_hessian_test(problem: Problem, fwd: ForwardPass, D: list, *, max_hvp: int = 120,
                         time_limit: float = 60.0) -> SecondOrder:
    """Large p: the smallest eigenvalue of the Hessian off the symmetry directions by Lanczos.

    ``scipy.sparse.linalg.eigsh`` on Hessian-vector products, projected with the sparse symmetry
    vectors. A clearly negative Ritz value gives a direction whose curve is then proved to descend
    (its second derivative is recomputed and the decrease verified): a saddle. A non-negative
    estimate is *not* a proof of minimality (Lanczos bounds the spectrum from above only), so the
    verdict then stays open and the estimate is reported.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh, splu
    from ..tangent import hessian_vector_product
    p = problem.n_params
    T, counts = symmetry_vectors(problem, fwd)
    if T.shape[1]:
        G = (T.T @ T).tocsc()
        # the vectors can be dependent (a unit's orbit and its translation coincide when its outgoing
        # weights vanish): a tiny ridge makes the projection well defined
        gram = splu(G + 1e-12 * max(float(G.diagonal().max()), 1e-300) * sp.identity(T.shape[1], format="csc"))

        def proj(v):
            return v - T @ gram.solve(np.asarray(T.T @ v).ravel())
    else:
        def proj(v):
            return v
    lg = problem.loss.gradient(fwd.output, problem.Y)
    calls = {"hvp": 0}

    import time as _time
    start = _time.perf_counter()

    class _Budget(Exception):
        pass

    def mv(v):
        calls["hvp"] += 1
        if calls["hvp"] > max_hvp or _time.perf_counter() - start > time_limit:
            raise _Budget
        v = proj(np.asarray(v, dtype=np.float64).ravel())
        return proj(hessian_vector_product(problem, fwd, D, v, lg))

    op = LinearOperator((p, p), matvec=mv, dtype=np.float64)
    v0 = proj(np.random.default_rng(0).standard_normal(p))
    try:
        big = abs(float(eigsh(op, k=1, which="LM", maxiter=max_hvp // 4, tol=1e-3, v0=v0,
                              return_eigenvectors=False)[0]))
    except ArpackNoConvergence as exc:
        big = float(np.max(np.abs(exc.eigenvalues))) if len(exc.eigenvalues) else 1.0
    except _Budget:
        big = 1.0
    try:
        w, V = eigsh(op, k=1, which="SA", maxiter=max_hvp, tol=1e-6, v0=v0)
    except ArpackNoConvergence as exc:
        w, V = exc.eigenvalues, exc.eigenvectors
    except _Budget:
        w, V = np.zeros(0), None
    cert = {"kind": "lanczos_estimate", "hvp_calls": calls["hvp"], "largest_magnitude": big, "symmetry": counts}
    if len(w) == 0:
        return SecondOrder(None, "hessian", reason=f"p = {p}: Lanczos did not converge within {max_hvp} "
                           f"Hessian-vector products / {time_limit:g} s", certificate=cert)
    q = float(w[0])
    cert["min_ritz_value"] = q
    tol = 1e-6 * max(big, 1e-300)
    if q < -tol:
        d = proj(np.asarray(V[:, 0]))
        d /= np.abs(d).max()
        from ..kinks import find_kinks
        curve = search_curve(problem, fwd, find_kinks(problem, fwd, 0.0), d)
        curve["curvature"] = q
        if curve["verified"]:
            return SecondOrder("saddle", "lanczos", reason=(
                f"no kink; Lanczos finds curvature {q:.3g} off the symmetry directions (p = {p}); the loss "
                f"drops by {curve['decrease']:.3g} along the Ritz vector, a verified local descent"),
                flags={"differentiable": True, "strict": False}, certificate=cert, refutation=curve)
    return SecondOrder(None, "hessian", reason=(
        f"p = {p} is above the dense-Hessian limit ({DENSE_P}); Lanczos estimates the least curvature off "
        f"the symmetry directions at {q:.3g} ({calls['hvp']} Hessian-vector products), which is not a proof "
        f"of minimality"), certificate=cert)
