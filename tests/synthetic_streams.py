"""Token streams with known statistics, for testing the Lane B kernels against truth.

* ``iid_stream``: no correlation at any lag; every norm should sit at the noise floor
  and every conditional entropy should equal the unigram entropy.
* ``planted_power_law_stream``: a stream whose correlation matrix decays as an exact,
  known power law, ||C(n)|| = amplitude * n^-beta / vocab_size (operator and Frobenius).

How the planted stream works: a stationary Gaussian process X_t has correlation
r(n) = sin(pi/2 * amplitude * n^-beta) (generated exactly by circulant embedding). Its
sign s_t = [X_t > 0] then has, by the arcsine law,
    Cov(s_t, s_{t+n}) = arcsin(r(n)) / (2 pi) = amplitude * n^-beta / 4.
Each token is drawn uniformly from the first half of the vocabulary when s_t = 0 and
from the second half when s_t = 1, so C(n) = Cov(s_t, s_{t+n}) (e1 - e0)(e1 - e0)^T is
rank one with ||e1 - e0||^2 = 4 / V: both norms equal amplitude * n^-beta / V.
The embedding is valid (non-negative spectrum) for amplitude <= 0.5, beta <= 1.2.
"""

from __future__ import annotations

import numpy as np


def iid_stream(n_tokens: int, vocab_size: int, seed: int = 0, probs=None) -> np.ndarray:
    """Tokens drawn independently from ``probs`` (uniform when None)."""
    rng = np.random.default_rng(seed)
    return rng.choice(vocab_size, size=n_tokens, p=probs).astype(np.int64)


def zipf_probs(vocab_size: int, exponent: float = 1.0) -> np.ndarray:
    weights = 1.0 / np.arange(1, vocab_size + 1) ** exponent
    return weights / weights.sum()


def gaussian_process(n: int, correlation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A stationary Gaussian sample with correlation[k] = Corr(X_t, X_{t+k}), by circulant embedding."""
    circulant = np.concatenate([correlation, correlation[-2:0:-1]])
    spectrum = np.fft.fft(circulant).real
    if spectrum.min() < -1e-9 * spectrum.max():
        raise ValueError("correlation sequence is not embeddable (negative circulant spectrum)")
    size = circulant.size
    noise = rng.standard_normal(size) + 1j * rng.standard_normal(size)
    return np.fft.fft(np.sqrt(np.maximum(spectrum, 0.0) / size) * noise).real[:n]


def planted_norm(lag, beta: float, amplitude: float, vocab_size: int):
    """The exact operator (= Frobenius) norm of C(lag) of ``planted_power_law_stream``."""
    return amplitude * np.asarray(lag, dtype=float) ** -beta / vocab_size


def planted_power_law_stream(n_tokens: int, beta: float, amplitude: float = 0.5,
                             vocab_size: int = 4, seed: int = 0) -> np.ndarray:
    """Tokens whose ||C(n)|| = amplitude * n^-beta / vocab_size exactly (vocab_size even)."""
    if vocab_size % 2:
        raise ValueError("vocab_size must be even (two halves, one per latent sign)")
    rng = np.random.default_rng(seed)
    lags = np.arange(n_tokens, dtype=float)
    correlation = np.ones(n_tokens)
    correlation[1:] = np.sin(np.pi / 2 * amplitude * lags[1:] ** -beta)
    sign = gaussian_process(n_tokens, correlation, rng) > 0
    half = vocab_size // 2
    return (half * sign + rng.integers(0, half, size=n_tokens)).astype(np.int64)
