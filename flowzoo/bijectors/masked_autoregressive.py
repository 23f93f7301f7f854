"""Masked autoregressive affine transform (MAF / IAF step, Papamakarios et al. 2017).

In the forward (density) direction every element is shifted and scaled by values that a
masked network computes from the elements *before* it in the flattened event order:

    y = (x - mu(x)) * exp(-s(x)),      mu_i, s_i functions of x_<i only,
    log|det dy/dx| = -sum_i s_i(x)     (the Jacobian is triangular).

The forward pass is one network evaluation.  The inverse solves ``x = y * exp(s(x)) + mu(x)``
by fixed-point passes starting from zeros: pass t makes element t exact (it depends only on
elements already exact), so ``D`` passes, one ``lax.fori_loop`` step each, give the exact
inverse of a ``D``-element event.

As a prior's flow (VLAE's AF prior) this is the cheap direction for ``log_prob``; as an
inverse autoregressive flow (IAF posterior, Kingma et al. 2016), wrap it in ``Invert`` so that
sampling, z_{k+1} = (z_k - mu(z_k)) * exp(-s(z_k)), is the cheap direction.

The conditioner is a parameter of the bijector, as in :class:`~flowzoo.bijectors.Coupling`:
a Flax ``linen.Module`` or any object with pure ``init(key, x, **context) -> params`` and
``apply(params, x, **context) -> raw``.  It must be autoregressive over the flattened event
(a MADE on vectors, a masked PixelCNN on images); this class cannot check that, its tests
do (Jacobians).  ``raw`` has shape ``x.shape[:-1] + (P * C,)`` with ``C = x.shape[-1]``:
``raw[..., :C]`` is the shift mu and, unless ``shift_only`` (P = 1, volume preserving),
``raw[..., C:]`` the log-scale s.  ``reverse=True`` runs the transform in the reversed order:
the conditioner sees the event with every event axis flipped and its outputs are flipped
back (flows alternate orders step by step).  params: the conditioner's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from flowzoo import _checks
from flowzoo.bijectors.base import Bijector


@dataclasses.dataclass(frozen=True)
class MaskedAutoregressiveAffine(Bijector):
    """y = (x - mu(x)) * exp(-s(x)) with an autoregressive conditioner (module docstring)."""

    conditioner: Any
    event_ndims: int = 1
    shift_only: bool = False
    reverse: bool = False

    def __post_init__(self):
        ndims = self.event_ndims
        if isinstance(ndims, bool) or not isinstance(ndims, int) or ndims < 1:
            raise ValueError(f"MaskedAutoregressiveAffine: event_ndims must be an int >= 1 "
                             f"(the autoregressive order runs over the event), got {ndims!r}.")
        if not (hasattr(self.conditioner, "init") and hasattr(self.conditioner, "apply")):
            raise TypeError(f"MaskedAutoregressiveAffine: the conditioner must be a Flax "
                            f"module or have init(key, x, **context) and apply(params, x, "
                            f"**context); got {type(self.conditioner).__name__}.")

    @property
    def num_params(self) -> int:
        """P, the conditioner's outputs per element: the shift, and the log-scale."""
        return 1 if self.shift_only else 2

    def _check(self, x):
        _checks.check_float(x, "MaskedAutoregressiveAffine")
        _checks.check_min_ndim(x, self.event_ndims, "MaskedAutoregressiveAffine",
                               f"(*batch, *event) with event_ndims={self.event_ndims}")

    def _order(self, x):
        """The conditioner's view of ``x``: every event axis flipped when ``reverse``."""
        if not self.reverse:
            return x
        return jnp.flip(x, axis=tuple(range(x.ndim - self.event_ndims, x.ndim)))

    def _check_raw(self, raw_shape, x_shape):
        expected = tuple(x_shape[:-1]) + (self.num_params * x_shape[-1],)
        if tuple(raw_shape) != expected:
            what = "the shift" if self.shift_only else "the shift, then the log-scale"
            alternative = "" if self.shift_only else ", or set shift_only=True for a shift only"
            raise ValueError(
                f"MaskedAutoregressiveAffine: the conditioner returned shape "
                f"{tuple(raw_shape)}, expected {expected} ({self.num_params} x "
                f"{x_shape[-1]} channels: {what}). Make its last layer output {expected[-1]} "
                f"features{alternative}.")

    def _shift_and_log_scale(self, params, x, context):
        """(mu, s or None), each shaped like ``x``, in ``x``'s order and dtype."""
        raw = self.conditioner.apply(params, self._order(x), **context)
        self._check_raw(raw.shape, x.shape)
        raw = raw.astype(x.dtype)
        if self.shift_only:
            return self._order(raw), None
        # Split before flipping back: the flip reverses the channel axis too.
        channels = x.shape[-1]
        return self._order(raw[..., :channels]), self._order(raw[..., channels:])

    def _log_det(self, log_scale, x):
        if log_scale is None:
            return jnp.zeros(x.shape[:x.ndim - self.event_ndims], x.dtype)
        return _checks.sum_last(log_scale, self.event_ndims)

    def init(self, key, x, **context):
        """The conditioner's init on (the ordered view of) the batch ``x``: data-dependent
        where the conditioner's is."""
        self._check(x)
        params = self.conditioner.init(key, self._order(x), **context)
        raw = jax.eval_shape(lambda p, v: self.conditioner.apply(p, v, **context), params,
                             self._order(x))
        self._check_raw(raw.shape, x.shape)
        return params

    def forward(self, params, x, **context):
        self._check(x)
        mu, log_scale = self._shift_and_log_scale(params, x, context)
        if log_scale is None:
            return x - mu, self._log_det(None, x)
        return (x - mu) * jnp.exp(-log_scale), -self._log_det(log_scale, x)

    def inverse(self, params, y, **context):
        """x from y by one fixed-point pass per event element (module docstring)."""
        self._check(y)
        num_elements = math.prod(y.shape[y.ndim - self.event_ndims:])

        def one_pass(_, carry):
            x, _ = carry
            mu, log_scale = self._shift_and_log_scale(params, x, context)
            if log_scale is None:
                return y + mu, log_scale
            return y * jnp.exp(log_scale) + mu, log_scale

        # The last pass's log-scale is exact: it saw elements 0 .. D-2 exact, all it needs.
        init = (jnp.zeros_like(y), None if self.shift_only else jnp.zeros_like(y))
        x, log_scale = jax.lax.fori_loop(0, num_elements, one_pass, init)
        return x, self._log_det(log_scale, y)
