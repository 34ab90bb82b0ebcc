"""The certify-native copies of the demo's trained checkpoints (``data/trained/native/``).

Independent answers: the copies are compared with the SHA-256 torch wrote into each sidecar at
training time (numpy only) and, when torch is installed, with a fresh export from the ``.pt`` files.
"""

import json

import numpy as np
import pytest

from benchmarks import trained as tr
from certify.cli import main
from certify.demo import TRAINED, data_dir

NATIVE = data_dir() / "trained" / "native"


# ============================================================================ the native copies
@pytest.mark.parametrize("name", TRAINED)
def test_native_copy_is_the_trained_checkpoint(name):
    """The float64 arrays are the float32 parameters torch stored: their SHA-256 (computed as
    benchmarks.trained.params_sha256 does on the state dict) is the one in the sidecar."""
    spec = tr.SPEC[name]
    with np.load(NATIVE / f"{name}.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    side = json.loads((tr.DATA_ROOT / f"{name}.json").read_text())
    L = len(spec.widths) - 1
    for l in range(1, L + 1):
        W, b = arrays[f"W{l}"], arrays[f"b{l}"]
        assert W.dtype == b.dtype == np.float64
        assert W.shape == (spec.widths[l], spec.widths[l - 1]) and b.shape == (spec.widths[l],)
        assert np.array_equal(W.astype(np.float32).astype(np.float64), W)
    assert f"W{L + 1}" not in arrays
    assert tr.native_sha256(arrays) == side["params_sha256"] == str(arrays["params_sha256"])
    assert str(arrays["activation"]) == spec.activation and str(arrays["loss"]) == spec.loss
    assert float(arrays["weight_decay"]) == spec.weight_decay
    assert str(arrays["data"]) == side["data_file"] and (tr.DATA_ROOT / side["data_file"]).exists()


def test_native_sha_sees_a_changed_parameter():
    with np.load(NATIVE / f"{TRAINED[0]}.npz", allow_pickle=False) as f:
        arrays = {k: np.array(f[k]) for k in f.files}
    before = tr.native_sha256(arrays)
    arrays["b1"][0] = np.nextafter(np.float32(arrays["b1"][0]), np.float32(np.inf))
    assert tr.native_sha256(arrays) != before


def test_export_native_reproduces_the_committed_files(tmp_path):
    pytest.importorskip("torch")
    names = list(TRAINED[:2])
    assert tr.main(["export-native", "--only", *names, "--out", str(tmp_path)]) == 0
    for name in names:
        with np.load(tmp_path / f"{name}.npz") as new, np.load(NATIVE / f"{name}.npz") as old:
            assert sorted(new.files) == sorted(old.files)
            for key in new.files:
                if key != "made_by":
                    assert np.array_equal(new[key], old[key]), key


def test_native_file_carries_loss_and_weight_decay_for_the_cli(capsys):
    name = "iris_class_mchinge_wd_sgd"
    spec = tr.SPEC[name]
    code = main(["check", str(NATIVE / f"{name}.npz"), "--data",
                 str(tr.DATASET_DIR / f"{spec.data}.npz"), "--json", "--time-limit", "10"])
    rep = json.loads(capsys.readouterr().out)
    assert code == 11 and rep["verdict"] == "not_stationary"
    assert rep["problem"]["loss"] == "multiclass_hinge" and rep["problem"]["weight_decay"] == 1e-3
    assert rep["problem"]["activation"] == "relu"
