"""Hero's training diagnostics: the record formats, a strict reader, and the analysis.

Why this exists: the original hero runs failed quietly - first-token accuracy peaked and
then regressed, grad norms spiked, answers collapsed into "thethethe" - and nobody saw it
until the final eval. Each optimizer step (every ``log_every``) appends one line to
``diagnostics.jsonl`` and each epoch one line to ``diagnostics_epoch.jsonl``; ``analyze``
turns the step log into the checklist's numbers (peak first_acc and its step, final,
regression from the peak, max grad_norm, breakthrough steps) and ``follow_log`` watches a
growing training log for the first F1 > 0.

The reader also takes the original code's lines, where the metrics of each model sit under
``models.<name>`` next to ``global_step``; every model is then a series of its own. Ours are
grouped into series by ``stage/mode`` (e.g. ``B/eval``): a train and an eval curve never mix.
A malformed line is one error naming ``file:line`` and the field.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from expspec.kernels.atomic_io import json_number, jsonable, parse_json
from expspec.kernels.errors import ExpspecError

# field -> kind. count: int >= 0; name: non-empty string; fraction: number in [0, 1];
# number: >= 0 ("nan"/"inf", as atomic_io writes them, allowed: a blow-up must be readable);
# loss: a number or null (a loss the stage does not compute).
STEP_FIELDS: dict[str, str] = {
    "epoch": "count", "global_step": "count",
    "stage": "name", "mode": "name",  # e.g. "A"|"B" and "train"|"eval": a series is one stage/mode pair
    "first_acc": "fraction", "first_acc_top5": "fraction",  # answer's first token: top-1 / top-5
    "first": "loss", "kce": "loss", "kd": "loss",  # first-token CE, K-token CE, distillation KL
    "grad_norm": "number",  # total norm before clipping
    "lr": "number", "sec_per_step": "number", "answer_length_avg": "number",
    "token_diversity": "count",  # unique tokens in the first 10 predictions
}
EPOCH_FIELDS: dict[str, str] = {
    "epoch": "count", "stage": "name",
    "samples": "samples",  # [{question, prediction, gold}] (5 of them)
    "first_token_histogram": "histogram",  # predicted first token -> count
    "loss_breakdown": "losses",  # loss name -> value
}


def _as_number(value: Any) -> float | None:
    text = value.strip().lower() if isinstance(value, str) else value
    return json_number(text, ("nan", "inf", "+inf", "infinity"))


def _check_value(kind: str, value: Any) -> tuple[Any, str | None]:
    """(normalised value, None) or (None, the expected form)."""
    if kind == "count":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return (value, None) if ok else (None, "an integer >= 0")
    if kind == "name":
        return (value, None) if isinstance(value, str) and value else (None, "a non-empty string")
    if kind == "loss" and value is None:
        return None, None
    number = _as_number(value)
    if kind == "fraction":
        ok = number is not None and 0.0 <= number <= 1.0
        return (number, None) if ok else (None, "a number in [0, 1]")
    if kind in ("number", "loss"):
        ok = number is not None and (math.isnan(number) or number >= 0.0 or kind == "loss")
        return (number, None) if ok else (None, "a number >= 0" + (" or null" if kind == "loss" else ""))
    if kind == "samples":
        ok = isinstance(value, list) and all(
            isinstance(s, Mapping) and isinstance(s.get("question"), str) and isinstance(s.get("prediction"), str)
            and (isinstance(s.get("gold"), str) or (isinstance(s.get("gold"), list)
                                                    and all(isinstance(g, str) for g in s["gold"])))
            for s in value)
        return (value, None) if ok else (None, 'a list of {"question": str, "prediction": str, "gold": str}')
    if kind == "histogram":
        ok = isinstance(value, Mapping) and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
                                                for c in value.values())
        return (dict(value), None) if ok else (None, "an object {token: count >= 0}")
    if kind == "losses":
        ok = isinstance(value, Mapping) and all(_as_number(v) is not None or v is None for v in value.values())
        return (dict(value), None) if ok else (None, "an object {loss name: number}")
    raise AssertionError(kind)


def check_record(record: Any, fields: Mapping[str, str], where: str) -> dict:
    """The record with every declared field checked (numbers as floats); extra fields kept."""
    if not isinstance(record, Mapping):
        raise ExpspecError(f"{where}: expected a JSON object per line")
    out = dict(record)
    for name, kind in fields.items():
        if name not in record:
            raise ExpspecError(f"{where}: field {name}: missing")
        out[name], expected = _check_value(kind, record[name])
        if expected:
            raise ExpspecError(f"{where}: field {name}: expected {expected}, got {record[name]!r}")
    return out


def check_step_record(record: Any, where: str = "diagnostics record") -> dict:
    return check_record(record, STEP_FIELDS, where)


def check_epoch_record(record: Any, where: str = "epoch record") -> dict:
    return check_record(record, EPOCH_FIELDS, where)


def _append_line(path: str | Path, record: Mapping) -> None:
    """One JSON line, flushed and synced: a kill loses at most the line being written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(jsonable(record), sort_keys=True)  # NaN/inf as strings: still valid JSON
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def append_step_record(path: str | Path, record: Mapping) -> None:
    """Check a step record (``STEP_FIELDS``) and append it to diagnostics.jsonl."""
    check_step_record(record)
    _append_line(path, record)


def append_epoch_record(path: str | Path, record: Mapping) -> None:
    """Check an epoch record (``EPOCH_FIELDS``) and append it to diagnostics_epoch.jsonl."""
    check_epoch_record(record)
    _append_line(path, record)


def token_diversity(predictions: Sequence[Sequence], first_n: int = 10) -> int:
    """Unique tokens over the first ``first_n`` predictions (each a token sequence): a model
    that answers everything with the same token scores 1."""
    return len({tok for pred in predictions[:first_n] for tok in pred})


def first_token_histogram(first_tokens: Sequence[str], top: int = 20) -> dict[str, int]:
    """The ``top`` most predicted first tokens with their counts (ties: alphabetical)."""
    counts = Counter(first_tokens)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top])


# --- reading and analysing a step log ----------------------------------------------------------

@dataclass(frozen=True)
class DiagnosticPoint:
    series: str  # "stage/mode" (ours) or the model's name (the original's lines)
    global_step: int
    first_acc: float
    grad_norm: float | None
    line: int


def _read_jsonl(path: Path, what: str) -> Iterator[tuple[int, Any]]:
    if not path.is_file():
        raise ExpspecError(f"{what} {path}: file not found")
    try:
        with open(path, encoding="utf-8") as handle:
            lines = list(handle)
    except UnicodeDecodeError as exc:
        raise ExpspecError(f"{what} {path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield number, parse_json(line)
            except json.JSONDecodeError as exc:
                raise ExpspecError(f"{path}:{number}: not a JSON object ({exc.msg})") from None


def _original_points(record: Mapping, where: str, number: int) -> list[DiagnosticPoint]:
    step, problem = _check_value("count", record.get("global_step"))
    if problem:
        raise ExpspecError(f"{where}: field global_step: expected {problem}, got {record.get('global_step')!r}")
    if not isinstance(record["models"], Mapping) or not record["models"]:
        raise ExpspecError(f"{where}: field models: expected an object {{name: {{first_acc: ...}}}}")
    points = []
    for name, metrics in record["models"].items():
        if not isinstance(metrics, Mapping):
            raise ExpspecError(f"{where}: field models.{name}: expected an object with first_acc")
        acc, problem = _check_value("fraction", metrics.get("first_acc"))
        if problem:
            raise ExpspecError(f"{where}: field models.{name}.first_acc: expected {problem}, "
                               f"got {metrics.get('first_acc')!r}")
        raw_norm = metrics.get("grad_norm", record.get("grad_norm"))
        norm, problem = _check_value("number", raw_norm) if raw_norm is not None else (None, None)
        if problem:
            raise ExpspecError(f"{where}: field models.{name}.grad_norm: expected {problem}, got {raw_norm!r}")
        points.append(DiagnosticPoint(str(name), step, acc, norm, number))
    return points


def read_diagnostics(path: str | Path) -> tuple[list[DiagnosticPoint], set[str]]:
    """Every point of a diagnostics.jsonl (ours or the original's), and the formats seen."""
    path = Path(path)
    points: list[DiagnosticPoint] = []
    formats: set[str] = set()
    for number, record in _read_jsonl(path, "diagnostics"):
        where = f"{path}:{number}"
        if isinstance(record, Mapping) and "models" in record:
            formats.add("original")
            points.extend(_original_points(record, where, number))
        else:
            formats.add("expspec")
            r = check_step_record(record, where)
            points.append(DiagnosticPoint(f"{r['stage']}/{r['mode']}", r["global_step"], r["first_acc"],
                                          r["grad_norm"], number))
    if not points:
        raise ExpspecError(f"diagnostics {path}: no records")
    return points, formats


def read_epoch_diagnostics(path: str | Path) -> list[dict]:
    path = Path(path)
    return [check_epoch_record(record, f"{path}:{number}")
            for number, record in _read_jsonl(path, "epoch diagnostics")]


def summarize_series(points: Sequence[DiagnosticPoint]) -> dict:
    """Peak first_acc and its step, final, regression from the peak (%), max grad_norm, and
    the breakthrough steps: where first_acc first rises above 0 and each later new peak."""
    ordered = sorted(points, key=lambda p: (p.global_step, p.line))
    peak = max(ordered, key=lambda p: p.first_acc)  # the first step that reached the peak
    final = ordered[-1]
    breakthroughs, best = [], 0.0
    for p in ordered:
        if p.first_acc > best:
            breakthroughs.append({"step": p.global_step, "first_acc": p.first_acc})
            best = p.first_acc
    norms = [math.inf if math.isnan(p.grad_norm) else p.grad_norm for p in ordered if p.grad_norm is not None]
    return {
        "n_records": len(ordered),
        "peak_first_acc": peak.first_acc, "peak_step": peak.global_step,
        "final_first_acc": final.first_acc, "final_step": final.global_step,
        "final_over_peak": final.first_acc / peak.first_acc if peak.first_acc > 0 else None,
        "regression_from_peak_pct": 100.0 * (peak.first_acc - final.first_acc) / peak.first_acc
        if peak.first_acc > 0 else 0.0,
        "max_grad_norm": max(norms) if norms else None,  # a NaN norm counts as inf
        "breakthrough_steps": breakthroughs,
    }


def analyze_diagnostics(path: str | Path) -> dict:
    points, formats = read_diagnostics(path)
    series: dict[str, list[DiagnosticPoint]] = {}
    for p in points:
        series.setdefault(p.series, []).append(p)
    return {"file": str(path), "format": "+".join(sorted(formats)),
            "series": {name: summarize_series(ps) for name, ps in series.items()}}


def diagnostics_checks(summary: Mapping, min_peak_first_acc: float, min_final_over_peak: float,
                       max_grad_norm: float) -> dict[str, dict]:
    """The checklist rows a series summary answers: measured, required, passed."""
    final_over_peak = summary["final_over_peak"] or 0.0
    norm = summary["max_grad_norm"]
    return {
        "peak_first_acc": {"measured": summary["peak_first_acc"], "required": f">= {min_peak_first_acc}",
                           "passed": summary["peak_first_acc"] >= min_peak_first_acc},
        "final_over_peak": {"measured": final_over_peak, "required": f">= {min_final_over_peak}",
                            "passed": final_over_peak >= min_final_over_peak},
        "max_grad_norm": {"measured": norm, "required": f"< {max_grad_norm}",
                          "passed": norm is not None and norm < max_grad_norm},
    }


# --- following a growing training log ---------------------------------------------------------

_F1_FIELD = re.compile(r'(?i)(?<![a-z0-9])f1"?\s*[:=]\s*"?(-?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)')


def f1_in_line(line: str) -> float | None:
    """The largest ``f1=``/``F1:``/``"f1":`` value on a log line (``mean_f1`` too), else None."""
    values = [float(m) for m in _F1_FIELD.findall(line)]
    return max(values) if values else None


def follow_log(path: str | Path, poll_s: float = 1.0, idle_timeout_s: float | None = None,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> Iterator[tuple[int, str]]:
    """(line number, line) of each complete line of a log as it grows, like ``tail -F``.

    Waits for a missing file; starts over when the file shrinks (a restarted run);
    stops after ``idle_timeout_s`` seconds without a new line (None: never)."""
    path = Path(path)
    offset, number, pending = 0, 0, b""
    last_news = clock()
    while True:
        size = path.stat().st_size if path.is_file() else None
        if size is not None and size < offset:
            offset, number, pending = 0, 0, b""
        if size is not None and size > offset:
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read(size - offset)
            offset += len(chunk)
            *complete, pending = (pending + chunk).split(b"\n")
            for raw in complete:
                number += 1
                last_news = clock()
                yield number, raw.decode("utf-8", errors="replace")
        if idle_timeout_s is not None and clock() - last_news >= idle_timeout_s:
            return
        sleep(poll_s)
