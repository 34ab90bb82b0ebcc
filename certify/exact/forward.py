"""The training loss in exact rational arithmetic: pre-activations, outputs, per-sample losses, L.

The float64 numbers of a :class:`certify.data.Problem` -- parameters, inputs, labels, the leaky-ReLU
slope, the weight decay -- are read as the rationals they are (:meth:`QArray.from_float`); a point
that floats cannot represent (``theta + 2^-100 d``, or ``4/3``) is given as rationals directly.
Everything mirrors the float code: ``z^l = W_l x^{l-1} + b_l``, ``x^l = s(z^l)`` with
``s(z) = s_pos z`` (``z > 0``), ``s_neg z`` (``z < 0``), ``f = z^L``, and
``L(theta) = (1/n) sum_i l(f_i, y_i) + lambda/2 ||theta||^2`` with the rational losses of
:mod:`certify.losses` (square, hinge, multiclass hinge, absolute) written, as there, as sums of
maxima of affine *pieces* whose slopes are small integers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from ..data import Problem
from ..errors import InvalidValueError, ShapeError
from .rational import QArray, as_q, to_fraction


@dataclass(frozen=True, eq=False)
class ExactProblem:
    """A :class:`Problem` with every number exact.

    Attributes
    ----------
    problem : Problem
        The float problem (architecture, activation, loss; its floats serve only as guesses).
    theta : QArray (p,)
        The point (``W1`` row-major, ``b1``, ``W2``, ... as in :mod:`certify.network`).
    X : QArray (n, d)
    Y : QArray (n, C) or int array (n,)
        Targets (square, absolute: values; hinge: ``+-1``) or class indices (multiclass hinge).
    s_pos, s_neg : Fraction
        The activation's slopes: the exact values of the floats the network uses.
    weight_decay : Fraction
        ``lambda`` (the exact value of its float).
    """

    problem: Problem
    theta: QArray
    X: QArray
    Y: object
    s_pos: Fraction
    s_neg: Fraction
    weight_decay: Fraction

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_params(self) -> int:
        return self.theta.size

    @property
    def network(self):
        return self.problem.network

    @property
    def loss(self):
        return self.problem.loss

    def layers(self, theta: QArray | None = None) -> list:
        """``[(W_l, b_l), ...]`` of ``theta`` (default: the point) as QArrays."""
        theta = self.theta if theta is None else theta
        out = []
        for W, (w0, b0) in zip(self.network.weights, self.network.offsets):
            out.append((theta[w0:b0].reshape(W.shape), theta[b0:b0 + W.shape[0]]))
        return out

    def at(self, theta) -> "ExactProblem":
        """The same objective at another point (floats read exactly, or rationals)."""
        return replace(self, theta=_point(theta, self.n_params))


def _point(theta, p: int) -> QArray:
    th = as_q(theta) if isinstance(theta, (QArray, np.ndarray)) else QArray.from_values(list(theta))
    if th.shape != (p,):
        raise ShapeError(f"theta must have shape ({p},); got {th.shape}")
    return th.reduce()


def exact_problem(problem: Problem, theta=None, *, X=None, y=None) -> ExactProblem:
    """The exact form of ``problem`` (optionally at another point, or with rational data).

    Parameters
    ----------
    problem : Problem
    theta : sequence of rationals, optional
        Ints, floats (their exact values), Fractions, ``"p/q"`` strings or a QArray; default the
        problem's own float64 point.
    X, y : optional
        Rational inputs / targets replacing the problem's (same shapes; class labels stay ints).

    Examples
    --------
    >>> import numpy as np
    >>> from certify.data import Dataset, Problem
    >>> from certify.network import Network
    >>> net = Network([np.array([[1.0]]), np.array([[1.0]])], [np.array([0.0]), np.array([0.0])], "relu")
    >>> ep = exact_problem(Problem(net, Dataset(np.array([[1.0], [2.0]]), np.array([0.0, 1.0])), "square"))
    >>> loss_value(ep)
    Fraction(1, 2)
    >>> loss_value(ep.at(["1", "0", "1", "-1/3"]))
    Fraction(2, 9)
    """
    net = problem.network
    if not problem.loss.rational:
        raise InvalidValueError(f"{problem.loss.name} loss has no exact rational value (only square, hinge, "
                                f"multiclass_hinge and absolute do)")
    p = net.n_params
    th = QArray.from_float(net.theta) if theta is None else _point(theta, p)
    Xq = QArray.from_float(problem.X) if X is None else QArray.from_values(X)
    if Xq.shape != problem.X.shape:
        raise ShapeError(f"exact X must have shape {problem.X.shape}; got {Xq.shape}")
    if problem.loss.name == "multiclass_hinge":
        Yq = np.asarray(problem.Y if y is None else y, dtype=np.int64).reshape(-1)
    else:
        Yq = QArray.from_float(problem.Y) if y is None else QArray.from_values(y).reshape(problem.Y.shape)
    s_pos, s_neg = (Fraction(s) for s in net.activation.slopes)
    return ExactProblem(problem=problem, theta=th, X=Xq.reduce(), Y=Yq, s_pos=s_pos, s_neg=s_neg,
                        weight_decay=to_fraction(problem.weight_decay))


# ---------------------------------------------------------------------------- forward pass
@dataclass
class ExactForward:
    """``pre[l-1] = z^l`` (n, n_l), ``post[l] = x^l`` with ``post[0] = X``, ``scale[l-1] = |W_l||x^{l-1}| + |b_l|``."""

    pre: list
    post: list
    scale: list

    @property
    def output(self) -> QArray:
        return self.pre[-1]


def activation_slopes(ep: ExactProblem, z: QArray) -> QArray:
    """``s_pos`` where ``z >= 0``, ``s_neg`` where ``z < 0`` (as :meth:`Activation.slope`)."""
    return QArray.where(z.sign() >= 0, ep.s_pos, ep.s_neg)


def forward(ep: ExactProblem, theta: QArray | None = None) -> ExactForward:
    """Every layer's pre-activations at ``theta`` (default: the point), exactly."""
    layers = ep.layers(theta)
    x = ep.X
    pre, post, scale = [], [x], []
    for l, (W, b) in enumerate(layers, start=1):
        z = (x @ W.T + b[None, :]).reduce()
        pre.append(z)
        scale.append(abs(x) @ abs(W).T + abs(b)[None, :])
        if l < len(layers):
            x = (z * activation_slopes(ep, z)).reduce()
            post.append(x)
    return ExactForward(pre=pre, post=post, scale=scale)


# ---------------------------------------------------------------------------- losses
def loss_pieces(ep: ExactProblem, F: QArray) -> tuple[QArray, np.ndarray]:
    """Affine pieces of a piecewise-linear loss at ``F`` (as :meth:`certify.losses.Loss.pieces`).

    Returns ``values`` (QArray (n, G, P)) and integer ``slopes`` (n, G, P, C):
    ``l_i = sum_g max_a values[i, g, a]`` and piece ``a`` changes by ``slopes[i, g, a] . df``.
    """
    name = ep.loss.name
    n, C = F.shape
    if name == "hinge":
        y = ep.Y.reshape(n)
        values = QArray.stack([QArray.zeros(n), 1 - y * F[:, 0]], axis=1).reshape(n, 1, 2)
        slopes = np.zeros((n, 1, 2, 1), dtype=np.int64)
        slopes[:, 0, 1, 0] = -np.asarray(y.to_float(), dtype=np.int64)
        return values, slopes
    if name == "absolute":
        R = F - ep.Y
        values = QArray.stack([R, -R], axis=2)
        slopes = np.zeros((n, C, 2, C), dtype=np.int64)
        idx = np.arange(C)
        slopes[:, idx, 0, idx] = 1
        slopes[:, idx, 1, idx] = -1
        return values, slopes
    if name == "multiclass_hinge":
        rows = np.arange(n)
        margin = 1 - np.eye(C, dtype=np.int64)[ep.Y]
        values = (F + margin - F[rows, ep.Y][:, None]).reshape(n, 1, C)
        slopes = np.broadcast_to(np.eye(C, dtype=np.int64), (n, C, C)).copy()
        slopes[rows, :, ep.Y] -= 1
        return values, slopes[:, None, :, :]
    raise ValueError(f"{name} loss is smooth and has no pieces")


def sample_losses(ep: ExactProblem, F: QArray) -> QArray:
    """``l(f_i, y_i)`` per sample, (n,)."""
    if ep.loss.name == "square":
        R = F - ep.Y
        return (R * R).sum(axis=1) / 2
    values, _ = loss_pieces(ep, F)
    return values.max(axis=2).sum(axis=1)


def loss_value(ep: ExactProblem, theta: QArray | None = None, fwd: ExactForward | None = None) -> Fraction:
    """``L(theta) = (1/n) sum_i l_i + lambda/2 ||theta||^2`` exactly (default: at the point)."""
    th = ep.theta if theta is None else theta
    fwd = fwd if fwd is not None else forward(ep, th)
    total = sample_losses(ep, fwd.output).sum().item() / ep.n_samples
    if ep.weight_decay:
        total += ep.weight_decay / 2 * th.dot(th)
    return total


def loss_gradient_wrt_output(ep: ExactProblem, F: QArray) -> QArray:
    """``dl/df`` per sample (n, C); piecewise losses take the first maximal piece (as the float code)."""
    if ep.loss.name == "square":
        return F - ep.Y
    values, slopes = loss_pieces(ep, F)
    best = values.argmax(axis=2)
    chosen = np.take_along_axis(slopes, best[:, :, None, None], axis=2)[:, :, 0, :]
    return as_q(chosen.sum(axis=1))
