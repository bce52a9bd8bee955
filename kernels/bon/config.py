"""Best-of-N emergence's knobs: one default each, registered with the core config as a Family.

The collector's knobs carry the seed's collector-config names (base_model, k_values,
samples_per_prompt, ...); the pipeline turns them into a ``CollectorConfig`` at the edge.
Profiles change them per scale; ``validate`` checks a resolved table before any step runs
(an impossible pass@k, a tau outside (0, 1), a feature budget that uses every sample). The
collector's value checks are the collector's own (``collector.check_collector_values``),
run on the table: one rule for a profile and a collector JSON alike.
"""

from __future__ import annotations

from typing import Any, Mapping

from expspec.kernels.config import Family
from expspec.kernels.errors import ExpspecError
from expspec.kernels.review import check_review

REVIEW_INTERVAL = "auc_interval"

KNOBS: dict[str, Any] = {
    # --- collector (the seed's collector config; a collector JSON may leave out the optional ones) ---
    "base_model": "",  # "" = common.causal_lm (SmolLM2-135M-Instruct); an HF id or local dir otherwise
    "prompts_file": "",  # "" = the shipped fixtures/data/prompts.jsonl (generated: kernels/bon/prompts.py)
    "prompt_field": "prompt",  # the prompts file's question field
    "answer_field": "answer",  # ... its gold answer field
    "id_field": "id",  # ... its prompt id field (absent: line-<number>)
    "n_prompts": 0,  # 0 = every prompt; N = the file's first N (listed round-robin over difficulty)
    "k_values": [1, 2, 4, 8, 16],
    "samples_per_prompt": 16,
    "max_new_tokens": 12,
    "temperature": 0.8,
    "top_p": 0.95,
    "scorer": "numeric",  # exact | numeric | contains (or one added with register_scorer)
    "chat_template": True,  # wrap each prompt as a user message (tokenizers without a template: plain)
    "max_batch": 32,  # sequences per batched forward
    "output_dir": "reports/bon_runs",  # where `expspec bon collect` writes (under pytest: the run cache)
    # --- distill + LoRA SFT (best-of-N imitation) ---
    "keep_unsolved": False,  # unsolved prompts join the pairs with the gold answer (source=gold)
    # within each prompt category, every Nth prompt (by position) stays out of the pairs: the
    # adapter's pass@k is also reported on prompts it never trained on (0 = train on all)
    "sft_holdout_every": 4,
    "adapter_name": "bon_distilled",
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "sft_epochs": 4,
    "sft_batch_size": 8,
    "sft_learning_rate": 1e-3,
    "sft_min_loss_drop": 0.2,  # the acceptance margin: final SFT loss <= (1 - this) x initial
    # --- predictor (fitted per run; the gate reads the base run) ---
    "predictor_m": 4,  # features come from the first m samples of a prompt only
    "emergence_tau": 0.25,  # label: pass@k_max - pass@1 >= tau
    "predictor_folds": 5,  # grouped (by prompt) cross-validation folds: the outer split and the inner one
    # inverse L2 strengths of the logistic regression; the inner CV of each outer training
    # fold picks one (nested: the held-out prompts never choose it)
    "predictor_c_grid": [0.01, 0.1, 1.0, 10.0],
    "predictor_min_auc": 0.6,  # the base run's held-out AUC must reach this (a constant score: 0.5)
    # a recorded manual review of a missed AUC bar (kernels/review.py): decision, by, reason,
    # fingerprint (the report prints it) and auc_interval; FLAGGED -> ACCEPTED only for those
    "predictor_review": {},
    "coverage_fit_max_k": 4,  # the coverage law is fitted on k <= this, checked on the larger k_values
    "coverage_max_rel_error": 0.15,  # max |predicted - measured| / measured pass@k at the held-out k
}


def validate(table: Mapping[str, Any]) -> None:
    from expspec.kernels.bon.collector import check_collector_values

    check_collector_values(table, where="", name=lambda key: f"bon.{key}")
    n, ks = table["samples_per_prompt"], table["k_values"]
    if not 1 <= table["predictor_m"] < n:
        raise ExpspecError(f"bon.predictor_m: expected 1 <= m < samples_per_prompt ({n}), got {table['predictor_m']}")
    if not 0 < table["emergence_tau"] < 1:
        raise ExpspecError(f"bon.emergence_tau: expected in (0, 1), got {table['emergence_tau']}")
    if not 2 <= table["coverage_fit_max_k"] < ks[-1]:
        raise ExpspecError(f"bon.coverage_fit_max_k: expected >= 2 and below the largest k_values entry "
                           f"({ks[-1]}), got {table['coverage_fit_max_k']}")
    if table["predictor_folds"] < 2:
        raise ExpspecError(f"bon.predictor_folds: expected >= 2, got {table['predictor_folds']}")
    check_review(table["predictor_review"], "bon.predictor_review", REVIEW_INTERVAL)
    grid = table["predictor_c_grid"]
    if not grid or any(not c > 0 for c in grid):
        raise ExpspecError(f"bon.predictor_c_grid: expected a non-empty list of numbers > 0, got {grid}")
    for key in ("sft_learning_rate", "coverage_max_rel_error"):
        if not table[key] > 0:
            raise ExpspecError(f"bon.{key}: expected > 0, got {table[key]}")
    if not 0 <= table["sft_min_loss_drop"] < 1:
        raise ExpspecError(f"bon.sft_min_loss_drop: expected in [0, 1), got {table['sft_min_loss_drop']}")
    for key in ("lora_r", "sft_epochs", "sft_batch_size"):
        if table[key] < 1:
            raise ExpspecError(f"bon.{key}: expected >= 1, got {table[key]}")
    if table["sft_holdout_every"] < 0 or table["sft_holdout_every"] == 1:
        raise ExpspecError(f"bon.sft_holdout_every: expected 0 (off) or >= 2, got {table['sft_holdout_every']}")
    if not table["adapter_name"] or "/" in table["adapter_name"]:
        raise ExpspecError(f"bon.adapter_name: expected a folder name, got {table['adapter_name']!r}")


FAMILY = Family(
    name="bon",
    title="Best-of-N emergence",
    knobs=KNOBS,
    validate=validate,
    free_text=("output_dir", "predictor_review.by", "predictor_review.reason"),
    cli="expspec.kernels.bon.cli:add_commands",
)
