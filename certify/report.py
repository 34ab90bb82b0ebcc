"""The result of a check: a verdict, the reason, and the data that proves it.

The JSON form (``Report.to_dict``) is versioned (``schema``) and is what ``certify verify`` reads.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCHEMA = "certify.report/1"


class Verdict(str, enum.Enum):
    LOCAL_MIN = "local_min"
    SADDLE = "saddle"
    NOT_STATIONARY = "not_stationary"
    INCONCLUSIVE = "inconclusive"

    @property
    def exit_code(self) -> int:
        return {"local_min": 0, "saddle": 10, "not_stationary": 11, "inconclusive": 20}[self.value]


@dataclass
class Report:
    """What :func:`certify.check` returns.

    Attributes
    ----------
    verdict : Verdict
        ``local_min``, ``saddle``, ``not_stationary`` or ``inconclusive``.
    reason : str
        One sentence: why this verdict (or why none could be reached).
    flags : dict
        ``strict``, ``flat``, ``differentiable``, ``at_kink``, ``global``, ``spurious``, ``method``...
        (a flag is absent or ``None`` when it is unknown).
    problem : dict
        Architecture, activation, loss, weight decay, sizes, loss value, fingerprints.
    kinks : dict
        Counts of unit and loss kinks, the tolerance used, how many were exact zeros.
    first_order : dict
        The first-order decision: method, minimum of ``L'(theta; d)`` over the unit box, tolerance,
        Clarke distance (diagnostic), certificate (multipliers and residual).
    second_order : dict or None
    refutation : dict or None
        For ``not_stationary`` / ``saddle``: the direction (or curve), the step, the directional
        derivative and the verified decrease of the loss.
    polish : dict or None
        With ``polish=True``: the polished point ``theta`` the verdict is about, how far it moved
        from the given point and what the loss did (the given point's fingerprint is kept).
    pruned : dict or None
        When the point has hidden units whose weights are all 0 and the network without them
        (:mod:`certify.prune`) is a certified local minimum while the point itself is not decided: that
        network's widths, the units and its report (re-checked by :func:`certify.verify`).
    solver_calls : list of dict
        Every solver call: kind, status (mapped and raw), objective, bound, time.
    timings : dict
        Seconds spent per stage, and the ratio to one loss-and-gradient evaluation.
    """

    verdict: Verdict
    reason: str
    flags: dict = field(default_factory=dict)
    problem: dict = field(default_factory=dict)
    kinks: dict = field(default_factory=dict)
    first_order: dict = field(default_factory=dict)
    second_order: dict | None = None
    refutation: dict | None = None
    solver_calls: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    version: str = ""
    polish: dict | None = None
    claim: dict | None = None
    trained: dict | None = None
    pruned: dict | None = None

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    @property
    def direction(self) -> np.ndarray | None:
        """The refuting direction ``d`` (flat, theta's order), if there is one."""
        if self.refutation and self.refutation.get("direction") is not None:
            return np.asarray(self.refutation["direction"], dtype=np.float64)
        return None

    def to_dict(self) -> dict:
        return _plain({
            "schema": SCHEMA,
            "certify_version": self.version,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "flags": self.flags,
            "problem": self.problem,
            "kinks": self.kinks,
            "first_order": self.first_order,
            "second_order": self.second_order,
            "refutation": self.refutation,
            "claim": self.claim,
            "trained": self.trained,
            "polish": self.polish,
            "pruned": self.pruned,
            "solver_calls": self.solver_calls,
            "timings": self.timings,
        })

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [f"verdict: {self.verdict.value}"]
        if self.trained:
            lines.append(f"answer:  {self.trained.get('outcome')}: {self.trained.get('summary')}")
        lines.append(f"reason:  {self.reason}")
        p = self.problem
        if p:
            lines.append(f"network: {p.get('widths')} {p.get('activation')}, loss {p.get('loss')}"
                         f" (weight decay {p.get('weight_decay')}), n = {p.get('n_samples')}, p = {p.get('n_params')}")
            lines.append(f"loss:    {p.get('loss_value'):.10g}")
        k = self.kinks
        if k:
            tol = k.get("tolerance")
            how = ("exact zeros (rational arithmetic)" if tol == "exact" else
                   "zero up to the rounding-error bound" if tol is None else f"tolerance {tol:g}")
            snapped = f", {k.get('near')} snapped beyond rounding" if k.get("near") else ""
            held = (self.polish or {}).get("kinks_held") or {}
            if held.get("count") and held["count"] != (k.get("unit_kinks") or 0) + (k.get("loss_kinks") or 0):
                # the polish holds kinks to its own relative tolerance; the checker counts the float point's
                # zeros within its rounding bound: "0 unit, 0 loss" alone read as if nothing were held
                snapped += (f"; the polish held {held['count']} to its tolerance: {held.get('units')} unit, "
                            f"{held.get('loss_ties')} loss ties")
            lines.append(f"kinks:   {k.get('unit_kinks')} unit, {k.get('loss_kinks')} loss ({how}{snapped})")
        fo = self.first_order
        if fo:
            lines.append(f"first order: {fo.get('method')}; min L'(theta; d) over |d|<=1 = "
                         f"{_fmt(fo.get('min_directional_derivative'))}; Clarke distance {_fmt(fo.get('clarke_distance'))}")
        r = self.refutation
        if r:
            if r.get("kind") == "descent_curve":
                lines.append(f"descent: curve theta + t d + t^2/2 e with L = L(theta) + "
                             f"{_fmt(r.get('second_order_coefficient'))} t^2/2 + o(t^2); at t = {_fmt(r.get('step'))} "
                             f"the loss drops by {_fmt(r.get('decrease'))} (error bound {_fmt(r.get('error_bound'))}, "
                             f"{r.get('method')})")
            elif r.get("step") is None:      # a descent direction whose decrease could not be verified
                lines.append(f"descent: L'(theta; d) = {_fmt(r.get('directional_derivative'))}, no verified "
                             f"decrease along it" + (f" ({r['note']})" if r.get("note") else ""))
            else:
                lines.append(f"descent: L'(theta; d) = {_fmt(r.get('directional_derivative'))}, step t = "
                             f"{_fmt(r.get('step'))}, L(theta) - L(theta + t d) = {_fmt(r.get('decrease'))} "
                             f"(error bound {_fmt(r.get('error_bound'))}, {r.get('method')})")
        if self.polish:
            pz = self.polish
            lines.append(f"polished: moved {_fmt(pz.get('distance'))} from the given point, loss change "
                         f"{_fmt(pz.get('loss_change'))} ({pz.get('note') or 'Newton on the kink manifold'}); "
                         f"the verdict is about the polished point")
            sm = pz.get("smooth")
            if sm:
                lines.append(f"         (large network: L-BFGS first, loss {_fmt(sm.get('loss_before'))} -> "
                             f"{_fmt(sm.get('loss_after'))} in {sm.get('iterations')} iterations and "
                             f"{_fmt(sm.get('time_s'))} s, {sm.get('stop')}; then the active-set polish)")
            hm = pz.get("homotopy")
            if hm:
                lines.append(f"         (the active-set method stalled; smoothing homotopy over {len(hm.get('stages') or [])} "
                             f"stage(s): loss {_fmt(hm.get('loss_before'))} -> {_fmt(hm.get('loss_after'))} in "
                             f"{_fmt(hm.get('time_s'))} s, {hm.get('stop')}; then the active-set polish again)")
        if self.timings:
            lines.append(f"time:    {self.timings.get('total_s', 0):.3f} s")
        return "\n".join(lines)


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4g}" if isinstance(x, (int, float)) else str(x)


def _plain(obj):
    """JSON-safe copy: numpy to Python, non-finite floats to strings."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        if np.isfinite(x):
            return x
        return "inf" if x > 0 else "-inf" if x < 0 else "nan"
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def next_steps(report: Report, model: str | None = None, out: str | None = None,
               escaped: str | None = None) -> list[str]:
    """What a user can do next, given the verdict (used by the CLI's readable output; ``escaped``: the
    ``--escape`` file already written, which the steps then point to instead of suggesting the flag)."""
    m = model or "MODEL"
    v = report.verdict.value
    steps = []
    if out:
        steps.append(f"re-check the certificate without any solver: certify verify {out} {m}")
    if v == "local_min":
        if report.flags.get("strict") is False or report.flags.get("flat_directions"):
            steps.append("the minimum is not strict: it lies in a valley of equal loss (see second_order)")
        if report.flags.get("global") is None:
            steps.append("global optimality is unknown: a lower point may exist elsewhere")
    elif v in ("saddle", "not_stationary"):
        escape = (report.trained or {}).get("escape") or {}
        if escape.get("visible") is False:
            # (trained_answer: an exact descent whose decrease float64 cannot show at any step along it)
            steps.append("the verified descent does not lower the float64 loss at any step along it: resuming "
                         "training there gains nothing; keep training from the checkpoint, or polish with a "
                         "larger --time-limit")
        elif (report.trained or {}).get("end_certified") is False and v == "saddle":
            # (trained_answer: a "saddle" whose descent lives within rounding distance of the point)
            steps.append("the descent found stays within rounding distance of the polished point (a kink next "
                         "to it): keep training from the checkpoint, or polish with a larger --time-limit")
        elif escaped:
            steps.append(f"resume training from the verified lower point written to {escaped}")
        else:
            steps.append(f"resume training from the verified lower point: certify check {m} ... --escape better.npz")
        if v == "not_stationary" and not report.polish:
            steps.append("a trained checkpoint is never exactly stationary: add --polish to certify a nearby point")
    else:
        reason = report.reason
        if not report.polish and (report.flags.get("approximate") or "rounding" in reason):
            steps.append("kinks are only near zero: try --polish, or a looser --tol")
        if "MILP" in reason or "stopped" in reason:
            steps.append("a solver budget ran out: raise --time-limit")
        if "higher order" in reason or "singular" in reason or "curvature 0" in reason:
            steps.append("second order is not decisive here: the point may be a degenerate minimum or a "
                         "higher-order saddle")
    pruned = report.pruned or {}
    if v != "local_min" and pruned.get("verdict") == "local_min":
        # (driver._pruned_stage: the network without its all-zero units, certified; verify re-checks it)
        steps.append(f"the network without its {len(pruned.get('units') or [])} all-zero unit(s) (widths "
                     f"{pruned.get('widths')}) is a certified local minimum (the report's 'pruned' section; "
                     f"certify verify re-checks it): what stays open is only whether a zero unit can regrow")
    return steps


def _wrap(line: str, width: int) -> list[str]:
    """``line`` wrapped to ``width`` columns, continuation lines indented under its text: after the
    label (``reason:  ``) or the bullet (``  - ``); never shorter than 40 columns of text."""
    import re
    import textwrap
    head = re.match(r"^(\s*- |[a-z][a-z ]*:\s+)", line)
    indent = " " * (len(head.group(1)) if head and len(head.group(1)) <= 12 else 4)
    if len(line) <= width:
        return [line]
    return textwrap.wrap(line, width=max(width, len(indent) + 40), subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [line]


def render(report: Report, *, model: str | None = None, out: str | None = None, escaped: str | None = None,
           escape_file: str | None = None, color: bool = False, width: int | None = None) -> str:
    """One screen for a person: verdict, why, key numbers, what to do next (``escaped``: the CLI's line
    on the ``--escape`` file it wrote, ``escape_file`` its name). ``width``: wrap the lines to this many
    columns, continuing under their text (the CLI passes the terminal's width when stdout is one: a
    collapsed-unit reason runs to 2,000 characters); None leaves each line whole, for pipes and files."""
    lines = report.summary().splitlines()
    if escaped:
        lines.append(f"escape:  {escaped}")
    steps = next_steps(report, model, out, escape_file)
    if steps:
        lines.append("next:")
        lines += [f"  - {s}" for s in steps]
    if width:
        lines = [wrapped for line in lines for wrapped in _wrap(line, width)]
    text = "\n".join(lines)
    if color:
        mark = {"local_min": "\x1b[1;32m", "saddle": "\x1b[1;33m", "not_stationary": "\x1b[1;33m",
                "inconclusive": "\x1b[1;36m"}[report.verdict.value]
        text = text.replace(f"verdict: {report.verdict.value}", f"verdict: {mark}{report.verdict.value}\x1b[0m", 1)
    return text
