"""Saturated samples: a sample whose loss is already 0 can be set aside (kinks with zero coefficient).

A trained minimum typically interpolates part of its data, and many of those samples sit on unit
kinks: their residual is 0, so the kink has a zero coefficient in ``L'`` and the piece tests
(:mod:`certify.secondorder.cone`, :mod:`certify.secondorder.pieces`) would have to visit both
sides of every one of them -- ``2^m`` pieces. Their structure makes that unnecessary:

**Lemma (saturation bound).** Every loss here is ``>= 0`` and ``square``, ``absolute``, ``hinge``
and ``multiclass_hinge`` attain 0. Let ``Z`` be samples with ``l(f(x_i; theta), y_i) = 0`` and
``R`` the others, ``L_R(theta') = (1/|R|) sum_{i in R} l(f(x_i; theta'), y_i)``. Without weight
decay, ``L(theta') = (|R|/n) L_R(theta') + (1/n) sum_{i in Z} l_i(theta') >= (|R|/n) L_R(theta')``
for every ``theta'``, with equality at ``theta``. Hence **if theta is a local minimum of L_R, it is a
local minimum of L** (and ``L(theta') >= L(theta)`` on the same neighbourhood).

So the samples of ``Z`` that sit on unit kinks are dropped, and the reduced problem -- which has
none of those kinks -- is decided by the whole chain of certificate kinds (first order, then
second order). Each sample's sign choice at its kinks changes only its own output, inside its own
loss term, which is ``>= 0``; hundreds of such kinks cost one reduced check, not ``2^m`` pieces.

It is a sufficient condition: if the reduced problem is not a minimum (the dropped samples' own
curvature was needed), nothing is concluded from the bound -- but a descent curve of the reduced
problem is tried on the full problem, and a *verified* decrease there is a sound refutation.

What "loss 0" means: with the default semantics a residual (or hinge / multiclass-hinge loss) counts
as 0 when it is within the rigorous bound on the rounding error of its float64 computation
(:mod:`certify.rounding`); on problems small enough the dropped samples' losses are also checked in
exact rational arithmetic, and the certificate says which.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..budget import OutOfTime, remaining
from ..checks import Check, check_first_order
from ..data import Dataset, Problem
from ..evaluate import EXACT_BUDGET
from ..kinks import KinkStructure, find_kinks
from ..network import ForwardPass
from ..rounding import U, forward_factors
from .base import Context, SecondOrder

NAME = "saturated"

#: losses with minimum 0 over f (the others, logistic and cross-entropy, only approach 0)
ZERO_MIN_LOSSES = ("square", "absolute", "hinge", "multiclass_hinge")


def zero_loss_samples(problem: Problem, fwd: ForwardPass) -> np.ndarray:
    """Samples whose loss is 0 up to the rounding-error bound of its float64 computation, ``(n,)`` bool.

    ``|fl(f) - f| <= 2 gamma_{N_L} S^L`` (the absolute forward pass, :mod:`certify.rounding`); one
    more subtraction (or comparison) adds ``u`` times the sizes involved. A residual within that
    bound cannot be told from 0 by float64; nothing larger counts.
    """
    loss = problem.loss
    n = problem.n_samples
    if loss.name not in ZERO_MIN_LOSSES:
        return np.zeros(n, dtype=bool)
    F, Y = fwd.output, problem.Y
    ef = forward_factors(problem.network)[-1] * fwd.scale[-1]          # (n, C)
    if loss.name in ("square", "absolute"):
        R = F - Y
        bound = 2.0 * (ef + 2 * U * (np.abs(F) + np.abs(Y)))
        return np.all(np.abs(R) <= bound, axis=1)
    if loss.name == "hinge":
        y = Y[:, 0]
        excess = 1.0 - y * F[:, 0]                                       # loss = max(0, excess)
        return excess <= 2.0 * (ef[:, 0] + 2 * U * (1.0 + np.abs(F[:, 0])))
    vals, _ = loss.pieces(F, Y)                                          # multiclass hinge
    rows = np.arange(n)
    err = ef + ef[rows, Y][:, None] + 4 * U * (np.abs(F) + np.abs(F[rows, Y])[:, None] + 1.0)
    return np.all(vals[:, 0, :] <= 2.0 * err, axis=1)


def exact_zero_losses(problem: Problem, samples) -> bool | None:
    """Whether the losses of ``samples`` are exactly 0 in rational arithmetic (None: too large a job)."""
    samples = [int(i) for i in samples]
    if not problem.loss.rational or len(samples) * problem.n_params > EXACT_BUDGET:
        return None
    net = problem.network
    s_pos, s_neg = (Fraction(s) for s in net.activation.slopes)
    layers = [([[Fraction(float(v)) for v in row] for row in W], [Fraction(float(v)) for v in b])
              for W, b in zip(net.weights, net.biases)]
    name = problem.loss.name
    for i in samples:
        x = [Fraction(float(v)) for v in problem.X[i]]
        for l, (W, b) in enumerate(layers, start=1):
            z = [sum((w * xv for w, xv in zip(row, x)), Fraction(0)) + bj for row, bj in zip(W, b)]
            x = z if l == len(layers) else [s_pos * v if v > 0 else s_neg * v for v in z]
        yi = problem.Y[i]
        if name in ("square", "absolute"):
            if any(fc != Fraction(float(yc)) for fc, yc in zip(x, yi)):
                return False
        elif name == "hinge":
            if 1 - Fraction(float(yi[0])) * x[0] > 0:
                return False
        else:
            c = int(yi)
            if max(x[j] + (0 if j == c else 1) for j in range(len(x))) - x[c] > 0:
                return False
    return True


def saturated_kink_samples(problem: Problem, fwd: ForwardPass, kinks: KinkStructure) -> np.ndarray:
    """Samples with loss 0 (up to rounding) that sit on at least one unit kink: the ones to drop."""
    zero = zero_loss_samples(problem, fwd)
    on_kink = np.zeros(problem.n_samples, dtype=bool)
    on_kink[kinks.unit_sample] = True
    return np.nonzero(zero & on_kink)[0]


def reduced_problem(problem: Problem, keep: np.ndarray) -> Problem:
    """The same network, loss and weight decay on the samples ``keep`` only."""
    y = np.asarray(problem.data.y)
    data = Dataset(problem.X[keep], y[keep])
    return Problem(problem.network, data, problem.loss, problem.weight_decay)


def reduced_context(ctx: Context, keep: np.ndarray, *, first: bool = True) -> Context:
    """Forward pass, kinks (same tolerance), tangent network and first-order decision of the reduced problem."""
    from ..first_order import decide_first_order
    from ..tangent import first_order_model
    sub = reduced_problem(ctx.problem, keep)
    fwd = sub.network.forward(sub.X, with_scale=True)
    kinks = find_kinks(sub, fwd, ctx.kinks.tol)
    fo = first_order_model(sub, fwd, kinks)
    out = Context(sub, fwd, kinks, fo, None, time_limit=ctx.time_limit, deadline=ctx.deadline)
    if first:
        out.first = decide_first_order(sub, fwd, kinks, fo, time_limit=max(1e-3, ctx.budget()))
    return out


# ---------------------------------------------------------------------------- the kind
def applies(ctx: Context) -> str | None:
    problem = ctx.problem
    if problem.loss.name not in ZERO_MIN_LOSSES:
        return f"the {problem.loss.name} loss is never 0 at a sample"
    if problem.weight_decay:
        return "the saturation bound is not used with weight decay"
    if not ctx.kinks.n_unit:
        return "no unit kink"
    drop = saturated_kink_samples(problem, ctx.fwd, ctx.kinks)
    if drop.size == 0:
        return "no sample with loss 0 sits on a unit kink"
    if drop.size == problem.n_samples:
        return "every sample has loss 0"
    return None


def run(ctx: Context) -> SecondOrder:
    from . import decide
    problem = ctx.problem
    drop = saturated_kink_samples(problem, ctx.fwd, ctx.kinks)
    keep = np.setdiff1d(np.arange(problem.n_samples), drop)
    n_kinks = int(np.isin(ctx.kinks.unit_sample, drop).sum())
    exact = exact_zero_losses(problem, drop)
    if exact is False:
        return SecondOrder(None, NAME, reason="a sample whose loss is 0 in float64 has a nonzero loss in exact "
                           "arithmetic: the saturation bound does not apply")
    what = (f"{drop.size} sample(s) with loss 0 on {n_kinks} unit kink(s) set aside (the loss is >= 0 there, so "
            f"L >= the loss of the other {keep.size} samples, with equality at theta)")
    try:
        sub = reduced_context(ctx, keep)
    except OutOfTime as exc:
        return SecondOrder(None, NAME, reason=f"{what}; the budget ran out during {exc.what}")
    fo_sub = sub.first
    if not fo_sub.stationary:
        return SecondOrder(None, NAME, reason=f"{what}; but the reduced problem is not d-stationary "
                           f"({fo_sub.method}): the bound does not decide")
    if remaining(ctx.deadline, 1.0) <= 0:
        return SecondOrder(None, NAME, reason=f"{what}; the budget ran out before the reduced problem's second order")
    res = decide(sub)
    inner = {"method": res.method, "first_order": fo_sub.to_dict(), "certificate": res.certificate}
    certificate = {"kind": NAME, "dropped_samples": [int(i) for i in drop], "kinks_dropped": n_kinks,
                   "losses_exactly_zero": exact, "kept_samples": int(keep.size), "reduced": inner}
    if res.verdict == "local_min":
        flags = {k: v for k, v in res.flags.items() if k in ("flat_directions",)}
        flags["strict"] = None   # the dropped samples may add curvature: strictness is not claimed
        return SecondOrder("local_min", NAME, reason=(
            f"{what}; the reduced problem is a local minimum ({res.method}: {res.reason})"),
            flags=flags, certificate=certificate, solver_calls=list(fo_sub.solver_calls) + list(res.solver_calls))
    if res.verdict == "saddle" and res.refutation is not None:
        curve = _transfer_curve(ctx, res.refutation)
        if curve is not None and curve.get("verified"):
            return SecondOrder("saddle", NAME, reason=(
                f"{what}; the reduced problem is a saddle ({res.method}) and its descent curve is a verified local "
                f"descent of the full loss too: it drops by {curve['decrease']:.3g}"),
                flags={"strict": False}, certificate=certificate, refutation=curve)
    if res.verdict != "local_min":
        try:
            curve, q = _constrained_escape(ctx, sub, drop)
        except OutOfTime:
            curve, q = None, None
        if curve is not None and curve.get("verified"):
            return SecondOrder("saddle", NAME, reason=(
                f"{what}; on the directions that keep the set-aside samples' outputs and kinks fixed to first "
                f"order (where they add nothing up to fourth order) the reduced Lagrangian curvature is {q:.3g} < 0, "
                f"and the loss drops by {curve['decrease']:.3g} along the curve (verified on the full problem)"),
                flags={"strict": False}, certificate=certificate, refutation=curve)
    return SecondOrder(None, NAME, reason=f"{what}; the reduced problem is not proved a minimum ({res.reason})",
                       certificate=certificate)


def _transfer_curve(ctx: Context, ref: dict) -> dict | None:
    """The reduced problem's descent curve, re-checked on the full problem (a verified decrease or nothing)."""
    from ..refute import search_curve
    d = ref.get("direction")
    if d is None:
        return None
    d = np.asarray(d, dtype=np.float64)
    e = ref.get("curvature_direction")
    e = None if e is None else np.asarray(e, dtype=np.float64)
    curve = search_curve(ctx.problem, ctx.fwd, ctx.kinks, d, e)
    if not curve["verified"] and e is not None:
        curve = search_curve(ctx.problem, ctx.fwd, ctx.kinks, d, None)
    return curve


def _constrained_escape(ctx: Context, sub: Context, drop: np.ndarray):
    """A second-order descent curve of the full problem from the reduced one's Lagrangian.

    Restricted to ``V_Z = {d : a_k . d = 0 for the set-aside samples' kinks, J_i d = 0 for their
    outputs}``, a set-aside sample's output moves by ``O(t^2)`` along ``theta + t d + t^2/2 e`` and its
    loss (0 at theta, with zero gradient) by ``O(t^4)``: the full loss and the reduced one agree to
    second order. So negative reduced curvature on ``V_Z`` (critical cone of the reduced problem, faces
    by :func:`certify.secondorder.cone.cone_curvature`) gives a candidate curve; ``e`` keeps every held
    switching function (reduced and set-aside) at 0 to second order; the decrease is verified on the
    full loss (nothing is claimed otherwise). Dense: ``p <= DENSE_P``. Returns ``(curve, q)``.
    """
    from ..refute import search_curve
    from ..tangent import blocked_slopes, piece_slopes, second_tangent, switching_rows
    from .base import DENSE_P
    from .cone import cone_curvature, cone_model
    problem, fwd, kinks = ctx.problem, ctx.fwd, ctx.kinks
    p = problem.n_params
    if p > DENSE_P:
        return None, None
    cert = sub.first.certificate if sub.first is not None else {}
    if sub.kinks.n_total == 0:
        D_sub = piece_slopes(sub.problem, sub.fwd)
        model = {"D": D_sub, "inject": [np.zeros_like(d) for d in D_sub],
                 "loss_grad": sub.problem.loss.gradient(sub.fwd.output, sub.problem.Y),
                 "E": np.zeros((0, p)), "E_desc": [], "F": np.zeros((0, p)), "F_desc": [], "F_mult": [], "inert": []}
    elif cert.get("kind") == "multipliers":
        model = cone_model(sub.problem, sub.fwd, sub.kinks, sub.fo, np.asarray(cert["lambda"], dtype=np.float64),
                           [np.asarray(x, dtype=np.float64) for x in cert.get("pi", [])])
        if isinstance(model, str) or model["inert"]:
            return None, None
    else:
        return None, None
    keep = np.setdiff1d(np.arange(problem.n_samples), drop)
    Db = blocked_slopes(problem, fwd, kinks)
    net = problem.network
    rows, descs = [], []
    for k in np.nonzero(np.isin(kinks.unit_sample, drop))[0]:
        l, i, u = int(kinks.unit_layer[k]), int(kinks.unit_sample[k]), int(kinks.unit_index[k])
        R, _ = switching_rows(problem, fwd, Db, kinks, np.array([i]), l, np.array([u]))
        rows.append(R.toarray().ravel())
        descs.append(("unit", l, i, u))
    for i in drop:
        for c in range(net.n_outputs):
            R, _ = switching_rows(problem, fwd, Db, kinks, np.array([int(i)]), net.n_layers, np.array([c]))
            rows.append(R.toarray().ravel())
            descs.append(("output", int(i), c))
    model = dict(model, E=np.vstack([model["E"]] + [np.array(rows).reshape(-1, p)]))
    res = cone_curvature(sub.problem, sub.fwd, model, deadline=ctx.deadline)
    # any negative value is worth a try: the decrease is verified on the loss, the tolerance only
    # matters for claims of positivity
    if "error" in res or res["direction"] is None or not res["q"] < 0:
        return None, None
    d = res["direction"]
    d = d / max(float(np.abs(d).max()), 1e-300)
    # the piece of the full problem: the reduced piece on the kept samples, any side at the set-aside kinks
    from .cone import piece_of
    D_red, Fp, F_desc = piece_of(model, res["piece"] or [], net.activation.slopes)
    D_full = [np.array(x, dtype=np.float64) for x in piece_slopes(problem, fwd)]
    for l in range(len(D_full)):
        D_full[l][keep] = D_red[l]
    ddz = second_tangent(problem, fwd, D_full, d)
    held = list(model["E_desc"]) + [F_desc[x] for x in (res["face"] or [])]
    A_rows = [model["E"][:len(model["E_desc"])]] + ([Fp[res["face"]]] if res["face"] else [])
    rhs = []
    for desc in held:
        if desc[0] == "unit":
            _, l, i, u = desc
            rhs.append(-ddz[l - 1][int(keep[i]), u])
        else:
            _, i, w = desc
            rhs.append(-float(w @ ddz[-1][int(keep[i])]))
    for desc in descs:
        rhs.append(-ddz[desc[1] - 1][desc[2], desc[3]] if desc[0] == "unit" else -ddz[-1][desc[1], desc[2]])
    A = np.vstack(A_rows + [np.array(rows).reshape(-1, p)])
    e = np.linalg.lstsq(A, np.array(rhs), rcond=None)[0] if len(rhs) else np.zeros(p)
    curve = search_curve(problem, fwd, kinks, d, e)
    if not curve["verified"]:
        curve = search_curve(problem, fwd, kinks, d, None)
    curve["curvature"] = res["q"]
    return curve, res["q"]


def recheck(ctx: Context, cert: dict, checks: list) -> None:
    """Dropped samples: loss 0 (up to rounding, exactly where stated) and on unit kinks; then the reduced
    problem's first-order and second-order certificates through their own re-checks."""
    from . import RECHECK
    problem = ctx.problem
    drop = np.asarray(cert.get("dropped_samples", []), dtype=np.int64)
    if problem.weight_decay or drop.size == 0 or drop.min(initial=0) < 0 or drop.max(initial=0) >= problem.n_samples:
        checks.append(Check("saturated_samples", False, "no valid set of dropped samples (or weight decay)"))
        return
    zero = zero_loss_samples(problem, ctx.fwd)
    ok = bool(np.all(zero[drop]))
    checks.append(Check("saturated_samples", ok, f"the {drop.size} dropped sample(s) have loss 0 up to rounding: {ok}"))
    if cert.get("losses_exactly_zero"):
        exact = exact_zero_losses(problem, drop)
        checks.append(Check("saturated_exact", exact is True, f"their losses are exactly 0 in rational arithmetic: {exact}"))
    if not ok:
        return
    keep = np.setdiff1d(np.arange(problem.n_samples), drop)
    sub = reduced_context(ctx, keep, first=False)
    inner = cert.get("reduced") or {}
    fo_cert = (inner.get("first_order") or {}).get("certificate") or {}
    _recheck_first_order(sub, fo_cert, checks)
    so_cert = inner.get("certificate") or {}
    module = RECHECK.get(so_cert.get("kind"))
    if module is None:
        checks.append(Check("saturated_reduced", False, f"unknown reduced certificate {so_cert.get('kind')!r}"))
        return
    if so_cert.get("kind") in ("critical_cone", "copositivity"):
        module.recheck(sub, so_cert, checks, fo_cert=fo_cert)
    else:
        module.recheck(sub, so_cert, checks)


def _recheck_first_order(sub: Context, cert: dict, checks: list) -> None:
    """The reduced problem's first-order certificate, checked as :mod:`certify.verify` checks the full one's."""
    check_first_order(sub.fo, cert, "reduced_first_order", checks)
