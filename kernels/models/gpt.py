"""The built-in GPTs that Lane B trains from scratch, both sized the way nanochat sizes its models.

model_dim = depth x aspect_ratio rounded up to a multiple of head_dim, one head per
head_dim, untied embedding and unembedding, no biases.

* ``nanochat_gpt`` (the default, ``build_nanochat_gpt``): nanochat's own architecture
  (nanochat/gpt.py): rotary embeddings, QK-norm, parameter-free RMSNorm (after the
  embedding, before each sub-block, before the head), a relu^2 MLP of width 4d, logits
  soft-capped at 15 with tanh, and nanochat's init (zero lm_head and output projections).
  A block holds 4d^2 (attention) + 8d^2 (MLP) = 12 d^2 parameters, as nanochat's does,
  so nanochat's param:data ratio (10.5) means the same thing here. The trainer gives it
  nanochat's optimizer split: Muon on the block matrices, AdamW on wte and lm_head.
* ``tiny_gpt`` (``build_tiny_gpt``): a random-init transformers Llama (SwiGLU MLP of
  width 4d, RMSNorm with gains, no QK-norm, no soft-cap), trained with plain AdamW. Its
  blocks hold 16 d^2 parameters, 1.33x nanochat's at equal depth: NOT nanochat's shape.
  Kept because the Lane B entropy model (lane_b/stats.py) still asks for it by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from expspec.kernels.errors import ExpspecError

NANOCHAT_GPT = "nanochat_gpt"
LLAMA_GPT = "tiny_gpt"
BUILTIN_MODELS = (NANOCHAT_GPT, LLAMA_GPT)
SOFTCAP = 15.0  # nanochat's logit soft-cap: logits = 15 tanh(logits / 15)
ROPE_BASE = 10_000.0


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


# --------------------------------------------------------------------------- nanochat GPT

@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    n_layer: int
    n_head: int
    n_embd: int
    sequence_len: int
    softcap: float = SOFTCAP

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    # the names the trainer (MFU) and HF-minded callers read
    @property
    def hidden_size(self) -> int:
        return self.n_embd

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layer


@dataclass
class GPTOutput:
    """What ``model(input_ids=x)`` returns: ``.logits`` [B, T, V], float32, soft-capped."""

    logits: object


def norm(x):
    return F.rms_norm(x, (x.size(-1),))  # parameter-free RMSNorm


def apply_rotary_emb(x, cos, sin):  # x: [B, T, H, D]; rotate the two halves (nanochat)
    d = x.shape[3] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos], 3).to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.head_dim
        d = config.n_embd
        self.c_q = nn.Linear(d, d, bias=False)
        self.c_k = nn.Linear(d, d, bias=False)
        self.c_v = nn.Linear(d, d, bias=False)
        self.c_proj = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_head, self.head_dim)
        q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)
        q, k = norm(q), norm(k)  # QK-norm
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())  # relu^2


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.attn = CausalSelfAttention(config)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin):
        x = x + self.attn(norm(x), cos, sin)
        return x + self.mlp(norm(x))


class NanochatGPT(nn.Module):
    """nanochat's GPT (see the module docstring); ``forward(input_ids)`` -> GPTOutput."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(config.vocab_size, config.n_embd),
            "h": nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
        })
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # rotary tables for 10x the training length, as nanochat (cheap); not saved
        cos, sin = self._rotary(10 * config.sequence_len)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _rotary(self, seq_len: int):
        head_dim = self.config.head_dim
        inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
        return freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]

    @torch.no_grad()
    def init_weights(self) -> None:
        """nanochat's init: Linear N(0, 1/sqrt(fan_in) * min(1, sqrt(fan_out / fan_in))),
        embedding N(0, 1), lm_head and every block's output projections zero."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                fan_out, fan_in = module.weight.shape
                std = 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in))
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.lm_head.weight)
        for block in self.transformer.h:
            nn.init.zeros_(block.attn.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.weight)

    def get_input_embeddings(self):
        return self.transformer.wte

    def get_output_embeddings(self):
        return self.lm_head

    def num_scaling_params(self) -> dict:
        """nanochat's ``GPT.num_scaling_params`` groups (this model has no value
        embeddings and no scalars); nanochat's base_train scales data by
        transformer_matrices + lm_head."""
        wte = self.transformer.wte.weight.numel()
        lm_head = self.lm_head.weight.numel()
        matrices = sum(p.numel() for p in self.transformer.h.parameters())
        return {"wte": wte, "lm_head": lm_head, "transformer_matrices": matrices, "scalars": 0,
                "total": wte + lm_head + matrices}

    def forward(self, input_ids):
        T = input_ids.shape[1]
        if T > self.cos.shape[1]:
            raise ExpspecError(f"nanochat GPT: sequence of {T} tokens is longer than the rotary "
                               f"tables ({self.cos.shape[1]}); build it with a larger max_seq_len")
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        x = norm(self.transformer.wte(input_ids))
        for block in self.transformer.h:
            x = block(x, cos, sin)
        logits = self.lm_head(norm(x)).float()
        cap = self.config.softcap
        return GPTOutput(logits=cap * torch.tanh(logits / cap))


def build_nanochat_gpt(depth: int, aspect_ratio: int, head_dim: int, vocab_size: int,
                       max_seq_len: int, seed: int | None = None):
    """nanochat's GPT at nanochat's sizing, nanochat-initialised (seeded when ``seed`` is given)."""
    shape = tiny_gpt_shape(depth, aspect_ratio, head_dim)
    if head_dim % 2:
        raise ExpspecError(f"nanochat GPT: head_dim must be even (rotary pairs), got {head_dim}")
    config = GPTConfig(vocab_size=vocab_size, n_layer=shape.depth, n_head=shape.n_head,
                       n_embd=shape.model_dim, sequence_len=max_seq_len)
    if seed is not None:
        torch.manual_seed(seed)
    model = NanochatGPT(config)
    model.init_weights()
    return model


# --------------------------------------------------------------------------- Llama (tiny_gpt)

def build_tiny_gpt(depth: int, aspect_ratio: int, head_dim: int, vocab_size: int,
                   max_seq_len: int, seed: int | None = None):
    """A random-init SwiGLU Llama (rotary, RMSNorm gains, untied head, no bias): 16 d^2 per block."""
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
