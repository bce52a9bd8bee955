"""What every benchmark shares: side-by-side timing, the ratio line, the JSON record.

Each benchmark measures ours against a reference in ONE process, alternating the order
every repeat (so drift - thermal, a neighbour's load, allocator warm-up - hits both), and
reports the median over >= 5 repeats as

    name: 7.07x (ours 110.3 tok/s, reference 15.6 tok/s) target >= 3

then merges its figures into ``reports/bench/<date>.json`` under its own section, with the
machine, device and thread count. ``--quick`` runs (what ``make test`` exercises so the
scripts never rot) write ``<section>_quick`` and never overwrite a full run's figures.
Never a timed assertion: the targets are printed beside the ratios, not enforced.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Mapping

from expspec.kernels.atomic_io import read_json, write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = ROOT / "reports" / "bench"


def arguments(description: str, *, repeats: int = 5) -> argparse.ArgumentParser:
    """The options every benchmark takes; a script adds its own sizes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 2 repeats (seconds): checks the script runs")
    parser.add_argument("--repeats", type=int, default=repeats, help="alternating repeats; the median is reported")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's choice)")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR), help="where <date>.json goes")
    return parser


def setup_threads(args) -> int:
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    return torch.get_num_threads()


def alternating(methods: Mapping[str, Callable[[int], float | None]], repeats: int,
                settle_s: float = 0.0) -> dict[str, float]:
    """Median rate of each method over ``repeats`` rounds, the order reversed every other round.

    A method is called with the round number and returns the units of work it did (tokens,
    steps); the rate is units per second (a method returning None counts one unit per call).
    ``settle_s``: a pause before every timed call, so no call inherits the one before's
    background work (OpenBLAS's worker threads spin ~0.1 s after a multi-threaded call: on
    this 2-vCPU box that halved the speed of a 20 ms call made right after one).
    """
    rates: dict[str, list[float]] = {name: [] for name in methods}
    for r in range(repeats):
        order = list(methods) if r % 2 == 0 else list(reversed(list(methods)))
        for name in order:
            if settle_s:
                time.sleep(settle_s)
            start = time.perf_counter()
            done = methods[name](r)
            seconds = time.perf_counter() - start
            rates[name].append((1.0 if done is None else float(done)) / seconds)
    return {name: statistics.median(v) for name, v in rates.items()}


def ratio(name: str, ours: float, reference: float, unit: str, *, target_min: float | None = None,
          target_max: float | None = None, reference_name: str = "reference", higher_is_better: bool = True) -> dict:
    """Print ``name: R x (ours X unit, reference Y unit)`` and return the JSON entry.

    R is ours / reference for rates (higher is better: tok/s) and reference / ours for costs
    (seconds, bytes), so R > 1 always means ours is ahead.
    """
    value = ours / reference if higher_is_better else reference / ours
    target = ""
    if target_min is not None:
        target = f" target >= {target_min:g}{' (missed)' if value < target_min else ''}"
    if target_max is not None:
        target = f" target <= {target_max:g}{' (missed)' if value > target_max else ''}"
    print(f"{name}: {value:.2f}x (ours {ours:.4g} {unit}, {reference_name} {reference:.4g} {unit}){target}", flush=True)
    return {"ratio": value, "ours": ours, "reference": reference, "reference_name": reference_name, "unit": unit,
            "target_min": target_min, "target_max": target_max}


def figure(name: str, value: float, unit: str, *, target_max: float | None = None, note: str = "") -> dict:
    """A measured figure that is not a ratio (seconds per lag, a projected wall time)."""
    target = f" target <= {target_max:g}{' (missed)' if value > target_max else ''}" if target_max is not None else ""
    print(f"{name}: {value:.4g} {unit}{target}{f' ({note})' if note else ''}", flush=True)
    return {"value": value, "unit": unit, "target_max": target_max, "note": note}


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def write_record(args, section: str, payload: dict, *, device: str = "cpu") -> Path:
    """Merge ``payload`` into ``<out-dir>/<date>.json`` under ``section`` (``section_quick``
    for --quick), with where and how it was measured."""
    import torch
    from filelock import FileLock

    path = Path(args.out_dir) / f"{time.strftime('%Y-%m-%d')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # benchmarks run side by side lose no section
        record = read_json(path, "benchmark record") if path.is_file() else {}
        record[f"{section}_quick" if args.quick else section] = {
            **payload, "quick": bool(args.quick), "repeats": args.repeats, "device": device,
            "device_name": device_name(device), "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "machine": platform.platform(), "torch": torch.__version__,
            "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_json_atomic(path, record)
    print(f"wrote {path} [{section}{'_quick' if args.quick else ''}]", flush=True)
    return path
