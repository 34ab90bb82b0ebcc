"""Per-sample losses ``l(f, y)`` and what certify needs of them.

The training loss is ``L(theta) = (1/n) sum_i l(f(x_i; theta), y_i) (+ lambda/2 ||theta||^2)``.

Smooth losses (square, logistic, softmax cross-entropy) give a gradient and a Hessian in ``f``.
The piecewise-linear ones (binary hinge, multiclass hinge, absolute) are written as a sum of
*groups*, each the maximum of affine *pieces* ``v_a + s_a . df``:

* hinge ``max(0, 1 - y f)``: one group, pieces ``0`` and ``1 - y f``;
* multiclass hinge (Crammer-Singer) ``max_j (f_j + [j != y]) - f_y``: one group, one piece per class;
* absolute ``sum_c |f_c - y_c|``: one group per output, pieces ``+-(f_c - y_c)``.

A *loss kink* is a group whose maximum is attained by more than one piece; there the
directional derivative is ``max_{a active} s_a . df`` (a convex kink).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logsumexp, softmax

from .errors import InvalidValueError, ShapeError, UnknownNameError

LOSS_NAMES = ("square", "hinge", "multiclass_hinge", "absolute", "logistic", "cross_entropy")
_ALIASES = {
    "square": "square", "squared": "square", "mse": "square", "l2": "square",
    "hinge": "hinge", "binary_hinge": "hinge",
    "multiclass_hinge": "multiclass_hinge", "multi_hinge": "multiclass_hinge",
    "absolute": "absolute", "abs": "absolute", "l1": "absolute", "mae": "absolute",
    "logistic": "logistic", "binary_cross_entropy": "logistic", "bce": "logistic",
    "cross_entropy": "cross_entropy", "softmax_cross_entropy": "cross_entropy", "ce": "cross_entropy",
}


@dataclass(frozen=True)
class Loss:
    """A per-sample loss, identified by its canonical name (see :data:`LOSS_NAMES`)."""

    name: str

    @classmethod
    def parse(cls, spec: "str | Loss") -> "Loss":
        """Canonical loss from a name or alias.

        >>> Loss.parse("MSE").name
        'square'
        """
        if isinstance(spec, Loss):
            return spec
        if not isinstance(spec, str) or spec.strip().lower() not in _ALIASES:
            raise UnknownNameError(f"unknown loss {spec!r}: expected one of {', '.join(LOSS_NAMES)}")
        return cls(_ALIASES[spec.strip().lower()])

    # ------------------------------------------------------------------ properties
    @property
    def smooth(self) -> bool:
        return self.name in ("square", "logistic", "cross_entropy")

    @property
    def piecewise_linear(self) -> bool:
        return not self.smooth

    @property
    def attains_zero(self) -> bool:
        """Whether ``l`` can be 0 (every loss here is >= 0; logistic and cross-entropy only approach 0)."""
        return self.name not in ("logistic", "cross_entropy")

    @property
    def rational(self) -> bool:
        """Whether the loss is a rational function of f (so it can be evaluated exactly)."""
        return self.name in ("square", "hinge", "multiclass_hinge", "absolute")

    # ------------------------------------------------------------------ labels
    def prepare_labels(self, y, n_outputs: int, n_samples: int) -> np.ndarray:
        """Check labels against the loss and the network output; return their working form.

        Square / absolute: float array ``(n, C)``. Hinge / logistic: float ``(n, 1)`` of +-1.
        Multiclass hinge / cross-entropy: integer class indices ``(n,)``.
        """
        try:
            y = np.asarray(y)
        except (ValueError, TypeError):
            raise ShapeError(f"labels y must be a rectangular numeric array; got ragged or malformed "
                             f"{type(y).__name__}") from None
        if y.dtype.kind not in "fiub":
            raise InvalidValueError(f"labels y must be a real numeric array; got dtype {y.dtype}")
        y = y.astype(np.float64)
        if y.shape[:1] != (n_samples,):
            raise ShapeError(f"labels y must have {n_samples} rows, one per sample of X; got shape {y.shape}")
        if not np.all(np.isfinite(y)):
            bad = int(y.size - np.count_nonzero(np.isfinite(y)))
            first = tuple(int(i) for i in np.argwhere(~np.isfinite(y))[0])
            raise InvalidValueError(f"labels y contain {bad} NaN or infinite value(s); expected finite numbers "
                                    f"(first: y[{', '.join(map(str, first))}] = {y[first]})")
        C = n_outputs
        if self.name in ("square", "absolute"):
            if y.ndim == 1:
                y = y[:, None]
            if y.ndim != 2 or y.shape[1] != C:
                raise ShapeError(
                    f"{self.name} loss needs y of shape (n,) or (n, {C}) to match the network's "
                    f"{C} output(s); got shape {y.shape}")
            return y
        if self.name in ("hinge", "logistic"):
            if C != 1:
                raise ShapeError(f"{self.name} loss needs a network with 1 output; this one has {C}")
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if y.ndim != 1:
                raise ShapeError(f"{self.name} loss needs y of shape (n,); got shape {y.shape}")
            values = np.unique(y)
            if not np.all(np.isin(values, (-1.0, 1.0))):
                shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if values.size > 6 else "")
                raise InvalidValueError(
                    f"{self.name} loss needs labels in {{-1, +1}}; got values {{{shown}}}"
                    + (" (map 0 to -1)" if np.all(np.isin(values, (0.0, 1.0))) else ""))
            return y[:, None]
        # class-index losses
        if C < 2:
            raise ShapeError(f"{self.name} loss needs a network with at least 2 outputs; this one has {C}")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            onehot = (y.ndim == 2 and y.shape[1] == C and np.all((y == 0) | (y == 1))
                      and np.all(y.sum(axis=1) == 1))
            raise ShapeError(f"{self.name} loss needs integer class labels of shape (n,); got shape {y.shape}"
                             + (" (one-hot rows: store y.argmax(axis=1))" if onehot else ""))
        fractional = y[y != np.round(y)]
        if fractional.size:
            raise InvalidValueError(
                f"{self.name} loss needs integer class labels in 0..{C - 1}; got non-integer value "
                f"{fractional[0]:g} ({fractional.size} non-integer label(s))")
        if y.min() < 0 or y.max() > C - 1:
            bad = y[(y < 0) | (y > C - 1)]
            raise InvalidValueError(
                f"{self.name} loss needs class labels in 0..{C - 1} for a network with {C} outputs; "
                f"got {bad[0]:g} ({bad.size} label(s) out of range, values from {y.min():g} to {y.max():g})")
        return y.astype(np.int64)

    # ------------------------------------------------------------------ values
    def values(self, F: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Per-sample losses ``l(f_i, y_i)``, shape ``(n,)``."""
        if self.name == "square":
            return 0.5 * np.sum((F - Y) ** 2, axis=1)
        if self.name == "logistic":
            return np.logaddexp(0.0, -Y[:, 0] * F[:, 0])
        if self.name == "cross_entropy":
            return logsumexp(F, axis=1) - F[np.arange(F.shape[0]), Y]
        if self.name == "hinge":
            return np.maximum(0.0, 1.0 - Y[:, 0] * F[:, 0])
        if self.name == "absolute":
            return np.sum(np.abs(F - Y), axis=1)
        vals, _ = self.pieces(F, Y)
        return vals.max(axis=2).sum(axis=1)

    def gradient(self, F: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """``dl/df`` per sample, ``(n, C)``; for piecewise losses the slope of the first maximal piece."""
        if self.name == "square":
            return F - Y
        if self.name == "logistic":
            y = Y[:, 0]
            return (-y * expit(-y * F[:, 0]))[:, None]
        if self.name == "cross_entropy":
            P = softmax(F, axis=1)
            P[np.arange(F.shape[0]), Y] -= 1.0
            return P
        vals, slopes = self.pieces(F, Y)
        best = vals.argmax(axis=2)  # (n, G)
        chosen = np.take_along_axis(slopes, best[:, :, None, None], axis=2)[:, :, 0, :]
        return chosen.sum(axis=1)

    def hessian_apply(self, F: np.ndarray, Y: np.ndarray, dF: np.ndarray) -> np.ndarray:
        """``(d^2 l / df^2) dF`` per sample; zero for the piecewise-linear losses."""
        if self.name == "square":
            return dF.copy()
        if self.name == "logistic":
            y = Y[:, 0]
            s = expit(y * F[:, 0])
            return (s * (1.0 - s))[:, None] * dF
        if self.name == "cross_entropy":
            P = softmax(F, axis=1)
            return P * dF - P * np.sum(P * dF, axis=1, keepdims=True)
        return np.zeros_like(dF)

    def pieces(self, F: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Affine pieces of a piecewise-linear loss at ``F``.

        Returns
        -------
        values : (n, G, P) array
            The value of every piece of every group (``l = sum_g max_a values[:, g, a]``).
        slopes : (n, G, P, C) array
            Their gradients in ``f``.
        """
        n, C = F.shape
        if self.name == "hinge":
            y = Y[:, 0]
            values = np.stack([np.zeros(n), 1.0 - y * F[:, 0]], axis=1)[:, None, :]
            slopes = np.zeros((n, 1, 2, 1))
            slopes[:, 0, 1, 0] = -y
            return values, slopes
        if self.name == "absolute":
            R = F - Y
            values = np.stack([R, -R], axis=2)  # (n, C, 2)
            slopes = np.zeros((n, C, 2, C))
            idx = np.arange(C)
            slopes[:, idx, 0, idx] = 1.0
            slopes[:, idx, 1, idx] = -1.0
            return values, slopes
        if self.name == "multiclass_hinge":
            rows = np.arange(n)
            margin = 1.0 - np.eye(C)[Y]  # 1 for j != y, 0 for j = y
            values = (F + margin - F[rows, Y][:, None])[:, None, :]
            slopes = np.broadcast_to(np.eye(C), (n, C, C)).copy()
            slopes[rows, :, Y] -= 1.0
            return values, slopes[:, None, :, :]
        raise ValueError(f"{self.name} loss is smooth and has no pieces")
