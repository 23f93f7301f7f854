"""Activation normalisation (Glow / Flow++), with data-dependent init."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from flowzoo import _checks
from flowzoo.bijectors.base import Bijector

_PER = ("element", "channel")


@dataclasses.dataclass(frozen=True)
class ActNorm(Bijector):
    """y = x * scale + shift with one (scale, shift) per element or per channel.

    ``per='element'``: parameters of the whole event shape, e.g. (H, W, C) as in
    Flow++.  ``per='channel'``: parameters of shape (C,) as in Glow.
    ``init`` is data-dependent: the init batch comes out with zero mean and unit
    variance, ``scale = 1 / sqrt(var + eps)``, ``shift = -mean * scale``.  The
    scale is floored at ``min_scale`` when used (Flow++: 1e-10).
    """

    per: str = "element"
    event_ndims: int = 3
    eps: float = 1e-8
    min_scale: float = 1e-10

    def __post_init__(self):
        if self.per not in _PER:
            raise ValueError(f"ActNorm.per must be one of {_PER}, got {self.per!r}.")
        if self.event_ndims < 1:
            raise ValueError(f"ActNorm needs event_ndims >= 1, got {self.event_ndims}.")

    def _check(self, x):
        _checks.check_float(x, "ActNorm")
        _checks.check_min_ndim(x, self.event_ndims, "ActNorm",
                               f"(..., {self.event_ndims} event axes)")

    def _stats(self, x):
        self._check(x)
        n_param_axes = self.event_ndims if self.per == "element" else 1
        axes = tuple(range(x.ndim - n_param_axes))
        return jnp.mean(x, axis=axes), jnp.var(x, axis=axes)

    def init(self, key, x, **context):
        mean, var = self._stats(x)
        scale = 1.0 / jnp.sqrt(var + self.eps)
        return {"scale": scale, "shift": -mean * scale}

    def init_inverse(self, key, y, **context):
        # Makes ``inverse`` (x = (y - shift) / scale) normalise the batch.
        mean, var = self._stats(y)
        return {"scale": jnp.sqrt(var + self.eps), "shift": mean}

    def _scale_and_log_det(self, params, shape):
        scale = jnp.maximum(params["scale"], self.min_scale)
        log_det = _checks.sum_last(jnp.broadcast_to(jnp.log(scale), shape), self.event_ndims)
        return scale, log_det

    def forward(self, params, x, **context):
        self._check(x)
        scale, log_det = self._scale_and_log_det(params, x.shape)
        return x * scale + params["shift"], log_det

    def inverse(self, params, y, **context):
        self._check(y)
        scale, log_det = self._scale_and_log_det(params, y.shape)
        return (y - params["shift"]) / scale, -log_det
