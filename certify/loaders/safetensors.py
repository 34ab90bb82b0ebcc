"""safetensors files (``pip install certify[safetensors]``; the package is imported lazily).

Tensors named like a PyTorch state dict (``0.weight``, ``0.bias``, ``fc1.weight``, ...) or with
certify's own names ``W1, b1, ..., WL, bL``. A safetensors file does not keep the order of its
tensors, so state-dict layers are ordered by the numbers in their names (``0, 2, 10``; ``fc1,
fc2``); when that order does not chain, by the one order in which their shapes chain. The file's
metadata entry ``activation`` (e.g. ``{"activation": "leaky_relu:0.1"}``) is used like the
``activation`` array of an ``.npz``. Data files hold tensors ``X`` and ``y``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .npz import head_bytes
from ..errors import ModelLoadError

_EXPECTED = "expected a .safetensors file (as written by safetensors' save_file)"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def read_safetensors(path: Path, role: str):
    """``(tensors as an ordered dict of numpy arrays, metadata dict)``."""
    from safetensors import safe_open

    where = f"{role} {path}"
    head_bytes(path, where, 8, _EXPECTED)
    try:
        with safe_open(str(path), framework="np") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {}
            for key in fh.keys():
                try:
                    tensors[key] = fh.get_tensor(key)
                except Exception as exc:  # noqa: BLE001 - e.g. bfloat16, which numpy lacks
                    raise ModelLoadError(f"cannot read tensor {key!r} of {where} as a numpy array "
                                         f"({_short(exc)}); save it as float32 or float64") from None
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - SafetensorError and friends
        raise ModelLoadError(f"{where} is truncated or corrupted: {_EXPECTED}, but reading it failed "
                             f"({_short(exc)})") from None
    return tensors, metadata


def load_safetensors(path: Path):
    """``(weights, biases, activation from the metadata or None)``."""
    from .npz import layers_from_arrays
    from .statedict import layers_from_state_dict, looks_native

    where = f"model file {path}"
    tensors, metadata = read_safetensors(path, "model file")
    act = metadata.get("activation")
    if looks_native(tensors):
        weights, biases, _ = layers_from_arrays(tensors, where)
        return weights, biases, act
    items = [(k, v) for k, v in tensors.items() if k not in ("X", "y")]
    weights, biases, _ = layers_from_state_dict(items, where, ordered=False)
    return weights, biases, act


def load_data(path: Path):
    """``(X, y)`` from tensors ``X`` and ``y``."""
    where = f"data file {path}"
    tensors, _ = read_safetensors(path, "data file")
    missing = [k for k in ("X", "y") if k not in tensors]
    if missing:
        raise ModelLoadError(f"{where} has no tensor {' or '.join(missing)}: expected tensors X (n, d) and y "
                             f"(found: {', '.join(sorted(tensors)) or 'nothing'})")
    return np.asarray(tensors["X"]), np.asarray(tensors["y"])
