"""Least-squares solves with the rows of the held kinks and the gauge (``B B'``, block by block)."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from .limits import DENSE_BLOCK, DENSE_ENTRIES, DENSE_FILL, LARGE_P


class Projector:
    """Least-squares solves with ``B B'`` for sparse rows ``B`` (held kink rows, then gauge rows).

    ``B B'`` is split into connected blocks; each block up to :data:`DENSE_BLOCK` rows is factored
    by pivoted Cholesky (LAPACK ``dpstrf``), which also finds rows linearly dependent on the others
    (LIKQ fails; e.g. samples with identical outputs): a small such block gets the pseudo-inverse
    (least-norm multipliers), a large one the basic solution on its independent rows; the dependent
    constraints stay held either way. Small blocks are inverted and gathered into one sparse
    block-diagonal matrix (one product per solve), larger ones keep their Cholesky factor, blocks
    beyond :data:`DENSE_BLOCK` get a sparse LU (SuperLU). ``project(v) = v - B' (B B')^+ B v`` is
    applied twice (one refinement), so its result is orthogonal to the rows to rounding.

    Tried and not kept (the polish's end points move at rounding level, and trained checkpoints
    whose saddles or minima were certified at the old end points -- ``bc_logistic_wd_adam``,
    ``iris_vv_hinge_wd_adam``, ``bc_hinge_wd_adam`` -- ended undecided): solving with ``dpstrf``'s
    factor in pivot order instead of factoring again (half the factoring time). A dense Gram
    product for rows 10% filled or more (4x faster than the sparse one on deep nets' rows) is used
    on large networks only (:data:`~.limits.LARGE_P` parameters or more), where the polish had not
    converged within its budget anyway.
    """

    SMALL = 256   # blocks up to this size are inverted explicitly

    def __init__(self, B: sp.csr_matrix, *, gram: np.ndarray | None = None, rel_rank: float = 1e-12):
        self.B = B.tocsr()
        self.BT = self.B.T.tocsr()
        m = B.shape[0]
        self.m = m
        self.blocks = []
        self.small = None
        self.dependent = np.zeros(m, dtype=bool)
        if m == 0:
            return
        # B B' (given when the caller computes it from the rows' structure: deep rows are dense).
        # On a large network, rows that are mostly nonzero (deep kinks, loss ties: every weight of the
        # paths to a sample) are multiplied densely: a sparse product spends its time on index
        # bookkeeping there (29 of 63 s of digits_ce_deep_sgd's polish were csr_matmat)
        if gram is None and B.shape[1] >= LARGE_P and m <= DENSE_BLOCK \
                and self.B.nnz >= DENSE_FILL * m * B.shape[1] and m * B.shape[1] <= DENSE_ENTRIES:
            Bd = self.B.toarray()
            gram = Bd @ Bd.T
        G = sp.csr_matrix(gram) if gram is not None else (self.B @ self.BT).tocsr()
        n_comp, labels = connected_components(G, directed=False)
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(n_comp + 1))
        Gd = (np.asarray(gram) if gram is not None else G.toarray()) if m <= DENSE_BLOCK else None
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
                # too large to factor densely: sparse LU of B B' with a tiny shift (dependent rows
                # then get a small least-norm share instead of a singular pivot)
                from scipy.sparse.linalg import splu
                Gs = Gp[a:b, a:b].tocsc()
                shift = 1e-12 * float(Gs.diagonal().max(initial=1.0))
                self.blocks.append(("lu", idx, splu((Gs + shift * sp.identity(idx.size, format="csc")).tocsc())))
                continue
            Gc = Gd[np.ix_(idx, idx)] if Gd is not None else Gp[a:b, a:b].toarray()
            top = float(np.diag(Gc).max(initial=0.0))
            if top <= 0:
                self.dependent[idx] = True
                continue
            _, piv, rank, _ = sla.lapack.dpstrf(Gc, lower=1, tol=rel_rank * top)
            rows = idx
            fac = None
            if rank < idx.size and idx.size > self.SMALL:
                # many dependent rows in a large block: the basic solution on the independent ones
                # (pivoted Cholesky), 0 for the dependent ones (an eigen-decomposition costs 10x more)
                keep = np.sort(piv[:rank] - 1)
                mask = np.ones(idx.size, dtype=bool)
                mask[keep] = False
                self.dependent[idx[mask]] = True
                rows = idx[keep]
                fac = sla.cho_factor(Gc[np.ix_(keep, keep)], lower=True, check_finite=False)
            elif rank < idx.size:
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
        """``y = (B B')^+ rhs`` (the least-norm solution when rows are dependent; ``rhs`` (m,) or (m, k))."""
        y = self.small @ rhs if self.small is not None else np.zeros(rhs.shape)
        for kind, idx, fac in self.blocks:
            r = rhs[idx]
            if kind == "chol":
                y[idx] = sla.cho_solve(fac, r, check_finite=False)
            elif kind == "dense":
                y[idx] = fac @ r
            else:
                y[idx] = fac.solve(r)
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
