"""Seeded instance generators shared by the benchmarks.

Every generator returns an :class:`Instance`: a point (weights in certify's ``(out, in)``
orientation), data, activation and loss, plus ``expect``, the facts the construction guarantees
(kink counts, which first-order method must run). The same arguments and seed give the same
instance bit for bit (``numpy.random.default_rng(seed)``).

The kinked instances are built from small integers so that the forward pass is *exact* in
float64 (every partial sum is an integer far below 2**53): a pre-activation meant to be 0, or a
hinge margin meant to be 1, is exactly that, and every other pre-activation or margin is an
integer at distance >= 1 from the kink, far outside certify's relative tolerance (1e-9).

Generators
----------
random_smooth
    Gaussian data and weights, square loss: no kink, nonzero gradient (the smooth baseline).
hinge_exact_margins
    Hinge loss, margins ``y_i f(x_i)`` exactly 1 at ``n_kinks`` samples, no unit kinks: one level
    of *convex* loss kinks, so the first-order test is one LP (variants: a descent direction
    exists; d-stationary with a nonzero gradient part; d-stationary with a zero gradient part).
concave_unit_kinks
    ReLU pre-activations exactly 0 at chosen samples with a negative loss adjoint (*concave*
    kinks) and linearly dependent kink rows (LIKQ fails), so the first-order test is a MILP.
    ``variant="descent"``: a descent direction exists that no simple candidate direction finds;
    ``variant="stationary"``: every concave kink is paired with a stronger convex kink on the same
    row and the gradient is exactly 0, so the point is d-stationary and the MILP has to prove a
    bound of 0; ``variant="dependent"``: lone concave kinks, easy descent.
smooth_minimum
    Any depth, square loss, no kink (odd-integer pre-activations, rescaled by powers of two), at a
    global minimum: ``y = f(x)`` exactly (``zero_loss``) or labels ``f(x) +- 1`` (``paired``).
balanced_unit_kinks
    One hidden layer, square loss, ``n_kinks`` convex unit kinks with multipliers 1/2 at a
    d-stationary local (not global) minimum, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Instance:
    """A benchmark point: ``check(instance.model(), instance.X, instance.y, **instance.options())``."""

    name: str
    weights: tuple
    biases: tuple
    X: np.ndarray
    y: np.ndarray
    activation: str = "relu"
    loss: str = "square"
    weight_decay: float = 0.0
    expect: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    @property
    def widths(self) -> tuple:
        return (self.weights[0].shape[1],) + tuple(W.shape[0] for W in self.weights)

    @property
    def n_params(self) -> int:
        return int(sum(W.size + b.size for W, b in zip(self.weights, self.biases)))

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    def model(self) -> list:
        """``[(W1, b1), (W2, b2), ...]``, a form :func:`certify.check` accepts."""
        return list(zip(self.weights, self.biases))

    def options(self) -> dict:
        return {"activation": self.activation, "loss": self.loss, "weight_decay": self.weight_decay}

    def network(self):
        from certify import Network
        return Network(self.weights, self.biases, self.activation)

    def problem(self):
        from certify import Dataset, Problem
        return Problem(self.network(), Dataset(self.X, self.y), self.loss, self.weight_decay)

    def describe(self) -> str:
        return (f"{self.name}: widths {'-'.join(map(str, self.widths))} {self.activation}, "
                f"{self.loss} loss, p = {self.n_params}, n = {self.n_samples}")


# ---------------------------------------------------------------------------- helpers
def _forward_exact(weights, biases, X):
    """Pre-activations of every layer (ReLU), asserting that integer inputs stay exact."""
    pre, x = [], X
    for l, (W, b) in enumerate(zip(weights, biases), start=1):
        z = x @ W.T + b
        bound = np.abs(x) @ np.abs(W).T + np.abs(b)
        if bound.size and bound.max() >= 2.0 ** 52:
            raise ValueError("integer instance too large for an exact float64 forward pass")
        pre.append(z)
        if l < len(weights):
            x = np.maximum(z, 0.0)
    return pre


def _near_kink_rows(weights, biases, X, rel):
    """Samples with some hidden pre-activation ``|z| <= rel * (|W| |x| + |b|)`` (ReLU network)."""
    bad = np.zeros(X.shape[0], dtype=bool)
    x = X
    for W, b in zip(weights[:-1], biases[:-1]):
        z = x @ W.T + b
        bad |= np.any(np.abs(z) <= rel * (np.abs(x) @ np.abs(W).T + np.abs(b)), axis=1)
        x = np.maximum(z, 0.0)
    return np.nonzero(bad)[0]


# ---------------------------------------------------------------------------- smooth baseline
def random_smooth(n: int = 10_000, widths: tuple = (100, 1000, 1), *, seed: int = 0,
                  activation: str = "relu", loss: str = "square") -> Instance:
    """Gaussian ``X`` (n, widths[0]), He-initialised weights, small random biases, Gaussian ``y``.

    Generically no pre-activation is within the kink tolerance and the gradient is nonzero: the
    first-order test is the gradient test and the check ends with a refutation along ``-g``.
    """
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        weights.append(rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in))
        biases.append(0.1 * rng.standard_normal(n_out))
    X = rng.standard_normal((n, widths[0]))
    # redraw the (rare) samples with a pre-activation within 1e-6 (relative) of 0: with n * width
    # ~ 1e7 entries a few land within certify's 1e-9 tolerance by chance
    for _ in range(100):
        near = _near_kink_rows(weights, biases, X, 1e-6)
        if near.size == 0:
            break
        X[near] = rng.standard_normal((near.size, widths[0]))
    y = rng.standard_normal((n, widths[-1])) if widths[-1] > 1 else rng.standard_normal(n)
    return Instance(name=f"smooth_{'-'.join(map(str, widths))}_n{n}", weights=tuple(weights),
                    biases=tuple(biases), X=X, y=y, activation=activation, loss=loss,
                    expect={"unit_kinks": 0, "loss_kinks": 0, "method": "gradient"},
                    params={"generator": "random_smooth", "n": n, "widths": list(widths), "seed": seed})


# ---------------------------------------------------------------------------- hinge, convex kinks
def hinge_exact_margins(n_kinks: int = 1000, n: int = 5000, d: int = 50, h: int = 100, *,
                        variant: str = "descent", frac_violating: float = 0.25, seed: int = 0) -> Instance:
    """One hidden ReLU layer ``d -> h -> 1``, hinge loss, margins exactly 1 at ``n_kinks`` samples.

    Construction (all integers, so the forward pass is exact):

    * hidden units ``k >= 2`` read features ``2..d-1`` with even weights in ``{-4..4}`` and odd
      biases in ``{-3..3}``: their pre-activations are odd integers, never within the tolerance
      of 0; their output weights are in ``{-2, -1, 1, 2}`` (no zero-output unit);
    * units 0 and 1 are "free" units: ``z_0 = 2 x_0 + 1``, ``z_1 = 2 x_1 + 1`` (odd as well),
      with output weight 1; the output bias is ``b2 = -B`` with ``B`` larger than the rest of the
      output. Choosing the integers ``x_0, x_1`` per sample sets ``f(x_i)`` to any integer target;
    * ``n_kinks`` samples get ``y_i f(x_i) = 1`` (loss kinks); every other margin is an integer
      at distance >= 1 from 1.

    Variants (what the other samples are):

    * ``"descent"``: a share ``frac_violating`` has margin in ``{-1, 0}`` (loss > 0, a nonzero
      gradient), the rest margin in ``{2, 3}`` (loss 0). Generically not stationary;
    * ``"stationary"``: every kink sample ``(x, y)`` has a partner ``(x, -y)`` (margin -1), the rest
      margin in ``{2, 3}``. Then ``L'(theta; d) = (1/n) sum_kinks max(grad f(x) . d, 0) >= 0``:
      d-stationary with a nonzero gradient part, multipliers ``lambda = 1`` on every kink;
    * ``"zero_gradient"``: every other margin in ``{2, 3}``: the gradient part is exactly 0 and
      ``d = 0`` is optimal (d-stationary, multipliers 0; a degenerate LP).
    """
    if variant not in ("descent", "stationary", "zero_gradient"):
        raise ValueError(f"variant must be 'descent', 'stationary' or 'zero_gradient'; got {variant!r}")
    if d < 3 or h < 3:
        raise ValueError("hinge_exact_margins needs d >= 3 and h >= 3")
    n_special = 2 * n_kinks if variant == "stationary" else n_kinks
    if not 0 <= n_special <= n:
        raise ValueError(f"need n >= {n_special} samples for {n_kinks} kinks ({variant})")
    rng = np.random.default_rng(seed)
    W1 = np.zeros((h, d))
    W1[2:, 2:] = 2 * rng.integers(-2, 3, size=(h - 2, d - 2))
    W1[0, 0] = W1[1, 1] = 2
    b1 = np.concatenate([[1, 1], 2 * rng.integers(-2, 2, size=h - 2) + 1]).astype(np.float64)
    W2 = np.concatenate([[1, 1], rng.choice([-2, -1, 1, 2], size=h - 2)]).astype(np.float64)[None, :]
    X = np.zeros((n, d))
    X[:, 2:] = rng.integers(-3, 4, size=(n, d - 2))
    labels = rng.choice([-1.0, 1.0], size=n)
    margin = np.empty(n)
    margin[:n_kinks] = 1.0
    if variant == "stationary":                    # partners: same x, opposite label
        X[n_kinks:2 * n_kinks] = X[:n_kinks]
        labels[n_kinks:2 * n_kinks] = -labels[:n_kinks]
        margin[n_kinks:2 * n_kinks] = -1.0
    others = n - n_special
    n_viol = int(round(frac_violating * others)) if variant == "descent" else 0
    margin[n_special:n_special + n_viol] = rng.choice([-1.0, 0.0], size=n_viol)
    margin[n_special + n_viol:] = rng.choice([2.0, 3.0], size=others - n_viol)
    # output of the units k >= 2 (x_0 = x_1 = 0 leaves the free units at z = 1: remove them)
    z = X @ W1.T + b1
    rest = np.maximum(z[:, 2:], 0.0) @ W2[0, 2:]
    B = float(np.abs(rest).max() + 10)
    b2 = np.array([-B])
    target = labels * margin                       # f(x_i)
    T = target + B - rest                          # what the free units must add: >= 7, integer
    odd = (T % 2) == 1
    # odd T: unit 1 off (z_1 = -1), unit 0 gives T; even T: unit 1 gives 1, unit 0 gives T - 1
    X[:, 1] = np.where(odd, -1.0, 0.0)
    X[:, 0] = np.where(odd, (T - 1) / 2, (T - 2) / 2)
    perm = rng.permutation(n)                     # kinks spread over the data set
    X, labels, margin = X[perm], labels[perm], margin[perm]
    weights, biases = (W1, W2), (b1, b2)
    pre = _forward_exact(weights, biases, X)
    assert np.all(np.abs(pre[0]) >= 1), "a hidden pre-activation is 0"
    got = labels * pre[-1][:, 0]
    assert np.array_equal(got, margin), "margins not exact"
    return Instance(name=f"hinge_{variant}_K{n_kinks}_{d}-{h}-1_n{n}",
                    weights=weights, biases=biases, X=X, y=labels, activation="relu", loss="hinge",
                    expect={"unit_kinks": 0, "loss_kinks": n_kinks, "method": "lp",
                            **({"stationary": True} if variant != "descent" else {})},
                    params={"generator": "hinge_exact_margins", "variant": variant, "n_kinks": n_kinks, "n": n,
                            "d": d, "h": h, "frac_violating": frac_violating if variant == "descent" else 0.0,
                            "seed": seed})


# ---------------------------------------------------------------------------- concave unit kinks
def concave_unit_kinks(n_concave: int = 50, *, variant: str = "descent", d: int = 8, h: int = 32,
                       n: int | None = None, seed: int = 0) -> Instance:
    """One hidden ReLU layer ``d -> h -> 1``, square loss, ``n_concave`` concave unit kinks.

    All weights, data and labels are small integers (labels may be halves); every unit has input
    weight 1 on feature 0, which puts a sample exactly on a unit's hyperplane. Output weights are
    positive, so a kink of unit ``j`` at sample ``i`` has adjoint ``c = W2[j] (f_i - y_i) / n``: a
    residual ``f_i - y_i = -1`` makes it concave, ``+2`` convex. The kink rows of unit ``j`` are
    ``a = (x_i, 1)`` on the coordinates ``(W1[j, :], b1[j])``.

    Building block, a *pair*: a kink sample with all other units inactive, duplicated with residuals
    -1 (concave) and +2 (convex, same row, so the kink rows are linearly dependent and LIKQ fails);
    net ``+(W2[j]/n) max(a . d, 0)``. *Canceller* samples (all units inactive) take the net
    residual of each group back out, so the gradient part is exactly 0 (``n`` is a power of two by
    default, so the sums of ``residual / n`` are exact).

    ``variant="stationary"``: ``n_concave`` pairs. ``L'(theta; d) = sum_pairs (W2[j]/n) max(a.d, 0)
    >= 0``: d-stationary, and the MILP must prove the bound 0 with ``n_concave`` binaries.

    ``variant="descent"``: one unit ``j*`` gets a single concave kink at ``x_1`` (row ``a_1``) and
    ``n_block = 3`` pairs at ``x_1 + delta_k`` with small ``delta_k`` in the unit's hyperplane and
    ``v . delta_k > 0`` for a fixed ``v``, so ``a_1`` is not in the cone of the blocking rows: a
    direction with ``a_1 . d > 0 >= a_k . d`` exists and is a descent direction, but ``+-a_1``,
    ``+-a_k``, ``-g`` (= 0) and random sign vectors are not (the blocking rows are nearly parallel
    to ``a_1``). The remaining concave kinks are pairs on other units. The MILP has to find it.

    ``variant="dependent"``: ``n_concave`` lone concave kinks, ``d + 2`` or more distinct samples
    per unit (linearly dependent rows), all other samples fitted exactly: a descent direction
    exists and simple candidate directions (a kink row) find it.
    """
    if variant not in ("descent", "stationary", "dependent"):
        raise ValueError(f"variant must be 'descent', 'stationary' or 'dependent'; got {variant!r}")
    rng = np.random.default_rng(seed)
    W1 = np.concatenate([np.ones((h, 1)), rng.integers(-3, 4, size=(h, d - 1))], axis=1).astype(np.float64)
    b1 = rng.integers(-3, 4, size=h).astype(np.float64)
    W2 = rng.integers(1, 4, size=(1, h)).astype(np.float64)
    b2 = np.zeros(1)
    weights, biases = (W1, W2), (b1, b2)

    def z_of(x):
        return _forward_exact(weights, biases, x[None, :])[0][0]

    def draw_rest(width=3):
        return rng.integers(-width, width + 1, size=d - 1).astype(np.float64)

    def isolated_kink(avoid=(), unit=None, width=3):
        """A point with z_j = 0 for one unit j and every other unit < 0 (j = argmax)."""
        while True:
            xr = draw_rest(width)
            sc = W1[:, 1:] @ xr + b1
            j = int(np.argmax(sc))
            if np.count_nonzero(sc == sc[j]) != 1 or j in avoid or (unit is not None and j != unit):
                continue
            return j, np.concatenate([[-sc[j]], xr])

    rows, residuals = [], []
    x_off = np.concatenate([[-(b1.max() + 2)], np.zeros(d - 1)])   # all units inactive: z <= -2
    if variant == "dependent":
        n_units = max(1, n_concave // (d + 2))       # every unit gets >= d + 2 kinks
        if n_units > h:
            raise ValueError("not enough hidden units for the requested kinks")
        counts = [n_concave // n_units + (1 if u < n_concave % n_units else 0) for u in range(n_units)]
        for j, m in enumerate(counts):
            got = 0
            while got < m:
                xr = draw_rest()
                x = np.concatenate([[-(W1[j, 1:] @ xr + b1[j])], xr])
                if np.count_nonzero(z_of(x) == 0) != 1 or any(np.array_equal(x, r) for r in rows):
                    continue
                rows.append(x)
                residuals.append(-1.0)
                got += 1
        n_kink_samples = len(rows)
        n_total = n if n is not None else max(256, 1 << int(np.ceil(np.log2(2 * n_kink_samples))))
    else:
        n_pairs = n_concave
        avoid = ()
        if variant == "descent":
            n_block = 3
            if n_concave < n_block + 1:
                raise ValueError(f"the descent variant needs n_concave >= {n_block + 1}")
            j_star, x1 = isolated_kink(width=6)
            rows.append(x1)
            residuals.append(-1.0)                      # the lone concave kink
            rows.append(x_off.copy())
            residuals.append(1.0)                       # its canceller
            v = rng.integers(-3, 4, size=d - 1).astype(np.float64)
            while not np.any(v):
                v = rng.integers(-3, 4, size=d - 1).astype(np.float64)
            blockers = 0
            while blockers < n_block:
                dr = rng.integers(-1, 2, size=d - 1).astype(np.float64)
                delta = np.concatenate([[-(W1[j_star, 1:] @ dr)], dr])   # stays on unit j*'s hyperplane
                if v @ dr <= 0:
                    continue
                x = x1 + delta
                z = z_of(x)
                others = np.delete(z, j_star)
                if z[j_star] != 0 or np.any(others >= 0) or any(np.array_equal(x, r) for r in rows):
                    continue
                rows += [x, x, x_off.copy()]
                residuals += [-1.0, 2.0, -1.0]          # pair (concave, convex) and its canceller
                blockers += 1
            n_pairs = n_concave - 1 - n_block
            avoid = (j_star,)
        for _ in range(n_pairs):
            _, x = isolated_kink(avoid=avoid)
            rows += [x, x, x_off.copy()]
            residuals += [-1.0, 2.0, -1.0]
        n_kink_samples = int(np.count_nonzero([np.any(z_of(x) == 0) for x in rows]))
        n_total = n if n is not None else max(256, 1 << int(np.ceil(np.log2(len(rows) + 1))))
    # fitted samples (residual 0, no exact zero pre-activation)
    n_fit = n_total - len(rows)
    if n_fit < 0:
        raise ValueError(f"n = {n_total} is smaller than the {len(rows)} constructed samples")
    while n_fit > 0:
        x = np.concatenate([rng.integers(-6, 7, size=1).astype(np.float64), draw_rest()])
        if np.any(z_of(x) == 0):
            continue
        rows.append(x)
        residuals.append(0.0)
        n_fit -= 1
    X = np.array(rows)
    res = np.array(residuals)
    F = _forward_exact(weights, biases, X)[-1][:, 0]
    y = F - res                                         # residual f - y as constructed
    perm = rng.permutation(X.shape[0])
    X, y = X[perm], y[perm]
    pre = _forward_exact(weights, biases, X)
    n_zero = int(np.count_nonzero(pre[0] == 0))
    assert n_zero == n_kink_samples, (n_zero, n_kink_samples)
    assert np.all((pre[0] == 0) | (np.abs(pre[0]) >= 1))
    expect = {"unit_kinks": n_kink_samples, "loss_kinks": 0, "concave": n_concave,
              "method": "candidates" if variant == "dependent" else "milp"}
    if variant == "stationary":
        expect["stationary"] = True
    return Instance(name=f"concave_{variant}_C{n_concave}_{d}-{h}-1_n{X.shape[0]}", weights=weights,
                    biases=biases, X=X, y=y, activation="relu", loss="square", expect=expect,
                    params={"generator": "concave_unit_kinks", "n_concave": n_concave, "variant": variant,
                            "d": d, "h": h, "n": X.shape[0], "seed": seed})


# ---------------------------------------------------------------------------- kink-free minima
def smooth_minimum(widths: tuple = (100, 1000, 1), n: int = 10_000, *, variant: str = "zero_loss",
                   seed: int = 0) -> Instance:
    """A ReLU network (any depth, scalar output), square loss, at a kink-free *global* minimum.

    Construction (all integers, so the forward pass is exact): hidden layers have even weights in
    ``{-4..4}`` and odd biases in ``{-3..3}``, inputs are integers in ``{-3..3}``; so every hidden
    pre-activation is an odd integer (``|z| >= 1``: no kink, far outside the tolerance), by
    induction over the layers (``relu`` of an odd integer is 0 or odd, times an even weight is even).
    Output weights are in ``{-2, -1, 1, 2}`` (no zero-output unit), the output bias in ``{-2..2}``.
    Then every layer is divided by a power of two (exact) so that its pre-activations are O(1).

    * ``"zero_loss"``: ``y = f(x)`` exactly, so ``L = 0`` and every gradient term is exactly 0.
      Why it is a minimum, independently of certify: the square loss is ``>= 0`` and equals 0 here,
      so theta is a global (hence local) minimum.
    * ``"paired"``: every input twice, with labels ``f(x) + 1`` and ``f(x) - 1`` (``n`` = twice
      the number of inputs). ``L = 1/2 > 0``; each input's residuals cancel, so the gradient is 0
      up to the rounding of the ``1/n`` scaling. It is a global minimum too: ``f(x)`` is the mean
      label at every input, which minimises the square loss over *all* functions of ``x``.

    The Hessian is then ``J'J / n`` (the residual term vanishes or cancels pairwise), so with
    enough distinct inputs it is positive definite modulo the rescaling symmetries of deep nets.
    """
    if variant not in ("zero_loss", "paired"):
        raise ValueError(f"variant must be 'zero_loss' or 'paired'; got {variant!r}")
    if len(widths) < 3 or widths[-1] != 1:
        raise ValueError("smooth_minimum needs at least one hidden layer and a scalar output")
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for l, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        if l < len(widths) - 2:
            weights.append(2.0 * rng.integers(-2, 3, size=(n_out, n_in)))
            biases.append(2.0 * rng.integers(-2, 2, size=n_out) + 1.0)
        else:
            weights.append(rng.choice([-2.0, -1.0, 1.0, 2.0], size=(n_out, n_in)))
            biases.append(rng.integers(-2, 3, size=n_out).astype(np.float64))
    n_inputs = n // 2 if variant == "paired" else n
    X = rng.integers(-3, 4, size=(n_inputs, widths[0])).astype(np.float64)
    pre = _forward_exact(tuple(weights), tuple(biases), X)
    assert all(np.all(np.abs(z) >= 1) for z in pre[:-1]), "a hidden pre-activation is 0"
    # dyadic rescaling, exact: with S_l = round(log2 rms(z^l)), W_l / 2^(S_l - S_(l-1)) and b_l / 2^S_l
    # give z^l / 2^S_l, pre-activations of root-mean-square ~1 in every layer (the integer layers grow
    # by ~sqrt(width) each; unbalanced scales make the Hessian needlessly ill-conditioned)
    shift = 0
    for l, z in enumerate(pre):
        total = int(np.round(np.log2(max(float(np.sqrt(np.mean(z ** 2))), 1e-300))))
        weights[l] = np.ldexp(weights[l], -(total - shift))
        biases[l] = np.ldexp(biases[l], -total)
        shift = total
    weights, biases = tuple(weights), tuple(biases)
    pre = _forward_exact(weights, biases, X)
    f = pre[-1][:, 0]
    if variant == "paired":
        X = np.vstack([X, X])
        y = np.concatenate([f + 1.0, f - 1.0])
    else:
        y = f.copy()
    name = f"smooth_min_{variant}_{'-'.join(map(str, widths))}_n{X.shape[0]}"
    return Instance(name=name, weights=weights, biases=biases, X=X, y=y, activation="relu", loss="square",
                    expect={"unit_kinks": 0, "loss_kinks": 0, "method": "gradient", "stationary": True,
                            "local_min": True},
                    params={"generator": "smooth_minimum", "widths": list(widths), "n": int(X.shape[0]),
                            "variant": variant, "seed": seed})


# ---------------------------------------------------------------------------- balanced unit kinks
def balanced_unit_kinks(n_kinks: int = 100, *, d: int = 8, h: int = 32, n: int | None = None,
                        seed: int = 0) -> Instance:
    """One hidden ReLU layer ``d -> h -> 1``, square loss, ``n_kinks`` *convex* unit kinks at a
    d-stationary point that is a local minimum but not a global one (residuals are nonzero).

    Every unit reads feature 0 with weight 1 (``W1[:, 0] = 1``), other weights and biases are
    integers in ``{-3..3}``, output weights ``a_j`` in ``{-3..-1, 1..3}``. For each kink a *group*
    of three samples on one unit ``j``: ``x_k`` with ``z_j(x_k) = 0`` exactly and every other unit at
    ``z <= -3``, then ``x_k + e_0`` and ``x_k + 2 e_0`` (``z_j = 1, 2``; the others stay ``<= -1``),
    with residuals ``f - y = s (2, -2, 1)``, ``s = sign(a_j)``. One *canceller* sample (every unit
    inactive) takes the sum of the residuals back out; the other samples (if ``n`` asks for more)
    are fitted exactly (residual 0, no pre-activation 0).

    Why it is d-stationary (exactly, all numbers are integers): in ``L'(theta; d) = (1/n) sum_i r_i
    f_i'(d)`` the output bias sees ``sum r = 0``; ``a_j`` sees ``-2s * 1 + s * 2 = 0``; unit ``j``'s
    ``v = xbar_k . (dw_j, db_j)`` sees ``a_j s (2 max(v, 0) - 2 (v + dx) + (v + 2 dx)) = |a_j| |v|``
    (``dx = dw_j[0]``; the smooth samples add ``-s a_j v`` in total). So
    ``L'(theta; d) = (1/n) sum_groups |a_j| |xbar_k . (dw_j, db_j)| >= 0``: every kink is convex and its
    first-order multiplier is exactly ``1/2``. With every ``a_j != 0`` and one hidden layer, d-
    stationarity is a local minimum (cell convexity, REFERENCES A4.5-1); the brute-force oracle
    (:func:`tests.bruteforce.oracle`) confirms it by enumerating all ``2^K`` pieces on small cases.
    Not a global minimum in output space: the kink sample of a group has its own input and residual 2.
    """
    if d < 2 or h < 2:
        raise ValueError("balanced_unit_kinks needs d >= 2 and h >= 2")
    rng = np.random.default_rng(seed)
    W1 = np.concatenate([np.ones((h, 1)), rng.integers(-3, 4, size=(h, d - 1))], axis=1).astype(np.float64)
    b1 = rng.integers(-3, 4, size=h).astype(np.float64)
    a = rng.choice([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0], size=h)
    W2, b2 = a[None, :].copy(), np.zeros(1)
    weights, biases = (W1, W2), (b1, b2)
    rows, residuals, seen = [], [], set()
    width = 3
    tries = 0
    while len(seen) < n_kinks:
        tries += 1
        if tries > 200 * n_kinks + 10_000:
            raise ValueError(f"could not place {n_kinks} distinct isolated kinks (d = {d}, h = {h}); "
                             f"use a larger d")
        if tries % (50 * max(n_kinks, 1)) == 0:
            width += 1                               # more room for distinct inputs
        xr = rng.integers(-width, width + 1, size=d - 1).astype(np.float64)
        sc = W1[:, 1:] @ xr + b1                      # z_l = x_0 + sc_l
        order = np.argsort(sc)
        j = int(order[-1])
        if h > 1 and sc[j] - sc[order[-2]] < 3:       # every other unit at z <= -3 on the kink sample
            continue
        x = np.concatenate([[-sc[j]], xr])
        key = x.tobytes()
        if key in seen:
            continue
        seen.add(key)
        s = 1.0 if a[j] > 0 else -1.0
        for t, r in ((0.0, 2.0), (1.0, -2.0), (2.0, 1.0)):
            xt = x.copy()
            xt[0] += t
            rows.append(xt)
            residuals.append(s * r)
    total = float(np.sum(residuals))
    x_off = np.concatenate([[-(b1.max() + 2)], np.zeros(d - 1)])   # every unit at z <= -2
    if total != 0:
        rows.append(x_off)
        residuals.append(-total)
    n_total = len(rows) if n is None else n
    if n_total < len(rows):
        raise ValueError(f"n = {n} is smaller than the {len(rows)} constructed samples")
    while len(rows) < n_total:                       # fitted samples: residual 0, no kink
        x = np.concatenate([rng.integers(-8, 9, size=1), rng.integers(-3, 4, size=d - 1)]).astype(np.float64)
        if np.any(_forward_exact(weights, biases, x[None, :])[0] == 0):
            continue
        rows.append(x)
        residuals.append(0.0)
    X = np.array(rows)
    res = np.array(residuals)
    F = _forward_exact(weights, biases, X)[-1][:, 0]
    y = F - res
    perm = rng.permutation(X.shape[0])
    X, y = X[perm], y[perm]
    pre = _forward_exact(weights, biases, X)
    assert int(np.count_nonzero(pre[0] == 0)) == n_kinks, "kink count"
    assert np.all((pre[0] == 0) | (np.abs(pre[0]) >= 1))
    return Instance(name=f"balanced_K{n_kinks}_{d}-{h}-1_n{X.shape[0]}", weights=weights, biases=biases, X=X, y=y,
                    activation="relu", loss="square",
                    expect={"unit_kinks": n_kinks, "loss_kinks": 0, "method": "lp", "stationary": True,
                            "local_min": True},
                    params={"generator": "balanced_unit_kinks", "n_kinks": n_kinks, "d": d, "h": h,
                            "n": int(X.shape[0]), "seed": seed})


# ---------------------------------------------------------------------------- mixed margin and unit kinks
def mixed_hinge_unit_kinks(n_hinge: int = 900, n_unit: int = 700, *, d: int = 50, h: int = 48, n: int = 4800,
                           alpha: float = 0.25, seed: int = 0) -> Instance:
    """Leaky ReLU ``d -> h -> 1``, hinge loss: ``n_hinge`` margins exactly 1 and ``n_unit`` convex unit
    kinks at an exact local minimum (p = 2,497 with the defaults, like the held-out checkpoint of issue 12).

    Units ``0..h-3`` are *kink units*: unit ``j`` reads its private feature ``j`` with weight 1 and the
    last two (shared) features with weights in ``{-2..2}``, bias in ``{-3..3}``, output weight
    ``v_j = +-1``. Unit ``h-2`` is a *free unit*: ``z = x_{h-2} >= 1`` (always active, output weight
    1/16), which sets ``f(x)`` to any multiple of 1/16 above the rest; unit ``h-1`` reads nothing
    (``z = 1``, output weight 1). Every number is a dyadic rational with a small denominator
    (``alpha = 1/4``), so the forward pass is exact and every kink is an exact zero.

    * **Margin kinks**: a sample ``(x, y)`` with ``f(x) = y`` (margin exactly 1) and a partner
      ``(x, -y)`` (margin -1, active); no unit is at 0 there. The pair adds
      ``(1/n) (y f'(d) + max(0, -y f'(d))) = (1/n) max(y f'(d), 0)`` to ``L'(theta; d)``:
      a convex kink, multiplier 1.
    * **Unit kinks**, in groups of 8 samples on one unit ``j`` (2 kinks each): ``x_k + t e_j`` for
      ``t = -2..2`` with ``z_j(x_k) = 0`` (so ``z_j = t``), every other unit away from 0 (it does not
      read feature ``j``, so its side is the same on the whole group), ``f(x_k) = -s/4``
      (``s = v_j``) and hinge adjoints ``-y/n`` summing to ``r_t / n`` with
      ``r = s (1, -2, 2, -2, 1)`` (copies: 1, 2, 2, 2, 1; every margin is in ``(-1, 1)``: active).
      Since ``sum_t r_t = 0`` and ``sum_t r_t t = 0``, ``sum_t r_t xbar_t = 0``: every unit other than
      ``j`` (one slope on the group), the output weights and the output bias see nothing. Unit ``j``
      sees ``(v_j/n) [r_-2 alpha (a - 2e) + r_-1 alpha (a - e) + r_0 (alpha a + (1 - alpha)
      max(a, 0)) + r_1 (a + e) + r_2 (a + 2e)] = ((1 - alpha)/n) (2 max(a.d, 0) - a.d)``
      (``a = xbar_k . (dw_j, db_j)``, ``e = dw_j[j]``) -- two convex kinks with multiplier 1/2 each.
    * **Filler** samples: margin >= 2 (hinge inactive), no unit at 0.

    So ``L'(theta; d) = (1/n) [sum_margins max(y f'(d), 0) + (1 - alpha) sum_groups |a_k . d| ] >= 0``
    exactly: d-stationary with multipliers 1 (margins) and 1/2 (unit kinks). One hidden layer, scalar
    output, hinge (convex), every output weight nonzero: a local minimum (REFERENCES A4.5-1). The
    multipliers of the two identical rows of a group are not unique (any split of 1), and the margin
    multipliers sit on their bound: the degenerate case a QP or LP solver finds hardest to close exactly.
    """
    if n_unit % 2:
        raise ValueError("n_unit must be even (unit kinks come in groups of 8 samples with 2 kinks)")
    if d < h or h < 4:
        raise ValueError("mixed_hinge_unit_kinks needs d >= h >= 4 (a private feature per unit)")
    n_groups = n_unit // 2
    n_needed = 8 * n_groups + 2 * n_hinge
    if n < n_needed:
        raise ValueError(f"n = {n} is smaller than the {n_needed} constructed samples")
    rng = np.random.default_rng(seed)
    K = h - 2                                        # kink units 0..K-1; free unit K; constant unit K+1
    shared = [d - 2, d - 1]
    W1 = np.zeros((h, d))
    W1[np.arange(K), np.arange(K)] = 1.0
    W1[:K, shared] = rng.integers(-2, 3, size=(K, 2))
    W1[K, K] = 1.0
    b1 = np.concatenate([rng.integers(-3, 4, size=K), [0.0, 1.0]]).astype(np.float64)
    v = np.concatenate([rng.choice([-1.0, 1.0], size=K), [1.0 / 16, 1.0]])
    W2 = v[None, :]
    B = 64.0                                         # output bias: the free unit adds x_K / 16 >= 1/16
    b2 = np.array([-B])
    weights, biases = (W1, W2), (b1, b2)

    def rest_features():
        """Private features of the kink units and the shared ones: no kink unit at 0."""
        x = np.zeros(d)
        x[shared] = rng.integers(-3, 4, size=2)
        base = W1[:K, shared] @ x[shared] + b1[:K]
        x[:K] = rng.integers(-4, 5, size=K)
        zero = x[:K] + base == 0
        x[:K][zero] += 1.0
        return x

    def with_output(x, target):
        """Set the free feature so that f(x) = target (a multiple of 1/16 below the reach of the rest)."""
        x = x.copy()
        x[K] = 0.0
        z = x @ W1.T + b1
        rest = float(np.where(z[:K] > 0, z[:K], alpha * z[:K]) @ v[:K] + v[K + 1] * 1.0 + b2[0])
        x[K] = 16.0 * (target - rest)
        if x[K] < 1 or x[K] != np.round(x[K]):
            raise AssertionError("free feature out of range")
        return x

    rows, labels = [], []
    for _ in range(n_hinge):                         # margin kinks and their partners
        y = float(rng.choice([-1.0, 1.0]))
        x = with_output(rest_features(), y)
        rows += [x, x]
        labels += [y, -y]
    for g in range(n_groups):                        # unit-kink groups
        j = g % K
        s = v[j]
        x = rest_features()
        x[j] = 0.0
        x[j] = -(W1[j] @ x + b1[j])                  # z_j(x_k) = 0
        xk = with_output(x, -s / 4.0)
        for t, r in ((-2, 1), (-1, -2), (0, 2), (1, -2), (2, 1)):
            xt = xk.copy()
            xt[j] += t
            for _ in range(abs(r)):
                rows.append(xt)
                labels.append(-s * np.sign(r))       # adjoint -y/n = s sign(r)/n
    while len(rows) < n:                             # filler: margin >= 2, inactive
        y = float(rng.choice([-1.0, 1.0]))
        rows.append(with_output(rest_features(), y * float(rng.integers(2, 5))))
        labels.append(y)
    X = np.array(rows)
    y = np.array(labels)
    perm = rng.permutation(X.shape[0])
    X, y = X[perm], y[perm]
    # exact checks (every partial sum is a dyadic rational far from 2^53)
    Z = X @ W1.T + b1
    bound = np.abs(X) @ np.abs(W1).T + np.abs(b1)
    assert bound.max() < 2.0 ** 40
    Hx = np.where(Z > 0, Z, alpha * Z)
    F = Hx @ W2[0] + b2[0]
    margins = y * F
    assert int(np.count_nonzero(Z == 0)) == n_unit, "unit kink count"
    assert int(np.count_nonzero(margins == 1)) == n_hinge, "margin kink count"
    assert not np.any((Z == 0).any(axis=1) & (margins == 1)), "a unit kink at a margin kink (nested)"
    assert np.all((Z == 0) | (np.abs(Z) >= 1)), "a pre-activation near 0"
    return Instance(name=f"mixed_H{n_hinge}_U{n_unit}_{d}-{h}-1_n{X.shape[0]}", weights=weights, biases=biases,
                    X=X, y=y, activation=f"leaky_relu:{alpha}", loss="hinge",
                    expect={"unit_kinks": n_unit, "loss_kinks": n_hinge, "stationary": True, "local_min": True},
                    params={"generator": "mixed_hinge_unit_kinks", "n_hinge": n_hinge, "n_unit": n_unit, "d": d,
                            "h": h, "n": int(X.shape[0]), "alpha": alpha, "seed": seed})
# ---------------------------------------------------------------------------- path-space cells
def _exact_forward(weights, biases, X, frac_bits):
    """Pre-activations (ReLU) with a check that every value is a dyadic computed exactly in float64.

    ``frac_bits``: the fractional bits of the hidden values, or ``(hidden, output)``."""
    frac_h, frac_o = frac_bits if isinstance(frac_bits, tuple) else (frac_bits, frac_bits)
    pre, x = [], X
    for l, (W, b) in enumerate(zip(weights, biases), start=1):
        z = x @ W.T + b
        size = np.abs(x) @ np.abs(W).T + np.abs(b)
        bits = frac_o if l == len(weights) else frac_h
        if size.size and size.max() * 2.0 ** bits >= 2.0 ** 52:
            raise ValueError("pattern_cells: values too large for an exact float64 forward pass")
        pre.append(z)
        if l < len(weights):
            x = np.maximum(z, 0.0)
    return pre


def pattern_cells(d: int = 8, hidden: tuple = (16, 8), C: int = 1, *, loss: str = "square", n_quads: int = 64,
                  K_zero: int = 32, K_convex: tuple = (4, 4), variant: str = "min", seed: int = 0) -> Instance:
    """Minima (and refuted variants) whose proof is a per-pattern affine fit: depth 1-3, kinks in the
    first and the top hidden layer with nonzero loss, many zero-loss kinks, several outputs, hinge.

    Construction (ReLU; integers and dyadic numbers only, so float64 is exact -- asserted):

    * ``W1 = [1 | S]`` (distinct rows ``S_j in {+-1}^(d-1)``; depth 2: the last column is 0 except for
      one unit, so that input coordinate moves one first-layer unit only), ``b1 in {-1, 0, 1}``; depth 3: a middle
      layer with weights in ``{1, 2}`` and bias 1 (active on every sample: a linear layer); the top
      hidden layer has weights ``+-{1, 2}`` and biases set to minus the median of its pre-activations
      (so about half its units are active at a sample); output weights ``a[c, k] = sgn_k {1, 2}``
      (hinge: times ``2^-q`` so that ``|f| < 1/2`` on the quadruples). For depth 2, a quarter of the
      first-layer units (the *aligned* ones) have ``W2[k, j] = sgn_k {1, 2}``: every path from them
      to every output has the same sign.
    * **Quadruples** ``Q``: ``c + delta_1 e_1, c - delta_1 e_1`` with residual ``+s`` and
      ``c + delta_2 e_2, c - delta_2 e_2`` with ``-s`` (square loss; hinge: labels ``(y, y, -y, -y)``,
      margins in ``(-1, 1)``). So ``sum_Q r_i xbar_i = 0`` exactly, for every output. Every
      pre-activation at the centre ``c`` is at least ``1`` away from 0 and ``delta`` is small enough
      that the four points share the centre's activation pattern: near ``theta``,
      ``f(x_i) = A_Q(theta') xbar_i`` on ``Q`` for one affine map ``A_Q`` (patterns differ between
      quadruples: layers 1 and top are nonlinear).
    * **Convex kink members** (``K_convex = (k1, k2)``): in ``k1`` quadruples the point
      ``c + delta_1 e_1`` sits exactly on the kink of a first-layer unit ``j`` (aligned for depth 2)
      which is active at the other three points; in ``k2`` quadruples (depth 2) on the kink of a
      top-layer unit ``k`` (placed with the one-unit input coordinate, exactly). The residual sign is chosen so that ``r_m . rho > 0`` (square; hinge:
      ``-y_m rho > 0``), ``rho`` = the derivative of ``f`` w.r.t. the unit's output at that point.
    * **Zero-loss kink samples** (``K_zero``): points exactly on the kink of a first-layer unit
      (``x_rest = -t S_j + u`` with ``u`` small, ``x_0 = -S_j . x_rest - b_j``; every other pre-activation
      at least 1 away from 0), fitted exactly (square: ``y = f(x)``; hinge: ``y = sign f``, ``|f| >= 1``).

    **Proof that theta is a local minimum** (variant ``min``). Near ``theta`` every non-kink point of a
    quadruple keeps the quadruple's pattern, so ``f = A_Q(theta') xbar`` there. At a kink member ``m``
    of unit ``u``, ``f_m = A_Q(theta') xbar_m + rho(theta') max(-z_u, 0)`` (the unit only switches
    off; ``rho`` keeps its sign near theta). Square loss: ``l_m >= 1/2 (A_Q xbar_m - y_m)^2 +
    (A_Q xbar_m - y_m) . rho max(-z_u, 0)`` and the second term is ``>= 0`` near theta since
    ``r_m . rho > 0``; hinge: ``l_m = 1 - y_m f_m >= 1 - y_m A_Q xbar_m``. So each quadruple's loss
    is at least that of an affine fit of its four points, which is at least the best affine fit's --
    attained at theta because ``sum_Q r_i xbar_i = 0`` (hinge: the loss of ``Q`` is constant in
    ``A``). Zero-loss samples contribute ``>= 0 = `` their value at theta. Hence
    ``L(theta') >= L(theta)`` near theta.

    Variant ``saddle`` (depth 2, square loss): one more quadruple ``Q0`` with ``delta_2 = delta_1 = delta``
    around a centre ``c0`` where a first-layer unit ``j0`` (``S_j0 = (1, 1, ...)``) exceeds its value at
    every other sample, and one more top-layer unit ``k*`` with ``W2[k*] = e_j0``,
    ``b2[k*] = -z_j0(c0)`` and output weights 0: ``z_k*`` is ``+delta`` at ``c0 + delta e1`` (residual
    ``s``) and ``c0 + delta e2`` (residual ``-s``) and negative (nonzero) everywhere else, so
    ``dL/da_k* = sum r relu(z_k*) / n = 0`` and theta stays stationary; ``L`` is C^2 in the plane of
    ``(a[c, k*], W2[k*, j])`` (``z_k*`` is never 0) with Hessian ``[[2 delta^2 / n, beta], [beta, 0]]``,
    ``beta = s_c (relu z_j(c0 + delta e1) - relu z_j(c0 + delta e2)) / n = +-2 delta s_c / n != 0`` for a unit
    ``j`` active there with ``S_j1 != S_j2``: indefinite, a saddle.

    Variants: ``not_stationary`` -- one quadruple target moved by 1/2 (hinge: one label flipped), so
    the output bias has derivative ``mean r != 0`` (no kink involves it at first order);
    ``concave`` -- one first-layer kink member with the wrong residual sign: along
    ``d = -xbar_m`` on that unit's incoming weights ``L'(theta; d) = (rho r_m / n) |xbar_m|^2 < 0``
    (the balanced quadruple cancels the rest; checked exactly by the benchmark's ground truth).
    """
    if variant not in ("min", "not_stationary", "concave", "saddle"):
        raise ValueError(variant)
    if variant == "saddle" and (len(hidden) != 2 or loss != "square"):
        raise ValueError("saddle variant: depth 2, square loss")
    if loss not in ("square", "hinge"):
        raise ValueError(loss)
    if loss == "hinge" and C != 1:
        raise ValueError("hinge loss needs one output")
    depth = len(hidden)
    if depth not in (1, 2, 3) or d < 4:
        raise ValueError("pattern_cells: depth 1-3 and d >= 4")
    rng = np.random.default_rng(seed)
    h1, htop = hidden[0], hidden[-1]
    # depth 2: the last input coordinate is an *adjuster* seen by one first-layer unit only, so a
    # top-layer pre-activation can be moved by W2[k, u] (a power of two) without touching the others
    n_sign = d - 1 if depth != 2 else d - 2
    if 2 ** n_sign < h1:
        raise ValueError("need 2^(d-1) (depth 2: 2^(d-2)) >= h1 distinct sign rows")
    rows, seen = [], set()
    while len(rows) < h1:
        r = rng.choice([-1.0, 1.0], size=n_sign)
        if r.tobytes() not in seen:
            seen.add(r.tobytes())
            rows.append(r)
    S = np.array(rows)
    adjuster = None
    if depth == 2:
        adjuster = int(rng.integers(h1))
        S = np.concatenate([S, np.zeros((h1, 1))], axis=1)
        S[adjuster, -1] = 1.0
    weights = [np.concatenate([np.ones((h1, 1)), S], axis=1)]
    biases = [rng.integers(-1, 2, size=h1).astype(np.float64)]
    sgn = rng.choice([-1.0, 1.0], size=htop)
    aligned = np.zeros(h1, dtype=bool)
    if depth == 2:
        aligned[rng.permutation(h1)[:max(1, h1 // 4)]] = True
        W2 = rng.choice([-2.0, -1.0, 1.0, 2.0], size=(htop, h1))
        W2[:, aligned] = sgn[:, None] * rng.choice([1.0, 2.0], size=(htop, int(aligned.sum())))
        weights.append(W2)
        biases.append(np.zeros(htop))
    elif depth == 3:
        h2 = hidden[1]
        weights.append(rng.choice([1.0, 2.0], size=(h2, h1)))
        biases.append(np.ones(h2))
        weights.append(sgn[:, None] * rng.choice([1.0, 2.0], size=(htop, h2)))
        biases.append(np.zeros(htop))
    a = sgn[None, :] * rng.choice([1.0, 2.0], size=(C, htop))
    if depth == 1:
        a = sgn[None, :] * rng.choice([1.0, 2.0], size=(C, htop))
    weights.append(a)
    biases.append(np.zeros(C))
    # centres: integers; the top layer's biases from the median of its pre-activations
    n_cand = 4 * n_quads + 64
    cand = np.concatenate([rng.integers(-(d - 1), d, size=(n_cand, 1)),
                           rng.integers(-2, 3, size=(n_cand, d - 1))], axis=1).astype(np.float64)
    if depth >= 2:
        pre = _exact_forward(weights, biases, cand, 0)
        biases[-2] = -np.floor(np.median(pre[-2], axis=0))
    pre = _exact_forward(weights, biases, cand, 0)
    ok = np.all([np.all(np.abs(z) >= 1, axis=1) for z in pre[:-1]], axis=0)
    centres = cand[ok]
    # delta: small enough that no pre-activation changes sign inside a quadruple
    growth = 1.0
    for W in weights[1:-1]:
        growth = max(growth, float(np.abs(W).sum(axis=1).max()) * growth)
    k1 = int(np.ceil(np.log2(8 * growth))) + 1
    d1 = 2.0 ** -k1
    frac = k1 + 8
    out_scale = 1.0
    if loss == "hinge":
        Fc = _exact_forward(weights, biases, centres, 0)[-1]
        q = int(np.ceil(np.log2(4 * max(float(np.abs(Fc).max()), 1.0) + 8 * growth))) + 1
        out_scale = 2.0 ** -q
        weights[-1] = weights[-1] * out_scale
        frac = (frac, frac + q)
    X_parts, r_parts = [], []
    e1 = np.zeros(d); e1[1] = 1.0
    e2 = np.zeros(d); e2[2] = 1.0

    def quad(c, dd1, dd2):
        return np.stack([c + dd1 * e1, c - dd1 * e1, c + dd2 * e2, c - dd2 * e2])

    def pattern_ok(P, skip=None):
        pre_ = _exact_forward(weights, biases, P, frac)
        for l, z in enumerate(pre_[:-1], start=1):
            zz = z.copy()
            if skip is not None and skip[0] == l:
                zz[0, skip[1]] = np.sign(zz[1, skip[1]])      # the kink member takes the others' side
                if z[0, skip[1]] != 0 or np.any(z[1:, skip[1]] <= 0):
                    return None
            if np.any(zz == 0) or np.any(np.sign(zz) != np.sign(zz[0:1])):
                return None
        return pre_

    # derivative rho of f (all outputs) w.r.t. a unit's output at a point whose pattern is known
    def rho_of(point, layer, unit):
        pre_ = _exact_forward(weights, biases, point[None, :], frac)
        # back-propagate e_unit from layer `layer` (1-based hidden layer) to the output
        v = np.zeros(weights[layer - 1].shape[0]); v[unit] = 1.0
        for l in range(layer + 1, len(weights) + 1):
            v = weights[l - 1] @ v
            if l < len(weights):
                v = v * (pre_[l - 1][0] > 0)
        return v                                                          # (C,)

    s_vals = np.array([-1.0, -0.5, 0.5, 1.0])
    k_first, k_top = K_convex if depth == 2 else (K_convex[0], 0)
    n_plain = n_quads - k_first - k_top
    if n_plain < 1 or len(centres) < n_quads:
        raise ValueError("pattern_cells: not enough quadruples")
    used = 0
    concave_done = False
    witness = None
    # plain quadruples
    for c in centres[:n_plain]:
        P = quad(c, d1, d1 / 2)
        if pattern_ok(P) is None:
            continue
        s = rng.choice(s_vals, size=C)
        X_parts.append(P)
        r_parts.append(np.stack([s, s, -s, -s]))
        used += 1
    # kink members in the first layer
    cand_units = np.nonzero((S[:, 0] == -1) & (aligned if depth == 2 else np.ones(h1, bool)))[0]
    tries = 0
    made1 = 0
    used_units = set()
    while made1 < k_first and tries < 200 * max(k_first, 1) and cand_units.size:
        tries += 1
        j = int(rng.choice(cand_units))
        if j in used_units and (len(used_units) < cand_units.size or (witness is not None and j == witness[0])):
            continue                                  # distinct units while they last; never the concave one
        c = centres[rng.integers(len(centres))].copy()
        c[0] = d1 - (S[j] @ c[1:]) - biases[0][j]                       # z_j(c) = delta_1 (S_j1 = -1)
        P = quad(c, d1, d1 / 2)
        pre_ = pattern_ok(P, skip=(1, j))
        if pre_ is None:
            continue
        z1 = pre_[0]
        if np.any(np.abs(np.delete(z1[0], j)) < 0.5):
            continue
        rho = rho_of(P[0], 1, j)
        if np.any(rho == 0) and depth > 1:
            continue
        mag = rng.choice(s_vals[2:], size=C)
        # the member's loss derivative omega_m (square: its residual; hinge: -y_m) has the sign of rho
        s = np.sign(rho) * mag if loss == "square" else np.array([np.sign(rho[0])])
        if variant == "concave" and not concave_done:
            s = -s
            concave_done = True
            witness = (j, 4 * len(X_parts))            # (unit, sample index of its kink member)
        X_parts.append(P)
        r_parts.append(np.stack([s, s, -s, -s]))
        used_units.add(j)
        made1 += 1
    # kink members in the top hidden layer (depth >= 2)
    L = len(weights)
    made2, tries = 0, 0
    while made2 < k_top and tries < 400 * max(k_top, 1):
        tries += 1
        k = int(rng.integers(htop))
        c = centres[rng.integers(len(centres))].copy()
        ea = np.zeros(d); ea[-1] = 1.0
        pre_c = _exact_forward(weights, biases, np.stack([c, c + e1, c + e2, c + ea]), 0)
        zt = pre_c[-2][:, k]
        g, g2, s0 = zt[1] - zt[0], zt[2] - zt[0], zt[3] - zt[0]           # slopes along e1, e2, the adjuster
        if pre_c[0][0, adjuster] <= 0 or g >= 0 or abs(s0) not in (1.0, 2.0):
            continue
        c[-1] += (-d1 * g - zt[0]) / s0                                   # z_k(c) = -delta_1 g > 0
        m = 1
        while 2.0 ** m <= 4 * abs(g2) / abs(g):
            m += 1
        dd2 = d1 * 2.0 ** -m
        P = quad(c, d1, dd2)
        pre_ = pattern_ok(P, skip=(L - 1, k))
        if pre_ is None:
            continue
        if np.any([np.any(np.abs(z[0]) < 0.25) for z in pre_[:-2]]):
            continue
        rho = weights[-1][:, k]
        s = np.sign(rho) * rng.choice(s_vals[2:], size=C) if loss == "square" else np.array([np.sign(rho[0])])
        X_parts.append(P)
        r_parts.append(np.stack([s, s, -s, -s]))
        made2 += 1
    # zero-loss samples on first-layer kinks: x_rest = -t S_j + u (u small), x_0 such that z_j = 0; the
    # others are active (z_j' = t (|S_j|^2 - S_j'.S_j) + ... >= 2t - ...); bounded magnitudes (a far-out
    # sample with a huge target would swamp every rounding bound of the loss)
    Xk, units = [], rng.integers(h1, size=K_zero)
    for j in units:
        for attempt in range(400):
            t = 2 + attempt // 50
            x = np.zeros(d)
            x[1:] = -t * S[j] + rng.integers(-1, 2, size=d - 1) * (attempt % 50 > 0)
            x[0] = -(S[j] @ x[1:]) - biases[0][j]
            pre_ = _exact_forward(weights, biases, x[None, :], frac)
            if pre_[0][0, j] != 0 or np.any(np.abs(np.delete(pre_[0][0], j)) < 1) or any(
                    np.any(np.abs(z[0]) < 1) for z in pre_[1:-1]):
                continue
            if loss == "hinge" and abs(pre_[-1][0, 0]) < 1:
                continue
            Xk.append(x)
            break
    Xk = np.array(Xk).reshape(-1, d)
    escape = None
    if variant == "saddle":
        # an escape unit k* in the top layer: z_k* = relu(z1_j0) - z1_j0(c0), positive only at the two
        # members c0 + delta e1, c0 + delta e2 (opposite residuals, equal values delta) of a quadruple
        others = np.concatenate([np.concatenate(X_parts, axis=0), Xk.reshape(-1, d)], axis=0)
        j0s = np.nonzero((S[:, 0] == 1) & (S[:, 1] == 1))[0]
        for _ in range(400):
            j0 = int(rng.choice(j0s))
            z_other = _exact_forward(weights, biases, others, frac)[0][:, j0]
            c = centres[rng.integers(len(centres))].copy()
            c[0] += max(0.0, float(np.maximum(z_other, 0).max()) + 2 - (c[0] + S[j0] @ c[1:] + biases[0][j0]))
            c[0] = np.ceil(c[0])
            P = quad(c, d1, d1)
            if pattern_ok(P) is None:
                continue
            z0 = float(c[0] + S[j0] @ c[1:] + biases[0][j0])
            if z0 < float(np.maximum(z_other, 0).max()) + 1:
                continue
            s_ = rng.choice(s_vals, size=C)
            X_parts.append(P)
            r_parts.append(np.stack([s_, s_, -s_, -s_]))
            escape = (j0, z0)
            break
        if escape is None:
            raise RuntimeError("pattern_cells: no escape quadruple found")
    Xq = np.concatenate(X_parts, axis=0)
    Rq = np.concatenate(r_parts, axis=0)
    if escape is not None:
        j0, z0 = escape
        row = np.zeros((1, h1)); row[0, j0] = 1.0
        weights[1] = np.concatenate([weights[1], row], axis=0)
        biases[1] = np.concatenate([biases[1], [-z0]])
        weights[2] = np.concatenate([weights[2], np.zeros((C, 1))], axis=1)
    X = np.concatenate([Xq, Xk], axis=0)
    pre = _exact_forward(weights, biases, X, frac)
    if escape is not None:
        zk = pre[1][:, -1]
        assert np.count_nonzero(zk > 0) == 2 and np.all(zk != 0)
    F = pre[-1]
    nq = Xq.shape[0]
    if loss == "square":
        R = np.concatenate([Rq, np.zeros((Xk.shape[0], C))], axis=0)
        if variant == "not_stationary":
            R[0] += 0.5
        y = F - R
        assert np.array_equal(F - y, R)
        y = y[:, 0] if C == 1 else y
    else:
        # hinge: Rq holds omega = -y on the quadruples (margins in (-1, 1)); zero-loss samples: y = sign f
        yq = -np.sign(Rq[:, 0])
        assert np.all(np.abs(F[:nq, 0]) < 0.5)
        yk = np.sign(F[nq:, 0])
        assert np.all(np.abs(F[nq:, 0]) >= 1)
        y = np.concatenate([yq, yk])
        if variant == "not_stationary":
            y[0] = -y[0]
    kinks1 = int(sum(np.count_nonzero(z == 0) for z in pre[:-1]))
    widths = (d,) + tuple(hidden) + (C,)
    return Instance(name=f"pattern_cells_{'-'.join(map(str, widths))}_{loss}_{variant}_s{seed}",
                    weights=tuple(weights), biases=tuple(biases), X=X, y=y, activation="relu", loss=loss,
                    expect={"variant": variant, "quadruples": int(nq // 4), "unit_kinks": kinks1,
                            "escape_unit": None if escape is None else int(weights[1].shape[0] - 1),
                            "concave_witness": witness,
                            "zero_loss_kinks": int(Xk.shape[0]), "convex_kinks": (made1, made2)},
                    params={"generator": "pattern_cells", "d": d, "hidden": list(hidden), "C": C, "loss": loss,
                            "n_quads": n_quads, "K_zero": K_zero, "K_convex": list(K_convex), "variant": variant,
                            "seed": seed})
