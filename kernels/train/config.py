"""Trainer configuration: every knob of a run, validated up front.

Why a module of its own: the trainer, the run cache (which hashes a resolved config)
and the CLI all need the same checked set of knobs, and a wrong knob should fail with
its name before any model is built. The defaults live in the family that trains (Lane
B's ``lane_b/config.py`` KNOBS); ``TrainConfig.from_lane_b`` reads them from a resolved
table, so no second default hides here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from expspec.kernels.errors import ExpspecError

@dataclass
class TrainConfig:
    depth: int
    aspect_ratio: int
    head_dim: int
    max_seq_len: int
    device_batch_size: int
    total_batch_size: int  # tokens per optimizer step, over all ranks
    num_iterations: int  # > 0 fixes the horizon, else ratio x n_scaling_params / batch
    target_param_data_ratio: float
    learning_rate: float  # AdamW, every parameter: model = tiny_gpt or an HF id (not nanochat_gpt)
    matrix_lr: float  # nanochat_gpt: Muon on the block matrices
    embedding_lr: float  # nanochat_gpt: AdamW on wte, x (model_dim / 768)^-0.5 as nanochat
    unembedding_lr: float  # nanochat_gpt: AdamW on lm_head, x (model_dim / 768)^-0.5 as nanochat
    weight_decay: float  # on every matrix (Muon's and AdamW's); 0 on vectors
    warmup_ratio: float
    warmdown_ratio: float
    final_lr_frac: float
    eval_every: int  # <= 0: evaluate at step 0 and at the end only
    eval_tokens: int
    seed: int
    device: str
    target_metric: str
    target_threshold: float  # nan = no target
    checkpoint_every: int  # 0 = only at the end
    keep_checkpoints: int  # mid-run checkpoint_<step>.pt files kept (the newest); the final checkpoint.pt always
    resume_from: str  # "" or a checkpoint.pt path
    model: str  # "nanochat_gpt", "tiny_gpt" (models/gpt.py) or an HF id / local dir (models/pretrained.py)

    @classmethod
    def from_lane_b(cls, lane_b: Mapping[str, Any], seed: int, **overrides) -> "TrainConfig":
        """Take every knob from a resolved ``lane_b`` table; ``overrides`` win."""
        names = [f.name for f in fields(cls)]
        for key in overrides:
            if key not in names:
                raise ExpspecError(f"train config: unknown key {key!r} (known: {', '.join(names)})")
        values = {}
        for name in names:
            if name in overrides:
                values[name] = overrides[name]
            elif name == "seed":
                values[name] = seed
            elif name in lane_b:
                values[name] = lane_b[name]
            else:
                raise ExpspecError(f"train config: lane_b has no {name!r}")
        return cls(**values).validate()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "train config") -> "TrainConfig":
        names = [f.name for f in fields(cls)]
        unknown = [k for k in data if k not in names]
        missing = [k for k in names if k not in data]
        if unknown or missing:
            raise ExpspecError(f"{where}: unknown keys {unknown} / missing keys {missing}")
        return cls(**data).validate(where)

    def validate(self, where: str = "train config") -> "TrainConfig":
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ExpspecError(f"{where}: {name} must be {expected}, got {getattr(self, name)!r}")

        for f in fields(self):  # types first, so the range checks below compare numbers
            value = getattr(self, f.name)
            if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                need(abs(value) <= 2**1023, f.name, "a number within the float range")
                setattr(self, f.name, float(value))
            elif not (isinstance(value, {"int": int, "float": float, "str": str}[f.type])
                      and not isinstance(value, bool)):
                need(False, f.name, f"of type {f.type}")
        for name in ("depth", "aspect_ratio", "head_dim", "max_seq_len", "device_batch_size",
                     "total_batch_size", "eval_tokens"):
            need(getattr(self, name) >= 1, name, "an int >= 1")
        need(self.eval_tokens > self.max_seq_len, "eval_tokens", f"> max_seq_len ({self.max_seq_len})")
        need(self.num_iterations > 0 or 0 < self.target_param_data_ratio < math.inf, "target_param_data_ratio",
             "finite and > 0 when num_iterations <= 0")
        need(self.seed >= 0, "seed", ">= 0")
        for name in ("learning_rate", "matrix_lr", "embedding_lr", "unembedding_lr"):
            need(math.isfinite(getattr(self, name)) and getattr(self, name) > 0, name, "finite and > 0")
        need(self.weight_decay >= 0, "weight_decay", ">= 0")
        for name in ("warmup_ratio", "warmdown_ratio", "final_lr_frac"):
            need(0.0 <= getattr(self, name) <= 1.0, name, "in [0, 1]")
        need(self.warmup_ratio + self.warmdown_ratio <= 1.0, "warmdown_ratio", "<= 1 - warmup_ratio")
        need(self.target_metric == "val_bpb", "target_metric", "'val_bpb'")
        need(self.checkpoint_every >= 0, "checkpoint_every", ">= 0")
        need(self.keep_checkpoints >= 1, "keep_checkpoints", ">= 1")
        need(self.device.split(":")[0] in ("cpu", "cuda", "mps"), "device", "cpu, cuda, cuda:N or mps")
        need(self.total_batch_size % (self.device_batch_size * self.max_seq_len) == 0, "total_batch_size",
             f"a multiple of device_batch_size x max_seq_len = {self.device_batch_size * self.max_seq_len}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def horizon(cfg: TrainConfig, n_scaling_params: int) -> int:
    """Optimizer steps: num_iterations if > 0, else floor(ratio x n_scaling_params / batch), >= 1."""
    if cfg.num_iterations > 0:
        return cfg.num_iterations
    return max(1, math.floor(cfg.target_param_data_ratio * n_scaling_params / cfg.total_batch_size))
