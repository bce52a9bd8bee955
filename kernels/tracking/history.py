"""Reading the store back: earlier sessions, a reference to compare with, a history table.

A session is a parent run (tag ``expspec.kind = session``) in a family's experiment; its
criteria are its child runs (tag ``expspec.criterion`` = the test's node id, stable from
one session to the next). ``--compare-to REF`` names the reference session as

- ``previous``: each family's latest session in the store;
- a run id (a session's or one of its criteria's): that session, in every family it ran;
- a session name (the report folder's, e.g. ``20260101-120000``);
- a git commit or anything git resolves to one (``main``, ``HEAD~1``, ``origin/main``):
  each family's latest session recorded at that commit.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
import subprocess
from pathlib import Path

from expspec.kernels.errors import ExpspecError
from expspec.kernels.tracking.store import expspec_experiments

SESSION_FILTER = "tags.`expspec.kind` = 'session'"


def sessions(client, family: str | None = None) -> list:
    """Parent runs of pytest sessions, newest first (across families unless one is named)."""
    experiments = expspec_experiments(client, family)
    if not experiments:
        return []
    return client.search_runs(list(experiments), filter_string=SESSION_FILTER,
                              order_by=["attributes.start_time DESC"], max_results=5000)


def _tag(run, key: str, default: str = "") -> str:
    return run.data.tags.get(key, default)


def describe(run) -> str:
    return (f"run {run.info.run_id} (session {_tag(run, 'expspec.session', '?')}, "
            f"commit {_tag(run, 'expspec.git_commit', '?')}, {_tag(run, 'expspec.family', '?')})")


def criteria(client, parent) -> dict[str, dict]:
    """{node id: {run_id, name, result, metrics}} of a session's child runs."""
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                  max_results=5000)
    out = {}
    for run in children:
        names = json.loads(_tag(run, "expspec.metrics", "[]"))
        out[_tag(run, "expspec.criterion", run.info.run_name)] = {
            "run_id": run.info.run_id, "name": run.info.run_name, "result": _tag(run, "expspec.result"),
            "metrics": {k: run.data.metrics[k] for k in names if k in run.data.metrics}}
    return out


def _git_commit_of(ref: str, repo: str | Path | None) -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "--short=12", "--verify", "--quiet", f"{ref}^{{commit}}"],
                              cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def _latest_per_family(runs) -> list:
    chosen = {}
    for run in runs:  # newest first
        chosen.setdefault(_tag(run, "expspec.family"), run)
    return list(chosen.values())


def _same_commit(stored: str, commit: str) -> bool:
    stored = stored.split("+")[0]
    n = min(len(stored), len(commit))
    return n >= 7 and stored[:n] == commit[:n]


def resolve_reference(client, ref: str, uri: str, repo: str | Path | None = None) -> dict:
    """{"label": ..., "criteria": {node id: {...}}} of the sessions ``ref`` names; an unknown
    ref is an ExpspecError naming it and listing the nearest sessions."""
    runs = sessions(client)
    chosen, how = [], ""
    if ref == "previous":
        chosen, how = _latest_per_family(runs), "previous"
        if not chosen:
            raise ExpspecError(f"--compare-to previous: no earlier session in {uri}")
    if not chosen and re.fullmatch(r"[0-9a-f]{32}", ref):
        owner = next((r for r in runs if r.info.run_id == ref), None)
        if owner is None:
            from mlflow.exceptions import MlflowException

            try:
                child = client.get_run(ref)
                owner = next((r for r in runs if r.info.run_id == _tag(child, "mlflow.parentRunId")), None)
            except MlflowException:
                owner = None
        if owner is not None:
            session = _tag(owner, "expspec.session")
            chosen = _latest_per_family(r for r in runs if _tag(r, "expspec.session") == session) or [owner]
            how = f"run {ref[:12]}"
    if not chosen and any(_tag(r, "expspec.session") == ref for r in runs):
        chosen, how = _latest_per_family(r for r in runs if _tag(r, "expspec.session") == ref), f"session {ref}"
    if not chosen:
        commit = _git_commit_of(ref, repo) or (ref if re.fullmatch(r"[0-9a-f]{7,40}", ref) else None)
        if commit:
            chosen = _latest_per_family(r for r in runs if _same_commit(_tag(r, "expspec.git_commit"), commit))
            how = f"commit {commit}" + (f" ({ref})" if not commit.startswith(ref) else "")
    if not chosen:
        raise ExpspecError(f"--compare-to {ref!r}: no run id, session or git commit of that name in {uri}; "
                           f"nearest: {nearest(runs, ref)}")
    found = {}
    for parent in chosen:
        found.update(criteria(client, parent))
    sessions_named = sorted({_tag(r, "expspec.session") for r in chosen})
    commits = sorted({_tag(r, "expspec.git_commit") for r in chosen})
    label = f"{how} (session {', '.join(sessions_named)}, commit {', '.join(commits)})"
    return {"label": label, "criteria": found, "runs": [r.info.run_id for r in chosen]}


def nearest(runs, ref: str, n: int = 3) -> str:
    """The sessions whose run id, session name or commit look most like ``ref`` (else the latest)."""
    keys = {}
    for run in runs:
        for key in (run.info.run_id, _tag(run, "expspec.session"), _tag(run, "expspec.git_commit").split("+")[0]):
            keys.setdefault(key, run)
    close = difflib.get_close_matches(ref, list(keys), n=n, cutoff=0.4)
    picked = list(dict.fromkeys(keys[k].info.run_id for k in close))
    shown = [r for r in runs if r.info.run_id in picked] or runs[:n]
    return "; ".join(describe(r) for r in shown) if shown else "the store has no sessions yet"


def history_table(client, uri: str, family: str | None = None, metric: str | None = None, last: int = 5) -> str:
    """The last ``last`` sessions of each family, side by side: one row per (criterion,
    metric), one column per session (newest first)."""
    import pandas as pd

    families = sorted(set(expspec_experiments(client, family).values()))
    if family is not None and not families:
        known = sorted(set(expspec_experiments(client).values()))
        raise ExpspecError(f"--family {family!r}: no sessions in {uri} (families there: {', '.join(known) or 'none'})")
    blocks = []
    for name in families:
        columns = {}
        for parent in sessions(client, name)[:last]:
            commit = _tag(parent, "expspec.git_commit", "unknown")
            label = f"{_tag(parent, 'expspec.session', parent.info.run_id[:8])} " + (
                commit[:7] + ("+" if "+" in commit else "") if commit != "unknown" else "")
            column = {}
            for crit in criteria(client, parent).values():
                for key, value in crit["metrics"].items():
                    if metric is None or any(fnmatch.fnmatchcase(k, metric) for k in (key, key.rsplit("/", 1)[-1])):
                        column[(crit["name"], key)] = value
            columns[label.strip()] = column
        if not any(columns.values()):
            continue
        table = pd.DataFrame(columns)
        table.index = pd.MultiIndex.from_tuples(table.index, names=["criterion", "metric"])
        with pd.option_context("display.width", 10_000, "display.max_columns", None, "display.max_rows", 1000,
                               "display.max_colwidth", 60, "display.float_format", "{:.6g}".format):
            blocks.append(f"expspec/{name}: last {len(columns)} session(s), newest first\n{table.sort_index()}")
    if not blocks:
        what = f" with a metric matching {metric!r}" if metric else ""
        raise ExpspecError(f"no tracked sessions{what} in {uri}")
    return "\n\n".join(blocks)
