"""``train_and_evaluate(config, workdir)`` and friends: the one trainer.

Importable from a notebook; ``flowzoo/cli.py`` (``flowzoo train``) is a thin absl wrapper.
The loop owns optimizer, EMA, RNG, data position (= step), evaluation, checkpoints, metrics
and images; models only supply pure functions.  The workdir is a local folder or a URL such
as ``gs://bucket/run`` (workdir.py).  The pieces: run.py (setup, init, restore),
evaluation.py, run_record.py (config.json), checkpoint.py, preemption.py, metrics.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import jax
import jax.numpy as jnp
from absl import logging

from flowzoo import data
from flowzoo.errors import ConfigError, UserError
from flowzoo.training import config as config_lib
from flowzoo.training import evaluation
from flowzoo.training import metrics as metrics_lib
from flowzoo.training import host_memory, optim, preemption, run_record, steps
from flowzoo.training import workdir as workdir_lib
from flowzoo.training.checkpoint import Checkpointer, NoCheckpoint
from flowzoo.training.parallel import host_int
from flowzoo.training import run as run_lib
from flowzoo.training.run import Run, say


class NonFiniteError(UserError, RuntimeError):
    """Too many non-finite steps in a row."""


@dataclasses.dataclass
class _Progress:
    """Where a run is, for the SIGTERM message and what it should save."""

    phase: str = "start-up"
    state: object = None
    step: int = 0
    start_step: int = 0  # the step the run resumed at (0 when fresh)


def train_and_evaluate(config, workdir, *, build_model,
                       stop: preemption.StopSignal | None = None,
                       allow_config_change: bool = False, command=None) -> dict:
    """Trains (resuming from the newest intact checkpoint in ``workdir``), evaluates
    and samples.  Returns a summary: final metrics, paths, and whether the run
    was preempted (then the caller should exit with status 143 and be restarted).
    ``build_model(config.model, image_shape, num_levels) -> Model`` is the launcher's
    registry (``flowzoo.experiment`` passes its own).

    SIGTERM (one process) or JAX's preemption notice (several) at any moment saves what
    is worth saving, says so in one line and returns with ``preempted`` set.  ``stop``:
    the launcher's StopSignal (default: a new one).  A resume whose config differs from the
    workdir's config.json in a key that matters raises ConfigError unless
    ``allow_config_change``; ``command`` (the launcher's argv) is logged in the workdir."""
    root = workdir_lib.resolve(workdir)
    summary = {"workdir": str(root), "preempted": False}
    cfg = config.train
    checkpointer = Checkpointer(root, save_every=cfg.checkpoint_every, keep=cfg.keep_checkpoints)
    progress = _Progress()
    chrono = metrics_lib.Chrono()
    start_up = time.perf_counter()
    run = writer = None
    try:
        with stop or preemption.StopSignal() as stop:
            try:
                stop.check()
                run = run_lib.setup(config, root, build_model)
                _check_profile_steps(cfg.profile_steps)
                run_record.record(root, config, allow_change=allow_config_change,
                                  command=command, is_primary=run.is_primary)
                stop.check()
                writer = metrics_lib.MetricWriter(root, enabled=run.is_primary)
                progress.state = run_lib.restore_or_init(run, checkpointer)
                progress.step = progress.start_step = host_int(
                    run.parallel.get_state(progress.state).step)
                if progress.start_step == 0:
                    writer.write_text(0, "config", "```\n" + config.to_json_best_effort(
                        indent=2) + "\n```")
                stop.check()
                chrono.totals["start-up"] = time.perf_counter() - start_up
                summary |= _train_loop(run, checkpointer, writer, stop, progress, chrono)
            except preemption.Preempted:
                pass
            if progress.phase != "done":
                return summary | _save_on_preemption(run, checkpointer, progress)
        return summary
    finally:
        checkpointer.close()
        if writer is not None:
            writer.close()


def _check_profile_steps(text: str):
    if text and not _profile_range(text):
        raise ConfigError(f"config.train.profile_steps={text!r}: expected 'FIRST,LAST' with "
                          f"1 <= FIRST <= LAST, e.g. --config.train.profile_steps=10,12.")


def _profile_range(text: str):
    try:
        first, last = (int(part) for part in text.split(","))
    except ValueError:
        return None
    return (first, last) if 1 <= first <= last else None


def _train_loop(run, checkpointer, writer, stop, progress: _Progress, chrono) -> dict:
    cfg = run.config.train
    console = metrics_lib.Progress(cfg.num_steps, cfg.batch_size, run.model.loss_unit, chrono,
                                   progress.start_step)
    skipped = host_int(run.parallel.get_state(progress.state).nonfinite_total)
    schedule = optim.learning_rate(run.config.optim)
    profile = _profile_range(cfg.profile_steps)
    sums, count = None, 0
    progress.phase = "the first step's compilation"
    if progress.step < cfg.num_steps:
        say("Compiling the train step...", run.is_primary)
        with chrono.timed("compilation"):
            seconds = run.parallel.compile_train(
                progress.state, run.parallel.put_batch(run.batches.batch(progress.step)))
        say(f"Compiled the train step in {seconds:.1f} s.", run.is_primary)
    chrono.resume()
    while progress.step < cfg.num_steps:
        if profile and progress.step + 1 == profile[0]:
            jax.profiler.start_trace(str(run.workdir / "profile"))
        batch = run.parallel.put_batch(run.batches.batch(progress.step))
        progress.state, step_metrics = run.parallel.train(progress.state, batch)
        progress.step = step = progress.step + 1
        progress.phase = "training"
        sums = step_metrics if sums is None else jax.tree.map(jnp.add, sums, step_metrics)
        count += 1
        if profile and step == profile[1]:
            jax.block_until_ready(progress.state)
            jax.profiler.stop_trace()
            say(f"Profile of steps {profile[0]}..{profile[1]}: {run.workdir / 'profile'}",
                run.is_primary)
        if step % cfg.log_every == 0 or step == cfg.num_steps:
            means = {k: run.parallel.scalar(v) / count for k, v in sums.items()}
            sums, count = None, 0
            skipped = _check_finite(run, progress.state, step, skipped)
            writer.write(step, "train", means | {"learning_rate": float(schedule(step - 1)),
                                                 "skipped_nonfinite_steps": skipped})
            say(console.line(step, means["loss"]), run.is_primary)
        if step % cfg.eval_every == 0 and step < cfg.num_steps:
            progress.phase = "a periodic evaluation"
            with chrono.timed("evaluation"):
                evaluation.eval_and_write(run, progress.state, step, writer, stop)
                host_memory.release_free_memory()  # before the next train step
        with chrono.timed("checkpoints"):
            _save(run, checkpointer, progress.state, step)
        if stop.at_step(step):
            return {}  # the caller saves this step and reports
    chrono.pause()
    with chrono.timed("checkpoints"):
        _save(run, checkpointer, progress.state, progress.step, force=True)
        checkpointer.wait()  # committed before the final evaluation, which SIGTERM may cut
    progress.phase = "the final evaluation"
    with chrono.timed("evaluation"):
        summary = evaluation.eval_and_write(run, progress.state, progress.step, writer, stop)
    say(f"Time: {chrono.summary()}.", run.is_primary)
    summary |= {"step": progress.step, "checkpoint_dir": str(checkpointer.directory),
                "seconds": dict(chrono.totals)}
    if run.is_primary:
        workdir_lib.write_atomic(run.workdir / "summary.json",
                                 json.dumps(summary, indent=2) + "\n")
    progress.phase = "done"
    return summary


def _save(run, checkpointer: Checkpointer, state, step: int, *, force: bool = False):
    """Saves ``step`` if it is due (or ``force``) and not saved yet.  The state is converted
    for Orbax only then: for pmap that waits for the step and copies every leaf."""
    if checkpointer.due(step, force=force):
        checkpointer.save(step, run.parallel.checkpoint_state(state), force=force)


def _save_on_preemption(run: Run | None, checkpointer: Checkpointer,
                        progress: _Progress) -> dict:
    """After SIGTERM or a preemption notice: save the steps not yet saved, commit every
    pending save (no temporary checkpoint left behind) and say so in one line."""
    if progress.state is None or progress.step == progress.start_step:
        since = (f"the checkpoint at step {progress.step}" if progress.step else "a fresh start")
        message = (f"Preempted during {progress.phase}: no step ran since {since}, so "
                   f"nothing was saved; rerun the same command to resume.")
    else:
        _save(run, checkpointer, progress.state, progress.step, force=True)
        message = (f"Preempted during {progress.phase} at step {progress.step}: checkpoint "
                   f"saved in {checkpointer.directory}; rerun the same command to resume.")
    checkpointer.wait()
    logging.warning(message)
    if jax.process_index() == 0:
        print(message, flush=True)
    return {"preempted": True, "step": progress.step}


def _check_finite(run: Run, state, step: int, skipped_before: int) -> int:
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


def _load_for_inference(config, workdir, build_model):
    """The newest intact checkpoint, read-only: damaged steps are reported, not moved."""
    run = run_lib.setup(config, workdir, build_model)
    checkpointer = Checkpointer(workdir, save_every=1, keep=config.train.keep_checkpoints)
    state, step = checkpointer.restore_latest(run_lib.abstract_state(run),
                                              move_damaged_aside=False)
    if state is None:
        raise NoCheckpoint(f"No checkpoint in {checkpointer.directory}; train first "
                           f"(--mode=train with the same --workdir).")
    return run, run.parallel.put_state(state), step


def evaluate(config, workdir, *, build_model,
             stop: preemption.StopSignal | None = None) -> dict:
    """Metrics of the newest checkpoint on the eval split.  Raises
    ``preemption.Preempted`` on SIGTERM (nothing to save)."""
    with stop or preemption.StopSignal() as stop:
        stop.check()
        run, state, step = _load_for_inference(config, workdir, build_model)
        return {"step": step, **evaluation.evaluate(run, state, stop)}


def sample(config, workdir, *, build_model,
           stop: preemption.StopSignal | None = None) -> str | None:
    """Writes a sample grid from the newest checkpoint; returns its path.  Raises
    ``preemption.Preempted`` on SIGTERM (nothing to save)."""
    with stop or preemption.StopSignal() as stop:
        stop.check()
        run, state, step = _load_for_inference(config, workdir, build_model)
        path = evaluation.write_samples(run, state, step, name="samples_final")
        stop.check()
        return path


def describe(config, *, build_model) -> dict:
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
    model = build_model(config.model, shape, num_levels)
    n = config.train.init_batch_size
    batch = {"image": jax.ShapeDtypeStruct((n,) + shape, jnp.uint8),
             "index": jax.ShapeDtypeStruct((n,), jnp.int32)}  # put_batch casts to int32
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)
    flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
    return {"model": config.model.name, "dataset": config.data.name,
            "num_params": int(sum(math.prod(s.shape) for _, s in flat)),
            "shapes": {jax.tree_util.keystr(p): list(s.shape) for p, s in flat}}
