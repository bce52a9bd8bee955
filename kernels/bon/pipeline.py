"""Best-of-N emergence's steps, in the order the seed runs them, and their edge: the [bon]
table unpacked once into the kernels' explicit parameters.

    collect (base)           step_collect, here
    distill + LoRA SFT       sft.step_adapter
    collect (adapter)        step_collect again: base + adapter, same prompts and seeds
    analyze + predict        analyze.step_analysis

Each step lives beside its kernel, so the run cache's key of a step (the import closure of
its module) changes with that step's code only: editing the predictor does not resample.
Each writes into the folder it is given (a run-cache entry under pytest, any folder from
the CLI) and returns a small JSON-able record naming what it wrote.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Mapping

from expspec.kernels.bon.collector import (KNOB_FIELDS, CollectorConfig, check_collector_config, collect,
                                           load_prompts, read_run)
from expspec.kernels.bon.prompts import held_out_by_category, shipped_prompts_file

Log = Callable[[str], None]


def base_model(bon: Mapping[str, Any], common: Mapping[str, Any]) -> str:
    return bon["base_model"] or common["causal_lm"]


def prompts_file(bon: Mapping[str, Any]) -> str:
    return bon["prompts_file"] or str(shipped_prompts_file())


def collector_config(bon: Mapping[str, Any], common: Mapping[str, Any], output_dir: str | Path,
                     adapter_path: str | Path | None = None) -> CollectorConfig:
    """The seed's collector config from the [bon] table (sampler seed: common.seed)."""
    cfg = CollectorConfig(
        base_model=base_model(bon, common), prompts_file=prompts_file(bon),
        **{key: copy.deepcopy(bon[key]) for key in KNOB_FIELDS if key != "output_dir"}, output_dir=str(output_dir),
        adapter_name=bon["adapter_name"] if adapter_path else None,
        adapter_path=str(adapter_path) if adapter_path else None, metadata={"family": "bon"}, seed=common["seed"])
    check_collector_config(cfg, "bon")
    return cfg


def holdout_ids(bon: Mapping[str, Any], common: Mapping[str, Any]) -> list[str]:
    """Prompt ids kept out of distillation: within each category, every sft_holdout_every-th."""
    prompts = load_prompts(collector_config(bon, common, bon["output_dir"]))
    return held_out_by_category(prompts, every=bon["sft_holdout_every"])


def step_collect(cfg: CollectorConfig, device: str, log: Log = lambda line: None) -> dict:
    path = collect(cfg, device=device, log=log)
    run = read_run(path)
    return {"run_file": path.name, "label": run.label, "mean_pass_at_k": run.summary["mean_pass_at_k"],
            "seconds": run.summary["seconds"], "tok_per_s": run.summary["tok_per_s"]}
