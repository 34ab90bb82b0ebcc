"""Escape functions of a hidden unit with zero output weights (REFERENCES.md A4.5 item 2).

With output weight ``a_j = 0`` the unit enters the loss at second order only, through
``delta a_j * psi_{j,s}(delta v_j)``; with ``r_i = l'(f_i)/n``,
``psi_{j,s}(v) = sum_{z_ij != 0} r_i h'(z_ij) xbar_i.v + sum_{z_ij = 0} r_i s h(s xbar_i.v)``
is the loss's directional derivative in ``u_j = a_j (w_j, b_j)`` on the branch ``sign(a_j) = s``.
A negative value gives the escape line ``a_j = s t, (w_j, b_j) += t v``: a saddle.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..data import Problem
from ..formulate.first_order import OneLevel
from ..kinks import KinkStructure
from ..network import ForwardPass
from ..refute import search_curve
from ..rounding import absolute_twin, factor


def escape_model(problem: Problem, fwd: ForwardPass, kinks: KinkStructure, j: int, s: int) -> OneLevel:
    """``psi_{j,s}`` of a zero-output unit as a one-level piecewise-linear function of ``v``."""
    X = problem.X
    n = problem.n_samples
    xbar = np.hstack([X, np.ones((n, 1))])
    r = problem.loss.gradient(fwd.output, problem.Y)[:, 0] / n
    s_pos, s_neg = problem.network.activation.slopes
    z = fwd.pre[0][:, j]
    on = kinks.masks[0][:, j] if kinks.masks else np.zeros(n, bool)
    slope = np.where(z > 0, s_pos, s_neg)
    hi, lo = (s_pos, s_neg) if s > 0 else (s_neg, s_pos)
    g = (r * np.where(on, lo, slope)) @ xbar
    idx = np.nonzero(on)[0]
    a = sp.csr_matrix(xbar[idx])
    gamma = r[idx] * (hi - lo)

    def twin():
        _, _, delta_abs = absolute_twin(problem, fwd)
        r_abs = delta_abs[:, 0] / n
        return OneLevel(g=(r_abs * np.abs(np.where(on, lo, slope))) @ np.abs(xbar),
                        a=sp.csr_matrix(np.abs(xbar[idx])), gamma=r_abs[idx] * abs(hi - lo), multi=[], n=n,
                        source=[])

    return OneLevel(g=g, a=a, gamma=gamma, multi=[], n=n, source=[("sample", int(i)) for i in idx],
                    twin=twin, rounding=factor(problem))


def escape_curve(problem, fwd, kinks, j: int, s: int, v: np.ndarray) -> dict:
    """The line ``a_j = s eps t, (w_j, b_j) += (t / eps) v``, for ``eps = 1, 1/2, 1/4, ...``.

    Along it the loss changes by ``t^2 psi_{j,s}(v) / ...`` (the product ``a_j h(w_j . x)``) plus
    ``eps^2 t^2`` times the square of the unit's current output ``h(z_ij)``, so a small ``eps``
    makes the second-order coefficient negative whenever ``psi < 0``; when ``h(z_j)`` is constant the
    output bias can cancel that term instead. Each candidate must be a local descent curve
    (``c1 = 0, c2 < 0``) with a verified decrease.
    """
    net = problem.network
    p = net.n_params
    d_in = net.n_inputs
    w0, b0 = net.offsets[0]
    a0, _ = net.offsets[1]
    h = net.activation(fwd.pre[0][:, j])
    curve = None
    for eps in (1.0, 0.5, 0.25, 0.125, 1 / 16, 1 / 64, 1 / 256):
        d = np.zeros(p)
        d[w0 + j * d_in: w0 + (j + 1) * d_in] = v[:d_in] / eps
        d[b0 + j] = v[d_in] / eps
        d[a0 + j] = s * eps
        variants = [d]
        if np.ptp(h) == 0 and h[0] != 0:
            d2 = d.copy()
            d2[p - 1] -= s * eps * h[0]   # cancel the order-t output change with the output bias
            variants.append(d2)
        for dv in variants:
            curve = search_curve(problem, fwd, kinks, dv / np.abs(dv).max())
            if curve["verified"]:
                return curve
    return curve
