"""Rigorous a-priori bounds on float64 rounding errors, and on derivatives over a ball.

numpy has no directed rounding, so every bound here is *a priori* (Higham, *Accuracy and
Stability of Numerical Algorithms*, 2nd ed., SIAM 2002, §3): with the unit roundoff
``u = 2^-53`` and ``gamma_m = m u / (1 - m u)``,

* a straight-line program of ``+, -, *`` (and multiplications by exact constants such as ``1/n``
  with one rounding) whose every monomial passes through at most ``c`` roundings satisfies
  ``|fl(P) - P| <= gamma_c P_abs`` where ``P_abs`` is *the same program* run on the absolute values
  of its inputs with every subtraction turned into an addition (Higham Lemma 3.1 and §3.1, any
  summation order: blocked, pairwise, FMA, multithreaded BLAS all keep at most ``k`` roundings per
  term of a length-``k`` inner product). The programs below therefore come in twins: one function,
  an ``absolute`` switch;
* a program that is *linear in its sources* ``s`` (loss adjoints, loss Hessians, adjoint
  injections) and is given computed sources ``s~`` with ``|s~ - s| <= e`` errs by at most
  ``P_abs(gamma_c |s~| + e)`` (``P(s~) - P(s) = P(s~ - s)``);
* Cholesky factorisation that runs to completion on a symmetric ``B`` gives ``R^T R = B + dB``,
  ``|dB| <= gamma_{n+1} |R^T| |R|`` (Higham Theorem 10.3), hence
  ``lambda_min(B) >= -gamma_{n+1} ||R||_F^2``: a rigorous lower bound on the least eigenvalue from
  one shifted factorisation (the "isspd" idea of Rump, BIT 46, 2006).

Every bound is doubled for safety. Assumptions (stated once, here): IEEE double precision with
round-to-nearest; no underflow or overflow in the computations bounded (the problems certify
handles are scaled far from both); BLAS and LAPACK routines satisfy the standard componentwise
error bounds of the unblocked algorithms with the same constants (true for reference and
optimised BLAS, whose blocking only changes the order of the sums); scipy's ``expit``, numpy's
``exp`` and ``log`` are accurate to a few ulps (the smooth losses' adjoints carry an explicit
allowance of ``8 u`` relative plus ``2C u`` absolute for that, in the working precision).

Extended precision: the residual of a proof (a gradient that is ~1e-16 of its terms) is computed in
``np.longdouble`` (64-bit significand on x86-64, ``u = 2^-64``) by the same programs; the bounds
then use that ``u`` (on platforms where ``longdouble`` is ``double`` nothing changes but the speed).

Derivatives over a ball: for fixed activation slopes the output of a network is *multi-affine*
in the augmented layer matrices ``W^_l = [W_l b_l]`` (:func:`chain_derivative_bounds`), so its
``k``-th derivatives are bounded by products of layer norms inflated by the radius; by Banach's
theorem (a symmetric ``k``-linear form on a Hilbert space has its norm on the diagonal) the
bound on ``||D^k f [d, ..., d]||`` over unit ``d`` is the norm of the whole form.
"""

from __future__ import annotations

import math
import time

import numpy as np

#: unit roundoff of IEEE double precision (round to nearest)
U = float(np.finfo(np.float64).eps) / 2
#: every a-priori bound is multiplied by this
SAFETY = 2.0


def gamma(m: float, u: float = U) -> float:
    """``gamma_m = m u / (1 - m u)`` (Higham §3.1); ``m u`` must stay well below 1."""
    mu = float(m) * u
    if not mu < 0.01:
        raise ValueError(f"gamma_{m}: m u = {mu:.3g} is too large for an a-priori bound")
    return mu / (1.0 - mu)


def up(x: float, ops: int = 8) -> float:
    """``x`` rounded outwards: an upper bound of a nonnegative scalar computed with ``ops`` roundings."""
    return float(x) * (1.0 + 2 * gamma(ops)) + 1e-300


def program_depth(widths, n_samples: int, n_outputs: int) -> int:
    """Upper bound on the roundings of any monomial in the forward, gradient, row and HVP programs.

    A length-``k`` inner product costs at most ``k`` roundings per term and the product of two
    computed quantities adds their depths. Forward: ``d(x^l) <= Fx(l) = sum_{t<=l} (n_{t-1} + 2)``
    (sum, bias, slope); tangent ``d(dx^l) <= sum_{t<=l} (n_{t-1} + 3)``; backward adjoints
    ``d(delta^l) <= sum_{t>l} (n_t + 2)``, ``d(ddelta^l) <= d(dF) + C + sum_{t>l} (n_t + 2)``; an entry
    of the gradient or of ``H v`` is a sum over ``n`` samples of a backward times a forward quantity:
    at most ``sum_t (2 n_{t-1} + n_t + 7) + n + C + 1`` roundings. The bound returned,
    ``3 sum_t (n_{t-1} + n_t + 4) + 2n + 2C + 10``, covers that with room for the weight-decay term.
    """
    w = list(widths)
    total = sum(w[l - 1] + w[l] + 4 for l in range(1, len(w)))
    return int(3 * total + 2 * n_samples + 2 * n_outputs + 10)


# ---------------------------------------------------------------------------- the programs
class Programs:
    """Forward, gradient, row and Hessian-vector programs of one smooth piece, with their twins.

    The piece is fixed by the slopes ``D[l-1]`` (n, n_l) of every hidden unit at every sample.
    Every method takes ``absolute``: the twin that runs the *same* operations on absolute values
    (the ``P_abs`` of the module docstring). Inputs (weights, biases, data, slopes, directions)
    are exact floats; *sources* (loss adjoints ``delta`` (n, C), loss Hessians ``Q`` (n, C, C), adjoint
    injections ``inj[l-1]`` (n, n_l)) are passed in and enter every monomial of the gradient and
    HVP programs exactly once.
    """

    def __init__(self, weights, biases, X, D, dtype=np.float64):
        self.dtype = np.dtype(dtype)
        self.W = [np.asarray(W, dtype=np.float64).astype(dtype) for W in weights]
        self.b = [np.asarray(b, dtype=np.float64).astype(dtype) for b in biases]
        self.X = np.asarray(X, dtype=np.float64).astype(dtype)
        self.D = [np.asarray(d, dtype=np.float64).astype(dtype) for d in D]
        #: unit roundoff of the working precision (``np.longdouble`` is exact on float64 inputs)
        self.u = float(np.finfo(dtype).eps) / 2
        self.L = len(self.W)
        self.widths = (self.X.shape[1],) + tuple(W.shape[0] for W in self.W)
        self.n = self.X.shape[0]
        self.offsets = []
        pos = 0
        for W in self.W:
            self.offsets.append((pos, pos + W.size))
            pos += W.size + W.shape[0]
        self.p = pos
        self.depth = program_depth(self.widths, self.n, self.widths[-1])
        self.gamma = gamma(self.depth, self.u)
        self._fwd = {}

    def _inputs(self, absolute: bool):
        if absolute:
            return [np.abs(W) for W in self.W], [np.abs(b) for b in self.b], np.abs(self.X), \
                [np.abs(d) for d in self.D]
        return self.W, self.b, self.X, self.D

    def forward(self, absolute: bool = False):
        """``(z, x)``: pre-activations ``z[l-1]`` (n, n_l) and layer inputs ``x[l]`` (``x[0] = X``)."""
        if absolute in self._fwd:
            return self._fwd[absolute]
        W, b, X, D = self._inputs(absolute)
        x, zs, xs = X, [], [X]
        for l in range(self.L):
            z = x @ W[l].T + b[l]
            zs.append(z)
            if l < self.L - 1:
                x = D[l] * z
                xs.append(x)
        self._fwd[absolute] = (zs, xs)
        return zs, xs

    def gradient(self, delta, inj=None, absolute: bool = False):
        """Gradient of ``sum_i delta_i . f_i + sum inj . z`` (sources ``delta``, ``inj``), and the
        adjoints ``a[l-1] = d/dx^l`` (n, n_l) of every hidden layer's outputs before any injection."""
        W, _, _, D = self._inputs(absolute)
        _, xs = self.forward(absolute)
        d = np.abs(delta) if absolute else delta
        parts, adj = [None] * self.L, [None] * (self.L - 1)
        for l in range(self.L, 0, -1):
            parts[l - 1] = np.concatenate([(d.T @ xs[l - 1]).ravel(), d.sum(axis=0)])
            if l > 1:
                a = d @ W[l - 1]
                adj[l - 2] = a
                d = D[l - 2] * a
                if inj is not None and inj[l - 2] is not None:
                    d = d + (np.abs(inj[l - 2]) if absolute else inj[l - 2])
        return np.concatenate(parts), adj

    def rows_gamma(self, layer: int) -> float:
        """``gamma_c`` for :meth:`rows` of ``layer``: the forward pass to ``layer - 1`` and the backward
        pass from ``layer`` (an entry is an adjoint times a layer input): ``c <= 1 + sum_{t <= layer}
        (n_{t-1} + n_t + 4)``. First-layer rows are copies of the inputs."""
        c = 1 + sum(self.widths[t - 1] + self.widths[t] + 4 for t in range(1, layer))
        c += 2 * self.widths[layer] + 4 if layer > 1 else 0
        return gamma(c, self.u)

    def rows(self, layer: int, samples, seeds, absolute: bool = False):
        """Gradients (T, p) of ``seeds[t] . z^layer(x_samples[t])``: the switching-function rows.

        ``layer`` is 1-based (``layer = L`` gives ``seed . f``); ``seeds`` is (T, n_layer).
        """
        W, _, _, D = self._inputs(absolute)
        _, xs = self.forward(absolute)
        samples = np.asarray(samples, dtype=np.int64)
        d = np.abs(seeds) if absolute else np.asarray(seeds, dtype=self.dtype)
        T = samples.size
        out = np.zeros((T, self.p), dtype=self.dtype)
        for l in range(layer, 0, -1):
            w0, b0 = self.offsets[l - 1]
            x_prev = xs[l - 1][samples]
            out[:, w0:b0] = (d[:, :, None] * x_prev[:, None, :]).reshape(T, -1)
            out[:, b0:b0 + d.shape[1]] = d
            if l > 1:
                d = D[l - 2][samples] * (d @ W[l - 1])
        return out

    def hvp(self, delta, Q, inj, V, absolute: bool = False):
        """``H V`` (p, k) of ``sum_i l_i(f_i) + sum inj . z`` with ``dl/df = delta``, ``d2l/df2 = Q``.

        Forward-over-reverse (Pearlmutter), as :func:`certify.tangent.hessian_vector_product`,
        for a block of directions at once. ``Q`` may be None (piecewise-linear losses).
        """
        W, _, _, D = self._inputs(absolute)
        _, xs = self.forward(absolute)
        V = np.abs(V) if absolute else np.asarray(V, dtype=self.dtype)
        k = V.shape[1]
        layers = []
        for l in range(self.L):
            w0, b0 = self.offsets[l]
            n_out, n_in = self.W[l].shape
            layers.append((V[w0:b0].T.reshape(k, n_out, n_in), V[b0:b0 + n_out].T))
        dxs = [None]
        dz = None
        n = self.n
        for l in range(self.L):
            dW, db = layers[l]
            n_out, n_in = self.W[l].shape
            dz = np.matmul(xs[l], dW.transpose(0, 2, 1)) + db[:, None, :]          # (k, n, n_out)
            if l > 0:
                dz = dz + (dxs[l].reshape(k * n, n_in) @ W[l].T).reshape(k, n, n_out)
            if l < self.L - 1:
                dxs.append(D[l] * dz)
        d = np.abs(delta) if absolute else delta
        if Q is None:
            dd = np.zeros((k,) + d.shape, dtype=self.dtype)
        elif Q.shape[1] == 1:
            dd = (np.abs(Q) if absolute else Q)[:, 0, 0][None, :, None] * dz
        else:
            dd = np.einsum("ncd,knd->knc", np.abs(Q) if absolute else Q, dz)
        parts = [None] * self.L
        for l in range(self.L, 0, -1):
            n_out, n_in = self.W[l - 1].shape
            gW = np.matmul(dd.transpose(0, 2, 1), xs[l - 1])                          # (k, n_out, n_in)
            if l > 1:
                gW = gW + np.matmul(d.T, dxs[l - 1])
            parts[l - 1] = np.concatenate([gW.reshape(k, -1), dd.sum(axis=1)], axis=1)
            if l > 1:
                dW = layers[l - 1][0]
                a = d @ W[l - 1]
                da = (dd.reshape(k * n, n_out) @ W[l - 1]).reshape(k, n, n_in) + np.matmul(d, dW)
                d = D[l - 2] * a
                if inj is not None and inj[l - 2] is not None:
                    d = d + (np.abs(inj[l - 2]) if absolute else inj[l - 2])
                dd = D[l - 2] * da
        return np.concatenate(parts, axis=1).T

    # ------------------------------------------------------------------ bounds from the twins
    def abs_to_bound(self, value_abs):
        """``P_abs`` computed in float64 -> an upper bound of the exact ``P_abs`` (times SAFETY)."""
        return SAFETY * np.asarray(value_abs) / (1.0 - self.gamma)


def hvp_blocks(progs: Programs, delta, Q, inj, V, *, absolute: bool = False, max_entries: float = 4e6,
               deadline: float | None = None):
    """:meth:`Programs.hvp` over the columns of ``V`` in blocks small enough for memory.

    Raises ``TimeoutError`` when ``time.perf_counter()`` passes ``deadline`` between blocks.
    """
    per_col = progs.n * max(progs.widths) * 4 + progs.p
    step = max(1, int(max_entries // max(per_col, 1)))
    cols = []
    for s in range(0, V.shape[1], step):
        if deadline is not None and time.perf_counter() > deadline:
            raise TimeoutError("deadline passed")
        cols.append(progs.hvp(delta, Q, inj, V[:, s:s + step], absolute=absolute))
    return np.hstack(cols) if cols else np.zeros((progs.p, 0))


# ---------------------------------------------------------------------------- linear algebra
def fro(A) -> float:
    """Upper bound of the Frobenius norm of a float matrix (computation rounding included)."""
    A = np.asarray(A, dtype=np.float64)
    if A.size == 0:
        return 0.0
    s = float(np.sqrt(np.sum(A * A)))
    return up(s, A.size + 4)


def norm2_upper(A) -> float:
    """Rigorous upper bound of ``||A||_2`` for a float matrix (taken exactly).

    ``sigma_max`` is estimated by an SVD and certified by :func:`lambda_min_lower` on
    ``s^2 I - A^T A``; when that fails the bound is ``min(||A||_F, sqrt(||A||_1 ||A||_inf))``.
    """
    A = np.atleast_2d(np.asarray(A, dtype=np.float64))
    if A.size == 0:
        return 0.0
    absA = np.abs(A)
    crude = min(fro(A), up(math.sqrt(float(absA.sum(axis=0).max()) * float(absA.sum(axis=1).max())), A.size + 8))
    if min(A.shape) > 400 or crude == 0.0:
        return crude
    M = A if A.shape[0] >= A.shape[1] else A.T
    s = float(np.linalg.norm(M, 2)) * (1 + 1e-6) + 1e-300
    G = M.T @ M
    err_G = SAFETY * gamma(M.shape[0] + 2) * fro(M) ** 2
    lo, ok = lambda_min_lower(s * s * np.eye(G.shape[0]) - G, err_G + 4 * U * s * s)
    if ok and lo > 0:
        return min(crude, up(s))
    return crude


def lambda_min_lower(A, err: float = 0.0) -> tuple[float, bool]:
    """Rigorous lower bound on ``lambda_min`` of a symmetric matrix known within ``err`` (2-norm).

    ``A`` is a float matrix (its entries taken exactly) and the exact *symmetric* matrix ``A*``
    satisfies ``||A* - A||_2 <= err``; then ``||A* - (A + A^T)/2||_2 <= err`` too. A shift ``s``
    below the computed least eigenvalue is certified by a Cholesky factorisation of
    ``fl(A_sym - s I)`` that runs to completion: ``lambda_min(A*) >= s - ||E_shift|| -
    gamma_{n+1} ||R||_F^2 - err`` (Higham Thm 10.3; the factorisation term doubled). Returns
    ``(bound, certified)``; ``certified`` is False when no positive shift factorised (the bound is
    then the eigenvalue estimate minus the errors, not a proof of anything).
    """
    A = np.asarray(A, dtype=np.float64)
    n = A.shape[0]
    if n == 0:
        return math.inf, True
    extra = 0.0
    if not np.array_equal(A, A.T):
        A = 0.5 * (A + A.T)            # one rounding per entry
        extra = U * fro(A)
    lam = float(np.linalg.eigvalsh(A)[0])
    if not lam > 0:
        return lam - err - extra, False
    g = gamma(n + 1)
    best = -math.inf
    for frac in (1 - 2.0 ** -10, 0.75, 0.5, 0.25, 0.0):
        s = lam * frac
        B = A - s * np.eye(n)
        try:
            R = np.linalg.cholesky(B)
        except np.linalg.LinAlgError:
            continue
        if not np.all(np.isfinite(R)):
            continue
        shift_err = U * float(np.abs(np.diag(B)).max(initial=0.0))
        bound = s - shift_err - SAFETY * g * fro(R) ** 2 - err - extra
        best = max(best, bound)
        if bound > 0:
            return bound, True
    if best == -math.inf:
        return lam - err - extra, False
    return best, best > 0


def inertia(K, err: float = 0.0, eig=None) -> dict:
    """Rigorous inertia of a symmetric matrix ``K*`` with ``||K* - K||_2 <= err`` (``K`` a float matrix).

    With ``K_s = (K + K^T)/2 = V diag(w) V^T`` computed by ``eigh``: ``V`` is nonsingular when
    ``||V^T V - I||_2 < 1`` (bounded with rounding), so by Sylvester's law of inertia ``K*`` and
    ``M = V^T K* V`` have the same inertia; by Weyl's inequality every eigenvalue of ``M`` lies within
    ``e = ||fl(V^T K_s V) - diag(w)||_F + (product rounding) + ||V||^2 (err + ||K - K_s||)`` of some
    ``w_i``. If every ``|w_i| > e``, the inertia is ``(#{w_i > 0}, #{w_i < 0}, 0)``.

    ``eig``: ``(w, V)`` from ``numpy.linalg.eigh`` of ``(K + K^T)/2`` when the caller has it already.
    Returns ``{"certified", "n_pos", "n_neg", "margin" (min |w_i| - e), "error" (e), "w", "inv_norm"}``:
    ``M`` has every eigenvalue at least ``margin`` in modulus and, by Ostrowski's theorem
    (``lambda_k(V^T K* V) = t_k lambda_k(K*)`` with ``t_k <= sigma_max(V)^2 <= 1 + ||V^T V - I||``),
    ``||K*^-1||_2 <= inv_norm = (1 + ||V^T V - I||) / margin`` (``inf`` when not certified).
    """
    K = np.asarray(K, dtype=np.float64)
    N = K.shape[0]
    if N == 0:
        return {"certified": True, "n_pos": 0, "n_neg": 0, "margin": math.inf, "error": 0.0, "w": np.zeros(0),
                "inv_norm": 0.0}
    Ks = 0.5 * (K + K.T)
    bounds_asym = fro(K - Ks) + U * fro(Ks)
    w, V = np.linalg.eigh(Ks) if eig is None else eig
    G = V.T @ V
    orth = fro(G - np.eye(N)) * (1 + U) + product_error(V.T, V)
    if not orth < 0.5:
        return {"certified": False, "n_pos": int(np.sum(w > 0)), "n_neg": int(np.sum(w < 0)), "margin": -math.inf,
                "error": math.inf, "w": w, "inv_norm": math.inf}
    normV2 = 1.0 + orth                      # ||V||_2^2 = ||V^T V||_2 <= 1 + ||V^T V - I||
    KV = Ks @ V
    M = V.T @ KV
    prod = product_error(Ks, V) * math.sqrt(normV2) + product_error(V.T, KV)
    e = up(fro(M - np.diag(w)) * (1 + U) + prod + normV2 * (err + bounds_asym))
    margin = float(np.abs(w).min()) - e
    return {"certified": margin > 0, "n_pos": int(np.sum(w > 0)), "n_neg": int(np.sum(w < 0)), "margin": margin,
            "error": e, "w": w, "inv_norm": up(normV2 / margin) if margin > 0 else math.inf}


def sigma_min_lower(M, err: float = 0.0) -> float:
    """Rigorous lower bound on ``sigma_min`` (of the smaller side) of a matrix known within ``err``."""
    M = np.atleast_2d(np.asarray(M, dtype=np.float64))
    if M.size == 0:
        return math.inf
    if M.shape[0] < M.shape[1]:
        M = M.T
    G = M.T @ M
    err_G = SAFETY * gamma(M.shape[0] + 2) * fro(M) ** 2
    lo, ok = lambda_min_lower(G, err_G)
    if not (ok and lo > 0):
        return 0.0
    return max(0.0, math.sqrt(lo) * (1 - 4 * U) - err)


def product_error(A, B, *, tight: bool = False) -> float:
    """Bound on ``||fl(A @ B) - A @ B||_F <= gamma_k || |A| |B| ||_F`` (k the inner dimension).

    The cheap form uses ``|| |A| |B| ||_F <= ||A||_F ||B||_F``; ``tight`` forms ``|A| |B|``.
    """
    A = np.atleast_2d(np.asarray(A, dtype=np.float64))
    B = np.asarray(B, dtype=np.float64)
    k = A.shape[1]
    g = SAFETY * gamma(k + 2)
    if not tight:
        return g * fro(A) * fro(B)
    AB = np.abs(A) @ np.abs(B)
    return g * fro(AB) / (1 - gamma(k + 2))


# ---------------------------------------------------------------------------- derivatives over a ball
def chain_derivative_bounds(m, a, kmax: int = 3) -> list:
    """Bounds ``B_0 .. B_kmax`` on ``sup ||d^k/dt^k (M_L(t) ... M_1(t)) x|| / ||x||`` over unit directions.

    Each factor is affine in its own block of parameters: ``M_l(t) = M_l + t A_l(d_l)`` with
    ``||M_l|| <= m[l]`` and ``||A_l(d_l)|| <= a[l] ||d_l||``, ``sum ||d_l||^2 <= 1``. The ``k``-th
    derivative is ``k! sum_{|S|=k} prod(A_l for l in S, M_l otherwise) x`` (a multi-affine product).
    With ``c_S = prod_{l in S} a_l prod_{l not in S} m_l`` and ``pi_S = prod_{l in S} ||d_l||``:

    * Cauchy–Schwarz: ``sum c_S pi_S <= sqrt(sum c_S^2) sqrt(e_k(||d_l||^2)) <= sqrt(sum c_S^2 / k!)``;
    * AM–GM: ``pi_S <= k^{-k/2}``, so ``sum c_S pi_S <= k^{-k/2} sum c_S``.

    ``sum c_S`` and ``sum c_S^2`` are the ``t^k`` coefficients of ``prod (m_l + a_l t)`` and
    ``prod (m_l^2 + a_l^2 t)``. The smaller of the two bounds is returned (times ``k!``).
    """
    m = [float(v) for v in m]
    a = [float(v) for v in a]
    lin = np.array([1.0])
    sq = np.array([1.0])
    for ml, al in zip(m, a):
        lin = np.convolve(lin, [ml, al])
        sq = np.convolve(sq, [ml * ml, al * al])
    out = []
    for k in range(kmax + 1):
        if k >= lin.size:
            out.append(0.0)
            continue
        if k == 0:
            out.append(up(lin[0], 2 * len(m) + 2))
            continue
        amgm = math.factorial(k) * k ** (-k / 2) * lin[k]
        cs = math.sqrt(math.factorial(k) * sq[k])
        out.append(up(min(amgm, cs), 4 * len(m) + 8))
    return out


def loss_derivative_sup(name: str):
    """Uniform bounds ``(||l''||, ||l'''||)`` of the smooth losses in ``f`` (None: depends on the point).

    Logistic ``log(1 + e^{-m})``: ``l'' = s(1-s) <= 1/4``, ``|l'''| = s(1-s)|1-2s| <= 1/(6 sqrt 3) < 0.0963``.
    Cross-entropy (log-sum-exp): ``D^2 = diag(p) - p p^T`` has norm ``<= 1/2`` (a variance of a
    functional whose range is at most ``sqrt 2 ||v||``), ``|D^3[v,v,v]| = |E (X - EX)^3| <=
    range * Var <= ||v||^3 / sqrt 2``. Square: ``l'' = I``, ``l''' = 0``. Piecewise-linear on a
    fixed piece: 0, 0.
    """
    return {"square": (1.0, 0.0), "logistic": (0.25, 0.0963), "cross_entropy": (0.5, 0.7072),
            "hinge": (0.0, 0.0), "absolute": (0.0, 0.0), "multiclass_hinge": (0.0, 0.0)}[name]
