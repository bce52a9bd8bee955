"""Hero's diagnostics: strict records, `expspec hero analyze` on ours and the original's lines,
the epoch log, and `expspec hero monitor` on a growing log."""

import json
import threading
import time

import pytest

from expspec.kernels.cli import main
from expspec.kernels.errors import ExpspecError
from expspec.kernels.hero.diagnostics import (analyze_diagnostics, append_epoch_record, append_step_record,
                                              check_step_record, f1_in_line, first_token_histogram, follow_log,
                                              read_epoch_diagnostics, token_diversity)

# first_acc of stage B's eval curve: rises, peaks at step 30, regresses to 0.15 (25% below the peak)
CURVE = [(0, 0.0), (10, 0.0), (20, 0.1), (30, 0.2), (40, 0.18), (50, 0.15)]


def _record(step, acc, **over):
    record = {"epoch": step // 20, "global_step": step, "stage": "B", "mode": "eval", "first_acc": acc,
              "first_acc_top5": min(1.0, acc * 2), "first": 2.5, "kce": 3.0, "kd": None,
              "grad_norm": 10.0 + step, "lr": 5e-5, "sec_per_step": 0.4, "answer_length_avg": 1.5,
              "token_diversity": 4}
    record.update(over)
    return record


@pytest.fixture
def ours(tmp_path):
    path = tmp_path / "diagnostics.jsonl"
    for step, acc in CURVE:
        append_step_record(path, _record(step, acc))
    append_step_record(path, _record(50, 0.9, mode="train", grad_norm=float("inf")))  # another series
    return path


@pytest.fixture
def original(tmp_path):
    path = tmp_path / "original.jsonl"
    lines = [{"epoch": 0, "global_step": s, "models": {"llama": {"first_acc": a, "grad_norm": 100.0 + s},
                                                       "qwen": {"first_acc": a / 2}}, "grad_norm": 7.0}
             for s, a in CURVE]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _expected_b_curve(summary):
    assert summary["peak_first_acc"] == 0.2 and summary["peak_step"] == 30
    assert summary["final_first_acc"] == 0.15 and summary["final_step"] == 50
    assert summary["regression_from_peak_pct"] == pytest.approx(25.0)
    assert summary["final_over_peak"] == pytest.approx(0.75)
    assert [b["step"] for b in summary["breakthrough_steps"]] == [20, 30]  # first > 0, then the new peak


def test_analyze_our_format_groups_by_stage_and_mode(ours):
    result = analyze_diagnostics(ours)
    assert result["format"] == "expspec" and set(result["series"]) == {"B/eval", "B/train"}
    _expected_b_curve(result["series"]["B/eval"])
    assert result["series"]["B/eval"]["max_grad_norm"] == 60.0
    assert result["series"]["B/train"]["max_grad_norm"] == float("inf")  # a blow-up stays visible


def test_analyze_cli_reads_the_original_models_lines(original, tmp_path, capsys):
    out = tmp_path / "summary.json"
    assert main(["hero", "analyze", str(original), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["format"] == "original" and set(printed["series"]) == {"llama", "qwen"}
    _expected_b_curve(printed["series"]["llama"])
    assert printed["series"]["llama"]["max_grad_norm"] == 150.0  # the model's own norm
    assert printed["series"]["qwen"]["max_grad_norm"] == 7.0  # else the line's
    checks = printed["series"]["llama"]["checks"]  # smoke thresholds: peak >= 0.12, final >= 80% of peak
    assert checks["peak_first_acc"]["passed"] and not checks["final_over_peak"]["passed"]
    assert checks["max_grad_norm"]["passed"]


def test_analyze_cli_on_our_format(ours, capsys):
    assert main(["hero", "analyze", str(ours), "--set", "hero.min_final_over_peak=0.7"]) == 0
    series = json.loads(capsys.readouterr().out)["series"]
    _expected_b_curve(series["B/eval"])
    assert series["B/eval"]["checks"]["final_over_peak"]["passed"]
    assert not series["B/train"]["checks"]["max_grad_norm"]["passed"]


@pytest.mark.parametrize("line, message", [
    ("not json", ":2: not a JSON object"),
    (json.dumps(_record(60, 1.5)), ":2: field first_acc: expected a number in [0, 1], got 1.5"),
    (json.dumps({k: v for k, v in _record(60, 0.1).items() if k != "lr"}), ":2: field lr: missing"),
    (json.dumps(_record(60, 0.1, global_step=-1)), ":2: field global_step: expected an integer >= 0"),
    (json.dumps(_record(60, 0.1, grad_norm="big")), ":2: field grad_norm: expected a number >= 0"),
    (json.dumps({"global_step": 3, "models": {"m": {"acc": 0.1}}}), ":2: field models.m.first_acc: expected"),
    (json.dumps({"models": {"m": {"first_acc": 0.1}}}), ":2: field global_step: expected"),
])
def test_malformed_lines_name_file_line_and_field(tmp_path, capsys, line, message):
    path = tmp_path / "diagnostics.jsonl"
    path.write_text(json.dumps(_record(0, 0.0)) + "\n" + line + "\n")
    out = tmp_path / "summary.json"
    assert main(["hero", "analyze", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"diagnostics.jsonl{message}" in err
    assert not out.exists()


def test_writers_check_before_appending(tmp_path):
    path = tmp_path / "d.jsonl"
    with pytest.raises(ExpspecError, match="field token_diversity: expected an integer"):
        append_step_record(path, _record(0, 0.0, token_diversity=2.5))
    assert not path.exists()
    assert check_step_record(_record(0, 0.0, grad_norm="nan"))["grad_norm"] != 0  # NaN, readable


def test_epoch_records_round_trip_and_are_checked(tmp_path):
    path = tmp_path / "diagnostics_epoch.jsonl"
    samples = [{"question": "Which city does Ana live in?", "prediction": "Paris", "gold": ["Paris"]}] * 5
    append_epoch_record(path, {"epoch": 0, "stage": "A", "samples": samples,
                               "first_token_histogram": first_token_histogram([" Paris", " the", " Paris"]),
                               "loss_breakdown": {"first": 2.0, "kce": 3.0, "kd": None}})
    (record,) = read_epoch_diagnostics(path)
    assert record["first_token_histogram"] == {" Paris": 2, " the": 1} and len(record["samples"]) == 5
    with open(path, "a") as handle:
        handle.write(json.dumps({"epoch": 1, "stage": "A", "samples": [{"question": "q"}],
                                 "first_token_histogram": {}, "loss_breakdown": {}}) + "\n")
    with pytest.raises(ExpspecError, match=r"diagnostics_epoch.jsonl:2: field samples: expected a list"):
        read_epoch_diagnostics(path)


def test_token_diversity_counts_unique_tokens_of_the_first_predictions():
    assert token_diversity([[5], [5], [5]]) == 1  # collapsed onto one token
    assert token_diversity([[1, 2], [2, 3]] + [[9]] * 20, first_n=2) == 3


def test_f1_in_line_reads_the_common_log_forms():
    assert f1_in_line("epoch 3 | eval em=0.0 f1=0.125 |") == 0.125
    assert f1_in_line('{"exact_match": 0.0, "f1": 12.5}') == 12.5
    assert f1_in_line("mean_f1: 0.02, F1: 0.5") == 0.5
    assert f1_in_line("first_f1_nonzero_idx: 3") is None and f1_in_line("loss 2.0") is None


def test_follow_log_sees_appended_lines_and_a_restart(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("step 1 f1=0\npartial")
    clock = iter(range(1000))
    lines = []

    def sleep(_):
        if len(lines) == 1 and log.read_text().startswith("step 1"):
            log.write_text("step 1 f1=0\npartial line f1=0.5\n")  # the partial line completes
        elif len(lines) == 2:
            log.write_text("new\n")  # truncated: a restarted run
    for item in follow_log(log, poll_s=0, idle_timeout_s=5, sleep=sleep, clock=lambda: next(clock)):
        lines.append(item)
    assert lines == [(1, "step 1 f1=0"), (2, "partial line f1=0.5"), (1, "new")]


def test_monitor_cli_prints_the_first_nonzero_f1(tmp_path, capsys):
    log = tmp_path / "train.log"
    log.write_text("epoch 0 eval f1=0.0\n")

    def grow():
        time.sleep(0.3)
        with open(log, "a") as handle:
            handle.write("epoch 1 eval f1=0.031\n")
    writer = threading.Thread(target=grow)
    writer.start()
    rc = main(["hero", "monitor", str(log), "--once", "--poll", "0.05", "--idle-timeout", "10"])
    writer.join()
    assert rc == 0 and capsys.readouterr().out == f"{log}:2: F1 0.031 > 0: epoch 1 eval f1=0.031\n"
    assert main(["hero", "monitor", str(log), "--poll", "0.01", "--idle-timeout", "0.05"]) == 0  # seen again
    log.write_text("f1=0\n")
    assert main(["hero", "monitor", str(log), "--poll", "0.01", "--idle-timeout", "0.05"]) == 1
    assert "no F1 > 0" in capsys.readouterr().err
