"""Shared helpers for trainer tests: configs and subprocess launches."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import jax

from flowzoo import experiment
from flowzoo.training import trainer

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAIN = ROOT / "experiments" / "main.py"
SMOKE = f"{ROOT / 'experiments' / 'configs' / 'digits_flow.py'}:smoke"


def smoke_config(**overrides):
    from experiments.configs import digits_flow
    config = digits_flow.get_config("smoke")
    with config.unlocked():
        for dotted, value in overrides.items():
            node = config
            *parents, leaf = dotted.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
    return config


def main_command(workdir, *flags, devices=1):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(MAIN), f"--config={SMOKE}", f"--workdir={workdir}", *flags]
    return cmd, env


def run_main(workdir, *flags, devices=1, timeout=600):
    cmd, env = main_command(workdir, *flags, devices=devices)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def final_params(config, workdir):
    """(step, params) of the newest checkpoint in ``workdir``."""
    run, state, step = trainer._load_for_inference(config, str(workdir), experiment.build_model)
    host = run.parallel.get_state(state)
    return step, jax.device_get(host.params), jax.device_get(host.ema_params)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_processes(workdir, *flags, num_processes=2, devices=1, config=SMOKE):
    """``num_processes`` launcher processes on loopback, as launch/local_multiprocess.sh
    starts them (each its own ``--process_id``).  Returns the Popen objects; each has its
    log (stdout and stderr) at ``proc.log_path``, beside the workdir."""
    port = free_port()
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT))
    launch = len(list(workdir.parent.glob(f"{workdir.name}.launch*.proc0.log")))
    procs = []
    for i in range(num_processes):
        log_path = workdir.parent / f"{workdir.name}.launch{launch}.proc{i}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, str(MAIN), f"--config={config}", f"--workdir={workdir}",
                 *flags, "--multihost", f"--coordinator_address=127.0.0.1:{port}",
                 f"--num_processes={num_processes}", f"--process_id={i}"],
                env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        proc.log_path = log_path
        procs.append(proc)
    return procs


def wait_processes(procs, timeout=600) -> list[int]:
    """Exit codes, in order; kills them all if one runs past ``timeout``."""
    deadline = time.time() + timeout
    try:
        return [proc.wait(timeout=max(1, deadline - time.time())) for proc in procs]
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        raise


def run_processes(workdir, *flags, **kwargs) -> str:
    """Runs the processes to the end, asserting all exit 0; returns process 0's log."""
    procs = start_processes(workdir, *flags, **kwargs)
    codes = wait_processes(procs)
    logs = [proc.log_path.read_text() for proc in procs]
    assert codes == [0] * len(procs), f"exit codes {codes}:\n" + "\n".join(
        log[-3000:] for log in logs)
    return logs[0]


def checksums_of_step(workdir, step) -> dict:
    """The per-array sha256 written with a checkpoint step (equal <=> bit-identical)."""
    path = pathlib.Path(workdir) / "checkpoints" / str(step) / "integrity" / "metadata"
    return json.loads(path.read_text())["arrays"]
