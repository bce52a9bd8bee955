"""The run cache: every expensive step runs once per (inputs, code, config).

Acceptance tests only read results; the session fixture of a step calls
``RunCache.get_or_compute(family, step, config, fn, inputs=...)``. The key hashes the
family, the step, the resolved config, the source of every kernel module and the
fingerprints of the inputs, so changing any of them recomputes and nothing else does.

Atomicity: ``fn`` writes into a private temporary directory next to the cache entry;
only when it returns is ``result.json`` written and the directory renamed into place,
so a crash never leaves a half entry. A ``filelock`` per key makes a second process
(an xdist worker, a parallel CLI run) wait for the first computation instead of
repeating it. ``fresh_since`` (set by ``--fresh``) treats entries created before that
moment as missing, so one session recomputes each entry once, not once per worker.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from filelock import FileLock

from kernels.errors import ExpspecError

KERNELS_DIR = Path(__file__).resolve().parent


def kernels_source_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(KERNELS_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes, or of a folder's (relative name, bytes) pairs."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for sub in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(sub.relative_to(path)).encode() + b"\0" + sub.read_bytes())
    elif path.is_file():
        digest.update(path.read_bytes())
    else:
        raise ExpspecError(f"input {path}: no such file or folder")
    return digest.hexdigest()[:16]


def git_commit(cwd: str | Path | None = None) -> str:
    """The repository's HEAD (with '+dirty' when the tree has changes), or 'unknown'."""
    cwd = cwd or KERNELS_DIR.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write via a temp file in the same folder + rename: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(jsonable(data), indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise ExpspecError(f"{what} {path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExpspecError(f"{what} {path}: not valid JSON ({exc})") from None


@dataclass
class CacheEntry:
    key: str
    path: Path  # the entry's directory: artifacts written by fn live here
    result: Any  # what fn returned (JSON round-tripped)
    computed: bool  # True when this call ran fn


class RunCache:
    def __init__(self, root: str | Path, fresh_since: float | None = None):
        self.root = Path(root)
        self.fresh_since = fresh_since

    def key(self, family: str, step: str, config: Any, inputs: Mapping[str, str] | None = None) -> str:
        blob = json.dumps(
            {"family": family, "step": step, "config": jsonable(config), "kernels": kernels_source_hash(),
             "inputs": dict(sorted((inputs or {}).items()))},
            sort_keys=True,
        )
        return f"{family}-{step}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    def _valid(self, entry: Path) -> bool:
        result = entry / "result.json"
        if not result.is_file():
            return False
        return self.fresh_since is None or result.stat().st_mtime >= self.fresh_since

    def get_or_compute(
        self,
        family: str,
        step: str,
        config: Any,
        fn: Callable[[Path], Any],
        inputs: Mapping[str, str] | None = None,
    ) -> CacheEntry:
        """Return the cached result of ``fn(workdir)``, computing it at most once."""
        key = self.key(family, step, config, inputs)
        entry = self.root / key
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(entry) + ".lock"):
            if self._valid(entry):
                return CacheEntry(key, entry, read_json(entry / "result.json"), computed=False)
            work = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{key}."))
            try:
                started = time.time()
                result = fn(work)
                meta = {"family": family, "step": step, "key": key, "config": config,
                        "inputs": dict(inputs or {}), "kernels_source": kernels_source_hash(),
                        "git_commit": git_commit(), "seconds": round(time.time() - started, 3),
                        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                write_json_atomic(work / "meta.json", meta)
                write_json_atomic(work / "result.json", result)
                if entry.exists():
                    shutil.rmtree(entry)
                os.replace(work, entry)
            finally:
                if work.exists():
                    shutil.rmtree(work, ignore_errors=True)
            return CacheEntry(key, entry, read_json(entry / "result.json"), computed=True)
