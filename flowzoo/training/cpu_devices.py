"""How many CPU devices a one-process launch asks JAX for: one per core, when the batches allow.

One XLA:CPU program runs its operations one after another, each split over the cores as far
as it goes: on 2 cores the Flow++ train step keeps them about three quarters busy.  With one
device per core the batch is split over the devices (the trainer's ``sharded`` or ``pmap``
mode) and their programs run side by side: on 2 cores the README's main command took 82 s
instead of 102 s and the official CIFAR-10 Flow++ step ran 12-13% faster, with the same
results up to float rounding (docs/benchmarks.md#cpu-devices).  The count must divide every
batch the run splits, so it is the largest count up to the number of cores that divides the
train and eval batch sizes, and at most :data:`MAX_AUTO_DEVICES`: every device holds its own
copy of the training state (about 0.46 GiB more per device for the CIFAR-10 Flow++), and the
gain was measured on 2 cores only.  It matters only where the run computes on the CPU; GPU
and TPU runs ignore it.
"""

from __future__ import annotations

import math
import os

import jax
from absl import logging

MAX_AUTO_DEVICES = 8


def usable_cores() -> int:
    """CPUs this process may use: its affinity mask (``taskset``, cpusets), or fewer where a
    cgroup CPU quota (``docker --cpus``, a Kubernetes limit) allows fewer."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:  # cgroup v2: "max 100000" or "200000 100000"
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def largest_count(batch_sizes, cores: int) -> int:
    """The largest count ``<= min(cores, MAX_AUTO_DEVICES)`` (at least 1) that divides every
    batch size."""
    top = max(1, min(cores, MAX_AUTO_DEVICES))
    return max(d for d in range(1, top + 1) if all(s % d == 0 for s in batch_sizes))


def count_for(config, cores: int) -> int:
    """The device count for ``config``'s train and eval batch sizes (1 for
    ``parallel='jit'``, which computes on one device)."""
    if config.parallel == "jit":
        return 1
    return largest_count([s for s in (config.train.batch_size, config.eval.batch_size) if s],
                         cores)


def user_chose(flag_present: bool) -> bool:
    """Whether the user set the CPU device count: ``--jax_num_cpu_devices``,
    ``JAX_NUM_CPU_DEVICES``, or XLA's ``--xla_force_host_platform_device_count``."""
    return (flag_present or "JAX_NUM_CPU_DEVICES" in os.environ
            or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""))


def choose(config, flag_present: bool, cores: int | None = None) -> int | None:
    """Sets ``jax_num_cpu_devices`` for this launch unless the user chose (:func:`user_chose`);
    returns the count set, or None.  Must run before JAX starts its backends."""
    if user_chose(flag_present):
        return None
    cores = usable_cores() if cores is None else cores
    count = count_for(config, cores)
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as err:  # JAX started already (a notebook): keep its devices
        logging.warning("Keeping JAX's CPU devices: %s", err)
        return None
    logging.info("%d CPU device(s): %d usable cores, train batch %s, eval batch %s "
                 "(--jax_num_cpu_devices=N chooses).", count, cores,
                 config.train.batch_size, config.eval.batch_size)
    return count
