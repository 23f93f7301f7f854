"""Space-to-depth ("squeeze") with TensorFlow's channel ordering."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from flowzoo import _checks
from flowzoo.bijectors.base import Bijector


@dataclasses.dataclass(frozen=True)
class Squeeze(Bijector):
    """(..., H, W, C) -> (..., H/f, W/f, f*f*C), volume preserving (log-det 0).

    Output channel ``(dy * f + dx) * C + c`` holds input pixel
    ``(f*i + dy, f*j + dx)`` channel ``c``, exactly ``tf.nn.space_to_depth``.
    """

    factor: int = 2
    event_ndims: int = 3  # fixed: (H, W, C)

    def __post_init__(self):
        if self.event_ndims != 3:
            raise ValueError("Squeeze acts on (H, W, C) events: event_ndims must be 3.")
        _checks.check_int(self.factor, "factor", 1, "Squeeze")
        super().__post_init__()

    def forward(self, params, x, **context):
        x = self._check_input(x, "forward", layout="(..., H, W, C)")
        *batch, h, w, c = x.shape
        f = self.factor
        for size, name in ((h, "height"), (w, "width")):
            if size % f:
                raise ValueError(f"Squeeze(factor={f}) needs {name} divisible by {f}, got "
                                 f"shape {tuple(x.shape)}; crop or pad the input.")
        n = len(batch)
        y = x.reshape(*batch, h // f, f, w // f, f, c)
        y = y.transpose(*range(n), n, n + 2, n + 1, n + 3, n + 4)
        y = y.reshape(*batch, h // f, w // f, f * f * c)
        return y, jnp.zeros(tuple(batch), x.dtype)

    def inverse(self, params, y, **context):
        y = self._check_input(y, "inverse", layout="(..., H, W, C)")
        *batch, h, w, cc = y.shape
        f = self.factor
        if cc % (f * f):
            raise ValueError(f"Squeeze(factor={f}) inverse needs channels divisible by "
                             f"{f * f}, got shape {tuple(y.shape)}.")
        c = cc // (f * f)
        n = len(batch)
        x = y.reshape(*batch, h, w, f, f, c)
        x = x.transpose(*range(n), n, n + 2, n + 1, n + 3, n + 4)
        x = x.reshape(*batch, h * f, w * f, c)
        return x, jnp.zeros(tuple(batch), y.dtype)
