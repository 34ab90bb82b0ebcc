"""Output order: the outputs near theta are ordered, and the convex loss is stationary on that order.

Where the pieces' curvature cannot decide -- an exactly flat valley through two pieces that is no
symmetry, as in ``nested_double_kink`` (tests/reference) -- an argument in *output space* can. Write
the loss as ``L(theta) = l(F(theta))`` with ``F`` the (n, C) outputs and ``l`` convex (every loss of
:mod:`certify.losses` is convex in the outputs), and suppose there is no weight decay.

**Theorem.** Let ``A`` be a set of *arcs* ``(k, lo, hi)`` such that near theta

    f_k(x_hi; theta') >= f_k(x_lo; theta'),   with equality at theta' = theta.

Every reachable output change ``D = F(theta') - F(theta)`` then lies in the cone
``K = {D : D[hi, k] - D[lo, k] >= 0 for every arc}``. If the convex ``l`` is d-stationary at
``F(theta)`` on ``K`` -- some subgradient ``G`` of ``l`` at ``F(theta)`` is a non-negative
combination ``G = sum_arcs mu_a (e_{hi,k} - e_{lo,k})`` -- then for theta' near theta

    L(theta') = l(F + D) >= l(F) + <G, D> = L(theta) + sum_arcs mu_a (D[hi, k] - D[lo, k]) >= L(theta),

a local minimum (not necessarily strict, and nothing is said about global optimality).

**Where the order comes from.** For monotone activations (ReLU, leaky ReLU with slope >= 0, the
identity) the relation between two samples' values of one unit is propagated layer by layer, as a
function of theta' near theta: ``EQ`` (identical), ``GE`` / ``LE`` (ordered), or unknown. Inputs
are constants (ordered by their difference). A pre-activation ``z_u = sum_m W[u, m] h_m + b_u``
inherits ``GE`` when every input unit ``m`` is ``EQ`` or is ordered with a weight of the matching
strict sign (a weight that is 0 at theta may change sign nearby: unknown); it is ordered anyway when
the two values differ at theta by more than their rounding bounds. A monotone activation keeps the
relation; a ReLU unit that is strictly dead at one sample (``z < 0`` beyond its rounding bound) is
at the activation's least value there, so that sample's value is below the other's (both dead:
``EQ``). Every strict inequality holds in a neighbourhood, so the relations are local facts.

The d-stationarity on ``K`` is the first-order test of :mod:`certify.first_order` in output space:
the loss's own kinks as in :mod:`certify.secondorder.affine` (with ``x`` replaced by the sample's
indicator), and one generator ``M max(D[lo, k] - D[hi, k], 0)`` per arc (it vanishes on ``K``;
``M`` bounds any arc's multiplier: the total size of a subgradient, which bounds an acyclic flow).
Multipliers close the equation up to rounding; ``verify`` re-derives every arc's relation and tie
with numpy and re-checks them.

**Exactness.** The ties ``f(x_hi) = f(x_lo)`` are equalities at theta, like kinks. When exact
arithmetic fits, :func:`run` also checks them and the output-space equation in rationals (the
certificate's ``exact``); otherwise they hold up to rounding, and the driver keeps the claim
``up_to_rounding`` whatever exact first order says.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from ..checks import Check, check_multipliers
from ..data import Problem
from ..formulate.first_order import OneLevel
from ..kinks import KinkStructure
from ..network import ForwardPass
from ..rounding import U, absolute_twin, factor, forward_factors
from .base import Context, SecondOrder

NAME = "output_order"

#: relations between two samples' values of one unit (as functions of theta' near theta)
EQ, GE, LE, UNKNOWN = 0, 1, -1, 2
#: at most this many sample pairs are compared (each costs one pass through the network's widths) ...
MAX_PAIRS = 200_000
#: ... and at most this many (pair, unit) relations are held at once
MAX_RELATIONS = 20_000_000


def applies(ctx: Context) -> str | None:
    return conditions(ctx.problem)


def conditions(problem: Problem) -> str | None:
    """Why the output-order argument does not apply (None when it does)."""
    if problem.weight_decay:
        return "output-order test does not hold with weight decay"
    if min(problem.network.activation.slopes) < 0:
        return "output-order test needs a monotone activation"
    if problem.n_samples < 2:
        return "output-order test needs two samples"
    return None


def run(ctx: Context) -> SecondOrder:
    problem, fwd, kinks = ctx.problem, _scaled(ctx.problem, ctx.fwd), ctx.kinks
    arcs, why = find_arcs(problem, fwd)
    if arcs is None:
        return SecondOrder(None, NAME, reason=why)
    if not arcs.size:
        return SecondOrder(None, NAME, reason="output-order test: no two samples have tied, ordered outputs")
    from ..first_order import decide_one_level
    one = order_model(problem, fwd, kinks, arcs)
    res = decide_one_level(one, time_limit=ctx.budget(), clarke=False)
    if not (res.stationary and res.certificate.get("kind") == "multipliers"):
        return SecondOrder(None, NAME, solver_calls=res.solver_calls, reason=(
            f"output-order test: {len(arcs)} ordered pairs of tied outputs, but the loss is not stationary on "
            f"their cone in output space"))
    checks: list = []
    check_multipliers(one, res.certificate, "output_order_multipliers", checks)
    if not checks[-1].ok:
        return SecondOrder(None, NAME, solver_calls=res.solver_calls,
                           reason="output-order test: the multipliers do not close within rounding")
    used = np.asarray(res.certificate["lambda"], dtype=np.float64)[one.n_generators - len(arcs):] > 0
    exact = _exact_check(problem, arcs, one, res.certificate)
    reason = (f"the outputs near theta keep the order of {int(used.sum())} pair(s) of samples tied at theta "
              f"(monotone activations, dead units and weight signs propagated through the layers), and the "
              f"convex {problem.loss.name} loss is stationary on that order in output space: a local minimum "
              f"(L(theta') >= L(theta) + sum mu (f_hi - f_lo)(theta') >= L(theta))")
    return SecondOrder("local_min", NAME, reason=reason, flags={"strict": None, "flat": None},
                       certificate={"kind": NAME, "arcs": arcs.tolist(), "bound": float(one.gamma[-1]),
                                    "fit_certificate": res.certificate, "exact": exact},
                       solver_calls=res.solver_calls)


def recheck(ctx: Context, cert: dict, checks: list) -> None:
    problem, fwd, kinks = ctx.problem, _scaled(ctx.problem, ctx.fwd), ctx.kinks
    why = conditions(problem)
    checks.append(Check("output_order_conditions", why is None, why or "no weight decay, monotone activation"))
    if why is not None:
        return
    try:
        arcs = np.asarray(cert.get("arcs", []), dtype=np.int64).reshape(-1, 3)
    except (TypeError, ValueError):
        arcs = np.zeros((0, 3), dtype=np.int64)
    n, C = problem.n_samples, problem.network.n_outputs
    ok = (arcs.size > 0 and bool(np.all((arcs[:, 0] >= 0) & (arcs[:, 0] < C)))
          and bool(np.all((arcs[:, 1:] >= 0) & (arcs[:, 1:] < n))))
    if ok:
        rel = pair_relations(problem, fwd, arcs[:, 1], arcs[:, 2])
        order = rel[np.arange(len(arcs)), arcs[:, 0]]
        tied = _tied(problem, fwd, arcs[:, 0], arcs[:, 1], arcs[:, 2])
        bad = np.nonzero(~(np.isin(order, (EQ, GE)) & tied))[0]
        ok = bad.size == 0
        detail = (f"{len(arcs)} arcs: f_k(x_hi) >= f_k(x_lo) near theta, tied at theta up to rounding"
                  + ("" if ok else f"; arc {arcs[bad[0]].tolist()} is not (relation {order[bad[0]]}, tied "
                                   f"{bool(tied[bad[0]])})"))
    else:
        detail = "no arcs stored, or an arc names a sample or output that does not exist"
    checks.append(Check("output_order_arcs", ok, detail))
    if not ok:
        return
    one = order_model(problem, fwd, kinks, arcs, bound=float(cert.get("bound", 0.0)))
    check_multipliers(one, cert.get("fit_certificate") or {}, "output_order_multipliers", checks)
    if cert.get("exact"):
        ok = _exact_check(problem, arcs, one, cert.get("fit_certificate") or {})
        checks.append(Check("output_order_exact", ok, "ties and the output-space equation exact in rationals"))


# ---------------------------------------------------------------------------- the order
def _scaled(problem: Problem, fwd: ForwardPass) -> ForwardPass:
    return fwd if fwd.scale is not None else problem.network.forward(problem.X, with_scale=True)


def _tied(problem: Problem, fwd: ForwardPass, k: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``f_k(x_i) = f_k(x_j)`` within the rounding bounds of both."""
    F, S = fwd.output, fwd.scale[-1]
    eps = forward_factors(problem.network)[-1]
    return np.abs(F[i, k] - F[j, k]) <= eps * (S[i, k] + S[j, k]) + 2 * U * (np.abs(F[i, k]) + np.abs(F[j, k]))


def find_arcs(problem: Problem, fwd: ForwardPass):
    """All arcs ``(k, lo, hi)`` among samples whose outputs tie at theta: ``(arcs (m, 3), None)`` or ``(None, why)``."""
    F = fwd.output
    n, C = F.shape
    cand = set()
    cap = min(MAX_PAIRS, MAX_RELATIONS // max(problem.network.widths))
    for k in range(C):
        order = np.argsort(F[:, k], kind="stable")
        linked = _tied(problem, fwd, np.full(n - 1, k), order[:-1], order[1:])   # consecutive sorted values
        cuts = np.concatenate([[0], np.nonzero(~linked)[0] + 1, [n]])
        for start, t in zip(cuts[:-1], cuts[1:]):      # clusters of consecutive values that tie
            members = np.sort(order[start:t])
            if members.size > 1:
                if len(cand) + members.size * (members.size - 1) // 2 > cap:
                    return None, f"output-order test: more than {cap} pairs of tied outputs to compare"
                for a in range(members.size):
                    for b in range(a + 1, members.size):
                        cand.add((int(members[a]), int(members[b])))
    if not cand:
        return np.zeros((0, 3), dtype=np.int64), None
    pairs = np.array(sorted(cand), dtype=np.int64)
    rel = pair_relations(problem, fwd, pairs[:, 0], pairs[:, 1])      # of sample j against sample i
    arcs = []
    for k in range(C):
        tied = _tied(problem, fwd, np.full(len(pairs), k), pairs[:, 0], pairs[:, 1])
        for (i, j), r, t in zip(pairs, rel[:, k], tied):
            if not t:
                continue
            if r in (GE, EQ):
                arcs.append((k, i, j))
            if r in (LE, EQ):
                arcs.append((k, j, i))
    return np.array(arcs, dtype=np.int64).reshape(-1, 3), None


def pair_relations(problem: Problem, fwd: ForwardPass, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The relation of ``f(x_j)`` to ``f(x_i)`` near theta per output, (P, C) in ``EQ, GE, LE, UNKNOWN``."""
    net = problem.network
    factors = forward_factors(net)
    floor = net.activation.has_kink and net.activation.slopes[1] == 0          # ReLU: a dead unit is at the least value
    diff = problem.X[j] - problem.X[i]
    rel = np.where(diff > 0, GE, np.where(diff < 0, LE, EQ)).astype(np.int8)
    for l, W in enumerate(net.weights, start=1):
        pos, neg, zero = (W > 0).T.astype(np.int32), (W < 0).T.astype(np.int32), (W == 0).T.astype(np.int32)
        ge, le, unk = (rel == GE).astype(np.int32), (rel == LE).astype(np.int32), (rel == UNKNOWN)
        up = ge @ pos + le @ neg
        down = ge @ neg + le @ pos
        unknown = unk.sum(axis=1)[:, None] + (ge + le) @ zero
        pre = np.where((unknown > 0) | ((up > 0) & (down > 0)), UNKNOWN,
                       np.where(up > 0, GE, np.where(down > 0, LE, EQ))).astype(np.int8)
        z, S = fwd.pre[l - 1], fwd.scale[l - 1]
        zi, zj = z[i], z[j]
        bi, bj = factors[l - 1] * S[i] + 2 * U * np.abs(zi), factors[l - 1] * S[j] + 2 * U * np.abs(zj)
        pre = np.where((pre == UNKNOWN) & (zj - zi > bi + bj), GE, pre)
        pre = np.where((pre == UNKNOWN) & (zi - zj > bi + bj), LE, pre).astype(np.int8)
        if l == net.n_layers:
            return pre
        post = pre
        if floor:
            dead_i, dead_j = zi < -bi, zj < -bj
            post = np.where(dead_i & dead_j, EQ, post)
            post = np.where(dead_i & ~dead_j, np.where(np.isin(post, (LE, EQ)), EQ, GE), post)
            post = np.where(dead_j & ~dead_i, np.where(np.isin(post, (GE, EQ)), EQ, LE), post)
        rel = post.astype(np.int8)
    return rel


# ---------------------------------------------------------------------------- output space
def order_model(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, arcs: np.ndarray,
                *, bound: float | None = None) -> OneLevel:
    """The first-order model of the loss in output space ``vec(D)`` (index ``k n + i``) with one generator per arc.

    The loss's part is :func:`certify.secondorder.affine.fit_model` with ``x_i`` replaced by sample
    ``i``'s indicator (a sparse selection instead of a dense design matrix).
    """
    n, C = problem.n_samples, problem.network.n_outputs
    base = _loss_model(problem, fwd, kinks, problem.loss.gradient(fwd.output, problem.Y))
    m = len(arcs)
    dim = n * C
    rows = np.arange(m).repeat(2)
    cols = np.stack([arcs[:, 0] * n + arcs[:, 1], arcs[:, 0] * n + arcs[:, 2]], axis=1).ravel()
    arc_rows = sp.csr_matrix((np.tile([1.0, -1.0], m), (rows, cols)), shape=(m, dim))
    if bound is None:
        # an acyclic flow's arc carries at most the total supply, which the subgradient's size bounds
        size = float(np.abs(base.g).sum() + np.abs(base.a).sum() * (np.abs(base.gamma).max(initial=0.0)))
        size += sum(float(np.abs(S).sum()) for _, S in base.multi) / n
        bound = 2.0 * size + 1.0 / n
    one = OneLevel(g=base.g, a=sp.vstack([base.a, arc_rows]).tocsr(), gamma=np.concatenate([base.gamma, np.full(m, bound)]),
                   multi=base.multi, n=n, source=list(base.source) + [("arc", a) for a in range(m)])

    def twin():
        _, _, delta_abs = absolute_twin(problem, fwd)
        tw = _loss_model(problem, fwd, kinks, delta_abs, absolute=True)
        return OneLevel(g=tw.g, a=sp.vstack([tw.a, abs(arc_rows)]).tocsr(),
                        gamma=np.concatenate([tw.gamma, np.full(m, bound)]), multi=tw.multi, n=n, source=one.source)

    object.__setattr__(one, "twin", twin)
    object.__setattr__(one, "rounding", factor(problem))
    return one


def _loss_model(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, grad: np.ndarray, *,
                absolute: bool = False) -> OneLevel:
    """``l'(F; D)`` in ``vec(D)`` (or its absolute twin: ``|S|``)."""
    n, C = problem.n_samples, problem.network.n_outputs
    dim = n * C
    mag = np.abs if absolute else (lambda x: x)
    lk = sorted({int(i) for i in kinks.loss_sample})
    smooth = np.ones(n, dtype=bool)
    smooth[lk] = False
    g = (np.where(smooth[:, None], grad, 0.0).T / n).ravel()
    r_idx, c_idx, r_val, gammas, multi, source = [], [], [], [], [], []
    if lk:
        vals, slopes = problem.loss.pieces(fwd.output, problem.Y)
        kinked = {(int(i), int(gr)): act for i, gr, act in zip(kinks.loss_sample, kinks.loss_group, kinks.loss_active)}
        for i in lk:
            cols = np.arange(C) * n + i                      # D_i = vec(D)[cols]
            Gi = sp.csr_matrix((np.ones(C), (np.arange(C), cols)), shape=(C, dim))
            for gr in range(vals.shape[1]):
                act = kinked.get((i, gr))
                if act is None:
                    act = np.array([int(np.argmax(vals[i, gr]))])
                S = slopes[i, gr, act]
                g[cols] += mag(S[0]) / n
                if S.shape[0] == 2:
                    r_idx += [len(gammas)] * C
                    c_idx += cols.tolist()
                    r_val += mag(S[1] - S[0]).tolist()
                    gammas.append(1.0 / n)
                    source.append(("loss", i))
                elif S.shape[0] > 2:
                    multi.append((Gi, mag(S - S[0])))
    a = sp.csr_matrix((r_val, (r_idx, c_idx)), shape=(len(gammas), dim))
    return OneLevel(g=g, a=a, gamma=np.array(gammas), multi=multi, n=n, source=source)


def _exact_check(problem: Problem, arcs: np.ndarray, one: OneLevel, cert: dict) -> bool:
    """Ties exact and ``G = sum mu_a (e_hi - e_lo)`` for an exact subgradient ``G``, in rationals (small problems)."""
    from ..exact.budget import fits
    if not problem.loss.rational or not fits(problem) or problem.loss.name == "multiclass_hinge":
        return False
    from ..exact.forward import exact_problem, forward
    ep = exact_problem(problem)
    Fq = forward(ep).output.to_fractions()
    n, C = problem.n_samples, problem.network.n_outputs
    if any(Fq[lo, k] != Fq[hi, k] for k, lo, hi in arcs):
        return False
    lam = np.asarray(cert.get("lambda", []), dtype=np.float64)
    m = len(arcs)
    if lam.size != one.n_generators or m == 0:
        return False
    mu = [Fraction(float(one.gamma[one.n_generators - m + a] * lam[one.n_generators - m + a])).limit_denominator(10 ** 9)
          for a in range(m)]
    need = [[Fraction(0)] * C for _ in range(n)]     # the subgradient the flow asks for, sum mu (e_hi - e_lo)
    for (k, lo, hi), w in zip(arcs, mu):
        need[hi][k] += w
        need[lo][k] -= w
    Y = problem.Y
    for i in range(n):
        for k in range(C):
            f = Fq[i, k]
            y = Fraction(float(Y[i, k] if Y.ndim == 2 else Y[i]))
            if problem.loss.name == "square":
                lo = hi = (f - y) / n
            elif problem.loss.name == "absolute":
                r = f - y
                lo = hi = Fraction(int(np.sign(float(r)))) / n if r != 0 else None
                if r == 0:
                    lo, hi = Fraction(-1, n), Fraction(1, n)
            elif problem.loss.name == "hinge":
                margin = 1 - y * f
                slope = -y / n
                lo, hi = (slope, slope) if margin > 0 else ((Fraction(0), Fraction(0)) if margin < 0 else
                                                             (min(slope, 0), max(slope, 0)))
            else:
                return False
            if not lo <= need[i][k] <= hi:
                return False
    return True
