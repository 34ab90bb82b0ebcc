"""ONNX graphs of fully connected layers (``pip install certify[onnx]``; onnx is imported lazily).

Read: a chain of ``Gemm`` (``alpha * A B' + beta * C``, with ``transB``) or ``MatMul`` + ``Add``
layers with weights in initializers (or ``Constant`` nodes), separated by ``Relu``, ``LeakyRelu``
(its ``alpha`` attribute, the float32 value kept exactly), ``Abs`` or nothing (identity).
``Identity``, ``Flatten`` (axis 1, on (n, d) data) and inference-mode ``Dropout`` nodes are no-ops.
Anything else (Conv, BatchNormalization, training-mode Dropout, branches, ...) is refused with
:class:`UnsupportedLayerError` naming the node and its op_type.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .npz import head_bytes
from ..errors import ModelLoadError, ShapeError, UnknownNameError, UnsupportedLayerError

_EXPECTED = "expected an ONNX model (as written by torch.onnx.export or onnx.save)"
_SUPPORTED = "Gemm, MatMul + Add, Relu, LeakyRelu, Abs, Identity, Flatten and Dropout (inference)"
_ACTIVATIONS = ("Relu", "LeakyRelu", "Abs")
_NOOPS = ("Identity", "Flatten", "Dropout")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _fold(scale: float, arr: np.ndarray, what: str, node: str, where: str) -> np.ndarray:
    """``scale * arr`` in float64, refused unless every product is exact.

    Exact when ``scale`` is 0 or a power of two, or when ``scale`` and ``arr`` hold float32 values
    (24 + 24 significant bits fit in float64's 53): Gemm's ``alpha`` and ``beta`` are float32
    attributes, so this covers float32 models.
    """
    if scale == 1.0:
        return arr
    if scale == 0.0 or math.frexp(abs(scale))[0] == 0.5 or _float32(arr):
        return scale * arr
    raise UnsupportedLayerError(f"unsupported layer in {where}: node {node!r} is Gemm with {what}={scale!r} "
                                f"on float64 weights, which cannot be folded into them exactly; export "
                                f"with {what}=1")


def _float32(arr: np.ndarray) -> bool:
    with np.errstate(over="ignore"):
        return bool(np.all(arr.astype(np.float32).astype(np.float64) == arr))


def load_onnx(path: Path):
    """``(weights, biases, activation spec or None)`` of an ONNX file."""
    import onnx
    from onnx import helper, numpy_helper

    where = f"model file {path}"
    head_bytes(path, where, 1, _EXPECTED)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ModelLoadError(f"{where} is truncated or corrupted: {_EXPECTED}, but reading it failed "
                             f"({_short(exc)})") from None
    graph = model.graph
    if not graph.node:
        raise ModelLoadError(f"{where} has no nodes: {_EXPECTED} with Gemm or MatMul layers")

    constants = {}
    for init in graph.initializer:
        try:
            constants[init.name] = numpy_helper.to_array(init)
        except Exception as exc:  # noqa: BLE001 - e.g. external data not loaded
            raise ModelLoadError(f"cannot read initializer {init.name!r} of {where} ({_short(exc)}); "
                                 f"certify reads models whose weights are stored in the file") from None
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise UnsupportedLayerError(f"unsupported graph in {where}: it has {len(inputs)} inputs "
                                    f"({', '.join(i.name for i in inputs) or 'none'}); certify reads a chain "
                                    f"of layers with one input")
    rank = len(inputs[0].type.tensor_type.shape.dim) if inputs[0].type.tensor_type.HasField("shape") else None
    current = inputs[0].name

    def name_of(i, node):
        return node.name or f"#{i} ({node.output[0] if node.output else 'no output'})"

    def attr(node, key, default):
        for a in node.attribute:
            if a.name == key:
                return helper.get_attribute_value(a)
        return default

    def constant(name, node_name, op, role):
        if name not in constants:
            raise UnsupportedLayerError(f"unsupported layer in {where}: node {node_name!r} ({op}) takes its "
                                        f"{role} from tensor {name!r}, which is not a constant; certify reads "
                                        f"weights stored as initializers")
        return np.asarray(constants[name])

    weights, biases, gaps = [], [], []
    open_bias = None  # index of the last layer while its bias may still be added (MatMul + Add)
    pending = None  # (node name, op_type, spec) of the activation since the last layer
    for i, node in enumerate(graph.node):
        op, name = node.op_type, name_of(i, node)
        if op == "Constant":
            value = attr(node, "value", None)
            if value is None or len(node.output) != 1:
                raise UnsupportedLayerError(f"unsupported layer in {where}: node {name!r} is a Constant "
                                            f"without a tensor 'value'")
            constants[node.output[0]] = numpy_helper.to_array(value)
            continue
        if op == "Identity" and len(node.input) == 1 and node.input[0] in constants:
            constants[node.output[0]] = constants[node.input[0]]  # how exporters share equal weights
            continue
        data = [x for x in node.input if x and x not in constants]
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedLayerError(f"unsupported layer in {where}: node {name!r} is {node.domain}."
                                        f"{op}, which certify does not model; expected {_SUPPORTED}")
        known = op in ("Gemm", "MatMul", "Add") + _ACTIVATIONS + _NOOPS
        if not known:
            raise UnsupportedLayerError(f"unsupported layer in {where}: node {name!r} is {op}, which certify "
                                        f"does not model; expected {_SUPPORTED}")
        if op in ("Gemm", "MatMul") and node.input[0] == current and len(data) > 1:
            constant(data[1], name, op, "weight" if data[1] == node.input[1] else "bias")  # raises
        if data != [current] or (node.input and node.input[0] in constants and op != "Add"):
            raise UnsupportedLayerError(f"unsupported graph in {where}: node {name!r} ({op}) reads "
                                        f"{', '.join(data) or 'only constants'} instead of the previous "
                                        f"layer's output {current!r}; certify reads a chain of layers (no "
                                        f"branches or skip connections)")
        if op in ("Gemm", "MatMul"):
            if op == "Gemm":
                if attr(node, "transA", 0):
                    raise UnsupportedLayerError(f"unsupported layer in {where}: node {name!r} is Gemm with "
                                                f"transA=1; certify reads layers x -> W x + b on (n, d) data")
                B = constant(node.input[1], name, op, "weight")
                W = B if attr(node, "transB", 0) else B.T
                if W.ndim != 2:
                    raise ShapeError(f"node {name!r} (Gemm) in {where} has a weight of shape {B.shape}; "
                                     f"expected a matrix")
                W = W.astype(np.float64)
                W = _fold(float(attr(node, "alpha", 1.0)), W, "alpha", name, where)
                b = np.zeros(W.shape[0])
                has_c = len(node.input) > 2 and node.input[2]
                if has_c:
                    C = constant(node.input[2], name, op, "bias").astype(np.float64)
                    b = _bias(C, W.shape[0], name, op, where)
                    b = _fold(float(attr(node, "beta", 1.0)), b, "beta", name, where)
            else:
                B = constant(node.input[1], name, op, "weight")
                if B.ndim != 2:
                    raise UnsupportedLayerError(f"unsupported layer in {where}: node {name!r} is MatMul with a "
                                                f"weight of shape {B.shape}; certify reads (in, out) "
                                                f"matrices")
                W, b, has_c = B.T.astype(np.float64), np.zeros(B.shape[1]), False
            if weights:
                if W.shape[1] != weights[-1].shape[0]:
                    raise ShapeError(f"node {name!r} ({op}) in {where} has {W.shape[1]} inputs but the layer "
                                     f"before it has {weights[-1].shape[0]} outputs (weights {weights[-1].shape} "
                                     f"then {W.shape}, as (out, in))")
                gaps.append(pending or (name, None, "identity"))
            weights.append(W)
            biases.append(b)
            open_bias = None if has_c else len(weights) - 1
            pending = None
        elif op == "Add":
            other = [x for x in node.input if x != current]
            if open_bias is None or open_bias != len(weights) - 1 or pending is not None or len(other) != 1:
                raise UnsupportedLayerError(f"unsupported layer in {where}: node {name!r} is an Add that is "
                                            f"not the bias of a MatMul or Gemm; expected {_SUPPORTED}")
            C = constant(other[0], name, op, "bias").astype(np.float64)
            biases[-1] = _bias(C, weights[-1].shape[0], name, op, where)
            open_bias = None
        elif op in _ACTIVATIONS:
            if not weights:
                raise UnsupportedLayerError(f"unsupported layer in {where}: node {name!r} ({op}) comes before "
                                            f"the first Gemm/MatMul layer: certify's networks start with a "
                                            f"linear layer")
            if pending is not None:
                raise UnsupportedLayerError(f"unsupported layer in {where}: nodes {pending[0]!r} and {name!r} are "
                                            f"two activations in a row ({pending[1]}, {op}); certify needs one "
                                            f"activation between layers")
            if op == "LeakyRelu":
                alpha = float(attr(node, "alpha", float(np.float32(0.01))))
                spec = f"leaky_relu:{alpha!r}"
                try:
                    from ..network import Activation
                    Activation.parse(spec)
                except UnknownNameError as exc:
                    raise UnknownNameError(f"{exc} (from node {name!r}, LeakyRelu, in {where})") from None
            else:
                spec = {"Relu": "relu", "Abs": "abs"}[op]
            pending = (name, op, spec)
            open_bias = None
        else:  # Identity, Flatten, Dropout
            if op == "Flatten" and (attr(node, "axis", 1) != 1 or (rank is not None and rank != 2)):
                raise UnsupportedLayerError(f"unsupported layer in {where}: node {name!r} is Flatten(axis="
                                            f"{attr(node, 'axis', 1)}) on a rank-{rank} input; certify reads "
                                            f"(n, d) data")
            if op == "Dropout" and _training(node, constants, attr):
                raise UnsupportedLayerError(f"unsupported layer in {where}: node {name!r} is Dropout in "
                                            f"training mode; export the model in eval mode (model.eval())")
        if len(node.output) < 1:
            raise UnsupportedLayerError(f"unsupported layer in {where}: node {name!r} ({op}) has no output")
        current = node.output[0]
    if not weights:
        raise ModelLoadError(f"{where} has no Gemm or MatMul layer: {_EXPECTED} of fully connected layers")
    if pending is not None:
        raise UnsupportedLayerError(f"unsupported layer in {where}: node {pending[0]!r} ({pending[1]}) comes after "
                                    f"the last layer: certify's networks end with a linear layer (no output "
                                    f"activation; the loss takes the raw outputs)")
    outputs = [o.name for o in graph.output]
    if outputs != [current]:
        raise UnsupportedLayerError(f"unsupported graph in {where}: its outputs are {', '.join(outputs) or 'none'} "
                                    f"but the chain of layers ends in {current!r}; certify reads a chain with "
                                    f"one output")
    spec = None
    for node_name, op, this in gaps:
        if spec is None:
            spec, first = this, (node_name, op)
        elif this != spec:
            def say(n, o, s):
                return f"{o} (node {n!r})" if o else f"none (before node {n!r})"
            raise UnsupportedLayerError(f"{where} mixes hidden activations: {say(*first, spec)} but "
                                        f"{say(node_name, op, this)}; certify needs the same activation after "
                                        f"every hidden layer")
    return weights, biases, spec


def _training(node, constants, attr) -> bool:
    """True unless the Dropout node is provably in inference mode."""
    if attr(node, "is_test", 1) == 0:  # opset < 7
        return True
    if len(node.input) > 2 and node.input[2]:
        flag = constants.get(node.input[2])
        return flag is None or bool(np.asarray(flag).ravel()[0])
    return False


def _bias(C: np.ndarray, n: int, name: str, op: str, where: str) -> np.ndarray:
    """A bias given as shape (), (n,), (1, n) or (1,) as a vector of length n."""
    if C.size in (1, n) and (C.ndim <= 1 or C.shape[:-1] == (1,) * (C.ndim - 1)):
        return np.broadcast_to(C.reshape(-1), (n,)).astype(np.float64)
    raise ShapeError(f"node {name!r} ({op}) in {where} has a bias of shape {C.shape}; expected ({n},) for its "
                     f"{n} outputs")
