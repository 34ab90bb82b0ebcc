"""Reference cases: tiny networks with hand-derived, exactly known verdicts.

Every case states its data, parameters, loss, the exact mean loss (computed by hand, *not* by the
oracle), the verdict and, where the point is not a local minimum, a descent certificate taken from
the derivation. ``tests/test_reference_oracle.py`` re-checks all of it with the exact oracle
:mod:`tests.exact`; the tool's own tests feed the same cases to ``certify``.

Conventions (the tool's): ``z^l = W_l x^{l-1} + b_l`` with ``W_l`` of shape (out, in), activation
on hidden layers only; flat ``theta = (W1 row-major, b1, W2 row-major, b2, ...)``; mean loss over
samples plus ``(lambda/2)||theta||^2``. REFERENCES.md quotes *sum* losses; the values here are
*means* (sum / n). For scalar nets with one hidden unit the flat order is ``(w, b, a, c)``.

Verdicts
--------
``"local_min"``
    theta is a local minimum of L.
``"saddle"``
    theta is d-stationary (``L'(theta; d) >= 0`` for all d) but not a local minimum; the
    certificate is a line or a second-order curve along which L strictly decreases.
``"not_stationary"``
    some d has ``L'(theta; d) < 0``; the certificate is that direction and a step.

Flags (only those the derivation establishes are present)
---------------------------------------------------------
``differentiable``  L is differentiable at theta (no active kink, or only kinks that enter at
                    second order, as for a unit with zero output weight).
``strict``          strict local minimum modulo the rescaling symmetry of the hidden units.
``flat``            L is constant on a neighbourhood of theta.
``spurious``        local minimum whose loss is above a known point (``lower_point``).
``global``          global minimum of the loss over all parameters of this architecture.
``clarke_stationary`` 0 is in the Clarke subdifferential at theta.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Optional, Tuple

VERDICTS = ("local_min", "saddle", "not_stationary")
FLAG_NAMES = ("differentiable", "strict", "flat", "spurious", "global", "clarke_stationary")


def q(value) -> Fraction:
    """Exact rational from an int, a string such as ``"4/3"`` or a Fraction."""
    if isinstance(value, float):
        raise TypeError(f"write reference numbers exactly (int, 'p/q' or Fraction), got {value}")
    return Fraction(value)


def vec(*values) -> Tuple[Fraction, ...]:
    """Tuple of exact rationals."""
    return tuple(q(v) for v in values)


def net(*layers) -> tuple:
    """Layers ``((W rows, b), ...)`` converted to nested tuples of Fraction."""
    return tuple((tuple(vec(*row) for row in W), vec(*b)) for W, b in layers)


def col(*values) -> tuple:
    """One-feature inputs ``X`` (one row per value)."""
    return tuple((q(v),) for v in values)


def rows(*rows_) -> tuple:
    """Inputs ``X`` from rows."""
    return tuple(vec(*r) for r in rows_)


@dataclass(frozen=True)
class Descent:
    """A decrease certificate: the curve ``theta + t d + (t^2/2) e`` (a line when ``e`` is None).

    Attributes
    ----------
    d : tuple of Fraction
        Direction, flat parameter order.
    t : Fraction
        Step at which the loss is strictly below ``L(theta)``.
    e : tuple of Fraction or None
        Second-order term of the curve.
    loss_mean : Fraction or None
        Hand-computed exact mean loss at the end point, when the derivation gives it.
    """

    d: Tuple[Fraction, ...]
    t: Fraction
    e: Optional[Tuple[Fraction, ...]] = None
    loss_mean: Optional[Fraction] = None


@dataclass(frozen=True)
class Case:
    """A reference instance with a known verdict.

    Attributes
    ----------
    name : str
    layers : tuple of (W, b)
        Parameters, Fractions, ``W`` as a tuple of rows (shape (out, in)).
    X : tuple of rows
        Inputs (Fractions).
    y : tuple
        Targets: Fractions (square, absolute; rows of Fractions for several outputs), ``+-1``
        ints (hinge), class-index ints (multiclass_hinge).
    activation : str or tuple
        ``"relu"``, ``("leaky_relu", alpha)``, ``"abs"``, ``"identity"``.
    loss : str
        ``"square"``, ``"hinge"``, ``"multiclass_hinge"``, ``"absolute"``.
    weight_decay : Fraction
        ``lambda`` of ``(lambda/2) ||theta||^2``.
    loss_mean : Fraction
        Exact mean loss at theta, derived by hand.
    verdict : str
        One of :data:`VERDICTS`.
    first_order_stationary : bool
        d-stationarity: ``L'(theta; d) >= 0`` for every direction d.
    flags : dict
        Subset of :data:`FLAG_NAMES` -> bool, only what the derivation establishes.
    descent : tuple of Descent
        Decrease certificates (required unless verdict is ``local_min``).
    lower_point : tuple of (W, b) or None
        Same architecture, strictly lower loss (refutes global optimality of a local minimum).
    lower_loss_mean : Fraction or None
        Hand-computed mean loss at ``lower_point``.
    allow_inconclusive : bool
        The tool may answer ``inconclusive`` instead of ``verdict`` (never ``local_min``).
    source : str
        Where the case comes from.
    """

    name: str
    layers: tuple
    X: tuple
    y: tuple
    activation: Any
    loss: str
    weight_decay: Fraction
    loss_mean: Fraction
    verdict: str
    first_order_stationary: bool
    flags: dict = field(default_factory=dict, hash=False)
    descent: Tuple[Descent, ...] = ()
    lower_point: Optional[tuple] = None
    lower_loss_mean: Optional[Fraction] = None
    allow_inconclusive: bool = False
    source: str = ""

    @property
    def shapes(self) -> list:
        """Weight shapes ``(n_out, n_in)`` per layer."""
        return [(len(W), len(W[0])) for W, _ in self.layers]

    @property
    def n_params(self) -> int:
        """Number of parameters."""
        return sum(n_out * (n_in + 1) for n_out, n_in in self.shapes)

    @property
    def theta(self) -> Tuple[Fraction, ...]:
        """Flat parameters ``(W1 row-major, b1, W2 row-major, b2, ...)``."""
        out = []
        for W, b in self.layers:
            for row in W:
                out.extend(row)
            out.extend(b)
        return tuple(out)


LEAKY_10 = ("leaky_relu", Fraction(1, 10))
LEAKY_4 = ("leaky_relu", Fraction(1, 4))
ZERO = Fraction(0)

CASES = []


def _flags(**kwargs) -> dict:
    """Flag dict from keywords; ``global_`` stands for ``global`` (a Python keyword)."""
    out = {("global" if key == "global_" else key): bool(v) for key, v in kwargs.items()}
    unknown = set(out) - set(FLAG_NAMES)
    if unknown:
        raise ValueError(f"unknown flags {sorted(unknown)}")
    return out


def _add(**kwargs) -> None:
    kwargs.setdefault("weight_decay", ZERO)
    CASES.append(Case(**kwargs))


# =============================================================================================
# Ground truths from REFERENCES.md section (b). Sum losses of the text are divided by n.
# =============================================================================================

# GT-1: X = (1,0), (0,1), (1/2,1/2); y = (0,0,1). Both units strictly active (pre-activations
# 4/3 and 1 at every sample): locally f is affine in x, and the affine LS fit is 1/3 everywhere.
# Outputs 1/3, residuals (1/3, 1/3, -2/3): sum 1/2 (1/9 + 1/9 + 4/9) = 1/3, mean 1/9.
# Lower point: GT-2's f = 1 - |x1 - x2| (loss 0).
_X_GT1 = rows((1, 0), (0, 1), ("1/2", "1/2"))
_Y_GT1 = vec(0, 0, 1)
_THETA_GT1 = net(([[0, 0], [0, 0]], ["4/3", 1]), ([[1, 0]], [-1]))
_GT2 = net(([[1, -1], [-1, 1]], [0, 0]), ([[-1, -1]], [1]))
_add(name="gt01_relu", layers=_THETA_GT1, X=_X_GT1, y=_Y_GT1, activation="relu", loss="square",
     loss_mean=q("1/9"), verdict="local_min", first_order_stationary=True,
     flags=_flags(differentiable=True, strict=False, flat=False, spurious=True, global_=False),
     lower_point=_GT2, lower_loss_mean=ZERO, source="REFERENCES.md GT-1")
# Leaky (alpha = 1/10): same theta, all pre-activations positive, same loss and argument.
# Lower point (derived here): h(1) + h(-1) = 1 - 1/10 = 9/10, so output weights -10/9 give
# f = 1 - (10/9)(h(x1 - x2) + h(x2 - x1)) = (0, 0, 1): loss 0.
_add(name="gt01_leaky", layers=_THETA_GT1, X=_X_GT1, y=_Y_GT1, activation=LEAKY_10,
     loss="square", loss_mean=q("1/9"), verdict="local_min", first_order_stationary=True,
     flags=_flags(differentiable=True, strict=False, flat=False, spurious=True, global_=False),
     lower_point=net(([[1, -1], [-1, 1]], [0, 0]), ([["-10/9", "-10/9"]], [1])),
     lower_loss_mean=ZERO, source="REFERENCES.md GT-1 (leaky variant); lower point derived")

# GT-2: f = 1 - |x1 - x2| fits exactly; x3 on the kink of both units. Loss 0 = global.
# No "differentiable" flag: REFERENCES.md lists GT-2 as "no (kink)", which is true of the
# network output f, but the residual at x3 is 0, so L = 1/2 sum r^2 changes by O(|h|^2) and is
# differentiable at theta with zero gradient. A tool may report either "at a kink" or
# "differentiable" here; neither is pinned.
_add(name="gt02", layers=_GT2, X=_X_GT1, y=_Y_GT1, activation="relu", loss="square",
     loss_mean=ZERO, verdict="local_min", first_order_stationary=True,
     flags=_flags(global_=True), source="REFERENCES.md GT-2")

# GT-3: deep GT-1 (all units of both hidden layers strictly active); mean 1/9. Lower point:
# layer 1 of GT-2, layer 2 = I, output (-1, -1), 1: f = 1 - |x1 - x2|, loss 0.
_add(name="gt03", X=_X_GT1, y=_Y_GT1, activation="relu", loss="square",
     layers=net(([[0, 0], [0, 0]], ["4/3", 1]), ([[1, 0], [0, 1]], [0, 0]), ([[1, 0]], [-1])),
     loss_mean=q("1/9"), verdict="local_min", first_order_stationary=True,
     flags=_flags(differentiable=True, spurious=True, global_=False),
     lower_point=net(([[1, -1], [-1, 1]], [0, 0]), ([[1, 0], [0, 1]], [0, 0]),
                     ([[-1, -1]], [1])),
     lower_loss_mean=ZERO, source="REFERENCES.md GT-3")

# GT-4: x = (0,1,2,3), y = (0,2,1,3). f = 4/5 x + 3/10 (affine LS fit, unit 1 active,
# unit 2 constant); residuals (3/10, -9/10, 9/10, -3/10): sum 1/2 * 18/10 = 9/10, mean 9/40.
# Lower point (ReLU): outputs (1/2, 13/10, 17/10, 5/2), residuals (1/2, -7/10, 7/10, -1/2):
# sum 37/50, mean 37/200.
_X_GT4 = col(0, 1, 2, 3)
_Y_GT4 = vec(0, 2, 1, 3)
_THETA_GT4 = net(([["4/5"], [0]], ["13/10", 1]), ([[1, 0]], [-1]))
_add(name="gt04_relu", layers=_THETA_GT4, X=_X_GT4, y=_Y_GT4, activation="relu", loss="square",
     loss_mean=q("9/40"), verdict="local_min", first_order_stationary=True,
     flags=_flags(differentiable=True, strict=False, flat=False, spurious=True, global_=False),
     lower_point=net(([["4/5"], ["-4/5"]], ["-7/5", 1]), ([[1, -1]], ["3/2"])),
     lower_loss_mean=q("37/200"), source="REFERENCES.md GT-4")
# Leaky 1/10 lower point: (10/11)(h1 - h2) + 3/2 = (51/110, 139/110, ...), residuals
# +-51/110, +-81/110: sum (51^2 + 81^2)/110^2 = 9162/12100 = 4581/6050, mean 4581/24200.
_add(name="gt04_leaky", layers=_THETA_GT4, X=_X_GT4, y=_Y_GT4, activation=LEAKY_10,
     loss="square", loss_mean=q("9/40"), verdict="local_min", first_order_stationary=True,
     flags=_flags(differentiable=True, strict=False, flat=False, spurious=True, global_=False),
     lower_point=net(([["4/5"], ["-4/5"]], ["-7/5", 1]), ([["10/11", "-10/11"]], ["3/2"])),
     lower_loss_mean=q("4581/24200"), source="REFERENCES.md GT-4 (leaky)")

# GT-5: x = (-1,0,1), y = (-1,1,1), (w,b,a,c) = (1,0,1,0): outputs (0,0,1), residuals
# (1,-1,0): sum 1, mean 1/3. L'(d) = -max(db, 0) (sum): Clarke- but not d-stationary.
# b = t: sum 1 - t + t^2; t = 1/2 -> 3/4, mean 1/4. Global min 0 at (-1, 0, -2, 1).
_X_GT5 = col(-1, 0, 1)
_add(name="gt05", layers=net(([[1]], [0]), ([[1]], [0])), X=_X_GT5, y=vec(-1, 1, 1),
     activation="relu", loss="square", loss_mean=q("1/3"), verdict="not_stationary",
     first_order_stationary=False,
     flags=_flags(differentiable=False, clarke_stationary=True),
     descent=(Descent(d=vec(0, 1, 0, 0), t=q("1/2"), loss_mean=q("1/4")),),
     lower_point=net(([[-1]], [0]), ([[-2]], [1])), lower_loss_mean=ZERO,
     source="REFERENCES.md GT-5")

# GT-6: layers (w,b) = (1,2), (v,beta) = (1,-2), (a,c) = (1,0): f = relu(x) as GT-5.
# L'(d) = -max(2dv + db + dbeta, 0). beta = -2 + t: sum 1 - t + t^2; t = 1/2 -> mean 1/4.
# Flat order (w, b, v, beta, a, c).
_add(name="gt06", layers=net(([[1]], [2]), ([[1]], [-2]), ([[1]], [0])), X=_X_GT5,
     y=vec(-1, 1, 1), activation="relu", loss="square", loss_mean=q("1/3"),
     verdict="not_stationary", first_order_stationary=False,
     flags=_flags(differentiable=False, clarke_stationary=True),
     descent=(Descent(d=vec(0, 0, 0, 1, 0, 0), t=q("1/2"), loss_mean=q("1/4")),),
     source="REFERENCES.md GT-6")

# GT-7: x = (0,1,2,3), y = (1/2,-1,2,3/2), (w,b,a,c) = (1,-1,1,0): outputs (0,0,1,2), residuals
# (-1/2,1,-1,1/2): sum 5/4, mean 5/16. L'(d) = 1/2|dw + db| (sum); on the critical cone the
# loss grows except along the rescaling orbit.
_X_GT7 = col(0, 1, 2, 3)
_Y_GT7 = vec("1/2", -1, 2, "3/2")
_add(name="gt07", layers=net(([[1]], [-1]), ([[1]], [0])), X=_X_GT7, y=_Y_GT7,
     activation="relu", loss="square", loss_mean=q("5/16"), verdict="local_min",
     first_order_stationary=True, flags=_flags(differentiable=False, strict=True, flat=False),
     source="REFERENCES.md GT-7")

# GT-8: layers (1,1), (1,-2), (1,0): relu(relu(x+1) - 2) = relu(x - 1), same outputs as GT-7.
_add(name="gt08", layers=net(([[1]], [1]), ([[1]], [-2]), ([[1]], [0])), X=_X_GT7, y=_Y_GT7,
     activation="relu", loss="square", loss_mean=q("5/16"), verdict="local_min",
     first_order_stationary=True, flags=_flags(differentiable=False),
     source="REFERENCES.md GT-8")

# GT-9: x = (-1,0,1), y = (1,-1,1), (1,0,1,0): outputs (0,0,1), residuals (-1,1,0): mean 1/3.
# L'(d) = max(db, 0); flat curve w = 1+s, b = -s (s >= 0) beyond the rescaling orbit.
_add(name="gt09", layers=net(([[1]], [0]), ([[1]], [0])), X=_X_GT5, y=vec(1, -1, 1),
     activation="relu", loss="square", loss_mean=q("1/3"), verdict="local_min",
     first_order_stationary=True, flags=_flags(differentiable=False, strict=False, flat=False),
     source="REFERENCES.md GT-9")

# GT-10: x = (-1,0,1), y = (1,0,1). Unit 1 zero (all data on its kink, a1 = 0), unit 2 active.
# Outputs 2/3, residuals (-1/3, 2/3, -1/3): sum 1/3, mean 1/9. Flat order
# (w1, w2, b1, b2, a1, a2, c). dw1 = da1 = t: sum change -t^2/3 + t^4/2; t = 1/10 ->
# -197/60000 (sum), mean 1/9 - 197/180000 = 6601/60000.
_add(name="gt10", layers=net(([[0], [0]], [0, 1]), ([[0, 1]], ["-1/3"])), X=_X_GT5,
     y=vec(1, 0, 1), activation="relu", loss="square", loss_mean=q("1/9"), verdict="saddle",
     first_order_stationary=True, flags=_flags(differentiable=True),
     descent=(Descent(d=vec(1, 0, 0, 0, 1, 0, 0), t=q("1/10"), loss_mean=q("6601/60000")),),
     source="REFERENCES.md GT-10")

# GT-11: x = (-1,0,1), y = (-1,0,1), (0,1,0,0): outputs 0, residuals (1,0,-1): mean 1/3.
# a = w = t: sum 1 - t^2/2 + t^4; t = 1/2 -> 15/16, mean 5/16. Global 0 at (1,1,1,-1).
_add(name="gt11", layers=net(([[0]], [1]), ([[0]], [0])), X=_X_GT5, y=vec(-1, 0, 1),
     activation="relu", loss="square", loss_mean=q("1/3"), verdict="saddle",
     first_order_stationary=True, flags=_flags(differentiable=True),
     descent=(Descent(d=vec(1, 0, 1, 0), t=q("1/2"), loss_mean=q("5/16")),),
     lower_point=net(([[1]], [1]), ([[1]], [-1])), lower_loss_mean=ZERO,
     source="REFERENCES.md GT-11")

# GT-12: x = (-1,1), y = ((0,-2),(0,2)); w = 0, b = 1, W2 = (1,0)^T, b2 = (-1,0): outputs
# (0,0), sum 4, mean 2. Flat order (w, b, a1, a2, c1, c2). dw = da2 = t: sum 4 - 2t^2 + t^4;
# t = 1/2 -> 57/16, mean 57/32. Global 0 at w = 1, b = 1, W2 = (0,2)^T, b2 = (0,-2).
_add(name="gt12", layers=net(([[0]], [1]), ([[1], [0]], [-1, 0])), X=col(-1, 1),
     y=(vec(0, -2), vec(0, 2)), activation="relu", loss="square", loss_mean=q(2),
     verdict="saddle", first_order_stationary=True, flags=_flags(differentiable=True),
     descent=(Descent(d=vec(1, 0, 0, 1, 0, 0), t=q("1/2"), loss_mean=q("57/32")),),
     lower_point=net(([[1]], [1]), ([[0], [2]], [0, -2])), lower_loss_mean=ZERO,
     source="REFERENCES.md GT-12")

# GT-13: hinge, x = (-3,-1,1,3), y = (-1,-1,1,1). Outputs (-2,0,0,2), margins (2,0,0,2):
# sum 2, mean 1/2. x = +-1 dead for both units (pre-activations <= -1): their loss is
# (1 + c') + (1 - c') = 2 nearby, x = +-3 keep margin > 1: L constant near theta.
# Lower point b1 = (0,0): f = 2x, margins >= 2, loss 0.
_X_GT13 = col(-3, -1, 1, 3)
_Y_GT13 = (-1, -1, 1, 1)
_THETA_GT13 = net(([[1], [-1]], [-2, -2]), ([[2, -2]], [0]))
_add(name="gt13", layers=_THETA_GT13, X=_X_GT13, y=_Y_GT13, activation="relu", loss="hinge",
     loss_mean=q("1/2"), verdict="local_min", first_order_stationary=True,
     flags=_flags(differentiable=True, strict=False, flat=True, spurious=True, global_=False),
     lower_point=net(([[1], [-1]], [0, 0]), ([[2, -2]], [0])), lower_loss_mean=ZERO,
     source="REFERENCES.md GT-13")
# GT-13b (leaky 1/10): outputs (-3, -2/5, 2/5, 3), losses (0, 3/5, 3/5, 0): sum 6/5, mean 3/10.
# Gradient (sum, order w1,w2,b1,b2,a1,a2,c) = (-2/5, 2/5, 0, 0, -1/5, 1/5, 0); d = -5 grad.
# t = 1/10: w = (6/5, -6/5), a = (21/10, -21/10): f(+-1) = +-2.1 * 0.24 = +-63/125, margins
# 63/125 at x = +-1, 567/125 at x = +-3: sum 2 * 62/125, mean 31/125.
_add(name="gt13b_leaky", layers=_THETA_GT13, X=_X_GT13, y=_Y_GT13, activation=LEAKY_10,
     loss="hinge", loss_mean=q("3/10"), verdict="not_stationary", first_order_stationary=False,
     flags=_flags(differentiable=True, clarke_stationary=False),
     descent=(Descent(d=vec(2, -2, 0, 0, 1, -1, 0), t=q("1/10"), loss_mean=q("31/125")),),
     source="REFERENCES.md GT-13b")

# GT-14: absolute loss, x = (-1,0,1), y = (0,1,2), (0,1,0,1): outputs 1, residuals (1,0,-1):
# sum 2, mean 2/3. L'(d) = |da + dc|. dw = da = t, dc = -t: f = 1 + t^2 x, sum 2 - 2t^2;
# t = 1/2 -> 3/2, mean 1/2. Global 0 at (1,1,1,0).
_add(name="gt14", layers=net(([[0]], [1]), ([[0]], [1])), X=_X_GT5, y=vec(0, 1, 2),
     activation="relu", loss="absolute", loss_mean=q("2/3"), verdict="saddle",
     first_order_stationary=True, flags=_flags(differentiable=False),
     descent=(Descent(d=vec(1, 0, 1, -1), t=q("1/2"), loss_mean=q("1/2")),),
     lower_point=net(([[1]], [1]), ([[1]], [0])), lower_loss_mean=ZERO,
     source="REFERENCES.md GT-14")

# GT-15: linear 1-1-1-1 at theta = 0, x = (-1,1), y = (-1,1): sum 1, mean 1/2. Flat order
# (w1, b1, w2, b2, w3, b3). w1 = w2 = w3 = t: f = t^3 x, sum (1 - t^3)^2; t = 1/2 -> 49/64,
# mean 49/128. Third-order saddle: the tool may say inconclusive, never local_min.
_add(name="gt15", layers=net(([[0]], [0]), ([[0]], [0]), ([[0]], [0])), X=col(-1, 1),
     y=vec(-1, 1), activation="identity", loss="square", loss_mean=q("1/2"), verdict="saddle",
     first_order_stationary=True, flags=_flags(differentiable=True), allow_inconclusive=True,
     descent=(Descent(d=vec(1, 0, 1, 0, 1, 0), t=q("1/2"), loss_mean=q("49/128")),),
     source="REFERENCES.md GT-15")

# GT-16: x = (0,1,2,3), y = (0,1,4,5), (2,-2/3,1,0): pre-activations (-2/3,4/3,10/3,16/3),
# residuals (0,1/3,-2/3,1/3): sum 1/3, mean 1/12. Hand check of grad = 0 (sum): dc: 0;
# da: (4 - 20 + 16)/9 = 0; dw: 1/3 - 4/3 + 1 = 0; db: 1/3 - 2/3 + 1/3 = 0.
_X_GT16 = col(0, 1, 2, 3)
_Y_GT16 = vec(0, 1, 4, 5)
_THETA_GT16 = net(([[2]], ["-2/3"]), ([[1]], [0]))
_add(name="gt16", layers=_THETA_GT16, X=_X_GT16, y=_Y_GT16, activation="relu", loss="square",
     loss_mean=q("1/12"), verdict="local_min", first_order_stationary=True,
     flags=_flags(differentiable=True, strict=True, flat=False), source="REFERENCES.md GT-16")
# GT-16b: lambda = 1/10: mean = 1/12 + (1/20)(4 + 4/9 + 1) = 1/12 + 49/180 = 16/45.
# Gradient = lambda theta != 0. Certificates: the line d = -theta (data loss changes at second
# order only, since sum r f0 = 0, the penalty at first order), and the second-order expansion
# of the rescaling orbit (2s, -2s/3, 1/s), s = 1 - t: d = (-2, 2/3, 1, 0), e = (0, 0, 2, 0);
# on it a (w, b) = (1 - t^3)(2, -2/3), so the data loss moves by O(t^6) while the penalty
# derivative is lambda (1 - 40/9) < 0.
_add(name="gt16b_weight_decay", layers=_THETA_GT16, X=_X_GT16, y=_Y_GT16, activation="relu",
     loss="square", weight_decay=q("1/10"), loss_mean=q("16/45"), verdict="not_stationary",
     first_order_stationary=False, flags=_flags(differentiable=True, clarke_stationary=False),
     descent=(Descent(d=vec(-2, "2/3", -1, 0), t=q("1/100")),
              Descent(d=vec(-2, "2/3", 1, 0), e=vec(0, 0, 2, 0), t=q("1/10"))),
     source="REFERENCES.md GT-16b (lambda = 1/10)")


# =============================================================================================
# Additional hand-derived cases. Sums are "S", means "mean". Order (w, b, a, c) for 1-1-1 nets.
# =============================================================================================

# smooth_not_stationary: x = (1,2), y = (0,1), (1,0,1,0): f = x (active), residuals (1,1);
# S = 1, mean 1/2. dL/dc = mean r = 1 != 0. c = -t, t = 1/2: residuals (1/2,1/2), S = 1/4,
# mean 1/8.
_add(name="smooth_not_stationary", layers=net(([[1]], [0]), ([[1]], [0])), X=col(1, 2),
     y=vec(0, 1), activation="relu", loss="square", loss_mean=q("1/2"),
     verdict="not_stationary", first_order_stationary=False,
     flags=_flags(differentiable=True, clarke_stationary=False),
     descent=(Descent(d=vec(0, 0, 0, -1), t=q("1/2"), loss_mean=q("1/8")),),
     source="derived: smooth point with nonzero gradient")

# abs_convex_kink: abs activation, x = (-1,0,1,2), (1,0,1,0): f = |x| = (1,0,1,2);
# y = (3/2,-1,5/2,1), residuals r = (-1/2,1,-3/2,1); S = 1/2 (1/4+1+9/4+1) = 9/4, mean 9/16.
# x = 0 sits on the kink. Directional derivative (S):
#   L'(d) = dc sum r + da sum r|z| + dw sum_{i!=0} r sgn(z) x + db sum_{i!=0} r sgn(z) + r_0|db|
#         = dc*0 + da*(-1/2 - 3/2 + 2) + dw*(-1/2 - 3/2 + 2) + db*(1/2 - 3/2 + 1) + |db| = |db|.
# Interior multiplier (0 in the interior of [-1, 1]): a convex kink. With a ~ 1 > 0 the loss
# depends on theta only through (u_w, u_b, c) = (a w, a b, c) (abs is positively homogeneous), a
# submersion; in u the loss is, on each of the two pieces u_b >= 0 / u_b <= 0, a convex
# quadratic with feature vectors (1,-1,1), (1,1,1), (2,1,1) of x = -1, 1, 2 (det -2: positive
# definite). REFERENCES A4.5-1: local min iff d-stationary; strict in u, i.e. modulo rescaling.
_add(name="abs_convex_kink", layers=net(([[1]], [0]), ([[1]], [0])), X=col(-1, 0, 1, 2),
     y=vec("3/2", -1, "5/2", 1), activation="abs", loss="square", loss_mean=q("9/16"),
     verdict="local_min", first_order_stationary=True,
     flags=_flags(differentiable=False, strict=True, flat=False),
     source="derived: abs activation, convex kink |db|, interior multiplier")

# abs_concave_kink: same network, y = (1/2,1,-1/2,3), residuals r = (1/2,-1,3/2,-1);
# S = 9/4, mean 9/16. Same sums as above with r_0 = -1: sum r = 0, sum r|z| = 1/2 + 3/2 - 2 = 0,
# sum r sgn(z) x = 1/2 + 3/2 - 2 = 0, sum r sgn(z) = -1/2 + 3/2 - 1 = 0, so L'(d) = -|db|:
# Clarke-stationary (b-slopes -1 and +1 around 0) but both +b and -b descend.
# b = t: residuals (1/2 - t, t - 1, 3/2 + t, t - 1), S = 9/4 - t + 2t^2; t = 1/4 ->
# S = 17/8, mean 17/32.
_add(name="abs_concave_kink", layers=net(([[1]], [0]), ([[1]], [0])), X=col(-1, 0, 1, 2),
     y=vec("1/2", 1, "-1/2", 3), activation="abs", loss="square", loss_mean=q("9/16"),
     verdict="not_stationary", first_order_stationary=False,
     flags=_flags(differentiable=False, clarke_stationary=True),
     descent=(Descent(d=vec(0, 1, 0, 0), t=q("1/4"), loss_mean=q("17/32")),
              Descent(d=vec(0, -1, 0, 0), t=q("1/4"), loss_mean=q("17/32"))),
     source="derived: abs activation, concave kink -|db|")

# leaky_concave_kink: h = max(z, z/4), x = (-1,0,1), (1,0,1,0): f = (-1/4, 0, 1);
# y = (-5/4, 5/4, 3/4), r = (1, -5/4, 1/4); S = 1/2 (1 + 25/16 + 1/16) = 21/16, mean 7/16.
# sum r = 0; da: sum r h(z) = -1/4 + 1/4 = 0; dw: (1)(1/4)(-1) + (1/4)(1)(1) = 0;
# db smooth part: (1)(1/4) + (1/4)(1) = 1/2; kink: r_0 h'(0; db) = -5/4 max(db, db/4).
# L'(d) = db/2 - 5/4 max(db, db/4): db > 0 -> -3/4 db; db < 0 -> 3/16 db: both signs descend.
# Clarke: 1/2 - 5/4 [1/4, 1] = [-3/4, 3/16] contains 0.
# b = t: residuals (1 + t/4, t - 5/4, t + 1/4): S = 21/16 - 3t/4 + 33t^2/32;
# t = 1/4: S = 18/16 + 33/512 = 609/512, mean 203/512.
_add(name="leaky_concave_kink", layers=net(([[1]], [0]), ([[1]], [0])), X=col(-1, 0, 1),
     y=vec("-5/4", "5/4", "3/4"), activation=LEAKY_4, loss="square", loss_mean=q("7/16"),
     verdict="not_stationary", first_order_stationary=False,
     flags=_flags(differentiable=False, clarke_stationary=True),
     descent=(Descent(d=vec(0, 1, 0, 0), t=q("1/4"), loss_mean=q("203/512")),),
     source="derived: leaky relu 1/4, concave kink")

# hinge_margin_one_min: hinge, x = (-1,0,1), y = (1,-1,1), (w,b,a,c) = (0,1,1,0): unit active
# (pre-activation 1) so f = 1, margins (1,-1,1), losses (0,2,0): S = 2, mean 2/3.
# Near theta all pre-activations stay positive, so f = A x + B (A = a w, B = a b + c) and
# L >= min over affine maps of S(A,B) = max(0,1-B+A) + max(0,1+B) + max(0,1-A-B). At
# (A,B) = (0,1): 0 = (0,1) + mu1 (1,-1) + mu3 (-1,-1) with mu1 = mu3 = 1/2 in [0,1]: (0,1) is
# the affine optimum. Hence a local minimum with two margins exactly 1 (loss kinks).
# Not strict: (db, dc) = (s, -s) keeps f.
_add(name="hinge_margin_one_min", layers=net(([[0]], [1]), ([[1]], [0])), X=col(-1, 0, 1),
     y=(1, -1, 1), activation="relu", loss="hinge", loss_mean=q("2/3"), verdict="local_min",
     first_order_stationary=True, flags=_flags(differentiable=False, strict=False, flat=False),
     source="derived: hinge margins at 1 with interior multipliers")

# hinge_margin_one_not_stationary: same network, y = (1,1,-1): margins (1,1,-1), losses
# (0,0,2), mean 2/3. Multipliers would need 0 = (1,1) + mu1 (1,-1) + mu2 (0,-1): mu1 = -1 < 0.
# dw = -1 (dA = -1): margin at x = -1 grows, x = 0 unchanged, loss at x = 1 drops at rate 1.
# w = -1/2: f = (3/2, 1, 1/2), losses (0, 0, 3/2): S = 3/2, mean 1/2.
_add(name="hinge_margin_one_not_stationary", layers=net(([[0]], [1]), ([[1]], [0])),
     X=col(-1, 0, 1), y=(1, 1, -1), activation="relu", loss="hinge", loss_mean=q("2/3"),
     verdict="not_stationary", first_order_stationary=False,
     flags=_flags(differentiable=False, clarke_stationary=False),
     descent=(Descent(d=vec(-1, 0, 0, 0), t=q("1/2"), loss_mean=q("1/2")),),
     source="derived: hinge margins at 1, wrong-sign multiplier")

# dead_unit: GT-16 plus a second unit (w, b) = (-1, -1) with output weight 3/2: its
# pre-activations (-1,-2,-3,-4) are strictly negative, so it is zero on a neighbourhood and the
# loss there equals the GT-16 loss of the first unit: local min (GT-16), mean 1/12, not strict
# (the dead unit's parameters are flat).
_add(name="dead_unit", layers=net(([[2], [-1]], ["-2/3", -1]), ([[1, "3/2"]], [0])),
     X=_X_GT16, y=_Y_GT16, activation="relu", loss="square", loss_mean=q("1/12"),
     verdict="local_min", first_order_stationary=True,
     flags=_flags(differentiable=True, strict=False, flat=False),
     source="derived: GT-16 plus a dead unit")

# relu_zero_point: 1-1-1 ReLU at theta = 0, x = (-1,1), y = (-1,1): f = 0, S = 1, mean 1/2.
# f = a relu(w x + b) + c; a relu(...) is O(|theta|^2), so L'(d) = sum r_i dc = -dc sum y = 0:
# differentiable with zero gradient. Escape term da * sum r_i relu(dw x_i + db) with
# r = (1, -1): dw = da = t gives f = t^2 relu(x) = (0, t^2), S = 1/2 (1 + (1 - t^2)^2)
# = 1 - t^2 + t^4/2; t = 1/2 -> 25/32, mean 25/64. Saddle.
_add(name="relu_zero_point", layers=net(([[0]], [0]), ([[0]], [0])), X=col(-1, 1),
     y=vec(-1, 1), activation="relu", loss="square", loss_mean=q("1/2"), verdict="saddle",
     first_order_stationary=True, flags=_flags(differentiable=True),
     descent=(Descent(d=vec(1, 0, 1, 0), t=q("1/2"), loss_mean=q("25/64")),),
     source="derived: theta = 0 of a 1-1-1 relu net (escape neuron)")

# nested_double_kink: 1-1-1-1 ReLU, layers (w,b) = (1,0), (v,beta) = (1,0), (a,c) = (1,0);
# x = (-1,0,1), y = (1,-1,1) (GT-9 data): f = relu(relu(x)) = (0,0,1), residuals (-1,1,0),
# S = 1, mean 1/3. x = 0 is on the kink of both layers, x = -1 on the layer-2 kink.
# Near theta: f(-1) = a relu(beta) + c (layer 1 dead there), f(0) = a relu(v relu(b) + beta) + c,
# f(1) free (all active). With a, v > 0: f(0) >= f(-1), and
# min 1/2[(p - 1)^2 + (q + 1)^2] over q >= p is 1 (at p = q = 0), so S >= 1 = S(theta).
# L'(d) = relu(relu(db) + dbeta) - relu(dbeta) >= 0. Local min, not strict (db < 0 is flat).
_add(name="nested_double_kink", layers=net(([[1]], [0]), ([[1]], [0]), ([[1]], [0])),
     X=col(-1, 0, 1), y=vec(1, -1, 1), activation="relu", loss="square", loss_mean=q("1/3"),
     verdict="local_min", first_order_stationary=True,
     flags=_flags(differentiable=False, strict=False, flat=False),
     source="derived: nested kink in both hidden layers")

# nested_affine_min: 1-1-1-1 ReLU at (w,b) = (v,beta) = (a,c) = (1,0); x = (0,1,2,3),
# y = (0, 1/2, 3, 5/2). f = relu(relu(x)) = x: residuals (0, 1/2, -1, 1/2), S = 3/4, mean 3/16.
# x = 0 sits on the kink of both hidden layers (nested). x = 1, 2, 3 are strictly active in both
# layers, so near theta f(x) = A x + B there with A = a v w, B = a (v b + beta) + c, and
# L >= (1/4) * 1/2 * min_{A,B} sum_{x>0} (A x + B - y)^2 = 3/16 = L(theta): the residuals
# (1/2, -1, 1/2) are orthogonal to 1 and x, so (A, B) = (1, 0) is the LS fit. Local minimum, not
# strict (the fibre of (A, B, f(0)) is a 3-dimensional valley). The x = 0 residual is 0, so
# L'(theta; .) is linear: differentiable at first order.
_add(name="nested_affine_min", layers=net(([[1]], [0]), ([[1]], [0]), ([[1]], [0])),
     X=col(0, 1, 2, 3), y=vec(0, "1/2", 3, "5/2"), activation="relu", loss="square", loss_mean=q("3/16"),
     verdict="local_min", first_order_stationary=True,
     flags=_flags(differentiable=True, strict=False, global_=False),
     source="derived: nested kink at a zero-residual sample, LS fit elsewhere")

# nested_escape_saddle: 1-1-1-1 ReLU, (w,b) = (1,0), (v,beta) = (1,0), (a,c) = (0,0); x = (-1,0,1),
# y = (1,-1,0): f = 0, residuals (-1, 1, 0), S = 1, mean 1/3. x = 0 is on the kink of both layers,
# x = -1 on the layer-2 kink (beta = 0). With a = 0 every first-order term is dc + da relu(z2_i) and
# relu(z2) = (0, 0, 1), residual 0 at x = 1: L'(theta; .) = 0, d-stationary. Along
# d = (dw, db, dv, dbeta, da, dc) = (0, 1, 0, 0, -1, 0), theta + t d gives f = (0, -t^2, -t - t^2) and
# L = (2 - t^2 + 2 t^3 + 2 t^4) / 6 < 1/3 for small t; t = 1/4: 253/768. A saddle whose escape
# crosses both kinks of x = 0 (the layer-1 unit turns on, the layer-2 unit follows).
_add(name="nested_escape_saddle", layers=net(([[1]], [0]), ([[1]], [0]), ([[0]], [0])),
     X=col(-1, 0, 1), y=vec(1, -1, 0), activation="relu", loss="square", loss_mean=q("1/3"),
     verdict="saddle", first_order_stationary=True,
     flags=_flags(differentiable=True, strict=False),
     descent=(Descent(d=vec(0, 1, 0, 0, -1, 0), t=q("1/4"), loss_mean=q("253/768")),),
     source="derived: zero-output escape through nested kinks")

# multi_output_min: 1-1-2 ReLU, x = (0,1,2), y = ((0,0),(2,1),(1,2)). (w,b) = (1,1) (active,
# pre-activations 1,2,3), W2 = (1/2, 1)^T, b2 = (0,-1): f = ((x+1)/2, x), the per-output affine
# LS fits (output 1: slope 1/2, intercept 1/2; output 2 exact). Residuals output 1
# (1/2,-1,1/2): S = 3/4, mean 1/4. Near theta f = u x + v with u = W2 w, v = W2 b + b2, so
# L >= affine LS optimum = L(theta). Not strict (b and b2 trade off).
_add(name="multi_output_min", layers=net(([[1]], [1]), ([["1/2"], [1]], [0, -1])),
     X=col(0, 1, 2), y=(vec(0, 0), vec(2, 1), vec(1, 2)), activation="relu", loss="square",
     loss_mean=q("1/4"), verdict="local_min", first_order_stationary=True,
     flags=_flags(differentiable=True, strict=False, flat=False),
     source="derived: two outputs, locally affine at the LS fit")

# linear_global_min: identity 2-1-1, X = (0,0),(1,0),(0,1),(1,1), y = (0,1,1,1) (OR).
# LS fit f = 1/4 + x1/2 + x2/2 = (1/4,3/4,3/4,5/4), residuals (1/4,-1/4,-1/4,1/4): orthogonal to
# 1, x1, x2. S = 4/32 = 1/8, mean 1/32. The net is affine in x for every theta: global minimum.
_X_OR = rows((0, 0), (1, 0), (0, 1), (1, 1))
_Y_OR = vec(0, 1, 1, 1)
_add(name="linear_global_min", layers=net(([[1, 1]], [0]), ([["1/2"]], ["1/4"])), X=_X_OR,
     y=_Y_OR, activation="identity", loss="square", loss_mean=q("1/32"), verdict="local_min",
     first_order_stationary=True, flags=_flags(differentiable=True, strict=False, global_=True),
     source="derived: linear net at the least-squares solution")

# linear_not_stationary: same data, W1 = (1,1), b1 = 0, W2 = 1, b2 = 0: f = x1 + x2 =
# (0,1,1,2), residuals (0,0,0,1): S = 1/2, mean 1/8; dL/db2 = 1/4. Order (w11, w12, b1, a, c).
# c = -1/4: residuals (-1/4,-1/4,-1/4,3/4), S = 3/8, mean 3/32.
_add(name="linear_not_stationary", layers=net(([[1, 1]], [0]), ([[1]], [0])), X=_X_OR, y=_Y_OR,
     activation="identity", loss="square", loss_mean=q("1/8"), verdict="not_stationary",
     first_order_stationary=False, flags=_flags(differentiable=True, clarke_stationary=False),
     descent=(Descent(d=vec(0, 0, 0, 0, -1), t=q("1/4"), loss_mean=q("3/32")),),
     source="derived: linear net, nonzero gradient")

# multiclass_tie_saddle: multiclass hinge, 3 classes, x = (-1,0,1), y = (0,1,2); hidden unit
# (w,b) = (0,1) (active, h = 1), W2 = 0 (3x1), b2 = 0: f = (0,0,0) for every sample, each term
# 1 + max_{j!=y} f_j - f_y = 1 > 0 with a tie in the max: S = 3, mean 1.
# First order: df_i = dW2 + db2 =: s, the same for every sample, and
# L'(d) = sum_y (max_{j!=y} s_j - s_y) >= sum_y (mean_{j!=y} s_j - s_y) = 0: d-stationary.
# Second order: d = (dw, db, dW2, db2) = (1, 0, (-1,0,1), (1,0,-1)) gives
# f(x) = t dW2 (1 + t x) + t db2 = t^2 (-1,0,1) x: terms 1 - t^2, 1, 1 - t^2: S = 3 - 2t^2;
# t = 1/2 -> 5/2, mean 5/6. Order (w, b, a0, a1, a2, c0, c1, c2).
_add(name="multiclass_tie_saddle", layers=net(([[0]], [1]), ([[0], [0], [0]], [0, 0, 0])),
     X=col(-1, 0, 1), y=(0, 1, 2), activation="relu", loss="multiclass_hinge",
     loss_mean=q(1), verdict="saddle", first_order_stationary=True,
     flags=_flags(differentiable=False),
     descent=(Descent(d=vec(1, 0, -1, 0, 1, 1, 0, -1), t=q("1/2"), loss_mean=q("5/6")),),
     source="derived: multiclass hinge with three-way ties, second-order escape")

# multiclass_tie_global: three copies of x = 1 labelled 0, 1, 2; (w,b) = (1,0) (h = 1),
# W2 = (1,1,1)^T, b2 = 0: f = (1,1,1), each term 1 (tie): S = 3, mean 1. Every network gives the
# same f on the three samples, and sum_y max(0, 1 + max_{j!=y} f_j - f_y)
# >= 3 + sum_y (mean_{j!=y} f_j - f_y) = 3: global minimum. Not strict (b2 + s(1,1,1) is flat).
_add(name="multiclass_tie_global", layers=net(([[1]], [0]), ([[1], [1], [1]], [0, 0, 0])),
     X=col(1, 1, 1), y=(0, 1, 2), activation="relu", loss="multiclass_hinge", loss_mean=q(1),
     verdict="local_min", first_order_stationary=True,
     flags=_flags(differentiable=False, strict=False, global_=True),
     source="derived: multiclass hinge ties at a global minimum")

# absolute_residual_zero: absolute loss, x = (0,1,2), y = (0,2,1); (w,b,a,c) = (1,1,1/2,-1/2)
# (active, pre-activations 1,2,3): f = x/2 = (0,1/2,1), residuals (0,-3/2,0): S = 3/2,
# mean 1/2. Near theta f = A x + B (affine), and (A,B) = (1/2,0) is the least-absolute-
# deviations fit: 0 = -(1,1) + mu0 (0,1) + mu2 (2,1) gives mu2 = 1/2, mu0 = 1/2 in [-1,1].
# Local min with two zero residuals (loss kinks). Spurious: (w,b,a,c) = (-1,1,-3/2,3/2) gives
# f = (0,3/2,3/2), residuals (0,-1/2,1/2): S = 1, mean 1/3. Not strict (b, c trade off).
_add(name="absolute_residual_zero", layers=net(([[1]], [1]), ([["1/2"]], ["-1/2"])),
     X=col(0, 1, 2), y=vec(0, 2, 1), activation="relu", loss="absolute", loss_mean=q("1/2"),
     verdict="local_min", first_order_stationary=True,
     flags=_flags(differentiable=False, strict=False, spurious=True, global_=False),
     lower_point=net(([[-1]], [1]), ([["-3/2"]], ["3/2"])), lower_loss_mean=q("1/3"),
     source="derived: absolute loss, LAD fit through two samples")


CASES = tuple(CASES)
_BY_NAME = {case.name: case for case in CASES}
if len(_BY_NAME) != len(CASES):
    raise RuntimeError("duplicate reference case names")


def by_name(name: str) -> Case:
    """Return the reference case called ``name``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no reference case {name!r}; known: {sorted(_BY_NAME)}") from None
