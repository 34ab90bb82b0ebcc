"""Taylor coefficients of the loss along a curve, on the piece the curve enters -- exactly when small.

A refutation must be a *local* descent: along ``theta(t) = theta + t d + t^2/2 e`` (more generally
``theta + sum_k t^k T_k``) the loss must drop for *every* small ``t > 0``, not just at one lower point
(which could lie in another basin). Every activation here is piecewise linear and every rational
loss piecewise polynomial, so for small ``t > 0``:

* each pre-activation ``z(t)`` is a polynomial in ``t``; its sign for all small ``t > 0`` is the sign
  of its *first nonzero coefficient* (lexicographic), which fixes the activation's slope -- the
  piece the curve enters. A coefficient vector that is zero up to order ``K`` leaves ``z(t)`` of
  order ``t^{K+1}`` whatever the slope, so truncating at ``K`` keeps every coefficient up to ``K``
  exact;
* each loss group (hinge, absolute value, multiclass hinge) takes the lexicographically largest of
  its affine pieces, for the same reason;

so ``L(theta(t)) = c_0 + c_1 t + ... + c_K t^K + O(t^{K+1})`` with coefficients computed by one
polynomial forward pass. The curve is a local descent iff the first nonzero ``c_k`` (``k >= 1``) is
negative. This covers the second-order curves of the critical-cone test (``c_1 = 0, c_2 < 0``) and
the higher-order saddles of degenerate points (GT-15: ``c_1 = c_2 = 0, c_3 < 0``).

**Exact mode** (:func:`loss_taylor` with ``exact=True``; the default for small problems with a rational
loss): every stored float64 number is a dyadic rational ``m 2^-e``, the curve's ``t^2/2`` and the
activation slopes are dyadic, and only ``+``, ``-``, ``*`` occur, so the pass runs on Python integers
with a power-of-two scale (:class:`Dyadic`) and the coefficients are exact (``n L`` is computed to
keep the mean's ``1/n`` out of the integers). **Float mode**: the same pass in float64 with a
rigorous-style bound on every coefficient's rounding error (``2 gamma_N`` times the same pass on
absolute values, :mod:`certify.rounding`); a coefficient within its bound counts as zero ("up to
rounding"). Logistic and cross-entropy losses have no exact polynomial form: float mode, ``K <= 2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .data import Problem

#: n * p * (K + 1) above which the exact pass is not attempted (about a second of integer arithmetic)
EXACT_WORK = 400_000


# ---------------------------------------------------------------------------- dyadic arrays
class Dyadic:
    """An array of dyadic rationals ``m * 2**-e`` (``m`` Python integers in an object array).

    Supports the few operations a forward pass needs: ``+``, ``-``, ``*`` (elementwise, with numpy
    broadcasting), ``@``, ``.T``, indexing, ``sum`` and ``sign``; all exact.
    """

    __slots__ = ("m", "e")

    def __init__(self, m, e: int):
        if not isinstance(m, np.ndarray):      # numpy returns a bare int from 0-d object arithmetic
            arr = np.empty((), dtype=object)
            arr[()] = m
            m = arr
        self.m = m
        self.e = int(e)

    @classmethod
    def of(cls, x) -> "Dyadic":
        """The exact value of a float64 array."""
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError("only finite numbers have an exact dyadic value")
        mant, ex = np.frexp(x)
        im = (mant * 2.0 ** 53).astype(np.int64)           # exact: 53-bit mantissas
        sh = 53 - ex.astype(np.int64)                      # x = im * 2**-sh
        nz = im != 0
        e = int(sh[nz].max()) if np.any(nz) else 0
        shift = np.where(nz, e - sh, 0)
        m = np.empty(x.shape, dtype=object)
        flat_m, flat_i, flat_s = m.reshape(-1), im.reshape(-1), shift.reshape(-1)
        for k in range(flat_m.size):
            flat_m[k] = int(flat_i[k]) << int(flat_s[k])
        return cls(m, e)

    @classmethod
    def zeros(cls, shape) -> "Dyadic":
        m = np.empty(shape, dtype=object)
        m.fill(0)
        return cls(m, 0)

    @property
    def shape(self):
        return self.m.shape

    def _align(self, other: "Dyadic"):
        e = max(self.e, other.e)
        a = self.m if self.e == e else self.m * (1 << (e - self.e))
        b = other.m if other.e == e else other.m * (1 << (e - other.e))
        return a, b, e

    def __add__(self, other: "Dyadic") -> "Dyadic":
        a, b, e = self._align(other)
        return Dyadic(a + b, e)

    def __sub__(self, other: "Dyadic") -> "Dyadic":
        a, b, e = self._align(other)
        return Dyadic(a - b, e)

    def __neg__(self) -> "Dyadic":
        return Dyadic(-self.m, self.e)

    def __mul__(self, other: "Dyadic") -> "Dyadic":
        return Dyadic(self.m * other.m, self.e + other.e)

    def __matmul__(self, other: "Dyadic") -> "Dyadic":
        return Dyadic(self.m @ other.m, self.e + other.e)

    def __getitem__(self, idx) -> "Dyadic":
        return Dyadic(self.m[idx], self.e)

    @property
    def T(self) -> "Dyadic":
        return Dyadic(self.m.T, self.e)

    def sum(self, axis=None) -> "Dyadic":
        return Dyadic(self.m.sum(axis=axis), self.e)

    def sign(self) -> np.ndarray:
        return np.sign(self.m).astype(np.int64)

    def fraction(self) -> Fraction:
        """The value of a 0-d array."""
        return Fraction(int(self.m[()]), 1 << self.e) if self.e >= 0 else Fraction(int(self.m[()]) << (-self.e))

    def reshape(self, *shape) -> "Dyadic":
        return Dyadic(self.m.reshape(*shape), self.e)


# ---------------------------------------------------------------------------- the result
@dataclass(frozen=True)
class Taylor:
    """``L(theta(t)) = sum_k c_k t^k + O(t^{K+1})`` for ``t -> 0+`` along one curve.

    ``coefficients[k]`` is ``c_k`` (float; for the mean loss), ``errors[k]`` a bound on its rounding
    error (all 0 in exact mode), ``exact`` whether they were computed in exact arithmetic (then
    ``exact_coefficients`` holds the Fractions).
    """

    coefficients: tuple
    errors: tuple
    exact: bool
    exact_coefficients: tuple | None = None

    @property
    def order(self) -> int:
        return len(self.coefficients) - 1

    def leading(self) -> tuple[int, float] | None:
        """``(k, c_k)`` of the first coefficient ``k >= 1`` that is nonzero beyond its error bound."""
        for k in range(1, len(self.coefficients)):
            if self.exact:
                if self.exact_coefficients[k] != 0:
                    return k, self.coefficients[k]
            elif abs(self.coefficients[k]) > self.errors[k]:
                return k, self.coefficients[k]
        return None

    @property
    def descends(self) -> bool:
        """The loss drops for every small ``t > 0``: the leading coefficient is negative."""
        lead = self.leading()
        return lead is not None and lead[1] < 0

    def describe(self) -> str:
        lead = self.leading()
        how = "exact" if self.exact else "up to rounding"
        if lead is None:
            return f"all Taylor coefficients 1..{self.order} vanish ({how})"
        k, c = lead
        zeros = {1: "", 2: "c_1 = 0, ", 3: "c_1 = c_2 = 0, "}.get(k, f"c_1 = ... = c_{k - 1} = 0, ")
        return f"L(theta(t)) = L + ({c:.6g}) t^{k} + O(t^{k + 1}) ({zeros}{how})"

    def to_dict(self) -> dict:
        lead = self.leading()
        return {"coefficients": list(self.coefficients), "errors": list(self.errors), "exact": self.exact,
                "leading_order": None if lead is None else lead[0],
                "exact_coefficients": None if self.exact_coefficients is None else
                [str(c) for c in self.exact_coefficients]}


def exact_fits(problem: Problem, order: int) -> bool:
    """Whether the exact pass is affordable (:data:`EXACT_WORK`) and the loss is rational."""
    return problem.loss.rational and problem.n_samples * problem.n_params * (order + 1) <= EXACT_WORK


def loss_taylor(problem: Problem, terms, order: int = 4, *, exact: bool | None = None, fwd=None,
                kinks=None) -> Taylor | None:
    """Taylor coefficients ``c_0..c_order`` of ``L`` along ``theta + sum_k t^k terms[k-1]``.

    Parameters
    ----------
    terms : sequence of (p,) arrays
        ``terms[k-1]`` multiplies ``t^k``; the curve ``theta + t d + t^2/2 e`` is ``[d, e/2]``.
    order : int
        ``K``: coefficients up to ``t^K``.
    exact : bool or None
        Exact dyadic arithmetic (None: when :func:`exact_fits`).
    fwd, kinks
        The point's forward pass and kink structure (float mode only): a unit or loss kink of
        ``kinks`` has value 0 at ``t = 0`` (zero up to rounding, as everywhere in certify).

    Returns None when the loss has no polynomial expansion to this order (logistic or
    cross-entropy with ``order > 2``).
    """
    if exact is None:
        exact = exact_fits(problem, order)
    if exact and not problem.loss.rational:
        exact = False
    if not problem.loss.rational and order > 2:
        return None
    terms = [np.asarray(t, dtype=np.float64) for t in terms][:order]
    if exact:
        return _exact(problem, terms, order)
    c, err = _float(problem, [t[None, :] for t in terms], order, fwd=fwd, kinks=kinks)
    return Taylor(tuple(float(v) for v in c[0]), tuple(float(v) for v in err[0]), False)


def batch_line_taylor(problem: Problem, directions: np.ndarray, order: int = 3, *, fwd=None, kinks=None,
                      second: np.ndarray | None = None):
    """Float Taylor coefficients of the loss along many curves at once.

    ``directions`` (B, p): the lines ``theta + t d_b`` (with ``second`` (B, p): ``+ t^2 second_b``).
    Returns ``(c, err)``, both (B, order + 1). A screen: a hit is then confirmed by
    :func:`loss_taylor` (exactly on small problems) and a verified decrease.
    """
    terms = [np.asarray(directions, dtype=np.float64)]
    if second is not None:
        terms.append(np.asarray(second, dtype=np.float64))
    if not problem.loss.rational and order > 2:
        order = 2
    return _float(problem, terms, order, fwd=fwd, kinks=kinks)


# ---------------------------------------------------------------------------- exact pass
def _exact(problem: Problem, terms: list, K: int) -> Taylor:
    net = problem.network
    n = problem.n_samples
    s_pos, s_neg = (Dyadic.of(np.array(s)) for s in net.activation.slopes)
    split = [net.split(net.theta)] + [net.split(t) for t in terms]
    W = [[Dyadic.of(layers[l][0]) for layers in split] for l in range(net.n_layers)]
    b = [[Dyadic.of(layers[l][1]) for layers in split] for l in range(net.n_layers)]
    x = [Dyadic.of(problem.X)] + [None] * K
    L = net.n_layers
    F = None
    for l in range(L):
        z = [None] * (K + 1)
        for a in range(K + 1):
            if x[a] is None:
                continue
            for c, Wc in enumerate(W[l]):
                if a + c > K:
                    break
                term = x[a] @ Wc.T
                z[a + c] = term if z[a + c] is None else z[a + c] + term
        for c, bc in enumerate(b[l]):
            if c <= K:
                bb = Dyadic(np.broadcast_to(bc.m, (n,) + bc.shape).copy(), bc.e)
                z[c] = bb if z[c] is None else z[c] + bb
        if l == L - 1:
            F = z
            break
        sign = np.zeros(z[0].shape, dtype=np.int64)
        for zk in z:
            if zk is None:
                continue
            sg = zk.sign()
            sign = np.where(sign == 0, sg, sign)
        # slope per entry as a dyadic array
        slope_m = np.empty(sign.shape, dtype=object)
        e_s = max(s_pos.e, s_neg.e)
        pos_m = int(s_pos.m[()]) << (e_s - s_pos.e)
        neg_m = int(s_neg.m[()]) << (e_s - s_neg.e)
        slope_m[...] = 0
        slope_m[sign > 0] = pos_m
        slope_m[sign < 0] = neg_m
        slope = Dyadic(slope_m, e_s)
        x = [None if zk is None else slope * zk for zk in z]
    total = _exact_loss_poly(problem, F, K)
    if problem.weight_decay:
        lam = Dyadic.of(np.array(problem.weight_decay))
        half = Dyadic.of(np.array(0.5))
        th = [Dyadic.of(net.theta)] + [Dyadic.of(t) for t in terms]
        nn = Dyadic.of(np.array(float(n)))
        for k in range(K + 1):
            acc = None
            for a in range(min(k, len(th) - 1) + 1):
                c = k - a
                if c >= len(th):
                    continue
                s = (th[a] * th[c]).sum()
                acc = s if acc is None else acc + s
            if acc is not None:
                total[k] = total[k] + nn * half * lam * acc
    coeffs = tuple(c.fraction() / n for c in total)
    return Taylor(tuple(float(c) for c in coeffs), tuple(0.0 for _ in coeffs), True, coeffs)


def _exact_loss_poly(problem: Problem, F: list, K: int) -> list:
    """``n L`` along the curve, coefficient by coefficient (0-d Dyadic each)."""
    loss = problem.loss
    Y = problem.Y
    n = problem.n_samples
    out = []
    if loss.name == "square":
        R = list(F)
        R[0] = R[0] - Dyadic.of(Y)
        half = Dyadic.of(np.array(0.5))
        for k in range(K + 1):
            acc = Dyadic.zeros(())
            for a in range(k + 1):
                if R[a] is None or R[k - a] is None:
                    continue
                acc = acc + (R[a] * R[k - a]).sum()
            out.append(half * acc)
        return out
    # piecewise-linear losses: sum over groups of the lexicographic max of affine pieces
    C = F[0].shape[1]
    zeros = np.zeros((n, C))
    const, S = loss.pieces(zeros, Y)              # exact constants (y, 1, 0) and slopes (0, +-1)
    G, P = const.shape[1], const.shape[2]
    S_d = Dyadic.of(S)                              # (n, G, P, C)
    const_d = Dyadic.of(const)                      # (n, G, P)
    # piece polynomials: V[k] (n, G, P)
    V = []
    for k in range(K + 1):
        if F[k] is None:
            V.append(None)
            continue
        Fk = Dyadic(F[k].m[:, None, None, :], F[k].e)
        vk = (S_d * Fk).sum(axis=3)
        if k == 0:
            vk = vk + const_d
        V.append(vk)
    # lexicographic argmax over pieces for every (sample, group)
    cand = np.ones((n, G, P), dtype=bool)
    for vk in V:
        if vk is None:
            continue
        m = vk.m
        floor = -(int(np.abs(m).max(initial=0)) + 1)
        best = np.where(cand, m, floor).max(axis=2)
        cand &= (m == best[:, :, None]).astype(bool)
    pick = np.argmax(cand, axis=2)                   # first of the tied maximal pieces
    for vk in V:
        if vk is None:
            out.append(Dyadic.zeros(()))
            continue
        chosen = np.take_along_axis(vk.m, pick[:, :, None], axis=2)[:, :, 0]
        out.append(Dyadic(chosen, vk.e).sum())
    return out


# ---------------------------------------------------------------------------- float pass
def _float(problem: Problem, terms: list, K: int, *, fwd=None, kinks=None):
    """Batched float pass: ``terms`` are (B, p) arrays; returns (c, err), each (B, K + 1)."""
    from .rounding import factor
    net = problem.network
    n = problem.n_samples
    B = terms[0].shape[0] if terms else 1
    s_pos, s_neg = net.activation.slopes
    lip = max(abs(s_pos), abs(s_neg))
    gam = factor(problem) * (K + 2)
    split = [[(W[None], bb[None]) for W, bb in net.split(net.theta)]]
    for T in terms:
        layers = []
        for l in range(net.n_layers):
            W0, b0 = net.weights[l], net.biases[l]
            w_off, b_off = net.offsets[l]
            Wt = T[:, w_off:w_off + W0.size].reshape(B, *W0.shape)
            bt = T[:, b_off:b_off + b0.size]
            layers.append((Wt, bt))
        split.append(layers)
    X = problem.X
    x = [np.broadcast_to(X, (B,) + X.shape)] + [None] * K
    xa = [np.broadcast_to(np.abs(X), (B,) + X.shape)] + [None] * K
    L = net.n_layers
    F = Fa = None
    for l in range(L):
        z = [None] * (K + 1)
        za = [None] * (K + 1)
        for a in range(K + 1):
            if x[a] is None:
                continue
            for c in range(len(split)):
                if a + c > K:
                    break
                Wc = split[c][l][0]
                term = np.matmul(x[a], np.swapaxes(Wc, 1, 2))
                terma = np.matmul(xa[a], np.swapaxes(np.abs(Wc), 1, 2))
                z[a + c] = term if z[a + c] is None else z[a + c] + term
                za[a + c] = terma if za[a + c] is None else za[a + c] + terma
        for c in range(len(split)):
            if c <= K:
                bc = split[c][l][1][:, None, :]
                z[c] = np.broadcast_to(bc, (B, n, bc.shape[2])).copy() if z[c] is None else z[c] + bc
                za[c] = (np.broadcast_to(np.abs(bc), (B, n, bc.shape[2])).copy() if za[c] is None
                         else za[c] + np.abs(bc))
        if l == L - 1:
            F, Fa = z, za
            break
        sign = np.zeros(z[0].shape, dtype=np.int64)
        for k, (zk, zak) in enumerate(zip(z, za)):
            if zk is None:
                continue
            if k == 0:
                s0 = np.sign(zk).astype(np.int64)
                if kinks is not None and kinks.masks:
                    s0 = np.where(kinks.masks[l][None], 0, s0)
                else:
                    s0 = np.where(np.abs(zk) <= gam * zak, 0, s0)
                sg = s0
            else:
                sg = np.where(np.abs(zk) <= gam * zak, 0, np.sign(zk)).astype(np.int64)
            sign = np.where(sign == 0, sg, sign)
        slope = np.where(sign > 0, s_pos, np.where(sign < 0, s_neg, 0.0))
        x = [None if zk is None else slope * zk for zk in z]
        xa = [None if zk is None else lip * zk for zk in za]
    c, ca = _float_loss_poly(problem, F, Fa, K, gam, kinks)
    if problem.weight_decay:
        lam = problem.weight_decay
        th = [net.theta[None]] + list(terms)
        for k in range(K + 1):
            for a in range(k + 1):
                cc = k - a
                if a < len(th) and cc < len(th):
                    v = np.sum(th[a] * th[cc], axis=1)
                    c[:, k] += 0.5 * lam * v
                    ca[:, k] += 0.5 * lam * np.sum(np.abs(th[a] * th[cc]), axis=1)
    return c, gam * ca + 1e-300


def _float_loss_poly(problem: Problem, F: list, Fa: list, K: int, gam: float, kinks):
    loss = problem.loss
    Y = problem.Y
    n = problem.n_samples
    B = F[0].shape[0]
    c = np.zeros((B, K + 1))
    ca = np.zeros((B, K + 1))
    if loss.smooth:
        F0 = F[0][0]
        if loss.name == "square":
            R = list(F)
            R[0] = R[0] - Y[None]
            Ra = list(Fa)
            Ra[0] = Ra[0] + np.abs(Y)[None]
            # the error of R_a R_b is at most |R_a| err_b + err_a |R_b| (+ second-order terms), with
            # err = gam * Ra: the factors' own sizes, not their absolute twins, multiply the other's bound
            for k in range(K + 1):
                for a in range(k + 1):
                    if R[a] is None or R[k - a] is None:
                        continue
                    c[:, k] += 0.5 * np.sum(R[a] * R[k - a], axis=(1, 2))
                    ca[:, k] += 0.5 * np.sum(np.abs(R[a]) * Ra[k - a] + Ra[a] * np.abs(R[k - a])
                                             + gam * Ra[a] * Ra[k - a], axis=(1, 2))
            return c / n, ca / n
        # logistic / cross-entropy: K <= 2 from the gradient and the Hessian in f
        g = loss.gradient(F0, Y)
        c[:, 0] = np.sum(loss.values(F0, Y))
        ca[:, 0] = np.sum(np.abs(loss.values(F0, Y)))
        if K >= 1 and F[1] is not None:
            c[:, 1] = np.sum(g[None] * F[1], axis=(1, 2))
            ca[:, 1] = np.sum(np.abs(g)[None] * Fa[1], axis=(1, 2)) + 1.0
        if K >= 2:
            for bidx in range(B):
                F1 = F[1][bidx] if F[1] is not None else np.zeros_like(F0)
                F2 = F[2][bidx] if F[2] is not None else np.zeros_like(F0)
                c[bidx, 2] = np.sum(g * F2) + 0.5 * np.sum(loss.hessian_apply(F0, Y, F1) * F1)
                ca[bidx, 2] = (np.sum(np.abs(g) * (Fa[2][bidx] if Fa[2] is not None else 0.0))
                               + 0.5 * np.sum(np.abs(F1) * np.abs(F1)) + 1.0)
        return c / n, ca / n
    const, S = loss.pieces(np.zeros_like(F[0][0]), Y)      # exact constants, slopes 0 / +-1
    Sa = np.abs(S)
    vals0, _ = loss.pieces(F[0][0], Y)
    V, Va = [], []
    for k in range(K + 1):
        if F[k] is None:
            V.append(None)
            Va.append(None)
            continue
        vk = np.einsum("igpc,bic->bigp", S, F[k])
        vak = np.einsum("igpc,bic->bigp", Sa, Fa[k])
        if k == 0:
            vk = vk + const[None]
            vak = vak + np.abs(const)[None]
        V.append(vk)
        Va.append(vak)
    # candidates at t = 0: the maximal pieces (ties as the kink structure says, else within rounding)
    best0 = V[0].max(axis=3, keepdims=True)
    cand = V[0] >= best0 - gam * Va[0]
    if kinks is not None:
        cand = np.broadcast_to(vals0[None] >= vals0.max(axis=2, keepdims=True)[None], cand.shape).copy()
        for q in range(kinks.n_loss):
            cand[:, kinks.loss_sample[q], kinks.loss_group[q], kinks.loss_active[q]] = True
    for k in range(1, K + 1):
        if V[k] is None:
            continue
        vk = np.where(cand, V[k], -np.inf)
        top = vk.max(axis=3, keepdims=True)
        tol = gam * np.where(cand, Va[k], 0.0).max(axis=3, keepdims=True)
        cand = cand & (vk >= top - tol)
    pick = np.argmax(cand, axis=3)
    for k in range(K + 1):
        if V[k] is None:
            continue
        ck = np.take_along_axis(V[k], pick[..., None], axis=3)[..., 0]
        cak = np.take_along_axis(Va[k], pick[..., None], axis=3)[..., 0]
        c[:, k] = ck.sum(axis=(1, 2))
        ca[:, k] = cak.sum(axis=(1, 2))
    return c / n, ca / n


def sparse_line_taylor(problem: Problem, fwd, kinks, d: np.ndarray, order: int = 3):
    """Float Taylor coefficients along the line ``theta + t d`` for a *sparse* ``d``, touching only the
    units the perturbation reaches.

    Only units whose incoming weights or bias move, or that read a unit already moved through a
    nonzero weight, have nonzero coefficients beyond ``t^0``; everything else keeps its value from
    ``fwd``. At a degenerate point (zero weights, a network's origin) a chain of weights along a path
    reaches a handful of units, so the pass costs ``O(n x chain)`` instead of ``O(n p)``. Returns
    ``(c, err)`` as :func:`batch_line_taylor` does for one line.
    """
    from .rounding import factor
    net = problem.network
    n = problem.n_samples
    K = order if problem.loss.rational else min(order, 2)
    s_pos, s_neg = net.activation.slopes
    lip = max(abs(s_pos), abs(s_neg))
    gam = factor(problem) * (K + 2)
    parts = net.split(np.asarray(d, dtype=np.float64))
    S_prev = np.zeros(0, dtype=np.int64)
    x = {}           # k >= 1: (n, |S_prev|) coefficients of the layer input on S_prev
    xa = {}
    L = net.n_layers
    for l in range(L):
        W = net.weights[l]
        dW, db = parts[l]
        touched = np.nonzero(np.any(dW != 0, axis=1) | (db != 0))[0]
        fed = np.nonzero(np.any(W[:, S_prev] != 0, axis=1))[0] if S_prev.size else np.zeros(0, dtype=np.int64)
        S = np.union1d(touched, fed).astype(np.int64)
        if l == L - 1:
            S = np.arange(W.shape[0])
        z, za = {}, {}
        x0 = fwd.post[l]
        x0a = np.abs(problem.X) if l == 0 else lip * fwd.scale[l - 1]
        WS = W[np.ix_(S, S_prev)] if S_prev.size else None
        dWS = dW[S]
        for k in range(1, K + 1):
            acc = np.zeros((n, S.size))
            acca = np.zeros((n, S.size))
            if WS is not None and k in x:
                acc += x[k] @ WS.T
                acca += xa[k] @ np.abs(WS).T
            if k == 1:
                acc += x0 @ dWS.T + db[S]
                acca += x0a @ np.abs(dWS).T + np.abs(db[S])
            elif (k - 1) in x:
                acc += x[k - 1] @ dWS[:, S_prev].T
                acca += xa[k - 1] @ np.abs(dWS[:, S_prev]).T
            z[k], za[k] = acc, acca
        if l == L - 1:
            F = [fwd.output[None]] + [z[k][None] for k in range(1, K + 1)]
            Fa = [fwd.scale[-1][None]] + [za[k][None] for k in range(1, K + 1)]
            break
        z0 = fwd.pre[l][:, S]
        sign = np.sign(z0).astype(np.int64)
        if kinks is not None and kinks.masks:
            sign = np.where(kinks.masks[l][:, S], 0, sign)
        for k in range(1, K + 1):
            sg = np.where(np.abs(z[k]) <= gam * za[k], 0, np.sign(z[k])).astype(np.int64)
            sign = np.where(sign == 0, sg, sign)
        slope = np.where(sign > 0, s_pos, np.where(sign < 0, s_neg, 0.0))
        x = {k: slope * z[k] for k in z}
        xa = {k: lip * za[k] for k in za}
        S_prev = S
    c, ca = _float_loss_poly(problem, F, Fa, K, gam, kinks)
    if problem.weight_decay:
        lam = problem.weight_decay
        th = net.theta
        c[0, 0] += 0.5 * lam * float(th @ th)
        ca[0, 0] += 0.5 * lam * float(th @ th)
        if K >= 1:
            c[0, 1] += lam * float(th @ d)
            ca[0, 1] += lam * float(np.abs(th) @ np.abs(d))
        if K >= 2:
            c[0, 2] += 0.5 * lam * float(d @ d)
            ca[0, 2] += 0.5 * lam * float(d @ d)
    return c[0], gam * ca[0] + 1e-300
