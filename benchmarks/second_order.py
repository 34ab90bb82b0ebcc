"""Benchmark of certify's whole check at minima (second order): ``python -m benchmarks.second_order``.

Three measurements, taken in one run on one machine and reported as ratios:

1. ``smooth`` / ``deep``: the whole ``certify.check(...)`` call at a KINK-FREE MINIMUM divided by
   ONE full-batch loss-and-gradient evaluation (``certify.tangent.loss_gradient(problem)`` plus
   ``problem.value()``, best of 3 before and 3 after the check, the minimum kept). Instances:
   :func:`benchmarks.instances.smooth_minimum` (``zero_loss``: ``y = f(x)`` exactly, so ``L = 0``,
   a global minimum whatever certify says). One hidden layer at p ~ 1e4 and p ~ 1e5 (target: within
   100 gradient evaluations); two hidden layers at the largest p the dense Hessian allows
   (``certify.secondorder.DENSE_P``) and just above it.
2. ``kinks``: time against the number K of active kinks at a d-stationary point, K = 10 ... 1,000,
   with the network and n fixed (:func:`benchmarks.instances.balanced_unit_kinks`: convex ReLU
   kinks with multipliers 1/2, square loss, a local but not global minimum; in full mode also
   :func:`benchmarks.instances.hinge_exact_margins`, ``stationary``: hinge loss kinks). The log-log
   slope of time against K is fitted.
3. ``enumeration``: the brute-force oracle (:func:`tests.bruteforce.oracle`: every one of the 2^K
   pieces of ``L'(theta; .)`` gets an LP and an exact Farkas certificate) against certify on the
   same small instances: the oracle is run in full for K = 10 ... 14; at K = 20 a random sample of
   pieces (2^12 by default) is timed with the oracle's own per-piece calls and the time for all
   2^20 pieces is EXTRAPOLATED linearly (labelled so). Target: certify >= 1,000x faster at K = 20.

Every check runs in a worker process with a time budget (``--budget``): a check that overruns is
ended (the worker is replaced) and recorded as ``timed_out`` with its time as a lower bound. BLAS
runs single-threaded by default (``--threads``): on a shared 2-core machine OpenBLAS's threads
contend with other jobs and made LAPACK calls 20-170x slower in our runs, which would measure the
load, not certify. Records are appended to ``benchmarks/results/second_order.jsonl``, the markdown
tables are printed and written to ``benchmarks/results/second_order.md``. ``--quick`` runs smaller
sizes in under a minute.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import multiprocessing as mp
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from benchmarks import instances
from benchmarks.first_order import _git_commit, _json_default, _machine, time_loss_and_gradient

BENCHMARK = "second_order"
RESULTS = Path(__file__).resolve().parent / "results" / "second_order.jsonl"
MARKDOWN = Path(__file__).resolve().parent / "results" / "second_order.md"
GROUPS = ("smooth", "deep", "kinks", "enumeration")
TARGET_RATIO = 100.0      # whole check at a kink-free minimum, in gradient evaluations
TARGET_SPEEDUP = 1000.0   # certify against the enumeration of all 2^20 pieces

PLANS = {
    "full": {
        "smooth": [{"widths": (98, 100, 1), "n": 5000}, {"widths": (100, 1000, 1), "n": 10_000}],
        "deep_n_factor": 1.25,
        "kinks": [10, 20, 50, 100, 200, 500, 1000],
        "kinks_net": {"d": 8, "h": 32, "n": 4096},
        "hinge_net": {"d": 20, "h": 40, "n": 4096},
        "enum_full": [10, 11, 12, 13, 14],
        "enum_K": 20,
        "enum_sample": 2 ** 12,
        "enum_check_sample": 2 ** 8,
        "enum_net": {"d": 2, "h": 3},
        "budget": 60.0,
        "repeat_small": 3,
    },
    "quick": {
        "smooth": [{"widths": (48, 100, 1), "n": 2000}],
        "deep_widths": (8, 16, 16, 1),
        "deep_n_factor": 1.25,
        "kinks": [10, 20, 50, 100],
        "kinks_net": {"d": 8, "h": 32, "n": 1024},
        "hinge_net": None,
        "enum_full": [10, 11],
        "enum_K": 20,
        "enum_sample": 2 ** 8,
        "enum_check_sample": 2 ** 6,
        "enum_net": {"d": 2, "h": 3},
        "budget": 6.0,
        "repeat_small": 3,
    },
}


# ---------------------------------------------------------------------------- instance plans
def deep_widths(limit: int, *, above: bool = False) -> tuple:
    """Two hidden layers ``(d, h, h, 1)``, ``d <= h``, with the largest ``p <= limit`` (``above``: the
    same ``h`` with ``d`` one larger, so ``p`` is just above the limit)."""
    best = None
    for h in range(8, 80):
        base = h * (h + 1) + h + 1                       # layer 2 and the output layer
        d = min((limit - base) // h - 1, h)              # h (d + 1) + base <= limit
        if d < 2:
            continue
        p = h * (d + 1) + base
        if best is None or p > best[0] or (p == best[0] and h > best[2]):
            best = (p, d, h)
    _, d, h = best
    return (d + 1, h, h, 1) if above else (d, h, h, 1)


def n_params(widths) -> int:
    return int(sum(a * b + b for a, b in zip(widths[:-1], widths[1:])))


# ---------------------------------------------------------------------------- worker process
_CACHE: dict = {}


def _build(spec: dict):
    key = json.dumps(spec, sort_keys=True, default=list)
    if key not in _CACHE:
        _CACHE.clear()
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec["kwargs"].items()}
        _CACHE[key] = getattr(instances, spec["generator"])(**kwargs)
    return _CACHE[key]


def _summary(report) -> dict:
    so = report.second_order or {}
    cert = so.get("certificate") or {}
    keep = ("kind", "min_eigenvalue", "reduced_dimension", "tolerance", "n_zero", "hvp_calls", "min_ritz_value",
            "symmetry")
    timings = dict(report.timings)
    staged = sum(v for k, v in timings.items() if k != "total_s" and isinstance(v, (int, float)))
    return {"verdict": report.verdict.value, "reason": report.reason, "timings": timings,
            "untimed_s": timings.get("total_s", 0.0) - staged,
            "unit_kinks": int(report.kinks.get("unit_kinks", 0)), "loss_kinks": int(report.kinks.get("loss_kinks", 0)),
            "first_order_method": report.first_order.get("method"), "stationary": report.first_order.get("stationary"),
            "method": report.flags.get("method"), "spurious": report.flags.get("spurious"),
            "second_order_notes": so.get("notes"),
            "solver_calls": [{k: c.get(k) for k in ("purpose", "status", "time_s", "objective", "n_cols", "n_rows")}
                             for c in report.solver_calls],
            "certificate": {k: cert[k] for k in keep if k in cert},
            "hessian": {k: v for k, v in (cert.get("hessian") or {}).items() if k in keep}}


def _enumerate(spec: dict, n_pieces: int | None, seed: int = 0) -> dict:
    """The oracle's per-piece work (``_Net.piece``, one LP, the exact Farkas check) on all pieces
    (``n_pieces`` None) or on ``n_pieces`` random sign patterns; returns counts and the time."""
    from tests import bruteforce as bf
    binst = to_oracle_instance(_build(spec))
    t0 = time.perf_counter()
    full, net, removed, embed = bf._reduce(binst)
    uk, lk = net.unit_kinks(), net.loss_kinks()
    K = len(uk) + len(lk)
    if n_pieces is None or n_pieces >= 2 ** K:
        sigmas = itertools.product((1, -1), repeat=K)
        n_pieces = 2 ** K
    else:
        rng = np.random.default_rng(seed)
        sigmas = ([int(s) for s in row] for row in rng.choice([1, -1], size=(n_pieces, K)))
    proved = trivial = descent = unproved = 0
    for sigma in sigmas:
        g, rows = net.piece(uk, lk, tuple(sigma))
        if not any(g):
            trivial += 1
            continue
        sol = bf._lp(g, rows)
        if sol is None:
            unproved += 1
            continue
        value, _x, lam = sol
        if value < -bf.TOL_TIE:
            descent += 1
        elif bf._farkas(g, rows, lam):
            proved += 1
        else:
            unproved += 1
    return {"K": K, "pieces": n_pieces, "time_s": time.perf_counter() - t0, "proved": proved, "trivial": trivial,
            "descent": descent, "unproved": unproved}


def _oracle(spec: dict) -> dict:
    from tests import bruteforce as bf
    binst = to_oracle_instance(_build(spec))
    t0 = time.perf_counter()
    res = bf.oracle(binst, max_kinks=10 ** 6)
    return {"time_s": time.perf_counter() - t0, "verdict": res.verdict, "K": res.n_kinks, "pieces": res.n_pieces,
            "stats": res.stats, "output_space_min": res.output_space_min, "reason": res.reason}


def _handle(kind: str, payload: dict):
    if kind == "grad":
        inst = _build(payload["spec"])
        return {"time_s": time_loss_and_gradient(inst, repeat=payload.get("repeat", 3)), "name": inst.name,
                "p": inst.n_params, "n": inst.n_samples, "expect": inst.expect, "params": inst.params}
    if kind == "check":
        import certify
        import certify.secondorder.lanczos as so_mod
        inst = _build(payload["spec"])
        saved = None
        if payload.get("skip_lanczos"):
            # diagnostic only: the same check with the Lanczos stage replaced by "undecided", in this
            # worker process (certify/ is not changed); shows what the other stages cost
            if not hasattr(so_mod, "lanczos_hessian_test"):
                return {"not_applicable": "certify.secondorder.lanczos has no lanczos_hessian_test"}
            saved = so_mod.lanczos_hessian_test
            so_mod.lanczos_hessian_test = lambda *a, **k: so_mod.SecondOrder(
                None, "hessian", reason="Lanczos stage skipped by the benchmark (diagnostic)")
        try:
            best, summary = np.inf, None
            for _ in range(payload.get("repeat", 1)):
                t0 = time.perf_counter()
                report = certify.check(inst.model(), inst.X, inst.y, time_limit=payload.get("time_limit", 60.0),
                                       **inst.options())
                elapsed = time.perf_counter() - t0
                if elapsed < best:
                    best, summary = elapsed, _summary(report)
        finally:
            if saved is not None:
                so_mod.lanczos_hessian_test = saved
        return {"time_s": float(best), **summary}
    if kind == "enumerate":
        return _enumerate(payload["spec"], payload.get("n_pieces"), payload.get("seed", 0))
    if kind == "oracle":
        return _oracle(payload["spec"])
    raise ValueError(kind)


def _worker_main(conn) -> None:
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        kind, payload = msg
        try:
            conn.send(("ok", _handle(kind, payload)))
        except Exception:  # reported to the parent, which records it
            conn.send(("error", traceback.format_exc()))


class Worker:
    """One worker process; a call that overruns its budget ends the worker (by its pid) and a fresh
    one is started for the next call."""

    def __init__(self, threads: int):
        self.threads = threads
        self.proc = None
        self.conn = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        if self.threads > 0:
            for k in saved:
                os.environ[k] = str(self.threads)
        try:
            parent, child = ctx.Pipe()
            self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
            self.proc.start()
            child.close()
            self.conn = parent
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def call(self, kind: str, payload: dict, timeout: float):
        """``(status, result)``: ``("ok", dict)``, ``("error", traceback)`` or ``("timeout", None)``."""
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send((kind, payload))
        if self.conn.poll(timeout):
            try:
                return self.conn.recv()
            except EOFError:
                self.stop()
                return "error", "worker died"
        self.stop(kill=True)
        return "timeout", None

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()          # our own child, by its pid
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.proc = None
        self.conn = None


# ---------------------------------------------------------------------------- oracle bridge
def to_oracle_instance(inst):
    """The same point as a :class:`tests.bruteforce.Instance` (exact: the numbers are dyadic)."""
    from fractions import Fraction
    from tests import bruteforce as bf
    (W1, W2), (b1, b2) = inst.weights, inst.biases
    q = lambda v: Fraction(float(v))  # noqa: E731 - exact for every float
    return bf.Instance(W=tuple(tuple(q(v) for v in r) for r in W1), b=tuple(q(v) for v in b1),
                       a=tuple(q(v) for v in W2[0]), c=q(b2[0]), X=tuple(tuple(q(v) for v in r) for r in inst.X),
                       y=tuple(q(v) for v in inst.y), activation=inst.activation, loss=inst.loss,
                       family=inst.params.get("generator", ""), seed=inst.params.get("seed"))


# ---------------------------------------------------------------------------- measurements
class Runner:
    def __init__(self, args, context: dict):
        self.args = args
        self.context = context
        self.worker = Worker(args.threads)
        self.records: list = []
        self.failed: list = []

    def emit(self, recs: list) -> None:
        self.records += recs
        if not self.args.no_write:
            self.args.out.parent.mkdir(parents=True, exist_ok=True)
            with open(self.args.out, "a", encoding="utf-8") as fh:
                for r in recs:
                    fh.write(json.dumps(r, default=_json_default) + "\n")

    def grad(self, spec: dict, repeat: int = 3) -> dict:
        status, res = self.worker.call("grad", {"spec": spec, "repeat": repeat}, timeout=600)
        if status != "ok":
            raise RuntimeError(f"gradient timing failed ({status}): {res}")
        return res

    def measure(self, group: str, spec: dict, *, repeat: int = 1, budget: float, target: str | None = None,
                expect_verdicts=("local_min",), extra: dict | None = None, diagnose: bool = False) -> dict:
        """Gradient baseline before and after, the whole check in between (within ``budget``)."""
        t_build = time.perf_counter()
        before = self.grad(spec)
        print(f"[{group}] {before['name']}: p = {before['p']}, n = {before['n']} "
              f"(built and baseline in {time.perf_counter() - t_build:.1f} s)", file=sys.stderr, flush=True)
        if target == "ratio":      # enough time to decide the target: a timeout then proves it missed
            budget = max(budget, 1.2 * TARGET_RATIO * before["time_s"])
        status, res = self.worker.call("check", {"spec": spec, "repeat": repeat, "time_limit": self.args.time_limit},
                                       timeout=budget * repeat + 5.0)
        after = self.grad(spec)
        t_grad = min(before["time_s"], after["time_s"])
        base = {"benchmark": BENCHMARK, "group": group, "instance": before["name"], "p": before["p"],
                "n": before["n"], "instance_params": before["params"], **self.context}
        out = [{**base, "measure": "loss_and_gradient", "method": "loss_gradient+value", "time_s": t_grad,
                "ratio_to_grad": 1.0, "repeat": 6, "before_s": before["time_s"], "after_s": after["time_s"]}]
        rec = {**base, "measure": "check", "repeat": repeat, "budget_s": budget, **(extra or {})}
        if status == "ok":
            problems = []
            if res["verdict"] not in expect_verdicts:
                problems.append(f"verdict {res['verdict']} (expected {' or '.join(expect_verdicts)})")
            if res["verdict"] in ("saddle", "not_stationary") and before["expect"].get("local_min"):
                problems.append("WRONG VERDICT at a minimum known by construction")
            for key in ("unit_kinks", "loss_kinks"):
                if key in before["expect"] and res[key] != before["expect"][key]:
                    problems.append(f"{key} {res[key]} != {before['expect'][key]}")
            rec.update(res, K=res["unit_kinks"] + res["loss_kinks"], timed_out=False,
                       ratio_to_grad=res["time_s"] / t_grad, expectations_failed=problems)
            if any("WRONG" in p for p in problems):
                self.failed.append((before["name"], problems))
        elif status == "timeout":
            rec.update(verdict="timeout", time_s=budget, timed_out=True, ratio_to_grad=budget / t_grad,
                       K=before["expect"].get("unit_kinks", 0) + before["expect"].get("loss_kinks", 0),
                       reason=f"no answer within the budget of {budget:g} s (worker ended); time is a lower bound",
                       expectations_failed=[])
        else:
            rec.update(verdict="error", time_s=None, timed_out=False, ratio_to_grad=None, reason=str(res)[-2000:],
                       K=None, expectations_failed=[f"error: {str(res).strip().splitlines()[-1]}"])
            self.failed.append((before["name"], ["error"]))
        if target == "ratio" and rec.get("time_s") is not None:
            rec.update(target=f"ratio <= {TARGET_RATIO:g}",
                       meets_target=(not rec["timed_out"]) and rec["ratio_to_grad"] <= TARGET_RATIO)
        out.append(rec)
        shown = "timeout" if rec.get("timed_out") else f"{rec.get('time_s', float('nan')):.3g} s"
        print(f"    check: {rec['verdict']} in {shown} = {rec.get('ratio_to_grad') or float('nan'):.3g} x grad "
              f"({t_grad:.3g} s)", file=sys.stderr, flush=True)
        if diagnose and rec.get("meets_target") is False:
            status, res = self.worker.call("check", {"spec": spec, "repeat": 1, "time_limit": self.args.time_limit,
                                                     "skip_lanczos": True}, timeout=budget + 5.0)
            diag = {**base, "measure": "check_without_lanczos", "diagnostic": True, "budget_s": budget,
                    "note": "the same check with certify.secondorder.lanczos.lanczos_hessian_test stubbed out (returns "
                            "undecided) in the benchmark's worker process; certify/ unchanged"}
            if status == "ok" and "not_applicable" not in res:
                diag.update(res, timed_out=False, ratio_to_grad=res["time_s"] / t_grad,
                            K=res["unit_kinks"] + res["loss_kinks"])
            elif status == "timeout":
                diag.update(verdict="timeout", time_s=budget, timed_out=True, ratio_to_grad=budget / t_grad)
            else:
                diag.update(verdict="n/a", time_s=None, timed_out=False, ratio_to_grad=None,
                            reason=str(res.get("not_applicable") if isinstance(res, dict) else res)[-500:])
            out.append(diag)
            print(f"    diagnostic without Lanczos: {diag['verdict']} in {_f(diag.get('time_s'))} s = "
                  f"{_f(diag.get('ratio_to_grad'))} x grad", file=sys.stderr, flush=True)
        self.emit(out)
        return rec

    # ------------------------------------------------------------------ groups
    def smooth(self, plan: dict) -> None:
        for cfg in plan["smooth"]:
            spec = {"generator": "smooth_minimum", "kwargs": {"widths": list(cfg["widths"]), "n": cfg["n"],
                                                              "variant": "zero_loss", "seed": 0}}
            self.measure("smooth", spec, budget=self.args.budget, target="ratio", diagnose=True)

    def deep(self, plan: dict) -> None:
        from certify.secondorder import DENSE_P
        below = tuple(plan.get("deep_widths") or deep_widths(DENSE_P))
        above = deep_widths(DENSE_P, above=True)
        for widths, label in ((below, "deep"), (above, "deep_above")):
            p = n_params(widths)
            n = int(round(plan["deep_n_factor"] * p))
            spec = {"generator": "smooth_minimum", "kwargs": {"widths": list(widths), "n": n, "variant": "zero_loss",
                                                              "seed": 0}}
            ok = ("local_min",) if label == "deep" else ("local_min", "inconclusive")
            # above the limit certify runs Lanczos (budgeted by certify, ~1 s here): give it room to answer
            budget = self.args.budget if label == "deep" else 2.5 * self.args.budget
            self.measure(label, spec, budget=budget, expect_verdicts=ok,
                         extra={"dense_p_limit": DENSE_P, "p_vs_limit": "above" if p > DENSE_P else "at or below"})

    def kinks(self, plan: dict) -> None:
        series = [("kinks", "balanced_unit_kinks", plan["kinks_net"], "square, convex unit kinks")]
        if plan.get("hinge_net"):
            series.append(("kinks_hinge", "hinge_exact_margins", plan["hinge_net"], "hinge, loss kinks"))
        for group, gen, net, _ in series:
            for K in plan["kinks"]:
                if gen == "balanced_unit_kinks":
                    kwargs = {"n_kinks": K, "d": net["d"], "h": net["h"], "n": net["n"], "seed": 0}
                else:
                    kwargs = {"n_kinks": K, "n": net["n"], "d": net["d"], "h": net["h"], "variant": "stationary",
                              "seed": 0}
                self.measure(group, {"generator": gen, "kwargs": kwargs}, repeat=plan["repeat_small"],
                             budget=self.args.budget)

    def enumeration(self, plan: dict) -> None:
        net = plan["enum_net"]
        Ks = list(plan["enum_full"]) + [plan["enum_K"]]
        for K in Ks:
            spec = {"generator": "balanced_unit_kinks", "kwargs": {"n_kinks": K, "d": net["d"], "h": net["h"],
                                                                   "seed": 0}}
            rec = self.measure("enumeration", spec, repeat=5, budget=self.args.budget)
            base = {k: rec[k] for k in ("benchmark", "group", "instance", "p", "n", "instance_params")}
            base.update(self.context)
            t_cert = rec.get("time_s")
            out = []
            if K in plan["enum_full"]:
                status, res = self.worker.call("oracle", {"spec": spec}, timeout=3600)
                if status != "ok":
                    raise RuntimeError(f"oracle failed ({status}): {res}")
                if res["verdict"] != "local_min":
                    self.failed.append((rec["instance"], [f"oracle says {res['verdict']}: {res['reason']}"]))
                out.append({**base, "measure": "oracle_full", "method": "tests.bruteforce.oracle", "K": res["K"],
                            "pieces": res["pieces"], "time_s": res["time_s"], "extrapolated": False,
                            "per_piece_s": res["time_s"] / max(res["pieces"], 1), "oracle_verdict": res["verdict"],
                            "oracle_stats": res["stats"], "output_space_min": res["output_space_min"],
                            "certify_s": t_cert, "certify_verdict": rec.get("verdict"),
                            "speedup": res["time_s"] / t_cert if t_cert else None})
                n_sample = plan["enum_check_sample"]
            else:
                n_sample = plan["enum_sample"]
            status, res = self.worker.call("enumerate", {"spec": spec, "n_pieces": n_sample, "seed": 0},
                                           timeout=3600)
            if status != "ok":
                raise RuntimeError(f"piece sample failed ({status}): {res}")
            per_piece = res["time_s"] / res["pieces"]
            total = per_piece * 2 ** res["K"]
            if res["descent"] or res["unproved"]:
                self.failed.append((rec["instance"], [f"sampled pieces: {res['descent']} with descent, "
                                                      f"{res['unproved']} unproved"]))
            out.append({**base, "measure": "oracle_sample", "method": "oracle per-piece calls on a random sample",
                        "K": res["K"], "pieces": 2 ** res["K"], "sampled_pieces": res["pieces"],
                        "sample_time_s": res["time_s"], "per_piece_s": per_piece, "time_s": total,
                        "extrapolated": res["pieces"] < 2 ** res["K"], "proved": res["proved"],
                        "trivial": res["trivial"], "descent": res["descent"], "unproved": res["unproved"],
                        "certify_s": t_cert, "certify_verdict": rec.get("verdict"),
                        "speedup": total / t_cert if t_cert else None,
                        **({"target": f"speed-up >= {TARGET_SPEEDUP:g}",
                            "meets_target": bool(t_cert) and total / t_cert >= TARGET_SPEEDUP}
                           if K == plan["enum_K"] else {})})
            self.emit(out)
            shown = ", ".join(f"{r['measure']} {r['time_s']:.3g} s" for r in out)
            print(f"    oracle: {shown}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- analysis and tables
def loglog_slope(K, t) -> float | None:
    K, t = np.asarray(K, dtype=float), np.asarray(t, dtype=float)
    ok = np.isfinite(t) & (t > 0) & (K > 0)
    if ok.sum() < 2:
        return None
    return float(np.polyfit(np.log(K[ok]), np.log(t[ok]), 1)[0])


def fits(records: list) -> list[dict]:
    out = []
    for group in ("kinks", "kinks_hinge"):
        rows = sorted((r for r in records if r["group"] == group and r["measure"] == "check"
                       and r.get("time_s") is not None and not r.get("timed_out")), key=lambda r: r["K"])
        if len(rows) < 2:
            continue
        K = [r["K"] for r in rows]
        total = [r["time_s"] for r in rows]
        fo = [r["timings"].get("first_order_s", np.nan) for r in rows]
        big = [i for i, k in enumerate(K) if k >= 100]
        out.append({"group": group, "K": K, "slope_check": loglog_slope(K, total),
                    "slope_check_K>=100": loglog_slope([K[i] for i in big], [total[i] for i in big]),
                    "slope_first_order": loglog_slope(K, fo),
                    "slope_first_order_K>=100": loglog_slope([K[i] for i in big], [fo[i] for i in big]),
                    "time_min_s": min(total), "time_max_s": max(total)})
    return out


def _calls(calls) -> str:
    names = {"Clarke distance QP": "QP", "first-order LP (convex kinks)": "LP"}
    return "; ".join(f"{names.get(c.get('purpose'), c.get('purpose'))} {_f(c.get('time_s'))}" for c in calls or []
                     if c.get("time_s") is not None)


def _f(x, fmt=".3g") -> str:
    return "" if x is None else format(x, fmt)


def tables(records: list, fit_rows: list, header: str) -> str:
    lines = [header, ""]
    checks = [r for r in records if r["measure"] in ("check", "check_without_lanczos")
              and r["group"] in ("smooth", "deep", "deep_above")]
    grads = {(r["group"], r["instance"]): r["time_s"] for r in records if r["measure"] == "loss_and_gradient"}
    if checks:
        lines += ["### 1. Kink-free minima: whole check / one loss-and-gradient evaluation", "",
                  "| group | instance | p | n | verdict | method | check (s) | grad (s) | × grad | target | "
                  "details |", "|---|---|---:|---:|---|---|---:|---:|---:|---|---|"]
        for r in checks:
            t = "> " + _f(r["budget_s"]) + " (timed out)" if r.get("timed_out") else _f(r.get("time_s"))
            ratio = ("> " if r.get("timed_out") else "") + _f(r.get("ratio_to_grad"), ".3g")
            target = ""
            if "target" in r:
                target = f"{r['target']}: {'yes' if r.get('meets_target') else 'NO'}"
            if r.get("expectations_failed"):
                target += " (!) " + "; ".join(r["expectations_failed"])
            tm = r.get("timings", {})
            notes = (r.get("second_order_notes") or [])
            what = ", ".join(f"{k.removesuffix('_s')} {_f(v)}" for k, v in tm.items() if k != "total_s")
            if tm:
                what = f"split (s): {what}, untimed {_f(r.get('untimed_s'))}"
            cert = r.get("certificate") or {}
            hess = r.get("hessian") or {}
            if cert.get("kind") == "reduced_hessian":
                what += f"; dense Hessian, reduced dim {cert.get('reduced_dimension')}, λmin {_f(cert.get('min_eigenvalue'))}"
            lz = hess if hess.get("kind") == "lanczos_estimate" else cert if cert.get("kind") == "lanczos_estimate" else {}
            if lz:
                what += f"; Lanczos {lz.get('hvp_calls')} HVPs"
            if r.get("verdict") == "inconclusive":
                what += f"; reason: {r.get('reason', '')[:160]}"
            elif notes:
                what += f"; note: {notes[0][:120]}"
            if r.get("diagnostic"):
                what = "DIAGNOSTIC, not certify as shipped: Lanczos stage stubbed out; " + what
            lines.append(f"| {r['group']}{' (diagnostic)' if r.get('diagnostic') else ''} | {r['instance']} | "
                         f"{r['p']} | {r['n']} | {r['verdict']} | "
                         f"{r.get('method') or ''} | {t} | {_f(grads.get((r['group'], r['instance'])))} | {ratio} | "
                         f"{target} | {what} |")
        lines.append("")
    kinks = [r for r in records if r["measure"] == "check" and r["group"] in ("kinks", "kinks_hinge")]
    if kinks:
        lines += ["### 2. Time against the number K of active kinks (d-stationary, network and n fixed)", "",
                  "| series | instance | p | n | K | verdict | first order | check (s) | × grad | first order (s) | "
                  "second order (s) | untimed (s) | solver calls (s) |",
                  "|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---|"]
        for r in kinks:
            tm = r.get("timings", {})
            flag = " (!) " + "; ".join(r["expectations_failed"]) if r.get("expectations_failed") else ""
            lines.append(f"| {r['group']} | {r['instance']} | {r['p']} | {r['n']} | {r['K']} | {r['verdict']}{flag} | "
                         f"{r.get('first_order_method') or ''} | {_f(r.get('time_s'))} | {_f(r.get('ratio_to_grad'))} | "
                         f"{_f(tm.get('first_order_s'))} | {_f(tm.get('second_order_s'))} | {_f(r.get('untimed_s'))} | "
                         f"{_calls(r.get('solver_calls'))} |")
        lines.append("")
        for f in fit_rows:
            lines.append(f"* `{f['group']}`: log-log slope of the whole check against K = {f['K'][0]}..{f['K'][-1]}: "
                         f"**{_f(f['slope_check'], '.2f')}** (K >= 100: {_f(f['slope_check_K>=100'], '.2f') or 'n/a'}); "
                         f"first-order stage: {_f(f['slope_first_order'], '.2f')} (K >= 100: "
                         f"{_f(f['slope_first_order_K>=100'], '.2f') or 'n/a'}). Polynomial: time ~ K^slope, with the slope "
                         f"bounded and no doubling per added kink (2^K would be a slope of K ln 2 ~ "
                         f"{f['K'][-1] * np.log(2):.0f} at K = {f['K'][-1]}).")
        lines.append("")
    enum = [r for r in records if r["group"] == "enumeration" and r["measure"] in ("oracle_full", "oracle_sample")]
    if enum:
        lines += ["### 3. Piece enumeration (tests/bruteforce.py oracle) against certify, same instances", "",
                  "| K | p | n | pieces | enumeration | time (s) | per piece (ms) | certify (s) | certify verdict | "
                  "oracle verdict | speed-up | target |", "|---:|---:|---:|---:|---|---:|---:|---:|---|---|---:|---|"]
        for r in enum:
            kind = ("oracle, all pieces (measured)" if r["measure"] == "oracle_full" else
                    f"EXTRAPOLATED from {r['sampled_pieces']} random pieces" if r.get("extrapolated") else
                    "per-piece calls, all pieces")
            target = f"{r['target']}: {'yes' if r.get('meets_target') else 'NO'}" if "target" in r else ""
            lines.append(f"| {r['K']} | {r['p']} | {r['n']} | {r['pieces']} | {kind} | {_f(r['time_s'])} | "
                         f"{_f(1e3 * r['per_piece_s'])} | {_f(r.get('certify_s'))} | {r.get('certify_verdict')} | "
                         f"{r.get('oracle_verdict', '')} | {_f(r.get('speedup'), '.3g')} | {target} |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.second_order", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (under a minute)")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated subset of {', '.join(GROUPS)}")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds allowed to each check before it is ended (default 60, quick 6)")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads in the worker (default 1; 0 = the library's default)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="MILP time limit passed to check")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON-lines file to append to ({RESULTS})")
    parser.add_argument("--markdown", type=Path, default=MARKDOWN, help=f"markdown tables ({MARKDOWN})")
    parser.add_argument("--no-write", action="store_true", help="print only, write nothing")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s) {sorted(unknown)}: expected {', '.join(GROUPS)}")
    mode = "quick" if args.quick else "full"
    plan = PLANS[mode]
    if args.budget is None:
        args.budget = plan["budget"]
    commit, dirty = _git_commit()
    machine = _machine()
    machine["blas_threads"] = args.threads or "default"
    context = {"commit": commit, "dirty": dirty,
               "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "mode": mode,
               "machine": machine}
    runner = Runner(args, context)
    t_start = time.perf_counter()
    try:
        for group in GROUPS:
            if group in only:
                getattr(runner, group)(plan)
    finally:
        runner.worker.stop()
    fit_rows = fits(runner.records)
    if fit_rows and not args.no_write:
        with open(args.out, "a", encoding="utf-8") as fh:
            for f in fit_rows:
                fh.write(json.dumps({"benchmark": BENCHMARK, "group": f["group"], "measure": "loglog_slope", **f,
                                     **context}, default=_json_default) + "\n")
    header = (f"## second-order benchmark ({mode}; commit {commit}{' + uncommitted changes in certify/' if dirty else ''}; "
              f"{context['date']}; {machine['cpus']} CPUs; BLAS threads {machine['blas_threads']}; budget "
              f"{args.budget:g} s per check; total {time.perf_counter() - t_start:.0f} s)\n\n"
              f"Command: `python -m benchmarks.second_order{' --quick' if args.quick else ''}"
              f"{'' if args.only == ','.join(GROUPS) else ' --only ' + args.only}`")
    text = tables(runner.records, fit_rows, header)
    print(text)
    if runner.failed:
        print("\n(!) problems:\n" + "\n".join(f"* {name}: {'; '.join(p)}" for name, p in runner.failed))
    if not args.no_write:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n", encoding="utf-8")
        print(f"\n{len(runner.records)} records appended to {args.out}; tables written to {args.markdown}")
    return 1 if runner.failed else 0


if __name__ == "__main__":
    sys.exit(main())
