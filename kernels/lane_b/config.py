"""Lane B's knobs: one default each, registered with the core config as a Family.

The names are the worksheet's and the run guide's (every knob also reads from the
seed's ``LANE_B_<KEY>`` environment variable). Profiles change them per scale.
"""

from __future__ import annotations

from typing import Any, Mapping

from expspec.kernels.config import Family
from expspec.kernels.errors import ExpspecError
from expspec.kernels.lane_b.review import check_review

KNOBS: dict[str, Any] = {
    # --- data / tokenizer / statistics (worksheet steps 1-5) ---
    "dataset_id": "austen",
    # bpe:VOCAB (trained on the corpus, cached) or model:NAME. Both exponents use it, so
    # model:NAME also makes that pretrained LM the entropy model.
    "tokenizer": "model:smollm2-135m-instruct",
    "stats_max_docs": 0,  # 0 = all documents
    "stats_max_tokens": 1_000_000,  # tokens of the stream used for the statistics
    "lags": [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192],
    "floor_factor": 3.0,  # floor window: a lag is usable while its op norm exceeds this x the noise floor
    # which beta feeds alpha (stats.json reports both): floor (lags above floor_factor x the
    # floor) | debiased (Frobenius norm with the noise removed in quadrature, lags whose excess
    # clears noise_sigmas x the noise spread). floor: on planted power laws the debiased
    # window's extra lags add scatter, not accuracy (tests/test_correlation.py)
    "beta_window": "floor",
    "noise_shuffles": 8,  # shuffled streams measuring the noise's ||N||^2 (mean and spread), >= 2
    "noise_sigmas": 3.0,  # debiased window: excess ||C||^2 must clear this x the noise spread
    "bootstrap": 200,  # resamples for the CIs of beta (stream blocks) and gamma (windows): 0 or >= 200
    "entropy": "model",  # model (per-position loss of a trained LM) | ngram (plug-in, biased)
    "entropy_context_len": 128,  # T: L_n is measured for n = 1..T-1
    "entropy_windows": 256,  # random validation windows averaged per position
    "entropy_train_iters": 300,  # steps of the tiny GPT used for the entropy curve
    "entropy_fit_bins": 16,  # fit L_n on this many log-spaced bins of n (0 = every n)
    "gamma_form": "offset_free",  # offset_free (paper: L_n = A n^-g) | offset (seed: L_n - H_inf)
    "alpha_min": 0.2,  # the worksheet's plausibility gate
    "alpha_max": 0.8,
    "alpha_review": {},  # see lane_b/review.py: decision, by, reason, fingerprint, alpha_interval
    # --- model / trainer (run guide steps 0-6) ---
    "depth": 2,
    "aspect_ratio": 64,
    "head_dim": 64,
    "max_seq_len": 128,
    "device_batch_size": 16,
    "total_batch_size": 4096,  # tokens per optimizer step (gradient accumulation reaches it)
    "num_iterations": -1,  # > 0 fixes the horizon; else ratio x n_scaling_params / batch
    "target_param_data_ratio": 10.5,
    "learning_rate": 3e-3,  # AdamW LR of every parameter, for model = tiny_gpt or an HF id
    # model = nanochat_gpt: nanochat's optimizer split and LRs (scripts/base_train.py)
    "matrix_lr": 0.02,  # Muon on the transformer block matrices
    "embedding_lr": 0.2,  # AdamW on wte, x (model_dim / 768)^-0.5 as nanochat
    "unembedding_lr": 0.004,  # AdamW on lm_head, x (model_dim / 768)^-0.5 as nanochat
    "weight_decay": 0.0,
    "warmup_ratio": 0.0,
    "warmdown_ratio": 0.4,
    "final_lr_frac": 0.0,
    "eval_every": 25,
    "eval_tokens": 65_536,
    "train_tokenizer": "bpe:4096",  # tokenizer of the trained runs (val_bpb is tokenizer-free)
    # nanochat_gpt: nanochat's GPT (rotary, QK-norm, relu^2, soft-cap; Muon + AdamW);
    # tiny_gpt: a SwiGLU Llama with AdamW (16 d^2 per block, not nanochat's 12 d^2);
    # or an HF id/dir (AdamW at learning_rate). Built-ins are random init from depth/aspect_ratio/head_dim.
    "model": "nanochat_gpt",
    "device": "cpu",  # the pytest fixtures pass the worker's device instead
    "checkpoint_every": 0,  # 0 = checkpoint only at the end
    "keep_checkpoints": 2,  # mid-run checkpoints kept per run (older ones are deleted: disk at hero size)
    "resume_from": "",  # a checkpoint.pt to continue from
    "backend": "builtin",  # builtin | nanochat
    # builtin runs under torchrun (DDP) on this machine when > 1; 1 = one plain process
    "nproc_per_node": 1,
    # several machines: this one is node 0 and hosts the rendezvous at rdzv_endpoint (HOST:PORT);
    # node_launcher starts node 1..nnodes-1 of each run, e.g. "ssh -o BatchMode=yes node{node_rank} {remote}"
    # or "srun --nodes=1 --ntasks=1 --relative={node_rank} --chdir={cwd} {command}" (a shared filesystem;
    # placeholders in kernels/train/torchrun.py node_command)
    "nnodes": 1,
    "rdzv_endpoint": "",
    "node_launcher": "",
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
    "calib_iters": [40, 80, 120],  # <= 60% of baseline_num_iterations (the run guide's proportion)
    "calib_r2_min": 0.9,
    # > 0: the empirical alpha (fitted freely to the calibration runs) must agree with the
    # inferred one within this factor either way (the paper's claim, gated); 0: recorded only
    "alpha_agreement_max_ratio": 0.0,
    "run_seeds": [41, 42],
    "default_ratio": 10.5,
    "unreachable_factor": 10.0,
    "confirmation_factor": 1.05,
    "skip_existing_run_ids": True,
    "work_dir": "",  # "" = <reports-dir>/work/<recipe key> (persistent: finished runs are reused)
}

# Knobs that take one of a few words: checked when the config is resolved, so a typo
# fails before any step runs, not halfway through one.
CHOICES: dict[str, tuple[str, ...]] = {
    "entropy": ("model", "ngram"),
    "beta_window": ("floor", "debiased"),
    "gamma_form": ("offset_free", "offset"),
    # Only lower-is-better metrics exist (val_bpb); the solver handles both directions, the
    # threshold rule and time-to-target assume this one, so the other is refused here.
    "direction": ("lower_is_better",),
    "backend": ("builtin", "nanochat"),
    "target_metric": ("val_bpb",),
}

MIN_BOOTSTRAP = 200  # fewer resamples make the "95%" interval little more than their min and max


def check_bootstrap(bootstrap: int) -> None:
    """0 (no intervals) or at least MIN_BOOTSTRAP resamples."""
    if bootstrap != 0 and bootstrap < MIN_BOOTSTRAP:
        raise ExpspecError(f"lane_b.bootstrap: expected 0 (no intervals) or >= {MIN_BOOTSTRAP} resamples, got "
                           f"{bootstrap} (fewer make the 95% interval little more than the resamples' min and max)")


def check_statistics(lane_b: Mapping[str, Any]) -> None:
    """The statistics knobs a run would otherwise only trip over after tokenizing."""
    check_bootstrap(lane_b["bootstrap"])
    if lane_b["noise_shuffles"] < 2:
        raise ExpspecError(f"lane_b.noise_shuffles: expected >= 2 (a spread needs two), got {lane_b['noise_shuffles']}")
    if not lane_b["noise_sigmas"] > 0:
        raise ExpspecError(f"lane_b.noise_sigmas: expected > 0, got {lane_b['noise_sigmas']}")


def validate(table: Mapping[str, Any]) -> None:
    check_review(table["alpha_review"])
    check_statistics(table)
    if table["nproc_per_node"] < 1:
        raise ExpspecError(f"lane_b.nproc_per_node: expected >= 1, got {table['nproc_per_node']}")
    check_nodes(table)


def check_nodes(table: Mapping[str, Any]) -> None:
    """Several machines: a rendezvous endpoint and a launcher for the other nodes."""
    if table["nnodes"] < 1:
        raise ExpspecError(f"lane_b.nnodes: expected >= 1, got {table['nnodes']}")
    if table["nnodes"] == 1:
        return
    if table["backend"] != "builtin":
        raise ExpspecError("lane_b.nnodes: the built-in trainer's setting; nanochat's launch lives in "
                           "lane_b.nanochat_command")
    from expspec.kernels.train.torchrun import split_endpoint

    try:
        split_endpoint(table["rdzv_endpoint"])
    except ExpspecError as err:
        raise ExpspecError(f"lane_b.rdzv_endpoint: {err}") from None
    if not any("{" + name + "}" in table["node_launcher"] for name in ("command", "remote")):
        raise ExpspecError(f"lane_b.node_launcher: {table['nnodes']} nodes need a command template with {{command}} "
                           "or {remote} that starts a run on node {node_rank}, "
                           "e.g. 'ssh -o BatchMode=yes node{node_rank} {remote}'")


FAMILY = Family(
    name="lane_b",
    title="Lane B",
    knobs=KNOBS,
    choices=CHOICES,
    validate=validate,
    seed_env_prefix="LANE_B_",
    free_text=("alpha_review.by", "alpha_review.reason", "work_dir", "rdzv_endpoint", "node_launcher"),
    cli="expspec.kernels.lane_b.cli:add_commands",
)
