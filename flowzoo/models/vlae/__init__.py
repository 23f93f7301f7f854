"""VLAE (Chen et al. 2017): a VAE with a small-receptive-field PixelCNN decoder and an
autoregressive-flow prior.  Components follow the interface in ``parts.py``; ``model.build``
assembles them into a trainer Model:

    model = vlae.build(config.model, (28, 28, 1), num_levels=2)
    parts = vlae.make_parts(config.model, (28, 28, 1), 2)   # the components themselves
    nll, elbo_k = vlae.iw_nll(parts, params, batch, key, num_samples=4096, chunk=64)
"""

from flowzoo.models.vlae.model import build, iw_nll, make_parts
from flowzoo.models.vlae.parts import ASSEMBLY_DEFAULTS, VLAEParts

__all__ = ["ASSEMBLY_DEFAULTS", "VLAEParts", "build", "iw_nll", "make_parts"]
