"""A CLI pipeline command as an MLflow run (see kernels/cli.py).

The store is checked before the command runs (an unusable one is one line, or a warning
with ``--tracking=optional``); the run is written after it finished, so bad input (an
``ExpspecError``) leaves the store untouched. What is logged is read from the command's
arguments and outputs, never from a family's code: the resolved knobs of the command's
family (``expspec lane-b ...`` -> ``lane_b``), the numbers at the top level of its JSON
outputs, the step curves of the step logs in its output folders (a work dir's
``runs/<id>/train.log`` -> ``runs/<id>/train/loss``, ``runs/<id>/eval/val_bpb``), and its
top-level output files as artifacts.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from expspec.kernels.errors import ExpspecError
from expspec.kernels.tracking.metrics import metric_name
from expspec.kernels.tracking.store import Tracker, check_store, knob_params, resolve_mode, resolve_uri

OUTPUT_ARGS = ("out", "out_dir", "output_file", "output_dir", "work_dir")  # where commands write
ARTIFACT_SUFFIXES = (".json", ".jsonl", ".csv", ".md", ".log", ".txt", ".png", ".env")
STEP_LOG_SUFFIXES = (".log", ".jsonl")
MAX_ARTIFACT_BYTES = 50 * 2**20
MAX_STEP_LOGS = 200  # under an output folder (a work dir holds one log per training run)


def run_tracked(args, argv: list[str]) -> int:
    mode = resolve_mode(args.tracking, args.no_tracking)
    if mode == "off":
        return int(args.func(args) or 0)
    uri = resolve_uri(args.tracking_uri, "reports")
    try:
        check_store(uri)
    except ExpspecError as err:
        if mode != "optional":
            raise
        print(f"expspec: warning: {err}; running without tracking", file=sys.stderr)
        return int(args.func(args) or 0)
    started = time.time()
    try:
        rc = int(args.func(args) or 0)
    except ExpspecError:
        raise  # bad input: nothing written
    except BaseException:
        _log(uri, args, argv, 1, started, status="FAILED")
        raise
    _log(uri, args, argv, rc, started, status="FINISHED" if rc == 0 else "FAILED")
    return rc


def _outputs(args) -> tuple[list[Path], dict[str, Path]]:
    """(output files to keep as artifacts, {label: step log} found under output folders)."""
    files, logs = [], {}
    for name in OUTPUT_ARGS:
        value = getattr(args, name, None)
        path = Path(value) if value else None
        if path is None:
            continue
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix in ARTIFACT_SUFFIXES)
            found = sorted(p for p in path.rglob("*") if p.suffix in STEP_LOG_SUFFIXES and p.is_file())[:MAX_STEP_LOGS]
            one_name = len({p.name for p in found}) == 1  # runs/<id>/train.log: the folder names the run
            for log in found:
                rel = log.relative_to(path)
                logs[str(rel.parent if one_name and rel.parent != Path(".") else rel.with_suffix(""))] = log
    return [p for p in files if p.stat().st_size <= MAX_ARTIFACT_BYTES], logs


def _json_numbers(path: Path) -> dict[str, float]:
    if path.suffix != ".json":
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, huge numbers
        return {}
    if not isinstance(data, dict):
        return {}
    return {metric_name(k): float(v) for k, v in data.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _log(uri: str, args, argv: list[str], rc: int, started: float, status: str) -> None:
    from expspec.kernels.config import registry, resolve_scale
    from expspec.kernels.provenance import git_commit
    from expspec.kernels.tracking.curves import step_curves

    command = getattr(args, "command", "") or "expspec"
    family = command.replace("-", "_") if command.replace("-", "_") in registry() else command
    commit = git_commit(Path.cwd())
    tags = {"expspec.argv": "expspec " + " ".join(argv), "expspec.git_commit": commit,
            "mlflow.source.git.commit": commit.split("+")[0] if commit != "unknown" else None,
            "mlflow.source.name": "expspec", "expspec.scale": args.scale,
            "expspec.profile": args.profile or "(built-in)", "expspec.set": " ".join(args.set) or None,
            "expspec.session": time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))}
    params = {"scale": args.scale}
    try:
        params.update(knob_params(resolve_scale(args.scale, args.profile, list(args.set)), family))
    except ExpspecError:
        pass  # the command ran with what it resolved itself; the tags still say what was asked
    outputs, logs = _outputs(args)
    logs.update({path.stem: path for path in outputs if path.suffix in STEP_LOG_SUFFIXES})
    metrics, curves = {}, {}
    for path in outputs:
        for name, value in _json_numbers(path).items():
            metrics.setdefault(f"{path.stem}/{name}" if len(outputs) > 1 else name, value)
    found = {label: c for label, path in logs.items() if path.stat().st_size <= MAX_ARTIFACT_BYTES
             and (c := step_curves(path))}
    for label, series in found.items():
        for name, points in series.items():
            curves[metric_name(f"{label}/{name}") if len(found) > 1 else name] = points
    try:
        tracker = Tracker(uri, " ".join(["expspec", *argv[:2]]), tags, kind="command")
        run_id = tracker.parent(family, params)
        tracker.log_metrics(run_id, metrics, curves)
        for path in outputs:
            tracker.client.log_artifact(run_id, str(path), "outputs")
        tracker.finish(status, {"expspec.exit_status": str(rc),
                                "expspec.wall_s": f"{time.time() - started:.1f}"})
    except Exception as exc:  # the command's own result stands; say why it is not in the store
        print(f"expspec: warning: tracking store {uri}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
              file=sys.stderr)
