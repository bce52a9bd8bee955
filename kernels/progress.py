"""Progress a person can see: which step is running and how far along it is.

Kernels say where they are with ``stage(name)`` (a nestable context manager: the run
cache opens one per computed step, e.g. "lane_b pipeline") and ``advance(label, done,
total)`` ("runs 4/10", "train <run id> 60/100"). Where that goes:

* a status file, when ``EXPSPEC_PROGRESS_DIR`` is set: one small JSON per process,
  rewritten atomically at most once a second. The pytest plugin sets the variable and
  its controller prints the files' lines every ~20 s, which is the only way a person
  sees anything under xdist, where workers' output is captured;
* nothing else: interactive CLI steps keep their tqdm bars.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

ENV_DIR = "EXPSPEC_PROGRESS_DIR"
MIN_INTERVAL_SEC = 1.0

_stages: list[str] = []
_tasks: dict[str, tuple[int, int]] = {}
_last_write = 0.0


def line() -> str:
    """'lane_b pipeline | runs 4/10 | train laneb-...-s42 60/100' ('' when idle)."""
    parts = list(_stages) + [f"{label} {done}/{total}" for label, (done, total) in _tasks.items()]
    return " | ".join(parts)


def _write(force: bool = False) -> None:
    global _last_write
    folder = os.environ.get(ENV_DIR)
    now = time.monotonic()
    if not folder or (not force and now - _last_write < MIN_INTERVAL_SEC):
        return
    _last_write = now
    path = Path(folder) / f"{os.getpid()}.json"
    record = {"worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), "line": line(), "time": time.time()}
    try:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # progress must never fail a computation
        pass


@contextmanager
def stage(name: str):
    _stages.append(name)
    _write(force=True)
    try:
        yield
    finally:
        _stages.pop()
        if not _stages:
            _tasks.clear()
        _write(force=True)


def advance(label: str, done: int, total: int) -> None:
    """Record ``done`` of ``total`` for ``label``; a finished task is dropped from the line."""
    if done >= total:
        _tasks.pop(label, None)
    else:
        _tasks[label] = (int(done), int(total))
    _write(force=done >= total)


def read_status(folder: str | Path) -> list[dict]:
    """Every live process's latest record in ``folder`` (the controller's side). A process
    that is gone (killed: a test's SIGKILLed child, a crashed worker) never wrote its last
    line: its file is removed, so its last step is not shown as running forever."""
    out = []
    for path in sorted(Path(folder).glob("*.json")):
        if path.stem.isdigit() and not _alive(int(path.stem)):
            path.unlink(missing_ok=True)
            continue
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # someone else's process, or no pid at all: leave it
        return True
    return True


def track(iterable, label: str, total: int | None = None):
    """tqdm over ``iterable`` (quiet off a TTY) that also reports ``label i/total``."""
    from tqdm import tqdm

    total = len(iterable) if total is None else total
    try:
        for i, item in enumerate(tqdm(iterable, desc=label, total=total, disable=None, leave=False)):
            advance(label, i, total)
            yield item
    finally:
        advance(label, total, total)
