"""Reading checkpoints and data.

Models (dispatched by suffix):

* ``.npz``: certify's native format, arrays ``W1, b1, ..., WL, bL`` (PyTorch orientation
  ``(out, in)``) and optionally a string ``activation``;
* ``.pt`` / ``.pth`` (extra ``torch``): a PyTorch ``state_dict`` of Linear layers saved with
  ``torch.save`` (keys ``0.weight, 0.bias, 2.weight, ...`` or ``fc1.weight, ...``; ``module.`` and
  ``_orig_mod.`` prefixes are dropped; a checkpoint dict holding it under ``state_dict``,
  ``model`` or ``model_state_dict`` works too), layers in the order of the dict;
* ``.ckpt`` (extra ``torch``): a PyTorch Lightning checkpoint, read as a ``.pt`` file: the model's
  state dict is its ``state_dict`` entry (keys ``model.0.weight, ...``: the LightningModule's
  attribute names);
* ``.onnx`` (extra ``onnx``): a chain of Gemm / MatMul+Add layers with Relu, LeakyRelu or Abs;
* ``.safetensors`` (extra ``safetensors``): state-dict names or ``W1, b1, ...``.

The activation is the ``activation`` argument if given, else the file's (``.npz`` array
``activation``, the ONNX activation nodes, the safetensors metadata entry ``activation``), else
``relu`` with an :class:`~certify.errors.AssumedActivationWarning` (the CLI prints it as one
``certify: warning:`` line): a PyTorch state dict does not say which activation the network uses. In Python a model
may also be a :class:`Network`, a mapping (``{"W1": ..., "b1": ...}`` or a state dict), a list
of ``(W, b)`` or an ``nn.Sequential`` (whose activation is read from its layers).

Data: ``.npz`` with arrays ``X`` (n, d) and ``y``; ``.csv`` with one sample per line, the label in
the last column and an optional header line; ``.pt``/``.pth`` with tensors ``X`` and ``y``;
``.safetensors`` with tensors ``X`` and ``y``. One ``.npz`` holding model and data works for both.

An optional extra that is not installed fails at once with :class:`MissingExtraError`, e.g.
``loading .onnx needs `pip install certify[onnx]```.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

from ..data import Dataset
from ..errors import AssumedActivationWarning, MissingExtraError, ModelLoadError, UnknownNameError
from ..network import Activation, Network
from .npz import check_file, layers_from_arrays, read_npz

#: suffix -> (module to import, pip extra); .npz and .csv need nothing beyond the core
EXTRAS = {".pt": ("torch", "torch"), ".pth": ("torch", "torch"), ".ckpt": ("torch", "torch"), ".onnx": ("onnx", "onnx"),
          ".safetensors": ("safetensors", "safetensors")}
MODEL_SUFFIXES = (".npz", ".pt", ".pth", ".ckpt", ".onnx", ".safetensors")
DATA_SUFFIXES = (".npz", ".csv", ".pt", ".pth", ".safetensors")
#: what a file of each suffix should be, for "is a directory" messages
_EXPECTED_FILE = {".pt": "expected a file written by torch.save", ".pth": "expected a file written by torch.save",
                  ".ckpt": "expected a PyTorch Lightning checkpoint",
                  ".onnx": "expected an ONNX model file", ".safetensors": "expected a .safetensors file",
                  ".csv": "expected a CSV file"}
_MODEL_FORMATS = ("expected .npz (arrays W1, b1, ..., WL, bL), .pt/.pth (a PyTorch state dict), .ckpt "
                  "(PyTorch Lightning), .onnx or .safetensors")
_DATA_FORMATS = ("expected .npz (arrays X (n, d) and y), .csv (features, then the label in the last "
                 "column), .pt/.pth (tensors X and y) or .safetensors (tensors X and y)")


def require_extra(suffix: str) -> None:
    """Raise :class:`MissingExtraError` unless the package that reads ``suffix`` can be imported."""
    if suffix not in EXTRAS:
        return
    module, extra = EXTRAS[suffix]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        detail = "" if getattr(exc, "name", None) == module else \
            f" (importing {module} failed: {' '.join(str(exc).split())[:120]})"
        raise MissingExtraError(f"loading {suffix} needs `pip install certify[{extra}]`{detail}") from None


def load_model(path, activation=None) -> Network:
    """Load a checkpoint file as a :class:`Network` (activation: argument, else file, else relu)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        check_file(path, "model file")
        raise ModelLoadError(f"unsupported checkpoint format {suffix or '(no suffix)'!r} for {path}: "
                             f"{_MODEL_FORMATS}")
    require_extra(suffix)
    check_file(path, "model file", *([_EXPECTED_FILE[suffix]] if suffix in _EXPECTED_FILE else []))
    where = f"model file {path}"
    if suffix == ".npz":
        arrays = read_npz(path, "model file")
        weights, biases, file_act = layers_from_arrays(arrays, where)
        source = "array 'activation'"
    elif suffix in (".pt", ".pth", ".ckpt"):
        from .torch import load_state_dict
        weights, biases = load_state_dict(path)
        file_act, source = None, ""
    elif suffix == ".onnx":
        from .onnx import load_onnx
        weights, biases, file_act = load_onnx(path)
        source = "the activation nodes"
    else:
        from .safetensors import load_safetensors
        weights, biases, file_act = load_safetensors(path)
        source = "metadata 'activation'"
    return Network(tuple(weights), tuple(biases),
                   _activation(activation, file_act, where, source, warn=len(weights) > 1))


def _activation(given, from_file, where: str, source: str = "array 'activation'", warn: bool = False) -> Activation:
    """The activation argument if given, else the one stored with the model, else relu.

    ``warn``: an :class:`AssumedActivationWarning` when relu is assumed (for a file with hidden
    layers: a PyTorch state dict never says which activation its network computes).
    """
    if given is not None:
        return Activation.parse(given)
    if from_file is None:
        if warn:
            warnings.warn(AssumedActivationWarning(
                f"{where} does not record its activation; checking it as a relu network (pass --activation / "
                f"activation= if it was trained with another, e.g. leaky_relu:0.01)"), stacklevel=3)
        return Activation.parse("relu")
    try:
        return Activation.parse(from_file)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{exc} (from {source} in {where}; override with "
                               f"--activation / activation=)") from None


def load_data(path) -> Dataset:
    """Load ``X`` and ``y`` from an ``.npz``, ``.csv``, ``.pt``/``.pth`` or ``.safetensors`` file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        check_file(path, "data file")
        raise ModelLoadError(f"unsupported data format {suffix or '(no suffix)'!r} for {path}: {_DATA_FORMATS}")
    require_extra(suffix)
    check_file(path, "data file", *([_EXPECTED_FILE[suffix]] if suffix in _EXPECTED_FILE else []))
    if suffix == ".csv":
        from .csv import load_csv
        return Dataset(*load_csv(path))
    if suffix in (".pt", ".pth"):
        from .torch import load_data as load_torch_data
        return Dataset(*load_torch_data(path))
    if suffix == ".safetensors":
        from .safetensors import load_data as load_safetensors_data
        return Dataset(*load_safetensors_data(path))
    arrays = read_npz(path, "data file")
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise ModelLoadError(f"data file {path} has no array {' or '.join(missing)}: expected arrays X (n, d) "
                             f"and y (found: {', '.join(sorted(arrays)) or 'nothing'})")
    return Dataset(arrays["X"], arrays["y"])


def as_network(model, activation=None) -> Network:
    """Accept a Network, a path, a mapping (``{"W1": ..., "b1": ...}`` or a state dict), a list of
    ``(W, b)`` or a torch ``nn.Sequential``."""
    if isinstance(model, Network):
        if activation is not None and Activation.parse(activation) != model.activation:
            return Network(model.weights, model.biases, Activation.parse(activation))
        return model
    if isinstance(model, (str, Path)):
        return load_model(model, activation)
    from . import torch as torch_loader  # imports no torch: it only looks at sys.modules
    if torch_loader.is_module(model):
        where = "the nn.Sequential"
        weights, biases, file_act = torch_loader.layers_from_module(model)
        return Network(tuple(weights), tuple(biases), _activation(activation, file_act, where, "its layers"))
    if hasattr(model, "keys"):
        from .statedict import layers_from_state_dict, looks_native
        where = "the model mapping"
        mapping = dict(model)
        if not looks_native(mapping) and any(str(k).rpartition(".")[2] in ("weight", "bias") for k in mapping):
            items = [(str(k), torch_loader.to_numpy(v, str(k), where)) for k, v in mapping.items()]
            weights, biases, _ = layers_from_state_dict(items, where, ordered=True)
            file_act = None
        else:
            mapping = {k: torch_loader.to_numpy(v, str(k), where) for k, v in mapping.items()}
            weights, biases, file_act = layers_from_arrays(mapping, where)
        return Network(tuple(weights), tuple(biases), _activation(activation, file_act, where))
    if isinstance(model, (list, tuple)):
        try:
            weights = [W for W, _ in model]
            biases = [b for _, b in model]
        except (TypeError, ValueError):
            raise ModelLoadError("a model given as a list must hold (W, b) pairs, one per layer") from None
        where = "the model list"
        weights = [torch_loader.to_numpy(W, f"W{l}", where) for l, W in enumerate(weights, start=1)]
        biases = [torch_loader.to_numpy(b, f"b{l}", where) for l, b in enumerate(biases, start=1)]
        act = Activation.parse("relu" if activation is None else activation)
        return Network(tuple(weights), tuple(biases), act)
    raise ModelLoadError(f"cannot read a model from {type(model).__name__}: pass a Network, a path, "
                         f"a mapping of arrays W1, b1, ... (or a state dict), a list of (W, b) or an "
                         f"nn.Sequential")
