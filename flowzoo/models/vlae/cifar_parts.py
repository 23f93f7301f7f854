"""The VLAE CIFAR-10 family: ``cifar_parts(cfg, image_shape, num_levels) -> VLAEParts``.

Components (Chen et al. 2017, CIFAR-10 section):
* encoder / decoder: ``cifar_nets`` (ResNet, or DenseNet with ``block='densenet'``);
* prior: ``cifar_prior.CifarAFPrior``, 6 mean-only PixelCNN AF steps on the 8x8x16 latent;
* posterior: a diagonal Gaussian (``autoregressive.DiagonalPosterior``);
* likelihood: ``cifar_pixelcnnpp.CifarPixelCNNpp``, receptive field ``receptive_field``
  (A, B) in {(4, 2), (5, 3), (7, 4)}, optionally ``grayscale``.

``cfg`` is ``config.model`` (a ConfigDict or dict): the assembly keys
(``parts.ASSEMBLY_DEFAULTS``) plus :data:`CIFAR_DEFAULTS`; any other key is an error naming
the nearest valid one.
"""

from __future__ import annotations

import difflib

import jax.numpy as jnp

from flowzoo.models.vlae.cifar_nets import CifarDecoder, CifarEncoder
from flowzoo.models.vlae.cifar_pixelcnnpp import CifarPixelCNNpp
from flowzoo.models.vlae.autoregressive import DiagonalPosterior
from flowzoo.models.vlae.cifar_prior import CifarAFPrior
from flowzoo.models.vlae.parts import ASSEMBLY_DEFAULTS, VLAEParts

CIFAR_DEFAULTS = dict(
    latent_channels=16,  # latent (H/4, W/4, 16): 8x8x16 on CIFAR-10
    channels=(48, 96, 96),  # encoder/decoder widths at 32x32, 16x16, 8x8
    blocks=(2, 2, 3),  # ResNet blocks per stage
    block="resnet",  # "resnet" | "densenet" (each group -> one 3-step DenseNet block)
    growth=(24, 48, 48),  # DenseNet growth rate per stage (our choice; not in the paper)
    residual_scale=0.1,
    prior_steps=6,
    prior_hidden=128,
    prior_layers=2,
    prior_kernel=3,  # masked PixelCNN kernel of the AF prior (our choice)
    prior_mean_only=True,
    receptive_field=(7, 4),  # (A columns, B rows above) of the PixelCNN++ decoder
    grayscale=False,  # the decoder sees 0.299 R + 0.587 G + 0.114 B only
    pixelcnn_filters=64,
    pixelcnn_blocks=4,
    num_mixtures=10,  # discretized logistic mixture components (PixelCNN++'s 10)
    channel_coupled=True,  # RGB channel-autoregressive within a pixel
    kl_weight_step=0.1,  # soft free bits: gamma moves by 10% steps
    kl_weight_tolerance=0.05,  # ... up once KL > (1 + tolerance) * lambda
    kl_weight_min=1e-4,  # floor so gamma can always come back up
)
_CHOICES = dict(block=("resnet", "densenet"))


def cifar_config(cfg) -> dict:
    """Validated settings: assembly defaults + CIFAR defaults + the given keys."""
    given = dict(cfg)
    valid = {**ASSEMBLY_DEFAULTS, **CIFAR_DEFAULTS}
    for key in sorted(given):
        if key not in valid:
            near = difflib.get_close_matches(key, list(valid), n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise KeyError(f"Unknown VLAE (cifar) config key 'model.{key}'.{hint} Valid keys: "
                           f"{sorted(valid)}")
    c = {**valid, **given}
    for key, choices in _CHOICES.items():
        if c[key] not in choices:
            raise ValueError(f"config.model.{key} must be one of {choices}, got {c[key]!r}.")
    for key in ("channels", "blocks", "growth"):
        if len(tuple(c[key])) != 3:
            raise ValueError(f"config.model.{key} needs 3 values (one per resolution), got "
                             f"{c[key]!r}.")
    rf = tuple(c["receptive_field"])
    if len(rf) != 2:
        raise ValueError(f"config.model.receptive_field must be (A, B), e.g. (7, 4), got "
                         f"{c['receptive_field']!r}.")
    return c


def cifar_scale(num_levels):
    """uint8 levels -> float32 in [-1, 1] (the encoder input)."""
    top = float(num_levels - 1)
    return lambda x: x.astype(jnp.float32) * (2.0 / top) - 1.0


def cifar_parts(cfg, image_shape, num_levels) -> VLAEParts:
    """The CIFAR-10 VLAE components for ``image_shape`` (H, W, 3), H and W multiples of 4."""
    c = cifar_config(cfg)
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3 or image_shape[-1] != 3:
        raise ValueError(f"The CIFAR VLAE expects RGB images (H, W, 3), got {image_shape}; "
                         f"use family='binary' for binary images.")
    if num_levels < 2:
        raise ValueError(f"num_levels must be >= 2, got {num_levels}.")
    ints = {k: tuple(int(v) for v in c[k]) for k in ("channels", "blocks", "growth")}
    res = float(c["residual_scale"])
    encoder = CifarEncoder(image_shape, int(c["latent_channels"]), ints["channels"],
                           ints["blocks"], c["block"], ints["growth"], res)
    decoder = CifarDecoder(ints["channels"], ints["blocks"], c["block"], ints["growth"], res)
    latent_shape = (image_shape[0] // 4, image_shape[1] // 4, int(c["latent_channels"]))
    prior = CifarAFPrior(latent_shape, int(c["prior_steps"]),
                         (int(c["prior_hidden"]),) * int(c["prior_layers"]),
                         int(c["prior_kernel"]), bool(c["prior_mean_only"]))
    likelihood = CifarPixelCNNpp(image_shape, int(num_levels),
                                 tuple(int(v) for v in c["receptive_field"]),
                                 int(c["pixelcnn_filters"]), int(c["pixelcnn_blocks"]),
                                 int(c["num_mixtures"]), bool(c["grayscale"]),
                                 bool(c["channel_coupled"]))
    return VLAEParts(encoder, decoder, likelihood, prior, DiagonalPosterior(), latent_shape,
                     cifar_scale(num_levels))
