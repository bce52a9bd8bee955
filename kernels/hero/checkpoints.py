"""Hero's stage checkpoints: loading one (a Stage A we trained, or a user's proven one,
``hero.resume_from``) after checking that its latent prefix has this config's shape, and
continuing its AdamW state for the prefix.

A checkpoint is ``train_stage``'s ``stage_<a|b>.pt``: {"format", "stage", "global_step",
"latent": the prefix's state_dict, "optimizer": AdamW's state_dict, "lora" (Stage B)}.
"""

from __future__ import annotations

import pickle
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
