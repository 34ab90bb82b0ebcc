"""Where first order rests on HiGHS's word: ``python -m benchmarks.attested [--code DIR] --out NAME``.

Runs certify alone (with the suite's ground truths, so soundness is judged as in the full suite) on
the instances whose first-order claim was *solver-attested* in the full-suite results -- a MILP's
proven bound, which ``verify`` cannot re-check -- and writes ``benchmarks/results/NAME``. The report
(:func:`benchmarks.report.attested_section`) counts, per family, how often first order is still
attested: ``attested_before.jsonl`` (run with ``--code`` pointing at a checkout of the code before
the solver-free tree, e.g. ``git worktree add /tmp/base b9933c6``) against ``attested_after.jsonl``
(this checkout). ``--resume`` skips instances already in the file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from .report import first_order_attested
from .runner import RESULTS_DIR, load_records


def attested_instances() -> list[str]:
    """Instances whose latest full-suite certify record has a solver-attested first order."""
    last = {}
    for path in sorted(RESULTS_DIR.glob("full*.jsonl")):
        if ".prev" in path.name:
            continue
        for r in load_records(path):
            if r.get("method") != "certify":
                continue
            if r["instance"] not in last or str(r.get("date", "")) >= str(last[r["instance"]].get("date", "")):
                last[r["instance"]] = r
    return sorted(i for i, r in last.items() if first_order_attested(r))


def label_commit(path: Path, commit: str) -> None:
    """Fill ``commit`` in the records that have none (a run of code outside a git checkout)."""
    records = load_records(path)
    for r in records:
        if r.get("commit") is None:
            r["commit"] = commit
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attested", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="attested_after.jsonl", help="results file name in benchmarks/results")
    parser.add_argument("--code", type=Path, default=None,
                        help="run the certify of another checkout (its benchmarks.runner) on the same instances")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds certify may spend per instance")
    parser.add_argument("--label", default=None,
                        help="commit to record where --code is not a git checkout (e.g. a `git archive` export)")
    args = parser.parse_args(argv)
    ids = attested_instances()
    out = RESULTS_DIR / args.out
    print(f"{len(ids)} instances with a solver-attested first order in the full-suite results -> {out}",
          file=sys.stderr)
    if args.code is not None:
        code = args.code.resolve()
        script = ("import json, sys; from pathlib import Path; from benchmarks.runner import run_suite; "
                  f"run_suite('full', out=Path({str(out)!r}), resume={args.resume!r}, methods=('certify',), "
                  f"instances=json.loads(sys.stdin.read()), budget_s={args.budget!r})")
        env = {**os.environ, "PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1"}
        rc = subprocess.run([sys.executable, "-c", script], cwd=code, env=env, input=json.dumps(ids),
                            text=True).returncode
        if args.label:
            label_commit(out, args.label)
        return rc
    from .runner import run_suite
    run_suite("full", out=out, resume=args.resume, methods=("certify",), instances=ids, budget_s=args.budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
