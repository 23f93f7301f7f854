"""Flow++'s bounds by value, and the official training recipe.

On a tiny model (8x8x1 images, so that log K and log q are large in bits/dim), every term is
computed separately here: log q(u|x) through the dequantizer's *inverse* (log N(eps) plus the
inverse log-det), log N(z) with NumPy.  The training loss must equal log N(z) + main-flow
log-det - log q(u|x) in bits/dim, the importance-weighted bound the logsumexp of K such
weights minus log K, and the gradient the optimizer clips is that of the official loss (mean
negative log-likelihood in nats).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import logsumexp

from jax.extend import core as jax_core

from flowzoo.models import flowpp
from flowzoo.models.flowpp import model as flowpp_model
from flowzoo.models.flowpp import nets
from flowzoo.training import optim
from flowzoo.model import example_keys

SHAPE = (8, 8, 1)
D = math.prod(SHAPE)
# One coupling in each flow keeps the compiles short; the bounds do not depend on depth.
TINY = dict(name="flowpp", filters=4, blocks=1, num_components=2, num_heads=2, dropout=0.0,
            layout="stripe:1", dequant_filters=4, dequant_blocks=1, dequant_steps=1,
            dequant_context_filters=4, dequant_context_blocks=1, iw_samples=4, iw_chunk=3,
            loss_scale="nats",
            # Execution options only (the same function), the cheapest to compile here:
            remat=False, attention_loop="off", scan_blocks=False, scan_steps=False)


def _batch(n=3, seed=0):
    images = np.random.default_rng(seed).integers(0, 256, (n,) + SHAPE, dtype=np.uint8)
    return {"image": jnp.asarray(images), "index": jnp.arange(5, 5 + n, dtype=jnp.int32)}


@functools.lru_cache(maxsize=None)
def _flow():
    return flowpp.make_flow(TINY, SHAPE, 256)


@functools.lru_cache(maxsize=None)
def _setup(**overrides):
    """(model, params): params from the tiny model's own init (one compile per config)."""
    model = flowpp.build({**TINY, **overrides}, SHAPE, 256)
    return model, jax.jit(model.init)(jax.random.PRNGKey(0), _batch(8, seed=1))


def _log_normal(z):
    z = np.asarray(z, np.float64)
    return np.sum(-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi), axis=(1, 2, 3))


def _noise(keys):
    return jax.vmap(lambda k: jax.random.normal(k, SHAPE, jnp.float32))(keys)


@jax.jit
def _pieces(params, x, eps):
    deq = _flow().dequantizer
    u, _ = deq.sample(params["dequant"], x, eps)
    context = deq.context(params["dequant"], x)
    eps_back, inverse_log_det = deq.noise_flow.inverse(params["dequant"]["noise"], u,
                                                       context=context)
    z, log_det = _flow().main.forward(params["main"], x + u)
    return eps_back, inverse_log_det, z, log_det


def _terms(params, x, eps):
    """(log N(z), main-flow log-det, log q(u|x)), each per example, computed separately."""
    eps_back, inverse_log_det, z, log_det = _pieces(params, x, eps)
    np.testing.assert_allclose(eps_back, eps, atol=1e-4)
    log_q = _log_normal(eps) + np.asarray(inverse_log_det, np.float64)
    return _log_normal(z), np.asarray(log_det, np.float64), log_q


def _weights(params, x, eps):
    log_prior, log_det, log_q = _terms(params, x, eps)
    assert np.all(np.abs(log_q) > 1) and np.all(np.abs(log_det) > 1)  # neither negligible
    return log_prior + log_det - log_q


def _bits(log_weight):
    return -log_weight / (D * math.log(2.0))


def test_training_loss_is_log_prior_plus_log_det_minus_log_q():
    model, params = _setup()
    batch, key = _batch(), jax.random.PRNGKey(7)
    loss, metrics = jax.jit(model.loss)(params, batch, key)
    noise_key, _ = jax.random.split(key)
    eps = _noise(example_keys(noise_key, batch["index"]))
    expected = np.mean(_bits(_weights(params, batch["image"].astype(jnp.float32), eps)))
    np.testing.assert_allclose(loss, expected, rtol=2e-6)
    np.testing.assert_allclose(metrics["bits_per_dim"], expected, rtol=2e-6)


def test_importance_weighted_bound_is_logsumexp_of_k_weights_minus_log_k():
    model, params = _setup()
    batch, key = _batch(), jax.random.PRNGKey(11)
    metrics = jax.jit(model.evaluate)(params, batch, key)
    x = batch["image"].astype(jnp.float32)
    k_single, k_iw = jax.random.split(key)
    single = _weights(params, x, _noise(example_keys(k_single, batch["index"])))
    base = example_keys(k_iw, batch["index"])
    weights = np.stack([_weights(params, x, _noise(jax.vmap(
        lambda k, i=i: jax.random.fold_in(k, i))(base))) for i in range(TINY["iw_samples"])])
    assert np.ptp(weights, axis=0).min() > 0.1  # the K samples differ
    expected = logsumexp(weights, axis=0) - math.log(TINY["iw_samples"])
    np.testing.assert_allclose(metrics["bits_per_dim"], _bits(single), rtol=2e-6)
    np.testing.assert_allclose(metrics["iw_bits_per_dim"], _bits(expected), rtol=2e-6)


def test_log_mean_exp_is_as_accurate_as_float64():
    rng = np.random.default_rng(2)
    weights = (-6500.0 + 20.0 * rng.normal(size=(4096, 3))).astype(np.float32)
    exact = logsumexp(weights.astype(np.float64), axis=0) - math.log(4096)
    ulp = np.spacing(np.abs(exact).astype(np.float32))
    np.testing.assert_allclose(flowpp_model.log_mean_exp(jnp.asarray(weights)), exact,
                               atol=0.5 * ulp.max())
    with jax.enable_x64(False):  # the compensated float32 path
        without_x64 = flowpp_model.log_mean_exp(jnp.asarray(weights))
    assert without_x64.dtype == jnp.float32
    np.testing.assert_allclose(without_x64, exact, atol=ulp.max())


def _global_norm(tree):
    return float(optax.tree.norm(tree))


def _assert_close_trees(ours, expected, rtol=1e-5):
    """Close as gradient vectors: float32 gradients of different programs differ in the
    last bits of their smallest entries, so compare global norms."""
    difference = jax.tree.map(lambda a, b: np.asarray(a, np.float64) - b, ours, expected)
    assert _global_norm(difference) <= rtol * _global_norm(expected)


def test_gradient_clipping_acts_on_the_official_nats_scale():
    """A gradient whose nats-scale norm is 2 comes out of the Flow++ optimizer halved."""
    from experiments.configs import flowpp_cifar10  # noqa: PLC0415

    model, params = _setup()
    batch, key = _batch(), jax.random.PRNGKey(3)
    # The official objective's gradient, from the bits/dim loss (whose value the first test
    # pins; no value trick in it): mean NLL in nats = D ln 2 * mean bits/dim.
    bits_model = flowpp.build({**TINY, "loss_scale": "bits_per_dim"}, SHAPE, 256)
    bits_grad = jax.jit(jax.grad(lambda p: bits_model.loss(p, batch, key)[0]))(params)
    norm = _global_norm(bits_grad) * D * math.log(2.0)
    grad = jax.jit(jax.grad(lambda p: (2.0 / norm) * model.loss(p, batch, key)[0]))(params)
    assert _global_norm(grad) == pytest.approx(2.0, rel=1e-4)
    cfg = flowpp_cifar10.get_config().optim
    assert cfg.grad_clip == 1.0
    tx = optim.make_optimizer(cfg)
    _, state = jax.jit(tx.update)(grad, tx.init(params), params)
    clipped = jax.tree.map(lambda m: m / (1.0 - cfg.b1), optax.tree.get(state, "mu"))
    _assert_close_trees(clipped, jax.tree.map(lambda g: g / 2, grad))
    _assert_close_trees(grad, jax.tree.map(lambda b: b * (2.0 / norm) * D * math.log(2.0),
                                           bits_grad))


def test_flowpp_configs_train_on_the_official_loss_scale():
    from experiments.configs import flowpp_cifar10, flowpp_imagenet32  # noqa: PLC0415

    for config in (flowpp_cifar10.get_config(), flowpp_imagenet32.get_config()):
        assert config.model.loss_scale == "nats"
    with pytest.raises(ValueError, match="loss_scale must be one of"):
        flowpp.make_flow({**TINY, "loss_scale": "bits"}, SHAPE, 256)


def _dropout_sites(jaxpr):
    """Dropout masks drawn in ``jaxpr`` and every jaxpr nested in it (``nets.keep_masks``
    names each mask with ``checkpoint_name``)."""
    return sum((eqn.primitive.name == "name" and eqn.params.get("name") == nets.DROPOUT_MASK)
               + sum(_dropout_sites(sub) for sub in jax_core.jaxprs_in_params(eqn.params))
               for eqn in jaxpr.eqns)


def test_data_dependent_init_runs_with_the_training_dropout():
    """As in the official code, the init pass draws dropout masks when the config trains
    with dropout (every conditioner: dequantizer context, noise flow, main flow), and none
    without (traced only)."""
    batch = _batch(8, seed=1)

    def sites(rate):
        model = flowpp.build({**TINY, "dropout": rate}, SHAPE, 256)
        return _dropout_sites(jax.make_jaxpr(model.init)(jax.random.PRNGKey(0), batch).jaxpr)

    # The context net (one draw) and the noise and main flows' couplings, each counted once
    # per pass the init makes through them.
    assert sites(0.0) == 0
    assert sites(0.2) >= 1 + 1 + 1


@pytest.mark.parametrize("execution,make_key", [
    ({}, jax.random.PRNGKey),  # TINY's: unscanned, no remat, batched attention; raw key data
    (dict(scan_blocks=True, remat=True, attention_loop="examples", scan_steps=True),
     jax.random.key)])  # the trainer's settings and its typed step key
def test_dropout_masks_follow_the_examples_not_the_batch_split(execution, make_key):
    """A pmap device sees only its slice of the batch: the loss and gradients averaged over
    4 devices (one example each) equal those of the whole batch on one device, with dropout
    on.  Masks drawn from one key for the batch's shape would give every device the first
    example's masks (gradients then differ by ~10%)."""
    model = flowpp.build({**TINY, "dropout": 0.2, **execution}, SHAPE, 256)
    batch = _batch(4, seed=3)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
    key = make_key(7)
    loss_and_grad = jax.value_and_grad(lambda p, b: model.loss(p, b, key)[0])
    whole = jax.jit(loss_and_grad)(params, batch)
    split = jax.tree.map(lambda v: v.reshape((4, 1) + v.shape[1:]), batch)
    per_device = jax.pmap(lambda b: jax.lax.pmean(loss_and_grad(params, b), "d"),
                          axis_name="d", devices=jax.devices()[:4])(split)
    per_device = jax.tree.map(lambda v: v[0], per_device)
    np.testing.assert_allclose(per_device[0], whole[0], rtol=1e-5)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(whole[1]),
                            jax.tree.leaves(per_device[1])):
        err = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a))
        assert err < 1e-4, (jax.tree_util.keystr(path), err)
    # Dropout is on: the same parameters, key and batch without dropout give another loss.
    plain = flowpp.build({**TINY, "dropout": 0.0, **execution}, SHAPE, 256)
    assert abs(float(plain.loss(params, batch, key)[0] - whole[0])) > 1e-6 * abs(float(whole[0]))
