"""One Newton–KKT step: the Lagrangian Hessian, projected truncated CG, blocking kinks, restoration
onto the held kinks, and the line search on the true loss."""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from ..data import Problem
from ..evaluate import loss_with_bound
from ..tangent import hessian_vector_product, tangent_forward
from .limits import CHORD_RATE, CROSS_RATIO, EPS, MAX_ADD, MAX_HOLD, TOL_HOLD, TOL_SIDE
from .pieces import Held, Point, blocks, evaluate, held_rows, loss_pieces, tie_scale
from .projector import Projector

log = logging.getLogger(__name__)


def lagrangian_hvp(pt: Point, nu: np.ndarray):
    """``v -> H v`` for the Lagrangian ``L_ref + nu' phi_H`` of the reference piece."""
    problem = pt.problem
    net = problem.network
    inject = [np.zeros_like(d) for d in pt.D]
    loss_grad = tie_mixed_slopes(pt, nu)
    any_inject = False
    for key, v in zip(pt.keys, nu[:len(pt.keys)]):
        if key[0] == "unit":
            _, l, i, j = key
            inject[l - 1][i, j] += v
            any_inject = True
    inj = inject if any_inject and net.n_layers > 1 else None

    def hvp(v):
        return hessian_vector_product(problem, pt.fwd, pt.D, v, loss_grad=loss_grad, inject=inj)
    return hvp


def tie_mixed_slopes(pt: Point, nu: np.ndarray) -> np.ndarray:
    """Per-sample loss slopes with the held ties' multipliers injected: ``loss slope + sum_ties n nu
    (S_ref - S_b)`` (the multiplier-mixed slope of a tied sample)."""
    problem = pt.problem
    n = problem.n_samples
    out = np.array(pt.loss_slopes, dtype=np.float64, copy=True)
    for key, v in zip(pt.keys, nu[:len(pt.keys)]):
        if key[0] == "tie":
            _, i, grp, b, ref = key
            _, slopes = problem.loss.pieces(pt.fwd.output[i:i + 1], problem.Y[i:i + 1])
            out[i] += n * v * (slopes[0, grp, ref] - slopes[0, grp, b])
    return out


def steihaug(hvp, project, r0: np.ndarray, radius: float, rho: float, tol: float, deadline, max_iter: int):
    """Projected truncated CG for ``min r0.x + 1/2 x'(H + rho I)x`` over ``null B``, ``||x|| <= radius``.

    Returns ``(x, model_value, info)``; ``info`` says why it stopped.
    """
    x = np.zeros_like(r0)
    r = r0.copy()
    d = -r
    rr = float(r @ r)
    info = "converged"
    k = 0
    for k in range(max_iter):
        if deadline is not None and time.perf_counter() > deadline:
            info = "deadline"
            break
        Hd = project(hvp(d) + rho * d)
        curv = float(d @ Hd)
        if curv <= 1e-300 * float(d @ d):
            x = x + to_boundary(x, d, radius) * d
            info = "negative curvature"
            break
        alpha = rr / curv
        if np.linalg.norm(x + alpha * d) >= radius:
            x = x + to_boundary(x, d, radius) * d
            info = "boundary"
            break
        x = x + alpha * d
        r = r + alpha * Hd
        rr_new = float(r @ r)
        if np.sqrt(rr_new) <= tol:
            break
        d = -r + (rr_new / rr) * d
        rr = rr_new
    else:
        info = "iterations"
    Hx = project(hvp(x) + rho * x) if np.any(x) else np.zeros_like(x)
    model = float(r0 @ x + 0.5 * x @ Hx)
    return x, model, f"{info} after {k + 1} CG iterations"


def to_boundary(x: np.ndarray, d: np.ndarray, radius: float) -> float:
    """``tau >= 0`` with ``||x + tau d|| = radius``."""
    a, b, c = float(d @ d), 2.0 * float(x @ d), float(x @ x) - radius * radius
    if a == 0:
        return 0.0
    return (-b + np.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)


def hess_size(hvp, p: int) -> float:
    """A cheap estimate of ``||H||`` (three power iterations from a fixed vector)."""
    v = np.random.default_rng(0).standard_normal(p)
    v /= np.linalg.norm(v)
    s = 0.0
    for _ in range(3):
        w = hvp(v)
        s = float(np.linalg.norm(w))
        if s == 0:
            return 0.0
        v = w / s
    return s


def predicted_crossings(pt: Point, x: np.ndarray, held: Held, gamma_floor: float):
    """Where the step ``theta + t x`` meets blocking kinks that are not held (first-order prediction).

    Returns ``(units, ties)``: ``units`` a list over hidden layers of ``(t, i, j)`` arrays (sample,
    unit), ``ties`` a ``(t, i, g, piece)`` tuple of arrays (the piece that would overtake the chosen
    one); ``t >= 0`` for every kink the step moves towards. Concave kinks that feed no held kink
    are left out (across them the loss is below the model).
    """
    problem = pt.problem
    net = problem.network
    s_pos = net.activation.slopes[0]
    dz = tangent_forward(problem, pt.fwd, x, D=pt.D)
    units = []
    for l in range(1, net.n_layers):
        if not net.activation.has_kink:
            units.append((np.zeros(0), np.zeros(0, int), np.zeros(0, int)))
            continue
        z, v = pt.fwd.pre[l - 1], dz[l - 1]
        side = np.where(pt.D[l - 1] == s_pos, 1.0, -1.0)
        toward = (side * v < 0) & ~held.units[l - 1] & blocks(pt, held, l, gamma_floor)
        i, j = np.nonzero(toward)
        units.append((np.abs(z[i, j]) / np.abs(v[i, j]), i, j))
    ties = (np.zeros(0), np.zeros(0, int), np.zeros(0, int), np.zeros(0, int))
    if problem.loss.piecewise_linear:
        vals, slopes, choose, _ = loss_pieces(problem, pt.fwd.output, held)
        dv = np.einsum("igpc,ic->igp", slopes, dz[-1])
        v_best = np.take_along_axis(vals, choose[:, :, None], axis=2)
        d_best = np.take_along_axis(dv, choose[:, :, None], axis=2)
        gap, rate = v_best - vals, dv - d_best          # piece a overtakes when rate * t >= gap
        toward = rate > 0
        idx_i, idx_g = np.meshgrid(np.arange(vals.shape[0]), np.arange(vals.shape[1]), indexing="ij")
        toward[idx_i, idx_g, choose] = False
        for (i, grp) in held.ties:
            toward[i, grp] = False
        i, grp, a = np.nonzero(toward)
        ties = (np.maximum(gap[i, grp, a], 0.0) / rate[i, grp, a], i, grp, a)
    return units, ties


def crossing_times(units, ties) -> np.ndarray:
    return np.sort(np.concatenate([u[0] for u in units] + [ties[0]]))


def blocking_now(pt: Point, x: np.ndarray, held: Held, gamma_floor: float, t_min: float = 1e-9):
    """Blocking kinks the step ``x`` would cross at once (within ``t_min`` of its start).

    Kinks released at zero sit on the boundary of the reference piece: a step leaving the piece
    through one of them is blocked at ``t = 0`` (a degenerate step of an active-set method), so
    they are held before the step is taken. Returns ``(units, ties)`` as :func:`crossed`.
    """
    units, ties = predicted_crossings(pt, x, held, gamma_floor)
    hit_units = []
    for l, (t, i, j) in enumerate(units, start=1):
        sel = t <= t_min
        hit_units += [(l, int(a), int(b)) for a, b in zip(i[sel], j[sel])]
    hit_ties = {}
    t, i, grp, a = ties
    for k in np.argsort(t):
        if t[k] > t_min:
            break
        hit_ties.setdefault((int(i[k]), int(grp[k])), int(a[k]))
    return hit_units, hit_ties


def crossed(prev: Point, problem: Problem, theta: np.ndarray, held: Held,
             gamma_floor: float) -> tuple[list, dict]:
    """Convex kinks not held at ``prev`` that changed side on the way to ``theta`` (blocking kinks).

    Returns the unit kinks ``[(l, i, j)]`` and the loss groups ``{(i, g): piece}`` whose best piece
    changed (the new piece joins a tie with the old one); for a held tie that several pieces rose
    above, the value is the tuple of those pieces (all join it: :func:`with_crossed` takes both forms).
    """
    net = problem.network
    new = net.with_theta(theta)
    fwd = new.forward(problem.X, with_scale=True)
    s_pos, s_neg = net.activation.slopes
    units = []
    if net.activation.has_kink:
        for l in range(1, net.n_layers):
            z_old = prev.fwd.pre[l - 1]
            side_old = np.where(prev.D[l - 1] == s_pos, 1.0, -1.0) if s_pos != s_neg else np.sign(z_old)
            z = fwd.pre[l - 1]
            flip = (side_old * z < 0) & ~held.units[l - 1] & (np.abs(z) > TOL_SIDE * fwd.scale[l - 1])
            # only convex kinks block: across a concave one (gamma < 0) the loss is below the model
            flip &= blocks(prev, held, l, gamma_floor)
            units += [(l, int(i), int(j)) for i, j in zip(*np.nonzero(flip))]
    ties = {}
    if problem.loss.piecewise_linear:
        _, _, choose_old, _ = loss_pieces(prev.problem, prev.fwd.output, held)
        vals, _ = problem.loss.pieces(fwd.output, problem.Y)
        best = vals.argmax(axis=2)
        scale = tie_scale(problem, fwd.output, fwd.scale[-1])
        ref = np.take_along_axis(vals, choose_old[:, :, None], axis=2)[:, :, 0]
        gap = vals.max(axis=2) - ref
        for i, grp in zip(*np.nonzero((best != choose_old) & (gap > TOL_SIDE * scale[:, None]))):
            key = (int(i), int(grp))
            above = np.nonzero(vals[i, grp] - ref[i, grp] > TOL_SIDE * scale[i])[0]
            # a held tie that two pieces rose above joins both: one at a time, the other overtakes the
            # tie at once and the polish cycles through the pairs of a many-way tie with shrinking steps
            # (digits_mchinge_wd_sgd: a sample with three margins at 1 held as (4, 6), (3, 6), (1, 6)...)
            ties[key] = tuple(int(a) for a in above) if key in held.ties and above.size > 1 else int(best[i, grp])
    return units, ties


def with_crossed(held: Held, units: list, ties: dict, choose_old) -> Held:
    out = held.copy()
    for l, i, j in units:
        out.units[l - 1][i, j] = True
        out.side[l - 1][i, j] = 0
    for (i, grp), b in ties.items():
        if (i, grp) in out.ties:
            active, ref = out.ties[(i, grp)]
            joined = tuple(sorted(set(active) | ({b} if isinstance(b, int) else set(b))))
            if joined != active:
                out.ties[(i, grp)] = (joined, ref)
        else:
            a = int(choose_old[i, grp])
            out.ties[(i, grp)] = (tuple(sorted((a, b))), a)
        out.tie_side.pop((i, grp), None)
    return out


def add_independent(base: Problem, theta: np.ndarray, held: Held, units: list, ties: dict, choose_old,
                     gauge: sp.csr_matrix, proj: Projector | None = None) -> Held:
    """``held`` with the crossed kinks added, except those whose rows depend on the held ones.

    A dependent kink cannot be held independently: when the others are at zero its value is fixed
    (e.g. a unit with more kinks than its inputs have dimensions, or samples whose inputs are
    affinely dependent with equal targets), so it crosses unheld. Dependence is judged for the new
    rows against the span of the held rows and the gauge (and of the new rows kept before them), by
    their distance to that span relative to their norm (:func:`independent_new`): a pivoted
    factorisation of all rows together may flag an old row instead of the new one that made the set
    dependent, and holding such a new row makes the kink equations inconsistent at rounding level
    (Gauss-Newton cannot restore them, every step through the kink fails, and the method stalls).
    ``proj``: a projector already built at ``theta`` (the round's own), used when its rows are the held
    rows and ``gauge`` exactly.
    """
    out = with_crossed(held, units, ties, choose_old)
    pt = evaluate(base, theta, out, gauge=False, grad=False)
    is_new = np.array([_is_new(key, held) for key in pt.keys], dtype=bool)
    if not is_new.any():
        return out
    keep = independent_new(pt.rows[np.nonzero(~is_new)[0]], pt.rows[np.nonzero(is_new)[0]], gauge, proj=proj)
    if keep.all():
        return out
    drop = {key for key, k in zip([key for key, n in zip(pt.keys, is_new) if n], keep) if not k}
    keep_units = [u for u in units if ("unit",) + u not in drop]
    dropped_groups = {(key[1], key[2]) for key in drop if key[0] == "tie"}
    keep_ties = {k: a for k, a in ties.items() if k not in dropped_groups}
    return with_crossed(held, keep_units, keep_ties, choose_old)


def _is_new(key: tuple, held: Held) -> bool:
    """Whether the row ``key`` of a held set is not a row of ``held``."""
    if key[0] == "unit":
        _, l, i, j = key
        return not bool(held.units[l - 1][i, j])
    _, i, grp, b, _ = key
    return (i, grp) not in held.ties or b not in held.ties[(i, grp)][0]


def _same_matrix(proj: Projector | None, B: sp.csr_matrix) -> bool:
    """Whether ``proj`` was built from exactly ``B`` (shape, pattern and every value)."""
    if proj is None or proj.m == 0 or proj.B.shape != B.shape or proj.B.nnz != B.nnz:
        return False
    A, C = proj.B, B
    return (np.array_equal(A.indptr, C.indptr) and np.array_equal(A.indices, C.indices)
            and np.array_equal(A.data, C.data))


#: a new kink row within this distance of the span of the held rows (relative to its norm) is dependent
REL_DEPENDENT = 1e-6
#: entries of the dense block of projected new rows formed at once
DENSE_NEW = 10_000_000


def independent_new(old: sp.csr_matrix, new: sp.csr_matrix, gauge: sp.csr_matrix,
                    rel: float = REL_DEPENDENT, proj: Projector | None = None) -> np.ndarray:
    """Which rows of ``new`` to keep: (k,) bool, greedily, each one further than ``rel`` (relative to
    its norm) from the span of ``old``, ``gauge`` and the new rows kept before it (pivoted Cholesky
    of the Gram matrix of the new rows' normalised components orthogonal to that span).

    ``proj``: a projector whose rows may be ``old`` and ``gauge`` already; it replaces the first
    chunk's only when they are the same matrix entry for entry (then it is the projector this would
    build, factorisation and rounding included), so the answer is the same either way.
    """
    import scipy.linalg as sla
    k, p = new.shape
    keep = np.zeros(k, dtype=bool)
    norms = np.sqrt(np.asarray(new.multiply(new).sum(axis=1)).ravel())
    chunk = max(1, DENSE_NEW // max(p, 1))
    base = sp.vstack([old, gauge], format="csr")
    for a in range(0, k, chunk):
        idx = np.arange(a, min(k, a + chunk))
        idx = idx[norms[idx] > 0]
        if idx.size == 0:
            continue
        if not keep.any() and _same_matrix(proj, base):
            this = proj
        else:
            this = Projector(sp.vstack([base, new[np.nonzero(keep)[0]]], format="csr"))
        R = this.project(new[idx].toarray().T).T / norms[idx, None]
        G = R @ R.T
        if float(np.diag(G).max()) <= rel * rel:
            continue
        _, piv, rank, _ = sla.lapack.dpstrf(G, lower=1, tol=rel * rel)
        keep[idx[piv[:rank] - 1]] = True
    return keep


def restore(base: Problem, theta: np.ndarray, held: Held, *, gauge: sp.csr_matrix | None = None,
             max_iter: int = 8, deadline: float | None = None,
             proj: Projector | None = None) -> tuple[np.ndarray, float, bool]:
    """Gauss–Newton onto ``M_H = {phi_H = 0}`` (least-norm corrections, orthogonal to ``gauge``).

    ``gauge`` (rows) defaults to the symmetry directions at ``theta``; a caller moving a short way
    passes those of its own point. Returns ``(theta, max |phi_k| / scale_k, ok)``; ``ok`` when
    the held kinks end within :data:`TOL_HOLD` of zero or stop improving at rounding level.

    A factorisation of ``B B'`` is kept while its corrections contract the residual by
    :data:`CHORD_RATE` (the chord method; the rows move little over a correction): factoring is
    most of the cost with thousands of held kinks. ``proj`` (a :class:`Projector` of ``held``'s rows
    and ``gauge`` at a nearby point, e.g. the step's start) is used for the first correction.
    ``max_iter`` bounds the factorisations.
    """
    worst_prev = np.inf
    worst = np.inf
    factored = 0
    fresh = False          # whether proj was factored at the previous iterate
    for _ in range(4 * max_iter):
        pt = evaluate(base, theta, held, gauge=gauge is None, grad=False, rows=False)
        if gauge is None:
            gauge = pt.gauge
        if pt.phi.size == 0:
            return theta, 0.0, True
        worst = float((np.abs(pt.phi) / np.maximum(pt.phi_scale, 1e-300)).max())
        if worst <= TOL_HOLD:
            return theta, worst, True
        if proj is not None and proj.m != pt.phi.size + gauge.shape[0]:
            proj = None                     # not this held set's factorisation
        if proj is not None and not fresh and worst > CHORD_RATE * worst_prev:
            proj = None                     # a stale factorisation that no longer contracts: refactor
        elif worst >= 0.5 * worst_prev:
            if worst <= 1e3 * TOL_HOLD:
                return theta, worst, True   # rounding level: the evaluation cannot see less
            if factored >= 3:
                return theta, worst, False  # not converging (inconsistent or too far): give up
        if proj is None:
            if factored >= max_iter:
                break
            proj = Projector(sp.vstack([held_rows(pt.problem, pt.fwd, pt.D, held), gauge], format="csr"))
            factored += 1
            fresh = True
        else:
            fresh = False
        theta = theta - proj.lift(np.concatenate([pt.phi, np.zeros(gauge.shape[0])]))
        worst_prev = worst
        if deadline is not None and time.perf_counter() > deadline:
            break
    pt = evaluate(base, theta, held, gauge=False, grad=False, rows=False)
    worst = float((np.abs(pt.phi) / np.maximum(pt.phi_scale, 1e-300)).max(initial=0.0))
    return theta, worst, worst <= 1e3 * TOL_HOLD


def zero_loss(problem: Problem) -> float:
    """A loss below this is zero up to rounding (the data loss attains 0: square, hinge, absolute...)."""
    y2 = float(np.mean(np.abs(problem.Y.astype(np.float64)) ** 2)) if problem.Y.dtype.kind == "f" else 1.0
    return (64 * EPS) ** 2 * (1.0 + y2)


def rounding(problem: Problem, theta: np.ndarray) -> float:
    return float(loss_with_bound(problem, theta).error)


def line_search(problem: Problem, pt: Point, held: Held, x: np.ndarray, model: float, deadline,
                 gamma_floor: float, max_halvings: int = 20, proj: Projector | None = None):
    """Backtrack ``t`` until ``Proj_{M_{H + crossed}}(theta + t x)`` has a loss below ``L(theta)``.

    Returns ``(theta_new, held_new, ratio, t)`` (``ratio``: actual over predicted decrease), ``"flat"``
    when the loss no longer changes beyond its rounding along the shorter steps, or None. ``proj``:
    the factorisation of ``held``'s rows at ``pt`` (:func:`restore` starts from it while no kink is
    added).
    """
    base = pt.loss
    flat = 4 * rounding(problem, pt.theta)
    risen = False                      # some longer trial went up: a genuine failure, not a short step
    times = crossing_times(*predicted_crossings(pt, x, held, gamma_floor))
    times = times[times > 1e-9]                # those at once were held before (or cannot be)
    if model < 0 and np.count_nonzero(times < 1.0) > MAX_ADD:
        # a step across many convex kinks whose model the loss still follows (CROSS_RATIO of the
        # predicted decrease) is taken whole without holding them: far from a minimum the kinks a
        # descent crosses are mostly not where it ends, and holding each one (a row in every
        # projection) made the rounds of deep nets slower and slower (digits_ce_depth3_adam: 29
        # rounds in 150 s, 2,927 kinks held). Shorter unheld steps zigzag across the kinks that do
        # stop the descent (tried: the polish stalls with none held); those are held below.
        if deadline is not None and time.perf_counter() > deadline:
            return None
        trial, _, ok = restore(problem, pt.theta + x, held, gauge=pt.gauge, deadline=deadline, proj=proj)
        val = problem.value(trial) if ok else np.nan
        if ok and base - val >= CROSS_RATIO * -model:
            return trial, held, (base - val) / -model, 1.0
    t = 1.0
    budget = min(max(MAX_ADD, len(pt.keys) // 4), MAX_HOLD)   # kinks one step may add at most (first trial)
    if np.count_nonzero(times < t) > budget:
        t = float(times[budget])
    choose_old = loss_pieces(pt.problem, pt.fwd.output, held)[2] if problem.loss.piecewise_linear else None
    for _ in range(max_halvings):
        if deadline is not None and time.perf_counter() > deadline:
            return None
        trial = pt.theta + t * x
        units, ties = crossed(pt, problem, trial, held, gamma_floor)
        held_t = add_independent(problem, trial, held, units, ties, choose_old, pt.gauge) if (units or ties) \
            else held
        trial, kres, ok = restore(problem, trial, held_t, gauge=pt.gauge, deadline=deadline,
                                  proj=proj if held_t is held else None)
        val = problem.value(trial) if ok else np.nan
        if ok and val < base:
            ratio = (base - val) / max(-model * t, 1e-300) if model < 0 else 1.0
            return trial, held_t, ratio, t
        risen = risen or not ok or val - base > flat
        if ok and abs(val - base) <= flat and 0.25 <= t < 1.0 and not units and not ties and not risen:
            return "flat"             # the step changes L only below its rounding: it is too short
        log.debug("    t = %g: %d unit(s) and %d tie(s) crossed, restored %s (%.3g), L - L0 = %.3g",
                  t, len(units), len(ties), ok, kres, val - base)
        t *= 0.5
    return None
