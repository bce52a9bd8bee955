"""Unit tests of the nanochat training-log parser on hand-written logs in tests/data.

The samples follow nanochat's base_train print formats of two vintages: Oct 2025
(``mfu:``, 4-decimal bpb) and 2026 (``bf16_mfu:``, ``epoch: ... pq: ... rg: ...``,
``| eta:``, a ``Parameter counts:`` table, 6-decimal bpb).
"""

from pathlib import Path

import pytest

from expspec.kernels.errors import ExpspecError
from expspec.kernels.train.training_log import parse_training_log

DATA = Path(__file__).parent / "data"


def test_2025_vintage_with_mfu_field():
    log = parse_training_log(DATA / "nanochat_2025_mfu.log")
    assert log.evals == [(0, 3.3), (20, 1.2685), (40, 1.1097), (60, 1.0306)]
    assert log.min_val_bpb == 1.0306 and log.min_val_bpb_source == "line"
    assert log.total_batch_size == 524_288 and log.grad_accum_steps == 1
    assert log.num_iterations == 60 and log.steps == 60 and log.last_step == 59
    assert 1_035_000 < log.tok_per_sec_median < 1_046_000  # thousands separators read
    assert 500 < log.dt_median_ms < 508  # the 21.8 s compile step is not the median
    assert log.restarts == 0 and log.n_scaling_params == 0  # that vintage printed no counts
    assert log.eval_train_times[0] == 0.0 and log.eval_train_times[-1] == log.train_time_sec


def test_2026_vintage_with_bf16_mfu_epoch_and_eta():
    log = parse_training_log(DATA / "nanochat_2026_bf16_mfu.log")
    assert [s for s, _ in log.evals] == [0, 30, 60, 90]
    assert log.min_val_bpb == pytest.approx(0.929155)
    assert log.total_batch_size == 1_048_576 and log.grad_accum_steps == 2
    assert log.num_iterations == 90 and log.steps == 90
    assert 990 < log.dt_median_ms < 1005
    assert log.n_scaling_params == 679_477_248 + 50_331_648  # transformer_matrices + lm_head


def test_appended_after_restart_keeps_only_the_latest_attempt():
    log = parse_training_log(DATA / "nanochat_appended_restart.log")
    assert log.restarts == 1
    assert [s for s, _ in log.evals] == [0, 20, 40, 60]  # not 0, 20, 0, 20, 40, 60
    assert log.steps == 60 and log.last_step == 59  # steps 0..37 of the crashed attempt dropped
    steps_seen = [s for s, _ in log.evals]
    assert steps_seen == sorted(steps_seen)


def test_resume_from_a_later_step_keeps_the_earlier_history(tmp_path):
    lines = (DATA / "nanochat_2025_mfu.log").read_text().splitlines()
    cut = next(i for i, line in enumerate(lines) if line.startswith("step 00045/"))
    resume_at = next(i for i, line in enumerate(lines) if line.startswith("step 00040/"))
    # crashed after step 45, resumed from a step-40 checkpoint (eval at 40 re-run)
    text = lines[:cut + 1] + ["Resuming optimization from step 40"] + lines[resume_at - 1:]
    (tmp_path / "resumed.log").write_text("\n".join(text) + "\n")
    log = parse_training_log(tmp_path / "resumed.log")
    assert log.restarts == 1
    assert [s for s, _ in log.evals] == [0, 20, 40, 60]
    assert log.steps == 60


def test_time_to_target_is_scored_from_the_log():
    log = parse_training_log(DATA / "nanochat_2026_bf16_mfu.log")
    hit = log.time_to_target_for(1.0)
    (s0, v0), (s1, v1) = log.evals[1], log.evals[2]  # the evals bracketing 1.0
    assert v0 > 1.0 >= v1 and s1 == 60
    assert hit.method == "measured" and hit.crossing_step == pytest.approx(s0 + (1.0 - v0) / (v1 - v0) * (s1 - s0))
    assert hit.score_sec == pytest.approx(hit.crossing_step * log.dt_median_ms / 1000)
    assert hit.measured_sec == pytest.approx(log.eval_train_times[2])
    miss = log.time_to_target_for(0.9)
    assert miss.method == "extrapolated:power_law" and miss.crossing_step > 90
    assert not miss.reached_within_horizon


@pytest.mark.parametrize("name, needle", [
    ("nanochat_corrupt.log", "line 64: malformed training step line"),
    ("nanochat_truncated.log", "no 'Step N | Validation bpb: X' line"),
    ("no_such.log", "file not found"),
])
def test_bad_logs_are_one_line_errors_naming_the_file(name, needle):
    with pytest.raises(ExpspecError) as err:
        parse_training_log(DATA / name)
    message = str(err.value)
    assert needle in message and name in message and "\n" not in message


def test_empty_binary_and_truncated_tail(tmp_path):
    (tmp_path / "empty.log").write_text("\n  \n")
    with pytest.raises(ExpspecError, match="empty file"):
        parse_training_log(tmp_path / "empty.log")
    (tmp_path / "bin.log").write_bytes(b"step 00001\x00\x00\xff")
    with pytest.raises(ExpspecError, match="not a text log"):
        parse_training_log(tmp_path / "bin.log")
    # a log cut mid-line while the job was still writing: the partial last line is ignored
    text = (DATA / "nanochat_2025_mfu.log").read_text()
    cut = text.index("step 00045/") + 40
    (tmp_path / "live.log").write_text(text[:cut])
    log = parse_training_log(tmp_path / "live.log")
    assert log.last_step == 44 and [s for s, _ in log.evals] == [0, 20, 40]
    assert log.min_val_bpb_source == "evals" and log.notes


def test_no_step_lines_is_an_error(tmp_path):
    (tmp_path / "evals_only.log").write_text("Step 00000 | Validation bpb: 3.3\n")
    with pytest.raises(ExpspecError, match="no training step lines"):
        parse_training_log(tmp_path / "evals_only.log")


def test_a_nan_loss_line_marks_the_run_failed(tmp_path):
    log = tmp_path / "nan.log"
    log.write_text(
        "Total batch size 524,288 => gradient accumulation steps: 1\n"
        "Step 00000 | Validation bpb: 3.000000\n"
        "step 00000/00003 (0.00%) | loss: 9.000000 | lrm: 1.00 | dt: 10.00ms | tok/sec: 1,000 | mfu: 1.00 | total time: 0.00m\n"
        "step 00001/00003 (33.33%) | loss: nan | lrm: 1.00 | dt: 10.00ms | tok/sec: 1,000 | mfu: 1.00 | total time: 0.00m\n"
        "step 00002/00003 (66.67%) | loss: nan | lrm: 1.00 | dt: 10.00ms | tok/sec: 1,000 | mfu: 1.00 | total time: 0.00m\n"
        "Step 00003 | Validation bpb: nan\n")
    assert parse_training_log(log).failed_at_step == 1
