"""How many CPU devices a one-process launch asks JAX for: one per core, when the batches allow.

One XLA:CPU program runs its operations one after another, each split over the cores as far
as it goes: on 2 cores the Flow++ train step keeps them about three quarters busy.  With one
device per core the batch is split over the devices (the trainer's ``sharded`` or ``pmap``
mode) and their programs run side by side: on 2 cores the README's main command took 82 s
instead of 102 s and the official CIFAR-10 Flow++ step 12-13% less time, with the same
results up to float rounding (docs/benchmarks.md#cpu-devices).  The count must divide every
batch the run splits, so it is the largest count up to the number of cores that divides the
train and eval batch sizes.  It only matters where the run computes on the CPU; GPU and TPU
runs ignore it.
"""

from __future__ import annotations

import os

import jax
from absl import logging


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, so ``taskset`` and cpusets count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def count_for(config, cores: int) -> int:
    """The largest device count ``<= cores`` that divides the train and eval batch sizes
    (1 for ``parallel='jit'``, which computes on one device)."""
    if config.parallel == "jit":
        return 1
    sizes = [config.train.batch_size] + ([config.eval.batch_size] if config.eval.batch_size
                                         else [])
    return largest_count(sizes, cores)


def largest_count(batch_sizes, cores: int) -> int:
    """The largest count ``<= cores`` (at least 1) that divides every batch size."""
    return max(d for d in range(1, max(cores, 1) + 1) if all(s % d == 0 for s in batch_sizes))


def choose(config, user_chose: bool, cores: int | None = None) -> int | None:
    """Sets ``jax_num_cpu_devices`` for this launch unless the user chose it
    (``--jax_num_cpu_devices`` or ``JAX_NUM_CPU_DEVICES``); returns the count set, or None.
    Must run before JAX starts its backends."""
    if user_chose or "JAX_NUM_CPU_DEVICES" in os.environ:
        return None
    count = count_for(config, usable_cores() if cores is None else cores)
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as err:  # JAX started already (a notebook): keep its devices
        logging.warning("Keeping JAX's CPU devices: %s", err)
        return None
    return count
