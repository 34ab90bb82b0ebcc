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


#: how far an unpinned unit's pre-activations are moved off their kink, relative to their term size
UNPIN_MARGIN = 1e-4


def unpin_units(problem: Problem, theta: np.ndarray, rounding_rel: float = 1e-12) -> tuple[np.ndarray, list]:
    """Move units that touch samples at their kink but have one slope on all the others off the kink,
    where that leaves the network's function unchanged.

    A trainer leaves *dead* ReLU units with their hyperplane through a few samples (autograd's slope
    0 at 0 pushes an activating sample back to exactly 0), and a polish that drifts along such a unit's
    flat valley stops at the samples it meets: the kinks are held with multipliers at the ends of
    their intervals, a degenerate KKT point nothing can be proved about. Yet the unit is dead: its
    output is 0 on every sample, and stays 0 when its bias is lowered. So, without weight decay:

    * a unit with ``z_ij <= 0`` on every sample (up to rounding) and slope 0 below the kink gets
      ``b_j -= m`` (its output stays 0; the kinks become strictly negative); with a slope
      ``s_- != 0`` below the kink (leaky ReLU) it is affine on every sample, and the next layer's bias
      gets ``+= s_- W_{l+1}[:, j] m`` (the bias translation of a unit on its lower piece);
    * a unit with ``z_ij >= 0`` on every sample gets ``b_j += m`` and the next layer's bias
      ``-= s_+ W_{l+1}[:, j] m`` (it is affine on every sample, so the next layer's input is unchanged
      -- the bias translation of an always-active unit).

    ``m = UNPIN_MARGIN`` times the unit's largest term ``|W_j| |x| + |b_j|``. Returns the new point
    and the units moved ``(layer, unit, "dead" | "negative" | "active")``; the caller keeps the move only if the
    loss does not go up.
    """
    net = problem.network
    if problem.weight_decay or net.n_layers < 2:
        return theta, []
    s_pos, s_neg = net.activation.slopes
    theta = np.array(theta, dtype=np.float64, copy=True)
    moved = []
    x = problem.X
    layers = net.split(theta)
    for l in range(1, net.n_layers):
        W, b = layers[l - 1]
        z = x @ W.T + b
        size = np.abs(x) @ np.abs(W).T + np.abs(b)
        tol = rounding_rel * np.maximum(size.max(axis=0), 1e-300)
        _, b0 = net.offsets[l - 1]
        _, bn0 = net.offsets[l]
        Wn = layers[l][0]
        for j in range(W.shape[0]):
            zj, tj = z[:, j], tol[j]
            on_kink = np.abs(zj) <= tj
            if not on_kink.any() or on_kink.all():
                continue
            m = UNPIN_MARGIN * float(size[:, j].max())
            if np.all(zj <= tj):
                theta[b0 + j] -= m
                if s_neg != 0:      # affine with the slope s_neg on every sample: the next bias pays back
                    theta[bn0:bn0 + Wn.shape[0]] += s_neg * Wn[:, j] * m
                moved.append((l, j, "dead" if s_neg == 0 else "negative"))
            elif s_pos != 0 and np.all(zj >= -tj):
                theta[b0 + j] += m
                theta[bn0:bn0 + Wn.shape[0]] -= s_pos * Wn[:, j] * m
                moved.append((l, j, "active"))
        layers = net.split(theta)
        x = net.activation(x @ layers[l - 1][0].T + layers[l - 1][1])
    return theta, moved


#: relative headroom a cleared margin gets above 1 (far above the rounding of the outputs, far below anything else)
MARGIN_HEADROOM = 1e-10
#: ... and only margins within this of 1 are cleared (a larger deficit is not rounding: a real loss)
MARGIN_MOVE = 1e-6


def clear_margins(problem: Problem, theta: np.ndarray) -> np.ndarray | None:
    """Scale the last layer so that every margin of a zero-loss margin classifier clears 1 by rounding.

    Hinge and multiclass hinge without weight decay attain 0 wherever every margin (``y f``, or
    ``f_y - f_j`` for every ``j != y``) is at least 1. A polish that drives the loss to 0 stops with
    the margins it held at 1 *to rounding*: some are ``1 - 1e-17`` exactly, so the exact loss is
    ``1e-19 > 0`` and falls along a direction up to a kink ``1e-18`` away -- the point is refuted
    although a global minimum is next to it. Scaling ``(W_L, b_L)`` by ``c > 0`` scales the outputs,
    hence every margin, by ``c``: with ``m`` the smallest margin (> 0 when the loss is zero to
    rounding) ``c = (1 + MARGIN_HEADROOM) / m`` puts every margin at ``1 + 1e-10`` or more, where the
    loss is exactly 0 -- the global minimum, a move of ``|c - 1| ||(W_L, b_L)||`` ~ 1e-10 of it.
    Returns the new point, or None when this does not apply (another loss, weight decay, a margin
    below ``1 - MARGIN_MOVE``, or a float64 loss that is not 0 after the scaling).
    """
    if problem.weight_decay or problem.loss.name not in ("hinge", "multiclass_hinge"):
        return None
    net = problem.network
    F = net.with_theta(theta).forward(problem.X).output
    Y = problem.Y
    if problem.loss.name == "hinge":
        margins = Y[:, 0] * F[:, 0]
    else:
        rows = np.arange(F.shape[0])
        diff = F[rows, Y][:, None] - F
        diff[rows, Y] = np.inf
        margins = diff.min(axis=1)
    m = float(margins.min(initial=np.inf))
    if not np.isfinite(m) or m <= 0:
        return None
    c = (1.0 + MARGIN_HEADROOM) / m
    if c <= 1.0 or c > 1.0 + MARGIN_MOVE:
        return None                    # every margin clears 1 already, or some is not at 1 to rounding
    k = net.weights[-1].size + net.biases[-1].size
    cand = np.array(theta, dtype=np.float64, copy=True)
    cand[-k:] *= c
    if problem.value(cand) != 0.0:
        return None
    return cand
