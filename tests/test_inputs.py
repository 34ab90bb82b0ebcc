"""Every bad input ends in one clear line on stderr and exit code 2 (no traceback, no output file).

Each case writes its bad file(s) into ``tmp_path``, runs ``certify.cli.main`` in-process and pins
the message with a regex; where the Python API applies, ``certify.check`` must raise the matching
:class:`certify.CertifyError` subclass with the same message. The messages are listed in
docs/errors.md.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import certify
from certify.cli import main
from certify.errors import (CertificateError, CertifyError, InvalidValueError, ModelLoadError, ShapeError,
                            UnknownNameError)

# A valid problem: 3 inputs -> 2 ReLU units -> 1 output, 4 samples.
MODEL = {
    "W1": np.array([[1.0, -1.0, 0.5], [0.5, 2.0, -1.0]]),
    "b1": np.array([0.1, -0.2]),
    "W2": np.array([[1.0, -2.0]]),
    "b2": np.array([0.3]),
}
X = np.array([[1.0, 0.0, 2.0], [0.5, -1.0, 1.0], [-1.0, 2.0, 0.0], [2.0, 1.0, -1.0]])
Y = np.array([1.0, -1.0, 1.0, -1.0])
Y_CLASSES = np.array([0, 1, 2, 1])
MODEL3 = {**MODEL, "W2": np.array([[1.0, -2.0], [0.5, 0.5], [-1.0, 1.0]]), "b2": np.zeros(3)}


def save(tmp: Path, name: str, **arrays) -> Path:
    path = tmp / name
    np.savez(path, **arrays)
    assert path.exists(), "np.savez appends .npz to names without it; use names ending in .npz"
    return path


def problem_file(tmp: Path, name: str = "problem.npz", **changes) -> Path:
    """Model and data in one file; ``changes`` replace arrays (None removes one)."""
    arrays = {**MODEL, "X": X, "y": Y, **changes}
    return save(tmp, name, **{k: v for k, v in arrays.items() if v is not None})


def valid_npz_bytes(tmp: Path) -> bytes:
    return problem_file(tmp, "valid.npz").read_bytes()


# ----------------------------------------------------------------------------- the case table
@dataclass
class Case:
    make: Callable  # tmp_path -> (argv, api) with api a zero-argument callable or None
    phrase: str  # regex the one stderr line must contain
    exc: type | None = None  # CertifyError subclass the API raises
    api_phrase: str | None = None  # regex for the API message (default: phrase)


CASES: dict[str, Case] = {}


def case(phrase, exc=None, api_phrase=None):
    def register(make):
        CASES[make.__name__] = Case(make, phrase, exc, api_phrase)
        return make
    return register


# --- files -------------------------------------------------------------------------------------
@case(r"^certify: error: model file \S*missing\.npz does not exist$", ModelLoadError)
def missing_model_file(tmp):
    path = tmp / "missing.npz"
    return ["check", path], lambda: certify.check(str(path), X, Y)


@case(r"^certify: error: cannot read \S*deep\.json as a certify report: expected JSON nested a few hundred "
      r"levels at most \(certify's proof trees are\); got deeper nesting than Python's JSON reader allows$",
      CertificateError)
def report_nested_too_deep(tmp):
    """A report whose tree is nested 100,000 levels deep: json raises RecursionError, not a clean error."""
    model = problem_file(tmp, activation=np.array("relu"))
    path = tmp / "deep.json"
    path.write_text('{"verdict": "local_min", "problem": {}, "first_order": {"certificate": {"tree": '
                    + '{"minus": ' * 100_000 + '{}' + '}' * 100_000 + '}}}')
    return ["verify", path, model], lambda: certify.verify(str(path), str(model))


@case(r"model file \S*nodir/m\.npz does not exist \(no directory \S*nodir\)", ModelLoadError)
def missing_model_directory(tmp):
    path = tmp / "nodir" / "m.npz"
    return ["check", path], lambda: certify.load_model(path)


@case(r"^certify: error: data file \S*nodata\.npz does not exist$", ModelLoadError)
def missing_data_file(tmp):
    model = save(tmp, "model.npz", **MODEL)
    return ["check", model, "--data", tmp / "nodata.npz"], \
        lambda: certify.check(str(model), data=str(tmp / "nodata.npz"))


@case(r"model file \S*adir\.npz is a directory; expected an \.npz archive of named arrays", ModelLoadError)
def directory_instead_of_file(tmp):
    path = tmp / "adir.npz"
    path.mkdir()
    return ["check", path], lambda: certify.check(str(path), X, Y)


@case(r"data file \S*dir_data\.npz is a directory; expected an \.npz archive", ModelLoadError)
def directory_instead_of_data_file(tmp):
    model = save(tmp, "model.npz", **MODEL)
    (tmp / "dir_data.npz").mkdir()
    return ["check", model, "--data", tmp / "dir_data.npz"], \
        lambda: certify.load_data(tmp / "dir_data.npz")


@case(r"model file \S*notes\.npz is not an \.npz archive: expected an \.npz archive of named arrays "
      r"\(as written by numpy\.savez\), got a text file starting with 'W1 = \[\[1, 2\]\]'", ModelLoadError)
def text_file_named_npz(tmp):
    path = tmp / "notes.npz"
    path.write_text("W1 = [[1, 2]]\nb1 = [0]\n")
    return ["check", path], lambda: certify.check(str(path), X, Y)


@case(r"model file \S*blank\.npz is empty \(0 bytes\); expected an \.npz archive", ModelLoadError)
def empty_file(tmp):
    path = tmp / "blank.npz"
    path.write_bytes(b"")
    return ["check", path], lambda: certify.load_model(path)


@case(r"model file \S*cut\.npz is truncated or corrupted: expected an \.npz archive of named arrays "
      r"\(as written by numpy\.savez\), but reading it failed \(", ModelLoadError)
def truncated_npz(tmp):
    raw = valid_npz_bytes(tmp)
    path = tmp / "cut.npz"
    path.write_bytes(raw[: len(raw) // 2])
    return ["check", path], lambda: certify.check(str(path), X, Y)


@case(r"model file \S*flipped\.npz is truncated or corrupted: cannot read array 'W1'", ModelLoadError)
def corrupted_member(tmp):
    src = problem_file(tmp, "valid.npz")
    raw = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        offset = zf.getinfo("W1.npy").header_offset
    name_len = int.from_bytes(raw[offset + 26:offset + 28], "little")
    extra_len = int.from_bytes(raw[offset + 28:offset + 30], "little")
    data_start = offset + 30 + name_len + extra_len
    raw[data_start + 140] ^= 0xFF  # a byte of W1's values, past the .npy header: the CRC no longer fits
    path = tmp / "flipped.npz"
    path.write_bytes(bytes(raw))
    return ["check", path], lambda: certify.load_model(path)


@case(r"model file \S*single\.npz holds a single \.npy array; expected an \.npz archive of named arrays",
      ModelLoadError)
def npy_named_npz(tmp):
    path = tmp / "single.npz"
    with open(path, "wb") as fh:
        np.save(fh, MODEL["W1"])
    return ["check", path], lambda: certify.load_model(path)


@case(r"model file \S*pickled\.npz is not an \.npz archive: .*got a Python pickle", ModelLoadError)
def pickle_named_npz(tmp):
    path = tmp / "pickled.npz"
    path.write_bytes(pickle.dumps(MODEL))
    return ["check", path], lambda: certify.load_model(path)


@case(r"model file \S*ckpt\.npz is a zip archive without \.npy arrays; .*got members archive/data\.pkl "
      r"\(a PyTorch checkpoint\? save the weights with numpy\.savez\)", ModelLoadError)
def zip_without_arrays(tmp):
    path = tmp / "ckpt.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    return ["check", path], lambda: certify.load_model(path)


@case(r"unsupported checkpoint format '\.h5' for \S*model\.h5: expected \.npz \(arrays W1, b1, \.\.\., WL, bL\), "
      r"\.pt/\.pth \(a PyTorch state dict\), \.ckpt \(PyTorch Lightning\), \.onnx or \.safetensors$", ModelLoadError)
def unsupported_model_suffix(tmp):
    path = tmp / "model.h5"
    path.write_bytes(b"\x89HDF")
    return ["check", path], lambda: certify.check(str(path), X, Y)


@case(r"unsupported data format '\.json' for \S*train\.json: expected \.npz \(arrays X \(n, d\) and y\), \.csv "
      r"\(features, then the label in the last column\), \.pt/\.pth \(tensors X and y\) or \.safetensors "
      r"\(tensors X and y\)$", ModelLoadError)
def unsupported_data_suffix(tmp):
    model = save(tmp, "model.npz", **MODEL)
    data = tmp / "train.json"
    data.write_text("{}")
    return ["check", model, "--data", data], lambda: certify.check(str(model), data=str(data))


@case(r"array 'W1' in model file \S*objects\.npz is an object array; expected a numeric array "
      r"\(certify never loads pickled data\)", ModelLoadError)
def object_array(tmp):
    path = save(tmp, "objects.npz", **{**MODEL, "W1": np.array([[1.0, "a", None]], dtype=object)}, X=X, y=Y)
    return ["check", path], lambda: certify.check(str(path), X, Y)


@case(r"W1 in model file \S*strings\.npz must be a real numeric array; got string dtype <U\d+",
      ModelLoadError)
def string_weights(tmp):
    path = problem_file(tmp, "strings.npz", W1=np.array([["1", "2", "3"], ["4", "5", "6"]]))
    return ["check", path], lambda: certify.check(str(path), X, Y)


@case(r"b2 in model file \S*cplx\.npz must be a real numeric array; got complex dtype complex128",
      ModelLoadError)
def complex_bias(tmp):
    path = problem_file(tmp, "cplx.npz", b2=np.array([0.3 + 1j]))
    return ["check", path], lambda: certify.load_model(path)


@case(r"data X must be a real numeric array; got dtype <U\d+", InvalidValueError)
def string_data(tmp):
    path = problem_file(tmp, X=X.astype(str))
    return ["check", path], lambda: certify.check(MODEL, X.astype(str), Y)


@case(r"data X must be a real numeric array; got dtype complex128", InvalidValueError)
def complex_data(tmp):
    path = problem_file(tmp, X=X + 1j)
    return ["check", path], lambda: certify.check(MODEL, X + 1j, Y)


@case(r"labels y must be a real numeric array; got dtype <U\d+", InvalidValueError)
def string_labels(tmp):
    labels = np.array(["cat", "dog", "cat", "dog"])
    path = problem_file(tmp, y=labels)
    return ["check", path], lambda: certify.check(MODEL, X, labels)


@case(r"data X must be a rectangular numeric array; got ragged or malformed list", ShapeError)
def ragged_data_api(tmp):
    ragged = [[1.0, 2.0, 3.0], [1.0]]
    return None, lambda: certify.check(MODEL, ragged, Y[:2])


@case(r"W1 in the model mapping must be a rectangular numeric array; got ragged or malformed list",
      ModelLoadError)
def ragged_weights_api(tmp):
    return None, lambda: certify.check({**MODEL, "W1": [[1.0, 2.0, 3.0], [1.0]]}, X, Y)


@case(r"W1 must be a real numeric array; got dtype complex128", InvalidValueError)
def complex_weights_list_api(tmp):
    return None, lambda: certify.check([(MODEL["W1"] + 1j, MODEL["b1"]), (MODEL["W2"], MODEL["b2"])], X, Y)


@case(r"array 'activation' in model file \S*act\.npz must hold one string such as 'relu'; got dtype int64, "
      r"shape \(\)", ModelLoadError)
def activation_array_not_a_string(tmp):
    path = problem_file(tmp, "act.npz", activation=np.array(3, dtype=np.int64))
    return ["check", path], lambda: certify.check(str(path), X, Y)


@case(r"unknown activation 'swish': expected one of relu, leaky_relu:ALPHA, abs, identity \(from array "
      r"'activation' in model file \S*swish\.npz; override with --activation / activation=\)", UnknownNameError)
def unknown_activation_in_file(tmp):
    path = problem_file(tmp, "swish.npz", activation=np.array("swish"))
    return ["check", path], lambda: certify.check(str(path), X, Y)


# --- layers ------------------------------------------------------------------------------------
@case(r"model file \S*data_only\.npz has no weight arrays: expected W1, b1, \.\.\., WL, bL \(found: X, y\)",
      ModelLoadError)
def no_layers(tmp):
    path = save(tmp, "data_only.npz", X=X, y=Y)
    return ["check", path], lambda: certify.check(str(path), X, Y)


@case(r"model file \S*gap\.npz has layers W1, W3 but no W2: expected W1, \.\.\., WL numbered consecutively",
      ModelLoadError, api_phrase=r"the model mapping has layers W1, W3 but no W2")
def non_consecutive_layers(tmp):
    arrays = {"W1": MODEL["W1"], "b1": MODEL["b1"], "W3": MODEL["W2"], "b3": MODEL["b2"]}
    path = save(tmp, "gap.npz", **arrays, X=X, y=Y)
    return ["check", path], lambda: certify.check(arrays, X, Y)


@case(r"has layers W2, W3 but no W1: expected W1, \.\.\., WL numbered consecutively", ModelLoadError)
def layers_not_starting_at_one(tmp):
    arrays = {"W2": MODEL["W1"], "b2": MODEL["b1"], "W3": MODEL["W2"], "b3": MODEL["b2"]}
    path = save(tmp, "from2.npz", **arrays, X=X, y=Y)
    return ["check", path], lambda: certify.check(arrays, X, Y)


@case(r"has layers W0, W1: expected W1, \.\.\., WL numbered from 1 \(no W0\)", ModelLoadError)
def layer_zero(tmp):
    arrays = {"W0": MODEL["W1"], "b0": MODEL["b1"], "W1": MODEL["W2"], "b1": MODEL["b2"]}
    path = save(tmp, "zero_based.npz", **arrays, X=X, y=Y)
    return ["check", path], lambda: certify.check(arrays, X, Y)


@case(r"model file \S*nobias\.npz has W1\.\.W2 but no b2: every layer needs a bias \(use zeros for a "
      r"layer without one\)", ModelLoadError)
def missing_bias(tmp):
    path = problem_file(tmp, "nobias.npz", b2=None)
    return ["check", path], lambda: certify.check(str(path), X, Y)


@case(r"has b3 but no matching weight matrix: expected biases b1\.\.b2 for W1\.\.W2", ModelLoadError)
def extra_bias(tmp):
    path = problem_file(tmp, "extra.npz", b3=np.zeros(1))
    return ["check", path], lambda: certify.check({**MODEL, "b3": np.zeros(1)}, X, Y)


@case(r"W1 must be a 2-D \(out, in\) matrix; got shape \(3,\)", ShapeError)
def weight_not_a_matrix(tmp):
    path = problem_file(tmp, W1=np.ones(3))
    return ["check", path], lambda: certify.check({**MODEL, "W1": np.ones(3)}, X, Y)


@case(r"W1 must have at least 1 row \(unit\) and 1 column \(input\); got shape \(0, 3\)", ShapeError)
def layer_without_units(tmp):
    arrays = {"W1": np.zeros((0, 3)), "b1": np.zeros(0), "W2": np.zeros((1, 0)), "b2": np.zeros(1)}
    path = save(tmp, "hollow.npz", **arrays, X=X, y=Y)
    return ["check", path], lambda: certify.check(arrays, X, Y)


# --- shapes ------------------------------------------------------------------------------------
@case(r"data X has 2 features but layer 1 expects 3 \(X\.shape=\(4, 2\), W1\.shape=\(2, 3\)\)", ShapeError)
def data_vs_first_layer(tmp):
    model = save(tmp, "model.npz", **MODEL)
    data = save(tmp, "data.npz", X=X[:, :2], y=Y)
    return ["check", model, "--data", data], lambda: certify.check(MODEL, X[:, :2], Y)


@case(r"W2 has 3 inputs but layer 1 has 2 units \(W1\.shape=\(2, 3\), W2\.shape=\(1, 3\)\)", ShapeError)
def layer_vs_next_layer(tmp):
    path = problem_file(tmp, W2=np.ones((1, 3)))
    return ["check", path], lambda: certify.check({**MODEL, "W2": np.ones((1, 3))}, X, Y)


@case(r"b1 must have length 2 \(the rows of W1\); got shape \(3,\) \(W1\.shape=\(2, 3\)\)", ShapeError)
def bias_length(tmp):
    path = problem_file(tmp, b1=np.zeros(3))
    return ["check", path], lambda: certify.check({**MODEL, "b1": np.zeros(3)}, X, Y)


@case(r"square loss needs y of shape \(n,\) or \(n, 1\) to match the network's 1 output\(s\); "
      r"got shape \(4, 2\)", ShapeError)
def labels_vs_output_width(tmp):
    y2 = np.stack([Y, Y], axis=1)
    path = problem_file(tmp, y=y2)
    return ["check", path, "--loss", "square"], lambda: certify.check(MODEL, X, y2, loss="square")


@case(r"absolute loss needs y of shape \(n,\) or \(n, 3\) to match the network's 3 output\(s\); "
      r"got shape \(4, 2\)", ShapeError)
def labels_vs_output_width_absolute(tmp):
    y2 = np.ones((4, 2))
    path = save(tmp, "abs.npz", **MODEL3, X=X, y=y2)
    return ["check", path, "--loss", "absolute"], lambda: certify.check(MODEL3, X, y2, loss="absolute")


@case(r"labels y have 3 rows but X has 4 samples \(X\.shape=\(4, 3\), y\.shape=\(3,\)\)", ShapeError)
def labels_vs_samples(tmp):
    path = problem_file(tmp, y=Y[:3])
    return ["check", path], lambda: certify.check(MODEL, X, Y[:3])


@case(r"data X must be 2-D \(n samples, d features\); got shape \(4,\) \(use X\.reshape\(-1, 1\) for one "
      r"feature\)", ShapeError)
def data_one_dimensional(tmp):
    path = problem_file(tmp, X=X[:, 0])
    return ["check", path], lambda: certify.check(MODEL, X[:, 0], Y)


@case(r"data X must be 2-D \(n samples, d features\); got shape \(4, 3, 1\)", ShapeError)
def data_three_dimensional(tmp):
    path = problem_file(tmp, X=X[:, :, None])
    return ["check", path], lambda: certify.check(MODEL, X[:, :, None], Y)


@case(r"labels y must have one entry per sample \(4\); got a scalar", ShapeError)
def labels_scalar(tmp):
    path = problem_file(tmp, y=np.array(1.0))
    return ["check", path], lambda: certify.check(MODEL, X, np.array(1.0))


@case(r"hinge loss needs a network with 1 output; this one has 3", ShapeError)
def hinge_with_many_outputs(tmp):
    path = save(tmp, "three.npz", **MODEL3, X=X, y=Y)
    return ["check", path, "--loss", "hinge"], lambda: certify.check(MODEL3, X, Y, loss="hinge")


@case(r"cross_entropy loss needs a network with at least 2 outputs; this one has 1", ShapeError)
def cross_entropy_with_one_output(tmp):
    path = problem_file(tmp, y=np.array([0, 1, 0, 1]))
    return ["check", path, "--loss", "cross_entropy"], \
        lambda: certify.check(MODEL, X, [0, 1, 0, 1], loss="cross_entropy")


# --- values ------------------------------------------------------------------------------------
@case(r"data X contains 1 NaN or infinite value\(s\); expected finite numbers \(first: X\[1, 2\] = nan\)",
      InvalidValueError)
def nan_in_data(tmp):
    bad = X.copy()
    bad[1, 2] = np.nan
    path = problem_file(tmp, X=bad)
    return ["check", path], lambda: certify.check(MODEL, bad, Y)


@case(r"data X contains 2 NaN or infinite value\(s\); expected finite numbers \(first: X\[0, 0\] = inf\)",
      InvalidValueError)
def inf_in_data(tmp):
    bad = X.copy()
    bad[0, 0], bad[3, 1] = np.inf, -np.inf
    path = problem_file(tmp, X=bad)
    return ["check", path], lambda: certify.check(MODEL, bad, Y)


@case(r"labels y contain 1 NaN or infinite value\(s\); expected finite numbers \(first: y\[2\] = nan\)",
      InvalidValueError)
def nan_in_labels(tmp):
    bad = Y.copy()
    bad[2] = np.nan
    path = problem_file(tmp, y=bad)
    return ["check", path], lambda: certify.check(MODEL, X, bad)


@case(r"W1 contains 1 NaN or infinite value\(s\); expected finite numbers \(first: W1\[0, 1\] = inf\)",
      InvalidValueError)
def inf_in_weights(tmp):
    W1 = MODEL["W1"].copy()
    W1[0, 1] = np.inf
    path = problem_file(tmp, W1=W1)
    return ["check", path], lambda: certify.check({**MODEL, "W1": W1}, X, Y)


@case(r"b2 contains 1 NaN or infinite value\(s\); expected finite numbers \(first: b2\[0\] = nan\)",
      InvalidValueError)
def nan_in_bias(tmp):
    path = problem_file(tmp, b2=np.array([np.nan]))
    return ["check", path], lambda: certify.check({**MODEL, "b2": [np.nan]}, X, Y)


@case(r"data X is empty: expected at least 1 sample; got shape \(0, 3\)", InvalidValueError)
def empty_data(tmp):
    path = problem_file(tmp, X=np.zeros((0, 3)), y=np.zeros(0))
    return ["check", path], lambda: certify.check(MODEL, np.zeros((0, 3)), np.zeros(0))


@case(r"data X has no features: expected at least 1 column; got shape \(4, 0\)", InvalidValueError)
def data_without_features(tmp):
    model = save(tmp, "model.npz", **MODEL)
    data = save(tmp, "data.npz", X=np.zeros((4, 0)), y=Y)
    return ["check", model, "--data", data], lambda: certify.check(MODEL, np.zeros((4, 0)), Y)


@case(r"the forward pass overflows float64 at layer 2: expected finite pre-activations, got NaN/inf",
      InvalidValueError)
def forward_overflow(tmp):
    big = {**MODEL, "W1": MODEL["W1"] * 1e200, "W2": MODEL["W2"] * 1e200}
    path = save(tmp, "big.npz", **big, X=X, y=Y)
    return ["check", path], lambda: certify.check(big, X, Y)


@case(r"the training loss overflows float64: expected a finite value, got inf", InvalidValueError)
def loss_overflow(tmp):
    huge = Y * 1e200
    path = problem_file(tmp, y=huge)
    return ["check", path], lambda: certify.check(MODEL, X, huge)


@case(r"hinge loss needs labels in \{-1, \+1\}; got values \{0, 1\} \(map 0 to -1\)", InvalidValueError)
def hinge_labels_zero_one(tmp):
    y01 = (Y > 0).astype(float)
    path = problem_file(tmp, y=y01)
    return ["check", path, "--loss", "hinge"], lambda: certify.check(MODEL, X, y01, loss="hinge")


@case(r"hinge loss needs labels in \{-1, \+1\}; got values \{-1, 0\.5, 1, 2\}$", InvalidValueError)
def hinge_labels_other(tmp):
    bad = np.array([-1.0, 0.5, 1.0, 2.0])
    path = problem_file(tmp, y=bad)
    return ["check", path, "--loss", "hinge"], lambda: certify.check(MODEL, X, bad, loss="hinge")


@case(r"logistic loss needs labels in \{-1, \+1\}; got values \{0, 1\} \(map 0 to -1\)", InvalidValueError)
def logistic_labels(tmp):
    y01 = (Y > 0).astype(float)
    path = problem_file(tmp, y=y01)
    return ["check", path, "--loss", "logistic"], lambda: certify.check(MODEL, X, y01, loss="logistic")


@case(r"multiclass_hinge loss needs class labels in 0\.\.2 for a network with 3 outputs; got 3 "
      r"\(1 label\(s\) out of range, values from 0 to 3\)", InvalidValueError)
def class_label_out_of_range(tmp):
    labels = np.array([0, 1, 3, 2])
    path = save(tmp, "mc.npz", **MODEL3, X=X, y=labels)
    return ["check", path, "--loss", "multiclass_hinge"], \
        lambda: certify.check(MODEL3, X, labels, loss="multiclass_hinge")


@case(r"cross_entropy loss needs class labels in 0\.\.2 for a network with 3 outputs; got -1", InvalidValueError)
def class_label_negative(tmp):
    labels = np.array([0, -1, 2, 1])
    path = save(tmp, "ce.npz", **MODEL3, X=X, y=labels)
    return ["check", path, "--loss", "cross_entropy"], \
        lambda: certify.check(MODEL3, X, labels, loss="cross_entropy")


@case(r"cross_entropy loss needs integer class labels in 0\.\.2; got non-integer value 1\.5 "
      r"\(1 non-integer label\(s\)\)", InvalidValueError)
def class_label_not_integer(tmp):
    labels = np.array([0.0, 1.5, 2.0, 1.0])
    path = save(tmp, "ce.npz", **MODEL3, X=X, y=labels)
    return ["check", path, "--loss", "cross_entropy"], \
        lambda: certify.check(MODEL3, X, labels, loss="cross_entropy")


@case(r"multiclass_hinge loss needs integer class labels of shape \(n,\); got shape \(4, 3\) \(one-hot rows: "
      r"store y\.argmax\(axis=1\)\)$", ShapeError)
def class_labels_one_hot(tmp):
    onehot = np.eye(3)[Y_CLASSES]
    path = save(tmp, "onehot.npz", **MODEL3, X=X, y=onehot)
    return ["check", path, "--loss", "multiclass_hinge"], \
        lambda: certify.check(MODEL3, X, onehot, loss="multiclass_hinge")


# --- names -------------------------------------------------------------------------------------
@case(r"unknown activation 'sigmoid': expected one of relu, leaky_relu:ALPHA, abs, identity$", UnknownNameError)
def unknown_activation(tmp):
    path = problem_file(tmp)
    return ["check", path, "--activation", "sigmoid"], lambda: certify.check(MODEL, X, Y, activation="sigmoid")


@case(r"malformed leaky ReLU slope 'abc' in activation 'leaky_relu:abc': expected a number 0 <= alpha < 1, "
      r"as in 'leaky_relu:0\.25'", UnknownNameError)
def leaky_slope_not_a_number(tmp):
    path = problem_file(tmp)
    return ["check", path, "--activation", "leaky_relu:abc"], \
        lambda: certify.check(MODEL, X, Y, activation="leaky_relu:abc")


@case(r"leaky ReLU slope must satisfy 0 <= alpha < 1; got '1\.5' in 'leaky_relu:1\.5'", UnknownNameError)
def leaky_slope_too_large(tmp):
    path = problem_file(tmp)
    return ["check", path, "--activation", "leaky_relu:1.5"], \
        lambda: certify.check(MODEL, X, Y, activation="leaky_relu:1.5")


@case(r"leaky ReLU slope must satisfy 0 <= alpha < 1; got '-0\.1' in 'leaky_relu:-0\.1'", UnknownNameError)
def leaky_slope_negative(tmp):
    path = problem_file(tmp)
    return ["check", path, "--activation=leaky_relu:-0.1"], \
        lambda: certify.check(MODEL, X, Y, activation="leaky_relu:-0.1")


@case(r"leaky ReLU slope must satisfy 0 <= alpha < 1; got 'nan' in 'leaky_relu:nan'", UnknownNameError)
def leaky_slope_nan(tmp):
    path = problem_file(tmp)
    return ["check", path, "--activation", "leaky_relu:nan"], \
        lambda: certify.check(MODEL, X, Y, activation="leaky_relu:nan")


@case(r"malformed leaky ReLU activation 'leaky_relu0\.2': expected 'leaky_relu' or 'leaky_relu:ALPHA'",
      UnknownNameError)
def leaky_slope_without_colon(tmp):
    path = problem_file(tmp)
    return ["check", path, "--activation", "leaky_relu0.2"], \
        lambda: certify.check(MODEL, X, Y, activation="leaky_relu0.2")


@case(r"unknown loss 'crossentropy': expected one of square, hinge, multiclass_hinge, absolute, logistic, "
      r"cross_entropy$", UnknownNameError)
def unknown_loss(tmp):
    path = problem_file(tmp)
    return ["check", path, "--loss", "crossentropy"], lambda: certify.check(MODEL, X, Y, loss="crossentropy")


# --- numbers -----------------------------------------------------------------------------------
def _number_case(flag, value, expected, api_kw=None, api_phrase=None, exc=InvalidValueError):
    def make(tmp):
        path = problem_file(tmp)
        api = (lambda: certify.check(MODEL, X, Y, **{api_kw: float(value)})) if api_kw else None
        return ["check", path, flag, value], api
    name = f"{flag[2:].replace('-', '_')}_{value.replace('-', 'minus')}"
    phrase = (rf"^certify check: error: argument {flag}: expected {expected}; got '{re.escape(value)}' "
              rf"\(see certify check --help\)$")
    CASES[name] = Case(make, phrase, exc if api_kw else None, api_phrase)


for _value in ("-1", "nan", "inf", "1e400", "abc"):
    _number_case("--tol", _value, "a finite number >= 0",
                 api_kw="tol" if _value in ("-1", "nan", "inf") else None,
                 api_phrase=r"kink tolerance must be a finite number >= 0")
    _number_case("--weight-decay", _value, "a finite number >= 0",
                 api_kw="weight_decay" if _value in ("-1", "nan", "inf") else None,
                 api_phrase=r"weight decay must be a finite number >= 0")
for _value in ("-5", "0", "nan", "inf", "ten"):
    _number_case("--time-limit", _value, "a finite number > 0")


@case(r"weight decay must be a finite number >= 0; got 'lots'", InvalidValueError)
def weight_decay_string_api(tmp):
    return None, lambda: certify.check(MODEL, X, Y, weight_decay="lots")


# --- command line ------------------------------------------------------------------------------
@case(r"^certify: error: argument COMMAND: invalid choice: 'chekc' \(choose from '?check'?.*\) "
      r"\(see certify --help\)$")
def unknown_subcommand(tmp):
    return ["chekc", problem_file(tmp)], None


@case(r"^certify: error: unrecognized arguments: --frobnicate \(see certify --help\)$")
def unknown_flag(tmp):
    return ["check", problem_file(tmp), "--frobnicate"], None

@case(r"^certify: error: missing COMMAND: expected 'check', 'verify', 'demo', 'batch', 'plot' or 'bench' \(see certify --help\)$")
@case(r"^certify: error: missing COMMAND: expected 'check', 'verify', 'demo' or 'batch' \(see certify --help\)$")
def no_subcommand(tmp):
    return [], None


@case(r"^certify check: error: the following arguments are required: MODEL \(see certify check --help\)$")
def no_model_argument(tmp):
    return ["check"], None


@case(r"^certify check: error: argument --loss: expected one argument \(see certify check --help\)$")
def flag_without_value(tmp):
    return ["check", problem_file(tmp), "--loss"], None


@case(r"^certify: error: --out \S*missing_dir/report\.json: directory \S*missing_dir does not exist$")
def out_in_missing_directory(tmp):
    return ["check", problem_file(tmp), "--out", tmp / "missing_dir" / "report.json"], None


@case(r"^certify: error: --out \S+ is a directory; expected a file name$")
def out_is_a_directory(tmp):
    (tmp / "reports").mkdir()
    return ["check", problem_file(tmp), "--out", tmp / "reports"], None


@case(r"^certify: error: --out expects a file name; got ''$")
def out_empty(tmp):
    return ["check", problem_file(tmp), "--out", ""], None


@case(r"^certify: error: no data: expected arrays X and y in model file \S*model\.npz or a --data FILE; "
      r"the model file has no X or y \(found: W1, W2, b1, b2\)$")
def model_without_data(tmp):
    return ["check", save(tmp, "model.npz", **MODEL)], None


@case(r"no data: expected arrays X and y in model file \S*half\.npz or a --data FILE; the model file has no y "
      r"\(found: W1, W2, X, b1, b2\)$")
def model_with_x_but_no_y(tmp):
    return ["check", save(tmp, "half.npz", **MODEL, X=X)], None


@case(r"^certify: error: data file \S*labels\.npz has no array X: expected arrays X \(n, d\) and y "
      r"\(found: y\)$", ModelLoadError)
def data_file_without_x(tmp):
    model = save(tmp, "model.npz", **MODEL)
    data = save(tmp, "labels.npz", y=Y)
    return ["check", model, "--data", data], lambda: certify.check(MODEL, data=str(data))


@case(r"^certify: error: data file \S*inputs\.npz has no array y: expected arrays X \(n, d\) and y "
      r"\(found: X\)$", ModelLoadError)
def data_file_without_y(tmp):
    model = save(tmp, "model.npz", **MODEL)
    data = save(tmp, "inputs.npz", X=X)
    return ["check", model, "--data", data], lambda: certify.check(MODEL, data=str(data))


@case(r"^certify: error: data file \S*model\.npz has no array X or y: expected arrays X \(n, d\) and y "
      r"\(found: W1, W2, b1, b2\)$")
def model_given_as_data(tmp):
    model = save(tmp, "model.npz", **MODEL)
    return ["check", problem_file(tmp), "--data", model], None


# ----------------------------------------------------------------------------- the tests
def run_cli(capsys, argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, phrase):
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    assert out == "", out
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    line = err.rstrip("\n")
    assert line.startswith("certify"), line
    assert re.search(phrase, line), f"\n  pattern: {phrase}\n  message: {line}"
    return line


CLI_CASES = [pytest.param(c, id=name) for name, c in CASES.items() if name.endswith("_api") is False]
API_CASES = [pytest.param(c, id=name) for name, c in CASES.items() if c.exc is not None]


@pytest.mark.parametrize("bad", CLI_CASES)
def test_cli_bad_input_is_one_line_exit_2(bad, tmp_path, capsys):
    argv, _ = bad.make(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out_file = out_dir / "report.json"
    if argv and argv[0] == "check" and "--out" not in argv:
        argv = [*argv, "--out", out_file]
    before = set(tmp_path.rglob("*"))
    code, out, err = run_cli(capsys, argv)
    assert_one_line_error(code, out, err, bad.phrase)
    assert not out_file.exists()
    assert set(tmp_path.rglob("*")) == before, "an error must not leave files behind"


@pytest.mark.parametrize("bad", API_CASES)
def test_api_bad_input_raises_certify_error(bad, tmp_path):
    _, api = bad.make(tmp_path)
    phrase = re.sub(r"^\^(certify: error: )?", "", bad.api_phrase or bad.phrase)
    with pytest.raises(bad.exc, match=phrase) as info:
        api()
    assert isinstance(info.value, CertifyError)
    assert "\n" not in str(info.value)


def test_every_certify_error_kind_is_pinned():
    kinds = {c.exc for c in CASES.values() if c.exc is not None}
    assert {ModelLoadError, ShapeError, InvalidValueError, UnknownNameError} <= kinds


def test_unreadable_file(tmp_path, capsys):
    path = problem_file(tmp_path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running with privileges that read any file (root)")
        code, out, err = run_cli(capsys, ["check", path])
    finally:
        path.chmod(0o644)
    assert_one_line_error(code, out, err, r"cannot read model file \S*problem\.npz: permission denied$")


def test_unreadable_file_simulated(tmp_path, capsys, monkeypatch):
    """The same message when open() is refused, also as root (where chmod 0 does not stop reads)."""
    import certify.loaders.npz as npz_module

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(npz_module, "open", refuse, raising=False)
    path = problem_file(tmp_path)
    code, out, err = run_cli(capsys, ["check", path])
    assert_one_line_error(code, out, err, r"^certify: error: cannot read model file \S*problem\.npz: "
                                          r"permission denied$")
    with pytest.raises(ModelLoadError, match="permission denied"):
        certify.check(str(path), X, Y)


def test_write_failure_is_one_line_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    import certify.cli_common as cli

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli.tempfile, "mkstemp", no_space)
    out_file = tmp_path / "report.json"
    path = problem_file(tmp_path, activation=np.array("relu"))  # no warning line before the error
    code, out, err = run_cli(capsys, ["check", path, "--out", out_file])
    assert_one_line_error(code, out, err, r"^certify: error: cannot write --out \S*report\.json: "
                                          r"No space left on device$")
    assert not out_file.exists()


def test_internal_error_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    """A bug (not an input error) still prints one line, exit 1; --verbose shows the traceback."""
    import certify.driver

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(certify.driver, "check", broken)
    monkeypatch.setattr("logging.basicConfig", lambda **kwargs: None)  # keep --verbose from adding handlers
    path = problem_file(tmp_path, activation=np.array("relu"))
    code, out, err = run_cli(capsys, ["check", path])
    assert code == 1 and out == ""
    assert err == ("certify: internal error: RuntimeError: boom second line "
                   "(a bug; rerun with --verbose for the traceback)\n")
    code, out, err = run_cli(capsys, ["check", path, "--verbose"])
    assert code == 1 and "Traceback" in err and "RuntimeError: boom" in err


def test_numeric_warnings_do_not_reach_stderr(tmp_path, capsys):
    """Overflow warnings from numpy would add lines to stderr; the CLI keeps the one-line contract."""
    big = {**MODEL, "W1": MODEL["W1"] * 1e200, "W2": MODEL["W2"] * 1e200}
    code, out, err = run_cli(capsys, ["check", save(tmp_path, "big.npz", **big, X=X, y=Y)])
    assert code == 2 and err.count("\n") == 1 and "Warning" not in err
