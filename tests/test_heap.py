"""kernels/heap.py: inside ``reuse_freed_memory`` arrays freed between passes of a loop are
served again from the heap instead of being page-faulted in afresh (glibc), and leaving it
gives the memory back above glibc's ceiling. Each check runs in a fresh interpreter: the
malloc thresholds are process state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from expspec.kernels.heap import USER_SETTINGS, _glibc

pytestmark = pytest.mark.skipif(_glibc() is None or bool(os.environ.get("LD_PRELOAD")),
                                reason="glibc's malloc only (elsewhere, or with a preloaded allocator, "
                                       "the context does nothing)")

PASSES = textwrap.dedent('''
    import json, resource
    import numpy as np
    from expspec.kernels.heap import reuse_freed_memory

    def faults(passes=20):
        """Page faults per pass of a loop that builds and frees eight 1.5 MiB arrays whose
        sizes drift from pass to pass (as the per-lag sparse matrix's do). Below 2 MiB no
        transparent huge page can back them, so every fault is a 4 KiB page on any kernel."""
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for i in range(passes):
            arrays = [np.ones((3 << 19) // 8 + 100 * (i + k)) for k in range(8)]
            del arrays
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / passes

    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()

    out = {"before": faults()}
    with reuse_freed_memory():
        with reuse_freed_memory():  # nested: the outer one's exit is the one that counts
            faults(2)
            out["inside"] = faults()
        big = [np.ones((24 << 20) // 8) for _ in range(6)]  # 144 MB from the heap, kept when freed
        del big
        out["rss_inside"] = rss()
    np.ones(1 << 17)  # a large free after the exit: the free top of the heap (> 64 MiB) goes back
    out["rss_after"] = rss()
    print(json.dumps(out))
''')


def test_freed_arrays_are_reused_inside_and_given_back_after():
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    proc = subprocess.run([sys.executable, "-c", PASSES], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["before"] > 1000  # glibc's default: every pass faults its 12 MiB in again (3,072 pages)
    assert out["inside"] < 0.05 * out["before"]
    assert out["rss_inside"] - out["rss_after"] > 64 << 20  # most of the 144 MB went back
