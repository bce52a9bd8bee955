"""The trainer's optimizers: nanochat's Muon + AdamW split for the built-in GPT, AdamW otherwise.

Why a split: nanochat trains its GPT with Muon (momentum, then Newton-Schulz
orthogonalisation of the update) on the 2-D block matrices and AdamW on the token
embedding and the unembedding, each with its own LR; nanochat's param:data ratio and
LR shape were tuned for that pair, so a built-in run that claims nanochat's recipe uses it:

* Muon (``torch.optim.Muon``, ``adjust_lr_fn="original"`` = nanochat's
  lr x sqrt(max(1, rows / cols))) on every matrix of the blocks at ``matrix_lr``,
  Nesterov momentum warmed from 0.85 to 0.95 over the first 300 steps (nanochat's
  ``get_muon_momentum``);
* AdamW (betas 0.8, 0.95, eps 1e-10) on ``lm_head`` at ``unembedding_lr`` and on
  ``wte`` at ``embedding_lr``, both x (model_dim / 768)^-0.5 (nanochat tuned them at
  d = 768 and scales them so).

Any other model (``tiny_gpt``, an HF id) gets one AdamW (betas 0.9, 0.95) at
``learning_rate``. ``weight_decay`` applies to every matrix, never to vectors. Every
group keeps its base LR as ``initial_lr``; the schedule multiplies it each step.
"""

from __future__ import annotations

from expspec.kernels.errors import ExpspecError

MUON_MOMENTUM = (0.85, 0.95, 300)  # nanochat: from 0.85 to 0.95 over the first 300 steps
ADAMW_REFERENCE_DIM = 768  # nanochat's AdamW LRs are tuned at model_dim 768


def muon_momentum(step: int) -> float:
    start, end, steps = MUON_MOMENTUM
    frac = min(step / steps, 1.0)
    return (1 - frac) * start + frac * end


def adamw_dim_scale(model_dim: int) -> float:
    return (model_dim / ADAMW_REFERENCE_DIM) ** -0.5


class Optimizers:
    """Several torch optimizers stepped, scheduled and checkpointed as one."""

    def __init__(self, optimizers: dict):
        self.optimizers = dict(optimizers)  # name -> torch optimizer
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["initial_lr"] = group["lr"]

    @property
    def param_groups(self) -> list:
        return [g for opt in self.optimizers.values() for g in opt.param_groups]

    def schedule(self, step: int, lr_multiplier: float) -> None:
        """Set every group's LR (initial_lr x multiplier) and Muon's momentum for ``step``."""
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * lr_multiplier
                if name == "muon":
                    group["momentum"] = muon_momentum(step)

    def step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or set(state) != set(self.optimizers):
            held = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ExpspecError(f"checkpoint optimizer state holds {held}, this run's optimizers are "
                               f"{sorted(self.optimizers)}")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])

    def describe(self) -> list[str]:
        """One line per group: optimizer, tensors, parameters, base LR."""
        return [f"{name:5s} {len(g['params']):3d} tensors {sum(p.numel() for p in g['params']):>12,} params "
                f"lr {g['initial_lr']:.6g}" for name, opt in self.optimizers.items() for g in opt.param_groups]


def build_optimizer(cfg, model) -> Optimizers:
    """nanochat's Muon + AdamW for the built-in nanochat GPT, one AdamW for anything else."""
    import torch

    wd = cfg.weight_decay
    if cfg.model == "nanochat_gpt":
        matrices = list(model.transformer.h.parameters())
        if any(p.dim() != 2 for p in matrices):
            raise ExpspecError("nanochat GPT: Muon needs every block parameter to be a matrix")
        scale = adamw_dim_scale(model.config.n_embd)
        adamw = torch.optim.AdamW(
            [{"params": list(model.lm_head.parameters()), "lr": cfg.unembedding_lr * scale},
             {"params": list(model.transformer.wte.parameters()), "lr": cfg.embedding_lr * scale}],
            betas=(0.8, 0.95), eps=1e-10, weight_decay=wd)
        muon = torch.optim.Muon(matrices, lr=cfg.matrix_lr, momentum=muon_momentum(0), nesterov=True,
                                weight_decay=wd, adjust_lr_fn="original")
        return Optimizers({"adamw": adamw, "muon": muon})
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    adamw = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=cfg.learning_rate, betas=(0.9, 0.95), eps=1e-8)
    return Optimizers({"adamw": adamw})
