"""Data from a CSV file: one sample per line, the features then the label in the last column.

The delimiter is a comma (or, when the first data line has none, a semicolon, a tab or
whitespace); an optional header line (any line whose cells are not all numbers, before the first
data line) is skipped, and so are blank lines and lines starting with ``#``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelLoadError

_EXPECTED = "expected a CSV of numbers, one sample per line with the label in the last column"


def _cells(line: str, delimiter):
    return [c.strip() for c in (line.split(delimiter) if delimiter else line.split())]


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def load_csv(path: Path):
    """``(X, y)``: all columns but the last, and the last."""
    where = f"data file {path}"
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except PermissionError:
        raise ModelLoadError(f"cannot read {where}: permission denied") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read {where}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ModelLoadError(f"{where} is not a text file: {_EXPECTED}") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise ModelLoadError(f"{where} has no data lines: {_EXPECTED}")
    first = lines[0][1]
    delimiter = next((d for d in (",", ";", "\t") if d in first), None)
    header = None
    if not all(map(_number, _cells(first, delimiter))):
        header, lines = lines[0], lines[1:]
        if not lines:
            raise ModelLoadError(f"{where} has a header line but no data lines: {_EXPECTED}")
        delimiter = next((d for d in (",", ";", "\t") if d in lines[0][1]), None)
    width = len(_cells(lines[0][1], delimiter))
    rows = []
    for n, line in lines:
        cells = _cells(line, delimiter)
        if len(cells) != width:
            raise ModelLoadError(f"{where} line {n} has {len(cells)} column{'s' * (len(cells) != 1)} but line "
                                 f"{lines[0][0]} has {width}: {_EXPECTED}")
        try:
            rows.append([float(c) for c in cells])
        except ValueError:
            bad = next(j for j, c in enumerate(cells) if not _number(c))
            raise ModelLoadError(f"{where} line {n}, column {bad + 1}: {cells[bad][:20]!r} is not a number; "
                                 f"{_EXPECTED}{' (a header is allowed only on the first line)' if header else ''}") \
                from None
    if width < 2:
        raise ModelLoadError(f"{where} has {width} column: {_EXPECTED} (at least 2 columns: features, label)")
    data = np.array(rows, dtype=np.float64)
    return data[:, :-1], data[:, -1]
