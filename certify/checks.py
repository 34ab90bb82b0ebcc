"""What a re-check returns, and the numpy re-checks shared by several certificate kinds.

Nothing here calls a solver: :mod:`certify.verify` and the ``recheck`` functions of the
second-order kinds (:mod:`certify.secondorder`) build on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

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
    """Stored multipliers ``lambda in [0,1]``, ``pi`` in simplices close ``0 = g + ...`` up to rounding.

    Multipliers prove ``L'(theta; d) >= 0`` only for *convex* generators (``gamma_j max(a_j.d, 0) >=
    gamma_j lambda_j a_j.d`` needs ``gamma_j >= 0``): a concave one (``gamma_j`` below minus its
    rounding bound) is accepted only inside a stored group of generators with bit-identical rows, equal
    multipliers and a summed coefficient that is non-negative up to rounding (then the group is one
    convex generator). Without this, 0 in the Clarke subdifferential would pass for d-stationarity.
    """
    lam = np.asarray(cert.get("lambda", []), dtype=np.float64)
    pis = [np.asarray(p, dtype=np.float64) for p in cert.get("pi", [])]
    if lam.shape != (one.n_generators,) or len(pis) != len(one.multi):
        checks.append(Check(name, False, f"{lam.size} multipliers stored for {one.n_generators} kinks"))
        return
    in_box = bool(np.all(lam >= 0) and np.all(lam <= 1))
    in_simplex = all(np.all(p >= 0) and abs(p.sum() - 1) <= 8 * p.size * 1.2e-16 for p in pis)
    res = multiplier_residual(one, lam, pis)
    convex, why = concave_generators_grouped(one, lam, cert.get("identical_row_groups") or [])
    ok = in_box and in_simplex and res.ok and convex
    detail = (f"0 = g + sum gamma_j lambda_j a_j + ... up to {res.inf:.3g}, within the rounding-error bound of "
              f"every entry: {res.ok} (worst entry at {res.ratio:.3g} of its bound); lambda in [0,1]: {in_box}; "
              f"pi in simplex: {in_simplex}; every generator convex (or in a convex group of identical rows): "
              f"{convex}{'' if convex else ' (' + why + ')'}")
    checks.append(Check(name, ok, detail))


def gamma_bound(one: OneLevel) -> np.ndarray:
    """Rounding-error bound of every generator coefficient ``gamma_j`` (0 without an absolute twin)."""
    tw = one.absolute
    if tw is None or not one.n_generators:
        return np.zeros(one.n_generators)
    return one.rounding * tw.gamma


def concave_generators_grouped(one: OneLevel, lam: np.ndarray, groups: list) -> tuple[bool, str]:
    """Whether every concave generator sits in a valid group (see :func:`check_multipliers`)."""
    J = one.n_generators
    if not J:
        return True, ""
    bound = gamma_bound(one)
    concave = one.gamma < -bound
    if not np.any(concave):
        return True, ""
    covered = np.zeros(J, dtype=bool)
    a = sp.csr_matrix(one.a, copy=True)
    a.eliminate_zeros()
    a.sort_indices()
    for members in groups:
        idx = np.asarray(members, dtype=np.int64)
        if idx.size < 2 or idx.min() < 0 or idx.max() >= J or np.unique(idx).size != idx.size:
            return False, f"malformed group {members}"
        rows = [(a.indices[a.indptr[j]:a.indptr[j + 1]].tobytes(), a.data[a.indptr[j]:a.indptr[j + 1]].tobytes())
                for j in idx]
        if any(r != rows[0] for r in rows[1:]):
            return False, f"group {members[:4]}... has rows that are not identical"
        if np.any(lam[idx] != lam[idx[0]]):
            return False, f"group {members[:4]}... has unequal multipliers"
        if one.gamma[idx].sum() < -bound[idx].sum():
            return False, f"group {members[:4]}... sums to a concave coefficient {one.gamma[idx].sum():.3g}"
        covered[idx] = True
    missing = np.nonzero(concave & ~covered)[0]
    if missing.size:
        return False, f"{missing.size} concave generator(s), e.g. {one.source[int(missing[0])]}, in no group"
    return True, ""
