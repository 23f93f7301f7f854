"""Bernoulli distribution on {0, 1} parameterised by logits."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from flowzoo.distributions.base import Array, Distribution, Params


@dataclasses.dataclass(frozen=True)
class Bernoulli(Distribution):
    """P(x = 1) = sigmoid(logits).

    params: ``{'logits': S}`` (float, broadcasting against ``x``).  ``x`` may be
    bool, int or float; it is cast to the logits' dtype.  ``log_prob`` is the log
    mass: ``log_sigmoid(l)`` at 1, ``log_sigmoid(-l)`` at 0 (stable for any l) and
    -inf at any other value, which has probability zero (for a soft-label
    cross-entropy use ``x log_sigmoid(l) + (1 - x) log_sigmoid(-l)`` directly).
    ``sample`` returns 0./1. in the logits' dtype, shape ``S``.  ``init`` returns
    zero logits (p = 1/2) shaped ``x.shape[x.ndim - event_ndims:]`` in float32
    (or x's dtype if float).
    """

    event_ndims: int = 0

    def init(self, key: Array, x: Array) -> Params:
        del key
        x = jnp.asarray(x)
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
        shape = x.shape[max(x.ndim - self.event_ndims, 0):]
        return {"logits": jnp.zeros(shape, dtype=dtype)}

    def log_prob(self, params: Params, x: Array) -> Array:
        (logits,) = self._unpack(params, ("logits",), "log_prob")
        logits = jnp.asarray(logits)
        x = jnp.asarray(x)
        if not (jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.floating)
                or x.dtype == jnp.bool_):
            raise TypeError(f"Bernoulli.log_prob x must hold 0/1 values, got dtype {x.dtype}.")
        x = x.astype(logits.dtype)
        log_p1 = jax.nn.log_sigmoid(logits)
        log_p0 = jax.nn.log_sigmoid(-logits)
        # Selecting a term keeps it finite even for infinite logits.
        outside = jnp.asarray(-jnp.inf, logits.dtype)
        return self._sum_event(jnp.where(x == 1, log_p1, jnp.where(x == 0, log_p0, outside)))

    def _sample(self, params, key, sample_shape):
        (logits,) = self._unpack(params, ("logits",), "sample")
        logits = jnp.asarray(logits)
        # P(L < l) = sigmoid(l) for standard logistic L: exact even for |l| large.
        noise = jax.random.logistic(key, sample_shape + logits.shape, dtype=logits.dtype)
        return (noise < logits).astype(logits.dtype)
