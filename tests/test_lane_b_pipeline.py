"""Lane B's run guide on a tiny real setup: real trainer, real files, every rule checked."""

import json
import math
import sys

import pytest

from expspec.kernels.config import resolve_config
from expspec.kernels.data.corpus import load_documents
from expspec.kernels.errors import ExpspecError
from expspec.kernels.lane_b.pipeline import (CANDIDATE_COLUMNS, LaneB, derive_threshold, read_env_value, step_candidates,
                                     train_run)
from expspec.kernels.lane_b.summary import TIE_OR_MISSING, decide, run_all, run_pipeline, step_log, step_summary
from expspec.kernels.lane_b.schema import COLUMNS, read_rows
from expspec.kernels.tables import append_csv_rows, parse_notes

TINY = ["lane_b.train_tokenizer=bpe:300", "lane_b.depth=1", "lane_b.aspect_ratio=32", "lane_b.head_dim=32",
        "lane_b.max_seq_len=32", "lane_b.device_batch_size=4", "lane_b.total_batch_size=128",
        "lane_b.eval_every=10", "lane_b.eval_tokens=2048", "lane_b.baseline_num_iterations=30",
        "lane_b.calib_iters=10,20,40", "lane_b.default_ratio=2.0", "lane_b.learning_rate=0.01"]


def stats_with(alpha):
    return lambda lb: {"alpha": alpha, "alpha_ci": None, "fingerprint": "test", "tokenizer_id": "test"}


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "northanger.txt"
    path.write_text(load_documents("embedded:austen")[2].text[:200_000])
    return path


def lane(tmp_path, corpus_file, *sets, alpha=0.3, cache=None):
    cfg = resolve_config(None, TINY + [f"common.corpus={corpus_file}", *sets], environ={})
    return LaneB(cfg["lane_b"], cfg["common"], tmp_path / "work", log=lambda line: None, stats_fn=stats_with(alpha))


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EXPSPEC_CACHE", str(tmp_path_factory.getbasetemp() / "expspec-cache"))


def test_pipeline_end_to_end_writes_the_run_guide_files(tmp_path, corpus_file):
    lb = lane(tmp_path, corpus_file)
    summary = run_pipeline(lb)
    for name in ("results.csv", "threshold.json", "threshold.env", "scaling_params.json", "n_scaling_params.txt",
                 "stats.json", "calibration.json", "calibration.env", "infer.json", "candidate_runs.csv",
                 "lane_b_inference_schema.csv", "summary.json"):
        assert (lb.work_dir / name).is_file(), name
    threshold = json.loads((lb.work_dir / "threshold.json").read_text())
    assert math.isclose(read_env_value(lb.work_dir / "threshold.env", "LANE_B_TARGET_THRESHOLD"),
                        threshold["threshold"], abs_tol=1e-6)
    calibration = json.loads((lb.work_dir / "calibration.json").read_text())
    assert [p["tokens"] for p in calibration["points"]] == [10 * 128, 20 * 128, 40 * 128]  # D = iters x batch
    infer = json.loads((lb.work_dir / "infer.json").read_text())
    rows = read_rows(lb.work_dir / "lane_b_inference_schema.csv")
    assert (lb.work_dir / "lane_b_inference_schema.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
    kinds = {r["lane_b_decision"] for r in rows}
    assert kinds == ({"inferred", "confirmation"} if infer["solve_status"] == "ok" else {"fallback"})
    assert {r["seed"] for r in rows} == {41, 42}
    assert summary["lane_b_decision"] in ("inferred", "confirmation", "fallback")
    # a second run-all trains nothing new and appends no duplicate rows
    runs_before = sorted(p.name for p in (lb.work_dir / "runs").iterdir())
    run_all(lane(tmp_path, corpus_file))
    assert sorted(p.name for p in (lb.work_dir / "runs").iterdir()) == runs_before
    assert len(read_rows(lb.work_dir / "lane_b_inference_schema.csv")) == len(rows)


def test_unsolved_stops_after_infer_then_falls_back(tmp_path, corpus_file):
    lb = lane(tmp_path, corpus_file, "lane_b.target_threshold=3.0", alpha=0.95)  # outside [0.2, 0.8], no review
    stopped = run_all(lb)
    assert stopped["stopped_after_step"] == 5 and stopped["solve_status"] == "implausible_alpha"
    assert "expspec lane-b candidates" in stopped["fallback_command"]
    assert not (lb.work_dir / "candidate_runs.csv").exists()
    rows = step_candidates(lb)
    assert [(r["lane_b_decision"], r["ratio"]) for r in rows] == [("fallback", 2.0), ("fallback", 2.0)]
    step_log(lb)
    summary = step_summary(lb)
    assert summary["lane_b_decision"] == "fallback" and summary["expansion_stopped"]
    assert summary["chosen_ratio"] == 2.0 and "implausible_alpha" in summary["reason"]


def test_nan_loss_runs_are_logged_as_failed(tmp_path, corpus_file):
    lb = lane(tmp_path, corpus_file, "lane_b.target_threshold=3.0", "lane_b.learning_rate=1e30")
    run_all(lb, stop_when_unsolved=False)
    infer = json.loads((lb.work_dir / "infer.json").read_text())
    assert infer["solve_status"] == "insufficient_points"  # every calibration run failed
    assert len(json.loads((lb.work_dir / "calibration.json").read_text())["skipped"]) == 3
    rows = read_rows(lb.work_dir / "lane_b_inference_schema.csv")
    assert len(rows) == 2 and all(r["status"] == "failed" for r in rows)
    assert all("non-finite" in parse_notes(r["notes"])["run_notes"] for r in rows)


def test_threshold_needs_every_required_seed(tmp_path, corpus_file):
    lb = lane(tmp_path, corpus_file)
    from expspec.kernels.lane_b.pipeline import RESULTS_COLUMNS, baseline_id

    def row(seed, value, run_id=None):
        return {"run_id": run_id or baseline_id(lb, seed), "seed": seed, "num_iterations": 30,
                "min_val_bpb": value, "status": "ok"}

    append_csv_rows(lb.path("results.csv"), RESULTS_COLUMNS,
                    [row(41, 2.0), row(42, 1.0), row(43, 0.5, run_id="an-older-recipe-s43")])
    with pytest.raises(ExpspecError, match=r"required seed\(s\) \[43\]"):
        derive_threshold(lb)  # another recipe's row does not count
    append_csv_rows(lb.path("results.csv"), RESULTS_COLUMNS, [row(43, 4.0)])
    assert derive_threshold(lb)["threshold"] == pytest.approx(2.0 + 0.02)


def test_run_all_without_a_threshold_names_it_and_writes_nothing(tmp_path, corpus_file):
    lb = lane(tmp_path, corpus_file)
    with pytest.raises(ExpspecError, match="threshold.env is missing"):
        run_all(lb)
    assert not lb.work_dir.exists()


def _cand(seed, kind, measured=None, extrapolated=None, accepted=True):
    return {"seed": str(seed), "lane_b_decision": kind, "accepted": str(accepted),
            "time_to_target_sec_measured": "nan" if measured is None else str(measured),
            "time_to_target_sec_extrapolated": "nan" if extrapolated is None else str(extrapolated)}


def test_decide_follows_the_worksheet_rule():
    rows = [_cand(1, "inferred", 10), _cand(1, "confirmation", 12),
            _cand(2, "inferred", extrapolated=20), _cand(2, "confirmation", 15),
            _cand(3, "inferred", 9, accepted=False), _cand(3, "confirmation", 9),
            _cand(4, "inferred", 5), _cand(4, "confirmation", 5),
            _cand(5, "inferred"), _cand(5, "confirmation")]
    out = decide(rows, [1, 2, 3, 4, 5])
    winners = {s: v["winner"] for s, v in out["per_seed"].items()}
    assert winners == {1: "inferred", 2: "confirmation", 3: "confirmation", 4: TIE_OR_MISSING, 5: TIE_OR_MISSING}
    assert out["wins"] == {"inferred": 1, "confirmation": 2} and out["recommended_decision"] == "confirmation"
    tied = decide([_cand(1, "inferred", 1), _cand(1, "confirmation", 2),
                   _cand(2, "inferred", 3), _cand(2, "confirmation", 1)], [1, 2])
    assert tied["recommended_decision"] == "inferred"  # 1-1: inferred > confirmation


def test_no_accepted_candidate_means_fallback(tmp_path, corpus_file):
    from expspec.kernels.lane_b.pipeline import planned_candidates

    lb = lane(tmp_path, corpus_file, "lane_b.target_threshold=1.5")
    infer = {"solve_status": "ok", "alpha": 0.3, "confirmation_ratio": 2.1, "inferred_target_param_data_ratio": 2.0}
    lb.path("infer.json").write_text(json.dumps(infer))
    rows = [dict(_cand(seed, kind, extrapolated=30, accepted=False), run_id=run_id, log="x")
            for kind, seed, _, run_id in planned_candidates(lb, infer)]
    rows.append(dict(_cand(41, "inferred", measured=1, accepted=True), run_id="an-older-plan", log="x"))
    append_csv_rows(lb.path("candidate_runs.csv"), CANDIDATE_COLUMNS, rows, key="run_id")
    summary = step_summary(lb)  # the older plan's accepted row is not this plan's
    assert summary["lane_b_decision"] == "fallback" and summary["chosen_ratio"] == 2.0
    assert summary["expansion_stopped"] and "neither the inferred nor the confirmation" in summary["reason"]


@pytest.mark.slow
def test_nanochat_backend_runs_the_command_and_parses_its_log(tmp_path, corpus_file):
    """The nanochat backend runs a command template in nanochat_dir and parses its stdout
    log. Here the command is our own trainer's module entry (real nanochat-format log)."""
    import numpy as np

    from expspec.kernels.train.config import TrainConfig

    base = lane(tmp_path, corpus_file)
    cfg = TrainConfig.from_lane_b(base.lane_b, seed=7, num_iterations=20, target_threshold=4.0)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.__dict__))
    np.savez(tmp_path / "data.npz", train=base.data.train, val=base.data.val, token_bytes=base.data.token_bytes)
    command = (f"{sys.executable} -m expspec.kernels.train.launch --config {tmp_path}/cfg.json --data {tmp_path}/data.npz "
               f"--out-dir {tmp_path}/trainer-out --threads 1")
    lb = lane(tmp_path, corpus_file, "lane_b.backend=nanochat", f"lane_b.nanochat_dir={tmp_path}",
              f"lane_b.nanochat_command={command}")
    run = train_run(lb, "nano-1", 7, threshold=4.0)
    log = (lb.work_dir / "runs" / "nano-1" / "train.log").read_text()
    assert run["status"] == "ok", log[-2000:]
    assert run["steps"] == 20 and run["tokens_trained"] == 20 * 128 and len(run["evals"]) >= 2
    assert run["time_to_target_method"] in ("measured", "extrapolated:power_law")
    assert log.count("Validation bpb") >= 2
    bad = lane(tmp_path / "b", corpus_file, "lane_b.backend=nanochat", f"lane_b.nanochat_dir={tmp_path}",
               "lane_b.nanochat_command=python {nope}")
    with pytest.raises(ExpspecError, match="unknown placeholder"):
        train_run(bad, "nano-2", 7)
