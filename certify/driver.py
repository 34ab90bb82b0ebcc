"""The order of the tests, the budgets, and the verdict.

``check`` runs: forward pass -> kinks -> tangent network -> first-order decision (gradient, LP,
LIKQ least squares or MILP) -> refutation with a verified decrease, or the second-order stage.
A solver's status never decides alone: a descent direction is re-evaluated on the tangent network
and on the loss itself, a stationarity claim needs multipliers whose residual numpy re-computes
(or, for the MILP, HiGHS's proven bound, which the report marks as solver-attested).
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from . import __version__
from .data import Dataset, Problem, fingerprint
from .first_order import decide_first_order
from .budget import DEFAULT_TIME_LIMIT, OutOfTime, remaining
from .first_order import FirstOrder
from .kinks import DEFAULT_TOL, find_kinks
from .loaders import as_network
from .prune import prunable
from .report import Report, Verdict
from .refute import RESUME_MAX_MOVE, refute, resume_point
from .secondorder import decide_second_order
from .tangent import first_order_model

log = logging.getLogger(__name__)


def check(model, X=None, y=None, *, data=None, activation=None, loss="square", weight_decay=0.0,
          tol: float | None = DEFAULT_TOL, time_limit: float = DEFAULT_TIME_LIMIT, polish: bool = False,
          smoothing: bool = False) -> Report:
    """Decide whether the network's parameters are a local minimum of its training loss.

    Parameters
    ----------
    model : Network, mapping, list of ``(W, b)``, ``nn.Sequential`` or path
        The point to check: arrays ``{"W1": ..., "b1": ...}`` or a state dict, a torch
        ``nn.Sequential`` (activation read from its layers), or a file (``.npz``, ``.pt``/``.pth``,
        ``.onnx``, ``.safetensors``). Weights in PyTorch orientation ``(out, in)``.
    X, y : arrays, optional
        Training inputs ``(n, d)`` and labels; or pass ``data`` (a :class:`Dataset` or a path).
    activation : str
        ``"relu"``, ``"leaky_relu:ALPHA"``, ``"abs"`` or ``"identity"`` (default: from the
        model when it says, else ``"relu"``).
    loss : str
        ``"square"``, ``"hinge"``, ``"multiclass_hinge"``, ``"absolute"``, ``"logistic"`` or
        ``"cross_entropy"``; the training loss is the mean over samples.
    weight_decay : float
        ``lambda`` in ``+ lambda/2 ||theta||^2``.
    tol : float or None
        Kinks are the values zero up to their rounding-error bound; a relative tolerance ``tol``
        also snaps values within it (see :mod:`certify.kinks`). A certificate is never about a point
        snapped beyond rounding.
    time_limit : float
        Seconds for the whole check, polishing included (default 300); when the budget runs out the
        answer is the best one proved so far (a verified refutation stands; otherwise
        ``inconclusive`` naming what ran out), never a hang.
    polish : bool
        First move to a nearby KKT point of the piecewise-smooth loss (an active-set Newton–KKT
        method over its pieces, matrix-free; 70% of the budget, then what the check of its end point
        leaves when it ended mid-descent; :mod:`certify.polish`) and
        certify that point; the report's ``polish`` section says where it is and how far it moved, and
        its ``trained`` section what that means for the given checkpoint.
    smoothing : bool
        Polish (implies ``polish``), and when the active-set method stalls short of a KKT point, go on
        from a smoothing homotopy (:mod:`certify.polish.homotopy`): it reaches lower losses sooner on
        the trained family, but its end points are more often degenerate ones the checker cannot
        decide (dead units under weight decay, samples on kinks of two layers), so it is not the default.

    Returns
    -------
    Report

    Examples
    --------
    >>> import numpy as np, certify
    >>> X = np.array([[-1.0], [0.0], [1.0]]); y = np.array([-1.0, 1.0, 1.0])
    >>> weights = {"W1": [[1.0]], "b1": [0.0], "W2": [[1.0]], "b2": [0.0]}
    >>> report = certify.check(weights, X, y, activation="relu", loss="square")
    >>> report.verdict.value        # Clarke-stationary, yet b -> b + t lowers the loss
    'not_stationary'
    """
    net = as_network(model, activation)
    if data is None:
        if X is None or y is None:
            from .errors import InvalidValueError
            raise InvalidValueError("no data: pass X and y, or data=")
        data = Dataset(X, y)
    elif not isinstance(data, Dataset):
        from .loaders import load_data
        data = load_data(data)
    problem = Problem(net, data, loss, weight_decay)
    if polish or smoothing:
        return check_polished(problem, tol=tol, time_limit=time_limit, smoothing=smoothing)
    return check_problem(problem, tol=tol, time_limit=time_limit)


def polish_problem(problem: Problem, *, time_limit: float = 5.0, budget_s: float = 120.0, start=None,
                   smoothing: bool = False):
    """Polish ``problem``'s point (:func:`certify.polish.polish_point`) with this driver as the judge.

    ``budget_s`` bounds the whole polishing, ``time_limit`` each call of the judge (a refuted polished
    point is moved along its verified descent and polished again); ``start``: from this point instead;
    ``smoothing``: the homotopy after a stalled polish (:func:`check`).
    """
    from .polish import polish_point
    return polish_point(problem, lambda pr, limit: check_problem(pr, time_limit=limit), time_limit=time_limit,
                        budget_s=budget_s, start=start, smoothing=smoothing)


#: flags that describe a certified minimum, dropped when the verdict is another
MIN_FLAGS = ("global", "spurious", "strict", "flat_directions")
#: share of the budget polishing may use (the rest is for certifying the polished point). Certifying a
#: converged polish takes seconds (a nearby proof), and the longest final check in the trained family
#: took 81 s of 300 (a saddle of ``digits_mchinge_wd_sgd``), while ``diabetes_abs_sgd``'s polish
#: converges at 176 s: 0.5 left it mid-descent, 0.7 carries it to a certified minimum
POLISH_SHARE = 0.7
#: when the end point's check ends mid-descent with time to spare, polishing goes on (:func:`_polish_on`)
#: for what is left less a reserve for checking the new end point: twice the first check's time, and at
#: least this share of the budget; and only when at least LEG_MIN of the budget is left for it
LEG_RESERVE = 0.05
LEG_MIN = 0.05
#: the end point's check stops this share of the budget before its end: a check cut by its deadline
#: still compares and writes its answer (digits_mchinge_wd_sgd's ended at 300.2 s of 300 in a family run)
REPORT_MARGIN = 0.01
#: a trained checkpoint has converged when the certified point is this close, relative to ||theta||
NEAR_DISTANCE = 0.05
#: ... and its loss this close, relative to the checkpoint's loss
NEAR_LOSS_GAP = 0.01


def check_polished(problem: Problem, *, tol: float | None = DEFAULT_TOL, time_limit: float = DEFAULT_TIME_LIMIT,
                   smoothing: bool = False) -> Report:
    """Polish (:mod:`certify.polish`), certify the polished point, and say what it means for the checkpoint.

    The report's ``trained`` section answers for the given point: ``near_minimum`` (a certified local
    minimum within ``NEAR_DISTANCE`` of it, relative to its norm, and within ``NEAR_LOSS_GAP`` of its
    loss), ``near_saddle`` (the polished point is a saddle: its escape is verified), ``not_converged``
    (a verified lower point further away or clearly lower: keep training; the end point's own verdict
    is kept), or ``undecided``.
    """
    t0 = time.perf_counter()
    deadline = t0 + time_limit
    with np.errstate(over="ignore", invalid="ignore"):
        problem.check_finite()
    judge_limit = max(1e-3, min(0.1 * time_limit, 30.0))
    pol = polish_problem(problem, time_limit=judge_limit, budget_s=max(1e-3, POLISH_SHARE * time_limit),
                         smoothing=smoothing)
    t_end = time.perf_counter()
    report = _check_end(problem, pol, tol, deadline, time_limit)
    pol, report = _polish_on(problem, pol, report, time.perf_counter() - t_end, deadline, judge_limit, tol,
                             time_limit, smoothing)
    info = pol.to_dict()
    info["theta"] = pol.theta
    info["original_fingerprint"] = fingerprint(problem.theta)   # (no loss evaluation for a digest)
    report.polish = info
    report.trained = trained_answer(problem, pol.theta, report, deadline=deadline)
    where = ("at the checkpoint (not moved: no local minimum has a lower loss)" if pol.no_minimum else
             f"at the polished point (moved {pol.distance:.3g}, loss {pol.loss_after - pol.loss_before:+.3g})")
    report.reason = f"{where}: {report.reason}"
    report.timings["polish_s"] = time.perf_counter() - t0 - report.timings.get("total_s", 0.0)
    report.timings["total_s"] = time.perf_counter() - t0
    return report


def _check_end(problem: Problem, pol, tol, deadline: float, time_limit: float) -> Report:
    """The check of a polish's end point, stopping ``REPORT_MARGIN`` of the budget before its deadline."""
    return check_problem(problem.at(pol.theta), tol=tol, deadline=deadline - REPORT_MARGIN * time_limit,
                         time_limit=time_limit, prefer_nearby=True, no_minimum_below=pol.no_minimum)


def _polish_on(problem: Problem, pol, report: Report, judged_s: float, deadline: float, judge_limit: float,
               tol, time_limit: float, smoothing: bool = False):
    """Spend what the end point's check left of the budget on polishing further, when it ended mid-descent
    (or at a "saddle" refuted only within rounding distance of a kink: :func:`~.polish.method.microscopic_descent`).

    The polish gets ``POLISH_SHARE`` of the budget so that its end point can be certified in the rest;
    when that check takes seconds and refutes the end point (the budget cut a descent), the time left
    (less a reserve of twice that check's time, at least ``LEG_RESERVE`` of the budget) goes to one
    more leg of polishing from the lower point along the refutation, as
    :func:`certify.polish.polish_point` does between its rounds. Its end point is checked in turn,
    and replaces the first only when that check decides (a certified minimum, a verified saddle or a
    verified descent): the best answer proved so far is never lost to the clock. A polish that converged
    goes on only from a lower point along the check's descent (from its own end point it would stop there).
    """
    from .polish.method import lower_point_along, microscopic_descent
    ref = report.refutation or {}
    left = deadline - time.perf_counter()
    leg = left - max(2.0 * judged_s, LEG_RESERVE * time_limit)
    decided = report.verdict.value == "local_min" or (report.verdict.value == "saddle"
                                                      and not microscopic_descent(ref, pol.theta))
    if (pol.no_minimum or pol.far or decided or ref.get("direction") is None or leg < LEG_MIN * time_limit):
        return pol, report
    nxt = lower_point_along(problem, pol.theta, ref)
    if nxt is None and pol.converged:
        return pol, report          # (polishing on from a converged end point would end there again)
    # (a converged polish goes on too when there is a lower point: a KKT point of the kinks it held that
    # the check, given more time than the polish's judge, refutes with a verified descent; seen with
    # --smoothing on diabetes_sq_depth3_wd_adam, whose check had ended with 134 s of its 300 unused)
    if nxt is None:
        # a descent that float64 cannot follow (a kink within rounding distance): the polish did not
        # converge, so it goes on from its own end point (polish_point restarts it with nothing held)
        log.info("polish: the end point's check left %.0f s; polishing on from the end point", left)
        nxt = pol.theta
    else:
        log.info("polish: the end point's check left %.0f s; polishing on from the lower point along its "
                 "descent", left)
    pol2 = polish_problem(problem, time_limit=judge_limit, budget_s=leg, start=nxt, smoothing=smoothing)
    report2 = _check_end(problem, pol2, tol, deadline, time_limit)
    if report2.verdict.value == "inconclusive" or pol2.loss_after > pol.loss_after:
        log.info("polish: the second leg's end point was not decided in time; the first one's answer stands")
        return pol, report
    pol2.time_s += pol.time_s     # (rounds and history stay the last polish call's, as polish_point's do)
    pol2.smooth = pol2.smooth or pol.smooth
    pol2.homotopy = pol2.homotopy or pol.homotopy
    return pol2, report2


def _invisible(escape: dict) -> str:
    """Why a verified descent is no place to resume training (:func:`certify.refute.resume_point`)."""
    upto = "within the time left, no step tried" if escape.get("cut") else "no step"
    return (f"{upto} along it up to a move of {RESUME_MAX_MOVE:g} ||theta|| lowers the float64 loss by more "
            f"than its rounding bound {escape['error_bound']:.2g} (at best it changes by {-escape['decrease']:+.2g}, "
            f"at t = {escape['step']:.3g})")


def _gain(escape: dict | None) -> str:
    """What resuming along a visible escape gains (:func:`certify.refute.resume_point`), or ""."""
    if not escape or not escape.get("visible"):
        return ""
    return f": the loss {escape['decrease']:.3g} lower, {escape['distance']:.3g} away"


def trained_answer(problem: Problem, theta_end: np.ndarray, report: Report, *, deadline: float | None = None) -> dict:
    """What the end point's verdict means for the checkpoint ``problem.theta`` (see :func:`check_polished`)."""
    from .evaluate import verified_decrease
    from .polish.method import microscopic_descent
    theta0 = problem.theta
    norm0 = float(np.linalg.norm(theta0))
    claim = report.claim or {}
    radius = float(claim.get("radius") or 0.0)
    distance = float(np.linalg.norm(theta_end - theta0)) + radius
    dec = verified_decrease(problem, theta0, theta_end) if not np.array_equal(theta_end, theta0) else None
    loss0 = problem.value()
    loss_end = problem.value(theta_end)
    gap = loss0 - loss_end
    rel_d = distance / norm0 if norm0 > 0 else (0.0 if distance == 0 else float("inf"))
    rel_gap = gap / abs(loss0) if loss0 != 0 else (0.0 if gap == 0 else float("inf"))
    verdict = report.verdict.value
    out = {"distance": distance, "relative_distance": rel_d, "loss_checkpoint": loss0, "loss_end": loss_end,
           "loss_gap": gap, "relative_loss_gap": rel_gap, "end_verdict": verdict,
           "lower_point_verified": bool(dec is not None and dec.verified),
           "thresholds": {"relative_distance": NEAR_DISTANCE, "relative_loss_gap": NEAR_LOSS_GAP}}
    near = rel_d <= NEAR_DISTANCE and rel_gap <= NEAR_LOSS_GAP
    where = f"{distance:.3g} ({100 * rel_d:.3g}% of ||theta||) from the checkpoint"
    lower = f"loss lower by {gap:.3g} ({100 * rel_gap:.3g}%)"
    # a descent confined to rounding distance of the point (a kink 1e-17 away) is no reason to keep training;
    # nor is one whose decrease float64 cannot show at any step along it (resume_point: an exact escape of
    # 1e-17 with the loss rising from t = 1e-7 on), though the verdict about the exact point stands
    escape = None
    if verdict in ("saddle", "not_stationary") and (report.refutation or {}).get("kind") != "output_scaling":
        escape = resume_point(problem.at(theta_end), theta_end, report.refutation, deadline=deadline)
    if escape is not None:
        out["escape"] = {k: v for k, v in escape.items() if k != "theta"}
    microscopic = verdict in ("saddle", "not_stationary") and microscopic_descent(report.refutation, theta_end)
    invisible = escape is not None and not escape["visible"] and not microscopic
    negligible = microscopic or invisible
    # the end point is decided: a certified minimum, a saddle whose escape leaves rounding distance, or
    # no minimum anywhere below (the output-scaling refutation)
    out["end_certified"] = (verdict == "local_min" or (verdict == "saddle" and not negligible)
                            or (report.refutation or {}).get("kind") == "output_scaling")
    if verdict == "local_min" and near:
        out["outcome"] = "near_minimum"
        out["summary"] = f"a certified local minimum {where}, {lower}"
    elif verdict == "saddle" and not negligible and near:
        out["outcome"] = "near_saddle"
        out["summary"] = (f"the point {where} is a saddle and its escape is verified; resume "
                          f"training from the lower point (--escape){_gain(escape)}")
    elif (report.refutation or {}).get("kind") == "output_scaling":
        out["outcome"] = "not_converged"
        out["summary"] = (f"no minimum near the checkpoint: every sample is classified correctly and without "
                          f"weight decay the {problem.loss.name} loss keeps falling as the outputs are scaled up "
                          + ("(the checkpoint itself: not moved)" if distance == 0 else
                             f"(the polished point {where}, {lower})") + "; train with weight decay for a minimum")
    elif negligible and (report.polish or {}).get("converged", True):
        # a converged polish refuted only by a descent of 1e-19 up to a kink 1e-17 away: the polished point
        # sits on a degenerate kink (a multiplier at the end of its interval, a released kink still at 0)
        out["outcome"] = "undecided"
        dec = float((report.refutation or {}).get("decrease") or 0.0)
        if invisible:
            out["summary"] = (f"the polished point {where} ({lower}) is a KKT point of its kinks to rounding and "
                              f"exactly a {verdict.replace('_', ' ')}, but its verified descent (a decrease of "
                              f"{dec:.3g}) does not show in float64: {_invisible(escape)}")
        else:
            out["summary"] = (f"the polished point {where} ({lower}) is a KKT point of its kinks to rounding, but "
                              f"exactly it is refuted only by a descent of {dec:.3g} up to a kink next to it: a "
                              f"degenerate kink (a multiplier at the end of its interval) that no exact minimum "
                              f"could be separated from")
    elif out["lower_point_verified"] and (not near or verdict in ("not_stationary",)):
        out["outcome"] = "not_converged"
        end = {"local_min": "a certified local minimum", "not_stationary": "a point that is still not stationary",
               "inconclusive": "an undecided point",
               "saddle": f"a saddle whose escape is verified (--escape writes the lower point{_gain(escape)})"
               }.get(verdict, verdict)
        if microscopic:
            # refuted only within rounding of a kink (a descent of 1e-18 at t = 4e-17): the polish did not
            # get to a point the checker can decide; not a certified end point (the benchmark says so)
            end = f"a point refuted only within rounding distance of a kink next to it ({verdict} to rounding)"
        elif invisible:
            end = f"a {verdict.replace('_', ' ')} whose verified descent does not show in float64 ({_invisible(escape)})"
        out["summary"] = (f"a verified lower point {where}, {lower}; carried on to "
                          f"{end} there; keep training")
    else:
        out["outcome"] = "undecided"
        out["summary"] = (f"the polished point {where} ({lower}) is {verdict}"
                          + ("" if verdict != "local_min" else " but not near enough to call the checkpoint converged"))
    if report.pruned and not out["end_certified"]:
        # a certificate for the network without its collapsed units (weight decay): not the end point's
        out["pruned_local_min"] = True
        out["summary"] += (f"; without its {len(report.pruned['units'])} all-zero unit(s) the network (widths "
                           f"{report.pruned['widths']}) is a certified local minimum there (whether a zero unit can "
                           f"regrow is not decided)")
    return out


def check_problem(problem: Problem, *, tol: float | None = DEFAULT_TOL, time_limit: float = DEFAULT_TIME_LIMIT,
                  deadline: float | None = None, prefer_nearby: bool = False,
                  no_minimum_below: bool = False) -> Report:
    """:func:`check` on an assembled :class:`Problem`, within ``time_limit`` seconds (or by ``deadline``).

    ``prefer_nearby`` (a polished point): try the proof of an exact local minimum near the point
    (:mod:`certify.nearby`), then the exact construction of one (:func:`_try_snap_near`), before
    anything else -- a polished float point is never exactly a minimum, and a float64 descent of 1e-15
    from it says nothing a user can act on.
    ``no_minimum_below`` (the polisher found that no local minimum has a lower loss): the output-scaling
    refutation, which says why, is preferred to any other descent."""
    t0 = time.perf_counter()
    if deadline is None:
        deadline = t0 + time_limit
    timings = {}
    net = problem.network
    with np.errstate(over="ignore", invalid="ignore"):
        fwd = net.forward(problem.X, with_scale=True)
    problem.check_finite(fwd)
    kinks = find_kinks(problem, fwd, tol)
    if prefer_nearby:
        nearby = _try_nearby(problem, deadline) or _try_snap_near(problem, fwd, kinks, deadline)
        if nearby is not None:
            return _nearby_report(problem, fwd, kinks, nearby, t0, time_limit)
    structure = _exact_structure(problem, fwd, kinks)
    if structure is not None:   # small and rational: the exact zeros are the kinks, the sides are exact
        kinks, fwd = structure.kinks, structure.fwd
    timings["kinks_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    fo_model = first_order_model(problem, fwd, kinks)
    timings["tangent_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    try:
        fo = decide_first_order(problem, fwd, kinks, fo_model, time_limit=remaining(deadline))
    except OutOfTime as exc:
        fo = FirstOrder(None, "budget", reason=f"the time budget ({time_limit:g} s) ran out during {exc.what}")
    timings["first_order_s"] = time.perf_counter() - t2
    loss_value = float(np.mean(problem.loss.values(fwd.output, problem.Y)))
    if problem.weight_decay:
        loss_value += 0.5 * problem.weight_decay * float(problem.theta @ problem.theta)
    info = _problem_info(problem, loss_value)
    # differentiable: no kink reaches L' (a kink with zero coefficient leaves L differentiable, not C^2)
    flags = {"differentiable": bool(fo_model.smooth), "at_kink": kinks.n_total > 0,
             "approximate": kinks.n_total > kinks.n_exact}
    refutation = None
    second_order = None
    claim = None
    if fo.direction is not None and not fo.stationary:  # a slope within the tolerance cannot be verified
        t3 = time.perf_counter()
        refutation = refute(problem, fwd, kinks, fo_model, fo.direction)
        timings["refutation_s"] = time.perf_counter() - t3
    if refutation is not None and refutation["verified"]:
        verdict = Verdict.NOT_STATIONARY
        reason = (f"descent direction with L'(theta; d) = {refutation['directional_derivative']:.3g} < 0; "
                  f"the loss drops by {refutation['decrease']:.3g} at step {refutation['step']:.3g} "
                  f"(verified, {refutation['method']})")
        flags["method"] = fo.method
    elif fo.stationary:
        t4 = time.perf_counter()
        so = decide_second_order(problem, fwd, kinks, fo_model, fo, time_limit=remaining(deadline),
                                 deadline=deadline)
        timings["second_order_s"] = time.perf_counter() - t4
        second_order = so.to_dict()
        fo.solver_calls.extend(so.solver_calls)
        flags.update({k: v for k, v in so.flags.items() if v is not None or k not in flags})
        flags["method"] = so.method
        if so.verdict == "local_min" and kinks.n_near:
            # the certificate holds for the point with its near kinks snapped onto their surfaces, which
            # is not the given point: a tolerance never certifies
            verdict = Verdict.INCONCLUSIVE
            reason = (f"a local minimum only up to the tolerance {kinks.tol:g}: {kinks.n_near} kink(s) were snapped "
                      f"onto their surfaces from up to {kinks.summary()['max_abs_value']:.3g} away, beyond rounding "
                      f"({so.method} holds for the snapped point, not for the given one); polish the point "
                      f"(--polish) to certify a nearby exact point")
        elif so.verdict == "local_min":
            verdict, reason = Verdict.LOCAL_MIN, so.reason
            claim = _claim_up_to_rounding(kinks, fo)
            if so.certificate.get("kind") == "output_order":
                claim["statement"] += (", and so is every tie of two samples' outputs the output-order certificate "
                                       "rests on")
            flags.setdefault("global", None)
            flags.setdefault("spurious", None)
            if not flags.get("global") and remaining(deadline) > 0:
                from .secondorder.spurious import spurious_lower_point
                t5 = time.perf_counter()
                lower = spurious_lower_point(problem)
                timings["spurious_s"] = time.perf_counter() - t5
                if lower is not None:
                    flags["spurious"] = True
                    second_order["lower_point"] = lower
                    reason += (f"; spurious: a point with loss lower by {lower['decrease']:.3g} exists "
                               f"({lower['construction']}; verified)")
        elif so.verdict == "saddle":
            verdict, reason = Verdict.SADDLE, so.reason
            refutation = so.refutation
        else:
            verdict, reason = Verdict.INCONCLUSIVE, so.reason
    elif fo.direction is not None:
        verdict = Verdict.INCONCLUSIVE
        reason = _unverified_descent_reason(fo, refutation)
    else:
        verdict = Verdict.INCONCLUSIVE
        reason = fo.reason or "first-order test undecided"
    if prefer_nearby and fo.stationary is not True and _negligible(refutation, loss_value):
        # a polished point, stationary but for a descent too small to matter: look for a saddle's escape
        # (a verified second-order descent refutes minimality whatever first order says)
        so = decide_second_order(problem, fwd, kinks, fo_model, FirstOrder(True, "approximate"),
                                 time_limit=remaining(deadline), deadline=deadline)
        if so.verdict == "saddle" and (so.refutation or {}).get("verified"):
            small = (refutation or {}).get("decrease")
            verdict, refutation = Verdict.SADDLE, so.refutation
            reason = (so.reason + "; the point is stationary up to a descent of "
                      + (f"{small:.3g}" if small is not None else "a size float64 cannot verify") + " along L'")
            second_order = so.to_dict()
            flags["method"] = so.method
    nearby_cert = None
    if verdict == Verdict.INCONCLUSIVE and _nearby_worth_trying(fo, kinks, reason):
        t7 = time.perf_counter()
        nearby = _try_nearby(problem, deadline)
        timings["nearby_s"] = time.perf_counter() - t7
        if nearby is not None:
            claim, nearby_cert, nearby_reason, nearby_flags = nearby
            verdict = Verdict.LOCAL_MIN
            reason = nearby_reason + f" (the given point itself: {reason})"
            flags.update(nearby_flags)
            flags["method"] = "nearby"
            second_order = {"method": "nearby", "decided": True, "certificate": nearby_cert, "notes": []}
    first_order = fo.to_dict()
    kinks_info = kinks.summary()
    if structure is not None:
        from .exact.structure import exact_kinks_summary
        kinks_info = exact_kinks_summary(structure)
        t6 = time.perf_counter()
        verdict, reason, claim, refutation, exact_info = _exact_stage(
            problem, fo, fo_model, kinks, verdict, reason, claim, refutation, second_order, deadline)
        timings["exact_s"] = time.perf_counter() - t6
        if exact_info is not None:
            first_order["exact"] = exact_info
        if verdict != Verdict.LOCAL_MIN:
            for k in MIN_FLAGS:
                flags.pop(k, None)
    pruned = None
    if (verdict == Verdict.INCONCLUSIVE or _negligible(refutation, loss_value)) and remaining(deadline) > 0:
        units = prunable(net)
        if units:
            t8 = time.perf_counter()
            lifted, pruned = _pruned_stage(problem, fwd, kinks, units, tol, deadline, time_limit, prefer_nearby)
            timings["pruned_s"] = time.perf_counter() - t8
            if lifted is not None:
                verdict, refutation, reason, method = lifted
                claim, second_order = None, None
                flags["method"] = method
                for k in MIN_FLAGS:
                    flags.pop(k, None)
            elif pruned is not None:
                reason += "; " + pruned["summary"]
    if no_minimum_below or verdict in (Verdict.LOCAL_MIN, Verdict.INCONCLUSIVE) or _negligible(refutation, loss_value):
        # cross-entropy / logistic without weight decay: no minimum while every sample is classified
        # correctly, however small the gradient (the outputs can always be scaled up)
        from .refute import output_scaling
        scaling = output_scaling(problem)
        if scaling is not None:
            verdict, refutation, claim, second_order = Verdict.NOT_STATIONARY, scaling, None, None
            reason = _output_scaling_reason(problem, scaling)
            for k in MIN_FLAGS + ("claim",):
                flags.pop(k, None)
            flags["method"] = "output_scaling"
    if claim is not None:
        flags["claim"] = claim["level"]
    timings["total_s"] = time.perf_counter() - t0
    return Report(verdict=verdict, reason=reason, flags=flags, problem=info, kinks=kinks_info,
                  first_order=first_order, second_order=second_order, refutation=refutation,
                  solver_calls=fo.solver_calls, timings=timings, version=__version__, claim=claim,
                  pruned=pruned if verdict != Verdict.LOCAL_MIN else None)


def _pruned_stage(problem: Problem, fwd, kinks, units: list, tol, deadline: float, time_limit: float,
                  prefer_nearby: bool):
    """Check the network without its all-zero hidden units (:mod:`certify.prune`): ``(lifted, pruned)``.

    ``lifted``: ``(verdict, refutation, reason, method)`` when the pruned network is refuted by a descent
    that leaves rounding distance, lifted to the network (zeros at the zero units) and re-verified here
    as :func:`certify.verify` will: the network's loss at the stored step, the local-descent test and,
    for ``not_stationary``, the directional derivative, on the report's forward pass and kinks (``fwd``,
    ``kinks``: what :func:`certify.verify` rebuilds from the report's kink tolerance); else None.
    ``pruned``: when the pruned network is a certified local minimum, what the report keeps of it (its
    report, re-checked by :func:`certify.verify` on the pruned network it rebuilds) and a sentence for
    the reason; the verdict about the network stays as it was (a zero unit may regrow). Else None.
    """
    from .evaluate import verified_decrease
    from .prune import embed, prune
    from .refute import local_descent
    sub = prune(problem, units)
    rep = check_problem(sub, tol=tol, deadline=deadline, time_limit=time_limit, prefer_nearby=prefer_nearby)
    net = problem.network
    widths = list(sub.network.widths)
    who = f"its {len(units)} all-zero unit(s) ({', '.join(f'layer {l} unit {j}' for l, j in units[:6])}" + (
        ", ..." if len(units) > 6 else "") + ")"
    ref = rep.refutation or {}
    if (rep.verdict in (Verdict.SADDLE, Verdict.NOT_STATIONARY) and ref.get("verified") and ref.get("kind") !=
            "output_scaling" and not ref.get("exact_point") and ref.get("direction") is not None
            and ref.get("step") is not None and not _negligible(ref, rep.problem["loss_value"])):
        d = embed(net, units, ref["direction"])
        e = embed(net, units, ref["curvature_direction"]) if ref.get("curvature_direction") is not None else None
        t = float(ref["step"])
        theta = problem.theta
        dec = verified_decrease(problem, theta, theta + t * d + (0.0 if e is None else 0.5 * t * t * e))
        local, _ = local_descent(problem, fwd, kinks, d, e)
        if rep.verdict == Verdict.NOT_STATIONARY:
            from .checks import close
            from .tangent import directional_derivative
            slope = directional_derivative(problem, fwd, kinks, d)
            local = local and slope < 0 and close(slope, ref["directional_derivative"], max(abs(slope), 1e-12))
        if dec.verified and local:
            lifted = dict(ref, direction=d, curvature_direction=e, loss_before=dec.before, loss_after=dec.after,
                          decrease=dec.decrease, error_bound=dec.error_bound, method=dec.method)
            if e is None:
                lifted.pop("curvature_direction")
            reason = (f"along directions that keep {who} at 0 (the loss is exactly that of the network without "
                      f"them, widths {widths}): {rep.reason}")
            return (rep.verdict, lifted, reason, f"pruned/{(rep.flags or {}).get('method')}"), None
        log.info("pruned network refuted, but the lifted descent did not re-verify (decrease verified: %s, "
                 "local descent: %s)", dec.verified, local)
        return None, None
    if rep.verdict != Verdict.LOCAL_MIN:
        return None, None
    summary = (f"without {who} the network (widths {widths}) is a certified local minimum: {rep.reason}; whether "
               f"a zero unit can regrow is not decided (at second order it cannot iff max over directions u of "
               f"||Psi(u)|| <= lambda, a bound over the whole sphere of its inputs that certify does not compute"
               + ("; with one hidden layer, that bound at this stationary point would make it a global minimum "
                  "over networks of every width" if problem.network.n_layers == 2 else "") + ")")
    return None, {"units": [[int(l), int(j)] for l, j in units], "widths": widths, "verdict": rep.verdict.value,
                  "summary": summary, "report": rep.to_dict()}


def _output_scaling_reason(problem: Problem, scaling: dict) -> str:
    return (f"every sample is classified correctly and there is no weight decay, so scaling the last "
            f"layer scales the outputs and lowers every sample's {problem.loss.name} loss: "
            f"L'(theta; d) = {scaling['directional_derivative']:.3g} < 0, the loss drops by "
            f"{scaling['decrease']:.3g} at twice the outputs (verified, {scaling['method']}); the "
            f"infimum 0 is not attained, so no local minimum exists here")


def _exact_structure(problem: Problem, fwd, float_kinks):
    """The exact structure when exact arithmetic fits (rational loss, small problem), else None."""
    if not problem.loss.rational:
        return None
    from . import exact
    if not exact.fits(problem, float_kinks):
        return None
    from .exact.structure import exact_structure
    return exact_structure(problem, fwd)


def _negligible(refutation, loss_value: float) -> bool:
    """No verified descent, or one whose decrease is below 1e-9 of the loss (a polished point's residue)."""
    if not refutation or not refutation.get("verified"):
        return True
    return float(refutation.get("decrease") or 0.0) <= 1e-9 * max(abs(loss_value), 1e-300)


def _nearby_worth_trying(fo, kinks, reason: str) -> bool:
    """An undecided point that may sit next to an exact minimum: a float64 descent that could not be
    verified (the point is within rounding of stationarity, or a kink is very close), or kinks snapped
    beyond rounding by the user's tolerance."""
    return (fo.stationary is False and fo.direction is not None) or kinks.n_near > 0 or "snapped" in reason


def _try_nearby(problem: Problem, deadline):
    """Claim (2) by Newton–Kantorovich (:mod:`certify.nearby`): ``(claim, cert, reason, flags)`` or None."""
    from .nearby import DENSE_P, prove_nearby
    if problem.n_params > DENSE_P or remaining(deadline) <= 0:
        return None
    try:
        res = prove_nearby(problem, deadline=deadline)
    except OutOfTime:
        return None
    if not res.proved:
        log.info("nearby proof failed: %s", res.reason)
        return None
    cert = res.certificate
    dims = cert["dimensions"]
    claim = {"level": "nearby", "about": "an exact local minimum theta* near the given point", "method": "kantorovich",
             "radius": cert["radius"], "relative_radius": cert["radius_relative"],
             "statement": ("an exact local minimum theta* (strict modulo the symmetries) exists with ||theta* - theta|| "
                           "<= radius: Newton-Kantorovich on the KKT system of the held kinks with rigorous rounding "
                           "bounds, the second-order conditions certified on the whole ball"),
             "certificate": cert}
    flags = {"strict": cert["strict"], "flat_directions": (dims["dead_units"] + dims["translations"]) > 0,
             "claim": "nearby"}
    return claim, cert, res.reason, flags


#: relative tolerances at which a polished point's near kinks are held for an exact construction
#: (:func:`_try_snap_near`): a polished float point sits 1e-18 to 1e-12 (relative) off its kinks
SNAP_TOLS = (1e-12, 1e-9)
#: share of the time left that the exact constructions near a polished point may use (:func:`_try_snap_near`)
SNAP_SHARE = 0.5
#: above this many parameters the exact construction is not tried for a polished point (rational
#: arithmetic on every sample; the exact engine's cost model decides below it)
EXACT_SNAP_P = 2000


def _try_snap_near(problem: Problem, fwd, kinks, deadline):
    """Claim (2) by construction for a polished point (:func:`_snap_nearby`), its near kinks held:
    ``(claim, cert, reason, flags)`` or None.

    Where the existence theorem does not apply (LIKQ fails: a vertex of a piecewise-linear loss, with
    more kinks and ties than free coordinates), the kinks the point sits next to -- at rounding, then
    at :data:`SNAP_TOLS` -- are held exactly by :mod:`certify.exact.snap`, and the exact first-order
    decision at the constructed rational ``theta*`` is what the claim rests on (holding a kink the
    minimum does not need only costs the claim if ``theta*`` then fails that decision)."""
    from .exact.budget import fits
    from .exact.linalg import within
    from .exact.snap import cell_applies, exact_context
    net = problem.network
    if net.n_layers != 2 or cell_applies(problem, net.weights[1][0]) or problem.n_params > EXACT_SNAP_P:
        return None
    if not fits(problem, kinks):        # (the exact engine's cost model: a construction costs one decision)
        return None
    # The cost model judged the kinks at rounding; the near kinks of SNAP_TOLS can be many more, and an
    # exact elimination's cost grows with the cube of their number (a 10-20-1 net polished on diabetes:
    # ~200 near kinks, still eliminating after 9 minutes of a 60 s budget). So the constructions run
    # under their own deadline, SNAP_SHARE of what is left, and stop there (no claim).
    share = SNAP_SHARE * remaining(deadline)
    stop = time.perf_counter() + share
    tried = set()
    snapped = near = tol = None
    try:
        with within(stop):
            context = exact_context(problem)       # (the same exact forward pass for every kink set)
            for tol in (None,) + SNAP_TOLS:
                if remaining(deadline) <= 0:
                    break
                near = kinks if tol is None else find_kinks(problem, fwd, tol)
                key = (tuple(zip(near.unit_sample.tolist(), near.unit_index.tolist())),
                       tuple(near.loss_sample.tolist()))
                if key in tried:
                    continue
                tried.add(key)
                if tol is not None:        # the near kinks count as held (the construction holds them exactly)
                    near = dataclasses.replace(near, unit_rounding=np.ones_like(near.unit_rounding),
                                               loss_rounding=np.ones_like(near.loss_rounding))
                snapped = _snap_nearby(problem, near, affine=tol is None, context=context)
                if snapped is not None:
                    break
    except OutOfTime:
        log.info("exact construction near the polished point: stopped at its share of the budget (%.3g s), "
                 "no claim", share)
        return None
    if snapped is not None:
        claim, note = snapped
        reason = (f"an exact local minimum lies within {claim['radius']:.3g} of the given point ({note}, "
                  f"its {near.n_total} kink(s) and tie(s) within {'rounding' if tol is None else f'{tol:g} (relative)'} "
                  f"held exactly)")
        cert = {"kind": "rational_snap", "method": claim["method"], "radius": claim["radius"],
                "tolerance": tol}
        return claim, cert, reason, {"claim": "nearby", "strict": False}
    return None


def _nearby_report(problem: Problem, fwd, kinks, nearby, t0: float, time_limit: float) -> Report:
    """The report of a point proved to sit next to an exact local minimum (nothing else was run)."""
    claim, cert, reason, flags = nearby
    loss_value = problem.value()
    flags = dict(flags, differentiable=kinks.n_total == 0, at_kink=kinks.n_total > 0,
                 approximate=True, method="nearby", global_=None)
    flags.pop("global_")
    flags.setdefault("global", None)
    timings = {"total_s": time.perf_counter() - t0}
    return Report(verdict=Verdict.LOCAL_MIN, reason=reason, flags=flags, problem=_problem_info(problem, loss_value),
                  kinks=kinks.summary(), first_order={"method": "nearby", "stationary": None,
                                                      "note": "the claim is about a nearby exact point"},
                  second_order={"method": "nearby", "decided": True, "certificate": cert, "notes": []},
                  refutation=None, solver_calls=[], timings=timings, version=__version__, claim=claim)


def _approx(exact_text, fallback) -> str:
    """A short float rendering of an exact ``"p/q"`` string (the report keeps the string)."""
    from fractions import Fraction
    try:
        return f"{float(Fraction(exact_text)):.3g}"
    except (TypeError, ValueError, ZeroDivisionError):
        return f"{fallback:.3g}" if isinstance(fallback, (int, float)) else str(fallback)


def _snap_nearby(problem, kinks, *, affine: bool = True, context=None):
    """Claim (2) by construction (:mod:`certify.exact.snap`): ``(claim, note)`` or None. ``kinks`` is
    the float structure (the zeros up to rounding the construction holds exactly); ``affine``: try
    the affine-cell construction too (it holds no kinks); ``context``: the point's exact forward pass
    (:func:`certify.exact.snap.exact_context`) when the caller already has it."""
    from .exact import exact_first_order_decision
    from .exact.snap import snap_affine, snap_cell
    theorem = {"affine_last_layer": "affine cell: the network is affine near theta* at the best affine fit",
               "cell_u": "one hidden layer, scalar output, convex loss: d-stationarity is a local minimum "
                         "(REFERENCES A4.5)"}
    for snap in ([snap_affine] if affine else []) + [lambda pr: snap_cell(pr, kinks, context=context)]:
        res = snap(problem)
        if not res.ok:
            continue
        at = exact_first_order_decision(problem, theta=res.theta_star.to_fractions().tolist(), refute=False)
        if at.status != "stationary":
            continue
        norm = float(np.linalg.norm(problem.theta))
        claim = {"level": "nearby", "about": "an exact local minimum theta* near the given point",
                 "method": f"rational_snap:{res.method}", "radius": res.radius,
                 "relative_radius": res.radius / norm if norm > 0 else None,
                 "statement": (f"theta* (exact rationals, stored) is a local minimum: {theorem[res.method]}; its "
                               f"first order closes exactly; ||theta* - theta|| <= radius"),
                 "theta_star": res.theta_star.to_strings(), "theta_star_first_order": at.certificate}
        return claim, f"{theorem[res.method].split(':')[0]}, constructed in exact rationals"
    return None


def _exact_stage(problem, fo, fo_model, kinks, verdict, reason, claim, refutation, second_order, deadline):
    """Re-decide first order in exact arithmetic where the verdict rests on it (claim (1), "exact").

    * a float ``local_min``: exact multipliers make the claim exact; an exact descent makes the point
      ``not_stationary`` (float64 could not see it); neither -> ``inconclusive``;
    * a float ``saddle``: the curve stands (its decrease is verified); if the point is exactly not
      stationary the verdict says so, with the exact descent;
    * an unverified float descent: an exact step may verify it.
    Returns ``(verdict, reason, claim, refutation, exact_info)``.
    """
    from .exact import exact_first_order_decision
    v = verdict.value
    undecided_descent = v == "inconclusive" and fo.stationary is False
    if v not in ("local_min", "saddle") and not undecided_descent:
        return verdict, reason, claim, refutation, None
    guesses = None
    cert = (second_order or {}).get("certificate") or {}
    if cert.get("kind") == "piece_kkt":
        guesses = cert.get("pieces")
    ed = exact_first_order_decision(problem, fo, model=fo_model, kinks=kinks, piece_guesses=guesses,
                                    limit=max(0.5, min(30.0, remaining(deadline))))
    info = ed.to_dict()
    if ed.status == "stationary":
        if v == "local_min" and cert.get("kind") == "output_order" and not cert.get("exact"):
            # the output-order certificate also rests on ties of outputs, which only held up to rounding
            reason += " (first order exact in rational arithmetic; the outputs' ties only up to rounding)"
        elif v == "local_min":
            claim = {"level": "exact", "about": "the given point",
                     "statement": ("theta is a local minimum: every kink is an exact zero and the first-order "
                                   "certificate closes exactly in rational arithmetic; the second-order margin "
                                   "exceeds the rounding error of its float64 computation"),
                     "first_order_certificate": ed.kind}
            if cert.get("kind") == "output_order":
                claim["statement"] += "; the ties of outputs the output-order certificate rests on are exact too"
            reason += " (first order exact in rational arithmetic)"
        return verdict, reason, claim, refutation, info
    if v == "local_min" and ed.status in ("not_stationary", "undecided"):
        from .exact.linalg import within
        try:
            with within(deadline):
                snapped = _snap_nearby(problem, kinks)
        except OutOfTime:
            snapped = None
        if snapped is None:
            nearby = _try_nearby(problem, deadline)
            if nearby is not None:
                claim, cert, nearby_reason, _ = nearby
                second_order["nearby_certificate"] = cert
                return verdict, nearby_reason + " (the given float64 point itself is not exactly stationary)", \
                    claim, refutation, info
        if snapped is not None:
            claim, note = snapped
            reason = (f"an exact local minimum lies within {claim['radius']:.3g} of the given point "
                      f"({note}); the given float64 point itself is "
                      + ("exactly not stationary" if ed.status == "not_stationary" else "not exactly decided")
                      + f" -- {reason}")
            return verdict, reason, claim, refutation, info
    if ed.status == "not_stationary" and v == "saddle":
        # the saddle's verified escape stands (a larger decrease); say that the point is not even stationary
        reason += (f"; exactly, the float64 point is not even stationary (L'(theta; d) = "
                   f"{float(ed.directional_derivative):.3g} < 0 in rational arithmetic)")
        return verdict, reason, claim, refutation, info
    if ed.status == "not_stationary":
        ref = ed.refutation or {}
        if ref.get("verified"):
            why = {"local_min": "the float64 certificate is only up to rounding", "saddle": "",
                   "inconclusive": ""}[v]
            reason = (f"exactly not stationary: L'(theta; d) = {float(ed.directional_derivative):.3g} < 0 in exact "
                      f"rational arithmetic, and the loss drops by {_approx(ref.get('decrease_exact'), ref.get('decrease'))} "
                      f"at step {_approx(ref.get('step_exact'), ref.get('step'))} (exact; the report keeps the exact "
                      f"rationals)" + (f"; {why}" if why else ""))
            return Verdict.NOT_STATIONARY, reason, None, ref, info
        if v == "local_min":
            return (Verdict.INCONCLUSIVE, f"exactly not stationary (L'(theta; d) = {float(ed.directional_derivative):.3g} < 0 "
                    f"in exact arithmetic) but no decrease was found at a rational step; the float64 certificate is "
                    f"only up to rounding", None, refutation, info)
        return verdict, reason, claim, refutation, info
    if v == "local_min" and ed.limited:
        # exact arithmetic ran into a size limit (no evidence either way): as for a large problem, the claim
        # is the float64 one, up to rounding
        reason += f" (exact arithmetic stopped at a size limit: {ed.reason})"
        return verdict, reason, claim, refutation, info
    if v == "local_min":
        return (Verdict.INCONCLUSIVE, f"the float64 certificate holds up to rounding, but exact arithmetic could "
                f"not confirm first order: {ed.reason}", None, refutation, info)
    return verdict, reason, claim, refutation, info



def _claim_up_to_rounding(kinks, fo) -> dict:
    """What a float64 certificate proves: about the given point, every zero up to its rounding bound."""
    return {"level": "up_to_rounding", "about": "the given point",
            "statement": ("theta is a local minimum, with every kink and the first-order residual zero to within "
                          "the rigorous rounding-error bound of its float64 computation"),
            "kinks_within_rounding": kinks.n_total - kinks.n_near,
            "first_order_rounding_ratio": (fo.certificate or {}).get("rounding_ratio",
                                                                     (fo.certificate or {}).get("residual_ratio"))}


def _unverified_descent_reason(fo, refutation) -> str:
    note = (refutation or {}).get("note") or ""
    where = (f"a descent direction was found ({fo.method}, L'(theta; d) = {fo.min_value:.3g} beyond the rounding "
             f"bound) but no decrease of the loss could be verified along it")
    if "rounding" in note:
        return (where + ": the descent region is too small for float64 to show a decrease (a kink or the "
                "next piece is very close); polish the point (--polish) or try an exact re-check on a smaller "
                "problem")
    return where + (f" ({note})" if note else "")


def _problem_info(problem: Problem, loss_value: float) -> dict:
    net = problem.network
    return {"widths": list(net.widths), "activation": net.activation.spec, "loss": problem.loss.name,
            "weight_decay": problem.weight_decay, "n_samples": problem.n_samples, "n_params": net.n_params,
            "loss_value": loss_value,
            "fingerprint": problem.fingerprints()}
