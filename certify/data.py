"""Training data and the objective it defines with a network and a loss."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidValueError, ShapeError
from .losses import Loss
from .network import Network


def fingerprint(arr) -> str:
    """A report's fingerprint of an array (its parameters, inputs or labels): the first 16 hex digits
    of the SHA-256 of its float64 bytes. ``certify.verify``, ``certify.escape`` and ``certify plot``
    compare these with the report's."""
    return hashlib.sha256(np.ascontiguousarray(arr, dtype=np.float64).tobytes()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs ``X`` of shape ``(n, d)`` and raw labels ``y`` (validated against a loss later)."""

    X: np.ndarray
    y: np.ndarray

    def __post_init__(self):
        X = _array(self.X, "data X")
        if X.dtype.kind not in "fiub":
            raise InvalidValueError(f"data X must be a real numeric array; got dtype {X.dtype}")
        X = X.astype(np.float64)
        if X.ndim == 1:
            raise ShapeError(f"data X must be 2-D (n samples, d features); got shape {X.shape} "
                             f"(use X.reshape(-1, 1) for one feature)")
        if X.ndim != 2:
            raise ShapeError(f"data X must be 2-D (n samples, d features); got shape {X.shape}")
        if X.shape[0] == 0:
            raise InvalidValueError(f"data X is empty: expected at least 1 sample; got shape {X.shape}")
        if X.shape[1] == 0:
            raise InvalidValueError(f"data X has no features: expected at least 1 column; got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            bad = int(X.size - np.count_nonzero(np.isfinite(X)))
            raise InvalidValueError(f"data X contains {bad} NaN or infinite value(s); expected finite numbers "
                                    f"(first: {_first_nonfinite(X, 'X')})")
        y = _array(self.y, "labels y")
        if y.ndim == 0:
            raise ShapeError(f"labels y must have one entry per sample ({X.shape[0]}); got a scalar")
        if y.shape[0] != X.shape[0]:
            raise ShapeError(f"labels y have {y.shape[0]} rows but X has {X.shape[0]} samples "
                             f"(X.shape={X.shape}, y.shape={y.shape})")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]


def _first_nonfinite(arr: np.ndarray, name: str) -> str:
    first = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
    return f"{name}[{', '.join(map(str, first))}] = {arr[first]}"


def _array(value, name: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError):
        raise ShapeError(f"{name} must be a rectangular numeric array; got ragged or malformed "
                         f"{type(value).__name__}") from None


@dataclass(frozen=True, eq=False)
class Problem:
    """The training loss ``L(theta) = mean_i l(f(x_i; theta), y_i) + lambda/2 ||theta||^2``.

    Holds the point (``network``) together with the data, the loss and the weight decay; every
    other stage of certify reads the objective from here.
    """

    network: Network
    data: Dataset
    loss: Loss
    weight_decay: float = 0.0
    Y: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        net = self.network
        if not isinstance(self.data, Dataset):
            raise TypeError("data must be a certify Dataset")
        object.__setattr__(self, "loss", Loss.parse(self.loss))
        try:
            wd = float(self.weight_decay)
        except (TypeError, ValueError):
            wd = float("nan")
        if not np.isfinite(wd) or wd < 0:
            raise InvalidValueError(f"weight decay must be a finite number >= 0; got {self.weight_decay!r}")
        object.__setattr__(self, "weight_decay", wd)
        X = self.data.X
        if X.shape[1] != net.n_inputs:
            raise ShapeError(
                f"data X has {X.shape[1]} features but layer 1 expects {net.n_inputs} "
                f"(X.shape={X.shape}, W1.shape={net.weights[0].shape})")
        Y = self.loss.prepare_labels(self.data.y, net.n_outputs, X.shape[0])
        object.__setattr__(self, "Y", Y)

    def check_finite(self, fwd=None) -> None:
        """Finite inputs can still overflow float64 in the forward pass or the loss: refuse that.

        ``fwd`` is a forward pass made ``with_scale`` (the driver passes the one it needs anyway).
        """
        with np.errstate(over="ignore", invalid="ignore"):
            if fwd is None:
                fwd = self.network.forward(self.X, with_scale=True)
            for l, (z, s) in enumerate(zip(fwd.pre, fwd.scale), start=1):
                if not (np.all(np.isfinite(z)) and np.all(np.isfinite(s))):
                    w_max = np.abs(self.network.weights[l - 1]).max()
                    raise InvalidValueError(
                        f"the forward pass overflows float64 at layer {l}: expected finite "
                        f"pre-activations, got NaN/inf (max |W{l}| = {w_max:.3g}, "
                        f"max |X| = {np.abs(self.X).max():.3g}); rescale the data or the weights")
            value = float(np.mean(self.loss.values(fwd.output, self.Y)))
        if not np.isfinite(value):
            raise InvalidValueError(f"the training loss overflows float64: expected a finite value, got "
                                    f"{value}; rescale the data, the labels or the weights")

    @property
    def X(self) -> np.ndarray:
        return self.data.X

    @property
    def n_samples(self) -> int:
        return self.data.X.shape[0]

    @property
    def n_params(self) -> int:
        return self.network.n_params

    @property
    def theta(self) -> np.ndarray:
        return self.network.theta

    def fingerprints(self) -> dict:
        """The report's fingerprints of the point, the inputs and the labels (:func:`fingerprint`)."""
        return {"theta": fingerprint(self.theta), "X": fingerprint(self.X),
                "y": fingerprint(np.asarray(self.data.y, dtype=np.float64))}

    def at(self, theta: np.ndarray) -> "Problem":
        """The same objective at another point."""
        return Problem(self.network.with_theta(theta), self.data, self.loss, self.weight_decay)

    def value(self, theta: np.ndarray | None = None) -> float:
        """``L(theta)`` in float64 (``theta`` defaults to the current point)."""
        net = self.network if theta is None else self.network.with_theta(theta)
        F = net(self.X)
        val = float(np.mean(self.loss.values(F, self.Y)))
        if self.weight_decay:
            val += 0.5 * self.weight_decay * float(np.dot(net.theta, net.theta))
        return val
