"""The native ``.npz`` format."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError


def read_npz(path: Path) -> dict:
    """All arrays of an ``.npz`` file (no pickles), with clear errors for every failure."""
    if not path.exists():
        raise ModelLoadError(f"no such file: {path}")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory, not an .npz file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise ModelLoadError(f"{path} holds a single array, not an .npz archive of named arrays")
            return {k: npz[k] for k in npz.files}
    except ModelLoadError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ModelLoadError(f"cannot read {path} as an .npz archive: {exc}") from exc
    except ValueError as exc:
        raise ModelLoadError(f"cannot read {path} as an .npz archive (object arrays are refused): {exc}") from exc


_KEY = re.compile(r"^([Wb])(\d+)$")


def layers_from_arrays(arrays: dict, where: str):
    """``W1, b1, ..., WL, bL`` from a mapping; checks numbering; returns (weights, biases, activation)."""
    found = {"W": {}, "b": {}}
    for key, value in arrays.items():
        m = _KEY.match(str(key))
        if m:
            found[m.group(1)][int(m.group(2))] = value
    if not found["W"]:
        raise ModelLoadError(f"{where} has no weight arrays: expected W1, b1, ..., WL, bL "
                             f"(found: {', '.join(sorted(map(str, arrays))) or 'nothing'})")
    L = max(found["W"])
    missing = [f"W{l}" for l in range(1, L + 1) if l not in found["W"]]
    if missing or min(found["W"]) != 1:
        raise ModelLoadError(f"{where} has layers {', '.join(f'W{l}' for l in sorted(found['W']))} but no "
                             f"{', '.join(missing)}: layers must be numbered 1..L consecutively")
    no_bias = [f"b{l}" for l in range(1, L + 1) if l not in found["b"]]
    if no_bias:
        raise ModelLoadError(f"{where} has W1..W{L} but no {', '.join(no_bias)}: every layer needs a bias "
                             f"(use zeros for a layer without one)")
    extra = [f"b{l}" for l in found["b"] if l > L]
    if extra:
        raise ModelLoadError(f"{where} has {', '.join(extra)} but no matching weight matrix")
    act = None
    if "activation" in arrays:
        a = arrays["activation"]
        act = str(a.item() if getattr(a, "ndim", 0) == 0 else a.ravel()[0])
    weights = []
    for l in range(1, L + 1):
        W = np.asarray(found["W"][l])
        if W.dtype.kind not in "fiub":
            raise ModelLoadError(f"W{l} in {where} is not numeric (dtype {W.dtype})")
        weights.append(W)
    biases = []
    for l in range(1, L + 1):
        b = np.asarray(found["b"][l])
        if b.dtype.kind not in "fiub":
            raise ModelLoadError(f"b{l} in {where} is not numeric (dtype {b.dtype})")
        biases.append(b)
    return weights, biases, act
