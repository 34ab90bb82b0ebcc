"""Exact fuzz of certify: ``python -m benchmarks.fuzz`` (and ``--degenerate``).

Default mode -- *no local_min on a tolerance* (semantics.md; ``tests/fuzz.py`` has the details):
exact dyadic base constructions, one family per certificate structure (zero loss, smooth Hessian,
one-hidden-layer cell, affine cell, critical cone, nested pieces, copositivity), moved by
``+-2^-k`` (k = 20 ... 60) off stationarity (a label, an output bias, a weight) or off a kink (the
bias or input weight of a unit on a kink), plus the issue's three examples. Each point is judged
exactly (``tests.fuzz.judge``: exact d-stationarity, exact descent witnesses) and certify's verdict
classified: a ``local_min`` claiming the point itself where the judge holds an exact descent is
**wrong**. Writes one JSON line per instance to ``benchmarks/results/fuzz.jsonl`` and a summary by
kind, k and move to ``benchmarks/results/fuzz.md``.

``--degenerate`` -- small degenerate exact points (zero weights, dead units, units on kinks at many
samples, zero output weights, zero residuals): an exact simple search for a local descent and
certify's verdict; writes ``benchmarks/results/fuzz_degenerate.jsonl`` and ``fuzz_degenerate.md``
(targets for the tool: every point with a found descent refuted, ``inconclusive`` below 30%).

Exit code 1 when certify made a wrong verdict (expected today in the default mode: that is the bug
being fixed), 0 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import functools
import json
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.bruteforce import _git_commit
from benchmarks.seeded import map_seeds

RESULTS = Path(__file__).resolve().parent / "results"
VERDICTS = ("local_min", "saddle", "not_stationary", "inconclusive")


# ---------------------------------------------------------------------------------------------
# default mode
# ---------------------------------------------------------------------------------------------

def _case_job(spec, time_limit: float, seed0: int, polished: bool = False) -> list:
    """All cases of one base (``spec = ("base", index)``) or one issue example."""
    warnings.filterwarnings("ignore")
    from tests import fuzz
    kind, arg = spec
    if kind == "base":
        rows = []
        cases = fuzz.cases_of_base(arg, seed0)
        if not cases:
            return [{"id": f"{arg}/none", "kind": fuzz.KINDS[arg % len(fuzz.KINDS)], "base_failed": True}]
        for case in cases:
            rows.append(_slim(fuzz.run_case(case, time_limit, polished)))
        return rows
    return [_slim(r) for r in issue_rows(time_limit, polished)] if arg == 0 else []


def _slim(r: dict) -> dict:
    if not r.get("wrong"):
        r = dict(r)
        r.pop("instance", None)
    return r


def issue_rows(time_limit: float, polished: bool = False) -> list:
    """The issue's three examples, judged and run through certify."""
    from tests import fuzz
    out = []
    specs = [("issue_i", "weight", None, fuzz.issue_example_i(), None, None)]
    for k in (36, 48, 60):
        moved, base = fuzz.issue_example_ii(k)
        specs.append((f"issue_ii/k{k}", "kink_weight", k, moved, base, fuzz.F(1, 2 ** k)))
    for k in (34, 44, 52):                   # 1/2 + 2^-k is a float64 up to k = 53
        moved, base = fuzz.issue_example_iii(k)
        specs.append((f"issue_iii/k{k}", "label", k, moved, base, None))
    for name, move, k, inst, base, dist in specs:
        t0 = time.perf_counter()
        jd = fuzz.judge(inst)
        judge_s = time.perf_counter() - t0
        rep = fuzz.run_tool(inst, time_limit, polished)
        cls = fuzz.classify(inst, rep, jd, same_problem=dist is not None, distance=dist, base_is_min=base is not None)
        claim, radius = fuzz.tool_claim(rep) if rep["verdict"] == "local_min" else (None, None)
        out.append({"id": name, "kind": "issue", "move": move, "k": k, "depth": len(inst.widths) - 2,
                    "widths": inst.widths, "activation": fuzz.b2.activation_spec(inst.activation), "loss": inst.loss,
                    "same_problem": dist is not None, "tool": rep["verdict"], "tool_kind": fuzz._kind_of(rep),
                    "tool_claim": claim, "tool_radius": radius, "tool_reason": rep.get("reason", "")[:300],
                    "judge": jd.verdict, "judge_reason": jd.reason[:300],
                    "judge_slope": None if jd.slope is None else str(jd.slope),
                    "judge_step": None if jd.step is None else str(jd.step),
                    "judge_decrease": None if jd.decrease is None else str(jd.decrease),
                    "outcome": cls["outcome"], "wrong": cls["wrong"], "why": cls["why"][:400],
                    "tool_s": rep["_seconds"], "judge_s": judge_s, "instance": inst.to_dict()})
    return out


def _table(rows, key, keys, title) -> list:
    lines = [f"| {title} | cases | tool local_min | tool refutes | tool inconclusive | judge: exact descent | "
             "**wrong local_min** | wrong refutation |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kv in keys:
        sel = [r for r in rows if key(r) == kv]
        if not sel:
            continue
        lines.append(f"| {kv} | {len(sel)} | {sum(r['tool'] == 'local_min' for r in sel)} | "
                     f"{sum(r['tool'] in ('saddle', 'not_stationary') for r in sel)} | "
                     f"{sum(r['tool'] == 'inconclusive' for r in sel)} | "
                     f"{sum(r['judge'] in ('descent', 'saddle') for r in sel)} | "
                     f"**{sum(r['outcome'] in ('wrong_local_min', 'wrong_nearby') for r in sel)}** | "
                     f"{sum(r['outcome'] == 'wrong_refutation' for r in sel)} |")
    return lines


def fuzz_markdown(rows: list, failed: list, header: str) -> str:
    from tests import fuzz
    main = [r for r in rows if r["kind"] != "issue"]
    issue = [r for r in rows if r["kind"] == "issue"]
    wrong = [r for r in main if r["wrong"]]
    outcomes = collections.Counter(r["outcome"] for r in main)
    claims = collections.Counter(str(r["tool_claim"]) for r in main if r["tool"] == "local_min")
    base_kinds = collections.defaultdict(collections.Counter)
    for r in main:
        if r["move"] == "none":
            base_kinds[r["kind"]][f"{r['tool']}/{r['tool_kind']}" if r["tool"] == "local_min" else r["tool"]] += 1
    text = ["# Exact fuzz: no `local_min` on a tolerance (`python -m benchmarks.fuzz`)", "", header, "",
            f"**{sum(r['outcome'] in ('wrong_local_min', 'wrong_nearby') for r in main)} wrong `local_min`** and "
            f"{sum(r['outcome'] == 'wrong_refutation' for r in main)} wrong refutations in {len(main)} instances "
            f"({len({r['id'].split('/')[0] for r in main})} base constructions; {len(failed)} base draws found no "
            "construction). A `local_min` is wrong when it claims the point itself (claim `exact`, "
            "`up_to_rounding`, or no claim -- `legacy`) and the exact judge holds a descent witness "
            "(exact `L'(theta; d) < 0` with an exact decrease, or an exact descent curve), or when it "
            "claims a constructed exact point theta* (stored in the claim) at which the judge holds one.", "",
            "Outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) + ".", "",
            "Claims on `local_min` verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(claims.items())) + ".", "",
            "## By base construction (certificate structure)", ""]
    text += _table(main, lambda r: r["kind"], fuzz.KINDS, "kind")
    text += ["", "certify on the unmoved bases (kind -> verdict/certificate kind): " + "; ".join(
        f"{k}: " + ", ".join(f"{a} {b}" for a, b in sorted(v.items())) for k, v in sorted(base_kinds.items())), "",
        "## By distance 2^-k", ""]
    text += _table(main, lambda r: r["k"], [None] + list(fuzz.KS), "k")
    text += ["", "## By move", ""]
    text += _table(main, lambda r: r["move"], ["none"] + list(fuzz.MOVES), "move")
    text += ["", "## By depth", ""]
    text += _table(main, lambda r: r["depth"], [1, 2, 3], "hidden layers")
    text += ["", "## The issue's examples", "", "| example | tool | claim | judge | exact L' | outcome |",
             "|---|---|---|---|---|---|"]
    for r in issue:
        text.append(f"| {r['id']} | {r['tool']} ({r['tool_kind']}) | {r['tool_claim']} | {r['judge']} | "
                    f"{r['judge_slope']} | {r['outcome']} |")
    text += ["", f"Wrong instances (first 20 of {len(wrong)}; every row of `fuzz.jsonl` with `wrong` carries the "
             "exact instance):", ""]
    for r in wrong[:20]:
        text.append(f"* `{r['id']}` {r['kind']} depth {r['depth']} {r['activation']} {r['loss']}: tool {r['tool']} "
                    f"({r['tool_kind']}); {r['why'][:160]}")
    return "\n".join(text) + "\n"


# ---------------------------------------------------------------------------------------------
# degenerate mode
# ---------------------------------------------------------------------------------------------

def _degenerate_job(seed: int, time_limit: float) -> dict:
    warnings.filterwarnings("ignore")
    from tests import fuzz
    r = fuzz.run_degenerate(seed, time_limit)
    if not r["wrong"] and not (r["search_found"] and r["tool"] == "inconclusive"):
        r.pop("instance", None)
    return r


def degenerate_markdown(rows: list, header: str, time_limit: float | None = None) -> str:
    n = len(rows)
    inc = [r for r in rows if r["tool"] == "inconclusive"]
    found = [r for r in rows if r["search_found"]]
    inc_found = [r for r in inc if r["search_found"]]
    wrong = [r for r in rows if r["wrong"]]
    verdicts = collections.Counter(r["tool"] for r in rows)
    from tests.fuzz import reason_class
    for r in inc:
        r["tool_reason_class"] = reason_class(r["tool_reason"])
    classes = collections.Counter(r["tool_reason_class"] for r in inc)
    neg = [r for r in inc if r["tool_reason_class"] == "negative curvature, no verified decrease"]
    slow = [r for r in rows if r["tool_s"] > 3 * time_limit] if time_limit else []
    how = collections.Counter(str(r["search_how"]) for r in found)
    order = collections.Counter(r["search_order"] for r in found)
    lines = ["# Degenerate points with findable descents (`python -m benchmarks.fuzz --degenerate`)", "", header, "",
             f"{n} points; certify: " + ", ".join(f"{k} {verdicts.get(k, 0)}" for k in VERDICTS) +
             f". **inconclusive {len(inc)} ({len(inc) / max(n, 1):.0%})** (target < 30%).", "",
             f"The exact simple search found a local descent at {len(found)} points "
             f"(by: " + ", ".join(f"{k} {v}" for k, v in sorted(how.items())) + "; lowest order of the exact "
             "loss change: " + ", ".join(f"t^{k} {v}" for k, v in sorted(order.items())) + ").", "",
             "| certify verdict | points | search found a descent | no descent found |", "|---|---:|---:|---:|"]
    for v in VERDICTS:
        sel = [r for r in rows if r["tool"] == v]
        lines.append(f"| {v} | {len(sel)} | {sum(r['search_found'] for r in sel)} | "
                     f"{sum(not r['search_found'] for r in sel)} |")
    lines += ["", f"**Wrong: {len(wrong)}** (certify `local_min` where the search proves a descent, or a refutation "
              "whose stored point is not exactly lower).", "",
              f"Inconclusive points where the simple search found an exact local descent: **{len(inc_found)}** "
              "(target for the tool: 0).", "",
              "Inconclusive reasons (first matching class of certify's joined notes): " +
              ", ".join(f"{k} {v}" for k, v in classes.most_common()) + ".", "",
              f"Inconclusive with negative curvature on the critical cone and no verified decrease: {len(neg)} "
              f"({sum(r['search_found'] for r in neg)} of them with an exact descent found by the search).", "",
              "By loss: " + ", ".join(f"{k}: {sum(r['loss'] == k for r in rows)} points, "
                                      f"{sum(r['loss'] == k and r['tool'] == 'inconclusive' for r in rows)} inconclusive"
                                      for k in ("square", "absolute", "hinge")) + ".", "",
              "Examples (inconclusive, descent found): " + "; ".join(
                  f"seed {r['seed']} ({r['search_how']}, t^{r['search_order']} coefficient {r['search_coefficient']})"
                  for r in inc_found[:8]) + "."]
    if time_limit:
        lines += ["", f"certify ran longer than 3x its time limit ({time_limit:g} s) on {len(slow)} points (max "
                  f"{max((r['tool_s'] for r in rows), default=0):.0f} s): the limit bounds each solver call or search, "
                  "not the whole check."]
    lines += ["", f"Time: search {sum(r['search_s'] for r in rows):.0f} s, certify "
              f"{sum(r['tool_s'] for r in rows):.0f} s (summed over points)."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="instances (default 2000; --degenerate: points)")
    parser.add_argument("--degenerate", action="store_true", help="the degenerate-point fuzz instead")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--time-limit", type=float, default=10.0, help="certify.check's time_limit (default 10 s)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help=f"where the results go ({RESULTS})")
    parser.add_argument("--polished", action="store_true",
                        help="check every point as a polished end point is checked (the nearby prover and "
                             "the exact construction first); results in fuzz_polished.*")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--summarize", action="store_true",
                        help="re-render the markdown from the existing results file (no run)")
    args = parser.parse_args(argv)
    if args.summarize:
        name = "fuzz_degenerate" if args.degenerate else "fuzz_polished" if args.polished else "fuzz"
        with open(args.out_dir / f"{name}.jsonl", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh]
        old = (args.out_dir / f"{name}.md").read_text(encoding="utf-8").splitlines()
        header = old[2] if len(old) > 2 else ""
        text = degenerate_markdown(rows, header, args.time_limit) if args.degenerate else fuzz_markdown(rows, [], header)
        print(text)
        if not args.no_write:
            (args.out_dir / f"{name}.md").write_text(text, encoding="utf-8")
        return 1 if any(r.get("wrong") for r in rows) else 0
    t0 = time.perf_counter()
    rows, failed = [], []
    commit, dirty = _git_commit()
    if args.degenerate:
        job = functools.partial(_degenerate_job, time_limit=args.time_limit)
        seeds = range(args.seed, args.seed + args.n)
        rows = map_seeds(job, seeds, args.jobs, chunksize=4)
        name = "fuzz_degenerate"
    else:
        from tests import fuzz
        job = functools.partial(_case_job, time_limit=args.time_limit, seed0=args.seed, polished=args.polished)
        # bases yield up to PER_BASE cases (a large-k move is skipped where no float64 can hold it):
        # add bases in rounds until n cases exist; the result depends only on --seed and --n
        specs = [("issue", 0)]
        next_base, done, results = 0, 0, []
        pool = ProcessPoolExecutor(args.jobs) if args.jobs > 1 else None
        try:
            while True:
                parts = list(pool.map(job, specs, chunksize=1)) if pool else [job(sp) for sp in specs]
                for part in parts:
                    results.append(part)
                    done += sum(1 for r in part if r.get("kind") != "issue" and not r.get("base_failed"))
                print(f"... {done}", file=sys.stderr, flush=True)
                if done >= args.n:
                    break
                missing = args.n - done
                n_new = max(2, -(-missing // (fuzz.PER_BASE - 2)))
                specs = [("base", i) for i in range(next_base, next_base + n_new)]
                next_base += n_new
        finally:
            if pool:
                pool.shutdown()
        for part in results:
            for r in part:
                (failed if r.get("base_failed") else rows).append(r)
        issue = [r for r in rows if r["kind"] == "issue"]
        rows = issue + [r for r in rows if r["kind"] != "issue"][:args.n]
        name = "fuzz_polished" if args.polished else "fuzz"
    wall = time.perf_counter() - t0
    header = (f"Seed {args.seed}, {args.n} {'points' if args.degenerate else 'instances'}"
              f"{' checked as polished end points (--polished)' if args.polished else ''}, commit {commit}"
              f"{' + uncommitted changes in certify/' if dirty else ''}, {wall:.0f} s wall ({args.jobs} job(s)), "
              f"certify time limit {args.time_limit:g} s, "
              f"{_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}.")
    text = degenerate_markdown(rows, header, args.time_limit) if args.degenerate else \
        fuzz_markdown(rows, failed, header)
    print(text)
    if not args.no_write:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        with open(args.out_dir / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
        (args.out_dir / f"{name}.md").write_text(text, encoding="utf-8")
        print(f"wrote {args.out_dir / (name + '.jsonl')} and {args.out_dir / (name + '.md')}")
    return 1 if any(r.get("wrong") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
