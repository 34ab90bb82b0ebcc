"""``certify plot``: draw a report (the refutation, or the flattest directions of a minimum).

Registered in :mod:`certify.cli` with ``cli_plot.add_parser(sub)`` and, in ``main``,
``if args.command == "plot": return cli_plot.run(args)``. Needs the ``plot`` extra (matplotlib).

Exit codes: 0 the figure was written, 2 usage or input error (one line on stderr, no output file:
a report that does not belong to the model, matplotlib missing, an unwritable --out, ...).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import CertifyError, InvalidValueError

# certify.cli helpers are imported inside the functions: cli.py imports this module.

EXIT_OK = 0
EXIT_USAGE = 2

PLOT_EPILOG = """\
examples:
  certify check data/gt5_concave_kink.npz --out gt5.json
  certify plot gt5.json data/gt5_concave_kink.npz              writes gt5.png next to gt5.json
  certify plot report.json model.npz --data data.npz --out report.svg --radius 0.05

what is drawn (one figure, two panels; three for a polished report):
  not_stationary, saddle   (a) the loss along the verified refutation t -> L(theta + t d + t^2/2 e)
                           for t in [-R, 2R] (R: --radius, default the verified step), with theta, the
                           verified step and the first- or second-order model; (b) L - L(theta) on the
                           2-D slice spanned by d and the flattest direction orthogonal to it
  local_min, inconclusive  (a) the loss along the flattest directions (smallest reduced-Hessian or
                           critical-cone curvature where available, else the flattest of a few seeded
                           random directions), all orthogonal to the rescaling orbits; (b) the 2-D
                           slice spanned by the two flattest
  a polished report        also (c) the loss on the straight line from the checkpoint (s = 0) to the
                           polished point (s = 1), for s in [-0.25, 1.25]: is the checkpoint in that
                           point's basin along the segment, or is there a barrier between them

The report's activation, loss and weight decay are used (as in 'certify verify'); the model and data
must be the ones the report was made for (fingerprint check). The format follows the --out suffix:
.png (default), .svg or .pdf. Needs pip install certify[plot] (matplotlib).

exit codes:
  0 the figure was written   2 usage or input error (nothing written)   1 internal error
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``plot`` subcommand to ``subparsers`` (from ``parser.add_subparsers``)."""
    from .cli_common import _number
    p = subparsers.add_parser("plot", help="draw a report: the loss along its refutation or around its minimum "
                              "(needs certify[plot])", epilog=PLOT_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Draw the report in REPORT (written by 'certify check --out') for its "
                                          "model and data: the loss along the refuting direction or curve, or "
                                          "along the flattest directions of a minimum, and a 2-D contour slice.")
    p.add_argument("report", metavar="REPORT", help="JSON report from 'certify check --out' or '--json'")
    p.add_argument("model", metavar="MODEL", help="the checkpoint the report is about (.npz)")
    p.add_argument("--data", metavar="FILE", help="data .npz with X and y; optional when MODEL holds them")
    p.add_argument("--out", metavar="FILE", help="the figure: .png, .svg or .pdf (default: REPORT with the "
                   "suffix .png, e.g. report.json -> report.png; written whole or not at all)")
    p.add_argument("--radius", metavar="R", type=_number(minimum=0.0, strict=True), default=None,
                   help="half-width of the plotted range: t in [-R, 2R] along a refutation (default: the "
                        "verified step), [-R, R] at a minimum (default: automatic)")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    return p


def run(args) -> int:
    """Run ``certify plot`` for parsed ``args``: 0 when written; input errors are one line and 2."""
    from .cli_common import _one_line
    try:
        path = _plot(args)
    except CertifyError as exc:
        sys.stderr.write(f"certify: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    sys.stdout.write(f"{path}\n")
    return EXIT_OK


def _plot(args) -> Path:
    from .data import Problem
    from .loaders import load_data, load_model
    from .plotting import plot_format, plot_report
    from .verify import load_report

    out = Path(args.out) if args.out is not None else Path(args.report).with_suffix(".png")
    _check_out(out, given=args.out is not None)
    plot_format(out)  # an unsupported suffix fails before anything is loaded
    report = load_report(args.report)
    info = report.get("problem") or {}
    if not info.get("loss"):
        raise InvalidValueError(f"report {args.report} does not name its loss (problem.loss)")
    net = load_model(args.model, info.get("activation"))
    data = load_data(args.data or args.model)
    problem = Problem(net, data, info["loss"], info.get("weight_decay") or 0.0)
    plot_report(report, problem, out, radius=args.radius)
    return out


def _check_out(path: Path, *, given: bool) -> None:
    flag = "--out" if given else "default output"
    if not str(path).strip():
        raise InvalidValueError(f"{flag} expects a file name; got {str(path)!r}")
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InvalidValueError(f"{flag} {path} is a directory; expected a file name")
    if not parent.is_dir():
        raise InvalidValueError(f"{flag} {path}: directory {parent} does not exist")
    import os
    if not os.access(parent, os.W_OK):
        raise InvalidValueError(f"{flag} {path}: directory {parent} is not writable"
                                + ("" if given else " (choose another with --out)"))
