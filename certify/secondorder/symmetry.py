"""Directions along which the loss is constant to all orders: the symmetries quotiented out.

Every second-order test works on the slice orthogonal to these (Morse–Bott): a point is a local
minimum iff it is one on that slice, because each vector is the tangent of a family of
loss-preserving maps (a local group action).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..data import Problem
from ..network import ForwardPass


def symmetry_basis(problem: Problem, fwd: ForwardPass) -> tuple[np.ndarray, dict]:
    """Orthonormal basis (p, r) of :func:`symmetry_vectors` (dense; for moderate p)."""
    T, counts = symmetry_vectors(problem, fwd)
    if T.shape[1] == 0:
        return np.zeros((problem.n_params, 0)), counts
    Q = sla.orth(T.toarray())
    counts = dict(counts, dimension=int(Q.shape[1]))
    return Q, counts


def symmetry_vectors(problem: Problem, fwd: ForwardPass):
    """Directions along which ``L`` is constant to all orders: rescaling orbits and dead units.

    Without weight decay: for every hidden unit the orbit tangent ``(+w_j, +b_j, -W_{l+1}[:, j])``;
    for every *dead* unit (``s_neg = 0`` and a strictly negative pre-activation on every sample)
    all of its incoming and outgoing coordinates; for every unit with one slope ``s`` on all samples
    (no kink) the *translation* ``b_l[j] += e, b_{l+1} -= s W_{l+1}[:, j] e``, which keeps every
    later pre-activation exactly. Each is the tangent of a family of loss-preserving maps (a local
    group action), so theta is a local minimum iff it is one on the slice orthogonal to them.
    Returns the vectors as the columns of a sparse matrix (p, r) and counts.
    """
    net = problem.network
    p = net.n_params
    vecs = []  # (indices, values) of sparse columns
    n_orbit = n_dead = n_shift = 0
    if problem.weight_decay:
        return sp.csc_matrix((p, 0)), {"orbits": 0, "dead_units": 0, "translations": 0}
    s_pos, s_neg = net.activation.slopes
    for l in range(1, net.n_layers):
        W, Wn = net.weights[l - 1], net.weights[l]
        w0, b0 = net.offsets[l - 1]
        wn0, _ = net.offsets[l]
        n_in = W.shape[1]
        z = fwd.pre[l - 1]
        dead = (s_neg == 0) & np.all(z < 0, axis=0)
        for j in range(W.shape[0]):
            out_idx = wn0 + np.arange(Wn.shape[0]) * Wn.shape[1] + j
            in_idx = np.concatenate([w0 + j * n_in + np.arange(n_in), [b0 + j]])
            if dead[j]:
                for idx in np.concatenate([in_idx, out_idx]):
                    vecs.append((np.array([idx]), np.array([1.0])))
                n_dead += 1
                continue
            vals = np.concatenate([W[j], [net.biases[l - 1][j]], -Wn[:, j]])
            if np.any(vals):
                vecs.append((np.concatenate([in_idx, out_idx]), vals))
                n_orbit += 1
            zj = z[:, j]
            if np.all(zj > 0) or np.all(zj < 0):
                slope = s_pos if zj[0] > 0 else s_neg
                _, bn0 = net.offsets[l]
                vecs.append((np.concatenate([[b0 + j], bn0 + np.arange(Wn.shape[0])]),
                             np.concatenate([[1.0], -slope * Wn[:, j]])))
                n_shift += 1
    counts = {"orbits": n_orbit, "dead_units": n_dead, "translations": n_shift}
    if not vecs:
        return sp.csc_matrix((p, 0)), counts
    rows = np.concatenate([i for i, _ in vecs])
    cols = np.concatenate([np.full(len(i), k) for k, (i, _) in enumerate(vecs)])
    data = np.concatenate([v for _, v in vecs])
    T = sp.csc_matrix((data, (rows, cols)), shape=(p, len(vecs)))
    return T, counts
