"""Loaders for PyTorch, ONNX, safetensors and CSV files.

Every file is written here by the real library (torch.save, torch.onnx.export, onnx.helper,
safetensors' save_file, numpy.savetxt) and checked against the same weights saved as the native
``.npz``: ``certify.check`` must give the same verdict and the same problem record (widths,
activation, loss value, fingerprints of theta, X and y, so the conversion is exact and the layers
are in the right order and orientation). Bad files end in one pinned line on stderr, exit code 2,
as in tests/test_inputs.py. Tests that need an extra skip without it.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import certify
from certify.cli import main
from certify.errors import (MissingExtraError, ModelLoadError, ShapeError,
                            UnsupportedLayerError)

# torch.compile and the TorchScript ONNX exporter warn about their own deprecated internals
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
                                        "ignore:You are using the legacy TorchScript-based ONNX export")

DATA = Path(__file__).resolve().parent.parent / "data"
GT7 = DATA / "gt7_kink_minimum.npz"  # local_min
GT5 = DATA / "gt5_concave_kink.npz"  # not_stationary


def arrays_of(path: Path) -> dict:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def native(tmp: Path, name: str, weights, biases, activation=None) -> Path:
    """The same network as certify's own .npz (the reference)."""
    arrays = {}
    for l, (W, b) in enumerate(zip(weights, biases), start=1):
        arrays[f"W{l}"], arrays[f"b{l}"] = np.asarray(W, np.float64), np.asarray(b, np.float64)
    if activation is not None:
        arrays["activation"] = np.array(activation)
    path = tmp / name
    np.savez(path, **arrays)
    return path


def data_file(tmp: Path, X, y, name="data.npz") -> Path:
    path = tmp / name
    np.savez(path, X=X, y=y)
    return path


def same_result(model, reference, data, **kw):
    """``certify.check`` on ``model`` agrees with it on the native ``reference`` file."""
    ref = certify.check(str(reference), data=str(data), **kw)
    got = certify.check(model if not isinstance(model, Path) else str(model), data=str(data), **kw)
    assert got.verdict == ref.verdict, (got.verdict, ref.verdict, got.reason)
    assert got.problem == ref.problem
    return got


def run_cli(capsys, argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(capsys, argv, phrase):
    code, out, err = run_cli(capsys, argv)
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    assert out == "", out
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    line = err.rstrip("\n")
    assert re.search(phrase, line), f"\n  pattern: {phrase}\n  message: {line}"
    return line


def gt_problem(path: Path):
    a = arrays_of(path)
    return [a["W1"], a["W2"]], [a["b1"], a["b2"]], a["X"], a["y"]


@pytest.fixture
def random_problem(tmp_path):
    """3 -> 4 -> 4 -> 1 with float32 weights: non-square layers catch transposes and misorders."""
    rng = np.random.default_rng(7)
    shapes = [(4, 3), (4, 4), (1, 4)]
    weights = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    biases = [rng.standard_normal(s[0]).astype(np.float32) for s in shapes]
    X = rng.standard_normal((6, 3)).astype(np.float32).astype(np.float64)
    y = rng.standard_normal(6)
    return weights, biases, data_file(tmp_path, X, y)


# ============================================================================== PyTorch
def _sequential(weights, biases, act=None, bias=True):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    layers = []
    for l, (W, b) in enumerate(zip(weights, biases)):
        lin = nn.Linear(W.shape[1], W.shape[0], bias=bias)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(np.asarray(W), dtype=torch.float32))
            if bias:
                lin.bias.copy_(torch.as_tensor(np.asarray(b), dtype=torch.float32))
        layers.append(lin)
        if l < len(weights) - 1:
            layers.append(act() if act is not None else nn.ReLU())
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("gt, verdict", [(GT7, "local_min"), (GT5, "not_stationary")])
def test_torch_state_dict_same_verdict_as_npz(gt, verdict, tmp_path):
    torch = pytest.importorskip("torch")
    weights, biases, X, y = gt_problem(gt)
    data = data_file(tmp_path, X, y)
    ref = native(tmp_path, "ref.npz", weights, biases)
    model = _sequential(weights, biases)
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    assert list(torch.load(path, weights_only=True)) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    report = same_result(path, ref, data)
    assert report.verdict.value == verdict
    same_result(model, ref, data)  # the nn.Module itself
    same_result(model.state_dict(), ref, data)  # a state dict in memory


def test_torch_prefixes_and_wrappers(random_problem, tmp_path):
    torch = pytest.importorskip("torch")
    weights, biases, data = random_problem
    ref = native(tmp_path, "ref.npz", weights, biases)
    model = _sequential(weights, biases)
    sd = model.state_dict()
    variants = {
        "plain.pt": sd,
        "dataparallel.pth": {f"module.{k}": v for k, v in sd.items()},
        "compiled.pt": {f"_orig_mod.{k}": v for k, v in sd.items()},
        "checkpoint.pt": {"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in sd.items()},
                          "optimizer": {"lr": torch.tensor(0.1)}},
        "lightning.pt": {"state_dict": sd, "global_step": 10},
        "model.pt": {"model": sd},
        # PyTorch Lightning's layout: the LightningModule's attribute name before the keys
        "lightning.ckpt": {"epoch": 9, "global_step": 90, "pytorch-lightning_version": "2.5.0",
                           "state_dict": {f"net.{k}": v for k, v in sd.items()},
                           "hyper_parameters": {"lr": 0.1, "hidden": [5, 4]}, "loops": {},
                           "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1}]}]},
    }
    for name, obj in variants.items():
        path = tmp_path / name
        torch.save(obj, path)
        same_result(path, ref, data)
    # named submodules, in the dict's order (not alphabetical: "out" sorts before "hidden" would not)
    named = {"input.weight": sd["0.weight"], "input.bias": sd["0.bias"], "hidden.weight": sd["2.weight"],
             "hidden.bias": sd["2.bias"], "out.weight": sd["4.weight"], "out.bias": sd["4.bias"]}
    torch.save(named, tmp_path / "named.pt")
    same_result(tmp_path / "named.pt", ref, data)
    same_result(torch.compile(model), ref, data)  # an OptimizedModule (compiled lazily, never run)


def test_torch_linear_without_bias_gets_zero_bias(tmp_path):
    torch = pytest.importorskip("torch")
    weights, biases, X, y = gt_problem(GT5)  # biases are zero
    assert not any(np.any(b) for b in biases)
    model = _sequential(weights, biases, bias=False)
    path = tmp_path / "nobias.pt"
    torch.save(model.state_dict(), path)
    ref, data = native(tmp_path, "ref.npz", weights, biases), data_file(tmp_path, X, y)
    assert same_result(path, ref, data).verdict.value == "not_stationary"
    same_result(model, ref, data)


def test_torch_module_activation_from_layers(random_problem, tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    weights, biases, data = random_problem
    leaky = _sequential(weights, biases, act=lambda: nn.LeakyReLU(0.2))
    report = same_result(leaky, native(tmp_path, "leaky.npz", weights, biases, "leaky_relu:0.2"), data)
    assert report.problem["activation"] == "leaky_relu:0.2"
    linear = _sequential(weights, biases, act=nn.Identity)
    same_result(linear, native(tmp_path, "lin.npz", weights, biases, "identity"), data)
    # the argument wins over the layers; Flatten, eval-mode Dropout and nested Sequentials are no-ops
    extra = nn.Sequential(nn.Flatten(), nn.Sequential(leaky[0], nn.Dropout(0.5)), nn.LeakyReLU(0.2), *leaky[2:])
    extra.eval()
    same_result(extra, native(tmp_path, "abs.npz", weights, biases, "abs"), data, activation="abs")
    # a state dict has no activation: relu unless told
    path = tmp_path / "leaky.pt"
    torch.save(leaky.state_dict(), path)
    assert certify.check(str(path), data=str(data)).problem["activation"] == "relu"
    same_result(path, native(tmp_path, "l2.npz", weights, biases, "leaky_relu:0.2"), data,
                activation="leaky_relu:0.2")


def test_torch_data_file(random_problem, tmp_path):
    torch = pytest.importorskip("torch")
    weights, biases, data = random_problem
    a = arrays_of(data)
    ref = native(tmp_path, "ref.npz", weights, biases)
    torch.save({"X": torch.tensor(a["X"]), "y": torch.tensor(a["y"])}, tmp_path / "data.pt")
    torch.save((torch.tensor(a["X"]), torch.tensor(a["y"])), tmp_path / "pair.pth")
    for name in ("data.pt", "pair.pth"):
        assert certify.check(str(ref), data=str(tmp_path / name)).problem == \
            certify.check(str(ref), data=str(data)).problem


def test_torch_cli(random_problem, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    weights, biases, data = random_problem
    path = tmp_path / "model.pt"
    torch.save(_sequential(weights, biases).state_dict(), path)
    ref = certify.check(str(native(tmp_path, "ref.npz", weights, biases)), data=str(data))
    code, out, err = run_cli(capsys, ["check", path, "--data", data, "--json"])
    assert err == (f"certify: warning: model file {path} does not record its activation; checking it as a "
                   f"relu network (pass --activation / activation= if it was trained with another, e.g. "
                   f"leaky_relu:0.01)\n") and code == ref.exit_code
    assert f'"loss_value": {ref.problem["loss_value"]!r}' in out
    code, out, err = run_cli(capsys, ["check", path, "--data", data, "--json", "--activation", "relu"])
    assert err == "" and code == ref.exit_code
    assert f'"loss_value": {ref.problem["loss_value"]!r}' in out


def test_assumed_activation_is_a_warning(random_problem, tmp_path):
    """A state dict does not record its activation: relu is assumed, and said; never when given,
    stored, or when there is no hidden layer (nothing to assume)."""
    from certify.errors import AssumedActivationWarning
    torch = pytest.importorskip("torch")
    weights, biases, data = random_problem
    path = tmp_path / "model.pt"
    torch.save(_sequential(weights, biases).state_dict(), path)
    with pytest.warns(AssumedActivationWarning, match=r"model\.pt does not record its activation; checking it "
                                                      r"as a relu network"):
        net = certify.load_model(path)
    assert net.activation.spec == "relu"
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumedActivationWarning)
        assert certify.load_model(path, "leaky_relu:0.5").activation.spec == "leaky_relu:0.5"
        assert certify.load_model(native(tmp_path, "abs.npz", weights, biases, "abs")).activation.spec == "abs"
        certify.load_model(native(tmp_path, "linear.npz", weights[-1:], biases[-1:]))  # one layer: no hidden unit


def test_assumed_activation_never_adds_a_line_to_an_input_error(random_problem, tmp_path, capsys):
    """Bad data next to a state dict: the error is the only line on stderr."""
    torch = pytest.importorskip("torch")
    weights, biases, data = random_problem
    path = tmp_path / "model.pt"
    torch.save(_sequential(weights, biases).state_dict(), path)
    a = arrays_of(Path(data))
    np.savez(tmp_path / "wide.npz", X=np.hstack([a["X"], a["X"]]), y=a["y"])
    code, out, err = run_cli(capsys, ["check", path, "--data", tmp_path / "wide.npz"])
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("certify: error: data X has ")


# --- bad PyTorch inputs ---------------------------------------------------------------------------
def test_truncated_pt(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    weights, biases, X, y = gt_problem(GT7)
    path = tmp_path / "cut.pt"
    torch.save(_sequential(weights, biases).state_dict(), path)
    path.write_bytes(path.read_bytes()[:200])
    data = data_file(tmp_path, X, y)
    phrase = (r"^certify: error: model file \S*cut\.pt is truncated or corrupted: expected a file written by "
              r"torch\.save, but reading it failed \(PytorchStreamReader failed reading zip archive: failed "
              r"finding central directory\)$")
    assert_one_line_error(capsys, ["check", path, "--data", data], phrase)
    with pytest.raises(ModelLoadError, match="is truncated or corrupted"):
        certify.check(str(path), data=str(data))


@pytest.mark.parametrize("content, phrase", [
    (b"", r"model file \S*m\.pt is empty \(0 bytes\); expected a file written by torch\.save$"),
    (b"W1 = [[1, 2]]\n", r"model file \S*m\.pt is not a PyTorch checkpoint: expected a file written by "
                         r"torch\.save, got a text file starting with 'W1 = \[\[1, 2\]\]'$"),
    (b"\x80\x02", r"model file \S*m\.pt is truncated or corrupted: expected a file written by torch\.save, "
                  r"but reading it failed \(EOFError\)$"),
])
def test_not_a_pt(content, phrase, tmp_path, capsys):
    pytest.importorskip("torch")
    path = tmp_path / "m.pt"
    path.write_bytes(content)
    assert_one_line_error(capsys, ["check", path, "--data", GT7], phrase)


def test_pickled_module_is_refused(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    weights, biases, _, _ = gt_problem(GT7)
    path = tmp_path / "full.pt"
    torch.save(_sequential(weights, biases), path)
    phrase = (r"^certify: error: model file \S*full\.pt holds pickled Python objects, not only tensors: "
              r"certify loads with weights_only=True and never unpickles code; save model\.state_dict\(\) "
              r"\(or a dict of tensors\) instead$")
    assert_one_line_error(capsys, ["check", path, "--data", GT7], phrase)


def _bad_state_dicts(torch):
    nn = torch.nn
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 1)).state_dict()
    bn = nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1)).state_dict()
    ln = nn.Sequential(nn.Linear(1, 4), nn.LayerNorm(4), nn.Linear(4, 1)).state_dict()
    emb = {"embedding.weight": nn.Embedding(10, 4).weight.detach(), **{f"fc.{k}": v for k, v in
                                                                     nn.Linear(4, 1).state_dict().items()}}
    mismatch = {"0.weight": torch.ones(4, 1), "0.bias": torch.zeros(4), "2.weight": torch.ones(1, 5),
                "2.bias": torch.zeros(1)}
    return {
        "conv": (conv, UnsupportedLayerError,
                 r"unsupported layer in model file \S*conv\.pt: '0\.weight' \(shape \(2, 1, 3, 3\)\) is a "
                 r"convolution weight \(Conv layers are not modelled\); certify reads only Linear layers "
                 r"\(NAME\.weight of shape \(out, in\), optional NAME\.bias of shape \(out,\)\)$"),
        "bn": (bn, UnsupportedLayerError,
               r"unsupported layer in model file \S*bn\.pt: '1\.running_mean' \(shape \(4,\)\) is a batch-norm "
               r"statistic \(batch normalization is not modelled\); certify reads only Linear layers"),
        "ln": (ln, UnsupportedLayerError,
               r"unsupported layer in model file \S*ln\.pt: '1\.weight' \(shape \(4,\)\) is the scale of a "
               r"normalization layer \(BatchNorm, LayerNorm, \.\.\.\); certify reads only Linear layers"),
        "emb": (emb, UnsupportedLayerError,
                r"unsupported layer in model file \S*emb\.pt: 'embedding\.weight' \(shape \(10, 4\)\) is an embedding "
                r"table \(Embedding layers are not modelled\)"),
        "mismatch": (mismatch, ShapeError,
                     r"^certify: error: '2\.weight' in model file \S*mismatch\.pt has 5 inputs but the layer "
                     r"before it, '0\.weight', has 4 outputs \(shapes \(4, 1\) then \(1, 5\)\)$"),
        "extra": ({"0.weight": torch.ones(1, 1), "0.weight_mask": torch.ones(1, 1)}, UnsupportedLayerError,
                  r"'0\.weight_mask' \(shape \(1, 1\)\) is not the weight or bias of a Linear layer"),
        "orphan": ({"0.weight": torch.ones(1, 1), "1.bias": torch.ones(1)}, ModelLoadError,
                   r"model file \S*orphan\.pt has '1\.bias' \(shape \(1,\)\) but no '1\.weight': every Linear "
                   r"layer needs a weight$"),
        "badbias": ({"0.weight": torch.ones(2, 1), "0.bias": torch.ones(3)}, ShapeError,
                    r"'0\.bias' in model file \S*badbias\.pt must have length 2 \(the rows of '0\.weight', shape "
                    r"\(2, 1\)\); got shape \(3,\)$"),
        "notadict": ([torch.ones(1, 1)], ModelLoadError,
                     r"model file \S*notadict\.pt holds a list, not a state dict: expected a file written by "
                     r"torch\.save of model\.state_dict\(\)$"),
        "nostate": ({"epoch": 3, "weights": torch.ones(1)}, ModelLoadError,
                    r"model file \S*nostate\.pt is not a state dict: 'epoch' is not a tensor \(type int\), and "
                    r"there is no 'model_state_dict', 'state_dict', 'model' entry with the model's state dict$"),
        "empty": ({}, ModelLoadError,
                  r"model file \S*empty\.pt holds no tensors: expected a state dict of Linear layers "
                  r"\(0\.weight, 0\.bias, 2\.weight, \.\.\.\)$"),
    }


@pytest.mark.parametrize("name", ["conv", "bn", "ln", "emb", "mismatch", "extra", "orphan", "badbias",
                                  "notadict", "nostate", "empty"])
def test_bad_state_dict(name, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    obj, exc, phrase = _bad_state_dicts(torch)[name]
    path = tmp_path / f"{name}.pt"
    torch.save(obj, path)
    assert_one_line_error(capsys, ["check", path, "--data", GT7], phrase)
    with pytest.raises(exc, match=re.sub(r"^\^(certify: error: )?", "", phrase)):
        certify.load_model(path)
    if isinstance(obj, dict) and obj and name != "nostate":  # the same from a state dict in memory
        with pytest.raises(exc, match="the model mapping"):
            certify.check(obj, X=np.zeros((1, 1)), y=np.zeros(1))


def test_bad_modules(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    X, y = np.zeros((2, 1)), np.zeros(2)
    cases = [
        (nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1)).eval(),
         UnsupportedLayerError,
         r"^layer 1 of the nn\.Sequential is BatchNorm1d, which certify does not model: expected Linear, ReLU, "
         r"LeakyReLU, Identity, Flatten and Dropout \(in eval mode\) layers$"),
        (nn.Sequential(nn.Linear(1, 4), nn.Dropout(0.5), nn.ReLU(), nn.Linear(4, 1)).train(),
         UnsupportedLayerError,
         r"^layer 1 of the nn\.Sequential is Dropout\(p=0\.5\) in training mode: call model\.eval\(\) first"),
        (nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 4), nn.LeakyReLU(0.1), nn.Linear(4, 1)),
         UnsupportedLayerError,
         r"^the nn\.Sequential mixes hidden activations: ReLU \(layer 1\) but LeakyReLU\(negative_slope=0\.1\) "
         r"\(layer 3\); certify needs the same activation after every hidden Linear layer$"),
        (nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 1)),
         UnsupportedLayerError, r"^the nn\.Sequential mixes hidden activations: ReLU \(layer 1\) but none after "
                                r"layer 2;"),
        (nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1), nn.ReLU()), UnsupportedLayerError,
         r"^layer 3 of the nn\.Sequential \(ReLU\) comes after the last Linear layer"),
        (nn.Sequential(nn.ReLU(), nn.Linear(1, 1)), UnsupportedLayerError,
         r"^layer 0 of the nn\.Sequential \(ReLU\) comes before the first Linear layer"),
        (nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 1)), UnsupportedLayerError,
         r"^layers 1 and 2 of the nn\.Sequential are two activations in a row \(ReLU, ReLU\)"),
        (nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)), UnsupportedLayerError,
         r"^layer 1 of the nn\.Sequential is Tanh, which certify does not model"),
        (nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(5, 1)), ShapeError,
         r"^layer 2 of the nn\.Sequential \(Linear, 5 -> 1\) takes 5 inputs but layer 0 \(Linear, 1 -> 4\) has "
         r"4 outputs$"),
        (nn.Conv2d(1, 1, 1), ModelLoadError,
         r"^cannot read the layers of a Conv2d module: certify reads an nn\.Sequential of"),
    ]
    for module, exc, phrase in cases:
        with pytest.raises(exc, match=phrase):
            certify.check(module, X, y)


# ============================================================================== ONNX
def _export_onnx(module, n_in, path):
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # dynamo=False: the TorchScript exporter needs no onnxscript (the dynamo one writes the same Gemms)
        torch.onnx.export(module, (torch.zeros(1, n_in),), str(path), dynamo=False)


def test_onnx_export_leaky_relu(random_problem, tmp_path):
    pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    weights, biases, data = random_problem
    model = _sequential(weights, biases, act=lambda: torch.nn.LeakyReLU(0.2))
    path = tmp_path / "model.onnx"
    _export_onnx(model, 3, path)
    alpha = float(np.float32(0.2))  # ONNX stores alpha as float32; certify keeps that value exactly
    assert alpha != 0.2
    net = certify.load_model(path)
    assert net.activation == certify.Activation("leaky_relu", alpha)
    same_result(path, native(tmp_path, "ref.npz", weights, biases, f"leaky_relu:{alpha!r}"), data)
    # the argument wins over the file
    same_result(path, native(tmp_path, "relu.npz", weights, biases), data, activation="relu")


@pytest.mark.parametrize("gt, verdict", [(GT7, "local_min"), (GT5, "not_stationary")])
def test_onnx_export_gt(gt, verdict, tmp_path):
    pytest.importorskip("onnx")
    weights, biases, X, y = gt_problem(gt)
    path = tmp_path / "model.onnx"
    _export_onnx(_sequential(weights, biases), 1, path)
    report = same_result(path, native(tmp_path, "ref.npz", weights, biases), data_file(tmp_path, X, y))
    assert report.verdict.value == verdict


def _graph(nodes, initializers, n_in, n_out, path, inputs=None):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    inits = [numpy_helper.from_array(np.asarray(v), name=k) for k, v in initializers.items()]
    graph = helper.make_graph(
        nodes, "g",
        inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", n_in])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, ["n", n_out])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_onnx_matmul_add_gemm_variants(random_problem, tmp_path):
    pytest.importorskip("onnx")
    from onnx import helper
    weights, biases, data = random_problem
    (W1, W2, W3), (b1, b2, b3) = weights, biases
    nodes = [
        helper.make_node("MatMul", ["x", "B1"], ["h1"], name="mm1"),  # x @ W1.T
        helper.make_node("Add", ["h1", "c1"], ["z1"], name="add1"),
        helper.make_node("Relu", ["z1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "B2", "c2"], ["z2"], name="gemm2", transB=0),  # B2 = W2.T
        helper.make_node("Relu", ["z2"], ["a2"], name="relu2"),
        helper.make_node("Identity", ["a2"], ["i2"], name="id"),
        helper.make_node("Gemm", ["i2", "B3", "c3"], ["y"], name="gemm3", transB=1, alpha=0.5, beta=2.0),
    ]
    inits = {"B1": W1.T.copy(), "c1": b1, "B2": W2.T.copy(), "c2": b2.reshape(1, -1), "B3": W3 * 2, "c3": b3 / 2}
    path = _graph(nodes, inits, 3, 1, tmp_path / "mm.onnx")
    same_result(path, native(tmp_path, "ref.npz", weights, biases), data)


def test_onnx_abs_and_identity_activation(random_problem, tmp_path):
    pytest.importorskip("onnx")
    from onnx import helper
    weights, biases, data = random_problem
    for act, op in (("abs", "Abs"), ("identity", None)):
        nodes, inits, cur = [], {}, "x"
        for l, (W, b) in enumerate(zip(weights, biases), start=1):
            inits[f"W{l}"], inits[f"b{l}"] = W, b
            nodes.append(helper.make_node("Gemm", [cur, f"W{l}", f"b{l}"], [f"z{l}"], name=f"fc{l}", transB=1))
            cur = f"z{l}"
            if op and l < len(weights):
                nodes.append(helper.make_node(op, [cur], [f"a{l}"], name=f"act{l}"))
                cur = f"a{l}"
        path = _graph(nodes, inits, 3, 1, tmp_path / f"{act}.onnx")
        assert certify.load_model(path).activation.name == act
        same_result(path, native(tmp_path, f"{act}.npz", weights, biases, act), data)


def _bad_onnx(helper, tmp):
    W, b = np.ones((2, 2), np.float32), np.zeros(2, np.float32)
    gemm = helper.make_node("Gemm", ["x", "W", "b"], ["z"], name="fc1", transB=1)
    cases = {
        "conv": ([helper.make_node("Conv", ["x", "W"], ["y"], name="conv1")], UnsupportedLayerError,
                 r"^certify: error: unsupported layer in model file \S*conv\.onnx: node 'conv1' is Conv, which "
                 r"certify does not model; expected Gemm, MatMul \+ Add, Relu, LeakyRelu, Abs, Identity, Flatten "
                 r"and Dropout \(inference\)$"),
        "bn": ([gemm, helper.make_node("BatchNormalization", ["z", "b", "b", "b", "b"], ["y"], name="bn1")],
               UnsupportedLayerError, r"node 'bn1' is BatchNormalization, which certify does not model"),
        "dropout": ([gemm, helper.make_node("Dropout", ["z", "", "train"], ["d"], name="drop"),
                     helper.make_node("Relu", ["d"], ["r"]),
                     helper.make_node("Gemm", ["r", "W", "b"], ["y"], name="fc2", transB=1)],
                    UnsupportedLayerError,
                    r"node 'drop' is Dropout in training mode; export the model in eval mode \(model\.eval\(\)\)$"),
        "branch": ([gemm, helper.make_node("Relu", ["z"], ["r"], name="relu"),
                    helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="skip", transB=1)],
                   UnsupportedLayerError,
                   r"unsupported graph in model file \S*branch\.onnx: node 'skip' \(Gemm\) reads x instead of the "
                   r"previous layer's output 'r'; certify reads a chain of layers \(no branches or skip "
                   r"connections\)$"),
        "shapes": ([gemm, helper.make_node("Relu", ["z"], ["r"], name="relu"),
                    helper.make_node("Gemm", ["r", "W3", "b"], ["y"], name="fc2", transB=1)],
                   ShapeError, r"node 'fc2' \(Gemm\) in model file \S*shapes\.onnx has 3 inputs but the layer "
                               r"before it has 2 outputs"),
        "output_act": ([gemm, helper.make_node("Relu", ["z"], ["y"], name="relu")], UnsupportedLayerError,
                       r"node 'relu' \(Relu\) comes after the last layer"),
        "alpha64": ([helper.make_node("Gemm", ["x", "W64", "b"], ["y"], name="fc", transB=1, alpha=0.1)],
                    UnsupportedLayerError,
                    r"node 'fc' is Gemm with alpha=0\.10000000149011612 on float64 weights, which cannot be folded "
                    r"into them exactly; export with alpha=1$"),
    }
    inits = {"W": W, "b": b, "W3": np.ones((2, 3), np.float32), "train": np.array(True),
             "W64": np.full((2, 2), 0.1)}
    return cases, inits


@pytest.mark.parametrize("name", ["conv", "bn", "dropout", "branch", "shapes", "output_act", "alpha64"])
def test_bad_onnx(name, tmp_path, capsys):
    pytest.importorskip("onnx")
    from onnx import helper
    cases, inits = _bad_onnx(helper, tmp_path)
    nodes, exc, phrase = cases[name]
    used = {i for n in nodes for i in n.input}
    path = _graph(nodes, {k: v for k, v in inits.items() if k in used}, 2, 2, tmp_path / f"{name}.onnx")
    assert_one_line_error(capsys, ["check", path, "--data", GT7], phrase)
    with pytest.raises(exc, match=re.sub(r"^\^(certify: error: )?", "", phrase)):
        certify.load_model(path)


def test_truncated_onnx(tmp_path, capsys):
    pytest.importorskip("onnx")
    weights, biases, _, _ = gt_problem(GT7)
    path = tmp_path / "cut.onnx"
    _export_onnx(_sequential(weights, biases), 1, path)
    path.write_bytes(path.read_bytes()[:57])
    phrase = (r"^certify: error: model file \S*cut\.onnx is truncated or corrupted: expected an ONNX model \(as "
              r"written by torch\.onnx\.export or onnx\.save\), but reading it failed \(.+\)$")
    assert_one_line_error(capsys, ["check", path, "--data", GT7], phrase)


# ============================================================================== safetensors
def test_safetensors_state_dict_and_native_names(random_problem, tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file
    weights, biases, data = random_problem
    ref = native(tmp_path, "ref.npz", weights, biases)
    layouts = {
        # safetensors sorts its tensors; certify orders them by the numbers in the names (0 < 2 < 10)
        "sequential": {"0": 0, "2": 1, "10": 2},
        "named": {"fc1": 0, "fc2": 1, "fc10": 2},
        "module": {"module.layers.0": 0, "module.layers.1": 1, "module.head": 2},  # order from the shapes
    }
    for name, prefixes in layouts.items():
        tensors = {}
        for prefix, l in prefixes.items():
            tensors[f"{prefix}.weight"], tensors[f"{prefix}.bias"] = weights[l], biases[l]
        save_file(tensors, str(tmp_path / f"{name}.safetensors"))
        same_result(tmp_path / f"{name}.safetensors", ref, data)
    native_names = {f"{k}{l}": v for l, (W, b) in enumerate(zip(weights, biases), 1) for k, v in (("W", W), ("b", b))}
    save_file(native_names, str(tmp_path / "native.safetensors"), metadata={"activation": "leaky_relu:0.25"})
    report = same_result(tmp_path / "native.safetensors",
                         native(tmp_path, "leaky.npz", weights, biases, "leaky_relu:0.25"), data)
    assert report.problem["activation"] == "leaky_relu:0.25"
    # data as tensors X, y
    a = arrays_of(data)
    save_file({"X": a["X"], "y": a["y"]}, str(tmp_path / "data.safetensors"))
    assert certify.check(str(ref), data=str(tmp_path / "data.safetensors")).problem == \
        certify.check(str(ref), data=str(data)).problem


@pytest.mark.parametrize("gt, verdict", [(GT7, "local_min"), (GT5, "not_stationary")])
def test_safetensors_gt(gt, verdict, tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file
    weights, biases, X, y = gt_problem(gt)
    path = tmp_path / "model.safetensors"
    save_file({"0.weight": weights[0], "0.bias": biases[0], "2.weight": weights[1], "2.bias": biases[1]},
              str(path))
    report = same_result(path, native(tmp_path, "ref.npz", weights, biases), data_file(tmp_path, X, y))
    assert report.verdict.value == verdict


def test_bad_safetensors(tmp_path, capsys):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file
    path = tmp_path / "conv.safetensors"
    save_file({"features.0.weight": np.ones((2, 1, 3, 3), np.float32), "head.weight": np.ones((1, 2))},
              str(path))
    assert_one_line_error(capsys, ["check", path, "--data", GT7],
                          r"^certify: error: unsupported layer in model file \S*conv\.safetensors: "
                          r"'features\.0\.weight' \(shape \(2, 1, 3, 3\)\) is a convolution weight")
    cut = tmp_path / "cut.safetensors"
    save_file({"0.weight": np.ones((1, 1))}, str(cut))
    cut.write_bytes(cut.read_bytes()[:-3])
    assert_one_line_error(capsys, ["check", cut, "--data", GT7],
                          r"^certify: error: model file \S*cut\.safetensors is truncated or corrupted: expected a "
                          r"\.safetensors file \(as written by safetensors' save_file\), but reading it failed")
    square = tmp_path / "square.safetensors"  # no order of the layers chains
    save_file({"input.weight": np.ones((2, 2)), "hidden.weight": np.ones((2, 2)), "out.weight": np.ones((1, 3))},
              str(square))
    assert_one_line_error(capsys, ["check", square, "--data", GT7],
                          r"^certify: error: 'out\.weight' in model file \S*square\.safetensors has 3 inputs but "
                          r"the layer before it, 'input\.weight', has 2 outputs \(shapes \(2, 2\) then \(1, 3\)\) "
                          r"\(the layers are ordered by their names, and no other order chains\)$")


# ============================================================================== CSV
def test_csv_data(random_problem, tmp_path):
    weights, biases, data = random_problem
    a = arrays_of(data)
    ref = native(tmp_path, "ref.npz", weights, biases)
    expected = certify.check(str(ref), data=str(data)).problem
    table = np.column_stack([a["X"], a["y"]])
    np.savetxt(tmp_path / "header.csv", table, delimiter=",", header="x1,x2,x3,label", comments="")
    np.savetxt(tmp_path / "plain.csv", table, delimiter=",")
    np.savetxt(tmp_path / "tabs.csv", table, delimiter="\t", header="# a comment")
    for name in ("header.csv", "plain.csv", "tabs.csv"):
        assert certify.check(str(ref), data=str(tmp_path / name)).problem == expected, name
        assert certify.load_data(tmp_path / name).X.shape == (6, 3)


def test_csv_gt_verdict(tmp_path, capsys):
    weights, biases, X, y = gt_problem(GT7)
    path = tmp_path / "train.csv"
    path.write_text("x,y\n" + "".join(f"{a},{b}\n" for a, b in zip(X[:, 0], y)))
    code, out, err = run_cli(capsys, ["check", GT7, "--data", path])
    assert code == 0 and err == "" and "local_min" in out


@pytest.mark.parametrize("text, phrase", [
    ("x,y\n1,2\n3,abc\n", r"data file \S*bad\.csv line 3, column 2: 'abc' is not a number; expected a CSV of "
                          r"numbers, one sample per line with the label in the last column \(a header is allowed "
                          r"only on the first line\)$"),
    ("1,2\n3\n", r"data file \S*bad\.csv line 2 has 1 column but line 1 has 2: expected a CSV of numbers"),
    ("1\n2\n", r"data file \S*bad\.csv has 1 column: expected a CSV of numbers, one sample per line with the "
               r"label in the last column \(at least 2 columns: features, label\)$"),
    ("x,y\n", r"data file \S*bad\.csv has a header line but no data lines"),
    ("", r"data file \S*bad\.csv has no data lines"),
])
def test_bad_csv(text, phrase, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert_one_line_error(capsys, ["check", GT7, "--data", path], phrase)
    with pytest.raises(ModelLoadError, match=phrase.split(r"\S*")[1]):
        certify.load_data(path)


# ============================================================================== dispatch, extras
@pytest.mark.parametrize("suffix, module, extra", [(".onnx", "onnx", "onnx"), (".pt", "torch", "torch"),
                                                   (".pth", "torch", "torch"),
                                                   (".safetensors", "safetensors", "safetensors")])
def test_missing_extra(suffix, module, extra, tmp_path, capsys, monkeypatch):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"anything")
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    phrase = rf"^certify: error: loading \{suffix} needs `pip install certify\[{extra}\]`$"
    assert_one_line_error(capsys, ["check", path, "--data", GT7], phrase)
    with pytest.raises(MissingExtraError, match=phrase[len("^certify: error: "):]):
        certify.check(str(path), data=str(GT7))
    # before any work: not even the file is looked at
    with pytest.raises(MissingExtraError):
        certify.load_model(tmp_path / f"missing{suffix}")
    if suffix != ".onnx":
        with pytest.raises(MissingExtraError, match=phrase[len("^certify: error: "):]):
            certify.load_data(path)


def test_unsupported_suffixes(tmp_path, capsys):
    model = tmp_path / "model.h5"
    model.write_bytes(b"\x89HDF")
    assert_one_line_error(capsys, ["check", model, "--data", GT7],
                          r"^certify: error: unsupported checkpoint format '\.h5' for \S*model\.h5: expected \.npz "
                          r"\(arrays W1, b1, \.\.\., WL, bL\), \.pt/\.pth \(a PyTorch state dict\), \.ckpt "
                          r"\(PyTorch Lightning\), \.onnx or \.safetensors$")
    data = tmp_path / "train.json"
    data.write_text("{}")
    assert_one_line_error(capsys, ["check", GT7, "--data", data],
                          r"^certify: error: unsupported data format '\.json' for \S*train\.json: expected \.npz "
                          r"\(arrays X \(n, d\) and y\), \.csv \(features, then the label in the last column\), "
                          r"\.pt/\.pth \(tensors X and y\) or \.safetensors \(tensors X and y\)$")


def test_core_imports_without_extras():
    """The loaders import no optional package at import time."""
    import subprocess
    code = ("import sys\n"
            "for m in ('torch', 'onnx', 'safetensors'): sys.modules[m] = None\n"
            "import certify, certify.loaders.torch, certify.loaders.onnx, certify.loaders.safetensors\n"
            "import certify.loaders.csv, certify.loaders.statedict\n"
            "print(certify.check({'W1': [[1.0]], 'b1': [0.0], 'W2': [[1.0]], 'b2': [0.0]},"
            " [[-1.0], [0.0], [1.0]], [-1.0, 1.0, 1.0]).verdict.value)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "not_stationary"


# ============================================================================== docs/errors.md
def _doc_cases():
    """name -> (extras needed, maker(tmp) -> argv); file names as in docs/errors.md."""
    W, b = np.ones((2, 2), np.float32), np.zeros(2, np.float32)

    def pt(obj, name="model.pt"):
        def make(tmp):
            torch = pytest.importorskip("torch")
            value = obj(torch) if callable(obj) else obj
            torch.save(value, tmp / name)
            return ["check", tmp / name, "--data", GT7]
        return ("torch",), make

    def raw(content, name):
        def make(tmp):
            (tmp / name).write_bytes(content)
            return ["check", tmp / name, "--data", GT7]
        return (), make

    def onnx_graph(build):
        def make(tmp):
            pytest.importorskip("onnx")
            from onnx import helper
            nodes, inits = build(helper)
            used = {i for n in nodes for i in n.input}
            _graph(nodes, {k: v for k, v in inits.items() if k in used}, 2, 2, tmp / "model.onnx")
            return ["check", tmp / "model.onnx", "--data", GT7]
        return ("onnx",), make

    def st(tensors, name="model.safetensors", cut=0, role="model"):
        def make(tmp):
            pytest.importorskip("safetensors")
            from safetensors.numpy import save_file
            save_file(tensors, str(tmp / name))
            if cut:
                (tmp / name).write_bytes((tmp / name).read_bytes()[:-cut])
            return ["check", tmp / name, "--data", GT7] if role == "model" else ["check", GT7, "--data", tmp / name]
        return ("safetensors",), make

    def csv(text):
        def make(tmp):
            (tmp / "train.csv").write_text(text)
            return ["check", GT7, "--data", tmp / "train.csv"]
        return (), make

    def gemm(helper, name="fc1", x="x", out="z", w="W", **kw):
        return helper.make_node("Gemm", [x, w, "b"], [out], name=name, transB=1, **kw)

    def cut_pt(tmp):
        torch = pytest.importorskip("torch")
        torch.save(torch.nn.Linear(1, 1).state_dict(), tmp / "cut.pt")
        (tmp / "cut.pt").write_bytes((tmp / "cut.pt").read_bytes()[:200])
        return ["check", tmp / "cut.pt", "--data", GT7]

    def missing(module, suffix):
        def make(tmp, monkeypatch):
            monkeypatch.setitem(sys.modules, module, None)
            (tmp / f"model{suffix}").write_bytes(b"x")
            return ["check", tmp / f"model{suffix}", "--data", GT7]
        return (), make

    def data_pt(tmp):
        torch = pytest.importorskip("torch")
        torch.save({"X": torch.ones(1, 1)}, tmp / "data.pt")
        return ["check", GT7, "--data", tmp / "data.pt"]

    I = {"W": W, "b": b, "W3": np.ones((2, 3), np.float32), "train": np.array(True), "W64": np.full((2, 2), 0.1)}
    return {
        "missing_onnx": missing("onnx", ".onnx"),
        "missing_torch": missing("torch", ".pt"),
        "missing_safetensors": missing("safetensors", ".safetensors"),
        "cut_pt": (("torch",), cut_pt),
        "empty_pt": raw(b"", "model.pt"),
        "text_pt": raw(b"W1 = [[1, 2]]\n", "model.pt"),
        "pickled_module": pt(lambda torch: torch.nn.Linear(1, 1)),
        "list_pt": pt(lambda torch: [torch.ones(1)]),
        "no_state_dict": pt(lambda torch: {"epoch": 3, "weights": torch.ones(1)}),
        "empty_state_dict": pt({}),
        "conv": pt(lambda torch: torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(),
                                                     torch.nn.Linear(2, 1)).state_dict()),
        "batch_norm": pt(lambda torch: torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.BatchNorm1d(4),
                                                           torch.nn.ReLU(), torch.nn.Linear(4, 1)).state_dict()),
        "layer_norm": pt(lambda torch: torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.LayerNorm(4),
                                                           torch.nn.Linear(4, 1)).state_dict()),
        "embedding": pt(lambda torch: {"embedding.weight": torch.ones(10, 4), "fc.weight": torch.ones(1, 4)}),
        "pruning_mask": pt(lambda torch: {"0.weight": torch.ones(1, 1), "0.weight_mask": torch.ones(1, 1)}),
        "bias_only": pt(lambda torch: {"0.weight": torch.ones(1, 1), "1.bias": torch.ones(1)}),
        "bias_length": pt(lambda torch: {"0.weight": torch.ones(2, 1), "0.bias": torch.ones(3)}),
        "layer_shapes": pt(lambda torch: {"0.weight": torch.ones(4, 1), "2.weight": torch.ones(1, 5)}),
        "complex_pt": pt(lambda torch: {"0.weight": torch.ones(1, 1, dtype=torch.complex64)}),
        "data_pt_without_y": (("torch",), data_pt),
        "onnx_conv": onnx_graph(lambda h: ([h.make_node("Conv", ["x", "W"], ["y"], name="conv1")], I)),
        "onnx_bn": onnx_graph(lambda h: ([gemm(h), h.make_node("BatchNormalization", ["z", "b", "b", "b", "b"],
                                                                ["y"], name="bn1")], I)),
        "onnx_dropout": onnx_graph(lambda h: ([gemm(h), h.make_node("Dropout", ["z", "", "train"], ["d"], name="drop"),
                                               gemm(h, "fc2", "d", "y")], I)),
        "onnx_branch": onnx_graph(lambda h: ([gemm(h), h.make_node("Relu", ["z"], ["r"], name="relu"),
                                              gemm(h, "skip", "x", "y")], I)),
        "onnx_dynamic_weight": onnx_graph(lambda h: ([gemm(h, "fc", out="y", w="Wdyn")], I)),
        "onnx_output_activation": onnx_graph(lambda h: ([gemm(h), h.make_node("Relu", ["z"], ["y"], name="relu")], I)),
        "onnx_input_activation": onnx_graph(lambda h: ([h.make_node("Relu", ["x"], ["r"], name="relu"),
                                                        gemm(h, "fc2", "r", "y")], I)),
        "onnx_two_activations": onnx_graph(lambda h: ([gemm(h), h.make_node("Relu", ["z"], ["r"], name="relu"),
                                                       h.make_node("Relu", ["r"], ["r2"], name="relu2"),
                                                       gemm(h, "fc2", "r2", "y")], I)),
        "onnx_mixed": onnx_graph(lambda h: ([gemm(h), h.make_node("Relu", ["z"], ["r"], name="relu"),
                                             gemm(h, "fc2", "r", "z2"),
                                             h.make_node("LeakyRelu", ["z2"], ["r2"], name="lrelu", alpha=0.1),
                                             gemm(h, "fc3", "r2", "y")], I)),
        "onnx_trans_a": onnx_graph(lambda h: ([h.make_node("Gemm", ["x", "W", "b"], ["y"], name="fc", transA=1)], I)),
        "onnx_alpha": onnx_graph(lambda h: ([gemm(h, "fc", out="y", w="W64", alpha=0.1)], I)),
        "onnx_add": onnx_graph(lambda h: ([gemm(h), h.make_node("Add", ["z", "b"], ["y"], name="add")], I)),
        "onnx_shapes": onnx_graph(lambda h: ([gemm(h), h.make_node("Relu", ["z"], ["r"], name="relu"),
                                              gemm(h, "fc2", "r", "y", w="W3")], I)),
        "onnx_slope": onnx_graph(lambda h: ([gemm(h), h.make_node("LeakyRelu", ["z"], ["r"], name="lrelu", alpha=1.5),
                                             gemm(h, "fc2", "r", "y")], I)),
        "empty_onnx": raw(b"", "model.onnx"),
        "corrupt_onnx": raw(b"garbage\x00\x01", "model.onnx"),
        "st_conv": st({"features.0.weight": np.ones((2, 1, 3, 3), np.float32)}),
        "st_cut": st({"0.weight": np.ones((1, 1))}, cut=3),
        "st_ambiguous": st({"a.weight": np.ones((2, 2)), "b.weight": np.ones((2, 2)), "c.weight": np.ones((1, 3)),
                            "d.weight": np.ones((3, 2))}),
        "csv_not_a_number": csv("x,y\n1,2\n3,abc\n"),
        "csv_ragged": csv("1,2\n3\n"),
        "csv_one_column": csv("1\n2\n"),
        "csv_header_only": csv("x,y\n"),
        "csv_empty": csv(""),
        "unsupported_model": raw(b"x", "model.h5"),
        "unsupported_data": (((), lambda tmp: (tmp / "train.json").write_text("{}") and
                              ["check", GT7, "--data", tmp / "train.json"])),
    }


DOC_CASES = _doc_cases()


@pytest.mark.parametrize("name", list(DOC_CASES))
def test_documented_message(name, tmp_path, capsys, monkeypatch):
    """The exact line (paths shortened to file names) is listed in docs/errors.md."""
    needs, make = DOC_CASES[name]
    for module in needs:
        pytest.importorskip(module)
    argv = make(tmp_path, monkeypatch) if name.startswith("missing_") else make(tmp_path)
    line = assert_one_line_error(capsys, argv, r"^certify: error: ")
    line = line.replace(f"{tmp_path}/", "").replace(f"{GT7.parent}/", "")
    doc = (Path(__file__).resolve().parent.parent / "docs" / "errors.md").read_text()
    assert line in doc.splitlines(), f"not in docs/errors.md:\n{line}"
