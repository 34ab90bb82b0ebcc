"""Claim (2) as a certificate kind: an exact local minimum lies within a proven radius.

The proof itself is :mod:`certify.nearby` (Newton–Kantorovich on the KKT system of the held kinks,
with rigorous rounding bounds); this module adapts it to the chain of :mod:`certify.secondorder`.
It applies at one level of held kinks (or none) up to the dense limit, whatever the first-order
stage concluded about ``theta0`` itself: the claim is about a nearby exact point ``theta*``, not
about ``theta0``. The held structure is the context's :class:`~certify.kinks.KinkStructure` (the
user's tolerance decides which near-zero values are held; no larger tolerance is tried here).

Not in :data:`certify.secondorder.KINDS` yet: the driver decides where claim (2) enters.
"""

from __future__ import annotations

from ..budget import OutOfTime
from ..nearby import DENSE_P, held_from_kinks, prove_nearby, scope_reason
from ..nearby import recheck as nearby_recheck
from .base import Context, SecondOrder

NAME = "nearby"


def applies(ctx: Context) -> str | None:
    if ctx.problem.n_params > DENSE_P:
        return f"p = {ctx.problem.n_params} is above the dense limit ({DENSE_P})"
    held_units, held_loss, counts = held_from_kinks(ctx.problem, ctx.kinks)
    return scope_reason(ctx.problem, held_units, held_loss, counts)


def run(ctx: Context) -> SecondOrder:
    res = prove_nearby(ctx.problem, ctx.kinks, deadline=ctx.deadline)
    if res.out_of_time:
        raise OutOfTime("the nearby proof")
    if not res.proved:
        return SecondOrder(None, NAME, reason=f"no nearby proof: {res.reason}")
    cert = res.certificate
    dims = cert["dimensions"]
    flat = dims["dead_units"] + dims["translations"]
    flags = {"claim": "nearby", "strict": cert["strict"], "flat_directions": flat > 0,
             "differentiable": dims["held"] == 0, "at_kink": dims["held"] > 0,
             "nearby_radius": cert["radius"], "nearby_radius_relative": cert["radius_relative"]}
    return SecondOrder("local_min", NAME, reason=res.reason, flags=flags, certificate=cert)


def recheck(ctx: Context, cert: dict, checks: list) -> None:
    checks.extend(nearby_recheck(ctx.problem, cert))
