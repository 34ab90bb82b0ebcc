"""Cross-entropy / logistic without weight decay: no minimum while every sample is classified correctly.

Hand-derived: a network whose outputs are exact integers, so each sample's loss is
``log1p(sum_j exp(f_j - f_y))`` to the last digit by ``math``; scaling the last layer by ``s``
multiplies every margin by ``s`` and lowers every such term. The float formula ``lse - f_y`` rounds
a loss of 4e-18 to exactly 0, and a first-order test cannot see a gradient below rounding.
"""

import math

import numpy as np
import pytest

import certify
from certify.data import Dataset, Problem
from certify.driver import check_problem
from certify.evaluate import loss_with_bound
from certify.network import Network


def _problem(loss="cross_entropy", weight_decay=0.0, flip=False):
    # 1 -> 1 -> 2, ReLU: h = relu(x), f = (0, -40 h) + (0, 0); x = 1, 2 give f = (0, -40), (0, -80)
    W1, b1 = np.array([[1.0]]), np.array([0.0])
    if loss == "cross_entropy":
        W2, b2 = np.array([[0.0], [-40.0]]), np.array([0.0, 0.0])
        y = np.array([1 if flip else 0, 0])
    else:   # logistic: f = 40 h, y = +1
        W2, b2 = np.array([[40.0]]), np.array([0.0])
        y = np.array([-1.0 if flip else 1.0, 1.0])
    X = np.array([[1.0], [2.0]])
    return Problem(Network([W1, W2], [b1, b2], "relu"), Dataset(X, y), loss, weight_decay)


@pytest.mark.parametrize("loss", ["cross_entropy", "logistic"])
def test_tiny_loss_is_evaluated_to_a_relative_accuracy(loss):
    p = _problem(loss)
    exact = (math.log1p(math.exp(-40.0)) + math.log1p(math.exp(-80.0))) / 2
    v = loss_with_bound(p, p.theta)
    assert abs(v.value - exact) <= v.error
    assert v.error < 1e-12 * exact


@pytest.mark.parametrize("loss", ["cross_entropy", "logistic"])
def test_correctly_classified_without_weight_decay_is_refuted_by_scaling(loss):
    p = _problem(loss)
    rep = check_problem(p)
    assert rep.verdict.value == "not_stationary", rep.reason
    ref = rep.refutation
    assert ref["kind"] == "output_scaling" and ref["directional_derivative"] < 0
    # the stored point, evaluated independently: doubling the last layer halves nothing but the margins
    before = (math.log1p(math.exp(-40.0)) + math.log1p(math.exp(-80.0))) / 2
    after = (math.log1p(math.exp(-80.0)) + math.log1p(math.exp(-160.0))) / 2
    assert ref["loss_before"] == pytest.approx(before, rel=1e-12)
    assert ref["loss_after"] == pytest.approx(after, rel=1e-12)
    assert certify.verify(rep.to_dict(), p.network, data=p.data).ok


def test_scaling_refutation_needs_every_sample_correct_and_no_weight_decay():
    from certify.refute import output_scaling
    assert output_scaling(_problem(flip=True)) is None
    assert output_scaling(_problem(weight_decay=1e-3)) is None
    assert output_scaling(_problem(loss="logistic", flip=True)) is None


def test_tampered_scaling_refutation_fails_verify():
    p = _problem()
    rep = check_problem(p).to_dict()
    bad = dict(rep, verdict="local_min")
    assert not certify.verify(bad, p.network, data=p.data).ok
    d = np.asarray(rep["refutation"]["direction"]).copy()
    d[0] = 1.0
    bad = dict(rep, refutation=dict(rep["refutation"], direction=d.tolist()))
    assert not certify.verify(bad, p.network, data=p.data).ok
    bad = dict(rep, problem=dict(rep["problem"], weight_decay=1e-3))
    assert not certify.verify(bad, p.network, data=p.data).ok
