"""Report of the benchmark suite: ``benchmarks/results/REPORT.md`` and two plots.

Soundness (wrong decided verdicts, per method and family) is reported apart from completeness
(share of instances decided) and time. A verdict is *wrong* when it contradicts a known answer
(``expected``); ``undecided`` is never wrong, only incomplete. Times are wall-clock seconds of the
method alone and ratios to one loss-and-gradient evaluation of the same instance (certify's
``loss_gradient`` + ``value``), measured in the same run.
"""

from __future__ import annotations

import collections
import statistics
from pathlib import Path

from .runner import RESULTS_DIR, load_records

METHOD_ORDER = ("certify", "enumeration", "hessian_rule", "gradient_sampling", "sosp_check")
FAMILY_ORDER = ("reference", "bruteforce", "affine_cell", "affine_kinks", "path_cells", "loss_kinks", "hinge_margins",
                "concave_kinks", "kink_scaling", "smooth_scale", "trained", "sosp_setting")
CONSTRUCTED = ("affine_cell", "affine_kinks", "path_cells", "loss_kinks", "hinge_margins", "concave_kinks", "kink_scaling",
               "smooth_scale")


def _latest(records: list[dict]) -> list[dict]:
    """One record per (instance, method): the one from the latest run (then the last written)."""
    last = {}
    for r in records:
        if r.get("method") in (None, "build"):
            continue
        key = (r["instance"], r["method"])
        if key not in last or str(r.get("date", "")) >= str(last[key].get("date", "")):
            last[key] = r
    return list(last.values())


def _fmt_t(t) -> str:
    if t is None:
        return "-"
    if t >= 100:
        return f"{t:.0f}"
    if t >= 1:
        return f"{t:.2f}"
    return f"{t:.3g}"


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def headline(records: list[dict]) -> str:
    rows = ["| method | instances | known answer | decided (all) | decided (known) | correct | **wrong** | "
            "median time (s) | median × grad | max peak memory (MB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    by = collections.defaultdict(list)
    for r in records:
        by[r["method"]].append(r)
    for m in METHOD_ORDER:
        rs = by.get(m, [])
        if not rs:
            continue
        known = [r for r in rs if r.get("expected") is not None]
        dec = [r for r in rs if r.get("decided")]
        dec_known = [r for r in known if r.get("decided")]
        correct = sum(r.get("correct") is True for r in rs)
        wrong = sum(r.get("correct") is False for r in rs)
        rows.append(f"| {m} | {len(rs)} | {len(known)} | {len(dec)} ({100 * len(dec) / len(rs):.0f}%) | "
                    f"{len(dec_known)} ({100 * len(dec_known) / max(len(known), 1):.0f}%) | {correct} | "
                    f"**{wrong}** | {_fmt_t(_med([r.get('time_s') for r in rs]))} | "
                    f"{_fmt_t(_med([r.get('ratio_to_grad') for r in rs]))} | "
                    f"{_fmt_t(max([r['peak_mem_mb'] for r in rs if r.get('peak_mem_mb') is not None], default=None))} |")
    return "\n".join(rows)


def soundness_table(records: list[dict]) -> str:
    fams = [f for f in FAMILY_ORDER if any(r["family"] == f for r in records)]
    meths = [m for m in METHOD_ORDER if any(r["method"] == m for r in records)]
    head = "| family | " + " | ".join(meths) + " |\n|---|" + "---:|" * len(meths)
    lines = [head]
    for f in fams:
        cells = []
        for m in meths:
            rs = [r for r in records if r["family"] == f and r["method"] == m]
            if not rs:
                cells.append("n/a")
                continue
            wrong = sum(r.get("correct") is False for r in rs)
            judged = sum(r.get("correct") is not None for r in rs)
            cells.append(f"{wrong} / {judged}" if wrong == 0 else f"**{wrong}** / {judged}")
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def completeness_table(records: list[dict]) -> str:
    fams = [f for f in FAMILY_ORDER if any(r["family"] == f for r in records)]
    meths = [m for m in METHOD_ORDER if any(r["method"] == m for r in records)]
    head = ("| family | instances | known | " + " | ".join(meths) + " |\n|---|---:|---:|"
            + "---:|" * len(meths))
    lines = [head]
    for f in fams:
        insts = {r["instance"] for r in records if r["family"] == f}
        known = {r["instance"] for r in records if r["family"] == f and r.get("expected") is not None}
        cells = []
        for m in meths:
            rs = [r for r in records if r["family"] == f and r["method"] == m]
            if not rs:
                cells.append("n/a")
                continue
            dec = sum(bool(r.get("decided")) for r in rs)
            cells.append(f"{100 * dec / len(rs):.0f}% ({dec}/{len(rs)})")
        lines.append(f"| {f} | {len(insts)} | {len(known)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def time_table(records: list[dict]) -> str:
    fams = [f for f in FAMILY_ORDER if any(r["family"] == f for r in records)]
    meths = [m for m in METHOD_ORDER if any(r["method"] == m for r in records)]
    head = ("| family | " + " | ".join(f"{m} median s (max)" for m in meths) + " |\n|---|"
            + "---:|" * len(meths))
    lines = [head]
    for f in fams:
        cells = []
        for m in meths:
            ts = [r.get("time_s") for r in records if r["family"] == f and r["method"] == m
                  and r.get("time_s") is not None]
            cells.append(f"{_fmt_t(_med(ts))} ({_fmt_t(max(ts))})" if ts else "n/a")
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- solver-attested first order
#: runs of certify alone on the instances whose first order needed the MILP (``benchmarks.attested``)
ATTESTED_RUNS = ("attested_before.jsonl", "attested_after.jsonl")
SOLVER_FREE = ("branch_and_bound", "multipliers", "gradient")


def first_order_attested(r: dict) -> bool:
    """Whether certify's first-order claim rests on HiGHS's MILP bound (not re-checkable by verify).

    Records from before the field ``first_order_certificate`` existed: a MILP decided first order and
    the point came out first-order stationary (a minimum, a saddle, or stationary but undecided)."""
    if "first_order_certificate" in r:
        return r.get("first_order_certificate") == "milp_bound"
    return r.get("first_order_method") == "milp" and (
        r.get("verdict") in ("local_min", "saddle") or str(r.get("reason", "")).startswith("first-order stationary"))


def first_order_solver_free(r: dict) -> bool:
    """Whether a first-order stationarity claim carries a certificate ``verify`` re-checks with numpy."""
    return bool(r.get("first_order_stationary")) and r.get("first_order_certificate") in SOLVER_FREE


def _certify_latest(records: list[dict]) -> dict:
    last = {}
    for r in records:
        if r.get("method") != "certify":
            continue
        if r["instance"] not in last or str(r.get("date", "")) >= str(last[r["instance"]].get("date", "")):
            last[r["instance"]] = r
    return last


def attested_section(full_records: list[dict], runs: list[tuple[str, list[dict]]]) -> str:
    """Per family, how often first order ends solver-attested: the full suite and each attested run."""
    full = _certify_latest(full_records)
    cols = [("full suite", full)] + [(name, _certify_latest(recs)) for name, recs in runs if recs]
    if not any(d for _, d in cols):
        return "(no records)"
    fams = [f for f in FAMILY_ORDER if any(r.get("family") == f for _, d in cols for r in d.values())]
    labels = []
    for name, d in cols:
        commits = sorted({str(r.get("commit")) + ("+dirty" if r.get("dirty") else "") for r in d.values()})
        labels.append(f"{name} ({', '.join(commits[:3])}{', …' if len(commits) > 3 else ''})")
    lines = ["| family | " + " | ".join(f"attested: {lab}" for lab in labels) + " |",
             "|---|" + "---:|" * len(labels)]
    for f in fams:
        cells = []
        for _, d in cols:
            rs = [r for r in d.values() if r.get("family") == f]
            cells.append(f"{sum(first_order_attested(r) for r in rs)} / {len(rs)}" if rs else "n/a")
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    totals = []
    for _, d in cols:
        totals.append(f"**{sum(first_order_attested(r) for r in d.values())}** / {len(d)}")
    lines.append("| all | " + " | ".join(totals) + " |")
    return "\n".join(lines)


def tree_target(full_records: list[dict], after: list[dict]) -> tuple[str, str, str, str] | None:
    """The target row: of the instances whose first order the MILP decided in the full suite, the share
    certified without a solver after, and the trees' sizes."""
    full = _certify_latest(full_records)
    now = _certify_latest(after)
    base = [i for i, r in full.items() if first_order_attested(r) and i in now]
    if not base:
        return None
    free = [i for i in base if first_order_solver_free(now[i])]
    still = [i for i in base if first_order_attested(now[i])]
    other = [i for i in base if i not in free and i not in still]
    trees = [now[i] for i in free if now[i].get("first_order_certificate") == "branch_and_bound"]
    leaves = sorted(r.get("tree_leaves") or 0 for r in trees)
    full_leaves = sorted(r.get("tree_full_leaves") or 0 for r in trees)
    share = len(free) / len(base)
    measured = (f"{100 * share:.1f}% ({len(free)}/{len(base)}; {len(still)} still attested, {len(other)} no longer "
                f"first-order stationary under the rounding-bound semantics)")
    note = ""
    if trees:
        note = (f"{len(trees)} trees: leaves median {statistics.median(leaves):g}, max {leaves[-1]} (a complete tree "
                f"would have median {statistics.median(full_leaves):g}, max {full_leaves[-1]}); the rest by "
                f"multipliers after merging identical rows")
    return ("first order at concave/nested kinks certified without a solver in ≥ 95% of the cases the MILP decided",
            measured, "yes" if share >= 0.95 else "**NO**", note)


def _find(records, method, pred):
    return [r for r in records if r["method"] == method and pred(r)]


def targets(records: list[dict]) -> list[tuple[str, str, str, str]]:
    """``(target, measured, met, comment)`` rows."""
    out = []
    cert = [r for r in records if r["method"] == "certify"]
    wrong = [r for r in cert if r.get("correct") is False]
    out.append(("0 wrong certify verdicts, every family", f"{len(wrong)} wrong of "
                f"{sum(r.get('correct') is not None for r in cert)} judged", "yes" if not wrong else "**NO**",
                "" if not wrong else "; ".join(r["instance"] for r in wrong[:5])))
    cons = [r for r in cert if r["family"] in CONSTRUCTED and r.get("expected") is not None]
    if cons:
        share = sum(bool(r.get("decided")) for r in cons) / len(cons)
        und = [r["instance"] for r in cons if not r.get("decided")]
        out.append(("≥ 95% decided on the constructed families", f"{100 * share:.1f}% ({len(cons) - len(und)}/{len(cons)})",
                    "yes" if share >= 0.95 else "**NO**", ("undecided: " + ", ".join(und[:6])) if und else ""))
    # first order at p ~ 1e5, n = 1e4
    sm = _find(records, "certify", lambda r: r["family"] == "smooth_scale" and (r.get("p") or 0) >= 50_000
               and (r.get("n") or 0) >= 10_000)
    if sm:
        r = sm[0]
        out.append(("first-order check ≤ 5× one gradient, p ≈ 10^5, n = 10^4",
                    f"{r['ratio_to_grad']:.2f}× ({_fmt_t(r['time_s'])} s / {_fmt_t(r['grad_time_s'])} s; p = {r['p']})",
                    "yes" if r["ratio_to_grad"] <= 5 else "**NO**",
                    "whole certify.check call at a random (not stationary) point, incl. the verified refutation"))
    mn = _find(records, "certify", lambda r: r["family"] == "affine_cell" and (r.get("p") or 0) >= 50_000
               and r.get("variant") == "min")
    if mn:
        r = mn[0]
        out.append(("full certificate at a kink-free minimum, p ≈ 10^5: ≤ 100 gradients",
                    f"{r['ratio_to_grad']:.1f}× ({_fmt_t(r['time_s'])} s; verdict {r['verdict']}; p = {r['p']}, n = {r['n']})",
                    "yes" if r["ratio_to_grad"] <= 100 and r["verdict"] == "local_min" else "**NO**",
                    f"method {r.get('method_detail')}; split " + ", ".join(
                        f"{k.removesuffix('_s')} {_fmt_t(v)} s" for k, v in (r.get("timings") or {}).items()
                        if k != "total_s" and v and v > 0.01 * (r["time_s"] or 1))
                    + (f"; {r.get('note')}" if r.get("note") else "")))
    k1000 = _find(records, "certify", lambda r: r["family"] == "hinge_margins" and r.get("K") == 1000)
    if k1000:
        worst = max(k1000, key=lambda r: r["time_s"] or 0)
        ok = all(r["time_s"] is not None and r["time_s"] < 10 and r.get("decided") for r in k1000)
        out.append(("K = 1,000 convex kinks decided in < 10 s",
                    ", ".join(f"{r.get('variant')}: {_fmt_t(r['time_s'])} s ({r['verdict']})" for r in k1000),
                    "yes" if ok else "**NO**", f"worst {worst['instance']}"))
    c50 = _find(records, "certify", lambda r: r["family"] == "concave_kinks" and r.get("params", {}).get("concave") == 50)
    if c50:
        ok = all(r["time_s"] is not None and r["time_s"] < 60 and r.get("decided") for r in c50)
        out.append(("50 concave kinks decided in < 60 s",
                    ", ".join(f"{r.get('variant')}: {_fmt_t(r['time_s'])} s ({r['verdict']})" for r in c50),
                    "yes" if ok else "**NO**", ""))
    # enumeration at K = 20
    ks = _find(records, "certify", lambda r: r["family"] == "kink_scaling")
    if ks:
        kmax = max(r.get("K") or 0 for r in ks)
        c = [r for r in ks if r.get("K") == kmax][0]
        e = _find(records, "enumeration", lambda r: r["instance"] == c["instance"])
        if e:
            e = e[0]
            te = e.get("time_s_extrapolated") or e.get("time_s")
            ratio = te / c["time_s"] if c["time_s"] else None
            lab = " (extrapolated from " + f"{e.get('pieces_solved')} of {e.get('pieces_total')} pieces)" \
                if e.get("extrapolated") else ""
            met = ratio is not None and ratio >= 1000 and kmax >= 20
            out.append(("≥ 1,000× faster than piece enumeration at K = 20",
                        f"K = {kmax}: enumeration {_fmt_t(te)} s{lab} vs certify {_fmt_t(c['time_s'])} s: {ratio:,.0f}×",
                        "yes" if met else ("**NO**" if kmax >= 20 else "not measured at K = 20"), ""))
    so = _find(records, "sosp_check", lambda r: r["family"] == "sosp_setting")
    if so:
        pairs = []
        for s in so:
            c = _find(records, "certify", lambda r: r["instance"] == s["instance"])
            if c and s.get("time_s") is not None and c[0].get("time_s"):
                pairs.append((s, c[0]))
        if pairs:
            faster = sum(c["time_s"] < s["time_s"] for s, c in pairs)
            tot_s = sum(s["time_s"] for s, _ in pairs)
            tot_c = sum(c["time_s"] for _, c in pairs)
            out.append(("faster than SOSP-Check on its own instances",
                        f"faster on {faster}/{len(pairs)}; total {_fmt_t(tot_c)} s vs {_fmt_t(tot_s)} s",
                        "yes" if faster == len(pairs) else "**NO**" if faster < len(pairs) / 2 else "partly",
                        "; ".join(f"{s['instance'].split('/')[-1]}: {_fmt_t(c['time_s'])} vs {_fmt_t(s['time_s'])} s "
                                  f"({c['verdict']} / {s['verdict']})" for s, c in pairs[:8])))
    return out


def wrong_list(records: list[dict], per_method: int = 8) -> str:
    lines = []
    for m in METHOD_ORDER:
        rs = [r for r in records if r["method"] == m and r.get("correct") is False]
        if not rs:
            continue
        cnt = collections.Counter((r["expected"], r["verdict"]) for r in rs)
        lines.append(f"* **{m}**: {len(rs)} wrong — " + ", ".join(f"{v} where {e} ({k})" for (e, v), k in cnt.most_common()))
        for r in rs[:per_method]:
            lines.append(f"  * `{r['instance']}`: said {r['verdict']}, truth {r['expected']} ({r.get('derivation', '')[:90]})"
                         + (f" — {r['note']}" if r.get("note") else ""))
        if len(rs) > per_method:
            lines.append(f"  * … and {len(rs) - per_method} more")
    return "\n".join(lines) if lines else "None."


def undecided_reasons(records: list[dict], top: int = 12) -> str:
    rs = [r for r in records if r["method"] == "certify" and not r.get("decided")]
    if not rs:
        return "None: certify decided every instance."
    cnt = collections.Counter()
    example = {}
    for r in rs:
        reason = (r.get("reason") or r.get("note") or r.get("error") or "?").split(":")[0][:110]
        cnt[(r["family"], reason)] += 1
        example.setdefault((r["family"], reason), r["instance"])
    lines = ["| family | reason (first clause) | count | example |", "|---|---|---:|---|"]
    for (f, reason), k in cnt.most_common(top):
        lines.append(f"| {f} | {reason} | {k} | `{example[(f, reason)]}` |")
    return "\n".join(lines)


def trained_table(records: list[dict]) -> str:
    """The ``trained`` family's checkpoints (:mod:`benchmarks.trained`): certify as stored and with
    ``polish=True``, the polish figures, the trained point's outcome and the soundness checks."""
    cert = {r["instance"]: r for r in records if r["family"] == "trained" and r["method"] == "certify"
            and r.get("variant") in ("checkpoint", "polish")}
    names = sorted({i.removesuffix("+polish") for i in cert}, key=lambda i: (cert.get(i, cert.get(i + "+polish"))
                                                                           .get("p") or 0, i))
    if not names:
        return ""
    lines = ["| checkpoint | p | loss | check | time (s) | check --polish | time (s) | moved / ‖θ‖ | loss gap | "
             "outcome | local_min checks |", "|---|---:|---|---|---:|---|---:|---:|---:|---|---|"]

    def verdict(r):
        if not r:
            return "-"
        return "timeout" if r.get("timeout") else r.get("raw_verdict") or r.get("verdict")

    def checks(r):
        if not r or r.get("raw_verdict") != "local_min":
            return ""
        pr = r.get("probe") or {}
        return (f"verify {'ok' if r.get('verify_ok') else '**FAILED**'}, probe "
                f"{'**REFUTED**' if pr.get('refuted') else 'ok'} ({pr.get('directions')} dirs)")
    for name in names:
        a, b = cert.get(name), cert.get(name + "+polish")
        r0 = a or b
        pol = (b or {}).get("polish") or {}
        lines.append(f"| {name.removeprefix('trained/')} | {r0.get('p')} | {r0.get('loss')} | "
                     f"{verdict(a)} | {_fmt_t((a or {}).get('time_s'))} | "
                     f"{verdict(b)} | {_fmt_t((b or {}).get('time_s'))} | "
                     f"{_fmt_t(pol.get('relative_distance'))} | {_fmt_t(pol.get('loss_gap'))} | "
                     f"{(b or {}).get('outcome') or (a or {}).get('outcome') or 'undecided'} | "
                     f"{'; '.join(c for c in (checks(a), checks(b)) if c)} |")
    return "\n".join(lines)


def plots(records: list[dict], out_dir: Path) -> list[Path]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    paths = []
    colors = {"certify": "C0", "enumeration": "C1", "hessian_rule": "C2", "gradient_sampling": "C3", "sosp_check": "C4"}
    # time against K (certify and enumeration; the enumeration's extrapolations above the plot are
    # drawn at its top edge as open triangles)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    kfams = {"kink_scaling": "o", "hinge_margins": "s", "concave_kinks": "^", "affine_kinks": "D"}
    top = 1e6
    for m in ("certify", "enumeration", "sosp_check"):
        labelled = False
        for fam, mk in kfams.items():
            rs = [r for r in records if r["method"] == m and r["family"] == fam and r.get("time_s")
                  and (r.get("K") or r.get("K_found"))]
            if not rs:
                continue
            pts = sorted(((r.get("K") or r.get("K_found")), r.get("time_s_extrapolated") or r["time_s"],
                          bool(r.get("extrapolated"))) for r in rs)
            meas = [(k, t) for k, t, e in pts if not e]
            extra = [(k, min(t, top)) for k, t, e in pts if e]
            if meas:
                ax.scatter([k for k, _ in meas], [t for _, t in meas], marker=mk, color=colors[m], s=24,
                           alpha=0.85, label=None if labelled else m)
                labelled = True
            if extra:
                ax.scatter([k for k, _ in extra], [t for _, t in extra], marker=mk, facecolors="none",
                           edgecolors=colors[m], s=30, label=None if labelled else m)
                labelled = True
            if fam == "kink_scaling":
                ax.plot([p[0] for p in pts], [min(p[1], top) for p in pts], color=colors[m], lw=0.8,
                        ls="--" if m == "enumeration" else "-")
    ax.axhline(top, color="grey", lw=0.5, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("active kinks K")
    ax.set_ylabel("time (s)")
    ax.set_title("Time against K (o scaling, s hinge, ^ concave, D affine kinks;\n"
                 "hollow = enumeration extrapolated to all 2^K pieces, clipped at 1e6 s)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    p = out_dir / "time_vs_K.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    # time against p
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pfams = {"affine_cell": "o", "smooth_scale": "s", "affine_kinks": "D"}
    for m in METHOD_ORDER:
        for fam, mk in pfams.items():
            rs = [r for r in records if r["method"] == m and r["family"] == fam and r.get("time_s") and r.get("p")]
            if not rs:
                continue
            ax.scatter([r["p"] for r in rs], [r["time_s"] for r in rs], marker=mk, color=colors[m], s=22,
                       alpha=0.85, label=m if fam == next(f for f in pfams if any(
                           r2["method"] == m and r2["family"] == f and r2.get("time_s") and r2.get("p")
                           for r2 in records)) else None)
    g = {}
    for r in records:
        if r["family"] in pfams and r.get("p") and r.get("grad_time_s"):
            g[r["instance"]] = (r["p"], r["grad_time_s"])
    if g:
        pts = sorted(g.values())
        ax.scatter([x for x, _ in pts], [y for _, y in pts], marker="x", color="k", s=18, label="one gradient")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters p")
    ax.set_ylabel("time (s)")
    ax.set_title("Time against p (o affine cell, s smooth random, D affine kinks)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    p = out_dir / "time_vs_p.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths


def render(records: list[dict], sources: list[Path], plot_paths: list[Path],
           attested_runs: list[tuple[str, list[dict]]] | None = None) -> str:
    recs = _latest(records)
    attested_runs = attested_runs or []
    commits = sorted({str(r.get("commit")) + ("+dirty" if r.get("dirty") else "") for r in recs})
    dates = sorted({r.get("date", "")[:16] for r in recs})
    suites = sorted({r.get("suite", "") for r in recs})
    cpus = {r.get("machine", {}).get("cpus") for r in recs}
    parts = [
        "# certify benchmark report",
        "",
        f"Generated by `python -m benchmarks report` from {', '.join(f'`{s.name}`' for s in sources)} "
        f"(suites {', '.join(suites)}; commits {', '.join(commits)}; runs {dates[0] if dates else '?'} … "
        f"{dates[-1] if dates else '?'} UTC; {', '.join(map(str, cpus))} CPUs).",
        "",
        "Reproduce: `python -m benchmarks run --suite quick` (under 5 minutes) or "
        "`python -m benchmarks run --suite full --resume`, then `python -m benchmarks report` "
        "(also `certify bench --suite quick`).",
        "",
        "A verdict is **wrong** when it contradicts an answer derived independently of certify "
        "(exact construction, the brute-force oracle, a hand-derived reference case, or a long search "
        "whose descent is proved in exact arithmetic). `undecided` is never wrong; it counts against "
        "completeness only. Instances whose answer is unknown count for completeness and time only.",
        "",
        "**Near-kink semantics.** certify (like the enumeration and SOSP-Check baselines) decides with "
        "pre-activations within its relative tolerance (1e-9) treated as exactly 0. A float64 checkpoint "
        "has such near-kinks off by ~1e-16..1e-14; at the exact float point the loss is then "
        "differentiable there and, where the kink carried a multiplier, has a descent direction whose "
        "descent stops within ~1e-15 of theta. The long search counts a descent only if float64 also "
        "sees a decrease at a radius of at least 1e-8 ||theta||; without that filter three polished "
        "points were labelled not_stationary against certify's (and the baselines') local_min.",
        "",
        "## Headline (all families)",
        "",
        headline(recs),
        "",
        "`decided (known)`: share of instances with a known answer on which the method committed to a "
        "verdict. The baselines' verdict rules are in `benchmarks/baselines.py` (the Hessian rule uses "
        "autograd's convention at kinks; gradient sampling never claims a minimum; SOSP-Check and "
        "enumeration run only where they apply).",
        "",
        "## Targets",
        "",
        "| target | measured | met | note |",
        "|---|---|---|---|",
    ]
    rows = targets(recs)
    after = dict(attested_runs).get("after")
    if after:
        row = tree_target(recs, after)
        if row is not None:
            rows.append(row)
    for t, m, met, c in rows:
        parts.append(f"| {t} | {m} | {met} | {c} |")
    parts += [
        "",
        "## Soundness: wrong verdicts / judged verdicts, per family",
        "",
        soundness_table(recs),
        "",
        "### Where each method is wrong",
        "",
        wrong_list(recs),
        "",
        "## Completeness: share decided, per family",
        "",
        completeness_table(recs),
        "",
        "### Why certify left instances undecided",
        "",
        undecided_reasons(recs),
        "",
        "## Time per family",
        "",
        time_table(recs),
        "",
        "## Solver-attested first order",
        "",
        "Where first order needs a MILP (concave kinks, kinks nested in kinks), a `local_min` used to rest "
        "on HiGHS's proven bound, which `verify` can only list as *attested*. Instances (per family) whose "
        "first-order claim is attested, in the full suite and in the runs of certify alone on the instances "
        "whose first order the MILP decided (`python -m benchmarks.attested`: `before` = the code this "
        "change started from, `after` = with the solver-free tree):",
        "",
        attested_section(recs, attested_runs),
        "",
    ]
    tt = trained_table(recs)
    if tt:
        parts += ["## Trained checkpoints (`benchmarks/trained.py`)", "",
                  "The truth is unknown; a `local_min` counts as wrong when its certificate fails "
                  "`certify.verify` or a random probe of its neighbourhood finds a lower point "
                  "(`benchmarks.trained.probe`). Outcome: from the report's `trained` section when present, "
                  "else derived from the verdict and the polish distance (`derive_outcome`).", "", tt, ""]
    for p in plot_paths:
        parts += [f"![{p.stem}]({p.name})", ""]
    return "\n".join(parts)


def write_report(sources=None, out_dir: Path | None = None) -> Path:
    out_dir = Path(out_dir) if out_dir is not None else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    if not sources:
        fulls = sorted(p for p in RESULTS_DIR.glob("full*.jsonl") if ".prev" not in p.name)
        quick = RESULTS_DIR / "quick.jsonl"
        sources = fulls if fulls else [quick] if quick.exists() else []
    sources = [Path(s) for s in sources]
    records = []
    for s in reversed(sources):
        records += load_records(s)
    recs = _latest(records)
    plot_paths = plots(recs, out_dir)
    runs = []
    for name in ATTESTED_RUNS:
        path = RESULTS_DIR / name
        if path.exists():
            runs.append((name.removeprefix("attested_").removesuffix(".jsonl"), load_records(path)))
    text = render(records, sources, plot_paths, attested_runs=runs)
    path = out_dir / "REPORT.md"
    path.write_text(text, encoding="utf-8")
    return path
