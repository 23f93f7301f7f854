"""The vector-latent AF prior (and IAF posterior) family: MADE steps on (B, D) latents.

MADE (Germain et al. 2015), a Flax module: masked weight-normalised dense layers; input i
(1-based) has degree i, hidden units degrees ``1 + (k mod (D - 1))``, output i sees inputs of
degree < i only.  ReLU hidden units.  ``context`` (IAF posterior) enters the first hidden
layer through an unmasked dense layer, as in IAF.  Output: (B, P * D), the shift mu of every
dimension, then (unless ``mean_only``) its log-scale s.  The output layer starts at scale 0.1.

The flows are ``flows.alternating_flow`` of MADE steps: the AF prior (mean-only steps are
volume preserving, as in VLAE) and the IAF posterior.
"""

from __future__ import annotations

import flax.linen as nn
import numpy as np

from flowzoo.distributions import TransformedDistribution
from flowzoo.models.vlae.flows import GaussianPosterior, af_prior, alternating_flow
from flowzoo.models.vlae.layers import WNDense


def made_masks(dim: int, hidden: tuple, outputs_per_dim: int):
    """0/1 masks (numpy) for a MADE with natural input order: [(in, h1), ..., (hL, D*P)].

    Output column ``p * D + i`` is parameter p of dimension i (0-based) and sees inputs
    j < i only."""
    in_deg = np.arange(1, dim + 1)
    masks, prev = [], in_deg
    for h in hidden:
        deg = 1 + (np.arange(h) % max(dim - 1, 1))
        masks.append((deg[None, :] >= prev[:, None]).astype(np.float32))
        prev = deg
    out_deg = np.tile(in_deg, outputs_per_dim)
    masks.append((out_deg[None, :] > prev[:, None]).astype(np.float32))
    return masks


class MADE(nn.Module):
    """(..., D) [+ context (..., C)] -> (..., P * D): mu, then s unless ``mean_only``."""

    dim: int
    hidden: tuple = (640, 640)
    mean_only: bool = True
    out_init_scale: float = 0.1

    @nn.compact
    def __call__(self, x, context=None):
        if x.shape[-1] != self.dim:
            raise ValueError(f"MADE of dimension {self.dim} got input shape {x.shape}.")
        masks = made_masks(self.dim, tuple(self.hidden), 1 if self.mean_only else 2)
        h = x
        for i, (width, mask) in enumerate(zip(self.hidden, masks)):
            h = WNDense(width, init_scale=1.0, name=f"dense{i}")(h, mask)
            if i == 0 and context is not None:
                h = h + WNDense(width, init_scale=1.0, name="context")(context)
            h = nn.relu(h)
        return WNDense(masks[-1].shape[-1], init_scale=self.out_init_scale,
                       name=f"dense{len(self.hidden)}")(h, masks[-1])


def made_af_prior(dim: int, steps: int, hidden: tuple, mean_only: bool
                  ) -> TransformedDistribution:
    """AF prior on (B, dim): ``steps`` MADE steps, orders alternating."""
    return af_prior((dim,), alternating_flow(MADE(dim, tuple(hidden), mean_only), steps, 1,
                                             mean_only))


def made_iaf_posterior(dim: int, steps: int, hidden: tuple, mean_only: bool
                       ) -> GaussianPosterior:
    """Diagonal Gaussian then ``steps`` IAF steps (MADE with the encoder's context)."""
    return GaussianPosterior(1, alternating_flow(MADE(dim, tuple(hidden), mean_only), steps,
                                                 1, mean_only))

