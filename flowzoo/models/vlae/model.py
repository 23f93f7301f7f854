"""VLAE (Chen et al. 2017): the registry's entry point, ``build(config.model, image_shape,
num_levels) -> Model``, and the two families' assembly from their role modules:

===========  =================================  ======================================
role         family='binary' (28x28 binary)     family='cifar' (RGB)
===========  =================================  ======================================
backbone     ``backbone_vector`` (ResNet VAE,   ``backbone_spatial`` (ResNet/DenseNet,
             vector latent)                     (H/4, W/4, c) latent)
likelihood   ``likelihood_binary`` (masked      ``likelihood_pixelcnnpp`` (PixelCNN++,
             PixelCNN, or factorized)           discretized logistic mixture)
prior        ``prior_made`` (MADE AF) or N(0,I) ``prior_pixelcnn`` (PixelCNN AF)
posterior    diagonal Gaussian, or MADE IAF     diagonal Gaussian
free bits    hard, loss in nats                 soft, loss in bits/dim
===========  =================================  ======================================

The shared core (ELBO, free bits, IW NLL, sampling, decompressions, metrics) is ``core``; the
config keys and their validator are ``config``.
"""

from __future__ import annotations

import jax.numpy as jnp

from flowzoo.distributions import StandardNormal
from flowzoo.models import precision
from flowzoo.models.vlae import config
from flowzoo.models.vlae.backbone_spatial import CifarDecoder, CifarEncoder
from flowzoo.models.vlae.backbone_vector import ResNetDecoder, ResNetEncoder
from flowzoo.models.vlae.core import Objective, VLAEParts, build_model
from flowzoo.models.vlae.flows import GaussianPosterior
from flowzoo.models.vlae.likelihood_binary import FactorizedBernoulli, MaskedPixelCNN
from flowzoo.models.vlae.likelihood_pixelcnnpp import CifarPixelCNNpp
from flowzoo.models.vlae.prior_made import made_af_prior, made_iaf_posterior
from flowzoo.models.vlae.prior_pixelcnn import pixelcnn_af_prior
from flowzoo.model import Model


def level_scale(num_levels):
    """uint8 levels -> float32 in [-1, 1] (the encoder input; binary: {0, 1} -> {-1, 1})."""
    top = float(num_levels - 1)
    return lambda x: x.astype(jnp.float32) * (2.0 / top) - 1.0


def _hidden(c, prefix):
    return (int(c[f"{prefix}_hidden"]),) * int(c[f"{prefix}_layers"])


def binary_parts(c, image_shape, num_levels) -> VLAEParts:
    """The binary-image VLAE of the paper (28x28 static/dynamic MNIST, OMNIGLOT, Caltech)."""
    if num_levels != 2:
        raise ValueError(f"The binary VLAE needs binary images (2 levels), got {num_levels} "
                         f"levels: use data.name='binarized_mnist' or set "
                         f"config.data.binarization='static' or 'dynamic'.")
    if len(image_shape) != 3 or image_shape[-1] != 1:
        raise ValueError(f"The binary VLAE expects (H, W, 1) images, got {image_shape}.")
    iaf = c["posterior"] == "iaf"
    latent = int(c["latent"])
    channels = tuple(int(ch) for ch in c["channels"])
    res = float(c["residual_scale"])
    dtype = precision.network_dtype(c["compute_dtype"])
    shared = dict(image_shape=image_shape, channels=channels, residual_scale=res,
                  blocks_between=int(c["blocks_between"]), hidden=int(c["hidden"]), dtype=dtype)
    encoder = ResNetEncoder(**shared, latent=latent,
                            context_dim=int(c["posterior_context"]) if iaf else 0)
    decoder = ResNetDecoder(**shared, features=int(c["features"]))
    if c["likelihood"] == "pixelcnn":
        likelihood = MaskedPixelCNN(int(c["features"]), int(c["pixelcnn_layers"]),
                                    int(c["pixelcnn_filters"]),
                                    bool(c["pixelcnn_share_weights"]), res, dtype=dtype)
    else:
        likelihood = FactorizedBernoulli(1)
    if c["prior"] == "af":
        prior = made_af_prior(latent, int(c["prior_steps"]), _hidden(c, "prior"),
                              bool(c["prior_mean_only"]))
    else:
        prior = StandardNormal((latent,))
    if iaf:
        posterior = made_iaf_posterior(latent, int(c["posterior_steps"]),
                                       _hidden(c, "posterior"), bool(c["posterior_mean_only"]))
    else:
        posterior = GaussianPosterior(1)
    return VLAEParts(encoder, decoder, likelihood, prior, posterior, (latent,),
                     level_scale(num_levels))


def cifar_parts(c, image_shape, num_levels) -> VLAEParts:
    """The CIFAR-10 VLAE for ``image_shape`` (H, W, 3), H and W multiples of 4."""
    if len(image_shape) != 3 or image_shape[-1] != 3:
        raise ValueError(f"The CIFAR VLAE expects RGB images (H, W, 3), got {image_shape}; "
                         f"use family='binary' for binary images.")
    if num_levels < 2:
        raise ValueError(f"num_levels must be >= 2, got {num_levels}.")
    ints = {k: tuple(int(v) for v in c[k]) for k in ("channels", "blocks", "growth")}
    res = float(c["residual_scale"])
    dtype = precision.network_dtype(c["compute_dtype"])
    encoder = CifarEncoder(image_shape, int(c["latent_channels"]), ints["channels"],
                           ints["blocks"], c["block"], ints["growth"], res, dtype)
    decoder = CifarDecoder(ints["channels"], ints["blocks"], c["block"], ints["growth"], res,
                           dtype)
    latent_shape = (image_shape[0] // 4, image_shape[1] // 4, int(c["latent_channels"]))
    prior = pixelcnn_af_prior(latent_shape, int(c["prior_steps"]), _hidden(c, "prior"),
                              int(c["prior_kernel"]), bool(c["prior_mean_only"]))
    likelihood = CifarPixelCNNpp(image_shape, int(num_levels),
                                 tuple(int(v) for v in c["receptive_field"]),
                                 int(c["pixelcnn_filters"]), int(c["pixelcnn_blocks"]),
                                 int(c["num_mixtures"]), bool(c["grayscale"]),
                                 bool(c["channel_coupled"]), dtype)
    return VLAEParts(encoder, decoder, likelihood, prior, GaussianPosterior(3), latent_shape,
                     level_scale(num_levels))


_FAMILIES = {"binary": binary_parts, "cifar": cifar_parts}


def make_parts(model_config, image_shape, num_levels) -> VLAEParts:
    """The components of the VLAE that ``model_config`` describes (validated)."""
    c = config.settings(model_config)
    return _FAMILIES[c["family"]](c, tuple(int(s) for s in image_shape), int(num_levels))


def objective(model_config) -> Objective:
    """The assembly settings of ``model_config``: soft free bits for the CIFAR family."""
    c = config.settings(model_config)
    soft = c["family"] == "cifar"
    schedule = {k: float(c[k]) for k in ("kl_weight_step", "kl_weight_tolerance",
                                         "kl_weight_min")} if soft else {}
    grouping = {} if soft else dict(free_bits_grouping=c["free_bits_grouping"],
                                    free_bits_group_size=int(c["free_bits_group_size"]))
    return Objective(float(c["free_bits"]), int(c["iw_samples"]), int(c["iw_chunk"]),
                     c["decompress_z"], soft, **schedule, **grouping)


def build(model_config, image_shape, num_levels) -> Model:
    """The registry's entry point (config.model.name='vlae')."""
    image_shape = tuple(int(s) for s in image_shape)
    return build_model(make_parts(model_config, image_shape, num_levels),
                       objective(model_config), image_shape)

