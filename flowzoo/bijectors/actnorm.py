"""Activation normalisation (Glow / Flow++), with data-dependent init."""

from __future__ import annotations

import dataclasses
import math

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

    A variance needs at least two values per parameter: ``init`` raises when the
    batch gives fewer (an empty batch, or one example with ``per='element'``,
    whose zero variance would give a scale of 1/sqrt(eps) = 1e4).  Initialise on
    a larger batch (the trainer's ``train.init_batch_size``) or use
    ``per='channel'``.
    """

    per: str = "element"
    event_ndims: int = 3
    eps: float = 1e-8
    min_scale: float = 1e-10

    def __post_init__(self):
        if self.per not in _PER:
            raise ValueError(f"ActNorm.per must be one of {_PER}, got {self.per!r}.")
        _checks.check_int(self.event_ndims, "event_ndims", 1, "ActNorm")
        super().__post_init__()

    @property
    def _num_param_axes(self) -> int:
        return self.event_ndims if self.per == "element" else 1

    def _stats(self, x, method):
        x = self._check_input(x, method)
        axes = tuple(range(x.ndim - self._num_param_axes))
        count = math.prod(x.shape[a] for a in axes)
        if count < 2:
            raise ValueError(
                f"ActNorm(per={self.per!r}).{method} estimates a variance from {count} "
                f"value(s) per parameter (input shape {tuple(x.shape)}); it needs at least 2.  "
                f"Initialise on a batch of 2 or more examples (the trainer's "
                f"train.init_batch_size), or use per='channel'.")
        return jnp.mean(x, axis=axes), jnp.var(x, axis=axes)

    def init(self, key, x, **context):
        mean, var = self._stats(x, "init")
        scale = 1.0 / jnp.sqrt(var + self.eps)
        return {"scale": scale, "shift": -mean * scale}

    def init_inverse(self, key, y, **context):
        # Makes ``inverse`` (x = (y - shift) / scale) normalise the batch.
        mean, var = self._stats(y, "init_inverse")
        return {"scale": jnp.sqrt(var + self.eps), "shift": mean}

    def _params(self, params, x, method):
        scale, shift = self._unpack_params(params, ("scale", "shift"), x, method)
        event = x.shape[x.ndim - self.event_ndims:]
        expected = f"{event[-self._num_param_axes:]} from ActNorm.init"
        for name, value in (("scale", scale), ("shift", shift)):
            _checks.check_broadcasts_to(value, x.shape, name, f"ActNorm.{method}", expected)
        scale = jnp.maximum(scale, self.min_scale)
        log_det = _checks.sum_last(jnp.broadcast_to(jnp.log(scale), x.shape), self.event_ndims)
        return scale, shift, log_det

    def forward(self, params, x, **context):
        x = self._check_input(x, "forward")
        scale, shift, log_det = self._params(params, x, "forward")
        return x * scale + shift, log_det

    def inverse(self, params, y, **context):
        y = self._check_input(y, "inverse")
        scale, shift, log_det = self._params(params, y, "inverse")
        return (y - shift) / scale, -log_det
