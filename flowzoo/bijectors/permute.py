"""Fixed channel permutations: reversal and an arbitrary permutation."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from flowzoo import _checks
from flowzoo.bijectors.base import Bijector

_LAYOUT = "(..., channels)"


def _zero_log_det(x, event_ndims):
    return jnp.zeros(x.shape[:x.ndim - event_ndims], x.dtype)


@dataclasses.dataclass(frozen=True)
class Reverse(Bijector):
    """Reverses the last (channel) axis; volume preserving."""

    event_ndims: int = 1

    def forward(self, params, x, **context):
        x = self._check_input(x, "forward", max(self.event_ndims, 1), _LAYOUT)
        return x[..., ::-1], _zero_log_det(x, self.event_ndims)

    def inverse(self, params, y, **context):
        return self.forward(params, y)


@dataclasses.dataclass(frozen=True)
class Permute(Bijector):
    """y[..., i] = x[..., permutation[i]] on the last axis; volume preserving."""

    permutation: tuple[int, ...]
    event_ndims: int = 1

    def __post_init__(self):
        perm = tuple(_checks.check_int(i, "each permutation entry", 0, "Permute")
                     for i in self.permutation)
        if sorted(perm) != list(range(len(perm))):
            raise ValueError(f"Permute.permutation must hold each of 0..{len(perm) - 1} "
                             f"exactly once, got {perm}.")
        object.__setattr__(self, "permutation", perm)
        super().__post_init__()

    def _check(self, x, method):
        x = self._check_input(x, method, max(self.event_ndims, 1), _LAYOUT)
        if x.shape[-1] != len(self.permutation):
            raise ValueError(f"Permute has a permutation of {len(self.permutation)} "
                             f"channels but the input has shape {tuple(x.shape)}.")
        return x

    def forward(self, params, x, **context):
        x = self._check(x, "forward")
        return x[..., np.asarray(self.permutation)], _zero_log_det(x, self.event_ndims)

    def inverse(self, params, y, **context):
        y = self._check(y, "inverse")
        inv = np.argsort(np.asarray(self.permutation))
        return y[..., inv], _zero_log_det(y, self.event_ndims)
