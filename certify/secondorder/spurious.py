"""Spurious minima: a point with a verified lower loss (Yun, Sra, Jadbabaie 2019a, Thm 1 step 2).

Run after a ``local_min`` certificate that is not global: the lower point, when one is found and
its decrease verified, is stored in the report and marks the minimum *spurious*.
"""

from __future__ import annotations

import numpy as np

from ..checks import Check
from ..data import Problem
from ..evaluate import verified_decrease


def spurious_lower_point(problem: Problem) -> dict | None:
    """A point with a verified lower loss, by Yun, Sra, Jadbabaie (2019a) Thm 1 step 2.

    One hidden layer (width >= 2), scalar output, square loss, ReLU-like activation with
    ``s_pos + s_neg != 0``: from the best affine fit ``ybar_i = Wbar xbar_i`` (residuals summing to 0),
    sort the samples by ``ybar``; where a partial sum of residuals is nonzero between two distinct
    values, two units ``h(ybar - beta + gamma)`` and ``h(beta - ybar + gamma)`` shift the outputs
    on either side of ``beta`` by ``-+ kappa gamma`` and lower the loss by
    ``2 |kappa gamma sum_{i <= j0} r_i| + O(gamma^2)`` below the affine fit's. The candidate is kept
    only when its loss is *verified* below ``L(theta)``. Returns ``{"theta", "decrease", ...}`` or None.
    """
    net = problem.network
    s_pos, s_neg = net.activation.slopes
    h = net.weights[0].shape[0]
    if (net.n_layers != 2 or net.n_outputs != 1 or problem.loss.name != "square" or problem.weight_decay
            or not net.activation.has_kink or s_pos + s_neg == 0 or h < 2):
        return None
    base = problem.value()
    if base <= 0:
        return None  # nothing is below zero loss
    X, y = problem.X, problem.Y[:, 0]
    n, d = X.shape
    xbar = np.hstack([X, np.ones((n, 1))])
    wbar = np.linalg.lstsq(xbar, y, rcond=None)[0]
    ybar = xbar @ wbar
    order = np.argsort(ybar, kind="stable")
    ys, rs = ybar[order], (ybar - y)[order]
    partial = np.cumsum(rs)
    theta0 = problem.theta
    candidates = [j for j in range(n - 1) if ys[j] < ys[j + 1] and abs(partial[j]) > 1e-12 * (1 + np.abs(rs).sum())]
    candidates.sort(key=lambda j: -abs(partial[j]) * (ys[j + 1] - ys[j]))
    for j0 in candidates[:3]:
        beta = 0.5 * (ys[j0] + ys[j0 + 1])
        gap = ys[j0 + 1] - ys[j0]
        sign = np.sign(partial[j0] * (s_pos - s_neg))
        for frac in (0.25, 1 / 16, 1 / 64, 1 / 256):
            gamma = sign * frac * gap
            W1 = np.zeros((h, d)); b1 = np.zeros(h)
            W1[0], W1[1] = wbar[:d], -wbar[:d]
            b1[0], b1[1] = wbar[d] - beta + gamma, -wbar[d] + beta + gamma
            W2 = np.zeros((1, h)); W2[0, 0], W2[0, 1] = 1 / (s_pos + s_neg), -1 / (s_pos + s_neg)
            theta = np.concatenate([W1.ravel(), b1, W2.ravel(), [beta]])
            if problem.value(theta) >= base:
                continue
            dec = verified_decrease(problem, theta0, theta)
            if dec.verified:
                return {"theta": theta, "construction": "Yun, Sra, Jadbabaie 2019a, Thm 1 step 2",
                        "split_after": int(j0), "beta": float(beta), "gamma": float(gamma), **dec.to_dict()}
    return None


def recheck(problem: Problem, lower: dict, checks: list) -> None:
    th = np.asarray(lower["theta"], dtype=np.float64)
    dec = verified_decrease(problem, problem.theta, th)
    checks.append(Check("spurious_lower_point", dec.verified and th.shape == problem.theta.shape,
                        f"the stored lower point has loss {dec.after:.6g} < {dec.before:.6g} "
                        f"(verified, {dec.method})" if dec.verified else "the stored lower point is not lower"))
