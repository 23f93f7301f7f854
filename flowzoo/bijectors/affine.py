"""Elementwise affine bijector, and its factory for coupling layers."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from flowzoo import _checks
from flowzoo.bijectors.base import Bijector

_LOG_SCALE_FNS = {
    # Flow++ squashes the coupling log-scale with tanh (scale in [1/e, e]).
    "tanh": jnp.tanh,
    "identity": lambda raw: raw,
    # Glow: scale = sigmoid(raw + 2), i.e. log-scale = log_sigmoid(raw + 2).
    "glow_sigmoid": lambda raw: jax.nn.log_sigmoid(raw + 2.0),
}


@dataclasses.dataclass(frozen=True)
class Affine(Bijector):
    """y = x * exp(log_scale) + shift, elementwise.

    params: ``{'shift', 'log_scale'}``, each broadcastable to ``x``;
    ``init`` gives the identity with one parameter per event element.
    """

    event_ndims: int = 0

    def init(self, key, x, **context):
        del key, context
        _checks.check_float(x, "Affine")
        shape = x.shape[x.ndim - self.event_ndims:]
        return {"shift": jnp.zeros(shape, x.dtype), "log_scale": jnp.zeros(shape, x.dtype)}

    def _log_det(self, log_scale, shape):
        return _checks.sum_last(jnp.broadcast_to(log_scale, shape), self.event_ndims)

    def forward(self, params, x, **context):
        _checks.check_float(x, "Affine")
        _checks.check_min_ndim(x, self.event_ndims, "Affine", f"{self.event_ndims} event axes")
        log_scale = params["log_scale"]
        y = x * jnp.exp(log_scale) + params["shift"]
        return y, self._log_det(log_scale, y.shape)

    def inverse(self, params, y, **context):
        _checks.check_float(y, "Affine")
        _checks.check_min_ndim(y, self.event_ndims, "Affine", f"{self.event_ndims} event axes")
        log_scale = params["log_scale"]
        x = (y - params["shift"]) * jnp.exp(-log_scale)
        return x, -self._log_det(log_scale, x.shape)


@dataclasses.dataclass(frozen=True)
class AffineInner:
    """Coupling factory: raw conditioner output ``(..., 2)`` -> an elementwise Affine.

    Layout of the last axis (as in Flow++): ``[raw_log_scale, shift]``, with the
    log-scale squashed by ``log_scale_fn`` ('tanh', 'identity' or 'glow_sigmoid').
    """

    log_scale_fn: str = "tanh"
    num_params: int = 2

    def __post_init__(self):
        if self.log_scale_fn not in _LOG_SCALE_FNS:
            raise ValueError(
                f"AffineInner.log_scale_fn must be one of {sorted(_LOG_SCALE_FNS)}, "
                f"got {self.log_scale_fn!r}."
            )

    def __call__(self, raw):
        log_scale = _LOG_SCALE_FNS[self.log_scale_fn](raw[..., 0])
        return Affine(event_ndims=0), {"shift": raw[..., 1], "log_scale": log_scale}
