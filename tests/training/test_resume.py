"""Checkpoints: exact resume after SIGKILL, save on SIGTERM, corrupted fallback."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from flowzoo import experiment
from tests.training.helpers import final_params, main_command, run_main, smoke_config

STEPS = ["--config.train.num_steps=30", "--config.train.checkpoint_every=10",
         "--config.train.eval_every=1000"]


def _wait_for_checkpoint(workdir: pathlib.Path, step: int, proc, timeout=300):
    target = workdir / "checkpoints" / str(step)
    start = time.time()
    while time.time() - start < timeout:
        if target.is_dir() and any(target.iterdir()):
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended before checkpoint {step}: "
                                 f"{proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint {step} after {timeout}s")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    result = run_main(workdir, *STEPS)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def _start(workdir):
    cmd, env = main_command(workdir, *STEPS)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _assert_same_final_state(a, b):
    config = smoke_config()
    step_a, params_a, ema_a = final_params(config, a)
    step_b, params_b, ema_b = final_params(config, b)
    assert step_a == step_b == 30
    jax.tree.map(np.testing.assert_array_equal, (params_a, ema_a), (params_b, ema_b))


def test_sigkill_and_rerun_is_bit_identical(uninterrupted, tmp_path):
    proc = _start(tmp_path)
    _wait_for_checkpoint(tmp_path, 20, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = run_main(tmp_path, *STEPS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from the checkpoint at step 20" in resumed.stdout
    _assert_same_final_state(uninterrupted, tmp_path)


def test_sigterm_saves_then_exits_143_and_resumes(uninterrupted, tmp_path):
    proc = _start(tmp_path)
    _wait_for_checkpoint(tmp_path, 10, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    assert "Preempted during training at step" in stdout and "checkpoint saved" in stdout
    resumed = run_main(tmp_path, *STEPS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_final_state(uninterrupted, tmp_path)


def test_corrupted_latest_checkpoint_falls_back_to_the_previous(uninterrupted, tmp_path):
    import shutil
    workdir = tmp_path / "copy"
    shutil.copytree(uninterrupted, workdir)
    latest = workdir / "checkpoints" / "30"
    for path in latest.rglob("*"):
        if path.is_file() and path.stat().st_size > 0:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    result = run_main(workdir, "--mode=eval")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Checkpoint step 30 is damaged" in result.stdout and "left in place" in result.stdout
    assert '"step": 20' in result.stdout


def test_all_checkpoints_unreadable_is_an_error_that_keeps_them(tmp_path):
    config = smoke_config()
    workdir = tmp_path / "w"
    (workdir / "checkpoints" / "10").mkdir(parents=True)
    (workdir / "checkpoints" / "10" / "_CHECKPOINT_METADATA").write_text("{not json")
    with pytest.raises((RuntimeError, FileNotFoundError)):
        experiment.evaluate(config, str(workdir))
    assert (workdir / "checkpoints" / "10").exists()
