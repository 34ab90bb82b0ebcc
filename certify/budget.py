"""One time budget for a whole command: a deadline every stage reads.

``check`` turns ``time_limit`` into a deadline (a ``time.perf_counter()`` value). Solver calls get
the time that is left; loops that could run long (Hessian columns, pieces, faces, polishing rounds)
call :func:`check` between steps and stop with :class:`OutOfTime`, which the stage turns into the
best answer proved so far (a verified refutation stands; otherwise ``inconclusive`` naming what ran
out). Never a hang.
"""

from __future__ import annotations

import time

#: the whole command's default budget, in seconds
DEFAULT_TIME_LIMIT = 300.0


class OutOfTime(Exception):
    """The deadline passed during ``what``."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


def deadline_after(seconds: float | None) -> float | None:
    return None if seconds is None else time.perf_counter() + float(seconds)


def remaining(deadline: float | None, default: float = float("inf")) -> float:
    """Seconds left before ``deadline`` (``default`` when there is none), never negative."""
    if deadline is None:
        return default
    return max(0.0, deadline - time.perf_counter())


def check(deadline: float | None, what: str) -> None:
    """Raise :class:`OutOfTime` when ``deadline`` has passed."""
    if deadline is not None and time.perf_counter() > deadline:
        raise OutOfTime(what)
