"""Lane B trainer: a nanochat-shaped pretraining loop for tiny GPTs (or any HF causal LM).

The default model is nanochat's GPT (models/gpt.py) with nanochat's optimizer split,
Muon on the block matrices and AdamW on the embeddings (train/optim.py); the Llama
``tiny_gpt`` and HF models train with one AdamW.

Why it exists: Lane B measures how long a recipe takes to reach a validation bits-per-
byte target. That needs a trainer whose numbers mean what nanochat's mean: the same
horizon rule (tokens = ratio x scaling params), the same LR shape, the same bpb
definition, and log lines in nanochat's own format so one parser
(train/training_log.py) reads a builtin run and a real nanochat run alike.

The loop is a loop. Each optimizer step sees ``total_batch_size`` tokens: random
(seeded per (seed, step)) contiguous windows of ``max_seq_len + 1`` tokens from the
train stream, split over ranks and gradient-accumulation micro-steps. Because the
windows depend only on (seed, step), a resumed run and a K-process DDP run see exactly
the batches an uninterrupted single-process run sees. Validation is a fixed set: the
first ``eval_tokens`` of the val stream in non-overlapping windows, evaluated at step
0, every ``eval_every`` steps and at the end.

Launch under ``torchrun --nproc_per_node=K -m expspec.kernels.train.launch --config C --data D`` for
DDP (gloo on CPU, nccl on CUDA); rank 0 logs, evaluates and checkpoints.
"""

from __future__ import annotations

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

from expspec.kernels.errors import ExpspecError
from expspec.kernels.train.bpb import evaluate_bpb, token_windows
from expspec.kernels.train.schedule import lr_multiplier
from expspec.kernels.models.params import scaling_params
from expspec.kernels.progress import advance
from expspec.kernels.train.summary import RunSummary, summarize
from expspec.kernels.train.time_to_target import WARMUP_STEPS_EXCLUDED, finite_min, step_time_medians, time_to_target
from expspec.kernels.train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, write_checkpoint
from expspec.kernels.train.config import TrainConfig, horizon
from expspec.kernels.train.launch import dist_setup
from expspec.kernels.train.optim import Optimizers, build_optimizer

PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # bf16 dense, for mfu


def batch_starts(n_tokens: int, seq_len: int, n_rows: int, seed: int, step: int) -> np.ndarray:
    """Start offsets of the step's windows of seq_len + 1 tokens; a function of (seed, step)."""
    return np.random.default_rng([seed, step]).integers(0, n_tokens - seq_len, size=n_rows)


def flops_per_token(cfg: TrainConfig, model, matmul_params: int) -> float:
    """Training FLOPs per token, nanochat's count: 6 per matmul parameter (forward 2,
    backward 4) plus attention's scores and values, 12 · layers · d · seq."""
    layers = getattr(model.config, "num_hidden_layers", cfg.depth)
    return 6 * matmul_params + 12 * layers * model.config.hidden_size * cfg.max_seq_len


def peak_flops(device) -> float:
    """bf16 dense peak of a known GPU; inf elsewhere (MFU prints 0 on a CPU)."""
    import torch

    if device.type != "cuda":
        return math.inf
    return next((v for k, v in PEAK_FLOPS.items() if k in torch.cuda.get_device_name(device)), math.inf)


def build_model(cfg: TrainConfig, vocab_size: int):
    """The built-in nanochat GPT or Llama (random init, seeded), or a pretrained HF model."""
    import torch

    if cfg.model in ("nanochat_gpt", "tiny_gpt"):
        from expspec.kernels.models.gpt import build_nanochat_gpt, build_tiny_gpt

        build = build_nanochat_gpt if cfg.model == "nanochat_gpt" else build_tiny_gpt
        model = build(cfg.depth, cfg.aspect_ratio, cfg.head_dim, vocab_size, cfg.max_seq_len, seed=cfg.seed)
    else:
        from expspec.kernels.models.pretrained import load_causal_lm

        model, _ = load_causal_lm(cfg.model, device="cpu")
        if model.get_output_embeddings().weight.shape[0] < vocab_size:
            raise ExpspecError(f"train config: model {cfg.model!r} has fewer output ids than "
                               f"token_bytes ({vocab_size}); use that model's tokenizer")
    torch.manual_seed(cfg.seed)
    return model.train()


@dataclass
class TrainState:
    """Everything a checkpoint must restore besides model and optimizer."""

    step: int = 0
    train_time: float = 0.0  # cumulative step seconds, evaluations excluded
    smooth: float = 0.0  # EMA of the train loss (nanochat's log shows it debiased)
    evals: list = field(default_factory=list)  # [(step, val_bpb)]
    eval_times: list = field(default_factory=list)  # train_time at each eval
    losses: list = field(default_factory=list)
    dts: list = field(default_factory=list)  # step ms
    tps: list = field(default_factory=list)  # tokens/s per step
    notes: list = field(default_factory=list)
    status: str = "ok"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainState":
        state = cls(**data)
        state.evals = [tuple(e) for e in state.evals]
        return state


@dataclass
class Trainer:
    """One run's fixed parts: config, process group, model, optimizer, data, log."""

    cfg: TrainConfig
    rank: int
    world: int
    device: object
    owned_pg: bool
    model: object
    ddp_model: object
    opt: Optimizers
    groups: dict
    horizon: int
    grad_accum: int
    train_tokens: np.ndarray
    val_tokens: np.ndarray
    token_bytes: object  # tensor on device
    autocast: Callable
    flops_per_token: float
    peak_flops: float
    log: Callable[[str], None]
    out_dir: Path | None
    log_file: object = None

    @property
    def master(self) -> bool:
        return self.rank == 0

    def say(self, line: str) -> None:
        if self.master:
            self.log(line)
            if self.log_file is not None:
                self.log_file.write(line + "\n")
                self.log_file.flush()

    def close(self) -> None:
        """Close the log and the process group we opened (also when a step raised)."""
        import torch.distributed as dist

        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        if self.world > 1 and self.owned_pg and dist.is_initialized():
            dist.destroy_process_group()


def _check_streams(cfg: TrainConfig, train_tokens, val_tokens, vocab_size: int):
    train_tokens, val_tokens = np.asarray(train_tokens), np.asarray(val_tokens)
    for name, stream, need in (("train_tokens", train_tokens, cfg.max_seq_len + 1),
                               ("val_tokens", val_tokens, cfg.max_seq_len + 1)):
        if len(stream) < need or int(stream.max()) >= vocab_size or int(stream.min()) < 0:
            raise ExpspecError(f"train: {name} needs >= {need} token ids in [0, {vocab_size}), "
                               f"got {len(stream)} tokens")
    return train_tokens, val_tokens


def setup(cfg: TrainConfig, train_tokens, val_tokens, token_bytes, log: Callable[[str], None],
          out_dir: str | Path | None) -> tuple[Trainer, TrainState]:
    """Validate, build model + optimizer, restore a checkpoint, open the log, print the header."""
    import torch

    cfg.validate()
    vocab_size = len(token_bytes)
    train_tokens, val_tokens = _check_streams(cfg, train_tokens, val_tokens, vocab_size)
    rank, world, device, owned_pg = dist_setup(cfg)
    rows_per_micro = cfg.device_batch_size * world
    if cfg.total_batch_size % (rows_per_micro * cfg.max_seq_len):
        raise ExpspecError(f"train config: total_batch_size {cfg.total_batch_size} is not a multiple of "
                           f"device_batch_size x max_seq_len x world_size = {rows_per_micro * cfg.max_seq_len}")
    model = build_model(cfg, vocab_size).to(device)
    groups = scaling_params(model)
    opt = build_optimizer(cfg, model)
    cuda = device.type == "cuda"
    state = TrainState(notes=[f"timing medians exclude the first {WARMUP_STEPS_EXCLUDED} steps"])
    log_bytes = None  # train.log's length when the checkpoint was written
    if cfg.resume_from:
        saved = load_checkpoint(cfg.resume_from, cfg, device)
        log_bytes = saved.get("log_bytes")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"].cpu())
        state = TrainState.from_dict(saved["state"])
        state.notes.append(f"resumed from {cfg.resume_from} at step {state.step}")
    ddp_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    tr = Trainer(
        cfg=cfg, rank=rank, world=world, device=device, owned_pg=owned_pg, model=model, ddp_model=ddp_model,
        opt=opt, groups=groups, horizon=horizon(cfg, groups["total"]),
        grad_accum=cfg.total_batch_size // (rows_per_micro * cfg.max_seq_len),
        train_tokens=train_tokens, val_tokens=val_tokens,
        token_bytes=torch.as_tensor(np.asarray(token_bytes), dtype=torch.int64, device=device),
        autocast=(lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else nullcontext,
        flops_per_token=flops_per_token(cfg, model, groups["total"]), peak_flops=peak_flops(device),
        log=log, out_dir=Path(out_dir) if out_dir is not None else None)
    if tr.master and tr.out_dir is not None:
        tr.out_dir.mkdir(parents=True, exist_ok=True)
        # a resumed run appends to its log; a fresh one starts it over (a killed attempt's
        # lines would otherwise read as a restart). Resuming from a checkpoint of this very
        # folder (a killed run picked up again), the lines the killed attempt logged after
        # that checkpoint are cut first: every step is logged once (the resumed attempt's
        # header follows the cut, naming the checkpoint it resumed from).
        log_path = tr.out_dir / "train.log"
        if (cfg.resume_from and isinstance(log_bytes, int) and log_path.is_file()
                and Path(cfg.resume_from).resolve().parent == tr.out_dir.resolve()
                and log_path.stat().st_size >= log_bytes):
            os.truncate(log_path, log_bytes)
        tr.log_file = open(log_path, "a" if cfg.resume_from else "w", encoding="utf-8")
    _log_header(tr, vocab_size, rows_per_micro)
    return tr, state


def _log_header(tr: Trainer, vocab_size: int, rows_per_micro: int) -> None:
    cfg, T, n_scaling = tr.cfg, tr.horizon, tr.groups["total"]
    tr.say(f"TrainConfig: {json.dumps(cfg.to_dict(), allow_nan=True)}")
    tr.say(f"Vocab size: {vocab_size:,}")
    tr.say("Parameter counts:")
    for key, value in tr.groups.items():
        tr.say(f"{key:24s}: {value:,}")
    tr.say(f"Using user-provided number of iterations: {T:,}" if cfg.num_iterations > 0 else
           f"Calculated number of iterations from target data:param ratio: {T:,}")
    tr.say(f"Total number of training tokens: {T * cfg.total_batch_size:,}")
    tr.say(f"Tokens : Scaling params ratio: {T * cfg.total_batch_size / n_scaling:.2f}")
    tr.say(f"Tokens / micro-batch / rank: {cfg.device_batch_size} x {cfg.max_seq_len} = "
           f"{cfg.device_batch_size * cfg.max_seq_len:,}")
    tr.say(f"Tokens / micro-batch: {rows_per_micro * cfg.max_seq_len:,}")
    tr.say(f"Total batch size {cfg.total_batch_size:,} => gradient accumulation steps: {tr.grad_accum}")
    tr.say("Optimizer groups:")
    for line in tr.opt.describe():
        tr.say(f"  {line}")


def save_checkpoint(tr: Trainer, state: TrainState, path: Path) -> str:
    import torch

    write_checkpoint(path, {"format": CHECKPOINT_FORMAT, "config": tr.cfg.to_dict(), "step": state.step,
                            "model": tr.model.state_dict(), "optimizer": tr.opt.state_dict(),
                            "rng": torch.get_rng_state(), "state": state.to_dict(),
                            "log_bytes": tr.log_file.tell() if tr.log_file is not None else None})
    return str(path)


def eval_and_checkpoint(tr: Trainer, state: TrainState, start_step: int) -> None:
    """Evaluate at step 0, every eval_every steps and at the end; checkpoint every
    checkpoint_every steps (rank 0)."""
    cfg, step = tr.cfg, state.step
    due = step == 0 or step == tr.horizon or (cfg.eval_every > 0 and step % cfg.eval_every == 0)
    if tr.master and due and step not in {s for s, _ in state.evals}:
        bpb = evaluate_bpb(tr.model, tr.val_tokens, tr.token_bytes, cfg.max_seq_len, cfg.device_batch_size,
                           cfg.eval_tokens, tr.device, tr.autocast)
        state.evals.append((step, bpb))
        state.eval_times.append(state.train_time)
        tr.say(f"Step {step:05d} | Validation bpb: {bpb:.6f}")
    if (tr.master and tr.out_dir is not None and cfg.checkpoint_every > 0 and 0 < step < tr.horizon
            and step != start_step and step % cfg.checkpoint_every == 0):
        save_checkpoint(tr, state, tr.out_dir / f"checkpoint_{step:05d}.pt")
        kept = sorted(tr.out_dir.glob("checkpoint_[0-9]*.pt"), key=lambda f: int(f.stem.split("_")[1]))
        for old in kept[:-cfg.keep_checkpoints]:
            old.unlink(missing_ok=True)  # the newest keep_checkpoints stay: disk stays bounded


def train_step(tr: Trainer, state: TrainState) -> bool:
    """One optimizer step over total_batch_size tokens; False (and the run marked failed)
    when the loss is not finite."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    cfg, step, cuda = tr.cfg, state.step, tr.device.type == "cuda"
    rows = cfg.device_batch_size
    if cuda:
        torch.cuda.synchronize(tr.device)
    t0 = time.perf_counter()
    starts = batch_starts(len(tr.train_tokens), cfg.max_seq_len, tr.grad_accum * rows * tr.world, cfg.seed, step)
    loss_sum = torch.zeros((), device=tr.device)
    for micro in range(tr.grad_accum):
        first = (micro * tr.world + tr.rank) * rows
        x, y = token_windows(tr.train_tokens, starts[first:first + rows], cfg.max_seq_len, tr.device)
        sync = tr.world == 1 or micro == tr.grad_accum - 1
        with (nullcontext() if sync else tr.ddp_model.no_sync()):
            with tr.autocast():
                logits = tr.ddp_model(input_ids=x).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            (loss / tr.grad_accum).backward()
        loss_sum += loss.detach()
    if tr.world > 1:
        dist.all_reduce(loss_sum)
    loss_f = loss_sum.item() / (tr.grad_accum * tr.world)
    if not math.isfinite(loss_f):
        state.status = "failed"
        state.notes.append(f"non-finite train loss ({loss_f}) at step {step}; run stopped there")
        tr.say(f"step {step:05d}/{tr.horizon:05d} | non-finite loss: {loss_f} | stopping")
        tr.opt.zero_grad(set_to_none=True)
        return False
    lrm = lr_multiplier(step, tr.horizon, cfg.warmup_ratio, cfg.warmdown_ratio, cfg.final_lr_frac)
    tr.opt.schedule(step, lrm)
    tr.opt.step()
    tr.opt.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize(tr.device)
    dt = time.perf_counter() - t0
    state.train_time += dt
    state.losses.append(loss_f)
    state.dts.append(dt * 1000)
    state.tps.append(cfg.total_batch_size / dt)
    state.smooth = 0.9 * state.smooth + 0.1 * loss_f
    mfu = 100 * tr.flops_per_token * cfg.total_batch_size / dt / (tr.peak_flops * tr.world)
    tr.say(f"step {step:05d}/{tr.horizon:05d} ({100 * step / tr.horizon:.2f}%) | loss: "
           f"{state.smooth / (1 - 0.9 ** (step + 1)):.6f} | lrm: {lrm:.2f} | dt: {dt * 1000:.2f}ms | "
           f"tok/sec: {int(state.tps[-1]):,} | mfu: {mfu:.2f} | total time: {state.train_time / 60:.2f}m")
    state.step += 1
    return True


def finish(tr: Trainer, state: TrainState) -> RunSummary:
    """Final checkpoint, the log's closing lines (nanochat's, plus time-to-target)."""
    import torch.distributed as dist

    cfg = tr.cfg
    tok_med, dt_med = step_time_medians(state.dts, state.tps)
    ttt = time_to_target(state.evals, state.eval_times, cfg.target_threshold, tr.horizon, dt_med / 1000)
    checkpoint_path = ""
    if tr.master and state.status == "ok" and tr.out_dir is not None:
        checkpoint_path = save_checkpoint(tr, state, tr.out_dir / "checkpoint.pt")
    tr.say(f"Total training time: {state.train_time / 60:.2f}m")
    if state.evals:
        tr.say(f"Minimum validation bpb: {finite_min(v for _, v in state.evals):.6f}")
    minutes = ttt.seconds / 60
    shown = f"{minutes:.4f}m" if math.isfinite(minutes) else ("inf" if minutes > 0 else "n/a")
    tr.say(f"Time-to-target ({cfg.target_metric}): {shown} | method: {ttt.method} | threshold: "
           f"{cfg.target_threshold:.6f} | step: {ttt.crossing_step:.1f} | within horizon: "
           f"{'yes' if ttt.reached_within_horizon else 'no'}")
    if tr.world > 1:
        dist.barrier()
    return summarize(
        state.status, state.step, tr.horizon, tr.groups["total"], cfg.total_batch_size, state.evals,
        state.eval_times, ttt, tok_med, dt_med, state.train_time, state.notes, scaling_params=tr.groups,
        grad_accum_steps=tr.grad_accum, world_size=tr.world, train_losses=state.losses,
        log_path=str(tr.out_dir / "train.log") if tr.master and tr.out_dir is not None else "",
        checkpoint_path=checkpoint_path)


def train(cfg: TrainConfig, train_tokens, val_tokens, token_bytes,
          log: Callable[[str], None] = print, out_dir: str | Path | None = None,
          return_model: bool = False, label: str = "train"):
    """Train from scratch (or from ``cfg.resume_from``); see the module docstring.

    setup -> (eval/checkpoint, step)* -> finish. Returns a RunSummary, or (RunSummary,
    model in eval mode) with ``return_model``.
    """
    tr, state = setup(cfg, train_tokens, val_tokens, token_bytes, log, out_dir)
    try:
        start_step = state.step
        bar = tqdm(total=tr.horizon, initial=state.step, desc=label, disable=None if tr.master else True,
                   leave=False)
        while True:
            eval_and_checkpoint(tr, state, start_step)
            if state.step == tr.horizon or not train_step(tr, state):
                break
            bar.update(1)
            advance(label, state.step, tr.horizon)
        bar.close()
        advance(label, tr.horizon, tr.horizon)
        result = finish(tr, state)
    finally:
        tr.close()
    return (result, tr.model.eval()) if return_model else result
