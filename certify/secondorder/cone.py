"""Critical cone: the Lagrangian curvature on every face of the critical cone of every piece.

At a d-stationary point with one level of kinks, every piece's KKT multipliers follow from the
first-order ones (:func:`cone_model`); the Lagrangian Hessian (switching functions' curvature
included, through adjoint injections) is restricted to the critical cone modulo symmetry and its
least value found by eigen-decompositions on the cone's faces (:func:`cone_curvature`, pure numpy,
which ``verify`` reuses). Positive -> a local minimum; negative -> a second-order curve, kept only
with a verified decrease; zero -> higher order needed (DESIGN.md §4).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ..budget import check as budget_check
from ..checks import Check, close
from ..data import Problem
from ..formulate.first_order import OneLevel
from ..kinks import KinkStructure
from ..network import ForwardPass
from ..refute import search_curve
from ..tangent import FirstOrderModel, dense_hessian, piece_slopes
from .base import DENSE_P, TOL_CURVATURE, Context, SecondOrder
from .symmetry import symmetry_basis

NAME = "critical_cone"

#: largest number of one-sided (flat) kink rows whose faces are enumerated
MAX_FACES_ROWS = 10
#: largest number of kinks with a zero coefficient (two-sided: both pieces are visited)
MAX_INERT = 8


def cone_model(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, fo: FirstOrderModel,
               lam: np.ndarray, pis: list):
    """The critical cone and the Lagrangian pieces at a d-stationary point with one level of kinks.

    From the first-order multipliers (``lambda_j in [0, 1]`` per generator, ``pi_q`` per multi-piece
    loss group) every piece's KKT multipliers follow (``mu = gamma (1 - lambda)`` on the ``+`` side,
    ``gamma lambda`` on the ``-`` side), and:

    * an interior ``lambda_j`` holds kink ``j`` on its switching surface: ``a_j . d = 0``;
    * ``lambda_j = 0`` (``= 1``) lets ``d`` cross to the ``-`` (``+``) side only: ``-+ a_j . d >= 0``,
      one piece with the free side's slope;
    * a kink with zero coefficient (it does not reach ``L'``) is free on both sides: both pieces.

    On the face where a kink stays at zero both pieces give the same Lagrangian quadratic form, so
    the union of the pieces' critical cones is covered by ``2^m`` polyhedral cones for ``m`` such
    two-sided kinks (only those are enumerated), each with one Hessian. Loss kinks need no
    pieces: the losses with kinks are piecewise linear, so their pieces share one Hessian.
    Every row carries what its switching function is: ``("unit", layer, sample, unit)`` or
    ``("out", sample, w)`` for ``w . f(x_sample)``. Returns a dict, or a string saying why not.
    """
    from ..formulate.first_order import one_level
    from ..tangent import blocked_slopes, first_order_model, switching_rows
    full = first_order_model(problem, fwd, kinks, drop_inert=False)
    if full.M.nnz or full.N.nnz:
        return "kinks nested in kinks (a kink downstream of another in the same sample)"
    one = one_level(fo)
    if lam.shape != (one.n_generators,) or len(pis) != len(one.multi):
        return "first-order multipliers do not match the kinks"
    relevant = {int(k) for k in fo.kink_ids}
    inert = [k for k in range(kinks.n_unit) if k not in relevant]
    if len(inert) > MAX_INERT:
        return f"{len(inert)} kinks with zero coefficient would need 2^{len(inert)} pieces"
    model = lagrangian_model(problem, fwd, kinks, fo, one, lam, pis, piece_slopes(problem, fwd))
    Db = blocked_slopes(problem, fwd, kinks)
    inert_rows = []
    for k in inert:
        l, i, u = int(kinks.unit_layer[k]), int(kinks.unit_sample[k]), int(kinks.unit_index[k])
        R, _ = switching_rows(problem, fwd, Db, kinks, np.array([i]), l, np.array([u]))
        inert_rows.append({"kink": int(k), "desc": ("unit", l, i, u), "row": R.toarray().ravel()})
    model["inert"] = inert_rows
    return model


def lagrangian_model(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, fo: FirstOrderModel,
                     one: OneLevel, lam: np.ndarray, pis: list, D: list) -> dict:
    """Slopes, adjoint injections, loss adjoint and cone rows of the Lagrangian of one-level kinks.

    ``D`` gives the slopes of every unit that is not one of ``fo``'s kinks (copied, not changed);
    each kink of ``fo`` gets the slope of its free side and its piece multiplier as an injection,
    and its row goes to ``E`` (held at 0) or ``F`` (one-sided), as :func:`cone_model` explains.
    ``kinks`` is the structure ``fo`` was built from. ``F_mult`` holds each one-sided row's piece
    multiplier on its free side (0: the constraint can be dropped without changing the Lagrangian).
    """
    p = problem.n_params
    s_pos, s_neg = problem.network.activation.slopes
    tol_l = 1e-9
    D = [np.array(d, dtype=np.float64) for d in D]
    inject = [np.zeros_like(d) for d in D]
    E, E_desc, F, F_desc, F_mult = [], [], [], [], []
    n = problem.n_samples
    loss_grad = problem.loss.gradient(fwd.output, problem.Y).astype(np.float64)
    lk_grad = {}   # sample -> multiplier-weighted output adjoint (before 1/n)
    gen_of_group = {src[1]: j for j, src in enumerate(one.source) if src[0] == "loss"}
    multi_idx = iter(range(len(one.multi)))
    for q, (s_idx, S) in enumerate(fo.groups):
        i = int(fo.lk_sample[s_idx])
        acc = lk_grad.setdefault(i, np.zeros(S.shape[1]))
        if S.shape[0] == 1:
            acc += S[0]
        elif S.shape[0] == 2:
            lj = float(lam[gen_of_group[q]])
            acc += S[0] + lj * (S[1] - S[0])
            desc = ("out", i, S[1] - S[0])
            a_row = one.a[gen_of_group[q]].toarray().ravel()
            if lj <= tol_l:
                F.append(-a_row); F_desc.append(("out", i, S[0] - S[1])); F_mult.append(lj / n)
            elif lj >= 1 - tol_l:
                F.append(a_row); F_desc.append(desc); F_mult.append((1.0 - lj) / n)
            else:
                E.append(a_row); E_desc.append(desc)
        else:
            pi = pis[next(multi_idx)]
            acc += pi @ S
            supp, rest = np.nonzero(pi > tol_l)[0], np.nonzero(pi <= tol_l)[0]
            Gs = fo.G[s_idx * S.shape[1]:(s_idx + 1) * S.shape[1]].toarray()
            for a_, b_ in zip(supp[:-1], supp[1:]):
                w = S[a_] - S[b_]
                E.append(w @ Gs); E_desc.append(("out", i, w))
            for b_ in rest:
                w = S[supp[0]] - S[b_]
                F.append(w @ Gs); F_desc.append(("out", i, w)); F_mult.append(float(pi[b_]) / n)
    for i, acc in lk_grad.items():
        loss_grad[i] = acc
    for j, src in enumerate(one.source):
        if src[0] != "unit":
            continue
        k = int(fo.kink_ids[src[1]])
        l, i, u = int(kinks.unit_layer[k]), int(kinks.unit_sample[k]), int(kinks.unit_index[k])
        a_row = one.a[j].toarray().ravel()
        lj, gj = float(lam[j]), float(one.gamma[j])
        desc = ("unit", l, i, u)
        if lj <= tol_l:                       # only the - side is free
            D[l - 1][i, u] = s_neg
            inject[l - 1][i, u] = gj * lj
            F.append(-a_row); F_desc.append(desc); F_mult.append(gj * lj)
        elif lj >= 1 - tol_l:                 # only the + side is free
            D[l - 1][i, u] = s_pos
            inject[l - 1][i, u] = -gj * (1 - lj)
            F.append(a_row); F_desc.append(desc); F_mult.append(gj * (1 - lj))
        else:                                 # held at 0; either side gives the same form
            D[l - 1][i, u] = s_pos
            inject[l - 1][i, u] = -gj * (1 - lj)
            E.append(a_row); E_desc.append(desc)
    return {"D": D, "inject": inject, "loss_grad": loss_grad,
            "E": np.array(E).reshape(-1, p), "E_desc": E_desc,
            "F": np.array(F).reshape(-1, p), "F_desc": F_desc, "F_mult": F_mult}


def piece_of(model: dict, signs, slopes) -> tuple[list, np.ndarray, list]:
    """Slopes, one-sided rows and their descriptions for one sign pattern of the two-sided kinks."""
    s_pos, s_neg = slopes
    D = [d.copy() for d in model["D"]]
    rows, desc = [model["F"]], list(model["F_desc"])
    for r, sg in zip(model["inert"], signs):
        _, l, i, u = r["desc"]
        D[l - 1][i, u] = s_pos if sg > 0 else s_neg
        rows.append((sg * r["row"])[None, :])
        desc.append(r["desc"])
    return D, np.vstack(rows), desc


def cone_curvature(problem: Problem, fwd: ForwardPass, model: dict, *, tol_rel: float = TOL_CURVATURE,
                   deadline: float | None = None) -> dict:
    """Minimum of ``d' H_sigma d`` over each piece's critical cone (modulo symmetry), by faces.

    For every piece (sign pattern of the two-sided kinks) and every face ``S`` of its cone (a subset of
    the one-sided rows held at 0), the Lagrangian Hessian is restricted to
    ``V_S = {E d = 0, F_S d = 0} ∩ T^perp``; each eigenvector of ``H`` on ``V_S`` whose eigenvalue is
    at most the tolerance and which points into the cone (``F d >= 0``) is a stationary point of the
    curvature on the cone. The minimum over the cone is the least such eigenvalue (when the ones at or
    below the tolerance are simple; otherwise ``uncertain`` is set). Pure numpy: ``verify`` reuses it.
    """
    import itertools
    Q, counts = symmetry_basis(problem, fwd)
    p = problem.n_params
    E = model["E"]
    m = len(model["inert"])
    flat = model.get("flat")
    if flat is not None and flat.size:
        Q = np.hstack([Q, flat])   # the piece's own flat directions (see certify.secondorder.pieces)
        counts = dict(counts, piece_flat=int(flat.shape[1]))
    base = np.vstack([E, Q.T]) if (E.size or Q.size) else np.zeros((0, p))
    Z0 = sla.null_space(base) if base.shape[0] else np.eye(p)
    best = {"q": np.inf, "direction": None, "piece": None, "face": None}
    uncertain = False
    n_faces = 0
    scale = 0.0
    slopes = problem.network.activation.slopes
    from ..progress import tick
    for k_piece, signs in enumerate(itertools.product((1, -1), repeat=m)):
        tick("critical cone: pieces", k_piece, 2 ** m)
        D, Fp, _ = piece_of(model, signs, slopes)
        r = Fp.shape[0]
        if r > MAX_FACES_ROWS:
            return {"error": f"{r} one-sided kink rows: 2^{r} faces is over the limit ({MAX_FACES_ROWS} rows)"}
        HZ = dense_hessian(problem, fwd, D, basis=Z0, loss_grad=model["loss_grad"], inject=model["inject"],
                           deadline=deadline)
        H0 = Z0.T @ HZ
        H0 = 0.5 * (H0 + H0.T)
        # the scale of the curvature is that of H on the whole slice (H Z0), not of the reduced block,
        # which can vanish up to rounding: a reduced form of size 1e-16 is zero, not positive
        scale = max(scale, float(np.linalg.norm(HZ)), float(np.linalg.norm(H0)))
        tol = tol_rel * max(scale, 1e-300)
        F0 = Fp @ Z0
        F_norm = np.abs(Fp).sum(axis=1)  # feasibility is judged against the rows' own size
        for k in range(r, -1, -1):
            for held in itertools.combinations(range(r), k):
                n_faces += 1
                if n_faces % 64 == 0:
                    budget_check(deadline, "the faces of the critical cone")
                free = [x for x in range(r) if x not in held]
                Zs = sla.null_space(F0[list(held)]) if held else np.eye(Z0.shape[1])
                if Zs.shape[1] == 0:
                    continue
                w, V = np.linalg.eigh(Zs.T @ H0 @ Zs)
                # ascending: the first eigenvector pointing into the cone is this face's candidate
                for idx in range(w.size):
                    mult = int(np.count_nonzero(np.abs(w - w[idx]) <= tol))
                    found = False
                    for sgn in (1.0, -1.0):
                        y = sgn * (Zs @ V[:, idx])
                        if free:
                            Fy = F0[free] @ y
                            fscale = F_norm[free] * np.abs(Z0 @ y).max()
                            if not np.all(Fy >= -1e-9 * (fscale + 1e-300)):
                                continue
                        found = True
                        if w[idx] < best["q"]:
                            best = {"q": float(w[idx]), "direction": Z0 @ y, "piece": list(signs),
                                    "face": list(held)}
                        break
                    if found:
                        break
                    if mult > 1 and w[idx] <= tol:
                        uncertain = True  # the cone may meet this eigenspace away from the basis vectors
    tick("critical cone: pieces", 2 ** m, 2 ** m)
    return {"q": best["q"], "direction": best["direction"], "piece": best["piece"], "face": best["face"],
            "uncertain": uncertain, "faces": n_faces, "pieces": 2 ** m, "tolerance": tol_rel * max(scale, 1e-300),
            "hessian_frobenius": scale, "symmetry": counts}


def critical_cone_test(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, fo: FirstOrderModel, first,
                       cache: dict | None = None, deadline: float | None = None) -> SecondOrder:
    """Second-order conditions on the critical cone of every piece (DESIGN.md §4).

    When the cone has too many faces to enumerate, the model is left in ``cache["cone_model"]`` for
    the copositivity kind (:mod:`certify.secondorder.copositive`)."""
    cert = first.certificate if first is not None else {}
    if cert.get("kind") != "multipliers":
        return SecondOrder(None, "critical_cone", reason="the critical-cone test needs a multiplier certificate "
                           f"of first order (have {cert.get('kind')!r})")
    if cert.get("identical_row_groups"):
        # concave kinks merged into convex groups: the pieces' multipliers are not read off per kink here
        return SecondOrder(None, "critical_cone", reason="concave kinks in convex groups of identical rows: "
                           "the piece test decides")
    if problem.n_params > DENSE_P:
        return SecondOrder(None, "critical_cone", reason=f"p = {problem.n_params} is above the dense limit")
    lam = np.asarray(cert["lambda"], dtype=np.float64)
    pis = [np.asarray(p_, dtype=np.float64) for p_ in cert.get("pi", [])]
    model = cone_model(problem, fwd, kinks, fo, lam, pis)
    if isinstance(model, str):
        return SecondOrder(None, "critical_cone", reason=f"critical-cone test not applicable: {model}")
    res = cone_curvature(problem, fwd, model, deadline=deadline)
    if "error" in res:
        # too many faces: the copositivity kind (certify.secondorder.copositive) reads this model
        if cache is not None:
            cache["cone_model"] = model
        return SecondOrder(None, "critical_cone", reason=res["error"])
    q, tol = res["q"], res["tolerance"]
    certificate = {"kind": "critical_cone", "min_curvature": q if np.isfinite(q) else None, "tolerance": tol,
                   "faces": res["faces"], "pieces": res["pieces"], "uncertain": res["uncertain"],
                   "equalities": len(model["E_desc"]), "one_sided": len(model["F_desc"]),
                   "two_sided": [r["kink"] for r in model["inert"]], "symmetry": res["symmetry"]}
    if q < -tol and res["direction"] is not None:
        d = res["direction"]
        curve = cone_curve(problem, fwd, kinks, model, res, d)
        if curve["verified"]:
            return SecondOrder("saddle", "critical_cone", reason=(
                f"first-order stationary, but the Lagrangian curvature on the critical cone is {q:.3g} < 0; "
                f"the loss drops by {curve['decrease']:.3g} along theta + t d + t^2/2 e (verified)"),
                flags={"strict": False}, certificate=certificate, refutation=curve)
        if cache is not None:   # the targeted search (certify.secondorder.search) tries curves into this piece
            cache.setdefault("negative_curvature", []).append({"source": "critical-cone test", "model": model,
                                                               "result": res})
        return SecondOrder(None, "critical_cone", reason=f"negative curvature {q:.3g} on the critical cone, but no "
                           f"decrease could be verified along the second-order curve", certificate=certificate)
    if res["uncertain"]:
        return SecondOrder(None, "critical_cone", reason="a repeated eigenvalue at or below the tolerance on a face "
                           "of the critical cone: the exact minimum over the cone was not established",
                           certificate=certificate)
    if q > tol:
        flat = res["symmetry"].get("beyond_rescaling", 0)
        return SecondOrder("local_min", "critical_cone", reason=(
            f"the Lagrangian Hessian is positive on the critical cone of every piece ({res['pieces']} piece(s), "
            f"{res['faces']} face(s); least curvature {q:.3g}) modulo rescaling"
            + (f" and {flat} flat direction(s) of dead or always-active units" if flat else "")),
            flags={"strict": flat == 0, "flat_directions": flat > 0}, certificate=certificate)
    if cache is not None and res["direction"] is not None:   # read by certify.secondorder.higher_order
        cache.setdefault("zero_curvature", []).append({"source": "critical-cone test", "model": model, "result": res})
    return SecondOrder(None, "critical_cone", reason=(
        f"second-order necessary conditions hold but the curvature on the critical cone is 0 ({q:.3g}) in some "
        f"direction beyond symmetry: higher order needed"), certificate=certificate)


def cone_curve(problem, fwd, kinks, model, res, d) -> dict:
    """Curve ``theta + t d + t^2/2 e``: ``e`` keeps every held switching function at 0 to second order
    (``a_k . e = -d' grad^2 phi_k d``, least norm), so the loss changes by ``t^2/2 d' H d + o(t^2)``."""
    from ..tangent import second_tangent
    D, Fp, F_desc = piece_of(model, res["piece"] or [], problem.network.activation.slopes)
    ddz = second_tangent(problem, fwd, D, d)
    held = res["face"] or []
    A = np.vstack([model["E"], Fp[held]]) if held else model["E"]
    descs = list(model["E_desc"]) + [F_desc[x] for x in held]
    rhs = []
    for desc in descs:
        if desc[0] == "unit":
            _, l, i, u = desc
            rhs.append(-ddz[l - 1][i, u])
        else:
            _, i, w = desc
            rhs.append(-float(w @ ddz[-1][i]))
    e = np.linalg.lstsq(A, np.array(rhs), rcond=None)[0] if len(rhs) else np.zeros_like(d)
    curve = search_curve(problem, fwd, kinks, d, e)
    if not curve["verified"]:
        alt = search_curve(problem, fwd, kinks, d, None)
        if alt["verified"]:
            curve = alt
    curve["curvature"] = res["q"]
    return curve


def applies(ctx: Context) -> str | None:
    if not ctx.kinks.n_total:
        return "no kink: nothing for the critical-cone test"
    return None


def run(ctx: Context) -> SecondOrder:
    return critical_cone_test(ctx.problem, ctx.fwd, ctx.kinks, ctx.fo, ctx.first, cache=ctx.cache,
                              deadline=ctx.deadline)


def recheck(ctx: Context, cert: dict, checks: list, fo_cert: dict | None = None) -> None:
    problem, fwd, kinks = ctx.problem, ctx.fwd, ctx.kinks
    fo_cert = fo_cert or {}
    lam = np.asarray(fo_cert.get("lambda", []), dtype=np.float64)
    pis = [np.asarray(p, dtype=np.float64) for p in fo_cert.get("pi", [])]
    cm = cone_model(problem, fwd, kinks, ctx.fo, lam, pis)
    if isinstance(cm, str):
        checks.append(Check("critical_cone", False, cm))
        return
    res = cone_curvature(problem, fwd, cm)
    if "error" in res:
        checks.append(Check("critical_cone", False, res["error"]))
        return
    q, tol = res["q"], res["tolerance"]
    claimed = cert.get("min_curvature")
    if claimed is None or not np.isfinite(q):   # no direction in the cone beyond symmetry: both say so
        agree = claimed is None and not np.isfinite(q)
    else:
        agree = close(q, claimed, max(abs(q), tol))
    ok = agree and q > tol and not res["uncertain"]
    checks.append(Check("critical_cone", ok, f"least Lagrangian curvature on the critical cone {q:.6g} over "
                        f"{res['pieces']} piece(s) and {res['faces']} face(s) (report: {claimed}); tolerance {tol:.3g}"))
