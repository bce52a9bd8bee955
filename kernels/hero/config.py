"""Hero readiness's knobs: one default each (the hero run's values), registered as a Family.

A smoke profile table (``[hero]`` in fixtures/profiles/smoke.toml, added with the training
part) shrinks them to a CPU run;
the checklist thresholds at the end are the readiness criteria the acceptance tests read.
Steps are optimizer steps throughout (``schedules.optimizer_steps``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from expspec.kernels.config import Family
from expspec.kernels.errors import ExpspecError
from expspec.kernels.hero.qa_data import MAX_FACTS, QA_SOURCES
from expspec.kernels.hero.schedules import FIRST_TOKEN_SCHEDULES, LR_SCHEDULES, SAMPLING_SCHEDULES, \
    check_sampling_schedule

KNOBS: dict[str, Any] = {
    # --- models ---
    "decoder_model": "smollm2-135m-instruct",  # frozen causal LM (HF id, local dir, or the shipped GGUF)
    "encoder_model": "all-minilm-l6-v2",  # reads the context (HF id, local dir, or the shipped wheel)
    "dtype": "auto",  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    # --- latent prefix ---
    "latent_len": 64,  # M: soft tokens the context becomes in front of the decoder
    "d_z": 256,  # width of the latent before its projection to the decoder's hidden size
    # --- QA data (qa_data.generate_qa): training = max(stage sizes) questions, eval apart ---
    "qa_dataset": "generated",  # generated | hf:rajpurkar/squad (hero with a network) | DIR with train/dev.json
    "qa_seed": 0,  # the data set's own seed: fixed while training seeds (common.seed) vary
    "qa_multi_token_share": 0.2,  # share of questions with a two-word answer (F1's partial credit)
    "qa_max_facts": 2,  # facts per context: 1..qa_max_facts
    "stage_a_samples": 8000,  # Stage A: latent prefix encoder + adapter, decoder frozen
    "stage_b_samples": 16000,  # Stage B: + LoRA on the decoder
    "stage_a_epochs": 6,
    "stage_b_epochs": 10,
    "eval_samples": 1000,  # eval questions (unseen people)
    # --- optimisation ---
    "batch_size": 32,  # per micro-batch (under torchrun: the global one, split over the ranks)
    "grad_accum": 10,  # micro-batches per optimizer step
    "lr": 5e-5,  # Stage A peak learning rate
    "lr_schedule": "constant",  # constant | cosine (lr -> lr_min; the ladder's Phase 2 C tries it)
    "lr_min": 1e-6,
    "lr_warmup_frac": 0.0,  # linear LR warmup over this share of each stage's steps
    "grad_clip": 1.0,  # max total grad norm (diagnostics log the norm before clipping)
    # --- losses ---
    "first_token_weight": 6.0,  # x the answer's first-token CE (1 = like any other token)
    "first_token_weight_schedule": "constant",  # constant | warmup (1 -> w) | cosine (w -> 1)
    "first_token_warmup_frac": 0.1,  # share of the stage the warmup schedule ramps over
    "k_tokens": 8,  # K: answer tokens supervised by the K-token CE
    "kce_weight": 0.5,
    "kd_tau": 4.0,  # distillation temperature (teacher: the decoder reading the text context)
    "kd_weight": 2.0,
    # --- scheduled sampling in Stage B (schedules.teacher_forcing_prob), the ladder's Phase 3 ---
    "ss_schedule": "none",  # none | linear | exponential | inverse_sigmoid (Phase 3: linear 1.0 -> 0.5)
    "ss_k": 1.0,
    "ss_c": 0.001,  # linear slope per optimizer step: 0.5 / 500 = the end of hero's Stage B
    "ss_eps_min": 0.5,
    # --- LoRA (Stage B) ---
    "lora_r": 8,
    "lora_alpha": 8,
    "lora_dropout": 0.05,
    "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],  # attention
    "lora_layers": 12,  # the first N decoder layers; 0 = every layer
    "lora_lr": 5e-5,  # Stage B learning rate
    # --- eval and logging ---
    "max_new_tokens": 16,  # greedy answer length at eval
    "log_every": 10,  # optimizer steps between diagnostics.jsonl train records
    "eval_every": 25,  # optimizer steps between eval records (and one at every epoch's end)
    "epoch_samples": 5,  # (question, prediction, gold) rows in each diagnostics_epoch.jsonl record
    # --- readiness checklist ---
    "min_peak_first_acc": 0.12,
    "min_final_over_peak": 0.8,  # final first_acc >= this x its peak (no late collapse)
    "min_f1_nonzero_examples": 1,
    "min_mean_f1": 0.10,  # mean per-example F1, a fraction (official x100 score / 100)
    "max_grad_norm": 500.0,  # max pre-clip grad norm over the run, strictly below
    "max_repetition_rate": 0.10,  # share of eval answers in the "thethethe" mode, strictly below
    "min_prior_margin": 0.05,  # mean F1 minus the best prior baseline's (never reads the prefix)
    # --- the plan's phase ladder (ladder.py): Phase 2's experiments A, B, C ---
    "ladder_first_token_weight": 12.0,  # A: the first-token CE weight
    "ladder_epochs_factor": 2,  # B: x stage_b_epochs (the plan's 8 -> 16)
    "ladder_lr": 5e-5,  # C: cosine LR from this to lr_min (the plan's 5e-5 -> 1e-6)
    "work_dir": "",  # "" = <reports-dir>/work/<recipe key>
    # --- resuming a proven Stage A, and the process layout ---
    "resume_from": "",  # a Stage A checkpoint (train_stage's stage_a.pt): Stage B / every rung starts from it
    "resume_optimizer": False,  # also load that checkpoint's AdamW state for the prefix (when it has one)
    "nproc_per_node": 1,  # processes per training stage: > 1 = DDP under torchrun; 0 = one per GPU this worker owns
    "dist_timeout_min": 60,  # DDP: minutes a rank waits in a collective (ranks wait while rank 0 evaluates)
    # --- mid-stage checkpoints: a killed stage resumes from its newest one, bit-exactly (not in any key) ---
    "checkpoint_every": 0,  # optimizer steps between mid-stage checkpoints; 0 = only the stage's own at its end
    "keep_checkpoints": 2,  # the newest N mid-stage checkpoints kept (all removed once the stage is recorded)
}

CHOICES: dict[str, tuple[str, ...]] = {
    "dtype": ("auto", "fp32", "bf16"),
    "lr_schedule": LR_SCHEDULES,
    "first_token_weight_schedule": FIRST_TOKEN_SCHEDULES,
    "ss_schedule": SAMPLING_SCHEDULES,
}

_POSITIVE = ("latent_len", "d_z", "qa_max_facts", "stage_a_samples", "stage_b_samples", "stage_a_epochs",
             "stage_b_epochs", "eval_samples", "batch_size", "grad_accum", "k_tokens", "lora_r", "lora_alpha",
             "max_new_tokens", "log_every", "eval_every", "ladder_first_token_weight",
             "ladder_epochs_factor", "ladder_lr", "lr", "lora_lr", "grad_clip", "kd_tau", "max_grad_norm",
             "keep_checkpoints", "dist_timeout_min")
_NON_NEGATIVE = ("qa_seed", "lr_min", "first_token_weight", "kce_weight", "kd_weight", "lora_layers",
                 "nproc_per_node", "checkpoint_every", "epoch_samples", "min_f1_nonzero_examples",
                 "min_peak_first_acc", "min_mean_f1")
_FRACTIONS = ("qa_multi_token_share", "first_token_warmup_frac", "lr_warmup_frac", "lora_dropout",
              "min_final_over_peak",
              "max_repetition_rate")


def _exists(path: str, kind: str = "dir") -> bool:
    try:
        return Path(path).is_dir() if kind == "dir" else Path(path).is_file()
    except OSError:  # a name too long to look up is no folder (and no file)
        return False


def validate(table: Mapping[str, Any]) -> None:
    for key in _POSITIVE:
        if not table[key] > 0:
            raise ExpspecError(f"hero.{key}: expected a number > 0, got {table[key]!r}")
    for key in _NON_NEGATIVE:
        if not table[key] >= 0:
            raise ExpspecError(f"hero.{key}: expected a number >= 0, got {table[key]!r}")
    for key in _FRACTIONS:
        if not 0.0 <= table[key] <= 1.0:
            raise ExpspecError(f"hero.{key}: expected a fraction in [0, 1], got {table[key]!r}")
    if table["qa_max_facts"] > MAX_FACTS:
        raise ExpspecError(f"hero.qa_max_facts: expected 1..{MAX_FACTS}, got {table['qa_max_facts']}")
    if table["lr_min"] > table["lr"] or table["lr_min"] > table["lora_lr"]:
        raise ExpspecError(f"hero.lr_min: expected <= hero.lr and hero.lora_lr, got {table['lr_min']}")
    if not table["lora_target_modules"] or not all(isinstance(m, str) and m for m in table["lora_target_modules"]):
        raise ExpspecError("hero.lora_target_modules: expected a non-empty list of module names (q_proj, v_proj ...)")
    if not -1.0 <= table["min_prior_margin"] <= 1.0:
        raise ExpspecError(f"hero.min_prior_margin: expected a mean-F1 difference in [-1, 1], "
                           f"got {table['min_prior_margin']}")
    source = table["qa_dataset"]
    if not isinstance(source, str) or not (source == "generated" or source.startswith("hf:") or _exists(source)):
        raise ExpspecError(f"hero.qa_dataset: expected {QA_SOURCES}, got {source!r}")
    resume = table["resume_from"]
    if resume and not _exists(resume, "file"):
        raise ExpspecError(f"hero.resume_from {resume}: file not found (expected a Stage A checkpoint, stage_a.pt)")
    check_sampling_schedule(table["ss_schedule"], table["ss_k"], table["ss_c"], table["ss_eps_min"], "hero.ss_")


FAMILY = Family(
    name="hero",
    title="Hero readiness",
    knobs=KNOBS,
    choices=CHOICES,
    validate=validate,
    # resume_from: its content fingerprint keys the ladder; checkpoints and the DDP timeout never change a result
    free_text=("work_dir", "resume_from", "checkpoint_every", "keep_checkpoints", "dist_timeout_min"),
    cli="expspec.kernels.hero.cli:add_commands",
)
