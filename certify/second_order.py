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
    if kinks.n_total == 0:
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
    """Directions along which ``L`` is constant to all orders: rescaling orbits and dead units.

    Without weight decay: for every hidden unit the orbit tangent ``(+w_j, +b_j, -W_{l+1}[:, j])``;
    for every *dead* unit (``s_neg = 0`` and a strictly negative pre-activation on every sample)
    all of its incoming and outgoing coordinates. Returns an orthonormal basis (p, r) and counts.
    """
    net = problem.network
    p = net.n_params
    vecs = []
    n_orbit = n_dead = 0
    if problem.weight_decay:
        return np.zeros((p, 0)), {"orbits": 0, "dead_units": 0}
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
                    v = np.zeros(p)
                    v[idx] = 1.0
                    vecs.append(v)
                n_dead += 1
                continue
            v = np.zeros(p)
            v[in_idx] = np.concatenate([W[j], [net.biases[l - 1][j]]])
            v[out_idx] = -Wn[:, j]
            if np.any(v):
                vecs.append(v)
                n_orbit += 1
    if not vecs:
        return np.zeros((p, 0)), {"orbits": 0, "dead_units": 0}
    T = np.column_stack(vecs)
    Q = sla.orth(T)
    return Q, {"orbits": n_orbit, "dead_units": n_dead, "dimension": int(Q.shape[1])}


def smooth_hessian_test(problem: Problem, fwd: ForwardPass) -> SecondOrder:
    """Hessian on the complement of the symmetry directions (no kinks: ``L`` is C^2 here)."""
    p = problem.n_params
    D = piece_slopes(problem, fwd)
    Q, counts = symmetry_basis(problem, fwd)
    if p - Q.shape[1] > DENSE_P:
        return SecondOrder(None, "hessian", reason=f"p = {p} is above the dense-Hessian limit ({DENSE_P}); "
                           f"a Lanczos estimate is not a proof", certificate={"symmetry": counts})
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
        dead = counts.get("dead_units", 0)
        # strict: modulo the rescaling orbits only; dead units add flat directions (a valley)
        flags = {"strict": dead == 0, "flat_directions": dead > 0, "differentiable": True}
        what = ("a strict local minimum modulo rescaling" if dead == 0 else
                f"a local minimum, strict modulo rescaling and the flat directions of {dead} dead unit(s)")
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
                    g_scale=np.abs(r) @ np.abs(xbar))


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
    """The line ``a_j = s t, (w_j, b_j) = (w_j, b_j) + t v``; with first-order output compensation."""
    net = problem.network
    p = net.n_params
    d_in = net.n_inputs
    w0, b0 = net.offsets[0]
    a0, _ = net.offsets[1]
    d = np.zeros(p)
    d[w0 + j * d_in: w0 + (j + 1) * d_in] = v[:d_in]
    d[b0 + j] = v[d_in]
    d[a0 + j] = s
    curve = search_curve(problem, fwd, kinks, d)
    if curve["verified"]:
        return curve
    # the unit's current output h(z_ij) moves f at order t: cancel it with the output bias if constant
    h = net.activation(fwd.pre[0][:, j])
    if np.ptp(h) == 0 and h[0] != 0:
        d2 = d.copy()
        d2[p - 1] -= s * h[0]
        curve2 = search_curve(problem, fwd, kinks, d2)
        if curve2["verified"]:
            return curve2
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
    return OneLevel(g=g, a=a, gamma=np.array(gammas), multi=multi, n=n, source=source, g_scale=g_scale), None


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
