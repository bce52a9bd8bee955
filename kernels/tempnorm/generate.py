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
exactly what the model saw. Seeds: the wander draws with ``seed``, the completions with
``seed + 1`` (the sampler's per-(prompt, sample) streams).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from expspec.kernels.errors import ExpspecError
from expspec.kernels.models.sampler import hidden_at_last_token, sample
from expspec.kernels.progress import stage
from expspec.kernels.provenance import file_fingerprint, git_commit
from expspec.kernels.tempnorm.contexts import read_contexts
from expspec.kernels.tempnorm.records import write_experiment_data
from expspec.kernels.tempnorm.tempnorms import tempnorm_summary

# the knobs phase 1 reads (its cache key; the contexts file enters as a fingerprint)
GENERATE_KNOBS = ("model", "max_contexts", "initial_wander", "gen_length", "gen_number", "eval_lengths", "alpha",
                  "max_batch")


def wander_seed(seed: int) -> int:
    return seed


def completion_seed(seed: int) -> int:
    return seed + 1


def generate_records(model, tokenizer, contexts: Sequence[str], *, initial_wander: int, gen_number: int,
                     gen_length: int, eval_lengths: Sequence[int], alpha: float, seed: int, max_batch: int,
                     model_name: str) -> tuple[list[dict], dict]:
    """(one record per context, generation stats: tokens, seconds, tokens per second)."""
    context_ids = [list(tokenizer(c)["input_ids"]) for c in contexts]
    began = time.perf_counter()
    with stage("wander"):
        if initial_wander > 0:
            wanders = sample(model, tokenizer, context_ids, n=1, max_new_tokens=initial_wander, temperature=1.0,
                             seed=wander_seed(seed), max_batch=max_batch, stop_at_eos=False)
            starts = [ids + w.token_ids for ids, w in zip(context_ids, wanders)]
        else:
            starts = [list(ids) for ids in context_ids]
    with stage("hidden states"):
        hidden = hidden_at_last_token(model, tokenizer, starts, max_batch=max_batch).to(torch.float16)
    with stage("completions"):
        completions = sample(model, tokenizer, starts, n=gen_number, max_new_tokens=gen_length, temperature=1.0,
                             seed=completion_seed(seed), max_batch=max_batch, stop_at_eos=False)
    seconds = time.perf_counter() - began
    echo = {"model": model_name, "gen_length": gen_length, "eval_lengths": list(eval_lengths),
            "gen_number": gen_number, "alpha": alpha, "initial_wander": initial_wander, "seed": seed}
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
                  device: str, config: Mapping, load_model: Callable | None = None) -> dict:
    """Phase 1 end to end: check the inputs, load the model, generate, write the data file
    and its sidecar (model, alpha, seeds, git commit, config, input fingerprints, speed).
    Returns the sidecar's content."""
    output_file = Path(output_file)
    if output_file.is_dir():
        raise ExpspecError(f"--output-file {output_file}: is a directory, expected a file path")
    contexts = read_contexts(contexts_file, tempnorm["max_contexts"])
    if load_model is None:
        from expspec.kernels.models.pretrained import load_causal_lm as load_model
    began = time.perf_counter()
    model, tokenizer = load_model(tempnorm["model"], device=device)
    load_seconds = time.perf_counter() - began
    records, stats = generate_records(
        model, tokenizer, contexts, initial_wander=tempnorm["initial_wander"], gen_number=tempnorm["gen_number"],
        gen_length=tempnorm["gen_length"], eval_lengths=tempnorm["eval_lengths"], alpha=tempnorm["alpha"],
        seed=seed, max_batch=tempnorm["max_batch"], model_name=tempnorm["model"])
    meta = {
        "model": tempnorm["model"], "alpha": tempnorm["alpha"], "eval_lengths": list(tempnorm["eval_lengths"]),
        "gen_length": tempnorm["gen_length"], "gen_number": tempnorm["gen_number"],
        "initial_wander": tempnorm["initial_wander"], "hidden_size": stats["hidden_size"],
        "seeds": {"seed": seed, "wander": wander_seed(seed), "completions": completion_seed(seed)},
        "device": device, "torch_threads": torch.get_num_threads(), "git_commit": git_commit(), "config": config,
        "inputs": {"contexts_file": str(contexts_file), "contexts_fingerprint": file_fingerprint(contexts_file),
                   "n_contexts": len(contexts)},
        "generation": {**stats, "model_load_seconds": round(load_seconds, 3)},
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_experiment_data(output_file, records, meta)
    return meta
