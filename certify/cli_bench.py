"""``certify bench``: run the benchmark suite of a source checkout (``python -m benchmarks run``).

Registered in :mod:`certify.cli` with ``cli_bench.add_parser(sub)`` and, in ``main``,
``if args.command == "bench": return cli_bench.run(args)``.

The suite lives in the repository (``benchmarks/`` and ``tests/`` next to ``certify/``), not in the
installed package: with an editable install (``pip install -e .``) or from the repository root it
is found; otherwise ``certify bench`` prints one line and exits 2.

Exit codes: 0 the suite ran and certify made no wrong verdict; 1 certify made a wrong verdict on an
instance with a known answer (listed on stderr); 2 usage error or no source checkout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCH_EPILOG = """\
examples:
  certify bench                          the quick suite (under 5 minutes): soundness smoke test
  certify bench --suite full --resume    the full suite (hours), resuming an interrupted run
  certify bench --only trained,sosp_setting --methods certify,sosp_check
  certify bench --report                 rewrite benchmarks/results/REPORT.md and the plots only

output:
  one JSON line per (instance, method) in benchmarks/results/SUITE.jsonl (fields instance, family,
  method, verdict, expected, correct, decided, time_s, grad_time_s, ratio_to_grad, peak_mem_mb, ...),
  then benchmarks/results/REPORT.md with the soundness, completeness and time tables and the plots
  time_vs_K.png and time_vs_p.png.

exit codes:
  0 no wrong certify verdict   1 a wrong certify verdict   2 usage error or no source checkout
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="run the benchmark suite (source checkout only)",
                              epilog=BENCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Run certify and the baselines (piece enumeration, the Hessian "
                                          "rule, gradient sampling, SOSP-Check) on instance families with "
                                          "independently known answers; report soundness, completeness and "
                                          "time.")
    p.add_argument("--suite", choices=("quick", "full"), default="quick", help="quick (default) or full")
    p.add_argument("--resume", action="store_true", help="skip (instance, method) pairs already in the results file")
    p.add_argument("--only", metavar="FAMILIES", default=None, help="comma-separated families")
    p.add_argument("--methods", metavar="METHODS", default=None,
                   help="comma-separated methods (default: all five)")
    p.add_argument("--out", metavar="FILE", type=Path, default=None,
                   help="results file (default benchmarks/results/SUITE.jsonl)")
    p.add_argument("--budget", metavar="SECONDS", type=float, default=None,
                   help="seconds each method may spend per instance (quick 20, full 120)")
    p.add_argument("--no-report", action="store_true", help="do not rewrite REPORT.md after the run")
    p.add_argument("--report", action="store_true", help="only rewrite REPORT.md and the plots from the results")
    return p


def _import_benchmarks():
    """The ``benchmarks`` package of the checkout this ``certify`` comes from, or None."""
    root = Path(__file__).resolve().parent.parent
    if (root / "benchmarks" / "__main__.py").is_file() and (root / "tests").is_dir():
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    try:
        import benchmarks.__main__ as bench_main  # noqa: F401
        from benchmarks import runner  # noqa: F401
    except ImportError:
        return None
    return bench_main


def run(args) -> int:
    bench_main = _import_benchmarks()
    if bench_main is None:
        print("certify bench: the benchmark suite is only in a source checkout (benchmarks/ next to certify/); "
              "clone the repository and run 'pip install -e .' there", file=sys.stderr)
        return 2
    if args.report:
        from benchmarks import report
        print(f"report: {report.write_report()}")
        return 0
    return bench_main.run_command(args)
