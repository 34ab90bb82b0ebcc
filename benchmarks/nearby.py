"""Nearby proofs at trained networks: ``python -m benchmarks.nearby [--seeds 6] [--large]``.

A realistic instance: a one-hidden-layer ReLU network (default 4-8-1, square loss, n = 40 Gaussian
inputs, targets ``sin(x . v) + noise``) trained with ``scipy.optimize`` (L-BFGS, float64) from a
random initialisation, then moved to an accurate kinked KKT point by :func:`kkt_point` (an
active-set method in ``u_j = a_j (w_j, b_j)``, where each step is one linear KKT solve), and
handed to :func:`certify.nearby.prove_nearby`. Reported per seed: the radius ``r`` of the proof,
``r / ||theta||``, the kinks held, and the time of the proof against ONE dense Hessian
(``certify.tangent.dense_hessian`` at the same point, ``p`` Hessian-vector products), measured in the
same process one after the other (a ratio; the machine is shared, absolute times are noisy).
``--large`` adds two kink-free instances toward the dense limit (:func:`teacher`: the labels are the
network's own outputs, a zero-loss minimum; 10-100-1 with p = 1,201, n = 4,000 and 12-150-1 with
p = 2,101, n = 6,000: ``n`` well above ``p`` keeps the Gauss–Newton Hessian well conditioned).
BLAS threads: run with ``OMP_NUM_THREADS=1`` on a shared machine (the ratio is what is reported).

:func:`kkt_point` is a benchmark helper, not certify's polisher: one hidden layer, scalar output,
square loss. For a fixed activation pattern the output is linear in ``x = (u, c)``, the loss a convex
quadratic, and a held kink ``z_ij = 0`` the linear constraint ``u_j . xbar_i = 0``; the step is
the equality-constrained least-squares solve. A free pre-activation that changes sign is held; a
held kink whose multiplier ``lambda`` leaves ``(0, 1)`` is released to the side it points to
(``lambda < 0``: the slope-``s_neg`` side, ``lambda > 1``: the ``s_pos`` side). It stops when every
multiplier is strictly inside and every free unit keeps its side.

Records go to ``benchmarks/results/nearby.jsonl``; the table is printed and written to
``benchmarks/results/nearby.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import time
from pathlib import Path

import numpy as np
import scipy.optimize as so

from certify.data import Dataset, Problem
from certify.nearby import prove_nearby, recheck
from certify.network import Network
from certify.tangent import dense_hessian, loss_gradient, piece_slopes

RESULTS = Path(__file__).resolve().parent / "results" / "nearby.jsonl"
MARKDOWN = Path(__file__).resolve().parent / "results" / "nearby.md"


def make(seed: int, widths=(4, 8, 1), n: int = 40) -> Problem:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, widths[0]))
    y = np.sin(X @ rng.normal(size=widths[0])) + 0.1 * rng.normal(size=n)
    Ws = [rng.normal(size=(o, i)) / np.sqrt(i) for i, o in zip(widths[:-1], widths[1:])]
    bs = [0.1 * rng.normal(size=o) for o in widths[1:]]
    return Problem(Network(Ws, bs, "relu"), Dataset(X, y), "square")


def train(problem: Problem, iters: int = 3000) -> Problem:
    res = so.minimize(problem.value, problem.theta, jac=lambda t: loss_gradient(problem.at(t)), method="L-BFGS-B",
                      options={"maxiter": iters, "gtol": 1e-12, "ftol": 1e-16})
    return problem.at(res.x)


def kkt_point(problem: Problem, max_iter: int = 500):
    """Primal active-set method in ``u = a (w, b)`` (module docstring). Returns ``(problem', held, note)``.

    From the trained point (every pre-activation off its kink), each step goes toward the optimum of
    the current pattern with the held kinks at zero, stops at the first free pre-activation that
    reaches zero (and holds it) or, at that optimum, releases the held kink whose one-sided multiplier
    ``kappa_+ = a_j (s_pos r_i / n - mu)`` or ``kappa_- = a_j (mu - s_neg r_i / n)`` is most negative.
    """
    net = problem.network
    W1, b1 = net.weights[0], net.biases[0]
    a, c0 = net.weights[1][0], net.biases[1][0]
    X, y = problem.X, problem.Y[:, 0]
    n, d = X.shape
    s_pos, s_neg = net.activation.slopes
    xbar = np.hstack([X, np.ones((n, 1))])
    live = np.nonzero(a != 0)[0]
    h = live.size
    nx = h * (d + 1) + 1
    x = np.concatenate([(a[live, None] * np.column_stack([W1, b1])[live]).ravel(), [c0]])

    def zvals(v):
        U = v[:-1].reshape(h, d + 1)
        return (xbar @ U.T) / a[live]          # (n, h): pre-activations of the live units

    pos = zvals(x) > 0
    held = set()
    note = "max_iter reached"
    for it in range(max_iter):
        Phi = np.zeros((n, nx))
        for k in range(h):
            slope = np.where(pos[:, k], s_pos, s_neg)
            for (i, kk) in held:
                if kk == k:
                    slope[i] = 0.0
            Phi[:, k * (d + 1):(k + 1) * (d + 1)] = slope[:, None] * xbar
        Phi[:, -1] = 1.0
        hl = sorted(held)
        m = len(hl)
        B = np.zeros((m, nx))
        for r_, (i, k) in enumerate(hl):
            B[r_, k * (d + 1):(k + 1) * (d + 1)] = xbar[i]
        K = np.block([[Phi.T @ Phi / n, B.T], [B, np.zeros((m, m))]])
        sol = np.linalg.lstsq(K, np.concatenate([Phi.T @ y / n, np.zeros(m)]), rcond=None)[0]
        x_eq, mu = sol[:nx], sol[nx:]
        step = x_eq - x
        z, dz = zvals(x), zvals(step)
        t_best, block = 1.0, None
        for i, k in zip(*np.nonzero(dz)):
            if (i, k) in held:
                continue
            if (pos[i, k] and dz[i, k] < 0) or (not pos[i, k] and dz[i, k] > 0):
                t = -z[i, k] / dz[i, k]
                if t < t_best:
                    t_best, block = max(t, 0.0), (int(i), int(k))
        x = x + t_best * step
        if block is not None:
            held.add(block)
            continue
        x = x_eq
        resid = Phi @ x - y
        worst, which = 0.0, None
        for r_, (i, k) in enumerate(hl):
            aj = a[live[k]]
            kp = aj * (s_pos * resid[i] / n - mu[r_])
            km = aj * (mu[r_] - s_neg * resid[i] / n)
            gam = abs(kp) + abs(km)
            for kap, side in ((km, False), (kp, True)):
                if kap < worst - 1e-9 * gam:
                    worst, which = kap, ((i, k), side)
            if min(kp, km) <= 1e-9 * gam and which is None:
                worst, which = min(kp, km) - 1e-300, ((i, k), kp > km)
        if which is not None:
            (i, k), side = which
            held.discard((i, k))
            pos[i, k] = side
            continue
        note = f"converged in {it + 1} step(s), {m} kink(s) held"
        break
    theta = problem.theta.copy()
    layers = net.split(theta)
    U = x[:-1].reshape(h, d + 1)
    for k, j in enumerate(live):
        layers[0][0][j] = U[k, :d] / a[j]
        layers[0][1][j] = U[k, d] / a[j]
    layers[1][1][0] = x[-1]
    return problem.at(theta), sorted((i, int(live[k])) for i, k in held), note


def teacher(seed: int, widths, n: int) -> Problem:
    """A kink-free global minimum: labels are the network's own outputs (``L = 0`` up to rounding of ``y``);
    with ``n`` above ``p`` the Gauss–Newton Hessian is nonsingular off the symmetries."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, widths[0]))
    Ws = [rng.normal(size=(o, i)) / np.sqrt(i) for i, o in zip(widths[:-1], widths[1:])]
    # output weights away from 0 (a unit with a tiny output weight is nearly flat: an ill-conditioned proof)
    Ws[-1] = rng.choice([-1.0, 1.0], size=Ws[-1].shape) * (1 + rng.random(Ws[-1].shape)) / np.sqrt(widths[-2])
    bs = [0.1 * rng.normal(size=o) for o in widths[1:]]    # every unit active on about half the data
    net = Network(Ws, bs, "relu")
    return Problem(net, Dataset(X, net(X)), "square")


def run_point(point: Problem, label: str) -> dict:
    """Prove at ``point`` as it is (no training), timed against one dense Hessian."""
    t = time.perf_counter()
    res = prove_nearby(point)
    t_prove = time.perf_counter() - t
    fwd = point.network.forward(point.X)
    t = time.perf_counter()
    dense_hessian(point, fwd, piece_slopes(point, fwd))
    t_hess = time.perf_counter() - t
    cert = res.certificate or {}
    ok = all(c.ok for c in recheck(point, cert)) if res.proved else None
    return {"instance": label, "p": point.n_params, "n": point.n_samples, "widths": list(point.network.widths),
            "held_kinks": cert.get("dimensions", {}).get("held", 0), "proved": res.proved, "reason": res.reason,
            "radius": cert.get("radius"), "radius_relative": cert.get("radius_relative"), "h": cert.get("h"),
            "recheck_ok": ok, "prove_s": t_prove, "dense_hessian_s": t_hess, "ratio_to_hessian": t_prove / t_hess,
            "timings": res.timings, "date": _dt.datetime.now().isoformat(timespec="seconds")}


def run_one(problem: Problem, label: str) -> dict:
    t0 = time.perf_counter()
    trained = train(problem)
    t_train = time.perf_counter() - t0
    kkt, held, note = kkt_point(trained)
    t = time.perf_counter()
    res = prove_nearby(kkt)
    t_prove = time.perf_counter() - t
    fwd = kkt.network.forward(kkt.X)
    t = time.perf_counter()
    dense_hessian(kkt, fwd, piece_slopes(kkt, fwd))
    t_hess = time.perf_counter() - t
    ok = None
    if res.proved:
        ok = all(c.ok for c in recheck(kkt, res.certificate))
    cert = res.certificate or {}
    return {"instance": label, "p": kkt.n_params, "n": kkt.n_samples, "widths": list(kkt.network.widths),
            "train_s": t_train, "kkt_note": note, "held_kinks": len(held),
            "moved_from_trained": float(np.linalg.norm(kkt.theta - trained.theta)),
            "proved": res.proved, "reason": res.reason, "radius": cert.get("radius"),
            "radius_relative": cert.get("radius_relative"), "h": cert.get("h"),
            "reduced_curvature_lower": cert.get("reduced_curvature_lower"), "kink_tolerance": cert.get("kink_tolerance"),
            "recheck_ok": ok, "prove_s": t_prove, "dense_hessian_s": t_hess, "ratio_to_hessian": t_prove / t_hess,
            "timings": res.timings, "date": _dt.datetime.now().isoformat(timespec="seconds")}


def table(rows: list) -> str:
    """The markdown table of a list of records."""
    fmt = (lambda v: "-" if v is None else f"{v:.3g}")
    lines = ["| instance | p | KKT point | held kinks | proved | r | r / \\|theta\\| | h | proof (s) | "
             "dense Hessian (s) | ratio |", "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['instance']} | {r['p']} | {r.get('kkt_note', 'as given')} | {r['held_kinks']} | "
                     f"{r['proved']} | {fmt(r['radius'])} | {fmt(r['radius_relative'])} | {fmt(r['h'])} | "
                     f"{r['prove_s']:.3f} | {r['dense_hessian_s']:.3f} | {r['ratio_to_hessian']:.1f} |")
    notes = [f"* {r['instance']}: {r['reason']}" for r in rows if not r["proved"]]
    return "\n".join(lines) + ("\n\nWhy the others were not proved:\n\n" + "\n".join(notes) if notes else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--large", action="store_true", help="also two instances toward the dense limit")
    ap.add_argument("--report", action="store_true", help="only rewrite the markdown from the results file")
    args = ap.parse_args(argv)
    if args.report:
        rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    else:
        rows = [run_one(make(seed), f"relu 4-8-1 n=40 seed={seed}") for seed in range(args.seeds)]
        if args.large:
            rows.append(run_point(teacher(1, (10, 100, 1), 4000), "teacher relu 10-100-1 n=4000 (kink-free, L=0)"))
            rows.append(run_point(teacher(1, (12, 150, 1), 6000), "teacher relu 12-150-1 n=6000 (kink-free, L=0)"))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as fh:
            for r in rows:
                fh.write(json.dumps(r, default=float) + "\n")
    text = table(rows)
    print(text)
    MARKDOWN.write_text("# Nearby proofs (`python -m benchmarks.nearby --seeds 12 --large`, OMP_NUM_THREADS=1)\n\n"
                        "Proof time against one dense Hessian (`certify.tangent.dense_hessian`, p HVPs) at the same "
                        "point, measured one after the other in one process on a shared 2-core machine.\n\n"
                        + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
