"""A smooth first phase for large networks: L-BFGS on the loss until it stalls at the kinks.

The active-set method (:mod:`certify.polish.method`) pays for every kink it meets: each round
factors ``B B'`` over the held kinks, and on a large network far from its minimum the rounds hold
and release thousands of kinks while the loss falls by 1e-5 a round. A quasi-Newton method that
treats the loss as smooth (the gradient takes the ``s_pos`` branch at a kink) covers that ground
hundreds of times faster, and it stalls only once it is close to where the kinks decide: the
nonsmooth minimum. So on networks with at least :data:`SMOOTH_MIN_P` parameters the polish first
runs L-BFGS (SciPy's L-BFGS-B, unbounded; Nocedal--Wright ch. 7) until the loss stops falling by
more than :data:`STALL_FRACTION` of what it has gained over :data:`STALL_ITERATIONS` iterations, or
:data:`SMOOTH_SHARE` of the polishing budget is spent, and the active-set method starts from the
lowest point it evaluated (the loss never goes up; nothing here is a proof, the checker judges
the end point as always).

Measured on ``digits_ce_deep_sgd`` (64-64-32-10, p = 6,570, 1,797 samples; one process on the
2-core machine): 300 s of active-set polishing from the checkpoint lowered the loss from 0.006934
to 0.005572 and ended not stationary (reduced gradient 0.02 with 2,000-3,000 kinks held); L-BFGS
reached 0.005348 in 60 s (gradient norm 1e-4, stalled: 3e-6 more in the next 60 s), and the active-set
method from there ended at a first-order stationary point whose escape the checker verified.
Below :data:`SMOOTH_MIN_P` the active-set method alone converges on the trained family and its end
points, certified to rounding, are left as they are (``diabetes_sq_depth3_wd_adam``, p = 737, is a
point where L-BFGS stalls at once: it moved 1e-7).
"""

from __future__ import annotations

import logging
import time

import numpy as np
from scipy.optimize import minimize

from ..data import Problem
from ..progress import detail
from .limits import LARGE_P

log = logging.getLogger(__name__)

#: the smooth phase runs on networks with at least this many parameters
SMOOTH_MIN_P = LARGE_P
#: ... for at most this share of the polishing budget
SMOOTH_SHARE = 0.4
#: it has stalled when the last STALL_ITERATIONS iterations gained less than STALL_FRACTION of the
#: loss it has lowered in all
STALL_ITERATIONS = 100
STALL_FRACTION = 0.01
#: L-BFGS memory (pairs kept)
MEMORY = 50


class _Stop(Exception):
    """Raised inside SciPy's loop to end it (deadline, stall, distance); the best point is kept."""


def smooth_applies(problem: Problem) -> bool:
    """Whether :func:`polish_point <certify.polish.method.polish_point>` runs :func:`smooth_descent` first."""
    return problem.n_params >= SMOOTH_MIN_P


def smooth_descent(problem: Problem, *, deadline: float, anchor: np.ndarray | None = None,
                   max_distance: float = 1.0) -> tuple[np.ndarray, dict]:
    """L-BFGS from ``problem``'s point until it stalls, the ``deadline`` passes, or an iterate is
    further than ``max_distance * max(||anchor||, 1)`` from ``anchor`` (default the point).

    Returns the lowest point evaluated within that distance (``problem.theta`` itself when none is
    lower: the loss never goes up) and a summary: ``iterations``, ``evaluations``, ``loss_before``,
    ``loss_after``, ``time_s``, ``stop`` (why it ended).
    """
    t0 = time.perf_counter()
    x0 = problem.theta.copy()
    anchor = x0 if anchor is None else np.asarray(anchor, dtype=np.float64)
    limit = max_distance * max(float(np.linalg.norm(anchor)), 1.0)
    f0 = problem.value()
    best = {"x": x0, "f": f0}
    trace = [f0]
    counts = {"evaluations": 0}
    why = {"stop": "converged (SciPy's tolerances)"}

    def fun(x):
        if time.perf_counter() > deadline:
            why["stop"] = "its share of the budget ran out"
            raise _Stop
        counts["evaluations"] += 1
        value, grad = _value_and_gradient(problem, x)
        if np.isfinite(value) and value < best["f"] and np.linalg.norm(x - anchor) <= limit:
            best["x"], best["f"] = x.copy(), value
        return value, grad

    def callback(xk):
        trace.append(best["f"])
        k = len(trace) - 1
        if k % 10 == 0:                         # (-v logs each report: every tenth iteration is plenty)
            detail("polishing (L-BFGS)", iteration=k, loss=best["f"])
        if np.linalg.norm(xk - anchor) > limit:
            why["stop"] = "an iterate left the distance limit"
            raise _Stop
        if k >= STALL_ITERATIONS and trace[-1 - STALL_ITERATIONS] - trace[-1] <= STALL_FRACTION * (f0 - trace[-1]):
            why["stop"] = (f"stalled: the last {STALL_ITERATIONS} iterations lowered the loss by less than "
                           f"{STALL_FRACTION:.0%} of its decrease")
            raise _Stop

    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            minimize(fun, x0, jac=True, method="L-BFGS-B", callback=callback,
                     options={"maxcor": MEMORY, "maxiter": 10**9, "maxfun": 10**9, "ftol": 0.0, "gtol": 0.0})
    except _Stop:
        pass
    info = {"iterations": len(trace) - 1, "evaluations": counts["evaluations"], "loss_before": f0,
            "loss_after": best["f"], "time_s": time.perf_counter() - t0, "stop": why["stop"],
            "distance": float(np.linalg.norm(best["x"] - x0))}
    log.info("polish: L-BFGS first (p = %d): loss %.10g -> %.10g in %d iterations and %.1f s, moved %.3g (%s)",
             problem.n_params, f0, best["f"], info["iterations"], info["time_s"], info["distance"], why["stop"])
    return best["x"], info


def _value_and_gradient(problem: Problem, x: np.ndarray) -> tuple[float, np.ndarray]:
    """``L(x)`` as :meth:`Problem.value` computes it, and its gradient (``s_pos`` branch at kinks),
    from one forward pass."""
    from ..tangent import loss_gradient
    from .pieces import value
    pr = problem.at(x)
    fwd = pr.network.forward(pr.X)
    val = value(pr, fwd, x)
    if not np.isfinite(val):
        return float("inf"), np.zeros_like(x)
    return val, loss_gradient(pr, fwd)
