"""Benchmark: the built-in trainer (kernels/train/loop.py) against a plain PyTorch loop.

Why: Lane B ranks recipes by time-to-target, so the trainer's tokens per second is part of
every number it reports, and a trainer slower than the loop a user would write by hand
would bias that. For each model - the default ``nanochat_gpt`` (Muon + AdamW), the Llama
``tiny_gpt`` (AdamW) and, unless --no-hf, the HF option (SmolLM2-135M from the shipped
wheel, AdamW) - ``train()`` runs ``--steps`` optimizer steps (evaluations off), then a
plain loop runs the same steps on the same model, batch windows, data and optimizer
(forward, cross-entropy, backward, step, zero_grad: nothing else), then the plain loop
again. The three take turns, ``--repeats`` rounds (default 6), the order rotated every
round; tokens/s is the median over steps after the first two (the trainer's own rule) and
over rounds, the plain loop's over both of its runs:

* trainer_vs_plain_loop_<model>: target >= 1.0 (the trainer's bookkeeping - logging,
  non-finite checks, the LR schedule, timing syncs - costs nothing measurable).
* plain_loop_vs_itself_<model>: the plain loop's second run against its first: no target,
  it is the noise floor. A trainer ratio this far from 1.0 is the machine's run-to-run
  spread, not the trainer (the record also keeps each side's min-max over rounds).

Also printed: the scaling-parameter count, the step time and the optimizer step alone
(Muon's Newton-Schulz iterations are what AdamW does not pay), and on a GPU the MFU, the
trainer's 6·N + 12·depth·d·seq FLOPs per token (N = the parameters in matmuls; the second
term is attention's score and value products) over the bf16 dense peak.

    python bench/bench_train.py                  # d=64 smoke shape, 2048-token steps, 6 rounds
    python bench/bench_train.py --quick          # 4 steps, 2 repeats, no HF model: seconds
    python bench/bench_train.py --device cuda --depth 12 --aspect-ratio 64 --head-dim 128 \\
        --seq 2048 --batch-tokens 524288 --device-batch 32 --vocab 65536
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import arguments, figure, ratio, setup_threads, write_record  # noqa: E402
from synthetic_text import text_like_stream  # noqa: E402 (bench/ is the script's folder)
from expspec.kernels.config import defaults  # noqa: E402
from expspec.kernels.models.params import scaling_params  # noqa: E402
from expspec.kernels.train.bpb import token_windows  # noqa: E402
from expspec.kernels.train.config import TrainConfig  # noqa: E402
from expspec.kernels.train.loop import batch_starts, build_model, flops_per_token, peak_flops, train  # noqa: E402
from expspec.kernels.train.optim import build_optimizer  # noqa: E402
from expspec.kernels.train.time_to_target import WARMUP_STEPS_EXCLUDED  # noqa: E402

HF_MODEL = "smollm2-135m-instruct"


def optimizer_step_ms(cfg: TrainConfig, vocab_size: int, repeats: int) -> float:
    import torch

    model = build_model(cfg, vocab_size)
    opt = build_optimizer(cfg, model)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.schedule(0, 1.0)
    opt.step()  # warm
    start = time.perf_counter()
    for step in range(repeats):
        opt.schedule(step, 1.0)
        opt.step()
    return (time.perf_counter() - start) / repeats * 1000


def plain_loop(cfg: TrainConfig, train_tokens: np.ndarray, vocab_size: int) -> list[float]:
    """tokens/s of each step of the loop a user writes by hand, same windows as the trainer."""
    import torch
    import torch.nn.functional as F

    device = torch.device(cfg.device)
    model = build_model(cfg, vocab_size).to(device)
    opt = build_optimizer(cfg, model)
    opt.schedule(0, 1.0)
    rows = cfg.device_batch_size
    accum = cfg.total_batch_size // (rows * cfg.max_seq_len)
    speeds = []
    for step in range(cfg.num_iterations):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        starts = batch_starts(len(train_tokens), cfg.max_seq_len, accum * rows, cfg.seed, step)
        for micro in range(accum):
            x, y = token_windows(train_tokens, starts[micro * rows:(micro + 1) * rows], cfg.max_seq_len, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(input_ids=x).logits
            (F.cross_entropy(logits.float().flatten(0, 1), y.flatten()) / accum).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        speeds.append(cfg.total_batch_size / (time.perf_counter() - t0))
    return speeds


def compare(model: str, args, stream: np.ndarray, vocab: int) -> dict:
    token_bytes = np.ones(vocab, dtype=np.int32)
    split = int(len(stream) * 0.9)
    cfg = TrainConfig.from_lane_b(
        defaults()["lane_b"], seed=0, model=model, depth=args.depth, aspect_ratio=args.aspect_ratio,
        head_dim=args.head_dim, max_seq_len=args.seq, device_batch_size=args.device_batch,
        total_batch_size=args.batch_tokens, num_iterations=args.steps, eval_every=0,
        eval_tokens=args.seq * 4 + 1, device=args.device)
    model_ = build_model(cfg, vocab)
    n = scaling_params(model_)
    flops = flops_per_token(cfg, model_, n["total"])
    del model_
    ours, plain, again, dts = [], [], [], []
    # again: the plain loop a second time, the noise floor. Each round rotates the order, so
    # each of the three holds each place equally often (reversing every other round left the
    # middle one always between the other two: it ran 5-11% slower than either)
    names = ("ours", "plain", "again")
    for r in range(args.repeats):
        for name in names[r % 3:] + names[:r % 3]:
            if name == "ours":
                result = train(cfg, stream[:split], stream[split:], token_bytes, log=lambda _line: None, label=model)
                ours.append(result.tok_per_sec_median)
                dts.append(result.dt_median_ms)
            else:
                (plain if name == "plain" else again).append(
                    statistics.median(plain_loop(cfg, stream[:split], vocab)[WARMUP_STEPS_EXCLUDED:]))
    opt_ms = optimizer_step_ms(cfg, vocab, repeats=3 if args.quick else 20)
    print(f"  {model}: scaling params {n['total']:,} (all {n['all_params']:,}), step {statistics.median(dts):.1f} ms, "
          f"optimizer alone {opt_ms:.1f} ms", flush=True)
    entry = ratio(f"trainer_vs_plain_loop_{model}", statistics.median(ours), statistics.median(plain + again),
                  "tok/s", target_min=1.0, reference_name="plain loop (both runs)")
    floor = ratio(f"plain_loop_vs_itself_{model}", statistics.median(again), statistics.median(plain), "tok/s",
                  reference_name="its first run")  # 'ours' here is the plain loop's second run
    entry.update(scaling_params=n["total"], all_params=n["all_params"], step_ms=statistics.median(dts),
                 optimizer_step_ms=opt_ms, noise_floor=floor,
                 spread={"ours": [min(ours), max(ours)], "plain": [min(plain + again), max(plain + again)]})
    if args.device.startswith("cuda"):
        import torch

        mfu = 100 * statistics.median(ours) * flops / peak_flops(torch.device(args.device))
        entry["mfu_percent"] = figure(f"mfu_{model}", mfu, "%", note=f"{flops:.3g} FLOPs/token")["value"]
    return entry


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], repeats=6)  # 6: each of the three rotations twice
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--aspect-ratio", type=int, default=32)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch-tokens", type=int, default=2048)
    parser.add_argument("--device-batch", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-hf", action="store_true", help=f"skip the HF option ({HF_MODEL})")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats, args.no_hf = WARMUP_STEPS_EXCLUDED + 2, 2, True
    threads = setup_threads(args)
    print(f"== trainer vs plain loop on {args.device}, {threads} threads: depth {args.depth}, aspect "
          f"{args.aspect_ratio}, head_dim {args.head_dim}, V {args.vocab}, seq {args.seq}, "
          f"{args.batch_tokens} tokens/step, {args.steps} steps, {args.repeats} rounds ==", flush=True)
    stream = text_like_stream(400_000, args.vocab)
    ratios = {model: compare(model, args, stream, args.vocab) for model in ("nanochat_gpt", "tiny_gpt")}
    if not args.no_hf:
        from transformers import AutoTokenizer

        from expspec.kernels.models.pretrained import resolve_model_path

        hf_vocab = len(AutoTokenizer.from_pretrained(resolve_model_path(HF_MODEL)))
        hf_args = type(args)(**{**vars(args), "seq": min(args.seq, 128), "device_batch": 4,
                                "batch_tokens": 4 * min(args.seq, 128), "steps": max(args.steps // 2, 4)})
        ratios[HF_MODEL] = compare(HF_MODEL, hf_args, text_like_stream(200_000, hf_vocab), hf_vocab)
    write_record(args, "trainer", {"ratios": {f"trainer_vs_plain_loop_{k}": v for k, v in ratios.items()},
                                   "shape": {k: getattr(args, k) for k in ("depth", "aspect_ratio", "head_dim", "seq",
                                                                          "batch_tokens", "device_batch", "vocab",
                                                                          "steps")}},
                 device=args.device)


if __name__ == "__main__":
    main()
