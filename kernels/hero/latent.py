"""The latent prefix: a frozen sentence encoder's token states -> M soft tokens for the decoder.

Why this shape: the encoder (all-MiniLM-L6-v2 at smoke) reads "Context: ...\\nQuestion: ..."
once; M learned queries cross-attend over its last-layer token states (one attention layer
at width ``d_z``), an MLP adapter maps each to the decoder's hidden size, and the result is
scaled *per dimension* to the decoder's input-embedding table: every output dimension gets
that dimension's mean and spread over the vocabulary. The issue's prototype measured why:
rescaling the prefix to the embeddings' overall RMS gave first-step gradient norms of
120-4000 (a few dimensions of SmolLM2's embeddings are far larger than the rest); per-dimension
scaling kept them at 24-52.

The encoder is frozen, so its states are computed once per text (``encode_texts``) and the
training steps only run the queries, the adapter and the decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class EncodedTexts:
    """Frozen encoder states of a list of texts, padded to the longest: [N, T, d] and [N, T]."""

    states: torch.Tensor
    mask: torch.Tensor  # True where a token is

    def take(self, index: Sequence[int] | torch.Tensor, device: str | torch.device = "cpu"):
        index = torch.as_tensor(index, dtype=torch.long)
        mask = self.mask[index]
        width = int(mask.sum(1).max())  # trim the batch to its own longest text
        return self.states[index, :width].to(device), mask[:, :width].to(device)


@torch.no_grad()
def encode_texts(encoder, tokenizer, texts: Sequence[str], batch_size: int = 64,
                 max_length: int = 512) -> EncodedTexts:
    """Last-layer token states of the frozen encoder for every text (float32, CPU)."""
    device = next(encoder.parameters()).device
    chunks, masks, width = [], [], 0
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt").to(device)
        hidden = encoder(**batch).last_hidden_state.float().cpu()
        chunks.append(hidden)
        masks.append(batch["attention_mask"].bool().cpu())
        width = max(width, hidden.shape[1])
    states = torch.cat([F.pad(h, (0, 0, 0, width - h.shape[1])) for h in chunks])
    mask = torch.cat([F.pad(m, (0, width - m.shape[1])) for m in masks])
    return EncodedTexts(states, mask)


def embedding_stats(embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation of a [vocab, hidden] embedding table."""
    table = embedding.detach().float()
    return table.mean(0), table.std(0)


class LatentPrefix(nn.Module):
    """Encoder states [B, T, d_enc] (+ mask) -> soft tokens [B, latent_len, d_dec]."""

    def __init__(self, d_enc: int, d_dec: int, latent_len: int, d_z: int, emb_mean: torch.Tensor,
                 emb_std: torch.Tensor, n_heads: int = 4):
        super().__init__()
        heads = n_heads if d_z % n_heads == 0 else 1
        self.queries = nn.Parameter(torch.randn(latent_len, d_z) * d_z ** -0.5)
        self.enc_proj = nn.Linear(d_enc, d_z)
        self.attn = nn.MultiheadAttention(d_z, heads, batch_first=True)
        self.norm = nn.LayerNorm(d_z)
        self.adapter = nn.Sequential(nn.Linear(d_z, 2 * d_z), nn.GELU(), nn.Linear(2 * d_z, d_dec))
        self.register_buffer("emb_mean", emb_mean.detach().float().clone())
        self.register_buffer("emb_std", emb_std.detach().float().clone())

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keys = self.enc_proj(states)
        queries = self.queries.unsqueeze(0).expand(states.shape[0], -1, -1)
        attended, _ = self.attn(queries, keys, keys, key_padding_mask=~mask, need_weights=False)
        latent = self.norm(attended + queries)
        # per-dimension scaling: the adapter's output, in units of each dimension's spread over
        # the vocabulary, around that dimension's mean (no normalisation after the adapter: a
        # LayerNorm there divides by the adapter's small initial output and multiplies the
        # gradients reaching it - first-step norms near 500 here, against ~50 without)
        return self.emb_mean + self.emb_std * self.adapter(latent)
