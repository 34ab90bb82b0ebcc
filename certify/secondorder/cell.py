"""Cell convexity, one hidden layer (REFERENCES.md A4.5 items 1–2): first order decides.

One hidden layer, scalar output, convex loss, no weight decay: with every output weight
``a_j != 0`` the map ``theta -> (u_j = a_j (w_j, b_j), c)`` is a submersion and the loss is convex
on each polyhedral piece in ``u``, so d-stationarity already proves a local minimum. A unit with
``a_j = 0`` is tested by its escape functions (:mod:`certify.secondorder.escape`): all
non-negative -> a local minimum; one negative -> the escape line is tried as a saddle refutation.
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
    if problem.weight_decay:
        return "cell convexity does not hold with weight decay"
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
    conditions = {"hidden_layers": 1, "outputs": 1, "weight_decay": 0.0, "activation": net.activation.spec,
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
    if zero_units.size:
        reason += f"; the {zero_units.size} zero-output unit(s) have no escape direction"
    if not rechecked:
        reason += " (first order attested by the MILP bound)"
    return SecondOrder("local_min", "cell_convexity", reason=reason, flags=flags,
                       certificate={"kind": "cell_convexity", "theorem": "REFERENCES.md A4.5 items 1-2",
                                    "conditions": conditions, "escapes": escapes,
                                    "first_order_rechecked": rechecked},
                       solver_calls=calls)


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
    checks.append(Check("cell_convexity_conditions", ok, why or f"one hidden layer, scalar output, no weight decay; "
                        f"zero output weights at units {zero} (report: {stored})"))
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
