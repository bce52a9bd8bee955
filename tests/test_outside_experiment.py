"""An experiment outside this repository: its own family, its own acceptance test, and
expspec's fixtures from the installed ``pytest11`` entry point (no conftest from
expspec, no ``pytest_plugins`` line). README.md, "Your own experiment with expspec",
shows these two files verbatim; the last test keeps the two in step.
"""

import json
from pathlib import Path

import pytest

CONFTEST = '''\
from expspec.kernels.config import Family, register_family

register_family(Family(name="toy", title="Toy", knobs={"n": 200, "slope": 2.0}))
'''

TEST_TOY = '''\
import numpy as np
import pytest
from expspec.fixtures.scale import SCALES

pytestmark = pytest.mark.parametrize("scale", SCALES, scope="session")


def fit_slope(workdir, n, slope, seed):
    """Least-squares slope of a noisy line (the expensive step; cached)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, n)
    y = slope * x + 1.0 + rng.normal(0.0, 0.2, n)
    np.savetxt(workdir / "points.csv", np.c_[x, y], delimiter=",")  # an artifact of the entry
    return {"slope": float(np.polyfit(x, y, 1)[0])}


def test_slope_is_recovered(scale, experiment_config, run_cache, criterion):
    knobs, seed = experiment_config["toy"], experiment_config["common"]["seed"]

    def fn(workdir):
        return fit_slope(workdir, knobs["n"], knobs["slope"], seed)

    entry = run_cache.get_or_compute("toy", "fit", {**knobs, "seed": seed}, fn, code=[fit_slope])
    criterion.record("computed", entry.computed)  # False when the cache had it
    criterion.check(abs(entry.result["slope"] - knobs["slope"]), "<=", 0.1, "|slope error|")
'''

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def toy(pytester):
    # only these two files: no ini, no conftest from expspec, no pytest_plugins line
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_toy=TEST_TOY)
    return pytester


def _summary_lines(run: Path) -> list[str]:
    return [line.strip() for line in (run / "summary.md").read_text().splitlines()]


def _toy_entries(path: Path) -> dict[str, tuple[int, int]]:
    """toy-fit cache entries -> (inode, mtime) of their result.json."""
    return {p.parent.name: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in (path / "reports" / "cache").glob("toy-fit-*/result.json")}


def test_outside_experiment_runs_and_reuses_its_cache(toy):
    assert "pytest_plugins" not in CONFTEST + TEST_TOY
    result = toy.runpytest_subprocess()
    result.assert_outcomes(passed=1, deselected=1)  # hero is deselected
    run = (toy.path / "reports" / "latest").resolve()
    assert "**Toy: PASS**" in _summary_lines(run)
    assert "- computed: True" in _summary_lines(run)
    config = json.loads((run / "config.json").read_text())
    assert config["smoke"]["toy"] == {"n": 200, "slope": 2.0}
    first = _toy_entries(toy.path)
    assert len(first) == 1
    (key,) = first
    assert (toy.path / "reports" / "cache" / key / "points.csv").is_file()

    # a second session reuses the entry: fn does not run again, the entry is untouched
    result = toy.runpytest_subprocess()
    result.assert_outcomes(passed=1, deselected=1)
    second_run = (toy.path / "reports" / "latest").resolve()
    assert second_run != run
    assert "- computed: False" in _summary_lines(second_run)
    assert "**Toy: PASS**" in _summary_lines(second_run)
    assert _toy_entries(toy.path) == first


def test_set_changes_the_outside_family(toy):
    result = toy.runpytest_subprocess("--set", "toy.n=500")
    result.assert_outcomes(passed=1, deselected=1)
    config = json.loads((toy.path / "reports" / "latest" / "config.json").read_text())
    assert config["smoke"]["toy"] == {"n": 500, "slope": 2.0}
    assert config["hero"]["toy"]["n"] == 500
    assert "**Toy: PASS**" in _summary_lines((toy.path / "reports" / "latest").resolve())
    assert len(_toy_entries(toy.path)) == 1


def test_unknown_key_of_the_outside_family_fails_in_one_line(toy):
    result = toy.runpytest_subprocess("--set", "toy.bogus=1")
    assert result.ret != 0
    errors = [line for line in result.stderr.lines if "toy.bogus" in line]
    assert len(errors) == 1, result.stderr.str()
    assert "unknown key toy.bogus" in errors[0] and "toy knobs: n, slope" in errors[0]
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert not (toy.path / "reports").exists()


def test_readme_shows_this_experiment():
    readme = README.read_text(encoding="utf-8")
    assert "## Your own experiment with expspec" in readme
    for text in (CONFTEST, TEST_TOY):
        assert text in readme, "README.md's example and this test's experiment differ"
