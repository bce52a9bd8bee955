"""The pytest plugins end to end: scale params, criteria, reports, bad options."""

import json
import os
import textwrap
import time

import pytest

DEMO = textwrap.dedent('''
    import pytest
    from expspec.fixtures.scale import SCALES

    pytestmark = [pytest.mark.parametrize("scale", SCALES, scope="session"),
                  pytest.mark.xdist_group("demo")]

    def test_seed_is_resolved(scale, criterion, experiment_config, device):
        assert device == "cpu"
        criterion.check(experiment_config["common"]["seed"], "==", 7, "seed")

    def test_fit_quality(scale, criterion):
        criterion.check(0.5, ">=", 0.9, "R^2")

    def test_writes_an_artifact(scale, criterion, tmp_path_factory):
        path = tmp_path_factory.mktemp("art") / "numbers.json"
        path.write_text('{"x": 1}')
        criterion.artifact(path)
        criterion.check(1, "==", 1, "x")

    def test_bad_input_in_a_fixture(scale, request):
        from expspec.kernels.data.corpus import load_documents
        if scale == "smoke":
            load_documents("missing-corpus-dir")
''')


@pytest.fixture
def demo(pytester):
    # no conftest: the installed pytest11 entry point brings expspec's fixtures
    pytester.makeini("[pytest]\nmarkers =\n    smoke: s\n    hero: h\njunit_family = xunit2\n")
    pytester.makepyfile(**{"experiments/test_demo": DEMO})
    return pytester


@pytest.mark.parametrize("xdist", [[], ["-n", "2", "--dist", "loadgroup"]], ids=["n0", "n2"])
def test_session_writes_junit_summary_and_index(demo, xdist):
    result = demo.runpytest_subprocess("--reports-dir", "out", "--set", "common.seed=7", *xdist)
    # hero params are deselected by default (xdist workers deselect them, the controller counts none)
    result.assert_outcomes(passed=2, failed=2, deselected=0 if xdist else 4)
    run = demo.path / "out" / "latest"
    assert {"junit.xml", "summary.md", "index.html", "config.json", "run.json"} <= {p.name for p in run.iterdir()}
    summary = (run / "summary.md").read_text()
    assert "**demo: FAIL**" in summary.splitlines()[2]  # one verdict line per family leads
    # the artifact is copied into the run folder, so the report stands alone
    assert (run / "demo" / "numbers.json").read_text() == '{"x": 1}'
    assert "[numbers.json](demo/numbers.json)" in summary
    assert "| test_seed_is_resolved[smoke] | demo | PASS | 7 | == 7 |" in summary
    assert "| test_fit_quality[smoke] | demo | FAIL | 0.5 | >= 0.9 |" in summary
    assert "> expspec: error: corpus missing-corpus-dir: no such file or folder" in summary
    assert "Traceback" not in result.stdout.str() and "expspec: error: corpus missing-corpus-dir" in result.stdout.str()
    assert json.loads((run / "config.json").read_text())["smoke"]["common"]["seed"] == 7
    junit = (run / "junit.xml").read_text()
    assert 'name="measured" value="0.5"' in junit


def test_hero_is_selected_only_on_request(demo):
    result = demo.runpytest_subprocess("--reports-dir", "out", "-m", "hero", "--set", "common.seed=7")
    result.assert_outcomes(passed=3, failed=1, deselected=4)
    # an expression that does not name hero does not select it (hero params are deselected)
    for expr in ("not slow", "not smoke"):
        result = demo.runpytest_subprocess("--reports-dir", "out", "-m", expr, "--set", "common.seed=7")
        result.assert_outcomes(passed=2 if expr == "not slow" else 0, failed=2 if expr == "not slow" else 0,
                               deselected=4 if expr == "not slow" else 8)
    result = demo.runpytest_subprocess("--reports-dir", "out", "-m", "smoke or hero", "--set", "common.seed=7")
    result.assert_outcomes(passed=5, failed=3)
    # --scale runs that scale only, as the CLI's --scale resolves that scale only
    result = demo.runpytest_subprocess("--reports-dir", "out", "--scale", "hero", "--set", "common.seed=7")
    result.assert_outcomes(passed=3, failed=1, deselected=4)


@pytest.mark.parametrize("expr,marks,expected", [
    ("hero", {"hero"}, True), ("not hero", {"hero"}, False), ("smoke or hero", {"hero"}, True),
    ("(smoke or hero) and not slow", {"hero"}, True), ("smoke and hero", {"hero"}, False),
    ("not (smoke or slow)", {"hero"}, True), ("hero and", {"hero"}, False),
])
def test_marker_expression(expr, marks, expected):
    from expspec.fixtures.scale import marker_expression_selects

    assert marker_expression_selects(expr, marks) is expected


@pytest.mark.parametrize("args", [["--help"], ["--collect-only", "-q"], ["--co", "-n", "2"], ["--fixtures"]])
def test_help_and_collect_only_write_no_run_folder(demo, args):
    result = demo.runpytest_subprocess("--reports-dir", "out", *args)
    assert result.ret == 0
    assert not (demo.path / "out").exists()


def test_bad_input_traceback_on_request(demo):
    short = demo.runpytest_subprocess("--reports-dir", "out", "-k", "bad_input")
    assert "expspec: error: corpus missing-corpus-dir" in short.stdout.str() and "Traceback" not in short.stdout.str()
    long = demo.runpytest_subprocess("--reports-dir", "out", "-k", "bad_input", "--tb=long")
    assert "def load_documents" in long.stdout.str()  # the full traceback, as asked


@pytest.mark.parametrize("args,message", [
    (["--set", "lane_b.calib_itres=1"], "unknown key lane_b.calib_itres"),
    (["--profile", "missing.toml"], "missing.toml: file not found"),
    (["--devices", "cuda:3"], "cuda:3 does not exist"),
    (["--devices", "tpu"], "'tpu' is not a device"),
    (["--set", "common.corpus=nope.txt"], "corpus nope.txt: no such file or folder"),
    (["--set", "common.corpus=empty.txt"], "corpus empty.txt: empty"),
])
def test_bad_options_fail_in_one_line_and_write_nothing(demo, args, message):
    (demo.path / "empty.txt").write_text("\n\n")
    result = demo.runpytest_subprocess("--reports-dir", "out", *args)
    assert result.ret != 0
    assert message in result.stderr.str()
    assert not (demo.path / "out").exists()


PROGRESS_DEMO = textwrap.dedent('''
    import time
    import pytest
    from expspec.fixtures.scale import SCALES
    from expspec.kernels.progress import advance, stage

    pytestmark = [pytest.mark.parametrize("scale", SCALES, scope="session")]

    def test_long_step(scale):
        with stage("demo fit"):
            for i in range(30):
                advance("epoch", i, 30)
                time.sleep(0.1)
''')


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_progress_shows_family_and_step_also_under_xdist(pytester, xdist, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # this test may itself run on a worker
    pytester.makepyfile(**{"experiments/test_progress_demo": PROGRESS_DEMO})
    result = pytester.runpytest_subprocess("--reports-dir", "out", "-s" if not xdist else "-q", *xdist)
    result.assert_outcomes(passed=1)
    lines = [line for line in result.stdout.lines if line.startswith("[expspec ")]
    assert lines and "demo fit" in lines[0] and ("gw" in lines[0]) == bool(xdist), result.stdout.str()


GROUPED = textwrap.dedent('''
    import os
    import pytest

    pytestmark = pytest.mark.xdist_group("fam")

    @pytest.fixture(scope="session")
    def shared():
        with open("computed.txt", "a") as f:
            f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")

    @pytest.mark.parametrize("i", range(4))
    def test_grouped(shared, i):
        with open("grouped.txt", "a") as f:
            f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
''')


def test_loadgroup_sends_a_group_to_one_worker(pytester):
    """xdist's own @group id suffix is lost under pytest 9.2 (fixtures/xdist_groups.py): without
    the plugin's scheduler the four tests are four units, spread over both workers."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_grouped=GROUPED, test_alone="def test_alone():\n    pass\n")
    result = pytester.runpytest_subprocess("--reports-dir", "out", "-n", "2", "--dist", "loadgroup")
    result.assert_outcomes(passed=5)
    workers = (pytester.path / "grouped.txt").read_text().split()
    assert len(workers) == 4 and len(set(workers)) == 1, workers
    assert len((pytester.path / "computed.txt").read_text().split()) == 1  # the session fixture ran once


def test_a_killed_process_progress_is_not_shown_as_running(tmp_path):
    """A SIGKILLed process (a test's child, a crashed worker) never clears its status file:
    the controller drops it instead of printing its last step every 20 s for ever."""
    import signal
    import subprocess
    import sys

    from expspec.kernels.progress import read_status

    child = subprocess.Popen([sys.executable, "-c", (
        "import time\n"
        "from expspec.kernels.progress import advance\n"
        "advance('train r1', 1, 40)\n"
        "time.sleep(60)\n")], env={**os.environ, "EXPSPEC_PROGRESS_DIR": str(tmp_path)})
    status = tmp_path / f"{child.pid}.json"
    deadline = time.monotonic() + 30
    while not status.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["line"] for r in read_status(tmp_path)] == ["train r1 1/40"]  # alive: shown
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert read_status(tmp_path) == [] and not status.exists()


def test_cli_config_resolves_like_pytest(capsys):
    from expspec.kernels.cli import main
    from expspec.kernels.config import resolve_scale

    assert main(["config", "--scale", "smoke", "--set", "lane_b.depth=3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = resolve_scale("smoke", None, ["lane_b.depth=3"])
    assert printed["lane_b"]["depth"] == 3 and printed["lane_b"]["calib_iters"] == expected["lane_b"]["calib_iters"]
    assert main(["config", "--set", "lane_b.nope=1"]) == 2
    assert "unknown key lane_b.nope" in capsys.readouterr().err


def test_the_test_file_names_its_family():
    from expspec.kernels.reports import family_of

    assert family_of("experiments/test_lane_b.py::test_x[smoke]") == "lane_b"
    assert family_of("experiments/test_hero_readiness.py::test_y[hero]") == "hero"
    assert family_of("experiments/test_bon_emergence.py::test_z") == "bon"
    assert family_of("experiments/test_tempnorm.py::test_z") == "tempnorm"
    assert family_of("experiments/test_toy_model.py::test_z") == "toy_model"  # not a family: its own name
