"""Generic coupling layer: split, condition one half on the other, merge.

    x1, x2 = split(x)
    raw    = conditioner(x1, **context)        # (..., C2 * inner.num_params)
    y2     = inner(raw).forward(x2)            # elementwise, e.g. mixture CDF
    y      = merge(x1, y2)

Pieces:
  * ``split``: a :mod:`flowzoo.bijectors.splits` object (stripes, checkerboard,
    channel halves).  ``swap=True`` transforms x1 conditioned on x2 instead.
  * ``conditioner``: a Flax ``linen.Module``; or any object with pure
    ``init(key, x1, **context) -> params`` and ``apply(params, x1, **context)``
    (e.g. :class:`Conditioner`); or a parameter-free callable ``f(x1, **context)``.
    It must return ``x2.shape[:-1] + (C2 * num_params,)``.
  * ``inner``: a factory with ``num_params`` and ``__call__(raw) -> (bijector,
    params)`` for raw of shape ``x2.shape + (num_params,)``, returning an
    elementwise (``event_ndims=0``) bijector: :class:`AffineInner`,
    :class:`MixtureCDFInner`.
The coupling's parameters are the conditioner's.  Context keyword ``rngs``
(e.g. ``{'dropout': key}``) goes to Flax's ``init``/``apply``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax

from flowzoo import _checks
from flowzoo.bijectors.base import Bijector


class Conditioner(NamedTuple):
    """A conditioner from two pure functions."""

    init: Callable[..., Any]  # (key, x1, **context) -> params
    apply: Callable[..., Any]  # (params, x1, **context) -> raw


def _conditioner_init(conditioner, key, x1, context):
    if isinstance(conditioner, nn.Module):
        context = dict(context)
        rngs = {"params": key, **context.pop("rngs", {})}
        return conditioner.init(rngs, x1, **context)
    if hasattr(conditioner, "init") and hasattr(conditioner, "apply"):
        return conditioner.init(key, x1, **context)
    return ()


def _conditioner_apply(conditioner, params, x1, context):
    if hasattr(conditioner, "apply"):
        return conditioner.apply(params, x1, **context)
    return conditioner(x1, **context)


@dataclasses.dataclass(frozen=True)
class Coupling(Bijector):
    """Coupling bijector; see the module docstring.  params: the conditioner's."""

    split: Any
    conditioner: Any
    inner: Any
    event_ndims: int = 3
    swap: bool = False

    def __post_init__(self):
        if self.event_ndims < self.split.min_event_ndims:
            raise ValueError(f"Coupling with {type(self.split).__name__} needs event_ndims >= "
                             f"{self.split.min_event_ndims}, got {self.event_ndims}.")

    def _halves(self, x):
        _checks.check_float(x, "Coupling")
        _checks.check_min_ndim(x, self.event_ndims, "Coupling", f"{self.event_ndims} event axes")
        x1, x2 = self.split.split(x)
        return (x2, x1) if self.swap else (x1, x2)

    def _merge(self, cond, transformed):
        if self.swap:
            return self.split.merge(transformed, cond)
        return self.split.merge(cond, transformed)

    def _check_raw(self, raw_shape, target_shape):
        p = self.inner.num_params
        expected = tuple(target_shape[:-1]) + (target_shape[-1] * p,)
        if tuple(raw_shape) != expected:
            raise ValueError(
                f"Coupling conditioner returned shape {tuple(raw_shape)}, expected {expected}: "
                f"{target_shape[-1]} transformed channels x {p} parameters per element for "
                f"{type(self.inner).__name__}.  Make the conditioner's last layer output "
                f"{target_shape[-1] * p} features.")

    def _inner(self, params, cond, target, context):
        raw = _conditioner_apply(self.conditioner, params, cond, context)
        self._check_raw(raw.shape, target.shape)
        raw = raw.reshape(target.shape + (self.inner.num_params,)).astype(target.dtype)
        return self.inner(raw)

    def init(self, key, x, **context):
        cond, target = self._halves(x)
        params = _conditioner_init(self.conditioner, key, cond, context)
        raw = jax.eval_shape(
            lambda p, c: _conditioner_apply(self.conditioner, p, c, context), params, cond)
        self._check_raw(raw.shape, target.shape)
        return params

    def forward(self, params, x, **context):
        cond, target = self._halves(x)
        bijector, inner_params = self._inner(params, cond, target, context)
        out, log_det = bijector.forward(inner_params, target)
        return self._merge(cond, out), _checks.sum_last(log_det, self.event_ndims)

    def inverse(self, params, y, **context):
        cond, target = self._halves(y)
        bijector, inner_params = self._inner(params, cond, target, context)
        out, log_det = bijector.inverse(inner_params, target)
        return self._merge(cond, out), _checks.sum_last(log_det, self.event_ndims)
