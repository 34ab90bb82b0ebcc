"""Loss values with a rigorous rounding-error bound, for verified decreases.

A refutation is only reported when ``L(theta) - L(theta')`` is larger than the sum of the
error bounds of the two evaluations. The bound follows the standard forward error analysis of
dot products (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1): a computed
``z = W x + b`` with fan-in ``m`` satisfies ``|fl(z) - z| <= gamma_{m+1} (|W| |x| + |b|)``,
``gamma_m = m u / (1 - m u)``, whatever the summation order (blocked, pairwise or FMA). Errors
in the inputs propagate through ``|W|``; every activation here is 1-Lipschitz, every loss has a
known Lipschitz constant in ``f``. The parameters and data are taken exactly as stored (floats are
rationals); the bound is doubled for safety.

When float64 cannot separate two values, the same evaluation runs in ``numpy.longdouble``
(64-bit mantissa on x86-64) and, for the rational losses on small problems, in exact rational
arithmetic (:func:`exact_loss`, :func:`exact_decrease`), which needs no bound at all -- also at
points floats cannot represent, such as ``theta + 2^-100 d`` (:func:`curve_point`), so a decrease
below float resolution is still proved (:mod:`certify.exact`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .data import Problem


@dataclass(frozen=True)
class BoundedValue:
    """A loss value and a bound on its rounding error: the exact value is in ``value +- error``."""

    value: float
    error: float
    method: str  # "float64" | "longdouble" | "exact"


def _gamma(m: int, u: float) -> float:
    return m * u / (1.0 - m * u)


def output_with_bound(problem: Problem, theta: np.ndarray, dtype=np.float64):
    """The outputs ``F`` (n, C) computed in ``dtype`` and a bound ``eF`` on their rounding errors."""
    net = problem.network
    u = float(np.finfo(dtype).eps) / 2
    layers = net.split(np.asarray(theta, dtype=np.float64))
    x = problem.X.astype(dtype)
    ex = np.zeros_like(x)
    act = net.activation
    s_pos, s_neg = act.slopes
    lip = max(abs(s_pos), abs(s_neg))
    L = len(layers)
    for l, (W, b) in enumerate(layers, start=1):
        W = W.astype(dtype)
        b = b.astype(dtype)
        Wa = np.abs(W)
        z = x @ W.T + b
        ez = _gamma(W.shape[1] + 1, u) * (np.abs(x) @ Wa.T + np.abs(b))
        if l > 1:
            ez = ez + ex @ Wa.T
        if l < L:
            x = act(z)
            ex = lip * ez + (u * np.abs(x) if act.name == "leaky_relu" else 0.0)
        else:
            F, eF = z, ez
    return F, eF


def loss_with_bound(problem: Problem, theta: np.ndarray, dtype=np.float64) -> BoundedValue:
    """``L(theta)`` computed in ``dtype`` with a bound on its rounding error."""
    u = float(np.finfo(dtype).eps) / 2
    F, eF = output_with_bound(problem, theta, dtype)
    vals, err = _loss_terms(problem, F, eF, u)
    n = vals.size
    total = vals.sum() / n
    err_total = err.sum() / n + _gamma(n + 1, u) * np.abs(vals).sum() / n
    if problem.weight_decay:
        th = np.asarray(theta, dtype=dtype)
        sq = float(th @ th)
        total = total + 0.5 * problem.weight_decay * sq
        err_total += _gamma(th.size + 2, u) * 0.5 * problem.weight_decay * sq + 2 * u * abs(float(total))
    err_total = 2.0 * float(err_total) + 4 * u * abs(float(total))
    if dtype == np.float64:
        return BoundedValue(float(total), err_total, "float64")
    return BoundedValue(total, err_total, "longdouble")  # kept in extended precision


def _loss_terms(problem: Problem, F, eF, u):
    """Per-sample losses in the working precision and bounds on their errors."""
    loss, Y = problem.loss, problem.Y
    C = F.shape[1]
    ef = eF.max(axis=1)
    name = loss.name
    if name == "square":
        R = F - Y.astype(F.dtype)
        vals = 0.5 * np.sum(R * R, axis=1)
        err = np.sum(np.abs(R) * eF + 0.5 * eF * eF, axis=1) + _gamma(C + 3, u) * (vals + np.sum(np.abs(Y), axis=1) ** 2)
    elif name == "absolute":
        R = F - Y.astype(F.dtype)
        vals = np.sum(np.abs(R), axis=1)
        err = np.sum(eF, axis=1) + _gamma(C + 2, u) * (vals + np.sum(np.abs(Y), axis=1))
    elif name == "hinge":
        vals = np.maximum(0.0, 1.0 - Y[:, 0].astype(F.dtype) * F[:, 0])
        err = ef + 2 * u * (1.0 + np.abs(F[:, 0]))
    elif name == "multiclass_hinge":
        vals = loss.values(F.astype(np.float64), Y).astype(F.dtype)
        err = 2 * ef + 4 * u * (1.0 + 2 * np.abs(F).max(axis=1))
    elif name == "logistic":
        vals = np.logaddexp(0.0, -Y[:, 0].astype(F.dtype) * F[:, 0])
        err = ef + 8 * u * (1.0 + np.abs(vals) + np.abs(F[:, 0]))
        M = (-Y[:, 0].astype(F.dtype) * F[:, 0])[:, None]
        _relative_terms(vals, err, M, ef[:, None] + u * np.abs(M), u)
    else:  # cross-entropy: 2-Lipschitz in the max-norm
        Fm = F.max(axis=1, keepdims=True)
        lse = Fm[:, 0] + np.log(np.sum(np.exp(F - Fm), axis=1))
        rows = np.arange(F.shape[0])
        vals = lse - F[rows, Y]
        err = 2 * ef + 8 * u * (C + np.abs(lse) + np.abs(F).max(axis=1))
        if C > 1:
            M = F - F[rows, Y][:, None]           # the margins f_j - f_y (j != y)
            eM = eF + eF[rows, Y][:, None] + u * np.abs(M)
            others = np.ones_like(M, dtype=bool)
            others[rows, Y] = False
            _relative_terms(vals, err, M[others].reshape(-1, C - 1), eM[others].reshape(-1, C - 1), u)
    return vals, err


def _relative_terms(vals, err, M, eM, u) -> None:
    """Where every margin ``M[i, j] = f_j - f_y`` is negative (sample ``i`` classified correctly), the
    loss ``log(1 + sum_j exp(M_ij))`` is evaluated as ``log1p`` of a sum of positive terms, whose
    error is *relative*: a loss of 1e-17 is then known to about 1e-14 of itself, not to 1e-16 absolute
    (the subtraction ``lse - f_y`` cannot give that). Updates ``vals`` and ``err`` in place.

    Bound: ``exp`` of a margin known to ``+-e`` is known to a factor ``e^e (1 +- 2u)``; a sum of
    ``k`` positive terms adds ``gamma_k``; so ``E = sum_j exp(M_ij)`` is known to a relative ``rho``,
    and ``|log1p(E (1 + rho)) - log1p(E)| <= rho E <= rho (1 + E) log1p(E)`` (as
    ``log1p(E) >= E / (1 + E)``); ``log1p`` itself adds ``2u`` relative.
    """
    ok = np.all(M < 0, axis=1)
    if not np.any(ok):
        return
    k = M.shape[1]
    E = np.sum(np.exp(M[ok]), axis=1)
    rho = np.expm1(np.max(eM[ok], axis=1)) + 2 * u + _gamma(k + 1, u)
    rho = rho * (1 + 4 * u)
    accurate = np.log1p(E)
    bound = 1.01 * (rho * (1 + E) + 3 * u) * accurate
    better = bound < err[ok]
    idx = np.flatnonzero(ok)[better]
    vals[idx] = accurate[better]
    err[idx] = bound[better]


def exact_loss(problem: Problem, theta=None) -> Fraction:
    """``L(theta)`` in exact rational arithmetic (rational losses only; small problems only).

    ``theta`` may be float64 (read as the rationals they are) or rationals that floats cannot
    represent (Fractions, ``"p/q"`` strings, a :class:`certify.exact.rational.QArray`); default the
    problem's point. See :mod:`certify.exact.forward`.
    """
    from .exact.forward import exact_problem, loss_value
    if not problem.loss.rational:
        raise ValueError(f"{problem.loss.name} loss has no exact rational value")
    return loss_value(exact_problem(problem, theta))


def curve_point(theta, d, t, e=None):
    """``theta + t d + t^2/2 e`` exactly (a :class:`certify.exact.rational.QArray`; any rational inputs)."""
    from .exact.rational import as_q, to_fraction
    t = to_fraction(t)
    out = as_q(theta) + as_q(d) * t
    if e is not None:
        out = out + as_q(e) * (t * t / 2)
    return out.reduce()


@dataclass(frozen=True)
class Decrease:
    """``L(theta) - L(theta')`` and whether it is proved positive.

    ``method`` is ``"float64"`` / ``"longdouble"`` (a rounding-error bound separates the values) or
    ``"exact"`` (rational arithmetic: ``error_bound`` is 0 and ``exact`` holds the difference as
    ``"p/q"``; a decrease below float resolution is still exact).
    """

    before: float
    after: float
    decrease: float
    error_bound: float
    method: str
    exact: str | None = None

    @property
    def verified(self) -> bool:
        if self.exact is not None:
            return Fraction(self.exact) > 0
        return self.decrease > self.error_bound

    def to_dict(self) -> dict:
        out = {"loss_before": self.before, "loss_after": self.after, "decrease": self.decrease,
               "error_bound": self.error_bound, "method": self.method, "verified": self.verified}
        if self.exact is not None:
            out["decrease_exact"] = self.exact
        return out


EXACT_BUDGET = 200_000  # multiply-adds allowed for the exact rational re-check


def exact_decrease(problem: Problem, theta, theta_new, *, before: Fraction | None = None) -> Decrease:
    """``L(theta) - L(theta_new)`` in exact rational arithmetic, at any rational points.

    ``theta_new`` need not be a float64 vector (e.g. ``theta + 2^-120 d`` from :func:`curve_point`),
    so a decrease far below float resolution is proved. ``before`` may pass ``L(theta)`` already known.
    """
    ea = exact_loss(problem, theta) if before is None else before
    eb = exact_loss(problem, theta_new)
    diff = ea - eb
    shown = float(diff)
    if shown == 0 and diff != 0:
        shown = 5e-324 if diff > 0 else -5e-324
    return Decrease(float(ea), float(eb), shown, 0.0 if diff > 0 else float("inf"), "exact", exact=str(diff))


def verified_decrease(problem: Problem, theta: np.ndarray, theta_new: np.ndarray, *,
                      before: BoundedValue | None = None, after: BoundedValue | None = None) -> Decrease:
    """Prove (or fail to prove) ``L(theta_new) < L(theta)``: float64, then longdouble, then exact.

    ``before`` / ``after`` may pass float64 evaluations already made by :func:`loss_with_bound`.
    """
    a = before if before is not None else loss_with_bound(problem, theta)
    b = after if after is not None else loss_with_bound(problem, theta_new)
    dec = Decrease(a.value, b.value, a.value - b.value, a.error + b.error, "float64")
    if dec.verified or dec.decrease <= 0 and -dec.decrease > dec.error_bound:
        return dec
    if np.finfo(np.longdouble).eps < np.finfo(np.float64).eps:
        a = loss_with_bound(problem, theta, np.longdouble)
        b = loss_with_bound(problem, theta_new, np.longdouble)
        dec = Decrease(float(a.value), float(b.value), float(a.value - b.value), a.error + b.error, "longdouble")
        if dec.verified:
            return dec
    work = problem.n_samples * problem.n_params
    if problem.loss.rational and work <= EXACT_BUDGET:
        return exact_decrease(problem, theta, theta_new)
    return dec
