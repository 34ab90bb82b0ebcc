"""Cell convexity, one hidden layer (REFERENCES.md A4.5 items 1–2): first order decides.

One hidden layer, scalar output, convex loss, no weight decay: with every output weight
``a_j != 0`` the map ``theta -> (u_j = a_j (w_j, b_j), c)`` is a submersion and the loss is convex
on each polyhedral piece in ``u``, so d-stationarity already proves a local minimum. A unit with
``a_j = 0`` is tested by its escape functions (:mod:`certify.secondorder.escape`): all
non-negative -> a local minimum; one negative -> the escape line is tried as a saddle refutation.

**With weight decay** ``lambda > 0`` (every parameter decayed, as certify's loss has it) the same
holds when every ``a_j != 0``. Write ``wbar_j = (w_j, b_j)``. Since ``lambda/2 (a^2 + |wbar|^2) >=
lambda |a| |wbar| = lambda ||u||``,

    L(theta') >= J(u(theta')),   J(u, c) = l(F(u, c)) + lambda sum_j ||u_j|| + lambda/2 c^2,

and ``J`` is convex on every piece (the gates of the kink samples are ``sign(u_j . xbar_i)`` near
theta, polyhedral cones in ``u``; ``F`` is linear in ``u`` there). At a d-stationary point each unit
is *balanced*, ``a_j^2 = |wbar_j|^2`` (the rescaling direction keeps every kink and the data loss, so
``L'`` along it and its opposite is ``+-lambda (|wbar_j|^2 - a_j^2)``, both ``>= 0``); then
``J(u(theta)) = L(theta)``, and ``lambda <u_j / ||u_j||, du_j> = lambda (a_j da_j + wbar_j . dwbar_j)``
for ``du_j = da_j wbar_j + a_j dwbar_j``, so ``J'(u; Du dtheta) = L'(theta; dtheta)`` for every
``dtheta``. ``Du`` is onto (every ``a_j != 0``), so ``J`` is d-stationary at ``u(theta)``, hence minimal
on every piece near it (convex), and ``L(theta') >= J(u(theta')) >= J(u(theta)) = L(theta)``: a local
minimum. (This is the convex group-lasso view of two-layer ReLU nets with weight decay, Pilanci &
Ergen 2020, used locally.) A unit with ``a_j = 0`` at a stationary point is *collapsed*
(``wbar_j = 0``); the theorem then does not apply: its escape quadratic ``a . Psi(v) + lambda/2
(|a|^2 + |v|^2)`` has curvature exactly 0 along splitting an active unit ``k`` (``v = wbar_k``:
stationarity in ``a_k`` gives ``||Psi(wbar_k)|| = lambda |a_k| = lambda |wbar_k|``), so deciding it
needs the global bound ``max_v ||Psi(v)|| <= lambda |v|``, which certify does not compute.
"""

from __future__ import annotations

import numpy as np

from ..checks import Check, check_first_order_certificate, check_multipliers, compare
from ..data import Problem
from ..kinks import KinkStructure
from ..network import ForwardPass
from .base import Context, SecondOrder
from .escape import escape_curve, escape_model

NAME = "cell_convexity"


def one_hidden_layer_applies(problem: Problem) -> str | None:
    """Why the cell-convexity theorem does not apply (None when it does)."""
    net = problem.network
    if net.n_layers != 2:
        return f"cell convexity needs one hidden layer (this network has {net.n_layers - 1})"
    if net.n_outputs != 1:
        return f"cell convexity needs a scalar output (this network has {net.n_outputs})"
    if problem.weight_decay and np.any(net.weights[1][0] == 0):
        return ("with weight decay, cell convexity needs every output weight nonzero (a collapsed unit's escape "
                "has curvature 0 along splitting an active unit; deciding it needs a global bound on its escape "
                "function)")
    return None


def one_hidden_layer_test(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, first,
                          *, time_limit: float = 60.0) -> SecondOrder | None:
    """A4.5 items 1–2: d-stationarity plus the escape test of zero-output units decides."""
    why = one_hidden_layer_applies(problem)
    if why:
        return SecondOrder(None, "cell_convexity", reason=why)
    from ..first_order import decide_one_level  # the same exact first-order machinery
    net = problem.network
    a = net.weights[1][0]
    zero_units = np.nonzero(a == 0)[0]
    if zero_units.size and kinks.n_loss:
        return SecondOrder(None, "cell_convexity", reason="a zero-output unit together with loss kinks: the "
                           "escape test needs separable first-order terms")
    imbalance = _imbalance(problem)
    if imbalance > BALANCE_GUARD:
        return SecondOrder(None, "cell_convexity", reason=(
            f"with weight decay the units must be balanced at a stationary point, but |a_j^2 - |wbar_j|^2| is "
            f"{imbalance:.3g} of their size: first order is not exact enough for the group-lasso bound"))
    conditions = {"hidden_layers": 1, "outputs": 1, "weight_decay": float(problem.weight_decay),
                  "activation": net.activation.spec,
                  "loss_convex": True, "nonzero_output_weights": int(a.size - zero_units.size),
                  "zero_output_units": [int(j) for j in zero_units]}
    escapes = []
    calls = []
    for j in zero_units:
        for s in (1, -1):
            one = escape_model(problem, fwd, kinks, int(j), s)
            res = decide_one_level(one, time_limit=time_limit, clarke=False)
            calls += res.solver_calls
            entry = {"unit": int(j), "sign": s, "stationary": res.stationary, "method": res.method,
                     "certificate": res.certificate}
            escapes.append(entry)
            if res.stationary:
                continue
            if res.direction is not None:
                curve = escape_curve(problem, fwd, kinks, int(j), s, res.direction)
                if curve["verified"]:
                    return SecondOrder("saddle", "escape_neuron", reason=(
                        f"unit {int(j)} has output weight 0 and its escape function psi (sign {s:+d}) takes "
                        f"the value {res.min_value:.3g} < 0; the loss drops by {curve['decrease']:.3g} along "
                        f"a_j = {s:+d} t, (w_j, b_j) += t v (verified)"),
                        flags={"strict": False}, certificate={"kind": "escape_neuron", "conditions": conditions,
                                                              "escapes": escapes},
                        refutation=curve, solver_calls=calls)
                return SecondOrder(None, "cell_convexity", reason=(
                    f"unit {int(j)} (output weight 0) has an escape direction, but no decrease of the loss could "
                    f"be verified along the escape line"), certificate={"escapes": escapes}, solver_calls=calls)
            return SecondOrder(None, "cell_convexity", reason=f"escape test of unit {int(j)} undecided: {res.reason}",
                               certificate={"escapes": escapes}, solver_calls=calls)
    fo_cert = first.certificate if first is not None else {}
    rechecked = fo_cert.get("kind") in ("multipliers", "gradient", "branch_and_bound")
    flags = {"strict": None, "flat": None}
    if kinks.n_total == 0:
        flags["classification"] = "genuine differentiable local minimum (inside its cell)"
    else:
        flags["classification"] = "local minimum at a kink (on the boundary of its cell)"
    reason = ("one hidden layer, scalar output, convex loss: the loss is convex on every piece in "
              "u_j = a_j (w_j, b_j), so d-stationarity proves a local minimum")
    if problem.weight_decay:
        reason = ("one hidden layer, scalar output, convex loss, weight decay with every output weight nonzero: "
                  "the loss is at least the group-lasso function J(u) = l(F(u)) + lambda sum ||u_j|| + lambda/2 c^2 "
                  "of u_j = a_j (w_j, b_j), convex on every piece and equal to L at the balanced stationary point, "
                  "where its directional derivatives are L's: d-stationarity proves a local minimum")
        conditions["balance"] = imbalance
    if zero_units.size:
        reason += f"; the {zero_units.size} zero-output unit(s) have no escape direction"
    if not rechecked:
        reason += " (first order attested by the MILP bound)"
    return SecondOrder("local_min", "cell_convexity", reason=reason, flags=flags,
                       certificate={"kind": "cell_convexity", "theorem": "REFERENCES.md A4.5 items 1-2",
                                    "conditions": conditions, "escapes": escapes,
                                    "first_order_rechecked": rechecked},
                       solver_calls=calls)


#: a unit's |a^2 - |wbar|^2| relative to a^2 + |wbar|^2 beyond this means first order is not exact (a guard:
#: exact stationarity makes it 0; the certificate's claim rests on first order, not on this number)
BALANCE_GUARD = 1e-6


def _imbalance(problem: Problem) -> float:
    """The largest relative imbalance ``|a_j^2 - |wbar_j|^2| / (a_j^2 + |wbar_j|^2)`` (0 without weight decay)."""
    if not problem.weight_decay:
        return 0.0
    net = problem.network
    a2 = net.weights[1][0] ** 2
    w2 = (net.weights[0] ** 2).sum(axis=1) + net.biases[0] ** 2
    return float(np.max(np.abs(a2 - w2) / np.maximum(a2 + w2, 1e-300), initial=0.0))


def applies(ctx: Context) -> str | None:
    return one_hidden_layer_applies(ctx.problem)


def run(ctx: Context) -> SecondOrder:
    return one_hidden_layer_test(ctx.problem, ctx.fwd, ctx.kinks, ctx.first, time_limit=ctx.budget())


def recheck(ctx: Context, cert: dict, checks: list) -> None:
    problem, fwd, kinks = ctx.problem, ctx.fwd, ctx.kinks
    why = one_hidden_layer_applies(problem)
    a = problem.network.weights[1][0] if problem.network.n_layers == 2 else np.zeros(0)
    zero = sorted(int(j) for j in np.nonzero(a == 0)[0])
    stored = sorted(cert.get("conditions", {}).get("zero_output_units", []))
    ok = why is None and zero == stored
    lam = float(problem.weight_decay)
    if ok and lam and _imbalance(problem) > BALANCE_GUARD:
        ok, why = False, f"weight decay with units out of balance by {_imbalance(problem):.3g}"
    checks.append(Check("cell_convexity_conditions", ok, why or f"one hidden layer, scalar output, weight decay {lam:g}"
                        f"{' (every output weight nonzero, units balanced)' if lam else ''}; zero output weights at "
                        f"units {zero} (report: {stored})"))
    if not ok:
        return
    done = {(e["unit"], e["sign"]) for e in cert.get("escapes", [])}
    for j in zero:
        for s in (1, -1):
            if (j, s) not in done:
                checks.append(Check(f"escape_unit_{j}_{s:+d}", False, "escape test missing from the certificate"))
    for e in cert.get("escapes", []):
        one = escape_model(problem, fwd, kinks, int(e["unit"]), int(e["sign"]))
        c = e.get("certificate") or {}
        name = f"escape_unit_{e['unit']}_{int(e['sign']):+d}"
        if c.get("kind") == "multipliers":
            check_multipliers(one, c, name, checks)
        elif c.get("kind") == "gradient" or one.n_generators == 0:
            res = compare(one.g, one.residual_bound(np.zeros(0), []))
            checks.append(Check(name, res.ok, f"linear escape function, coefficients zero up to rounding: {res.ok} "
                                f"(|coefficients|_inf = {res.inf:.3g})"))
        elif c.get("kind") == "branch_and_bound":
            check_first_order_certificate(one, c, name, checks)
        elif c.get("kind") == "milp_bound":
            checks.append(Check(name, True, "escape function >= 0 by the HiGHS MILP bound", attested=True))
        else:
            checks.append(Check(name, False, f"unknown escape certificate {c.get('kind')!r}"))
