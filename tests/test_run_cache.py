"""The run cache computes once, atomically, even with two processes racing on a key."""

import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from expspec.kernels.provenance import file_fingerprint
from expspec.kernels.run_cache import RunCache


def _slow_step(counter_dir: str):
    def fn(work: Path):
        # every real computation leaves a marker; two markers = computed twice
        marker = Path(counter_dir) / f"computed-{time.time_ns()}"
        marker.write_text("x")
        time.sleep(1.0)
        (work / "artifact.txt").write_text("hello")
        return {"value": 42}
    return fn


def _race(root: str, counter_dir: str, queue):
    entry = RunCache(root).get_or_compute("fam", "step", {"a": 1}, _slow_step(counter_dir))
    queue.put((entry.result, entry.computed, (entry.path / "artifact.txt").read_text()))


def test_two_processes_compute_once(tmp_path):
    counter = tmp_path / "counter"
    counter.mkdir()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path / "cache"), str(counter), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(list(counter.iterdir())) == 1  # exactly one computation
    assert [r[0] for r in results] == [{"value": 42}] * 2  # both got the result
    assert sorted(r[1] for r in results) == [False, True]
    assert {r[2] for r in results} == {"hello"}


def test_key_changes_with_config_and_inputs(tmp_path):
    cache = RunCache(tmp_path)
    base = cache.key("f", "s", {"a": 1}, {"corpus": "abc"})
    assert base == cache.key("f", "s", {"a": 1}, {"corpus": "abc"})
    assert base != cache.key("f", "s", {"a": 2}, {"corpus": "abc"})
    assert base != cache.key("f", "s", {"a": 1}, {"corpus": "abd"})
    assert base != cache.key("f", "t", {"a": 1}, {"corpus": "abc"})


def test_fresh_recomputes_and_failure_leaves_nothing(tmp_path):
    calls = []

    def fn(work):
        calls.append(1)
        return {"n": len(calls)}

    assert RunCache(tmp_path).get_or_compute("f", "s", {}, fn).result == {"n": 1}
    assert RunCache(tmp_path).get_or_compute("f", "s", {}, fn).result == {"n": 1}
    assert RunCache(tmp_path, fresh_since=time.time() + 1).get_or_compute("f", "s", {}, fn).result == {"n": 2}

    def boom(work):
        (work / "partial.txt").write_text("half")
        raise RuntimeError("step failed")

    with pytest.raises(RuntimeError):
        RunCache(tmp_path).get_or_compute("f", "other", {}, boom)
    leftovers = [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")]
    assert all(name.startswith("f-s-") for name in leftovers), leftovers


def test_nan_results_round_trip(tmp_path):
    entry = RunCache(tmp_path).get_or_compute("f", "s", {}, lambda w: {"x": float("nan")})
    assert json.loads((entry.path / "result.json").read_text())["x"] == "nan"


def test_file_fingerprint(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    first = file_fingerprint(tmp_path)
    assert first == file_fingerprint(tmp_path)
    (tmp_path / "a.txt").write_text("two")
    assert first != file_fingerprint(tmp_path)
