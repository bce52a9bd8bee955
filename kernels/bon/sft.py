"""LoRA SFT on best-of-N pairs (peft): the adapter that should move the emergence point.

The loss is next-token cross-entropy on the target tokens only (the prompt, wrapped in the
chat template as the collector wraps it, is context). ``initial_loss`` and ``final_loss``
are the mean per-token loss over every pair before and after training, in eval mode, so
"the loss fell" compares the same quantity. The adapter is written to
``<out_dir>/<name>/`` (adapter_config.json, adapter_model.safetensors, training.json and
``train_steps.jsonl``: one record per optimizer step, ``{"step", "mode": "train", "epoch",
"loss", "lr"}``, which the results history draws as the ``train/loss`` curve) through a
temporary folder: a killed run leaves no half adapter.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from expspec.kernels.atomic_io import jsonable, write_json_atomic, write_text_atomic
from expspec.kernels.bon.collector import read_run
from expspec.kernels.bon.distill import distill_pairs, write_pairs
from expspec.kernels.bon.pipeline import base_model, holdout_ids
from expspec.kernels.errors import ExpspecError

STEP_LOG = "train_steps.jsonl"  # the adapter folder's per-step log


def _examples(tokenizer, pairs: Sequence[dict], chat_template: bool) -> tuple[list[dict], list[tuple]]:
    """(the pairs trained on, their (prompt ids, target ids)): a pair whose target has no
    tokens is left out of both, so every count in the training record is over the same pairs."""
    from expspec.kernels.models.sampler import apply_chat_template

    kept, out = [], []
    for pair in pairs:
        prompt = apply_chat_template(tokenizer, pair["prompt"]) if chat_template else list(
            tokenizer(pair["prompt"])["input_ids"])
        target = list(tokenizer(pair["target"], add_special_tokens=False)["input_ids"])
        if pair.get("finished", True) and tokenizer.eos_token_id is not None:
            target.append(int(tokenizer.eos_token_id))
        if target:
            kept.append(pair)
            out.append((prompt, target))
    if not out:
        raise ExpspecError("sft: no pair has target tokens")
    return kept, out


def _batch(examples, pad_id: int, device):
    import torch

    width = max(len(p) + len(t) for p, t in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (prompt, target) in enumerate(examples):  # right-padded: positions start at 0
        seq = prompt + target
        ids[row, :len(seq)] = torch.tensor(seq)
        labels[row, len(prompt):len(seq)] = torch.tensor(target)
        mask[row, :len(seq)] = 1
    return ids.to(device), mask.to(device), labels.to(device)


def _token_loss_sum(model, examples, pad_id, device):
    """(sum of target-token cross-entropies, number of target tokens) of a batch."""
    import torch

    ids, mask, labels = _batch(examples, pad_id, device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                             ignore_index=-100, reduction="sum")
    return loss, int((target != -100).sum())


def _mean_loss(model, examples, pad_id, device, batch_size) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            loss, n = _token_loss_sum(model, examples[start:start + batch_size], pad_id, device)
            total, count = total + float(loss), count + n
    return total / count


def train_lora(pairs: Sequence[dict], base_model: str, out_dir: str | Path, name: str, *, lora_r: int,
               lora_alpha: int, lora_dropout: float, epochs: int, batch_size: int, learning_rate: float, seed: int,
               chat_template: bool, device: str, log: Callable[[str], None] = lambda line: None) -> dict:
    """Train a LoRA adapter on ``pairs`` and save it to ``out_dir/name``; returns the training record."""
    import torch
    from peft import LoraConfig, get_peft_model

    from expspec.kernels.models.pretrained import load_causal_lm
    from expspec.kernels.progress import advance

    if not pairs:
        raise ExpspecError("sft: no pairs to train on (no prompt was solved; try keep_unsolved)")
    started = time.time()
    torch.manual_seed(seed)
    model, tok = load_causal_lm(base_model, device=device)
    trained, examples = _examples(tok, pairs, chat_template)
    pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                             task_type="CAUSAL_LM"))
    initial = _mean_loss(model, examples, pad_id, device, batch_size)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    rng, epoch_losses, steps, step_log = random.Random(seed), [], 0, []
    total_steps = epochs * -(-len(examples) // batch_size)
    for epoch in range(epochs):
        model.train()
        order = list(range(len(examples)))
        rng.shuffle(order)
        total, count = 0.0, 0
        for start in range(0, len(order), batch_size):
            loss_sum, n = _token_loss_sum(model, [examples[i] for i in order[start:start + batch_size]], pad_id, device)
            optimizer.zero_grad()
            (loss_sum / n).backward()
            optimizer.step()
            batch_loss = float(loss_sum.detach())
            total, count, steps = total + batch_loss, count + n, steps + 1
            step_log.append({"step": steps, "mode": "train", "epoch": epoch + 1, "loss": batch_loss / n,
                             "lr": optimizer.param_groups[0]["lr"]})
            advance("bon sft steps", steps, total_steps)
        epoch_losses.append(total / count)
        log(f"sft epoch {epoch + 1}/{epochs}: train loss {epoch_losses[-1]:.4f}")
    final = _mean_loss(model, examples, pad_id, device, batch_size)
    record = {"name": name, "base_model": base_model, "pairs": len(trained),
              "pairs_without_target_tokens": len(pairs) - len(trained),
              "sources": {s: sum(p.get("source") == s for p in trained) for s in ("best_of_n", "gold")},
              "initial_loss": initial, "final_loss": final, "loss_drop": 1 - final / initial if initial > 0 else 0.0,
              "epoch_train_losses": epoch_losses, "steps": steps, "step_log": STEP_LOG, "lora_r": lora_r,
              "lora_alpha": lora_alpha, "lora_dropout": lora_dropout, "epochs": epochs, "batch_size": batch_size,
              "learning_rate": learning_rate, "seed": seed, "chat_template": chat_template,
              "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "seconds": time.time() - started}
    target = Path(out_dir) / name
    _save_adapter(model, record, step_log, target)
    record["adapter_dir"] = str(target)
    return record


def _save_adapter(model, record: dict, step_log: Sequence[dict], target: Path) -> None:
    """Write the adapter (weights, config, training record, step log) into a temporary folder
    beside ``target``, then rename it into place (an older adapter is renamed aside first and
    deleted after): a killed run leaves the old adapter or the new one, and readers see no
    adapter only between two renames."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    old = tmp.with_name(tmp.name + ".old")
    try:
        model.save_pretrained(tmp)
        write_json_atomic(tmp / "training.json", record)
        write_text_atomic(tmp / STEP_LOG, "".join(json.dumps(jsonable(r)) + "\n" for r in step_log))
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


def sft_knobs(bon: Mapping[str, Any], common: Mapping[str, Any]) -> dict:
    """train_lora's knob parameters from the [bon] table (the pipeline and the CLI)."""
    return {"lora_r": bon["lora_r"], "lora_alpha": bon["lora_alpha"], "lora_dropout": bon["lora_dropout"],
            "epochs": bon["sft_epochs"], "batch_size": bon["sft_batch_size"],
            "learning_rate": bon["sft_learning_rate"], "seed": common["seed"], "chat_template": bon["chat_template"]}


def step_adapter(bon: Mapping[str, Any], common: Mapping[str, Any], base_run: Path, out_dir: Path, device: str,
                 log: Callable[[str], None] = lambda line: None) -> dict:
    """The pipeline's adapter step: distill the base run into pairs.jsonl (the held-out
    prompts left out) and train the LoRA adapter into adapters/<name>/."""
    held_out = holdout_ids(bon, common)
    pairs = distill_pairs([read_run(base_run)], keep_unsolved=bon["keep_unsolved"], exclude=held_out)
    write_pairs(out_dir / "pairs.jsonl", pairs)
    record = train_lora(pairs, base_model(bon, common), out_dir / "adapters", bon["adapter_name"],
                        **sft_knobs(bon, common), device=device, log=log)
    record["adapter_dir"] = str(Path("adapters") / bon["adapter_name"])  # relative to the step's folder
    record["held_out_ids"] = held_out
    return record
