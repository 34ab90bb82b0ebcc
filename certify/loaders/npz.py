"""The native ``.npz`` format."""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"
_EXPECTED = "expected an .npz archive of named arrays (as written by numpy.savez)"


def check_file(path: Path, role: str = "file", expected: str = _EXPECTED) -> None:
    """Raise :class:`ModelLoadError` unless ``path`` is an existing, readable regular file.

    ``expected`` says what the file should be (default: an .npz archive).
    """
    if not path.exists():
        parent = path.parent
        if str(parent) not in ("", ".") and not parent.is_dir():
            raise ModelLoadError(f"{role} {path} does not exist (no directory {parent})")
        raise ModelLoadError(f"{role} {path} does not exist")
    if path.is_dir():
        raise ModelLoadError(f"{role} {path} is a directory; {expected}")
    if not path.is_file():
        raise ModelLoadError(f"{role} {path} is not a regular file; {expected}")


def _describe(head: bytes) -> str:
    """A few words on what a file that is not a zip archive looks like."""
    if head[:1] == b"\x80":
        return "a Python pickle"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data starting with {head[:8]!r}"
    if text.isprintable() or all(c.isprintable() or c.isspace() for c in text):
        return f"a text file starting with {text.split(chr(10))[0][:20]!r}"
    return f"data starting with {head[:8]!r}"


def read_npz(path: Path, role: str = "file") -> dict:
    """All arrays of an ``.npz`` file (no pickles), with clear errors for every failure.

    ``role`` ("model file", "data file") names the file in messages.
    """
    path = Path(path)
    check_file(path, role)
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except PermissionError:
        raise ModelLoadError(f"cannot read {role} {path}: permission denied") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read {role} {path}: {exc.strerror or exc}") from None
    if not head:
        raise ModelLoadError(f"{role} {path} is empty (0 bytes); {_EXPECTED}")
    if head.startswith(_NPY_MAGIC):
        raise ModelLoadError(f"{role} {path} holds a single .npy array; {_EXPECTED} "
                             f"such as W1, b1, ... or X, y")
    if not head.startswith(_ZIP_MAGIC):
        raise ModelLoadError(f"{role} {path} is not an .npz archive: {_EXPECTED}, got {_describe(head)}")
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as exc:
        raise ModelLoadError(f"{role} {path} is truncated or corrupted: {_EXPECTED}, but reading it "
                             f"failed ({_short(exc)})") from None
    with npz:
        members = npz.zip.namelist()
        keys = [k for k in npz.files if f"{k}.npy" in members]
        if not keys:
            hint = " (a PyTorch checkpoint? save the weights with numpy.savez)" \
                if any(m.endswith("data.pkl") for m in members) else ""
            shown = ", ".join(members[:5]) + (", ..." if len(members) > 5 else "")
            raise ModelLoadError(f"{role} {path} is a zip archive without .npy arrays; {_EXPECTED}, got "
                                 f"members {shown or 'none'}{hint}")
        arrays = {}
        for key in keys:
            try:
                arrays[key] = npz[key]
            except ValueError as exc:
                if "pickle" in str(exc):
                    raise ModelLoadError(f"array {key!r} in {role} {path} is an object array; expected a "
                                         f"numeric array (certify never loads pickled data)") from None
                raise ModelLoadError(f"{role} {path} is truncated or corrupted: cannot read array "
                                     f"{key!r} ({_short(exc)})") from None
            except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
                raise ModelLoadError(f"{role} {path} is truncated or corrupted: cannot read array "
                                     f"{key!r} ({_short(exc)})") from None
        return arrays


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


_KEY = re.compile(r"^([Wb])(\d+)$")


def _numbered(prefix: str, numbers) -> str:
    return ", ".join(f"{prefix}{l}" for l in sorted(numbers))


def layers_from_arrays(arrays: dict, where: str):
    """``W1, b1, ..., WL, bL`` from a mapping; checks numbering; returns (weights, biases, activation).

    ``where`` names the source in messages (e.g. "model file model.npz").
    """
    found = {"W": {}, "b": {}}
    for key, value in arrays.items():
        m = _KEY.match(str(key))
        if m:
            found[m.group(1)][int(m.group(2))] = value
    if not found["W"]:
        raise ModelLoadError(f"{where} has no weight arrays: expected W1, b1, ..., WL, bL "
                             f"(found: {', '.join(sorted(map(str, arrays))) or 'nothing'})")
    Ws = found["W"]
    L = max(Ws)
    missing = [l for l in range(1, L + 1) if l not in Ws]
    if min(Ws) < 1 or missing:
        got = _numbered("W", Ws)
        if min(Ws) < 1:
            raise ModelLoadError(f"{where} has layers {got}: expected W1, ..., WL numbered from 1 (no W0)")
        raise ModelLoadError(f"{where} has layers {got} but no {_numbered('W', missing)}: expected "
                             f"W1, ..., WL numbered consecutively")
    no_bias = [l for l in range(1, L + 1) if l not in found["b"]]
    if no_bias:
        raise ModelLoadError(f"{where} has W1..W{L} but no {_numbered('b', no_bias)}: every layer needs a "
                             f"bias (use zeros for a layer without one)")
    extra = [l for l in found["b"] if l < 1 or l > L]
    if extra:
        raise ModelLoadError(f"{where} has {_numbered('b', extra)} but no matching weight matrix: "
                             f"expected biases b1..b{L} for W1..W{L}")
    act = None
    if "activation" in arrays:
        act = _activation_name(arrays["activation"], where)
    weights, biases = [], []
    for l in range(1, L + 1):
        for name, value, out in ((f"W{l}", Ws[l], weights), (f"b{l}", found["b"][l], biases)):
            arr = _numeric(value, name, where)
            out.append(arr)
    return weights, biases, act


def _numeric(value, name: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise ModelLoadError(f"{name} in {where} must be a rectangular numeric array; got ragged or "
                             f"malformed {type(value).__name__}") from None
    if arr.dtype.kind not in "fiub":
        kind = {"c": "complex", "U": "string", "S": "bytes", "O": "object"}.get(arr.dtype.kind, "")
        raise ModelLoadError(f"{name} in {where} must be a real numeric array; got "
                             f"{kind + ' ' if kind else ''}dtype {arr.dtype}")
    return arr


def _activation_name(value, where: str) -> str:
    """The activation stored in a checkpoint: a string array with one element."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "US" or arr.size != 1:
        raise ModelLoadError(f"array 'activation' in {where} must hold one string such as 'relu'; got "
                             f"dtype {arr.dtype}, shape {arr.shape}")
    item = arr.ravel()[0]
    if isinstance(item, bytes):
        try:
            item = item.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelLoadError(f"array 'activation' in {where} must hold one string such as 'relu'; "
                                 f"got undecodable bytes {item[:20]!r}") from None
    return str(item)


def head_bytes(path, where: str, n: int, expected: str) -> bytes:
    """The first ``n`` bytes of ``path``, with one-line errors for unreadable or empty files."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(n)
    except PermissionError:
        raise ModelLoadError(f"cannot read {where}: permission denied") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read {where}: {exc.strerror or exc}") from None
    if not head:
        raise ModelLoadError(f"{where} is empty (0 bytes); {expected}")
    return head
