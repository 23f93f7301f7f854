"""Apply a bijector to each half of a split, with separate parameters per half."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from flowzoo import _checks
from flowzoo.bijectors.base import Bijector


@dataclasses.dataclass(frozen=True)
class PerHalf(Bijector):
    """y = merge(b(x1; params[0]), b(x2; params[1])) for (x1, x2) = split(x).

    Flow++ applies its Norm and Pointwise (1x1 conv) to each element of the
    split tuple separately; this is that, for any split of
    :mod:`flowzoo.bijectors.splits`.  params: (first half's, second half's).
    A split keeps the rank, so ``event_ndims`` is the bijector's, and must be at
    least the split's ``min_event_ndims`` (checked when built).
    """

    split: Any
    bijector: Bijector

    def __post_init__(self):
        if not isinstance(self.bijector, Bijector):
            raise TypeError(f"PerHalf: bijector is a {type(self.bijector).__name__}, "
                            f"not a Bijector.")
        if self.bijector.event_ndims < self.split.min_event_ndims:
            raise ValueError(
                f"PerHalf: {type(self.split).__name__} splits axes inside the event and needs "
                f"event_ndims >= {self.split.min_event_ndims}, but {type(self.bijector).__name__} "
                f"has event_ndims={self.bijector.event_ndims}; build it with event_ndims="
                f"{self.split.min_event_ndims} or more.")
        super().__post_init__()

    @property
    def event_ndims(self) -> int:
        return self.bijector.event_ndims

    def _halves(self, x, method):
        return self.split.split(_checks.as_float_array(x, f"PerHalf.{method}"))

    def _init(self, method, key, x, context):
        x1, x2 = self._halves(x, method)
        k1, k2 = jax.random.split(key)
        init = getattr(self.bijector, method)
        return init(k1, x1, **context), init(k2, x2, **context)

    def init(self, key, x, **context):
        return self._init("init", key, x, context)

    def init_inverse(self, key, y, **context):
        return self._init("init_inverse", key, y, context)

    def _apply(self, method, params, x, context):
        is_pair = isinstance(params, (tuple, list)) and len(params) == 2
        if not is_pair:
            raise ValueError(f"PerHalf.{method} expects params as a pair (first half's, second "
                             f"half's), got {type(params).__name__} {params!r:.80}; use the "
                             f"output of PerHalf.init.")
        x1, x2 = self._halves(x, method)
        fn = getattr(self.bijector, method)
        y1, log_det1 = fn(params[0], x1, **context)
        y2, log_det2 = fn(params[1], x2, **context)
        return self.split.merge(y1, y2), log_det1 + log_det2

    def forward(self, params, x, **context):
        return self._apply("forward", params, x, context)

    def inverse(self, params, y, **context):
        return self._apply("inverse", params, y, context)
