"""The block bootstrap of beta: resampled norms per lag, cheap enough for 200 resamples.

Lags of one stream are not independent points, so beta's interval resamples the
stream, not the lags: the left positions are cut into ~64 contiguous blocks, blocks are
drawn with replacement, and each block brings its own pairs. Per lag, the pair counts of
each block are tabulated once (a sparse codes x blocks matrix), so a resample's joint is
a sparse mat-vec on a fixed sparsity pattern, its Frobenius norm a pass over it, and its
operator norm a few Lanczos steps from the sample's top singular vector. Both
windows are re-selected in every resample (see correlation.py for the corrections that
make resampled norms mean what the sample's do).
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from expspec.kernels.errors import ExpspecError
from expspec.kernels.heap import reuse_freed_memory
from expspec.kernels.fit.power_law import fit_power_law, percentile_interval
from expspec.kernels.lane_b.correlation_norms import (
    ZERO_NORM,
    LagNorms,
    _frobenius_sq,
    one_blas_thread,
    operator_norm,
    warm_operator_norm,
)
from expspec.kernels.processes import die_with_parent
from expspec.kernels.progress import track

if TYPE_CHECKING:
    from expspec.kernels.lane_b.correlation import WindowFit

def default_block_len(n_tokens: int, max_lag: int) -> int:
    """~64 blocks per stream, each long against the largest lag (pairs of one block stay
    nearly independent of the next block's, which the resampling assumes)."""
    return int(min(n_tokens, max(8 * max_lag, n_tokens // 64)))


def _per_block_counts(values: np.ndarray, block: np.ndarray, n_values: int, n_blocks: int) -> sp.csr_matrix:
    """counts[v, b] = how often ``values`` is v in block b (a sparse n_values x n_blocks table)."""
    codes, counts = np.unique(values * n_blocks + block, return_counts=True)
    rows, cols = np.divmod(codes, n_blocks)
    return sp.csr_matrix((counts.astype(float), (rows, cols)), shape=(n_values, n_blocks))


class BlockPairCounts:
    """One lag's pair counts per block, so a resample's joint is a mat-vec, not a sort.

    Resampling blocks of left positions with multiplicities ``w`` gives the joint
    J_w = (counts @ w) / P_w on the sample's sparsity pattern (a resample holds only pairs
    the sample holds), and the marginals likewise: identical to building the resampled
    stream's joint from scratch, without ever forming it. ``w`` = ones is the sample.
    """

    def __init__(self, tokens: np.ndarray, positions: np.ndarray, lag: int, vocab_size: int,
                 block: np.ndarray, n_blocks: int, left_counts: sp.csr_matrix):
        left, right = tokens[positions], tokens[positions + lag]
        codes, pair_index = np.unique(left * vocab_size + right, return_inverse=True)
        self.counts = _per_block_counts(pair_index.ravel(), block, codes.size, n_blocks)
        self.counts_t = self.counts.T.tocsr()
        self.right_counts = _per_block_counts(right, block, vocab_size, n_blocks)
        self.left_counts = left_counts
        rows, cols = np.divmod(codes, vocab_size)
        self.rows, self.cols = rows, cols.astype(np.int32 if vocab_size < 2**31 else np.int64)
        self.indptr = np.zeros(vocab_size + 1, dtype=self.cols.dtype)
        np.cumsum(np.bincount(rows, minlength=vocab_size), out=self.indptr[1:])
        self.block_pairs = np.bincount(block, minlength=n_blocks).astype(float)
        # ||J_a||^2 of each block's own joint (J_a = its counts / its pairs)
        self.block_joint_sq = np.asarray(self.counts.multiply(self.counts).sum(axis=0)).ravel() / self.block_pairs ** 2
        self.vocab_size = vocab_size

    def resample(self, weights: np.ndarray):
        """(joint data on the fixed pattern, p, q) of the resample with block multiplicities ``weights``."""
        n_pairs = float(self.block_pairs @ weights)
        return (self.counts @ weights / n_pairs, self.left_counts @ weights / n_pairs,
                self.right_counts @ weights / n_pairs)

    def joint(self, data: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((data, self.cols, self.indptr), shape=(self.vocab_size, self.vocab_size))

    def cross_block_frob_sq(self, weights: np.ndarray, frob_sq: float, p: np.ndarray, q: np.ndarray,
                            outer_on_support: np.ndarray) -> float:
        """||C||^2 from products of different blocks only: no noise-times-itself term.

        With C_a = J_a - p q^T per block and lam_a = w_a P_a / P_w, the resample's
        C_w = sum_a lam_a C_a, so ||C_w||^2 = sum_a lam_a^2 ||C_a||^2 + sum_{a != b} lam_a lam_b <C_a, C_b>.
        The first sum is where each block's noise meets itself (a drawn-twice block's two
        copies too); the second has zero-mean noise. Returns the second, renormalised.
        Why: a resample's squared norm otherwise carries <N_sample, N_resample>, whose
        spread is ~ ||N||^2 / sqrt(blocks) - seven times the real sampling spread of
        ||C_hat||^2 on a planted stream - and swamps the interval.
        """
        lam = weights * self.block_pairs / float(self.block_pairs @ weights)
        p_j_q = (self.counts_t @ outer_on_support) / self.block_pairs
        block_sq = self.block_joint_sq - 2.0 * p_j_q + (p @ p) * (q @ q)
        share = float(lam @ lam)
        return (frob_sq - float(lam ** 2 @ block_sq)) / (1.0 - share) if share < 1.0 else float("nan")


def _block_bootstrap(tokens: np.ndarray, lags: np.ndarray, positions: np.ndarray, vocab_size: int,
                     measured: LagNorms, floor_op: np.ndarray, floor_factor: float, n_resamples: int,
                     block_len: int, seed: int, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Resampled (op norms, cross-block ||C||^2), each [lags x resamples].

    Lag-major: one lag's block tables live at a time. A resample's operator norm is only
    computed while its floor window is still open (lag n matters only if the lags before
    it passed), which skips most of the expensive norms at long lags; the rest are nan.

    ``workers`` > 1 splits the resamples into that many contiguous shares, one per process
    (this one and workers - 1 spawned ones, each building its own block tables): every
    resample is computed from the same weights and start vectors either way, so the result
    is bit-identical to one process. The per-resample work is numpy passes that hold the
    GIL, so threads would not help; processes do.
    """
    block = np.unique(positions // block_len, return_inverse=True)[1].ravel()
    n_blocks = int(block.max()) + 1
    if n_blocks < 2:
        raise ExpspecError(f"correlation: the bootstrap needs >= 2 blocks, got 1 (block_len {block_len} "
                           f"for {positions.size} pairs)")
    rng = np.random.default_rng([seed, 3])
    draws = rng.integers(0, n_blocks, size=(n_resamples, n_blocks))
    weights = np.stack([np.bincount(d, minlength=n_blocks) for d in draws]).astype(float)
    shares = [w for w in np.array_split(weights, min(workers, n_resamples)) if w.shape[0]]
    job = (tokens, lags, positions, vocab_size, measured.op_vectors, floor_op, floor_factor, block, n_blocks)
    if len(shares) == 1:
        return _bootstrap_share(*job, shares[0], True)
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools mid-use
    mine = None
    try:
        with ProcessPoolExecutor(len(shares) - 1, mp_context=context, initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            others = [pool.submit(_bootstrap_share, *job, share, False) for share in shares[1:]]
            mine = _bootstrap_share(*job, shares[0], True)
            rest = [f.result() for f in others]
    except BrokenProcessPool:  # a worker could not start (e.g. a __main__ read from stdin) or was killed
        warnings.warn("correlation: a bootstrap worker process died; its resamples are computed here "
                      "instead (same numbers, one process's time)", RuntimeWarning, stacklevel=2)
        mine = mine if mine is not None else _bootstrap_share(*job, shares[0], True)
        rest = [_bootstrap_share(*job, share, False) for share in shares[1:]]
    results = [mine, *rest]
    return (np.concatenate([op for op, _ in results], axis=1),
            np.concatenate([cross for _, cross in results], axis=1))


def _bootstrap_share(tokens: np.ndarray, lags: np.ndarray, positions: np.ndarray, vocab_size: int,
                     op_vectors: list | None, floor_op: np.ndarray, floor_factor: float, block: np.ndarray,
                     n_blocks: int, weights: np.ndarray, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """(op norms, cross-block ||C||^2) [lags x len(weights)] of the resamples with these block weights."""
    n_resamples = weights.shape[0]
    left_counts = _per_block_counts(tokens[positions], block, vocab_size, n_blocks)
    op = np.full((lags.size, n_resamples), np.nan)
    cross = np.empty((lags.size, n_resamples))
    state = np.zeros(n_resamples, dtype=np.int8)  # floor window: 0 not started, 1 open, 2 closed
    steps = track(range(lags.size), "block bootstrap of beta (lags)") if progress else range(lags.size)
    with one_blas_thread(), reuse_freed_memory():  # each resample's arrays reuse the last one's pages
        for k in steps:
            table = BlockPairCounts(tokens, positions, int(lags[k]), vocab_size, block, n_blocks, left_counts)
            start = op_vectors[k] if op_vectors else None
            for r in range(n_resamples):
                data, p, q = table.resample(weights[r])
                outer = p[table.rows] * q[table.cols]
                frob_sq = _frobenius_sq(data, table.rows, table.cols, p, q, outer)
                cross[k, r] = table.cross_block_frob_sq(weights[r], frob_sq, p, q, outer)
                if state[r] == 2:
                    continue
                if frob_sq <= ZERO_NORM ** 2:
                    op[k, r] = np.sqrt(frob_sq)
                elif start is None:
                    op[k, r] = operator_norm(table.joint(data), p, q)
                else:
                    op[k, r], _ = warm_operator_norm(table.joint(data), p, q, start)
                above = op[k, r] > floor_factor * floor_op[k]
                if state[r] == 0 and above:
                    state[r] = 1
                elif state[r] == 1 and not above:
                    state[r] = 2
    return op, cross


def _recentred(resampled: np.ndarray, sample: np.ndarray, log: bool) -> np.ndarray:
    """Per lag, move the resamples' centre (median) onto the sample's value, keeping their spread.

    A resample draws its pairs again from the sample, so it carries the sample's noise plus
    its own: its norms sit higher than the sample's, as the sample's sit above the truth.
    The bootstrap estimates the spread of the estimate around what it estimates; recentring
    each lag's resampled norms on the sample's value keeps that spread without letting the
    resamples' extra noise bias pull the interval off the estimate. ``log``: recentre by
    ratio (op norms), else by difference (squared-norm excesses, which may be negative).
    Lags computed in fewer than half the resamples (beyond most floor windows) are left as is.
    """
    out = resampled.copy()
    for k in range(resampled.shape[0]):
        row = resampled[k]
        seen = row[np.isfinite(row)]
        if seen.size < max(2, row.size // 2):
            continue
        if log:
            centre = np.median(seen)
            if centre > 0 and sample[k] > 0:
                out[k] = row * (sample[k] / centre)
        else:
            out[k] = row - np.median(seen) + sample[k]
    return out


def _bootstrap_fit(fit: WindowFit, lags: np.ndarray, norms: np.ndarray, usable: np.ndarray) -> None:
    """Refit beta on each resample's own window; fills the WindowFit's interval fields."""
    betas, windows = [], {}
    for r in range(norms.shape[1]):
        keep = usable[:, r]
        if keep.sum() < 2:
            windows["none"] = windows.get("none", 0) + 1
            continue
        x = lags[keep]
        name = f"{x[0]}-{x[-1]}"
        windows[name] = windows.get(name, 0) + 1
        betas.append(fit_power_law(x, norms[keep, r]).exponent)
    fit.n_bootstrap, fit.n_bootstrap_fitted = int(norms.shape[1]), len(betas)
    fit.ci = percentile_interval(betas)
    fit.bootstrap_windows = dict(sorted(windows.items(), key=lambda item: -item[1]))
    fit.samples = [float(b) for b in betas]
