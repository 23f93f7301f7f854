"""Mixture of K logistics per element (the Flow++ coupling-layer marginal)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from flowzoo import _checks, _logistic
from flowzoo.distributions.base import Array, Distribution, Params, check_same_trailing

_NAMES = ("logits", "means", "log_scales")
_K = "number of mixture components K"


def draw_components(key: Array, logits: Array, sample_shape, batch_shape) -> Array:
    """Draws component indices k ~ Categorical(softmax(logits)).

    ``logits`` broadcasts to ``batch_shape + (K,)``; the result has shape
    ``sample_shape + batch_shape``.
    """
    logits = jnp.broadcast_to(logits, tuple(batch_shape) + logits.shape[-1:])
    shape = tuple(sample_shape) + tuple(batch_shape)
    return jax.random.categorical(key, logits, axis=-1, shape=shape)


def gather_components(param: Array, k: Array) -> Array:
    """``param[..., k]`` elementwise: ``param`` broadcasts to ``k.shape + (K,)``."""
    param = jnp.broadcast_to(param, k.shape + param.shape[-1:])
    return jnp.take_along_axis(param, k[..., None], axis=-1)[..., 0]


@dataclasses.dataclass(frozen=True)
class MixtureOfLogistics(Distribution):
    """p(x) = sum_k softmax(logits)_k Logistic(x; means_k, exp(log_scales_k)).

    params: ``{'logits', 'means', 'log_scales'}``, each ``S + (K,)`` (broadcastable
    to each other, with ``S`` broadcasting against ``x``); the trailing K axes
    must agree.  ``sample`` returns shape ``S``.

    ``init`` needs ``num_components``: it returns equal weights, means drawn from
    N(0, 1) with ``key`` and unit scales, each ``x.shape[x.ndim-event_ndims:] + (K,)``.
    """

    event_ndims: int = 0
    num_components: int | None = None

    def init(self, key: Array, x: Array) -> Params:
        if self.num_components is None:
            return super().init(key, x)
        x = _checks.as_float_array(x, "MixtureOfLogistics.init x")
        _checks.check_min_ndim(x, self.event_ndims, "MixtureOfLogistics.init", "(*batch, *event)")
        shape = x.shape[x.ndim - self.event_ndims:] + (self.num_components,)
        zeros = jnp.zeros(shape, dtype=x.dtype)
        means = jax.random.normal(key, shape, dtype=x.dtype)
        return {"logits": zeros, "means": means, "log_scales": zeros}

    def _params(self, params, method):
        logits, means, log_scales = (
            jnp.asarray(p) for p in self._unpack(params, _NAMES, method)
        )
        check_same_trailing(
            dict(zip(_NAMES, (logits, means, log_scales))), -1,
            f"MixtureOfLogistics.{method}", _K,
        )
        return logits, means, log_scales

    def log_prob(self, params: Params, x: Array) -> Array:
        logits, means, log_scales = self._params(params, "log_prob")
        x = _checks.as_float_array(x, "MixtureOfLogistics.log_prob x")
        return self._sum_event(_logistic.mixture_log_pdf(x, logits, means, log_scales))

    def _sample(self, params, key, sample_shape):
        logits, means, log_scales = self._params(params, "sample")
        batch = jnp.broadcast_shapes(logits.shape, means.shape, log_scales.shape)[:-1]
        key_k, key_noise = jax.random.split(key)
        k = draw_components(key_k, logits, sample_shape, batch)
        loc = gather_components(means, k)
        log_scale = gather_components(log_scales, k)
        noise = jax.random.logistic(key_noise, k.shape, dtype=loc.dtype)
        return loc + jnp.exp(log_scale) * noise
