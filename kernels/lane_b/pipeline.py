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

Training goes through ``train_run``: the built-in trainer (kernels/train/), or the
``nanochat`` backend, which runs a command template as a subprocess in
``lane_b.nanochat_dir`` and reads its log with the same parser.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from expspec.kernels.errors import ExpspecError
from expspec.kernels.tables import append_csv_rows, read_csv_rows
from expspec.kernels.atomic_io import read_json, write_json_atomic, write_text_atomic
from expspec.kernels.train.summary import RunSummary
from expspec.kernels.train.training_log import parse_training_log

RESULTS_COLUMNS = ("run_id", "seed", "num_iterations", "min_val_bpb", "final_val_bpb", "status", "log")
CANDIDATE_COLUMNS = ("run_id", "seed", "lane_b_decision", "ratio", "num_iterations", "tokens", "status",
                     "min_val_bpb", "final_val_bpb", "time_to_target_sec_measured",
                     "time_to_target_sec_extrapolated", "time_to_target_method", "reached_within_horizon",
                     "accepted", "tok_per_sec_median", "dt_median_ms", "log", "notes")
THRESHOLD_ENV = "LANE_B_TARGET_THRESHOLD"


@dataclass
class TrainData:
    train: np.ndarray
    val: np.ndarray
    token_bytes: np.ndarray
    tokenizer_id: str
    corpus_fingerprint: str


@dataclass
class LaneB:
    """The resolved config + work dir every step works in."""

    lane_b: dict
    common: dict
    work_dir: Path
    device: str = "cpu"
    log: Callable[[str], None] = print
    stats_fn: Callable[["LaneB"], dict] | None = None  # injects a cached stats.json producer

    def __post_init__(self):
        self.work_dir = Path(self.work_dir)

    @cached_property
    def split(self):
        from expspec.kernels.data.corpus import load_corpus

        return load_corpus(self.common["corpus"], self.common["val_fraction"])

    @cached_property
    def data(self) -> TrainData:
        from expspec.kernels.data.tokenizer import get_tokenizer

        tok = get_tokenizer(self.lane_b["train_tokenizer"], [d.text for d in self.split.train],
                            self.split.fingerprint)
        return TrainData(tok.encode_documents([d.text for d in self.split.train]),
                         tok.encode_documents([d.text for d in self.split.val]),
                         tok.token_bytes, tok.id, self.split.fingerprint)

    def path(self, name: str) -> Path:
        """A file of the work dir (created on first use, so a refused step leaves nothing)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self.work_dir / name

    def run_id(self, kind: str, seed: int) -> str:
        """Stable per (training recipe, kind, seed): a run of the same recipe is reused and its
        rows are skipped; any recipe change (LR shape, eval set, backend, corpus...) is a new id.
        ``kind`` carries what varies per run (iterations or ratio)."""
        recipe = _train_config(self, seed=0).to_dict()
        for varies in ("seed", "device", "resume_from", "checkpoint_every", "num_iterations",
                       "target_param_data_ratio", "target_threshold"):
            recipe.pop(varies)
        recipe.update({k: self.lane_b[k] for k in ("dataset_id", "train_tokenizer", "backend", "nanochat_command")})
        recipe.update(corpus=self.common["corpus"], val_fraction=self.common["val_fraction"])
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
        return f"laneb-{self.lane_b['dataset_id']}-d{self.lane_b['depth']}-{kind}-s{seed}-{digest.hexdigest()[:8]}"

    def threshold(self) -> float:
        """lane_b.target_threshold, else threshold.env in the work dir (step 0's output)."""
        value = self.lane_b["target_threshold"]
        if math.isfinite(value):
            return float(value)
        env = self.work_dir / "threshold.env"
        if env.is_file():
            return read_env_value(env, THRESHOLD_ENV)
        raise ExpspecError(f"lane_b threshold: none set and {env} is missing: run `expspec lane-b baselines` "
                           f"first or set {THRESHOLD_ENV}")


def read_env_value(path: Path, name: str) -> float:
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().removeprefix("export ").strip() == name:
            try:
                return float(value.strip().strip("'\""))
            except ValueError:
                break
    raise ExpspecError(f"{path}: expected a line {name}=<number>")


def _train_config(lb: LaneB, seed: int, **overrides):
    from expspec.kernels.train.config import TrainConfig

    return TrainConfig.from_lane_b(lb.lane_b, seed=seed, device=lb.device, **overrides)


def train_run(lb: LaneB, run_id: str, seed: int, threshold: float = float("nan"), **overrides) -> dict:
    """One training run (builtin or nanochat) -> its RunSummary as a dict, kept in
    runs/<run_id>/run.json. A finished run (its run.json exists) is never trained again;
    an unfinished one (killed mid-run) starts over in a clean folder."""
    out = lb.path("runs") / run_id
    done = out / "run.json"
    if done.is_file():
        return read_json(done, "run summary")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if lb.lane_b["backend"] == "nanochat":  # the backend word is checked when the config is resolved
        summary = _nanochat_run(lb, run_id, seed, threshold, out, **overrides)
    else:
        from expspec.kernels.train.loop import train

        cfg = _train_config(lb, seed, target_threshold=threshold, **overrides)
        lb.log(f"[lane-b] train {run_id}: {cfg.num_iterations if cfg.num_iterations > 0 else 'ratio ' + str(cfg.target_param_data_ratio)}")
        summary = train(cfg, lb.data.train, lb.data.val, lb.data.token_bytes, log=lambda line: None, out_dir=out,
                        label=f"train {run_id}")
    summary.run_id, summary.seed = run_id, seed
    summary.log = str((out / "train.log").relative_to(lb.work_dir))
    summary.train_losses = []  # the log has them; run.json stays small
    write_json_atomic(done, summary.to_dict())
    return read_json(done, "run summary")


def _nanochat_run(lb: LaneB, run_id: str, seed: int, threshold: float, out: Path, **overrides) -> RunSummary:
    cwd = Path(lb.lane_b["nanochat_dir"] or ".").expanduser()
    if not cwd.is_dir():
        raise ExpspecError(f"lane_b.nanochat_dir {cwd}: no such folder (the nanochat checkout)")
    fields = dict(depth=lb.lane_b["depth"], seed=seed, run_id=run_id, threshold=threshold,
                  ratio=overrides.get("target_param_data_ratio", lb.lane_b["target_param_data_ratio"]),
                  num_iterations=overrides.get("num_iterations", lb.lane_b["num_iterations"]))
    try:
        command = lb.lane_b["nanochat_command"].format(**fields)
    except (KeyError, IndexError) as exc:
        raise ExpspecError(f"lane_b.nanochat_command: unknown placeholder {exc} "
                           f"(known: {', '.join(fields)})") from None
    lb.log(f"[lane-b] nanochat {run_id}: {command}")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ExpspecError(f"lane_b.nanochat_command: cannot split {command!r} ({exc})") from None
    with open(out / "train.log", "w", encoding="utf-8") as handle:
        try:
            proc = subprocess.run(argv, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)
        except OSError as exc:
            raise ExpspecError(f"lane_b.nanochat_command: cannot run {argv[0]!r} ({exc})") from None
    if proc.returncode != 0:
        raise ExpspecError(f"nanochat run {run_id} exited {proc.returncode}; its log is {out / 'train.log'}")
    return parse_training_log(out / "train.log").run_summary(threshold)


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
    from expspec.kernels.models.params import scaling_params
    from expspec.kernels.train.loop import build_model

    groups = scaling_params(build_model(_train_config(lb, seed=0), len(lb.data.token_bytes)))
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
    """D = iterations x total_batch_size, L = the run's final val_bpb (read from its log)."""
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
        points.append({"tokens": iters * lb.lane_b["total_batch_size"], "value": final_bpb, "iters": iters})
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
            out.append((float(point["tokens"]), float(point["value"])))
        except (KeyError, TypeError, ValueError):
            raise ExpspecError(f"calibration {path}: points[{i}] needs numeric 'tokens' and 'value', "
                               f"got {point!r}") from None
    return out


def read_stats_alpha(path: str | Path) -> tuple[float, tuple | None, dict]:
    stats = read_json(path, "stats")
    try:
        alpha = float(stats["alpha"])
    except (KeyError, TypeError, ValueError):
        raise ExpspecError(f"stats {path}: no numeric 'alpha' field") from None
    ci = stats.get("alpha_ci")
    return alpha, tuple(ci) if ci else None, stats


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


def step_infer(lb: LaneB) -> dict:
    alpha, alpha_ci, stats = read_stats_alpha(lb.path("stats.json"))
    points = read_calibration_points(lb.path("calibration.json"))
    record = infer_record(lb.lane_b, alpha, alpha_ci, points, lb.threshold(), read_n_scaling_params(lb),
                          lb.lane_b["direction"], stats.get("fingerprint"))
    record.update(stats_fingerprint=stats.get("fingerprint"), stats_tokenizer_id=stats.get("tokenizer_id"),
                  train_tokenizer_id=lb.data.tokenizer_id)
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


def step_candidates(lb: LaneB) -> list[dict]:
    infer = read_json(lb.path("infer.json"), "infer")
    threshold = lb.threshold()
    rows = []
    for kind, seed, ratio, run_id in planned_candidates(lb, infer):
        run = train_run(lb, run_id, seed, threshold=threshold,
                        target_param_data_ratio=ratio, num_iterations=-1)
        rows.append({"run_id": run["run_id"], "seed": seed, "lane_b_decision": kind, "ratio": ratio,
                     "num_iterations": run.get("horizon"), "tokens": run.get("tokens_trained"),
                     "status": run["status"], "min_val_bpb": run.get("min_val_bpb"),
                     "final_val_bpb": run.get("final_val_bpb"),
                     "time_to_target_sec_measured": run.get("time_to_target_sec_measured"),
                     "time_to_target_sec_extrapolated": run.get("time_to_target_sec_extrapolated"),
                     "time_to_target_method": run.get("time_to_target_method"),
                     "reached_within_horizon": run.get("reached_within_horizon"), "accepted": accepted(run),
                     "tok_per_sec_median": run.get("tok_per_sec_median"), "dt_median_ms": run.get("dt_median_ms"),
                     "log": run["log"], "notes": run.get("notes", "")})
    append_csv_rows(lb.path("candidate_runs.csv"), CANDIDATE_COLUMNS, rows, key="run_id")
    return rows
