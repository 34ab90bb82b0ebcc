"""Check the reference cases against the exact oracle (no ``certify`` import).

A failure here means a *case* is wrong (or the oracle is): re-derive the case, never weaken the
check. Everything is exact rational arithmetic except the float bridge test at the end.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest

from tests import exact
from tests.reference.cases import CASES, FLAG_NAMES, VERDICTS, Case, by_name

LOCAL_MINIMA = [c for c in CASES if c.verdict == "local_min"]
NOT_STATIONARY = [c for c in CASES if c.verdict == "not_stationary"]
NON_MINIMA = [c for c in CASES if c.verdict != "local_min"]
CERTIFICATES = [(c, k) for c in CASES for k in range(len(c.descent))]

#: Step for the first-order tests: with |theta| <= 5 and tiny nets, second-order terms are
#: below 1e3 * t^2, far from the first-order thresholds used below.
T_SMALL = Fraction(1, 10**8)


def ids(cases):
    return [c.name for c in cases]


def case_loss(case: Case, layers=None):
    """Exact loss of ``case`` at ``layers`` (default: at theta)."""
    return exact.loss(case.layers if layers is None else layers, case.X, case.y,
                      case.activation, case.loss, case.weight_decay)


def certificate_point(case: Case, k: int, t=None):
    """Layers at the end of certificate ``k`` (at step ``t``, default the certificate's)."""
    cert = case.descent[k]
    return exact.on_curve(case.layers, cert.d, cert.t if t is None else t, cert.e)


# --------------------------------------------------------------------------------------------
# The cases are well formed
# --------------------------------------------------------------------------------------------

def _all_fractions(obj) -> bool:
    if isinstance(obj, (tuple, list)):
        return all(_all_fractions(v) for v in obj)
    return isinstance(obj, Fraction)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_case_is_well_formed(case):
    shapes = exact.shapes_of(case.layers)
    assert case.shapes == shapes
    assert exact.n_params(shapes) == case.n_params == len(case.theta)
    assert list(case.theta) == exact.flatten(case.layers)
    assert _all_fractions(case.layers) and _all_fractions(case.X)
    assert isinstance(case.weight_decay, Fraction) and case.weight_decay >= 0
    assert isinstance(case.loss_mean, Fraction)
    assert case.loss in exact.RATIONAL_LOSSES
    assert len(case.X) == len(case.y) > 0
    assert all(len(x) == shapes[0][1] for x in case.X)
    n_out = shapes[-1][0]
    if case.loss in ("hinge",):
        assert n_out == 1 and set(case.y) <= {-1, 1}
    elif case.loss == "multiclass_hinge":
        assert all(isinstance(v, int) and 0 <= v < n_out for v in case.y)
    elif n_out == 1:
        assert all(isinstance(v, Fraction) for v in case.y)
    else:
        assert all(len(v) == n_out and _all_fractions(v) for v in case.y)
    assert case.verdict in VERDICTS
    assert set(case.flags) <= set(FLAG_NAMES)
    assert case.source
    for cert in case.descent:
        assert len(cert.d) == case.n_params and _all_fractions(cert.d)
        assert cert.e is None or (len(cert.e) == case.n_params and _all_fractions(cert.e))
        assert isinstance(cert.t, Fraction) and cert.t > 0
    if case.lower_point is not None:
        assert exact.shapes_of(case.lower_point) == shapes
        assert isinstance(case.lower_loss_mean, Fraction)
    assert by_name(case.name) is case


def test_case_names_are_unique_and_required_ones_exist():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    for name in ("gt01_relu", "gt01_leaky", "gt02", "gt03", "gt04_relu", "gt04_leaky", "gt05",
                 "gt06", "gt07", "gt08", "gt09", "gt10", "gt11", "gt12", "gt13", "gt13b_leaky",
                 "gt14", "gt15", "gt16", "gt16b_weight_decay"):
        assert name in names
    assert len([n for n in names if not n.startswith("gt")]) >= 12
    with pytest.raises(KeyError, match="no reference case"):
        by_name("no_such_case")


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_verdict_and_flags_are_consistent(case):
    flags = case.flags
    if case.verdict == "local_min":
        assert case.first_order_stationary and not case.descent
    if case.verdict == "saddle":
        assert case.first_order_stationary
    if case.verdict == "not_stationary":
        assert not case.first_order_stationary
    if case.allow_inconclusive:
        assert case.verdict == "saddle"
    for name in ("strict", "flat", "spurious", "global"):
        if flags.get(name):
            assert case.verdict == "local_min", name
    if flags.get("strict"):
        assert not flags.get("flat")
    if flags.get("spurious"):
        assert case.lower_point is not None and not flags.get("global")
    if flags.get("global"):
        assert case.lower_point is None
    if not case.first_order_stationary and flags.get("differentiable"):
        # differentiable with a descent direction: the gradient is not zero
        assert flags.get("clarke_stationary") is False


# --------------------------------------------------------------------------------------------
# Values: hand-derived numbers agree with exact evaluation
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_loss_mean_is_exact(case):
    assert case_loss(case) == case.loss_mean


@pytest.mark.parametrize("case,k", CERTIFICATES,
                         ids=[f"{c.name}-{k}" for c, k in CERTIFICATES])
def test_descent_certificate_strictly_decreases(case, k):
    value = case_loss(case, certificate_point(case, k))
    assert value < case.loss_mean
    if case.descent[k].loss_mean is not None:
        assert value == case.descent[k].loss_mean


@pytest.mark.parametrize("case", NON_MINIMA, ids=ids(NON_MINIMA))
def test_every_non_minimum_has_a_certificate(case):
    assert case.descent, "saddle / not_stationary cases must carry a decrease certificate"


@pytest.mark.parametrize("case", [c for c in CASES if c.lower_point is not None],
                         ids=ids([c for c in CASES if c.lower_point is not None]))
def test_lower_point_is_strictly_lower(case):
    value = case_loss(case, case.lower_point)
    assert value == case.lower_loss_mean
    assert value < case.loss_mean


# --------------------------------------------------------------------------------------------
# Verdicts: brute-force probe
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", LOCAL_MINIMA, ids=ids(LOCAL_MINIMA))
def test_probe_finds_no_decrease_at_local_minima(case):
    result = exact.probe(case.layers, case.X, case.y, case.activation, case.loss,
                         case.weight_decay, n_random=200)
    assert result.loss0 == case.loss_mean
    assert result.min_difference >= 0, (
        f"decrease {result.min_difference} at r={result.radius} along {result.direction}")
    if case.flags.get("flat"):
        assert result.min_difference == result.max_difference == 0
    elif case.flags.get("flat") is False:
        assert result.max_difference > 0
    if case.flags.get("strict"):
        # strict modulo rescaling: a random line meets the rescaling orbit only at theta
        assert result.min_difference > 0


@pytest.mark.parametrize("case", NOT_STATIONARY, ids=ids(NOT_STATIONARY))
def test_probe_finds_decrease_at_non_stationary_points(case):
    result = exact.probe(case.layers, case.X, case.y, case.activation, case.loss,
                         case.weight_decay, n_random=50)
    assert result.found_decrease


# --------------------------------------------------------------------------------------------
# First-order facts: d-stationarity and differentiability
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_first_order_stationary_field(case):
    """d-stationary: no probe direction decreases at first order (slope >= -1e-6 at t=1e-8).
    Not d-stationary: the first certificate's direction has slope <= -1e-3."""
    if case.first_order_stationary:
        result = exact.probe(case.layers, case.X, case.y, case.activation, case.loss,
                             case.weight_decay, radii=(T_SMALL,), n_random=50)
        assert result.min_difference / result.radius >= Fraction(-1, 10**6)
    else:
        slope = (case_loss(case, certificate_point(case, 0, T_SMALL)) - case.loss_mean) / T_SMALL
        assert slope <= Fraction(-1, 1000)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_differentiable_flag(case):
    """Symmetric difference (L(theta + t d) + L(theta - t d) - 2 L(theta)) / t at t = 1e-8 is
    O(t) where L is differentiable and O(1) (the jump of one-sided slopes) at an active kink."""
    if "differentiable" not in case.flags:
        pytest.skip("flag not established")
    largest = Fraction(0)
    for d in exact.probe_directions(case.n_params, n_random=30, seed=1):
        plus = case_loss(case, exact.perturbed(case.layers, d, T_SMALL))
        minus = case_loss(case, exact.perturbed(case.layers, d, -T_SMALL))
        largest = max(largest, abs(plus + minus - 2 * case.loss_mean) / T_SMALL)
    if case.flags["differentiable"]:
        assert largest <= Fraction(1, 10**5)
    else:
        assert largest >= Fraction(1, 1000)


# --------------------------------------------------------------------------------------------
# The float bridge feeds the tool the same case
# --------------------------------------------------------------------------------------------

def _float_loss(layers, X, y, activation, loss_name, weight_decay):
    """Plain numpy re-implementation of the mean loss (independent of tests.exact.loss)."""
    if isinstance(activation, tuple):
        alpha = activation[1]
        act = lambda z: np.maximum(z, alpha * z)  # noqa: E731
    else:
        act = {"relu": lambda z: np.maximum(z, 0.0), "abs": np.abs,
               "identity": lambda z: z}[activation]
    a = X
    for l, (W, b) in enumerate(layers):
        z = a @ W.T + b
        a = z if l == len(layers) - 1 else act(z)
    f = a
    if loss_name == "square":
        per = 0.5 * np.sum((f - y.reshape(len(y), -1)) ** 2, axis=1)
    elif loss_name == "absolute":
        per = np.sum(np.abs(f - y.reshape(len(y), -1)), axis=1)
    elif loss_name == "hinge":
        per = np.maximum(0.0, 1.0 - y * f[:, 0])
    elif loss_name == "multiclass_hinge":
        n = len(y)
        f_y = f[np.arange(n), y]
        others = f.copy()
        others[np.arange(n), y] = -np.inf
        per = np.maximum(0.0, 1.0 + others.max(axis=1) - f_y)
    else:
        raise ValueError(loss_name)
    theta = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in layers])
    return per.mean() + weight_decay / 2 * theta @ theta


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_float_bridge_matches_exact_loss(case):
    layers = exact.to_float_arrays(case.layers)
    X = exact.X_to_numpy(case.X)
    y = exact.y_to_numpy(case.y, case.loss)
    assert [W.shape for W, _ in layers] == case.shapes
    assert X.shape == (len(case.X), case.shapes[0][1])
    if case.loss == "multiclass_hinge":
        assert y.dtype == np.int64
    value = _float_loss(layers, X, y, exact.activation_to_float(case.activation), case.loss,
                        float(case.weight_decay))
    assert value == pytest.approx(float(case.loss_mean), rel=1e-12, abs=1e-14)


# --------------------------------------------------------------------------------------------
# The oracle itself
# --------------------------------------------------------------------------------------------

def test_flatten_unflatten_round_trip():
    case = by_name("gt03")
    theta = exact.flatten(case.layers)
    assert len(theta) == 15
    again = exact.unflatten(theta, exact.shapes_of(case.layers))
    assert exact.flatten(again) == theta
    assert [list(map(list, W)) for W, _ in again] == [list(map(list, W)) for W, _ in case.layers]
    with pytest.raises(ValueError, match="need 15"):
        exact.unflatten(theta[:-1], exact.shapes_of(case.layers))


def test_flat_order_is_weights_row_major_then_bias():
    layers = [([[1, 2], [3, 4]], [5, 6]), ([[7, 8]], [9])]
    assert exact.flatten(layers) == list(range(1, 10))


def test_perturbed_and_on_curve():
    layers = [([[1]], [0]), ([[1]], [0])]
    d = [1, 0, 0, 0]
    e = [0, 2, 0, 0]
    assert exact.flatten(exact.perturbed(layers, d, Fraction(1, 2))) == [Fraction(3, 2), 0, 1, 0]
    point = exact.on_curve(layers, d, Fraction(1, 2), e)
    assert exact.flatten(point) == [Fraction(3, 2), Fraction(1, 4), 1, 0]


def test_activations():
    relu = exact.activation_function("relu")
    leaky = exact.activation_function(("leaky_relu", Fraction(1, 4)))
    assert relu(Fraction(-3)) == 0 and relu(Fraction(2)) == 2
    assert leaky(Fraction(-4)) == -1 and leaky(Fraction(4)) == 4
    assert exact.activation_function("abs")(Fraction(-2)) == 2
    with pytest.raises(ValueError, match="unknown activation"):
        exact.activation_function("tanh")
    with pytest.raises(ValueError, match="alpha"):
        exact.activation_function(("leaky_relu", 1))


def test_radii_are_read_as_decimals():
    result = exact.probe([([[1]], [0]), ([[1]], [0])], [[1]], [1], "relu", "square",
                         radii=(1e-2,), n_random=2)
    assert result.radius == Fraction(1, 100)
    assert result.min_difference > 0  # quadratic bowl at a zero-loss point


def test_smooth_losses_at_zero_output():
    layers = [([[0]], [0]), ([[0]], [0])]
    logistic = exact.loss(layers, [[1], [2]], [1, -1], "relu", "logistic")
    assert isinstance(logistic, Decimal)
    layers3 = [([[0]], [0]), ([[0], [0], [0]], [0, 0, 0])]
    ce = exact.loss(layers3, [[1]], [2], "relu", "cross_entropy")
    with localcontext() as ctx:
        ctx.prec = 60
        assert abs(logistic - Decimal(2).ln()) < Decimal(10) ** -45
        assert abs(ce - Decimal(3).ln()) < Decimal(10) ** -45
    assert math.isclose(float(exact.loss(layers3, [[1]], [0], "relu", "cross_entropy",
                                         weight_decay=2)), math.log(3))


def test_loss_rejects_bad_labels():
    layers = [([[1]], [0]), ([[1]], [0])]
    with pytest.raises(ValueError, match="binary label"):
        exact.loss(layers, [[1]], [0], "relu", "hinge")
    with pytest.raises(ValueError, match="unknown loss"):
        exact.loss(layers, [[1]], [0], "relu", "huber")
