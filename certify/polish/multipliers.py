"""Multipliers of the held kinks: which side each one's release would descend to, releases, and the
stationarity of a point (reduced gradient, kink residual, multiplier violations)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ..data import Problem
from ..tangent import backprop
from .limits import MAX_RELEASES, MAX_SAME_POINT, RELEASE_RATIO, TOL_FACE, TOL_HOLD, TOL_SLOPE
from .pieces import Held, Point, evaluate, nested, nested_of, overtaken_ties
from .projector import Projector

log = logging.getLogger(__name__)


def grad_scale(pt: Point) -> float:
    """Size of the terms the gradient entries are summed from (absolute back-propagation)."""
    problem, fwd = pt.problem, pt.fwd
    D_abs = [np.abs(d) for d in pt.D]     # held units carry s_pos, the larger slope in size
    gs, _ = backprop(problem, fwd, D_abs, np.abs(pt.loss_slopes) / problem.n_samples, absolute=True)
    if problem.weight_decay:
        gs = gs + problem.weight_decay * np.abs(pt.theta)
    return max(float(np.abs(gs).max(initial=0.0)), 1e-300)


def mixed_gamma(pt: Point, nu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jumps of the held rows, with a unit kink of the last hidden layer whose sample holds a loss tie
    judged in its nested structure: ``(gamma, nested_mask)``.

    Off the unit's kink the tie's surface bends (the output moves by ``(s_neg - s_pos) z W_L[:, j]``),
    and the interval of the unit's multiplier is that of the *multiplier-mixed* loss slope: its jump
    is ``(s_pos - s_neg)`` times the adjoint of ``loss slope + sum_ties n nu (S_ref - S_b)`` at the
    unit (the derivation is :mod:`certify.nearby`'s *Nested*). Other nested unit kinks (feeding held
    units of later layers) keep their reference-piece jump and are not judged here (``mask`` False).
    """
    problem = pt.problem
    k = len(pt.keys)
    gam = np.array(pt.gamma[:k], dtype=np.float64)
    L = problem.network.n_layers
    tie_samples = {key[1] for key in pt.keys if key[0] == "tie"}
    units_at = {}
    for key in pt.keys:
        if key[0] == "unit":
            units_at[key[2]] = units_at.get(key[2], 0) + 1
    # one unit kink under the tie(s) of its sample: with several, releasing one leaves the others'
    # rows bending the tie's surface and the line search stalls (a hinge net in tests/test_polish.py);
    # those stay held with the tie, and the checker judges them
    mask = np.array([key[0] == "unit" and key[1] == L - 1 and key[2] in tie_samples and units_at[key[2]] == 1
                     for key in pt.keys], dtype=bool)
    if not mask.any():
        return gam, mask
    from .steps import tie_mixed_slopes
    _, adj = backprop(problem, pt.fwd, pt.D, tie_mixed_slopes(pt, nu) / problem.n_samples)
    s_pos, s_neg = problem.network.activation.slopes
    for q in np.nonzero(mask)[0]:
        _, l, i, j = pt.keys[q]
        gam[q] = (s_pos - s_neg) * adj[l - 1][i, j]
    return gam, mask


def sides(pt: Point, nu: np.ndarray, gamma_floor: float, gam: np.ndarray | None = None):
    """Per held row: the normalised slopes into ``phi > 0`` and ``phi < 0`` (>= 0 both: consistent).

    ``s_plus = -nu / |gamma|``, ``s_minus = (nu + gamma) / |gamma|``; for a convex kink
    ``s_plus = 1 - lambda`` and ``s_minus = lambda`` with ``lambda = 1 + nu / gamma``. Rows with
    ``|gamma| <= gamma_floor`` (a kink the loss does not see) get ``-inf`` on the side ``nu`` descends.
    """
    k = len(pt.keys)
    gam = pt.gamma[:k] if gam is None else gam[:k]
    nu = nu[:k]
    tiny = np.abs(gam) <= gamma_floor
    g_abs = np.where(tiny, 1.0, np.abs(gam))
    s_plus = -nu / g_abs
    s_minus = (nu + gam) / g_abs
    s_plus = np.where(tiny & (nu > 0), -np.inf, np.where(tiny, np.inf, s_plus))
    s_minus = np.where(tiny & (nu <= 0), -np.inf, np.where(tiny, np.inf, s_minus))
    return s_plus, s_minus


def tie_weights(pt: Point, nu: np.ndarray) -> dict:
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


def violations(pt: Point, nu: np.ndarray, gscale: float, mixed=None) -> np.ndarray:
    """Per held row: the rate at which ``L`` falls along the unit normal into its descending side,
    relative to the size of the gradient's terms (0 when the multiplier lies in its interval)."""
    k = len(pt.keys)
    if k == 0:
        return np.zeros(0)
    gam, mixed = mixed_gamma(pt, nu) if mixed is None else mixed
    s_plus, s_minus = sides(pt, nu, 1e-12 * gscale, gam)
    worst = np.minimum(s_plus, s_minus)
    row_norm = np.sqrt(np.asarray(pt.rows.multiply(pt.rows).sum(axis=1)).ravel())
    size = np.abs(gam) * row_norm
    finite = np.isfinite(worst)
    out = np.abs(nu[:k]) * row_norm                      # kinks the loss does not see: |nu| is the slope
    out[finite] = np.maximum(0.0, -worst[finite]) * size[finite]
    # a unit kink that feeds a held kink (same sample, downstream) acts on L through that kink: its
    # multiplier in the reference piece is not its multiplier in the nested piecewise structure. Over
    # a loss tie (last hidden layer) the nested interval is known (mixed_gamma); feeding a held unit
    # of a later layer it is held as long as the kink it feeds is, and the checker judges it
    n = pt.problem.n_samples
    feeds = {l: nested_of(pt.keys, l, n) for l in {key[1] for key in pt.keys if key[0] == "unit"}}
    for q, key in enumerate(pt.keys):
        if key[0] == "unit" and feeds[key[1]][key[2]] and not mixed[q]:
            out[q] = 0.0
    for (i, grp), w in tie_weights(pt, nu).items():
        low = min(w.values())
        if low < 0:
            for q, key in enumerate(pt.keys):
                if key[0] == "tie" and key[1] == i and key[2] == grp:
                    out[q] = max(out[q], -low * row_norm[q] / pt.problem.n_samples)
    return out / gscale


def release(pt: Point, nu: np.ndarray, held: Held, face_solved: bool, gamma_floor: float,
             viol: np.ndarray, mixed=None) -> tuple[Held, int]:
    """Release held kinks whose multiplier lies outside its interval, to the side that descends.

    Only kinks whose descent (``viol``, see :func:`violations`) exceeds :data:`TOL_SLOPE` count.
    Concave kinks (``gamma < 0``) and kinks the loss does not see (``|gamma| <= gamma_floor``) are
    released at once; convex kinks and loss ties only once their face is solved (``face_solved``:
    the reduced gradient is ~0, so the multipliers are those of the face's KKT point, as in an
    active-set QP), and a kink released :data:`MAX_RELEASES` times stays held (anti-cycling; also a
    concave one: a unit kink under a held tie, concave by its nested jump, is convex to the blocking
    test, which sees the base slope, and was released and held again for ever). A
    unit kink feeding a held kink is not released (see :func:`violations`).
    """
    gam, mixed = mixed_gamma(pt, nu) if mixed is None else mixed
    s_plus, s_minus = sides(pt, nu, gamma_floor, gam)
    out = held.copy()
    count = 0
    n = pt.problem.n_samples
    feeds = {l: nested(held, l, n) for l in range(1, len(held.units) + 1)}
    for k, key in enumerate(pt.keys):
        if key[0] != "unit" or viol[k] <= TOL_SLOPE:
            continue
        if feeds[key[1]][key[2]] and not mixed[k]:
            continue                     # feeds a held unit kink: see violations
        convex = gam[k] > gamma_floor
        if (convex and not face_solved) or out.releases.get(key, 0) >= MAX_RELEASES:
            continue
        _, l, i, j = key
        out.units[l - 1][i, j] = False
        out.side[l - 1][i, j] = 1 if s_plus[k] < s_minus[k] else -1
        out.releases[key] = out.releases.get(key, 0) + 1
        count += 1
    if not face_solved:
        return out, count
    bad_groups = {(key[1], key[2]) for q, key in enumerate(pt.keys) if key[0] == "tie" and viol[q] > TOL_SLOPE}
    for (i, grp), w in tie_weights(pt, nu).items():
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


@dataclass
class Stationarity:
    pt: Point
    held: Held
    proj: Projector
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


def stationarity(problem: Problem, theta: np.ndarray, held: Held, max_updates: int = 4) -> Stationarity:
    """Multipliers, reduced gradient and releases at ``theta`` (releases change the held set)."""
    for _ in range(max_updates):
        pt = evaluate(problem, theta, held)
        stale = overtaken_ties(problem, pt.fwd.output, held)
        if stale:                   # no kinks of the loss any more: the loss follows the overtaking piece
            held = held.copy()
            for key in stale:
                del held.ties[key]
            log.debug("  %d held tie(s) overtaken by another piece: released", len(stale))
            pt = evaluate(problem, theta, held)
        proj = Projector(sp.vstack([pt.rows, pt.gauge], format="csr"))
        nu = proj.multipliers(-pt.g)
        r = proj.project(pt.g)
        gscale = grad_scale(pt)
        red_rel = float(np.abs(r).max(initial=0.0)) / gscale
        mixed = mixed_gamma(pt, nu)                      # (gamma, nested mask): one backprop per pass
        viol = violations(pt, nu, gscale, mixed)
        # the face counts as solved when its reduced gradient is below TOL_FACE, or when a held kink's
        # wrong-signed multiplier promises a steeper descent than the face has left (the dual test of
        # active-set methods): on a face without a nearby minimum (a valley along which the loss
        # keeps falling) waiting for the face to be solved never releases the kink
        face_solved = red_rel <= TOL_FACE
        dual = red_rel <= RELEASE_RATIO * viol.max(initial=0.0)
        if face_solved and viol.max(initial=0.0) > TOL_SLOPE:
            # the least-norm multipliers leave their intervals; other multipliers may not (dependent
            # rows share the load): the box-constrained least squares decides, as the checker's QP
            box = box_multipliers(pt, gscale, nu, viol > TOL_SLOPE)
            if box is None:
                pass
            elif float(np.abs(box[1]).max(initial=0.0)) / gscale <= max(10 * red_rel, TOL_SLOPE):
                nu, viol, mixed = box[0], np.zeros_like(viol), None     # (mixed follows the new nu)
            else:
                new_held, n_rel = release_along(pt, held, -box[1], box[0], gscale)
                if n_rel:
                    log.debug("  released %d kink(s) along the box-multiplier descent", n_rel)
                    held = new_held
                    continue
        new_held, n_rel = release(pt, nu, held, face_solved or dual, 1e-12 * gscale, viol, mixed)
        if n_rel == 0:
            break
        log.debug("  released %d kink(s)", n_rel)
        held = new_held
    kink_res = float((np.abs(pt.phi) / np.maximum(pt.phi_scale, 1e-300)).max(initial=0.0))
    return Stationarity(pt=pt, held=held, proj=proj, nu=nu, r=r, gscale=gscale, red_rel=red_rel, kink_res=kink_res,
                         viol=float(viol.max(initial=0.0)))


def multiplier_bounds(pt: Point, gscale: float, nu: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Intervals of the held rows' multipliers ``nu`` (``g + B' nu = 0`` at a KKT point).

    A unit kink with jump ``gamma > 0`` needs ``nu`` in ``[-gamma, 0]`` (``lambda`` in [0, 1]), a
    loss tie ``[-1/n, 0]`` per losing piece (the simplex is relaxed to a box for three or more
    pieces), a kink the loss does not see ``~0``; kinks feeding a held unit kink and the gauge are
    free. A last-layer unit kink under a held tie gets its nested jump (:func:`mixed_gamma`, at the
    multipliers ``nu`` given; without them it is free too).
    """
    k = len(pt.keys)
    lo = np.full(k + pt.gauge.shape[0], -np.inf)
    hi = np.full(k + pt.gauge.shape[0], np.inf)
    n = pt.problem.n_samples
    feeds = {l: nested_of(pt.keys, l, n) for l in {key[1] for key in pt.keys if key[0] == "unit"}}
    floor = 1e-12 * gscale
    gam_all, mixed = mixed_gamma(pt, nu) if nu is not None else (pt.gamma[:k], np.zeros(k, dtype=bool))
    for q, key in enumerate(pt.keys):
        if key[0] == "tie":
            lo[q], hi[q] = -1.0 / n, 0.0
        elif feeds[key[1]][key[2]] and not mixed[q]:
            continue
        else:
            gam = gam_all[q]
            lo[q], hi[q] = (min(-gam, 0.0), max(-gam, 0.0)) if abs(gam) > floor else (-floor, floor)
    return lo, hi


def box_multipliers(pt: Point, gscale: float, nu0: np.ndarray, bad: np.ndarray, *,
                    max_block: int = 1500) -> tuple[np.ndarray, np.ndarray] | None:
    """Multipliers in their intervals nearest to closing ``g + B' nu = 0``, and the residual.

    The bounded least squares ``min ||g + B' nu||`` is solved in the multipliers' own space:
    ``||g + B' nu||^2 = ||g||^2 + 2 nu'(B g) + nu'(B B')nu`` separates over the connected blocks of
    ``B B'`` (for first-layer kinks: one block per unit), so only the blocks holding a violating row
    (``bad``) are solved again, starting from the least-norm ``nu0``. On a block, ``B B' = R'R``
    (eigen-decomposition, so dependent rows are fine) turns it into ``min ||R nu + c||`` over the
    box: scipy's ``lsq_linear`` (BVLS, exact, for small blocks; trust-region reflective refined on
    its active set for larger ones). The residual is zero at a KKT point, else minus the steepest
    descent of the loss's first-order model (as the checker's Clarke QP). None when a block to
    solve has more than ``max_block`` rows (dense work).
    """
    from scipy.optimize import lsq_linear
    B = sp.vstack([pt.rows, pt.gauge], format="csr")
    m = B.shape[0]
    if m == 0:
        return None
    G = (B @ B.T).tocsr()
    c_all = B @ pt.g
    lo_all, hi_all = multiplier_bounds(pt, gscale, nu0)
    _, labels = connected_components(G, directed=False)
    nu = nu0.copy()
    for comp in np.unique(labels[:bad.size][bad]):
        idx = np.nonzero(labels == comp)[0]
        if idx.size > max_block:
            return None
        Gc = G[idx][:, idx].toarray()
        w, V = np.linalg.eigh(0.5 * (Gc + Gc.T))
        keep = w > 1e-13 * max(float(w[-1]), 1e-300)
        R = np.sqrt(w[keep])[:, None] * V[:, keep].T                  # G_c = R'R on the range
        c = (V[:, keep].T @ c_all[idx]) / np.sqrt(w[keep])
        lo, hi = lo_all[idx], hi_all[idx]
        if idx.size <= 200:
            sol = lsq_linear(R, -c, bounds=(lo, hi), method="bvls", tol=1e-14, max_iter=20 * idx.size + 100)
            nu[idx] = np.clip(sol.x, lo, hi)
        else:
            sol = lsq_linear(R, -c, bounds=(lo, hi), method="trf", lsmr_tol=None, tol=1e-13, max_iter=100)
            nu[idx] = _refine_active(R, c, np.clip(sol.x, lo, hi), lo, hi)
    return nu, pt.g + B.T @ nu


def _refine_active(R: np.ndarray, c: np.ndarray, nu: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Solve ``min ||R nu + c||`` exactly for the multipliers not at a bound (kept if inside)."""
    width = np.where(np.isfinite(hi - lo), hi - lo, np.inf)
    at_lo = np.isfinite(lo) & (nu - lo <= 1e-9 * np.maximum(width, 1e-300))
    at_hi = np.isfinite(hi) & (hi - nu <= 1e-9 * np.maximum(width, 1e-300))
    free = ~(at_lo | at_hi)
    if not free.any():
        return nu
    fixed = np.where(at_lo, lo, np.where(at_hi, hi, 0.0))
    sub = np.linalg.lstsq(R[:, free], -c - R[:, ~free] @ fixed[~free], rcond=None)[0]
    if np.all(sub >= lo[free]) and np.all(sub <= hi[free]):
        out = fixed.copy()
        out[free] = sub
        return out
    return nu


def release_along(pt: Point, held: Held, d: np.ndarray, nu: np.ndarray, gscale: float) -> tuple[Held, int]:
    """Release the held kinks whose box multiplier ``nu`` sits at the end of its interval that lets
    the descent direction ``d`` (minus the box residual) move them off their surface: at
    ``lambda = 0`` into ``phi < 0``, at ``lambda = 1`` into ``phi > 0`` (the optimality conditions
    of the bounded least squares say no other kink moves at first order).

    Anti-cycling at one point: a kink released here :data:`MAX_SAME_POINT` times at the same
    ``theta`` (each time held again because it blocked the next step at once) stays held while the
    point does not move. Without it ``diabetes_sq_depth3_wd_adam``'s polish released three kinks
    and held them again round after round at one point until its 500 rounds ran out. (Counting
    these releases against :data:`MAX_RELEASES` over the whole polish instead cut
    ``iris_petal_abs_sgd``'s, whose kinks are released again and again as the point moves, short of
    the minimum it converges to.)"""
    if not np.any(d):
        return held, 0
    lo, hi = multiplier_bounds(pt, gscale, nu)
    move = pt.rows @ d
    size = np.sqrt(np.asarray(pt.rows.multiply(pt.rows).sum(axis=1)).ravel()) * float(np.linalg.norm(d))
    width = np.maximum(np.where(np.isfinite(hi - lo), hi - lo, np.inf), 1e-300)
    out = held.copy()
    count = 0
    here = hash(pt.theta.tobytes())
    for q, key in enumerate(pt.keys):
        if abs(move[q]) <= 1e-6 * size[q]:
            continue
        side = 1 if move[q] > 0 else -1
        at_bound = (hi[q] - nu[q] <= 1e-6 * width[q]) if side > 0 else (nu[q] - lo[q] <= 1e-6 * width[q])
        if not at_bound or not np.isfinite(lo[q] if side < 0 else hi[q]):
            continue
        rkey = key if key[0] == "unit" else ("tie", key[1], key[2])
        at, times = out.at_point.get(rkey, (None, 0))
        times = times if at == here else 0
        if times >= MAX_SAME_POINT or (key[0] == "tie" and (key[1], key[2]) not in out.ties):
            continue
        out.at_point[rkey] = (here, times + 1)
        if key[0] == "unit":
            out.units[key[1] - 1][key[2], key[3]] = False
            out.side[key[1] - 1][key[2], key[3]] = side
            out.releases[key] = out.releases.get(key, 0) + 1
            count += 1
        else:
            _, i, grp, b, _ = key
            active, r = out.ties[(i, grp)]
            loser = b if side > 0 else r           # phi = v_ref - v_b grows: b falls behind
            remaining = tuple(a for a in active if a != loser)
            if len(remaining) <= 1:
                del out.ties[(i, grp)]
                out.tie_side[(i, grp)] = remaining[0]
            else:
                out.ties[(i, grp)] = (remaining, r if r in remaining else remaining[0])
            count += 1
    return out, count
