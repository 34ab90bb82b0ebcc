"""What a re-check returns, and the numpy re-checks shared by several certificate kinds.

Nothing here calls a solver: :mod:`certify.verify` and the ``recheck`` functions of the
second-order kinds (:mod:`certify.secondorder`) build on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .formulate.first_order import OneLevel

#: relative agreement required between stored and recomputed numbers
REL = 1e-7
#: relative tolerance on the residual of a multiplier certificate (times the size of its terms)
TOL_CERTIFICATE = 1e-8


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    attested: bool = False  # True: not re-checkable without a solver; reported, not failed


def close(a, b, scale=None) -> bool:
    """``a`` and ``b`` agree to :data:`REL` relative to ``scale`` (default: their size)."""
    a, b = float(a), float(b)
    s = max(abs(a), abs(b), 1e-300) if scale is None else scale
    return abs(a - b) <= REL * s + 1e-300


def multiplier_residual(one: OneLevel, lam: np.ndarray, pis: list) -> tuple[float, float]:
    """``(max |g + sum gamma_j lambda_j a_j + ...|, tolerance)``; the tolerance is relative to the
    size of the terms (:data:`TOL_CERTIFICATE` times the largest term)."""
    rho = one.subgradient(lam, pis)
    size = float(np.abs(one.g if one.g_scale is None else one.g_scale).max(initial=0.0))
    if one.n_generators:
        rows = np.asarray(abs(one.a).max(axis=1).todense()).ravel()
        size = max(size, float(np.max(np.abs(one.gamma) * rows, initial=0.0)))
    return float(np.abs(rho).max(initial=0.0)), TOL_CERTIFICATE * max(size, 1e-300)


def check_multipliers(one: OneLevel, cert: dict, name: str, checks: list) -> None:
    """Stored multipliers ``lambda in [0,1]``, ``pi`` in simplices close ``0 = g + ...``."""
    lam = np.asarray(cert.get("lambda", []), dtype=np.float64)
    pis = [np.asarray(p, dtype=np.float64) for p in cert.get("pi", [])]
    if lam.shape != (one.n_generators,) or len(pis) != len(one.multi):
        checks.append(Check(name, False, f"{lam.size} multipliers stored for {one.n_generators} kinks"))
        return
    in_box = bool(np.all(lam >= 0) and np.all(lam <= 1))
    in_simplex = all(np.all(p >= 0) and abs(p.sum() - 1) <= 1e-9 for p in pis)
    resid, tol = multiplier_residual(one, lam, pis)
    ok = in_box and in_simplex and resid <= tol
    detail = (f"0 = g + sum gamma_j lambda_j a_j + ... up to {resid:.3g} (tolerance {tol:.3g}); "
              f"lambda in [0,1]: {in_box}; pi in simplex: {in_simplex}")
    checks.append(Check(name, ok, detail))
