"""``train_and_evaluate(config, workdir)`` and friends: the one trainer.

Importable from a notebook; ``experiments/main.py`` is a thin absl wrapper.
The loop owns optimizer, EMA, RNG, data position (= step), evaluation,
checkpoints, metrics and images; models only supply pure functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from flowzoo import data, models
from flowzoo.training import config as config_lib
from flowzoo.training import metrics as metrics_lib
from flowzoo.training import host_memory, optim, steps
from flowzoo.training.checkpoint import Checkpointer
from flowzoo.training.parallel import Parallel, host_int


def _say(message: str, primary: bool = True):
    """A lifecycle line for the console (stdout, process 0 only) and the log."""
    logging.info(message)
    if primary:
        print(message, flush=True)


class NonFiniteError(RuntimeError):
    """Too many non-finite steps in a row."""


@dataclasses.dataclass
class _Run:
    config: object
    workdir: str
    train_data: object
    eval_data: object
    batches: object
    model: object
    tx: object
    parallel: Parallel
    is_primary: bool
    num_levels: int  # of the data the model sees (2 once binarized)
    sample_fn: object = None  # jit(model.sample), compiled once per run


def _data_kwargs(cfg):
    return dict(source=cfg.source, data_dir=cfg.data_dir, manual_dir=cfg.manual_dir,
                num_bits=cfg.num_bits)


def _setup(config, workdir) -> _Run:
    config_lib.validate(config)
    train_data = data.load(config.data.name, config.data.train_split, **_data_kwargs(config.data))
    eval_data = data.load(config.data.name, config.data.eval_split, **_data_kwargs(config.data))
    batches = data.Batches(train_data, config.train.batch_size, seed=config.seed,
                           process_index=jax.process_index(),
                           process_count=jax.process_count(),
                           binarization=config.data.binarization)
    num_levels = 2 if config.data.binarization != "none" else train_data.num_levels
    model = models.build(config.model, train_data.images.shape[1:], num_levels)
    tx = optim.make_optimizer(config.optim)
    parallel = Parallel(config.parallel, model, tx, config.optim.ema_decay,
                        config.train.batch_size, config.eval.batch_size)
    return _Run(config, workdir, train_data, eval_data, batches, model, tx, parallel,
                jax.process_index() == 0, num_levels,
                jax.jit(model.sample, static_argnums=2))


def _init_batch(run: _Run):
    """The same random training examples on every process (Flow++: 128)."""
    n = min(run.config.train.init_batch_size, len(run.train_data.images))
    init_batches = data.Batches(run.train_data, n, seed=run.config.seed + 1,
                                binarization=run.config.data.binarization)
    batch = init_batches.batch(0)
    return {"image": batch["image"], "index": batch["index"].astype(np.int32)}


def _fresh_state(run: _Run):
    key = jax.random.PRNGKey(run.config.seed)
    init_key, run_key = jax.random.split(key)
    params = jax.block_until_ready(jax.jit(run.model.init)(init_key, _init_batch(run)))
    host_memory.release_free_memory()  # the init's compile and forward pass are done with
    if jax.process_count() > 1:  # every process starts from process 0's parameters
        params = multihost_utils.broadcast_one_to_all(params)
    model_state = run.model.init_model_state() if run.model.init_model_state else None
    return steps.create_state(params, run.tx, run_key, model_state)


def _state_template(run: _Run):
    """Shapes, dtypes and placement of a fresh TrainState, without running the init (a
    data-dependent Flow++ init costs a compile and a forward pass): what Orbax restores to."""
    key = jax.random.PRNGKey(run.config.seed)
    batch = _init_batch(run)
    model_state = run.model.init_model_state if run.model.init_model_state else (lambda: None)
    shapes = jax.eval_shape(
        lambda: steps.create_state(run.model.init(key, batch), run.tx, key, model_state()))
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                        shapes)


def _restore_or_init(run: _Run, checkpointer: Checkpointer):
    template = _state_template(run)
    restored, step = checkpointer.restore_latest(template)
    if restored is None:
        _say(f"No checkpoint in {checkpointer.directory}: starting from a data-dependent "
             f"init.", run.is_primary)
        return run.parallel.put_state(_fresh_state(run))
    _say(f"Resumed from the checkpoint at step {step} in {checkpointer.directory}.",
         run.is_primary)
    return run.parallel.put_state(restored)


def _evaluate(run: _Run, state) -> dict:
    """Per-example metrics averaged over the eval split (or its first
    ``eval.max_examples``), with the EMA parameters."""
    eval_data = run.eval_data
    limit = run.config.eval.max_examples
    if limit:
        eval_data = dataclasses.replace(eval_data, images=eval_data.images[:limit])
    batches = data.Batches(eval_data, run.config.eval.batch_size, seed=run.config.seed,
                           shuffle=False, process_index=jax.process_index(),
                           process_count=jax.process_count(),
                           binarization=run.config.data.binarization)
    key = jax.random.fold_in(jax.random.PRNGKey(run.config.seed), 0x5EED)
    totals = None
    for batch in batches.eval_batches():
        sums = run.parallel.eval_sums(state, run.parallel.put_batch(batch), key)
        sums = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float64), sums)
        totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
    count = totals.pop("count")
    return {k: float(v / count) for k, v in totals.items()} | {"num_examples": float(count)}


def _write_samples(run: _Run, state, step: int, name: str = "samples") -> str | None:
    params = run.parallel.get_state(state).ema_params
    key = jax.random.fold_in(jax.random.PRNGKey(run.config.seed), step)
    n = run.config.eval.num_samples
    images = run.sample_fn(params, key, n)
    if not run.is_primary:
        return None
    path = os.path.join(run.workdir, f"{name}_step{step:07d}.png")
    return metrics_lib.save_image_grid(jax.device_get(images), run.num_levels, path)


def _write_reconstructions(run: _Run, state, step: int) -> str | None:
    """Autoencoders: eval images (top rows) above their reconstructions."""
    n = min(run.config.eval.num_samples, len(run.eval_data.images))
    batch = {"image": np.asarray(run.eval_data.images[:n]),
             "index": np.arange(n, dtype=np.int32)}
    if run.config.data.binarization != "none":
        batch["image"] = data.Batches(run.eval_data, n, seed=run.config.seed, shuffle=False,
                                      binarization=run.config.data.binarization).batch(0)["image"]
    params = run.parallel.get_state(state).ema_params
    key = jax.random.fold_in(jax.random.PRNGKey(run.config.seed), step + 1)
    recon = jax.jit(run.model.reconstruct)(params, batch, key)
    if not run.is_primary:
        return None
    both = np.concatenate([batch["image"], np.asarray(jax.device_get(recon))])
    path = os.path.join(run.workdir, f"reconstructions_step{step:07d}.png")
    columns = int(math.ceil(math.sqrt(n)))
    return metrics_lib.save_image_grid(both, run.num_levels, path, columns=columns)


@contextlib.contextmanager
def _sigterm_flag():
    """Yields a dict whose 'set' becomes True on SIGTERM (main thread only)."""
    flag = {"set": False}
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: flag.update(set=True))
    except ValueError:  # not the main thread (e.g. a notebook worker): no handler
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains (resuming from the newest checkpoint in ``workdir``), evaluates
    and samples.  Returns a summary: final metrics, paths, and whether the run
    was preempted (then the caller should exit and be restarted)."""
    run = _setup(config, workdir)
    cfg = config.train
    checkpointer = Checkpointer(workdir, save_every=cfg.checkpoint_every,
                                keep=cfg.keep_checkpoints)
    writer = metrics_lib.MetricWriter(workdir, enabled=run.is_primary)
    summary = {"workdir": os.path.abspath(workdir), "preempted": False}
    try:
        state = _restore_or_init(run, checkpointer)
        step = host_int(run.parallel.get_state(state).step)
        progress = metrics_lib.Progress(cfg.num_steps, cfg.batch_size, run.model.loss_unit)
        with _sigterm_flag() as sigterm:
            while step < cfg.num_steps:
                batch = run.parallel.put_batch(run.batches.batch(step))
                state, train_metrics = run.parallel.train(state, batch)
                step += 1
                _check_finite(run, state, step)
                if step % cfg.log_every == 0 or step == cfg.num_steps:
                    host = {k: run.parallel.scalar(v) for k, v in train_metrics.items()}
                    writer.write(step, "train", host)
                    _say(progress.line(step, host["loss"]), run.is_primary)
                if step % cfg.eval_every == 0 and step < cfg.num_steps:
                    _eval_and_write(run, state, step, writer)
                    host_memory.release_free_memory()  # before the next train step
                checkpointer.save(step, run.parallel.get_state(state))
                if sigterm["set"] or checkpointer.reached_preemption(step):
                    checkpointer.save(step, run.parallel.get_state(state), force=True)
                    checkpointer.wait()
                    logging.warning("Preempted at step %d: checkpoint saved, exiting.", step)
                    _say(f"Preempted at step {step}: checkpoint saved in "
                         f"{checkpointer.directory}; rerun the same command to resume.",
                         run.is_primary)
                    return summary | {"preempted": True, "step": step}
        checkpointer.save(step, run.parallel.get_state(state), force=True)
        summary |= _eval_and_write(run, state, step, writer)
        summary["step"] = step
        summary["checkpoint_dir"] = checkpointer.directory
        checkpointer.wait()
        if run.is_primary:
            with open(os.path.join(workdir, "summary.json"), "w") as f:
                json.dump(summary, f, indent=2)
        return summary
    finally:
        checkpointer.close()
        writer.close()


def _check_finite(run: _Run, state, step: int):
    host = run.parallel.get_state(state)
    streak = host_int(host.nonfinite_streak)
    if streak and streak >= run.config.train.max_nonfinite_in_a_row:
        metric = steps.NONFINITE_METRICS.get(host_int(host.nonfinite_metric), "?")
        raise NonFiniteError(
            f"Stopping at step {step}: the {metric} was not finite for {streak} steps in a row "
            f"(steps {step - streak + 1}..{step}; {host_int(host.nonfinite_total)} skipped in "
            f"all; none reached the parameters or a checkpoint).  Lower "
            f"config.optim.learning_rate or raise config.train.max_nonfinite_in_a_row.")
    if streak:
        logging.warning("Step %d skipped: non-finite %s.", step,
                        steps.NONFINITE_METRICS.get(host_int(host.nonfinite_metric), "?"))


def _eval_and_write(run: _Run, state, step: int, writer) -> dict:
    results = _evaluate(run, state)
    results["loss"] = results[run.model.eval_metric]
    writer.write(step, "eval", results)
    samples = _write_samples(run, state, step)
    recons = _write_reconstructions(run, state, step) if run.model.reconstruct else None
    curve = None
    if run.is_primary:
        curve = metrics_lib.save_learning_curve(
            writer, run.model.loss_unit, os.path.join(run.workdir, "learning_curve.png"))
        _say(f"eval at step {step}: {run.model.eval_metric} {results['loss']:.4f} "
             f"{run.model.loss_unit} (EMA params, {int(results['num_examples'])} examples); "
             f"samples: {samples}")
    return {"eval": results, "samples_png": samples, "reconstructions_png": recons,
            "learning_curve_png": curve}


def _load_for_inference(config, workdir):
    run = _setup(config, workdir)
    checkpointer = Checkpointer(workdir, save_every=1, keep=config.train.keep_checkpoints)
    template = _state_template(run)
    state, step = checkpointer.restore_latest(template)
    checkpointer.close()
    if state is None:
        raise FileNotFoundError(f"No checkpoint in {checkpointer.directory}; train first "
                                f"(--mode=train with the same --workdir).")
    return run, run.parallel.put_state(state), step


def evaluate(config, workdir: str) -> dict:
    """Metrics of the newest checkpoint on the eval split."""
    run, state, step = _load_for_inference(config, workdir)
    return {"step": step, **_evaluate(run, state)}


def sample(config, workdir: str) -> str | None:
    """Writes a sample grid from the newest checkpoint; returns its path."""
    run, state, step = _load_for_inference(config, workdir)
    return _write_samples(run, state, step, name="samples_final")


def describe(config) -> dict:
    """Parameter count and shapes of the model, without data, training or init
    compute (shapes come from the dataset table, so configs whose data is not
    on this machine work too)."""
    config_lib.validate(config)
    info = data.DATASETS[config.data.name]
    shape = tuple(info.shape)
    num_levels = info.num_levels
    if config.data.num_bits:  # bit reduction first, then binarization (as the pipeline does)
        num_levels = 2 ** config.data.num_bits
    if config.data.binarization != "none":
        num_levels = 2
    model = models.build(config.model, shape, num_levels)
    n = config.train.init_batch_size
    batch = {"image": jax.ShapeDtypeStruct((n,) + shape, jnp.uint8),
             "index": jax.ShapeDtypeStruct((n,), jnp.int32)}  # put_batch casts to int32
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)
    flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
    return {"model": config.model.name, "dataset": config.data.name,
            "num_params": int(sum(math.prod(s.shape) for _, s in flat)),
            "shapes": {jax.tree_util.keystr(p): list(s.shape) for p, s in flat}}
