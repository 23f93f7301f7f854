"""Fixed channel permutations: reversal and an arbitrary permutation."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from flowzoo import _checks
from flowzoo.bijectors.base import Bijector


def _zero_log_det(x, event_ndims):
    return jnp.zeros(x.shape[:x.ndim - event_ndims], x.dtype)


@dataclasses.dataclass(frozen=True)
class Reverse(Bijector):
    """Reverses the last (channel) axis; volume preserving."""

    event_ndims: int = 1

    def forward(self, params, x, **context):
        _checks.check_min_ndim(x, max(self.event_ndims, 1), "Reverse", "(..., channels)")
        return x[..., ::-1], _zero_log_det(x, self.event_ndims)

    def inverse(self, params, y, **context):
        return self.forward(params, y)


@dataclasses.dataclass(frozen=True)
class Permute(Bijector):
    """y[..., i] = x[..., permutation[i]] on the last axis; volume preserving."""

    permutation: tuple[int, ...]
    event_ndims: int = 1

    def __post_init__(self):
        perm = tuple(int(i) for i in self.permutation)
        if sorted(perm) != list(range(len(perm))):
            raise ValueError(f"Permute.permutation must hold each of 0..{len(perm) - 1} "
                             f"exactly once, got {perm}.")
        object.__setattr__(self, "permutation", perm)

    def _check(self, x):
        _checks.check_min_ndim(x, max(self.event_ndims, 1), "Permute", "(..., channels)")
        if x.shape[-1] != len(self.permutation):
            raise ValueError(f"Permute has a permutation of {len(self.permutation)} "
                             f"channels but the input has shape {tuple(x.shape)}.")

    def forward(self, params, x, **context):
        self._check(x)
        return x[..., np.asarray(self.permutation)], _zero_log_det(x, self.event_ndims)

    def inverse(self, params, y, **context):
        self._check(y)
        inv = np.argsort(np.asarray(self.permutation))
        return y[..., inv], _zero_log_det(y, self.event_ndims)
