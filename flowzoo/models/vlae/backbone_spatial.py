"""The spatial-latent backbone (CIFAR-10: 32x32x3 images, an 8x8x16 latent): encoder and
mirror-image decoder, Flax modules.

Encoder, x (B, 32, 32, 3) float in [-1, 1] -> mean, log_std (B, 8, 8, 16), context None:

    conv3x3(3 -> 48)                          32x32
    group(48)  = 2 ResNet blocks              32x32
    conv3x3 stride 2 (48 -> 96)               16x16
    group(96)  = 2 ResNet blocks              16x16
    conv3x3 stride 2 (96 -> 96)                8x8
    group(96)  = 3 ResNet blocks               8x8
    ELU -> conv1x1(96 -> 2 * 16)              mean, log_std

Decoder, z (B, 8, 8, 16) -> features (B, 32, 32, F), the mirror image:

    conv1x1(16 -> 96), group(96) x 3 blocks, up(96 -> 96) 8 -> 16, group(96) x 2,
    up(96 -> 48) 16 -> 32, group(48) x 2, ELU  (F = 48, or 48 + 3 * growth for DenseNet)

``up`` = nearest-neighbour 2x resize then conv3x3 (the mirror of the stride-2 conv; no
transposed-convolution checkerboard).  Channels: 48 at 32x32, 96 elsewhere.

ResNet block (IAF style): ``x + 0.1 * conv3x3(elu(conv3x3(elu(x))))``.
DenseNet variant (``block="densenet"``): every group of ResNet blocks (the pairs and the final
three) becomes one 3-step DenseNet block, ``h_s = conv3x3(elu([x, h_1 .. h_{s-1}]))`` with
``growth`` maps each, output ``[x, h_1, h_2, h_3]`` (C + 3 * growth maps); the next conv
(stride 2, up, or the output 1x1) is the DenseNet transition back to the stage width.  Every
conv is weight-normalised with data-dependent init (``layers.WNConv``).  Parameter names
follow the stages: ``in``, ``group0``, ``down1``, ``group1``, ``down2``, ``group2``, ``out``
(encoder); ``in``, ``group2``, ``up1``, ``group1``, ``up0``, ``group0`` (decoder).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flowzoo.models import precision
from flowzoo.models.vlae.layers import ResNetBlock, WNConv

elu = jax.nn.elu
BLOCKS = ("resnet", "densenet")


def _up2(x):
    """Nearest-neighbour 2x upsampling of NHWC x."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _check_block(block, who):
    if block not in BLOCKS:
        raise ValueError(f"{who}: block must be one of {BLOCKS} (config.model.block), got "
                         f"{block!r}.")


class _Group(nn.Module):
    """A stage's residual group: ``num`` ResNet blocks (``layers.ResNetBlock``, parameters
    ``block{i}``), or one 3-step DenseNet block (``step{i}``)."""

    channels: int
    num: int
    block: str = "resnet"
    growth: int = 32
    dense_steps: int = 3
    residual_scale: float = 0.1

    @nn.compact
    def __call__(self, x):
        if self.block == "resnet":
            for i in range(self.num):
                x = ResNetBlock(self.channels, residual_scale=self.residual_scale,
                                name=f"block{i}")(x)
            return x
        for i in range(self.dense_steps):
            h = WNConv(self.growth, init_scale=1.0, name=f"step{i}")(elu(x))
            x = jnp.concatenate([x, h], axis=-1)
        return x


class CifarEncoder(nn.Module):
    """x (B, H, W, C) float -> (mean, log_std (B, H/4, W/4, latent_channels), None)."""

    image_shape: tuple = (32, 32, 3)
    latent_channels: int = 16
    channels: tuple = (48, 96, 96)  # widths at full, 1/2 and 1/4 resolution
    blocks: tuple = (2, 2, 3)
    block: str = "resnet"
    growth: tuple = (24, 48, 48)  # DenseNet growth per stage
    residual_scale: float = 0.1
    dtype: Any = None  # None, or the narrow dtype it computes in (``precision``)

    def __post_init__(self):
        _check_block(self.block, "CifarEncoder")
        h, w = self.image_shape[:2]
        if h % 4 or w % 4:
            raise ValueError(f"CifarEncoder: image height and width must be multiples of 4 "
                             f"(two stride-2 convs), got {self.image_shape}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"CifarEncoder expects images (B, *{tuple(self.image_shape)}), "
                             f"got shape {tuple(x.shape)}.")
        c = self.channels
        h = WNConv(c[0], init_scale=1.0, name="in")(precision.cast(x, self.dtype))
        for s in range(3):
            h = _Group(c[s], self.blocks[s], self.block, self.growth[s],
                       residual_scale=self.residual_scale, name=f"group{s}")(h)
            if s < 2:
                h = WNConv(c[s + 1], stride=2, init_scale=1.0, name=f"down{s + 1}")(h)
        out = WNConv(2 * self.latent_channels, (1, 1), out_dtype=x.dtype, name="out")(elu(h))
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, log_std, None


class CifarDecoder(nn.Module):
    """z (B, h, w, latent_channels) -> features (B, 4h, 4w, F), the encoder mirrored."""

    channels: tuple = (48, 96, 96)
    blocks: tuple = (2, 2, 3)
    block: str = "resnet"
    growth: tuple = (24, 48, 48)
    residual_scale: float = 0.1
    dtype: Any = None  # as CifarEncoder's; the features are in z's dtype

    def __post_init__(self):
        _check_block(self.block, "CifarDecoder")
        super().__post_init__()

    @property
    def features(self) -> int:
        """F, the number of feature maps the likelihood is conditioned on."""
        extra = 3 * self.growth[0] if self.block == "densenet" else 0
        return self.channels[0] + extra

    @nn.compact
    def __call__(self, z):
        c = self.channels
        h = WNConv(c[2], (1, 1), init_scale=1.0, name="in")(precision.cast(z, self.dtype))
        for s in (2, 1, 0):
            h = _Group(c[s], self.blocks[s], self.block, self.growth[s],
                       residual_scale=self.residual_scale, name=f"group{s}")(h)
            if s > 0:
                h = WNConv(c[s - 1], init_scale=1.0, name=f"up{s - 1}")(_up2(h))
        return elu(h).astype(z.dtype)
