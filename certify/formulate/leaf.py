"""Nodes of the first-order branch-and-bound tree: the tangent network with some kinks' sides fixed.

``L'(theta; .)`` is convex when every kink is *convex* (``c_k (s_pos - s_neg) > 0``) and feeds no
other kink. The tree branches on the others (:func:`branch_set`): *concave* kinks and kinks
*feeding* a kink downstream (nested kinks). Kinks with bit-identical rows are merged first
(:func:`merged_model`), so a concave kink sharing its row with a stronger convex one -- the usual way
LIKQ fails at a minimum -- is no concave kink at all.

A **node** fixes the side ``sigma_k`` of the kinks ``F`` on its path; on the cone
``{sigma_k v_k(d) >= 0, k in F}`` their outputs are linear, ``u_k = s_{sigma_k} v_k``. The kinks of
the branch set not yet fixed, ``U``, are **relaxed**: ``u_k = s_neg v_k + (s_pos - s_neg) r_k``
with ``r_k >= max(v_k, 0)`` instead of ``=`` (allowed for a kink that feeds only loss kinks, its
row linear at the node). Then (:func:`node`)::

    phi(d, r) = g_F . d + kappa . r + sum_j gamma_j max(a_j . d + e_j . r, 0) + (1/n) sum_q max_a S_qa (...)

is convex and ``L'(theta; d) = phi(d, max(v(d), 0))``. A node is *proved* when multipliers
``lambda in [0,1]`` (generators), ``pi`` in simplices (loss ties), ``mu >= 0`` (fixed kinks),
``nu >= 0`` (``r_k >= v_k``) and ``xi >= 0`` (``r_k >= 0``) close both equations::

    d:  g_F + sum_j gamma_j lambda_j a_j + (1/n) sum_q G_q' S_q' pi_q + sum_k nu_k r_k - sum_f mu_f sigma_f r_f = 0
    r:  kappa + sum_j gamma_j lambda_j e_j + (1/n) sum_q E_q' pi_q - nu - xi = 0

(then for every feasible ``(d, r)``: ``phi >= sum_k nu_k (r_k - v_k) + xi_k r_k >= 0``, and the node's
cone holds no descent). With ``U`` empty this is the exact Farkas certificate of a leaf; with ``U``
non-empty it is the dual bound of a relaxation (VIPR's "pruned by bound"), which holds whenever the
relaxed kinks enter ``L'`` monotonically. Every ``d`` lies in the cone of some leaf of a complete
tree, so proved nodes covering the tree prove d-stationarity. This module builds the node models
and their LPs as plain data; the search is :mod:`certify.bnb`, the re-check
:func:`certify.checks.check_tree`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..problems import LinearProgram
from ..rounding import gamma as gamma_n
from ..tangent import FirstOrderModel
from .first_order import OneLevel, identical_rows


class NotRelaxable(ValueError):
    """A kink left free at a node cannot be relaxed there (it feeds a unit kink)."""


# ---------------------------------------------------------------------------- the model's branch set
def feeding(fo: FirstOrderModel) -> np.ndarray:
    """Kinks whose output reaches another kink (a unit kink downstream or a loss kink)."""
    out = np.zeros(fo.n_kinks, dtype=bool)
    if fo.M.nnz:
        out |= np.asarray(abs(fo.M).sum(axis=0)).ravel() > 0
    if fo.N.nnz:
        out |= np.asarray(abs(fo.N).sum(axis=0)).ravel() > 0
    return out


def merged_model(fo: FirstOrderModel) -> tuple[FirstOrderModel, np.ndarray]:
    """``fo`` with non-feeding kinks on bit-identical rows (of ``[A | M]``) merged: ``(merged, group)``.

    Such kinks switch together, so ``sum_k c_k u_k = (sum_k c_k) u`` exactly; a merged coefficient
    that is 0, or negative within its rounding bound, leaves the kink out (it does not reach ``L'``).
    ``group[k]`` is kink ``k``'s index in the merged model (-1: left out); the merged model's
    ``kink_ids`` number its own kinks. The absolute twin is merged the same way (coefficients summed).
    """
    K = fo.n_kinks
    if K == 0:
        return fo, np.zeros(0, dtype=np.int64)
    feeds = feeding(fo)
    rows = sp.hstack([fo.A, fo.M], format="csr") if fo.M.shape[1] else sp.csr_matrix(fo.A)
    same = identical_rows(rows)
    key = np.where(feeds, -1 - np.arange(K), same)          # feeding kinks stay alone
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    grp = rank[inverse]
    reps = first[order]
    m = reps.size
    c = np.zeros(m)
    np.add.at(c, grp, fo.c)
    jump = fo.s_pos - fo.s_neg
    drop = c == 0
    T = None
    if np.any(c * jump < 0) and fo.twin_fn is not None:
        T = fo.absolute
        ct = np.zeros(m)
        np.add.at(ct, grp, T.c)
        drop |= (c * jump < 0) & (np.abs(c * jump) <= fo.rounding * ct * abs(jump))
    drop &= ~feeds[reps]
    if m == K and not np.any(drop):
        return fo, np.arange(K)
    keep = np.nonzero(~drop)[0]
    new_id = np.full(m, -1, dtype=np.int64)
    new_id[keep] = np.arange(keep.size)
    sel = reps[keep]

    def reduce(model, coef):
        M = model.M[sel][:, sel] if model.M.shape[0] else model.M
        return FirstOrderModel(g=model.g, A=model.A[sel], M=sp.csr_matrix(M), c=coef[keep], s_pos=model.s_pos,
                               s_neg=model.s_neg, lk_sample=model.lk_sample, G=model.G,
                               N=sp.csr_matrix(model.N[:, sel]), groups=model.groups, n=model.n,
                               n_outputs=model.n_outputs, kink_ids=np.arange(sel.size), rounding=model.rounding)

    def twin():
        Tw = T if T is not None else fo.absolute
        ct = np.zeros(m)
        np.add.at(ct, grp, Tw.c)
        return reduce(Tw, ct)

    merged = reduce(fo, c)
    object.__setattr__(merged, "twin_fn", twin if fo.twin_fn is not None else None)
    return merged, new_id[grp]


def branch_set(fo: FirstOrderModel) -> np.ndarray:
    """Kinks of a *merged* model (:func:`merged_model`) whose side the tree fixes: feeding or concave."""
    if fo.n_kinks == 0:
        return np.zeros(0, dtype=np.int64)
    concave = fo.c * (fo.s_pos - fo.s_neg) < 0
    return np.nonzero(feeding(fo) | concave)[0].astype(np.int64)


def relaxable(fo: FirstOrderModel) -> np.ndarray:
    """Kinks that may be left free at a node: they feed loss kinks only and are not concave."""
    ok = fo.c * (fo.s_pos - fo.s_neg) >= 0
    if fo.M.nnz:
        ok &= np.asarray(abs(fo.M).sum(axis=0)).ravel() == 0
    return ok


# ---------------------------------------------------------------------------- nodes
@dataclass(frozen=True, eq=False)
class Node:
    """``phi(d, r)`` of one node of the tree (module docstring).

    ``one``: the one-level part in ``d`` (its twin and rounding factor bound a certificate's residual);
    ``region``: signed rows ``sigma_f r_f`` of the fixed kinks; ``relaxed``: rows ``r_k`` of the relaxed
    kinks, with ``kappa`` their cost, ``e`` (J x U) their coupling into the generators and
    ``E[q]`` (m_q x U) into the multi-piece loss groups. ``*_twin``: the absolute twins (for bounds).
    """

    one: OneLevel
    region: sp.csr_matrix
    relaxed: sp.csr_matrix
    kappa: np.ndarray
    e: np.ndarray
    E: list
    fixed: np.ndarray
    signs: np.ndarray
    free: np.ndarray
    twin: dict | None = None

    @property
    def n_relaxed(self) -> int:
        return int(self.free.size)


def node(fo: FirstOrderModel, fixed, signs) -> Node:
    """The node of a merged model with kinks ``fixed`` on sides ``signs`` and the rest of its branch set
    relaxed (module docstring). Raises :class:`NotRelaxable` when a free kink cannot be relaxed."""
    fixed = np.asarray(fixed, dtype=np.int64)
    signs = np.asarray(signs, dtype=np.int64)
    order = np.argsort(fixed, kind="stable")      # one canonical order of the fixed kinks' rows (and mu)
    fixed, signs = fixed[order], signs[order]
    B = branch_set(fo)
    free = np.setdiff1d(B, fixed)
    if free.size and not np.all(relaxable(fo)[free]):
        raise NotRelaxable("a free kink is concave or feeds a unit kink")
    real = _pieces(fo, fixed, signs, free, absolute=False, like=fo)
    twin = _pieces(fo.absolute, fixed, signs, free, absolute=True, like=fo) if fo.twin_fn is not None else None
    K = fo.n_kinks
    J = real["a"].shape[0]
    rounding = fo.rounding + 2.0 * gamma_n(2 * K + J + 16)
    tw_one = None
    if twin is not None:
        tw_one = OneLevel(g=twin["g"], a=twin["a"], gamma=twin["gamma"], multi=twin["multi"], n=fo.n, source=[])
    one = OneLevel(g=real["g"], a=real["a"], gamma=real["gamma"], multi=real["multi"], n=fo.n,
                   source=real["source"], twin=tw_one, rounding=rounding)
    region = sp.csr_matrix(real["rows"][fixed].multiply(signs[:, None])) if fixed.size else \
        sp.csr_matrix((0, fo.n_params))
    return Node(one=one, region=region, relaxed=sp.csr_matrix(real["rows"][free]), kappa=real["kappa"],
                e=real["e"], E=real["E"], fixed=fixed, signs=signs, free=free,
                twin=None if twin is None else {"region": twin["rows"][fixed], "relaxed": twin["rows"][free],
                                                "kappa": twin["kappa"], "e": twin["e"], "E": twin["E"]})


def _composed_rows(A: sp.csr_matrix, M: sp.csr_matrix, slope: np.ndarray) -> sp.csr_matrix:
    """Rows ``r`` of ``v = A d + M diag(slope) v``: forward substitution (``M`` is strictly lower
    block-triangular, by layer; ``slope`` is 0 except at fixed kinks that feed others)."""
    R = A.tocsr()
    if not M.nnz or not np.any(slope):
        return R
    MS = (M @ sp.diags(slope)).tocsr()
    for _ in range(A.shape[0]):
        R_new = (A + MS @ R).tocsr()
        R_new.sum_duplicates()
        if (R_new != R).nnz == 0:
            break
        R = R_new
    return R


def _pieces(T: FirstOrderModel, fixed, signs, free, *, absolute: bool, like: FirstOrderModel) -> dict:
    """The arrays of a node of model ``T`` (``absolute``: of the twin, every coefficient taken
    non-negative, the loss pieces' active sets read from ``like``, the real model)."""
    K = T.n_kinks
    s_pos, s_neg = like.s_pos, like.s_neg
    jump = s_pos - s_neg
    if absolute:
        s_pos, s_neg, jump = abs(s_pos), abs(s_neg), abs(jump)
    is_fixed = np.zeros(K, dtype=bool)
    is_fixed[fixed] = True
    is_free = np.zeros(K, dtype=bool)
    is_free[free] = True
    side = np.zeros(K)
    side[fixed] = np.where(signs > 0, s_pos, s_neg)
    slope_linear = np.where(is_fixed, side, s_neg)         # the part of u linear in v
    R = _composed_rows(T.A, T.M, np.where(is_fixed, side, 0.0))
    g = T.g + np.asarray(R.T @ (T.c * slope_linear)).ravel()
    gen = np.nonzero(~is_fixed & ~is_free)[0]
    rows = [R[gen]]
    gammas = [T.c[gen] * jump]
    source = [("unit", int(k)) for k in gen]
    U = free.size
    kappa = T.c[free] * jump
    e_rows = [np.zeros((gen.size, U))]
    multi, E = [], []
    C = T.n_outputs
    if T.groups:
        Gl = T.G.tocsr()
        if T.N.nnz:
            Gl = (Gl + T.N @ sp.diags(slope_linear) @ R).tocsr()
        Nr = (T.N[:, free] * jump).tocsr() if U else sp.csr_matrix((T.G.shape[0], 0))
        extra = []
        kappa = kappa.astype(np.float64).copy()
        for q, ((s, S), (_, S_like)) in enumerate(zip(T.groups, like.groups)):
            Gs = Gl[s * C:(s + 1) * C]
            Ws = Nr[s * C:(s + 1) * C].toarray()              # (C, U): loss outputs per unit of r
            S = np.abs(S_like) if absolute else S_like
            g = g + np.asarray(Gs.T @ S[0]).ravel() / T.n
            kappa += (S[0] @ Ws) / T.n
            if S_like.shape[0] == 2:
                w = np.abs(S_like[1] - S_like[0]) if absolute else S_like[1] - S_like[0]
                extra.append((sp.csr_matrix(np.asarray(Gs.T @ w).reshape(1, -1)), (w @ Ws)[None, :]))
                source.append(("loss", q))
            elif S_like.shape[0] > 2:
                D = np.abs(S_like - S_like[0]) if absolute else S_like - S_like[0]
                multi.append((Gs, D))
                E.append(D @ Ws)
        if extra:
            rows.append(sp.vstack([x for x, _ in extra], format="csr"))
            gammas.append(np.full(len(extra), 1.0 / T.n))
            e_rows.append(np.vstack([y for _, y in extra]))
    a = sp.vstack(rows, format="csr") if rows else sp.csr_matrix((0, T.n_params))
    gam = np.concatenate(gammas)
    e = np.vstack(e_rows) if e_rows else np.zeros((0, U))
    return {"g": np.asarray(g, dtype=np.float64).ravel(), "a": a, "gamma": gam, "multi": multi,
            "source": source, "rows": R, "kappa": np.asarray(kappa, dtype=np.float64), "e": e, "E": E}


# ---------------------------------------------------------------------------- LP and residuals
def node_lp(nd: Node) -> tuple[LinearProgram, dict]:
    """``min phi(d, r)`` over ``|d| <= 1`` and the node's constraints, as an LP; and the row layout.

    Columns ``d`` (p), ``s`` (J, ``s_j >= a_j d + e_j r``, ``>= 0``), ``t`` (one per multi group),
    ``r`` (U). Row blocks (their duals are the certificate's multipliers): ``gen`` (J), ``multi``
    (m_q each), ``region`` (fixed kinks), ``nu`` (``r - R_U d >= 0``), ``xi`` (``r >= 0``).
    """
    one = nd.one
    p, J, Q, U = one.g.size, one.n_generators, len(one.multi), nd.n_relaxed
    blocks, lo, hi = [], [], []
    blocks.append(sp.hstack([-one.a, sp.identity(J, format="csr"), sp.csr_matrix((J, Q)),
                             sp.csr_matrix(-nd.e if J else np.zeros((0, U)))], format="csr"))
    lo.append(np.zeros(J)); hi.append(np.full(J, np.inf))
    sizes = []
    for q, ((G, S), Eq) in enumerate(zip(one.multi, nd.E)):
        m = S.shape[0]
        sizes.append(m)
        tcol = sp.csr_matrix((np.ones(m), (np.arange(m), np.full(m, q))), shape=(m, Q))
        blocks.append(sp.hstack([-sp.csr_matrix(S) @ G, sp.csr_matrix((m, J)), tcol, sp.csr_matrix(-Eq)],
                                format="csr"))
        lo.append(np.zeros(m)); hi.append(np.full(m, np.inf))
    F = nd.region.shape[0]
    blocks.append(sp.hstack([nd.region, sp.csr_matrix((F, J + Q + U))], format="csr"))
    lo.append(np.zeros(F)); hi.append(np.full(F, np.inf))
    blocks.append(sp.hstack([-nd.relaxed, sp.csr_matrix((U, J + Q)), sp.identity(U, format="csr")], format="csr"))
    lo.append(np.zeros(U)); hi.append(np.full(U, np.inf))
    blocks.append(sp.hstack([sp.csr_matrix((U, p + J + Q)), sp.identity(U, format="csr")], format="csr"))
    lo.append(np.zeros(U)); hi.append(np.full(U, np.inf))
    A = sp.vstack(blocks, format="csr")
    cost = np.concatenate([one.g, one.gamma, np.full(Q, 1.0 / one.n), nd.kappa])
    col_lower = np.concatenate([-np.ones(p), np.zeros(J), np.full(Q, -np.inf), np.full(U, -np.inf)])
    col_upper = np.concatenate([np.ones(p), np.full(J, np.inf), np.full(Q, np.inf), np.full(U, np.inf)])
    prog = LinearProgram(c=cost, A=A, row_lower=np.concatenate(lo), row_upper=np.concatenate(hi),
                         col_lower=col_lower, col_upper=col_upper)
    layout = {"gen": J, "multi": sizes, "region": F, "relaxed": U, "p": p}
    return prog, layout


def node_residual(nd: Node, lam, pis, mu, nu, xi) -> tuple[np.ndarray, np.ndarray]:
    """``(rho, bound)``: both equations' residuals (``d`` then ``r`` rows) and a coordinatewise bound on
    their rounding errors (the twin evaluated at the absolute multipliers)."""
    one = nd.one
    J = one.n_generators
    rho_d = one.subgradient(lam, pis) - np.asarray(nd.region.T @ mu).ravel() + np.asarray(nd.relaxed.T @ nu).ravel()
    rho_r = nd.kappa.astype(np.float64).copy()
    if J and nd.n_relaxed:
        rho_r += (one.gamma * lam) @ nd.e
    for pi, Eq in zip(pis, nd.E):
        rho_r += (pi @ Eq) / one.n
    rho_r = rho_r - nu - xi
    bound_d = one.residual_bound(lam, pis)
    bound_r = np.zeros(nd.n_relaxed)
    if nd.twin is not None:
        tw, r = nd.twin, one.rounding
        al, ap = np.abs(lam), [np.abs(p) for p in pis]
        bound_d = bound_d + r * (np.asarray(abs(tw["region"]).T @ np.abs(mu)).ravel()
                                 + np.asarray(abs(tw["relaxed"]).T @ np.abs(nu)).ravel())
        if nd.n_relaxed:
            tg = one.absolute.gamma if one.absolute is not None else np.abs(one.gamma)
            bound_r = np.abs(tw["kappa"]).astype(np.float64).copy()
            if J:
                bound_r += (tg * al) @ np.abs(tw["e"])
            for pi, Eq in zip(ap, tw["E"]):
                bound_r += (pi @ np.abs(Eq)) / one.n
            bound_r = r * (bound_r + np.abs(nu) + np.abs(xi))
    return np.concatenate([rho_d, rho_r]), np.concatenate([bound_d, bound_r])


def model_of(one: OneLevel) -> FirstOrderModel:
    """A one-level model as a :class:`FirstOrderModel` (ReLU kinks ``gamma_j max(a_j.d, 0)``, the
    multi-piece loss groups as groups), so that its concave generators can be branched on."""
    J, p = one.n_generators, one.g.size
    C = one.multi[0][0].shape[0] if one.multi else 1
    G = sp.vstack([Gq for Gq, _ in one.multi], format="csr") if one.multi else sp.csr_matrix((0, p))
    groups = [(q, S) for q, (_, S) in enumerate(one.multi)]
    tw = one.absolute

    def twin():
        return model_of(tw)

    return FirstOrderModel(g=one.g, A=sp.csr_matrix(one.a), M=sp.csr_matrix((J, J)), c=np.asarray(one.gamma, float),
                           s_pos=1.0, s_neg=0.0, lk_sample=np.arange(len(one.multi)), G=G,
                           N=sp.csr_matrix((G.shape[0], J)), groups=groups, n=one.n, n_outputs=C,
                           kink_ids=np.arange(J), twin_fn=twin if tw is not None else None, rounding=one.rounding)
