"""The methods the suite compares: certify and four baselines, all behind one interface.

Each method has a ``name``, ``applies(instance_data) -> bool`` and
``run(instance_data, budget_s) -> dict`` with at least ``verdict`` in
``{"local_min", "saddle", "not_stationary", "undecided"}`` (the runner times the call). Methods
see the built problem (:class:`Data`) and never the expected answer.

* ``certify``: :func:`certify.check` (``inconclusive`` -> ``undecided``).
* ``enumeration``: naive enumeration of all ``2^K`` pieces of ``L'(theta; .)`` for the
  first-order question, one ``scipy.optimize.linprog`` per piece (one hidden layer, scalar output,
  losses square / hinge / absolute). A piece with a negative value -> ``not_stationary``; all pieces
  non-negative -> d-stationary, which is a local minimum when every output weight is non-zero
  (REFERENCES A4.5-1, the cell-convexity theorem), else ``undecided``. Capped at ``max_pieces`` or
  the budget: the time for all ``2^K`` pieces is then extrapolated from the mean time per piece and
  labelled ``extrapolated``.
* ``hessian_rule``: the practitioners' rule (PyHessian-style): gradient and Hessian with autograd's
  convention at kinks (:mod:`benchmarks.numerics`); ``||g|| <= 1e-6 max(1, |L|)`` and smallest
  Hessian eigenvalue ``>= -1e-8 max(1, ||H||)`` -> ``local_min``; a negative eigenvalue ->
  ``saddle``; a larger gradient -> ``not_stationary``. Dense eigenvalues up to p = 2,000, Lanczos
  (``scipy.sparse.linalg.eigsh``) beyond.
* ``gradient_sampling``: the gradient-sampling stationarity measure (Burke-Lewis-Overton, as in
  PyGRANSO): the min-norm element of the convex hull of autograd gradients at ``m`` points
  sampled in a ball of radius ``1e-4`` around theta (and theta itself), by NNLS. It has no
  local-minimum verdict: a measure ``<= 1e-6`` gives ``undecided`` (stationary), larger gives
  ``not_stationary``.
* ``sosp_check``: Yun, Sra & Jadbabaie (2019), SOSP-Check (REFERENCES A1), re-implemented for its
  own setting: one hidden layer, ReLU or leaky ReLU, scalar output, square loss, no weight decay.
  First order per unit (bounded least squares and the extreme-ray sign tests), then the
  equality-constrained QP (eigenvalues on the null space of the orbit and boundary constraints)
  and, for flat extreme rays, the inequality-constrained QPs by face enumeration. ``T2`` anywhere
  ("SOSP", not known to be a minimum) -> ``undecided``; a violated assumption (boundary rows
  linearly dependent) -> ``undecided``.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np

from . import numerics as nm

VERDICTS = ("local_min", "saddle", "not_stationary", "undecided")


@dataclass
class Data:
    """A built instance as the methods see it."""

    network: list
    X: np.ndarray
    y: np.ndarray
    activation: str
    loss: str
    weight_decay: float

    @property
    def depth(self) -> int:
        return len(self.network) - 1

    @property
    def n_out(self) -> int:
        return int(np.asarray(self.network[-1][0]).shape[0])

    @property
    def p(self) -> int:
        return nm.n_params(nm.shapes(self.network))


# ============================================================================ certify
class Certify:
    name = "certify"

    def __init__(self, time_limit: float = 60.0):
        self.time_limit = time_limit

    def applies(self, data: Data) -> bool:
        return True

    def run(self, data: Data, budget_s: float) -> dict:
        import certify
        report = certify.check(data.network, data.X, data.y, activation=data.activation, loss=data.loss,
                               weight_decay=data.weight_decay, time_limit=min(self.time_limit, budget_s))
        v = report.verdict.value
        kinks = report.kinks or {}
        out = {"verdict": "undecided" if v == "inconclusive" else v, "raw_verdict": v,
               "reason": (report.reason or "")[:300], "method_detail": (report.flags or {}).get("method"),
               "first_order_method": (report.first_order or {}).get("method"),
               "first_order_stationary": (report.first_order or {}).get("stationary"),
               **_first_order_certificate(report),
               "K_found": int(kinks.get("unit_kinks", 0) or 0) + int(kinks.get("loss_kinks", 0) or 0),
               "timings": {k: round(float(t), 6) for k, t in (report.timings or {}).items()
                           if isinstance(t, (int, float))}}
        if v in ("saddle", "not_stationary"):
            out["refutation_verified"] = bool((report.refutation or {}).get("verified"))
        return out


def _first_order_certificate(report) -> dict:
    """What the first-order claim rests on: its certificate kind (``milp_bound`` = attested by HiGHS,
    not re-checkable by ``verify``), the tree's size, and why a tree was not used."""
    cert = (report.first_order or {}).get("certificate") or {}
    out = {"first_order_certificate": cert.get("kind")}
    if cert.get("kind") == "branch_and_bound":
        out.update(tree_leaves=cert.get("n_leaves"), tree_nodes=cert.get("n_nodes"),
                   tree_full_leaves=cert.get("full_tree_leaves"))
    if cert.get("tree_not_used"):
        out["tree_not_used"] = str(cert["tree_not_used"])[:200]
    return out


# ============================================================================ naive enumeration
def _one_hidden_scalar(data: Data) -> bool:
    return data.depth == 1 and data.n_out == 1


class Enumeration:
    name = "enumeration"

    def __init__(self, max_pieces: int = 4096, tol: float = 1e-9):
        self.max_pieces = max_pieces
        self.tol = tol

    def applies(self, data: Data) -> bool:
        act = nm.parse_activation(data.activation)[0]
        return (_one_hidden_scalar(data) and data.loss in ("square", "hinge", "absolute")
                and act in ("relu", "leaky_relu", "abs", "identity"))

    def run(self, data: Data, budget_s: float) -> dict:
        t_start = time.perf_counter()
        model = PieceModel(data, self.tol)
        K = model.K
        n_pieces = 2 ** K
        done = 0
        t_pieces = 0.0
        found = None
        for sigma in itertools.product((1, -1), repeat=K):
            if done >= self.max_pieces or time.perf_counter() - t_start > budget_s:
                break
            t0 = time.perf_counter()
            value, _, g = model.lp(sigma)
            done += 1
            t_pieces += time.perf_counter() - t0
            if value is not None and value < -self.tol * max(1.0, float(np.abs(g).sum())):
                found = (sigma, value)
                break
        elapsed = time.perf_counter() - t_start
        out = {"K_found": K, "pieces_total": n_pieces, "pieces_solved": done}
        if found is not None:
            out.update(verdict="not_stationary", note=f"descent on piece {done} of {n_pieces}")
            return out
        if done == n_pieces:
            if np.all(model.a != 0):
                out.update(verdict="local_min", note="all pieces >= 0: d-stationary; A4.5-1 (no zero output weight)")
            else:
                out.update(verdict="undecided", note="d-stationary; a zero output weight (A4.5-1 does not apply)")
            return out
        per_piece = t_pieces / max(done, 1)
        setup = elapsed - t_pieces
        out.update(verdict="undecided", note=f"capped after {done} of {n_pieces} pieces",
                   extrapolated=True, time_s_extrapolated=setup + per_piece * n_pieces,
                   time_per_piece_s=per_piece)
        return out


class PieceModel:
    """The pieces of ``L'(theta; .)`` of a one-hidden-layer scalar network (float64).

    Active kinks: unit pre-activations ``|z| <= tol (|W||x| + |b|)`` of units with a non-zero
    output weight, hinge margins and absolute residuals within ``tol`` of their kink. A sign
    vector ``sigma`` picks a side of every kink: a polyhedral cone on which ``L'(theta; d)`` is
    ``g_sigma . d``; :meth:`lp` minimises it over the cone and the unit box.
    """

    def __init__(self, data: Data, tol: float = 1e-9):
        act = nm.parse_activation(data.activation)
        self.sp, self.sn = nm.slopes(act)
        (W1, b1), (W2, b2) = [(np.asarray(W, float), np.asarray(b, float)) for W, b in data.network]
        X = np.asarray(data.X, float)
        self.X = X
        n, dx = X.shape
        h = W1.shape[0]
        self.n, self.dx, self.h = n, dx, h
        a = W2[0]
        self.a = a
        self.loss = data.loss
        self.wd = data.weight_decay
        self.theta = nm.flatten(data.network)
        Y = nm.prepare_y(data.y, data.loss, 1)[:, 0]
        self.Y = Y
        z = X @ W1.T + b1
        scale = np.abs(X) @ np.abs(W1).T + np.abs(b1)
        onk = (np.abs(z) <= tol * np.maximum(scale, 1e-300)) & (act[0] != "identity")
        onk &= (a != 0)[None, :]
        self.unit_kinks = list(zip(*np.nonzero(onk)))
        O = np.where(onk, 0.0, nm.activate(z, act))
        self.O = O
        F = O @ a + b2[0]
        self.F = F
        if data.loss == "hinge":
            self.loss_kinks = list(np.nonzero(np.abs(Y * F - 1.0) <= tol * max(1.0, np.max(np.abs(F))))[0])
        elif data.loss == "absolute":
            self.loss_kinks = list(np.nonzero(np.abs(F - Y) <= tol * max(1.0, np.max(np.abs(F))))[0])
        else:
            self.loss_kinks = []
        self.K = len(self.unit_kinks) + len(self.loss_kinks)
        self.base_slope = np.where(z > 0, self.sp, self.sn)
        self.p = h * (dx + 1) + h + 1
        lk = set(int(i) for i in self.loss_kinks)
        if data.loss == "square":
            c0 = F - Y
        elif data.loss == "hinge":
            c0 = np.where(Y * F > 1, 0.0, -Y)
        else:
            c0 = np.where(F > Y, 1.0, -1.0)
        self.coef0 = np.where([i in lk for i in range(n)], 0.0, c0)

    def _jac_rows(self, S, idx):
        h, dx = self.h, self.dx
        rows = np.zeros((len(idx), self.p))
        for r, i in enumerate(idx):
            u = self.a * S[i]
            rows[r, :h * dx] = (u[:, None] * self.X[i][None, :]).ravel()
            rows[r, h * dx:h * (dx + 1)] = u
            rows[r, h * (dx + 1):h * (dx + 1) + h] = self.O[i]
            rows[r, -1] = 1.0
        return rows

    def piece(self, sigma):
        """``(g_sigma, rows)``: the piece's gradient and its cone ``rows . d >= 0``."""
        h, dx, sp, sn = self.h, self.dx, self.sp, self.sn
        S = self.base_slope.copy()
        rows = []
        nu = len(self.unit_kinks)
        for (i, j), s in zip(self.unit_kinks, sigma[:nu]):
            S[i, j] = sp if s > 0 else sn
            row = np.zeros(self.p)
            row[j * dx:(j + 1) * dx] = s * self.X[i]
            row[h * dx + j] = s
            rows.append(row)
        coef = self.coef0.copy()
        if self.loss_kinks:
            J = self._jac_rows(S, self.loss_kinks)
            for r, (i, s) in enumerate(zip(self.loss_kinks, sigma[nu:])):
                if self.loss == "hinge":      # u = -y df; s = +: u >= 0 and l' = u; s = -: u <= 0, l' = 0
                    rows.append(s * (-self.Y[i]) * J[r])
                    coef[i] = -self.Y[i] if s > 0 else 0.0
                else:                          # absolute: s = +: df >= 0, l' = df; s = -: l' = -df
                    rows.append(s * J[r])
                    coef[i] = 1.0 if s > 0 else -1.0
        u = coef[:, None] * self.a[None, :] * S
        g = np.concatenate([(u.T @ self.X).ravel(), u.sum(axis=0), coef @ self.O, [coef.sum()]]) / self.n
        if self.wd:
            g = g + self.wd * self.theta
        return g, rows

    def lp(self, sigma):
        """``(min value or None, minimiser, g_sigma)`` over the piece's cone and the unit box."""
        from scipy.optimize import linprog
        g, rows = self.piece(sigma)
        kw = {}
        if rows:
            kw = dict(A_ub=-np.array(rows), b_ub=np.zeros(len(rows)))
        res = linprog(g, bounds=[(-1.0, 1.0)] * self.p, method="highs", **kw)
        if res.status != 0:
            return None, None, g
        return float(res.fun), np.asarray(res.x), g


# ============================================================================ Hessian rule
class HessianRule:
    name = "hessian_rule"

    def __init__(self, grad_tol: float = 1e-6, eig_tol: float = 1e-8, dense_limit: int = 2000):
        self.grad_tol = grad_tol
        self.eig_tol = eig_tol
        self.dense_limit = dense_limit

    def applies(self, data: Data) -> bool:
        return True

    def run(self, data: Data, budget_s: float) -> dict:
        net = nm.AutogradNet(data.network, data.X, data.y, data.activation, data.loss, data.weight_decay)
        g = net.gradient()
        L = net.value()
        gn = float(np.linalg.norm(g))
        out = {"grad_norm": gn, "loss": L}
        if gn > self.grad_tol * max(1.0, abs(L)):
            out["verdict"] = "not_stationary"
            return out
        p = net.p
        t0 = time.perf_counter()
        if p <= self.dense_limit:
            H = np.empty((p, p))
            eye = np.eye(p)
            for k in range(p):
                H[:, k] = net.hvp(eye[k])
                if time.perf_counter() - t0 > budget_s:
                    out.update(verdict="undecided", note="budget exhausted forming the Hessian")
                    return out
            H = 0.5 * (H + H.T)
            ev = np.linalg.eigvalsh(H)
            lam_min, lam_max = float(ev[0]), float(np.max(np.abs(ev)))
        else:
            from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

            class _Budget(Exception):
                pass

            def matvec(v):
                if time.perf_counter() - t0 > budget_s:
                    raise _Budget
                return net.hvp(np.asarray(v).ravel())
            op = LinearOperator((p, p), matvec=matvec, dtype=np.float64)
            try:
                lam_max = float(abs(eigsh(op, k=1, which="LM", return_eigenvectors=False, maxiter=200, tol=1e-6)[0]))
                lam_min = float(eigsh(op, k=1, which="SA", return_eigenvectors=False, maxiter=300, tol=1e-6)[0])
            except ArpackNoConvergence:
                out.update(verdict="undecided", note="Lanczos did not converge")
                return out
            except _Budget:
                out.update(verdict="undecided", note=f"budget exhausted in Lanczos (p = {p})")
                return out
        out.update(lambda_min=lam_min, lambda_max=lam_max)
        out["verdict"] = "saddle" if lam_min < -self.eig_tol * max(1.0, lam_max) else "local_min"
        return out


# ============================================================================ gradient sampling
class GradientSampling:
    name = "gradient_sampling"

    def __init__(self, radius: float = 1e-4, tol: float = 1e-6, max_samples: int = 50, seed: int = 0):
        self.radius = radius
        self.tol = tol
        self.max_samples = max_samples
        self.seed = seed

    def applies(self, data: Data) -> bool:
        return True

    def run(self, data: Data, budget_s: float) -> dict:
        from scipy.optimize import nnls
        net = nm.AutogradNet(data.network, data.X, data.y, data.activation, data.loss, data.weight_decay)
        rng = np.random.default_rng(self.seed)
        p = net.p
        m = min(p + 1, self.max_samples)
        th = net.theta
        G = [net.gradient()]
        t0 = time.perf_counter()
        for _ in range(m):
            u = rng.standard_normal(p)
            u *= self.radius * rng.random() ** (1.0 / p) / np.linalg.norm(u)
            G.append(net.gradient(th + u))
            if time.perf_counter() - t0 > budget_s:
                break
        G = np.array(G).T                                    # p x m
        # min ||G lam|| s.t. lam >= 0, sum lam = 1: NNLS on [G; M 1^T] lam ~ [0; M]
        M = 1e3 * max(1.0, float(np.max(np.abs(G))))
        A = np.vstack([G, M * np.ones((1, G.shape[1]))])
        rhs = np.concatenate([np.zeros(p), [M]])
        lam, _ = nnls(A, rhs, maxiter=50 * G.shape[1])
        lam = lam / max(lam.sum(), 1e-300)
        measure = float(np.linalg.norm(G @ lam))
        scale = max(1.0, abs(net.value()))
        out = {"measure": measure, "samples": G.shape[1]}
        out["verdict"] = "undecided" if measure <= self.tol * scale else "not_stationary"
        if out["verdict"] == "undecided":
            out["note"] = "stationary (gradient sampling gives no minimality verdict)"
        return out


# ============================================================================ SOSP-Check
class SOSPCheck:
    """Yun, Sra & Jadbabaie (2019), Algorithm SOSP-Check, for one hidden layer and square loss."""

    name = "sosp_check"

    def __init__(self, tol_z: float = 1e-9, tol: float = 1e-9, max_flat: int = 10, dense_limit: int = 3000):
        self.tol_z = tol_z
        self.tol = tol
        self.max_flat = max_flat
        self.dense_limit = dense_limit

    def applies(self, data: Data) -> bool:
        act = nm.parse_activation(data.activation)
        return (_one_hidden_scalar(data) and data.loss == "square" and not data.weight_decay
                and act[0] in ("relu", "leaky_relu"))

    def run(self, data: Data, budget_s: float) -> dict:
        from scipy.linalg import null_space
        from scipy.optimize import lsq_linear
        t_start = time.perf_counter()
        act = nm.parse_activation(data.activation)
        sp, sn = nm.slopes(act)
        (W1, b1), (W2, b2) = [(np.asarray(W, float), np.asarray(b, float)) for W, b in data.network]
        X = np.asarray(data.X, float)
        n, dx = X.shape
        h = W1.shape[0]
        a = W2[0]
        Y = np.asarray(data.y, float).reshape(-1)
        Xb = np.concatenate([X, np.ones((n, 1))], axis=1)
        z = X @ W1.T + b1
        scale = np.abs(X) @ np.abs(W1).T + np.abs(b1)
        B = np.abs(z) <= self.tol_z * np.maximum(scale, 1e-300)
        O = np.where(B, 0.0, nm.activate(z, act))
        F = O @ a + b2[0]
        r = (F - Y) / n                                      # grad of the mean loss in f
        gscale = float(np.mean(np.abs(F - Y))) * max(1.0, float(np.max(np.abs(Xb)))) * max(1.0, float(np.max(np.abs(a))))
        gscale = max(gscale, float(np.max(np.abs(O))) * float(np.mean(np.abs(F - Y))), 1e-300)
        tol_g = self.tol * max(1.0, gscale)
        out = {"M": int(B.sum())}
        # 1. output layer
        g_out = np.concatenate([O.T @ r, [r.sum()]])
        if np.linalg.norm(g_out) > tol_g:
            out.update(verdict="not_stationary", note="step 1: output-layer gradient")
            return out
        S_off = np.where(z > 0, sp, sn)
        s_star = {}
        flat = []                                            # (k, i, sign): sign of the flat ray
        for k in range(h):
            Bk = np.nonzero(B[:, k])[0]
            off = ~B[:, k]
            Ck = (r[off] * S_off[off, k]) @ Xb[off]
            if Bk.size == 0:
                if abs(a[k]) * np.linalg.norm(Ck) > tol_g:
                    out.update(verdict="not_stationary", note=f"step 2: unit {k}")
                    return out
                continue
            if a[k] == 0:
                continue
            # 3. FO-SUBDIFF-ZERO-TEST: min_s || a_k (C_k + sum s_i r_i xb_i) ||, s in [min, max]
            A = a[k] * (r[Bk, None] * Xb[Bk]).T              # (dx+1) x M_k
            lo, hi = min(sn, sp), max(sn, sp)
            res = lsq_linear(A, -a[k] * Ck, bounds=(lo, hi), method="bvls") if lo < hi else None
            s = res.x if res is not None else np.full(Bk.size, lo)
            resid = A @ s + a[k] * Ck
            if np.linalg.norm(resid) > tol_g:
                out.update(verdict="not_stationary", note=f"step 3: unit {k} subdifferential test")
                return out
            # 4. FO-INCREASING-TEST on the 2 M_k extreme rays
            XB = Xb[Bk].T                                    # (dx+1) x M_k
            if np.linalg.matrix_rank(XB) < Bk.size:
                out.update(verdict="undecided", note=f"Assumption 2 fails at unit {k}: boundary rows dependent")
                return out
            for idx, i in enumerate(Bk):
                c = a[k] * r[i]
                plus = (sp - s[idx]) * c                     # along +v_hat (x_i . v = 1)
                minus = -(sn - s[idx]) * c                   # along -v_hat (x_i . v = -1)
                for val, sgn in ((plus, 1), (minus, -1)):
                    if val < -tol_g:
                        out.update(verdict="not_stationary", note=f"step 4: descent along an extreme ray of unit {k}")
                        return out
                    if abs(val) <= tol_g:
                        flat.append((k, int(i), sgn))
            s_star[k] = s
        # 5. SO-TEST
        p = h * (dx + 1) + h + 1
        n_flat_pts = {}
        for k, i, sgn in flat:
            n_flat_pts.setdefault((k, i), []).append(sgn)
        both = [key for key, v in n_flat_pts.items() if len(v) == 2]
        one = {key: v[0] for key, v in n_flat_pts.items() if len(v) == 1}
        out.update(L=len(flat), K_flat=len(both))
        if len(n_flat_pts) > self.max_flat:
            out.update(verdict="undecided", note=f"{len(n_flat_pts)} flat boundary points > {self.max_flat} (2^K ICQPs)")
            return out
        # parameter layout: v_k = (W1_k, b1_k) at [k*dx:(k+1)*dx] and h*dx + k; u_k = a_k at h*(dx+1)+k; c last
        iv = lambda k: np.r_[k * dx:(k + 1) * dx, h * dx + k]
        iu = lambda k: h * (dx + 1) + k

        def Q_matrix(J):
            """Quadratic form of the piece with slopes J (n x h): ||G eta||^2 / n-weighted + 2 cross terms."""
            G = np.zeros((n, p))
            Ja = J * a[None, :]
            for k in range(h):
                G[:, iv(k)] = Ja[:, k:k + 1] * Xb
                G[:, iu(k)] = O[:, k]
            G[:, -1] = 1.0
            Q = G.T @ G / n
            for k in range(h):
                bk = (r * J[:, k]) @ Xb                      # sum_i r_i J_ik xb_i (mean loss)
                Q[iu(k), iv(k)] += bk
                Q[iv(k), iu(k)] += bk
            return Q

        # constraints: orbit a_k u_k = (w_k, b_k) . v_k; boundary points held on the boundary
        def constraints(keep_all: bool, pattern: dict):
            rows = []
            for k in range(h):
                row = np.zeros(p)
                row[iu(k)] = a[k]
                row[iv(k)] -= np.concatenate([W1[k], [b1[k]]])
                rows.append(row)
            ineq = []
            for k in range(h):
                for i in np.nonzero(B[:, k])[0]:
                    key = (k, int(i))
                    row = np.zeros(p)
                    row[iv(k)] = Xb[i]
                    if keep_all or key not in n_flat_pts:
                        rows.append(row)
                    elif key in one:
                        ineq.append(one[key] * row)
                    else:
                        ineq.append(pattern[key] * row)
            return np.array(rows), (np.array(ineq) if ineq else np.zeros((0, p)))

        if p > self.dense_limit:
            out.update(verdict="undecided", note=f"p = {p} > {self.dense_limit}: dense QP tests skipped")
            return out
        J0 = np.where(B, 0.0, S_off)
        Q = Q_matrix(J0)
        qscale = max(1.0, float(np.max(np.abs(Q))))
        A_eq, _ = constraints(True, {})
        Z = null_space(A_eq)
        ev = np.linalg.eigvalsh(Z.T @ Q @ Z) if Z.size else np.array([1.0])
        tol_q = 1e-9 * qscale * p
        status = []
        if ev[0] < -tol_q:
            out.update(verdict="saddle", note="ECQP: negative curvature (T3)")
            return out
        status.append("T2" if ev[0] <= tol_q else "T1")
        if n_flat_pts:
            patterns = list(itertools.product((1, -1), repeat=len(both)))
            for pat in patterns:
                if time.perf_counter() - t_start > budget_s:
                    out.update(verdict="undecided", note="budget exhausted in the ICQPs")
                    return out
                pattern = dict(zip(both, pat))
                J = J0.copy()
                for (k, i), sgn in {**one, **pattern}.items():
                    J[i, k] = sp if sgn > 0 else sn
                Qp = Q_matrix(J)
                A_eq, Bin = constraints(False, pattern)
                st = _copositive_status(Qp, A_eq, Bin, tol_q, deadline=t_start + budget_s)
                if st == "budget":
                    out.update(verdict="undecided", note="budget exhausted in the ICQPs")
                    return out
                if st == "T3":
                    out.update(verdict="saddle", note="ICQP: negative curvature on a flat-ray cone (T3)")
                    return out
                status.append(st)
        if all(s == "T1" for s in status):
            out.update(verdict="local_min", note="all QPs strictly positive (T1)")
        else:
            out.update(verdict="undecided", note="SOSP: some QP has a zero direction (T2)")
        return out


def _copositive_status(Q, A_eq, Bin, tol, deadline=float("inf")) -> str:
    """min eta^T Q eta on {A_eq eta = 0, Bin eta >= 0}: 'T1' (> 0 off 0), 'T2' (>= 0 with a zero),
    'T3' (a negative direction), by enumerating the faces of the cone (active inequality sets)."""
    from scipy.linalg import null_space
    r = Bin.shape[0]
    zero_seen = False
    for size in range(r + 1):
        for act in itertools.combinations(range(r), size):
            if time.perf_counter() > deadline:
                return "budget"
            rows = [A_eq] + ([Bin[list(act)]] if act else [])
            M = np.vstack(rows) if rows else np.zeros((0, Q.shape[0]))
            Z = null_space(M)
            if Z.size == 0:
                continue
            w, V = np.linalg.eigh(Z.T @ Q @ Z)
            rest = [k for k in range(r) if k not in act]
            for lam, vec in zip(w, V.T):
                if lam > tol:
                    break
                eta = Z @ vec
                for s in (1.0, -1.0):
                    e = s * eta
                    if not rest or np.all(Bin[rest] @ e >= -1e-12 * np.linalg.norm(e)):
                        if lam < -tol:
                            return "T3"
                        zero_seen = True
    return "T2" if zero_seen else "T1"


METHODS = {m.name: m for m in (Certify(), Enumeration(), HessianRule(), GradientSampling(), SOSPCheck())}
