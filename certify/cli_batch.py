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
import os
import sys
import time

from .errors import CertifyError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SOME_ERRORS = 4

BATCH_EPILOG = """\
examples:
  certify batch runs/                                  every checkpoint in a folder (model + data in each file)
  certify batch 'runs/*/step_*.npz' --data train.npz   a glob (quote it), one shared data file
  certify batch runs/ --jobs 8 --out results.jsonl     8 local worker processes, JSON lines to a file
  certify batch runs/ --polish --out sweep.jsonl --resume
                                                       polish each checkpoint; after a kill, go on
                                                       with the checkpoints not yet in sweep.jsonl
  certify batch sweep/ --scheduler tcp://10.0.0.1:8786 --out sweep.jsonl --tol 1e-6
                                                       on a Dask cluster (workers must see the files)
  certify batch runs/ --json | jq -r 'select(.verdict == "saddle") | .checkpoint'

CHECKPOINTS are files, folders (every checkpoint file inside, not recursive, in natural order:
step_9 before step_10) or glob patterns ('**' recurses). The data comes from --data, else from each
checkpoint file itself (one .npz holding W1, b1, ..., WL, bL and X, y); a --data file found in a
folder or glob is not taken as a checkpoint.

output:
  one JSON line per checkpoint with keys checkpoint, verdict (local_min, saddle, not_stationary,
  inconclusive or error), reason, exit_code (that of 'certify check'; 2 for an input error, 1 for an
  internal one), loss_value, n_params, kinks (unit + loss kinks), method, claim (what a local_min
  proves), trained (with --polish: the answer about the checkpoint, its distance and loss gap),
  time_s, error (one line, or null). --out FILE gets each line as soon as its checkpoint finishes
  (a killed sweep keeps every finished line; --resume then skips them); --json prints the lines on
  stdout, in input order, instead of the summary table (counts per verdict; with --polish also per
  answer and the certified end points; time, slowest).
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
    p.add_argument("--out", metavar="FILE", help="write the JSON lines to FILE as each checkpoint finishes "
                   "(e.g. --out results.jsonl); an existing FILE is replaced unless --resume")
    p.add_argument("--resume", action="store_true", help="with --out: keep the lines already in FILE and check "
                   "only the checkpoints it does not have yet")
    p.add_argument("--polish", action="store_true", help="polish each checkpoint first and certify the nearby "
                   "exact point, as 'certify check --polish' does (the line's 'trained' key says what that means "
                   "for the checkpoint)")
    p.add_argument("--smoothing", action="store_true", help="polish (implies --polish) and go on from a smoothing "
                   "homotopy when the polish stalls, as 'certify check --smoothing' does")
    p.add_argument("--json", action="store_true", help="print the JSON lines on stdout instead of the "
                   "summary table")
    return p


def run(args) -> int:
    """Run ``certify batch`` for parsed ``args``; returns the exit code (input errors: one line, 2)."""
    from .batch import expand_checkpoints, format_summary, iter_batch, summarize
    from .cli_common import _check_writable, _one_line
    from .errors import InvalidValueError

    try:
        if args.resume and args.out is None:
            raise InvalidValueError("--resume needs --out FILE (the results file to go on with)")
        if args.out is not None:
            _check_writable(args.out)
        exclude = [args.data] if args.data else []
        paths = expand_checkpoints(args.checkpoints, exclude=exclude)
        earlier = _read_results(args.out) if args.resume else {}
        todo = [p for p in paths if str(p) not in earlier]
        t0 = time.perf_counter()
        results_iter = iter_batch(todo, data=args.data, activation=args.activation, loss=args.loss,
                                  weight_decay=args.weight_decay, tol=args.tol, time_limit=args.time_limit,
                                  jobs=args.jobs, scheduler=args.scheduler, progress=None, polish=args.polish,
                                  smoothing=args.smoothing, ordered=args.out is None)
    except CertifyError as exc:
        sys.stderr.write(f"certify: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    new = {}
    try:
        with _ResultsFile(args.out, append=args.resume) as sink:
            for r in results_iter:   # a shared input (e.g. the scheduler) can still fail at the first one
                new[r["checkpoint"]] = r
                sink.write(r)
    except CertifyError as exc:
        sys.stderr.write(f"certify: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    except OSError as exc:
        sys.stderr.write(f"certify: error: cannot write --out {args.out}: {exc.strerror or exc}\n")
        return EXIT_USAGE
    wall = time.perf_counter() - t0
    results = [new.get(str(p)) or earlier.get(str(p)) for p in paths]
    results = [r for r in results if r is not None]
    failed = [r for r in new.values() if r["verdict"] == "error"]
    for r in failed:
        sys.stderr.write(f"certify: error: {r['checkpoint']}: {r['error']}\n")
    assumed = [r["checkpoint"] for r in new.values() if r.get("warning")]
    if assumed:
        which = f"{assumed[0]} does not record its activation; checked as a relu network" if len(assumed) == 1 \
            else f"{len(assumed)} checkpoints (e.g. {assumed[0]}) do not record their activation; checked as " \
                 f"relu networks"
        sys.stderr.write(f"certify: warning: {which} (pass --activation if trained with another; the JSON "
                         f"lines' \"warning\" names each)\n")
    if args.json:
        sys.stdout.write("".join(json.dumps(r, allow_nan=False) + "\n" for r in results))
    else:
        sys.stdout.write(format_summary(summarize(results, wall)) + "\n")
        if args.out is not None:
            resumed = f" ({len(earlier)} kept from before, {len(new)} new)" if args.resume else ""
            sys.stdout.write(f"results: {len(results)} JSON lines in {args.out}{resumed}\n")
    sys.stdout.flush()
    return EXIT_SOME_ERRORS if failed else EXIT_OK


def _read_results(path) -> dict:
    """The results already in a JSON-lines file, by checkpoint (a torn last line is ignored)."""
    out = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue   # the line a kill interrupted: that checkpoint runs again
                if isinstance(r, dict) and "checkpoint" in r and "verdict" in r:
                    out[str(r["checkpoint"])] = r
    except FileNotFoundError:
        return {}
    return out


class _ResultsFile:
    """Appends one whole JSON line per result and flushes it to disk at once (no file: does nothing).

    Without ``append`` an existing file is replaced by the new lines (it is truncated when the first
    result arrives, not before, so a usage error leaves it untouched).
    """

    def __init__(self, path, append: bool):
        self.path, self.append, self.fh = path, append, None

    def __enter__(self):
        return self

    def write(self, result: dict) -> None:
        if self.path is None:
            return
        if self.fh is None:
            self.fh = open(self.path, "a" if self.append else "w", encoding="utf-8")
            if self.append and self.fh.tell() > 0:
                self._end_torn_line()
        self.fh.write(json.dumps(result, allow_nan=False) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def _end_torn_line(self):
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
        if last != b"\n":
            self.fh.write("\n")

    def __exit__(self, *exc):
        if self.fh is not None:
            self.fh.close()
        return False
