"""How a coupling layer splits its input into a conditioning and a transformed half.

A split is static configuration with ``split(x) -> (x1, x2)`` and
``merge(x1, x2) -> x``; ``merge(*split(x)) == x`` exactly.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from flowzoo import _checks


def _check_image(x, what, need_even_height):
    _checks.check_min_ndim(x, 3, what, "(..., H, W, C)")
    if need_even_height:
        _checks.check_even(x.shape[-3], "height", what, x.shape)
    _checks.check_even(x.shape[-2], "width", what, x.shape)


@dataclasses.dataclass(frozen=True)
class StripeSplit:
    """Alternating columns: x1 = columns 0, 2, 4, ..., x2 = columns 1, 3, 5, ...

    This is what the official Flow++ code calls its "checkerboard" split.
    (..., H, W, C) -> two (..., H, W/2, C).
    """

    min_event_ndims: int = 3

    def split(self, x):
        _check_image(x, "StripeSplit", need_even_height=False)
        *batch, h, w, c = x.shape
        pairs = x.reshape(*batch, h, w // 2, 2, c)
        return pairs[..., 0, :], pairs[..., 1, :]

    def merge(self, x1, x2):
        *batch, h, w2, c = x1.shape
        return jnp.stack([x1, x2], axis=-2).reshape(*batch, h, 2 * w2, c)


@dataclasses.dataclass(frozen=True)
class CheckerboardSplit:
    """A true checkerboard: x1 holds pixels with (row + col) even, x2 the rest.

    (..., H, W, C) -> two (..., H, W/2, C); row i of x1 holds columns
    i % 2, i % 2 + 2, ... of row i of x.
    """

    min_event_ndims: int = 3

    def split(self, x):
        _check_image(x, "CheckerboardSplit", need_even_height=True)
        *batch, h, w, c = x.shape
        blocks = x.reshape(*batch, h // 2, 2, w // 2, 2, c)  # (.., row/2, dy, col/2, dx, C)
        even = jnp.stack([blocks[..., 0, :, 0, :], blocks[..., 1, :, 1, :]], axis=-3)
        odd = jnp.stack([blocks[..., 0, :, 1, :], blocks[..., 1, :, 0, :]], axis=-3)
        return even.reshape(*batch, h, w // 2, c), odd.reshape(*batch, h, w // 2, c)

    def merge(self, x1, x2):
        *batch, h, w2, c = x1.shape
        even = x1.reshape(*batch, h // 2, 2, w2, c)
        odd = x2.reshape(*batch, h // 2, 2, w2, c)
        row0 = jnp.stack([even[..., 0, :, :], odd[..., 0, :, :]], axis=-2)
        row1 = jnp.stack([odd[..., 1, :, :], even[..., 1, :, :]], axis=-2)
        blocks = jnp.stack([row0, row1], axis=-4)
        return blocks.reshape(*batch, h, 2 * w2, c)


@dataclasses.dataclass(frozen=True)
class ChannelSplit:
    """x1 = the first ``num_first`` channels (default: half), x2 = the rest."""

    num_first: int | None = None
    min_event_ndims: int = 1

    def _num_first(self, x):
        _checks.check_min_ndim(x, 1, "ChannelSplit", "(..., channels)")
        c = x.shape[-1]
        if self.num_first is None:
            _checks.check_even(c, "channel count", "ChannelSplit (halves)", x.shape)
            return c // 2
        if not 0 < self.num_first < c:
            raise ValueError(f"ChannelSplit(num_first={self.num_first}) needs more than "
                             f"{self.num_first} channels, got shape {tuple(x.shape)}.")
        return self.num_first

    def split(self, x):
        k = self._num_first(x)
        return x[..., :k], x[..., k:]

    def merge(self, x1, x2):
        return jnp.concatenate([x1, x2], axis=-1)
