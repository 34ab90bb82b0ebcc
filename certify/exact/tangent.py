"""The tangent network in exact arithmetic: ``L'(theta; d)`` and its one-level form, with no rounding.

This mirrors :mod:`certify.tangent` and :func:`certify.formulate.first_order.one_level` line by line
(read them for the derivation): with every kink unit blocked,

    L'(theta; d) = g . d + sum_k c_k u_k + (1/n) sum_{loss-kink samples} sum_groups max_a S_a . df
    u_k = s_neg v_k + (s_pos - s_neg) max(v_k, 0),   v_k = A_k . d + sum_k' M_kk' u_k',
    df = G d + N u,

and without nesting ``L'(theta; d) = g1 . d + sum_j gamma_j max(a_j . d, 0) + (1/n) sum_q max_a S_qa . G_q d``.
Here every entry is a rational (:class:`~certify.exact.rational.QArray`), a kink is an exact zero
(:func:`certify.exact.kinks.exact_kinks`), and ``evaluate(d)`` returns a :class:`fractions.Fraction`:
its sign is never a rounding artefact. Matrices are dense: exact arithmetic is for small problems
(:mod:`certify.exact.budget`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..kinks import KinkStructure
from .forward import ExactForward, ExactProblem, activation_slopes, loss_gradient_wrt_output, loss_pieces
from .rational import QArray, as_q


# ---------------------------------------------------------------------------- passes
def blocked_slopes(ep: ExactProblem, fwd: ExactForward, kinks: KinkStructure | None) -> list:
    """Slopes of every hidden unit (``s_pos`` at ``z >= 0``, ``s_neg`` below), kink units set to 0."""
    D = []
    for l, z in enumerate(fwd.pre[:-1], start=1):
        s = activation_slopes(ep, z)
        if kinks is not None and kinks.masks:
            s = QArray.where(kinks.masks[l - 1], 0, s)
        D.append(s)
    return D


def backprop(ep: ExactProblem, fwd: ExactForward, D: list, delta_out: QArray):
    """Reverse pass with slopes ``D``; ``delta_out = dL/df`` per sample (n, C).

    Returns the flat gradient (without weight decay) and the adjoints ``dL/dx^l`` of every hidden
    layer (before the slope), as :func:`certify.tangent.backprop`.
    """
    layers = ep.layers()
    L = len(layers)
    parts = [None] * L
    adj = [None] * (L - 1)
    delta = delta_out
    for l in range(L, 0, -1):
        W = layers[l - 1][0]
        parts[l - 1] = QArray.concatenate([(delta.T @ fwd.post[l - 1]).ravel(), delta.sum(axis=0)])
        if l > 1:
            a = (delta @ W).reduce()
            adj[l - 2] = a
            delta = a * D[l - 2]
    return QArray.concatenate(parts).reduce(), adj


def switching_rows(ep: ExactProblem, fwd: ExactForward, D: list, kinks: KinkStructure,
                   t_sample: np.ndarray, t_layer: int, t_unit: np.ndarray):
    """Gradients of ``z^{t_layer}_{t_unit}(x_{t_sample})`` with the slopes ``D`` (kink units blocked).

    Returns ``R`` (T, p) and ``Nest`` (T, K): ``Nest[t, k]`` is the coefficient of the kink output
    ``u_k`` (an upstream kink of the same sample) in the target's tangent, as
    :func:`certify.tangent.switching_rows`.
    """
    layers = ep.layers()
    T = len(t_sample)
    K = kinks.n_unit
    t_sample = np.asarray(t_sample, dtype=np.int64)
    t_unit = np.asarray(t_unit, dtype=np.int64)
    blocks = [QArray.zeros((T, W.size + W.shape[0])) for W in ep.network.weights]
    nest = {}
    l = t_layer
    W = layers[l - 1][0]
    n_out, n_in = W.shape
    rows = np.arange(T)
    Wblk = QArray.zeros((T, n_out, n_in))
    Wblk[rows, t_unit, :] = fwd.post[l - 1][t_sample]
    bblk = QArray.zeros((T, n_out))
    bblk[rows, t_unit] = 1
    blocks[l - 1] = QArray.concatenate([Wblk.reshape(T, -1), bblk], axis=1)
    if l > 1:
        a = W[t_unit]                                   # adjoint w.r.t. x^{l-1}, (T, n_{l-1})
        for lp in range(l - 1, 0, -1):
            ids = np.nonzero(kinks.unit_layer == lp)[0]
            for t in range(T):
                for k in ids[kinks.unit_sample[ids] == t_sample[t]]:
                    coeff = a[t, int(kinks.unit_index[k])].item()
                    if coeff:
                        nest[(t, int(k))] = coeff
            delta = a * D[lp - 1][t_sample]
            xin = fwd.post[lp - 1][t_sample]
            blocks[lp - 1] = QArray.concatenate([(delta[:, :, None] * xin[:, None, :]).reshape(T, -1), delta], axis=1)
            if lp > 1:
                a = (delta @ layers[lp - 1][0]).reduce()
    R = QArray.concatenate(blocks, axis=1).reduce()
    Nest = np.empty((T, K), dtype=object)
    Nest.fill(0)
    for (t, k), v in nest.items():
        Nest[t, k] = v
    return R, QArray.from_values(Nest)


# ---------------------------------------------------------------------------- the model
@dataclass(frozen=True, eq=False)
class ExactFirstOrderModel:
    """The exact tangent network (fields as :class:`certify.tangent.FirstOrderModel`, all rational).

    ``groups`` holds ``(s, S)`` with integer slopes ``S`` (m, C); ``group_descs[q] = (sample, group,
    active pieces)``; ``descs[k] = ("unit", layer, sample, unit)`` names the kink of row ``k``.
    """

    g: QArray
    A: QArray
    M: QArray
    c: QArray
    s_pos: Fraction
    s_neg: Fraction
    lk_sample: np.ndarray
    G: QArray
    N: QArray
    groups: list
    group_descs: list
    n: int
    n_outputs: int
    kink_ids: np.ndarray
    kink_layer: np.ndarray
    descs: list

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
        return self.M.any() or self.N.any()

    @property
    def smooth(self) -> bool:
        return self.n_kinks == 0 and self.n_loss_kinks == 0

    def feeds(self) -> np.ndarray:
        """Per unit kink: whether its output reaches another kink (a column of ``M`` or ``N``)."""
        out = np.zeros(self.n_kinks, dtype=bool)
        if self.M.size:
            out |= np.any(self.M.num != 0, axis=0)
        if self.N.size:
            out |= np.any(self.N.num != 0, axis=0)
        return out

    def kink_kind(self) -> np.ndarray:
        """+1 convex (``c_k (s_pos - s_neg) > 0`` and feeding no kink), -1 otherwise."""
        gamma = (self.c * (self.s_pos - self.s_neg)).sign()
        return np.where((gamma > 0) & ~self.feeds(), 1, -1)

    @property
    def convex(self) -> bool:
        return not self.N.any() and bool(np.all(self.kink_kind() == 1))

    def psi(self, v: QArray) -> QArray:
        """``s'(0; v) = s_pos v`` for ``v > 0``, ``s_neg v`` otherwise."""
        return v * QArray.where(v.sign() > 0, self.s_pos, self.s_neg)

    def tangents(self, d: QArray):
        """``(v, u)`` of the kink units along ``d`` (layer by layer: ``M`` is block lower-triangular)."""
        return self.tangents_from(self.A @ as_q(d))

    def tangents_from(self, Ad: QArray):
        """``(v, u)`` given ``A d`` ((K,) for one direction, (K, m) for m directions as columns)."""
        if not self.M.any():
            return Ad, self.psi(Ad)
        v, u = Ad.copy(), QArray.zeros(Ad.shape)
        for layer in np.unique(self.kink_layer):
            sel = np.nonzero(self.kink_layer == layer)[0]
            v[sel] = Ad[sel] + self.M[sel] @ u
            u[sel] = self.psi(v[sel])
        return v, u

    def evaluate(self, d) -> Fraction:
        """``L'(theta; d)`` exactly (``d``: floats, read exactly, or rationals)."""
        d = as_q(d).reshape(-1, 1)
        return self.evaluate_columns((self.g[None, :] @ d).reshape(1), self.A @ d, self.G @ d).item()

    def evaluate_columns(self, gd: QArray, Ad: QArray, Gd: QArray) -> QArray:
        """``L'(theta; d_j)`` for the columns ``d_j`` of a matrix, given ``g.d`` (m,), ``A d`` (K, m), ``G d``.

        Cheap for coordinate directions, whose images are columns of ``g``, ``A`` and ``G``.
        """
        m = gd.size
        _, u = self.tangents_from(Ad.reshape(self.n_kinks, m))
        total = gd.reshape(m)
        if self.n_kinks:
            total = total + (self.c[None, :] @ u).reshape(m)
        if self.groups:
            dF = Gd.reshape(-1, m)
            if self.n_kinks:
                dF = dF + self.N @ u
            dF = dF.reshape(-1, self.n_outputs, m)
            total = total + QArray.concatenate(
                [(as_q(S) @ dF[s]).max(axis=0).reshape(1, m) for s, S in self.groups]).sum(axis=0) / self.n
        return total.reduce()


def first_order_model(ep: ExactProblem, fwd: ExactForward, kinks: KinkStructure, *, drop_inert: bool = True,
                      slopes: list | None = None) -> ExactFirstOrderModel:
    """The exact tangent network at the point (mirrors :func:`certify.tangent.first_order_model`)."""
    net = ep.network
    n, C = ep.n_samples, net.n_outputs
    p = ep.n_params
    if slopes is None:
        D = blocked_slopes(ep, fwd, kinks)
    elif kinks.masks:
        D = [QArray.where(m, 0, as_q(s)) for s, m in zip(slopes, kinks.masks)]
    else:
        D = [as_q(s) for s in slopes]
    lk = kinks.loss_kink_samples
    delta = loss_gradient_wrt_output(ep, fwd.output) / n
    if lk.size:
        delta[lk] = QArray.zeros((lk.size, C))
    g, adj = backprop(ep, fwd, D, delta)
    if ep.weight_decay:
        g = g + ep.theta * ep.weight_decay
    K = kinks.n_unit
    c = QArray.zeros(K)
    for l in range(1, net.n_layers):
        sel = np.nonzero(kinks.unit_layer == l)[0]
        if sel.size:
            c[sel] = adj[l - 1][kinks.unit_sample[sel], kinks.unit_index[sel]]
    A_parts, M_parts = [], []
    for l in range(1, net.n_layers):
        ids = np.nonzero(kinks.unit_layer == l)[0]
        if ids.size:
            R, Nest = switching_rows(ep, fwd, D, kinks, kinks.unit_sample[ids], l, kinks.unit_index[ids])
            A_parts.append(R)
            M_parts.append(Nest)
    A = QArray.concatenate(A_parts) if A_parts else QArray.zeros((0, p))
    M = QArray.concatenate(M_parts) if M_parts else QArray.zeros((0, 0))
    groups, group_descs = [], []
    if lk.size:
        G, N = switching_rows(ep, fwd, D, kinks, np.repeat(lk, C), net.n_layers, np.tile(np.arange(C), lk.size))
        values, piece_slopes = loss_pieces(ep, fwd.output)
        kinked = {(int(i), int(gr)): act for i, gr, act in zip(kinks.loss_sample, kinks.loss_group, kinks.loss_active)}
        for s, i in enumerate(lk):
            for gr in range(values.shape[1]):
                active = kinked.get((int(i), gr))
                if active is None:
                    active = np.array([int(values[i, gr].argmax())])
                groups.append((s, piece_slopes[i, gr, active]))
                group_descs.append((int(i), int(gr), tuple(int(a) for a in active)))
    else:
        G, N = QArray.zeros((0, p)), QArray.zeros((0, K))
    descs = [("unit", int(l), int(i), int(j)) for l, i, j in zip(kinks.unit_layer, kinks.unit_sample, kinks.unit_index)]
    model = ExactFirstOrderModel(
        g=g, A=A, M=M, c=c, s_pos=ep.s_pos, s_neg=ep.s_neg, lk_sample=lk, G=G, N=N, groups=groups,
        group_descs=group_descs, n=n, n_outputs=C, kink_ids=np.arange(K), kink_layer=kinks.unit_layer.copy(),
        descs=descs)
    return _drop_inert(model) if drop_inert else model


def _drop_inert(model: ExactFirstOrderModel) -> ExactFirstOrderModel:
    """Leave out kinks whose output reaches ``L'`` through nothing (``c_k = 0`` and no coupling)."""
    K = model.n_kinks
    if K == 0:
        return model
    relevant = ~model.c.is_zero()
    if model.N.size:
        relevant |= np.any(model.N.num != 0, axis=0)
    if model.M.any():
        Mnz = model.M.num != 0
        for _ in range(K):
            new = relevant | np.any(Mnz & relevant[:, None], axis=0)
            if np.array_equal(new, relevant):
                break
            relevant = new
    keep = np.nonzero(relevant)[0]
    if keep.size == K:
        return model
    return ExactFirstOrderModel(
        g=model.g, A=model.A[keep], M=model.M[keep][:, keep], c=model.c[keep], s_pos=model.s_pos,
        s_neg=model.s_neg, lk_sample=model.lk_sample, G=model.G, N=model.N[:, keep], groups=model.groups,
        group_descs=model.group_descs, n=model.n, n_outputs=model.n_outputs, kink_ids=model.kink_ids[keep],
        kink_layer=model.kink_layer[keep], descs=[model.descs[k] for k in keep])


# ---------------------------------------------------------------------------- one level
@dataclass(frozen=True, eq=False)
class ExactOneLevel:
    """``L'(theta; d) = g.d + sum_j gamma_j max(a_j.d, 0) + (1/n) sum_q max_a S_qa.(G_q d)``, exactly.

    ``source[j]`` is as in :class:`certify.formulate.first_order.OneLevel`; ``descs[j]`` names the kink:
    ``("unit", layer, sample, unit)`` or ``("loss", sample, group, (a0, a1))`` (the generator moves
    the loss from piece ``a0`` to ``a1``); ``multi_descs[q] = ("loss", sample, group, active)``.
    """

    g: QArray
    a: QArray
    gamma: QArray
    multi: list
    n: int
    source: list
    descs: list
    multi_descs: list

    @property
    def n_generators(self) -> int:
        return self.a.shape[0]

    @property
    def convex(self) -> bool:
        return bool(np.all(self.gamma.sign() >= 0))

    def evaluate(self, d) -> Fraction:
        """``L'(theta; d)`` exactly."""
        d = as_q(d)
        total = self.g.dot(d)
        if self.n_generators:
            ad = self.a @ d
            total += self.gamma.dot(QArray.where(ad.sign() > 0, ad, 0))
        for G, S in self.multi:
            total += (as_q(S) @ (G @ d)).max().item() / self.n
        return total

    def columns(self) -> QArray:
        """``(p, J + sum m_q)``: ``gamma_j a_j`` then ``(1/n) G_q' S_q'`` (the subgradient's generators)."""
        cols = [(self.a * self.gamma[:, None]).T] if self.n_generators else []
        for G, S in self.multi:
            cols.append((as_q(S) @ G).T / self.n)
        return QArray.concatenate(cols, axis=1) if cols else QArray.zeros((self.g.size, 0))

    def subgradient(self, lam, pis) -> QArray:
        """``g + sum_j gamma_j lambda_j a_j + (1/n) sum_q G_q' S_q' pi_q`` (rational multipliers)."""
        x = QArray.concatenate([as_q(lam).reshape(-1)] + [as_q(p).reshape(-1) for p in pis]) \
            if (self.n_generators or self.multi) else QArray.zeros(0)
        return self.g + self.columns() @ x if x.size else self.g


def one_level(model: ExactFirstOrderModel) -> ExactOneLevel:
    """One generator per kink (mirrors :func:`certify.formulate.first_order.one_level`)."""
    if model.nested:
        raise ValueError("one_level needs a model without nested kinks")
    C = model.n_outputs
    g = model.g + (model.A.T @ (model.c * model.s_neg) if model.n_kinks else 0)
    rows, gammas = [model.A], [model.c * (model.s_pos - model.s_neg)]
    source = [("unit", k) for k in range(model.n_kinks)]
    descs = list(model.descs)
    multi, multi_descs, extra = [], [], []
    for q, ((s, S), (i, gr, active)) in enumerate(zip(model.groups, model.group_descs)):
        Gs = model.G[s * C:(s + 1) * C]
        g = g + Gs.T @ as_q(S[0]) / model.n
        if S.shape[0] == 2:
            extra.append((Gs.T @ as_q(S[1] - S[0])).reshape(1, -1))
            source.append(("loss", q))
            descs.append(("loss", i, gr, active))
        elif S.shape[0] > 2:
            multi.append((Gs, S - S[0]))
            multi_descs.append(("loss", i, gr, active))
    if extra:
        rows += extra
        gammas.append(QArray.full(len(extra), Fraction(1, model.n)))
    return ExactOneLevel(g=g.reduce(), a=QArray.concatenate(rows).reduce(), gamma=QArray.concatenate(gammas),
                         multi=multi, n=model.n, source=source, descs=descs, multi_descs=multi_descs)


# ---------------------------------------------------------------------------- direct passes
def tangent_forward(ep: ExactProblem, fwd: ExactForward, d, kinks: KinkStructure) -> list:
    """Forward-mode tangents ``dz^l`` along ``d``; kink units pass ``s'(0; dz)``."""
    d = as_q(d)
    layers = ep.layers()
    d_layers = ep.layers(d)
    D = blocked_slopes(ep, fwd, kinks)
    dx = None
    out = []
    for l, ((W, _), (dW, db)) in enumerate(zip(layers, d_layers), start=1):
        dz = fwd.post[l - 1] @ dW.T + db[None, :]
        if dx is not None:
            dz = dz + dx @ W.T
        dz = dz.reduce()
        out.append(dz)
        if l < len(layers):
            kinked = dz * QArray.where(dz.sign() > 0, ep.s_pos, ep.s_neg)
            dx = QArray.where(kinks.masks[l - 1], kinked, dz * D[l - 1]) if kinks.masks else dz * D[l - 1]
    return out


def directional_derivative(ep: ExactProblem, fwd: ExactForward, kinks: KinkStructure, d) -> Fraction:
    """``L'(theta; d)`` by a direct tangent pass (independent of :class:`ExactFirstOrderModel`)."""
    d = as_q(d)
    dF = tangent_forward(ep, fwd, d, kinks)[-1]
    n = ep.n_samples
    if ep.loss.name == "square":
        total = (loss_gradient_wrt_output(ep, fwd.output) * dF).sum().item()
    else:
        values, slopes = loss_pieces(ep, fwd.output)
        best = values.argmax(axis=2)
        chosen = np.take_along_axis(slopes, best[:, :, None, None], axis=2)[:, :, 0, :]
        per_group = (dF[:, None, :] * chosen).sum(axis=2).to_fractions()
        for i, gr, active in zip(kinks.loss_sample, kinks.loss_group, kinks.loss_active):
            per_group[i, gr] = (as_q(slopes[i, gr, active]) @ dF[i]).max().item()
        total = sum(per_group.ravel(), Fraction(0))
    total /= n
    if ep.weight_decay:
        total += ep.weight_decay * ep.theta.dot(d)
    return total


def curve_coefficients(ep: ExactProblem, fwd: ExactForward, kinks: KinkStructure, d, e=None):
    """``(c1, c2)`` with ``L(theta + t d + t^2/2 e) = L + c1 t + c2 t^2/2 + o(t^2)`` as ``t -> 0+``, exactly.

    Mirrors :func:`certify.refute.curve_coefficients` with exact kinks: at a kink unit the side is
    the sign of the first tangent, else of the second; at a loss kink the lexicographically largest
    ``(first, second)`` derivative among the exactly tied pieces. Both coefficients are derivatives of
    the smooth piece the curve enters.
    """
    d = as_q(d)
    e = QArray.zeros(d.shape) if e is None else as_q(e)
    layers, d_layers, e_layers = ep.layers(), ep.layers(d), ep.layers(e)
    dx = ddx = None
    L = len(layers)
    for l, ((W, _), (dW, db), (eW, eb)) in enumerate(zip(layers, d_layers, e_layers), start=1):
        x = fwd.post[l - 1]
        dz = x @ dW.T + db[None, :]
        ddz = x @ eW.T + eb[None, :]
        if dx is not None:
            dz = dz + dx @ W.T
            ddz = ddz + dx @ dW.T * 2 + ddx @ W.T
        dz, ddz = dz.reduce(), ddz.reduce()
        if l == L:
            dF, ddF = dz, ddz
            break
        z = fwd.pre[l - 1]
        tangent_side = np.where(dz.sign() != 0, dz.sign(), ddz.sign())
        side = np.where(kinks.masks[l - 1], tangent_side, z.sign()) if kinks.masks else z.sign()
        slope = QArray.where(side >= 0, ep.s_pos, ep.s_neg)
        dx, ddx = dz * slope, ddz * slope
    n = ep.n_samples
    if ep.loss.name == "square":
        r = fwd.output - ep.Y
        c1 = (r * dF).sum().item() / n
        c2 = ((dF * dF).sum().item() + (r * ddF).sum().item()) / n
    else:
        values, slopes = loss_pieces(ep, fwd.output)
        active = (values.max(axis=2)[:, :, None] - values).is_zero()
        d1 = (as_q(slopes) * dF[:, None, None, :]).sum(axis=3).to_fractions()
        d2 = (as_q(slopes) * ddF[:, None, None, :]).sum(axis=3).to_fractions()
        c1 = c2 = Fraction(0)
        for i, gr in np.ndindex(active.shape[:2]):
            cand = [(d1[i, gr, a], d2[i, gr, a]) for a in np.nonzero(active[i, gr])[0]]
            top = max(cand)
            c1 += top[0]
            c2 += top[1]
        c1, c2 = c1 / n, c2 / n
    if ep.weight_decay:
        c1 += ep.weight_decay * ep.theta.dot(d)
        c2 += ep.weight_decay * (d.dot(d) + ep.theta.dot(e))
    return c1, c2


def is_local_descent(c1: Fraction, c2: Fraction) -> bool:
    """``c1 < 0``, or ``c1 = 0`` and ``c2 < 0`` (exactly): the loss drops for every small ``t > 0``."""
    return c1 < 0 or (c1 == 0 and c2 < 0)
