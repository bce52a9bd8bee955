"""Batched sampling with per-token probabilities: the one sampler of best-of-N and TempNorm.

Why this module exists: best-of-N needs many samples per prompt and TempNorm needs the
probability of every generated token under the model's own distribution. One loop over
the model's forward with a KV cache gives both, batched:

    sample(model, tokenizer, prompts, *, n, max_new_tokens, temperature=1.0, top_p=1.0,
           top_k=0, seed=0, max_batch=32, stop_at_eos=True) -> list[Sample]
        prompts: list[str] (tokenized as-is, no chat template) or list[list[int]] token ids.
        len(prompts) * n Samples, ordered by (prompt, sample).
    hidden_at_last_token(model, tokenizer, prompts) -> Tensor [len(prompts), hidden]
        final-layer hidden state (hidden_states[-1], after the final norm) at each prompt's
        last token.
    apply_chat_template(tokenizer, text) -> list[int]
        a user message -> ids with the generation prompt (plain ids if the tokenizer has no
        chat template, e.g. pythia).

``Sample`` fields: prompt_index, token_ids (generated only, up to and including EOS),
text (decoded, special tokens skipped), token_probs (each token's probability under the
UNTEMPERED softmax: temperature 1, no top-k/top-p), logprob (sum of their logs),
sampling_logprob (sum of log-probs under the distribution actually sampled from),
finished (stopped at EOS), latency_s (wall time of its batch / sequences in the batch),
token_entropies (entropy of the untempered distribution at each generated position).
``on_batch(done, total, seconds, tokens)`` (optional) hears about each finished batch.

How it runs. Sequences (prompt i, sample j) are cut into batches of at most
``max_batch``; each batch prefills its distinct prompts once (left-padded, attention
mask, position ids counted over real tokens) and copies their KV cache to every sample
of the prompt, so n samples cost one prefill, not n. Then one token per step for the
whole batch; a sequence that reaches EOS leaves the batch (its cache rows are dropped).
``temperature=0`` is greedy decoding (sampling_logprob 0).

Determinism. Sample (i, j) draws by inverse CDF from its own stream of uniforms, seeded
by (seed, i, j): the same seed gives the same samples, and a sample does not depend on
``max_batch`` or on which other prompts share its batch, except through float rounding
of the logits under different padding (~1e-6), which can flip a draw that lands within
that distance of a CDF boundary (rare; never seen in the tests). Two models sampled with
the same seed and prompts use the same uniforms (common random numbers): where their
distributions agree, they draw the same tokens, so their difference is the models'.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from expspec.kernels.errors import ExpspecError


@dataclass
class Sample:
    prompt_index: int  # index into the prompts passed in
    token_ids: list[int]  # generated tokens only (up to and including EOS if it stopped there)
    text: str  # decoded generated tokens (skip_special_tokens=True)
    token_probs: list[float]  # per token: probability under the untempered softmax
    logprob: float  # sum of log(token_probs)
    sampling_logprob: float  # sum of log-probs under the distribution actually sampled from
    finished: bool  # stopped at EOS
    latency_s: float  # wall time of the batch this sample came from, divided evenly
    # per token: entropy (nats) of the untempered distribution it was drawn at; [0] is the
    # prompt's first-token entropy, the same for every sample of a prompt
    token_entropies: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def apply_chat_template(tokenizer, text: str) -> list[int]:
    """A user message -> token ids ending with the assistant's generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        return list(tokenizer(text, add_special_tokens=True)["input_ids"])
    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                        tokenize=True)
    if hasattr(ids, "keys"):  # transformers >= 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return [int(t) for t in ids]


def _token_lists(tokenizer, prompts: Sequence) -> list[list[int]]:
    out = []
    for i, p in enumerate(prompts):
        ids = list(tokenizer(p, add_special_tokens=False)["input_ids"]) if isinstance(p, str) else [int(t) for t in p]
        if not ids:
            raise ExpspecError(f"sample: prompt {i} is empty (no tokens)")
        out.append(ids)
    return out


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad) if pad is not None else 0


def _eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    for source in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if source is None:
            continue
        ids.update([source] if isinstance(source, int) else source)
    return {int(i) for i in ids}


def left_pad(token_lists: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids), left-padded; positions count real tokens."""
    width = max(len(t) for t in token_lists)
    ids = torch.full((len(token_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), width), dtype=torch.long)
    for row, tokens in enumerate(token_lists):
        ids[row, width - len(tokens):] = torch.tensor(tokens, dtype=torch.long)
        mask[row, width - len(tokens):] = 1
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    return ids.to(device), mask.to(device), positions.to(device)


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _forward_kwargs(model) -> tuple[str, bool]:
    """(name of the forward's KV-cache argument, whether it takes logits_to_keep):
    transformers >= 5 says ``cache``, earlier versions ``past_key_values``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model
    params = inspect.signature(base.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "logits_to_keep" in params


def _uniforms(seed: int, prompt_index: int, sample_index: int, steps: int) -> np.ndarray:
    """The stream of uniforms of sample (prompt_index, sample_index)."""
    return np.random.default_rng(np.random.SeedSequence([seed, prompt_index, sample_index])).random(steps)


def _sampling_distribution(logits: torch.Tensor, temperature: float, top_p: float, top_k: int
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(probabilities over the candidates, their token ids or None for the whole vocabulary),
    float64. Candidates are sorted by probability when top-k/top-p cut the tail."""
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    if top_k <= 0 and top_p >= 1.0:
        return probs, None
    k = probs.shape[-1] if top_k <= 0 else min(top_k, probs.shape[-1])
    top, order = torch.topk(probs, k, dim=-1)  # sorted, descending
    if top_p < 1.0:
        before = top.cumsum(-1) - top  # mass of the strictly more likely candidates
        top = top.masked_fill(before >= top_p, 0.0)  # keep the smallest set reaching top_p
    return top / top.sum(-1, keepdim=True), order


def _draw(probs: torch.Tensor, order: torch.Tensor | None, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse-CDF draw per row: (token ids, their probability under ``probs``)."""
    cdf = probs.cumsum(-1)
    pick = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    pick = pick.clamp_max(probs.shape[-1] - 1)
    while True:  # never land on a zero-probability candidate (u at a flat stretch of the CDF)
        zero = probs.gather(-1, pick.unsqueeze(-1)).squeeze(-1) <= 0
        if not zero.any():
            break
        pick = torch.where(zero, pick - 1, pick).clamp_min(0)
    q = probs.gather(-1, pick.unsqueeze(-1)).squeeze(-1)
    tokens = pick if order is None else order.gather(-1, pick.unsqueeze(-1)).squeeze(-1)
    return tokens, q


def _check_args(n, max_new_tokens, temperature, top_p, top_k, max_batch) -> None:
    if n < 1:
        raise ExpspecError(f"sample: n (samples per prompt) must be >= 1, got {n}")
    if max_new_tokens < 1:
        raise ExpspecError(f"sample: max_new_tokens must be >= 1, got {max_new_tokens}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ExpspecError(f"sample: temperature must be >= 0 (0 = greedy), got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ExpspecError(f"sample: top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ExpspecError(f"sample: top_k must be >= 0 (0 = off), got {top_k}")
    if max_batch < 1:
        raise ExpspecError(f"sample: max_batch must be >= 1, got {max_batch}")


@torch.no_grad()
def _generate_batch(model, token_lists, rows, *, max_new_tokens, temperature, top_p, top_k, seed,
                    stop_at_eos, pad_id, eos_ids) -> list[dict]:
    """One batch: rows = [(prompt_index, sample_index)]; returns one raw record per row."""
    from transformers import DynamicCache

    device = _model_device(model)
    cache_kw, last_only = _forward_kwargs(model)
    distinct = sorted({p for p, _ in rows})
    ids, mask, positions = left_pad([token_lists[p] for p in distinct], pad_id, device)
    cache = DynamicCache()  # filled in place by every forward
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                **{cache_kw: cache}, **({"logits_to_keep": 1} if last_only else {}))
    expand = torch.tensor([distinct.index(p) for p, _ in rows], device=device)
    cache.batch_select_indices(expand)  # every sample of a prompt shares its prefill
    logits = out.logits[:, -1, :].float()[expand]
    mask, next_pos = mask[expand], positions[expand, -1] + 1
    u_all = torch.from_numpy(np.stack([_uniforms(seed, p, s, max_new_tokens) for p, s in rows])).to(device)
    active = torch.arange(len(rows), device=device)  # row of each still-running sequence
    tokens = [[] for _ in rows]
    probs = [[] for _ in rows]
    entropies = [[] for _ in rows]
    sampling_lp = [0.0] * len(rows)
    finished = [False] * len(rows)
    for step in range(max_new_tokens):
        logp = torch.log_softmax(logits.double(), dim=-1)  # untempered: what token_probs report
        if temperature == 0:
            chosen = logits.argmax(-1)
            q = torch.ones(len(chosen), dtype=torch.float64, device=device)
        else:
            dist, order = _sampling_distribution(logits, temperature, top_p, top_k)
            chosen, q = _draw(dist, order, u_all[active, step])
        p_chosen = logp.gather(-1, chosen.unsqueeze(-1)).squeeze(-1).exp()
        entropy = torch.special.entr(logp.exp()).sum(-1)
        keep = []
        for slot, (row, tok, p, qq, h) in enumerate(zip(active.tolist(), chosen.tolist(), p_chosen.tolist(),
                                                        q.tolist(), entropy.tolist())):
            tokens[row].append(tok)
            probs[row].append(p)
            entropies[row].append(h)
            sampling_lp[row] += math.log(qq)
            if tok in eos_ids:
                finished[row] = True
            if not (stop_at_eos and finished[row]):
                keep.append(slot)
        if step == max_new_tokens - 1 or not keep:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            active, chosen, mask, next_pos = active[index], chosen[index], mask[index], next_pos[index]
        mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=device)], dim=-1)
        out = model(input_ids=chosen.unsqueeze(-1), attention_mask=mask, position_ids=next_pos.unsqueeze(-1),
                    use_cache=True, **{cache_kw: cache})
        logits, next_pos = out.logits[:, -1, :].float(), next_pos + 1
    return [{"tokens": tokens[r], "probs": probs[r], "entropies": entropies[r], "sampling_logprob": sampling_lp[r],
             "finished": finished[r]} for r in range(len(rows))]


def sample(model, tokenizer, prompts: Sequence, *, n: int, max_new_tokens: int, temperature: float = 1.0,
           top_p: float = 1.0, top_k: int = 0, seed: int = 0, max_batch: int = 32,
           stop_at_eos: bool = True,
           on_batch: Callable[[int, int, float, int], None] | None = None) -> list[Sample]:
    """n samples of each prompt, ordered by (prompt, sample); see the module docstring."""
    _check_args(n, max_new_tokens, temperature, top_p, top_k, max_batch)
    token_lists = _token_lists(tokenizer, prompts)
    pad_id, eos_ids = _pad_id(tokenizer), _eos_ids(model, tokenizer)
    rows = [(p, s) for p in range(len(token_lists)) for s in range(n)]
    samples: list[Sample] = []
    for start in range(0, len(rows), max_batch):
        batch = rows[start:start + max_batch]
        began = time.perf_counter()
        raw = _generate_batch(model, token_lists, batch, max_new_tokens=max_new_tokens, temperature=temperature,
                              top_p=top_p, top_k=top_k, seed=seed, stop_at_eos=stop_at_eos, pad_id=pad_id,
                              eos_ids=eos_ids)
        seconds = time.perf_counter() - began
        for (p, _), r in zip(batch, raw):
            logprob = float(sum(math.log(max(x, 1e-300)) for x in r["probs"]))
            samples.append(Sample(p, r["tokens"], tokenizer.decode(r["tokens"], skip_special_tokens=True),
                                  r["probs"], logprob, float(r["sampling_logprob"]), r["finished"],
                                  seconds / len(batch), r["entropies"]))
        if on_batch is not None:
            on_batch(min(start + max_batch, len(rows)), len(rows), seconds, sum(len(r["tokens"]) for r in raw))
    return samples


@torch.no_grad()
def teacher_forced_probs(model, tokenizer, prompts: Sequence, continuations: Sequence[Sequence[int]],
                         max_batch: int = 32) -> list[list[float]]:
    """Probability of each continuation token given the prompt and the tokens before it
    (untempered softmax), from one left-padded forward pass per batch: the reference the
    sampler's token_probs are checked against, and a scorer of given answers."""
    token_lists = _token_lists(tokenizer, prompts)
    if len(continuations) != len(token_lists):
        raise ExpspecError(f"teacher_forced_probs: {len(token_lists)} prompts but {len(continuations)} continuations")
    device, out = _model_device(model), []
    for start in range(0, len(token_lists), max_batch):
        full = [token_lists[i] + [int(t) for t in continuations[i]]
                for i in range(start, min(start + max_batch, len(token_lists)))]
        ids, mask, positions = left_pad(full, _pad_id(tokenizer), device)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float(), -1)
        width = ids.shape[1]
        for row, i in enumerate(range(start, start + len(full))):
            m = len(continuations[i])
            cols = torch.arange(width - m - 1, width - 1, device=device)  # the logits predicting each token
            out.append(logp[row, cols, ids[row, width - m:]].exp().tolist())
    return out


@torch.no_grad()
def hidden_at_last_token(model, tokenizer, prompts: Sequence, max_batch: int = 32) -> torch.Tensor:
    """[len(prompts), hidden]: hidden_states[-1] (after the final norm) at each prompt's last token."""
    token_lists = _token_lists(tokenizer, prompts)
    device, rows = _model_device(model), []
    for start in range(0, len(token_lists), max_batch):
        ids, mask, positions = left_pad(token_lists[start:start + max_batch], _pad_id(tokenizer), device)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, output_hidden_states=True)
        rows.append(out.hidden_states[-1][:, -1, :].float())  # left padding: the last column is real
    return torch.cat(rows).cpu()
