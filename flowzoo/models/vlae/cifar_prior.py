"""The VLAE CIFAR-10 AF prior on an (h, w, c) latent (8x8x16).

Each AF step is a masked PixelCNN that is autoregressive over the flattened (row, column,
channel) order of the latent: output element (i, j, c) sees every channel of the positions
before (i, j) in raster order that the kernel covers, and channels c' < c at (i, j) itself.
Masks (on ``layers.WNConv`` kernels, SAME padding, ``kernel`` x ``kernel``):

* kernel positions below the centre row, and right of the centre in the centre row: 0;
* positions above, or left of the centre in the centre row: 1 for every channel pair;
* the centre: degree rule.  Inputs have degree c (their channel), hidden maps degree
  ``k * C // hidden`` (blocks of equal size, 0 .. C-1), outputs degree c.  input -> hidden:
  d_in <= d_hid; hidden -> hidden: d_in <= d_out; hidden -> output: d_in < d_out.

So each output depends on exactly the strictly earlier elements (tested by gradients).
Step: ``hidden`` = (128, 128) maps, ELU, output conv (init scale 0.1) giving the shift mu
(and a log-scale s when ``mean_only`` is False).  Density direction, u_0 = z:

    u_{k+1} = (u_k - mu_k(u_k)) * exp(-s_k(u_k)),   log p(z) = log N(u_K; 0, I) - sum s

Steps with odd k work on the reversed order (the latent flipped on all three axes).  The flow,
its log-det and its ``h*w*c``-pass exact inverse are ``autoregressive.AutoregressiveFlowPrior``.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from flowzoo.models.vlae.autoregressive import AutoregressiveFlowPrior
from flowzoo.models.vlae.layers import WNConv

def pixelcnn_mask(kernel: int, in_deg, out_deg, strict: bool):
    """(kernel, kernel, I, O) 0/1 mask: raster-order past fully, centre by degrees."""
    in_deg, out_deg = np.asarray(in_deg), np.asarray(out_deg)
    mask = np.zeros((kernel, kernel, in_deg.size, out_deg.size), np.float32)
    mid = kernel // 2
    mask[:mid] = 1.0
    mask[mid, :mid] = 1.0
    centre = in_deg[:, None] < out_deg[None, :] if strict else in_deg[:, None] <= out_deg[None, :]
    mask[mid, mid] = centre
    return mask


@dataclasses.dataclass(frozen=True)
class PixelCNNStep:
    """One AF step's network: (B, h, w, C) -> (mu, s or None), autoregressive in raster order."""

    channels: int
    hidden: tuple = (128, 128)
    kernel: int = 3
    mean_only: bool = True
    out_init_scale: float = 0.1

    def _layers(self):
        c = self.channels
        degrees = [np.arange(c)] + [np.arange(h) * c // h for h in self.hidden]
        outs = 1 if self.mean_only else 2
        out_deg = np.tile(np.arange(c), outs)
        layers = []
        for i, h in enumerate(self.hidden):
            mask = pixelcnn_mask(self.kernel, degrees[i], degrees[i + 1], strict=False)
            layers.append(WNConv(h, (self.kernel,) * 2, init_scale=1.0, mask=mask))
        mask = pixelcnn_mask(self.kernel, degrees[-1], out_deg, strict=True)
        layers.append(WNConv(c * outs, (self.kernel,) * 2, init_scale=self.out_init_scale,
                             mask=mask))
        return layers

    def _split(self, out):
        if self.mean_only:
            return out, None
        return out[..., :self.channels], out[..., self.channels:]

    def init(self, key, u):
        params, h = [], u
        layers = self._layers()
        for i, layer in enumerate(layers):
            p, h = layer.init(jax.random.fold_in(key, i), h)
            params.append(p)
            if i < len(layers) - 1:
                h = jax.nn.elu(h)
        return params

    def apply(self, params, u):
        h = u
        layers = self._layers()
        for i, (layer, p) in enumerate(zip(layers, params)):
            h = layer.apply(p, h)
            if i < len(layers) - 1:
                h = jax.nn.elu(h)
        return self._split(h)


@dataclasses.dataclass(frozen=True)
class CifarAFPrior(AutoregressiveFlowPrior):
    """AF prior on (B, *latent_shape) latents, ``steps`` PixelCNN steps (module docstring)."""

    latent_shape: tuple = (8, 8, 16)
    steps: int = 6
    hidden: tuple = (128, 128)
    kernel: int = 3
    mean_only: bool = True

    def __post_init__(self):
        if len(self.latent_shape) != 3:
            raise ValueError(f"CifarAFPrior: latent_shape must be (h, w, c), got "
                             f"{self.latent_shape}.")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"CifarAFPrior: kernel must be odd, got {self.kernel}.")

    @property
    def event_shape(self):
        return tuple(self.latent_shape)

    @property
    def net(self):
        return PixelCNNStep(self.latent_shape[-1], tuple(self.hidden), self.kernel,
                            self.mean_only)
