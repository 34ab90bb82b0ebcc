"""Solver adapters: they take :mod:`certify.problems` data and return a :class:`SolveResult`."""

from .base import SolveResult, SolveStatus
from .highs import solve

__all__ = ["SolveResult", "SolveStatus", "solve"]
