"""The point of a rescaling orbit nearest a given point (positive homogeneity of the activations)."""

from __future__ import annotations

import numpy as np

from ..data import Problem


def nearest_rescaling(problem: Problem, theta: np.ndarray, theta0: np.ndarray, *, sweeps: int = 50) -> np.ndarray:
    """The point of ``theta``'s rescaling orbit nearest ``theta0``.

    Positive homogeneity: scaling a hidden unit's incoming weights and bias ``u`` by ``c > 0`` and
    its outgoing weights ``v`` by ``1/c`` leaves the network's function unchanged. Per unit, the
    best ``c`` minimises ``||c u - u_0||^2 + ||v / c - v_0||^2``: a root of
    ``|u|^2 c^4 - (u.u_0) c^3 + (v.v_0) c - |v|^2`` (one positive root at least); units of
    consecutive layers share ``W_{l+1}``, so the layers are swept until the scalings settle
    (coordinate descent: the distance never increases). The loss is unchanged up to the rounding of
    the products (weight decay breaks the symmetry; do not call it then).
    """
    net = problem.network
    theta = np.array(theta, dtype=np.float64, copy=True)
    for _ in range(sweeps):
        largest = 0.0
        for l in range(1, net.n_layers):
            W = net.weights[l - 1]
            Wn = net.weights[l]
            w0, b0 = net.offsets[l - 1]
            wn0, _ = net.offsets[l]
            n_in = W.shape[1]
            for j in range(W.shape[0]):
                in_idx = np.concatenate([w0 + j * n_in + np.arange(n_in), [b0 + j]])
                out_idx = wn0 + np.arange(Wn.shape[0]) * Wn.shape[1] + j
                u, u0 = theta[in_idx], theta0[in_idx]
                v, v0 = theta[out_idx], theta0[out_idx]
                a, c_ = float(u @ u), float(v @ v)
                if a == 0 or c_ == 0:
                    continue
                roots = np.roots([a, -float(u @ u0), 0.0, float(v @ v0), -c_])
                cands = [float(r.real) for r in roots if abs(r.imag) <= 1e-9 * abs(r) and r.real > 0]
                if not cands:
                    continue
                cost = [float(np.sum((c * u - u0) ** 2) + np.sum((v / c - v0) ** 2)) for c in cands]
                c = cands[int(np.argmin(cost))]
                if cost[int(np.argmin(cost))] >= float(np.sum((u - u0) ** 2) + np.sum((v - v0) ** 2)):
                    continue
                theta[in_idx] = c * u
                theta[out_idx] = v / c
                largest = max(largest, abs(np.log(c)))
        if largest <= 1e-13:
            break
    return theta
