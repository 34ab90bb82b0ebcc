"""Fully connected networks with piecewise-linear activations.

Conventions (kept everywhere in certify):

* layer ``l = 1..L`` computes ``z^l = W_l x^{l-1} + b_l`` with ``W_l`` of shape ``(out, in)``
  (PyTorch orientation), ``x^0 = x`` and ``x^l = s(z^l)`` for hidden layers; the output is
  ``f = z^L`` (no activation on the last layer);
* the flat parameter vector ``theta`` is ``W1`` row-major, ``b1``, ``W2`` row-major, ``b2``, ...,
  ``WL``, ``bL``.

Every activation here is ``s(z) = s_pos * z`` for ``z > 0`` and ``s_neg * z`` for ``z < 0``:
ReLU ``(1, 0)``, leaky ReLU ``(1, alpha)``, absolute value ``(1, -1)``, identity ``(1, 1)``.
All are positively homogeneous, which gives the rescaling symmetry of hidden units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import InvalidValueError, ShapeError, UnknownNameError

ACTIVATION_NAMES = ("relu", "leaky_relu:ALPHA", "abs", "identity")


@dataclass(frozen=True)
class Activation:
    """A positively homogeneous piecewise-linear activation ``s(z) = s_pos z⁺ − s_neg z⁻``.

    Parameters
    ----------
    name : {"relu", "leaky_relu", "abs", "identity"}
    alpha : float
        Negative-side slope of leaky ReLU, ``0 <= alpha < 1``; ignored otherwise.
    """

    name: str
    alpha: float = 0.0

    @classmethod
    def parse(cls, spec: str | "Activation") -> "Activation":
        """Parse ``"relu"``, ``"leaky_relu:0.25"``, ``"abs"`` or ``"identity"``.

        >>> Activation.parse("leaky_relu:0.25").slopes
        (1.0, 0.25)
        """
        if isinstance(spec, Activation):
            return spec
        if not isinstance(spec, str):
            raise UnknownNameError(f"activation must be a string such as 'relu'; got {spec!r}")
        text = spec.strip().lower()
        if text in ("relu", "abs", "identity"):
            return cls(text)
        if text in ("linear", "none"):
            return cls("identity")
        if text.startswith(("leaky_relu", "leakyrelu")):
            head, sep, value = text.partition(":")
            if head not in ("leaky_relu", "leakyrelu"):
                raise UnknownNameError(
                    f"malformed leaky ReLU activation {spec!r}: expected 'leaky_relu' or "
                    f"'leaky_relu:ALPHA' with a number 0 <= ALPHA < 1, as in 'leaky_relu:0.25'")
            if not sep:
                return cls("leaky_relu", 0.01)
            try:
                alpha = float(value)
            except ValueError:
                raise UnknownNameError(
                    f"malformed leaky ReLU slope {value!r} in activation {spec!r}: "
                    f"expected a number 0 <= alpha < 1, as in 'leaky_relu:0.25'") from None
            if not (math.isfinite(alpha) and 0.0 <= alpha < 1.0):
                raise UnknownNameError(
                    f"leaky ReLU slope must satisfy 0 <= alpha < 1; got {value!r} in {spec!r}")
            return cls("leaky_relu", alpha)
        raise UnknownNameError(
            f"unknown activation {spec!r}: expected one of {', '.join(ACTIVATION_NAMES)}")

    @property
    def slopes(self) -> tuple[float, float]:
        """``(s_pos, s_neg)``: the slopes on the positive and negative side of 0."""
        return {
            "relu": (1.0, 0.0),
            "leaky_relu": (1.0, float(self.alpha)),
            "abs": (1.0, -1.0),
            "identity": (1.0, 1.0),
        }[self.name]

    @property
    def has_kink(self) -> bool:
        s_pos, s_neg = self.slopes
        return s_pos != s_neg

    @property
    def spec(self) -> str:
        return f"leaky_relu:{float(self.alpha)!r}" if self.name == "leaky_relu" else self.name

    def __call__(self, z: np.ndarray) -> np.ndarray:
        # one pass each (np.where over two scaled copies costs three): max(z, alpha z) is leaky ReLU
        # for 0 <= alpha < 1, max(z, 0) is ReLU
        if self.name == "identity":
            return z
        if self.name == "relu":
            return np.maximum(z, 0.0)
        if self.name == "abs":
            return np.abs(z)
        return np.maximum(z, self.alpha * z)

    def slope(self, z: np.ndarray) -> np.ndarray:
        """Derivative off the kink (the value at exactly 0 is ``s_pos``; callers mask kinks)."""
        s_pos, s_neg = self.slopes
        return np.where(z >= 0, s_pos, s_neg).astype(z.dtype, copy=False)

    def directional(self, u: np.ndarray) -> np.ndarray:
        """``s'(0; u) = s_pos max(u, 0) + s_neg min(u, 0)``: the derivative at the kink along u."""
        s_pos, s_neg = self.slopes
        return s_pos * np.maximum(u, 0) + s_neg * np.minimum(u, 0)


@dataclass(frozen=True, eq=False)
class Network:
    """A fully connected network: weights ``W_l`` (out, in), biases ``b_l`` (out,), activation.

    Parameters
    ----------
    weights, biases : sequence of numpy arrays
        ``weights[l-1]`` is ``W_l`` with shape ``(n_l, n_{l-1})``; ``biases[l-1]`` is ``b_l``.
    activation : Activation or str
        Applied after every layer but the last.
    """

    weights: tuple
    biases: tuple
    activation: Activation

    def __post_init__(self):
        object.__setattr__(self, "activation", Activation.parse(self.activation))

        def _real_array(value, name: str) -> np.ndarray:
            """A float64 array; a clear error for strings, objects, complex or ragged input."""
            try:
                arr = np.asarray(value)
            except (ValueError, TypeError):
                raise ShapeError(f"{name} must be a rectangular numeric array; got ragged or malformed "
                                 f"{type(value).__name__}") from None
            if arr.dtype.kind not in "fiub":
                raise InvalidValueError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
            return arr.astype(np.float64, copy=False)

        weights = tuple(_real_array(W, f"W{l}") for l, W in enumerate(self.weights, start=1))
        biases = tuple(_real_array(b, f"b{l}").reshape(-1) for l, b in enumerate(self.biases, start=1))
        if not weights:
            raise ShapeError("a network needs at least one layer; got none")
        if len(weights) != len(biases):
            raise ShapeError(f"got {len(weights)} weight matrices but {len(biases)} bias vectors")
        for l, (W, b) in enumerate(zip(weights, biases), start=1):
            if W.ndim != 2:
                raise ShapeError(f"W{l} must be a 2-D (out, in) matrix; got shape {W.shape}")
            if W.size == 0:
                raise ShapeError(f"W{l} must have at least 1 row (unit) and 1 column (input); "
                                 f"got shape {W.shape}")
            if b.shape != (W.shape[0],):
                raise ShapeError(
                    f"b{l} must have length {W.shape[0]} (the rows of W{l}); "
                    f"got shape {np.shape(self.biases[l - 1])} (W{l}.shape={W.shape})")
            if l > 1 and W.shape[1] != weights[l - 2].shape[0]:
                raise ShapeError(
                    f"W{l} has {W.shape[1]} inputs but layer {l - 1} has {weights[l - 2].shape[0]} "
                    f"units (W{l - 1}.shape={weights[l - 2].shape}, W{l}.shape={W.shape})")
            for name, arr in ((f"W{l}", W), (f"b{l}", b)):
                if not np.all(np.isfinite(arr)):
                    bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
                    first = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
                    where = f"{name}[{', '.join(map(str, first))}]"
                    raise InvalidValueError(f"{name} contains {bad} NaN or infinite value(s); expected finite "
                                            f"numbers (first: {where} = {arr[first]})")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "biases", biases)

    # ----------------------------------------------------------------- structure
    @property
    def n_layers(self) -> int:
        return len(self.weights)

    @property
    def widths(self) -> tuple[int, ...]:
        """``(n_0, n_1, ..., n_L)``: input dimension, hidden widths, output dimension."""
        return (self.weights[0].shape[1],) + tuple(W.shape[0] for W in self.weights)

    @property
    def n_inputs(self) -> int:
        return self.widths[0]

    @property
    def n_outputs(self) -> int:
        return self.widths[-1]

    @cached_property
    def offsets(self) -> tuple[tuple[int, int], ...]:
        """Start of ``W_l`` and of ``b_l`` in theta, for each layer."""
        out, pos = [], 0
        for W in self.weights:
            out.append((pos, pos + W.size))
            pos += W.size + W.shape[0]
        return tuple(out)

    @property
    def n_params(self) -> int:
        return sum(W.size + W.shape[0] for W in self.weights)

    @property
    def theta(self) -> np.ndarray:
        """The flat parameter vector (W1 row-major, b1, W2, b2, ...)."""
        return np.concatenate([np.concatenate([W.ravel(), b]) for W, b in zip(self.weights, self.biases)])

    def split(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Views ``[(W1, b1), ...]`` of a flat vector in this network's layout."""
        theta = np.asarray(theta)
        if theta.shape != (self.n_params,):
            raise ShapeError(f"theta must have shape ({self.n_params},); got {theta.shape}")
        layers = []
        for W, (w0, b0) in zip(self.weights, self.offsets):
            layers.append((theta[w0:b0].reshape(W.shape), theta[b0:b0 + W.shape[0]]))
        return layers

    def with_theta(self, theta: np.ndarray) -> "Network":
        layers = self.split(np.asarray(theta, dtype=np.float64))
        return Network(tuple(W.copy() for W, _ in layers), tuple(b.copy() for _, b in layers),
                       self.activation)

    def param_names(self) -> list[str]:
        """Readable names of the coordinates of theta, e.g. ``W1[0,2]``, ``b2[0]``."""
        names = []
        for l, W in enumerate(self.weights, start=1):
            names += [f"W{l}[{i},{j}]" for i in range(W.shape[0]) for j in range(W.shape[1])]
            names += [f"b{l}[{i}]" for i in range(W.shape[0])]
        return names

    # ----------------------------------------------------------------- evaluation
    def forward(self, X: np.ndarray, *, with_scale: bool = False) -> "ForwardPass":
        """Pre-activations of every layer for inputs ``X`` of shape ``(n, n_0)``.

        With ``with_scale``, also the *absolute forward pass* ``S^1 = |W_1| |X| + |b_1|``,
        ``S^l = |W_l| (lip S^{l-1}) + |b_l|`` (``lip`` the largest |slope|): it bounds ``|z^l|`` and
        the size of the terms ``z^l`` is computed from, so a rounding-error bound of ``z^l`` is a
        multiple of it (:mod:`certify.rounding`; the kink tolerance is relative to it).
        """
        act = self.activation
        lip = max(abs(s) for s in act.slopes)
        x = X
        pre, post, scale = [], [X], []
        s_prev = np.abs(X) if with_scale else None
        for l, (W, b) in enumerate(zip(self.weights, self.biases), start=1):
            z = x @ W.T
            z += b
            pre.append(z)
            if with_scale:
                s = s_prev @ np.abs(W).T
                s += np.abs(b)
                scale.append(s)
                s_prev = s if lip == 1.0 else lip * s
            if l < self.n_layers:
                x = act(z)
                post.append(x)
        return ForwardPass(pre=pre, post=post, scale=scale if with_scale else None)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return self.forward(X).output

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The native checkpoint layout: ``{"W1": ..., "b1": ..., ...}``."""
        out = {}
        for l, (W, b) in enumerate(zip(self.weights, self.biases), start=1):
            out[f"W{l}"], out[f"b{l}"] = W, b
        return out


@dataclass
class ForwardPass:
    """``pre[l-1] = z^l`` (n, n_l); ``post[l] = x^l`` with ``post[0] = X``; optional scales."""

    pre: list
    post: list
    scale: list | None = None

    @property
    def output(self) -> np.ndarray:
        return self.pre[-1]
