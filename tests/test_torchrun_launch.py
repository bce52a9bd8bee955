"""launch_run's process handling for several nodes: the launcher template's quoting, stopping
a node stops everything its launcher started, and a killed launcher takes its child with it."""

import os
import signal
import subprocess
import sys
import time

import pytest

from expspec.kernels.errors import ExpspecError
from expspec.kernels.train.torchrun import DIE_WITH_PARENT, _wait_all, node_command, split_endpoint


def alive(marker: str) -> bool:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0


def test_remote_is_one_word_for_the_shell_at_the_other_end(tmp_path):
    """`ssh host {remote}` hands the other end's shell one string: the folder change and the
    command run THERE, arguments with spaces and $ arrive as written (here /bin/sh -c stands
    in for ssh's remote shell)."""
    command = [sys.executable, "-c", "import os, sys; print(os.getcwd()); print(sys.argv[1:])", "a b", "$HOME"]
    line = node_command("/bin/sh -c {remote}", 1, command)
    out = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True, cwd=tmp_path).stdout.splitlines()
    assert out == [os.getcwd(), "['a b', '$HOME']"]
    local = node_command("cd / && {command}", 1, command)  # {command}: quoted for the local shell
    assert subprocess.run(["/bin/sh", "-c", local], capture_output=True, text=True).stdout.splitlines()[1] == \
        "['a b', '$HOME']"


def test_launcher_placeholders_and_endpoints_fail_in_one_line():
    with pytest.raises(ExpspecError, match="bad placeholder 'host'.*double a literal brace"):
        node_command("ssh {host} {command}", 1, ["true"])
    assert node_command("echo ${{HOME}} {node_rank}", 2, ["true"]) == "echo ${HOME} 2"
    assert split_endpoint("[::1]:29500") == ("::1", 29500)
    for bad in ("node0", "node0:0", ":29500", "node0:http"):
        with pytest.raises(ExpspecError, match="expected HOST:PORT"):
            split_endpoint(bad)


def test_a_failed_node_stops_what_the_other_launcher_started():
    """Node 1's launcher (a shell) started a long process; node 0 fails: the whole group of
    node 1 is stopped, not just its shell."""
    marker = "sleep 61.2345"
    procs = [subprocess.Popen(["/bin/sh", "-c", "exit 3"], start_new_session=True),
             subprocess.Popen(["/bin/sh", "-c", f"{marker}; true"], start_new_session=True)]
    start = time.monotonic()
    codes, first = _wait_all(procs)
    assert first == 0 and codes[0] == 3 and codes[1] == -signal.SIGTERM
    assert time.monotonic() - start < 20
    time.sleep(0.2)
    assert not alive(marker)


def _launch_and_kill(marker: str, exec_first: bool, sigterm_ignored: bool = False) -> None:
    """A parent starts ``sleep`` through DIE_WITH_PARENT and is SIGKILLed: once the sleep
    runs (``exec_first``) or at once, before the child could ask for PR_SET_PDEATHSIG."""
    _, seconds = marker.split()
    parent = subprocess.Popen([sys.executable, "-c", (
        "import os, signal, subprocess, sys, time\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if sigterm_ignored else "")
        + f"subprocess.Popen([sys.executable, '-c', {DIE_WITH_PARENT!r}, str(os.getpid()), 'sleep', '{seconds}'],"
        " start_new_session=True)\n"
        + ("time.sleep(60)\n" if exec_first else "os.kill(os.getpid(), 9)\n"))])
    if exec_first:
        deadline = time.monotonic() + 20
        while not alive(f"^{marker}$") and time.monotonic() < deadline:  # the exec'd sleep itself
            time.sleep(0.05)
        assert alive(f"^{marker}$")
        parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while alive(marker) and time.monotonic() < deadline:  # the sleep, or the python before its exec
        time.sleep(0.05)
    assert not alive(marker)


def test_a_killed_launching_process_takes_its_torchrun_with_it():
    """What launch_run starts dies with it (PR_SET_PDEATHSIG), so a SIGKILLed pipeline
    leaves nothing training on in the folder its rerun will resume in."""
    _launch_and_kill("sleep 62.3456", exec_first=True)


def test_a_launching_process_killed_before_its_child_set_up_still_takes_it_along():
    """The death signal only covers a parent alive when it is asked for: a child whose
    parent is already gone (adopted by init) ends itself instead of running on."""
    _launch_and_kill("sleep 63.4567", exec_first=False)


def test_a_launcher_started_with_sigterm_ignored_still_takes_its_torchrun_along():
    """An ignored signal survives fork and exec: a pipeline started by something that ignores
    SIGTERM would hand its children a death signal that does nothing, so the child restores it."""
    _launch_and_kill("sleep 64.5678", exec_first=True, sigterm_ignored=True)
