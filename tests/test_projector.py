"""The polisher's least-squares solves against an SVD-based pseudo-inverse (an independent oracle).

``Projector`` factors ``B B'`` block by block (pivoted Cholesky to find dependent rows, then
Cholesky, a pseudo-inverse or the basic solution on the independent rows). Each path (small and
large blocks, full rank and dependent rows, sparse and dense rows) is checked against
an SVD pseudo-inverse (numpy's SVD, an explicit cutoff).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from certify.polish.projector import Projector


def _rows(rng, m, p, fill, dependent=0):
    """``m`` random rows in ``p`` columns, ``fill`` of their entries nonzero; the last ``dependent``
    rows are combinations of two earlier rows (so LIKQ fails for them)."""
    B = rng.standard_normal((m, p)) * (rng.random((m, p)) < fill)
    for k in range(m - dependent, m):
        i, j = rng.choice(m - dependent, size=2, replace=False)
        B[k] = 0.5 * B[i] - 2.0 * B[j]
    return B


def _pinv(B, rel: float = 1e-10):
    """B's pseudo-inverse from its SVD, singular values below ``rel`` of the largest taken as 0. The
    cutoff is explicit: with numpy 2.4's default one, ``np.linalg.pinv`` inverted singular values of
    8.7e-16 (relative) of a matrix with 12 exactly dependent rows, and its "null-space component"
    had ``|B w| = 0.15``."""
    U, S, Vt = np.linalg.svd(B, full_matrices=False)
    keep = S > rel * S[0]
    return (Vt[keep].T / S[keep]) @ U[:, keep].T


def _check(B, rng):
    proj = Projector(sp.csr_matrix(B))
    pinv = _pinv(B)
    for _ in range(3):
        v = rng.standard_normal(B.shape[1])
        want = v - pinv @ (B @ v)                    # the component of v in null(B)
        got = proj.project(v)
        assert np.allclose(got, want, atol=1e-9 * np.linalg.norm(v))
        y = proj.multipliers(v)                      # B' y is v's component in the row space
        assert np.allclose(B.T @ y, v - want, atol=1e-9 * np.linalg.norm(v))
        r = B @ rng.standard_normal(B.shape[1])      # a consistent right-hand side
        d = proj.lift(r)
        assert np.allclose(B @ d, r, atol=1e-9 * np.linalg.norm(r))
        assert np.allclose(d, pinv @ r, atol=1e-9 * np.linalg.norm(r))   # and the least-norm one


@pytest.mark.parametrize("m, p, fill, dependent", [
    (40, 120, 0.05, 0),      # sparse rows: many small blocks
    (40, 120, 0.05, 5),
    (300, 500, 0.9, 0),      # one block above Projector.SMALL, dense rows (a kept Cholesky factor)
    (300, 500, 0.9, 20),     # ... with dependent rows (basic solution on the independent ones)
    (300, 500, 0.03, 0),     # one large block of sparse rows
    (120, 300, 0.9, 7),      # a block below SMALL with dependent rows (pseudo-inverse)
])
def test_projector_matches_the_pseudo_inverse(m, p, fill, dependent):
    rng = np.random.default_rng(m + p + dependent)
    _check(_rows(rng, m, p, fill, dependent), rng)


def test_dependent_rows_are_flagged():
    rng = np.random.default_rng(3)
    B = _rows(rng, 300, 500, 0.9, dependent=20)
    proj = Projector(sp.csr_matrix(B))
    assert int(proj.dependent.sum()) == 20          # the rank deficit, whichever rows are flagged
    assert np.linalg.matrix_rank(B[~proj.dependent]) == 280


@pytest.mark.parametrize("dependent", [0, 12])
def test_large_network_rows_take_the_dense_gram_product(dependent, monkeypatch):
    """p >= LARGE_P with mostly-filled rows: B B' is formed densely; the solves are the same."""
    import certify.polish.projector as P
    rng = np.random.default_rng(17 + dependent)
    B = _rows(rng, 150, P.LARGE_P, 0.3, dependent)
    calls = []
    real = sp.csr_matrix.__matmul__
    monkeypatch.setattr(sp.csr_matrix, "__matmul__", lambda a, b: calls.append(b.shape) or real(a, b))
    proj = Projector(sp.csr_matrix(B))
    assert not [s for s in calls if s == (P.LARGE_P, 150)]      # no sparse B @ B' product
    monkeypatch.undo()
    _check(B, rng)
    assert int(proj.dependent.sum()) == dependent
