"""The exact structure of a small problem, handed to the float pipeline.

When exact arithmetic fits (:func:`certify.exact.fits`), the kinks are the *exact* zeros -- a value
``2^-60`` away from a kink is no kink, whatever float64 computes for it -- and the forward pass the
float stages read is the *correctly rounded* exact one, so every unit's side (the sign of its
pre-activation) is the exact side. The float stages then build their models on the exact structure;
what they certify is re-checked in exact arithmetic (:func:`certify.exact.exact_first_order_decision`).
"""

from __future__ import annotations

from dataclasses import dataclass


from ..data import Problem
from ..kinks import KinkStructure
from ..network import ForwardPass
from .forward import ExactForward, ExactProblem, exact_problem, forward
from .kinks import NearKinks, exact_kinks


@dataclass
class ExactStructure:
    """The exact problem and forward pass, the exact kinks, the nearest non-kinks, and the float
    forward pass with correctly rounded pre-activations (its ``scale`` is the float absolute pass)."""

    ep: ExactProblem
    efwd: ExactForward
    kinks: KinkStructure
    near: NearKinks
    fwd: ForwardPass


def exact_structure(problem: Problem, fwd: ForwardPass) -> ExactStructure:
    """Exact kinks and a sign-exact float forward pass (``fwd`` must have been made ``with_scale``)."""
    ep = exact_problem(problem)
    efwd = forward(ep)
    kinks, near = exact_kinks(ep, efwd)
    act = problem.network.activation
    pre = [z.to_float() for z in efwd.pre]
    post = [problem.X] + [act(z) for z in pre[:-1]]
    return ExactStructure(ep=ep, efwd=efwd, kinks=kinks, near=near,
                          fwd=ForwardPass(pre=pre, post=post, scale=fwd.scale))


def exact_kinks_summary(structure: ExactStructure) -> dict:
    """The report's ``kinks`` section for exact kinks (tolerance ``"exact"``)."""
    out = structure.kinks.summary()
    out.update({"tolerance": "exact", "exact": structure.kinks.n_total, "within_rounding": structure.kinks.n_total,
                "near": 0, "nearest_non_kink": structure.near.to_dict()})
    return out


def structure_for(problem: Problem, tolerance):
    """``(fwd, kinks)`` as a report with kink tolerance ``tolerance`` made them: ``"exact"`` (the exact
    structure and a sign-exact forward pass), else :func:`certify.kinks.find_kinks` at that tolerance."""
    from ..kinks import find_kinks
    fwd = problem.network.forward(problem.X, with_scale=True)
    if tolerance == "exact":
        st = exact_structure(problem, fwd)
        return st.fwd, st.kinks
    return fwd, find_kinks(problem, fwd, tolerance)
