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
    # the escape search finds the split direction and says why it cannot decide (not "outweighed")
    assert report.verdict.value == "inconclusive" and "curvature 0 at best" in report.reason


def _loss(theta, d, h, X, y, lam, loss):
    """The training loss in plain numpy (independent of certify): one hidden ReLU layer, scalar output."""
    W1 = theta[:h * d].reshape(h, d)
    b1 = theta[h * d:h * d + h]
    a = theta[h * d + h:h * d + 2 * h]
    f = np.maximum(X @ W1.T + b1, 0.0) @ a + theta[-1]
    data = 0.5 * np.mean((f - y) ** 2) if loss == "square" else np.mean(np.logaddexp(0.0, -y * f))
    return data + lam / 2 * theta @ theta


def test_weight_decay_cell_certificates_survive_a_random_probe(monkeypatch):
    """Polished points of small weight-decay nets, decided with the cell theorem first: wherever it says
    local_min, 400 random directions at three radii find no lower loss (an independent evaluation)."""
    import certify.secondorder as so
    from certify.driver import check_problem, polish_problem
    from certify.secondorder import cell, zero_loss
    monkeypatch.setattr(so, "KINDS", (zero_loss, cell))
    certified = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        d, h, n, lam = 2, 3, 14, 0.02
        X = rng.normal(size=(n, d))
        loss = ("square", "logistic")[seed % 2]
        y = np.sin(X[:, 0]) + X[:, 1] if loss == "square" else np.where(X[:, 0] * X[:, 1] > -0.2, 1.0, -1.0)
        W1, b1 = rng.normal(size=(h, d)), rng.normal(size=h) * 0.3
        a = rng.choice([-1.0, 1.0], size=h) * (np.abs(W1).sum(axis=1) + 0.3)
        net = Network((W1, a[None, :]), (b1, np.zeros(1)), Activation.parse("relu"))
        from scipy.optimize import minimize         # trained first by scipy (finite-difference L-BFGS)
        trained = minimize(_loss, net.theta, args=(d, h, X, y, lam, loss), method="L-BFGS-B").x
        net = net.with_theta(trained)
        problem = Problem(net, Dataset(X, y), loss, lam)
        pol = polish_problem(problem, time_limit=5.0, budget_s=20.0)
        at = Problem(net.with_theta(pol.theta), Dataset(X, y), loss, lam)
        report = check_problem(at, time_limit=20.0)
        if report.verdict.value != "local_min" or report.flags.get("method") != "cell_convexity":
            continue
        certified += 1
        th = at.theta
        L0 = _loss(th, d, h, X, y, lam, loss)
        for r in (1e-2, 1e-3, 1e-4):
            for _ in range(400):
                u = rng.normal(size=th.size)
                assert _loss(th + r * u / np.linalg.norm(u), d, h, X, y, lam, loss) >= L0 - 1e-13, (seed, r)
    assert certified >= 4, certified
