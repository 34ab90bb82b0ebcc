"""Loss values with rigorous rounding-error bounds that cost no more than one forward pass.

:func:`certify.evaluate.loss_with_bound` bounds the rounding error of ``L(theta)`` by a second,
absolute forward pass on ``|W|`` (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1):
the error of ``fl(z^l)`` is at most ``gamma_{m+1} (|x^{l-1}| |W_l|' + |b_l|)`` plus the propagated
error of ``x^{l-1}``. That doubles the cost of every loss evaluation. The two functions here give
bounds of the same kind (rigorous, doubled for safety) for less:

* :func:`loss_at_forward` -- at the point of a forward pass made ``with_scale`` (the driver's):
  the absolute forward pass ``S^l`` is already there and ``|fl(z^L) - z^L| <= 2 gamma_{N_L} S^L``
  (:mod:`certify.rounding`), so the bound costs nothing beyond the loss terms;
* :func:`loss_rank_one` -- at any point, by one plain forward pass, with the error of every layer
  carried as a short sum of rank-one terms ``sum_r P_r[sample] Q_r[unit] + c[unit]``: by
  Cauchy-Schwarz ``sum_j |x_j| |W_ij| <= ||x||_2 ||W_i||_2``, so the absolute matrix product is
  replaced by a product of norms (one pass over the activations), and a propagated term goes
  through ``|W|`` as a matrix-vector product. The bound is looser than the absolute pass by at most
  ``sqrt(fan-in)``, which only matters when a decrease is within a few hundred roundings of zero;
  callers then fall back to :func:`certify.evaluate.verified_decrease` (higher precision, exact).

Both return a :class:`certify.evaluate.BoundedValue` whose ``error`` is an upper bound on
``|computed - exact|`` for the parameters and data as stored.
"""

from __future__ import annotations

import numpy as np

from .data import Problem
from .evaluate import BoundedValue, _loss_terms
from .network import ForwardPass
from .rounding import U, forward_factors, gamma

#: relative inflation of every norm and matrix-vector product computed in float64 for a bound
_INFLATE = 1.0 + 1e-10


def _total(problem: Problem, theta: np.ndarray, F: np.ndarray, eF: np.ndarray) -> BoundedValue:
    """Mean loss and its error bound from outputs ``F`` with error bounds ``eF`` (as ``loss_with_bound``)."""
    vals, err = _loss_terms(problem, F, eF, U)
    n = vals.size
    total = float(vals.sum()) / n
    err_total = float(err.sum()) / n + gamma(n + 1) * float(np.abs(vals).sum()) / n
    if problem.weight_decay:
        th = np.asarray(theta, dtype=np.float64)
        sq = float(th @ th)
        total += 0.5 * problem.weight_decay * sq
        err_total += gamma(th.size + 2) * 0.5 * problem.weight_decay * sq + 2 * U * abs(total)
    return BoundedValue(total, 2.0 * err_total + 4 * U * abs(total), "float64")


def loss_at_forward(problem: Problem, fwd: ForwardPass) -> BoundedValue | None:
    """``L`` at ``fwd``'s point with a rounding bound read from its absolute forward pass.

    ``fwd`` must be ``problem.network.forward(problem.X, with_scale=True)`` (None when it has no
    scale). ``|fl(z^L) - z^L| <= 2 gamma_{N_L} S^L`` (:func:`certify.rounding.forward_factors`).
    """
    if fwd.scale is None:
        return None
    eF = forward_factors(problem.network)[-1] * fwd.scale[-1]
    return _total(problem, problem.theta, fwd.output, eF)


def loss_rank_one(problem: Problem, theta: np.ndarray) -> BoundedValue:
    """``L(theta)`` by one forward pass, its rounding bound carried as rank-one terms (module docstring).

    Per layer ``z = x W' + b`` with fan-in ``m``: the new error is ``gamma_{m+1} (|x| |W|' + |b|)
    <= gamma_{m+1} (||x_s||_2 ||W_i||_2 + |b_i|)`` and the error ``e`` of ``x`` adds ``e |W|'``; the
    activation multiplies errors by its Lipschitz constant and (leaky ReLU) adds one rounding
    ``u |x| <= u max_i |x_si|``.
    """
    net = problem.network
    act = net.activation
    lip = max(abs(s) for s in act.slopes)
    theta = np.asarray(theta, dtype=np.float64)
    layers = net.split(theta)
    x = problem.X
    terms: list = []          # (P over samples, Q over units of the current layer's input)
    const = np.zeros(x.shape[1])
    L = len(layers)
    F = eF = None
    for l, (W, b) in enumerate(layers, start=1):
        m = W.shape[1]
        Wa = np.abs(W)
        g = gamma(m + 1) * _INFLATE
        mv = gamma(m + 1) + 1.0   # a matrix-vector product of non-negative numbers, computed in float64
        new_terms = [(P, mv * _INFLATE * (Wa @ Q)) for P, Q in terms]
        new_const = mv * _INFLATE * (Wa @ const) + g * np.abs(b)
        x_norm = np.sqrt(np.einsum("ij,ij->i", x, x)) * _INFLATE
        new_terms.append((x_norm, g * np.sqrt(np.einsum("ij,ij->i", W, W)) * _INFLATE))
        z = x @ W.T
        z += b
        if l == L:
            F = z
            eF = np.broadcast_to(new_const, z.shape).copy()
            for P, Q in new_terms:
                eF += np.multiply.outer(P, Q)
            break
        x = act(z)
        terms = [(P, lip * Q) for P, Q in new_terms]
        const = lip * new_const
        if act.name == "leaky_relu":
            terms.append((U * np.abs(x).max(axis=1), np.ones(x.shape[1])))
    return _total(problem, theta, F, eF)
