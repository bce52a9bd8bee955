"""Atomic file writes and strict reads: readers see the old file or the new one, never half.

Every artifact the suite writes (JSON records, reports, CSV tables) goes through
``write_text_atomic`` (temp file in the same folder, fsync, ``os.replace``), so a kill
mid-write leaves the previous version intact. ``read_json`` and ``jsonl_objects`` turn a
missing or malformed file into one ``ExpspecError`` line naming it (and the line).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Mapping

from expspec.kernels.errors import ExpspecError


def jsonable(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:  # numpy arrays
        return jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return jsonable(value.item())
    return value


def json_number(value: Any, words: tuple[str, ...] = ("nan", "inf", "-inf")) -> float | None:
    """A JSON number as a float, or one of ``words`` (the strings ``jsonable`` writes for
    non-finite floats) as one; None for anything else, a bool or an int past float64 too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, str) and value in words:
        return float(value)
    return None


def _write_atomic(path: str | Path, payload: str | bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    binary = isinstance(payload, bytes)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")) as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write via a temp file in the same folder + rename: readers see old or new, never half."""
    return _write_atomic(path, text)


def write_pickle_atomic(path: str | Path, obj: Any) -> Path:
    """Pickle ``obj`` the same way: a fitted model file is either the old one or the new one."""
    return _write_atomic(path, pickle.dumps(obj))


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(jsonable(data), indent=2, sort_keys=True) + "\n")


def parse_json(text: str) -> Any:
    """``json.loads`` whose every failure on hostile text is a ``json.JSONDecodeError``: a
    number past Python's 4300-digit int limit is a plain ValueError there, and nesting past
    the recursion limit a RecursionError; readers catch the one type."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError:
        raise json.JSONDecodeError("number too long", text, 0) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise ExpspecError(f"{what} {path}: file not found")
    try:
        return parse_json(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExpspecError(f"{what} {path}: not valid JSON ({exc})") from None


def jsonl_objects(path: str | Path, what: str) -> list[tuple[int, dict]]:
    """(line number, object) of every non-blank line of a JSONL file; one error line naming
    the file and line for a missing file, bad UTF-8, bad JSON or a line that is not an object."""
    path = Path(path)
    if not path.is_file():
        raise ExpspecError(f"{what} {path}: file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ExpspecError(f"{what} {path}: not UTF-8 text") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = parse_json(line)
        except json.JSONDecodeError as exc:
            raise ExpspecError(f"{what} {path} line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ExpspecError(f"{what} {path} line {number}: expected a JSON object, got {type(row).__name__}")
        out.append((number, row))
    return out
