"""Does every check end within its budget? ``certify.check(..., polish=True)`` on the trained family at
short budgets, wall time against the limit.

    python -m benchmarks.budgets                       # 5 and 20 s, all 28 checkpoints (~10 min; needs torch)
    python -m benchmarks.budgets --limits 60 --only digits_ce_big_sgd --out results/budgets.jsonl

``--time-limit`` bounds the whole command (the README's *never a hang*). A short budget cuts every
stage at an arbitrary point, which is where a loop without a deadline shows: the exact construction
near a polished point (fraction-free eliminations) and the nearby proof's first stage each ran for
minutes past a budget before they read it. The time measured here is that of ``certify.check`` on the
loaded arrays (loading is outside it); each run's overrun past its limit is at most one step that reads no
deadline (a forward pass in extended precision, a pivoted QR, one HiGHS call). One line per run:
checkpoint, p, limit, seconds, verdict, and ``over`` = seconds / limit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import certify
from certify.errors import AssumedActivationWarning

from .trained import SPEC, load_checkpoint, load_dataset


def run(name: str, limit: float) -> dict:
    """One ``certify.check(..., polish=True, time_limit=limit)`` of the trained checkpoint ``name``."""
    spec = SPEC[name]
    layers, _ = load_checkpoint(spec)
    X, y = load_dataset(spec.data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AssumedActivationWarning)
        t0 = time.perf_counter()
        report = certify.check(layers, X, y, activation=spec.activation, loss=spec.loss,
                               weight_decay=spec.weight_decay, time_limit=limit, polish=True)
        seconds = time.perf_counter() - t0
    return {"name": name, "p": report.problem.get("n_params"), "limit_s": limit, "seconds": round(seconds, 3),
            "over": round(seconds / limit, 3), "verdict": report.verdict.value,
            "outcome": (report.trained or {}).get("outcome")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.budgets", description=__doc__.splitlines()[0])
    ap.add_argument("--limits", type=float, nargs="+", default=[5.0, 20.0], help="budgets in seconds (default 5 20)")
    ap.add_argument("--only", nargs="+", default=None, help="checkpoint names (default: the whole trained family)")
    ap.add_argument("--out", help="append one JSON line per run to this file")
    args = ap.parse_args(argv)
    names = args.only or list(SPEC)
    unknown = [n for n in names if n not in SPEC]
    if unknown:
        sys.stderr.write(f"benchmarks.budgets: error: unknown checkpoint {unknown[0]!r}; expected one of the "
                         f"trained family ({', '.join(SPEC)})\n")
        return 2
    worst = 0.0
    for limit in args.limits:
        for name in names:
            row = run(name, limit)
            worst = max(worst, row["seconds"] - limit)
            print(f"{name:28s} p={row['p']:>7} limit {limit:6.1f} s  took {row['seconds']:8.2f} s  "
                  f"({row['over']:.2f}x)  {row['verdict']}", flush=True)
            if args.out:
                with Path(args.out).open("a") as f:
                    f.write(json.dumps(row) + "\n")
    print(f"largest overrun past a limit: {max(worst, 0.0):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
