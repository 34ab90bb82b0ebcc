"""Which units and loss terms sit on a kink at the current point.

A *unit kink* is a hidden pre-activation ``z^l_j(x_i)`` that is zero up to the tolerance; a
*loss kink* is a loss group (see :mod:`certify.losses`) with more than one maximal piece (a hinge
margin exactly 1, an absolute residual 0, a multiclass-hinge tie).

The tolerance ``tol`` is **relative**: a pre-activation counts as zero when
``|z| <= tol * max(s, S)`` where ``s = (|W| |x| + |b|)`` is the size of the terms it is summed from
and ``S`` the largest such size in its layer (so a value that is zero up to rounding is caught
whatever the scale of the weights, and a unit whose weights have collapsed to ~1e-30 counts as
sitting on its kink rather than as a tiny cell of its own); a loss group counts as tied when its
best two pieces differ by at most ``tol * (max_c |W||x|+|b| at the output + max_c |y_c| + 1)``.
The default ``DEFAULT_TOL = 1e-9`` is far above double-precision rounding (~1e-16 per operation)
and far below the distances to a kink that training leaves (~1e-6 and up); every report states
the tolerance it used and how many kinks were exact zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Problem
from .errors import InvalidValueError
from .network import ForwardPass

DEFAULT_TOL = 1e-9


@dataclass(frozen=True, eq=False)
class KinkStructure:
    """The active kinks of a problem at its current point.

    Attributes
    ----------
    tol : float
        The relative tolerance used.
    unit_sample, unit_layer, unit_index : (K,) int arrays
        Kink ``k`` is unit ``unit_index[k]`` of hidden layer ``unit_layer[k]`` (1-based) at sample
        ``unit_sample[k]``. Kinks are ordered by layer, then sample, then unit.
    unit_value : (K,) float array
        The pre-activation value (0.0 for an exact kink).
    masks : list of (n, n_l) bool arrays
        ``masks[l-1][i, j]`` is True where unit j of hidden layer l is a kink at sample i.
    loss_sample, loss_group : (Q,) int arrays
        Loss kink ``q`` is group ``loss_group[q]`` of sample ``loss_sample[q]``.
    loss_active : list of int arrays
        The maximal pieces of each loss kink (at least two).
    loss_gap : (Q,) float array
        Gap between the best two pieces (0.0 for an exact tie).
    """

    tol: float
    unit_sample: np.ndarray
    unit_layer: np.ndarray
    unit_index: np.ndarray
    unit_value: np.ndarray
    masks: list
    loss_sample: np.ndarray
    loss_group: np.ndarray
    loss_active: list
    loss_gap: np.ndarray

    @property
    def n_unit(self) -> int:
        return int(self.unit_sample.size)

    @property
    def n_loss(self) -> int:
        return int(self.loss_sample.size)

    @property
    def n_total(self) -> int:
        return self.n_unit + self.n_loss

    @property
    def n_exact(self) -> int:
        return int(np.count_nonzero(self.unit_value == 0) + np.count_nonzero(self.loss_gap == 0))

    def subset(self, keep) -> "KinkStructure":
        """The same structure with only the unit kinks ``keep`` (indices, in order); loss kinks kept."""
        keep = np.asarray(keep, dtype=np.int64)
        masks = [np.zeros_like(m) for m in self.masks]
        for k in keep:
            masks[int(self.unit_layer[k]) - 1][int(self.unit_sample[k]), int(self.unit_index[k])] = True
        return KinkStructure(tol=self.tol, unit_sample=self.unit_sample[keep], unit_layer=self.unit_layer[keep],
                             unit_index=self.unit_index[keep], unit_value=self.unit_value[keep], masks=masks,
                             loss_sample=self.loss_sample, loss_group=self.loss_group,
                             loss_active=self.loss_active, loss_gap=self.loss_gap)

    @property
    def loss_kink_samples(self) -> np.ndarray:
        return np.unique(self.loss_sample)

    def summary(self) -> dict:
        per_layer = {int(l): int(np.count_nonzero(self.unit_layer == l)) for l in np.unique(self.unit_layer)}
        return {
            "tolerance": self.tol,
            "unit_kinks": self.n_unit,
            "unit_kinks_per_layer": per_layer,
            "loss_kinks": self.n_loss,
            "exact": self.n_exact,
            "near": self.n_total - self.n_exact,
            "max_abs_value": float(max(np.max(np.abs(self.unit_value), initial=0.0),
                                       np.max(self.loss_gap, initial=0.0))),
        }


def find_kinks(problem: Problem, fwd: ForwardPass, tol: float = DEFAULT_TOL) -> KinkStructure:
    """Detect the unit and loss kinks of ``problem`` from a forward pass made ``with_scale``."""
    tol = float(tol)
    if not np.isfinite(tol) or tol < 0:
        raise InvalidValueError(f"kink tolerance must be a finite number >= 0; got {tol!r}")
    net = problem.network
    masks = []
    samples, layers, units, values = [], [], [], []
    if net.activation.has_kink:
        for l in range(1, net.n_layers):
            z, s = fwd.pre[l - 1], fwd.scale[l - 1]
            mask = np.abs(z) <= tol * np.maximum(s, s.max(initial=0.0))
            masks.append(mask)
            i, j = np.nonzero(mask)
            samples.append(i)
            units.append(j)
            layers.append(np.full(i.size, l))
            values.append(z[i, j])
    else:
        masks = [np.zeros(z.shape, dtype=bool) for z in fwd.pre[:-1]]
    cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt))

    loss = problem.loss
    l_samples, l_groups, l_active, l_gap = [], [], [], []
    if loss.piecewise_linear:
        F = fwd.output
        vals, _ = loss.pieces(F, problem.Y)
        yscale = np.max(np.abs(problem.Y), axis=1) if problem.Y.ndim == 2 else 0.0
        scale = np.max(fwd.scale[-1], axis=1) + yscale + 1.0
        best = vals.max(axis=2, keepdims=True)
        active = vals >= best - tol * scale[:, None, None]
        n_active = active.sum(axis=2)
        for i, g in zip(*np.nonzero(n_active >= 2)):
            idx = np.nonzero(active[i, g])[0]
            top = np.sort(vals[i, g, idx])[::-1]
            l_samples.append(i)
            l_groups.append(g)
            l_active.append(idx)
            l_gap.append(float(top[0] - top[1]))
    return KinkStructure(
        tol=tol,
        unit_sample=cat(samples, np.int64), unit_layer=cat(layers, np.int64),
        unit_index=cat(units, np.int64), unit_value=cat(values, np.float64), masks=masks,
        loss_sample=np.asarray(l_samples, dtype=np.int64), loss_group=np.asarray(l_groups, dtype=np.int64),
        loss_active=l_active, loss_gap=np.asarray(l_gap, dtype=np.float64),
    )
