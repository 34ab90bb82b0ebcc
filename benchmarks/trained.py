"""The ``trained`` family: networks trained by PyTorch on scikit-learn's bundled data sets.

certify's main use is a checkpoint a real trainer produced. This module makes such checkpoints,
reproducibly, and serves them to the benchmark suite::

    python -m benchmarks.trained export                 # data/trained/datasets/*.npz (needs scikit-learn)
    python -m benchmarks.trained train                  # the committed checkpoints, data/trained/*.pt + .json
    python -m benchmarks.trained train --only wine_ce_wd_adam --out /tmp/ckpt
    python -m benchmarks.trained train --large          # the large ones, into the cache directory
    python -m benchmarks.trained baseline               # certify check / check --polish on every committed one
    python -m benchmarks.trained export-native          # certify-native copies of the demo's checkpoints
    python -m benchmarks.trained list

Data (:data:`DATASETS`). scikit-learn's bundled copies of Iris, Wine, Breast Cancer Wisconsin
(diagnostic), Digits (the UCI optical-digits test set), Diabetes (Efron et al. 2004) and Linnerud,
exported by :func:`export_datasets` as certify data files: ``X`` (n, d) float64 standardised per
column (mean 0, standard deviation 1; constant columns left at 0) and ``y`` in each loss's
convention (``+-1`` for hinge / logistic, integer classes for multiclass hinge / cross-entropy,
standardised floats for square / absolute). Both are **rounded to float32** before they are
stored, so the float64 arrays in the file are exactly the float32 tensors the network was trained
on (certify evaluates the loss at the data the trainer saw). scikit-learn is needed only by the
export (never by certify or the benchmark run): the exports are committed.

Training (:func:`train_one`). A PyTorch ``nn.Sequential`` of ``Linear`` and ``ReLU`` /
``LeakyReLU`` layers, PyTorch's default initialisation from ``torch.manual_seed(seed)``, float32,
one thread, ``torch.use_deterministic_algorithms(True)``; Adam (betas 0.9/0.999, eps 1e-8) or SGD
with momentum 0.9; learning rate decayed to zero by a cosine schedule; full batch for the small
sets, minibatches (a seeded ``torch.Generator`` permutes every epoch) for the large ones. The
objective is **exactly the loss certify checks** (mean over samples):

* ``square``: ``1/2 ||f - y||^2`` (not ``MSELoss``, which is ``||f - y||^2 / C`` without the 1/2);
* ``absolute``: ``||f - y||_1``; ``hinge``: ``max(0, 1 - y f)``; ``logistic``: ``log(1 + e^{-y f})``;
* ``multiclass_hinge`` (Crammer-Singer): ``max_j (f_j + [j != y]) - f_y``;
* ``cross_entropy``: ``logsumexp(f) - f_y`` (``F.cross_entropy``);
* weight decay: ``+ lambda/2 ||theta||^2`` over **all** weights and biases, as an explicit term of
  the objective (torch's ``weight_decay`` argument of Adam is not this objective: it is added to
  the gradient before Adam's scaling).

Each checkpoint is a state dict (``torch.save(model.state_dict())``, float32, keys ``0.weight,
0.bias, 2.weight, ...``) with a JSON sidecar: data file, widths, activation (certify's spelling),
loss, weight decay, optimizer and its settings, steps, seed, the loss curve (full-batch loss at
101 points), its last relative change (over the last 1% of the steps, and over the last 10%), and,
evaluated in float64 on the stored float32 parameters, the final training loss and gradient norm
(autograd's convention at kinks), plus a SHA-256 of the parameters. Checkpoints with fewer than
:data:`LARGE_P` parameters are committed in ``data/trained/`` (under ~5 MB with the data); the
large ones are regenerated deterministically into a cache directory (``CERTIFY_TRAINED_CACHE``,
default ``data/trained/cache/``, not committed) the first time the benchmark needs them, which
needs torch (``pip install "certify[torch]"``). Determinism holds for the same torch version on
the same kind of CPU; the SHA-256 in the sidecar shows when a regenerated checkpoint differs.

The family in the suite (:func:`instances`). Each checkpoint gives two instances:
``trained/NAME`` (the stored point; every method) and ``trained/NAME+polish`` (certify with
``polish=True`` only). The truth is unknown. What is recorded for certify is what a user needs:
verdict, time and, when the report has them, the polish distance, relative distance and loss gap
and the trained point's ``outcome`` (``near_minimum``, ``near_saddle``, ``not_converged``,
``undecided``; from ``report.to_dict()["trained"]`` when the report carries it, else derived by
:func:`derive_outcome`). Soundness: every ``local_min`` must pass :func:`certify.verify`, and a
random probe of its neighbourhood (:func:`probe`, independent float64 and exact evaluation) must
find no lower point; a ``local_min`` the probe refutes, or whose certificate fails ``verify``, is
recorded as **wrong**.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import numerics as nm

ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = ROOT / "data" / "trained"
DATASET_DIR = DATA_ROOT / "datasets"
#: certify-native ``.npz`` copies of a few checkpoints, for ``certify demo`` (which has no torch)
NATIVE_DIR = DATA_ROOT / "native"
#: checkpoints with at least this many parameters are not committed but regenerated into the cache
LARGE_P = 20_000
#: a polished point that moved more than this share of ||theta|| is not called "near" anything
NEAR_REL = 0.05


def cache_dir() -> Path:
    """Where the large checkpoints are regenerated (``CERTIFY_TRAINED_CACHE`` or ``data/trained/cache``)."""
    env = os.environ.get("CERTIFY_TRAINED_CACHE")
    return Path(env) if env else DATA_ROOT / "cache"


# ============================================================================ data sets
@dataclass(frozen=True)
class DataSpec:
    """One exported data set: which scikit-learn loader, which columns, which label convention."""

    name: str
    loader: str          # sklearn.datasets function
    task: str            # "class" (integer labels), "pm1" (labels +-1), "regression" (standardised floats)
    description: str
    source: str
    licence: str


UCI = "CC BY 4.0 (UCI Machine Learning Repository)"
DATASETS = {
    "iris_class": DataSpec("iris_class", "load_iris", "class",
                           "Iris: 4 measurements -> species (3 classes), 150 samples",
                           "R. A. Fisher (1936); UCI ML Repository id 53; scikit-learn's copy", UCI),
    "iris_vv": DataSpec("iris_vv", "load_iris", "pm1",
                        "Iris, versicolor (+1) vs virginica (-1): 4 measurements, 100 samples (not linearly "
                        "separable)", "R. A. Fisher (1936); UCI ML Repository id 53; scikit-learn's copy", UCI),
    "iris_petal": DataSpec("iris_petal", "load_iris", "regression",
                           "Iris: sepal length, sepal width, petal length -> petal width (standardised), "
                           "150 samples", "R. A. Fisher (1936); UCI ML Repository id 53; scikit-learn's copy",
                           UCI),
    "wine": DataSpec("wine", "load_wine", "class", "Wine: 13 chemical measurements -> cultivar (3 classes), "
                     "178 samples", "M. Forina et al., PARVUS; UCI ML Repository id 109; scikit-learn's copy", UCI),
    "breast_cancer": DataSpec("breast_cancer", "load_breast_cancer", "pm1",
                              "Breast Cancer Wisconsin (diagnostic): 30 features -> benign (+1) / malignant (-1), "
                              "569 samples", "W. H. Wolberg, W. N. Street, O. L. Mangasarian (1995); UCI ML "
                              "Repository id 17; scikit-learn's copy", UCI),
    "digits": DataSpec("digits", "load_digits", "class",
                       "Digits: 8x8 images (64 pixel counts 0..16) -> digit (10 classes), 1797 samples",
                       "E. Alpaydin, C. Kaynak (1998), the test set of UCI ML Repository id 80 (optical "
                       "recognition of handwritten digits); scikit-learn's copy", UCI),
    "diabetes": DataSpec("diabetes", "load_diabetes", "regression",
                         "Diabetes: 10 baseline variables -> disease progression after one year "
                         "(standardised), 442 samples",
                         "B. Efron, T. Hastie, I. Johnstone, R. Tibshirani (2004), Least Angle Regression, "
                         "Annals of Statistics 32(2); scikit-learn's copy",
                         "no licence stated by the source; redistributed with scikit-learn (BSD-3-Clause)"),
    "linnerud": DataSpec("linnerud", "load_linnerud", "regression",
                         "Linnerud: 3 exercises (chins, situps, jumps) -> 3 physiological variables (weight, "
                         "waist, pulse; standardised), 20 samples",
                         "M. Tenenhaus (1998), La regression PLS: theorie et pratique; scikit-learn's copy",
                         "no licence stated by the source; redistributed with scikit-learn (BSD-3-Clause)"),
}


def _standardise(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A - mean) / std`` per column (std 1 where a column is constant), rounded to float32."""
    A = np.asarray(A, dtype=np.float64)
    if A.ndim == 1:
        A = A[:, None]
    mean = A.mean(axis=0)
    std = A.std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    Z = ((A - mean) / scale).astype(np.float32).astype(np.float64)
    return Z, mean, scale


def dataset_arrays(name: str) -> dict:
    """The arrays of one exported data set, built from scikit-learn (imported here only)."""
    import sklearn.datasets as skd

    spec = DATASETS[name]
    bunch = getattr(skd, spec.loader)()
    X = np.asarray(bunch.data, dtype=np.float64)
    target = np.asarray(bunch.target)
    features = [str(f) for f in getattr(bunch, "feature_names", [f"x{k}" for k in range(X.shape[1])])]
    if name == "iris_vv":
        keep = target > 0
        X, target = X[keep], np.where(target[keep] == 1, 1.0, -1.0)
    elif name == "iris_petal":
        X, target = X[:, :3], X[:, 3]
        features = features[:3]
    elif name == "breast_cancer":
        target = np.where(target == 1, 1.0, -1.0)        # sklearn: 0 malignant, 1 benign
    Xs, x_mean, x_scale = _standardise(X)
    out = {"X": Xs, "x_mean": x_mean, "x_scale": x_scale, "feature_names": np.array(features)}
    if spec.task == "class":
        out["y"] = target.astype(np.int64)
    elif spec.task == "pm1":
        out["y"] = target.astype(np.float64)
    else:
        ys, y_mean, y_scale = _standardise(target)
        out["y"] = ys[:, 0] if ys.shape[1] == 1 else ys
        out["y_mean"], out["y_scale"] = y_mean, y_scale
    out.update(description=np.array(spec.description), source=np.array(spec.source),
               licence=np.array(spec.licence), task=np.array(spec.task),
               made_by=np.array("python -m benchmarks.trained export (scikit-learn "
                                f"{_version('sklearn')}, numpy {np.__version__})"))
    return out


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "not installed"


def export_datasets(out_dir: Path = DATASET_DIR, names=None) -> list[Path]:
    """Write ``out_dir/NAME.npz`` for every data set (or ``names``); returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names or DATASETS:
        path = out_dir / f"{name}.npz"
        np.savez_compressed(path, **dataset_arrays(name))
        paths.append(path)
    return paths


def load_dataset(name: str, root: Path = DATASET_DIR) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of an exported data set."""
    with np.load(Path(root) / f"{name}.npz", allow_pickle=False) as f:
        return np.array(f["X"]), np.array(f["y"])


# ============================================================================ checkpoints
@dataclass(frozen=True)
class TrainSpec:
    """One trained checkpoint: data, architecture, loss, optimizer (see the module docstring)."""

    name: str
    data: str
    widths: tuple
    activation: str      # certify's spelling: relu, leaky_relu:ALPHA
    loss: str
    weight_decay: float
    optimizer: str       # adam | sgd
    lr: float
    steps: int = 0       # full batch: optimizer steps
    epochs: int = 0      # minibatch: epochs of batch_size
    batch_size: int = 0  # 0 = full batch
    seed: int = 0
    dead_unit: bool = False   # hidden unit 0 of layer 1 starts with zero weights in and out
    note: str = ""

    @property
    def p(self) -> int:
        return sum(b * (a + 1) for a, b in zip(self.widths[:-1], self.widths[1:]))

    @property
    def large(self) -> bool:
        return self.p >= LARGE_P

    @property
    def depth(self) -> int:
        return len(self.widths) - 2


def _S(name, data, widths, activation, loss, wd, opt, lr, **kw) -> TrainSpec:
    return TrainSpec(name, data, tuple(widths), activation, loss, float(wd), opt, float(lr), **kw)


SPECS = [
    # ---- tiny: linnerud (n = 20, 3 outputs), iris (n = 100 / 150)
    _S("linnerud_sq_adam", "linnerud", (3, 6, 3), "relu", "square", 0, "adam", 1e-2, steps=20000),
    _S("linnerud_abs_wd_adam", "linnerud", (3, 6, 3), "relu", "absolute", 1e-2, "adam", 1e-2, steps=20000),
    _S("iris_petal_sq_adam", "iris_petal", (3, 8, 1), "relu", "square", 0, "adam", 1e-2, steps=20000),
    _S("iris_petal_sq_dead_adam", "iris_petal", (3, 8, 1), "relu", "square", 0, "adam", 1e-2, steps=20000,
       dead_unit=True, note="one hidden unit starts with zero weights in and out: no gradient ever moves it"),
    _S("iris_petal_abs_sgd", "iris_petal", (3, 8, 1), "leaky_relu:0.1", "absolute", 0, "sgd", 1e-2, steps=20000),
    _S("iris_vv_hinge_wd_adam", "iris_vv", (4, 8, 1), "relu", "hinge", 1e-2, "adam", 1e-2, steps=20000),
    _S("iris_class_mchinge_wd_sgd", "iris_class", (4, 8, 3), "relu", "multiclass_hinge", 1e-3, "sgd", 5e-2,
       steps=20000),
    _S("iris_class_ce_adam", "iris_class", (4, 16, 3), "relu", "cross_entropy", 0, "adam", 1e-2, steps=20000,
       note="no weight decay on training data a ReLU net can separate: the loss has no minimum"),
    _S("iris_class_ce_wd_sgd", "iris_class", (4, 16, 3), "relu", "cross_entropy", 1e-3, "sgd", 5e-2,
       steps=20000),
    # ---- wine (n = 178, 3 classes)
    _S("wine_ce_wd_adam", "wine", (13, 16, 3), "relu", "cross_entropy", 1e-2, "adam", 1e-2, steps=20000),
    _S("wine_mchinge_wd_sgd", "wine", (13, 16, 3), "relu", "multiclass_hinge", 1e-3, "sgd", 5e-2, steps=20000),
    _S("wine_ce_deep_adam", "wine", (13, 16, 16, 3), "relu", "cross_entropy", 1e-3, "adam", 1e-2, steps=20000),
    # ---- breast cancer (n = 569, +-1)
    _S("bc_logistic_wd_adam", "breast_cancer", (30, 16, 1), "relu", "logistic", 1e-3, "adam", 1e-2, steps=10000),
    _S("bc_hinge_wd_adam", "breast_cancer", (30, 16, 1), "relu", "hinge", 1e-3, "adam", 1e-2, steps=10000),
    _S("bc_hinge_sgd", "breast_cancer", (30, 8, 1), "relu", "hinge", 0, "sgd", 1e-2, epochs=2000, batch_size=64),
    _S("bc_logistic_deep_sgd", "breast_cancer", (30, 32, 16, 1), "leaky_relu:0.1", "logistic", 1e-4, "sgd", 1e-2,
       epochs=2000, batch_size=64),
    # ---- diabetes (n = 442, regression)
    _S("diabetes_sq_adam", "diabetes", (10, 32, 1), "relu", "square", 0, "adam", 1e-2, steps=20000),
    _S("diabetes_sq_deep_adam", "diabetes", (10, 16, 16, 1), "relu", "square", 0, "adam", 1e-2, steps=20000),
    _S("diabetes_sq_depth3_wd_adam", "diabetes", (10, 16, 16, 16, 1), "relu", "square", 1e-3, "adam", 3e-3,
       steps=20000),
    _S("diabetes_abs_sgd", "diabetes", (10, 16, 1), "relu", "absolute", 0, "sgd", 1e-2, epochs=2000, batch_size=64),
    _S("diabetes_sq_wd_sgd", "diabetes", (10, 32, 1), "leaky_relu:0.25", "square", 1e-3, "sgd", 1e-2, steps=20000),
    # ---- digits (n = 1797, 10 classes; minibatches)
    _S("digits_ce_wd_adam", "digits", (64, 64, 10), "relu", "cross_entropy", 1e-3, "adam", 1e-3, epochs=500,
       batch_size=64),
    _S("digits_mchinge_wd_sgd", "digits", (64, 32, 10), "relu", "multiclass_hinge", 1e-3, "sgd", 5e-2, epochs=500,
       batch_size=64),
    _S("digits_ce_deep_sgd", "digits", (64, 64, 32, 10), "relu", "cross_entropy", 1e-4, "sgd", 5e-2, epochs=500,
       batch_size=64),
    _S("digits_ce_depth3_adam", "digits", (64, 96, 64, 32, 10), "relu", "cross_entropy", 1e-4, "adam", 1e-3,
       epochs=500, batch_size=64),
    # ---- large (p >= LARGE_P): regenerated into the cache, full suite only
    _S("diabetes_sq_wide_wd_sgd", "diabetes", (10, 2048, 1), "relu", "square", 1e-4, "sgd", 1e-2, epochs=1000,
       batch_size=64),
    _S("digits_ce_wide_adam", "digits", (64, 512, 10), "relu", "cross_entropy", 1e-4, "adam", 1e-3, epochs=100,
       batch_size=64),
    _S("digits_ce_big_sgd", "digits", (64, 512, 128, 10), "relu", "cross_entropy", 1e-4, "sgd", 5e-2, epochs=100,
       batch_size=64),
]
SPEC = {s.name: s for s in SPECS}
#: the quick suite's slice: the five smallest checkpoints (square, a dead unit, absolute, hinge,
#: multiclass hinge), as stored
QUICK = ("iris_petal_sq_adam", "iris_petal_sq_dead_adam", "linnerud_abs_wd_adam", "iris_vv_hinge_wd_adam",
         "iris_class_mchinge_wd_sgd")
#: ... and polished. Today's polisher does not finish on the two hinge ones within 300 s
#: (results/trained_baseline.md); add them here once polishing has a budget.
QUICK_POLISH = ("iris_petal_sq_adam", "iris_petal_sq_dead_adam", "linnerud_abs_wd_adam")


def torch_objective(F, y, loss: str):
    """The mean training loss certify checks, in torch (``F`` of shape (n, C); no weight decay)."""
    import torch
    import torch.nn.functional as tf

    if loss == "square":
        return 0.5 * ((F - y) ** 2).sum(dim=1).mean()
    if loss == "absolute":
        return (F - y).abs().sum(dim=1).mean()
    if loss == "hinge":
        return torch.relu(1.0 - y * F[:, 0]).mean()
    if loss == "logistic":
        return tf.softplus(-y * F[:, 0]).mean()
    if loss == "cross_entropy":
        return tf.cross_entropy(F, y)
    if loss == "multiclass_hinge":
        margin = torch.ones_like(F)
        margin.scatter_(1, y[:, None], 0.0)
        return ((F + margin).max(dim=1).values - F.gather(1, y[:, None])[:, 0]).mean()
    raise ValueError(f"unknown loss {loss!r}")


def _penalty(model, weight_decay: float):
    return 0.5 * weight_decay * sum((q * q).sum() for q in model.parameters())


def build_model(spec: TrainSpec):
    """``nn.Sequential`` of Linear + activation layers, initialised from ``torch.manual_seed(seed)``."""
    import torch
    from torch import nn

    torch.manual_seed(spec.seed)
    layers = []
    w = spec.widths
    for k in range(len(w) - 1):
        layers.append(nn.Linear(w[k], w[k + 1]))
        if k < len(w) - 2:
            name, alpha = nm.parse_activation(spec.activation)
            layers.append(nn.ReLU() if name == "relu" else nn.LeakyReLU(alpha))
    model = nn.Sequential(*layers)
    if spec.dead_unit:
        with torch.no_grad():
            model[0].weight[0].zero_()
            model[0].bias[0] = 0.0
            model[2].weight[:, 0].zero_()
    return model


def _tensors(X, y, loss: str, dtype):
    import torch

    Xt = torch.from_numpy(np.asarray(X)).to(dtype)
    if loss in ("cross_entropy", "multiclass_hinge"):
        yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    else:
        ya = np.asarray(y, dtype=np.float64)
        yt = torch.from_numpy(ya if ya.ndim == 2 or loss in ("hinge", "logistic") else ya[:, None]).to(dtype)
    return Xt, yt


def params_sha256(state_dict) -> str:
    """SHA-256 of the parameters (float32 little-endian bytes, state-dict order, key names included)."""
    h = hashlib.sha256()
    for key, value in state_dict.items():
        h.update(key.encode())
        h.update(np.ascontiguousarray(value.detach().cpu().numpy().astype("<f4")).tobytes())
    return h.hexdigest()


def final_metrics(model, X, y, spec: TrainSpec) -> dict:
    """Loss and gradient norm in float64 at the stored float32 parameters (the objective certify checks)."""
    import copy

    import torch

    m64 = copy.deepcopy(model).to(torch.float64)
    Xt, yt = _tensors(X, y, spec.loss, torch.float64)
    m64.zero_grad()
    obj = torch_objective(m64(Xt), yt, spec.loss) + _penalty(m64, spec.weight_decay)
    obj.backward()
    g = torch.cat([q.grad.reshape(-1) for q in m64.parameters()])
    th = torch.cat([q.detach().reshape(-1) for q in m64.parameters()])
    return {"final_loss": float(obj.detach()), "grad_norm": float(g.norm()), "theta_norm": float(th.norm()),
            "grad_norm_rel": float(g.norm() / max(float(th.norm()), 1e-300))}


def train_one(spec: TrainSpec, out_dir: Path, data_root: Path = DATASET_DIR, log=None) -> dict:
    """Train ``spec`` deterministically on CPU; write ``NAME.pt`` and ``NAME.json`` to ``out_dir``."""
    import torch

    log = log or (lambda msg: None)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    X, y = load_dataset(spec.data, data_root)
    Xt, yt = _tensors(X, y, spec.loss, torch.float32)
    n = Xt.shape[0]
    model = build_model(spec)
    if spec.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=spec.lr, betas=(0.9, 0.999), eps=1e-8)
    elif spec.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=0.9)
    else:
        raise ValueError(f"unknown optimizer {spec.optimizer!r}")
    per_epoch = 1 if not spec.batch_size else math.ceil(n / spec.batch_size)
    total = spec.steps if not spec.batch_size else spec.epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total)))
    gen = torch.Generator().manual_seed(spec.seed + 1)

    def full_loss() -> float:
        with torch.no_grad():
            return float(torch_objective(model(Xt), yt, spec.loss) + _penalty(model, spec.weight_decay))

    marks = {int(round(k * total / 100)) for k in range(101)}
    curve = [[0, full_loss()]]
    t0 = time.perf_counter()
    step = 0
    while step < total:
        order = torch.randperm(n, generator=gen) if spec.batch_size else None
        for k in range(per_epoch):
            idx = order[k * spec.batch_size:(k + 1) * spec.batch_size] if spec.batch_size else slice(None)
            opt.zero_grad()
            obj = torch_objective(model(Xt[idx]), yt[idx], spec.loss) + _penalty(model, spec.weight_decay)
            obj.backward()
            opt.step()
            sched.step()
            step += 1
            if step in marks:
                curve.append([step, full_loss()])
            if step >= total:
                break
    train_s = time.perf_counter() - t0
    sd = model.state_dict()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(sd, out_dir / f"{spec.name}.pt")
    losses = [c[1] for c in curve]
    last = losses[-1]
    i10 = max(0, len(losses) - 11)
    meta = {
        "name": spec.name, "data": spec.data, "data_file": f"datasets/{spec.data}.npz", "widths": list(spec.widths),
        "activation": spec.activation, "loss": spec.loss, "weight_decay": spec.weight_decay, "p": spec.p,
        "n": int(n), "depth": spec.depth, "seed": spec.seed, "dead_unit": spec.dead_unit, "note": spec.note,
        "optimizer": {"name": spec.optimizer, "lr": spec.lr, "schedule": "cosine to 0",
                      **({"betas": [0.9, 0.999], "eps": 1e-8} if spec.optimizer == "adam" else {"momentum": 0.9}),
                      "batch_size": spec.batch_size or "full", "epochs": spec.epochs or None},
        "steps": total, "train_time_s": round(train_s, 2),
        "objective": "mean loss as certify defines it + weight_decay/2 ||theta||^2 (all weights and biases)",
        "final_loss_float32": last,
        "last_rel_change": abs(losses[-2] - last) / max(abs(last), 1e-300),
        "rel_change_last_10pct": abs(losses[i10] - last) / max(abs(last), 1e-300),
        **final_metrics(model, X, y, spec),
        "params_sha256": params_sha256(sd),
        "loss_curve": curve,
        "torch": torch.__version__, "threads": 1, "deterministic": True,
        "made_by": f"python -m benchmarks.trained train --only {spec.name}",
        "check": (f"certify check data/trained/{spec.name}.pt --data data/trained/datasets/{spec.data}.npz "
                  f"--activation {spec.activation} --loss {spec.loss} --weight-decay {spec.weight_decay:g}"),
    }
    (out_dir / f"{spec.name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    log(f"{spec.name}: p = {spec.p}, {total} steps in {train_s:.1f} s, loss {meta['final_loss']:.6g}, "
        f"|grad| {meta['grad_norm']:.3g}, last relative change {meta['last_rel_change']:.2g} "
        f"(last 10%: {meta['rel_change_last_10pct']:.2g})")
    return meta


def checkpoint_dir(spec: TrainSpec) -> Path:
    return cache_dir() if spec.large else DATA_ROOT


def _require_torch(spec: TrainSpec) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise RuntimeError(f"the trained family needs torch to read {spec.name}.pt "
                           f"(pip install \"certify[torch]\")") from None


def ensure_checkpoint(spec: TrainSpec, log=None) -> Path:
    """The checkpoint's path; a large one missing from the cache is trained there first."""
    path = checkpoint_dir(spec) / f"{spec.name}.pt"
    _require_torch(spec)
    side = path.with_suffix(".json")
    if not path.exists() or not side.exists():
        if not spec.large:
            raise FileNotFoundError(f"{path} is missing: run python -m benchmarks.trained train --only {spec.name}")
        train_one(spec, path.parent, log=log)
    elif spec.large and not _sidecar_matches(spec, json.loads(side.read_text())):
        train_one(spec, path.parent, log=log)          # the spec changed since the cache was made
    return path


def _sidecar_matches(spec: TrainSpec, meta: dict) -> bool:
    opt = meta.get("optimizer") or {}
    return (meta.get("widths") == list(spec.widths) and meta.get("activation") == spec.activation
            and meta.get("loss") == spec.loss and meta.get("weight_decay") == spec.weight_decay
            and meta.get("seed") == spec.seed and opt.get("name") == spec.optimizer and opt.get("lr") == spec.lr
            and opt.get("batch_size") == (spec.batch_size or "full") and opt.get("epochs") == (spec.epochs or None)
            and (spec.batch_size or meta.get("steps") == spec.steps) and meta.get("dead_unit") == spec.dead_unit)


def load_checkpoint(spec: TrainSpec) -> tuple[list, dict]:
    """``(layers, sidecar)``: the stored float32 parameters as float64 ``(W, b)`` pairs."""
    import torch

    path = ensure_checkpoint(spec)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    meta = json.loads(path.with_suffix(".json").read_text())
    keys = list(sd)
    layers = []
    for k in range(0, len(keys), 2):
        W, b = sd[keys[k]], sd[keys[k + 1]]
        layers.append((W.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64)))
    meta["sha_matches"] = params_sha256(sd) == meta.get("params_sha256")
    return layers, meta


def native_sha256(arrays: dict) -> str:
    """:func:`params_sha256` of a native ``.npz``'s ``W1, b1, ...`` (numpy only): the state-dict keys
    ``0.weight, 0.bias, 2.weight, ...`` of the ``nn.Sequential`` it came from, float32 bytes."""
    h = hashlib.sha256()
    L = sum(1 for k in arrays if k.startswith("W") and k[1:].isdigit())
    for l in range(1, L + 1):
        for key, name in ((f"{2 * (l - 1)}.weight", f"W{l}"), (f"{2 * (l - 1)}.bias", f"b{l}")):
            h.update(key.encode())
            h.update(np.ascontiguousarray(np.asarray(arrays[name]).astype("<f4")).tobytes())
    return h.hexdigest()


def native_arrays(spec: TrainSpec) -> dict:
    """A checkpoint as certify's native ``.npz`` arrays: ``W1, b1, ..., WL, bL`` (float64 holding the
    stored float32 values exactly), the strings ``activation``, ``loss`` and the number
    ``weight_decay`` that ``certify check`` reads, and provenance (``data``: the data file relative
    to ``data/trained/``, ``params_sha256`` of the ``.pt``, ``note``, ``trained_by``, ``made_by``).
    Needs torch."""
    import torch

    layers, meta = load_checkpoint(spec)
    if not meta["sha_matches"]:
        raise RuntimeError(f"{spec.name}.pt does not match the SHA-256 in its sidecar")
    out = {}
    for l, (W, b) in enumerate(layers, 1):
        out[f"W{l}"], out[f"b{l}"] = W, b
    if native_sha256(out) != meta["params_sha256"]:
        raise RuntimeError(f"{spec.name}: the exported arrays do not reproduce the checkpoint's SHA-256")
    out.update(activation=np.array(spec.activation), loss=np.array(spec.loss),
               weight_decay=np.array(float(spec.weight_decay)), data=np.array(f"datasets/{spec.data}.npz"),
               name=np.array(spec.name), params_sha256=np.array(meta["params_sha256"]), note=np.array(spec.note),
               trained_by=np.array(_trained_by(spec, meta)),
               made_by=np.array(f"python -m benchmarks.trained export-native --only {spec.name} (from "
                                f"data/trained/{spec.name}.pt; torch {torch.__version__})"))
    return out


def _trained_by(spec: TrainSpec, meta: dict) -> str:
    """One line on how a checkpoint was trained, from its sidecar."""
    opt = meta.get("optimizer") or {}
    batch = opt.get("batch_size")
    how = "full batch" if batch in (None, "full") else f"minibatches of {batch}"
    return (f"PyTorch {meta.get('torch', '?')}, float32: {spec.optimizer} (lr {spec.lr:g}, cosine to 0), "
            f"{meta.get('steps')} steps, {how}, seed {spec.seed}; final loss {meta.get('final_loss', float('nan')):.6g}, "
            f"gradient norm {meta.get('grad_norm', float('nan')):.3g}")


def export_native(names, out_dir: Path = NATIVE_DIR) -> list[Path]:
    """Write ``out_dir/NAME.npz`` (:func:`native_arrays`) for each checkpoint in ``names``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = out_dir / f"{name}.npz"
        np.savez_compressed(path, **native_arrays(SPEC[name]))
        paths.append(path)
    return paths


# ============================================================================ the probe
def _pattern(net: nm.AutogradNet, theta: np.ndarray, tol: float = 1e-6):
    """Sides of every hidden pre-activation and loss kink: ``(signs, near)`` flat boolean arrays.

    ``near`` marks values within ``tol`` (relative to the size of their terms) of their kink: those
    may change side in the pieces adjacent to theta. Loss kinks: hinge margin ``1 - y f``, absolute
    residuals ``f - y``, the multiclass-hinge argmax (gap to the runner-up).
    """
    layers = net.layers(theta)
    pre, post = nm.forward(layers, net.X, net.act)
    signs, near = [], []
    for l, (W, b) in enumerate(layers, start=1):
        size = np.abs(post[l - 1]) @ np.abs(W).T + np.abs(b)       # |W| |x| + |b|, the size of z's terms
        z = pre[l - 1]
        if l < len(layers):
            signs.append((z > 0).ravel())
            near.append((np.abs(z) <= tol * np.maximum(size, 1e-300)).ravel())
        else:
            F, fs = z, size
    if net.loss == "hinge":
        m = 1.0 - net.Y[:, 0] * F[:, 0]
        signs.append(m > 0)
        near.append(np.abs(m) <= tol * (1.0 + fs[:, 0]))
    elif net.loss == "absolute":
        r = F - net.Y
        signs.append((r > 0).ravel())
        near.append((np.abs(r) <= tol * (np.abs(net.Y) + fs)).ravel())
    elif net.loss == "multiclass_hinge":
        M = F + 1.0
        M[np.arange(net.n), net.Y] -= 1.0
        top2 = np.sort(M, axis=1)[:, -2:]
        C = M.shape[1]
        best = np.argmax(M, axis=1)
        signs.append((best[:, None] == np.arange(C)[None, :]).ravel())
        near.append(np.repeat(top2[:, 1] - top2[:, 0] <= tol * (1.0 + fs.max(axis=1)), C))
    return np.concatenate(signs) if signs else np.zeros(0, bool), np.concatenate(near) if near else np.zeros(0, bool)


def probe(layers, X, y, activation, loss, weight_decay=0.0, *, n_dirs: int = 200,
          rhos=(1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8), rho_local: float = 1e-4, seed: int = 0,
          exact_limit: int = 3_000_000, max_exact: int = 20, deadline: float | None = None) -> dict:
    """Look for a lower point near theta along random directions (independent of certify).

    For ``n_dirs`` Gaussian unit directions ``u`` and radii ``r = rho ||theta||``, the loss
    ``L(theta + r u)`` is evaluated in float64 (:class:`benchmarks.numerics.AutogradNet`); a
    decrease counts when it exceeds ``tau``, twice the generous rounding bound
    :func:`benchmarks.numerics.rounding_bound` (relative 1e-12 of the terms), and, for the rational
    losses when ``n p <= exact_limit``, when it is confirmed in exact rational arithmetic
    (:class:`benchmarks.numerics.ExactNet`, at most ``max_exact`` evaluations).

    A decrease **refutes** a local minimum when it lies at ``rho <= rho_local`` (default 1e-4) *and*
    in the union of the pieces adjacent to theta: every hidden pre-activation and loss kink that is
    clearly off its kink at theta (relative 1e-6) keeps its side at ``theta + r u``. A lower point
    farther out, or across a kink theta is not on, is reported as evidence only (a local minimum
    may have a small basin). Returns counts per radius and the refuting points.
    """
    net = nm.AutogradNet(layers, X, y, activation, loss, weight_decay)
    th = net.theta
    L0 = net.value()
    tau = 2.0 * nm.rounding_bound(net)
    norm = float(np.linalg.norm(th)) or 1.0
    sig0, near0 = _pattern(net, th)
    rng = np.random.default_rng(seed)
    exact = None
    if loss in nm.ExactNet.RATIONAL and net.n * net.p <= exact_limit:
        exact = nm.ExactNet(layers, X, y, activation, loss, weight_decay)
    exact_L0 = None
    n_exact = 0
    drops = {f"{r:.0e}": 0 for r in rhos}
    refuting, evidence = [], []
    n_done = 0
    for k in range(n_dirs):
        if deadline is not None and time.perf_counter() > deadline:
            break
        u = rng.standard_normal(net.p)
        u /= np.linalg.norm(u)
        for rho in rhos:
            t = th + (rho * norm) * u
            dec = L0 - net.value(t)
            if dec <= tau:
                continue
            sig, _ = _pattern(net, t)
            adjacent = bool(np.all((sig == sig0) | near0))
            confirmed = None
            if exact is not None and n_exact < max_exact and rho <= rho_local and adjacent:
                if exact_L0 is None:
                    exact_L0 = exact.loss_exact(th)
                confirmed = bool(exact.loss_exact(t) < exact_L0)
                n_exact += 1
            if confirmed is False:
                continue
            drops[f"{rho:.0e}"] += 1
            item = {"direction": k, "rho": rho, "decrease": dec, "adjacent": adjacent, "exact": confirmed}
            if rho <= rho_local and adjacent:
                refuting.append(item)
            elif len(evidence) < 10:
                evidence.append(item)
        n_done += 1
    return {"directions": n_done, "radii": list(rhos), "theta_norm": norm, "loss": L0, "tau": tau,
            "drops_per_radius": drops, "exact": exact is not None, "exact_evaluations": n_exact,
            "refuted": bool(refuting), "refuting": refuting[:10], "evidence": evidence}


# ============================================================================ outcomes and the certify run
OUTCOMES = ("near_minimum", "near_saddle", "not_converged", "undecided")


#: characters of a report's reason kept in a record and in the summary
REASON_CHARS = 300


def clip(text: str | None, limit: int = REASON_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with "..." when cut.

    A cut in the middle of a number misquotes it: ``t = 1.83e-16`` cut after 300 characters read
    ``t = 1.83e-1`` in the summary's list of open checkpoints.
    """
    text = text or ""
    if len(text) <= limit:
        return text
    head = text[:limit - 3]
    cut = head.rfind(" ")
    return (head[:cut] if cut > 0 else head).rstrip(" ,;:(") + "..."


def derive_outcome(verdict: str, polish: dict | None, theta_norm: float) -> str:
    """The trained point's outcome from a verdict and the report's ``polish`` section.

    With polishing: the verdict is about the polished point, which is "near" the checkpoint when it
    moved at most ``NEAR_REL ||theta||``: ``local_min`` -> ``near_minimum``, ``saddle`` ->
    ``near_saddle``, ``not_stationary`` -> ``not_converged`` (no stationary point was reached),
    else ``undecided``. Without polishing: ``local_min`` / ``saddle`` as above, anything else
    ``undecided`` (a checkpoint is never exactly stationary, so ``not_stationary`` alone says
    nothing about convergence).
    """
    if polish:
        rel = polish.get("relative_distance")
        if rel is None and polish.get("distance") is not None:
            rel = float(polish["distance"]) / max(theta_norm, 1e-300)
        if verdict == "not_stationary":
            return "not_converged"
        if rel is not None and rel > NEAR_REL:
            return "undecided"
    return {"local_min": "near_minimum", "saddle": "near_saddle"}.get(verdict, "undecided")


def run_certify(data, budget_s: float, *, polish: bool = False, probe_dirs: int = 200,
                time_limit: float = 300.0) -> dict:
    """certify on one trained instance, with the family's soundness checks (the runner's hook).

    ``data`` is a :class:`benchmarks.baselines.Data`. Returns the runner's method record: the
    verdict, the time of the check alone (``check_time_s``), the polish figures and the outcome,
    and for a ``local_min`` the result of :func:`certify.verify` and of :func:`probe`; ``wrong``
    is true when either fails.
    """
    import certify

    t0 = time.perf_counter()
    report = certify.check(data.network, data.X, data.y, activation=data.activation, loss=data.loss,
                           weight_decay=data.weight_decay, time_limit=min(time_limit, budget_s), polish=polish)
    check_s = time.perf_counter() - t0
    d = report.to_dict()
    v = d["verdict"]
    theta0 = nm.flatten(data.network)
    theta_norm = float(np.linalg.norm(theta0))
    out = {"verdict": "undecided" if v == "inconclusive" else v, "raw_verdict": v, "reason": clip(d.get("reason")),
           "method_detail": (d.get("flags") or {}).get("method"), "check_time_s": check_s, "polish_requested": polish,
           "timings": {k: round(float(t), 6) for k, t in (d.get("timings") or {}).items()
                       if isinstance(t, (int, float))}, "theta_norm": theta_norm}
    kinks = d.get("kinks") or {}
    out["K_found"] = int(kinks.get("unit_kinks", 0) or 0) + int(kinks.get("loss_kinks", 0) or 0)
    if v in ("saddle", "not_stationary"):
        out["refutation_verified"] = bool((d.get("refutation") or {}).get("verified"))
    pol = d.get("polish")
    theta = theta0
    if pol:
        theta = np.asarray(pol["theta"], dtype=np.float64) if pol.get("theta") is not None else theta0
        dist = pol.get("distance")
        if dist is None:
            dist = float(np.linalg.norm(theta - theta0))
        lb, la = pol.get("loss_before"), pol.get("loss_after")
        rel, gap = pol.get("relative_distance"), pol.get("loss_gap")
        out["polish"] = {"distance": dist,
                         "relative_distance": rel if rel is not None else dist / max(theta_norm, 1e-300),
                         "loss_before": lb, "loss_after": la,
                         # before - after (> 0: polishing lowered the loss); the report's own figure beside it
                         "loss_gap": (lb - la) if None not in (lb, la) else gap, "report_loss_gap": gap,
                         "converged": pol.get("converged"), "note": pol.get("note")}
    trained = d.get("trained")
    if isinstance(trained, dict) and trained.get("outcome") in OUTCOMES:
        out["outcome"], out["outcome_source"] = trained["outcome"], "report"
        if "end_certified" in trained:
            out["end_certified"] = bool(trained["end_certified"])
        if isinstance(trained.get("escape"), dict):
            # where a user would resume along the end point's descent, and whether float64 shows it
            out["escape"] = trained["escape"]
    else:
        out["outcome"] = derive_outcome(v, out.get("polish"), theta_norm)
        out["outcome_source"] = "derived"
    if v == "local_min":
        res = certify.verify(d, data.network, data.X, data.y)
        out["verify_ok"] = bool(res.ok)
        if not res.ok:
            out["verify_failed"] = [c.name for c in res.checks if not c.ok][:10]
        layers = nm.unflatten(theta, nm.shapes(data.network))
        pr = probe(layers, data.X, data.y, data.activation, data.loss, data.weight_decay, n_dirs=probe_dirs,
                   deadline=time.perf_counter() + max(30.0, budget_s))
        out["probe"] = pr
        wrong = []
        if not res.ok:
            wrong.append("certificate fails certify.verify")
        if pr["refuted"]:
            r0 = pr["refuting"][0]
            wrong.append(f"the probe found a lower point at radius {r0['rho']:.0e} ||theta|| "
                         f"(decrease {r0['decrease']:.3g}, exact {r0['exact']})")
        out["wrong"] = bool(wrong)
        if wrong:
            out["wrong_reason"] = "; ".join(wrong)
    pruned = d.get("pruned")
    if pruned:
        # the network without its all-zero units is a certified local minimum (certify.prune): re-checked too
        res = certify.verify(d, data.network, data.X, data.y)
        out["pruned"] = {"units": len(pruned.get("units") or []), "widths": pruned.get("widths"),
                         "verdict": pruned.get("verdict"), "verify_ok": bool(res.ok)}
        if not res.ok:
            out["wrong"] = True
            out["wrong_reason"] = "; ".join(filter(None, [out.get("wrong_reason"), "the pruned network's certificate "
                                                          "fails certify.verify"]))
    return out


# ============================================================================ the family
def instances(full: bool = False):
    """The family's :class:`benchmarks.families.BenchInstance` list (quick: :data:`QUICK`, polished
    only those in :data:`QUICK_POLISH`)."""
    import functools

    from .families import BenchInstance

    names = [s.name for s in SPECS] if full else list(QUICK)
    out = []
    for name in names:
        spec = SPEC[name]
        polish_too = full or name in QUICK_POLISH

        def make(spec=spec) -> dict:
            layers, meta = load_checkpoint(spec)
            X, y = load_dataset(spec.data)
            keep = ("optimizer", "steps", "seed", "final_loss", "grad_norm", "grad_norm_rel", "last_rel_change",
                    "rel_change_last_10pct", "params_sha256", "sha_matches", "torch", "train_time_s")
            return {"network": layers, "X": X, "y": y, "activation": spec.activation, "loss": spec.loss,
                    "weight_decay": spec.weight_decay, "meta": {k: meta.get(k) for k in keep},
                    "truth": lambda: (None, "unknown (a trained checkpoint): judged by certify.verify and a "
                                            "random neighbourhood probe")}
        base = {"K": None, "data": spec.data, "optimizer": spec.optimizer, "checkpoint": name,
                "large": spec.large}
        out.append(BenchInstance(f"trained/{name}", "trained", {**base, "variant": "checkpoint"}, make,
                                 run_certify=functools.partial(run_certify, polish=False)))
        if polish_too:
            out.append(BenchInstance(f"trained/{name}+polish", "trained", {**base, "variant": "polish"}, make,
                                     run_certify=functools.partial(run_certify, polish=True),
                                     methods=("certify",)))
    return out


# ============================================================================ the baseline table
def _cli_check(spec: TrainSpec, polish: bool, time_limit: float, timeout: float) -> dict:
    """``certify check`` on one checkpoint in a subprocess with an outer timeout."""
    path = ensure_checkpoint(spec)
    cmd = ["check", str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
           "--data", str((DATASET_DIR / f"{spec.data}.npz").relative_to(ROOT)), "--activation", spec.activation,
           "--loss", spec.loss, "--weight-decay", f"{spec.weight_decay:g}", "--time-limit", f"{time_limit:g}",
           "--json"] + (["--polish"] if polish else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", "import sys; from certify.cli import main; sys.exit(main())",
                               *cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"command": "certify " + " ".join(cmd), "verdict": "timeout", "wall_s": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    rec = {"command": "certify " + " ".join(cmd), "exit": proc.returncode, "wall_s": wall}
    try:
        rep = json.loads(proc.stdout)
    except json.JSONDecodeError:
        rec.update(verdict="error", error=clip((proc.stderr.strip().splitlines() or ["?"])[-1]))
        return rec
    rec.update(verdict=rep.get("verdict"), reason=clip(rep.get("reason")),
               method=(rep.get("flags") or {}).get("method"), time_s=(rep.get("timings") or {}).get("total_s"))
    pol = rep.get("polish")
    if pol:
        theta = pol.get("theta")
        rec["polish"] = {k: pol.get(k) for k in ("distance", "relative_distance", "loss_before", "loss_after",
                                                 "loss_gap", "converged", "note") if k in pol}
        rec["polish_theta_norm"] = float(np.linalg.norm(np.asarray(theta, float))) if theta is not None else None
    if isinstance(rep.get("trained"), dict):
        rec["trained"] = {k: v for k, v in rep["trained"].items() if not isinstance(v, list)}
    return rec


def run_baseline(names=None, *, time_limit: float = 60.0, timeout: float = 600.0, out_md: Path | None = None,
                 out_jsonl: Path | None = None, log=None) -> list[dict]:
    """``certify check`` and ``check --polish`` on every committed checkpoint (or ``names``)."""
    import datetime as dt

    from .runner import RESULTS_DIR, git_info

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out_md = Path(out_md) if out_md else RESULTS_DIR / "trained_baseline.md"
    out_jsonl = Path(out_jsonl) if out_jsonl else RESULTS_DIR / "trained_baseline.jsonl"
    specs = [SPEC[n] for n in names] if names else [s for s in SPECS if not s.large]
    commit, dirty = git_info()
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    rows = []
    for spec in specs:
        meta = json.loads((checkpoint_dir(spec) / f"{spec.name}.json").read_text()) \
            if (checkpoint_dir(spec) / f"{spec.name}.json").exists() else {}
        row = {"name": spec.name, "p": spec.p, "n": meta.get("n"), "loss": spec.loss, "widths": list(spec.widths),
               "activation": spec.activation, "weight_decay": spec.weight_decay, "optimizer": spec.optimizer,
               "final_loss": meta.get("final_loss"), "grad_norm": meta.get("grad_norm"),
               "theta_norm": meta.get("theta_norm"), "commit": commit, "dirty": dirty, "date": date,
               "time_limit": time_limit, "timeout": timeout}
        for polish in (False, True):
            rec = _cli_check(spec, polish, time_limit, timeout)
            row["polish" if polish else "check"] = rec
            log(f"{spec.name}{' --polish' if polish else ''}: {rec.get('verdict')} in {rec['wall_s']:.1f} s"
                + (f" (moved {rec['polish'].get('distance'):.3g})" if rec.get("polish") else ""))
        rows.append(row)
        with open(out_jsonl, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
    out_md.write_text(baseline_markdown(rows, time_limit, timeout), encoding="utf-8")
    return rows


def _g(x, fmt=".3g") -> str:
    return "-" if x is None else format(x, fmt)


def baseline_markdown(rows: list[dict], time_limit: float, timeout: float) -> str:
    commits = sorted({f"{r['commit']}{'+dirty' if r.get('dirty') else ''}" for r in rows})
    lines = [
        "# certify on the committed `trained` checkpoints: the baseline",
        "",
        f"Commit {', '.join(commits)}, {rows[0]['date'] if rows else '?'}; the 2-core machine, shared with "
        "other jobs (times are noisy; compare within the table).",
        "",
        "Reproduce (from the repository root):",
        "",
        "```bash",
        f"nice -n 10 python -m benchmarks.trained baseline --time-limit {time_limit:g} --timeout {timeout:g}",
        "```",
        "",
        "which runs, for every committed checkpoint, the commands in the sidecar "
        "(`data/trained/NAME.json`, key `check`):",
        "",
        "```bash",
        f"certify check data/trained/NAME.pt --data data/trained/datasets/DATA.npz --activation ACT --loss LOSS "
        f"--weight-decay LAMBDA --time-limit {time_limit:g} --json [--polish]",
        "```",
        "",
        f"each in a subprocess killed after {timeout:g} s (`timeout`). Time = the report's `total_s` (wall "
        "time of the subprocess in brackets, incl. Python start-up and imports). Polish: distance moved "
        "‖θ* − θ‖, relative to ‖θ‖, and the loss gap L(θ) − L(θ*) (positive: polishing lowered the loss).",
        "",
        "| checkpoint | p | loss | λ | opt | train loss | ‖∇L‖ | check | time (s) | check --polish | time (s) | "
        "moved | moved / ‖θ‖ | loss gap |",
        "|---|---:|---|---:|---|---:|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        c, p = r["check"], r["polish"]
        pol = p.get("polish") or {}
        rel = pol.get("relative_distance")
        if rel is None and pol.get("distance") is not None and r.get("theta_norm"):
            rel = pol["distance"] / r["theta_norm"]
        gap = pol.get("loss_gap")
        if pol.get("loss_before") is not None and pol.get("loss_after") is not None:
            gap = pol["loss_before"] - pol["loss_after"]
        lines.append(
            f"| {r['name']} | {r['p']} | {r['loss']} | {r['weight_decay']:g} | {r['optimizer']} | "
            f"{_g(r.get('final_loss'), '.4g')} | {_g(r.get('grad_norm'), '.2g')} | {c.get('verdict')} | "
            f"{_g(c.get('time_s'), '.3g')} ({c['wall_s']:.1f}) | {p.get('verdict')} | "
            f"{_g(p.get('time_s'), '.3g')} ({p['wall_s']:.1f}) | {_g(pol.get('distance'), '.3g')} | {_g(rel, '.2g')} | "
            f"{_g(gap, '.2g')} |")
    lines += ["", "Verdict counts:", ""]
    for key, label in (("check", "check"), ("polish", "check --polish")):
        cnt = {}
        for r in rows:
            v = r[key].get("verdict")
            cnt[v] = cnt.get(v, 0) + 1
        lines.append(f"* {label}: " + ", ".join(f"{v} {k}" for v, k in sorted(cnt.items(), key=lambda t: -t[1])))
    lines += ["", "Reasons (first 160 characters):", ""]
    for r in rows:
        for key, label in (("check", "check"), ("polish", "--polish")):
            rec = r[key]
            text = rec.get("reason") or rec.get("error") or ("outer timeout" if rec.get("verdict") == "timeout" else "")
            lines.append(f"* `{r['name']}` {label}: {text[:160]}")
    return "\n".join(lines) + "\n"


# ============================================================================ the family's summary
ANSWERED = ("near_minimum", "near_saddle", "not_converged")


def _wd(name):
    return SPEC[name].weight_decay if name in SPEC else None


def summarize(results: Path, out_md: Path | None = None) -> str:
    """``results/trained.md``: what certify answered on every trained checkpoint (polished), the issue's
    targets, soundness, and why the others stayed open -- from the suite's results file."""
    import statistics

    rows = [json.loads(line) for line in Path(results).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("family") == "trained" and r.get("method") == "certify"]
    pol = [r for r in rows if r.get("variant") == "polish"]
    raw = [r for r in rows if r.get("variant") == "checkpoint"]
    commits = sorted({r.get("commit", "?")[:7] + ("+dirty" if r.get("dirty") else "") for r in rows})
    lines = [f"# The `trained` family: certify on PyTorch checkpoints (`{Path(results).name}`)", "",
             f"Commit(s) {', '.join(commits)}; {rows[0].get('date', '?') if rows else '?'}; the 2-core machine, "
             f"shared with other jobs. Reproduce:", "", "```bash",
             "python -m benchmarks run --suite full --only trained --methods certify --budget 300 "
             "--out benchmarks/results/trained.jsonl --no-report",
             "python -m benchmarks.trained summarize", "```", "",
             "`NAME` is the checkpoint as stored (`certify check`), `NAME+polish` is `certify check --polish` "
             "with the default budget (300 s for the whole command). Outcome: the report's `trained` section "
             "(`near_minimum` = a certified local minimum within 5% of ||theta|| and 1% of the loss; "
             "`near_saddle` = a verified saddle next to the checkpoint; `not_converged` = a verified lower "
             "point further away, and what it is; `undecided`). Distance and loss gap are the polish's "
             "(checkpoint minus polished loss). Time is the whole command.", ""]
    n = len(pol)
    count = {o: sum(r.get("outcome") == o for r in pol) for o in ANSWERED + ("undecided",)}
    # (a "saddle" refuted only within rounding of a kink, end_certified false, is no certified end point;
    # records from before that field count by their verdict)
    carried = [r for r in pol if r.get("outcome") == "not_converged" and r.get("end_certified", True)
               and (r.get("verdict") in ("local_min", "saddle") or "output_scaling" in str(r.get("method_detail")))]
    answered_end = count["near_minimum"] + count["near_saddle"] + len(carried)
    wrong = [r for r in rows if r.get("wrong")]
    small = [r["time_s"] for r in pol if r.get("p", 0) <= 10_000 and r.get("time_s") is not None]
    large = [r for r in pol if r.get("p", 0) >= 50_000]
    over = [r for r in pol if (r.get("time_s") or 0) > 300 * 1.1]
    lines += ["## Targets (issue: trained checkpoints)", "", "| target | measured | met |", "|---|---|---|"]
    lines.append(f"| >= 90% end in (a) a certified minimum, (b) a verified saddle, or (c) not converged carried on "
                 f"to a certified minimum or saddle | {answered_end} / {n} ({100 * answered_end / max(n, 1):.0f}%): "
                 f"(a) {count['near_minimum']}, (b) {count['near_saddle']}, (c) {len(carried)}; not_converged "
                 f"without a certified end point {count['not_converged'] - len(carried)}, undecided "
                 f"{count['undecided']} | {'yes' if answered_end >= 0.9 * n else '**NO**'} |")
    if small:
        med = statistics.median(small)
        lines.append(f"| median time <= 60 s for p <= 10^4 | {med:.1f} s over {len(small)} checkpoints | "
                     f"{'yes' if med <= 60 else '**NO**'} |")
    for r in large:
        lines.append(f"| <= 10 minutes at p ~ 10^5 | {r['instance']}: {r.get('time_s', float('nan')):.0f} s "
                     f"(p = {r['p']:,}) | {'yes' if (r.get('time_s') or 1e9) <= 600 else '**NO**'} |")
    lines.append(f"| every answer within the default budget, 0 hangs | {len(over)} over 330 s; every run ended "
                 f"| {'yes' if not over else '**NO**'} |")
    lm = [r for r in rows if r.get("verdict") == "local_min"]
    pr = [r for r in rows if (r.get("pruned") or {}).get("verdict") == "local_min"]
    pruned = (f"; {len(pr)} pruned networks certified (without their all-zero units), "
              f"{sum(bool(r['pruned'].get('verify_ok')) for r in pr)} verify ok" if pr else "")
    lines.append(f"| every certified minimum passes verify and a random probe | {len(lm)} local_min: "
                 f"{sum(bool(r.get('verify_ok')) for r in lm)} verify ok, "
                 f"{sum(not (r.get('probe') or {}).get('refuted', False) for r in lm)} probes find no lower point"
                 f"{pruned}; **{len(wrong)} wrong** | {'yes' if not wrong else '**NO**'} |")
    lines += ["", "## Every checkpoint", "",
              "| checkpoint | p | loss | λ | as stored | polished | outcome | moved | moved / ‖θ‖ | loss gap | "
              "converged | time (s) |", "|---|---:|---|---:|---|---|---|---:|---:|---:|---|---:|"]
    by_name = {r["instance"]: r for r in rows}
    for r in pol:
        base = by_name.get(r["instance"].removesuffix("+polish"), {})
        pz = r.get("polish") or {}
        params = r.get("params") or {}
        fmt = lambda v, f=".3g": "-" if v is None else format(v, f)   # noqa: E731
        lines.append(f"| {r['instance'].removeprefix('trained/').removesuffix('+polish')} | {r.get('p', 0):,} | "
                     f"{r.get('loss')} | {fmt(_wd(params.get('checkpoint')), 'g')} | {base.get('verdict', '-')} | "
                     f"{r.get('verdict')} | {r.get('outcome')} | {fmt(pz.get('distance'))} | "
                     f"{fmt(pz.get('relative_distance'))} | {fmt(pz.get('loss_gap'))} | {pz.get('converged')} | "
                     f"{fmt(r.get('time_s'), '.1f')} |")
    esc = [r for r in pol if isinstance(r.get("escape"), dict)]
    if esc:
        lines += ["", "## Where a user would resume (the end point's verified descent, `trained.escape`)", "",
                  "The verified step grown 4x at a time along the refutation while the float64 loss falls, up to "
                  "0.1 ||theta|| (`certify.refute.resume_point`; `--escape` writes that point). A decrease within "
                  "the rounding bound does not show in float64: such an end point is no certified end point.", "",
                  "| checkpoint | end verdict | loss lower by | rounding bound | distance | shows in float64 |",
                  "|---|---|---:|---:|---:|---|"]
        for r in esc:
            e = r["escape"]
            lines.append(f"| {r['instance'].removeprefix('trained/').removesuffix('+polish')} | {r.get('verdict')} | "
                         f"{e.get('decrease', 0.0):.3g} | {e.get('error_bound', 0.0):.2g} | "
                         f"{e.get('distance', 0.0):.3g} | {'yes' if e.get('visible') else '**no**'} |")
    lines += ["", "## Why the others stayed open (the report's reason)", ""]
    for r in pol:
        if r.get("outcome") in ("near_minimum", "near_saddle") or r in carried:
            continue
        pr = r.get("pruned") or {}
        pruned = (f" **Without its {pr['units']} all-zero unit(s) the network (widths {pr['widths']}) is a certified "
                  f"local minimum** (verify {'ok' if pr.get('verify_ok') else 'FAILED'}); whether a zero unit can "
                  f"regrow is not decided." if pr.get("verdict") == "local_min" else "")
        lines.append(f"* `{r['instance'].removeprefix('trained/')}` ({r.get('outcome')}, {r.get('verdict')}): "
                     f"{clip(r.get('reason'))}{pruned}")
    lines += ["", f"As stored, {sum(r.get('verdict') == 'not_stationary' for r in raw)} of {len(raw)} checkpoints "
              "are `not_stationary` (a float32 checkpoint is never exactly stationary)."]
    text = "\n".join(lines) + "\n"
    if out_md is not None:
        Path(out_md).write_text(text, encoding="utf-8")
    return text


# ============================================================================ command line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trained",
                                     description="the trained benchmark family: data export, training, baseline")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="export scikit-learn's bundled data sets (needs scikit-learn)")
    ex.add_argument("--out", type=Path, default=DATASET_DIR)
    tr = sub.add_parser("train", help="train the committed checkpoints (or --only / --large)")
    tr.add_argument("--only", default=None, help="comma-separated checkpoint names (see `list`)")
    tr.add_argument("--large", action="store_true", help="the large checkpoints (into the cache directory)")
    tr.add_argument("--out", type=Path, default=None, help="output directory (default data/trained, or the cache)")
    bl = sub.add_parser("baseline", help="certify check and check --polish on every committed checkpoint")
    bl.add_argument("--only", default=None)
    bl.add_argument("--time-limit", type=float, default=60.0)
    bl.add_argument("--timeout", type=float, default=600.0, help="outer timeout per command (s)")
    bl.add_argument("--out", type=Path, default=None, help="markdown table (default results/trained_baseline.md)")
    en = sub.add_parser("export-native", help="certify-native .npz copies of checkpoints, for certify demo "
                        "(default: the demo's; needs torch)")
    en.add_argument("--only", nargs="+", default=None, metavar="NAME", help="checkpoint names (see `list`)")
    en.add_argument("--out", type=Path, default=NATIVE_DIR)
    sub.add_parser("list", help="the checkpoints")
    sm = sub.add_parser("summarize", help="results/trained.md from the suite's results (python -m benchmarks run "
                        "--suite full --only trained ... --out results/trained.jsonl)")
    sm.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "trained.jsonl")
    sm.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "trained.md")
    args = parser.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.command == "export":
        for path in export_datasets(args.out):
            log(f"wrote {path}")
        return 0
    if args.command == "summarize":
        summarize(args.results, args.out)
        log(f"wrote {args.out}")
        return 0
    if args.command == "list":
        for s in SPECS:
            print(f"{s.name:28s} p={s.p:<7d} {s.data:14s} {'-'.join(map(str, s.widths)):18s} {s.activation:15s} "
                  f"{s.loss:17s} wd={s.weight_decay:g} {s.optimizer}{' (large: cache)' if s.large else ''}")
        return 0
    if args.command == "export-native":
        from certify.demo import TRAINED
        names = [n for arg in args.only for n in arg.split(",") if n] if args.only else list(TRAINED)
        unknown = [n for n in names if n not in SPEC or SPEC[n].large]
        if unknown:
            print(f"unknown or large checkpoint(s) {unknown}: see python -m benchmarks.trained list", file=sys.stderr)
            return 2
        for path in export_native(names, args.out):
            log(f"wrote {path}")
        return 0
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    unknown = [n for n in only or [] if n not in SPEC]
    if unknown:
        print(f"unknown checkpoint(s) {unknown}: see python -m benchmarks.trained list", file=sys.stderr)
        return 2
    if args.command == "train":
        specs = [SPEC[n] for n in only] if only else [s for s in SPECS if s.large == args.large]
        t0 = time.perf_counter()
        for spec in specs:
            train_one(spec, args.out or checkpoint_dir(spec), log=log)
        log(f"{len(specs)} checkpoints in {time.perf_counter() - t0:.0f} s")
        return 0
    if args.command == "baseline":
        run_baseline(only, time_limit=args.time_limit, timeout=args.timeout, out_md=args.out, log=log)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
