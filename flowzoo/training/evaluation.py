"""Evaluation with the EMA parameters: metrics over the eval split, sample and
reconstruction grids (PNG files and TensorBoard images), the learning curve."""

from __future__ import annotations

import math

import jax
import numpy as np

from flowzoo import data
from flowzoo.training import metrics as metrics_lib
from flowzoo.training.run import Run, say

METADATA_KEYS = ("num_examples",)  # logged with the metrics, not plotted as one


def evaluate(run: Run, state, stop=None) -> dict:
    """Per-example metrics averaged over ``run.eval_data``.  ``stop.check()`` runs between
    batches, so SIGTERM interrupts a long evaluation."""
    batches = data.Batches(run.eval_data, run.config.eval.batch_size, seed=run.config.seed,
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


def write_samples(run: Run, state, step: int, writer=None, name: str = "samples"):
    """A grid of ``eval.num_samples`` samples -> PNG (and TensorBoard); returns its path.
    Process 0 alone draws it (on its own devices: ``Parallel.sampler``)."""
    if not run.is_primary:
        return None
    params = run.parallel.get_state(state).ema_params
    key = jax.random.fold_in(jax.random.PRNGKey(run.config.seed), step)
    images = run.sample_fn(params, key, run.config.eval.num_samples)
    grid = metrics_lib.image_grid(jax.device_get(images), run.num_levels)
    if writer is not None:
        writer.write_image(step, name, grid)
    return metrics_lib.save_png(grid, run.workdir / f"{name}_step{step:07d}.png")


def write_reconstructions(run: Run, state, step: int, writer=None):
    """Autoencoders: eval images (top rows) above their reconstructions."""
    n = min(run.config.eval.num_samples, len(run.eval_data.images))
    batch = data.Batches(run.eval_data, n, seed=run.config.seed, shuffle=False,
                         binarization=run.config.data.binarization).batch(0)
    batch = {"image": batch["image"], "index": batch["index"].astype(np.int32)}
    params = run.parallel.get_state(state).ema_params
    key = jax.random.fold_in(jax.random.PRNGKey(run.config.seed), step + 1)
    recon = jax.jit(run.model.reconstruct)(params, batch, key)
    if not run.is_primary:
        return None
    both = np.concatenate([batch["image"], np.asarray(jax.device_get(recon))])
    grid = metrics_lib.image_grid(both, run.num_levels, columns=int(math.ceil(math.sqrt(n))))
    if writer is not None:
        writer.write_image(step, "reconstructions", grid)
    return metrics_lib.save_png(grid, run.workdir / f"reconstructions_step{step:07d}.png")


def eval_and_write(run: Run, state, step: int, writer, stop=None) -> dict:
    results = evaluate(run, state, stop)
    results["loss"] = results[run.model.eval_metric]
    metrics = {k: v for k, v in results.items() if k not in METADATA_KEYS}
    writer.write(step, "eval", metrics, metadata={k: results[k] for k in METADATA_KEYS})
    samples = write_samples(run, state, step, writer)
    recons = write_reconstructions(run, state, step, writer) if run.model.reconstruct else None
    curve = None
    if run.is_primary:
        curve = metrics_lib.save_learning_curve(
            writer, run.model.loss_unit, run.workdir / "learning_curve.png")
        count = int(results["num_examples"])
        which = (f"{count} {run.config.data.eval_split} examples" if count >= run.eval_split_size
                 else f"a fixed random {count} of {run.eval_split_size} "
                      f"{run.config.data.eval_split} examples")
        say(f"eval at step {step}: {run.model.eval_metric} {results['loss']:.4f} "
            f"{run.model.loss_unit} (EMA params, {which}); samples: {samples}")
    return {"eval": results, "samples_png": samples, "reconstructions_png": recons,
            "learning_curve_png": curve}
