"""Progress of long work (pieces and faces searched, polishing rounds), without printing.

The library only *reports* progress to a callback installed by the caller (the CLI installs one that
draws on stderr when it is a terminal, and stays silent otherwise)::

    with certify.progress.reporting(lambda stage, done, total: ...):
        certify.check(...)
"""

from __future__ import annotations

import contextlib
import contextvars
import logging

_log = logging.getLogger("certify.progress")


def _format(info: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:.4g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
                     for k, v in info.items())

_callback = contextvars.ContextVar("certify_progress", default=None)


@contextlib.contextmanager
def reporting(callback):
    """Send ``callback(stage, done, total)`` calls from the work done inside the block."""
    token = _callback.set(callback)
    try:
        yield
    finally:
        _callback.reset(token)


def tick(stage: str, done: int, total: int) -> None:
    cb = _callback.get()
    if cb is not None:
        cb(stage, done, total)


def terminal_printer(stream):
    """A callback drawing ``stage: done/total`` on one line of ``stream`` (a terminal)."""
    def draw(stage, done, total):
        end = "\n" if done >= total else ""
        stream.write(f"\r{stage}: {done}/{total}" + " " * 8 + end)
        stream.flush()
    return draw


_detail_callback = contextvars.ContextVar("certify_progress_detail", default=None)


@contextlib.contextmanager
def reporting_details(callback):
    """Send ``callback(stage, info)`` calls (``info`` a dict, e.g. a polishing round's loss,
    reduced gradient and kinks held) from the work done inside the block."""
    token = _detail_callback.set(callback)
    try:
        yield
    finally:
        _detail_callback.reset(token)


def detail(stage: str, **info) -> None:
    """Report what a long stage is doing now to the detail callback, and to the ``certify.progress``
    logger at INFO level (``certify -v`` shows it)."""
    if _log.isEnabledFor(logging.INFO):
        _log.info("%s: %s", stage, _format(info))
    cb = _detail_callback.get()
    if cb is not None:
        cb(stage, info)


def terminal_detail_printer(stream):
    """A detail callback drawing ``stage: key value, ...`` on one line of ``stream`` (a terminal)."""
    def draw(stage, info):
        stream.write(f"\r{stage}: {_format(info)}" + " " * 8)
        stream.flush()
    return draw
