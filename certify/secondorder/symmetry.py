"""Directions along which the loss is constant to all orders: the symmetries quotiented out.

Every second-order test works on the slice orthogonal to these (Morse–Bott). Each vector here is
the value at ``theta`` of a vector field ``X`` defined on a neighbourhood of ``theta`` whose flow
preserves the loss (and, at a kinked point, every piece's loss and switching functions); then for
independent ``X_1..X_r`` the map ``(t, s) -> flow^1_{t_1} o ... o flow^r_{t_r}(s)``, ``s`` on the
slice through ``theta`` orthogonal to ``X_k(theta)``, is a local diffeomorphism (inverse function
theorem) along which ``L`` is constant in ``t``: **theta is a local minimum iff it is one on the
slice**. A critical point has ``H X_k(theta) = 0``, so quotienting them never hides a negative
curvature. The families (without weight decay, which breaks all of them):

* **rescaling** of a hidden unit: ``(+w_j, +b_j, -W_{l+1}[:, j])`` (positive homogeneity);
* **dead units** (``s_- = 0``, strictly negative on every sample, no kink): every incoming and
  outgoing coordinate (the unit outputs 0 near theta whatever they are);
* **translation** of a unit with one slope ``s`` on every sample and no kink:
  ``b_l[j] += e, b_{l+1} -= s W_{l+1}[:, j] e`` keeps every later pre-activation;
* **GL of linear units**: the units ``U`` of a layer with one *nonzero* slope each on every sample
  (no kink) carry ``z_U -> A z_U`` compensated by ``W_{l+1}[:, U] -> W_{l+1}[:, U] S A^-1 S^-1``
  (``S`` their slopes); the diagonal of ``gl(U)`` is the rescalings, the off-diagonal generators
  ``E_uv`` give ``dW_l[u] = W_l[v], db_l[u] = b_l[v], dW_{l+1}[:, v] = -(s_u / s_v) W_{l+1}[:, u]``
  (capped in number: omitting symmetries is always sound);
* **partly dead units** (``s_- = 0``, no kink): the unit sees ``(w_j, b_j)`` only through
  ``z_A = [x^{l-1}_A 1] (w_j; b_j)`` on its active samples ``A`` (the others stay inactive), so
  moving ``(w_j, b_j)`` in the null space of ``[x^{l-1}_A 1]`` is flat. For the first layer the rows
  are data (a translation); deeper they move with theta, and the directions are used only when the
  rows are independent, so that ``(w_j, b_j) -> z_A`` is a submersion and its fibres are the flow.

**A null vector of the Jacobian is not automatically flat**: the fibres of a rank-deficient product
of linear layers are not the orbits of any family above, and the loss can decrease along them at
higher order (REFERENCES GT-15). :func:`jacobian_null_report` says how many Jacobian null directions
the families leave unexplained (dense, small p); those are left to the path-space certificate
(:mod:`certify.secondorder.path_fit`), which needs no Hessian, or to higher order.

All vectors are sparse columns (a unit's own blocks): nothing here forms a p x p matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..data import Problem
from ..kinks import KinkStructure
from ..network import ForwardPass

#: at most this many GL (off-diagonal) generators are added in total
MAX_GL = 2000
#: partly dead units are examined only with at most this many active samples
MAX_ACTIVE = 512


def symmetry_basis(problem: Problem, fwd: ForwardPass, kinks: KinkStructure | None = None) -> tuple[np.ndarray, dict]:
    """Orthonormal basis (p, r) of :func:`symmetry_vectors` (dense; for moderate p)."""
    T, counts = symmetry_vectors(problem, fwd, kinks)
    if T.shape[1] == 0:
        return np.zeros((problem.n_params, 0)), counts
    Q = sla.orth(T.toarray())
    counts = dict(counts, dimension=int(Q.shape[1]))
    return Q, counts


def _kink_masks(problem: Problem, fwd: ForwardPass, kinks: KinkStructure | None) -> list:
    """Per hidden layer, where a unit is on a kink (the given structure, else zero up to rounding)."""
    if kinks is None and fwd.scale is not None:
        from ..kinks import find_kinks
        kinks = find_kinks(problem, fwd)
    if kinks is not None and kinks.masks:
        return [np.asarray(m, dtype=bool) for m in kinks.masks]
    return [z == 0 for z in fwd.pre[:-1]]


def symmetry_vectors(problem: Problem, fwd: ForwardPass, kinks: KinkStructure | None = None, *,
                     gl: bool = True, partly_dead: bool = True, with_labels: bool = False):
    """The tangent vectors of the families in the module docstring, as sparse columns (p, r), and counts.

    ``counts``: ``orbits``, ``dead_units``, ``translations``, ``gl``, ``partly_dead`` (numbers of
    vectors) and ``beyond_rescaling`` (all but the orbits: directions that make a minimum non-strict);
    with ``with_labels``, ``labels`` names the family of every column.
    """
    net = problem.network
    p = net.n_params
    vecs = []  # (indices, values) of sparse columns
    labels = []
    counts = {"orbits": 0, "dead_units": 0, "translations": 0, "gl": 0, "partly_dead": 0}
    if problem.weight_decay:
        return sp.csc_matrix((p, 0)), dict(counts, beyond_rescaling=0, **({"labels": []} if with_labels else {}))
    s_pos, s_neg = net.activation.slopes
    masks = _kink_masks(problem, fwd, kinks)
    gl_left = MAX_GL if gl else 0
    for l in range(1, net.n_layers):
        W, Wn = net.weights[l - 1], net.weights[l]
        w0, b0 = net.offsets[l - 1]
        wn0, bn0 = net.offsets[l]
        n_in = W.shape[1]
        z = fwd.pre[l - 1]
        kinked = masks[l - 1].any(axis=0)
        pos, neg = np.all(z > 0, axis=0) & ~kinked, np.all(z < 0, axis=0) & ~kinked
        one_slope = pos | neg
        slope = np.where(pos, s_pos, s_neg)
        dead = (s_neg == 0) & neg

        def in_idx(j):
            return np.concatenate([w0 + j * n_in + np.arange(n_in), [b0 + j]])

        def out_idx(j):
            return wn0 + np.arange(Wn.shape[0]) * Wn.shape[1] + j

        for j in range(W.shape[0]):
            if dead[j]:
                for idx in np.concatenate([in_idx(j), out_idx(j)]):
                    vecs.append((np.array([idx]), np.array([1.0])))
                    labels.append("dead")
                counts["dead_units"] += 1
                continue
            vals = np.concatenate([W[j], [net.biases[l - 1][j]], -Wn[:, j]])
            if np.any(vals):
                vecs.append((np.concatenate([in_idx(j), out_idx(j)]), vals))
                labels.append("orbit")
                counts["orbits"] += 1
            if one_slope[j]:
                vecs.append((np.concatenate([[b0 + j], bn0 + np.arange(Wn.shape[0])]),
                             np.concatenate([[1.0], -slope[j] * Wn[:, j]])))
                labels.append("translation")
                counts["translations"] += 1
            elif partly_dead and s_neg == 0 and not kinked[j]:
                for v in _partly_dead(fwd, l, j, z[:, j] > 0):
                    vecs.append((in_idx(j), v))
                    labels.append("partly_dead")
                    counts["partly_dead"] += 1
        # GL of the units with one nonzero slope (off-diagonal generators)
        U = np.nonzero(one_slope & (slope != 0))[0]
        if gl_left and U.size > 1 and U.size * (U.size - 1) <= gl_left:
            for u in U:
                for v in U:
                    if u == v:
                        continue
                    vals = np.concatenate([W[v], [net.biases[l - 1][v]], -(slope[u] / slope[v]) * Wn[:, u]])
                    if not np.any(vals):
                        continue
                    vecs.append((np.concatenate([in_idx(u), out_idx(v)]), vals))
                    labels.append("gl")
                    counts["gl"] += 1
            gl_left -= U.size * (U.size - 1)
    counts["beyond_rescaling"] = counts["dead_units"] + counts["translations"] + counts["gl"] + counts["partly_dead"]
    if with_labels:
        counts["labels"] = labels
    if not vecs:
        return sp.csc_matrix((p, 0)), counts
    rows = np.concatenate([i for i, _ in vecs])
    cols = np.concatenate([np.full(len(i), k) for k, (i, _) in enumerate(vecs)])
    data = np.concatenate([v for _, v in vecs])
    T = sp.csc_matrix((data, (rows, cols)), shape=(p, len(vecs)))
    return T, counts


def _partly_dead(fwd: ForwardPass, l: int, j: int, active: np.ndarray) -> list:
    """Null directions of ``[x^{l-1}_A 1]`` for a partly dead unit (module docstring); ``[]`` if not proved."""
    A = np.nonzero(active)[0]
    if A.size > MAX_ACTIVE:
        return []
    rows = np.hstack([fwd.post[l - 1][A], np.ones((A.size, 1))])
    if A.size == 0:
        return []            # no active sample: a dead unit (handled apart)
    u, sv, vt = np.linalg.svd(rows, full_matrices=True)
    tol = max(rows.shape) * np.finfo(float).eps * (sv[0] if sv.size else 0.0)
    rank = int(np.count_nonzero(sv > tol))
    if l > 1 and rank < A.size:
        return []            # deeper rows that are dependent: not a submersion, nothing claimed
    return [vt[k] for k in range(rank, vt.shape[0])]


def jacobian_null_report(problem: Problem, fwd: ForwardPass, kinks: KinkStructure | None = None,
                         max_entries: float = 2e7) -> dict | None:
    """How many null directions of ``J = d f(x_i) / d theta`` (all outputs, all samples, slopes of the
    current cell) the families span: ``{"jacobian_null", "explained", "unexplained"}``, or None when ``J``
    is too large to form densely. Unexplained ones are *not* flat directions (module docstring)."""
    from ..tangent import piece_slopes, tangent_forward
    n, C, p = problem.n_samples, problem.network.n_outputs, problem.n_params
    if n * C * p > max_entries:
        return None
    D = piece_slopes(problem, fwd)
    J = np.empty((n * C, p))
    for k in range(p):
        e = np.zeros(p)
        e[k] = 1.0
        J[:, k] = tangent_forward(problem, fwd, e, D=D)[-1].ravel()
    sv = np.linalg.svd(J, compute_uv=False)
    tol = max(J.shape) * np.finfo(float).eps * (sv[0] if sv.size else 0.0)
    null = p - int(np.count_nonzero(sv > tol))
    T, _ = symmetry_vectors(problem, fwd, kinks)
    span = int(np.linalg.matrix_rank(T.toarray())) if T.shape[1] else 0
    return {"jacobian_null": null, "explained": min(span, null), "unexplained": max(0, null - span)}
