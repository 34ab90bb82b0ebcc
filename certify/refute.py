"""Refutations: a direction or a curve along which the loss provably goes down.

Every refutation is re-checked by evaluating the loss at the moved point with a rigorous rounding
bound (:func:`certify.evaluate.verified_decrease`); without a verified decrease there is no
``not_stationary`` and no ``saddle``.
"""

from __future__ import annotations

import time

import numpy as np

from .data import Problem
from .errors import CertificateError, ShapeError
from .evaluate import BoundedValue, Decrease, loss_with_bound, verified_decrease
from .loss_bound import loss_at_forward, loss_rank_one
from .kinks import KinkStructure
from .network import ForwardPass
from .tangent import FirstOrderModel, directional_derivative, tangent_forward


def _search(problem: Problem, theta: np.ndarray, point, t: float, shrink: float, tries: int,
            before: BoundedValue | None = None, t_hi: float | None = None):
    """Shrink ``t`` until ``point(t)`` has a verified lower loss; each try costs about one forward pass.

    The trial point is evaluated once with a rank-one rounding bound (:func:`certify.loss_bound.loss_rank_one`);
    only when that cannot show the decrease does :func:`certify.evaluate.verified_decrease` re-evaluate
    both points with the absolute forward pass, in extended precision, or exactly. ``before`` may pass
    a bounded value of ``L(theta)`` already known (e.g. from the driver's forward pass).

    When no smaller step shows a decrease, or one only within rounding distance of the point
    (:data:`MICROSCOPIC`), steps above ``t`` are tried too, by factors of 4 up to ``t_hi``: the
    starting step is the first-order distance to the next kink off the point, and a kink 1e-17 away
    (held by nothing, not within the kink tolerance) put it where no decrease can show, while from
    1e-14 to 1e-4 the loss fell at the predicted slope. Measured on ``diabetes_abs_sgd``'s polished
    point (tree direction, ``L'(theta; d) = -0.0197``): the loss is 2e-8 lower at ``t = 1e-6``, and
    40 shrinking steps from 5e-17 reported no decrease. Any step is sound: the decrease is verified
    at the step the report stores, and what makes the curve a local descent is checked separately
    (its slope, or its Taylor coefficients), as :mod:`certify.verify` re-checks both.
    """
    if before is None:
        before = loss_with_bound(problem, theta)
    tiny = MICROSCOPIC * max(float(np.linalg.norm(theta)), 1.0)

    def attempt(s):
        theta_new = point(s)
        if np.array_equal(theta_new, theta):
            return None
        after = loss_rank_one(problem, theta_new)
        if not after.value < before.value:
            return None
        dec = Decrease(before.value, after.value, before.value - after.value, before.error + after.error, "float64")
        if not dec.verified:
            # the cheap bound is too loose: the absolute forward pass, then higher precision, exact
            dec = verified_decrease(problem, theta, theta_new, before=before,
                                    after=loss_with_bound(problem, theta_new))
        return (s, dec, float(np.linalg.norm(theta_new - theta))) if dec.verified else None

    found = None
    for k in range(tries):
        found = attempt(t * shrink ** k)
        if found is not None:
            break
    if (found is None or found[2] <= tiny) and t_hi is not None and t_hi > t > 0:
        # nothing, or a decrease only within rounding distance of the point: try the longer steps
        for k in range(1, int(np.log(t_hi / t) / np.log(4.0)) + 1):
            longer = attempt(t * 4.0 ** k)
            if longer is not None:
                found = longer if found is None or longer[2] > found[2] else found
                if longer[2] > tiny:
                    break
    return None if found is None else found[:2]


#: a step that moves the point by at most this share of ``max(||theta||, 1)`` stays within rounding
#: distance of it (:func:`_search` then tries longer ones; :func:`certify.polish.method.microscopic_descent`)
MICROSCOPIC = 1e-12

#: the point to resume training from moves at most this share of ``max(||theta||, 1)`` along an escape
RESUME_MAX_MOVE = 0.1


def refutation_curve(theta: np.ndarray, refutation: dict):
    """``t -> theta + t d + t^2/2 e`` for a refutation's ``direction`` d and ``curvature_direction`` e
    (0 when absent), or None when their shapes are not ``theta``'s."""
    d = np.asarray(refutation["direction"], dtype=np.float64)
    e = refutation.get("curvature_direction")
    e = np.zeros_like(d) if e is None else np.asarray(e, dtype=np.float64)
    if d.shape != np.shape(theta) or e.shape != np.shape(theta):
        return None
    return lambda t: theta + t * d + 0.5 * t * t * e


def escape(problem: Problem, report) -> dict | None:
    """The point to resume training from after ``report`` (a :func:`certify.check` of ``problem``).

    For a ``saddle`` or ``not_stationary`` report with a verified refutation: the lowest point along its
    curve ``theta + t d + t^2/2 e`` found by :func:`resume_point` from the refutation's step, where
    ``theta`` is the point the report is about -- the polished point after ``polish=True``
    (``report.polish["theta"]``), else ``problem``'s. The search a polished check's ``trained`` answer
    already made (``report.trained["escape"]``) is reused, not repeated. None for other verdicts and
    refutations without a step. It is what ``certify check --escape FILE`` writes.

    Returns a dict: ``theta`` (the point, flat), ``step``, ``distance`` (from the point the report is
    about), ``loss``, ``decrease`` (float64), ``error_bound`` (the two rounding bounds) and ``visible``
    (the decrease exceeds them: resuming there starts lower in float64; when it does not, the point is
    exactly lower but gains nothing in the arithmetic training runs in) and ``cut`` (false: a search the
    trained answer's deadline cut short is made again here, to its end).

    Examples
    --------
    Two samples x = 1, 2 with y = 1, 2 and a 1-1-1 ReLU net f = w relu(x): the loss is (5/4)(w - 1)^2,
    so at w = 0.8 the check refutes; the escape point is lower, at w = 0.8 + t.

    >>> import numpy as np, certify
    >>> net = certify.Network([np.array([[1.0]]), np.array([[0.8]])], [np.zeros(1), np.zeros(1)], "relu")
    >>> problem = certify.Problem(net, certify.Dataset(np.array([[1.0], [2.0]]), np.array([1.0, 2.0])), "square")
    >>> report = certify.check(net, problem.data.X, problem.data.y, loss="square")
    >>> esc = certify.escape(problem, report)
    >>> esc["visible"], bool(problem.value(esc["theta"]) < problem.value() - 1e-3)
    (True, True)
    """
    if hasattr(report, "verdict") and hasattr(report, "to_dict"):   # a Report: its sections, not to_dict()'s copy
        rep = {"verdict": report.verdict.value, "refutation": report.refutation, "polish": report.polish,
               "trained": report.trained, "problem": report.problem}
    else:
        rep = report
    if not isinstance(rep, dict) or "verdict" not in rep:
        raise CertificateError("not a certify report: expected a Report or its dict (keys 'verdict', 'refutation')")
    ref = rep.get("refutation") or {}
    if rep.get("verdict") not in ("saddle", "not_stationary") or not ref.get("verified"):
        return None
    polish = rep.get("polish") or {}
    base = problem.theta if polish.get("theta") is None else np.asarray(polish["theta"], dtype=np.float64)
    if base.shape != problem.theta.shape:
        raise ShapeError(f"the report's polished point has {base.size} parameters, the problem {problem.theta.size}")
    _same_problem(rep, problem, base)
    known = (rep.get("trained") or {}).get("escape")
    if isinstance(known, dict) and known.get("step") and not known.get("cut") and ref.get("direction") is not None:
        curve = refutation_curve(base, ref)       # (the trained answer searched from this point already)
        if curve is not None:
            return {**known, "theta": curve(float(known["step"]))}
    return resume_point(problem.at(base), base, ref)


def _same_problem(report: dict, problem: Problem, theta: np.ndarray) -> None:
    """Raise :class:`~certify.errors.CertificateError` when the report's fingerprints (point, inputs,
    labels; absent in a hand-built report) are not ``problem``'s at ``theta``."""
    stored = ((report.get("problem") or {}).get("fingerprint")) or {}
    got = problem.at(theta).fingerprints()
    bad = [k for k in ("theta", "X", "y") if k in stored and stored[k] != got[k]]
    if bad:
        raise CertificateError(f"the report was made for other {', '.join(bad)} (fingerprints differ): pass the "
                               f"problem it was made for")


def resume_point(problem: Problem, theta: np.ndarray, refutation: dict | None, *,
                 max_move: float = RESUME_MAX_MOVE, deadline: float | None = None) -> dict | None:
    """Where to resume training along a verified refutation of ``theta``, and whether it helps in float64.

    The refutation's ``step`` is where its decrease is proved -- exactly, in extended precision or in
    float64 with a rounding bound -- and it may be far below anything float64 resolves on the loss:
    on ``iris_class_mchinge_wd_sgd``'s polished point an exact second-order escape lowers the loss by
    8.7e-18 at ``t = 3e-8``, and from ``t = 1.2e-7`` on the loss *rises* along it (kinks next to the
    point flip; at ``t = 0.03`` it is 6.6e-5 higher). So from that step, steps 4, 16, ... times longer
    along the same curve ``theta + t d + t^2/2 e`` are evaluated in float64 with their rounding bounds
    (:func:`certify.evaluate.loss_with_bound`) until the loss rises by more than the two rounding bounds
    (a rise within them, rounding noise at small steps, is walked past) or the move exceeds
    ``max_move * max(||theta||, 1)``, and the lowest is returned. It is *visible* when its float64
    loss is below ``L(theta)`` by more than both rounding bounds: a point from which resuming training
    starts lower in the arithmetic training runs in. Nothing here is part of a proof; the verdict and
    its certificate are the refutation's. Past ``deadline`` (a :func:`time.perf_counter` time) the
    search stops after the refutation's own step, with the lowest point evaluated so far.

    Returns None without a verified refutation with a direction and a step; otherwise a dict with
    ``theta`` (the point), ``step``, ``distance``, ``loss``, ``decrease`` (``L(theta)`` minus its loss,
    float64), ``error_bound`` (the two rounding bounds), ``visible`` and ``cut`` (``deadline``
    stopped the search before it reached the cap or a rise).
    """
    ref = refutation or {}
    if not ref.get("verified") or ref.get("direction") is None or not ref.get("step"):
        return None
    theta = np.asarray(theta, dtype=np.float64)
    curve = refutation_curve(theta, ref)
    if curve is None:
        return None
    before = loss_with_bound(problem, theta)
    cap = max_move * max(float(np.linalg.norm(theta)), 1.0)
    t = abs(float(ref["step"]))
    best = None
    cut = False
    while np.isfinite(t) and t > 0:
        if best is not None and deadline is not None and time.perf_counter() > deadline:
            cut = True
            break
        point = curve(t)
        move = float(np.linalg.norm(point - theta))
        if best is not None and move > cap:
            break
        after = loss_with_bound(problem, point)
        if best is not None and after.value - best[1].value > after.error + best[1].error:
            break       # a rise float64 can see; one within rounding (noise at small steps) is walked past
        if best is None or after.value < best[1].value:
            best = (t, after, point, move)
        t *= 4.0
    t, after, point, move = best
    decrease = float(before.value) - float(after.value)
    bound = float(before.error) + float(after.error)
    return {"theta": point, "step": t, "distance": move, "loss": float(after.value), "decrease": decrease,
            "error_bound": bound, "visible": bool(decrease > bound), "cut": cut}


def refute(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, fo: FirstOrderModel, d: np.ndarray,
           max_halvings: int = 40) -> dict:
    """Find a step ``t`` with a verified ``L(theta + t d) < L(theta)`` along a descent direction.

    The slope is computed twice, on the tangent network and by a direct forward pass of the
    tangent (which also gives the distance to the next inactive kink); both must be negative.
    """
    slope_model = fo.evaluate(d)
    dz = tangent_forward(problem, fwd, d, D=fo.slopes, kinks=kinks)
    slope_direct = directional_derivative(problem, fwd, kinks, d, dz=dz)
    slope = max(slope_model, slope_direct)
    theta = problem.theta
    out = {"kind": "descent_direction", "direction": d, "directional_derivative": slope,
           "directional_derivative_model": slope_model, "step": None, "verified": False}
    if not slope < 0:
        out["note"] = "the tangent network and the direct tangent pass disagree on descent"
        return out
    t_max = _step_to_next_kink(problem, fwd, kinks, d, dz)
    scale = max(1.0, float(np.abs(theta).max(initial=0.0)))
    t_hi = 0.1 * scale / max(float(np.abs(d).max()), 1e-300)
    best = _search(problem, theta, lambda s: theta + s * d, min(0.5 * t_max, t_hi), 0.25, max_halvings,
                   before=loss_at_forward(problem, fwd), t_hi=t_hi)
    if best is None:
        exact = exact_hook(problem, kinks, d)
        if exact is not None:
            out.update(exact)
            return out
        out["note"] = "no step gave a decrease larger than the rounding-error bound"
        return out
    t, dec = best
    out.update({"step": t, **dec.to_dict()})
    return out


def _step_to_next_kink(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, d: np.ndarray,
                       dz: list | None = None) -> float:
    """Largest ``t`` (first-order estimate) before an inactive unit or loss piece switches.

    ``min -z/v`` over the units off their kink whose pre-activation ``z`` moves toward 0
    (``z v < 0``), and the same for the loss pieces. Only the starting step of the search depends on
    it (the decrease is verified), so it is computed with a few whole-array operations.
    """
    if dz is None:
        dz = tangent_forward(problem, fwd, d, kinks=kinks)
    t = np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        for l, (z, v) in enumerate(zip(fwd.pre[:-1], dz[:-1]), start=1):
            r = np.divide(z, v)
            np.negative(r, out=r)                 # -z/v: positive exactly where z moves toward 0
            r[~(r > 0)] = np.inf                  # also drops 0/0 and the units not moving
            if kinks.masks:
                m = kinks.masks[l - 1]
                if m.any():
                    r[m] = np.inf
            t = min(t, float(r.min(initial=np.inf)))
    loss = problem.loss
    if loss.piecewise_linear:
        vals, slopes = loss.pieces(fwd.output, problem.Y)
        dv = np.einsum("igpc,ic->igp", slopes, dz[-1])
        best = vals.max(axis=2, keepdims=True)
        best_idx = vals.argmax(axis=2)
        dbest = np.take_along_axis(dv, best_idx[:, :, None], axis=2)
        gap = best - vals
        closing = dv - dbest
        sel = (gap > 0) & (closing > 0)
        if np.any(sel):
            t = min(t, float(np.min(gap[sel] / closing[sel])))
    return float(t) if np.isfinite(t) else 1.0




def search_curve(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, d: np.ndarray,
                 e: np.ndarray | None = None, *, t0: float | None = None, max_tries: int = 40) -> dict:
    """Verified decrease along ``theta + t d + t^2/2 e`` (second-order curve; ``e`` may be None)."""
    theta = problem.theta
    e = np.zeros_like(d) if e is None else e
    t_max = _step_to_next_kink(problem, fwd, kinks, d)
    scale = max(1.0, float(np.abs(theta).max(initial=0.0)))
    t_hi = 0.1 * scale / max(float(np.abs(d).max()), 1e-300)
    t = t0 if t0 is not None else min(0.5 * t_max, t_hi)
    out = {"kind": "descent_curve", "direction": d, "curvature_direction": e, "step": None, "verified": False}
    c1, c2, cscale = curve_coefficients(problem, fwd, kinks, d, e)
    out.update({"first_order_coefficient": c1, "second_order_coefficient": c2, "coefficient_scale": cscale})
    if not is_local_descent(c1, c2, cscale):
        out["note"] = (f"not a local descent curve: L changes by {c1:.3g} t + {c2:.3g} t^2/2 + o(t^2) "
                       f"(a lower point further away proves nothing about minimality)")
        return out
    best = _search(problem, theta, lambda s: theta + s * d + 0.5 * s * s * e, t, 0.5, max_tries,
                   before=loss_at_forward(problem, fwd), t_hi=t_hi)
    if best is not None:
        out.update({"step": best[0], **best[1].to_dict()})
        return out
    exact = exact_hook(problem, kinks, d, e)
    if exact is not None:
        out.update(exact)
        return out
    out["note"] = "no step gave a decrease larger than the rounding-error bound"
    return out


def exact_hook(problem: Problem, kinks: KinkStructure, d: np.ndarray, e: np.ndarray | None = None) -> dict | None:
    """When floats cannot see the decrease: an exact step (rational point, exact loss), if the problem is small.

    Returns a verified exact refutation (:func:`certify.exact.exact_refutation`: ``exact_point`` set,
    the step possibly far below float resolution) or None (not rational, over the budget, not an
    exact local descent curve, or no exact decrease up to ``2^-200``).
    """
    from .exact import exact_refutation, fits
    if not fits(problem, kinks):
        return None
    ref = exact_refutation(problem, d, None if e is None or not np.any(e) else e)
    return ref if ref["verified"] else None


def curve_coefficients(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, d: np.ndarray,
                       e: np.ndarray | None = None) -> tuple[float, float, float]:
    """``(c1, c2, scale)`` with ``L(theta + t d + t^2/2 e) = L + c1 t + c2 t^2/2 + o(t^2)`` as ``t -> 0+``.

    A descent curve is *local* only if ``c1 < 0``, or ``c1 = 0`` and ``c2 < 0``; a lower point far
    along a curve proves nothing about minimality. The piece the curve enters is chosen layer by
    layer from the signs of the first and second tangents at every kink unit (and, for a loss kink,
    the lexicographically largest active piece), then both coefficients are exact derivatives of that
    smooth piece. ``scale`` is the size of the terms, for tolerances.
    """
    net = problem.network
    act = net.activation
    s_pos, s_neg = act.slopes
    layers = net.split(d)
    e_layers = net.split(np.zeros_like(d) if e is None else e)
    dx = np.zeros_like(problem.X)
    ddx = np.zeros_like(problem.X)
    for l, ((W, _), (dW, db), (eW, eb)) in enumerate(zip(zip(net.weights, net.biases), layers, e_layers), start=1):
        x = fwd.post[l - 1]
        dz = x @ dW.T + db + dx @ W.T
        ddz = 2.0 * (dx @ dW.T) + ddx @ W.T + x @ eW.T + eb
        if l == net.n_layers:
            dF, ddF = dz, ddz
            break
        z = fwd.pre[l - 1]
        side = np.where(z != 0, z, np.where(dz != 0, dz, ddz))
        if kinks.masks:
            m = kinks.masks[l - 1]
            side = np.where(m, np.where(dz != 0, dz, ddz), z)
        slope = np.where(side > 0, s_pos, np.where(side < 0, s_neg, s_pos))
        dx, ddx = slope * dz, slope * ddz
    loss = problem.loss
    F, Y, n = fwd.output, problem.Y, problem.n_samples
    if loss.smooth:
        g = loss.gradient(F, Y)
        c1 = float(np.sum(g * dF)) / n
        c2 = float(np.sum(loss.hessian_apply(F, Y, dF) * dF) + np.sum(g * ddF)) / n
        scale = float(np.sum(np.abs(g) * (np.abs(dF) + np.abs(ddF))) + np.sum(np.abs(loss.hessian_apply(F, Y, dF) * dF))) / n
    else:
        vals, slopes = loss.pieces(F, Y)
        best = vals.max(axis=2, keepdims=True)
        active = vals >= best
        for q in range(kinks.n_loss):   # the tied pieces of every loss kink (within rounding or snapped)
            active[kinks.loss_sample[q], kinks.loss_group[q], kinks.loss_active[q]] = True
        d1 = np.einsum("igpc,ic->igp", slopes, dF)
        d2 = np.einsum("igpc,ic->igp", slopes, ddF)
        # lexicographic max of (d1, d2) over the active pieces of every group
        d1m = np.where(active, d1, -np.inf)
        top1 = d1m.max(axis=2, keepdims=True)
        tie = active & (d1m >= top1 - 1e-12 * (1 + np.abs(top1)))
        c1 = float(np.sum(top1)) / n
        c2 = float(np.sum(np.where(tie, d2, -np.inf).max(axis=2))) / n
        scale = float(np.sum(np.abs(d1) + np.abs(d2))) / n
    if problem.weight_decay:
        th = problem.theta
        ev = np.zeros_like(d) if e is None else e
        c1 += problem.weight_decay * float(th @ d)
        c2 += problem.weight_decay * float(d @ d + th @ ev)
        scale += problem.weight_decay * float(abs(th) @ abs(d) + d @ d + abs(th) @ abs(ev))
    return c1, c2, scale


def is_local_descent(c1: float, c2: float, scale: float, tol_rel: float = 1e-9) -> bool:
    """``c1 < 0``, or ``c1 = 0`` (to rounding) and ``c2 < 0``: the loss drops for all small ``t > 0``."""
    tol = tol_rel * max(scale, 1e-300)
    return c1 < -tol or (c1 <= tol and c2 < -tol)


# ---------------------------------------------------------------------------- higher-order curves
def taylor_judgement(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, d: np.ndarray,
                     e: np.ndarray | None = None, *, order: int = 4) -> dict:
    """Is ``theta + t d + t^2/2 e`` a local descent curve, judged by its Taylor coefficients?

    The coefficients of ``L`` along the curve up to ``t^order`` on the piece it enters
    (:mod:`certify.taylor`). The float64 pass must show a leading coefficient that is negative
    *beyond its rounding bound* (a descent that rounding cannot explain: the point is stationary only
    up to rounding, so a descent of rounding size would be an artefact, not a saddle). When the problem
    is small and the loss rational the exact pass must agree with it within those bounds (else the
    float pass chose another piece: rejected); ``local`` is then ``"exact"`` if the exact leading
    coefficient is negative too (``"up_to_rounding"`` if the exact expansion differs only within the
    float bounds, e.g. a float direction missing a held kink by 1e-17), and None when rejected.
    """
    from .taylor import Taylor, exact_fits, loss_taylor, sparse_line_taylor
    terms = [d] if e is None or not np.any(e) else [d, 0.5 * np.asarray(e, dtype=np.float64)]
    if len(terms) == 1 and (problem.loss.rational or order <= 2):
        # a line: the sparse pass touches only the units the direction reaches (same coefficients)
        c, err = sparse_line_taylor(problem, fwd, kinks, np.asarray(d, dtype=np.float64), order)
        flt = Taylor(tuple(float(v) for v in c), tuple(float(v) for v in err), False)
    else:
        flt = loss_taylor(problem, terms, order, exact=False, fwd=fwd, kinks=kinks)
    out = {"taylor": None if flt is None else flt.to_dict(), "local": None, "order": None,
           "leading_coefficient": None}
    if flt is None:
        out["describe"] = f"the {problem.loss.name} loss has no polynomial expansion to order {order}"
        return out
    if not flt.descends:
        out["describe"] = flt.describe()
        return out
    k, c = flt.leading()
    ext = loss_taylor(problem, terms, order, exact=True) if exact_fits(problem, order) else None
    if ext is not None and any(abs(float(ext.exact_coefficients[i]) - flt.coefficients[i]) > flt.errors[i]
                               for i in range(1, k + 1)):
        out["describe"] = "the exact expansion contradicts the float one: " + ext.describe()
        return out
    if ext is not None and ext.descends and ext.leading()[0] <= k:
        out.update(local="exact", order=ext.leading()[0], leading_coefficient=ext.leading()[1],
                   describe=ext.describe(), taylor=ext.to_dict())
        return out
    out.update(local="up_to_rounding", order=k, leading_coefficient=c, describe=flt.describe())
    if ext is not None:
        out["taylor"]["exact_expansion"] = ext.describe()
    return out


def taylor_curve(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, d: np.ndarray,
                 e: np.ndarray | None = None, *, order: int = 4, max_tries: int = 60) -> dict:
    """A verified decrease along ``theta + t d + t^2/2 e`` that is a local descent of any order.

    Like :func:`search_curve`, but the curve may descend at third or higher order (a degenerate
    point, GT-15): it is accepted when its leading Taylor coefficient on the piece it enters is
    negative (:func:`taylor_judgement`), and only then is a step with a verified decrease searched.
    """
    theta = problem.theta
    d = np.asarray(d, dtype=np.float64)
    e_arr = np.zeros_like(d) if e is None else np.asarray(e, dtype=np.float64)
    judge = taylor_judgement(problem, fwd, kinks, d, None if e is None else e_arr, order=order)
    coeffs = (judge["taylor"] or {}).get("coefficients") or [0.0, 0.0, 0.0]
    errs = (judge["taylor"] or {}).get("errors") or [0.0, 0.0, 0.0]
    # L(theta + t d + t^2/2 e) = L + c1 t + c2 t^2/2 + ...: c1 = c_1, c2 = 2 c_2 of the expansion
    out = {"kind": "descent_curve", "direction": d, "curvature_direction": e_arr, "step": None, "verified": False,
           "first_order_coefficient": float(coeffs[1]) if len(coeffs) > 1 else 0.0,
           "second_order_coefficient": 2.0 * float(coeffs[2]) if len(coeffs) > 2 else 0.0,
           "coefficient_scale": float(max(errs[1:3], default=0.0)),
           "taylor": judge["taylor"], "local": judge["local"], "leading_order": judge["order"]}
    if judge["order"] == 2 and float(d @ d) > 0:
        out["curvature"] = out["second_order_coefficient"] / float(d @ d)   # q with c2 = q |d|^2 (plots)
    if judge["local"] is None:
        out["note"] = f"not a local descent curve: {judge.get('describe', '')}"
        return out
    t_max = _step_to_next_kink(problem, fwd, kinks, d)
    scale = max(1.0, float(np.abs(theta).max(initial=0.0)))
    t_hi = 0.25 * scale / max(float(np.abs(d).max()), 1e-300)
    best = _search(problem, theta, lambda s: theta + s * d + 0.5 * s * s * e_arr, min(0.5 * t_max, t_hi), 0.5,
                   max_tries, t_hi=t_hi)
    if best is not None:
        out.update({"step": best[0], **best[1].to_dict()})
        out["note"] = judge.get("describe", "")
        return out
    out["note"] = "no step gave a decrease larger than the rounding-error bound"
    return out


def local_descent(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, d: np.ndarray,
                  e: np.ndarray | None = None) -> tuple[bool, str]:
    """``(ok, detail)``: the curve descends for every small ``t > 0`` -- at second order
    (:func:`curve_coefficients`) or, failing that, at a higher order (:func:`taylor_judgement`)."""
    c1, c2, cscale = curve_coefficients(problem, fwd, kinks, d, e)
    detail = f"L(theta + t d + t^2/2 e) = L + ({c1:.6g}) t + ({c2:.6g}) t^2/2 + o(t^2)"
    if is_local_descent(c1, c2, cscale):
        return True, detail + ": descends for every small t > 0"
    judge = taylor_judgement(problem, fwd, kinks, d, e, order=6)
    if judge["local"] is not None:
        return True, f"{judge['describe']}: descends for every small t > 0"
    return False, detail + f"; {judge.get('describe', '')}: not a local descent curve"


# ---------------------------------------------------------------------------- an infimum not attained
SCALING_LOSSES = ("cross_entropy", "logistic")


def margins_with_bound(problem: Problem, theta: np.ndarray | None = None):
    """The margins ``f_j - f_y`` (j != y; logistic: ``-y f``) of every sample, ``(n, k)``, and rigorous
    bounds on their rounding errors."""
    from .evaluate import output_with_bound
    u = float(np.finfo(np.float64).eps) / 2
    F, eF = output_with_bound(problem, problem.theta if theta is None else theta)
    if problem.loss.name == "logistic":
        y = problem.Y[:, 0].astype(np.float64)
        M = (-y * F[:, 0])[:, None]
        return M, eF[:, :1] + u * np.abs(M)
    rows = np.arange(F.shape[0])
    Y = problem.Y
    M = F - F[rows, Y][:, None]
    eM = eF + eF[rows, Y][:, None] + u * np.abs(M)
    others = np.ones_like(M, dtype=bool)
    others[rows, Y] = False
    k = F.shape[1] - 1
    return M[others].reshape(-1, k), eM[others].reshape(-1, k)


def scaling_direction(problem: Problem) -> np.ndarray:
    """The direction that scales the last layer ``(W_L, b_L)``, hence the outputs: ``f -> (1 + t) f``."""
    net = problem.network
    d = np.zeros(problem.n_params)
    k = net.weights[-1].size + net.biases[-1].size
    d[-k:] = problem.theta[-k:]
    return d


def output_scaling(problem: Problem) -> dict | None:
    """A refutation for a smooth classification loss whose infimum is not attained.

    Cross-entropy and logistic loss without weight decay: when every sample is classified correctly
    (every margin ``f_j - f_y < 0``, established beyond its rigorous rounding bound), scaling the last
    layer by ``s`` scales the outputs, and each sample's loss ``log(1 + sum_j exp(s m_j))`` strictly
    decreases in ``s``: ``L'(theta; d) = mean_i sum_j p_ij m_ij < 0`` along ``d`` = the last layer's
    parameters, and the loss goes down along the whole ray ``s >= 1``. So theta is no local minimum,
    however small its gradient (a trained classifier's loss of 1e-17 has a gradient below the rounding
    of the usual first-order test). The decrease at ``s = 2`` is verified by :func:`verified_decrease`
    (which evaluates these losses with a relative error bound). None when the test does not apply.
    """
    from .evaluate import verified_decrease
    if problem.loss.name not in SCALING_LOSSES or problem.weight_decay:
        return None
    M, eM = margins_with_bound(problem)
    if M.size == 0 or not np.all(M + eM < 0):
        return None
    d = scaling_direction(problem)
    if not np.any(d):
        return None
    dec = verified_decrease(problem, problem.theta, problem.theta + d)
    if not dec.verified:
        return None
    with np.errstate(under="ignore"):
        Ez = np.exp(M)
        P = Ez / (1.0 + Ez.sum(axis=1, keepdims=True))
    slope = float(np.mean(np.sum(P * M, axis=1)))
    return {"kind": "output_scaling", "direction": d, "directional_derivative": slope, "step": 1.0,
            "curve": "theta + t d scales the last layer by 1 + t: every margin is negative, so every sample's "
                     "loss falls along the whole ray t >= 0",
            "largest_margin": float(np.max(M + eM)), **dec.to_dict()}
