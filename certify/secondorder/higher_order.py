"""Higher order: when second order is not decisive (curvature 0), the leading term of the loss along
the zero-curvature directions. Refutes only.

At a first-order stationary point where the least Lagrangian curvature is 0 -- a smooth point whose
reduced Hessian is positive semidefinite but singular, or a kinked point whose critical cone holds a
direction of zero curvature -- second order cannot decide. Along a curve ``theta(t)`` that starts
into such a direction the expansion of the loss on the piece the curve enters,

    L(theta(t)) = L + c_k t^k + O(t^{k+1}),    c_1 = ... = c_{k-1} = 0,

is decided by its first nonzero coefficient (:mod:`certify.taylor`): ``c_k < 0`` is a local descent,
so theta is a saddle. On a smooth piece the coefficients along the line ``theta + t d`` are
``c_k = D^k L[d, ..., d] / k!`` (once the lower ones vanish), a homogeneous form of degree ``k`` in
``d``; a nonzero form of **odd** degree takes both signs (``c_k(-d) = -c_k(d)``), so it always yields a
descent -- at a deep network's origin the first such form has the degree of the depth (GT-15: the
linear 1-1-1-1 net at 0 has ``c_3 = -w_1 w_2 w_3 sum_i x_i y_i / n``). A form of even degree decides
only where it is negative; where it is positive or every coefficient up to the order examined
vanishes, nothing is concluded: higher order never certifies a minimum here (the zero-curvature
directions are a numerical null space, and an even form that is positive on the candidates tried is
no proof), so the point stays ``inconclusive`` with the reason.

The directions: the null space of the reduced Hessian (cached by the Hessian kind), every basis
vector and a few combinations, both signs, and on small problems copies snapped to short dyadic
rationals (a float null vector misses the exact null space by ~1e-16, which makes an exact ``c_2``
tiny but nonzero; a snapped copy often *is* exactly null); and the zero-curvature directions of the
critical cone, with a second-order correction that enters their piece
(:func:`certify.secondorder.search.entering_curves`). Each is judged by its Taylor coefficients --
exactly when the problem is small -- and kept only with a verified decrease.
"""

from __future__ import annotations

import numpy as np

from ..refute import taylor_curve, taylor_judgement
from ..taylor import exact_fits
from .base import Context, SecondOrder

NAME = "higher_order"

#: order of the Taylor expansion examined
ORDER = 6
#: null-space directions examined (basis vectors and combinations, each with both signs)
MAX_DIRECTIONS = 48


def applies(ctx: Context) -> str | None:
    if _null_space(ctx) is None and not ctx.cache.get("zero_curvature"):
        return "no zero-curvature direction was reported by the second-order tests"
    return None


def _null_space(ctx: Context):
    rh = ctx.cache.get("reduced_hessian")
    if rh is None or rh["evals"].size == 0:
        return None
    evals, tol = rh["evals"], rh["tolerance"]
    if evals[0] < -tol:
        return None                      # negative curvature: a second-order matter
    zero = np.abs(evals) <= tol
    if not np.any(zero):
        return None
    return rh["basis"] @ rh["evecs"][:, zero]


def _snapped(d: np.ndarray) -> list:
    """Copies of ``d`` rounded to multiples of ``2^-k`` (relative to its largest entry)."""
    d = d / np.abs(d).max()
    out = []
    for k in (0, 1, 2, 3, 4, 6, 8, 12):
        s = np.round(d * 2.0 ** k) / 2.0 ** k
        if np.any(s) and not any(np.array_equal(s, o) for o in out):
            out.append(s)
    return out


def candidate_directions(ctx: Context, N: np.ndarray) -> list:
    """Null-space directions: basis vectors, pairwise sums and differences, seeded random mixtures."""
    k = N.shape[1]
    rng = np.random.default_rng(0)
    cands = [N[:, c] for c in range(k)]
    for a in range(min(k, 6)):
        for b in range(a + 1, min(k, 6)):
            cands += [N[:, a] + N[:, b], N[:, a] - N[:, b]]
    for _ in range(8):
        cands.append(N @ rng.standard_normal(k))
    out = []
    for d in cands[:MAX_DIRECTIONS]:
        m = float(np.abs(d).max())
        if m > 0:
            out.append(d / m)
    return out


def run(ctx: Context) -> SecondOrder:
    problem, fwd, kinks = ctx.problem, ctx.fwd, ctx.kinks
    small = exact_fits(problem, ORDER)
    leading = {}
    tried = 0
    N = _null_space(ctx)
    curves = []
    if N is not None:
        for d in candidate_directions(ctx, N):
            for sgn in (1.0, -1.0):
                curves.append((sgn * d, None, "null direction"))
                if small:
                    curves += [(sgn * s, None, "snapped null direction") for s in _snapped(d)]
    for item in ctx.cache.get("zero_curvature", []):
        from .search import entering_curves
        d = item["result"]["direction"]
        for e in entering_curves(problem, fwd, kinks, item["model"], item["result"], d):
            curves.append((d, e, "zero-curvature direction of the critical cone"))
    for d, e, what in curves:
        if ctx.remaining() <= 0:
            break
        tried += 1
        judge = taylor_judgement(problem, fwd, kinks, d, e, order=ORDER)
        if judge["local"] is None:
            lead = (judge.get("taylor") or {}).get("leading_order")
            leading[lead] = leading.get(lead, 0) + 1
            continue
        curve = taylor_curve(problem, fwd, kinks, d, e, order=ORDER)
        if curve["verified"]:
            k = curve.get("leading_order")
            local = "exactly" if curve.get("local") == "exact" else "up to rounding"
            parity = "odd" if k and k % 2 else "even"
            return SecondOrder("saddle", NAME, reason=(
                f"first-order stationary with zero curvature along a {what}, where the leading term of the "
                f"loss is of {parity} degree {k} and negative ({local}): the loss drops by "
                f"{curve['decrease']:.3g} at t = {curve['step']:.3g} (verified, {curve['method']})"),
                flags={"strict": False}, certificate={"kind": NAME, "leading_order": k, "direction_source": what,
                                                      "local": curve.get("local")},
                refutation=curve)
    summary = ", ".join(f"{v} with {'no nonzero coefficient up to t^' + str(ORDER) if k is None else f'a positive t^{k} term'}"
                        for k, v in sorted(leading.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))
    return SecondOrder(None, NAME, reason=(
        f"curvature 0 beyond symmetry; higher order along {tried} zero-curvature curve(s) ({summary or 'none'}) "
        f"found no descent: a higher-order minimum or saddle that this test does not decide"))
