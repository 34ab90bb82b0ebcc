"""Cell convexity with weight decay (certify/secondorder/cell.py): the group-lasso lower bound.

The answers are hand-derived (the construction below) and checked by an exact brute-force probe.
"""

from __future__ import annotations

import json

import numpy as np

import certify
from certify.data import Dataset, Problem
from certify.network import Activation, Network

# ------------------------------------------------------------------------------------------------
# Cell convexity with weight decay (certify/secondorder/cell.py): the group-lasso lower bound
# ------------------------------------------------------------------------------------------------
# Hand construction: f(x) = a relu(w x + b) + c at (w, b, a, c) = (1, 0, 1, 0), lambda = 1/8, n = 5,
# x = (-1, 0, 1, 2, 3), residuals r = f - y = (-1/8, 1/4, 1/8, 0, -1/4), so y = (1/8, -1/4, 7/8, 2, 13/4).
# Stationarity (n lambda = 5/8): c: sum r = 0 = -n lambda c; a: sum_{x>0} r x = 1/8 - 3/4 = -5/8 = -n lambda a;
# w: a sum_{x>0} r x = -5/8 = -n lambda w; b: a (sum_{x>0} r + s r_0) = -1/8 + s/4 = 0 at s = 1/2, the
# multiplier of the kink at x = 0 (z = b = 0), interior, and convex (a r_0 = 1/4 > 0). Balanced:
# a^2 = w^2 + b^2 = 1.
WD_MODEL = {"W1": [[1.0]], "b1": [0.0], "W2": [[1.0]], "b2": [0.0]}
WD_X = np.array([[-1.0], [0.0], [1.0], [2.0], [3.0]])
WD_Y = np.array([0.125, -0.25, 0.875, 2.0, 3.25])


def test_weight_decay_minimum_at_a_kink_is_certified_by_cell_convexity():
    report = certify.check(WD_MODEL, WD_X, WD_Y, loss="square", weight_decay=0.125)
    assert report.verdict.value == "local_min"
    assert report.flags["method"] == "cell_convexity" and report.claim["level"] == "exact"
    assert report.second_order["certificate"]["conditions"]["weight_decay"] == 0.125
    d = json.loads(json.dumps(report.to_dict(), default=str))
    assert certify.verify(d, WD_MODEL, WD_X, WD_Y).ok
    # the independent evidence: no exact decrease along any probed direction at three radii
    from fractions import Fraction as Q

    from tests import exact
    layers = [([[Q(1)]], [Q(0)]), ([[Q(1)]], [Q(0)])]
    y = [Q(1, 8), Q(-1, 4), Q(7, 8), Q(2), Q(13, 4)]
    res = exact.probe(layers, [[Q(-1)], [Q(0)], [Q(1)], [Q(2)], [Q(3)]], y, "relu", "square", Q(1, 8),
                      radii=(Q(1, 100), Q(1, 10 ** 3), Q(1, 10 ** 5)), n_random=60)
    assert res.min_difference >= 0


def test_weight_decay_with_a_collapsed_unit_is_out_of_the_cell_theorem():
    """Add a collapsed unit (all its weights 0): the point stays exactly stationary, and the escape of the
    collapsed unit along the active unit's direction v = (w, b) = (1, 0) has ||Psi(v)|| = lambda |v| exactly
    (Psi(v) = (1/n) sum r_i relu(x_i) = -lambda a by the a-equation): curvature 0, so the cell theorem
    must not apply (it needs every output weight nonzero)."""
    from certify.secondorder import cell
    net = Network((np.array([[1.0], [0.0]]), np.array([[1.0, 0.0]])), (np.zeros(2), np.zeros(1)),
                  Activation.parse("relu"))
    problem = Problem(net, Dataset(WD_X, WD_Y), "square", 0.125)
    assert "output weight nonzero" in cell.one_hidden_layer_applies(problem)
    r = net(WD_X)[:, 0] - WD_Y
    psi = np.mean(r * np.maximum(WD_X[:, 0], 0.0))
    assert abs(psi) == 0.125          # = lambda |v|, exactly (dyadic arithmetic)
    report = certify.check({"W1": [[1.0], [0.0]], "b1": [0.0, 0.0], "W2": [[1.0, 0.0]], "b2": [0.0]}, WD_X, WD_Y,
                           loss="square", weight_decay=0.125)
    assert report.flags.get("method") != "cell_convexity"
