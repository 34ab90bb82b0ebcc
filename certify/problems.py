"""Optimisation problems as plain, validated data (no solver is imported here).

Every formulation in :mod:`certify.formulate` produces one of these; every solver adapter in
:mod:`certify.solvers` consumes them. The form is::

    minimise    c . x + 1/2 x' Q x + offset
    subject to  row_lower <= A x <= row_upper,   col_lower <= x <= col_upper,
                x_j integer where integrality[j] == 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True, eq=False)
class LinearProgram:
    c: np.ndarray
    A: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    offset: float = 0.0
    names: tuple = field(default=())

    def __post_init__(self):
        c = np.asarray(self.c, dtype=np.float64)
        A = sp.csr_matrix(self.A, dtype=np.float64)
        n_col, n_row = c.size, A.shape[0]
        if A.shape[1] != n_col:
            raise ValueError(f"constraint matrix has {A.shape[1]} columns, objective {n_col}")
        for name, arr, size in (("row_lower", self.row_lower, n_row), ("row_upper", self.row_upper, n_row),
                                ("col_lower", self.col_lower, n_col), ("col_upper", self.col_upper, n_col)):
            arr = np.asarray(arr, dtype=np.float64)
            if arr.shape != (size,):
                raise ValueError(f"{name} must have shape ({size},); got {arr.shape}")
            object.__setattr__(self, name, arr)
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(A.data))):
            raise ValueError("objective and constraint matrix must be finite")
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "A", A)

    @property
    def n_cols(self) -> int:
        return self.c.size

    @property
    def n_rows(self) -> int:
        return self.A.shape[0]

    @property
    def kind(self) -> str:
        return "lp"

    def objective(self, x: np.ndarray) -> float:
        return float(self.c @ x + self.offset)

    def violation(self, x: np.ndarray) -> float:
        """Largest violation of a row or column bound at ``x`` (0 when feasible)."""
        Ax = self.A @ x
        worst = 0.0
        for lo, val, hi in ((self.row_lower, Ax, self.row_upper), (self.col_lower, x, self.col_upper)):
            if val.size:
                worst = max(worst, float(np.max(np.maximum(lo - val, 0.0), initial=0.0)),
                            float(np.max(np.maximum(val - hi, 0.0), initial=0.0)))
        return worst


@dataclass(frozen=True, eq=False)
class MixedIntegerProgram(LinearProgram):
    integrality: np.ndarray = field(default=None)

    def __post_init__(self):
        super().__post_init__()
        integ = np.zeros(self.n_cols, dtype=np.int8) if self.integrality is None else \
            np.asarray(self.integrality, dtype=np.int8)
        if integ.shape != (self.n_cols,):
            raise ValueError(f"integrality must have shape ({self.n_cols},)")
        object.__setattr__(self, "integrality", integ)

    @property
    def kind(self) -> str:
        return "milp" if np.any(self.integrality) else "lp"

    @property
    def n_integer(self) -> int:
        return int(np.count_nonzero(self.integrality))


@dataclass(frozen=True, eq=False)
class QuadraticProgram(LinearProgram):
    """A *convex* QP: the formulation guarantees ``Q`` is positive semidefinite (a Gram matrix
    or a non-negative diagonal); adapters must not be handed an indefinite ``Q``."""

    Q: sp.csc_matrix = field(default=None)

    def __post_init__(self):
        super().__post_init__()
        Q = sp.csc_matrix(self.Q, dtype=np.float64)
        if Q.shape != (self.n_cols, self.n_cols):
            raise ValueError(f"Q must be {self.n_cols} x {self.n_cols}; got {Q.shape}")
        if abs(Q - Q.T).max() > 1e-12 * max(1.0, abs(Q).max()):
            raise ValueError("Q must be symmetric")
        object.__setattr__(self, "Q", Q)

    @property
    def kind(self) -> str:
        return "qp"

    def objective(self, x: np.ndarray) -> float:
        return float(self.c @ x + 0.5 * x @ (self.Q @ x) + self.offset)
