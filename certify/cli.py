"""The command line: ``certify check``, ``certify verify`` (the only module that prints).

Exit codes: 0 local_min, 10 saddle, 11 not_stationary, 20 inconclusive, 2 usage or input error
(one line on stderr, no traceback, no partial output file).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from . import __version__
from .errors import CertifyError

EXIT_USAGE = 2

CHECK_EPILOG = """\
examples:
  certify check model.npz --data data.npz --activation relu --loss square
  certify check problem.npz --activation leaky_relu:0.25 --loss hinge --json
  certify check model.npz --data data.npz --loss cross_entropy --weight-decay 1e-4 --out report.json

files:
  model  .npz with arrays W1, b1, ..., WL, bL; W_l has shape (out, in) as in PyTorch
         (an optional string array 'activation' is used when --activation is not given)
  data   .npz with arrays X (n, d) and y; may be the model file itself

exit codes:
  0 local_min   10 saddle   11 not_stationary   20 inconclusive   2 usage or input error
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2), as for every other input error."""

    def error(self, message):  # noqa: D401
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="certify", description="Prove whether a trained network's parameters are a local "
                     "minimum of its training loss: certify it, refute it with a verified descent, or say "
                     "exactly why it cannot decide.", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"certify {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    chk = sub.add_parser("check", help="check one parameter point", epilog=CHECK_EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Decide whether the network in MODEL is at a local minimum of the mean "
                                     "training loss on the data, and print the verdict with its proof.")
    chk.add_argument("model", metavar="MODEL", help="checkpoint: .npz with W1, b1, ..., WL, bL "
                     "(e.g. model.npz)")
    chk.add_argument("--data", metavar="FILE", help="data .npz with X (n, d) and y; optional when MODEL "
                     "also holds X and y (e.g. --data train.npz)")
    chk.add_argument("--activation", metavar="NAME", help="hidden activation: relu, leaky_relu:ALPHA, abs or "
                     "identity (e.g. --activation leaky_relu:0.25); default: from the file, else relu")
    chk.add_argument("--loss", metavar="NAME", default="square", help="per-sample loss, averaged over samples: "
                     "square (1/2||f-y||^2), hinge (y in {-1,+1}), multiclass_hinge, absolute, logistic, "
                     "cross_entropy (default: square)")
    chk.add_argument("--weight-decay", metavar="LAMBDA", type=_float("--weight-decay"), default=0.0,
                     help="adds LAMBDA/2 ||theta||^2 to the loss (default: 0; e.g. --weight-decay 1e-4)")
    chk.add_argument("--tol", metavar="TAU", type=_float("--tol"), default=None,
                     help="relative kink tolerance: |z| <= TAU (|W||x|+|b|) counts as a kink "
                          "(default: 1e-9; e.g. --tol 1e-6 for a trained checkpoint)")
    chk.add_argument("--time-limit", metavar="SECONDS", type=_float("--time-limit"), default=60.0,
                     help="budget for each MILP; when it runs out the verdict is inconclusive (default: 60)")
    chk.add_argument("--json", action="store_true", help="print the full report as JSON on stdout "
                     "(top-level key 'verdict')")
    chk.add_argument("--out", metavar="FILE", help="also write the JSON report to FILE (written whole or not "
                     "at all); re-check it later with 'certify verify FILE'")
    chk.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return parser


def _float(flag):
    def parse(text):
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects a number; got {text!r}") from None
    return parse


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        if args.command == "check":
            return _cmd_check(args)
    except CertifyError as exc:
        sys.stderr.write(f"certify: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("certify: interrupted\n")
        return 130
    return EXIT_USAGE


def _one_line(exc) -> str:
    return " ".join(str(exc).split())


def _cmd_check(args) -> int:
    from .driver import check
    from .errors import InvalidValueError
    from .kinks import DEFAULT_TOL
    from .loaders import load_data, load_model, read_npz

    tol = DEFAULT_TOL if args.tol is None else args.tol
    if not (tol >= 0) or tol == float("inf"):
        raise InvalidValueError(f"--tol must be a finite number >= 0; got {args.tol!r}")
    if args.time_limit <= 0:
        raise InvalidValueError(f"--time-limit must be positive; got {args.time_limit!r}")
    if args.out:
        _check_writable(args.out)
    net = load_model(args.model, args.activation)
    data_path = args.data or args.model
    if args.data is None:
        arrays = read_npz(Path(args.model))
        if "X" not in arrays or "y" not in arrays:
            raise InvalidValueError(f"no data: {args.model} holds no arrays X and y; pass --data FILE")
    data = load_data(data_path)
    report = check(net, data=data, loss=args.loss, weight_decay=args.weight_decay, tol=tol,
                   time_limit=args.time_limit)
    text = report.to_json()
    if args.out:
        _write_atomic(args.out, text + "\n")
    if args.json:
        sys.stdout.write(text + "\n")
    else:
        sys.stdout.write(report.summary() + "\n")
    return report.exit_code


def _check_writable(path: str) -> None:
    from .errors import InvalidValueError
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise InvalidValueError(f"--out {path} is a directory; expected a file name")
    if not parent.is_dir():
        raise InvalidValueError(f"--out {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InvalidValueError(f"--out {path}: directory {parent} is not writable")


def _write_atomic(path: str, text: str) -> None:
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=str(target.parent or Path(".")))
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
