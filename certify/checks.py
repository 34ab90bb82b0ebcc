"""What a re-check returns, and the numpy re-checks shared by several certificate kinds.

Nothing here calls a solver: :mod:`certify.verify` and the ``recheck`` functions of the
second-order kinds (:mod:`certify.secondorder`) build on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .formulate.first_order import OneLevel

#: relative agreement required between stored and recomputed numbers
REL = 1e-7


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    attested: bool = False  # True: not re-checkable without a solver; reported, not failed


def close(a, b, scale=None) -> bool:
    """``a`` and ``b`` agree to :data:`REL` relative to ``scale`` (default: their size)."""
    a, b = float(a), float(b)
    s = max(abs(a), abs(b), 1e-300) if scale is None else scale
    return abs(a - b) <= REL * s + 1e-300


@dataclass(frozen=True)
class Residual:
    """The residual ``rho`` of a subgradient equation against its rounding-error bound.

    ``ok`` when ``|rho_i| <= bound_i`` for every coordinate: the equation holds up to rounding.
    ``ratio`` is ``max_i |rho_i| / bound_i`` (how many rounding bounds away the worst entry is).
    """

    inf: float
    two: float
    bound: float
    ratio: float
    ok: bool


def compare(rho: np.ndarray, bound: np.ndarray) -> Residual:
    """``rho`` against a coordinatewise bound."""
    rho, bound = np.abs(np.asarray(rho, dtype=np.float64)), np.asarray(bound, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(rho == 0, 0.0, rho / bound)
    ratio = float(np.max(r, initial=0.0))
    return Residual(inf=float(rho.max(initial=0.0)), two=float(np.linalg.norm(rho)),
                    bound=float(bound.max(initial=0.0)), ratio=ratio, ok=bool(np.all(rho <= bound)))


def multiplier_residual(one: OneLevel, lam: np.ndarray, pis: list) -> Residual:
    """``g + sum gamma_j lambda_j a_j + ...`` against the rounding-error bound of its computation."""
    return compare(one.subgradient(lam, pis), one.residual_bound(lam, pis))


def check_multipliers(one: OneLevel, cert: dict, name: str, checks: list) -> None:
    """Stored multipliers ``lambda in [0,1]``, ``pi`` in simplices close ``0 = g + ...`` up to rounding.

    Multipliers prove ``L'(theta; d) >= 0`` only for *convex* generators (``gamma_j max(a_j.d, 0) >=
    gamma_j lambda_j a_j.d`` needs ``gamma_j >= 0``): a concave one (``gamma_j`` below minus its
    rounding bound) is accepted only inside a stored group of generators with bit-identical rows, equal
    multipliers and a summed coefficient that is non-negative up to rounding (then the group is one
    convex generator). Without this, 0 in the Clarke subdifferential would pass for d-stationarity.
    """
    lam = np.asarray(cert.get("lambda", []), dtype=np.float64)
    pis = [np.asarray(p, dtype=np.float64) for p in cert.get("pi", [])]
    if lam.shape != (one.n_generators,) or len(pis) != len(one.multi):
        checks.append(Check(name, False, f"{lam.size} multipliers stored for {one.n_generators} kinks"))
        return
    in_box = bool(np.all(lam >= 0) and np.all(lam <= 1))
    in_simplex = all(np.all(p >= 0) and abs(p.sum() - 1) <= 8 * p.size * 1.2e-16 for p in pis)
    res = multiplier_residual(one, lam, pis)
    convex, why = concave_generators_grouped(one, lam, cert.get("identical_row_groups") or [])
    ok = in_box and in_simplex and res.ok and convex
    detail = (f"0 = g + sum gamma_j lambda_j a_j + ... up to {res.inf:.3g}, within the rounding-error bound of "
              f"every entry: {res.ok} (worst entry at {res.ratio:.3g} of its bound); lambda in [0,1]: {in_box}; "
              f"pi in simplex: {in_simplex}; every generator convex (or in a convex group of identical rows): "
              f"{convex}{'' if convex else ' (' + why + ')'}")
    checks.append(Check(name, ok, detail))


def gamma_bound(one: OneLevel) -> np.ndarray:
    """Rounding-error bound of every generator coefficient ``gamma_j`` (0 without an absolute twin)."""
    tw = one.absolute
    if tw is None or not one.n_generators:
        return np.zeros(one.n_generators)
    return one.rounding * tw.gamma


def concave_generators_grouped(one: OneLevel, lam: np.ndarray, groups: list) -> tuple[bool, str]:
    """Whether every concave generator sits in a valid group (see :func:`check_multipliers`)."""
    J = one.n_generators
    if not J:
        return True, ""
    bound = gamma_bound(one)
    concave = one.gamma < -bound
    if not np.any(concave):
        return True, ""
    covered = np.zeros(J, dtype=bool)
    a = sp.csr_matrix(one.a, copy=True)
    a.eliminate_zeros()
    a.sort_indices()
    for members in groups:
        idx = np.asarray(members, dtype=np.int64)
        if idx.size < 2 or idx.min() < 0 or idx.max() >= J or np.unique(idx).size != idx.size:
            return False, f"malformed group {members}"
        rows = [(a.indices[a.indptr[j]:a.indptr[j + 1]].tobytes(), a.data[a.indptr[j]:a.indptr[j + 1]].tobytes())
                for j in idx]
        if any(r != rows[0] for r in rows[1:]):
            return False, f"group {members[:4]}... has rows that are not identical"
        if np.any(lam[idx] != lam[idx[0]]):
            return False, f"group {members[:4]}... has unequal multipliers"
        if one.gamma[idx].sum() < -bound[idx].sum():
            return False, f"group {members[:4]}... sums to a concave coefficient {one.gamma[idx].sum():.3g}"
        covered[idx] = True
    missing = np.nonzero(concave & ~covered)[0]
    if missing.size:
        return False, f"{missing.size} concave generator(s), e.g. {one.source[int(missing[0])]}, in no group"
    return True, ""


def check_tree(fo, cert: dict, name: str, checks: list) -> None:
    """Re-check a first-order branch-and-bound tree (:mod:`certify.bnb`) against the model ``fo``.

    * the model is merged and its branch set derived as the prover did
      (:func:`certify.formulate.leaf.merged_model`, :func:`certify.formulate.leaf.branch_set`: every
      feeding kink and every concave merged kink), and the stored branch set must be that one;
    * the tree covers every direction: each internal node branches on a kink of the branch set not
      fixed above it and has both children;
    * every leaf's node is rebuilt from its path (the kinks not on the path relaxed, which is only
      allowed for kinks feeding loss kinks alone), its multipliers lie in their sets
      (``lambda in [0,1]``, ``pi`` in simplices, ``mu, nu, xi >= 0``) and both of its equations are
      zero up to the rounding-error bound of every entry -- the leaf's bound ``min L' >= 0``.

    Nothing is attested: no solver is called.
    """
    from .formulate.leaf import NotRelaxable, branch_set, merged_model, node
    mfo, _ = merged_model(fo)
    B = branch_set(mfo)
    stored = [int(k) for k in cert.get("branch", [])]
    if stored != [int(k) for k in B]:
        checks.append(Check(name, False, f"the tree branches on kinks {stored[:8]}, but the model's branch set "
                                         f"(feeding and concave kinks) is {[int(k) for k in B][:8]}"))
        return
    leaves = cert.get("leaves") or []
    used: set = set()
    position = {int(k) for k in B}
    problems: list[str] = []
    worst = [0.0]
    counts = {"leaves": 0, "relaxed": 0}

    def visit(tree_node, fixed: dict) -> list:
        """Check one node; its children to visit, minus side first (an explicit stack, not recursion:
        a tree from a file may be deeper than Python's recursion limit)."""
        if not isinstance(tree_node, dict):
            problems.append("a node is not a mapping")
            return []
        if "leaf" in tree_node:
            idx = tree_node["leaf"]
            if not isinstance(idx, int) or not 0 <= idx < len(leaves) or idx in used:
                problems.append(f"leaf index {idx!r} missing or used twice")
                return []
            used.add(idx)
            ks = sorted(fixed)
            try:
                nd = node(mfo, ks, [fixed[k] for k in ks])
            except NotRelaxable:
                problems.append(f"leaf {idx} leaves a kink free that cannot be relaxed (concave, or feeding a "
                                f"unit kink)")
                return []
            _check_node(nd, leaves[idx], idx, problems, worst)
            counts["leaves"] += 1
            counts["relaxed"] += int(nd.n_relaxed > 0)
            return []
        k = tree_node.get("kink")
        if k not in position or k in fixed:
            problems.append(f"a node branches on {k!r}: not a branch kink, or fixed above it")
            return []
        if "minus" not in tree_node or "plus" not in tree_node:
            problems.append(f"the node on kink {k} lacks a child: the leaves do not cover every direction")
            return []
        return [(tree_node["minus"], {**fixed, k: -1}), (tree_node["plus"], {**fixed, k: 1})]

    stack = [(cert.get("tree"), {})]
    while stack and len(problems) <= 3:
        stack.extend(reversed(visit(*stack.pop())))
    if not problems and len(used) != len(leaves):
        problems.append(f"{len(leaves) - len(used)} stored leaves are not in the tree")
    ok = not problems
    detail = (f"{counts['leaves']} leaves ({counts['relaxed']} pruned by a relaxation bound) over {B.size} branch "
              f"kinks cover every direction; every leaf's multipliers in their sets and its equations within the "
              f"rounding bound (worst entry at {worst[0]:.3g} of its bound)" if ok else "; ".join(problems[:4]))
    checks.append(Check(name, ok, detail))


def _check_node(nd, c: dict, idx: int, problems: list, worst: list) -> None:
    from .formulate.leaf import node_residual
    one = nd.one
    lam = np.asarray(c.get("lambda", []), dtype=np.float64)
    pis = [np.asarray(p, dtype=np.float64) for p in c.get("pi", [])]
    mu, nu, xi = (np.asarray(c.get(k, []), dtype=np.float64) for k in ("mu", "nu", "xi"))
    U = nd.n_relaxed
    if (lam.shape != (one.n_generators,) or len(pis) != len(one.multi) or mu.shape != (nd.region.shape[0],)
            or nu.shape != (U,) or xi.shape != (U,)
            or any(p.shape != (S.shape[0],) for p, (_, S) in zip(pis, one.multi))):
        problems.append(f"leaf {idx}: multipliers of the wrong shape")
        return
    values = [lam, mu, nu, xi] + pis
    if not all(np.all(np.isfinite(v)) for v in values):
        problems.append(f"leaf {idx}: non-finite multipliers")
        return
    if not (np.all(lam >= 0) and np.all(lam <= 1)):
        problems.append(f"leaf {idx}: a lambda outside [0, 1]")
        return
    if not all(np.all(p >= 0) and abs(p.sum() - 1) <= 8 * p.size * 1.2e-16 for p in pis):
        problems.append(f"leaf {idx}: a pi outside its simplex")
        return
    if not (np.all(mu >= 0) and np.all(nu >= 0) and np.all(xi >= 0)):
        problems.append(f"leaf {idx}: a negative multiplier of a branch or relaxation constraint")
        return
    if np.any(one.gamma < -gamma_bound(one)):
        problems.append(f"leaf {idx}: a concave generator left in the leaf model")
        return
    rho, bound = node_residual(nd, lam, pis, mu, nu, xi)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.max(np.where(rho == 0, 0.0, np.abs(rho) / bound), initial=0.0))
    worst[0] = max(worst[0], ratio)
    if not np.all(np.abs(rho) <= bound):
        problems.append(f"leaf {idx}: the multiplier equations are off by {float(np.abs(rho).max()):.3g}, "
                        f"{ratio:.3g} times the rounding bound")


def check_first_order_certificate(target, cert: dict, name: str, checks: list) -> bool:
    """Dispatch a stored first-order certificate to its re-check; ``target`` is the model it is about
    (a :class:`certify.tangent.FirstOrderModel` or a :class:`OneLevel`). Returns False for a kind it does
    not know (the caller reports it)."""
    from .formulate.first_order import one_level
    from .formulate.leaf import model_of
    kind = cert.get("kind")
    is_one = isinstance(target, OneLevel)
    if kind == "multipliers":
        if not is_one and target.nested:
            checks.append(Check(name, False, "nested kinks have no multiplier certificate (a tree is needed)"))
            return True
        check_multipliers(target if is_one else one_level(target), cert, name, checks)
        return True
    if kind == "branch_and_bound":
        check_tree(model_of(target) if is_one else target, cert, name, checks)
        return True
    if kind == "milp_bound":
        why = f" (the solver-free tree was not used: {cert['tree_not_used']})" if cert.get("tree_not_used") else ""
        checks.append(Check(name, True, f"min L'(theta; d) >= {cert.get('dual_bound')} by the HiGHS MILP bound; "
                                        f"not re-checkable without a solver{why}", attested=True))
        return True
    return False


def check_first_order(model, cert: dict, prefix: str, checks: list) -> None:
    """Re-check a stored first-order certificate of ``model`` (a :class:`certify.tangent.FirstOrderModel`):
    the gradient against its rounding bound, or multipliers, the first-order tree, the attested MILP
    bound (:func:`check_first_order_certificate`). Checks are named ``prefix_gradient``, ``prefix_tree``, ...
    (``verify`` uses ``first_order``; the saturated-sample kind ``reduced_first_order``)."""
    from .formulate.first_order import one_level
    kind = cert.get("kind")
    if kind == "gradient" or (model.smooth and kind is None):
        if model.nested:
            g, bound = model.g, model.g_error
        else:
            one = one_level(model)
            g, bound = one.g, one.residual_bound(np.zeros(0), [])
        res = compare(g, bound)
        checks.append(Check(f"{prefix}_gradient", res.ok, f"every gradient entry is zero up to its rounding-error "
                            f"bound: {res.ok} (||grad||_inf = {res.inf:.3g}, worst entry at {res.ratio:.3g} of "
                            f"its bound)"))
    elif not check_first_order_certificate(model, cert, prefix + "_" + {
            "multipliers": "multipliers", "branch_and_bound": "tree", "milp_bound": "milp"}.get(kind, "x"), checks):
        checks.append(Check(prefix, False, f"unknown first-order certificate {kind!r}"))
