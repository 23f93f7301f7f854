"""End-to-end runs through experiments/main.py and train_and_evaluate."""

from __future__ import annotations

import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import experiment
from flowzoo.training import trainer
from tests.training.helpers import ROOT, final_params, run_main, smoke_config

CONFIGS = sorted(p.stem for p in (ROOT / "experiments" / "configs").glob("*.py")
                 if p.stem != "__init__")


def test_smoke_run_writes_everything_and_reports_where(tmp_path, monkeypatch):
    # JAX caches only programs that compiled for over 1 s by default; on a fast CPU none of
    # the smoke run's do, so the cache check below would depend on the machine's speed.
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    cache = f"--compilation_cache_dir={tmp_path / 'xla_cache'}"
    result = run_main(tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done: step 20" in result.stdout and str(tmp_path) in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert 0 < summary["eval"]["bits_per_dim"] < 10
    assert (tmp_path / "checkpoints" / "20").is_dir()
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"train", "eval"} <= {r["split"] for r in rows}
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    assert list(tmp_path.glob("samples_step*.png"))
    assert list((tmp_path / "xla_cache").glob("*-cache"))  # main.py turned the cache on
    for mode, expect in (("eval", '"bits_per_dim"'), ("sample", "Samples: ")):
        out = run_main(tmp_path, f"--mode={mode}", cache)
        assert out.returncode == 0 and expect in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", [None, "smoke"])
def test_describe_works_for_every_config(name, arg):
    config = importlib.import_module(f"experiments.configs.{name}").get_config(arg)
    info = experiment.describe(config)
    assert info["num_params"] > 0 and info["shapes"]


def test_mistyped_override_fails_at_once_with_the_nearest_key(tmp_path):
    result = run_main(tmp_path, "--config.optim.learnig_rate=0.1", "--mode=describe")
    assert result.returncode != 0
    assert "learning_rate" in result.stderr


def test_repeated_non_finite_steps_stop_the_run_naming_step_and_metric(tmp_path, monkeypatch):
    real_build = experiment.MODELS["small_flow"]

    def poisoned(cfg, shape, levels):
        model = real_build(cfg, shape, levels)
        return model._replace(loss=lambda p, b, k: (jnp.float32(jnp.nan), {}))

    monkeypatch.setitem(experiment.MODELS, "small_flow", poisoned)
    config = smoke_config(**{"train.max_nonfinite_in_a_row": 3, "parallel": "jit"})
    # The counters are read when the run logs (step 5), naming the steps of the streak.
    with pytest.raises(trainer.NonFiniteError,
                       match=r"step 5: the loss was not finite for 3 steps in a row \(steps 1..3"):
        experiment.train_and_evaluate(config, str(tmp_path))
    assert not list((tmp_path / "checkpoints").glob("[0-9]*"))


def test_infinite_learning_rate_stops_before_nan_parameters_reach_a_checkpoint(tmp_path):
    """Loss and gradients stay finite; the updated parameters do not.  Such steps are
    skipped and the run stops, and nothing non-finite is ever saved."""
    overrides = {"optim.learning_rate": float("inf"), "optim.warmup_steps": 0}
    result = run_main(tmp_path, *(f"--config.{k}={v}" for k, v in overrides.items()),
                      "--config.train.checkpoint_every=1")
    assert result.returncode != 0
    assert "the updated parameters or optimizer state was not finite" in result.stderr
    saved = sorted((tmp_path / "checkpoints").glob("[0-9]*"))
    assert saved, "checkpoint_every=1 saves the skipped steps' (unchanged) state"
    _, params, ema = final_params(smoke_config(**overrides), tmp_path)
    for leaf in jax.tree.leaves((params, ema)):
        assert np.all(np.isfinite(leaf))


def test_autoencoder_reconstructions_are_written_at_each_eval(tmp_path, monkeypatch):
    """A model with ``reconstruct`` gets a reconstruction grid next to its samples."""
    real_build = experiment.MODELS["small_flow"]

    def with_reconstruct(cfg, shape, levels):
        model = real_build(cfg, shape, levels)
        return model._replace(reconstruct=lambda p, b, k: (levels - 1) - b["image"])

    monkeypatch.setitem(experiment.MODELS, "small_flow", with_reconstruct)
    summary = experiment.train_and_evaluate(smoke_config(parallel="jit"), str(tmp_path))
    assert summary["reconstructions_png"].endswith("reconstructions_step0000020.png")
    assert len(list(tmp_path.glob("reconstructions_step*.png"))) == 2


def test_batch_sizes_that_do_not_split_over_devices_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"config.eval.batch_size=100 must be divisible by the 8"):
        experiment.train_and_evaluate(smoke_config(**{"eval.batch_size": 100}), str(tmp_path))
    with pytest.raises(ValueError, match=r"config.train.batch_size=12 must be divisible by the 8"):
        experiment.train_and_evaluate(smoke_config(**{"train.batch_size": 12}), str(tmp_path))


def test_model_state_is_checkpointed_and_restored(tmp_path, monkeypatch):
    """A stateful objective (VLAE's soft free bits) keeps its state across a resume."""
    real_build = experiment.MODELS["small_flow"]

    def with_state(cfg, shape, levels):
        model = real_build(cfg, shape, levels)

        def loss(params, batch, key, model_state):
            value, metrics = model.loss(params, batch, key)
            return value, metrics, {"steps_seen": model_state["steps_seen"] + 1.0}
        return model._replace(loss=loss, init_model_state=lambda: {"steps_seen": jnp.float32(0)})

    monkeypatch.setitem(experiment.MODELS, "small_flow", with_state)
    config = smoke_config(parallel="jit")
    experiment.train_and_evaluate(config, str(tmp_path))
    with config.unlocked():
        config.train.num_steps = 30
    experiment.train_and_evaluate(config, str(tmp_path))  # resumes at 20
    _, state, step = trainer._load_for_inference(config, str(tmp_path), experiment.build_model)
    assert step == 30 and float(state.model_state["steps_seen"]) == 30.0
