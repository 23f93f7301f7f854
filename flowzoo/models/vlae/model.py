"""VLAE as a trainer :class:`~flowzoo.training.model.Model`: ELBO with free bits, IW NLL,
sampling and decompressions, assembled from :class:`~flowzoo.models.vlae.parts.VLAEParts`.

Per example (nats), with z ~ q(z|x) one sample:
    recon = -log p(x|z),   kl = log q(z|x) - log p(z)    (single-sample estimates)
    neg_elbo = recon + kl
Training loss (mean nats per example) with hard free bits on one group, the whole latent:
    loss = mean_B(recon) + max(free_bits * D, mean_B(kl)),   D = H*W*C
The true KL is logged as ``kl``.  Why one group: the AF prior and the IAF posterior couple
the latent dimensions, so only the total KL is defined (a per-dimension grouping, as the IAF
code's per-channel one, would need per-dimension log-densities).

Importance-weighted NLL with K = ``iw_samples``, ``iw_chunk`` samples per ``lax.scan`` step
(memory of one chunk; the running log-sum-exp is the carry):
    nll_iw = -(logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K)
Posterior samples come from per-example keys (``example_keys``), so results do not depend on
how a batch is split across devices.

Parameters: ``{'encoder', 'posterior', 'prior', 'decoder', 'likelihood'}``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from flowzoo.models.vlae import made, pixelcnn, resnet
from flowzoo.models.vlae.autoregressive import DiagonalPosterior
from flowzoo.models.vlae.parts import ASSEMBLY_DEFAULTS, VLAEParts
from flowzoo.training.model import Model, example_keys

BINARY_DEFAULTS = dict(
    channels=(16, 32, 32), blocks_between=1, hidden=450, latent=64, features=4,
    residual_scale=0.1, likelihood="pixelcnn", pixelcnn_layers=6, pixelcnn_filters=12,
    pixelcnn_share_weights=False, prior="af", prior_steps=4, prior_hidden=640,
    prior_layers=2, prior_mean_only=True, posterior="diag", posterior_steps=4,
    posterior_hidden=640, posterior_layers=2, posterior_mean_only=True, posterior_context=64)
_CHOICES = dict(likelihood=("pixelcnn", "bernoulli"), prior=("af", "normal"),
                posterior=("diag", "iaf"), decompress_z=("mean", "sample"),
                family=("binary", "cifar"))


@dataclasses.dataclass(frozen=True)
class Assembly:
    """The assembly-level settings (see ``parts.ASSEMBLY_DEFAULTS``)."""

    free_bits: float
    iw_samples: int
    iw_chunk: int
    decompress_z: str


def _pick(model_config, defaults, what):
    given = dict(model_config)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise KeyError(f"Unknown {what} config keys {unknown}; valid keys: {sorted(defaults)}.")
    cfg = {**defaults, **given}
    for key, choices in _CHOICES.items():
        if key in cfg and cfg[key] not in choices:
            raise ValueError(f"config.model.{key} must be one of {choices}, got {cfg[key]!r}.")
    return cfg


def assembly_config(model_config) -> Assembly:
    given = {k: v for k, v in dict(model_config).items() if k in ASSEMBLY_DEFAULTS}
    cfg = {**ASSEMBLY_DEFAULTS, **given}
    for key in ("decompress_z", "family"):
        if cfg[key] not in _CHOICES[key]:
            raise ValueError(f"config.model.{key} must be one of {_CHOICES[key]}, got "
                             f"{cfg[key]!r}.")
    if int(cfg["iw_samples"]) < 1 or int(cfg["iw_chunk"]) < 1:
        raise ValueError("config.model.iw_samples and iw_chunk must be >= 1.")
    if float(cfg["free_bits"]) < 0:
        raise ValueError(f"config.model.free_bits must be >= 0, got {cfg['free_bits']}.")
    return Assembly(float(cfg["free_bits"]), int(cfg["iw_samples"]), int(cfg["iw_chunk"]),
                    cfg["decompress_z"])


def binary_scale(x):
    """uint8 {0, 1} -> float32 {-1, 1} (the encoder input)."""
    return 2.0 * x.astype(jnp.float32) - 1.0


def binary_parts(model_config, image_shape, num_levels) -> VLAEParts:
    """The binary-image VLAE of the paper (28x28 static/dynamic MNIST, OMNIGLOT, Caltech)."""
    c = _pick(model_config, {**ASSEMBLY_DEFAULTS, **BINARY_DEFAULTS}, "vlae (binary)")
    if num_levels != 2:
        raise ValueError(f"The binary VLAE needs binary images (2 levels), got {num_levels} "
                         f"levels: use data.name='binarized_mnist' or set "
                         f"config.data.binarization='static' or 'dynamic'.")
    if len(image_shape) != 3 or image_shape[-1] != 1:
        raise ValueError(f"The binary VLAE expects (H, W, 1) images, got {image_shape}.")
    iaf = c["posterior"] == "iaf"
    context = int(c["posterior_context"]) if iaf else 0
    latent = int(c["latent"])
    channels = tuple(int(ch) for ch in c["channels"])
    encoder = resnet.ResNetEncoder(tuple(image_shape), channels, int(c["blocks_between"]),
                                   int(c["hidden"]), latent, context,
                                   float(c["residual_scale"]))
    decoder = resnet.ResNetDecoder(tuple(image_shape), channels, int(c["blocks_between"]),
                                   int(c["hidden"]), int(c["features"]),
                                   float(c["residual_scale"]))
    if c["likelihood"] == "pixelcnn":
        likelihood = pixelcnn.MaskedPixelCNN(int(c["features"]), int(c["pixelcnn_layers"]),
                                             int(c["pixelcnn_filters"]),
                                             bool(c["pixelcnn_share_weights"]),
                                             float(c["residual_scale"]))
    else:
        likelihood = pixelcnn.FactorizedBernoulli(1)
    if c["prior"] == "af":
        prior = made.AFPrior(latent, int(c["prior_steps"]),
                             (int(c["prior_hidden"]),) * int(c["prior_layers"]),
                             bool(c["prior_mean_only"]))
    else:
        prior = made.StandardNormalPrior((latent,))
    if iaf:
        posterior = made.IAFPosterior(latent, int(c["posterior_steps"]),
                                      (int(c["posterior_hidden"]),) * int(c["posterior_layers"]),
                                      bool(c["posterior_mean_only"]))
    else:
        posterior = DiagonalPosterior()
    return VLAEParts(encoder, decoder, likelihood, prior, posterior, (latent,), binary_scale)


def make_parts(model_config, image_shape, num_levels) -> VLAEParts:
    family = dict(model_config).get("family", "binary")
    if family == "cifar":
        from flowzoo.models.vlae import cifar_parts  # the CIFAR-10 family (its own module)
        return cifar_parts.cifar_parts(model_config, tuple(image_shape), int(num_levels))
    return binary_parts(model_config, tuple(image_shape), int(num_levels))


# ---- the pure functions of the model -------------------------------------------------------

def _encode(parts: VLAEParts, params, images):
    return parts.encoder.apply(params["encoder"], parts.x_scale(images))


def _sample_posterior(parts: VLAEParts, params, keys, mean, log_std, context):
    """One z ~ q(z|x) per example from its own key: (z, log_q (B,))."""

    def one(key, m, s, c):
        c = None if c is None else c[None]
        z, log_q = parts.posterior.sample_and_log_prob(params["posterior"], key, m[None],
                                                       s[None], c)
        return z[0], log_q[0]

    return jax.vmap(one)(keys, mean, log_std, context)


def _terms(parts: VLAEParts, params, images, z, log_q):
    """(recon = -log p(x|z), kl = log q - log p(z)), each (B,)."""
    features = parts.decoder.apply(params["decoder"], z)
    recon = -parts.likelihood.log_prob(params["likelihood"], images, features)
    kl = log_q - parts.prior.log_prob(params["prior"], z)
    return recon, kl


def elbo_terms(parts: VLAEParts, params, batch, key):
    """Single-sample per-example (recon, kl) in nats."""
    images = batch["image"]
    mean, log_std, context = _encode(parts, params, images)
    z, log_q = _sample_posterior(parts, params, example_keys(key, batch["index"]), mean,
                                 log_std, context)
    return _terms(parts, params, images, z, log_q)


def iw_nll(parts: VLAEParts, params, batch, key, num_samples, chunk: int,
           max_samples: int | None = None):
    """(nll_iw, mean log-weight) per example over ``num_samples`` posterior samples,
    ``chunk`` at a time under ``lax.scan`` (memory of one chunk).  The mean log-weight is
    the K-sample ELBO estimate, never above log-mean-exp (Jensen): nll_iw <= -mean exactly.

    Sample k of example i always uses ``fold_in(example_key_i, k)``, so the chunk size does
    not change the result.  With ``max_samples`` set, ``num_samples`` may be a traced
    integer <= max_samples (one compiled function for several K)."""
    images = batch["image"]
    b = images.shape[0]
    mean, log_std, context = _encode(parts, params, images)
    base = example_keys(key, batch["index"])
    top = num_samples if max_samples is None else max_samples
    chunk = min(chunk, top)
    num_chunks = -(-top // chunk)

    def rep(a):
        return None if a is None else jnp.broadcast_to(a, (chunk,) + a.shape).reshape(
            (chunk * b,) + a.shape[1:])

    def step(carry, c):
        lse, total = carry
        ids = c * chunk + jnp.arange(chunk)
        keys = jax.vmap(lambda i: jax.vmap(lambda k: jax.random.fold_in(k, i))(base))(ids)
        keys = keys.reshape((chunk * b,) + keys.shape[2:])
        z, log_q = _sample_posterior(parts, params, keys, rep(mean), rep(log_std),
                                     rep(context))
        recon, kl = _terms(parts, params, rep(images), z, log_q)
        w = -(recon + kl).reshape(chunk, b)
        valid = (ids < num_samples)[:, None]
        lse = jnp.logaddexp(lse, jax.nn.logsumexp(jnp.where(valid, w, -jnp.inf), axis=0))
        total = total + jnp.sum(jnp.where(valid, w, 0.0), axis=0)
        return (lse, total), None

    init = (jnp.full((b,), -jnp.inf, mean.dtype), jnp.zeros((b,), mean.dtype))
    (lse, total), _ = jax.lax.scan(step, init, jnp.arange(num_chunks))
    k = jnp.asarray(num_samples, mean.dtype)
    return -(lse - jnp.log(k)), total / k


def _init_key(key):
    """An 'rbg' key derived from ``key`` for drawing initial weights: each threefry draw
    compiles into a sizeable graph and a VLAE init has ~100 of them; 'rbg' draws are one op
    each (the init compiles several times faster on CPU).  Still a pure function of key."""
    return jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl="rbg")


def init(parts: VLAEParts, key, batch):
    """Data-dependent init of every component on one batch (a pure function)."""
    images = batch["image"]
    ke, kq, kz, kp, kd, kl = jax.random.split(key, 6)
    ke, kq, kp, kd, kl = (_init_key(k) for k in (ke, kq, kp, kd, kl))
    x = parts.x_scale(images)
    params = {"encoder": parts.encoder.init(ke, x)}
    mean, log_std, context = parts.encoder.apply(params["encoder"], x)
    params["posterior"] = parts.posterior.init(kq, mean, log_std, context)
    z, _ = _sample_posterior(parts, params, example_keys(kz, batch["index"]), mean, log_std,
                             context)
    params["prior"] = parts.prior.init(kp, z)
    params["decoder"] = parts.decoder.init(kd, z)
    features = parts.decoder.apply(params["decoder"], z)
    params["likelihood"] = parts.likelihood.init(kl, images, features)
    return params


def loss(parts: VLAEParts, asm: Assembly, num_dims: int, params, batch, key):
    recon, kl = elbo_terms(parts, params, batch, key)
    recon_mean, kl_mean = jnp.mean(recon), jnp.mean(kl)
    total = recon_mean + jnp.maximum(asm.free_bits * num_dims, kl_mean)
    return total, {"neg_elbo": recon_mean + kl_mean, "kl": kl_mean, "recon": recon_mean}


def evaluate(parts: VLAEParts, asm: Assembly, params, batch, key):
    k_single, k_iw = jax.random.split(key)
    recon, kl = elbo_terms(parts, params, batch, k_single)
    nll, _ = iw_nll(parts, params, batch, k_iw, asm.iw_samples, asm.iw_chunk)
    return {"nll_iw": nll, "neg_elbo": recon + kl, "kl": kl, "recon": recon}


def sample(parts: VLAEParts, params, key, n):
    """z ~ p(z) -> decoder features -> ancestral sampling of the likelihood: uint8."""
    kz, kx = jax.random.split(key)
    z = parts.prior.sample(params["prior"], kz, n)
    features = parts.decoder.apply(params["decoder"], z)
    return parts.likelihood.sample(params["likelihood"], kx, features)


def reconstruct(parts: VLAEParts, asm: Assembly, params, batch, key):
    """Decompressions: encode x, keep z (the mean of q's base Gaussian, or one posterior
    sample with decompress_z='sample'), and resample the decoder p(x|z)."""
    kz, kx = jax.random.split(key)
    mean, log_std, context = _encode(parts, params, batch["image"])
    if asm.decompress_z == "mean":
        z = mean
    else:
        z, _ = _sample_posterior(parts, params, example_keys(kz, batch["index"]), mean,
                                 log_std, context)
    features = parts.decoder.apply(params["decoder"], z)
    return parts.likelihood.sample(params["likelihood"], kx, features)


def build(model_config, image_shape, num_levels) -> Model:
    """The registry's entry point (config.model.name='vlae'); family='cifar' builds the
    CIFAR-10 model (soft free bits, bits/dim) from cifar_model.py."""
    if dict(model_config).get("family", "binary") == "cifar":
        from flowzoo.models.vlae import cifar_model
        return cifar_model.build(model_config, tuple(image_shape), int(num_levels))
    parts = make_parts(model_config, image_shape, num_levels)
    asm = assembly_config(model_config)
    num_dims = math.prod(image_shape)
    return Model(
        init=lambda key, batch: init(parts, key, batch),
        loss=lambda params, batch, key: loss(parts, asm, num_dims, params, batch, key),
        evaluate=lambda params, batch, key: evaluate(parts, asm, params, batch, key),
        sample=lambda params, key, n: sample(parts, params, key, n),
        loss_unit="nats", eval_metric="nll_iw",
        reconstruct=lambda params, batch, key: reconstruct(parts, asm, params, batch, key))
