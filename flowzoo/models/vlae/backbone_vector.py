"""The vector-latent backbone (binary images): the IAF paper's MNIST ResNet VAE encoder and
its mirror-image decoder, Flax modules.

Encoder (x (B, 28, 28, C) -> mean, log_std (B, latent), context (B, context_dim) or None):

    down(C -> 16)  28 -> 14      a stride-2 ResNet block
    res(16) x blocks_between      stride-1 ResNet blocks
    down(16 -> 32) 14 -> 7
    res(32) x blocks_between
    down(32 -> 32)  7 -> 4
    flatten (4*4*32) -> ELU -> WNDense(450) -> ELU -> WNDense(2*latent + context_dim)

Decoder (z (B, latent) -> features (B, 28, 28, F)), the mirror image:

    WNDense(450) -> ELU -> WNDense(4*4*32) -> reshape (4, 4, 32)
    up(32 -> 32) 4 -> 7, res(32) x blocks_between, up(32 -> 16) 7 -> 14,
    res(16) x blocks_between, up(16 -> 16) 14 -> 28, ELU -> WNConv3x3(F)

ResNet blocks (IAF style, ELU, residual branch scaled by ``residual_scale`` = 0.1):

    res(x)  = x + 0.1 * conv3x3(elu(conv3x3(elu(x))))
    down(x) = conv3x3_stride2(x) + 0.1 * conv3x3(elu(conv3x3_stride2(elu(x))))
    up(x)   = conv3x3(u) + 0.1 * conv3x3(elu(conv3x3(elu(u)))),  u = nearest_resize(x)

Details the reference leaves open, chosen here: 3x3 WN conv shortcuts where the shape
changes (as the IAF code's 'conv' resampling; a 1x1 shortcut on the 1-channel input makes
copies of one channel, whose DDI then divides by a near-zero variance and blows up early
training); nearest-neighbour resizing to the encoder's sizes (4 -> 7 -> 14 -> 28) rather
than transposed convolutions; one stride-1 block between stride-2 blocks; the IAF posterior's
context is extra outputs of the last dense layer.  Every layer is weight-normalised with DDI
(``layers``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flowzoo.models import precision
from flowzoo.models.vlae.layers import ResNetBlock, WNConv, WNDense

elu = jax.nn.elu


def _sizes(image_hw, n):
    """Spatial sizes after each of ``n`` stride-2 SAME convs: 28 -> [14, 7, 4]."""
    sizes, (h, w) = [], image_hw
    for _ in range(n):
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return sizes


def _stage_blocks(channels, blocks_between, mode, sizes):
    """(features, mode, size) of each block: per stage, ``blocks_between`` res blocks (after
    the first stage), then the stage's down/up block."""
    blocks = []
    for i, (c, size) in enumerate(zip(channels, sizes)):
        if i > 0:
            blocks += [(channels[i - 1], "res", ())] * blocks_between
        blocks.append((c, mode, size))
    return blocks


def _run_blocks(h, specs, residual_scale):
    """The ResNet blocks ``specs`` in order, parameters ``block{i}`` of the calling module."""
    for i, spec in enumerate(specs):
        h = ResNetBlock(*spec, residual_scale, name=f"block{i}")(h)
    return h


class _Backbone(nn.Module):
    """The settings the encoder and its mirror-image decoder share.  ``dtype``: None, or
    the narrow dtype the network computes in (``precision``); the outputs come from the
    last layer's float32 accumulator in the input's dtype either way."""

    image_shape: tuple
    channels: tuple = (16, 32, 32)
    blocks_between: int = 1
    hidden: int = 450
    residual_scale: float = 0.1
    dtype: Any = None


class ResNetEncoder(_Backbone):
    """x (B, H, W, C) float -> (mean (B, latent), log_std (B, latent), context or None)."""

    latent: int = 64
    context_dim: int = 0

    @nn.compact
    def __call__(self, x):
        _check_image(x, self.image_shape, "ResNetEncoder")
        out_dtype, x = x.dtype, precision.cast(x, self.dtype)
        specs = _stage_blocks(self.channels, self.blocks_between, "down",
                              [()] * len(self.channels))
        h = elu(_run_blocks(x, specs, self.residual_scale).reshape(x.shape[0], -1))
        h = WNDense(self.hidden, init_scale=1.0, name="dense1")(h)
        out = WNDense(2 * self.latent + self.context_dim, out_dtype=out_dtype,
                      name="dense2")(elu(h))
        mean = out[:, :self.latent]
        log_std = out[:, self.latent:2 * self.latent]
        context = out[:, 2 * self.latent:] if self.context_dim else None
        return mean, log_std, context


class ResNetDecoder(_Backbone):
    """z (B, latent) -> features (B, H, W, features): the encoder mirrored."""

    features: int = 4

    @nn.compact
    def __call__(self, z):
        sizes = _sizes(self.image_shape[:2], len(self.channels))
        start = sizes[-1] + (self.channels[-1],)
        targets = list(reversed(sizes[:-1])) + [tuple(self.image_shape[:2])]
        outs = list(reversed(self.channels[:-1])) + [self.channels[0]]
        h = WNDense(self.hidden, init_scale=1.0, name="dense1")(precision.cast(z, self.dtype))
        h = WNDense(start[0] * start[1] * start[2], init_scale=1.0, name="dense2")(elu(h))
        specs = _stage_blocks(outs, self.blocks_between, "up", targets)
        h = _run_blocks(h.reshape((h.shape[0],) + start), specs, self.residual_scale)
        return WNConv(self.features, (3, 3), init_scale=1.0, out_dtype=z.dtype,
                      name="out")(elu(h))


def _check_image(x, image_shape, name):
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(f"{name} expects images (B, {', '.join(map(str, image_shape))}), got "
                         f"shape {tuple(x.shape)}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} expects float input (scale uint8 levels with x_scale), got "
                        f"{x.dtype}.")
