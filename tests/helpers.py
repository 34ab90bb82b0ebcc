"""Bridges from the exact reference cases to certify's inputs."""

from __future__ import annotations

import numpy as np

from certify.data import Problem
from certify.network import Network
from certify.tangent import loss_gradient
from tests import exact


def activation_spec(activation) -> str:
    if isinstance(activation, (tuple, list)):
        return f"{activation[0]}:{float(activation[1])!r}"
    return activation


def case_inputs(case) -> dict:
    """Keyword arguments for ``certify.check`` from a :class:`tests.reference.cases.Case`."""
    layers = exact.to_float_arrays(case.layers)
    return dict(model=layers, X=exact.X_to_numpy(case.X), y=exact.y_to_numpy(case.y, case.loss),
                activation=activation_spec(case.activation), loss=case.loss,
                weight_decay=float(case.weight_decay))


def run_case(case, **kwargs):
    import certify
    args = case_inputs(case)
    model = args.pop("model")
    X, y = args.pop("X"), args.pop("y")
    return certify.check(model, X, y, **args, **kwargs)


# ============================================================================ a trainer for small problems
def adam(problem: Problem, steps: int, lr: float = 1e-2) -> Problem:
    """Full-batch Adam on ``problem`` (autograd's convention at kinks: the ``s_pos`` slope)."""
    th = problem.theta.copy()
    m = np.zeros_like(th)
    v = np.zeros_like(th)
    for t in range(1, steps + 1):
        g = loss_gradient(problem.at(th))
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        th -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-12)
    return problem.at(th)


def init_network(widths, activation, seed, dead_unit=False) -> Network:
    """A seeded random network (weights ~ N(0, 1/fan_in), biases 0.1); ``dead_unit``: unit 0 of layer 1
    has zero weights in and out."""
    rng = np.random.default_rng(seed)
    Ws = [rng.standard_normal((b, a)) / np.sqrt(a) for a, b in zip(widths[:-1], widths[1:])]
    bs = [np.full(b, 0.1) for b in widths[1:]]
    if dead_unit:  # a unit with zero weights in and out: gradient descent never moves it
        Ws[0][0] = 0.0
        bs[0][0] = 0.0
        Ws[1][:, 0] = 0.0
    return Network(Ws, bs, activation)
