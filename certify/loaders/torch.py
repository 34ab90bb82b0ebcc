"""PyTorch: state dicts saved with ``torch.save`` (``.pt``/``.pth``) and ``nn.Module`` objects.

torch is an optional extra (``pip install certify[torch]``) and is imported only inside these
functions. Files are read with ``torch.load(path, map_location="cpu", weights_only=True)``: certify
never unpickles code. Parameters are converted to float64 exactly (every float16, bfloat16 and
float32 value is a float64 value).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .npz import head_bytes
from ..errors import ModelLoadError, ShapeError, UnknownNameError, UnsupportedLayerError
from ..network import Activation
from .statedict import layers_from_state_dict

#: keys under which training checkpoints keep the model's state dict
WRAPPER_KEYS = ("model_state_dict", "state_dict", "model")
_EXPECTED = "expected a file written by torch.save"


def _first_sentence(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.split(r"(?<=[a-z0-9])\. ", text)[0].rstrip(".")
    return text if len(text) <= 120 else text[:117] + "..."


def is_tensor(value) -> bool:
    torch = _torch_if_loaded()
    return torch is not None and isinstance(value, torch.Tensor)


def _torch_if_loaded():
    import sys
    torch = sys.modules.get("torch")
    return torch if torch is not None and hasattr(torch, "Tensor") else None


def to_numpy(value, name: str, where: str) -> np.ndarray:
    """A tensor (any device, float/int dtype) as a numpy array: floats become float64, exactly.

    Anything that is not a tensor is returned unchanged.
    """
    torch = _torch_if_loaded()
    if torch is None or not isinstance(value, torch.Tensor):
        return value
    t = value.detach()
    if t.is_quantized or t.is_sparse or t.is_complex() or t.layout != torch.strided:
        raise ModelLoadError(f"{name!r} in {where} must be a dense real tensor; got "
                             f"{'a quantized' if t.is_quantized else 'a complex' if t.is_complex() else 'a sparse'} "
                             f"tensor of dtype {t.dtype}")
    if t.device.type == "meta":
        raise ModelLoadError(f"{name!r} in {where} is on the meta device: it has no values")
    t = t.cpu()
    if t.is_floating_point():
        t = t.to(torch.float64)
    elif t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.numpy().copy()


def read_checkpoint(path: Path, role: str):
    """``torch.load`` of ``path`` (weights only), with one-line errors for every failure."""
    import torch

    from .npz import _describe
    where = f"{role} {path}"
    head = head_bytes(path, where, 64, _EXPECTED)
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise ModelLoadError(f"{where} is not a PyTorch checkpoint: {_EXPECTED}, got {_describe(head)}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for one cause
        import pickle
        if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
            raise ModelLoadError(f"{where} holds pickled Python objects, not only tensors: certify loads "
                                 f"with weights_only=True and never unpickles code; save "
                                 f"model.state_dict() (or a dict of tensors) instead") from None
        raise ModelLoadError(f"{where} is truncated or corrupted: {_EXPECTED}, but reading it failed "
                             f"({_first_sentence(exc)})") from None


def _state_dict(obj, where: str):
    """The state dict inside what ``torch.load`` returned: itself, or under a wrapper key."""
    if not isinstance(obj, dict):
        raise ModelLoadError(f"{where} holds a {type(obj).__name__}, not a state dict: {_EXPECTED} of "
                             f"model.state_dict()")
    if any(not is_tensor(v) for v in obj.values()):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                return obj[key], f"{where} (under {key!r})"
        bad = next(k for k, v in obj.items() if not is_tensor(v))
        raise ModelLoadError(f"{where} is not a state dict: {bad!r} is not a tensor (type "
                             f"{type(obj[bad]).__name__}), and there is no {', '.join(map(repr, WRAPPER_KEYS))} entry with the "
                             f"model's state dict")
    return obj, where


def load_state_dict(path: Path):
    """``(weights, biases)`` of the Linear layers of a ``.pt``/``.pth`` state dict, in dict order."""
    where = f"model file {path}"
    sd, where = _state_dict(read_checkpoint(path, "model file"), where)
    bad = next((k for k, v in sd.items() if not is_tensor(v)), None)
    if bad is not None:
        raise ModelLoadError(f"{where} is not a state dict of tensors: {bad!r} is not a tensor (type "
                             f"{type(sd[bad]).__name__})")
    items = [(str(k), to_numpy(v, str(k), where)) for k, v in sd.items()]
    weights, biases, _ = layers_from_state_dict(items, where, ordered=True)
    return weights, biases


def load_data(path: Path):
    """``(X, y)`` from a ``.pt``/``.pth`` holding a dict with tensors ``X`` and ``y`` (or a pair)."""
    where = f"data file {path}"
    obj = read_checkpoint(path, "data file")
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and all(map(is_tensor, obj)):
        return to_numpy(obj[0], "X", where), to_numpy(obj[1], "y", where)
    if not isinstance(obj, dict):
        raise ModelLoadError(f"{where} holds a {type(obj).__name__}: expected a dict with tensors X (n, d) "
                             f"and y, or a pair (X, y)")
    missing = [k for k in ("X", "y") if k not in obj]
    if missing:
        raise ModelLoadError(f"{where} has no tensor {' or '.join(missing)}: expected tensors X (n, d) and y "
                             f"(found: {', '.join(sorted(map(str, obj))) or 'nothing'})")
    return to_numpy(obj["X"], "X", where), to_numpy(obj["y"], "y", where)


# ------------------------------------------------------------------------------- nn.Module
_SUPPORTED = "Linear, ReLU, LeakyReLU, Identity, Flatten and Dropout (in eval mode)"


def is_module(model) -> bool:
    torch = _torch_if_loaded()
    return torch is not None and isinstance(model, torch.nn.Module)


def _flatten(module, prefix=""):
    """``[(index, layer), ...]`` of a Sequential, with nested Sequentials expanded (index ``2.1``)."""
    import torch.nn as nn
    out = []
    for name, child in module.named_children():
        index = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            out += _flatten(child, index + ".")
        else:
            out.append((index, child))
    return out


def _describe_act(layer) -> str:
    import torch.nn as nn
    if isinstance(layer, nn.LeakyReLU):
        return f"LeakyReLU(negative_slope={layer.negative_slope!r})"
    return type(layer).__name__


def layers_from_module(model):
    """``(weights, biases, activation spec)`` of an ``nn.Sequential`` of Linear and activation layers.

    The activation comes from the module types (``None`` when the network has a single layer);
    between two Linear layers there must be exactly one activation, the same kind everywhere (no
    activation at all means ``identity``).
    """
    import torch.nn as nn
    where = "the nn.Sequential"
    while True:  # DataParallel / DistributedDataParallel (.module), torch.compile (._orig_mod)
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module) and isinstance(model, (nn.DataParallel,
                                                                   nn.parallel.DistributedDataParallel)):
            inner = model.module
        if not isinstance(inner, nn.Module):
            break
        model = inner
    if isinstance(model, nn.Linear):
        layers = [("0", model)]
    elif isinstance(model, nn.Sequential):
        layers = _flatten(model)
    else:
        raise ModelLoadError(f"cannot read the layers of a {type(model).__name__} module: certify reads an "
                             f"nn.Sequential of {_SUPPORTED} layers; for another module, pass its "
                             f"state_dict() (Linear layers in the order they are applied)")
    linear = []  # (index, W, b)
    gaps = []  # per gap between Linear layers: (index, activation layer) or (None, None)
    pending = None  # the activation seen since the last Linear layer
    for index, layer in layers:
        if isinstance(layer, nn.Linear):
            W = to_numpy(layer.weight, f"layer {index} weight", where)
            b = np.zeros(W.shape[0]) if layer.bias is None else to_numpy(layer.bias, f"layer {index} bias",
                                                                          where)
            if linear and W.shape[1] != linear[-1][1].shape[0]:
                prev = linear[-1]
                raise ShapeError(f"layer {index} of {where} (Linear, {W.shape[1]} -> {W.shape[0]}) takes "
                                 f"{W.shape[1]} inputs but layer {prev[0]} (Linear, {prev[1].shape[1]} -> "
                                 f"{prev[1].shape[0]}) has {prev[1].shape[0]} outputs")
            if linear:
                gaps.append(pending or (None, None))
            linear.append((index, W, b))
            pending = None
        elif isinstance(layer, (nn.ReLU, nn.LeakyReLU)):
            if not linear:
                raise UnsupportedLayerError(f"layer {index} of {where} ({_describe_act(layer)}) comes before "
                                            f"the first Linear layer: certify's networks start with a "
                                            f"Linear layer")
            if pending is not None:
                raise UnsupportedLayerError(f"layers {pending[0]} and {index} of {where} are two activations "
                                            f"in a row ({_describe_act(pending[1])}, {_describe_act(layer)}): "
                                            f"certify needs one activation between Linear layers")
            pending = (index, layer)
        elif isinstance(layer, nn.Identity):
            continue
        elif isinstance(layer, nn.Flatten):
            if (layer.start_dim, layer.end_dim) != (1, -1):
                raise UnsupportedLayerError(f"layer {index} of {where} is Flatten(start_dim={layer.start_dim}, "
                                            f"end_dim={layer.end_dim}): only Flatten(1, -1), a no-op on "
                                            f"(n, d) data, is supported")
        elif type(layer) in (nn.Dropout, nn.Dropout1d, nn.AlphaDropout):
            if layer.training and layer.p > 0:
                raise UnsupportedLayerError(f"layer {index} of {where} is {type(layer).__name__}(p={layer.p}) "
                                            f"in training mode: call model.eval() first (certify checks the "
                                            f"deterministic network)")
        else:
            raise UnsupportedLayerError(f"layer {index} of {where} is {type(layer).__name__}, which certify "
                                        f"does not model: expected {_SUPPORTED} layers")
    if not linear:
        raise ModelLoadError(f"{where} has no Linear layer: certify reads an nn.Sequential of {_SUPPORTED} "
                             f"layers")
    if pending is not None:
        raise UnsupportedLayerError(f"layer {pending[0]} of {where} ({_describe_act(pending[1])}) comes after "
                                    f"the last Linear layer: certify's networks end with a Linear layer (no "
                                    f"output activation; the loss takes the raw outputs)")
    spec = None
    for gap, (index, layer) in enumerate(gaps):
        this = _spec(layer)
        if spec is None:
            spec, first = this, (gap, index, layer)
        elif this != spec:
            def say(g, i, lay):
                after = linear[g][0]
                return f"{_describe_act(lay)} (layer {i})" if lay is not None else f"none after layer {after}"
            raise UnsupportedLayerError(f"{where} mixes hidden activations: {say(*first)} but "
                                        f"{say(gap, index, layer)}; certify needs the same activation after "
                                        f"every hidden Linear layer")
    if spec is not None and spec.startswith("leaky_relu"):
        try:
            Activation.parse(spec)
        except UnknownNameError as exc:
            raise UnknownNameError(f"{exc} (from {_describe_act(first[2])}, layer {first[1]} of {where})") \
                from None
    return [W for _, W, _ in linear], [b for _, _, b in linear], spec


def _spec(layer) -> str:
    import torch.nn as nn
    if layer is None:
        return "identity"
    if isinstance(layer, nn.LeakyReLU):
        return f"leaky_relu:{float(layer.negative_slope)!r}"
    return "relu"
