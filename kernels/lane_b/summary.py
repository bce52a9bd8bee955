"""Lane B run guide, steps 7-8 and run-all: the 21-column log and the decision.

Step 7 appends one row per candidate run to lane_b_inference_schema.csv (the fixed
21 columns of lane_b/schema.py; diagnostics go into ``notes`` as key=value).
Step 8 decides, per seed, which candidate reached the target fastest. Score = the
crossing step (interpolated between the evals that bracket the threshold, or fitted)
times the run's median step time, rescored at the current threshold; lowest wins; a
tie or no score at all is ``tie_or_missing``. Only accepted candidates - those that
reach the threshold, measured or extrapolated within their own horizon - get a score:
an extrapolation past the end of a run is a time that run never achieves. It
recommends the decision that won most seeds (ties broken inferred > confirmation >
fallback) and - which the original pipeline never did - compares each winner with the
baseline run of the same seed scored the same way.
When neither the inferred nor the confirmation candidate is accepted for any seed,
the decision is ``fallback`` at the default ratio and Lane B expansion stops: no
ratio grids.
"""

from __future__ import annotations

import math
from collections import Counter

from expspec.kernels.lane_b.pipeline import (baseline_id, current_candidates, read_infer, read_n_scaling_params,
                                             rescore, step_calibrate, step_calibration_points, step_candidates,
                                             step_infer, step_scaling_params, step_stats)
from expspec.kernels.lane_b.runs import LaneB, read_run_summary
from expspec.kernels.lane_b.schema import append_rows
from expspec.kernels.tables import format_notes, utc_timestamp
from expspec.kernels.atomic_io import write_json_atomic
from expspec.kernels.provenance import git_commit

DECISION_PRIORITY = ("inferred", "confirmation", "fallback")
TIE_OR_MISSING = "tie_or_missing"


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def score(row: dict) -> float:
    """The crossing step (interpolated between the evals bracketing the threshold, or
    fitted) x the run's median step time; nan when the candidate was not accepted."""
    if not _truthy(row.get("accepted")):
        return math.nan
    return _float(row.get("score_sec"))


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


# ---- step 7 -------------------------------------------------------------------------
def step_log(lb: LaneB) -> int:
    infer = read_infer(lb.path("infer.json"))
    n_params = read_n_scaling_params(lb)
    commit, threshold = git_commit(), lb.threshold()
    rows = []
    for cand in current_candidates(lb, infer):
        notes = {"solve_status": infer["solve_status"], "alpha_gate": infer.get("alpha_gate"),
                 "ttt_method": cand["time_to_target_method"], "accepted": cand["accepted"],
                 "reached_within_horizon": cand["reached_within_horizon"], "tokens": cand["tokens"],
                 "stats_tokenizer": infer.get("stats_tokenizer_id"), "train_tokenizer": infer.get("train_tokenizer_id"),
                 "calib_r2": infer.get("calib_fit_r2"), "target_position": infer.get("target_position"),
                 "empirical_alpha": (infer.get("empirical_alpha") or {}).get("alpha"),
                 "empirical_alpha_ci": (infer.get("empirical_alpha") or {}).get("ci"),
                 "alpha_ratio": infer.get("alpha_ratio_empirical_over_inferred"),
                 "score_sec": cand["score_sec"], "log": cand["log"]}
        if cand["notes"]:
            notes["run_notes"] = cand["notes"]
        rows.append({
            "timestamp_utc": utc_timestamp(), "git_commit": commit, "run_id": cand["run_id"],
            "seed": int(cand["seed"]), "dataset_id": lb.lane_b["dataset_id"],
            "target_metric_name": lb.lane_b["target_metric"], "target_metric_threshold": threshold,
            "n_scaling_params": n_params, "inferred_data_scaling_exponent": infer.get("alpha"),
            "inferred_target_tokens": infer.get("inferred_target_tokens"),
            "inferred_target_param_data_ratio": infer.get("inferred_target_param_data_ratio"),
            "confirmation_ratio": infer.get("confirmation_ratio"), "chosen_ratio": _float(cand["ratio"]),
            "lane_b_decision": cand["lane_b_decision"],
            "time_to_target_sec_measured": _finite_or_empty(cand["time_to_target_sec_measured"]),
            "time_to_target_sec_extrapolated": _finite_or_empty(cand["time_to_target_sec_extrapolated"]),
            "min_val_bpb": _finite_or_empty(cand["min_val_bpb"]),
            "tok_per_sec_median": _finite_or_empty(cand["tok_per_sec_median"]),
            "dt_median_ms": _finite_or_empty(cand["dt_median_ms"]),
            "status": cand["status"], "notes": format_notes(notes),
        })
    return append_rows(lb.path("lane_b_inference_schema.csv"), rows,
                       skip_existing_run_ids=lb.lane_b["skip_existing_run_ids"])


def _finite_or_empty(value):
    number = _float(value)
    return number if math.isfinite(number) else None


# ---- step 8 -------------------------------------------------------------------------
def _baseline_score(lb: LaneB, seed: int, threshold: float) -> tuple[float, str]:
    """The seed's baseline run (this recipe's) scored exactly like a candidate."""
    path = lb.work_dir / "runs" / baseline_id(lb, seed) / "run.json"
    if not path.is_file():
        return math.nan, "no baseline run for this seed"
    row = rescore(read_run_summary(path), threshold)
    return score(row), row["time_to_target_method"]


def decide(candidates: list[dict], run_seeds: list[int]) -> dict:
    """Per-seed winners, wins per decision, the recommended decision (the worksheet's rule)."""
    per_seed = {}
    for seed in run_seeds:
        rows = [r for r in candidates if int(r["seed"]) == seed]
        scored = sorted((score(r), r["lane_b_decision"]) for r in rows if math.isfinite(score(r)))
        tie = len(scored) > 1 and scored[0][0] == scored[1][0]
        winner = TIE_OR_MISSING if not scored or tie else scored[0][1]
        per_seed[seed] = {"winner": winner, "winner_score_sec": scored[0][0] if scored and not tie else None,
                          "scores_sec": {r["lane_b_decision"]: score(r) for r in rows},
                          "accepted": {r["lane_b_decision"]: _truthy(r["accepted"]) for r in rows}}
    wins = Counter(s["winner"] for s in per_seed.values() if s["winner"] != TIE_OR_MISSING)
    recommended = max(wins, key=lambda d: (wins[d], -DECISION_PRIORITY.index(d))) if wins else TIE_OR_MISSING
    return {"per_seed": per_seed, "wins": dict(wins), "recommended_decision": recommended}


def step_summary(lb: LaneB) -> dict:
    infer = read_infer(lb.path("infer.json"))
    threshold = lb.threshold()
    candidates = current_candidates(lb, infer)
    run_seeds = lb.lane_b["run_seeds"]
    summary = decide(candidates, run_seeds)
    inference_accepted = any(_truthy(r["accepted"]) for r in candidates
                             if r["lane_b_decision"] in ("inferred", "confirmation"))
    ratios = {"inferred": infer.get("inferred_target_param_data_ratio"),
              "confirmation": infer.get("confirmation_ratio"), "fallback": lb.lane_b["default_ratio"]}
    if infer["solve_status"] != "ok" or not inference_accepted:
        decision = "fallback"
        reason = (f"solve_status={infer['solve_status']}" if infer["solve_status"] != "ok" else
                  "neither the inferred nor the confirmation candidate reached the threshold for any seed")
        summary.update(lane_b_decision=decision, chosen_ratio=lb.lane_b["default_ratio"],
                       expansion_stopped=True, reason=reason + ": fallback to the default ratio; "
                       "Lane B expansion stops (no ratio grids)")
    else:
        decision = summary["recommended_decision"]
        if decision == TIE_OR_MISSING:
            decision = next(d for d in DECISION_PRIORITY if any(
                _truthy(r["accepted"]) and r["lane_b_decision"] == d for r in candidates))
        summary.update(lane_b_decision=decision, chosen_ratio=ratios[decision], expansion_stopped=False,
                       reason=f"{decision} won {summary['wins'].get(decision, 0)} of {len(run_seeds)} seeds")
    for seed, entry in summary["per_seed"].items():
        base, method = _baseline_score(lb, seed, threshold)
        won = entry["winner_score_sec"]
        entry.update(baseline_score_sec=base if math.isfinite(base) else None, baseline_method=method,
                     beat_baseline=(won < base) if won is not None and math.isfinite(base) else None)
    summary.update(threshold=threshold, solve_status=infer["solve_status"], alpha=infer.get("alpha"),
                   alpha_gate=infer.get("alpha_gate"), n_candidates=len(candidates),
                   # the rows of THIS config's plan (a persistent work dir keeps older plans' rows)
                   baseline_run_ids=[baseline_id(lb, seed) for seed in lb.lane_b["baseline_seeds"]],
                   candidate_run_ids=[r["run_id"] for r in candidates])
    summary["per_seed"] = {str(k): v for k, v in summary["per_seed"].items()}
    write_json_atomic(lb.path("summary.json"), summary)
    return summary


# ---- run-all ------------------------------------------------------------------------
def run_all(lb: LaneB, stop_when_unsolved: bool = True) -> dict:
    """Steps 1-8 (baselines are step 0, run separately). Unsolved (solve_status != ok):
    stop after step 5 and print the fallback command, or with ``stop_when_unsolved=False``
    go on with one fallback run per seed at the default ratio."""
    threshold = lb.threshold()  # fails early, naming threshold.env, when there is none
    lb.log(f"[lane-b] threshold {threshold:.6f}")
    step_scaling_params(lb)
    step_stats(lb)
    step_calibrate(lb)
    step_calibration_points(lb)
    infer = step_infer(lb)
    if infer["solve_status"] != "ok" and stop_when_unsolved:
        command = f"expspec lane-b candidates --work-dir {lb.work_dir} && expspec lane-b log --work-dir " \
                  f"{lb.work_dir} && expspec lane-b summary --work-dir {lb.work_dir}"
        lb.log(f"[lane-b] solve_status={infer['solve_status']}: stopping after step 5. Fallback: {command}")
        return {"stopped_after_step": 5, "solve_status": infer["solve_status"], "fallback_command": command}
    step_candidates(lb)
    step_log(lb)
    return step_summary(lb)


def run_pipeline(lb: LaneB) -> dict:
    """Everything, 0-8, as the smoke/hero fixtures run it (fallback runs included)."""
    from expspec.kernels.lane_b.pipeline import step_baselines

    step_baselines(lb)
    return run_all(lb, stop_when_unsolved=False)
