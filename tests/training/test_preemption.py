"""SIGTERM at any moment: start-up, compilation, training, periodic and final evaluation,
``--mode=eval``.  Real signals (``os.kill`` of this process, or of a launched one), sent
at a chosen point by wrapping the trainer's own functions."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from flowzoo import experiment
from flowzoo import data
from flowzoo.training import evaluation, parallel, trainer
from tests.training.helpers import main_command, run_main, smoke_config


def _sigterm_self():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread; this runner uses another")
    os.kill(os.getpid(), signal.SIGTERM)


def _wrap(monkeypatch, owner, name, when=lambda *a, **k: True):
    """Makes ``owner.name`` send SIGTERM to this process the first time ``when`` holds."""
    real = getattr(owner, name)
    fired = []

    def wrapper(*args, **kwargs):
        if not fired and when(*args, **kwargs):
            fired.append(True)
            _sigterm_self()
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return fired


def _assert_no_temporary_checkpoints(workdir):
    leftovers = [p for p in (workdir / "checkpoints").glob("*") if "tmp" in p.name]
    assert not leftovers, leftovers


def _steps(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").glob("[0-9]*"))


def test_sigterm_during_start_up_saves_nothing_and_says_so(tmp_path, monkeypatch, capsys):
    fired = _wrap(monkeypatch, data, "load")
    summary = experiment.train_and_evaluate(smoke_config(parallel="jit"), str(tmp_path))
    assert fired and summary["preempted"]
    lines = [l for l in capsys.readouterr().out.splitlines() if "Preempted" in l]
    assert len(lines) == 1 and "during start-up" in lines[0] and "nothing was saved" in lines[0]
    assert not (tmp_path / "checkpoints").exists()


def test_sigterm_during_the_first_compile_saves_the_step_it_finished(tmp_path, monkeypatch,
                                                                     capsys):
    fired = _wrap(monkeypatch, parallel.Parallel, "train")
    summary = experiment.train_and_evaluate(smoke_config(parallel="jit"), str(tmp_path))
    assert fired and summary["preempted"] and summary["step"] == 1
    (line,) = [l for l in capsys.readouterr().out.splitlines() if "Preempted" in l]
    assert "during training at step 1: checkpoint saved" in line
    assert _steps(tmp_path) == [1]
    _assert_no_temporary_checkpoints(tmp_path)


def test_sigterm_during_a_periodic_evaluation_saves_that_step(tmp_path, monkeypatch, capsys):
    """The smoke config evaluates at step 10 and checkpoints at 10 and 20."""
    fired = _wrap(monkeypatch, evaluation, "evaluate")
    config = smoke_config(parallel="jit", **{"train.checkpoint_every": 15})
    summary = experiment.train_and_evaluate(config, str(tmp_path))
    assert fired and summary["preempted"] and summary["step"] == 10
    (line,) = [l for l in capsys.readouterr().out.splitlines() if "Preempted" in l]
    assert "during a periodic evaluation at step 10: checkpoint saved" in line
    assert _steps(tmp_path) == [10]
    _assert_no_temporary_checkpoints(tmp_path)
    resumed = experiment.train_and_evaluate(config, str(tmp_path))  # and it resumes from there
    assert not resumed["preempted"] and resumed["step"] == 20


def test_sigterm_during_the_final_evaluation_keeps_the_final_checkpoint(tmp_path, monkeypatch,
                                                                         capsys):
    fired = _wrap(monkeypatch, evaluation, "evaluate", when=lambda run, state, stop=None:
                  int(parallel.host_int(state.step)) == 20)
    summary = experiment.train_and_evaluate(smoke_config(parallel="jit"), str(tmp_path))
    assert fired and summary["preempted"] and summary["step"] == 20
    (line,) = [l for l in capsys.readouterr().out.splitlines() if "Preempted" in l]
    assert "during the final evaluation at step 20: checkpoint saved" in line
    assert 20 in _steps(tmp_path)
    _assert_no_temporary_checkpoints(tmp_path)
    assert not (tmp_path / "summary.json").exists()  # the evaluation did not finish


def test_sigterm_in_eval_mode_exits_143_with_one_line(tmp_path, monkeypatch):
    experiment.train_and_evaluate(smoke_config(parallel="jit"), str(tmp_path))
    _wrap(monkeypatch, evaluation, "evaluate")
    with pytest.raises(trainer.preemption.Preempted):
        experiment.evaluate(smoke_config(parallel="jit"), str(tmp_path))


def test_sigterm_while_the_launcher_imports_exits_143_saying_nothing_was_saved(tmp_path):
    """A real signal to a launched process, before JAX has even been imported."""
    cmd, env = main_command(tmp_path)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(0.3)  # past the interpreter's start, inside the launcher's imports
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    lines = [l for l in stdout.splitlines() if "Preempted" in l]
    assert len(lines) == 1 and "nothing was saved" in lines[0], stdout
    assert not (tmp_path / "checkpoints").exists()


def test_sigterm_in_a_launched_eval_exits_143(tmp_path):
    assert run_main(tmp_path, "--config.train.num_steps=10").returncode == 0
    cmd, env = main_command(tmp_path, "--mode=eval")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    assert "Preempted during --mode=eval: nothing to save." in stdout
