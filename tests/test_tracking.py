"""Results history in MLflow, end to end: real pytest sessions (pytester, subprocesses) log
into a real SQLite store in tmp_path, read back with MlflowClient.

Two toy families stand in for the real ones (pure Python criteria, seconds): ``toy`` with a
criterion that states R2/alpha/pass@k, leaves a step log and a plot; a checked criterion
with a relative tolerance; a failing one; a flagged-and-accepted one; and ``other`` in its
own xdist group, so ``-n 2`` runs the two families on two workers at once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap

import pytest
from mlflow.tracking import MlflowClient  # imported once here: pytester restores sys.modules after a run

from expspec.kernels.tracking.curves import step_curves
from expspec.kernels.tracking.metrics import Change, criterion_metrics, metric_name, parse_tolerance
from expspec.kernels.reports import record_from_properties

TOY = textwrap.dedent('''
    import json, os, sys
    import pytest
    from expspec.fixtures.scale import SCALES

    pytestmark = [pytest.mark.parametrize("scale", SCALES, scope="session"), pytest.mark.xdist_group("toy")]
    SHIFT = float(os.environ.get("TOY_SHIFT", "0"))

    def test_fit_quality(scale, criterion, tmp_path):
        log = tmp_path / "diagnostics.jsonl"  # a step log, as a training loop leaves it
        log.write_text("".join(json.dumps({"global_step": s, "mode": m, "loss": 1 / s, "first_acc": s / 10})
                               + "\\n" for s in range(1, 6) for m in ("train", "eval")))
        plot = tmp_path / "fit.png"
        plot.write_bytes(b"\\x89PNG\\r\\n\\x1a\\n not really a png")
        criterion.artifact(log)
        criterion.plot(plot)
        criterion.record("alpha", f"{0.31 + SHIFT:.4f} [0.28, 0.35]")
        criterion.record("base pass@k", "pass@1=0.100, pass@8=0.400")
        criterion.record("mlflow loaded", "mlflow" in sys.modules)
        r2 = 0.95 - SHIFT
        criterion.expect(f"R2={r2:.4f} on 7 lags", "R2 >= 0.9 on >= 5 lags", r2 >= 0.5, f"R2={r2}",
                         tolerances={"R2": ("higher", 0.01)})

    def test_peak_first_acc(scale, criterion):
        criterion.check(0.2, ">=", 0.12, "peak eval first_acc", tolerance="10%")

    def test_too_slow(scale, criterion):
        criterion.check(12.5, "<", 10, "seconds per step")

    def test_alpha_reviewed(scale, criterion):
        criterion.review("FLAGGED → ACCEPTED by tester: alpha above the range, reviewed")
        criterion.expect("alpha=0.9", "in [0.2, 0.8] or an accepted review", True, "")
''')

OTHER = textwrap.dedent('''
    import pytest
    from expspec.fixtures.scale import SCALES

    pytestmark = [pytest.mark.parametrize("scale", SCALES, scope="session"), pytest.mark.xdist_group("other")]

    def test_gain(scale, criterion):
        criterion.check(0.25, ">", 0.0, "pass@8 - pass@1")
''')

UNIT = "def test_plain_unit_test():\n    assert 1 + 1 == 2\n"
N2 = ["-n", "2", "--dist", "loadgroup"]


@pytest.fixture(scope="module", autouse=True)
def mlflow_loaded(tmp_path_factory):
    """Load everything the store code imports lazily (MLflow's SQL store, SQLAlchemy, pandas)
    before any pytester fixture snapshots sys.modules: pytester unloads what a test imported,
    and SQLAlchemy's compiled parts do not survive being imported twice in one process."""
    from expspec.kernels.tracking.history import history_table, resolve_reference
    from expspec.kernels.tracking.store import Tracker

    folder = tmp_path_factory.mktemp("warm")
    (folder / "log.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracker = Tracker(uri, "warm-up", {"expspec.session": "warm"})
    run_id = tracker.log_child("warm", "c", {"expspec.metrics": '["m"]'}, {"p": "1"}, {"m": 1.0},
                               {"loss": [(1, 1.0)]}, {"artifacts": [folder / "log.jsonl"]}, "FINISHED")
    tracker.finish("FINISHED", {"expspec.exit_status": "0"})
    resolve_reference(tracker.client, "previous", uri)
    history_table(tracker.client, uri)
    tracker.client.get_metric_history(run_id, "loss")
    tracker.client.list_artifacts(run_id, "artifacts")


@pytest.fixture
def toy(pytester):
    pytester.makeini("[pytest]\nmarkers =\n    smoke: s\n    hero: h\njunit_family = xunit2\n")
    pytester.makepyfile(**{"experiments/test_toy": TOY, "experiments/test_other": OTHER, "tests/test_unit": UNIT})
    return pytester


def _session(toy, *args, env=None):
    """One real pytest session with tracking required, into <tmp>/out/mlflow.db. In process
    (a fresh interpreter costs seconds here); ``-n 2`` still starts two real worker processes."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in (env or {}).items():
            mp.setenv(key, value)
        return toy.runpytest_inprocess("--reports-dir", "out", "--tracking=required", "--set", "common.seed=7",
                                       "-p", "no:cacheprovider", *args)


def _client(path):
    return MlflowClient(f"sqlite:///{path / 'out' / 'mlflow.db'}")


def _sessions(client):
    """The store, session by session (oldest first): {experiment: [(parent tags, {child: what it holds})]}."""
    out = {}
    for exp in client.search_experiments(filter_string="name LIKE 'expspec/%'"):
        runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
        out[exp.name] = []
        for parent in (r for r in runs if r.data.tags.get("expspec.kind") == "session"):
            kids = {}
            for r in runs:
                if r.data.tags.get("mlflow.parentRunId") != parent.info.run_id:
                    continue
                arts = sorted(f"{d.path}/{f.path.split('/')[-1]}" for d in client.list_artifacts(r.info.run_id)
                              for f in client.list_artifacts(r.info.run_id, d.path))
                kids[r.info.run_name] = {
                    "run_id": r.info.run_id, "result": r.data.tags["expspec.result"], "status": r.info.status,
                    "metrics": {k: round(v, 6) for k, v in r.data.metrics.items()},
                    "params": {k: v for k, v in r.data.params.items() if k in ("threshold", "common.seed")},
                    "message": r.data.tags.get("expspec.message"), "artifacts": arts,
                    "tolerances": json.loads(r.data.tags["expspec.tolerances"])}
            tags = {k: parent.data.tags.get(k) for k in ("expspec.scale", "expspec.exit_status", "expspec.verdict",
                                                          "expspec.devices")}
            out[exp.name].append((parent.info.run_id, tags, kids))
    return out


def _shape(session):
    """A session's hierarchy without ids and values: what must not depend on -n."""
    _, tags, kids = session
    return tags, {name: {k: (sorted(v) if k == "metrics" else v) for k, v in kid.items() if k not in ("run_id",)}
                  for name, kid in kids.items()}


def _git(path, *args):
    subprocess.run(["git", *args], cwd=path, check=True, capture_output=True,
                   env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                            GIT_COMMITTER_EMAIL="t@t"))


def _summary(toy) -> str:
    return (toy.path / "out" / "latest" / "summary.md").read_text()


def test_sessions_runs_compare_and_regression_gate_under_n0_and_n2(toy, capsys):
    """Three real sessions into one store: a baseline (-n 0); the same criteria with R2 down
    by 0.05 and alpha up by 0.05 compared with the commit (-n 2: same hierarchy, Δ shown, no
    gate); the same again gated against the baseline's run id (-n 2: judged on the workers)."""
    _git(toy.path, "init", "-q")
    _git(toy.path, "add", "-A")
    _git(toy.path, "commit", "-qm", "toy")

    # 1. baseline, one process
    first = _session(toy)
    first.assert_outcomes(passed=5, failed=1)
    client = _client(toy.path)
    store = _sessions(client)
    assert set(store) == {"expspec/toy", "expspec/other"}  # one experiment per family, the unit test in none
    ((parent_id, tags, kids),) = store["expspec/toy"]  # one parent run per family and session
    assert tags == {"expspec.scale": "smoke", "expspec.exit_status": "1", "expspec.devices": "cpu",
                    "expspec.verdict": "FAIL (alpha_reviewed FLAGGED → ACCEPTED by tester)"}
    assert set(kids) == {"test_fit_quality[smoke]", "test_peak_first_acc[smoke]", "test_too_slow[smoke]",
                         "test_alpha_reviewed[smoke]"}
    fit = kids["test_fit_quality[smoke]"]
    assert fit["result"] == "PASS" and fit["status"] == "FINISHED"
    assert fit["params"] == {"threshold": "R2 >= 0.9 on >= 5 lags", "common.seed": "7"}  # the resolved knobs
    # final metrics, and the step curves' last points (MLflow shows a curve's latest step)
    assert fit["metrics"] == {"alpha": 0.31, "base pass_at_k/pass_at_1": 0.1, "base pass_at_k/pass_at_8": 0.4,
                              "R2": 0.95, "train/loss": 0.2, "eval/loss": 0.2, "train/first_acc": 0.5,
                              "eval/first_acc": 0.5}
    assert [(m.step, m.value) for m in client.get_metric_history(fit["run_id"], "eval/first_acc")] == [
        (s, s / 10) for s in range(1, 6)]
    assert fit["artifacts"] == ["artifacts/diagnostics.jsonl", "plots/fit.png"]
    assert fit["tolerances"] == {"R2": "higher is better, tolerance 0.01"}
    assert kids["test_peak_first_acc[smoke]"]["tolerances"] == {"measured": "higher is better, tolerance 10%"}
    slow = kids["test_too_slow[smoke]"]
    assert (slow["result"], slow["status"], slow["metrics"]) == ("FAIL", "FAILED", {"measured": 12.5})
    assert "seconds per step = 12.5, required < 10" in slow["message"]
    assert kids["test_alpha_reviewed[smoke]"]["result"] == "FLAGGED → ACCEPTED"
    ((_, other_tags, other_kids),) = store["expspec/other"]
    assert other_tags["expspec.verdict"] == "PASS" and list(other_kids) == ["test_gain[smoke]"]
    assert [a.path for a in client.list_artifacts(parent_id)] == ["index.html", "summary.md"]
    lines = first.outlines  # the terminal's summary table
    assert any(line.split()[:4] == ["test_too_slow[smoke]", "FAIL", "12.5", "<"] for line in lines)
    assert any(line.split()[:5] == ["test_fit_quality[smoke]", "PASS", "R2", "=", "0.95"] for line in lines)

    # 2. a planted regression, -n 2, compared with the commit: shown, not gated
    shifted = {"TOY_SHIFT": "0.05"}
    second = _session(toy, "--compare-to", "HEAD", *N2, env=shifted)
    second.assert_outcomes(passed=5, failed=1)
    store = _sessions(_client(toy.path))
    for experiment, sessions in store.items():  # the same hierarchy as one process built
        assert _shape(sessions[1]) == _shape(sessions[0]), experiment
    assert store["expspec/toy"][1][2]["test_fit_quality[smoke]"]["metrics"]["R2"] == 0.9
    assert "- mlflow loaded: False" in _summary(toy)  # only the controller writes; workers never load MLflow
    summary = _summary(toy)
    assert "| Δ vs REF |" in summary and "- compared to: commit " in summary
    assert ("| test_fit_quality[smoke] | toy | PASS | R2=0.9000 on 7 lags | R2 >= 0.9 on >= 5 lags |  "
            "| -0.05 REGRESSED |") in summary
    assert "| test_peak_first_acc[smoke] | toy | PASS | 0.2 | >= 0.12 |  | +0 |" in summary  # deterministic: 0
    assert "- Δ vs REF R2: 0.95 -> 0.9 (-0.05) REGRESSED (higher is better, tolerance 0.01)" in summary
    assert "- Δ vs REF alpha: 0.31 -> 0.36 (+0.05)" in summary  # shown, never gated: no tolerance declared
    assert "Δ vs REF" in (toy.path / "out" / "latest" / "index.html").read_text()
    assert any("test_fit_quality[smoke]" in line and line.rstrip().endswith("-0.05 REGRESSED")
               for line in second.outlines)

    # 3. the gate, judged where each test ran (-n 2), against the baseline's run id
    gated = _session(toy, "--compare-to", parent_id, "--fail-on-regression", *N2, env=shifted)
    gated.assert_outcomes(passed=4, failed=2)
    out = gated.stdout.str()
    assert (f"expspec: regression: R2 regressed: 0.9 now vs 0.95 in run {parent_id[:12]}" in out
            and "(Δ -0.05; higher is better, tolerance 0.01)" in out)
    failures = out.split("= FAILURES =")[1].split("expspec criteria")[0]
    assert "test_fit_quality" in failures and "test_peak_first_acc" not in failures

    # an unknown reference: named, the nearest sessions listed, nothing written
    folders = sorted(p.name for p in (toy.path / "out").iterdir())
    refused = _session(toy, "--compare-to", "no-such-run")
    assert refused.ret != 0 and sorted(p.name for p in (toy.path / "out").iterdir()) == folders
    err = refused.stderr.str()
    assert "--compare-to 'no-such-run': no run id, session or git commit of that name in sqlite:///" in err
    assert "nearest: run " in err and "(session 2" in err

    # `expspec history` from the same store, newest first
    from expspec.kernels.cli import main

    uri = f"sqlite:///{toy.path / 'out' / 'mlflow.db'}"
    capsys.readouterr()
    assert main(["history", "--tracking-uri", uri, "--family", "toy", "--metric", "R2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "expspec/toy: last 3 session(s), newest first"
    assert lines[-1].split() == ["test_fit_quality[smoke]", "R2", "0.9", "0.9", "0.95"]
    assert main(["history", "--tracking-uri", uri, "--metric", "pass_at_*", "--last", "1"]) == 0
    assert "base pass_at_k/pass_at_8" in capsys.readouterr().out
    assert main(["history", "--tracking-uri", uri, "--family", "nope"]) == 2
    assert "--family 'nope': no sessions in" in capsys.readouterr().err
    missing = toy.path / "none.db"
    assert main(["history", "--tracking-uri", f"sqlite:///{missing}"]) == 2
    assert "no such file" in capsys.readouterr().err and not missing.exists()


@pytest.mark.parametrize("args,message", [
    (["--tracking-uri", "http://127.0.0.1:9"], "tracking server http://127.0.0.1:9: unreachable"),
    (["--tracking-uri", "ftp://host/x"], "tracking store ftp://host/x: unknown scheme 'ftp'"),
    (["--fail-on-regression"], "--fail-on-regression: needs --compare-to REF"),
    (["--no-tracking", "--compare-to", "previous"], "--compare-to previous: needs tracking"),
])
def test_bad_tracking_options_fail_in_one_line_and_write_nothing(toy, args, message):
    result = _session(toy, *args)
    assert result.ret != 0 and message in result.stderr.str()
    assert len([line for line in result.stderr.lines if line.strip()]) == 1
    assert not (toy.path / "out").exists()


def test_optional_tracking_warns_once_and_runs(toy):
    result = _session(toy, "--tracking-uri", "http://127.0.0.1:9", "--tracking=optional")
    result.assert_outcomes(passed=5, failed=1)
    assert result.stdout.str().count("unreachable") == 1 and "running without tracking" in result.stdout.str()
    assert not (toy.path / "out" / "mlflow.db").exists()


@pytest.mark.parametrize("content,message", [
    (b"this is not a database\n", "is not an SQLite database (left as it is"),
    ("sqlite-other", "an SQLite database but not an MLflow store (tables: notes)"),
])
def test_a_corrupt_store_is_reported_never_overwritten(toy, content, message):
    store = toy.path / "out" / "mlflow.db"
    store.parent.mkdir()
    if content == "sqlite-other":
        import sqlite3

        with sqlite3.connect(store) as con:
            con.execute("CREATE TABLE notes (x)")
        con.close()
    else:
        store.write_bytes(content)
    before = store.read_bytes()
    result = _session(toy)
    assert result.ret != 0 and message in result.stderr.str()
    assert store.read_bytes() == before and sorted(p.name for p in store.parent.iterdir()) == ["mlflow.db"]


def test_cli_pipeline_command_is_a_run(tmp_path, capsys):
    from expspec.kernels.cli import main

    cal = tmp_path / "calibration.json"
    cal.write_text(json.dumps({"points": [{"tokens": d, "value": 1.0 + 20.0 * d ** -0.3} for d in (1e6, 4e6, 1.6e7)]}))
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    argv = ["lane-b", "infer", "--alpha", "0.3", "--calibration", str(cal), "--threshold", "1.5",
            "--n-scaling-params", "1e6", "--tracking-uri", uri, "--tracking", "required"]
    # bad input: one line, nothing in the store (not even the file)
    assert main(argv + ["--calibration", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "store").exists()
    assert main(argv + ["--out", str(tmp_path / "infer.json")]) == 0
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("expspec/lane_b").experiment_id])
    infer = json.loads((tmp_path / "infer.json").read_text())
    assert run.data.tags["expspec.kind"] == "command" and run.data.tags["expspec.exit_status"] == "0"
    assert run.info.run_name == "expspec lane-b infer" and run.info.status == "FINISHED"
    assert run.data.params["lane_b.alpha_min"] == "0.2" and run.data.params["scale"] == "smoke"
    assert run.data.metrics["inferred_target_tokens"] == pytest.approx(infer["inferred_target_tokens"])
    assert [a.path for a in client.list_artifacts(run.info.run_id, "outputs")] == ["outputs/infer.json"]
    assert main(argv[:-4] + ["--no-tracking", "--out", str(tmp_path / "again.json")]) == 0
    assert len(client.search_runs([run.info.experiment_id])) == 1
    assert main(argv[:-4] + ["--tracking-uri", "http://127.0.0.1:9", "--tracking", "required",
                             "--out", str(tmp_path / "y.json")]) == 2
    assert "tracking server http://127.0.0.1:9: unreachable" in capsys.readouterr().err
    assert not (tmp_path / "y.json").exists()  # checked before the command ran


def test_cli_command_logs_the_curves_of_the_runs_in_its_work_dir(tmp_path):
    """A command that trains leaves one log per run in its work dir; each becomes curves named
    by its run folder, equal to what the trainer's own log parser reads."""
    from argparse import Namespace

    from expspec.kernels.tracking.command import run_tracked
    from expspec.kernels.train.training_log import parse_training_log

    work, log = tmp_path / "work", "tests/data/nanochat_2026_bf16_mfu.log"

    def run_all(_args):  # what a pipeline leaves behind: runs/<id>/train.log and a summary
        for run in ("b-1", "b-2"):
            (work / "runs" / run).mkdir(parents=True)
            shutil.copy(log, work / "runs" / run / "train.log")
        (work / "summary.json").write_text('{"chosen_ratio": 20.5, "lane_b_decision": "inferred"}')
        return 0

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = Namespace(command="lane-b", func=run_all, scale="smoke", profile=None, set=[], work_dir=str(work),
                     tracking_uri=uri, tracking="required", no_tracking=False)
    assert run_tracked(args, ["lane-b", "run-all", "--work-dir", str(work)]) == 0
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("expspec/lane_b").experiment_id])
    assert run.data.metrics["chosen_ratio"] == 20.5 and run.data.tags["expspec.kind"] == "command"
    evals = parse_training_log(log).evals
    for name in ("runs/b-1/eval/val_bpb", "runs/b-2/eval/val_bpb"):
        assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)] == evals
    assert {"runs/b-1/train/loss", "runs/b-1/train/tok/sec"} <= set(run.data.metrics)
    assert [a.path for a in client.list_artifacts(run.info.run_id, "outputs")] == ["outputs/summary.json"]


# ---- the pure parts ----------------------------------------------------------------------

def test_metrics_read_from_what_a_criterion_recorded():
    rec = record_from_properties("experiments/test_x.py::test_a[smoke]", "passed", 0.1, [
        ("alpha", "0.3124 [0.2800, 0.3500]"), ("gamma (offset-free | offset)", "0.41 | 0.44"),
        ("base pass@k", "pass@1=0.120, pass@8=0.400"), ("baseline min_val_bpb", {"42": 1.25, "43": 1.5}),
        ("peak step", 150), ("tokenizer", "bpe:512"), ("flag", True), ("errors", {"log mean": "1.2e-12"}),
        ("metric:measured", 0.5), ("measured", "alpha=0.3124 (beta=0.52, gamma=0.41)")])
    assert criterion_metrics(rec) == {
        "measured": 0.5, "alpha": 0.3124, "gamma _offset-free": 0.41,
        "base pass_at_k/pass_at_1": 0.12, "base pass_at_k/pass_at_8": 0.4, "baseline min_val_bpb/42": 1.25,
        "baseline min_val_bpb/43": 1.5, "peak step": 150.0, "errors/log mean": 1.2e-12, "beta": 0.52, "gamma": 0.41}


@pytest.mark.parametrize("raw", ["pass@1", "a//b", "/lead", "x/../y", "R²", "L=16: test R2 | base", "a/./b"])
def test_metric_names_are_names_mlflow_accepts(raw):
    from mlflow.utils.validation import _validate_metric_name

    _validate_metric_name(metric_name(raw))


@pytest.mark.parametrize("direction,tol,ref,now,regressed", [
    ("higher", 0.01, 0.95, 0.945, False), ("higher", 0.01, 0.95, 0.93, True), ("higher", 0.01, 0.95, 2.0, False),
    ("lower", "10%", 100.0, 109.0, False), ("lower", "10%", 100.0, 111.0, True), ("lower", "10%", 100.0, 1.0, False),
    ("both", 0.1, 0.5, 0.35, True), ("both", 0.1, 0.5, 0.65, True), ("both", 0.1, 0.5, 0.55, False),
    ("higher", 0.0, 0.5, float("nan"), True), ("higher", 0.0, float("nan"), float("nan"), False),
])
def test_a_regression_is_a_move_past_the_tolerance_in_the_bad_direction(direction, tol, ref, now, regressed):
    assert Change("m", ref, now, parse_tolerance("m", direction, tol)).regressed is regressed


def test_a_measured_text_that_starts_with_a_number_is_the_measured_metric():
    rec = record_from_properties("t", "passed", 0, [("L=16: test R2 | baseline | ceiling", "0.12 | 0.0 | 0.3"),
                                                    ("measured", "0.912345 (env 0.912345)")])
    assert criterion_metrics(rec) == {"L_16: test R2": 0.12, "measured": 0.912345}
    rec.tolerances["L_*: test R2"] = "higher 0.05"
    from expspec.kernels.tracking.metrics import compare

    (change,) = [c for c in compare(rec, {"run_id": "r", "metrics": {"L_16: test R2": 0.2}}, "ref").changes
                 if c.name == "L_16: test R2"]
    assert change.regressed and "tolerance 0.05" in change.describe("ref")  # declared by a glob


def test_a_bad_tolerance_declaration_names_the_metric():
    from expspec.kernels.errors import ExpspecError

    with pytest.raises(ExpspecError, match="tolerance of metric 'R2': direction 'up', expected one of higher"):
        parse_tolerance("R2", "up", 0.1)
    with pytest.raises(ExpspecError, match="tolerance of metric 'R2': 'lots', expected a number >= 0"):
        parse_tolerance("R2", "higher", "lots")


def test_step_curves_of_the_trainers_text_log_and_of_other_files(tmp_path):
    curves = step_curves("tests/data/nanochat_2026_bf16_mfu.log")
    assert {"train/loss", "train/dt_ms", "train/tok/sec", "eval/val_bpb"} <= set(curves)
    steps = [s for s, _ in curves["train/loss"]]
    assert steps == sorted(steps) and len(steps) > 1
    (tmp_path / "rows.jsonl").write_text('{"question": "q", "prediction": "a"}\n')
    (tmp_path / "stats.json").write_text('{\n  "alpha": 0.3\n}\n')
    assert step_curves(tmp_path / "rows.jsonl") == {} and step_curves(tmp_path / "stats.json") == {}
