"""The built-in GPT that Lane B trains from scratch: sized the way nanochat sizes its models.

model_dim = depth x aspect_ratio rounded up to a multiple of head_dim, one head per
head_dim, untied embedding and unembedding, no biases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from expspec.kernels.errors import ExpspecError


@dataclass(frozen=True)
class TinyGPTShape:
    depth: int
    model_dim: int
    n_head: int
    head_dim: int


def tiny_gpt_shape(depth: int, aspect_ratio: int, head_dim: int) -> TinyGPTShape:
    """nanochat sizing: model_dim = depth * aspect_ratio, rounded up to a multiple of head_dim."""
    if depth < 1 or aspect_ratio < 1 or head_dim < 1:
        raise ExpspecError(
            f"tiny GPT shape: depth, aspect_ratio and head_dim must be >= 1, "
            f"got {depth}, {aspect_ratio}, {head_dim}"
        )
    model_dim = math.ceil(depth * aspect_ratio / head_dim) * head_dim
    return TinyGPTShape(depth, model_dim, model_dim // head_dim, head_dim)


def build_tiny_gpt(depth: int, aspect_ratio: int, head_dim: int, vocab_size: int,
                   max_seq_len: int, seed: int | None = None):
    """A random-init Llama-architecture causal LM (rotary, RMSNorm, untied head, no bias)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = tiny_gpt_shape(depth, aspect_ratio, head_dim)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.model_dim,
        intermediate_size=4 * shape.model_dim,
        num_hidden_layers=shape.depth,
        num_attention_heads=shape.n_head,
        num_key_value_heads=shape.n_head,
        head_dim=shape.head_dim,
        max_position_embeddings=max_seq_len,
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    if seed is not None:
        torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    return model
