"""``train_and_evaluate(config, workdir)`` and friends: the one trainer.

Importable from a notebook; ``experiments/main.py`` is a thin absl wrapper.
The loop owns optimizer, EMA, RNG, data position (= step), evaluation,
checkpoints, metrics and images; models only supply pure functions.  The
workdir is a local folder or a URL such as ``gs://bucket/run`` (see workdir.py).
"""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from flowzoo import data, models
from flowzoo.training import config as config_lib
from flowzoo.training import metrics as metrics_lib
from flowzoo.training import host_memory, optim, preemption, steps
from flowzoo.training import workdir as workdir_lib
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
    workdir: epath.Path
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
                        config.train.batch_size, config.eval.batch_size,
                        max_nonfinite_in_a_row=config.train.max_nonfinite_in_a_row)
    return _Run(config, workdir_lib.resolve(workdir), train_data, eval_data, batches, model,
                tx, parallel, jax.process_index() == 0, num_levels,
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


def _abstract_state(run: _Run):
    """Shapes, dtypes and checkpoint placement of a TrainState, without running the init
    (a data-dependent Flow++ init costs a compile and a forward pass): what Orbax restores
    into."""
    key = jax.random.PRNGKey(run.config.seed)
    batch = _init_batch(run)
    model_state = run.model.init_model_state if run.model.init_model_state else (lambda: None)
    shapes = jax.eval_shape(
        lambda: steps.create_state(run.model.init(key, batch), run.tx, key, model_state()))
    return run.parallel.abstract_state(shapes)


def _restore_or_init(run: _Run, checkpointer: Checkpointer):
    restored, step = checkpointer.restore_latest(_abstract_state(run))
    if restored is None:
        _say(f"No checkpoint in {checkpointer.directory}: starting from a data-dependent "
             f"init.", run.is_primary)
        return run.parallel.put_state(_fresh_state(run))
    _say(f"Resumed from the checkpoint at step {step} in {checkpointer.directory}.",
         run.is_primary)
    return run.parallel.put_state(restored)


def _evaluate(run: _Run, state, stop: preemption.StopSignal | None = None) -> dict:
    """Per-example metrics averaged over the eval split (or its first
    ``eval.max_examples``), with the EMA parameters.  ``stop.check()`` runs between
    batches, so SIGTERM interrupts a long evaluation."""
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
        if stop is not None:
            stop.check()
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
    path = run.workdir / f"{name}_step{step:07d}.png"
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
    path = run.workdir / f"reconstructions_step{step:07d}.png"
    columns = int(math.ceil(math.sqrt(n)))
    return metrics_lib.save_image_grid(both, run.num_levels, path, columns=columns)


def _write_config(run: _Run):
    """The resolved config, once, at the run's first start (the workdir explains itself)."""
    path = run.workdir / "config.json"
    if run.is_primary and not path.exists():
        workdir_lib.write_atomic(path, run.config.to_json_best_effort(indent=2) + "\n")


@dataclasses.dataclass
class _Progress:
    """Where a run is, for the SIGTERM message and what it should save."""

    phase: str = "start-up"
    state: object = None
    step: int = 0
    start_step: int = 0  # the step the run resumed at (0 when fresh)


def train_and_evaluate(config, workdir, *, stop: preemption.StopSignal | None = None) -> dict:
    """Trains (resuming from the newest intact checkpoint in ``workdir``), evaluates
    and samples.  Returns a summary: final metrics, paths, and whether the run
    was preempted (then the caller should exit with status 143 and be restarted).

    SIGTERM (one process) or JAX's preemption notice (several) at any moment saves what
    is worth saving, says so in one line and returns with ``preempted`` set.  ``stop``:
    the launcher's StopSignal (default: a new one)."""
    root = workdir_lib.resolve(workdir)
    summary = {"workdir": str(root), "preempted": False}
    cfg = config.train
    checkpointer = Checkpointer(root, save_every=cfg.checkpoint_every, keep=cfg.keep_checkpoints)
    progress = _Progress()
    run = writer = None
    try:
        with stop or preemption.StopSignal() as stop:
            try:
                stop.check()
                run = _setup(config, root)
                stop.check()
                writer = metrics_lib.MetricWriter(root, enabled=run.is_primary)
                _write_config(run)
                progress.state = _restore_or_init(run, checkpointer)
                progress.step = progress.start_step = host_int(
                    run.parallel.get_state(progress.state).step)
                stop.check()
                summary |= _train_loop(run, checkpointer, writer, stop, progress)
            except preemption.Preempted:
                pass
            if progress.phase != "done":
                return summary | _save_on_preemption(run, checkpointer, progress)
        return summary
    finally:
        checkpointer.close()
        if writer is not None:
            writer.close()


def _train_loop(run, checkpointer, writer, stop, progress: _Progress) -> dict:
    cfg = run.config.train
    console = metrics_lib.Progress(cfg.num_steps, cfg.batch_size, run.model.loss_unit)
    skipped = host_int(run.parallel.get_state(progress.state).nonfinite_total)
    progress.phase = "the first step's compilation"
    while progress.step < cfg.num_steps:
        batch = run.parallel.put_batch(run.batches.batch(progress.step))
        progress.state, train_metrics = run.parallel.train(progress.state, batch)
        progress.step = step = progress.step + 1
        progress.phase = "training"
        if step % cfg.log_every == 0 or step == cfg.num_steps:
            host = {k: run.parallel.scalar(v) for k, v in train_metrics.items()}
            skipped = _check_finite(run, progress.state, step, skipped)
            writer.write(step, "train", host | {"skipped_nonfinite_steps": skipped})
            _say(console.line(step, host["loss"]), run.is_primary)
        if step % cfg.eval_every == 0 and step < cfg.num_steps:
            progress.phase = "a periodic evaluation"
            _eval_and_write(run, progress.state, step, writer, stop)
            host_memory.release_free_memory()  # before the next train step
        checkpointer.save(step, run.parallel.checkpoint_state(progress.state))
        if stop.at_step(step):
            return {}  # the caller saves this step and reports
    checkpointer.save(progress.step, run.parallel.checkpoint_state(progress.state), force=True)
    checkpointer.wait()  # committed before the final evaluation, which SIGTERM may cut short
    progress.phase = "the final evaluation"
    summary = _eval_and_write(run, progress.state, progress.step, writer, stop)
    summary["step"] = progress.step
    summary["checkpoint_dir"] = str(checkpointer.directory)
    if run.is_primary:
        workdir_lib.write_atomic(run.workdir / "summary.json",
                                 json.dumps(summary, indent=2) + "\n")
    progress.phase = "done"
    return summary


def _save_on_preemption(run: _Run | None, checkpointer: Checkpointer,
                        progress: _Progress) -> dict:
    """After SIGTERM or a preemption notice: save the steps not yet saved, commit every
    pending save (no temporary checkpoint left behind) and say so in one line."""
    if progress.state is None or progress.step == progress.start_step:
        since = (f"the checkpoint at step {progress.step}" if progress.step else "a fresh start")
        message = (f"Preempted during {progress.phase}: no step ran since {since}, so "
                   f"nothing was saved; rerun the same command to resume.")
    else:
        checkpointer.save(progress.step, run.parallel.checkpoint_state(progress.state),
                          force=True)
        message = (f"Preempted during {progress.phase} at step {progress.step}: checkpoint "
                   f"saved in {checkpointer.directory}; rerun the same command to resume.")
    checkpointer.wait()
    logging.warning(message)
    if jax.process_index() == 0:
        print(message, flush=True)
    return {"preempted": True, "step": progress.step}


def _check_finite(run: _Run, state, step: int, skipped_before: int) -> int:
    """Reads the step's skip counters (at log time: no per-step host round trip), warns
    about new skips and stops the run once the limit of skips in a row was reached."""
    host = run.parallel.get_state(state)
    limit_step = host_int(host.nonfinite_limit_step)
    skipped = host_int(host.nonfinite_total)
    metric = steps.NONFINITE_METRICS.get(host_int(host.nonfinite_metric), "?")
    if limit_step:
        limit = run.config.train.max_nonfinite_in_a_row
        raise NonFiniteError(
            f"Stopping at step {step}: the {metric} was not finite for {limit} steps in a row "
            f"(steps {limit_step - limit + 1}..{limit_step}; {skipped} skipped in all; none "
            f"reached the parameters or a checkpoint).  Lower config.optim.learning_rate or "
            f"raise config.train.max_nonfinite_in_a_row.")
    if skipped > skipped_before:
        logging.warning("%d steps skipped up to step %d (last: non-finite %s).",
                        skipped - skipped_before, step, metric)
    return skipped


def _eval_and_write(run: _Run, state, step: int, writer, stop=None) -> dict:
    results = _evaluate(run, state, stop)
    results["loss"] = results[run.model.eval_metric]
    writer.write(step, "eval", results)
    samples = _write_samples(run, state, step)
    recons = _write_reconstructions(run, state, step) if run.model.reconstruct else None
    curve = None
    if run.is_primary:
        curve = metrics_lib.save_learning_curve(
            writer, run.model.loss_unit, run.workdir / "learning_curve.png")
        _say(f"eval at step {step}: {run.model.eval_metric} {results['loss']:.4f} "
             f"{run.model.loss_unit} (EMA params, {int(results['num_examples'])} examples); "
             f"samples: {samples}")
    return {"eval": results, "samples_png": samples, "reconstructions_png": recons,
            "learning_curve_png": curve}


def _load_for_inference(config, workdir):
    """The newest intact checkpoint, read-only: damaged steps are reported, not moved."""
    run = _setup(config, workdir)
    checkpointer = Checkpointer(workdir, save_every=1, keep=config.train.keep_checkpoints)
    state, step = checkpointer.restore_latest(_abstract_state(run), move_damaged_aside=False)
    if state is None:
        raise FileNotFoundError(f"No checkpoint in {checkpointer.directory}; train first "
                                f"(--mode=train with the same --workdir).")
    return run, run.parallel.put_state(state), step


def evaluate(config, workdir, *, stop: preemption.StopSignal | None = None) -> dict:
    """Metrics of the newest checkpoint on the eval split.  Raises
    ``preemption.Preempted`` on SIGTERM (nothing to save)."""
    with stop or preemption.StopSignal() as stop:
        stop.check()
        run, state, step = _load_for_inference(config, workdir)
        return {"step": step, **_evaluate(run, state, stop)}


def sample(config, workdir, *, stop: preemption.StopSignal | None = None) -> str | None:
    """Writes a sample grid from the newest checkpoint; returns its path.  Raises
    ``preemption.Preempted`` on SIGTERM (nothing to save)."""
    with stop or preemption.StopSignal() as stop:
        stop.check()
        run, state, step = _load_for_inference(config, workdir)
        stop.check()
        path = _write_samples(run, state, step, name="samples_final")
        stop.check()
        return path


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
