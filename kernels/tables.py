"""Result tables as CSV: locked, atomic appends that never tear or duplicate a row.

Why: several processes (xdist workers, torchrun jobs, a person re-running one seed)
append to the same results file, and a results file is only useful if every row is
whole and every run appears once. So each append takes a lock (``filelock`` on
``path + ".lock"``), reads the current file, writes the full new content to a temp
file in the same directory and ``os.replace``-s it over the old one: a reader sees the
old file or the new one, never half a row. A file whose header differs from the
schema is refused (nothing written): mixing schemas silently misaligns columns.
"""

from __future__ import annotations

import csv
import glob
import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from expspec.kernels.atomic_io import write_text_atomic
from expspec.kernels.errors import ExpspecError

LOCK_POLL_SEC = 0.005


def utc_timestamp() -> str:
    """The timestamp_utc form: ISO 8601, seconds, 'Z'."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_notes(extra: Mapping[str, Any]) -> str:
    """``{"fit": "power_law", "r2": 0.98}`` -> ``"fit=power_law; r2=0.98"`` (parse_notes inverts)."""
    parts = []
    for key, value in extra.items():
        key = str(key)
        if not key or any(c in key for c in "=;") or key != key.strip():
            raise ExpspecError(f"notes key {key!r}: must be non-empty, without '=', ';' or edge spaces")
        parts.append(f"{key}={_cell(value).replace(';', ',')}")
    return "; ".join(parts)


def parse_notes(notes: str) -> dict[str, str]:
    """Inverse of ``format_notes`` (values come back as strings); free text is skipped."""
    out = {}
    for part in notes.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key:
            out[key] = value
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(float(value))  # round-trips exactly (numpy floats too); nan, inf
    if isinstance(value, Mapping):
        return format_notes(value)
    return str(value)


def _check_header(path: Path, found: Sequence[str], columns: Sequence[str]) -> None:
    for i in range(max(len(found), len(columns))):
        have = found[i] if i < len(found) else "<missing>"
        want = columns[i] if i < len(columns) else "<none>"
        if have != want:
            raise ExpspecError(
                f"{path}: header differs from the {len(columns)}-column schema at column {i + 1}: "
                f"found {have!r}, expected {want!r}; nothing written (move the old file away)"
            )


def append_csv_rows(path: str | Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]],
                    key: str | None = None, skip_existing: bool = True, replace_existing: bool = False) -> int:
    """Append dict rows under ``columns``; returns the number written.

    A key missing from ``columns`` is an error naming it; absent columns are written
    empty. With ``key``, rows whose key value is already in the file (or earlier in
    ``rows``) are skipped unless ``skip_existing`` is false; with ``replace_existing`` they
    replace the stored row in place instead (a table of current scores, not a log).
    """
    from filelock import FileLock

    path, columns = Path(path), list(columns)
    if key is not None and key not in columns:
        raise ExpspecError(f"{path}: key column {key!r} is not one of the columns")
    prepared = []
    for number, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ExpspecError(f"{path}: row {number} must be a dict of column -> value")
        for name in row:
            if name not in columns:
                raise ExpspecError(f"{path}: row {number}: unknown column {name!r}; extra diagnostics "
                                   f"go into notes as key=value pairs (format_notes)")
        prepared.append([_cell(row.get(c)) for c in columns])
    if not prepared:
        return 0
    k = columns.index(key) if key is not None and skip_existing else None
    if path.is_dir():
        raise ExpspecError(f"{path}: is a directory, expected a CSV file; nothing written")
    if path.is_file():  # a bad file is refused before the lock file is made: nothing written
        found = _csv_rows(path, _read_text(path))
        if found:
            _check_header(path, found[0], columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock").acquire(poll_interval=LOCK_POLL_SEC):
        _remove_dead_writers_temp_files(path)
        text = _read_text(path) if path.is_file() else ""
        existing = _csv_rows(path, text)
        if existing:
            _check_header(path, existing[0], columns)
        seen = {r[k]: i for i, r in enumerate(existing) if i and k is not None and len(r) > k}
        new, replaced = [], 0
        for row in prepared:
            if k is not None and row[k]:
                if row[k] in seen:
                    if replace_existing and seen[row[k]] is not None and existing[seen[row[k]]] != row:
                        existing[seen[row[k]]] = row
                        replaced += 1
                    continue
                seen[row[k]] = None
            new.append(row)
        if not new and not replaced:
            return 0
        buf = io.StringIO()
        if replaced:  # rewrite the whole table (atomically, like any append)
            text = ""
            _write_rows(buf, existing)
        elif not existing:
            text = ""
            _write_rows(buf, [columns])
        elif not text.endswith("\n"):
            text += "\n"
        _write_rows(buf, new)
        write_text_atomic(path, text + buf.getvalue())
    return len(new) + replaced


def _remove_dead_writers_temp_files(path: Path) -> None:
    """A writer killed inside ``write_text_atomic`` leaves its temp file (``.<name>.<8 random
    characters>.tmp``, a whole copy of the table) beside the table. Called under the table's
    lock, which every writer of it holds while it writes: such a file belongs to a dead one."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.{'?' * 8}.tmp"):
        tmp.unlink(missing_ok=True)


def _write_rows(buf: io.StringIO, rows: Iterable[Sequence[str]]) -> None:
    """CSV rows ending in "\\n". A row with a carriage return in a cell is written fully quoted:
    with this line terminator the csv module leaves a lone "\\r" unquoted, and its reader then
    refuses the table (a "\\r" in a run's notes, from a progress bar, would break every later read)."""
    plain = csv.writer(buf, lineterminator="\n")
    quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for row in rows:
        (quoted if any("\r" in cell for cell in row) else plain).writerow(row)


def _read_text(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as handle:  # a quoted "\r" stays one
            return handle.read()
    except UnicodeDecodeError as exc:
        raise ExpspecError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None


def _csv_rows(path: Path, text: str) -> list[list[str]]:
    try:
        return list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:  # a field past the csv module's size limit, a bad quote
        raise ExpspecError(f"{path}: not a readable CSV table ({exc})") from None


def read_csv_rows(path: str | Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """All rows as dicts of strings; the header and every row's width are checked."""
    path, columns = Path(path), list(columns)
    if not path.is_file():
        raise ExpspecError(f"{path}: file not found")
    rows = _csv_rows(path, _read_text(path))
    if not rows:
        raise ExpspecError(f"{path}: empty file (expected the header {','.join(columns[:3])},...)")
    _check_header(path, rows[0], columns)
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(columns):
            raise ExpspecError(f"{path} row {line}: {len(row)} fields, expected {len(columns)}")
        out.append(dict(zip(columns, row)))
    return out


