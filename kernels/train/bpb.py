"""Bits per byte on a fixed validation set, and the token windows models read.

Why bits per byte: mean loss per token depends on the tokenizer (a bigger vocabulary
packs more text per token, so its per-token loss is higher for the same model
quality). Dividing the summed loss by the bytes the targets stand for gives a number
comparable across tokenizers and across nanochat and builtin runs:

    val_bpb = sum(nats over targets) / (ln 2 * sum(bytes of targets))

Special tokens (0 bytes, e.g. EOS) are left out of both sums, as nanochat does. The
set is fixed: the first ``eval_tokens`` of the val stream cut into non-overlapping
windows, so every evaluation of a run (and of every run) reads the same targets.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np

from expspec.kernels.errors import ExpspecError


def token_windows(stream: np.ndarray, starts: np.ndarray, seq_len: int, device):
    """(inputs, next-token targets) int64 tensors from windows of seq_len + 1 tokens at ``starts``."""
    import torch

    rows = np.stack([np.asarray(stream[s:s + seq_len + 1], dtype=np.int64) for s in starts])
    t = torch.from_numpy(rows).to(device)
    return t[:, :-1], t[:, 1:]


def evaluate_bpb(model, val_tokens: np.ndarray, token_bytes, seq_len: int, batch_size: int,
                 eval_tokens: int, device, autocast=nullcontext) -> float:
    """Bits per byte on the fixed validation set: sum(nats) / (ln 2 * sum(bytes)).

    Targets worth 0 bytes (special tokens) are left out of both sums, as in nanochat.
    """
    import torch
    import torch.nn.functional as F

    n_windows = (min(eval_tokens, len(val_tokens)) - 1) // seq_len
    if n_windows < 1:
        raise ExpspecError(f"evaluate_bpb: eval_tokens and the val stream must hold at least "
                           f"seq_len + 1 = {seq_len + 1} tokens")
    nats = torch.zeros((), dtype=torch.float64, device=device)
    n_bytes = torch.zeros((), dtype=torch.int64, device=device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for first in range(0, n_windows, batch_size):
            starts = np.arange(first, min(first + batch_size, n_windows)) * seq_len
            x, y = token_windows(val_tokens, starts, seq_len, device)
            with autocast():
                logits = model(input_ids=x).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")
            b = token_bytes[y.flatten()]
            nats += torch.where(b > 0, loss, torch.zeros_like(loss)).sum(dtype=torch.float64)
            n_bytes += b.sum()
    model.train(was_training)
    if n_bytes.item() == 0:
        raise ExpspecError("evaluate_bpb: the validation windows hold no byte-bearing targets")
    return float(nats.item() / (math.log(2) * n_bytes.item()))
