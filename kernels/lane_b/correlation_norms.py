"""Sparse norms of the token correlation matrix C(n), never formed densely.

C(n)[mu, nu] = P(x_i = mu, x_{i+n} = nu) - P(x_i = mu) P(x_{i+n} = nu) is V x V
(V = 49152 for a real tokenizer: 19 GB dense), but only the pairs seen in the stream are
non-zero in the joint J, at most P of them. So C = J - p q^T is never formed:

* Frobenius^2 = ||J||^2 - 2 p^T J q + ||p||^2 ||q||^2, sums over J's non-zeros only;
* operator norm = top singular value of the implicit operator v -> J v - p (q . v),
  u -> J^T u - q (p . u), found by Golub-Kahan-Lanczos bidiagonalisation to ARPACK's
  stopping rule (checked every step, so it stops after the ~10-15 steps the spectral gap
  needs, not after a 20-vector basis and its restarts; ARPACK (svds) is the fallback),
  or by a few Lanczos steps to a looser rule from a known good start vector (the
  bootstrap's resamples).

Marginals p, q come from the same P pairs as J, and every lag uses the same P pair
positions (``max_pairs`` subsamples them, seeded), so norms at different lags share one
noise level, measured on shuffled copies of the stream at the same P.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, svds
from threadpoolctl import ThreadpoolController

from expspec.kernels.errors import ExpspecError
from expspec.kernels.heap import reuse_freed_memory

SVD_TOLERANCE = 1e-12  # relative accuracy asked of ARPACK (and Lanczos) for the top singular value
LANCZOS_MAX_STEPS = 100  # then ARPACK takes over from the best vector found
BREAKDOWN = 1e-12  # a Lanczos vector this small against the ones before: an exact invariant subspace
WARM_TOLERANCE = 1e-4  # a resample's Lanczos residual / sigma: sigma is then within ~1e-8 (measured <= 5e-9)
# where the top singular value has a gap; a near-degenerate top (a lag at the noise) only within ~1e-4
ZERO_NORM = 1e-13  # a Frobenius norm below this is C == 0 up to rounding
START_MIX = 1e-2  # share of a fixed random vector mixed into a warm start (see _started)


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


_controller: ThreadpoolController | None = None


def one_blas_thread():
    """A context holding BLAS at one thread (each step here is one sparse pass or a length-V
    vector op: BLAS threads only add synchronisation, 4x slower on a busy 2-core box). The
    controller is built once: ``threadpool_limits`` rescans the loaded libraries per call
    (~1 ms, a few % of a lag)."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


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
    which is already CSR order: the row pointer is where each row's first code would sort,
    nothing is re-sorted. Codes are 32-bit whenever V^2 fits (any V <= 65535): half the
    bytes to sort; they are built and sorted in place (one array of P codes in all).
    """
    if left.size == 0:
        raise ExpspecError("correlation: no token pairs to count")
    code_type = np.uint32 if vocab_size * vocab_size <= 2**32 else np.int64
    codes = left.astype(code_type)
    codes *= code_type(vocab_size)
    np.add(codes, right, out=codes, casting="unsafe")  # right < V: the sum fits the code type
    codes.sort()
    new = np.empty(codes.size, dtype=bool)
    new[0] = True
    np.not_equal(codes[1:], codes[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    counts = np.empty(starts.size, dtype=np.int64)
    np.subtract(starts[1:], starts[:-1], out=counts[:-1])
    counts[-1] = codes.size - starts[-1]
    distinct = codes[starts]
    row_codes = np.arange(vocab_size, dtype=code_type) * code_type(vocab_size)  # code of (mu, 0)
    indptr = np.empty(vocab_size + 1, dtype=np.int64)  # row mu starts where code mu * V would sort
    indptr[:-1] = np.searchsorted(distinct, row_codes)
    indptr[-1] = distinct.size
    index_type = np.int32 if starts.size < 2**31 else np.int64
    cols = (distinct - np.repeat(row_codes, np.diff(indptr))).astype(index_type)  # no division
    return sp.csr_matrix((counts / left.size, cols, indptr.astype(index_type)), shape=(vocab_size, vocab_size))


def frobenius_norm(joint: sp.csr_matrix, p: np.ndarray, q: np.ndarray) -> float:
    """||J - p q^T||_F from J's non-zeros only."""
    outer = np.repeat(p, np.diff(joint.indptr)) * q[joint.indices]  # p[row] q[col] per entry
    return float(np.sqrt(_frobenius_sq(joint.data, None, joint.indices, p, q, outer)))


def _frobenius_sq(data: np.ndarray, rows: np.ndarray, cols: np.ndarray, p: np.ndarray,
                  q: np.ndarray, outer_on_support: np.ndarray | None = None) -> float:
    """||J - p q^T||_F^2 for J given by its entries ``data`` at (rows, cols).

    Algebraically ||J||^2 - 2 p^T J q + ||p||^2 ||q||^2; summed as the exact entries on
    J's support plus the p q^T mass off it, which keeps the cancellation small when C ~ 0.
    ``outer_on_support`` is p[rows] * q[cols] when the caller already has it.
    """
    if outer_on_support is None:
        outer_on_support = p[rows] * q[cols]
    excess = data - outer_on_support
    on_support = excess @ excess
    off_support = (p @ p) * (q @ q) - outer_on_support @ outer_on_support
    return float(on_support + max(off_support, 0.0))


def operator_norm(joint: sp.csr_matrix, p: np.ndarray, q: np.ndarray, return_vector: bool = False,
                  start: np.ndarray | None = None):
    """Top singular value of J - p q^T, applied implicitly (never V x V).

    ``return_vector`` also returns the top right singular vector (the bootstrap's warm start,
    and the next lag's). ``start``: the first Lanczos vector - a neighbouring lag's top
    vector saves steps; the answer is the same to ``SVD_TOLERANCE``.
    """
    if start is None:
        start = np.random.default_rng(0).standard_normal(joint.shape[0])  # ones lie in C's null space
    else:
        start = _started(start)
    sigma, right = _lanczos_top(joint, p, q, start)
    if sigma is None:  # not converged in LANCZOS_MAX_STEPS (a near-degenerate top): ARPACK
        sigma, right = _arpack_top(joint, p, q, right)
    return (sigma, right) if return_vector else sigma


def _centred_products(joint: sp.csr_matrix, p: np.ndarray, q: np.ndarray):
    """v -> C v and u -> C^T u for C = J - p q^T, never formed."""
    joint_t = joint.T  # a CSC view, no copy

    def matvec(v):
        v = np.ravel(v)
        return joint @ v - p * (q @ v)

    def rmatvec(u):
        u = np.ravel(u)
        return joint_t @ u - q * (p @ u)

    return matvec, rmatvec


def _started(start: np.ndarray) -> np.ndarray:
    """A warm start with ``START_MIX`` of a fixed random unit vector mixed in. Lanczos only
    explores the Krylov space of its start: a start with no component along the top singular
    vector (a neighbouring lag's or the sample's top vector lying in another invariant
    subspace, possible where C is block-diagonal) would converge to a lower singular value
    and pass the residual test. ARPACK's restarts found it; with the mix Lanczos does too."""
    return start / np.linalg.norm(start) + START_MIX * _unit_noise(start.size)


@functools.lru_cache(maxsize=4)
def _unit_noise(size: int) -> np.ndarray:
    """The fixed random unit vector of ``_started``, drawn once per size (a bootstrap warm-starts
    thousands of resamples at one V), read-only."""
    noise = np.random.default_rng(1).standard_normal(size)
    noise /= np.linalg.norm(noise)
    noise.flags.writeable = False
    return noise


def _lanczos_top(joint: sp.csr_matrix, p: np.ndarray, q: np.ndarray, start: np.ndarray,
                 tolerance: float = SVD_TOLERANCE, max_steps: int | None = None):
    """(sigma, right vector) by Golub-Kahan-Lanczos bidiagonalisation, or (None, best vector).

    After j steps C V_j = U_j B_j and C^T U_j = V_j B_j^T + b_j v_{j+1} e_j^T with B_j upper
    bidiagonal, so a singular triplet (theta, y, x) of B_j leaves the residual
    ||C^T U_j y - theta V_j x|| = b_j |y_j|. It stops at b_j |y_j| <= tolerance * theta: the
    rule ARPACK applies to C^T C (what svds runs), here checked after every step. Both
    bases are reorthogonalised in full (classical Gram-Schmidt: j length-V dot products,
    small against a sparse pass), so no spurious copies of sigma appear.
    """
    matvec, rmatvec = _centred_products(joint, p, q)
    size = joint.shape[0]
    steps = min(max_steps or LANCZOS_MAX_STEPS, size)
    lefts, rights = np.empty((steps, size)), np.empty((steps + 1, size))
    alpha, beta = np.zeros(steps), np.zeros(steps)
    rights[0] = start / np.linalg.norm(start)
    best = rights[0]
    for j in range(steps):
        u = matvec(rights[j])
        if j:
            u -= lefts[:j].T @ (lefts[:j] @ u)
        alpha[j] = np.linalg.norm(u)
        scale = max(alpha[:j].max(initial=0.0), beta[:j].max(initial=0.0))
        if alpha[j] <= BREAKDOWN * scale or alpha[j] == 0.0:
            # C v_j lies in span(U_{j-1}): C V_{j+1} = U_j [B_j | b_{j-1} e_j] exactly, whose
            # singular values are C's on an invariant pair of spaces (none when j = 0)
            if j == 0:
                return None, best
            small = np.zeros((j, j + 1))
            small[:, :j] = _bidiagonal(alpha[:j], beta[:j - 1])
            small[j - 1, j] = beta[j - 1]
            _, sigmas, right_vecs_t = np.linalg.svd(small)
            best = right_vecs_t[0] @ rights[:j + 1]
            return float(sigmas[0]), best / np.linalg.norm(best)
        lefts[j] = u / alpha[j]
        w = rmatvec(lefts[j])
        w -= rights[:j + 1].T @ (rights[:j + 1] @ w)
        beta[j] = np.linalg.norm(w)
        left_vecs, sigmas, right_vecs_t = np.linalg.svd(_bidiagonal(alpha[:j + 1], beta[:j]))
        if beta[j] * abs(left_vecs[-1, 0]) <= tolerance * sigmas[0]:  # b_j = 0: an exact invariant space
            best = right_vecs_t[0] @ rights[:j + 1]
            return float(sigmas[0]), best / np.linalg.norm(best)
        rights[j + 1] = w / beta[j]
    best = right_vecs_t[0] @ rights[:steps]
    return None, best / np.linalg.norm(best)


def _bidiagonal(diagonal: np.ndarray, upper: np.ndarray) -> np.ndarray:
    return np.diag(diagonal) + np.diag(upper, 1)


def _arpack_top(joint: sp.csr_matrix, p: np.ndarray, q: np.ndarray, start: np.ndarray):
    """(sigma, right vector) by ARPACK on the implicit operator, from ``start``."""
    matvec, rmatvec = _centred_products(joint, p, q)
    size = joint.shape[0]
    centred = LinearOperator((size, size), matvec=matvec, rmatvec=rmatvec, dtype=float)
    _, top, right = svds(centred, k=1, tol=SVD_TOLERANCE, v0=start, maxiter=100 * size)
    return float(top[0]), right[0]


def warm_operator_norm(joint: sp.csr_matrix, p: np.ndarray, q: np.ndarray, start: np.ndarray,
                       tolerance: float = WARM_TOLERANCE):
    """Top singular value of J - p q^T from a near-top ``start``; (value, vector).

    A resample's C is close to the sample's, so Lanczos from the sample's top right
    singular vector meets a residual of ``tolerance`` x sigma in a few steps: sigma's error
    is then ~ the residual squared over the spectral gap (~1e-8 relative). Power iteration
    from the same start, stopped at a 1e-6 relative change, took 1.5-5x the time for
    sigma within ~1e-7 on V = 49152. Falls back to ``operator_norm`` (ARPACK's rule) if it
    has not converged (a near-degenerate top of the spectrum, i.e. a lag at the noise).
    """
    sigma, vector = _lanczos_top(joint, p, q, _started(start), tolerance=tolerance)
    if sigma is None:  # the strict rule, from the best vector this run found
        return operator_norm(joint, p, q, return_vector=True, start=vector)
    return sigma, vector


def _norms_at_positions(tokens: np.ndarray, lags: np.ndarray, positions: np.ndarray, vocab_size: int,
                        op: bool = True, keep_vectors: bool = False) -> LagNorms:
    """Norms of C(n) at every lag over the pairs (positions, positions + n); ``positions``
    sorted and distinct, as ``pair_positions`` gives them.

    ``op=False`` skips the operator norm (nan), ``keep_vectors`` keeps its top right
    singular vectors (the bootstrap starts its resamples' Lanczos there).
    """
    # positions are sorted and distinct (pair_positions): a span as long as their count is a
    # range, read as slices instead of gathers
    contiguous = positions.size > 0 and int(positions[-1]) - int(positions[0]) + 1 == positions.size
    first = int(positions[0]) if contiguous else 0
    left = tokens[first:first + positions.size] if contiguous else tokens[positions]
    left_counts = np.bincount(left, minlength=vocab_size)
    p = left_counts / left.size
    op_norm, frob = np.full(lags.size, np.nan), np.empty(lags.size)
    vectors = [] if keep_vectors else None
    previous = None  # the last lag's top right singular vector: the next lag's Lanczos start
    with one_blas_thread(), reuse_freed_memory():  # each lag's arrays reuse the last lag's pages
        for k, lag in enumerate(lags):
            if contiguous:  # right is left shifted by the lag: its counts differ at 2 x lag tokens
                right = tokens[first + lag:first + lag + positions.size]
                right_counts = left_counts.copy()
                np.subtract.at(right_counts, tokens[first:first + lag], 1)
                np.add.at(right_counts, tokens[first + positions.size:first + positions.size + lag], 1)
            else:
                right = tokens[positions + lag]
                right_counts = np.bincount(right, minlength=vocab_size)
            q = right_counts / right.size
            joint = joint_distribution(left, right, vocab_size)
            frob[k] = frobenius_norm(joint, p, q)
            if not op:
                continue
            if frob[k] <= ZERO_NORM:  # C == 0 to rounding (a constant stream): Lanczos cannot start
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
