"""What VLAE's two AF priors and its posteriors share.

The binary model's AF prior (``made.AFPrior``, MADE steps on (B, D) vectors) and the CIFAR-10
one (``cifar_prior.CifarAFPrior``, masked PixelCNN steps on (B, h, w, c) maps) differ only in
the autoregressive network; :class:`AutoregressiveFlowPrior` holds the flow itself.  A step's
network maps u to a shift mu (and a log-scale s unless mean-only), each output element seeing
only the elements before it in the flattened order.  Density direction, u_0 = z:

    u_{k+1} = (u_k - mu_k(u_k)) * exp(-s_k(u_k)),   log p(z) = log N(u_K; 0, I) - sum_k sum s_k

Odd steps see the reversed order (every event axis flipped).  Sampling inverts the steps last
to first; inverting a step takes one fixed-point pass per event element (``lax.fori_loop``;
pass t fixes element t, so the result is exact).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from flowzoo.distributions import StandardNormal


def sum_event(x):
    """(B, ...) -> (B,): the sum over every axis but the batch axis."""
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def normal_log_prob(u):
    """log N(u; 0, I) over every axis but the batch axis: (B, ...) -> (B,)."""
    return StandardNormal(tuple(u.shape[1:]), u.dtype.name).log_prob((), u)


def flip_order(x, k):
    """Step k's view of a (B, *event) array: odd steps reverse the flattened event order."""
    return jnp.flip(x, axis=tuple(range(1, x.ndim))) if k % 2 else x


class AutoregressiveFlowPrior:
    """The AF prior's flow.  Subclasses (frozen dataclasses) give ``steps``, ``event_shape``
    and ``net``: an object with ``init(key, u) -> params`` and
    ``apply(params, u) -> (mu, s or None)``, autoregressive over the flattened event."""

    def _check(self, z, what):
        shape = tuple(self.event_shape)
        if z.ndim != len(shape) + 1 or tuple(z.shape[1:]) != shape:
            raise ValueError(f"{type(self).__name__}.{what} expects z shaped (B, *{shape}), "
                             f"got {tuple(z.shape)}.")

    def step(self, params, k, u):
        """Density direction of step k: (u_{k+1}, s_k or None)."""
        mu, s = self.net.apply(params, flip_order(u, k))
        mu = flip_order(mu, k)
        if s is None:
            return u - mu, None
        s = flip_order(s, k)
        return (u - mu) * jnp.exp(-s), s

    def init(self, key, z):
        """Data-dependent init, step by step on the batch ``z`` pushed through earlier steps."""
        self._check(z, "init")
        params, u = [], z
        for k in range(self.steps):
            p = self.net.init(jax.random.fold_in(key, k), flip_order(u, k))
            params.append(p)
            u, _ = self.step(p, k, u)
        return params

    def forward(self, params, z):
        """z -> (u_K, log|det du_K/dz| (B,))."""
        u, log_det = z, jnp.zeros(z.shape[:1], z.dtype)
        for k, p in enumerate(params):
            u, s = self.step(p, k, u)
            if s is not None:
                log_det = log_det - sum_event(s)
        return u, log_det

    def log_prob(self, params, z):
        self._check(z, "log_prob")
        u, log_det = self.forward(params, z)
        return normal_log_prob(u) + log_det

    def inverse(self, params, u):
        """u_K -> z, each step inverted by one pass per event element."""
        num = math.prod(self.event_shape)
        for k in reversed(range(len(params))):
            p = params[k]

            def body(_, x, p=p, k=k, target=u):
                mu, s = self.net.apply(p, flip_order(x, k))
                scale = 1.0 if s is None else jnp.exp(flip_order(s, k))
                return target * scale + flip_order(mu, k)

            u = jax.lax.fori_loop(0, num, body, jnp.zeros_like(u))
        return u

    def sample(self, params, key, n):
        leaves = jax.tree.leaves(params)
        dtype = leaves[0].dtype if leaves else jnp.float32
        return self.inverse(params, jax.random.normal(key, (n,) + tuple(self.event_shape),
                                                      dtype))


@dataclasses.dataclass(frozen=True)
class DiagonalPosterior:
    """q(z|x) = N(mean, exp(log_std)^2) on latents of any shape; ignores the context."""

    def init(self, key, mean, log_std, context):
        del key, mean, log_std, context
        return {}

    def sample_and_log_prob(self, params, key, mean, log_std, context):
        del params, context
        eps = jax.random.normal(key, mean.shape, mean.dtype)
        z = mean + jnp.exp(log_std) * eps
        return z, normal_log_prob(eps) - sum_event(log_std)
