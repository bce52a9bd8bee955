"""Training runs launched through torchrun: several processes, several machines.

A pipeline that wants DDP writes the run's config (``launch.json``, every TrainConfig
field) and its token file (``.npz``: train, val, token_bytes) and calls
``launch_run``, which runs

    torchrun --standalone --nproc-per-node K -m expspec.kernels.train.launch \\
        --config launch.json --data tokens.npz --out-dir runs/<id>

(or, for several machines, ``--nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT
--rdzv-id <run id>``, the same command on every machine). Each rank trains its share
of every step's windows; rank 0 evaluates, logs (train.log, the same format as a
single process) and writes result.json, which comes back as a RunSummary.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from expspec.kernels.atomic_io import read_json, write_text_atomic
from expspec.kernels.errors import ExpspecError
from expspec.kernels.train.config import TrainConfig
from expspec.kernels.train.summary import RunSummary


def write_tokens(folder: Path, train, val, token_bytes) -> Path:
    """The token file of a data set, named by its content (written once, atomically)."""
    digest = hashlib.sha256()
    for array in (train, val, token_bytes):
        digest.update(np.ascontiguousarray(array).tobytes())
    path = Path(folder) / f"tokens-{digest.hexdigest()[:16]}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
        np.savez(tmp, train=np.asarray(train), val=np.asarray(val), token_bytes=np.asarray(token_bytes))
        os.replace(tmp, path)
    return path


def torchrun_command(config: Path, data: Path, out_dir: Path, nproc_per_node: int, nnodes: int = 1,
                     rdzv_endpoint: str = "", run_id: str = "") -> list[str]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    placement = (["--standalone"] if nnodes == 1 else
                 [f"--nnodes={nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}",
                  f"--rdzv-id={run_id or 'expspec'}"])
    return [sys.executable, "-m", "torch.distributed.run", *placement, f"--nproc-per-node={nproc_per_node}",
            "-m", "expspec.kernels.train.launch", "--config", str(config), "--data", str(data),
            "--out-dir", str(out_dir), "--threads", str(max(1, cores // nproc_per_node))]


def launch_run(cfg: TrainConfig, data: Path, out_dir: Path, nproc_per_node: int, nnodes: int = 1,
               rdzv_endpoint: str = "", run_id: str = "") -> RunSummary:
    """One training run under torchrun; its RunSummary (rank 0's result.json)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # NaN stays a JSON NaN literal here (not the "nan" string of reports): TrainConfig reads floats
    config = write_text_atomic(out_dir / "launch.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
    command = torchrun_command(config, data, out_dir, nproc_per_node, nnodes, rdzv_endpoint, run_id)
    env = {**os.environ, "OMP_NUM_THREADS": command[-1]}
    with open(out_dir / "torchrun.log", "w", encoding="utf-8") as handle:
        handle.write(" ".join(command) + "\n")
        handle.flush()
        proc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    result = out_dir / "result.json"
    if proc.returncode not in (0, 1) or not result.is_file():  # 1 = trained, but the run failed (NaN)
        raise ExpspecError(f"torchrun run {run_id or out_dir.name} exited {proc.returncode}; "
                           f"see {out_dir / 'torchrun.log'}")
    return RunSummary.from_dict(read_json(result, "run result"))
