"""Keep freed memory in the process across a stretch of array work (glibc's malloc).

glibc returns freed memory at the top of its heap to the kernel once more than
M_TRIM_THRESHOLD of it is free, and serves large requests with fresh mmaps. A loop whose
every pass allocates and frees the same few megabyte-sized arrays (a sparse matrix built
per lag, then per resample) thus page-faults all of them in again on every pass: measured
on a sparse co-occurrence matrix of 2^20 pairs built per lag: 4,500 faults, 7 of its 22 ms.
Inside ``reuse_freed_memory`` such arrays come from the heap and stay there between passes.

On leaving the outermost one the trim threshold drops to 64 MiB: once the free top of the
heap exceeds that, a free gives nearly all of it back (down to glibc's top pad), as it would
after its own sliding rule had met a 32 MiB array. No malloc_trim(0) there: a caller that
runs the context once per lag would fault its arrays in again every time (2,900 faults and
20 ms per lag instead of 150 and 14).

The settings are process-wide and outlive the context: from its first use the process
mmaps from 32 MiB and trims above 64 MiB with glibc's sliding thresholds off (the values
that rule reaches in a process that frees arrays this large). A user's own choice
(``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``, ``GLIBC_TUNABLES``) is left
alone: the context then does nothing, as it does off glibc (macOS, musl).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_CEILING = 32 << 20  # glibc's largest mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
KEEP_BYTES = 1 << 30  # freed heap memory kept inside the context
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")

_lock = threading.Lock()
_depth = 0
_libc: ctypes.CDLL | None | bool = False  # False: not looked up yet


def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc (musl's mallopt is a stub), else None. Looked
    up from the loaded symbols, once: no ldconfig run as ``ctypes.util.find_library`` does."""
    global _libc
    if _libc is False:
        _libc = None
        try:
            if os.confstr("CS_GNU_LIBC_VERSION"):
                libc = ctypes.CDLL(None)
                libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                _libc = libc
        except (ValueError, OSError, AttributeError):  # no such confstr name (macOS, musl), no mallopt
            pass
    return _libc


def _user_tuned() -> bool:
    return any(os.environ.get(name) for name in USER_SETTINGS)


@contextlib.contextmanager
def reuse_freed_memory():
    """Within: freed arrays below 32 MiB stay in the heap (up to ``KEEP_BYTES``) for the next
    allocation. Nests; the outermost exit sets the trim threshold to 64 MiB."""
    global _depth
    libc = _glibc()
    if libc is None or _user_tuned():
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_CEILING)
            libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_CEILING)
