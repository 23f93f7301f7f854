"""What a run is made of (data, model, optimizer, parallel mode) and how its state starts:
a data-dependent init, or the newest intact checkpoint."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from flowzoo import data
from flowzoo.training import config as config_lib
from flowzoo.training import host_memory, optim, steps
from flowzoo.training import workdir as workdir_lib
from flowzoo.training.checkpoint import Checkpointer
from flowzoo.training.parallel import Parallel

EVAL_SUBSET_SEED = 0  # eval.max_examples: the same random subset in every run and process


@dataclasses.dataclass
class Run:
    config: object
    workdir: epath.Path
    train_data: object
    eval_data: object  # the whole eval split, or its fixed random subset (eval.max_examples)
    eval_split_size: int  # examples in the whole eval split
    batches: object
    model: object
    tx: object
    parallel: Parallel
    is_primary: bool
    num_levels: int  # of the data the model sees (2 once binarized)
    sample_fn: object = None  # model.sample compiled by parallel.sampler, once per run


def say(message: str, primary: bool = True):
    """A lifecycle line for the console (stdout, process 0 only) and the log."""
    logging.info(message)
    if primary:
        print(message, flush=True)


def _data_kwargs(cfg):
    return dict(source=cfg.source, data_dir=cfg.data_dir, manual_dir=cfg.manual_dir,
                num_bits=cfg.num_bits)


def eval_subset(dataset, max_examples):
    """The first ``max_examples`` of a fixed random permutation of ``dataset`` (in index
    order), or all of it: test files sorted by class would otherwise give one class only."""
    n = len(dataset.images)
    if not max_examples or max_examples >= n:
        return dataset
    keep = np.sort(np.random.default_rng(EVAL_SUBSET_SEED).permutation(n)[:max_examples])
    return dataclasses.replace(dataset, images=dataset.images[keep])


def setup(config, workdir, build_model) -> Run:
    """``build_model(config.model, image_shape, num_levels) -> Model``: the launcher's
    registry (``flowzoo.experiment.build_model``); the trainer knows no model."""
    config_lib.validate(config)
    train_data = data.load(config.data.name, config.data.train_split, **_data_kwargs(config.data))
    eval_split = data.load(config.data.name, config.data.eval_split, **_data_kwargs(config.data))
    batches = data.Batches(train_data, config.train.batch_size, seed=config.seed,
                           process_index=jax.process_index(),
                           process_count=jax.process_count(),
                           binarization=config.data.binarization)
    num_levels = 2 if config.data.binarization != "none" else train_data.num_levels
    model = build_model(config.model, train_data.images.shape[1:], num_levels)
    tx = optim.make_optimizer(config.optim)
    parallel = Parallel(config.parallel, model, tx, config.optim.ema_decay,
                        config.train.batch_size, config.eval.batch_size,
                        max_nonfinite_in_a_row=config.train.max_nonfinite_in_a_row)
    return Run(config, workdir_lib.resolve(workdir), train_data,
               eval_subset(eval_split, config.eval.max_examples), len(eval_split.images),
               batches, model, tx, parallel, jax.process_index() == 0, num_levels,
               parallel.sampler(model.sample))


def init_batch(run: Run):
    """The same random training examples on every process (Flow++: 128)."""
    n = min(run.config.train.init_batch_size, len(run.train_data.images))
    init_batches = data.Batches(run.train_data, n, seed=run.config.seed + 1,
                                binarization=run.config.data.binarization)
    batch = init_batches.batch(0)
    return {"image": batch["image"], "index": batch["index"].astype(np.int32)}


def fresh_state(run: Run):
    key = jax.random.PRNGKey(run.config.seed)
    init_key, run_key = jax.random.split(key)
    params = jax.block_until_ready(jax.jit(run.model.init)(init_key, init_batch(run)))
    host_memory.release_free_memory()  # the init's compile and forward pass are done with
    if jax.process_count() > 1:  # every process starts from process 0's parameters
        params = multihost_utils.broadcast_one_to_all(params)
    model_state = run.model.init_model_state() if run.model.init_model_state else None
    return steps.create_state(params, run.tx, run_key, model_state)


def abstract_state(run: Run):
    """Shapes, dtypes and checkpoint placement of a TrainState, without running the init
    (a data-dependent Flow++ init costs a compile and a forward pass): what Orbax restores
    into."""
    key = jax.random.PRNGKey(run.config.seed)
    batch = init_batch(run)
    model_state = run.model.init_model_state if run.model.init_model_state else (lambda: None)
    shapes = jax.eval_shape(
        lambda: steps.create_state(run.model.init(key, batch), run.tx, key, model_state()))
    return run.parallel.abstract_state(shapes)


def num_params(abstract) -> int:
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(abstract.params)))


def restore_or_init(run: Run, checkpointer: Checkpointer):
    abstract = abstract_state(run)
    say(f"{jax.default_backend()}: {jax.device_count()} x {jax.devices()[0].device_kind} "
        f"({jax.local_device_count()} local), process {jax.process_index()} of "
        f"{jax.process_count()}, parallel={run.config.parallel}; model "
        f"{run.config.model.name} with {num_params(abstract):,} parameters.", run.is_primary)
    restored, step = checkpointer.restore_latest(abstract)
    if restored is None:
        say(f"No checkpoint in {checkpointer.directory}: starting from a data-dependent "
            f"init.", run.is_primary)
        return run.parallel.put_state(fresh_state(run))
    say(f"Resumed from the checkpoint at step {step} in {checkpointer.directory}.",
        run.is_primary)
    return run.parallel.put_state(restored)
