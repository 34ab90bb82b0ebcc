"""A smoothing homotopy for a polish that stalls among the kinks: L-BFGS on smoothed losses.

When the active-set method (:mod:`certify.polish.method`) stalls -- holding and releasing the same
kinks round after round while the loss falls by less than its rounding -- the point is still far
from a minimum of the piecewise-smooth loss, and every step it can take ends at a kink a few units
away. A smoothing method crosses that ground the way gradient methods cross smooth terrain
(X. Chen, "Smoothing methods for nonsmooth, nonconvex minimization", Math. Program. 134, 2012):
replace every kink by a smooth function ``tau`` close to it, minimise that with a quasi-Newton
method, and shrink ``tau``; the limit points of the minimisers are Clarke stationary points of the
loss itself. Here

* an activation with slopes ``(s_pos, s_neg)`` becomes ``s_neg z + (s_pos - s_neg) tau softplus(z / tau)``
  (within ``(s_pos - s_neg) tau log 2`` of it; ReLU, leaky ReLU and ``|z|`` alike), with ``tau``
  relative to the RMS of each layer's pre-activations at the start;
* a piecewise-linear loss ``sum_g max_a v_ga`` (hinge, absolute, multiclass hinge:
  :meth:`certify.losses.Loss.pieces`) becomes ``sum_g tau logsumexp_a(v_ga / tau)``;
* square, logistic and cross-entropy loss and the weight decay are smooth already.

``tau`` runs through :data:`TAUS` (relative), each stage warm-started from the last and run with
SciPy's L-BFGS-B until it stalls. Nothing here is a proof, and the smoothed loss is not the loss:
the point returned is the one with the lowest *true* loss among the start and the end of every
stage (evaluated as :meth:`Problem.value` does), so the loss never goes up; the active-set method
goes on from it and the checker judges where that ends, as always.

Measured (``python -m benchmarks.homotopy_phase``, ``benchmarks/results/homotopy_phase.md``): from
where ``diabetes_abs_sgd``'s first active-set polish stops (10-16-1, absolute loss, p = 193; loss
0.3520 after 500 rounds) it reaches 0.3005 in 22 s, where the active-set polish restarted there for
the same time reaches 0.3498; ``diabetes_sq_depth3_wd_adam`` (p = 737, square loss, weight decay)
went from 0.04467 to 0.03890 in 15 s in a ``--smoothing`` run, where 285 s of active-set polishing
reach 0.0430. Not the default: :func:`certify.polish.method.polish_point` says why.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logsumexp

from ..data import Problem
from ..network import ForwardPass
from ..progress import detail
from .smooth import _Stop     # (raised inside SciPy's loop to end a stage: deadline, stall, distance)

log = logging.getLogger(__name__)

#: the smoothing parameters, relative to each layer's pre-activation RMS (and the loss pieces' RMS)
TAUS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
#: a stage has stalled when its last STALL_ITERATIONS iterations gained less than STALL_FRACTION of
#: what the stage has gained
STALL_ITERATIONS = 50
STALL_FRACTION = 0.01
#: L-BFGS memory (pairs kept)
MEMORY = 30


def smoothed_value_and_gradient(problem: Problem, x: np.ndarray, taus: list, tau_loss: float):
    """The smoothed loss at ``x`` (module docstring) and its gradient.

    ``taus[l-1]``: the smoothing of hidden layer ``l``'s activation; ``tau_loss``: of the loss's
    pieces (unused for a smooth loss). Both absolute.
    """
    from ..tangent import backprop
    pr = problem.at(x)
    net = pr.network
    s_pos, s_neg = net.activation.slopes
    h = pr.X
    pre, post, D = [], [h], []
    for l, (W, b) in enumerate(zip(net.weights, net.biases), start=1):
        z = h @ W.T + b
        pre.append(z)
        if l < net.n_layers:
            tau = taus[l - 1]
            u = z / tau
            h = s_neg * z + (s_pos - s_neg) * tau * np.logaddexp(0.0, u)
            D.append(s_neg + (s_pos - s_neg) * expit(u))
            post.append(h)
    fwd = ForwardPass(pre=pre, post=post)
    F, Y, n = fwd.output, pr.Y, pr.n_samples
    loss = pr.loss
    if loss.piecewise_linear:
        vals, slopes = loss.pieces(F, Y)                        # (n, G, P), (n, G, P, C)
        u = vals / tau_loss
        lse = logsumexp(u, axis=2)                              # (n, G)
        weights = np.exp(u - lse[:, :, None])
        value = tau_loss * float(lse.sum()) / n
        delta = np.einsum("igp,igpc->ic", weights, slopes)
    else:
        value = float(np.mean(loss.values(F, Y)))
        delta = loss.gradient(F, Y)
    grad, _ = backprop(pr, fwd, D, delta / n)
    if pr.weight_decay:
        value += 0.5 * pr.weight_decay * float(x @ x)
        grad = grad + pr.weight_decay * x
    return value, grad


def smoothing_scales(problem: Problem) -> tuple[list, float]:
    """The RMS of each hidden layer's pre-activations and of the loss's piece values at the point
    (what :data:`TAUS` are relative to; at least 1e-12)."""
    fwd = problem.network.forward(problem.X)
    rms = [max(float(np.sqrt(np.mean(z * z))), 1e-12) for z in fwd.pre[:-1]]
    loss_rms = 1.0
    if problem.loss.piecewise_linear:
        vals, _ = problem.loss.pieces(fwd.output, problem.Y)
        loss_rms = max(float(np.sqrt(np.mean(vals * vals))), 1e-12)
    return rms, loss_rms


def smoothing_descent(problem: Problem, *, deadline: float, anchor: np.ndarray | None = None,
                      max_distance: float = 1.0, taus=TAUS) -> tuple[np.ndarray, dict]:
    """L-BFGS on the smoothed losses for ``taus`` in turn, from ``problem``'s point, until each
    stalls, the ``deadline`` passes, or an iterate is further than ``max_distance * max(||anchor||, 1)``
    from ``anchor`` (default the point).

    Returns the point with the lowest loss among the start and the stages' ends (``problem.theta``
    itself when none is lower) and a summary: ``stages`` (tau, iterations, true loss at its end),
    ``loss_before``, ``loss_after``, ``time_s``, ``stop``, ``distance``.
    """
    t0 = time.perf_counter()
    x = problem.theta.copy()
    anchor = x if anchor is None else np.asarray(anchor, dtype=np.float64)
    limit = max_distance * max(float(np.linalg.norm(anchor)), 1.0)
    f0 = problem.value()
    best_x, best_f = x, f0
    rms, loss_rms = smoothing_scales(problem)
    stages = []
    stop = "every stage ran"
    for tau_rel in taus:
        taus_abs = [tau_rel * r for r in rms]
        tau_loss = tau_rel * loss_rms
        trace = []
        why = {"stop": "converged (SciPy's tolerances)"}
        state = {"x": x, "f": None}

        def fun(xk, taus_abs=taus_abs, tau_loss=tau_loss, why=why, state=state):
            if time.perf_counter() > deadline:
                why["stop"] = "the budget ran out"
                raise _Stop
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                v, g = smoothed_value_and_gradient(problem, xk, taus_abs, tau_loss)
            if not np.isfinite(v) or not np.all(np.isfinite(g)):
                return float("inf"), np.zeros_like(xk)
            state["f"] = v
            return v, g

        def callback(xk, trace=trace, why=why, state=state, tau_rel=tau_rel):
            if np.linalg.norm(xk - anchor) > limit:
                why["stop"] = "an iterate left the distance limit"
                raise _Stop
            state["x"] = xk.copy()
            trace.append(state["f"])          # (the line search's last evaluation: the accepted point)
            k = len(trace)
            if k % 10 == 0:
                detail("polishing (smoothing)", tau=tau_rel, iteration=k, smoothed_loss=trace[-1])
            if k > STALL_ITERATIONS and trace[-1 - STALL_ITERATIONS] - trace[-1] <= STALL_FRACTION * (trace[0] - trace[-1]):
                why["stop"] = "stalled"
                raise _Stop

        try:
            minimize(fun, x, jac=True, method="L-BFGS-B", callback=callback,
                     options={"maxcor": MEMORY, "maxiter": 10**9, "maxfun": 10**9, "ftol": 1e-15, "gtol": 0.0})
        except _Stop:
            pass
        x = state["x"]
        f = problem.value(x)
        stages.append({"tau": tau_rel, "iterations": len(trace), "loss": f, "stop": why["stop"]})
        if np.isfinite(f) and f < best_f:
            best_x, best_f = x, f
        if why["stop"] in ("the budget ran out", "an iterate left the distance limit"):
            stop = why["stop"]
            break
    info = {"stages": stages, "loss_before": f0, "loss_after": best_f, "time_s": time.perf_counter() - t0,
            "stop": stop, "distance": float(np.linalg.norm(best_x - problem.theta))}
    log.info("polish: smoothing homotopy (p = %d): loss %.10g -> %.10g in %d stage(s) and %.1f s, moved %.3g (%s)",
             problem.n_params, f0, best_f, len(stages), info["time_s"], info["distance"], stop)
    return best_x, info
