"""VLAE (Chen et al. 2017): a VAE with a small-receptive-field PixelCNN decoder and an
autoregressive-flow prior, in two families (``model`` lists the role modules of each).

    model = vlae.build(config.model, (28, 28, 1), num_levels=2)
    parts = vlae.make_parts(config.model, (28, 28, 1), 2)   # the components themselves
    nll, elbo_k = vlae.iw_nll(parts, params, batch, key, num_samples=4096, chunk=64)
"""

from flowzoo.models.vlae.config import defaults, settings
from flowzoo.models.vlae.core import (Objective, VLAEParts, elbo_terms, free_bits_per_group,
                                     free_bits_total, iw_nll, kl_per_element)
from flowzoo.models.vlae.model import build, make_parts, objective

__all__ = ["Objective", "VLAEParts", "build", "defaults", "elbo_terms", "free_bits_per_group",
           "free_bits_total", "iw_nll", "kl_per_element", "make_parts", "objective", "settings"]
