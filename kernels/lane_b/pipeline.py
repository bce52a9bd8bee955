"""Lane B run guide, steps 0-6: baselines, scaling params, stats, calibration, infer, candidates.

Every step reads and writes files under one work dir, named as in the run guide, so a
person can run them one by one (``expspec lane-b <step> --work-dir W``), the pytest
fixtures can run them all, and a file from a real GPU run drops in unchanged:

    0 baselines          runs/<id>/train.log, results.csv, threshold.json, threshold.env
    1 scaling-params     scaling_params.json, n_scaling_params.txt
    2 stats              stats.json                        (lane_b/stats.py)
    3 calibrate          runs/<id>/train.log, one SEPARATE run per calib_iters value
    4 calibration-points calibration.json, calibration.env
    5 infer              infer.json                        (lane_b/scaling.py)
    6 candidates         runs/<id>/train.log, candidate_runs.csv
    (7 log, 8 summary: lane_b/summary.py)

Why separate calibration runs: a point read off one run's curve mid-training is
confounded by that run's LR warmdown (the original pipeline did that); each D here is
the final val_bpb of a run whose whole schedule spans D tokens.

Training goes through ``runs.train_run``: the built-in trainer (kernels/train/, in
process or under torchrun), or the ``nanochat`` backend, which runs a command template
as a subprocess in ``lane_b.nanochat_dir`` and reads its log with the same parser.
Every reused run is rescored at the current threshold (``rescore``).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np

from expspec.kernels.errors import ExpspecError
from expspec.kernels.tables import append_csv_rows, read_csv_rows
from expspec.kernels.atomic_io import read_json, write_json_atomic, write_text_atomic
from expspec.kernels.lane_b.runs import THRESHOLD_ENV, LaneB, _train_config, train_run
from expspec.kernels.train.time_to_target import time_to_target
from expspec.kernels.train.training_log import parse_training_log

RESULTS_COLUMNS = ("run_id", "seed", "num_iterations", "min_val_bpb", "final_val_bpb", "status", "log")
CANDIDATE_COLUMNS = ("run_id", "seed", "lane_b_decision", "ratio", "num_iterations", "tokens", "status",
                     "min_val_bpb", "final_val_bpb", "time_to_target_sec_measured",
                     "time_to_target_sec_extrapolated", "time_to_target_method", "reached_within_horizon",
                     "crossing_step", "score_sec", "accepted", "tok_per_sec_median", "dt_median_ms", "log",
                     "notes")




# ---- step 0 -------------------------------------------------------------------------
def step_baselines(lb: LaneB) -> dict:
    """Baseline runs -> results.csv; threshold = median(min_val_bpb) + threshold_offset."""
    seeds = lb.lane_b["baseline_seeds"]
    iters = lb.lane_b["baseline_num_iterations"]
    rows = []
    for seed in seeds:
        run = train_run(lb, baseline_id(lb, seed), seed, num_iterations=iters)
        rows.append({"run_id": run["run_id"], "seed": seed, "num_iterations": iters,
                     "min_val_bpb": run["min_val_bpb"], "final_val_bpb": run.get("final_val_bpb"),
                     "status": run["status"], "log": run["log"]})
    append_csv_rows(lb.path("results.csv"), RESULTS_COLUMNS, rows, key="run_id")
    return derive_threshold(lb)


def baseline_id(lb: LaneB, seed: int) -> str:
    return lb.run_id(f"baseline{lb.lane_b['baseline_num_iterations']}", seed)


def derive_threshold(lb: LaneB) -> dict:
    """Read results.csv; every required seed must have an ok row with a finite min_val_bpb."""
    by_seed = {}
    current = {baseline_id(lb, seed) for seed in lb.lane_b["baseline_seeds"]}
    for row in read_csv_rows(lb.path("results.csv"), RESULTS_COLUMNS):
        if row["run_id"] in current and row["status"] == "ok" and math.isfinite(float(row["min_val_bpb"] or "nan")):
            by_seed[int(row["seed"])] = float(row["min_val_bpb"])
    missing = [s for s in lb.lane_b["baseline_seeds"] if s not in by_seed]
    if missing:
        raise ExpspecError(f"{lb.path('results.csv')}: no successful baseline for required seed(s) {missing}")
    values = [by_seed[s] for s in lb.lane_b["baseline_seeds"]]
    threshold = statistics.median(values) + lb.lane_b["threshold_offset"]
    record = {"target_metric": lb.lane_b["target_metric"], "threshold": threshold,
              "median_min_val_bpb": statistics.median(values), "threshold_offset": lb.lane_b["threshold_offset"],
              "baseline_min_val_bpb": {str(s): by_seed[s] for s in lb.lane_b["baseline_seeds"]}}
    write_json_atomic(lb.path("threshold.json"), record)
    write_text_atomic(lb.path("threshold.env"), f"{THRESHOLD_ENV}={threshold:.6f}\n")
    return record


# ---- steps 1-2 ----------------------------------------------------------------------
def step_scaling_params(lb: LaneB) -> dict:
    """N as the trainer that runs counts it: our model's groups (builtin), or the parameter
    lines of nanochat's own log (its model, not ours)."""
    if lb.lane_b["backend"] == "nanochat":
        log = lb.work_dir / "runs" / baseline_id(lb, lb.lane_b["baseline_seeds"][0]) / "train.log"
        parsed = parse_training_log(log)
        if parsed.n_scaling_params <= 0:
            raise ExpspecError(f"{log}: no parameter counts (transformer_matrices / lm_head lines): "
                               f"cannot count nanochat's scaling params")
        groups = {"total": parsed.n_scaling_params, "source": f"nanochat log {log}"}
    else:
        from expspec.kernels.models.params import scaling_params
        from expspec.kernels.train.loop import build_model

        groups = scaling_params(build_model(_train_config(lb, seed=0), len(lb.data.token_bytes)))
        groups["source"] = "builtin model"
    write_json_atomic(lb.path("scaling_params.json"), groups)
    write_text_atomic(lb.path("n_scaling_params.txt"), f"{groups['total']}\n")
    return groups


def read_n_scaling_params(lb: LaneB) -> int:
    path = lb.work_dir / "n_scaling_params.txt"
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        raise ExpspecError(f"{path}: expected one integer (run `expspec lane-b scaling-params` first)") from None


def step_stats(lb: LaneB) -> dict:
    if lb.stats_fn is not None:
        stats = lb.stats_fn(lb)
    else:
        from expspec.kernels.lane_b.stats import corpus_stats

        stats = corpus_stats(lb.lane_b, lb.common, lb.split, device=lb.device, log=lb.log)
    write_json_atomic(lb.path("stats.json"), stats)
    return stats


# ---- steps 3-5 ----------------------------------------------------------------------
def step_calibrate(lb: LaneB) -> list[dict]:
    """One separate run per calib_iters value, each with its own full LR schedule."""
    seed = lb.common["seed"]
    return [train_run(lb, lb.run_id(f"calib{iters}", seed), seed, num_iterations=iters)
            for iters in lb.lane_b["calib_iters"]]


def step_calibration_points(lb: LaneB) -> dict:
    """D = iterations x the batch the run trained with (its log's 'Total batch size' line:
    nanochat's batch for nanochat runs), L = the run's final val_bpb (read from its log)."""
    points, skipped = [], []
    for iters in lb.lane_b["calib_iters"]:
        log = lb.path("runs") / lb.run_id(f"calib{iters}", lb.common["seed"]) / "train.log"
        try:
            parsed = parse_training_log(log)
        except ExpspecError as err:
            skipped.append({"iters": iters, "why": str(err)})
            continue
        final_step, final_bpb = parsed.evals[-1]
        if parsed.failed_at_step >= 0 or final_step != iters or not math.isfinite(final_bpb):
            skipped.append({"iters": iters, "why": f"last eval at step {final_step} = {final_bpb}"})
            continue
        if parsed.total_batch_size <= 0:
            raise ExpspecError(f"{log}: no 'Total batch size N => gradient accumulation steps: K' line: "
                               f"cannot count the tokens this run trained on")
        points.append({"tokens": iters * parsed.total_batch_size, "value": final_bpb, "iters": iters,
                       "total_batch_size": parsed.total_batch_size})
    record = {"metric": lb.lane_b["target_metric"], "points": points, "skipped": skipped}
    write_json_atomic(lb.path("calibration.json"), record)
    write_text_atomic(lb.path("calibration.env"),
                      "LANE_B_CALIB_POINTS=" + ",".join(f"{p['tokens']}:{p['value']:.6f}" for p in points) + "\n")
    return record


def read_calibration_points(path: str | Path) -> list[tuple[float, float]]:
    """calibration.json: {"points": [{"tokens": D, "value": L}, ...]} -> [(D, L), ...]."""
    data = read_json(path, "calibration")
    points = data.get("points") if isinstance(data, dict) else None
    if not isinstance(points, list):
        raise ExpspecError(f"calibration {path}: expected {{\"points\": [{{\"tokens\": D, \"value\": L}}, ...]}}")
    out = []
    for i, point in enumerate(points):
        try:
            tokens, value = float(point["tokens"]), float(point["value"])
        except (KeyError, TypeError, ValueError, OverflowError):
            tokens = value = math.nan
        if not (0 < tokens < math.inf and math.isfinite(value)):
            raise ExpspecError(f"calibration {path}: points[{i}] needs numeric 'tokens' (> 0) and 'value' "
                               f"(finite), got {point!r}")
        out.append((tokens, value))
    return out


def read_stats_alpha(path: str | Path) -> tuple[float, tuple | None, dict]:
    """(alpha, its interval (low, high) or None, the whole stats.json); a NaN alpha (failed
    statistics) is read as such, for the gate to fail on."""
    stats = read_json(path, "stats")
    try:
        alpha = float(stats["alpha"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise ExpspecError(f"stats {path}: no numeric 'alpha' field") from None
    ci = stats.get("alpha_ci")
    if not ci:
        return alpha, None, stats
    try:
        if not isinstance(ci, list) or any(isinstance(v, bool) for v in ci):
            raise TypeError
        low, high = (float(v) for v in ci)
    except (TypeError, ValueError, OverflowError):
        raise ExpspecError(f"stats {path}: field alpha_ci: expected [low, high] or null, got {ci!r}") from None
    return alpha, (low, high), stats


def read_infer(path: str | Path) -> dict:
    """infer.json (step 5's record), with the fields the later steps rely on checked."""
    infer = read_json(path, "infer")
    if not isinstance(infer, dict) or not isinstance(infer.get("solve_status"), str):
        raise ExpspecError(f"infer {path}: field solve_status: expected a string (the record `expspec lane-b "
                           f"infer` writes)")
    ratios = ("inferred_target_param_data_ratio", "confirmation_ratio") if infer["solve_status"] == "ok" else ()
    for key in ratios:  # the candidates' ratios (planned_candidates)
        value = infer.get(key)
        try:
            ok = not isinstance(value, bool) and 0 < float(value) < math.inf
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise ExpspecError(f"infer {path}: field {key}: expected a ratio > 0 when solve_status is ok, "
                               f"got {value!r}")
    if not isinstance(infer.get("empirical_alpha") or {}, dict):
        raise ExpspecError(f"infer {path}: field empirical_alpha: expected an object or null")
    return infer


def infer_record(lane_b: dict, alpha: float, alpha_ci, points, threshold: float, n_params: float,
                 direction: str, stats_fingerprint: str | None) -> dict:
    """The gate (with its review hatch) then infer_budget: the infer.json record."""
    from expspec.kernels.lane_b.review import alpha_gate
    from expspec.kernels.lane_b.scaling import infer_budget

    gate = alpha_gate(alpha, alpha_ci, lane_b["alpha_min"], lane_b["alpha_max"], lane_b["alpha_review"],
                      stats_fingerprint)
    record = infer_budget(alpha, points, threshold, n_params, direction=direction,
                          alpha_min=lane_b["alpha_min"], alpha_max=lane_b["alpha_max"], alpha_ci=alpha_ci,
                          alpha_review_accepted=gate["passed"] and bool(gate["review"]),
                          default_ratio=lane_b["default_ratio"], unreachable_factor=lane_b["unreachable_factor"],
                          confirmation_factor=lane_b["confirmation_factor"])
    record.update(alpha_gate=gate["verdict"], alpha_review=gate["review"])
    return record


def baseline_noise_sd(lb: LaneB) -> tuple[float | None, str]:
    """Seed-to-seed spread (sample sd) of this recipe's baselines' final val_bpb: the noise of
    one training run's final metric, which the empirical alpha's interval propagates."""
    current = {baseline_id(lb, seed) for seed in lb.lane_b["baseline_seeds"]}
    finals = [float(r["final_val_bpb"]) for r in read_csv_rows(lb.path("results.csv"), RESULTS_COLUMNS)
              if r["run_id"] in current and r["status"] == "ok" and r["final_val_bpb"]]
    finals = [v for v in finals if math.isfinite(v)]
    if len(finals) < 2:
        return None, "fewer than 2 baselines"
    return float(np.std(finals, ddof=1)), f"sd of {len(finals)} baseline seeds' final val_bpb"


def step_infer(lb: LaneB) -> dict:
    from expspec.kernels.lane_b.scaling import empirical_alpha

    alpha, alpha_ci, stats = read_stats_alpha(lb.path("stats.json"))
    points = read_calibration_points(lb.path("calibration.json"))
    record = infer_record(lb.lane_b, alpha, alpha_ci, points, lb.threshold(), read_n_scaling_params(lb),
                          lb.lane_b["direction"], stats.get("fingerprint"))
    noise_sd, source = baseline_noise_sd(lb) if lb.path("results.csv").is_file() else (None, "no baselines")
    empirical = empirical_alpha(points, noise_sd, source, seed=lb.common["seed"])
    ratio = empirical.alpha / alpha if empirical.alpha is not None and alpha and math.isfinite(alpha) else None
    record.update(stats_fingerprint=stats.get("fingerprint"), stats_tokenizer_id=stats.get("tokenizer_id"),
                  train_tokenizer_id=("nanochat's own" if lb.lane_b["backend"] == "nanochat" else lb.data.tokenizer_id),
                  empirical_alpha=empirical.to_dict(),
                  alpha_ratio_empirical_over_inferred=ratio)
    write_json_atomic(lb.path("infer.json"), record)
    return record


# ---- step 6 -------------------------------------------------------------------------
def accepted(run: dict) -> bool:
    """A candidate reaches the threshold: measured, or extrapolated within its horizon."""
    if run.get("status") != "ok":
        return False
    method = str(run.get("time_to_target_method", ""))
    return method == "measured" or (method.startswith("extrapolated") and bool(run.get("reached_within_horizon")))


def planned_candidates(lb: LaneB, infer: dict) -> list[tuple[str, int, float, str]]:
    """(decision, seed, ratio, run_id): inferred + confirmation per run seed, else one
    fallback per seed."""
    if infer["solve_status"] == "ok":
        plan = [(kind, seed, float(infer[key])) for seed in lb.lane_b["run_seeds"]
                for kind, key in (("inferred", "inferred_target_param_data_ratio"),
                                  ("confirmation", "confirmation_ratio"))]
    else:
        plan = [("fallback", seed, lb.lane_b["default_ratio"]) for seed in lb.lane_b["run_seeds"]]
    return [(kind, seed, ratio, lb.run_id(f"{kind}-r{ratio:.4g}", seed)) for kind, seed, ratio in plan]


def current_candidates(lb: LaneB, infer: dict) -> list[dict]:
    """The candidate_runs.csv rows of this infer.json's plan (older configs' rows stay, unread)."""
    ids = {run_id for *_, run_id in planned_candidates(lb, infer)}
    return [r for r in read_csv_rows(lb.path("candidate_runs.csv"), CANDIDATE_COLUMNS) if r["run_id"] in ids]


def rescore(run: dict, threshold: float) -> dict:
    """A run's time-to-target fields at ``threshold``, from its stored evals and eval times:
    a reused run is always scored at the CURRENT threshold, never the one it was trained under."""
    # run.json stores non-finite numbers as "nan"/"inf" strings: read them back as floats
    evals = [(int(step), float(value)) for step, value in run["evals"]]
    ttt = time_to_target(evals, [float(t) for t in run["eval_train_times"]], threshold, int(run["horizon"]),
                         float(run["dt_median_ms"]) / 1000)
    fields = {"time_to_target_sec_measured": ttt.measured_sec,
              "time_to_target_sec_extrapolated": ttt.extrapolated_sec, "time_to_target_method": ttt.method,
              "reached_within_horizon": ttt.reached_within_horizon, "crossing_step": ttt.crossing_step,
              "score_sec": ttt.score_sec}
    return dict(fields, accepted=accepted(dict(fields, status=run["status"])))


def step_candidates(lb: LaneB) -> list[dict]:
    infer = read_infer(lb.path("infer.json"))
    threshold = lb.threshold()
    rows = []
    for kind, seed, ratio, run_id in planned_candidates(lb, infer):
        run = train_run(lb, run_id, seed, threshold=threshold,
                        target_param_data_ratio=ratio, num_iterations=-1)
        rows.append({"run_id": run["run_id"], "seed": seed, "lane_b_decision": kind, "ratio": ratio,
                     "num_iterations": run.get("horizon"), "tokens": run.get("tokens_trained"),
                     "status": run["status"], "min_val_bpb": run.get("min_val_bpb"),
                     "final_val_bpb": run.get("final_val_bpb"), **rescore(run, threshold),
                     "tok_per_sec_median": run.get("tok_per_sec_median"), "dt_median_ms": run.get("dt_median_ms"),
                     "log": run["log"], "notes": run.get("notes", "")})
    append_csv_rows(lb.path("candidate_runs.csv"), CANDIDATE_COLUMNS, rows, key="run_id", replace_existing=True)
    return rows
