"""Independent numerics for the benchmark suite: nothing here imports ``certify``.

Two things the ground truths and the baselines need, written from scratch so that an answer never
depends on the code it judges:

* **float64 autograd** (:func:`forward`, :func:`gradient`, :func:`hvp`): the loss, its gradient
  and Hessian-vector products with *autograd's* convention at kinks, as PyTorch computes them:
  ``relu'(0) = 0``, ``leaky_relu'(0) = alpha`` (``x > 0 ? 1 : alpha``), ``abs'(0) = sign(0) = 0``;
  hinge as ``clamp(1 - y f, min=0)`` (the gradient passes at margin exactly 1, as ``clamp_min``
  does), absolute loss through ``sign(f - y)`` (0 at a zero residual), multiclass hinge through
  ``max`` (the first maximal class). Hessian-vector products are forward-over-reverse
  (Pearlmutter) with the activation slopes frozen, i.e. what double back-propagation returns.
* **exact evaluation** (:class:`ExactNet`): the loss ``L(theta + t d)`` and the one-sided
  directional derivative ``L'(theta; d)`` in exact integer arithmetic, for points, data and
  directions made of dyadic numbers (every float64 is one). Values are integer arrays with a
  power-of-two denominator; int64 is used while a bound on every partial sum stays below
  ``2**62``, Python integers (object arrays) beyond.

Conventions as certify's: ``z^l = W_l x^{l-1} + b_l`` with ``W_l`` of shape ``(out, in)``,
activation on hidden layers only; the training loss is the mean over samples plus
``lambda/2 ||theta||^2``; flat ``theta = (W1 row-major, b1, W2, b2, ...)``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy.special import expit, logsumexp, softmax

# ============================================================================ activations
def parse_activation(spec) -> tuple[str, float]:
    """``"relu"``, ``"leaky_relu:0.25"``, ``"abs"``, ``"identity"`` -> (name, alpha)."""
    if isinstance(spec, (tuple, list)):
        return str(spec[0]), float(spec[1])
    text = str(spec).strip().lower()
    if text.startswith("leaky_relu"):
        _, _, a = text.partition(":")
        return "leaky_relu", float(a) if a else 0.01
    return text, 0.0


def slopes(act: tuple[str, float]) -> tuple[float, float]:
    name, alpha = act
    return {"relu": (1.0, 0.0), "leaky_relu": (1.0, alpha), "abs": (1.0, -1.0),
            "identity": (1.0, 1.0)}[name]


def activate(z: np.ndarray, act) -> np.ndarray:
    sp, sn = slopes(act)
    if act[0] == "identity":
        return z
    return np.where(z > 0, sp * z, sn * z)


def autograd_slope(z: np.ndarray, act) -> np.ndarray:
    """d activation / dz as PyTorch's backward returns it (value at 0 included)."""
    name, alpha = act
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, alpha)
    if name == "abs":
        return np.sign(z)
    return np.ones_like(z)


# ============================================================================ networks
def flatten(layers) -> np.ndarray:
    return np.concatenate([np.concatenate([np.asarray(W, float).ravel(), np.asarray(b, float).ravel()])
                           for W, b in layers])


def shapes(layers) -> list[tuple[int, int]]:
    return [np.asarray(W).shape for W, _ in layers]


def unflatten(theta: np.ndarray, shp) -> list:
    out, k = [], 0
    for o, i in shp:
        W = theta[k:k + o * i].reshape(o, i)
        k += o * i
        b = theta[k:k + o]
        k += o
        out.append((W, b))
    return out


def n_params(shp) -> int:
    return int(sum(o * (i + 1) for o, i in shp))


def forward(layers, X: np.ndarray, act) -> tuple[list, list]:
    """Pre-activations ``z^l`` and post-activations ``x^l`` (``post[0] = X``)."""
    pre, post = [], [X]
    x = X
    L = len(layers)
    for l, (W, b) in enumerate(layers, start=1):
        z = x @ W.T + b
        pre.append(z)
        if l < L:
            x = activate(z, act)
            post.append(x)
    return pre, post


def prepare_y(y, loss: str, n_out: int) -> np.ndarray:
    y = np.asarray(y)
    if loss in ("multiclass_hinge", "cross_entropy"):
        return y.reshape(-1).astype(np.int64)
    y = y.astype(np.float64)
    return y.reshape(-1, 1) if y.ndim == 1 else y


def loss_values(F: np.ndarray, Y: np.ndarray, loss: str) -> np.ndarray:
    if loss == "square":
        return 0.5 * np.sum((F - Y) ** 2, axis=1)
    if loss == "hinge":
        return np.maximum(0.0, 1.0 - Y[:, 0] * F[:, 0])
    if loss == "absolute":
        return np.sum(np.abs(F - Y), axis=1)
    if loss == "logistic":
        return np.logaddexp(0.0, -Y[:, 0] * F[:, 0])
    if loss == "cross_entropy":
        return logsumexp(F, axis=1) - F[np.arange(F.shape[0]), Y]
    if loss == "multiclass_hinge":
        n = F.shape[0]
        M = F + 1.0
        M[np.arange(n), Y] -= 1.0
        return M.max(axis=1) - F[np.arange(n), Y]
    raise ValueError(f"unknown loss {loss}")


def loss_grad_f(F: np.ndarray, Y: np.ndarray, loss: str) -> np.ndarray:
    """dl/df per sample with autograd's conventions (see the module docstring)."""
    if loss == "square":
        return F - Y
    if loss == "hinge":
        y = Y[:, 0]
        return (np.where(1.0 - y * F[:, 0] >= 0.0, -y, 0.0))[:, None]
    if loss == "absolute":
        return np.sign(F - Y)
    if loss == "logistic":
        y = Y[:, 0]
        return (-y * expit(-y * F[:, 0]))[:, None]
    if loss == "cross_entropy":
        P = softmax(F, axis=1)
        P[np.arange(F.shape[0]), Y] -= 1.0
        return P
    if loss == "multiclass_hinge":
        n = F.shape[0]
        M = F + 1.0
        M[np.arange(n), Y] -= 1.0
        j = M.argmax(axis=1)
        G = np.zeros_like(F)
        G[np.arange(n), j] += 1.0
        G[np.arange(n), Y] -= 1.0
        return G
    raise ValueError(f"unknown loss {loss}")


def loss_hess_f(F: np.ndarray, Y: np.ndarray, dF: np.ndarray, loss: str) -> np.ndarray:
    if loss == "square":
        return dF.copy()
    if loss == "logistic":
        s = expit(Y[:, 0] * F[:, 0])
        return (s * (1.0 - s))[:, None] * dF
    if loss == "cross_entropy":
        P = softmax(F, axis=1)
        return P * dF - P * np.sum(P * dF, axis=1, keepdims=True)
    return np.zeros_like(dF)


class AutogradNet:
    """Loss, gradient and Hessian-vector products of one problem with autograd's conventions."""

    def __init__(self, layers, X, y, activation, loss: str, weight_decay: float = 0.0):
        self.shapes = shapes(layers)
        self.theta = flatten(layers)
        self.X = np.asarray(X, dtype=np.float64)
        self.act = parse_activation(activation)
        self.loss = loss
        self.wd = float(weight_decay)
        self.Y = prepare_y(y, loss, self.shapes[-1][0])
        self.n = self.X.shape[0]
        self.p = self.theta.size

    def layers(self, theta=None):
        return unflatten(self.theta if theta is None else theta, self.shapes)

    def value(self, theta=None) -> float:
        th = self.theta if theta is None else theta
        pre, _ = forward(self.layers(th), self.X, self.act)
        v = float(np.mean(loss_values(pre[-1], self.Y, self.loss)))
        if self.wd:
            v += 0.5 * self.wd * float(th @ th)
        return v

    def _backward(self, layers, pre, post, delta):
        L = len(layers)
        parts = [None] * L
        for l in range(L, 0, -1):
            W = layers[l - 1][0]
            parts[l - 1] = np.concatenate([(delta.T @ post[l - 1]).ravel(), delta.sum(axis=0)])
            if l > 1:
                delta = (delta @ W) * autograd_slope(pre[l - 2], self.act)
        return np.concatenate(parts)

    def gradient(self, theta=None) -> np.ndarray:
        th = self.theta if theta is None else theta
        layers = self.layers(th)
        pre, post = forward(layers, self.X, self.act)
        delta = loss_grad_f(pre[-1], self.Y, self.loss) / self.n
        g = self._backward(layers, pre, post, delta)
        if self.wd:
            g = g + self.wd * th
        return g

    def hvp(self, v: np.ndarray, theta=None) -> np.ndarray:
        """``H v`` by forward-over-reverse with frozen activation slopes (double backprop)."""
        th = self.theta if theta is None else theta
        layers = self.layers(th)
        dl = unflatten(v, self.shapes)
        pre, post = forward(layers, self.X, self.act)
        L = len(layers)
        D = [autograd_slope(z, self.act) for z in pre[:-1]]
        dxs = [np.zeros_like(self.X)]
        dz = None
        for l in range(1, L + 1):
            W = layers[l - 1][0]
            dW, db = dl[l - 1]
            dz = post[l - 1] @ dW.T + db
            if l > 1:
                dz = dz + dxs[-1] @ W.T
            if l < L:
                dxs.append(D[l - 1] * dz)
        F = pre[-1]
        delta = loss_grad_f(F, self.Y, self.loss) / self.n
        ddelta = loss_hess_f(F, self.Y, dz, self.loss) / self.n
        parts = [None] * L
        for l in range(L, 0, -1):
            W = layers[l - 1][0]
            dW = dl[l - 1][0]
            gW = ddelta.T @ post[l - 1] + delta.T @ dxs[l - 1]
            parts[l - 1] = np.concatenate([gW.ravel(), ddelta.sum(axis=0)])
            if l > 1:
                a = delta @ W
                da = ddelta @ W + delta @ dW
                delta, ddelta = a * D[l - 2], da * D[l - 2]
        out = np.concatenate(parts)
        if self.wd:
            out = out + self.wd * v
        return out


# ============================================================================ exact arithmetic
_LIMIT = 2.0 ** 62


def _dyadic_exponent(values: np.ndarray) -> int:
    """Smallest ``e >= 0`` with ``values * 2**e`` integral (values must be finite floats)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[v != 0]
    if v.size == 0:
        return 0
    m, ex = np.frexp(v)                  # v = m 2^ex, 0.5 <= |m| < 1, m has <= 53 bits
    # m * 2^53 is an integer; trailing zero bits reduce the exponent needed
    mi = (m * 2.0 ** 53).astype(np.int64)
    tz = np.zeros(mi.shape, dtype=np.int64)
    w = np.abs(mi)
    for _ in range(53):
        odd = (w & 1) == 1
        if np.all(odd):
            break
        step = ~odd & (w != 0)
        tz += step
        w = np.where(step, w >> 1, w)
    need = 53 - tz - ex
    return int(max(0, need.max()))


def _to_int(values, e: int):
    """``values * 2**e`` as an exact integer array (int64 if it fits, else object)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size and np.max(np.abs(v)) * 2.0 ** e < 2.0 ** 53:
        return (v * 2.0 ** e).astype(np.int64)
    out = np.empty(v.shape, dtype=object)
    flat_in, flat_out = v.ravel(), out.reshape(-1)
    for k, x in enumerate(flat_in):
        flat_out[k] = int(Fraction(float(x)) * (1 << e))
    return out


def _as_object(a):
    return a.astype(object) if a.dtype != object else a


def _matmul(A, B, boundA: float, boundB: float, inner: int):
    """Exact ``A @ B`` of integer arrays (int64 when ``inner * boundA * boundB`` is safe)."""
    if A.dtype != object and B.dtype != object and inner * boundA * boundB < _LIMIT:
        return A @ B
    return _as_object(A) @ _as_object(B)


def _bound(a) -> float:
    if a.size == 0:
        return 0.0
    if a.dtype == object:
        return float(max(abs(int(x)) for x in a.ravel()))
    return float(np.max(np.abs(a)))


def _shift(a, k: int):
    """``a * 2**k`` exactly (k >= 0)."""
    if k == 0:
        return a
    if a.dtype != object and (_bound(a) * 2.0 ** k) < _LIMIT:
        return a * (1 << k)
    return _as_object(a) * (1 << k)


class ExactNet:
    """Exact loss and directional derivative at dyadic points (losses square, hinge, absolute,
    multiclass hinge; activations relu, leaky relu with a dyadic slope, abs, identity)."""

    RATIONAL = ("square", "hinge", "absolute", "multiclass_hinge")

    def __init__(self, layers, X, y, activation, loss: str, weight_decay: float = 0.0):
        if loss not in self.RATIONAL:
            raise ValueError(f"exact evaluation needs a rational loss, not {loss}")
        self.shapes = shapes(layers)
        self.theta = flatten(layers)
        self.X = np.asarray(X, dtype=np.float64)
        self.act = parse_activation(activation)
        self.alpha = Fraction(float(slopes(self.act)[1]))
        self.loss = loss
        self.wd = Fraction(float(weight_decay))
        self.Y = prepare_y(y, loss, self.shapes[-1][0])
        self.n = self.X.shape[0]
        self.eX = _dyadic_exponent(self.X)
        self.Xi = _to_int(self.X, self.eX)

    # ------------------------------------------------------------------ activations on integers
    def _act_int(self, z, ez):
        """(h(z) as integers, exponent). Leaky ReLU multiplies the negative part by alpha."""
        name = self.act[0]
        if name == "identity":
            return z, ez
        if name == "relu":
            return np.where(z > 0, z, 0 * z), ez
        if name == "abs":
            return np.where(z >= 0, z, -z), ez
        num, den = self.alpha.numerator, self.alpha.denominator
        k = den.bit_length() - 1
        if den != 1 << k:
            raise ValueError("leaky slope must be dyadic for exact evaluation")
        zs = _shift(z, k)
        neg = _as_object(z) * num if (_bound(z) * abs(num) >= _LIMIT or z.dtype == object) else z * num
        return np.where(z > 0, zs, neg), ez + k

    def _act_dir(self, z, zd, ezd):
        """One-sided derivative ``h'(z; zd)`` (z and zd integers, zd with exponent ezd)."""
        name = self.act[0]
        if name == "identity":
            return zd, ezd
        pos = (z > 0) | ((z == 0) & (zd > 0))
        if name == "relu":
            return np.where(pos, zd, 0 * zd), ezd
        if name == "abs":
            return np.where(pos, zd, -zd), ezd
        num, den = self.alpha.numerator, self.alpha.denominator
        k = den.bit_length() - 1
        zs = _shift(zd, k)
        neg = _as_object(zd) * num if (zd.dtype == object or _bound(zd) * abs(num) >= _LIMIT) else zd * num
        return np.where(pos, zs, neg), ezd + k

    def _forward(self, theta: np.ndarray, d: np.ndarray | None = None):
        """Exact outputs (integers F, exponent eF) and optionally the tangent (Fd, eFd)."""
        layers = unflatten(theta, self.shapes)
        x, ex = self.Xi, self.eX
        xd = exd = None
        L = len(layers)
        dl = unflatten(d, self.shapes) if d is not None else None
        for l, (W, b) in enumerate(layers, start=1):
            ew = max(_dyadic_exponent(W), _dyadic_exponent(b))
            Wi = _to_int(W, ew)
            z = _matmul(x, Wi.T, _bound(x), _bound(Wi), W.shape[1])
            ez = ex + ew
            bi = _to_int(b, ez)
            z = z + bi if (z.dtype != object and bi.dtype != object and _bound(z) + _bound(bi) < _LIMIT) \
                else _as_object(z) + _as_object(bi)
            if dl is not None:
                dW, db = dl[l - 1]
                edw = max(_dyadic_exponent(dW), _dyadic_exponent(db))
                dWi = _to_int(dW, edw)
                # zd = x dW^T + db (+ xd W^T)
                t1 = _matmul(x, dWi.T, _bound(x), _bound(dWi), W.shape[1])
                e1 = ex + edw
                dbi = _to_int(db, e1)
                t1 = _as_object(t1) + _as_object(dbi) if (t1.dtype == object or dbi.dtype == object or
                                                          _bound(t1) + _bound(dbi) >= _LIMIT) else t1 + dbi
                if xd is not None:
                    t2 = _matmul(xd, Wi.T, _bound(xd), _bound(Wi), W.shape[1])
                    e2 = exd + ew
                    e = max(e1, e2)
                    t1 = _as_object(_shift(t1, e - e1)) + _as_object(_shift(t2, e - e2))
                    e1 = e
                zd, ezd = t1, e1
            if l < L:
                if dl is not None:
                    xd, exd = self._act_dir(z, zd, ezd)
                x, ex = self._act_int(z, ez)
            else:
                F, eF = z, ez
                if dl is not None:
                    Fd, eFd = zd, ezd
        if dl is None:
            return F, eF
        return F, eF, Fd, eFd

    @staticmethod
    def _frac(v, e) -> Fraction:
        return Fraction(int(v), 1 << e)

    def _y_int(self, e):
        return _to_int(self.Y.astype(np.float64), e) if self.loss in ("square", "absolute", "hinge") else None

    def loss_exact(self, theta: np.ndarray | None = None) -> Fraction:
        th = self.theta if theta is None else np.asarray(theta, dtype=np.float64)
        F, eF = self._forward(th)
        F = _as_object(F)
        n = self.n
        if self.loss in ("square", "absolute"):
            eY = _dyadic_exponent(self.Y)
            e = max(eF, eY)
            R = _shift(F, e - eF) - _as_object(_to_int(self.Y, e))
            if self.loss == "square":
                total = Fraction(int(np.sum(R * R)), 1 << (2 * e)) / 2
            else:
                total = Fraction(int(np.sum(np.abs(R))), 1 << e)
        elif self.loss == "hinge":
            y = self.Y[:, 0].astype(np.int64)
            one = 1 << eF
            m = one - y.astype(object) * F[:, 0]
            total = Fraction(int(np.sum(np.where(m > 0, m, 0))), 1 << eF)
        else:  # multiclass hinge: max_j (f_j + [j != y]) - f_y
            one = 1 << eF
            rows = np.arange(n)
            M = F + one
            M[rows, self.Y] -= one
            total = Fraction(int(np.sum(M.max(axis=1) - F[rows, self.Y])), 1 << eF)
        val = total / n
        if self.wd:
            val += self.wd / 2 * sum((Fraction(float(v)) ** 2 for v in th), Fraction(0))
        return val

    def directional_derivative(self, d: np.ndarray) -> Fraction:
        """Exact ``L'(theta; d)`` by the one-sided chain rule (valid for nested kinks too)."""
        d = np.asarray(d, dtype=np.float64)
        F, eF, Fd, eFd = self._forward(self.theta, d)
        F, Fd = _as_object(F), _as_object(Fd)
        n = self.n
        if self.loss == "square":
            eY = _dyadic_exponent(self.Y)
            e = max(eF, eY)
            R = _shift(F, e - eF) - _as_object(_to_int(self.Y, e))
            total = Fraction(int(np.sum(R * Fd)), 1 << (e + eFd))
        elif self.loss == "absolute":
            eY = _dyadic_exponent(self.Y)
            e = max(eF, eY)
            R = _shift(F, e - eF) - _as_object(_to_int(self.Y, e))
            s = np.where(R > 0, Fd, np.where(R < 0, -Fd, np.abs(Fd)))
            total = Fraction(int(np.sum(s)), 1 << eFd)
        elif self.loss == "hinge":
            y = self.Y[:, 0].astype(np.int64).astype(object)
            m = (1 << eF) - y * F[:, 0]
            u = -y * Fd[:, 0]
            s = np.where(m > 0, u, np.where(m < 0, 0, np.where(u > 0, u, 0)))
            total = Fraction(int(np.sum(s)), 1 << eFd)
        else:
            rows = np.arange(n)
            one = 1 << eF
            M = F + one
            M[rows, self.Y] -= one
            best = M.max(axis=1)
            # max over the active pieces of (Fd_j - Fd_y)
            act = M == best[:, None]
            cand = np.where(act, Fd - Fd[rows, self.Y][:, None], None)
            s = [max(v for v in row if v is not None) for row in cand]
            total = Fraction(int(sum(s)), 1 << eFd)
        val = total / n
        if self.wd:
            val += self.wd * sum((Fraction(float(a)) * Fraction(float(b)) for a, b in zip(self.theta, d)),
                                 Fraction(0))
        return val


def dyadic_direction(d: np.ndarray, bits: int = 10) -> np.ndarray:
    """``d`` scaled to max-norm 1 and rounded to multiples of ``2**-bits`` (exact in float64)."""
    d = np.asarray(d, dtype=np.float64)
    m = np.max(np.abs(d)) if d.size else 0.0
    if m == 0 or not np.isfinite(m):
        return np.zeros_like(d)
    return np.round(d / m * 2.0 ** bits) / 2.0 ** bits


def rounding_bound(net: AutogradNet, theta=None) -> float:
    """A crude bound on the float64 rounding error of :meth:`AutogradNet.value` (relative 1e-12
    of the sum of absolute terms, far above the true error for these sizes)."""
    th = net.theta if theta is None else theta
    layers = net.layers(th)
    x = np.abs(net.X)
    for l, (W, b) in enumerate(layers, start=1):
        x = x @ np.abs(W).T + np.abs(b)
        if l < len(layers):
            x = x * max(1.0, abs(slopes(net.act)[1]))
    scale = float(np.mean(np.sum(x, axis=1) + np.sum(np.abs(net.Y) if net.Y.dtype != np.int64 else 0.0)))
    return 1e-12 * max(1.0, scale) ** 2 * math.log2(max(net.n, 2))
