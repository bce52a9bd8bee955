"""The run cache computes once, atomically, even with two processes racing on a key."""

import json
import os
import multiprocessing as mp
import sys
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


# ---- keys follow the code a step really uses ---------------------------------------------

FAKE = {
    "labpkg/__init__.py": "",
    "labpkg/core.py": "SCALE = 1\n",
    "labpkg/plots.py": "def draw():\n    return 'png'\n",
    "labpkg/fam_a/__init__.py": "",
    "labpkg/fam_a/kernel.py": ("from labpkg.core import SCALE\n\n"
                               "def step(work):\n    from labpkg.fam_a import helper\n"
                               "    return {'v': helper.value() * SCALE}\n"),
    "labpkg/fam_a/helper.py": "def value():\n    return 2\n",
    "labpkg/fam_b/__init__.py": "",
    "labpkg/fam_b/kernel.py": "from labpkg import core, plots\n\ndef step(work):\n    return {'v': 3}\n",
}


@pytest.fixture
def labpkg(tmp_path, monkeypatch):
    for rel, text in FAKE.items():
        path = tmp_path / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    for name in [m for m in sys.modules if m == "labpkg" or m.startswith("labpkg.")]:
        monkeypatch.delitem(sys.modules, name)  # an earlier test's copy lives in another tmp dir
    yield tmp_path / "src" / "labpkg"
    for name in [m for m in sys.modules if m == "labpkg" or m.startswith("labpkg.")]:
        del sys.modules[name]


def test_closure_follows_imports_inside_functions(labpkg):
    from expspec.kernels.run_cache import module_closure

    assert module_closure(["labpkg.fam_a.kernel"]) == [
        "labpkg", "labpkg.core", "labpkg.fam_a", "labpkg.fam_a.helper", "labpkg.fam_a.kernel"]
    assert "labpkg.plots" in module_closure(["labpkg.fam_b.kernel"])


def test_editing_another_family_keeps_an_entry_editing_the_kernel_recomputes(labpkg, tmp_path):
    cache = RunCache(tmp_path / "cache")

    def run(code_version=0):
        return cache.get_or_compute("fam_a", "step", {"k": 1}, lambda work: {"v": 2}, code=["labpkg.fam_a.kernel"],
                                    code_version=code_version)

    first = run()
    assert first.computed
    (labpkg / "fam_b" / "kernel.py").write_text(FAKE["labpkg/fam_b/kernel.py"] + "# edited\n")
    (labpkg / "plots.py").write_text(FAKE["labpkg/plots.py"] + "# a plot changed\n")
    assert not run().computed and run().key == first.key  # unrelated family and plots: kept
    (labpkg / "fam_a" / "helper.py").write_text("def value():\n    return 5\n")  # imported inside step()
    second = run()
    assert second.computed and second.key != first.key
    assert run(code_version=2).computed  # an explicit version bump recomputes too
    meta = json.loads((second.path / "meta.json").read_text())
    assert "labpkg.fam_a.helper" in meta["code"]["modules"] and "labpkg.plots" not in meta["code"]["modules"]


def test_lane_b_stats_key_ignores_plots_cli_and_reports():
    from expspec.kernels.lane_b import stats
    from expspec.kernels.run_cache import module_closure

    closure = module_closure([stats.__name__])
    assert "expspec.kernels.lane_b.correlation" in closure and "expspec.kernels.fit.power_law" in closure
    for unrelated in ("expspec.kernels.plots", "expspec.kernels.cli", "expspec.kernels.reports",
                      "expspec.kernels.lane_b.plots", "expspec.kernels.lane_b.cli", "expspec.kernels.lane_b.pipeline"):
        assert unrelated not in closure


def test_truncated_entry_is_recomputed(tmp_path):
    cache = RunCache(tmp_path)
    entry = cache.get_or_compute("f", "s", {}, lambda work: {"v": 1})
    (entry.path / "result.json").write_text('{"v": ')  # a torn write from outside
    again = cache.get_or_compute("f", "s", {}, lambda work: {"v": 1})
    assert again.computed and again.result == {"v": 1}


def _entry(cache: RunCache, name: str):
    return cache.get_or_compute("fam", name, {}, lambda work: (work / "blob").write_bytes(b"x" * 1000) and {"n": name})


def _age(entry: Path, seconds: float, *, used: bool) -> None:
    """Pretend the entry was made (and, if ``used``, last used) ``seconds`` ago."""
    then = time.time() - seconds
    for f in [entry / "result.json"] + ([entry / "used"] if used else []):
        os.utime(f, (then, then))


def test_cache_info_and_prune(tmp_path, capsys):
    from filelock import FileLock

    from expspec.kernels.cli import main
    from expspec.kernels.run_cache import cache_entries

    cache = RunCache(tmp_path / "reports" / "cache")
    old, stale, fresh, locked = (_entry(cache, n) for n in ("old", "stale", "fresh", "locked"))
    _age(old.path, 10 * 86400, used=True)
    _age(stale.path, 3 * 86400, used=True)
    _age(locked.path, 10 * 86400, used=True)
    _age(fresh.path, 10 * 86400, used=False)
    _entry(cache, "fresh")  # a hit marks the entry used now
    dead = cache.root / ".fam-dead-0123456789abcdef.abc123"  # a SIGKILLed computation's work dir
    dead.mkdir()
    reports = str(tmp_path / "reports")
    assert main(["cache", "info", "--reports-dir", reports]) == 0
    out = capsys.readouterr().out
    assert "total: 4 entries" in out and "1 dead work dir" in out
    assert sum(e.bytes for e in cache_entries(cache.root)) >= 4000

    before = sorted(p.name for p in cache.root.iterdir())
    assert main(["cache", "prune", "--reports-dir", reports, "--older-than", "yesterday"]) == 2
    assert main(["cache", "prune", "--reports-dir", reports]) == 2  # nothing said: nothing removed
    assert main(["cache", "prune", "--reports-dir", reports, "--unused-since", "2d", "--dry-run"]) == 0
    assert sorted(p.name for p in cache.root.iterdir()) == before

    with FileLock(str(locked.path) + ".lock"):  # in use by another process: left alone
        assert main(["cache", "prune", "--reports-dir", reports, "--unused-since", "2d"]) == 0
    left = {e.step for e in cache_entries(cache.root)}
    assert left == {"fresh", "locked"}  # old and stale went; fresh was used by the hit
    assert not dead.exists()
    assert main(["cache", "prune", "--reports-dir", reports, "--older-than", "2026-01-01"]) == 0
    assert {e.step for e in cache_entries(cache.root)} == {"fresh", "locked"}  # both made after that date
    assert main(["cache", "prune", "--reports-dir", reports, "--unused-since", "2d"]) == 0
    assert {e.step for e in cache_entries(cache.root)} == {"fresh"}
    assert _entry(cache, "old").computed  # a pruned entry is simply recomputed


def test_a_misspelt_code_module_fails_loudly_and_names_equal_modules():
    """A module named by a string hashes as the module object does; a name with no source
    (a typo) is an error, not a key built from its parent packages alone."""
    from expspec.kernels import run_cache as module
    from expspec.kernels.errors import ExpspecError
    from expspec.kernels.run_cache import code_fingerprint

    assert code_fingerprint(["expspec.kernels.run_cache"]) == code_fingerprint([module])
    with pytest.raises(ExpspecError, match=r"no source found for code \['expspec.kernels.run_cachez'\]"):
        code_fingerprint([module, "expspec.kernels.run_cachez"])


def test_the_family_plugins_code_names_resolve():
    """The module names the family plugins key their steps by (imported lazily there) exist."""
    from expspec.fixtures import bon, hero, lane_b, tempnorm
    from expspec.kernels.run_cache import code_fingerprint

    names = [bon.ANALYZE, hero.LADDER, lane_b.STATS, *lane_b.PIPELINE, tempnorm.GENERATE, tempnorm.RESCORE,
             tempnorm.PREDICTOR]
    for name in names:
        assert code_fingerprint([name])["modules"], name
