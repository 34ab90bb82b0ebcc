"""Second order where the multiplier shortcut fails: pieces, their KKT points and flat directions.

The critical-cone test of :mod:`certify.secondorder.cone` reads every piece's multipliers off the
first-order ones, which exist only for *one level of convex kinks*. Here the remaining kinks are
*branched on*: a kink is in the branch set ``B`` when it is nested (feeds or is fed by another kink
of the same sample, or feeds a loss kink), concave (``gamma_k = c_k (s_pos - s_neg) < 0``) or has a
zero coefficient. A **piece** ``sigma`` fixes a side ``sigma_k = +-1`` of every kink in ``B``; near
``theta`` the loss then equals the smooth function ``L_sigma`` (fixed slopes) plus the one-level
convex kinks left over, on the region ``{sigma_k phi_k^sigma >= 0, k in B}`` (``phi_k^sigma`` is the
pre-activation of kink ``k`` computed with the upstream kinks on their sides). Every point near
``theta`` lies in some piece, so ``theta`` is a local minimum iff it is one on every piece.

For each piece:

1. **KKT multipliers** ``lambda in [0,1]`` (convex kinks), ``pi`` (loss ties) and ``mu >= 0`` (the
   branch constraints) with ``g_sigma + sum gamma_j lambda_j a_j + ... = sum_k mu_k sigma_k r_k``,
   by bounded least squares (``scipy.optimize.lsq_linear``, BVLS); the residual is re-checked.
   They always exist at a d-stationary point: on the piece's linearised cone ``L'(theta; .)`` *is*
   the piece's one-level model, which is >= 0 there, and Farkas' lemma gives the multipliers. So
   multipliers for all ``2^|B|`` pieces are also a numpy-checkable *first-order* certificate for
   nested kinks (the MILP's bound is only attested).
2. **Critical cone and Lagrangian** as in :func:`certify.secondorder.cone.lagrangian_model`; a branch
   constraint with ``mu_k > 0`` is held at 0, one with ``mu_k = 0`` is one-sided; the Lagrangian
   Hessian includes ``-mu_k sigma_k`` times the second derivative of every switching function
   (deep ones too) through an adjoint injection.
3. **Flat directions of the piece.** A ReLU unit whose slope is 0 on some samples *in this piece*
   does not see its incoming weights there: for a first-layer unit, ``L_sigma`` is exactly
   invariant under moving ``(w_j, b_j)`` orthogonally to the inputs of the samples where the unit
   has a slope; a unit with slope 0 on every sample of the piece does not see its incoming or
   outgoing weights at all (any layer); a unit with one slope ``s`` on every sample of the piece
   has the translation ``b_l[j] += e, b_{l+1} -= s W_{l+1}[:, j] e`` (as a kink-free unit has), and
   the units with one common slope in a layer are acted on by ``GL``: ``W_l[U] -> A W_l[U]``,
   ``b_l[U] -> A b_l[U]``, ``W_{l+1}[:, U] -> W_{l+1}[:, U] A^-1`` (a linear layer's symmetry). The constraints of that unit's (dead-side) kinks are the
   only ones that move; when their multipliers are 0 they are dropped (a larger region: a minimum
   there is one on the piece), the relaxed problem is invariant, and the second-order test runs
   on the slice orthogonal to those directions (as for the rescaling symmetries). Without this a
   point like ``nested_double_kink`` (tests/reference) has a zero-curvature direction on a piece
   and no second-order test could ever certify it (even with it, two of that point's pieces keep an
   exactly flat valley that is no symmetry; :mod:`certify.secondorder.output_order` decides it).
4. **Curvature** on every face of the cone (:func:`certify.secondorder.cone.cone_curvature`).

All pieces positive -> ``local_min``; a negative curvature -> a second-order curve, kept only with
a verified decrease -> ``saddle``; anything else -> undecided with the reason.

Why the pieces are listed, not searched with LP pruning (DESIGN.md §4): pruning a sign whose
linearised region lies in the face ``phi_k = 0`` is unsound when the region is curved (for
``phi_1 = x``, ``phi_2 = -x + y^2`` the piece ``{0 <= x <= y^2}`` has an interior, but a linearised
cone inside ``{dx = 0}``, and its loss differs from its neighbour's at second order). Instead only
the kinks whose side the first-order multipliers cannot settle are branched on (one-level convex
kinks, the bulk at a trained point, never are), and at most ``2^MAX_BRANCH`` pieces are visited.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
from scipy.optimize import lsq_linear

from ..checks import Check, close, compare
from ..data import Problem
from ..formulate.first_order import OneLevel, one_level
from ..kinks import KinkStructure
from ..network import ForwardPass
from ..tangent import FirstOrderModel, first_order_model, piece_slopes, switching_rows
from .base import DENSE_P, Context, SecondOrder
from .cone import cone_curvature, cone_curve, lagrangian_model

NAME = "piece_kkt"

#: largest branch set: 2^MAX_BRANCH pieces, each with a dense Hessian on the slice
MAX_BRANCH = 8


def branch_set(problem: Problem, fwd: ForwardPass, kinks: KinkStructure) -> np.ndarray:
    """Unit kinks whose side the first-order multipliers cannot settle (see the module docstring)."""
    full = first_order_model(problem, fwd, kinks, drop_inert=False)
    K = full.n_kinks
    if K == 0:
        return np.zeros(0, dtype=np.int64)
    s_pos, s_neg = problem.network.activation.slopes
    branch = full.c * (s_pos - s_neg) <= 0
    if full.M.nnz:
        Mabs = abs(full.M)
        branch |= np.asarray(Mabs.sum(axis=1)).ravel() > 0
        branch |= np.asarray(Mabs.sum(axis=0)).ravel() > 0
    if full.N.nnz:
        branch |= np.asarray(abs(full.N).sum(axis=0)).ravel() > 0
    return np.nonzero(branch)[0].astype(np.int64)


def _descs(kinks: KinkStructure, ids) -> list:
    return [("unit", int(kinks.unit_layer[k]), int(kinks.unit_sample[k]), int(kinks.unit_index[k])) for k in ids]


def _slopes(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, branch, signs) -> list:
    s_pos, s_neg = problem.network.activation.slopes
    D = [np.array(d, dtype=np.float64) for d in piece_slopes(problem, fwd)]
    for k, sg in zip(branch, signs):
        D[int(kinks.unit_layer[k]) - 1][int(kinks.unit_sample[k]), int(kinks.unit_index[k])] = (
            s_pos if sg > 0 else s_neg)
    return D


def _branch_rows(problem, fwd, kinks_rest, D, descs, signs) -> np.ndarray:
    """Signed rows ``sigma_k grad phi_k^sigma`` of the branch kinks (upstream slopes from ``D``)."""
    p = problem.n_params
    R = np.zeros((len(descs), p))
    for pos, ((_, l, i, u), sg) in enumerate(zip(descs, signs)):
        row, _ = switching_rows(problem, fwd, D, kinks_rest, np.array([i]), l, np.array([u]))
        R[pos] = sg * row.toarray().ravel()
    return R


def _columns(one: OneLevel, R: np.ndarray) -> tuple[np.ndarray, list]:
    """Columns of ``x -> subgradient(lambda, pi) - g - R' mu`` and the block sizes."""
    cols = [(one.a.T.multiply(one.gamma[None, :])).toarray()] if one.n_generators else []
    sizes = [one.n_generators]
    for G, S in one.multi:
        cols.append(np.asarray((G.T @ S.T.astype(np.float64))) / one.n)
        sizes.append(S.shape[0])
    cols.append(-R.T)
    sizes.append(R.shape[0])
    return np.hstack(cols) if cols else np.zeros((one.g.size, 0)), sizes


def residual(one: OneLevel, R: np.ndarray, lam, pis, mu, R_abs: np.ndarray | None = None) -> tuple[float, float, bool]:
    """``(max |rho|, max bound, ok)`` for ``rho = g + ... - R' mu`` against its rounding-error bound.

    The bound is coordinatewise (``ok`` when every entry is within its own bound): the one-level
    part's absolute twin (:meth:`OneLevel.residual_bound`) plus ``rounding * R_abs' mu``.
    """
    lam = np.asarray(lam, dtype=np.float64)
    pis = [np.asarray(p_, dtype=np.float64) for p_ in pis]
    mu = np.asarray(mu, dtype=np.float64)
    rho = one.subgradient(lam, pis) - R.T @ mu
    bound = one.residual_bound(lam, pis)
    if R.size:
        bound = bound + one.rounding * (np.abs(R if R_abs is None else R_abs).T @ np.abs(mu))
    res = compare(rho, bound)
    return res.inf, res.bound, res.ok


def _solve_multipliers(one: OneLevel, R: np.ndarray):
    """Bounded least squares for ``(lambda, pi, mu)``; pi's simplex rows are weighted heavily."""
    A, sizes = _columns(one, R)
    b = -one.g
    J, m = sizes[0], sizes[-1]
    lo = np.zeros(A.shape[1])
    hi = np.concatenate([np.ones(J)] + [np.full(s, np.inf) for s in sizes[1:]])
    extra_A, extra_b = [], []
    w = 1e3 * max(float(np.abs(A).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1e-300)
    pos = J
    for s in sizes[1:-1]:
        row = np.zeros(A.shape[1])
        row[pos:pos + s] = w
        extra_A.append(row)
        extra_b.append(w)
        pos += s
    if extra_A:
        A = np.vstack([A, np.array(extra_A)])
        b = np.concatenate([b, np.array(extra_b)])
    if A.shape[1] == 0:
        return np.zeros(0), [], np.zeros(0)
    x = lsq_linear(A, b, bounds=(lo, hi), method="bvls", tol=1e-14, max_iter=50 * A.shape[1] + 100).x
    x = np.clip(x, lo, hi)
    lam = x[:J]
    pis, pos = [], J
    for s in sizes[1:-1]:
        z = x[pos:pos + s]
        pis.append(z / z.sum() if z.sum() > 0 else np.full(s, 1.0 / s))
        pos += s
    return lam, pis, x[pos:pos + m]


class Piece:
    """One piece: its one-level model, branch rows and (given or solved) multipliers."""

    def __init__(self, problem: Problem, fwd: ForwardPass, kinks: KinkStructure, branch, signs):
        self.problem, self.fwd = problem, fwd
        self.signs = [int(s) for s in signs]
        self.descs = _descs(kinks, branch)
        rest = np.setdiff1d(np.arange(kinks.n_unit), branch)
        self.kinks = kinks.subset(rest)
        self.D = _slopes(problem, fwd, kinks, branch, signs)
        self.fo: FirstOrderModel = first_order_model(problem, fwd, self.kinks, drop_inert=False, slopes=self.D)
        self.nested = self.fo.nested
        self.one = None if self.nested else one_level(self.fo)
        self.R = _branch_rows(problem, fwd, self.kinks, self.D, self.descs, self.signs)
        self._R_abs = None

    @property
    def R_abs(self) -> np.ndarray:
        """The branch rows' absolute twin (sizes of the terms they are computed from)."""
        if self._R_abs is None:
            from ..rounding import absolute_twin
            tp, tf, _ = absolute_twin(self.problem, self.fwd)
            self._R_abs = _branch_rows(tp, tf, self.kinks, [np.abs(d) for d in self.D], self.descs,
                                       [1] * len(self.descs))
        return self._R_abs

    def residual(self, lam, pis, mu) -> tuple[float, float, bool]:
        return residual(self.one, self.R, lam, pis, mu, self.R_abs)

    def solve(self):
        lam, pis, mu = _solve_multipliers(self.one, self.R)
        return self.relax(lam, pis, mu)

    def relax(self, lam, pis, mu):
        """Snap multipliers within rounding of 0 (and ``lambda`` of 1) when the residual allows it.

        A constraint can be dropped for a unit's flat directions only with a multiplier of exactly 0
        (:meth:`_flat`); BVLS leaves ~1e-17 where the true value is 0.
        """
        lam, mu = np.array(lam, dtype=np.float64), np.array(mu, dtype=np.float64)
        _, tol, _ = self.residual(lam, pis, mu)
        unit = np.array([src[0] == "unit" for src in self.one.source], dtype=bool)
        rows = np.asarray(abs(self.one.a).max(axis=1).todense()).ravel() if self.one.n_generators else np.zeros(0)
        size = np.abs(self.one.gamma) * rows
        to0 = unit & (lam <= 1e-9) & (lam * size <= tol)
        to1 = unit & (lam >= 1 - 1e-9) & ((1 - lam) * size <= tol)
        cand_mu = mu * np.abs(self.R).max(axis=1, initial=0.0) <= tol
        if not (to0.any() or to1.any() or cand_mu.any()):
            return lam, pis, mu
        lam2, mu2 = lam.copy(), mu.copy()
        lam2[to0], lam2[to1], mu2[cand_mu] = 0.0, 1.0, 0.0
        _, _, ok2 = self.residual(lam2, pis, mu2)
        return (lam2, pis, mu2) if ok2 else (lam, pis, mu)

    def model(self, lam, pis, mu) -> dict:
        """The Lagrangian model of the piece (as :func:`certify.secondorder.cone.cone_model` returns)."""
        lam = np.asarray(lam, dtype=np.float64)
        mu = np.asarray(mu, dtype=np.float64)
        model = lagrangian_model(self.problem, self.fwd, self.kinks, self.fo, self.one, lam,
                                 [np.asarray(p_, dtype=np.float64) for p_ in pis], self.D)
        E, E_desc, F, F_desc = [model["E"]], list(model["E_desc"]), [model["F"]], list(model["F_desc"])
        F_zero = [m_ == 0.0 for m_ in model["F_mult"]]   # a zero multiplier: the row may be dropped
        _, tol, _ = self.residual(lam, pis, mu)
        for pos, (desc, sg) in enumerate(zip(self.descs, self.signs)):
            _, l, i, u = desc
            model["inject"][l - 1][i, u] += -mu[pos] * sg
            # held at 0 only for a multiplier above the residual's tolerance: a one-sided row instead
            # makes the cone larger (sound for a certificate; a refutation is checked on the loss)
            if mu[pos] * float(np.abs(self.R[pos]).max(initial=0.0)) > tol:
                E.append(self.R[pos][None, :]); E_desc.append(desc)
            else:
                F.append(self.R[pos][None, :]); F_desc.append(desc); F_zero.append(mu[pos] == 0.0)
        F = np.vstack(F)
        flat, drop = self._flat(model["D"], F_desc, F_zero, E_desc)
        keep = [x for x in range(F.shape[0]) if x not in drop]
        model.update({"E": np.vstack(E), "E_desc": E_desc, "F": F[keep], "F_desc": [F_desc[x] for x in keep],
                      "inert": [], "flat": flat, "dropped": [F_desc[x] for x in sorted(drop)]})
        return model

    def _flat(self, D, F_desc, F_zero, E_desc):
        """Flat directions of the piece and the dead-side rows dropped for them (module docstring, 3)."""
        problem = self.problem
        net = problem.network
        p = net.n_params
        if problem.weight_decay or net.activation.slopes[1] != 0:
            return np.zeros((p, 0)), set()
        held = {(l, u) for _, l, _, u in (d for d in E_desc if d[0] == "unit")}
        rows_of = {}
        for x, d in enumerate(F_desc):
            if d[0] == "unit":
                rows_of.setdefault((d[1], d[3]), []).append(x)
        vecs, drop = [], set()
        for l in range(1, net.n_layers):
            W, Wn = net.weights[l - 1], net.weights[l]
            w0, b0 = net.offsets[l - 1]
            wn0, _ = net.offsets[l]
            n_in = W.shape[1]
            # units with one nonzero slope s on every sample of the piece act linearly: the group
            # GL(U) acts by W_l[U] -> A W_l[U], b_l[U] -> A b_l[U], W_{l+1}[:, U] -> W_{l+1}[:, U] A^-1
            # and keeps every later pre-activation; it moves only these units' own kink constraints
            linear = {}
            for u in range(W.shape[0]):
                col = D[l - 1][:, u]
                rows = rows_of.get((l, u), [])
                if ((l, u) not in held and col.size and col[0] != 0 and np.all(col == col[0])
                        and all(F_zero[x] for x in rows)):
                    linear.setdefault(float(col[0]), []).append(u)
            for group in linear.values():
                for u in group:
                    for u2 in group:
                        if u2 == u:
                            continue   # the diagonal is the rescaling orbit (a symmetry everywhere)
                        v = np.zeros(p)
                        v[w0 + u * n_in + np.arange(n_in)] = W[u2]
                        v[b0 + u] = net.biases[l - 1][u2]
                        v[wn0 + np.arange(Wn.shape[0]) * Wn.shape[1] + u2] = -Wn[:, u]
                        if np.any(v):
                            vecs.append(v)
                    drop.update(rows_of.get((l, u), []))
            for u in range(W.shape[0]):
                if (l, u) in held:
                    continue
                rows = rows_of.get((l, u), [])
                dead_rows = [x for x in rows if D[l - 1][F_desc[x][2], u] == 0]
                if any(not F_zero[x] for x in dead_rows):
                    continue   # a dead-side constraint with a positive multiplier: not invariant
                col = D[l - 1][:, u]
                active = np.nonzero(col != 0)[0]
                in_idx = np.concatenate([w0 + u * n_in + np.arange(n_in), [b0 + u]])
                if active.size == col.size and np.all(col == col[0]):
                    # one slope s on every sample of the piece: the translation b_l[u] += e,
                    # b_{l+1} -= s W_{l+1}[:, u] e keeps every later pre-activation; it moves this
                    # unit's own kink constraints, so all of them must have multiplier 0
                    if rows and all(F_zero[x] for x in rows):
                        _, bn0 = net.offsets[l]
                        v = np.zeros(p)
                        v[b0 + u] = 1.0
                        v[bn0 + np.arange(Wn.shape[0])] = -col[0] * Wn[:, u]
                        vecs.append(v)
                        drop.update(rows)
                    continue
                if active.size == 0:
                    out_idx = wn0 + np.arange(Wn.shape[0]) * Wn.shape[1] + u
                    for idx in np.concatenate([in_idx, out_idx]):
                        v = np.zeros(p); v[idx] = 1.0
                        vecs.append(v)
                    drop.update(dead_rows)
                else:
                    # the samples where the unit has a slope see (w_j, b_j) only through xbar_i . (w_j, b_j);
                    # deeper than layer 1 xbar_i moves with theta, so the null space is used only when
                    # xbar has full row rank (then its dimension is the same near theta: a smooth family)
                    xbar = np.hstack([self.fwd.post[l - 1][active], np.ones((active.size, 1))])
                    if l > 1 and np.linalg.matrix_rank(xbar) < active.size:
                        continue
                    N = sla.null_space(xbar)
                    if N.shape[1] == 0:
                        continue
                    for c in range(N.shape[1]):
                        v = np.zeros(p); v[in_idx] = N[:, c]
                        vecs.append(v)
                    drop.update(dead_rows)
        if not vecs:
            return np.zeros((p, 0)), set()
        return np.column_stack(vecs), drop


def piece_test(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, *, stored: list | None = None,
               time_limit: float | None = None) -> dict:
    """Run (or, with ``stored`` per-piece multipliers, re-check) the test over every piece.

    Returns a dict with ``status`` in ``{"local_min", "negative", "undecided", "error"}``, the pieces'
    results and, for ``negative``, the piece and direction of least curvature. ``time_limit`` (seconds)
    stops the search between pieces (``error``); a re-check has none.
    """
    import itertools
    import time
    from ..progress import tick
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    branch = branch_set(problem, fwd, kinks)
    m = int(branch.size)
    if m > MAX_BRANCH:
        return {"status": "error", "reason": f"{m} kinks to branch on (nested, concave or zero-coefficient) would "
                f"need 2^{m} pieces (limit 2^{MAX_BRANCH})", "branch": _descs(kinks, branch)}
    stored_by = {tuple(int(s) for s in pc["signs"]): pc for pc in (stored or [])}
    results, worst = [], None
    status = "local_min"
    reasons = []
    all_signs = list(itertools.product((1, -1), repeat=m))
    t0 = time.perf_counter()
    for n_done, signs in enumerate(all_signs):
        tick("critical cone: pieces", n_done, len(all_signs))
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            return {"status": "error", "reason": f"time limit {time_limit:g} s reached after {n_done} of "
                    f"{len(all_signs)} pieces", "branch": _descs(kinks, branch)}
        piece = Piece(problem, fwd, kinks, branch, signs)
        if piece.nested:
            return {"status": "error", "reason": "a kink left out of the branch set is still nested",
                    "branch": piece.descs}
        if stored is None:
            lam, pis, mu = piece.solve()
        else:
            pc = stored_by.get(tuple(signs))
            if pc is None:
                return {"status": "error", "reason": f"piece {list(signs)} is missing from the certificate",
                        "branch": piece.descs}
            lam = np.asarray(pc["lambda"], dtype=np.float64)
            pis = [np.asarray(p_, dtype=np.float64) for p_ in pc.get("pi", [])]
            mu = np.asarray(pc["mu"], dtype=np.float64)
            if (lam.shape != (piece.one.n_generators,) or mu.shape != (m,) or len(pis) != len(piece.one.multi)):
                return {"status": "error", "reason": f"piece {list(signs)}: multipliers of the wrong size",
                        "branch": piece.descs}
        bounds = bool(np.all(lam >= 0) and np.all(lam <= 1) and np.all(mu >= 0)
                      and all(np.all(p_ >= 0) and abs(p_.sum() - 1) <= 8 * p_.size * 1.2e-16 for p_ in pis))
        r, tol, within = piece.residual(lam, pis, mu)
        entry = {"signs": list(signs), "lambda": lam, "pi": pis, "mu": mu, "kkt_residual": r, "kkt_tolerance": tol,
                 "kkt_within_rounding": within}
        results.append(entry)
        if not bounds or not within:
            status = "undecided" if status == "local_min" else status
            reasons.append(f"piece {list(signs)}: no KKT multipliers (residual {r:.3g} beyond its rounding-error "
                           f"bound)")
            entry["min_curvature"] = None
            continue
        model = piece.model(lam, pis, mu)
        res = cone_curvature(problem, fwd, model, deadline=deadline)
        if "error" in res:
            status = "undecided" if status == "local_min" else status
            reasons.append(f"piece {list(signs)}: {res['error']}")
            entry["min_curvature"] = None
            continue
        q, ctol = res["q"], res["tolerance"]
        entry.update({"min_curvature": q if np.isfinite(q) else None, "curvature_tolerance": ctol,
                      "faces": res["faces"], "held": len(model["E_desc"]), "one_sided": len(model["F_desc"]),
                      "dropped": len(model["dropped"]), "flat": int(model["flat"].shape[1]),
                      "uncertain": res["uncertain"], "symmetry": res["symmetry"]})
        if q < -ctol and res["direction"] is not None:
            if worst is None or q < worst[0]:
                worst = (q, piece, model, res)
            status = "negative"
        elif res["uncertain"]:
            status = "undecided" if status == "local_min" else status
            reasons.append(f"piece {list(signs)}: a repeated eigenvalue at or below the tolerance on a face")
        elif not q > ctol:
            status = "undecided" if status == "local_min" else status
            reasons.append(f"piece {list(signs)}: curvature 0 ({q:.3g}) in a direction beyond symmetry and the "
                           f"piece's flat directions: higher order needed")
    tick("critical cone: pieces", len(all_signs), len(all_signs))
    out = {"status": status, "pieces": results, "branch": _descs(kinks, branch), "reasons": reasons}
    if worst is not None:
        out["worst"] = {"q": worst[0], "piece": worst[1], "model": worst[2], "result": worst[3]}
    return out


def piece_kkt_test(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, *, time_limit: float = 60.0,
                   cache: dict | None = None):
    """:func:`piece_test` as a second-order result (verdict, reason, flags, certificate, refutation)."""
    if problem.n_params > DENSE_P:
        return SecondOrder(None, "piece_kkt", reason=f"p = {problem.n_params} is above the dense limit")
    out = piece_test(problem, fwd, kinks, time_limit=time_limit)
    if cache is not None:   # read by the targeted search (certify.secondorder.search)
        cache["piece_test"] = out
    if out["status"] == "error":
        return SecondOrder(None, "piece_kkt", reason=f"piece test not applicable: {out['reason']}")
    pieces = out["pieces"]
    certificate = {"kind": "piece_kkt", "branch": out["branch"], "pieces": [
        {k: v for k, v in pc.items() if k != "symmetry"} for pc in pieces]}
    if pieces and "symmetry" in pieces[0]:
        certificate["symmetry"] = pieces[0]["symmetry"]
    n = len(pieces)
    if out["status"] == "negative":
        w = out["worst"]
        curve = cone_curve(problem, fwd, kinks, w["model"], w["result"], w["result"]["direction"])
        if curve["verified"]:
            return SecondOrder("saddle", "piece_kkt", reason=(
                f"first-order stationary (KKT multipliers on all {n} piece(s) of {len(out['branch'])} nested, "
                f"concave or zero-coefficient kink(s)), but on piece {w['piece'].signs} the Lagrangian curvature "
                f"on the critical cone is {w['q']:.3g} < 0; the loss drops by {curve['decrease']:.3g} along "
                f"theta + t d + t^2/2 e (verified)"), flags={"strict": False}, certificate=certificate,
                refutation=curve)
        return SecondOrder(None, "piece_kkt", reason=f"negative curvature {w['q']:.3g} on the critical cone of "
                           f"piece {w['piece'].signs}, but no decrease could be verified along the second-order "
                           f"curve", certificate=certificate)
    if out["status"] == "undecided":
        return SecondOrder(None, "piece_kkt", reason="; ".join(out["reasons"][:3]), certificate=certificate)
    flat = sum(pc.get("flat", 0) for pc in pieces)
    sym = certificate.get("symmetry", {})
    flat += sym.get("beyond_rescaling", 0)
    least = min((pc["min_curvature"] for pc in pieces if pc.get("min_curvature") is not None), default=None)
    return SecondOrder("local_min", "piece_kkt", reason=(
        f"KKT multipliers and positive Lagrangian curvature on the critical cone of each of the {n} piece(s) "
        f"of {len(out['branch'])} nested, concave or zero-coefficient kink(s)"
        + (f" (least curvature {least:.3g})" if least is not None else " (no critical direction)")
        + " modulo rescaling" + (" and the flat directions of units that are dead, partly dead or on one side "
                                 "in a piece" if flat else "")),
        flags={"strict": flat == 0, "flat_directions": flat > 0}, certificate=certificate)


def applies(ctx: Context) -> str | None:
    if not ctx.kinks.n_unit:
        return "no unit kink to branch on"
    return None


def run(ctx: Context) -> SecondOrder:
    return piece_kkt_test(ctx.problem, ctx.fwd, ctx.kinks, time_limit=ctx.budget(), cache=ctx.cache)


def recheck(ctx: Context, cert: dict, checks: list) -> None:
    """Every piece of the branch kinks: stored KKT multipliers close the equation (which also proves
    d-stationarity) and the Lagrangian curvature on its critical cone is positive."""
    problem, fwd, kinks = ctx.problem, ctx.fwd, ctx.kinks
    stored = cert.get("pieces") or []
    res = piece_test(problem, fwd, kinks, stored=stored)
    branch = [tuple(b) for b in cert.get("branch", [])]
    if [tuple(b) for b in res.get("branch", [])] != branch:
        checks.append(Check("piece_branch_set", False, f"the kinks to branch on are {res.get('branch')} "
                            f"(report: {branch})"))
        return
    if res["status"] == "error":
        checks.append(Check("piece_kkt", False, res["reason"]))
        return
    by_signs = {tuple(int(s) for s in pc["signs"]): pc for pc in stored}
    n_ok = 0
    for pc in res["pieces"]:
        claimed = by_signs[tuple(pc["signs"])].get("min_curvature")
        q = pc.get("min_curvature")
        name = f"piece_{''.join('+' if s > 0 else '-' for s in pc['signs']) or 'none'}"
        kkt = bool(pc.get("kkt_within_rounding"))
        if not kkt:
            checks.append(Check(name, False, f"KKT residual {pc['kkt_residual']:.3g} > {pc['kkt_tolerance']:.3g} "
                                f"(or a multiplier out of its bounds)"))
            continue
        ctol = pc.get("curvature_tolerance", 0.0)
        if q is None or claimed is None:
            agree = q is None and claimed is None and "faces" in pc   # no critical direction: both say so
        else:
            agree = close(q, claimed, max(abs(q), ctol))
        ok = agree and (q is None or q > ctol) and not pc.get("uncertain", False)
        n_ok += ok
        if not ok:
            checks.append(Check(name, False, f"least Lagrangian curvature {q} on the piece's critical cone "
                                f"(report: {claimed}), tolerance {ctol:.3g}"))
    checks.append(Check("piece_kkt", res["status"] == "local_min" and n_ok == len(res["pieces"]),
                        f"KKT multipliers (hence d-stationarity) and positive curvature on {n_ok} of "
                        f"{len(res['pieces'])} piece(s) of {len(branch)} branch kink(s)"))
