"""The VLAE component interface shared by the binary-image and CIFAR-10 models.

A VLAE (Chen et al. 2017) is assembled from five small components, each a frozen dataclass
holding static configuration, with explicit parameter pytrees and pure methods.  ``init``
methods take a real batch so weight-normalisation data-dependent init sees real activations.
Shapes: B batch, (H, W, C) image, F decoder feature channels, ``latent_shape`` per example.

Encoder          init(key, x) -> params
                 apply(params, x) -> (mean, log_std, context)
                     x float (B, H, W, C) as ``x_scale`` makes it; mean, log_std
                     (B, *latent_shape); context: what the IAF posterior conditions on, or None.
Decoder          init(key, z) -> params
                 apply(params, z) -> features (B, H, W, F)
Likelihood       p(x | features), possibly autoregressive:
                 init(key, x, features) -> params
                 log_prob(params, x, features) -> (B,) nats; x uint8 levels (B, H, W, C)
                 sample(params, key, features) -> (B, H, W, C) uint8, compiled (lax.fori_loop
                     over pixels / channels, never a Python loop per pixel)
Prior p(z)       init(key, z) -> params
                 log_prob(params, z) -> (B,)
                 sample(params, key, n) -> z (n, *latent_shape)
Posterior q(z|x) init(key, mean, log_std, context) -> params
                 sample_and_log_prob(params, key, mean, log_std, context) -> (z, log_q (B,))

``flowzoo.models.vlae.model.build`` turns a :class:`VLAEParts` into a trainer Model (loss with
free bits, ELBO / importance-weighted NLL evaluation, sampling, decompressions).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol


class Encoder(Protocol):
    def init(self, key, x) -> Any: ...
    def apply(self, params, x) -> tuple: ...


class Decoder(Protocol):
    def init(self, key, z) -> Any: ...
    def apply(self, params, z) -> Any: ...


class Likelihood(Protocol):
    def init(self, key, x, features) -> Any: ...
    def log_prob(self, params, x, features) -> Any: ...
    def sample(self, params, key, features) -> Any: ...


class Prior(Protocol):
    def init(self, key, z) -> Any: ...
    def log_prob(self, params, z) -> Any: ...
    def sample(self, params, key, n) -> Any: ...


class Posterior(Protocol):
    def init(self, key, mean, log_std, context) -> Any: ...
    def sample_and_log_prob(self, params, key, mean, log_std, context) -> tuple: ...


# Model-config keys read by the assembly (model.py) for every family; a family's parts
# builder (e.g. cifar_parts) should accept and ignore these.
ASSEMBLY_DEFAULTS = dict(
    name="vlae",
    family="binary",  # "binary" (this package's 28x28 models) | "cifar" (cifar_parts.py)
    free_bits=0.01,  # nats per data dimension, hard: max(free_bits * D, batch-mean KL)
    iw_samples=16,  # importance samples for the eval NLL (the paper: 4096)
    iw_chunk=4,  # samples per lax.scan step (memory of iw_chunk * eval batch)
    decompress_z="mean",  # reconstruct(): "mean" of q(z|x) base Gaussian, or "sample"
)


class VLAEParts(NamedTuple):
    """The static components of one VLAE; ``build`` assembles them into a Model.

    ``x_scale`` maps uint8 levels (B, H, W, C) to the float encoder input (binary images:
    {0, 1} -> {0., 1.}; CIFAR: levels -> [-1, 1] or similar)."""

    encoder: Encoder
    decoder: Decoder
    likelihood: Likelihood
    prior: Prior
    posterior: Posterior
    latent_shape: tuple
    x_scale: Callable[[Any], Any]
