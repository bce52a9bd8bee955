"""kernels/heap.py: inside ``reuse_freed_memory`` arrays freed between passes of a loop are
served again from the heap instead of being page-faulted in afresh (glibc), and leaving it
gives the memory back above glibc's ceiling. Each check runs in a fresh interpreter: the
malloc thresholds are process state."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from expspec.kernels.heap import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="glibc's malloc only (elsewhere the context does nothing)")

PASSES = textwrap.dedent('''
    import json, resource
    import numpy as np
    from expspec.kernels.heap import reuse_freed_memory

    def faults(passes=20):
        """Page faults per pass of a loop that builds and frees ~12 MB of arrays whose sizes
        drift from pass to pass (as the per-lag sparse matrix's do)."""
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for i in range(passes):
            a = np.ones((4 << 20) // 8 + 1000 * i)
            b = np.ones((4 << 20) // 8 + 700 * i)
            c = np.ones((4 << 20) // 8 + 300 * i)
            del a, b, c
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
    np.ones(1 << 17)  # a large free after the exit: the heap is trimmed to the 64 MiB ceiling
    out["rss_after"] = rss()
    print(json.dumps(out))
''')


def test_freed_arrays_are_reused_inside_and_given_back_after():
    proc = subprocess.run([sys.executable, "-c", PASSES], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["before"] > 100  # glibc's default: every pass faults its ~12 MB in again (1,400 faults here)
    assert out["inside"] < 0.05 * out["before"]
    assert out["rss_inside"] - out["rss_after"] > 64 << 20  # most of the 144 MB went back
