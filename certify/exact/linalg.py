"""Exact linear algebra for small rational systems, guided by floats.

Solving ``A x = b`` (``A`` of shape (m, f), usually overdetermined) exactly costs
``O(m f rank)`` big-integer operations by elimination. Instead :func:`solve_consistent` lets
floating point *choose* (pivoted QR: an independent set of columns, then of rows), solves that
square system exactly by fraction-free Gaussian elimination (Bareiss 1968: every intermediate is a
minor, so the integers stay as small as the determinant) and then *checks* every equation exactly.
Floats only pick indices; every number returned is exact, and a wrong pick shows up as a singular
square system (then exact elimination on all rows decides) or as a nonzero exact residual.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from fractions import Fraction

import numpy as np
import scipy.linalg as sla

from ..budget import check
from .rational import QArray, as_q

#: relative size below which a pivot of the float QR counts as zero (rank decision)
RANK_TOL = 1e-10

#: the deadline (a ``time.perf_counter()`` value) of the exact eliminations running in this context
_DEADLINE: contextvars.ContextVar = contextvars.ContextVar("certify_exact_deadline", default=None)


@contextlib.contextmanager
def within(deadline: float | None):
    """Run the eliminations of this module under ``deadline``: each checks it at every pivot and raises
    :class:`certify.budget.OutOfTime` once it has passed. An elimination costs ``O(r^3)`` operations on
    integers as long as the determinant, so a system of a few hundred rows can run for many minutes;
    the exact constructions that are not gated by a cost model (:func:`certify.exact.snap.snap_cell` on
    a polished point's near kinks) run within this."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def tick() -> None:
    """Raise :class:`certify.budget.OutOfTime` when the deadline of :func:`within` has passed."""
    check(_DEADLINE.get(), "an exact elimination")


def bareiss_solve(A: QArray, b: QArray) -> QArray | None:
    """The exact solution of the square system ``A x = b``, or None when ``A`` is singular.

    Fraction-free elimination (Bareiss) on the integer numerators, then fraction-free back
    substitution: ``x_i det`` are integers (Cramer's rule), so no fraction is formed until the end.
    The common factor of every column and then of every row is divided out first (the integers of
    the elimination grow like the determinant: this keeps them several times smaller).
    """
    r = A.shape[0]
    if r == 0:
        return QArray.zeros(0)
    A, b = as_q(A), as_q(b)
    M = np.empty((r, r + 1), dtype=object)
    M[:, :r] = A.num * b.den
    M[:, r] = b.num * A.den
    col_content = [math.gcd(*M[:, j].tolist()) or 1 for j in range(r)]
    for j, c in enumerate(col_content):
        if c > 1:
            M[:, j] //= c
    M = _without_content(M)
    prev = 1
    sign = 1
    for k in range(r):
        tick()
        nz = np.nonzero(M[k:, k] != 0)[0]
        if nz.size == 0:
            return None
        j = k + int(nz[0])
        if j != k:
            M[[k, j]] = M[[j, k]]
            sign = -sign
        pk = M[k, k]
        if k + 1 < r:
            sub = M[k + 1:, k + 1:] * pk - np.outer(M[k + 1:, k], M[k, k + 1:])
            M[k + 1:, k + 1:] = sub // prev          # exact: Sylvester's identity
            M[k + 1:, k] = 0
        prev = pk
    det = M[r - 1, r - 1]
    X = [0] * r                                       # X_i = x_i det, integers
    for i in range(r - 1, -1, -1):
        if i % 16 == 0:
            tick()
        acc = M[i, r] * det
        for j in range(i + 1, r):
            if M[i, j]:
                acc -= M[i, j] * X[j]
        X[i] = acc // M[i, i]
    if det < 0:
        det, X = -det, [-v for v in X]
    y = QArray(np.array(X, dtype=object), det)       # y_j = c_j x_j
    return QArray(y.num, y.den) * QArray.from_values([Fraction(1, c) for c in col_content]) if any(
        c > 1 for c in col_content) else y.reduce()


def _without_content(M: np.ndarray) -> np.ndarray:
    """Each row divided by the gcd of its entries (smaller integers, same solutions)."""
    out = M.copy()
    for i in range(M.shape[0]):
        g = math.gcd(*M[i].tolist())
        if g > 1:
            out[i] = M[i] // g
    return out


def echelon_pivots(A: QArray) -> tuple[list, list]:
    """Pivot rows and columns of ``A`` by exact fraction-free elimination (``O(m f rank)``)."""
    M = np.array(A.num, dtype=object, copy=True)
    m, f = M.shape
    rows = list(range(m))
    piv_rows, piv_cols = [], []
    prev = 1
    k = 0
    for col in range(f):
        if k == m:
            break
        tick()
        nz = np.nonzero(M[k:, col] != 0)[0]
        if nz.size == 0:
            continue
        j = k + int(nz[0])
        if j != k:
            M[[k, j]] = M[[j, k]]
            rows[k], rows[j] = rows[j], rows[k]
        pk = M[k, col]
        if k + 1 < m:
            M[k + 1:, col + 1:] = (M[k + 1:, col + 1:] * pk - np.outer(M[k + 1:, col], M[k, col + 1:])) // prev
            M[k + 1:, col] = 0
        prev = pk
        piv_rows.append(rows[k])
        piv_cols.append(col)
        k += 1
    return piv_rows, piv_cols


def float_basis(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent columns of ``A`` (float pivoted QR) and, for them, independent rows."""
    m, f = A.shape
    if m == 0 or f == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, R, piv = sla.qr(A, mode="economic", pivoting=True)
    diag = np.abs(np.diag(R))
    rank = int(np.count_nonzero(diag > RANK_TOL * max(diag[0], 1e-300))) if diag.size else 0
    cols = np.sort(piv[:rank])
    if rank == 0:
        return cols, np.zeros(0, np.int64)
    _, _, rpiv = sla.qr(A[:, cols].T, mode="economic", pivoting=True)
    return cols, np.sort(rpiv[:rank])


def solve_consistent(A: QArray, b: QArray, default: QArray | None = None, hint: np.ndarray | None = None):
    """One exact solution of ``A x = b`` and its exact residual.

    Floats choose a basis (independent columns, then rows); the square system on it is solved
    exactly and the columns outside the basis keep ``default`` (zeros when None). Returns
    ``(x, residual, cols, rows)`` with ``residual = A x - b`` over *all* rows, exactly (zero on
    ``rows``): ``x`` solves the system iff the residual is zero. ``hint`` is ``A`` in floats.
    """
    m, f = A.shape
    x = QArray.zeros(f) if default is None else default.copy()
    if f == 0:
        return x, -b, np.zeros(0, np.int64), np.zeros(0, np.int64)
    Af = A.to_float() if hint is None else hint
    cols, rows = float_basis(Af)
    x_sub = _solve_on(A, b, x, cols, rows)
    if x_sub is None:
        x = QArray.zeros(f) if default is None else default.copy()
        piv_rows, piv_cols = echelon_pivots(A)
        cols, rows = np.array(piv_cols, dtype=np.int64), np.array(piv_rows, dtype=np.int64)
        x_sub = _solve_on(A, b, x, cols, rows)
    if x_sub is None:           # exactly singular even on exact pivots: cannot happen; leave x at its default
        cols, rows = np.zeros(0, np.int64), np.zeros(0, np.int64)
    elif cols.size:
        x[cols] = x_sub
    residual = (A @ x - b).reduce()
    return x, residual, cols, rows


def _solve_on(A: QArray, b: QArray, x: QArray, cols: np.ndarray, rows: np.ndarray):
    """Solve for ``x[cols]`` on ``rows``, the other columns fixed at their values in ``x``."""
    if cols.size == 0:
        return QArray.zeros(0)
    others = np.setdiff1d(np.arange(A.shape[1]), cols)
    rhs = b[rows] - (A[rows][:, others] @ x[others] if others.size else 0)
    return bareiss_solve(A[rows][:, cols], rhs)


def tangential_direction(A: QArray, residual: QArray, cols: np.ndarray, rows: np.ndarray) -> QArray | None:
    """An exact ``d`` with ``A[:, cols]' d = 0`` and ``residual . d = -|residual|^2 < 0``.

    ``residual = A x - b`` comes from :func:`solve_consistent` and vanishes on the basis ``rows``;
    ``d`` takes the float image of ``-residual / max|residual|`` off the basis rows (same signs, so
    ``residual . d < 0`` exactly, and small integers) and solves the square system
    ``A[rows, cols]' d_rows = -A[S, cols]' d_S`` on them (one fraction-free solve, no normal
    equations). Every column in the span of ``A[:, cols]`` is then orthogonal to ``d`` as well.
    None when the residual is zero.
    """
    if not residual.any():
        return None
    m = A.shape[0]
    off = np.setdiff1d(np.nonzero(~residual.is_zero())[0], rows)
    d = QArray.zeros(m)
    scaled = -residual[off] / abs(residual[off]).max().item()
    d[off] = QArray.from_float(scaled.to_float())
    if cols.size:
        rhs = -(A[off][:, cols].T @ d[off])
        d_rows = bareiss_solve(A[rows][:, cols].T, rhs)
        if d_rows is None:
            return None
        d[rows] = d_rows
    return d.reduce()
