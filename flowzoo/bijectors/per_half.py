"""Apply a bijector to each half of a split, with separate parameters per half."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from flowzoo.bijectors.base import Bijector


@dataclasses.dataclass(frozen=True)
class PerHalf(Bijector):
    """y = merge(b(x1; params[0]), b(x2; params[1])) for (x1, x2) = split(x).

    Flow++ applies its Norm and Pointwise (1x1 conv) to each element of the
    split tuple separately; this is that, for any split of
    :mod:`flowzoo.bijectors.splits`.  params: (first half's, second half's).
    """

    split: Any
    bijector: Bijector

    def _init(self, method, key, x, context):
        x1, x2 = self.split.split(x)
        k1, k2 = jax.random.split(key)
        init = getattr(self.bijector, method)
        return init(k1, x1, **context), init(k2, x2, **context)

    def init(self, key, x, **context):
        return self._init("init", key, x, context)

    def init_inverse(self, key, y, **context):
        return self._init("init_inverse", key, y, context)

    def _apply(self, method, params, x, context):
        x1, x2 = self.split.split(x)
        fn = getattr(self.bijector, method)
        y1, log_det1 = fn(params[0], x1, **context)
        y2, log_det2 = fn(params[1], x2, **context)
        return self.split.merge(y1, y2), log_det1 + log_det2

    def forward(self, params, x, **context):
        return self._apply("forward", params, x, context)

    def inverse(self, params, y, **context):
        return self._apply("inverse", params, y, context)
