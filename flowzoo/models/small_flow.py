"""A small multi-scale flow from the core bijectors: the trainer's first model.

uniform dequantization -> ImageToLogit -> ``steps`` x [ActNorm, 1x1 conv,
mixture-CDF coupling on column stripes] -> Squeeze -> ``steps`` x [ActNorm,
1x1 conv, mixture-CDF coupling on channel halves] -> N(0, I).
Loss and metric: bits/dim of the single-sample variational bound
-E_u[log p(x + u)] / (D ln 2), which includes the preprocessing log-det.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from flowzoo import bijectors as fb
from flowzoo import distributions as fd
from flowzoo.model import Model, example_keys


class ConvConditioner(nn.Module):
    """3x3 conv -> ELU -> 1x1 conv -> ELU -> 3x3 conv (zero init: the coupling
    starts as the identity)."""

    hidden: int
    out: int

    @nn.compact
    def __call__(self, x):
        h = nn.elu(nn.Conv(self.hidden, (3, 3))(x))
        h = nn.elu(nn.Conv(self.hidden, (1, 1))(h))
        return nn.Conv(self.out, (3, 3), kernel_init=nn.initializers.zeros)(h)


def _steps(n, split, channels_transformed, cfg):
    inner = fb.MixtureCDFInner(num_components=cfg.num_components)
    layers = []
    for i in range(n):
        layers += [fb.ActNorm(), fb.Invertible1x1Conv(),
                   fb.Coupling(split, ConvConditioner(cfg.hidden, channels_transformed * inner.num_params),
                               inner, swap=bool(i % 2))]
    return layers


def build(cfg, image_shape, num_levels) -> Model:
    h, w, c = image_shape
    if h % 2 or w % 2:
        raise ValueError(f"small_flow needs an even height and width, got image shape {image_shape}.")
    flow = fb.Chain([fb.ImageToLogit(num_levels=num_levels)]
                    + _steps(cfg.steps_per_scale, fb.StripeSplit(), c, cfg)
                    + [fb.Squeeze()]
                    + _steps(cfg.steps_per_scale, fb.ChannelSplit(), 2 * c, cfg))
    dist = fd.TransformedDistribution(fd.StandardNormal((h // 2, w // 2, 4 * c)), flow)
    dims = h * w * c

    def dequantize(batch, key):
        noise = jax.vmap(lambda k: jax.random.uniform(k, image_shape))(example_keys(key, batch["index"]))
        return batch["image"].astype(jnp.float32) + noise

    def bits_per_dim(params, batch, key):
        return -dist.log_prob(params, dequantize(batch, key)) / (dims * math.log(2.0))

    def init(key, batch):
        return dist.init(key, dequantize(batch, jax.random.fold_in(key, 1)))

    def loss(params, batch, key):
        bpd = jnp.mean(bits_per_dim(params, batch, key))
        return bpd, {"bits_per_dim": bpd}

    def evaluate(params, batch, key):
        return {"bits_per_dim": bits_per_dim(params, batch, key)}

    def sample(params, key, n):
        x = dist.sample(params, key, n)
        return jnp.clip(jnp.floor(x), 0, num_levels - 1).astype(jnp.uint8)

    return Model(init=init, loss=loss, evaluate=evaluate, sample=sample)
