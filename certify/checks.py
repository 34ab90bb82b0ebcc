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


@dataclass(frozen=True)
class Residual:
    """The residual ``rho`` of a subgradient equation against its rounding-error bound.

    ``ok`` when ``|rho_i| <= bound_i`` for every coordinate: the equation holds up to rounding.
    ``ratio`` is ``max_i |rho_i| / bound_i`` (how many rounding bounds away the worst entry is).
    """

    inf: float
    two: float
    bound: float
    ratio: float
    ok: bool


def compare(rho: np.ndarray, bound: np.ndarray) -> Residual:
    """``rho`` against a coordinatewise bound."""
    rho, bound = np.abs(np.asarray(rho, dtype=np.float64)), np.asarray(bound, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(rho == 0, 0.0, rho / bound)
    ratio = float(np.max(r, initial=0.0))
    return Residual(inf=float(rho.max(initial=0.0)), two=float(np.linalg.norm(rho)),
                    bound=float(bound.max(initial=0.0)), ratio=ratio, ok=bool(np.all(rho <= bound)))


def multiplier_residual(one: OneLevel, lam: np.ndarray, pis: list) -> Residual:
    """``g + sum gamma_j lambda_j a_j + ...`` against the rounding-error bound of its computation."""
    return compare(one.subgradient(lam, pis), one.residual_bound(lam, pis))


def check_multipliers(one: OneLevel, cert: dict, name: str, checks: list) -> None:
    """Stored multipliers ``lambda in [0,1]``, ``pi`` in simplices close ``0 = g + ...`` up to rounding."""
    lam = np.asarray(cert.get("lambda", []), dtype=np.float64)
    pis = [np.asarray(p, dtype=np.float64) for p in cert.get("pi", [])]
    if lam.shape != (one.n_generators,) or len(pis) != len(one.multi):
        checks.append(Check(name, False, f"{lam.size} multipliers stored for {one.n_generators} kinks"))
        return
    in_box = bool(np.all(lam >= 0) and np.all(lam <= 1))
    in_simplex = all(np.all(p >= 0) and abs(p.sum() - 1) <= 8 * p.size * 1.2e-16 for p in pis)
    res = multiplier_residual(one, lam, pis)
    ok = in_box and in_simplex and res.ok
    detail = (f"0 = g + sum gamma_j lambda_j a_j + ... up to {res.inf:.3g}, within the rounding-error bound of "
              f"every entry: {res.ok} (worst entry at {res.ratio:.3g} of its bound); lambda in [0,1]: {in_box}; "
              f"pi in simplex: {in_simplex}")
    checks.append(Check(name, ok, detail))
