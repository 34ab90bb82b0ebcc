"""Property tests (hypothesis) on random small networks with many exact kinks.

Integer weights and data put many pre-activations exactly on 0, so every branch of the first- and
second-order machinery is exercised. The checks are independent of the tool's own reasoning:
decreases are re-evaluated in exact rational arithmetic (tests/exact.py), stationarity claims are
probed with random directions, and local-minimum claims with an exact random search.
"""

from fractions import Fraction

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import certify
from certify.data import Dataset, Problem
from certify.kinks import find_kinks
from certify.tangent import directional_derivative
from tests import exact

ACTS = {"relu": "relu", "leaky_relu:0.25": ("leaky_relu", Fraction(1, 4)), "abs": "abs"}


@st.composite
def instances(draw):
    act = draw(st.sampled_from(sorted(ACTS)))
    loss = draw(st.sampled_from(["square", "hinge", "absolute"]))
    depth = draw(st.integers(1, 2))
    d_in = draw(st.integers(1, 2))
    widths = [d_in] + [draw(st.integers(1, 3)) for _ in range(depth)] + [1]
    small = st.integers(-2, 2)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        W = np.array([[draw(small) for _ in range(a)] for _ in range(b)], dtype=float)
        bias = np.array([draw(small) for _ in range(b)], dtype=float)
        layers.append((W, bias))
    n = draw(st.integers(2, 5))
    X = np.array([[draw(small) for _ in range(d_in)] for _ in range(n)], dtype=float)
    if loss == "hinge":
        y = np.array([draw(st.sampled_from([-1.0, 1.0])) for _ in range(n)])
    else:
        y = np.array([float(draw(small)) for _ in range(n)])
    return layers, X, y, act, loss


def _exact_layers(layers):
    return [([[Fraction(v) for v in row] for row in W], [Fraction(v) for v in b]) for W, b in layers]


def _exact_loss_at(layers, theta, X, y, act, loss):
    shapes = [W.shape for W, _ in layers]
    th = [Fraction(float(v)) for v in theta]
    ex = exact.unflatten(th, shapes)
    return exact.loss(ex, X.tolist(), y.tolist(), ACTS[act], loss)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_verdicts_hold_up_independently(inst):
    layers, X, y, act, loss = inst
    report = certify.check(layers, X, y, activation=act, loss=loss, time_limit=20)
    theta = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in layers])
    base = _exact_loss_at(layers, theta, X, y, act, loss)
    verdict = report.verdict.value
    if verdict in ("not_stationary", "saddle"):
        ref = report.refutation
        assert ref["verified"]
        d = np.asarray(ref["direction"])
        e = ref.get("curvature_direction")
        e = np.zeros_like(d) if e is None else np.asarray(e)
        t = ref["step"]
        moved = theta + t * d + 0.5 * t * t * e
        assert _exact_loss_at(layers, moved, X, y, act, loss) < base
    if report.first_order.get("stationary"):
        # no first-order decrease along random directions (direct tangent pass, not the LP model)
        net = certify.Network([W for W, _ in layers], [b for _, b in layers], act)
        problem = Problem(net, Dataset(X, y), loss)
        fwd = net.forward(X, with_scale=True)
        kinks = find_kinks(problem, fwd)
        rng = np.random.default_rng(0)
        for _ in range(50):
            d = rng.standard_normal(net.n_params)
            assert directional_derivative(problem, fwd, kinks, d) >= -1e-9 * np.abs(d).sum()
    if verdict == "local_min":
        ex = _exact_layers(layers)
        probe = exact.probe(ex, X.tolist(), y.tolist(), ACTS[act], loss, radii=(1e-3, 1e-6), n_random=40, seed=1)
        assert not probe.found_decrease, (probe, report.reason)
        assert certify.verify(report.to_dict(), layers, X, y).ok
