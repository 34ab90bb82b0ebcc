"""Second order: certify a local minimum or refute a saddle at a first-order stationary point.

The tests, tried in this order (DESIGN.md §4–§5, REFERENCES.md A4.5):

1. **Zero loss** — a non-negative loss at exactly 0 (checked in exact arithmetic) is a global
   minimum.
2. **Smooth cell** (no kink at all, so ``L`` is C^2 near theta): the Hessian on the complement of
   the symmetry and flat directions (positive rescaling of every hidden unit; all coordinates of
   dead units) by dense ``eigh``. Positive -> strict local minimum modulo symmetry (Morse–Bott);
   negative -> saddle, refuted along the eigenvector with a verified decrease; zero -> go on.
3. **Cell convexity, one hidden layer** (scalar output, convex loss, no weight decay): with every
   output weight ``a_j != 0`` the map ``theta -> (u_j = a_j (w_j, b_j), c)`` is a submersion and the
   loss is convex on each polyhedral piece in ``u``, so d-stationarity already proves a local
   minimum (A4.5 item 1). A unit with ``a_j = 0`` is tested by its escape functions
   ``psi_{j,s}(v)`` for ``s = +-1`` (below); all non-negative -> local minimum, one negative ->
   the line ``a_j = s t, (w_j, b_j) += t v`` (A4.5 item 2) is tried as a saddle refutation.
4. **Affine cell** (no unit kink and every hidden unit has one slope on all samples, any depth):
   the network is an affine map ``x -> M x + m`` near theta; if ``(M, m)`` minimises the convex
   affine-fit problem (a multiplier certificate), theta is a local minimum — a global one for a
   linear network (He et al.; Yun et al. Thm 1 step 1).

5. **Lanczos** (no kink, p above the dense limit): proves saddles only.
6. **Critical cone** (one level of convex kinks with first-order multipliers): the Lagrangian
   curvature on every face of the critical cone of every piece (:func:`critical_cone_test`).
7. **Pieces** (:mod:`certify.pieces`): kinks nested in kinks, concave or zero-coefficient kinks are
   branched on; every piece gets its own KKT multipliers, Lagrangian and flat directions.

Anything else ends ``inconclusive`` with the reason. Escape function of a zero-output unit ``j``
with sign ``s``: with ``r_i = l'(f_i)/n``,
``psi_{j,s}(v) = sum_{z_ij != 0} r_i h'(z_ij) xbar_i.v + sum_{z_ij = 0} r_i s h(s xbar_i.v)``.
It is the loss's directional derivative in ``u_j`` on the branch ``sign(a_j) = s``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .data import Problem
from .evaluate import exact_loss
from .formulate.first_order import OneLevel
from .kinks import KinkStructure
from .network import ForwardPass
from .refute import search_curve
from .tangent import FirstOrderModel, dense_hessian, piece_slopes

log = logging.getLogger(__name__)

#: dense Hessians are formed up to this many parameters
DENSE_P = 2500
#: relative tolerance on the smallest reduced eigenvalue (times the Frobenius norm of H)
TOL_CURVATURE = 1e-9


@dataclass
class SecondOrder:
    verdict: str | None            # "local_min", "saddle" or None (undecided)
    method: str
    reason: str = ""
    flags: dict = field(default_factory=dict)
    certificate: dict = field(default_factory=dict)
    refutation: dict | None = None
    solver_calls: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"method": self.method, "decided": self.verdict is not None, "certificate": self.certificate,
                "notes": self.notes}


def decide_second_order(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, fo: FirstOrderModel,
                        first, *, time_limit: float = 60.0) -> SecondOrder:
    """Run the second-order tests at a first-order stationary point (see the module docstring)."""
    notes = []
    zero = _zero_loss(problem)
    if zero is not None:
        return zero
    hess = None
    large = problem.n_params > DENSE_P
    if one_hidden_layer_applies(problem) is None and problem.n_params > 300:
        # the cell-convexity theorem needs no Hessian: try it before forming one (p^2 work)
        cell = one_hidden_layer_test(problem, fwd, kinks, first, time_limit=time_limit)
        if cell is not None and cell.verdict is not None:
            return cell
    if kinks.n_total == 0 and not large:
        hess = smooth_hessian_test(problem, fwd)
        if hess.verdict is not None:
            return hess
        notes.append(hess.reason)
    cell = one_hidden_layer_test(problem, fwd, kinks, first, time_limit=time_limit)
    if cell is not None:
        if hess is not None:
            cell.certificate["hessian"] = hess.certificate
        if cell.verdict is not None:
            cell.notes = notes + cell.notes
            return cell
        notes.append(cell.reason)
    aff = affine_cell_test(problem, fwd, kinks, time_limit=time_limit)
    if aff is not None:
        if aff.verdict is not None:
            aff.notes = notes + aff.notes
            return aff
        notes.append(aff.reason)
    if kinks.n_total == 0 and large:
        # above the dense limit only a saddle can be proved (a Lanczos bound is not a proof of a minimum);
        # the theorems above, which need no Hessian, were tried first
        lan = lanczos_hessian_test(problem, fwd, piece_slopes(problem, fwd), time_limit=time_limit)
        if lan.verdict is not None:
            lan.notes = notes + lan.notes
            return lan
        notes.append(lan.reason)
    if kinks.n_total:
        cone = critical_cone_test(problem, fwd, kinks, fo, first)
        if cone.verdict is not None:
            cone.notes = notes + cone.notes
            return cone
        notes.append(cone.reason)
        if kinks.n_unit:
            # nested, concave or zero-coefficient kinks, or a zero curvature a piece's flat directions
            # may explain: per-piece KKT multipliers (certify.pieces)
            from .pieces import piece_kkt_test
            pk = piece_kkt_test(problem, fwd, kinks, time_limit=time_limit)
            if pk.verdict is not None:
                pk.notes = notes + pk.notes
                return pk
            notes.append(pk.reason)
    reason = "first-order stationary, but no second-order test applies: " + "; ".join(n for n in notes if n)
    if not notes:
        reason = ("first-order stationary at a kink; the critical-cone test for this architecture "
                  "(deep or multi-output network with active kinks) is not implemented yet")
    return SecondOrder(None, "none", reason=reason, notes=notes)


# ---------------------------------------------------------------------------- zero loss
def _zero_loss(problem: Problem) -> SecondOrder | None:
    if not problem.loss.attains_zero or problem.value() != 0.0:
        return None
    from .evaluate import EXACT_BUDGET
    if not problem.loss.rational or problem.n_samples * problem.n_params > EXACT_BUDGET:
        return None
    if exact_loss(problem, problem.theta) != 0:
        return None
    return SecondOrder("local_min", "zero_loss", reason="the loss is exactly 0 (exact rational arithmetic) "
                       "and every loss is >= 0: a global minimum",
                       flags={"global": True, "spurious": False},
                       certificate={"kind": "zero_loss", "loss_exact": "0"})


# ---------------------------------------------------------------------------- smooth cell
def symmetry_basis(problem: Problem, fwd: ForwardPass) -> tuple[np.ndarray, dict]:
    """Orthonormal basis (p, r) of :func:`symmetry_vectors` (dense; for moderate p)."""
    T, counts = symmetry_vectors(problem, fwd)
    if T.shape[1] == 0:
        return np.zeros((problem.n_params, 0)), counts
    Q = sla.orth(T.toarray())
    counts = dict(counts, dimension=int(Q.shape[1]))
    return Q, counts


def symmetry_vectors(problem: Problem, fwd: ForwardPass):
    """Directions along which ``L`` is constant to all orders: rescaling orbits and dead units.

    Without weight decay: for every hidden unit the orbit tangent ``(+w_j, +b_j, -W_{l+1}[:, j])``;
    for every *dead* unit (``s_neg = 0`` and a strictly negative pre-activation on every sample)
    all of its incoming and outgoing coordinates; for every unit with one slope ``s`` on all samples
    (no kink) the *translation* ``b_l[j] += e, b_{l+1} -= s W_{l+1}[:, j] e``, which keeps every
    later pre-activation exactly. Each is the tangent of a family of loss-preserving maps (a local
    group action), so theta is a local minimum iff it is one on the slice orthogonal to them.
    Returns the vectors as the columns of a sparse matrix (p, r) and counts.
    """
    net = problem.network
    p = net.n_params
    vecs = []  # (indices, values) of sparse columns
    n_orbit = n_dead = n_shift = 0
    if problem.weight_decay:
        return sp.csc_matrix((p, 0)), {"orbits": 0, "dead_units": 0, "translations": 0}
    s_pos, s_neg = net.activation.slopes
    for l in range(1, net.n_layers):
        W, Wn = net.weights[l - 1], net.weights[l]
        w0, b0 = net.offsets[l - 1]
        wn0, _ = net.offsets[l]
        n_in = W.shape[1]
        z = fwd.pre[l - 1]
        dead = (s_neg == 0) & np.all(z < 0, axis=0)
        for j in range(W.shape[0]):
            out_idx = wn0 + np.arange(Wn.shape[0]) * Wn.shape[1] + j
            in_idx = np.concatenate([w0 + j * n_in + np.arange(n_in), [b0 + j]])
            if dead[j]:
                for idx in np.concatenate([in_idx, out_idx]):
                    vecs.append((np.array([idx]), np.array([1.0])))
                n_dead += 1
                continue
            vals = np.concatenate([W[j], [net.biases[l - 1][j]], -Wn[:, j]])
            if np.any(vals):
                vecs.append((np.concatenate([in_idx, out_idx]), vals))
                n_orbit += 1
            zj = z[:, j]
            if np.all(zj > 0) or np.all(zj < 0):
                slope = s_pos if zj[0] > 0 else s_neg
                _, bn0 = net.offsets[l]
                vecs.append((np.concatenate([[b0 + j], bn0 + np.arange(Wn.shape[0])]),
                             np.concatenate([[1.0], -slope * Wn[:, j]])))
                n_shift += 1
    counts = {"orbits": n_orbit, "dead_units": n_dead, "translations": n_shift}
    if not vecs:
        return sp.csc_matrix((p, 0)), counts
    rows = np.concatenate([i for i, _ in vecs])
    cols = np.concatenate([np.full(len(i), k) for k, (i, _) in enumerate(vecs)])
    data = np.concatenate([v for _, v in vecs])
    T = sp.csc_matrix((data, (rows, cols)), shape=(p, len(vecs)))
    return T, counts


def smooth_hessian_test(problem: Problem, fwd: ForwardPass) -> SecondOrder:
    """Hessian on the complement of the symmetry directions (no kinks: ``L`` is C^2 here)."""
    p = problem.n_params
    D = piece_slopes(problem, fwd)
    if p > DENSE_P:
        return lanczos_hessian_test(problem, fwd, D)
    Q, counts = symmetry_basis(problem, fwd)
    N = sla.null_space(Q.T) if Q.shape[1] else np.eye(p)
    H = dense_hessian(problem, fwd, D)
    H = 0.5 * (H + H.T)
    Hr = N.T @ H @ N
    Hr = 0.5 * (Hr + Hr.T)
    evals, evecs = np.linalg.eigh(Hr) if Hr.size else (np.zeros(0), np.zeros((0, 0)))
    scale = float(np.linalg.norm(H))
    tol = TOL_CURVATURE * max(scale, 1e-300)
    q = float(evals[0]) if evals.size else np.inf
    cert = {"kind": "reduced_hessian", "min_eigenvalue": q, "max_eigenvalue": float(evals[-1]) if evals.size else None,
            "tolerance": tol, "hessian_frobenius": scale, "reduced_dimension": int(N.shape[1]),
            "symmetry": counts, "n_negative": int(np.count_nonzero(evals < -tol)),
            "n_zero": int(np.count_nonzero(np.abs(evals) <= tol))}
    if q > tol:
        dead, shift = counts.get("dead_units", 0), counts.get("translations", 0)
        # strict: modulo the rescaling orbits only; dead units and translations are flat directions
        flags = {"strict": dead + shift == 0, "flat_directions": dead + shift > 0, "differentiable": True}
        what = ("a strict local minimum modulo rescaling" if dead + shift == 0 else
                f"a local minimum, strict modulo rescaling and the flat directions of {dead} dead unit(s) and "
                f"{shift} always-active unit bias translation(s)")
        return SecondOrder("local_min", "hessian", reason=f"no kink; the Hessian is positive definite "
                           f"(smallest eigenvalue {q:.3g}) on the complement of the {Q.shape[1]} symmetry/flat "
                           f"directions: {what}", flags=flags, certificate=cert)
    if q < -tol:
        d = N @ evecs[:, 0]
        d /= np.abs(d).max()
        from .kinks import find_kinks
        kinks = find_kinks(problem, fwd, 0.0)
        curve = search_curve(problem, fwd, kinks, d)
        curve["curvature"] = q
        if curve["verified"]:
            return SecondOrder("saddle", "hessian", reason=f"no kink; the Hessian has a negative eigenvalue {q:.3g} "
                               f"off the symmetry directions; the loss drops by {curve['decrease']:.3g} along its "
                               f"eigenvector (verified)", flags={"differentiable": True, "strict": False},
                               certificate=cert, refutation=curve)
        return SecondOrder(None, "hessian", reason=f"negative curvature {q:.3g} but no verified decrease",
                           certificate=cert)
    return SecondOrder(None, "hessian", reason=f"the reduced Hessian is singular ({cert['n_zero']} zero "
                       f"eigenvalue(s) beyond symmetry): second order is not decisive", certificate=cert)


def lanczos_hessian_test(problem: Problem, fwd: ForwardPass, D: list, *, max_hvp: int = 120,
                         time_limit: float = 60.0) -> SecondOrder:
    """Large p: the smallest eigenvalue of the Hessian off the symmetry directions by Lanczos.

    ``scipy.sparse.linalg.eigsh`` on Hessian-vector products, projected with the sparse symmetry
    vectors. A clearly negative Ritz value gives a direction whose curve is then proved to descend
    (its second derivative is recomputed and the decrease verified): a saddle. A non-negative
    estimate is *not* a proof of minimality (Lanczos bounds the spectrum from above only), so the
    verdict then stays open and the estimate is reported.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh, splu
    from .tangent import hessian_vector_product
    p = problem.n_params
    T, counts = symmetry_vectors(problem, fwd)
    if T.shape[1]:
        G = (T.T @ T).tocsc()
        # the vectors can be dependent (a unit's orbit and its translation coincide when its outgoing
        # weights vanish): a tiny ridge makes the projection well defined
        gram = splu(G + 1e-12 * max(float(G.diagonal().max()), 1e-300) * sp.identity(T.shape[1], format="csc"))

        def proj(v):
            return v - T @ gram.solve(np.asarray(T.T @ v).ravel())
    else:
        def proj(v):
            return v
    lg = problem.loss.gradient(fwd.output, problem.Y)
    calls = {"hvp": 0}

    import time as _time
    start = _time.perf_counter()

    class _Budget(Exception):
        pass

    def mv(v):
        calls["hvp"] += 1
        if calls["hvp"] > max_hvp or _time.perf_counter() - start > time_limit:
            raise _Budget
        v = proj(np.asarray(v, dtype=np.float64).ravel())
        return proj(hessian_vector_product(problem, fwd, D, v, lg))

    op = LinearOperator((p, p), matvec=mv, dtype=np.float64)
    v0 = proj(np.random.default_rng(0).standard_normal(p))
    try:
        big = abs(float(eigsh(op, k=1, which="LM", maxiter=max_hvp // 4, tol=1e-3, v0=v0,
                              return_eigenvectors=False)[0]))
    except ArpackNoConvergence as exc:
        big = float(np.max(np.abs(exc.eigenvalues))) if len(exc.eigenvalues) else 1.0
    except _Budget:
        big = 1.0
    try:
        w, V = eigsh(op, k=1, which="SA", maxiter=max_hvp, tol=1e-6, v0=v0)
    except ArpackNoConvergence as exc:
        w, V = exc.eigenvalues, exc.eigenvectors
    except _Budget:
        w, V = np.zeros(0), None
    cert = {"kind": "lanczos_estimate", "hvp_calls": calls["hvp"], "largest_magnitude": big, "symmetry": counts}
    if len(w) == 0:
        return SecondOrder(None, "hessian", reason=f"p = {p}: Lanczos did not converge within {max_hvp} "
                           f"Hessian-vector products / {time_limit:g} s", certificate=cert)
    q = float(w[0])
    cert["min_ritz_value"] = q
    tol = 1e-6 * max(big, 1e-300)
    if q < -tol:
        d = proj(np.asarray(V[:, 0]))
        d /= np.abs(d).max()
        from .kinks import find_kinks
        curve = search_curve(problem, fwd, find_kinks(problem, fwd, 0.0), d)
        curve["curvature"] = q
        if curve["verified"]:
            return SecondOrder("saddle", "lanczos", reason=(
                f"no kink; Lanczos finds curvature {q:.3g} off the symmetry directions (p = {p}); the loss "
                f"drops by {curve['decrease']:.3g} along the Ritz vector, a verified local descent"),
                flags={"differentiable": True, "strict": False}, certificate=cert, refutation=curve)
    return SecondOrder(None, "hessian", reason=(
        f"p = {p} is above the dense-Hessian limit ({DENSE_P}); Lanczos estimates the least curvature off "
        f"the symmetry directions at {q:.3g} ({calls['hvp']} Hessian-vector products), which is not a proof "
        f"of minimality"), certificate=cert)


# ---------------------------------------------------------------------------- one hidden layer
def one_hidden_layer_applies(problem: Problem) -> str | None:
    """Why the cell-convexity theorem does not apply (None when it does)."""
    net = problem.network
    if net.n_layers != 2:
        return f"cell convexity needs one hidden layer (this network has {net.n_layers - 1})"
    if net.n_outputs != 1:
        return f"cell convexity needs a scalar output (this network has {net.n_outputs})"
    if problem.weight_decay:
        return "cell convexity does not hold with weight decay"
    return None


def escape_model(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, j: int, s: int) -> OneLevel:
    """``psi_{j,s}`` of a zero-output unit as a one-level piecewise-linear function of ``v``."""
    X = problem.X
    n = problem.n_samples
    xbar = np.hstack([X, np.ones((n, 1))])
    r = problem.loss.gradient(fwd.output, problem.Y)[:, 0] / n
    s_pos, s_neg = problem.network.activation.slopes
    z = fwd.pre[0][:, j]
    on = kinks.masks[0][:, j] if kinks.masks else np.zeros(n, bool)
    slope = np.where(z > 0, s_pos, s_neg)
    hi, lo = (s_pos, s_neg) if s > 0 else (s_neg, s_pos)
    g = (r * np.where(on, lo, slope)) @ xbar
    idx = np.nonzero(on)[0]
    a = sp.csr_matrix(xbar[idx])
    gamma = r[idx] * (hi - lo)
    return OneLevel(g=g, a=a, gamma=gamma, multi=[], n=n, source=[("sample", int(i)) for i in idx],
                    scale_src=np.abs(r) @ np.abs(xbar))


def one_hidden_layer_test(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, first,
                          *, time_limit: float = 60.0) -> SecondOrder | None:
    """A4.5 items 1–2: d-stationarity plus the escape test of zero-output units decides."""
    why = one_hidden_layer_applies(problem)
    if why:
        return SecondOrder(None, "cell_convexity", reason=why)
    from .driver import decide_one_level  # the same exact first-order machinery
    net = problem.network
    a = net.weights[1][0]
    zero_units = np.nonzero(a == 0)[0]
    if zero_units.size and kinks.n_loss:
        return SecondOrder(None, "cell_convexity", reason="a zero-output unit together with loss kinks: the "
                           "escape test needs separable first-order terms")
    conditions = {"hidden_layers": 1, "outputs": 1, "weight_decay": 0.0, "activation": net.activation.spec,
                  "loss_convex": True, "nonzero_output_weights": int(a.size - zero_units.size),
                  "zero_output_units": [int(j) for j in zero_units]}
    escapes = []
    calls = []
    for j in zero_units:
        for s in (1, -1):
            one = escape_model(problem, fwd, kinks, int(j), s)
            res = decide_one_level(one, time_limit=time_limit, clarke=False)
            calls += res.solver_calls
            entry = {"unit": int(j), "sign": s, "stationary": res.stationary, "method": res.method,
                     "certificate": res.certificate}
            escapes.append(entry)
            if res.stationary:
                continue
            if res.direction is not None:
                curve = _escape_curve(problem, fwd, kinks, int(j), s, res.direction)
                if curve["verified"]:
                    return SecondOrder("saddle", "escape_neuron", reason=(
                        f"unit {int(j)} has output weight 0 and its escape function psi (sign {s:+d}) takes "
                        f"the value {res.min_value:.3g} < 0; the loss drops by {curve['decrease']:.3g} along "
                        f"a_j = {s:+d} t, (w_j, b_j) += t v (verified)"),
                        flags={"strict": False}, certificate={"kind": "escape_neuron", "conditions": conditions,
                                                              "escapes": escapes},
                        refutation=curve, solver_calls=calls)
                return SecondOrder(None, "cell_convexity", reason=(
                    f"unit {int(j)} (output weight 0) has an escape direction, but no decrease of the loss could "
                    f"be verified along the escape line"), certificate={"escapes": escapes}, solver_calls=calls)
            return SecondOrder(None, "cell_convexity", reason=f"escape test of unit {int(j)} undecided: {res.reason}",
                               certificate={"escapes": escapes}, solver_calls=calls)
    fo_cert = first.certificate if first is not None else {}
    rechecked = fo_cert.get("kind") in ("multipliers", "gradient")
    flags = {"strict": None, "flat": None}
    if kinks.n_total == 0:
        flags["classification"] = "genuine differentiable local minimum (inside its cell)"
    else:
        flags["classification"] = "local minimum at a kink (on the boundary of its cell)"
    reason = ("one hidden layer, scalar output, convex loss: the loss is convex on every piece in "
              "u_j = a_j (w_j, b_j), so d-stationarity proves a local minimum")
    if zero_units.size:
        reason += f"; the {zero_units.size} zero-output unit(s) have no escape direction"
    if not rechecked:
        reason += " (first order attested by the MILP bound)"
    return SecondOrder("local_min", "cell_convexity", reason=reason, flags=flags,
                       certificate={"kind": "cell_convexity", "theorem": "REFERENCES.md A4.5 items 1-2",
                                    "conditions": conditions, "escapes": escapes,
                                    "first_order_rechecked": rechecked},
                       solver_calls=calls)


def _escape_curve(problem, fwd, kinks, j: int, s: int, v: np.ndarray) -> dict:
    """The line ``a_j = s eps t, (w_j, b_j) += (t / eps) v``, for ``eps = 1, 1/2, 1/4, ...``.

    Along it the loss changes by ``t^2 psi_{j,s}(v) / ...`` (the product ``a_j h(w_j . x)``) plus
    ``eps^2 t^2`` times the square of the unit's current output ``h(z_ij)``, so a small ``eps``
    makes the second-order coefficient negative whenever ``psi < 0``; when ``h(z_j)`` is constant the
    output bias can cancel that term instead. Each candidate must be a local descent curve
    (``c1 = 0, c2 < 0``) with a verified decrease.
    """
    net = problem.network
    p = net.n_params
    d_in = net.n_inputs
    w0, b0 = net.offsets[0]
    a0, _ = net.offsets[1]
    h = net.activation(fwd.pre[0][:, j])
    curve = None
    for eps in (1.0, 0.5, 0.25, 0.125, 1 / 16, 1 / 64, 1 / 256):
        d = np.zeros(p)
        d[w0 + j * d_in: w0 + (j + 1) * d_in] = v[:d_in] / eps
        d[b0 + j] = v[d_in] / eps
        d[a0 + j] = s * eps
        variants = [d]
        if np.ptp(h) == 0 and h[0] != 0:
            d2 = d.copy()
            d2[p - 1] -= s * eps * h[0]   # cancel the order-t output change with the output bias
            variants.append(d2)
        for dv in variants:
            curve = search_curve(problem, fwd, kinks, dv / np.abs(dv).max())
            if curve["verified"]:
                return curve
    return curve


# ---------------------------------------------------------------------------- affine cell
def affine_cell_model(problem: Problem, fwd: ForwardPass, kinks: KinkStructure):
    """The convex affine-fit problem's first-order model in ``vec(M, m)``, or ``(None, why not)``.

    Applies when there is no weight decay, no unit kink, and every hidden unit has one slope on all
    samples (then ``f(x) = M x + m`` near theta).
    """
    net = problem.network
    if problem.weight_decay:
        return None, "affine-cell test does not hold with weight decay"
    if kinks.n_unit:
        return None, "affine-cell test needs no unit on a kink"
    D = piece_slopes(problem, fwd)
    for l, Dl in enumerate(D, start=1):
        if Dl.size and np.any(Dl != Dl[0:1, :]):
            return None, (f"hidden layer {l} has units with different slopes on different samples: the network "
                          f"is not affine near theta")
    n, C = problem.n_samples, net.n_outputs
    xbar = np.hstack([problem.X, np.ones((n, 1))])
    dim = C * xbar.shape[1]
    loss = problem.loss
    F = fwd.output
    lk = set(int(i) for i in kinks.loss_kink_samples)
    smooth_rows = np.array([i for i in range(n) if i not in lk], dtype=int)
    grad = loss.gradient(F, problem.Y)
    g = np.zeros(dim)
    if smooth_rows.size:
        g = (grad[smooth_rows].T @ xbar[smooth_rows]).ravel() / n
    g_scale = (np.abs(grad).T @ np.abs(xbar)).ravel() / n
    rows, gammas, multi, source = [], [], [], []
    if lk:
        vals, slopes = loss.pieces(F, problem.Y)
        kinked = {(int(i), int(gr)): act for i, gr, act in zip(kinks.loss_sample, kinks.loss_group, kinks.loss_active)}
        for i in sorted(lk):
            Gi = sp.csr_matrix(np.kron(np.eye(C), xbar[i]))  # df = Gi vec(M m)
            g_scale = g_scale + np.abs(np.asarray(Gi.T @ np.abs(slopes[i]).max(axis=(0, 1))).ravel()) / n
            for gr in range(vals.shape[1]):
                act = kinked.get((i, gr))
                if act is None:
                    act = np.array([int(np.argmax(vals[i, gr]))])
                S = slopes[i, gr, act]
                g = g + np.asarray(Gi.T @ S[0]).ravel() / n
                if S.shape[0] == 2:
                    rows.append(np.asarray(Gi.T @ (S[1] - S[0])).ravel())
                    gammas.append(1.0 / n)
                    source.append(("loss", i))
                elif S.shape[0] > 2:
                    multi.append((Gi, S - S[0]))
    a = sp.csr_matrix(np.array(rows)) if rows else sp.csr_matrix((0, dim))
    return OneLevel(g=g, a=a, gamma=np.array(gammas), multi=multi, n=n, source=source, scale_src=g_scale), None


def affine_cell_test(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, *,
                     time_limit: float = 60.0) -> SecondOrder | None:
    """Locally affine network at an optimal affine fit -> local minimum (global if linear)."""
    one, why = affine_cell_model(problem, fwd, kinks)
    if one is None:
        return SecondOrder(None, "affine_cell", reason=why)
    from .driver import decide_one_level
    net = problem.network
    res = decide_one_level(one, time_limit=time_limit, clarke=False)
    linear = net.activation.name == "identity"
    if res.stationary and res.certificate.get("kind") == "multipliers":
        flags = {"global": True if linear else None, "strict": None,
                 "classification": "locally affine network at the best affine fit"}
        reason = ("every hidden unit keeps one slope on all samples, so the network is affine near theta, and "
                  "its affine map minimises the convex affine-fit loss")
        if linear:
            reason += "; a linear network cannot do better than the best affine map: a global minimum"
        else:
            reason += " (a nonlinear network may still do better elsewhere)"
        return SecondOrder("local_min", "affine_cell", reason=reason, flags=flags,
                           certificate={"kind": "affine_cell", "fit_certificate": res.certificate},
                           solver_calls=res.solver_calls)
    return SecondOrder(None, "affine_cell", reason="the network is locally affine but not at the best affine fit",
                       solver_calls=res.solver_calls)


# ---------------------------------------------------------------------------- critical cone
#: largest number of one-sided (flat) kink rows whose faces are enumerated
MAX_FACES_ROWS = 10
#: largest number of kinks with a zero coefficient (two-sided: both pieces are visited)
MAX_INERT = 8


def cone_model(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, fo: FirstOrderModel,
               lam: np.ndarray, pis: list):
    """The critical cone and the Lagrangian pieces at a d-stationary point with one level of kinks.

    From the first-order multipliers (``lambda_j in [0, 1]`` per generator, ``pi_q`` per multi-piece
    loss group) every piece's KKT multipliers follow (``mu = gamma (1 - lambda)`` on the ``+`` side,
    ``gamma lambda`` on the ``-`` side), and:

    * an interior ``lambda_j`` holds kink ``j`` on its switching surface: ``a_j . d = 0``;
    * ``lambda_j = 0`` (``= 1``) lets ``d`` cross to the ``-`` (``+``) side only: ``-+ a_j . d >= 0``,
      one piece with the free side's slope;
    * a kink with zero coefficient (it does not reach ``L'``) is free on both sides: both pieces.

    On the face where a kink stays at zero both pieces give the same Lagrangian quadratic form, so
    the union of the pieces' critical cones is covered by ``2^m`` polyhedral cones for ``m`` such
    two-sided kinks (only those are enumerated), each with one Hessian. Loss kinks need no
    pieces: the losses with kinks are piecewise linear, so their pieces share one Hessian.
    Every row carries what its switching function is: ``("unit", layer, sample, unit)`` or
    ``("out", sample, w)`` for ``w . f(x_sample)``. Returns a dict, or a string saying why not.
    """
    from .formulate.first_order import one_level
    from .tangent import blocked_slopes, first_order_model, switching_rows
    full = first_order_model(problem, fwd, kinks, drop_inert=False)
    if full.M.nnz or full.N.nnz:
        return "kinks nested in kinks (a kink downstream of another in the same sample)"
    one = one_level(fo)
    if lam.shape != (one.n_generators,) or len(pis) != len(one.multi):
        return "first-order multipliers do not match the kinks"
    relevant = {int(k) for k in fo.kink_ids}
    inert = [k for k in range(kinks.n_unit) if k not in relevant]
    if len(inert) > MAX_INERT:
        return f"{len(inert)} kinks with zero coefficient would need 2^{len(inert)} pieces"
    model = lagrangian_model(problem, fwd, kinks, fo, one, lam, pis, piece_slopes(problem, fwd))
    Db = blocked_slopes(problem, fwd, kinks)
    inert_rows = []
    for k in inert:
        l, i, u = int(kinks.unit_layer[k]), int(kinks.unit_sample[k]), int(kinks.unit_index[k])
        R, _ = switching_rows(problem, fwd, Db, kinks, np.array([i]), l, np.array([u]))
        inert_rows.append({"kink": int(k), "desc": ("unit", l, i, u), "row": R.toarray().ravel()})
    model["inert"] = inert_rows
    return model


def lagrangian_model(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, fo: FirstOrderModel,
                     one: OneLevel, lam: np.ndarray, pis: list, D: list) -> dict:
    """Slopes, adjoint injections, loss adjoint and cone rows of the Lagrangian of one-level kinks.

    ``D`` gives the slopes of every unit that is not one of ``fo``'s kinks (copied, not changed);
    each kink of ``fo`` gets the slope of its free side and its piece multiplier as an injection,
    and its row goes to ``E`` (held at 0) or ``F`` (one-sided), as :func:`cone_model` explains.
    ``kinks`` is the structure ``fo`` was built from. ``F_mult`` holds each one-sided row's piece
    multiplier on its free side (0: the constraint can be dropped without changing the Lagrangian).
    """
    p = problem.n_params
    s_pos, s_neg = problem.network.activation.slopes
    tol_l = 1e-9
    D = [np.array(d, dtype=np.float64) for d in D]
    inject = [np.zeros_like(d) for d in D]
    E, E_desc, F, F_desc, F_mult = [], [], [], [], []
    n = problem.n_samples
    loss_grad = problem.loss.gradient(fwd.output, problem.Y).astype(np.float64)
    lk_grad = {}   # sample -> multiplier-weighted output adjoint (before 1/n)
    gen_of_group = {src[1]: j for j, src in enumerate(one.source) if src[0] == "loss"}
    multi_idx = iter(range(len(one.multi)))
    for q, (s_idx, S) in enumerate(fo.groups):
        i = int(fo.lk_sample[s_idx])
        acc = lk_grad.setdefault(i, np.zeros(S.shape[1]))
        if S.shape[0] == 1:
            acc += S[0]
        elif S.shape[0] == 2:
            lj = float(lam[gen_of_group[q]])
            acc += S[0] + lj * (S[1] - S[0])
            desc = ("out", i, S[1] - S[0])
            a_row = one.a[gen_of_group[q]].toarray().ravel()
            if lj <= tol_l:
                F.append(-a_row); F_desc.append(("out", i, S[0] - S[1])); F_mult.append(lj / n)
            elif lj >= 1 - tol_l:
                F.append(a_row); F_desc.append(desc); F_mult.append((1.0 - lj) / n)
            else:
                E.append(a_row); E_desc.append(desc)
        else:
            pi = pis[next(multi_idx)]
            acc += pi @ S
            supp, rest = np.nonzero(pi > tol_l)[0], np.nonzero(pi <= tol_l)[0]
            Gs = fo.G[s_idx * S.shape[1]:(s_idx + 1) * S.shape[1]].toarray()
            for a_, b_ in zip(supp[:-1], supp[1:]):
                w = S[a_] - S[b_]
                E.append(w @ Gs); E_desc.append(("out", i, w))
            for b_ in rest:
                w = S[supp[0]] - S[b_]
                F.append(w @ Gs); F_desc.append(("out", i, w)); F_mult.append(float(pi[b_]) / n)
    for i, acc in lk_grad.items():
        loss_grad[i] = acc
    for j, src in enumerate(one.source):
        if src[0] != "unit":
            continue
        k = int(fo.kink_ids[src[1]])
        l, i, u = int(kinks.unit_layer[k]), int(kinks.unit_sample[k]), int(kinks.unit_index[k])
        a_row = one.a[j].toarray().ravel()
        lj, gj = float(lam[j]), float(one.gamma[j])
        desc = ("unit", l, i, u)
        if lj <= tol_l:                       # only the - side is free
            D[l - 1][i, u] = s_neg
            inject[l - 1][i, u] = gj * lj
            F.append(-a_row); F_desc.append(desc); F_mult.append(gj * lj)
        elif lj >= 1 - tol_l:                 # only the + side is free
            D[l - 1][i, u] = s_pos
            inject[l - 1][i, u] = -gj * (1 - lj)
            F.append(a_row); F_desc.append(desc); F_mult.append(gj * (1 - lj))
        else:                                 # held at 0; either side gives the same form
            D[l - 1][i, u] = s_pos
            inject[l - 1][i, u] = -gj * (1 - lj)
            E.append(a_row); E_desc.append(desc)
    return {"D": D, "inject": inject, "loss_grad": loss_grad,
            "E": np.array(E).reshape(-1, p), "E_desc": E_desc,
            "F": np.array(F).reshape(-1, p), "F_desc": F_desc, "F_mult": F_mult}


def _piece(model: dict, signs, slopes) -> tuple[list, np.ndarray, list]:
    """Slopes, one-sided rows and their descriptions for one sign pattern of the two-sided kinks."""
    s_pos, s_neg = slopes
    D = [d.copy() for d in model["D"]]
    rows, desc = [model["F"]], list(model["F_desc"])
    for r, sg in zip(model["inert"], signs):
        _, l, i, u = r["desc"]
        D[l - 1][i, u] = s_pos if sg > 0 else s_neg
        rows.append((sg * r["row"])[None, :])
        desc.append(r["desc"])
    return D, np.vstack(rows), desc


def cone_curvature(problem: Problem, fwd: ForwardPass, model: dict, *, tol_rel: float = TOL_CURVATURE) -> dict:
    """Minimum of ``d' H_sigma d`` over each piece's critical cone (modulo symmetry), by faces.

    For every piece (sign pattern of the two-sided kinks) and every face ``S`` of its cone (a subset of
    the one-sided rows held at 0), the Lagrangian Hessian is restricted to
    ``V_S = {E d = 0, F_S d = 0} ∩ T^perp``; each eigenvector of ``H`` on ``V_S`` whose eigenvalue is
    at most the tolerance and which points into the cone (``F d >= 0``) is a stationary point of the
    curvature on the cone. The minimum over the cone is the least such eigenvalue (when the ones at or
    below the tolerance are simple; otherwise ``uncertain`` is set). Pure numpy: ``verify`` reuses it.
    """
    import itertools
    Q, counts = symmetry_basis(problem, fwd)
    p = problem.n_params
    E = model["E"]
    m = len(model["inert"])
    flat = model.get("flat")
    if flat is not None and flat.size:
        Q = np.hstack([Q, flat])   # the piece's own flat directions (see certify.pieces)
        counts = dict(counts, piece_flat=int(flat.shape[1]))
    base = np.vstack([E, Q.T]) if (E.size or Q.size) else np.zeros((0, p))
    Z0 = sla.null_space(base) if base.shape[0] else np.eye(p)
    best = {"q": np.inf, "direction": None, "piece": None, "face": None}
    uncertain = False
    n_faces = 0
    scale = 0.0
    slopes = problem.network.activation.slopes
    from .progress import tick
    for k_piece, signs in enumerate(itertools.product((1, -1), repeat=m)):
        tick("critical cone: pieces", k_piece, 2 ** m)
        D, Fp, _ = _piece(model, signs, slopes)
        r = Fp.shape[0]
        if r > MAX_FACES_ROWS:
            return {"error": f"{r} one-sided kink rows: 2^{r} faces is over the limit ({MAX_FACES_ROWS} rows)"}
        HZ = dense_hessian(problem, fwd, D, basis=Z0, loss_grad=model["loss_grad"], inject=model["inject"])
        H0 = Z0.T @ HZ
        H0 = 0.5 * (H0 + H0.T)
        # the scale of the curvature is that of H on the whole slice (H Z0), not of the reduced block,
        # which can vanish up to rounding: a reduced form of size 1e-16 is zero, not positive
        scale = max(scale, float(np.linalg.norm(HZ)), float(np.linalg.norm(H0)))
        tol = tol_rel * max(scale, 1e-300)
        F0 = Fp @ Z0
        F_norm = np.abs(Fp).sum(axis=1)  # feasibility is judged against the rows' own size
        for k in range(r, -1, -1):
            for held in itertools.combinations(range(r), k):
                n_faces += 1
                free = [x for x in range(r) if x not in held]
                Zs = sla.null_space(F0[list(held)]) if held else np.eye(Z0.shape[1])
                if Zs.shape[1] == 0:
                    continue
                w, V = np.linalg.eigh(Zs.T @ H0 @ Zs)
                # ascending: the first eigenvector pointing into the cone is this face's candidate
                for idx in range(w.size):
                    mult = int(np.count_nonzero(np.abs(w - w[idx]) <= tol))
                    found = False
                    for sgn in (1.0, -1.0):
                        y = sgn * (Zs @ V[:, idx])
                        if free:
                            Fy = F0[free] @ y
                            fscale = F_norm[free] * np.abs(Z0 @ y).max()
                            if not np.all(Fy >= -1e-9 * (fscale + 1e-300)):
                                continue
                        found = True
                        if w[idx] < best["q"]:
                            best = {"q": float(w[idx]), "direction": Z0 @ y, "piece": list(signs),
                                    "face": list(held)}
                        break
                    if found:
                        break
                    if mult > 1 and w[idx] <= tol:
                        uncertain = True  # the cone may meet this eigenspace away from the basis vectors
    tick("critical cone: pieces", 2 ** m, 2 ** m)
    return {"q": best["q"], "direction": best["direction"], "piece": best["piece"], "face": best["face"],
            "uncertain": uncertain, "faces": n_faces, "pieces": 2 ** m, "tolerance": tol_rel * max(scale, 1e-300),
            "hessian_frobenius": scale, "symmetry": counts}
def critical_cone_test(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, fo: FirstOrderModel, first,
                       ) -> SecondOrder:
    """Second-order conditions on the critical cone of every piece (DESIGN.md §4)."""
    cert = first.certificate if first is not None else {}
    if cert.get("kind") != "multipliers":
        return SecondOrder(None, "critical_cone", reason="the critical-cone test needs a multiplier certificate "
                           f"of first order (have {cert.get('kind')!r})")
    if problem.n_params > DENSE_P:
        return SecondOrder(None, "critical_cone", reason=f"p = {problem.n_params} is above the dense limit")
    lam = np.asarray(cert["lambda"], dtype=np.float64)
    pis = [np.asarray(p_, dtype=np.float64) for p_ in cert.get("pi", [])]
    model = cone_model(problem, fwd, kinks, fo, lam, pis)
    if isinstance(model, str):
        return SecondOrder(None, "critical_cone", reason=f"critical-cone test not applicable: {model}")
    res = cone_curvature(problem, fwd, model)
    if "error" in res:
        cop = cone_copositivity(problem, fwd, model)
        if cop["ok"]:
            return SecondOrder("local_min", "copositivity", reason=(
                f"{res['error']}; instead the Lagrangian Hessian is certified strictly copositive on the critical "
                f"cone of every piece (H = S + F'NF + eps I with S PSD, N >= 0: cvxpy/Clarabel, re-checked with "
                f"numpy)"), flags={"strict": None},
                certificate={"kind": "copositivity", "pieces": cop["pieces"], "symmetry": cop["symmetry"]})
        return SecondOrder(None, "critical_cone", reason=res["error"] + "; no copositivity certificate was found")
    q, tol = res["q"], res["tolerance"]
    certificate = {"kind": "critical_cone", "min_curvature": q if np.isfinite(q) else None, "tolerance": tol,
                   "faces": res["faces"], "pieces": res["pieces"], "uncertain": res["uncertain"],
                   "equalities": len(model["E_desc"]), "one_sided": len(model["F_desc"]),
                   "two_sided": [r["kink"] for r in model["inert"]], "symmetry": res["symmetry"]}
    if q < -tol and res["direction"] is not None:
        d = res["direction"]
        curve = _cone_curve(problem, fwd, kinks, model, res, d)
        if curve["verified"]:
            return SecondOrder("saddle", "critical_cone", reason=(
                f"first-order stationary, but the Lagrangian curvature on the critical cone is {q:.3g} < 0; "
                f"the loss drops by {curve['decrease']:.3g} along theta + t d + t^2/2 e (verified)"),
                flags={"strict": False}, certificate=certificate, refutation=curve)
        return SecondOrder(None, "critical_cone", reason=f"negative curvature {q:.3g} on the critical cone, but no "
                           f"decrease could be verified along the second-order curve", certificate=certificate)
    if res["uncertain"]:
        return SecondOrder(None, "critical_cone", reason="a repeated eigenvalue at or below the tolerance on a face "
                           "of the critical cone: the exact minimum over the cone was not established",
                           certificate=certificate)
    if q > tol:
        flat = res["symmetry"].get("dead_units", 0) + res["symmetry"].get("translations", 0)
        return SecondOrder("local_min", "critical_cone", reason=(
            f"the Lagrangian Hessian is positive on the critical cone of every piece ({res['pieces']} piece(s), "
            f"{res['faces']} face(s); least curvature {q:.3g}) modulo rescaling"
            + (f" and {flat} flat direction(s) of dead or always-active units" if flat else "")),
            flags={"strict": flat == 0, "flat_directions": flat > 0}, certificate=certificate)
    return SecondOrder(None, "critical_cone", reason=(
        f"second-order necessary conditions hold but the curvature on the critical cone is 0 ({q:.3g}) in some "
        f"direction beyond symmetry: higher order needed"), certificate=certificate)


def _cone_curve(problem, fwd, kinks, model, res, d) -> dict:
    """Curve ``theta + t d + t^2/2 e``: ``e`` keeps every held switching function at 0 to second order
    (``a_k . e = -d' grad^2 phi_k d``, least norm), so the loss changes by ``t^2/2 d' H d + o(t^2)``."""
    from .tangent import second_tangent
    D, Fp, F_desc = _piece(model, res["piece"] or [], problem.network.activation.slopes)
    ddz = second_tangent(problem, fwd, D, d)
    held = res["face"] or []
    A = np.vstack([model["E"], Fp[held]]) if held else model["E"]
    descs = list(model["E_desc"]) + [F_desc[x] for x in held]
    rhs = []
    for desc in descs:
        if desc[0] == "unit":
            _, l, i, u = desc
            rhs.append(-ddz[l - 1][i, u])
        else:
            _, i, w = desc
            rhs.append(-float(w @ ddz[-1][i]))
    e = np.linalg.lstsq(A, np.array(rhs), rcond=None)[0] if len(rhs) else np.zeros_like(d)
    curve = search_curve(problem, fwd, kinks, d, e)
    if not curve["verified"]:
        alt = search_curve(problem, fwd, kinks, d, None)
        if alt["verified"]:
            curve = alt
    curve["curvature"] = res["q"]
    return curve


# ---------------------------------------------------------------------------- spurious minima
def spurious_lower_point(problem: Problem) -> dict | None:
    """A point with a verified lower loss, by Yun, Sra, Jadbabaie (2019a) Thm 1 step 2.

    One hidden layer (width >= 2), scalar output, square loss, ReLU-like activation with
    ``s_pos + s_neg != 0``: from the best affine fit ``ybar_i = Wbar xbar_i`` (residuals summing to 0),
    sort the samples by ``ybar``; where a partial sum of residuals is nonzero between two distinct
    values, two units ``h(ybar - beta + gamma)`` and ``h(beta - ybar + gamma)`` shift the outputs
    on either side of ``beta`` by ``-+ kappa gamma`` and lower the loss by
    ``2 |kappa gamma sum_{i <= j0} r_i| + O(gamma^2)`` below the affine fit's. The candidate is kept
    only when its loss is *verified* below ``L(theta)``. Returns ``{"theta", "decrease", ...}`` or None.
    """
    from .evaluate import verified_decrease
    net = problem.network
    s_pos, s_neg = net.activation.slopes
    h = net.weights[0].shape[0]
    if (net.n_layers != 2 or net.n_outputs != 1 or problem.loss.name != "square" or problem.weight_decay
            or not net.activation.has_kink or s_pos + s_neg == 0 or h < 2):
        return None
    base = problem.value()
    if base <= 0:
        return None  # nothing is below zero loss
    X, y = problem.X, problem.Y[:, 0]
    n, d = X.shape
    xbar = np.hstack([X, np.ones((n, 1))])
    wbar = np.linalg.lstsq(xbar, y, rcond=None)[0]
    ybar = xbar @ wbar
    order = np.argsort(ybar, kind="stable")
    ys, rs = ybar[order], (ybar - y)[order]
    partial = np.cumsum(rs)
    kappa = (s_pos - s_neg) / (s_pos + s_neg)
    theta0 = problem.theta
    candidates = [j for j in range(n - 1) if ys[j] < ys[j + 1] and abs(partial[j]) > 1e-12 * (1 + np.abs(rs).sum())]
    candidates.sort(key=lambda j: -abs(partial[j]) * (ys[j + 1] - ys[j]))
    for j0 in candidates[:3]:
        beta = 0.5 * (ys[j0] + ys[j0 + 1])
        gap = ys[j0 + 1] - ys[j0]
        sign = np.sign(partial[j0] * (s_pos - s_neg))
        for frac in (0.25, 1 / 16, 1 / 64, 1 / 256):
            gamma = sign * frac * gap
            W1 = np.zeros((h, d)); b1 = np.zeros(h)
            W1[0], W1[1] = wbar[:d], -wbar[:d]
            b1[0], b1[1] = wbar[d] - beta + gamma, -wbar[d] + beta + gamma
            W2 = np.zeros((1, h)); W2[0, 0], W2[0, 1] = 1 / (s_pos + s_neg), -1 / (s_pos + s_neg)
            theta = np.concatenate([W1.ravel(), b1, W2.ravel(), [beta]])
            if problem.value(theta) >= base:
                continue
            dec = verified_decrease(problem, theta0, theta)
            if dec.verified:
                return {"theta": theta, "construction": "Yun, Sra, Jadbabaie 2019a, Thm 1 step 2",
                        "split_after": int(j0), "beta": float(beta), "gamma": float(gamma), **dec.to_dict()}
    return None


# ---------------------------------------------------------------------------- copositivity
def cone_copositivity(problem: Problem, fwd: ForwardPass, model: dict, stored: list | None = None) -> dict:
    """Certify ``d' H d > 0`` on every piece's cone by ``H = S + F' N F + eps I`` (S PSD, N >= 0).

    Used when a cone has too many one-sided rows for face enumeration. On ``{F d >= 0}`` the form
    is then at least ``eps ||d||^2``: a sufficient condition (copositivity is co-NP-hard to decide
    exactly). The factor ``N`` comes from a semidefinite program solved with cvxpy (Clarabel); the
    claim rests on numpy only: ``S = H - F' N F - eps I`` must have no negative eigenvalue and ``N``
    no negative entry. With ``stored`` (a list of ``{"N", "eps"}`` per piece, from a report) nothing
    is solved: the stored factors are re-checked, as ``verify`` does.
    """
    import itertools
    T, counts = symmetry_vectors(problem, fwd)
    p = problem.n_params
    Q = sla.orth(T.toarray()) if T.shape[1] else np.zeros((p, 0))
    E = model["E"]
    base = np.vstack([E, Q.T]) if (E.size or Q.size) else np.zeros((0, p))
    Z0 = sla.null_space(base) if base.shape[0] else np.eye(p)
    slopes = problem.network.activation.slopes
    pieces = []
    signs_all = list(itertools.product((1, -1), repeat=len(model["inert"])))
    for k, signs in enumerate(signs_all):
        D, Fp, _ = _piece(model, signs, slopes)
        HZ = dense_hessian(problem, fwd, D, basis=Z0, loss_grad=model["loss_grad"], inject=model["inject"])
        H0 = Z0.T @ HZ
        H0 = 0.5 * (H0 + H0.T)
        F0 = Fp @ Z0
        scale = max(float(np.linalg.norm(HZ)), 1e-300)
        if stored is None:
            N, eps = _copositive_factor(H0, F0, scale)
        else:
            N = np.asarray(stored[k]["N"], dtype=np.float64) if k < len(stored) else None
            eps = float(stored[k]["eps"]) if k < len(stored) else 0.0
        ok = False
        least = None
        if N is not None and N.shape == (F0.shape[0], F0.shape[0]) and eps > TOL_CURVATURE * scale:
            S = H0 - F0.T @ N @ F0 - eps * np.eye(H0.shape[0])
            least = float(np.linalg.eigvalsh(0.5 * (S + S.T))[0]) if S.size else 0.0
            ok = bool(np.all(N >= 0) and least >= -1e-12 * scale)
        pieces.append({"signs": list(signs), "N": N, "eps": eps, "ok": ok, "least_eigenvalue_of_S": least})
        if not ok:
            break
    return {"ok": all(pc["ok"] for pc in pieces) and len(pieces) == len(signs_all), "pieces": pieces,
            "symmetry": counts}


def _copositive_factor(H0: np.ndarray, F0: np.ndarray, scale: float):
    """Largest ``eps`` (and ``N``) with ``H0 - F0' N F0 - eps I`` PSD, ``N >= 0``; (None, 0) on failure."""
    try:
        import cvxpy as cp
    except ImportError:  # pragma: no cover - cvxpy is a core dependency
        return None, 0.0
    m, r = H0.shape[0], F0.shape[0]
    if m == 0:
        return np.zeros((r, r)), scale
    N = cp.Variable((r, r), symmetric=True)
    eps = cp.Variable()
    S = H0 - F0.T @ N @ F0 - eps * np.eye(m)
    prob = cp.Problem(cp.Maximize(eps), [N >= 0, 0.5 * (S + S.T) >> 0, eps <= scale])
    try:
        prob.solve(solver="CLARABEL")
    except Exception:  # noqa: BLE001 - any solver failure just means no certificate
        return None, 0.0
    if N.value is None or eps.value is None or eps.value <= 0:
        return None, 0.0
    # keep a margin: the re-check uses half of the solver's eps and N clipped to >= 0
    return np.maximum(N.value, 0.0), 0.5 * float(eps.value)
