"""The polish's L-BFGS first phase against the active-set polish alone, in one run.

    python -m benchmarks.smooth_phase              # writes results/smooth_phase.{jsonl,md}

On every checkpoint of the ``trained`` family with at least
:data:`certify.polish.limits.LARGE_P` parameters (where ``check --polish`` runs the phase), from
the checkpoint as stored:

* one full-batch loss-and-gradient evaluation, timed (the unit of the ratios);
* :func:`certify.polish.smooth.smooth_descent` with the budget ``check --polish`` gives it at the
  default ``--time-limit 300`` (40% of the polish's 70%): loss reached, iterations, time, distance;
* the baseline: the active-set polish (:func:`certify.polish.polish`, no smooth phase) from the same
  checkpoint for the same wall time as the L-BFGS phase took: loss reached, distance.

The ratio that matters is the loss lowered by each in the same time. Times on a shared machine are
noisy: compare within a run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _problem(inst):
    from certify.data import Dataset, Problem
    from certify.loaders import as_network
    d = inst.make()
    return Problem(as_network(d["network"], d["activation"]), Dataset(d["X"], d["y"]), d["loss"], d["weight_decay"])


def measure(inst, budget_s: float = 300.0) -> dict:
    from certify.driver import POLISH_SHARE
    from certify.polish import polish
    from certify.polish.smooth import SMOOTH_SHARE, _value_and_gradient, smooth_descent
    problem = _problem(inst)
    theta0, loss0 = problem.theta, problem.value()
    t = time.perf_counter()
    for _ in range(3):
        _value_and_gradient(problem, theta0)
    t_grad = (time.perf_counter() - t) / 3
    share = SMOOTH_SHARE * POLISH_SHARE * budget_s
    theta_s, info = smooth_descent(problem, deadline=time.perf_counter() + share)
    base = polish(problem, deadline=time.perf_counter() + info["time_s"])
    norm0 = float(np.linalg.norm(theta0))
    drop_s, drop_b = loss0 - info["loss_after"], loss0 - base.loss_after
    return {"instance": inst.id, "p": problem.n_params, "n": problem.n_samples, "loss": problem.loss.name,
            "grad_s": t_grad, "loss_checkpoint": loss0,
            "lbfgs": {"loss": info["loss_after"], "iterations": info["iterations"],
                      "evaluations": info["evaluations"], "time_s": info["time_s"],
                      "time_in_gradients": info["time_s"] / t_grad, "relative_distance": info["distance"] / norm0,
                      "stop": info["stop"]},
            "active_set": {"loss": base.loss_after, "rounds": base.rounds, "time_s": base.time_s,
                           "relative_distance": base.distance / norm0},
            "decrease_ratio": drop_s / drop_b if drop_b > 0 else float("inf")}


def main(argv=None) -> int:
    from certify.polish.limits import LARGE_P

    from . import trained as T
    rows = []
    for inst in T.instances(full=True):
        if inst.params.get("variant") != "checkpoint" or T.SPEC[inst.params["checkpoint"]].p < LARGE_P:
            continue
        row = measure(inst)
        rows.append(row)
        print(json.dumps(row), flush=True)
    (RESULTS / "smooth_phase.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = ["# The polish's L-BFGS first phase against the active-set polish alone",
             "", "`python -m benchmarks.smooth_phase` (module docstring: what is run). Both start at the checkpoint; "
             "the active-set polish gets the wall time the L-BFGS phase took.", "",
             "| checkpoint | p | loss at checkpoint | 1 gradient (s) | L-BFGS: loss | iterations | time (s) "
             "| = gradients | moved / ‖θ‖ | active set alone, same time: loss | moved / ‖θ‖ | decrease ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s, b = r["lbfgs"], r["active_set"]
        lines.append(f"| {r['instance'].split('/')[-1]} | {r['p']:,} | {r['loss_checkpoint']:.6g} | {r['grad_s']:.3g} "
                     f"| {s['loss']:.6g} | {s['iterations']} | {s['time_s']:.1f} | {s['time_in_gradients']:.0f} "
                     f"| {s['relative_distance']:.2f} | {b['loss']:.6g} | {b['relative_distance']:.2f} "
                     f"| {r['decrease_ratio']:.3g} |")
    (RESULTS / "smooth_phase.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
