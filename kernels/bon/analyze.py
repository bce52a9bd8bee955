"""Comparing best-of-N runs (base vs adapters): summary.json; and the pipeline's last step,
which adds the predictions (predict.py).

Per run: mean pass@k at every k of its config and at every k = 1..n (the unbiased
estimator allows any k <= n), the best-of-N gain pass@k_max - pass@1, mean answer entropy,
unique-answer fraction and token entropy, and the cost (tokens, seconds, tokens/s). A
prompt subset (``ids``) restricts every mean to those prompts, e.g. the prompts an
adapter was not trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from expspec.kernels.atomic_io import write_json_atomic
from expspec.kernels.bon.collector import DIVERSITY_KEYS, Run, read_run
from expspec.kernels.bon.predict import write_predictions
from expspec.kernels.bon.scoring import pass_at_k


def run_summary(run: Run, ids: Iterable[str] | None = None) -> dict:
    keep = set(ids) if ids is not None else None
    records = [r for r in run.prompts if keep is None or r["id"] in keep]
    if not records:
        return {"label": run.label, "prompts": 0}
    n = min(int(r["n"]) for r in records)
    ks = [int(k) for k in run.header["config"]["k_values"]]
    curve = {str(k): float(np.mean([pass_at_k(int(r["n"]), int(r["c"]), k) for r in records])) for k in range(1, n + 1)}
    div = {key: float(np.mean([r["diversity"][key] for r in records]))
           for key in DIVERSITY_KEYS}
    seconds = float(sum(r["latency_s"] for r in records))
    tokens = int(sum(r["tokens"] for r in records))
    return {"label": run.label, "run": run.path.name, "model": run.header["model"], "adapter": run.header["adapter"],
            "seed": run.header["seed"], "prompts": len(records), "samples_per_prompt": n,
            "mean_pass_at_k": {str(k): curve[str(k)] for k in ks}, "pass_at_k_curve": curve,
            "bon_gain": curve[str(ks[-1])] - curve["1"],
            "solved_fraction": float(np.mean([r["c"] > 0 for r in records])),
            **div, "tokens": tokens, "seconds": seconds, "tok_per_s": tokens / seconds if seconds > 0 else 0.0,
            "mean_tokens_per_sample": tokens / (len(records) * n)}


def compare_runs(runs: Sequence[Run], ids: Iterable[str] | None = None) -> dict:
    """summary.json: each run's summary, and each later run's pass@k change against the first."""
    ids = list(ids) if ids is not None else None
    summaries = [run_summary(run, ids) for run in runs]
    base = summaries[0]
    deltas = {}
    for s in summaries[1:]:
        if s.get("prompts") and base.get("prompts"):
            deltas[s["label"]] = {k: s["mean_pass_at_k"][k] - base["mean_pass_at_k"].get(k, float("nan"))
                                  for k in s["mean_pass_at_k"]}
    return {"runs": summaries, "pass_at_k_change_vs_first": deltas}


def predict_knobs(bon: Mapping[str, Any], common: Mapping[str, Any]) -> dict:
    """write_predictions' knob parameters from the [bon] table (the pipeline and the CLI);
    the CV folds are seeded by common.seed."""
    return {"m": bon["predictor_m"], "tau": bon["emergence_tau"], "folds": bon["predictor_folds"],
            "c_grid": list(bon["predictor_c_grid"]), "fit_max_k": bon["coverage_fit_max_k"], "seed": common["seed"]}


def step_analysis(bon: Mapping[str, Any], common: Mapping[str, Any], base_run: Path, adapter_run: Path, out_dir: Path,
                  held_out: Sequence[str], telemetry: Mapping | None = None) -> dict:
    """summary.json (base vs adapter on all / trained / held-out prompts), then predict.json
    and bon_predictor.pkl (each run's own emergence predictor, the gate on the base run's;
    each run's coverage law)."""
    base, adapted = read_run(base_run), read_run(adapter_run)
    trained = [r["id"] for r in base.prompts if r["id"] not in set(held_out)]
    summary = {"all": compare_runs([base, adapted]), "trained": compare_runs([base, adapted], trained),
               "held_out": compare_runs([base, adapted], held_out)}
    result = write_predictions([base, adapted], out_dir, **predict_knobs(bon, common), telemetry=telemetry)
    write_json_atomic(out_dir / "summary.json", summary)
    em = result["emergence"]
    gate = em["runs"][em["gate_run"]]
    return {"summary": "summary.json", "predict": "predict.json", "predictor": "bon_predictor.pkl",
            "gate_run": em["gate_run"], "auc": gate["auc"], "mean_fold_auc": gate["mean_fold_auc"],
            "accuracy": gate["accuracy"], "majority_accuracy": gate["majority_accuracy"],
            "auc_by_run": {name: r.get("auc") for name, r in em["runs"].items()},
            "coverage_max_relative_error": {k: v["max_relative_error"] for k, v in result["coverage_law"].items()}}
