"""Hero's stage checkpoints: loading one (a Stage A we trained, or a user's proven one,
``hero.resume_from``) after checking that its latent prefix has this config's shape, and
continuing its AdamW state for the prefix.

A checkpoint is ``train_stage``'s ``stage_<a|b>.pt``: {"format", "stage", "global_step",
"latent": the prefix's state_dict, "optimizer": AdamW's state_dict, "lora" (Stage B)}.

A mid-stage checkpoint (``hero.checkpoint_every``) is ``stage_<a|b>_step_NNNNNN.pt`` in the
stage's folder, the same fields plus what continuing bit-exactly needs (``"resume"``: the
step, the epoch's batch order and the next micro-batch group, the RNG states, the running
numbers, the diagnostics files' byte lengths); the newest ``hero.keep_checkpoints`` stay.
"""

from __future__ import annotations

import os
import pickle
import random
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from expspec.kernels.errors import ExpspecError
from expspec.kernels.hero.latent import LatentPrefix
from expspec.kernels.hero.model import HeroModels, add_lora

CHECKPOINT_FORMAT = "expspec-hero-1"

# latent-prefix tensor -> (dimension, what sets it): the prefix shape a checkpoint must match
PREFIX_SHAPE = {"queries": ((0, "latent_len"), (1, "d_z")), "enc_proj.weight": ((1, "encoder hidden size"),),
                "emb_mean": ((0, "decoder hidden size"),)}


def check_prefix_shape(saved: Any, latent: LatentPrefix, checkpoint: Path) -> None:
    """A checkpoint's prefix must have this config's shape: one line naming the file and the
    field (latent_len, d_z, the decoder's or encoder's hidden size) that differs."""
    if not isinstance(saved, Mapping):
        raise ExpspecError(f"hero: checkpoint {checkpoint}: no latent prefix state in it")
    expected = latent.state_dict()
    for name, dims in PREFIX_SHAPE.items():
        if not isinstance(saved.get(name), torch.Tensor) or saved[name].dim() != expected[name].dim():
            raise ExpspecError(f"hero: checkpoint {checkpoint}: latent prefix tensor {name!r} missing or "
                               f"malformed")
        for dim, field in dims:
            have, want = saved[name].shape[dim], expected[name].shape[dim]
            if have != want:
                raise ExpspecError(f"hero: checkpoint {checkpoint}: {field} is {have} in the checkpoint, "
                                   f"{want} in this config")
    for name, tensor in expected.items():  # anything else: the first tensor that differs
        if not isinstance(saved.get(name), torch.Tensor) or saved[name].shape != tensor.shape:
            have = tuple(saved[name].shape) if isinstance(saved.get(name), torch.Tensor) else "missing"
            raise ExpspecError(f"hero: checkpoint {checkpoint}: latent prefix tensor {name!r} is {have}, "
                               f"expected {tuple(tensor.shape)}")


def stage_state(stage: str, models: HeroModels, latent: LatentPrefix, optimizer: torch.optim.Optimizer,
                global_step: int) -> dict:
    """A stage checkpoint: the prefix's (and Stage B's LoRA) weights and the AdamW state."""
    state = {"format": CHECKPOINT_FORMAT, "stage": stage, "global_step": global_step,
             "latent": latent.state_dict(), "optimizer": optimizer.state_dict()}
    if stage == "B":
        from peft import get_peft_model_state_dict

        state["lora"] = get_peft_model_state_dict(models.lora)
    return state


def load_stage(models: HeroModels, latent: LatentPrefix, checkpoint: Path, cfg: Mapping[str, Any]) -> dict:
    """Load a stage checkpoint into ``latent`` (and the LoRA weights of a Stage B one)."""
    if not checkpoint.is_file():
        raise ExpspecError(f"hero: checkpoint {checkpoint}: file not found")
    try:
        state = torch.load(checkpoint, map_location=models.device, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:  # not a torch file
        raise ExpspecError(f"hero: checkpoint {checkpoint}: not a torch checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ExpspecError(f"hero: {checkpoint} is not a hero checkpoint of format {CHECKPOINT_FORMAT}")
    check_prefix_shape(state.get("latent"), latent, checkpoint)
    latent.load_state_dict(state["latent"])
    if "lora" in state:
        from peft import set_peft_model_state_dict

        if models.lora is None:
            add_lora(models, cfg)
        set_peft_model_state_dict(models.lora, state["lora"])
    return state


def load_prefix_optimizer(optimizer: torch.optim.Optimizer, prefix_params: Sequence[torch.nn.Parameter],
                          saved: Mapping) -> None:
    """Continue a Stage A checkpoint's AdamW state (moments, step) for the prefix's parameters;
    its parameters are the prefix's, in ``latent.parameters()`` order."""
    try:
        ids = [i for group in saved["param_groups"] for i in group["params"]]
        states = saved["state"]
    except (KeyError, TypeError):
        raise ExpspecError("hero: the checkpoint's optimizer state is not an AdamW state_dict") from None
    if len(ids) != len(prefix_params):
        raise ExpspecError(f"hero: the checkpoint's optimizer state covers {len(ids)} tensors, the prefix has "
                           f"{len(prefix_params)}")
    for i, param in zip(ids, prefix_params):
        if i not in states:
            continue
        state = {key: value.detach().clone().to(param.device if key != "step" else value.device)
                 for key, value in states[i].items() if isinstance(value, torch.Tensor)}
        if state.get("exp_avg") is None or state["exp_avg"].shape != param.shape:
            raise ExpspecError(f"hero: the checkpoint's optimizer state does not fit prefix tensor "
                               f"{tuple(param.shape)}")
        optimizer.state[param] = state


def mid_checkpoint(out_dir: Path, stage: str, step: int) -> Path:
    """Where a stage's mid-stage checkpoint after (stage-local) ``step`` goes."""
    return Path(out_dir) / f"stage_{stage.lower()}_step_{step:06d}.pt"


def mid_checkpoints(out_dir: Path, stage: str) -> list[Path]:
    """A stage's mid-stage checkpoints in ``out_dir``, oldest first."""
    pattern = re.compile(rf"stage_{stage.lower()}_step_(\d+)\.pt")
    found = [(int(m.group(1)), p) for p in Path(out_dir).glob(f"stage_{stage.lower()}_step_*.pt")
             if (m := pattern.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def latest_mid_checkpoint(out_dir: Path, stage: str) -> Path | None:
    """The newest mid-stage checkpoint an unfinished stage resumes from (None: start over)."""
    found = mid_checkpoints(out_dir, stage)
    return found[-1] if found else None


def prune_mid_checkpoints(out_dir: Path, stage: str, keep: int) -> None:
    """Keep the newest ``keep`` mid-stage checkpoints (0: none, once the stage's own is written),
    and no temp file a killed write left."""
    found = mid_checkpoints(out_dir, stage)
    for path in found[:max(len(found) - keep, 0)]:
        path.unlink(missing_ok=True)
    for tmp in Path(out_dir).glob(f".stage_{stage.lower()}*.pt.*.tmp"):
        tmp.unlink(missing_ok=True)


def rng_state(gen: torch.Generator) -> dict:
    """The stage's generator and the global RNGs (torch CPU, CUDA, Python's)."""
    return {"stage": gen.get_state(), "torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(gen: torch.Generator, rng: Mapping) -> None:
    """Put back what ``rng_state`` saved."""
    gen.set_state(rng["stage"].cpu())
    torch.set_rng_state(rng["torch"].cpu())
    random.setstate(_as_tuples(rng["python"]))
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def file_size(path: Path) -> int | None:
    """A file's length in bytes (None: no such file)."""
    return path.stat().st_size if path.is_file() else None


def truncate_to(path: Path, size: int | None) -> None:
    """A diagnostics file back to its length at a mid-stage checkpoint (None: it did not exist)."""
    if size is None:
        path.unlink(missing_ok=True)
    elif file_size(path) is None or file_size(path) < size:
        raise ExpspecError(f"hero: {path} is shorter than at the checkpoint it resumes from ({size} bytes)")
    else:
        os.truncate(path, size)
