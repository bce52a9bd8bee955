"""Lane B trainer: a nanochat-shaped pretraining loop for tiny GPTs (or any HF causal LM).

Why it exists: Lane B measures how long a recipe takes to reach a validation bits-per-
byte target. That needs a trainer whose numbers mean what nanochat's mean: the same
horizon rule (tokens = ratio x scaling params), the same LR shape, the same bpb
definition, and log lines in nanochat's own format so one parser
(kernels/training_log.py) reads a builtin run and a real nanochat run alike.

The loop is a loop. Each optimizer step sees ``total_batch_size`` tokens: random
(seeded per (seed, step)) contiguous windows of ``max_seq_len + 1`` tokens from the
train stream, split over ranks and gradient-accumulation micro-steps. Because the
windows depend only on (seed, step), a resumed run and a K-process DDP run see exactly
the batches an uninterrupted single-process run sees. Validation is a fixed set: the
first ``eval_tokens`` of the val stream in non-overlapping windows, evaluated at step
0, every ``eval_every`` steps and at the end.

Launch under ``torchrun --nproc_per_node=K -m kernels.train --config C --data D`` for
DDP (gloo on CPU, nccl on CUDA); rank 0 logs, evaluates and checkpoints.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from kernels.errors import ExpspecError
from kernels.loss_eval import evaluate_bpb, token_windows
from kernels.lr_schedule import lr_multiplier
from kernels.time_to_target import WARMUP_STEPS_EXCLUDED, finite_min, step_time_medians, time_to_target
from kernels.run_cache import read_json, write_json_atomic
from kernels.train_config import TrainConfig, horizon

# Fields a resumed run may change; any other difference from the checkpoint is refused.
RESUME_MAY_CHANGE = {"resume_from", "checkpoint_every", "device", "device_batch_size",
                     "eval_every", "target_threshold"}
CHECKPOINT_FORMAT = "expspec-train-1"
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # bf16 dense, for mfu


@dataclass
class TrainResult:
    status: str  # ok | failed
    steps: int  # optimizer steps completed
    horizon: int
    n_scaling_params: int
    scaling_params: dict
    tokens_trained: int
    evals: list  # [(step, val_bpb)]
    final_val_bpb: float
    min_val_bpb: float
    time_to_target_sec_measured: float
    time_to_target_sec_extrapolated: float
    time_to_target_method: str
    reached_within_horizon: bool
    tok_per_sec_median: float
    dt_median_ms: float
    train_time_sec: float  # cumulative step time, evaluations excluded
    timing_excludes_first_steps: int = WARMUP_STEPS_EXCLUDED
    grad_accum_steps: int = 1
    world_size: int = 1
    train_losses: list = field(default_factory=list)  # global-batch mean loss per step
    eval_train_times: list = field(default_factory=list)  # training seconds at each eval (exact)
    notes: str = ""
    log_path: str = ""
    checkpoint_path: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def scaling_params(model) -> dict:
    """nanochat's parameter groups; ``total`` = transformer matrices + lm_head.

    Token (and position) embeddings are lookups, and norms/biases/scalar gains are
    vectors: nanochat leaves both out of the count its scaling laws use.
    """
    head = model.get_output_embeddings().weight
    embedding_ids = {id(m.weight) for m in model.modules()
                     if type(m).__name__.endswith("Embedding") and hasattr(m, "weight")}
    groups = {"transformer_matrices": 0, "lm_head": 0, "excluded_embeddings": 0, "excluded_vectors": 0}
    for _, p in model.named_parameters():  # shared (tied) tensors are listed once
        if p is head:
            groups["lm_head"] += p.numel()
        elif id(p) in embedding_ids:
            groups["excluded_embeddings"] += p.numel()
        elif p.dim() >= 2:
            groups["transformer_matrices"] += p.numel()
        else:
            groups["excluded_vectors"] += p.numel()
    groups["all_params"] = sum(groups.values())
    groups["total"] = groups["transformer_matrices"] + groups["lm_head"]
    return groups


def batch_starts(n_tokens: int, seq_len: int, n_rows: int, seed: int, step: int) -> np.ndarray:
    """Start offsets of the step's windows of seq_len + 1 tokens; a function of (seed, step)."""
    return np.random.default_rng([seed, step]).integers(0, n_tokens - seq_len, size=n_rows)


def build_model(cfg: TrainConfig, vocab_size: int):
    import torch

    if cfg.model == "tiny_gpt":
        from kernels.lm import build_tiny_gpt

        model = build_tiny_gpt(cfg.depth, cfg.aspect_ratio, cfg.head_dim, vocab_size,
                               cfg.max_seq_len, seed=cfg.seed)
    else:
        from kernels.lm import load_causal_lm

        model, _ = load_causal_lm(cfg.model, device="cpu")
        if model.get_output_embeddings().weight.shape[0] < vocab_size:
            raise ExpspecError(f"train config: model {cfg.model!r} has fewer output ids than "
                               f"token_bytes ({vocab_size}); use that model's tokenizer")
    torch.manual_seed(cfg.seed)
    return model.train()


def _dist_setup(cfg: TrainConfig):
    """(rank, world, device, we_initialised) from torchrun's environment."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = cfg.device
    if world > 1 and device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    owned = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        owned = True
    return rank, world, torch.device(device), owned


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: str, cfg: TrainConfig, device) -> dict:
    import torch

    if not Path(path).is_file():
        raise ExpspecError(f"train config: resume_from {path}: file not found")
    state = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ExpspecError(f"resume_from {path}: not an expspec trainer checkpoint")
    for key, value in state["config"].items():
        if key not in RESUME_MAY_CHANGE and getattr(cfg, key) != value:
            raise ExpspecError(f"resume_from {path}: checkpoint has {key}={value!r}, "
                               f"config has {getattr(cfg, key)!r}")
    return state


def train(cfg: TrainConfig, train_tokens, val_tokens, token_bytes,
          log: Callable[[str], None] = print, out_dir: str | Path | None = None,
          return_model: bool = False):
    """Train from scratch (or from ``cfg.resume_from``); see the module docstring.

    Returns a TrainResult, or (TrainResult, model in eval mode) with ``return_model``.
    """
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    cfg.validate()
    rank, world, device, owned_pg = _dist_setup(cfg)
    vocab_size = len(token_bytes)
    train_tokens, val_tokens = np.asarray(train_tokens), np.asarray(val_tokens)
    for name, stream, need in (("train_tokens", train_tokens, cfg.max_seq_len + 1),
                               ("val_tokens", val_tokens, cfg.max_seq_len + 1)):
        if len(stream) < need or int(stream.max()) >= vocab_size or int(stream.min()) < 0:
            raise ExpspecError(f"train: {name} needs >= {need} token ids in [0, {vocab_size}), "
                               f"got {len(stream)} tokens")
    rows_per_micro = cfg.device_batch_size * world
    if cfg.total_batch_size % (rows_per_micro * cfg.max_seq_len):
        raise ExpspecError(f"train config: total_batch_size {cfg.total_batch_size} is not a multiple of "
                           f"device_batch_size x max_seq_len x world_size = {rows_per_micro * cfg.max_seq_len}")
    grad_accum = cfg.total_batch_size // (rows_per_micro * cfg.max_seq_len)
    master = rank == 0
    log_file = None  # opened once the inputs are known good

    def say(line: str) -> None:
        if master:
            log(line)
            if log_file is not None:
                log_file.write(line + "\n")
                log_file.flush()

    model = build_model(cfg, vocab_size).to(device)
    groups = scaling_params(model)
    n_scaling = groups["total"]
    T = horizon(cfg, n_scaling)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.learning_rate, betas=(0.9, 0.95), eps=1e-8)
    tb = torch.as_tensor(np.asarray(token_bytes), dtype=torch.int64, device=device)
    cuda = device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else nullcontext
    peak = next((v for k, v in PEAK_FLOPS.items() if cuda and k in torch.cuda.get_device_name(device)),
                math.inf)
    flops_per_token = 6 * n_scaling + 12 * cfg.depth * model.config.hidden_size * cfg.max_seq_len

    step, evals, eval_times, train_time, smooth, losses, dts, tps = 0, [], [], 0.0, 0.0, [], [], []
    notes = [f"timing medians exclude the first {WARMUP_STEPS_EXCLUDED} steps"]
    if cfg.resume_from:
        state = _load_checkpoint(cfg.resume_from, cfg, device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"].cpu())
        loop = state["loop"]
        step, train_time, smooth = state["step"], loop["train_time"], loop["smooth"]
        evals, eval_times = [tuple(e) for e in loop["evals"]], list(loop["eval_times"])
        losses, dts, tps = list(loop["losses"]), list(loop["dts"]), list(loop["tps"])
        notes.append(f"resumed from {cfg.resume_from} at step {step}")
    start_step = step
    ddp_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    if master and out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(out_dir / "train.log", "a", encoding="utf-8")  # appended on resume

    say(f"TrainConfig: {json.dumps(cfg.to_dict(), allow_nan=True)}")
    say(f"Vocab size: {vocab_size:,}")
    say("Parameter counts:")
    for key, value in groups.items():
        say(f"{key:24s}: {value:,}")
    say(f"Using user-provided number of iterations: {T:,}" if cfg.num_iterations > 0 else
        f"Calculated number of iterations from target data:param ratio: {T:,}")
    say(f"Total number of training tokens: {T * cfg.total_batch_size:,}")
    say(f"Tokens : Scaling params ratio: {T * cfg.total_batch_size / n_scaling:.2f}")
    say(f"Tokens / micro-batch / rank: {cfg.device_batch_size} x {cfg.max_seq_len} = "
        f"{cfg.device_batch_size * cfg.max_seq_len:,}")
    say(f"Tokens / micro-batch: {rows_per_micro * cfg.max_seq_len:,}")
    say(f"Total batch size {cfg.total_batch_size:,} => gradient accumulation steps: {grad_accum}")

    def checkpoint(path: Path) -> str:
        loop = {"train_time": train_time, "smooth": smooth, "evals": [list(e) for e in evals],
                "eval_times": eval_times, "losses": losses, "dts": dts, "tps": tps}
        _save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "step": step,
                                "model": model.state_dict(), "optimizer": opt.state_dict(),
                                "rng": torch.get_rng_state(), "loop": loop})
        return str(path)

    status, checkpoint_path = "ok", ""
    evaluated = {s for s, _ in evals}
    bar = tqdm(total=T, initial=step, desc="train", disable=None if master else True, leave=False)
    while True:
        last = step == T
        due = step == 0 or last or (cfg.eval_every > 0 and step % cfg.eval_every == 0)
        if master and due and step not in evaluated:
            bpb = evaluate_bpb(model, val_tokens, tb, cfg.max_seq_len, cfg.device_batch_size,
                               cfg.eval_tokens, device, autocast)
            evals.append((step, bpb))
            eval_times.append(train_time)
            evaluated.add(step)
            say(f"Step {step:05d} | Validation bpb: {bpb:.6f}")
        if (master and out_dir is not None and cfg.checkpoint_every > 0 and 0 < step < T
                and step != start_step and step % cfg.checkpoint_every == 0):
            checkpoint(out_dir / f"checkpoint_{step:05d}.pt")
        if last:
            break
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        starts = batch_starts(len(train_tokens), cfg.max_seq_len, grad_accum * rows_per_micro, cfg.seed, step)
        loss_sum = torch.zeros((), device=device)
        for micro in range(grad_accum):
            first = (micro * world + rank) * cfg.device_batch_size
            x, y = token_windows(train_tokens, starts[first:first + cfg.device_batch_size], cfg.max_seq_len, device)
            sync = world == 1 or micro == grad_accum - 1
            with (nullcontext() if sync else ddp_model.no_sync()):
                with autocast():
                    logits = ddp_model(input_ids=x).logits
                loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
                (loss / grad_accum).backward()
            loss_sum += loss.detach()
        if world > 1:
            dist.all_reduce(loss_sum)
        loss_f = loss_sum.item() / (grad_accum * world)
        if not math.isfinite(loss_f):
            status = "failed"
            notes.append(f"non-finite train loss ({loss_f}) at step {step}; run stopped there")
            say(f"step {step:05d}/{T:05d} | non-finite loss: {loss_f} | stopping")
            opt.zero_grad(set_to_none=True)
            break
        lrm = lr_multiplier(step, T, cfg.warmup_ratio, cfg.warmdown_ratio, cfg.final_lr_frac)
        for group in opt.param_groups:
            group["lr"] = cfg.learning_rate * lrm
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        train_time += dt
        losses.append(loss_f)
        dts.append(dt * 1000)
        tps.append(cfg.total_batch_size / dt)
        smooth = 0.9 * smooth + 0.1 * loss_f  # nanochat logs a debiased EMA of the loss
        mfu = 100 * flops_per_token * cfg.total_batch_size / dt / (peak * world)
        say(f"step {step:05d}/{T:05d} ({100 * step / T:.2f}%) | loss: {smooth / (1 - 0.9 ** (step + 1)):.6f} "
            f"| lrm: {lrm:.2f} | dt: {dt * 1000:.2f}ms | tok/sec: {int(tps[-1]):,} | mfu: {mfu:.2f} "
            f"| total time: {train_time / 60:.2f}m")
        step += 1
        bar.update(1)
    bar.close()

    tok_med, dt_med = step_time_medians(dts, tps)
    ttt = time_to_target(evals, eval_times, cfg.target_threshold, T, dt_med / 1000)
    if master and status == "ok" and out_dir is not None:
        checkpoint_path = checkpoint(out_dir / "checkpoint.pt")
    say(f"Total training time: {train_time / 60:.2f}m")
    if evals:
        say(f"Minimum validation bpb: {finite_min(v for _, v in evals):.6f}")
    minutes = ttt.seconds / 60
    shown = f"{minutes:.4f}m" if math.isfinite(minutes) else ("inf" if minutes > 0 else "n/a")
    say(f"Time-to-target ({cfg.target_metric}): {shown} | method: {ttt.method} | threshold: "
        f"{cfg.target_threshold:.6f} | step: {ttt.crossing_step:.1f} | within horizon: "
        f"{'yes' if ttt.reached_within_horizon else 'no'}")
    if log_file is not None:
        log_file.close()
    if world > 1:
        dist.barrier()
        if owned_pg:
            dist.destroy_process_group()
    result = TrainResult(
        status=status, steps=step, horizon=T, n_scaling_params=n_scaling, scaling_params=groups,
        tokens_trained=step * cfg.total_batch_size, evals=list(evals),
        final_val_bpb=evals[-1][1] if evals else math.nan,
        min_val_bpb=finite_min(v for _, v in evals),
        time_to_target_sec_measured=ttt.measured_sec, time_to_target_sec_extrapolated=ttt.extrapolated_sec,
        time_to_target_method=ttt.method, reached_within_horizon=ttt.reached_within_horizon,
        tok_per_sec_median=tok_med, dt_median_ms=dt_med, train_time_sec=train_time,
        grad_accum_steps=grad_accum, world_size=world, train_losses=losses, eval_train_times=list(eval_times),
        notes="; ".join(notes),
        log_path=str(out_dir / "train.log") if master and out_dir is not None else "",
        checkpoint_path=checkpoint_path)
    return (result, model.eval()) if return_model else result


def main(argv: list[str] | None = None) -> int:
    """``[torchrun ...] python -m kernels.train --config cfg.json --data data.npz --out-dir DIR``.

    cfg.json holds every TrainConfig field; data.npz holds ``train``, ``val`` and
    ``token_bytes`` arrays. Rank 0 writes DIR/result.json (and train.log, checkpoint.pt).
    """
    parser = argparse.ArgumentParser(prog="python -m kernels.train", description=main.__doc__)
    parser.add_argument("--config", required=True, help="JSON file with every TrainConfig field")
    parser.add_argument("--data", required=True, help=".npz with train, val, token_bytes arrays")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = torch's choice)")
    args = parser.parse_args(argv)
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        config = read_json(args.config, "config")
        if not isinstance(config, dict):
            raise ExpspecError(f"config {args.config}: expected a JSON object of TrainConfig fields")
        cfg = TrainConfig.from_dict(config, where=f"config {args.config}")
        try:
            with np.load(args.data) as data:
                missing = {"train", "val", "token_bytes"} - set(data.files)
                if missing:
                    raise ExpspecError(f"data {args.data}: missing arrays {sorted(missing)}")
                train_tokens, val_tokens, token_bytes = data["train"], data["val"], data["token_bytes"]
        except (OSError, ValueError) as exc:
            raise ExpspecError(f"data {args.data}: not a readable .npz ({exc})") from None
        result = train(cfg, train_tokens, val_tokens, token_bytes, out_dir=args.out_dir)
    except ExpspecError as err:
        print(f"error: {err}")
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        write_json_atomic(Path(args.out_dir) / "result.json", result.to_dict())
    return 0 if result.status == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
