"""Zero loss: every loss here is >= 0, so a point where the training loss is exactly 0 is a
global minimum, whatever the loss and the size of the network.

The zero is proved, not read off float64:

* hinge and multiclass hinge: each term is 0 exactly when its margin clears 1 (``y f >= 1``;
  ``f_y >= f_j + 1`` for every ``j != y``). A margin that clears 1 by more than the rounding-error bound
  of the output (:mod:`certify.rounding`) is proved in float64; the few samples within that bound are
  recomputed in exact rational arithmetic (one forward pass of that sample, O(p) each);
* square and absolute: every residual must be exactly 0 -- exact rational arithmetic over all samples,
  within the exact budget.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..checks import Check
from ..evaluate import EXACT_BUDGET, exact_loss
from ..rounding import forward_factors
from .base import Context, SecondOrder

NAME = "zero_loss"
#: samples whose margin is within rounding of 1 are recomputed exactly, up to this many parameter-samples
EXACT_SAMPLE_BUDGET = 2_000_000


def applies(ctx: Context) -> str | None:
    problem = ctx.problem
    if not problem.loss.attains_zero:
        return f"the {problem.loss.name} loss is never 0"
    if problem.weight_decay:
        return "with weight decay the objective is 0 only at theta = 0"
    if problem.value() != 0.0:
        return "the loss is not 0"
    return None


def run(ctx: Context) -> SecondOrder:
    ok, how = prove_zero(ctx)
    if not ok:
        return SecondOrder(None, NAME, reason=f"the loss is 0 in float64 but that could not be proved: {how}")
    return SecondOrder("local_min", NAME, reason=f"the loss is exactly 0 ({how}) and every loss is >= 0: a global "
                       "minimum", flags={"global": True, "spurious": False},
                       certificate={"kind": "zero_loss", "loss_exact": "0", "proof": how})


def recheck(ctx: Context, cert: dict, checks: list) -> None:
    ok, how = prove_zero(ctx)
    checks.append(Check("zero_loss", ok, f"L = 0 exactly ({how})" if ok else f"L is not proved 0: {how}"))


def prove_zero(ctx: Context) -> tuple[bool, str]:
    """``(True, how)`` when ``L(theta) = 0`` exactly (see the module docstring)."""
    problem, fwd = ctx.problem, ctx.fwd
    name = problem.loss.name
    if name in ("hinge", "multiclass_hinge"):
        F = fwd.output
        ef = forward_factors(problem.network)[-1] * fwd.scale[-1]
        if name == "hinge":
            y = problem.Y[:, 0]
            margin, err = y * F[:, 0], ef[:, 0]
        else:
            idx = np.arange(F.shape[0])
            other = F.copy()
            other[idx, problem.Y] = -np.inf
            j = other.argmax(axis=1)
            margin, err = F[idx, problem.Y] - F[idx, j], ef[idx, problem.Y] + ef[idx, j]
        unsure = np.nonzero(margin - err < 1.0)[0]
        if unsure.size * problem.n_params > EXACT_SAMPLE_BUDGET:
            return False, f"{unsure.size} margin(s) within rounding of 1, too many to recompute exactly"
        for i in unsure:
            if _exact_term(problem, int(i)) != 0:
                return False, f"sample {int(i)} has a positive loss in exact arithmetic"
        return True, (f"every margin clears 1: {problem.n_samples - unsure.size} beyond the rounding-error bound, "
                      f"{unsure.size} in exact arithmetic")
    if not problem.loss.rational or problem.n_samples * problem.n_params > EXACT_BUDGET:
        return False, "a square or absolute loss is 0 only if every residual is exactly 0, and the problem is too " \
                      "large to check that in exact arithmetic"
    if exact_loss(problem, problem.theta) != 0:
        return False, "the exact loss is positive"
    return True, "exact rational arithmetic"


def _exact_term(problem, i: int) -> Fraction:
    """The loss term of sample ``i`` in exact rational arithmetic."""
    net = problem.network
    s_pos, s_neg = (Fraction(s) for s in net.activation.slopes)
    x = [Fraction(float(v)) for v in problem.X[i]]
    for l, (W, b) in enumerate(zip(net.weights, net.biases), start=1):
        z = [sum((Fraction(float(w)) * xv for w, xv in zip(row, x)), Fraction(0)) + Fraction(float(bj))
             for row, bj in zip(W, b)]
        x = z if l == net.n_layers else [s_pos * v if v > 0 else s_neg * v for v in z]
    if problem.loss.name == "hinge":
        return max(Fraction(0), 1 - Fraction(float(problem.Y[i, 0])) * x[0])
    yi = int(problem.Y[i])
    return max(x[j] + (0 if j == yi else 1) for j in range(len(x))) - x[yi]
