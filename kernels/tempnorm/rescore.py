"""The check that the recorded numbers are the model's: a teacher-forced pass over the same tokens.

The sampler records each token's probability from a left-padded, KV-cached batch that
decodes one token per step. Here each starting point runs again, alone and unpadded: one
forward pass over its tokens (whose last hidden state is compared with the stored
float16 vector), then all its completions as one teacher-forced chunk each on that
prefix's cache (repeated per completion), so that

    p_t = softmax(logits predicting token t, given the start and tokens < t)[token_t]

is compared with ``model_probs``. ``full_sequence=True`` runs start + completion as one
sequence instead (gen_number times the prefix's cost; tests check both agree).
Agreement to ~1e-6 (float32 rounding of different kernels) proves the data came from
this model and these tokens.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from expspec.kernels.progress import advance


@torch.no_grad()
def teacher_forced(model, start_ids: Sequence[int], continuations: Sequence[Sequence[int]],
                   full_sequence: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities [n, len] of each continuation's tokens, hidden state at the start's last
    token) for continuations of one equal length after ``start_ids``.

    Deliberately not the sampler's ``teacher_forced_probs``: that one runs the sampler's own
    machinery (left padding, attention mask, position ids counted over real tokens), so a
    bug there (a position off by one, a pad token attended to) would shift the recorded
    and the rescored numbers alike and the check would pass anyway. Here one sequence runs
    alone, unpadded, with no mask and the model's default positions: no code in common with
    the sampler but the model itself, so agreement shows the numbers are the model's."""
    device = next(model.parameters()).device
    start = torch.tensor([list(start_ids)], dtype=torch.long, device=device)
    conts = torch.tensor([list(c) for c in continuations], dtype=torch.long, device=device)
    if full_sequence:
        ids = torch.cat([start.expand(len(conts), -1), conts], dim=1)
        out = model(input_ids=ids, output_hidden_states=True, use_cache=False)
        logits = out.logits[:, start.shape[1] - 1:-1, :]
        hidden = out.hidden_states[-1][0, start.shape[1] - 1, :]
    else:
        prefix = model(input_ids=start, output_hidden_states=True, use_cache=True)
        hidden = prefix.hidden_states[-1][0, -1, :]
        logits = prefix.logits[:, -1:, :].expand(len(conts), 1, -1)  # predicts every first token
        if conts.shape[1] > 1:
            cache = prefix.past_key_values
            cache.batch_repeat_interleave(len(conts))  # the prefix's keys and values, once per completion
            chunk = model(input_ids=conts[:, :-1], past_key_values=cache, use_cache=True)
            logits = torch.cat([logits, chunk.logits], dim=1)
    logp = torch.log_softmax(logits.float(), dim=-1)
    probs = logp.gather(-1, conts.unsqueeze(-1)).squeeze(-1).exp()
    return probs.double().cpu().numpy(), hidden.float().double().cpu().numpy()


def rescore_records(model, records: Sequence[Mapping], full_sequence: bool = False) -> dict:
    """Largest differences between the records and a teacher-forced pass, overall and per record."""
    rows = []
    for done, record in enumerate(records):
        advance("rescored records", done, len(records))
        gens = record["generations"]
        probs, hidden = teacher_forced(model, record["starting_point_token_ids"], [g["token_ids"] for g in gens],
                                       full_sequence)
        recorded = np.asarray([g["model_probs"] for g in gens], dtype=np.float64)
        stored = np.asarray(record["starting_hidden_vector"], dtype=np.float64)
        rows.append({"context_index": record["context_index"],
                     "max_abs_prob_diff": float(np.abs(probs - recorded).max()),
                     "max_abs_hidden_diff": float(np.abs(hidden - stored).max()),
                     # relative to the vector's scale: float16 rounding is <= 2^-11 of it; the wrong
                     # layer or token would differ by O(1)
                     "hidden_diff_rel_to_max": float(np.abs(hidden - stored).max() / np.abs(hidden).max()),
                     "n_tokens": int(recorded.size)})
    advance("rescored records", len(records), len(records))
    return {"n_records": len(rows), "n_tokens": sum(r["n_tokens"] for r in rows), "model_dtype": str(model.dtype),
            "max_abs_prob_diff": max(r["max_abs_prob_diff"] for r in rows),
            "max_abs_hidden_diff": max(r["max_abs_hidden_diff"] for r in rows),
            "hidden_diff_rel_to_max": max(r["hidden_diff_rel_to_max"] for r in rows),
            "per_record": rows}
