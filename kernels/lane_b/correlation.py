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
noise level. That level is measured on shuffled copies of the stream (i.i.d. streams
with the same unigram) at the same P.

Two rules choose the lags beta is fitted on (both are reported; ``beta_window`` picks
the one that feeds alpha):

* ``floor``: lags whose operator norm exceeds ``floor_factor`` x the shuffled stream's
  (one shuffle). Simple, but a lag 1.5x above the floor is real signal, and it is thrown
  away: on small corpora only the steep short-range lags survive.
* ``debiased``: sampling noise adds to the Frobenius norm in quadrature,
  E||C_hat||^2 = ||C||^2 + E||N||^2 (the cross term has zero mean), so
  sqrt(max(0, ||C_hat||^2 - mean ||N||^2)) estimates ||C||, with mean and spread of
  ||N||^2 from ``noise_shuffles`` shuffles. A lag is usable while its excess
  ||C_hat||^2 - mean clears ``noise_sigmas`` x the spread (pooled over lags: every lag
  of an i.i.d. stream has the same noise law) - the noise's spread, not its level.

Each rule keeps the contiguous run of lags from the first that passes until one fails,
and fits ``fit_power_law`` there. On planted power laws (tests/test_correlation.py) both
recover beta; the debiased window keeps 2-3x the lags but its extra lags sit near the
noise and weigh as much as the clean ones in the log-log fit, so its beta scatters more
(about 2x the floor rule's error where the floor rule has >= 2 lags). It is the rule that
sees a tail with another slope, which an exact power law cannot have.

beta's 95% interval is a block bootstrap over the stream (lags of one stream are not
independent points, so resampling lags would be wrong): the left positions are cut into
~64 contiguous blocks, blocks are drawn with replacement, and each block brings its own
pairs. Both windows are re-selected in every resample (the floor and the noise spread
held at the sample's values). Two corrections make the resampled norms mean what the
sample's do: a resample's debiased ||C||^2 sums products of different blocks only (a
block's noise times itself, ~||N||^2 / sqrt(blocks), would otherwise swamp the
interval), and each lag's resampled norms are recentred on the sample's value (a
resample carries the sample's noise plus its own, so it sits higher). On planted streams
the bootstrap spread then matches the spread of beta across independent streams.
A resample is cheap: per lag, the pair counts of each block are tabulated once (a sparse
codes x blocks matrix), so a resample's joint is a sparse mat-vec on a fixed sparsity
pattern, its Frobenius norm a pass over it, and its operator norm a few Lanczos steps
from the sample's top singular vector (computed only while the floor window is open).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np

from expspec.kernels.errors import ExpspecError
from expspec.kernels.fit.power_law import fit_power_law
from expspec.kernels.lane_b.correlation_bootstrap import _block_bootstrap, _bootstrap_fit, _recentred, default_block_len
from expspec.kernels.lane_b.correlation_norms import (
    LagNorms,
    _check_lags,
    _check_stream,
    _norms_at_positions,
    pair_positions,
    shuffled_stream,
)
from expspec.kernels.progress import track

BETA_WINDOWS = ("debiased", "floor")  # the lane_b.beta_window choices


@dataclass
class NoiseLevel:
    """||N||^2 of shuffled streams at the sample's P: per-lag mean and sd, pooled spread."""

    frob2_mean: np.ndarray  # per lag, mean over the shuffles of ||C_shuffled||_F^2
    frob2_sd: np.ndarray  # per lag, their standard deviation
    spread: float  # sd pooled over lags (same noise law at every lag): the debiased rule's unit
    floor: LagNorms  # the first shuffle's norms: the floor rule's floor
    n_shuffles: int
    analytic: float  # (1 - |p|^2)(1 - |q|^2) / P, the i.i.d. expectation of ||N||_F^2


@dataclass
class WindowFit:
    """beta on one window rule's lags, with its block-bootstrap interval."""

    rule: str  # floor | debiased
    norm: str  # the norm fitted: op (floor rule) | frob_debiased (debiased rule)
    usable: list  # per lag
    window: tuple[int, int] | None  # (first, last) usable lag
    n_usable: int
    beta: float  # nan when fewer than 2 usable lags
    r2: float
    prefactor: float
    beta_frob: float  # the raw Frobenius norm fitted on the same window (a diagnostic)
    r2_frob: float
    ci: tuple[float, float] | None = None  # block-bootstrap 95% interval of beta
    n_bootstrap: int = 0  # resamples asked for
    n_bootstrap_fitted: int = 0  # resamples whose re-selected window had >= 2 lags
    bootstrap_windows: dict = field(default_factory=dict)  # "first-last": count over resamples
    samples: list = field(default_factory=list)  # the resamples' betas (alpha's interval pairs them)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CorrelationDecay:
    rows: list[dict]  # per lag: norms, floor, noise, debiased norm, usable under each rule
    n_pairs: int  # P
    vocab_size: int  # V
    floor_factor: float
    noise_shuffles: int
    noise_sigmas: float
    noise_spread: float  # pooled sd of ||N||_F^2 over the shuffles
    noise_frob2_analytic: float
    beta_window: str  # the rule whose beta is ``beta`` (feeds alpha)
    # the chosen rule's fit, flat (what stats.json's beta/beta_ci/beta_r2 repeat)
    window: tuple[int, int] | None
    n_usable: int
    beta: float
    beta_frob: float
    r2: float
    r2_frob: float
    prefactor: float
    ci: tuple[float, float] | None
    n_bootstrap: int
    floor: dict  # WindowFit of each rule
    debiased: dict
    bootstrap: dict  # how the interval was made

    def to_dict(self) -> dict:
        return asdict(self)


def _analytic_noise(p: np.ndarray, q: np.ndarray, n_pairs: float) -> float:
    """E||C_hat||_F^2 of P i.i.d. pairs with marginals p, q: (1 - |p|^2)(1 - |q|^2) / P."""
    return float((1.0 - p @ p) * (1.0 - q @ q) / n_pairs)


def noise_level(tokens: np.ndarray, lags: np.ndarray, positions: np.ndarray, vocab_size: int,
                n_shuffles: int, seed: int = 0) -> NoiseLevel:
    """||N||_F^2 of ``n_shuffles`` shuffles at the sample's pairs; the first also gives the floor."""
    if n_shuffles < 2:
        raise ExpspecError(f"correlation: noise_shuffles must be >= 2 (a spread needs two), got {n_shuffles}")
    floor = _norms_at_positions(shuffled_stream(tokens, seed), lags, positions, vocab_size)
    frob2 = [floor.frob_norm ** 2]
    for index in track(range(1, n_shuffles), "noise shuffles"):
        shuffled = shuffled_stream(tokens, seed, index)
        frob2.append(_norms_at_positions(shuffled, lags, positions, vocab_size, op=False).frob_norm ** 2)
    frob2 = np.array(frob2)
    sd = frob2.std(axis=0, ddof=1)
    unigram = np.bincount(tokens[positions], minlength=vocab_size) / positions.size
    return NoiseLevel(frob2.mean(axis=0), sd, float(np.sqrt(np.mean(sd ** 2))), floor, int(n_shuffles),
                      _analytic_noise(unigram, unigram, positions.size))


def debiased_norms(frob_norm, noise_frob2) -> np.ndarray:
    """sqrt(max(0, ||C_hat||_F^2 - E||N||_F^2)): the Frobenius norm with the noise removed."""
    frob_norm = np.asarray(frob_norm, dtype=float)
    return np.sqrt(np.maximum(frob_norm ** 2 - np.asarray(noise_frob2, dtype=float), 0.0))


def _contiguous_run(above: np.ndarray) -> np.ndarray:
    """The run of True from the first True until the first False after it."""
    above = np.asarray(above, dtype=bool)
    usable = np.zeros(above.size, dtype=bool)
    if above.any():
        first = int(np.argmax(above))
        last = first
        while last + 1 < above.size and above[last + 1]:
            last += 1
        usable[first:last + 1] = True
    return usable


def usable_lags(norms: np.ndarray, floor: np.ndarray, floor_factor: float) -> np.ndarray:
    """The floor rule: contiguous lags from the first whose norm exceeds floor_factor x floor."""
    return _contiguous_run(np.asarray(norms) > floor_factor * np.asarray(floor))


def debiased_usable_lags(frob_norm, noise_frob2, spread: float, sigmas: float) -> np.ndarray:
    """The debiased rule: contiguous lags whose ||C_hat||_F^2 - E||N||^2 exceeds sigmas x spread."""
    excess = np.asarray(frob_norm, dtype=float) ** 2 - np.asarray(noise_frob2, dtype=float)
    return _contiguous_run(excess > sigmas * spread)


def _window_fit(rule: str, norm: str, lags: np.ndarray, fitted: np.ndarray, raw_frob: np.ndarray,
                usable: np.ndarray) -> WindowFit:
    nan = float("nan")
    result = WindowFit(rule, norm, usable.tolist(), None, int(usable.sum()), nan, nan, nan, nan, nan)
    if result.n_usable < 2:
        return result  # no decay to fit: beta stays nan and the caller reports why
    x = lags[usable]
    fit, fit_frob = fit_power_law(x, fitted[usable]), fit_power_law(x, raw_frob[usable])
    result.window = (int(x[0]), int(x[-1]))
    result.beta, result.r2, result.prefactor = fit.exponent, fit.r2, fit.prefactor
    result.beta_frob, result.r2_frob = fit_frob.exponent, fit_frob.r2
    return result


def correlation_decay(tokens, lags, vocab_size: int, floor_factor: float = 3.0,
                      max_pairs: int | None = None, bootstrap: int = 0, seed: int = 0,
                      block_len: int | None = None, beta_window: str = "floor",
                      noise_shuffles: int = 8, noise_sigmas: float = 3.0, workers: int = 1) -> CorrelationDecay:
    """Norms per lag, their noise, both usable windows, beta on each (with its CI); ``beta_window`` chooses.

    ``workers``: processes for the block bootstrap (the same numbers for any count)."""
    if floor_factor <= 0 or not np.isfinite(floor_factor):
        raise ExpspecError(f"correlation: floor_factor must be a positive number, got {floor_factor}")
    if noise_sigmas <= 0 or not np.isfinite(noise_sigmas):
        raise ExpspecError(f"correlation: noise_sigmas must be a positive number, got {noise_sigmas}")
    if bootstrap < 0:
        raise ExpspecError(f"correlation: bootstrap must be >= 0, got {bootstrap}")
    if workers < 1:
        raise ExpspecError(f"correlation: bootstrap workers must be >= 1, got {workers}")
    if beta_window not in BETA_WINDOWS:
        raise ExpspecError(f"correlation: beta_window must be one of {', '.join(BETA_WINDOWS)}, got {beta_window!r}")
    tokens = _check_stream(tokens, vocab_size)
    lags = _check_lags(lags, tokens.size)
    positions = pair_positions(tokens.size, int(lags.max()), max_pairs, seed)
    measured = _norms_at_positions(tokens, lags, positions, vocab_size, keep_vectors=bootstrap > 0)
    noise = noise_level(tokens, lags, positions, vocab_size, noise_shuffles, seed)
    debiased = debiased_norms(measured.frob_norm, noise.frob2_mean)
    usable_floor = usable_lags(measured.op_norm, noise.floor.op_norm, floor_factor)
    usable_debiased = debiased_usable_lags(measured.frob_norm, noise.frob2_mean, noise.spread, noise_sigmas)
    fits = {"floor": _window_fit("floor", "op", lags, measured.op_norm, measured.frob_norm, usable_floor),
            "debiased": _window_fit("debiased", "frob_debiased", lags, debiased, measured.frob_norm,
                                    usable_debiased)}
    usable_chosen = usable_floor if beta_window == "floor" else usable_debiased
    rows = [{"lag": int(lags[k]), "op_norm": float(measured.op_norm[k]), "frob_norm": float(measured.frob_norm[k]),
             "floor_op": float(noise.floor.op_norm[k]), "floor_frob": float(noise.floor.frob_norm[k]),
             "noise_frob2": float(noise.frob2_mean[k]), "noise_frob2_sd": float(noise.frob2_sd[k]),
             "frob_debiased": float(debiased[k]), "usable": bool(usable_chosen[k]),
             "usable_floor": bool(usable_floor[k]), "usable_debiased": bool(usable_debiased[k])}
            for k in range(lags.size)]
    how = {"resamples": int(bootstrap)}
    if bootstrap:
        block_len = block_len or default_block_len(tokens.size, int(lags.max()))
        op, cross = _block_bootstrap(tokens, lags, positions, vocab_size, measured, noise.floor.op_norm,
                                     floor_factor, bootstrap, block_len, seed, workers)
        op = _recentred(op, measured.op_norm, log=True)
        excess = _recentred(cross, measured.frob_norm ** 2 - noise.frob2_mean, log=False)
        _bootstrap_fit(fits["floor"], lags, op, np.stack(
            [usable_lags(op[:, r], noise.floor.op_norm, floor_factor) for r in range(bootstrap)], axis=1))
        _bootstrap_fit(fits["debiased"], lags, np.sqrt(np.maximum(excess, 0.0)), np.stack(
            [_contiguous_run(excess[:, r] > noise_sigmas * noise.spread) for r in range(bootstrap)], axis=1))
        how.update(method="block bootstrap: left positions cut into blocks, blocks drawn with replacement, "
                          "each with its own pairs",
                   block_len=int(block_len), n_blocks=int(np.unique(positions // block_len).size),
                   window="re-selected in every resample (floor and noise spread held at the sample's)",
                   debiased_norm="cross-block ||C||^2 (no block's noise times itself)",
                   centre="each lag's resampled norms recentred (median) on the sample's value")
    chosen = fits[beta_window]
    return CorrelationDecay(
        rows, measured.n_pairs, int(vocab_size), float(floor_factor), noise.n_shuffles, float(noise_sigmas),
        noise.spread, noise.analytic, beta_window, chosen.window, chosen.n_usable, chosen.beta,
        chosen.beta_frob, chosen.r2, chosen.r2_frob, chosen.prefactor, chosen.ci, chosen.n_bootstrap,
        fits["floor"].to_dict(), fits["debiased"].to_dict(), how)


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
