"""Reading checkpoints and data.

The native checkpoint is one ``.npz`` with arrays ``W1, b1, ..., WL, bL`` (PyTorch orientation)
and optionally a string ``activation``; data is an ``.npz`` with ``X`` (n, d) and ``y``. One file
holding both works for both roles.
"""

from __future__ import annotations

from pathlib import Path

from ..data import Dataset
from ..errors import ModelLoadError, UnknownNameError
from ..network import Activation, Network
from .npz import check_file, layers_from_arrays, read_npz

MODEL_SUFFIXES = (".npz",)
DATA_SUFFIXES = (".npz",)


def load_model(path, activation=None) -> Network:
    """Load a checkpoint file as a :class:`Network` (activation: argument, else file, else relu)."""
    path = Path(path)
    check_file(path, "model file")
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ModelLoadError(f"unsupported checkpoint format {suffix or '(no suffix)'!r} for {path}: "
                             f"expected an .npz with arrays W1, b1, ..., WL, bL")
    where = f"model file {path}"
    arrays = read_npz(path, "model file")
    weights, biases, file_act = layers_from_arrays(arrays, where)
    return Network(tuple(weights), tuple(biases), _activation(activation, file_act, where))


def _activation(given, from_file, where: str) -> Activation:
    """The activation argument if given, else the one stored with the model, else relu."""
    if given is not None:
        return Activation.parse(given)
    if from_file is None:
        return Activation.parse("relu")
    try:
        return Activation.parse(from_file)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{exc} (from array 'activation' in {where}; override with "
                               f"--activation / activation=)") from None


def load_data(path) -> Dataset:
    """Load ``X`` and ``y`` from an ``.npz`` file."""
    path = Path(path)
    check_file(path, "data file")
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise ModelLoadError(f"unsupported data format {suffix or '(no suffix)'!r} for {path}: "
                             f"expected an .npz with arrays X (n, d) and y")
    arrays = read_npz(path, "data file")
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
        where = "the model mapping"
        weights, biases, file_act = layers_from_arrays(dict(model), where)
        return Network(tuple(weights), tuple(biases), _activation(activation, file_act, where))
    if isinstance(model, (list, tuple)):
        try:
            weights = [W for W, _ in model]
            biases = [b for _, b in model]
        except (TypeError, ValueError):
            raise ModelLoadError("a model given as a list must hold (W, b) pairs, one per layer") from None
        act = Activation.parse("relu" if activation is None else activation)
        return Network(tuple(weights), tuple(biases), act)
    torch_module = type(model).__module__.startswith("torch")
    if torch_module:
        raise ModelLoadError("torch modules are not supported yet: save the weights as .npz (W1, b1, ...)")
    raise ModelLoadError(f"cannot read a model from {type(model).__name__}: pass a Network, a path, "
                         f"a mapping of arrays W1, b1, ... or a list of (W, b)")
