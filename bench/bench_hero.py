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
    python bench/bench_hero.py --quick     # 2 repeats of 2 steps: seconds
    python bench/bench_hero.py --profile fixtures/profiles/gpu.toml --device cuda
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import alternating, arguments, figure, ratio, setup_threads, write_record  # noqa: E402
from expspec.kernels.config import resolve_scale  # noqa: E402
from expspec.kernels.hero import losses  # noqa: E402
from expspec.kernels.hero.model import (  # noqa: E402
    answer_logits, build_latent, load_models, prefix_embeds, prepare, targets_for)
from expspec.kernels.hero.qa_data import load_questions  # noqa: E402
from expspec.kernels.hero.stages import train_stage  # noqa: E402


def stage_seconds(stage: str, models, cfg, train, evals, steps: int) -> float:
    cfg = {**cfg, "stage_a_samples": steps * cfg["batch_size"], "stage_b_samples": steps * cfg["batch_size"],
           "stage_a_epochs": 1, "stage_b_epochs": 1, "grad_accum": 1, "log_every": 1, "eval_every": 10 ** 6}
    latent = build_latent(models, cfg, 0)
    with tempfile.TemporaryDirectory() as tmp:
        train_stage(stage, models, latent, train, evals, cfg, Path(tmp), seed=0)
        records = [json.loads(line) for line in (Path(tmp) / "diagnostics.jsonl").read_text().splitlines()]
    times = [r["sec_per_step"] for r in records if r["mode"] == "train"]
    if len(times) <= 2:
        raise SystemExit(f"stage {stage}: {len(times)} train records, need > 2 (first two are skipped)")
    return statistics.median(times[2:])


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

    def run(fn):
        def steps_done(_round):
            for i in range(steps):
                fn(i)
            return steps
        return steps_done

    rates = alternating({"ours": run(ours), "plain": run(plain)}, repeats)
    return {name: 1 / rate for name, rate in rates.items()}


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="a profile TOML (default: the built-in smoke one)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 2
    steps = 2 if args.quick else 4
    threads = setup_threads(args)
    cfg = dict(resolve_scale("smoke", args.profile)["hero"])
    n = max(64, (steps + 2) * cfg["batch_size"])  # enough training questions for every timed step
    train_q, eval_q = load_questions(cfg["qa_dataset"], n, 4, cfg["qa_seed"], cfg["qa_multi_token_share"],
                                     cfg["qa_max_facts"])
    models = load_models(cfg, args.device)
    train, evals = prepare(models, train_q), prepare(models, eval_q)
    print(f"== hero steps: batch {cfg['batch_size']}, M={cfg['latent_len']}, K={cfg['k_tokens']}, {args.device}, "
          f"{threads} threads, {args.repeats} repeats of {steps} steps ==", flush=True)
    pair = step_pair(models, cfg, train, args.repeats, steps)
    entry = ratio("step_vs_plain_full_logits", pair["ours"], pair["plain"], "s/step", target_min=1.0,
                  reference_name="plain full logits", higher_is_better=False)
    per_stage = {f"stage_{stage}": figure(f"hero_stage_{stage}_seconds_per_step",
                                          stage_seconds(stage, models, cfg, train, evals, steps + 2), "s")
                 for stage in ("A", "B")}
    write_record(args, "hero", {"ratios": {"step_vs_plain_full_logits": entry}, "seconds_per_step": per_stage,
                                "profile": args.profile or "smoke", "steps": steps}, device=args.device)


if __name__ == "__main__":
    main()
