r"""Path space: first order in the path coordinates of the network proves a minimum, at any depth.

REFERENCES.md A4.5 (cell convexity) says: one hidden layer, scalar output, ``u_j = a_j (w_j, b_j)``:
the loss is convex on every piece in ``u``, so d-stationarity decides. Here the same argument is
made for deeper and multi-output networks, where ``theta -> path products`` is *not* a submersion:
it suffices that the point is d-stationary in the **whole** space of path coordinates, where every
path product is a free variable (a relaxation of the variety the network can reach).

Setting and notation
--------------------
No weight decay; any convex loss (all of certify's losses are convex in ``f``); activation
``h(z) = s_+ z^+ - s_- z^-`` (``Delta s = s_+ - s_- > 0``); ``xbar_i = (x_i, 1)``.

1. **Saturated samples** (:mod:`certify.secondorder.saturated`): samples with loss 0 are dropped
   when they sit on a unit kink or have no loss kink: ``L >= (|R|/n) L_R`` with equality at
   ``theta``, so a local minimum of ``L_R`` (the loss of the kept samples ``R``) is one of ``L``.
   Their kinks -- zero-coefficient kinks -- disappear.
2. **Linear layers.** A hidden layer whose every unit keeps one slope on all samples of ``R`` and
   has no kink there acts on ``R`` as ``x^l = S_l z^l`` near ``theta``; consecutive layers through
   it merge (``W_{l+1} S_l W_l``). What is left are at most two *nonlinear* layers ``A < B``
   (``D = 0, 1, 2``; more is not handled here). The merged maps are polynomials in ``theta``.
3. **Untied tree.** For output ``c`` the merged network is a sum over *copies*: a ``B``-copy
   ``tau = (k, c)`` and, below it, an ``A``-copy ``(j, tau)`` (for ``D = 1`` the copies are
   ``tau = c`` and ``(j, c)``). With the edges ``M_o[c, k]`` (top layer to output) and
   ``M_B[k, j]`` (``A`` to ``B``) and positive homogeneity ``a h(z) = sgn(a) h(|a| z)``,

   ``f_c(x_i) = sum_k sgn(M_o[c,k]) h( sum_j sgn(M_B[k,j]) h(pi_{j,tau} . xbar_i) + beta_tau ) + m_c``

   with *path coordinates* ``pi_{j,tau} = |M_o[c,k] M_B[k,j]| (M_A[j], m_A[j])``,
   ``beta_tau = |M_o[c,k]| m_B[k]``, ``m_c`` (the merged biases). A copy whose subtree has no kink
   at a sample of ``R`` is linear there and needs no sign (its coordinate is the signed product);
   a copy that contains a kink needs its edges nonzero (checked against their rounding bound).
   Call this function ``Psi_i(Pi)``; then ``f(x_i; theta') = Psi_i(Pi(theta'))`` for ``theta'``
   near ``theta`` and every ``i in R``, because every nonzero edge keeps its sign and every unit
   off its kink keeps its side.
4. **Piecewise convexity.** ``G(Pi) = (1/|R|) sum_{i in R} l_i(Psi_i(Pi))`` is continuous. When no
   sample of ``R`` has kinks in both ``A`` and ``B``, nor a unit kink and a loss kink, the unit
   kinks' switching functions are *linear* in ``Pi`` near ``Pi_0 = Pi(theta)`` (``pi . xbar_i`` for
   an ``A``-kink; for a ``B``-kink, a linear function of its subtree's coordinates, the ``A`` units
   at that sample being off their kinks). So a neighbourhood of ``Pi_0`` is covered by finitely
   many closed polyhedral cones around ``Pi_0`` (sign patterns of these functions), on each of
   which ``Psi`` is linear and ``G`` is **convex** (a convex loss of a linear map).
5. **First order suffices.** If ``G'(Pi_0; delta) >= 0`` for every ``delta`` then ``Pi_0`` minimises
   ``G`` over each cone (convex function, first-order condition on the tangent cone of a polyhedron),
   so ``G(Pi) >= G(Pi_0)`` near ``Pi_0``; as ``Pi(.)`` is continuous,
   ``L_R(theta') = G(Pi(theta')) >= G(Pi_0) = L_R(theta)`` near ``theta``: **a local minimum**.
   No Hessian is needed, and zero curvature in directions that no group action spans (fibres of a
   rank-deficient product of linear layers) is no obstacle.
6. **The multiplier certificate.** With ``omega_i`` a subgradient of ``l_i`` at ``f_i`` (the
   first-order multipliers of loss kinks), and for every kink *copy* with coefficient
   ``gamma = omega_ic sgn(edges) (chain slopes) Delta s >= 0`` a multiplier ``lambda in [0, 1]``
   (slope ``s_- + lambda Delta s`` in that copy), ``h'(0; v) >= (s_- + lambda Delta s) v`` gives
   ``G'(Pi_0; delta) >= <rho, delta>``, where ``rho`` collects, per coordinate block,

   * ``A``-copy ``(j, tau)``: ``T[tau, j] = sum_i omega_ic sigmaB_ik sigmaA_ij xbar_i``
     (``d + 1`` equations);
   * ``B``-copy ``tau``: ``sum_i omega_ic sigmaB_ik``; output ``c``: ``sum_i omega_ic``.

   ``rho = 0`` (up to the rounding-error bound of its computation) is the certificate. A copy with
   a negative coefficient (a concave kink in path space) has no certificate of this form.

The equations only involve the slopes, ``xbar`` and ``omega`` -- the weights enter through the
signs of the edges. They are computed matrix-free: each slope matrix is its column mode plus a
sparse deviation, so the ``A``-copy tensor ``T`` (``h_B C x h_A x (d + 1)`` entries, dense) costs
about one gradient when activation patterns are mostly constant per unit, and one BLAS product of
``n h_B C h_A (d + 1)`` otherwise. Multipliers: ``B``-copy multipliers by bounded least squares
per copy (the ``A``-copy multipliers eliminated by projection); ``A``-copy multipliers in closed
form per unit (its kink rows ``xbar_i`` are independent: LIKQ), bounded least squares otherwise.

What is not covered: weight decay; more than two nonlinear layers; nested kinks (a sample on kinks
of both nonlinear layers, or on a unit kink and a loss kink); a kink below a zero edge (an escape
term, :mod:`certify.secondorder.escape`). It is a sufficient condition: a point that is a minimum
only because of the rank constraints of the layers is left to the other kinds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..budget import OutOfTime
from ..budget import check as budget_check
from ..checks import Check, compare
from ..data import Problem
from ..kinks import KinkStructure
from ..network import ForwardPass
from ..rounding import absolute_twin, chain_length, factor, gamma
from .base import Context, SecondOrder
from .saturated import ZERO_MIN_LOSSES, exact_zero_losses, zero_loss_samples

NAME = "path_fit"

#: entries of the dense equation tensor ``T`` (it and its absolute twin are held in memory)
MAX_ENTRIES = 2.5e7
#: samples per block when the deviations from the column modes are dense (BLAS product)
DENSE_BLOCK = 2e7
#: the equation tensor may cost at most this many times the multiply-adds of one gradient (2 n p)
MAX_GRADIENTS = 200


# ---------------------------------------------------------------------------- structure
@dataclass
class PathStructure:
    """The merged network on the kept samples ``R`` (see the module docstring).

    ``SA``/``SB`` are slope matrices on ``R`` with every kink entry at ``s_neg`` (``SB`` is a column
    of ones for ``D <= 1``, ``SA`` too for ``D = 0``); ``KA``/``KB`` the kink masks; ``Om`` the loss
    adjoint (subgradient) and ``Om_abs`` its absolute twin; ``Mo``/``MB`` the edges with their sign
    (0 where an edge is not certainly nonzero).
    """

    keep: np.ndarray
    dropped: np.ndarray
    nl: list
    SA: np.ndarray
    SB: np.ndarray
    KA: np.ndarray
    KB: np.ndarray
    Om: np.ndarray
    Om_abs: np.ndarray
    Xb: np.ndarray
    sign_o: np.ndarray      # (C, h_top) sign of M_o, 0 if not certainly nonzero
    sign_B: np.ndarray      # (h_B, h_A) sign of M_B (D = 2), else (1, h_A) of ones
    slopes: tuple
    rounding: float

    @property
    def D(self) -> int:
        return len(self.nl)

    @property
    def C(self) -> int:
        return self.Om.shape[1]


def _rounding(problem: Problem) -> float:
    """``2 gamma_N`` for the path equations: the forward pass and adjoint chain, the sums over samples."""
    return 2.0 * gamma(chain_length(problem) + problem.n_samples + 64)


def _modes_sparse(S: np.ndarray):
    """Each column's most frequent value ``m`` and the sparse deviation ``S - m`` (CSR)."""
    n, h = S.shape
    if n == 0:
        return np.zeros(h), sp.csr_matrix((0, h))
    m = np.empty(h)
    for j in range(h):
        vals, counts = np.unique(S[:, j], return_counts=True)
        m[j] = vals[np.argmax(counts)]
    return m, sp.csr_matrix(S - m[None, :])


def _merged(net, lin_slopes: dict, lo: int, hi: int):
    """``M = W_hi S_{hi-1} W_{hi-1} ... S_{lo+1} W_{lo+1}``: ``x^lo -> z^hi`` through linear layers, and ``|M|``'s twin."""
    M = net.weights[lo].copy()
    Ma = np.abs(M)
    for l in range(lo + 1, hi):
        s = lin_slopes[l]
        W = net.weights[l]
        M = W @ (s[:, None] * M)
        Ma = np.abs(W) @ (np.abs(s)[:, None] * Ma)
    return M, Ma


def _loss_adjoint(problem: Problem, fwd: ForwardPass, fo, first, need: bool):
    """``omega``: ``dl/df``, with the first-order multipliers at loss kinks; or ``(None, reason)``.

    ``need``: some kept sample has a loss kink (its subgradient comes from the multipliers)."""
    from ..formulate.first_order import one_level
    loss = problem.loss
    Om = loss.gradient(fwd.output, problem.Y).astype(np.float64)
    if not need:
        return Om, None
    cert = first.certificate if first is not None else {}
    if fo is None or cert.get("kind") != "multipliers" or fo.nested:
        return None, "loss kinks need first-order multipliers (the first-order certificate has none)"
    one = one_level(fo)
    lam = np.asarray(cert.get("lambda", []), dtype=np.float64)
    pis = [np.asarray(p, dtype=np.float64) for p in cert.get("pi", [])]
    if lam.shape != (one.n_generators,) or len(pis) != len(one.multi):
        return None, "first-order multipliers do not match the loss kinks"
    if np.any(lam < 0) or np.any(lam > 1) or any(np.any(p < 0) for p in pis):
        return None, "first-order multipliers outside their bounds"
    gen_of_group = {src[1]: j for j, src in enumerate(one.source) if src[0] == "loss"}
    multi = iter(pis)
    acc = {}
    for q, (s_idx, S) in enumerate(fo.groups):
        i = int(fo.lk_sample[s_idx])
        a = acc.setdefault(i, np.zeros(S.shape[1]))
        if S.shape[0] == 1:
            a += S[0]
        elif S.shape[0] == 2:
            a += S[0] + lam[gen_of_group[q]] * (S[1] - S[0])
        else:
            pi = next(multi)
            if abs(pi.sum() - 1.0) > 8 * pi.size * 1.2e-16:
                return None, "first-order multipliers outside their simplex"
            a += pi @ S
    for i, a in acc.items():
        Om[i] = a
    return Om, None


def path_structure(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, fo=None, first=None, *,
                   drop_all: bool = False):
    """:class:`PathStructure`, or a string saying why the path-space test does not apply.

    Samples with loss 0 are dropped when they sit on a unit kink or have no loss kink; with
    ``drop_all`` also those with a loss kink (which is the subgradient choice ``omega_i = 0``)."""
    net = problem.network
    if problem.weight_decay:
        return "the path-space argument does not hold with weight decay"
    n = problem.n_samples
    s_pos, s_neg = net.activation.slopes
    # 1. saturated samples: loss 0 and (on a unit kink, or no loss kink)
    zero = zero_loss_samples(problem, fwd) if problem.loss.name in ZERO_MIN_LOSSES else np.zeros(n, bool)
    unit_k = np.zeros(n, bool)
    unit_k[kinks.unit_sample] = True
    loss_k = np.zeros(n, bool)
    loss_k[kinks.loss_sample] = True
    drop = zero & (unit_k | ~loss_k) if not drop_all else zero
    keep = np.nonzero(~drop)[0]
    if keep.size == 0:
        return "every sample has loss 0 (the zero-loss kind decides)"
    nested = np.intersect1d(np.nonzero(unit_k)[0], np.nonzero(loss_k)[0])
    if np.isin(nested, keep).any():
        return "a kept sample is on a unit kink and a loss kink (nested kinks)"
    # 2. linear and nonlinear hidden layers on R
    lin, nl = {}, []
    slopes, kmask = {}, {}
    for l in range(1, net.n_layers):
        z = fwd.pre[l - 1][keep]
        km = kinks.masks[l - 1][keep] if kinks.masks else np.zeros(z.shape, bool)
        s = net.activation.slope(z).astype(np.float64)
        s[km] = s_neg
        slopes[l], kmask[l] = s, km
        if not km.any() and np.all(s == s[0:1]):
            lin[l] = s[0].copy()
        else:
            nl.append(l)
    # a linear layer whose units are all dead on R cuts every path through it: the layers before it
    # do not reach the output (their path features are 0), and the inputs only reach it through biases
    cut = max((l for l, s in lin.items() if not np.any(s)), default=0)
    nl = [l for l in nl if l > cut]
    if len(nl) > 2:
        return (f"{len(nl)} hidden layers are nonlinear on the kept samples (layers {nl}); the path test "
                f"handles at most two")
    Om, why = _loss_adjoint(problem, fwd, fo, first, bool(np.any(loss_k[keep])))
    if Om is None:
        return why
    _, _, delta_abs = absolute_twin(problem, fwd)
    Xb = np.hstack([problem.X[keep] if cut == 0 else np.zeros((keep.size, problem.X.shape[1])),
                    np.ones((keep.size, 1))])
    nR = keep.size
    rnd = factor(problem)
    L = net.n_layers
    if len(nl) == 0:
        SA = np.ones((nR, 1)); KA = np.zeros((nR, 1), bool)
        SB = np.ones((nR, 1)); KB = np.zeros((nR, 1), bool)
        sign_o = np.ones((net.n_outputs, 1)); sign_B = np.ones((1, 1))
    else:
        A = nl[0]
        SA, KA = slopes[A], kmask[A]
        top = nl[-1]
        Mo, Mo_abs = _merged(net, lin, top, L)
        sign_o = np.where(np.abs(Mo) > rnd * Mo_abs, np.sign(Mo), 0.0)
        if len(nl) == 1:
            SB = np.ones((nR, 1)); KB = np.zeros((nR, 1), bool)
            sign_B = np.ones((1, SA.shape[1]))
        else:
            B = nl[1]
            SB, KB = slopes[B], kmask[B]
            if np.any(KA.any(axis=1) & KB.any(axis=1)):
                return "a kept sample is on kinks of both nonlinear layers (nested kinks)"
            MB, MB_abs = _merged(net, lin, A, B)
            sign_B = np.where(np.abs(MB) > rnd * MB_abs, np.sign(MB), 0.0)
    struct = PathStructure(keep=keep, dropped=np.nonzero(drop)[0], nl=nl, SA=SA, SB=SB, KA=KA, KB=KB,
                           Om=Om[keep], Om_abs=delta_abs[keep], Xb=Xb, sign_o=sign_o, sign_B=sign_B,
                           slopes=(s_pos, s_neg), rounding=_rounding(problem))
    why = _edges(struct)
    return why if why else struct


def _edges(st: PathStructure) -> str | None:
    """Every copy that contains a kink needs nonzero edges (module docstring, 3)."""
    if st.D == 0:
        return None
    if st.D == 1:
        units = np.nonzero(st.KA.any(axis=0))[0]
        bad = [int(j) for j in units if np.any(st.sign_o[:, j] == 0)]
        if bad:
            return (f"a unit on a kink feeds an output through a zero weight (units {bad[:5]} of layer {st.nl[0]}): "
                    f"an escape-type term, not a path coordinate")
        return None
    for k in np.nonzero(st.KB.any(axis=0))[0]:
        if np.any(st.sign_o[:, k] == 0):
            return (f"unit {int(k)} of layer {st.nl[1]} is on a kink but feeds an output through a zero weight: an "
                    f"escape-type term")
    for j in np.nonzero(st.KA.any(axis=0))[0]:
        rows = np.nonzero(st.KA[:, j])[0]
        ks = np.nonzero(np.any(st.SB[rows] != 0, axis=0))[0]     # B units that pass the kink on
        if np.any(st.sign_B[ks, j] == 0) or np.any(st.sign_o[:, ks] == 0):
            return (f"unit {int(j)} of layer {st.nl[0]} is on a kink below a zero weight (into layer {st.nl[1]} or "
                    f"an output): an escape-type term")
    return None


# ---------------------------------------------------------------------------- equations
def chain_cost(Om: np.ndarray, SB: np.ndarray, SA: np.ndarray, Xb: np.ndarray) -> int:
    """Multiply-adds :func:`chain_tensor` will spend (the cheaper of its two routes)."""
    groups = _pattern_groups(Om, SB, SA, Xb)
    _, DB = _modes_sparse(SB)
    _, DA = _modes_sparse(SA)
    hB, hA, m, C = SB.shape[1], SA.shape[1], Xb.shape[1], Om.shape[1]
    nzB, nzA = np.diff(DB.indptr), np.diff(DA.indptr)
    cost_dev = (DA.nnz + DB.nnz) * m * C + int(nzB @ nzA) * m * C + hB * hA * m * C
    return int(min(groups[0].size * hB * hA * m * C, cost_dev))


def chain_tensor(Om: np.ndarray, SB: np.ndarray, SA: np.ndarray, Xb: np.ndarray, deadline=None,
                 route: str | None = None) -> np.ndarray:
    """``T[k, c, j, :] = sum_i Om[i, c] SB[i, k] SA[i, j] Xb[i, :]``, shape ``(h_B, C, h_A, m)``.

    Two exact rewritings of the sum, whichever is cheaper (``route`` forces one):

    * ``"pattern"``: samples with the same slope pattern ``(SB_i, SA_i)`` are summed first,
      ``v_P = sum_{i in P} Om_i Xb_i``; a pattern whose ``v_P`` is 0 (a group at its own affine fit)
      contributes nothing, the others cost ``h_B h_A (d + 1)`` each;
    * ``"deviation"``: each slope matrix is its column mode plus a sparse deviation; mode x mode is
      an outer product and the rest costs the deviations' non-zeros (about one gradient when the
      patterns are mostly constant per unit).
    """
    groups = _pattern_groups(Om, SB, SA, Xb)
    mB, DB = _modes_sparse(SB)
    mA, DA = _modes_sparse(SA)
    hB, hA, m, C = SB.shape[1], SA.shape[1], Xb.shape[1], Om.shape[1]
    cost_pattern = groups[0].size * hB * hA * m * C
    nzB, nzA = np.diff(DB.indptr), np.diff(DA.indptr)
    cost_dev = (DA.nnz + DB.nnz) * m * C + int(nzB @ nzA) * m * C + hB * hA * m * C
    if route == "pattern" or (route is None and cost_pattern <= cost_dev):
        return _tensor_by_pattern(groups, SB, SA, C, deadline)
    return _tensor_by_deviation(Om, Xb, mB, DB, mA, DA, deadline)


def _pattern_groups(Om, SB, SA, Xb):
    """Representatives of the slope patterns with ``v_P != 0`` and those ``v_P`` (``(P, C, m)``)."""
    key = np.ascontiguousarray(np.hstack([SB, SA]))
    _, first, inv = np.unique(key.view(np.dtype((np.void, key.dtype.itemsize * max(key.shape[1], 1)))).ravel(),
                              return_index=True, return_inverse=True)
    inv = inv.ravel()
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(first.size))
    V = np.add.reduceat((Om[order][:, :, None] * Xb[order][:, None, :]), starts, axis=0)   # (nP, C, m)
    live = np.nonzero(np.any(V != 0, axis=(1, 2)))[0]
    return first[live], V[live]


def _tensor_by_pattern(groups, SB, SA, C, deadline):
    rep, VP = groups
    hB, hA, m = SB.shape[1], SA.shape[1], VP.shape[2] if VP.ndim == 3 else 0
    m = VP.shape[2] if rep.size else m
    T = np.zeros((hB, C, hA, m))
    if rep.size == 0:
        return T
    SBP, SAP = SB[rep], SA[rep]
    step = max(1, int(DENSE_BLOCK // max(1, hA * m)))
    for c in range(C):
        for s0 in range(0, rep.size, step):
            budget_check(deadline, "the path-space equations")
            sl = slice(s0, s0 + step)
            K = (SAP[sl, :, None] * VP[sl, c, None, :]).reshape(-1, hA * m)
            T[:, c] += (SBP[sl].T @ K).reshape(hB, hA, m)
    return T


def _tensor_by_deviation(Om, Xb, mB, DB, mA, DA, deadline):
    n, C = Om.shape
    hB, hA, m = mB.size, mA.size, Xb.shape[1]
    G = Om.T @ Xb                                                        # (C, m)
    T = mB[:, None, None, None] * mA[None, None, :, None] * G[None, :, None, :]
    # Khatri-Rao rows of the A deviations: KR[i, j*m + t] = DA[i, j] Xb[i, t]
    DAc = DA.tocoo()
    rows = np.repeat(DAc.row, m)
    cols = (DAc.col[:, None] * m + np.arange(m)[None, :]).ravel()
    vals = (DAc.data[:, None] * Xb[DAc.row]).ravel()
    KR = sp.csr_matrix((vals, (rows, cols)), shape=(n, hA * m))
    for c in range(C):
        budget_check(deadline, "the path-space equations")
        w = Om[:, c:c + 1]
        OX = w * Xb
        if DA.nnz:
            UA = np.asarray(DA.T @ OX)                                   # (hA, m)
            T[:, c] += mB[:, None, None] * UA[None, :, :]
        if DB.nnz:
            UB = np.asarray(DB.T @ OX)                                   # (hB, m)
            T[:, c] += UB[:, None, :] * mA[None, :, None]
        if DB.nnz and DA.nnz:
            DBc = sp.csr_matrix(DB.multiply(w))
            T[:, c] += np.asarray((DBc.T @ KR).todense()).reshape(hB, hA, m)
    return T


def chain_bound(Om_abs: np.ndarray, SB_abs: np.ndarray, SA_abs: np.ndarray, Xb_abs: np.ndarray) -> np.ndarray:
    """An upper bound of ``sum_i Om_abs[i, c] SB_abs[i, k] SA_abs[i, j] Xb_abs[i, :]`` (all entries >= 0).

    The smaller of ``max_i SA_abs[i, j] * sum_i Om SB Xb`` and ``max_i SB_abs[i, k] * sum_i Om SA Xb``:
    rigorous (each factor is bounded by its column maximum) and costs ``n (h_A + h_B) C (d + 1)``.
    """
    aA = SA_abs.max(axis=0, initial=0.0)                                 # (hA,)
    aB = SB_abs.max(axis=0, initial=0.0)                                 # (hB,)
    OX = Om_abs[:, :, None] * Xb_abs[:, None, :]                         # (n, C, m)
    UB = np.einsum("ik,icm->kcm", SB_abs, OX)                             # (hB, C, m)
    UA = np.einsum("ij,icm->cjm", SA_abs, OX)                             # (C, hA, m)
    return np.minimum(aA[None, None, :, None] * UB[:, :, None, :], aB[:, None, None, None] * UA[None, :, :, :])


def _absolute_slopes(S: np.ndarray, K: np.ndarray, slopes) -> np.ndarray:
    """``|S|`` with kink entries at ``|s_-| + Delta s`` (bounds ``|s_- + lambda Delta s|`` and its parts)."""
    s_pos, s_neg = slopes
    out = np.abs(S)
    out[K] = abs(s_neg) + (s_pos - s_neg)
    return out


# ---------------------------------------------------------------------------- multipliers
def _solve_B(st: PathStructure, T, tB, stored=None):
    """``B``-copy multipliers ``mu`` per copy ``tau = (k, c)`` with a kink: bounded least squares with the
    ``A``-copy multipliers projected out. Returns ``{(k, c): (rows, mu)}`` (rows index the kept samples),
    or a string when ``stored`` (``{(k, c): (sample ids, mu)}``) does not match the kinks."""
    from scipy.optimize import lsq_linear
    s_pos, s_neg = st.slopes
    ds = s_pos - s_neg
    out = {}
    if st.D < 2:
        return out
    hA, m = st.SA.shape[1], st.Xb.shape[1]
    kinked_A = np.nonzero(st.KA.any(axis=0))[0]
    for k in np.nonzero(st.KB.any(axis=0))[0]:
        rows = np.nonzero(st.KB[:, k])[0]
        for c in range(st.C):
            if stored is not None:
                ids, mu = stored.get((int(k), c), (None, None))
                if ids is None or not np.array_equal(np.asarray(ids, dtype=np.int64), st.keep[rows]):
                    return f"B-copy ({int(k)}, {c}): the stored multipliers do not match the kinks"
                out[(int(k), c)] = (rows, np.asarray(mu, dtype=np.float64))
                continue
            wB = ds * st.Om[rows, c]                                     # (r,)
            if not np.any(wB):
                out[(int(k), c)] = (rows, np.zeros(rows.size))
                continue
            # the mu-columns, block j: wB_i SA_ij xbar_i; rhs -T[k, c, j]
            cols = wB[:, None, None] * st.SA[rows][:, :, None] * st.Xb[rows][:, None, :]   # (r, hA, m)
            rhs = -T[k, c].copy()                                         # (hA, m)
            for j in kinked_A:
                krows = np.nonzero(st.KA[:, j])[0]
                w = ds * st.Om[krows, c] * st.SB[krows, k]
                basis = st.Xb[krows[w != 0]]
                if basis.shape[0]:
                    Q, _ = np.linalg.qr(basis.T)
                    cols[:, j] -= (cols[:, j] @ Q) @ Q.T
                    rhs[j] -= Q @ (Q.T @ rhs[j])
            Amat = np.vstack([wB[None, :], cols.reshape(rows.size, hA * m).T])
            b = np.concatenate([[-tB[k, c]], rhs.ravel()])
            sol = lsq_linear(Amat, b, bounds=(0.0, 1.0), method="bvls", tol=1e-14,
                             max_iter=50 * rows.size + 100).x
            out[(int(k), c)] = (rows, _refine(Amat, b, np.clip(sol, 0.0, 1.0)))
    return out


def _refine(A: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Re-solve the interior variables of a bounded least-squares solution by plain least squares."""
    free = (x > 1e-12) & (x < 1 - 1e-12)
    if not free.any():
        return x
    y = x.copy()
    rhs = b - A[:, ~free] @ x[~free]
    y[free] = np.linalg.lstsq(A[:, free], rhs, rcond=None)[0]
    if np.all(y >= 0) and np.all(y <= 1) and np.linalg.norm(A @ y - b) <= np.linalg.norm(A @ x - b):
        return y
    return x


def _solve_A(st: PathStructure, E: np.ndarray, j: int, stored=None):
    """``A``-copy multipliers of unit ``j`` for every copy ``tau``: ``E[tau, j] + sum_i lambda w xbar_i = 0``.

    ``E`` is ``T`` plus the ``B`` corrections, shape ``(h_B, C, h_A, m)``. Closed form when the kink
    rows are independent (LIKQ); otherwise bounded least squares per copy. Adds the correction to
    ``E[:, :, j]`` in place and returns ``(rows, lam (h_B, C, r), used_bvls)``.
    """
    s_pos, s_neg = st.slopes
    ds = s_pos - s_neg
    rows = np.nonzero(st.KA[:, j])[0]
    Xk = st.Xb[rows]                                                     # (r, m)
    W = ds * st.Om[rows][None, :, :].transpose(0, 2, 1) * st.SB[rows].T[:, None, :]   # (hB, C, r)
    hB, C = W.shape[0], W.shape[1]
    if stored is not None:
        lam = stored
    else:
        rhs = -E[:, :, j, :].reshape(hB * C, -1)                          # (hB*C, m)
        Y = np.linalg.lstsq(Xk.T, rhs.T, rcond=None)[0].T.reshape(hB, C, -1)   # (hB, C, r): lambda * w
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = np.where(W != 0, Y / W, 0.0)
        lam = np.clip(np.nan_to_num(lam), 0.0, 1.0)
    bvls = False
    corr = np.einsum("kcr,rm->kcm", lam * W, Xk)
    if stored is None and np.linalg.matrix_rank(Xk) < rows.size:
        # not LIKQ: the min-norm solution may leave [0, 1] although another one does not
        res = E[:, :, j, :] + corr
        if np.abs(res).max(initial=0.0) > 1e-9 * max(np.abs(E[:, :, j, :]).max(initial=0.0), 1e-300):
            from scipy.optimize import lsq_linear
            bvls = True
            for k in range(hB):
                for c in range(C):
                    w = W[k, c]
                    if not np.any(w):
                        continue
                    sol = lsq_linear(Xk.T * w[None, :], -E[k, c, j], bounds=(0.0, 1.0), method="bvls",
                                     tol=1e-14).x
                    lam[k, c] = np.clip(sol, 0.0, 1.0)
            corr = np.einsum("kcr,rm->kcm", lam * W, Xk)
    E[:, :, j, :] += corr
    return rows, lam, bvls


def _convexity(st: PathStructure) -> str | None:
    """Every kink copy with a nonzero coefficient must enter ``G'`` as a convex term (coefficient >= 0)."""
    s_pos, s_neg = st.slopes
    ds = s_pos - s_neg
    tol = st.rounding * ds
    if st.D >= 1:
        for j in np.nonzero(st.KA.any(axis=0))[0]:
            rows = np.nonzero(st.KA[:, j])[0]
            if st.D == 1:
                sf = st.sign_o[:, j][None, :]                            # (1, C)
                coef = ds * st.Om[rows] * sf                              # (r, C)
                size = tol * st.Om_abs[rows]
            else:
                sf = st.sign_o.T[:, :] * st.sign_B[:, j][:, None]         # (hB, C)
                coef = ds * st.Om[rows][:, None, :] * st.SB[rows][:, :, None] * sf[None]   # (r, hB, C)
                size = tol * st.Om_abs[rows][:, None, :] * np.abs(st.SB[rows])[:, :, None]
            if np.any(coef < -size):
                return (f"a kink of unit {int(j)} (layer {st.nl[0]}) enters path space as a concave term (the loss "
                        f"derivative and the path's sign disagree): no path-space certificate")
    if st.D == 2:
        for k in np.nonzero(st.KB.any(axis=0))[0]:
            rows = np.nonzero(st.KB[:, k])[0]
            coef = ds * st.Om[rows] * st.sign_o[:, k][None, :]
            if np.any(coef < -tol * st.Om_abs[rows]):
                return (f"a kink of unit {int(k)} (layer {st.nl[1]}) enters path space as a concave term: no "
                        f"path-space certificate")
    return None


# ---------------------------------------------------------------------------- the test
def path_test(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, fo=None, first=None, *,
              stored: dict | None = None, deadline: float | None = None, drop_all: bool | None = None) -> dict:
    """Build and solve (or, with ``stored`` multipliers, re-check) the path-space certificate.

    Returns ``{"status": "ok" | "fail" | "na", "reason": ..., ...}``; ``ok`` means every equation holds
    up to its rounding-error bound with multipliers in ``[0, 1]``. Without ``drop_all`` both choices
    for zero-loss samples with loss kinks are tried (kept with the first-order multipliers, then dropped).
    """
    if drop_all is None:
        out = path_test(problem, fwd, kinks, fo, first, stored=stored, deadline=deadline, drop_all=False)
        if out["status"] == "ok":
            return out
        again = path_test(problem, fwd, kinks, fo, first, stored=stored, deadline=deadline, drop_all=True)
        if again["status"] == "ok" or again.get("same_structure"):
            return again if again["status"] == "ok" else out
        return out
    t0 = time.perf_counter()
    st = path_structure(problem, fwd, kinks, fo, first, drop_all=drop_all)
    if drop_all and not isinstance(st, str):
        base = path_structure(problem, fwd, kinks, fo, first, drop_all=False)
        if not isinstance(base, str) and np.array_equal(base.keep, st.keep):
            return {"status": "na", "reason": "nothing more to drop", "same_structure": True}
    if isinstance(st, str):
        return {"status": "na", "reason": st}
    hA, hB, C, m = st.SA.shape[1], st.SB.shape[1], st.C, st.Xb.shape[1]
    entries = hA * hB * C * m
    if entries > MAX_ENTRIES:
        return {"status": "na", "reason": f"{entries:.3g} path equations (h_B C h_A (d+1)) are over the limit "
                                           f"{MAX_ENTRIES:.3g}"}
    why = _convexity(st)
    if why:
        return {"status": "fail", "reason": why}
    cost = chain_cost(st.Om, st.SB, st.SA, st.Xb)
    if cost > MAX_GRADIENTS * 2 * problem.n_samples * problem.n_params:
        return {"status": "na", "reason": f"the path equations would cost {cost:.3g} multiply-adds, more than "
                                           f"{MAX_GRADIENTS} gradients (activation patterns vary too much per unit)"}
    s_pos, s_neg = st.slopes
    ds = s_pos - s_neg
    T = chain_tensor(st.Om, st.SB, st.SA, st.Xb, deadline)
    T_abs = chain_bound(st.Om_abs, _absolute_slopes(st.SB, st.KB, st.slopes) if st.D == 2 else np.abs(st.SB),
                        _absolute_slopes(st.SA, st.KA, st.slopes) if st.D >= 1 else np.abs(st.SA), np.abs(st.Xb))
    budget_check(deadline, "the path-space equations")
    SB_abs = _absolute_slopes(st.SB, st.KB, st.slopes)
    tB = st.Om.T @ st.SB if st.D == 2 else np.zeros((C, 1))              # (C, hB)
    tB = tB.T.copy()                                                      # (hB, C)
    tB_abs = (st.Om_abs.T @ SB_abs).T if st.D == 2 else np.zeros((1, C))
    e0 = st.Om.sum(axis=0) if st.D >= 1 else np.zeros(C)
    e0_abs = st.Om_abs.sum(axis=0) if st.D >= 1 else np.zeros(C)
    # B-copy multipliers (D = 2)
    mu_stored = None
    if stored is not None:
        mu_stored = {(int(e[0]), int(e[1])): (e[2], e[3]) for e in stored.get("mu", [])}
    mus = _solve_B(st, T, tB, mu_stored)
    if isinstance(mus, str):
        return {"status": "fail", "reason": mus}
    E = T                                                                 # completed in place
    mu_list = []
    for (k, c), (rows, mu) in mus.items():
        if mu.shape != rows.shape or np.any(mu < 0) or np.any(mu > 1):
            return {"status": "fail", "reason": f"B-copy ({k}, {c}): multipliers missing or outside [0, 1]"}
        w = ds * st.Om[rows, c] * mu                                      # (r,)
        tB[k, c] += float(w.sum())
        E[k, c] += np.einsum("r,rj,rm->jm", w, st.SA[rows], st.Xb[rows])
        mu_list.append([int(k), int(c), [int(st.keep[r]) for r in rows], [float(v) for v in mu]])
    # A-copy multipliers, unit by unit
    lam_stored = {}
    if stored is not None:
        for e in stored.get("lambda_bvls", []):
            lam_stored[int(e[0])] = np.asarray(e[1], dtype=np.float64)
        for j, lam in lam_stored.items():
            r = int(np.count_nonzero(st.KA[:, j])) if 0 <= j < st.KA.shape[1] else -1
            if lam.shape != (hB, C, r) or np.any(lam < 0) or np.any(lam > 1):
                return {"status": "fail", "reason": f"stored A-copy multipliers of unit {j} do not match"}
    bvls_list = []
    n_copies = 0
    for j in np.nonzero(st.KA.any(axis=0))[0] if st.D >= 1 else []:
        budget_check(deadline, "the path-space multipliers")
        rows, lam, used = _solve_A(st, E, int(j), lam_stored.get(int(j)))
        n_copies += lam.size
        if used:
            bvls_list.append([int(j), lam.tolist()])
    res_A = compare(E, st.rounding * T_abs)
    res_B = compare(tB, st.rounding * tB_abs)
    res_0 = compare(e0, st.rounding * e0_abs)
    ok = res_A.ok and res_B.ok and res_0.ok
    n_eq = E.size + (tB.size if st.D == 2 else 0) + (C if st.D >= 1 else 0)
    ratio = max(res_A.ratio, res_B.ratio, res_0.ratio)
    out = {"status": "ok" if ok else "fail", "structure": st, "mu": mu_list, "lambda_bvls": bvls_list,
           "drop_all": drop_all,
           "equations": int(n_eq), "kink_copies": int(n_copies + sum(len(e[2]) for e in mu_list)),
           "residual_inf": max(res_A.inf, res_B.inf, res_0.inf), "rounding_ratio": ratio,
           "time_s": time.perf_counter() - t0}
    if not ok:
        worst = ("affine-fit" if st.D == 0 else "A-copy") if not res_A.ok else ("B-copy" if not res_B.ok else "output-bias")
        out["reason"] = (f"the path-space equations do not close: the worst ({worst} equations) is {ratio:.3g} times its "
                         f"rounding-error bound (the point minimises the loss in theta, not over the whole span of "
                         f"its path features)")
    return out


def _describe(st: PathStructure) -> str:
    if st.D == 0:
        return "every hidden layer is linear on the kept samples: the network is affine there"
    names = " and ".join(f"layer {l}" for l in st.nl)
    return f"nonlinear {names} (the others merged as linear maps)"


# ---------------------------------------------------------------------------- the kind
def applies(ctx: Context) -> str | None:
    if ctx.problem.weight_decay:
        return "the path-space argument does not hold with weight decay"
    return None


def run(ctx: Context) -> SecondOrder:
    problem = ctx.problem
    try:
        res = path_test(problem, ctx.fwd, ctx.kinks, ctx.fo, ctx.first, deadline=ctx.deadline)
    except OutOfTime as exc:
        return SecondOrder(None, NAME, reason=f"path-space test: the budget ran out during {exc.what}")
    if res["status"] != "ok":
        return SecondOrder(None, NAME, reason=f"path-space test: {res['reason']}")
    st = res["structure"]
    exact = exact_zero_losses(problem, st.dropped) if st.dropped.size else None
    if exact is False:
        return SecondOrder(None, NAME, reason="path-space test: a dropped sample's loss is not exactly 0")
    kept_loss_kinks = bool(np.isin(ctx.kinks.loss_sample, st.keep).any())
    fo_cert = (ctx.first.certificate if ctx.first is not None else {}) if kept_loss_kinks else {}
    certificate = {"kind": NAME, "dropped_samples": [int(i) for i in st.dropped], "losses_exactly_zero": exact,
                   "drop_all_zero_loss": bool(res["drop_all"]),
                   "first_order_certificate": {k: fo_cert[k] for k in ("kind", "lambda", "pi") if k in fo_cert},
                   "nonlinear_layers": list(st.nl), "mu": res["mu"], "lambda_bvls": res["lambda_bvls"],
                   "equations": res["equations"], "kink_copies": res["kink_copies"],
                   "residual_inf": res["residual_inf"], "rounding_ratio": res["rounding_ratio"],
                   "theorem": "certify.secondorder.path_fit (module docstring): piecewise convexity in path space"}
    dropped = (f"; {st.dropped.size} sample(s) with loss 0 set aside (the loss is >= 0 there)"
               if st.dropped.size else "")
    copies = (f", {res['kink_copies']} kink copies with multipliers in [0, 1]" if res["kink_copies"] else "")
    reason = (f"d-stationary in the whole space of path coordinates ({_describe(st)}; {res['equations']} equations"
              f"{copies}, every residual within its rounding bound): the loss is convex on every piece in those "
              f"coordinates, so a local minimum{dropped}")
    flags = {"strict": None, "flat": None}
    return SecondOrder("local_min", NAME, reason=reason, flags=flags, certificate=certificate)


def recheck(ctx: Context, cert: dict, checks: list) -> None:
    """Recompute the path equations with the stored ``B``-copy multipliers (and, where bounded least
    squares was needed, the stored ``A``-copy ones); the others are the closed-form solution."""
    problem = ctx.problem
    drop_all = bool(cert.get("drop_all_zero_loss", False))
    st = path_structure(problem, ctx.fwd, ctx.kinks, ctx.fo, _FirstFromCert(cert), drop_all=drop_all)
    if isinstance(st, str):
        checks.append(Check("path_fit_conditions", False, st))
        return
    same = ([int(i) for i in st.dropped] == list(cert.get("dropped_samples", []))
            and list(st.nl) == list(cert.get("nonlinear_layers", [])))
    checks.append(Check("path_fit_structure", same, f"dropped samples and nonlinear layers {st.nl} as in the report: "
                        f"{same}"))
    if not same:
        return
    if cert.get("losses_exactly_zero"):
        ex = exact_zero_losses(problem, st.dropped)
        checks.append(Check("path_fit_exact_zero", ex is True, f"dropped samples' losses exactly 0: {ex}"))
    res = path_test(problem, ctx.fwd, ctx.kinks, ctx.fo, _FirstFromCert(cert),
                    stored={"mu": cert.get("mu", []), "lambda_bvls": cert.get("lambda_bvls", [])}, drop_all=drop_all)
    ok = res["status"] == "ok"
    checks.append(Check("path_fit", ok, (f"{res.get('equations')} path-space equations close within their rounding "
                                         f"bounds (worst at {res.get('rounding_ratio', float('nan')):.3g} of its bound)")
                        if ok else f"path-space certificate does not re-check: {res.get('reason')}"))


class _FirstFromCert:
    """The first-order multipliers a path certificate used for loss kinks, read back from the report."""

    def __init__(self, cert: dict):
        self.certificate = cert.get("first_order_certificate") or {}
