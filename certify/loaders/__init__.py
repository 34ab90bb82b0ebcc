"""Reading checkpoints and data.

The native checkpoint is one ``.npz`` with arrays ``W1, b1, ..., WL, bL`` (PyTorch orientation)
and optionally a string ``activation``; data is an ``.npz`` with ``X`` (n, d) and ``y``. One file
holding both works for both roles.
"""

from __future__ import annotations

from pathlib import Path

from ..data import Dataset
from ..errors import ModelLoadError
from ..network import Activation, Network
from .npz import layers_from_arrays, read_npz

MODEL_SUFFIXES = (".npz",)
DATA_SUFFIXES = (".npz",)


def load_model(path, activation=None) -> Network:
    """Load a checkpoint file as a :class:`Network` (activation: argument, else file, else relu)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix != ".npz":
        raise ModelLoadError(f"unsupported checkpoint format {suffix or '(no suffix)'!r} for {path}: "
                             f"expected an .npz with arrays W1, b1, ..., WL, bL")
    arrays = read_npz(path)
    weights, biases, file_act = layers_from_arrays(arrays, str(path))
    act = activation if activation is not None else (file_act or "relu")
    return Network(tuple(weights), tuple(biases), Activation.parse(act))


def load_data(path) -> Dataset:
    """Load ``X`` and ``y`` from an ``.npz`` file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix != ".npz":
        raise ModelLoadError(f"unsupported data format {suffix or '(no suffix)'!r} for {path}: "
                             f"expected an .npz with arrays X (n, d) and y")
    arrays = read_npz(path)
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise ModelLoadError(f"data file {path} has no array {' or '.join(missing)}: expected arrays X (n, d) "
                             f"and y (found: {', '.join(sorted(arrays)) or 'nothing'})")
    return Dataset(arrays["X"], arrays["y"])


def as_network(model, activation=None) -> Network:
    """Accept a Network, a path, a mapping ``{"W1": ..., "b1": ...}`` or a list of ``(W, b)``."""
    if isinstance(model, Network):
        if activation is not None and Activation.parse(activation) != model.activation:
            return Network(model.weights, model.biases, Activation.parse(activation))
        return model
    if isinstance(model, (str, Path)):
        return load_model(model, activation)
    if hasattr(model, "keys"):
        weights, biases, file_act = layers_from_arrays(dict(model), "the model mapping")
        return Network(tuple(weights), tuple(biases), Activation.parse(activation or file_act or "relu"))
    if isinstance(model, (list, tuple)):
        try:
            weights = [W for W, _ in model]
            biases = [b for _, b in model]
        except (TypeError, ValueError):
            raise ModelLoadError("a model given as a list must hold (W, b) pairs, one per layer") from None
        return Network(tuple(weights), tuple(biases), Activation.parse(activation or "relu"))
    torch_module = type(model).__module__.startswith("torch")
    if torch_module:
        raise ModelLoadError("torch modules are not supported yet: save the weights as .npz (W1, b1, ...)")
    raise ModelLoadError(f"cannot read a model from {type(model).__name__}: pass a Network, a path, "
                         f"a mapping of arrays W1, b1, ... or a list of (W, b)")
