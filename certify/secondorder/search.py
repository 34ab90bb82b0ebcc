"""Targeted search for a local descent before ``inconclusive``: curves into the right piece, and an
exact-Taylor screen of simple curves.

Two searches, tried when every certificate kind before them left the point undecided. Neither can
certify anything; a hit is a saddle refutation only after its curve is judged a *local* descent by
its Taylor coefficients on the piece it enters (exactly on small problems,
:func:`certify.refute.taylor_judgement`) and a decrease of the loss is verified.

1. **Curves that enter the right piece.** The critical-cone and piece tests may find a direction
   ``d`` of negative Lagrangian curvature on some piece ``sigma`` whose straight second-order curve
   gives no verified decrease -- typically because ``d`` lies on the boundary of ``sigma``
   (``a_k . d = 0`` for a kink that the piece puts on one side), so the curve's second-order term
   decides which piece it really enters, and it enters another one. Here the second-order
   correction ``e`` is chosen to enter ``sigma``: held kinks (positive multiplier) stay at 0 to
   second order (``a_k . e = -d' grad^2 phi_k d``), and every kink of ``sigma`` with ``a_k . d = 0``
   and multiplier 0 is pushed strictly to its side, ``sigma_k (a_k . e + d' grad^2 phi_k d) = delta > 0``
   (free: its multiplier is 0, so ``grad L_sigma . e`` is unchanged and the second-order coefficient
   is still ``d' H_sigma d < 0``). For the piece test the piece is rebuilt *without* the rows it
   dropped for its flat directions (a relaxation, sound for a certificate but not a region the curve
   may leave): the least curvature is recomputed on the piece itself.
2. **A screen of simple curves**, in the spirit of a brute-force probe but judged by exact Taylor
   coefficients instead of sampled losses: single coordinates, pairs of coordinates (all of them on
   small networks; a unit's incoming with its outgoing weights otherwise), and chains of weights
   along a path through the network (an input weight or a bias of a unit, its weight into a unit of
   the next layer, ..., to an output), with every sign pattern. Degenerate points (zero weights,
   silent units) descend along such products at order 2, 3 or the depth (GT-10, GT-15). A batched
   float pass of :func:`certify.taylor.batch_line_taylor` screens them; the best few are confirmed.

Budgeted by ``ctx.deadline`` and a time cap (every screened line costs a polynomial forward pass). A
brief early screen (:class:`Early`, 2 s) runs before the critical-cone, copositivity and piece tests,
which can spend the whole budget; the final search continues the screen where it stopped.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from ..refute import taylor_curve
from ..taylor import batch_line_taylor
from .base import TOL_CURVATURE, Context, SecondOrder

NAME = "targeted_search"

#: all coordinate pairs are screened below this many parameters
ALL_PAIRS_P = 80
#: order of the Taylor screen
SCREEN_ORDER = 4
#: at most this many screened hits are confirmed (exact judgement and verified decrease)
MAX_CONFIRM = 16
#: longest chains screened (each has 2^length sign patterns)
MAX_CHAIN = 5
#: pieces of negative (relaxed) curvature rebuilt with all their rows
MAX_PIECES = 16


def applies(ctx: Context) -> str | None:
    if ctx.problem.n_params == 0:
        return "no parameters"
    return None


class Early:
    """The screen alone, briefly, before the expensive second-order tests (cone faces, pieces): a
    degenerate saddle found along a simple curve costs a fraction of a second, while the piece test
    may spend the whole budget; :func:`run` later continues the screen where this one stopped."""

    NAME = "targeted_search_early"

    @staticmethod
    def applies(ctx: Context) -> str | None:
        if ctx.problem.n_params == 0:
            return "no parameters"
        if not ctx.kinks.n_total and ctx.problem.n_params <= 2500:
            return "no kink: the Hessian tests decide or report zero curvature first"
        return None

    @staticmethod
    def run(ctx: Context) -> SecondOrder:
        notes = []
        curve, screened = _screen(ctx, notes, seconds=min(EARLY_SECONDS, 0.1 * ctx.remaining()))
        if curve is not None:
            return _saddle(curve, f"the simple curve {curve.pop('_what')} (one of {screened} screened)")
        return SecondOrder(None, NAME, reason="")


def run(ctx: Context) -> SecondOrder:
    t0 = time.perf_counter()
    notes = []
    curve = _negative_curvature_curves(ctx, notes)
    if curve is not None:
        return _saddle(curve, "a curve entering the piece of negative Lagrangian curvature " + curve.pop("_what"))
    if ctx.remaining() <= 0:
        return SecondOrder(None, NAME, reason="no time left for the targeted search")
    curve, screened = _screen(ctx, notes)
    if curve is not None:
        return _saddle(curve, f"the simple curve {curve.pop('_what')} (one of {screened} screened)")
    return SecondOrder(None, NAME, reason=(
        f"a targeted search found no local descent ({screened} simple curves screened by their Taylor "
        f"coefficients{'; ' + '; '.join(notes) if notes else ''}; {time.perf_counter() - t0:.2g} s)"))


def _saddle(curve: dict, what: str) -> SecondOrder:
    local = "exactly" if curve.get("local") == "exact" else "up to rounding"
    order = curve.get("leading_order")
    return SecondOrder("saddle", NAME, reason=(
        f"first-order stationary, but the loss drops along {what}: its leading Taylor coefficient on the "
        f"piece it enters is of order {order} and negative ({local}); the loss drops by "
        f"{curve['decrease']:.3g} at t = {curve['step']:.3g} (verified, {curve['method']})"),
        flags={"strict": False}, certificate={"kind": NAME, "leading_order": order, "local": curve.get("local")},
        refutation=curve)


# ---------------------------------------------------------------------------- 1. into the right piece
def _orientation(desc, D, slopes) -> float:
    """``sigma``: the stored row is ``sigma grad phi`` with ``sigma`` the side the piece puts the kink on."""
    if desc[0] != "unit":
        return 1.0
    _, l, i, u = desc
    return 1.0 if D[l - 1][i, u] == slopes[0] else -1.0


def entering_curves(problem, fwd, kinks, model: dict, res: dict, d: np.ndarray):
    """Candidate ``e`` for ``theta + t d + t^2/2 e`` entering the piece ``res["piece"]`` (module docstring)."""
    from ..tangent import second_tangent
    from .cone import piece_of
    slopes = problem.network.activation.slopes
    D, Fp, F_desc = piece_of(model, res.get("piece") or [], slopes)
    ddz = second_tangent(problem, fwd, D, d)

    def dd(desc):
        if desc[0] == "unit":
            _, l, i, u = desc
            return float(ddz[l - 1][i, u])
        _, i, w = desc
        return float(np.asarray(w) @ ddz[-1][i])

    rows, rhs, push = [], [], []
    for a, desc in zip(model["E"], model["E_desc"]):
        rows.append(a)
        rhs.append(-_orientation(desc, D, slopes) * dd(desc))
        push.append(0.0)
    size = float(np.abs(d).max()) or 1.0
    for a, desc in zip(Fp, F_desc):
        s = float(a @ d)
        if abs(s) > 1e-9 * (float(np.abs(a).sum()) * size + 1e-300):
            continue                      # the first-order term already puts the curve on a side
        rows.append(a)
        rhs.append(-_orientation(desc, D, slopes) * dd(desc))
        push.append(1.0)
    out = []
    if not rows:
        return [None]
    A = np.array(rows)
    b = np.array(rhs)
    pv = np.array(push)
    scale = max(1.0, float(np.abs(b).max()))
    for delta in (1e-2, 1.0, 0.0):
        e = np.linalg.lstsq(A, b + delta * scale * pv, rcond=None)[0]
        out.append(e)
    return out


def _negative_curvature_curves(ctx: Context, notes: list):
    """Curves into the pieces where the cone / piece tests reported negative curvature (most negative
    first; each piece of the piece test is rebuilt with all its rows before its curves are tried)."""
    problem, fwd, kinks = ctx.problem, ctx.fwd, ctx.kinks

    def items():
        yield from ctx.cache.get("negative_curvature", [])
        pt = ctx.cache.get("piece_test")
        if pt is None or not pt.get("pieces"):
            return
        neg = [e for e in pt["pieces"] if e.get("min_curvature") is not None
               and e["min_curvature"] < -e.get("curvature_tolerance", 0.0)]
        neg.sort(key=lambda e: e["min_curvature"])
        for entry in neg[:MAX_PIECES]:
            if ctx.remaining() <= 0:
                return
            got = _undropped_piece(ctx, pt, entry)
            if got is not None:
                yield got

    tried = relaxed_only = 0
    for item in items():
        model, res = item["model"], item["result"]
        d = res.get("direction")
        if d is None or not res.get("q", 0.0) < -res.get("tolerance", 0.0):
            relaxed_only += item["source"].startswith("piece test")
            continue
        for sgn in (1.0, -1.0):
            for e in entering_curves(problem, fwd, kinks, model, res, sgn * d):
                if ctx.remaining() <= 0:
                    return None
                tried += 1
                curve = taylor_curve(problem, fwd, kinks, sgn * d, e, order=SCREEN_ORDER)
                if curve["verified"]:
                    curve["_what"] = (f"({item['source']}, curvature {res['q']:.3g} on piece "
                                      f"{res.get('piece') or item.get('signs') or []})")
                    curve["curvature"] = res["q"]
                    return curve
    if relaxed_only:
        notes.append(f"on {relaxed_only} piece(s) the negative curvature came from the rows the piece test drops "
                     f"for its flat directions (a relaxation): with every row kept the least curvature is not "
                     f"negative")
    if tried:
        notes.append(f"{tried} curve(s) into pieces of negative curvature gave no verified local descent")
    return None


def _undropped_piece(ctx: Context, pt: dict, entry: dict):
    """The piece's Lagrangian model with every row it has (none dropped, no flat directions) and
    its least curvature: a direction that stays in the piece."""
    from .cone import cone_curvature, lagrangian_model
    from .pieces import Piece
    problem, fwd, kinks = ctx.problem, ctx.fwd, ctx.kinks
    branch_desc = [tuple(b) for b in pt.get("branch", [])]
    lookup = {("unit", int(l), int(i), int(u)): k for k, (l, i, u) in
              enumerate(zip(kinks.unit_layer, kinks.unit_sample, kinks.unit_index))}
    try:
        branch = np.array([lookup[b] for b in branch_desc], dtype=np.int64)
    except KeyError:
        return None
    piece = Piece(problem, fwd, kinks, branch, entry["signs"])
    if piece.nested:
        return None
    lam = np.asarray(entry["lambda"], dtype=np.float64)
    pis = [np.asarray(p_, dtype=np.float64) for p_ in entry.get("pi", [])]
    mu = np.asarray(entry["mu"], dtype=np.float64)
    model = lagrangian_model(problem, fwd, piece.kinks, piece.fo, piece.one, lam, pis, piece.D)
    E, E_desc, F, F_desc = [model["E"]], list(model["E_desc"]), [model["F"]], list(model["F_desc"])
    _, tol, _ = piece.residual(lam, pis, mu)
    for pos, (desc, sg) in enumerate(zip(piece.descs, piece.signs)):
        _, l, i, u = desc
        model["inject"][l - 1][i, u] += -mu[pos] * sg
        if mu[pos] * float(np.abs(piece.R[pos]).max(initial=0.0)) > tol:
            E.append(piece.R[pos][None, :]); E_desc.append(desc)
        else:
            F.append(piece.R[pos][None, :]); F_desc.append(desc)
    model.update({"E": np.vstack(E), "E_desc": E_desc, "F": np.vstack(F), "F_desc": F_desc, "inert": [],
                  "flat": None})
    try:
        res = cone_curvature(problem, fwd, model, tol_rel=TOL_CURVATURE, deadline=ctx.deadline)
    except Exception:   # noqa: BLE001 - OutOfTime or a linear-algebra failure: this piece is skipped
        return None
    if "error" in res or res.get("direction") is None:
        return None
    res["piece"] = []
    return {"source": "piece test, no rows dropped", "model": model, "result": res, "signs": entry["signs"]}


# ---------------------------------------------------------------------------- 2. the screen
def simple_curves(problem):
    """``(description, {index: sign})`` for the single coordinates, chains and pairs screened, lazily,
    in that order (chains through zero weights first); above :data:`BATCH_P` parameters the chains
    come first (each costs a sparse pass; they hold the leading terms of degenerate points)."""
    net = problem.network
    p = net.n_params

    def singles():
        for k in range(p):
            for s in (1, -1):
                yield ("coordinate", k), {k: s}

    def chains():
        found = _chains(net)
        # first both signs of the last weight (they flip the sign of the chain's leading term), then the
        # other sign patterns (which choose the sides of the kinks along the path)
        for chain in found:
            for last in (1, -1):
                yield ("chain",) + tuple(chain), dict(zip(chain, [1] * (len(chain) - 1) + [last]))
        for chain in found:
            for signs in itertools.product((1, -1), repeat=len(chain) - 1):
                if all(s == 1 for s in signs):
                    continue
                for last in (1, -1):
                    yield ("chain",) + tuple(chain), dict(zip(chain, list(signs) + [last]))

    first, second = (singles, chains) if p <= BATCH_P else (chains, singles)
    yield from first()
    yield from second()
    if p <= ALL_PAIRS_P:
        pairs = itertools.combinations(range(p), 2)
    else:
        pairs = ((a, b) for inc, outc in _unit_coordinates(net) for a in inc for b in outc)
    for a, b in pairs:
        for sa, sb in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            yield ("pair", a, b), {a: sa, b: sb}
    # last, seeded random lines: small integer entries on a few coordinates, or signs on all of them
    # (degenerate points whose leading term needs several weights of different units moving together)
    rng = np.random.default_rng(p)
    for r in range(RANDOM_LINES if p <= BATCH_P else RANDOM_LINES // 8):
        size = p if r % 4 == 3 else int(rng.integers(3, min(p, 8) + 1)) if p >= 3 else p
        idx = rng.choice(p, size=size, replace=False)
        vals = rng.choice((-2, -1, 1, 2), size=size) if size < p else rng.choice((-1, 1), size=size)
        yield ("random", r, size), {int(k): int(v) for k, v in zip(idx, vals)}


def _unit_coordinates(net) -> list:
    """Per hidden unit: (incoming coordinates, outgoing coordinates)."""
    out = []
    for l in range(1, net.n_layers):
        W, Wn = net.weights[l - 1], net.weights[l]
        w0, b0 = net.offsets[l - 1]
        wn0, _ = net.offsets[l]
        n_in = W.shape[1]
        for j in range(W.shape[0]):
            inc = [w0 + j * n_in + c for c in range(n_in)] + [b0 + j]
            outc = [wn0 + r * Wn.shape[1] + j for r in range(Wn.shape[0])]
            out.append((inc, outc))
    return out


def _chains(net, limit: int = 4000) -> list:
    """Weights along paths of length 3..MAX_CHAIN: a start (input weight or bias of a unit), then its
    weight into a unit of the next layer, and so on towards the output; paths through zero weights
    first (their products are the leading terms at degenerate points)."""
    L = net.n_layers
    out = []
    bias_index = {net.offsets[l][1] + r for l in range(L) for r in range(net.weights[l].shape[0])}

    def c_start_bias(chain):
        return chain[0] in bias_index

    def windex(l, r, c):
        w0, _ = net.offsets[l - 1]
        return w0 + r * net.weights[l - 1].shape[1] + c

    def grow(path, zeros, l, r):
        # a chain counts when the perturbation it carries reaches the output: it ends at an output, or at
        # a unit with a nonzero outgoing weight (the rest of the path exists already)
        if len(path) >= 3 and (l == L or np.any(net.weights[l][:, r] != 0)):
            out.append((zeros, path))
        if l == L or len(path) >= MAX_CHAIN or len(out) > 10 * limit:
            return
        Wn = net.weights[l]
        for r2 in range(Wn.shape[0]):
            grow(path + [windex(l + 1, r2, r)], zeros + int(Wn[r2, r] == 0), l + 1, r2)

    for l in range(1, L):
        W, b = net.weights[l - 1], net.biases[l - 1]
        _, b0 = net.offsets[l - 1]
        for r in range(W.shape[0]):
            starts = [(b0 + r, int(b[r] == 0))]
            if l == 1:
                starts += [(windex(1, r, c), int(W[r, c] == 0)) for c in range(W.shape[1])]
            for s, z in starts:
                grow([s], z, l, r)
            if len(out) > 10 * limit:
                break
    # zero-heavy first; lengths interleaved (a short chain of biases can be constant across samples, while
    # the longer chain through the input weights carries the sample-dependent leading term)
    by_len = {}
    for zeros, c in sorted(out, key=lambda zc: (-zc[0] / len(zc[1]), len(zc[1]), c_start_bias(zc[1]))):
        by_len.setdefault(len(c), []).append(c)
    mixed = [c for group in itertools.zip_longest(*by_len.values()) for c in group if c is not None]
    return mixed[:limit]


#: below this many parameters the screen runs batched dense passes; above, one sparse pass per curve
BATCH_P = 400
#: seeded random lines screened after the coordinates, chains and pairs
RANDOM_LINES = 512
#: seconds the screen may take (also at most half of what is left of the budget)
SCREEN_SECONDS = 30.0
#: seconds of the early screen (:class:`Early`; also at most a tenth of what is left)
EARLY_SECONDS = 2.0


def _screen(ctx: Context, notes: list, seconds: float | None = None):
    """Screen the simple curves by float Taylor coefficients; confirm hits as they come.

    Continues after the curves an earlier call already screened (``ctx.cache["screened"]``)."""
    from ..taylor import sparse_line_taylor
    problem, fwd, kinks = ctx.problem, ctx.fwd, ctx.kinks
    p, n = problem.n_params, problem.n_samples
    net = problem.network
    K = SCREEN_ORDER if problem.loss.rational else 2
    seconds = min(SCREEN_SECONDS, 0.5 * ctx.remaining()) if seconds is None else seconds
    stop = time.perf_counter() + seconds
    start = int(ctx.cache.get("screened", 0))
    gen = itertools.islice(simple_curves(problem), start, None)
    hits = []
    screened = confirmed = 0
    width = max(net.widths)
    chunk = int(max(1, min(1024, 4e6 / max(1, n * width * (K + 1)))))
    done = False
    while not done:
        if time.perf_counter() > stop:
            notes.append(f"the screen stopped at its time limit after {screened} curves")
            break
        block = list(itertools.islice(gen, chunk if p <= BATCH_P else 64))
        if not block:
            break
        if p <= BATCH_P:
            Dm = np.zeros((len(block), p))
            for r, (_, sp_) in enumerate(block):
                for k, s in sp_.items():
                    Dm[r, k] = s
            c, err = batch_line_taylor(problem, Dm, K, fwd=fwd, kinks=kinks)
            rows = [(block[r][0], Dm[r], c[r], err[r]) for r in range(len(block))]
        else:
            rows = []
            for what, sp_ in block:
                d = np.zeros(p)
                for k, s in sp_.items():
                    d[k] = s
                cr, er = sparse_line_taylor(problem, fwd, kinks, d, K)
                rows.append((what, d, cr, er))
        screened += len(block)
        ctx.cache["screened"] = start + screened
        fresh = []
        for what, d, cr, er in rows:
            for k in range(1, cr.size):
                if abs(cr[k]) > er[k]:
                    if cr[k] < 0:
                        fresh.append((k, cr[k] / (np.sum(np.abs(cr[:k + 1])) + 1e-300), what, d.copy()))
                    break
        fresh.sort(key=lambda h: (h[0], h[1]))
        hits += fresh
        for k, _, what, d in fresh:                 # confirm at once: a hit ends the search early
            if confirmed >= MAX_CONFIRM or ctx.remaining() <= 0:
                break
            confirmed += 1
            curve = taylor_curve(problem, fwd, kinks, d, None, order=max(K, k))
            if curve["verified"]:
                curve["_what"] = _describe(problem, what)
                return curve, screened
        if confirmed >= MAX_CONFIRM:
            notes.append(f"{MAX_CONFIRM} screened hits were not confirmed; the screen stopped")
            break
    screened += start
    if hits:
        notes.append(f"{len(hits)} screened curve(s) looked like descents in float64 but none was confirmed")
    return None, screened


def _describe(problem, what) -> str:
    if what[0] == "random":
        return f"random line (seeded, number {what[1]}, over {what[2]} coordinates)"
    names = problem.network.param_names()
    return f"{what[0]} ({', '.join(names[k] for k in what[1:])})"
