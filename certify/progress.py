"""Progress of long work (pieces and faces searched, polishing rounds), without printing.

The library only *reports* progress to a callback installed by the caller (the CLI installs one that
draws on stderr when it is a terminal, and stays silent otherwise)::

    with certify.progress.reporting(lambda stage, done, total: ...):
        certify.check(...)
"""

from __future__ import annotations

import contextlib
import contextvars

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
