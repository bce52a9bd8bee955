"""Lane B worksheet steps 1-4: corpus statistics -> beta, gamma, alpha = gamma / (2 beta).

One function, ``corpus_stats``, produces stats.json from a corpus split and the
resolved ``lane_b`` config. Both exponents are measured with ONE tokenizer (its
``tokenizer_id`` is recorded): beta from the correlation norms of the training
stream, gamma from the per-position validation loss of a causal LM that reads that
same tokenization - the pretrained LM when the tokenizer is ``model:NAME``, a tiny
GPT trained here on the corpus when it is ``bpe:VOCAB`` - or, as a biased
cross-check, from plug-in n-gram entropies.

Intervals are sampling intervals (at least ``MIN_BOOTSTRAP`` resamples, or none at all):
beta's from a block bootstrap of the training stream (its window re-selected in each
resample), gamma's from a bootstrap of the evaluation windows, and alpha's from pairing
the two sets of resamples (independent data: train blocks, validation windows), so
alpha's interval is the percentile interval of gamma_b / (2 beta_b), not the corners of
two boxes. stats.json carries beta from both window rules (lane_b.beta_window picks the
one behind ``beta`` and alpha).
"""

from __future__ import annotations

import platform
import time
from typing import Any, Callable, Mapping

import numpy as np

from expspec.kernels.lane_b.config import CHOICES, check_statistics
from expspec.kernels.data.corpus import CorpusSplit
from expspec.kernels.lane_b.correlation import correlation_decay, stream_fingerprint
from expspec.kernels.fit.power_law import percentile_interval
from expspec.kernels.lane_b.entropy import entropy_decay, ngram_conditional_entropy, per_window_loss
from expspec.kernels.errors import ExpspecError
from expspec.kernels.lane_b.scaling import alpha_from_exponents, alpha_interval, alpha_plausible
from expspec.kernels.data.tokenizer import Tokenizer, get_tokenizer

NGRAM_MAX_ORDER = 12


MIN_RESAMPLES_PER_WORKER = 12  # starting a worker costs ~6 resamples' time at V = 49152 (bench_correlation)


def bootstrap_workers(resamples: int) -> int:
    """Processes for beta's block bootstrap of ``resamples`` resamples: this process's torch
    thread count, so a bootstrap takes no more cores than the run's training does, and no more
    than one per MIN_RESAMPLES_PER_WORKER resamples (each worker builds its own block tables:
    on a many-core node, one per core would multiply the memory for no gain). Under pytest
    the thread count is the session's cores // xdist workers (or EXPSPEC_THREADS /
    OMP_NUM_THREADS, see devices.configure_threads); from the CLI, torch's own default
    (OMP_NUM_THREADS, else every physical core)."""
    import torch

    return max(1, min(torch.get_num_threads(), resamples // MIN_RESAMPLES_PER_WORKER))


def lane_b_tokenizer(lane_b: Mapping[str, Any], split: CorpusSplit) -> Tokenizer:
    return get_tokenizer(lane_b["tokenizer"], [d.text for d in split.train], split.fingerprint)


def _entropy_model(lane_b: Mapping[str, Any], common: Mapping[str, Any], tok: Tokenizer,
                   train_stream: np.ndarray, val_stream: np.ndarray, device: str, log: Callable):
    """The LM whose per-position loss gives L_n; it must read ``tok``'s token ids."""
    if tok.model:
        from expspec.kernels.models.pretrained import load_causal_lm

        name = tok.model
        log(f"entropy model: pretrained {name} (same tokenizer as the correlation stream)")
        model, _ = load_causal_lm(name, device=device)
        return model, f"pretrained:{name}"
    from expspec.kernels.train.config import TrainConfig
    from expspec.kernels.train.loop import train

    cfg = TrainConfig.from_lane_b(lane_b, seed=common["seed"], device=device,
                                  num_iterations=lane_b["entropy_train_iters"],
                                  max_seq_len=max(lane_b["max_seq_len"], lane_b["entropy_context_len"]),
                                  eval_every=0, model="tiny_gpt", resume_from="", checkpoint_every=0,
                                  target_threshold=float("nan"))
    log(f"entropy model: tiny GPT depth {cfg.depth} trained {cfg.num_iterations} steps on the corpus")
    result, model = train(cfg, train_stream, val_stream, tok.token_bytes, log=log, return_model=True)
    if result.status != "ok":
        raise ExpspecError(f"lane_b stats: the entropy model's training failed ({result.notes})")
    return model, f"tiny_gpt:depth{cfg.depth}:steps{result.steps}:val_bpb{result.final_val_bpb:.4f}"


def corpus_stats(lane_b: Mapping[str, Any], common: Mapping[str, Any], split: CorpusSplit,
                 device: str = "cpu", log: Callable[[str], None] = print) -> dict:
    """Everything stats.json holds; see the module docstring."""
    for key in ("entropy", "beta_window"):  # resolve_config checks them too; this guards direct callers
        allowed = CHOICES[key]
        if lane_b[key] not in allowed:
            raise ExpspecError(f"lane_b.{key}: expected one of {', '.join(allowed)}, got {lane_b[key]!r}")
    check_statistics(lane_b)
    timings: dict[str, float] = {}
    t0 = time.time()
    tok = lane_b_tokenizer(lane_b, split)
    docs = split.train[: lane_b["stats_max_docs"] or None]
    stream = tok.encode_documents([d.text for d in docs], max_tokens=lane_b["stats_max_tokens"])
    val_stream = tok.encode_documents([d.text for d in split.val])
    timings["tokenize_s"] = time.time() - t0
    log(f"stream: {stream.size:,} train tokens, {val_stream.size:,} val tokens, tokenizer {tok.id}")

    t0 = time.time()
    corr = correlation_decay(stream, lane_b["lags"], tok.vocab_size, floor_factor=lane_b["floor_factor"],
                             bootstrap=lane_b["bootstrap"], seed=common["seed"], beta_window=lane_b["beta_window"],
                             noise_shuffles=lane_b["noise_shuffles"], noise_sigmas=lane_b["noise_sigmas"],
                             workers=bootstrap_workers(lane_b["bootstrap"]))
    timings["correlation_s"] = time.time() - t0
    for rule in ("floor", "debiased"):
        fit = getattr(corr, rule)
        log(f"correlation ({rule} window{', feeds alpha' if rule == corr.beta_window else ''}): "
            f"beta={fit['beta']:.4f} CI={fit['ci']} R2={fit['r2']:.4f} usable lags={fit['n_usable']} "
            f"window={fit['window']}")
    log(f"correlation: {timings['correlation_s']:.1f} s")

    t0 = time.time()
    ngram = ngram_conditional_entropy(stream, NGRAM_MAX_ORDER)
    entropy: dict[str, Any] = {"ngram": ngram.to_dict()}
    if lane_b["entropy"] == "model":
        model, model_id = _entropy_model(lane_b, common, tok, stream, val_stream, device, log)
        t_model = time.time()
        per_window = per_window_loss(model, val_stream, lane_b["entropy_context_len"],
                                     lane_b["entropy_windows"], seed=common["seed"], device=device)
        timings["entropy_model_s"] = time.time() - t_model
        curve = {n + 1: float(v) for n, v in enumerate(per_window.mean(axis=0))}
        entropy.update(source="model", model=model_id, context_len=lane_b["entropy_context_len"],
                       n_windows=lane_b["entropy_windows"],
                       loss_se_by_position={str(n + 1): float(v) for n, v in enumerate(
                           per_window.std(axis=0, ddof=1) / np.sqrt(per_window.shape[0]))}
                       if per_window.shape[0] > 1 else {})
        losses, bootstrap = per_window, lane_b["bootstrap"]
    else:
        curve = ngram.losses_by_n()
        entropy.update(source="ngram", model=None)
        losses, bootstrap = curve, 0  # plug-in entropies have no windows to resample: no interval
    entropy["loss_by_position"] = {str(n): v for n, v in curve.items()}
    t_fit = time.time()
    decay = entropy_decay(losses, form=lane_b["gamma_form"], bootstrap=bootstrap, seed=common["seed"],
                          bins=lane_b["entropy_fit_bins"])
    timings["entropy_fit_s"] = time.time() - t_fit
    entropy["fit"] = decay.to_dict()
    timings["entropy_s"] = time.time() - t0
    log(f"entropy: gamma={decay.gamma:.4f} CI={decay.ci} ({decay.form}) offset-free={decay.gamma_offset_free:.4f} "
        f"offset={decay.gamma_offset:.4f} H_inf={decay.h_inf:.3f} ({timings['entropy_s']:.1f} s)")

    alpha = alpha_from_exponents(corr.beta, decay.gamma)
    chosen = getattr(corr, corr.beta_window)
    alpha_ci = paired_alpha_interval(chosen["samples"], decay.samples)
    return {
        "tokenizer_id": tok.id,
        "vocab_size": tok.vocab_size,
        "dataset_id": lane_b["dataset_id"],
        "corpus_fingerprint": split.fingerprint,
        "fingerprint": stream_fingerprint(stream, tok.id),
        "n_tokens": int(stream.size),
        "n_val_tokens": int(val_stream.size),
        "correlation": corr.to_dict(),
        "entropy": entropy,
        "beta": corr.beta,
        "beta_window": corr.beta_window,
        "beta_ci": corr.ci,
        "beta_r2": corr.r2,
        "n_usable_lags": corr.n_usable,
        **{f"beta_{rule}": _beta_summary(getattr(corr, rule)) for rule in ("floor", "debiased")},
        "gamma": decay.gamma,
        "gamma_form": decay.form,
        "gamma_ci": decay.ci,
        "gamma_r2": decay.r2_offset if decay.form == "offset" else decay.r2_offset_free,
        "gamma_offset_free": decay.gamma_offset_free,
        "gamma_offset": decay.gamma_offset,
        "h_inf": decay.h_inf,
        "alpha": alpha,
        "alpha_ci": alpha_ci,
        "alpha_ci_method": "paired bootstrap: percentile interval of gamma_b / (2 beta_b)" if alpha_ci else "none",
        "alpha_ci_corners": alpha_interval(corr.ci, decay.ci),  # the older, conservative box corners
        "bootstrap": lane_b["bootstrap"],
        "alpha_plausible": alpha_plausible(alpha, lane_b["alpha_min"], lane_b["alpha_max"]),
        "alpha_range": [lane_b["alpha_min"], lane_b["alpha_max"]],
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "platform": platform.platform(),
    }


def paired_alpha_interval(beta_samples, gamma_samples) -> tuple[float, float] | None:
    """95% interval of gamma_b / (2 beta_b), pairing the b-th resample of each.

    beta's resamples come from blocks of the training stream, gamma's from windows of the
    validation stream, drawn independently, so the b-th pair is a draw of the two
    estimates' joint sampling distribution. None without at least 2 usable pairs.
    """
    pairs = min(len(beta_samples), len(gamma_samples))
    alphas = [alpha_from_exponents(b, g) for b, g in zip(beta_samples[:pairs], gamma_samples[:pairs])]
    return percentile_interval([a for a in alphas if np.isfinite(a)])


def _beta_summary(fit: Mapping[str, Any]) -> dict:
    return {k: fit[k] for k in ("beta", "ci", "r2", "window", "n_usable", "n_bootstrap_fitted", "norm")}


# Knobs that change stats.json (the run-cache key of the stats step uses only these, so
# re-running calibration with other calib_iters does not recompute the statistics).
STATS_KEYS = ("dataset_id", "tokenizer", "stats_max_docs", "stats_max_tokens", "lags", "floor_factor",
              "beta_window", "noise_shuffles", "noise_sigmas", "bootstrap", "entropy", "entropy_context_len", "entropy_windows", "entropy_train_iters",
              "entropy_fit_bins", "gamma_form", "depth", "aspect_ratio", "head_dim", "max_seq_len", "device_batch_size",
              "total_batch_size", "learning_rate", "weight_decay", "warmup_ratio", "warmdown_ratio",
              "final_lr_frac", "eval_tokens")


def stats_config(lane_b: Mapping[str, Any], common: Mapping[str, Any]) -> dict:
    return {"lane_b": {k: lane_b[k] for k in STATS_KEYS}, "seed": common["seed"],
            "corpus": common["corpus"], "val_fraction": common["val_fraction"]}
