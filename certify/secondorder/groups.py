"""Duplicated units: the groups GL(k) and O(k) that mix hidden units acting alike on the data.

Trained networks often contain hidden units of one layer that take the same slope on every sample
and sit on a kink at exactly the same samples (e.g. two copies of one unit with proportional weights).
Mixing such units linearly changes no later pre-activation: a symmetry beyond the rescaling of each
unit, with ``k^2`` generators without weight decay (``k(k-1)`` new ones, the diagonal being the
rescalings) and ``k(k-1)/2`` with weight decay (only rotations keep ``lambda/2 ||theta||^2``).

Groups
------
At a point ``theta`` with pre-activations ``z^l`` and a set of *held* unit kinks (``(l, i, j)``: unit
``j`` of hidden layer ``l`` held on its kink at sample ``i``), a *group* ``U`` of layer ``l`` is a set of
``k >= 2`` units with

(a) the same held samples ``H_U``: every ``u`` in ``U`` is held at every ``i`` in ``H_U`` and no ``u``
    is held at any other sample (a unit with a kink where its partner has none does not qualify);
(b) the same slope at every other sample: ``s(z^l_u(x_i)) = s_i`` for all ``u`` in ``U``, with the
    convention of the base piece (``s_pos`` on ``z >= 0``, ``s_neg`` on ``z < 0``; :func:`certify.
    nearby.base_slopes`). For ReLU, leaky ReLU and abs equal slopes mean the same side (``s_pos !=
    s_neg``); for the identity every unit of a layer has slope 1 everywhere and the whole layer is one
    group.

Units whose slope is 0 on every sample and that are held nowhere (dead ReLU units) are left out:
every one of their coordinates is a flat direction of its own (``"dead"`` families of
:func:`certify.nearby.gauge_families`, :func:`certify.secondorder.symmetry.symmetry_vectors`).

The action and why it keeps the loss
------------------------------------
Write ``W^_l = [W_l b_l]`` and ``P = W^_l[U]`` (k, n_{l-1} + 1), ``Q = W_{l+1}[:, U]`` (n_{l+1}, k).
``A`` in ``GL(k)`` acts by ``P -> A P``, ``Q -> Q A^{-1}``, every other coordinate fixed.

Theorem. Fix slopes ``D`` of every hidden unit at every sample (a *piece*) in which
``D_i|_U = s_i I_k`` for every sample ``i`` (true of the base piece, whose held units take ``s_pos``, by
(a) and (b); and of every piece in which all units of ``U`` take the same side at each held sample).
Let ``L_D`` be the loss polynomial of that piece. Then for every ``theta`` (not only near the point)
and every ``A``: (1) ``L_D(A . theta) = L_D(theta)`` without weight decay, and with weight decay when
``A`` is orthogonal; (2) every switching function of a layer other than ``l`` and of the loss is
invariant; (3) the switching functions of ``U`` at a held sample ``i`` map by
``phi_{U,i} -> A phi_{U,i}`` (``phi_{U,i} = z^l_U(x_i) = P x^_i``), so the held surface
``M = {phi = 0}`` is mapped into itself.

Proof. Pre-activations of layers ``< l`` and of units of layer ``l`` outside ``U`` read no moved
coordinate. ``z^l_U(x_i) = P x^_i`` becomes ``A P x^_i``: (3). The next layer reads ``U`` through
``Q D_i|_U z^l_U(x_i) = s_i Q z^l_U(x_i)``, which becomes ``s_i Q A^{-1} A z^l_U(x_i)``: unchanged, so
``z^{l+1}`` and (the slopes being fixed) every later pre-activation and the output are the same
polynomials: (1) without weight decay, and (2). Weight decay adds ``||A P||_F^2 + ||Q A^{-1}||_F^2``,
equal to ``||P||_F^2 + ||Q||_F^2`` for all ``P, Q`` iff ``A^{-1} = A^T`` (orthogonal matrices keep the
Frobenius norm under multiplication). QED.

Consequences. (i) ``U`` without held samples: near ``theta`` every unit keeps its strict side at
every sample (every non-held pre-activation being nonzero), and ``A z^l_U(x_i)`` keeps the common
strict sign of ``z^l_U(x_i)`` for ``A`` near ``I``; so ``L(A . theta') = L(theta')`` for ``theta'`` near
``theta``: an exact local symmetry of the loss. (ii) ``U`` with held samples: off the held surface two
units of ``U`` may take different sides at a held sample (``D_i|_U`` is then not scalar) and ``L``
changes under ``A``; but all pieces agree with the base piece on ``M``, so ``L = L_b`` on ``M`` and
``A`` keeps ``M`` and ``L`` restricted to ``M``. A second-order argument that quotients these
directions must work on ``M`` (the tangent space of the held kinks), as :mod:`certify.nearby` does
(step (vi) of its theorem).

Generators and tangents
-----------------------
``E_uv`` (the matrix unit, ``u != v``; :data:`GL`) or ``E_uv - E_vu`` (``u < v``; :data:`O`): the
one-parameter subgroups ``exp(t E)``. The tangent at ``theta`` is ``dP = E P``, ``dQ = -Q E``:

* ``E_uv``: ``dP[u] = P[v]``, ``dQ[:, v] = -Q[:, u]``;
* ``E_uv - E_vu``: ``dP[u] = P[v]``, ``dP[v] = -P[u]``, ``dQ[:, v] = -Q[:, u]``, ``dQ[:, u] = Q[:, v]``.

It is *linear* in ``theta``: ``T(theta)[dst] = coef * theta[src]`` with every source coordinate read
once per generator and ``|coef| = 1`` (:func:`linear_map`), so ``T(theta) - T(theta') = T(theta -
theta')`` and a Lipschitz bound of the tangents is a count of how often each coordinate is read.

The orbit of ``theta`` has dimension ``dim G - dim Stab``, ``Stab = {E : E P = 0, Q E = 0}``: when
``P`` or ``Q`` has rank below ``k`` (proportional copies) some generators' tangents are dependent.
:func:`select` keeps a maximal independent set (pivoted QR, beyond the tangents already given, e.g.
the rescalings). A caution the selection cannot remove: at non-held samples the group enters the
network only through the product ``Q P``, whose fibres are larger than the ``GL(k)`` orbit when
``rank Q P < k``; those extra flat directions are no symmetry of ``M`` unless the held kinks pin
them, and a proof that needs strictness modulo the group then fails (honestly). With weight decay
the minimum over a fibre is the balanced factorisation, unique up to ``O(k)``.

Using this module (the nearby prover does; a dense second-order test would too)::

    groups, gens = group_generators(net, net.theta, fwd.pre, held_units_of(kinks),
                                    bool(problem.weight_decay), basis=T_other)  # T_other: rescalings, ...
    T = tangent_matrix(net, net.theta, gens)                                # sparse (p, len(gens))

Without ``basis`` the groups' own rescalings are the basis (no weight decay), so the columns are the
mixings beyond them, ready to stack next to :func:`certify.secondorder.symmetry.symmetry_vectors`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

#: generator kinds: ``E_uv`` (no weight decay) and ``E_uv - E_vu`` (weight decay)
GL, O = "mix", "rotation"
#: a generator is kept when its tangent's component outside the span of those kept before it is at
#: least this fraction of its norm (pivoted QR on unit columns); below it counts as a stabiliser direction
REL_RANK = 1e-9
#: the cuts a prover may try in turn: near a point where copies are exactly proportional (a stabiliser),
#: a perturbed point has tangents independent at the size of the perturbation only
RANK_CUTS = (REL_RANK, 1e-6, 1e-3)


@dataclass(frozen=True)
class Group:
    """Units of hidden layer ``layer`` (1-based) with one slope pattern and one held-sample set.

    ``units``: sorted unit indices; ``held``: sorted samples at which every unit is held on its kink;
    ``slopes``: (n,) the common slope at every sample (``s_pos`` at held samples).
    """

    layer: int
    units: tuple
    held: tuple
    slopes: np.ndarray

    @property
    def size(self) -> int:
        return len(self.units)


@dataclass(frozen=True)
class Generator:
    """``E_uv`` (``kind`` :data:`GL`) or ``E_uv - E_vu`` (:data:`O`) acting on units of hidden layer ``layer``."""

    kind: str
    layer: int
    u: int
    v: int

    @property
    def family(self) -> tuple:
        """``(kind, layer, u, v)``: the form stored in a certificate."""
        return (self.kind, self.layer, self.u, self.v)


# ---------------------------------------------------------------------------- groups
def held_units_of(kinks) -> list:
    """The held unit kinks ``(l, i, j)`` of a :class:`certify.kinks.KinkStructure` (every unit kink it lists)."""
    return [(int(l), int(i), int(j)) for l, i, j in zip(kinks.unit_layer, kinks.unit_sample, kinks.unit_index)]


def find_groups(network, pre, held_units) -> list:
    """The groups of duplicated units (module docstring, (a) and (b)), layer by layer.

    Parameters
    ----------
    network : certify.network.Network
    pre : list of ndarray
        ``pre[l-1]`` = ``z^l`` (n, n_l) at the point (e.g. ``ForwardPass.pre``); the last entry
        (the output) is not read.
    held_units : iterable of (l, i, j)
        Held unit kinks: unit ``j`` of hidden layer ``l`` at sample ``i``.

    Returns
    -------
    list of Group
        Groups of at least two units, in layer order and, within a layer, by their first unit.

    Examples
    --------
    Two copies of ``relu(x - 1)`` (rows ``(1, -1)``, ``(2, -2)``) on ``x = 0..3``, both held at ``x = 1``:

    >>> import numpy as np
    >>> from certify.network import Network
    >>> net = Network([np.array([[1.0], [2.0]]), np.array([[0.5, 0.25]])], [np.array([-1.0, -2.0]), np.zeros(1)],
    ...               "relu")
    >>> (g,) = find_groups(net, net.forward(np.arange(4.0)[:, None]).pre, [(1, 1, 0), (1, 1, 1)])
    >>> g.layer, g.units, g.held
    (1, (0, 1), (1,))
    """
    s_pos, s_neg = network.activation.slopes
    held_by_layer = {}
    for l, i, j in held_units:
        held_by_layer.setdefault(int(l), set()).add((int(i), int(j)))
    groups = []
    for l in range(1, network.n_layers):
        z = np.asarray(pre[l - 1])
        n, width = z.shape
        held = np.zeros((n, width), dtype=bool)
        for i, j in held_by_layer.get(l, ()):
            held[i, j] = True
        # one code per (sample, unit): 2 held, 1 slope s_pos, 0 slope s_neg (equal slopes: one code)
        code = np.where(held, 2, np.where((z >= 0) | (s_pos == s_neg), 1, 0)).astype(np.int8)
        slope_zero_nowhere_held = (~held.any(axis=0)) & (np.where(code == 1, s_pos, s_neg) == 0).all(axis=0)
        members = {}
        for j in range(width):
            if slope_zero_nowhere_held[j]:
                continue                                   # dead: flat on its own
            members.setdefault(code[:, j].tobytes(), []).append(j)
        for units in sorted(members.values(), key=lambda us: us[0]):
            if len(units) < 2:
                continue
            col = code[:, units[0]]
            slopes = np.where(col == 0, s_neg, s_pos).astype(np.float64)
            groups.append(Group(l, tuple(units), tuple(int(i) for i in np.flatnonzero(col == 2)), slopes))
    return groups


def candidates(group: Group, weight_decay: bool) -> list:
    """All generators of ``group``: ``E_uv`` for ``u != v`` (GL) or ``E_uv - E_vu`` for ``u < v`` (O)."""
    us = group.units
    if weight_decay:
        return [Generator(O, group.layer, u, v) for a, u in enumerate(us) for v in us[a + 1:]]
    return [Generator(GL, group.layer, u, v) for u in us for v in us if u != v]


# ---------------------------------------------------------------------------- tangents
def _coords(network, l: int, j: int):
    """Flat indices of unit ``j`` of hidden layer ``l``: row of ``[W_l b_l]`` and column of ``W_{l+1}``."""
    w0, b0 = network.offsets[l - 1]
    n_in = network.weights[l - 1].shape[1]
    wn0, _ = network.offsets[l]
    n_next, width = network.weights[l].shape
    row = np.concatenate([w0 + j * n_in + np.arange(n_in), [b0 + j]])
    col = wn0 + np.arange(n_next) * width + j
    return row, col


def linear_map(network, gen) -> tuple:
    """``(src, dst, coef)``: the tangent of ``gen`` is ``T(theta)[dst] += coef * theta[src]``.

    Every ``src`` appears once and every ``|coef| = 1`` (module docstring). ``gen`` is a
    :class:`Generator` or its ``family`` tuple.
    """
    kind, l, u, v = gen.family if isinstance(gen, Generator) else gen
    row_u, col_u = _coords(network, l, u)
    row_v, col_v = _coords(network, l, v)
    if kind == GL:          # dP[u] = P[v], dQ[:, v] = -Q[:, u]
        src = np.concatenate([row_v, col_u])
        dst = np.concatenate([row_u, col_v])
        coef = np.concatenate([np.ones(row_v.size), -np.ones(col_u.size)])
    elif kind == O:         # ... and dP[v] = -P[u], dQ[:, u] = Q[:, v]
        src = np.concatenate([row_v, row_u, col_u, col_v])
        dst = np.concatenate([row_u, row_v, col_v, col_u])
        coef = np.concatenate([np.ones(row_v.size), -np.ones(row_u.size), -np.ones(col_u.size),
                               np.ones(col_v.size)])
    else:
        raise ValueError(f"unknown generator kind {kind!r}: expected {GL!r} or {O!r}")
    return src, dst, coef


def tangent(network, theta: np.ndarray, gen) -> np.ndarray:
    """The tangent (p,) of ``gen`` at ``theta``."""
    src, dst, coef = linear_map(network, gen)
    t = np.zeros(network.n_params)
    t[dst] = coef * np.asarray(theta, dtype=np.float64)[src]
    return t


def tangent_matrix(network, theta: np.ndarray, gens) -> sp.csc_matrix:
    """Tangents of ``gens`` at ``theta`` as the columns of a sparse (p, len(gens)) matrix."""
    theta = np.asarray(theta, dtype=np.float64)
    rows, cols, vals = [], [], []
    for c, gen in enumerate(gens):
        src, dst, coef = linear_map(network, gen)
        rows.append(dst)
        cols.append(np.full(dst.size, c))
        vals.append(coef * theta[src])
    if not rows:
        return sp.csc_matrix((network.n_params, 0))
    return sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(network.n_params, len(gens)))


def rescaling_tangents(network, theta: np.ndarray, group: Group) -> np.ndarray:
    """Tangents (p, k) of the units' rescalings ``E_uu`` (``dP[u] = P[u]``, ``dQ[:, u] = -Q[:, u]``)."""
    theta = np.asarray(theta, dtype=np.float64)
    out = np.zeros((network.n_params, group.size))
    for c, u in enumerate(group.units):
        row, col = _coords(network, group.layer, u)
        out[row, c] = theta[row]
        out[col, c] = -theta[col]
    return out


# ---------------------------------------------------------------------------- selection
def select(network, theta: np.ndarray, grps, weight_decay: bool, basis: np.ndarray | None = None,
           rel_rank: float = REL_RANK) -> list:
    """A maximal set of generators whose tangents at ``theta`` are independent of each other and of ``basis``.

    Parameters
    ----------
    basis : ndarray (p, r0), optional
        Tangents already in the gauge (rescalings, translations, ...). None: without weight decay the
        groups' own rescalings, with weight decay nothing.

    Returns
    -------
    list of Generator
        In the canonical order of :func:`candidates` (group by group). The choice is made in float64
        by pivoted QR on unit-norm columns (a column is kept while its pivot exceeds ``rel_rank``): it
        decides only *which* symmetries a proof quotients, never whether they are symmetries. Dense:
        ``O(p (r0 + n_candidates)^2)`` operations.
    """
    theta = np.asarray(theta, dtype=np.float64)
    cands = [g for grp in grps for g in candidates(grp, weight_decay)]
    if not cands:
        return []
    if basis is None:
        basis = (np.hstack([rescaling_tangents(network, theta, grp) for grp in grps]) if not weight_decay
                 else np.zeros((network.n_params, 0)))
    C = tangent_matrix(network, theta, cands).toarray()
    norms = np.linalg.norm(C, axis=0)
    keep = norms > 0
    C = C[:, keep] / norms[keep]
    idx = np.flatnonzero(keep)
    B = np.asarray(basis, dtype=np.float64)
    if B.shape[1]:
        bn = np.linalg.norm(B, axis=0)
        B = B[:, bn > 0] / bn[bn > 0]
        Qb = sla.orth(B, rcond=REL_RANK)
        C = C - Qb @ (Qb.T @ C)
        C = C - Qb @ (Qb.T @ C)                     # twice is enough (Kahan, Parlett)
    if not C.shape[1]:
        return []
    _, R, piv = sla.qr(C, mode="economic", pivoting=True)
    diag = np.abs(np.diag(R))
    rank = int(np.sum(diag > rel_rank))
    chosen = sorted(int(idx[c]) for c in piv[:rank])
    return [cands[c] for c in chosen]


def group_generators(network, theta: np.ndarray, pre, held_units, weight_decay: bool,
                     basis: np.ndarray | None = None, rel_rank: float = REL_RANK) -> tuple:
    """``(groups, generators)``: :func:`find_groups` then :func:`select` (the usual entry point)."""
    grps = find_groups(network, pre, held_units)
    return grps, select(network, theta, grps, weight_decay, basis, rel_rank)


def lipschitz_counts(network, gens, scales=None) -> np.ndarray:
    """``w_c = sum_gen scale_gen^2 [gen reads coordinate c]``: ``||(T(a) - T(b)) diag(scales)||_F^2 <=
    max_c w_c ||a - b||^2`` for the tangents of ``gens`` (each reads a coordinate at most once, ``|coef| = 1``)."""
    w = np.zeros(network.n_params)
    for c, gen in enumerate(gens):
        src, _, _ = linear_map(network, gen)
        w[src] += 1.0 if scales is None else float(scales[c]) ** 2
    return w
