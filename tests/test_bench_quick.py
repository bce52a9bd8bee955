"""Every benchmark's --quick run (what `make bench QUICK=1` runs): it exits 0, prints its
figures as ``name: R x (ours X unit, reference Y unit)`` lines and merges a section into the
day's JSON record - so the scripts never rot between full `make bench` runs. No timing is
asserted: the ratios are printed for people, not gated."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHES = sorted(p.name for p in (ROOT / "bench").glob("bench_*.py"))
RATIO_LINE = re.compile(r"^(\w+): (\d+\.\d+)x \(ours [\d.e+-]+ \S+, .+ [\d.e+-]+ \S+\)")


def test_every_benchmark_is_covered():
    assert {"bench_correlation.py", "bench_train.py", "bench_sampler.py", "bench_hero.py"} <= set(BENCHES)


@pytest.mark.xdist_group("bench")
@pytest.mark.parametrize("script", BENCHES)
def test_quick_benchmark_runs_and_records(script, tmp_path):
    import torch

    # this worker's thread share (cores // workers): a benchmark on every core beside the other
    # worker's tests oversubscribed the machine and ran 3-5x slower than alone
    threads = str(torch.get_num_threads())
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--quick", "--out-dir", str(tmp_path),
                           "--threads", threads], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=dict(os.environ, OMP_NUM_THREADS=threads))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ratios = {m.group(1): float(m.group(2)) for line in proc.stdout.splitlines() if (m := RATIO_LINE.match(line))}
    assert ratios, f"{script} printed no ratio line:\n{proc.stdout[-2000:]}"
    assert all(r > 0 for r in ratios.values())
    (record_file,) = tmp_path.glob("*.json")
    record = json.loads(record_file.read_text())
    (section,) = record
    assert section.endswith("_quick")
    entry = record[section]
    assert entry["quick"] is True and entry["device"] and entry["threads"] >= 1 and entry["measured_utc"]
    recorded = {round(v, 2) for v in _ratios(entry)}
    for name, value in ratios.items():  # every printed ratio is in the record, with the printed value
        assert value in recorded, f"{name}: printed {value}, recorded {sorted(recorded)}"


def _ratios(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "ratio" and isinstance(value, (int, float)):
                yield float(value)
            else:
                yield from _ratios(value)
    elif isinstance(node, list):
        for value in node:
            yield from _ratios(value)
