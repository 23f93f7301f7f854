"""Shared helpers for trainer tests: configs and subprocess launches."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import jax

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
    run, state, step = trainer._load_for_inference(config, str(workdir))
    host = run.parallel.get_state(state)
    return step, jax.device_get(host.params), jax.device_get(host.ema_params)
