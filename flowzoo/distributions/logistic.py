"""The logistic distribution."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from flowzoo import _checks, _logistic
from flowzoo.distributions.base import Array, Distribution, Params


@dataclasses.dataclass(frozen=True)
class Logistic(Distribution):
    """Logistic(loc, exp(log_scale)), density sigmoid'((x - loc) / s) / s.

    params: ``{'loc': S, 'log_scale': S}`` (broadcastable).  ``sample`` returns
    the broadcast parameter shape ``S``.  Mean ``loc``, variance
    ``s^2 pi^2 / 3``.
    """

    event_ndims: int = 0

    def init(self, key: Array, x: Array) -> Params:
        """Standard logistic parameters shaped ``x.shape[x.ndim - event_ndims:]``."""
        del key
        x = _checks.as_float_array(x, "Logistic.init x")
        _checks.check_min_ndim(x, self.event_ndims, "Logistic.init", "(*batch, *event)")
        zeros = jnp.zeros(x.shape[x.ndim - self.event_ndims:], dtype=x.dtype)
        return {"loc": zeros, "log_scale": zeros}

    def log_prob(self, params: Params, x: Array) -> Array:
        loc, log_scale = self._unpack(params, ("loc", "log_scale"), "log_prob")
        x = _checks.as_float_array(x, "Logistic.log_prob x")
        return self._sum_event(_logistic.logistic_log_pdf(x, loc, log_scale))

    def _sample(self, params, key, sample_shape):
        loc, log_scale = self._unpack(params, ("loc", "log_scale"), "sample")
        loc, log_scale = jnp.asarray(loc), jnp.asarray(log_scale)
        shape = sample_shape + jnp.broadcast_shapes(loc.shape, log_scale.shape)
        # jax.random.logistic draws u in [tiny, 1) and returns log(u) - log1p(-u).
        noise = jax.random.logistic(key, shape, dtype=jnp.result_type(loc, log_scale))
        return loc + jnp.exp(log_scale) * noise
