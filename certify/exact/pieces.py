"""Pieces in exact arithmetic: the first-order model of one side of every branched kink.

Mirrors :mod:`certify.secondorder.pieces` (read its docstring): the *branch set* ``B`` holds the unit
kinks that are nested (feed or are fed by another kink), concave (``c_k (s_pos - s_neg) < 0``) or
have a zero coefficient; a piece ``sigma`` fixes a side of each, and on it the loss is a smooth
function plus one level of convex kinks on the region ``{sigma_k phi_k >= 0, k in B}``. Its KKT
system is ``g_sigma + sum_j gamma_j lambda_j a_j + (1/n) sum_q G_q' S_q' pi_q - R' mu = 0`` with the
signed branch rows ``R_k = sigma_k grad phi_k``; multipliers for every piece certify
d-stationarity (every direction lies in some piece's linearised cone, where ``L'`` is that piece's
one-level model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kinks import KinkStructure
from .forward import ExactForward, ExactProblem, activation_slopes
from .rational import QArray
from .tangent import ExactOneLevel, first_order_model, one_level, switching_rows

#: largest branch set (2^MAX_BRANCH pieces), as :data:`certify.secondorder.pieces.MAX_BRANCH`
MAX_BRANCH = 8


def branch_set(ep: ExactProblem, fwd: ExactForward, kinks: KinkStructure) -> np.ndarray:
    """Unit kinks that are nested, concave or have a zero coefficient (ids into ``kinks``)."""
    full = first_order_model(ep, fwd, kinks, drop_inert=False)
    if full.n_kinks == 0:
        return np.zeros(0, dtype=np.int64)
    branch = (full.c * (ep.s_pos - ep.s_neg)).sign() <= 0
    if full.M.size:
        Mnz = full.M.num != 0
        branch |= Mnz.any(axis=1) | Mnz.any(axis=0)
    if full.N.size:
        branch |= np.any(full.N.num != 0, axis=0)
    return np.nonzero(branch)[0].astype(np.int64)


@dataclass(frozen=True, eq=False)
class ExactPiece:
    """One piece: ``signs`` of the branch kinks ``descs``, its one-level model and signed rows ``R``."""

    signs: tuple
    descs: list
    one: ExactOneLevel | None
    R: QArray
    nested: bool


def piece(ep: ExactProblem, fwd: ExactForward, kinks: KinkStructure, branch, signs) -> ExactPiece:
    """The exact piece ``signs`` of the kinks ``branch`` (as :class:`certify.secondorder.pieces.Piece`)."""
    branch = np.asarray(branch, dtype=np.int64)
    descs = [("unit", int(kinks.unit_layer[k]), int(kinks.unit_sample[k]), int(kinks.unit_index[k]))
             for k in branch]
    rest = kinks.subset(np.setdiff1d(np.arange(kinks.n_unit), branch))
    D = [activation_slopes(ep, z) for z in fwd.pre[:-1]]
    for (_, l, i, u), sg in zip(descs, signs):
        D[l - 1][i, u] = ep.s_pos if sg > 0 else ep.s_neg
    fo = first_order_model(ep, fwd, rest, drop_inert=False, slopes=D)
    rows = []
    for (_, l, i, u), sg in zip(descs, signs):
        row, _ = switching_rows(ep, fwd, D, rest, np.array([i]), l, np.array([u]))
        rows.append(row * (1 if sg > 0 else -1))
    R = QArray.concatenate(rows) if rows else QArray.zeros((0, ep.n_params))
    return ExactPiece(signs=tuple(int(s) for s in signs), descs=descs, one=None if fo.nested else one_level(fo),
                      R=R, nested=fo.nested)
