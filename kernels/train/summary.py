"""One summary type for every training run, built-in or nanochat: ``RunSummary``.

Lane B scores, logs and compares runs without caring who trained them, so the
built-in trainer and the nanochat log importer both end in this record, and the
run's ``run.json`` is its dict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from expspec.kernels.train.time_to_target import WARMUP_STEPS_EXCLUDED, TimeToTarget, finite_min


@dataclass
class RunSummary:
    status: str  # ok | failed
    steps: int  # optimizer steps completed
    horizon: int
    n_scaling_params: int
    tokens_trained: int
    evals: list  # [(step, val_bpb)]
    final_val_bpb: float
    min_val_bpb: float
    time_to_target_sec_measured: float
    time_to_target_sec_extrapolated: float
    time_to_target_method: str
    reached_within_horizon: bool
    tok_per_sec_median: float
    dt_median_ms: float
    train_time_sec: float  # cumulative step time, evaluations excluded
    eval_train_times: list  # training seconds at each eval
    notes: str = ""
    total_batch_size: int = 0
    scaling_params: dict = field(default_factory=dict)
    timing_excludes_first_steps: int = WARMUP_STEPS_EXCLUDED
    grad_accum_steps: int = 1
    world_size: int = 1
    train_losses: list = field(default_factory=list)  # global-batch mean loss per step
    log_path: str = ""
    checkpoint_path: str = ""
    backend: str = "builtin"
    run_id: str = ""
    seed: int = -1
    log: str = ""  # the log's path relative to the work dir that holds the run

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunSummary":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def summarize(status: str, steps: int, horizon: int, n_scaling_params: int, total_batch_size: int,
              evals: list, eval_train_times: list, ttt: TimeToTarget, tok_per_sec_median: float,
              dt_median_ms: float, train_time_sec: float, notes: list, **extra) -> RunSummary:
    """The fields both backends derive the same way from their evals and step times."""
    return RunSummary(
        status=status, steps=steps, horizon=horizon, n_scaling_params=n_scaling_params,
        tokens_trained=steps * total_batch_size, evals=[tuple(e) for e in evals],
        final_val_bpb=evals[-1][1] if evals else math.nan, min_val_bpb=finite_min(v for _, v in evals),
        time_to_target_sec_measured=ttt.measured_sec, time_to_target_sec_extrapolated=ttt.extrapolated_sec,
        time_to_target_method=ttt.method, reached_within_horizon=ttt.reached_within_horizon,
        tok_per_sec_median=tok_per_sec_median, dt_median_ms=dt_median_ms, train_time_sec=train_time_sec,
        eval_train_times=list(eval_train_times), notes="; ".join(notes), total_batch_size=total_batch_size,
        **extra)
