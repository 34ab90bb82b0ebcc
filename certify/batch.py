"""Many checkpoints at once: locally in parallel (joblib) or on a Dask distributed cluster.

``expand_checkpoints`` turns files, folders and globs into a list of checkpoint paths;
``run_batch`` checks each one and returns one small JSON-able dict per checkpoint, in input order.
A checkpoint that cannot be loaded or checked gives a result with verdict ``"error"`` and a
one-line ``"error"`` message; it never stops the batch.

>>> from pathlib import Path
>>> data = Path(__file__).resolve().parents[1] / "data"
>>> paths = expand_checkpoints([data / "gt5_concave_kink.npz", data / "gt7_kink_minimum.npz"])
>>> [r["verdict"] for r in run_batch(paths, loss="square", progress=False)]
['not_stationary', 'local_min']

Parallelism: ``jobs=N`` runs N local worker processes (joblib, loky backend; ``-1`` = all cores);
``scheduler=`` sends one task per checkpoint to a Dask distributed scheduler (an address such as
``"tcp://10.0.0.1:8786"``, a ``distributed.Client`` or a ``LocalCluster``). Workers read the
checkpoint paths themselves, so the files must be visible to them (a shared file system); the
``data`` file, when given, is read once here and shipped to the workers.
"""

from __future__ import annotations

import glob
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Iterable, Iterator

from .errors import (AssumedActivationWarning, CertifyError, InvalidValueError, MissingExtraError,
                     ModelLoadError)

#: the verdicts of :mod:`certify.report` plus ``"error"`` (the checkpoint could not be checked)
VERDICTS = ("local_min", "saddle", "not_stationary", "inconclusive", "error")
#: ``exit_code`` of a result whose checkpoint failed with an input error / with a bug in certify
EXIT_INPUT_ERROR = 2
EXIT_INTERNAL_ERROR = 1

_GLOB_CHARS = re.compile(r"[*?\[]")
RESULT_KEYS = ("checkpoint", "verdict", "reason", "exit_code", "loss_value", "n_params", "kinks", "method",
               "claim", "trained", "time_s", "error", "warning")


# ---------------------------------------------------------------------------- which files
def checkpoint_suffixes() -> tuple[str, ...]:
    """The checkpoint suffixes :func:`certify.loaders.load_model` reads (asked at call time)."""
    from . import loaders
    return tuple(s.lower() for s in getattr(loaders, "MODEL_SUFFIXES", (".npz",)))


def _natural_key(path: Path):
    """Sort ``step_9`` before ``step_10``: digit runs compare as numbers."""
    parts = re.split(r"(\d+)", str(path))
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]


def expand_checkpoints(patterns: Iterable, *, exclude: Iterable = ()) -> list[Path]:
    """Checkpoint files from files, folders and glob patterns, in the order given.

    A file is taken as it is (its format is checked when it is loaded); a folder contributes the
    files inside it (not recursively) whose suffix is a supported checkpoint format, in natural
    order (``step_9`` before ``step_10``); a glob (``*``, ``?``, ``[...]``, ``**`` recursive)
    contributes its matching checkpoint files, folders matched being expanded as folders.
    Duplicates are dropped (first occurrence kept); paths in ``exclude`` (e.g. the ``--data`` file
    sitting in the same folder) are skipped unless named explicitly.

    Raises :class:`ModelLoadError` when a path does not exist, or a folder or glob holds no
    checkpoint, and :class:`InvalidValueError` when no pattern is given.
    """
    patterns = [os.fspath(p) for p in patterns]
    if not patterns:
        raise InvalidValueError("no checkpoints given: expected files, folders or glob patterns")
    suffixes = checkpoint_suffixes()
    wanted = ", ".join(suffixes)
    skip = {_key(Path(p)) for p in exclude}
    out: list[Path] = []
    seen: set = set()

    def add(path: Path, explicit: bool) -> None:
        k = _key(path)
        if k in seen or (not explicit and k in skip):
            return
        seen.add(k)
        out.append(path)

    def folder(path: Path) -> list[Path]:
        try:
            entries = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes]
        except OSError as exc:
            raise ModelLoadError(f"cannot list folder {path}: {exc.strerror or exc}") from None
        return sorted(entries, key=_natural_key)

    for text in patterns:
        if not text.strip():
            raise InvalidValueError(f"expected a checkpoint file, folder or glob; got {text!r}")
        path = Path(text)
        if path.is_dir():
            found = [p for p in folder(path) if _key(p) not in skip]
            if not found:
                raise ModelLoadError(f"folder {path} holds no checkpoint: expected files ending in {wanted}")
            for p in found:
                add(p, False)
        elif path.exists():
            if not path.is_file():
                raise ModelLoadError(f"checkpoint {path} is not a regular file")
            add(path, True)
        elif _GLOB_CHARS.search(text):
            found = []
            for match in sorted(glob.glob(text, recursive=True), key=lambda m: _natural_key(Path(m))):
                m = Path(match)
                if m.is_dir():
                    found.extend(folder(m))
                elif m.is_file() and m.suffix.lower() in suffixes:
                    found.append(m)
            found = [p for p in found if _key(p) not in skip]
            if not found:
                raise ModelLoadError(f"pattern {text!r} matches no checkpoint: expected files ending in {wanted}")
            for p in found:
                add(p, False)
        else:
            parent = path.parent
            if str(parent) not in ("", ".") and not parent.is_dir():
                raise ModelLoadError(f"checkpoint {path} does not exist (no directory {parent})")
            raise ModelLoadError(f"checkpoint {path} does not exist")
    return out


def _key(path: Path):
    try:
        return os.path.normcase(os.path.realpath(path))
    except OSError:  # pragma: no cover
        return os.path.normcase(os.path.abspath(path))


# ---------------------------------------------------------------------------- one checkpoint
def check_one(path, *, data=None, activation=None, loss="square", weight_decay=0.0, tol=None,
              time_limit=300.0, polish=False, smoothing=False) -> dict:
    """Load and check one checkpoint; never raises (a failure is a result with verdict ``"error"``).

    ``data``: a :class:`certify.Dataset` (shared by every checkpoint) or ``None`` to read ``X`` and
    ``y`` from the checkpoint file itself.
    """
    t0 = time.perf_counter()
    result = dict.fromkeys(RESULT_KEYS)
    result["checkpoint"] = str(path)
    try:
        with warnings.catch_warnings(record=True) as caught:  # numeric warnings would spill over the table
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", AssumedActivationWarning)  # kept in the result's "warning"
            report = _check_path(Path(path), data, activation, loss, weight_decay, tol, time_limit, polish,
                                 smoothing)
        assumed = [w for w in caught if issubclass(w.category, AssumedActivationWarning)]
        if assumed:
            result["warning"] = _one_line(assumed[0].message)
    except CertifyError as exc:
        result.update(verdict="error", exit_code=EXIT_INPUT_ERROR, error=_one_line(exc),
                      reason="the checkpoint could not be checked")
    except Exception as exc:  # a bug in certify: report it on this line, keep the batch going
        result.update(verdict="error", exit_code=EXIT_INTERNAL_ERROR,
                      error=f"internal error: {type(exc).__name__}: {_one_line(exc)}",
                      reason="the checkpoint could not be checked (a bug in certify)")
    else:
        d = report.to_dict()
        problem, kinks = d.get("problem") or {}, d.get("kinks") or {}
        result.update(verdict=d["verdict"], reason=d["reason"], exit_code=report.exit_code,
                      loss_value=problem.get("loss_value"), n_params=problem.get("n_params"),
                      kinks=int((kinks.get("unit_kinks") or 0) + (kinks.get("loss_kinks") or 0)),
                      method=(d.get("flags") or {}).get("method"),
                      claim=(d.get("claim") or {}).get("level"), trained=d.get("trained"))
    result["time_s"] = round(time.perf_counter() - t0, 6)
    return result


def _check_path(path: Path, data, activation, loss, weight_decay, tol, time_limit, polish=False, smoothing=False):
    from .driver import check
    from .kinks import DEFAULT_TOL
    from .loaders import load_model

    net = load_model(path, activation)
    if data is None:
        data = _own_data(path)
    return check(net, data=data, loss=loss, weight_decay=weight_decay,
                 tol=DEFAULT_TOL if tol is None else tol, time_limit=time_limit, polish=polish,
                 smoothing=smoothing)


def _own_data(path: Path):
    """``X`` and ``y`` stored in the checkpoint file itself (no ``--data`` given)."""
    from . import loaders

    data_suffixes = tuple(s.lower() for s in getattr(loaders, "DATA_SUFFIXES", (".npz",)))
    if path.suffix.lower() not in data_suffixes:
        raise InvalidValueError(f"no data: checkpoint {path} cannot hold X and y (data is read from "
                                f"{', '.join(data_suffixes)} files); pass --data FILE")
    if path.suffix.lower() == ".npz":
        arrays = loaders.read_npz(path, "model file")
        missing = [k for k in ("X", "y") if k not in arrays]
        if missing:
            raise InvalidValueError(f"no data: expected arrays X and y in model file {path} or a --data FILE; "
                                    f"the model file has no {' or '.join(missing)} "
                                    f"(found: {', '.join(sorted(arrays))})")
        return loaders.load_data(path)
    try:
        return loaders.load_data(path)
    except CertifyError as exc:  # e.g. a state dict without X and y: say how to give the data
        raise type(exc)(f"{_one_line(exc)}; or pass --data FILE") from None


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def error_result(path, message: str, exit_code: int = EXIT_INTERNAL_ERROR) -> dict:
    """The result of a checkpoint whose task failed outside :func:`check_one` (e.g. a lost worker)."""
    result = dict.fromkeys(RESULT_KEYS)
    result.update(checkpoint=str(path), verdict="error", exit_code=exit_code, error=_one_line(message),
                  reason="the checkpoint could not be checked")
    return result


# ---------------------------------------------------------------------------- many checkpoints
def run_batch(paths, *, data=None, activation=None, loss="square", weight_decay=0.0, tol=None,
              time_limit=300.0, jobs=1, scheduler=None, progress=None, polish=False,
              smoothing=False) -> list[dict]:
    """Check every checkpoint in ``paths``; one result dict per checkpoint, in the order of ``paths``.

    Parameters
    ----------
    paths : list of paths
        Checkpoint files (see :func:`expand_checkpoints`).
    data : Dataset, path or None
        Shared training data; ``None`` reads ``X`` and ``y`` from each checkpoint file.
    activation, loss, weight_decay, tol, time_limit, polish, smoothing
        As for :func:`certify.check` (``tol=None``: the default kink tolerance; ``time_limit`` is the
        budget of each checkpoint's whole check).
    jobs : int
        Local worker processes (joblib, loky backend); ``1`` runs in this process, ``-1`` uses
        every core. Ignored when ``scheduler`` is given.
    scheduler : str, distributed.Client or distributed.LocalCluster, optional
        Run on a Dask distributed cluster, one task per checkpoint.
    progress : bool or None
        Progress bar on stderr; ``None`` shows it only when stderr is a terminal.

    Returns
    -------
    list of dict
        Keys ``checkpoint, verdict, reason, exit_code, loss_value, n_params, kinks, method, time_s,
        error`` (``error`` is ``None`` unless ``verdict == "error"``).

    Raises
    ------
    CertifyError
        For inputs shared by every checkpoint (unknown loss or activation, unreadable ``data``,
        bad ``jobs``, unreachable scheduler); ``MissingExtraError`` when joblib / dask is missing.
    """
    return list(iter_batch(paths, data=data, activation=activation, loss=loss, weight_decay=weight_decay,
                           tol=tol, time_limit=time_limit, jobs=jobs, scheduler=scheduler, progress=progress,
                           polish=polish, smoothing=smoothing))


def iter_batch(paths, *, data=None, activation=None, loss="square", weight_decay=0.0, tol=None,
               time_limit=300.0, jobs=1, scheduler=None, progress=None, polish=False,
               smoothing=False, ordered: bool = True) -> Iterator[dict]:
    """:func:`run_batch` as a generator, yielding each result as soon as it is known.

    ``ordered`` (default) yields in input order; ``ordered=False`` yields in the order the checkpoints
    finish (what ``certify batch --out`` writes, so a killed sweep keeps every finished line). The
    shared inputs are validated when the generator is created, before any checkpoint runs.
    """
    paths = [Path(p) for p in paths]
    options = _shared_options(data, activation, loss, weight_decay, tol, time_limit)
    options["polish"] = bool(polish)
    options["smoothing"] = bool(smoothing)
    if scheduler is None:
        jobs = _check_jobs(jobs)
        if jobs != 1 and len(paths) > 1:
            _joblib()  # fail now, not at the first next()
    return _iterate(paths, options, jobs, scheduler, progress, ordered)


def _iterate(paths, options, jobs, scheduler, progress, ordered=True):
    bar = Progress(len(paths), enabled=progress)
    try:
        if scheduler is not None:
            source = _run_dask(paths, options, scheduler, bar, ordered)
        elif jobs == 1 or len(paths) <= 1:
            source = _run_serial(paths, options, bar)
        else:
            source = _run_joblib(paths, options, jobs, bar, ordered)
        yield from source
    finally:
        bar.close()


def _shared_options(data, activation, loss, weight_decay, tol, time_limit) -> dict:
    """Validate what every checkpoint shares once, here, so a typo is one error and not N."""
    from .data import Dataset
    from .losses import Loss
    from .network import Activation

    Loss.parse(loss)
    if activation is not None:
        Activation.parse(activation)
    for name, value, strict in (("weight decay", weight_decay, False), ("tol", tol, False),
                                ("time limit", time_limit, True)):
        if value is None and name == "tol":
            continue
        try:
            x = float(value)
        except (TypeError, ValueError):
            x = float("nan")
        if not (x == x and abs(x) != float("inf")) or x < 0 or (strict and x == 0):
            raise InvalidValueError(f"{name} must be a finite number {'>' if strict else '>='} 0; got {value!r}")
    if data is not None and not isinstance(data, Dataset):
        from .loaders import load_data
        data = load_data(data)
    return {"data": data, "activation": activation, "loss": loss, "weight_decay": weight_decay, "tol": tol,
            "time_limit": time_limit}


def _check_jobs(jobs) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs == 0 or jobs < -1:
        raise InvalidValueError(f"jobs must be a positive integer or -1 (every core); got {jobs!r}")
    return jobs


def _run_serial(paths, options, bar) -> Iterator[dict]:
    for p in paths:
        result = check_one(p, **options)
        bar.advance(result)
        yield result


def _joblib():
    try:
        import joblib
    except ImportError:
        raise MissingExtraError("--jobs needs `pip install certify[batch]` (joblib)") from None
    return joblib


def _run_joblib(paths, options, jobs, bar, ordered=True) -> Iterator[dict]:
    joblib = _joblib()
    parallel = joblib.Parallel(n_jobs=jobs, backend="loky",
                               return_as="generator" if ordered else "generator_unordered")
    # the shared Dataset is pickled per task; joblib memory-maps its large arrays automatically
    for result in parallel(joblib.delayed(check_one)(p, **options) for p in paths):
        bar.advance(result)
        yield result


def _distributed():
    try:
        import distributed
    except ImportError:
        raise MissingExtraError("--scheduler needs `pip install certify[dask]`") from None
    return distributed


def _run_dask(paths, options, scheduler, bar, ordered=True) -> Iterator[dict]:
    distributed = _distributed()
    client, owned = _client(distributed, scheduler)
    try:
        opts = dict(options)
        if opts["data"] is not None:  # ship the shared data once, not with every task
            opts["data"] = client.scatter(opts["data"], broadcast=True)
        futures = client.map(check_one, [str(p) for p in paths], pure=False, **opts)
        index = {f.key: i for i, f in enumerate(futures)}
        done: dict[int, dict] = {}
        next_i = 0
        try:
            for fut in distributed.as_completed(futures, loop=client.loop):
                i = index[fut.key]
                if fut.status == "finished":
                    result = fut.result()
                else:  # the task itself failed (a lost worker, a missing certify on the worker, ...)
                    try:
                        exc = fut.exception()
                        message = f"task failed on the cluster: {type(exc).__name__}: {exc}"
                    except Exception as err:  # cancelled futures raise here
                        message = f"task failed on the cluster: {type(err).__name__}: {err}"
                    result = error_result(paths[i], message)
                fut.release()
                done[i] = result
                bar.advance(result)
                if not ordered:
                    yield done.pop(i)
                    continue
                while next_i in done:
                    yield done.pop(next_i)
                    next_i += 1
        finally:
            for f in futures:  # on an early exit (Ctrl-C, generator closed) free the cluster
                if not f.done():
                    f.cancel()
    finally:
        if owned:
            client.close()


def _client(distributed, scheduler):
    """A ``(client, owned)`` pair for an address, a Client or a cluster object."""
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    if isinstance(scheduler, (str, os.PathLike)):
        address = os.fspath(scheduler).strip()
        if not address:
            raise InvalidValueError("--scheduler expects an address such as tcp://HOST:8786; got ''")
        try:  # refuse a bad scheme here: a Client that fails on it hangs for 20 s when collected
            from distributed.comm.addressing import parse_address
            from distributed.comm.registry import get_backend
            get_backend(parse_address(address, strict=False)[0])
        except (ValueError, TypeError) as exc:
            raise InvalidValueError(f"--scheduler {address}: expected an address such as tcp://HOST:8786 "
                                    f"({_one_line(exc)})") from None
        except ImportError:  # pragma: no cover - distributed moved these helpers
            pass
        try:
            return distributed.Client(address, timeout="10s", set_as_default=False), True
        except (OSError, TimeoutError, ValueError) as exc:
            raise InvalidValueError(f"cannot connect to the Dask scheduler at {address}: "
                                    f"{_one_line(exc)}") from None
    if hasattr(scheduler, "scheduler_address"):  # LocalCluster, SSHCluster, ...
        return distributed.Client(scheduler, set_as_default=False), True
    raise InvalidValueError(f"scheduler must be an address such as tcp://HOST:8786, a distributed.Client or a "
                            f"cluster; got {type(scheduler).__name__}")


# ---------------------------------------------------------------------------- progress
class Progress:
    """A progress bar on stderr: ``rich.progress`` when installed, else a counter line.

    ``enabled=None`` shows it only when stderr is a terminal (silent in pipes, files and CI logs).
    Reusable for any counted work: ``advance()`` per item, ``close()`` at the end.
    """

    def __init__(self, total: int, *, enabled: bool | None = None, description: str = "checking",
                 stream=None, noun: str = "checkpoints"):
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            enabled = _isatty(self.stream)
        self.enabled = bool(enabled) and total > 0
        self.total, self.count, self.errors = total, 0, 0
        self.description, self.noun = description, noun
        self._rich = None
        self._task = None
        self._last = 0.0
        if self.enabled:
            try:
                from rich.console import Console
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                           TimeElapsedColumn, TimeRemainingColumn)
            except ImportError:
                self._rich = None
            else:
                self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                          TextColumn("{task.fields[errors]}"), TimeElapsedColumn(),
                                          TimeRemainingColumn(), console=Console(file=self.stream),
                                          transient=True)
                self._rich.start()
                self._task = self._rich.add_task(description, total=total, errors="")
            if self._rich is None:
                self._line()

    def advance(self, result: dict | None = None) -> None:
        self.count += 1
        if result is not None and result.get("verdict") == "error":
            self.errors += 1
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.update(self._task, advance=1,
                              errors=f"{self.errors} error{'s' * (self.errors != 1)}" if self.errors else "")
        else:
            now = time.monotonic()
            if now - self._last >= 0.1 or self.count == self.total:
                self._line()

    def _line(self) -> None:
        self._last = time.monotonic()
        errors = f", {self.errors} error{'s' * (self.errors != 1)}" if self.errors else ""
        self.stream.write(f"\r{self.description} {self.count}/{self.total} {self.noun}{errors}")
        self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        if self._rich is not None:
            self._rich.stop()
        else:
            self.stream.write("\r\033[K")  # clear the counter line
            self.stream.flush()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


# ---------------------------------------------------------------------------- summary
#: the ``trained`` answers of a polished check (:func:`certify.driver.trained_answer`), in table order
TRAINED_OUTCOMES = ("near_minimum", "near_saddle", "not_converged", "undecided")

def summarize(results: list[dict], wall_s: float | None = None, slowest: int = 5) -> dict:
    """Counts per verdict (and, for a sweep with ``--polish``, per ``trained`` outcome and how many end in a
    certified end point), total and wall time, the slowest checkpoints and the errors."""
    counts = {v: 0 for v in VERDICTS}
    for r in results:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    timed = sorted((r for r in results if r.get("time_s") is not None), key=lambda r: -r["time_s"])
    answered = [r["trained"] for r in results if isinstance(r.get("trained"), dict)]
    outcomes = {}
    if answered:        # --polish: what the verdicts mean for the checkpoints (driver.trained_answer)
        outcomes = {o: 0 for o in TRAINED_OUTCOMES}
        for t in answered:
            outcomes[t.get("outcome")] = outcomes.get(t.get("outcome"), 0) + 1
    return {"n": len(results), "counts": counts, "outcomes": outcomes,
            "end_certified": sum(bool(t.get("end_certified")) for t in answered),
            "cpu_s": float(sum(r.get("time_s") or 0.0 for r in results)), "wall_s": wall_s,
            "slowest": [(r["checkpoint"], r["time_s"], r["verdict"]) for r in timed[:slowest]],
            "errors": [(r["checkpoint"], r["error"]) for r in results if r["verdict"] == "error"]}


def format_summary(summary: dict) -> str:
    """The human table ``certify batch`` prints."""
    n = summary["n"]
    lines = [f"{'verdict':<16}{'count':>7}"]
    for verdict, count in summary["counts"].items():
        if count or verdict != "error":
            lines.append(f"{verdict:<16}{count:>7}")
    lines.append(f"{'total':<16}{n:>7}")
    outcomes = summary.get("outcomes") or {}
    if outcomes:
        k = sum(outcomes.values())
        lines.append("")
        lines.append(f"{'answer (polish)':<16}{'count':>7}")
        for outcome, count in outcomes.items():
            lines.append(f"{str(outcome):<16}{count:>7}")
        lines.append(f"{summary.get('end_certified', 0)} of {k} end in a certified end point (a certified minimum, a "
                     f"saddle whose escape shows in float64, or no minimum below)")
    wall = summary.get("wall_s")
    lines.append("")
    lines.append(f"time: {wall:.3f} s wall, {summary['cpu_s']:.3f} s summed over checkpoints" if wall is not None
                 else f"time: {summary['cpu_s']:.3f} s summed over checkpoints")
    if summary["slowest"]:
        lines.append("slowest:")
        width = max(len(c) for c, _, _ in summary["slowest"])
        for ckpt, t, verdict in summary["slowest"]:
            lines.append(f"  {t:>9.3f} s  {ckpt:<{width}}  {verdict}")
    if summary["errors"]:
        k = len(summary["errors"])
        lines.append(f"{k} checkpoint{'s' * (k != 1)} could not be checked (one line each on stderr)")
    return "\n".join(lines)
