"""The model contract: what a model gives the trainer.

A model is a :class:`Model` of pure functions.  Batches are dicts of arrays:
``image`` (B, H, W, C) uint8 levels and ``index`` (B,) int global example ids.

    init(key, batch)              -> params          (data-dependent init from a batch)
    loss(params, batch, key)      -> (loss, metrics) (scalar mean training loss, scalar metrics)
    evaluate(params, batch, key)  -> metrics         (dict of per-example (B,) values)
    sample(params, key, n)        -> images          ((n, H, W, C) uint8 levels)
    reconstruct(params, batch, key) -> images        (optional, autoencoders: (B, H, W, C))

Models whose objective carries state across steps (VLAE's soft free bits: a KL weight
moved by the observed KL) set ``init_model_state() -> pytree``; the trainer then calls
``loss(params, batch, key, model_state) -> (loss, metrics, new_model_state)``, keeps the
state in the checkpointed ``TrainState.model_state`` and passes no gradient through it.

A loss that is not a mean of per-example terms (VLAE's free bits floor the batch-mean KL)
sets ``loss_takes_axis_name``: the trainer then also passes ``axis_name=`` (the ``pmap``
device axis, None in the other modes) and the loss takes every batch mean it transforms
with :func:`batch_mean`, so a ``pmap`` device floors the global batch's mean, not its
slice's.  Under ``pmap`` each device differentiates its own copy of the loss; the
``pmean`` inside it transposes to a ``pmean`` of the cotangents (pmap's collectives are
unchecked for replication: ``shard_map(check_vma=False)`` semantics), so the trainer's
average of the devices' gradients is the gradient of the global loss (tested in
tests/models/test_vlae.py).  A ``shard_map`` with ``check_vma=True`` would instead
transpose the ``pmean`` to a copy: a port must re-check the scale.

``key`` is the step's key, identical on every device and process.  Per-example
randomness (dequantization noise, posterior samples) should come from
:func:`example_keys`, which folds in each example's global index: then the
result does not depend on how the batch is split over devices or hosts, and
jit, sharded-jit, pmap and multi-process runs agree.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class Model(NamedTuple):
    init: Callable[..., Any]
    loss: Callable[..., Any]
    evaluate: Callable[..., Any]
    sample: Callable[..., Any]
    loss_unit: str = "bits/dim"  # what ``loss`` and the headline eval metric measure
    eval_metric: str = "bits_per_dim"  # the headline key in ``evaluate``'s output
    reconstruct: Callable[..., Any] | None = None  # set by autoencoders: a PNG at each eval
    init_model_state: Callable[[], Any] | None = None  # set by objectives with state
    loss_takes_axis_name: bool = False  # set by losses that transform a batch mean


def example_keys(key, index):
    """One key per example: fold the global example index into the step key."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(index)


def batch_mean(x, axis_name=None):
    """The mean over axis 0 (the batch) of ``x`` (B, ...); with ``axis_name`` (inside
    ``pmap``) over every device's slice too, each the same size: the global batch's mean."""
    mean = jnp.mean(x, axis=0)
    return mean if axis_name is None else jax.lax.pmean(mean, axis_name)


def key_batch_shape(key) -> tuple[int, ...]:
    """The batch shape of a key array: () for one key, (B,) for ``example_keys``' output.
    A typed key's shape is its batch shape; raw ``uint32`` key data has the key on its last
    axis."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return tuple(key.shape)
    return tuple(key.shape[:-1])


def map_keys(fn, key):
    """``fn(key)`` for one key; for an array of keys (such as ``example_keys``' one per
    example) ``fn`` of each, the results stacked with the keys' batch shape in front."""
    batch = key_batch_shape(key)
    if not batch:
        return fn(key)
    out = jax.vmap(fn)(key.reshape((-1,) + key.shape[len(batch):]))
    return out.reshape(batch + out.shape[1:])


def fold_in_keys(key, data):
    """``jax.random.fold_in`` of one key, or of every key of an array of keys."""
    return map_keys(lambda k: jax.random.fold_in(k, data), key)
