"""Affine cell: a network that is affine near theta, at the best affine fit, is at a minimum.

Applies when there is no weight decay, no unit kink, and every hidden unit has one slope on all
samples (any depth): then ``f(x) = M x + m`` near theta and the loss is at least the best affine
fit's. If ``(M, m)`` minimises the convex affine-fit problem (a multiplier certificate), theta is a
local minimum -- a global one for a linear network (He et al.; Yun et al. Thm 1 step 1).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..checks import Check, check_multipliers
from ..data import Problem
from ..formulate.first_order import OneLevel
from ..kinks import KinkStructure
from ..network import ForwardPass
from ..tangent import piece_slopes
from ..rounding import absolute_twin, factor
from .base import Context, SecondOrder

NAME = "affine_cell"


def applies(ctx: Context) -> str | None:
    if ctx.problem.weight_decay:
        return "affine-cell test does not hold with weight decay"
    if ctx.kinks.n_unit:
        return "affine-cell test needs no unit on a kink"
    return None


def run(ctx: Context) -> SecondOrder:
    return affine_cell_test(ctx.problem, ctx.fwd, ctx.kinks, time_limit=ctx.budget())


def recheck(ctx: Context, cert: dict, checks: list) -> None:
    one, why = affine_cell_model(ctx.problem, ctx.fwd, ctx.kinks)
    checks.append(Check("affine_cell_conditions", one is not None, why or "the network is affine near theta"))
    if one is None:
        return
    check_multipliers(one, cert.get("fit_certificate") or {}, "affine_fit_multipliers", checks)


def affine_cell_model(problem: Problem, fwd: ForwardPass, kinks: KinkStructure):
    """The convex affine-fit problem's first-order model in ``vec(M, m)``, or ``(None, why not)``.

    Applies when there is no weight decay, no unit kink, and every hidden unit has one slope on all
    samples (then ``f(x) = M x + m`` near theta).
    """
    if problem.weight_decay:
        return None, "affine-cell test does not hold with weight decay"
    if kinks.n_unit:
        return None, "affine-cell test needs no unit on a kink"
    D = piece_slopes(problem, fwd)
    for l, Dl in enumerate(D, start=1):
        if Dl.size and np.any(Dl != Dl[0:1, :]):
            return None, (f"hidden layer {l} has units with different slopes on different samples: the network "
                          f"is not affine near theta")
    n = problem.n_samples
    xbar = np.hstack([problem.X, np.ones((n, 1))])
    grad = problem.loss.gradient(fwd.output, problem.Y)

    def twin():
        _, _, delta_abs = absolute_twin(problem, fwd)
        return _fit_model(problem, fwd, kinks, delta_abs, np.abs(xbar), absolute=True)

    one = _fit_model(problem, fwd, kinks, grad, xbar)
    object.__setattr__(one, "twin", twin)
    object.__setattr__(one, "rounding", factor(problem))
    return one, None


def _fit_model(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, grad: np.ndarray, xbar: np.ndarray,
               *, absolute: bool = False) -> OneLevel:
    """``L'`` of the affine-fit loss in ``vec(M, m)`` (or its absolute twin: ``|S|``, ``|xbar|``)."""
    n, C = problem.n_samples, problem.network.n_outputs
    dim = C * xbar.shape[1]
    loss = problem.loss
    F = fwd.output
    lk = set(int(i) for i in kinks.loss_kink_samples)
    smooth_rows = np.array([i for i in range(n) if i not in lk], dtype=int)
    mag = np.abs if absolute else (lambda x: x)
    g = np.zeros(dim)
    if smooth_rows.size:
        g = (grad[smooth_rows].T @ xbar[smooth_rows]).ravel() / n
    rows, gammas, multi, source = [], [], [], []
    if lk:
        vals, slopes = loss.pieces(F, problem.Y)
        kinked = {(int(i), int(gr)): act for i, gr, act in zip(kinks.loss_sample, kinks.loss_group, kinks.loss_active)}
        for i in sorted(lk):
            Gi = sp.csr_matrix(np.kron(np.eye(C), xbar[i]))  # df = Gi vec(M m)
            for gr in range(vals.shape[1]):
                act = kinked.get((i, gr))
                if act is None:
                    act = np.array([int(np.argmax(vals[i, gr]))])
                S = slopes[i, gr, act]
                g = g + np.asarray(Gi.T @ mag(S[0])).ravel() / n
                if S.shape[0] == 2:
                    rows.append(np.asarray(Gi.T @ mag(S[1] - S[0])).ravel())
                    gammas.append(1.0 / n)
                    source.append(("loss", i))
                elif S.shape[0] > 2:
                    multi.append((Gi, mag(S - S[0])))
    a = sp.csr_matrix(np.array(rows)) if rows else sp.csr_matrix((0, dim))
    return OneLevel(g=g, a=a, gamma=np.array(gammas), multi=multi, n=n, source=source)


def affine_cell_test(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, *,
                     time_limit: float = 60.0) -> SecondOrder | None:
    """Locally affine network at an optimal affine fit -> local minimum (global if linear)."""
    one, why = affine_cell_model(problem, fwd, kinks)
    if one is None:
        return SecondOrder(None, "affine_cell", reason=why)
    from ..first_order import decide_one_level
    net = problem.network
    res = decide_one_level(one, time_limit=time_limit, clarke=False)
    linear = net.activation.name == "identity"
    if res.stationary and res.certificate.get("kind") == "multipliers":
        flags = {"global": True if linear else None, "strict": None,
                 "classification": "locally affine network at the best affine fit"}
        reason = ("every hidden unit keeps one slope on all samples, so the network is affine near theta, and "
                  "its affine map minimises the convex affine-fit loss")
        if linear:
            reason += "; a linear network cannot do better than the best affine map: a global minimum"
        else:
            reason += " (a nonlinear network may still do better elsewhere)"
        return SecondOrder("local_min", "affine_cell", reason=reason, flags=flags,
                           certificate={"kind": "affine_cell", "fit_certificate": res.certificate},
                           solver_calls=res.solver_calls)
    return SecondOrder(None, "affine_cell", reason="the network is locally affine but not at the best affine fit",
                       solver_calls=res.solver_calls)
