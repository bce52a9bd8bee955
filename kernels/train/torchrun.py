"""Training runs launched through torchrun: several processes, several machines.

A pipeline that wants DDP writes the run's config (``launch.json``, every TrainConfig
field) and its token file (``.npz``: train, val, token_bytes) and calls
``launch_run``, which runs

    torchrun --standalone --nproc-per-node K -m expspec.kernels.train.launch \\
        --config launch.json --data tokens.npz --out-dir runs/<id>

(or, for several machines, ``--nnodes N --node-rank R --master-addr HOST --master-port PORT``:
this machine is node 0 and hosts the rendezvous at ``rdzv_endpoint``; ``node_launcher``, a
command template such as ``ssh -o BatchMode=yes node{node_rank} {remote}`` or
``srun --nodes=1 --ntasks=1 --relative={node_rank} --chdir={cwd} {command}``, starts node
1..N-1's share of the same run, reading the same launch.json and token file by their
absolute paths with the same python — a shared filesystem and environment, as multi-node
training has). Each rank trains its share of every step's windows; global
rank 0 (on this machine) evaluates, logs (train.log, the same format as a single process)
and writes result.json, which comes back as a RunSummary. If any node's process fails,
the others are stopped, so a lost node never leaves the run waiting at a rendezvous.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

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


def threads_per_process(nproc_per_node: int) -> int:
    """Torch threads for each of a run's processes on this machine: this worker's share of
    the cores (EXPSPEC_THREADS when set, else every core) split over the processes."""
    pinned = os.environ.get("EXPSPEC_THREADS", "")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, (int(pinned) if pinned.isdigit() and int(pinned) > 0 else cores) // max(1, nproc_per_node))


def torchrun_command(config: Path, data: Path, out_dir: Path, nproc_per_node: int, nnodes: int = 1,
                     rdzv_endpoint: str = "", node_rank: int = 0) -> list[str]:
    """The torchrun command line of one node of a run (static rendezvous: node 0 is rank 0's).
    Paths are absolute: another node may start it in another folder."""
    if nnodes == 1:
        placement = ["--standalone"]
    else:
        host, port = split_endpoint(rdzv_endpoint)
        placement = [f"--nnodes={nnodes}", f"--node-rank={node_rank}", f"--master-addr={host}",
                     f"--master-port={port}"]
    return [sys.executable, "-m", "torch.distributed.run", *placement, f"--nproc-per-node={nproc_per_node}",
            "-m", "expspec.kernels.train.launch", "--config", str(Path(config).resolve()),
            "--data", str(Path(data).resolve()), "--out-dir", str(Path(out_dir).resolve()),
            "--threads", str(threads_per_process(nproc_per_node))]


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` (``[v6 address]:port``) -> (host, port), or a one-line error."""
    host, sep, port = str(endpoint).rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ExpspecError(f"rendezvous endpoint {endpoint!r}: expected HOST:PORT (node 0's address and a free port)")
    return host, int(port)


LAUNCHER_FIELDS = ("node_rank", "command", "cwd", "remote")


def node_command(template: str, node_rank: int, command: list[str]) -> str:
    """Node ``node_rank``'s shell command: the launcher template filled in. ``{command}`` is
    the torchrun line quoted for the local shell (srun, a local agent); ``{remote}`` is
    ``cd <cwd> && <command>`` quoted once more, as one word, for a shell on the other end
    (``ssh host {remote}``); ``{cwd}`` is this folder. Literal braces are doubled: ``${{VAR}}``."""
    line = shlex.join(command)
    fields = dict(node_rank=node_rank, command=line, cwd=shlex.quote(os.getcwd()),
                  remote=shlex.quote(f"cd {shlex.quote(os.getcwd())} && {line}"))
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise ExpspecError(f"node launcher {template!r}: bad placeholder {exc} (known: {', '.join(fields)}; "
                           "double a literal brace)") from None


# `python -c DIE_WITH_PARENT PARENT_PID COMMAND...` runs COMMAND with PR_SET_PDEATHSIG =
# SIGTERM (kept across exec): when the launching process PARENT_PID dies - a SIGKILLed
# pipeline, even one killed before this line ran - the launched torchrun stops too, instead
# of training on behind it and racing the rerun for its folder. Not Linux: COMMAND as is.
DIE_WITH_PARENT = ("import os, sys\n"
                   "from expspec.kernels.processes import die_with_parent\n"
                   "die_with_parent(int(sys.argv[1]))\n"
                   "os.execvp(sys.argv[2], sys.argv[2:])\n")


def launch_run(cfg: TrainConfig, data: Path, out_dir: Path, nproc_per_node: int, nnodes: int = 1,
               rdzv_endpoint: str = "", run_id: str = "", node_launcher: str = "") -> RunSummary:
    """One training run under torchrun; its RunSummary (rank 0's result.json). With
    ``nnodes`` > 1 this machine is node 0 and ``node_launcher`` starts the other nodes."""
    out_dir = Path(out_dir)
    if nnodes > 1 and not any("{" + name + "}" in node_launcher for name in ("command", "remote")):
        raise ExpspecError(f"node launcher {node_launcher!r}: a run on {nnodes} nodes needs a command template "
                           "with {command} or {remote} that starts it on node {node_rank} "
                           "(e.g. 'ssh -o BatchMode=yes node{node_rank} {remote}')")
    out_dir.mkdir(parents=True, exist_ok=True)
    result = out_dir / "result.json"
    result.unlink(missing_ok=True)  # a resumed run's folder may hold an earlier attempt's
    # NaN stays a JSON NaN literal here (not the "nan" string of reports): TrainConfig reads floats
    config = write_text_atomic(out_dir / "launch.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
    nodes = [torchrun_command(config, data, out_dir, nproc_per_node, nnodes, rdzv_endpoint, rank)
             for rank in range(nnodes)]
    env = {**os.environ, "OMP_NUM_THREADS": nodes[0][-1]}
    logs = [out_dir / ("torchrun.log" if rank == 0 else f"torchrun-node{rank}.log") for rank in range(nnodes)]
    commands = [(nodes[0], shlex.join(nodes[0]))]
    for rank in range(1, nnodes):
        line = node_command(node_launcher, rank, nodes[rank])
        commands.append((["/bin/sh", "-c", line], line))
    codes, first = run_nodes(commands, logs, env)
    failed = any(code not in (0, 1) for code in codes)  # 1 = trained, but the run failed (NaN)
    if failed or not result.is_file():
        rank = first if first is not None else 0
        what = f"exited {codes[rank]}" if codes[rank] != 0 else "wrote no result.json"
        raise ExpspecError(f"torchrun run {run_id or out_dir.name}: node {rank} {what}; see "
                           f"{out_dir / ('torchrun.log' if rank == 0 else f'torchrun-node{rank}.log')}")
    return RunSummary.from_dict(read_json(result, "run result"))


def run_nodes(nodes: list[tuple[list[str], str]], logs: list[Path],
              env: Mapping[str, str]) -> tuple[list[int], int | None]:
    """Run each node's ``(argv, header)`` to its log (the header its first line) until all
    have ended (see _wait_all); every exit code and the node that failed first. Each runs in
    its own process group, so stopping a node stops what its launcher started too, and dies
    with this process (DIE_WITH_PARENT); no stdin, so a launcher asking for a password fails
    instead of hanging the run. Whatever ends this call - a failure, ^C - stops the rest."""
    procs, handles = [], []
    try:
        for (argv, header), path in zip(nodes, logs, strict=True):
            handle = open(path, "w", encoding="utf-8")
            handles.append(handle)
            handle.write(header + "\n")
            handle.flush()
            procs.append(subprocess.Popen([sys.executable, "-c", DIE_WITH_PARENT, str(os.getpid()), *argv],
                                          stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=dict(env), start_new_session=True))
        return _wait_all(procs)
    finally:
        _stop(procs)
        for handle in handles:
            handle.close()


def _stop(procs: list[subprocess.Popen], grace_s: float = 30.0) -> None:
    """SIGTERM each live process's group (torchrun passes it on to its workers), SIGKILL what
    is left after ``grace_s``."""
    import signal

    live = [proc for proc in procs if proc.poll() is None]
    for proc in live:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    for proc in live:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def _wait_all(procs: list[subprocess.Popen], grace_s: float = 60.0,
              poll_s: float = 0.2) -> tuple[list[int], int | None]:
    """Every process's exit code, and the node that failed first on its own (None if none
    did; the nodes stopped here are not it). A node that could not run (exit >= 2: ssh, a
    missing command, a signal) stops the others at once; after an exit 1 (a failed worker,
    or a run trained to NaN, when every node ends anyway), or once node 0 (rank 0's) is done,
    the others get ``grace_s`` to finish. So no node waits at a rendezvous or a collective
    for a dead one, and a hung node never holds the run."""
    deadline, first = None, None
    while True:
        codes = [proc.poll() for proc in procs]
        if first is None:
            first = next((rank for rank, code in enumerate(codes) if code not in (None, 0)), None)
        if all(code is not None for code in codes):
            return codes, first
        if any(code is not None and (code < 0 or code >= 2) for code in codes):
            deadline = time.monotonic()
        elif deadline is None and (1 in codes or codes[0] is not None):
            deadline = time.monotonic() + grace_s
        if deadline is not None and time.monotonic() >= deadline:
            _stop(procs)
            return [proc.returncode for proc in procs], first
        time.sleep(poll_s)
