"""The result every adapter returns, with the backend's status mapped once to a closed set."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class SolveStatus(str, enum.Enum):
    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    TIME_LIMIT = "time_limit"      # stopped by a budget; ``x`` holds the incumbent if one exists
    ERROR = "error"


@dataclass(frozen=True, eq=False)
class SolveResult:
    """What a solver said. A status alone never decides a verdict: callers re-check ``x``.

    Attributes
    ----------
    status : SolveStatus
    raw_status : str
        The backend's own word, kept for the report.
    x : array or None
        Primal solution or incumbent.
    objective : float or None
        Objective value at ``x`` as reported by the backend.
    dual_bound : float or None
        For a MILP, the proven lower bound (for a minimisation); for an LP or QP the objective.
    row_duals : array or None
        Row dual values (HiGHS sign convention: for a minimisation, ``c - A' y`` are the
        reduced costs).
    """

    status: SolveStatus
    raw_status: str
    x: np.ndarray | None = None
    objective: float | None = None
    dual_bound: float | None = None
    row_duals: np.ndarray | None = None
    col_duals: np.ndarray | None = None
    time_s: float = 0.0
    mip_gap: float | None = None
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"status": self.status.value, "raw_status": self.raw_status, "objective": self.objective,
                "dual_bound": self.dual_bound, "mip_gap": self.mip_gap, "time_s": round(self.time_s, 6),
                **self.info}
