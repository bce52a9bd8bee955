"""Benchmark: hero readiness's training steps (kernels/hero/stages.py) at the smoke sizes.

Why: the smoke gate's budget is ~450 Stage A steps plus a Stage B, so seconds per step set
what the gate costs, and the GPU profile's step time what a hero-sized run costs. Prints
the seconds per optimizer step of Stage A (latent prefix, decoder frozen) and Stage B
(+ LoRA) as the real ``train_stage`` runs them (the train records' step times, first two
skipped), and one ratio measured side by side, alternating, median of ``--repeats``:

* step_vs_plain_full_logits: our Stage A step (the output head on the K answer positions
  only) against the same step written the plain way (``decoder(inputs_embeds=...).logits``
  over every position, then the CE of the answer positions). Target >= 1.0.

Merges the figures into ``reports/bench/<date>.json`` under "hero".

    python bench/bench_hero.py             # smoke sizes (batch 8, M=4, K=3), 5 repeats of 4 steps
    python bench/bench_hero.py --quick     # 2 repeats of 2 steps, 16 questions
    python bench/bench_hero.py --profile fixtures/profiles/gpu.toml --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from expspec.kernels.atomic_io import write_json_atomic
from expspec.kernels.config import resolve_scale
from expspec.kernels.hero import losses
from expspec.kernels.hero.model import answer_logits, build_latent, load_models, prepare, prefix_embeds, targets_for
from expspec.kernels.hero.qa_data import load_questions
from expspec.kernels.hero.stages import train_stage

ROOT = Path(__file__).resolve().parent.parent


def stage_seconds(stage: str, models, cfg, train, evals, steps: int) -> float:
    cfg = {**cfg, "stage_a_samples": steps * cfg["batch_size"], "stage_b_samples": steps * cfg["batch_size"],
           "stage_a_epochs": 1, "stage_b_epochs": 1, "grad_accum": 1, "log_every": 1, "eval_every": 10 ** 6}
    latent = build_latent(models, cfg, 0)
    with tempfile.TemporaryDirectory() as tmp:
        train_stage(stage, models, latent, train, evals, cfg, Path(tmp), seed=0)
        records = [json.loads(line) for line in (Path(tmp) / "diagnostics.jsonl").read_text().splitlines()]
    times = [r["sec_per_step"] for r in records if r["mode"] == "train"][2:]
    return statistics.median(times)


def step_pair(models, cfg, data, repeats: int, steps: int) -> dict:
    """Median seconds per Stage A step: ours vs the plain full-logits step, alternating."""
    latent = build_latent(models, cfg, 0)
    opt = torch.optim.AdamW(latent.parameters(), lr=cfg["lr"])
    k, b = cfg["k_tokens"], cfg["batch_size"]

    def ours(i):
        index = [(i * b + j) % len(data) for j in range(b)]
        targets = targets_for(data, index, k)
        logits = answer_logits(models, prefix_embeds(models, latent, data, index), targets[:, :-1])
        (cfg["first_token_weight"] * losses.first_token_ce(logits, targets)
         + losses.k_token_ce(logits, targets)).backward()
        opt.step()
        opt.zero_grad()

    def plain(i):
        index = [(i * b + j) % len(data) for j in range(b)]
        targets = targets_for(data, index, k)
        prefix = prefix_embeds(models, latent, data, index)
        inputs = models.decoder.get_input_embeddings()(targets[:, :-1].clamp_min(0))
        logits = models.decoder(inputs_embeds=torch.cat([prefix, inputs], 1)).logits[:, prefix.shape[1] - 1:]
        (cfg["first_token_weight"] * losses.first_token_ce(logits, targets)
         + losses.k_token_ce(logits, targets)).backward()
        opt.step()
        opt.zero_grad()

    ours(0), plain(0)  # warm-up, not timed
    times = {"ours": [], "plain": []}
    for r in range(repeats):
        for name, fn in (("ours", ours), ("plain", plain)) if r % 2 == 0 else (("plain", plain), ("ours", ours)):
            start = time.perf_counter()
            for i in range(steps):
                fn(i)
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", default=None, help="a profile TOML (default: the built-in smoke one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out-dir", default=str(ROOT / "reports" / "bench"))
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    steps = 2 if args.quick else 4
    cfg = dict(resolve_scale("smoke", args.profile)["hero"])
    n = 16 if args.quick else 64
    train_q, eval_q = load_questions(cfg["qa_dataset"], n, 4, cfg["qa_seed"], cfg["qa_multi_token_share"],
                                     cfg["qa_max_facts"])
    models = load_models(cfg, args.device)
    train, evals = prepare(models, train_q), prepare(models, eval_q)
    pair = step_pair(models, cfg, train, repeats, steps)
    ratio = pair["plain"] / pair["ours"]
    print(f"step_vs_plain_full_logits: {ratio:.2f}x (ours {pair['ours']:.3f} s/step, reference "
          f"{pair['plain']:.3f} s/step) target >= 1.0")
    per_stage = {stage: stage_seconds(stage, models, cfg, train, evals, steps + 2) for stage in ("A", "B")}
    for stage, sec in per_stage.items():
        print(f"hero stage {stage}: {sec:.3f} s/step (batch {cfg['batch_size']}, M={cfg['latent_len']}, "
              f"K={cfg['k_tokens']}, {args.device}, {torch.get_num_threads()} threads)")
    path = Path(args.out_dir) / f"{time.strftime('%Y-%m-%d')}.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    record["hero"] = {"ratios": {"step_vs_plain_full_logits": {"ratio": ratio, "ours_s_per_step": pair["ours"],
                                                              "reference_s_per_step": pair["plain"],
                                                              "target_min": 1.0}},
                      "stage_s_per_step": per_stage, "quick": args.quick, "device": args.device,
                      "profile": args.profile or "smoke", "threads": torch.get_num_threads(),
                      "machine": platform.platform(), "repeats": repeats, "steps": steps,
                      "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json_atomic(path, record)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
