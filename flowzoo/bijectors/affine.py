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
        x = self._check_input(x, "init")
        shape = x.shape[x.ndim - self.event_ndims:]
        return {"shift": jnp.zeros(shape, x.dtype), "log_scale": jnp.zeros(shape, x.dtype)}

    def _params(self, params, x, method):
        shift, log_scale = self._unpack_params(params, ("shift", "log_scale"), x, method)
        event = x.shape[x.ndim - self.event_ndims:]
        for name, value in (("shift", shift), ("log_scale", log_scale)):
            _checks.check_broadcasts_to(value, x.shape, name, f"Affine.{method}",
                                        f"{event} from Affine.init, or any shape that does")
        log_det = _checks.sum_last(jnp.broadcast_to(log_scale, x.shape), self.event_ndims)
        return shift, log_scale, log_det

    def forward(self, params, x, **context):
        x = self._check_input(x, "forward")
        shift, log_scale, log_det = self._params(params, x, "forward")
        return x * jnp.exp(log_scale) + shift, log_det

    def inverse(self, params, y, **context):
        y = self._check_input(y, "inverse")
        shift, log_scale, log_det = self._params(params, y, "inverse")
        return (y - shift) * jnp.exp(-log_scale), -log_det


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
