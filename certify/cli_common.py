"""Helpers shared by the command-line modules (argument types, one-line errors, atomic writes)."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def _number(minimum: float, strict: bool = False):
    """argparse type: a finite float ``>= minimum`` (``> minimum`` when strict)."""
    expected = f"a finite number {'>' if strict else '>='} {minimum:g}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")) or value < minimum \
                or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
        return value
    return parse


def process_age() -> float:
    """Seconds since certify was first imported (the command's start but for the interpreter's own few
    tens of milliseconds: numpy's, scipy's and torch's imports come after it): ``--time-limit`` counts
    the whole command."""
    import time

    from . import _IMPORTED
    return max(0.0, time.perf_counter() - _IMPORTED)


def _one_line(exc) -> str:
    return " ".join(str(exc).split())


def _write_atomic_bytes(path: str, data: bytes) -> None:
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=str(target.parent or Path(".")))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_writable(path: str, flag: str = "--out") -> None:
    from .errors import InvalidValueError
    if not path.strip():
        raise InvalidValueError(f"{flag} expects a file name; got {path!r}")
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise InvalidValueError(f"{flag} {path} is a directory; expected a file name")
    if not parent.is_dir():
        raise InvalidValueError(f"{flag} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InvalidValueError(f"{flag} {path}: directory {parent} is not writable")
    if flag == "--escape" and target.suffix.lower() not in (".npz", ".pt", ".pth", ".safetensors"):
        raise InvalidValueError(f"--escape writes a checkpoint named by its suffix; expected .npz, .pt, .pth or "
                                f".safetensors, got {path!r}")


def _write_atomic(path: str, text: str) -> None:
    from .errors import InvalidValueError
    target = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=str(target.parent or Path(".")))
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        raise InvalidValueError(f"cannot write --out {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
