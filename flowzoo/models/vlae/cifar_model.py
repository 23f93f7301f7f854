"""The VLAE CIFAR-10 trainer Model: soft free bits, bits/dim, built on ``model.py``'s pieces.

Soft free bits (Chen et al. 2017): the training loss per example is

    loss = (recon + gamma * kl) / (D ln 2)      bits/dim,  0 < gamma <= 1,

and after each step gamma moves by ``kl_weight_step`` (10%) steps: down (x 0.9) when the
batch-mean KL is below lambda = ``free_bits`` * D nats, up (x 1.1, capped at 1) when it
exceeds lambda by more than ``kl_weight_tolerance`` (5%), unchanged in between; floored at
``kl_weight_min`` so it can always come back.  gamma is the model state the trainer keeps
(``Model.init_model_state``, checkpointed, no gradient).  Logged: ``kl_weight`` (gamma
used this step), the true ``kl`` and ``recon`` (nats), ``neg_elbo`` (bits/dim).

Evaluation (bits/dim, per example): ``bits_per_dim`` the importance-weighted bound with
``iw_samples`` posterior samples (the paper: 512), ``elbo_bits_per_dim`` the single-sample
bound, and ``kl`` / ``recon`` in nats.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from flowzoo.models.vlae import model as vlae_model
from flowzoo.models.vlae.cifar_parts import cifar_config, cifar_parts
from flowzoo.training.model import Model


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


def soft_free_bits_loss(parts, settings, num_dims, params, batch, key, model_state):
    """(loss bits/dim, metrics, new model state) for one batch."""
    recon, kl = vlae_model.elbo_terms(parts, params, batch, key)
    recon_mean, kl_mean = jnp.mean(recon), jnp.mean(kl)
    gamma = jax.lax.stop_gradient(model_state["kl_weight"])
    per_dim = 1.0 / (num_dims * math.log(2.0))
    loss = (recon_mean + gamma.astype(kl_mean.dtype) * kl_mean) * per_dim
    new_gamma = update_kl_weight(gamma, jax.lax.stop_gradient(kl_mean),
                                 float(settings["free_bits"]) * num_dims,
                                 float(settings["kl_weight_step"]),
                                 float(settings["kl_weight_tolerance"]),
                                 float(settings["kl_weight_min"]))
    metrics = {"neg_elbo": (recon_mean + kl_mean) * per_dim, "kl": kl_mean,
               "recon": recon_mean, "kl_weight": gamma}
    return loss, metrics, {"kl_weight": new_gamma}


def evaluate(parts, asm, num_dims, params, batch, key):
    k_single, k_iw = jax.random.split(key)
    recon, kl = vlae_model.elbo_terms(parts, params, batch, k_single)
    nll, _ = vlae_model.iw_nll(parts, params, batch, k_iw, asm.iw_samples, asm.iw_chunk)
    per_dim = 1.0 / (num_dims * math.log(2.0))
    return {"bits_per_dim": nll * per_dim, "elbo_bits_per_dim": (recon + kl) * per_dim,
            "kl": kl, "recon": recon}


def build(model_config, image_shape, num_levels) -> Model:
    """The CIFAR VLAE Model (soft free bits, bits/dim); family='cifar' configs."""
    settings = cifar_config(model_config)
    parts = cifar_parts(model_config, image_shape, num_levels)
    asm = vlae_model.assembly_config(model_config)
    num_dims = math.prod(image_shape)
    return Model(
        init=lambda key, batch: vlae_model.init(parts, key, batch),
        loss=lambda params, batch, key, state: soft_free_bits_loss(
            parts, settings, num_dims, params, batch, key, state),
        evaluate=lambda params, batch, key: evaluate(parts, asm, num_dims, params, batch, key),
        sample=lambda params, key, n: vlae_model.sample(parts, params, key, n),
        loss_unit="bits/dim", eval_metric="bits_per_dim",
        reconstruct=lambda params, batch, key: vlae_model.reconstruct(parts, asm, params,
                                                                      batch, key),
        init_model_state=init_model_state)
