"""Numerical evidence for the dual bound at one-hidden-layer trained points with collapsed units.

    python -m benchmarks.dual_bound wine_ce_wd_adam          # needs torch (the .pt checkpoint)
    python -m benchmarks.dual_bound wine_ce_wd_adam --samples 200000 --out results/dual_bound.jsonl

A point of a one-hidden-layer network under weight decay with a convex, differentiable loss
(square, logistic, cross-entropy) is a *global* minimum over networks of every width when, with
``g_i`` the loss gradient at sample ``i``'s output and ``h(s) = (1/n) sum_i g_i relu(s . xbar_i)``
(``xbar_i = (x_i, 1)``), ``||h(s)|| <= lambda ||s||`` for every ``s`` and the point is stationary (the
README, *Collapsed units under weight decay*, gives the two-line argument). A local minimum with an
all-zero unit satisfies the bound, so there the two coincide, and deciding such a point is deciding
the bound: a maximum over the whole sphere of the inputs, which certify does not compute.

This script measures, at the point ``certify check --polish`` ends at (from the stored checkpoint, the
default budget), the ratio ``||h(s)|| / (lambda ||s||)``:

* over ``--samples`` Gaussian random directions ``s`` (seeded);
* near each active unit's own direction ``s_k`` (where it is exactly 1 at a stationary point, the
  flat valley of splitting that unit): the largest over 3,000 random directions at angles of about
  0.1, 0.01 and 0.001 from ``s_k``.

It is evidence, not a proof: a sampled maximum below 1 says no direction *found* regrows a collapsed
unit. Nothing here enters a verdict.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import certify
from certify.data import Problem

from .trained import DATASET_DIR, SPEC, load_checkpoint

SMOOTH_LOSSES = ("square", "logistic", "cross_entropy")
NEAR = (1e-1, 1e-2, 1e-3)


def ratios(problem: Problem, *, samples: int = 200_000, near: int = 3000, seed: int = 0) -> dict:
    """``||h(s)|| / (lambda ||s||)`` at ``problem``'s point: the largest over random directions, and near
    each active unit's direction (module docstring)."""
    net = problem.network
    if net.n_layers != 2 or problem.loss.name not in SMOOTH_LOSSES or not problem.weight_decay > 0:
        raise ValueError("the bound is for one hidden layer, a differentiable loss and weight decay > 0; got "
                         f"widths {list(net.widths)}, loss {problem.loss.name}, weight decay {problem.weight_decay}")
    lam = problem.weight_decay
    X = problem.X
    n = X.shape[0]
    fwd = net.forward(X)
    G = np.asarray(problem.loss.gradient(fwd.output, problem.Y), dtype=np.float64).reshape(n, -1) / n
    Xb = np.hstack([X, np.ones((n, 1))])

    def ratio(S):                                   # rows of S are directions
        H = np.maximum(S @ Xb.T, 0.0) @ G           # (k, C): h(s) for each row
        return np.linalg.norm(H, axis=1) / (lam * np.linalg.norm(S, axis=1))

    rng = np.random.default_rng(seed)
    best = 0.0
    for start in range(0, samples, 10_000):
        best = max(best, float(ratio(rng.normal(size=(min(10_000, samples - start), Xb.shape[1]))).max()))
    W, b = net.weights[0], net.biases[0]
    units = []
    for k in range(W.shape[0]):
        s = np.r_[W[k], b[k]]
        if not np.any(s) or not np.any(net.weights[1][:, k]):
            continue
        sh = s / np.linalg.norm(s)
        row = {"unit": k, "at": float(ratio(sh[None])[0])}
        for eps in NEAR:
            Wd = rng.normal(size=(near, sh.size))
            Wd -= np.outer(Wd @ sh, sh)
            Wd /= np.linalg.norm(Wd, axis=1, keepdims=True)
            row[f"near_{eps:g}"] = float(ratio(sh[None] + eps * Wd).max())
        units.append(row)
    collapsed = [k for k in range(W.shape[0]) if not np.any(W[k]) and not b[k] and not np.any(net.weights[1][:, k])]
    return {"random_max": best, "samples": samples, "units": units, "collapsed_units": collapsed,
            "near_max": {f"{eps:g}": max((u[f"near_{eps:g}"] for u in units), default=None) for eps in NEAR}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dual_bound", description=__doc__.splitlines()[0])
    ap.add_argument("name", help="a trained-family checkpoint with one hidden layer, e.g. wine_ce_wd_adam")
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=300.0, help="for the polish (default 300, check's)")
    ap.add_argument("--out", help="append the result as one JSON line")
    args = ap.parse_args(argv)
    if args.name not in SPEC:
        print(f"dual_bound: no trained checkpoint named {args.name!r}", file=sys.stderr)
        return 2
    spec = SPEC[args.name]
    layers, _ = load_checkpoint(spec)
    with np.load(DATASET_DIR / f"{spec.data}.npz", allow_pickle=False) as f:
        data = certify.Dataset(np.array(f["X"]), np.array(f["y"]))
    net = certify.Network([W for W, _ in layers], [b for _, b in layers], spec.activation)
    t0 = time.perf_counter()
    report = certify.check(net, data=data, loss=spec.loss, weight_decay=spec.weight_decay, polish=True,
                           time_limit=args.time_limit)
    theta = np.asarray(report.polish["theta"], dtype=np.float64)
    problem = Problem(net.with_theta(theta), data, spec.loss, spec.weight_decay)
    try:
        out = ratios(problem, samples=args.samples, seed=args.seed)
    except ValueError as exc:
        print(f"dual_bound: {exc}", file=sys.stderr)
        return 2
    out = {"name": args.name, "verdict": report.verdict.value, "outcome": (report.trained or {}).get("outcome"),
           "polish_distance": report.polish.get("distance"), "seconds": round(time.perf_counter() - t0, 1), **out}
    print(f"{args.name}: polished point {out['verdict']} ({out['outcome']}); collapsed units "
          f"{out['collapsed_units']}; max ||h(s)|| / (lambda ||s||) over {args.samples} random directions "
          f"{out['random_max']:.6f}; near the {len(out['units'])} active units' directions (0.1, 0.01, 0.001): "
          + ", ".join(f"{v:.9f}" for v in out["near_max"].values()))
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
