"""Three ways to run the same pure steps: ``jit``, ``sharded`` (default), ``pmap``.

* ``jit``: one device, plain ``jax.jit``.
* ``sharded``: ``jit`` with explicit shardings over a 1-D ``data`` mesh of all
  (global) devices: batch split on its leading axis, state replicated.  With
  several processes each one passes its local slice of the global batch.
* ``pmap``: the state replicated on the local devices, the local batch split
  over them, gradients averaged with ``pmean`` (across hosts too).

All three see the same global batch and the same per-example keys, so they
compute the same update up to float reassociation.

Checkpoints hold one copy of the state as global arrays replicated over every device of
every process (one device for ``jit``), whatever the mode: :meth:`Parallel.checkpoint_state`
and :meth:`Parallel.abstract_state` convert, so a checkpoint written by a 2-process pmap run
restores in a 1-process notebook and the other way round.
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from flowzoo.errors import ConfigError
from flowzoo.training import host_memory, steps

MODES = ("jit", "sharded", "pmap")


class Parallel:
    """Places state and batches and runs the compiled train / eval steps."""

    def __init__(self, mode, model, tx, ema_decay, global_batch_size, eval_batch_size, *,
                 max_nonfinite_in_a_row):
        if mode not in MODES:
            raise ConfigError(f"config.parallel must be one of {MODES}, got {mode!r}.")
        if mode == "jit" and jax.process_count() > 1:
            raise ConfigError("config.parallel='jit' runs on one device; with several processes "
                             "use 'sharded' or 'pmap'.")
        n = {"jit": 1, "sharded": jax.device_count(), "pmap": jax.device_count()}[mode]
        for size, key in ((global_batch_size, "train.batch_size"),
                          (eval_batch_size or n, "eval.batch_size")):
            if size % n:
                raise ConfigError(f"config.{key}={size} must be divisible by the {n} devices of "
                                 f"parallel={mode!r}; change config.{key}.")
        self.mode = mode
        self._train_compiled = False
        train = functools.partial(steps.train_step, model=model, tx=tx, ema_decay=ema_decay,
                                  max_nonfinite_in_a_row=max_nonfinite_in_a_row)
        self._global_mesh = Mesh(np.asarray(jax.devices()), ("data",))
        self._checkpoint_sharding = (
            jax.sharding.SingleDeviceSharding(jax.devices()[0]) if mode == "jit"
            else NamedSharding(self._global_mesh, PartitionSpec()))
        evaluate = functools.partial(steps.eval_step, model=model)
        if mode == "jit":
            self._train = jax.jit(train, donate_argnums=0)
            self._eval = jax.jit(evaluate)
        elif mode == "sharded":
            self._replicated = NamedSharding(self._global_mesh, PartitionSpec())
            self._data = NamedSharding(self._global_mesh, PartitionSpec("data"))
            self._train = jax.jit(train, in_shardings=(self._replicated, self._data),
                                  out_shardings=(self._replicated, self._replicated),
                                  donate_argnums=0)
            self._eval = jax.jit(evaluate, in_shardings=(self._replicated, self._data, None),
                                 out_shardings=self._replicated)
        else:
            self._train = jax.pmap(functools.partial(train, axis_name="batch"),
                                   axis_name="batch", donate_argnums=0)
            self._eval = jax.pmap(functools.partial(evaluate, axis_name="batch"),
                                  axis_name="batch", in_axes=(0, 0, None))

    # -- placement ------------------------------------------------------------
    def put_state(self, state):
        """Host state, or a restored checkpoint's -> the layout this mode computes with."""
        if self.mode == "sharded":
            return jax.device_put(state, self._replicated)
        if self.mode == "pmap":  # one copy per local device, stacked on axis 0
            n = jax.local_device_count()
            local = NamedSharding(Mesh(np.asarray(jax.local_devices()), ("batch",)),
                                  PartitionSpec("batch"))

            def stack(x):
                if isinstance(x, jax.Array) and not x.is_fully_addressable:
                    x = x.addressable_data(0)  # this process's copy of a replicated array
                return jax.device_put(jnp.broadcast_to(x, (n,) + jnp.shape(x)), local)
            return jax.tree.map(stack, state)
        return jax.device_put(state, jax.devices()[0])

    def get_state(self, state):
        """The state as one copy that this process can compute with (sampling)."""
        if self.mode == "pmap":
            return jax.tree.map(_first_local_copy, state)
        return state

    def checkpoint_state(self, state):
        """The state as arrays every process can save together: pmap's per-device copies
        become one global replicated array (Orbax cannot save host-local arrays)."""
        one = self.get_state(state)
        if self.mode == "pmap" and jax.process_count() > 1:
            return multihost_utils.host_local_array_to_global_array(
                one, self._global_mesh, PartitionSpec())
        return one

    def abstract_state(self, shapes):
        """Shapes and dtypes of a state -> what a checkpoint restores into (the layout of
        :meth:`checkpoint_state`, for this run's devices and processes)."""
        return jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self._checkpoint_sharding),
            shapes)

    def put_batch(self, batch):
        """This process's slice of the global batch (numpy) -> device arrays."""
        batch = {k: (v.astype(np.int32) if v.dtype == np.int64 else v) for k, v in batch.items()}
        if self.mode == "sharded":
            return {k: jax.make_array_from_process_local_data(self._data, v)
                    for k, v in batch.items()}
        if self.mode == "pmap":
            n = jax.local_device_count()
            return {k: v.reshape((n, v.shape[0] // n) + v.shape[1:]) for k, v in batch.items()}
        return jax.device_put(batch, jax.devices()[0])

    def sampler(self, sample):
        """``sample(params, key, n) -> n images``, compiled so that the n images are split
        over ``gcd(n, d)`` of this process's d devices (all of them when d divides n; one
        device for ``jit``).  The same images however they are split, up to float rounding:
        each one is drawn from its own rows of the one ``(n, ...)`` noise draw, which
        sharding does not change (partitionable threefry).  A process draws the whole grid
        on its own devices, needing no other process (the trainer has process 0 draw it).
        ``params``: one copy of the parameters, as :meth:`get_state` gives it."""
        devices = [jax.devices()[0]] if self.mode == "jit" else jax.local_devices()
        compiled = {}  # devices used -> (replicated placement, jitted sample)

        def draw(params, key, n):
            used = math.gcd(n, len(devices))
            if used not in compiled:
                mesh = Mesh(np.asarray(devices[:used]), ("data",))
                compiled[used] = (NamedSharding(mesh, PartitionSpec()), jax.jit(
                    sample, static_argnums=2,
                    out_shardings=NamedSharding(mesh, PartitionSpec("data"))))
            replicated, jitted = compiled[used]
            return jitted(jax.tree.map(lambda x: _local_copy(x, replicated), params), key, n)
        return draw

    # -- compute --------------------------------------------------------------
    def compile_train(self, state, batch) -> float:
        """Compiles the train step ahead of its first run (the run then finds it in jit's
        cache) and returns the compiler's freed memory to the OS before the step's
        temporaries are allocated (host_memory.py).  Returns the seconds it took.  Not with
        profile-guided latency estimation on: its calls are cached apart from a plain
        lower(), so the step would compile twice."""
        start = time.perf_counter()
        if not self._train_compiled and not jax.config.jax_enable_pgle:
            self._train.lower(state, batch).compile()
            host_memory.release_free_memory()
        self._train_compiled = True
        return time.perf_counter() - start

    def train(self, state, batch):
        if not self._train_compiled:
            self.compile_train(state, batch)
        state, metrics = self._train(state, batch)
        if self.mode == "pmap":
            metrics = jax.tree.map(_first_local_copy, metrics)
        return state, metrics

    def eval_sums(self, state, batch, key):
        """Masked metric sums over the global batch, evaluated with EMA params."""
        if self.mode == "pmap":
            return jax.tree.map(_first_local_copy, self._eval(state.ema_params, batch, key))
        return self._eval(state.ema_params, batch, key)

    def scalar(self, x) -> float:
        return float(np.asarray(jax.device_get(x)))


def _local_copy(x, replicated: NamedSharding):
    """A parameter -> replicated over ``replicated``'s devices, all of them this process's.
    A global replicated array (the ``sharded`` mode with several processes) is rebuilt from
    its local shards without a copy."""
    if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(replicated, x.ndim):
        return x
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        assert x.is_fully_replicated, "the sampler takes replicated parameters"
        by_device = {shard.device: shard.data for shard in x.addressable_shards}
        return jax.make_array_from_single_device_arrays(
            x.shape, replicated, [by_device[d] for d in replicated.mesh.devices.flat])
    return jax.device_put(x, replicated)


def _first_local_copy(x):
    """Row 0 of this process's part of a pmap output (its rows are identical copies).
    ``x[0]`` on the global array would be a computation every process must join."""
    return x.addressable_data(0)[0]


def host_int(x) -> int:
    """An int from a (possibly replicated) scalar array."""
    x = jax.device_get(x)
    return int(np.asarray(x).reshape(-1)[0])
