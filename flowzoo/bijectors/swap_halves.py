"""Swap the two halves of a split: y = merge(x2, x1) for (x1, x2) = split(x)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from flowzoo import _checks
from flowzoo.bijectors.base import Bijector


@dataclasses.dataclass(frozen=True)
class SwapHalves(Bijector):
    """Exchanges the halves of ``split`` (a fixed permutation: log-det 0, no parameters).

    Flow++ flips its (x1, x2) tuple after every coupling so that the next coupling
    transforms the other half; this is that flip for an image that stays merged.  It is
    its own inverse, which needs halves of equal shape (stripes, checkerboard, channel
    halves).
    """

    split: Any
    event_ndims: int = 3

    def __post_init__(self):
        _checks.check_int(self.event_ndims, "event_ndims", 0, "SwapHalves")
        if self.event_ndims < self.split.min_event_ndims:
            raise ValueError(f"SwapHalves with {type(self.split).__name__} needs event_ndims >= "
                             f"{self.split.min_event_ndims}, got {self.event_ndims}.")
        super().__post_init__()

    def _swap(self, x, method):
        x = self._check_input(x, method)
        x1, x2 = self.split.split(x)
        if x1.shape != x2.shape:
            raise ValueError(f"SwapHalves needs halves of equal shape, got {x1.shape} and "
                             f"{x2.shape} from {type(self.split).__name__} on {x.shape}; "
                             f"split into equal halves (e.g. ChannelSplit() without num_first).")
        return self.split.merge(x2, x1), jnp.zeros(x.shape[:x.ndim - self.event_ndims], x.dtype)

    def forward(self, params, x, **context):
        return self._swap(x, "forward")

    def inverse(self, params, y, **context):
        return self._swap(y, "inverse")
