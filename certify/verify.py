"""Re-check a report's certificate against the model and data, with numpy only.

``verify`` never calls an optimisation solver: it recomputes the loss, the tangent network, the
multiplier residuals, the Hessian's spectrum and the decrease of the loss from the stored data,
and compares them with what the report claims. A tampered certificate (a flipped multiplier, an
altered direction, a scaled curvature bound) fails. Claims that only a solver could re-establish
(a MILP's optimality bound) are reported as *attested*, not as verified.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import Dataset, Problem
from .errors import CertificateError
from .evaluate import exact_loss, verified_decrease
from .formulate.first_order import OneLevel, one_level
from .kinks import find_kinks
from .loaders import as_network, load_data
from .tangent import dense_hessian, directional_derivative, first_order_model, piece_slopes

REL = 1e-7  # relative agreement required between stored and recomputed numbers


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    attested: bool = False  # True: not re-checkable without a solver; reported, not failed


@dataclass
class VerifyResult:
    """``ok`` is True when every check passed (attested claims are listed apart)."""

    verdict: str
    checks: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if not c.attested)

    @property
    def failed(self) -> list:
        return [c for c in self.checks if not c.ok and not c.attested]

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "ok": self.ok,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail, "attested": c.attested}
                           for c in self.checks]}


def _digest(arr) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr, dtype=np.float64).tobytes()).hexdigest()[:16]


def _close(a, b, scale=None) -> bool:
    a, b = float(a), float(b)
    s = max(abs(a), abs(b), 1e-300) if scale is None else scale
    return abs(a - b) <= REL * s + 1e-300


def load_report(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CertificateError(f"no such report file: {path}")
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CertificateError(f"cannot read {path} as a JSON report: {exc}") from exc
    if not isinstance(report, dict) or "verdict" not in report or "problem" not in report:
        raise CertificateError(f"{path} is not a certify report (expected keys 'verdict' and 'problem')")
    return report


def verify(report: dict, model, X=None, y=None, *, data=None) -> VerifyResult:
    """Re-check ``report`` (a dict from :meth:`Report.to_dict` or a JSON path) on the model and data.

    Examples
    --------
    >>> import numpy as np, certify
    >>> X = np.array([[-1.0], [0.0], [1.0]]); y = np.array([-1.0, 1.0, 1.0])
    >>> w = {"W1": [[1.0]], "b1": [0.0], "W2": [[1.0]], "b2": [0.0]}
    >>> report = certify.check(w, X, y, activation="relu", loss="square")
    >>> certify.verify(report.to_dict(), w, X, y).ok
    True
    """
    if isinstance(report, (str, Path)):
        report = load_report(report)
    elif hasattr(report, "to_dict"):
        report = report.to_dict()
    info = report["problem"]
    net = as_network(model, info.get("activation"))
    if data is None:
        data = Dataset(X, y)
    elif not isinstance(data, Dataset):
        data = load_data(data)
    res = VerifyResult(verdict=report["verdict"])
    checks = res.checks
    pol = report.get("polish") or {}
    if pol.get("theta") is not None:
        # the verdict is about the polished point: the given model must be the one that was polished
        given = _digest(net.theta)
        ok = given == pol.get("original_fingerprint")
        checks.append(Check("polished_from", ok, "the report's point was polished from this model" if ok else
                            f"the report was polished from other parameters (stored {pol.get('original_fingerprint')}, "
                            f"here {given})"))
        if not ok:
            return res
        net = net.with_theta(np.asarray(pol["theta"], dtype=np.float64))
    problem = Problem(net, data, info["loss"], info.get("weight_decay", 0.0))
    fp = info.get("fingerprint", {})
    got = {"theta": _digest(net.theta), "X": _digest(problem.X), "y": _digest(np.asarray(data.y, dtype=np.float64))}
    same = all(fp.get(k) == v for k, v in got.items())
    checks.append(Check("fingerprint", same, "model and data match the report" if same else
                        f"the report was made for other parameters or data (stored {fp}, here {got})"))
    if not same:
        return res
    value = problem.value()
    checks.append(Check("loss_value", _close(value, info["loss_value"], max(abs(value), 1e-12)),
                        f"L = {value!r} (report: {info['loss_value']!r})"))
    verdict = report["verdict"]
    if verdict in ("not_stationary", "saddle"):
        _check_refutation(problem, report, checks)
    if verdict == "local_min":
        _check_local_min(problem, report, checks)
        lower = (report.get("second_order") or {}).get("lower_point")
        if lower is not None:
            th = np.asarray(lower["theta"], dtype=np.float64)
            dec = verified_decrease(problem, problem.theta, th)
            checks.append(Check("spurious_lower_point", dec.verified and th.shape == problem.theta.shape,
                                f"the stored lower point has loss {dec.after:.6g} < {dec.before:.6g} "
                                f"(verified, {dec.method})" if dec.verified else "the stored lower point is not lower"))
    if verdict == "inconclusive":
        checks.append(Check("inconclusive", True, "nothing is claimed: " + report.get("reason", "")))
    return res


# ---------------------------------------------------------------------------- refutations
def _check_refutation(problem: Problem, report: dict, checks: list) -> None:
    ref = report.get("refutation") or {}
    if ref.get("direction") is None or ref.get("step") is None:
        checks.append(Check("refutation", False, "the report has no direction and step"))
        return
    d = np.asarray(ref["direction"], dtype=np.float64)
    if d.shape != (problem.n_params,):
        checks.append(Check("refutation", False, f"direction has shape {d.shape}, expected ({problem.n_params},)"))
        return
    e = ref.get("curvature_direction")
    e = np.zeros_like(d) if e is None else np.asarray(e, dtype=np.float64)
    t = float(ref["step"])
    theta = problem.theta
    theta_new = theta + t * d + 0.5 * t * t * e
    dec = verified_decrease(problem, theta, theta_new)
    checks.append(Check("verified_decrease", dec.verified,
                        f"L(theta) - L(theta') = {dec.decrease:.6g} > error bound {dec.error_bound:.3g} ({dec.method})"
                        if dec.verified else f"no verified decrease at the stored point: {dec.decrease:.6g} "
                                             f"(bound {dec.error_bound:.3g})"))
    stored = ref.get("loss_after")
    if stored is not None:
        checks.append(Check("stored_loss_after", _close(dec.after, stored, max(abs(dec.after), 1e-12)),
                            f"L(theta') = {dec.after!r} (report: {stored!r})"))
    fwd = problem.network.forward(problem.X, with_scale=True)
    kinks = find_kinks(problem, fwd, report["kinks"]["tolerance"])
    from .refute import curve_coefficients, is_local_descent
    c1, c2, cscale = curve_coefficients(problem, fwd, kinks, d, e)
    local = is_local_descent(c1, c2, cscale)
    checks.append(Check("local_descent", local, f"L(theta + t d + t^2/2 e) = L + ({c1:.6g}) t + ({c2:.6g}) t^2/2 + "
                        f"o(t^2): {'descends for every small t > 0' if local else 'not a local descent curve'}"))
    if report["verdict"] == "not_stationary":
        slope = directional_derivative(problem, fwd, kinks, d)
        checks.append(Check("directional_derivative", slope < 0 and _close(slope, ref["directional_derivative"],
                                                                             max(abs(slope), 1e-12)),
                            f"L'(theta; d) = {slope:.6g} (report: {ref['directional_derivative']!r})"))


# ---------------------------------------------------------------------------- local minima
def _check_local_min(problem: Problem, report: dict, checks: list) -> None:
    fo = report.get("first_order") or {}
    so = report.get("second_order") or {}
    tol = report["kinks"]["tolerance"]
    fwd = problem.network.forward(problem.X, with_scale=True)
    kinks = find_kinks(problem, fwd, tol)
    model = first_order_model(problem, fwd, kinks)
    _check_first_order(problem, model, fo, checks)
    cert = so.get("certificate") or {}
    kind = cert.get("kind")
    if kind == "zero_loss":
        ok = problem.loss.rational and exact_loss(problem, problem.theta) == 0
        checks.append(Check("zero_loss", ok, "L = 0 exactly" if ok else "L is not exactly 0"))
    elif kind == "reduced_hessian":
        _check_hessian(problem, fwd, cert, checks)
    elif kind == "cell_convexity":
        _check_cell(problem, fwd, kinks, cert, checks)
    elif kind == "affine_cell":
        _check_affine(problem, fwd, kinks, cert, checks)
    elif kind == "critical_cone":
        _check_cone(problem, fwd, kinks, model, fo.get("certificate") or {}, cert, checks)
    elif kind == "piece_kkt":
        _check_pieces(problem, fwd, kinks, cert, checks)
    elif kind == "copositivity":
        from .second_order import cone_copositivity, cone_model
        fc = fo.get("certificate") or {}
        cm = cone_model(problem, fwd, kinks, model, np.asarray(fc.get("lambda", []), dtype=np.float64),
                        [np.asarray(p_, dtype=np.float64) for p_ in fc.get("pi", [])])
        if isinstance(cm, str):
            checks.append(Check("copositivity", False, cm))
        else:
            res = cone_copositivity(problem, fwd, cm, stored=cert.get("pieces", []))
            checks.append(Check("copositivity", res["ok"], f"H - F'NF - eps I is PSD with N >= 0 on all "
                                f"{len(res['pieces'])} piece(s)" if res["ok"] else "a stored copositivity factor "
                                "does not re-check"))
    else:
        checks.append(Check("second_order", False, f"unknown or missing second-order certificate {kind!r}"))


def _multipliers_ok(one: OneLevel, cert: dict, name: str, checks: list) -> None:
    lam = np.asarray(cert.get("lambda", []), dtype=np.float64)
    pis = [np.asarray(p, dtype=np.float64) for p in cert.get("pi", [])]
    if lam.shape != (one.n_generators,) or len(pis) != len(one.multi):
        checks.append(Check(name, False, f"{lam.size} multipliers stored for {one.n_generators} kinks"))
        return
    in_box = bool(np.all(lam >= 0) and np.all(lam <= 1))
    in_simplex = all(np.all(p >= 0) and abs(p.sum() - 1) <= 1e-9 for p in pis)
    rho = one.subgradient(lam, pis)
    resid = float(np.abs(rho).max(initial=0.0))
    size = float(np.abs(one.g if one.g_scale is None else one.g_scale).max(initial=0.0))
    if one.n_generators:
        rows = np.asarray(abs(one.a).max(axis=1).todense()).ravel()
        size = max(size, float(np.max(np.abs(one.gamma) * rows, initial=0.0)))
    tol = 1e-8 * max(size, 1e-300)
    ok = in_box and in_simplex and resid <= tol
    detail = (f"0 = g + sum gamma_j lambda_j a_j + ... up to {resid:.3g} (tolerance {tol:.3g}); "
              f"lambda in [0,1]: {in_box}; pi in simplex: {in_simplex}")
    checks.append(Check(name, ok, detail))


def _check_first_order(problem: Problem, model, fo: dict, checks: list) -> None:
    cert = fo.get("certificate") or {}
    kind = cert.get("kind")
    if kind == "gradient" or (model.smooth and kind is None):
        g = model.g if model.nested else one_level(model).g
        scale = max(model.scale(), 1e-300)
        norm1 = float(np.abs(g).sum())
        ok = norm1 <= 1e-9 * scale
        checks.append(Check("first_order_gradient", ok, f"||grad||_1 = {norm1:.3g} <= {1e-9 * scale:.3g}"))
    elif kind == "multipliers":
        if model.nested:
            checks.append(Check("first_order_multipliers", False, "nested kinks have no multiplier certificate"))
            return
        _multipliers_ok(one_level(model), cert, "first_order_multipliers", checks)
    elif kind == "milp_bound":
        checks.append(Check("first_order_milp", True, f"min L'(theta; d) >= {cert.get('dual_bound')} by the HiGHS "
                            f"MILP bound; not re-checkable without a solver", attested=True))
    else:
        checks.append(Check("first_order", False, f"unknown first-order certificate {kind!r}"))


def _check_hessian(problem: Problem, fwd, cert: dict, checks: list) -> None:
    from .second_order import symmetry_basis
    import scipy.linalg as sla
    kinks = find_kinks(problem, fwd, 0.0)
    if kinks.n_total:
        checks.append(Check("smooth_cell", False, "a pre-activation or loss term is exactly on a kink: the Hessian "
                            "test needs a smooth cell"))
        return
    Q, _ = symmetry_basis(problem, fwd)
    N = sla.null_space(Q.T) if Q.shape[1] else np.eye(problem.n_params)
    H = dense_hessian(problem, fwd, piece_slopes(problem, fwd))
    H = 0.5 * (H + H.T)
    Hr = N.T @ H @ N
    q = float(np.linalg.eigvalsh(0.5 * (Hr + Hr.T))[0])
    tol = 1e-9 * max(float(np.linalg.norm(H)), 1e-300)
    claimed = float(cert.get("min_eigenvalue", np.nan))
    agree = _close(q, claimed, max(abs(q), tol))
    try:
        np.linalg.cholesky(Hr - 0.5 * q * np.eye(Hr.shape[0]))
        chol = q > tol
    except np.linalg.LinAlgError:
        chol = False
    checks.append(Check("reduced_hessian", agree and chol,
                        f"smallest eigenvalue {q:.6g} off the symmetry directions (report: {claimed:.6g}); "
                        f"Cholesky of H_r - q/2 I {'succeeds' if chol else 'fails'}"))


def _check_cell(problem: Problem, fwd, kinks, cert: dict, checks: list) -> None:
    from .second_order import escape_model, one_hidden_layer_applies
    why = one_hidden_layer_applies(problem)
    a = problem.network.weights[1][0] if problem.network.n_layers == 2 else np.zeros(0)
    zero = sorted(int(j) for j in np.nonzero(a == 0)[0])
    stored = sorted(cert.get("conditions", {}).get("zero_output_units", []))
    ok = why is None and zero == stored
    checks.append(Check("cell_convexity_conditions", ok, why or f"one hidden layer, scalar output, no weight decay; "
                        f"zero output weights at units {zero} (report: {stored})"))
    if not ok:
        return
    done = {(e["unit"], e["sign"]) for e in cert.get("escapes", [])}
    for j in zero:
        for s in (1, -1):
            if (j, s) not in done:
                checks.append(Check(f"escape_unit_{j}_{s:+d}", False, "escape test missing from the certificate"))
    for e in cert.get("escapes", []):
        one = escape_model(problem, fwd, kinks, int(e["unit"]), int(e["sign"]))
        c = e.get("certificate") or {}
        name = f"escape_unit_{e['unit']}_{int(e['sign']):+d}"
        if c.get("kind") == "multipliers":
            _multipliers_ok(one, c, name, checks)
        elif c.get("kind") == "gradient" or one.n_generators == 0:
            norm = float(np.abs(one.g).sum())
            tol = 1e-9 * max(float(np.abs(one.g_scale).sum()), 1e-300)
            checks.append(Check(name, norm <= tol, f"linear escape function, |coefficients|_1 = {norm:.3g}"))
        elif c.get("kind") == "milp_bound":
            checks.append(Check(name, True, "escape function >= 0 by the HiGHS MILP bound", attested=True))
        else:
            checks.append(Check(name, False, f"unknown escape certificate {c.get('kind')!r}"))


def _check_affine(problem: Problem, fwd, kinks, cert: dict, checks: list) -> None:
    from .second_order import affine_cell_model
    one, why = affine_cell_model(problem, fwd, kinks)
    checks.append(Check("affine_cell_conditions", one is not None, why or "the network is affine near theta"))
    if one is None:
        return
    _multipliers_ok(one, cert.get("fit_certificate") or {}, "affine_fit_multipliers", checks)


def _check_pieces(problem: Problem, fwd, kinks, cert: dict, checks: list) -> None:
    """Every piece of the branch kinks: stored KKT multipliers close the equation (which also proves
    d-stationarity) and the Lagrangian curvature on its critical cone is positive."""
    from .pieces import piece_test
    stored = cert.get("pieces") or []
    res = piece_test(problem, fwd, kinks, stored=stored)
    branch = [tuple(b) for b in cert.get("branch", [])]
    if [tuple(b) for b in res.get("branch", [])] != branch:
        checks.append(Check("piece_branch_set", False, f"the kinks to branch on are {res.get('branch')} "
                            f"(report: {branch})"))
        return
    if res["status"] == "error":
        checks.append(Check("piece_kkt", False, res["reason"]))
        return
    by_signs = {tuple(int(s) for s in pc["signs"]): pc for pc in stored}
    n_ok = 0
    for pc in res["pieces"]:
        claimed = by_signs[tuple(pc["signs"])].get("min_curvature")
        q = pc.get("min_curvature")
        name = f"piece_{''.join('+' if s > 0 else '-' for s in pc['signs']) or 'none'}"
        kkt = pc["kkt_residual"] <= pc["kkt_tolerance"]
        if not kkt:
            checks.append(Check(name, False, f"KKT residual {pc['kkt_residual']:.3g} > {pc['kkt_tolerance']:.3g} "
                                f"(or a multiplier out of its bounds)"))
            continue
        ctol = pc.get("curvature_tolerance", 0.0)
        if q is None or claimed is None:
            agree = q is None and claimed is None and "faces" in pc   # no critical direction: both say so
        else:
            agree = _close(q, claimed, max(abs(q), ctol))
        ok = agree and (q is None or q > ctol) and not pc.get("uncertain", False)
        n_ok += ok
        if not ok:
            checks.append(Check(name, False, f"least Lagrangian curvature {q} on the piece's critical cone "
                                f"(report: {claimed}), tolerance {ctol:.3g}"))
    checks.append(Check("piece_kkt", res["status"] == "local_min" and n_ok == len(res["pieces"]),
                        f"KKT multipliers (hence d-stationarity) and positive curvature on {n_ok} of "
                        f"{len(res['pieces'])} piece(s) of {len(branch)} branch kink(s)"))


def _check_cone(problem: Problem, fwd, kinks, model, fo_cert: dict, cert: dict, checks: list) -> None:
    from .second_order import cone_curvature, cone_model
    lam = np.asarray(fo_cert.get("lambda", []), dtype=np.float64)
    pis = [np.asarray(p, dtype=np.float64) for p in fo_cert.get("pi", [])]
    cm = cone_model(problem, fwd, kinks, model, lam, pis)
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
        agree = _close(q, claimed, max(abs(q), tol))
    ok = agree and q > tol and not res["uncertain"]
    checks.append(Check("critical_cone", ok, f"least Lagrangian curvature on the critical cone {q:.6g} over "
                        f"{res['pieces']} piece(s) and {res['faces']} face(s) (report: {claimed}); tolerance {tol:.3g}"))
