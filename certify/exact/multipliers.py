"""Exact multiplier certificates: rational multipliers that close the subgradient equation exactly.

For one level of kinks (and, on a piece, signed branch rows ``R``) d-stationarity is certified by

    g + sum_j gamma_j lambda_j a_j + (1/n) sum_q G_q' S_q' pi_q - R' mu = 0,
    lambda_j in [0, 1],  pi_q in the simplex,  mu >= 0

(DESIGN.md §3; :mod:`certify.secondorder.pieces` for ``R``). The float pipeline finds multipliers up
to rounding; here they are made exact. The float values guess the *active set* -- which multipliers
sit at 0, at 1, or strictly inside -- and the free ones are solved for exactly
(:func:`certify.exact.linalg.solve_consistent`: a float-chosen square system solved by fraction-free
elimination, then every equation checked exactly). A free multiplier that comes out of its interval
is moved to the bound and the system solved again; guesses at thresholds from 1e-12 to 1e-3 are tried in
turn. Simplex constraints are eliminated by substitution (``pi_ref = 1 - sum of the other free
entries``).

When no guess closes the equation the exact residual ``rho`` of the best attempt is returned, and
with it a *tangential direction*: an exact ``d`` orthogonal to every free generator with
``rho . d < 0`` (:func:`certify.exact.linalg.tangential_direction`), so along ``d`` the free kinks
stay on their kink to first order and ``L'(theta; d) = rho . d + (terms of the multipliers on their
bounds, >= 0)``. Neither is a proof of non-stationarity by itself (another active set might close
the equation); a direction with exact ``L'(theta; d) < 0`` is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .linalg import solve_consistent, tangential_direction
from .rational import QArray, as_q
from .tangent import ExactOneLevel

LOW, FREE, HIGH = -1, 0, 1
#: relative distances to a bound at which a float multiplier is guessed to sit on it, in the order tried
#: (a larger threshold puts more multipliers on their bounds, a smaller one frees more)
THRESHOLDS = (1e-9, 1e-6, 1e-12, 1e-3, 0.0)


@dataclass
class ExactMultipliers:
    """Outcome of :func:`exact_multipliers`.

    ``ok``: the multipliers are in their sets and ``residual`` (``g + ... - R' mu``, exact, (p,)) is
    zero. Otherwise ``residual`` is the best attempt's and ``direction`` a candidate descent
    direction orthogonal to its free generators (see the module docstring); either may be None.
    """

    ok: bool
    lam: QArray | None = None
    pis: list = field(default_factory=list)
    mu: QArray | None = None
    residual: QArray | None = None
    direction: QArray | None = None
    reason: str = ""
    attempts: int = 0

    def certificate(self, one: ExactOneLevel, branch: list | None = None) -> dict:
        """The multipliers as exact ``"p/q"`` strings (and their float images), for a report."""
        out = {"kind": "multipliers", "exact": True, "ok": self.ok,
               "lambda": self.lam.to_strings() if self.lam is not None else [],
               "pi": [p.to_strings() for p in self.pis],
               "generators": [_plain_desc(d) for d in one.descs],
               "residual": "0" if self.ok else None, "attempts": self.attempts}
        out["lambda_float"] = self.lam.to_float() if self.lam is not None else np.zeros(0)
        if self.mu is not None:
            out["mu"] = self.mu.to_strings()
            out["mu_float"] = self.mu.to_float()
        if branch is not None:
            out["branch"] = [_plain_desc(b) for b in branch]
        if not self.ok:
            out["reason"] = self.reason
            if self.residual is not None:
                out["residual_inf"] = float(np.abs(self.residual.to_float()).max(initial=0.0))
        return out


def _plain_desc(desc: tuple) -> list:
    return [list(x) if isinstance(x, tuple) else x for x in desc]


class _Layout:
    """Columns of the system and their bounds: ``lambda`` (J), ``pi_q`` (m_q each), ``mu`` (m_R)."""

    def __init__(self, one: ExactOneLevel, R: QArray | None):
        self.one = one
        cols = one.columns()
        self.J = one.n_generators
        self.sizes = [S.shape[0] for _, S in one.multi]
        self.m_R = 0 if R is None else R.shape[0]
        if self.m_R:
            cols = QArray.concatenate([cols, -R.T], axis=1)
        self.C = cols.reduce()
        self.rhs = -one.g
        self.m = self.C.shape[1]
        self.upper = np.concatenate([np.ones(self.J)] + [np.ones(s) for s in self.sizes] + [np.full(self.m_R, np.inf)])
        self.groups, pos = [], self.J
        for s in self.sizes:
            self.groups.append(np.arange(pos, pos + s))
            pos += s
        self.mu_slice = slice(pos, pos + self.m_R)
        self.Cf = self.C.to_float()

    def split(self, x: QArray):
        lam = x[:self.J]
        pis = [x[idx] for idx in self.groups]
        mu = x[self.mu_slice] if self.m_R else None
        return lam, pis, mu


def exact_multipliers(one: ExactOneLevel, guess: tuple | None = None, R: QArray | None = None) -> ExactMultipliers:
    """Rational multipliers closing ``g + sum gamma lambda a + (1/n) sum G'S'pi - R'mu = 0`` exactly.

    Parameters
    ----------
    one : ExactOneLevel
    guess : (lambda, pis, mu), optional
        Float multipliers from the float pipeline (entries NaN or None where unknown); missing ones
        come from a float least-squares solve.
    R : QArray (m, p), optional
        Signed branch rows of a piece (their multipliers ``mu >= 0``).
    """
    lay = _Layout(one, R)
    x0 = _initial_guess(lay, guess)
    if lay.m == 0:
        rho = one.g.reduce()
        ok = not rho.any()
        return ExactMultipliers(ok, QArray.zeros(0), [], QArray.zeros(lay.m_R) if lay.m_R else None, rho,
                                None if ok else -rho, "" if ok else "no kink generators and a nonzero gradient", 0)
    col_size = np.abs(lay.Cf).max(axis=0, initial=0.0)
    tried, best, attempts = set(), None, 0
    for guess_x in (x0, None):
        if guess_x is None:                      # the given guess failed: a bounded least-squares one
            guess_x = _bounded_guess(lay)
            if guess_x is None:
                break
        size = max(float(np.abs(lay.rhs.to_float()).max(initial=0.0)),
                   float(np.max(col_size * np.where(np.isfinite(lay.upper), 1.0, np.abs(guess_x)), initial=0.0)),
                   1e-300)
        for thr in THRESHOLDS:
            status = _classify(lay, guess_x, col_size, size, thr)
            for _ in range(2 * lay.m + 4):
                key = status.tobytes()
                if key in tried:
                    break
                tried.add(key)
                out = _solve_status(lay, status, guess_x)
                if out is None:
                    break
                attempts += 1
                x, rho, low, high, solved = out
                consistent = not rho.any()
                if best is None or (consistent and not best[3]) or (
                        consistent == best[3] and _norm(rho) < _norm(best[1])):
                    best = (x, rho, status.copy(), consistent, solved)
                if not consistent:
                    break
                if not low.any() and not high.any():
                    lam, pis, mu = lay.split(x)
                    return ExactMultipliers(True, lam, pis, mu, rho, None, "", attempts)
                status = status.copy()
                status[low], status[high] = LOW, HIGH
    if best is None:
        return ExactMultipliers(False, reason="no admissible active set (a simplex with every entry at 0)",
                                attempts=attempts)
    x, rho, status, consistent, (A, cols, rows) = best
    lam, pis, mu = lay.split(x)
    reason = ("the exact system is consistent but its solutions leave the multiplier bounds"
              if consistent else "no active set tried closes the subgradient equation exactly "
              f"(residual {_norm(rho):.3g} in the max-norm)")
    return ExactMultipliers(False, lam, pis, mu, rho, tangential_direction(A, rho, cols, rows), reason, attempts)


def _norm(q: QArray) -> float:
    return float(np.abs(q.to_float()).max(initial=0.0))


def _initial_guess(lay: _Layout, guess) -> np.ndarray:
    x0 = np.full(lay.m, np.nan)
    if guess is not None:
        lam, pis, mu = (tuple(guess) + (None, None, None))[:3]
        if lam is not None and len(lam) == lay.J:
            x0[:lay.J] = np.asarray(lam, dtype=np.float64)
        if pis is not None and len(pis) == len(lay.groups):
            for idx, p in zip(lay.groups, pis):
                if p is not None and len(p) == idx.size:
                    x0[idx] = np.asarray(p, dtype=np.float64)
        if mu is not None and lay.m_R and len(mu) == lay.m_R:
            x0[lay.mu_slice] = np.asarray(mu, dtype=np.float64)
    miss = ~np.isfinite(x0)
    if miss.any():
        known = ~miss
        b = lay.rhs.to_float() - lay.Cf[:, known] @ x0[known]
        x0[miss] = np.linalg.lstsq(lay.Cf[:, miss], b, rcond=None)[0]
    x0 = np.clip(x0, 0.0, lay.upper)
    for idx in lay.groups:
        s = x0[idx].sum()
        x0[idx] = x0[idx] / s if s > 0 else 1.0 / idx.size
    return x0


def _bounded_guess(lay: _Layout) -> np.ndarray | None:
    """Float multipliers by bounded least squares (BVLS) with the simplex sums as heavy rows.

    Only a guess of the active set: every number of a certificate is then solved and checked exactly.
    """
    from scipy.optimize import lsq_linear    # a float guess only; nothing exact depends on it
    A, b = lay.Cf, lay.rhs.to_float()
    w = 1e3 * max(float(np.abs(A).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1e-300)
    rows = [np.zeros(lay.m) for _ in lay.groups]
    for row, idx in zip(rows, lay.groups):
        row[idx] = w
    if rows:
        A = np.vstack([A, np.array(rows)])
        b = np.concatenate([b, np.full(len(rows), w)])
    try:
        x = lsq_linear(A, b, bounds=(np.zeros(lay.m), lay.upper), method="bvls", tol=1e-14,
                       max_iter=50 * lay.m + 100).x
    except (ValueError, np.linalg.LinAlgError):
        return None
    x = np.clip(x, 0.0, lay.upper)
    for idx in lay.groups:
        s = x[idx].sum()
        x[idx] = x[idx] / s if s > 0 else 1.0 / idx.size
    return x


def _classify(lay: _Layout, x0, col_size, size, thr) -> np.ndarray:
    status = np.full(lay.m, FREE, dtype=np.int64)
    status[(x0 * col_size <= thr * size) | (col_size == 0)] = LOW
    bounded = np.isfinite(lay.upper)
    high = bounded & ((lay.upper - x0) * col_size <= thr * size) & (col_size > 0)
    status[high & (status != LOW)] = HIGH
    for idx in lay.groups:
        st = status[idx]
        if np.any(st == HIGH):
            top = idx[int(np.argmax(np.where(st == HIGH, x0[idx], -np.inf)))]
            status[idx] = LOW
            status[top] = HIGH
        elif np.all(st == LOW):
            status[idx[int(np.argmax(x0[idx]))]] = FREE
    return status


def _reduced(lay: _Layout, status: np.ndarray, x0: np.ndarray):
    """The system in the free unknowns: simplices substituted, fixed multipliers moved to the right.

    Returns ``(A, b, free, refs, x_fixed)`` or None (a simplex with no free entry and no 1), where
    ``x = x_fixed + E y`` maps the free unknowns ``y`` back (``E`` given by ``free`` and ``refs``).
    """
    x_fixed = QArray.zeros(lay.m)
    x_fixed[status == HIGH] = QArray.full(int(np.count_nonzero(status == HIGH)), 1)
    refs = {}
    for idx in lay.groups:
        free_q = idx[status[idx] == FREE]
        if free_q.size == 0:
            if not np.any(status[idx] == HIGH):
                return None
            continue
        ref = free_q[int(np.argmax(x0[free_q]))]
        refs[int(ref)] = free_q[free_q != ref]
        x_fixed[int(ref)] = 1
    free = np.array([j for j in range(lay.m) if status[j] == FREE and j not in refs], dtype=np.int64)
    b = (lay.rhs - lay.C @ x_fixed).reduce()
    A = lay.C[:, free] if free.size else QArray.zeros((lay.C.shape[0], 0))
    if refs and free.size:
        pos = {int(j): k for k, j in enumerate(free)}
        cols = [A[:, k] for k in range(free.size)]
        for ref, others in refs.items():
            for j in others:
                cols[pos[int(j)]] = cols[pos[int(j)]] - lay.C[:, ref]
        A = QArray.stack(cols, axis=1)
    return A.reduce(), b, free, refs, x_fixed


def _solve_status(lay: _Layout, status: np.ndarray, x0: np.ndarray):
    red = _reduced(lay, status, x0)
    if red is None:
        return None
    A, b, free, refs, x_fixed = red
    default = QArray.from_float(np.clip(x0[free], 0.0, lay.upper[free])) if free.size else QArray.zeros(0)
    y, rho, cols, rows = solve_consistent(A, b, default=default)
    x = x_fixed.copy()
    if free.size:
        x[free] = y
    for ref, others in refs.items():
        if others.size:
            x[ref] = 1 - x[others].sum()
    sign = x.sign()
    low = (sign < 0) & (status != LOW)
    over = (x - QArray.from_float(np.where(np.isfinite(lay.upper), lay.upper, 0.0))).sign() > 0
    high = over & np.isfinite(lay.upper) & (status != HIGH)
    return x, rho, low, high, (A, cols, rows)


# ---------------------------------------------------------------------------- guesses from floats
def float_guesses(certificate: dict, model, kinks) -> dict:
    """Float multipliers of the float pipeline keyed by the kink they belong to.

    ``certificate`` is a first-order certificate of kind ``"multipliers"``
    (:func:`certify.first_order.certificate_from_multipliers`), ``model`` the float
    :class:`~certify.tangent.FirstOrderModel` and ``kinks`` the float :class:`~certify.kinks.KinkStructure`
    it was built from. Returns ``{("unit", layer, sample, unit): lambda, ("loss", sample, group):
    {piece: weight}}`` (a two-piece loss generator ``lambda`` is the weight ``1 - lambda, lambda`` of
    its pieces; a tie of more pieces has weights ``pi``).
    """
    if not certificate or certificate.get("kind") != "multipliers":
        return {}
    lam = np.asarray(certificate.get("lambda", []), dtype=np.float64)
    pis = [np.asarray(p, dtype=np.float64) for p in certificate.get("pi", [])]
    gens = certificate.get("generators", [])
    n_groups = len(model.groups) // max(len(model.lk_sample), 1) if len(model.lk_sample) else 0
    active = {(int(i), int(g)): [int(a) for a in act]
              for i, g, act in zip(kinks.loss_sample, kinks.loss_group, kinks.loss_active)}

    def group_key(q):
        return int(model.lk_sample[q // n_groups]), int(q % n_groups)

    out = {}
    for j, (kind, idx) in enumerate(gens):
        if j >= lam.size:
            break
        if kind == "unit":
            k = int(model.kink_ids[int(idx)])
            out[("unit", int(kinks.unit_layer[k]), int(kinks.unit_sample[k]), int(kinks.unit_index[k]))] = float(lam[j])
        elif n_groups:
            i, gr = group_key(int(idx))
            act = active.get((i, gr), [])
            if len(act) == 2:
                out[("loss", i, gr)] = {act[0]: 1.0 - float(lam[j]), act[1]: float(lam[j])}
    multi_q = [q for q, (_, S) in enumerate(model.groups) if S.shape[0] > 2]
    for q, pi in zip(multi_q, pis):
        if n_groups:
            i, gr = group_key(q)
            act = active.get((i, gr), [])
            if len(act) == pi.size:
                out[("loss", i, gr)] = {a: float(w) for a, w in zip(act, pi)}
    return out


def guess_for(one: ExactOneLevel, guesses: dict) -> tuple:
    """``(lambda, pis)`` floats for ``one``'s generators from :func:`float_guesses` (NaN where unknown)."""
    lam = np.full(one.n_generators, np.nan)
    for j, desc in enumerate(one.descs):
        if desc[0] == "unit":
            v = guesses.get(desc)
            if v is not None:
                lam[j] = v
        else:
            w = guesses.get(desc[:3])
            a0, a1 = desc[3]
            if w is not None and a0 in w and a1 in w and w[a0] + w[a1] > 0:
                lam[j] = w[a1] / (w[a0] + w[a1])
    pis = []
    for desc in one.multi_descs:
        w = guesses.get(desc[:3])
        act = desc[3]
        if w is not None and all(a in w for a in act) and sum(w[a] for a in act) > 0:
            tot = sum(w[a] for a in act)
            pis.append(np.array([w[a] / tot for a in act]))
        else:
            pis.append(np.full(len(act), np.nan))
    return lam, pis


def residual_of(one: ExactOneLevel, lam, pis, mu=None, R: QArray | None = None) -> QArray:
    """``g + sum gamma lambda a + (1/n) sum G'S'pi - R'mu`` for given rational multipliers, exactly."""
    rho = one.subgradient(as_q(lam) if lam is not None else QArray.zeros(0), [as_q(p) for p in pis])
    if R is not None and R.shape[0]:
        rho = rho - R.T @ as_q(mu)
    return rho.reduce()


def in_bounds(lam, pis, mu=None) -> bool:
    """``lambda in [0, 1]``, every ``pi`` in its simplex, ``mu >= 0`` -- exactly."""
    lam = as_q(lam) if lam is not None else QArray.zeros(0)
    ok = bool(np.all(lam.sign() >= 0) and np.all((1 - lam).sign() >= 0))
    for p in pis:
        p = as_q(p)
        ok &= bool(np.all(p.sign() >= 0)) and p.sum().item() == 1
    if mu is not None:
        ok &= bool(np.all(as_q(mu).sign() >= 0))
    return ok
