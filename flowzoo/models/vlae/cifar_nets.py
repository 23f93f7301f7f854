"""The VLAE CIFAR-10 encoder and decoder (32x32x3 images, an 8x8x16 latent).

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
conv is weight-normalised with data-dependent init (``layers.WNConv``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from flowzoo.models.vlae.layers import WNConv

elu = jax.nn.elu


def _up2(x):
    """Nearest-neighbour 2x upsampling of NHWC x."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


@dataclasses.dataclass(frozen=True)
class _Group:
    """A stage's residual group: ``num`` ResNet blocks, or one 3-step DenseNet block."""

    channels: int
    num: int
    block: str = "resnet"
    growth: int = 32
    dense_steps: int = 3
    residual_scale: float = 0.1

    def _convs(self):
        if self.block == "resnet":
            return [(WNConv(self.channels), WNConv(self.channels)) for _ in range(self.num)]
        return [WNConv(self.growth, init_scale=1.0) for _ in range(self.dense_steps)]

    def init(self, key, x):
        params = []
        for i, layer in enumerate(self._convs()):
            k = jax.random.fold_in(key, i)
            if self.block == "resnet":
                p1, h = layer[0].init(jax.random.fold_in(k, 0), elu(x))
                p2, h = layer[1].init(jax.random.fold_in(k, 1), elu(h))
                params.append({"conv1": p1, "conv2": p2})
                x = x + self.residual_scale * h
            else:
                p, h = layer.init(k, elu(x))
                params.append(p)
                x = jnp.concatenate([x, h], axis=-1)
        return params, x

    def apply(self, params, x):
        for layer, p in zip(self._convs(), params):
            if self.block == "resnet":
                h = layer[1].apply(p["conv2"], elu(layer[0].apply(p["conv1"], elu(x))))
                x = x + self.residual_scale * h
            else:
                x = jnp.concatenate([x, layer.apply(p, elu(x))], axis=-1)
        return x


def _check_block(block):
    if block not in ("resnet", "densenet"):
        raise ValueError(f"VLAE CIFAR nets: block must be 'resnet' or 'densenet', got "
                         f"{block!r}.")


def _chain(stages, key, x):
    """DDI through a list of (layer, pre-activation?) stages: (list of params, output)."""
    params = []
    for i, (layer, act) in enumerate(stages):
        if isinstance(layer, str):  # parameter-free step
            x = _up2(x)
            params.append({})
            continue
        p, x = layer.init(jax.random.fold_in(key, i), elu(x) if act else x)
        params.append(p)
    return params, x


def _run(stages, params, x):
    for (layer, act), p in zip(stages, params):
        if isinstance(layer, str):
            x = _up2(x)
            continue
        x = layer.apply(p, elu(x) if act else x)
    return x


@dataclasses.dataclass(frozen=True)
class CifarEncoder:
    """x (B, H, W, C) float -> (mean, log_std (B, H/4, W/4, latent_channels), None)."""

    image_shape: tuple = (32, 32, 3)
    latent_channels: int = 16
    channels: tuple = (48, 96, 96)  # widths at full, 1/2 and 1/4 resolution
    blocks: tuple = (2, 2, 3)
    block: str = "resnet"
    growth: tuple = (24, 48, 48)  # DenseNet growth per stage
    residual_scale: float = 0.1

    def __post_init__(self):
        _check_block(self.block)
        h, w = self.image_shape[:2]
        if h % 4 or w % 4:
            raise ValueError(f"CifarEncoder: image height and width must be multiples of 4 "
                             f"(two stride-2 convs), got {self.image_shape}.")

    def _stages(self):
        c, stages = self.channels, [(WNConv(self.channels[0], init_scale=1.0), False)]
        for s in range(3):
            stages.append((_Group(c[s], self.blocks[s], self.block, self.growth[s],
                                  residual_scale=self.residual_scale), False))
            if s < 2:
                stages.append((WNConv(c[s + 1], stride=2, init_scale=1.0), False))
        stages.append((WNConv(2 * self.latent_channels, (1, 1)), True))
        return stages

    def _check(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"CifarEncoder expects images (B, *{tuple(self.image_shape)}), "
                             f"got shape {tuple(x.shape)}.")

    def init(self, key, x):
        self._check(x)
        return _chain(self._stages(), key, x)[0]

    def apply(self, params, x):
        self._check(x)
        out = _run(self._stages(), params, x)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, log_std, None


@dataclasses.dataclass(frozen=True)
class CifarDecoder:
    """z (B, h, w, latent_channels) -> features (B, 4h, 4w, F), the encoder mirrored."""

    channels: tuple = (48, 96, 96)
    blocks: tuple = (2, 2, 3)
    block: str = "resnet"
    growth: tuple = (24, 48, 48)
    residual_scale: float = 0.1

    def __post_init__(self):
        _check_block(self.block)

    @property
    def features(self) -> int:
        """F, the number of feature maps the likelihood is conditioned on."""
        extra = 3 * self.growth[0] if self.block == "densenet" else 0
        return self.channels[0] + extra

    def _stages(self):
        c = self.channels
        stages = [(WNConv(c[2], (1, 1), init_scale=1.0), False)]
        for s in (2, 1, 0):
            stages.append((_Group(c[s], self.blocks[s], self.block, self.growth[s],
                                  residual_scale=self.residual_scale), False))
            if s > 0:
                stages += [("up", False), (WNConv(c[s - 1], init_scale=1.0), False)]
        return stages

    def init(self, key, z):
        return _chain(self._stages(), key, z)[0]

    def apply(self, params, z):
        return elu(_run(self._stages(), params, z))
