"""The PixelCNN++ likelihood p(x | z) (CIFAR-10): a conditional PixelCNN++ (a Flax module) with
an A x B receptive field and a discretized logistic mixture per pixel.

p(x | features) = prod over pixels in raster order of a discretized logistic mixture whose
parameters come from a two-stream PixelCNN++ (Salimans et al. 2017) conditioned on the
decoded z features; RGB within a pixel is channel-autoregressive (the mixture's
``channel_coupled`` option: G depends on R, B on R and G).

Receptive field A x B (A columns, B rows): output (i, j) sees exactly

    rows i-B .. i-1, columns j-L .. j+R   (the block above)   and   (i, j-L) .. (i, j-1),

with L = ceil((A-1)/2), R = A-1-L (7x4: 3 left, 3 right, 4 rows above; 4x2: 2 left, 1 right).

How depth and kernels give A x B.  Every convolution covers an exact rectangle of offsets
(dy, dx) (``layers.FootprintConv``: a WN conv of that kernel size on a shifted input, no masks):
* vertical stream v (sees rows above only): the input conv covers row -1 and columns
  [-min(L, 1), min(R, 1)]; then the gated blocks' convolutions (2 per block, in order,
  k = 1 .. 2*blocks) each cover dy in [-1, 0] while k <= B-1 (else dy = 0), dx = -1 while
  k <= L-1 and dx = +1 while k <= R-1.  So v ends with rows [-B, -1] x columns [-L, R].
* horizontal stream h (the output stream): the input conv covers (0, -L .. -1); its gated
  blocks use 1x1 convolutions and take v of the same position through a 1x1 "nin".
So the field is set by kernels, not depth: ``blocks`` must satisfy 2*blocks >= max(B, L, R)-1.
The h stream never mixes positions after its input conv, which also makes sampling cheap:
v is computed once per row, then only h (one row, 1x1 convolutions) per pixel.

Gated block (PixelCNN++): ``c1 = conv1(celu(x)) [+ nin(celu(v))]``,
``c2 = conv2(celu(c1)) + nin(features)`` (2F maps), ``x + a * sigmoid(b)``; celu = concat
ELU; no dropout.  Inputs: the image scaled to [-1, 1] plus a ones channel (so zero padding is
visible); ``grayscale`` feeds 0.299 R + 0.587 G + 0.114 B instead of RGB (still predicting RGB).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flowzoo.distributions import DiscretizedLogisticMixture
from flowzoo.models import precision
from flowzoo.models.vlae.layers import FootprintConv, WNConv

GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def concat_elu(x):
    return jax.nn.elu(jnp.concatenate([x, -x], axis=-1))


def _conv(features, footprint, init_scale, name):
    """A FootprintConv over ``footprint`` ((dy0, dy1), (dx0, dx1)), or a 1x1 WNConv (None)."""
    if footprint is None:
        return WNConv(features, (1, 1), init_scale=init_scale, name=name)
    return FootprintConv(features, *footprint, init_scale=init_scale, name=name)


class _Gated(nn.Module):
    """``c1 = conv1(celu(x)) [+ nin_v(celu(a))]``, ``c2 = conv2(celu(c1)) + nin_z(features)``
    (2F maps), ``x + c2_a * sigmoid(c2_b)``."""

    filters: int
    conv1: tuple | None  # footprint, or None for 1x1
    conv2: tuple | None
    conv1_init_scale: float

    @nn.compact
    def __call__(self, x, features, a=None):
        f = self.filters
        c1 = _conv(f, self.conv1, self.conv1_init_scale, "conv1")(concat_elu(x))
        if a is not None:
            c1 = c1 + WNConv(f, (1, 1), name="nin_v")(concat_elu(a))
        c2 = _conv(2 * f, self.conv2, 0.1, "conv2")(concat_elu(c1))
        c2 = c2 + WNConv(2 * f, (1, 1), init_scale=0.1, name="nin_z")(features)
        gate_a, gate_b = jnp.split(c2, 2, axis=-1)
        return x + gate_a * jax.nn.sigmoid(gate_b)


class PixelCNNppNet(nn.Module):
    """The two streams.  ``v_footprints``: the vertical stream's 1 + 2 * blocks convolutions
    (input conv first); ``h_footprint``: the horizontal stream's input conv.  Parameters
    ``v0``, ``v_blocks_{t}``, ``h0``, ``h_blocks_{t}``, ``out``.  ``dtype``: None, or the
    narrow dtype both streams compute in (``precision``); the mixture parameters come from
    the last layer's float32 accumulator in the input's dtype either way."""

    v_footprints: tuple
    h_footprint: tuple
    filters: int
    num_outputs: int
    dtype: Any = None

    def setup(self):
        f, v = self.filters, self.v_footprints
        blocks = (len(v) - 1) // 2
        self.v0 = FootprintConv(f, *v[0])
        self.v_blocks = [_Gated(f, v[2 * t + 1], v[2 * t + 2], 1.0) for t in range(blocks)]
        self.h0 = FootprintConv(f, *self.h_footprint)
        self.h_blocks = [_Gated(f, None, None, 0.1) for _ in range(blocks)]
        # Narrow streams: the float32 accumulator is the output (cast to the input's dtype).
        self.out = WNConv(self.num_outputs, (1, 1), init_scale=0.1,
                          out_dtype=None if self.dtype is None else jnp.float32)

    def v_stream(self, x_in, features):
        """[v_0, v_1 .. v_blocks], each (B, H, W, filters); v sees rows above only."""
        x_in, features = precision.cast(x_in, self.dtype), precision.cast(features, self.dtype)
        vs = [self.v0(x_in)]
        for block in self.v_blocks:
            vs.append(block(vs[-1], features))
        return vs

    def h_stream(self, x_in, vs, features):
        """Raw mixture parameters (B, H, W, num_outputs) from the h stream."""
        out_dtype = x_in.dtype
        x_in, features = precision.cast(x_in, self.dtype), precision.cast(features, self.dtype)
        h = self.h0(x_in)
        for block, v in zip(self.h_blocks, vs[1:]):
            h = block(h, features, precision.cast(v, self.dtype))
        return self.out(jax.nn.elu(h)).astype(out_dtype)

    def __call__(self, x_in, features):
        return self.h_stream(x_in, self.v_stream(x_in, features), features)


@dataclasses.dataclass(frozen=True)
class CifarPixelCNNpp:
    """Likelihood p(x | features) for (B, H, W, 3) images (module docstring)."""

    image_shape: tuple = (32, 32, 3)
    num_levels: int = 256
    receptive_field: tuple = (7, 4)  # (A columns, B rows above)
    filters: int = 64
    blocks: int = 4
    num_components: int = 10
    grayscale: bool = False
    channel_coupled: bool = True
    dtype: Any = None  # the network's (``PixelCNNppNet``); the mixture stays float32

    def __post_init__(self):
        a, b = self.receptive_field
        if a < 2 or b < 1:
            raise ValueError(f"CifarPixelCNNpp: receptive_field (A, B) needs A >= 2 and "
                             f"B >= 1, got {self.receptive_field}.")
        need = max(b, self.left, self.right) - 1
        if need > 2 * self.blocks:
            raise ValueError(f"CifarPixelCNNpp: receptive field {a}x{b} needs blocks >= "
                             f"{-(-need // 2)} (2 growing convolutions per block), got "
                             f"{self.blocks}.")
        channels = self.image_shape[-1]
        if (self.channel_coupled or self.grayscale) and channels != 3:
            raise ValueError(f"CifarPixelCNNpp: channel_coupled / grayscale need RGB images "
                             f"(3 channels), got image_shape {self.image_shape}.")

    @property
    def left(self) -> int:
        return -(-(self.receptive_field[0] - 1) // 2)

    @property
    def right(self) -> int:
        return self.receptive_field[0] - 1 - self.left

    def receptive_offsets(self):
        """The (dy, dx) offsets output (i, j) is meant to see (for tests and docs)."""
        rows_above = [(dy, dx) for dy in range(-self.receptive_field[1], 0)
                      for dx in range(-self.left, self.right + 1)]
        return set(rows_above) | {(0, dx) for dx in range(-self.left, 0)}

    @property
    def distribution(self):
        return DiscretizedLogisticMixture(num_bins=self.num_levels, event_ndims=3,
                                          channel_coupled=self.channel_coupled)

    @property
    def num_outputs(self) -> int:
        k, c = self.num_components, self.image_shape[-1]
        return 10 * k if self.channel_coupled else 3 * c * k

    def _v_footprint(self, k):
        """(dy, dx) of the k-th convolution of the vertical stream (k = 0: the input conv)."""
        if k == 0:
            return (-1, -1), (-min(self.left, 1), min(self.right, 1))
        dy = (-int(k <= self.receptive_field[1] - 1), 0)
        return dy, (-int(k <= self.left - 1), int(k <= self.right - 1))

    @property
    def net(self) -> PixelCNNppNet:
        v = tuple(self._v_footprint(k) for k in range(2 * self.blocks + 1))
        return PixelCNNppNet(v, ((0, 0), (-self.left, -1)), self.filters, self.num_outputs,
                             self.dtype)

    def _input(self, x):
        """Levels (B, H, W, C) -> network input: [-1, 1] image (or gray) + a ones channel."""
        x = jnp.asarray(x)
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
        x = x.astype(dtype) * (2.0 / (self.num_levels - 1)) - 1.0
        if self.grayscale:
            x = jnp.tensordot(x, jnp.asarray(GRAY_WEIGHTS, dtype), axes=[[-1], [0]])[..., None]
        return jnp.concatenate([x, jnp.ones(x.shape[:-1] + (1,), dtype)], axis=-1)

    def _split(self, out):
        """Raw outputs (..., num_outputs) -> the mixture's parameter dict."""
        k = self.num_components
        lead = out.shape[:-1]
        if self.channel_coupled:
            return {"logits": out[..., :k],
                    "means": out[..., k:4 * k].reshape(lead + (3, k)),
                    "log_scales": out[..., 4 * k:7 * k].reshape(lead + (3, k)),
                    "coeffs": out[..., 7 * k:].reshape(lead + (3, k))}
        parts = out.reshape(lead + (3, self.image_shape[-1], k))
        return {"logits": parts[..., 0, :, :], "means": parts[..., 1, :, :],
                "log_scales": parts[..., 2, :, :]}

    def _check(self, x, features, what):
        shape = tuple(self.image_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"CifarPixelCNNpp.{what}: x must be (B, *{shape}), got "
                             f"{tuple(x.shape)}.")
        if features.ndim != 4 or features.shape[:3] != x.shape[:3]:
            raise ValueError(f"CifarPixelCNNpp.{what}: features must be (B, H, W, F) matching "
                             f"x {tuple(x.shape)}, got {tuple(features.shape)}.")

    # ---- the Likelihood interface ---------------------------------------------------------

    def init(self, key, x, features):
        x, features = jnp.asarray(x), jnp.asarray(features)
        self._check(x, features, "init")
        return self.net.init(key, self._input(x.astype(features.dtype)), features)

    def network(self, params, x, features):
        """Raw per-pixel outputs (B, H, W, num_outputs); x levels, int or float."""
        return self.net.apply(params, self._input(jnp.asarray(x).astype(features.dtype)),
                              features)

    def log_prob(self, params, x, features):
        """log p(x | features) in nats, (B,); x integer levels (B, H, W, C)."""
        x = jnp.asarray(x)
        self._check(x, features, "log_prob")
        out = self.network(params, x, features)
        return self.distribution.log_prob(self._split(out), x)

    def pixel_key(self, key, i, j):
        """The key pixel (i, j) is drawn with (so tests can redraw a pixel)."""
        return jax.random.fold_in(key, i * self.image_shape[1] + j)

    def sample(self, params, key, features):
        """Ancestral sampling, (B, H, W, C) uint8: per row one v-stream pass, then per pixel
        one h-stream pass over that row only (both ``lax.fori_loop``)."""
        net, dist = self.net, self.distribution
        height, width, channels = self.image_shape
        canvas = jnp.zeros(features.shape[:1] + tuple(self.image_shape), jnp.int32)

        def row(i, canvas):
            vs = net.apply(params, self._input(canvas.astype(features.dtype)), features,
                           method=net.v_stream)
            v_row = [jax.lax.dynamic_slice_in_dim(v, i, 1, axis=1) for v in vs]
            f_row = jax.lax.dynamic_slice_in_dim(features, i, 1, axis=1)

            def pixel(j, canvas):
                x_row = jax.lax.dynamic_slice_in_dim(canvas, i, 1, axis=1)
                out = net.apply(params, self._input(x_row.astype(features.dtype)), v_row,
                                f_row, method=net.h_stream)
                out_j = jax.lax.dynamic_index_in_dim(out[:, 0], j, axis=1, keepdims=False)
                value = dist.sample(self._split(out_j), self.pixel_key(key, i, j))
                return canvas.at[:, i, j].set(value.reshape(-1, channels))

            return jax.lax.fori_loop(0, width, pixel, canvas)

        return jax.lax.fori_loop(0, height, row, canvas).astype(jnp.uint8)
