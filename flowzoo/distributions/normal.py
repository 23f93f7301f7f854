"""Diagonal normal distributions: a parameterised one and the flows' base."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from flowzoo import _checks
from flowzoo.distributions.base import Array, Distribution, Params

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class Normal(Distribution):
    """Diagonal normal N(loc, exp(log_scale)^2).

    params: ``{'loc': S, 'log_scale': S}`` (broadcastable to each other and to
    ``x``).  ``sample`` returns the broadcast parameter shape ``S``.
    """

    event_ndims: int = 0

    def init(self, key: Array, x: Array) -> Params:
        """Standard normal parameters shaped ``x.shape[x.ndim - event_ndims:]``."""
        del key
        x = _checks.as_float_array(x, "Normal.init x")
        _checks.check_min_ndim(x, self.event_ndims, "Normal.init", "(*batch, *event)")
        event_shape = x.shape[x.ndim - self.event_ndims:]
        zeros = jnp.zeros(event_shape, dtype=x.dtype)
        return {"loc": zeros, "log_scale": zeros}

    def log_prob(self, params: Params, x: Array) -> Array:
        loc, log_scale = self._unpack(params, ("loc", "log_scale"), "log_prob")
        x = _checks.as_float_array(x, "Normal.log_prob x")
        z = (x - loc) * jnp.exp(-log_scale)
        return self._sum_event(-0.5 * jnp.square(z) - log_scale - _HALF_LOG_2PI)

    def _sample(self, params, key, sample_shape):
        loc, log_scale = self._unpack(params, ("loc", "log_scale"), "sample")
        loc, log_scale = jnp.asarray(loc), jnp.asarray(log_scale)
        shape = sample_shape + jnp.broadcast_shapes(loc.shape, log_scale.shape)
        dtype = jnp.result_type(loc, log_scale)
        eps = jax.random.normal(key, shape, dtype=dtype)
        return loc + jnp.exp(log_scale) * eps


@dataclasses.dataclass(frozen=True)
class StandardNormal(Distribution):
    """Parameter-free N(0, I) over ``event_shape``: the base of every flow.

    params: ``()``.  ``log_prob(params, x)`` needs ``x.shape[-len(event_shape):]
    == event_shape`` and sums over those axes; it computes in ``x``'s dtype.
    ``sample`` returns ``event_shape`` (or ``(n, *event_shape)``) in ``dtype``,
    stored as a string (e.g. ``'float32'``) so the object stays hashable.
    """

    event_shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self):
        try:
            shape = tuple(int(d) for d in self.event_shape)
        except TypeError:
            raise TypeError(
                f"StandardNormal: event_shape must be a tuple of ints, got "
                f"{self.event_shape!r}."
            ) from None
        if any(d < 0 for d in shape):
            raise ValueError(f"StandardNormal: negative size in event_shape {shape}.")
        dtype = jnp.dtype(self.dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"StandardNormal: dtype must be a float dtype, got {dtype}.")
        object.__setattr__(self, "event_shape", shape)
        object.__setattr__(self, "dtype", dtype.name)
        super().__post_init__()

    @property
    def event_ndims(self) -> int:
        return len(self.event_shape)

    def init(self, key: Array, x: Array) -> Params:
        del key, x
        return ()

    def log_prob(self, params: Params, x: Array) -> Array:
        del params
        x = _checks.as_float_array(x, "StandardNormal.log_prob x")
        ndims = self.event_ndims
        if x.ndim < ndims or tuple(x.shape[x.ndim - ndims:]) != self.event_shape:
            raise ValueError(
                f"StandardNormal.log_prob expects x shaped (*batch, "
                f"*{self.event_shape}), got shape {tuple(x.shape)}."
            )
        return self._sum_event(-0.5 * jnp.square(x) - _HALF_LOG_2PI)

    def _sample(self, params, key, sample_shape):
        del params
        return jax.random.normal(key, sample_shape + self.event_shape, dtype=self.dtype)
