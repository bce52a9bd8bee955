"""Unit tests of the locked, atomic CSV appends (kernels/tables.py) and Lane B's 21-column schema."""

import math
import multiprocessing

import numpy as np
import pytest

from expspec.kernels.errors import ExpspecError
from expspec.kernels.lane_b.schema import COLUMNS, append_rows, read_rows
from expspec.kernels.tables import append_csv_rows, format_notes, parse_notes, read_csv_rows


def lane_b_row(run_id: str, **extra) -> dict:
    row = {"timestamp_utc": "2026-01-02T03:04:05Z", "git_commit": "abc1234", "run_id": run_id,
           "seed": 42, "dataset_id": "austen", "target_metric_name": "val_bpb",
           "target_metric_threshold": 1.25, "n_scaling_params": 1_048_576,
           "time_to_target_sec_measured": float("nan"), "time_to_target_sec_extrapolated": math.inf,
           "min_val_bpb": 1.2345678901234567, "status": "ok",
           "notes": format_notes({"fit": "power_law", "k": 4})}
    row.update(extra)
    return row


def test_schema_has_the_21_columns_in_order():
    assert len(COLUMNS) == 21
    assert COLUMNS[:3] == ("timestamp_utc", "git_commit", "run_id")
    assert COLUMNS[-3:] == ("dt_median_ms", "status", "notes")


def test_append_and_read_round_trip_numbers_exactly(tmp_path):
    path = tmp_path / "lane_b_inference_schema.csv"
    assert append_rows(path, [lane_b_row("r1", dt_median_ms=np.float64(338.25)), lane_b_row("r2", seed=43)]) == 2
    rows = read_rows(path)
    assert [r["run_id"] for r in rows] == ["r1", "r2"]
    first = rows[0]
    assert first["seed"] == 42 and first["n_scaling_params"] == 1_048_576
    assert first["min_val_bpb"] == 1.2345678901234567  # repr round-trips a float
    assert math.isnan(first["time_to_target_sec_measured"])
    assert first["time_to_target_sec_extrapolated"] == math.inf
    assert first["dt_median_ms"] == 338.25  # a numpy float is written as a plain number
    assert first["chosen_ratio"] is None  # absent column -> empty cell
    assert parse_notes(first["notes"]) == {"fit": "power_law", "k": "4"}
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)


def test_existing_run_ids_are_skipped_unless_asked(tmp_path):
    path = tmp_path / "t.csv"
    append_rows(path, [lane_b_row("r1")])
    assert append_rows(path, [lane_b_row("r1"), lane_b_row("r2"), lane_b_row("r2")]) == 1
    assert [r["run_id"] for r in read_rows(path)] == ["r1", "r2"]
    assert append_rows(path, [lane_b_row("r1")], skip_existing_run_ids=False) == 1
    assert len(read_rows(path)) == 3


def test_unknown_key_is_refused_naming_it_and_nothing_is_written(tmp_path):
    path = tmp_path / "t.csv"
    with pytest.raises(ExpspecError, match="'r_squared'") as err:
        append_rows(path, [lane_b_row("r1"), lane_b_row("r2", r_squared=0.9)])
    assert "notes" in str(err.value)
    assert not path.exists()


def test_a_file_with_another_header_is_refused_untouched(tmp_path):
    path = tmp_path / "t.csv"
    old = "timestamp_utc,git_commit,run,seed\nx,y,z,1\n"
    path.write_text(old)
    with pytest.raises(ExpspecError, match="column 3: found 'run', expected 'run_id'"):
        append_rows(path, [lane_b_row("r1")])
    assert path.read_text() == old


def test_non_numbers_in_numeric_columns_are_refused(tmp_path):
    path = tmp_path / "t.csv"
    with pytest.raises(ExpspecError, match="row 1: seed=4.5 is not an integer"):
        append_rows(path, [lane_b_row("r1"), lane_b_row("r2", seed=4.5)])
    with pytest.raises(ExpspecError, match="min_val_bpb='low' is not a number"):
        append_rows(path, [lane_b_row("r1", min_val_bpb="low")])
    assert not path.exists()


def test_read_validation_names_row_and_column(tmp_path):
    path = tmp_path / "t.csv"
    append_rows(path, [lane_b_row("r1")])
    text = path.read_text().replace(",42,", ",forty-two,")
    path.write_text(text)
    with pytest.raises(ExpspecError, match="row 2: seed='forty-two' is not an integer"):
        read_rows(path)
    path.write_text(text.splitlines()[0] + "\na,b,c\n")
    with pytest.raises(ExpspecError, match="row 2: 3 fields, expected 21"):
        read_rows(path)


def test_generic_appender_serves_other_schemas(tmp_path):
    path = tmp_path / "candidates.csv"
    assert append_csv_rows(path, ["id", "ratio", "ok"], [{"id": "a", "ratio": 10.5, "ok": True}], key="id") == 1
    assert append_csv_rows(path, ["id", "ratio", "ok"], [{"id": "a"}, {"id": "b"}], key="id") == 1
    assert read_csv_rows(path, ["id", "ratio", "ok"]) == [
        {"id": "a", "ratio": "10.5", "ok": "true"}, {"id": "b", "ratio": "", "ok": ""}]
    assert append_csv_rows(path, ["id", "ratio", "ok"], [{"id": "a"}]) == 1  # key=None: no skipping


def test_notes_format_quotes_and_inverts():
    text = format_notes({"why": "warmdown; early", "r2": 0.5, "flag": True})
    assert text == "why=warmdown, early; r2=0.5; flag=true"
    assert parse_notes(text) == {"why": "warmdown, early", "r2": "0.5", "flag": "true"}
    with pytest.raises(ExpspecError, match="notes key"):
        format_notes({"a=b": 1})


def _writer(path: str, worker: int, n: int) -> None:
    for i in range(n):
        append_rows(path, [lane_b_row(f"w{worker}-{i:03d}", seed=worker,
                                      notes=f"line one\nline two, \"quoted\" {i}")])


def test_concurrent_writer_processes_never_tear_or_lose_rows(tmp_path):
    path = tmp_path / "lane_b_inference_schema.csv"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 100)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = read_rows(path)
    assert len(rows) == 800
    assert len({r["run_id"] for r in rows}) == 800
    for r in rows:
        worker, i = r["run_id"][1:].split("-")
        assert r["seed"] == int(worker) and r["notes"] == f"line one\nline two, \"quoted\" {int(i)}"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
