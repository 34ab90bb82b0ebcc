"""Polishing a trained point: an active-set Newton–KKT method over the pieces of the loss.

A checkpoint from SGD or Adam is never exactly stationary, and its minimum usually sits *on* kinks
(hidden pre-activations at 0, hinge margins at 1, absolute residuals at 0, multiclass ties): no
smooth method converges there (float64 L-BFGS stalls at gradient norms of 1e-2 on small ReLU nets).
:func:`polish` moves the point to a nearby KKT point of the piecewise-smooth training loss whose
held kinks are zero to a few ulps and whose reduced gradient is zero to rounding, and says how far
it moved. It is a search, never a proof: every certificate is about the polished point as stored.

Method (DESIGN.md §6; the active-set SQP of Nocedal–Wright ch. 16–18 applied to the pieces)
-------------------------------------------------------------------------------------------
Near a point only the kinks close to 0 matter. Every kink ``k`` has a switching function
``phi_k(theta)`` (a pre-activation ``z^l_j(x_i)``, or ``v_a - v_b`` for two pieces ``a, b`` of a
loss group) and a *jump* ``gamma_k``: on the reference side ``phi_k >= 0`` the loss is the smooth
piece ``L_ref``, and across the kink ``L = L_ref + gamma_k max(0, -phi_k) + ...`` to first order,
with ``gamma_k = (s_pos - s_neg) dL/dx`` for a unit (its adjoint times the slope jump) and
``gamma_k = 1/n`` for a loss tie. The method keeps a **held set** ``H`` of kinks and works on the
manifold ``M_H = {phi_k = 0, k in H}``, on which the loss is smooth (a held unit's output is 0 on
both sides):

1. **Multipliers.** With ``B`` the rows ``grad phi_k`` (k in H) stacked with the symmetry
   directions ``T`` (see 4), the least-squares multipliers ``nu`` of ``g + B' nu = r`` split the
   gradient ``g`` of the reference piece into the reduced gradient ``r = P g`` (``P`` the projector
   onto ``null B``) and normal parts. Moving off the kink into ``phi_k > 0`` changes ``L`` at the
   rate ``-nu_k``, into ``phi_k < 0`` at ``nu_k + gamma_k`` (per unit of ``phi_k``). A held kink is
   consistent with a minimum iff both are ``>= 0``, i.e. its multiplier ``lambda_k = 1 + nu_k /
   gamma_k`` lies in ``[0, 1]`` (for a loss tie: the simplex weights ``pi``); a concave kink
   (``gamma_k < 0``) never is. A held kink with a negative side is **released** to that side.
2. **Newton–KKT step on M_H.** The step solves ``min r.x + 1/2 x'(H_lag + rho I)x`` over
   ``null B`` within a trust region, where ``H_lag`` is the Hessian of the Lagrangian
   ``L_ref + nu' phi_H`` (the curvature of deep switching functions enters through adjoint
   injections, :func:`certify.tangent.hessian_vector_product`). It is solved matrix-free by
   projected conjugate gradients with Hessian-vector products (Steihaug–Toint: negative curvature
   goes to the trust-region boundary), so no ``p x p`` matrix is ever formed; ``P`` needs only the
   sparse rows ``B`` and a factorisation of ``B B'`` (dense per connected block, pivoted Cholesky
   so dependent kink rows are detected; conjugate gradients for a block too large to factor).
3. **Blocking kinks and the line search on L.** Along the step, kinks that change side are
   *blocking constraints* (as in an active-set QP): the trial point ``theta + t x`` is pulled back
   onto ``M_{H + crossed}`` by Gauss–Newton on ``phi = 0`` (exact in one step for first-layer
   kinks, a second-order correction for deep ones) and accepted only if the true loss ``L`` does
   not go up; ``t`` is halved otherwise. So the loss never increases (steps below its rounding-error
   bound are the only exception, and only once the point has converged), and every trained minimum
   on kinks is reached on its kink manifold instead of being zig-zagged across.
4. **Moving no further than needed.** Steps stay orthogonal to the exact symmetries (the rescaling
   orbits of hidden units, the coordinates of dead units, the bias translations of units with one
   slope on all samples, :mod:`certify.secondorder.symmetry`; none with weight decay), a trust
   region and a small proximal shift ``rho`` keep them short along flat directions, and at the end
   the **rescaling representative nearest the checkpoint** is chosen (per hidden unit ``c > 0``
   minimising ``||c u - u_0||^2 + ||v / c - v_0||^2`` over its incoming ``u`` and outgoing ``v``
   weights, coordinate descent over layers; exact without weight decay).

It stops when the held kinks are zero to a few ulps of their terms (``|W||x| + |b|``), the reduced
gradient is zero to rounding relative to the size of its terms (``|W|``, ``|x|`` back-propagated),
and every held multiplier lies in its interval; or when the budget (``deadline``) runs out, the
line search fails or the rounds are used up, returning the best point so far with the reason.
Why this method: near a minimum with interior multipliers (strict complementarity, LIKQ) the held
set is identified after finitely many changes and the method is Newton's method on ``M_H``
(quadratic convergence), which is exactly what the certificates downstream need — an accurate,
nondegenerate KKT point with kinks held to rounding; L-BFGS or subgradient methods give neither.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from .data import Problem
from .kinks import KinkStructure
from .network import ForwardPass
from .progress import detail, tick
from .tangent import backprop, hessian_vector_product, switching_rows

log = logging.getLogger(__name__)

#: near-kinks within this relative distance are held at the start (the rest is found by blocking)
DEFAULT_TOL_NEAR = 0.0
#: a switching function within this relative distance of 0 has no sign of its own (side overrides)
TOL_SIDE = 1e3 * np.finfo(np.float64).eps
#: target for held kinks: |phi_k| <= TOL_HOLD * (size of its terms)  (a few ulps)
TOL_HOLD = 32 * np.finfo(np.float64).eps
#: target for the reduced gradient, relative to the size of the gradient's terms
TOL_GRAD = 1e-13
#: a reduced gradient below this (relative) counts as converged when Newton stops improving it
TOL_STALL = 1e-10
#: a held kink whose release lowers L at a slope below this (relative) is consistent (rounding)
TOL_SLOPE = 1e-10
#: Levenberg shift of the Newton system, relative to ||H||
RHO_REL = 1e-10
#: a kink released this often stays held (anti-cycling; its multiplier is then reported as it is)
MAX_RELEASES = 5
#: convex kinks are released only once the reduced gradient on their face is below this (relative)
TOL_FACE = 1e-7
#: the first trial of a line search crosses at most this many kinks (or a quarter of those held)
MAX_ADD = 16
#: connected blocks of B B' up to this size are factored densely
DENSE_BLOCK = 4000
#: CG iterations per Newton step
MAX_CG = 250
_EPS = np.finfo(np.float64).eps


# ---------------------------------------------------------------------------- the held set
@dataclass
class _Held:
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

    def copy(self) -> "_Held":
        return _Held([u.copy() for u in self.units], [s.copy() for s in self.side], dict(self.ties),
                     dict(self.tie_side), dict(self.releases))

    @property
    def n_units(self) -> int:
        return int(sum(int(u.sum()) for u in self.units))

    @property
    def n_tie_rows(self) -> int:
        return int(sum(len(act) - 1 for act, _ in self.ties.values()))

    @property
    def n_total(self) -> int:
        return self.n_units + self.n_tie_rows


def _empty_kinks(net, n: int) -> KinkStructure:
    z = np.zeros(0, dtype=np.int64)
    return KinkStructure(tol=0.0, unit_sample=z, unit_layer=z, unit_index=z, unit_value=np.zeros(0),
                         masks=[np.zeros((n, w), dtype=bool) for w in net.widths[1:-1]],
                         loss_sample=z, loss_group=z, loss_active=[], loss_gap=np.zeros(0))


# ---------------------------------------------------------------------------- one point
@dataclass
class _Point:
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
    rows: sp.csr_matrix     # grad phi_k
    phi: np.ndarray
    phi_scale: np.ndarray
    gamma: np.ndarray
    gauge: sp.csr_matrix    # symmetry directions as rows (r, p)


def _unit_slopes(problem: Problem, fwd: ForwardPass, held: _Held) -> list:
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


def _loss_pieces(problem: Problem, F: np.ndarray, held: _Held):
    """Chosen piece of every loss group (held ties: their reference) and the slopes dl/df."""
    loss = problem.loss
    if loss.smooth:
        return None, None, None, loss.gradient(F, problem.Y)
    vals, slopes = loss.pieces(F, problem.Y)
    choose = vals.argmax(axis=2)
    scale = _tie_scale(problem, F)
    for (i, g), a in held.tie_side.items():
        best = vals[i, g].max()
        if best - vals[i, g, a] <= TOL_SIDE * scale[i]:
            choose[i, g] = a
    for (i, g), (_, ref) in held.ties.items():
        choose[i, g] = ref
    chosen = np.take_along_axis(slopes, choose[:, :, None, None], axis=2)[:, :, 0, :]
    return vals, slopes, choose, chosen.sum(axis=1)


def _tie_scale(problem: Problem, F: np.ndarray, fwd_scale_out: np.ndarray | None = None) -> np.ndarray:
    """Size of the terms of a loss group's pieces, per sample (as in :mod:`certify.kinks`)."""
    Y = problem.Y
    yscale = np.max(np.abs(Y), axis=1) if Y.ndim == 2 else np.zeros(F.shape[0])
    fs = np.abs(F).max(axis=1) if fwd_scale_out is None else fwd_scale_out.max(axis=1)
    return fs + yscale + 1.0


def _value(problem: Problem, fwd: ForwardPass, theta: np.ndarray) -> float:
    val = float(np.mean(problem.loss.values(fwd.output, problem.Y)))
    if problem.weight_decay:
        val += 0.5 * problem.weight_decay * float(theta @ theta)
    return val


def _evaluate(base: Problem, theta: np.ndarray, held: _Held, gauge: bool = True, grad: bool = True) -> _Point:
    problem = base.at(theta)
    net = problem.network
    n, C = problem.n_samples, net.n_outputs
    with np.errstate(over="ignore", invalid="ignore"):
        fwd = net.forward(problem.X, with_scale=True)
    D = _unit_slopes(problem, fwd, held)
    vals, slopes, _, lsl = _loss_pieces(problem, fwd.output, held)
    if grad:
        g, adj = backprop(problem, fwd, D, lsl / n)
        if problem.weight_decay:
            g = g + problem.weight_decay * theta
    else:
        g, adj = None, [np.zeros_like(z) for z in fwd.pre[:-1]]
    s_pos, s_neg = net.activation.slopes
    empty = _empty_kinks(net, n)
    keys, row_parts, phi, phi_scale, gamma = [], [], [], [], []
    for l in range(1, net.n_layers):
        smp, unit = np.nonzero(held.units[l - 1])
        if smp.size == 0:
            continue
        R, _ = switching_rows(problem, fwd, D, empty, smp, l, unit)
        row_parts.append(R)
        keys += [("unit", l, int(i), int(j)) for i, j in zip(smp, unit)]
        phi.append(fwd.pre[l - 1][smp, unit])
        # the size of a pre-activation's terms, at least 1e-8 of the layer's largest (a unit whose
        # terms vanish at a sample, e.g. a bias of 1e-37 with dead inputs, is at zero absolutely)
        phi_scale.append(np.maximum(fwd.scale[l - 1][smp, unit], 1e-8 * fwd.scale[l - 1].max()))
        gamma.append((s_pos - s_neg) * adj[l - 1][smp, unit])
    if held.ties:
        tie_items = sorted(held.ties.items())
        samples = np.array(sorted({i for (i, _), _ in tie_items}))
        J, _ = switching_rows(problem, fwd, D, empty, np.repeat(samples, C), net.n_layers,
                              np.tile(np.arange(C), samples.size))
        J = J.tocsr()
        where = {int(i): k for k, i in enumerate(samples)}
        scale = _tie_scale(problem, fwd.output, fwd.scale[-1])
        sel_rows, sel_cols, sel_vals = [], [], []
        for (i, grp), (active, ref) in tie_items:
            for b in active:
                if b == ref:
                    continue
                w = slopes[i, grp, ref] - slopes[i, grp, b]      # grad of v_ref - v_b in f_i
                sel_rows.append(np.full(C, len(sel_rows)))
                sel_cols.append(where[i] * C + np.arange(C))
                sel_vals.append(w)
                keys.append(("tie", int(i), int(grp), int(b), int(ref)))
                phi.append(np.array([vals[i, grp, ref] - vals[i, grp, b]]))
                phi_scale.append(np.array([scale[i]]))
                gamma.append(np.array([1.0 / n]))
        S = sp.csr_matrix((np.concatenate(sel_vals), (np.concatenate(sel_rows), np.concatenate(sel_cols))),
                          shape=(len(sel_rows), J.shape[0]))
        row_parts.append((S @ J).tocsr())
    p = net.n_params
    rows = sp.vstack(row_parts, format="csr") if row_parts else sp.csr_matrix((0, p))
    cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0))
    T = _gauge_rows(problem, fwd, held) if gauge else sp.csr_matrix((0, p))
    return _Point(theta=theta, problem=problem, fwd=fwd, loss=_value(problem, fwd, theta), D=D,
                  loss_slopes=lsl, g=g, adj=adj, keys=keys, rows=rows, phi=cat(phi), phi_scale=cat(phi_scale),
                  gamma=cat(gamma), gauge=T)


def _gauge_rows(problem: Problem, fwd: ForwardPass, held: _Held) -> sp.csr_matrix:
    """Symmetry directions (rows) at the point: rescaling orbits, dead units, translations.

    As :func:`certify.secondorder.symmetry.symmetry_vectors`, except that a unit with a held kink
    is neither dead nor a translation unit (moving its bias would move the kink off zero).
    Without weight decay only (each row is a tangent of a family of loss-preserving maps), except
    for the coordinates of zero units (:func:`_snap_collapsed`), which are always frozen.
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
        zero = ~np.any(W, axis=1) & (net.biases[l - 1] == 0)       # inert (see _snap_collapsed)
        dead = ((s_neg == 0) & np.all(z < 0, axis=0) & ~has_held & symmetric) | zero
        one_side = (np.all(z > 0, axis=0) | np.all(z < 0, axis=0)) & ~has_held & symmetric
        units = np.arange(n_units)
        in_idx = np.hstack([w0 + units[:, None] * n_in + np.arange(n_in)[None, :], (b0 + units)[:, None]])
        out_idx = wn0 + np.arange(n_next)[None, :] * n_units + units[:, None]
        both = np.hstack([in_idx, out_idx])
        d = np.nonzero(dead)[0]
        add(both[d].reshape(-1, 1), np.ones((d.size * both.shape[1], 1)))
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


# ---------------------------------------------------------------------------- projector
class _Projector:
    """Least-squares solves with ``B B'`` for sparse rows ``B`` (held kink rows, then gauge rows).

    ``B B'`` is split into connected blocks; each block up to :data:`DENSE_BLOCK` rows is factored
    by pivoted Cholesky (LAPACK ``dpstrf``), which also finds rows linearly dependent on the others
    (LIKQ fails; e.g. samples with identical outputs): such a block gets the pseudo-inverse, so the
    multipliers are the least-norm ones and the dependent constraints stay held. Small blocks are
    inverted and gathered into one sparse block-diagonal matrix (one product per solve), larger ones
    keep their Cholesky factor, blocks beyond :data:`DENSE_BLOCK` are solved by conjugate gradients.
    ``project(v) = v - B' (B B')^+ B v`` is applied twice (one refinement), so its result is
    orthogonal to the rows to rounding.
    """

    SMALL = 256   # blocks up to this size are inverted explicitly

    def __init__(self, B: sp.csr_matrix, *, rel_rank: float = 1e-12):
        self.B = B.tocsr()
        self.BT = self.B.T.tocsr()
        m = B.shape[0]
        self.m = m
        self.blocks = []
        self.small = None
        self.dependent = np.zeros(m, dtype=bool)
        if m == 0:
            return
        G = (self.B @ self.BT).tocsr()
        n_comp, labels = connected_components(G, directed=False)
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(n_comp + 1))
        Gd = G.toarray() if m <= DENSE_BLOCK else None
        Gp = None if Gd is not None else G[order][:, order].tocsr()
        inv_rows, inv_cols, inv_vals = [], [], []
        sizes = np.diff(bounds)
        single = order[bounds[:-1][sizes == 1]]          # isolated rows: 1 / |b_k|^2 at once
        diag = G.diagonal()[single]
        self.dependent[single[diag <= 0]] = True
        ok = single[diag > 0]
        inv_rows.append(ok); inv_cols.append(ok); inv_vals.append(1.0 / G.diagonal()[ok])
        for c in np.nonzero(sizes > 1)[0]:
            a, b = bounds[c], bounds[c + 1]
            idx = order[a:b]
            if idx.size > DENSE_BLOCK:
                self.blocks.append(("cg", idx, Gp[a:b, a:b].tocsr()))
                continue
            Gc = Gd[np.ix_(idx, idx)] if Gd is not None else Gp[a:b, a:b].toarray()
            top = float(np.diag(Gc).max(initial=0.0))
            if top <= 0:
                self.dependent[idx] = True
                continue
            _, piv, rank, _ = sla.lapack.dpstrf(Gc, lower=1, tol=rel_rank * top)
            rows = idx
            fac = None
            if rank < idx.size:
                # dependent rows (e.g. samples with identical outputs): least-norm multipliers share
                # the load among them; the constraints stay held (they are met when consistent)
                mask = np.ones(idx.size, dtype=bool)
                mask[piv[:rank] - 1] = False
                self.dependent[idx[mask]] = True
                w, V = np.linalg.eigh(Gc)
                ok = w > rel_rank * w.max()
                inv = (V[:, ok] / w[ok]) @ V[:, ok].T
            else:
                try:
                    fac = sla.cho_factor(Gc, lower=True, check_finite=False)
                except np.linalg.LinAlgError:
                    w, V = np.linalg.eigh(Gc)
                    ok = w > rel_rank * w.max()
                    inv = (V[:, ok] / w[ok]) @ V[:, ok].T
            if rows.size <= self.SMALL:
                if fac is not None:
                    inv = sla.cho_solve(fac, np.eye(rows.size), check_finite=False)
                inv_rows.append(np.repeat(rows, rows.size))
                inv_cols.append(np.tile(rows, rows.size))
                inv_vals.append(inv.ravel())
            elif fac is not None:
                self.blocks.append(("chol", rows, fac))
            else:
                self.blocks.append(("dense", rows, inv))
        if inv_rows:
            self.small = sp.csr_matrix((np.concatenate(inv_vals), (np.concatenate(inv_rows), np.concatenate(inv_cols))),
                                       shape=(m, m))

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``y = (B B')^+ rhs`` (the least-norm solution when rows are dependent)."""
        y = self.small @ rhs if self.small is not None else np.zeros(self.m)
        for kind, idx, fac in self.blocks:
            r = rhs[idx]
            if kind == "chol":
                y[idx] = sla.cho_solve(fac, r, check_finite=False)
            elif kind == "dense":
                y[idx] = fac @ r
            else:
                from scipy.sparse.linalg import cg
                M = sp.diags(1.0 / np.maximum(fac.diagonal(), 1e-300))
                sol, _ = cg(fac, r, M=M, rtol=1e-14, maxiter=2000)
                y[idx] = sol
        return y

    def multipliers(self, v: np.ndarray) -> np.ndarray:
        """Least-squares ``y`` of ``B' y ~= v`` (refined once)."""
        if self.m == 0:
            return np.zeros(0)
        y = self.solve(self.B @ v)
        y += self.solve(self.B @ (v - self.BT @ y))
        return y

    def project(self, v: np.ndarray) -> np.ndarray:
        if self.m == 0:
            return v
        w = v - self.BT @ self.solve(self.B @ v)
        return w - self.BT @ self.solve(self.B @ w)

    def lift(self, r: np.ndarray) -> np.ndarray:
        """The least-norm ``d`` with ``B d = r`` (least squares when ``r`` is inconsistent)."""
        if self.m == 0:
            return np.zeros(self.B.shape[1])
        d = self.BT @ self.solve(r)
        return d + self.BT @ self.solve(r - self.B @ d)


# ---------------------------------------------------------------------------- pieces of a step
def _grad_scale(pt: _Point) -> float:
    """Size of the terms the gradient entries are summed from (absolute back-propagation)."""
    problem, fwd = pt.problem, pt.fwd
    D_abs = [np.abs(d) for d in pt.D]     # held units carry s_pos, the larger slope in size
    gs, _ = backprop(problem, fwd, D_abs, np.abs(pt.loss_slopes) / problem.n_samples, absolute=True)
    if problem.weight_decay:
        gs = gs + problem.weight_decay * np.abs(pt.theta)
    return max(float(np.abs(gs).max(initial=0.0)), 1e-300)


def _lagrangian_hvp(pt: _Point, nu: np.ndarray):
    """``v -> H v`` for the Lagrangian ``L_ref + nu' phi_H`` of the reference piece."""
    problem = pt.problem
    net = problem.network
    n = problem.n_samples
    inject = [np.zeros_like(d) for d in pt.D]
    loss_grad = pt.loss_slopes.copy()
    any_inject = False
    for key, v in zip(pt.keys, nu[:len(pt.keys)]):
        if key[0] == "unit":
            _, l, i, j = key
            inject[l - 1][i, j] += v
            any_inject = True
        else:
            _, i, grp, b, ref = key
            _, slopes = problem.loss.pieces(pt.fwd.output[i:i + 1], problem.Y[i:i + 1])
            loss_grad[i] += n * v * (slopes[0, grp, ref] - slopes[0, grp, b])
    inj = inject if any_inject and net.n_layers > 1 else None

    def hvp(v):
        return hessian_vector_product(problem, pt.fwd, pt.D, v, loss_grad=loss_grad, inject=inj)
    return hvp


def _steihaug(hvp, project, r0: np.ndarray, radius: float, rho: float, tol: float, deadline, max_iter: int):
    """Projected truncated CG for ``min r0.x + 1/2 x'(H + rho I)x`` over ``null B``, ``||x|| <= radius``.

    Returns ``(x, model_value, info)``; ``info`` says why it stopped.
    """
    x = np.zeros_like(r0)
    r = r0.copy()
    d = -r
    rr = float(r @ r)
    info = "converged"
    k = 0
    for k in range(max_iter):
        if deadline is not None and time.perf_counter() > deadline:
            info = "deadline"
            break
        Hd = project(hvp(d) + rho * d)
        curv = float(d @ Hd)
        if curv <= 1e-300 * float(d @ d):
            x = x + _to_boundary(x, d, radius) * d
            info = "negative curvature"
            break
        alpha = rr / curv
        if np.linalg.norm(x + alpha * d) >= radius:
            x = x + _to_boundary(x, d, radius) * d
            info = "boundary"
            break
        x = x + alpha * d
        r = r + alpha * Hd
        rr_new = float(r @ r)
        if np.sqrt(rr_new) <= tol:
            break
        d = -r + (rr_new / rr) * d
        rr = rr_new
    else:
        info = "iterations"
    Hx = project(hvp(x) + rho * x) if np.any(x) else np.zeros_like(x)
    model = float(r0 @ x + 0.5 * x @ Hx)
    return x, model, f"{info} after {k + 1} CG iterations"


def _to_boundary(x: np.ndarray, d: np.ndarray, radius: float) -> float:
    """``tau >= 0`` with ``||x + tau d|| = radius``."""
    a, b, c = float(d @ d), 2.0 * float(x @ d), float(x @ x) - radius * radius
    if a == 0:
        return 0.0
    return (-b + np.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)


def _crossed(prev: _Point, problem: Problem, theta: np.ndarray, held: _Held,
             gamma_floor: float) -> tuple[list, dict]:
    """Convex kinks not held at ``prev`` that changed side on the way to ``theta`` (blocking kinks).

    Returns the unit kinks ``[(l, i, j)]`` and the loss groups ``{(i, g): piece}`` whose best piece
    changed (the new piece joins a tie with the old one).
    """
    net = problem.network
    new = net.with_theta(theta)
    fwd = new.forward(problem.X, with_scale=True)
    s_pos, s_neg = net.activation.slopes
    units = []
    if net.activation.has_kink:
        for l in range(1, net.n_layers):
            z_old = prev.fwd.pre[l - 1]
            side_old = np.where(prev.D[l - 1] == s_pos, 1.0, -1.0) if s_pos != s_neg else np.sign(z_old)
            z = fwd.pre[l - 1]
            flip = (side_old * z < 0) & ~held.units[l - 1] & (np.abs(z) > TOL_SIDE * fwd.scale[l - 1])
            # only convex kinks block: across a concave one (gamma < 0) the loss is below the model
            flip &= _blocks(prev, held, l, gamma_floor)
            units += [(l, int(i), int(j)) for i, j in zip(*np.nonzero(flip))]
    ties = {}
    if problem.loss.piecewise_linear:
        _, _, choose_old, _ = _loss_pieces(prev.problem, prev.fwd.output, held)
        vals, _ = problem.loss.pieces(fwd.output, problem.Y)
        best = vals.argmax(axis=2)
        scale = _tie_scale(problem, fwd.output, fwd.scale[-1])
        gap = vals.max(axis=2) - np.take_along_axis(vals, choose_old[:, :, None], axis=2)[:, :, 0]
        for i, grp in zip(*np.nonzero((best != choose_old) & (gap > TOL_SIDE * scale[:, None]))):
            ties[(int(i), int(grp))] = int(best[i, grp])
    return units, ties


def _nested(held: _Held, l: int, n: int) -> np.ndarray:
    """Samples (n,) at which a unit of hidden layer ``l`` feeds a held kink: a held unit of a later
    layer or a held loss tie. Crossing such a unit kink changes the held kink's row, so it blocks
    whatever the sign of its own jump (its first-order effect runs through the held kink)."""
    out = np.zeros(n, dtype=bool)
    for lp in range(l + 1, len(held.units) + 1):
        out |= held.units[lp - 1].any(axis=1)
    for (i, _) in held.ties:
        out[i] = True
    return out


def _nested_of(keys: list, l: int, n: int) -> np.ndarray:
    """As :func:`_nested`, from a list of held-kink keys."""
    out = np.zeros(n, dtype=bool)
    for key in keys:
        if (key[0] == "unit" and key[1] > l) or key[0] == "tie":
            out[key[2] if key[0] == "unit" else key[1]] = True
    return out


def _blocks(pt: _Point, held: _Held, l: int, gamma_floor: float) -> np.ndarray:
    """(n, n_l) mask of the unit kinks of layer ``l`` that block a step (see :func:`_crossed`)."""
    s_pos, s_neg = pt.problem.network.activation.slopes
    convex = (s_pos - s_neg) * pt.adj[l - 1] > gamma_floor
    return convex | _nested(held, l, pt.problem.n_samples)[:, None]


def _predicted_crossings(pt: _Point, x: np.ndarray, held: _Held, gamma_floor: float):
    """Where the step ``theta + t x`` meets blocking kinks that are not held (first-order prediction).

    Returns ``(units, ties)``: ``units`` a list over hidden layers of ``(t, i, j)`` arrays (sample,
    unit), ``ties`` a ``(t, i, g, piece)`` tuple of arrays (the piece that would overtake the chosen
    one); ``t >= 0`` for every kink the step moves towards. Concave kinks that feed no held kink
    are left out (across them the loss is below the model).
    """
    from .tangent import tangent_forward
    problem = pt.problem
    net = problem.network
    s_pos, s_neg = net.activation.slopes
    dz = tangent_forward(problem, pt.fwd, x, D=pt.D)
    units = []
    for l in range(1, net.n_layers):
        if not net.activation.has_kink:
            units.append((np.zeros(0), np.zeros(0, int), np.zeros(0, int)))
            continue
        z, v = pt.fwd.pre[l - 1], dz[l - 1]
        side = np.where(pt.D[l - 1] == s_pos, 1.0, -1.0)
        toward = (side * v < 0) & ~held.units[l - 1] & _blocks(pt, held, l, gamma_floor)
        i, j = np.nonzero(toward)
        units.append((np.abs(z[i, j]) / np.abs(v[i, j]), i, j))
    ties = (np.zeros(0), np.zeros(0, int), np.zeros(0, int), np.zeros(0, int))
    if problem.loss.piecewise_linear:
        vals, slopes, choose, _ = _loss_pieces(problem, pt.fwd.output, held)
        dv = np.einsum("igpc,ic->igp", slopes, dz[-1])
        v_best = np.take_along_axis(vals, choose[:, :, None], axis=2)
        d_best = np.take_along_axis(dv, choose[:, :, None], axis=2)
        gap, rate = v_best - vals, dv - d_best          # piece a overtakes when rate * t >= gap
        toward = rate > 0
        idx_i, idx_g = np.meshgrid(np.arange(vals.shape[0]), np.arange(vals.shape[1]), indexing="ij")
        toward[idx_i, idx_g, choose] = False
        for (i, grp) in held.ties:
            toward[i, grp] = False
        i, grp, a = np.nonzero(toward)
        ties = (np.maximum(gap[i, grp, a], 0.0) / rate[i, grp, a], i, grp, a)
    return units, ties


def _crossing_times(units, ties) -> np.ndarray:
    return np.sort(np.concatenate([u[0] for u in units] + [ties[0]]))


def _blocking_now(pt: _Point, x: np.ndarray, held: _Held, gamma_floor: float, t_min: float = 1e-9):
    """Blocking kinks the step ``x`` would cross at once (within ``t_min`` of its start).

    Kinks released at zero sit on the boundary of the reference piece: a step leaving the piece
    through one of them is blocked at ``t = 0`` (a degenerate step of an active-set method), so
    they are held before the step is taken. Returns ``(units, ties)`` as :func:`_crossed`.
    """
    units, ties = _predicted_crossings(pt, x, held, gamma_floor)
    hit_units = []
    for l, (t, i, j) in enumerate(units, start=1):
        sel = t <= t_min
        hit_units += [(l, int(a), int(b)) for a, b in zip(i[sel], j[sel])]
    hit_ties = {}
    t, i, grp, a = ties
    for k in np.argsort(t):
        if t[k] > t_min:
            break
        hit_ties.setdefault((int(i[k]), int(grp[k])), int(a[k]))
    return hit_units, hit_ties


def _with_crossed(held: _Held, units: list, ties: dict, choose_old) -> _Held:
    out = held.copy()
    for l, i, j in units:
        out.units[l - 1][i, j] = True
        out.side[l - 1][i, j] = 0
    for (i, grp), b in ties.items():
        if (i, grp) in out.ties:
            active, ref = out.ties[(i, grp)]
            if b not in active:
                out.ties[(i, grp)] = (tuple(sorted(active + (b,))), ref)
        else:
            a = int(choose_old[i, grp])
            out.ties[(i, grp)] = (tuple(sorted((a, b))), a)
        out.tie_side.pop((i, grp), None)
    return out


def _add_independent(base: Problem, theta: np.ndarray, held: _Held, units: list, ties: dict, choose_old,
                     gauge: sp.csr_matrix) -> _Held:
    """``held`` with the crossed kinks added, except those whose rows depend on the held ones.

    A dependent kink cannot be held independently: when the others are at zero its value is fixed
    (e.g. a unit with more kinks than its inputs have dimensions), so it crosses unheld.
    """
    out = _with_crossed(held, units, ties, choose_old)
    pt = _evaluate(base, theta, out, gauge=False, grad=False)
    proj = _Projector(sp.vstack([pt.rows, gauge], format="csr"))
    dep = proj.dependent[:len(pt.keys)]
    if not dep.any():
        return out
    new_units = set(units)
    new_ties = set(ties)
    drop = [key for key, d in zip(pt.keys, dep) if d and (
        (key[0] == "unit" and key[1:] in new_units) or (key[0] == "tie" and (key[1], key[2]) in new_ties))]
    if not drop:
        return out
    keep_units = [u for u in units if ("unit",) + u not in drop]
    keep_ties = {k: a for k, a in ties.items() if not any(d[0] == "tie" and (d[1], d[2]) == k for d in drop)}
    return _with_crossed(held, keep_units, keep_ties, choose_old)


def _restore(base: Problem, theta: np.ndarray, held: _Held, *, gauge: sp.csr_matrix | None = None,
             max_iter: int = 8, deadline: float | None = None) -> tuple[np.ndarray, float, bool]:
    """Gauss–Newton onto ``M_H = {phi_H = 0}`` (least-norm corrections, orthogonal to ``gauge``).

    ``gauge`` (rows) defaults to the symmetry directions at ``theta``; a caller moving a short way
    passes those of its own point. Returns ``(theta, max |phi_k| / scale_k, ok)``; ``ok`` when
    the held kinks end within :data:`TOL_HOLD` of zero or stop improving at rounding level.
    """
    worst_prev = np.inf
    worst = np.inf
    for it in range(max_iter):
        pt = _evaluate(base, theta, held, gauge=gauge is None, grad=False)
        if gauge is None:
            gauge = pt.gauge
        if pt.phi.size == 0:
            return theta, 0.0, True
        worst = float((np.abs(pt.phi) / np.maximum(pt.phi_scale, 1e-300)).max())
        if worst <= TOL_HOLD:
            return theta, worst, True
        if worst >= 0.5 * worst_prev:
            if worst <= 1e3 * TOL_HOLD:
                return theta, worst, True   # rounding level: the evaluation cannot see less
            if it >= 2:
                return theta, worst, False  # not converging (inconsistent or too far): give up
        proj = _Projector(sp.vstack([pt.rows, gauge], format="csr"))
        theta = theta - proj.lift(np.concatenate([pt.phi, np.zeros(gauge.shape[0])]))
        worst_prev = worst
        if deadline is not None and time.perf_counter() > deadline:
            break
    pt = _evaluate(base, theta, held, gauge=False, grad=False)
    worst = float((np.abs(pt.phi) / np.maximum(pt.phi_scale, 1e-300)).max(initial=0.0))
    return theta, worst, worst <= 1e3 * TOL_HOLD


# ---------------------------------------------------------------------------- multipliers
def _sides(pt: _Point, nu: np.ndarray, gamma_floor: float):
    """Per held row: the normalised slopes into ``phi > 0`` and ``phi < 0`` (>= 0 both: consistent).

    ``s_plus = -nu / |gamma|``, ``s_minus = (nu + gamma) / |gamma|``; for a convex kink
    ``s_plus = 1 - lambda`` and ``s_minus = lambda`` with ``lambda = 1 + nu / gamma``. Rows with
    ``|gamma| <= gamma_floor`` (a kink the loss does not see) get ``-inf`` on the side ``nu`` descends.
    """
    k = len(pt.keys)
    gam = pt.gamma[:k]
    nu = nu[:k]
    tiny = np.abs(gam) <= gamma_floor
    g_abs = np.where(tiny, 1.0, np.abs(gam))
    s_plus = -nu / g_abs
    s_minus = (nu + gam) / g_abs
    s_plus = np.where(tiny & (nu > 0), -np.inf, np.where(tiny, np.inf, s_plus))
    s_minus = np.where(tiny & (nu <= 0), -np.inf, np.where(tiny, np.inf, s_minus))
    return s_plus, s_minus


def _tie_weights(pt: _Point, nu: np.ndarray) -> dict:
    """Simplex weights ``pi`` of every held loss group: ``pi_b = -n nu_b``, ``pi_ref = 1 - sum``."""
    n = pt.problem.n_samples
    out = {}
    for key, v in zip(pt.keys, nu):
        if key[0] != "tie":
            continue
        _, i, grp, b, ref = key
        w = out.setdefault((i, grp), {ref: 1.0})
        w[b] = -n * v
        w[ref] -= -n * v
    return out


def _release(pt: _Point, nu: np.ndarray, held: _Held, face_solved: bool, gamma_floor: float,
             viol: np.ndarray) -> tuple[_Held, int]:
    """Release held kinks whose multiplier lies outside its interval, to the side that descends.

    Only kinks whose descent (``viol``, see :func:`_violations`) exceeds :data:`TOL_SLOPE` count.
    Concave kinks (``gamma < 0``) and kinks the loss does not see (``|gamma| <= gamma_floor``) are
    released at once; convex kinks and loss ties only once their face is solved (``face_solved``:
    the reduced gradient is ~0, so the multipliers are those of the face's KKT point, as in an
    active-set QP), and a kink released :data:`MAX_RELEASES` times stays held (anti-cycling). A
    unit kink feeding a held kink is not released (see :func:`_violations`).
    """
    s_plus, s_minus = _sides(pt, nu, gamma_floor)
    out = held.copy()
    count = 0
    n = pt.problem.n_samples
    nested = {l: _nested(held, l, n) for l in range(1, len(held.units) + 1)}
    for k, key in enumerate(pt.keys):
        if key[0] != "unit" or viol[k] <= TOL_SLOPE:
            continue
        if nested[key[1]][key[2]]:
            continue                     # feeds a held kink: see _violations
        convex = pt.gamma[k] > gamma_floor
        if convex and (not face_solved or out.releases.get(key, 0) >= MAX_RELEASES):
            continue
        _, l, i, j = key
        out.units[l - 1][i, j] = False
        out.side[l - 1][i, j] = 1 if s_plus[k] < s_minus[k] else -1
        out.releases[key] = out.releases.get(key, 0) + 1
        count += 1
    if not face_solved:
        return out, count
    bad_groups = {(key[1], key[2]) for q, key in enumerate(pt.keys) if key[0] == "tie" and viol[q] > TOL_SLOPE}
    for (i, grp), w in _tie_weights(pt, nu).items():
        key = ("tie", i, grp)
        if (i, grp) not in bad_groups or out.releases.get(key, 0) >= MAX_RELEASES:
            continue
        active, ref = out.ties[(i, grp)]
        worst = min(w, key=lambda b: w[b])
        remaining = tuple(a for a in active if a != worst)
        out.releases[key] = out.releases.get(key, 0) + 1
        count += 1
        if len(remaining) <= 1:
            del out.ties[(i, grp)]
            out.tie_side[(i, grp)] = remaining[0]
        else:
            new_ref = ref if ref in remaining else max(remaining, key=lambda a: w.get(a, 0.0))
            out.ties[(i, grp)] = (remaining, new_ref)
    return out, count


# ---------------------------------------------------------------------------- result
@dataclass
class PolishResult:
    """Where polishing ended and how it got there.

    Attributes
    ----------
    theta : (p,) array
        The polished point (the rescaling representative nearest the start).
    converged : bool
        Held kinks zero to a few ulps, reduced gradient zero to rounding, multipliers in their
        intervals. False: the best point so far, with ``reason``.
    reason : str
        Why it stopped.
    rounds : int
        Newton rounds (each one multiplier update, release test and step).
    distance, relative_distance : float
        ``||theta* - theta_0||`` and that divided by ``||theta_0||``.
    loss_before, loss_after, loss_gap : float
        ``L(theta_0)``, ``L(theta*)`` and ``L(theta_0) - L(theta*) >= 0`` (float64).
    reduced_gradient, reduced_gradient_relative : float
        ``||P g||_inf`` (``P`` projects onto the tangent space of the held kinks modulo symmetry) and
        that divided by the size of the gradient's terms (absolute back-propagation).
    kink_residual : float
        ``max |phi_k| / (|W||x| + |b|)_k`` over the held kinks (relative to their terms' size).
    kinks_held : list
        The held kinks: ``("unit", layer, sample, unit)`` or ``("tie", sample, group, piece, ref)``.
    multipliers : (K,) array
        ``lambda_k = 1 + nu_k / gamma_k`` of every held kink (in [0, 1] at a KKT point; for a loss
        tie with more than two pieces, the simplex weight of the piece).
    multiplier_margin : float
        ``min_k min(lambda_k, 1 - lambda_k)`` over the kinks whose multiplier is judged: > 0 means
        strictly interior multipliers (``inf`` when none is held).
    untested : int
        Held unit kinks whose multiplier is not judged: kinks feeding another held kink at the same
        sample (nested) or with no jump of their own; the checker judges their structure.
    history : list of dict
        Per round: loss, reduced gradient (relative), kinks held, step length, trust radius.
    time_s : float
    """

    theta: np.ndarray
    converged: bool
    reason: str = ""
    rounds: int = 0
    distance: float = 0.0
    relative_distance: float = 0.0
    loss_before: float = float("nan")
    loss_after: float = float("nan")
    loss_gap: float = 0.0
    reduced_gradient: float = float("nan")
    reduced_gradient_relative: float = float("nan")
    kink_residual: float = 0.0
    kinks_held: list = field(default_factory=list)
    multipliers: np.ndarray = field(default_factory=lambda: np.zeros(0))
    multiplier_margin: float = float("nan")
    untested: int = 0
    history: list = field(default_factory=list)
    time_s: float = 0.0
    rescaled: bool = False

    @property
    def note(self) -> str:
        return self.reason

    @property
    def iterations(self) -> int:
        return self.rounds

    @property
    def n_kinks(self) -> int:
        return len(self.kinks_held)

    def to_dict(self) -> dict:
        n_units = sum(1 for k in self.kinks_held if k[0] == "unit")
        return {"converged": self.converged, "reason": self.reason, "note": self.reason, "rounds": self.rounds,
                "distance": self.distance, "relative_distance": self.relative_distance,
                "loss_before": self.loss_before, "loss_after": self.loss_after,
                "loss_change": self.loss_after - self.loss_before, "loss_gap": self.loss_gap,
                "reduced_gradient": self.reduced_gradient,
                "reduced_gradient_relative": self.reduced_gradient_relative,
                "kink_residual": self.kink_residual,
                "kinks_held": {"count": len(self.kinks_held), "units": n_units,
                               "loss_ties": len(self.kinks_held) - n_units,
                               "which": [list(k) for k in self.kinks_held]},
                "multipliers": [float(v) for v in self.multipliers],
                "multiplier_margin": self.multiplier_margin, "untested_multipliers": self.untested,
                "rescaled": self.rescaled,
                "history": self.history, "time_s": self.time_s}


# ---------------------------------------------------------------------------- the method
def _snap_collapsed(problem: Problem, theta: np.ndarray, rel: float = 1e-12) -> tuple[np.ndarray, list]:
    """Set hidden units whose incoming weights and bias have collapsed to ~0 exactly to 0.

    Weight decay drives unused units to ~1e-27 rather than to 0; such a unit sits on its kink at
    every sample (``z = 0`` up to 1e-27) with linearly dependent switching rows, and its piece is
    decided by the signs of rounding noise. At 0 it is inert: its output is 0 whatever the
    direction, so its coordinates are frozen (:func:`_gauge_rows`) and whether it should escape is
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
            W[j] = 0.0
            b[j] = 0.0
            if out[j] <= rel * max(float(out.max(initial=0.0)), 1e-300):
                Wn[:, j] = 0.0
            zero.append((l, int(j)))
    return theta, zero


def _initial_held(problem: Problem, tol_near: float | None) -> _Held:
    """Kinks within ``tol_near`` (relative, as :func:`certify.kinks.find_kinks`); None: none held."""
    from .kinks import find_kinks
    net = problem.network
    n = problem.n_samples
    side = [np.zeros((n, w), dtype=np.int8) for w in net.widths[1:-1]]
    empty = [np.zeros((n, w), dtype=bool) for w in net.widths[1:-1]]
    if tol_near is None:
        return _Held(units=empty, side=side)
    fwd = net.forward(problem.X, with_scale=True)
    kinks = find_kinks(problem, fwd, tol_near)
    units = [m.copy() for m in kinks.masks] if kinks.masks else empty
    ties = {}
    if kinks.n_loss:
        vals, _ = problem.loss.pieces(fwd.output, problem.Y)
        for i, grp, act in zip(kinks.loss_sample, kinks.loss_group, kinks.loss_active):
            ref = int(act[np.argmax(vals[i, grp, act])])
            ties[(int(i), int(grp))] = (tuple(int(a) for a in sorted(act)), ref)
    return _Held(units=units, side=side, ties=ties)


def polish(problem: Problem, *, deadline: float | None = None, tol_near: float = DEFAULT_TOL_NEAR,
           max_rounds: int = 500, radius: float | None = None, rescale: bool = True) -> PolishResult:
    """Move ``problem``'s point to a nearby KKT point of the piecewise-smooth loss (module docstring).

    Parameters
    ----------
    problem : Problem
        The objective at the point to polish (``theta_0``).
    deadline : float, optional
        A ``time.perf_counter()`` value; checked between rounds and inside CG. When it passes, the
        best point so far is returned with ``converged=False``.
    tol_near : float
        Relative distance to a kink under which a kink is held from the start (default 0: only exact
        zeros; the others are found as blocking kinks along the steps).
    max_rounds : int
        Newton rounds at most.
    radius : float, optional
        Initial trust-region radius (default ``0.05 max(||theta_0||, 1)``).
    rescale : bool
        Return the rescaling representative nearest ``theta_0`` (no effect with weight decay).

    Returns
    -------
    PolishResult
    """
    t_start = time.perf_counter()
    theta0 = problem.theta.copy()
    norm0 = float(np.linalg.norm(theta0))
    loss0 = problem.value()
    held = _initial_held(problem, tol_near)
    radius = 0.05 * max(norm0, 1.0) if radius is None else float(radius)
    radius0 = radius
    floor = 1e-15 * max(norm0, 1.0)
    history = []
    reason = ""
    converged = False

    def out_of_time():
        return deadline is not None and time.perf_counter() > deadline

    theta = theta0.copy()
    snapped, zero_units = _snap_collapsed(problem, theta0)
    if zero_units and problem.value(snapped) <= loss0:
        theta = snapped
        for l, j in zero_units:
            held.units[l - 1][:, j] = False
        log.info("polish: %d collapsed unit(s) set to 0 and frozen", len(zero_units))
    if held.n_total:
        cand, _, ok = _restore(problem, theta.copy(), held, deadline=deadline)
        if ok and problem.value(cand) <= loss0:
            theta = cand
        else:                       # holding these costs loss: start unheld, blocking finds the kinks
            held = _initial_held(problem, None)
    rounds = fails = 0
    refine_from = None     # (theta, held, reduced gradient) before a refinement step
    for rounds in range(1, max_rounds + 1):
        if out_of_time():
            reason = "the time budget ran out"
            rounds -= 1
            break
        st = _stationarity(problem, theta, held)
        if refine_from is not None and st.red_rel >= 0.5 * refine_from[2]:
            theta, held = refine_from[0], refine_from[1]      # the refinement did not help: undo it
            st = _stationarity(problem, theta, held)
            ok = st.kinks_ok and st.mult_ok and st.red_rel <= TOL_STALL
            converged = ok
            reason = (f"converged to rounding (reduced gradient {st.red_rel:.2g} relative; a further Newton step "
                      f"does not reduce it)" if ok else f"no further progress (reduced gradient {st.red_rel:.2g} "
                      f"relative, largest multiplier violation {st.viol:.2g})")
            break
        refine_from = None
        held = st.held
        history.append({"round": rounds, "loss": st.pt.loss, "reduced_gradient": st.red_rel,
                        "kinks_held": len(st.pt.keys), "kink_residual": st.kink_res,
                        "multiplier_violation": st.viol, "radius": radius})
        tick("polishing: rounds", rounds, max_rounds)
        detail("polishing", round=rounds, loss=st.pt.loss, reduced_gradient=st.red_rel, kinks_held=len(st.pt.keys))
        log.info("polish round %d: loss %.12g, reduced gradient %.3g (relative), %d kinks held, kink residual "
                 "%.3g, multiplier violation %.3g", rounds, st.pt.loss, st.red_rel, len(st.pt.keys), st.kink_res,
                 st.viol)
        if st.kinks_ok and st.mult_ok and st.red_rel <= TOL_GRAD:
            converged, reason = True, "converged: kinks held to rounding, reduced gradient zero to rounding"
            break
        if problem.loss.attains_zero and st.pt.loss <= _zero_loss(problem):
            converged, reason = True, "converged: the loss is zero to rounding (a global minimum)"
            break
        # ---- the Newton–KKT step on M_H
        hvp = _lagrangian_hvp(st.pt, st.nu)
        rho = RHO_REL * max(_hess_size(hvp, theta.size), 1e-300)
        tol_cg = min(0.1, np.sqrt(st.red_rel)) * float(np.linalg.norm(st.r))
        x, model, cg_info = _steihaug(hvp, st.proj.project, st.r, radius, rho, tol_cg, deadline, MAX_CG)
        if not np.any(x) and out_of_time():
            reason = "the time budget ran out"
            break
        if not np.any(x):
            converged = st.kinks_ok and st.mult_ok and st.red_rel <= TOL_STALL
            reason = f"no Newton step ({cg_info}); reduced gradient {st.red_rel:.2g} relative"
            break
        units, ties = _blocking_now(st.pt, x, held, st.gamma_floor)
        if units or ties:
            choose = _loss_pieces(problem, st.pt.fwd.output, held)[2] if problem.loss.piecewise_linear else None
            held_new = _add_independent(problem, theta, held, units, ties, choose, st.pt.gauge)
            added = held_new.n_total - held.n_total
            if added:
                held = held_new
                history[-1].update({"step": 0.0, "added": added})
                log.debug("  %d kink(s) block the step at once: held", added)
                continue
        rounding = _rounding(problem, theta)
        if -model <= 8 * rounding and st.red_rel <= TOL_FACE:
            # below what L can resolve: a Newton step on the KKT system, kept if it reduces the gradient
            trial, _, ok = _restore(problem, theta + x, held, gauge=st.pt.gauge, deadline=deadline)
            units, ties = _crossed(st.pt, problem, trial, held, st.gamma_floor)
            if ok and not units and not ties and problem.value(trial) <= st.pt.loss + rounding:
                refine_from = (theta, held, st.red_rel)
                history[-1].update({"step": float(np.linalg.norm(trial - theta)), "t": 1.0, "cg": cg_info,
                                    "refinement": True})
                log.debug("  refinement step %.3g (%s)", np.linalg.norm(trial - theta), cg_info)
                theta = trial
                continue
            converged = st.kinks_ok and st.mult_ok and st.red_rel <= TOL_STALL
            reason = (f"converged to rounding (reduced gradient {st.red_rel:.2g} relative)" if converged else
                      f"stopped: the predicted decrease is below rounding (reduced gradient {st.red_rel:.2g} "
                      f"relative, largest multiplier violation {st.viol:.2g})")
            break
        step = _line_search(problem, st.pt, held, x, model, deadline, st.gamma_floor)
        if isinstance(step, str):        # the step is too short for L to see: try a longer one
            fails += radius >= radius0
            radius = min(16.0 * max(radius, float(np.linalg.norm(x))), radius0)
            history[-1]["step"] = 0.0
            log.debug("  the loss is flat to rounding along the step: radius %.3g", radius)
            if fails >= 3:
                converged = st.kinks_ok and st.mult_ok and st.red_rel <= TOL_STALL
                reason = (f"converged to rounding (reduced gradient {st.red_rel:.2g} relative)" if converged else
                          f"the loss is flat to rounding around the point (reduced gradient {st.red_rel:.2g} "
                          f"relative, largest multiplier violation {st.viol:.2g})")
                break
            continue
        if step is None and out_of_time():
            reason = "the time budget ran out"
            break
        if step is None:
            fails += 1
            radius = max(0.25 * min(radius, float(np.linalg.norm(x))), floor)
            history[-1]["step"] = 0.0
            log.debug("  no lower point along the step (%s)", cg_info)
            if fails >= 6 or out_of_time():
                converged = st.kinks_ok and st.mult_ok and st.red_rel <= TOL_STALL
                reason = (f"converged to rounding (reduced gradient {st.red_rel:.2g} relative; no lower point)"
                          if converged else f"the line search found no lower point (reduced gradient "
                          f"{st.red_rel:.2g} relative, largest multiplier violation {st.viol:.2g})")
                break
            continue
        fails = 0
        theta_new, held_new, ratio, t = step
        length = float(np.linalg.norm(theta_new - theta))
        added = held_new.n_total - held.n_total
        history[-1].update({"step": length, "t": t, "cg": cg_info, "added": added})
        log.debug("  step %.3g (t = %g, %s), %d kinks added, ratio %.3g", length, t, cg_info, added, ratio)
        xn = float(np.linalg.norm(x))
        if t == 1.0 and ratio > 0.25 and xn >= 0.9 * radius:
            radius *= 2.0          # a useful step at the boundary (the pieces make ratios modest)
        elif t == 1.0 and ratio < 0.1:
            radius = max(0.5 * xn, floor)
        elif t < 1.0:
            radius = max(0.5 * t * xn, floor) if not added else min(radius, max(4.0 * t * xn, floor))
        theta, held = theta_new, held_new
    else:
        reason = f"{max_rounds} rounds used"
    rescaled = False
    if rescale and not problem.weight_decay and problem.network.n_layers > 1:
        cand = nearest_rescaling(problem, theta, theta0)
        if np.linalg.norm(cand - theta0) < np.linalg.norm(theta - theta0):
            cand, _, ok = _restore(problem, cand, held, max_iter=3, deadline=None)
            if ok and problem.value(cand) <= problem.value(theta) + _rounding(problem, theta):
                theta, rescaled = cand, True
    return _result(problem, theta0, theta, held, loss0, converged, reason, rounds, history, t_start, rescaled)


@dataclass
class _Stationarity:
    pt: _Point
    held: _Held
    proj: _Projector
    nu: np.ndarray
    r: np.ndarray
    gscale: float
    red_rel: float
    kink_res: float
    viol: float

    @property
    def gamma_floor(self) -> float:
        return 1e-12 * self.gscale

    @property
    def kinks_ok(self) -> bool:
        return self.kink_res <= 1e3 * TOL_HOLD

    @property
    def mult_ok(self) -> bool:
        return self.viol <= TOL_SLOPE


def _stationarity(problem: Problem, theta: np.ndarray, held: _Held, max_updates: int = 4) -> _Stationarity:
    """Multipliers, reduced gradient and releases at ``theta`` (releases change the held set)."""
    for _ in range(max_updates):
        pt = _evaluate(problem, theta, held)
        proj = _Projector(sp.vstack([pt.rows, pt.gauge], format="csr"))
        nu = proj.multipliers(-pt.g)
        r = proj.project(pt.g)
        gscale = _grad_scale(pt)
        red_rel = float(np.abs(r).max(initial=0.0)) / gscale
        viol = _violations(pt, nu, gscale)
        new_held, n_rel = _release(pt, nu, held, red_rel <= TOL_FACE, 1e-12 * gscale, viol)
        if n_rel == 0:
            break
        log.debug("  released %d kink(s)", n_rel)
        held = new_held
    kink_res = float((np.abs(pt.phi) / np.maximum(pt.phi_scale, 1e-300)).max(initial=0.0))
    return _Stationarity(pt=pt, held=held, proj=proj, nu=nu, r=r, gscale=gscale, red_rel=red_rel, kink_res=kink_res,
                         viol=float(viol.max(initial=0.0)))


def _violations(pt: _Point, nu: np.ndarray, gscale: float) -> np.ndarray:
    """Per held row: the rate at which ``L`` falls along the unit normal into its descending side,
    relative to the size of the gradient's terms (0 when the multiplier lies in its interval)."""
    k = len(pt.keys)
    if k == 0:
        return np.zeros(0)
    s_plus, s_minus = _sides(pt, nu, 1e-12 * gscale)
    worst = np.minimum(s_plus, s_minus)
    row_norm = np.sqrt(np.asarray(pt.rows.multiply(pt.rows).sum(axis=1)).ravel())
    size = np.abs(pt.gamma[:k]) * row_norm
    finite = np.isfinite(worst)
    out = np.abs(nu[:k]) * row_norm                      # kinks the loss does not see: |nu| is the slope
    out[finite] = np.maximum(0.0, -worst[finite]) * size[finite]
    # a unit kink that feeds a held kink (same sample, downstream) acts on L through that kink: its
    # multiplier in the reference piece is not its multiplier in the nested piecewise structure, so
    # it is held as long as the kink it feeds is, and the checker judges the nested structure
    n = pt.problem.n_samples
    nested = {l: _nested_of(pt.keys, l, n) for l in {key[1] for key in pt.keys if key[0] == "unit"}}
    for q, key in enumerate(pt.keys):
        if key[0] == "unit" and nested[key[1]][key[2]]:
            out[q] = 0.0
    for (i, grp), w in _tie_weights(pt, nu).items():
        low = min(w.values())
        if low < 0:
            for q, key in enumerate(pt.keys):
                if key[0] == "tie" and key[1] == i and key[2] == grp:
                    out[q] = max(out[q], -low * row_norm[q] / pt.problem.n_samples)
    return out / gscale


def _hess_size(hvp, p: int) -> float:
    """A cheap estimate of ``||H||`` (three power iterations from a fixed vector)."""
    v = np.random.default_rng(0).standard_normal(p)
    v /= np.linalg.norm(v)
    s = 0.0
    for _ in range(3):
        w = hvp(v)
        s = float(np.linalg.norm(w))
        if s == 0:
            return 0.0
        v = w / s
    return s


def _zero_loss(problem: Problem) -> float:
    """A loss below this is zero up to rounding (the data loss attains 0: square, hinge, absolute...)."""
    y2 = float(np.mean(np.abs(problem.Y.astype(np.float64)) ** 2)) if problem.Y.dtype.kind == "f" else 1.0
    return (64 * _EPS) ** 2 * (1.0 + y2)


def _rounding(problem: Problem, theta: np.ndarray) -> float:
    from .evaluate import loss_with_bound
    return float(loss_with_bound(problem, theta).error)


def _line_search(problem: Problem, pt: _Point, held: _Held, x: np.ndarray, model: float, deadline,
                 gamma_floor: float, max_halvings: int = 20):
    """Backtrack ``t`` until ``Proj_{M_{H + crossed}}(theta + t x)`` has a loss below ``L(theta)``.

    Returns ``(theta_new, held_new, ratio, t)`` (``ratio``: actual over predicted decrease), ``"flat"``
    when the loss no longer changes beyond its rounding along the shorter steps, or None.
    """
    base = pt.loss
    flat = 4 * _rounding(problem, pt.theta)
    times = _crossing_times(*_predicted_crossings(pt, x, held, gamma_floor))
    budget = max(MAX_ADD, len(pt.keys) // 4)   # kinks one step may add at most (first trial)
    t = 1.0 if times.size <= budget else min(1.0, float(times[budget]))
    choose_old = _loss_pieces(pt.problem, pt.fwd.output, held)[2] if problem.loss.piecewise_linear else None
    for _ in range(max_halvings):
        if deadline is not None and time.perf_counter() > deadline:
            return None
        trial = pt.theta + t * x
        units, ties = _crossed(pt, problem, trial, held, gamma_floor)
        held_t = _add_independent(problem, trial, held, units, ties, choose_old, pt.gauge) if (units or ties) \
            else held
        trial, kres, ok = _restore(problem, trial, held_t, gauge=pt.gauge, deadline=deadline)
        val = problem.value(trial) if ok else np.nan
        if ok and val < base:
            ratio = (base - val) / max(-model * t, 1e-300) if model < 0 else 1.0
            return trial, held_t, ratio, t
        if ok and abs(val - base) <= flat and t < 1.0 and not units and not ties:
            return "flat"             # shorter steps change L below its rounding: nothing to find here
        log.debug("    t = %g: %d unit(s) and %d tie(s) crossed, restored %s (%.3g), L - L0 = %.3g",
                  t, len(units), len(ties), ok, kres, val - base)
        t *= 0.5
    return None


def _result(problem, theta0, theta, held, loss0, converged, reason, rounds, history, t_start, rescaled):
    pt = _evaluate(problem, theta, held)
    B = sp.vstack([pt.rows, pt.gauge], format="csr")
    proj = _Projector(B)
    nu = proj.multipliers(-pt.g)
    r = proj.project(pt.g)
    gscale = _grad_scale(pt)
    k = len(pt.keys)
    gam = pt.gamma[:k]
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(gam != 0, 1.0 + nu[:k] / gam, np.nan)
    weights = _tie_weights(pt, nu)
    for q, key in enumerate(pt.keys):
        if key[0] == "tie" and len(held.ties[(key[1], key[2])][0]) > 2:
            lam[q] = weights[(key[1], key[2])][key[3]]
    tested = np.isfinite(lam) & (_violations(pt, nu, gscale) >= 0)
    nested = {l: _nested_of(pt.keys, l, problem.n_samples) for l in range(1, problem.network.n_layers)}
    for q, key in enumerate(pt.keys):
        if key[0] == "unit" and (nested[key[1]][key[2]] or abs(gam[q]) <= 1e-12 * gscale):
            tested[q] = False        # its multiplier is not judged here (see _violations)
    margin = float(np.min(np.minimum(lam[tested], 1.0 - lam[tested]), initial=np.inf))
    loss_after = pt.loss
    dist = float(np.linalg.norm(theta - theta0))
    norm0 = float(np.linalg.norm(theta0))
    res = PolishResult(
        theta=theta, converged=converged, reason=reason, rounds=rounds, distance=dist,
        relative_distance=dist / norm0 if norm0 > 0 else float("inf") if dist else 0.0,
        loss_before=loss0, loss_after=loss_after, loss_gap=loss0 - loss_after,
        reduced_gradient=float(np.abs(r).max(initial=0.0)),
        reduced_gradient_relative=float(np.abs(r).max(initial=0.0)) / gscale,
        kink_residual=float((np.abs(pt.phi) / np.maximum(pt.phi_scale, 1e-300)).max(initial=0.0)),
        kinks_held=list(pt.keys), multipliers=lam, multiplier_margin=margin,
        untested=int(np.count_nonzero(~tested)), history=history,
        time_s=time.perf_counter() - t_start, rescaled=rescaled)
    return res


# ---------------------------------------------------------------------------- rescaling
def nearest_rescaling(problem: Problem, theta: np.ndarray, theta0: np.ndarray, *, sweeps: int = 50) -> np.ndarray:
    """The point of ``theta``'s rescaling orbit nearest ``theta0``.

    Positive homogeneity: scaling a hidden unit's incoming weights and bias ``u`` by ``c > 0`` and
    its outgoing weights ``v`` by ``1/c`` leaves the network's function unchanged. Per unit, the
    best ``c`` minimises ``||c u - u_0||^2 + ||v / c - v_0||^2``: a root of
    ``|u|^2 c^4 - (u.u_0) c^3 + (v.v_0) c - |v|^2`` (one positive root at least); units of
    consecutive layers share ``W_{l+1}``, so the layers are swept until the scalings settle
    (coordinate descent: the distance never increases). The loss is unchanged up to the rounding of
    the products (weight decay breaks the symmetry; do not call it then).
    """
    net = problem.network
    theta = np.array(theta, dtype=np.float64, copy=True)
    for _ in range(sweeps):
        largest = 0.0
        for l in range(1, net.n_layers):
            W = net.weights[l - 1]
            Wn = net.weights[l]
            w0, b0 = net.offsets[l - 1]
            wn0, _ = net.offsets[l]
            n_in = W.shape[1]
            for j in range(W.shape[0]):
                in_idx = np.concatenate([w0 + j * n_in + np.arange(n_in), [b0 + j]])
                out_idx = wn0 + np.arange(Wn.shape[0]) * Wn.shape[1] + j
                u, u0 = theta[in_idx], theta0[in_idx]
                v, v0 = theta[out_idx], theta0[out_idx]
                a, c_ = float(u @ u), float(v @ v)
                if a == 0 or c_ == 0:
                    continue
                roots = np.roots([a, -float(u @ u0), 0.0, float(v @ v0), -c_])
                cands = [float(r.real) for r in roots if abs(r.imag) <= 1e-9 * abs(r) and r.real > 0]
                if not cands:
                    continue
                cost = [float(np.sum((c * u - u0) ** 2) + np.sum((v / c - v0) ** 2)) for c in cands]
                c = cands[int(np.argmin(cost))]
                if cost[int(np.argmin(cost))] >= float(np.sum((u - u0) ** 2) + np.sum((v - v0) ** 2)):
                    continue
                theta[in_idx] = c * u
                theta[out_idx] = v / c
                largest = max(largest, abs(np.log(c)))
        if largest <= 1e-13:
            break
    return theta


# ---------------------------------------------------------------------------- compatibility
def polish_point(problem: Problem, judge=None, *, time_limit: float = 5.0, budget_s: float = 300.0,
                 tol_near: float = DEFAULT_TOL_NEAR, max_rounds: int = 3) -> PolishResult:
    """Polish, and when ``judge`` refutes the polished point, step along its descent and polish again.

    ``judge(problem, time_limit)`` is a checker returning a report (the driver passes
    ``check_problem``); ``time_limit`` bounds each of its calls. ``budget_s`` bounds the polishing
    (all rounds). At most ``max_rounds`` polish-judge rounds; a ``local_min`` or ``saddle`` (a
    trained saddle stays a saddle: polishing never escapes it) ends them.
    """
    t0 = time.perf_counter()
    deadline = t0 + budget_s
    theta0, loss0 = problem.theta, problem.value()
    current = problem
    res = None
    for k in range(max_rounds):
        res = polish(current, deadline=deadline, tol_near=tol_near)
        if judge is None or k + 1 >= max_rounds or time.perf_counter() > deadline:
            break
        report = judge(problem.at(res.theta), time_limit)
        ref = report.refutation or {}
        if report.verdict.value in ("local_min", "saddle") or ref.get("direction") is None or not ref.get("step"):
            break
        d = np.asarray(ref["direction"], dtype=np.float64)
        step = float(ref["step"])
        nxt = res.theta + step * d
        if problem.value(nxt) >= problem.value(res.theta):
            break
        current = problem.at(nxt)
    res.distance = float(np.linalg.norm(res.theta - theta0))
    norm0 = float(np.linalg.norm(theta0))
    res.relative_distance = res.distance / norm0 if norm0 > 0 else 0.0
    res.loss_before = loss0
    res.loss_after = problem.value(res.theta)
    res.loss_gap = loss0 - res.loss_after
    res.time_s = time.perf_counter() - t0
    return res
