"""SIGKILL in the middle of the work, then a rerun: nothing partial, resumption, the same result.

Each test starts the real work in a child process, kills it with SIGKILL at a point inside
the work (found by watching what the work itself writes: the table growing, a temp file,
the run cache's private work dir, the collector's progress lines, the stage's diagnostics),
checks what the kill left, reruns in this process, and compares the rerun's final result
with an uninterrupted run's (same seeds) field by field, as tests/test_determinism.py
compares two runs. Where the assertions depend on where the kill landed they hold for
every landing point; each test also checks that at least one kill landed where it aimed.

* a CSV append (Lane B's 21-column log, ``append_rows`` -> tables.append_csv_rows);
* a run-cache write (``RunCache.get_or_compute``: the step's private work dir, then result.json
  and the rename);
* a best-of-N collector run (``expspec bon collect``): no checkpoint, the rerun samples again;
* hero's Stage A, then rung 0's Stage B (``HeroLadder.run``, a mid-stage checkpoint every step):
  the killed Stage A resumes from its newest mid-stage checkpoint, a rung from the Stage A
  checkpoint (or its own mid-stage one), which the rerun must not retrain.
A Lane B pipeline killed between training runs is tests/test_lane_b_resume.py's.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_determinism import (BON_EXCLUDED, HERO_EXCLUDED, HERO_SETS, artifact_fields, assert_identical,
                              save_tiny_model)

TESTS = Path(__file__).parent
THREADS = 1  # the child's and the in-process rerun's torch threads (bitwise results need one count)


def child_env(**extra) -> dict:
    return dict(os.environ, EXPSPEC_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS), EXPSPEC_TRACKING="off",
                PYTHONUNBUFFERED="1", **extra)


def start(code: str, *args: str, stdout=subprocess.DEVNULL, **env) -> subprocess.Popen:
    """``code`` in a child with this folder on its path and torch on THREADS threads."""
    prelude = f"import sys; sys.path.insert(0, {str(TESTS)!r}); from pathlib import Path; "
    return subprocess.Popen([sys.executable, "-c", prelude + code, *args], stdout=stdout, stderr=subprocess.PIPE,
                            env=child_env(**env))


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0, extra_delay: float = 0.0,
              poll: float = 0.01) -> bool:
    """Poll ``ready()`` until it holds, wait ``extra_delay`` s, SIGKILL the child. Returns
    whether it was still running when killed (False: it had finished, or ready never held)."""
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(poll)
    if extra_delay and proc.poll() is None:
        time.sleep(extra_delay)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if not alive:
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()[-3000:]
    proc.stderr.close()
    return alive


def in_process(fn, *args, **kwargs):
    """``fn`` here with torch on THREADS threads, as in the child."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


def temp_files(folder: Path, name: str) -> list[Path]:
    """atomic_io's temp files for ``name`` (``.<name>.<random>.tmp``) in ``folder``."""
    return sorted(folder.glob(f".{name}.*.tmp"))


# ---- (a) a CSV append -----------------------------------------------------------------------
CSV_BATCHES, CSV_ROWS = 60, 20  # 1,200 rows, ~1 MB: every append rewrites (and fsyncs) the whole table


def csv_batch(batch: int) -> list[dict]:
    """CSV_ROWS rows of Lane B's log, every column filled, notes long enough to make writes take time."""
    return [{"timestamp_utc": "2026-01-01T00:00:00Z", "git_commit": "0123abcd", "run_id": f"run-{batch:03d}-{i:02d}",
             "seed": 41 + i, "dataset_id": "austen", "target_metric_name": "val_bpb",
             "target_metric_threshold": 1.5 + batch / 7, "n_scaling_params": 163840,
             "inferred_data_scaling_exponent": 0.3, "inferred_target_tokens": 1e6 + batch / 3,
             "inferred_target_param_data_ratio": 2.0, "confirmation_ratio": 2.1, "chosen_ratio": 2.0,
             "lane_b_decision": "inferred", "time_to_target_sec_measured": batch * 0.1 + i,
             "time_to_target_sec_extrapolated": None, "min_val_bpb": 1.234 + i / 3, "tok_per_sec_median": 1000.5,
             "dt_median_ms": 17.25, "status": "ok", "notes": {"batch": batch, "pad": "x" * 800}}
            for i in range(CSV_ROWS)]


def append_all(path: str | Path) -> None:
    """The work: every batch appended in turn (a rerun skips the run ids already there)."""
    from expspec.kernels.lane_b.schema import append_rows

    for batch in range(CSV_BATCHES):
        append_rows(path, csv_batch(batch))


def test_sigkill_during_a_csv_append_leaves_whole_rows_and_the_rerun_completes_the_table(tmp_path):
    from expspec.kernels.lane_b.schema import read_rows

    reference = tmp_path / "reference" / "lane_b_inference_schema.csv"
    append_all(reference)
    size = reference.stat().st_size
    rng = random.Random(14)
    for attempt in range(10):  # until a kill lands inside the atomic write (most do)
        table = tmp_path / f"work{attempt}" / "lane_b_inference_schema.csv"
        proc = start("import test_kill_rerun as t; t.append_all(sys.argv[1])", str(table))
        at = rng.uniform(0.1, 0.9) * size  # a table of this size, and its next version being written
        kill_when(proc, lambda: table.is_file() and table.stat().st_size > at and temp_files(table.parent, table.name),
                  poll=0.0005)
        rows = read_rows(table)  # every row has the 21 fields, every numeric cell parses
        ids = [r["run_id"] for r in rows]
        assert ids == [r["run_id"] for b in range(len(ids) // CSV_ROWS) for r in csv_batch(b)], "partial or doubled"
        assert reference.read_bytes().startswith(table.read_bytes())  # byte for byte the uninterrupted prefix
        if temp_files(table.parent, table.name):  # killed between the temp file's creation and its rename
            break
    else:
        pytest.fail("no kill of 10 landed inside a write")
    append_all(table)  # the rerun: appends only what is missing
    assert table.read_bytes() == reference.read_bytes()
    assert not temp_files(table.parent, table.name)  # the killed writer's temp file is gone (removed under the lock)


# ---- (d) a run-cache write ---------------------------------------------------------------------
CACHE_PARTS, CACHE_PART_BYTES = 48, 1 << 18
CACHE_PART_PAUSE = 0.02  # s after each part: the step lasts ~1 s, longer than any kill delay (the bare writes take
# ~60 ms here, so a kill 0.03-0.3 s after the third part often came after the rename: CI, 2026-12-07)


def cache_step(work: Path) -> dict:
    """A step that writes its artifacts a part at a time (seeded bytes) and returns their digest."""
    import numpy as np

    digest = hashlib.sha256()
    for i in range(CACHE_PARTS):
        block = np.random.default_rng([14, i]).integers(0, 256, size=CACHE_PART_BYTES, dtype=np.uint8).tobytes()
        (work / f"part{i:03d}.bin").write_bytes(block)
        digest.update(block)
        time.sleep(CACHE_PART_PAUSE)
    return {"parts": CACHE_PARTS, "sha256": digest.hexdigest()}


def cached(root: str | Path):
    from expspec.kernels.run_cache import RunCache

    return RunCache(root).get_or_compute("killtest", "parts", {"parts": CACHE_PARTS}, cache_step)


def test_sigkill_during_a_run_cache_write_leaves_no_entry_and_the_rerun_computes_it(tmp_path):
    from expspec.kernels.run_cache import cache_entries, orphan_work_dirs, prune_cache

    reference = cached(tmp_path / "reference")
    root = tmp_path / "cache"
    rng, orphaned, attempts = random.Random(14), 0, 0
    while not orphaned and attempts < 6:
        attempts += 1
        proc = start("import test_kill_rerun as t; t.cached(sys.argv[1])", str(root))
        kill_when(proc, lambda: any(len(list(w.glob("part*"))) > 2 for w in root.glob(".killtest-parts-*")),
                  extra_delay=rng.uniform(0.0, 0.3))
        entries = cache_entries(root)
        if entries:  # the child got to the rename: a whole entry, never a torn one; try again on an empty cache
            assert [e.key for e in entries] == [reference.key]
            assert json.loads((entries[0].path / "result.json").read_text()) == reference.result
            shutil.rmtree(root)
            continue
        orphaned = len(orphan_work_dirs(root))  # the dead computation's private dir, its lock free
        assert not (root / reference.key).exists()
    assert orphaned, f"no kill of {attempts} landed inside the step"
    rerun = cached(root)  # waits for no lock: SIGKILL released the dead process's
    assert rerun.computed and rerun.key == reference.key and rerun.result == reference.result
    for part in sorted(reference.path.glob("part*")):
        assert (rerun.path / part.name).read_bytes() == part.read_bytes()
    assert not cached(root).computed  # and now it is a hit
    _, removed = prune_cache(root, created_before=0.0)  # removes no entry, only the dead work dirs
    assert len(removed) == orphaned and not orphan_work_dirs(root) and cache_entries(root)


# ---- (b) a best-of-N collector run ------------------------------------------------------------
BON_PROMPTS = 8  # x 4 samples in batches of 2: 16 batches, a progress line after each


def tiny_bon_config(tmp_path: Path) -> Path:
    """test_bon_end_to_end's tiny random Llama (SmolLM2's tokenizer) and a collector config
    with enough batches that a kill after the first lands mid-sampling."""
    model = save_tiny_model(tmp_path / "tiny-llama", "llama")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                               for i in range(BON_PROMPTS)))
    config = {"base_model": str(model), "prompts_file": str(prompts), "k_values": [1, 2, 4],
              "samples_per_prompt": 4, "max_new_tokens": 6, "max_batch": 2, "output_dir": "unused", "seed": 7}
    path = tmp_path / "collector.json"
    path.write_text(json.dumps(config))
    return path


def collect_argv(config: Path, out: Path) -> list[str]:
    return ["bon", "collect", "--config", str(config), "--output-dir", str(out), "--device", "cpu"]


@pytest.mark.slow
def test_sigkill_during_a_bon_collection_leaves_no_run_file_and_the_rerun_matches(tmp_path, capsys):
    from expspec.kernels.bon.collector import read_run
    from expspec.kernels.cli import main

    config = tiny_bon_config(tmp_path)
    assert in_process(main, collect_argv(config, tmp_path / "reference")) == 0
    (reference,) = (tmp_path / "reference").glob("bon_run_*.jsonl")
    out, log = tmp_path / "runs", tmp_path / "child.log"
    with open(log, "w") as stdout:  # the CLI prints "sampled D/T sequences" after each batch
        proc = start("from expspec.kernels.cli import main; sys.exit(main(sys.argv[1:]))",
                     *collect_argv(config, out), stdout=stdout)
        assert kill_when(proc, lambda: "sampled" in log.read_text()), "the collector finished before the kill"
    lines = [line for line in log.read_text().splitlines() if line.startswith("sampled")]
    done, total = (int(v) for v in lines[-1].split()[1].split("/"))
    assert 0 < done < total, lines  # killed mid-sampling
    assert not out.exists() or not list(out.glob("bon_run_*"))  # no run file, whole or partial

    assert in_process(main, collect_argv(config, out)) == 0  # no checkpoint: the rerun samples everything again
    capsys.readouterr()
    (rerun,) = out.glob("bon_run_*.jsonl")
    assert len(read_run(rerun).prompts) == BON_PROMPTS
    # the same samples, scores and pass@k as the uninterrupted run (timing fields aside)
    assert artifact_fields(rerun, BON_EXCLUDED) == artifact_fields(reference, BON_EXCLUDED)


# ---- (c) hero: Stage A, then rung 0's Stage B ------------------------------------------------
HERO_KILL_SETS = HERO_SETS + ["hero.stage_a_samples=16", "hero.stage_b_samples=16",  # 4 steps each
                               "hero.checkpoint_every=1"]  # not in any key: the reference trains the same bits
HERO_SEED = 7


def climb(root: str | Path) -> dict:
    from expspec.kernels.config import resolve_scale
    from expspec.kernels.hero.ladder import HeroLadder

    cfg = resolve_scale("smoke", overrides=HERO_KILL_SETS)["hero"]
    return HeroLadder(cfg, HERO_SEED, Path(root) / "work", log=lambda line: None).run(max_rungs=1)


def _records(path: Path) -> list[dict]:
    """A diagnostics JSONL's records."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


HERO_CHILD = f"import torch; torch.set_num_threads({THREADS}); import test_kill_rerun as t; t.climb(sys.argv[1])"


@pytest.mark.slow
@pytest.mark.xdist_group("hero")
def test_sigkill_in_hero_stage_a_then_stage_b_resumes_from_their_checkpoints(tmp_path):
    in_process(climb, tmp_path / "reference")
    root = tmp_path / "run"
    work = root / "work"

    def stage_a_dir():
        return next(work.glob("stage_a-*"), None)

    # 1: killed inside Stage A after its first mid-stage checkpoint: no stage_a.json, the rerun
    # resumes from the newest checkpoint (the resumed stage's summary names its step)
    def mid_checkpoints():
        return sorted(stage_a_dir().glob("stage_a_step_*.pt")) if stage_a_dir() is not None else []

    assert kill_when(start(HERO_CHILD, str(root)), mid_checkpoints)
    assert not (stage_a_dir() / "stage_a.json").exists(), "the kill landed after Stage A ended"
    newest = int(mid_checkpoints()[-1].stem.rsplit("_", 1)[1])

    # 2: killed inside rung 0's Stage B after its first mid-stage checkpoint: Stage A is whole, the rung is not
    def rung():
        return next(work.glob("ladder-*/0_phase1"), None)

    def b_checkpoints():
        return sorted(rung().glob("stage_b_step_*.pt")) if rung() is not None else []

    assert kill_when(start(HERO_CHILD, str(root)), b_checkpoints)
    assert not (rung() / "result.json").exists(), "the kill landed after rung 0 ended"
    checkpoint = stage_a_dir() / "stage_a.pt"
    assert (stage_a_dir() / "stage_a.json").is_file() and checkpoint.is_file()
    stage_a = (checkpoint.stat().st_mtime_ns, checkpoint.read_bytes())
    summary = json.loads((stage_a_dir() / "stage_a.json").read_text())
    assert summary["resumed_from_step"] == newest >= 1 and summary["steps"] == 4
    assert not mid_checkpoints(), "the finished Stage A kept its mid-stage checkpoints"
    a_steps = [r["global_step"] for r in _records(stage_a_dir() / "diagnostics.jsonl") if r["mode"] == "train"]
    assert a_steps == [1, 2, 3, 4], "Stage A's killed attempt left records behind (or lost some)"

    b_newest = int(b_checkpoints()[-1].stem.rsplit("_", 1)[1])

    # 3: the rerun resumes rung 0 from its newest mid-stage checkpoint (Stage A not retrained) and
    # ends where an uninterrupted climb ends, file by file
    in_process(climb, root)
    assert (checkpoint.stat().st_mtime_ns, checkpoint.read_bytes()) == stage_a
    records = _records(rung() / "diagnostics.jsonl")
    assert [r["stage"] for r in records] == sorted(r["stage"] for r in records)  # A's copy, then one B
    b_steps = [r["global_step"] for r in records if r["stage"] == "B" and r["mode"] == "train"]
    assert b_steps == sorted(set(b_steps)) and b_steps[0] > a_steps[-1]
    assert not b_checkpoints() and b_newest >= 1
    assert json.loads((rung() / "result.json").read_text())["stage_b"]["resumed_from_step"] == b_newest
    # the resumed stages' summaries (stage_a.json, result.json) name their resume step
    assert_identical(tmp_path / "reference" / "work", work, HERO_EXCLUDED + ["resumed_from_step"], at_least=1000)
