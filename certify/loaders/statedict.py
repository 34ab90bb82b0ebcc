"""State dicts of Linear layers (``0.weight``, ``0.bias``, ``fc1.weight``, ...) as weights and biases.

Shared by the PyTorch (``.pt``/``.pth``), safetensors and in-memory mapping loaders. Nothing here
imports torch: values are numpy arrays (the callers convert tensors first).
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import ModelLoadError, ShapeError, UnsupportedLayerError

#: leading key components added by wrappers: DataParallel / DDP (``module.``), torch.compile
#: (``_orig_mod.``)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_BATCH_NORM = ("running_mean", "running_var", "num_batches_tracked")
_EXPECTED = "certify reads only Linear layers (NAME.weight of shape (out, in), optional NAME.bias of shape (out,))"
_NATIVE = re.compile(r"^[Wb]\d+$")


def strip_wrappers(key: str) -> str:
    """``module._orig_mod.0.weight`` -> ``0.weight``."""
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix) and len(key) > len(prefix):
                key, changed = key[len(prefix):], True
    return key


def looks_native(keys) -> bool:
    """True when the keys use certify's own names ``W1, b1, ...`` rather than a state dict's."""
    return any(_NATIVE.match(str(k)) for k in keys)


def _shape(value) -> tuple:
    try:
        return tuple(int(s) for s in np.shape(value))
    except (ValueError, TypeError):
        return ("?",)


def _refuse(where: str, key: str, value, what: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(f"unsupported layer in {where}: {key!r} (shape {_shape(value)}) is {what}; "
                                 f"{_EXPECTED}")


def layers_from_state_dict(items, where: str, *, ordered: bool = True):
    """``(weights, biases, names)`` from ``[(key, array), ...]`` of a state dict of Linear layers.

    ``ordered``: the items are in the network's order (a PyTorch state dict is); otherwise (a
    safetensors file stores its tensors sorted) the layers are ordered by the numbers in their
    names (``0, 2, 10`` or ``fc1, fc2``), and if that order does not chain, by the one order of
    the layers whose shapes chain. Layers without a bias get a zero bias. Refuses with
    :class:`UnsupportedLayerError`, naming the key, anything that is not a Linear weight or bias.
    """
    items = [(strip_wrappers(str(k)), v) for k, v in items]
    if not items:
        raise ModelLoadError(f"{where} holds no tensors: expected a state dict of Linear layers "
                             f"(0.weight, 0.bias, 2.weight, ...)")
    seen = {}
    for key, value in items:
        if key in seen:
            raise ModelLoadError(f"{where} has the key {key!r} twice once the wrapper prefixes "
                                 f"{', '.join(WRAPPER_PREFIXES)} are removed")
        seen[key] = value
    for key, value in items:  # batch norm first: its 1-D weight would otherwise be reported as such
        if key.rpartition(".")[2] in _BATCH_NORM:
            raise _refuse(where, key, value, "a batch-norm statistic (batch normalization is not modelled)")
    groups: dict[str, dict] = {}
    for key, value in items:
        prefix, _, leaf = key.rpartition(".")
        last = prefix.rpartition(".")[2].lower()
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError):
            raise ModelLoadError(f"{key!r} in {where} must be a rectangular numeric array; got ragged or "
                                 f"malformed {type(value).__name__}") from None
        if arr.dtype.kind not in "fiub":
            raise ModelLoadError(f"{key!r} in {where} must be a real numeric tensor; got dtype {arr.dtype}")
        if leaf == "weight":
            if arr.ndim >= 3:
                raise _refuse(where, key, value, "a convolution weight (Conv layers are not modelled)")
            if arr.ndim == 1:
                raise _refuse(where, key, value, "the scale of a normalization layer (BatchNorm, LayerNorm, ...)")
            if arr.ndim == 0:
                raise _refuse(where, key, value, "a scalar, not a (out, in) weight matrix")
            if "emb" in last:
                raise _refuse(where, key, value, "an embedding table (Embedding layers are not modelled)")
        elif leaf == "bias":
            if arr.ndim != 1:
                raise _refuse(where, key, value, "not a bias vector (a Linear bias has shape (out,))")
        else:
            raise _refuse(where, key, value, "not the weight or bias of a Linear layer")
        groups.setdefault(prefix, {})[leaf] = (key, arr.astype(np.float64))
    layers = []
    for prefix, parts in groups.items():
        if "weight" not in parts:
            key, arr = parts["bias"]
            raise ModelLoadError(f"{where} has {key!r} (shape {arr.shape}) but no "
                                 f"{(prefix + '.weight') if prefix else 'weight'!r}: every Linear layer "
                                 f"needs a weight")
        wkey, W = parts["weight"]
        if "bias" in parts:
            bkey, b = parts["bias"]
            if b.shape != (W.shape[0],):
                raise ShapeError(f"{bkey!r} in {where} must have length {W.shape[0]} (the rows of {wkey!r}, "
                                 f"shape {W.shape}); got shape {b.shape}")
        else:
            b = np.zeros(W.shape[0])
        layers.append((wkey, W, b))
    if not ordered:
        layers = _order(layers, where)
    for (pkey, Wp, _), (wkey, W, _) in zip(layers, layers[1:]):
        if W.shape[1] != Wp.shape[0]:
            note = "" if ordered else " (the layers are ordered by their names, and no other order chains)"
            raise ShapeError(f"{wkey!r} in {where} has {W.shape[1]} inputs but the layer before it, {pkey!r}, "
                             f"has {Wp.shape[0]} outputs (shapes {Wp.shape} then {W.shape}){note}")
    return [W for _, W, _ in layers], [b for _, _, b in layers], [k for k, _, _ in layers]


def _natural(key: str):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", key) if t]


def _chains(layers) -> bool:
    return all(W.shape[1] == Wp.shape[0] for (_, Wp, _), (_, W, _) in zip(layers, layers[1:]))


def _order(layers, where: str):
    """Layers sorted by name; if they do not chain, the only order in which they do (if unique)."""
    by_name = sorted(layers, key=lambda layer: _natural(layer[0]))
    if _chains(by_name):
        return by_name
    found, budget = [], [100_000]

    def extend(path, rest):
        if len(found) > 1 or budget[0] <= 0:
            return
        budget[0] -= 1
        if not rest:
            found.append(path)
            return
        for i, layer in enumerate(rest):
            if not path or layer[1].shape[1] == path[-1][1].shape[0]:
                extend(path + [layer], rest[:i] + rest[i + 1:])

    extend([], by_name)
    if len(found) == 1 and budget[0] > 0:
        return found[0]
    if found:
        raise ShapeError(f"the layers in {where} do not chain in the order of their names "
                         f"({', '.join(k for k, _, _ in by_name)}) and their shapes chain in more than "
                         f"one order: name them W1, b1, ..., WL, bL in the network's order")
    return by_name
