"""Instance families with answers known independently of certify.

Every :class:`BenchInstance` has an ``id`` (unique, stable: it encodes the generator's arguments
and seed), a ``family``, ``params`` (p, n, K planned kinks, depth, activation, loss, variant, ...),
``build()`` returning ``(network, X, y, activation, loss, weight_decay)`` (``network`` is a list of
``(W, b)`` pairs in certify's ``(out, in)`` orientation), and ``ground_truth()`` returning
``(expected, derivation)``. ``expected`` is ``"local_min"``, ``"saddle"``, ``"not_stationary"``,
``"not_local_min"`` (a saddle or a non-stationary point: only a decrease is known) or ``None``
(unknown: the instance counts for completeness and time only). The derivation is one of

* ``"exact construction"``: a proof written next to the generator (integers / dyadic numbers,
  so the float64 point *is* the point of the proof);
* ``"brute-force oracle"``: :func:`tests.bruteforce.oracle` (all ``2^K`` pieces, every answer
  re-proved in exact rational arithmetic);
* ``"reference case"``: :mod:`tests.reference.cases` (hand-derived, re-checked by ``tests.exact``);
* ``"long search"``: a search for descent whose find is proved in exact arithmetic
  (:class:`benchmarks.numerics.ExactNet`: ``L'(theta; d) < 0`` exactly) or, for the smooth
  losses, in float64 with a margin far above the rounding error. A search that finds nothing
  leaves the answer unknown: certify's own output is never used as ground truth.

  Semantics at near-kinks. A float64 checkpoint (polished or not) has pre-activations such as
  ``-8e-16`` where the exact point would have 0; exactly, such a point is differentiable and,
  when the kink carried a multiplier, *not* stationary -- but the descent lives in a ball of
  radius ~1e-15 and is a rounding artefact. certify (and the enumeration and SOSP-Check baselines)
  decide with near-kinks, within a relative tolerance, treated as exact. So a candidate counts as
  a proof only if it also gives a float64 decrease of the loss at a radius of at least
  ``1e-8 ||theta||`` (a descent of a size that rounding cannot explain). A first version without
  that filter labelled three polished points ``not_stationary`` that certify, enumeration and
  SOSP-Check all call ``local_min`` (see REPORT.md).

Families
--------
reference        the 35 hand-derived cases (seed papers' constructions GT-1..GT-16 and more)
bruteforce       random tiny one-hidden-layer nets with exact kinks, decided by the oracle
affine_cell      all units strictly active: a local minimum at the least-squares affine fit
                 (residuals orthogonal to [X 1] by construction), any depth and activation, p up to
                 10^5, n up to 10^4; variants ``saddle`` (a zero-output unit that can escape) and
                 ``not_stationary`` (one target moved)
affine_kinks     the same with K samples exactly on first-layer kinks, fitted exactly: still a
                 local minimum (K up to 1,000, depth 1-3)
path_cells       :func:`benchmarks.instances.pattern_cells`: quadruples of samples at their own affine fit
                 under varying activation patterns (layers 1 and top nonlinear), convex kinks with nonzero
                 residual in both, hundreds to 2,000 zero-loss kinks, depth 1-3, several outputs, hinge;
                 p up to 9e4; variants not_stationary / concave (an exact L' < 0) and saddle (an escape unit)
loss_kinks       other losses (hinge, absolute, multiclass hinge, logistic, cross-entropy) at
                 minima of the loss over all output vectors (groups of equal inputs), with loss
                 kinks where the loss has them; ``not_stationary`` variants
hinge_margins    :func:`benchmarks.instances.hinge_exact_margins`: K convex hinge kinks (10-1,000)
concave_kinks    :func:`benchmarks.instances.concave_unit_kinks`: concave unit kinks, LIKQ fails
kink_scaling     small hinge nets with K = 2..20 kinks at a d-stationary point (time against K,
                 the piece-enumeration comparison)
smooth_scale     :func:`benchmarks.instances.random_smooth`: no kink, not stationary, p to 10^5
trained          networks from a trainer: PyTorch checkpoints on scikit-learn's bundled data sets
                 (:mod:`benchmarks.trained`; every loss, depth 1-3, p 10^1.5-10^5, each as stored and
                 with ``polish=True``; truth unknown, judged by ``certify.verify`` and a neighbourhood
                 probe) and Iris trained by numpy Adam and SGD, as trained and polished
sosp_setting     SOSP-Check's own setting: Gaussian data, one hidden ReLU layer, square loss,
                 trained by Adam then polished ((d_x, d_h, m) from Yun et al.'s Table 1, scaled)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import numerics as nm

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ("local_min", "saddle", "not_stationary", "not_local_min")


@dataclass(eq=False)
class BenchInstance:
    """One benchmark instance (see the module docstring)."""

    id: str
    family: str
    params: dict
    make: Callable[[], dict] = field(repr=False)
    _built: Optional[dict] = field(default=None, repr=False)
    #: a family's own certify run (options, extra soundness checks), called as ``run_certify(data,
    #: budget_s)`` instead of :class:`benchmarks.baselines.Certify`; its record may set ``wrong``
    run_certify: Optional[Callable] = field(default=None, repr=False)
    #: the methods that run on this instance (None: every method that applies)
    methods: Optional[tuple] = None

    def _get(self) -> dict:
        if self._built is None:
            self._built = self.make()
            b = self._built
            shp = [np.asarray(W).shape for W, _ in b["network"]]
            self.params.setdefault("p", nm.n_params(shp))
            self.params.setdefault("n", int(np.asarray(b["X"]).shape[0]))
            self.params.setdefault("depth", len(shp) - 1)
            self.params.setdefault("activation", str(b["activation"]))
            self.params.setdefault("loss", b["loss"])
        return self._built

    def build(self) -> tuple:
        """``(network, X, y, activation, loss, weight_decay)``."""
        b = self._get()
        return b["network"], b["X"], b["y"], b["activation"], b["loss"], b.get("weight_decay", 0.0)

    def ground_truth(self) -> tuple[Optional[str], str]:
        """``(expected, derivation)``; computed once (the oracle or a search may run here)."""
        b = self._get()
        if "expected" not in b:
            b["expected"], b["derivation"] = b.pop("truth")()
        return b["expected"], b["derivation"]

    def release(self) -> None:
        """Drop the built arrays (the ground truth is kept)."""
        if self._built is not None:
            keep = {k: self._built[k] for k in ("expected", "derivation") if k in self._built}
            if keep:
                self.make = _constant(self.make, keep)
            self._built = None


def _constant(make, keep):
    def again():
        b = make()
        b.pop("truth", None)
        b.update(keep)
        return b
    return again


def _known(expected, derivation):
    return lambda: (expected, derivation)


# ============================================================================ reference cases
def reference_instances() -> list[BenchInstance]:
    from tests import exact
    from tests.helpers import activation_spec
    from tests.reference.cases import CASES

    out = []
    for case in CASES:
        def make(case=case):
            layers = exact.to_float_arrays(case.layers)
            expected = case.verdict
            how = "reference case (hand-derived, exact)"
            if case.allow_inconclusive:
                how += "; certify may leave it undecided"
            return {"network": layers, "X": exact.X_to_numpy(case.X), "y": exact.y_to_numpy(case.y, case.loss),
                    "activation": activation_spec(case.activation), "loss": case.loss,
                    "weight_decay": float(case.weight_decay), "truth": _known(expected, how)}
        out.append(BenchInstance(f"reference/{case.name}", "reference",
                                 {"case": case.name, "K": None, "variant": case.verdict}, make))
    return out


# ============================================================================ brute-force oracle
def bruteforce_instances(seeds) -> list[BenchInstance]:
    out = []
    for seed in seeds:
        def make(seed=seed):
            from tests import bruteforce as bf
            inst = bf.random_instance(seed)
            args = inst.certify_args()

            def truth():
                o = bf.oracle(inst)
                if o.verdict == "unsure":
                    return None, f"brute-force oracle: unsure ({o.reason})"
                return o.verdict, f"brute-force oracle (exact; {o.n_kinks} kinks, {o.reason})"
            return {"network": args["model"], "X": args["X"], "y": args["y"], "activation": args["activation"],
                    "loss": args["loss"], "weight_decay": 0.0, "truth": truth,
                    "meta": {"bf_family": inst.family}}
        out.append(BenchInstance(f"bruteforce/seed{seed}", "bruteforce", {"seed": seed, "K": None}, make))
    return out


# ============================================================================ affine cells
def _distinct_sign_rows(rng, h: int, m: int) -> np.ndarray:
    """``h`` distinct rows of +-1 of length m (needs 2**m >= h)."""
    if m < 63 and 2 ** m < h:
        raise ValueError(f"need 2^{m} >= {h} distinct sign rows")
    rows, seen = [], set()
    while len(rows) < h:
        r = rng.choice([-1.0, 1.0], size=m)
        key = r.tobytes()
        if key not in seen:
            seen.add(key)
            rows.append(r)
    return np.array(rows)


def affine_cell(d: int = 10, h: int = 10, n: int = 1000, *, depth: int = 1, activation: str = "relu",
                variant: str = "min", K: int = 0, seed: int = 0) -> dict:
    """All hidden units strictly active at every regular sample; ``K`` samples on first-layer kinks.

    Construction (integers and halves only, so float64 is exact):

    * ``W1 = [1 | S]`` with distinct rows ``S_j in {-1,+1}^(d-1)``, ``b1_j in {0, 1}``; deeper layers
      ``W_l in {0, 1}``, ``b_l = 1``; output weights in ``{-2, -1, 1, 2}``, output bias 0.
    * Regular samples have ``x_0 = B = 3(d-1) + 2`` and ``|x_k| <= 3`` elsewhere: every first-layer
      pre-activation is an integer ``>= 1``, every deeper one ``>= 1``. They come in quadruples
      ``c + e, c - e, c' + e, c' - e`` (``e`` the unit vector of feature 1) with residuals
      ``f - y = (s, -s, -s, s)``: ``sum r_i = 0`` and ``sum r_i x_i = 0`` exactly.
    * Kink sample ``k`` of unit ``j``: ``x_rest = -t S_j`` (``t >= 1``), ``x_0 = t(d-1) - b1_j``, so
      ``z_kj = 0`` exactly and ``z_kl = t(d - 1 - S_l . S_j) + b1_l - b1_j >= 2t - 1 >= 1`` for
      ``l != j``; its target is fitted exactly (``y_k = f(x_k)``).

    Proof that theta is a local minimum (variant ``min``). Near theta every regular sample keeps
    every unit strictly active, so ``f_theta'(x_i) = A(theta') (x_i, 1)`` for one affine map
    ``A(theta')``. Because the regular residuals are orthogonal to the columns of ``[X 1]``,
    ``A(theta)`` is a least-squares affine fit of the regular samples, so their loss at theta' is
    at least their loss at theta; the kink samples have loss 0 at theta and >= 0 anywhere. Hence
    ``L(theta') >= L(theta)`` near theta. (Identity activation: the same with no kink samples.)

    Variant ``not_stationary``: one regular target moved by 1/2, so ``dL/dc = mean(f - y) != 0`` for
    the output bias ``c`` (no kink involves ``c`` at first order with the square loss).

    Variant ``saddle`` (depth 1, activation with a kink): one more hidden unit ``j*`` with output
    weight 0, input weights 0 on features 0 and 1 and even integers elsewhere, odd bias: its
    pre-activations are odd integers (never 0), equal on both members of every pair ``c +- e``.
    Then ``dL/da_j* = mean r_i h(z_ij*) = 0`` (pairs cancel) and every other partial derivative is 0
    as in ``min``: the gradient is exactly 0 and L is differentiable at theta (the kink samples
    have residual 0). In the plane of ``(a_j*, w_j*1)`` the Hessian is
    ``[[mean h(z)^2, beta], [beta, 0]]`` with ``beta = mean r_i h'(z_ij*) x_i1 != 0`` (checked
    exactly): indefinite, and L is C^2 on that plane near theta, so theta is a saddle.
    """
    if variant not in ("min", "saddle", "not_stationary"):
        raise ValueError(variant)
    act = nm.parse_activation(activation)
    if act[0] == "identity" and K:
        raise ValueError("identity activation has no kinks")
    if variant == "saddle" and (depth != 1 or act[0] == "identity"):
        raise ValueError("saddle variant: depth 1 and an activation with a kink")
    rng = np.random.default_rng(seed)
    n_reg = n - K
    if n_reg < 4 or n_reg % 4:
        raise ValueError("n - K must be a positive multiple of 4")
    S = _distinct_sign_rows(rng, h, d - 1)
    W1 = np.concatenate([np.ones((h, 1)), S], axis=1)
    b1 = rng.integers(0, 2, size=h).astype(np.float64)
    weights, biases = [W1], [b1]
    width = h
    for _ in range(depth - 1):
        h2 = max(2, h // 2)
        weights.append(rng.integers(0, 2, size=(h2, width)).astype(np.float64))
        biases.append(np.ones(h2))
        width = h2
    a = rng.choice([-2.0, -1.0, 1.0, 2.0], size=width)
    weights.append(a[None, :])
    biases.append(np.zeros(1))
    B = 3 * (d - 1) + 2
    # regular samples in quadruples
    q = n_reg // 4
    C1 = rng.integers(-2, 3, size=(q, d - 1)).astype(np.float64)
    C2 = rng.integers(-2, 3, size=(q, d - 1)).astype(np.float64)
    E = np.zeros(d - 1)
    E[0] = 1.0
    rest = np.empty((n_reg, d - 1))
    rest[0::4], rest[1::4], rest[2::4], rest[3::4] = C1 + E, C1 - E, C2 + E, C2 - E
    Xreg = np.concatenate([np.full((n_reg, 1), float(B)), rest], axis=1)
    s = rng.choice([-1.0, -0.5, 0.5, 1.0], size=q)
    r = np.empty(n_reg)
    r[0::4], r[1::4], r[2::4], r[3::4] = s, -s, -s, s
    # kink samples
    Xk = np.zeros((K, d))
    units = np.arange(K) % h
    tcount = np.zeros(h, dtype=int)
    for k, j in enumerate(units):
        tcount[j] += 1
        t = tcount[j]
        Xk[k, 1:] = -t * S[j]
        Xk[k, 0] = t * (d - 1) - b1[j]
    X = np.concatenate([Xreg, Xk], axis=0)
    layers = list(zip(weights, biases))
    escape = None
    if variant == "saddle":
        for _ in range(100):
            u = 2.0 * rng.integers(-2, 3, size=d)
            u[0] = u[1] = 0.0
            bj = float(2 * rng.integers(-3, 3) + 1)
            z = X @ u + bj
            hz = nm.activate(z, act)
            sl = np.where(z > 0, 1.0, nm.slopes(act)[1])
            rr = np.concatenate([r, np.zeros(K)])
            if np.sum(rr * hz) != 0:
                continue
            beta = float(np.sum(rr * sl * X[:, 1]))
            if beta != 0 and np.any(z > 0) and np.any(z < 0):
                escape = (u, bj, beta)
                break
        if escape is None:
            raise RuntimeError("no escape unit found")
        u, bj, _ = escape
        W1e = np.concatenate([W1, u[None, :]], axis=0)
        b1e = np.concatenate([b1, [bj]])
        W2e = np.concatenate([weights[-1], [[0.0]]], axis=1)
        layers = [(W1e, b1e), (W2e, biases[-1])]
    pre, _ = nm.forward(layers, X, act)
    F = pre[-1][:, 0]
    # exactness and structure checks (integers below 2^52, signs as designed)
    assert np.max(np.abs(F)) < 2.0 ** 50
    z1 = pre[0][:, :h]
    assert np.all(z1[:n_reg] >= 1)
    if K:
        zk = z1[n_reg:]
        assert np.all(zk[np.arange(K), units] == 0)
        mask = np.ones_like(zk, dtype=bool)
        mask[np.arange(K), units] = False
        assert np.all(zk[mask] >= 1)
    for zl in pre[1:-1]:
        assert np.all(zl >= 1)
    res = np.concatenate([r, np.zeros(K)])
    if variant == "not_stationary":
        res[0] += 0.5
    y = F - res
    assert np.array_equal(F - y, res)
    expected = {"min": "local_min", "saddle": "saddle", "not_stationary": "not_stationary"}[variant]
    return {"network": layers, "X": X, "y": y, "activation": activation, "loss": "square",
            "weight_decay": 0.0, "truth": _known(expected, "exact construction (affine cell)")}


def affine_instances(specs, family="affine_cell") -> list[BenchInstance]:
    out = []
    for spec in specs:
        spec = dict(spec)
        spec.setdefault("seed", 0)
        sid = "_".join(f"{k}{v}" for k, v in spec.items())
        params = {"K": spec.get("K", 0), "variant": spec.get("variant", "min")}
        out.append(BenchInstance(f"{family}/{sid}", family, params, lambda spec=spec: affine_cell(**spec)))
    return out


# ============================================================================ other losses
def loss_kinks(loss: str = "hinge", *, d: int = 4, h: int = 6, groups: int = 32, activation: str = "relu",
               variant: str = "min", seed: int = 0) -> dict:
    """Minima of the loss over all output vectors, for every loss (groups of equal inputs).

    The network is an affine cell as in :func:`affine_cell` (every unit strictly active). The data
    are ``groups`` distinct inputs, each repeated with targets chosen so that the outputs
    ``f(x)`` minimise the *group's* loss over every value of ``f(x)``; then no parameter anywhere
    has a lower loss (a global, hence local, minimum), whatever the network:

    * ``absolute``: targets ``f(x)`` and ``f(x) + 1`` (or ``f(x) - 1`` and ``f(x) + 1``): the group
      loss ``|f - y1| + |f - y2|`` is minimal for every ``f`` between them (a loss kink at
      ``f = y1``);
    * ``hinge``: labels +1 and -1 with ``|f(x)| <= 1``: ``max(0, 1 - f) + max(0, 1 + f) >= 2`` with
      equality there; the output layer is made constant (units in pairs with opposite output
      weights) and its bias set to 1, so every +1 sample sits at margin exactly 1 (a loss kink);
    * ``multiclass_hinge`` (C = 3): every class once per input and equal outputs: each group loss
      ``sum_y max_j (f_j + [j != y]) - f_y >= sum_y (f_{y+1} + 1 - f_y) = C``, equality at equal
      outputs (ties: loss kinks);
    * ``logistic``: labels +1 and -1 with ``f(x) = 0`` (constant output layer, bias 0);
    * ``cross_entropy`` (C = 3): every class once per input, equal outputs (identical output rows).

    Variant ``not_stationary``: labels changed so that moving one output bias lowers the loss at
    first order (``absolute``: a target moved past ``f``; ``hinge``: a +1 label flipped, so one
    group has two -1 labels at ``f = 1``; ``logistic``: a sample dropped; ``cross_entropy`` /
    ``multiclass_hinge``: in every group class 0 replaced by class 1):
    ``L'(theta; +-e_{c_k}) < 0`` (checked exactly for the rational losses).
    """
    rng = np.random.default_rng(seed)
    act = nm.parse_activation(activation)
    C = 3 if loss in ("multiclass_hinge", "cross_entropy") else 1
    constant = loss in ("hinge", "logistic", "multiclass_hinge", "cross_entropy")
    hh = h if not constant else 2 * (h // 2)
    S = _distinct_sign_rows(rng, hh, d - 1)
    if constant:
        S[1::2] = S[0::2]                                          # units in identical pairs
    W1 = np.concatenate([np.ones((hh, 1)), S], axis=1)
    b1 = rng.integers(0, 2, size=hh).astype(np.float64)
    if constant:
        b1[1::2] = b1[0::2]
        a = np.repeat(rng.choice([1.0, 2.0], size=hh // 2), 2) * np.tile([1.0, -1.0], hh // 2)
        W2 = np.tile(a, (C, 1))
        b2 = np.full(C, 1.0 if loss == "hinge" else 0.0)
    else:
        W2 = rng.choice([-2.0, -1.0, 1.0, 2.0], size=(1, hh))
        b2 = np.zeros(1)
    layers = [(W1, b1), (W2, b2)]
    B = 3 * (d - 1) + 2
    Xg = []
    seen = set()
    while len(Xg) < groups:
        x = np.concatenate([[float(B)], rng.integers(-3, 4, size=d - 1).astype(np.float64)])
        if x.tobytes() not in seen:
            seen.add(x.tobytes())
            Xg.append(x)
    Xg = np.array(Xg)
    pre, _ = nm.forward(layers, Xg, act)
    assert np.all(pre[0] >= 1)
    Fg = pre[-1]
    if loss == "absolute":
        X = np.repeat(Xg, 2, axis=0)
        f = np.repeat(Fg[:, 0], 2)
        lo = np.where(rng.random(groups) < 0.5, 0.0, -1.0)          # kink (0) or interior (-1)
        y = f + np.ravel(np.column_stack([lo, np.ones(groups)]))
        if variant == "not_stationary":
            y[0] = f[0] + 2.0                                       # both targets above f: push f up
    elif loss in ("hinge", "logistic"):
        X = np.repeat(Xg, 2, axis=0)
        y = np.tile([1.0, -1.0], groups)
        if variant == "not_stationary":
            if loss == "hinge":
                y[0] = -1.0                                         # both labels -1 at f = 1: lower f
            else:
                X, y = X[1:], y[1:]                                 # a lone -1 at f = 0
    else:
        X = np.repeat(Xg, C, axis=0)
        y = np.tile(np.arange(C), groups).astype(np.int64)
        if variant == "not_stationary":
            y[0::C] = 1                                             # every group: class 1 twice, class 0 absent
    if loss in ("logistic", "cross_entropy"):
        how = "exact construction (output-space minimum; smooth loss, gradient in f exactly 0 per group)"
        if variant == "not_stationary":
            how = "exact construction (a group whose loss gradient in f is nonzero; output bias descends)"
    else:
        how = "exact construction (output-space minimum)"
        if variant == "not_stationary":
            ex = nm.ExactNet(layers, X, y, activation, loss)
            c_dir = np.zeros(nm.n_params(nm.shapes(layers)))
            vals = []
            for k in range(C):
                for sgn in (1.0, -1.0):
                    c_dir[:] = 0.0
                    c_dir[c_dir.size - C + k] = sgn
                    vals.append(ex.directional_derivative(c_dir))
            assert min(vals) < 0, vals
            how = f"exact construction (L'(theta; +-e_c) = {min(vals)} < 0, exact)"
    expected = "local_min" if variant == "min" else "not_stationary"
    return {"network": layers, "X": X, "y": y, "activation": activation, "loss": loss, "weight_decay": 0.0,
            "truth": _known(expected, how)}


def loss_instances(specs) -> list[BenchInstance]:
    out = []
    for spec in specs:
        spec = dict(spec)
        spec.setdefault("seed", 0)
        sid = "_".join(f"{k}{v}" for k, v in spec.items())
        out.append(BenchInstance(f"loss_kinks/{sid}", "loss_kinks",
                                 {"K": None, "variant": spec.get("variant", "min")},
                                 lambda spec=spec: loss_kinks(**spec)))
    return out


# ============================================================================ escapes and higher order
def _vertex_group(Z: np.ndarray, weights: np.ndarray, rng, tries: int = 64):
    """A row ``i*`` of ``Z`` that a hyperplane separates from every row unequal to it, with a nonzero sum
    of ``weights`` over the rows equal to it; and that hyperplane as ``(u, -u.Z[i*] + delta)``: the exact
    integers of ``Z`` make the check exact. Returns ``(v, members, weight_sum, delta)`` or None."""
    for _ in range(tries):
        u = rng.integers(-7, 8, size=Z.shape[1]).astype(np.float64)
        s = Z @ u
        top = s.max()
        members = np.nonzero(s == top)[0]
        if not np.all(Z[members] == Z[members[0]]):
            continue                       # the maximiser is not one point: try another direction
        rest = s[s < top]
        if rest.size == 0:
            continue
        w = float(np.sum(weights[members]))
        if w == 0:
            continue
        delta = (top - rest.max()) / 2
        v = np.concatenate([u, [-top + delta]])
        return v, members, w, delta
    return None


def escape_deep(d: int = 10, h: int = 8, n: int = 200, *, activation: str = "relu", seed: int = 0) -> dict:
    """A two-hidden-layer local minimum (:func:`affine_cell`, depth 2) with one more layer-2 unit that is
    *silent*: zero incoming weights, bias and outgoing weight, so it sits on its kink at every sample.

    Proof that theta is a saddle (by hand; the numbers are checked exactly here). Every gradient entry
    and every kink coefficient is 0 as in :func:`affine_cell` (the new unit's outgoing weight is 0), so
    theta is d-stationary. Let ``x1_i`` be the layer-1 outputs (integers) and ``r_i = f_i - y_i``. Pick
    a sample group ``g`` (equal ``x1``) that a hyperplane ``u . x1 = top - delta`` separates from all
    others, with ``R = sum_{i in g} r_i != 0``; set ``v = (u, delta - top)``. Along ``theta + t d`` with
    ``d``: the new unit's incoming weights and bias ``+ v``, its outgoing weight ``-sign(R)``, the unit
    outputs ``t relu(v . (x1_i, 1)) = t delta`` on ``g`` and 0 elsewhere, so ``f_i`` moves by
    ``-sign(R) t^2 delta`` on ``g`` only and ``n (L(t) - L) = -|R| delta t^2 + |g| delta^2 t^4 / 2 < 0``
    for small ``t``: ``c_1 = 0, c_2 < 0``, a saddle.
    """
    base = affine_cell(d=d, h=h, n=n, depth=2, activation=activation, variant="min", seed=seed)
    (W1, b1), (W2, b2), (W3, b3) = base["network"]
    act = nm.parse_activation(activation)
    pre, post = nm.forward(base["network"], base["X"], act)
    x1 = post[1]
    r = pre[-1][:, 0] - base["y"]
    found = _vertex_group(x1, r, np.random.default_rng(seed + 7))
    if found is None:
        raise RuntimeError("no separable group with a nonzero residual sum")
    _, members, R, delta = found
    W2e = np.concatenate([W2, np.zeros((1, W2.shape[1]))], axis=0)
    b2e = np.concatenate([b2, [0.0]])
    W3e = np.concatenate([W3, np.zeros((1, 1))], axis=1)
    layers = [(W1, b1), (W2e, b2e), (W3e, b3)]
    how = (f"exact construction (silent layer-2 unit: the escape of group {members.tolist()[:4]}... with residual sum "
           f"{R:g}, n (L(t) - L) = -{abs(R) * delta:g} t^2 + O(t^4))")
    return {"network": layers, "X": base["X"], "y": base["y"], "activation": activation, "loss": "square",
            "weight_decay": 0.0, "truth": _known("saddle", how)}


def escape_shallow(loss: str = "hinge", d: int = 10, h: int = 50, n: int = 400, *, outputs: int = 1,
                   activation: str = "relu", seed: int = 0) -> dict:
    """One hidden layer: ``h`` dead units (strictly negative pre-activations) and one silent unit (zero
    weights: on its kink at every sample), constant output ``f = c``.

    * ``hinge``: ``c = 1``; labels +1 on at least half the samples (margin exactly 1: loss kinks), -1 on
      the rest (loss 2). First order: ``L'(dc) = (n- dc + n+ max(0, -dc)) / n >= 0`` (``n+ >= n-``), every
      other first-order term vanishes: d-stationary, with ``n`` unit kinks and ``n+`` loss kinks of zero
      or convex coefficient. Escape (by hand): a separable input group ``g`` whose labels sum to
      ``S != 0`` would do; we make ``g`` all -1 (the samples beyond the hyperplane get label -1), so
      along the silent unit's weights ``+ v`` and its outgoing weight ``-t``: ``f`` drops by ``t^2 delta``
      on ``g`` only, each of its losses ``2 - t^2 delta``: ``n (L(t) - L) = -|g| delta t^2``.
    * ``square`` with ``outputs = 2``: output 1 fitted exactly (residual 0), output 2 residuals ``r`` with
      ``sum r = 0`` and a separable group of nonzero residual sum ``R``: the escape goes through output 2
      only (outgoing weight ``-sign(R)`` into output 2): ``n (L(t) - L) = -|R| delta t^2 + O(t^4)``.
    """
    rng = np.random.default_rng(seed)
    X = rng.integers(-3, 4, size=(n, d)).astype(np.float64)
    W1 = rng.integers(-2, 3, size=(h, d)).astype(np.float64)
    b1 = -(np.abs(X) @ np.abs(W1).T).max(axis=0) - 1.0          # dead: every pre-activation <= -1
    W1 = np.concatenate([W1, np.zeros((1, d))], axis=0)
    b1 = np.concatenate([b1, [0.0]])
    found = _vertex_group(X, np.ones(n), rng)
    if found is None:
        raise RuntimeError("no separable group")
    v, members, _, delta = found
    C = outputs
    W2 = rng.integers(-2, 3, size=(C, h + 1)).astype(np.float64)
    W2[:, h] = 0.0                                               # the silent unit's outgoing weights
    if loss == "hinge":
        if C != 1:
            raise ValueError("hinge needs one output")
        b2 = np.array([1.0])
        y = np.ones(n)
        y[members] = -1.0
        if 2 * members.size > n:
            raise RuntimeError("the separable group is more than half the samples")
        how = f"exact construction (hinge, silent unit: n (L(t) - L) = -{members.size * delta:g} t^2)"
    elif loss == "square":
        b2 = np.zeros(C)
        r = rng.choice([-1.0, -0.5, 0.5, 1.0], size=n)
        r[members] = 1.0
        others = np.setdiff1d(np.arange(n), members)
        r[others[-1]] -= r.sum()                                # sum r = 0 (dyadic)
        R = float(r[members].sum())
        if R == 0 or others[-1] in members:
            raise RuntimeError("degenerate residuals")
        Y = np.zeros((n, C))
        Y[:, C - 1] = -r                                         # f = 0: residual f - y = r on the last output
        y = Y if C > 1 else Y[:, 0]
        how = (f"exact construction (silent unit escaping through output {C}: n (L(t) - L) = "
               f"-{abs(R) * delta:g} t^2 + O(t^4))")
    else:
        raise ValueError(loss)
    layers = [(W1, b1), (W2, b2)]
    return {"network": layers, "X": X, "y": y, "activation": activation, "loss": loss, "weight_decay": 0.0,
            "truth": _known("saddle", how)}


def origin_deep(d: int = 8, h: int = 64, n: int = 16, *, depth: int = 2, activation: str = "relu",
                seed: int = 0) -> dict:
    """theta = 0 of a ``depth``-hidden-layer net (all weights and biases 0), integer inputs, labels with
    ``sum y = 0`` (dyadic).

    Proof that theta is a saddle (by hand). Every unit sits on its kink at every sample (``n h depth``
    kinks); at first order ``f`` moves only through the output bias and ``sum y = 0``, so the gradient is
    0. Along the chain ``W1[0, i] = W2[0, 0] = ... = s t`` (one path from input ``i`` to the output, sign
    ``s`` on the last weight, all else 0), ``f(x) = s t^{depth+1} h(...h(x_i))`` and
    ``L(t) = L - s t^{depth+1} mean(y h^depth(x_i)) + O(t^{2 depth + 2})``: with the sign ``s`` of
    ``mean(y h^depth(x_i)) != 0`` (checked here exactly) the loss drops for every small ``t > 0``: an odd
    (depth 2) or even but negative (depth 3) leading term, never second order.
    """
    rng = np.random.default_rng(seed)
    act = nm.parse_activation(activation)
    for _ in range(100):
        X = rng.integers(-2, 3, size=(n, d)).astype(np.float64)
        y = rng.choice([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0], size=n)
        y[-1] -= y.sum()
        hx = X.copy()
        for _ in range(depth):
            hx = nm.activate(hx, act)
        m = y @ hx
        if y.sum() == 0 and np.any(m != 0):
            break
    else:
        raise RuntimeError("no data with a nonzero chain term")
    widths = [d] + [h] * depth + [1]
    layers = [(np.zeros((widths[l + 1], widths[l])), np.zeros(widths[l + 1])) for l in range(depth + 1)]
    i = int(np.argmax(np.abs(m)))
    how = (f"exact construction (origin of a depth-{depth} net: chain through input {i}, leading term "
           f"-|{m[i] / n:g}| t^{depth + 1})")
    return {"network": layers, "X": X, "y": y, "activation": activation, "loss": "square", "weight_decay": 0.0,
            "truth": _known("saddle", how)}


def escape_instances(specs) -> list[BenchInstance]:
    makers = {"deep": escape_deep, "shallow": escape_shallow, "origin": origin_deep}
    out = []
    for spec in specs:
        spec = dict(spec)
        kind = spec.pop("kind")
        spec.setdefault("seed", 0)
        sid = kind + "_" + "_".join(f"{k}{v}" for k, v in spec.items())
        out.append(BenchInstance(f"escapes/{sid}", "escapes", {"K": None, "variant": kind},
                                 lambda spec=spec, kind=kind: makers[kind](**spec)))
    return out


def _escape_specs(full: bool) -> list:
    specs = [
        dict(kind="deep", d=10, h=8, n=200),
        dict(kind="deep", d=10, h=8, n=200, activation="leaky_relu:0.25"),
        dict(kind="shallow", loss="hinge", d=4, h=10, n=60),
        dict(kind="shallow", loss="square", outputs=2, d=4, h=10, n=60),
        dict(kind="origin", d=3, h=4, n=8),
        dict(kind="origin", d=3, h=4, n=8, activation="identity"),
        dict(kind="origin", d=3, h=4, n=8, depth=3),
    ]
    if full:
        specs += [
            dict(kind="deep", d=30, h=80, n=1000),                       # p = 5,641
            dict(kind="deep", d=50, h=400, n=2000),                      # p ~ 100,800
            dict(kind="shallow", loss="hinge", d=20, h=250, n=2000),     # p ~ 5,500, 2,000 unit kinks
            dict(kind="shallow", loss="hinge", d=100, h=1000, n=5000),   # p ~ 102,000
            dict(kind="shallow", loss="square", outputs=2, d=100, h=100, n=2000),   # p ~ 10,300
            dict(kind="shallow", loss="square", outputs=2, d=100, h=1000, n=2000),  # p ~ 103,000
            dict(kind="origin", d=8, h=64, n=16),                        # p = 4,801, 2,048 kinks
            dict(kind="origin", d=16, h=128, n=16),                      # p = 18,817
            dict(kind="origin", d=8, h=64, n=16, activation="identity"),
            dict(kind="origin", d=8, h=32, n=16, depth=3),
        ]
    return specs


# ============================================================================ instances.py generators
def _from_instances(inst, truth) -> dict:
    return {"network": inst.model(), "X": inst.X, "y": inst.y, "activation": inst.activation,
            "loss": inst.loss, "weight_decay": inst.weight_decay, "truth": truth}


def search_truth(layers, X, y, activation, loss, weight_decay=0.0, *, seed=0, n_random=64):
    """A bound ``truth()`` callable: :func:`descent_search` (proof or unknown)."""
    def truth():
        res = descent_search(layers, X, y, activation, loss, weight_decay, seed=seed, n_random=n_random)
        return res["expected"], res["derivation"]
    return truth


def hinge_instances(specs) -> list[BenchInstance]:
    from . import instances as gen
    out = []
    for spec in specs:
        spec = dict(spec)
        spec.setdefault("seed", 0)
        family = spec.pop("family", "hinge_margins")

        def make(spec=spec):
            inst = gen.hinge_exact_margins(**spec)
            if spec["variant"] == "zero_gradient":
                truth = _known("local_min", "exact construction (every margin >= 1: loss 0, global minimum)")
            elif spec["variant"] == "stationary":
                truth = _known("local_min", "exact construction (d-stationary: kink pairs with multipliers 1) "
                                            "+ REFERENCES A4.5-1 (one hidden layer, no zero output weight)")
            else:
                truth = search_truth(inst.model(), inst.X, inst.y, inst.activation, inst.loss)
            return _from_instances(inst, truth)
        sid = f"{spec['variant']}_K{spec['n_kinks']}_{spec['d']}-{spec['h']}_n{spec['n']}_s{spec['seed']}"
        out.append(BenchInstance(f"{family}/{sid}", family, {"K": spec["n_kinks"], "variant": spec["variant"]},
                                 make))
    return out


def concave_instances(specs) -> list[BenchInstance]:
    from . import instances as gen
    out = []
    for spec in specs:
        spec = dict(spec)
        spec.setdefault("seed", 0)
        family = spec.pop("family", "concave_kinks")

        def make(spec=spec):
            inst = gen.concave_unit_kinks(**spec)
            if spec["variant"] == "stationary":
                truth = _known("local_min", "exact construction (d-stationary: every concave kink paired with a "
                                            "stronger convex one on the same row, gradient 0) + REFERENCES "
                                            "A4.5-1 (positive output weights)")
            else:
                truth = search_truth(inst.model(), inst.X, inst.y, inst.activation, inst.loss)
            return _from_instances(inst, truth)
        sid = f"{spec['variant']}_C{spec['n_concave']}_{spec['d']}-{spec['h']}_s{spec['seed']}"
        # unit kinks: the stationary variant has 2 per pair
        K = 2 * spec["n_concave"] if spec["variant"] == "stationary" else None
        out.append(BenchInstance(f"{family}/{sid}", family,
                                 {"K": K, "concave": spec["n_concave"], "variant": spec["variant"]}, make))
    return out


def smooth_instances(specs) -> list[BenchInstance]:
    from . import instances as gen
    out = []
    for spec in specs:
        spec = dict(spec)
        spec.setdefault("seed", 0)

        def make(spec=spec):
            inst = gen.random_smooth(**spec)
            if inst.loss == "logistic":            # labels +-1 (the generator draws Gaussian targets)
                import dataclasses
                inst = dataclasses.replace(inst, y=np.where(inst.y > 0, 1.0, -1.0))

            def truth():
                net = nm.AutogradNet(inst.model(), inst.X, inst.y, inst.activation, inst.loss)
                g = net.gradient()
                gg = float(g @ g)
                # no kink within 1e-6 (the generator redraws such samples): the loss is C^2 near
                # theta and L'(theta; -g) = -|g|^2; compare with a generous rounding bound
                bound = 1e-8 * float(np.abs(g) @ np.abs(g)) + 1e-300
                if gg > 1e3 * bound and gg > 0:
                    return "not_stationary", (f"exact construction (no kink; |grad|^2 = {gg:.3g} in float64, "
                                              f"far above rounding)")
                return None, "gradient too small to decide in float64"
            return _from_instances(inst, truth)
        w = spec.get("widths", (100, 1000, 1))
        sid = f"{'-'.join(map(str, w))}_n{spec.get('n')}_{spec.get('loss', 'square')}_s{spec['seed']}"
        out.append(BenchInstance(f"smooth_scale/{sid}", "smooth_scale", {"K": 0, "variant": "random"}, make))
    return out


# ============================================================================ path-space cells
def _pattern_truth(inst, spec):
    """The construction's answer; the refuted variants are proved by an exact ``L'(theta; d) < 0``."""
    variant = spec.get("variant", "min")
    if variant == "min":
        return _known("local_min", "exact construction (per-pattern affine fit: benchmarks.instances.pattern_cells)")
    if variant == "saddle":
        return _known("saddle", "exact construction (escape unit: indefinite 2x2 Hessian block on a plane where "
                                "L is C^2; benchmarks.instances.pattern_cells)")

    def truth():
        ex = nm.ExactNet(inst.model(), inst.X, inst.y, inst.activation, inst.loss)
        p = inst.n_params
        dirs = []
        if variant == "concave":
            j, m = inst.expect["concave_witness"]
            W1 = inst.weights[0]
            d = np.zeros(p)
            d[j * W1.shape[1]:(j + 1) * W1.shape[1]] = -inst.X[m]
            d[W1.size + j] = -1.0
            dirs.append(("concave witness -xbar_m", d))
        C = inst.weights[-1].shape[0]
        for c in range(C):
            for sgn in (1.0, -1.0):
                d = np.zeros(p)
                d[p - C + c] = sgn
                dirs.append(("output bias", d))
        for name, d in dirs:
            val = ex.directional_derivative(d)
            if val < 0:
                return "not_stationary", f"exact construction (L'(theta; d) = {float(val):.3g} < 0 exactly, {name})"
        return None, "exact check of the witness directions failed"
    return truth


def path_cell_instances(specs) -> list[BenchInstance]:
    """:func:`benchmarks.instances.pattern_cells`: depth 1-3 minima with convex kinks in the first and the
    top hidden layer, many zero-loss kinks, several outputs, hinge; refuted variants (a moved target, a
    concave kink member, an escape unit)."""
    from . import instances as gen
    out = []
    for spec in specs:
        spec = dict(spec)
        spec.setdefault("seed", 0)

        def make(spec=spec):
            inst = gen.pattern_cells(**spec)
            return _from_instances(inst, _pattern_truth(inst, spec))
        sid = "_".join(f"{k}{'-'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in spec.items())
        K = spec.get("K_zero", 32) + sum(spec.get("K_convex", (4, 4)))
        out.append(BenchInstance(f"path_cells/{sid}", "path_cells",
                                 {"K": K, "variant": spec.get("variant", "min"), "depth": len(spec.get("hidden", (16, 8)))},
                                 make))
    return out


def _path_cell_specs(full: bool) -> list:
    small = dict(d=6, n_quads=32, K_zero=16, K_convex=(4, 4))
    specs = [dict(small, hidden=(8,), K_convex=(4, 0)),
             dict(small, hidden=(8, 6)), dict(small, hidden=(8, 6), C=3), dict(small, hidden=(8, 6), loss="hinge"),
             dict(small, hidden=(8, 6, 4), K_convex=(4, 0)),
             dict(small, hidden=(8, 6), variant="not_stationary"), dict(small, hidden=(8, 6), variant="concave"),
             dict(small, hidden=(8, 6), variant="saddle", K_convex=(2, 0))]
    if full:
        mid = dict(d=30, hidden=(60, 40), n_quads=500, K_zero=500, K_convex=(40, 40))
        specs += [dict(mid), dict(mid, C=3), dict(mid, loss="hinge"), dict(mid, hidden=(60, 40, 30), K_convex=(40, 0)),
                  dict(mid, variant="not_stationary"),
                  dict(d=16, hidden=(24, 16), n_quads=120, K_zero=120, K_convex=(8, 8), variant="concave"),
                  dict(d=10, hidden=(16, 10), n_quads=80, K_zero=80, K_convex=(4, 0), variant="saddle", seed=1),
                  dict(d=8, hidden=(12, 8), n_quads=60, K_zero=60, K_convex=(4, 0), variant="saddle", C=2)]
        big = dict(d=100, hidden=(300, 200), n_quads=2000, K_zero=2000, K_convex=(100, 100))
        specs += [dict(big), dict(big, C=3), dict(big, loss="hinge"),
                  dict(d=40, hidden=(80, 40, 40), n_quads=1000, K_zero=1000, K_convex=(80, 0))]
    return specs


# ============================================================================ descent search
def _unit_lp_candidates(net: nm.AutogradNet, rng, max_units: int = 200) -> list:
    """Directions that move one first-layer unit: for each distinct kink row with a net negative
    (concave) coefficient, maximise its slope subject to every convex row of that unit staying
    non-positive and the unit's smooth gradient part being non-positive (scipy linprog)."""
    from scipy.optimize import linprog
    if len(net.shapes) != 2 or net.shapes[-1][0] != 1 or net.loss not in ("square", "absolute", "hinge"):
        return []
    layers = net.layers()
    (W1, b1), (W2, b2) = layers
    pre, post = nm.forward(layers, net.X, net.act)
    z = pre[0]
    F = pre[-1]
    scale = np.abs(net.X) @ np.abs(W1).T + np.abs(b1)
    onk = np.abs(z) <= 1e-9 * np.maximum(scale, 1e-300)
    coef = nm.loss_grad_f(F, net.Y, net.loss)[:, 0] / net.n       # smooth coefficient per sample
    Xb = np.concatenate([net.X, np.ones((net.n, 1))], axis=1)
    sp, sn = nm.slopes(net.act)
    out = []
    d_in = W1.shape[1]
    for j in np.nonzero(onk.any(axis=0))[0][:max_units]:
        aj = W2[0, j]
        if aj == 0:
            continue
        ks = np.nonzero(onk[:, j])[0]
        off = np.nonzero(~onk[:, j])[0]
        slope_off = np.where(z[off, j] > 0, sp, sn)
        g_smooth = (aj * coef[off] * slope_off) @ Xb[off]
        # group identical rows: the kink term is c * h'(0; row . v) with c = a_j coef_i
        rows, cs = {}, {}
        for i in ks:
            key = Xb[i].tobytes()
            rows[key] = Xb[i]
            cs[key] = cs.get(key, 0.0) + aj * coef[i]
        keys = list(rows)
        for key in keys:
            c = cs[key]
            # slope of c * h'(0; t): t > 0 gives c * sp * t, t < 0 gives c * sn * t
            for sign in (1.0, -1.0):
                eff = c * (sp if sign > 0 else sn) * sign
                if eff >= 0:
                    continue
                A, bnd = [], []
                for k2 in keys:
                    if k2 == key:
                        continue
                    A.append(rows[k2])          # keep other rows on their kink side: row . v <= 0
                    bnd.append(0.0)
                    A.append(-rows[k2])
                    bnd.append(0.0)
                A.append(g_smooth)
                bnd.append(0.0)
                A.append(-sign * rows[key])
                bnd.append(-1e-3)
                res = linprog(-sign * rows[key], A_ub=np.array(A), b_ub=np.array(bnd),
                              bounds=[(-1, 1)] * (d_in + 1), method="highs")
                if res.status != 0:
                    # relax: only the convex rows must stay <= 0
                    A2 = [rows[k2] * np.sign(cs[k2]) for k2 in keys if k2 != key and cs[k2] > 0]
                    A2 = A2 + [g_smooth, -sign * rows[key]]
                    b2 = [0.0] * (len(A2) - 1) + [-1e-3]
                    res = linprog(-sign * rows[key], A_ub=np.array(A2), b_ub=np.array(b2),
                                  bounds=[(-1, 1)] * (d_in + 1), method="highs")
                    if res.status != 0:
                        continue
                v = np.zeros(net.p)
                hN, dN = W1.shape
                v[j * dN:(j + 1) * dN] = res.x[:dN]
                v[hN * dN + j] = res.x[dN]
                out.append(v)
                if len(out) > 50:
                    return out
    return out


def _piece_lp_candidates(layers, X, y, activation, loss, weight_decay, rng, n_pieces: int = 24):
    """Minimisers of ``g_sigma . d`` over a few pieces (all -, all +, random sign vectors), by
    :class:`benchmarks.baselines.PieceModel` (scipy linprog; one hidden layer, scalar output).
    A generator: each LP is solved only when the previous candidates failed. With more than 300
    kinks only the two uniform pieces are tried (each LP takes seconds to minutes there)."""
    from .baselines import Data, Enumeration, PieceModel
    data = Data(list(layers), np.asarray(X, float), np.asarray(y), activation, loss, weight_decay)
    if not Enumeration().applies(data):
        return
    model = PieceModel(data)
    if model.K == 0:
        return
    sigmas = [(-1,) * model.K, (1,) * model.K]
    if model.K <= 300:
        sigmas += [tuple(rng.choice([-1, 1], size=model.K)) for _ in range(n_pieces)]
    for s in sigmas:
        value, x, _ = model.lp(s)
        if value is not None and value < 0:
            yield x


def descent_search(layers, X, y, activation, loss, weight_decay=0.0, *, seed: int = 0, n_random: int = 64,
                   radii=None, max_exact: int = 12) -> dict:
    """Search for a descent direction and prove it, or report the answer unknown.

    Candidates: ``-g`` (autograd convention), per-unit LP directions at unit kinks, ``n_random``
    Gaussian directions and the output-bias directions. A candidate is a proof when
    ``L'(theta; d) < 0`` *exactly* (:class:`numerics.ExactNet`, rational losses, ``d`` rounded to a
    dyadic vector) or, for the smooth losses at a point without kinks (every pre-activation
    farther than 1e-7 relative from 0), when ``-g . d`` exceeds a generous float64 error bound.
    A float decrease along a line at small radii without such a proof is reported in
    ``evidence`` only (a decrease at a finite distance does not refute a local minimum).
    Only candidates with a float64 decrease at a small radius are evaluated exactly (at most
    ``max_exact`` of them).
    """
    rng = np.random.default_rng(seed)
    net = nm.AutogradNet(layers, X, y, activation, loss, weight_decay)
    g = net.gradient()
    cands = [("-grad", -g)]
    C = net.shapes[-1][0]
    for k in range(C):
        for sgn in (1.0, -1.0):
            v = np.zeros(net.p)
            v[net.p - C + k] = sgn
            cands.append(("output-bias", v))
    for _ in range(n_random):
        cands.append(("random", rng.standard_normal(net.p)))

    def all_candidates():
        yield from cands
        for v in _unit_lp_candidates(net, rng):
            yield "unit-lp", v
        for v in _piece_lp_candidates(layers, X, y, activation, loss, weight_decay, rng):
            yield "piece-lp", v
    evidence = []
    L0 = net.value()
    tol = nm.rounding_bound(net)
    th = net.theta
    scale = max(1.0, float(np.linalg.norm(th)))

    def float_drop(d) -> bool:
        """A float64 decrease along d at a small radius: the filter before an exact evaluation."""
        dn = d / max(np.linalg.norm(d), 1e-300) * scale
        return any(net.value(th + r * dn) < L0 - tol for r in (1e-4, 1e-6, 1e-8))
    if loss in nm.ExactNet.RATIONAL:
        ex = nm.ExactNet(layers, X, y, activation, loss, weight_decay)
        n_exact = 0
        for name, d in all_candidates():
            dd = nm.dyadic_direction(d)
            if not np.any(dd) or not float_drop(dd):
                continue
            n_exact += 1
            if n_exact > max_exact:
                break
            val = ex.directional_derivative(dd)
            if val < 0:
                return {"expected": "not_stationary",
                        "derivation": f"long search: exact L'(theta; d) = {float(val):.3g} < 0 ({name} direction)",
                        "direction": dd}
    else:
        layers_ = net.layers()
        pre, post = nm.forward(layers_, net.X, net.act)
        near = False
        for l, z in enumerate(pre[:-1]):
            W, b = layers_[l]
            sc = np.abs(post[l]) @ np.abs(W).T + np.abs(b)
            if np.any(np.abs(z) <= 1e-7 * np.maximum(sc, 1e-300)):
                near = True
        gg = float(g @ g)
        bound = 1e-10 * float(np.abs(g) @ np.abs(g)) + 1e-14 * (1.0 + abs(net.value()))
        if not near and gg > 1e3 * bound:
            return {"expected": "not_stationary",
                    "derivation": f"long search: no kink within 1e-7, |grad|^2 = {gg:.3g} (float64, margin)",
                    "direction": -g}
    # evidence only: float decreases along lines
    if radii is None:
        radii = [10.0 ** -k for k in range(1, 9)]
    for name, d in cands[:16]:
        dn = d / max(np.linalg.norm(d), 1e-300) * scale
        drops = [r for r in radii if net.value(th + r * dn) < L0 - tol]
        if drops:
            evidence.append(f"{name}: float decrease at radii {drops[:3]}")
    note = "; ".join(evidence[:3]) if evidence else "no decrease found"
    return {"expected": None, "derivation": f"long search inconclusive ({len(cands)} directions + LP candidates; {note})",
            "direction": None}


def kink_scaling_instances(Ks, seeds=(0,)) -> list[BenchInstance]:
    specs = []
    for K in Ks:
        for s in seeds:
            specs.append({"family": "kink_scaling", "variant": "stationary", "n_kinks": K, "n": 2 * K + 8,
                          "d": 4, "h": 4, "seed": s})
    return hinge_instances(specs)


# ============================================================================ training
def _iris():
    d = np.load(ROOT / "data" / "iris.npz")
    X, y = d["X"].astype(np.float64), d["y"]
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    return X, Xs, y


def train(layers, X, y, activation, loss, *, optimizer: str, steps: int, lr: float, batch: int = 16,
          seed: int = 0, weight_decay: float = 0.0):
    """Adam (full batch) or SGD with momentum 0.9 (minibatches) on the numpy autograd gradient."""
    net = nm.AutogradNet(layers, X, y, activation, loss, weight_decay)
    th = net.theta.copy()
    rng = np.random.default_rng(seed)
    if optimizer == "adam":
        m = np.zeros_like(th)
        v = np.zeros_like(th)
        for t in range(1, steps + 1):
            g = net.gradient(th)
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            th -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    else:
        mom = np.zeros_like(th)
        n = net.n
        for _ in range(steps):
            perm = rng.permutation(n)
            for k in range(0, n, batch):
                idx = perm[k:k + batch]
                sub = nm.AutogradNet(net.layers(th), net.X[idx], np.asarray(y)[idx], activation, loss, weight_decay)
                g = sub.gradient()
                mom = 0.9 * mom + g
                th -= lr * mom
    return net.layers(th)


def _init(widths, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((b, a)) * scale / np.sqrt(a), np.full(b, 0.1))
            for a, b in zip(widths[:-1], widths[1:])]


IRIS_TASKS = {
    # name: (features, widths, activation, loss, target)
    "reg": ("first3", (3, 5, 1), "relu", "square", "petal_width"),
    "hinge": ("all", (4, 6, 1), "relu", "hinge", "versicolor_vs_virginica"),
    "abs": ("first3", (3, 6, 1), "leaky_relu:0.25", "absolute", "petal_width"),
    "ce": ("first2", (2, 8, 3), "relu", "cross_entropy", "species"),
    "deep": ("first3", (3, 6, 4, 1), "relu", "square", "petal_width"),
}


def trained_problem(task: str, optimizer: str, polish: bool, seed: int = 0, steps: int | None = None) -> dict:
    X, Xs, y = _iris()
    feats, widths, activation, loss, target = IRIS_TASKS[task]
    if target == "petal_width":
        XX, yy = Xs[:, :3], X[:, 3]
    elif target == "versicolor_vs_virginica":
        two = y > 0
        XX, yy = Xs[two], np.where(y[two] == 1, 1.0, -1.0)
    else:
        XX, yy = Xs[:, :2], y.astype(np.int64)
    layers = _init(widths, seed)
    if optimizer == "adam":
        layers = train(layers, XX, yy, activation, loss, optimizer="adam", steps=steps or 3000, lr=1e-2, seed=seed)
    else:
        layers = train(layers, XX, yy, activation, loss, optimizer="sgd", steps=steps or 150, lr=2e-3, seed=seed)
    info = {}
    if polish:
        # the point to benchmark is produced by certify's polisher (a search, never a proof)
        import certify
        from certify.driver import polish_problem
        problem = certify.Problem(certify.Network([W for W, _ in layers], [b for _, b in layers], activation),
                                  certify.Dataset(XX, yy), loss)
        res = polish_problem(problem, time_limit=5.0)
        layers = [(np.array(W), np.array(b)) for W, b in problem.network.split(res.theta)]
        info = {"polish_moved": float(res.distance), "polish_converged": bool(res.converged)}
    return {"network": layers, "X": XX, "y": yy, "activation": activation, "loss": loss, "weight_decay": 0.0,
            "truth": search_truth(layers, XX, yy, activation, loss, seed=seed, n_random=256), "meta": info}


def trained_instances(tasks, optimizers=("adam", "sgd"), polish=(False, True), seeds=(0,)) -> list[BenchInstance]:
    out = []
    for task in tasks:
        for opt in optimizers:
            for pol in polish:
                for s in seeds:
                    iid = f"trained/iris-{task}_{opt}{'_polished' if pol else ''}_s{s}"
                    out.append(BenchInstance(iid, "trained", {"K": None, "variant": opt + ("+polish" if pol else ""),
                                                              "data": "iris"},
                                             lambda task=task, opt=opt, pol=pol, s=s: trained_problem(task, opt, pol, s)))
    return out


def sosp_problem(dx: int, dh: int, m: int, *, steps: int = 1500, polish: bool = True, seed: int = 0) -> dict:
    """Yun et al.'s experimental setting: x, y ~ N(0, I), one hidden ReLU layer, square loss, Adam."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, dx))
    y = rng.standard_normal(m)
    layers = _init((dx, dh, 1), seed)
    layers = train(layers, X, y, "relu", "square", optimizer="adam", steps=steps, lr=1e-2, seed=seed)
    info = {}
    if polish:
        import certify
        from certify.driver import polish_problem
        problem = certify.Problem(certify.Network([W for W, _ in layers], [b for _, b in layers], "relu"),
                                  certify.Dataset(X, y), "square")
        res = polish_problem(problem, time_limit=5.0)
        layers = [(np.array(W), np.array(b)) for W, b in problem.network.split(res.theta)]
        info = {"polish_moved": float(res.distance), "polish_converged": bool(res.converged)}
    return {"network": layers, "X": X, "y": y, "activation": "relu", "loss": "square", "weight_decay": 0.0,
            "truth": search_truth(layers, X, y, "relu", "square", seed=seed, n_random=32), "meta": info}


def sosp_instances(configs, seeds=(0,), polish=(True,)) -> list[BenchInstance]:
    out = []
    for dx, dh, m in configs:
        for s in seeds:
            for pol in polish:
                iid = f"sosp_setting/dx{dx}_dh{dh}_m{m}{'_polished' if pol else ''}_s{s}"
                out.append(BenchInstance(iid, "sosp_setting", {"K": None, "variant": "polished" if pol else "adam",
                                                               "dx": dx, "dh": dh, "m": m},
                                         lambda dx=dx, dh=dh, m=m, s=s, pol=pol: sosp_problem(dx, dh, m, polish=pol,
                                                                                              seed=s)))
    return out


# ============================================================================ suites
def _affine_specs(full: bool) -> list:
    specs = [
        # p growth, depth 1 (p = h (d + 1) + h + 1)
        dict(d=10, h=8, n=200, variant="min"),
        dict(d=10, h=8, n=200, variant="saddle"),
        dict(d=10, h=8, n=200, variant="not_stationary"),
        dict(d=10, h=8, n=200, activation="leaky_relu:0.25", variant="min"),
        dict(d=10, h=8, n=200, activation="abs", variant="saddle"),
        dict(d=10, h=8, n=200, activation="identity", variant="min"),
        dict(d=20, h=50, n=1000, variant="min"),
        # depth 2 and 3
        dict(d=6, h=8, n=200, depth=2, variant="min"),
        dict(d=6, h=8, n=200, depth=2, variant="not_stationary"),
        dict(d=6, h=8, n=200, depth=3, variant="min"),
        dict(d=6, h=8, n=200, depth=3, activation="leaky_relu:0.25", variant="min"),
    ]
    if full:
        specs += [
            dict(d=100, h=10, n=10000, variant="min"),
            dict(d=100, h=100, n=10000, variant="min"),
            dict(d=100, h=1000, n=10000, variant="min"),
            dict(d=100, h=1000, n=10000, variant="saddle"),
            dict(d=100, h=1000, n=10000, variant="not_stationary"),
            dict(d=30, h=30, n=2000, depth=2, variant="min"),
            dict(d=30, h=30, n=2000, depth=3, variant="min"),
            dict(d=30, h=100, n=2000, depth=2, variant="min"),
            dict(d=10, h=8, n=200, activation="abs", variant="min"),
            dict(d=10, h=8, n=200, activation="leaky_relu:0.25", variant="saddle"),
            dict(d=10, h=8, n=200, activation="identity", variant="not_stationary"),
        ]
    return specs


def _affine_kink_specs(full: bool) -> list:
    specs = [
        dict(d=10, h=8, n=208, K=8, variant="min"),
        dict(d=10, h=8, n=216, K=16, variant="min", activation="leaky_relu:0.25"),
        dict(d=10, h=8, n=208, K=8, variant="not_stationary"),
        dict(d=6, h=8, n=208, K=8, depth=2, variant="min"),
        dict(d=6, h=8, n=208, K=8, depth=3, variant="min"),
        dict(d=10, h=8, n=208, K=8, variant="saddle", activation="abs"),
    ]
    if full:
        specs += [
            dict(d=20, h=100, n=1100, K=100, variant="min"),
            dict(d=50, h=500, n=3000, K=1000, variant="min"),
            dict(d=50, h=500, n=3000, K=1000, variant="not_stationary"),
            dict(d=30, h=30, n=2060, K=60, depth=2, variant="min"),
            dict(d=30, h=30, n=2060, K=60, depth=3, variant="min"),
            dict(d=10, h=8, n=400, K=100, depth=2, variant="min"),
            dict(d=10, h=8, n=208, K=8, variant="min", activation="abs"),
        ]
    return specs


def _loss_specs(full: bool) -> list:
    out = []
    for loss in ("hinge", "absolute", "multiclass_hinge", "logistic", "cross_entropy"):
        for variant in ("min", "not_stationary"):
            out.append(dict(loss=loss, variant=variant))
    if full:
        for loss in ("hinge", "absolute"):
            out.append(dict(loss=loss, variant="min", activation="leaky_relu:0.25", groups=64, d=6, h=10))
            out.append(dict(loss=loss, variant="min", activation="abs", groups=64, d=6, h=10))
    return out


def suite(name: str) -> list[BenchInstance]:
    """The instances of the ``quick`` or ``full`` suite, in run order."""
    full = name == "full"
    if name not in ("quick", "full"):
        raise ValueError(f"unknown suite {name!r}: expected quick or full")
    out = []
    out += reference_instances()
    out += bruteforce_instances(range(1000) if full else range(40))
    out += affine_instances(_affine_specs(full))
    out += affine_instances(_affine_kink_specs(full), family="affine_kinks")
    out += loss_instances(_loss_specs(full))
    out += escape_instances(_escape_specs(full))
    out += path_cell_instances(_path_cell_specs(full))
    hinge = [dict(variant=v, n_kinks=K, n=max(5 * K, 2 * K + 8), d=20, h=40)
             for K in ((10, 100) if not full else (10, 30, 100, 300))
             for v in ("descent", "stationary", "zero_gradient")]
    if full:
        hinge += [dict(variant=v, n_kinks=1000, n=5000, d=50, h=100) for v in ("descent", "stationary", "zero_gradient")]
    out += hinge_instances(hinge)
    conc = [dict(variant="stationary", n_concave=C, d=3, h=16) for C in ((5, 20) if not full else (5, 10, 20, 35, 50))]
    conc += [dict(variant="descent", n_concave=C, d=8, h=16) for C in ((20,) if not full else (10, 20, 50))]
    conc += [dict(variant="dependent", n_concave=C, d=4, h=16) for C in ((10,) if not full else (10, 50))]
    if full:
        conc += [dict(variant="stationary", n_concave=50, d=4, h=8, seed=1),
                 dict(variant="stationary", n_concave=50, d=3, h=32)]
    out += concave_instances(conc)
    out += kink_scaling_instances((2, 4, 6, 8, 10, 12) if not full else (2, 4, 6, 8, 10, 12, 14, 16, 18, 20))
    sm = [dict(n=1000, widths=(20, 50, 1))]
    if full:
        sm += [dict(n=10000, widths=(100, 10, 1)), dict(n=10000, widths=(100, 100, 1)),
               dict(n=10000, widths=(100, 1000, 1)), dict(n=2000, widths=(20, 50, 1), loss="logistic"),
               dict(n=2000, widths=(20, 50, 20, 1))]
    out += smooth_instances(sm)
    out += trained_instances(("reg", "hinge") if not full else tuple(IRIS_TASKS),
                             optimizers=("adam",) if not full else ("adam", "sgd"))
    from . import trained as torch_trained      # lazy: benchmarks.trained imports this module
    out += torch_trained.instances(full)
    if full:
        out += sosp_instances([(10, 1, 1000), (10, 10, 1000), (100, 1, 1000), (100, 10, 10000), (10, 1, 10000)],
                              polish=(False, True))
    else:
        out += sosp_instances([(10, 2, 500)], polish=(True,))
    return out


FAMILIES = ("reference", "bruteforce", "affine_cell", "affine_kinks", "path_cells", "loss_kinks", "hinge_margins",
            "concave_kinks", "kink_scaling", "smooth_scale", "trained", "sosp_setting", "escapes")
CONSTRUCTED = ("affine_cell", "affine_kinks", "path_cells", "loss_kinks", "hinge_margins", "concave_kinks",
               "kink_scaling", "smooth_scale", "escapes")
