"""Log-space logistic and logistic-mixture densities and CDFs.

Shared by the mixture-CDF bijector and the (discretized) logistic-mixture
distributions.  Everything is computed with ``log_sigmoid`` and ``logsumexp`` so
that tails stay exact in float32: ``log_cdf`` and ``log_sf`` are both accurate
where the CDF rounds to 0 or 1.

Mixture arguments: ``x`` has shape ``S``; ``logits``, ``means`` and
``log_scales`` have shape ``S + (K,)`` (any broadcastable shape works).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp


def logistic_log_pdf(x, loc, log_scale):
    """log density of Logistic(loc, exp(log_scale)) at ``x``."""
    z = (x - loc) * jnp.exp(-log_scale)
    return -z - log_scale - 2.0 * jax.nn.softplus(-z)


def _standardize(x, means, log_scales):
    return (x[..., None] - means) * jnp.exp(-log_scales)


def mixture_log_pdf(x, logits, means, log_scales):
    """log sum_k pi_k Logistic(x; mu_k, s_k), shape ``S``."""
    z = _standardize(x, means, log_scales)
    log_pi = jax.nn.log_softmax(logits, axis=-1)
    comp = -z - log_scales - 2.0 * jax.nn.softplus(-z)
    return logsumexp(log_pi + comp, axis=-1)


def mixture_log_cdf_and_sf(x, logits, means, log_scales):
    """(log F(x), log(1 - F(x))) of the mixture, each of shape ``S``."""
    z = _standardize(x, means, log_scales)
    log_pi = jax.nn.log_softmax(logits, axis=-1)
    log_cdf = logsumexp(log_pi + jax.nn.log_sigmoid(z), axis=-1)
    log_sf = logsumexp(log_pi + jax.nn.log_sigmoid(-z), axis=-1)
    return log_cdf, log_sf


def log_diff_sigmoid(a, b):
    """log(sigmoid(a) - sigmoid(b)) for a > b, exact in both tails.

    Uses sigmoid(a) - sigmoid(b) = sigmoid(-b) - sigmoid(-a) to work on the side
    of zero where the two terms are not both close to 1.
    """
    right = (a + b) > 0  # both terms near 1: reflect
    hi = jnp.where(right, -b, a)
    lo = jnp.where(right, -a, b)
    log_hi = jax.nn.log_sigmoid(hi)
    log_lo = jax.nn.log_sigmoid(lo)
    # log(e^log_hi - e^log_lo) = log_hi + log(-expm1(log_lo - log_hi))
    return log_hi + jnp.log(-jnp.expm1(jnp.minimum(log_lo - log_hi, -1e-30)))
