"""Higher order (certify.taylor, certify.secondorder.higher_order): Taylor coefficients on the piece a
curve enters, checked against an independent exact oracle, and degenerate saddles whose leading term
is cubic or quartic (hand-derived)."""

import random
from fractions import Fraction

import numpy as np
import pytest

import certify
from certify.data import Dataset, Problem
from certify.kinks import find_kinks
from certify.loaders import as_network
from certify.taylor import batch_line_taylor, loss_taylor, sparse_line_taylor
from tests import degenerate, exact
from tests.helpers import activation_spec, run_case
from tests.reference.cases import CASES, by_name


def _dyadic(v) -> bool:
    if isinstance(v, (tuple, list)):
        return all(_dyadic(u) for u in v)
    return Fraction(float(v)) == v


def _problem(layers, X, y, activation, loss, weight_decay=0):
    net = as_network(exact.to_float_arrays(layers), activation_spec(activation))
    return Problem(net, Dataset(exact.X_to_numpy(X), exact.y_to_numpy(list(y), loss)), loss, float(weight_decay))


def _points():
    """Dyadic reference cases (every loss and activation) and degenerate points."""
    out = []
    for c in CASES:
        alpha_ok = not isinstance(c.activation, tuple) or _dyadic(c.activation[1])
        if _dyadic(c.layers) and _dyadic(c.X) and _dyadic(list(c.y)) and _dyadic(c.weight_decay) and alpha_ok:
            out.append((c.name, c.layers, c.X, c.y, c.activation, c.loss, c.weight_decay))
    for seed in range(12):
        pt = degenerate.degenerate_point(seed)
        out.append((f"degenerate{seed}", pt["layers"], pt["X"], pt["y"], pt["activation"], "square", 0))
    return out


@pytest.mark.parametrize("point", _points(), ids=lambda p: p[0])
def test_taylor_coefficients_match_the_exact_oracle(point):
    """On random rational lines and quadratic curves, certify's exact Taylor pass equals the oracle's
    (tests.degenerate.taylor, Fractions, written independently), and the float passes (dense, batched
    and sparse) agree with it within their stated rounding bounds."""
    name, layers, X, y, activation, loss, wd = point
    problem = _problem(layers, X, y, activation, loss, wd)
    fwd = problem.network.forward(problem.X, with_scale=True)
    kinks = find_kinks(problem, fwd)
    rng = random.Random(hash(name) % 1000)
    p = problem.n_params
    for trial in range(6):
        d = [Fraction(rng.choice([0, 0, 1, -1, 2, Fraction(1, 2)])) for _ in range(p)]
        e = [Fraction(rng.choice([0, 0, 0, 1, -1])) for _ in range(p)] if trial % 2 else None
        terms = [d] + ([e] if e else [])
        ref = degenerate.taylor(layers, X, y, activation, loss, terms, K=4, weight_decay=wd)
        arrays = [np.array([float(v) for v in T]) for T in terms]
        got = loss_taylor(problem, arrays, 4, exact=True)
        assert list(got.exact_coefficients) == ref
        flt = loss_taylor(problem, arrays, 4, exact=False, fwd=fwd, kinks=kinks)
        for k in range(5):
            assert abs(flt.coefficients[k] - float(ref[k])) <= flt.errors[k] + 1e-300, (k, ref, flt)
        if e is None:
            cb, eb = batch_line_taylor(problem, arrays[0][None], 4, fwd=fwd, kinks=kinks)
            cs, es = sparse_line_taylor(problem, fwd, kinks, arrays[0], 4)
            for k in range(5):
                assert abs(cb[0, k] - float(ref[k])) <= eb[0, k] + 1e-300
                assert abs(cs[k] - float(ref[k])) <= es[k] + 1e-300


def test_gt15_cubic_saddle():
    """REFERENCES GT-15: the linear 1-1-1-1 net at theta = 0 with x = y = (-1, 1) has a PSD Hessian, yet
    along w1 = w2 = w3 = t the mean loss is (1 - t^3)^2 / 2: c_3 = -1 (hand-derived). The tool must
    find a cubic descent, exactly, and verify must accept it."""
    case = by_name("gt15")
    report = run_case(case)
    assert report.verdict.value == "saddle", report.reason
    assert report.flags["method"] in ("higher_order", "targeted_search")
    ref = report.refutation
    assert ref["leading_order"] == 3 and ref["local"] == "exact"
    model = exact.to_float_arrays(case.layers)
    X, y = exact.X_to_numpy(case.X), exact.y_to_numpy(case.y, case.loss)
    assert certify.verify(report.to_dict(), model, X, y).ok
    d = [Fraction(float(v)) for v in ref["direction"]]
    c = degenerate.taylor(case.layers, case.X, case.y, "identity", "square", [d], K=4)
    assert c[1] == 0 and c[2] == 0 and c[3] < 0
    t = Fraction(float(ref["step"]))
    assert exact.loss(exact.perturbed(case.layers, d, t), case.X, case.y, "identity", "square") < case.loss_mean


def _origin(widths, activation):
    return [(np.zeros((widths[l + 1], widths[l])), np.zeros(widths[l + 1])) for l in range(len(widths) - 1)]


@pytest.mark.parametrize("activation", ["relu", "identity", "leaky_relu:0.25"])
def test_origin_of_a_two_hidden_layer_net_is_a_cubic_saddle(activation):
    """theta = 0 of a 1-1-1-1 net, x = (-1, 1), y = (-1, 1) (sum y = 0). Every unit sits on its kink at
    every sample, the gradient is 0 (f moves only through b3 at first order and sum y = 0) and the
    Hessian is PSD (only (db3)^2 survives). Along w1 = w2 = w3 = t: f = t^3 h(h(x)), so
    L = 1/2 - t^3 mean(y h(h(x))) + O(t^6): c_3 = -1/2 for ReLU (h(h(x)) = (0, 1)), -1 for the identity,
    -(1 + 1/16)/2 for leaky ReLU 1/4 (hand-derived)."""
    model = _origin([1, 1, 1, 1], activation)
    X = np.array([[-1.0], [1.0]])
    y = np.array([-1.0, 1.0])
    report = certify.check(model, X, y, activation=activation, loss="square")
    assert report.verdict.value == "saddle", report.reason
    ref = report.refutation
    assert ref["leading_order"] == 3 and ref["local"] == "exact"
    assert certify.verify(report.to_dict(), model, X, y).ok
    act = {"relu": "relu", "identity": "identity", "leaky_relu:0.25": ("leaky_relu", Fraction(1, 4))}[activation]
    layers = [([[Fraction(0)]], [Fraction(0)])] * 3
    Xq, yq = [[Fraction(-1)], [Fraction(1)]], [Fraction(-1), Fraction(1)]
    expected = {"relu": Fraction(-1, 2), "identity": Fraction(-1),
                "leaky_relu:0.25": -(1 + Fraction(1, 16)) / 2}[activation]
    assert degenerate.taylor(layers, Xq, yq, act, "square", [[1, 0, 1, 0, 1, 0]], K=3)[3] == expected
    d = [Fraction(float(v)) for v in ref["direction"]]
    c = degenerate.taylor(layers, Xq, yq, act, "square", [d], K=4)
    assert c[1] == c[2] == 0 and c[3] < 0


def test_origin_of_a_three_hidden_layer_linear_net_is_a_quartic_saddle():
    """Identity 1-1-1-1-1 at 0, x = y = (-1, 1): along all four weights = t, f = t^4 x and
    L = (1 - t^4)^2 / 2: the leading term is of even degree 4 but negative (hand-derived)."""
    model = _origin([1, 1, 1, 1, 1], "identity")
    X = np.array([[-1.0], [1.0]])
    y = np.array([-1.0, 1.0])
    report = certify.check(model, X, y, activation="identity", loss="square")
    assert report.verdict.value == "saddle", report.reason
    assert report.refutation["leading_order"] == 4
    assert certify.verify(report.to_dict(), model, X, y).ok


def test_a_global_minimum_with_a_singular_hessian_is_not_refuted():
    """Identity 1-1-1 at 0 with x = (-1, 0, 1), y = (1, -2, 1): sum y = 0 and sum x y = 0, so the best
    affine fit is f = 0 and theta = 0 is a global minimum (a linear net is affine in x). Its Hessian is
    singular and the higher-order terms along its null directions are >= 0: no refutation may appear."""
    model = _origin([1, 1, 1], "identity")
    X = np.array([[-1.0], [0.0], [1.0]])
    y = np.array([1.0, -2.0, 1.0])
    report = certify.check(model, X, y, activation="identity", loss="square")
    assert report.verdict.value in ("local_min", "inconclusive"), report.reason


def test_higher_order_never_certifies():
    """The higher-order kind refutes or says why not; it has no local_min branch."""
    import inspect
    from certify.secondorder import higher_order, search, escape_any
    for module in (higher_order, search, escape_any):
        assert '"local_min"' not in inspect.getsource(module)
