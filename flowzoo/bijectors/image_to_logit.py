"""Flow++ input preprocessing: dequantized pixels -> logit space."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from flowzoo import _checks
from flowzoo.bijectors.base import Bijector


@dataclasses.dataclass(frozen=True)
class ImageToLogit(Bijector):
    """x in [0, num_levels) -> p = alpha + x * (1 - 2 alpha) / num_levels -> logit(p).

    Flow++ uses ``num_levels=256, alpha=0.05`` (x * 0.9/256 + 0.05).  The
    log-det is part of the likelihood, so bits/dim need no separate correction
    for the scaling.  ``num_levels`` is 2**bits for a bit depth, or any level
    count (e.g. 17 for scikit-learn's digits).  Parameter-free.
    """

    num_levels: int = 256
    alpha: float = 0.05
    event_ndims: int = 3

    def __post_init__(self):
        _checks.check_int(self.num_levels, "num_levels", 2, "ImageToLogit")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"ImageToLogit.alpha must be in (0, 0.5), got {self.alpha}.")
        super().__post_init__()

    @property
    def _log_slope(self) -> float:
        return math.log((1.0 - 2.0 * self.alpha) / self.num_levels)

    def forward(self, params, x, **context):
        x = self._check_input(x, "forward")
        p = self.alpha + x * ((1.0 - 2.0 * self.alpha) / self.num_levels)
        log_p, log_1mp = jnp.log(p), jnp.log1p(-p)
        log_det = self._log_slope - log_p - log_1mp
        return log_p - log_1mp, _checks.sum_last(log_det, self.event_ndims)

    def inverse(self, params, y, **context):
        y = self._check_input(y, "inverse")
        p = jax.nn.sigmoid(y)
        x = (p - self.alpha) * (self.num_levels / (1.0 - 2.0 * self.alpha))
        log_det = jax.nn.log_sigmoid(y) + jax.nn.log_sigmoid(-y) - self._log_slope
        return x, _checks.sum_last(log_det, self.event_ndims)
