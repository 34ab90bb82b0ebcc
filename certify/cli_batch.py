"""``certify batch``: check many checkpoints, one JSON line per checkpoint and a summary table.

Registered in :mod:`certify.cli` with ``cli_batch.add_parser(sub)`` and, in ``main``,
``if args.command == "batch": return cli_batch.run(args)``.

Exit codes: 0 every checkpoint was checked (whatever the verdicts), 4 some checkpoints could not
be checked (verdict ``error``: each is one line on stderr and has its JSON line), 2 usage or input
error before any checkpoint ran (no checkpoint found, unreadable --data, bad --out, ...; nothing on
stdout and no --out file), 1 internal error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .errors import CertifyError

# certify.cli helpers are imported inside the functions: cli.py imports this module, so a
# module-level ``from .cli_common import ...`` would be circular.

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SOME_ERRORS = 4

BATCH_EPILOG = """\
examples:
  certify batch runs/                                  every checkpoint in a folder (model + data in each file)
  certify batch 'runs/*/step_*.npz' --data train.npz   a glob (quote it), one shared data file
  certify batch runs/ --jobs 8 --out results.jsonl     8 local worker processes, JSON lines to a file
  certify batch sweep/ --scheduler tcp://10.0.0.1:8786 --out sweep.jsonl --tol 1e-6
                                                       on a Dask cluster (workers must see the files)
  certify batch runs/ --json | jq -r 'select(.verdict == "saddle") | .checkpoint'

CHECKPOINTS are files, folders (every checkpoint file inside, not recursive, in natural order:
step_9 before step_10) or glob patterns ('**' recurses). The data comes from --data, else from each
checkpoint file itself (one .npz holding W1, b1, ..., WL, bL and X, y); a --data file found in a
folder or glob is not taken as a checkpoint.

output:
  one JSON line per checkpoint, in input order, with keys checkpoint, verdict (local_min, saddle,
  not_stationary, inconclusive or error), reason, exit_code (that of 'certify check'; 2 for an
  input error, 1 for an internal one), loss_value, n_params, kinks (unit + loss kinks), method,
  time_s, error (one line, or null). --out FILE writes them (whole, or not at all); --json prints
  them on stdout instead of the summary table (counts per verdict, time, slowest checkpoints).
  A checkpoint that cannot be loaded or checked never stops the batch: its verdict is 'error'
  and its message is one line on stderr. A progress bar is shown on stderr when it is a terminal.

exit codes:
  0 every checkpoint was checked (whatever the verdicts)   4 some checkpoints could not be checked
  2 usage or input error (nothing was checked, no --out file)   1 internal error
"""


def _jobs(text):
    """argparse type: a positive integer, or -1 for every core."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or -1 (every core); got {text!r}") from None
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or -1 (every core); got {text!r}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``batch`` subcommand to ``subparsers`` (from ``parser.add_subparsers``)."""
    from .cli_common import _number
    p = subparsers.add_parser("batch", help="check many checkpoints (folder or glob), in parallel or on a "
                              "Dask cluster", epilog=BATCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Check every checkpoint in CHECKPOINTS (files, folders, globs) like "
                                          "'certify check' does, write one JSON line per checkpoint and print a "
                                          "summary table.")
    p.add_argument("checkpoints", metavar="CHECKPOINTS", nargs="+",
                   help="checkpoint files, folders or glob patterns (e.g. runs/ or 'runs/*.npz')")
    p.add_argument("--data", metavar="FILE", help="data .npz with X (n, d) and y, shared by every checkpoint; "
                   "optional when each checkpoint also holds X and y (e.g. --data train.npz)")
    p.add_argument("--activation", metavar="NAME", help="hidden activation: relu, leaky_relu:ALPHA, abs or "
                   "identity (e.g. --activation leaky_relu:0.25); default: from the file, else relu")
    p.add_argument("--loss", metavar="NAME", default="square", help="per-sample loss, averaged over samples: "
                   "square (1/2||f-y||^2), hinge (y in {-1,+1}), multiclass_hinge, absolute, logistic, "
                   "cross_entropy (default: square)")
    p.add_argument("--weight-decay", metavar="LAMBDA", type=_number(minimum=0.0), default=0.0,
                   help="adds LAMBDA/2 ||theta||^2 to the loss (default: 0; e.g. --weight-decay 1e-4)")
    p.add_argument("--tol", metavar="TAU", type=_number(minimum=0.0), default=None,
                   help="also treat |z| <= TAU * (size of its terms) as a kink when searching for a certificate "
                        "(default: only values zero up to their rounding-error bound)")
    p.add_argument("--time-limit", metavar="SECONDS", type=_number(minimum=0.0, strict=True), default=300.0,
                   help="budget for the whole check of each checkpoint; when it runs out that answer is the best "
                        "one proved so far (default: 300)")
    p.add_argument("-j", "--jobs", metavar="N", type=_jobs, default=1,
                   help="local worker processes (joblib; -1: every core; default: 1, in this process; "
                        "needs pip install certify[batch]); ignored with --scheduler")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask distributed cluster, one task per "
                   "checkpoint (e.g. --scheduler tcp://10.0.0.1:8786; needs pip install certify[dask])")
    p.add_argument("--out", metavar="FILE", help="write the JSON lines to FILE (e.g. --out results.jsonl; "
                   "written whole, after the last checkpoint, or not at all)")
    p.add_argument("--json", action="store_true", help="print the JSON lines on stdout instead of the "
                   "summary table")
    return p


def run(args) -> int:
    """Run ``certify batch`` for parsed ``args``; returns the exit code (input errors: one line, 2)."""
    from .batch import expand_checkpoints, format_summary, run_batch, summarize
    from .cli_common import _check_writable, _one_line, _write_atomic

    try:
        if args.out is not None:
            _check_writable(args.out)
        exclude = [args.data] if args.data else []
        paths = expand_checkpoints(args.checkpoints, exclude=exclude)
        t0 = time.perf_counter()
        results = run_batch(paths, data=args.data, activation=args.activation, loss=args.loss,
                            weight_decay=args.weight_decay, tol=args.tol, time_limit=args.time_limit,
                            jobs=args.jobs, scheduler=args.scheduler, progress=None)
        wall = time.perf_counter() - t0
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in results)
        if args.out is not None:
            _write_atomic(args.out, text)
    except CertifyError as exc:
        sys.stderr.write(f"certify: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    failed = [r for r in results if r["verdict"] == "error"]
    for r in failed:
        sys.stderr.write(f"certify: error: {r['checkpoint']}: {r['error']}\n")
    if args.json:
        sys.stdout.write(text)
    else:
        sys.stdout.write(format_summary(summarize(results, wall)) + "\n")
        if args.out is not None:
            sys.stdout.write(f"results: {len(results)} JSON lines in {args.out}\n")
    sys.stdout.flush()
    return EXIT_SOME_ERRORS if failed else EXIT_OK
