"""The smoothing homotopy after a stalled polish against the active-set polish going on, in one run.

    python -m benchmarks.homotopy_phase            # writes results/homotopy_phase.{jsonl,md}

On every checkpoint of the ``trained`` family below :data:`certify.polish.limits.LARGE_P`
parameters (where no L-BFGS first phase runs), from the checkpoint as stored:

* one full-batch loss-and-gradient evaluation, timed (the unit of the ratios);
* the active-set polish (:func:`certify.polish.polish`) for at most :data:`FIRST_S` seconds: where it
  ends and why. Only a polish that stopped short of a KKT point for a reason other than the clock
  (:func:`certify.polish.method._homotopy_worth_it`, what ``check --polish`` runs the homotopy
  after) gives a row;
* from that end point, :func:`certify.polish.homotopy.smoothing_descent` with the budget ``check
  --polish`` gives it at the default ``--time-limit 300`` (30% of the polish's 70%): loss reached,
  time, distance;
* the baseline: the active-set polish restarted from the same end point (nothing held, as the
  judge's restarts do) for the same wall time as the homotopy took.

The ratio that matters is the loss lowered by each in the same time. Times on a shared machine are
noisy: compare within a run.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from .smooth_phase import RESULTS, _problem

#: the first active-set polish gets at most this long (the family's stalls come within a minute)
FIRST_S = 60.0


def measure(inst, budget_s: float = 300.0) -> dict | None:
    from certify.driver import POLISH_SHARE
    from certify.polish import polish
    from certify.polish.homotopy import smoothing_descent
    from certify.polish.method import HOMOTOPY_SHARE, _homotopy_worth_it
    from certify.polish.smooth import _value_and_gradient
    problem = _problem(inst)
    theta0, loss0 = problem.theta, problem.value()
    norm0 = float(np.linalg.norm(theta0))
    t = time.perf_counter()
    for _ in range(3):
        _value_and_gradient(problem, theta0)
    t_grad = (time.perf_counter() - t) / 3
    first = polish(problem, deadline=time.perf_counter() + FIRST_S)
    row = {"instance": inst.id, "p": problem.n_params, "n": problem.n_samples, "loss": problem.loss.name,
           "grad_s": t_grad, "loss_checkpoint": loss0,
           "first_polish": {"loss": first.loss_after, "time_s": first.time_s, "converged": first.converged,
                            "reason": first.reason, "relative_distance": first.distance / norm0}}
    if not _homotopy_worth_it(first, float("inf"), 0.0):
        return row
    stall = problem.at(first.theta)
    share = HOMOTOPY_SHARE * POLISH_SHARE * budget_s
    theta_h, info = smoothing_descent(stall, deadline=time.perf_counter() + share, anchor=theta0)
    base = polish(stall, deadline=time.perf_counter() + info["time_s"], anchor=theta0)
    drop_h, drop_b = first.loss_after - info["loss_after"], first.loss_after - problem.value(base.theta)
    row.update({
        "homotopy": {"loss": info["loss_after"], "stages": len(info["stages"]),
                     "iterations": sum(s["iterations"] for s in info["stages"]), "time_s": info["time_s"],
                     "time_in_gradients": info["time_s"] / t_grad,
                     "relative_distance": float(np.linalg.norm(theta_h - theta0)) / norm0, "stop": info["stop"]},
        "active_set": {"loss": problem.value(base.theta), "rounds": base.rounds, "time_s": base.time_s,
                       "relative_distance": float(np.linalg.norm(base.theta - theta0)) / norm0},
        "decrease_ratio": drop_h / drop_b if drop_b > 0 else float("inf")})
    return row


def main(argv=None) -> int:
    from certify.polish.limits import LARGE_P

    from . import trained as T
    rows = []
    for inst in T.instances(full=True):
        if inst.params.get("variant") != "checkpoint" or T.SPEC[inst.params["checkpoint"]].p >= LARGE_P:
            continue
        row = measure(inst)
        rows.append(row)
        print(json.dumps(row), flush=True)
    (RESULTS / "homotopy_phase.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    stalled = [r for r in rows if "homotopy" in r]
    lines = ["# The smoothing homotopy after a stalled polish against the active-set polish going on",
             "", "`python -m benchmarks.homotopy_phase` (module docstring: what is run). "
             f"{len(stalled)} of the {len(rows)} checkpoints below 5,000 parameters have a first active-set polish "
             f"(at most {FIRST_S:.0f} s) that stops short of a KKT point for a reason other than the clock; "
             "from its end point the homotopy runs, and the active-set polish restarted there gets the wall "
             "time the homotopy took.", "",
             "| checkpoint | p | loss at checkpoint | 1 gradient (s) | first polish: loss | time (s) | homotopy: loss "
             "| time (s) | = gradients | moved / ‖θ‖ | active set, same time: loss | moved / ‖θ‖ | decrease ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in stalled:
        f, h, b = r["first_polish"], r["homotopy"], r["active_set"]
        lines.append(f"| {r['instance'].split('/')[-1]} | {r['p']:,} | {r['loss_checkpoint']:.6g} | {r['grad_s']:.3g} "
                     f"| {f['loss']:.6g} | {f['time_s']:.1f} | {h['loss']:.6g} | {h['time_s']:.1f} "
                     f"| {h['time_in_gradients']:.0f} | {h['relative_distance']:.2f} | {b['loss']:.6g} "
                     f"| {b['relative_distance']:.2f} | {r['decrease_ratio']:.3g} |")
    rest = [r for r in rows if "homotopy" not in r]
    if rest:
        lines += ["", "The others' first polish: " + "; ".join(
            f"{r['instance'].split('/')[-1]} ({'converged' if r['first_polish']['converged'] else r['first_polish']['reason'][:40]})"
            for r in rest) + "."]
    (RESULTS / "homotopy_phase.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
