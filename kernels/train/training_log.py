"""Read nanochat ``base_train`` logs (and the builtin trainer's, which use the same lines).

Why: Lane B can train with nanochat itself (``backend = "nanochat"``) and then all it
has is the text nanochat printed. The numbers Lane B needs are all in that text:

    Total batch size 524,288 => gradient accumulation steps: 1
    step 00012/02011 (0.60%) | loss: 8.204770 | lrm: 1.00 | dt: 8998.41ms | tok/sec: 58,264 | mfu: 0.00 | total time: 0.15m
    Step 00100 | Validation bpb: 1.404884
    Minimum validation bpb: 0.910526

Vintages differ: ``mfu:`` became ``bf16_mfu:``, ``epoch: ... pq: ... rg: ...`` and
``| eta: 12.3m`` were added, tok/sec carries thousands separators, some forks drop
the ``/NNNNN`` or the ``(pct%)``. Fields are therefore read by name, not by position.

Logs are often appended to after a crash (``tee -a``): the step numbers then go back
down. The latest attempt wins: when a line reports step ``s`` below what was already
seen, everything the earlier attempt logged from ``s`` on is dropped (a restart from
scratch keeps only the new attempt; a resume from step ``s`` keeps the history before it).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from expspec.kernels.errors import ExpspecError
from expspec.kernels.train.summary import RunSummary, summarize
from expspec.kernels.train.time_to_target import TimeToTarget, finite_min, step_time_medians, time_to_target

STEP_RE = re.compile(r"^step (\d{5,})(?:/(\d+))?(?= |$)(.*)$")
EVAL_RE = re.compile(r"^Step (\d+) \| Validation bpb: ([-+\w.]+)\s*$")
MIN_RE = re.compile(r"^Minimum validation bpb: ([-+\w.]+)\s*$")
BATCH_RE = re.compile(r"^Total batch size ([\d,]+) => gradient accumulation steps: (\d+)\s*$")
TTT_RE = re.compile(r"^Time-to-target \(([^)]+)\): (\S+?)\s*(m?)\s*(?:\|(.*))?$")
PARAM_RE = re.compile(r"^(transformer_matrices|lm_head)\s*: ([\d,]+)\s*$")
STEP_FORM = "'step NNNNN/NNNNN (P%) | loss: X | ... | dt: Xms | tok/sec: N | ... | total time: Xm'"


@dataclass
class TrainingLog:
    path: str
    evals: list  # [(step, val_bpb)] of the latest attempt (see module docstring)
    eval_train_times: list  # cumulative training seconds at each eval (from 'total time')
    min_val_bpb: float
    min_val_bpb_source: str  # "line" (Minimum validation bpb) | "evals"
    tok_per_sec_median: float
    dt_median_ms: float
    total_batch_size: int  # 0 when the log has no 'Total batch size' line
    grad_accum_steps: int
    num_iterations: int  # the horizon printed as step N/<horizon>; 0 when absent
    steps: int  # step lines kept
    last_step: int
    train_time_sec: float  # the last 'total time' (nanochat leaves its first 10 steps out)
    n_scaling_params: int  # transformer_matrices + lm_head when printed, else 0
    time_to_target: list = field(default_factory=list)  # parsed 'Time-to-target' lines
    restarts: int = 0
    failed_at_step: int = -1  # first step whose loss is non-finite (either trainer), else -1
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def run_summary(self, threshold: float) -> RunSummary:
        """The log as a RunSummary, scored at ``threshold`` like a builtin run."""
        ttt = self.time_to_target_for(threshold)
        steps = self.last_step + 1  # step lines count from 0
        return summarize("ok" if self.failed_at_step < 0 else "failed", steps, self.num_iterations or steps,
                         self.n_scaling_params, self.total_batch_size, self.evals, self.eval_train_times, ttt,
                         self.tok_per_sec_median, self.dt_median_ms, self.train_time_sec, list(self.notes),
                         grad_accum_steps=self.grad_accum_steps, log_path=self.path, backend="nanochat")

    def time_to_target_for(self, threshold: float, lower_is_better: bool = True,
                           fit: str = "power_law") -> TimeToTarget:
        """Score this log by the same rule as a builtin run (train/time_to_target.py)."""
        return time_to_target(self.evals, self.eval_train_times, threshold,
                              self.num_iterations or self.last_step + 1, self.dt_median_ms / 1000,
                              lower_is_better, fit)


def _number(text: str) -> float:
    return float(text.replace(",", "").strip())


def _count(text: str) -> int:
    """'524,288' -> 524288; ValueError past Python's int-from-text limit (a garbage line)."""
    return int(text.replace(",", ""))


def _step_fields(rest: str) -> dict:
    """' (0.60%) | loss: 8.2 | dt: 8998.41ms | tok/sec: 58,264' -> {'loss': '8.2', ...}."""
    out = {}
    for part in rest.split("|"):
        key, sep, value = part.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise ExpspecError(f"training log {path}: file not found")
    data = path.read_bytes()
    if not data.strip():
        raise ExpspecError(f"training log {path}: empty file")
    if b"\0" in data:
        raise ExpspecError(f"training log {path}: not a text log (NUL byte at offset {data.index(0)})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExpspecError(f"training log {path}: not UTF-8 text (bad byte at offset {exc.start})") from None


def _parse_ttt(match: re.Match) -> dict:
    metric, value, unit, rest = match.group(1), match.group(2), match.group(3), match.group(4) or ""
    if value.endswith("m") and not unit:
        value, unit = value[:-1], "m"
    try:
        minutes = float(value)
    except ValueError:
        minutes = math.inf if value == "unreachable" else math.nan
    entry = {"metric": metric.split()[0], "minutes": minutes, "seconds": minutes * 60}
    for key, value in _step_fields(rest).items():
        key = key.replace(" ", "_")
        if key in ("threshold", "step"):
            try:
                value = float(value)
            except ValueError:
                pass
        elif key == "within_horizon":
            value = value == "yes"
        entry[key] = value
    return entry


def parse_training_log(path: str | Path) -> TrainingLog:
    """Parse one nanochat/builtin training log; ExpspecError (one line) on bad input."""
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    truncated_tail = not text.endswith("\n")
    steps: list[tuple[int, float, float, float]] = []  # (step, dt_ms, tok/sec, total_sec)
    evals: list[tuple[int, float]] = []
    batch = (0, 0)
    horizon, minimum, ttt, params, restarts, failed, notes = 0, None, [], {}, 0, -1, []

    def restart(at: int, keep_eval_at: bool) -> None:
        nonlocal steps, evals, minimum, ttt, restarts, failed
        steps = [s for s in steps if s[0] < at]
        evals = [e for e in evals if e[0] < at or (keep_eval_at and e[0] == at)]
        minimum, ttt, restarts, failed = None, [], restarts + 1, -1

    def malformed(number: int, what: str, expected: str) -> None:
        if truncated_tail and number == len(lines):
            notes.append(f"ignored truncated last line {number}")
            return
        raise ExpspecError(f"training log {path} line {number}: malformed {what} line; expected {expected}")

    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if m := STEP_RE.match(line):
            try:
                step, step_horizon = int(m.group(1)), int(m.group(2)) if m.group(2) else horizon
            except ValueError:  # thousands of digits
                malformed(number, "training step", STEP_FORM)
                continue
            fields = _step_fields(m.group(3))
            if steps and step <= steps[-1][0] or evals and step < evals[-1][0]:
                restart(step, keep_eval_at=True)
            if "non-finite loss" in fields:
                failed = step
                continue
            try:
                if failed < 0 and "loss" in fields and not math.isfinite(_number(fields["loss"])):
                    failed = step  # a nanochat run that went NaN keeps logging; it failed here
                dt = _number(fields["dt"].removesuffix("ms"))
                tps = _number(fields["tok/sec"])
                total = _number(fields["total time"].removesuffix("m")) * 60
            except (KeyError, ValueError):
                malformed(number, "training step", STEP_FORM)
                continue
            steps.append((step, dt, tps, total))
            horizon = step_horizon
        elif line.startswith("Step ") and "Validation bpb" in line:
            m = EVAL_RE.match(line)
            try:
                step, value = int(m.group(1)), float(m.group(2))
            except (AttributeError, ValueError):
                malformed(number, "validation", "'Step NNNNN | Validation bpb: X.XXXXXX'")
                continue
            if evals and step <= evals[-1][0] or steps and step <= steps[-1][0]:
                restart(step, keep_eval_at=False)
            evals.append((step, value))
        elif line.startswith("Minimum validation bpb"):
            m = MIN_RE.match(line)
            try:
                minimum = float(m.group(1))
            except (AttributeError, ValueError):
                malformed(number, "minimum validation bpb", "'Minimum validation bpb: X.XXXXXX'")
        elif m := BATCH_RE.match(line):
            try:
                batch = (_count(m.group(1)), _count(m.group(2)))
            except ValueError:
                malformed(number, "batch size", "'Total batch size N => gradient accumulation steps: K'")
        elif m := TTT_RE.match(line):
            ttt.append(_parse_ttt(m))
        elif m := PARAM_RE.match(line):
            try:
                params[m.group(1)] = _count(m.group(2))
            except ValueError:
                malformed(number, "parameter count", f"'{m.group(1)} : N'")

    if not evals:
        raise ExpspecError(f"training log {path}: no 'Step N | Validation bpb: X' line "
                           f"(evaluation disabled, or the log stops before the first eval)")
    if not steps and failed < 0:
        raise ExpspecError(f"training log {path}: no training step lines of the form {STEP_FORM}")
    # Training time at an eval of step s = 'total time' after step s-1 (0 before any step).
    times = []
    for step, _ in evals:
        done = [s[3] for s in steps if s[0] < step]
        times.append(done[-1] if done else 0.0)
    tok_med, dt_med = step_time_medians([s[1] for s in steps], [s[2] for s in steps])
    if minimum is None:
        source, minimum = "evals", finite_min(v for _, v in evals)
    else:
        source = "line"
    return TrainingLog(
        path=str(path), evals=evals, eval_train_times=times, min_val_bpb=minimum,
        min_val_bpb_source=source, tok_per_sec_median=tok_med, dt_median_ms=dt_med,
        total_batch_size=batch[0], grad_accum_steps=batch[1], num_iterations=horizon,
        steps=len(steps), last_step=steps[-1][0] if steps else -1,
        train_time_sec=steps[-1][3] if steps else 0.0,
        n_scaling_params=sum(params.values()) if len(params) == 2 else 0,
        time_to_target=ttt, restarts=restarts, failed_at_step=failed, notes=notes)
