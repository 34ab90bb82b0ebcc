"""``certify demo``: the seed papers' constructions and small networks trained on a real data set.

Everything runs from the files bundled in ``data/`` (no download): ``data/seeds/*.npz`` are the
hand-derived constructions of the test suite (each with the verdict derived by hand), and
``data/iris.npz`` is Fisher's Iris data (R. A. Fisher, 1936; UCI Machine Learning Repository,
CC BY 4.0; the copy distributed with scikit-learn). The trained networks are fitted here with a few
thousand full-batch Adam steps from a fixed seed, then certified as they are and after polishing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import Dataset, Problem
from .driver import check_polished, check_problem
from .network import Network
from .tangent import loss_gradient


#: the trained checkpoints ``certify demo`` shows, from ``data/trained/native/NAME.npz`` (certify's own
#: format, written from the PyTorch ``data/trained/NAME.pt`` by ``python -m benchmarks.trained
#: export-native``): a minimum, a saddle the trainer cannot leave (a dead unit), a saddle weight decay
#: made, a loss without a minimum, and a checkpoint with a lower minimum far away
TRAINED = ("iris_petal_sq_adam", "iris_petal_sq_dead_adam", "iris_class_mchinge_wd_sgd", "iris_class_ce_adam",
           "diabetes_sq_adam")
#: ... of which ``--quick`` leaves these out (polishing takes longest)
SLOW = ("diabetes_sq_adam",)


def data_dir() -> Path:
    """The bundled ``data/`` folder (next to the package in a checkout or an editable install)."""
    here = Path(__file__).resolve().parent.parent / "data"
    return here


@dataclass
class Row:
    name: str
    source: str
    widths: str
    loss: str
    verdict: str
    method: str
    expected: str
    seconds: float
    note: str
    inconclusive_ok: bool = False

    @property
    def agrees(self) -> bool | None:
        if not self.expected:
            return None
        return self.verdict == self.expected or (self.verdict == "inconclusive" and self.inconclusive_ok)


def adam(problem: Problem, steps: int, lr: float = 1e-2) -> Problem:
    """Full-batch Adam on ``problem`` (autograd's convention at kinks: the ``s_pos`` slope)."""
    th = problem.theta.copy()
    m = np.zeros_like(th)
    v = np.zeros_like(th)
    for t in range(1, steps + 1):
        g = loss_gradient(problem.at(th))
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        th -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-12)
    return problem.at(th)


def _init(widths, activation, seed, dead_unit=False) -> Network:
    rng = np.random.default_rng(seed)
    Ws = [rng.standard_normal((b, a)) / np.sqrt(a) for a, b in zip(widths[:-1], widths[1:])]
    bs = [np.full(b, 0.1) for b in widths[1:]]
    if dead_unit:  # a unit with zero weights in and out: gradient descent never moves it
        Ws[0][0] = 0.0
        bs[0][0] = 0.0
        Ws[1][:, 0] = 0.0
    return Network(Ws, bs, activation)


def trained_problems(quick: bool = False):
    """(name, description, problem) for the networks trained on Iris."""
    d = np.load(data_dir() / "iris.npz")
    X, y = d["X"], d["y"]
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    steps = 4000
    out = []
    reg = Dataset(Xs[:, :3], X[:, 3])  # petal width from the other three measurements
    p = Problem(_init([3, 5, 1], "relu", 0), reg, "square")
    out.append(("iris-regression", "petal width, Adam", adam(p, steps)))
    two = y > 0
    hinge = Dataset(Xs[two], np.where(y[two] == 1, 1.0, -1.0))  # versicolor vs virginica (not separable)
    p = Problem(_init([4, 6, 1], "relu", 1), hinge, "hinge")
    out.append(("iris-hinge", "versicolor vs virginica, Adam", adam(p, steps)))
    if not quick:
        three = Dataset(Xs[:, :2], y)  # three classes from the sepals only (they overlap)
        p = Problem(_init([2, 8, 3], "leaky_relu:0.1", 2), three, "cross_entropy")
        out.append(("iris-3class", "sepals only, leaky ReLU, Adam", adam(p, steps)))
    p = Problem(_init([3, 5, 1], "relu", 0, dead_unit=True), reg, "square")
    out.append(("iris-dead-unit", "one unit initialised at zero, Adam", adam(p, steps)))
    return out


def seed_problems():
    """(name, source, problem, expected verdict) for the bundled constructions."""
    from .loaders import load_data, load_model
    out = []
    for path in sorted((data_dir() / "seeds").glob("*.npz")):
        with np.load(path, allow_pickle=False) as f:
            meta = {k: str(f[k]) for k in ("loss", "expected", "source") if k in f.files}
            meta["inconclusive_ok"] = bool(f["inconclusive_ok"]) if "inconclusive_ok" in f.files else False
            wd = float(f["weight_decay"]) if "weight_decay" in f.files else 0.0
        net = load_model(path)
        problem = Problem(net, load_data(path), meta.get("loss", "square"), wd)
        out.append((path.stem, meta.get("source", ""), problem, meta.get("expected", ""), meta["inconclusive_ok"]))
    return out


def run_demo(quick: bool = False, out_dir: Path | None = None, progress=None):
    """Check every bundled problem; returns the table rows (and writes reports to ``out_dir``)."""
    rows = []

    def record(name, source, problem, report, expected="", inconclusive_ok=False):
        if out_dir is not None:
            (out_dir / f"{name}.json").write_text(report.to_json())
        net = problem.network
        rows.append(Row(name=name, source=source, widths="-".join(map(str, net.widths)) + f" {net.activation.spec}",
                        loss=problem.loss.name, verdict=report.verdict.value,
                        method=str(report.flags.get("method", "")), expected=expected,
                        seconds=float(report.timings.get("total_s", 0.0)), note=report.reason,
                        inconclusive_ok=inconclusive_ok))

    for name, source, problem, expected, inconclusive_ok in seed_problems():
        record(name, source, problem, check_problem(problem, time_limit=10.0), expected, inconclusive_ok)
        if progress:
            progress(name)
    for name, source, problem in trained_problems(quick):
        record(name, source + " (as trained)", problem, check_problem(problem, time_limit=10.0))
        record(name + "+polish", source + " (polished)", problem, check_polished(problem, time_limit=10.0))
        if progress:
            progress(name)
    return rows


def format_table(rows) -> str:
    head = f"{'problem':24s} {'network':22s} {'loss':14s} {'verdict':15s} {'method':15s} {'expected':15s} {'time':>7s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        mark = {True: "", False: "  <-- differs", None: ""}[r.agrees]
        lines.append(f"{r.name:24s} {r.widths:22s} {r.loss:14s} {r.verdict:15s} {r.method:15s} "
                     f"{r.expected or '-':15s} {r.seconds:6.2f}s{mark}")
    return "\n".join(lines)


def main_demo(quick: bool = False, out_dir: str | None = None, stream=None) -> int:
    import sys
    stream = stream or sys.stdout
    outp = Path(out_dir) if out_dir else None
    if outp is not None:
        outp.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = run_demo(quick=quick, out_dir=outp)
    stream.write(format_table(rows) + "\n\n")
    for r in rows:
        stream.write(f"{r.name}: {r.verdict} — {r.note}\n")
    n_bad = sum(1 for r in rows if r.agrees is False)
    stream.write(f"\n{len(rows)} checks in {time.perf_counter() - t0:.1f} s; "
                 f"{sum(1 for r in rows if r.expected)} with a hand-derived verdict, {n_bad} differing. "
                 f"Data: Fisher's Iris (CC BY 4.0) and the constructions in data/seeds/.\n")
    return 1 if n_bad else 0
