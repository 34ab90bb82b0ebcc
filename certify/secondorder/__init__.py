"""Second order: certify a local minimum or refute a saddle at a first-order stationary point.

Each *certificate kind* is one module with the same three functions:

* ``applies(ctx) -> str | None`` -- why the kind does not apply here (None: it does);
* ``run(ctx) -> SecondOrder`` -- a verdict with its certificate, or ``None`` with the reason;
* ``recheck(ctx, cert, checks)`` -- numpy re-check of a stored certificate (for ``verify``).

:data:`KINDS` is the order in which the driver tries them (a chain, as cvxpy's reductions): the
theorems that need no Hessian before the dense tests, the dense tests before the piece search.
The first decided result wins; the reasons of the others are kept as notes. Adding a kind is one
module and one entry here. :mod:`certify.verify` dispatches a stored certificate by its ``kind`` to
:data:`RECHECK`. Nothing in this package imports the driver.
"""

from __future__ import annotations

from ..budget import OutOfTime
from . import (affine, cell, cone, copositive, escape_any, higher_order, lanczos, nearby, output_order, path_fit,
               pieces, saturated, search, smooth, spurious, zero_loss)
from .base import DENSE_P, TOL_CURVATURE, Context, SecondOrder

__all__ = ["KINDS", "RECHECK", "Context", "SecondOrder", "decide_second_order", "DENSE_P", "TOL_CURVATURE",
           "spurious"]

#: cell convexity needs first order only: above this many parameters it runs before any Hessian
EARLY_CELL_P = 300


class _EarlyCell:
    """The cell-convexity theorem ahead of the dense Hessian when p is large (p HVPs saved)."""

    NAME = cell.NAME

    @staticmethod
    def applies(ctx: Context) -> str | None:
        if ctx.problem.n_params <= EARLY_CELL_P:
            return "small p: the Hessian runs first (it also says whether the minimum is strict)"
        return cell.applies(ctx)

    run = staticmethod(cell.run)


class _EarlyPath:
    """The path-space certificate (a few gradients) ahead of the dense Hessian when p is large."""

    NAME = path_fit.NAME

    @staticmethod
    def applies(ctx: Context) -> str | None:
        if ctx.problem.n_params <= EARLY_CELL_P:
            return "small p: the Hessian runs first (it also says whether the minimum is strict)"
        return path_fit.applies(ctx)

    run = staticmethod(path_fit.run)


#: the order in which the kinds are tried
KINDS = (zero_loss, escape_any, _EarlyCell, _EarlyPath, smooth, cell, affine, path_fit, search.Early, lanczos,
         saturated, cone, copositive, output_order, pieces, higher_order, search)

#: certificate kind (as stored in a report) -> the module that re-checks it
RECHECK = {"zero_loss": zero_loss, "reduced_hessian": smooth, "cell_convexity": cell, "affine_cell": affine,
           "critical_cone": cone, "copositivity": copositive, "piece_kkt": pieces, "nearby": nearby,
           "path_fit": path_fit, "saturated": saturated,
           "output_order": output_order}


def decide_second_order(problem, fwd, kinks, fo, first, *, time_limit: float = 60.0,
                        deadline: float | None = None) -> SecondOrder:
    """Try :data:`KINDS` in order at a first-order stationary point; the first decided result wins."""
    ctx = Context(problem, fwd, kinks, fo, first, time_limit=time_limit, deadline=deadline)
    return decide(ctx)


def decide(ctx: Context) -> SecondOrder:
    notes: list[str] = []
    tried: set = set()
    for kind in KINDS:
        if kind.NAME in tried:
            continue
        why = kind.applies(ctx)
        if why is not None:
            continue
        if ctx.deadline is not None and ctx.remaining() <= 0:
            notes.append(f"the time budget ran out before the {kind.NAME} test")
            break
        tried.add(kind.NAME)
        try:
            res = kind.run(ctx)
        except OutOfTime as exc:
            notes.append(f"the time budget ran out during the {kind.NAME} test ({exc.what})")
            break
        if res.verdict is not None:
            res.notes = notes + res.notes
            return res
        if res.reason:
            notes.append(res.reason)
    reason = "first-order stationary, but no second-order test applies: " + "; ".join(n for n in notes if n)
    if not notes:
        reason = ("first-order stationary at a kink; no second-order test applies to this architecture "
                  "(deep or multi-output network with active kinks)")
    return SecondOrder(None, "none", reason=reason, notes=notes)
