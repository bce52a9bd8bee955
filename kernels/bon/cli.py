"""``expspec bon ...``: the best-of-N seed's steps as subcommands.

    expspec bon prompts --out fixtures/data/prompts.jsonl     the deterministic prompt set
    expspec bon collect [--config collector.json] [--adapter DIR] [--output-dir D] [--device D]
        sample, score, pass@k -> <output_dir>/bon_run_<timestamp>.jsonl; without --config the
        collector config comes from the [bon] table (--scale/--profile/--set, as in pytest)
    expspec bon distill RUN.jsonl... --out pairs.jsonl [--keep-unsolved]
    expspec bon sft --pairs pairs.jsonl [--name NAME] [--out-dir adapters] [--base-model M]
        LoRA SFT -> <out-dir>/<name>/ (adapter_config.json + weights + training.json + train_steps.jsonl)
    expspec bon analyze RUN.jsonl... --out summary.json     mean pass@k, diversity, cost per run
    expspec bon predict RUN.jsonl... --out-dir D [--telemetry waits.csv]
        each run's own per-prompt emergence predictor (D/predict.json, D/bon_predictor.pkl)
        and coverage law, with its plot (D/coverage.png); bon.predictor_m must be below every
        run's samples per prompt and bon.coverage_fit_max_k below a k of each run

Bad input (unknown config key, wrong type, k > samples_per_prompt, missing or malformed
file): one line on stderr, exit 2, nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

from expspec.kernels.atomic_io import jsonable, write_json_atomic
from expspec.kernels.cli import add_config_args, config_from_args, device_from_args, out_path
from expspec.kernels.errors import ExpspecError


def cmd_prompts(args) -> int:
    from expspec.kernels.atomic_io import write_text_atomic
    from expspec.kernels.bon.prompts import generate_prompts, prompts_jsonl

    out = out_path(args.out)
    rows = generate_prompts()
    write_text_atomic(out, prompts_jsonl(rows))
    print(f"wrote {out}: {len(rows)} prompts")
    return 0


def cmd_collect(args) -> int:
    from dataclasses import replace

    from expspec.kernels.bon.collector import collect, load_prompts, read_collector_config, read_run
    from expspec.kernels.bon.pipeline import collector_config

    if args.config:
        cfg = read_collector_config(args.config)
    else:
        resolved = config_from_args(args)
        cfg = collector_config(resolved["bon"], resolved["common"], resolved["bon"]["output_dir"])
    if args.adapter:
        cfg = replace(cfg, adapter_path=args.adapter, adapter_name=cfg.adapter_name or Path(args.adapter).name)
    if args.output_dir:
        cfg = replace(cfg, output_dir=args.output_dir)
    if Path(cfg.output_dir).exists() and not Path(cfg.output_dir).is_dir():
        raise ExpspecError(f"output_dir {cfg.output_dir}: exists and is not a directory")
    if cfg.adapter_path and not (Path(cfg.adapter_path) / "adapter_config.json").is_file():
        raise ExpspecError(f"adapter_path {cfg.adapter_path}: no adapter_config.json there")
    load_prompts(cfg)  # a bad prompts file fails before the model loads
    path = collect(cfg, device=device_from_args(args), log=lambda line: print(line, flush=True))
    run = read_run(path)
    shown = ", ".join(f"pass@{k}={v:.3f}" for k, v in run.summary["mean_pass_at_k"].items())
    print(f"wrote {path}: {len(run.prompts)} prompts, {shown} ({run.summary['tok_per_s']:.1f} tok/s)")
    return 0


def _runs(paths):
    from expspec.kernels.bon.collector import read_run

    return [read_run(p) for p in paths]


def cmd_distill(args) -> int:
    from expspec.kernels.bon.distill import distill_pairs, write_pairs

    out = out_path(args.out)
    keep_unsolved = args.keep_unsolved or config_from_args(args)["bon"]["keep_unsolved"]
    pairs = distill_pairs(_runs(args.runs), keep_unsolved=keep_unsolved)
    write_pairs(out, pairs)
    gold = sum(p["source"] == "gold" for p in pairs)
    print(f"wrote {out}: {len(pairs)} pairs ({len(pairs) - gold} best-of-N, {gold} gold)")
    return 0


def cmd_sft(args) -> int:
    from expspec.kernels.bon.distill import read_pairs
    from expspec.kernels.bon.pipeline import base_model
    from expspec.kernels.bon.sft import sft_knobs, train_lora

    cfg = config_from_args(args)
    bon = cfg["bon"]
    pairs = read_pairs(args.pairs)
    name = args.name or bon["adapter_name"]
    if not name or "/" in name:
        raise ExpspecError(f"--name {name!r}: expected a folder name")
    record = train_lora(pairs, args.base_model or base_model(bon, cfg["common"]), args.out_dir, name,
                        **sft_knobs(bon, cfg["common"]), device=device_from_args(args),
                        log=lambda line: print(line, flush=True))
    print(f"wrote {record['adapter_dir']}: loss {record['initial_loss']:.4f} -> {record['final_loss']:.4f} "
          f"({record['loss_drop']:.1%} lower) on {record['pairs']} pairs")
    return 0


def cmd_analyze(args) -> int:
    from expspec.kernels.bon.analyze import compare_runs

    out = out_path(args.out)
    summary = compare_runs(_runs(args.runs))
    write_json_atomic(out, summary)
    for s in summary["runs"]:
        print(f"{s['label']}: " + ", ".join(f"pass@{k}={v:.3f}" for k, v in s["mean_pass_at_k"].items()))
    print(f"wrote {out}")
    return 0


def cmd_predict(args) -> int:
    from expspec.kernels.bon.analyze import predict_knobs
    from expspec.kernels.bon.plots import plot_coverage
    from expspec.kernels.bon.predict import read_telemetry, write_predictions

    cfg = config_from_args(args)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExpspecError(f"--out-dir {out_dir}: exists and is not a directory")
    runs = _runs(args.runs)
    telemetry = read_telemetry(args.telemetry) if args.telemetry else None
    result = write_predictions(runs, out_dir, **predict_knobs(cfg["bon"], cfg["common"]), telemetry=telemetry)
    plot_coverage(out_dir / "coverage.png", result["coverage_law"])
    em = result["emergence"]
    shown = {name: {k: r[k] for k in ("auc", "mean_fold_auc", "accuracy", "majority_accuracy")} if "auc" in r else r
             for name, r in em["runs"].items()}
    errors = {k: v["max_relative_error"] for k, v in result["coverage_law"].items()}
    print(json.dumps(jsonable({"gate_run": em["gate_run"], "emergence": shown, "coverage_max_relative_error": errors})))
    print(f"wrote {out_dir / 'predict.json'}, {out_dir / 'bon_predictor.pkl'}, {out_dir / 'coverage.png'}")
    return 0


def add_commands(sub) -> None:
    bon = sub.add_parser("bon", help="Best-of-N emergence: collect, distill, sft, analyze, predict")
    steps = bon.add_subparsers(dest="step", required=True)

    p = steps.add_parser("prompts", help="write the deterministic prompt set (JSONL)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_prompts)

    p = steps.add_parser("collect", help="sample n per prompt, score, pass@k -> bon_run_<timestamp>.jsonl")
    p.add_argument("--config", default=None, help="collector config JSON (default: from the [bon] table)")
    p.add_argument("--adapter", default=None, help="a peft adapter dir on top of base_model")
    p.add_argument("--output-dir", default=None, help="overrides the config's output_dir")
    add_config_args(p, device=True)
    p.set_defaults(func=cmd_collect)

    p = steps.add_parser("distill", help="best-of-N imitation pairs from run files")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--keep-unsolved", action="store_true",
                   help="unsolved prompts get the gold answer (source=gold); default: bon.keep_unsolved")
    add_config_args(p)
    p.set_defaults(func=cmd_distill)

    p = steps.add_parser("sft", help="LoRA SFT on pairs -> <out-dir>/<name>/")
    p.add_argument("--pairs", required=True)
    p.add_argument("--name", default=None, help="adapter folder name (default: bon.adapter_name)")
    p.add_argument("--out-dir", default="adapters")
    p.add_argument("--base-model", default=None, help="default: bon.base_model, else common.causal_lm")
    add_config_args(p, device=True)
    p.set_defaults(func=cmd_sft)

    p = steps.add_parser("analyze", help="summary.json comparing runs (pass@k, diversity, cost)")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_analyze)

    p = steps.add_parser("predict", help="emergence predictor + coverage law from run files")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--telemetry", default=None, help="CSV with an id column whose other columns join the features")
    add_config_args(p)
    p.set_defaults(func=cmd_predict)
