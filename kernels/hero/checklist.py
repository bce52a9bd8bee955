"""The action plan's readiness checklist, its decision tree and its hero projection.

Six checks from the plan plus one of ours (``latent_beats_prior``: a model that never reads
the prefix must not pass as learning). The first-token checks read the run's *eval* series
(unseen people, teacher-forced), across Stage A and Stage B; gradient health reads every
record's pre-clip norm; the rest read the final greedy eval.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from expspec.kernels.hero.diagnostics import DiagnosticPoint, summarize_series

CHECKS = ("first_token_learning", "first_token_stability", "f1_breakthrough", "generation_quality",
          "gradient_health", "no_mode_collapse", "latent_beats_prior")

EXPOSURE_BIAS = "exposure bias: first tokens are learned but no answer scores - enable scheduled sampling (Phase 3)"
TUNE = "tune: raise the first-token CE weight, train Stage B longer, try a cosine LR (Phase 2)"
READY = "hero-ready: every checklist item passed - start the hero run"


def run_series(points: Sequence[DiagnosticPoint]) -> dict:
    """The checklist's view of a run's diagnostics: its eval series (first_acc) summarised,
    and the largest grad norm any record saw."""
    evals = [p for p in points if p.series.endswith("/eval")]
    summary = summarize_series(evals or points)
    norms = [p.grad_norm for p in points if p.grad_norm is not None]
    summary["max_grad_norm"] = max(norms, key=lambda n: float("inf") if n != n else n) if norms else None
    if summary["max_grad_norm"] is not None and summary["max_grad_norm"] != summary["max_grad_norm"]:
        summary["max_grad_norm"] = float("inf")  # a NaN norm is a blow-up
    return summary


def checklist(series: Mapping[str, Any], evaluation: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict[str, dict]:
    """Each check: measured, required, passed."""
    latent = evaluation["latent"]
    priors = evaluation["priors"]
    best_prior_f1 = max(priors["overall"]["f1"], priors["per_type"]["f1"])
    best_prior_first = max(priors["overall"]["first_acc"], priors["per_type"]["first_acc"])
    first_acc = evaluation["first_token"]["first_acc"]
    margin = cfg["min_prior_margin"]
    f1_gain, first_gain = latent["mean_f1"] - best_prior_f1, first_acc - best_prior_first
    norm = series["max_grad_norm"]
    over_peak = series["final_over_peak"] or 0.0
    repetition = latent["error_modes"]["repetition"]["rate"]
    return {
        "first_token_learning": {"measured": series["peak_first_acc"], "required": f">= {cfg['min_peak_first_acc']}",
                                 "passed": series["peak_first_acc"] >= cfg["min_peak_first_acc"]},
        "first_token_stability": {"measured": over_peak, "required": f">= {cfg['min_final_over_peak']} of the peak",
                                  "passed": over_peak >= cfg["min_final_over_peak"]},
        "f1_breakthrough": {"measured": latent["n_f1_nonzero"],
                            "required": f">= {cfg['min_f1_nonzero_examples']} examples with F1 > 0",
                            "passed": latent["n_f1_nonzero"] >= cfg["min_f1_nonzero_examples"]},
        "generation_quality": {"measured": latent["mean_f1"], "required": f"mean F1 >= {cfg['min_mean_f1']}",
                               "passed": latent["mean_f1"] >= cfg["min_mean_f1"]},
        "gradient_health": {"measured": norm, "required": f"max grad norm < {cfg['max_grad_norm']}",
                            "passed": norm is not None and norm < cfg["max_grad_norm"]},
        "no_mode_collapse": {"measured": repetition, "required": f"repetition rate < {cfg['max_repetition_rate']}",
                             "passed": repetition < cfg["max_repetition_rate"]},
        "latent_beats_prior": {"measured": {"f1_gain": f1_gain, "first_acc_gain": first_gain},
                               "required": f"mean F1 and first-token accuracy above the best prior by > {margin}",
                               "passed": f1_gain > margin and first_gain > margin},
    }


def decision(checks: Mapping[str, Mapping], series: Mapping[str, Any], evaluation: Mapping[str, Any],
             cfg: Mapping[str, Any]) -> dict:
    """The plan's decision tree: ready, exposure bias (-> scheduled sampling) or tune (-> Phase 2)."""
    failed = [name for name in CHECKS if not checks[name]["passed"]]
    if not failed:
        return {"ready": True, "failed": [], "diagnosis": "ready", "text": READY}
    no_f1 = evaluation["latent"]["n_f1_nonzero"] == 0
    if no_f1 and series["peak_first_acc"] >= cfg["min_peak_first_acc"]:
        return {"ready": False, "failed": failed, "diagnosis": "exposure_bias", "text": EXPOSURE_BIAS}
    return {"ready": False, "failed": failed, "diagnosis": "tune", "text": TUNE}


def hero_projection(mean_f1: float) -> str:
    """The plan's expected hero F1 for a smoke F1 - a labelled projection, not a measurement."""
    if mean_f1 > 0.10:
        return "projected hero F1 0.40+ (the plan's range for smoke F1 > 0.10)"
    if mean_f1 >= 0.05:
        return "projected hero F1 0.20-0.40 (the plan's range for smoke F1 0.05-0.10)"
    if mean_f1 >= 0.01:
        return "projected hero F1 0.10-0.20 (the plan's range for smoke F1 0.01-0.05)"
    return "no projection: the plan gives none below smoke F1 0.01"
