"""When is a problem small enough for exact arithmetic? A cost model in estimated seconds.

The exact engine computes with Python integers in numpy object arrays; its cost is counted in
operations on them and converted to seconds at rates measured on one core of a shared x86-64
machine (``benchmarks/exact_speed.py``):

* ``passes = 16 n w (1 + L/2)`` -- forward pass, backprop, tangent passes and the ~8 exact loss
  evaluations of a step search, each ``n w`` multiply-adds (``w = sum_l n_l n_{l-1}`` weights, ``n``
  samples); the numbers grow with the depth ``L`` (every layer multiplies denominators);
* ``rows = (K + S C)(w + p)`` -- one switching row per unit kink (``K``) and per output of a
  loss-kink sample (``S`` samples, ``C`` outputs), each a partial backprop and a dense row of ``p``;
* ``candidates = 12 J p`` -- the tangent network on a dozen candidate directions and on all ``2 p``
  coordinate directions at once (``J = K + Q`` generators, ``Q`` loss kinks);
  these three run at about :data:`RATE` = 5e6 operations per second;
* ``algebra = L r^3 max(1, r/50)`` with ``r = min(J, p)`` -- the fraction-free elimination of the
  multiplier system (twice when it fails: the tangential direction is a second solve); its integers
  grow like the determinant, about ``L r`` machine words, so it runs at :data:`ALGEBRA_RATE` = 2.2e6.

Every part is multiplied by ``max(1, (spread + 53) / 106)`` where ``spread`` is the largest range of
binary exponents among the nonzero parameters, inputs and labels (an array sharing one denominator
has integers of about ``spread + 53`` bits: weights of 1e-30 next to 1.0 make every number ~150 bits
longer).

``K``, ``Q`` and ``S`` come from a kink structure: the float pipeline's (which contains the exact
kinks whenever its tolerance is above rounding) or, when none is given, one at the default
tolerance. :data:`TIME_LIMIT` = 1.5 s. Nested / concave kinks repeat ``rows + algebra`` once per
piece (``2^|B|``); :mod:`certify.exact.decision` checks that against the same limit once it knows
the branch set ``B``. Measured (one core of a shared machine, ``benchmarks/results/exact_speed.md``):
p = 309, n = 50 (5-14-14-1) with 50 loss kinks, 0.2 s certified and 0.3-0.5 s refuted, estimate
0.33 s; the same net with n = 100 (100 loss kinks) took 2.3-4.4 s, estimate 3.0 s: over the limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import Problem
from ..kinks import KinkStructure, find_kinks

#: operations per second of the passes, rows and candidates (big-integer multiply-adds)
RATE = 5e6
#: operations per second of the fraction-free elimination (larger integers)
ALGEBRA_RATE = 2.2e6
#: estimated seconds allowed to one exact first-order decision
TIME_LIMIT = 1.5


@dataclass(frozen=True)
class ExactCost:
    """Estimated operations of an exact first-order decision, by part, their time and the limit."""

    parts: dict
    limit: float
    size_factor: float = 1.0

    @property
    def seconds(self) -> float:
        p = self.parts
        return self.size_factor * ((p["passes"] + p["rows"] + p["candidates"]) / RATE + p["algebra"] / ALGEBRA_RATE)

    def piece_seconds(self) -> float:
        """Estimated seconds of one piece (rows and algebra again)."""
        return self.size_factor * (self.parts["rows"] / RATE + self.parts["algebra"] / ALGEBRA_RATE)

    @property
    def fits(self) -> bool:
        return self.seconds <= self.limit

    def describe(self) -> str:
        return (f"estimated {self.seconds:.3g} s of exact arithmetic, limit {self.limit:.3g} s; "
                + ", ".join(f"{k} {v:.3g} operations" for k, v in self.parts.items()))

    def to_dict(self) -> dict:
        return {"seconds": self.seconds, "limit_s": self.limit, "fits": self.fits, "size_factor": self.size_factor,
                **{k: float(v) for k, v in self.parts.items()}}


def exact_cost(problem: Problem, kinks: KinkStructure | None = None, *, limit: float = TIME_LIMIT) -> ExactCost:
    """The cost model of the module docstring for ``problem`` at its point."""
    net = problem.network
    n, p, L = problem.n_samples, net.n_params, net.n_layers
    w = sum(W.size for W in net.weights)
    C = net.n_outputs
    if kinks is None:
        with np.errstate(over="ignore", invalid="ignore"):
            kinks = find_kinks(problem, net.forward(problem.X, with_scale=True))
    K, Q = kinks.n_unit, kinks.n_loss
    S = int(np.unique(kinks.loss_sample).size)
    J = K + Q
    r = min(J, p)
    parts = {"passes": 16.0 * n * w * (1 + L / 2), "rows": float((K + S * C) * (w + p)),
             "candidates": 12.0 * J * p, "algebra": float(L * r ** 3 * max(1.0, r / 50))}
    spread = max(_exponent_spread(a) for a in (net.theta, problem.X, np.asarray(problem.Y, dtype=np.float64)))
    return ExactCost(parts=parts, limit=float(limit), size_factor=max(1.0, (spread + 53) / 106))


def _exponent_spread(a: np.ndarray) -> int:
    """Range of the binary exponents of the nonzero entries (0 for none)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    a = a[a != 0]
    if a.size == 0:
        return 0
    e = np.frexp(a)[1]
    return int(e.max() - e.min())


def fits(problem: Problem, kinks: KinkStructure | None = None, *, limit: float = TIME_LIMIT) -> bool:
    """Whether an exact first-order decision of ``problem`` is within the budget (see :func:`exact_cost`)."""
    if not problem.loss.rational:
        return False
    return exact_cost(problem, kinks, limit=limit).fits
