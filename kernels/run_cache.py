"""The run cache: every expensive step runs once per (code, knobs, inputs).

Acceptance tests only read results; the session fixture of a step calls
``RunCache.get_or_compute(family, step, knobs, fn, inputs=..., code=..., code_version=N)``.
The key hashes

* the family and the step,
* the resolved knobs that step reads (not the whole config),
* the source of the modules the step's code really uses: the import closure, inside
  ``expspec``, of the modules named in ``code`` (read with ``ast``, so an import inside
  a function counts too), plus the step's explicit ``code_version``,
* the fingerprints of its inputs (corpus, tokenizer, an upstream entry's key).

Editing a plot, the CLI or another family therefore keeps an entry; editing the
step's own kernel (or anything it imports) recomputes it.

Atomicity: ``fn`` writes into a private temporary directory next to the cache entry;
only when it returns is ``result.json`` written and the directory renamed into place,
so a crash never leaves a half entry, and an entry whose result.json does not parse is
treated as missing. A ``filelock`` per key makes a second process (an xdist worker, a
parallel CLI run) wait for the first computation instead of repeating it.
``fresh_since`` (set by ``--fresh``) treats entries created before that moment as
missing, so one session recomputes each entry once, not once per worker.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping

from filelock import FileLock

from expspec.kernels.atomic_io import jsonable, read_json, write_json_atomic
from expspec.kernels.errors import ExpspecError
from expspec.kernels.progress import stage
from expspec.kernels.provenance import expspec_version, git_commit

ROOT_PACKAGE = "expspec"


def _module_source(name: str) -> tuple[str | None, bool]:
    """(source file of an importable module or package, is_package); (None, False) if none."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None, False
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None, bool(spec and spec.submodule_search_locations)
    return spec.origin, spec.submodule_search_locations is not None


def _imports_of(name: str, path: str, is_package: bool, roots: frozenset[str]) -> set[str]:
    """Modules under ``roots`` that the source of ``name`` imports, anywhere in the file."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {m for m in found if m.split(".")[0] in roots}


def module_closure(modules: Iterable[str], roots: Iterable[str] = ()) -> list[str]:
    """Every module that ``modules`` import, transitively, inside ``expspec``, the top-level
    packages of ``modules`` themselves (a user's own experiment package) and ``roots``,
    with their parent packages (whose ``__init__`` runs on import). Names that are not
    modules (a class imported with ``from m import Name``) drop out; third-party
    libraries are pinned by the environment, not hashed."""
    modules = list(modules)
    roots = frozenset({ROOT_PACKAGE, *roots, *(m.split(".")[0] for m in modules)})
    todo, seen, closure = list(modules), set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        path, is_package = _module_source(name)
        if path is None:
            continue
        closure.add(name)
        todo.extend(_imports_of(name, path, is_package, roots))
    return sorted(closure)


def _module_name(code: str | Callable | ModuleType) -> str:
    if isinstance(code, str):
        return code
    if isinstance(code, ModuleType):
        return code.__name__
    return code.__module__


def code_fingerprint(code: Iterable[str | Callable | ModuleType], code_version: int | str = 0) -> dict:
    """{"hash", "modules", "code_version"} of the import closure of ``code``. Every entry of
    ``code`` must have a source file: a misspelt module name would otherwise hash only its
    parent packages, and the step's own edits would never invalidate its entries."""
    names = [_module_name(c) for c in code]
    missing = [name for name in names if _module_source(name)[0] is None]
    if missing:
        raise ExpspecError(f"run cache: no source found for code {missing!r}")
    closure = module_closure(names)
    digest = hashlib.sha256(f"code_version={code_version}".encode())
    for name in closure:
        digest.update(b"\0" + name.encode() + b"\0" + Path(_module_source(name)[0]).read_bytes())
    return {"hash": digest.hexdigest()[:16], "modules": closure, "code_version": code_version}


@dataclass
class CacheEntry:
    key: str
    path: Path  # the entry's directory: artifacts written by fn live here
    result: Any  # what fn returned (JSON round-tripped)
    computed: bool  # True when this call ran fn


class RunCache:
    def __init__(self, root: str | Path, fresh_since: float | None = None, repo: str | Path | None = None):
        self.root = Path(root)
        self.fresh_since = fresh_since
        self.repo = repo  # the experiment's repository, whose commit meta.json records

    def key(self, family: str, step: str, knobs: Any, inputs: Mapping[str, str] | None = None,
            code: dict | None = None) -> str:
        blob = json.dumps(
            {"family": family, "step": step, "knobs": jsonable(knobs), "code": (code or {}).get("hash"),
             "code_version": (code or {}).get("code_version"), "inputs": dict(sorted((inputs or {}).items()))},
            sort_keys=True,
        )
        return f"{family}-{step}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    def _read_valid(self, entry: Path, valid: Callable[[Any], bool] | None = None) -> tuple[bool, Any]:
        """(True, result) for a complete entry; a missing, stale or truncated one, or one whose
        result ``valid`` rejects (e.g. its work dir was deleted), is (False, None)."""
        result = entry / "result.json"
        if not result.is_file():
            return False, None
        if self.fresh_since is not None and result.stat().st_mtime < self.fresh_since:
            return False, None
        try:
            value = read_json(result, "cache entry")
        except ExpspecError:
            return False, None
        return (True, value) if valid is None or valid(value) else (False, None)

    def get_or_compute(
        self,
        family: str,
        step: str,
        knobs: Any,
        fn: Callable[[Path], Any],
        inputs: Mapping[str, str] | None = None,
        code: Iterable[str | Callable | ModuleType] | None = None,
        code_version: int | str = 0,
        valid: Callable[[Any], bool] | None = None,
    ) -> CacheEntry:
        """Return the cached result of ``fn(workdir)``, computing it at most once.

        ``code``: the functions/modules whose import closure is the step's code (default:
        ``fn``'s module; pass the kernel when ``fn`` is a thin wrapper in a plugin). ``valid``:
        an extra check of a stored result (files it points to still exist)."""
        fingerprint = code_fingerprint(code or [fn], code_version)
        key = self.key(family, step, knobs, inputs, fingerprint)
        entry = self.root / key
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(entry) + ".lock"):
            ok, result = self._read_valid(entry, valid)
            if ok:
                mark_used(entry)
                return CacheEntry(key, entry, result, computed=False)
            work = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{key}."))
            os.chmod(work, 0o755)  # mkdtemp makes 0700; a team's shared cache must be readable
            try:
                started = time.time()
                with stage(f"{family} {step}"):
                    result = fn(work)
                meta = {"family": family, "step": step, "key": key, "knobs": knobs,
                        "inputs": dict(inputs or {}), "code": fingerprint, "git_commit": git_commit(self.repo),
                        "expspec": expspec_version(),
                        "seconds": round(time.time() - started, 3),
                        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                write_json_atomic(work / "meta.json", meta)
                write_json_atomic(work / "result.json", result)
                if entry.exists():
                    shutil.rmtree(entry)
                os.replace(work, entry)
                mark_used(entry)
            finally:
                if work.exists():
                    shutil.rmtree(work, ignore_errors=True)
            return CacheEntry(key, entry, read_json(entry / "result.json"), computed=True)


# --- size and pruning (``expspec cache info|prune``) ---------------------------------------

USED_MARK = "used"  # an empty file whose mtime is the entry's last use (hit or computation)


def mark_used(entry: Path) -> None:
    try:
        (entry / USED_MARK).touch()
    except OSError:  # a read-only shared cache still serves its entries
        pass


@dataclass
class EntryInfo:
    key: str
    path: Path
    family: str
    step: str
    bytes: int
    created: float  # epoch seconds (result.json's mtime)
    last_used: float  # epoch seconds (the ``used`` mark, else created)


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def cache_entries(root: str | Path) -> list[EntryInfo]:
    """Every complete entry under ``root``, oldest first (a folder without result.json is not one)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ExpspecError(f"run cache {root}: not a directory")
    out = []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        result = entry / "result.json"
        if entry.name.startswith(".") or not result.is_file():
            continue
        try:
            meta = read_json(entry / "meta.json", "cache entry meta")
        except ExpspecError:
            meta = {}
        family, _, rest = entry.name.partition("-")
        used = entry / USED_MARK
        created = result.stat().st_mtime
        out.append(EntryInfo(entry.name, entry, meta.get("family", family), meta.get("step", rest.rpartition("-")[0]),
                             _tree_bytes(entry), created, used.stat().st_mtime if used.is_file() else created))
    return sorted(out, key=lambda e: e.created)


def orphan_work_dirs(root: str | Path) -> list[Path]:
    """Private work dirs of computations that died (SIGKILL): their key's lock is free."""
    root = Path(root)
    orphans = []
    for work in sorted(root.glob(".*-*.*")) if root.is_dir() else []:
        key = work.name[1:].rsplit(".", 1)[0]
        if not work.is_dir():
            continue
        lock = FileLock(str(root / key) + ".lock")
        try:
            lock.acquire(timeout=0)
        except TimeoutError:
            continue  # being computed right now
        lock.release()
        orphans.append(work)
    return orphans


def prune_cache(root: str | Path, *, created_before: float | None = None, unused_since: float | None = None,
                dry_run: bool = False) -> tuple[list[EntryInfo], list[Path]]:
    """Remove entries created before ``created_before`` or not used since ``unused_since``
    (epoch seconds), and dead computations' work dirs. An entry whose lock another process
    holds is left alone. Returns (entries removed, work dirs removed)."""
    if created_before is None and unused_since is None:
        raise ExpspecError("cache prune: say what to remove (--older-than and/or --unused-since)")
    removed = []
    for info in cache_entries(root):
        old = created_before is not None and info.created < created_before
        unused = unused_since is not None and info.last_used < unused_since
        if not (old or unused):
            continue
        if not dry_run:
            lock = FileLock(str(info.path) + ".lock")
            try:
                lock.acquire(timeout=0)
            except TimeoutError:
                continue  # in use right now
            try:
                shutil.rmtree(info.path)
            finally:
                lock.release()
        removed.append(info)
    orphans = orphan_work_dirs(root)
    if not dry_run:
        for work in orphans:
            shutil.rmtree(work, ignore_errors=True)
    return removed, orphans
