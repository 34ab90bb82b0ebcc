"""Resumable benchmark runner: every (instance, method) pair once, one JSON line each.

The runner is a thin orchestrator. A worker process (``spawn``, so no solver thread state is
inherited) builds each instance, derives its ground truth (:meth:`BenchInstance.ground_truth`,
never from certify's output), times one loss-and-gradient evaluation, and then runs each method
on it; the orchestrator enforces a hard timeout per task by ending that worker (by its pid) and
starting a fresh one. Peak memory is the worker's resident-set high-water mark during the method
(``/proc/self/status`` VmHWM after resetting it through ``/proc/self/clear_refs``; where that is
not available, ``resource.getrusage`` maxrss), minus the resident size at the start of the method.

Record fields (one JSON object per line): ``suite, instance, family, method, verdict, expected,
derivation, correct`` (True / False, or null when undecided or the answer is unknown),
``decided, time_s, grad_time_s, ratio_to_grad, peak_mem_mb, p, n, K, depth, activation, loss,
variant, commit, dirty, date, machine`` and what the method reports (``note``, ``K_found``,
``extrapolated``, ``time_s_extrapolated``, ...). A method that does not apply to an instance
writes no record. ``--resume`` skips the pairs already in the file.
"""

from __future__ import annotations

import datetime as _dt
import json
import multiprocessing as mp
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_METHODS = ("certify", "enumeration", "hessian_rule", "gradient_sampling", "sosp_check")
SUITE_BUDGET = {"quick": 20.0, "full": 120.0}     # seconds a method may spend (its own cap)


def results_path(suite: str) -> Path:
    return RESULTS_DIR / f"{suite}.jsonl"


# ============================================================================ judging
def judge(verdict: str, expected) -> bool | None:
    """True / False when the verdict is decided and the answer known; None otherwise."""
    if verdict not in ("local_min", "saddle", "not_stationary") or expected is None:
        return None
    if expected == "not_local_min":
        return verdict in ("saddle", "not_stationary")
    return verdict == expected


# ============================================================================ worker
def _mem_reset() -> float:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_kb("VmRSS") / 1024.0
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _status_kb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return float(line.split()[1])
    raise OSError(key)


def _mem_peak() -> float:
    try:
        return _status_kb("VmHWM") / 1024.0
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _grad_time(data) -> float:
    """Best of 3 of one full-batch loss-and-gradient evaluation (certify's, as in first_order.py)."""
    import numpy as np
    best = float("inf")
    try:
        import certify
        from certify.tangent import loss_gradient
        net = certify.Network([np.asarray(W, float) for W, _ in data.network],
                              [np.asarray(b, float) for _, b in data.network], data.activation)
        problem = certify.Problem(net, certify.Dataset(data.X, data.y), data.loss, data.weight_decay)
        for _ in range(3):
            t0 = time.perf_counter()
            loss_gradient(problem)
            problem.value()
            best = min(best, time.perf_counter() - t0)
    except Exception:  # certify refuses the input: time the independent numpy gradient instead
        from . import numerics as nm
        net = nm.AutogradNet(data.network, data.X, data.y, data.activation, data.loss, data.weight_decay)
        for _ in range(3):
            t0 = time.perf_counter()
            net.gradient()
            net.value()
            best = min(best, time.perf_counter() - t0)
    return best


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """End this worker once its orchestrator is gone (killed by a signal Python cannot catch, e.g. SIGKILL):
    a worker mid-task does not read its pipe, so without this it would run its task to the end."""
    def watch():
        while True:
            time.sleep(every)
            if os.getppid() != parent:
                os._exit(3)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker(conn, suite_name: str, parent: int | None = None):
    import warnings
    warnings.filterwarnings("ignore")
    if parent is not None:
        _exit_with_parent(parent)
    from . import baselines, families
    by_id = {inst.id: inst for inst in families.suite(suite_name)}
    current = None
    data = None
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        kind = task[0]
        try:
            if kind == "stop":
                return
            if kind == "prepare":
                if current is not None:
                    current.release()
                inst = by_id[task[1]]
                t0 = time.perf_counter()
                network, X, y, activation, loss, wd = inst.build()
                data = baselines.Data(network, X, y, activation, loss, wd)
                build_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                expected, derivation = inst.ground_truth()
                truth_s = time.perf_counter() - t0
                current = inst
                applies = {name: m.applies(data) and (inst.methods is None or name in inst.methods)
                           for name, m in baselines.METHODS.items()}
                conn.send({"ok": True, "expected": expected, "derivation": derivation,
                           "params": dict(inst.params), "grad_time_s": _grad_time(data), "build_s": build_s,
                           "truth_s": truth_s, "applies": applies,
                           "meta": inst._built.get("meta", {}) if inst._built else {}})
            elif kind == "run":
                name, budget = task[1], task[2]
                method = baselines.METHODS[name]
                base = _mem_reset()
                t0 = time.perf_counter()
                if name == "certify" and current.run_certify is not None:
                    res = current.run_certify(data, budget)      # the family's certify run and checks
                else:
                    res = method.run(data, budget)
                elapsed = time.perf_counter() - t0
                res["time_s"] = res.pop("check_time_s", elapsed)  # the check alone, not the family's checks
                res["peak_mem_mb"] = max(0.0, _mem_peak() - base)
                conn.send({"ok": True, **res})
        except Exception as exc:  # noqa: BLE001 - reported as an error record
            conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}",
                       "trace": traceback.format_exc(limit=6)})


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


class Worker:
    def __init__(self, suite_name: str):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, suite_name, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.suite = suite_name

    def call(self, task, timeout: float):
        self.conn.send(task)
        if self.conn.poll(timeout):
            return self.conn.recv()
        return None

    def kill(self):
        if self.proc.is_alive():
            os.kill(self.proc.pid, 9)
        self.proc.join(5)

    def stop(self):
        try:
            self.conn.send(("stop",))
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.kill()


# ============================================================================ context
def git_info() -> tuple:
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "certify"], cwd=root, capture_output=True,
                               text=True, timeout=10)
        if sha.returncode != 0:
            return None, None
        return sha.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def machine() -> dict:
    import numpy
    import scipy
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "platform": platform.platform()}


def load_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue          # a line cut by an interrupted run
    return out


def _default(obj):
    from .first_order import _json_default   # one JSON encoder for every results file
    return _json_default(obj)


# ============================================================================ run
def run_suite(suite: str = "quick", *, out: Path | None = None, resume: bool = False, only=None,
              methods=DEFAULT_METHODS, instances=None, budget_s: float | None = None,
              hard_timeout_s: float | None = None, log=None) -> dict:
    """Run a suite; returns a summary (counts, certify's wrong verdicts, the results path).

    ``only``: family names to keep; ``instances``: instance ids to keep (a slice, for tests).
    """
    from . import families
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out) if out is not None else results_path(suite)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not resume and out.exists() and out.stat().st_size:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        prev = out.with_name(out.stem + f".{stamp}.prev.jsonl")
        out.rename(prev)
        log(f"previous results moved to {prev.name}")
    done = {(r.get("instance"), r.get("method")) for r in load_records(out)} if resume else set()
    budget = budget_s if budget_s is not None else SUITE_BUDGET.get(suite, 60.0)
    hard = hard_timeout_s if hard_timeout_s is not None else 2.0 * budget + 60.0
    todo = families.suite(suite)
    if only:
        only = set(only)
        unknown = only - set(families.FAMILIES)
        if unknown:
            raise ValueError(f"unknown family {sorted(unknown)}: expected {', '.join(families.FAMILIES)}")
        todo = [i for i in todo if i.family in only]
    if instances is not None:
        keep = set(instances)
        todo = [i for i in todo if i.id in keep]
    commit, dirty = git_info()
    context = {"suite": suite, "commit": commit, "dirty": dirty,
               "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine()}
    worker = None
    n_written = 0
    wrong_certify = []
    t_start = time.perf_counter()
    # a `kill` (SIGTERM) ends the run as Ctrl-C does: the worker is ended with it, the file keeps what finished
    previous = (signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread()
                else None)
    try:
        for k, inst in enumerate(todo, 1):
            pending = [m for m in methods if (inst.id, m) not in done]
            if not pending:
                continue
            if worker is None:
                worker = Worker(suite)
            prep = worker.call(("prepare", inst.id), hard)
            if prep is None or not prep.get("ok"):
                err = "timeout while building" if prep is None else prep.get("error")
                log(f"[{k}/{len(todo)}] {inst.id}: cannot build ({err})")
                if prep is None:
                    worker.kill()
                    worker = None
                rec = {**context, "instance": inst.id, "family": inst.family, "method": "build",
                       "verdict": "error", "error": err}
                with open(out, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec, default=_default) + "\n")
                continue
            params = prep["params"]
            line = []
            for m in pending:
                if not prep["applies"].get(m, False):
                    continue
                if worker is None:          # the previous method hit the hard timeout: a fresh worker
                    worker = Worker(suite)
                    again = worker.call(("prepare", inst.id), hard)
                    if again is None or not again.get("ok"):
                        if again is None:
                            worker.kill()
                            worker = None
                        break
                # certify's own budgets (MILP time limits) are the budget; its other stages have none,
                # so it gets a longer hard timeout: a timeout must measure it, not cut it short
                hard_m = max(hard, 480.0) if m == "certify" else hard
                res = worker.call(("run", m, budget), hard_m)
                if res is None:
                    worker.kill()
                    worker = None
                    res = {"ok": True, "verdict": "undecided", "note": f"hard timeout after {hard_m:.0f} s",
                           "time_s": hard_m, "timeout": True, "peak_mem_mb": None}
                if not res.get("ok"):
                    res = {"verdict": "error", "error": res.get("error"), "trace": res.get("trace"),
                           "time_s": None, "peak_mem_mb": None}
                res.pop("ok", None)
                verdict = res.pop("verdict")
                correct = judge(verdict, prep["expected"])
                if res.get("wrong") is True:      # a family's own soundness check failed (trained: probe, verify)
                    correct = False
                t = res.pop("time_s")
                rec = {**context, "instance": inst.id, "family": inst.family, "method": m, "verdict": verdict,
                       "expected": prep["expected"], "derivation": prep["derivation"], "correct": correct,
                       "decided": verdict in ("local_min", "saddle", "not_stationary"), "time_s": t,
                       "grad_time_s": prep["grad_time_s"],
                       "ratio_to_grad": (t / prep["grad_time_s"]) if (t is not None and prep["grad_time_s"] > 0) else None,
                       "peak_mem_mb": res.pop("peak_mem_mb", None),
                       "p": params.get("p"), "n": params.get("n"), "K": params.get("K"),
                       "depth": params.get("depth"), "activation": params.get("activation"),
                       "loss": params.get("loss"), "variant": params.get("variant"),
                       "params": {k2: v for k2, v in params.items()
                                  if k2 not in ("p", "n", "K", "depth", "activation", "loss", "variant")},
                       "build_s": prep["build_s"], "truth_s": prep["truth_s"], **res}
                if prep.get("meta"):
                    rec["instance_meta"] = prep["meta"]
                if m == "certify" and correct is False:
                    wrong_certify.append(rec)
                with open(out, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec, default=_default) + "\n")
                n_written += 1
                mark = {True: "ok", False: "WRONG", None: "-"}[correct]
                line.append(f"{m}={verdict}({mark}, {t if t is None else round(t, 3)}s)")
            log(f"[{k}/{len(todo)}] {inst.id} expected={prep['expected']}: " + " ".join(line))
    except BaseException:
        if worker is not None:
            worker.kill()
            worker = None
        raise
    finally:
        if worker is not None:
            worker.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    for rec in wrong_certify:
        log(f"WRONG CERTIFY VERDICT: {rec['instance']}: certify {rec['verdict']}, expected {rec['expected']} "
            f"({rec.get('wrong_reason') or rec['derivation']})")
    return {"results": str(out), "records_written": n_written, "certify_wrong": len(wrong_certify),
            "wrong_instances": [r["instance"] for r in wrong_certify], "wall_s": time.perf_counter() - t_start}
