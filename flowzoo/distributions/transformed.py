"""A flow: a base distribution pushed through a bijector.

The bijector's ``forward`` maps data to the base space (the normalizing
direction, as in Flow++), so training (``log_prob``) uses the cheap direction
and sampling uses ``inverse``:

    log p(x) = log p_base(z) + log|det dz/dx|,   (z, log_det) = forward(x)
    x        = inverse(z),                        z ~ p_base

(distrax and TFP use the opposite direction; wrap a generative-direction
bijector in :class:`flowzoo.bijectors.Invert` to use it here.)
params: ``{'base': base params, 'bijector': bijector params}``.  Keyword
context (e.g. a conditioning tensor) goes to the bijector.  The base and the
bijector must have the same ``event_ndims`` (checked when built): the
log-det is added to the base's log-prob, both of the batch shape.
"""

from __future__ import annotations

import dataclasses

import jax

from flowzoo.bijectors.base import Bijector
from flowzoo.distributions.base import Array, Distribution, Params


@dataclasses.dataclass(frozen=True)
class TransformedDistribution(Distribution):
    """p(x) with z = bijector.forward(x) distributed as ``base``."""

    base: Distribution
    bijector: Bijector

    def __post_init__(self):
        if not isinstance(self.base, Distribution):
            raise TypeError(f"TransformedDistribution.base must be a Distribution, "
                            f"got {type(self.base).__name__}.")
        if not isinstance(self.bijector, Bijector):
            raise TypeError(f"TransformedDistribution.bijector must be a Bijector, "
                            f"got {type(self.bijector).__name__}.")
        base_ndims, bijector_ndims = self.base.event_ndims, self.bijector.event_ndims
        if base_ndims != bijector_ndims:
            raise ValueError(
                f"TransformedDistribution: the base {type(self.base).__name__} has "
                f"event_ndims={base_ndims} but the bijector {type(self.bijector).__name__} has "
                f"event_ndims={bijector_ndims}; the log-det is added to the base's log-prob, so "
                f"make the base's event_ndims equal the bijector's.")
        super().__post_init__()

    @property
    def event_ndims(self) -> int:
        return self.base.event_ndims

    def init(self, key: Array, x: Array, **context) -> Params:
        """Bijector init (data-dependent where it is) on the batch ``x``, then
        the base's init on the latents."""
        k_bijector, k_base = jax.random.split(key)
        bijector_params = self.bijector.init(k_bijector, x, **context)
        z, _ = self.bijector.forward(bijector_params, x, **context)
        return {"base": self.base.init(k_base, z), "bijector": bijector_params}

    def _combine(self, base_log_prob, log_det):
        if base_log_prob.shape != log_det.shape:
            raise ValueError(
                f"TransformedDistribution: the base's log_prob has shape "
                f"{base_log_prob.shape} but the bijector's log-det {log_det.shape}; "
                f"make the base's event_ndims equal the bijector's.")
        return base_log_prob + log_det

    def log_prob(self, params: Params, x: Array, **context) -> Array:
        z, log_det = self.bijector.forward(params["bijector"], x, **context)
        return self._combine(self.base.log_prob(params["base"], z), log_det)

    def sample(self, params: Params, key: Array, n: int | None = None, **context) -> Array:
        return self.sample_and_log_prob(params, key, n, **context)[0]

    def sample_and_log_prob(self, params: Params, key: Array, n: int | None = None,
                            **context) -> tuple[Array, Array]:
        """Samples and their log densities from one inverse pass."""
        z = self.base.sample(params["base"], key, n)
        x, inverse_log_det = self.bijector.inverse(params["bijector"], z, **context)
        return x, self._combine(self.base.log_prob(params["base"], z), -inverse_log_det)
