"""Re-check a report's certificate against the model and data, with numpy only.

``verify`` never calls an optimisation solver: it recomputes the loss, the tangent network, the
multiplier residuals, the Hessian's spectrum and the decrease of the loss from the stored data,
and compares them with what the report claims. A tampered certificate (a flipped multiplier, an
altered direction, a scaled curvature bound) fails. Claims that only a solver could re-establish
(a MILP's optimality bound) are reported as *attested*, not as verified.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .checks import Check, check_first_order, close
from .data import Dataset, Problem, fingerprint
from .errors import CertificateError
from .evaluate import verified_decrease
from .exact.structure import structure_for
from .loaders import as_network, load_data
from .tangent import directional_derivative, first_order_model

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



def load_report(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CertificateError(f"no such report file: {path}")
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CertificateError(f"cannot read {path} as a JSON report: {exc}") from exc
    except RecursionError:
        raise CertificateError(f"cannot read {path} as a certify report: expected JSON nested a few hundred "
                               f"levels at most (certify's proof trees are); got deeper nesting than "
                               f"Python's JSON reader allows") from None
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
        given = fingerprint(net.theta)
        ok = given == pol.get("original_fingerprint")
        checks.append(Check("polished_from", ok, "the report's point was polished from this model" if ok else
                            f"the report was polished from other parameters (stored {pol.get('original_fingerprint')}, "
                            f"here {given})"))
        if not ok:
            return res
        net = net.with_theta(np.asarray(pol["theta"], dtype=np.float64))
    problem = Problem(net, data, info["loss"], info.get("weight_decay", 0.0))
    fp = info.get("fingerprint", {})
    got = problem.fingerprints()
    same = all(fp.get(k) == v for k, v in got.items())
    checks.append(Check("fingerprint", same, "model and data match the report" if same else
                        f"the report was made for other parameters or data (stored {fp}, here {got})"))
    if not same:
        return res
    value = problem.value()
    checks.append(Check("loss_value", close(value, info["loss_value"], max(abs(value), 1e-12)),
                        f"L = {value!r} (report: {info['loss_value']!r})"))
    verdict = report["verdict"]
    if verdict in ("not_stationary", "saddle"):
        _check_refutation(problem, report, checks)
    if verdict == "local_min":
        _check_local_min(problem, report, checks)
        lower = (report.get("second_order") or {}).get("lower_point")
        if lower is not None:
            from .secondorder.spurious import recheck as recheck_lower_point
            recheck_lower_point(problem, lower, checks)
    if verdict == "inconclusive":
        checks.append(Check("inconclusive", True, "nothing is claimed: " + report.get("reason", "")))
    if report.get("pruned"):
        _check_pruned(problem, report["pruned"], checks)
    return res


def _check_pruned(problem: Problem, pruned: dict, checks: list) -> None:
    """The network without its all-zero hidden units (:mod:`certify.prune`) is the certified local minimum
    the report says: the same units are all zero here, and the pruned network's claim re-checks (each of
    its checks is listed with the prefix ``pruned_``)."""
    from .prune import prunable, prune
    units = [[int(l), int(j)] for l, j in prunable(problem.network)]
    try:
        stored = [[int(l), int(j)] for l, j in pruned.get("units") or []]
    except (AttributeError, TypeError, ValueError) as exc:
        checks.append(Check("pruned_units", False, f"the report's pruned section is malformed: {exc}"))
        return
    ok = bool(units) and units == stored
    checks.append(Check("pruned_units", ok, f"all-zero hidden units {units} (report: {stored})"))
    sub_report = pruned.get("report") if isinstance(pruned.get("report"), dict) else {}
    if not ok or sub_report.get("verdict") != "local_min":
        if ok:
            checks.append(Check("pruned_claim", False, f"the pruned network's verdict is {sub_report.get('verdict')!r}, "
                                                       "not local_min"))
        return
    sub = prune(problem, [tuple(u) for u in units])
    fp = (sub_report.get("problem") or {}).get("fingerprint") or {}
    same = fp.get("theta") == fingerprint(sub.theta)
    checks.append(Check("pruned_fingerprint", same, "the pruned network's parameters match its report" if same else
                        "the pruned report was made for other parameters"))
    if not same:
        return
    inner: list = []
    _check_local_min(sub, sub_report, inner)
    checks.extend(Check("pruned_" + c.name, c.ok, c.detail, c.attested) for c in inner)


# ---------------------------------------------------------------------------- refutations
def _check_refutation(problem: Problem, report: dict, checks: list) -> None:
    ref = report.get("refutation") or {}
    if ref.get("exact_point"):
        # an exact refutation: the point theta + t d + t^2/2 e is rational (t may be far below float
        # resolution); re-checked with fractions only (certify.exact.descent)
        from .exact.descent import recheck_refutation
        checks.extend(recheck_refutation(problem, ref, report["verdict"]))
        return
    if ref.get("direction") is None or ref.get("step") is None:
        checks.append(Check("refutation", False, "the report has no direction and step"))
        return
    d = np.asarray(ref["direction"], dtype=np.float64)
    if d.shape != (problem.n_params,):
        checks.append(Check("refutation", False, f"direction has shape {d.shape}, expected ({problem.n_params},)"))
        return
    if ref.get("kind") == "output_scaling":
        _check_output_scaling(problem, report, ref, d, checks)
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
        checks.append(Check("stored_loss_after", close(dec.after, stored, max(abs(dec.after), 1e-12)),
                            f"L(theta') = {dec.after!r} (report: {stored!r})"))
    fwd, kinks = structure_for(problem, report["kinks"]["tolerance"])
    from .refute import local_descent   # second order, or a higher-order leading Taylor coefficient
    local, detail = local_descent(problem, fwd, kinks, d, e)
    checks.append(Check("local_descent", local, detail))
    if report["verdict"] == "not_stationary":
        slope = directional_derivative(problem, fwd, kinks, d)
        checks.append(Check("directional_derivative", slope < 0 and close(slope, ref["directional_derivative"],
                                                                             max(abs(slope), 1e-12)),
                            f"L'(theta; d) = {slope:.6g} (report: {ref['directional_derivative']!r})"))


def _check_output_scaling(problem: Problem, report: dict, ref: dict, d: np.ndarray, checks: list) -> None:
    """A refutation by scaling the outputs (:func:`certify.refute.output_scaling`): the direction is the
    last layer, every margin is negative beyond its rounding bound (so the loss falls along the whole
    ray), and the decrease at the stored step is verified."""
    from .refute import SCALING_LOSSES, margins_with_bound, scaling_direction
    ok_loss = problem.loss.name in SCALING_LOSSES and not problem.weight_decay
    checks.append(Check("scaling_loss", ok_loss, f"{problem.loss.name} loss, weight decay {problem.weight_decay:g} "
                        "(output scaling refutes only cross-entropy / logistic without weight decay)"))
    checks.append(Check("scaling_direction", bool(np.array_equal(d, scaling_direction(problem))),
                        "the direction is the last layer's parameters (scaling the outputs)"))
    M, eM = margins_with_bound(problem)
    worst = float(np.max(M + eM)) if M.size else float("inf")
    checks.append(Check("margins", worst < 0, f"largest margin f_j - f_y plus its rounding bound: {worst:.3g} "
                                              "(must be < 0: every sample classified correctly)"))
    t = float(ref["step"])
    dec = verified_decrease(problem, problem.theta, problem.theta + t * d)
    checks.append(Check("verified_decrease", dec.verified and t > 0,
                        f"L(theta) - L(theta') = {dec.decrease:.6g} > error bound {dec.error_bound:.3g} ({dec.method})"
                        if dec.verified else f"no verified decrease at the stored point: {dec.decrease:.6g} "
                                             f"(bound {dec.error_bound:.3g})"))
    if report["verdict"] != "not_stationary":
        checks.append(Check("verdict", False, f"an output-scaling refutation means not_stationary, not "
                                              f"{report['verdict']}"))


# ---------------------------------------------------------------------------- local minima
def _check_local_min(problem: Problem, report: dict, checks: list) -> None:
    """Re-check what the report's ``claim`` says: about the point (exact or up to rounding), or about
    an exact minimum near it (``nearby``)."""
    from .secondorder import RECHECK, Context
    fo = report.get("first_order") or {}
    so = report.get("second_order") or {}
    claim = report.get("claim") or {}
    if claim.get("level") == "nearby":
        _check_nearby(problem, report, claim, checks)
        return
    fwd, kinks = structure_for(problem, report["kinks"]["tolerance"])
    model = first_order_model(problem, fwd, kinks)
    _check_first_order(problem, model, fo, checks)
    if claim.get("level") == "exact":
        from .exact import recheck_certificate
        exact = (fo.get("exact") or {}).get("certificate") or {}
        checks.extend(recheck_certificate(problem, exact) if exact else
                      [Check("exact_first_order", False, "the claim is exact but the report has no exact certificate")])
    cert = so.get("certificate") or {}
    kind = cert.get("kind")
    module = RECHECK.get(kind)
    if module is None:
        checks.append(Check("second_order", False, f"unknown or missing second-order certificate {kind!r}"))
        return
    ctx = Context(problem, fwd, kinks, model)
    if kind in ("critical_cone", "copositivity"):
        module.recheck(ctx, cert, checks, fo_cert=fo.get("certificate") or {})
    else:
        module.recheck(ctx, cert, checks)


def _check_nearby(problem: Problem, report: dict, claim: dict, checks: list) -> None:
    """An exact local minimum within ``radius`` of the point: by construction (``rational_snap:*``, the
    stored rational ``theta*`` re-checked exactly) or by an existence theorem (``kantorovich``)."""
    method = str(claim.get("method", ""))
    if method.startswith("rational_snap:"):
        from .exact import parse, recheck_certificate
        from .exact.snap import affine_optimal, distance_upper
        try:
            theta_star = parse(claim["theta_star"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            checks.append(Check("nearby_point", False, f"no readable theta* in the claim: {exc}"))
            return
        if theta_star.shape != (problem.n_params,):
            checks.append(Check("nearby_point", False, f"theta* has shape {theta_star.shape}"))
            return
        dist = distance_upper(theta_star, problem.theta)
        radius = float(claim.get("radius", -1.0))
        checks.append(Check("nearby_radius", dist <= radius, f"||theta* - theta|| <= {dist:.3g} "
                            f"(claimed radius {radius:.3g})"))
        checks.extend(recheck_certificate(problem, claim.get("theta_star_first_order") or {},
                                          theta=theta_star.to_fractions().tolist()))
        if method.endswith("affine_last_layer"):
            ok, why = affine_optimal(problem, theta_star)
            checks.append(Check("nearby_affine_cell", ok, why))
        elif method.endswith("cell_u"):
            from .exact.snap import cell_applies
            net = problem.network
            a = theta_star[net.offsets[1][0]:net.offsets[1][1]].to_fractions().tolist() if net.n_layers == 2 else []
            why = cell_applies(problem, a)
            checks.append(Check("nearby_cell_convexity", not why, "one hidden layer, scalar output, a convex "
                                "loss (square, absolute, hinge), no weight decay, every output weight nonzero at "
                                "theta*" if not why else f"the cell-convexity theorem's conditions fail at theta*: {why}"))
        else:
            checks.append(Check("nearby_method", False, f"unknown construction {method!r}"))
        return
    if method == "kantorovich":
        from .nearby import recheck as recheck_nearby
        checks.extend(recheck_nearby(problem, claim.get("certificate") or {}))
        return
    checks.append(Check("nearby_method", False, f"unknown nearby method {method!r}"))


def _check_first_order(problem: Problem, model, fo: dict, checks: list) -> None:
    check_first_order(model, fo.get("certificate") or {}, "first_order", checks)
