"""VLAE's flows, built from the core bijector ``MaskedAutoregressiveAffine`` (MAA).

* :func:`alternating_flow`: ``steps`` MAA steps whose autoregressive order alternates,
  natural order on even steps, reversed (every event axis flipped) on odd ones, as
  ``ScanChain(Chain([MAA, MAA(reverse=True)]), steps // 2)`` (one compiled body for every
  pair), followed by one natural-order step when ``steps`` is odd.
* :func:`af_prior`: the AF prior p(z) = ``TransformedDistribution(N(0, I), flow)``, flow in
  the density direction, u_0 = z:

      u_{k+1} = (u_k - mu_k(u_k)) * exp(-s_k(u_k)),   log p(z) = log N(u_K; 0, I) - sum s

  ``log_prob`` is one network pass per step; ``sample`` inverts each step by one pass per
  latent element (``MaskedAutoregressiveAffine.inverse``).
* :class:`GaussianPosterior`: q(z|x) = N(mean, exp(log_std)^2), optionally followed by an IAF
  (Kingma et al. 2016): ``TransformedDistribution(Normal, Invert(flow))``, so that sampling
  runs the flow forward, z_{k+1} = (z_k - mu_k(z_k, c)) * exp(-s_k(z_k, c)), one parallel pass
  per step, and log q(z_K) = log N(z_0; mean, std) + sum_k sum s_k.  (The IAF paper writes the
  step as z * sigma + mu; this is the same family with mu -> -mu exp(-s), s -> -s.)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from flowzoo.bijectors import Bijector, Chain, Invert, MaskedAutoregressiveAffine, ScanChain
from flowzoo.distributions import Normal, StandardNormal, TransformedDistribution

_PER_ELEMENT_NORMAL = StandardNormal(())  # N(0, 1) with no event axes: one value per element


def alternating_flow(conditioner, steps: int, event_ndims: int, shift_only: bool) -> Bijector:
    """``steps`` MAA steps with ``conditioner``, orders alternating (module docstring)."""
    if int(steps) < 1:
        raise ValueError(f"An autoregressive flow needs steps >= 1, got {steps} "
                         f"(config.model.prior_steps / posterior_steps; for no flow set "
                         f"prior='normal' / posterior='diag').")

    def step(reverse):
        return MaskedAutoregressiveAffine(conditioner, event_ndims, shift_only, reverse)

    parts = []
    if steps >= 2:
        parts.append(ScanChain(Chain((step(False), step(True))), int(steps) // 2))
    if steps % 2:
        parts.append(step(False))
    return parts[0] if len(parts) == 1 else Chain(tuple(parts))


def flow_steps(flow: Bijector, params) -> list:
    """[(MaskedAutoregressiveAffine, its params)] of a flow made of Chains and ScanChains of
    them (e.g. :func:`alternating_flow`), in the order the forward pass applies them."""
    if isinstance(flow, MaskedAutoregressiveAffine):
        return [(flow, params)]
    if isinstance(flow, Chain):
        return [s for b, p in zip(flow.bijectors, params) for s in flow_steps(b, p)]
    if isinstance(flow, ScanChain):
        return [s for i in range(flow.num_steps)
                for s in flow_steps(flow.step, jax.tree.map(lambda a, i=i: a[i], params))]
    raise TypeError(f"flow_steps: {type(flow).__name__} is not a MaskedAutoregressiveAffine "
                    f"or a Chain/ScanChain of them.")


def log_prob_per_element(prior, params, z):
    """log p(z) per latent element, shaped like ``z``, for N(0, I) or a volume-preserving
    (mean-only) AF prior: the standard normal density of each element of u = flow(z), whose
    log-det is 0; the elements sum to ``prior.log_prob``.  (Free bits per group, as the IAF
    code decomposes the KL: each element's share of log p.)"""
    if isinstance(prior, TransformedDistribution):
        z, _ = prior.bijector.forward(params["bijector"], z)
    elif not isinstance(prior, StandardNormal):
        raise TypeError(f"log_prob_per_element: {type(prior).__name__} is neither N(0, I) nor "
                        f"an AF prior.")
    return _PER_ELEMENT_NORMAL.log_prob((), z)


def af_prior(latent_shape, flow: Bijector) -> TransformedDistribution:
    """p(z) with z = (B, *latent_shape) pushed by ``flow`` to N(0, I).  params:
    ``{'base': (), 'bijector': flow params}``; ``init(key, z)`` is data-dependent."""
    return TransformedDistribution(StandardNormal(tuple(latent_shape)), flow)


@dataclasses.dataclass(frozen=True)
class GaussianPosterior:
    """q(z|x): a diagonal Gaussian on (B, *latent) latents, then ``flow`` (None: none).

    ``flow`` maps z_0 to z_K in its forward direction and takes the encoder's context as
    keyword ``context`` (an IAF: :func:`alternating_flow` of a MADE with context).
    params: the flow's (``()`` without one)."""

    event_ndims: int
    flow: Any = None

    @property
    def base(self) -> Normal:
        return Normal(event_ndims=self.event_ndims)

    def init(self, key, mean, log_std, context):
        """The flow's data-dependent init on z_0 ~ N(mean, std) (the init batch's)."""
        if self.flow is None:
            return ()
        k_base, k_flow = jax.random.split(key)
        z0 = self.base.sample({"loc": mean, "log_scale": log_std}, k_base)
        return self.flow.init(k_flow, z0, context=context)

    def sample_and_log_prob(self, params, key, mean, log_std, context):
        """(z, log q(z|x) (B,)) for z drawn with ``key``."""
        base_params = {"loc": mean, "log_scale": log_std}
        if self.flow is None:
            z = self.base.sample(base_params, key)
            return z, self.base.log_prob(base_params, z)
        q = TransformedDistribution(self.base, Invert(self.flow))
        return q.sample_and_log_prob({"base": base_params, "bijector": params}, key,
                                     context=context)

    def sample_and_log_prob_per_element(self, params, key, mean, log_std, context):
        """(z, log q(z|x) per latent element), z the draw ``sample_and_log_prob`` makes with
        ``key``, for a volume-preserving (mean-only) flow or none: each element's term is its
        base Gaussian density at z_0 (the flow's log-det is 0), and they sum to log q."""
        base_params = {"loc": mean, "log_scale": log_std}
        z0 = self.base.sample(base_params, key)
        per_element = Normal().log_prob(base_params, z0)
        if self.flow is None:
            return z0, per_element
        z, _ = self.flow.forward(params, z0, context=context)
        return z, per_element

