"""Lane B's run guide on a tiny real setup: real trainer, real files, every rule checked."""

import json
import math
import sys
from pathlib import Path

import pytest

from expspec.kernels.config import resolve_config
from expspec.kernels.data.corpus import load_documents
from expspec.kernels.errors import ExpspecError
from expspec.kernels.lane_b.pipeline import (CANDIDATE_COLUMNS, derive_threshold, step_calibrate,
                                             step_calibration_points, step_candidates)
from expspec.kernels.lane_b.runs import LaneB, read_env_value, train_run
from expspec.kernels.lane_b.summary import TIE_OR_MISSING, decide, run_all, run_pipeline, step_log, step_summary
from expspec.kernels.lane_b.schema import COLUMNS, read_rows
from expspec.kernels.tables import append_csv_rows, parse_notes, read_csv_rows

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
    # the Llama option with an absurd AdamW LR diverges (nanochat_gpt is norm-capped and does not)
    lb = lane(tmp_path, corpus_file, "lane_b.target_threshold=3.0", "lane_b.model=tiny_gpt", "lane_b.learning_rate=1e30")
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


def _cand(seed, kind, score=None, extrapolated=None, accepted=True):
    """A candidate row scored score_sec = crossing step x median step time (measured or fitted)."""
    value = score if score is not None else extrapolated
    return {"seed": str(seed), "lane_b_decision": kind, "accepted": str(accepted),
            "score_sec": "nan" if value is None else str(value)}


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
    rows.append(dict(_cand(41, "inferred", 1, accepted=True), run_id="an-older-plan", log="x"))
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


FAKE_NANOCHAT = Path(__file__).parent / "data" / "fake_nanochat.py"


def nanochat_lane(tmp_path, corpus_file, *extra):
    command = (f"{sys.executable} {FAKE_NANOCHAT} --depth={{depth}} --seed={{seed}} "
               f"--num-iterations={{num_iterations}} --target-param-data-ratio={{ratio}}" + "".join(extra))
    return lane(tmp_path, corpus_file, "lane_b.backend=nanochat", f"lane_b.nanochat_dir={tmp_path}",
                f"lane_b.nanochat_command={command}", "lane_b.depth=2")


def test_nanochat_backend_counts_d_and_n_from_nanochat_not_from_our_model(tmp_path, corpus_file):
    # the stand-in trains with ITS batch (1,048,576 tokens) and ITS model (N from its log)
    lb = nanochat_lane(tmp_path, corpus_file)
    run_pipeline(lb)
    dim = 128
    n_nanochat = 12 * 2 * dim * dim + 32768 * dim
    assert json.loads((lb.work_dir / "scaling_params.json").read_text())["total"] == n_nanochat
    assert (lb.work_dir / "n_scaling_params.txt").read_text().strip() == str(n_nanochat)
    points = json.loads((lb.work_dir / "calibration.json").read_text())["points"]
    assert [p["tokens"] for p in points] == [10 * 1_048_576, 20 * 1_048_576, 40 * 1_048_576]  # not x 128
    infer = json.loads((lb.work_dir / "infer.json").read_text())
    assert infer["n_scaling_params"] == n_nanochat
    if infer["inferred_target_tokens"]:
        assert infer["inferred_target_param_data_ratio"] == pytest.approx(infer["inferred_target_tokens"] / n_nanochat)


def test_nanochat_log_without_its_batch_is_refused(tmp_path, corpus_file):
    lb = nanochat_lane(tmp_path, corpus_file, " --no-batch-line")
    step_calibrate(lb)
    with pytest.raises(ExpspecError, match="no 'Total batch size N => gradient accumulation steps: K' line"):
        step_calibration_points(lb)


def test_reused_runs_are_rescored_at_the_current_threshold(tmp_path, corpus_file):
    lb = nanochat_lane(tmp_path, corpus_file)  # deterministic curves: 0.8 + 30 D^-0.2 (+ seed offset)
    (lb.work_dir).mkdir(parents=True)
    (lb.work_dir / "infer.json").write_text(json.dumps({"solve_status": "ok", "inferred_target_param_data_ratio": 2.0,
                                                        "confirmation_ratio": 2.1}))
    lb.lane_b["target_threshold"] = 2.5  # reached early (bpb 3.28 at step 0, ~2.03 at the end)
    first = {r["run_id"]: r for r in step_candidates(lb)}
    lb.lane_b["target_threshold"] = 2.2  # reached later: the same runs, rescored
    second = {r["run_id"]: r for r in step_candidates(lb)}
    assert first.keys() == second.keys()
    for run_id in first:
        assert second[run_id]["crossing_step"] > first[run_id]["crossing_step"]
    stored = {r["run_id"]: r for r in read_csv_rows(lb.work_dir / "candidate_runs.csv", CANDIDATE_COLUMNS)}
    assert len(stored) == len(second)  # replaced in place, not appended
    assert all(float(stored[k]["crossing_step"]) == pytest.approx(second[k]["crossing_step"]) for k in stored)


@pytest.mark.slow
def test_calibration_under_torchrun_matches_one_process(tmp_path, corpus_file):
    """lane_b.nproc_per_node=2: the pipeline writes the run config and token file itself and
    launches torchrun (gloo on CPU); same global batch -> same final val_bpb, same log format."""
    sets = ("lane_b.calib_iters=6,12", "lane_b.eval_every=6", "lane_b.device_batch_size=2")
    single = lane(tmp_path / "one", corpus_file, *sets)
    ddp = lane(tmp_path / "two", corpus_file, *sets, "lane_b.nproc_per_node=2")
    runs_single, runs_ddp = step_calibrate(single), step_calibrate(ddp)
    assert [r["run_id"] for r in runs_single] == [r["run_id"] for r in runs_ddp]  # the same runs
    for one, two in zip(runs_single, runs_ddp):
        assert two["world_size"] == 2 and one["world_size"] == 1
        assert two["final_val_bpb"] == pytest.approx(one["final_val_bpb"], abs=1e-4)
        assert [s for s, _ in two["evals"]] == [s for s, _ in one["evals"]]
    assert (ddp.work_dir / "runs" / runs_ddp[0]["run_id"] / "launch.json").is_file()
    assert list((ddp.work_dir / "data").glob("tokens-*.npz"))
    points_single, points_ddp = step_calibration_points(single)["points"], step_calibration_points(ddp)["points"]
    assert [p["tokens"] for p in points_ddp] == [p["tokens"] for p in points_single]  # log format parsed alike
    assert [p["value"] for p in points_ddp] == pytest.approx([p["value"] for p in points_single], abs=1e-4)


@pytest.mark.slow
def test_calibration_across_two_nodes_matches_one_process(tmp_path, corpus_file):
    """lane_b.nnodes=2: this machine is node 0 (rendezvous at rdzv_endpoint) and node_launcher
    starts node 1 (here "{command}": a second torchrun agent on localhost, as ssh/srun would on
    another machine); 2 nodes x 1 process train like one process on the same global batch."""
    from test_ddp import free_port

    sets = ("lane_b.calib_iters=6", "lane_b.eval_every=6", "lane_b.device_batch_size=2")
    single = lane(tmp_path / "one", corpus_file, *sets)
    nodes = lane(tmp_path / "two", corpus_file, *sets, "lane_b.nnodes=2", f"lane_b.rdzv_endpoint=127.0.0.1:{free_port()}",
                 "lane_b.node_launcher={command}")
    (one,), (two,) = step_calibrate(single), step_calibrate(nodes)
    assert two["run_id"] == one["run_id"]  # process layout is not part of the run
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["final_val_bpb"] == pytest.approx(one["final_val_bpb"], abs=1e-4)
    assert [s for s, _ in two["evals"]] == [s for s, _ in one["evals"]]
    run = nodes.work_dir / "runs" / two["run_id"]
    head, node1 = (run / "torchrun.log").read_text(), (run / "torchrun-node1.log").read_text()
    assert "--nnodes=2 --node-rank=0" in head.splitlines()[0] and "--node-rank=1" in node1.splitlines()[0]
    assert (run / "train.log").read_text().count("Validation bpb") == len(one["evals"])  # rank 0 alone logs
    points = step_calibration_points(nodes)["points"]
    assert [p["value"] for p in points] == pytest.approx([p["value"] for p in step_calibration_points(single)["points"]],
                                                         abs=1e-4)


def test_a_node_that_cannot_start_stops_the_run_with_one_line(tmp_path, corpus_file):
    """node 1's launcher fails (ssh to a dead host, say): node 0 is not left waiting at the
    rendezvous; the run fails at once naming the node and its log, and no run.json is kept."""
    from test_ddp import free_port

    lb = lane(tmp_path, corpus_file, "lane_b.calib_iters=6", "lane_b.nnodes=2",
              f"lane_b.rdzv_endpoint=127.0.0.1:{free_port()}", "lane_b.node_launcher=exit 3 # {command}")
    with pytest.raises(ExpspecError, match=r"node 1 exited 3; see .*torchrun-node1\.log"):
        step_calibrate(lb)
    assert not list((lb.work_dir / "runs").glob("*/run.json"))


@pytest.mark.parametrize("sets, message", [
    (["lane_b.nnodes=2", "lane_b.node_launcher={command}"], "lane_b.rdzv_endpoint: .*expected HOST:PORT"),
    (["lane_b.nnodes=2", "lane_b.rdzv_endpoint=node0:99999", "lane_b.node_launcher={command}"], "expected HOST:PORT"),
    (["lane_b.nnodes=2", "lane_b.rdzv_endpoint=node0:29500"], "lane_b.node_launcher: 2 nodes need"),
    (["lane_b.nnodes=2", "lane_b.rdzv_endpoint=node0:29500", "lane_b.node_launcher={command}",
      "lane_b.backend=nanochat"], "nanochat_command"),
    (["lane_b.nnodes=0"], "lane_b.nnodes: expected >= 1"),
])
def test_multi_node_knobs_are_checked_before_anything_runs(sets, message):
    with pytest.raises(ExpspecError, match=message):
        resolve_config(None, sets, environ={})


def test_rescore_reads_the_nan_strings_run_json_stores():
    from expspec.kernels.lane_b.pipeline import rescore

    run = {"evals": [[0, 3.0], [10, "nan"], [20, 1.5]], "eval_train_times": [0.0, 5.0, 10.0], "horizon": 20,
           "dt_median_ms": 500.0, "status": "ok"}
    scored = rescore(run, 2.0)  # the NaN eval is skipped, the crossing interpolated from 3.0 @ 0 to 1.5 @ 20
    assert scored["time_to_target_method"] == "measured" and scored["accepted"]
    assert scored["crossing_step"] == pytest.approx(20 * (3.0 - 2.0) / 1.5)
