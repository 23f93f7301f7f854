"""VLAE CIFAR-10 decoder likelihood: a conditional PixelCNN++ with an A x B receptive field.

p(x | features) = prod over pixels in raster order of a discretized logistic mixture whose
parameters come from a two-stream PixelCNN++ (Salimans et al. 2017) conditioned on the
decoded z features; RGB within a pixel is channel-autoregressive (the mixture's
``channel_coupled`` option: G depends on R, B on R and G).

Receptive field A x B (A columns, B rows): output (i, j) sees exactly

    rows i-B .. i-1, columns j-L .. j+R   (the block above)   and   (i, j-L) .. (i, j-1),

with L = ceil((A-1)/2), R = A-1-L (7x4: 3 left, 3 right, 4 rows above; 4x2: 2 left, 1 right).

How depth and kernels give A x B.  Every convolution covers an exact rectangle of offsets
(dy, dx) (``FootprintConv``: a WNConv of that kernel size on a shifted input, no masks):
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

import jax
import jax.numpy as jnp

from flowzoo.distributions import DiscretizedLogisticMixture
from flowzoo.models.vlae import layers
from flowzoo.models.vlae.layers import WNConv

GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def concat_elu(x):
    return jax.nn.elu(jnp.concatenate([x, -x], axis=-1))


@dataclasses.dataclass(frozen=True)
class FootprintConv:
    """A weight-normalised convolution whose kernel covers exactly the offsets dy in
    [dy0, dy1], dx in [dx0, dx1] of the output position (zero padding outside the image):
    explicit padding + VALID convolution.  Parameters and DDI as ``layers.WNConv``
    (``{'v', 'log_g', 'b'}``, moments over the real output positions only)."""

    features: int
    dy: tuple
    dx: tuple
    init_scale: float = 1.0

    def _conv(self, x, w):
        """out[i, j] = sum_ab w[a, b] x[i + dy0 + a, j + dx0 + b] (zero outside the image)."""
        height, width = x.shape[1], x.shape[2]
        lo_h, hi_h = max(-self.dy[0], 0), max(self.dy[1], 0)
        lo_w, hi_w = max(-self.dx[0], 0), max(self.dx[1], 0)
        x = jnp.pad(x, ((0, 0), (lo_h, hi_h), (lo_w, hi_w), (0, 0)))
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        oy, ox = lo_h + self.dy[0], lo_w + self.dx[0]  # y[p] starts at input row p - lo_h
        return y[:, oy:oy + height, ox:ox + width]

    def init(self, key, x):
        shape = (self.dy[1] - self.dy[0] + 1, self.dx[1] - self.dx[0] + 1, x.shape[-1],
                 self.features)
        v = layers.INIT_STD * jax.random.normal(key, shape, x.dtype)
        t = self._conv(x, v / jnp.sqrt(jnp.sum(jnp.square(v), axis=(0, 1, 2), keepdims=True)))
        return layers._ddi(t, v, (0, 1, 2), self.init_scale)

    def apply(self, params, x):
        return self._conv(x, layers._weight(params, None, (0, 1, 2))) + params["b"]


class _Run:
    """Runs a layer: DDI-initialises it (``params`` None) or applies stored params."""

    def __init__(self, params=None, key=None):
        self.initialising = params is None
        self.params = {} if params is None else params
        self.key, self.count = key, 0

    def __call__(self, name, layer, x):
        if not self.initialising:
            return layer.apply(self.params[name], x)
        p, y = layer.init(jax.random.fold_in(self.key, self.count), x)
        self.count += 1
        self.params[name] = p
        return y


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

    # ---- layers -------------------------------------------------------------------------

    def _v_dx(self, k):
        if k == 0:
            return (-min(self.left, 1), min(self.right, 1))
        return (-int(k <= self.left - 1), int(k <= self.right - 1))

    def _v_conv(self, k, features, init_scale=1.0):
        """The k-th convolution of the vertical stream (k = 0: the input conv)."""
        dy = (-1, -1) if k == 0 else (-int(k <= self.receptive_field[1] - 1), 0)
        return FootprintConv(features, dy, self._v_dx(k), init_scale)

    def _input(self, x):
        """Levels (B, H, W, C) -> network input: [-1, 1] image (or gray) + a ones channel."""
        x = jnp.asarray(x)
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
        x = x.astype(dtype) * (2.0 / (self.num_levels - 1)) - 1.0
        if self.grayscale:
            x = jnp.tensordot(x, jnp.asarray(GRAY_WEIGHTS, dtype), axes=[[-1], [0]])[..., None]
        return jnp.concatenate([x, jnp.ones(x.shape[:-1] + (1,), dtype)], axis=-1)

    def _gated(self, run, name, x, features, convs, a=None):
        f = self.filters
        c1 = run(f"{name}.conv1", convs[0], concat_elu(x))
        if a is not None:
            c1 = c1 + run(f"{name}.nin_v", WNConv(f, (1, 1)), concat_elu(a))
        c2 = run(f"{name}.conv2", convs[1], concat_elu(c1))
        c2 = c2 + run(f"{name}.nin_z", WNConv(2 * f, (1, 1), init_scale=0.1), features)
        gate_a, gate_b = jnp.split(c2, 2, axis=-1)
        return x + gate_a * jax.nn.sigmoid(gate_b)

    def _v_stream(self, run, x_in, features):
        """[v_0, v_1 .. v_blocks], each (B, H, W, filters); v sees rows above only."""
        f = self.filters
        v = run("v0", self._v_conv(0, f), x_in)
        vs = [v]
        for t in range(self.blocks):
            convs = (self._v_conv(2 * t + 1, f),
                     self._v_conv(2 * t + 2, 2 * f, init_scale=0.1))
            v = self._gated(run, f"v{t + 1}", v, features, convs)
            vs.append(v)
        return vs

    def _h_stream(self, run, x_in, vs, features):
        """Raw mixture parameters (B, H, W, num_outputs) from the h stream."""
        f = self.filters
        h = run("h0", FootprintConv(f, (0, 0), (-self.left, -1)), x_in)
        for t in range(self.blocks):
            convs = (WNConv(f, (1, 1)), WNConv(2 * f, (1, 1), init_scale=0.1))
            h = self._gated(run, f"h{t + 1}", h, features, convs, a=vs[t + 1])
        return run("out", WNConv(self.num_outputs, (1, 1), init_scale=0.1), jax.nn.elu(h))

    def _forward(self, run, x, features):
        x_in = self._input(jnp.asarray(x).astype(features.dtype))
        return self._h_stream(run, x_in, self._v_stream(run, x_in, features), features)

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
        run = _Run(key=key)
        self._forward(run, x, features)
        return run.params

    def network(self, params, x, features):
        """Raw per-pixel outputs (B, H, W, num_outputs); x levels, int or float."""
        return self._forward(_Run(params), x, features)

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
        run, dist = _Run(params), self.distribution
        height, width, channels = self.image_shape
        canvas = jnp.zeros(features.shape[:1] + tuple(self.image_shape), jnp.int32)

        def row(i, canvas):
            vs = self._v_stream(run, self._input(canvas.astype(features.dtype)), features)
            v_row = [jax.lax.dynamic_slice_in_dim(v, i, 1, axis=1) for v in vs]
            f_row = jax.lax.dynamic_slice_in_dim(features, i, 1, axis=1)

            def pixel(j, canvas):
                x_row = jax.lax.dynamic_slice_in_dim(canvas, i, 1, axis=1)
                out = self._h_stream(run, self._input(x_row.astype(features.dtype)), v_row,
                                     f_row)
                out_j = jax.lax.dynamic_index_in_dim(out[:, 0], j, axis=1, keepdims=False)
                value = dist.sample(self._split(out_j), self.pixel_key(key, i, j))
                return canvas.at[:, i, j].set(value.reshape(-1, channels))

            return jax.lax.fori_loop(0, width, pixel, canvas)

        return jax.lax.fori_loop(0, height, row, canvas).astype(jnp.uint8)
