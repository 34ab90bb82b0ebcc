"""Deep / multi-output brute-force cross-check of certify: ``python -m benchmarks.bruteforce2``.

Random tiny networks (``tests.bruteforce2.random_instance``: two hidden layers, or one hidden layer
with two outputs; dyadic numbers; kinks planted exactly in both layers, often nested) are decided
twice:

* by ``certify.check`` (with ``--time-limit`` as its budget per solver call / search);
* by ``tests.bruteforce2.oracle``, which never uses certify: exact enumeration of the pieces of
  ``L'(theta; .)`` with exact descent proofs or Farkas certificates, exact second-order
  sufficiency per piece on a slice transverse to the exact invariances, zero loss / output-space /
  affine-fit minima, exact local descent curves for saddles; ``unsure`` otherwise.

Outcomes per instance (``tests.bruteforce2.Comparison.outcome``): ``agree``; ``disagree`` (certify
``local_min`` where the oracle proves descent, a certify refutation where the oracle proves a
minimum, a wrong first-order claim, a refutation whose stored point is not exactly lower, a
certificate ``certify.verify`` rejects -- must be 0); ``certify_inconclusive``; ``oracle_unsure``
(excluded). A summary JSON line is appended to ``benchmarks/results/bruteforce2.jsonl`` and a short
markdown summary written to ``benchmarks/results/bruteforce2.md``; every disagreement is printed as
``Instance.from_dict({...})``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import functools
import json
import platform
import sys
import time
from pathlib import Path

from benchmarks.bruteforce import _git_commit
from benchmarks.seeded import map_seeds

BENCHMARK = "bruteforce2"
RESULTS = Path(__file__).resolve().parent / "results" / "bruteforce2.jsonl"
SUMMARY_MD = Path(__file__).resolve().parent / "results" / "bruteforce2.md"
VERDICTS = ("local_min", "saddle", "not_stationary", "inconclusive")
ORACLE = ("local_min", "saddle", "not_stationary", "unsure")
OUTCOMES = ("agree", "disagree", "certify_inconclusive", "oracle_unsure")


def run_one(seed: int, time_limit: float = 10.0) -> dict:
    """Generate, decide and compare one instance; a plain dict (picklable, JSON-friendly)."""
    from tests import bruteforce2 as b2

    t0 = time.perf_counter()
    inst = b2.random_instance(seed)
    gen_s = time.perf_counter() - t0
    cmp = b2.compare(inst, time_limit=time_limit)
    o = cmp.oracle
    arch, loss = inst.family.split("/")[:2]
    return {"seed": seed, "family": inst.family, "arch": arch, "loss": loss,
            "activation": b2.activation_spec(inst.activation), "widths": inst.widths, "n": inst.n,
            "n_kinks": o.n_kinks, "nested": o.nested, "oracle": o.verdict, "oracle_how": o.how,
            "oracle_reason": o.reason, "certify": cmp.certify_verdict, "certify_kind": cmp.certify_kind,
            "outcome": cmp.outcome, "problems": cmp.problems, "notes": cmp.notes, "source": inst.source(),
            "oracle_s": cmp.seconds_oracle, "certify_s": cmp.seconds_certify, "generate_s": gen_s}


def summarize(rows: list) -> dict:
    matrix = collections.Counter((r["certify"], r["oracle"]) for r in rows)
    outcomes = collections.Counter(r["outcome"] for r in rows)
    disagreements = [r for r in rows if r["outcome"] == "disagree"]
    decided = [r for r in rows if r["oracle"] != "unsure"]
    return {
        "n": len(rows),
        "outcomes": {k: outcomes.get(k, 0) for k in OUTCOMES},
        "disagreements": len(disagreements),
        "oracle": dict(collections.Counter(r["oracle"] for r in rows)),
        "oracle_how": dict(collections.Counter(f"{r['oracle']}/{r['oracle_how']}" for r in rows)),
        "certify": dict(collections.Counter(r["certify"] for r in rows)),
        "certify_kinds": dict(collections.Counter(str(r["certify_kind"]) for r in rows if r["certify"] == "local_min")),
        "matrix": {f"{c}|{o}": k for (c, o), k in sorted(matrix.items())},
        "by_arch": {f"{a}|{o}": k for (a, o), k in
                    sorted(collections.Counter((r["arch"], r["outcome"]) for r in rows).items())},
        "by_loss": {f"{a}|{o}": k for (a, o), k in
                    sorted(collections.Counter((r["loss"], r["outcome"]) for r in rows).items())},
        "nested": sum(r["nested"] for r in rows),
        "nested_decided": sum(r["nested"] for r in decided),
        "kinks": {str(k): v for k, v in sorted(collections.Counter(r["n_kinks"] for r in rows).items())},
        "notes": sum(bool(r["notes"]) for r in rows),
        "oracle_s": round(sum(r["oracle_s"] for r in rows), 3),
        "certify_s": round(sum(r["certify_s"] for r in rows), 3),
        "generate_s": round(sum(r["generate_s"] for r in rows), 3),
        "certify_max_s": round(max((r["certify_s"] for r in rows), default=0.0), 3),
        "disagreement_seeds": [r["seed"] for r in disagreements],
    }


def _table(summary: dict) -> str:
    lines = ["| certify \\ oracle | " + " | ".join(ORACLE) + " |", "|---|" + "---:|" * len(ORACLE)]
    for c in VERDICTS:
        cells = [str(summary["matrix"].get(f"{c}|{o}", 0)) for o in ORACLE]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(summary: dict, header: str) -> str:
    oc = summary["outcomes"]
    how = ", ".join(f"{k} {v}" for k, v in sorted(summary["oracle_how"].items()))
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(summary["certify_kinds"].items()))
    return "\n".join([
        "# Deep / multi-output brute-force cross-check (`python -m benchmarks.bruteforce2`)", "",
        header, "",
        f"**{summary['disagreements']} disagreements** in {summary['n']} instances "
        f"(agree {oc['agree']}, certify inconclusive {oc['certify_inconclusive']}, oracle unsure "
        f"{oc['oracle_unsure']}); {summary['nested']} instances with nested kinks "
        f"({summary['nested_decided']} decided by the oracle).", "",
        _table(summary), "",
        f"How the oracle decided: {how}.", "",
        f"certify's certificate kinds on its `local_min` verdicts: {kinds}.", "",
        f"Time: oracle {summary['oracle_s']:.0f} s, certify {summary['certify_s']:.0f} s (max "
        f"{summary['certify_max_s']:.1f} s per instance), generator {summary['generate_s']:.0f} s.", "",
        "Disagreement seeds: " + (", ".join(map(str, summary["disagreement_seeds"])) or "none") + ".", ""])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bruteforce2", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="number of instances (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (instances seed..seed+n-1)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--time-limit", type=float, default=10.0,
                        help="certify.check's time_limit per instance (default 10 s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON-lines summary file ({RESULTS})")
    parser.add_argument("--md", type=Path, default=SUMMARY_MD, help=f"markdown summary ({SUMMARY_MD})")
    parser.add_argument("--rows", type=Path, default=None, help="also write one JSON line per instance here")
    parser.add_argument("--no-write", action="store_true", help="print only, write nothing")
    parser.add_argument("--show-notes", action="store_true", help="print every note")
    args = parser.parse_args(argv)
    seeds = range(args.seed, args.seed + args.n)
    job = functools.partial(run_one, time_limit=args.time_limit)
    t_start = time.perf_counter()
    rows = map_seeds(job, seeds, args.jobs, chunksize=4)
    wall = time.perf_counter() - t_start
    summary = summarize(rows)
    for r in rows:
        if r["problems"]:
            print(f"\nDISAGREEMENT seed {r['seed']} ({r['family']}): certify {r['certify']}, oracle {r['oracle']} "
                  f"-- {r['oracle_reason']}")
            for p in r["problems"]:
                print(f"  - {p}")
            print(f"  {r['source']}")
    if args.show_notes:
        for r in rows:
            for note in r["notes"]:
                print(f"note seed {r['seed']} ({r['family']}, certify {r['certify']}, oracle {r['oracle']}): {note}")
    commit, dirty = _git_commit()
    header = (f"Seeds {args.seed}..{args.seed + args.n - 1}, commit {commit}"
              f"{' + uncommitted changes in certify/' if dirty else ''}, {wall:.0f} s wall ({args.jobs} job(s)), "
              f"certify time limit {args.time_limit:g} s, "
              f"{_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}.")
    text = markdown(summary, header)
    print("\n" + text)
    record = {"benchmark": BENCHMARK, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "commit": commit, "dirty": dirty, "seed": args.seed, "jobs": args.jobs, "time_limit": args.time_limit,
              "wall_s": round(wall, 2), "python": platform.python_version(), **summary}
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        args.md.write_text(text, encoding="utf-8")
        print(f"summary appended to {args.out}; markdown in {args.md}")
        if args.rows:
            with open(args.rows, "w", encoding="utf-8") as fh:
                for r in rows:
                    fh.write(json.dumps(r) + "\n")
    return 1 if summary["disagreements"] else 0


if __name__ == "__main__":
    sys.exit(main())
