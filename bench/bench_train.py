"""Benchmark: trainer speed of the built-in GPTs (kernels/train/, kernels/models/gpt.py).

Why: Lane B ranks recipes by time-to-target, so the built-in model's tokens per second
is part of every number it reports. This times whole optimizer steps of the real
trainer (forward, backward, optimizer; evaluations excluded, first steps skipped as the
trainer's medians do) for the default ``nanochat_gpt`` (Muon + AdamW) and the Llama
``tiny_gpt`` (AdamW) at the same depth / aspect_ratio / head_dim, and the optimizer
step alone (Muon's Newton-Schulz iterations are the part AdamW does not pay).

    python bench/bench_train.py            # the smoke shape: d=64, seq 128, 2048-token steps
    python bench/bench_train.py --quick    # fewer steps, seconds
    python bench/bench_train.py --depth 4 --aspect-ratio 64 --head-dim 64 --vocab 4096
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from synthetic_text import text_like_stream  # noqa: E402 (bench/ is the script's folder)
from expspec.kernels.config import defaults  # noqa: E402
from expspec.kernels.models.params import scaling_params  # noqa: E402
from expspec.kernels.train.config import TrainConfig  # noqa: E402
from expspec.kernels.train.loop import build_model, train  # noqa: E402
from expspec.kernels.train.optim import build_optimizer  # noqa: E402

MODELS = ("nanochat_gpt", "tiny_gpt")



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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (seconds)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--aspect-ratio", type=int, default=32)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch-tokens", type=int, default=2048)
    parser.add_argument("--device-batch", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's choice)")
    args = parser.parse_args()
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    steps = 15 if args.quick else args.steps
    stream = text_like_stream(400_000, args.vocab)
    token_bytes = np.ones(args.vocab, dtype=np.int32)
    print(f"== trainer steps: depth {args.depth}, aspect {args.aspect_ratio}, head_dim {args.head_dim}, "
          f"V {args.vocab}, seq {args.seq}, {args.batch_tokens} tokens/step, {steps} steps, "
          f"{torch.get_num_threads()} threads ==")
    speed = {}
    for model in MODELS:
        cfg = TrainConfig.from_lane_b(
            defaults()["lane_b"], seed=0, model=model, depth=args.depth, aspect_ratio=args.aspect_ratio,
            head_dim=args.head_dim, max_seq_len=args.seq, device_batch_size=args.device_batch,
            total_batch_size=args.batch_tokens, num_iterations=steps, eval_every=0,
            eval_tokens=args.seq * 4 + 1, device="cpu")
        n = scaling_params(build_model(cfg, args.vocab))
        result = train(cfg, stream[:360_000], stream[360_000:], token_bytes, log=lambda _line: None, label=model)
        opt_ms = optimizer_step_ms(cfg, args.vocab, repeats=5 if args.quick else 20)
        speed[model] = result.tok_per_sec_median
        print(f"{model:13s} scaling params {n['total']:>11,} (all {n['all_params']:>11,})  "
              f"{result.tok_per_sec_median:>9,.0f} tok/s  step {result.dt_median_ms:7.1f} ms  "
              f"optimizer alone {opt_ms:6.1f} ms")
    print(f"nanochat_gpt / tiny_gpt tok/s: {speed['nanochat_gpt'] / speed['tiny_gpt']:.2f}x")


if __name__ == "__main__":
    main()
