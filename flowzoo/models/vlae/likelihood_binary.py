"""The binary-image likelihoods p(x | z): the masked PixelCNN decoder, and the factorized
Bernoulli decoder (its networks are Flax modules; log-probs from ``distributions.Bernoulli``).

Input: the decoder features (B, H, W, F) concatenated with the scaled image (B, H, W, 1)
(-> F + 1 = 5 channels for F = 4).  Network (ELU throughout, WN convs with DDI):

    h = MaskedConv3x3_A(12)([features, x])                      masked layer 1
    for j in 2..L:  h = h + r * MaskedConv3x3_B(12)(elu(h))      masked layers 2..L
                    (after masked layers 2..L-1) h = h + r * Conv1x1(12)(elu(h))
    logits = Conv1x1(1)(elu(h));   p(x | z) = prod_pixels Bernoulli(sigmoid(logits))

L = ``layers`` (the reference: 6) sets the receptive field; r = 0.1 as in the IAF ResNets;
``share_weights`` ties the B layers (static MNIST in the paper).  The reference's "4 extra
1x1 ResNet blocks between every other masked layer" does not fit 6 layers literally; one 1x1
block after each masked layer except the first and the last gives exactly 4 for L = 6.
The first layer's mask hides the current pixel of the image channel only (type A); the
feature channels are a function of z, not of x, so they are seen at the current pixel too.

Receptive field: the pixels before the current one (raster order) within L rows above and L
columns either side, with PixelCNN's blind spot; :func:`receptive_field` computes the exact
set and the tests compare it with gradients.

Ancestral sampling is one compiled ``lax.fori_loop`` over the H*W pixels with the whole
batch in parallel.  Each pass runs the network only on a band of L + 1 rows ending at the
current row (exact: a band's top rows are wrong by at most one row per 3x3 layer, and the
band is clamped to the image top where SAME padding matches): a quarter of the work of full
passes for L = 6 on 28x28 (7 rows of 28; ``sample_img_s`` of experiments/benchmarks/vlae.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowzoo.distributions import Bernoulli
from flowzoo.models import precision
from flowzoo.models.vlae.layers import WNConv

elu = jax.nn.elu
_PIXELS = Bernoulli(event_ndims=3)


def conv_mask(kernel: int, in_channels: int, out_channels: int, mask_type: str,
              centre_channels: int = 0):
    """(k, k, I, O) raster-order mask: rows above and pixels to the left; the centre only
    for type 'B' (or for input channels ``>= I - centre_channels`` with type 'A')."""
    m = np.zeros((kernel, kernel, in_channels, out_channels), np.float32)
    c = kernel // 2
    m[:c] = 1.0
    m[c, :c] = 1.0
    if mask_type == "B":
        m[c, c] = 1.0
    elif centre_channels:
        m[c, c, in_channels - centre_channels:] = 1.0
    return m


def receptive_field(layers: int, height: int, width: int, row: int, col: int):
    """The (height, width) bool set of image pixels that logit (row, col) depends on, for a
    PixelCNN with one 3x3 type-A layer and ``layers - 1`` 3x3 type-B (residual) layers."""
    dep = np.zeros((height + 2, width + 2), bool)  # padded by one on each side
    dep[row + 1, col + 1] = True
    offsets_b = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 0)]
    for offsets in [offsets_b] * (layers - 1) + [offsets_b[:-1]]:
        new = np.zeros_like(dep)
        for r, c in zip(*np.nonzero(dep)):
            for dr, dc in offsets:
                if 0 <= r + dr - 1 < height and 0 <= c + dc - 1 < width:
                    new[r + dr, c + dc] = True
        dep = new
    return dep[1:-1, 1:-1]


class PixelCNNNet(nn.Module):
    """The masked PixelCNN: ([image, features]) -> (B, H, W, 1) logits (module docstring).
    Parameters ``first``, ``masked{j}`` (``masked`` when shared), ``pointwise{j}``, ``out``.
    ``dtype``: None, or the narrow dtype it computes in (``precision``); the logits come
    from the last layer's float32 accumulator in the features' dtype either way."""

    feature_channels: int = 4
    layers: int = 6
    filters: int = 12
    share_weights: bool = False
    residual_scale: float = 0.1
    dtype: Any = None

    @nn.compact
    def __call__(self, x, features):
        if features.shape[-1] != self.feature_channels or x.shape[-1] != 1:
            raise ValueError(f"MaskedPixelCNN expects x (B, H, W, 1) and features (B, H, W, "
                             f"{self.feature_channels}); got {x.shape} and {features.shape}.")
        f = self.filters
        # Image first, then features: the type-A mask unmasks the centre of the last F.
        inputs = jnp.concatenate([2.0 * x.astype(features.dtype) - 1.0, features], axis=-1)
        inputs = precision.cast(inputs, self.dtype)
        mask_a = conv_mask(3, self.feature_channels + 1, f, "A",
                           centre_channels=self.feature_channels)
        h = WNConv(f, (3, 3), init_scale=1.0, name="first")(inputs, mask_a)
        mask_b = conv_mask(3, f, f, "B")
        shared = WNConv(f, (3, 3), name="masked") if self.share_weights else None
        for j in range(1, self.layers):
            masked = shared if shared is not None else WNConv(f, (3, 3), name=f"masked{j}")
            h = h + self.residual_scale * masked(elu(h), mask_b)
            if j < self.layers - 1:
                h = h + self.residual_scale * WNConv(f, (1, 1), name=f"pointwise{j}")(elu(h))
        return WNConv(1, (1, 1), out_dtype=features.dtype, name="out")(elu(h))


@dataclasses.dataclass(frozen=True)
class MaskedPixelCNN:
    """Likelihood p(x | features) for binary images (x uint8 levels in {0, 1})."""

    feature_channels: int = 4
    layers: int = 6
    filters: int = 12
    share_weights: bool = False
    residual_scale: float = 0.1
    band_sampling: bool = True
    dtype: Any = None  # the network's (``PixelCNNNet``); the Bernoulli stays float32

    def __post_init__(self):
        if self.layers < 1:
            raise ValueError(f"MaskedPixelCNN needs layers >= 1 (config.model.pixelcnn_layers)"
                             f", got {self.layers}.")

    @property
    def net(self) -> PixelCNNNet:
        return PixelCNNNet(self.feature_channels, self.layers, self.filters,
                           self.share_weights, self.residual_scale, self.dtype)

    def init(self, key, x, features):
        return self.net.init(key, x, features)

    def logits(self, params, x, features):
        """(B, H, W, 1) logits of p(x_i = 1 | x_<i, features)."""
        return self.net.apply(params, x, features)

    def log_prob(self, params, x, features):
        return _PIXELS.log_prob({"logits": self.logits(params, x, features)}, x)

    def sample(self, params, key, features):
        b, height, width, _ = features.shape
        noise = jax.random.logistic(key, (b, height, width, 1), features.dtype)
        band = self.layers + 1
        use_band = self.band_sampling and band < height

        def body(i, x):
            r, c = i // width, i % width
            if use_band:
                r0 = jnp.clip(r - self.layers, 0, height - band)
                xb = jax.lax.dynamic_slice_in_dim(x, r0, band, axis=1)
                fb = jax.lax.dynamic_slice_in_dim(features, r0, band, axis=1)
                logit = self.logits(params, xb, fb)[:, r - r0, c, 0]
            else:
                logit = self.logits(params, x, features)[:, r, c, 0]
            bit = (noise[:, r, c, 0] < logit).astype(x.dtype)
            return x.at[:, r, c, 0].set(bit)

        x0 = jnp.zeros((b, height, width, 1), jnp.uint8)
        return jax.lax.fori_loop(0, height * width, body, x0)


@dataclasses.dataclass(frozen=True)
class FactorizedBernoulli:
    """p(x | features) = prod Bernoulli(sigmoid(Conv1x1(features))): no autoregression."""

    channels: int = 1

    @property
    def net(self) -> WNConv:
        return WNConv(self.channels, (1, 1))

    def init(self, key, x, features):
        del x
        return self.net.init(key, features)

    def log_prob(self, params, x, features):
        return _PIXELS.log_prob({"logits": self.net.apply(params, features)}, x)

    def sample(self, params, key, features):
        logits = self.net.apply(params, features)
        return (jax.random.logistic(key, logits.shape, logits.dtype) < logits).astype(jnp.uint8)
