"""Rigorous a-priori bounds on the rounding errors of certify's float64 computations.

What a certificate "up to rounding" means (README, *What a certificate proves*): every quantity
that must be zero -- a pre-activation counted as a kink, a gradient entry, a residual of the
subgradient equation -- is zero to within a rigorous bound on the rounding error of its float64
computation. The bounds follow the forward error analysis of sums and products (Higham, *Accuracy
and Stability of Numerical Algorithms*, 2nd ed., §3.1 and Lemma 3.3): an expression made of ``+``,
``-`` and ``*`` of exactly stored inputs, evaluated in floating point along a chain of at most
``N`` roundings, has

    |fl(E) - E| <= gamma_N * E_abs,        gamma_N = N u / (1 - N u),  u = 2^-53,

where ``E_abs`` is the same expression with every input replaced by its absolute value and every
``-`` by ``+`` (whatever the summation order, blocked or pairwise). The parameters and the data are
taken exactly as stored. So every bound here is ``2 gamma_N`` (a factor 2 of safety, as in
:mod:`certify.evaluate`) times an *absolute twin* of the computation:

* the forward pass: ``S^1 = |W_1| |X| + |b_1|``, ``S^l = |W_l| (lip S^{l-1}) + |b_l|`` bounds every
  ``|z^l|`` and ``E_abs`` of its computation (``lip = max |slope|``), so
  ``|fl(z^l) - z^l| <= 2 gamma_{N_l} S^l``;
* a gradient with fixed activation slopes (every unit off its kink keeps its side: its computed sign
  is the exact one, since ``|z| >`` its bound) is the same backward pass run on ``|W|``, ``lip S``,
  ``|slopes|`` and an absolute loss adjoint ``delta_abs`` (square: ``S^L + |y|``, i.e. ``|f| + |y|``;
  hinge, absolute, multiclass hinge: the slopes, which are exact; logistic, cross-entropy: ``1``
  plus the Lipschitz constant of the adjoint in ``f`` times ``S^L``, which also covers numpy's
  ``exp``/``log`` being accurate to a few ulps -- an assumption, stated here).

``N`` is the length of the longest chain of roundings: the fan-ins of every layer (each sum of
``m`` products is ``m + 1`` roundings), the fan-outs of the backward pass, the sum over the ``n``
samples, plus a constant for the loss and its adjoint.
"""

from __future__ import annotations

import numpy as np

from .data import Problem
from .network import ForwardPass, Network

U = float(np.finfo(np.float64).eps) / 2   # unit roundoff of float64


def gamma(m: int, u: float = U) -> float:
    """``gamma_m = m u / (1 - m u)`` (Higham, Lemma 3.1)."""
    return m * u / (1.0 - m * u)


def chain_length(problem: Problem) -> int:
    """``N``: the longest chain of roundings in the forward pass, the adjoint and the gradient sums."""
    widths = problem.network.widths
    forward = sum(w_in + 2 for w_in in widths[:-1])       # fan-in + bias + the activation per layer
    backward = sum(widths[1:])                            # fan-outs of the adjoint recursion
    return int(forward + backward + problem.n_samples + 16)


def factor(problem: Problem) -> float:
    """``2 gamma_N``: the relative factor every absolute twin is multiplied by."""
    return 2.0 * gamma(chain_length(problem))


def forward_factors(network: Network) -> list:
    """``2 gamma_{N_l}`` for the pre-activations of each layer ``l`` (``|fl(z^l) - z^l| <= it * S^l``)."""
    out, N = [], 0
    for w_in in network.widths[:-1]:
        N += w_in + 2
        out.append(2.0 * gamma(N + 4))
    return out


def absolute_twin(problem: Problem, fwd: ForwardPass):
    """The absolute twin of ``problem`` at its point: ``(problem_abs, fwd_abs, delta_abs)``.

    ``problem_abs`` has weights ``|W_l|``, biases ``|b_l|`` and the same data; ``fwd_abs`` has
    pre-activations ``S^l`` and activations ``lip S^l`` (``fwd`` must have been made
    ``with_scale``); ``delta_abs`` (n, C) bounds the loss adjoint and the size of its computation
    (see the module docstring). Running the tangent-network code on the twin gives ``E_abs`` of each
    quantity it computes.
    """
    net = problem.network
    lip = max(abs(s) for s in net.activation.slopes)
    twin_net = Network(tuple(np.abs(W) for W in net.weights), tuple(np.abs(b) for b in net.biases),
                       net.activation)
    S = fwd.scale
    post = [np.abs(problem.X)] + [lip * s for s in S[:-1]]
    twin_fwd = ForwardPass(pre=list(S), post=post, scale=list(S))
    twin_problem = Problem(twin_net, problem.data, problem.loss, problem.weight_decay)
    return twin_problem, twin_fwd, absolute_twin_adjoint(problem, fwd)


def absolute_twin_adjoint(problem: Problem, fwd: ForwardPass) -> np.ndarray:
    """``delta_abs`` (n, C) of :func:`absolute_twin`: it bounds the loss adjoint and its computation."""
    F = fwd.scale[-1]
    name = problem.loss.name
    if name == "square":
        return F + np.abs(problem.Y)
    if name in ("hinge", "absolute", "multiclass_hinge"):
        return np.ones_like(F)
    if name == "logistic":
        return 1.0 + 0.25 * F
    # cross-entropy: the softmax adjoint is 1/2-Lipschitz in the max-norm of f
    return 1.0 + 0.5 * F.max(axis=1, keepdims=True) * np.ones_like(F)
