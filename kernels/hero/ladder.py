"""The action plan's phase ladder, automated and resumable.

Stage A trains once (``stage_a-<digest>/``, keyed by everything Stage A reads) and is never
retrained by a rung. Each rung resumes from its checkpoint, trains Stage B with the rung's
config delta (a fresh LoRA from the same seed), evaluates, scores the checklist and follows
the plan's decision tree:

* Phase 1 - ``phase1``: Stage B as configured (the plan's "extend Stage B, 4 -> 8 epochs"
  is the configured ``stage_b_epochs``).
* F1 = 0 with peak first_acc >= the bar -> exposure bias -> Phase 3 (scheduled sampling,
  eps annealed 1.0 -> 0.5 over the rung's Stage B).
* otherwise -> the Phase 2 experiments in order (A: first-token CE weight
  ``ladder_first_token_weight``; B: ``ladder_epochs_factor`` x the Stage B epochs; C: cosine LR
  from ``ladder_lr`` to ``lr_min``), then Phase 3.
* the first rung whose checklist passes stops the ladder: hero (Phase 4) may start.

Rung folders hold diagnostics (Stage A's records, then the rung's), eval files, the
checkpoint and ``result.json``; ``ladder.json`` lists the rungs (delta, checklist, decision,
wall time). A rung without ``result.json`` (killed) is cleared and rerun - or, with
``hero.checkpoint_every``, resumed from its newest mid-stage checkpoint, as is an unfinished
Stage A (the mid-stage checkpoints go once the stage's result is written); finished rungs are
read back, so a warm rerun loads no model at all.

``hero.resume_from``: a user's proven Stage A checkpoint replaces our Stage A (copied into
``resumed-<digest>/``, its shape checked before anything trains). Keys hold what the knobs'
names do not say (``input_fingerprints``): the decoder's and encoder's files, a dataset
folder's train.json/dev.json, the resumed checkpoint's bytes. ``hero.nproc_per_node`` > 1
trains each stage under torchrun (``launch``); the process layout is not part of a key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from expspec.kernels import progress
from expspec.kernels.atomic_io import read_json, write_json_atomic
from expspec.kernels.errors import ExpspecError
from expspec.kernels.hero.checklist import checklist, decision, hero_projection, run_series
from expspec.kernels.hero.checkpoints import latest_mid_checkpoint, prune_mid_checkpoints
from expspec.kernels.hero.diagnostics import read_diagnostics
from expspec.kernels.hero.schedules import linear_decay_for, optimizer_steps

# Knobs Stage A never reads: a change to one of them reuses the Stage A checkpoint.
NOT_STAGE_A = frozenset({"stage_b_samples", "stage_b_epochs", "ss_schedule", "ss_k", "ss_c", "ss_eps_min",
                         "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_layers", "lora_lr",
                         "min_peak_first_acc", "min_final_over_peak", "min_f1_nonzero_examples", "min_mean_f1",
                         "max_grad_norm", "max_repetition_rate", "min_prior_margin", "work_dir",
                         "ladder_first_token_weight", "ladder_epochs_factor", "ladder_lr", "resume_optimizer",
                         "resume_from", "nproc_per_node", "checkpoint_every", "keep_checkpoints",
                         "dist_timeout_min"})
# Never in a key: where things go, the checkpoint's path (its bytes are), the process layout, how
# often a stage checkpoints (a resumed stage ends bit-exactly where an uninterrupted one does).
NOT_IN_KEYS = frozenset({"work_dir", "resume_from", "nproc_per_node", "checkpoint_every", "keep_checkpoints",
                         "dist_timeout_min"})
PHASE2 = ("phase2_first_token_weight", "phase2_more_epochs", "phase2_cosine_lr")
PHASE3 = "phase3_scheduled_sampling"
RUNGS = ("phase1", *PHASE2, PHASE3)


def rung_delta(name: str, cfg: Mapping[str, Any]) -> dict:
    """The config changes a rung makes (to Stage B and the eval)."""
    if name == "phase1":
        return {}
    if name == "phase2_first_token_weight":
        return {"first_token_weight": cfg["ladder_first_token_weight"]}
    if name == "phase2_more_epochs":
        return {"stage_b_epochs": cfg["stage_b_epochs"] * cfg["ladder_epochs_factor"]}
    if name == "phase2_cosine_lr":
        return {"lr_schedule": "cosine", "lora_lr": cfg["ladder_lr"]}
    if name == PHASE3:
        steps = optimizer_steps(cfg["stage_b_samples"], cfg["stage_b_epochs"], cfg["batch_size"], cfg["grad_accum"])
        return {"ss_schedule": "linear", "ss_k": 1.0, "ss_eps_min": 0.5, "ss_c": linear_decay_for(1.0, 0.5, steps)}
    raise ExpspecError(f"hero ladder: unknown rung {name!r} (expected one of {', '.join(RUNGS)})")


def next_rung(done: list[dict]) -> str | None:
    """The decision tree: which rung follows the ones done (None = stop)."""
    if not done:
        return "phase1"
    last = done[-1]
    if last["decision"]["ready"]:
        return None
    tried = {r["name"] for r in done}
    if last["decision"]["diagnosis"] == "exposure_bias" and PHASE3 not in tried:
        return PHASE3
    for name in (*PHASE2, PHASE3):
        if name not in tried:
            return name
    return None


def _digest(values: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


def input_fingerprints(cfg: Mapping[str, Any]) -> dict:
    """What a name does not pin down: the decoder's and encoder's files (``model_fingerprint``),
    a dataset folder's train.json and dev.json, and a resumed checkpoint, by content."""
    from expspec.kernels.models.pretrained import model_fingerprint
    from expspec.kernels.provenance import file_fingerprint

    out = {"decoder_files": model_fingerprint(cfg["decoder_model"]),
           "encoder_files": model_fingerprint(cfg["encoder_model"])}
    source = cfg["qa_dataset"]
    if source != "generated" and not source.startswith("hf:"):
        out["qa_files"] = {name: file_fingerprint(Path(source) / name) for name in ("train.json", "dev.json")}
    if cfg["resume_from"]:
        out["resume_from"] = file_fingerprint(cfg["resume_from"])
    return out


def processes(nproc_per_node: int, device: str, devices: list[str] | None = None) -> int:
    """Processes per stage. ``devices``: the devices this process may use (default: ``device``
    alone; an xdist worker owns only its own). 0 = one per visible CUDA device when this
    process owns every one of them (torchrun's rank r takes cuda:r), else 1 on ``device``.
    More processes than visible GPUs on a CUDA run is a one-line error."""
    cuda = str(device).startswith("cuda")
    if not cuda:
        return nproc_per_node or 1
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if nproc_per_node == 0:
        owned = {"cuda:0" if d == "cuda" else d for d in (devices or [str(device)])}
        return visible if visible > 1 and {f"cuda:{i}" for i in range(visible)} <= owned else 1
    if nproc_per_node > visible:
        raise ExpspecError(f"hero.nproc_per_node = {nproc_per_node}: only {visible} CUDA devices are visible "
                           f"(one process per GPU; 0 = one per GPU this worker owns)")
    return nproc_per_node


class HeroLadder:
    """One recipe's Stage A and ladder under ``root`` (models and data loaded only if needed)."""

    def __init__(self, cfg: Mapping[str, Any], seed: int, root: Path, device: str = "cpu",
                 log: Callable[[str], None] = print, devices: list[str] | None = None):
        from expspec.kernels.run_cache import code_fingerprint

        self.cfg, self.seed, self.device, self.log = dict(cfg), seed, device, log
        self.resume = Path(self.cfg["resume_from"]) if self.cfg["resume_from"] else None
        self.nproc = processes(self.cfg["nproc_per_node"], device, devices)  # devices: what this process owns
        # Stage A: the training code and knobs it reads (not the checklist's), the size of the
        # generated set (its questions depend on it), the device type (fp32 on CPU, bf16 on CUDA),
        # the model and data files; a resumed Stage A: the checkpoint's bytes
        self.inputs = input_fingerprints(self.cfg)
        train_code = code_fingerprint(["expspec.kernels.hero.stages"])["hash"]
        code = code_fingerprint(["expspec.kernels.hero.ladder"])["hash"]
        stage_a_knobs = {k: v for k, v in self.cfg.items() if k not in NOT_STAGE_A}
        context = {"seed": seed, "device": str(device).split(":")[0], **self.inputs,
                   "n_train": max(self.cfg["stage_a_samples"], self.cfg["stage_b_samples"])}
        stage_a_name = "resumed" if self.resume else "stage_a"
        self.stage_a_dir = root / f"{stage_a_name}-{_digest({**stage_a_knobs, **context, 'code': train_code})}"
        ladder_knobs = {k: v for k, v in self.cfg.items() if k not in NOT_IN_KEYS}
        self.dir = root / f"ladder-{_digest({**ladder_knobs, **context, 'code': code})}"
        self._models = self._train = self._evals = None

    # --- lazily loaded ------------------------------------------------------------------
    def _load(self):
        if self._models is None:
            from expspec.kernels.hero.model import load_models, prepare
            from expspec.kernels.hero.qa_data import load_questions

            c = self.cfg
            with progress.stage("hero load"):
                train, evals = load_questions(c["qa_dataset"], max(c["stage_a_samples"], c["stage_b_samples"]),
                                              c["eval_samples"], c["qa_seed"], c["qa_multi_token_share"],
                                              c["qa_max_facts"])
                self._models = load_models(c, self.device)
                self._train = prepare(self._models, train)
                self._evals = prepare(self._models, evals)
        return self._models, self._train, self._evals

    def _release(self) -> None:
        """Free this process's models before a torchrun job loads its own."""
        if self._models is not None:
            import gc

            import torch

            self._models = self._train = self._evals = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _latent(self, checkpoint: Path | None = None):
        """(a fresh prefix from the seed, or one loaded from ``checkpoint``; the checkpoint's state or None)."""
        from expspec.kernels.hero.checkpoints import load_stage
        from expspec.kernels.hero.model import build_latent

        models, _, _ = self._load()
        latent = build_latent(models, self.cfg, self.seed)
        state = load_stage(models, latent, checkpoint, self.cfg) if checkpoint is not None else None
        return latent, state

    def _optimizer_state(self, state: dict) -> dict | None:
        if not self.cfg["resume_optimizer"]:
            return None
        if "optimizer" not in state:
            self.log(f"hero: no optimizer state in {self.stage_a_dir / 'stage_a.pt'}: Stage B starts a fresh AdamW")
        return state.get("optimizer")

    # --- Stage A, the text baseline, a rung -------------------------------------------------
    def stage_a(self) -> dict:
        done = self.stage_a_dir / "stage_a.json"
        if done.is_file() and (self.stage_a_dir / "stage_a.pt").is_file():
            prune_mid_checkpoints(self.stage_a_dir, "A", 0)  # a kill may have come between the two
            return read_json(done)
        mid = self._unfinished(self.stage_a_dir, "A") if self.resume is None else None
        if mid is None:
            shutil.rmtree(self.stage_a_dir, ignore_errors=True)
            self.stage_a_dir.mkdir(parents=True)
        if self.resume is not None:
            result = self._resumed_stage_a()
        elif self.nproc > 1:
            from expspec.kernels.hero.launch import launch_stage

            self._release()
            self.log(f"hero: Stage A ({self.stage_a_dir.name}) under torchrun, {self.nproc} processes")
            result = launch_stage(self._job("A", self.cfg, self.stage_a_dir, mid_checkpoint=mid and str(mid)),
                                  self.nproc)
        else:
            from expspec.kernels.hero.stages import train_stage

            models, train, evals = self._load()
            self.log(f"hero: Stage A ({self.stage_a_dir.name})")
            with progress.stage("hero stage A"):
                result = train_stage("A", models, self._latent()[0], train, evals, self.cfg, self.stage_a_dir,
                                     self.seed, resume=mid)
        write_json_atomic(done, result)
        prune_mid_checkpoints(self.stage_a_dir, "A", 0)  # superseded by stage_a.pt
        return result

    def _unfinished(self, folder: Path, stage: str) -> Path | None:
        """The newest mid-stage checkpoint an unfinished stage in ``folder`` resumes from (logged), or None."""
        mid = latest_mid_checkpoint(folder, stage) if folder.is_dir() else None
        if mid is not None:
            self.log(f"hero: Stage {stage} in {folder.name} resumes from {mid.name}")
        return mid

    def _resumed_stage_a(self) -> dict:
        """The user's Stage A: copied (its fingerprint checked again), its shape checked against
        this config's prefix before anything trains; no Stage A diagnostics of ours."""
        from expspec.kernels.provenance import file_fingerprint

        _, state = self._latent(self.resume)  # one line naming the file and the field when the shape differs
        if state.get("stage") != "A" or "lora" in state:
            raise ExpspecError(f"hero.resume_from {self.resume}: a Stage {state.get('stage')} checkpoint; "
                               f"expected a Stage A one (stage_a.pt)")
        copy_to, tmp = self.stage_a_dir / "stage_a.pt", self.stage_a_dir / ".stage_a.pt.tmp"
        shutil.copyfile(self.resume, tmp)
        if file_fingerprint(tmp) != self.inputs["resume_from"]:
            raise ExpspecError(f"hero.resume_from {self.resume}: the file changed since this ladder started")
        os.replace(tmp, copy_to)
        for name in ("diagnostics.jsonl", "diagnostics_epoch.jsonl"):
            (self.stage_a_dir / name).touch()
        self.log(f"hero: Stage A resumed from {self.resume} (step {state.get('global_step', 0)})")
        return {"stage": "A", "steps": 0, "global_step_end": int(state.get("global_step", 0)),
                "resumed_from": str(self.resume), "resume_fingerprint": self.inputs["resume_from"],
                "has_optimizer_state": "optimizer" in state, "checkpoint": str(copy_to)}

    def _job(self, stage: str, cfg: Mapping[str, Any], out_dir: Path, **extra) -> dict:
        return {"hero": dict(cfg), "seed": self.seed, "stage": stage, "out_dir": str(out_dir),
                "device": str(self.device), **{k: v for k, v in extra.items() if v is not None}}

    def text_baseline(self) -> dict:
        path = self.stage_a_dir / "text_baseline.json"
        if path.is_file():
            return read_json(path)
        from expspec.kernels.hero.stages import text_baseline

        models, _, evals = self._load()
        with progress.stage("hero text baseline"):
            aggregates, rows = text_baseline(models, evals, self.cfg)
        write_json_atomic(path, {"aggregates": aggregates, "rows": rows})
        return read_json(path)

    def rung(self, index: int, name: str) -> dict:
        folder = self.dir / f"{index}_{name}"
        if (folder / "result.json").is_file():
            prune_mid_checkpoints(folder, "B", 0)
            return read_json(folder / "result.json")
        from expspec.kernels.hero.stages import evaluate, train_stage

        mid = self._unfinished(folder, "B")
        if mid is None:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        stage_a = self.stage_a()
        baseline = self.text_baseline()
        delta = rung_delta(name, self.cfg)
        cfg = {**self.cfg, **delta}
        if mid is None:  # a resumed rung's files already start with them
            shutil.copyfile(self.stage_a_dir / "diagnostics.jsonl", folder / "diagnostics.jsonl")
            shutil.copyfile(self.stage_a_dir / "diagnostics_epoch.jsonl", folder / "diagnostics_epoch.jsonl")
        self.log(f"hero: rung {index} {name} {delta or ''}")
        started = time.perf_counter()
        if self.nproc > 1:  # every rank trains, rank 0 evaluates; this process holds no model meanwhile
            from expspec.kernels.hero.launch import launch_stage

            self._release()
            stage_b = launch_stage(self._job("B", cfg, folder, resume=str(self.stage_a_dir / "stage_a.pt"),
                                             resume_optimizer=cfg["resume_optimizer"],
                                             start_step=stage_a["global_step_end"], mid_checkpoint=mid and str(mid),
                                             text_rows=str(self.stage_a_dir / "text_baseline.json")), self.nproc)
            evaluation = stage_b.pop("eval")
        else:
            models, train, evals = self._load()
            latent, state = self._latent(self.stage_a_dir / "stage_a.pt")
            self._reset_lora(models)
            with progress.stage(f"hero {name}"):
                stage_b = train_stage("B", models, latent, train, evals, cfg, folder, self.seed,
                                      start_step=stage_a["global_step_end"],
                                      optimizer_state=self._optimizer_state(state), resume=mid)
                evaluation = evaluate(models, latent,
                                      train.questions[:max(cfg["stage_a_samples"], cfg["stage_b_samples"])],
                                      evals, cfg, folder, baseline["rows"])
        points, _ = read_diagnostics(folder / "diagnostics.jsonl")
        series = run_series(points)
        checks = checklist(series, evaluation, cfg)
        result = {"index": index, "name": name, "delta": delta, "config": cfg, "stage_a": stage_a,
                  "stage_b": stage_b, "series": series, "eval": evaluation, "text_baseline": baseline["aggregates"],
                  "checks": checks, "decision": decision(checks, series, evaluation, cfg),
                  "projection": hero_projection(evaluation["latent"]["mean_f1"]),
                  "wall_s": time.perf_counter() - started, "folder": str(folder)}
        write_json_atomic(folder / "result.json", result)
        prune_mid_checkpoints(folder, "B", 0)  # superseded by stage_b.pt
        return read_json(folder / "result.json")

    def _reset_lora(self, models) -> None:
        """Every rung starts Stage B from the same fresh LoRA (peft's init, seeded)."""
        import torch

        if models.lora is None:
            return
        from peft import set_peft_model_state_dict

        if not hasattr(self, "_lora_init"):
            raise ExpspecError("hero ladder: LoRA exists without its initial state")
        set_peft_model_state_dict(models.lora, copy.deepcopy(self._lora_init))
        for param in models.lora.parameters():
            param.grad = None
        torch.manual_seed(self.seed)

    def run(self, max_rungs: int | None = None) -> dict:
        """Climb until a rung passes or the tree ends; returns (and writes) ladder.json.
        One climber per work dir at a time (a file lock): the CLI and a pytest session never
        clear each other's unfinished folders."""
        from filelock import FileLock

        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.dir.parent / ".hero.lock")):
            return self._run(max_rungs)

    def _run(self, max_rungs: int | None) -> dict:
        from expspec.kernels.hero.model import add_lora

        done: list[dict] = []
        while (name := next_rung(done)) is not None and (max_rungs is None or len(done) < max_rungs):
            folder = self.dir / f"{len(done)}_{name}"
            if not (folder / "result.json").is_file() and self.nproc == 1:
                models, _, _ = self._load()
                self.stage_a()  # before LoRA exists: Stage A never touches (or leaves gradients on) it
                if models.lora is None:  # the fresh LoRA every rung starts from
                    import torch
                    from peft import get_peft_model_state_dict

                    torch.manual_seed(self.seed)
                    add_lora(models, self.cfg)
                    self._lora_init = copy.deepcopy(get_peft_model_state_dict(models.lora))
            done.append(self.rung(len(done), name))
            self._write(done)
        return self._write(done)

    def _write(self, done: list[dict]) -> dict:
        final = done[-1] if done else None
        ladder = {"stage_a_dir": str(self.stage_a_dir), "dir": str(self.dir), "seed": self.seed,
                  "resume_from": str(self.resume) if self.resume else None, "inputs": self.inputs,
                  "nproc_per_node": self.nproc,
                  "ready": bool(final and final["decision"]["ready"]),
                  "final_rung": final["name"] if final else None,
                  "rungs": [{"index": r["index"], "name": r["name"], "delta": r["delta"],
                             "checks": {k: v["passed"] for k, v in r["checks"].items()},
                             "decision": r["decision"], "mean_f1": r["eval"]["latent"]["mean_f1"],
                             "peak_first_acc": r["series"]["peak_first_acc"], "wall_s": r["wall_s"],
                             "folder": r["folder"]} for r in done]}
        write_json_atomic(self.dir / "ladder.json", ladder)
        return ladder
