"""Lane B's fixed 21-column log, lane_b_inference_schema.csv (run guide step 7).

The columns and their order are the worksheet's; extra diagnostics go into ``notes``
as key=value pairs. Appends go through the core's locked, atomic CSV writer
(kernels/tables.py), so concurrent writers never tear or duplicate a row; numeric
columns are checked before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from expspec.kernels.errors import ExpspecError
from expspec.kernels.tables import append_csv_rows, read_csv_rows

COLUMNS = (
    "timestamp_utc", "git_commit", "run_id", "seed", "dataset_id", "target_metric_name",
    "target_metric_threshold", "n_scaling_params", "inferred_data_scaling_exponent",
    "inferred_target_tokens", "inferred_target_param_data_ratio", "confirmation_ratio",
    "chosen_ratio", "lane_b_decision", "time_to_target_sec_measured",
    "time_to_target_sec_extrapolated", "min_val_bpb", "tok_per_sec_median", "dt_median_ms",
    "status", "notes",
)
INT_COLUMNS = {"seed", "n_scaling_params"}
FLOAT_COLUMNS = {
    "target_metric_threshold", "inferred_data_scaling_exponent", "inferred_target_tokens",
    "inferred_target_param_data_ratio", "confirmation_ratio", "chosen_ratio",
    "time_to_target_sec_measured", "time_to_target_sec_extrapolated", "min_val_bpb",
    "tok_per_sec_median", "dt_median_ms",
}
KEY_COLUMN = "run_id"


def _parse_number(path: Path, where: str, name: str, value: Any) -> int | float | None:
    """The typed value of a numeric cell (None when empty); an error names the cell."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        if name in INT_COLUMNS:
            if isinstance(value, float):
                raise ValueError
            return int(value)
        return float(value)
    except (TypeError, ValueError, OverflowError):
        kind = "an integer" if name in INT_COLUMNS else "a number"
        raise ExpspecError(f"{path} {where}: {name}={value!r} is not {kind}") from None


def append_rows(path: str | Path, rows: Iterable[Mapping[str, Any]],
                skip_existing_run_ids: bool = True) -> int:
    """Append Lane B rows to lane_b_inference_schema.csv; returns the number written.

    Numeric columns must hold numbers (or be empty); a bad one is an error naming it.
    """
    rows = list(rows)
    for number, row in enumerate(rows):
        for name in INT_COLUMNS | FLOAT_COLUMNS:
            if isinstance(row, Mapping) and name in row:
                _parse_number(Path(path), f"row {number}", name, row[name])
    return append_csv_rows(path, COLUMNS, rows, key=KEY_COLUMN, skip_existing=skip_existing_run_ids)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Lane B rows with numbers parsed (int / float; empty cells as None)."""
    out = []
    for line, row in enumerate(read_csv_rows(path, COLUMNS), start=2):
        typed = dict(row)
        for name in INT_COLUMNS | FLOAT_COLUMNS:
            typed[name] = _parse_number(Path(path), f"row {line}", name, row[name])
        out.append(typed)
    return out
