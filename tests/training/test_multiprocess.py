"""Two JAX processes on loopback, as a pod job runs: fresh run, SIGKILL of both at random
moments and relaunch (bit-identical to an uninterrupted run), resume, ``--mode=eval`` and
``--mode=sample``, pmap, and checkpoints that move between 1 and 2 processes.

FLOWZOO_TEST_KILLS sets how many random kills the resume test makes (default 2; the
acceptance run used 5)."""

from __future__ import annotations

import os
import signal
import time

import jax
import numpy as np
import pytest

from flowzoo import experiment
from flowzoo.training import checkpoint, trainer
from tests.training.helpers import (checksums_of_step, run_main, run_processes, smoke_config,
                                    start_processes, wait_processes)

RUN = ["--config.train.num_steps=30", "--config.train.checkpoint_every=5",
       "--config.train.eval_every=1000"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("two_processes") / "uninterrupted"
    run_processes(workdir, *RUN)
    return workdir


def _committed_steps(workdir):
    return checkpoint.Checkpointer(workdir, save_every=1, keep=1).steps()


def test_sigkill_of_both_processes_at_random_moments_resumes_bit_identical(uninterrupted,
                                                                           tmp_path):
    workdir = tmp_path / "killed"
    rng = np.random.default_rng(int(time.time()))
    kills = int(os.environ.get("FLOWZOO_TEST_KILLS", "2"))
    seen = []
    for _ in range(kills):
        before = _committed_steps(workdir) if workdir.exists() else []
        procs = start_processes(workdir, *RUN)
        # Random moments: start-up, compile, training, a save in flight, or the end.
        time.sleep(rng.uniform(4.0, 20.0))
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
        wait_processes(procs)
        seen.append((before, _committed_steps(workdir) if workdir.exists() else []))
    log = run_processes(workdir, *RUN)
    assert "Done: step 30" in log, log[-3000:]
    assert checksums_of_step(workdir, 30) == checksums_of_step(uninterrupted, 30), seen
    # Evaluation and sampling with two processes, on the relaunched workdir.
    out = run_processes(workdir, "--mode=eval")
    assert '"step": 30' in out and "bits_per_dim" in out, out[-2000:]
    out = run_processes(workdir, "--mode=sample")
    assert (workdir / "samples_final_step0000030.png").stat().st_size > 100, out[-2000:]


def test_a_two_process_checkpoint_restores_in_one_process(uninterrupted):
    """A pod's checkpoint opened in a notebook: one process, 8 devices, sharded."""
    config = smoke_config()
    run, state, step = trainer._load_for_inference(config, str(uninterrupted), experiment.build_model)
    assert step == 30
    # Bit-identical to what the two processes saved (the test runs with x64 on, so the
    # values come back as float64: verify casts them to the saved dtype first).
    checkpoint.verify(jax.device_get(state), checksums_of_step(uninterrupted, 30))


def test_a_one_process_checkpoint_resumes_with_two_processes(tmp_path):
    workdir = tmp_path / "one_then_two"
    first = run_main(workdir, "--config.train.num_steps=20", "--config.train.eval_every=1000")
    assert first.returncode == 0, first.stderr[-3000:]
    log = run_processes(workdir, "--config.train.num_steps=30")
    assert "Resumed from the checkpoint at step 20" in log and "Done: step 30" in log


def test_pmap_with_two_processes_saves_resumes_and_evaluates(tmp_path):
    workdir = tmp_path / "pmap"
    pmap = ("--config.parallel=pmap", "--config.train.eval_every=1000")
    run_processes(workdir, *pmap, "--config.train.num_steps=20", devices=2)
    assert _committed_steps(workdir) == [10, 20]
    log = run_processes(workdir, *pmap, "--config.train.num_steps=30", devices=2)
    assert "Resumed from the checkpoint at step 20" in log and "Done: step 30" in log
    out = run_processes(workdir, *pmap, "--mode=eval", devices=2)
    assert '"step": 30' in out and "bits_per_dim" in out, out[-2000:]
