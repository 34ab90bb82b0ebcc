"""Exact kinks: the pre-activations that are exactly 0 and the loss groups exactly tied.

:func:`exact_kinks` returns a :class:`certify.kinks.KinkStructure` with ``tol = 0.0`` -- a unit kink
is a hidden pre-activation ``z^l_j(x_i) = 0`` exactly, a loss kink a group whose maximum is
attained by two or more pieces exactly (hinge margin exactly 1, absolute residual exactly 0, a
multiclass-hinge tie) -- so every stage that reads a kink structure can run on it. Beside it,
:class:`NearKinks` says how far the nearest *non*-kink is: the smallest nonzero ``|z|`` relative to
the size of the terms it is summed from (the measure :mod:`certify.kinks` applies its tolerance to),
and the smallest nonzero gap between a loss group's best two pieces relative to its scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kinks import KinkStructure
from .forward import ExactForward, ExactProblem, forward, loss_pieces
from .rational import QArray


@dataclass(frozen=True)
class NearKinks:
    """The nearest values that are *not* kinks (``inf`` / ``None`` when there is none).

    ``unit_relative = |z| / max(s, S)`` with ``s = |W||x| + |b|`` the term size of that
    pre-activation and ``S`` the largest in its layer (the scale :mod:`certify.kinks` uses);
    ``unit_where = (layer, sample, unit)``. ``loss_relative`` is the gap between a loss group's best
    two pieces over ``max_c (|W||x| + |b|) + max |y| + 1``; ``loss_where = (sample, group)``.
    """

    unit_relative: float
    unit_absolute: float
    unit_where: tuple | None
    loss_relative: float
    loss_absolute: float
    loss_where: tuple | None

    @property
    def relative(self) -> float:
        return min(self.unit_relative, self.loss_relative)

    def to_dict(self) -> dict:
        return {"unit_relative": self.unit_relative, "unit_absolute": self.unit_absolute,
                "unit_where": self.unit_where, "loss_relative": self.loss_relative,
                "loss_absolute": self.loss_absolute, "loss_where": self.loss_where}


def exact_kinks(ep: ExactProblem, fwd: ExactForward | None = None) -> tuple[KinkStructure, NearKinks]:
    """The exact kinks of ``ep`` at its point and the nearest non-kinks (see the module docstring)."""
    fwd = fwd or forward(ep)
    net = ep.network
    masks, samples, layers, units = [], [], [], []
    near_unit = (np.inf, np.inf, None)
    for l in range(1, net.n_layers):
        z, s = fwd.pre[l - 1], fwd.scale[l - 1]
        zero = z.is_zero()
        mask = zero if net.activation.has_kink else np.zeros(z.shape, dtype=bool)
        masks.append(mask)
        i, j = np.nonzero(mask)
        samples.append(i)
        units.append(j)
        layers.append(np.full(i.size, l))
        if net.activation.has_kink and np.any(~zero):
            za, sa = np.abs(z.to_float()), s.to_float()
            rel = np.where(zero, np.inf, za / np.maximum(np.maximum(sa, sa.max(initial=0.0)), 1e-300))
            k = np.unravel_index(int(np.argmin(rel)), rel.shape)
            if rel[k] < near_unit[0]:
                near_unit = (float(rel[k]), float(za[k]), (l, int(k[0]), int(k[1])))
    cat = (lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64))
    l_sample, l_group, l_active = [], [], []
    near_loss = (np.inf, np.inf, None)
    if ep.loss.piecewise_linear:
        F = fwd.output
        values, _ = loss_pieces(ep, F)
        best = values.max(axis=2)
        gap = best[:, :, None] - values                   # >= 0, zero exactly at the maximal pieces
        active = gap.is_zero()
        n_active = active.sum(axis=2)
        for i, g in zip(*np.nonzero(n_active >= 2)):
            l_sample.append(int(i))
            l_group.append(int(g))
            l_active.append(np.nonzero(active[i, g])[0])
        gf = gap.to_float()
        gf[active] = np.inf
        if np.isfinite(gf).any():
            yscale = _label_scale(ep)
            scale = fwd.scale[-1].to_float().max(axis=1) + yscale + 1.0
            second = gf.min(axis=2)                       # gap to the runner-up piece per group
            rel = second / scale[:, None]
            i, g = np.unravel_index(int(np.argmin(rel)), rel.shape)
            near_loss = (float(rel[i, g]), float(second[i, g]), (int(i), int(g)))
    kinks = KinkStructure(
        tol=0.0, unit_sample=cat(samples), unit_layer=cat(layers), unit_index=cat(units),
        unit_value=np.zeros(sum(len(s) for s in samples)), masks=masks,
        loss_sample=np.asarray(l_sample, dtype=np.int64), loss_group=np.asarray(l_group, dtype=np.int64),
        loss_active=l_active, loss_gap=np.zeros(len(l_sample)))
    return kinks, NearKinks(*near_unit, *near_loss)


def _label_scale(ep: ExactProblem) -> np.ndarray:
    if isinstance(ep.Y, QArray):
        return np.abs(ep.Y.to_float()).max(axis=1)
    return np.zeros(ep.n_samples)


def compare_kinks(float_kinks: KinkStructure, exact: KinkStructure) -> dict:
    """How a tolerance-based kink structure differs from the exact one.

    ``not_exact``: float kinks whose value is not exactly 0 (a tolerance *treated* them as kinks);
    ``missed``: exact kinks the float structure does not have (possible only with ``tol = 0``).
    """
    def units(k):
        return {(int(l), int(i), int(j)) for l, i, j in zip(k.unit_layer, k.unit_sample, k.unit_index)}

    def losses(k):
        return {(int(i), int(g)) for i, g in zip(k.loss_sample, k.loss_group)}

    fu, eu, fl, el = units(float_kinks), units(exact), losses(float_kinks), losses(exact)
    return {"unit_not_exact": sorted(fu - eu), "unit_missed": sorted(eu - fu),
            "loss_not_exact": sorted(fl - el), "loss_missed": sorted(el - fl)}
