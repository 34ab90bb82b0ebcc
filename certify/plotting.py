"""Pictures of a report: the loss along the refutation, or along the flattest directions of a minimum.

``plot_report(report, problem, out_path)`` writes one figure (PNG, or SVG / PDF by suffix) with
two panels (three for a polished report):

(a) the loss along a 1-D path through ``theta``:

    * ``not_stationary`` / ``saddle``: ``t -> L(theta + t d + t^2/2 e)`` for ``t in [-T, 2T]``
      around the verified step ``T`` (``e = 0`` for a straight descent direction), with ``theta``,
      the verified step and its decrease marked, and the local model: ``L + t L'(theta; d)``
      (``L + |t| L'(theta; -d)`` for ``t < 0``) for a descent direction, ``L + t^2/2 q ||d||^2``
      with the certified negative curvature ``q`` for a saddle;
    * ``local_min`` (and ``inconclusive``): the loss along the flattest directions
      ``t -> L(theta + t v)``, ``||v||_2 = 1``, ``t in [-R, R]``;

(b) a 2-D contour slice of ``L - L(theta)``: ``(s, u) -> theta + s d + s^2/2 e + u v`` spanned by
    the refutation and the flattest direction ``v`` orthogonal to it (``||v||_2 = ||d||_2``), or by
    the two flattest directions of a minimum; ``theta`` is marked;

(c) for a polished report (``theta`` is then the polished point): the loss on the straight line
    ``s -> L(theta_0 + s (theta - theta_0))`` from the checkpoint ``theta_0`` (s = 0) to the polished
    point (s = 1), ``s in [-0.25, 1.25]``, and the barrier on it (:func:`_path_panel`).

The flattest directions are always orthogonal to the symmetry orbits
(:func:`certify.secondorder.symmetry.symmetry_basis`: unit rescalings, dead units, bias translations),
along which the loss is constant. They are, when the problem is small enough to form the matrices
(``n p^2 <= HESSIAN_BUDGET``): the eigenvectors of the reduced Hessian with the smallest
eigenvalues when no unit or loss term is on a kink (the Hessian exists there); the directions of
least Lagrangian curvature on the critical cone when the report's certificate is
``critical_cone``; otherwise the flattest of a few seeded random directions (the loss rise at the
plot's radius decides), so the same report always gives the same picture.

The loss is the objective of ``problem`` (``Problem.value``), evaluated for a whole grid at once by a
batched forward pass (checked against ``Problem.value`` at ``theta``). Matplotlib is imported only
here, lazily, with the Agg canvas (no pyplot, no global backend change).
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import Problem, fingerprint
from .errors import CertificateError, InvalidValueError, MissingExtraError

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
#: points per side of the 2-D grid, and along each 1-D path
GRID = 41
LINE_POINTS = 201
#: directions from the Hessian / critical cone only when n * p * p_free is at most this
HESSIAN_BUDGET = 3e8
#: random candidate directions when no curvature information is used
N_RANDOM = 8
#: floats per chunk of the batched forward pass (memory bound)
_CHUNK_FLOATS = 4_000_000


# ---------------------------------------------------------------------------- public API
def plot_report(report, problem: Problem, out_path, *, fmt: str | None = None,
                radius: float | None = None) -> Path:
    """Draw ``report`` (a dict from :meth:`Report.to_dict`, or a ``Report``) for ``problem``.

    Parameters
    ----------
    report : dict or Report
        The report; its fingerprint must match ``problem`` (else :class:`CertificateError`).
    problem : Problem
        The model, data, loss and weight decay the report was made for (the given, unpolished
        point when the report was polished: its stored point is used, as in ``verify``).
    out_path : str or Path
        The figure file; written whole or not at all (a temporary file, then ``os.replace``).
    fmt : {"png", "svg", "pdf"}, optional
        Default: from the suffix of ``out_path``, PNG when it has none.
    radius : float, optional
        Half-width ``R`` of the plotted range: ``t in [-R, 2R]`` along a refutation (default: the
        verified step), ``t in [-R, R]`` at a minimum (default: ``0.1 max(1, |theta|_inf)``, halved
        until the loss at most doubles at the ends).

    Returns the path written.
    """
    mpl = _matplotlib()
    if hasattr(report, "to_dict"):
        report = report.to_dict()
    if not isinstance(report, dict) or "verdict" not in report or "problem" not in report:
        raise CertificateError("not a certify report: expected a dict with keys 'verdict' and 'problem'")
    out_path = Path(out_path)
    fmt = plot_format(out_path, fmt)
    if radius is not None:
        try:
            radius = float(radius)
        except (TypeError, ValueError):
            radius = float("nan")
        if not (np.isfinite(radius) and radius > 0):
            raise InvalidValueError(f"plot radius must be a finite number > 0; got {radius!r}")
    scene = build_scene(report, problem, radius=radius)
    fig = _draw(mpl, scene)
    _save_atomic(fig, out_path, fmt)
    return out_path


def plot_format(path, fmt: str | None = None) -> str:
    """``png``, ``svg`` or ``pdf``: ``fmt`` if given, else the suffix of ``path`` (PNG without one)."""
    if fmt is not None:
        f = str(fmt).lower().lstrip(".")
        if "." + f not in FORMATS:
            raise InvalidValueError(f"unsupported plot format {fmt!r}: expected png, svg or pdf")
        return f
    suffix = Path(path).suffix.lower()
    if not suffix:
        return "png"
    if suffix not in FORMATS:
        raise InvalidValueError(f"unsupported plot format {suffix!r} for {path}: expected a name ending in "
                                f".png, .svg or .pdf")
    return FORMATS[suffix]


def attach(report: dict, problem: Problem) -> Problem:
    """The problem at the report's point, after the fingerprint check of :func:`certify.verify`.

    Raises :class:`CertificateError` (one line) when the parameters, inputs or labels are not the
    ones the report was made for, or when the loss value differs (another activation, loss or
    weight decay).
    """
    if not isinstance(problem, Problem):
        raise TypeError("problem must be a certify Problem (certify.Problem(network, dataset, loss))")
    info = report.get("problem") or {}
    pol = report.get("polish") or {}
    if pol.get("theta") is not None:
        given = fingerprint(problem.theta)
        if given != pol.get("original_fingerprint"):
            raise CertificateError(f"the report was polished from other parameters (stored fingerprint "
                                   f"{pol.get('original_fingerprint')}, here {given}): plot it with the model "
                                   f"it was made for")
        theta = np.asarray(pol["theta"], dtype=np.float64)
        if theta.shape != (problem.n_params,):
            raise CertificateError(f"the report's polished point has {theta.size} parameters; the model has "
                                   f"{problem.n_params}")
        problem = problem.at(theta)
    stored = info.get("fingerprint") or {}
    got = problem.fingerprints()
    names = {"theta": "parameters", "X": "inputs X", "y": "labels y"}
    bad = [k for k in ("theta", "X", "y") if stored.get(k) != got[k]]
    if bad:
        what = "; ".join(f"{names[k]}: report {stored.get(k)}, here {got[k]}" for k in bad)
        raise CertificateError(f"the report was made for other parameters or data (fingerprints differ: {what}); "
                               f"plot it with the model and data it was made for")
    value = problem.value()
    claimed = info.get("loss_value")
    if isinstance(claimed, (int, float)) and abs(value - claimed) > 1e-7 * max(abs(value), abs(claimed), 1e-12):
        raise CertificateError(f"the report's loss value {claimed!r} differs from L(theta) = {value!r} here: the "
                               f"activation, loss or weight decay are not the report's "
                               f"({info.get('activation')}, {info.get('loss')}, {info.get('weight_decay')})")
    return problem


# ---------------------------------------------------------------------------- the numbers
@dataclass
class Direction:
    v: np.ndarray                  # unit Euclidean norm (before any rescaling for a slice)
    label: str                     # short legend entry
    curvature: float | None = None  # v' H v along the straight line (quadratic model), if known


@dataclass
class Scene:
    """Everything the figure shows, computed without matplotlib (tests read it directly)."""

    kind: str                      # "refutation" or "minimum"
    title: str
    subtitle: str
    caption: str
    loss0: float
    line_xlabel: str = ""
    line_title: str = ""
    lines: list = field(default_factory=list)     # (t, L, label)
    models: list = field(default_factory=list)    # (t, L, label)
    step: tuple | None = None                     # (T, L(T), label) for a refutation
    step_visible: bool = True
    slice_s: np.ndarray | None = None
    slice_u: np.ndarray | None = None
    slice_values: np.ndarray | None = None        # L - L(theta), shape (len(u), len(s))
    slice_xlabel: str = ""
    slice_ylabel: str = ""
    slice_title: str = ""
    slice_note: str = ""
    how: str = ""
    legend_title: str = ""
    path_s: np.ndarray | None = None               # a polished report: s along checkpoint -> polished point
    path_values: np.ndarray | None = None          # L(theta_0 + s (theta_1 - theta_0))
    path_title: str = ""
    path_note: str = ""
    path_end_label: str = ""
    path_barrier: float | None = None              # max over s in [0, 1] of L minus the higher end, or None


def build_scene(report: dict, problem: Problem, *, radius: float | None = None) -> Scene:
    """The curves and the slice of the figure for ``report`` on ``problem`` (checked by :func:`attach`)."""
    given = problem
    problem = attach(report, problem)
    verdict = str(report.get("verdict"))
    flags = report.get("flags") or {}
    method = flags.get("method") or (report.get("second_order") or {}).get("method") \
        or (report.get("first_order") or {}).get("method") or "n/a"
    info = report.get("problem") or {}
    loss0 = problem.value()
    title = f"{verdict}  (method: {method})"
    subtitle = (f"network {info.get('widths', list(problem.network.widths))} {problem.network.activation.spec}, "
                f"loss {problem.loss.name}"
                + (f" + {problem.weight_decay:g}/2 ‖θ‖²" if problem.weight_decay else "")
                + f", n = {problem.n_samples}, p = {problem.n_params};  L(θ) = {loss0:.10g}")
    pol = report.get("polish") or {}
    if pol.get("theta") is not None:
        subtitle += f"  (the polished point, {_num(pol.get('distance'))} from the given one)"
    caption = _wrap(report.get("reason") or "", 170, 2)
    ev = _Evaluator(problem)
    if verdict in ("not_stationary", "saddle"):
        sc = _refutation_scene(report, problem, ev, radius, Scene("refutation", title, subtitle, caption, loss0))
    else:
        sc = _minimum_scene(report, problem, ev, radius, Scene("minimum", title, subtitle, caption, loss0))
    if pol.get("theta") is not None:
        _path_panel(report, given, problem.theta, sc)
    return sc


#: the segment from the checkpoint to the polished point is drawn for s in this range (0 and 1 its ends)
PATH_RANGE = (-0.25, 1.25)


def _path_panel(report: dict, given: Problem, theta_end: np.ndarray, sc: Scene, points: int = 121) -> None:
    """A polished report's third panel: the loss on the straight line from the checkpoint (s = 0) to the
    polished point (s = 1), a little beyond both (the picture of Goodfellow, Vinyals and Saxe, 2015,
    "Qualitatively characterizing neural network optimization problems"): whether the checkpoint sits in
    the polished point's basin along the segment, or a barrier lies between them (the polish itself
    never goes up; its path is not this segment)."""
    theta0 = given.theta
    delta = np.asarray(theta_end, dtype=np.float64) - theta0
    s = np.unique(np.concatenate([np.linspace(*PATH_RANGE, points), [0.0, 1.0]]))
    values = _Evaluator(given)([delta], s[:, None]) if np.any(delta) else np.full(s.shape, given.value())
    sc.path_s, sc.path_values = s, values
    inside = values[(s >= 0.0) & (s <= 1.0)]
    ends = max(values[s == 0.0][0], values[s == 1.0][0])
    sc.path_barrier = float(np.max(inside) - ends) if np.all(np.isfinite(inside)) else None
    trained = report.get("trained") or {}
    pol = report.get("polish") or {}
    dist, rel = pol.get("distance"), pol.get("relative_distance")
    sc.path_title = "(c) from the checkpoint (s = 0) to the polished point (s = 1), a straight line"
    sc.path_note = (f"{trained.get('outcome', 'polished')}: moved {_num(dist)}"
                    + (f" ({_num(100 * rel)}% of ‖θ‖)" if isinstance(rel, (int, float)) else "")
                    + f", loss {values[s == 1.0][0] - values[s == 0.0][0]:+.3g}")
    if sc.path_barrier is not None and sc.path_barrier > 0:
        sc.path_note += f"; a barrier of {sc.path_barrier:.3g} on the segment"
    sc.path_end_label = f"polished point ({report.get('verdict')})"


def _refutation_scene(report, problem, ev, radius, sc: Scene) -> Scene:
    ref = report.get("refutation") or {}
    if ref.get("direction") is None or ref.get("step") is None:
        raise CertificateError(f"the {report['verdict']} report has no refuting direction and step to plot")
    d = np.asarray(ref["direction"], dtype=np.float64)
    if d.shape != (problem.n_params,):
        raise CertificateError(f"the report's direction has {d.size} entries; the model has {problem.n_params} "
                               f"parameters")
    e = ref.get("curvature_direction")
    e = np.zeros_like(d) if e is None else np.asarray(e, dtype=np.float64)
    if e.shape != d.shape:
        raise CertificateError(f"the report's curvature direction has {e.size} entries; expected {d.size}")
    curved = bool(np.any(e))
    T = float(ref["step"])
    R = T if radius is None else radius
    theta = problem.theta
    path = "θ + t d + t²/2 e" if curved else "θ + t d"
    t = np.union1d(np.linspace(-R, 2 * R, LINE_POINTS), [0.0] + ([T] if T <= 2 * R else []))
    basis = [d, e] if curved else [d]
    coef = np.column_stack([t, 0.5 * t * t]) if curved else t[:, None]
    values = ev(basis, coef)
    sc.lines.append((t, values, f"L({path})"))
    loss_T = problem.value(theta + T * d + 0.5 * T * T * e)
    dec = ref.get("decrease", sc.loss0 - loss_T)
    bound = ref.get("error_bound")
    sc.step = (T, loss_T, f"verified step t = {T:.3g}: L drops by {_num(dec)}"
               + (f" (error bound {_num(bound, 1)}, {ref.get('method', 'float64')})" if bound is not None else ""))
    sc.step_visible = T <= 2 * R
    norm_inf = float(np.abs(d).max())
    sc.line_xlabel = f"t   (point {path},  ‖d‖∞ = {norm_inf:.3g})"
    if report["verdict"] == "not_stationary":
        sc.line_title = "(a) loss along the refuting direction d"
        slope = ref.get("directional_derivative")
        if isinstance(slope, (int, float)) and not curved:
            back = _one_sided_slope(problem, report, -d)
            tm = t[t >= 0]
            sc.models.append((tm, sc.loss0 + slope * tm, f"first-order model L + t L'(θ; d),  L'(θ; d) = "
                                                          f"{slope:.3g}"))
            if back is not None:
                tn = t[t <= 0]
                sc.models.append((tn, sc.loss0 - back * tn, f"L + |t| L'(θ; −d),  L'(θ; −d) = {back:.3g}"))
    else:
        sc.line_title = "(a) loss along the refuting " + ("curve" if curved else "direction")
        q = ref.get("curvature")
        if isinstance(q, (int, float)):
            qd = float(q) * float(d @ d)
            sc.models.append((t, sc.loss0 + 0.5 * qd * t * t, f"second-order model L + t²/2 q ‖d‖²,  "
                                                                 f"q = {float(q):.3g}"))
    # the slice: d (with its curve) and the flattest direction orthogonal to it
    nd = float(np.linalg.norm(d))
    dirs, how = flat_directions(problem, report, 1, exclude=[d], probe=1.5 * R * nd, evaluator=ev)
    sc.how = how
    sc.slice_title = ("(b) L − L(θ) on the slice θ + s d" + (" + s²/2 e" if curved else "") + " + u v,  ‖v‖₂ = ‖d‖₂")
    sc.slice_xlabel = "s   (along the refutation d)"
    s = np.linspace(-R, 2 * R, GRID)
    if not dirs:
        sc.slice_note = "no direction left orthogonal to d and the symmetry orbits"
        return sc
    v = dirs[0].v * nd
    u = np.linspace(-1.5 * R, 1.5 * R, GRID)
    S, U = np.meshgrid(s, u)
    coef = [S.ravel(), U.ravel()] + ([0.5 * S.ravel() ** 2] if curved else [])
    grid_basis = [d, v] + ([e] if curved else [])
    sc.slice_s, sc.slice_u = s, u
    sc.slice_values = ev(grid_basis, np.column_stack(coef)).reshape(S.shape) - sc.loss0
    sc.slice_ylabel = f"u   (along v ⊥ d: {dirs[0].label})"
    return sc


def _minimum_scene(report, problem, ev, radius, sc: Scene) -> Scene:
    theta = problem.theta
    R0 = radius if radius is not None else 0.1 * max(1.0, float(np.abs(theta).max(initial=0.0)))
    dirs, how = flat_directions(problem, report, 2, exclude=[], probe=R0, evaluator=ev)
    sc.how = how
    sc.legend_title = how
    sc.line_title = "(a) loss along the two flattest directions v1, v2"
    if not dirs:
        sc.slice_note = "every direction is a symmetry direction: the loss is constant near theta"
        return sc
    R = R0
    if radius is None:  # halve until the loss at most doubles at the ends of the range
        allowed = max(abs(sc.loss0), 1e-3)
        for _ in range(30):
            ends = ev([x.v for x in dirs], np.vstack([np.eye(len(dirs)) * R, -np.eye(len(dirs)) * R]))
            if np.max(ends) - sc.loss0 <= allowed:
                break
            R *= 0.5
    t = np.linspace(-R, R, LINE_POINTS)
    for k, x in enumerate(dirs, start=1):
        sc.lines.append((t, ev([x.v], t[:, None]), f"v{k}: {x.label}"))
        if x.curvature is not None:
            sc.models.append((t, sc.loss0 + 0.5 * x.curvature * t * t, f"v{k}: model L + t²/2 v'Hv"))
    sc.line_xlabel = "t   (point θ + t v,  ‖v‖₂ = 1, v ⊥ symmetry orbits)"
    sc.slice_title = "(b) L − L(θ) on the slice θ + s v1 + u v2"
    sc.slice_xlabel = f"s   (along v1: {dirs[0].label})"
    s = np.linspace(-R, R, GRID)
    sc.slice_s = s
    if len(dirs) < 2:
        sc.slice_note = "only one direction is left orthogonal to the symmetry orbits"
        return sc
    S, U = np.meshgrid(s, s)
    sc.slice_u = s
    sc.slice_values = ev([dirs[0].v, dirs[1].v], np.column_stack([S.ravel(), U.ravel()])).reshape(S.shape) \
        - sc.loss0
    sc.slice_ylabel = f"u   (along v2: {dirs[1].label})"
    return sc


def flat_directions(problem: Problem, report: dict, k: int, *, exclude=(), probe: float = 0.1,
                    evaluator=None) -> tuple[list, str]:
    """Up to ``k`` flattest unit directions orthogonal to the symmetry orbits and to ``exclude``.

    Returns ``(directions, how)``; see the module docstring for how they are chosen.
    """
    from scipy import linalg as sla

    from .kinks import find_kinks
    from .secondorder.symmetry import symmetry_basis
    p, n = problem.n_params, problem.n_samples
    fwd = problem.network.forward(problem.X, with_scale=True)
    Q, _ = symmetry_basis(problem, fwd)
    ex = [np.asarray(x, dtype=np.float64) for x in exclude if np.any(x)]
    B = sla.orth(np.column_stack([Q] + [x[:, None] for x in ex])) if (Q.shape[1] or ex) else np.zeros((p, 0))
    free = p - B.shape[1]
    if free <= 0 or k <= 0:
        return [], "no free direction"
    k = min(k, free)
    cheap = n * p * free <= HESSIAN_BUDGET
    cert = (report.get("second_order") or {}).get("certificate") or {}
    if cheap and cert.get("kind") == "critical_cone":
        dirs = _cone_directions(problem, fwd, report, k, ex)
        if dirs:
            return dirs, "least curvature on the critical cone (⊥ symmetry orbits)"
    if cheap and find_kinks(problem, fwd, 0.0).n_total == 0:
        from .tangent import dense_hessian, piece_slopes
        N = sla.null_space(B.T) if B.shape[1] else np.eye(p)
        H = N.T @ dense_hessian(problem, fwd, piece_slopes(problem, fwd), basis=N)
        w, V = np.linalg.eigh(0.5 * (H + H.T))
        dirs = []
        for i in range(k):
            v = N @ V[:, i]
            dirs.append(Direction(_sign(v / np.linalg.norm(v)), f"Hessian eigenvector, λ = {w[i]:.3g}",
                                  float(w[i])))
        return dirs, "smallest eigenvectors of the reduced Hessian (⊥ symmetry orbits)"
    ev = evaluator or _Evaluator(problem)
    rng = np.random.default_rng(0)
    cand = rng.standard_normal((p, max(N_RANDOM, k)))
    cand -= B @ (B.T @ cand)
    chosen = []
    for _ in range(k):
        C = cand - (np.column_stack(chosen) @ (np.column_stack(chosen).T @ cand) if chosen else 0.0)
        norms = np.linalg.norm(C, axis=0)
        keep = norms > 1e-8 * max(norms.max(initial=0.0), 1e-300)
        if not np.any(keep):
            break
        C = C[:, keep] / norms[keep]
        m = C.shape[1]
        rise = ev([C[:, j] for j in range(m)], np.vstack([np.eye(m) * probe, -np.eye(m) * probe]))
        score = np.maximum(rise[:m], rise[m:])
        best = int(np.argmin(score))
        chosen.append(_sign(C[:, best]))
        cand = np.delete(cand[:, keep], best, axis=1)
    how = f"flattest of {N_RANDOM} seeded random directions ⊥ symmetry orbits"
    return [Direction(v, f"random, flattest of {N_RANDOM}") for v in chosen], how


def _cone_directions(problem, fwd, report, k, exclude) -> list:
    """Least-curvature directions on the critical cone, each orthogonal to the ones before."""
    from .exact.structure import structure_for
    from .secondorder.cone import cone_curvature, cone_model
    from .tangent import first_order_model
    fo_cert = (report.get("first_order") or {}).get("certificate") or {}
    if fo_cert.get("kind") != "multipliers":
        return []
    fwd, kinks = structure_for(problem, (report.get("kinks") or {}).get("tolerance"))
    model = first_order_model(problem, fwd, kinks)
    lam = np.asarray(fo_cert.get("lambda", []), dtype=np.float64)
    pis = [np.asarray(x, dtype=np.float64) for x in fo_cert.get("pi", [])]
    try:
        cm = cone_model(problem, fwd, kinks, model, lam, pis)
    except Exception:  # noqa: BLE001 -- a picture falls back to random directions, never fails here
        return []
    if isinstance(cm, str):
        return []
    extra = [x / np.linalg.norm(x) for x in exclude]
    out = []
    for _ in range(k):
        m = dict(cm)
        if extra:
            m["E"] = np.vstack([cm["E"]] + [x[None, :] for x in extra])
        try:
            res = cone_curvature(problem, fwd, m)
        except Exception:  # noqa: BLE001
            break
        if "error" in res or res.get("direction") is None:
            break
        v = np.asarray(res["direction"], dtype=np.float64)
        v = v / np.linalg.norm(v)
        out.append(Direction(v, f"critical cone, curvature {res['q']:.3g}"))
        extra.append(v)
    return out


def _one_sided_slope(problem: Problem, report: dict, d: np.ndarray) -> float | None:
    from .exact.structure import structure_for
    from .tangent import directional_derivative
    try:
        fwd, kinks = structure_for(problem, (report.get("kinks") or {}).get("tolerance"))
        return float(directional_derivative(problem, fwd, kinks, d))
    except Exception:  # noqa: BLE001 -- the model line is a decoration
        return None


class _Evaluator:
    """``L(theta + sum_j c_kj u_j)`` for many coefficient rows ``c_k`` at once.

    Layer 1 is affine in the coefficients, so its pre-activations are a combination of a few
    precomputed matrices; deeper layers stack the batch into one matrix product per layer. The
    result is checked against :meth:`Problem.value` at ``theta``; on any disagreement (or error) the
    points are evaluated one by one with :meth:`Problem.value`.
    """

    def __init__(self, problem: Problem):
        self.problem = problem
        self.loss0 = problem.value()
        self.ok = None

    def __call__(self, basis, coef) -> np.ndarray:
        coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
        basis = [np.asarray(u, dtype=np.float64) for u in basis]
        if self.ok is None:
            try:
                got = self._batched(basis, np.zeros((1, len(basis))))[0]
                self.ok = bool(abs(got - self.loss0) <= 1e-9 * max(abs(self.loss0), 1e-12))
            except Exception:  # noqa: BLE001 -- fall back to the reference evaluation
                self.ok = False
        if self.ok:
            return self._batched(basis, coef)
        theta = self.problem.theta
        U = np.column_stack(basis)
        return np.array([self.problem.value(theta + U @ c) for c in coef])

    def _batched(self, basis, coef) -> np.ndarray:
        pb = self.problem
        net = pb.network
        X, Y = pb.X, pb.Y
        n, m = X.shape[0], len(basis)
        parts = [net.split(u) for u in basis]
        Z1 = X @ net.weights[0].T + net.biases[0]                                   # (n, h1)
        dZ1 = np.stack([X @ P[0][0].T + P[0][1] for P in parts]).reshape(m, -1)     # (m, n h1)
        # layer l > 1: one product with [W_l; U_1l; ...; U_ml] for the whole chunk, then combined
        Ws = [np.vstack([net.weights[l]] + [P[l][0] for P in parts]).T.copy() for l in range(1, net.n_layers)]
        bs = [np.stack([net.biases[l]] + [P[l][1] for P in parts]) for l in range(1, net.n_layers)]
        chunk = max(1, int(_CHUNK_FLOATS // max(n * max(net.widths[1:]), 1)))
        out = np.empty(coef.shape[0])
        for a in range(0, coef.shape[0], chunk):
            c = coef[a:a + chunk]
            kk = c.shape[0]
            z = (c @ dZ1).reshape((kk,) + Z1.shape)
            z += Z1
            c1 = np.hstack([np.ones((kk, 1)), c])                                     # (kk, m + 1)
            for l in range(1, net.n_layers):
                _activate(z, net.activation)
                o = net.weights[l].shape[0]
                prod = (z.reshape(kk * n, -1) @ Ws[l - 1]).reshape(kk, n, m + 1, o)
                prod += bs[l - 1]
                z = np.einsum("kj,knjo->kno", c1, prod, optimize=False)
            F = z.reshape(kk * n, -1)
            vals = pb.loss.values(F, np.concatenate([Y] * kk, axis=0)).reshape(kk, n)
            out[a:a + kk] = vals.mean(axis=1)
        if pb.weight_decay:
            theta = pb.theta
            U = np.column_stack(basis)
            g = U.T @ U
            cross = U.T @ theta
            sq = float(theta @ theta) + 2 * coef @ cross + np.einsum("ki,ij,kj->k", coef, g, coef)
            out = out + 0.5 * pb.weight_decay * sq
        return out


def _activate(z: np.ndarray, act) -> None:
    """``z <- s(z)`` in place (``s_pos z + (s_neg - s_pos) min(z, 0)``)."""
    s_pos, s_neg = act.slopes
    if s_pos == s_neg == 1.0:
        return
    if s_neg == 0.0 and s_pos == 1.0:
        np.maximum(z, 0.0, out=z)
        return
    neg = np.minimum(z, 0.0)
    neg *= s_neg - s_pos
    if s_pos != 1.0:
        z *= s_pos
    z += neg


# ---------------------------------------------------------------------------- drawing
def _matplotlib():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib import ticker
        from matplotlib.colors import TwoSlopeNorm
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("plotting needs `pip install certify[plot]`") from None
    return {"mpl": matplotlib, "Figure": Figure, "Canvas": FigureCanvasAgg, "TwoSlopeNorm": TwoSlopeNorm, "ticker": ticker}


def _draw(mpl, sc: Scene):
    three = sc.path_s is not None
    fig = mpl["Figure"](figsize=(18.5 if three else 12.5, 5.4), dpi=100, layout="constrained")
    mpl["Canvas"](fig)
    if three:
        ax1, ax2, ax3 = fig.subplots(1, 3)
        _draw_path(ax3, sc)
    else:
        ax1, ax2 = fig.subplots(1, 2)
    fig.suptitle(f"{sc.title}\n{sc.subtitle}", fontsize=11)
    if sc.caption:
        fig.text(0.5, 0.005, sc.caption, ha="center", va="bottom", fontsize=8, color="0.3")
        bottom = 0.012 + 0.03 * (sc.caption.count("\n") + 1)
        fig.get_layout_engine().set(rect=(0, bottom, 1, 1 - bottom))
    # (a) the 1-D path
    lo, hi = np.inf, -np.inf
    colors = ["C0", "C2", "C4"]
    for (t, L, label), col in zip(sc.lines, colors):
        ax1.plot(t, L, color=col, lw=2, label=label)
        finite = L[np.isfinite(L)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    for i, (t, L, label) in enumerate(sc.models):
        col = "C1" if sc.kind == "refutation" else colors[min(i, 2)]
        ax1.plot(t, L, color=col, lw=1.2, ls="--", label=label)
    ax1.axhline(sc.loss0, color="0.5", lw=0.8, ls=":")
    ax1.plot([0.0], [sc.loss0], "o", color="k", ms=7, zorder=5, label=f"θ: L = {sc.loss0:.6g}")
    if sc.step is not None:
        T, LT, label = sc.step
        if sc.step_visible:
            ax1.axvline(T, color="C3", lw=0.8, ls=":")
            ax1.plot([T], [LT], "v", color="C3", ms=9, zorder=5, label=label)
            ax1.annotate("", xy=(T, LT), xytext=(T, sc.loss0),
                         arrowprops={"arrowstyle": "->", "color": "C3", "lw": 1.2})
            lo, hi = min(lo, LT), max(hi, LT)
        else:
            ax1.plot([], [], " ", label=label + " (outside the range)")
    if np.isfinite(lo) and np.isfinite(hi):
        pad = 0.08 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 1e-3
        ax1.set_ylim(lo - pad, hi + pad)
    ax1.set_xlabel(sc.line_xlabel, fontsize=9)
    ax1.set_ylabel("training loss L")
    ax1.set_title(sc.line_title, fontsize=10)
    ax1.grid(True, alpha=0.3)
    ax1.legend(fontsize=7.5, loc="best", framealpha=0.9, title=sc.legend_title or None, title_fontsize=7.5)
    ax1.ticklabel_format(axis="y", useOffset=False)
    # (b) the slice
    ax2.set_title(sc.slice_title, fontsize=10)
    if sc.slice_values is None:
        ax2.text(0.5, 0.5, sc.slice_note or "no 2-D slice", ha="center", va="center", transform=ax2.transAxes)
        ax2.set_axis_off()
        return fig
    S, U = np.meshgrid(sc.slice_s, sc.slice_u)
    Z = np.ma.masked_invalid(sc.slice_values)  # an overflow far from theta is left blank
    if Z.count() == 0:
        ax2.text(0.5, 0.5, "the loss is not finite on this slice", ha="center", va="center",
                 transform=ax2.transAxes)
        return fig
    zmin, zmax = float(Z.min()), float(Z.max())
    span = max(zmax - zmin, 1e-300)
    if zmin < -1e-12 * span and zmax > 1e-12 * span:
        norm = mpl["TwoSlopeNorm"](vmin=zmin, vcenter=0.0, vmax=zmax)
        levels = np.unique(np.concatenate([np.linspace(zmin, 0, 11), np.linspace(0, zmax, 11)]))
        cmap = "RdBu_r"
    else:
        norm, levels, cmap = None, np.linspace(zmin, zmax if zmax > zmin else zmin + 1e-12, 21), "viridis"
    cf = ax2.contourf(S, U, Z, levels=levels, cmap=cmap, norm=norm)
    ax2.contour(S, U, Z, levels=levels, colors="k", linewidths=0.3, alpha=0.5)
    if zmin < 0 < zmax:
        ax2.contour(S, U, Z, levels=[0.0], colors="k", linewidths=1.4)
        ax2.plot([], [], color="k", lw=1.4, label="L = L(θ)")
    cb = fig.colorbar(cf, ax=ax2, shrink=0.9)
    cb.set_label("L − L(θ)")
    loc = mpl["ticker"].MaxNLocator(nbins=5)
    ticks = [x for part in ((zmin, min(0.0, zmax)), (max(0.0, zmin), zmax)) if part[1] > part[0]
             for x in loc.tick_values(*part) if part[0] <= x <= part[1]]
    cb.set_ticks(sorted(set(ticks)))
    cb.formatter = mpl["ticker"].FuncFormatter(lambda x, _: f"{x:.3g}")
    cb.update_ticks()
    ax2.xaxis.set_major_locator(mpl["ticker"].MaxNLocator(nbins=6))
    ax2.yaxis.set_major_locator(mpl["ticker"].MaxNLocator(nbins=6))
    if zmax - zmin <= 1e-12 * max(1.0, abs(sc.loss0)):
        ax2.text(0.5, 0.12, f"L is constant on this slice (|L − L(θ)| ≤ {max(abs(zmin), abs(zmax)):.1g})",
                 ha="center", va="center", transform=ax2.transAxes, fontsize=9,
                 bbox={"facecolor": "w", "alpha": 0.85, "edgecolor": "0.6"})
    ax2.plot([0.0], [0.0], "*", color="#ffd000", mec="k", mew=1.0, ms=16, zorder=6, label="θ")
    if sc.step is not None and sc.step_visible:
        T = sc.step[0]
        ax2.annotate("", xy=(T, 0.0), xytext=(0.0, 0.0),
                     arrowprops={"arrowstyle": "->", "color": "C3", "lw": 1.8}, zorder=6)
        ax2.plot([T], [0.0], "v", color="C3", mec="w", ms=10, zorder=7, label="verified step")
    ax2.set_xlabel(_wrap(sc.slice_xlabel, 70, 2), fontsize=9)
    ax2.set_ylabel(_wrap(sc.slice_ylabel, 60, 2), fontsize=9)
    ax2.set_aspect("equal", adjustable="box")
    ax2.legend(fontsize=8, loc="upper right", framealpha=0.9)
    return fig


def _draw_path(ax, sc: Scene) -> None:
    """(c) a polished report: the loss on the segment from the checkpoint to the polished point."""
    s, L = sc.path_s, sc.path_values
    ax.plot(s, L, color="C0", lw=2)
    ax.axvspan(0.0, 1.0, color="0.93", zorder=0)
    L0, L1 = float(L[s == 0.0][0]), float(L[s == 1.0][0])
    ax.plot([0.0], [L0], "o", color="0.3", ms=7, zorder=5, label=f"checkpoint: L = {L0:.6g}")
    ax.plot([1.0], [L1], "*", color="#ffd000", mec="k", ms=14, zorder=6, label=f"{sc.path_end_label}: L = {L1:.6g}")
    finite = L[np.isfinite(L)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        pad = 0.08 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 1e-3
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(_wrap(sc.path_note, 70, 2), fontsize=9)
    ax.set_ylabel("training loss L")
    ax.set_title(sc.path_title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7.5, loc="best", framealpha=0.9)
    ax.ticklabel_format(axis="y", useOffset=False)


def _render(fig, fmt: str) -> bytes:
    """The figure file's bytes; a PNG is reduced to a 256-colour palette (a third of the size, same look)."""
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100)
    data = buf.getvalue()
    if fmt != "png":
        return data
    try:
        from PIL import Image  # a dependency of matplotlib
        with Image.open(io.BytesIO(data)) as im:
            small = im.convert("RGB").quantize(256, method=Image.Quantize.MAXCOVERAGE)
        out = io.BytesIO()
        small.save(out, format="PNG", optimize=True)
        return out.getvalue() if out.tell() < len(data) else data
    except Exception:  # noqa: BLE001 -- the full-colour PNG is fine too
        return data


def _save_atomic(fig, out_path: Path, fmt: str) -> None:
    target = Path(out_path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise InvalidValueError(f"plot output {target} is a directory; expected a file name")
    if not parent.is_dir():
        raise InvalidValueError(f"plot output {target}: directory {parent} does not exist")
    tmp = None
    try:
        data = _render(fig, fmt)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(parent))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a figure is an ordinary file
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise InvalidValueError(f"cannot write plot {target}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------------------- helpers
def _sign(v: np.ndarray) -> np.ndarray:
    """Fix an eigenvector's sign (largest entry positive), so pictures are reproducible."""
    i = int(np.argmax(np.abs(v)))
    return v if v[i] >= 0 else -v


def _num(x, digits: int = 3) -> str:
    return f"{x:.{digits}g}" if isinstance(x, (int, float)) else str(x)


def _wrap(text: str, width: int, lines: int) -> str:
    parts = textwrap.wrap(" ".join(str(text).split()), width)
    if len(parts) > lines:
        parts = parts[:lines]
        parts[-1] = parts[-1][: max(0, width - 3)] + "..."
    return "\n".join(parts)
