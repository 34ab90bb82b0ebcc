"""``certify demo``: the seed papers' constructions and networks trained by PyTorch on real data sets.

Everything runs from the files bundled in ``data/`` (no download, no torch): ``data/seeds/*.npz``
are the hand-derived constructions of the test suite (each with the verdict derived by hand), and
``data/trained/native/*.npz`` a few of the ``trained`` benchmark family's checkpoints (trained by
PyTorch on scikit-learn's copies of Iris and Diabetes, :data:`TRAINED`), exported once to certify's
own format; their data sets are ``data/trained/datasets/*.npz`` (sources and licences in
``data/README.md``). A checkpoint is certified as it was trained and after polishing; what the
polished verdict means for the checkpoint is the report's ``trained`` outcome. No one derived the
truth for a checkpoint by hand: those rows are not counted as agreeing or differing, and every
``local_min`` among them is re-checked by :func:`certify.verify`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import Problem
from .driver import check_polished, check_problem


#: the trained checkpoints ``certify demo`` shows, from ``data/trained/native/NAME.npz`` (certify's own
#: format, written from the PyTorch ``data/trained/NAME.pt`` by ``python -m benchmarks.trained
#: export-native``): a minimum, a saddle the trainer cannot leave (a dead unit), a saddle weight decay
#: made, a loss without a minimum, and a checkpoint with a lower minimum far away
TRAINED = ("iris_petal_sq_adam", "iris_petal_sq_dead_adam", "iris_class_mchinge_wd_sgd", "iris_class_ce_adam",
           "diabetes_sq_adam")
#: ... of which ``--quick`` leaves these out (polishing takes longest)
SLOW = ("diabetes_sq_adam",)
#: the polished check's budget for a trained checkpoint (each takes well under it)
TRAINED_TIME_LIMIT = 60.0


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


@dataclass
class TrainedRow:
    """One trained checkpoint: as trained, and polished (what that means: ``outcome``)."""

    name: str
    data: str
    widths: str
    loss: str
    weight_decay: float
    raw_verdict: str
    raw_seconds: float
    raw_note: str
    verdict: str
    outcome: str
    summary: str
    distance: float
    relative_distance: float
    loss_change: float        # polished minus trained (< 0: polishing lowered the loss)
    polished_note: str        # the polished point's reason
    seconds: float
    note: str                 # what is special about the checkpoint (from its file)
    trained_by: str
    verified: bool | None     # certify.verify on a local_min report; None for other verdicts


def trained_problems(quick: bool = False):
    """(name, problem, info) for the bundled trained checkpoints (:data:`TRAINED`; ``quick``: not
    :data:`SLOW`); ``info`` holds the file's ``note``, ``trained_by`` and its data set's ``source``,
    ``licence``."""
    from .loaders import load_data, load_model, read_npz
    out = []
    for name in TRAINED:
        if quick and name in SLOW:
            continue
        path = data_dir() / "trained" / "native" / f"{name}.npz"
        arrays = read_npz(path, "model file")
        data_path = data_dir() / "trained" / str(arrays["data"])
        problem = Problem(load_model(path), load_data(data_path), str(arrays["loss"]), float(arrays["weight_decay"]))
        with np.load(data_path, allow_pickle=False) as d:
            info = {k: str(d[k]) for k in ("source", "licence") if k in d.files}
        info.update({k: str(arrays[k]) for k in ("note", "trained_by") if k in arrays})
        info["data"] = data_path.stem
        out.append((name, problem, info))
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
    """Check every bundled problem; returns ``(rows, trained_rows, data_info)`` (and writes reports to
    ``out_dir``: ``NAME.json``, and ``NAME+polish.json`` for a polished checkpoint)."""
    from .verify import verify

    rows, trained, data_info = [], [], {}

    def save(name, report):
        if out_dir is not None:
            (out_dir / f"{name}.json").write_text(report.to_json())

    def widths(net):
        return "-".join(map(str, net.widths)) + f" {net.activation.spec}"

    for name, source, problem, expected, inconclusive_ok in seed_problems():
        report = check_problem(problem, time_limit=10.0)
        save(name, report)
        rows.append(Row(name=name, source=source, widths=widths(problem.network), loss=problem.loss.name,
                        verdict=report.verdict.value, method=str(report.flags.get("method", "")),
                        expected=expected, seconds=float(report.timings.get("total_s", 0.0)), note=report.reason,
                        inconclusive_ok=inconclusive_ok))
        if progress:
            progress(name)
    for name, problem, info in trained_problems(quick):
        raw = check_problem(problem, time_limit=10.0)
        save(name, raw)
        pol = check_polished(problem, time_limit=TRAINED_TIME_LIMIT)
        save(name + "+polish", pol)
        t = pol.trained or {}
        verified = None
        if pol.verdict.value == "local_min":
            verified = bool(verify(pol.to_dict(), problem.network, data=problem.data).ok)
        trained.append(TrainedRow(
            name=name, data=info["data"], widths=widths(problem.network), loss=problem.loss.name,
            weight_decay=float(problem.weight_decay), raw_verdict=raw.verdict.value,
            raw_seconds=float(raw.timings.get("total_s", 0.0)), raw_note=raw.reason, verdict=pol.verdict.value,
            outcome=str(t.get("outcome", "")), summary=str(t.get("summary", "")),
            distance=float(t.get("distance", float("nan"))),
            relative_distance=float(t.get("relative_distance", float("nan"))),
            loss_change=-float(t.get("loss_gap", float("nan"))),
            polished_note=pol.reason.split("): ", 1)[-1] if pol.reason.startswith("at the polished point") else pol.reason,
            seconds=float(pol.timings.get("total_s", 0.0)), note=info.get("note", ""),
            trained_by=info.get("trained_by", ""), verified=verified))
        names = data_info.setdefault((info.get("source", ""), info.get("licence", "")), [])
        if info["data"] not in names:
            names.append(info["data"])
        if progress:
            progress(name)
    return rows, trained, data_info


def format_table(rows) -> str:
    head = f"{'problem':24s} {'network':22s} {'loss':14s} {'verdict':15s} {'method':15s} {'expected':15s} {'time':>7s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        mark = {True: "", False: "  <-- differs", None: ""}[r.agrees]
        lines.append(f"{r.name:24s} {r.widths:22s} {r.loss:14s} {r.verdict:15s} {r.method:15s} "
                     f"{r.expected or '-':15s} {r.seconds:6.2f}s{mark}")
    return "\n".join(lines)


def format_trained_table(rows) -> str:
    head = (f"{'checkpoint':26s} {'network':13s} {'loss':16s} {'wd':>6s}  {'as trained':15s} {'polished':15s} "
            f"{'outcome':14s} {'moved (% of |theta|)':>20s} {'loss change':>11s}  {'verify':6s} {'time':>7s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        verify = {True: "ok", False: "FAILED", None: "-"}[r.verified]
        lines.append(f"{r.name:26s} {r.widths:13s} {r.loss:16s} {r.weight_decay:6g}  {r.raw_verdict:15s} "
                     f"{r.verdict:15s} {r.outcome:14s} {f'{r.distance:.3g} ({100 * r.relative_distance:.2g}%)':>20s} "
                     f"{r.loss_change:11.3g}  {verify:6s} {r.seconds:6.2f}s")
    return "\n".join(lines)


def main_demo(quick: bool = False, out_dir: str | None = None, stream=None) -> int:
    import sys
    stream = stream or sys.stdout
    outp = Path(out_dir) if out_dir else None
    if outp is not None:
        outp.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows, trained, data_info = run_demo(quick=quick, out_dir=outp)
    stream.write("Constructions from the seed papers (data/seeds/), each with the verdict derived by hand:\n\n")
    stream.write(format_table(rows) + "\n\n")
    for r in rows:
        stream.write(f"{r.name}: {r.verdict} — {r.note}\n")
    stream.write("\nCheckpoints trained by PyTorch (data/trained/native/), as trained and polished; no verdict "
                 "derived by hand (the truth is unknown):\n\n")
    stream.write(format_trained_table(trained) + "\n\n")
    for r in trained:
        stream.write(f"{r.name} ({r.loss} on {r.data}{'; ' + r.note if r.note else ''}):\n"
                     + (f"  training:   {r.trained_by}\n" if r.trained_by else "")
                     + f"  as trained: {r.raw_verdict} — {r.raw_note}\n"
                     f"  polished:   {r.verdict} — {r.polished_note}"
                     + ("" if r.verified is None else f"; certify.verify: {'ok' if r.verified else 'FAILED'}")
                     + f"\n  outcome:    {r.outcome} — {r.summary}\n")
    n_bad = sum(1 for r in rows if r.agrees is False)
    n_min = sum(1 for r in trained if r.verified is not None)
    n_failed = sum(1 for r in trained if r.verified is False)
    outcomes = {}
    for r in trained:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    stream.write(
        f"\n{len(rows) + 2 * len(trained)} checks in {time.perf_counter() - t0:.1f} s. "
        f"{len(rows)} constructions, {sum(1 for r in rows if r.expected)} with a hand-derived verdict, "
        f"{n_bad} differing. {len(trained)} trained checkpoints, no hand-derived verdict: "
        + ", ".join(f"{k} {v}" for k, v in outcomes.items())
        + f"; {n_min} local_min certificate(s) re-checked by certify.verify, "
        + ("all ok" if not n_failed else f"{n_failed} FAILED") + ".\n"
        "Data: the constructions in data/seeds/ (MIT); "
        + "; ".join(f"{', '.join(names)}: {src} [licence: {lic}]" for (src, lic), names in data_info.items())
        + " (see data/README.md).\n")
    return 1 if n_bad or n_failed else 0
