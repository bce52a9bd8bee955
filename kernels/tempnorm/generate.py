"""Phase 1: starting points, their hidden states, and gen_number completions each.

``generate_records`` is the kernel; ``generate_data`` the step (contexts file ->
experiment_data.jsonl + sidecar) that the CLI and the pytest fixture both run.

Per context (the seed's steps, batched over contexts by the shared sampler):

1. sample ``initial_wander`` tokens after the context (temperature 1, no top-k/top-p)
   -> ``starting_point`` = context + wander;
2. ``starting_hidden_vector``: hidden_states[-1] at the starting point's last token, float16;
3. ``gen_number`` completions of exactly ``gen_length`` tokens from the starting point,
   by pure sampling (EOS does not stop a completion: every L needs L tokens);
4. ``model_probs``: each sampled token's probability under the untempered softmax;
5. the tempnorm statistics of every eval length (tempnorms.py).

The context is tokenized with the tokenizer's special tokens (as the seed did: OPT's
``</s>`` BOS), then handed to the sampler as ids, so the recorded starting point ids are
exactly what the model saw. Seeds: the wander and the completions each draw from the
sampler's per-(prompt, sample) streams under their own seed, a hash of (stream name,
``common.seed``): seed s's completions never replay seed s + 1's wander, as ``s``/``s + 1``
did. The weights load in the ``dtype`` knob's precision (float32 by default, as the seed
ran; transformers 5 would otherwise keep a checkpoint's own dtype, float16 for opt-125m).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from expspec.kernels.errors import ExpspecError
from expspec.kernels.models.pretrained import model_fingerprint
from expspec.kernels.models.sampler import hidden_at_last_token, sample
from expspec.kernels.progress import advance, stage
from expspec.kernels.provenance import file_fingerprint, git_commit
from expspec.kernels.tempnorm.contexts import read_contexts
from expspec.kernels.tempnorm.records import check_output_paths, write_experiment_data
from expspec.kernels.tempnorm.tempnorms import tempnorm_summary

# the knobs phase 1 reads (its cache key, with common.seed and the device; the contexts
# file and the model's files enter as fingerprints)
GENERATE_KNOBS = ("model", "dtype", "max_contexts", "initial_wander", "gen_length", "gen_number", "eval_lengths",
                  "alpha", "max_batch")


def _stream_seed(seed: int, stream: str) -> int:
    """A 63-bit sampler seed for one named stream of one ``common.seed``."""
    digest = hashlib.sha256(f"expspec.tempnorm/{stream}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def wander_seed(seed: int) -> int:
    return _stream_seed(seed, "wander")


def completion_seed(seed: int) -> int:
    return _stream_seed(seed, "completions")


def torch_dtype(name: str) -> torch.dtype:
    """``"float32"`` -> ``torch.float32`` (the dtype knob's words are torch's names)."""
    return getattr(torch, name)


def generation_config(tempnorm: Mapping, seed: int) -> dict:
    """The knobs phase 1 reads, as its sidecar records them and phase 2 copies them (the
    contexts file is an input: its path and fingerprint are in the sidecar's ``inputs``)."""
    return {"tempnorm": {k: tempnorm[k] for k in GENERATE_KNOBS}, "common": {"seed": seed}}


def _progress(label: str):
    """The sampler's on_batch hook as a progress line ("completion sequences 96/320")."""
    def on_batch(done: int, total: int, seconds: float, tokens: int) -> None:
        advance(label, done, total)
    return on_batch


def generate_records(model, tokenizer, contexts: Sequence[str], *, initial_wander: int, gen_number: int,
                     gen_length: int, eval_lengths: Sequence[int], alpha: float, seed: int, max_batch: int,
                     model_name: str, dtype: str = "float32") -> tuple[list[dict], dict]:
    """(one record per context, generation stats: tokens, seconds, tokens per second).
    ``dtype`` is only echoed into each record's config (the model is loaded by the caller)."""
    context_ids = [list(tokenizer(c)["input_ids"]) for c in contexts]
    began = time.perf_counter()
    with stage("wander"):
        if initial_wander > 0:
            wanders = sample(model, tokenizer, context_ids, n=1, max_new_tokens=initial_wander, temperature=1.0,
                             seed=wander_seed(seed), max_batch=max_batch, stop_at_eos=False,
                             on_batch=_progress("wander sequences"))
            starts = [ids + w.token_ids for ids, w in zip(context_ids, wanders)]
        else:
            starts = [list(ids) for ids in context_ids]
    with stage("hidden states"):
        hidden = hidden_at_last_token(model, tokenizer, starts, max_batch=max_batch).to(torch.float16)
    with stage("completions"):
        completions = sample(model, tokenizer, starts, n=gen_number, max_new_tokens=gen_length, temperature=1.0,
                             seed=completion_seed(seed), max_batch=max_batch, stop_at_eos=False,
                             on_batch=_progress("completion sequences"))
    seconds = time.perf_counter() - began
    echo = {"model": model_name, "gen_length": gen_length, "eval_lengths": list(eval_lengths),
            "gen_number": gen_number, "alpha": alpha, "initial_wander": initial_wander, "seed": seed,
            "dtype": dtype}  # the seed's echo + dtype
    records = []
    for i, (context, start) in enumerate(zip(contexts, starts)):
        mine = completions[i * gen_number:(i + 1) * gen_number]
        assert all(s.prompt_index == i and len(s.token_ids) == gen_length for s in mine)
        generations = [{"generation_index": j, "token_ids": s.token_ids, "generated_text": s.text,
                        "model_probs": s.token_probs} for j, s in enumerate(mine)]
        record = {
            "context_index": i,
            "initial_context": context,
            "starting_point": tokenizer.decode(start, skip_special_tokens=True),
            "starting_point_token_ids": start,
            "starting_hidden_vector_dtype": "float16",
            "starting_hidden_vector": hidden[i].tolist(),
            "generations": generations,
            "config": echo,
        }
        record.update(tempnorm_summary([g["model_probs"] for g in generations], eval_lengths, alpha))
        records.append(record)
    tokens = len(contexts) * (initial_wander + gen_number * gen_length)
    stats = {"tokens_generated": tokens, "seconds": round(seconds, 3), "tok_per_s": round(tokens / seconds, 2),
             "hidden_size": int(hidden.shape[1]), "n_contexts": len(contexts)}
    return records, stats


def generate_data(tempnorm: Mapping, seed: int, contexts_file: str | Path, output_file: str | Path, *,
                  device: str, load_model: Callable | None = None) -> dict:
    """Phase 1 end to end: check the inputs and that both outputs can be written, load the
    model in ``tempnorm["dtype"]``, generate, write the data file and its sidecar (model,
    dtype, alpha, seeds, git commit, the knobs phase 1 read, input fingerprints, speed).
    ``load_model(name, device=, dtype=)`` defaults to load_causal_lm. Returns the sidecar."""
    output_file = Path(output_file)
    contexts = read_contexts(contexts_file, tempnorm["max_contexts"])
    check_output_paths(output_file)
    if load_model is None:
        from expspec.kernels.models.pretrained import load_causal_lm as load_model
    began = time.perf_counter()
    want = torch_dtype(tempnorm["dtype"])
    model, tokenizer = load_model(tempnorm["model"], device=device, dtype=want)
    if model.dtype != want:
        raise ExpspecError(f"tempnorm.dtype: asked for {tempnorm['dtype']}, the model loaded as {model.dtype}")
    load_seconds = time.perf_counter() - began
    records, stats = generate_records(
        model, tokenizer, contexts, initial_wander=tempnorm["initial_wander"], gen_number=tempnorm["gen_number"],
        gen_length=tempnorm["gen_length"], eval_lengths=tempnorm["eval_lengths"], alpha=tempnorm["alpha"],
        seed=seed, max_batch=tempnorm["max_batch"], model_name=tempnorm["model"], dtype=tempnorm["dtype"])
    meta = {
        "model": tempnorm["model"], "dtype": tempnorm["dtype"], "model_dtype": str(model.dtype),
        "alpha": tempnorm["alpha"], "eval_lengths": list(tempnorm["eval_lengths"]),
        "gen_length": tempnorm["gen_length"], "gen_number": tempnorm["gen_number"],
        "initial_wander": tempnorm["initial_wander"], "hidden_size": stats["hidden_size"],
        "seeds": {"seed": seed, "wander": wander_seed(seed), "completions": completion_seed(seed)},
        "device": device, "torch_threads": torch.get_num_threads(), "git_commit": git_commit(),
        "config": generation_config(tempnorm, seed),
        "inputs": {"contexts_file": str(contexts_file), "contexts_fingerprint": file_fingerprint(contexts_file),
                   "n_contexts": len(contexts), "model_fingerprint": model_fingerprint(tempnorm["model"])},
        "generation": {**stats, "model_load_seconds": round(load_seconds, 3)},
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return write_experiment_data(output_file, records, meta)
