"""Data parallelism for hero's stages: each rank trains its share of every micro-batch.

Why not DistributedDataParallel: the trainable weights (the prefix, LoRA inside the frozen
decoder) are not one module whose forward DDP could wrap, and a stage's losses are means
over a micro-batch's rows (first token) or its valid answer tokens (K-token CE, KD). So each
rank takes a contiguous slice of the micro-batch, scales its means by its share of the
*global* rows / valid tokens (``share``), and after the backward passes of an optimizer step
the gradients are summed over ranks (``all_reduce_grads``): the sum of the ranks' losses is
the one-process loss of the whole micro-batch, and so is its gradient, up to float
summation order. Every rank draws the same random numbers (order, scheduled-sampling coins)
from the same seed, so they agree on everything but their slice. One process: no-ops.

The exception: LoRA dropout (``hero.lora_dropout`` > 0, Stage B) draws its masks from each
rank's own torch RNG, so with ``hero.nproc_per_node`` > 1 the ranks' masks differ from the
ones one process would draw: Stage B under DDP with dropout is a different (equally valid)
stochastic estimator of the same gradient, not the one-process computation bit for bit.
Stage A (no LoRA) and ``lora_dropout = 0`` are.
"""

from __future__ import annotations

from typing import Sequence

import torch


def world() -> tuple[int, int]:
    """(rank, world size) of the process group, (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(n: int, rank: int, size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` rows (the first ``n % size`` ranks get one more)."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def all_reduce_grads(params: Sequence[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the ranks (one flat all_reduce). A parameter no rank
    has a gradient for keeps ``grad = None`` (AdamW skips it, as one process would); one that
    only some ranks have (a rank whose share was empty) gets the others' sum."""
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    present = [torch.ones(1, dtype=g.dtype, device=g.device) if p.grad is not None
               else torch.zeros(1, dtype=g.dtype, device=g.device) for p, g in zip(params, grads)]
    flat = torch.cat([g.reshape(-1) for g in grads] + present)
    dist.all_reduce(flat)
    offset, flags = 0, flat[-len(params):].tolist() if params else []
    for param, grad, flag in zip(params, grads, flags):
        param.grad = flat[offset:offset + grad.numel()].view_as(grad).clone() if flag > 0 else None
        offset += grad.numel()


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Scalars summed over the ranks."""
    import torch.distributed as dist

    flat = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(flat)
    return flat.tolist()


def gather_rows(rows_per_batch: list[list], size: int) -> list[list]:
    """Each micro-batch's rows from every rank, in the one-process order (rank slices are contiguous)."""
    gathered = gather_objects(rows_per_batch, size)
    return [row for batch in range(len(rows_per_batch)) for rank_rows in gathered for row in rank_rows[batch]]


def gather_objects(value, size: int) -> list:
    """Every rank's ``value``, in rank order (one process: ``[value]``)."""
    if size == 1:
        return [value]
    import torch.distributed as dist

    gathered: list = [None] * size
    dist.all_gather_object(gathered, value)
    return gathered
