"""Benchmark of certify's first-order stage: ``python -m benchmarks.first_order [--quick]``.

Measurements, all taken in one run on one machine and reported as ratios where absolute times would
not compare across machines:

1. ``smooth``: the whole ``certify.check(...)`` call on a not-stationary smooth point with
   p ~ 1e5 parameters and n = 1e4 samples, with 1 and with 10 outputs, divided by ONE loss-and-gradient
   pass. Two baselines are timed (best of 3 before and 3 after the checks): ``numpy_pass`` -- one
   forward and one backward pass written out in plain numpy here (independent of certify; target
   ratio <= 5) -- and the older ``loss_and_gradient`` (certify's ``loss_gradient`` plus
   ``problem.value()``, which runs the forward pass twice). The split of the check time (the
   report's ``timings``) is reported too.
2. ``lp``: the first-order decision with K = 1,000 exactly active convex hinge kinks at a point with
   a descent direction (target < 10 s), plus d-stationary points (K = 250 by default; K = 1,000 with
   ``--heavy``).
3. ``milp``: 50 concave unit kinks whose rows are linearly dependent (LIKQ fails), target < 60 s; a
   ``descent`` variant and two ``stationary`` ones (each concave kink shares its row with a stronger
   convex kink: merged, no branching is needed).
4. ``mixed``: 900 hinge margins exactly at 1 and 700 convex unit kinks, leaky ReLU, p = 2,497,
   n = 4,800, an exact local minimum (:func:`benchmarks.instances.mixed_hinge_unit_kinks`); target:
   first and second order together in < 10 s.

Every measurement is appended as one JSON line to ``benchmarks/results/first_order.jsonl``, and a
markdown table is printed. ``--quick`` runs smaller sizes in well under a minute.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import instances

BENCHMARK = "first_order"
RESULTS = Path(__file__).resolve().parent / "results" / "first_order.jsonl"

#: the instances of each mode: (group, generator, arguments, whether the group's target applies)
PLANS = {
    "full": [
        ("smooth", "random_smooth", {"n": 10_000, "widths": (100, 1000, 1)}, True),
        ("smooth", "random_smooth", {"n": 10_000, "widths": (90, 1000, 10)}, True),
        ("mixed", "mixed_hinge_unit_kinks", {"n_hinge": 900, "n_unit": 700, "d": 50, "h": 48, "n": 4800}, True),
        ("lp", "hinge_exact_margins", {"variant": "descent", "n_kinks": 1000, "n": 5000, "d": 50, "h": 100}, True),
        ("lp", "hinge_exact_margins", {"variant": "stationary", "n_kinks": 250, "n": 1250, "d": 50, "h": 100}, False),
        ("lp", "hinge_exact_margins", {"variant": "zero_gradient", "n_kinks": 250, "n": 1250, "d": 50, "h": 100},
         False),
        ("milp", "concave_unit_kinks", {"variant": "descent", "n_concave": 50, "d": 8, "h": 32}, True),
        ("milp", "concave_unit_kinks", {"variant": "stationary", "n_concave": 50, "d": 3, "h": 32}, True),
        ("milp", "concave_unit_kinks", {"variant": "stationary", "n_concave": 50, "d": 4, "h": 8, "seed": 1}, True),
    ],
    "quick": [
        ("smooth", "random_smooth", {"n": 2000, "widths": (50, 200, 1)}, True),
        ("smooth", "random_smooth", {"n": 2000, "widths": (50, 200, 10)}, True),
        ("mixed", "mixed_hinge_unit_kinks", {"n_hinge": 180, "n_unit": 140, "d": 20, "h": 16, "n": 960}, True),
        ("lp", "hinge_exact_margins", {"variant": "descent", "n_kinks": 200, "n": 1000, "d": 20, "h": 40}, True),
        ("lp", "hinge_exact_margins", {"variant": "stationary", "n_kinks": 100, "n": 500, "d": 20, "h": 40}, True),
        ("milp", "concave_unit_kinks", {"variant": "descent", "n_concave": 20, "d": 8, "h": 16}, True),
        ("milp", "concave_unit_kinks", {"variant": "stationary", "n_concave": 20, "d": 3, "h": 16}, True),
    ],
    # d-stationary LPs with K = 1,000: the first-order LP has no time limit in certify, and HiGHS's
    # simplex needs minutes on them (see README.md); run with --heavy
    "heavy": [
        ("lp_heavy", "hinge_exact_margins",
         {"variant": "zero_gradient", "n_kinks": 1000, "n": 5000, "d": 50, "h": 100}, True),
        ("lp_heavy", "hinge_exact_margins",
         {"variant": "stationary", "n_kinks": 1000, "n": 5000, "d": 50, "h": 100}, True),
    ],
}
TARGETS = {"smooth": ("ratio", 5.0), "lp": ("seconds", 10.0), "lp_heavy": ("seconds", 10.0),
           "milp": ("seconds", 60.0), "mixed": ("seconds", 10.0)}
GROUPS = ("smooth", "lp", "milp", "mixed", "lp_heavy")


# ---------------------------------------------------------------------------- context
def _git_commit() -> tuple[str | None, bool | None]:
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        if sha.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "certify"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip(), bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def _machine() -> dict:
    import scipy
    try:
        import highspy
        hv = getattr(highspy, "__version__", None)
        if hv is None:
            h = highspy.Highs()
            hv = f"{h.versionMajor()}.{h.versionMinor()}.{h.versionPatch()}"
    except Exception:  # pragma: no cover - version lookup only
        hv = None
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "highspy": hv, "platform": platform.platform()}


# ---------------------------------------------------------------------------- timing
def time_loss_and_gradient(inst, repeat: int = 3) -> float:
    """Best of ``repeat`` of ``loss_gradient(problem)`` + ``problem.value()`` (one full-batch eval)."""
    from certify.tangent import loss_gradient
    problem = inst.problem()
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        loss_gradient(problem)
        problem.value()
        best = min(best, time.perf_counter() - t0)
    return float(best)


def numpy_pass(weights, biases, X, Y, activation: str = "relu"):
    """One loss-and-gradient pass in plain numpy (square loss, mean over samples): the baseline.

    Forward once, backward once, with each weight gradient formed in the faster BLAS orientation.
    Written here, independent of certify, for the ratio the issue asks for.
    """
    alpha = 0.0 if activation == "relu" else float(activation.split(":")[1])
    xs, zs = [X], []
    x = X
    L = len(weights)
    for l, (W, b) in enumerate(zip(weights, biases), start=1):
        z = x @ W.T
        z += b
        zs.append(z)
        if l < L:
            x = np.maximum(z, alpha * z) if alpha else np.maximum(z, 0.0)
            xs.append(x)
    R = zs[-1] - Y
    n = X.shape[0]
    loss = 0.5 * float(np.einsum("ij,ij->", R, R)) / n
    delta = R / n
    grads = []
    for l in range(L, 0, -1):
        xp = xs[l - 1]
        gW = delta.T @ xp if delta.shape[1] >= xp.shape[1] else (xp.T @ delta).T
        grads.append((gW, delta.sum(axis=0)))
        if l > 1:
            a = delta @ weights[l - 1]
            z = zs[l - 2]
            delta = a * np.where(z >= 0, 1.0, alpha)
    return loss, grads[::-1]


def time_numpy_pass(inst, repeat: int = 3) -> float:
    """Best of ``repeat`` of :func:`numpy_pass` on the instance (square loss instances only)."""
    Y = inst.y.reshape(inst.X.shape[0], -1)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        numpy_pass(inst.weights, inst.biases, inst.X, Y, inst.activation)
        best = min(best, time.perf_counter() - t0)
    return float(best)


def time_check(inst, repeat: int = 1, time_limit: float = 60.0):
    """Best of ``repeat`` whole ``certify.check`` calls; returns (seconds, report of the best run)."""
    import certify
    best, best_report = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        report = certify.check(inst.model(), inst.X, inst.y, time_limit=time_limit, **inst.options())
        elapsed = time.perf_counter() - t0
        if elapsed < best:
            best, best_report = elapsed, report
    return float(best), best_report


def _solver_call(report, prefix: str):
    for call in report.solver_calls:
        if str(call.get("purpose", "")).startswith(prefix):
            return call
    return None


def _expectations(inst, report) -> list[str]:
    """Facts the generator guarantees that the report contradicts (empty: all hold)."""
    bad = []
    exp = inst.expect
    k = report.kinks
    if "unit_kinks" in exp and k.get("unit_kinks") != exp["unit_kinks"]:
        bad.append(f"unit_kinks {k.get('unit_kinks')} != {exp['unit_kinks']}")
    if "loss_kinks" in exp and k.get("loss_kinks") != exp["loss_kinks"]:
        bad.append(f"loss_kinks {k.get('loss_kinks')} != {exp['loss_kinks']}")
    # convex kinks are decided by the LIKQ solve or the min-norm QP when their multipliers re-check,
    # else by the LP; concave kinks sharing rows with convex ones are merged (then the same), nested or
    # lone concave ones by the tree, and only then by the MILP
    allowed = {"lp": ("lp", "qp", "likq"),
               "milp": ("milp", "tree", "likq", "qp", "lp")}.get(exp.get("method"), (exp.get("method"),))
    if "method" in exp and report.first_order.get("method") not in allowed:
        bad.append(f"method {report.first_order.get('method')} != {exp['method']}")
    if exp.get("stationary") and report.first_order.get("stationary") is not True:
        bad.append(f"stationary {report.first_order.get('stationary')} (expected True)")
    if exp.get("stationary") and report.verdict.value == "not_stationary":
        bad.append("WRONG VERDICT: not_stationary at a d-stationary point")
    if exp.get("local_min") and report.verdict.value != "local_min":
        bad.append(f"verdict {report.verdict.value} at an exact local minimum")
    return bad


# ---------------------------------------------------------------------------- one instance
def run_instance(group: str, inst, *, repeat_check: int, time_limit: float, context: dict,
                 target: bool = True) -> list[dict]:
    """Measure one instance: the gradient baseline, the whole check, its stages and solver calls."""
    # the baselines are timed before and after the checks (best of 3 each, the minimum kept), so a
    # burst of load on a shared machine during one of them does not skew the ratio
    smooth = group == "smooth" and inst.loss == "square"
    t_grad_before = time_loss_and_gradient(inst)
    t_pass_before = time_numpy_pass(inst) if smooth else None
    t_check, report = time_check(inst, repeat=repeat_check, time_limit=time_limit)
    t_grad_after = time_loss_and_gradient(inst)
    t_pass_after = time_numpy_pass(inst) if smooth else None
    t_grad = min(t_grad_before, t_grad_after)
    t_pass = min(t_pass_before, t_pass_after) if smooth else None
    kinks = report.kinks
    K = int(kinks.get("unit_kinks", 0)) + int(kinks.get("loss_kinks", 0))
    method = report.first_order.get("method")
    base = {"benchmark": BENCHMARK, "group": group, "instance": inst.name, "p": inst.n_params,
            "n": inst.n_samples, "K": K, "unit_kinks": kinks.get("unit_kinks"),
            "loss_kinks": kinks.get("loss_kinks"), "verdict": report.verdict.value,
            "stationary": report.first_order.get("stationary"), "instance_params": inst.params, **context}
    problems = _expectations(inst, report)

    def rec(measure: str, method_: str | None, seconds: float, **extra) -> dict:
        return {**base, "measure": measure, "method": method_, "time_s": seconds,
                "ratio_to_grad": seconds / t_grad if t_grad > 0 else None, **extra}

    out = [rec("loss_and_gradient", "loss_gradient+value", t_grad, repeat=6,
               before_s=t_grad_before, after_s=t_grad_after)]
    if t_pass is not None:
        out.append(rec("numpy_pass", "numpy forward+backward", t_pass, repeat=6, before_s=t_pass_before,
                       after_s=t_pass_after, ratio_to_pass=1.0))
    kind, limit = TARGETS[group]
    fo_cert = (report.first_order or {}).get("certificate") or {}
    check_extra = {"repeat": repeat_check, "timings": report.timings,
                   "outside_check_problem_s": t_check - report.timings.get("total_s", 0.0),
                   "expectations_failed": problems, "reason": report.reason,
                   "first_order_certificate": fo_cert.get("kind"),
                   "tree_leaves": fo_cert.get("n_leaves"), "tree_nodes": fo_cert.get("n_nodes")}
    if t_pass is not None:
        check_extra["ratio_to_pass"] = t_check / t_pass
    if kind == "ratio" and target:
        baseline = t_pass if t_pass is not None else t_grad
        check_extra.update(target=f"ratio <= {limit:g} (to one numpy pass)", meets_target=t_check / baseline <= limit)
    if group == "mixed" and target:
        check_extra.update(target=f"< {limit:g} s (first and second order)", meets_target=t_check < limit)
    out.append(rec("check", method, t_check, **check_extra))
    for stage, seconds in report.timings.items():
        if stage != "total_s" and isinstance(seconds, (int, float)):
            extra = {}
            if stage == "first_order_s" and group in ("lp", "lp_heavy") and target:
                # the target is on the convex-kink decision, whichever HiGHS program makes it
                extra = {"target": f"< {limit:g} s", "meets_target": float(seconds) < limit}
            out.append(rec(f"stage:{stage.removesuffix('_s')}", method, float(seconds), **extra))
    prefixes = {"lp": "first-order LP", "milp": "first-order MILP", "clarke_qp": "Clarke distance QP"}
    for measure, prefix in prefixes.items():
        call = _solver_call(report, prefix)
        if call is None or call.get("time_s") is None:
            continue
        extra = {k: call.get(k) for k in ("status", "raw_status", "objective", "dual_bound", "mip_gap",
                                          "n_cols", "n_rows", "nnz", "mip_nodes", "n_binary", "big_m_max")
                 if call.get(k) is not None}
        if measure == group.removesuffix("_heavy") and kind == "seconds" and target:
            extra.update(target=f"< {limit:g} s", meets_target=float(call["time_s"]) < limit)
        out.append(rec(f"solver:{measure}", measure, float(call["time_s"]), **extra))
    return out


def build_instances(mode: str, only: set[str], heavy: bool = False) -> list[tuple[str, bool, object]]:
    """``(group, target_applies, factory)`` for every planned instance of the selected groups."""
    plan = PLANS[mode] + PLANS["heavy"]
    todo = []
    for group, generator, kwargs, target in plan:
        if group in only or (heavy and group == "lp_heavy"):
            make = getattr(instances, generator)
            kwargs = {"seed": 0, **kwargs}
            todo.append((group, target, lambda make=make, kwargs=kwargs: make(**kwargs)))
    return todo


# ---------------------------------------------------------------------------- output
def markdown_table(records: list[dict]) -> str:
    head = ("| instance | p | n | K | verdict | method | measure | time (s) | × grad | × numpy pass | solver | target |\n"
            "|---|---:|---:|---:|---|---|---|---:|---:|---:|---|---|")
    lines = [head]
    for r in records:
        if r["measure"].startswith("stage:"):
            continue
        target = ""
        if "target" in r:
            target = f"{r['target']}: {'yes' if r.get('meets_target') else 'NO'}"
        if r.get("expectations_failed"):
            target += (" " if target else "") + "(!) " + "; ".join(r["expectations_failed"])
        ratio = r.get("ratio_to_grad")
        ratio_pass = r.get("ratio_to_pass")
        solver = ""
        if r["measure"].startswith("solver:"):
            solver = str(r.get("raw_status", ""))
            if r.get("mip_nodes") is not None:
                solver += f", {r['mip_nodes']} nodes"
            solver += f", {r.get('n_cols')}x{r.get('n_rows')}"
        lines.append(f"| {r['instance']} | {r['p']} | {r['n']} | {r['K']} | {r['verdict']} | {r['method']} | "
                     f"{r['measure']} | {r['time_s']:.4g} | {ratio:.3g} | "
                     f"{'' if ratio_pass is None else format(ratio_pass, '.3g')} | {solver} | {target} |")
    return "\n".join(lines)


def stage_table(records: list[dict]) -> str:
    checks = [r for r in records if r["measure"] == "check"]
    stages = sorted({k for r in checks for k in r.get("timings", {}) if k != "total_s"})
    head = ("| instance | check (s) | outside check_problem | " + " | ".join(stages) + " |\n"
            "|---|---:|---:|" + "---:|" * len(stages))
    lines = [head]
    for r in checks:
        t = r.get("timings", {})
        cells = [f"{t[s]:.3g}" if s in t else "" for s in stages]
        lines.append(f"| {r['instance']} | {r['time_s']:.3g} | {r['outside_check_problem_s']:.3g} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.first_order", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (under a minute)")
    parser.add_argument("--only", default="smooth,lp,milp,mixed",
                        help="comma-separated subset of smooth,lp,milp,mixed,lp_heavy (default: smooth,lp,milp,mixed)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="whole-check repetitions, best taken (default: 3 for smooth, 1 otherwise)")
    parser.add_argument("--heavy", action="store_true",
                        help="also group lp_heavy: the d-stationary LPs with K = 1000 (each may take minutes)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="MILP time limit passed to check")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON-lines file to append to ({RESULTS})")
    parser.add_argument("--no-write", action="store_true", help="print only, append nothing")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s) {sorted(unknown)}: expected {', '.join(GROUPS)}")
    mode = "quick" if args.quick else "full"
    context_mode = mode + ("+heavy" if args.heavy else "")
    commit, dirty = _git_commit()
    context = {"commit": commit, "dirty": dirty,
               "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "mode": context_mode, "machine": _machine()}
    records = []
    t_start = time.perf_counter()
    for group, target, make in build_instances(mode, only, heavy=args.heavy):
        t0 = time.perf_counter()
        inst = make()
        gen_s = time.perf_counter() - t0
        print(f"[{group}] {inst.describe()} (generated in {gen_s:.2f} s)", file=sys.stderr, flush=True)
        repeat = args.repeat if args.repeat is not None else (3 if group == "smooth" else 1)
        recs = run_instance(group, inst, repeat_check=repeat, time_limit=args.time_limit, context=context,
                            target=target)
        records += recs
        if not args.no_write:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "a", encoding="utf-8") as fh:
                for r in recs:
                    fh.write(json.dumps(r, default=_json_default) + "\n")
    print(f"## first-order benchmark ({context_mode}; commit {commit}{' + uncommitted changes in certify/' if dirty else ''}; "
          f"{context['date']}; {context['machine']['cpus']} CPUs; total {time.perf_counter() - t_start:.1f} s)\n")
    print(markdown_table(records))
    print("\nSplit of the whole check (seconds; `outside check_problem` = input validation and "
          "assembly in `certify.check` before `check_problem` starts):\n")
    print(stage_table(records))
    if not args.no_write:
        print(f"\n{len(records)} records appended to {args.out}")
    failed = [r for r in records if r.get("expectations_failed")]
    return 1 if failed else 0


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


if __name__ == "__main__":
    sys.exit(main())
