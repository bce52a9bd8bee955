"""Experiment configuration: one default per knob, profiles per scale, overrides.

Every knob of every family has exactly one default, in ``DEFAULTS`` below. A profile
(``fixtures/profiles/{smoke,hero}.toml`` or a user's file) is a TOML document with
one table per family that changes some of those defaults for a scale. On top of the
profile come environment variables (``EXPSPEC_<FAMILY>_<KEY>``, and for Lane B the
seed's own ``LANE_B_<KEY>`` names) and finally ``--set family.key=value``.

A key that is not in ``DEFAULTS`` is an error that names it, wherever it comes from:
a typo in a profile must not silently fall back to a default.
"""

from __future__ import annotations

import copy
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

from kernels.errors import ExpspecError

# --------------------------------------------------------------------------------------
# The defaults. Profiles only override these; a key missing here does not exist.
# --------------------------------------------------------------------------------------
DEFAULTS: dict[str, dict[str, Any]] = {
    "common": {
        "seed": 42,  # global seed for anything not seeded more specifically
        "corpus": "embedded:austen",  # path (.txt/folder/.jsonl/.parquet), hf:NAME or embedded:austen
        "val_fraction": 0.05,  # share of paragraphs held out for validation
        "causal_lm": "smollm2-135m-instruct",  # pretrained LM (HF id, local dir, or the shipped GGUF)
        "sentence_encoder": "all-minilm-l6-v2",  # encoder for hero readiness
    },
    "lane_b": {
        # --- data / tokenizer / statistics (worksheet steps 1-5) ---
        "dataset_id": "austen",
        # bpe:VOCAB (trained on the corpus, cached) or model:NAME. Both exponents use it, so
        # model:NAME also makes that pretrained LM the entropy model.
        "tokenizer": "model:smollm2-135m-instruct",
        "stats_max_docs": 0,  # 0 = all documents
        "stats_max_tokens": 1_000_000,  # tokens of the stream used for the statistics
        "lags": [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192],
        "floor_factor": 3.0,  # a lag is usable while its norm exceeds this x the noise floor
        "bootstrap": 200,  # bootstrap resamples for the CIs of beta and gamma
        "entropy": "model",  # model (per-position loss of a trained LM) | ngram (plug-in, biased)
        "entropy_context_len": 128,  # T: L_n is measured for n = 1..T-1
        "entropy_windows": 256,  # random validation windows averaged per position
        "entropy_train_iters": 300,  # steps of the tiny GPT used for the entropy curve
        "entropy_fit_bins": 16,  # fit L_n on this many log-spaced bins of n (0 = every n)
        "gamma_form": "offset_free",  # offset_free (paper: L_n = A n^-g) | offset (seed: L_n - H_inf)
        "alpha_min": 0.2,  # the worksheet's plausibility gate
        "alpha_max": 0.8,
        "alpha_review": {},  # {decision = "accepted"|"rejected", by = "...", reason = "..."}
        # --- model / trainer (run guide steps 0-6) ---
        "depth": 2,
        "aspect_ratio": 64,
        "head_dim": 64,
        "max_seq_len": 128,
        "device_batch_size": 16,
        "total_batch_size": 4096,  # tokens per optimizer step (gradient accumulation reaches it)
        "num_iterations": -1,  # > 0 fixes the horizon; else ratio x n_scaling_params / batch
        "target_param_data_ratio": 10.5,
        "learning_rate": 3e-3,
        "weight_decay": 0.0,
        "warmup_ratio": 0.0,
        "warmdown_ratio": 0.4,
        "final_lr_frac": 0.0,
        "eval_every": 25,
        "eval_tokens": 65_536,
        "train_tokenizer": "bpe:4096",  # tokenizer of the trained runs (val_bpb is tokenizer-free)
        "model": "tiny_gpt",  # tiny_gpt (random init from depth/aspect_ratio/head_dim) or an HF id/dir
        "device": "cpu",  # the pytest fixtures pass the worker's device instead
        "checkpoint_every": 0,  # 0 = checkpoint only at the end
        "resume_from": "",  # a checkpoint.pt to continue from
        "backend": "builtin",  # builtin | nanochat
        "nanochat_dir": "",
        "nanochat_command": (
            "torchrun --standalone --nproc_per_node=8 -m scripts.base_train --depth={depth} "
            "--seed={seed} --target-param-data-ratio={ratio} --num-iterations={num_iterations} --run={run_id}"
        ),
        # --- targets, calibration, candidates ---
        "target_metric": "val_bpb",
        "direction": "lower_is_better",
        "target_threshold": float("nan"),  # nan = derive from baselines (step 0)
        "threshold_offset": 0.02,
        "baseline_seeds": [41, 42, 43],
        "baseline_num_iterations": 200,
        "calib_iters": [50, 100, 200],
        "calib_r2_min": 0.9,
        "run_seeds": [41, 42],
        "default_ratio": 10.5,
        "unreachable_factor": 10.0,
        "confirmation_factor": 1.05,
        "skip_existing_run_ids": True,
        "work_dir": "",  # "" = the run cache decides
    },
}

# Knobs that take one of a few words: checked when the config is resolved, so a typo
# fails before any step runs, not halfway through one.
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("lane_b", "entropy"): ("model", "ngram"),
    ("lane_b", "gamma_form"): ("offset_free", "offset"),
    ("lane_b", "direction"): ("lower_is_better", "higher_is_better"),
    ("lane_b", "backend"): ("builtin", "nanochat"),
    ("lane_b", "target_metric"): ("val_bpb",),
}
REVIEW_DECISIONS = ("accepted", "rejected")

# The seed scripts' environment names that Lane B honours besides EXPSPEC_LANE_B_*.
SEED_ENV_PREFIX = {"lane_b": "LANE_B_"}


def families() -> list[str]:
    return list(DEFAULTS)


def _coerce(value: Any, default: Any, where: str, from_text: bool = True) -> Any:
    """Turn a string (env / --set) or a TOML value into the type of ``default``.

    Text from the environment or --set is parsed; TOML values are already typed and
    must match (an int where a float is expected is the one widening allowed)."""
    if from_text and isinstance(value, str) and not isinstance(default, str):
        text = value.strip()
        try:
            if isinstance(default, bool):
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if isinstance(default, int):
                return int(text.replace("_", ""))
            if isinstance(default, float):
                return float(text)
            if isinstance(default, list):
                items = [t.strip() for t in text.strip("[]").split(",") if t.strip()]
                kind = type(default[0]) if default else str
                return [_coerce(t, kind(), where) if kind is not str else t.strip("'\"") for t in items]
            if isinstance(default, dict):
                return dict(json.loads(text)) if text.startswith("{") and '":' in text else dict(
                    tomllib.loads(f"v = {text}")["v"]
                )
        except (ValueError, TypeError, tomllib.TOMLDecodeError, json.JSONDecodeError):
            raise ExpspecError(
                f"{where}: cannot read {value!r} as {type(default).__name__}"
            ) from None
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ExpspecError(f"{where}: expected true/false, got {value!r}")
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, list):
        items = value if isinstance(value, list) else [value]
        return [_coerce(v, default[0], where, from_text) for v in items] if default else items
    if type(value) is not type(default) and not (isinstance(default, float) and isinstance(value, float)):
        raise ExpspecError(
            f"{where}: expected {type(default).__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def _set(resolved: dict, family: str, key: str, value: Any, where: str, from_text: bool = True) -> None:
    if family not in DEFAULTS:
        raise ExpspecError(f"{where}: unknown family {family!r} (known: {', '.join(DEFAULTS)})")
    if key not in DEFAULTS[family]:
        raise ExpspecError(f"{where}: unknown key {family}.{key}")
    resolved[family][key] = _coerce(value, DEFAULTS[family][key], f"{where}: {family}.{key}", from_text)


def read_profile(path: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise ExpspecError(f"profile {path}: file not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ExpspecError(f"profile {path}: not valid TOML ({exc})") from None
    for family, table in data.items():
        if not isinstance(table, dict):
            raise ExpspecError(f"profile {path}: top-level key {family!r} must be a [family] table")
    return data


def parse_set(items: list[str] | None) -> list[tuple[str, str, str]]:
    """``["lane_b.calib_iters=300,600"]`` -> ``[("lane_b", "calib_iters", "300,600")]``."""
    out = []
    for item in items or []:
        name, sep, value = item.partition("=")
        family, dot, key = name.strip().partition(".")
        if not sep or not dot or not key:
            raise ExpspecError(f"--set {item!r}: expected family.key=value")
        out.append((family, key, value))
    return out


def env_overrides(environ: Mapping[str, str]) -> list[tuple[str, str, str, str]]:
    """(family, key, value, variable) for every EXPSPEC_<FAMILY>_<KEY> / LANE_B_<KEY>."""
    out = []
    for var, value in sorted(environ.items()):
        for family in DEFAULTS:
            prefixes = [f"EXPSPEC_{family.upper()}_"]
            if family in SEED_ENV_PREFIX:
                prefixes.append(SEED_ENV_PREFIX[family])
            for prefix in prefixes:
                if var.startswith(prefix):
                    out.append((family, var[len(prefix):].lower(), value, var))
    return out


def check_review(review: Mapping[str, Any]) -> None:
    """A manual review is empty, or {decision = accepted|rejected, by = ..., reason = ...}."""
    if not review:
        return
    missing = [k for k in ("decision", "by", "reason") if not str(review.get(k, "")).strip()]
    if missing or review.get("decision") not in REVIEW_DECISIONS or set(review) - {"decision", "by", "reason"}:
        raise ExpspecError(f"lane_b.alpha_review: expected {{decision = accepted|rejected, by = ..., "
                           f"reason = ...}}, got {dict(review)}")


def _check_choices(resolved: Mapping[str, Mapping[str, Any]]) -> None:
    for (family, key), allowed in CHOICES.items():
        if resolved[family][key] not in allowed:
            raise ExpspecError(f"{family}.{key}: expected one of {', '.join(allowed)}, "
                               f"got {resolved[family][key]!r}")
    check_review(resolved["lane_b"]["alpha_review"])


def resolve_config(
    profile: str | Path | None = None,
    overrides: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """defaults < profile < environment < --set; returns a fresh nested dict."""
    resolved = copy.deepcopy(DEFAULTS)
    if profile is not None:
        for family, table in read_profile(profile).items():
            for key, value in table.items():
                _set(resolved, family, key, value, f"profile {profile}", from_text=False)
    for family, key, value, var in env_overrides(os.environ if environ is None else environ):
        _set(resolved, family, key, value, f"environment {var}")
    for family, key, value in parse_set(overrides):
        _set(resolved, family, key, value, "--set")
    _check_choices(resolved)
    return resolved
