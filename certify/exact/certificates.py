"""Re-check an exact first-order certificate with fractions only (for ``certify verify``).

The certificates of :func:`certify.exact.decision.exact_first_order_decision` store rational
multipliers as ``"p/q"`` strings, with the kink each one belongs to. Re-checking recomputes the
exact kinks and tangent network at the point and verifies, exactly:

* ``gradient``: no kink reaches ``L'`` and the gradient is 0;
* ``multipliers``: the generators are the point's exact kinks, in order; ``lambda in [0, 1]``, every
  ``pi`` in its simplex, and ``g + sum gamma_j lambda_j a_j + (1/n) sum G_q' S_q' pi_q = 0``;
* ``piece_multipliers``: the branch set is the point's, every one of its ``2^|B|`` pieces is stored,
  and each piece's KKT equation (with ``mu >= 0`` on its signed branch rows) closes exactly.

No solver and no tolerance is involved: a tampered multiplier fails.
"""

from __future__ import annotations

import itertools

from ..checks import Check
from ..data import Problem
from .forward import exact_problem, forward
from .kinks import exact_kinks
from .multipliers import _plain_desc, in_bounds, residual_of
from .pieces import branch_set, piece
from .rational import parse
from .tangent import first_order_model, one_level


def recheck_certificate(problem: Problem, certificate: dict, theta=None) -> list:
    """Checks of an exact first-order certificate (see the module docstring); ``theta``: a rational point."""
    kind = certificate.get("kind")
    ep = exact_problem(problem, theta)
    fwd = forward(ep)
    kinks, _ = exact_kinks(ep, fwd)
    model = first_order_model(ep, fwd, kinks)
    try:
        if kind == "gradient":
            ok = model.smooth and not model.g.any()
            return [Check("exact_gradient", ok, "no kink reaches L' and the gradient is exactly 0" if ok else
                          "the gradient is not exactly 0 or a kink reaches L'")]
        if kind == "multipliers":
            if model.nested:
                return [Check("exact_multipliers", False, "nested kinks: a multiplier certificate does not apply")]
            one = one_level(model)
            if not one.convex:
                return [Check("exact_multipliers", False, "a concave kink: a multiplier certificate does not apply")]
            return [_one_level_check("exact_multipliers", one, certificate)]
        if kind == "piece_multipliers":
            return _pieces_check(ep, fwd, kinks, certificate)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        return [Check("exact_first_order", False, f"malformed certificate: {exc}")]
    return [Check("exact_first_order", False, f"unknown exact certificate kind {kind!r}")]


def _one_level_check(name: str, one, cert: dict, R=None) -> Check:
    gens = [_plain_desc(d) for d in one.descs]
    if [list(g) for g in cert.get("generators", [])] != gens:
        return Check(name, False, f"the certificate's generators {cert.get('generators')} are not the exact kinks "
                                  f"{gens}")
    lam = parse(cert.get("lambda", []))
    pis = [parse(p) for p in cert.get("pi", [])]
    mu = parse(cert["mu"]) if R is not None else None
    sizes_ok = (lam.shape == (one.n_generators,) and len(pis) == len(one.multi)
                and all(p.shape == (S.shape[0],) for p, (_, S) in zip(pis, one.multi))
                and (R is None or mu.shape == (R.shape[0],)))
    if not sizes_ok:
        return Check(name, False, "multipliers of the wrong sizes")
    bounds = in_bounds(lam, pis, mu)
    rho = residual_of(one, lam, pis, mu, R)
    ok = bounds and not rho.any()
    return Check(name, ok, "rational multipliers in their sets close the equation exactly" if ok else
                 f"bounds hold: {bounds}; residual is exactly zero: {not rho.any()}")


def _pieces_check(ep, fwd, kinks, cert: dict) -> list:
    branch = branch_set(ep, fwd, kinks)
    descs = [("unit", int(kinks.unit_layer[k]), int(kinks.unit_sample[k]), int(kinks.unit_index[k])) for k in branch]
    if [list(b) for b in cert.get("branch", [])] != [list(d) for d in descs]:
        return [Check("exact_piece_branch_set", False, f"the branch set is {descs} (certificate: {cert.get('branch')})")]
    stored = {tuple(int(s) for s in pc["signs"]): pc for pc in cert.get("pieces", [])}
    checks = []
    for signs in itertools.product((1, -1), repeat=len(branch)):
        pc = stored.get(tuple(signs))
        name = f"exact_piece_{''.join('+' if s > 0 else '-' for s in signs) or 'none'}"
        if pc is None:
            checks.append(Check(name, False, "piece missing from the certificate"))
            continue
        ex = piece(ep, fwd, kinks, branch, signs)
        if ex.nested or not ex.one.convex:
            checks.append(Check(name, False, "the piece is not one level of convex kinks"))
            continue
        checks.append(_one_level_check(name, ex.one, pc, ex.R))
    return checks
