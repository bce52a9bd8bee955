"""TempNorm's knobs: one default each (the seed's values, i.e. the hero run), registered as a Family.

The smoke profile (``[tempnorm]`` in fixtures/profiles/smoke.toml) shrinks them to a CPU
run on the shipped SmolLM2 and the shipped contexts. The sampling seed is ``common.seed``:
the wander and the completions each draw from their own stream derived from it (tagged, so
seed s's completions never reuse seed s + 1's wander; both recorded in the data's sidecar).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from expspec.kernels.config import Family
from expspec.kernels.errors import ExpspecError

DTYPES = ("float32", "bfloat16", "float16")  # torch dtype names (str(model.dtype) minus "torch.")

KNOBS: dict[str, Any] = {
    # --- phase 1: generation (the seed's defaults) ---
    "model": "facebook/opt-125m",  # HF id, local dir, or smollm2-135m-instruct (shipped)
    # the weights' dtype for generation and rescoring; float32 as the seed ran (transformers 5
    # would otherwise load a checkpoint's own dtype: opt-125m is stored in float16)
    "dtype": "float32",
    "contexts_file": "",  # one context per line; "" = the shipped fixtures/data/contexts.txt
    "max_contexts": 0,  # use the first N lines; 0 = every line
    "initial_wander": 30,  # tokens sampled after the context to make the starting point
    "gen_length": 100,  # tokens per completion (exactly: EOS does not stop a completion)
    "gen_number": 8,  # completions per starting point
    "eval_lengths": [1, 2, 5, 10, 20, 30, 40, 50, 60, 80, 100],
    "alpha": 4.0,  # the power of p^alpha (power sampling, Karan & Du 2025); >= 1
    "max_batch": 32,  # sequences per forward pass of the sampler
    # --- phase 2: one standardised ridge per eval length, on log tempnorm ---
    "test_fraction": 0.2,  # share of contexts held out (grouped: no context on both sides)
    "cv_folds": 5,  # grouped K-fold on the training part chooses the ridge penalty
    # penalties on standardised features: the top ones shrink ~all hidden dims to the mean
    "ridge_alphas": [0.01, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7],
}

CHOICES: dict[str, tuple[str, ...]] = {"dtype": DTYPES}


def validate(table: Mapping[str, Any]) -> None:
    def need(ok: bool, key: str, expected: str) -> None:
        if not ok:
            raise ExpspecError(f"tempnorm.{key}: expected {expected}, got {table[key]!r}")

    need(bool(table["model"].strip()), "model", "an HF id, a local directory or smollm2-135m-instruct")
    need(table["max_contexts"] >= 0, "max_contexts", "a count >= 0 (0 = every line)")
    need(table["initial_wander"] >= 0, "initial_wander", "a token count >= 0")
    need(table["gen_length"] >= 1, "gen_length", "a token count >= 1")
    need(table["gen_number"] >= 1, "gen_number", "a count >= 1")
    need(table["max_batch"] >= 1, "max_batch", "a count >= 1")
    lengths = table["eval_lengths"]
    need(bool(lengths) and all(1 <= L <= table["gen_length"] for L in lengths)
         and list(lengths) == sorted(set(lengths)), "eval_lengths",
         f"a non-empty increasing list of lengths in 1..gen_length ({table['gen_length']})")
    # below 1 the weights p^(alpha - 1) exceed 1 and their product overflows within a few tokens
    need(math.isfinite(table["alpha"]) and table["alpha"] >= 1.0, "alpha",
         "a finite number >= 1 (the power of p^alpha; below 1 the weights p^(alpha-1) exceed 1)")
    need(0.0 < table["test_fraction"] < 1.0, "test_fraction", "a fraction in (0, 1)")
    need(table["cv_folds"] >= 2, "cv_folds", "a fold count >= 2")
    need(bool(table["ridge_alphas"]) and all(math.isfinite(a) and a > 0 for a in table["ridge_alphas"]),
         "ridge_alphas", "a non-empty list of penalties > 0")


FAMILY = Family(
    name="tempnorm",
    title="TempNorm",
    knobs=KNOBS,
    choices=CHOICES,
    validate=validate,
    cli="expspec.kernels.tempnorm.cli:add_commands",
)
