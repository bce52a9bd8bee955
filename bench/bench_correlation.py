"""Benchmark: sparse correlation norms (kernels/lane_b/correlation_norms.py) against a dense V x V build.

Why: the dense C(n) is V^2 floats (19 GB at V = 49152) and its 2-norm is an O(V^3) SVD;
the kernel touches only the <= P observed pairs. This script checks the two agree
(rel 1e-6) where dense can run, prints the speed-up (target >= 50x at V = 8192,
P = 2^20), then times the kernel alone at a real tokenizer's V = 49152 and P = 2^22
(target <= 2 s per lag on 2 cores, memory O(P)).

    python bench/bench_correlation.py            # full sizes (dense full SVD: minutes)
    python bench/bench_correlation.py --quick    # small sizes, seconds
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy.sparse.linalg import svds

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from synthetic_text import text_like_stream  # noqa: E402 (bench/ is the script's folder)
from expspec.kernels.lane_b.correlation_norms import SVD_TOLERANCE, correlation_norms  # noqa: E402



def dense_norms(tokens, lag: int, vocab_size: int, n_pairs: int, full_svd: bool) -> tuple[float, float]:
    """Materialise C(n) (V x V); Frobenius, and the top singular value by full SVD or ARPACK."""
    left, right = tokens[:n_pairs], tokens[lag:lag + n_pairs]
    joint = np.bincount(left * vocab_size + right, minlength=vocab_size**2).reshape(vocab_size, vocab_size)
    joint = joint / n_pairs
    centred = joint - np.outer(joint.sum(1), joint.sum(0))
    frob = float(np.linalg.norm(centred))
    if full_svd:
        op = float(np.linalg.svd(centred, compute_uv=False)[0])
    else:
        start = np.random.default_rng(0).standard_normal(vocab_size)
        op = float(svds(centred, k=1, tol=SVD_TOLERANCE, v0=start, return_singular_vectors=False)[0])
    return op, frob


def compare_with_dense(vocab_size: int, n_pairs: int, lags: list[int], full_svd_lags: int) -> None:
    tokens = text_like_stream(n_pairs + max(lags), vocab_size)
    print(f"\n== sparse vs dense: V = {vocab_size}, P = 2^{int(np.log2(n_pairs))} ==")
    start = time.perf_counter()
    sparse = correlation_norms(tokens, lags, vocab_size)
    sparse_per_lag = (time.perf_counter() - start) / len(lags)
    print(f"sparse kernel: {sparse_per_lag:.3f} s/lag")
    for k, lag in enumerate(lags):
        full = k < full_svd_lags
        start = time.perf_counter()
        op, frob = dense_norms(tokens, lag, vocab_size, sparse.n_pairs, full_svd=full)
        dense_seconds = time.perf_counter() - start
        rel_op = abs(sparse.op_norm[k] / op - 1)
        rel_frob = abs(sparse.frob_norm[k] / frob - 1)
        assert rel_op < 1e-6 and rel_frob < 1e-6, (lag, rel_op, rel_frob)
        print(f"lag {lag:3d}: op {op:.6e} (rel diff {rel_op:.1e}), frob {frob:.6e} (rel diff "
              f"{rel_frob:.1e}); dense {'full SVD' if full else 'ARPACK  '} {dense_seconds:7.2f} s "
              f"-> speed-up {dense_seconds / sparse_per_lag:7.1f}x")


def time_large(vocab_size: int, n_pairs: int, lags: list[int]) -> None:
    tokens = text_like_stream(n_pairs + max(lags), vocab_size)
    dense_gb = vocab_size**2 * 8 / 1e9
    print(f"\n== sparse only: V = {vocab_size}, P = 2^{int(np.log2(n_pairs))} ==")
    print(f"(dense cannot run here: one V x V float64 matrix is {dense_gb:.1f} GB, C needs two, "
          f"and its full SVD is O(V^3))")
    stream_mb = tokens.nbytes / 1e6
    for lag in lags:
        start = time.perf_counter()
        norms = correlation_norms(tokens, [lag], vocab_size)
        seconds = time.perf_counter() - start
        tracemalloc.start()  # a second, traced run: tracing slows the first one down
        correlation_norms(tokens, [lag], vocab_size)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"lag {lag:3d}: {seconds:.2f} s  op {norms.op_norm[0]:.4e}  frob {norms.frob_norm[0]:.4e}  "
              f"peak {peak / 1e6:.0f} MB traced ({peak / tokens.nbytes:.1f}x the {stream_mb:.0f} MB stream)")
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    print(f"process max RSS {max_rss_mb:.0f} MB (whole run, dense section included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    args = parser.parse_args()
    if args.quick:
        compare_with_dense(2048, 2**18, [1, 8, 64], full_svd_lags=1)
        time_large(49152, 2**20, [1, 64])
    else:
        compare_with_dense(8192, 2**20, [1, 8, 64], full_svd_lags=1)
        time_large(49152, 2**22, [1, 8, 64, 192])


if __name__ == "__main__":
    main()
