"""Derivatives of the training loss at a point with kinks: the *tangent network*.

Pushing a direction ``d`` through the network gives the directional derivative ``L'(theta; d)``.
Off the kinks this is ordinary forward-mode differentiation; at a unit kink the tangent passes
through ``s'(0; v) = s_neg v + (s_pos - s_neg) max(v, 0)`` and at a loss kink through
``max_{a active} s_a . df``. With every kink unit *blocked* (slope 0 in the linear part) the
directional derivative is exactly (DESIGN.md §3)::

    L'(theta; d) = g . d + sum_k c_k u_k + (1/n) sum_{i in loss kinks} sum_groups max_a s_a . df_i
    u_k = s'(0; v_k),   v_k = A_k . d + sum_{k' upstream of k} M_{k k'} u_{k'}
    df_i = G_i d + sum_k N_{i k} u_k

where ``g`` is the gradient with kink units blocked, ``A_k`` the gradient of kink ``k``'s switching
function (its pre-activation), ``c_k`` the adjoint of the loss at kink ``k``, and ``M``, ``N`` the
couplings of nested kinks (a kink downstream of another in the same sample). This is a small
piecewise-linear network in ``d`` with one ReLU-like unit per kink: :class:`FirstOrderModel`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .data import Problem
from .kinks import KinkStructure
from .network import ForwardPass


# ---------------------------------------------------------------------------- smooth pieces
def blocked_slopes(problem: Problem, fwd: ForwardPass, kinks: KinkStructure | None) -> list:
    """Activation slopes of every hidden unit, with kink units set to 0 (blocked).

    The slope at exactly 0 is ``s_pos`` (as :meth:`certify.network.Activation.slope`); computed with
    one comparison and in-place arithmetic, since this runs on every ``(n, width)`` layer.
    """
    s_pos, s_neg = problem.network.activation.slopes
    D = []
    for l, z in enumerate(fwd.pre[:-1], start=1):
        s = np.greater_equal(z, 0.0).astype(np.float64)
        if (s_pos, s_neg) != (1.0, 0.0):
            s *= s_pos - s_neg
            s += s_neg
        if kinks is not None and kinks.masks:
            m = kinks.masks[l - 1]
            if m.any():
                s[m] = 0.0
        D.append(s)
    return D


def outer_sum(delta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``delta' @ x`` (a layer's weight gradient ``sum_i delta_i x_i'``), shape ``(delta cols, x cols)``.

    BLAS is an order of magnitude slower on ``(k, n) @ (n, m)`` with ``k << m`` than on the transposed
    product (measured: 10 outputs, 1,000 hidden units, n = 10^4: 0.56 s against 0.06 s), so the
    wider operand goes first.
    """
    if delta.shape[1] >= x.shape[1]:
        return delta.T @ x
    return (x.T @ delta).T


def backprop(problem: Problem, fwd: ForwardPass, D: list, delta_out: np.ndarray, *, absolute: bool = False):
    """Reverse pass with given slopes ``D``; ``delta_out`` is dL/df per sample (n, C).

    Returns the flat gradient (without weight decay) and the adjoints ``dL/dx^l`` (before the
    slope) of every hidden layer, ``adj[l-1]`` of shape ``(n, n_l)``. With ``absolute`` the pass
    runs on ``|W|``, ``|x|`` (pass ``|D|`` and ``|delta_out|``): the result bounds the size of the
    terms each gradient entry is summed from, the scale for deciding that a gradient is zero.
    """
    net = problem.network
    L = net.n_layers
    parts = [None] * L
    adj = [None] * (L - 1)
    delta = delta_out
    for l in range(L, 0, -1):
        W = np.abs(net.weights[l - 1]) if absolute else net.weights[l - 1]
        x_prev = np.abs(fwd.post[l - 1]) if absolute else fwd.post[l - 1]
        parts[l - 1] = np.concatenate([outer_sum(delta, x_prev).ravel(), delta.sum(axis=0)])
        if l > 1:
            a = delta @ W
            adj[l - 2] = a
            delta = a * D[l - 2]
    return np.concatenate(parts), adj


def loss_gradient(problem: Problem, fwd: ForwardPass | None = None) -> np.ndarray:
    """The gradient of ``L`` where it is differentiable (kinks take the ``s_pos`` branch)."""
    fwd = fwd or problem.network.forward(problem.X)
    D = blocked_slopes(problem, fwd, None)
    delta = problem.loss.gradient(fwd.output, problem.Y) / problem.n_samples
    grad, _ = backprop(problem, fwd, D, delta)
    if problem.weight_decay:
        grad = grad + problem.weight_decay * problem.theta
    return grad


def tangent_forward(problem: Problem, fwd: ForwardPass, d: np.ndarray, D: list | None = None,
                    kinks: KinkStructure | None = None):
    """Forward-mode tangent ``dz^l`` of every layer along ``d``.

    With ``kinks``, kink units pass the tangent through ``s'(0; .)``; otherwise through the slopes
    ``D`` (default: the ordinary slopes). Returns the list of ``dz^l`` arrays (n, n_l).
    """
    net = problem.network
    act = net.activation
    layers = net.split(d)
    if D is None:
        D = blocked_slopes(problem, fwd, kinks)
    dx = np.zeros_like(problem.X)
    out = []
    for l, ((W, b), (dW, db)) in enumerate(zip(zip(net.weights, net.biases), layers), start=1):
        dz = fwd.post[l - 1] @ dW.T + db
        if l > 1:
            dz = dz + dx @ W.T
        out.append(dz)
        if l < net.n_layers:
            dx = D[l - 1] * dz
            if kinks is not None and kinks.masks:
                m = kinks.masks[l - 1]
                if m.any():
                    dx = np.where(m, act.directional(dz), dx)
    return out


def directional_derivative(problem: Problem, fwd: ForwardPass, kinks: KinkStructure,
                           d: np.ndarray, dz: list | None = None) -> float:
    """``L'(theta; d)`` by a direct forward pass of the tangent (independent of the model below)."""
    if dz is None:
        dz = tangent_forward(problem, fwd, d, kinks=kinks)
    dF = dz[-1]
    loss = problem.loss
    n = problem.n_samples
    if loss.smooth:
        total = float(np.sum(loss.gradient(fwd.output, problem.Y) * dF))
    else:
        vals, slopes = loss.pieces(fwd.output, problem.Y)
        best = vals.argmax(axis=2)
        chosen = np.take_along_axis(slopes, best[:, :, None, None], axis=2)[:, :, 0, :]
        per_group = np.einsum("igc,ic->ig", chosen, dF)
        for q in range(kinks.n_loss):
            i, g = kinks.loss_sample[q], kinks.loss_group[q]
            per_group[i, g] = np.max(slopes[i, g, kinks.loss_active[q]] @ dF[i])
        total = float(per_group.sum())
    total /= n
    if problem.weight_decay:
        total += problem.weight_decay * float(np.dot(problem.theta, d))
    return total


# ---------------------------------------------------------------------------- switching rows
def switching_rows(problem: Problem, fwd: ForwardPass, D: list, kinks: KinkStructure,
                   t_sample: np.ndarray, t_layer: int, t_unit: np.ndarray, *, chunk: int = 2_000_000):
    """Gradients of ``z^{t_layer}_{t_unit}(x_{t_sample})`` with kink units blocked.

    Returns ``(R, Nest)``: ``R`` is a CSR matrix (T, p) of the rows; ``Nest`` a CSR matrix
    (T, K) whose entry (t, k) is the coefficient of the tangent output ``u_k`` of an upstream
    kink unit ``k`` of the same sample in the tangent of target ``t``.
    """
    net = problem.network
    T = int(t_sample.size)
    p = net.n_params
    K = kinks.n_unit
    if T == 0:
        return sp.csr_matrix((0, p)), sp.csr_matrix((0, K))
    # each layer's entries: its weights for every row, then its biases; the layers are joined in
    # theta's order (layer 1 first), so every row's columns come sorted and scipy does not sort them
    # (sorting was a third of a polish round on digits_mchinge_wd_sgd). A unit's weight entries are
    # formed for its nonzero adjoints only; zero inputs stay explicit zeros until eliminate_zeros
    by_layer = {}
    rows_n, cols_n, vals_n = [], [], []
    l = t_layer
    W = net.weights[l - 1]
    n_in = W.shape[1]
    w0, b0 = net.offsets[l - 1]
    x_prev = fwd.post[l - 1][t_sample]  # (T, n_in)
    tt = np.arange(T)
    by_layer[l] = ([np.repeat(tt, n_in), tt],
                   [(w0 + t_unit[:, None] * n_in + np.arange(n_in)[None, :]).ravel(), b0 + t_unit],
                   [x_prev.ravel(), np.ones(T)])
    if l > 1:
        a = W[t_unit]  # adjoint w.r.t. x^{l-1}, (T, n_{l-1})
        for lp in range(l - 1, 0, -1):  # a is the adjoint at hidden layer lp's outputs
            _record_nested(kinks, lp, t_sample, a, rows_n, cols_n, vals_n)
            delta = a * D[lp - 1][t_sample]
            Wl = net.weights[lp - 1]
            w0l, b0l = net.offsets[lp - 1]
            xin = fwd.post[lp - 1][t_sample]
            n_inl = Wl.shape[1]
            r, u = np.nonzero(delta)
            rows, cols, vals = [], [], []
            step = max(1, chunk // max(1, n_inl))
            for s in range(0, r.size, step):
                rs, us = r[s:s + step], u[s:s + step]
                rows.append(np.repeat(rs, n_inl))
                cols.append((w0l + us[:, None] * n_inl + np.arange(n_inl)[None, :]).ravel())
                vals.append((delta[rs, us][:, None] * xin[rs]).ravel())
            by_layer[lp] = (rows + [r], cols + [b0l + u], vals + [delta[r, u]])
            if lp > 1:
                a = delta @ Wl
    order = sorted(by_layer)
    rows_r = [x for k in order for x in by_layer[k][0]]
    cols_r = [x for k in order for x in by_layer[k][1]]
    vals_r = [x for k in order for x in by_layer[k][2]]
    R = sp.csr_matrix((np.concatenate(vals_r), (np.concatenate(rows_r), np.concatenate(cols_r))), shape=(T, p))
    R.eliminate_zeros()
    if rows_n:
        Nest = sp.csr_matrix((np.concatenate(vals_n), (np.concatenate(rows_n), np.concatenate(cols_n))),
                             shape=(T, K))
        Nest.eliminate_zeros()
    else:
        Nest = sp.csr_matrix((T, K))
    return R, Nest


def _kink_ids(kinks: KinkStructure, layer: int):
    """Kink ids of a hidden layer, with their samples and units (sorted by sample)."""
    ids = np.nonzero(kinks.unit_layer == layer)[0]
    return ids, kinks.unit_sample[ids], kinks.unit_index[ids]


def _record_nested(kinks, layer, t_sample, adj, rows, cols, vals):
    """Append (target, kink, adjoint) for kinks of ``layer`` in the targets' samples."""
    ids, smp, unit = _kink_ids(kinks, layer)
    if ids.size == 0:
        return
    lo = np.searchsorted(smp, t_sample, side="left")
    hi = np.searchsorted(smp, t_sample, side="right")
    for t in np.nonzero(hi > lo)[0]:
        sel = slice(lo[t], hi[t])
        coeff = adj[t, unit[sel]]
        keep = coeff != 0
        rows.append(np.full(int(keep.sum()), t))
        cols.append(ids[sel][keep])
        vals.append(coeff[keep])


# ---------------------------------------------------------------------------- the model
@dataclass(frozen=True, eq=False)
class FirstOrderModel:
    """The directional derivative ``d -> L'(theta; d)`` as a piecewise-linear tangent network.

    Attributes
    ----------
    g : (p,) array
        Linear part: gradient with kink units blocked (and weight decay), over samples without a
        loss kink.
    A : CSR (K, p)
        Rows ``A_k`` of the unit kinks' switching functions (blocked).
    M : CSR (K, K)
        ``M[k, k']``: coefficient of ``u_{k'}`` in ``v_k`` (nested kinks, same sample, upstream).
    c : (K,) array
        Coefficient of ``u_k`` in ``L'`` (zero for kinks of loss-kink samples).
    s_pos, s_neg : float
        Activation slopes; ``u_k = s_neg v_k + (s_pos - s_neg) max(v_k, 0)``.
    lk_sample : (S,) int array
        Samples with a loss kink; for each, ``G[s*C:(s+1)*C]`` and ``N[s*C:(s+1)*C]`` give
        ``df = G d + N u``.
    groups : list of (s, slopes) with ``slopes`` an (m, C) array
        Every loss group of those samples: a kinked one has ``m >= 2`` maximal pieces, a smooth
        one ``m = 1``. Contribution ``(1/n) max_a slopes[a] . df_s``.
    n : int
        Number of samples (the ``1/n`` of the mean).
    kink_ids : (K,) int array
        Which kinks of the :class:`KinkStructure` the rows belong to (kinks with no first-order
        effect are left out).
    twin_fn : callable or None
        Builds the *absolute twin* (:attr:`absolute`), on first use.
    rounding : float
        ``2 gamma_N`` (:mod:`certify.rounding`): ``rounding * absolute`` coefficient by coefficient
        bounds the rounding error of this model's coefficients.
    slopes : list of (n, n_l) arrays or None
        The blocked slopes (:func:`blocked_slopes`) the model was built with, kept so that a tangent
        pass along a direction (:func:`tangent_forward`) need not recompute them; None when the
        model was built with other slopes (a piece).
    twin_g_at : callable or None
        ``twin_g_at(g, k) -> (idx, values)``: the absolute twin's ``g`` at the ``k`` output-layer
        coordinates where ``|g|`` is largest, without building the twin (:func:`last_layer_twin`).
    """

    g: np.ndarray
    A: sp.csr_matrix
    M: sp.csr_matrix
    c: np.ndarray
    s_pos: float
    s_neg: float
    lk_sample: np.ndarray
    G: sp.csr_matrix
    N: sp.csr_matrix
    groups: list
    n: int
    n_outputs: int
    kink_ids: np.ndarray
    twin_fn: object = None
    rounding: float = 0.0
    slopes: list = None
    twin_g_at: object = None

    @property
    def absolute(self) -> "FirstOrderModel":
        """The absolute twin restricted to this model's kinks (every coefficient >= 0)."""
        cached = self.__dict__.get("_absolute")
        if cached is None:
            if self.twin_fn is None:
                raise ValueError("this model has no absolute twin")
            full = self.twin_fn()
            keep = self.kink_ids
            cached = FirstOrderModel(
                g=full.g, A=full.A[keep], M=full.M[keep][:, keep] if full.M.shape[0] else full.M, c=full.c[keep],
                s_pos=abs(self.s_pos), s_neg=abs(self.s_neg), lk_sample=full.lk_sample, G=full.G,
                N=full.N[:, keep], groups=full.groups, n=full.n, n_outputs=full.n_outputs, kink_ids=keep)
            object.__setattr__(self, "_absolute", cached)
        return cached

    @property
    def g_scale(self) -> np.ndarray:
        """``|g|``'s absolute twin: the size of the terms every gradient entry is computed from."""
        return self.absolute.g

    @property
    def g_error(self) -> np.ndarray:
        """A rigorous bound on the rounding error of every entry of ``g``."""
        return self.rounding * self.absolute.g

    def tolerance(self) -> float:
        """Rounding-error bound of ``L'(theta; d)`` as computed by :meth:`evaluate`, over the unit box."""
        return self.rounding * self.absolute.size()

    @property
    def n_params(self) -> int:
        return self.g.size

    @property
    def n_kinks(self) -> int:
        return self.A.shape[0]

    @property
    def n_loss_kinks(self) -> int:
        return sum(1 for _, S in self.groups if S.shape[0] >= 2)

    @property
    def nested(self) -> bool:
        """Whether any kink output feeds another kink (a unit or a loss kink)."""
        return self.M.nnz > 0 or self.N.nnz > 0

    @property
    def smooth(self) -> bool:
        return self.n_kinks == 0 and self.n_loss_kinks == 0

    def kink_kind(self) -> np.ndarray:
        """Per unit kink: +1 convex (``c_k (s_pos - s_neg) > 0`` and not nested), -1 otherwise."""
        gamma = self.c * (self.s_pos - self.s_neg)
        feeds = np.zeros(self.n_kinks, dtype=bool)
        if self.M.nnz:
            feeds |= np.asarray(abs(self.M).sum(axis=0)).ravel() > 0
        if self.N.nnz:
            feeds |= np.asarray(abs(self.N).sum(axis=0)).ravel() > 0
        return np.where((gamma > 0) & ~feeds, 1, -1)

    @property
    def convex(self) -> bool:
        """One level of convex kinks only: ``L'(theta; .)`` is convex and the LP decides."""
        if self.N.nnz:
            return False
        return bool(np.all(self.kink_kind() == 1))

    def evaluate(self, d: np.ndarray) -> float:
        """``L'(theta; d)`` from the model (kinks processed in their layer order)."""
        v, u = self.tangents(d)
        total = float(self.g @ d + self.c @ u)
        if self.groups:
            dF = (self.G @ d + self.N @ u).reshape(-1, self.n_outputs)
            total += sum(float(np.max(S @ dF[s])) for s, S in self.groups) / self.n
        return total

    def tangents(self, d: np.ndarray):
        """Tangent pre-activations ``v`` and outputs ``u`` of the kink units along ``d``."""
        v = self.A @ d
        u = self._psi(v)
        if self.M.nnz:
            # kinks are sorted by layer, so M is strictly block-lower-triangular: iterate to a fixpoint
            for _ in range(self.n_kinks):
                v_new = self.A @ d + self.M @ u
                u_new = self._psi(v_new)
                if np.array_equal(v_new, v):
                    break
                v, u = v_new, u_new
        return v, u

    def _psi(self, v):
        return self.s_neg * v + (self.s_pos - self.s_neg) * np.maximum(v, 0.0)

    def size(self) -> float:
        """The sum of this model's absolute coefficients over the unit box (of ``g``, ``c A``, ``S G``)."""
        s = float(np.abs(self.g).sum())
        if self.n_kinks:
            bound = np.asarray(abs(self.A).sum(axis=1)).ravel()
            s += float(np.abs(self.c) @ bound) * max(abs(self.s_pos), abs(self.s_neg))
        if self.groups:
            Gb = np.asarray(abs(self.G).sum(axis=1)).ravel().reshape(-1, self.n_outputs)
            s += sum(float(np.abs(S).max(axis=0) @ Gb[s_]) for s_, S in self.groups) / self.n
        return s

    def scale(self) -> float:
        """The size of the terms ``L'`` over the unit box is computed from: the absolute twin's size."""
        return self.absolute.size() if self.twin_fn is not None else self.size()


def first_order_model(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, *,
                      drop_inert: bool = True, slopes: list | None = None) -> FirstOrderModel:
    """Build the tangent network of ``problem`` at its point (one reverse pass + switching rows).

    With ``drop_inert`` (default) kinks that cannot affect ``L'`` are left out (see ``kink_ids``).
    ``slopes`` fixes the activation slopes of every unit that is not one of ``kinks`` (default: the
    slopes at the point); this is how a *piece* fixes the side of kinks it branches on.

    The model carries its *absolute twin* (built on first use, :attr:`FirstOrderModel.absolute`):
    the same computation on ``|W|``, the absolute forward pass and an absolute loss adjoint
    (:func:`certify.rounding.absolute_twin`); ``rounding`` times it bounds the rounding error of
    every coefficient of the model (``fwd`` must have been made ``with_scale`` for that).
    """
    from .rounding import factor
    if slopes is None:
        D = blocked_slopes(problem, fwd, kinks)
    else:
        D = [np.where(m, 0.0, s) for s, m in zip(slopes, kinks.masks)] if kinks.masks else [s.copy() for s in slopes]
    delta = problem.loss.gradient(fwd.output, problem.Y) / problem.n_samples

    def twin():
        from .rounding import absolute_twin
        tp, tf, tdelta = absolute_twin(problem, fwd)
        full = _assemble(tp, tf, kinks, [np.abs(d) for d in D], tdelta / problem.n_samples, absolute=True,
                         groups_from=fwd)
        return full

    def twin_g_at(g, k=16):
        w0 = problem.network.offsets[-1][0]
        tail = np.abs(g[w0:])
        idx = w0 + (np.argsort(tail)[::-1][:k] if tail.size <= k else np.argpartition(tail, -k)[-k:])
        return idx, last_layer_twin(problem, fwd, kinks, idx)

    model = _assemble(problem, fwd, kinks, D, delta, twin_fn=twin, rounding=factor(problem),
                      blocked=D if slopes is None else None, twin_g_at=twin_g_at if fwd.scale is not None else None)
    return _drop_inert(model) if drop_inert else model


def last_layer_twin(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, idx: np.ndarray) -> np.ndarray | None:
    """The absolute twin's ``g`` at coordinates ``idx`` of the output layer ``(W_L, b_L)``, cheaply.

    For ``W_L[c, i]`` it is ``sum_s delta_abs[s, c] lip S^{L-1}[s, i]`` (``S^0 = |X|``), for ``b_L[c]``
    ``sum_s delta_abs[s, c]``, plus ``lambda |theta|`` with weight decay -- exactly what the full twin
    (:func:`certify.rounding.absolute_twin`, built by :attr:`FirstOrderModel.absolute`) computes
    there, at ``O(n)`` per coordinate instead of a whole absolute backward pass. Returns None when a
    coordinate is outside the output layer (or ``fwd`` has no absolute forward pass).
    """
    from .rounding import absolute_twin_adjoint
    net = problem.network
    idx = np.asarray(idx, dtype=np.int64)
    w0, b0 = net.offsets[-1]
    if fwd.scale is None or np.any(idx < w0):
        return None
    W = net.weights[-1]
    C, h = W.shape
    delta_abs = absolute_twin_adjoint(problem, fwd) / problem.n_samples
    lk = kinks.loss_kink_samples
    if lk.size:
        delta_abs[lk] = 0.0
    lip = max(abs(s) for s in net.activation.slopes)
    x_abs = np.abs(problem.X) if net.n_layers == 1 else fwd.scale[-2]
    out = np.empty(idx.size)
    for pos, k in enumerate(idx):
        if k >= b0:
            out[pos] = delta_abs[:, k - b0].sum()
        else:
            c, i = divmod(int(k) - w0, h)
            out[pos] = (lip if net.n_layers > 1 else 1.0) * float(delta_abs[:, c] @ x_abs[:, i])
    if problem.weight_decay:
        out += problem.weight_decay * np.abs(problem.theta[idx])
    return out


def _assemble(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, D: list, delta: np.ndarray, *,
              absolute: bool = False, groups_from: ForwardPass | None = None, twin_fn=None,
              rounding: float = 0.0, blocked: list | None = None, twin_g_at=None) -> FirstOrderModel:
    """The model's arrays from slopes ``D`` and the loss adjoint ``delta`` (dl/df / n per sample).

    ``absolute``: the absolute twin (every coefficient non-negative: ``|S|`` for the loss pieces,
    whose active set is read from ``groups_from``, the real forward pass).
    """
    net = problem.network
    n, C = problem.n_samples, net.n_outputs
    loss = problem.loss
    lk_samples = kinks.loss_kink_samples
    delta = np.array(delta, dtype=np.float64)
    delta[lk_samples] = 0.0
    g, adj = backprop(problem, fwd, D, delta, absolute=absolute)
    if problem.weight_decay:
        g = g + problem.weight_decay * (np.abs(problem.theta) if absolute else problem.theta)
    K = kinks.n_unit
    c = np.zeros(K)
    for l in range(1, net.n_layers):
        sel = kinks.unit_layer == l
        if np.any(sel):
            c[sel] = adj[l - 1][kinks.unit_sample[sel], kinks.unit_index[sel]]
    # rows of the unit kinks, layer by layer
    A_parts, M_parts = [], []
    for l in range(1, net.n_layers):
        ids, smp, unit = _kink_ids(kinks, l)
        R, Nest = switching_rows(problem, fwd, D, kinks, smp, l, unit)
        A_parts.append(R)
        M_parts.append(Nest)
    A = sp.vstack(A_parts, format="csr") if A_parts else sp.csr_matrix((0, net.n_params))
    M = sp.vstack(M_parts, format="csr") if M_parts else sp.csr_matrix((0, 0))
    if A.shape[0] != K:
        A = sp.csr_matrix((K, net.n_params))
        M = sp.csr_matrix((K, K))
    # loss-kink samples: full output rows
    groups = []
    if lk_samples.size:
        t_sample = np.repeat(lk_samples, C)
        t_unit = np.tile(np.arange(C), lk_samples.size)
        G, N = switching_rows(problem, fwd, D, kinks, t_sample, net.n_layers, t_unit)
        real = groups_from if groups_from is not None else fwd
        vals, slopes = loss.pieces(real.output, problem.Y)
        kinked = {(int(i), int(gr)): act for i, gr, act in zip(kinks.loss_sample, kinks.loss_group, kinks.loss_active)}
        for s_, i in enumerate(lk_samples):
            for gr in range(vals.shape[1]):
                active = kinked.get((int(i), gr))
                if active is None:
                    active = np.array([int(np.argmax(vals[i, gr]))])
                S = slopes[i, gr, active]
                groups.append((s_, np.abs(S) if absolute else S))
    else:
        G, N = sp.csr_matrix((0, net.n_params)), sp.csr_matrix((0, K))
    s_pos, s_neg = net.activation.slopes
    return FirstOrderModel(g=g, A=A, M=M, c=c, s_pos=s_pos, s_neg=s_neg, lk_sample=lk_samples, G=G, N=N,
                           groups=groups, n=n, n_outputs=C, kink_ids=np.arange(K), twin_fn=twin_fn,
                           rounding=rounding, slopes=blocked, twin_g_at=twin_g_at)


def _drop_inert(model: FirstOrderModel) -> FirstOrderModel:
    """Remove kinks whose output reaches ``L'`` through nothing (``c_k = 0``, no coupling)."""
    K = model.n_kinks
    if K == 0:
        return model
    relevant = model.c != 0
    if model.N.nnz:
        relevant |= np.asarray(abs(model.N).sum(axis=0)).ravel() > 0
    if model.M.nnz:
        Mabs = abs(model.M).tocsc()
        for _ in range(K):  # propagate relevance upstream
            new = relevant | (np.asarray(Mabs.T @ relevant.astype(float)).ravel() > 0)
            if np.array_equal(new, relevant):
                break
            relevant = new
    keep = np.nonzero(relevant)[0]
    if keep.size == K:
        return model
    return FirstOrderModel(
        g=model.g, A=model.A[keep], M=model.M[keep][:, keep], c=model.c[keep], s_pos=model.s_pos,
        s_neg=model.s_neg, lk_sample=model.lk_sample, G=model.G, N=model.N[:, keep], groups=model.groups,
        n=model.n, n_outputs=model.n_outputs, kink_ids=model.kink_ids[keep], twin_fn=model.twin_fn,
        rounding=model.rounding, slopes=model.slopes, twin_g_at=model.twin_g_at)


# ---------------------------------------------------------------------------- second order
def piece_slopes(problem: Problem, fwd: ForwardPass) -> list:
    """Activation slopes of the current cell (valid for the Hessian only where no unit is on a kink)."""
    return blocked_slopes(problem, fwd, None)


def hessian_vector_product(problem: Problem, fwd: ForwardPass, D: list, v: np.ndarray,
                           loss_grad: np.ndarray | None = None, inject: list | None = None) -> np.ndarray:
    """``H v`` for the smooth piece with activation slopes ``D`` (forward-over-reverse, Pearlmutter).

    Inside a cell every activation is linear (``x = D z``), so this is the exact Hessian of the
    piece's loss; on a cell without kinks it is the Hessian of ``L``. ``loss_grad`` replaces
    ``dl/df`` (e.g. by multiplier-weighted slopes at loss kinks) and ``inject[l-1]`` (n, n_l) is added
    to the adjoint of ``z^l``: together they give the Hessian of the Lagrangian
    ``L_sigma - sum_k mu_k sigma_k phi_k`` of a piece (the switching functions are pre-activations).
    """
    net = problem.network
    L = net.n_layers
    n = problem.n_samples
    loss = problem.loss
    layers = net.split(v)
    F = fwd.output
    # tangent forward
    dxs = [np.zeros_like(problem.X)]
    dz = None
    for l, ((W, _), (dW, db)) in enumerate(zip(zip(net.weights, net.biases), layers), start=1):
        dz = fwd.post[l - 1] @ dW.T + db
        if l > 1:
            dz = dz + dxs[-1] @ W.T
        if l < L:
            dxs.append(D[l - 1] * dz)
    dF = dz
    delta = (loss.gradient(F, problem.Y) if loss_grad is None else loss_grad) / n
    ddelta = loss.hessian_apply(F, problem.Y, dF) / n
    parts = [None] * L
    for l in range(L, 0, -1):
        W = net.weights[l - 1]
        dW = layers[l - 1][0]
        x_prev, dx_prev = fwd.post[l - 1], dxs[l - 1]
        gW = outer_sum(ddelta, x_prev)
        if l > 1:                     # (the inputs do not move: dx^0 = 0)
            gW = gW + outer_sum(delta, dx_prev)
        parts[l - 1] = np.concatenate([gW.ravel(), ddelta.sum(axis=0)])
        if l > 1:
            a = delta @ W
            da = ddelta @ W + delta @ dW
            delta, ddelta = a * D[l - 2], da * D[l - 2]
            if inject is not None and inject[l - 2] is not None:
                delta = delta + inject[l - 2]
    out = np.concatenate(parts)
    if problem.weight_decay:
        out = out + problem.weight_decay * v
    return out


def dense_hessian(problem: Problem, fwd: ForwardPass, D: list, basis: np.ndarray | None = None,
                  loss_grad: np.ndarray | None = None, inject: list | None = None,
                  deadline: float | None = None) -> np.ndarray:
    """``H`` (p x p), or ``H @ basis`` when a basis (p x r) is given, column by column.

    ``deadline`` is checked every few columns (:class:`certify.budget.OutOfTime`)."""
    from .budget import check
    p = problem.n_params
    cols = np.eye(p) if basis is None else basis
    if cols.shape[1] == 0:
        return np.zeros((p, 0))
    if loss_grad is None:
        loss_grad = problem.loss.gradient(fwd.output, problem.Y)
    out = []
    for j in range(cols.shape[1]):
        if j % 16 == 0:
            check(deadline, "a dense Hessian")
        out.append(hessian_vector_product(problem, fwd, D, cols[:, j], loss_grad, inject))
    return np.column_stack(out)


def second_tangent(problem: Problem, fwd: ForwardPass, D: list, d: np.ndarray) -> list:
    """``d^2/dt^2 z^l(theta + t d)`` at ``t = 0`` for every layer, with fixed slopes ``D``."""
    net = problem.network
    layers = net.split(d)
    dx = np.zeros_like(problem.X)
    ddx = np.zeros_like(problem.X)
    out = []
    for l, ((W, _), (dW, db)) in enumerate(zip(zip(net.weights, net.biases), layers), start=1):
        dz = fwd.post[l - 1] @ dW.T + db + dx @ W.T
        ddz = 2.0 * (dx @ dW.T) + ddx @ W.T
        out.append(ddz)
        if l < net.n_layers:
            dx, ddx = D[l - 1] * dz, D[l - 1] * ddz
    return out
