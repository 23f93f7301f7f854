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


def log_diff_sigmoid(a, b, log_gap=None):
    """log(sigmoid(a) - sigmoid(b)) for a > b, accurate at any a, b and any gap.

    Uses sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - e^(b-a)): each factor
    is computed in log space with no cancellation, in both tails and for a narrow
    gap, where subtracting two nearly equal CDFs would lose most digits.
    ``log_gap = log(a - b)``, when the caller knows it more accurately than the
    difference of the rounded ``a`` and ``b`` (a narrow bin: log(width) - log(scale)).
    """
    if log_gap is None:
        log_gap = jnp.log(a - b)
    # log(1 - e^-g): log(-expm1(-g)) unless g underflows, where it is log(g) to
    # float precision; the clamp keeps the unused branch's gradient finite.
    tiny = log_gap < -20.0
    wide = jnp.log(-jnp.expm1(-jnp.exp(jnp.maximum(log_gap, -20.0))))
    log_one_minus = jnp.where(tiny, log_gap, wide)
    return jax.nn.log_sigmoid(a) + jax.nn.log_sigmoid(-b) + log_one_minus
