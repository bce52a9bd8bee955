"""Best-of-N distillation: imitation pairs from collector runs.

Per prompt, the target is the correct sample the model itself found most likely (highest
sum logprob): what best-of-N with a verifier would return, in the model's own words. Given
several runs, logprobs are compared only within a run (each is a sum under that run's own
model, so across models they are not on one scale): the runs are taken in the order given
and the first that solved the prompt supplies its most likely correct sample. ``keep_unsolved`` adds the prompts no sample solved,
with the gold answer as the target, marked ``source=gold``; without it they are left out.
A sample that ended at EOS keeps its EOS in training (``finished``), so the adapter
learns to stop where the sample stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from expspec.kernels.atomic_io import jsonable, jsonl_objects, write_text_atomic
from expspec.kernels.bon.collector import Run
from expspec.kernels.errors import ExpspecError


def distill_pairs(runs: Sequence[Run], *, keep_unsolved: bool, exclude: Iterable[str] = ()) -> list[dict]:
    """One pair per prompt id (first seen order): the first solving run's most likely correct
    sample, else (``keep_unsolved``) the gold answer. ``exclude``: prompt ids kept out of
    training (held out to measure generalisation)."""
    if not runs:
        raise ExpspecError("distill: no run files given")
    best: dict[str, dict] = {}
    prompts: dict[str, dict] = {}
    skip = set(exclude)
    for run in runs:
        for record in run.prompts:
            if record["id"] in skip:
                continue
            prompts.setdefault(record["id"], record)
            correct = [s for s in record["samples"] if s["score"] > 0]
            if record["id"] in best or not correct:
                continue
            sample = max(correct, key=lambda s: s["logprob"])  # first of equals: the earliest drawn
            best[record["id"]] = {"id": record["id"], "prompt": record["prompt"], "target": sample["text"],
                                  "finished": bool(sample["finished"]), "source": "best_of_n",
                                  "logprob": sample["logprob"], "run": run.path.name}
    pairs = []
    for pid, record in prompts.items():
        if pid in best:
            pairs.append(best[pid])
        elif keep_unsolved:
            pairs.append({"id": pid, "prompt": record["prompt"], "target": record["answer"], "finished": True,
                          "source": "gold", "logprob": None, "run": None})
    return pairs


def write_pairs(path: str | Path, pairs: list[dict]) -> Path:
    return write_text_atomic(path, "".join(json.dumps(jsonable(p)) + "\n" for p in pairs))


def read_pairs(path: str | Path) -> list[dict]:
    pairs = []
    for number, row in jsonl_objects(path, "pairs file"):
        if not all(isinstance(row.get(k), str) for k in ("prompt", "target")):
            raise ExpspecError(f"pairs file {path} line {number}: expected an object with text 'prompt' and 'target'")
        pairs.append(row)
    if not pairs:
        raise ExpspecError(f"pairs file {path}: no pairs")
    return pairs
