"""Sigmoid and logit, the elementwise maps between R and (0, 1)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from flowzoo import _checks
from flowzoo.bijectors.base import Bijector


def _sigmoid_and_log_det(x):
    """sigmoid(x) and log sigmoid'(x) = log sigmoid(x) + log sigmoid(-x)."""
    return jax.nn.sigmoid(x), jax.nn.log_sigmoid(x) + jax.nn.log_sigmoid(-x)


def _logit_and_log_det(y):
    """logit(y) and log logit'(y) = -log y - log(1 - y), for y in (0, 1)."""
    log_y, log_1my = jnp.log(y), jnp.log1p(-y)
    return log_y - log_1my, -log_y - log_1my


def _elementwise(fn, bijector, x, method):
    x = bijector._check_input(x, method)
    y, log_det = fn(x)
    return y, _checks.sum_last(log_det, bijector.event_ndims)


@dataclasses.dataclass(frozen=True)
class Sigmoid(Bijector):
    """y = 1 / (1 + exp(-x)), mapping R to (0, 1). Parameter-free."""

    event_ndims: int = 0

    def forward(self, params, x, **context):
        return _elementwise(_sigmoid_and_log_det, self, x, "forward")

    def inverse(self, params, y, **context):
        return _elementwise(_logit_and_log_det, self, y, "inverse")


@dataclasses.dataclass(frozen=True)
class Logit(Bijector):
    """y = log(x / (1 - x)), mapping (0, 1) to R. Parameter-free."""

    event_ndims: int = 0

    def forward(self, params, x, **context):
        return _elementwise(_logit_and_log_det, self, x, "forward")

    def inverse(self, params, y, **context):
        return _elementwise(_sigmoid_and_log_det, self, y, "inverse")
