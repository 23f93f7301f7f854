"""MADE, the autoregressive-flow (AF) prior and the IAF posterior, on vector latents (B, D).

MADE (Germain et al. 2015): masked WN dense layers; input i (1-based) has degree i, hidden
units degrees ``1 + (k mod (D - 1))``, output i sees inputs of degree < i only.  ``context``
(IAF posterior) enters the first hidden layer through an unmasked dense layer, as in IAF.
Outputs: per dimension a shift ``mu`` and, unless ``mean_only``, a log-scale ``s``.

AF prior: ``autoregressive.AutoregressiveFlowPrior`` with MADE steps (the flow, its log-det
and its D-pass sequential inverse are described there).  Mean-only steps (s = 0) are volume
preserving, as in VLAE.

IAF posterior (Kingma et al. 2016): z_0 = mean + exp(log_std) * eps, then
    z_{k+1} = z_k * exp(s_k(z_k, c)) + mu_k(z_k, c),   log q = log N(eps) - sum log_std - sum s
one parallel pass per step.  Both flows reverse the variable order every other step.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from flowzoo.models.vlae.autoregressive import (AutoregressiveFlowPrior, DiagonalPosterior,
                                                flip_order, normal_log_prob)
from flowzoo.models.vlae.layers import WNDense


def made_masks(dim: int, hidden: tuple, outputs_per_dim: int):
    """0/1 masks (numpy) for a MADE with natural input order: [(in, h1), ..., (hL, D*P)].

    Output column ``p * D + i`` is parameter p of dimension i (0-based) and sees inputs
    j < i only."""
    in_deg = np.arange(1, dim + 1)
    degrees, masks, prev = [], [], in_deg
    for h in hidden:
        deg = 1 + (np.arange(h) % max(dim - 1, 1))
        masks.append((deg[None, :] >= prev[:, None]).astype(np.float32))
        degrees.append(deg)
        prev = deg
    out_deg = np.tile(in_deg, outputs_per_dim)
    masks.append((out_deg[None, :] > prev[:, None]).astype(np.float32))
    return masks


@dataclasses.dataclass(frozen=True)
class MADE:
    """(B, D) [+ context (B, C)] -> (mu (B, D), s (B, D) or None); ReLU hidden units."""

    dim: int
    hidden: tuple = (640, 640)
    mean_only: bool = True
    out_init_scale: float = 0.1

    def _layers(self):
        outs = 1 if self.mean_only else 2
        masks = made_masks(self.dim, tuple(self.hidden), outs)
        layers = [WNDense(h, init_scale=1.0, mask=m) for h, m in zip(self.hidden, masks)]
        layers.append(WNDense(self.dim * outs, init_scale=self.out_init_scale, mask=masks[-1]))
        return layers

    def _split(self, out):
        if self.mean_only:
            return out, None
        return out[..., :self.dim], out[..., self.dim:]

    def init(self, key, x, context=None):
        layers = self._layers()
        params = {}
        h = x
        for i, layer in enumerate(layers):
            params[f"dense{i}"], h = layer.init(jax.random.fold_in(key, i), h)
            if i == 0 and context is not None:
                params["context"], hc = WNDense(self.hidden[0], init_scale=1.0).init(
                    jax.random.fold_in(key, 100), context)
                h = h + hc
            if i < len(layers) - 1:
                h = jax.nn.relu(h)
        return params

    def apply(self, params, x, context=None):
        layers = self._layers()
        h = x
        for i, layer in enumerate(layers):
            h = layer.apply(params[f"dense{i}"], h)
            if i == 0 and context is not None:
                h = h + WNDense(self.hidden[0]).apply(params["context"], context)
            if i < len(layers) - 1:
                h = jax.nn.relu(h)
        return self._split(h)


@dataclasses.dataclass(frozen=True)
class StandardNormalPrior:
    """p(z) = N(0, I) on (B, *latent_shape)."""

    latent_shape: tuple
    dtype: str = "float32"  # of samples (the model computes in float32)

    def init(self, key, z):
        del key, z
        return {}

    def log_prob(self, params, z):
        del params
        return normal_log_prob(z)

    def sample(self, params, key, n):
        del params
        return jax.random.normal(key, (n,) + tuple(self.latent_shape), self.dtype)


@dataclasses.dataclass(frozen=True)
class AFPrior(AutoregressiveFlowPrior):
    """Autoregressive-flow prior on (B, D): ``steps`` MADE steps, order reversed every other
    step (see ``autoregressive.py``)."""

    dim: int
    steps: int = 4
    hidden: tuple = (640, 640)
    mean_only: bool = True

    @property
    def event_shape(self):
        return (self.dim,)

    @property
    def net(self):
        return MADE(self.dim, tuple(self.hidden), self.mean_only)


@dataclasses.dataclass(frozen=True)
class IAFPosterior:
    """Diagonal Gaussian followed by ``steps`` IAF steps conditioned on the encoder context."""

    dim: int
    steps: int = 4
    hidden: tuple = (640, 640)
    mean_only: bool = True

    @property
    def made(self):
        return MADE(self.dim, tuple(self.hidden), self.mean_only)

    def _step(self, params, k, z, context):
        mu, s = self.made.apply(params, flip_order(z, k), context)
        mu = flip_order(mu, k)
        if s is None:
            return z + mu, None
        s = flip_order(s, k)
        return z * jnp.exp(s) + mu, s

    def transform(self, params, z0, context):
        """z_0 -> (z_K, sum_k sum_i s_k) (the log-det of the flow)."""
        z, log_det = z0, jnp.zeros(z0.shape[:-1], z0.dtype)
        for k, p in enumerate(params):
            z, s = self._step(p, k, z, context)
            if s is not None:
                log_det = log_det + jnp.sum(s, axis=-1)
        return z, log_det

    def init(self, key, mean, log_std, context):
        z = mean + jnp.exp(log_std) * jax.random.normal(jax.random.fold_in(key, 999),
                                                        mean.shape, mean.dtype)
        params = []
        for k in range(self.steps):
            p = self.made.init(jax.random.fold_in(key, k), flip_order(z, k), context)
            params.append(p)
            z, _ = self._step(p, k, z, context)
        return params

    def sample_and_log_prob(self, params, key, mean, log_std, context):
        z0, log_q0 = DiagonalPosterior().sample_and_log_prob({}, key, mean, log_std, None)
        z, log_det = self.transform(params, z0, context)
        return z, log_q0 - log_det
