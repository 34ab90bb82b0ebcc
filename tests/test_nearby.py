"""Claim (2) "nearby" (certify.nearby) and the rigorous rounding bounds (certify.bounds).

Independent answers only:

* the exact minima below are rational points derived by hand (REFERENCES.md GT-7, GT-8, GT-16 and
  constructions reduced to them in the comments); their symmetry orbits are applied in exact
  arithmetic (Fractions) by this file, not by certify; the exact oracle ``tests/exact.py`` probes
  each for a decrease;
* the rounding bounds are compared with the exact rational values of the same quantities
  (pre-activations, gradients, Hessian-vector products computed here with Fractions);
* the eigenvalue bounds are tested on matrices whose spectrum is known exactly (rational rotations).
"""

from __future__ import annotations

import copy
import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.optimize as so

from certify import bounds
from certify.data import Dataset, Problem
from certify.nearby import prove_nearby, recheck
from certify.network import Network
from tests import exact
from tests.helpers import case_inputs
from tests.reference.cases import by_name

# =============================================================================================
# Exact minima with rational coordinates, and the symmetry families that keep the loss (by hand).
# Families: ("orbit", l, j): (w_j, b_j) of hidden layer l times c > 0, column j of W_{l+1} over c;
#           ("shift", l, j): b_l[j] += t and b_{l+1} -= W_{l+1}[:, j] t (unit active on every sample).
# =============================================================================================
X4 = [[0], [1], [2], [3]]
CONSTRUCTIONS = {
    # REFERENCES GT-16: pre-activations (-2/3, 4/3, 10/3, 16/3), residuals (0, 1/3, -2/3, 1/3), grad 0,
    # Hessian positive off the rescaling orbit (strict modulo symmetry, differentiable).
    "gt16": dict(layers=[([[2]], ["-2/3"]), ([[1]], [0])], X=X4, y=[0, 1, 4, 5], act="relu", loss="square",
                 families=[("orbit", 1, 0)]),
    # GT-16 deeper: layer 2 = (1, 1/2) is active on every sample (z2 = h1 + 1/2 > 0), output (1, -1/2), so
    # f = h1 as in GT-16. Near theta f = (a v) h1 + (a beta + c): the loss is GT-16's in (w, b, A = a v,
    # B = a beta + c), a submersion (a = 1 != 0); its fibres are unit 2's orbit and shift; GT-16's orbit
    # lifts to unit 1's. So: local minimum, strict modulo those three families.
    "gt16_deep": dict(layers=[([[2]], ["-2/3"]), ([[1]], ["1/2"]), ([[1]], ["-1/2"])], X=X4, y=[0, 1, 4, 5],
                      act="relu", loss="square", families=[("orbit", 1, 0), ("orbit", 2, 0), ("shift", 2, 0)]),
    # Two outputs, y2 = 3 - y1, W2 = (1, -1)^T, b2 = (0, 3): for fixed (w, b) the best (a, c) are per-output
    # least squares on (h, 1); output 2's fit is 3 - (output 1's), residual -r1: loss = 2 x GT-16's profile
    # P(w, b), with the least squares unique (h takes 3 distinct values). GT-16 strict modulo its orbit.
    "gt16_two_out": dict(layers=[([[2]], ["-2/3"]), ([[1], [-1]], [0, 3])], X=X4,
                         y=[[0, 3], [1, 2], [4, -1], [5, -2]], act="relu", loss="square",
                         families=[("orbit", 1, 0)]),
    # REFERENCES GT-7: x = 1 on the kink, multiplier 1/2 (interior), strict modulo the orbit.
    "gt07": dict(layers=[([[1]], [-1]), ([[1]], [0])], X=X4, y=["1/2", -1, 2, "3/2"], act="relu", loss="square",
                 families=[("orbit", 1, 0)]),
    # GT-7 moved along its orbit by 1/3 (non-dyadic): (1/3, -1/3, 3, 0), the same function relu(x - 1).
    "gt07_third": dict(layers=[([["1/3"]], ["-1/3"]), ([[3]], [0])], X=X4, y=["1/2", -1, 2, "3/2"], act="relu",
                       loss="square", families=[("orbit", 1, 0)]),
    # GT-7 with a second output y2 = 3 - y1 (argument of gt16_two_out with GT-7's profile; the minimising
    # (a, c) is unique and continuous in (w, b), so local minimality of GT-7 carries over).
    "gt07_two_out": dict(layers=[([["1/3"]], ["-1/3"]), ([[3], [-3]], [0, 3])], X=X4,
                         y=[["1/2", "5/2"], [-1, 4], [2, 1], ["3/2", "3/2"]], act="relu", loss="square",
                         families=[("orbit", 1, 0)]),
    # REFERENCES GT-8 with non-dyadic numbers: layer 1 (1/3, 1/3) active on every sample (h1 = (x+1)/3),
    # layer 2 (3, -2) has z2 = x - 1 (the kink at x = 1 is a deep switching function), output (1, 0):
    # f = relu(x - 1). (A, B) = (v w, v b + beta) is a submersion (v != 0): GT-7 in (A, B, a, c).
    "gt08_third": dict(layers=[([["1/3"]], ["1/3"]), ([[3]], [-2]), ([[1]], [0])], X=X4, y=["1/2", -1, 2, "3/2"],
                       act="relu", loss="square", families=[("orbit", 1, 0), ("shift", 1, 0), ("orbit", 2, 0)]),
    # Hinge vertex: x = (0, 0, 1, 2), y = (-1, +1, -1, +1); the unit (1/3, 1/3) is active everywhere and
    # f = 3 h - 2 = x - 1, margins y f = (1, -1, 0, 1): samples 0 and 3 on the hinge kink. Locally f = A x + B.
    # The subgradient at (A, B) = (1, -1): losses of samples 1, 2 give (0, -1) + (1, 1) = (1, 0); the kinks
    # give lambda_0 (0, 1) + lambda_3 (-2, -1); 0 = (1 - 2 l3, l0 - l3): l0 = l3 = 1/2, interior, rows
    # independent: 0 is interior to the subdifferential of the convex S(A, B): a sharp (strict) minimum in
    # (A, B), hence strict modulo the unit's orbit and shift.
    "hinge_vertex": dict(layers=[([["1/3"]], ["1/3"]), ([[3]], [-2])], X=[[0], [0], [1], [2]], y=[-1, 1, -1, 1],
                         act="relu", loss="hinge", families=[("orbit", 1, 0), ("shift", 1, 0)]),
    # Absolute vertex (tests/reference "absolute_residual_zero" rescaled, non-dyadic): h = 3x + 3 > 0,
    # f = h/6 - 1/2 = x/2, residuals (0, -3/2, 0); the least-absolute-deviation fit through samples 0, 2 with
    # multipliers 1/2, 1/2 in (-1, 1): a sharp minimum in (A, B); strict modulo orbit and shift.
    "abs_vertex": dict(layers=[([[3]], [3]), ([["1/6"]], ["-1/2"])], X=[[0], [1], [2]], y=[0, 2, 1], act="relu",
                       loss="absolute", families=[("orbit", 1, 0), ("shift", 1, 0)]),
    # Multiclass hinge vertex: x = (1,4,0,2,0,3,4,3), labels (2,0,2,1,0,1,1,0); the unit (1/3, 1/3) is active
    # everywhere, logits f = (0, (x-1)/3, 1 - x/2) = A x + B. Sample losses 1/2, 2, 0, 2/3, 2, 1/3, 0, 5/3
    # (sum 43/6); samples 0, 2, 3, 6 tie two pieces ((0,1), (0,2), (0,2), (0,1)). In (A1, A2, B1, B2) (class 0
    # fixed by the logit shift) the free pieces sum to (4, 0, 1, 1), the base pieces of the ties to
    # (-6, -1, -2, -2), the tie generators are (1,0,1,0), (0,0,0,1), (0,2,0,1), (4,0,1,0) (independent, det 6)
    # and 0 = (-2, -1, -1, -1) + sum lambda_k gen_k gives lambda = (2/3, 1/2, 1/2, 1/3), all interior: 0 is
    # interior to the subdifferential of the convex loss, a sharp minimum modulo logit shifts; in the network,
    # strict modulo the unit's orbit and shift and the two logit shifts.
    "mc_vertex": dict(layers=[([["1/3"]], ["1/3"]), ([[0], [1], ["-3/2"]], [0, "-2/3", "3/2"])],
                      X=[[1], [4], [0], [2], [0], [3], [4], [3]], y=[2, 0, 2, 1, 0, 1, 1, 0], act="relu",
                      loss="multiclass_hinge",
                      families=[("orbit", 1, 0), ("shift", 1, 0), ("logit_w", 2, 0), ("logit_b", 2, 0)]),
}


def _fr_layers(layers):
    return [([[Fraction(v) for v in row] for row in W], [Fraction(v) for v in b]) for W, b in layers]


def _flat(layers):
    out = []
    for W, b in layers:
        for row in W:
            out.extend(row)
        out.extend(b)
    return out


def _problem(name) -> Problem:
    c = CONSTRUCTIONS[name]
    L = _fr_layers(c["layers"])
    net = Network([np.array([[float(v) for v in row] for row in W]) for W, _ in L],
                  [np.array([float(v) for v in b]) for _, b in L], c["act"])
    X = np.array([[float(Fraction(v)) for v in r] for r in c["X"]])
    y = c["y"]
    if c["loss"] == "multiclass_hinge":
        yf = np.array(y, dtype=np.int64)
    else:
        yf = (np.array([[float(Fraction(v)) for v in r] for r in y]) if isinstance(y[0], list)
              else np.array([float(Fraction(v)) for v in y]))
    return Problem(net, Dataset(X, yf), c["loss"])


def _apply(layers, families, params):
    """The exact point ``Phi(params, theta*)``: families applied in order, Fractions throughout."""
    L = copy.deepcopy(layers)
    for (kind, l, j), t in zip(families, params):
        if kind in ("logit_w", "logit_b"):           # every logit + t (x_j of the last hidden layer, or 1)
            W, b = L[l - 1]
            for row in W if kind == "logit_w" else []:
                row[j] = row[j] + t
            if kind == "logit_b":
                L[l - 1] = (W, [v + t for v in b])
            continue
        W, b = L[l - 1]
        Wn, bn = L[l]
        if kind == "orbit":
            W[j] = [v * t for v in W[j]]
            b[j] = b[j] * t
            for row in Wn:
                row[j] = row[j] / t
        else:
            b[j] = b[j] + t
            for k, row in enumerate(Wn):
                bn[k] = bn[k] - row[j] * t
    return L


def _distance_to_minimum_set(name, theta0: np.ndarray) -> Fraction:
    """Exact squared distance from ``theta0`` to a point of the exact minimum's symmetry orbit: the orbit
    parameters are fitted in float (least squares), then read as exact rationals and applied exactly."""
    c = CONSTRUCTIONS[name]
    base = _fr_layers(c["layers"])
    fams = c["families"]

    def point(x):
        params = [math.exp(v) if f[0] == "orbit" else v for f, v in zip(fams, x)]
        fl = [([[float(v) for v in row] for row in W], [float(v) for v in b]) for W, b in base]
        return np.array([float(v) for v in _flat(_apply(_fr_layers(fl), fams, [Fraction(p) for p in params]))])

    x = so.least_squares(lambda x: point(x) - theta0, np.zeros(len(fams)), xtol=1e-15, ftol=1e-15, gtol=1e-15).x
    params = [Fraction(math.exp(v)) if f[0] == "orbit" else Fraction(v) for f, v in zip(fams, x)]
    star = _flat(_apply(base, fams, params))
    return sum((s - Fraction(float(t))) ** 2 for s, t in zip(star, theta0))


def _direction(p: int, seed: int) -> np.ndarray:
    u = np.random.default_rng(seed).normal(size=p)
    return u / np.linalg.norm(u)


# =============================================================================================
# The constructions are exact local minima (independent check with the exact oracle)
# =============================================================================================
@pytest.mark.parametrize("name", sorted(CONSTRUCTIONS))
def test_constructions_are_local_minima_for_the_exact_oracle(name):
    c = CONSTRUCTIONS[name]
    layers = _fr_layers(c["layers"])
    X = [[Fraction(v) for v in r] for r in c["X"]]
    y = [[Fraction(v) for v in r] if isinstance(r, list) else
         (int(r) if c["loss"] in ("hinge", "multiclass_hinge") else Fraction(r)) for r in c["y"]]
    res = exact.probe(layers, X, y, c["act"], c["loss"], radii=(Fraction(1, 100), Fraction(1, 10 ** 4)),
                      n_random=40)
    assert not res.found_decrease, (name, res.min_difference, res.direction)


# =============================================================================================
# GT-16 at its float point: an exact minimum within ~1e-15
# =============================================================================================
def test_gt16_float_point_has_an_exact_minimum_within_a_tiny_radius():
    case = by_name("gt16")
    args = case_inputs(case)
    net = Network([W for W, _ in args["model"]], [b for _, b in args["model"]], "relu")
    problem = Problem(net, Dataset(args["X"], args["y"]), "square")
    res = prove_nearby(problem)
    assert res.proved, res.reason
    cert = res.certificate
    assert cert["kind"] == "nearby" and cert["claim"] == "nearby" and cert["strict"]
    assert cert["radius"] < 1e-13
    assert cert["radius_relative"] == pytest.approx(cert["radius"] / np.linalg.norm(problem.theta), rel=1e-5)
    assert cert["h"] < 0.5
    # the rational point (2, -2/3, 1, 0) is an exact minimum; b = -2/3 is not a float
    dist2 = sum((Fraction(s) - Fraction(float(t))) ** 2 for s, t in zip(case.theta, problem.theta))
    assert 0 < dist2 <= Fraction(cert["radius"]) ** 2
    assert all(c.ok for c in recheck(problem, cert))
    # the Newton iterate is within the radius too, and closer to the rational point than theta0
    assert np.linalg.norm(res.theta_newton - problem.theta) <= cert["radius"]


@pytest.mark.parametrize("name", sorted(CONSTRUCTIONS))
def test_unperturbed_float_points_are_proved(name):
    problem = _problem(name)
    res = prove_nearby(problem)
    assert res.proved, res.reason
    assert res.radius < 1e-12
    assert _distance_to_minimum_set(name, problem.theta) <= Fraction(res.radius) ** 2
    assert all(c.ok for c in recheck(problem, res.certificate))


# =============================================================================================
# Perturbed exact minima: the proof succeeds, its radius covers the distance to the exact minimum set
# and shrinks with the perturbation
# =============================================================================================
@pytest.mark.parametrize("name", sorted(CONSTRUCTIONS))
def test_perturbed_exact_minima(name):
    problem = _problem(name)
    u = _direction(problem.n_params, seed=sorted(CONSTRUCTIONS).index(name))
    radii = []
    for delta in (1e-6, 1e-8, 1e-10):
        moved = problem.at(problem.theta + delta * u)
        res = prove_nearby(moved)
        assert res.proved, (name, delta, res.reason)
        r = res.radius
        assert _distance_to_minimum_set(name, moved.theta) <= Fraction(r) ** 2, (name, delta, r)
        assert r < 100 * delta, (name, delta, r)           # not a vacuous radius
        checks = recheck(moved, res.certificate)
        assert all(c.ok for c in checks), [c.detail for c in checks if not c.ok]
        flags = CONSTRUCTIONS[name]["families"]
        assert res.certificate["strict"] == all(f[0] in ("orbit", "logit_w", "logit_b") for f in flags)
        radii.append(r)
    assert radii[0] > radii[1] > radii[2]


def test_the_held_kink_and_its_multiplier_are_reported():
    problem = _problem("gt07")
    moved = problem.at(problem.theta + 1e-8 * _direction(4, 0))
    cert = prove_nearby(moved).certificate
    assert cert["held_units"] == [[1, 1, 0]]                # x = 1 on the kink of the unit
    (mult,) = cert["margins"]["multipliers"]
    # GT-7: lambda = 1/2, gamma = c (s_pos - s_neg) with c = a r_1 / n = 1/4: nu = -gamma (1 - lambda) = -1/8
    assert mult["nu"] == pytest.approx(-1 / 8, rel=1e-5)
    assert mult["margin_low"] > 0 and mult["margin_high"] > 0


# =============================================================================================
# Never a proof where there is no strict minimum nearby
# =============================================================================================
def _reference_problem(name) -> Problem:
    args = case_inputs(by_name(name))
    net = Network([W for W, _ in args["model"]], [b for _, b in args["model"]], args["activation"])
    return Problem(net, Dataset(args["X"], args["y"]), args["loss"], args["weight_decay"])


@pytest.mark.parametrize("name,applicable,why", [
    ("gt11", True, "singular"),                 # differentiable strict saddle (zero output weight)
    ("gt12", True, "not positive definite"),    # multi-output strict saddle: indefinite reduced Hessian
    ("gt09", False, "endpoint"),                # convex kink, multiplier 0
    ("gt02", False, "zero coefficient"),        # zero residual at the kink
    ("gt01_relu", True, "singular"),            # flat valley beyond the symmetries
    ("gt05", False, "concave"),                 # concave kink
    ("nested_double_kink", False, "endpoint"),  # nested kinks, db < 0 flat: the layer-1 multiplier is 0
    ("multiclass_tie_saddle", True, ""),         # two-way ties, a saddle
    ("gt16b_weight_decay", True, ""),           # not stationary: gradient lambda theta
])
def test_no_proof_without_a_strict_minimum(name, applicable, why):
    res = prove_nearby(_reference_problem(name))
    assert not res.proved
    assert res.applicable == applicable, res.reason
    assert why in res.reason


def test_linear_network_least_squares_fit():
    """tests/reference "linear_global_min": identity 2-1-1 at the least-squares fit of OR. f = a (w . x + b) + c
    depends on theta through (A, B) = (a w, a b + c), a submersion whose fibres are the unit's rescaling and
    translation; the least-squares (A, B) is unique (full-rank design): strict modulo those two families."""
    problem = _reference_problem("linear_global_min")
    res = prove_nearby(problem)
    assert res.proved, res.reason
    dims = res.certificate["dimensions"]
    assert (dims["orbits"], dims["translations"], dims["held"]) == (1, 1, 0)
    case = by_name("linear_global_min")
    dist2 = sum((Fraction(s) - Fraction(float(t))) ** 2 for s, t in zip(case.theta, problem.theta))
    assert dist2 <= Fraction(res.radius) ** 2
    assert all(c.ok for c in recheck(problem, res.certificate))


def test_three_way_tie_is_out_of_scope():
    # f = (1, 0, 0) with label 0: the pieces f_j + [j != y] - f_y are 0, 0, 0 (a three-way tie)
    net = Network([np.array([[1.0]]), np.zeros((3, 1))], [np.zeros(1), np.array([1.0, 0.0, 0.0])], "relu")
    res = prove_nearby(Problem(net, Dataset(np.array([[1.0], [2.0]]), np.array([0, 0])), "multiclass_hinge"))
    assert not res.proved and not res.applicable and "3-way tie" in res.reason


def test_no_proof_near_a_saddle():
    problem = _reference_problem("gt12")
    for delta in (1e-8, 1e-4):
        res = prove_nearby(problem.at(problem.theta + delta * _direction(problem.n_params, 3)))
        assert not res.proved


def test_no_proof_far_from_stationarity():
    problem = _problem("gt16")
    for delta in (0.3, 0.01):
        res = prove_nearby(problem.at(problem.theta + delta * _direction(4, 1)))
        assert not res.proved and res.applicable
        assert "is not below 1/2" in res.reason           # h = beta K eta > 1/2
    res = prove_nearby(problem.at(problem.theta + 1e-3 * _direction(4, 1)))
    assert res.proved and 1e-3 / 2 < res.radius < 1e-2


def test_the_given_structure_is_used_as_is():
    """With a KinkStructure passed in, no other tolerance is tried: GT-7 moved by 1e-6 has its kink at
    |z| ~ 1e-6, outside tolerance 1e-9, so the proof (the kink left free) must fail."""
    from certify.kinks import find_kinks
    problem = _problem("gt07")
    moved = problem.at(problem.theta + 1e-6 * _direction(4, 0))
    kinks = find_kinks(moved, moved.network.forward(moved.X, with_scale=True), 1e-9)
    assert not prove_nearby(moved, kinks).proved
    kinks = find_kinks(moved, moved.network.forward(moved.X, with_scale=True), 1e-4)
    assert prove_nearby(moved, kinks).proved


# =============================================================================================
# Tampered certificates fail the re-check
# =============================================================================================
@pytest.fixture(scope="module")
def proved_gt08():
    problem = _problem("gt08_third")
    moved = problem.at(problem.theta + 1e-8 * _direction(problem.n_params, 5))
    res = prove_nearby(moved)
    assert res.proved, res.reason
    return moved, res.certificate


def _tamper(cert, path, fn):
    cert = copy.deepcopy(cert)
    obj = cert
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = fn(obj[path[-1]])
    return cert


@pytest.mark.parametrize("path,fn", [
    (("radius",), lambda v: v / 2),
    (("radius_relative",), lambda v: v / 2),
    (("margins", "pre_activation"), lambda v: v * 2),
    (("margins", "transversality"), lambda v: v * 2),
    (("margins", "multipliers", 0, "margin_low"), lambda v: v * 2),
    (("margins", "multipliers", 0, "margin_high"), lambda v: v * 2),
    (("inertia_margin",), lambda v: v * 2),
    (("strict",), lambda v: not v),
    (("held_units",), lambda v: []),
    (("families",), lambda v: v[:-1]),
    (("pivots",), lambda v: v[:-1]),
    (("nu",), lambda v: [x * 3 for x in v]),
    (("alpha_exp",), lambda v: v + [0]),
])
def test_tampered_certificate_fails(proved_gt08, path, fn):
    problem, cert = proved_gt08
    assert all(c.ok for c in recheck(problem, cert))
    bad = _tamper(cert, path, fn)
    assert not all(c.ok for c in recheck(problem, bad)), path


def test_certificate_for_another_point_fails(proved_gt08):
    problem, cert = proved_gt08
    other = problem.at(problem.theta + 1e-5 * _direction(problem.n_params, 9))
    assert not all(c.ok for c in recheck(other, cert))


def test_deadline_ends_the_proof():
    import time
    problem = _problem("gt16")
    res = prove_nearby(problem, deadline=time.perf_counter() - 1.0)
    assert not res.proved and res.out_of_time and "time budget" in res.reason


def test_certificate_is_json_serialisable(proved_gt08):
    import json
    _, cert = proved_gt08
    again = json.loads(json.dumps(cert))
    problem = proved_gt08[0]
    assert all(c.ok for c in recheck(problem, again))


# =============================================================================================
# A trained network (benchmarks/nearby.py has the full run)
# =============================================================================================
def test_trained_network_kinked_minimum():
    from benchmarks.nearby import kkt_point, make, train
    trained = train(make(0))
    point, held, note = kkt_point(trained)
    assert note.startswith("converged")
    res = prove_nearby(point)
    assert res.proved, res.reason
    assert res.certificate["dimensions"]["held"] == len(held) > 0
    assert res.certificate["radius_relative"] < 1e-8
    assert all(c.ok for c in recheck(point, res.certificate))


# =============================================================================================
# certify.bounds: rounding bounds against exact rational values
# =============================================================================================
def _random_piece(seed, widths=(3, 4, 3, 2), n=5):
    rng = np.random.default_rng(seed)
    W = [rng.normal(size=(o, i)) for i, o in zip(widths[:-1], widths[1:])]
    b = [rng.normal(size=o) for o in widths[1:]]
    X = rng.normal(size=(n, widths[0]))
    D = [rng.choice([1.0, 0.25], size=(n, o)) for o in widths[1:-1]]   # any fixed slopes: a piece
    return W, b, X, D


def _exact_forward(W, b, X, D):
    Wq = [[[Fraction(float(v)) for v in row] for row in Wl] for Wl in W]
    bq = [[Fraction(float(v)) for v in bl] for bl in b]
    zs, xs = [], [[[Fraction(float(v)) for v in row] for row in X]]
    x = xs[0]
    for l in range(len(W)):
        z = [[sum((w * xv for w, xv in zip(Wq[l][o], x[i])), Fraction(0)) + bq[l][o] for o in range(len(bq[l]))]
             for i in range(len(x))]
        zs.append(z)
        if l < len(W) - 1:
            x = [[Fraction(float(D[l][i, o])) * z[i][o] for o in range(len(z[i]))] for i in range(len(z))]
            xs.append(x)
    return Wq, zs, xs


def _exact_gradient(W, b, X, D, delta_q, theta_shift=None):
    """Exact gradient of sum_i delta_i . f_i (delta given exactly) for the piece with slopes D."""
    Wq, zs, xs = _exact_forward(W, b, X, D)
    L = len(W)
    parts = [None] * L
    d = delta_q
    for l in range(L, 0, -1):
        x_prev = xs[l - 1]
        gW = [[sum((d[i][o] * x_prev[i][k] for i in range(len(d))), Fraction(0)) for k in range(len(x_prev[0]))]
              for o in range(len(d[0]))]
        gb = [sum((d[i][o] for i in range(len(d))), Fraction(0)) for o in range(len(d[0]))]
        parts[l - 1] = [v for row in gW for v in row] + gb
        if l > 1:
            a = [[sum((d[i][o] * Wq[l - 1][o][k] for o in range(len(d[0]))), Fraction(0))
                  for k in range(len(Wq[l - 1][0]))] for i in range(len(d))]
            d = [[Fraction(float(D[l - 2][i, k])) * a[i][k] for k in range(len(a[0]))] for i in range(len(a))]
    return [v for part in parts for v in part]


@pytest.mark.parametrize("dtype", [np.float64, np.longdouble])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_and_gradient_bounds_hold_exactly(seed, dtype):
    W, b, X, D = _random_piece(seed)
    progs = bounds.Programs(W, b, X, D, dtype=dtype)
    _, zs, _ = _exact_forward(W, b, X, D)
    z, _ = progs.forward()
    z_abs, _ = progs.forward(absolute=True)
    for l in range(len(W)):
        bound = progs.abs_to_bound(progs.gamma * z_abs[l])
        for i in range(X.shape[0]):
            for o in range(z[l].shape[1]):
                err = abs(Fraction(*z[l][i, o].as_integer_ratio()) - zs[l][i][o])
                assert err <= Fraction(*bound[i, o].as_integer_ratio()), (l, i, o)
    # gradient of sum delta . f with an exactly representable source (so e = 0)
    rng = np.random.default_rng(seed + 10)
    delta = rng.normal(size=(X.shape[0], W[-1].shape[0])).astype(dtype)
    g, _ = progs.gradient(delta)
    g_abs, _ = progs.gradient(progs.gamma * np.abs(delta), absolute=True)
    bound = progs.abs_to_bound(g_abs)
    gq = _exact_gradient(W, b, X, D, [[Fraction(float(v)) for v in row] for row in delta])
    for k, (gv, ex) in enumerate(zip(g, gq)):
        assert abs(Fraction(*gv.as_integer_ratio()) - ex) <= Fraction(*bound[k].as_integer_ratio()), k
    # the bounds are not vacuous: a small multiple of the unit roundoff times the size of the terms
    terms, _ = progs.gradient(np.abs(delta), absolute=True)
    assert float(np.max(bound / np.asarray(terms, dtype=np.float64))) < 4e3 * progs.u * progs.depth


def test_hvp_bound_holds_exactly():
    """H v of the piece polynomial L(theta) = 1/2 sum ||f_i - y_i||^2 / n (fixed slopes), exactly: the
    gradient along theta + t v is a polynomial in t of degree <= 2L - 1, so its derivative at 0 is given
    exactly by Lagrange interpolation through 2L + 1 points (Fractions)."""
    W, b, X, D = _random_piece(4, widths=(2, 3, 2), n=4)
    rng = np.random.default_rng(7)
    y = rng.normal(size=(X.shape[0], 2))
    n = X.shape[0]
    net = Network(W, b, "relu")
    p = net.n_params
    v = rng.normal(size=p)
    progs = bounds.Programs(W, b, X, D)
    z, _ = progs.forward()
    z_abs, _ = progs.forward(absolute=True)
    e_F = progs.abs_to_bound(progs.gamma * z_abs[-1])
    delta = (z[-1] - y) / n
    e_delta = bounds.SAFETY * (e_F + 2 * bounds.U * np.abs(z[-1] - y)) / n * (1 + 4 * bounds.U)
    Q = np.broadcast_to(np.eye(2) / n, (n, 2, 2)).copy()
    e_Q = np.broadcast_to(np.eye(2) * bounds.SAFETY * bounds.U / n, (n, 2, 2)).copy()
    hv = progs.hvp(delta, Q, None, v[:, None])[:, 0]
    hv_abs = progs.hvp(progs.gamma * np.abs(delta) + e_delta, progs.gamma * np.abs(Q) + e_Q, None, v[:, None],
                       absolute=True)[:, 0]
    bound = progs.abs_to_bound(hv_abs)
    theta = net.theta
    ts = [Fraction(k, 8) for k in range(-2, 3)]           # 5 points: degree <= 3 is interpolated exactly
    grads = []
    for t in ts:
        th = [Fraction(float(a)) + t * Fraction(float(c)) for a, c in zip(theta, v)]
        layers = net.split(np.zeros(p))
        pos, Wt, bt = 0, [], []
        for Wl, bl in layers:
            k = Wl.size
            Wt.append(np.array(th[pos:pos + k], dtype=object).reshape(Wl.shape))
            bt.append(np.array(th[pos + k:pos + k + bl.size], dtype=object))
            pos += k + bl.size
        Wq_f = [[[w for w in row] for row in Wl] for Wl in Wt]
        # exact forward with object arrays, then the exact source (f - y)/n
        x = [[Fraction(float(v_)) for v_ in row] for row in X]
        for l in range(len(Wt)):
            zq = [[sum((Wq_f[l][o][k] * x[i][k] for k in range(len(x[i]))), Fraction(0)) + bt[l][o]
                   for o in range(len(bt[l]))] for i in range(len(x))]
            if l < len(Wt) - 1:
                x = [[Fraction(float(D[l][i, o])) * zq[i][o] for o in range(len(zq[i]))] for i in range(len(zq))]
        dq = [[(zq[i][o] - Fraction(float(y[i, o]))) / n for o in range(2)] for i in range(n)]
        grads.append(_exact_gradient_obj(Wt, bt, X, D, dq))
    # derivative at 0 of the interpolating polynomial: sum_k g_k * l_k'(0)
    deriv = []
    for k, tk in enumerate(ts):
        others = [tj for j, tj in enumerate(ts) if j != k]
        denom = math.prod((tk - tj for tj in others), start=Fraction(1))
        # l_k'(0) = sum_m prod_{j != m} (0 - t_j) / denom over the other nodes
        s = Fraction(0)
        for m_ in range(len(others)):
            s += math.prod((-tj for jj, tj in enumerate(others) if jj != m_), start=Fraction(1))
        deriv.append(s / denom)
    Hv = [sum((grads[k][i] * deriv[k] for k in range(len(ts))), Fraction(0)) for i in range(p)]
    for i in range(p):
        assert abs(Fraction(float(hv[i])) - Hv[i]) <= Fraction(float(bound[i])), i


def _exact_gradient_obj(Wt, bt, X, D, delta_q):
    """:func:`_exact_gradient` for object arrays of Fractions (the moved point)."""
    L = len(Wt)
    xs = [[[Fraction(float(v)) for v in row] for row in X]]
    x = xs[0]
    for l in range(L - 1):
        z = [[sum((Wt[l][o][k] * x[i][k] for k in range(len(x[i]))), Fraction(0)) + bt[l][o]
              for o in range(len(bt[l]))] for i in range(len(x))]
        x = [[Fraction(float(D[l][i, o])) * z[i][o] for o in range(len(z[i]))] for i in range(len(z))]
        xs.append(x)
    parts = [None] * L
    d = delta_q
    for l in range(L, 0, -1):
        x_prev = xs[l - 1]
        gW = [[sum((d[i][o] * x_prev[i][k] for i in range(len(d))), Fraction(0)) for k in range(len(x_prev[0]))]
              for o in range(len(d[0]))]
        gb = [sum((d[i][o] for i in range(len(d))), Fraction(0)) for o in range(len(d[0]))]
        parts[l - 1] = [v for row in gW for v in row] + gb
        if l > 1:
            a = [[sum((d[i][o] * Wt[l - 1][o][k] for o in range(len(d[0]))), Fraction(0))
                  for k in range(len(Wt[l - 1][0]))] for i in range(len(d))]
            d = [[Fraction(float(D[l - 2][i, k])) * a[i][k] for k in range(len(a[0]))] for i in range(len(a))]
    return [v for part in parts for v in part]


def test_programs_agree_with_certify_tangent():
    from certify.kinks import find_kinks
    from certify.tangent import hessian_vector_product, loss_gradient, piece_slopes, switching_rows
    rng = np.random.default_rng(3)
    W = [rng.normal(size=(5, 3)), rng.normal(size=(4, 5)), rng.normal(size=(2, 4))]
    b = [rng.normal(size=5), rng.normal(size=4), rng.normal(size=2)]
    X, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    net = Network(W, b, "leaky_relu:0.3")
    problem = Problem(net, Dataset(X, y), "square")
    fwd = net.forward(X)
    D = piece_slopes(problem, fwd)
    progs = bounds.Programs(W, b, X, D)
    g, _ = progs.gradient((fwd.output - problem.Y) / 7)
    assert np.array_equal(g, loss_gradient(problem, fwd))
    V = rng.normal(size=(net.n_params, 3))
    Q = np.broadcast_to(np.eye(2) / 7, (7, 2, 2)).copy()
    H = progs.hvp((fwd.output - problem.Y) / 7, Q, None, V)
    H2 = np.column_stack([hessian_vector_product(problem, fwd, D, V[:, j]) for j in range(3)])
    assert np.allclose(H, H2, rtol=1e-13, atol=1e-13 * np.abs(H2).max())
    kinks = find_kinks(problem, net.forward(X, with_scale=True), 0.0)
    R2, _ = switching_rows(problem, fwd, D, kinks, np.array([0, 3]), 2, np.array([1, 2]))
    assert np.array_equal(progs.rows(2, [0, 3], np.eye(4)[[1, 2]]), R2.toarray())


def _rational_rotation(n, seed):
    """An exactly orthogonal matrix with rational entries (products of Givens rotations by (3/5, 4/5))
    and its float image's distance to orthogonality is ~ u; returned as Fractions."""
    rng = np.random.default_rng(seed)
    Q = [[Fraction(int(i == j)) for j in range(n)] for i in range(n)]
    for _ in range(3 * n):
        i, j = rng.choice(n, size=2, replace=False)
        c, s = Fraction(3, 5), Fraction(4, 5) * (1 if rng.random() < 0.5 else -1)
        for row in Q:
            a, b_ = row[i], row[j]
            row[i], row[j] = c * a - s * b_, s * a + c * b_
    return Q


@pytest.mark.parametrize("seed", [0, 1])
def test_eigenvalue_bounds_on_known_spectra(seed):
    n = 8
    Q = _rational_rotation(n, seed)
    lam = [Fraction(k + 1, 4) for k in range(n)]               # spectrum 1/4 .. 2, exact
    A = [[sum((Q[i][k] * lam[k] * Q[j][k] for k in range(n)), Fraction(0)) for j in range(n)] for i in range(n)]
    Af = np.array([[float(v) for v in row] for row in A])
    err = bounds.fro(np.array([[float(abs(Fraction(Af[i, j]) - A[i][j])) for j in range(n)] for i in range(n)]))
    lo, ok = bounds.lambda_min_lower(Af, err * 2)
    assert ok and lo <= float(lam[0]) and lo > 0.2
    # inertia of an indefinite matrix with the same eigenvectors and 3 negative eigenvalues
    mu = [Fraction(-3, 1), Fraction(-1, 8), Fraction(-1, 2)] + lam[3:]
    B = [[sum((Q[i][k] * mu[k] * Q[j][k] for k in range(n)), Fraction(0)) for j in range(n)] for i in range(n)]
    Bf = np.array([[float(v) for v in row] for row in B])
    inert = bounds.inertia(Bf, 1e-14)
    assert inert["certified"] and (inert["n_pos"], inert["n_neg"]) == (5, 3)
    # a matrix with a 1e-13 eigenvalue is not certified (the bound is honest)
    mu[1] = Fraction(1, 10 ** 13)
    C = [[sum((Q[i][k] * mu[k] * Q[j][k] for k in range(n)), Fraction(0)) for j in range(n)] for i in range(n)]
    assert not bounds.inertia(np.array([[float(v) for v in row] for row in C]), 1e-12)["certified"]


def test_norm_and_sigma_bounds():
    rng = np.random.default_rng(0)
    for _ in range(5):
        A = rng.normal(size=(6, 4))
        s = np.linalg.svd(A, compute_uv=False)
        assert s[0] <= bounds.norm2_upper(A) <= s[0] * (1 + 1e-5)
        assert s[-1] * (1 - 1e-6) >= bounds.sigma_min_lower(A) >= s[-1] * 0.99


def test_chain_derivative_bounds_dominate_observed_derivatives():
    """k-th derivatives of t -> f(theta + t d) for a fixed piece, by finite differences on a polynomial
    (exact in Fractions), never exceed the chain bound."""
    rng = np.random.default_rng(2)
    widths = (2, 3, 3, 1)
    W = [rng.normal(size=(o, i)) for i, o in zip(widths[:-1], widths[1:])]
    b = [rng.normal(size=o) for o in widths[1:]]
    x = rng.normal(size=2)
    D = [np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0])]
    hat = [bounds.norm2_upper(np.column_stack([Wl, bl])) for Wl, bl in zip(W, b)]
    m = [math.sqrt(h * h + 1) for h in hat[:-1]] + [hat[-1]]
    B = bounds.chain_derivative_bounds(m, [1.0, 1.0, 1.0])
    xhat = math.sqrt(float(x @ x) + 1)

    def f(t, d):
        out = x
        pos = 0
        for l, (Wl, bl) in enumerate(zip(W, b)):
            k = Wl.size
            dW = d[pos:pos + k].reshape(Wl.shape)
            db = d[pos + k:pos + k + bl.size]
            pos += k + bl.size
            z = (Wl + t * dW) @ out + (bl + t * db)
            out = D[l] * z if l < len(W) - 1 else z
        return out[0]

    p = sum(Wl.size + bl.size for Wl, bl in zip(W, b))
    for _ in range(20):
        d = rng.normal(size=p)
        d /= np.linalg.norm(d)
        # f(t) is a cubic in t: its coefficients from 4 values (exact enough in float for a check with slack)
        ts = np.array([-1.0, -0.5, 0.5, 1.0])
        coef = np.polyfit(ts, [f(t, d) for t in ts], 3)
        for k in (1, 2, 3):
            observed = abs(coef[3 - k]) * math.factorial(k)
            assert observed <= B[k] * xhat * (1 + 1e-9), (k, observed, B[k] * xhat)


# =============================================================================================
# The certificate kind (certify.secondorder.nearby), as the driver will call it
# =============================================================================================
def test_certificate_kind_module():
    from certify.kinks import find_kinks
    from certify.secondorder import nearby as kind
    from certify.secondorder.base import Context
    from certify.tangent import first_order_model
    problem = _problem("gt07_third")
    moved = problem.at(problem.theta + 1e-9 * _direction(4, 2))
    fwd = moved.network.forward(moved.X, with_scale=True)
    kinks = find_kinks(moved, fwd, 1e-6)
    ctx = Context(moved, fwd, kinks, first_order_model(moved, fwd, kinks))
    assert kind.applies(ctx) is None
    res = kind.run(ctx)
    assert res.verdict == "local_min" and res.method == "nearby"
    assert res.flags["claim"] == "nearby" and res.flags["at_kink"] and res.flags["strict"]
    assert res.flags["nearby_radius"] == res.certificate["radius"] < 1e-7
    checks = []
    kind.recheck(ctx, res.certificate, checks)
    assert checks and all(c.ok for c in checks)
    # nested kinks are in scope; tests/reference's nested_double_kink is a minimum that is not strict
    # (db < 0 is flat, by its hand derivation): its layer-1 multiplier sits at an endpoint, no proof
    nested = _reference_problem("nested_double_kink")
    fwd = nested.network.forward(nested.X, with_scale=True)
    kinks = find_kinks(nested, fwd, 1e-9)
    ctx = Context(nested, fwd, kinks, first_order_model(nested, fwd, kinks))
    assert kind.applies(ctx) is None
    res = kind.run(ctx)
    assert res.verdict is None and "endpoint" in res.reason


# =============================================================================================
# Smooth losses, weight decay, leaky ReLU and abs: trained points, Newton steps of the prover
# =============================================================================================
def _trained(seed, widths, act, loss, wd, n=30):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, widths[0]))
    if loss == "logistic":
        y = np.sign(X[:, 0] * X[:, 1] + 0.3 * rng.normal(size=n))
        y[y == 0] = 1
    elif loss == "cross_entropy":
        y = np.argmax(X @ rng.normal(size=(widths[0], widths[-1])) + rng.normal(size=(n, widths[-1])), axis=1)
    else:
        y = np.sin(X @ rng.normal(size=widths[0]))
    Ws = [rng.normal(size=(o, i)) / np.sqrt(i) for i, o in zip(widths[:-1], widths[1:])]
    bs = [0.1 * rng.normal(size=o) for o in widths[1:]]
    problem = Problem(Network(Ws, bs, act), Dataset(X, y), loss, wd)
    from certify.tangent import loss_gradient
    res = so.minimize(problem.value, problem.theta, jac=lambda t: loss_gradient(problem.at(t)), method="L-BFGS-B",
                      options={"maxiter": 5000, "gtol": 1e-13, "ftol": 1e-16})
    return problem.at(res.x), X, y


@pytest.mark.parametrize("seed,widths,act,loss,wd", [
    (1, (2, 2, 1), "leaky_relu:0.1", "logistic", 0.05),
    (2, (2, 4, 3), "relu", "cross_entropy", 0.01),
    (0, (2, 3, 1), "abs", "square", 0.001),
    (0, (2, 3, 1), "leaky_relu:0.2", "square", 0.0),
])
def test_trained_smooth_losses_weight_decay_and_other_activations(seed, widths, act, loss, wd):
    problem, X, y = _trained(seed, widths, act, loss, wd)
    for _ in range(6):
        res = prove_nearby(problem)
        if res.proved or res.theta_newton is None:
            break
        problem = problem.at(res.theta_newton)
    assert res.proved, res.reason
    assert all(c.ok for c in recheck(problem, res.certificate))
    assert res.certificate["dimensions"]["symmetry"] == (0 if wd else widths[1])
    # independent probe: around the Newton iterate (within ~1e-15 of theta*) the exact loss does not drop
    centre = problem.at(res.theta_newton)
    layers = [([[Fraction(float(v)) for v in row] for row in W], [Fraction(float(v)) for v in b])
              for W, b in centre.network.split(centre.theta)]
    Xq = [[Fraction(float(v)) for v in row] for row in X]
    yq = [int(v) for v in y] if loss in ("logistic", "cross_entropy") else [Fraction(float(v)) for v in y]
    act_q = ("leaky_relu", Fraction(float(act.split(":")[1]))) if act.startswith("leaky") else act
    probe = exact.probe(layers, Xq, yq, act_q, loss, Fraction(float(wd)),
                        radii=(Fraction(1, 10 ** 3),), n_random=5)
    assert probe.min_difference > -1e-20, probe.min_difference


@pytest.mark.parametrize("loss", ["logistic", "cross_entropy", "square", "hinge"])
def test_loss_source_bounds_against_50_digit_values(loss):
    """``delta = l'(f)/n`` and ``Q = l''(f)/n`` in float64 and long double lie within their stated error
    bounds of the values computed with 50-digit decimals (outputs taken exactly, ``e_F = 0``)."""
    from decimal import Decimal, localcontext

    from certify.nearby import _loss_sources
    rng = np.random.default_rng(5)
    n, C = 6, (3 if loss == "cross_entropy" else 1)
    F = rng.normal(size=(n, C)) * 3
    if loss in ("logistic", "hinge"):
        y = rng.choice([-1.0, 1.0], size=n)
    elif loss == "cross_entropy":
        y = rng.integers(0, C, size=n)
    else:
        y = rng.normal(size=n)
    net = Network([np.zeros((C, 1))], [np.zeros(C)], "relu")
    problem = Problem(net, Dataset(np.zeros((n, 1)), y), loss)
    with localcontext() as ctx:
        ctx.prec = 50
        Fd = [[Decimal(float(v)) for v in row] for row in F]
        if loss == "logistic":
            s = [1 / (1 + (Decimal(float(y[i])) * Fd[i][0]).exp()) for i in range(n)]
            d_ex = [[-Decimal(float(y[i])) * s[i] / n] for i in range(n)]
            q_ex = [[[s[i] * (1 - s[i]) / n]] for i in range(n)]
        elif loss == "cross_entropy":
            P = []
            for i in range(n):
                e = [v.exp() for v in Fd[i]]
                P.append([v / sum(e) for v in e])
            d_ex = [[(P[i][c] - (1 if c == y[i] else 0)) / n for c in range(C)] for i in range(n)]
            q_ex = [[[(P[i][c] * (1 if c == d else 0) - P[i][c] * P[i][d]) / n for d in range(C)] for c in range(C)]
                    for i in range(n)]
        elif loss == "square":
            d_ex = [[(Fd[i][0] - Decimal(float(y[i]))) / n] for i in range(n)]
            q_ex = [[[Decimal(1) / n]] for i in range(n)]
        else:
            d_ex = [[(-Decimal(float(y[i])) if 1 - y[i] * F[i, 0] > 0 else Decimal(0)) / n] for i in range(n)]
            q_ex = None
        for dtype in (np.float64, np.longdouble):
            u = float(np.finfo(dtype).eps) / 2
            delta, e_delta, Q, e_Q, _ = _loss_sources(problem, F.astype(dtype), np.zeros((n, C)), (), u)
            for i in range(n):
                for c in range(C):
                    fr = Fraction(*np.asarray(delta[i, c]).item().as_integer_ratio())
                    got = Decimal(fr.numerator) / Decimal(fr.denominator)
                    assert abs(got - d_ex[i][c]) <= Decimal(float(e_delta[i, c])), (dtype, i, c)
                    if q_ex is not None:
                        for d in range(C):
                            fr = Fraction(*np.asarray(Q[i, c, d]).item().as_integer_ratio())
                            qv = Decimal(fr.numerator) / Decimal(fr.denominator)
                            assert abs(qv - q_ex[i][c][d]) <= Decimal(float(e_Q[i, c, d])), (dtype, i, c, d)


# =============================================================================================
# Duplicated units (certify.secondorder.groups): the mixing of copies in the gauge
# =============================================================================================
# Exact minima with copies of a unit. The orbit of each is applied here, in Fractions, by the same kind
# of helper as tests/test_groups.py: P = [W b][U] -> A P, W_next[:, U] -> W_next[:, U] A^-1.
X_WD = [[0], ["3/4"], [2], [3]]
Y_WD = ["12/25", "-12/25", "17/16", "53/16"]
GROUP_CONSTRUCTIONS = {
    # GT-7's unit relu(x - 1) split into (1, -1), (2, -2) with outputs 1/3, 1/3 (f = relu(x - 1)). Near the
    # point the copies keep their side at x = 0, 2, 3, where f depends on (A, B) = sum_u v_u (w_u, b_u) only;
    # at x = 1 (both on the kink, x^ = (1, 1) orthogonal to both rows) f = c + sum_u v_u relu(z_u) >=
    # c + relu(A + B) (v_u > 0, relu sublinear): the split's loss is at least GT-7's at the same (A, B, c),
    # because GT-7's residual there is positive; GT-7 is a strict minimum modulo its orbit. The held kinks pin
    # the rows to multiples of (1, -1), so the fibre of (A, B) is the GL(2) orbit: strict modulo GL(2)
    # (2 rescalings and 1 mixing: the stabiliser of copies has dimension (k - 1)^2 = 1).
    "split7": dict(layers=[([[1], [2]], [-1, -2]), ([["1/3", "1/3"]], [0])], X=X4, y=["1/2", -1, 2, "3/2"],
                   act="relu", wd=0, group=("GL", 1, (0, 1)), mixing=1),
    # three copies (1, -1), (2, -2), (3, -3) with outputs 1/6 each (sum 1): the same argument; orbit of
    # dimension 2k - 1 = 5: 3 rescalings and 2 mixings
    "split7_three": dict(layers=[([[1], [2], [3]], [-1, -2, -3]), ([["1/6", "1/6", "1/6"]], [0])], X=X4,
                         y=["1/2", -1, 2, "3/2"], act="relu", wd=0, group=("GL", 1, (0, 1, 2)), mixing=2),
    # Weight decay 1/10. One unit (w, b, v, c) = (1, -3/4, 5/4, 0) on x = (0, 3/4, 2, 3): residuals f - y =
    # (-12/25, 12/25, 1/2, -1/2); the gradient in c, v, w, b with weight decay vanishes exactly for the kink
    # slope 1/2 at x = 3/4 (interior); balanced (w^2 + b^2 = v^2); the penalty is strictly convex along the
    # rescaling, the data strictly convex in (A, c): a strict minimum. Split into the rotated copies
    # (3/5, 4/5) (units (3/5, -9/20), (4/5, -3/5), outputs (3/4, 1)): one output, so near the point the data
    # see m = Q P at x = 0, 2, 3, at x = 3/4 the split's output is at least the one-unit one (residual
    # positive), and ||P||^2 + ||Q||^2 >= 2 ||m|| with equality exactly on the O(2) orbit of balanced copies:
    # strict modulo O(2) (1 rotation).
    "split_wd": dict(layers=[([["3/5"], ["4/5"]], ["-9/20", "-3/5"]), ([["3/4", 1]], [0])], X=X_WD, y=Y_WD,
                     act="relu", wd="1/10", group=("O", 1, (0, 1)), mixing=1),
    # three copies (1/3, 2/3, 2/3) (a unit vector): the O(3) orbit of balanced rank-one copies is a sphere,
    # 2 rotations
    "split_wd_three": dict(layers=[([["1/3"], ["2/3"], ["2/3"]], ["-1/4", "-1/2", "-1/2"]),
                                   ([["5/12", "5/6", "5/6"]], [0])], X=X_WD, y=Y_WD, act="relu", wd="1/10",
                           group=("O", 1, (0, 1, 2)), mixing=2),
    # Identity 2-2-2 at the least-squares fit: f = W2 (W1 x + b1) + b2 = A x + B with A = W2 W1 = [[2, 1],
    # [2, 2]], B = (1, 2); y = f - alpha (1, -1, -1, 1) per output, a residual orthogonal to (x1, x2, 1), so
    # (A, B) is the unique least-squares fit. theta -> (A, B) is a submersion (W1, W2 invertible) whose fibres
    # (dimension 12 - 6) are the GL(2) orbits and the two translations: strict modulo them (2 mixings).
    "linear_222": dict(layers=[([[1, 0], [1, 1]], [0, 1]), ([[1, 1], [0, 2]], [0, 0])],
                       X=[[0, 0], [1, 0], [0, 1], [1, 1]],
                       y=[["1/2", "9/4"], ["7/2", "15/4"], ["5/2", "15/4"], ["7/2", "25/4"]], act="identity", wd=0,
                       group=("GL", 1, (0, 1)), mixing=2, translations=True),
}


def _group_problem(name) -> Problem:
    c = GROUP_CONSTRUCTIONS[name]
    L = _fr_layers(c["layers"])
    net = Network([np.array([[float(v) for v in row] for row in W]) for W, _ in L],
                  [np.array([float(v) for v in b]) for _, b in L], c["act"])
    X = np.array([[float(Fraction(v)) for v in r] for r in c["X"]])
    y = c["y"]
    yf = (np.array([[float(Fraction(v)) for v in r] for r in y]) if isinstance(y[0], list)
          else np.array([float(Fraction(v)) for v in y]))
    return Problem(net, Dataset(X, yf), "square", float(Fraction(c["wd"])))


def _group_exact_args(name):
    c = GROUP_CONSTRUCTIONS[name]
    X = [[Fraction(v) for v in r] for r in c["X"]]
    y = [[Fraction(v) for v in r] if isinstance(r, list) else Fraction(r) for r in c["y"]]
    return _fr_layers(c["layers"]), X, y, c["act"], Fraction(c["wd"])


def _mat_inverse(A):
    k = len(A)
    M = [list(row) + [Fraction(int(i == j)) for j in range(k)] for i, row in enumerate(A)]
    for col in range(k):
        r = next(r for r in range(col, k) if M[r][col] != 0)
        M[col], M[r] = M[r], M[col]
        M[col] = [v / M[col][col] for v in M[col]]
        for r in range(k):
            if r != col and M[r][col] != 0:
                f = M[r][col]
                M[r] = [a - f * b for a, b in zip(M[r], M[col])]
    return [row[k:] for row in M]


def _group_orbit_point(name, params):
    """The exact point ``g . theta*`` for group parameters ``params`` (Fractions): GL -- the k x k entries of
    A; O -- the k(k-1)/2 entries of an antisymmetric S, A = (I - S)^-1 (I + S) (Cayley: exactly orthogonal);
    then the translations ``b1 += t, b2 -= W2 t`` when the construction has them."""
    c = GROUP_CONSTRUCTIONS[name]
    kind, l, units = c["group"]
    k = len(units)
    L = copy.deepcopy(_fr_layers(c["layers"]))
    eye = [[Fraction(int(i == j)) for j in range(k)] for i in range(k)]
    if kind == "GL":
        A = [[params[i * k + j] for j in range(k)] for i in range(k)]
        rest = params[k * k:]
    else:
        S = [[Fraction(0)] * k for _ in range(k)]
        pos = 0
        for i in range(k):
            for j in range(i + 1, k):
                S[i][j], S[j][i] = params[pos], -params[pos]
                pos += 1
        inv = _mat_inverse([[eye[i][j] - S[i][j] for j in range(k)] for i in range(k)])
        A = [[sum((inv[i][m] * (eye[m][j] + S[m][j]) for m in range(k)), Fraction(0)) for j in range(k)]
             for i in range(k)]
        rest = params[pos:]
    W, b = L[l - 1]
    Wn, bn = L[l]
    P = [W[u] + [b[u]] for u in units]
    newP = [[sum((A[a][m] * P[m][j] for m in range(k)), Fraction(0)) for j in range(len(P[0]))] for a in range(k)]
    Ai = _mat_inverse(A)
    for a, u in enumerate(units):
        W[u], b[u] = newP[a][:-1], newP[a][-1]
    for row in Wn:
        Q = [row[u] for u in units]
        for a, u in enumerate(units):
            row[u] = sum((Q[m] * Ai[m][a] for m in range(k)), Fraction(0))
    for j, t in enumerate(rest):          # translations (identity activation: slope 1)
        b[j] += t
        for o, row in enumerate(Wn):
            bn[o] -= row[j] * t
    return _flat(L)


def _group_distance(name, theta0: np.ndarray) -> Fraction:
    """Exact squared distance from ``theta0`` to a point of the orbit of the exact minimum (parameters
    fitted in float by least squares, then read as exact rationals)."""
    c = GROUP_CONSTRUCTIONS[name]
    kind, _, units = c["group"]
    k = len(units)
    n_par = k * k if kind == "GL" else k * (k - 1) // 2
    n_tr = len(c["layers"][0][1]) if c.get("translations") else 0
    start = (list(np.eye(k).ravel()) if kind == "GL" else [0.0] * n_par) + [0.0] * n_tr

    def residual(x):
        return np.array([float(v) for v in _group_orbit_point(name, [Fraction(float(v)) for v in x])]) - theta0

    x = so.least_squares(residual, np.array(start), xtol=1e-15, ftol=1e-15, gtol=1e-15).x
    star = _group_orbit_point(name, [Fraction(float(v)) for v in x])
    return sum((s - Fraction(float(t))) ** 2 for s, t in zip(star, theta0))


@pytest.mark.parametrize("name", sorted(GROUP_CONSTRUCTIONS))
def test_group_constructions_are_local_minima_for_the_exact_oracle(name):
    layers, X, y, act, wd = _group_exact_args(name)
    res = exact.probe(layers, X, y, act, "square", wd, radii=(Fraction(1, 100), Fraction(1, 10 ** 4)), n_random=40)
    assert not res.found_decrease, (name, res.min_difference, res.direction)
    # and the loss is exactly constant along the orbit (a point of it away from theta*)
    kind, _, units = GROUP_CONSTRUCTIONS[name]["group"]
    k = len(units)
    if kind == "GL":
        params = [Fraction(int(i == j)) + Fraction(i + 2 * j + 1, 97) for i in range(k) for j in range(k)]
    else:
        params = [Fraction(m + 1, 13) for m in range(k * (k - 1) // 2)]
    params += [Fraction(1, 5)] * (len(layers[0][1]) if GROUP_CONSTRUCTIONS[name].get("translations") else 0)
    moved = exact.unflatten(_group_orbit_point(name, params), exact.shapes_of(layers))
    assert moved != layers
    assert exact.loss(moved, X, y, act, "square", wd) == exact.loss(layers, X, y, act, "square", wd)


@pytest.mark.parametrize("name", sorted(GROUP_CONSTRUCTIONS))
def test_group_constructions_are_proved(name):
    problem = _group_problem(name)
    res = prove_nearby(problem)
    assert res.proved, res.reason
    c = GROUP_CONSTRUCTIONS[name]
    mixing = [f for f in res.certificate["families"] if f[0] in ("mix", "rotation")]
    assert len(mixing) == c["mixing"]
    assert {f[0] for f in mixing} == {"mix" if c["group"][0] == "GL" else "rotation"}
    assert res.radius < 1e-12
    assert _group_distance(name, problem.theta) <= Fraction(res.radius) ** 2
    assert all(ch.ok for ch in recheck(problem, res.certificate))
    assert "duplicated units" in res.reason


@pytest.mark.parametrize("name", sorted(GROUP_CONSTRUCTIONS))
def test_group_constructions_perturbed(name):
    """Away from the exact copies (proportional only up to the perturbation) the proof still finds the
    orbit: the radius covers the distance to the exact minimum set and shrinks with the perturbation."""
    problem = _group_problem(name)
    u = _direction(problem.n_params, seed=11 + sorted(GROUP_CONSTRUCTIONS).index(name))
    radii = []
    for delta in (1e-6, 1e-8):
        moved = problem.at(problem.theta + delta * u)
        res = prove_nearby(moved)
        assert res.proved, (name, delta, res.reason)
        assert _group_distance(name, moved.theta) <= Fraction(res.radius) ** 2, (name, delta)
        assert res.radius < 100 * delta
        checks = recheck(moved, res.certificate)
        assert all(ch.ok for ch in checks), [ch.detail for ch in checks if not ch.ok]
        radii.append(res.radius)
    assert radii[0] > radii[1]


def test_without_the_mixing_the_copies_are_flat():
    """The certificate of the split GT-7 with its mixing generator removed (a set of genuine symmetries,
    accepted as such) no longer proves anything: the mixing direction is flat and nothing else covers it."""
    problem = _group_problem("split7")
    cert = prove_nearby(problem).certificate
    bad = _tamper(cert, ("families",), lambda v: [f for f in v if f[0] != "mix"])
    bad["pivots"] = bad["pivots"][:-1]
    checks = recheck(problem, bad)
    assert not all(ch.ok for ch in checks)
    assert "ill-conditioned" in checks[0].detail or "singular" in checks[0].detail


@pytest.mark.parametrize("family", [["rotation", 1, 0, 1], ["mix", 1, 0, 2], ["mix", 1, 1, 1]])
def test_a_stored_mixing_family_must_generate_a_group_of_the_point(family):
    """A rotation where weight decay is off (the group is GL, its generators E_uv), a pair that is no group
    (unit 2 does not exist here), a diagonal generator: the re-check refuses the families."""
    problem = _group_problem("split7")
    cert = prove_nearby(problem).certificate
    bad = _tamper(cert, ("families",), lambda v: [f for f in v if f[0] != "mix"] + [family])
    checks = recheck(problem, bad)
    assert not all(ch.ok for ch in checks)
    assert "do not match" in checks[0].detail or "does not fit" in checks[0].detail


def test_copies_not_pinned_by_kinks_are_flat_beyond_the_group():
    """GT-16 (differentiable) split into copies (2, -2/3), (4, -4/3) with outputs 1/3: a valid group, but
    with no held kink the rows may move apart (b1 += (t, -t) keeps sum_u v_u (w_u, b_u) and every side): a
    flat direction that is no group orbit (the GL tangents E P = (E c) a^T keep the rows parallel to
    a = (2, -2/3), which moves the weight with the bias). A minimum, not strict modulo symmetry: no proof."""
    layers = _fr_layers([([[2], [4]], ["-2/3", "-4/3"]), ([["1/3", "1/3"]], [0])])
    X = [[Fraction(v)] for v in range(4)]
    y = [Fraction(v) for v in (0, 1, 4, 5)]
    t = Fraction(1, 1000)
    flat = copy.deepcopy(layers)
    flat[0][1][0] += t
    flat[0][1][1] -= t
    assert exact.loss(flat, X, y, "relu", "square") == exact.loss(layers, X, y, "relu", "square")
    net = Network([np.array([[2.0], [4.0]]), np.array([[1 / 3, 1 / 3]])], [np.array([-2 / 3, -4 / 3]), np.zeros(1)],
                  "relu")
    res = prove_nearby(Problem(net, Dataset(np.arange(4.0)[:, None], np.array([0.0, 1, 4, 5])), "square"))
    assert not res.proved and res.applicable


def test_a_kink_at_one_unit_only_is_not_mixed():
    """GT-7 split with the second copy's kink moved off the data ((2, -5/2): z = -1/2 at x = 1 where the first
    copy is on its kink): no group, no mixing in the gauge, and the point is no minimum (the exact oracle
    finds a decrease) -- the prover must not claim one."""
    from certify.nearby import gauge_families
    layers = _fr_layers([([[1], [2]], [-1, "-5/2"]), ([["1/3", "1/3"]], [0])])
    X = [[Fraction(v)] for v in range(4)]
    y = [Fraction(1, 2), Fraction(-1), Fraction(2), Fraction(3, 2)]
    assert exact.probe(layers, X, y, "relu", "square", radii=(Fraction(1, 100),), n_random=20).found_decrease
    net = Network([np.array([[1.0], [2.0]]), np.array([[1 / 3, 1 / 3]])], [np.array([-1.0, -2.5]), np.zeros(1)],
                  "relu")
    problem = Problem(net, Dataset(np.arange(4.0)[:, None], np.array([0.5, -1, 2, 1.5])), "square")
    pre = net.forward(problem.X).pre
    assert all(f[0] not in ("mix", "rotation") for f in gauge_families(problem, pre, [(1, 1, 0)]))
    assert not prove_nearby(problem).proved


@pytest.mark.parametrize("seed,widths,act,loss,wd", [
    (1, (2, 2, 1), "leaky_relu:0.1", "logistic", 0.05),
    (0, (2, 3, 1), "abs", "square", 0.001),
    (2, (2, 4, 3), "relu", "cross_entropy", 0.01),
])
def test_trained_point_with_a_unit_split_into_rotated_copies(seed, widths, act, loss, wd):
    """A proved trained point (weight decay) with hidden unit 0 replaced by the copies (3/5, 4/5) of it (float):
    the loss is unchanged and the split point is proved with one rotation generator (regression: before
    the groups the KKT matrix was singular along exactly that rotation, as on the polished wine network)."""
    problem, X, y = _trained(seed, widths, act, loss, wd)
    # Newton to the exact minimum to rounding: L-BFGS's end point differs between machines (BLAS), and
    # the first proof may hold 1e-4 away, where the split's near-singular rotation makes h exceed 1/2
    for _ in range(8):
        res = prove_nearby(problem)
        if res.theta_newton is None or (res.proved and np.linalg.norm(res.theta_newton - problem.theta) < 1e-12):
            break
        problem = problem.at(res.theta_newton)
    assert res.proved, res.reason
    assert not any(f[0] == "rotation" for f in res.certificate["families"])
    net = problem.network
    (W1, W2), (b1, b2) = net.weights, net.biases
    W1s, b1s, W2s = np.vstack([W1, 0.8 * W1[:1]]), np.concatenate([b1, 0.8 * b1[:1]]), np.hstack([W2, 0.8 * W2[:, :1]])
    W1s[0], b1s[0], W2s[:, 0] = 0.6 * W1[0], 0.6 * b1[0], 0.6 * W2[:, 0]
    split = Problem(Network([W1s, W2s], [b1s, b2], net.activation), Dataset(X, y), loss, wd)
    assert split.value() == pytest.approx(problem.value(), rel=1e-14)
    res = prove_nearby(split)
    assert res.proved, res.reason
    assert [f[0] for f in res.certificate["families"]].count("rotation") == 1
    assert all(ch.ok for ch in recheck(split, res.certificate))


@pytest.mark.parametrize("name", ["linear_222", "split7_three"])
def test_tangent_lipschitz_bounds_the_drift_of_all_families(name):
    """Rescalings, translations and mixings together: ||(T(a) - T(b)) diag(s)||_F <= Lip ||a - b|| for
    random a, b (T affine in theta), with equality for a difference on the most-read coordinate."""
    from certify.nearby import _column_scales, tangent_lipschitz, tangent_matrix
    problem = _group_problem(name)
    cert = prove_nearby(problem).certificate
    fams = [(f[0],) + tuple(f[1:]) for f in cert["families"]]
    z = problem.network.forward(problem.X).pre
    scales = _column_scales(tangent_matrix(problem, problem.theta, fams, z))
    lip = tangent_lipschitz(problem, fams, z, scales)
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(50):
        a, b = rng.normal(size=(2, problem.n_params))
        d = (tangent_matrix(problem, a, fams, z) - tangent_matrix(problem, b, fams, z)) * scales
        worst = max(worst, np.linalg.norm(d) / np.linalg.norm(a - b))
    assert worst <= lip
    best = max(np.linalg.norm((tangent_matrix(problem, e, fams, z) - tangent_matrix(problem, 0 * e, fams, z)) * scales)
               for e in np.eye(problem.n_params))
    assert best == pytest.approx(lip, rel=1e-12)


# =============================================================================================
# Nested: a held loss kink over a held unit kink of the last hidden layer (certify/nearby.py, Nested)
# =============================================================================================
# f(x) = a relu(w x + b) + c, absolute loss, weight decay 1/8, theta* = (w, b, a, c) = (1, -3/4, 5/4, 0)
# (balanced: w^2 + b^2 = a^2, as every weight-decay stationary unit). Samples x = (3/4, 7/4, x3, 0),
# y = (0, 5/4, 0, 1): sample 0 sits on the unit's kink *and* on its residual's kink (f = c = 0);
# sample 1 on its residual's kink (f = 5/4); sample 2 active with residual 5/4 (x3 - 3/4) > 0; sample 3
# dead with residual -1. With residual subgradients s0, s1 in (-1, 1) and the kink's multiplier nu,
# stationarity reads (n = 4, lambda = 1/8, u3 = x3 - 3/4):
#   d/da: (s1 + u3) / 4 + lambda 5/4 = 0          d/dc: (s0 + s1 + 1 - 1) / 4 = 0
#   d/db: (5/16)(s0 + s1 + 1) + nu - 3/32 = 0     (d/dw follows: the unit is balanced)
# so s1 = -u3 - 5/8, s0 = -s1, nu = -7/32. Moving the kink off sample 0 (z0 < 0) the tie's surface
# bends: the loss grows off the held surface iff -(5/16) s0 < nu < 0 -- the adjoint of the *mixed*
# slope s0 (the module's Nested derivation), not of a piece's slope +-1.
# * x3 = 1 (u3 = 1/4): s0 = 7/8, -(5/16)(7/8) = -35/128 < -28/128 = nu: first order holds strictly; the
#   held surface is the line d = (1, -3/4, -5/4, 0), along which the Lagrangian's curvature is
#   (1/4)(2 a'(x w' + b'))-terms: sample 2: -5/32, sample 1 (slope s1 / 4 = -7/32): +35/64, decay
#   (1/8)|d|^2 = 25/64; total 25/32 > 0. A strict local minimum.
# * x3 = 13/16 (u3 = 1/16): s0 = 11/16, -(5/16)(11/16) = -55/256 > -56/256 = nu: the unit's kink
#   releases at the rate 55/256 - 56/256 = -1/256 along d = (0, -1, 5/4, 0) (kink moves, sample 0
#   stays tied on the dead side, sample 1 stays tied). Not a minimum -- though with the piece slope
#   +1 the interval (-5/16, 0) would contain nu.
def _nested(x3: float, shift: float = 0.0) -> Problem:
    net = Network([np.array([[1.0]]), np.array([[1.25]])], [np.array([-0.75 + shift]), np.array([0.0])], "relu")
    return Problem(net, Dataset(np.array([[0.75], [1.75], [x3], [0.0]]), np.array([0.0, 1.25, 0.0, 1.0])),
                   "absolute", weight_decay=0.125)


def _nested_exact_loss(problem: Problem, theta) -> Fraction:
    W1, b1, W2, b2 = (exact.as_fraction(v) for v in theta)
    X = [[exact.as_fraction(v)] for v in problem.X[:, 0]]
    y = [exact.as_fraction(v) for v in problem.data.y]
    return exact.loss([([[W1]], [b1]), ([[W2]], [b2])], X, y, "relu", "absolute", Fraction(1, 8))


def test_nested_minimum_is_a_minimum_for_the_exact_oracle_and_its_twin_is_not():
    good, bad = _nested(1.0), _nested(13 / 16)
    theta = [exact.as_fraction(v) for v in good.theta]
    L0 = _nested_exact_loss(good, theta)
    rng = np.random.default_rng(0)
    for _ in range(200):
        d = rng.standard_normal(4)
        for h in (Fraction(1, 10**3), Fraction(1, 10**6)):
            pt = [t + h * exact.as_fraction(float(v)) for t, v in zip(theta, d)]
            assert _nested_exact_loss(good, pt) > L0
    d = [Fraction(0), Fraction(-1), Fraction(5, 4), Fraction(0)]       # the hand descent of the twin
    h = Fraction(1, 2**20)
    Lb = _nested_exact_loss(bad, theta)
    drop = Lb - _nested_exact_loss(bad, [t + h * v for t, v in zip(theta, d)])
    assert drop > 0 and abs(drop / h - Fraction(1, 256)) < Fraction(1, 10**4)


@pytest.mark.parametrize("shift", [0.0, 1e-10])
def test_nested_minimum_is_proved_nearby_and_rechecked(shift):
    problem = _nested(1.0, shift)
    res = prove_nearby(problem)
    assert res.proved, res.reason
    cert = res.certificate
    assert cert["radius"] >= abs(shift)                       # the exact minimum (1, -3/4, 5/4, 0) is inside
    assert [1, 0, 0] in [list(k) for k in cert["held_units"]] and any(k[0] == 0 for k in cert["held_loss"])
    checks = recheck(problem, cert)
    assert all(c.ok for c in checks), [c.detail for c in checks if not c.ok]
    bad = copy.deepcopy(cert)
    bad["nu"][0] *= 1.5                                       # the unit's multiplier moved out of its interval
    assert not all(c.ok for c in recheck(problem, bad))


def test_nested_twin_with_the_mixed_interval_violated_is_not_proved():
    res = prove_nearby(_nested(13 / 16))
    assert not res.proved
    assert "endpoint" in res.reason


# =============================================================================================
# Nested in two layers: a sample on a unit kink of layer 1 and of layer 2 (certify/nearby.py, Nested)
# =============================================================================================
# f(x) = a relu(v relu(w x + b) + e) + c, square loss, weight decay 1/8, n = 4, at
# theta* = (w, b, v, e, a, c) = (4/5, 3/5, 1, 0, 1, -1) (balanced: w^2 + b^2 = v^2, v^2 + e^2 = a^2).
# x = (-3/4, 1/2, 7/4, 17/4): sample 0 sits on both kinks (z1 = w x + b = 0, z2 = v relu(z1) + e = 0);
# samples 1-3 are active in both layers (z1 = 1, 2, 4; f = z1 - 1). Residuals r = f - y: r0, and
# (r1, r2, r3) with sum r = 1/2 - r0 and sum r z1 = -1/2. Stationarity of L_b + nu1 phi1 + nu2 phi2
# (phi1 = z1(x0), grad (x0, 1, 0, 0, 0, 0); phi2 = v z1(x0) + e on the base piece, grad (v x0, v, 0, 1,
# 0, 0)): d/dc: R + lambda c = 0 (R = mean residual = 1/8); d/de: a R + nu2 = 0 -> nu2 = -1/8;
# d/db: a v R + nu1 + v nu2 + lambda b = 0 -> nu1 = -3/40; d/dv, d/da: mean r z1 = -lambda; d/dw
# follows (balance). Off the held surface, with u1 = grad phi1 . d, psi2 = v max(u1, 0) + de (the true
# z2(x0) to first order) and c2 = r0 a / n, the loss grows at
#   h = -nu1 u1 - v (c2 + nu2) min(u1, 0) - nu2 psi2 - c2 min(psi2, 0)
# (by hand: f0 = a relu(psi2) + c against the base a (v u1 + de) + c). So the layer-2 kink needs
# -c2 < nu2 < 0 and the layer-1 kink -v (c2 + nu2) < nu1 < 0: the adjoint c~1 = v (c2 + nu2) carries
# the layer-2 multiplier, where the plain adjoint would be v c2.
# * r0 = 1 (y = (-2, 1/4, 11/8, 23/8), r = (1, -1/4, -3/8, 1/8)): c2 = 1/4, c~1 = 1/8 > 3/40: strict growth
#   off M; on M (e = 0, b = 3 w / 4) the curvature is positive (exact probes below). A strict minimum.
# * r0 = 5/8 (y = (-13/8, -1/2, 7/4, 23/8), r = (5/8, 1/2, -3/4, 1/8)): c2 = 5/32 > 1/8, and
#   nu1 = -3/40 lies in (-v c2, 0) = (-5/32, 0) but not in (-c~1, 0) = (-1/32, 0): along d = -e_b
#   (u1 = -1, psi2 = 0) h = nu1 + nu2 + c2 = -7/160 < 0. Not a minimum.
_NESTED2_Y = {"min": [-2.0, 0.25, 1.375, 2.875], "twin": [-1.625, -0.5, 1.75, 2.875]}


def _nested2(which: str, shift: float = 0.0) -> Problem:
    net = Network([np.array([[0.8]]), np.array([[1.0]]), np.array([[1.0]])],
                  [np.array([0.6 + shift]), np.array([0.0]), np.array([-1.0])], "relu")
    X = np.array([[-0.75], [0.5], [1.75], [4.25]])
    return Problem(net, Dataset(X, np.array(_NESTED2_Y[which])), "square", weight_decay=0.125)


_NESTED2_THETA = [Fraction(4, 5), Fraction(3, 5), Fraction(1), Fraction(0), Fraction(1), Fraction(-1)]


def _nested2_loss(problem: Problem, th) -> Fraction:
    w, b, v, e, a, c = th
    X = [[exact.as_fraction(v_)] for v_ in problem.X[:, 0]]
    y = [exact.as_fraction(v_) for v_ in problem.data.y]
    return exact.loss([([[w]], [b]), ([[v]], [e]), ([[a]], [c])], X, y, "relu", "square", Fraction(1, 8))


def test_nested_in_two_layers_minimum_and_twin_for_the_exact_oracle():
    good, twin = _nested2("min"), _nested2("twin")
    th = _NESTED2_THETA
    L0 = _nested2_loss(good, th)
    rng = np.random.default_rng(0)
    for _ in range(100):
        d = rng.standard_normal(6)
        for h in (Fraction(1, 10**3), Fraction(1, 10**6)):
            assert _nested2_loss(good, [t + h * exact.as_fraction(float(v)) for t, v in zip(th, d)]) > L0
        dw, dv, da, dc = (exact.as_fraction(float(v)) for v in rng.standard_normal(4))
        on_m = [dw, Fraction(3, 4) * dw, dv, Fraction(0), da, dc]          # along the held surface
        h = Fraction(1, 10**5)
        assert _nested2_loss(good, [t + h * v for t, v in zip(th, on_m)]) > L0
    h = Fraction(1, 2**30)
    down = [t - (h if k == 1 else 0) for k, t in enumerate(th)]          # d = -e_b
    assert abs((_nested2_loss(good, down) - L0) / h - Fraction(1, 20)) < Fraction(1, 10**6)   # h = 2/40 > 0
    Lt = _nested2_loss(twin, th)
    assert abs((_nested2_loss(twin, down) - Lt) / h + Fraction(7, 160)) < Fraction(1, 10**6)


@pytest.mark.parametrize("shift", [0.0, 1e-10])
def test_nested_in_two_layers_minimum_is_proved_and_rechecked(shift):
    problem = _nested2("min", shift)
    res = prove_nearby(problem)
    assert res.proved, res.reason
    cert = res.certificate
    assert sorted(list(k) for k in cert["held_units"]) == [[1, 0, 0], [2, 0, 0]]
    dist2 = sum((t - exact.as_fraction(float(v))) ** 2 for t, v in zip(_NESTED2_THETA, problem.theta))
    assert dist2 <= Fraction(cert["radius"]) ** 2                 # theta* is inside the proven ball
    assert all(c.ok for c in recheck(problem, cert))
    k1 = [list(k) for k in cert["held_units"]].index([1, 0, 0])
    bad = copy.deepcopy(cert)
    bad["nu"][k1] *= 2.0       # -3/20: inside (-v c2, 0) = (-1/4, 0), outside (-c~1, 0) = (-1/8, 0)
    assert not all(c.ok for c in recheck(problem, bad))


def test_nested_in_two_layers_twin_is_not_proved():
    res = prove_nearby(_nested2("twin"))
    assert not res.proved
    assert "layer 1" in res.reason and "endpoint" in res.reason


def test_adjoint_chain_to_a_unit_bounds_the_downstream_jacobian():
    """``_adjoint_chain(..., upto=lp, row=row)``'s ``[B0, B1]`` bound ``|d z^lp_row / d x^l_j|`` and its Lipschitz constant over the
    ball (fixed slope patterns), observed on random 3-hidden-layer networks."""
    from certify.nearby import _adjoint_chain, _layer_norms
    rng = np.random.default_rng(3)
    widths = [2, 4, 3, 5, 1]
    for _ in range(20):
        net = Network([rng.standard_normal((widths[t + 1], widths[t])) for t in range(4)],
                      [rng.standard_normal(widths[t + 1]) for t in range(4)], "relu")
        D = [np.diag(rng.choice([0.0, 1.0], size=w)) for w in widths[1:-1]]
        rho = 0.3
        norms = _layer_norms(net, 0.0, 1.0)
        for l, lp in ((1, 2), (1, 3), (2, 3)):
            for row in range(widths[lp]):
                B0, B1 = _adjoint_chain(net, norms, l, rho, 1.0, upto=lp, row=row)

                def K(Ws, l=l, lp=lp, row=row):
                    M = Ws[l]                                   # W_{l+1}: x^l -> z^{l+1}
                    for t in range(l + 1, lp):
                        M = Ws[t] @ D[t - 1] @ M
                    return M[row]
                W0 = [W.copy() for W in net.weights]
                for _ in range(10):
                    dW = [rng.standard_normal(W.shape) for W in W0]
                    nd = np.sqrt(sum(float(np.sum(x * x)) for x in dW))
                    W1 = [W + rho * x / nd for W, x in zip(W0, dW)]
                    W2 = [W + 0.5 * rho * x / nd for W, x in zip(W0, dW)]
                    assert np.abs(K(W1)).max() <= B0
                    assert np.abs(K(W1) - K(W2)).max() <= B1 * 0.5 * rho * (1 + 1e-12)


def test_no_free_coordinate_is_not_applicable_not_a_crash():
    """A 1-1-1-1 ReLU net (an exact fuzz case, 'cone' base moved by 2^-20 in b1) where the gauge fixes
    every coordinate the held structure leaves: the KKT system is empty. The prover says why it does
    not apply (it raised ValueError from an empty max before), and a polished point's check ends
    with a verdict."""
    from certify.driver import check_problem
    layers = [([[-1]], ["-2097153/1048576"]), ([[-2]], ["-3/2"]), ([[-2]], ["1/2"])]
    net = Network([np.array([[float(Fraction(v)) for v in row] for row in W]) for W, _ in layers],
                  [np.array([float(Fraction(v)) for v in b]) for _, b in layers], "relu")
    pr = Problem(net, Dataset(np.array([[2.0], [-2.0], [-2.0]]), np.array([1.0, 0.5, 0.0])), "square")
    res = prove_nearby(pr)
    assert not res.proved and res.reason
    assert check_problem(pr, prefer_nearby=True).verdict.value in ("local_min", "saddle", "not_stationary",
                                                                   "inconclusive")


def test_a_passed_deadline_starts_no_attempt_and_one_passing_mid_attempt_stops_it(monkeypatch):
    """The docstring's 1-1-1 net (an exact minimum on its kink: proved without a deadline). With the
    deadline already passed no held structure is tried at all; with one that passes while the slice's
    pivots are chosen, the attempt stops right there (the gradient after it is never formed) and says
    it ran out of time."""
    import time

    import certify.nearby as nb
    net = Network([np.array([[2.0]]), np.array([[1.0]])], [np.array([-2 / 3]), np.array([0.0])], "relu")
    pr = Problem(net, Dataset(np.arange(4.0)[:, None], np.array([0.0, 1, 4, 5])), "square")
    assert prove_nearby(pr).proved
    tried = []
    real = nb._establish_gauges
    monkeypatch.setattr(nb, "_establish_gauges", lambda *a, **k: tried.append(1) or real(*a, **k))
    res = prove_nearby(pr, deadline=time.perf_counter() - 1.0)
    assert not res.proved and res.out_of_time and tried == []
    monkeypatch.undo()
    pivots, gradients = [], []
    real_pivots = nb.choose_pivots

    def slow_pivots(*a):
        pivots.append(1)
        time.sleep(0.3)
        return real_pivots(*a)

    monkeypatch.setattr(nb, "choose_pivots", slow_pivots)
    real_gradient = bounds.Programs.gradient
    monkeypatch.setattr(bounds.Programs, "gradient", lambda self, *a, **k: gradients.append(1) or real_gradient(self, *a, **k))
    res = prove_nearby(pr, deadline=time.perf_counter() + 0.1)
    assert not res.proved and res.out_of_time
    assert pivots == [1] and gradients == []
