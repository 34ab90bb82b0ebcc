"""The polisher (certify/polish.py): where it goes, how far, and that it never goes uphill.

Expected answers are derived independently of the tool:

* GT-7 / GT-16 (REFERENCES.md): the exact minimum sets are known in closed form (the rescaling
  orbits ``(s, -s, 1/s, 0)`` and ``(2s, -2s/3, 1/s, 0)``), so the distance from a perturbed start to
  the nearest exact minimum is a one-variable minimisation solved here by its quartic;
* KKT points of deeper and multi-output nets are checked in exact rational arithmetic
  (tests/exact.py): held pre-activations are zero, the loss is stationary along the kink manifold
  (central differences in Fractions) and grows to first order off every held kink (one-sided
  differences in Fractions);
* rescaling leaves the network function unchanged, so the nearest representative of a rescaled
  checkpoint is the checkpoint itself.
"""

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certify.data import Dataset, Problem
from certify.network import Network
from certify.polish import PolishResult, nearest_rescaling, polish, polish_point
from certify.progress import reporting_details
from tests import exact
from tests.helpers import adam


def scalar_net(w, b, a, c, activation="relu") -> Network:
    return Network([np.array([[w]]), np.array([[a]])], [np.array([b]), np.array([c])], activation)


def exact_loss(problem: Problem, theta) -> Fraction:
    """The loss at ``theta`` (floats taken exactly) by the independent oracle tests/exact.py."""
    layers = [([[exact.as_fraction(v) for v in row] for row in W], [exact.as_fraction(v) for v in b])
              for W, b in problem.network.split(np.asarray(theta, dtype=np.float64))]
    X = [[exact.as_fraction(v) for v in row] for row in problem.X]
    y = problem.data.y
    if problem.loss.name in ("multiclass_hinge", "cross_entropy"):
        y = [int(v) for v in y]
    elif np.ndim(y) == 2:
        y = [[exact.as_fraction(v) for v in row] for row in y]
    else:
        y = [exact.as_fraction(v) for v in y]
    act = problem.network.activation
    act = ("leaky_relu", Fraction(act.alpha)) if act.name == "leaky_relu" else act.name
    return exact.loss(layers, X, y, act, problem.loss.name, Fraction(problem.weight_decay))


# ---------------------------------------------------------------------------- GT-7 recipe
GT7_X = np.array([[0.0], [1.0], [2.0], [3.0]])
GT7_Y = np.array([0.5, -1.0, 2.0, 1.5])


def test_gt7_off_its_kink_returns_to_the_kink_manifold():
    """REFERENCES.md recipe: GT-7 with w = 1 + 1e-7 (x = 1 off its kink by 1e-7).

    The minima near GT-7 are exactly the orbit (s, -s, 1/s, 0) (strict modulo symmetry). Its point
    nearest (1 + e, -1, 1, 0) minimises (s - 1 - e)^2 + (s - 1)^2 + (1/s - 1)^2, i.e. s = 1 + e/3 +
    O(e^2), at distance sqrt(2/3) e = 8.16e-8 -- a little more than the 7.07e-8 = e/sqrt(2) to the
    kink manifold b = -w that REFERENCES quotes (that point is on the kink but not a minimum: its
    a w = 1 + e/2 != 1). The kink is held with multiplier 1/2: L'(theta; d) = (1/8)|dw + db| gives
    -1/8 + (1/4) lambda = 0 (mean loss; the adjoint at x = 1 is 1/4).
    """
    eps = 1e-7
    problem = Problem(scalar_net(1 + eps, -1.0, 1.0, 0.0), Dataset(GT7_X, GT7_Y), "square")
    res = polish(problem)
    w, b, a, c = res.theta
    assert res.converged, res.reason
    assert res.distance == pytest.approx(np.sqrt(2.0 / 3.0) * eps, rel=1e-6)
    assert res.distance >= eps / np.sqrt(2.0)
    assert abs(w + b) <= 4 * np.finfo(float).eps                 # x = 1 exactly on its kink
    assert a * w == pytest.approx(1.0, abs=1e-13) and abs(c) <= 1e-13
    assert res.kinks_held == [("unit", 1, 1, 0)]
    assert res.multipliers[0] == pytest.approx(0.5, abs=1e-9)
    assert res.multiplier_margin == pytest.approx(0.5, abs=1e-9)
    assert exact_loss(problem, res.theta) <= exact_loss(problem, problem.theta)


def test_gt7_exactly_at_the_minimum_does_not_move():
    problem = Problem(scalar_net(1.0, -1.0, 1.0, 0.0), Dataset(GT7_X, GT7_Y), "square")
    res = polish(problem)
    assert res.converged and res.distance == 0.0 and res.loss_gap == 0.0


# ---------------------------------------------------------------------------- GT-16
GT16_X = np.array([[0.0], [1.0], [2.0], [3.0]])
GT16_Y = np.array([0.0, 1.0, 4.0, 5.0])


def gt16_orbit_distance(t) -> float:
    """Distance from ``t`` to the exact minimum set {(2s, -2s/3, 1/s, 0) : s > 0} of GT-16.

    d/ds of (2s - t0)^2 + (2s/3 + t1)^2 + (1/s - t2)^2, times s^3 / 2, is the quartic
    (40/9) s^4 - (2 t0 - 2 t1 / 3) s^3 + t2 s - 1; the nearest point is at one of its positive roots.
    """
    roots = np.roots([40.0 / 9.0, -(2 * t[0] - 2 * t[1] / 3), 0.0, t[2], -1.0])
    s = roots.real[(np.abs(roots.imag) <= 1e-12) & (roots.real > 0)]
    return float(min(np.linalg.norm(np.array([2 * v, -2 * v / 3, 1 / v, 0.0]) - t) for v in s))


@pytest.mark.parametrize("delta", [1e-3, 1e-6, 1e-9])
def test_gt16_perturbed_returns_to_the_exact_minimum(delta):
    theta = np.array([2.0, -2.0 / 3.0, 1.0, 0.0])
    u = np.random.default_rng(0).standard_normal(4)
    start = theta + delta * u / np.linalg.norm(u)
    problem = Problem(scalar_net(*start), Dataset(GT16_X, GT16_Y), "square")
    res = polish(problem)
    assert res.converged, res.reason
    assert res.kinks_held == []                                # a differentiable minimum
    assert gt16_orbit_distance(res.theta) <= 1e-12             # on the exact minimum set
    # the representative nearest the start: it moved exactly as far as the minimum set is
    assert res.distance == pytest.approx(gt16_orbit_distance(start), rel=1e-6, abs=1e-14)
    assert res.distance <= delta * (1 + 1e-9)
    assert res.loss_after <= res.loss_before


# ---------------------------------------------------------------------------- KKT, exactly
def trained(widths, loss, n_out, seed, *, n=30, steps=3000) -> Problem:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, widths[0]))
    y = np.column_stack([np.abs(X[:, 0]) - X[:, -1], X[:, 0] * X[:, -1]])[:, :n_out]
    net = Network([rng.standard_normal((b, a)) / np.sqrt(a) for a, b in itertools.pairwise(widths)],
                  [0.1 * rng.standard_normal(b) for b in widths[1:]], "relu")
    return adam(Problem(net, Dataset(X, y[:, 0] if n_out == 1 else y), loss), steps)


def exact_preactivation(problem, theta, layer, sample, unit) -> Fraction:
    return _z_exact(problem, [Fraction(float(v)) for v in theta], layer, sample, unit)


def exact_kink_rows(problem, theta, kinks, h=Fraction(1, 10**30)) -> np.ndarray:
    """Gradients of the held pre-activations by central differences in exact arithmetic (a
    pre-activation is a polynomial in theta on its piece: the O(h^2) error is ~1e-60)."""
    p = theta.size
    rows = np.zeros((len(kinks), p))
    base = [Fraction(v) for v in theta]
    for j in range(p):
        up, down = list(base), list(base)
        up[j] += h
        down[j] -= h
        for k, (_, l, i, u) in enumerate(kinks):
            rows[k, j] = float((_z_exact(problem, up, l, i, u) - _z_exact(problem, down, l, i, u)) / (2 * h))
    return rows


def _z_exact(problem, theta_frac, layer, sample, unit) -> Fraction:
    net = problem.network
    pos, layers = 0, []
    for W in net.weights:
        n_out, n_in = W.shape
        Wf = [theta_frac[pos + r * n_in:pos + (r + 1) * n_in] for r in range(n_out)]
        pos += n_out * n_in
        layers.append((Wf, theta_frac[pos:pos + n_out]))
        pos += n_out
    x = [exact.as_fraction(v) for v in problem.X[sample]]
    for l, (W, b) in enumerate(layers, start=1):
        z = [sum((w * xv for w, xv in zip(row, x)), Fraction(0)) + bj for row, bj in zip(W, b)]
        if l == layer:
            return z[unit]
        x = [v if v > 0 else Fraction(0) for v in z]
    raise AssertionError("no such layer")


def assert_exact_kkt(problem: Problem, res: PolishResult, *, h=Fraction(1, 10**7)):
    """Held kinks at zero, stationarity along the kink manifold, first-order growth off it."""
    theta = res.theta
    kinks = [k for k in res.kinks_held if k[0] == "unit"]
    assert len(kinks) == len(res.kinks_held), "loss ties are checked through the loss itself"
    for _, l, i, u in kinks:                                  # held pre-activations vanish
        z = exact_preactivation(problem, theta, l, i, u)
        assert abs(float(z)) <= 1e-14 * (1 + float(np.abs(theta).max()))
    A = exact_kink_rows(problem, theta, kinks) if kinks else np.zeros((0, theta.size))
    # tangent directions: orthogonal to the held rows (and to nothing else: symmetries are tangent too)
    Z = np.linalg.svd(A)[2][len(kinks):].T if kinks else np.eye(theta.size)
    L0 = exact_loss(problem, theta)
    scale = float(np.abs(theta).max()) + 1
    rng = np.random.default_rng(1)
    for _ in range(4):
        d = Z @ rng.standard_normal(Z.shape[1])
        d /= np.linalg.norm(d)
        lp = exact_loss(problem, theta + float(h) * d)
        lm = exact_loss(problem, theta - float(h) * d)
        slope = float((lp - lm) / (2 * h))
        assert abs(slope) <= 1e-6 * scale, slope           # stationary along the manifold
    for k in range(len(kinks)):                               # and the loss grows off every kink
        n = np.linalg.pinv(A)[:, k]
        n /= np.linalg.norm(n)
        for sign in (1.0, -1.0):
            rise = exact_loss(problem, theta + sign * float(h) * n) - L0
            assert rise > 0, (kinks[k], sign, float(rise))


def test_deep_net_converges_to_an_exact_kkt_point():
    problem = trained((2, 3, 3, 1), "square", 1, seed=1)
    res = polish(problem)
    assert res.converged, res.reason
    assert res.kinks_held and res.multiplier_margin > 0.1
    assert res.reduced_gradient_relative <= 1e-12
    assert res.relative_distance <= 0.01 and res.loss_after <= res.loss_before
    assert_exact_kkt(problem, res)


@pytest.mark.parametrize("seed", [1, 2])
def test_multi_output_net_converges_to_an_exact_kkt_point(seed):
    problem = trained((2, 4, 2), "square", 2, seed=seed)
    res = polish(problem)
    assert res.converged, res.reason
    assert res.kinks_held and res.multiplier_margin > 0.05
    assert res.relative_distance <= 0.01
    assert_exact_kkt(problem, res)


def test_multi_output_absolute_loss_holds_its_ties():
    """Absolute loss, two outputs: residuals held at exactly 0 with interior simplex weights."""
    problem = trained((2, 3, 2), "absolute", 2, seed=2)
    res = polish(problem)
    assert res.converged, res.reason
    ties = [k for k in res.kinks_held if k[0] == "tie"]
    assert ties and res.multiplier_margin > 0
    F = problem.network.with_theta(res.theta)(problem.X)
    for _, i, g, _, _ in ties:                                # f_g(x_i) = y_ig to rounding
        assert abs(F[i, g] - problem.Y[i, g]) <= 1e-14 * (1 + abs(problem.Y[i, g]))
    assert exact_loss(problem, res.theta) <= exact_loss(problem, problem.theta)


# ---------------------------------------------------------------------------- never uphill
@st.composite
def small_problems(draw):
    loss = draw(st.sampled_from(["square", "hinge", "multiclass_hinge", "absolute", "logistic",
                                 "cross_entropy"]))
    act = draw(st.sampled_from(["relu", "leaky_relu:0.25", "abs"]))
    n_out = 3 if loss in ("multiclass_hinge", "cross_entropy") else (1 if loss in ("hinge", "logistic")
                                                                       else draw(st.integers(1, 2)))
    depth = draw(st.integers(1, 2))
    widths = [2] + [draw(st.integers(1, 3)) for _ in range(depth)] + [n_out]
    seed = draw(st.integers(0, 2**16))
    wd = draw(st.sampled_from([0.0, 0.0, 1e-2]))
    rng = np.random.default_rng(seed)
    n = 10
    X = rng.standard_normal((n, 2))
    if loss in ("hinge", "logistic"):
        y = np.where(X[:, 0] * X[:, 1] > 0, 1.0, -1.0)
    elif loss in ("multiclass_hinge", "cross_entropy"):
        y = rng.integers(0, 3, n)
    else:
        y = rng.standard_normal((n, n_out))
    net = Network([rng.standard_normal((b, a)) for a, b in itertools.pairwise(widths)],
                  [rng.standard_normal(b) for b in widths[1:]], act)
    return Problem(net, Dataset(X, y), loss, wd)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems())
def test_the_loss_never_goes_up(problem):
    import time
    res = polish(problem, deadline=time.perf_counter() + 0.4)
    assert res.loss_after <= res.loss_before
    losses = [h["loss"] for h in res.history]
    # a step is accepted when L goes down; the last refinement steps (below what L can resolve) may move
    # it by rounding only
    ups = [(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(losses)) if b > a + 1e-12 * max(abs(a), 1.0)]
    assert not ups, ups
    assert np.isfinite(res.theta).all() and np.isfinite(res.loss_after)


def test_a_deadline_in_the_past_returns_at_once():
    import time
    problem = trained((2, 4, 2), "square", 2, seed=3, steps=200)
    t0 = time.perf_counter()
    res = polish(problem, deadline=t0 - 1.0)
    assert time.perf_counter() - t0 < 1.0
    assert not res.converged and "time budget" in res.reason
    assert res.loss_after <= res.loss_before


def test_a_short_deadline_is_kept():
    import time
    problem = trained((3, 16, 8, 1), "square", 1, seed=0, n=200, steps=100)
    t0 = time.perf_counter()
    res = polish(problem, deadline=t0 + 0.5)
    assert time.perf_counter() - t0 < 2.0                      # one round of work at most after it
    assert res.loss_after <= res.loss_before


# ---------------------------------------------------------------------------- rescaling
def test_nearest_rescaling_undoes_a_rescaling():
    problem = trained((2, 4, 3, 1), "square", 1, seed=4, steps=300)
    theta0 = problem.theta
    net = problem.network
    layers = [(W.copy(), b.copy()) for W, b in net.split(theta0)]
    rng = np.random.default_rng(0)
    for l in range(len(layers) - 1):                          # c_j > 0 per hidden unit
        c = np.exp(rng.uniform(-1, 1, layers[l][0].shape[0]))
        layers[l] = (layers[l][0] * c[:, None], layers[l][1] * c)
        layers[l + 1] = (layers[l + 1][0] / c[None, :], layers[l + 1][1])
    scaled = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in layers])
    back = nearest_rescaling(problem, scaled, theta0)
    assert np.linalg.norm(back - theta0) <= 1e-9 * np.linalg.norm(theta0)
    assert problem.value(back) == pytest.approx(problem.value(scaled), rel=1e-13)


def test_nearest_rescaling_is_nearer_and_keeps_the_loss():
    problem = trained((2, 4, 1), "square", 1, seed=5, steps=300)
    theta0 = problem.theta
    other = trained((2, 4, 1), "square", 1, seed=5, steps=600).theta   # the same net trained on
    best = nearest_rescaling(problem, other, theta0)
    assert np.linalg.norm(best - theta0) < np.linalg.norm(other - theta0)
    assert problem.value(best) == pytest.approx(problem.value(other), rel=1e-13)


def test_the_distance_limit_is_measured_modulo_rescaling():
    """A start that is the checkpoint rescaled 8x (w = 8, v = 0.1 for w = 1, v = 0.8; the same function) is
    7.03 from it, past the limit ||theta_0|| = 1.28 after any step; modulo rescaling it is next to it.
    Samples x = 1, 2 with y = 1, 2: f = v w x there, the loss (5/4)(v w - 1)^2 (0.05 at v w = 0.8), its
    minima v w = 1, v b + c = 0; the nearest to the checkpoint is 0.148 away (b = c = 0, v = 0.91,
    w = 1/v: min over v of (1/v - 1)^2 + (v - 0.8)^2 = 0.0219). The polish must reach a minimum (loss 0)
    and report it within 0.3 of the checkpoint, not stop "far" after its first step."""
    X, y = np.array([[1.0], [2.0]]), np.array([1.0, 2.0])
    theta0 = np.array([1.0, 0.0, 0.8, 0.0])
    start = Problem(scalar_net(8.0, 0.0, 0.1, 0.0), Dataset(X, y), "square")
    assert np.linalg.norm(start.theta - theta0) > 5 * np.linalg.norm(theta0)
    res = polish(start, anchor=theta0)
    assert not res.far and res.converged
    assert res.loss_after <= 1e-20 and res.distance < 0.3


def test_weight_decay_is_not_rescaled():
    problem = Problem(scalar_net(2.0, -2.0 / 3.0, 1.0, 0.0), Dataset(GT16_X, GT16_Y), "square", 1e-3)
    res = polish(problem)
    assert not res.rescaled and res.loss_after <= res.loss_before


# ---------------------------------------------------------------------------- regressions
#: a 2-4-1 ReLU hinge net (40 samples) after 2000 Adam steps; the removed cell program moved it
#: by 2.64 (norm 8.6) to a point of the same loss (its cell's far vertex)
HINGE_THETA = [1.147315726812206, -1.1149081498009112, -2.524477052051387, 1.5510311848621017,
               1.4515241837927522, -1.4014786211460892, -2.7938161437397007, -2.7465339424690822,
               -0.3707160567339391, -0.7933945025081377, -0.4661897132676103, -2.502348187162663,
               -1.1078551174020037, -2.504972298111553, -0.8760734321594839, 5.120460914645591,
               1.0026117361794515]


def test_hinge_net_moves_little():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 2))
    y = np.where(X[:, 0] * X[:, 1] + 0.3 * rng.standard_normal(40) > 0, 1.0, -1.0)
    net = Network([np.zeros((4, 2)), np.zeros((1, 4))], [np.zeros(4), np.zeros(1)], "relu")
    problem = Problem(net.with_theta(np.array(HINGE_THETA)), Dataset(X, y), "hinge")
    res = polish(problem)
    assert res.converged, res.reason
    assert res.relative_distance <= 0.05                      # the old cell program: 0.31
    assert any(k[0] == "tie" for k in res.kinks_held)         # margins held at exactly 1
    assert exact_loss(problem, res.theta) <= exact_loss(problem, problem.theta)


def test_collapsed_units_are_set_to_zero_and_frozen():
    """Weight decay drives unused units to ~1e-27, not 0: such a unit is set to 0 and left alone."""
    problem = trained((2, 4, 1), "square", 1, seed=2, steps=300)
    theta = problem.theta.copy()
    W1, b1 = problem.network.split(theta)[0]
    W2, _ = problem.network.split(theta)[1]
    W1[0] *= 1e-27
    b1[0] *= 1e-27
    W2[0, 0] *= 1e-27
    problem = Problem(problem.network.with_theta(theta), problem.data, "square", 1e-3)
    res = polish(problem)
    W1p, b1p = problem.network.split(res.theta)[0]
    assert not np.any(W1p[0]) and b1p[0] == 0.0
    assert res.loss_after <= res.loss_before


def test_polish_never_forms_a_dense_hessian(monkeypatch):
    import certify.tangent
    monkeypatch.setattr(certify.tangent, "dense_hessian", lambda *a, **k: pytest.fail("dense Hessian"))
    problem = trained((20, 64, 32, 1), "square", 1, seed=0, n=100, steps=20)
    assert problem.n_params > 2000
    import time
    res = polish(problem, deadline=time.perf_counter() + 1.0)
    assert res.loss_after <= res.loss_before


# ---------------------------------------------------------------------------- reporting
def test_progress_details_and_json():
    import json
    problem = trained((2, 4, 2), "square", 2, seed=1)
    seen = []
    with reporting_details(lambda stage, info: seen.append((stage, info))):
        res = polish(problem)
    assert seen and seen[0][0] == "polishing"
    assert {"round", "loss", "reduced_gradient", "kinks_held"} <= set(seen[0][1])
    info = json.loads(json.dumps(res.to_dict(), default=float))
    for key in ("converged", "distance", "relative_distance", "loss_before", "loss_after", "loss_gap",
                "reduced_gradient", "reduced_gradient_relative", "kinks_held", "multipliers", "history",
                "time_s", "rounds", "reason"):
        assert key in info
    assert info["kinks_held"]["count"] == len(res.kinks_held)


def test_polish_point_keeps_the_drivers_interface():
    problem = Problem(scalar_net(1 + 1e-7, -1.0, 1.0, 0.0), Dataset(GT7_X, GT7_Y), "square")
    res = polish_point(problem, None, time_limit=5.0)
    assert isinstance(res, PolishResult) and res.converged
    assert res.distance == pytest.approx(np.sqrt(2.0 / 3.0) * 1e-7, rel=1e-6)
    assert res.to_dict()["loss_change"] <= 0


def test_unpin_units_moves_dead_and_affine_units_off_their_kinks_without_changing_the_function():
    """Hand-built: unit 1 is dead but for x = 1 on its kink (z = x - 1 on x in {0, 1}); unit 2 is
    active but for x = 0 on its kink (z = x). Lowering unit 1's bias, and raising unit 2's while
    the output bias pays it back, leaves every output unchanged and every kink strictly off 0."""
    from certify.polish.rescale import UNPIN_MARGIN, unpin_units
    X = np.array([[0.0], [1.0]])
    y = np.array([0.5, 2.0])
    net = Network([np.array([[1.0], [1.0]]), np.array([[3.0, 2.0]])],
                  [np.array([-1.0, 0.0]), np.array([0.5])], "relu")
    p = Problem(net, Dataset(X, y), "square")
    theta, moved = unpin_units(p, p.theta)
    assert sorted(moved) == [(1, 0, "dead"), (1, 1, "active")]
    q = p.at(theta)
    assert np.allclose(q.network.forward(X).output, net.forward(X).output, rtol=0, atol=1e-15)
    Z = q.network.forward(X).pre[0]
    assert np.all(Z[:, 0] < 0) and np.all(Z[:, 1] > 0)
    # margins: UNPIN_MARGIN times the largest |w||x| + |b| of the unit (2 and 1)
    assert np.isclose(Z[1, 0], -UNPIN_MARGIN * 2.0) and np.isclose(Z[0, 1], UNPIN_MARGIN * 1.0)
    with_decay = Problem(net, Dataset(X, y), "square", 1e-3)
    assert unpin_units(with_decay, with_decay.theta)[1] == []


def test_add_independent_leaves_a_new_kink_dependent_on_held_ones_unheld():
    """Hand-derived: f(x) = v relu(w x + b) + c with (w, b, v, c) = (1, 0, 1, 0) fits y = x on
    x = 1, 2, 3 exactly, so all three absolute residuals are kinks at 0. Their rows grad f(x_i) =
    (v x_i, v, relu(x_i), 1) = (x_i, 1, x_i, 1) are affine in x_i: the third is r_3 = 2 r_2 - r_1,
    dependent on the two held ones (with x_3 the largest, a pivoted factorisation of all three picks
    it first and flags a held row instead). It must cross unheld. The kink of x = -1 (y = 0, the
    unit off: row (0, 0, 0, 1)) is independent of r_1, r_2 and the rescaling gauge (1, 0, -1, 0):
    the second and fourth entries of every combination of those are equal. It is held."""
    from certify.polish.pieces import evaluate, initial_held, loss_pieces
    from certify.polish.steps import add_independent
    X = np.array([[1.0], [2.0], [3.0], [-1.0]])
    y = np.array([1.0, 2.0, 3.0, 0.0])
    p = Problem(scalar_net(1.0, 0.0, 1.0, 0.0), Dataset(X, y), "absolute")
    held = initial_held(p, None)
    held.ties[(0, 0)] = ((0, 1), 0)
    held.ties[(1, 0)] = ((0, 1), 0)
    pt = evaluate(p, p.theta, held)
    choose = loss_pieces(p, pt.fwd.output, held)[2]
    out = add_independent(p, p.theta, held, [], {(2, 0): 1}, choose, pt.gauge)
    assert set(out.ties) == {(0, 0), (1, 0)}
    out = add_independent(p, p.theta, held, [], {(2, 0): 1, (3, 0): 1}, choose, pt.gauge)
    assert set(out.ties) == {(0, 0), (1, 0), (3, 0)}


def test_independent_new_judges_new_rows_against_the_held_span_and_each_other():
    """Rows built by hand: e1, e2 held; e1 + e2 + 1e-9 e3 is within 1e-9 of their span (dependent at
    the relative threshold 1e-6); e3 is not; a second copy of e3 depends on the first."""
    import scipy.sparse as sp

    from certify.polish.steps import independent_new
    old = sp.csr_matrix(np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    new = sp.csr_matrix(np.array([[10.0, 10.0, 1e-8, 0], [0, 0, 1.0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1.0]]))
    keep = independent_new(old, new, sp.csr_matrix((0, 4)))
    assert list(keep) == [False, True, False, True]


def test_unpin_units_moves_a_leaky_unit_on_its_lower_piece_off_its_kink():
    """Hand-built, leaky ReLU with slope 0.1 below the kink: the unit z = x - 1 on x in {0, 1} is
    below its kink at x = 0 and on it at x = 1; lowering its bias by m and raising the output bias by
    0.1 * a * m keeps every output (0.1 a (x - 1 - m) + c + 0.1 a m), and puts x = 1 strictly below."""
    from certify.polish.rescale import UNPIN_MARGIN, unpin_units
    X = np.array([[0.0], [1.0]])
    y = np.array([0.5, 2.0])
    net = scalar_net(1.0, -1.0, 3.0, 0.5, "leaky_relu:0.1")
    p = Problem(net, Dataset(X, y), "square")
    theta, moved = unpin_units(p, p.theta)
    assert moved == [(1, 0, "negative")]
    q = p.at(theta)
    assert np.allclose(q.network.forward(X).output, net.forward(X).output, rtol=0, atol=1e-15)
    m = UNPIN_MARGIN * 2.0                       # the unit's largest |w||x| + |b|: 1 + 1 at x = 1
    assert np.isclose(theta[1], -1.0 - m) and np.isclose(theta[3], 0.5 + 0.1 * 3.0 * m)
    assert np.all(q.network.forward(X).pre[0] < 0)


@pytest.mark.parametrize("loss", ["hinge", "multiclass_hinge"])
def test_clear_margins_puts_a_zero_to_rounding_margin_classifier_on_its_exact_global_minimum(loss):
    """Hand-built: a margin held at 1 - 2^-52 (the loss is 2^-52 / n > 0 exactly, refutable) becomes
    >= 1 after scaling the last layer by (1 + 1e-10) / m, so the exact loss (tests/exact.py) is 0; a
    margin of 0.5 is a real loss, not rounding, and is left alone."""
    from certify.polish.rescale import clear_margins
    X = np.array([[1.0], [2.0]])
    a = 1.0 - 2.0 ** -52
    # the hidden pre-activation 2x - 3 is -1 and 1 on the two samples (identity activation)
    if loss == "hinge":   # f = -a h: margins y f = a
        y = np.array([1.0, -1.0])
        net = Network([np.array([[2.0]]), np.array([[-a]])], [np.array([-3.0]), np.array([0.0])], "identity")
    else:                 # f = (-a h / 2, a h / 2): f_y - f_other = a
        y = np.array([0, 1])
        net = Network([np.array([[2.0]]), np.array([[-a / 2], [a / 2]])], [np.array([-3.0]), np.array([0.0, 0.0])],
                      "identity")
    p = Problem(net, Dataset(X, y), loss)
    assert exact_loss(p, p.theta) > 0
    cand = clear_margins(p, p.theta)
    assert cand is not None and exact_loss(p, cand) == 0
    assert np.linalg.norm(cand - p.theta) <= 1e-9 * np.linalg.norm(p.theta)
    k = net.weights[-1].size + net.biases[-1].size
    far = Problem(net.with_theta(np.concatenate([p.theta[:-k], 0.5 * p.theta[-k:]])), Dataset(X, y), loss)
    assert clear_margins(far, far.theta) is None


def test_polish_does_not_move_a_separating_cross_entropy_point_without_weight_decay():
    """Hand-derived: with f(x) = (-10 h, 10 h), h = 2x - 3 = -1, 1 on the two samples (classes 0, 1),
    each sample's cross-entropy is log(1 + e^-20) ~ 2e-9 < log(2) / 2: every point with a lower loss
    classifies both samples correctly, where scaling the outputs lowers the loss -- no minimum below,
    so the polish must not walk off towards infinity. With the outputs 100 times smaller (loss
    log(1 + e^-0.2) ~ 0.6 > log(2) / 2) or with weight decay the argument does not apply."""
    import certify
    X = np.array([[1.0], [2.0]])
    y = np.array([0, 1])

    def net(s):
        return Network([np.array([[2.0]]), np.array([[-s], [s]])], [np.array([-3.0]), np.array([0.0, 0.0])],
                       "identity")
    p = Problem(net(10.0), Dataset(X, y), "cross_entropy")
    res = polish(p)
    assert res.no_minimum and res.distance == 0.0 and np.array_equal(res.theta, p.theta)
    assert not polish(Problem(net(0.1), Dataset(X, y), "cross_entropy"), max_rounds=1).no_minimum
    assert not polish(Problem(net(10.0), Dataset(X, y), "cross_entropy", 1e-3), max_rounds=1).no_minimum
    report = certify.check(net(10.0), X, y, activation="identity", loss="cross_entropy", polish=True, time_limit=30)
    assert report.verdict.value == "not_stationary" and report.refutation["kind"] == "output_scaling"
    assert report.trained["outcome"] == "not_converged" and report.trained["distance"] == 0.0


def test_polish_point_stops_judging_once_the_polish_walked_past_max_distance():
    """Hand-derived: f(x) = (-s h, s h), h = 2x - 3 = -1, 1 on two samples of classes 0, 1 (identity
    activation), s = 0.1: both samples are classified correctly, so the cross-entropy
    2 log(1 + e^-2s) / 2 falls for ever as the last layer grows, and its loss ~0.6 is above log(2)/2
    (the unmoved case does not apply). The polish walks off along the last layer until it is further
    than the limit (MAX_DISTANCE = 2 times the checkpoint's norm); judging and descending again would only
    carry it further: the judge is never called, and the distance stays within a trust-region step of it."""
    X = np.array([[1.0], [2.0]])
    y = np.array([0, 1])
    net = Network([np.array([[2.0]]), np.array([[-0.1], [0.1]])], [np.array([-3.0]), np.array([0.0, 0.0])],
                  "identity")
    p = Problem(net, Dataset(X, y), "cross_entropy")
    assert p.value() > np.log(2.0) / 2
    calls = []

    def judge(problem, limit):
        calls.append(problem)
        raise AssertionError("judged a point past max_distance")
    res = polish_point(p, judge, budget_s=60.0)
    assert res.far and not calls
    assert p.value(res.theta) < p.value()
    norm0 = float(np.linalg.norm(p.theta))
    from certify.polish.limits import MAX_DISTANCE
    assert MAX_DISTANCE == 2.0 and 2.0 * norm0 < res.distance <= 3.0 * norm0


def test_a_kink_whose_multiplier_leaves_its_interval_is_released_before_its_face_is_solved():
    """The dual test of active-set methods (certify/polish/multipliers.py, ``RELEASE_RATIO``).

    One ReLU unit, x = (1, 2, 3, 0), y = (0, 1, 2, 3), sample x = 1 on its kink (b = -w). On the
    face, f = c + s (x - 1) on the active samples and c on the dead one; least squares by hand:
    4c + 3s = 6, 3c + 5s = 5, so c = 15/11, s = 2/11 and the residuals are (15, 6, -3, -18) / 11.
    The kink is convex (a r_1 > 0), and moving it right (w and b down by h, sample 1 goes dead)
    changes the loss at the rate -(1/4)(r_2 * 3 + r_3 * 4) = -3/22: its multiplier lies outside its
    interval. With c off its optimum by 1e-5 the face's reduced gradient is not zero (~1e-5), but the
    kink promises a far steeper descent, so it is released to the side that descends, now; the old
    rule waited for the face to be solved to 1e-7 -- which on a face without a nearby minimum never
    happens (a deep diabetes net crept 500 rounds with its multipliers 1e-2 out of their intervals).
    """
    from certify.polish.limits import TOL_FACE
    from certify.polish.multipliers import stationarity
    from certify.polish.pieces import initial_held
    c, s = 15 / 11, 2 / 11
    problem = Problem(scalar_net(s, -s, 1.0, c + 1e-5), Dataset(np.array([[1.0], [2.0], [3.0], [0.0]]),
                                                                  np.array([0.0, 1.0, 2.0, 3.0])), "square")
    theta = problem.theta
    h = Fraction(1, 10**6)
    step = [exact.as_fraction(v) for v in theta]
    step[0] -= h
    step[1] -= h
    rate = (exact_loss(problem, step) - exact_loss(problem, theta)) / h
    assert abs(float(rate) + 3 / 22) < 1e-4                     # the hand rate, in exact arithmetic
    held = initial_held(problem, 0.0)
    assert held.units[0][0, 0] and held.n_total == 1
    st = stationarity(problem, theta, held)
    assert st.red_rel > TOL_FACE                                 # the face is not solved ...
    assert not st.held.units[0][0, 0]                            # ... and the kink is released
    assert st.held.side[0][0, 0] == -1                           # to the side that descends


def test_a_zero_unit_is_not_held_at_its_n_kinks():
    """A zero unit (incoming weights and bias exactly 0, as a previous polish leaves a collapsed unit
    under weight decay) has z = 0 on every sample, but it is inert: its coordinates are frozen, so its
    kinks are not held -- a restart of the polish from such a point held all n of them (4,343 rows on a
    digits net, 5 s a round instead of 0.3). A unit with a kink at one sample by hand (w x + b = 0 at
    x = 1 with w = 1, b = -1) is still held there, and only there."""
    from certify.polish.pieces import initial_held
    net = Network([np.array([[1.0], [0.0]]), np.array([[1.0, 0.5]])], [np.array([-1.0, 0.0]), np.array([0.0])],
                  "relu")
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    problem = Problem(net, Dataset(X, np.array([0.0, 0.0, 1.0, 2.0])), "square", weight_decay=1e-3)
    assert np.all(problem.network.forward(X).pre[0][:, 1] == 0)       # the zero unit: z = 0 everywhere
    held = initial_held(problem, 0.0)
    assert held.units[0][:, 0].tolist() == [False, True, False, False]
    assert not held.units[0][:, 1].any() and held.n_total == 1


def _polish_point_starts(monkeypatch, problem, verdict, refutation, max_rounds=2):
    """The points polish_point starts each polish from (each polish stubbed to stop at once) when its
    judge always answers ``verdict`` with ``refutation``."""
    from certify.polish import method
    from certify.report import Report
    starts = []
    real = method.polish

    def stub(prob, **kw):
        starts.append(prob.theta.copy())
        return real(prob, max_rounds=0, **{k: v for k, v in kw.items() if k != "max_rounds"})

    def judge(prob, limit):
        rep = Report.__new__(Report)
        rep.verdict, rep.refutation = verdict, refutation
        return rep
    monkeypatch.setattr(method, "polish", stub)
    monkeypatch.setattr(method, "_homotopy_worth_it", lambda *a: False)   # (the stub's polishes stop short)
    method.polish_point(problem, judge, budget_s=30.0, max_rounds=max_rounds)
    return starts


def test_polish_point_follows_a_descent_the_judge_could_not_verify(monkeypatch):
    """The judge found a descent direction but could not verify a decrease (no step: the next kink
    too close for float64). polish_point probes along it from a step at rounding size and polishes
    again from the lowest point -- here a smooth square-loss net (identity activation, f = a (w x + b)
    + c on x = 0, 1, 2 with y = 0, 1, 0) judged at its start, where -grad L is a descent by hand:
    the next polish starts lower, on the ray from the polished point along that direction."""
    from certify.report import Verdict

    p = Problem(scalar_net(1.0, 0.0, 1.0, 0.0, "identity"), Dataset(np.array([[0.0], [1.0], [2.0]]),
                                                                     np.array([0.0, 1.0, 0.0])), "square")
    r = np.array([0.0, 1.0, 2.0]) - np.array([0.0, 1.0, 0.0])       # f - y with f = x
    x = np.array([0.0, 1.0, 2.0])
    grad = np.array([np.mean(r * x), np.mean(r), np.mean(r * x), np.mean(r)])   # d/dw, d/db, d/da, d/dc
    fd = np.array([(p.value(p.theta + 1e-6 * e) - p.value(p.theta - 1e-6 * e)) / 2e-6 for e in np.eye(4)])
    assert np.allclose(grad, fd, atol=1e-8)                           # the hand gradient
    starts = _polish_point_starts(monkeypatch, p, Verdict.INCONCLUSIVE, {
        "kind": "descent_direction", "direction": -grad, "step": None, "verified": False})
    assert len(starts) == 2
    assert p.value(starts[1]) < p.value(starts[0])
    moved = starts[1] - starts[0]
    assert np.allclose(moved / np.linalg.norm(moved), -grad / np.linalg.norm(grad))



def test_polish_point_goes_on_from_a_saddle_refuted_only_within_rounding(monkeypatch):
    """A "saddle" whose escape lives within rounding distance of the point (a descent at t = 1e-20: a
    kink next to the polished point) is no end point: polish_point polishes on along it (the same
    smooth net as above, where -grad L is a descent by hand); a saddle whose escape leaves rounding
    distance ends the rounds. The driver's trained answer says the first is no certified end point."""
    from certify.driver import trained_answer
    from certify.report import Report, Verdict

    p = Problem(scalar_net(1.0, 0.0, 1.0, 0.0, "identity"), Dataset(np.array([[0.0], [1.0], [2.0]]),
                                                                     np.array([0.0, 1.0, 0.0])), "square")
    r, x = np.array([0.0, 0.0, 2.0]), np.array([0.0, 1.0, 2.0])      # f - y with f = x
    grad = np.array([np.mean(r * x), np.mean(r), np.mean(r * x), np.mean(r)])

    def run(step):
        ref = {"kind": "descent_curve", "direction": -grad, "step": step, "verified": True}
        rep = Report.__new__(Report)
        rep.verdict, rep.refutation = Verdict.SADDLE, ref
        return _polish_point_starts(monkeypatch, p, Verdict.SADDLE, ref), rep

    starts, rep = run(1e-20)
    assert len(starts) == 2 and p.value(starts[1]) < p.value(starts[0])
    rep.claim, rep.polish = None, {"converged": False}
    answer = trained_answer(p, starts[1], rep)
    assert answer["outcome"] == "not_converged" and answer["end_certified"] is False
    assert "within rounding distance" in answer["summary"]
    from certify.report import next_steps
    rep.trained = answer                 # the CLI's next steps do not offer --escape to such a point
    assert not any("--escape" in step for step in next_steps(rep, "m.pt"))
    starts, rep = run(0.1)
    assert len(starts) == 1
    rep.claim, rep.polish = None, {"converged": False}
    rep.trained = trained_answer(p, p.theta + 0.1 * -grad, rep)
    assert rep.trained["end_certified"] is True
    assert any("--escape" in step for step in next_steps(rep, "m.pt"))


def test_polish_point_restarts_once_from_a_stalled_point_float64_cannot_leave(monkeypatch):
    """The judge's descent shows no lower point in float64 (here it points uphill: +grad L of the
    smooth net above, so every probe along it is higher): a polish that did not converge (the stub
    stops at once) starts again from its own end point once, with nothing held, and the rounds end
    when that restart got no lower."""
    from certify.report import Verdict

    p = Problem(scalar_net(1.0, 0.0, 1.0, 0.0, "identity"), Dataset(np.array([[0.0], [1.0], [2.0]]),
                                                                     np.array([0.0, 1.0, 0.0])), "square")
    r, x = np.array([0.0, 0.0, 2.0]), np.array([0.0, 1.0, 2.0])      # f - y with f = x
    grad = np.array([np.mean(r * x), np.mean(r), np.mean(r * x), np.mean(r)])
    starts = _polish_point_starts(monkeypatch, p, Verdict.NOT_STATIONARY, {
        "kind": "descent_direction", "direction": grad, "step": 1e-20, "verified": True})
    assert len(starts) == 2
    assert np.array_equal(starts[0], starts[1])


def test_polish_point_gives_the_judge_no_more_than_the_polish_budget_left(monkeypatch):
    """The judge's calls are part of the polishing budget: each gets at most what is left of it (a
    30 s judge started a second before the polish deadline ran 29 s past it). Here a judge that always
    refutes with a descent keeps the loop going for a budget of 0.2 s with a per-call limit of 30 s:
    every limit it is handed is at most the budget, and the loop ends."""
    from certify.polish import method
    from certify.report import Report, Verdict

    p = Problem(scalar_net(1.0, 0.0, 1.0, 0.0, "identity"), Dataset(np.array([[0.0], [1.0], [2.0]]),
                                                                     np.array([0.0, 1.0, 0.0])), "square")
    real = method.polish
    limits = []

    def stub(problem, **kw):
        return real(problem, max_rounds=0, **{k: v for k, v in kw.items() if k != "max_rounds"})

    def judge(problem, limit):
        limits.append(limit)
        rep = Report.__new__(Report)
        rep.verdict = Verdict.NOT_STATIONARY
        rep.refutation = {"kind": "descent_direction", "direction": -problem.theta, "step": 1e-3, "verified": True}
        return rep
    monkeypatch.setattr(method, "polish", stub)
    method.polish_point(p, judge, time_limit=30.0, budget_s=0.2)
    assert limits and all(0 < t <= 0.2 for t in limits)

def _nested_problem(x3: float) -> Problem:
    """tests/test_nearby.py's nested pair (hand derivation there): x3 = 1 a strict minimum with a unit
    kink under a residual kink at sample 0; x3 = 13/16 its twin, which descends at the rate 1/256
    when the unit's kink moves off sample 0 (its multiplier -56/256 is below the nested bound -55/256,
    though inside the piece's (-80/256, 0))."""
    net = Network([np.array([[1.0]]), np.array([[1.25]])], [np.array([-0.75]), np.array([0.0])], "relu")
    return Problem(net, Dataset(np.array([[0.75], [1.75], [x3], [0.0]]), np.array([0.0, 1.25, 0.0, 1.0])),
                   "absolute", weight_decay=0.125)


def test_a_unit_kink_under_a_loss_tie_is_judged_by_its_nested_multiplier():
    from certify.polish.multipliers import mixed_gamma, stationarity
    from certify.polish.pieces import initial_held
    good, twin = _nested_problem(1.0), _nested_problem(13 / 16)
    st = stationarity(good, good.theta, initial_held(good, 0.0))
    assert st.held.units[0][0, 0] and st.viol == 0.0                     # a minimum: held, consistent
    assert mixed_gamma(st.pt, st.nu)[0][0] == pytest.approx(35 / 128, rel=1e-12)   # (5/16)(7/8) by hand
    res = polish(good)
    assert res.converged and np.array_equal(res.theta, good.theta)
    st = stationarity(twin, twin.theta, initial_held(twin, 0.0), max_updates=1)     # st.pt: before releasing
    assert st.pt.keys[0] == ("unit", 1, 0, 0)
    assert mixed_gamma(st.pt, st.nu)[0][0] == pytest.approx(55 / 256, rel=1e-12)   # (5/16)(11/16)
    assert not st.held.units[0][0, 0] and st.held.side[0][0, 0] == -1    # released to the dead side
    res = polish(twin)
    assert res.loss_after < res.loss_before
    assert exact_loss(twin, res.theta) < exact_loss(twin, twin.theta)


def test_a_polish_that_stalls_hands_over_to_the_judge():
    """``_stalled``: five rounds that lower neither the loss beyond rounding nor the reduced gradient by
    half are a stall (a deep logistic net in the trained family crept 60 s at a kink the held set
    could not take); a Newton sequence whose reduced gradient falls fast, or a loss that still falls,
    is not."""
    from certify.polish.method import STALL_ROUNDS, _stalled
    flat = [{"loss": 1.0 - 1e-18 * k, "reduced_gradient": 6e-3} for k in range(STALL_ROUNDS + 1)]
    assert _stalled(flat, 1e-17)
    newton = [{"loss": 1.0, "reduced_gradient": 10.0 ** -k} for k in range(STALL_ROUNDS + 1)]
    assert not _stalled(newton, 1e-17)
    falling = [{"loss": 1.0 - 1e-6 * k, "reduced_gradient": 6e-3} for k in range(STALL_ROUNDS + 1)]
    assert not _stalled(falling, 1e-17)
    assert not _stalled(flat[:STALL_ROUNDS], 1e-17)                     # too few rounds to say
    # rounds that only held the kinks blocking their step at once (an active-set method growing its
    # working set at a fixed point) do not count: five of them between two moving rounds are no stall
    holding = [{"loss": 1.0, "reduced_gradient": 6e-3, "step": 0.0, "added": a} for a in (135, 49, 18, 4, 1)]
    assert not _stalled(flat[:2] + holding + [flat[2]], 1e-17)
    # ... but they do not hide a stall among the rounds that moved
    assert _stalled(flat[:3] + holding + flat[3:], 1e-17)


@pytest.mark.parametrize("y_dead, unheld", [(Fraction(-1, 128), True), (Fraction(-8), False)])
def test_a_step_across_many_kinks_that_the_loss_follows_is_taken_without_holding_them(y_dead, unheld):
    """``line_search`` (``CROSS_RATIO``): a step crossing more than ``MAX_ADD`` convex kinks is taken
    whole and unheld when the loss still falls by half of the model's prediction; else the kinks are
    held as before (holding every crossed kink made the rounds of deep nets ever slower).

    One ReLU unit f = relu(x + b) (w = a = 1, c = 0), n = 40: twenty active samples x = 1..20 with
    targets x + 10 (residual -10 each) and twenty dead ones x = -k/32 with targets ``y_dead`` < 0
    (convex kinks: their residual f - y = -y_dead > 0). The step is +1 in b. On the current piece
    the model's change is (20/40)(-10 + 1/2) = -19/4; the true change adds, for each dead sample
    (all cross, at t = k/32), (1/40)(1/2)((1 - k/32 - y_dead)^2 - y_dead^2). For y_dead = -1/128 the
    loss falls by 97% of the prediction: taken at t = 1, nothing held, the loss exactly the hand
    value. For y_dead = -8 only 41%: the step is not taken unheld.
    """
    from certify.polish.limits import MAX_ADD
    from certify.polish.multipliers import stationarity
    from certify.polish.pieces import initial_held
    from certify.polish.steps import line_search
    X = np.array([[float(i)] for i in range(1, 21)] + [[-k / 32] for k in range(1, 21)])
    y = np.array([i + 10.0 for i in range(1, 21)] + [float(y_dead)] * 20)
    problem = Problem(scalar_net(1.0, 0.0, 1.0, 0.0), Dataset(X, y), "square")
    theta = problem.theta
    model = Fraction(-19, 4)
    change = model + sum(Fraction(1, 80) * ((1 - Fraction(k, 32) - y_dead) ** 2 - y_dead ** 2) for k in range(1, 21))
    assert 20 > MAX_ADD
    st = stationarity(problem, theta, initial_held(problem, 0.0))
    assert st.held.n_total == 0
    x = np.array([0.0, 1.0, 0.0, 0.0])
    out = line_search(problem, st.pt, st.held, x, float(model), None, st.gamma_floor, proj=st.proj)
    theta_new, held_new, ratio, t = out
    if unheld:
        assert change / model > Fraction(1, 2)
        assert t == 1.0 and held_new.n_total == 0
        np.testing.assert_array_equal(theta_new, theta + x)
        assert exact_loss(problem, theta_new) - exact_loss(problem, theta) == change
        assert ratio == pytest.approx(float(change / model), rel=1e-12)
    else:
        assert change / model < Fraction(1, 2)
        assert t < 1.0 and held_new.n_total >= 1
        assert exact_loss(problem, theta_new) < exact_loss(problem, theta)


def test_a_concave_kink_released_max_releases_times_stays_held():
    """Anti-cycling (``MAX_RELEASES`` in certify/polish/multipliers.py) covers concave kinks too: a
    unit kink under a held absolute-loss tie, concave by its nested jump but convex to the blocking
    test (which sees the base slope), was released and held again every round until the polish
    stalled (``iris_petal_abs_sgd``, 10 rounds of the same loss).

    One ReLU unit f = relu(x - 1), x = (1, 2, 3), y = (1, 1, 2): sample x = 1 sits on its kink with
    residual -1 and the others fit exactly. Raising b by h changes the loss by ((h - 1)^2 - 1) / 6,
    rate -1/3; lowering it by h by 2 h^2 / 6, rate 0: the kink is concave (jump -1/3) and is
    released, to the + side. Once it has been released ``MAX_RELEASES`` times it stays held.
    """
    from certify.polish.limits import MAX_RELEASES
    from certify.polish.multipliers import stationarity
    from certify.polish.pieces import initial_held
    problem = Problem(scalar_net(1.0, -1.0, 1.0, 0.0), Dataset(np.array([[1.0], [2.0], [3.0]]),
                                                                  np.array([1.0, 1.0, 2.0])), "square")
    theta = problem.theta
    h = Fraction(1, 2**20)
    for sign, rate in ((1, Fraction(-1, 3)), (-1, Fraction(0))):
        step = [exact.as_fraction(v) for v in theta]
        step[1] += sign * h
        slope = (exact_loss(problem, step) - exact_loss(problem, theta)) / h
        assert abs(slope - rate) <= h                            # the hand rates, in exact arithmetic
    held = initial_held(problem, 0.0)
    assert held.units[0][0, 0] and held.n_total == 1
    st = stationarity(problem, theta, held, max_updates=1)
    assert not st.held.units[0][0, 0] and st.held.side[0][0, 0] == 1
    held.releases[("unit", 1, 0, 0)] = MAX_RELEASES
    st = stationarity(problem, theta, held, max_updates=1)
    assert st.held.units[0][0, 0]


def test_a_kink_released_twice_at_one_point_along_the_box_descent_stays_held_there():
    """Anti-cycling of the release along the box-multiplier descent (``release_along``):
    ``diabetes_sq_depth3_wd_adam``'s polish released three kinks there and held them again as
    blocking its next step at once, round after round at one point, until its 500 rounds ran out. A
    kink released ``MAX_SAME_POINT`` times at one ``theta`` now stays held there; at another point it
    is released again (``iris_petal_abs_sgd``'s polish releases kinks again and again as it moves).

    The network of the test above: the kink of sample x = 1 (row d z / d(w, b) = (1, 1)) has the
    multiplier interval [0, 1/3] (jump -1/3, by hand above); a multiplier at its upper end and a
    direction raising b (z grows) release it to the + side.
    """
    from certify.polish.limits import MAX_SAME_POINT
    from certify.polish.multipliers import grad_scale, multiplier_bounds, release_along
    from certify.polish.pieces import evaluate, initial_held
    problem = Problem(scalar_net(1.0, -1.0, 1.0, 0.0), Dataset(np.array([[1.0], [2.0], [3.0]]),
                                                                  np.array([1.0, 1.0, 2.0])), "square")

    def at(theta, held):
        pt = evaluate(problem, theta, held)
        assert pt.keys == [("unit", 1, 0, 0)]
        np.testing.assert_array_equal(pt.rows.toarray(), [[1.0, 1.0, 0.0, 0.0]])
        lo, hi = multiplier_bounds(pt, grad_scale(pt))
        assert lo[0] == 0.0 and hi[0] == pytest.approx(1 / 3, rel=1e-15)
        nu = np.zeros(1 + pt.gauge.shape[0])
        nu[0] = hi[0]
        return release_along(pt, held, np.array([0.0, 1.0, 0.0, 0.0]), nu, grad_scale(pt))

    held = initial_held(problem, 0.0)
    for _ in range(MAX_SAME_POINT):
        out, n = at(problem.theta, held)
        assert n == 1 and not out.units[0][0, 0] and out.side[0][0, 0] == 1
        out.units[0][0, 0] = True                 # held again: it blocked the next step at once
        held = out
    out, n = at(problem.theta, held)
    assert n == 0 and out.units[0][0, 0]
    # the point moves (along the kink: w up, b down by the same amount, still held): released again
    moved = problem.theta + np.array([0.25, -0.25, 0.0, 0.0])
    out, n = at(moved, held)
    assert n == 1 and not out.units[0][0, 0]


def test_weights_of_an_input_feature_that_is_zero_on_every_sample_end_exactly_at_zero():
    """Under weight decay a first-layer weight on a feature that is 0 on every sample enters the loss
    only as ``lambda/2 w^2`` (hand derivation: no pre-activation depends on it), so its minimiser is
    exactly 0. Newton steps with a Levenberg shift only shrink it (the polish used to end at 1e-22
    there, and the exact checker refuted the point by a descent of 2e-36 along that weight); the
    polish sets it to 0, and the point it ends at is certified (verify re-checks the certificate)."""
    from certify.driver import check_problem
    from certify.polish.pieces import zero_feature_weights
    from certify.verify import verify
    X = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [-1.0, 0.0]])
    y = np.array([1.0, 0.5, 2.0, 0.3])
    net = Network([np.array([[0.7, 0.3], [0.2, -0.5]]), np.array([[1.0, 0.8]])],
                  [np.array([0.1, 0.9]), np.array([0.0])], "relu")
    prob = Problem(net, Dataset(X, y), "square", 0.01)
    moved, n = zero_feature_weights(prob, prob.theta)
    assert n == 2 and moved[1] == 0 and moved[3] == 0
    assert np.array_equal(np.delete(moved, [1, 3]), np.delete(prob.theta, [1, 3]))
    # the loss falls by exactly lambda/2 (0.3^2 + 0.5^2) (to float64 rounding of the two sums)
    assert prob.value() - prob.value(moved) == pytest.approx(0.005 * (0.09 + 0.25), rel=1e-12)
    assert zero_feature_weights(Problem(net, Dataset(X, y), "square"), prob.theta)[1] == 0   # no decay: flat
    res = polish(prob)
    assert res.converged and res.theta[1] == 0 and res.theta[3] == 0
    report = check_problem(prob.at(res.theta))
    assert report.verdict.value == "local_min"
    assert verify(report.to_dict(), prob.network.with_theta(res.theta), X, y).ok


def test_a_held_tie_that_another_piece_overtook_is_released():
    """Hand-built, multiclass hinge on one sample of class 0 with outputs f = (2, 1, 1 + s): its
    pieces 1 + f_j - f_0 (j != 0) and 0 (j = 0) are (0, 0, s). With pieces 0 and 1 held tied, s = 1/100
    puts piece 2 above the tie by 1/100: the loss follows piece 2 there, the tie is no kink of it,
    and the polish's multipliers release it (a held tie it keeps would be "crossed" by every trial
    step, and joining piece 2 to it moves the point the whole gap). At s = 0 (a three-way tie) and
    s = -1/100 the tie stays held."""
    from certify.polish.multipliers import stationarity
    from certify.polish.pieces import initial_held, overtaken_ties
    X = np.array([[1.0]])
    for s, stale in ((0.01, True), (0.0, False), (-0.01, False)):
        net = Network([np.zeros((3, 1))], [np.array([2.0, 1.0, 1.0 + s])], "relu")
        p = Problem(net, Dataset(X, np.array([0])), "multiclass_hinge")
        held = initial_held(p, None)
        held.ties[(0, 0)] = ((0, 1), 0)
        F = net.forward(X).output
        assert overtaken_ties(p, F, held) == ([(0, 0)] if stale else [])
        st = stationarity(p, p.theta, held)
        assert ((0, 0) in st.held.ties) is not stale


def test_pieces_that_rise_above_a_held_tie_together_join_it_together():
    """Hand-built, multiclass hinge on one sample of class 0 with outputs (2, 1, 1, 1): the four pieces
    (0 for j = 0, 1 + f_j - 2 else) are all 0. Held tied: pieces 0 and 1. A step to outputs
    (2, 1, 1.01, 1.02) raises pieces 2 and 3 above the tie (by 1/100 and 2/100): both join it (one at a
    time, the other overtakes the tie at once). A group not held takes only its new best piece."""
    from certify.polish.pieces import evaluate, initial_held
    from certify.polish.steps import crossed, with_crossed
    X = np.array([[1.0]])
    net = Network([np.zeros((4, 1))], [np.array([2.0, 1.0, 1.0, 1.0])], "relu")
    p = Problem(net, Dataset(X, np.array([0])), "multiclass_hinge")
    trial = p.theta.copy()
    trial[4:] = [2.0, 1.0, 1.01, 1.02]                 # (W is 4 x 1, then b)
    held = initial_held(p, None)
    held.ties[(0, 0)] = ((0, 1), 0)
    prev = evaluate(p, p.theta, held)
    units, ties = crossed(prev, p, trial, held, 0.0)
    assert units == [] and ties == {(0, 0): (2, 3)}
    assert with_crossed(held, units, ties, None).ties[(0, 0)] == ((0, 1, 2, 3), 0)
    free = initial_held(p, None)
    prev = evaluate(p, p.theta, free)
    units, ties = crossed(prev, p, trial, free, 0.0)
    assert ties == {(0, 0): 3}
