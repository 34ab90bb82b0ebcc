"""Flat directions (certify/secondorder/symmetry.py) checked in exact rational arithmetic.

For the translations, dead-unit coordinates, GL generators (``E_uv`` with ``u != v``: ``E^2 = 0``, so
the straight line is the group orbit itself) and first-layer partly-dead directions the loss is
*exactly* constant along ``theta + t v`` for small rational ``t`` -- tests/exact.py evaluates it.
Rescaling orbits are checked along their exact flow ``(1 + t) w, (1 + t)^-1 a``. A null vector of
the Jacobian that no family spans (a rank-deficient product of linear layers) must stay unexplained.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from certify.data import Dataset, Problem
from certify.network import Network
from certify.secondorder.symmetry import jacobian_null_report, symmetry_vectors
from tests import exact


def _net(seed: int):
    """2 inputs, layer 1 with an always-active pair, a partly dead unit and a dead unit, layer 2 of two
    always-active units, 2 outputs; dyadic data with no pre-activation at 0."""
    rng = np.random.default_rng(seed)
    X = np.array([[1.5, 0.5], [1.5, -1.0], [-1.0, 1.0], [0.5, -1.5], [-1.5, -0.5], [0.0, 1.5]])
    X[:, 1] += rng.integers(-2, 3, size=6) / 4
    W1 = np.array([[0.25, 0.5], [-0.5, 0.25], [1.0, 0.0], [0.5, 0.5]])
    b1 = np.array([4.0, 5.0, -1.25, -20.0])    # units 0, 1 always active, 2 active on two samples, 3 dead
    W2 = rng.integers(1, 3, size=(2, 4)).astype(float)
    b2 = np.array([1.0, 2.0])
    W3 = rng.choice([-1.0, 1.0, 2.0], size=(2, 2))
    b3 = np.zeros(2)
    y = rng.integers(-2, 3, size=(6, 2)).astype(float)
    z1 = X @ W1.T + b1
    assert np.all(z1[:, :2] > 0) and np.all(z1[:, 3] < 0) and np.any(z1[:, 2] > 0) and np.any(z1[:, 2] < 0)
    assert np.all(z1 != 0)
    return [(W1, b1), (W2, b2), (W3, b3)], X, y


def _exact_loss_along(layers, X, y, v, t):
    flat = exact.flatten([([[Fraction(float(a)) for a in row] for row in W], [Fraction(float(a)) for a in b])
                          for W, b in layers])
    shapes = [W.shape for W, _ in layers]
    point = exact.unflatten([th + t * Fraction(float(vi)) for th, vi in zip(flat, v)], shapes)
    Xq = [tuple(Fraction(float(a)) for a in row) for row in X]
    yq = [tuple(Fraction(float(a)) for a in row) for row in y]
    return exact.loss(point, Xq, yq, "relu", "square")


@pytest.mark.parametrize("seed", range(4))
def test_every_straight_family_is_exactly_flat(seed):
    layers, X, y = _net(seed)
    net = Network([W for W, _ in layers], [b for _, b in layers], "relu")
    problem = Problem(net, Dataset(X, y), "square")
    fwd = net.forward(X, with_scale=True)
    T, counts = symmetry_vectors(problem, fwd, with_labels=True)
    assert counts["gl"] >= 2 and counts["partly_dead"] >= 1 and counts["dead_units"] == 1
    assert counts["translations"] >= 4
    L0 = _exact_loss_along(layers, X, y, np.zeros(problem.n_params), Fraction(0))
    for k, label in enumerate(counts["labels"]):
        v = T[:, k].toarray().ravel()
        if label == "orbit":
            continue                      # not a straight line: its flow is checked below
        if label == "partly_dead":
            # a float basis of an exact null space: make it exact (the null space of [X_A 1] for unit 2
            # is one-dimensional, spanned by the cross product of its two rows) before the exact check
            w0, _ = net.offsets[0]
            A = X[X[:, 0] > 1.25]
            r1, r2 = np.append(A[0], 1.0), np.append(A[1], 1.0)
            nv = np.cross(r1, r2)
            assert abs(abs(nv @ v[[w0 + 4, w0 + 5, 10]]) - np.linalg.norm(nv)) < 1e-12 * np.linalg.norm(nv)
            v = np.zeros_like(v)
            v[[w0 + 4, w0 + 5, 10]] = nv
        assert _exact_loss_along(layers, X, y, v, Fraction(1, 64)) == L0, label


def test_rescaling_flow_is_exactly_flat():
    layers, X, y = _net(0)
    Xq = [tuple(Fraction(float(a)) for a in row) for row in X]
    yq = [tuple(Fraction(float(a)) for a in row) for row in y]
    q = [([[Fraction(float(a)) for a in row] for row in W], [Fraction(float(a)) for a in b]) for W, b in layers]
    L0 = exact.loss(q, Xq, yq, "relu", "square")
    c = Fraction(5, 4)
    (W1, b1), (W2, b2), rest = q[0], q[1], q[2]
    W1s = [[c * a for a in W1[2]] if i == 2 else row for i, row in enumerate(W1)]
    b1s = [c * b if i == 2 else b for i, b in enumerate(b1)]
    W2s = [[a / c if j == 2 else a for j, a in enumerate(row)] for row in W2]
    assert exact.loss([(W1s, b1s), (W2s, b2), rest], Xq, yq, "relu", "square") == L0


def test_units_on_kinks_get_no_translation_or_gl():
    """A unit with a kink (a pre-activation exactly 0) is not one-slope: no translation, no GL."""
    W1 = np.array([[1.0], [1.0]])
    b1 = np.array([0.0, 5.0])                    # unit 0 has a kink at x = 0
    net = Network([W1, np.array([[1.0, 1.0]])], [b1, np.array([0.0])], "relu")
    X = np.array([[0.0], [1.0], [2.0]])
    problem = Problem(net, Dataset(X, np.array([0.0, 1.0, 3.0])), "square")
    T, counts = symmetry_vectors(problem, net.forward(X, with_scale=True))
    assert counts["translations"] == 1 and counts["gl"] == 0 and counts["partly_dead"] == 0


def test_rank_deficient_linear_product_is_not_explained():
    """Identity 2-1-2 at theta = 0 (GT-15's mechanism, two outputs): the Jacobian's null space has
    directions in the fibre of W2 W1 = 0 that no reparametrisation family spans."""
    net = Network([np.zeros((1, 2)), np.zeros((2, 1))], [np.zeros(1), np.zeros(2)], "identity")
    X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    problem = Problem(net, Dataset(X, np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])), "square")
    rep = jacobian_null_report(problem, net.forward(X, with_scale=True))
    assert rep is not None and rep["unexplained"] > 0
