"""The held set and what the method reads at one point: the reference piece, its held kinks' rows,
values and jumps, and the symmetry directions (the gauge)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..data import Problem
from ..kinks import KinkStructure, find_kinks
from ..network import ForwardPass
from ..tangent import backprop, switching_rows
from .limits import TOL_SIDE


@dataclass
class Held:
    """Kinks held at zero, and the side of kinks released at zero.

    ``units[l-1]`` (n, n_l) bool: unit kinks held; ``side[l-1]`` (n, n_l) int8: the side (+1/-1) a
    released unit is on while its pre-activation is still ~0. ``ties[(i, g)] = (active, ref)``:
    loss group ``g`` of sample ``i`` held with the pieces ``active`` tied and ``ref`` as reference;
    ``tie_side[(i, g)]``: the piece a released group takes while its pieces are still ~tied.
    """

    units: list
    side: list
    ties: dict = field(default_factory=dict)
    tie_side: dict = field(default_factory=dict)
    releases: dict = field(default_factory=dict)   # kink key -> how often it was released
    at_point: dict = field(default_factory=dict)   # kink key -> (point, releases there): release_along

    def copy(self) -> Held:
        return Held([u.copy() for u in self.units], [s.copy() for s in self.side], dict(self.ties),
                     dict(self.tie_side), dict(self.releases), dict(self.at_point))

    @property
    def n_units(self) -> int:
        return int(sum(int(u.sum()) for u in self.units))

    @property
    def n_tie_rows(self) -> int:
        return int(sum(len(act) - 1 for act, _ in self.ties.values()))

    @property
    def n_total(self) -> int:
        return self.n_units + self.n_tie_rows


def empty_kinks(net, n: int) -> KinkStructure:
    z = np.zeros(0, dtype=np.int64)
    return KinkStructure(tol=0.0, unit_sample=z, unit_layer=z, unit_index=z, unit_value=np.zeros(0),
                         masks=[np.zeros((n, w), dtype=bool) for w in net.widths[1:-1]],
                         loss_sample=z, loss_group=z, loss_active=[], loss_gap=np.zeros(0))


@dataclass
class Point:
    """Everything the method reads at one point for one held set (the reference piece)."""

    theta: np.ndarray
    problem: Problem
    fwd: ForwardPass
    loss: float
    D: list                 # slopes of the reference piece (held units: s_pos)
    loss_slopes: np.ndarray  # dl/df of the reference piece (n, C)
    g: np.ndarray           # gradient of the reference piece (with weight decay)
    adj: list               # dL/dx^l of the reference piece
    keys: list              # one per held row: ("unit", l, i, j) or ("tie", i, g, b, ref)
    rows: sp.csr_matrix | None  # grad phi_k (None: evaluated without rows)
    phi: np.ndarray
    phi_scale: np.ndarray
    gamma: np.ndarray
    gauge: sp.csr_matrix    # symmetry directions as rows (r, p)


def unit_slopes(problem: Problem, fwd: ForwardPass, held: Held) -> list:
    s_pos, s_neg = problem.network.activation.slopes
    D = []
    for l, (z, sc) in enumerate(zip(fwd.pre[:-1], fwd.scale[:-1]), start=1):
        s = np.where(z >= 0, s_pos, s_neg)
        side = held.side[l - 1]
        near = (np.abs(z) <= TOL_SIDE * sc) & (side != 0)
        if near.any():
            s = np.where(near, np.where(side > 0, s_pos, s_neg), s)
        s = np.where(held.units[l - 1], s_pos, s)
        D.append(s.astype(np.float64))
    return D


def loss_pieces(problem: Problem, F: np.ndarray, held: Held):
    """Chosen piece of every loss group (held ties: their reference) and the slopes dl/df."""
    loss = problem.loss
    if loss.smooth:
        return None, None, None, loss.gradient(F, problem.Y)
    vals, slopes = loss.pieces(F, problem.Y)
    choose = vals.argmax(axis=2)
    scale = tie_scale(problem, F)
    for (i, g), a in held.tie_side.items():
        best = vals[i, g].max()
        if best - vals[i, g, a] <= TOL_SIDE * scale[i]:
            choose[i, g] = a
    for (i, g), (_, ref) in held.ties.items():
        choose[i, g] = ref
    chosen = np.take_along_axis(slopes, choose[:, :, None, None], axis=2)[:, :, 0, :]
    return vals, slopes, choose, chosen.sum(axis=1)


def overtaken_ties(problem: Problem, F: np.ndarray, held: Held) -> list:
    """Held loss ties that another piece of their group now exceeds beyond rounding (``TOL_SIDE``).

    Such a tie is no kink of the loss any more: the loss follows the other piece there. It arises when
    a step is taken across kinks without holding them (:func:`certify.polish.steps.line_search`'s
    whole step across many convex kinks) or when the piece that overtook it could not join the tie
    (its row depends on the held ones). Held, it makes the reference piece's model wrong, and every
    trial step "crosses" it at once: joining the other piece to the tie moves the point the whole gap
    (``digits_mchinge_wd_sgd``: two ties 0.0016 and 0.013 below another piece; every step of the line
    search, down to t = 2e-6, restored 0.0063 away and 1.4e-5 higher, for the rest of the polish).
    """
    if not held.ties:
        return []
    vals, _ = problem.loss.pieces(F, problem.Y)
    scale = tie_scale(problem, F)
    return [key for key, (_, ref) in held.ties.items()
            if vals[key[0], key[1]].max() - vals[key[0], key[1], ref] > TOL_SIDE * scale[key[0]]]


def tie_scale(problem: Problem, F: np.ndarray, fwd_scale_out: np.ndarray | None = None) -> np.ndarray:
    """Size of the terms of a loss group's pieces, per sample (as in :mod:`certify.kinks`)."""
    Y = problem.Y
    yscale = np.max(np.abs(Y), axis=1) if Y.ndim == 2 else np.zeros(F.shape[0])
    fs = np.abs(F).max(axis=1) if fwd_scale_out is None else fwd_scale_out.max(axis=1)
    return fs + yscale + 1.0


def value(problem: Problem, fwd: ForwardPass, theta: np.ndarray) -> float:
    val = float(np.mean(problem.loss.values(fwd.output, problem.Y)))
    if problem.weight_decay:
        val += 0.5 * problem.weight_decay * float(theta @ theta)
    return val


def evaluate(base: Problem, theta: np.ndarray, held: Held, gauge: bool = True, grad: bool = True,
             rows: bool = True) -> Point:
    """The reference piece at ``theta`` for ``held``; ``rows=False`` leaves ``Point.rows`` None
    (the held kinks' values alone: a chord step of :func:`certify.polish.steps.restore` needs no
    rows, and forming them is most of an evaluation on nets with dense kink rows)."""
    problem = base.at(theta)
    net = problem.network
    n = problem.n_samples
    with np.errstate(over="ignore", invalid="ignore"):
        fwd = net.forward(problem.X, with_scale=True)
    D = unit_slopes(problem, fwd, held)
    vals, slopes, _, lsl = loss_pieces(problem, fwd.output, held)
    if grad:
        g, adj = backprop(problem, fwd, D, lsl / n)
        if problem.weight_decay:
            g = g + problem.weight_decay * theta
    else:
        g, adj = None, [np.zeros_like(z) for z in fwd.pre[:-1]]
    s_pos, s_neg = net.activation.slopes
    keys, phi, phi_scale, gamma = [], [], [], []
    for l in range(1, net.n_layers):
        smp, unit = np.nonzero(held.units[l - 1])
        if smp.size == 0:
            continue
        keys += [("unit", l, int(i), int(j)) for i, j in zip(smp, unit)]
        phi.append(fwd.pre[l - 1][smp, unit])
        # the size of a pre-activation's terms, at least 1e-8 of the layer's largest (a unit whose
        # terms vanish at a sample, e.g. a bias of 1e-37 with dead inputs, is at zero absolutely)
        phi_scale.append(np.maximum(fwd.scale[l - 1][smp, unit], 1e-8 * fwd.scale[l - 1].max()))
        gamma.append((s_pos - s_neg) * adj[l - 1][smp, unit])
    if held.ties:
        scale = tie_scale(problem, fwd.output, fwd.scale[-1])
        for (i, grp), (active, ref) in sorted(held.ties.items()):
            for b in active:
                if b == ref:
                    continue
                keys.append(("tie", int(i), int(grp), int(b), int(ref)))
                phi.append(np.array([vals[i, grp, ref] - vals[i, grp, b]]))
                phi_scale.append(np.array([scale[i]]))
                gamma.append(np.array([1.0 / n]))
    p = net.n_params
    cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0))
    T = gauge_rows(problem, fwd, held) if gauge else sp.csr_matrix((0, p))
    R = held_rows(problem, fwd, D, held, slopes) if rows else None
    return Point(theta=theta, problem=problem, fwd=fwd, loss=value(problem, fwd, theta), D=D,
                  loss_slopes=lsl, g=g, adj=adj, keys=keys, rows=R, phi=cat(phi), phi_scale=cat(phi_scale),
                  gamma=cat(gamma), gauge=T)


def held_rows(problem: Problem, fwd: ForwardPass, D: list, held: Held, slopes=None) -> sp.csr_matrix:
    """The gradients of the held kinks' switching functions (CSR, one row per key of
    :func:`evaluate`, in the same order); ``slopes``: the loss pieces' slopes (recomputed if None)."""
    net = problem.network
    C, p = net.n_outputs, net.n_params
    empty = empty_kinks(net, problem.n_samples)
    row_parts = []
    for l in range(1, net.n_layers):
        smp, unit = np.nonzero(held.units[l - 1])
        if smp.size:
            row_parts.append(switching_rows(problem, fwd, D, empty, smp, l, unit)[0])
    if held.ties:
        if slopes is None:
            slopes = loss_pieces(problem, fwd.output, held)[1]
        tie_items = sorted(held.ties.items())
        samples = np.array(sorted({i for (i, _), _ in tie_items}))
        J, _ = switching_rows(problem, fwd, D, empty, np.repeat(samples, C), net.n_layers,
                              np.tile(np.arange(C), samples.size))
        J = J.tocsr()
        where = {int(i): k for k, i in enumerate(samples)}
        sel_rows, sel_cols, sel_vals = [], [], []
        for (i, grp), (active, ref) in tie_items:
            for b in active:
                if b == ref:
                    continue
                w = slopes[i, grp, ref] - slopes[i, grp, b]      # grad of v_ref - v_b in f_i
                sel_rows.append(np.full(C, len(sel_rows)))
                sel_cols.append(where[i] * C + np.arange(C))
                sel_vals.append(w)
        S = sp.csr_matrix((np.concatenate(sel_vals), (np.concatenate(sel_rows), np.concatenate(sel_cols))),
                          shape=(len(sel_rows), J.shape[0]))
        row_parts.append((S @ J).tocsr())
    return sp.vstack(row_parts, format="csr") if row_parts else sp.csr_matrix((0, p))


def gauge_rows(problem: Problem, fwd: ForwardPass, held: Held) -> sp.csr_matrix:
    """Symmetry directions (rows) at the point: rescaling orbits, dead units, translations.

    As :func:`certify.secondorder.symmetry.symmetry_vectors`, except that a unit with a held kink
    is neither dead nor a translation unit (moving its bias would move the kink off zero).
    Without weight decay only (each row is a tangent of a family of loss-preserving maps), except
    for the incoming coordinates of zero units (:func:`snap_collapsed`), which are always frozen
    (their outgoing ones too without weight decay; with it those go to 0 by themselves).
    """
    net = problem.network
    p = net.n_params
    if net.n_layers < 2:
        return sp.csr_matrix((0, p))
    symmetric = not problem.weight_decay
    s_pos, s_neg = net.activation.slopes
    rows, cols, vals = [], [], []
    r = 0

    def add(idx: np.ndarray, v: np.ndarray) -> None:
        """Rows ``r, r+1, ...``: row k has entries ``v[k]`` at columns ``idx[k]``."""
        nonlocal r
        if idx.shape[0] == 0:
            return
        rows.append(np.repeat(np.arange(r, r + idx.shape[0]), idx.shape[1]))
        cols.append(idx.ravel())
        vals.append(v.ravel())
        r += idx.shape[0]

    for l in range(1, net.n_layers):
        W, Wn = net.weights[l - 1], net.weights[l]
        w0, b0 = net.offsets[l - 1]
        wn0, bn0 = net.offsets[l]
        n_units, n_in = W.shape
        n_next = Wn.shape[0]
        z = fwd.pre[l - 1]
        has_held = held.units[l - 1].any(axis=0)
        zero = zero_units(W, net.biases[l - 1])
        dead = (s_neg == 0) & np.all(z < 0, axis=0) & ~has_held & symmetric
        one_side = (np.all(z > 0, axis=0) | np.all(z < 0, axis=0)) & ~has_held & symmetric
        units = np.arange(n_units)
        in_idx = np.hstack([w0 + units[:, None] * n_in + np.arange(n_in)[None, :], (b0 + units)[:, None]])
        out_idx = wn0 + np.arange(n_next)[None, :] * n_units + units[:, None]
        both = np.hstack([in_idx, out_idx])
        d = np.nonzero(dead)[0]
        add(both[d].reshape(-1, 1), np.ones((d.size * both.shape[1], 1)))
        # a zero unit's incoming weights stay 0 (escaping is the checker's question); its outgoing
        # weights see only the weight decay, which takes them to 0 (without it they are flat: frozen)
        zr = np.nonzero(zero & ~dead)[0]
        add(in_idx[zr].reshape(-1, 1), np.ones((in_idx[zr].size, 1)))
        if symmetric:
            add(out_idx[zr].reshape(-1, 1), np.ones((out_idx[zr].size, 1)))
        dead = dead | zero
        if symmetric:
            v = np.hstack([W, net.biases[l - 1][:, None], -Wn.T])
            o = np.nonzero(~dead & np.any(v, axis=1))[0]
            add(both[o], v[o])
            t = np.nonzero(one_side & ~dead)[0]
            slope = np.where(z[0, t] > 0, s_pos, s_neg)
            add(np.hstack([(b0 + t)[:, None], np.broadcast_to(bn0 + np.arange(n_next), (t.size, n_next))]),
                np.hstack([np.ones((t.size, 1)), -slope[:, None] * Wn[:, t].T]))
    if r == 0:
        return sp.csr_matrix((0, p))
    T = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r, p))
    # unit rows: the gauge only fixes directions, so its scaling is free; normalising keeps B B' balanced
    norms = np.sqrt(np.asarray(T.multiply(T).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.maximum(norms, 1e-300)) @ T


def nested(held: Held, l: int, n: int) -> np.ndarray:
    """Samples (n,) at which a unit of hidden layer ``l`` feeds a held kink: a held unit of a later
    layer or a held loss tie. Crossing such a unit kink changes the held kink's row, so it blocks
    whatever the sign of its own jump (its first-order effect runs through the held kink)."""
    out = np.zeros(n, dtype=bool)
    for lp in range(l + 1, len(held.units) + 1):
        out |= held.units[lp - 1].any(axis=1)
    for (i, _) in held.ties:
        out[i] = True
    return out


def nested_of(keys: list, l: int, n: int) -> np.ndarray:
    """As :func:`nested`, from a list of held-kink keys."""
    out = np.zeros(n, dtype=bool)
    for key in keys:
        if (key[0] == "unit" and key[1] > l) or key[0] == "tie":
            out[key[2] if key[0] == "unit" else key[1]] = True
    return out


def blocks(pt: Point, held: Held, l: int, gamma_floor: float) -> np.ndarray:
    """(n, n_l) mask of the unit kinks of layer ``l`` that block a step (see :func:`crossed`)."""
    s_pos, s_neg = pt.problem.network.activation.slopes
    convex = (s_pos - s_neg) * pt.adj[l - 1] > gamma_floor
    return convex | nested(held, l, pt.problem.n_samples)[:, None]


def zero_units(W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The layer's units whose incoming weights and bias are exactly 0 (:func:`snap_collapsed`): inert,
    at ``z = 0`` on every sample."""
    return ~np.any(W, axis=1) & (b == 0)


def snap_collapsed(problem: Problem, theta: np.ndarray, rel: float = 1e-12) -> tuple[np.ndarray, list]:
    """Set hidden units whose incoming weights and bias have collapsed to ~0 exactly to 0.

    Weight decay drives unused units to ~1e-27 rather than to 0; such a unit sits on its kink at
    every sample (``z = 0`` up to 1e-27) with linearly dependent switching rows, and its piece is
    decided by the signs of rounding noise. At 0 it is inert: its output is 0 whatever the
    direction, so its incoming coordinates are frozen (:func:`gauge_rows`) and whether it should escape is
    left to the checker (REFERENCES A4.5 item 2). Its outgoing weights are set to 0 as well when
    they have collapsed too. Returns the new point and the zero units ``[(layer, unit)]``.
    """
    net = problem.network
    theta = theta.copy()
    layers = net.split(theta)
    zero = []
    for l in range(1, net.n_layers):
        W, b = layers[l - 1]
        Wn = layers[l][0]
        size = np.sqrt((W * W).sum(axis=1) + b * b)
        out = np.sqrt((Wn * Wn).sum(axis=0))
        for j in np.nonzero(size <= rel * max(float(size.max(initial=0.0)), 1e-300))[0]:
            if size[j] == 0 and (out[j] == 0 or out[j] > rel * max(float(out.max(initial=0.0)), 1e-300)):
                continue                 # already zero
            W[j] = 0.0
            b[j] = 0.0
            if out[j] <= rel * max(float(out.max(initial=0.0)), 1e-300):
                Wn[:, j] = 0.0
            zero.append((l, int(j)))
    return theta, zero


def zero_feature_weights(problem: Problem, theta: np.ndarray) -> tuple[np.ndarray, int]:
    """Under weight decay, set the first-layer weights of input features that are 0 on every sample to 0.

    Such a weight ``W1[j, k]`` never reaches the data (``z^1_j = sum_k W1[j, k] x_k + b1_j`` with
    ``x_k = 0`` throughout), so the loss is ``L_rest + lambda/2 W1[j, k]^2`` in it: exactly 0 is its
    minimiser whatever the rest, and setting it there lowers the loss by ``lambda/2 W1[j, k]^2`` and
    changes no pre-activation. The Newton steps cannot get there: each shrinks such a weight by the
    factor ``rho / (lambda + rho)`` of its Levenberg shift, so a polish ends with 1e-22, or after a few
    hundred rounds a subnormal like 1e-319, and the exact first-order test sees ``L' = lambda
    W1[j, k] != 0`` along it (digits' border pixels: 156 weights of ``digits_ce_wd_adam``; a polish
    that converged ended "no multipliers closing the subgradient equation could be confirmed").
    Without weight decay these weights are a flat direction and are left alone. Returns the point
    and how many weights changed.
    """
    if not problem.weight_decay:
        return theta, 0
    unused = ~np.any(problem.X, axis=0)
    if not unused.any():
        return theta, 0
    W1 = problem.network.split(theta)[0][0]
    hit = W1[:, unused] != 0
    if not hit.any():
        return theta, 0
    out = theta.copy()
    out_W1 = problem.network.split(out)[0][0]
    out_W1[:, unused] = 0.0
    return out, int(hit.sum())


def initial_held(problem: Problem, tol_near: float | None) -> Held:
    """Kinks within ``tol_near`` (relative, as :func:`certify.kinks.find_kinks`); None: none held."""
    net = problem.network
    n = problem.n_samples
    side = [np.zeros((n, w), dtype=np.int8) for w in net.widths[1:-1]]
    empty = [np.zeros((n, w), dtype=bool) for w in net.widths[1:-1]]
    if tol_near is None:
        return Held(units=empty, side=side)
    fwd = net.forward(problem.X, with_scale=True)
    kinks = find_kinks(problem, fwd, tol_near)
    units = [m.copy() for m in kinks.masks] if kinks.masks else empty
    for l, (W, b) in enumerate(zip(net.weights[:-1], net.biases[:-1])):
        # a zero unit (e.g. one a previous polish froze) is at z = 0 on every sample but inert: its
        # coordinates are frozen (:func:`gauge_rows`), so holding its n kinks would only add n
        # dependent rows (digits_ce_wd_adam: 4,343 held, 5 s a round instead of 0.3)
        units[l][:, zero_units(W, b)] = False
    ties = {}
    if kinks.n_loss:
        vals, _ = problem.loss.pieces(fwd.output, problem.Y)
        for i, grp, act in zip(kinks.loss_sample, kinks.loss_group, kinks.loss_active):
            ref = int(act[np.argmax(vals[i, grp, act])])
            ties[(int(i), int(grp))] = (tuple(int(a) for a in sorted(act)), ref)
    return Held(units=units, side=side, ties=ties)
