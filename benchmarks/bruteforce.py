"""Brute-force cross-check of certify against an enumeration oracle: ``python -m benchmarks.bruteforce``.

Random tiny one-hidden-layer, scalar-output networks (``tests.bruteforce.random_instance``) at
constructed points with exact kinks (pre-activations exactly 0, hinge margins exactly 1, absolute
residuals exactly 0; dyadic numbers, so float64 holds them exactly) are decided twice:

* by ``certify.check``;
* by ``tests.bruteforce.oracle``, which never uses certify: it enumerates all ``2^K`` pieces of
  ``L'(theta; .)`` (K <= 10 active kinks), solves one LP per piece and proves every answer in
  exact rational arithmetic (a descent direction with exact ``L' < 0`` and an exact decrease, or
  an exact Farkas certificate per piece; REFERENCES.md A4.5-1 turns d-stationarity into local
  minimality when every output weight is non-zero; zero output weights are decided by an exact
  escape search or left ``unsure``).

Rules (a "disagreement" must never happen):

* certify ``local_min`` vs oracle ``not_stationary`` / ``saddle``: disagreement (unsound minimum);
* certify ``not_stationary`` / ``saddle`` vs oracle ``local_min``: disagreement;
* certify ``saddle`` vs oracle ``not_stationary`` and certify ``not_stationary`` vs an oracle
  proof of d-stationarity: disagreement (wrong first-order claim);
* certify ``inconclusive``: counted, not a disagreement; oracle ``unsure``: counted, excluded;
* every certify refutation must be ``verified`` and its stored point must have an exactly lower
  loss (``tests.exact``); every certify ``local_min`` must pass ``certify.verify``. A failure is
  counted with the disagreements.

Every disagreement is printed as ``Instance.from_dict({...})`` (paste it into a regression test).
A summary JSON line is appended to ``benchmarks/results/bruteforce.jsonl``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import functools
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.seeded import map_seeds

BENCHMARK = "bruteforce"
RESULTS = Path(__file__).resolve().parent / "results" / "bruteforce.jsonl"
VERDICTS = ("local_min", "saddle", "not_stationary", "inconclusive")
ORACLE = ("local_min", "saddle", "not_stationary", "unsure")


def _git_commit():
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "certify"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None, None
        return sha.stdout.strip(), bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def run_one(seed: int, zero_output=None) -> dict:
    """Generate, decide and compare one instance; a plain dict (picklable, JSON-friendly)."""
    from tests import bruteforce as bf

    t0 = time.perf_counter()
    inst = bf.random_instance(seed, zero_output=zero_output)
    gen_s = time.perf_counter() - t0
    cmp = bf.compare(inst)
    o = cmp.oracle
    return {"seed": seed, "family": inst.family, "loss": inst.loss,
            "activation": bf.activation_spec(inst.activation), "m": inst.m, "dx": inst.dx,
            "n": inst.n, "n_kinks": o.n_kinks, "oracle": o.verdict, "oracle_reason": o.reason,
            "output_space_min": bool(o.output_space_min), "zero_output": bool(o.zero_units),
            "certify": cmp.certify_verdict, "problems": cmp.problems, "notes": cmp.notes,
            "instance": inst.to_dict(), "source": inst.source(), "oracle_s": cmp.seconds_oracle,
            "certify_s": cmp.seconds_certify, "generate_s": gen_s}


def summarize(rows: list) -> dict:
    matrix = collections.Counter((r["certify"], r["oracle"]) for r in rows)
    decided = [r for r in rows if r["oracle"] != "unsure"]
    disagreements = [r for r in rows if r["problems"]]
    agreements = [r for r in decided if not r["problems"] and r["certify"] != "inconclusive"]
    by_loss = collections.Counter((r["loss"], r["oracle"]) for r in rows)
    by_kinks = collections.Counter(r["n_kinks"] for r in rows)
    return {
        "n": len(rows),
        "agreements": len(agreements),
        "disagreements": len(disagreements),
        "certify_inconclusive": sum(r["certify"] == "inconclusive" for r in rows),
        "certify_inconclusive_on_decided": sum(r["certify"] == "inconclusive" for r in decided),
        "oracle_unsure": len(rows) - len(decided),
        "oracle": dict(collections.Counter(r["oracle"] for r in rows)),
        "certify": dict(collections.Counter(r["certify"] for r in rows)),
        "matrix": {f"{c}|{o}": k for (c, o), k in sorted(matrix.items())},
        "by_loss": {f"{l}|{o}": k for (l, o), k in sorted(by_loss.items())},
        "kinks": {str(k): v for k, v in sorted(by_kinks.items())},
        "notes": sum(bool(r["notes"]) for r in rows),
        "local_min_share": round(sum(r["oracle"] == "local_min" for r in rows) / max(len(rows), 1), 4),
        "local_min_output_space": sum(r["oracle"] == "local_min" and r["output_space_min"] for r in rows),
        "zero_output_instances": sum(r["zero_output"] for r in rows),
        "oracle_s": round(sum(r["oracle_s"] for r in rows), 3),
        "certify_s": round(sum(r["certify_s"] for r in rows), 3),
        "generate_s": round(sum(r["generate_s"] for r in rows), 3),
        "certify_max_s": round(max((r["certify_s"] for r in rows), default=0.0), 3),
        "disagreement_seeds": [r["seed"] for r in disagreements],
    }


def _table(summary: dict) -> str:
    lines = ["| certify \\ oracle | " + " | ".join(ORACLE) + " |",
             "|---|" + "---:|" * len(ORACLE)]
    for c in VERDICTS:
        cells = [str(summary["matrix"].get(f"{c}|{o}", 0)) for o in ORACLE]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bruteforce",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="number of instances (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (instances seed..seed+n-1)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON-lines file ({RESULTS})")
    parser.add_argument("--no-write", action="store_true", help="print only, append nothing")
    parser.add_argument("--show-notes", action="store_true", help="print every note")
    parser.add_argument("--zero-output", action="store_true",
                        help="every instance gets a zero output weight (stress run of that path)")
    args = parser.parse_args(argv)
    seeds = range(args.seed, args.seed + args.n)
    job = functools.partial(run_one, zero_output=True if args.zero_output else None)
    t_start = time.perf_counter()
    rows = map_seeds(job, seeds, args.jobs, chunksize=8)
    wall = time.perf_counter() - t_start
    summary = summarize(rows)
    for r in rows:
        if r["problems"]:
            print(f"\nDISAGREEMENT seed {r['seed']} ({r['family']}): certify {r['certify']}, "
                  f"oracle {r['oracle']} -- {r['oracle_reason']}")
            for p in r["problems"]:
                print(f"  - {p}")
            print(f"  {r['source']}")
    if args.show_notes:
        for r in rows:
            for note in r["notes"]:
                print(f"note seed {r['seed']} ({r['family']}, certify {r['certify']}, oracle "
                      f"{r['oracle']}): {note}")
    commit, dirty = _git_commit()
    print(f"\n## brute-force cross-check: seeds {args.seed}..{args.seed + args.n - 1}, "
          f"commit {commit}{' + uncommitted changes in certify/' if dirty else ''}, "
          f"{wall:.1f} s wall ({args.jobs} job(s))\n")
    print(_table(summary))
    print(f"\nagreements {summary['agreements']}, disagreements {summary['disagreements']}, "
          f"certify inconclusive {summary['certify_inconclusive']} "
          f"({summary['certify_inconclusive_on_decided']} on oracle-decided instances), "
          f"oracle unsure {summary['oracle_unsure']}; oracle local_min share "
          f"{summary['local_min_share']:.0%} ({summary['local_min_output_space']} of them global in "
          f"output space); instances with a zero output weight {summary['zero_output_instances']}; "
          f"instances with notes {summary['notes']}")
    print(f"time: oracle {summary['oracle_s']:.1f} s, certify {summary['certify_s']:.1f} s "
          f"(max {summary['certify_max_s']:.2f} s per instance), generator {summary['generate_s']:.1f} s")
    print("kinks per instance: " + ", ".join(f"{k}: {v}" for k, v in summary["kinks"].items()))
    record = {"benchmark": BENCHMARK, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "commit": commit, "dirty": dirty, "seed": args.seed, "jobs": args.jobs,
              "zero_output_only": bool(args.zero_output),
              "wall_s": round(wall, 2), "python": platform.python_version(), **summary}
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        print(f"summary appended to {args.out}")
    return 1 if summary["disagreements"] else 0


if __name__ == "__main__":
    sys.exit(main())
