"""What a result was made from: the git commit of the code and fingerprints of inputs.

Every run records these next to its results (config.json/run.json of a session, the
``provenance`` of CLI outputs, the run cache's meta.json), so a number can be traced
to the code and data that produced it.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from expspec.kernels.errors import ExpspecError

REPO_DIR = Path(__file__).resolve().parent.parent


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
    """The HEAD of the repository holding ``cwd`` (default: expspec's own checkout), with
    '+dirty' when the tree has changes, or 'unknown'."""
    cwd = cwd or REPO_DIR
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


def expspec_version() -> str:
    """The installed expspec distribution's version (and its commit when run from a checkout)."""
    from importlib import metadata

    try:
        version = metadata.version("expspec")
    except metadata.PackageNotFoundError:
        version = "not installed"
    commit = git_commit(REPO_DIR) if (REPO_DIR / ".git").exists() else ""
    return f"{version} ({commit})" if commit else version
