"""Degenerate deep points with findable descents (issue 11): certify against an exact simple search.

Each point (:func:`tests.degenerate.nontrivial_point`: 1-3 hidden layers, widths 1-3, many zero
weights, planted kinks, zero output weights, square-loss labels making it d-stationary with inert
kinks) is decided twice, independently:

* the **exact simple search** of :mod:`tests.degenerate` (Fractions, never imports certify): single
  coordinates, pairs, chains along paths, each judged by its exact Taylor coefficients on the piece it
  enters -- a hit is a proof that the point is not a local minimum;
* ``certify.check`` (and ``certify.verify`` on its report; every refutation is also re-checked by the
  exact oracle: leading Taylor coefficient < 0 and an exact decrease at its step).

A certify ``local_min`` where the search proves descent is **wrong**; a search hit that certify leaves
undecided is a **miss** (target: 0); the inconclusive share is the completeness figure (target: < 30%).

    python -m benchmarks.degenerate_fuzz --n 400 --jobs 2 --out benchmarks/results/degenerate_fuzz.jsonl
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from fractions import Fraction
from pathlib import Path


def run_one(seed: int, time_limit: float = 30.0, max_pairs: int = 600, max_chains: int = 200) -> dict:
    import numpy as np
    import certify
    from tests import degenerate, exact
    from tests.helpers import activation_spec
    pt = degenerate.nontrivial_point(seed)
    rec = {"seed": seed, "subseed": pt["subseed"], "widths": [len(pt["X"][0])] + [len(W) for W, _ in pt["layers"]],
           "activation": str(pt["activation"]), "n": len(pt["X"])}
    t0 = time.perf_counter()
    hit = degenerate.simple_search(pt["layers"], pt["X"], pt["y"], pt["activation"], pt["loss"],
                                   max_pairs=max_pairs, max_chains=max_chains)
    rec["search_s"] = time.perf_counter() - t0
    rec["search"] = None if hit is None else {"kind": hit["kind"], "order": hit["order"],
                                              "coefficient": str(hit["coefficient"])}
    model = exact.to_float_arrays(pt["layers"])
    X, y = exact.X_to_numpy(pt["X"]), exact.y_to_numpy(list(pt["y"]), "square")
    t0 = time.perf_counter()
    report = certify.check(model, X, y, activation=activation_spec(pt["activation"]), loss="square",
                           time_limit=time_limit)
    rec["certify_s"] = time.perf_counter() - t0
    v = report.verdict.value
    rec.update({"verdict": v, "method": report.flags.get("method"), "reason": report.reason[:3000],
                "p": report.problem["n_params"], "unit_kinks": report.kinks["unit_kinks"]})
    rec["verified"] = certify.verify(report.to_dict(), model, X, y).ok if v != "inconclusive" else None
    if v in ("saddle", "not_stationary"):
        ref = report.refutation
        d = [Fraction(float(u)) for u in ref["direction"]]
        e = ref.get("curvature_direction")
        e = [Fraction(float(u)) / 2 for u in e] if e is not None else [Fraction(0)] * len(d)
        c = degenerate.taylor(pt["layers"], pt["X"], pt["y"], pt["activation"], "square", [d, e], K=6)
        tq = Fraction(float(ref["step"]))
        after = exact.loss(exact.on_curve(pt["layers"], d, tq, [2 * u for u in e]), pt["X"], pt["y"],
                           pt["activation"], "square")
        before = exact.loss(pt["layers"], pt["X"], pt["y"], pt["activation"], "square")
        lead = degenerate.leading(c)
        rec["refutation"] = {"exact_local_descent": degenerate.local_descent(c),
                             "exact_leading_order": None if lead is None else lead[0],
                             "exact_decrease": after < before, "local": ref.get("local")}
    rec["wrong"] = v == "local_min" and hit is not None
    rec["miss"] = hit is not None and v not in ("saddle", "not_stationary")
    del np
    return rec


_WHY = [("time budget", "the time budget ran out"),
        ("would need 2^", "the piece test has too many kinks to branch on"),
        ("from the rows the piece test drops", "negative curvature only on the piece test's relaxation"),
        ("repeated eigenvalue", "a repeated eigenvalue at zero on a face of a piece's cone"),
        ("higher order needed", "curvature 0 on a piece beyond its flat directions (higher order)"),
        ("reduced Hessian is singular", "a singular reduced Hessian (higher order)"),
        ("higher order along", "higher order examined, no descent"),
        ("no decrease could be verified", "negative curvature without a verified curve")]


def _why(reason: str) -> str:
    for key, label in _WHY:
        if key in reason:
            return label
    return reason[:110]


def summarize(records: list) -> str:
    n = len(records)
    verdicts = collections.Counter(r["verdict"] for r in records)
    found = [r for r in records if r["search"] is not None]
    wrong = [r for r in records if r["wrong"]]
    miss = [r for r in records if r["miss"]]
    bad_ref = [r for r in records if r.get("refutation") and not (r["refutation"]["exact_decrease"])]
    nonlocal_ref = [r for r in records if r.get("refutation") and not r["refutation"]["exact_local_descent"]]
    methods = collections.Counter((r["verdict"], r["method"]) for r in records)
    reasons = collections.Counter(_why(r["reason"]) for r in records if r["verdict"] == "inconclusive")
    lines = ["# Degenerate deep points: certify against an exact simple search", "",
             f"{n} points (`python -m benchmarks.degenerate_fuzz`); the search and certify are independent.", "",
             "| figure | value |", "|---|---:|",
             f"| points | {n} |",
             f"| exact search finds a local descent | {len(found)} |",
             f"| certify refutes those (saddle / not_stationary) | {len(found) - len(miss)} |",
             f"| **misses** (search descent, certify undecided) | **{len(miss)}** |",
             f"| **wrong** (certify local_min, search descent) | **{len(wrong)}** |",
             f"| certify refutations without an exact decrease | {len(bad_ref)} |",
             f"| certify refutations not an exact local descent (up to rounding only) | {len(nonlocal_ref)} |",
             f"| inconclusive | {verdicts['inconclusive']} ({100.0 * verdicts['inconclusive'] / max(n, 1):.1f}%) |",
             f"| local_min / saddle / not_stationary | {verdicts['local_min']} / {verdicts['saddle']} / "
             f"{verdicts['not_stationary']} |",
             f"| median certify time (s) | {sorted(r['certify_s'] for r in records)[n // 2]:.3g} |" if n else "",
             "", "By verdict and method:", "", "| verdict | method | count |", "|---|---|---:|"]
    lines += [f"| {v} | {m} | {c} |" for (v, m), c in sorted(methods.items(), key=lambda kv: -kv[1])]
    lines += ["", "Why the inconclusive ones stay open (the deciding phrase of each report's reason):", ""]
    lines += [f"* {c} x {r}" for r, c in reasons.most_common(12)]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--out", default="benchmarks/results/degenerate_fuzz.jsonl")
    args = ap.parse_args(argv)
    out = Path(args.out)
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done[r["seed"]] = r
    seeds = [s for s in range(args.start, args.start + args.n) if s not in done]
    with out.open("a") as fh:
        if args.jobs > 1:
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(args.jobs) as ex:
                for rec in ex.map(run_one, seeds, [args.time_limit] * len(seeds)):
                    fh.write(json.dumps(rec) + "\n")
                    fh.flush()
                    done[rec["seed"]] = rec
        else:
            for s in seeds:
                rec = run_one(s, args.time_limit)
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
                done[s] = rec
    records = [done[s] for s in range(args.start, args.start + args.n) if s in done]
    md = summarize(records)
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
