"""The hero ladder on a deliberately starved setup (real SmolLM2 and MiniLM, a handful of
steps): no rung can pass, so the Phase 2 and Phase 3 rungs run for real. Checks the decision
tree, that Stage A trains once, that every rung resumes from its checkpoint, that a killed
rung reruns alone, and what the files say."""

import json
import os

import pytest

from expspec.kernels.config import resolve_scale
from expspec.kernels.errors import ExpspecError
from expspec.kernels.hero.checklist import CHECKS
from expspec.kernels.hero.diagnostics import read_diagnostics, read_epoch_diagnostics
from expspec.kernels.hero.ladder import PHASE2, PHASE3, RUNGS, HeroLadder, next_rung, rung_delta

STARVED = ["hero.stage_a_samples=16", "hero.stage_a_epochs=1", "hero.stage_b_samples=8", "hero.stage_b_epochs=1",
           "hero.eval_samples=6", "hero.eval_every=2", "hero.log_every=1", "hero.max_new_tokens=4",
           "hero.batch_size=4", "hero.epoch_samples=2",
           "hero.kd_weight=1.0"]  # the distillation teacher runs too

pytestmark = pytest.mark.xdist_group("hero")


def _decision(diagnosis, ready=False):
    return {"decision": {"ready": ready, "diagnosis": diagnosis, "failed": [] if ready else ["x"]}}


def test_decision_tree():
    assert next_rung([]) == "phase1"
    assert next_rung([{"name": "phase1", **_decision("ready", True)}]) is None
    # F1 = 0 with the first token learned: exposure bias -> straight to scheduled sampling
    assert next_rung([{"name": "phase1", **_decision("exposure_bias")}]) == PHASE3
    tuned = [{"name": "phase1", **_decision("tune")}]
    for name in PHASE2:
        assert next_rung(tuned) == name
        tuned.append({"name": name, **_decision("tune")})
    assert next_rung(tuned) == PHASE3
    assert next_rung(tuned + [{"name": PHASE3, **_decision("tune")}]) is None
    # after scheduled sampling, a tune diagnosis still tries the Phase 2 experiments left
    assert next_rung([{"name": "phase1", **_decision("exposure_bias")},
                      {"name": PHASE3, **_decision("tune")}]) == PHASE2[0]


def test_rung_deltas():
    cfg = resolve_scale("smoke")["hero"]
    assert rung_delta("phase1", cfg) == {}
    assert rung_delta("phase2_first_token_weight", cfg) == {"first_token_weight": 12.0}
    assert rung_delta("phase2_more_epochs", cfg) == {"stage_b_epochs": 2 * cfg["stage_b_epochs"]}
    assert rung_delta("phase2_cosine_lr", cfg) == {"lr_schedule": "cosine", "lora_lr": 5e-5}
    ss = rung_delta(PHASE3, cfg)  # eps reaches 0.5 exactly at the end of the rung's Stage B (100 steps)
    assert ss["ss_schedule"] == "linear" and ss["ss_eps_min"] == 0.5 and ss["ss_c"] == pytest.approx(0.5 / 100)
    with pytest.raises(ExpspecError, match="unknown rung"):
        rung_delta("phase9", cfg)


def test_starved_ladder_runs_every_branch(tmp_path):
    cfg = resolve_scale("smoke", overrides=STARVED)["hero"]
    ladder = HeroLadder(cfg, seed=3, root=tmp_path, log=lambda line: None)
    result = ladder.run()
    names = [r["name"] for r in result["rungs"]]
    assert not result["ready"]
    # starved: nothing passes, so the tree runs to its end through Phase 2 and Phase 3
    assert names[0] == "phase1" and set(names) == set(RUNGS) and names[-1] in (PHASE3, PHASE2[-1])
    stage_a = ladder.stage_a_dir / "stage_a.pt"
    stage_a_mtime = os.stat(stage_a).st_mtime_ns
    a_steps = json.loads((ladder.stage_a_dir / "stage_a.json").read_text())["global_step_end"]
    for rung in result["rungs"]:
        folder = ladder.dir / f"{rung['index']}_{rung['name']}"
        full = json.loads((folder / "result.json").read_text())
        assert set(full["checks"]) == set(CHECKS)
        assert full["stage_b"]["global_step_end"] > a_steps  # Stage B goes on from Stage A's steps
        points, _ = read_diagnostics(folder / "diagnostics.jsonl")
        stages = {p.series for p in points}
        assert {"A/train", "A/eval", "B/train", "B/eval"} <= stages
        assert read_epoch_diagnostics(folder / "diagnostics_epoch.jsonl")
        records = [json.loads(line) for line in (folder / "diagnostics.jsonl").read_text().splitlines()]
        assert all(r["kd"] is not None and r["kd"] >= 0 for r in records if r["mode"] == "train")
        rows = [json.loads(line) for line in (folder / "eval_detailed.jsonl").read_text().splitlines()]
        assert {r["prefix_used"] for r in rows} == {"latent", "text"} and len(rows) == 2 * cfg["eval_samples"]
        assert (folder / "lora_adapter" / "adapter_config.json").is_file()
        assert full["config"] == {**cfg, **full["delta"]}
    ss_rung = next(r for r in result["rungs"] if r["name"] == PHASE3)
    assert rung_delta(PHASE3, cfg) == ss_rung["delta"]

    # kill the last rung (no result.json): a rerun redoes it alone, Stage A untouched
    last = ladder.dir / f"{result['rungs'][-1]['index']}_{result['rungs'][-1]['name']}"
    (last / "result.json").unlink()
    before = {r["name"]: os.stat(ladder.dir / f"{r['index']}_{r['name']}" / "result.json").st_mtime_ns
              for r in result["rungs"][:-1]}
    again = HeroLadder(cfg, seed=3, root=tmp_path, log=lambda line: None).run()
    assert [r["name"] for r in again["rungs"]] == names
    assert os.stat(stage_a).st_mtime_ns == stage_a_mtime
    for r in again["rungs"][:-1]:
        assert os.stat(ladder.dir / f"{r['index']}_{r['name']}" / "result.json").st_mtime_ns == before[r["name"]]
    assert (last / "result.json").is_file()
