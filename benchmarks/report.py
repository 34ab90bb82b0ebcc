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
            out.append((f"≥ 1,000× faster than piece enumeration at K = 20",
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


def render(records: list[dict], sources: list[Path], plot_paths: list[Path]) -> str:
    recs = _latest(records)
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
    for t, m, met, c in targets(recs):
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
    ]
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
    text = render(records, sources, plot_paths)
    path = out_dir / "REPORT.md"
    path.write_text(text, encoding="utf-8")
    return path
