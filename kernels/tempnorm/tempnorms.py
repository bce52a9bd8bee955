"""Tempnorms in log space: the per-completion weight and its mean and variance over completions.

For a completion sampled from p at temperature 1, with p_t the probability of its t-th
token,

    tempnorm_L      = prod_{t<=L} p_t^(alpha - 1)        (importance weight p -> p^alpha)
    log tempnorm_L  = (alpha - 1) * sum_{t<=L} log p_t

With alpha = 4 and L = 100 the product reaches e^-600: float32 underflows and float64
nearly does, so everything is computed from the logs. Over the N completions of one
starting point (population statistics, as the seed's ``np.mean``/``np.var``):

    log mean     = logsumexp(l_i) - log N
    log variance = 2c + log( mean_i (e^(l_i - c) - mean_j e^(l_j - c))^2 ),  c = max_i l_i

The variance is shifted by the largest term before exponentiating, so it stays finite
wherever the logs are, and it is the exact centred form (no E[x^2] - E[x]^2 cancellation
beyond what float64 has at the scale of the largest weight). A zero variance (all
completions equal, e.g. L = 1 and one token sampled by all) has log variance -inf.

The linear-scale numbers are stored too (the seed's fields) as exp of the logs: with
alpha >= 1 (the config's rule) they lie in [0, 1]; ``linear`` maps a log above ~709 to
inf rather than raising, so the kernel never fails after a generation whatever alpha it
is handed (the data file writes inf as "inf", which its reader accepts for these fields).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def log_tempnorms(model_probs: Sequence[Sequence[float]], eval_length: int, alpha: float) -> np.ndarray:
    """(alpha - 1) * sum_{t <= L} log p_t for each completion's probabilities."""
    logs = np.log(np.asarray([list(p[:eval_length]) for p in model_probs], dtype=np.float64))
    return (alpha - 1.0) * logs.sum(axis=1)


def log_mean_exp(log_values: Sequence[float]) -> float:
    """log(mean(exp(l))) without leaving log space (log-sum-exp, shifted by the max)."""
    logs = np.asarray(log_values, dtype=np.float64)
    top = float(logs.max())
    if not math.isfinite(top):
        return top
    return top + math.log(float(np.mean(np.exp(logs - top))))


def log_variance_exp(log_values: Sequence[float]) -> float:
    """log(var(exp(l))), the population variance, computed after shifting by the max."""
    logs = np.asarray(log_values, dtype=np.float64)
    top = float(logs.max())
    if not math.isfinite(top):  # all weights 0 (-inf): variance 0; nan/inf propagate
        return top
    scaled = np.exp(logs - top)
    var = float(np.mean((scaled - scaled.mean()) ** 2))
    return 2.0 * top + math.log(var) if var > 0 else -math.inf


def linear(log_value: float) -> float:
    """exp(log_value), inf where float64 overflows (never an OverflowError)."""
    try:
        return math.exp(log_value)
    except OverflowError:
        return math.inf


def tempnorm_summary(model_probs: Sequence[Sequence[float]], eval_lengths: Sequence[int],
                     alpha: float) -> dict[str, object]:
    """The record's per-L fields: individual, mean and variance tempnorms and their logs.

    The linear-scale numbers are exp of the log ones (float64; they may underflow to 0.0,
    or for alpha < 1 overflow to inf, which is why the logs are stored too and phase 2
    reads those)."""
    out: dict[str, object] = {}
    for L in eval_lengths:
        logs = log_tempnorms(model_probs, L, alpha)
        log_mean, log_var = log_mean_exp(logs), log_variance_exp(logs)
        out[f"individual_tempnorms_{L}"] = [linear(v) for v in logs]
        out[f"tempnorm_mean_{L}"] = linear(log_mean)
        out[f"tempnorm_variance_{L}"] = linear(log_var)
        out[f"log_individual_tempnorms_{L}"] = [float(v) for v in logs]
        out[f"log_tempnorm_mean_{L}"] = log_mean
        out[f"log_tempnorm_variance_{L}"] = log_var
    return out


PER_LENGTH_FIELDS = ("individual_tempnorms", "tempnorm_mean", "tempnorm_variance",
                     "log_individual_tempnorms", "log_tempnorm_mean", "log_tempnorm_variance")
