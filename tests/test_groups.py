"""Duplicated units (certify.secondorder.groups): which units form a group, and that the group is a symmetry.

Independent answers only:

* the groups of the hand-made pre-activation tables are read off by hand (comments);
* invariance is checked in exact arithmetic: this file applies ``A`` to the layers itself, with
  Fractions (``P -> A P``, ``Q -> Q A^-1``, ``A^-1`` by Gauss-Jordan), and compares the exact loss of
  ``tests/exact.py`` (which never imports certify) before and after;
* the number of independent generators is the orbit dimension ``dim G - dim Stab`` derived by hand
  for copies of one unit (the stabiliser of a rank-one ``P = c a^T``, ``Q = d c'^T``).
"""

from __future__ import annotations

import copy
import itertools
from fractions import Fraction as Fr

import numpy as np
import pytest

from certify.network import Network
from certify.secondorder import groups
from tests import exact

# =============================================================================================
# Exact helpers (no certify): the action of A on units U of hidden layer l
# =============================================================================================


def _inverse(A):
    """Exact inverse of a square matrix of Fractions (Gauss-Jordan)."""
    k = len(A)
    M = [[Fr(v) for v in row] + [Fr(int(i == j)) for j in range(k)] for i, row in enumerate(A)]
    for c in range(k):
        r = next(r for r in range(c, k) if M[r][c] != 0)
        M[c], M[r] = M[r], M[c]
        piv = M[c][c]
        M[c] = [v / piv for v in M[c]]
        for r in range(k):
            if r != c and M[r][c] != 0:
                f = M[r][c]
                M[r] = [a - f * b for a, b in zip(M[r], M[c])]
    return [row[k:] for row in M]


def act(layers, l, units, A):
    """``layers`` with ``[W_l b_l][U] -> A [W_l b_l][U]`` and ``W_{l+1}[:, U] -> W_{l+1}[:, U] A^-1`` (exact)."""
    L = copy.deepcopy([([[Fr(v) for v in row] for row in W], [Fr(v) for v in b]) for W, b in layers])
    W, b = L[l - 1]
    Wn, _ = L[l]
    P = [W[u] + [b[u]] for u in units]
    newP = [[sum((A[a][c] * P[c][j] for c in range(len(units))), Fr(0)) for j in range(len(P[0]))]
            for a in range(len(units))]
    Ai = _inverse(A)
    for a, u in enumerate(units):
        W[u], b[u] = newP[a][:-1], newP[a][-1]
    for row in Wn:
        Q = [row[u] for u in units]
        for a, u in enumerate(units):
            row[u] = sum((Q[c] * Ai[c][a] for c in range(len(units))), Fr(0))
    return L


def shear(k, u, v, t):
    """``I + t E_uv``."""
    return [[Fr(int(i == j)) + (t if (i, j) == (u, v) else 0) for j in range(k)] for i in range(k)]


def rotation(k, u, v, tau):
    """The rational rotation by the Cayley parameter ``tau`` in the plane ``(u, v)``."""
    c, s = (1 - tau * tau) / (1 + tau * tau), 2 * tau / (1 + tau * tau)
    R = [[Fr(int(i == j)) for j in range(k)] for i in range(k)]
    R[u][u], R[u][v], R[v][u], R[v][v] = c, -s, s, c
    return R


def network(layers, activation):
    return Network([np.array([[float(v) for v in row] for row in W]) for W, _ in layers],
                   [np.array([float(v) for v in b]) for _, b in layers], activation)


def pre_activations(layers, X, activation):
    net = network(layers, activation)
    return net, net.forward(np.array([[float(v) for v in r] for r in X])).pre


X4 = [[0], [1], [2], [3]]
# GT-7 (REFERENCES) with its unit relu(x - 1) split into copies (1, -1), (2, -2) with outputs 1/3, 1/3:
# f = relu(x - 1) again; both copies on their kink at x = 1 (sample 1).
SPLIT7 = [([[1], [2]], [-1, -2]), ([[Fr(1, 3), Fr(1, 3)]], [0])]
Y7 = [Fr(1, 2), -1, 2, Fr(3, 2)]
# A one-unit minimum with weight decay 1/10 (derivation in tests/test_nearby.py, "split_wd") split into the
# rotated copies (3/5, 4/5): units (3/5, -9/20), (4/5, -3/5), outputs (3/4, 1), both on the kink at x = 3/4.
SPLIT_WD = [([[Fr(3, 5)], [Fr(4, 5)]], [Fr(-9, 20), Fr(-3, 5)]), ([[Fr(3, 4), Fr(1)]], [0])]
X_WD = [[0], [Fr(3, 4)], [2], [3]]
Y_WD = [Fr(12, 25), Fr(-12, 25), Fr(17, 16), Fr(53, 16)]
WD = Fr(1, 10)


def loss(layers, X, y, activation="relu", wd=0, name="square"):
    return exact.loss(layers, [[Fr(v) for v in r] for r in X], y, activation, name, wd)


# =============================================================================================
# Which units form a group
# =============================================================================================
def test_groups_read_off_a_table_of_pre_activations():
    # samples 0..3; H = held. By hand: u0, u1 share the held sample 1 and the sides (-, H, +, +): a group.
    # u2, u4, u5 have the sides (-, +, +, +) (u5 has z = 0 at sample 1, not held: the base piece puts it on
    # the s_pos side); u6 is held at samples 0 and 1 (a different held set); u3 and u7 are dead (excluded).
    z = np.array([[-1, -2, -1, -1, -5, -1, 0, -3],
                  [0, 0, 1, -1, .5, 0, 0, -1],
                  [2, 4, 2, -1, 1, 2, 2, -2],
                  [3, 6, 3, -1, 1, 3, 3, -1]], dtype=float)
    held = [(1, 1, 0), (1, 1, 1), (1, 0, 6), (1, 1, 6)]
    net = Network([np.zeros((8, 1)), np.zeros((1, 8))], [np.zeros(8), np.zeros(1)], "relu")
    got = groups.find_groups(net, [z, np.zeros((4, 1))], held)
    assert [(g.layer, g.units, g.held) for g in got] == [(1, (0, 1), (1,)), (1, (2, 4, 5), ())]
    assert list(got[0].slopes) == [0, 1, 1, 1] and list(got[1].slopes) == [0, 1, 1, 1]


def test_a_kink_at_one_unit_only_or_one_differing_sample_splits_a_group():
    z = np.array([[-1, -1, -1], [0, 0, 0], [2, 2, -2], [3, 3, 3]], dtype=float)
    net = Network([np.zeros((3, 1)), np.zeros((1, 3))], [np.zeros(3), np.zeros(1)], "relu")
    # all three held at sample 1, but u2 is off at sample 2: only (0, 1)
    got = groups.find_groups(net, [z, None], [(1, 1, 0), (1, 1, 1), (1, 1, 2)])
    assert [g.units for g in got] == [(0, 1)]
    # u1 not held at sample 1 (a kink at u0 only): no group with u0; u1 and u2 differ at sample 2
    assert groups.find_groups(net, [z, None], [(1, 1, 0)]) == []


@pytest.mark.parametrize("activation,expected", [
    ("leaky_relu:0.1", [(0, 1), (2, 3)]),     # all-negative units have slope 0.1 (not dead): a group
    ("abs", [(0, 1), (2, 3)]),                # slopes -1 / +1 by side
    ("relu", [(0, 1)]),                       # u2, u3 dead: left to the dead families
    ("identity", [(0, 1, 2, 3, 4)]),          # one slope everywhere: the whole layer
])
def test_groups_of_each_activation(activation, expected):
    # columns are units: u0, u1 (+, -, +); u2, u3 (-, -, -); u4 (+, +, +) alone
    z = np.array([[1, 2, -1, -3, 1], [-1, -2, -2, -1, 1], [3, 1, -1, -1, 2]], dtype=float)
    net = Network([np.zeros((5, 1)), np.zeros((1, 5))], [np.zeros(5), np.zeros(1)], activation)
    assert [g.units for g in groups.find_groups(net, [z, None], [])] == expected


# =============================================================================================
# The action keeps the loss exactly (the theorem of the module), and only where it should
# =============================================================================================
@pytest.mark.parametrize("A", [shear(2, 0, 1, Fr(1, 7)), shear(2, 1, 0, Fr(-3, 5)),
                               [[Fr(2), Fr(1, 3)], [Fr(-1, 2), Fr(3, 4)]], rotation(2, 0, 1, Fr(1, 10))])
def test_split_gt7_is_invariant_under_gl2(A):
    """Any A that keeps the copies' common side (A c > 0 for c = (1, 2)), not only A near I."""
    net, pre = pre_activations(SPLIT7, X4, "relu")
    (grp,) = groups.find_groups(net, pre, [(1, 1, 0), (1, 1, 1)])
    assert (grp.units, grp.held) == ((0, 1), (1,))
    base = loss(SPLIT7, X4, Y7)
    assert loss(act(SPLIT7, 1, grp.units, A), X4, Y7) == base
    # on the held surface M = {z_0(x_1) = z_1(x_1) = 0} near the point: rows of P moved along (1, -1)
    # (orthogonal to x^_1 = (1, 1)), outputs and output bias moved too -- still invariant
    on_M = [([[1 + Fr(1, 50)], [2 - Fr(1, 30)]], [-1 - Fr(1, 50), -2 + Fr(1, 30)]),
            ([[Fr(1, 3) + Fr(1, 40), Fr(1, 3) - Fr(1, 60)]], [Fr(1, 90)])]
    assert loss(act(on_M, 1, grp.units, A), X4, Y7) == loss(on_M, X4, Y7)


def test_held_group_is_not_invariant_off_the_held_surface():
    """Consequence (ii) of the module: off M the units of the group may take different sides at the held
    sample and the mixing changes the loss. Unit 0 moved to z_0(x_1) = 1/100 > 0, unit 1 still at 0; mixing
    unit 0 into unit 1 with a negative coefficient puts unit 1 below its kink at x_1."""
    off_M = [([[1], [2]], [-1 + Fr(1, 100), -2]), SPLIT7[1]]
    A = shear(2, 1, 0, Fr(-1, 10))
    assert loss(act(off_M, 1, (0, 1), A), X4, Y7) != loss(off_M, X4, Y7)


def test_weight_decay_keeps_rotations_only():
    net, pre = pre_activations(SPLIT_WD, X_WD, "relu")
    (grp,) = groups.find_groups(net, pre, [(1, 1, 0), (1, 1, 1)])
    base = loss(SPLIT_WD, X_WD, Y_WD, wd=WD)
    for tau in (Fr(1, 10), Fr(-2, 7), Fr(1, 3)):      # rotations keeping both copies on their side
        assert loss(act(SPLIT_WD, 1, grp.units, rotation(2, 0, 1, tau)), X_WD, Y_WD, wd=WD) == base
    sheared = act(SPLIT_WD, 1, grp.units, shear(2, 0, 1, Fr(1, 10)))
    assert loss(sheared, X_WD, Y_WD) == loss(SPLIT_WD, X_WD, Y_WD)          # the data part is kept ...
    assert loss(sheared, X_WD, Y_WD, wd=WD) != base                        # ... the penalty is not
    assert [g.kind for g in groups.candidates(grp, True)] == [groups.O]
    assert sorted((g.u, g.v) for g in groups.candidates(grp, False)) == [(0, 1), (1, 0)]


def _random_point_with_copies(seed, depth2=False):
    """A rational 2-3(-3)-2 network whose hidden layer (the second one with ``depth2``) has units 0 and 1
    with proportional rows ([W b] of unit 1 = 3/2 that of unit 0) -- so one slope pattern -- and rational
    data; no kink is near (the pre-activations are rational with small denominators, checked nonzero)."""
    rng = np.random.default_rng(seed)

    def frac(shape):
        return [[Fr(int(v), 8) for v in row] for row in rng.integers(-12, 13, size=shape)]

    widths = (2, 3, 3, 2) if depth2 else (2, 3, 2)
    layers = [(frac((o, i)), frac((1, o))[0]) for i, o in itertools.pairwise(widths)]
    l = 2 if depth2 else 1
    W, b = layers[l - 1]
    W[1] = [Fr(3, 2) * v for v in W[0]]
    b[1] = Fr(3, 2) * b[0]
    X = frac((6, 2))
    y = frac((6, 2))
    return layers, X, y, l


@pytest.mark.parametrize("activation", ["relu", "leaky_relu:0.25", "abs"])
@pytest.mark.parametrize("depth2", [False, True])
def test_copies_without_kinks_are_a_local_symmetry(activation, depth2):
    """Consequence (i): no held sample -- the loss is invariant under A near I at the point *and* at every
    nearby point (here: a random rational perturbation of every coordinate by at most 1/1000)."""
    exact_act = ("leaky_relu", Fr(1, 4)) if activation.startswith("leaky") else activation
    for seed in range(50):
        layers, X, y, l = _random_point_with_copies(seed, depth2)
        net, pre = pre_activations(layers, X, activation)
        grp = [g for g in groups.find_groups(net, pre, []) if g.layer == l and {0, 1} <= set(g.units)]
        if grp and min(float(np.abs(z).min()) for z in pre[:-1]) > 0.05:
            break
    (grp,) = grp
    assert grp.held == ()
    rng = np.random.default_rng(1)
    moved = [([[v + Fr(int(rng.integers(-8, 9)), 8000) for v in row] for row in W],
              [v + Fr(int(rng.integers(-8, 9)), 8000) for v in b]) for W, b in layers]
    A = [[Fr(1) if i == j else Fr(0) for j in range(grp.size)] for i in range(grp.size)]
    A[0][1], A[1][0] = Fr(1, 100), Fr(-1, 200)
    for point in (layers, moved):
        assert exact.loss(act(point, grp.layer, grp.units, A), X, y, exact_act, "square") == \
            exact.loss(point, X, y, exact_act, "square")


def test_the_identity_layer_is_one_group_under_gl():
    layers = [([[1, 0], [1, 1], [2, -1]], [0, 1, -1]), ([[1, 1, 0], [0, 2, 1]], [0, 0])]
    X = [[0, 0], [1, 0], [0, 1], [1, 1], [2, -1]]
    y = [[1, 2], [0, 0], [3, 1], [1, -1], [2, 2]]
    net, pre = pre_activations(layers, X, "identity")
    (grp,) = groups.find_groups(net, pre, [])
    assert grp.units == (0, 1, 2)
    A = [[Fr(2), Fr(1), Fr(0)], [Fr(0), Fr(1), Fr(-3)], [Fr(1, 2), Fr(0), Fr(1)]]     # det 1/2 + 2 != 0
    assert exact.loss(act(layers, 1, grp.units, A), X, y, "identity", "square") == \
        exact.loss(layers, X, y, "identity", "square")


@pytest.mark.parametrize("case", ["kink_at_one_unit", "differ_at_one_sample"])
def test_pairs_that_do_not_qualify_are_no_symmetry(case):
    """A kink at one unit only (unit 1 at z = 1/2 where unit 0 is held), or one sample where the sides differ
    (unit 1 off at x = 1 where unit 0 is on): no group, and some small mixing changes the exact loss."""
    if case == "kink_at_one_unit":
        layers, held = [([[1], [1]], [-1, Fr(-1, 2)]), ([[Fr(1, 2), Fr(1, 2)]], [0])], [(1, 1, 0)]
    else:
        layers, held = [([[1], [1]], [Fr(-1, 2), Fr(-3, 2)]), ([[Fr(1, 2), Fr(1, 2)]], [0])], []
    net, pre = pre_activations(layers, X4, "relu")
    assert groups.find_groups(net, pre, held) == []
    base = loss(layers, X4, Y7)
    changed = [loss(act(layers, 1, (0, 1), shear(2, u, v, t)), X4, Y7) != base
               for (u, v), t in itertools.product([(0, 1), (1, 0)], [Fr(1, 10), Fr(-1, 10)])]
    assert any(changed)


# =============================================================================================
# Tangents, their Lipschitz bound, and how many generators are independent
# =============================================================================================
def test_tangent_of_a_shear_is_the_exact_difference_quotient():
    """``I + t E_uv`` acts exactly linearly in t (``(I + t E)^-1 = I - t E``): (A.theta - theta)/t is the tangent."""
    layers = [([[1, 2], [3, -1], [Fr(1, 2), 1]], [1, -2, 3]), ([[2, -1, 1], [1, 1, -3]], [0, 1])]
    net = network(layers, "relu")
    theta = exact.flatten(layers)
    t = Fr(1, 3)
    for u, v in [(0, 2), (2, 0), (1, 2)]:
        moved = exact.flatten(act(layers, 1, (0, 1, 2), shear(3, u, v, t)))
        quotient = [(a - b) / t for a, b in zip(moved, theta)]
        tan = groups.tangent(net, net.theta, groups.Generator(groups.GL, 1, u, v))
        assert [Fr(float(x)) for x in tan] == quotient
    # rotations: R(tau) = [[c, -s], [s, c]] in the plane (0, 1) has dR/dtau(0) = 2 (E_10 - E_01), i.e. -2 times
    # the generator E_01 - E_10; compared with a central difference of the exact action
    def rotated(tau):
        return exact.flatten(act(layers, 1, (0, 1, 2), rotation(3, 0, 1, tau)))

    h = Fr(1, 10 ** 6)
    central = [float((a - b) / (2 * h)) for a, b in zip(rotated(h), rotated(-h))]
    tan = groups.tangent(net, net.theta, groups.Generator(groups.O, 1, 0, 1))
    assert np.allclose(central, -2 * tan, atol=1e-9)


def test_lipschitz_counts_bound_the_drift_of_the_tangents():
    layers = [([[1, 2], [3, -1], [Fr(1, 2), 1]], [1, -2, 3]), ([[2, -1, 1], [1, 1, -3]], [0, 1])]
    net = network(layers, "relu")
    grp = groups.Group(1, (0, 1, 2), (), np.ones(3))
    for wd in (False, True):
        gens = groups.candidates(grp, wd)
        scales = np.linspace(0.5, 2.0, len(gens))
        w = groups.lipschitz_counts(net, gens, scales)
        lip = np.sqrt(w.max())
        rng = np.random.default_rng(0)
        for _ in range(20):
            a, b = rng.normal(size=(2, net.n_params))
            d = (groups.tangent_matrix(net, a, gens) - groups.tangent_matrix(net, b, gens)).toarray() * scales
            assert np.linalg.norm(d) <= lip * np.linalg.norm(a - b) * (1 + 1e-12)
        # attained: all of the difference on the most-read coordinate
        c = int(np.argmax(w))
        e = np.zeros(net.n_params)
        e[c] = 1.0
        d = groups.tangent_matrix(net, e, gens).toarray() * scales
        assert np.linalg.norm(d) == pytest.approx(lip, rel=1e-12)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("wd", [False, True])
def test_copies_of_one_unit_have_an_orbit_of_dimension_k_minus_1_beyond_rescaling(k, wd):
    """``P = c a^T``, ``Q = d c'^T`` (copies of one unit): ``Stab = {E : E c = 0, d^T E = 0}`` has dimension
    ``(k - 1)^2`` in gl(k), so the GL orbit has dimension ``2k - 1``: ``k`` rescalings and ``k - 1`` mixings.
    In o(k), for balanced copies (``d`` parallel to ``c``, as at a minimum with weight decay), the
    stabiliser of ``c`` is o(k - 1): the O orbit (a sphere) has dimension ``k - 1``."""
    c = [1, 2, 3][:k]
    d = [Fr(ci, 6) for ci in c] if wd else [Fr(1, 6)] * k        # balanced copies (d || c) with weight decay
    layers = [([[ci] for ci in c], [-ci for ci in c]), ([d], [0])]
    net, pre = pre_activations(layers, X4, "relu")
    held = [(1, 1, j) for j in range(k)]
    (grp,) = groups.find_groups(net, pre, held)
    assert len(groups.select(net, net.theta, [grp], wd)) == k - 1


def test_units_of_full_rank_have_the_whole_group():
    """Two units with the same sides but non-proportional rows and a 2x2 output block of rank 2: the
    stabiliser is trivial, all k(k-1) = 2 mixings (GL) or k(k-1)/2 = 1 rotation (O) are independent."""
    layers = [([[1], [2]], [Fr(-1, 2), Fr(-3, 2)]), ([[1, 2], [3, -1]], [0, 0])]
    net, pre = pre_activations(layers, X4, "relu")
    (grp,) = groups.find_groups(net, pre, [])
    assert len(groups.select(net, net.theta, [grp], False)) == 2
    assert len(groups.select(net, net.theta, [grp], True)) == 1


def test_the_few_lines_a_dense_second_order_test_needs():
    """From a KinkStructure to the sparse tangents of the mixings beyond the rescalings (split GT-7: one)."""
    from certify.data import Dataset, Problem
    from certify.kinks import find_kinks
    net = network(SPLIT7, "relu")
    problem = Problem(net, Dataset(np.arange(4.0)[:, None], np.array([0.5, -1, 2, 1.5])), "square")
    fwd = net.forward(problem.X, with_scale=True)
    kinks = find_kinks(problem, fwd)
    assert groups.held_units_of(kinks) == [(1, 1, 0), (1, 1, 1)]
    grps, gens = groups.group_generators(net, net.theta, fwd.pre, groups.held_units_of(kinks), False)
    T = groups.tangent_matrix(net, net.theta, gens)
    assert T.shape == (net.n_params, 1)
    assert np.linalg.matrix_rank(np.column_stack([groups.rescaling_tangents(net, net.theta, grps[0]),
                                                  T.toarray()])) == 3
