"""The IAF paper's MNIST ResNet VAE backbone (28x28 binary images), encoder and decoder.

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
context is extra outputs of the last dense layer.  Every layer is weight-normalised with DDI.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from flowzoo.models.vlae.layers import WNConv, WNDense, resize_nearest

elu = jax.nn.elu


@dataclasses.dataclass(frozen=True)
class _Block:
    """One ResNet block; ``mode`` 'res' | 'down' | 'up' (``size``: output H, W for 'up')."""

    features: int
    mode: str = "res"
    size: tuple = ()
    residual_scale: float = 0.1

    def _layers(self):
        stride = 2 if self.mode == "down" else 1
        conv1 = WNConv(self.features, (3, 3), stride)
        conv2 = WNConv(self.features, (3, 3))
        skip = None if self.mode == "res" else WNConv(self.features, (3, 3), stride,
                                                      init_scale=1.0)
        return conv1, conv2, skip

    def _pre(self, x):
        return resize_nearest(x, *self.size) if self.mode == "up" else x

    def init(self, key, x):
        conv1, conv2, skip = self._layers()
        k1, k2, k3 = jax.random.split(key, 3)
        x = self._pre(x)
        p1, h = conv1.init(k1, elu(x))
        p2, h = conv2.init(k2, elu(h))
        params = {"conv1": p1, "conv2": p2}
        if skip is not None:
            params["skip"], x = skip.init(k3, x)
        return params, x + self.residual_scale * h

    def apply(self, params, x):
        conv1, conv2, skip = self._layers()
        x = self._pre(x)
        h = conv2.apply(params["conv2"], elu(conv1.apply(params["conv1"], elu(x))))
        if skip is not None:
            x = skip.apply(params["skip"], x)
        return x + self.residual_scale * h


def _run(blocks, key, x):
    """DDI through a list of blocks/layers: (list of params, output)."""
    params = []
    for i, block in enumerate(blocks):
        p, x = block.init(jax.random.fold_in(key, i), x)
        params.append(p)
    return params, x


def _apply(blocks, params, x):
    for block, p in zip(blocks, params):
        x = block.apply(p, x)
    return x


def _sizes(image_hw, n):
    """Spatial sizes after each of ``n`` stride-2 SAME convs: 28 -> [14, 7, 4]."""
    sizes, (h, w) = [], image_hw
    for _ in range(n):
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return sizes


@dataclasses.dataclass(frozen=True)
class ResNetEncoder:
    """x (B, H, W, C) float -> (mean (B, latent), log_std (B, latent), context or None)."""

    image_shape: tuple
    channels: tuple = (16, 32, 32)
    blocks_between: int = 1
    hidden: int = 450
    latent: int = 64
    context_dim: int = 0
    residual_scale: float = 0.1

    def _convs(self):
        blocks = []
        for i, c in enumerate(self.channels):
            if i > 0:
                blocks += [_Block(self.channels[i - 1], "res", (), self.residual_scale)
                           for _ in range(self.blocks_between)]
            blocks.append(_Block(c, "down", (), self.residual_scale))
        return blocks

    def _dense(self):
        return (WNDense(self.hidden, init_scale=1.0),
                WNDense(2 * self.latent + self.context_dim))

    def _split(self, out):
        mean = out[:, :self.latent]
        log_std = out[:, self.latent:2 * self.latent]
        context = out[:, 2 * self.latent:] if self.context_dim else None
        return mean, log_std, context

    def init(self, key, x):
        _check_image(x, self.image_shape, "ResNetEncoder")
        k1, k2, k3 = jax.random.split(key, 3)
        convs, (d1, d2) = self._convs(), self._dense()
        pc, h = _run(convs, k1, x)
        h = elu(h.reshape(h.shape[0], -1))
        p1, h = d1.init(k2, h)
        p2, _ = d2.init(k3, elu(h))
        return {"convs": pc, "dense1": p1, "dense2": p2}

    def apply(self, params, x):
        _check_image(x, self.image_shape, "ResNetEncoder")
        convs, (d1, d2) = self._convs(), self._dense()
        h = _apply(convs, params["convs"], x)
        h = elu(h.reshape(h.shape[0], -1))
        h = d1.apply(params["dense1"], h)
        return self._split(d2.apply(params["dense2"], elu(h)))


@dataclasses.dataclass(frozen=True)
class ResNetDecoder:
    """z (B, latent) -> features (B, H, W, features): the encoder mirrored."""

    image_shape: tuple
    channels: tuple = (16, 32, 32)
    blocks_between: int = 1
    hidden: int = 450
    features: int = 4
    residual_scale: float = 0.1

    def _plan(self):
        sizes = _sizes(self.image_shape[:2], len(self.channels))
        start = sizes[-1] + (self.channels[-1],)
        targets = list(reversed(sizes[:-1])) + [tuple(self.image_shape[:2])]
        outs = list(reversed(self.channels[:-1])) + [self.channels[0]]
        blocks = []
        for i, (size, c) in enumerate(zip(targets, outs)):
            if i > 0:
                blocks += [_Block(outs[i - 1], "res", (), self.residual_scale)
                           for _ in range(self.blocks_between)]
            blocks.append(_Block(c, "up", size, self.residual_scale))
        dense = (WNDense(self.hidden, init_scale=1.0),
                 WNDense(start[0] * start[1] * start[2], init_scale=1.0))
        return start, dense, blocks, WNConv(self.features, (3, 3), init_scale=1.0)

    def init(self, key, z):
        start, (d1, d2), blocks, out = self._plan()
        k1, k2, k3, k4 = jax.random.split(key, 4)
        p1, h = d1.init(k1, z)
        p2, h = d2.init(k2, elu(h))
        pb, h = _run(blocks, k3, h.reshape((h.shape[0],) + start))
        po, _ = out.init(k4, elu(h))
        return {"dense1": p1, "dense2": p2, "blocks": pb, "out": po}

    def apply(self, params, z):
        start, (d1, d2), blocks, out = self._plan()
        h = d1.apply(params["dense1"], z)
        h = d2.apply(params["dense2"], elu(h))
        h = _apply(blocks, params["blocks"], h.reshape((h.shape[0],) + start))
        return out.apply(params["out"], elu(h))


def _check_image(x, image_shape, name):
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(f"{name} expects images (B, {', '.join(map(str, image_shape))}), got "
                         f"shape {tuple(x.shape)}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} expects float input (scale uint8 levels with x_scale), got "
                        f"{x.dtype}.")
