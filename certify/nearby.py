"""Claim (2) "nearby": an exact local minimum lies within a proven distance of the given point.

A float64 point ``theta0`` (a polished checkpoint, or the float image of an exact construction with
non-dyadic numbers) is only *approximately* a KKT point: its gradient, or its multiplier equation,
vanishes to ~1e-13 relative and its held kinks are ~1e-16 off zero. Exactly, ``theta0`` itself is
not a minimum. This module proves, with rigorous bounds and no solver, that an exact local minimum
``theta*`` of ``L`` (strict modulo the exact symmetries) exists with ``||theta* - theta0|| <= r``.

Setting and scope
-----------------
The *held* structure: unit kinks ``k = (l, i, j)`` (pre-activation ``z^l_j(x_i)``) and two-piece loss
kinks ``q = (i, g, a0, a1)`` (pieces ``a0``, ``a1`` of group ``g`` of sample ``i`` tied), each with its
*switching function* ``phi_k`` (the pre-activation, or piece ``a1`` minus piece ``a0``). Every other
pre-activation and loss piece must keep its side on the ball (checked, rigorously). When no sample
holds kinks nested in one another, every ``phi_k`` is a polynomial in ``theta`` and the loss near
``theta0`` is ``L_sigma`` on ``{sigma_k phi_k >= 0}`` for the ``2^m`` sign vectors ``sigma``; a sample
may also hold unit kinks in several layers and a loss kink over them (*Nested*, below: the surfaces
bend where upstream ones do, and the multiplier intervals take the Lagrangian's adjoint). Anything
else (three-way ties, concave or zero-coefficient kinks, a multiplier at an endpoint, p above the
dense limit) is "not applicable" with the reason.

The base piece ``L_b``: held units take the slope ``s_pos``, held loss groups the piece ``a0``; every
other unit and loss group the side it has at ``theta0``. The Lagrangian is
``Lag(theta, nu) = L_b(theta) + sum_k nu_k phi_k(theta)``.

Gauge. The exact symmetries (:func:`gauge_families`). Without weight decay: the rescaling orbit of
every hidden unit (``(w_j, b_j) -> c (w_j, b_j)``, ``W_{l+1}[:, j] -> W_{l+1}[:, j] / c``); for a unit
with one slope ``s`` on every sample (none of its pre-activations held; every unit of a network with
the identity activation) the translation
``b_l[j] += e, b_{l+1} -= s W_{l+1}[:, j] e``; for a dead ReLU unit every incoming and outgoing
coordinate; for cross-entropy and multiclass hinge (functions of the logits' differences) the logit
shifts ``b_L += t 1`` and ``W_L[:, j] += t 1``. With or without weight decay: the mixing of
*duplicated units* (:mod:`certify.secondorder.groups`: units of one layer with one slope pattern and
one held-sample set; ``W^_l[U] -> A W^_l[U]``, ``W_{l+1}[:, U] -> W_{l+1}[:, U] A^{-1}``) by the
generators ``E_uv`` of ``GL(k)`` (no weight decay) or ``E_uv - E_vu`` of ``O(k)`` (weight decay, which
no other family keeps), as many as have independent tangents at ``theta0``. Each is a family
``Phi_i(t, .)`` of maps that keep ``L_b`` as a polynomial (with weight decay included) and map the held
switching functions linearly, ``phi(Phi_i(t, theta)) = A_i(t) phi(theta)`` (a rescaling multiplies the
``phi_k`` of its own unit by ``c``, a mixing mixes the ``phi`` of its group at one held sample, every
other ``phi_k`` -- a later pre-activation or a difference of logits -- is invariant): so ``Phi_i`` maps
the held surface ``M = {phi = 0}`` into itself and keeps ``L_b`` on it. Its tangent ``T_i(theta)`` is
affine in ``theta`` (constant for dead units and logit shifts), every column reading a coordinate at
most once with coefficient ``+-1`` or ``-s``, so ``||(T(theta) - T(theta')) diag(c)||_F <= Lip
||theta - theta'||`` with ``Lip^2`` the largest over coordinates of ``sum c_col^2 coef^2`` over the
columns that read it (:func:`tangent_lipschitz`; a weight enters its own rescaling, the next layer's
unit's rescaling, a translation with its slope, and its groups' generators). The slice
fixes ``r`` *pivot coordinates* ``I`` (chosen by QR with column pivoting on ``T(theta0)^T``, among
the coordinates not needed to keep the held kinks' switching rows independent; :func:`choose_pivots`):
``S = {theta : theta_I = theta0_I}``, free coordinates ``J``; ``theta = theta0 + E_J y``.

The square system (``x = (y, nu^)``, ``nu = diag(alpha) nu^``, ``alpha_k`` powers of two)::

    F(x) = [ E_J^T grad_theta Lag(theta0 + E_J y, nu) ;  diag(alpha) phi(theta0 + E_J y) ] = 0.

Theorem (what a certificate proves)
-----------------------------------
Let ``x0 = (0, nu^0)`` (``theta0`` itself, centre multipliers ``nu0``), ``R`` any matrix, and suppose:

1. ``eta >= ||R F(x0)||``, ``kappa0 >= ||I - R F'(x0)||``, ``K >= sup ||F''||`` over ``B(x0, rho)``,
   ``h = ||R|| K``, ``(1 - kappa0)^2 > 2 h eta`` and
   ``r = 2 eta / ((1 - kappa0) + sqrt((1 - kappa0)^2 - 2 h eta)) <= rho``.
2. Every non-held pre-activation and every non-held loss piece keeps its strict side on the
   ``theta``-ball of radius ``r_theta`` (>= the ``y``-part of ``||x* - x0||``).
3. Multipliers strictly inside at ``x*``: unit kinks ``-gamma_k(theta*) < nu*_k < 0`` with
   ``gamma_k = (s_pos - s_neg) c_k`` (``c_k`` the loss adjoint at the unit's output), loss kinks
   ``0 < nu*_q < 1/n``; proven from the enclosure of ``nu*`` and a Lipschitz bound on ``c_k``.
4. Transversality: ``T(theta*)[I, :]`` is nonsingular (``sigma_min`` at ``theta0`` minus a bound on
   ``||T(theta*) - T(theta0)||``).
5. Inertia: ``F'(x0) = [[A0, B0^T], [B0, 0]]`` has ``|J|`` positive and ``m`` negative eigenvalues
   (:func:`certify.bounds.inertia`: Sylvester's law with a computed, provably nonsingular eigenvector
   matrix, and Weyl's inequality with the rounding bounds).

Then ``L`` has a local minimum ``theta*`` with ``||theta* - theta0|| <= r_theta``; ``L(theta) > L(theta*)``
near ``theta*`` except on the local orbit of ``theta*`` under the families.

Proof. (i) *Existence* (Urabe's form of Newton–Kantorovich, the contraction of the simplified
Newton map ``G(x) = x - R F(x)``): on ``B(x0, rho)``, ``||G'(x)|| <= kappa0 + h ||x - x0||``, so
``||G(x) - x0|| <= eta + (kappa0 + h s / 2) s`` for ``||x - x0|| = s``; with ``s = r`` the right side
is ``r`` (``r`` is the smaller root of ``h r^2 / 2 - (1 - kappa0) r + eta = 0``), so ``G`` maps
``B(x0, r)`` into itself with contraction factor ``kappa0 + h r < 1``: a unique fixed point ``x*``, and
``I - R F'(x0)`` of norm < 1 makes ``R`` nonsingular, so ``F(x*) = 0``. Every ``F'(x)`` on the ball is
nonsingular (``||I - R F'(x)|| < 1``). (ii) *Full KKT*: ``F(x*) = 0`` gives ``phi(theta*) = 0`` and
``g := grad Lag(theta*, nu*)`` supported on ``I``. Along every family,
``d/dt Lag(Phi_i(t, theta*), nu*) = g . T_i(theta*) = nu* . A_i'(0) phi(theta*) = 0``, so
``T(theta*)[I, :]^T g_I = 0`` and (4) gives ``g = 0``. (iii) *Pieces*: by (2), near ``theta*`` the loss
is ``L_sigma`` on ``D_sigma = {sigma_k phi_k >= 0}``; on ``phi = 0`` all pieces agree with ``L_b`` and
``grad L_sigma(theta*) = grad L_b(theta*) - sum_{sigma_k = -} gamma_k grad phi_k`` for unit kinks (the
base is their ``+`` side), so ``grad L_sigma = sum_k mu^sigma_k sigma_k grad phi_k`` with
``mu^sigma_k = -nu*_k`` (``+`` side) or ``nu*_k + gamma_k`` (``-`` side); for a loss kink the base
piece ``a0`` is the ``-`` side, ``L_+ = L_b + phi_q / n``, and the multipliers are ``nu*_q`` and
``1/n - nu*_q``. All are strictly positive by (3): KKT for every piece with strict complementarity. (iv) *LIKQ*: ``F'(x*)`` nonsingular forces ``J(theta*) E_J`` to have full row
rank. (v) *Second order on the held surface*: ``F'`` is symmetric and nonsingular on the whole segment
``[x0, x*]`` (i), so no eigenvalue crosses 0 and ``F'(x*)`` has the inertia ``(|J|, m, 0)`` of (5); with
``B* = diag(alpha) J(theta*) E_J`` of full row rank, ``In(F'(x*)) = In(Z^T A* Z) + (m, m, 0)`` for a
basis ``Z`` of ``ker B*`` (Gould, Math. Prog. 32, 1985), so ``E_J^T H E_J`` is positive definite on
``ker B*`` (``H = grad^2 Lag(theta*, nu*)``). With (ii) and (iv) these are the second-order sufficient
conditions of ``min L_b`` subject to ``phi = 0`` on the slice (Nocedal–Wright Thm 12.6): ``y*`` is a
strict local minimum of ``L_b`` on ``S ∩ M``, ``M = {phi = 0}`` (a manifold of codimension ``m`` near
``theta*`` by (iv)). The KKT point is also the only zero of ``F`` in ``B(x0, rho)`` when
``kappa0 + h rho < 1`` (reported as ``uniqueness_radius``).
(vi) *Modulo symmetry, on M*: every family maps ``M`` into ``M`` and keeps ``L_b`` (Gauge), so its
tangent at ``theta*`` lies in ``ker J(theta*)`` (``J T_i = A_i'(0) phi(theta*) = 0``). The map
``(t, s) -> Phi_1(t_1, ... Phi_r(t_r, s))`` from ``R^r x (S ∩ M)`` to ``M`` has differential
``[T(theta*), E_J Z]``, injective by (4) (the pivot rows give ``T(theta*)[I, :] a = 0``, so ``a = 0``)
between spaces of dimension ``r + |J| - m = p - m``: a local diffeomorphism onto a neighbourhood of
``theta*`` in ``M``, on which ``L_b(Phi(t, s)) = L_b(s) >= L_b(theta*)`` with equality only for
``s = theta*``. (vii) *Off M, strict normal growth*: in a chart ``(phi, w)`` of a neighbourhood (LIKQ;
``w`` coordinates on ``M``) the KKT conditions of (iii) read ``d L_sigma / d phi_k = sigma_k mu^sigma_k``
and ``d L_sigma / d w = 0`` at ``theta*``; all pieces agree with ``L_b`` on ``M``, so on ``D_sigma``
(where ``sigma_k phi_k = |phi_k|``) ``L(phi, w) = L_b(0, w) + sum_k mu^sigma_k |phi_k| + o(||phi||)``
uniformly near ``(0, w*)``: ``L(theta) > L_b(0, w) >= L(theta*)`` for ``theta`` off ``M`` near ``theta*``
(finitely many pieces, every ``mu^sigma_k > 0``). So ``L >= L(theta*)`` near ``theta*``, with equality
only on the local orbit of ``theta*`` in ``M``. (Every family but the mixing of a group with held
samples keeps ``L`` itself near ``theta*``; the mixing keeps it only on ``M``, which is why the
argument runs on ``M``.) This is Griewank–Walther's (2016) second-order sufficiency under LIKQ with
strict normal growth, in local coordinates, with Rump's ``verifynlss`` idea of proving a zero of
the KKT system near an approximate one.

Nested: a held loss kink over held unit kinks. Let sample ``i`` hold unit kinks ``z_j`` (last hidden
layer) and loss kinks ``phi_q`` (pieces ``a0``/``a1`` of a piecewise-linear loss, slopes ``S_a`` in
``f``; ``w_q = S_a1 - S_a0``). The output is ``f = W_L a + b_L`` with ``a_j = s z_j``, so off the base
side (``z_j < 0``) the true output is ``f_b + (s_neg - s_pos) z_j W_L[:, j]`` *exactly*, and the true
switching function of the tie is ``phi_q + kappa_jq z_j`` with ``kappa_jq = -ds w_q . W_L[:, j]``
(``ds = s_pos - s_neg``): the tie's surface bends where the unit's does. In the chart of (vii), with
``u_j = grad z_j . d`` and ``v_q = grad phi_q . d`` (the base rows, those of ``F``), the loss grows off
``M`` at the rate ``h(u, v) = sum_j (-gamma_j min(u_j, 0) - nu_j u_j) + sum_q (max(0, v_q + sum_j
kappa_jq min(u_j, 0)) / n - nu_q v_q)``, ``gamma_j = ds c_j`` with ``c_j`` the adjoint of the base loss
slope. Substituting ``w_q = v_q + sum_j kappa_jq min(u_j, 0)`` (a bi-Lipschitz, piecewise-linear change
of the normal coordinates) separates it: ``h = sum_j ((-gamma_j + sum_q nu_q kappa_jq) min(u_j, 0) -
nu_j u_j) + sum_q (max(0, w_q) / n - nu_q w_q)``. So ``h >= c (|u| + |v|)`` iff ``0 < nu_q < 1/n`` and
``-ds c~_j < nu_j < 0`` with ``c~_j = c_j + sum_q nu_q w_q . W_L[:, j]``: the adjoint of the
*multiplier-mixed* loss slope ``(1 - n nu_q) S_a0 + n nu_q S_a1``, which is exactly the adjoint the
Lagrangian's gradient program computes at the unit (its sources carry the loss kinks' injections
``nu_q w_q``). Condition (3) is therefore checked with ``c~_j``, its drift over the ball bounded by
``|m_i| |D* - D0| + |m_i* - m_i| |D*|`` (``m_i`` the mixed slope, constant in ``theta`` on the piece;
``|m_i* - m_i| <= sum_q alpha_q r_nu |w_q|``; ``D = W_L[:, j]``), and (vii) holds as before with
``h`` in place of ``sum_k mu_k |phi_k|``. Every other part of the proof sees only the base
polynomials ``phi`` and the output's Lipschitz bound (valid for every slope pattern), so it is
unchanged.

Nested, in general: unit kinks of several layers in one sample (and a loss kink over them). On the
base piece a held unit of layer ``l`` outputs ``a_j = s_pos z_j``; its true output is
``s_pos z_j - ds min(z_j, 0)``, and the deviation ``-ds min(z_j, 0)`` reaches every later
pre-activation (and output) of the sample linearly, through the base piece's Jacobian
``K_jk = d z_k / d a_j`` (the slopes between are fixed: held units at ``s_pos``, the others keep their
side on the ball; for a loss kink ``K_jq = w_q . d f / d a_j``). To first order along ``d`` the true
switching functions are ``psi_k = u_k - ds sum_{j upstream of k} K_jk min(psi_j, 0)``, ``u_k`` the base
row times ``d``: a triangular (solved layer by layer), bi-Lipschitz, piecewise-linear change of the
normal coordinates, equal to ``phi`` on ``M`` (there every ``psi_j = 0``). The loss's true first-order
change is ``grad L_b . d - ds sum_j c_j min(psi_j, 0) + sum_q max(0, psi_q) / n`` with ``c_j`` the base
loss adjoint at the unit, and ``grad L_b . d = -sum_k nu_k u_k`` at the KKT point; substituting
``u = psi + ...`` gives ``h = sum_j (-nu_j psi_j - ds c~_j min(psi_j, 0)) + sum_q (max(0, psi_q) / n -
nu_q psi_q)`` with ``c~_j = c_j + sum_{k downstream of j} nu_k K_jk``: the adjoint at the unit's output
of the Lagrangian ``L_b + sum nu phi``, which the gradient program computes (its injections ``nu_k``
enter at the held pre-activations downstream, ``nu_q w_q`` at the outputs). So condition (3) with
``c~_j`` is again exactly strict normal growth. The drift of ``c~_j`` over the ball adds, for each held
unit kink ``k`` downstream in the sample, ``|nu*_k - nu_k| |K*_jk| + |nu_k| |K*_jk - K_jk| <= alpha_k
r_nu B0 + |nu_k| B1 r_theta`` (``[B0, B1]`` the chain bounds of :func:`_adjoint_chain` to that kink). Checked on a
1-1-1-1 network whose sample 0 sits on both hidden kinks (tests/test_nearby.py, "Nested in two
layers"): the twin whose layer-1 multiplier lies inside the interval of the plain adjoint ``c_j`` but
outside that of ``c~_j`` has a descent, found by hand and in exact arithmetic, and is not proved.

Rigour: every computed quantity (``F(x0)``, ``F'(x0)``, the forward values, the adjoints) carries an
a-priori rounding bound from :mod:`certify.bounds` (the same program on absolute values); every
derivative bound over the ball comes from the multi-affine structure (:func:`certify.bounds.
chain_derivative_bounds`) and the loss's derivative bounds. The scalar arithmetic of the final
inequalities (a few dozen operations) is done in float64 with a relative slack of 1e-9 on every
strict inequality and the radius rounded up by the same factor.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import scipy.linalg as sla
from scipy.special import softmax

from . import bounds
from .bounds import SAFETY, U, Programs, gamma, up
from .checks import Check
from .data import Problem
from .kinks import DEFAULT_TOL, KinkStructure, find_kinks
from .secondorder import groups

log = logging.getLogger(__name__)

#: dense linear algebra up to this many parameters (certify.secondorder.base.DENSE_P)
DENSE_P = 2500
#: relative slack on every strict inequality of the final scalar checks; the radius is rounded up by it
SLACK = 1e-9
#: kink tolerances tried in turn after the caller's when the proof fails
AUTO_TOLERANCES = (1e-9, 1e-7, 1e-5, 1e-3)
#: multipliers closer than this (relative) to an end of their interval count as "at the endpoint"
ENDPOINT_REL = 1e-6


# ---------------------------------------------------------------------------- results
@dataclass
class NearbyResult:
    """Outcome of :func:`prove_nearby`.

    ``proved``: the certificate's claim holds (an exact local minimum within ``radius``).
    ``applicable``: False when the point is outside the scope (``reason`` says why).
    ``out_of_time``: the deadline passed before the proof was complete.
    ``theta_newton``: one Newton step from ``theta0`` on the slice (the best float estimate of
    ``theta*``); also returned when the proof fails after the KKT matrix was inverted (e.g. too far
    from a KKT point: iterate and try again), from the attempt with the smallest ``eta``.
    """

    proved: bool
    applicable: bool
    reason: str
    certificate: dict | None = None
    theta_newton: np.ndarray | None = None
    nu_newton: np.ndarray | None = None
    timings: dict = field(default_factory=dict)
    out_of_time: bool = False

    @property
    def radius(self) -> float | None:
        return None if self.certificate is None else self.certificate.get("radius")


# ---------------------------------------------------------------------------- scope
def scope_reason(problem: Problem, held_units, held_loss, loss_active_counts=None) -> str | None:
    """Why the structure is out of scope (None: in scope)."""
    if problem.n_params > DENSE_P:
        return f"p = {problem.n_params} is above the dense limit ({DENSE_P})"
    if loss_active_counts is not None:
        for (i, g), cnt in loss_active_counts.items():
            if cnt > 2:
                return f"a {cnt}-way tie in loss group {g} of sample {i} (only two-piece loss kinks)"
    # held kinks nested in held kinks of the same sample (unit kinks of several layers, a loss kink over
    # unit kinks) are in scope: the docstring's Nested
    unit_samples = {int(i) for _, i, _ in held_units}
    for i in sorted(unit_samples & {int(i) for i, *_ in held_loss}):
        if not problem.loss.piecewise_linear:       # (held loss kinks come from piecewise-linear losses only)
            return f"kinks nested in kinks: sample {i} has a held loss kink of a smooth loss"
    return None


def held_from_kinks(problem: Problem, kinks: KinkStructure):
    """``(held_units, held_loss, counts)`` from a :class:`KinkStructure` (pieces in index order)."""
    held_units = tuple((int(l), int(i), int(j)) for l, i, j in
                       zip(kinks.unit_layer, kinks.unit_sample, kinks.unit_index))
    held_loss, counts = [], {}
    for i, g, act in zip(kinks.loss_sample, kinks.loss_group, kinks.loss_active):
        act = [int(a) for a in act]
        counts[(int(i), int(g))] = len(act)
        if len(act) == 2:
            held_loss.append((int(i), int(g), act[0], act[1]))
    return held_units, tuple(held_loss), counts


# ---------------------------------------------------------------------------- the base piece
def base_slopes(problem: Problem, held_units) -> list:
    """Slopes ``D[l-1]`` (n, n_l) of the base piece: the side of every unit at ``theta0`` (computed by
    the same operations as :meth:`certify.bounds.Programs.forward`), ``s_pos`` at held units."""
    net = problem.network
    s_pos, s_neg = net.activation.slopes
    held = [np.zeros((problem.n_samples, W.shape[0]), dtype=bool) for W in net.weights[:-1]]
    for l, i, j in held_units:
        held[l - 1][i, j] = True
    x, D = problem.X, []
    for l in range(net.n_layers - 1):
        z = x @ net.weights[l].T + net.biases[l]
        s = np.where(z >= 0, s_pos, s_neg).astype(np.float64)
        s[held[l]] = s_pos
        D.append(s)
        x = s * z
    return D


def piece_offsets(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """``(v, S)``: a piecewise-linear loss's pieces are ``v[i, g, a] + S[i, g, a] . f_i`` (exact)."""
    F0 = np.zeros((problem.n_samples, problem.network.n_outputs))
    v, S = problem.loss.pieces(F0, problem.Y)
    return v, S


def _loss_sources(problem: Problem, F: np.ndarray, e_F: np.ndarray, held_loss, u: float = U):
    """Loss adjoint ``delta = l'(f)/n`` (n, C) and Hessian ``Q = l''(f)/n`` (n, C, C) of the base piece
    at the computed outputs ``F`` (``|F - F*| <= e_F``), with bounds on their errors against the exact
    values at ``theta0``; and ``l1`` (n,), a bound on ``||l'(f_i)||`` at ``theta0``."""
    loss, n = problem.loss, problem.n_samples
    Y = problem.Y.astype(F.dtype) if problem.Y.dtype.kind == "f" else problem.Y
    C = F.shape[1]
    Q = e_Q = None
    if loss.name == "square":
        Rs = F - Y
        delta = Rs / n
        e_delta = SAFETY * (e_F + 2 * u * np.abs(Rs)) / n * (1 + 4 * u)
        Q = np.zeros((n, C, C), dtype=F.dtype)
        Q[:, np.arange(C), np.arange(C)] = F.dtype.type(1) / n
        e_Q = np.zeros_like(Q)
        e_Q[:, np.arange(C), np.arange(C)] = SAFETY * u / n
        l1 = np.sqrt(np.sum((np.abs(Rs) + e_F) ** 2, axis=1))
    elif loss.name == "logistic":
        y = Y[:, 0]
        with np.errstate(over="ignore"):
            s = 1 / (1 + np.exp(y * F[:, 0]))      # sigma(-y f) in the working precision
        delta = (-y * s / n)[:, None]
        e_delta = (SAFETY * (e_F[:, 0] / 4 + 8 * u * s + 4 * u) / n)[:, None]
        Q = (s * (1 - s) / n)[:, None, None]
        e_Q = (SAFETY * (0.1 * e_F[:, 0] + 8 * u) / n)[:, None, None]
        l1 = np.ones(n)
    elif loss.name == "cross_entropy":
        P = softmax(F, axis=1)
        onehot = np.eye(C, dtype=F.dtype)[Y]
        delta = (P - onehot) / n
        e_P = 2 * e_F.max(axis=1) + (2 * C + 8) * u
        e_delta = SAFETY * np.broadcast_to(((e_P + 2 * u) / n)[:, None], (n, C)).copy()
        Q = (P[:, :, None] * np.eye(C)[None] - P[:, :, None] * P[:, None, :]) / n
        e_Q = SAFETY * np.broadcast_to(((3 * e_P + e_P ** 2 + 4 * u) / n)[:, None, None], (n, C, C)).copy()
        l1 = np.full(n, math.sqrt(2.0))
    else:
        vals, S = loss.pieces(F.astype(np.float64), problem.Y)
        choice = vals.argmax(axis=2)
        for i, g, a0, _ in held_loss:
            choice[i, g] = a0
        Sb = np.take_along_axis(S, choice[:, :, None, None], axis=2)[:, :, 0, :].sum(axis=1)
        delta = Sb.astype(F.dtype) / n
        e_delta = SAFETY * 2 * u * np.abs(Sb) / n
        l1 = np.sqrt(np.sum(Sb * Sb, axis=1))
    return delta, e_delta, Q, e_Q, l1 * (1 + 8 * u)


# ---------------------------------------------------------------------------- gauge
def gauge_families(problem: Problem, z: list, held_units, stored=None,
                   rel_rank: float = groups.REL_RANK) -> list | None:
    """The exact symmetry families at ``theta0`` (module docstring): ``(kind, l, j)`` and ``(kind, l, u, v)`` tuples.

    ``z[l-1]`` are the computed pre-activations; signs are read from them (the proof checks that
    every non-held pre-activation keeps its sign on the ball, so they are the exact signs). The
    generators mixing duplicated units (:mod:`certify.secondorder.groups`) come last, chosen so that
    every tangent is independent of the others at ``theta0`` (``rel_rank``: :func:`certify.secondorder.
    groups.select`).

    ``stored`` (a re-check): the families of a certificate, returned if they are families of this
    point -- the plain ones exactly these, each mixing generator one of a group found here, of the
    kind the weight decay allows, none twice -- and None otherwise. Which generators a proof uses is a
    float64 choice; any set of genuine symmetries gives a valid proof (transversality is checked).
    """
    net = problem.network
    wd = bool(problem.weight_decay)
    fams = [] if wd else _plain_families(problem, z, held_units)
    grps = groups.find_groups(net, z, held_units)
    if stored is not None:
        stored = [tuple(f) for f in stored]
        plain = [f for f in stored if f[0] not in (groups.GL, groups.O)]
        mixing = stored[len(plain):]
        allowed = {g.family for grp in grps for g in groups.candidates(grp, wd)}
        ok = (plain == fams and stored[:len(plain)] == plain and len(set(mixing)) == len(mixing)
              and all(f in allowed for f in mixing))
        return stored if ok else None
    if grps:
        basis = tangent_matrix(problem, net.theta, fams, z)
        fams += [g.family for g in groups.select(net, net.theta, grps, wd, basis=basis, rel_rank=rel_rank)]
    return fams


def _plain_families(problem: Problem, z: list, held_units) -> list:
    """Rescalings, translations, dead units and logit shifts (no weight decay)."""
    net = problem.network
    s_pos, s_neg = net.activation.slopes
    held = {(l, j) for l, _, j in held_units}
    fams = []
    if problem.loss.name in ("cross_entropy", "multiclass_hinge"):
        # the loss sees the logits only through their differences: f -> f + t 1 through the output
        # bias (j = n_{L-1}) or through a column j of W_L (adds t x^{L-1}_j to every logit)
        fams += [("logit_shift", net.n_layers, j) for j in range(net.widths[-2] + 1)]
    for l in range(1, net.n_layers):
        zl = z[l - 1]
        for j in range(zl.shape[1]):
            has_held = (l, j) in held
            col = zl[:, j]
            if s_neg == 0 and not has_held and np.all(col < 0):
                fams.append(("dead", l, j))
                continue
            W, Wn = net.weights[l - 1], net.weights[l]
            if np.any(W[j]) or net.biases[l - 1][j] != 0 or np.any(Wn[:, j]):
                fams.append(("orbit", l, j))
            one_slope = s_pos == s_neg or np.all(col > 0) or np.all(col < 0)
            if not has_held and one_slope:
                fams.append(("translation", l, j))
    return fams


def _unit_coords(net, l: int, j: int):
    """Flat indices of unit ``j`` of hidden layer ``l``: incoming (W row, bias) and outgoing column."""
    w0, b0 = net.offsets[l - 1]
    n_in = net.weights[l - 1].shape[1]
    wn0, _ = net.offsets[l]
    Wn = net.weights[l]
    inc = np.concatenate([w0 + j * n_in + np.arange(n_in), [b0 + j]])
    out = wn0 + np.arange(Wn.shape[0]) * Wn.shape[1] + j
    return inc, out


_EMPTY = np.zeros(0, dtype=np.int64)


def family_columns(problem: Problem, families, z: list) -> list:
    """Each family's tangent columns as affine maps of ``theta``: ``(src, dst, coef, const_idx)`` with
    ``T(theta)[dst] = coef * theta[src]`` plus ones at ``const_idx`` (a dead unit gives one column per
    coordinate). Within a column every source coordinate is read at most once."""
    net = problem.network
    s_pos, s_neg = net.activation.slopes
    cols = []
    for fam in families:
        kind, l, j = fam[0], fam[1], fam[2]
        if kind == "logit_shift":
            w0, b0 = net.offsets[l - 1]
            n_out, n_in = net.weights[l - 1].shape
            const = (b0 + np.arange(n_out)) if j == n_in else (w0 + np.arange(n_out) * n_in + j)
            cols.append((_EMPTY, _EMPTY, np.zeros(0), const))
        elif kind in (groups.GL, groups.O):
            src, dst, coef = groups.linear_map(net, fam)
            cols.append((src, dst, coef, _EMPTY))
        elif kind in ("dead", "orbit", "translation"):
            inc, out = _unit_coords(net, l, j)
            if kind == "dead":
                cols += [(_EMPTY, _EMPTY, np.zeros(0), np.array([idx])) for idx in np.concatenate([inc, out])]
            elif kind == "orbit":
                both = np.concatenate([inc, out])
                cols.append((both, both, np.concatenate([np.ones(inc.size), -np.ones(out.size)]), _EMPTY))
            else:
                slope = s_pos if z[l - 1][0, j] > 0 else s_neg
                _, bn0 = net.offsets[l]
                cols.append((out, bn0 + np.arange(out.size), np.full(out.size, -slope),
                             np.array([net.offsets[l - 1][1] + j])))
        else:
            raise ValueError(f"unknown symmetry family {fam!r}")
    return cols


def tangent_matrix(problem: Problem, theta: np.ndarray, families, z: list) -> np.ndarray:
    """Tangents ``T(theta)`` (p, r) of the families (affine in ``theta``; dead units and logit shifts constant)."""
    p = problem.network.n_params
    cols = family_columns(problem, families, z)
    T = np.zeros((p, len(cols)))
    for c, (src, dst, coef, const) in enumerate(cols):
        T[dst, c] = coef * theta[src]
        T[const, c] = 1.0
    return T


def tangent_lipschitz(problem: Problem, families, z: list, scales: np.ndarray) -> float:
    """``Lip >= ||(T(theta) - T(theta')) diag(scales)||_F / ||theta - theta'||`` for the families' tangents.

    ``T(a) - T(b)`` is the linear part applied to ``a - b``; a column reads each coordinate at most once,
    so ``||.||_F^2 = sum_c w_c (a - b)_c^2`` with ``w_c = sum_columns scale^2 coef^2`` over the columns
    that read ``c`` (a weight enters its own rescaling, the next layer's unit's rescaling, a translation
    with its slope, and the generators of the groups it belongs to). ``Lip = sqrt(max_c w_c)``.
    """
    w = np.zeros(problem.network.n_params)
    cols = family_columns(problem, families, z)
    for (src, _, coef, _), s in zip(cols, scales):
        np.add.at(w, src, (float(s) * coef) ** 2)
    return up(math.sqrt(float(w.max(initial=0.0))), len(cols) + 8)     # a sum of <= len(cols) rounded squares


def _column_scales(T: np.ndarray) -> np.ndarray:
    """Powers of two bringing every column of ``T`` to norm ~1 (exact rescaling)."""
    norms = np.linalg.norm(T, axis=0)
    return 2.0 ** -np.round(np.log2(np.where(norms > 0, norms, 1.0)))


def choose_pivots(T: np.ndarray, rows: np.ndarray | None = None) -> list:
    """Coordinates fixed by the slice: QR with column pivoting on the column-scaled ``T^T``.

    With the held kinks' switching rows (m, p), ``m`` coordinates that keep them independent (QR with
    column pivoting on the row-normalised rows) are left free first: the families' tangents lie in the
    tangent space of the held surface, and a slice that fixed every coordinate a switching function
    reads (e.g. the whole incoming row of a unit mixed with its duplicate) would break LIKQ on it.
    """
    r = T.shape[1]
    if r == 0:
        return []
    allowed = np.arange(T.shape[0])
    if rows is not None and rows.shape[0]:
        rn = np.linalg.norm(rows, axis=1)
        _, _, kp = sla.qr(rows / np.where(rn > 0, rn, 1.0)[:, None], pivoting=True, mode="economic")
        rest = np.setdiff1d(allowed, kp[:rows.shape[0]])
        if rest.size >= r:
            allowed = rest
    _, _, piv = sla.qr((T * _column_scales(T))[allowed].T, pivoting=True, mode="economic")
    return sorted(int(allowed[c]) for c in piv[:r])


# ---------------------------------------------------------------------------- the proof
class _Fail(Exception):
    """The proof cannot be completed; ``applicable`` says whether the point was in scope."""

    def __init__(self, reason: str, applicable: bool = True, data: dict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.applicable = applicable
        self.data = data or {}


def _check_time(deadline):
    if deadline is not None and time.perf_counter() > deadline:
        raise _Fail("the time budget ran out during the nearby proof", data={"out_of_time": True})


def _layer_norms(net, rho: float, s_max: float):
    """Per layer: ``||[W b]||_2``, ``||W||_2`` upper bounds and the row norms of ``[W b]``."""
    hat, plain, rows = [], [], []
    for W, b in zip(net.weights, net.biases):
        Wh = np.column_stack([W, b])
        hat.append(bounds.norm2_upper(Wh))
        plain.append(bounds.norm2_upper(W))
        rows.append(np.sqrt(np.sum(Wh * Wh, axis=1)) * (1 + 4 * gamma(Wh.shape[1] + 2)))
    return hat, plain, rows


def _ball_bounds(net, norms, rho: float, s_max: float):
    """Chain derivative bounds on the ball of radius ``rho``: the output ``f`` and every unit's
    pre-activation (``unit[l][j]`` = ``[B0..B3]``), per unit of input norm (times ``||x^_i||``)."""
    hat, _, rows = norms
    L = net.n_layers
    hidden_m = [math.sqrt((s_max * (hat[l] + rho)) ** 2 + 1.0) * (1 + 4 * U) for l in range(L - 1)]
    hidden_a = [s_max] * (L - 1)
    f = bounds.chain_derivative_bounds(hidden_m + [hat[L - 1] + rho], hidden_a + [1.0])
    unit = []
    for l in range(1, L):
        per = [bounds.chain_derivative_bounds(hidden_m[:l - 1] + [float(rn) + rho], hidden_a[:l - 1] + [1.0])
               for rn in rows[l - 1]]
        unit.append(np.array(per))
    return f, unit


def _adjoint_chain(net, norms, l: int, rho: float, s_max: float, upto: int | None = None, row: int | None = None):
    """Bounds ``[B0, B1]`` on ``v = d f / d x^l_j`` (layers ``l+1..L`` with fixed slopes) over the ball;
    with ``upto = lp`` and ``row`` (``l < lp``), on ``d z^lp_row / d x^l_j`` instead (the chain ends at
    row ``row`` of ``W_lp``: a held kink downstream of unit ``j`` in the same sample)."""
    _, plain, rows = norms
    last = net.n_layers if upto is None else upto
    m, a = [], []
    for lp in range(l + 1, last + 1):
        if lp > l + 1:
            m.append(s_max)
            a.append(0.0)
        m.append((rows[lp - 1][row] if upto is not None and lp == last else plain[lp - 1]) + rho)
        a.append(1.0)
    return bounds.chain_derivative_bounds(m, a, kmax=1)


def _establish_gauges(problem: Problem, pre: list, held_units, held_loss, *, deadline=None) -> dict:
    """:func:`_establish` with the mixing generators chosen at each cut of :data:`certify.secondorder.groups.
    RANK_CUTS` in turn (finest first; a cut that selects the same families is skipped): near duplicated
    units that are exactly proportional at ``theta*`` (a stabiliser), a perturbed ``theta0`` has
    generators whose tangents are independent only at the size of the perturbation. ``pre``: float64
    pre-activations, for the preview of the selection only (the proof recomputes its own)."""
    tried, first = [], None
    for cut in groups.RANK_CUTS:
        preview = gauge_families(problem, pre, held_units, rel_rank=cut)
        if preview in tried:
            continue
        tried.append(preview)
        try:
            return _establish(problem, held_units, held_loss, deadline=deadline, rel_rank=cut)
        except _Fail as exc:
            if first is None:
                first = exc
            else:
                n_mix = sum(1 for f_ in preview if f_[0] in (groups.GL, groups.O))
                first.reason += f"; with {n_mix} mixing generator(s) (rank cut {cut:g}): {exc.reason}"
            if exc.data.get("out_of_time") or not exc.applicable:
                break
    raise first


def _establish(problem: Problem, held_units, held_loss, *, families=None, pivots=None, alpha_exp=None,
               nu=None, deadline=None, rel_rank: float = groups.REL_RANK) -> dict:
    """Run the proof of the module docstring for one held structure; raise :class:`_Fail` if it fails.

    ``families``, ``pivots``, ``alpha_exp`` and ``nu`` are chosen here when None (the prover) and
    taken as given when stored in a certificate (the re-check; any choice gives a valid proof).
    Stages: :func:`_first_order` (values, rows, gradient at ``x0`` with rounding bounds),
    :func:`_kkt_matrix` (``F'(x0)``), :func:`_existence` (Newton–Kantorovich radius),
    :func:`_margins` (sides, multipliers, transversality on the ball), :func:`_inertia`.
    """
    t0 = time.perf_counter()
    st = SimpleNamespace(problem=problem, timings={}, deadline=deadline)
    _first_order(st, held_units, held_loss, families, pivots, nu, rel_rank)
    st.timings["first_order_s"] = time.perf_counter() - t0
    _check_time(deadline)
    t = time.perf_counter()
    _kkt_matrix(st, alpha_exp)
    st.timings["hessian_s"] = time.perf_counter() - t
    _check_time(deadline)
    t = time.perf_counter()
    try:
        _existence(st)
        st.timings["existence_s"] = time.perf_counter() - t
        _check_time(deadline)
        t = time.perf_counter()
        _margins(st)
        st.timings["margins_s"] = time.perf_counter() - t
        t = time.perf_counter()
        _inertia(st)
        st.timings["inertia_s"] = time.perf_counter() - t
    except _Fail as exc:
        if getattr(st, "theta_newton", None) is not None:
            exc.data.update(theta_newton=st.theta_newton, nu_newton=st.nu_newton,
                            eta=getattr(st, "eta", exc.data.get("eta", math.inf)))
        raise
    st.timings["total_s"] = time.perf_counter() - t0
    return _summary(st)


def _first_order(st, held_units, held_loss, families, pivots, nu, rel_rank=groups.REL_RANK) -> None:
    """At ``x0``: forward values, loss sources, switching values and rows, gauge, centre multipliers,
    the Lagrangian's gradient (in extended precision), each with its rounding bound."""
    problem = st.problem
    net = problem.network
    st.net = net
    st.L, st.n, st.C, st.p = net.n_layers, problem.n_samples, net.n_outputs, net.n_params
    L, n, C, p = st.L, st.n, st.C, st.p
    st.s_pos, st.s_neg = net.activation.slopes
    st.s_max = max(abs(st.s_pos), abs(st.s_neg))
    st.wd = problem.weight_decay
    st.theta0 = net.theta
    st.held_units = held_units = tuple(tuple(int(v) for v in k) for k in held_units)
    st.held_loss = held_loss = tuple(tuple(int(v) for v in k) for k in held_loss)
    st.mU, st.mL = mU, mL = len(held_units), len(held_loss)
    st.m = m = mU + mL
    why = scope_reason(problem, held_units, held_loss)
    if why:
        raise _Fail(f"not applicable: {why}", applicable=False)
    if not net.activation.has_kink and mU:
        raise _Fail("not applicable: a unit kink of an activation without a kink", applicable=False)
    for l, i, j in held_units:
        if not (1 <= l < L and 0 <= i < n and 0 <= j < net.widths[l]):
            raise _Fail(f"held kink (layer {l}, sample {i}, unit {j}) is not a hidden unit of this network")

    # forward pass of the base piece: float64 (rows, Hessian) and extended precision (residual, signs)
    D = base_slopes(problem, held_units)
    st.progs = progs = Programs(net.weights, net.biases, problem.X, D)
    px = Programs(net.weights, net.biases, problem.X, D, dtype=np.longdouble)
    gam, gx, ux = progs.gamma, px.gamma, px.u
    z_ld, _ = px.forward()
    _check_time(st.deadline)
    z_ld_abs, _ = px.forward(absolute=True)
    _check_time(st.deadline)
    st.z = [np.asarray(v, dtype=np.float64) for v in z_ld]
    st.e_z = [np.asarray(px.abs_to_bound(gx * va), dtype=np.float64) * (1 + 4 * U) + 2 * U * np.abs(v)
              for v, va in zip(st.z, z_ld_abs)]
    F_ld, e_F_ld = z_ld[-1], px.abs_to_bound(gx * z_ld_abs[-1])
    st.F, st.e_F = st.z[-1], st.e_z[-1]
    delta_x, e_delta_x, _, _, l1_at = _loss_sources(problem, F_ld, e_F_ld, held_loss, ux)
    st.l1_at = np.asarray(l1_at, dtype=np.float64) * (1 + 4 * U)
    zd, _ = progs.forward()
    zd_abs, _ = progs.forward(absolute=True)
    F_d, e_F_d = zd[-1], progs.abs_to_bound(gam * zd_abs[-1])
    delta, e_delta, st.Q, st.e_Q, _ = _loss_sources(problem, F_d, e_F_d, held_loss, U)
    _check_time(st.deadline)

    # switching functions: values (extended precision) and rows (float64)
    rows, rows_abs = np.zeros((m, p)), np.zeros((m, p))
    phi, e_phi = np.zeros(m), np.zeros(m)
    for l in sorted({k[0] for k in held_units}):
        ks = [t for t, k in enumerate(held_units) if k[0] == l]
        smp = np.array([held_units[t][1] for t in ks])
        unit = np.array([held_units[t][2] for t in ks])
        seeds = np.eye(net.widths[l])[unit]
        rows[ks] = progs.rows(l, smp, seeds)
        rows_abs[ks] = progs.rows(l, smp, seeds, absolute=True)
        phi[ks] = st.z[l - 1][smp, unit]
        e_phi[ks] = st.e_z[l - 1][smp, unit]
    st.w_loss = w_loss = np.zeros((mL, C))
    if mL:
        v_off, S = piece_offsets(problem)
        for q, (i, g, a0, a1) in enumerate(held_loss):
            if not (0 <= i < n and 0 <= g < S.shape[1] and 0 <= a0 < S.shape[2] and 0 <= a1 < S.shape[2]):
                raise _Fail(f"held loss kink {held_loss[q]} does not fit this loss")
            w_loss[q] = S[i, g, a1] - S[i, g, a0]
        smp = np.array([k[0] for k in held_loss])
        dv = np.array([v_off[i, g, a1] - v_off[i, g, a0] for i, g, a0, a1 in held_loss])
        rows[mU:] = progs.rows(L, smp, w_loss)
        rows_abs[mU:] = progs.rows(L, smp, w_loss, absolute=True)
        w_ld = w_loss.astype(np.longdouble)
        psi = dv.astype(np.longdouble) + np.sum(w_ld * F_ld[smp], axis=1)
        e_psi = np.sum(np.abs(w_ld) * e_F_ld[smp], axis=1) + SAFETY * gamma(C + 3, ux) * (
            np.abs(dv) + np.sum(np.abs(w_ld * F_ld[smp]), axis=1))
        phi[mU:] = np.asarray(psi, dtype=np.float64)
        e_phi[mU:] = np.asarray(e_psi, dtype=np.float64) * (1 + 4 * U) + 2 * U * np.abs(phi[mU:])
    g_rows = np.array([progs.rows_gamma(l) for l, _, _ in held_units] + [progs.rows_gamma(L)] * mL)
    st.rows, st.e_rows = rows, progs.abs_to_bound(g_rows[:, None] * rows_abs)
    st.phi, st.e_phi = phi, e_phi

    _check_time(st.deadline)
    # gauge and slice
    st.families = fams = gauge_families(problem, st.z, held_units, stored=families, rel_rank=rel_rank)
    if fams is None:
        raise _Fail("the symmetry families stored do not match the data")
    st.T0 = tangent_matrix(problem, st.theta0, fams, st.z)
    r_dim = st.T0.shape[1]
    _check_time(st.deadline)
    pivots = choose_pivots(st.T0, rows) if pivots is None else pivots
    _check_time(st.deadline)
    st.pivots = pivots = sorted(int(c) for c in pivots)
    if len(pivots) != r_dim or len(set(pivots)) != r_dim or any(not 0 <= c < p for c in pivots):
        raise _Fail(f"the slice needs {r_dim} distinct pivot coordinates; got {len(pivots)}")
    st.J = J = np.setdiff1d(np.arange(p), pivots)
    st.nJ = J.size
    if m > st.nJ:
        raise _Fail(f"LIKQ fails: {m} held kinks but only {st.nJ} free coordinates", applicable=False)

    # centre multipliers (least squares on the slice) and the injections they define
    if nu is None:
        g_b, _ = progs.gradient(delta)
        if st.wd:
            g_b = g_b + st.wd * st.theta0
        nu = -np.linalg.lstsq(rows[:, J].T, g_b[J], rcond=None)[0] if m else np.zeros(0)
        _check_time(st.deadline)
    st.nu = nu = np.asarray(nu, dtype=np.float64).ravel()
    if nu.size != m or not np.all(np.isfinite(nu)):
        raise _Fail(f"{nu.size} multipliers for {m} held kinks")
    inj = [None] * (L - 1)
    for k, (l, i, j) in enumerate(held_units):
        if inj[l - 1] is None:
            inj[l - 1] = np.zeros((n, net.widths[l]))
        inj[l - 1][i, j] = nu[k]
    inj_out = np.zeros((n, C))
    for q, (i, *_rest) in enumerate(held_loss):
        inj_out[i] += nu[mU + q] * w_loss[q]
    st.inj = inj
    st.delta_tot = delta + inj_out                      # float64 sources of the Hessian program
    e_tot = e_delta + U * (np.abs(st.delta_tot) + np.abs(inj_out))
    st.e_delta_tot = e_tot
    st.src_delta = gam * np.abs(st.delta_tot) + e_tot
    st.src_inj = [None if a is None else gam * np.abs(a) for a in inj]

    # the Lagrangian's gradient in extended precision, and the loss adjoints at the held units
    inj_x = [None if a is None else a.astype(np.longdouble) for a in inj]
    delta_tot_x = delta_x + inj_out.astype(np.longdouble)
    e_tot_x = e_delta_x + ux * (np.abs(delta_tot_x) + np.abs(inj_out))
    g_ld, adj = px.gradient(delta_tot_x, inj_x)
    _check_time(st.deadline)
    g_abs, adj_abs = px.gradient(gx * np.abs(delta_tot_x) + e_tot_x,
                                 [None if a is None else gx * np.abs(a) for a in inj_x], absolute=True)
    if st.wd:
        th_ld = st.theta0.astype(np.longdouble)
        g_ld = g_ld + np.longdouble(st.wd) * th_ld
        g_abs = g_abs + gx * np.longdouble(st.wd) * np.abs(th_ld)
    st.g = np.asarray(g_ld, dtype=np.float64)
    st.e_g = np.asarray(px.abs_to_bound(g_abs), dtype=np.float64) * (1 + 4 * U) + 2 * U * np.abs(st.g)
    st.c_unit = np.array([float(adj[l - 1][i, j]) for l, i, j in held_units])
    st.e_c = np.array([float(px.abs_to_bound(adj_abs[l - 1][i, j])) * (1 + 4 * U) for l, i, j in held_units])
    st.e_c = st.e_c + 2 * U * np.abs(st.c_unit)
    _multiplier_scope(st)


def _multiplier_scope(st) -> None:
    """Convex kinks with a nonzero coefficient and a multiplier inside its interval (else not applicable)."""
    st.ds = st.s_pos - st.s_neg
    st.ds_lb = st.ds * (1 - 2 * U)
    for k, (l, i, j) in enumerate(st.held_units):
        c = st.c_unit[k]
        where = f"(layer {l}, sample {i}, unit {j})"
        if abs(c) <= st.e_c[k]:
            raise _Fail(f"not applicable: held kink {where} has a zero coefficient (|c| = {abs(c):.3g} within its "
                        f"rounding bound)", applicable=False)
        if c < 0:
            raise _Fail(f"not applicable: concave kink {where}", applicable=False)
        lam = 1.0 + st.nu[k] / (st.ds * c)
        if not ENDPOINT_REL < lam < 1 - ENDPOINT_REL:
            raise _Fail(f"not applicable: the multiplier of kink {where} is at or beyond an endpoint "
                        f"(lambda = {lam:.6g})", applicable=False)
    for q, (i, *_r) in enumerate(st.held_loss):
        lam = st.n * st.nu[st.mU + q]
        if not ENDPOINT_REL < lam < 1 - ENDPOINT_REL:
            raise _Fail(f"not applicable: the multiplier of the loss kink at sample {i} is at or beyond an "
                        f"endpoint (lambda = {lam:.6g})", applicable=False)


def _kkt_matrix(st, alpha_exp) -> None:
    """``F(x0)`` and ``F'(x0) = [[A, B^T], [B, 0]]`` on the slice, with their rounding bounds."""
    p, J, nJ, m, wd, progs = st.p, st.J, st.nJ, st.m, st.wd, st.progs
    EJ = np.zeros((p, nJ))
    EJ[J, np.arange(nJ)] = 1.0
    Q_src = None if st.Q is None else progs.gamma * np.abs(st.Q) + st.e_Q
    try:
        H = bounds.hvp_blocks(progs, st.delta_tot, st.Q, st.inj, EJ, deadline=st.deadline)
        H_abs = bounds.hvp_blocks(progs, st.src_delta, Q_src, st.src_inj, EJ, absolute=True, deadline=st.deadline)
    except TimeoutError:
        raise _Fail("the time budget ran out during the nearby proof (Hessian of the Lagrangian)",
                    data={"out_of_time": True}) from None
    if wd:
        H = H + wd * EJ
        H_abs = H_abs + progs.gamma * wd * EJ
    E_H = progs.abs_to_bound(H_abs)
    A, E_A = H[J], E_H[J]
    rows_J, e_rows_J = st.rows[:, J], st.e_rows[:, J]
    if alpha_exp is None:
        # balance the blocks: alpha_k ||row_k|| ~ the Hessian's size; when the Hessian vanishes (a vertex of
        # a piecewise-linear loss) or nearly, the size of the terms it sums (its absolute-value twin) sets it
        terms = float(np.linalg.norm(H_abs[J])) / max(progs.gamma, 1e-300)
        s_H = max(float(np.linalg.norm(A)), 1e-3 * terms) / math.sqrt(max(nJ, 1))
        s_H = s_H if s_H > 0 else 1.0
        rn = np.linalg.norm(rows_J, axis=1)
        if m and np.any(rn == 0):
            raise _Fail("LIKQ fails: a held kink's switching function has a zero gradient on the slice",
                        applicable=False)
        alpha_exp = [int(np.round(np.log2(s_H / v))) for v in rn]
    st.alpha_exp = alpha_exp = [int(e) for e in alpha_exp]
    if len(alpha_exp) != m:
        raise _Fail(f"{len(alpha_exp)} scale exponents stored for {m} held kinks")
    st.alpha = alpha = np.array([2.0 ** e for e in alpha_exp])
    B, E_B = alpha[:, None] * rows_J, alpha[:, None] * e_rows_J
    N = nJ + m
    Fp = np.zeros((N, N))
    Fp[:nJ, :nJ] = A
    Fp[:nJ, nJ:] = B.T
    Fp[nJ:, :nJ] = B
    st.A, st.B, st.Fp = A, B, Fp
    st.e_Fp = math.sqrt(bounds.fro(E_A) ** 2 + 2 * bounds.fro(E_B) ** 2)
    st.f = np.concatenate([st.g[J], alpha * st.phi])
    st.e_f = np.concatenate([st.e_g[J], alpha * st.e_phi])


def _existence(st) -> None:
    """Urabe / Newton–Kantorovich: ``R``, ``kappa0``, ``eta``, ``K`` and the radius (docstring, (1)).

    ``R = V diag(1/w) V^T`` from the eigendecomposition of ``F'(x0)`` (which the inertia certificate
    needs anyway); ``||R||_2 <= (1 + kappa0) ||F'(x0)^-1||`` (``R - F'^-1 = (R F' - I) F'^-1``) with the
    bound on ``||F'(x0)^-1||`` of :func:`certify.bounds.inertia`; the residual's rounding enters
    elementwise, ``|R e| <= |R| e``.
    """
    Fp, nJ, m, f = st.Fp, st.nJ, st.m, st.f
    N = Fp.shape[0]
    if N == 0:
        raise _Fail("no free coordinate and no held kink: the gauge fixes every coordinate, so there is no "
                    "KKT system to solve")
    singular = "the KKT matrix F'(x0) is singular (flat directions beyond the symmetries, or LIKQ fails)"
    Ks = 0.5 * (Fp + Fp.T)
    try:
        w, V = np.linalg.eigh(Ks)
    except np.linalg.LinAlgError:
        raise _Fail(singular) from None
    st.eig = (w, V)
    w_min = float(np.abs(w).min()) if N else math.inf
    if not (w_min > 0 and np.all(np.isfinite(w))) or w_min <= 1e-300 * max(float(np.abs(w).max()), 1.0):
        raise _Fail(singular + _flat_hint(Fp, st.J, st.net))
    R = (V / w) @ V.T
    Rf = R @ f
    st.theta_newton = st.theta0.copy()
    st.theta_newton[st.J] = st.theta0[st.J] - Rf[:nJ]
    st.nu_newton = st.nu - st.alpha * Rf[nJ:] if m else np.zeros(0)
    Dm = np.eye(N) - R @ Fp
    err_RF = bounds.product_error(R, Fp)
    if err_RF > 1e-3:
        err_RF = bounds.product_error(R, Fp, tight=True)
    absR = np.abs(R)
    norm_R_crude = min(bounds.fro(R), up(math.sqrt(float(absR.sum(axis=0).max()) * float(absR.sum(axis=1).max())),
                                         2 * N + 8))
    st.kappa0 = kappa0 = up(bounds.fro(Dm) * (1 + U) + err_RF + norm_R_crude * st.e_Fp)
    if not kappa0 < 1:
        raise _Fail(f"the KKT matrix is too ill-conditioned for the rounding bounds (||I - R F'|| <= {kappa0:.3g} "
                    f"is not < 1): flat directions beyond the symmetries, or LIKQ nearly fails"
                    + _flat_hint(Fp, st.J, st.net), data={"kappa0": kappa0})
    # the spectrum of F'(x0), certified (also the second-order argument, _inertia)
    st.inert = bounds.inertia(Fp, st.e_Fp, eig=st.eig)
    norm_R = min(norm_R_crude, up((1 + kappa0) * st.inert["inv_norm"]))
    st.norm_R = norm_R
    # eta: |R F(x0) - fl(R f)| <= gamma_N |R| |f| + |R| e_f, elementwise
    err_vec = absR @ (SAFETY * gamma(N + 2) * np.abs(f) + st.e_f) * (1 + 2 * gamma(N + 2))
    st.eta_y = up(bounds.fro(Rf[:nJ]) + bounds.fro(err_vec[:nJ]))
    st.eta_nu = up(bounds.fro(Rf[nJ:]) + bounds.fro(err_vec[nJ:])) if m else 0.0
    st.eta = eta = up(math.hypot(st.eta_y, st.eta_nu))
    st.norms = _layer_norms(st.net, 0.0, st.s_max)
    st.Xhat = np.sqrt(np.sum(st.problem.X ** 2, axis=1) + 1.0) * (1 + 4 * gamma(st.problem.X.shape[1] + 3))
    one = 1.0 - kappa0
    rho = max(2.0 * eta / one, 1e-300)
    for _ in range(8):
        K, Bf, Bu, l1 = _lipschitz(st, rho)
        h = up(norm_R * K)
        disc = one * one - 2.0 * h * eta
        if not disc > SLACK * one * one:
            raise _Fail(f"too far from a KKT point for the proof: h = beta K eta = {h * eta / one ** 2:.3g} is not "
                        f"below 1/2 (eta = {eta:.3g}, K = {K:.3g})", data={"eta": eta, "K": K, "kappa0": kappa0})
        r = 2.0 * eta / (one + math.sqrt(disc)) * (1 + SLACK)
        if r <= rho:
            break
        rho = 2.0 * r
    else:
        raise _Fail("the existence radius did not settle inside the ball of the Lipschitz bound")
    st.K, st.h, st.r, st.rho, st.Bf, st.Bu, st.l1 = K, h, r, rho, Bf, Bu, l1
    st.contraction = kappa0 + h * r
    st.unique_radius = rho if kappa0 + h * rho < 1 else r
    st.r_y = min(r, up(st.eta_y + (kappa0 + h * r / 2) * r))
    st.r_nu = min(r, up(st.eta_nu + (kappa0 + h * r / 2) * r)) if m else 0.0


def _lipschitz(st, rho: float):
    """``K >= sup ||F''||`` on ``B(x0, rho)`` (docstring), with the chain bounds it used."""
    n, m, mU = st.n, st.m, st.mU
    l2, l3 = bounds.loss_derivative_sup(st.problem.loss.name)
    Bf, Bu = _ball_bounds(st.net, st.norms, rho, st.s_max)
    Xhat = st.Xhat
    l1 = st.l1_at + (Bf[1] * Xhat * rho if st.problem.loss.name == "square" else 0.0)
    T_L = float(np.sum(l3 * (Bf[1] * Xhat) ** 3 + 3 * l2 * Bf[1] * Bf[2] * Xhat ** 2 + l1 * Bf[3] * Xhat)) / n
    S_k, T_k = np.zeros(m), np.zeros(m)
    for k, (l, i, j) in enumerate(st.held_units):
        S_k[k] = Bu[l - 1][j, 2] * Xhat[i]
        T_k[k] = Bu[l - 1][j, 3] * Xhat[i]
    w_norm = np.sqrt(np.sum(st.w_loss ** 2, axis=1))
    for q, (i, *_r) in enumerate(st.held_loss):
        S_k[mU + q] = w_norm[q] * Bf[2] * Xhat[i]
        T_k[mU + q] = w_norm[q] * Bf[3] * Xhat[i]
    K = T_L + float(np.sum((np.abs(st.nu) + st.alpha * rho) * T_k)) + 3 * math.sqrt(float(np.sum((st.alpha * S_k) ** 2)))
    return up(K, 4 * (n + m) + 16), Bf, Bu, l1


def _margins(st) -> None:
    """On the ``theta``-ball of radius ``r_theta``: free pre-activations and loss pieces keep their side,
    the multipliers at ``x*`` are inside their intervals, the slice is transversal (docstring (2)-(4))."""
    n, L, r_theta = st.n, st.L, st.r_y
    Bf, Bu, Xhat = st.Bf, st.Bu, st.Xhat
    st.pre_margin, st.pre_where = math.inf, None
    for l in range(1, L if st.net.activation.has_kink else 1):   # an activation without a kink has no sides
        marg = np.abs(st.z[l - 1]) - st.e_z[l - 1] - (Xhat[:, None] * Bu[l - 1][:, 1][None, :]) * r_theta
        for (hl, hi, hj) in st.held_units:
            if hl == l:
                marg[hi, hj] = math.inf
        if marg.size:
            idx = np.unravel_index(int(np.argmin(marg)), marg.shape)
            if marg[idx] < st.pre_margin:
                st.pre_margin, st.pre_where = float(marg[idx]), (l, int(idx[0]), int(idx[1]))
    if not st.pre_margin > 0:
        l, i, j = st.pre_where
        raise _Fail(f"a pre-activation left free may reach its kink within the radius: unit {j} of layer {l} at "
                    f"sample {i} (|z| = {abs(st.z[l - 1][i, j]):.3g}, radius {r_theta:.3g})",
                    data={"near_kink": ("unit", l, i, j), "radius": r_theta})
    st.loss_margin = math.inf
    loss = st.problem.loss
    if loss.piecewise_linear:
        st.loss_margin, where = _loss_piece_margin(st, r_theta)
        if not st.loss_margin > 0:
            raise _Fail(f"a loss piece left free may tie within the radius (sample {where[0]}, group {where[1]})",
                        data={"near_kink": ("loss",) + where, "radius": r_theta})
    # multipliers at x*: |nu*_k - nu_k| <= alpha_k r_nu
    l2, _ = bounds.loss_derivative_sup(loss.name)
    st.mult = []
    nested = _nested_sources(st)
    below = {}
    for km, (lm, im, jm) in enumerate(st.held_units):
        below.setdefault(im, []).append((km, lm, jm))
    for k, (l, i, j) in enumerate(st.held_units):
        Bv = _adjoint_chain(st.net, st.norms, l, st.rho, st.s_max)
        drift = (l2 * Bf[1] * Xhat[i] * Bv[0] + st.l1[i] * Bv[1]) / n * (1 + 8 * U) * r_theta
        if i in nested:
            # the unit's coefficient is the adjoint of the multiplier-mixed loss slope m_i (docstring,
            # Nested): |c(x*) - c(x0)| <= |m_i| |D* - D0| + |m_i* - m_i| |D*|
            m_norm, dm = nested[i]
            drift = up(m_norm * Bv[1] * r_theta + dm * st.r_nu * Bv[0], 8)
        for km, lm, jm in below.get(i, ()):
            if lm > l:
                # a held unit kink downstream of this one in the same sample: its injection nu_m K_m
                # (K_m = d z_m / d x^l_j on the base piece) is part of the coefficient (docstring,
                # Nested): |nu*_m K*_m - nu_m K_m| <= |nu*_m - nu_m| |K*_m| + |nu_m| |K*_m - K_m|
                Bk = _adjoint_chain(st.net, st.norms, l, st.rho, st.s_max, upto=lm, row=jm)
                drift = up(drift + st.alpha[km] * st.r_nu * Bk[0] + abs(st.nu[km]) * Bk[1] * r_theta, 4)
        c_lo = st.c_unit[k] - st.e_c[k] - drift
        if not c_lo > 0:
            raise _Fail(f"the coefficient of kink (layer {l}, sample {i}, unit {j}) is not provably positive on "
                        f"the ball (lower bound {c_lo:.3g})")
        gam_lo = st.ds_lb * c_lo
        st.mult.append({"kink": ["unit", l, i, j], "nu": float(st.nu[k]), "gamma_lower": gam_lo,
                        "margin_low": st.nu[k] - st.alpha[k] * st.r_nu + gam_lo,
                        "margin_high": -(st.nu[k] + st.alpha[k] * st.r_nu)})
    inv_n = (1.0 / n) * (1 - 2 * U)
    for q, (i, g, a0, a1) in enumerate(st.held_loss):
        k = st.mU + q
        st.mult.append({"kink": ["loss", i, g, a0, a1], "nu": float(st.nu[k]), "gamma_lower": inv_n,
                        "margin_low": st.nu[k] - st.alpha[k] * st.r_nu,
                        "margin_high": inv_n - st.nu[k] - st.alpha[k] * st.r_nu})
    for mm in st.mult:
        scale = abs(mm["gamma_lower"])
        if not (mm["margin_low"] > SLACK * scale and mm["margin_high"] > SLACK * scale):
            raise _Fail(f"the multiplier of kink {mm['kink']} is not provably inside its interval on the ball "
                        f"(margins {mm['margin_low']:.3g}, {mm['margin_high']:.3g})")
    # transversality of the slice to the symmetry orbits at theta*
    st.transversal = math.inf
    if st.T0.shape[1]:
        scales = _column_scales(st.T0)
        Ts = (st.T0 * scales)[st.pivots]
        e_T = U * bounds.fro(Ts) if st.s_neg not in (0.0, 1.0, -1.0) else 0.0
        sig = bounds.sigma_min_lower(Ts, e_T)
        drift = up(tangent_lipschitz(st.problem, st.families, st.z, scales) * r_theta)
        st.transversal = sig - drift
        if not st.transversal > 0:
            raise _Fail(f"the slice is not provably transversal to the symmetry orbits (sigma_min {sig:.3g}, "
                        f"drift {drift:.3g})")


def _nested_sources(st) -> dict:
    """Samples with a held unit kink and a held loss kink: ``i -> (|m_i|, sum_q alpha_q |w_q|)``, the
    norm of the multiplier-mixed loss slope ``m_i = delta_i + sum_q nu_q w_q`` (an upper bound with its
    rounding) and the factor by which it moves when the multipliers move by ``r_nu`` (in units of
    ``alpha``). The loss is piecewise linear there (:func:`scope_reason`): ``delta_i`` is constant."""
    unit_samples = {i for _, i, _ in st.held_units}
    out = {}
    for q, (i, *_r) in enumerate(st.held_loss):
        if i not in unit_samples:
            continue
        w_norm = float(np.linalg.norm(st.w_loss[q])) * (1 + 4 * U)
        m_norm, dm = out.get(i, (None, 0.0))
        out[i] = (m_norm, dm + st.alpha[st.mU + q] * w_norm)
    for i in out:
        m_abs = np.abs(st.delta_tot[i]) + st.e_delta_tot[i]
        out[i] = (float(np.linalg.norm(m_abs)) * (1 + 8 * U), out[i][1])
    return out


def _loss_piece_margin(st, r_theta: float):
    """Least margin by which an active loss piece stays above every other piece of its group on the
    ball: ``(v_a - v_b) + (S_a - S_b) . f_i`` minus its rounding bound minus ``||S_a - S_b|| ||df_i||``."""
    F, e_F, C = st.F, st.e_F, st.C
    vals, S = st.problem.loss.pieces(F, st.problem.Y)
    v_off, _ = piece_offsets(st.problem)
    n, G, P = vals.shape
    first = vals.argmax(axis=2)
    second = first.copy()
    held = np.zeros((n, G), dtype=bool)
    for i, g, a0, a1 in st.held_loss:
        first[i, g], second[i, g], held[i, g] = a0, a1, True
    df = st.Bf[1] * st.Xhat * r_theta * (1 + 4 * U)                  # bound on ||f_i(theta) - f_i(theta0)||
    g_C = SAFETY * gamma(C + 3)
    best, where = math.inf, None
    for act in (first, second):
        Sa = np.take_along_axis(S, act[:, :, None, None], axis=2)       # (n, G, 1, C)
        va = np.take_along_axis(v_off, act[:, :, None], axis=2)        # (n, G, 1)
        dS, dv = Sa - S, va - v_off                                     # (n, G, P, C), (n, G, P)
        gap = dv + np.einsum("ngpc,nc->ngp", dS, F)
        e_gap = np.einsum("ngpc,nc->ngp", np.abs(dS), e_F) + g_C * (np.abs(dv) + np.einsum("ngpc,nc->ngp", np.abs(dS),
                                                                                             np.abs(F)))
        marg = gap - e_gap - np.sqrt(np.sum(dS * dS, axis=3)) * df[:, None, None]
        pidx = np.arange(P)[None, None, :]
        marg[(pidx == first[:, :, None]) | (held[:, :, None] & (pidx == second[:, :, None]))] = math.inf
        k = int(np.argmin(marg))
        if marg.size and marg.flat[k] < best:
            i, g, b = np.unravel_index(k, marg.shape)
            best, where = float(marg.flat[k]), (int(i), int(g), int(act[i, g]), int(b))
    return best, where


def _inertia(st) -> None:
    """Second order: ``F'(x0)`` has inertia ``(|J|, m, 0)`` (docstring (5)); with (i) it carries to ``x*``."""
    inert = st.inert
    st.curv_est = _reduced_estimate(st.A, st.B)
    if not inert["certified"]:
        raise _Fail(f"the inertia of the KKT matrix could not be certified above the rounding bounds (least "
                    f"|eigenvalue| {float(np.abs(inert['w']).min()):.3g}, error bound {inert['error']:.3g})",
                    data={"reduced_min_eigenvalue": st.curv_est})
    if inert["n_neg"] != st.m or inert["n_pos"] != st.nJ:
        raise _Fail(f"the reduced Lagrangian Hessian is not positive definite on the tangent space of the held "
                    f"kinks modulo symmetry: the KKT matrix has {inert['n_neg']} negative eigenvalue(s) for {st.m} "
                    f"held kink(s) (least reduced eigenvalue about {st.curv_est:.3g})",
                    data={"reduced_min_eigenvalue": st.curv_est})
    st.inertia_margin, st.inertia_error = inert["margin"], inert["error"]


def _summary(st) -> dict:
    norm_theta = float(np.linalg.norm(st.theta0))
    fams = st.families
    dead = sum(1 for f_ in fams if f_[0] == "dead")
    shifts = sum(1 for f_ in fams if f_[0] == "translation")
    orbits = sum(1 for f_ in fams if f_[0] == "orbit")
    logit = sum(1 for f_ in fams if f_[0] == "logit_shift")
    mixes = sum(1 for f_ in fams if f_[0] == groups.GL)
    rotations = sum(1 for f_ in fams if f_[0] == groups.O)
    progs = st.progs
    return {
        "held_units": [list(k) for k in st.held_units], "held_loss": [list(k) for k in st.held_loss],
        "families": [list(f_) for f_ in fams], "pivots": list(st.pivots), "alpha_exp": st.alpha_exp,
        "nu": [float(v) for v in st.nu],
        "radius": float(st.r_y), "radius_x": float(st.r), "radius_nu": float(st.r_nu),
        "radius_relative": float(st.r_y / norm_theta) if norm_theta > 0 else math.inf,
        "uniqueness_radius": float(st.unique_radius), "eta": st.eta, "eta_theta": st.eta_y, "eta_nu": st.eta_nu,
        "kappa0": st.kappa0, "norm_R": st.norm_R, "beta": st.norm_R / (1 - st.kappa0), "K": st.K,
        "h": st.h * st.eta / (1 - st.kappa0) ** 2, "rho": st.rho, "contraction": st.contraction,
        "margins": {"pre_activation": st.pre_margin, "pre_activation_at": list(st.pre_where) if st.pre_where else None,
                    "loss_piece": st.loss_margin if math.isfinite(st.loss_margin) else None,
                    "multipliers": st.mult, "transversality": st.transversal if math.isfinite(st.transversal) else None},
        "inertia_margin": st.inertia_margin, "inertia_error": st.inertia_error,
        "reduced_curvature_estimate": st.curv_est,
        "dimensions": {"p": st.p, "symmetry": int(st.T0.shape[1]), "free": int(st.nJ), "held": st.m,
                       "orbits": orbits, "translations": shifts, "dead_units": dead, "logit_shifts": logit,
                       "unit_mixing": mixes, "unit_rotations": rotations},
        "rounding": {"unit_roundoff": U, "program_depth": progs.depth, "gamma": progs.gamma, "safety": SAFETY,
                     "F_error": bounds.fro(st.e_f), "Fprime_error": st.e_Fp},
        "strict": dead == 0 and shifts == 0,
        "theta_newton": st.theta_newton, "nu_newton": st.nu_newton, "timings": st.timings,
    }


def _flat_hint(Fp, J, net) -> str:
    """Which coordinates the near-null direction of a (nearly) singular KKT matrix moves (a diagnosis)."""
    try:
        w, V = np.linalg.eigh(0.5 * (Fp + Fp.T))
    except np.linalg.LinAlgError:
        return ""
    k = int(np.argmin(np.abs(w)))
    y = V[:J.size, k]
    if not np.any(y):
        return f"; its near-null direction (eigenvalue {w[k]:.2g}) moves only the multipliers: LIKQ fails"
    names = net.param_names()
    top = [t for t in np.argsort(-np.abs(y))[:4] if abs(y[t]) >= 0.1 * np.abs(y).max()]
    return (f"; its near-null direction (eigenvalue {w[k]:.2g}) moves "
            + ", ".join(f"{names[J[t]]} ({y[t]:+.2f})" for t in top))


def _reduced_estimate(A, B) -> float:
    """Float estimate (informative, not part of the proof) of the least eigenvalue of ``A`` on ``ker B``."""
    As = 0.5 * (A + A.T)
    if B.shape[0] == 0:
        return float(np.linalg.eigvalsh(As)[0]) if As.size else math.inf
    Z = sla.null_space(B)
    return float(np.linalg.eigvalsh(Z.T @ As @ Z)[0]) if Z.shape[1] else math.inf


# ---------------------------------------------------------------------------- front door
#: the prover reports the radius rounded up and margins rounded down by this (re-checks recompute)
CLAIM_SLACK = 1e-6


def prove_nearby(problem: Problem, kinks: KinkStructure | None = None, *, tol: float = DEFAULT_TOL,
                 deadline: float | None = None) -> NearbyResult:
    """Prove that an exact local minimum lies within a small, proven distance of ``problem``'s point.

    Parameters
    ----------
    problem : Problem
        The objective at ``theta0`` (the stored float64 parameters, taken exactly).
    kinks : KinkStructure, optional
        The held structure (every kink in it is held on its surface). Without it the kinks are found
        with ``tol`` (:func:`certify.kinks.find_kinks`; None: the values zero up to their rounding
        bound) and, when that attempt fails, with the larger tolerances of :data:`AUTO_TOLERANCES` in
        turn (a tolerance only chooses which kinks are *held*; the proof checks everything else
        rigorously).
    deadline : float, optional
        ``time.perf_counter()`` value after which the attempt gives up.

    Returns
    -------
    NearbyResult
        ``proved`` with a ``certificate`` (kind ``"nearby"``; :func:`recheck` re-derives it with numpy),
        or the reason it failed (``applicable`` False: outside the module's scope).

    Examples
    --------
    >>> import numpy as np
    >>> from certify.data import Dataset, Problem
    >>> from certify.network import Network
    >>> net = Network([np.array([[2.0]]), np.array([[1.0]])], [np.array([-2 / 3]), np.array([0.0])], "relu")
    >>> res = prove_nearby(Problem(net, Dataset(np.arange(4.0)[:, None], np.array([0.0, 1, 4, 5])), "square"))
    >>> res.proved, res.radius < 1e-13
    (True, True)
    """
    t0 = time.perf_counter()
    fwd = problem.network.forward(problem.X, with_scale=True)
    if kinks is not None:
        tols = [kinks.tol]
    else:   # tol None: the kinks zero up to their rounding bound (certify.kinks), then larger tolerances
        tols = [tol] + [t for t in AUTO_TOLERANCES if tol is None or t > tol]
    seen = set()
    failures = []      # (tolerance, reason, applicable), in the order tried
    for k_tol in tols:
        if deadline is not None and time.perf_counter() > deadline:
            failures.append((k_tol, "the time budget ran out during the nearby proof", True, {"out_of_time": True}))
            break
        ks = kinks if kinks is not None else (find_kinks(problem, fwd) if k_tol is None else
                                              find_kinks(problem, fwd, k_tol))
        held_units, held_loss, counts = held_from_kinks(problem, ks)
        key = (held_units, held_loss)
        if key in seen:
            continue
        seen.add(key)
        why = scope_reason(problem, held_units, held_loss, counts)
        if why:
            failures.append((k_tol, f"not applicable: {why}", False, {}))
            continue
        try:
            out = _establish_gauges(problem, fwd.pre, held_units, held_loss, deadline=deadline)
        except _Fail as exc:
            failures.append((k_tol, exc.reason, exc.applicable, exc.data))
            if kinks is not None or exc.data.get("out_of_time"):
                break
            continue     # a larger tolerance may hold a near-kink this attempt left free
        cert = _certificate(out, k_tol)
        res = NearbyResult(True, True, _claim_text(cert), certificate=cert, theta_newton=out["theta_newton"],
                           nu_newton=out["nu_newton"], timings=dict(out["timings"], total_s=time.perf_counter() - t0))
        log.info("nearby: proved, radius %.3g (relative %.3g)", cert["radius"], cert["radius_relative"])
        return res
    if not failures:
        return NearbyResult(False, True, "no held structure could be tried", timings={"total_s": time.perf_counter() - t0})
    first_tol, reason, applicable, _ = failures[0]
    if len(failures) > 1:
        reason += "; holding the near-kinks of larger tolerances did not help (" + "; ".join(
            f"tolerance {t}: {r}" for t, r, _, _ in failures[1:]) + ")"
    # the Newton iterate of the attempt closest to a KKT point (smallest eta), for a caller that iterates
    newton = [d for *_, d in failures if d.get("theta_newton") is not None]
    best = min(newton, key=lambda d: d.get("eta", math.inf)) if newton else {}
    return NearbyResult(False, applicable, reason, theta_newton=best.get("theta_newton"),
                        nu_newton=best.get("nu_newton"), timings={"total_s": time.perf_counter() - t0},
                        out_of_time=any(d.get("out_of_time") for *_, d in failures))


def _certificate(out: dict, k_tol: float) -> dict:
    up_ = 1 + CLAIM_SLACK
    down = 1 - CLAIM_SLACK
    marg = out["margins"]
    cert = {
        "kind": "nearby", "method": "newton_kantorovich (Urabe's contraction form) on the KKT system of the held "
                                    "kinks, on a coordinate slice transversal to the symmetries",
        "claim": "nearby", "kink_tolerance": k_tol,
        "radius": out["radius"] * up_, "radius_relative": out["radius_relative"] * up_,
        "radius_x": out["radius_x"] * up_, "radius_nu": out["radius_nu"] * up_,
        "uniqueness_radius": out["uniqueness_radius"],
        "eta": out["eta"], "eta_theta": out["eta_theta"], "eta_nu": out["eta_nu"], "kappa0": out["kappa0"],
        "norm_R": out["norm_R"], "beta": out["beta"], "K": out["K"], "h": out["h"], "rho": out["rho"],
        "contraction": out["contraction"],
        "margins": {"pre_activation": _down(marg["pre_activation"], down),
                    "pre_activation_at": marg["pre_activation_at"],
                    "loss_piece": _down(marg["loss_piece"], down),
                    "multipliers": [dict(mm, margin_low=mm["margin_low"] * down, margin_high=mm["margin_high"] * down)
                                    for mm in marg["multipliers"]],
                    "transversality": _down(marg["transversality"], down)},
        "inertia_margin": out["inertia_margin"] * down, "inertia_error": out["inertia_error"],
        "reduced_curvature_estimate": _finite(out["reduced_curvature_estimate"]),
        "held_units": out["held_units"], "held_loss": out["held_loss"], "families": out["families"],
        "pivots": out["pivots"], "alpha_exp": out["alpha_exp"], "nu": out["nu"],
        "dimensions": out["dimensions"], "rounding": out["rounding"], "strict": out["strict"],
    }
    return cert


def _finite(v):
    """JSON-safe: None for an infinite bound (a vertex: the held kinks pin the slice)."""
    return None if v is None or not math.isfinite(v) else float(v)


def _down(v, down):
    return None if v is None else (v * down if v > 0 else v)


def _claim_text(cert: dict) -> str:
    dims = cert["dimensions"]
    parts = ["rescaling"] if dims.get("orbits") else []
    if dims.get("logit_shifts"):
        parts.append("logit shifts")
    if dims.get("unit_mixing"):
        parts.append(f"the linear mixing of duplicated units ({dims['unit_mixing']} generator(s) of GL(k))")
    if dims.get("unit_rotations"):
        parts.append(f"the rotations of duplicated units ({dims['unit_rotations']} generator(s) of O(k))")
    if not cert["strict"]:
        parts += [f"{dims['translations']} bias translation(s)", f"the weights of {dims['dead_units']} dead unit(s)"]
    what = "strict modulo " + ", ".join(parts) if parts else "strict"

    kinks = dims["held"]
    return (f"an exact local minimum ({what}; {kinks} kink(s) held with interior multipliers) lies within "
            f"{cert['radius']:.3g} of the point (relative {cert['radius_relative']:.3g}); Newton–Kantorovich with "
            f"h = {cert['h']:.3g} < 1/2; KKT inertia certified, reduced curvature about "
            + (f"{cert['reduced_curvature_estimate']:.3g}" if cert["reduced_curvature_estimate"] is not None else
               "- (the held kinks pin the slice: a vertex)"))


def recheck(problem: Problem, cert: dict) -> list:
    """Re-derive a ``"nearby"`` certificate from ``problem``'s point with numpy only (no solver).

    Every bound is recomputed from the stored structure (held kinks, symmetry families, pivots,
    scaling, centre multipliers); the certificate passes when the proof goes through and its claims
    are no stronger than the recomputed ones (radius not smaller, margins and curvature not larger).
    """
    checks = []
    try:
        held_units = [tuple(int(v) for v in k) for k in cert["held_units"]]
        held_loss = [tuple(int(v) for v in k) for k in cert["held_loss"]]
        families = [(str(f[0]),) + tuple(int(v) for v in f[1:]) for f in cert["families"]]
        pivots = [int(c) for c in cert["pivots"]]
        alpha_exp = [int(e) for e in cert["alpha_exp"]]
        nu = np.asarray(cert["nu"], dtype=np.float64)
        claimed = float(cert["radius"])
    except (KeyError, TypeError, ValueError) as exc:
        checks.append(Check("nearby", False, f"malformed nearby certificate: {exc}"))
        return checks
    try:
        out = _establish(problem, held_units, held_loss, families=families, pivots=pivots, alpha_exp=alpha_exp,
                         nu=nu)
    except _Fail as exc:
        checks.append(Check("nearby", False, f"the nearby proof does not go through: {exc.reason}"))
        return checks
    except (ValueError, IndexError, TypeError) as exc:   # a structure that does not fit the network
        checks.append(Check("nearby", False, f"the nearby certificate does not fit this network: {exc}"))
        return checks
    checks.append(Check("nearby_existence", True,
                        f"Newton–Kantorovich: eta = {out['eta']:.3g}, kappa0 = {out['kappa0']:.3g}, K = {out['K']:.3g}, "
                        f"h = {out['h']:.3g} < 1/2; radius {out['radius']:.6g}"))
    ok_r = math.isfinite(claimed) and out["radius"] <= claimed
    checks.append(Check("nearby_radius", ok_r, f"recomputed radius {out['radius']:.6g} (report: {claimed:.6g})"))
    rel = cert.get("radius_relative")
    norm_theta = float(np.linalg.norm(problem.theta))
    ok_rel = rel is not None and norm_theta > 0 and out["radius"] / norm_theta <= float(rel)
    checks.append(Check("nearby_relative_radius", ok_rel, f"recomputed relative radius "
                        f"{out['radius'] / max(norm_theta, 1e-300):.6g} (report: {rel})"))
    marg, m_claim = out["margins"], cert.get("margins") or {}
    bad = []
    for key in ("pre_activation", "loss_piece", "transversality"):
        c, g = m_claim.get(key), marg.get(key)
        if g is None:
            g = math.inf
        if c is not None and not (float(c) <= g):
            bad.append(f"{key} {c} > {g:.6g}")
    mults = m_claim.get("multipliers") or []
    if len(mults) != len(marg["multipliers"]):
        bad.append("multiplier margins do not match the held kinks")
    else:
        for c, g in zip(mults, marg["multipliers"]):
            for key in ("margin_low", "margin_high"):
                if not float(c.get(key, math.inf)) <= g[key]:
                    bad.append(f"{key} of {g['kink']}: {c.get(key)} > {g[key]:.6g}")
    checks.append(Check("nearby_margins", not bad, "margins no larger than recomputed" if not bad else
                        "claimed margins exceed what the data give: " + "; ".join(bad)))
    c_curv = cert.get("inertia_margin")
    ok_c = c_curv is not None and float(c_curv) <= out["inertia_margin"]
    checks.append(Check("nearby_second_order", ok_c, f"inertia of the KKT matrix ({out['dimensions']['free']}, "
                        f"{out['dimensions']['held']}, 0) with margin {out['inertia_margin']:.6g} over the rounding bound "
                        f"(report: {c_curv})"))
    ok_s = bool(cert.get("strict")) == bool(out["strict"])
    checks.append(Check("nearby_strict", ok_s, f"strict modulo rescaling only: {out['strict']} (report: "
                        f"{cert.get('strict')})"))
    return checks
