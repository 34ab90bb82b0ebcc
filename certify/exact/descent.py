"""Exact refutations: a step ``t = 2^-k`` with ``L(theta + t d + t^2/2 e) < L(theta)`` in rationals.

A refutation proves a point is not a local minimum only if it is *local*: the loss must drop for
every small ``t > 0`` along the curve, i.e. ``c1 < 0``, or ``c1 = 0`` and ``c2 < 0``, where
``L(theta + t d + t^2/2 e) = L + c1 t + c2 t^2/2 + o(t^2)`` on the piece the curve enters
(:func:`certify.exact.tangent.curve_coefficients`, exact). Given that, some ``t = 2^-k`` lowers the
loss; :func:`exact_step` finds one by evaluating the loss exactly at the rational point
``theta + t d + t^2/2 e`` -- never rounded, so steps far below float resolution work (the point may
be ``2^-36`` from a kink it must not cross, or the decrease ``2^-60`` times the loss).

The refutation dict (:func:`exact_refutation`) has the keys of :func:`certify.refute.refute` /
:func:`certify.refute.search_curve` plus ``"exact_point": True`` and the exact values as ``"p/q"``
strings; ``direction`` / ``curvature_direction`` are floats, exact when ``*_exact`` is absent.
:func:`recheck_refutation` is what ``certify verify`` runs on it: fractions only, no solver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..checks import Check, close
from ..data import Problem
from ..evaluate import Decrease
from ..kinks import KinkStructure
from .forward import ExactForward, ExactProblem, exact_problem, forward, loss_pieces, loss_value
from .kinks import exact_kinks
from .rational import QArray, as_q, parse
from .tangent import (curve_coefficients, directional_derivative, first_order_model, is_local_descent,
                      tangent_forward)

#: largest k tried for the step t = 2^-k
K_MAX = 200


@dataclass(frozen=True)
class ExactStep:
    """``t = 2^-k`` and the exact losses before and at ``theta' = theta + t d + t^2/2 e``."""

    k: int
    t: Fraction
    theta: QArray
    before: Fraction
    after: Fraction

    @property
    def decrease(self) -> Fraction:
        return self.before - self.after

    def to_decrease(self) -> Decrease:
        diff = self.decrease
        shown = float(diff) or (5e-324 if diff > 0 else -5e-324 if diff < 0 else 0.0)
        return Decrease(float(self.before), float(self.after), shown, 0.0 if diff > 0 else math.inf, "exact",
                        exact=str(diff))


def step_exponent(ep: ExactProblem, fwd: ExactForward, kinks: KinkStructure, d: QArray) -> int:
    """A first ``k`` to try: ``2^-k`` below half the first-order distance to the next non-kink switch."""
    dz = tangent_forward(ep, fwd, d, kinks)
    t = math.inf
    for l, (z, v) in enumerate(zip(fwd.pre[:-1], dz[:-1]), start=1):
        zf, vf = z.to_float(), v.to_float()
        mask = ~kinks.masks[l - 1] if kinks.masks else np.ones(zf.shape, bool)
        toward = mask & (zf * vf < 0)
        if np.any(toward):
            t = min(t, float(np.min(-zf[toward] / vf[toward])))
    if ep.loss.piecewise_linear:
        values, slopes = loss_pieces(ep, fwd.output)
        vals = values.to_float()
        dv = np.einsum("igpc,ic->igp", slopes.astype(np.float64), dz[-1].to_float())
        best = values.argmax(axis=2)
        gap = np.take_along_axis(vals, best[:, :, None], axis=2) - vals
        closing = dv - np.take_along_axis(dv, best[:, :, None], axis=2)
        sel = (gap > 0) & (closing > 0)
        if np.any(sel):
            t = min(t, float(np.min(gap[sel] / closing[sel])))
    size = max(1.0, float(np.abs(ep.theta.to_float()).max(initial=0.0)))
    t0 = min(0.5 * t, 0.1 * size / max(float(np.abs(d.to_float()).max(initial=0.0)), 1e-300))
    if not t0 > 0:
        return 1
    return max(0, math.ceil(-math.log2(t0)))


def exact_step(ep: ExactProblem, d, e=None, *, fwd: ExactForward | None = None, kinks: KinkStructure | None = None,
               k_start: int | None = None, k_max: int = K_MAX, before: Fraction | None = None) -> ExactStep | None:
    """The first ``t = 2^-k`` (``k = k0, k0+1, k0+2, k0+4, ... <= k_max``) with an exact decrease, or None."""
    d = as_q(d)
    e = None if e is None else as_q(e)
    if fwd is None:
        fwd = forward(ep)
    if kinks is None:
        kinks, _ = exact_kinks(ep, fwd)
    L0 = loss_value(ep, fwd=fwd) if before is None else before
    k0 = step_exponent(ep, fwd, kinks, d) if k_start is None else k_start
    ks, step = [], 1
    k = min(k0, k_max)
    while k < k_max:
        ks.append(k)
        k = k0 + step
        step *= 2
    ks.append(k_max)
    for k in ks:
        t = Fraction(1, 2 ** k)
        theta = ep.theta + d * t
        if e is not None:
            theta = theta + e * (t * t / 2)
        theta = theta.reduce()
        L1 = loss_value(ep, theta)
        if L1 < L0:
            return ExactStep(k=k, t=t, theta=theta, before=L0, after=L1)
    return None


def exact_refutation(problem: Problem | ExactProblem, d, e=None, *, fwd: ExactForward | None = None,
                     kinks: KinkStructure | None = None, k_max: int = K_MAX) -> dict:
    """A refutation along ``d`` (or the curve ``theta + t d + t^2/2 e``) proved in exact arithmetic.

    ``d``, ``e``: floats (read exactly) or rationals. Checks that the curve is a local descent curve
    exactly (else ``verified`` is False with the reason), then finds an exact step. For a line
    (``e`` None) ``L'(theta; d)`` is computed twice: on the exact tangent network and by a direct
    tangent pass.
    """
    ep = problem if isinstance(problem, ExactProblem) else exact_problem(problem)
    fwd = fwd or forward(ep)
    if kinks is None:
        kinks, _ = exact_kinks(ep, fwd)
    d = as_q(d).reduce()
    e = None if e is None else as_q(e).reduce()
    c1, c2 = curve_coefficients(ep, fwd, kinks, d, e)
    out = {"kind": "descent_direction" if e is None else "descent_curve", "direction": d.to_float(),
           "exact_point": True, "step": None, "verified": False,
           "first_order_coefficient": float(c1), "first_order_coefficient_exact": str(c1),
           "second_order_coefficient": float(c2), "second_order_coefficient_exact": str(c2)}
    if not d.is_float():
        out["direction_exact"] = d.to_strings()
    if e is not None:
        out["curvature_direction"] = e.to_float()
        if not e.is_float():
            out["curvature_direction_exact"] = e.to_strings()
    if e is None:
        slope_direct = directional_derivative(ep, fwd, kinks, d)
        slope_model = first_order_model(ep, fwd, kinks).evaluate(d)
        out.update({"directional_derivative": float(slope_direct), "directional_derivative_exact": str(slope_direct),
                    "directional_derivative_model": float(slope_model)})
        if not (slope_direct == slope_model == c1):
            out["note"] = (f"the exact slopes disagree (direct {slope_direct}, model {slope_model}, curve {c1}): "
                           f"a bug, nothing is claimed")
            return out
    if not is_local_descent(c1, c2):
        out["note"] = (f"not a local descent curve: exactly L = L(theta) + ({c1}) t + ({c2}) t^2/2 + o(t^2)")
        return out
    step = exact_step(ep, d, e, fwd=fwd, kinks=kinks, k_max=k_max)
    if step is None:
        out["note"] = f"no step 2^-k, k <= {k_max}, gave an exact decrease"
        return out
    out.update({"step": float(step.t), "step_exact": str(step.t), "loss_after_exact": str(step.after),
                **step.to_decrease().to_dict()})
    return out


# ---------------------------------------------------------------------------- re-check (verify)
def _vector(ref: dict, key: str, p: int, checks: list, required: bool = True):
    """The exact vector a refutation stores under ``key`` (floats) and ``key_exact`` (strings)."""
    floats, exact = ref.get(key), ref.get(key + "_exact")
    if floats is None and exact is None:
        if required:
            checks.append(Check("refutation", False, f"the report has no {key}"))
        return None
    try:
        vec = parse(exact) if exact is not None else QArray.from_float(np.asarray(floats, dtype=np.float64))
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        checks.append(Check("refutation", False, f"{key} is not a vector of rationals: {exc}"))
        return None
    if vec.shape != (p,):
        checks.append(Check("refutation", False, f"{key} has shape {vec.shape}, expected ({p},)"))
        return None
    if exact is not None and floats is not None and not np.array_equal(
            vec.to_float(), np.asarray(floats, dtype=np.float64)):
        checks.append(Check(f"{key}_consistent", False, f"{key} is not the float image of {key}_exact"))
        return None
    return vec


def recheck_refutation(problem: Problem, ref: dict, verdict: str) -> list:
    """Re-check an ``exact_point`` refutation with fractions only (what ``certify verify`` runs).

    Recomputes ``theta' = theta + t d + t^2/2 e`` exactly, the exact decrease (and compares it with
    the stored one), the exact curve coefficients (local descent) and, for ``not_stationary``,
    ``L'(theta; d) < 0`` twice (direct tangent pass and tangent network).
    """
    checks = []
    if not problem.loss.rational:
        return [Check("refutation", False, f"an exact refutation needs a rational loss, not {problem.loss.name}")]
    p = problem.n_params
    d = _vector(ref, "direction", p, checks)
    e = _vector(ref, "curvature_direction", p, checks, required=False)
    if d is None or any(not c.ok for c in checks):
        return checks
    try:
        t = parse([ref["step_exact"] if ref.get("step_exact") is not None else float(ref["step"])]).item()
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        checks.append(Check("refutation", False, f"no readable step: {exc}"))
        return checks
    if ref.get("step") is not None and float(t) != float(ref["step"]):
        checks.append(Check("step_consistent", False, f"step {ref['step']!r} is not the float image of {t}"))
        return checks
    if not t > 0:
        checks.append(Check("refutation", False, f"the step must be positive; got {t}"))
        return checks
    ep = exact_problem(problem)
    fwd = forward(ep)
    kinks, _ = exact_kinks(ep, fwd)
    theta = ep.theta + d * t
    if e is not None:
        theta = theta + e * (t * t / 2)
    before = loss_value(ep, fwd=fwd)
    after = loss_value(ep, theta.reduce())
    dec = before - after
    checks.append(Check("verified_decrease", dec > 0, f"L(theta) - L(theta') = {dec} "
                        f"{'> 0' if dec > 0 else '<= 0'} in exact rational arithmetic (t = {t})"))
    stored = ref.get("decrease_exact")
    if stored is not None:
        same = str(dec) == str(stored)
        checks.append(Check("stored_decrease", same, f"exact decrease {dec} (report: {stored})"))
    elif ref.get("loss_after") is not None:
        checks.append(Check("stored_loss_after", close(float(after), ref["loss_after"], max(abs(float(after)), 1e-12)),
                            f"L(theta') = {float(after)!r} (report: {ref['loss_after']!r})"))
    c1, c2 = curve_coefficients(ep, fwd, kinks, d, e)
    local = is_local_descent(c1, c2)
    checks.append(Check("local_descent", local, f"exactly L(theta + t d + t^2/2 e) = L + ({c1}) t + ({c2}) t^2/2 + "
                        f"o(t^2): {'descends for every small t > 0' if local else 'not a local descent curve'}"))
    if verdict == "not_stationary":
        slope = directional_derivative(ep, fwd, kinks, d)
        model = first_order_model(ep, fwd, kinks).evaluate(d)
        stored = ref.get("directional_derivative_exact")
        if stored is not None:
            agree = str(slope) == str(stored)
        else:
            claimed = ref.get("directional_derivative")
            agree = claimed is not None and close(float(slope), claimed, max(abs(float(slope)), 1e-300))
        checks.append(Check("directional_derivative", slope < 0 and slope == model and agree,
                            f"L'(theta; d) = {slope} exactly (tangent network {model}; report: "
                            f"{stored if stored is not None else ref.get('directional_derivative')})"))
    return checks
