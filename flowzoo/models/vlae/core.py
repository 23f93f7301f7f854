"""The VLAE core shared by every family: the component interface, ELBO terms, free bits,
importance-weighted NLL, sampling, decompressions, and the trainer Model.

Components (:class:`VLAEParts`; static objects with explicit parameter pytrees; ``init``
takes a real batch so weight-norm data-dependent init sees real activations; B batch,
(H, W, C) image, F decoder feature maps):

Encoder          init(key, x) -> params;  apply(params, x) -> (mean, log_std, context)
                 (a Flax module; x float as ``x_scale`` makes it; context: what the IAF
                 posterior conditions on, or None)
Decoder          init(key, z) -> params;  apply(params, z) -> features (B, H, W, F)
Likelihood       p(x | features): init(key, x, features), log_prob(params, x, features) ->
                 (B,) nats (x uint8 levels), sample(params, key, features) -> uint8 images
                 (compiled loops, never a Python loop per pixel)
Prior p(z)       a flowzoo Distribution: init(key, z), log_prob(params, z), sample(params,
                 key, n) (an AF prior is a TransformedDistribution)
Posterior q(z|x) init(key, mean, log_std, context), sample_and_log_prob(params, key, mean,
                 log_std, context) -> (z, log_q (B,)) (``flows.GaussianPosterior``)

Per example (nats), z ~ q(z|x) one sample: recon = -log p(x|z), kl = log q(z|x) - log p(z).
Training loss, D = H*W*C, lambda = free_bits * D nats for the whole latent of L elements:
* hard (binary family, nats), ``free_bits_grouping``:
  - "total": mean_B(recon) + max(lambda, mean_B(kl)), one floor on the batch-mean total KL;
  - "per_group" (the IAF code's): mean_B(recon) + sum_g max(lambda * G / L, mean_B(kl_g)),
    kl_g the KL of group g of G = ``free_bits_group_size`` consecutive latent elements,
    kl_i = log q_i(z) - log p_i(z) its elements' shares (``kl_per_element``; volume-
    preserving flows only, where these shares are each element's base density and sum to
    kl).  It keeps pushing every group below its share even when the total is far above
    lambda (with G = 1 and 64 latents on 28x28: 0.1225 nats per element).
* soft (CIFAR family, bits/dim): (mean_B(recon) + gamma * mean_B(kl)) / (D ln 2), and after
  each step gamma moves by ``kl_weight_step`` (10%) steps: down when the batch-mean KL is below
  lambda = free_bits * D, up (capped at 1) when it exceeds lambda by more than
  ``kl_weight_tolerance``, floored at ``kl_weight_min``.  gamma is the Model's state (the
  trainer checkpoints it, no gradient); it starts at 1, the plain ELBO.
Importance-weighted NLL with K = ``iw_samples``, ``iw_chunk`` samples per ``lax.scan`` step:
    nll_iw = -(logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K)
Sample k of example i uses ``fold_in(example_keys(key, index)_i, k)``: results do not depend
on how a batch is split across devices, nor on the chunk size.

Metrics, the same names for every VLAE (eval: per example; training: batch means):
``nll_iw_nats``, ``nll_iw_bits_per_dim`` (eval), ``neg_elbo_nats``, ``neg_elbo_bits_per_dim``,
``kl_nats``, ``recon_nats``, and ``kl_weight`` (soft free bits).  The headline
(``Model.eval_metric``) is the IW NLL in the loss's unit: ``nll_iw_nats`` with hard free bits,
``nll_iw_bits_per_dim`` with soft ones.

Parameters: ``{'encoder', 'posterior', 'prior', 'decoder', 'likelihood'}``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from flowzoo.model import Model, batch_mean, example_keys
from flowzoo.models.vlae.flows import log_prob_per_element

FREE_BITS_GROUPINGS = ("total", "per_group")


class VLAEParts(NamedTuple):
    """The static components of one VLAE (module docstring).  ``x_scale`` maps uint8 levels
    (B, H, W, C) to the float encoder input."""

    encoder: Any
    decoder: Any
    likelihood: Any
    prior: Any
    posterior: Any
    latent_shape: tuple
    x_scale: Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class Objective:
    """The assembly settings: free bits (hard, or soft with its gamma schedule), the IW NLL's
    sample count and chunk, and what ``reconstruct`` keeps of q(z|x)."""

    free_bits: float
    iw_samples: int
    iw_chunk: int
    decompress_z: str = "mean"
    soft_free_bits: bool = False
    free_bits_grouping: str = "total"  # hard free bits: "total" or "per_group"
    free_bits_group_size: int = 1
    kl_weight_step: float = 0.1
    kl_weight_tolerance: float = 0.05
    kl_weight_min: float = 1e-4

    @property
    def loss_unit(self) -> str:
        return "bits/dim" if self.soft_free_bits else "nats"


# ---- the pure functions of the model -------------------------------------------------------

def _encode(parts: VLAEParts, params, images):
    return parts.encoder.apply(params["encoder"], parts.x_scale(images))


def _sample_posterior(parts: VLAEParts, params, keys, mean, log_std, context,
                      per_element: bool = False):
    """One z ~ q(z|x) per example from its own key: (z, log_q (B,)), or with
    ``per_element`` log_q per latent element (B, *latent shape)."""
    sample = (parts.posterior.sample_and_log_prob_per_element if per_element
              else parts.posterior.sample_and_log_prob)

    def one(key, m, s, c):
        c = None if c is None else c[None]
        z, log_q = sample(params["posterior"], key, m[None], s[None], c)
        return z[0], log_q[0]

    return jax.vmap(one)(keys, mean, log_std, context)


def _recon(parts: VLAEParts, params, images, z):
    """-log p(x|z), (B,)."""
    features = parts.decoder.apply(params["decoder"], z)
    return -parts.likelihood.log_prob(params["likelihood"], images, features)


def _terms(parts: VLAEParts, params, images, z, log_q):
    """(recon = -log p(x|z), kl = log q - log p(z)), each (B,)."""
    return _recon(parts, params, images, z), log_q - parts.prior.log_prob(params["prior"], z)


def elbo_terms(parts: VLAEParts, params, batch, key):
    """Single-sample per-example (recon, kl) in nats."""
    images = batch["image"]
    mean, log_std, context = _encode(parts, params, images)
    z, log_q = _sample_posterior(parts, params, example_keys(key, batch["index"]), mean,
                                 log_std, context)
    return _terms(parts, params, images, z, log_q)


def kl_per_element(parts: VLAEParts, params, batch, key):
    """(recon (B,), kl (B, L)): ``elbo_terms`` with the KL split into each latent element's
    share log q_i - log p_i (volume-preserving flows; the shares sum to ``elbo_terms``' kl
    for the same key)."""
    images = batch["image"]
    mean, log_std, context = _encode(parts, params, images)
    z, log_q = _sample_posterior(parts, params, example_keys(key, batch["index"]), mean,
                                 log_std, context, per_element=True)
    kl = log_q - log_prob_per_element(parts.prior, params["prior"], z)
    return _recon(parts, params, images, z), kl.reshape(kl.shape[0], -1)


def free_bits_total(kl, target, axis_name=None):
    """max(lambda, mean_B(kl)): one floor on the batch-mean total KL; ``kl`` (B,) nats.
    ``axis_name``: the ``pmap`` device axis, whose slices make up the batch."""
    return jnp.maximum(target, batch_mean(kl, axis_name))


def free_bits_per_group(kl, target, group_size: int, axis_name=None):
    """sum_g max(lambda * G / L, mean_B(kl_g)), ``kl`` (B, L) per-element nats grouped in
    runs of ``group_size`` consecutive elements; the floor is on each group's batch mean
    (over the ``pmap`` device axis ``axis_name`` too, when given)."""
    b, num = kl.shape
    groups = batch_mean(jnp.sum(kl.reshape(b, num // group_size, group_size), -1), axis_name)
    return jnp.sum(jnp.maximum(target * group_size / num, groups))


def iw_nll(parts: VLAEParts, params, batch, key, num_samples, chunk: int,
           max_samples: int | None = None):
    """(nll_iw, mean log-weight) per example over ``num_samples`` posterior samples,
    ``chunk`` at a time under ``lax.scan`` (memory of one chunk).  The mean log-weight is
    the K-sample ELBO estimate, never above log-mean-exp (Jensen): nll_iw <= -mean exactly.

    With ``max_samples`` set, ``num_samples`` may be a traced integer <= max_samples (one
    compiled function for several K)."""
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
    each (``init_s`` of experiments/benchmarks/vlae.py).  Still a pure function of key."""
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


def update_kl_weight(gamma, kl, target, step=0.1, tolerance=0.05, min_weight=1e-4):
    """The soft-free-bits rule: gamma' from gamma, the observed KL and lambda (pure)."""
    gamma = jnp.asarray(gamma)
    down = kl < target
    up = kl > target * (1.0 + tolerance)
    new = jnp.where(down, gamma * (1.0 - step), jnp.where(up, gamma * (1.0 + step), gamma))
    return jnp.clip(new, min_weight, 1.0).astype(gamma.dtype)


def init_model_state():
    """gamma starts at 1 (the plain ELBO)."""
    return {"kl_weight": jnp.ones((), jnp.float32)}


def _per_dim(num_dims):
    """nats per image -> bits per dimension."""
    return 1.0 / (num_dims * math.log(2.0))


def _named(num_dims, recon, kl):
    """The metric names every VLAE reports for (recon, kl) nats (module docstring)."""
    return {"neg_elbo_nats": recon + kl,
            "neg_elbo_bits_per_dim": (recon + kl) * _per_dim(num_dims),
            "kl_nats": kl, "recon_nats": recon}


def loss(parts: VLAEParts, obj: Objective, num_dims: int, params, batch, key,
         model_state=None, axis_name=None):
    """Hard free bits: (loss nats, metrics).  Soft: (loss bits/dim, metrics, new state).

    Every batch mean is the global batch's: with ``axis_name`` (the trainer's ``pmap``
    device axis) the floors and the KL weight's rule see all devices' examples, as in the
    other parallel modes (``flowzoo.model.batch_mean``)."""
    target = obj.free_bits * num_dims
    if obj.free_bits_grouping == "per_group":
        recon, kl_elements = kl_per_element(parts, params, batch, key)
        kl = jnp.sum(kl_elements, -1)
    else:
        recon, kl = elbo_terms(parts, params, batch, key)
    recon_mean, kl_mean = batch_mean(recon, axis_name), batch_mean(kl, axis_name)
    metrics = _named(num_dims, recon_mean, kl_mean)
    if not obj.soft_free_bits:
        if obj.free_bits_grouping == "per_group":
            kl_term = free_bits_per_group(kl_elements, target, obj.free_bits_group_size,
                                          axis_name)
        else:
            kl_term = free_bits_total(kl, target, axis_name)
        return recon_mean + kl_term, metrics
    gamma = jax.lax.stop_gradient(model_state["kl_weight"])
    total = (recon_mean + gamma.astype(kl_mean.dtype) * kl_mean) * _per_dim(num_dims)
    new_gamma = update_kl_weight(gamma, jax.lax.stop_gradient(kl_mean), target,
                                 obj.kl_weight_step, obj.kl_weight_tolerance,
                                 obj.kl_weight_min)
    return total, {**metrics, "kl_weight": gamma}, {"kl_weight": new_gamma}


def evaluate(parts: VLAEParts, obj: Objective, num_dims: int, params, batch, key):
    k_single, k_iw = jax.random.split(key)
    recon, kl = elbo_terms(parts, params, batch, k_single)
    nll, _ = iw_nll(parts, params, batch, k_iw, obj.iw_samples, obj.iw_chunk)
    return {"nll_iw_nats": nll, "nll_iw_bits_per_dim": nll * _per_dim(num_dims),
            **_named(num_dims, recon, kl)}


def sample(parts: VLAEParts, params, key, n):
    """z ~ p(z) -> decoder features -> ancestral sampling of the likelihood: uint8."""
    kz, kx = jax.random.split(key)
    z = parts.prior.sample(params["prior"], kz, n)
    features = parts.decoder.apply(params["decoder"], z)
    return parts.likelihood.sample(params["likelihood"], kx, features)


def reconstruct(parts: VLAEParts, obj: Objective, params, batch, key):
    """Decompressions: encode x, keep z (the mean of q's base Gaussian, or one posterior
    sample with decompress_z='sample'), and resample the decoder p(x|z)."""
    kz, kx = jax.random.split(key)
    mean, log_std, context = _encode(parts, params, batch["image"])
    if obj.decompress_z == "mean":
        z = mean
    else:
        z, _ = _sample_posterior(parts, params, example_keys(kz, batch["index"]), mean,
                                 log_std, context)
    features = parts.decoder.apply(params["decoder"], z)
    return parts.likelihood.sample(params["likelihood"], kx, features)


def build_model(parts: VLAEParts, obj: Objective, image_shape) -> Model:
    """The trainer Model of ``parts`` under ``obj`` (loss unit and headline: module
    docstring)."""
    num_dims = math.prod(image_shape)
    unit = obj.loss_unit
    if obj.soft_free_bits:
        def loss_fn(params, batch, key, model_state, axis_name=None):
            return loss(parts, obj, num_dims, params, batch, key, model_state, axis_name)
    else:
        def loss_fn(params, batch, key, axis_name=None):
            return loss(parts, obj, num_dims, params, batch, key, axis_name=axis_name)
    return Model(
        init=lambda key, batch: init(parts, key, batch),
        loss=loss_fn,
        evaluate=lambda params, batch, key: evaluate(parts, obj, num_dims, params, batch, key),
        sample=lambda params, key, n: sample(parts, params, key, n),
        loss_unit=unit,
        eval_metric="nll_iw_bits_per_dim" if unit == "bits/dim" else "nll_iw_nats",
        reconstruct=lambda params, batch, key: reconstruct(parts, obj, params, batch, key),
        init_model_state=init_model_state if obj.soft_free_bits else None,
        loss_takes_axis_name=True)
