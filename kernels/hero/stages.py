"""Stage A (latent prefix: queries + adapter, decoder frozen) and Stage B (+ LoRA on the
decoder's attention), with the diagnostics the checklist reads, and the final evaluation.

One optimizer step = ``grad_accum`` micro-batches of ``batch_size``. The loss is
``w(step) * first + kce_weight * kce + kd_weight * kd`` (``losses``), w from the first-token
weight schedule; the learning rate follows ``lr_schedule`` over the stage (Stage A from
``lr``, Stage B from ``lora_lr``, both to ``lr_min`` when cosine, each after a linear warmup
over ``lr_warmup_frac`` of the stage - Adam's first steps at full rate sent the smoke run's
pre-clip grad norm to 1750 in Stage A and 681 in Stage B's first steps); Stage B trains the LoRA
weights and keeps training the prefix, at one rate). Scheduled sampling (Bengio et al.
2015) applies in Stage B: each of the first K answer inputs is the gold token with
probability eps(step), else the model's own greedy token, fed by a K-step chain (each step
sees what the chain fed before it, as at inference; no gradients through the choice).
Under torchrun each rank trains its share of every micro-batch (``ddp``) and rank 0 writes.
Every ``log_every`` steps a ``train`` record (means over the window; grad_norm is the
window's largest pre-clip norm, so a spike is never averaged away); every ``eval_every``
steps and at each epoch's end an ``eval`` record on the eval questions (first-token accuracy
teacher-forced; answer length and token diversity from greedy answers to the first 10). Steps
are numbered across stages (Stage B goes on from Stage A's last step).

Every ``checkpoint_every`` steps (0: never) rank 0 writes a mid-stage checkpoint
(``checkpoints.mid_checkpoint``); ``train_stage(..., resume=it)`` continues from it bit-exactly:
the weights, AdamW, the epoch's batch order and position, the stage's generator (order,
scheduled-sampling coins) and the global RNGs (LoRA dropout), the running numbers (the log
window, the epoch's losses, the largest grad norm), and the diagnostics files truncated back to
their length at that step, so no record is written twice.
"""

from __future__ import annotations

import inspect
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from expspec.kernels import progress
from expspec.kernels.atomic_io import write_json_atomic, write_text_atomic
from expspec.kernels.errors import ExpspecError
from expspec.kernels.hero import ddp, losses
from expspec.kernels.hero.checkpoints import file_size, load_prefix_optimizer, load_stage, mid_checkpoint, \
    prune_mid_checkpoints, restore_rng, rng_state, stage_state, truncate_to
from expspec.kernels.hero.diagnostics import append_epoch_record, append_step_record, first_token_histogram, \
    token_diversity
from expspec.kernels.hero.latent import LatentPrefix
from expspec.kernels.hero.model import HeroModels, QAData, add_lora, answer_logits, answer_text, generate_latent, \
    generate_text, prefix_embeds, targets_for, teacher_logits
from expspec.kernels.hero.schedules import first_token_weight_at, lr_at, optimizer_steps, teacher_forcing_prob
from expspec.kernels.hero.squad import eval_aggregates, prior_baselines
from expspec.kernels.train.checkpoint import write_checkpoint

DIAGNOSTIC_PREDICTIONS = 10  # greedy answers behind an eval record's length and diversity


def _stage_plan(cfg: Mapping[str, Any], stage: str, n_train: int) -> dict:
    samples = min(cfg["stage_a_samples" if stage == "A" else "stage_b_samples"], n_train)
    epochs = cfg["stage_a_epochs" if stage == "A" else "stage_b_epochs"]
    steps = optimizer_steps(samples, epochs, cfg["batch_size"], cfg["grad_accum"])
    return {"samples": samples, "epochs": epochs, "lr": cfg["lr"] if stage == "A" else cfg["lora_lr"],
            "steps": steps, "warmup": math.ceil(cfg["lr_warmup_frac"] * steps)}


@torch.no_grad()
def first_token_eval(models: HeroModels, latent: LatentPrefix, data: QAData, k: int, batch_size: int = 64) -> dict:
    """Teacher-forced eval: first-token top-1/top-5, the first and K-token CE, NLL per gold token."""
    hits1 = hits5 = 0
    first_ce = kce_sum = nll_sum = 0.0
    kce_tokens = nll_tokens = 0
    predicted: list[int] = []
    for start in range(0, len(data), batch_size):
        index = list(range(start, min(start + batch_size, len(data))))
        width = max(len(data.answer_ids[i]) for i in index)
        targets = targets_for(data, index, width)
        logits = answer_logits(models, prefix_embeds(models, latent, data, index), targets[:, :-1])
        tf = targets.to(logits.device)
        hits1 += losses.first_token_accuracy(logits, tf, 1) * len(index)
        hits5 += losses.first_token_accuracy(logits, tf, 5) * len(index)
        predicted.extend(logits[:, 0].argmax(-1).tolist())
        first_ce += float(losses.first_token_ce(logits, tf)) * len(index)
        ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tf.flatten(), ignore_index=losses.IGNORE,
                                               reduction="none").view(tf.shape)
        valid = tf != losses.IGNORE
        in_k = valid.clone()
        in_k[:, k:] = False
        kce_sum, kce_tokens = kce_sum + float(ce[in_k].sum()), kce_tokens + int(in_k.sum())
        answer_only = valid.clone()  # the answer's own tokens, not the EOS after it
        for row, i in enumerate(index):
            answer_only[row, len(data.answer_ids[i]) - 1:] = False
        nll_sum, nll_tokens = nll_sum + float(ce[answer_only].sum()), nll_tokens + int(answer_only.sum())
    n = len(data)
    return {"first_acc": hits1 / n, "first_acc_top5": hits5 / n, "first": first_ce / n,
            "kce": kce_sum / max(kce_tokens, 1), "nll_per_gold_token": nll_sum / max(nll_tokens, 1),
            "first_tokens": [models.tokenizer.decode([t]) for t in predicted]}


def _scheduled_inputs(models: HeroModels, prefix: torch.Tensor, targets: torch.Tensor, eps: float,
                      coins: torch.Tensor | None) -> torch.Tensor:
    """Answer inputs [B, K-1] by scheduled sampling's chain (Bengio et al. 2015).

    Input j (it predicts answer token j+1) is gold token j where ``coins[:, j] < eps``, else the
    model's own greedy prediction of token j - made after the prefix and the inputs this
    chain fed at positions < j, as at inference. K-1 greedy steps over the KV cache, without
    gradients (the sampling choice is not differentiated); steps past the last position that
    takes the model's token are not run. Positions past the answer's end keep the gold."""
    gold = targets[:, :-1]
    if eps >= 1.0 or gold.shape[1] == 0:
        return gold
    own = (coins >= eps) & (gold != losses.IGNORE)
    if not bool(own.any()):
        return gold
    steps = int(own.any(0).nonzero().max()) + 1
    fed = gold.clone()
    body, head = models.decoder.get_decoder(), models.decoder.get_output_embeddings()
    # the KV cache's name: ``cache`` in transformers >= 5.2x, ``past_key_values`` before
    name = "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"
    with torch.no_grad(), models.autocast():
        out = body(inputs_embeds=prefix.detach(), use_cache=True)
        for j in range(steps):
            guess = head(out.last_hidden_state[:, -1]).argmax(-1).cpu()  # the chain's prediction of token j
            fed[:, j] = torch.where(own[:, j], guess, gold[:, j])
            if j + 1 < steps:
                step_in = models.decoder.get_input_embeddings()(fed[:, j:j + 1].clamp_min(0).to(models.device))
                out = body(inputs_embeds=step_in.to(prefix.dtype), use_cache=True, **{name: out[name]})
    return fed


def train_stage(stage: str, models: HeroModels, latent: LatentPrefix, train: QAData, evals: QAData,
                cfg: Mapping[str, Any], out_dir: Path, seed: int, start_step: int = 0, *,
                optimizer_state: Mapping | None = None, resume: Path | None = None) -> dict:
    """Train one stage; append its diagnostics in ``out_dir``; return its summary (+ checkpoint).

    ``optimizer_state``: a Stage A checkpoint's AdamW state, continued for the prefix's
    parameters (LoRA's start fresh). ``resume``: this stage's mid-stage checkpoint to continue
    from (every rank loads it; its weights and AdamW state replace the ones given). Under torchrun (a process group of several ranks) each
    rank trains its share of every micro-batch and the gradients are summed (``ddp``); rank 0
    alone evaluates and writes the diagnostics and the checkpoint."""
    plan = _stage_plan(cfg, stage, len(train))
    rank, size = ddp.world()
    prefix_params = list(latent.parameters())
    params = list(prefix_params)
    if stage == "B":
        params += add_lora(models, cfg) if models.lora is None else \
            [p for n, p in models.lora.named_parameters() if "lora_" in n]
    for param in params:  # nothing another stage left behind reaches this stage's first step
        param.grad = None
    optimizer = torch.optim.AdamW(params, lr=plan["lr"], weight_decay=0.0)
    saved = load_stage(models, latent, Path(resume), cfg) if resume is not None else None
    if saved is not None and (saved.get("stage") != stage or "resume" not in saved):
        raise ExpspecError(f"hero stage {stage}: {resume} is not a mid-stage checkpoint of Stage {stage}")
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
    elif optimizer_state is not None:
        load_prefix_optimizer(optimizer, prefix_params, optimizer_state)
    if models.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(models.device)
    gen = torch.Generator().manual_seed(seed * 1000 + ord(stage))
    k, accum, total = cfg["k_tokens"], cfg["grad_accum"], plan["steps"]
    diag, diag_epoch = out_dir / "diagnostics.jsonl", out_dir / "diagnostics_epoch.jsonl"
    step, window, epoch_losses = 0, [], []
    max_norm, last_norm, started = 0.0, 0.0, time.perf_counter()
    eval_every, checkpoint_every = cfg["eval_every"], cfg["checkpoint_every"]
    lr, last_eval, first_epoch, first_group, order = plan["lr"], None, 0, 0, None
    if saved is not None:
        at = saved["resume"]
        step, first_epoch, first_group, order = at["step"], at["epoch"], at["next_group"], at["order"]
        max_norm, last_norm, lr, last_eval = at["max_norm"], at["last_norm"], at["lr"], at["last_eval"]
        window, epoch_losses, started = at["window"], at["epoch_losses"], started - at["elapsed"]
        restore_rng(gen, at["rng"][rank] if len(at["rng"]) == size else at["rng"][0])
        if rank == 0:  # no record twice: the files as they were at that step
            truncate_to(diag, at["diagnostics_bytes"])
            truncate_to(diag_epoch, at["diagnostics_epoch_bytes"])

    def train_mode(on: bool) -> None:  # the prefix, and LoRA's dropout in Stage B (the decoder has none)
        latent.train(on)
        if stage == "B":
            models.lora.train(on)

    def eval_record(epoch: int) -> dict:
        train_mode(False)
        stats = first_token_eval(models, latent, evals, k)
        shown = list(range(min(DIAGNOSTIC_PREDICTIONS, len(evals))))
        answers = generate_latent(models, latent, evals, shown, cfg["max_new_tokens"])
        train_mode(True)
        record = {"epoch": epoch, "global_step": start_step + step, "stage": stage, "mode": "eval",
                  "first_acc": stats["first_acc"], "first_acc_top5": stats["first_acc_top5"],
                  "first": stats["first"], "kce": stats["kce"], "kd": None, "grad_norm": last_norm,
                  "lr": lr, "sec_per_step": (time.perf_counter() - started) / max(step, 1),
                  "answer_length_avg": sum(map(len, answers)) / max(len(answers), 1),
                  "token_diversity": token_diversity(answers)}
        append_step_record(diag, record)
        return {"stats": stats, "answers": answers, "shown": shown, "step": step}

    def save_mid(epoch: int, next_group: int) -> None:  # after a step's records: every rank's RNGs, rank 0 writes
        rngs = ddp.gather_objects(rng_state(gen), size)  # LoRA dropout draws differ by rank
        if rank != 0:
            return
        state = stage_state(stage, models, latent, optimizer, start_step + step)
        state["resume"] = {"step": step, "epoch": epoch, "next_group": next_group, "order": order,
                           "max_norm": max_norm, "last_norm": last_norm, "lr": lr, "last_eval": last_eval,
                           "window": window, "epoch_losses": epoch_losses,
                           "elapsed": time.perf_counter() - started, "rng": rngs,
                           "diagnostics_bytes": file_size(diag), "diagnostics_epoch_bytes": file_size(diag_epoch)}
        write_checkpoint(mid_checkpoint(out_dir, stage, step), state)
        prune_mid_checkpoints(out_dir, stage, cfg["keep_checkpoints"])

    train_mode(True)
    for epoch in range(first_epoch, plan["epochs"]):
        if order is None:
            order = torch.randperm(plan["samples"], generator=gen).tolist()
        batches = [order[i:i + cfg["batch_size"]] for i in range(0, len(order), cfg["batch_size"])]
        for group_start in range(first_group, len(batches), accum):
            tick = time.perf_counter()
            lr = lr_at(step, total, plan["lr"], cfg["lr_schedule"], cfg["lr_min"], plan["warmup"])
            for group in optimizer.param_groups:
                group["lr"] = lr
            weight = first_token_weight_at(step, total, cfg["first_token_weight"],
                                           cfg["first_token_weight_schedule"], cfg["first_token_warmup_frac"])
            eps = teacher_forcing_prob(step, cfg["ss_schedule"], cfg["ss_k"], cfg["ss_c"], cfg["ss_eps_min"]) \
                if stage == "B" else 1.0
            group_batches = batches[group_start:group_start + accum]
            parts = {"first": 0.0, "kce": 0.0, "kd": None, "acc": 0.0, "acc5": 0.0, "lengths": [], "preds": []}
            batch_preds: list[list] = []
            for full_index in group_batches:
                full = targets_for(train, full_index, k)
                coins = torch.rand(full[:, :-1].shape, generator=gen) if eps < 1.0 and k > 1 else None
                rows = ddp.shard(len(full_index), rank, size)  # every row when one process trains
                index, targets = full_index[rows], full[rows]
                batch_preds.append([])
                if not index:  # a micro-batch smaller than the world: this rank adds zero gradients
                    continue
                # this rank's share of the micro-batch's rows and valid tokens: the ranks' means sum to its mean
                row_share = len(index) / len(full_index)
                token_share = int((targets != losses.IGNORE).sum()) / int((full != losses.IGNORE).sum())
                prefix = prefix_embeds(models, latent, train, index)
                inputs = _scheduled_inputs(models, prefix, targets, eps, None if coins is None else coins[rows])
                logits = answer_logits(models, prefix, inputs)
                tf = targets.to(logits.device)
                first = losses.first_token_ce(logits, tf) * row_share
                kce = losses.k_token_ce(logits, tf) * token_share
                loss = weight * first + cfg["kce_weight"] * kce
                if cfg["kd_weight"] > 0:
                    kd = losses.kd_loss(logits, teacher_logits(models, train, index, targets), tf,
                                        cfg["kd_tau"]) * token_share
                    loss = loss + cfg["kd_weight"] * kd
                    parts["kd"] = (parts["kd"] or 0.0) + float(kd.detach()) / len(group_batches)
                if not torch.isfinite(loss):
                    if rank == 0:  # one writer of the shared diagnostics file
                        append_step_record(diag, {"epoch": epoch, "global_step": start_step + step + 1, "stage": stage,
                                                  "mode": "train", "first_acc": 0.0, "first_acc_top5": 0.0,
                                                  "first": float(first), "kce": float(kce), "kd": None,
                                                  "grad_norm": math.nan, "lr": lr, "sec_per_step": 0.0,
                                                  "answer_length_avg": 0.0, "token_diversity": 0})
                    raise ExpspecError(f"hero stage {stage}: loss is {float(loss)} at step {start_step + step + 1} "
                                       f"(first={float(first):.4g}, kce={float(kce):.4g}); lower the learning rate")
                (loss / len(group_batches)).backward()
                parts["first"] += float(first.detach()) / len(group_batches)
                parts["kce"] += float(kce.detach()) / len(group_batches)
                parts["acc"] += losses.first_token_accuracy(logits, tf, 1) * row_share / len(group_batches)
                parts["acc5"] += losses.first_token_accuracy(logits, tf, 5) * row_share / len(group_batches)
                guesses = logits.argmax(-1).tolist()
                batch_preds[-1] = [g[:g.index(models.eos_id)] if models.eos_id in g else g for g in guesses]
            if size > 1:  # the one-process gradient and numbers: sums over the ranks' shares
                ddp.all_reduce_grads(params)
                names = ("first", "kce", "kd", "acc", "acc5")
                totals = ddp.all_reduce_sum([parts[n] or 0.0 for n in names], models.device)
                parts.update({n: None if n == "kd" and not cfg["kd_weight"] > 0 else v for n, v in zip(names, totals)})
                parts["preds"] = ddp.gather_rows(batch_preds, size)
            else:
                parts["preds"] = [row for batch in batch_preds for row in batch]
            last_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"]))
            max_norm = max(max_norm, last_norm) if not math.isnan(last_norm) else math.inf
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            parts["sec"] = time.perf_counter() - tick
            parts["norm"] = last_norm
            window.append(parts)
            epoch_losses.append(parts)
            progress.advance(f"hero stage {stage}", step, total)
            if step % cfg["log_every"] == 0 or step == total:
                if rank == 0:
                    _train_record(diag, window, epoch, start_step + step, stage, lr)
                window = []
            if step % eval_every == 0 and rank == 0:
                last_eval = eval_record(epoch)
            if checkpoint_every and step % checkpoint_every == 0 and step < total:
                save_mid(epoch, group_start + accum)
        order, first_group = None, 0
        if rank != 0:  # rank 0 alone evaluates and writes
            epoch_losses = []
            continue
        shown = last_eval if last_eval is not None and last_eval["step"] == step else eval_record(epoch)
        append_epoch_record(diag_epoch, {
            "epoch": epoch, "stage": stage,
            "samples": [{"question": evals.questions[i].question,
                         "prediction": answer_text(models, shown["answers"][j]),
                         "gold": list(evals.questions[i].answers)}
                        for j, i in enumerate(shown["shown"][:cfg["epoch_samples"]])],
            "first_token_histogram": first_token_histogram(shown["stats"]["first_tokens"]),
            "loss_breakdown": {name: _mean([p[name] for p in epoch_losses]) for name in ("first", "kce", "kd")},
        })
        epoch_losses = []
    train_mode(False)
    wall = time.perf_counter() - started
    checkpoint = out_dir / f"stage_{stage.lower()}.pt"
    if rank == 0:
        write_checkpoint(checkpoint, stage_state(stage, models, latent, optimizer, start_step + step))
        if stage == "B":
            models.lora.save_pretrained(out_dir / "lora_adapter")  # adapter_config.json + weights, for peft users
    resumed = {"resumed_from_step": saved["resume"]["step"]} if saved is not None else {}
    return {"stage": stage, "steps": step, "global_step_end": start_step + step, "samples": plan["samples"],
            "epochs": plan["epochs"], "world_size": size, "wall_s": wall, "sec_per_step": wall / max(step, 1),
            "max_grad_norm": max_norm, "checkpoint": str(checkpoint), "device": str(models.device),
            "peak_gpu_memory_gb": torch.cuda.max_memory_allocated(models.device) / 2 ** 30
            if models.device.type == "cuda" else None, **resumed}


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _train_record(path: Path, window: list[dict], epoch: int, global_step: int, stage: str, lr: float) -> None:
    preds = [p for part in window for p in part["preds"]]
    append_step_record(path, {
        "epoch": epoch, "global_step": global_step, "stage": stage, "mode": "train",
        "first_acc": _mean([p["acc"] for p in window]), "first_acc_top5": _mean([p["acc5"] for p in window]),
        "first": _mean([p["first"] for p in window]), "kce": _mean([p["kce"] for p in window]),
        "kd": _mean([p["kd"] for p in window]),
        "grad_norm": max(p["norm"] for p in window), "lr": lr, "sec_per_step": _mean([p["sec"] for p in window]),
        "answer_length_avg": sum(map(len, preds)) / max(len(preds), 1),  # teacher-forced argmax, up to EOS
        "token_diversity": token_diversity(preds)})


def evaluate(models: HeroModels, latent: LatentPrefix, train_questions: Sequence, evals: QAData,
             cfg: Mapping[str, Any], out_dir: Path, text_rows: Sequence[dict] | None = None) -> dict:
    """The final eval: greedy answers after the latent prefix, EM/F1 and the aggregates, the
    first-token numbers, the prior baselines; eval_detailed.jsonl (+ the text rows) and eval.json."""
    latent.eval()
    if models.lora is not None:
        models.lora.eval()
    index = list(range(len(evals)))
    stats = first_token_eval(models, latent, evals, cfg["k_tokens"])
    tokens = generate_latent(models, latent, evals, index, cfg["max_new_tokens"])
    aggregates, rows = _scored(models, evals, tokens, "latent")
    write_text_atomic(out_dir / "eval_detailed.jsonl",
                      "".join(_json_line(r) for r in [*rows, *(text_rows or [])]))
    priors = prior_baselines(train_questions, evals.questions)
    _prior_first_acc(models, priors, evals)
    result = {"latent": aggregates, "first_token": {k: v for k, v in stats.items() if k != "first_tokens"},
              "priors": priors}
    write_json_atomic(out_dir / "eval.json", result)
    return result


def _prior_first_acc(models: HeroModels, priors: dict, evals: QAData) -> None:
    """Add each prior's first-token accuracy: its answer's first token is the gold one's."""
    def first(text: str) -> list[int]:
        return models.tokenizer.encode(" " + text, add_special_tokens=False)[:1]

    overall = priors["overall"]["answer"]
    typed = [priors["per_type"]["answers"].get(q.question_type, overall) for q in evals.questions]
    for key, answers in (("overall", [overall] * len(evals)), ("per_type", typed)):
        hits = sum(first(a) == evals.answer_ids[i][:1] for i, a in enumerate(answers))
        priors[key]["first_acc"] = hits / len(evals)


def text_baseline(models: HeroModels, evals: QAData, cfg: Mapping[str, Any]) -> tuple[dict, list[dict]]:
    """The decoder reading the whole prompt as text (no prefix, no LoRA): aggregates and rows."""
    tokens = generate_text(models, evals, list(range(len(evals))), cfg["max_new_tokens"])
    return _scored(models, evals, tokens, "text")


def _scored(models: HeroModels, evals: QAData, tokens: Sequence[Sequence[int]], prefix_used: str
            ) -> tuple[dict, list[dict]]:
    """Greedy answer tokens -> the eval aggregates and one eval_detailed row per question."""
    predictions = [answer_text(models, t) for t in tokens]
    # repetition is read from the answer as scored (cut at its first line break)
    aggregates = eval_aggregates(predictions, [list(q.answers) for q in evals.questions])
    rows = [{"id": q.id, "question": q.question, "gold": list(q.answers), "prediction": p, "em": a["em"],
             "f1": a["f1"], "first_token_correct": bool(t[:1] == evals.answer_ids[i][:1]),
             "prefix_used": prefix_used}
            for i, (q, p, a, t) in enumerate(zip(evals.questions, predictions, aggregates.pop("per_example"),
                                                 tokens))]
    return aggregates, rows


def _json_line(record: Mapping) -> str:
    import json

    from expspec.kernels.atomic_io import jsonable

    return json.dumps(jsonable(record), sort_keys=True) + "\n"
