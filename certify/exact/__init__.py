"""The exact-arithmetic engine: claim (1) "exact" of a certificate, about the given point itself.

The float64 numbers certify reads are rationals; for a small problem with a rational loss (square,
hinge, multiclass hinge, absolute) everything the float pipeline computes can be computed again
without rounding, so a kink is an exact zero, a multiplier certificate closes its equation exactly,
and a decrease of the loss is exact even when it is far below float resolution.

Front doors
-----------
:func:`fits` / :func:`exact_cost`
    The budget: a cost model in big-integer operations (:mod:`certify.exact.budget`).
:func:`exact_problem`, :func:`forward`, :func:`loss_value`
    Exact evaluation at the point or at any rational point (:mod:`certify.exact.forward`).
:func:`exact_kinks`
    A :class:`certify.kinks.KinkStructure` with ``tol = 0`` and the nearest non-kinks.
:func:`first_order_model`, :func:`one_level`, :func:`directional_derivative`, :func:`curve_coefficients`
    The tangent network with rational entries: ``L'(theta; d)`` as a Fraction.
:func:`exact_multipliers`
    Rational multipliers ``lambda in [0,1]``, ``pi`` in simplices, ``mu >= 0`` closing the subgradient
    (or a piece's KKT) equation exactly, guessed from float ones.
:func:`exact_step`, :func:`exact_refutation`, :func:`recheck_refutation`
    An exact step ``2^-k`` with an exact decrease, the refutation dict, and its solver-free re-check.
:func:`exact_first_order_decision`
    Stationary with an exact certificate, not stationary with an exact descent, or undecided.
:func:`recheck_certificate`
    The solver-free, tolerance-free re-check of such a certificate.

Nothing here imports a solver (``certify verify`` uses it).
"""

from .budget import TIME_LIMIT, ExactCost, exact_cost, fits
from .certificates import recheck_certificate
from .decision import ExactFirstOrder, exact_first_order_decision
from .descent import ExactStep, exact_refutation, exact_step, recheck_refutation
from .forward import ExactForward, ExactProblem, exact_problem, forward, loss_value, sample_losses
from .kinks import NearKinks, compare_kinks, exact_kinks
from .multipliers import ExactMultipliers, exact_multipliers, float_guesses, guess_for, in_bounds, residual_of
from .pieces import ExactPiece, branch_set, piece
from .rational import QArray, as_q, parse
from .tangent import (ExactFirstOrderModel, ExactOneLevel, curve_coefficients, directional_derivative,
                      first_order_model, is_local_descent, one_level)

__all__ = [
    "TIME_LIMIT", "ExactCost", "exact_cost", "fits", "recheck_certificate", "ExactFirstOrder", "exact_first_order_decision",
    "ExactStep", "exact_refutation", "exact_step", "recheck_refutation", "ExactForward", "ExactProblem",
    "exact_problem", "forward", "loss_value", "sample_losses", "NearKinks", "compare_kinks", "exact_kinks",
    "ExactMultipliers", "exact_multipliers", "float_guesses", "guess_for", "in_bounds", "residual_of",
    "ExactPiece", "branch_set", "piece", "QArray", "as_q", "parse", "ExactFirstOrderModel", "ExactOneLevel",
    "curve_coefficients", "directional_derivative", "first_order_model", "is_local_descent", "one_level",
]
