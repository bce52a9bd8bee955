"""The pytest plugins end to end: scale params, criteria, reports, bad options."""

import json
import textwrap

import pytest

DEMO = textwrap.dedent('''
    import pytest
    from fixtures.scale import SCALES

    pytestmark = [pytest.mark.parametrize("scale", SCALES, scope="session"),
                  pytest.mark.xdist_group("demo")]

    def test_seed_is_resolved(scale, criterion, experiment_config, device):
        assert device == "cpu"
        criterion.check(experiment_config["common"]["seed"], "==", 7, "seed")

    def test_fit_quality(scale, criterion):
        criterion.check(0.5, ">=", 0.9, "R^2")

    def test_bad_input_in_a_fixture(scale, request):
        from kernels.corpus import load_documents
        if scale == "smoke":
            load_documents("missing-corpus-dir")
''')


@pytest.fixture
def demo(pytester):
    pytester.makeconftest('pytest_plugins = ["fixtures.scale", "fixtures.devices", "fixtures.run_cache", '
                          '"fixtures.reports"]')
    pytester.makeini("[pytest]\nmarkers =\n    smoke: s\n    hero: h\njunit_family = xunit2\n")
    pytester.makepyfile(**{"experiments/test_demo": DEMO})
    return pytester


@pytest.mark.parametrize("xdist", [[], ["-n", "2", "--dist", "loadgroup"]], ids=["n0", "n2"])
def test_session_writes_junit_summary_and_index(demo, xdist):
    result = demo.runpytest_subprocess("--reports-dir", "out", "--set", "common.seed=7", *xdist)
    result.assert_outcomes(passed=1, failed=2, skipped=3)  # hero params skip by default
    run = demo.path / "out" / "latest"
    assert {"junit.xml", "summary.md", "index.html", "config.json", "run.json"} <= {p.name for p in run.iterdir()}
    summary = (run / "summary.md").read_text()
    assert "| test_seed_is_resolved[smoke] | demo | PASS | 7 | == 7 |" in summary
    assert "| test_fit_quality[smoke] | demo | FAIL | 0.5 | >= 0.9 |" in summary
    assert "hero scale: select it with -m hero" in summary
    assert "> expspec: error: corpus missing-corpus-dir: no such file or folder" in summary
    assert "Traceback" not in result.stdout.str() and "expspec: error: corpus missing-corpus-dir" in result.stdout.str()
    assert json.loads((run / "config.json").read_text())["smoke"]["common"]["seed"] == 7
    junit = (run / "junit.xml").read_text()
    assert 'name="measured" value="0.5"' in junit


def test_hero_is_selected_only_on_request(demo):
    result = demo.runpytest_subprocess("--reports-dir", "out", "-m", "hero", "--set", "common.seed=7")
    result.assert_outcomes(passed=2, failed=1, deselected=3)
    # an expression that does not name hero does not select it (hero params still skip)
    result = demo.runpytest_subprocess("--reports-dir", "out", "-m", "not slow", "--set", "common.seed=7")
    result.assert_outcomes(passed=1, failed=2, skipped=3)


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
