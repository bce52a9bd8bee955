"""Sparse norms of the token correlation matrix C(n), never formed densely.

C(n)[mu, nu] = P(x_i = mu, x_{i+n} = nu) - P(x_i = mu) P(x_{i+n} = nu) is V x V
(V = 49152 for a real tokenizer: 19 GB dense), but only the pairs seen in the stream are
non-zero in the joint J, at most P of them. So C = J - p q^T is never formed:

* Frobenius^2 = ||J||^2 - 2 p^T J q + ||p||^2 ||q||^2, sums over J's non-zeros only;
* operator norm = top singular value of the implicit operator v -> J v - p (q . v),
  u -> J^T u - q (p . u), found by ARPACK (svds) to near machine precision, or by a few
  power iterations from a known good start vector (the bootstrap's resamples).

Marginals p, q come from the same P pairs as J, and every lag uses the same P pair
positions (``max_pairs`` subsamples them, seeded), so norms at different lags share one
noise level, measured on shuffled copies of the stream at the same P.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, svds
from threadpoolctl import threadpool_limits

from expspec.kernels.errors import ExpspecError

SVD_TOLERANCE = 1e-12  # relative accuracy asked of ARPACK for the top singular value
POWER_TOLERANCE = 1e-6  # relative change that stops a resample's power iteration (its norm is then within ~1e-5)
POWER_MAX_ITER = 300  # then ARPACK takes over
ZERO_NORM = 1e-13  # a Frobenius norm below this is C == 0 up to rounding


@dataclass
class LagNorms:
    lags: np.ndarray
    op_norm: np.ndarray
    frob_norm: np.ndarray
    n_pairs: int  # P, the same for every lag
    vocab_size: int
    op_vectors: list | None = None  # top right singular vector per lag, when asked for

    def to_dict(self) -> dict:
        return {"lags": self.lags.tolist(), "op_norm": self.op_norm.tolist(),
                "frob_norm": self.frob_norm.tolist(), "n_pairs": self.n_pairs,
                "vocab_size": self.vocab_size}


def _check_stream(tokens, vocab_size: int) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ExpspecError(
            f"correlation: tokens must be a 1-D integer array, got {tokens.dtype} {tokens.shape}"
        )
    if vocab_size < 2:
        raise ExpspecError(f"correlation: vocab_size must be >= 2, got {vocab_size}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ExpspecError(
            f"correlation: token ids must lie in [0, {vocab_size}), got [{tokens.min()}, {tokens.max()}]"
        )
    return tokens.astype(np.int64, copy=False)


def _check_lags(lags, n_tokens: int) -> np.ndarray:
    lags = np.asarray(lags)
    if lags.ndim != 1 or lags.size == 0 or not np.issubdtype(lags.dtype, np.integer):
        raise ExpspecError(f"correlation: lags must be a non-empty list of integers, got {lags.tolist()}")
    if np.any(lags < 1) or np.unique(lags).size != lags.size:
        raise ExpspecError(f"correlation: lags must be distinct integers >= 1, got {lags.tolist()}")
    if lags.max() >= n_tokens:
        raise ExpspecError(f"correlation: largest lag {lags.max()} needs more than {n_tokens} tokens")
    return np.sort(lags.astype(np.int64))


def pair_positions(n_tokens: int, max_lag: int, max_pairs: int | None, seed: int) -> np.ndarray:
    """The P left positions i shared by every lag: all of [0, N - max_lag) or a seeded sample."""
    available = n_tokens - max_lag
    if max_pairs is None or max_pairs >= available:
        return np.arange(available, dtype=np.int64)
    if max_pairs < 1:
        raise ExpspecError(f"correlation: max_pairs must be >= 1, got {max_pairs}")
    rng = np.random.default_rng([seed, 1])
    return np.sort(rng.choice(available, size=max_pairs, replace=False)).astype(np.int64)


def joint_distribution(left: np.ndarray, right: np.ndarray, vocab_size: int) -> sp.csr_matrix:
    """Sparse J[mu, nu] = share of pairs with (x_i, x_{i+n}) = (mu, nu), built in O(P log P).

    The pair codes mu * V + nu, sorted, are row-major and (run-length encoded) distinct,
    which is already CSR order: the row pointer is a cumulative count, nothing is re-sorted.
    Codes are 32-bit whenever V^2 fits (any V <= 65535): half the bytes to sort.
    """
    if left.size == 0:
        raise ExpspecError("correlation: no token pairs to count")
    code_type = np.uint32 if vocab_size * vocab_size <= 2**32 else np.int64
    codes = np.sort(left.astype(code_type) * code_type(vocab_size) + right.astype(code_type))
    starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))
    counts = np.diff(np.append(starts, codes.size))
    rows, cols = np.divmod(codes[starts].astype(np.int64), vocab_size)
    indptr = np.zeros(vocab_size + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=vocab_size), out=indptr[1:])
    index_type = np.int32 if starts.size < 2**31 else np.int64
    return sp.csr_matrix((counts / left.size, cols.astype(index_type), indptr.astype(index_type)),
                         shape=(vocab_size, vocab_size))


def frobenius_norm(joint: sp.csr_matrix, p: np.ndarray, q: np.ndarray) -> float:
    """||J - p q^T||_F from J's non-zeros only."""
    rows = np.repeat(np.arange(joint.shape[0]), np.diff(joint.indptr))
    return float(np.sqrt(_frobenius_sq(joint.data, rows, joint.indices, p, q)))


def _frobenius_sq(data: np.ndarray, rows: np.ndarray, cols: np.ndarray, p: np.ndarray,
                  q: np.ndarray, outer_on_support: np.ndarray | None = None) -> float:
    """||J - p q^T||_F^2 for J given by its entries ``data`` at (rows, cols).

    Algebraically ||J||^2 - 2 p^T J q + ||p||^2 ||q||^2; summed as the exact entries on
    J's support plus the p q^T mass off it, which keeps the cancellation small when C ~ 0.
    ``outer_on_support`` is p[rows] * q[cols] when the caller already has it.
    """
    if outer_on_support is None:
        outer_on_support = p[rows] * q[cols]
    on_support = np.sum((data - outer_on_support) ** 2)
    off_support = (p @ p) * (q @ q) - np.sum(outer_on_support ** 2)
    return float(on_support + max(off_support, 0.0))


def operator_norm(joint: sp.csr_matrix, p: np.ndarray, q: np.ndarray, return_vector: bool = False,
                  start: np.ndarray | None = None):
    """Top singular value of J - p q^T, applied implicitly (never V x V).

    ``return_vector`` also returns the top right singular vector (the bootstrap's warm start,
    and the next lag's). ``start``: ARPACK's starting vector - a neighbouring lag's top
    vector halves the Lanczos restarts; the answer is the same to ``SVD_TOLERANCE``.
    """
    joint_t = joint.T  # a CSC view, no copy

    def matvec(v):
        v = np.ravel(v)
        return joint @ v - p * (q @ v)

    def rmatvec(u):
        u = np.ravel(u)
        return joint_t @ u - q * (p @ u)

    size = joint.shape[0]
    centred = LinearOperator((size, size), matvec=matvec, rmatvec=rmatvec, dtype=float)
    if start is None:
        start = np.random.default_rng(0).standard_normal(size)  # ones lie in C's null space
    if not return_vector:
        top = svds(centred, k=1, tol=SVD_TOLERANCE, v0=start, return_singular_vectors=False,
                   maxiter=100 * size)
        return float(top[0])
    _, top, right = svds(centred, k=1, tol=SVD_TOLERANCE, v0=start, maxiter=100 * size)
    return float(top[0]), right[0]


def power_operator_norm(joint: sp.csr_matrix, p: np.ndarray, q: np.ndarray, start: np.ndarray,
                        tolerance: float = POWER_TOLERANCE, max_iter: int = POWER_MAX_ITER):
    """Top singular value of J - p q^T by power iteration from ``start``; (value, vector).

    A resample's C is close to the sample's, so the sample's top right singular vector
    converges in a few iterations (2 sparse products each) where ARPACK restarts a
    20-vector Lanczos basis. Falls back to ``operator_norm`` if it has not converged
    (a near-degenerate top of the spectrum, i.e. a lag at the noise).
    """
    joint_t = joint.T
    v = start / np.linalg.norm(start)
    previous = 0.0
    for _ in range(max_iter):
        u = joint @ v - p * (q @ v)
        norm_u = np.linalg.norm(u)
        if norm_u <= ZERO_NORM:
            break
        w = joint_t @ (u / norm_u) - q * (p @ (u / norm_u))
        sigma = float(np.linalg.norm(w))
        v = w / sigma
        if abs(sigma - previous) <= tolerance * sigma:
            return sigma, v
        previous = sigma
    return operator_norm(joint, p, q, return_vector=True)


def _norms_at_positions(tokens: np.ndarray, lags: np.ndarray, positions: np.ndarray, vocab_size: int,
                        op: bool = True, keep_vectors: bool = False) -> LagNorms:
    """Norms of C(n) at every lag over the pairs (positions, positions + n).

    ``op=False`` skips the operator norm (nan), ``keep_vectors`` keeps its top right
    singular vectors (the bootstrap starts its power iterations there).
    """
    left = tokens[positions]
    p = np.bincount(left, minlength=vocab_size) / left.size
    op_norm, frob = np.full(lags.size, np.nan), np.empty(lags.size)
    vectors = [] if keep_vectors else None
    # Each step is one sparse pass or a length-V vector op: BLAS threads only add
    # synchronisation (4x slower on a busy 2-core box), so they are held at one here.
    previous = None  # the last lag's top right singular vector: the next lag's ARPACK start
    with threadpool_limits(limits=1, user_api="blas"):
        for k, lag in enumerate(lags):
            right = tokens[positions + lag]
            q = np.bincount(right, minlength=vocab_size) / right.size
            joint = joint_distribution(left, right, vocab_size)
            frob[k] = frobenius_norm(joint, p, q)
            if not op:
                continue
            if frob[k] <= ZERO_NORM:  # C == 0 to rounding (a constant stream): ARPACK cannot start
                op_norm[k] = frob[k]
                if keep_vectors:
                    vectors.append(None)
            else:
                op_norm[k], previous = operator_norm(joint, p, q, return_vector=True, start=previous)
                if keep_vectors:
                    vectors.append(previous)
    return LagNorms(lags, op_norm, frob, int(positions.size), int(vocab_size), vectors)


def correlation_norms(tokens, lags, vocab_size: int, max_pairs: int | None = None,
                      seed: int = 0) -> LagNorms:
    """Operator and Frobenius norms of C(n) for each lag n, all lags on the same P pairs."""
    tokens = _check_stream(tokens, vocab_size)
    lags = _check_lags(lags, tokens.size)
    positions = pair_positions(tokens.size, int(lags.max()), max_pairs, seed)
    return _norms_at_positions(tokens, lags, positions, vocab_size)


def shuffled_stream(tokens, seed: int = 0, index: int = 0) -> np.ndarray:
    """An i.i.d. stream with the same unigram: a seeded permutation of the tokens (``index``-th)."""
    key = [seed, 2] if index == 0 else [seed, 2, index]
    return np.random.default_rng(key).permutation(np.asarray(tokens))


def noise_floor(tokens, lags, vocab_size: int, max_pairs: int | None = None,
                seed: int = 0) -> LagNorms:
    """The norms an i.i.d. stream with this unigram gives at the same P: the floor."""
    return correlation_norms(shuffled_stream(tokens, seed), lags, vocab_size, max_pairs, seed)
