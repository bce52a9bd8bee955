"""Lane B's work dir and its training runs: built-in, under torchrun, or nanochat.

``LaneB`` is the resolved config plus the work dir every step works in (a person runs
steps one by one, the fixtures run them all, a file from a real GPU run drops in).
``train_run`` trains one run into ``runs/<run_id>/`` and keeps its RunSummary as
``run.json``: a finished run is never trained again, so a killed pipeline resumes, and
an unfinished one resumes from its last mid-run checkpoint, or starts over in a clean folder. Run ids hash the whole training
recipe, so a reused work dir never mixes configs.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from expspec.kernels.atomic_io import json_number, read_json, write_json_atomic
from expspec.kernels.errors import ExpspecError
from expspec.kernels.train.summary import RunSummary
from expspec.kernels.train.training_log import parse_training_log

THRESHOLD_ENV = "LANE_B_TARGET_THRESHOLD"


@dataclass
class TrainData:
    train: np.ndarray
    val: np.ndarray
    token_bytes: np.ndarray
    tokenizer_id: str
    corpus_fingerprint: str


@dataclass
class LaneB:
    """The resolved config + work dir every step works in."""

    lane_b: dict
    common: dict
    work_dir: Path
    device: str = "cpu"
    log: Callable[[str], None] = print
    stats_fn: Callable[["LaneB"], dict] | None = None  # injects a cached stats.json producer

    def __post_init__(self):
        self.work_dir = Path(self.work_dir)

    @cached_property
    def split(self):
        from expspec.kernels.data.corpus import load_corpus

        return load_corpus(self.common["corpus"], self.common["val_fraction"])

    @cached_property
    def data(self) -> TrainData:
        from expspec.kernels.data.tokenizer import get_tokenizer

        tok = get_tokenizer(self.lane_b["train_tokenizer"], [d.text for d in self.split.train],
                            self.split.fingerprint)
        return TrainData(tok.encode_documents([d.text for d in self.split.train]),
                         tok.encode_documents([d.text for d in self.split.val]),
                         tok.token_bytes, tok.id, self.split.fingerprint)

    def path(self, name: str) -> Path:
        """A file of the work dir (created on first use, so a refused step leaves nothing)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self.work_dir / name

    @cached_property
    def recipe_digest(self) -> str:
        """What a training run depends on besides its seed and length: the trainer knobs, the
        data (the corpus split's fingerprint, not just its name), the backend, and for the
        built-in trainer the source of the training code (its import closure), so a trainer
        fix never reuses a run the old code trained. Process layout (nproc_per_node, nnodes)
        is not part of it: DDP trains the same run."""
        from expspec.kernels.run_cache import code_fingerprint

        recipe = _train_config(self, seed=0).to_dict()
        for varies in ("seed", "device", "resume_from", "checkpoint_every", "keep_checkpoints", "num_iterations",
                       "target_param_data_ratio", "target_threshold"):
            recipe.pop(varies)
        recipe.update({k: self.lane_b[k] for k in ("dataset_id", "train_tokenizer", "backend", "nanochat_command")})
        recipe.update(split=self.split.fingerprint)
        if self.lane_b["backend"] == "builtin":
            recipe.update(code=code_fingerprint(["expspec.kernels.train.loop", "expspec.kernels.train.torchrun"])["hash"])
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]

    def run_id(self, kind: str, seed: int) -> str:
        """Stable per (training recipe, kind, seed): a run of the same recipe is reused and its
        rows are skipped; any recipe change (LR shape, eval set, backend, corpus split, trainer
        code...) is a new id. ``kind`` carries what varies per run (iterations or ratio)."""
        return f"laneb-{self.lane_b['dataset_id']}-d{self.lane_b['depth']}-{kind}-s{seed}-{self.recipe_digest[:8]}"

    def threshold(self) -> float:
        """lane_b.target_threshold, else threshold.env in the work dir (step 0's output)."""
        value = self.lane_b["target_threshold"]
        if math.isfinite(value):
            return float(value)
        env = self.work_dir / "threshold.env"
        if env.is_file():
            return read_env_value(env, THRESHOLD_ENV)
        raise ExpspecError(f"lane_b threshold: none set and {env} is missing: run `expspec lane-b baselines` "
                           f"first or set {THRESHOLD_ENV}")


def read_env_value(path: Path, name: str) -> float:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # a folder, bad UTF-8: no such line
        text = ""
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().removeprefix("export ").strip() == name:
            try:
                return float(value.strip().strip("'\""))
            except ValueError:
                break
    raise ExpspecError(f"{path}: expected a line {name}=<number>")


def _train_config(lb: LaneB, seed: int, **overrides):
    from expspec.kernels.train.config import TrainConfig

    return TrainConfig.from_lane_b(lb.lane_b, seed=seed, device=lb.device, **overrides)


def train_run(lb: LaneB, run_id: str, seed: int, threshold: float = float("nan"), **overrides) -> dict:
    """One training run (builtin or nanochat) -> its RunSummary as a dict, kept in
    runs/<run_id>/run.json. A finished run (its run.json exists) is never trained again;
    an unfinished one (killed mid-run) resumes from the last checkpoint it wrote
    (lane_b.checkpoint_every), else starts over in a clean folder."""
    out = lb.path("runs") / run_id
    done = out / "run.json"
    if done.is_file():
        return read_run_summary(done)
    builtin = lb.lane_b["backend"] == "builtin"  # the backend word is checked when the config is resolved
    resume = last_checkpoint(out) if builtin and out.is_dir() else None
    if resume is None:  # nothing to pick up: the killed attempt starts over in a clean folder
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
    else:
        overrides = {**overrides, "resume_from": str(resume)}
    if not builtin:
        summary = _nanochat_run(lb, run_id, seed, threshold, out, **overrides)
    else:
        cfg = _train_config(lb, seed, target_threshold=threshold, **overrides)
        length = cfg.num_iterations if cfg.num_iterations > 0 else f"ratio {cfg.target_param_data_ratio}"
        lb.log(f"[lane-b] train {run_id}: {length}" + (f", resumed from {resume.name}" if resume else ""))
        if lb.lane_b["nproc_per_node"] > 1 or lb.lane_b["nnodes"] > 1:  # DDP under torchrun
            from expspec.kernels.train.torchrun import launch_run, write_tokens

            data = write_tokens(lb.path("data"), lb.data.train, lb.data.val, lb.data.token_bytes)
            summary = launch_run(cfg, data, out, lb.lane_b["nproc_per_node"], nnodes=lb.lane_b["nnodes"],
                                 rdzv_endpoint=lb.lane_b["rdzv_endpoint"], run_id=run_id,
                                 node_launcher=lb.lane_b["node_launcher"])
        else:
            from expspec.kernels.train.loop import train

            summary = train(cfg, lb.data.train, lb.data.val, lb.data.token_bytes, log=lambda line: None,
                            out_dir=out, label=f"train {run_id}")
    summary.run_id, summary.seed = run_id, seed
    summary.log = str((out / "train.log").relative_to(lb.work_dir))
    summary.train_losses = []  # the log has them; run.json stays small
    write_json_atomic(done, summary.to_dict())
    return read_run_summary(done)


def last_checkpoint(out: Path) -> Path | None:
    """The latest mid-run checkpoint a killed run left in its folder (written atomically, so
    one that exists is whole), or None."""
    found = [(int(f.stem.split("_")[1]), f) for f in out.glob("checkpoint_[0-9]*.pt")
             if f.stem.split("_")[1].isdigit()]
    return max(found)[1] if found else None


def read_run_summary(path: Path) -> dict:
    """A run's run.json (its RunSummary), with the fields the steps and ``rescore`` read checked."""
    run = read_json(path, "run summary")

    def need(ok: bool, field: str, expected: str) -> None:
        if not ok:
            raise ExpspecError(f"run summary {path}: field {field}: expected {expected}")

    need(isinstance(run, dict), "(record)", "a JSON object (a RunSummary)")
    for key in ("run_id", "status", "log"):
        need(isinstance(run.get(key), str), key, "a string")
    evals, times = run.get("evals"), run.get("eval_train_times")
    need(isinstance(evals, list) and all(
        isinstance(e, list) and len(e) == 2 and isinstance(e[0], int) and not isinstance(e[0], bool)
        and json_number(e[1]) is not None for e in evals), "evals", "a list of [step, val_bpb] pairs")
    need(isinstance(times, list) and all(json_number(t) is not None for t in times), "eval_train_times",
         "a list of seconds")
    need(isinstance(run.get("horizon"), int) and not isinstance(run.get("horizon"), bool), "horizon", "an integer")
    need(json_number(run.get("dt_median_ms")) is not None, "dt_median_ms", "a number")
    return run


def _nanochat_run(lb: LaneB, run_id: str, seed: int, threshold: float, out: Path, **overrides) -> RunSummary:
    cwd = Path(lb.lane_b["nanochat_dir"] or ".").expanduser()
    if not cwd.is_dir():
        raise ExpspecError(f"lane_b.nanochat_dir {cwd}: no such folder (the nanochat checkout)")
    fields = dict(depth=lb.lane_b["depth"], seed=seed, run_id=run_id, threshold=threshold,
                  ratio=overrides.get("target_param_data_ratio", lb.lane_b["target_param_data_ratio"]),
                  num_iterations=overrides.get("num_iterations", lb.lane_b["num_iterations"]))
    try:
        command = lb.lane_b["nanochat_command"].format(**fields)
    except (KeyError, IndexError) as exc:
        raise ExpspecError(f"lane_b.nanochat_command: unknown placeholder {exc} "
                           f"(known: {', '.join(fields)})") from None
    lb.log(f"[lane-b] nanochat {run_id}: {command}")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ExpspecError(f"lane_b.nanochat_command: cannot split {command!r} ({exc})") from None
    with open(out / "train.log", "w", encoding="utf-8") as handle:
        try:
            proc = subprocess.run(argv, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)
        except OSError as exc:
            raise ExpspecError(f"lane_b.nanochat_command: cannot run {argv[0]!r} ({exc})") from None
    if proc.returncode != 0:
        raise ExpspecError(f"nanochat run {run_id} exited {proc.returncode}; its log is {out / 'train.log'}")
    return parse_training_log(out / "train.log").run_summary(threshold)
