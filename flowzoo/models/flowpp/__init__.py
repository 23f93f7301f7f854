"""Flow++ (Ho et al. 2019): variational dequantization, logistic-mixture CDF couplings and
gated-attention conditioners.  ``build`` is the trainer's entry point; ``make_flow``,
``encode`` and ``decode`` let users map images to latents and back:

    flow = flowpp.make_flow(config.model, (32, 32, 3), 256)
    z = flowpp.encode(flow, params, images)        # uint8 (B, H, W, C) -> (B, H/2, W/2, 4C)
    images = flowpp.decode(flow, params, z)        # -> uint8 levels

``official_params`` converts a checkpoint of the authors' TensorFlow code (``official.py``).
"""

from flowzoo.models.flowpp.model import (FlowPP, build, decode, decode_dequantized, encode,
                                         iw_log_likelihood, make_flow, official_params,
                                         round_trip_errors, template_params)
from flowzoo.models.flowpp.official import latents_from_official, latents_to_official

__all__ = ["FlowPP", "build", "decode", "decode_dequantized", "encode", "iw_log_likelihood",
           "latents_from_official", "latents_to_official", "make_flow", "official_params",
           "round_trip_errors", "template_params"]
