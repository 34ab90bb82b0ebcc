"""Escape units in any layer: a hidden unit whose outgoing weights are all zero (REFERENCES.md A4.5
item 2, generalised to any depth, several outputs and loss kinks). Refutes only; matrix-free.

Let unit ``j`` of hidden layer ``l`` have ``W_{l+1}[:, j] = 0``. Move only its outgoing weights and
its incoming weights and bias, along ``theta(t) = theta + t d``,
``d = (eps a at W_{l+1}[:, j], v / eps at (W_l[j], b_l[j]))`` with ``a`` in ``R^m`` (``m`` the width of
layer ``l + 1``). Nothing upstream moves, so the layer input ``xbar_i = (x^{l-1}_i, 1)`` is fixed and,
for small ``t`` (``h`` is piecewise linear: ``h(z + s u) = h(z) + s h'(z; u)`` for small ``s >= 0``,
exactly, with ``h(0 + s u) = s h(u)`` at a kink)::

    z^{l+1}_i(t) = z^{l+1}_i + t eps a h(z_ij) + t^2 a psi_i(v),     psi_i(v) = h'(z_ij; xbar_i . v).

Write ``T_i(Q)`` for the directional derivative of the loss in the layer-``l+1`` pre-activation of
sample ``i`` (the rest of the network and the loss, from there on: linear, ``G_i . Q``, when no kink
of sample ``i`` lies downstream; piecewise linear and positively homogeneous otherwise). The
**escape function** is ``phi(a, v) = sum_i T_i(a psi_i(v))``.

**Theorem.** If ``phi(a, v) < 0`` and, when the unit is not silent, ``T(eps P) = 0`` with
``P_i = a h(z_ij)``, then theta is not a local minimum: for all small ``eps`` the curve has ``c_1 = 0``
and ``c_2 < 0`` on the piece it enters.

*Proof.* The loss is ``L(t) = Lds(Z + t eps P + t^2 Q)`` with ``Q_i = a psi_i(v)`` and ``Lds`` the
downstream loss, piecewise smooth and directionally differentiable at ``Z``. (i) *Silent unit*
(``h(z_ij) = 0`` for every ``i``: dead or on its kink at every sample, e.g. ``W_l[j] = 0, b_l[j] = 0``):
``P = 0`` and ``L(t) = Lds(Z + s Q)`` with ``s = t^2``, so ``L(t) = L + t^2 phi(a, v) + O(t^4)``:
``c_1 = 0, c_2 = 2 phi < 0``. (ii) *Otherwise*: on the piece ``sigma`` that ``t eps P + t^2 Q`` enters,
``Lds = Lds_sigma`` is smooth, ``L(t) = L + t eps grad_sigma . P + t^2 (grad_sigma . Q + eps^2/2 P' H_sigma
P) + O(t^3)``; ``grad_sigma . P = T(P) = 0`` by assumption (automatic when nothing downstream is
kinked, since then ``T(P) = +-grad_{W_{l+1}[:, j]} L . a = 0`` at a stationary point) and
``grad_sigma . Q -> T'(Q)`` (the derivative of ``Q`` on the piece ``P`` selects), which equals ``phi``
when the downstream is smooth; so ``c_2 = 2 phi + O(eps^2) < 0`` for small ``eps``. In both cases the
loss drops for every small ``t > 0``: a local descent, not just a lower point. Here every candidate
curve is nevertheless re-judged by its own Taylor coefficients on the piece it enters
(:func:`certify.refute.taylor_curve`, exactly on small problems) and a decrease is verified.

**Finding (a, v).** With nothing kinked downstream, ``phi(a, v) = a . Psi(v)``,
``Psi(v) = sum_i G_i psi_i(v) = M v + sum_groups W_g |xbar_g . v|`` (``relu``-like ``h`` writes
``h'(0; u) = (s+ + s-)/2 u + (s+ - s-)/2 |u|``; ``M`` collects the linear parts, the absolute values come
from the samples on the unit's kink, grouped by equal ``xbar``). So an escape exists iff ``Psi`` is not
identically 0, i.e. iff ``M != 0`` or some group weight ``W_g != 0`` (distinct ``|xbar_g . v|`` are
linearly independent), and then ``a = -Psi(v)`` gives ``phi = -||Psi(v)||^2``; ``v`` is built from a
nonzero row of ``M`` or to cross one group's hyperplane alone. With kinks downstream (loss kinks of
hinge / absolute losses, unit kinks in later layers) ``phi(a, .)`` is, for each fixed ``a``, a
one-level piecewise-linear function of ``v`` (kinks at the unit's own samples, coefficients
``T_i(+-a)``), minimised exactly by the first-order machinery (LP, or MILP for concave terms) for
``a = +-e_c`` over the output coordinates with the largest adjoints.

**Partial escapes** (:func:`escape_partial`): a unit with weight 0 into only *some* units of the next
layer and the same output on every sample (GT-12's unit: ``w = 0, b = 1``, weights ``(1, 0)`` into two
outputs) escapes through those units alone; its other weights then see ``v`` at first order, which a
large ``eps`` scales away when the candidate ``v`` leaves the loss unchanged at first order.

Cost: one backward pass per layer (the adjoints ``G``), a tangent pass over the samples with
downstream kinks per candidate ``a``, small LPs in the unit's fan-in; no Hessian.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..formulate.first_order import OneLevel
from ..refute import taylor_curve
from ..rounding import factor
from ..tangent import backprop, blocked_slopes
from .base import Context, SecondOrder

NAME = "escape"

#: output coordinates tried with an exact one-level decision per unit (the largest adjoints first)
MAX_OUTPUT_COORDS = 4
#: zero-outgoing units examined (silent units first)
MAX_UNITS = 64
#: step scalings tried for a unit that is not silent
EPS = (1.0, 0.25, 1 / 16, 1 / 64, 1 / 256)


def zero_outgoing_units(problem) -> list:
    """``(l, j)`` (1-based hidden layer) of every unit whose outgoing weights are all exactly 0."""
    net = problem.network
    out = []
    for l in range(1, net.n_layers):
        Wn = net.weights[l]
        for j in np.nonzero(~np.any(Wn != 0, axis=0))[0]:
            out.append((l, int(j)))
    return out


def applies(ctx: Context) -> str | None:
    if not zero_outgoing_units(ctx.problem) and not partial_units(ctx):
        return "no hidden unit has all its outgoing weights 0 (or some of them 0 and a constant output)"
    return None


def partial_units(ctx: Context) -> list:
    """``(l, j, zero)``: units with some but not all outgoing weights 0 (``zero``: those next-layer units)
    whose output is the same on every sample (silent, or constant, as GT-12's unit): then the first-order
    change the escape curve makes through the unit's other weights can be scaled away (module docstring
    of :func:`escape_partial`)."""
    problem, fwd = ctx.problem, ctx.fwd
    net = problem.network
    if not net.activation.has_kink:
        return []
    out = []
    for l in range(1, net.n_layers):
        Wn = net.weights[l]
        zero_mask = Wn == 0
        for j in np.nonzero(np.any(zero_mask, axis=0) & ~np.all(zero_mask, axis=0))[0]:
            h = net.activation(fwd.pre[l - 1][:, j])
            if np.all(h == h[0]):
                out.append((l, int(j), np.nonzero(zero_mask[:, j])[0]))
    return out


def run(ctx: Context) -> SecondOrder:
    problem, fwd = ctx.problem, ctx.fwd
    units = zero_outgoing_units(problem)
    act = problem.network.activation
    masks = ctx.kinks.masks
    on_kink = [u for u in units if masks and np.any(masks[u[0] - 1][:, u[1]])]
    silent = [u for u in units if not np.any(act(fwd.pre[u[0] - 1][:, u[1]]) != 0)]
    # a dead unit of a ReLU (no sample on its kink, slope 0 everywhere) has psi = 0: it never escapes
    dead = [u for u in silent if u not in on_kink and act.slopes[1] == 0]
    order = ([u for u in silent if u in on_kink] + [u for u in on_kink if u not in silent]
             + [u for u in units if u not in on_kink and u not in dead])
    notes, adjoints = [], {}
    examined = 0
    for l, j in order[:MAX_UNITS]:
        if ctx.remaining() <= 0:
            notes.append("the time budget ran out")
            break
        examined += 1
        res = escape_unit(ctx, l, j, adjoints)
        if res.get("curve") is not None:
            curve = res["curve"]
            local = "exactly" if curve.get("local") == "exact" else "up to rounding"
            return SecondOrder("saddle", "escape", reason=(
                f"first-order stationary, but unit {j} of hidden layer {l} has all outgoing weights 0 and a "
                f"negative escape value {res['value']:.3g} (it enters the loss at second order through "
                f"W{l + 1}[:, {j}] times its output's change); the loss drops by {curve['decrease']:.3g} along "
                f"the escape curve (c1 = 0, leading coefficient of order {curve.get('leading_order')} negative, "
                f"{local}; verified, {curve['method']})"),
                flags={"strict": False},
                certificate={"kind": "escape_unit", "layer": l, "unit": j, "escape_value": res["value"],
                             "output_direction": res["a"], "silent": (l, j) in silent, "how": res["how"]},
                refutation=curve)
        notes.append((l, j, res["note"]))
    notes = _merged(notes)
    for l, j, zero in partial_units(ctx)[:MAX_UNITS]:
        if ctx.remaining() <= 0:
            break
        res = escape_partial(ctx, l, j, zero, adjoints)
        if res.get("curve") is not None:
            curve = res["curve"]
            local = "exactly" if curve.get("local") == "exact" else "up to rounding"
            outs = ", ".join(str(int(c)) for c in zero)
            return SecondOrder("saddle", "escape", reason=(
                f"first-order stationary, but unit {j} of hidden layer {l} has weight 0 into unit(s) {outs} of "
                f"layer {l + 1} and a constant output: its escape value through them is {res['value']:.3g} < 0 "
                f"(with no first-order change through its other weights); the loss drops by "
                f"{curve['decrease']:.3g} along the escape curve (leading coefficient of order "
                f"{curve.get('leading_order')} negative, {local}; verified, {curve['method']})"),
                flags={"strict": False},
                certificate={"kind": "escape_unit", "layer": l, "unit": j, "escape_value": res["value"],
                             "output_direction": res["a"], "partial": [int(c) for c in zero], "how": res["how"]},
                refutation=curve)
        notes.append(f"unit {j} of layer {l} (weight 0 into {len(zero)} unit(s)): {res['note']}")
    more = f" (and {len(order) - examined} more not examined)" if len(order) > examined else ""
    if dead:
        notes.append(f"{len(dead)} dead unit(s) cannot escape (slope 0 at every sample)")
    return SecondOrder(None, "escape", reason=(f"{len(units)} unit(s) with zero outgoing weights; no escape curve "
                                               f"verified{more}: " + "; ".join(notes[:4])))


def _merged(entries: list) -> list:
    """``(layer, unit, note)`` entries as text, units with the same note in the same layer said once
    (a plain string, e.g. the budget running out, is kept as it is, in its place)."""
    by: dict = {}
    for entry in entries:
        if isinstance(entry, str):
            by[entry] = None
        else:
            l, j, note = entry
            by.setdefault((l, note), []).append(j)
    out = []
    for key, units in by.items():
        if units is None:
            out.append(key)
            continue
        l, note = key
        who = f"unit {units[0]}" if len(units) == 1 else "units " + ", ".join(str(j) for j in units)
        out.append(f"{who} of layer {l}: {note}")
    return out


# ---------------------------------------------------------------------------- the escape function
def _downstream_adjoint(ctx: Context, l: int, cache: dict) -> np.ndarray:
    """``G`` (n, m): dL/dz^{l+1} per sample (kink units blocked; exact for samples with nothing kinked
    downstream)."""
    if l in cache:
        return cache[l]
    problem, fwd = ctx.problem, ctx.fwd
    net = problem.network
    delta = problem.loss.gradient(fwd.output, problem.Y) / problem.n_samples
    if l + 1 == net.n_layers:
        G = delta
    else:
        D = blocked_slopes(problem, fwd, ctx.kinks)
        _, adj = backprop(problem, fwd, D, delta)
        G = adj[l] * D[l]
    cache[l] = G
    return G


def _kinked_downstream(ctx: Context, l: int) -> np.ndarray:
    """Samples with a unit kink in a layer after ``l`` or a loss kink: ``T_i`` is not linear there."""
    kinks = ctx.kinks
    n = ctx.problem.n_samples
    bad = np.zeros(n, dtype=bool)
    for k in range(l + 1, ctx.problem.network.n_layers):
        if kinks.masks:
            bad |= kinks.masks[k - 1].any(axis=1)
    if kinks.n_loss:
        bad[kinks.loss_sample] = True
    return bad


def downstream_slope(ctx: Context, l: int, rows: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """``T_i(Q_i)`` for the samples ``rows``: the directional derivative of the mean loss when the
    layer-``l+1`` pre-activations of those samples move by ``Q`` (kinks pass ``h'(0; .)``, loss kinks
    take their largest active piece)."""
    problem, fwd, kinks = ctx.problem, ctx.fwd, ctx.kinks
    net = problem.network
    act = net.activation
    dz = np.asarray(Q, dtype=np.float64)
    for k in range(l + 1, net.n_layers):          # hidden layers after l
        z = fwd.pre[k - 1][rows]
        dx = act.slope(z) * dz
        if kinks.masks:
            m = kinks.masks[k - 1][rows]
            dx = np.where(m, act.directional(dz), dx)
        dz = dx @ net.weights[k].T
    dF = dz
    loss = problem.loss
    if loss.smooth:
        g = loss.gradient(fwd.output[rows], problem.Y[rows])
        return np.sum(g * dF, axis=1) / problem.n_samples
    vals, slopes = loss.pieces(fwd.output[rows], problem.Y[rows])
    best = vals.argmax(axis=2)
    chosen = np.take_along_axis(slopes, best[:, :, None, None], axis=2)[:, :, 0, :]
    per = np.einsum("igc,ic->ig", chosen, dF)
    pos = {int(i): r for r, i in enumerate(rows)}
    for q in range(kinks.n_loss):
        i = int(kinks.loss_sample[q])
        if i in pos:
            r = pos[i]
            per[r, kinks.loss_group[q]] = np.max(slopes[r, kinks.loss_group[q], kinks.loss_active[q]] @ dF[r])
    return per.sum(axis=1) / problem.n_samples


def escape_model(ctx: Context, l: int, j: int, r_plus: np.ndarray, r_minus: np.ndarray) -> OneLevel:
    """``v -> phi(a, v) = sum_i T_i(a psi_i(v))`` as a one-level piecewise-linear function.

    ``r_plus[i] = T_i(a)``, ``r_minus[i] = T_i(-a)``; ``T_i(a psi) = max(psi, 0) r+ + max(-psi, 0) r-``
    because ``T_i`` is positively homogeneous. Off the kink ``psi_i = s u`` (``u = xbar_i . v``, ``s`` the
    unit's slope) gives ``|s| ((r+ + r-) max(u, 0) - r_(-sign s) u)``; on it
    ``psi_i(u) = s+ max(u, 0) + s- min(u, 0)`` gives ``c- u + (s+ r+ - c-) max(u, 0)`` with
    ``c- = -s- r-`` (``s- >= 0``) or ``s- r+`` (``s- < 0``).
    """
    problem, fwd, kinks = ctx.problem, ctx.fwd, ctx.kinks
    n = problem.n_samples
    s_pos, s_neg = problem.network.activation.slopes
    xbar = np.hstack([fwd.post[l - 1], np.ones((n, 1))])
    z = fwd.pre[l - 1][:, j]
    on = kinks.masks[l - 1][:, j] if kinks.masks else np.zeros(n, dtype=bool)
    s = np.where(z > 0, s_pos, s_neg)
    lin = np.zeros(n)
    gam = np.zeros(n)
    off = ~on
    sp_ = s > 0
    lin[off & sp_] = -s[off & sp_] * r_minus[off & sp_]
    gam[off & sp_] = s[off & sp_] * (r_plus + r_minus)[off & sp_]
    sn = s < 0
    lin[off & sn] = -np.abs(s[off & sn]) * r_plus[off & sn]
    gam[off & sn] = np.abs(s[off & sn]) * (r_plus + r_minus)[off & sn]
    c_neg = -s_neg * r_minus if s_neg >= 0 else s_neg * r_plus
    lin[on] = c_neg[on]
    gam[on] = s_pos * r_plus[on] - c_neg[on]
    g = lin @ xbar
    idx = np.nonzero(gam != 0)[0]

    def twin():
        big = np.abs(r_plus) + np.abs(r_minus)
        coef = np.maximum(np.abs(s), max(abs(s_pos), abs(s_neg))) * big
        return OneLevel(g=coef @ np.abs(xbar), a=sp.csr_matrix(np.abs(xbar[idx])), gamma=2 * coef[idx], multi=[],
                        n=n, source=[])

    return OneLevel(g=g, a=sp.csr_matrix(xbar[idx]), gamma=gam[idx], multi=[], n=n,
                    source=[("sample", int(i)) for i in idx], twin=twin, rounding=factor(problem))


def psi_parts(ctx: Context, l: int, j: int, G: np.ndarray, *, absolute: bool = False):
    """``Psi(v) = M v + sum_g W_g |xbar_g . v|`` for a unit with nothing kinked downstream.

    Returns ``(M (m, q), groups)`` with ``groups`` a list of ``(xbar_g (q,), W_g (m,))`` over the distinct
    inputs of the samples on the unit's kink.
    """
    problem, fwd, kinks = ctx.problem, ctx.fwd, ctx.kinks
    n = problem.n_samples
    s_pos, s_neg = problem.network.activation.slopes
    xbar = np.hstack([fwd.post[l - 1], np.ones((n, 1))])
    z = fwd.pre[l - 1][:, j]
    on = kinks.masks[l - 1][:, j] if kinks.masks else np.zeros(n, dtype=bool)
    s = np.where(z > 0, s_pos, s_neg)
    coef = np.where(on, 0.5 * (s_pos + s_neg), s)
    mag = np.abs if absolute else (lambda x: x)
    M = (G * mag(coef)[:, None]).T @ mag(xbar)
    groups = []
    idx = np.nonzero(on)[0]
    if idx.size and s_pos != s_neg:
        uniq, inv = np.unique(xbar[idx], axis=0, return_inverse=True)
        inv = np.asarray(inv).ravel()
        for gidx in range(uniq.shape[0]):
            members = idx[inv == gidx]
            Wg = mag(0.5 * (s_pos - s_neg)) * G[members].sum(axis=0)
            groups.append((uniq[gidx], Wg))
    return M, groups


def _psi(M, groups, v):
    out = M @ v
    for xg, Wg in groups:
        out = out + Wg * abs(float(xg @ v))
    return out


def _ascent_candidates(net, l: int, j: int, M, groups, rng, n_starts: int = 8, iters: int = 40) -> list:
    """Local maximisers of ``||Psi(v)|| / |v|`` (weight decay: an escape needs it above ``lambda``).

    Started from the incoming weights of the active units of the same layer (splitting one of them is
    where the maximum sits at a stationary point: ``||Psi(wbar_k)|| = lambda |wbar_k|``) and from random
    directions; each step is the power-iteration ``v <- grad_v (a . Psi(v))`` with ``a = Psi(v) / ||Psi(v)||``.
    """
    W, b = net.weights[l - 1], net.biases[l - 1]
    live = [k for k in range(W.shape[0]) if k != j and np.any(net.weights[l][:, k])]
    live.sort(key=lambda k: -float(np.abs(W[k]).sum() + abs(b[k])))
    starts = [np.append(W[k], b[k]) for k in live[:n_starts]]
    starts += [rng.standard_normal(M.shape[1]) for _ in range(4)]
    out = []
    for v in starts:
        if not np.any(v):
            continue
        v = v / np.linalg.norm(v)
        best = float(np.linalg.norm(_psi(M, groups, v)))
        for _ in range(iters):
            P = _psi(M, groups, v)
            norm = float(np.linalg.norm(P))
            if norm == 0:
                break
            a = P / norm
            grad = M.T @ a
            for xg, Wg in groups:
                grad = grad + float(a @ Wg) * np.sign(float(xg @ v)) * xg
            gn = float(np.linalg.norm(grad))
            if gn == 0:
                break
            w = grad / gn
            val = float(np.linalg.norm(_psi(M, groups, w)))
            if val <= best:
                break
            v, best = w, val
        out.append(v / max(float(np.abs(v).max()), 1e-300))
    return out


def _constructive_candidates(M, groups, rng, n_groups: int = 8, xbar_all=None) -> list:
    """``v`` with ``Psi(v) != 0`` whenever ``Psi`` is not identically 0 (module docstring)."""
    cands = []
    norms = np.linalg.norm(M, axis=1)
    for c in np.argsort(-norms)[:3]:
        if norms[c] > 0:
            cands += [M[c] / np.abs(M[c]).max(), -M[c] / np.abs(M[c]).max()]
    weights = sorted(range(len(groups)), key=lambda g: -float(np.abs(groups[g][1]).sum()))
    q = M.shape[1]
    for g in weights[:n_groups]:
        xg, Wg = groups[g]
        if not np.any(Wg):
            continue
        if xbar_all is not None:
            # a hyperplane cutting off this group alone (when its input is extreme in the direction away
            # from the centroid): relu(xbar . v) is positive on the group only, so nothing else moves
            u = xg[:-1] - xbar_all[:, :-1].mean(axis=0)
            s = xbar_all[:, :-1] @ u
            top = float(xg[:-1] @ u)
            others = s[np.any(xbar_all != xg, axis=1)]
            if others.size and top > others.max():
                v = np.concatenate([u, [-(top + float(others.max())) / 2]])
                cands.append(v / max(float(np.abs(v).max()), 1e-300))
        xh = xg / np.linalg.norm(xg)
        w = rng.standard_normal(q)
        w -= (w @ xh) * xh                      # on the group's hyperplane
        others = [x for k, (x, _) in enumerate(groups) if k != g]
        gaps = [abs(float(x @ w)) / max(abs(float(x @ xh)), 1e-300) for x in others]
        step = 0.5 * min(gaps) if gaps else 1.0
        step = min(step, 1.0) if step > 0 else 1e-3
        for v in (w, w + step * xh, w - step * xh, xh, -xh):
            cands.append(v / max(float(np.abs(v).max()), 1e-300))
    return cands


def escape_unit(ctx: Context, l: int, j: int, adjoints: dict) -> dict:
    """Search an escape curve for unit ``j`` of hidden layer ``l`` (zero outgoing weights)."""
    problem, fwd = ctx.problem, ctx.fwd
    net = problem.network
    m = net.weights[l].shape[0]
    G = _downstream_adjoint(ctx, l, adjoints)
    kinked = _kinked_downstream(ctx, l)
    z = fwd.pre[l - 1][:, j]
    relevant = (net.activation.slope(z) != 0) | (ctx.kinks.masks[l - 1][:, j] if ctx.kinks.masks else False)
    smooth = not np.any(kinked & relevant)
    rng = np.random.default_rng(l * 1000 + j)
    tried = 0
    best_value = None
    lam = float(problem.weight_decay)
    silent = not np.any(net.activation(z) != 0)
    best_wd = None     # with weight decay, a silent unit's line has c_2 / 2 = a . Psi(v) + lam |a| |v| at best
    # 1. constructive candidates from Psi (exact when nothing relevant is kinked downstream)
    M, groups = psi_parts(ctx, l, j, np.where(kinked[:, None], 0.0, G) if not smooth else G)
    xbar_all = np.hstack([fwd.post[l - 1], np.ones((problem.n_samples, 1))])
    cands = _constructive_candidates(M, groups, rng, xbar_all=xbar_all)
    if lam and silent and smooth:
        cands += _ascent_candidates(net, l, j, M, groups, rng)
    for v in cands:
        if ctx.remaining() <= 0:
            break
        P = _psi(M, groups, v)
        if not np.any(P):
            continue
        a = -P / np.abs(P).max()
        value = float(a @ P)
        tried += 1
        if lam and silent:
            w = value / (float(np.linalg.norm(a)) * max(float(np.linalg.norm(v)), 1e-300)) + lam
            best_wd = w if best_wd is None else min(best_wd, w)
            if w > 1e-9 * lam:
                best_value = value if best_value is None else min(best_value, value)
                continue             # the decay outweighs this escape at second order: no curve to try
        curve = escape_curve(ctx, l, j, a, v)
        if curve is not None:
            return {"curve": curve, "value": value, "a": a, "how": "constructive"}
        best_value = value if best_value is None else min(best_value, value)
    if smooth and psi_is_zero(ctx, l, j, M, groups, adjoints):
        return {"note": "its escape function vanishes identically (no linear part, no kink group weight)"}
    # 2. exact one-level decisions for a = +-e_c
    from ..first_order import decide_one_level
    score = np.abs(M).sum(axis=1) + sum(np.abs(Wg) for _, Wg in groups) if groups else np.abs(M).sum(axis=1)
    rows_k = np.nonzero(kinked)[0]
    for c in np.argsort(-score)[:MAX_OUTPUT_COORDS]:
        for sgn in (1.0, -1.0):
            if ctx.remaining() <= 0:
                break
            a = np.zeros(m)
            a[c] = sgn
            r_plus, r_minus = G @ a, -(G @ a)
            if rows_k.size:
                r_plus[rows_k] = downstream_slope(ctx, l, rows_k, np.broadcast_to(a, (rows_k.size, m)))
                r_minus[rows_k] = downstream_slope(ctx, l, rows_k, np.broadcast_to(-a, (rows_k.size, m)))
            if not (np.any(r_plus) or np.any(r_minus)):
                continue                       # nothing downstream sees this output coordinate
            one = escape_model(ctx, l, j, r_plus, r_minus)
            res = decide_one_level(one, time_limit=ctx.budget(), clarke=False)
            if res.stationary or res.direction is None:
                continue
            tried += 1
            value = float(res.min_value)
            best_value = value if best_value is None else min(best_value, value)
            v = np.asarray(res.direction, dtype=np.float64)
            if lam and silent:          # as above: the decay's share at the balancing eps, per |a| |v|
                w = value / max(float(np.linalg.norm(v)), 1e-300) + lam        # (|a| = 1)
                best_wd = w if best_wd is None else min(best_wd, w)
                if w > 1e-9 * lam:
                    continue
            curve = escape_curve(ctx, l, j, a, v)
            if curve is not None:
                return {"curve": curve, "value": value, "a": a, "how": f"one-level {res.method}"}
    if best_value is None:
        return {"note": "no negative escape value found"}
    if best_wd is not None and abs(best_wd) <= 1e-9 * lam:
        return {"note": f"the escape has curvature 0 at best: max ||Psi(v)|| / |v| found is lambda = {lam:g} to "
                        f"rounding (splitting an active unit of the layer, an exactly flat valley of weight decay); "
                        f"deciding it needs the global bound max_v ||Psi(v)|| <= lambda |v|, which certify does not "
                        f"compute"}
    if best_wd is not None and best_wd >= -1e-9 * lam:
        return {"note": f"escape value {best_value:.3g} < 0, but weight decay {lam:g} outweighs it: along the "
                        f"escapes tried the second-order coefficient per |a||v| is {best_wd:.3g} >= 0 (no escape at second "
                        f"order along them)"}
    return {"note": f"escape value {best_value:.3g} < 0 but no curve gave a verified local descent ({tried} tried)"}


def escape_partial(ctx: Context, l: int, j: int, zero: np.ndarray, adjoints: dict) -> dict:
    """Escape of a unit through the next-layer units ``zero`` it has weight 0 into (GT-12's mechanism).

    With ``d = (eps a on W_{l+1}[zero, j], v / eps on the unit's incoming weights)`` (and the next layer's
    bias compensating ``eps a h`` when the unit's output ``h`` is a nonzero constant), the units with a
    nonzero weight ``w_c = W_{l+1}[c, j]`` move at first order by ``(t / eps) w_c psi_i(v)``: so
    ``c_1 = L'_in(v) / eps`` with ``L'_in(v) = sum_i sum_c G_ic w_c psi_i(v)`` the derivative along the unit's
    incoming weights, and ``c_2 = 2 a . Psi_zero(v) + O(1 / eps^2)``. Candidates ``v`` with ``L'_in(v) = 0``
    (up to rounding) and ``a . Psi_zero(v) < 0`` give, for a large ``eps``, ``c_1 = 0, c_2 < 0``. Only
    when nothing downstream of the unit's samples is kinked (``G`` is then the exact adjoint)."""
    problem, fwd = ctx.problem, ctx.fwd
    net = problem.network
    m = net.weights[l].shape[0]
    G = _downstream_adjoint(ctx, l, adjoints)
    kinked = _kinked_downstream(ctx, l)
    z = fwd.pre[l - 1][:, j]
    relevant = (net.activation.slope(z) != 0) | (ctx.kinks.masks[l - 1][:, j] if ctx.kinks.masks else False)
    if np.any(kinked & relevant):
        return {"note": "a kink downstream: the partial escape needs a smooth downstream"}
    others = np.setdiff1d(np.arange(m), zero)
    w_other = net.weights[l][others, j]
    g_in = G[:, others] @ w_other                      # the incoming-weight derivative's sample weights
    M0, groups0 = psi_parts(ctx, l, j, G[:, zero])
    Min, groups_in = psi_parts(ctx, l, j, g_in[:, None])
    xbar_all = np.hstack([fwd.post[l - 1], np.ones((problem.n_samples, 1))])
    scale = float(np.abs(g_in).sum() * np.abs(xbar_all).max() + 1e-300)
    rng = np.random.default_rng(l * 7919 + j)
    best = None
    for v in _constructive_candidates(M0, groups0, rng, xbar_all=xbar_all):
        if ctx.remaining() <= 0:
            break
        first = float(_psi(Min, groups_in, v)[0])
        if abs(first) > 1e-12 * scale * float(np.abs(v).max()):
            continue                                  # the curve would move the loss at first order
        P = _psi(M0, groups0, v)
        if not np.any(P):
            continue
        a = np.zeros(m)
        a[zero] = -P / np.abs(P).max()
        value = float(a[zero] @ P)
        best = value if best is None else min(best, value)
        curve = escape_curve(ctx, l, j, a, v, eps_list=(4.0, 16.0, 64.0, 256.0))
        if curve is not None:
            return {"curve": curve, "value": value, "a": a, "how": "constructive (partial)"}
    if best is None:
        return {"note": "no candidate with a negative escape value and no first-order change"}
    return {"note": f"escape value {best:.3g} < 0 but no curve gave a verified local descent"}


def psi_is_zero(ctx: Context, l: int, j: int, M, groups, adjoints: dict) -> bool:
    """Whether ``Psi`` vanishes up to rounding: every entry of ``M`` and of every group weight within
    ``2 gamma_N`` times the same sums over absolute values (:mod:`certify.rounding`)."""
    from ..rounding import absolute_twin
    key = ("abs", l)
    if key not in adjoints:
        problem, fwd = ctx.problem, ctx.fwd
        tp, tf, tdelta = absolute_twin(problem, fwd)
        tdelta = tdelta / problem.n_samples
        if l + 1 == problem.network.n_layers:
            Ga = tdelta
        else:
            D = [np.abs(x) for x in blocked_slopes(problem, fwd, ctx.kinks)]
            _, adj = backprop(tp, tf, D, tdelta, absolute=True)
            Ga = adj[l] * D[l]
        adjoints[key] = Ga
    Ga = adjoints[key]
    Ma, groups_a = psi_parts(ctx, l, j, Ga, absolute=True)
    f = 4 * factor(ctx.problem)
    if np.any(np.abs(M) > f * Ma):
        return False
    return all(np.all(np.abs(W) <= f * Wa) for (_, W), (_, Wa) in zip(groups, groups_a))


def escape_curve(ctx: Context, l: int, j: int, a: np.ndarray, v: np.ndarray, eps_list=None) -> dict | None:
    """The escape curve ``theta + t d``, ``d = (eps a, v / eps)`` (plus, when the unit's output is the same
    constant on every sample, ``-eps a h`` on the next layer's bias, cancelling its first-order term),
    for a few ``eps``; the first with a verified local descent is returned."""
    problem, fwd, kinks = ctx.problem, ctx.fwd, ctx.kinks
    net = problem.network
    p = net.n_params
    w0, b0 = net.offsets[l - 1]
    wn0, bn0 = net.offsets[l]
    n_in = net.weights[l - 1].shape[1]
    m, width = net.weights[l].shape
    h = net.activation(fwd.pre[l - 1][:, j])
    silent = not np.any(h != 0)
    const = (not silent) and np.all(h == h[0])
    if problem.weight_decay and silent:
        # the decay adds lambda/2 (eps^2 ||a||^2 + ||v||^2 / eps^2) to c_2 / 2, least (lambda ||a|| ||v||) at
        # eps^2 = ||v|| / ||a|| exactly: an escape that beats the decay by 0.3% (a trained digits net's
        # silent units) is lost to the factor up to 2 that max norms or a power of two leave
        balance = np.sqrt(max(float(np.linalg.norm(v)), 1e-300) / max(float(np.linalg.norm(a)), 1e-300))
    else:
        balance = np.sqrt(max(float(np.abs(v).max()), 1e-300) / max(float(np.abs(a).max()), 1e-300))
        balance = 2.0 ** np.round(np.log2(balance))      # a power of two keeps d exactly representable
    for eps in (eps_list if eps_list is not None else (EPS[:1] if silent else EPS)):
        e_ = eps * balance
        d = np.zeros(p)
        d[wn0 + np.arange(m) * width + j] = e_ * a
        d[w0 + j * n_in: w0 + (j + 1) * n_in] = v[:n_in] / e_
        d[b0 + j] = v[n_in] / e_
        if const:
            d[bn0:bn0 + m] -= e_ * a * h[0]
        d /= float(np.abs(d).max())
        curve = taylor_curve(problem, fwd, kinks, d, None, order=2 if silent or const else 3)
        if curve["verified"]:
            return curve
        if ctx.remaining() <= 0:
            break
    return None
