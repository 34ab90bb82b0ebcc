"""Path-space certificate: time against one gradient at scale, and a cross-check with the oracle.

    PYTHONPATH=. python -m benchmarks.path_fit              # p ~ 4k and 20k (minutes)
    PYTHONPATH=. python -m benchmarks.path_fit --heavy      # also p ~ 90k (depth 2) and 8k (depth 3)
    PYTHONPATH=. python -m benchmarks.path_fit --oracle 300 # tests.bruteforce seeds 0..299
    PYTHONPATH=. python -m benchmarks.path_fit --mutations 200

Timing: the instances are :func:`benchmarks.instances.pattern_cells` minima (their proof is the
construction); the figure is the whole ``certify.check`` time and the path test's own time, each
divided by the median of three loss-and-gradient evaluations (``certify.tangent.loss_gradient``) in
the same process. Results: ``benchmarks/results/path_fit.jsonl`` (one line per measurement) and
``benchmarks/results/path_fit.md``.

Mutations: small :func:`benchmarks.instances.pattern_cells` minima are perturbed (a target moved by
``2^-k``, a weight moved by ``2^-k``, an output weight's sign flipped, a hinge label flipped); wherever
the path test still says ``ok``, an exact brute-force probe (:func:`tests.exact.probe`, rational
arithmetic) looks for a decrease -- finding one would be a soundness bug.

Oracle: for every seed of :func:`tests.bruteforce.random_instance` at a d-stationary point, the
path test's answer is compared with :func:`tests.bruteforce.oracle` (exact piece enumeration);
``ok`` at a point the oracle calls a saddle or not stationary would be a soundness bug.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

SIZES = {
    "p4k_depth2": dict(d=30, hidden=(60, 40), n_quads=500, K_zero=500, K_convex=(40, 40)),
    "p20k_depth2_C3": dict(d=60, hidden=(150, 100), n_quads=1000, K_zero=1000, K_convex=(60, 60), C=3),
    "p90k_depth2": dict(d=100, hidden=(300, 200), n_quads=2000, K_zero=2000, K_convex=(100, 100)),
    "p8k_depth3": dict(d=40, hidden=(80, 40, 40), n_quads=1000, K_zero=1000, K_convex=(80, 0)),
}


def time_one(name: str, spec: dict) -> dict:
    import certify
    from certify.first_order import decide_first_order
    from certify.kinks import find_kinks
    from certify.secondorder.path_fit import path_test
    from certify.tangent import first_order_model, loss_gradient
    from .instances import pattern_cells
    inst = pattern_cells(**spec)
    problem = inst.problem()
    grads = []
    for _ in range(3):
        t = time.perf_counter()
        loss_gradient(problem)
        grads.append(time.perf_counter() - t)
    g = statistics.median(grads)
    t = time.perf_counter()
    report = certify.check(inst.model(), inst.X, inst.y, **inst.options())
    t_check = time.perf_counter() - t
    fwd = problem.network.forward(problem.X, with_scale=True)
    kinks = find_kinks(problem, fwd)
    fo = first_order_model(problem, fwd, kinks)
    first = decide_first_order(problem, fwd, kinks, fo)
    t = time.perf_counter()
    res = path_test(problem, fwd, kinks, fo, first)
    t_path = time.perf_counter() - t
    t = time.perf_counter()
    ok = certify.verify(report.to_dict(), inst.model(), inst.X, inst.y).ok
    t_verify = time.perf_counter() - t
    return {"name": name, "p": inst.n_params, "n": inst.n_samples, "K": int(sum(inst.expect["convex_kinks"])) +
            inst.expect["zero_loss_kinks"], "widths": list(inst.widths), "verdict": report.verdict.value,
            "method": report.flags.get("method"), "path_status": res["status"], "equations": res.get("equations"),
            "kink_copies": res.get("kink_copies"), "grad_s": g, "check_s": t_check, "path_s": t_path,
            "verify_s": t_verify, "verify_ok": ok, "check_over_grad": t_check / g, "path_over_grad": t_path / g,
            "second_order_s": report.timings.get("second_order_s")}


def oracle_crosscheck(n: int) -> dict:
    from tests import bruteforce as bf
    from certify.data import Dataset, Problem
    from certify.first_order import decide_first_order
    from certify.kinks import find_kinks
    from certify.loaders import as_network
    from certify.secondorder.path_fit import path_test
    from certify.tangent import first_order_model
    counts, bad = Counter(), []
    for seed in range(n):
        inst = bf.random_instance(seed)
        a = inst.certify_args()
        net = as_network(a["model"], a["activation"])
        pr = Problem(net, Dataset(a["X"], a["y"]), a["loss"])
        fwd = net.forward(pr.X, with_scale=True)
        k = find_kinks(pr, fwd)
        fo = first_order_model(pr, fwd, k)
        first = decide_first_order(pr, fwd, k, fo)
        if not first.stationary:
            continue
        res = path_test(pr, fwd, k, fo, first)
        o = bf.oracle(inst)
        counts[f"path {res['status']} / oracle {o.verdict}"] += 1
        if res["status"] == "ok" and o.verdict in ("saddle", "not_stationary"):
            bad.append(seed)
    return {"seeds": n, "counts": dict(counts), "disagreements": bad}


def mutation_fuzz(n: int, seed: int = 0) -> dict:
    from fractions import Fraction
    import numpy as np
    from tests import exact
    from certify.data import Dataset, Problem
    from certify.first_order import decide_first_order
    from certify.kinks import find_kinks
    from certify.network import Network
    from certify.secondorder.path_fit import path_test
    from certify.tangent import first_order_model
    from .instances import pattern_cells
    rng = np.random.default_rng(seed)
    counts, bad = Counter(), []
    for it in range(n):
        loss = "hinge" if it % 4 == 3 else "square"
        hidden = [(4, 3), (4,), (4, 3, 2)][it % 3]
        kc = (2, 2) if len(hidden) == 2 else (2, 0)
        inst = pattern_cells(d=5, hidden=hidden, n_quads=6, K_zero=3, K_convex=kc, loss=loss, seed=int(it))
        weights = [W.copy() for W in inst.weights]
        biases = [b.copy() for b in inst.biases]
        y = np.array(inst.y, dtype=float).copy()
        kind = ["target", "weight", "sign", "target"][int(rng.integers(4))]
        k = int(rng.choice([1, 3, 6, 12]))
        if kind == "target" and loss == "square":
            y.reshape(len(y), -1)[int(rng.integers(len(y)))] += rng.choice([-1, 1]) * 2.0 ** -k
        elif kind == "target":
            i = int(rng.integers(len(y)))
            y[i] = -y[i]
        elif kind == "weight":
            l = int(rng.integers(len(weights)))
            W = weights[l]
            W[int(rng.integers(W.shape[0])), int(rng.integers(W.shape[1]))] += rng.choice([-1, 1]) * 2.0 ** -k
        else:
            W = weights[-1]
            j = int(rng.integers(W.shape[1]))
            W[:, j] = -W[:, j]
        net = Network(weights, biases, "relu")
        pr = Problem(net, Dataset(inst.X, y), loss)
        fwd = net.forward(pr.X, with_scale=True)
        kk = find_kinks(pr, fwd)
        fo = first_order_model(pr, fwd, kk)
        first = decide_first_order(pr, fwd, kk, fo)
        res = path_test(pr, fwd, kk, fo, first)
        counts[f"{kind}: {res['status']}"] += 1
        if res["status"] != "ok":
            continue
        layers = [([[Fraction(float(v)) for v in row] for row in W], [Fraction(float(v)) for v in b])
                  for W, b in zip(weights, biases)]
        X = [tuple(Fraction(float(v)) for v in row) for row in inst.X]
        yq = ([int(v) for v in y] if loss == "hinge" else
              [Fraction(float(v)) for v in y] if y.ndim == 1 else [tuple(Fraction(float(v)) for v in r) for r in y])
        probe = exact.probe(layers, X, yq, "relu", loss, radii=(Fraction(1, 2 ** 16), Fraction(1, 2 ** 24)),
                            n_random=8, seed=it)
        counts["ok and probed"] += 1
        if probe.found_decrease:
            bad.append(it)
    return {"mutations": n, "counts": dict(counts), "ok_with_exact_decrease": bad}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.path_fit")
    ap.add_argument("--heavy", action="store_true")
    ap.add_argument("--oracle", type=int, default=0, help="number of bruteforce seeds to cross-check")
    ap.add_argument("--mutations", type=int, default=0, help="number of mutated constructions to probe")
    args = ap.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    lines = []
    names = ["p4k_depth2", "p20k_depth2_C3"] + (["p90k_depth2", "p8k_depth3"] if args.heavy else [])
    if (args.oracle or args.mutations) and not args.heavy:
        names = []
    with open(RESULTS / "path_fit.jsonl", "a") as fh:
        for name in names:
            rec = time_one(name, SIZES[name])
            rec["date"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            fh.write(json.dumps(rec) + "\n")
            lines.append(rec)
            print(json.dumps(rec))
        if args.mutations:
            rec = mutation_fuzz(args.mutations)
            rec["date"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            fh.write(json.dumps(rec) + "\n")
            print(json.dumps(rec))
        if args.oracle:
            rec = oracle_crosscheck(args.oracle)
            rec["date"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            fh.write(json.dumps(rec) + "\n")
            print(json.dumps(rec))
    if lines:
        md = ["| instance | p | n | K | verdict (method) | check / grad | path test / grad | verify |",
              "|---|---:|---:|---:|---|---:|---:|---|"]
        for r in lines:
            md.append(f"| {r['name']} ({'-'.join(map(str, r['widths']))}) | {r['p']} | {r['n']} | {r['K']} | "
                      f"{r['verdict']} ({r['method']}) | {r['check_over_grad']:.1f} | {r['path_over_grad']:.1f} | "
                      f"{r['verify_ok']} |")
        (RESULTS / "path_fit.md").write_text("Path-space certificate at scale (`python -m benchmarks.path_fit"
                                             + (" --heavy" if args.heavy else "") + "`; ratios within one run "
                                             "on a shared 2-core machine)\n\n" + "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
