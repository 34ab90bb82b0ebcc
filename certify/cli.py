"""The command line: ``certify check``, ``certify verify`` (the only module that prints).

Exit codes: 0 local_min, 10 saddle, 11 not_stationary, 20 inconclusive, 2 usage or input error
(one line on stderr, no traceback, no partial output file).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
import traceback
import warnings
from pathlib import Path

from . import __version__
from .cli_common import (_check_writable, _number, _one_line, _write_atomic, _write_atomic_bytes,  # noqa: F401
                         process_age)
from .errors import CertifyError

EXIT_USAGE = 2
EXIT_INTERNAL = 1
EXIT_VERIFY_FAILED = 3

VERIFY_EPILOG = """\
examples:
  certify check model.npz --data data.npz --out report.json
  certify verify report.json model.npz --data data.npz

verify recomputes everything the report claims (loss value, decrease along the refuting direction,
multiplier residuals, the reduced Hessian's spectrum, the conditions of the theorem used) with numpy
linear algebra only; it never calls an optimisation solver. Claims only a solver could re-establish
(a MILP's bound) are listed as attested.

exit codes:
  0 every check passed   3 a check failed (printed)   2 usage or input error   1 internal error
"""

CHECK_EPILOG = """\
examples:
  certify check model.npz --data data.npz --activation relu --loss square
  certify check problem.npz --activation leaky_relu:0.25 --loss hinge --json
  certify check model.npz --data data.npz --loss cross_entropy --weight-decay 1e-4 --out report.json
  certify check model.pt --data train.npz --loss square --polish --escape better.pt

files:
  model  .npz with arrays W1, b1, ..., WL, bL; W_l has shape (out, in) as in PyTorch
         (an optional string array 'activation' is used when --activation is not given)
  data   .npz with arrays X (n, d) and y; may be the model file itself

exit codes:
  0 local_min   10 saddle   11 not_stationary   20 inconclusive   2 usage or input error
  (every error is one line on stderr; see docs/errors.md)
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2), as for every other input error."""

    def error(self, message):  # noqa: D401
        sys.stderr.write(f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")
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
    chk.add_argument("model", metavar="MODEL", help="checkpoint: .npz with W1, b1, ..., WL, bL, a PyTorch "
                     "state dict (.pt/.pth), a PyTorch Lightning .ckpt, ONNX or safetensors (e.g. model.npz)")
    chk.add_argument("--data", metavar="FILE", help="data .npz with X (n, d) and y; optional when MODEL "
                     "also holds X and y (e.g. --data train.npz)")
    chk.add_argument("--activation", metavar="NAME", help="hidden activation: relu, leaky_relu:ALPHA, abs or "
                     "identity (e.g. --activation leaky_relu:0.25); default: from the file, else relu with a "
                     "warning (a PyTorch state dict does not record its activation)")
    chk.add_argument("--loss", metavar="NAME", default=None, help="per-sample loss, averaged over samples: "
                     "square (1/2||f-y||^2), hinge (y in {-1,+1}), multiclass_hinge, absolute, logistic, "
                     "cross_entropy (default: the string 'loss' stored in the model .npz, else square)")
    chk.add_argument("--weight-decay", metavar="LAMBDA", type=_number(minimum=0.0), default=None,
                     help="adds LAMBDA/2 ||theta||^2 to the loss (default: 'weight_decay' stored in the model "
                          ".npz, else 0; e.g. --weight-decay 1e-4)")
    chk.add_argument("--tol", metavar="TAU", type=_number(minimum=0.0), default=None,
                     help="also treat |z| <= TAU * (size of its terms) as a kink when searching for a certificate "
                          "(default: only values zero up to their rounding-error bound); a certificate is never "
                          "about a point snapped beyond rounding")
    chk.add_argument("--time-limit", metavar="SECONDS", type=_number(minimum=0.0, strict=True), default=300.0,
                     help="budget for the whole command, counted from its start: loading, polishing and the "
                          "check; when it runs out the answer is the best one proved so far, never a hang "
                          "(default: 300)")
    chk.add_argument("--json", action="store_true", help="print the full report as JSON on stdout "
                     "(top-level key 'verdict')")
    chk.add_argument("--out", metavar="FILE", help="also write the JSON report to FILE (written whole or not "
                     "at all); re-check it later with 'certify verify FILE'")
    chk.add_argument("--polish", action="store_true", help="first move to a nearby point with exact kinks and zero "
                     "reduced gradient (for checkpoints from SGD/Adam, which are never exactly stationary) and "
                     "certify that point; the report says how far it moved and what that means for the checkpoint: "
                     "near_minimum, near_saddle, not_converged (keep training) or undecided")
    chk.add_argument("--smoothing", action="store_true", help="polish (implies --polish), and when the active-set "
                     "polish stalls short of a KKT point go on from a smoothing homotopy (kinks smoothed, L-BFGS as "
                     "the smoothing shrinks): lower losses sooner when --polish ends still descending, but its end "
                     "points are more often ones the checker cannot decide (dead units under weight decay)")
    chk.add_argument("--escape", metavar="FILE", help="for a saddle or a non-stationary point, write the improved "
                     "checkpoint (the verified lower point on the descent curve) to FILE, to resume training from "
                     "it: .npz, or .pt / .safetensors as the state dict of an nn.Sequential (float32, as trainers "
                     "store it)")
    from . import cli_batch, cli_bench, cli_plot
    cli_batch.add_parser(sub)
    cli_plot.add_parser(sub)
    cli_bench.add_parser(sub)
    ver = sub.add_parser("verify", help="re-check a report's certificate (numpy only, no solver)",
                         epilog=VERIFY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Re-check the certificate in REPORT (written by 'certify check --out') "
                                     "against the model and data, without calling any solver.")
    ver.add_argument("report", metavar="REPORT", help="JSON report from 'certify check --out' or '--json'")
    ver.add_argument("model", metavar="MODEL", help="the checkpoint the report is about (.npz)")
    ver.add_argument("--data", metavar="FILE", help="data .npz with X and y; optional when MODEL holds them")
    ver.add_argument("--json", action="store_true", help="print the checks as JSON")
    ver.add_argument("-v", "--verbose", action="store_true", help="log progress and show tracebacks")
    dem = sub.add_parser("demo", help="certify the bundled examples: seed-paper constructions and networks "
                         "trained by PyTorch", formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Run certify on everything bundled in data/: the hand-derived constructions "
                                     "of the seed papers (each with the verdict derived by hand) and checkpoints "
                                     "trained by PyTorch on scikit-learn's copies of Iris and Diabetes "
                                     "(data/trained/native/), as trained and polished, with what the polished "
                                     "verdict means for the checkpoint. Prints tables of verdicts, methods, "
                                     "distances and times.",
                         epilog="examples:\n  certify demo\n  certify demo --quick --out reports/\n\n"
                                "exit codes:\n  0 every hand-derived verdict reproduced and every certificate "
                                "verified   1 one differs or fails   2 usage error")
    dem.add_argument("--quick", action="store_true", help="leave out the slowest example (diabetes_sq_adam, "
                     "the largest checkpoint, whose polishing takes longest)")
    dem.add_argument("--out", metavar="DIR", help="also write every report as DIR/NAME.json")
    dem.add_argument("-v", "--verbose", action="store_true", help="log progress and show tracebacks")
    chk.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return parser


def main(argv=None) -> int:
    # the budget clock of `check` starts with the command (from certify's import when it is the command
    # line), not after loading the model
    started = time.perf_counter() - (process_age() if argv is None else 0.0)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.started = started
    if args.command is None:
        parser.error("missing COMMAND: expected 'check', 'verify', 'demo', 'batch', 'plot' or 'bench'")
    verbose = getattr(args, "verbose", False)
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    with warnings.catch_warnings():
        if verbose:
            logging.captureWarnings(True)
        else:  # numeric warnings would break the one-line-per-error contract; -v shows them
            warnings.simplefilter("ignore")
        _say_assumed_activation()
        try:
            if args.command == "check":
                return _cmd_check(args)
            if args.command == "verify":
                return _cmd_verify(args)
            if args.command == "batch":
                from . import cli_batch
                return cli_batch.run(args)
            if args.command == "plot":
                from . import cli_plot
                return cli_plot.run(args)
            if args.command == "bench":
                from . import cli_bench
                return cli_bench.run(args)
            if args.command == "demo":
                from .demo import main_demo
                return main_demo(quick=args.quick, out_dir=args.out)
        except CertifyError as exc:
            sys.stderr.write(f"certify: error: {_one_line(exc)}\n")
            return EXIT_USAGE
        except KeyboardInterrupt:
            sys.stderr.write("certify: interrupted\n")
            return 130
        except Exception as exc:  # a bug, not an input error: still one line unless -v
            if verbose:
                traceback.print_exc()
            sys.stderr.write(f"certify: internal error: {type(exc).__name__}: {_one_line(exc)} "
                             f"(a bug; rerun with --verbose for the traceback)\n")
            return EXIT_INTERNAL
        finally:
            if verbose:
                logging.captureWarnings(False)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover


def _say_assumed_activation() -> None:
    """Print an :class:`AssumedActivationWarning` as one ``certify: warning:`` line, -v or not.

    Called inside the ``catch_warnings`` block of :func:`main`, which restores both settings.
    """
    from .errors import AssumedActivationWarning

    warnings.simplefilter("always", AssumedActivationWarning)
    shown = warnings.showwarning

    def show(message, category, *rest, **kw):
        if issubclass(category, AssumedActivationWarning):
            sys.stderr.write(f"certify: warning: {_one_line(message)}\n")
        else:
            shown(message, category, *rest, **kw)
    warnings.showwarning = show


def _cmd_verify(args) -> int:
    from .loaders import load_data, load_model
    from .verify import load_report, verify

    report = load_report(args.report)
    activation = report.get("problem", {}).get("activation")
    net = load_model(args.model, activation)
    data = load_data(args.data or args.model)
    result = verify(report, net, data=data)
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        for c in result.checks:
            mark = "attested" if c.attested else ("ok" if c.ok else "FAILED")
            sys.stdout.write(f"{mark:>8}  {c.name}: {c.detail}\n")
        pruned = report.get("pruned") if isinstance(report.get("pruned"), dict) else {}
        also = (f" (and the network without its {len(pruned.get('units') or [])} all-zero unit(s) is a local "
                f"minimum)" if pruned.get("verdict") == "local_min" else "")
        sys.stdout.write(f"{'verified' if result.ok else 'NOT verified'}: {report['verdict']}{also}\n")
    if not result.ok:
        first = result.failed[0]
        sys.stderr.write(f"certify: verification failed: {first.name}: {_one_line(first.detail)}\n")
        return EXIT_VERIFY_FAILED
    return 0


def _cmd_check(args) -> int:
    import numpy as np

    from .data import Problem
    from .driver import check
    from .errors import AssumedActivationWarning, InvalidValueError
    from .kinks import DEFAULT_TOL
    from .loaders import load_data, load_model, read_npz

    tol = DEFAULT_TOL if args.tol is None else args.tol
    if args.out is not None:
        _check_writable(args.out)
    with warnings.catch_warnings(record=True) as assumed:  # said once the input is known to be good
        warnings.simplefilter("always", AssumedActivationWarning)
        net = load_model(args.model, args.activation)
    if args.data is None:
        if Path(args.model).suffix.lower() != ".npz":
            raise InvalidValueError(f"no data: {args.model} is a model file without data; pass --data FILE "
                                    f"(.npz with X and y, or .csv)")
        arrays = read_npz(Path(args.model), "model file")
        missing = [k for k in ("X", "y") if k not in arrays]
        if missing:
            raise InvalidValueError(f"no data: expected arrays X and y in model file {args.model} or a "
                                    f"--data FILE; the model file has no {' or '.join(missing)} "
                                    f"(found: {', '.join(sorted(arrays))})")
    data = load_data(args.data or args.model)
    loss, weight_decay = args.loss, args.weight_decay
    if loss is None or weight_decay is None:  # defaults stored next to the model (certify's .npz)
        meta = read_npz(Path(args.model), "model file") if Path(args.model).suffix.lower() == ".npz" else {}
        if loss is None:
            loss = str(meta["loss"]) if "loss" in meta and meta["loss"].ndim == 0 else "square"
        if weight_decay is None:
            weight_decay = float(meta["weight_decay"]) if "weight_decay" in meta and meta["weight_decay"].ndim == 0 \
                else 0.0
    if args.escape is not None:
        _check_writable(args.escape, "--escape")
    if assumed:  # every input error is one line: validate (as check will) before the warning
        with np.errstate(over="ignore", invalid="ignore"):
            Problem(net, data, loss, weight_decay).check_finite()
        for w in assumed:
            sys.stderr.write(f"certify: warning: {_one_line(w.message)}\n")
    from .progress import reporting, reporting_details, terminal_detail_printer, terminal_printer
    tty = sys.stderr.isatty()
    try:
        with reporting(terminal_printer(sys.stderr) if tty else None), \
                reporting_details(terminal_detail_printer(sys.stderr) if tty else None):
            # what loading took (torch's import alone is ~2 s) comes out of the command's budget
            spent = time.perf_counter() - getattr(args, "started", time.perf_counter())
            report = check(net, data=data, loss=loss, weight_decay=weight_decay, tol=tol,
                           time_limit=max(1e-3, args.time_limit - spent), polish=args.polish,
                           smoothing=args.smoothing)
    finally:
        if tty:     # clear the progress line: the report (stdout, same terminal) starts at column 0
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
    text = report.to_json()
    escaped = None
    if args.escape is not None:
        escaped = _write_escape(args.escape, net, report, Problem(net, data, loss, weight_decay))
    if args.out is not None:
        _write_atomic(args.out, text + "\n")
    if args.json:
        sys.stdout.write(text + "\n")
    else:
        from .report import render
        to_terminal = sys.stdout.isatty()
        sys.stdout.write(render(report, model=args.model, out=args.out, escaped=escaped,
                                escape_file=args.escape if escaped else None, color=to_terminal,
                                width=shutil.get_terminal_size().columns if to_terminal else None) + "\n")
    return report.exit_code


def _write_escape(path: str, net, report, problem) -> str | None:
    """Write the point to resume training from along a verified refutation as a checkpoint (nothing for
    other verdicts), and say in one line where it is and what it gains.

    The point is :func:`certify.escape`'s: the refutation's verified step, grown by factors
    of 4 along the same curve while the float64 loss keeps falling. When no step lowers the float64 loss
    by more than its rounding bound the verified point is written all the same, and the line says that
    resuming there gains nothing. A float32 format (.pt, .safetensors) rounds the point; the line gives
    the loss of what was written when that rounding undoes the decrease.
    """
    import numpy as np

    from .refute import escape
    ref = report.refutation or {}
    if report.verdict.value not in ("saddle", "not_stationary") or not ref.get("verified"):
        sys.stderr.write(f"certify: note: no escape written: the verdict is {report.verdict.value}\n")
        return None
    esc = escape(problem, report)
    if esc is None:           # (a refutation without a direction and a step: its point is the base)
        sys.stderr.write("certify: note: no escape written: the refutation has no step to take\n")
        return None
    suffix = Path(path).suffix.lower()
    _write_atomic_bytes(path, _checkpoint_bytes(net.with_theta(esc["theta"]), suffix))
    where = f"t = {esc['step']:.3g} along the verified descent, {esc['distance']:.3g} from the point checked"
    if not esc["visible"]:
        return (f"wrote the verified lower point to {path} ({where}); its decrease does not show in float64 "
                f"and no longer step along the descent lowers the loss: resuming training there gains nothing")
    line = f"wrote the lower point to {path} ({where}; float64 loss lower by {esc['decrease']:.3g})"
    if suffix != ".npz":
        written = problem.value(np.asarray(esc["theta"], dtype=np.float32).astype(np.float64))
        if not written < esc["loss"] + esc["decrease"]:       # (the float64 loss of the point checked)
            line += (f"; rounded to float32 as {suffix} stores it, its loss is {written:.10g}, not lower: "
                     f"write .npz to keep the decrease")
    return line


def _checkpoint_bytes(net, suffix: str) -> bytes:
    """A checkpoint in the format named by ``suffix``: certify's .npz, a PyTorch state dict of an
    ``nn.Sequential(Linear, act, Linear, ...)`` (keys ``0.weight, 0.bias, 2.weight, ...``) or the
    same keys in safetensors."""
    import io

    import numpy as np
    if suffix == ".npz":
        buf = io.BytesIO()
        np.savez(buf, **net.to_arrays(), activation=np.array(net.activation.spec))
        return buf.getvalue()
    state = {}
    for k, (W, b) in enumerate(zip(net.weights, net.biases)):
        state[f"{2 * k}.weight"], state[f"{2 * k}.bias"] = W.astype(np.float32), b.astype(np.float32)
    if suffix in (".pt", ".pth"):
        from .errors import MissingExtraError
        try:
            import torch
        except ImportError as exc:
            raise MissingExtraError("writing .pt needs `pip install certify[torch]`") from exc
        buf = io.BytesIO()
        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, buf)
        return buf.getvalue()
    from .errors import MissingExtraError
    try:
        from safetensors.numpy import save
    except ImportError as exc:
        raise MissingExtraError("writing .safetensors needs `pip install certify[safetensors]`") from exc
    return save(state, metadata={"activation": net.activation.spec})




if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
