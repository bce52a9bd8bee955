"""nanochat's learning-rate shape: linear warmup, a flat top, linear warmdown.

Why this shape: a long flat top followed by a linear cool-down (the "warmup-stable-
decay" family) is what nanochat's ``base_train`` uses, and its final stretch is where
val_bpb drops fastest. Copying the shape keeps our tiny runs comparable with nanochat
runs of the same recipe, and keeps the time-to-target of a truncated run honest:
a run stopped before its warmdown has not had its cool-down.

The multiplier for optimizer step ``it`` (0-based) of a ``num_iterations`` horizon::

    warmup   = round(warmup_ratio * T)        it <  warmup:        (it + 1) / warmup
    warmdown = round(warmdown_ratio * T)      it <= T - warmdown:  1
                                              else:  p = (T - it) / warmdown
                                                     p + (1 - p) * final_lr_frac
"""

from __future__ import annotations

from expspec.kernels.errors import ExpspecError


def lr_multiplier(it: int, num_iterations: int, warmup_ratio: float, warmdown_ratio: float,
                  final_lr_frac: float) -> float:
    """The factor applied to the base learning rate at step ``it`` (nanochat's formula)."""
    if num_iterations < 1:
        raise ExpspecError(f"lr schedule: num_iterations must be >= 1, got {num_iterations}")
    warmup = round(warmup_ratio * num_iterations)
    warmdown = round(warmdown_ratio * num_iterations)
    if it < warmup:
        return (it + 1) / warmup
    if it <= num_iterations - warmdown:
        return 1.0
    progress = (num_iterations - it) / warmdown
    return progress + (1.0 - progress) * final_lr_frac
