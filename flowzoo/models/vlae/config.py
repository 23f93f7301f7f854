"""VLAE's model-config keys and their one validator.

``config.model`` holds the keys every VLAE reads (:data:`COMMON_DEFAULTS`) plus those of its
family: ``family='binary'`` (28x28 binary images: vector latent, MADE AF prior or IAF
posterior, masked PixelCNN decoder, hard free bits in nats; :data:`BINARY_DEFAULTS`) or
``family='cifar'`` (RGB images: spatial latent, PixelCNN AF prior, PixelCNN++ decoder, soft
free bits in bits/dim; :data:`CIFAR_DEFAULTS`).  :func:`settings` fills in the defaults and
rejects any other key with the nearest valid one, as the trainer's validator does.
"""

from __future__ import annotations

import difflib

from flowzoo.errors import ConfigError
from flowzoo.models import precision

COMMON_DEFAULTS = dict(
    name="vlae",
    family="binary",  # "binary" | "cifar" (module docstring)
    free_bits=0.01,  # nats per data dimension (lambda = free_bits * D for the whole latent)
    iw_samples=16,  # importance samples for the eval NLL (the papers: 4096 binary, 512 CIFAR)
    iw_chunk=4,  # samples per lax.scan step (memory of iw_chunk * eval batch)
    decompress_z="mean",  # reconstruct(): "mean" of q(z|x) base Gaussian, or "sample"
    # The encoder's, decoder's and likelihood network's arithmetic: "float32", or "bfloat16"
    # (float32 parameters and accumulation; priors, posterior flows, likelihood
    # distributions and the loss stay float32; flowzoo/models/precision.py).
    compute_dtype="float32",
)

BINARY_DEFAULTS = dict(
    # Hard free bits on the total KL ("total") or on each group of free_bits_group_size
    # latent elements at its share of the budget ("per_group", the IAF code's; core.py).
    free_bits_grouping="total", free_bits_group_size=1,
    channels=(16, 32, 32), blocks_between=1, hidden=450, latent=64, features=4,
    residual_scale=0.1, likelihood="pixelcnn", pixelcnn_layers=6, pixelcnn_filters=12,
    pixelcnn_share_weights=False, prior="af", prior_steps=4, prior_hidden=640,
    prior_layers=2, prior_mean_only=True, posterior="diag", posterior_steps=4,
    posterior_hidden=640, posterior_layers=2, posterior_mean_only=True, posterior_context=64)

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

FAMILY_DEFAULTS = {"binary": BINARY_DEFAULTS, "cifar": CIFAR_DEFAULTS}

CHOICES = {
    "common": dict(family=tuple(FAMILY_DEFAULTS), decompress_z=("mean", "sample")),
    "binary": dict(likelihood=("pixelcnn", "bernoulli"), prior=("af", "normal"),
                   posterior=("diag", "iaf"), free_bits_grouping=("total", "per_group")),
    "cifar": dict(block=("resnet", "densenet")),
}
_LENGTHS = {"cifar": dict(channels=3, blocks=3, growth=3, receptive_field=2)}


def defaults(family: str) -> dict:
    """Every key of a ``family`` config, with its default (presets fill config.model
    with these so command-line overrides work on a locked config)."""
    _check_choice("family", family, CHOICES["common"]["family"])
    return {**COMMON_DEFAULTS, **FAMILY_DEFAULTS[family], "family": family}


def _check_choice(key, value, choices):
    if value not in choices:
        raise ValueError(f"config.model.{key} must be one of {choices}, got {value!r}.")


def settings(model_config) -> dict:
    """Validated settings of a VLAE: its family's defaults updated by ``model_config`` (a
    ConfigDict or dict).  Unknown keys raise KeyError naming the nearest valid key."""
    given = dict(model_config)
    family = given.get("family", COMMON_DEFAULTS["family"])
    valid = defaults(family)
    for key in sorted(given):
        if key not in valid:
            near = difflib.get_close_matches(key, list(valid), n=1)
            hint = f" Did you mean 'model.{near[0]}'?" if near else ""
            other = [f for f, d in FAMILY_DEFAULTS.items() if f != family and key in d]
            if other:
                hint += f" ('{key}' is a key of family='{other[0]}'.)"
            raise KeyError(f"Unknown VLAE (family='{family}') config key 'model.{key}'.{hint} "
                           f"Valid keys: {sorted(valid)}")
    cfg = {**valid, **given}
    for key, choices in {**CHOICES["common"], **CHOICES[family]}.items():
        _check_choice(key, cfg[key], choices)
    for key, length in _LENGTHS.get(family, {}).items():
        if len(tuple(cfg[key])) != length:
            raise ValueError(f"config.model.{key} needs {length} values, got {cfg[key]!r}.")
    if int(cfg["iw_samples"]) < 1 or int(cfg["iw_chunk"]) < 1:
        raise ValueError(f"config.model.iw_samples and iw_chunk must be >= 1, got "
                         f"{cfg['iw_samples']} and {cfg['iw_chunk']}.")
    precision.check(cfg["compute_dtype"])
    if cfg["compute_dtype"] == "bfloat16_products":
        raise ConfigError("config.model.compute_dtype='bfloat16_products' is a Flow++ "
                          "option (its convolutions on a CPU); VLAE takes 'float32' or "
                          "'bfloat16'.")
    if float(cfg["free_bits"]) < 0:
        raise ValueError(f"config.model.free_bits must be >= 0, got {cfg['free_bits']}.")
    if family == "binary" and cfg["free_bits_grouping"] == "per_group":
        _check_groups(cfg)
    return cfg


def _check_groups(cfg):
    """Per-group free bits split the KL into per-element shares, defined for volume-
    preserving (mean-only) flows, and need groups that tile the latent."""
    size, latent = int(cfg["free_bits_group_size"]), int(cfg["latent"])
    if size < 1 or latent % size:
        raise ConfigError(f"config.model.free_bits_group_size={size} must divide "
                          f"config.model.latent={latent} (e.g. 1, the IAF code's one group "
                          f"per latent element).")
    for role, flow in (("prior", "af"), ("posterior", "iaf")):
        if cfg[role] == flow and not cfg[f"{role}_mean_only"]:
            raise ConfigError(
                f"free_bits_grouping='per_group' splits the KL per latent element, which "
                f"needs volume-preserving flows, but {role}={flow!r} has "
                f"{role}_mean_only=False; set --config.model.{role}_mean_only=True or "
                f"--config.model.free_bits_grouping=total.")
