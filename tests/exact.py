"""Exact rational-arithmetic oracle for the reference cases.

This module is the independent ground truth of the test-suite: it never imports ``certify``.
Every quantity is computed with :class:`fractions.Fraction`, so a loss difference
``L(theta + r d) - L(theta)`` is exact and its sign is never a rounding artefact.

Conventions (the same as the tool's)
------------------------------------
* Network with layers ``l = 1..L``: ``z^l = W_l x^{l-1} + b_l``, ``W_l`` of shape (out, in)
  (PyTorch orientation), ``x^l = act(z^l)`` for the hidden layers, output ``f = z^L`` (no
  activation on the last layer).
* ``layers`` is a sequence of ``(W, b)`` with ``W`` a sequence of rows and ``b`` a sequence, all
  entries :class:`~fractions.Fraction` (ints are accepted).
* Activations: ``"relu"``, ``("leaky_relu", alpha)`` meaning ``max(z, alpha z)`` with
  ``0 <= alpha < 1``, ``"abs"`` meaning ``|z|``, ``"identity"``.
* Flat parameter vector ``theta``: ``W1`` row-major, ``b1``, ``W2`` row-major, ``b2``, ..., ``WL``,
  ``bL``.
* Loss: ``L(theta) = (1/n) sum_i l(f_i, y_i) + (lambda/2) ||theta||^2`` (mean over samples, weight
  decay on all weights and biases). ``l`` is one of

  - ``"square"``: ``1/2 ||f - y||^2`` (``y_i`` a scalar for one output, or a sequence);
  - ``"hinge"``: ``max(0, 1 - y f)``, one output, ``y in {-1, +1}``;
  - ``"multiclass_hinge"`` (Crammer-Singer): ``max(0, 1 + max_{j != y} f_j - f_y)``, ``y`` an
    integer class index;
  - ``"absolute"``: ``sum_k |f_k - y_k|``;
  - ``"logistic"``: ``log(1 + exp(-y f))``, ``y in {-1, +1}``;
  - ``"cross_entropy"``: ``logsumexp(f) - f_y``.

  The first four are rational and evaluated exactly (:class:`~fractions.Fraction`); the last two
  are evaluated with :mod:`decimal` at 50 significant digits (:class:`~decimal.Decimal`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

RATIONAL_LOSSES = ("square", "hinge", "multiclass_hinge", "absolute")
SMOOTH_LOSSES = ("logistic", "cross_entropy")
DECIMAL_DIGITS = 50

Number = Union[int, Fraction]
Layers = Sequence[Tuple[Sequence[Sequence[Number]], Sequence[Number]]]


# --------------------------------------------------------------------------------------------
# Parameters: layers <-> flat theta
# --------------------------------------------------------------------------------------------

def as_fraction(value: Any) -> Fraction:
    """Return ``value`` as an exact :class:`~fractions.Fraction`.

    Ints, strings such as ``"4/3"`` and Fractions are converted exactly; a float is converted to
    its exact binary value (``Fraction(0.1) != Fraction(1, 10)``).
    """
    if isinstance(value, Fraction):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"a boolean is not a number here: {value!r}")
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    return Fraction(value)


def shapes_of(layers: Layers) -> list:
    """Return the list of weight shapes ``(n_out, n_in)``, one per layer."""
    shapes = []
    for l, (W, b) in enumerate(layers, start=1):
        n_out = len(W)
        n_in = len(W[0]) if n_out else 0
        if any(len(row) != n_in for row in W):
            raise ValueError(f"layer {l}: ragged weight rows")
        if len(b) != n_out:
            raise ValueError(f"layer {l}: bias has {len(b)} entries, W has {n_out} rows")
        shapes.append((n_out, n_in))
    for l in range(1, len(shapes)):
        if shapes[l][1] != shapes[l - 1][0]:
            raise ValueError(
                f"layer {l + 1} expects {shapes[l][1]} inputs but layer {l} has "
                f"{shapes[l - 1][0]} outputs")
    return shapes


def n_params(shapes: Sequence[Tuple[int, int]]) -> int:
    """Number of parameters ``sum_l n_out (n_in + 1)`` for the given weight shapes."""
    return sum(n_out * (n_in + 1) for n_out, n_in in shapes)


def flatten(layers: Layers) -> list:
    """Flatten ``layers`` to ``theta = (W1 row-major, b1, W2 row-major, b2, ...)``.

    Parameters
    ----------
    layers : sequence of (W, b)
        ``W`` a sequence of rows, ``b`` a sequence; entries Fraction or int.

    Returns
    -------
    list of Fraction
    """
    shapes_of(layers)  # validates
    theta = []
    for W, b in layers:
        for row in W:
            theta.extend(as_fraction(v) for v in row)
        theta.extend(as_fraction(v) for v in b)
    return theta


def unflatten(theta: Sequence[Number], shapes: Sequence[Tuple[int, int]]) -> list:
    """Inverse of :func:`flatten`.

    Parameters
    ----------
    theta : sequence of Fraction
        Flat parameters in the order of :func:`flatten`.
    shapes : sequence of (n_out, n_in)
        Weight shapes, e.g. from :func:`shapes_of`.

    Returns
    -------
    list of (W, b)
        ``W`` a list of rows (lists of Fraction), ``b`` a list of Fraction.
    """
    if len(theta) != n_params(shapes):
        raise ValueError(f"theta has {len(theta)} entries, shapes {list(shapes)} need "
                         f"{n_params(shapes)}")
    layers = []
    k = 0
    for n_out, n_in in shapes:
        W = []
        for _ in range(n_out):
            W.append([as_fraction(v) for v in theta[k:k + n_in]])
            k += n_in
        b = [as_fraction(v) for v in theta[k:k + n_out]]
        k += n_out
        layers.append((W, b))
    return layers


def perturbed(layers: Layers, d: Sequence[Number], t: Number) -> list:
    """Return the layers at ``theta + t d``.

    Parameters
    ----------
    layers : sequence of (W, b)
        The base point ``theta``.
    d : sequence of Fraction
        Flat direction, same order and length as :func:`flatten`.
    t : Fraction
        Step.
    """
    theta = flatten(layers)
    if len(d) != len(theta):
        raise ValueError(f"direction has {len(d)} entries, theta has {len(theta)}")
    t = as_fraction(t)
    return unflatten([th + t * as_fraction(di) for th, di in zip(theta, d)], shapes_of(layers))


def on_curve(layers: Layers, d: Sequence[Number], t: Number,
             e: Optional[Sequence[Number]] = None) -> list:
    """Return the layers at ``theta + t d + (t^2 / 2) e`` (``e = None`` means a straight line)."""
    if e is None:
        return perturbed(layers, d, t)
    theta = flatten(layers)
    if len(d) != len(theta) or len(e) != len(theta):
        raise ValueError(f"curve has len(d)={len(d)}, len(e)={len(e)}; theta has {len(theta)}")
    t = as_fraction(t)
    half_t2 = t * t / 2
    new = [th + t * as_fraction(di) + half_t2 * as_fraction(ei)
           for th, di, ei in zip(theta, d, e)]
    return unflatten(new, shapes_of(layers))


# --------------------------------------------------------------------------------------------
# Forward pass and losses
# --------------------------------------------------------------------------------------------

def activation_function(activation):
    """Return the scalar activation ``h`` for an activation spec.

    Parameters
    ----------
    activation : str or tuple
        ``"relu"``, ``("leaky_relu", alpha)`` (``max(z, alpha z)``, ``0 <= alpha < 1``),
        ``"abs"`` or ``"identity"``.
    """
    if activation == "relu":
        return lambda z: z if z > 0 else z * 0
    if activation == "abs":
        return abs
    if activation == "identity":
        return lambda z: z
    if isinstance(activation, (tuple, list)) and len(activation) == 2 \
            and activation[0] == "leaky_relu":
        alpha = as_fraction(activation[1])
        if not 0 <= alpha < 1:
            raise ValueError(f"leaky_relu needs 0 <= alpha < 1, got {alpha}")
        return lambda z: z if z >= 0 else alpha * z
    raise ValueError(f"unknown activation {activation!r}")


def forward(layers: Layers, x: Sequence[Number], activation) -> list:
    """Network output ``f(x)`` (exact), activation on hidden layers only."""
    h = activation_function(activation)
    a = [as_fraction(v) for v in x]
    n_layers = len(layers)
    for l, (W, b) in enumerate(layers, start=1):
        if len(W[0]) != len(a):
            raise ValueError(f"layer {l} expects {len(W[0])} inputs, got {len(a)}")
        z = [sum((w * ak for w, ak in zip(row, a)), b_j) for row, b_j in zip(W, b)]
        a = z if l == n_layers else [h(zj) for zj in z]
    return a


def _to_decimal(q: Fraction) -> Decimal:
    return Decimal(q.numerator) / Decimal(q.denominator)


def _log1p_exp(z: Decimal) -> Decimal:
    """``log(1 + exp(z))`` computed stably in the current decimal context."""
    if z > 0:
        return z + (1 + (-z).exp()).ln()
    return (1 + z.exp()).ln()


def sample_loss(f: Sequence[Fraction], y_i, loss_name: str):
    """Loss ``l(f_i, y_i)`` of one sample (Fraction, or Decimal for the smooth losses)."""
    if loss_name == "square":
        targets = _as_target_vector(y_i, len(f))
        return sum(((fk - yk) ** 2 for fk, yk in zip(f, targets)), Fraction(0)) / 2
    if loss_name == "absolute":
        targets = _as_target_vector(y_i, len(f))
        return sum((abs(fk - yk) for fk, yk in zip(f, targets)), Fraction(0))
    if loss_name == "hinge":
        _check_binary(f, y_i)
        return max(Fraction(0), 1 - as_fraction(y_i) * f[0])
    if loss_name == "multiclass_hinge":
        c = _check_class(f, y_i)
        runner_up = max(fj for j, fj in enumerate(f) if j != c)
        return max(Fraction(0), 1 + runner_up - f[c])
    if loss_name == "logistic":
        _check_binary(f, y_i)
        return _log1p_exp(_to_decimal(-as_fraction(y_i) * f[0]))
    if loss_name == "cross_entropy":
        c = _check_class(f, y_i)
        fd = [_to_decimal(fj) for fj in f]
        m = max(fd)
        return m + sum((fj - m).exp() for fj in fd).ln() - fd[c]
    raise ValueError(f"unknown loss {loss_name!r}")


def _as_target_vector(y_i, n_out: int) -> list:
    if isinstance(y_i, (list, tuple, np.ndarray)):
        targets = [as_fraction(v) for v in y_i]
    else:
        targets = [as_fraction(y_i)]
    if len(targets) != n_out:
        raise ValueError(f"target has {len(targets)} entries, network has {n_out} outputs")
    return targets


def _check_binary(f, y_i) -> None:
    if len(f) != 1:
        raise ValueError(f"binary loss needs one output, network has {len(f)}")
    if y_i not in (-1, 1):
        raise ValueError(f"binary label must be -1 or +1, got {y_i!r}")


def _check_class(f, y_i) -> int:
    c = int(y_i)
    if c != y_i or not 0 <= c < len(f) or len(f) < 2:
        raise ValueError(f"class label {y_i!r} invalid for {len(f)} outputs")
    return c


def loss(layers: Layers, X, y, activation, loss_name: str, weight_decay: Number = 0):
    """Exact training loss ``(1/n) sum_i l(f(x_i), y_i) + (lambda/2) ||theta||^2``.

    Parameters
    ----------
    layers : sequence of (W, b)
    X : sequence of rows
        Inputs, one row per sample.
    y : sequence
        Targets: scalars or rows (square, absolute), ``+-1`` (hinge, logistic), class indices
        (multiclass_hinge, cross_entropy).
    activation : str or tuple
        See :func:`activation_function`.
    loss_name : str
        One of :data:`RATIONAL_LOSSES` or :data:`SMOOTH_LOSSES`.
    weight_decay : Fraction
        ``lambda`` in ``(lambda/2) ||theta||^2``.

    Returns
    -------
    Fraction for the rational losses, Decimal (50 digits) for the smooth ones.
    """
    if len(X) != len(y) or len(X) == 0:
        raise ValueError(f"need as many targets as samples (>0): {len(X)} samples, {len(y)} "
                         f"targets")
    weight_decay = as_fraction(weight_decay)
    with localcontext() as ctx:
        ctx.prec = DECIMAL_DIGITS
        total = sum(sample_loss(forward(layers, x, activation), y_i, loss_name)
                    for x, y_i in zip(X, y))
        value = total / len(X)
        if weight_decay:
            penalty = weight_decay / 2 * sum(th * th for th in flatten(layers))
            value = value + (_to_decimal(penalty) if isinstance(value, Decimal) else penalty)
        elif isinstance(value, Decimal):
            value = +value
    return value


# --------------------------------------------------------------------------------------------
# Brute-force probe
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeResult:
    """Outcome of :func:`probe`.

    Attributes
    ----------
    min_difference : Fraction
        Smallest exact ``L(theta + r d) - L(theta)`` found (``< 0`` means a decrease was found).
    direction : tuple of Fraction
        The direction ``d`` giving it.
    radius : Fraction
        The radius ``r`` giving it.
    max_difference : Fraction
        Largest exact difference found (``== 0`` together with ``min_difference == 0``: every
        probed point has exactly the loss of theta).
    loss0 : Fraction
        ``L(theta)``.
    n_evaluations : int
        Number of loss evaluations made.
    """

    min_difference: Any
    direction: tuple
    radius: Fraction
    max_difference: Any
    loss0: Any
    n_evaluations: int

    @property
    def found_decrease(self) -> bool:
        """True iff some probed point has a strictly lower exact loss."""
        return self.min_difference < 0


def _radius_to_fraction(r) -> Fraction:
    """Radii given as floats are read as decimals: ``1e-2 -> 1/100`` (not the binary value)."""
    if isinstance(r, float):
        return Fraction(repr(r))
    return as_fraction(r)


def probe_directions(n_params_: int, n_random: int = 200, seed: int = 0) -> list:
    """Directions tried by :func:`probe`, all with max-norm ``<= 1`` and rational entries.

    ``+e_k`` and ``-e_k`` for every coordinate, ``n_random`` dense directions with entries
    ``k/16``, ``k in [-16, 16]``, and ``n_random`` sparse directions with 2 or 3 non-zero entries
    ``k/4``, ``k in [-4, 4] \\ {0}``; reproducible from ``seed``.
    """
    p = n_params_
    rng = random.Random(seed)
    directions = []
    for k in range(p):
        for sign in (1, -1):
            d = [Fraction(0)] * p
            d[k] = Fraction(sign)
            directions.append(tuple(d))
    n_dense = 0
    while n_dense < n_random:
        d = tuple(Fraction(rng.randint(-16, 16), 16) for _ in range(p))
        if any(d):
            directions.append(d)
            n_dense += 1
    nonzero = [k for k in range(-4, 5) if k]
    for _ in range(n_random):
        support = rng.sample(range(p), min(p, rng.choice((2, 3))))
        d = [Fraction(0)] * p
        for k in support:
            d[k] = Fraction(rng.choice(nonzero), 4)
        directions.append(tuple(d))
    return directions


def probe(layers: Layers, X, y, activation, loss_name: str, weight_decay: Number = 0,
          radii=(1e-2, 1e-3, 1e-4, 1e-6), n_random: int = 200, seed: int = 0) -> ProbeResult:
    """Brute-force search for a decrease of the loss near ``theta``.

    Evaluates the exact difference ``L(theta + r d) - L(theta)`` for every direction of
    :func:`probe_directions` and every radius in ``radii`` (floats read as decimals, so
    ``1e-2`` is exactly ``1/100``) and returns the smallest one found. A negative value is a
    proof that ``theta`` is not a local minimum *in a ball of that radius*; a non-negative value
    is only evidence (no finite probe proves minimality).

    Parameters
    ----------
    layers, X, y, activation, loss_name, weight_decay
        As in :func:`loss`.
    radii : sequence
        Radii ``r``.
    n_random : int
        Number of dense and (separately) of sparse random directions.
    seed : int
        Seed of the direction generator.

    Returns
    -------
    ProbeResult
    """
    shapes = shapes_of(layers)
    theta = flatten(layers)
    loss0 = loss(layers, X, y, activation, loss_name, weight_decay)
    best = None
    largest = None
    n_eval = 0
    radii_q = [_radius_to_fraction(r) for r in radii]
    for d in probe_directions(len(theta), n_random=n_random, seed=seed):
        for r in radii_q:
            point = unflatten([th + r * di for th, di in zip(theta, d)], shapes)
            diff = loss(point, X, y, activation, loss_name, weight_decay) - loss0
            n_eval += 1
            if best is None or diff < best[0]:
                best = (diff, d, r)
            if largest is None or diff > largest:
                largest = diff
    return ProbeResult(min_difference=best[0], direction=best[1], radius=best[2],
                       max_difference=largest, loss0=loss0, n_evaluations=n_eval)


# --------------------------------------------------------------------------------------------
# Bridges to numpy (to feed the same case to the tool)
# --------------------------------------------------------------------------------------------

def to_float_arrays(layers: Layers) -> list:
    """Return ``[(W, b), ...]`` as float64 numpy arrays, ``W`` of shape (out, in)."""
    shapes_of(layers)
    return [(np.array([[float(v) for v in row] for row in W], dtype=np.float64),
             np.array([float(v) for v in b], dtype=np.float64)) for W, b in layers]


def X_to_numpy(X) -> np.ndarray:
    """Inputs as a float64 array of shape (n, d_x)."""
    return np.array([[float(v) for v in row] for row in X], dtype=np.float64)


def y_to_numpy(y, loss_name: str) -> np.ndarray:
    """Targets as numpy: int64 class indices of shape (n,) for ``multiclass_hinge`` and
    ``cross_entropy``; float64 of shape (n,) for one output or (n, C) otherwise."""
    if loss_name in ("multiclass_hinge", "cross_entropy"):
        return np.array([int(v) for v in y], dtype=np.int64)
    if isinstance(y[0], (list, tuple, np.ndarray)):
        return np.array([[float(v) for v in row] for row in y], dtype=np.float64)
    return np.array([float(v) for v in y], dtype=np.float64)


def activation_to_float(activation):
    """Activation spec with a float ``alpha`` (``("leaky_relu", 0.1)``); strings unchanged."""
    if isinstance(activation, (tuple, list)):
        return (activation[0], float(activation[1]))
    return activation
