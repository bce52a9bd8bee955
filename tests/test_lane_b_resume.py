"""A killed Lane B pipeline resumes: finished runs are reused, no row is partial or doubled."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from expspec.kernels.config import resolve_config
from expspec.kernels.lane_b.pipeline import RESULTS_COLUMNS
from expspec.kernels.lane_b.runs import LaneB
from expspec.kernels.lane_b.schema import read_rows
from expspec.kernels.lane_b.summary import run_pipeline
from expspec.kernels.tables import read_csv_rows
from expspec.kernels.train.training_log import parse_training_log
from test_lane_b_pipeline import TINY, corpus_file, stats_with  # noqa: F401 (fixture)

SCRIPT = """
import json, sys
from expspec.kernels.config import resolve_config
from expspec.kernels.lane_b.runs import LaneB
from expspec.kernels.lane_b.summary import run_pipeline
cfg = resolve_config(None, json.loads(sys.argv[1]), environ={})
stats = lambda lb: {"alpha": 0.3, "alpha_ci": None, "fingerprint": "test", "tokenizer_id": "test"}
run_pipeline(LaneB(cfg["lane_b"], cfg["common"], sys.argv[2], log=print, stats_fn=stats))
"""


def finished_runs(work: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (work / "runs").glob("*/run.json")}


def test_sigkill_after_two_runs_then_rerun_reuses_them(tmp_path, corpus_file, monkeypatch):
    monkeypatch.setenv("EXPSPEC_CACHE", str(tmp_path / "model-cache"))
    sets = TINY + [f"common.corpus={corpus_file}"]
    work = tmp_path / "work"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(sets), str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    deadline = time.time() + 300
    while len(finished_runs(work)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    before = finished_runs(work)
    assert 2 <= len(before) < 13, before  # killed mid-pipeline, after two runs

    cfg = resolve_config(None, sets, environ={})
    lb = LaneB(cfg["lane_b"], cfg["common"], work, log=lambda line: None, stats_fn=stats_with(0.3))
    summary = run_pipeline(lb)
    after = finished_runs(work)
    assert {k: after[k] for k in before} == before  # not retrained, not rewritten
    assert len(after) > len(before)
    for run_id in after:  # every log is one clean attempt (a killed run restarted from scratch)
        assert parse_training_log(work / "runs" / run_id / "train.log").restarts == 0
    baselines = read_csv_rows(work / "results.csv", RESULTS_COLUMNS)
    assert len({r["run_id"] for r in baselines}) == len(baselines) == 3
    rows = read_rows(work / "lane_b_inference_schema.csv")  # checks every row's 21 fields
    per_seed = 1 if summary["solve_status"] != "ok" else 2  # fallback, or inferred + confirmation
    assert len({r["run_id"] for r in rows}) == len(rows) == per_seed * len(cfg["lane_b"]["run_seeds"])


RUN_SCRIPT = """
import json, sys
from expspec.kernels.config import resolve_config
from expspec.kernels.lane_b.runs import LaneB, train_run
cfg = resolve_config(None, json.loads(sys.argv[1]), environ={})
train_run(LaneB(cfg["lane_b"], cfg["common"], sys.argv[2], log=print), "r1", seed=7, num_iterations=40)
"""


def test_sigkill_mid_run_then_rerun_resumes_from_its_checkpoint(tmp_path, corpus_file, monkeypatch):
    """A run killed after a mid-run checkpoint is picked up there, not retrained: the same
    final numbers as an uninterrupted run of the same seed, and a log with every step once."""
    monkeypatch.setenv("EXPSPEC_CACHE", str(tmp_path / "model-cache"))
    sets = TINY + [f"common.corpus={corpus_file}", "lane_b.checkpoint_every=8", "lane_b.keep_checkpoints=1"]
    work = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, json.dumps(sets), str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    run_dir = work / "runs" / "r1"
    deadline = time.time() + 300
    while not list(run_dir.glob("checkpoint_000*.pt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    # the kill lands after the run logged past its checkpoint, so the rerun has lines to cut
    first_bytes = torch.load(min(run_dir.glob("checkpoint_000*.pt")), weights_only=True)["log_bytes"]
    while (run_dir / "train.log").stat().st_size <= first_bytes + 200 and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (run_dir / "run.json").exists()
    kept = max(run_dir.glob("checkpoint_000*.pt"), key=lambda f: int(f.stem.split("_")[1]))
    kept_step = int(kept.stem.split("_")[1])
    assert 8 <= kept_step < 40
    assert (run_dir / "train.log").stat().st_size > torch.load(kept, weights_only=True)["log_bytes"]

    from expspec.kernels.lane_b.runs import train_run

    cfg = resolve_config(None, sets, environ={})
    resumed = train_run(LaneB(cfg["lane_b"], cfg["common"], work, log=lambda line: None), "r1", seed=7,
                        num_iterations=40)
    whole = train_run(LaneB(cfg["lane_b"], cfg["common"], tmp_path / "whole", log=lambda line: None), "r1", seed=7,
                      num_iterations=40)
    assert f"resumed from {kept} at step {kept_step}" in resumed["notes"]
    assert "resumed" not in whole["notes"]
    assert resumed["evals"] == whole["evals"] and resumed["final_val_bpb"] == whole["final_val_bpb"]
    log = parse_training_log(run_dir / "train.log")
    assert log.restarts == 0  # the killed attempt's lines past the checkpoint were cut
    assert [s for s, _ in log.evals] == [s for s, _ in whole["evals"]]
    assert log.evals == parse_training_log(tmp_path / "whole" / "runs" / "r1" / "train.log").evals
