"""What a run leaves for its user: TensorBoard events (images, learning rate, norms, skipped
steps, config text; counts not plotted), metrics averaged over the log interval, config.json
with a refused or allowed config change, a fair evaluation subset, a profiler trace, and a
progress line that times training alone."""

from __future__ import annotations

import json
import struct
import time

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from flowzoo import data, experiment
from flowzoo.errors import ConfigError
from flowzoo.training import metrics as metrics_lib
from flowzoo.training import run as run_lib
from flowzoo.training import parallel, run_record
from tests.training.helpers import run_main, smoke_config


def _events(workdir):
    """Every TensorBoard event in ``workdir/tb`` (TFRecord framing, read by hand)."""
    events = []
    for path in sorted((workdir / "tb").glob("events.out.tfevents.*")):
        raw = path.read_bytes()
        at = 0
        while at < len(raw):
            (length,) = struct.unpack("<Q", raw[at:at + 8])
            event = event_pb2.Event()
            event.ParseFromString(raw[at + 12:at + 12 + length])
            events.append(event)
            at += 12 + length + 4
    return events


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("outputs") / "run"
    result = run_main(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stdout


def test_tensorboard_has_images_learning_rate_norms_and_the_config(smoke_run):
    workdir, _ = smoke_run
    values = [(e.step, v) for e in _events(workdir) for v in e.summary.value]
    tags = {v.tag for _, v in values}
    assert {"samples", "train/learning_rate", "train/grad_norm", "train/param_norm",
            "train/skipped_nonfinite_steps", "eval/loss"} <= tags, tags
    images = [v for _, v in values if v.tag == "samples" and v.image.encoded_image_string]
    assert len(images) == 2 and images[0].image.width > 100  # one grid per evaluation
    texts = [v for _, v in values if v.tag.startswith("config")]
    assert texts and "small_flow" in texts[0].tensor.string_val[0].decode()
    assert "eval/num_examples" not in tags  # a count, not a metric
    rates = {step: v.simple_value for step, v in values if v.tag == "train/learning_rate"}
    config = smoke_config()
    assert rates[5] == pytest.approx(config.optim.learning_rate * 4 / config.optim.warmup_steps)


def test_metrics_are_means_over_the_log_interval_and_counts_are_metadata(smoke_run, tmp_path,
                                                                        monkeypatch):
    workdir, _ = smoke_run
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train] == [5, 10, 15, 20]
    assert all(r["learning_rate"] > 0 and r["param_norm"] > 0 for r in train)
    evals = [r for r in rows if r["split"] == "eval"]
    assert evals[0]["num_examples"] == 64
    # The logged loss is the mean of the interval's per-step losses, seen here step by step.
    losses = []
    real_train = parallel.Parallel.train

    def recording(self, state, batch):
        state, metrics = real_train(self, state, batch)
        losses.append(float(metrics["loss"]))
        return state, metrics

    monkeypatch.setattr(parallel.Parallel, "train", recording)
    experiment.train_and_evaluate(smoke_config(parallel="jit"), str(tmp_path))
    logged = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text()
              .splitlines() if '"train"' in line]
    np.testing.assert_allclose(logged, np.mean(np.reshape(losses, (4, 5)), axis=1), rtol=1e-6)
    assert not np.allclose(logged, losses[4::5], rtol=1e-6)  # not the last step's value


def test_the_state_is_converted_for_a_checkpoint_only_at_the_steps_saved(tmp_path,
                                                                         monkeypatch):
    """A pmap state's conversion for Orbax waits for the step and copies every leaf: done
    every step, it cost the README job 45 s under pmap and put the training time under
    "checkpoints" (its progress lines claimed 4x the real img/s)."""
    converted = []
    real = parallel.Parallel.checkpoint_state

    def recording(self, state):
        converted.append(int(np.asarray(self.get_state(state).step)))
        return real(self, state)

    monkeypatch.setattr(parallel.Parallel, "checkpoint_state", recording)
    config = smoke_config(parallel="pmap", **{"train.num_steps": 15})
    every = config.train.checkpoint_every
    assert every == 10
    experiment.train_and_evaluate(config, str(tmp_path))
    assert converted == [10, 15]  # the scheduled save, then the final one off the schedule


def test_progress_lines_time_training_alone(smoke_run):
    _, stdout = smoke_run
    assert "Compiling the train step..." in stdout and "Compiled the train step in" in stdout
    lines = [l for l in stdout.splitlines() if l.startswith("step ")]
    assert len(lines) == 4 and all(" img/s  ETA " in l and "?" not in l for l in lines)
    assert "cpu: 1 x cpu" in stdout and "small_flow with 2,401 parameters" in stdout
    assert "Time: start-up" in stdout and "compilation" in stdout and "evaluation" in stdout


def test_chrono_excludes_timed_phases_from_training():
    chrono = metrics_lib.Chrono()
    chrono.resume()
    time.sleep(0.05)
    with chrono.timed("evaluation"):
        time.sleep(0.2)
    time.sleep(0.05)
    chrono.pause()
    assert 0.09 < chrono.totals["training"] < 0.2
    assert chrono.totals["evaluation"] >= 0.2


def test_config_json_and_a_resume_with_a_changed_config(smoke_run, tmp_path):
    workdir, _ = smoke_run
    stored = json.loads((workdir / "config.json").read_text())
    assert stored["model"]["name"] == "small_flow" and stored["train"]["num_steps"] == 20
    assert "--workdir" in (workdir / "launch_commands.txt").read_text()
    changed = smoke_config(**{"optim.learning_rate": 0.5, "train.num_steps": 25})
    with pytest.raises(ConfigError, match=r"optim.learning_rate: 0.002 -> 0.5.*allow_config_change"):
        run_record.record(workdir, changed, allow_change=False)
    assert json.loads((workdir / "config.json").read_text()) == stored  # untouched
    # Schedule-only keys change freely; an allowed change keeps the old config in history.
    run_record.record(workdir, smoke_config(**{"train.num_steps": 25}), allow_change=False)
    run_record.record(workdir, changed, allow_change=True)
    assert json.loads((workdir / "config.json").read_text())["optim"]["learning_rate"] == 0.5
    history = (workdir / "config_history.jsonl").read_text().splitlines()
    assert json.loads(history[0])["config"]["optim"]["learning_rate"] == 0.002


def test_a_changed_config_is_refused_by_the_launcher_before_anything_runs(tmp_path):
    workdir = tmp_path / "run"
    assert run_main(workdir, "--config.train.num_steps=5").returncode == 0
    result = run_main(workdir, "--config.model.hidden=16")
    assert result.returncode != 0 and "model.hidden: 8 -> 16" in result.stderr
    assert "Traceback" not in result.stderr
    allowed = run_main(workdir, "--config.train.num_steps=10")
    assert allowed.returncode == 0, allowed.stderr[-3000:]


def test_eval_subset_is_a_fixed_random_sample_of_the_whole_split():
    split = data.load("digits", "test")
    one = run_lib.eval_subset(split, 64)
    two = run_lib.eval_subset(split, 64)
    np.testing.assert_array_equal(one.images, two.images)  # the same in every run
    assert len(one.images) == 64
    # Not the first 64: rows are drawn from the whole split.
    first = split.images[:64]
    assert not np.array_equal(one.images, first)
    assert run_lib.eval_subset(split, None) is split


def test_profile_steps_write_a_trace(tmp_path):
    result = run_main(tmp_path, "--config.train.profile_steps=3,4",
                      "--config.train.num_steps=6")
    assert result.returncode == 0, result.stderr[-3000:]
    traces = list((tmp_path / "profile").rglob("*.xplane.pb"))
    assert traces and traces[0].stat().st_size > 1000
    assert "Profile of steps 3..4" in result.stdout


def test_eval_line_says_when_it_is_a_subset(smoke_run):
    _, stdout = smoke_run
    assert "a fixed random 64 of 300 test examples" in stdout


def test_non_finite_counter_shows_in_the_logged_metrics(tmp_path, monkeypatch):
    """Skipped steps reach metrics.jsonl as a count, read at log time."""
    real = experiment.MODELS["small_flow"]

    def half_poisoned(cfg, shape, levels):
        model = real(cfg, shape, levels)

        def loss(params, batch, key):
            value, metrics = model.loss(params, batch, key)
            return jnp.where(batch["index"][0] % 2 == 0, value, jnp.nan), metrics
        return model._replace(loss=loss)

    monkeypatch.setitem(experiment.MODELS, "small_flow", half_poisoned)
    config = smoke_config(parallel="jit", **{"train.max_nonfinite_in_a_row": 100})
    experiment.train_and_evaluate(config, str(tmp_path))
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    skipped = [r["skipped_nonfinite_steps"] for r in rows if r["split"] == "train"]
    assert skipped == sorted(skipped) and 0 < skipped[-1] < 20
