"""The exact first-order decision: is the point *exactly* d-stationary, or is there an exact descent?

:func:`exact_first_order_decision` re-does the first-order stage of the driver in rational arithmetic
(claim (1) of the "what a local_min certificate proves" decision): kinks are exact zeros, and the
answer is one of

* ``stationary``: an exact certificate -- the gradient is exactly 0 (no kink reaches ``L'``), or
  rational multipliers close the subgradient equation exactly with exact bounds (one level of convex
  kinks), or every piece of the nested / concave / zero-coefficient kinks has exact KKT multipliers
  (:mod:`certify.exact.pieces`);
* ``not_stationary``: a direction with exact ``L'(theta; d) < 0`` -- a proof on its own -- and, when
  found, an exact step with an exact decrease (:mod:`certify.exact.descent`);
* ``undecided``, with the reason (too large for exact arithmetic, a logistic / cross-entropy loss,
  more than ``2^MAX_BRANCH`` pieces, or no certificate and no exact descent among the candidates).

Candidate descent directions, every one judged by its exact ``L'``: minus the exact residual of the
best multiplier attempt and its tangential direction (orthogonal to the free kink generators, so
those kinks stay put to first order; :mod:`certify.exact.multipliers`); the float pipeline's own direction; ``-g``;
``-g`` on the coordinates no kink row touches; and every coordinate direction ``+-e_i`` (cheap: a
column of the tangent network).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..data import Problem
from ..kinks import KinkStructure
from .budget import exact_cost
from .descent import K_MAX, exact_refutation
from .forward import exact_problem, forward
from .kinks import NearKinks, compare_kinks, exact_kinks
from .multipliers import exact_multipliers, float_guesses, guess_for
from .pieces import MAX_BRANCH, branch_set, piece
from .rational import QArray
from .tangent import ExactFirstOrderModel, first_order_model, one_level

log = logging.getLogger(__name__)


@dataclass
class ExactFirstOrder:
    """Outcome of :func:`exact_first_order_decision` (see the module docstring).

    ``certificate`` (stationary) holds rational multipliers as ``"p/q"`` strings; ``direction`` and
    ``directional_derivative`` (not stationary) are exact; ``refutation`` is an exact refutation dict
    (:func:`certify.exact.descent.exact_refutation`) when a step was searched for. ``kinks`` is the
    exact :class:`KinkStructure` (``tol = 0``), ``near`` the nearest non-kinks, ``kink_comparison``
    how the float structure differs. ``context`` keeps the exact problem, forward pass and model.
    """

    status: str
    kind: str | None
    reason: str
    certificate: dict = field(default_factory=dict)
    direction: QArray | None = None
    directional_derivative: Fraction | None = None
    refutation: dict | None = None
    kinks: KinkStructure | None = None
    near: NearKinks | None = None
    kink_comparison: dict | None = None
    residual: QArray | None = None
    timings: dict = field(default_factory=dict)
    context: dict = field(default_factory=dict, repr=False)
    #: undecided only because a budget or a size limit stopped exact arithmetic (no evidence either way)
    limited: bool = False

    @property
    def stationary(self) -> bool | None:
        return {"stationary": True, "not_stationary": False}.get(self.status)

    def to_dict(self) -> dict:
        out = {"status": self.status, "kind": self.kind, "reason": self.reason, "certificate": self.certificate,
               "refutation": self.refutation, "timings": self.timings}
        if self.direction is not None:
            out["direction"] = self.direction.to_float()
            if not self.direction.is_float():
                out["direction_exact"] = self.direction.to_strings()
        if self.directional_derivative is not None:
            out["directional_derivative"] = float(self.directional_derivative)
            out["directional_derivative_exact"] = str(self.directional_derivative)
        if self.kinks is not None:
            out["kinks"] = {**self.kinks.summary(), "near": self.near.to_dict() if self.near else None,
                            "comparison": self.kink_comparison}
        if self.residual is not None:
            out["residual_inf"] = float(np.abs(self.residual.to_float()).max(initial=0.0))
        return out


def exact_first_order_decision(problem: Problem, fo=None, *, model=None, kinks: KinkStructure | None = None,
                               piece_guesses: dict | None = None, refute: bool = True, k_max: int = K_MAX,
                               limit: float | None = None, theta=None) -> ExactFirstOrder:
    """Decide d-stationarity of ``problem``'s point in exact rational arithmetic.

    Parameters
    ----------
    problem : Problem
    fo : certify.first_order.FirstOrder, optional
        The float decision: its multipliers guess the active set, its direction is a candidate.
    model, kinks : optional
        The float :class:`~certify.tangent.FirstOrderModel` and :class:`KinkStructure` ``fo`` was
        made from (to map its multipliers to kinks; ``kinks`` also sizes the budget).
    piece_guesses : dict or list, optional
        ``{signs tuple: (lambda, pis, mu)}`` floats, or the ``pieces`` list of a ``piece_kkt``
        certificate of :mod:`certify.secondorder.pieces` (entries with ``signs``, ``lambda``, ``pi``, ``mu``).
    refute : bool
        Search an exact step along a direction with exact ``L' < 0``.
    limit : float, optional
        Estimated seconds allowed (default :data:`certify.exact.budget.TIME_LIMIT`).
    theta : sequence of rationals, optional
        Decide at this rational point instead of the problem's float64 one (a point floats cannot
        represent; the float ``fo``, ``model`` and ``kinks`` then only serve as guesses).

    Examples
    --------
    A kink moved ``2^-36`` off the sample: the tolerance of the float pipeline still sees a kink, the
    exact engine does not, and proves a descent back towards it with a step below ``2^-36``:

    >>> import numpy as np
    >>> from certify.data import Dataset, Problem
    >>> from certify.network import Network
    >>> net = Network([np.array([[1.0]]), np.array([[1.0]])], [np.array([-1.0 + 2.0 ** -36]), np.array([0.0])], "relu")
    >>> data = Dataset(np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0.5, -1.0, 2.0, 1.5]))
    >>> out = exact_first_order_decision(Problem(net, data, "square"))
    >>> out.status, out.kinks.n_unit, out.refutation["verified"], out.refutation["method"]
    ('not_stationary', 0, True, 'exact')
    """
    t0 = time.perf_counter()
    timings = {}
    if isinstance(piece_guesses, list):
        piece_guesses = {tuple(int(s) for s in pc["signs"]): (pc.get("lambda"), pc.get("pi", []), pc.get("mu"))
                         for pc in piece_guesses}
    if not problem.loss.rational:
        return ExactFirstOrder("undecided", None, f"{problem.loss.name} loss is not rational: no exact arithmetic")
    cost = exact_cost(problem, kinks) if limit is None else exact_cost(problem, kinks, limit=limit)
    if not cost.fits:
        return ExactFirstOrder("undecided", None, f"too large for exact arithmetic ({cost.describe()})",
                               timings={"budget": cost.to_dict()}, limited=True)
    ep = exact_problem(problem, theta)
    fwd = forward(ep)
    ekinks, near = exact_kinks(ep, fwd)
    emodel = first_order_model(ep, fwd, ekinks)
    timings["model_s"] = time.perf_counter() - t0
    base = dict(kinks=ekinks, near=near, kink_comparison=compare_kinks(kinks, ekinks) if kinks is not None else None,
                context={"problem": ep, "forward": fwd, "model": emodel})
    guesses = {}
    if fo is not None and model is not None and kinks is not None:
        guesses = float_guesses(getattr(fo, "certificate", None) or {}, model, kinks)
    float_direction = getattr(fo, "direction", None) if fo is not None else None
    t1 = time.perf_counter()
    certified, evidence, residual, reason, found = _certify(ep, fwd, ekinks, emodel, guesses, piece_guesses, cost,
                                                            float_direction)
    timings["certificate_s"] = time.perf_counter() - t1
    if certified is not None:
        kind, certificate = certified
        return ExactFirstOrder("stationary", kind, reason, certificate=certificate, residual=residual,
                               timings=_done(timings, t0), **base)
    t2 = time.perf_counter()
    d, slope = found if found is not None else _best_descent(emodel, evidence, float_direction)
    timings["candidates_s"] = time.perf_counter() - t2
    if d is None:
        return ExactFirstOrder("undecided", None, reason + "; no candidate direction has an exact L'(theta; d) < 0, "
                               "so exact arithmetic leaves the first-order question open",
                               residual=residual, timings=_done(timings, t0), limited="would need 2^" in reason, **base)
    reason += f"; exactly L'(theta; d) = {float(slope):.6g} < 0 along a direction"
    refutation = None
    if refute:
        t3 = time.perf_counter()
        refutation = exact_refutation(ep, d, fwd=fwd, kinks=ekinks, k_max=k_max)
        timings["refutation_s"] = time.perf_counter() - t3
        if refutation["verified"]:
            reason += (f", and the loss drops by {refutation['decrease']:.6g} at step 2^-{_exponent(refutation)} "
                       f"(exact rational arithmetic)")
        else:
            reason += f" ({refutation.get('note', 'no exact step found')})"
    return ExactFirstOrder("not_stationary", "descent_direction", reason, direction=d, directional_derivative=slope,
                           refutation=refutation, residual=residual, timings=_done(timings, t0), **base)


def _certify(ep, fwd, kinks, model, guesses, piece_guesses, cost, float_direction):
    """``(certificate, evidence, residual, reason, found)``: an exact certificate ``(kind, dict)`` or None, the
    vectors whose negatives are candidate descent directions, the exact residual, the reason, and a descent
    ``(d, L'(theta; d))`` already found (or None)."""
    if model.smooth or (not model.nested and _no_generators(model)):
        g = model.g if model.smooth else one_level(model).g
        if not g.any():
            return ("gradient", {"kind": "gradient", "exact": True, "gradient": "0"}), [], None, \
                "the gradient is exactly 0 (no kink reaches L')", None
        return None, [g], g, "the gradient is not exactly 0", None
    if not model.nested and one_level(model).convex:
        one = one_level(model)
        res = exact_multipliers(one, guess_for(one, guesses))
        if res.ok:
            return ("multipliers", res.certificate(one)), [], res.residual, (
                f"rational multipliers close the subgradient equation exactly ({one.n_generators} kink "
                f"generator(s), {len(one.multi)} tie group(s))"), None
        evidence = [v for v in (-res.direction if res.direction is not None else None, res.residual)
                    if v is not None] + [one.g]
        return None, evidence, res.residual, res.reason, None
    # concave or nested kinks: cheap candidates first (as the float pipeline tries them before a MILP)
    found = _best_descent(model, [model.g], float_direction)
    if found[0] is not None:
        return None, [model.g], None, "concave or nested kinks", found
    out = _pieces(ep, fwd, kinks, piece_guesses, cost)
    if out["ok"]:
        return ("piece_multipliers", out["certificate"]), [], None, out["reason"], None
    return None, out["evidence"] + [model.g], out.get("residual"), out["reason"], None


def _done(timings: dict, t0: float) -> dict:
    timings["total_s"] = time.perf_counter() - t0
    log.debug("exact first-order decision in %.3f s", timings["total_s"])
    return timings


def _exponent(ref: dict) -> int:
    return Fraction(ref["step_exact"]).denominator.bit_length() - 1


def _no_generators(model: ExactFirstOrderModel) -> bool:
    one = one_level(model)
    return one.n_generators == 0 and not one.multi


def _pieces(ep, fwd, kinks, piece_guesses, cost) -> dict:
    """Exact KKT multipliers on every piece of the branch set (nested, concave, zero-coefficient kinks)."""
    branch = branch_set(ep, fwd, kinks)
    m = int(branch.size)
    if m > MAX_BRANCH:
        return {"ok": False, "evidence": [], "reason": f"{m} kinks to branch on would need 2^{m} pieces "
                f"(limit 2^{MAX_BRANCH}): no exact piece certificate"}
    seconds = cost.seconds + (2 ** m) * cost.piece_seconds()
    if seconds > cost.limit:
        return {"ok": False, "evidence": [], "reason": f"exact KKT multipliers on 2^{m} pieces would take about "
                f"{seconds:.3g} s, above the limit {cost.limit:.3g} s"}
    pieces, evidence, failed = [], [], []
    residual = None
    descs = None
    for signs in itertools.product((1, -1), repeat=m):
        pc = piece(ep, fwd, kinks, branch, signs)
        descs = pc.descs
        if pc.nested:
            return {"ok": False, "evidence": evidence, "reason": "a kink outside the branch set is still nested"}
        if not pc.one.convex:      # cannot happen (kinks outside B feed no kink); the KKT argument needs it
            return {"ok": False, "evidence": evidence, "reason": "a piece has a concave kink outside the branch set"}
        res = exact_multipliers(pc.one, (piece_guesses or {}).get(tuple(signs)), pc.R)
        if res.ok:
            pieces.append({"signs": list(signs), **{k: v for k, v in res.certificate(pc.one).items()
                                                    if k in ("lambda", "pi", "mu", "generators")}})
        else:
            failed.append(list(signs))
            evidence += [v for v in (-res.direction if res.direction is not None else None, res.residual)
                         if v is not None]
            residual = res.residual if residual is None else residual
    if not failed:
        return {"ok": True, "reason": f"rational KKT multipliers close every piece's equation exactly ({len(pieces)} "
                f"piece(s) of {m} branched kink(s))",
                "certificate": {"kind": "piece_multipliers", "exact": True,
                                "branch": [list(d) for d in (descs or [])], "pieces": pieces}}
    return {"ok": False, "evidence": evidence, "residual": residual,
            "reason": f"no exact KKT multipliers on {len(failed)} of {2 ** m} piece(s) (first: {failed[0]})"}


def _best_descent(model: ExactFirstOrderModel, evidence: list, float_direction) -> tuple:
    """The candidate with the most negative exact ``L'(theta; d) / ||d||_inf`` (None if none is negative)."""
    p = model.n_params
    cands = [-v for v in evidence if v is not None and v.any()]
    if float_direction is not None and np.all(np.isfinite(float_direction)) and np.any(float_direction):
        cands.append(QArray.from_float(np.asarray(float_direction, dtype=np.float64)))
    touched = np.zeros(p, dtype=bool)
    if model.n_kinks:
        touched |= np.any(model.A.num != 0, axis=0)
    if model.G.shape[0]:
        touched |= np.any(model.G.num != 0, axis=0)
    free_g = QArray.where(touched, 0, model.g)
    if free_g.any():
        cands.append(-free_g)
    best, best_val = None, Fraction(0)
    for d in cands:
        val = model.evaluate(d) / _max_abs(d)
        if val < best_val:
            best, best_val = d, val
    # every coordinate direction +-e_i at once: its images are the columns of g, A and G
    both = lambda Q: QArray.concatenate([Q, -Q], axis=-1)      # noqa: E731
    vals = model.evaluate_columns(both(model.g), both(model.A), both(model.G)).to_fractions()
    j = int(np.argmin(vals))
    if vals[j] < best_val:
        best = QArray.zeros(p)
        best[j % p] = 1 if j < p else -1
        best_val = vals[j]
    if best is None:
        return None, None
    best = best.reduce()
    if not best.is_float():
        rounded = QArray.from_float((best / _max_abs(best)).to_float())
        val = model.evaluate(rounded)
        if val < 0:
            return rounded, val
    return best, model.evaluate(best)


def _max_abs(d: QArray) -> Fraction:
    return abs(d).max().item()
