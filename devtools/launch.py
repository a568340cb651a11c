"""Start a module as several local CPU processes, as a user starts a data-parallel run (the distributed tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a port picked free can be taken by another process before the launcher binds it (two suites on one machine):
# such a launch is retried with a new port; any other failure is returned as it is
PORT_TAKEN = ("address already in use", "eaddrinuse", "server socket has failed to listen", "errno: 98")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(launcher: str, module_args: list[str], env: dict | None = None, processes: int = 2,
           timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m <module_args>`` as ``processes`` processes started by ``accelerate`` (``accelerate launch``)
    or ``torchrun``, from the pack's folder, one thread each."""
    for _ in range(3):
        proc = _launch_once(launcher, module_args, env or {}, processes, timeout)
        text = (proc.stdout + proc.stderr).lower()
        if proc.returncode == 0 or not any(p in text for p in PORT_TAKEN):
            break
    return proc


def _launch_once(launcher, module_args, env, processes, timeout):
    if launcher == "accelerate":
        # --multi_gpu selects accelerate's multi-process launcher; the processes train on the CPU when the
        # config says so
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port())]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    full_env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                    PYTHONPATH=PACK_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        full_env.pop(k, None)
    return subprocess.run(cmd + ["-m", *module_args], cwd=PACK_DIR, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
