"""The spatial-latent AF prior family: masked PixelCNN steps on an (h, w, c) latent (8x8x16
on CIFAR-10).

Each step's conditioner (:class:`PixelCNNStep`, a Flax module) is autoregressive over the
flattened (row, column, channel) order of the latent: output element (i, j, c) sees every
channel of the positions before (i, j) in raster order that the kernel covers, and channels
c' < c at (i, j) itself.  Masks (on ``layers.WNConv`` kernels, SAME padding, ``kernel`` x
``kernel``):

* kernel positions below the centre row, and right of the centre in the centre row: 0;
* positions above, or left of the centre in the centre row: 1 for every channel pair;
* the centre: degree rule.  Inputs have degree c (their channel), hidden maps degree
  ``k * C // hidden`` (blocks of equal size, 0 .. C-1), outputs degree c.  input -> hidden:
  d_in <= d_hid; hidden -> hidden: d_in <= d_out; hidden -> output: d_in < d_out.

So each output depends on exactly the strictly earlier elements (tested by gradients).
Step: ``hidden`` = (128, 128) maps, ELU, output conv (init scale 0.1) giving the shift mu
(and a log-scale s when ``mean_only`` is False).  The flow, with orders alternating (odd
steps flip the latent on all three axes), is ``flows.alternating_flow`` of these steps.
"""

from __future__ import annotations

import flax.linen as nn
import numpy as np

from flowzoo.distributions import TransformedDistribution
from flowzoo.models.vlae.flows import af_prior, alternating_flow
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


class PixelCNNStep(nn.Module):
    """One AF step's conditioner: (..., h, w, C) -> (..., h, w, P * C), mu then s (unless
    ``mean_only``), autoregressive in raster order."""

    channels: int
    hidden: tuple = (128, 128)
    kernel: int = 3
    mean_only: bool = True
    out_init_scale: float = 0.1

    def masks(self):
        """The layers' masks, input to output."""
        c = self.channels
        degrees = [np.arange(c)] + [np.arange(h) * c // h for h in self.hidden]
        out_deg = np.tile(np.arange(c), 1 if self.mean_only else 2)
        masks = [pixelcnn_mask(self.kernel, degrees[i], degrees[i + 1], strict=False)
                 for i in range(len(self.hidden))]
        return masks + [pixelcnn_mask(self.kernel, degrees[-1], out_deg, strict=True)]

    @nn.compact
    def __call__(self, u):
        if u.shape[-1] != self.channels:
            raise ValueError(f"PixelCNNStep of {self.channels} channels got input shape "
                             f"{u.shape}.")
        masks, kernel = self.masks(), (self.kernel, self.kernel)
        h = u
        for i, (width, mask) in enumerate(zip(self.hidden, masks)):
            h = nn.elu(WNConv(width, kernel, init_scale=1.0, name=f"conv{i}")(h, mask))
        return WNConv(masks[-1].shape[-1], kernel, init_scale=self.out_init_scale,
                      name=f"conv{len(self.hidden)}")(h, masks[-1])


def pixelcnn_af_prior(latent_shape: tuple, steps: int, hidden: tuple, kernel: int,
                      mean_only: bool) -> TransformedDistribution:
    """AF prior on (B, h, w, c) latents: ``steps`` PixelCNN steps, orders alternating."""
    latent_shape = tuple(int(s) for s in latent_shape)
    if len(latent_shape) != 3:
        raise ValueError(f"The PixelCNN AF prior needs an (h, w, c) latent, got "
                         f"{latent_shape}.")
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"The PixelCNN AF prior's kernel must be odd "
                         f"(config.model.prior_kernel), got {kernel}.")
    step = PixelCNNStep(latent_shape[-1], tuple(int(h) for h in hidden), int(kernel),
                        bool(mean_only))
    return af_prior(latent_shape, alternating_flow(step, steps, 3, mean_only))
