"""Hero's schedules as pure functions of the optimizer step: sampling, first-token weight, LR.

Scheduled sampling (Bengio et al. 2015, "Scheduled Sampling for Sequence Prediction
with Recurrent Neural Networks"): a decoder trained only on gold prefixes never sees
its own mistakes, then at inference one wrong token derails the rest (the "thethethe"
loops). So at step i each answer token's *input* is the gold token with probability
eps_i, else the model's own argmax from the previous position:

    linear           eps_i = max(eps_min, k - c i)
    exponential      eps_i = k^i                 (0 < k <= 1)
    inverse sigmoid  eps_i = k / (k + exp(i/k))  (k >= 1)

All three are floored at ``eps_min`` here (the plan's variant anneals 1.0 -> 0.5, i.e.
eps_min = 0.5, so the model never trains on its own tokens alone) and capped at 1.
In torch: ``inputs = torch.where(torch.rand(shape) < eps, gold, argmax)``.

The first-token weight multiplies the loss of the answer's first token, the token the
first_acc metric reads; the LR schedule is constant or a cosine decay (5e-5 -> 1e-6).
"""

from __future__ import annotations

import math

from expspec.kernels.errors import ExpspecError

SAMPLING_SCHEDULES = ("none", "linear", "exponential", "inverse_sigmoid")
FIRST_TOKEN_SCHEDULES = ("constant", "warmup", "cosine")
LR_SCHEDULES = ("constant", "cosine")


def check_sampling_schedule(schedule: str, k: float, c: float, eps_min: float, prefix: str = "") -> None:
    """Refuse parameters under which a schedule would not anneal from <= 1 towards eps_min."""
    if schedule not in SAMPLING_SCHEDULES:
        raise ExpspecError(f"{prefix}schedule: expected one of {', '.join(SAMPLING_SCHEDULES)}, got {schedule!r}")
    if not 0.0 <= eps_min <= 1.0:
        raise ExpspecError(f"{prefix}eps_min: expected a probability in [0, 1], got {eps_min}")
    if schedule == "linear" and not (k > 0 and c >= 0):
        raise ExpspecError(f"{prefix}k / {prefix}c: linear needs k > 0 and c >= 0, got k={k}, c={c}")
    if schedule == "exponential" and not 0 < k <= 1:
        raise ExpspecError(f"{prefix}k: exponential needs 0 < k <= 1 (eps = k^i), got {k}")
    if schedule == "inverse_sigmoid" and not k >= 1:
        raise ExpspecError(f"{prefix}k: inverse_sigmoid needs k >= 1 (eps = k / (k + exp(i/k))), got {k}")


def teacher_forcing_prob(step: int, schedule: str, k: float, c: float, eps_min: float) -> float:
    """eps_step: the probability of feeding the gold token (1.0 for ``none``, pure teacher forcing)."""
    check_sampling_schedule(schedule, k, c, eps_min)
    if step < 0:
        raise ExpspecError(f"teacher_forcing_prob: step must be >= 0, got {step}")
    if schedule == "none":
        return 1.0
    if schedule == "linear":
        eps = k - c * step
    elif schedule == "exponential":
        eps = k ** step
    else:
        eps = 0.0 if step / k > 700 else k / (k + math.exp(step / k))  # exp overflows past ~709
    return min(1.0, max(eps_min, eps))


def linear_decay_for(k: float, eps_min: float, steps: int) -> float:
    """The linear schedule's c that reaches eps_min exactly after ``steps`` optimizer steps."""
    if steps < 1:
        raise ExpspecError(f"linear_decay_for: steps must be >= 1, got {steps}")
    return max(k - eps_min, 0.0) / steps


def first_token_weight_at(step: int, total_steps: int, weight: float, schedule: str,
                          warmup_frac: float = 0.1) -> float:
    """The loss weight of the answer's first token at ``step`` (1 = like any other token).

    constant: ``weight`` throughout; warmup: linear from 1 to ``weight`` over the first
    ``warmup_frac`` of the run, then ``weight``; cosine: from ``weight`` down to 1 along a
    half cosine (emphasis while the first token is unlearned, plain CE by the end)."""
    if schedule not in FIRST_TOKEN_SCHEDULES:
        raise ExpspecError(f"first-token weight schedule: expected one of {', '.join(FIRST_TOKEN_SCHEDULES)}, "
                           f"got {schedule!r}")
    if schedule == "constant":
        return weight
    progress = min(max(step, 0) / max(total_steps, 1), 1.0)
    if schedule == "warmup":
        if warmup_frac <= 0 or progress >= warmup_frac:
            return weight
        return 1.0 + (weight - 1.0) * progress / warmup_frac
    return 1.0 + (weight - 1.0) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(step: int, total_steps: int, lr: float, schedule: str, lr_min: float = 0.0,
          warmup_steps: int = 0) -> float:
    """Learning rate at ``step`` (0-based) of ``total_steps``: a linear warmup to lr over the
    first ``warmup_steps`` (step i at lr * (i + 1) / warmup_steps), then constant, or cosine
    from lr to lr_min over the remaining steps."""
    if schedule not in LR_SCHEDULES:
        raise ExpspecError(f"lr schedule: expected one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")
    step = max(step, 0)
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


def optimizer_steps(samples: int, epochs: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps of a stage: micro-batches per epoch, grouped by gradient accumulation
    (a last, shorter group still steps), times epochs. Hero Stage B: 16000 samples / 32 = 500
    micro-batches, / 10 = 50 steps an epoch, x 10 epochs = 500 steps."""
    if min(samples, epochs, batch_size, grad_accum) < 1:
        raise ExpspecError(f"optimizer_steps: samples, epochs, batch_size, grad_accum must be >= 1, got "
                           f"{samples}, {epochs}, {batch_size}, {grad_accum}")
    micro_batches = math.ceil(samples / batch_size)
    return epochs * math.ceil(micro_batches / grad_accum)
