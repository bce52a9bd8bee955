"""Benchmark: sparse correlation norms (kernels/lane_b/correlation_norms.py) against a dense V x V build.

Why: the dense C(n) is V^2 floats (19 GB at V = 49152) and its 2-norm is an O(V^3) SVD;
the kernel touches only the <= P observed pairs. Measured side by side, alternating,
median of ``--repeats``:

* sparse_vs_dense_arpack: our norms of one lag against the fair dense peer, the V x V
  matrix with ARPACK for the top singular value only (not a full SVD), same P pairs,
  norms equal to rel 1e-6 (checked). Target >= 50x at V = 8192, P = 2^20.
* sparse_vs_dense_full_svd: against the paper's way, a full dense SVD per lag (one run:
  minutes at V = 8192).
* seconds_per_lag at a real tokenizer's V = 49152, P = 2^22 (target <= 2 s on 2 cores) and
  the traced peak memory as a multiple of the stream (O(P): a few x, never V^2).
* hero_stats_projection: the whole hero-size statistics step of beta (P = 2^24 pairs, the
  15 default lags, 8 noise shuffles, 200 block-bootstrap resamples) projected from two
  measured slices (P/16 and P/8; 0, 4 and 12 resamples, which separates the bootstrap's
  per-lag set-up from its cost per resample), each part fitted linear in P. Target <= 15
  min on 2 cores. (gamma's bootstrap only resamples per-window losses already computed:
  seconds; its model evaluation is the entropy model's forward passes, timed by the
  trainer benchmark's tokens/s.) --hero-direct also runs that step once at the hero size
  (hero_stats_measured; a full run only, ignored with --quick), the projection's check.

    python bench/bench_correlation.py            # full sizes (the dense full SVD takes minutes)
    python bench/bench_correlation.py --quick    # small sizes, seconds
    python bench/bench_correlation.py --hero-direct   # + the hero-size step run once (minutes)
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy.sparse.linalg import svds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import alternating, arguments, figure, ratio, write_record  # noqa: E402
from synthetic_text import text_like_stream  # noqa: E402 (bench/ is the script's folder)
from expspec.kernels.config import defaults  # noqa: E402
from expspec.kernels.lane_b.correlation import correlation_decay  # noqa: E402
from expspec.kernels.lane_b.stats import bootstrap_workers  # noqa: E402
from expspec.kernels.lane_b.correlation_norms import SVD_TOLERANCE, correlation_norms  # noqa: E402


SETTLE_S = 0.5  # the dense peer's BLAS threads spin after it; measured: sparse 21 ms alone, 41 ms right after


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


def compare_with_dense(vocab_size: int, n_pairs: int, lags: list[int], repeats: int) -> dict:
    tokens = text_like_stream(n_pairs + max(lags), vocab_size)
    print(f"\n== sparse vs dense: V = {vocab_size}, P = 2^{int(np.log2(n_pairs))}, lags {lags} ==", flush=True)
    out, sparse_op = {}, {}
    for lag in lags:  # the same P pairs as the dense build: the first n_pairs left positions
        sparse = correlation_norms(tokens[:n_pairs + lag], [lag], vocab_size)
        sparse_op[lag] = sparse.op_norm[0]
        op, frob = dense_norms(tokens, lag, vocab_size, sparse.n_pairs, full_svd=False)
        rel = max(abs(sparse.op_norm[0] / op - 1), abs(sparse.frob_norm[0] / frob - 1))
        assert rel < 1e-6, f"lag {lag}: sparse and dense norms differ by {rel:.1e}"
        rates = alternating({
            "sparse": lambda _r, lag=lag: correlation_norms(tokens[:n_pairs + lag], [lag], vocab_size) and None,
            "dense_arpack": lambda _r, lag=lag: dense_norms(tokens, lag, vocab_size, n_pairs, False) and None,
        }, repeats, settle_s=SETTLE_S)
        out[f"lag_{lag}"] = ratio(f"sparse_vs_dense_arpack_lag{lag}", 1 / rates["sparse"], 1 / rates["dense_arpack"],
                                  "s", target_min=50.0, reference_name="dense ARPACK", higher_is_better=False)
        out[f"lag_{lag}"]["max_rel_norm_diff"] = rel
    ours = statistics.median(v["ours"] for v in out.values())
    dense = statistics.median(v["reference"] for v in out.values())
    out["sparse_vs_dense_arpack"] = ratio("sparse_vs_dense_arpack", ours, dense, "s/lag", target_min=50.0,
                                          reference_name="dense ARPACK", higher_is_better=False)
    start = time.perf_counter()
    op, _ = dense_norms(tokens, lags[0], vocab_size, n_pairs, full_svd=True)
    full = time.perf_counter() - start
    assert abs(sparse_op[lags[0]] / op - 1) < 1e-6, f"lag {lags[0]}: sparse and full-SVD norms differ"
    out["sparse_vs_dense_full_svd"] = ratio("sparse_vs_dense_full_svd", ours, full, "s/lag",
                                            reference_name="dense full SVD (1 run)", higher_is_better=False)
    return out


def time_large(vocab_size: int, n_pairs: int, lags: list[int]) -> dict:
    tokens = text_like_stream(n_pairs + max(lags), vocab_size)
    print(f"\n== sparse only: V = {vocab_size}, P = 2^{int(np.log2(n_pairs))} (dense would need "
          f"{2 * vocab_size**2 * 8 / 1e9:.0f} GB and an O(V^3) SVD) ==", flush=True)
    seconds, peaks = [], []
    for lag in lags:
        start = time.perf_counter()
        correlation_norms(tokens, [lag], vocab_size)
        seconds.append(time.perf_counter() - start)
        tracemalloc.start()  # a second, traced run: tracing slows the first one down
        correlation_norms(tokens, [lag], vocab_size)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    per_lag = figure(f"seconds_per_lag_V{vocab_size}_P2^{int(np.log2(n_pairs))}", statistics.median(seconds), "s",
                     target_max=2.0, note=f"lags {lags}: " + ", ".join(f"{s:.2f}" for s in seconds))
    memory = figure("peak_memory_over_stream", max(peaks) / tokens.nbytes, "x",
                    note=f"{max(peaks) / 1e6:.0f} MB traced for a {tokens.nbytes / 1e6:.0f} MB stream")
    return {"seconds_per_lag": per_lag, "peak_memory_over_stream": memory}


def project_hero_stats(vocab_size: int, hero_pairs: int, slices: list[int], resamples: tuple[int, int],
                       hero_resamples: int, lags: list[int], noise_shuffles: int, workers: int) -> dict:
    """Time beta's whole statistics step at two slices of P; project to the hero size.

    At each slice: norms + noise floor (no bootstrap), then the bootstrap at two resample
    counts, which separates its per-lag set-up (block tables) from the cost per resample.
    Each part is fitted linear in P; the projection is set-up + norms + hero_resamples x
    the per-resample cost, all at the hero P. The bootstrap runs in ``workers`` processes, as
    ``corpus_stats`` runs it (its per-resample cost is then the processes' share; starting
    them is set-up).
    """
    print(f"\n== hero statistics step: V = {vocab_size}, {len(lags)} lags, {noise_shuffles} noise shuffles, "
          f"slices P = {', '.join(f'2^{int(np.log2(p))}' for p in slices)}, {resamples} resamples, "
          f"{workers} bootstrap processes ==", flush=True)
    plain, setup, per = [], [], []
    for n_pairs in slices:
        tokens = text_like_stream(n_pairs + max(lags), vocab_size, seed=1)
        times = []
        for r in (0, *resamples):
            start = time.perf_counter()
            correlation_decay(tokens, lags, vocab_size, bootstrap=r, noise_shuffles=noise_shuffles, workers=workers)
            times.append(time.perf_counter() - start)
        plain.append(times[0])
        per.append(max(times[2] - times[1], 0.0) / (resamples[1] - resamples[0]))
        setup.append(max(times[1] - times[0] - resamples[0] * per[-1], 0.0))
        print(f"  P = 2^{int(np.log2(n_pairs))}: norms + noise {plain[-1]:.1f} s, bootstrap set-up {setup[-1]:.1f} s, "
              f"{per[-1]:.2f} s per resample", flush=True)

    def at_hero(values):
        # no part costs less at a larger P: a negative fitted slope (two noisy slices) is
        # floored at the largest slice's cost instead of extrapolated down
        slope, intercept = np.polyfit(slices, values, 1)
        return max(float(slope * hero_pairs + intercept) if slope >= 0 else float(values[-1]), 0.0)

    projected = at_hero(plain) + at_hero(setup) + hero_resamples * at_hero(per)
    return {"hero_stats_projection": figure(
        f"hero_stats_projection_P2^{int(np.log2(hero_pairs))}_{hero_resamples}_resamples", projected / 60, "min",
        target_max=15.0, note=f"beta: norms, noise floor and block bootstrap ({workers} processes), "
                              "each part linear in P"),
        "slices": {"pairs": slices, "norms_and_noise_s": plain, "bootstrap_setup_s": setup,
                   "seconds_per_resample": per, "bootstrap_workers": workers}}


def time_hero_stats(vocab_size: int, hero_pairs: int, hero_resamples: int, lags: list[int], noise_shuffles: int,
                    workers: int) -> dict:
    """The whole hero-size statistics step of beta, run once: the projection's check."""
    print(f"\n== hero statistics step, measured: V = {vocab_size}, P = 2^{int(np.log2(hero_pairs))}, {len(lags)} "
          f"lags, {noise_shuffles} noise shuffles, {hero_resamples} resamples, {workers} bootstrap processes ==",
          flush=True)
    tokens = text_like_stream(hero_pairs + max(lags), vocab_size, seed=1)
    start = time.perf_counter()
    correlation_decay(tokens, lags, vocab_size, bootstrap=hero_resamples, noise_shuffles=noise_shuffles,
                      workers=workers)
    return {"hero_stats_measured": figure(
        f"hero_stats_measured_P2^{int(np.log2(hero_pairs))}_{hero_resamples}_resamples",
        (time.perf_counter() - start) / 60, "min", target_max=15.0, note="beta, one run at the hero size")}


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--hero-direct", action="store_true",
                        help="also run the whole hero-size statistics step once (minutes) beside its projection")
    args = parser.parse_args()
    lane_b = defaults()["lane_b"]
    workers = bootstrap_workers(lane_b["bootstrap"])  # as corpus_stats: its thread count, capped by resamples
    if args.quick:
        args.repeats = 2
        figures = compare_with_dense(2048, 2**18, [1, 64], args.repeats)
        figures.update(time_large(49152, 2**20, [1, 64]))
        figures.update(project_hero_stats(49152, 2**24, [2**15, 2**16], (2, 4), 200, lane_b["lags"][:6],
                                          lane_b["noise_shuffles"], workers))
    else:
        figures = compare_with_dense(8192, 2**20, [1, 8, 64], args.repeats)
        figures.update(time_large(49152, 2**22, [1, 8, 64, 192]))
        figures.update(project_hero_stats(49152, 2**24, [2**20, 2**21], (4, 12), lane_b["bootstrap"],
                                          lane_b["lags"], lane_b["noise_shuffles"], workers))
        if args.hero_direct:
            figures.update(time_hero_stats(49152, 2**24, lane_b["bootstrap"], lane_b["lags"], lane_b["noise_shuffles"],
                                           workers))
    write_record(args, "correlation", figures)


if __name__ == "__main__":
    main()
