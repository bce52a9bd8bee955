"""One hero training stage as a torchrun (DDP) job, and the launcher the ladder calls.

    torchrun --standalone --nproc-per-node K -m expspec.kernels.hero.launch --job DIR/launch_<a|b>.json

The job file holds the hero table, the seed, the stage, the device, the checkpoint the stage
resumes from (Stage B: Stage A's), the stage's own mid-stage checkpoint it continues from (if
the ladder found one; every rank loads it) and, for a rung, the text baseline's rows to evaluate
with. Every rank loads the models and data, builds the same prefix (and LoRA) from the seed
and runs ``train_stage``, which shards each micro-batch over the ranks and sums their
gradients (``ddp``): the same global batch trains like one process. Rank 0 alone writes the
diagnostics and the checkpoint, evaluates a rung, and writes ``stage_<a|b>.json``; meanwhile
the other ranks wait in a barrier, so the group's collective timeout is ``hero.dist_timeout_min``
(default 60 minutes, not NCCL's 10).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping

from expspec.kernels.atomic_io import read_json, write_json_atomic
from expspec.kernels.errors import ExpspecError
from expspec.kernels.train.torchrun import run_nodes, threads_per_process

ERROR_MARK = "expspec: error: "


def job_result_path(out_dir: Path, stage: str) -> Path:
    return Path(out_dir) / f"stage_{stage.lower()}.json"


def init_group(device: str, timeout_min: float) -> bool:
    """Under torchrun (WORLD_SIZE > 1): set this rank's GPU and start the process group with a
    ``timeout_min``-minute collective timeout (the other ranks wait in a barrier while rank 0
    evaluates a rung, which can outlast NCCL's 10-minute default). True when it started one."""
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=float(timeout_min)))
    return True


def run_job(job: Mapping[str, Any]) -> dict:
    """One rank's share of a stage (every rank calls this); rank 0's summary (+ ``eval``)."""
    import torch
    import torch.distributed as dist

    from expspec.kernels.hero.checkpoints import load_stage
    from expspec.kernels.hero.model import add_lora, build_latent, load_models, prepare
    from expspec.kernels.hero.qa_data import load_questions
    from expspec.kernels.hero.stages import evaluate, train_stage
    from expspec.kernels.train.launch import dist_setup

    cfg, seed, stage, out_dir = dict(job["hero"]), int(job["seed"]), job["stage"], Path(job["out_dir"])
    owned = init_group(job["device"], cfg.get("dist_timeout_min", 60))  # dist_setup keeps a group it finds
    rank, _, device, _ = dist_setup(SimpleNamespace(device=job["device"]))
    try:
        n_train = max(cfg["stage_a_samples"], cfg["stage_b_samples"])
        train_q, eval_q = load_questions(cfg["qa_dataset"], n_train, cfg["eval_samples"], cfg["qa_seed"],
                                         cfg["qa_multi_token_share"], cfg["qa_max_facts"])
        models = load_models(cfg, str(device))
        train, evals = prepare(models, train_q), prepare(models, eval_q)
        latent = build_latent(models, cfg, seed)  # the same initial prefix on every rank
        optimizer_state = None
        if job.get("resume"):
            state = load_stage(models, latent, Path(job["resume"]), cfg)
            optimizer_state = state.get("optimizer") if job.get("resume_optimizer") else None
        if stage == "B" and models.lora is None:  # the ladder's fresh LoRA: seeded, then the RNG reseeded
            torch.manual_seed(seed)
            add_lora(models, cfg)
            torch.manual_seed(seed)
        result = train_stage(stage, models, latent, train, evals, cfg, out_dir, seed,
                             start_step=int(job.get("start_step", 0)), optimizer_state=optimizer_state,
                             resume=Path(job["mid_checkpoint"]) if job.get("mid_checkpoint") else None)
        if rank == 0:
            if job.get("text_rows"):
                result["eval"] = evaluate(models, latent, train_q[:n_train], evals, cfg, out_dir,
                                          read_json(job["text_rows"], "text baseline")["rows"])
            write_json_atomic(job_result_path(out_dir, stage), result)
        if dist.is_initialized():
            dist.barrier()  # no rank leaves (and tears the group down) before rank 0 wrote
        return result
    finally:
        if owned:
            dist.destroy_process_group()


def launch_stage(job: Mapping[str, Any], nproc_per_node: int) -> dict:
    """Run a stage job under torchrun on this machine; rank 0's summary. A failed rank is
    one error line: the job's own error when it printed one, else the log to read."""
    out_dir, stage = Path(job["out_dir"]), job["stage"]
    job_file = write_json_atomic(out_dir / f"launch_{stage.lower()}.json", dict(job))
    threads = threads_per_process(nproc_per_node)  # this worker's cores split over the ranks
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc_per_node}",
               "-m", "expspec.kernels.hero.launch", "--job", str(job_file), "--threads", str(threads)]
    log = out_dir / f"torchrun_{stage.lower()}.log"
    result = job_result_path(out_dir, stage)
    result.unlink(missing_ok=True)
    # its own process group, stopped with it (^C, a failure) and dying with it (a SIGKILL)
    [code], _ = run_nodes([(command, shlex.join(command))], [log], {**os.environ, "OMP_NUM_THREADS": str(threads)})
    if code != 0 or not result.is_file():
        errors = [line[len(ERROR_MARK):].strip() for line in log.read_text(errors="replace").splitlines()
                  if line.startswith(ERROR_MARK)]
        raise ExpspecError(errors[0] if errors else
                           f"hero stage {stage} under torchrun ({nproc_per_node} processes) exited {code}; see {log}")
    return read_json(result, "hero stage result")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m expspec.kernels.hero.launch", description=__doc__.split("\n")[0])
    parser.add_argument("--job", required=True, help="the job file launch_stage writes (launch_<a|b>.json)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = torch's choice)")
    args = parser.parse_args(argv)
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        job = read_json(args.job, "hero job")
        if not isinstance(job, dict) or not {"hero", "seed", "stage", "out_dir", "device"} <= set(job):
            raise ExpspecError(f"hero job {args.job}: expected an object with hero, seed, stage, out_dir, device")
        run_job(job)
    except ExpspecError as err:
        print(f"{ERROR_MARK}{err}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
