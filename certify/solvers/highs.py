"""HiGHS adapter (``highspy``): LP, MILP and convex QP.

Facts this adapter is written around (HiGHS documentation and issue tracker):

* HiGHS solves LPs, MILPs and *convex* QPs only; its QP solver checks only the diagonal for
  non-convexity and may say "Optimal" on an indefinite Hessian. Formulations therefore send only
  QPs whose Hessian is PSD by construction (a Gram matrix or a diagonal), and callers re-check every
  answer with numpy.
* The Hessian is passed as its lower triangle, column-wise (HiGHS >= 1.14 adds upper-triangle
  entries to the lower ones).
* A MILP stopped at its time limit keeps its incumbent; ``mip_dual_bound`` is the proven bound.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

from ..errors import MissingExtraError, SolverError
from ..problems import LinearProgram, MixedIntegerProgram, QuadraticProgram
from .base import SolveResult, SolveStatus

log = logging.getLogger(__name__)

#: iteration budget of HiGHS's QP solver per variable and constraint (see :func:`solve`)
QP_ITERATIONS_PER_VARIABLE = 50

_STATUS = {
    "kOptimal": SolveStatus.OPTIMAL,
    "kInfeasible": SolveStatus.INFEASIBLE,
    "kUnbounded": SolveStatus.UNBOUNDED,
    "kUnboundedOrInfeasible": SolveStatus.UNBOUNDED,
    "kTimeLimit": SolveStatus.TIME_LIMIT,
    "kIterationLimit": SolveStatus.TIME_LIMIT,
    "kSolutionLimit": SolveStatus.TIME_LIMIT,
    "kInterrupt": SolveStatus.TIME_LIMIT,
    "kHighsInterrupt": SolveStatus.TIME_LIMIT,
    "kObjectiveBound": SolveStatus.TIME_LIMIT,
    "kObjectiveTarget": SolveStatus.TIME_LIMIT,
}


def _highspy():
    try:
        import highspy
    except ImportError as exc:  # pragma: no cover - highspy is a core dependency
        raise MissingExtraError("certify needs highspy: pip install highspy") from exc
    return highspy


@contextlib.contextmanager
def _quiet_stdout():
    """Keep HiGHS's banner off stdout: highspy >= 1.16 prints it when a ``Highs`` object is made,
    before any option can be set. Redirects file descriptor 1 to /dev/null around the construction
    (flushing C stdio before restoring it), so JSON on stdout stays clean."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        try:
            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError):  # pragma: no cover - non-POSIX
            pass
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def _new_highs(hs):
    with _quiet_stdout():
        h = hs.Highs()
        h.setOptionValue("output_flag", False)
    return h


def solve(problem: LinearProgram, *, time_limit: float | None = None, mip_rel_gap: float = 1e-9,
          threads: int | None = None, options: dict | None = None) -> SolveResult:
    """Solve an LP, MILP or convex QP with HiGHS; map the status once; never raise on a budget."""
    entered = time.perf_counter()
    hs = _highspy()
    h = _new_highs(hs)
    if threads is not None:
        h.setOptionValue("threads", int(threads))
    for key, value in (options or {}).items():
        h.setOptionValue(key, value)
    lp = hs.HighsLp()
    lp.num_col_ = problem.n_cols
    lp.num_row_ = problem.n_rows
    lp.col_cost_ = problem.c
    lp.col_lower_ = _inf(problem.col_lower, hs)
    lp.col_upper_ = _inf(problem.col_upper, hs)
    lp.row_lower_ = _inf(problem.row_lower, hs)
    lp.row_upper_ = _inf(problem.row_upper, hs)
    lp.offset_ = float(problem.offset)
    A = sp.csc_matrix(problem.A)
    A.sort_indices()
    lp.a_matrix_.format_ = hs.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data
    lp.a_matrix_.num_col_ = problem.n_cols
    lp.a_matrix_.num_row_ = problem.n_rows
    is_mip = isinstance(problem, MixedIntegerProgram) and problem.kind == "milp"
    if is_mip:
        lp.integrality_ = [hs.HighsVarType.kInteger if v else hs.HighsVarType.kContinuous
                           for v in problem.integrality]
        h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
        h.setOptionValue("mip_abs_gap", 0.0)
    if isinstance(problem, QuadraticProgram):
        if "qp_iteration_limit" not in (options or {}):
            # HiGHS's active-set QP can cycle on degenerate box QPs (seen with highspy 1.16 on a min-norm
            # subgradient QP whose optimum has every multiplier at a bound): bound its iterations; callers
            # re-check the incumbent anyway (multipliers are refined and their residual recomputed)
            h.setOptionValue("qp_iteration_limit", int(QP_ITERATIONS_PER_VARIABLE * (problem.n_cols + problem.n_rows)
                                                       + 1000))
        model = hs.HighsModel()
        model.lp_ = lp
        lower = sp.tril(problem.Q, format="csc")
        lower.sort_indices()
        hess = hs.HighsHessian()
        hess.dim_ = problem.n_cols
        hess.format_ = hs.HessianFormat.kTriangular
        hess.start_ = lower.indptr.astype(np.int32)
        hess.index_ = lower.indices.astype(np.int32)
        hess.value_ = lower.data
        model.hessian_ = hess
        status = h.passModel(model)
    else:
        status = h.passModel(lp)
    if status == hs.HighsStatus.kError:
        raise SolverError("HiGHS rejected the model (passModel returned an error)")
    start = time.perf_counter()
    if time_limit is not None:
        # the limit is the caller's from the call: building a large model (a MILP's integrality list,
        # passModel) is part of it (seen: a first-order MILP on a 14,858-parameter net ending 4 s
        # past the check's deadline)
        h.setOptionValue("time_limit", float(max(time_limit - (start - entered), 1e-3)))
    h.run()
    elapsed = time.perf_counter() - start
    raw = h.getModelStatus()
    raw_name = raw.name if hasattr(raw, "name") else str(raw)
    mapped = _STATUS.get(raw_name, SolveStatus.ERROR)
    info = h.getInfo()
    sol = h.getSolution()
    x = None
    if info.primal_solution_status == hs.SolutionStatus.kSolutionStatusFeasible or mapped == SolveStatus.OPTIMAL:
        x = np.asarray(sol.col_value, dtype=np.float64)
        if x.size != problem.n_cols:
            x = None
    row_duals = col_duals = None
    if not is_mip and sol.dual_valid:
        row_duals = np.asarray(sol.row_dual, dtype=np.float64)
        col_duals = np.asarray(sol.col_dual, dtype=np.float64)
    objective = float(info.objective_function_value) if x is not None else None
    dual_bound = None
    gap = None
    if is_mip:
        dual_bound = float(info.mip_dual_bound)
        gap = float(info.mip_gap)
    elif mapped == SolveStatus.OPTIMAL:
        dual_bound = objective
    extra = {"kind": problem.kind, "n_cols": problem.n_cols, "n_rows": problem.n_rows, "nnz": int(problem.A.nnz)}
    if is_mip:
        extra["mip_nodes"] = int(info.mip_node_count)
        extra["n_integer"] = problem.n_integer
    log.debug("HiGHS %s: %s in %.3fs", problem.kind, raw_name, elapsed)
    return SolveResult(status=mapped, raw_status=raw_name, x=x, objective=objective, dual_bound=dual_bound,
                       row_duals=row_duals, col_duals=col_duals, time_s=elapsed, mip_gap=gap, info=extra)


def _inf(arr: np.ndarray, hs) -> np.ndarray:
    out = np.array(arr, dtype=np.float64)
    out[out == np.inf] = hs.kHighsInf
    out[out == -np.inf] = -hs.kHighsInf
    return out
