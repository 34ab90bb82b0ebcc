"""``python -m benchmarks``: the benchmark suite (run, report, list).

    python -m benchmarks run --suite quick            # < 5 minutes; exit 1 on any wrong certify verdict
    python -m benchmarks run --suite full --resume    # hours; resumable
    python -m benchmarks run --suite full --only trained,sosp_setting
    python -m benchmarks report                       # benchmarks/results/REPORT.md and the plots
    python -m benchmarks list --suite quick           # the instances and their families

Exit codes: 0 done and certify made no wrong verdict; 1 certify made a wrong verdict (the
instances are printed); 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="certify's benchmark suite: ground truth, baselines, "
                                                            "soundness, completeness and time")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_arguments(sub.add_parser("run", help="run a suite (appends JSON lines to benchmarks/results/SUITE.jsonl)"))
    rep = sub.add_parser("report", help="write benchmarks/results/REPORT.md and the plots")
    rep.add_argument("--results", type=Path, nargs="*", default=None,
                     help="results files (default: benchmarks/results/full*.jsonl, else quick.jsonl)")
    rep.add_argument("--out-dir", type=Path, default=None, help="where REPORT.md and the PNGs go")
    lst = sub.add_parser("list", help="list the instances of a suite")
    lst.add_argument("--suite", choices=("quick", "full"), default="quick")
    return parser


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("--suite", choices=("quick", "full"), default="quick")
    run.add_argument("--resume", action="store_true", help="skip (instance, method) pairs already in the results file")
    run.add_argument("--only", default=None, help="comma-separated families (see `list`)")
    run.add_argument("--methods", default=None,
                     help="comma-separated methods (default: certify,enumeration,hessian_rule,gradient_sampling,"
                          "sosp_check)")
    run.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results/SUITE.jsonl)")
    run.add_argument("--budget", type=float, default=None, help="seconds each method may spend (quick 20, full 120)")
    run.add_argument("--no-report", action="store_true", help="do not rewrite REPORT.md after the run")


def run_command(args) -> int:
    from . import report, runner
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    methods = tuple(s.strip() for s in args.methods.split(",")) if args.methods else runner.DEFAULT_METHODS
    from .baselines import METHODS
    bad = [m for m in methods if m not in METHODS]
    if bad:
        print(f"unknown method(s) {bad}: expected {', '.join(METHODS)}", file=sys.stderr)
        return 2
    try:
        summary = runner.run_suite(args.suite, out=args.out, resume=args.resume, only=only, methods=methods,
                                   budget_s=args.budget)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = args.out or "the results file"
        print(f"interrupted: the records written so far stay in {out}; --resume runs the rest", file=sys.stderr)
        return 130
    print(f"{summary['records_written']} records written to {summary['results']} in {summary['wall_s']:.0f} s; "
          f"certify wrong verdicts: {summary['certify_wrong']}")
    if not args.no_report and args.out is None:
        path = report.write_report()
        print(f"report: {path}")
    return 1 if summary["certify_wrong"] else 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_command(args)
    if args.command == "report":
        from . import report
        path = report.write_report(args.results, args.out_dir)
        print(f"report: {path}")
        return 0
    if args.command == "list":
        from . import families
        for inst in families.suite(args.suite):
            print(f"{inst.family:14s} {inst.id}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
