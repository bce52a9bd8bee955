"""The ``expspec`` command: run experiment steps by hand, with the same config as pytest.

Every subcommand takes ``--scale smoke|hero``, ``--profile PATH`` and ``--set
family.key=value`` and resolves them through the same function as the pytest plugin
(``config.resolve_scale``): the scale's built-in profile unless ``--profile`` is given,
then the environment, then ``--set``. ``--device`` defaults to the pytest rule (the
first visible CUDA device, else cpu). Bad input prints one line (``expspec: error:
...``), writes nothing and exits 2.

    expspec config [--scale S] [--profile P] [--set family.key=value ...]   the resolved config
    expspec models                                                          prepare the shipped models
    expspec train --config C --data D --out-dir O                           one training run (what torchrun runs)
    expspec history [--family F] [--metric M] [--last N]                    tracked sessions' metrics, side by side
    expspec <family> ...                                                    each family's steps

Families add their subcommands through their registered ``Family.cli`` hook. A pipeline
command (one that resolves the config: it takes ``--scale``) is logged to the MLflow
store as a run in its family's experiment once it finishes (``--tracking-uri``,
``--tracking``, ``--no-tracking`` as in pytest; default ``sqlite:///reports/mlflow.db``):
tags (argv, commit, exit status), the resolved knobs as params, the numbers at the top of
its JSON outputs as metrics, step logs among them as curves, its output files as
artifacts. The store is checked before the command runs; bad input writes nothing there.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from expspec.kernels.config import SCALES, registry, resolve_scale
from expspec.kernels.errors import ExpspecError


def add_config_args(parser: argparse.ArgumentParser, device: bool = False, tracking: bool = True) -> None:
    """--scale/--profile/--set (and --device) on a subcommand; a pipeline command (tracking)
    also gets --tracking-uri/--tracking/--no-tracking."""
    group = parser.add_argument_group("config (as in pytest)")
    group.add_argument("--scale", choices=SCALES, default="smoke",
                       help="the built-in profile to start from (default: smoke)")
    group.add_argument("--profile", default=None, metavar="PATH",
                       help="a profile TOML used instead of the scale's built-in one")
    group.add_argument("--set", action="append", default=[], metavar="FAMILY.KEY=VALUE",
                       help="override one knob (repeatable)")
    if device:
        group.add_argument("--device", default=None,
                           help="cpu, cuda or cuda:N (default: the first visible CUDA device, else cpu)")
    if tracking:
        add_tracking_args(parser)


def add_tracking_args(parser: argparse.ArgumentParser, modes: bool = True) -> None:
    from expspec.kernels.tracking.store import MODES

    group = parser.add_argument_group("results history (MLflow)")
    group.add_argument("--tracking-uri", default=None, metavar="URI",
                       help="tracking store (default: MLFLOW_TRACKING_URI, else sqlite:///reports/mlflow.db)")
    if modes:
        group.add_argument("--tracking", default=None, choices=MODES,
                           help="required (default): an unusable store is an error; optional: warn, go on; off")
        group.add_argument("--no-tracking", action="store_true", help="log nothing (= --tracking=off)")


def config_from_args(args, extra_sets: list[str] | None = None) -> dict:
    """The resolved config of a subcommand; ``extra_sets`` (from flags) come after --set."""
    return resolve_scale(args.scale, args.profile, list(args.set) + list(extra_sets or []))


def out_path(path: str | None):
    """An --out file path (None passes through); a folder there is an error, before any work."""
    from pathlib import Path

    if path is None:
        return None
    out = Path(path)
    if out.is_dir():
        raise ExpspecError(f"--out {out}: is a directory, expected a file path")
    return out


def device_from_args(args) -> str:
    from expspec.kernels.devices import parse_devices

    return parse_devices(args.device)[0]


def cmd_config(args) -> int:
    from expspec.kernels.atomic_io import jsonable

    print(json.dumps(jsonable(config_from_args(args)), indent=2))
    return 0


def cmd_models(args) -> int:
    """Dequantise/cache SmolLM2 and check MiniLM, so the first test does not pay for it."""
    import time

    from expspec.kernels.models.pretrained import load_causal_lm, load_sentence_encoder, resolve_model_path

    t0 = time.time()
    model, _ = load_causal_lm(args.causal_lm)
    print(f"causal LM {args.causal_lm}: {sum(p.numel() for p in model.parameters()):,} params "
          f"from {resolve_model_path(args.causal_lm)} ({time.time() - t0:.1f} s)")
    t0 = time.time()
    enc, _ = load_sentence_encoder(args.sentence_encoder)
    print(f"sentence encoder {args.sentence_encoder}: {sum(p.numel() for p in enc.parameters()):,} params "
          f"({time.time() - t0:.1f} s)")
    return 0


def cmd_train(args) -> int:
    """One training run of the shared trainer: the entry torchrun calls for DDP
    (``torchrun --nproc-per-node K --no-python expspec train ...``)."""
    from expspec.kernels.train.launch import main as launch

    return launch(["--config", args.config, "--data", args.data, "--out-dir", args.out_dir,
                   "--threads", str(args.threads)])


def _when(text: str, flag: str) -> float:
    """An epoch time from ``2026-11-20`` (UTC midnight), an ISO date-time, or an age ``7d`` / ``12h``."""
    import re
    from datetime import datetime, timezone

    if match := re.fullmatch(r"(\d+(?:\.\d+)?)([dhm])", text.strip()):
        return time.time() - float(match.group(1)) * {"d": 86400, "h": 3600, "m": 60}[match.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ExpspecError(f"{flag}: expected a date (2026-11-20), a date-time or an age (7d, 12h), "
                           f"got {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def cmd_cache_info(args) -> int:
    from collections import defaultdict

    from expspec.kernels.run_cache import cache_entries, orphan_work_dirs

    root = Path(args.reports_dir) / "cache"
    entries = cache_entries(root)
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for e in entries:
        groups[(e.family, e.step)].append(e)
    print(f"{'family':10s} {'step':24s} {'entries':>7s} {'size':>10s}  last used (UTC)")
    for (family, step), group in sorted(groups.items()):
        last = max(e.last_used for e in group)
        print(f"{family:10s} {step:24s} {len(group):7d} {_size(sum(e.bytes for e in group)):>10s}  "
              f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(last))}")
    orphans = orphan_work_dirs(root)
    print(f"total: {len(entries)} entries, {_size(sum(e.bytes for e in entries))} in {root}"
          + (f"; {len(orphans)} dead work dir(s) (prune removes them)" if orphans else ""))
    return 0


def cmd_cache_prune(args) -> int:
    from expspec.kernels.run_cache import prune_cache

    before = _when(args.older_than, "--older-than") if args.older_than else None
    unused = _when(args.unused_since, "--unused-since") if args.unused_since else None
    root = Path(args.reports_dir) / "cache"
    if not root.is_dir():
        raise ExpspecError(f"run cache {root}: no such directory")
    removed, orphans = prune_cache(root, created_before=before, unused_since=unused, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for e in removed:
        print(f"{verb} {e.key} ({_size(e.bytes)}, last used "
              f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(e.last_used))})")
    print(f"{verb} {len(removed)} entries ({_size(sum(e.bytes for e in removed))}) and "
          f"{len(orphans)} dead work dir(s) from {root}")
    return 0


def _add_cache_commands(sub) -> None:
    p = sub.add_parser("cache", help="the run cache: its size; prune old or unused entries")
    cache = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    q = cache.add_parser("info", help="entries and bytes per family and step")
    q.add_argument("--reports-dir", default="reports")
    q.set_defaults(func=cmd_cache_info)
    q = cache.add_parser("prune", help="remove entries created before a date or not used since one",
                         description="An entry is used when a session or a command reads or computes it, so "
                                     "after a run of the current config, --unused-since <its start> removes "
                                     "every entry that config no longer uses. Entries locked by a running "
                                     "process are left alone; dead computations' work dirs are removed.")
    q.add_argument("--reports-dir", default="reports")
    q.add_argument("--older-than", metavar="WHEN", help="created before WHEN: 2026-11-20, a date-time, or 7d / 12h ago")
    q.add_argument("--unused-since", metavar="WHEN", help="not read or computed since WHEN (same forms)")
    q.add_argument("--dry-run", action="store_true", help="list what would go, remove nothing")
    q.set_defaults(func=cmd_cache_prune)


def cmd_history(args) -> int:
    from expspec.kernels.tracking.history import history_table
    from expspec.kernels.tracking.store import check_store, open_client, resolve_uri

    if args.last < 1:
        raise ExpspecError(f"--last {args.last}: expected a number of sessions >= 1")
    uri = resolve_uri(args.tracking_uri, "reports")
    check_store(uri, must_exist=True)
    print(history_table(open_client(uri), uri, args.family, args.metric, args.last))
    return 0


def _family_hook(spec: str):
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="expspec",
        description="Run the steps of language-model experiments by hand, resolving scale, "
                    "profile and overrides exactly as expspec's pytest plugin does.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("config", help="print the resolved config as JSON")
    add_config_args(p, tracking=False)
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("history", help="the last sessions' metrics from the MLflow store, side by side")
    p.add_argument("--family", default=None, help="one family (default: every tracked family)")
    p.add_argument("--metric", default=None, metavar="M",
                   help="only metrics named M, or matching a glob like 'pass_at_*'")
    p.add_argument("--last", type=int, default=5, metavar="N", help="sessions per family, newest first (default 5)")
    add_tracking_args(p, modes=False)
    p.set_defaults(func=cmd_history)
    p = sub.add_parser("models", help="load (and cache) the shipped pretrained models")
    p.add_argument("--causal-lm", default="smollm2-135m-instruct")
    p.add_argument("--sentence-encoder", default="all-minilm-l6-v2")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("train", help="one training run from a config + token file (torchrun's entry)")
    p.add_argument("--config", required=True, help="JSON with every TrainConfig field")
    p.add_argument("--data", required=True, help=".npz with train, val, token_bytes arrays")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = torch's choice)")
    p.set_defaults(func=cmd_train)
    _add_cache_commands(sub)
    for family in registry().values():
        if family.cli:
            try:
                hook = _family_hook(family.cli)
            except (ImportError, AttributeError) as exc:  # one broken family never hides the others
                _broken_family(sub, family.name, family.cli, exc)
                continue
            hook(sub)
    return parser


def _broken_family(sub, name: str, spec: str, exc: Exception) -> None:
    problem = f"{type(exc).__name__}: {exc}"

    def fail(_args) -> int:
        raise ExpspecError(f"the {name} family's commands did not load ({spec}: {problem})")

    p = sub.add_parser(name.replace("_", "-"), help=f"(not loaded: {problem})")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=fail)


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if hasattr(args, "no_tracking"):
            from expspec.kernels.tracking.command import run_tracked

            return run_tracked(args, sys.argv[1:] if argv is None else list(argv))
        return int(args.func(args) or 0)
    except ExpspecError as err:
        print(f"expspec: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path argument the OS refuses (name too long, permission, ...)
        print(f"expspec: error: {err.filename or ''}: {err.strerror or err}".replace(": :", ":"), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
