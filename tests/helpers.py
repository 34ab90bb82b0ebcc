"""Bridges from the exact reference cases to certify's inputs."""

from __future__ import annotations

import numpy as np

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
