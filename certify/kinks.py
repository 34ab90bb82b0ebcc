"""Which units and loss terms sit on a kink at the current point.

A *unit kink* is a hidden pre-activation ``z^l_j(x_i)`` at zero; a *loss kink* is a loss group
(see :mod:`certify.losses`) with more than one maximal piece (a hinge margin 1, an absolute
residual 0, a multiclass-hinge tie).

**Default: zero up to rounding.** A pre-activation counts as zero when ``|fl(z)|`` is within the
rigorous bound on the rounding error of its float64 computation, ``2 gamma_{N_l} S^l``
(:mod:`certify.rounding`; ``S^l`` is the absolute forward pass) -- a value that float64 cannot tell
from zero, and nothing more. A loss group is tied when its best two pieces differ by at most the sum
of their rounding bounds. Such kinks are *within rounding* (``unit_rounding`` / ``loss_rounding``).

**A user tolerance ``tol``** (``--tol``, e.g. 1e-6 for a checkpoint) also treats as kinks the values
with ``|z| <= tol * max(S, largest S in its layer)`` (so a unit whose weights collapsed to ~1e-30
counts as sitting on its kink) and ties within ``tol * (max_c S^L + max_c |y_c| + 1)``. These *near*
kinks are snapped: a certificate built on them is about the snapped point, never about the given
one (README, *What a certificate proves*), and the report counts them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Problem
from .errors import InvalidValueError
from .network import ForwardPass
from .rounding import U, forward_factors

#: default kink tolerance: None means "zero up to the rounding-error bound", nothing more
DEFAULT_TOL = None


@dataclass(frozen=True, eq=False)
class KinkStructure:
    """The active kinks of a problem at its current point.

    Attributes
    ----------
    tol : float or None
        The user's relative tolerance (None: kinks are the values zero up to rounding only).
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
    unit_rounding, loss_rounding : bool arrays
        Whether each kink is zero within the rounding-error bound of its computation (the others
        are *near* kinks, snapped by the user's tolerance).
    unit_bound : (K,) float array
        The rounding-error bound of each unit kink's pre-activation.
    """

    tol: float | None
    unit_sample: np.ndarray
    unit_layer: np.ndarray
    unit_index: np.ndarray
    unit_value: np.ndarray
    masks: list
    loss_sample: np.ndarray
    loss_group: np.ndarray
    loss_active: list
    loss_gap: np.ndarray
    unit_rounding: np.ndarray = None
    loss_rounding: np.ndarray = None
    unit_bound: np.ndarray = None

    def __post_init__(self):
        if self.unit_rounding is None:
            object.__setattr__(self, "unit_rounding", np.ones(self.unit_sample.size, dtype=bool))
        if self.loss_rounding is None:
            object.__setattr__(self, "loss_rounding", np.ones(self.loss_sample.size, dtype=bool))
        if self.unit_bound is None:
            object.__setattr__(self, "unit_bound", np.zeros(self.unit_sample.size))

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
        """Kinks whose value computed to exactly 0 in float64."""
        return int(np.count_nonzero(self.unit_value == 0) + np.count_nonzero(self.loss_gap == 0))

    @property
    def n_near(self) -> int:
        """Kinks beyond their rounding-error bound, snapped by the user's tolerance."""
        return int(np.count_nonzero(~self.unit_rounding) + np.count_nonzero(~self.loss_rounding))

    def subset(self, keep) -> "KinkStructure":
        """The same structure with only the unit kinks ``keep`` (indices, in order); loss kinks kept."""
        keep = np.asarray(keep, dtype=np.int64)
        masks = [np.zeros_like(m) for m in self.masks]
        for k in keep:
            masks[int(self.unit_layer[k]) - 1][int(self.unit_sample[k]), int(self.unit_index[k])] = True
        return KinkStructure(tol=self.tol, unit_sample=self.unit_sample[keep], unit_layer=self.unit_layer[keep],
                             unit_index=self.unit_index[keep], unit_value=self.unit_value[keep], masks=masks,
                             loss_sample=self.loss_sample, loss_group=self.loss_group,
                             loss_active=self.loss_active, loss_gap=self.loss_gap,
                             unit_rounding=self.unit_rounding[keep], loss_rounding=self.loss_rounding,
                             unit_bound=self.unit_bound[keep])

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
            "within_rounding": self.n_total - self.n_near,
            "near": self.n_near,
            "max_abs_value": float(max(np.max(np.abs(self.unit_value), initial=0.0),
                                       np.max(self.loss_gap, initial=0.0))),
        }


def _at_most(z: np.ndarray, s: np.ndarray, f: float) -> np.ndarray:
    """``|z| <= f s`` elementwise, in row blocks that stay in cache (three passes over memory -> one)."""
    out = np.empty(z.shape, dtype=bool)
    step = max(1, (1 << 16) // max(1, z.shape[1]))
    buf_z = np.empty((min(step, z.shape[0]), z.shape[1]))
    buf_s = np.empty_like(buf_z)
    for r0 in range(0, z.shape[0], step):
        r1 = min(r0 + step, z.shape[0])
        bz, bs = buf_z[:r1 - r0], buf_s[:r1 - r0]
        np.abs(z[r0:r1], out=bz)
        np.multiply(s[r0:r1], f, out=bs)
        np.less_equal(bz, bs, out=out[r0:r1])
    return out


def find_kinks(problem: Problem, fwd: ForwardPass, tol: float | None = DEFAULT_TOL) -> KinkStructure:
    """Detect the unit and loss kinks of ``problem`` from a forward pass made ``with_scale``.

    ``tol`` None (default): only values zero up to their rounding-error bound; a float ``tol >= 0``
    also snaps the values within ``tol`` relative to their size (see the module docstring).
    """
    if tol is not None:
        try:
            tol = float(tol)
        except (TypeError, ValueError):
            tol = float("nan")
        if not np.isfinite(tol) or tol < 0:
            raise InvalidValueError(f"kink tolerance must be a finite number >= 0; got {tol!r}")
    net = problem.network
    factors = forward_factors(net)
    masks = []
    samples, layers, units, values, rounding, bounds = [], [], [], [], [], []
    if net.activation.has_kink:
        for l in range(1, net.n_layers):
            z, s = fwd.pre[l - 1], fwd.scale[l - 1]
            within = _at_most(z, s, factors[l - 1])
            mask = within
            if tol:
                mask = within | (np.abs(z) <= tol * np.maximum(s, s.max(initial=0.0)))
            masks.append(mask)
            if not mask.any():
                continue
            i, j = np.nonzero(mask)
            samples.append(i)
            units.append(j)
            layers.append(np.full(i.size, l))
            values.append(z[i, j])
            rounding.append(within[i, j])
            bounds.append(factors[l - 1] * s[i, j])
    else:
        masks = [np.zeros(z.shape, dtype=bool) for z in fwd.pre[:-1]]
    cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt))

    loss = problem.loss
    l_samples, l_groups, l_active, l_gap, l_round = [], [], [], [], []
    if loss.piecewise_linear:
        F = fwd.output
        vals, slopes = loss.pieces(F, problem.Y)               # (n, G, P), (n, G, P, C)
        ef = factors[-1] * fwd.scale[-1]                       # rounding bound of f, (n, C)
        err = (np.einsum("igpc,ic->igp", np.abs(slopes), ef)
               + 4 * U * (np.abs(vals) + np.einsum("igpc,ic->igp", np.abs(slopes), np.abs(F)) + 1.0))
        best_idx = vals.argmax(axis=2)
        best = np.take_along_axis(vals, best_idx[:, :, None], axis=2)
        err_best = np.take_along_axis(err, best_idx[:, :, None], axis=2)
        within = best - vals <= err_best + err
        active = within
        if tol:
            yscale = np.max(np.abs(problem.Y), axis=1) if problem.Y.ndim == 2 else 0.0
            scale = np.max(fwd.scale[-1], axis=1) + yscale + 1.0
            active = within | (vals >= best - tol * scale[:, None, None])
        n_active = active.sum(axis=2)
        for i, g in zip(*np.nonzero(n_active >= 2)):
            idx = np.nonzero(active[i, g])[0]
            top = np.sort(vals[i, g, idx])[::-1]
            l_samples.append(i)
            l_groups.append(g)
            l_active.append(idx)
            l_gap.append(float(top[0] - top[1]))
            l_round.append(bool(np.all(within[i, g, idx])))
    return KinkStructure(
        tol=tol,
        unit_sample=cat(samples, np.int64), unit_layer=cat(layers, np.int64),
        unit_index=cat(units, np.int64), unit_value=cat(values, np.float64), masks=masks,
        loss_sample=np.asarray(l_samples, dtype=np.int64), loss_group=np.asarray(l_groups, dtype=np.int64),
        loss_active=l_active, loss_gap=np.asarray(l_gap, dtype=np.float64),
        unit_rounding=cat(rounding, bool), loss_rounding=np.asarray(l_round, dtype=bool),
        unit_bound=cat(bounds, np.float64),
    )
