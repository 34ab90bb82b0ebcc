"""What every second-order kind shares: its result, the context it reads, and the limits.

A *kind* (one module of :mod:`certify.secondorder` each) looks at a first-order stationary point
and returns a :class:`SecondOrder`: a verdict (``local_min`` with a certificate, ``saddle`` with a
verified curve) or ``None`` with the reason it does not decide. It never imports the driver.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..data import Problem
from ..kinks import KinkStructure
from ..network import ForwardPass
from ..tangent import FirstOrderModel

#: dense Hessians are formed up to this many parameters
DENSE_P = 2500
#: relative tolerance on the smallest reduced eigenvalue (times the Frobenius norm of H)
TOL_CURVATURE = 1e-9


@dataclass
class SecondOrder:
    verdict: str | None            # "local_min", "saddle" or None (undecided)
    method: str
    reason: str = ""
    flags: dict = field(default_factory=dict)
    certificate: dict = field(default_factory=dict)
    refutation: dict | None = None
    solver_calls: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"method": self.method, "decided": self.verdict is not None, "certificate": self.certificate,
                "notes": self.notes}



@dataclass
class Context:
    """The point and what the stages before second order found there.

    ``first`` is the first-order outcome (:class:`certify.first_order.FirstOrder`); ``deadline``
    is the ``time.perf_counter()`` value at which the whole check must end (None: no limit), and
    ``time_limit`` bounds each solver call.
    """

    problem: Problem
    fwd: ForwardPass
    kinks: KinkStructure
    fo: FirstOrderModel
    first: object = None
    time_limit: float = 60.0
    deadline: float | None = None
    cache: dict = field(default_factory=dict)

    def remaining(self) -> float:
        """Seconds left before the deadline (``time_limit`` when there is none)."""
        if self.deadline is None:
            return self.time_limit
        return max(0.0, self.deadline - time.perf_counter())

    def budget(self) -> float:
        """Seconds allowed to the next solver call or search: ``time_limit``, capped by the deadline."""
        return min(self.time_limit, self.remaining())
