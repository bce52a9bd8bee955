"""Step curves read back from the step logs a run left on disk, so MLflow can draw them.

Training loops already write every step's numbers to a file (the shared trainer's
``train.log``, a JSONL diagnostics log); reading those files when a criterion finishes
gives the same curves whether the run happened now or came from the run cache, and no
training loop needs to know about a tracking store. Two formats are recognised, by
content, never by which family wrote them:

- JSONL whose records carry an integer ``step`` or ``global_step``: every other numeric
  field is a curve; a ``mode`` or ``split`` text field prefixes it (``train/loss``,
  ``eval/first_acc``);
- the trainer's text log (nanochat's format, see kernels/train/training_log.py): ``step
  NNNNN/NNNNN | loss: X | lrm: X | dt: Xms | tok/sec: N ...`` lines give ``train/loss``,
  ``train/lrm``, ``train/dt_ms``, ``train/tok/sec`` ...; ``Step N | Validation bpb: X``
  lines give ``eval/val_bpb``.

Anything else (a CSV, a summary JSON, a PNG) has no curves: ``step_curves`` returns {}.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from expspec.kernels.tracking.metrics import metric_name

Curves = dict[str, list[tuple[int, float]]]  # metric -> [(step, value)]
STEP_KEYS = ("step", "global_step")
PREFIX_KEYS = ("mode", "split")
_VALUE = re.compile(r"^([-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan)\s*([A-Za-z%]*)$")


def _add(curves: Curves, name: str, step: int, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    curves.setdefault(metric_name(name), []).append((step, float(value)))


def _jsonl_curves(path: Path) -> Curves:
    curves: Curves = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue  # a blank line does not end the log
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                return curves if curves else {}  # a torn last line keeps what came before
            if not isinstance(row, dict):
                return {}
            step = next((row[k] for k in STEP_KEYS if isinstance(row.get(k), int)), None)
            if step is None:
                continue
            prefix = next((f"{row[k]}/" for k in PREFIX_KEYS if isinstance(row.get(k), str)), "")
            for key, value in row.items():
                if key not in STEP_KEYS:
                    _add(curves, prefix + key, step, value)
    return curves


def _text_log_curves(path: Path) -> Curves:
    from expspec.kernels.train.training_log import EVAL_RE, STEP_RE

    curves: Curves = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if m := EVAL_RE.match(line):
                try:
                    _add(curves, "eval/val_bpb", int(m.group(1)), float(m.group(2)))
                except ValueError:
                    pass
            elif m := STEP_RE.match(line):
                step = int(m.group(1))
                for part in m.group(3).split("|"):
                    key, sep, text = part.partition(":")
                    found = _VALUE.match(text.strip()) if sep else None
                    if found and key.strip():
                        unit = f"_{found.group(2)}" if found.group(2) else ""
                        _add(curves, f"train/{key.strip()}{unit}", step, float(found.group(1).replace(",", "")))
    return curves


def step_curves(path: str | Path) -> Curves:
    """{metric: [(step, value)]} of a step log; {} for any other file. A step that a log
    repeats (a resumed run) keeps its latest value."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
        if b"\0" in head:
            return {}
        curves = _jsonl_curves(path) if head.lstrip().startswith(b"{") else _text_log_curves(path)
    except (OSError, ValueError, OverflowError, RecursionError):  # an odd file has no curves, never a crash
        return {}
    return {name: sorted(dict(points).items()) for name, points in curves.items()}
