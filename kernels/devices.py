"""Devices: which accelerator each process uses, and how many CPU threads it gets.

``--devices cuda:0,cuda:1`` lists devices; the default is every visible CUDA device,
else ``cpu``. xdist worker ``gwN`` takes ``devices[N % len(devices)]``. Torch's
intra-op thread count is set to cores // workers: two workers that each use both
cores of a 2-core machine run slower than one (measured: two 1-thread trainers
~ one 2-thread trainer).
"""

from __future__ import annotations

import os
import re

from expspec.kernels.errors import ExpspecError


def visible_devices() -> list[str]:
    import torch

    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def parse_devices(spec: str | None) -> list[str]:
    """Validate a comma-separated device list against what this machine has."""
    if not spec:
        return visible_devices()
    import torch

    devices = [d.strip() for d in spec.split(",") if d.strip()]
    if not devices:
        raise ExpspecError(f"--devices {spec!r}: empty list")
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for dev in devices:
        if dev == "cpu":
            continue
        match = re.fullmatch(r"cuda(?::(\d+))?", dev)
        if match is None:
            raise ExpspecError(f"--devices: {dev!r} is not a device (expected cpu or cuda:N)")
        index = int(match.group(1) or 0)
        if index >= n_cuda:
            raise ExpspecError(f"--devices: {dev} does not exist on this machine ({n_cuda} CUDA devices visible)")
    return devices


def worker_index(worker_id: str | None) -> int:
    """'gw3' -> 3; the controller / a run without xdist -> 0."""
    if worker_id and worker_id.startswith("gw") and worker_id[2:].isdigit():
        return int(worker_id[2:])
    return 0


def device_for_worker(devices: list[str], worker_id: str | None) -> str:
    return devices[worker_index(worker_id) % len(devices)]


def threads_per_worker(n_workers: int, cores: int | None = None) -> int:
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, n_workers))


def configure_threads(n_workers: int) -> int:
    """cores // workers, unless the user pinned it with EXPSPEC_THREADS or OMP_NUM_THREADS."""
    import torch

    pinned = os.environ.get("EXPSPEC_THREADS") or os.environ.get("OMP_NUM_THREADS")
    threads = int(pinned) if pinned and pinned.isdigit() and int(pinned) > 0 else threads_per_worker(n_workers)
    torch.set_num_threads(threads)
    return threads
