"""What polishing returns (:class:`PolishResult`) and how it is measured at the final point."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .limits import TOL_SLOPE
from .multipliers import box_multipliers, grad_scale, tie_weights, violations
from .pieces import evaluate, nested_of
from .projector import Projector


@dataclass
class PolishResult:
    """Where polishing ended and how it got there.

    Attributes
    ----------
    theta : (p,) array
        The polished point (the rescaling representative nearest the start).
    converged : bool
        Held kinks zero to a few ulps, reduced gradient zero to rounding, multipliers in their
        intervals. False: the best point so far, with ``reason``.
    reason : str
        Why it stopped.
    rounds : int
        Newton rounds (each one multiplier update, release test and step).
    distance, relative_distance : float
        ``||theta* - theta_0||`` and that divided by ``||theta_0||``.
    loss_before, loss_after, loss_gap : float
        ``L(theta_0)``, ``L(theta*)`` and ``L(theta_0) - L(theta*) >= 0`` (float64).
    reduced_gradient, reduced_gradient_relative : float
        ``||P g||_inf`` (``P`` projects onto the tangent space of the held kinks modulo symmetry) and
        that divided by the size of the gradient's terms (absolute back-propagation).
    kink_residual : float
        ``max |phi_k| / (|W||x| + |b|)_k`` over the held kinks (relative to their terms' size).
    kinks_held : list
        The held kinks: ``("unit", layer, sample, unit)`` or ``("tie", sample, group, piece, ref)``.
    multipliers : (K,) array
        ``lambda_k = 1 + nu_k / gamma_k`` of every held kink (in [0, 1] at a KKT point; for a loss
        tie with more than two pieces, the simplex weight of the piece).
    multiplier_margin : float
        ``min_k min(lambda_k, 1 - lambda_k)`` over the kinks whose multiplier is judged: > 0 means
        strictly interior multipliers (``inf`` when none is held).
    untested : int
        Held unit kinks whose multiplier is not judged: kinks feeding another held kink at the same
        sample (nested) or with no jump of their own; the checker judges their structure.
    history : list of dict
        Per round: loss, reduced gradient (relative), kinks held, step length, trust radius.
    time_s : float
    no_minimum : bool
        The point was not moved: no local minimum has a lower loss
        (:func:`certify.polish.method.no_minimum_below`; ``reason`` says why).
    far : bool
        It stopped past ``max_distance`` from the checkpoint with the loss still falling.
    smooth : dict or None
        The L-BFGS first phase on a large network (:mod:`certify.polish.smooth`): iterations,
        evaluations, loss before and after, time, distance and why it stopped; None when it did not run.
    homotopy : dict or None
        The smoothing homotopy run after a stalled polish (:mod:`certify.polish.homotopy`): its stages
        (tau, iterations, loss), loss before and after, time, distance and why it stopped; None when
        it did not run.
    """

    theta: np.ndarray
    converged: bool
    reason: str = ""
    rounds: int = 0
    distance: float = 0.0
    relative_distance: float = 0.0
    loss_before: float = float("nan")
    loss_after: float = float("nan")
    loss_gap: float = 0.0
    reduced_gradient: float = float("nan")
    reduced_gradient_relative: float = float("nan")
    kink_residual: float = 0.0
    kinks_held: list = field(default_factory=list)
    multipliers: np.ndarray = field(default_factory=lambda: np.zeros(0))
    multiplier_margin: float = float("nan")
    untested: int = 0
    history: list = field(default_factory=list)
    time_s: float = 0.0
    rescaled: bool = False
    no_minimum: bool = False
    far: bool = False
    smooth: dict | None = None
    homotopy: dict | None = None

    @property
    def note(self) -> str:
        return self.reason

    @property
    def iterations(self) -> int:
        return self.rounds

    @property
    def n_kinks(self) -> int:
        return len(self.kinks_held)

    def to_dict(self) -> dict:
        n_units = sum(1 for k in self.kinks_held if k[0] == "unit")
        return {"converged": self.converged, "reason": self.reason, "note": self.reason, "rounds": self.rounds,
                "distance": self.distance, "relative_distance": self.relative_distance,
                "loss_before": self.loss_before, "loss_after": self.loss_after,
                "loss_change": self.loss_after - self.loss_before, "loss_gap": self.loss_gap,
                "reduced_gradient": self.reduced_gradient,
                "reduced_gradient_relative": self.reduced_gradient_relative,
                "kink_residual": self.kink_residual,
                "kinks_held": {"count": len(self.kinks_held), "units": n_units,
                               "loss_ties": len(self.kinks_held) - n_units,
                               "which": [list(k) for k in self.kinks_held]},
                "multipliers": [float(v) for v in self.multipliers],
                "multiplier_margin": self.multiplier_margin, "untested_multipliers": self.untested,
                "rescaled": self.rescaled, "no_minimum": self.no_minimum, "far": self.far, "smooth": self.smooth,
                "homotopy": self.homotopy,
                "history": self.history, "time_s": self.time_s}


def make_result(problem, theta0, theta, held, loss0, converged, reason, rounds, history, t_start, rescaled):
    pt = evaluate(problem, theta, held)
    B = sp.vstack([pt.rows, pt.gauge], format="csr")
    proj = Projector(B)
    nu = proj.multipliers(-pt.g)
    r = proj.project(pt.g)
    gscale = grad_scale(pt)
    viol = violations(pt, nu, gscale)
    if viol.max(initial=0.0) > TOL_SLOPE:                             # as in multipliers.stationarity
        box = box_multipliers(pt, gscale, nu, viol > TOL_SLOPE)
        red = float(np.abs(r).max(initial=0.0)) / gscale
        if box is not None and float(np.abs(box[1]).max(initial=0.0)) / gscale <= max(10 * red, TOL_SLOPE):
            nu = box[0]
    k = len(pt.keys)
    gam = pt.gamma[:k]
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(gam != 0, 1.0 + nu[:k] / gam, np.nan)
    weights = tie_weights(pt, nu)
    for q, key in enumerate(pt.keys):
        if key[0] == "tie" and len(held.ties[(key[1], key[2])][0]) > 2:
            lam[q] = weights[(key[1], key[2])][key[3]]
    tested = np.isfinite(lam) & (violations(pt, nu, gscale) >= 0)
    feeds = {l: nested_of(pt.keys, l, problem.n_samples) for l in range(1, problem.network.n_layers)}
    for q, key in enumerate(pt.keys):
        if key[0] == "unit" and (feeds[key[1]][key[2]] or abs(gam[q]) <= 1e-12 * gscale):
            tested[q] = False        # its multiplier is not judged here (see violations)
    margin = float(np.min(np.minimum(lam[tested], 1.0 - lam[tested]), initial=np.inf))
    loss_after = pt.loss
    dist = float(np.linalg.norm(theta - theta0))
    norm0 = float(np.linalg.norm(theta0))
    res = PolishResult(
        theta=theta, converged=converged, reason=reason, rounds=rounds, distance=dist,
        relative_distance=dist / norm0 if norm0 > 0 else float("inf") if dist else 0.0,
        loss_before=loss0, loss_after=loss_after, loss_gap=loss0 - loss_after,
        reduced_gradient=float(np.abs(r).max(initial=0.0)),
        reduced_gradient_relative=float(np.abs(r).max(initial=0.0)) / gscale,
        kink_residual=float((np.abs(pt.phi) / np.maximum(pt.phi_scale, 1e-300)).max(initial=0.0)),
        kinks_held=list(pt.keys), multipliers=lam, multiplier_margin=margin,
        untested=int(np.count_nonzero(~tested)), history=history,
        time_s=time.perf_counter() - t_start, rescaled=rescaled)
    return res
