"""Child processes that never outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h); kept across exec


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent, ``parent_pid``, dies (Linux).

    A SIGKILLed pipeline then takes its torchrun or its bootstrap workers down with it,
    instead of leaving them computing on behind it and racing the rerun. A parent that died
    before this call (the request only covers a parent still alive) ends this process the
    same way now. ``sig`` gets its default action first: an ignored SIGTERM, inherited from
    whatever started the pipeline (ignored signals survive fork and exec), would void both.
    Elsewhere: a no-op.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    try:
        signal.signal(sig, signal.SIG_DFL)
    except ValueError:  # not the main thread: the disposition stays as inherited
        pass
    if prctl(PR_SET_PDEATHSIG, sig) != 0:
        return
    if os.getppid() != parent_pid:  # orphaned already, adopted by init or a subreaper
        os.kill(os.getpid(), sig)
