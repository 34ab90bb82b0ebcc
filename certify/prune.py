"""The network without its all-zero hidden units: an exact reduction, and what it can decide.

Weight decay collapses the units a network does not need: incoming weights, bias and outgoing weights
all 0 (the polisher sets a collapsing unit to exactly 0: :func:`certify.polish.pieces.snap_collapsed`).
Such a unit adds nothing to any output (its outgoing weights are 0) and nothing to the weight decay,
so with ``P`` the network without the zero units and ``E`` the embedding that puts zeros at their
coordinates, ``L(E theta_P) = L_P(theta_P)`` for every ``theta_P`` -- exactly, for every activation
and loss. Two consequences, both exact:

* A descent of ``L_P`` from ``theta_P`` (a direction, or a curve ``theta_P + t d + t^2/2 e``) is a
  descent of ``L`` along ``E d`` (and ``E e``) from ``theta``: a saddle or non-stationary verdict of
  the pruned network is one of the network (the lifted refutation is re-verified by evaluating ``L``).
* A local minimum of ``L_P`` at ``theta_P`` is **not** one of ``L``: a zero unit may regrow. Moving
  it by ``(u, v)`` changes the loss at second order by ``lambda/2 (|u|^2 + |v|^2) + v . Psi(u)`` with
  ``Psi(u) = sum_i G_i relu(u . x_i)`` (``G`` the loss adjoint at the next layer), so it cannot regrow
  iff ``max_{|u| = 1} ||Psi(u)|| <= lambda`` -- a maximum over the whole sphere of the unit's inputs,
  which at a KKT point equals ``lambda`` along every active unit of the layer (splitting an active
  unit into two is an exactly flat valley of weight decay). certify finds escapes when that maximum
  exceeds ``lambda`` (:mod:`certify.secondorder.escape_any`) but does not compute a rigorous global
  bound on it. So the report states the pruned network's certificate as what it is: a certified local
  minimum of the network restricted to ``{zero units stay 0}``, re-checked by :func:`certify.verify`
  on the pruned network it rebuilds, with the verdict about the full network left as it was.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .data import Problem
from .network import Network


def zero_units(net: Network) -> list:
    """``(layer, unit)`` (1-based hidden layer) of every hidden unit whose incoming weights, bias and
    outgoing weights are all exactly 0."""
    out = []
    for l in range(1, net.n_layers):
        W, b, Wn = net.weights[l - 1], net.biases[l - 1], net.weights[l]
        zero = ~np.any(W != 0, axis=1) & (b == 0) & ~np.any(Wn != 0, axis=0)
        out.extend((l, int(j)) for j in np.nonzero(zero)[0])
    return out


def prunable(net: Network) -> list:
    """The zero units when removing them leaves every hidden layer at least one unit, else ``[]``."""
    units = zero_units(net)
    for l in range(1, net.n_layers):
        if sum(1 for k, _ in units if k == l) == net.weights[l - 1].shape[0]:
            return []
    return units


def prune(problem: Problem, units: list) -> Problem:
    """The problem on the network without ``units`` (from :func:`prunable`); data, loss, decay kept."""
    net = problem.network
    W, b = list(net.weights), list(net.biases)
    for l in range(1, net.n_layers):
        drop = [j for k, j in units if k == l]
        if not drop:
            continue
        keep = np.setdiff1d(np.arange(W[l - 1].shape[0]), drop)
        W[l - 1], b[l - 1] = W[l - 1][keep], b[l - 1][keep]
        W[l] = W[l][:, keep]
    return dataclasses.replace(problem, network=Network(tuple(W), tuple(b), net.activation))


def embed(net: Network, units: list, d_pruned: np.ndarray) -> np.ndarray:
    """``E d``: a vector in the pruned network's coordinates put into ``net``'s, 0 at the zero units."""
    d_pruned = np.asarray(d_pruned, dtype=np.float64)
    keep = np.ones(net.n_params, dtype=bool)
    for l, j in units:
        w0, b0 = net.offsets[l - 1]
        n_in = net.weights[l - 1].shape[1]
        keep[w0 + j * n_in: w0 + (j + 1) * n_in] = False
        keep[b0 + j] = False
        wn0, _ = net.offsets[l]
        m, width = net.weights[l].shape
        keep[wn0 + np.arange(m) * width + j] = False
    if int(keep.sum()) != d_pruned.size:
        raise ValueError(f"a pruned vector of {d_pruned.size} entries for {int(keep.sum())} kept coordinates")
    out = np.zeros(net.n_params)
    out[keep] = d_pruned
    return out
