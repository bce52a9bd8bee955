"""Hero's three losses over the first K answer positions, as pure functions of logits.

``logits``: [B, K, V], the decoder's predictions of answer tokens 0..K-1 (position i reads
the prefix, the anchor and answer tokens < i); ``targets``: [B, K] gold token ids with -100
where an answer is shorter than K. ``first`` is the CE of answer token 0 (the one the
checklist's first_acc measures), ``kce`` the mean CE over the K tokens, ``kd`` the
distillation term tau^2 * KL(teacher || student) of the temperature-softened distributions
(Hinton et al. 2015), averaged over the valid positions.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

IGNORE = -100


def first_token_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, 0].float(), targets[:, 0])


def k_token_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            tau: float) -> torch.Tensor:
    """tau^2 * KL(teacher_tau || student_tau), mean over positions whose target is valid.

    0 when the two logits are equal; gradients flow to the student only."""
    valid = (targets != IGNORE).float()
    log_student = F.log_softmax(student_logits.float() / tau, dim=-1)
    log_teacher = F.log_softmax(teacher_logits.detach().float() / tau, dim=-1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(-1)  # [B, K]
    return tau * tau * (kl * valid).sum() / valid.sum().clamp_min(1.0)


def first_token_accuracy(logits: torch.Tensor, targets: torch.Tensor, top: int = 1) -> float:
    """Share of rows whose gold first token is among the top-``top`` predictions."""
    best = logits[:, 0].topk(top, dim=-1).indices
    return float((best == targets[:, :1]).any(-1).float().mean())
