"""Zero loss: every loss here is >= 0, so a point where the training loss is exactly 0 is a
global minimum (checked in exact rational arithmetic, so a value that is 0 only up to rounding
does not count)."""

from __future__ import annotations

from ..checks import Check
from ..evaluate import EXACT_BUDGET, exact_loss
from .base import Context, SecondOrder

NAME = "zero_loss"


def applies(ctx: Context) -> str | None:
    problem = ctx.problem
    if not problem.loss.attains_zero:
        return f"the {problem.loss.name} loss is never 0"
    if problem.value() != 0.0:
        return "the loss is not 0"
    if not problem.loss.rational or problem.n_samples * problem.n_params > EXACT_BUDGET:
        return "the loss is 0 in float64, but too large a problem to confirm it in exact arithmetic"
    return None


def run(ctx: Context) -> SecondOrder:
    problem = ctx.problem
    if exact_loss(problem, problem.theta) != 0:
        return SecondOrder(None, NAME, reason="the loss is 0 in float64 but not in exact arithmetic")
    return SecondOrder("local_min", NAME, reason="the loss is exactly 0 (exact rational arithmetic) "
                       "and every loss is >= 0: a global minimum",
                       flags={"global": True, "spurious": False},
                       certificate={"kind": "zero_loss", "loss_exact": "0"})


def recheck(ctx: Context, cert: dict, checks: list) -> None:
    problem = ctx.problem
    ok = problem.loss.rational and exact_loss(problem, problem.theta) == 0
    checks.append(Check("zero_loss", ok, "L = 0 exactly" if ok else "L is not exactly 0"))
