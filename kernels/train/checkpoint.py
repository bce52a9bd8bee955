"""Trainer checkpoints: model, optimizer, RNG and the loop state, written atomically.

A resumed run must be the run that was interrupted: every config field but the few in
``RESUME_MAY_CHANGE`` has to match the checkpoint's, or the resume is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from expspec.kernels.errors import ExpspecError
from expspec.kernels.train.config import TrainConfig

# Fields a resumed run may change; any other difference from the checkpoint is refused.
RESUME_MAY_CHANGE = {"resume_from", "checkpoint_every", "keep_checkpoints", "device", "device_batch_size",
                     "eval_every", "target_threshold"}
CHECKPOINT_FORMAT = "expspec-train-2"  # 2: optimizer state is {name: state} (Muon + AdamW)


def write_checkpoint(path: Path, state: dict) -> None:
    import torch

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str, cfg: TrainConfig, device) -> dict:
    import torch

    if not Path(path).is_file():
        raise ExpspecError(f"train config: resume_from {path}: file not found")
    state = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise ExpspecError(f"resume_from {path}: not an expspec trainer checkpoint of format {CHECKPOINT_FORMAT} "
                           f"(found {found!r})")
    for key, value in state["config"].items():
        if key not in RESUME_MAY_CHANGE and getattr(cfg, key) != value:
            raise ExpspecError(f"resume_from {path}: checkpoint has {key}={value!r}, "
                               f"config has {getattr(cfg, key)!r}")
    return state
