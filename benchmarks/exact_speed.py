"""Speed of the exact first-order decision (certify.exact) next to the float one, in one run.

    python -m benchmarks.exact_speed                    # prints a Markdown table, writes results/exact_speed.md
    python -m benchmarks.exact_speed --bruteforce 1000  # also: agreement with the brute-force oracle

Instances: every reference case (tests/reference/cases.py) and seeded ones around p = 300, n = 50
with known first-order answers by construction: the affine cell of :func:`benchmarks.families.affine_cell`
(exactly stationary, first-layer kinks; and its ``not_stationary`` variant), an absolute-loss network
fitting every target exactly (50 loss kinks, exactly stationary with multipliers 1/2) and the same with
one target moved by 2^-40 (not stationary; the float pipeline cannot see it), and a random dyadic point
with planted kinks. Times on a shared machine are noisy: compare the ratio exact / float within a run.

With ``--bruteforce N`` the exact decision also runs on the first ``N`` seeds of
``tests/bruteforce.py`` (tiny one-hidden-layer nets with exact kinks), whose d-stationarity the
enumeration oracle proves with exact Farkas certificates or exact descents: a certified
``stationary`` where the oracle proves descent, or a ``not_stationary`` where it proves
d-stationarity, is counted as wrong (must be 0).
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from certify.data import Dataset, Problem
from certify.exact import exact_cost, exact_first_order_decision
from certify.first_order import decide_first_order
from certify.kinks import find_kinks
from certify.network import Network
from certify.tangent import first_order_model

from .families import affine_cell

RESULTS = Path(__file__).resolve().parent / "results" / "exact_speed.md"


def _problem(layers, X, y, activation, loss, wd=0.0) -> Problem:
    return Problem(Network([W for W, _ in layers], [b for _, b in layers], activation), Dataset(X, y), loss, wd)


def _reference():
    from tests.helpers import case_inputs
    from tests.reference.cases import CASES
    for case in CASES:
        a = case_inputs(case)
        numbers = list(case.theta) + [v for row in case.X for v in row] + [
            v for t in case.y for v in (t if isinstance(t, tuple) else (t,))] + [case.weight_decay]
        dyadic = all(Fraction(v).denominator & (Fraction(v).denominator - 1) == 0 for v in numbers)
        # a dyadic case is stored exactly in float64, so its hand-derived answer applies to the float point
        want = ("stationary" if case.first_order_stationary else "not_stationary") if dyadic else None
        yield f"reference/{case.name}", _problem(a["model"], a["X"], a["y"], a["activation"], a["loss"],
                                                 a["weight_decay"]), want


def _interpolating(seed: int, widths, n: int, moved: bool):
    rng = np.random.default_rng(seed)
    Ws = [(rng.integers(-64, 65, size=(widths[l + 1], widths[l])) + 0.5) / 64 for l in range(len(widths) - 1)]
    bs = [(rng.integers(-64, 65, size=widths[l + 1]) + 0.25) / 64 for l in range(len(widths) - 1)]
    X = (rng.integers(-64, 65, size=(n, widths[0])) + 0.125) / 32
    y = Network(Ws, bs, "relu")(X)[:, 0]
    if moved:
        y = y.copy()
        y[0] += 2.0 ** -40
    return _problem(list(zip(Ws, bs)), X, y, "relu", "absolute"), "not_stationary" if moved else "stationary"


def _planted(seed: int, widths, n: int, n_kinks: int):
    rng = np.random.default_rng(seed)
    Ws = [rng.integers(-8, 9, size=(widths[l + 1], widths[l])) / 8 for l in range(len(widths) - 1)]
    bs = [rng.integers(-8, 9, size=widths[l + 1]) / 8 for l in range(len(widths) - 1)]
    X = rng.integers(-8, 9, size=(n, widths[0])) / 4
    for k in range(n_kinks):
        bs[0][k % widths[1]] = -Ws[0][k % widths[1]] @ X[k % n]
    return _problem(list(zip(Ws, bs)), X, rng.integers(-8, 9, size=n) / 8, "relu", "square"), None


def _issue():
    """Issue 13's example: 2^-34 off stationarity (exactly L'(theta; -e_2) = -1/51539607552)."""
    X = np.array([[-2.0], [0.0], [2.0]])
    y = np.array([-0.25, -6.75, float(Fraction(-21474836479, 17179869184))])
    layers = [(np.array([[-0.5], [1.0], [-1.0]]), np.array([-2.0, 3.0, -3.0])),
              (np.array([[0.0, 1.0, 2.0], [2.0, -1.0, 1.0]]), np.array([0.0, -1.0])),
              (np.array([[-0.5, 0.0]]), np.array([-2.0]))]
    return _problem(layers, X, y, "leaky_relu:0.25", "square")


def _seeded():
    yield "issue 13 example (1-3-2-1 leaky, 2^-34 off)", _issue(), "not_stationary"
    for variant in ("min", "not_stationary"):
        b = affine_cell(d=8, h=14, n=52, K=4, depth=2, variant=variant)
        yield f"affine_cell d8 h14 depth2 K4 {variant}", _problem(b["network"], b["X"], b["y"], b["activation"],
                                                                  b["loss"]), \
            "stationary" if variant == "min" else "not_stationary"
    for moved in (False, True):
        pr, want = _interpolating(1, [5, 14, 14, 1], 50, moved)
        yield f"absolute interpolation 5-14-14-1{' moved 2^-40' if moved else ''}", pr, want
    pr, want = _planted(0, [5, 14, 14, 1], 50, 10)
    yield "random dyadic, 10 planted kinks, square", pr, want


def measure(name, problem, want) -> dict:
    fwd = problem.network.forward(problem.X, with_scale=True)
    t0 = time.perf_counter()
    kinks = find_kinks(problem, fwd)
    model = first_order_model(problem, fwd, kinks)
    fo = decide_first_order(problem, fwd, kinks, model)
    t_float = time.perf_counter() - t0
    cost = exact_cost(problem, kinks)
    t1 = time.perf_counter()
    out = exact_first_order_decision(problem, fo, model=model, kinks=kinks)
    t_exact = time.perf_counter() - t1
    return {"instance": name, "p": problem.n_params, "n": problem.n_samples, "K": kinks.n_unit, "Q": kinks.n_loss,
            "float": {True: "stationary", False: "not_stationary"}.get(fo.stationary, "undecided"),
            "exact": out.status, "kind": out.kind, "expected": want, "float_s": t_float, "exact_s": t_exact,
            "estimate_s": cost.seconds, "verified": (out.refutation or {}).get("verified")}


def bruteforce(n_seeds: int) -> list:
    """Agreement of the exact decision with the brute-force oracle's proven d-stationarity."""
    from tests import bruteforce as bf
    counts, wrong, t_exact = {}, [], 0.0
    for seed in range(n_seeds):
        inst = bf.random_instance(seed)
        truth = bf.oracle(inst).d_stationary
        a = inst.certify_args()
        problem = _problem(a["model"], a["X"], a["y"], a["activation"], a["loss"])
        fwd = problem.network.forward(problem.X, with_scale=True)
        kinks = find_kinks(problem, fwd)
        model = first_order_model(problem, fwd, kinks)
        fo = decide_first_order(problem, fwd, kinks, model)
        t0 = time.perf_counter()
        out = exact_first_order_decision(problem, fo, model=model, kinks=kinks)
        t_exact += time.perf_counter() - t0
        key = f"oracle {'unsure' if truth is None else 'stationary' if truth else 'not stationary'} / exact {out.status}"
        counts[key] = counts.get(key, 0) + 1
        if truth is not None and out.status == ("not_stationary" if truth else "stationary"):
            wrong.append(seed)
    lines = ["", f"## Brute-force seeds 0..{n_seeds - 1} (tests/bruteforce.py)", "",
             "| oracle / exact | instances |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    lines += ["", f"wrong: {len(wrong)} {wrong if wrong else ''}; exact decision total {t_exact:.1f} s "
              f"({1000 * t_exact / max(n_seeds, 1):.0f} ms per instance)"]
    return lines


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    n_bf = int(argv[argv.index("--bruteforce") + 1]) if "--bruteforce" in argv else 0
    rows = [measure(*item) for item in list(_reference()) + list(_seeded())]
    lines = ["| instance | p | n | K | Q | float | exact | kind | expected | float s | exact s | estimate s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['instance']} | {r['p']} | {r['n']} | {r['K']} | {r['Q']} | {r['float']} | {r['exact']} | "
                     f"{r['kind']} | {r['expected'] or ''} | {r['float_s']:.3f} | {r['exact_s']:.3f} | "
                     f"{r['estimate_s']:.3f} |")
    ref = [r for r in rows if r["instance"].startswith("reference/")]
    lines += ["", f"reference cases: {len(ref)}, exact decision total {sum(r['exact_s'] for r in ref):.2f} s, "
              f"max {max(r['exact_s'] for r in ref):.3f} s; float first order total "
              f"{sum(r['float_s'] for r in ref):.2f} s",
              f"wrong exact answers on instances with a known first-order answer: "
              f"{sum(1 for r in rows if r['expected'] and r['exact'] != r['expected'])}"]
    if n_bf:
        lines += bruteforce(n_bf)
    text = "\n".join(lines)
    print(text)
    RESULTS.write_text("# Exact first-order decision: speed (python -m benchmarks.exact_speed)\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
