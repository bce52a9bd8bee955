"""Process launch for training: one process, or one rank of a torchrun (DDP) job.

``dist_setup`` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and opens the
process group (nccl on CUDA, gloo on CPU); ``main`` is the command torchrun runs:

    torchrun --nproc_per_node=K -m expspec.kernels.train.launch --config cfg.json --data data.npz --out-dir DIR
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

from expspec.kernels.atomic_io import read_json, write_json_atomic
from expspec.kernels.errors import ExpspecError
from expspec.kernels.train.config import TrainConfig


def dist_setup(cfg: TrainConfig):
    """(rank, world, device, we_initialised) from torchrun's environment."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = cfg.device
    if world > 1 and device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    owned = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        owned = True
    return rank, world, torch.device(device), owned


def read_tokens(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, token_bytes) of a token file: a .npz of three 1-D integer arrays."""
    try:
        data = np.load(path)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ExpspecError(f"data {path}: expected a .npz with train, val, token_bytes arrays, "
                               f"got one {type(data).__name__}")
        with data:
            missing = {"train", "val", "token_bytes"} - set(data.files)
            if missing:
                raise ExpspecError(f"data {path}: missing arrays {sorted(missing)}")
            arrays = data["train"], data["val"], data["token_bytes"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ExpspecError(f"data {path}: not a readable .npz ({exc})") from None
    for name, array in zip(("train", "val", "token_bytes"), arrays):
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise ExpspecError(f"data {path}: array {name}: expected 1-D integers, got {array.dtype} "
                               f"of shape {array.shape}")
    return arrays


def main(argv: list[str] | None = None) -> int:
    """``[torchrun ...] python -m expspec.kernels.train.launch --config cfg.json --data data.npz --out-dir DIR``.

    cfg.json holds every TrainConfig field; data.npz holds ``train``, ``val`` and
    ``token_bytes`` arrays. Rank 0 writes DIR/result.json (and train.log, checkpoint.pt).
    """
    parser = argparse.ArgumentParser(prog="python -m expspec.kernels.train.launch", description=main.__doc__)
    parser.add_argument("--config", required=True, help="JSON file with every TrainConfig field")
    parser.add_argument("--data", required=True, help=".npz with train, val, token_bytes arrays")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = torch's choice)")
    args = parser.parse_args(argv)
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        config = read_json(args.config, "config")
        if not isinstance(config, dict):
            raise ExpspecError(f"config {args.config}: expected a JSON object of TrainConfig fields")
        cfg = TrainConfig.from_dict(config, where=f"config {args.config}")
        train_tokens, val_tokens, token_bytes = read_tokens(args.data)
        from expspec.kernels.train.loop import train

        result = train(cfg, train_tokens, val_tokens, token_bytes, out_dir=args.out_dir)
    except ExpspecError as err:
        print(f"expspec: error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        write_json_atomic(Path(args.out_dir) / "result.json", result.to_dict())
    return 0 if result.status == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
