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
    It must return ``x2.shape[:-1] + (C2 * num_params,)``.  A Flax module whose
    attributes hold lists (``nn.Sequential([...])``) is rebuilt with tuples when
    the coupling is built, so that the coupling stays hashable (a static ``jit``
    argument); the parameters and the function are unchanged.
  * ``inner``: a factory with ``num_params`` and ``__call__(raw) -> (bijector,
    params)`` for raw of shape ``x2.shape + (num_params,)``, returning an
    elementwise (``event_ndims=0``) bijector: :class:`AffineInner`,
    :class:`MixtureCDFInner`; checked when the coupling is built.
The coupling's parameters are the conditioner's.  Context keyword ``rngs``
(e.g. ``{'dropout': key}``) goes to Flax's ``init``/``apply``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from flowzoo import _checks
from flowzoo.bijectors.base import Bijector


class Conditioner(NamedTuple):
    """A conditioner from two pure functions."""

    init: Callable[..., Any]  # (key, x1, **context) -> params
    apply: Callable[..., Any]  # (params, x1, **context) -> raw


def _frozen(value):
    """``value`` with lists turned into tuples, inside Flax modules too."""
    if isinstance(value, nn.Module):
        fields = [f.name for f in dataclasses.fields(value)
                  if f.init and f.name not in ("parent", "name")]
        updates = {}
        for name in fields:
            old = getattr(value, name)
            new = _frozen(old)
            if new is not old:
                updates[name] = new
        return value.clone(**updates) if updates else value
    if type(value) in (list, tuple):
        items = [_frozen(v) for v in value]
        if type(value) is tuple and all(a is b for a, b in zip(items, value)):
            return value
        return tuple(items)
    return value


def _inner_bijector(inner):
    """The bijector ``inner`` returns, from a shape-only trace (nothing is computed)."""
    found = []

    def params_only(raw):
        bijector, params = inner(raw)
        found.append(bijector)
        return params

    jax.eval_shape(params_only, jax.ShapeDtypeStruct((1, inner.num_params), jnp.float32))
    return found[0]


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
        _checks.check_int(self.event_ndims, "event_ndims", 0, "Coupling")
        if self.event_ndims < self.split.min_event_ndims:
            raise ValueError(f"Coupling with {type(self.split).__name__} needs event_ndims >= "
                             f"{self.split.min_event_ndims}, got {self.event_ndims}.")
        inner = _inner_bijector(self.inner)
        if inner.event_ndims != 0:
            raise ValueError(
                f"Coupling: the inner factory {type(self.inner).__name__} returns "
                f"{type(inner).__name__} with event_ndims={inner.event_ndims}; the coupling "
                f"sums the log-det over its own event_ndims={self.event_ndims} axes, so the "
                f"inner bijector must be elementwise: build it with event_ndims=0.")
        object.__setattr__(self, "conditioner", _frozen(self.conditioner))
        super().__post_init__()

    def _halves(self, x, method):
        x = self._check_input(x, method)
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
        cond, target = self._halves(x, "init")
        params = _conditioner_init(self.conditioner, key, cond, context)
        raw = jax.eval_shape(
            lambda p, c: _conditioner_apply(self.conditioner, p, c, context), params, cond)
        self._check_raw(raw.shape, target.shape)
        return params

    def forward(self, params, x, **context):
        cond, target = self._halves(x, "forward")
        bijector, inner_params = self._inner(params, cond, target, context)
        out, log_det = bijector.forward(inner_params, target)
        return self._merge(cond, out), _checks.sum_last(log_det, self.event_ndims)

    def inverse(self, params, y, **context):
        cond, target = self._halves(y, "inverse")
        bijector, inner_params = self._inner(params, cond, target, context)
        out, log_det = bijector.inverse(inner_params, target)
        return self._merge(cond, out), _checks.sum_last(log_det, self.event_ndims)
