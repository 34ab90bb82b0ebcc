"""First-order formulations (DESIGN.md §3): is ``L'(theta; d) >= 0`` for every ``d``?

``L'(theta; .)`` is positively homogeneous, so it is non-negative everywhere iff its minimum over
the box ``||d||_inf <= 1`` is 0. With one level of kinks it reads::

    L'(theta; d) = g . d + sum_j gamma_j max(a_j . d, 0) + (1/n) sum_q max_a S_qa . (G_q d)

(:class:`OneLevel`; unit kinks give ``gamma_j = c_j (s_pos - s_neg)``, two-piece loss kinks
``gamma_j = 1/n``, ties of three or more classes the last sum). Then:

* all ``gamma_j >= 0``: it is convex and **one LP** decides (:func:`descent_lp`); its multiplier
  certificate ``0 = g + sum_j gamma_j lambda_j a_j + (1/n) sum_q G_q' S_q' pi_q`` with
  ``lambda in [0, 1]``, ``pi_q`` in a simplex comes from the min-norm problem :func:`clarke_qp`;
* some ``gamma_j < 0`` (concave) or kinks nested in kinks: a **MILP** with one binary per such
  kink (:func:`descent_milp`), big-M from interval bounds over the box, as in MIP verifiers;
* the Clarke measure ``dist(0, conv of piece gradients)`` is :func:`clarke_qp`'s optimum (one
  level only): a diagnostic, never the verdict — with concave kinks it can be 0 at a point with a
  descent direction.

Nothing here imports a solver; the problems are plain data (:mod:`certify.problems`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..problems import LinearProgram, MixedIntegerProgram, QuadraticProgram
from ..tangent import FirstOrderModel


@dataclass(frozen=True, eq=False)
class OneLevel:
    """``L'(theta; d) = g.d + sum_j gamma_j max(a_j.d, 0) + (1/n) sum_q max_a S_qa.(G_q d)``.

    ``source[j]`` says where generator ``j`` comes from: ``("unit", k)`` for row ``k`` of the
    :class:`FirstOrderModel` or ``("loss", group)`` for a two-piece loss kink.

    ``twin`` is the *absolute twin* (a OneLevel with non-negative ``g``, ``a``, ``gamma`` and
    ``|S|``; or a callable building it): ``rounding`` times it bounds the rounding errors of this
    one's coefficients (:mod:`certify.rounding`), which is what "zero up to rounding" is measured
    against.
    """

    g: np.ndarray
    a: sp.csr_matrix
    gamma: np.ndarray
    multi: list  # (G_q (C, p) csr, S_q (m, C))
    n: int
    source: list
    twin: object = None
    rounding: float = 0.0

    @property
    def absolute(self) -> "OneLevel | None":
        tw = self.twin
        if callable(tw):
            tw = tw()
            object.__setattr__(self, "twin", tw)
        return tw

    @property
    def g_scale(self):
        """The absolute twin's ``g``: the size of the terms each entry of ``g`` is computed from."""
        tw = self.absolute
        return None if tw is None else tw.g

    @property
    def n_generators(self) -> int:
        return self.a.shape[0]

    @property
    def convex(self) -> bool:
        return bool(np.all(self.gamma >= 0))

    def evaluate(self, d: np.ndarray) -> float:
        val = float(self.g @ d + self.gamma @ np.maximum(self.a @ d, 0.0))
        for G, S in self.multi:
            val += float(np.max(S @ (G @ d))) / self.n
        return val

    def subgradient(self, lam: np.ndarray, pis: list) -> np.ndarray:
        """``g + a' (gamma * lam) + (1/n) sum_q G_q' S_q' pi_q``: an element of the subdifferential."""
        out = self.g + self.a.T @ (self.gamma * lam)
        for (G, S), pi in zip(self.multi, pis):
            out = out + (G.T @ (S.T @ pi)) / self.n
        return np.asarray(out).ravel()

    def residual_bound(self, lam: np.ndarray, pis: list) -> np.ndarray:
        """Coordinatewise bound on the rounding error of :meth:`subgradient` (0 without a twin)."""
        tw = self.absolute
        if tw is None:
            return np.zeros_like(self.g)
        return self.rounding * tw.subgradient(np.abs(lam), [np.abs(p) for p in pis])

    def size(self) -> float:
        """Sum of the absolute coefficients over the unit box."""
        s = float(np.abs(self.g).sum())
        if self.n_generators:
            s += float(np.abs(self.gamma) @ np.asarray(abs(self.a).sum(axis=1)).ravel())
        for G, S in self.multi:
            s += float(np.abs(S).max(axis=0) @ np.asarray(abs(G).sum(axis=1)).ravel()) / self.n
        return s

    def scale(self) -> float:
        """The size of the terms ``L'`` is computed from (the twin's size, else this one's)."""
        tw = self.absolute
        return tw.size() if tw is not None else self.size()

    def tolerance(self) -> float:
        """Rounding-error bound of :meth:`evaluate` over the unit box."""
        tw = self.absolute
        return self.rounding * tw.size() if tw is not None else 0.0


def one_level(fo: FirstOrderModel) -> OneLevel:
    """Rewrite a non-nested :class:`FirstOrderModel` with one generator per kink."""
    if fo.nested:
        raise ValueError("one_level needs a model without nested kinks")
    gamma_units = fo.c * (fo.s_pos - fo.s_neg)
    g = fo.g + fo.A.T @ (fo.c * fo.s_neg)
    rows = [fo.A]
    gammas = [gamma_units]
    source = [("unit", int(k)) for k in range(fo.n_kinks)]
    multi = []
    C = fo.n_outputs
    extra_rows = []
    for q, (s, S) in enumerate(fo.groups):
        Gs = fo.G[s * C:(s + 1) * C]
        g = g + (Gs.T @ S[0]) / fo.n
        if S.shape[0] == 2:
            extra_rows.append(sp.csr_matrix(np.asarray(Gs.T @ (S[1] - S[0])).reshape(1, -1)))
            source.append(("loss", q))
        elif S.shape[0] > 2:
            multi.append((Gs, S - S[0]))
    if extra_rows:
        rows.append(sp.vstack(extra_rows, format="csr"))
        gammas.append(np.full(len(extra_rows), 1.0 / fo.n))
    a = sp.vstack(rows, format="csr") if rows else sp.csr_matrix((0, fo.n_params))
    twin = (lambda: _one_level_twin(fo)) if fo.twin_fn is not None else None
    return OneLevel(g=np.asarray(g).ravel(), a=a, gamma=np.concatenate(gammas), multi=multi, n=fo.n,
                    source=source, twin=twin, rounding=fo.rounding)


def _one_level_twin(fo: FirstOrderModel) -> OneLevel:
    """The absolute twin of :func:`one_level` (the loss pieces' slopes read from the real model)."""
    T = fo.absolute
    g = T.g + T.A.T @ (T.c * abs(fo.s_neg))
    rows, gammas, multi = [T.A], [T.c * abs(fo.s_pos - fo.s_neg)], []
    C = fo.n_outputs
    extra = []
    for (s, S), (_, S_abs) in zip(fo.groups, T.groups):
        Gs = T.G[s * C:(s + 1) * C]
        g = g + (Gs.T @ S_abs[0]) / fo.n
        if S.shape[0] == 2:
            extra.append(sp.csr_matrix(np.asarray(Gs.T @ np.abs(S[1] - S[0])).reshape(1, -1)))
        elif S.shape[0] > 2:
            multi.append((Gs, np.abs(S - S[0])))
    if extra:
        rows.append(sp.vstack(extra, format="csr"))
        gammas.append(np.full(len(extra), 1.0 / fo.n))
    a = sp.vstack(rows, format="csr") if rows else sp.csr_matrix((0, fo.n_params))
    return OneLevel(g=np.asarray(g).ravel(), a=a, gamma=np.concatenate(gammas), multi=multi, n=fo.n,
                    source=[])


# ---------------------------------------------------------------------------- identical rows
def identical_rows(a: sp.csr_matrix) -> np.ndarray:
    """``group[j]``: the index of the first row of ``a`` bit-identical to row ``j`` (groups in order)."""
    a = sp.csr_matrix(a, copy=True)
    a.eliminate_zeros()
    a.sort_indices()
    seen: dict = {}
    group = np.empty(a.shape[0], dtype=np.int64)
    for j in range(a.shape[0]):
        lo, hi = a.indptr[j], a.indptr[j + 1]
        key = (a.indices[lo:hi].tobytes(), a.data[lo:hi].tobytes())
        group[j] = seen.setdefault(key, len(seen))
    return group


def merge_identical(one: OneLevel) -> tuple[OneLevel, np.ndarray]:
    """The same ``L'(theta; .)`` with generators on bit-identical rows merged: ``(merged, group)``.

    ``sum_{j in G} gamma_j max(a.d, 0) = (sum_{j in G} gamma_j) max(a.d, 0)`` exactly, so a concave
    kink sharing its row with stronger convex ones (duplicated samples: the usual way LIKQ fails at a
    minimum) is no concave kink at all. ``group[j]`` is generator ``j``'s merged index; multipliers
    of the merged model map back as ``lambda[j] = lambda_merged[group[j]]``, and such a certificate
    is valid for the original generators (:func:`certify.checks.check_multipliers` re-checks the
    groups). The merged absolute twin sums the twins' coefficients the same way.
    """
    J = one.n_generators
    if J == 0:
        return one, np.zeros(0, dtype=np.int64)
    group = identical_rows(one.a)
    m = int(group.max()) + 1
    if m == J:
        return one, group
    first = np.full(m, J)
    np.minimum.at(first, group, np.arange(J))
    gamma = np.zeros(m)
    np.add.at(gamma, group, one.gamma)

    def twin():
        tw = one.absolute
        if tw is None:
            return None
        tg = np.zeros(m)
        np.add.at(tg, group, tw.gamma)
        return OneLevel(g=tw.g, a=tw.a[first], gamma=tg, multi=tw.multi, n=tw.n, source=[])

    merged = OneLevel(g=one.g, a=one.a[first], gamma=gamma, multi=one.multi, n=one.n,
                      source=[one.source[j] for j in first], twin=twin if one.twin is not None else None,
                      rounding=one.rounding)
    return merged, group


def merge_reaching(one: OneLevel) -> tuple[OneLevel, np.ndarray, np.ndarray]:
    """:func:`merge_identical`, without the merged generators whose coefficient is 0 (exactly, or a
    negative one within its rounding bound): they do not reach ``L'``.

    Returns ``(merged, group, same)``: ``group[j]`` is generator ``j``'s index in ``merged`` (-1 when
    dropped), ``same[j]`` its class of identical rows (what a certificate's groups are made of)."""
    merged, group = merge_identical(one)
    if not merged.n_generators:
        return merged, group, group
    zero = merged.gamma == 0
    if np.any(merged.gamma < 0):
        tw = merged.absolute
        if tw is not None:
            zero |= (merged.gamma < 0) & (-merged.gamma <= merged.rounding * tw.gamma)
    if not np.any(zero):
        return merged, group, group
    keep = np.nonzero(~zero)[0]
    new_id = np.full(merged.n_generators, -1, dtype=np.int64)
    new_id[keep] = np.arange(keep.size)
    tw_cache = {}

    def twin():
        if "tw" not in tw_cache:
            tw = merged.absolute
            tw_cache["tw"] = None if tw is None else OneLevel(g=tw.g, a=tw.a[keep], gamma=tw.gamma[keep],
                                                              multi=tw.multi, n=tw.n, source=[])
        return tw_cache["tw"]

    kept = OneLevel(g=merged.g, a=merged.a[keep], gamma=merged.gamma[keep], multi=merged.multi, n=merged.n,
                    source=[merged.source[j] for j in keep], twin=twin if merged.twin is not None else None,
                    rounding=merged.rounding)
    return kept, new_id[group], group


# ---------------------------------------------------------------------------- LP
def descent_lp(one: OneLevel) -> LinearProgram:
    """``min g.d + gamma.r + (1/n) sum t`` s.t. ``r >= a d, r >= 0, t_q >= S_qa G_q d, |d| <= 1``.

    Columns: ``d`` (p), ``r`` (J), ``t`` (one per multi-piece group). Needs ``gamma >= 0``.
    """
    if not one.convex:
        raise ValueError("descent_lp needs convex kinks (gamma >= 0)")
    p, J, Q = one.g.size, one.n_generators, len(one.multi)
    blocks = [[-one.a, sp.identity(J, format="csr"), sp.csr_matrix((J, Q))]]
    for q, (G, S) in enumerate(one.multi):
        m = S.shape[0]
        tcol = sp.csr_matrix((np.ones(m), (np.arange(m), np.full(m, q))), shape=(m, Q))
        blocks.append([-sp.csr_matrix(S) @ G, sp.csr_matrix((m, J)), tcol])
    A = sp.bmat(blocks, format="csr")
    cost = np.concatenate([one.g, one.gamma, np.full(Q, 1.0 / one.n)])
    lower = np.concatenate([-np.ones(p), np.zeros(J), np.full(Q, -np.inf)])
    upper = np.concatenate([np.ones(p), np.full(J, np.inf), np.full(Q, np.inf)])
    return LinearProgram(c=cost, A=A, row_lower=np.zeros(A.shape[0]), row_upper=np.full(A.shape[0], np.inf),
                         col_lower=lower, col_upper=upper)


# ---------------------------------------------------------------------------- Clarke QP
def clarke_qp(one: OneLevel) -> QuadraticProgram:
    """Min-norm element of ``g + sum_j gamma_j [0,1] a_j + (1/n) sum_q G_q' S_q' simplex``.

    Variables ``lambda`` (J, box [0, 1]) and ``pi`` (simplex per multi group); objective
    ``1/2 ||W x + g||^2`` with the Gram matrix ``W'W`` (PSD by construction) as Hessian.
    For convex kinks this set is ``∂L(theta)`` and a zero optimum certifies d-stationarity.
    """
    cols = [one.a.T.multiply(one.gamma[None, :]).tocsc()] if one.n_generators else []
    for G, S in one.multi:
        cols.append(sp.csc_matrix(G.T @ S.T) / one.n)
    p = one.g.size
    W = sp.hstack(cols, format="csc") if cols else sp.csc_matrix((p, 0))
    if W.shape[1] and W.nnz > 0.1 * W.shape[0] * W.shape[1] and W.shape[0] * W.shape[1] <= 2e7:
        Wd = W.toarray()       # dense-ish generators: one BLAS product is far faster than sparse
        Q = sp.csc_matrix(Wd.T @ Wd)
    else:
        Q = (W.T @ W).tocsc()
    Q = 0.5 * (Q + Q.T)
    c = np.asarray(W.T @ one.g).ravel()
    J = one.n_generators
    sizes = [S.shape[0] for _, S in one.multi]
    n_var = J + sum(sizes)
    rows, cols_idx = [], []
    pos = J
    for q, m in enumerate(sizes):
        rows += [q] * m
        cols_idx += list(range(pos, pos + m))
        pos += m
    A = sp.csr_matrix((np.ones(len(rows)), (rows, cols_idx)), shape=(len(sizes), n_var))
    return QuadraticProgram(c=c, A=A, row_lower=np.ones(len(sizes)), row_upper=np.ones(len(sizes)),
                            col_lower=np.zeros(n_var), col_upper=np.ones(n_var), Q=Q,
                            offset=0.5 * float(one.g @ one.g))


def split_multipliers(one: OneLevel, x: np.ndarray) -> tuple[np.ndarray, list]:
    """``(lambda, [pi_q])`` from a :func:`clarke_qp` solution, clipped to their sets."""
    J = one.n_generators
    lam = np.clip(x[:J], 0.0, 1.0)
    pis, pos = [], J
    for _, S in one.multi:
        m = S.shape[0]
        pi = np.clip(x[pos:pos + m], 0.0, None)
        pi = pi / pi.sum() if pi.sum() > 0 else np.full(m, 1.0 / m)
        pis.append(pi)
        pos += m
    return lam, pis


# ---------------------------------------------------------------------------- MILP
def descent_milp(fo: FirstOrderModel) -> tuple[MixedIntegerProgram, dict]:
    """Exact minimisation of the tangent network over the box, with binaries where needed.

    Columns: ``d`` (p); per unit kink ``v_k`` (tangent pre-activation) and ``r_k = max(v_k, 0)``;
    one binary ``beta_k`` per kink that is concave or feeds another kink; ``t_q`` per kinked loss
    group. ``u_k = s_neg v_k + (s_pos - s_neg) r_k``. Big-M bounds ``|v_k| <= B_k`` come from
    interval arithmetic over ``|d| <= 1`` (valid, so the MILP is exact).
    Returns the program and the column layout.
    """
    p, K = fo.n_params, fo.n_kinks
    s_pos, s_neg = fo.s_pos, fo.s_neg
    gam = s_pos - s_neg
    kind = fo.kink_kind()
    binary = np.nonzero(kind < 0)[0]
    nb = binary.size
    C = fo.n_outputs
    kinked = [(q, s, S) for q, (s, S) in enumerate(fo.groups) if S.shape[0] >= 2]
    Qn = len(kinked)
    # bounds on v by interval arithmetic, in kink order (M is lower-triangular by layer)
    Arow = np.asarray(abs(fo.A).sum(axis=1)).ravel()
    B = Arow.copy()
    if fo.M.nnz:
        Mabs = abs(fo.M).tocsr()
        umax = max(abs(s_pos), abs(s_neg))
        for k in range(K):
            lo, hi = Mabs.indptr[k], Mabs.indptr[k + 1]
            if hi > lo:
                B[k] = Arow[k] + float(Mabs.data[lo:hi] @ (umax * B[Mabs.indices[lo:hi]]))
    B = np.maximum(B, 1e-12) * (1 + 1e-9) + 1e-12
    # column layout
    iv, ir, ib, it = p, p + K, p + 2 * K, p + 2 * K + nb
    n_col = it + Qn
    cost = np.zeros(n_col)
    cost[:p] = fo.g
    cost[iv:iv + K] = fo.c * s_neg
    cost[ir:ir + K] = fo.c * gam
    cost[it:] = 1.0 / fo.n
    # u as a linear map of the columns: u = U @ x with U = [0, s_neg I, gam I, 0, 0]
    U = sp.hstack([sp.csr_matrix((K, p)), s_neg * sp.identity(K), gam * sp.identity(K),
                   sp.csr_matrix((K, nb + Qn))], format="csr")
    # df of loss-kink samples as a linear map of the columns: G d + N u
    DF = sp.hstack([fo.G, sp.csr_matrix((fo.G.shape[0], n_col - p))], format="csr") + fo.N @ U
    # single-piece groups are linear: add (1/n) S.df to the cost
    for s, S in fo.groups:
        if S.shape[0] == 1:
            cost += np.asarray(DF[s * C:(s + 1) * C].T @ S[0]).ravel() / fo.n
    rows, lo, hi = [], [], []
    # v_k - A_k d - M_k u = 0
    E = sp.hstack([-fo.A, sp.identity(K), sp.csr_matrix((K, n_col - p - K))], format="csr") - fo.M @ U
    rows.append(E); lo.append(np.zeros(K)); hi.append(np.zeros(K))
    # r_k - v_k >= 0
    R1 = sp.hstack([sp.csr_matrix((K, p)), -sp.identity(K), sp.identity(K), sp.csr_matrix((K, nb + Qn))],
                   format="csr")
    rows.append(R1); lo.append(np.zeros(K)); hi.append(np.full(K, np.inf))
    if nb:
        sel = sp.csr_matrix((np.ones(nb), (np.arange(nb), binary)), shape=(nb, K))
        Bb = B[binary]
        # r - v + B beta <= B     (beta = 1 -> r = v)
        R2 = sp.hstack([sp.csr_matrix((nb, p)), -sel, sel, sp.diags(Bb), sp.csr_matrix((nb, Qn))], format="csr")
        rows.append(R2); lo.append(np.full(nb, -np.inf)); hi.append(Bb)
        # r - B beta <= 0         (beta = 0 -> r = 0)
        R3 = sp.hstack([sp.csr_matrix((nb, p + K)), sel, sp.diags(-Bb), sp.csr_matrix((nb, Qn))], format="csr")
        rows.append(R3); lo.append(np.full(nb, -np.inf)); hi.append(np.zeros(nb))
    for j, (q, s, S) in enumerate(kinked):
        m = S.shape[0]
        tcol = sp.csr_matrix((np.ones(m), (np.arange(m), np.full(m, it + j))), shape=(m, n_col))
        rows.append(tcol - sp.csr_matrix(S) @ DF[s * C:(s + 1) * C])
        lo.append(np.zeros(m)); hi.append(np.full(m, np.inf))
    A = sp.vstack(rows, format="csr")
    col_lower = np.concatenate([-np.ones(p), -B, np.zeros(K), np.zeros(nb), np.full(Qn, -np.inf)])
    col_upper = np.concatenate([np.ones(p), B, B, np.ones(nb), np.full(Qn, np.inf)])
    integ = np.zeros(n_col, dtype=np.int8)
    integ[ib:ib + nb] = 1
    prog = MixedIntegerProgram(c=cost, A=A, row_lower=np.concatenate(lo), row_upper=np.concatenate(hi),
                               col_lower=col_lower, col_upper=col_upper, integrality=integ)
    return prog, {"d": slice(0, p), "v": slice(iv, iv + K), "r": slice(ir, ir + K), "n_binary": nb,
                  "big_m_max": float(B.max(initial=0.0))}


def one_level_milp(one: OneLevel) -> tuple[MixedIntegerProgram, dict]:
    """MILP for a one-level model with concave generators (``gamma_j < 0``): one binary each.

    Columns ``d`` (p), ``r`` (J) with ``r_j = max(a_j d, 0)``, binaries for concave ``j``, ``t``
    per multi-piece group. Big-M ``B_j = ||a_j||_1`` bounds ``|a_j d|`` on the box exactly.
    """
    p, J, Q = one.g.size, one.n_generators, len(one.multi)
    concave = np.nonzero(one.gamma < 0)[0]
    nb = concave.size
    B = np.asarray(abs(one.a).sum(axis=1)).ravel() * (1 + 1e-9) + 1e-12
    n_col = p + J + nb + Q
    I_J = sp.identity(J, format="csr")
    rows = [sp.hstack([-one.a, I_J, sp.csr_matrix((J, nb + Q))], format="csr")]  # r - a d >= 0
    lo, hi = [np.zeros(J)], [np.full(J, np.inf)]
    if nb:
        sel = sp.csr_matrix((np.ones(nb), (np.arange(nb), concave)), shape=(nb, J))
        Bb = B[concave]
        rows.append(sp.hstack([-(sel @ one.a), sel, sp.diags(Bb), sp.csr_matrix((nb, Q))], format="csr"))
        lo.append(np.full(nb, -np.inf)); hi.append(Bb)                   # r - a d + B beta <= B
        rows.append(sp.hstack([sp.csr_matrix((nb, p)), sel, sp.diags(-Bb), sp.csr_matrix((nb, Q))], format="csr"))
        lo.append(np.full(nb, -np.inf)); hi.append(np.zeros(nb))         # r - B beta <= 0
    for q, (G, S) in enumerate(one.multi):
        m = S.shape[0]
        tcol = sp.csr_matrix((np.ones(m), (np.arange(m), np.full(m, q))), shape=(m, Q))
        rows.append(sp.hstack([-sp.csr_matrix(S) @ G, sp.csr_matrix((m, J + nb)), tcol], format="csr"))
        lo.append(np.zeros(m)); hi.append(np.full(m, np.inf))
    A = sp.vstack(rows, format="csr")
    cost = np.concatenate([one.g, one.gamma, np.zeros(nb), np.full(Q, 1.0 / one.n)])
    col_lower = np.concatenate([-np.ones(p), np.zeros(J), np.zeros(nb), np.full(Q, -np.inf)])
    col_upper = np.concatenate([np.ones(p), B, np.ones(nb), np.full(Q, np.inf)])
    integ = np.zeros(n_col, dtype=np.int8)
    integ[p + J:p + J + nb] = 1
    prog = MixedIntegerProgram(c=cost, A=A, row_lower=np.concatenate(lo), row_upper=np.concatenate(hi),
                               col_lower=col_lower, col_upper=col_upper, integrality=integ)
    return prog, {"d": slice(0, p), "n_binary": nb, "big_m_max": float(B.max(initial=0.0))}
