"""Two-point correlation decay of a token stream: the beta of alpha = gamma / (2 beta).

Why: arXiv 2602.07488 predicts the data-scaling exponent from how fast the token-token
correlation matrix decays with distance,

    C(n)[mu, nu] = P(x_i = mu, x_{i+n} = nu) - P(x_i = mu) P(x_{i+n} = nu),
    ||C(n)|| ~ n^-beta.

Why this shape of code: C(n) is V x V (V = 49152 for a real tokenizer: 19 GB dense), but
only the pairs seen in the stream are non-zero in the joint J, at most P of them. So
C = J - p q^T is never formed:

* Frobenius^2 = ||J||^2 - 2 p^T J q + ||p||^2 ||q||^2, sums over J's non-zeros only;
* operator norm = top singular value of the implicit operator v -> J v - p (q . v),
  u -> J^T u - q (p . u), found by ARPACK (svds) to near machine precision.

Marginals p, q come from the same P pairs as J, and every lag uses the same P pair
positions (``max_pairs`` subsamples them, seeded), so norms at different lags share one
noise level. That level, the noise floor, is measured on a shuffled copy of the stream
(an i.i.d. stream with the same unigram) at the same P. A lag is usable while its
operator norm exceeds ``floor_factor`` x the floor; beta is fitted on the contiguous
usable lags by ``fit_power_law``, and its CI comes from a block bootstrap of the stream
(lags of one stream are not independent points, so resampling them would be wrong).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, svds
from threadpoolctl import threadpool_limits

from expspec.kernels.errors import ExpspecError
from expspec.kernels.progress import track
from expspec.kernels.fit.power_law import fit_power_law, percentile_interval

SVD_TOLERANCE = 1e-12  # relative accuracy asked of ARPACK for the top singular value
ZERO_NORM = 1e-13  # a Frobenius norm below this is C == 0 up to rounding


@dataclass
class LagNorms:
    lags: np.ndarray
    op_norm: np.ndarray
    frob_norm: np.ndarray
    n_pairs: int  # P, the same for every lag
    vocab_size: int

    def to_dict(self) -> dict:
        return {"lags": self.lags.tolist(), "op_norm": self.op_norm.tolist(),
                "frob_norm": self.frob_norm.tolist(), "n_pairs": self.n_pairs,
                "vocab_size": self.vocab_size}


@dataclass
class CorrelationDecay:
    rows: list[dict]  # per lag: lag, op_norm, frob_norm, floor_op, floor_frob, usable
    n_pairs: int  # P
    vocab_size: int  # V
    floor_factor: float
    window: tuple[int, int] | None  # (first, last) usable lag
    n_usable: int
    beta: float  # from the operator norm; nan when fewer than 2 usable lags
    beta_frob: float
    r2: float
    r2_frob: float
    prefactor: float
    ci: tuple[float, float] | None  # block-bootstrap 95% interval of beta
    n_bootstrap: int

    def to_dict(self) -> dict:
        return asdict(self)


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

    ``np.unique`` of the pair codes mu * V + nu returns them sorted row-major and distinct,
    which is already CSR order: the row pointer is a cumulative count, nothing is re-sorted.
    """
    codes, counts = np.unique(left * vocab_size + right, return_counts=True)
    rows, cols = np.divmod(codes, vocab_size)
    indptr = np.zeros(vocab_size + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=vocab_size), out=indptr[1:])
    index_type = np.int32 if codes.size < 2**31 else np.int64
    return sp.csr_matrix((counts / left.size, cols.astype(index_type), indptr.astype(index_type)),
                         shape=(vocab_size, vocab_size))


def frobenius_norm(joint: sp.csr_matrix, p: np.ndarray, q: np.ndarray) -> float:
    """||J - p q^T||_F from J's non-zeros only.

    Algebraically ||J||^2 - 2 p^T J q + ||p||^2 ||q||^2; summed as the exact entries on
    J's support plus the p q^T mass off it, which keeps the cancellation small when C ~ 0.
    """
    rows = np.repeat(np.arange(joint.shape[0]), np.diff(joint.indptr))
    outer_on_support = p[rows] * q[joint.indices]
    on_support = np.sum((joint.data - outer_on_support) ** 2)
    off_support = (p @ p) * (q @ q) - np.sum(outer_on_support ** 2)
    return float(np.sqrt(on_support + max(off_support, 0.0)))


def operator_norm(joint: sp.csr_matrix, p: np.ndarray, q: np.ndarray) -> float:
    """Top singular value of J - p q^T, applied implicitly (never V x V)."""
    joint_t = joint.T  # a CSC view, no copy

    def matvec(v):
        v = np.ravel(v)
        return joint @ v - p * (q @ v)

    def rmatvec(u):
        u = np.ravel(u)
        return joint_t @ u - q * (p @ u)

    size = joint.shape[0]
    centred = LinearOperator((size, size), matvec=matvec, rmatvec=rmatvec, dtype=float)
    start = np.random.default_rng(0).standard_normal(size)  # ones lie in C's null space
    top = svds(centred, k=1, tol=SVD_TOLERANCE, v0=start, return_singular_vectors=False,
               maxiter=100 * size)
    return float(top[0])


def _norms_at_positions(tokens: np.ndarray, lags: np.ndarray, positions: np.ndarray,
                        vocab_size: int) -> LagNorms:
    left = tokens[positions]
    p = np.bincount(left, minlength=vocab_size) / left.size
    op, frob = np.empty(lags.size), np.empty(lags.size)
    # Each step is one sparse pass or a length-V vector op: BLAS threads only add
    # synchronisation (4x slower on a busy 2-core box), so they are held at one here.
    with threadpool_limits(limits=1, user_api="blas"):
        for k, lag in enumerate(lags):
            right = tokens[positions + lag]
            q = np.bincount(right, minlength=vocab_size) / right.size
            joint = joint_distribution(left, right, vocab_size)
            frob[k] = frobenius_norm(joint, p, q)
            # C == 0 to rounding (e.g. a constant stream): ARPACK cannot start, and op <= frob
            op[k] = operator_norm(joint, p, q) if frob[k] > ZERO_NORM else frob[k]
    return LagNorms(lags, op, frob, int(positions.size), int(vocab_size))


def correlation_norms(tokens, lags, vocab_size: int, max_pairs: int | None = None,
                      seed: int = 0) -> LagNorms:
    """Operator and Frobenius norms of C(n) for each lag n, all lags on the same P pairs."""
    tokens = _check_stream(tokens, vocab_size)
    lags = _check_lags(lags, tokens.size)
    positions = pair_positions(tokens.size, int(lags.max()), max_pairs, seed)
    return _norms_at_positions(tokens, lags, positions, vocab_size)


def shuffled_stream(tokens, seed: int = 0) -> np.ndarray:
    """An i.i.d. stream with the same unigram: a seeded permutation of the tokens."""
    return np.random.default_rng([seed, 2]).permutation(np.asarray(tokens))


def noise_floor(tokens, lags, vocab_size: int, max_pairs: int | None = None,
                seed: int = 0) -> LagNorms:
    """The norms an i.i.d. stream with this unigram gives at the same P: the floor."""
    return correlation_norms(shuffled_stream(tokens, seed), lags, vocab_size, max_pairs, seed)


def usable_lags(norms: np.ndarray, floor: np.ndarray, floor_factor: float) -> np.ndarray:
    """Contiguous lags from the first whose norm exceeds floor_factor x floor, until one fails."""
    above = norms > floor_factor * floor
    usable = np.zeros(norms.size, dtype=bool)
    if above.any():
        first = int(np.argmax(above))
        last = first
        while last + 1 < norms.size and above[last + 1]:
            last += 1
        usable[first:last + 1] = True
    return usable


def block_resample(tokens: np.ndarray, block_len: int, rng: np.random.Generator) -> np.ndarray:
    """A stream of the same length made of contiguous blocks drawn with replacement."""
    n_blocks = -(-tokens.size // block_len)
    starts = rng.integers(0, tokens.size - block_len + 1, size=n_blocks)
    return np.concatenate([tokens[s:s + block_len] for s in starts])[:tokens.size]


def default_block_len(n_tokens: int, max_lag: int) -> int:
    """Blocks long against the largest lag (pairs rarely straddle a seam), ~64 per stream."""
    return int(min(n_tokens, max(8 * max_lag, n_tokens // 64)))


def correlation_decay(tokens, lags, vocab_size: int, floor_factor: float = 3.0,
                      max_pairs: int | None = None, bootstrap: int = 0, seed: int = 0,
                      block_len: int | None = None) -> CorrelationDecay:
    """Norms per lag, their noise floor, the usable window and beta (op norm) with its CI."""
    if floor_factor <= 0 or not np.isfinite(floor_factor):
        raise ExpspecError(f"correlation: floor_factor must be a positive number, got {floor_factor}")
    if bootstrap < 0:
        raise ExpspecError(f"correlation: bootstrap must be >= 0, got {bootstrap}")
    tokens = _check_stream(tokens, vocab_size)
    lags = _check_lags(lags, tokens.size)
    positions = pair_positions(tokens.size, int(lags.max()), max_pairs, seed)
    measured = _norms_at_positions(tokens, lags, positions, vocab_size)
    floor = _norms_at_positions(shuffled_stream(tokens, seed), lags, positions, vocab_size)
    usable = usable_lags(measured.op_norm, floor.op_norm, floor_factor)
    rows = [{"lag": int(lag), "op_norm": float(o), "frob_norm": float(f), "floor_op": float(fo),
             "floor_frob": float(ff), "usable": bool(u)}
            for lag, o, f, fo, ff, u in zip(lags, measured.op_norm, measured.frob_norm,
                                            floor.op_norm, floor.frob_norm, usable)]
    nan = float("nan")
    result = CorrelationDecay(rows, measured.n_pairs, int(vocab_size), float(floor_factor), None,
                              int(usable.sum()), nan, nan, nan, nan, nan, None, 0)
    if result.n_usable < 2:
        return result  # no decay to fit: beta stays nan and the caller reports why
    x = lags[usable]
    fit = fit_power_law(x, measured.op_norm[usable])
    fit_frob = fit_power_law(x, measured.frob_norm[usable])
    result.window = (int(x[0]), int(x[-1]))
    result.beta, result.r2, result.prefactor = fit.exponent, fit.r2, fit.prefactor
    result.beta_frob, result.r2_frob = fit_frob.exponent, fit_frob.r2
    if bootstrap:
        block_len = block_len or default_block_len(tokens.size, int(lags.max()))
        result.ci = _block_bootstrap_beta(tokens, x, int(lags.max()), vocab_size, max_pairs,
                                          bootstrap, seed, block_len)
        result.n_bootstrap = bootstrap
    return result


def _block_bootstrap_beta(tokens, window_lags, max_lag, vocab_size, max_pairs, n_resamples, seed,
                          block_len) -> tuple[float, float] | None:
    """Percentile interval of beta refitted on block-resampled streams over the same lags."""
    rng = np.random.default_rng([seed, 3])
    betas = []
    for _ in track(range(n_resamples), "block bootstrap of beta"):
        stream = block_resample(tokens, block_len, rng)
        positions = pair_positions(stream.size, max_lag, max_pairs, seed)
        norms = _norms_at_positions(stream, window_lags, positions, vocab_size).op_norm
        if np.all(norms > 0):
            betas.append(fit_power_law(window_lags, norms).exponent)
    return percentile_interval(betas)


def stream_fingerprint(tokens, tokenizer_id: str, sample: int = 65_536) -> str:
    """sha256 of the tokenizer id, the stream length and ``sample`` evenly spaced tokens.

    Statistics measured on one token stream must never be reused for another: this names
    the stream cheaply (no full pass over a billion tokens) yet changes when the data,
    its length or the tokenizer does.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ExpspecError(f"stream_fingerprint: tokens must be 1-D, got shape {tokens.shape}")
    if sample < 1:
        raise ExpspecError(f"stream_fingerprint: sample must be >= 1, got {sample}")
    picks = np.unique(np.linspace(0, max(tokens.size - 1, 0), num=min(sample, tokens.size)).astype(np.int64))
    digest = hashlib.sha256()
    digest.update(tokenizer_id.encode("utf-8") + b"\0" + str(tokens.size).encode() + b"\0")
    digest.update(tokens[picks].astype("<i8").tobytes() if tokens.size else b"")
    return digest.hexdigest()
