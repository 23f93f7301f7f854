"""Binary-image VLAE: autoregressive masks and receptive fields (gradients), MADE / AF prior /
IAF log-dets (float64 Jacobians), IW NLL vs ELBO (and against log-mean-exp of separately
computed weights) on real binarized MNIST, a smoke run through the trainer, sampling /
decompressions, jit/vmap safety, the metric convention and config errors.

The real-data tests need ``$FLOWZOO_DATA_DIR/binarized_mnist`` and skip otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from flowzoo import data, experiment
from flowzoo.configs import vlae as presets_vlae
from flowzoo.models import vlae
from flowzoo.models.vlae import likelihood_binary as pixelcnn, prior_made
from flowzoo.models.vlae.core import build_model
from flowzoo.models.vlae.flows import flow_steps
from flowzoo.training import steps

CONFIGS = ("vlae_static_mnist", "vlae_dynamic_mnist", "vlae_caltech", "vlae_omniglot")
METRICS = ("nll_iw_nats", "nll_iw_bits_per_dim", "neg_elbo_nats", "neg_elbo_bits_per_dim",
           "kl_nats", "recon_nats")  # every VLAE's evaluate, both families


def _config(name, arg=None):
    return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


def _perturb(params, key, scale=0.3):
    """Fresh random parameters: init values plus noise (no accidental zeros or identities)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return tree.unflatten([x + scale * jax.random.normal(k, x.shape, x.dtype)
                           for x, k in zip(leaves, keys)])


@functools.lru_cache(maxsize=None)
def _binarized_mnist_test():
    root = os.environ.get("FLOWZOO_DATA_DIR")
    if not root or not os.path.isdir(os.path.join(root, "binarized_mnist")):
        return None
    return data.load("binarized_mnist", "test", source="files", data_dir=root)


def _real_batch(n, offset=0):
    ds = _binarized_mnist_test()
    if ds is None:
        pytest.skip("needs $FLOWZOO_DATA_DIR/binarized_mnist (the official .amat files)")
    return {"image": jnp.asarray(ds.images[offset:offset + n]),
            "index": jnp.arange(offset, offset + n, dtype=jnp.int32)}


# ---- masks and receptive fields --------------------------------------------------------------

@pytest.mark.parametrize("layers,share", [(2, False), (4, True)])
def test_pixelcnn_is_autoregressive_with_the_configured_receptive_field(layers, share):
    h, w, f = 9, 10, 3
    net = pixelcnn.MaskedPixelCNN(feature_channels=f, layers=layers, filters=5,
                                  share_weights=share)
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(layers), 4)
    x = jax.random.bernoulli(k1, 0.5, (2, h, w, 1)).astype(jnp.uint8)
    feats = jax.random.normal(k2, (2, h, w, f), jnp.float64)
    params = _perturb(net.init(k3, x, feats), k4)
    xf = jax.random.uniform(k1, (h, w, 1), jnp.float64)  # any real input: the grads are exact

    def logits(img):
        return net.logits(params, img[None], feats[:1])[0, ..., 0]

    jac = np.asarray(jax.jacrev(logits)(xf))[..., 0]  # (h, w) outputs x (h, w) inputs
    for r in range(h):
        for c in range(w):
            nonzero = jac[r, c] != 0
            raster = np.arange(h * w).reshape(h, w)
            assert not nonzero[raster >= r * w + c].any(), (r, c)  # at and after: exactly 0
            np.testing.assert_array_equal(nonzero, pixelcnn.receptive_field(layers, h, w, r, c),
                                          err_msg=f"pixel {(r, c)}, {layers} layers")
    # The field grows with depth: L rows above, L columns either side (away from edges).
    field = pixelcnn.receptive_field(layers, h, w, h - 1, w // 2)
    rows = np.nonzero(field.any(axis=1))[0]
    cols = np.nonzero(field.any(axis=0))[0]
    assert rows.min() == h - 1 - layers and cols.min() == w // 2 - layers
    assert cols.max() == w // 2 + layers


def test_made_is_autoregressive_and_fully_connected_below_the_diagonal():
    d = 6
    net = prior_made.MADE(d, hidden=(20, 20), mean_only=False)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k1, (16, d), jnp.float64)
    ctx = jax.random.normal(k2, (16, 3), jnp.float64)
    params = _perturb(net.init(k3, x, ctx), k2, 0.1)
    both = jax.jacfwd(lambda v, c: net.apply(params, v[None], c[None])[0].reshape(2, d))
    jac = np.asarray(jax.vmap(both)(x, ctx))  # (16, 2 outputs (mu, s), d, d)
    upper = np.triu_indices(d)
    assert np.all(jac[..., upper[0], upper[1]] == 0)  # output i never sees inputs j >= i
    # Every j < i connection is used for some input (ReLU may zero it for one input).
    assert np.all(np.abs(jac).sum(0)[:, np.tril_indices(d, -1)[0], np.tril_indices(d, -1)[1]]
                  > 0)
    # Float32 gradients stay finite although the first output column is all masked: with a
    # '+ eps' inside the weight norm its backward pass multiplies 0 by an overflowed
    # eps^-1.5 (NaN gradients in real training once the KL is above the free bits; a large
    # cotangent makes this small case hit it too).
    prior = prior_made.made_af_prior(d, 2, (20,), mean_only=True)
    z32 = x.astype(jnp.float32)
    p32 = prior.init(k3, z32)
    grads = jax.grad(lambda p: 1e10 * jnp.sum(prior.log_prob(p, z32)))(p32)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    connect = functools.reduce(np.matmul, prior_made.made_masks(d, (20, 20), 1))
    np.testing.assert_array_equal(connect > 0, np.tril(np.ones((d, d)), -1).T > 0)


@pytest.mark.parametrize("mean_only", [True, False])
def test_af_prior_log_prob_matches_the_jacobian_and_inverts(mean_only):
    d = 5
    prior = prior_made.made_af_prior(d, 3, (16,), mean_only=mean_only)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
    z = jax.random.normal(k1, (8, d), jnp.float64)
    params = _perturb(prior.init(k2, z), k3, 0.1)
    flow, flow_params = prior.bijector, params["bijector"]
    u, log_det = flow.forward(flow_params, z)
    jacs = jax.vmap(jax.jacfwd(lambda v: flow.forward(flow_params, v[None])[0][0]))(z)
    expect = np.linalg.slogdet(np.asarray(jacs))[1]
    np.testing.assert_allclose(log_det, expect, atol=1e-10)
    if mean_only:
        np.testing.assert_allclose(log_det, 0.0, atol=1e-10)
    normal = -0.5 * jnp.sum(u ** 2, -1) - 0.5 * d * np.log(2 * np.pi)
    np.testing.assert_allclose(prior.log_prob(params, z), normal + log_det, atol=1e-10)
    np.testing.assert_allclose(flow.inverse(flow_params, u)[0], z, atol=1e-9)
    # The flow is autoregressive along alternating orders: each step's Jacobian is triangular.
    steps = flow_steps(flow, flow_params)
    assert [s.reverse for s, _ in steps] == [False, True, False]
    for k, (step, p) in enumerate(steps):
        jac = np.asarray(jax.jacfwd(lambda v: step.forward(p, v[None])[0][0])(z[0]))
        jac = jac[::-1, ::-1] if k % 2 else jac
        assert np.all(np.triu(jac, 1) == 0) and np.any(np.tril(jac, -1) != 0)
    samples = prior.sample(params, k1, 3)
    assert samples.shape == (3, d) and np.all(np.isfinite(samples))


def test_iaf_posterior_log_q_matches_the_jacobian():
    d = 5
    post = prior_made.made_iaf_posterior(d, 3, (16,), mean_only=False)
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(2), 4)
    mean = jax.random.normal(k1, (8, d), jnp.float64)
    log_std = 0.3 * jax.random.normal(k2, (8, d), jnp.float64)
    ctx = jax.random.normal(k3, (8, 4), jnp.float64)
    params = _perturb(post.init(k4, mean, log_std, ctx), k1, 0.1)
    z, log_q = post.sample_and_log_prob(params, k2, mean, log_std, ctx)
    eps = jax.random.normal(k2, mean.shape, mean.dtype)  # the draw sample_and_log_prob makes

    def flow(e, m, s, c):
        return post.flow.forward(params, (m + jnp.exp(s) * e)[None], context=c[None])[0][0]

    jacs = jax.vmap(jax.jacfwd(flow))(eps, mean, log_std, ctx)  # d z / d eps
    base = -0.5 * jnp.sum(eps ** 2, -1) - 0.5 * d * np.log(2 * np.pi)
    np.testing.assert_allclose(z, jax.vmap(flow)(eps, mean, log_std, ctx), atol=1e-12)
    np.testing.assert_allclose(log_q, base - np.linalg.slogdet(np.asarray(jacs))[1], atol=1e-9)


# ---- the assembled model ---------------------------------------------------------------------

def _tiny(**overrides):
    cfg = dict(name="vlae", channels=(4,), blocks_between=0, hidden=24, latent=6, features=2,
               pixelcnn_layers=2, pixelcnn_filters=4, prior_steps=2, prior_hidden=16,
               posterior="iaf", posterior_steps=1, posterior_hidden=16, posterior_context=4,
               iw_samples=4, iw_chunk=3)
    return ml_collections.ConfigDict({**cfg, **overrides})


@functools.lru_cache(maxsize=None)
def _tiny_model_and_params():
    batch = _real_batch(32, offset=100)
    m = experiment.build_model(_tiny(), (28, 28, 1), 2)
    params = jax.jit(m.init)(jax.random.PRNGKey(0), batch)
    return m, params


def test_iw_nll_is_never_worse_than_the_elbo_and_tightens_with_k():
    batch = _real_batch(32)
    m, params = _tiny_model_and_params()
    parts = vlae.make_parts(_tiny(), (28, 28, 1), 2)
    key = jax.random.PRNGKey(3)
    k_single, k_iw = jax.random.split(key)  # as the model's evaluate splits its key
    # One compiled function for every K (K traced, at most 64 samples, 16 per chunk).
    iw = jax.jit(lambda k: vlae.iw_nll(parts, params, batch, k_iw, k, 16, max_samples=64))
    means = []
    for k in (1, 4, 8, 64):
        nll, mean_w = iw(k)
        assert np.all(np.isfinite(nll))
        assert np.all(np.asarray(nll) <= -np.asarray(mean_w) + 1e-4)  # Jensen, per image
        if k == 1:
            np.testing.assert_allclose(nll, -mean_w, rtol=1e-6)
        if k == 4:  # the model's own eval: K = 4 in chunks of 3 (the last one ragged)
            ev = jax.jit(m.evaluate)(params, batch, key)
            np.testing.assert_allclose(ev["nll_iw_nats"], nll, rtol=1e-5)
        means.append(float(jnp.mean(nll)))
    assert means[0] > means[1] > means[2] > means[3], means
    assert set(ev) == set(METRICS)
    assert all(v.shape == (32,) for v in ev.values())
    np.testing.assert_allclose(ev["neg_elbo_nats"], ev["recon_nats"] + ev["kl_nats"],
                               rtol=1e-6)
    # The single-sample ELBO on the same images averages to the K = 1 IW value's level.
    assert abs(float(jnp.mean(ev["neg_elbo_nats"])) - means[0]) < 0.1 * means[0]


def test_iw_nll_is_log_mean_exp_of_separately_computed_weights():
    """nll_iw = -(logsumexp_k w_k - log K) with w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x)
    computed here from the parts, z_k drawn with fold_in(example key, k) (the documented key
    of sample k); the model's value uses K = 5 in ragged chunks of 2."""
    batch = _real_batch(6, offset=200)
    _, params = _tiny_model_and_params()
    parts = vlae.make_parts(_tiny(), (28, 28, 1), 2)
    key, num = jax.random.PRNGKey(8), 5
    mean, log_std, context = parts.encoder.apply(params["encoder"],
                                                 parts.x_scale(batch["image"]))

    def log_weight(sample_key, m, s, c, image):
        z, log_q = parts.posterior.sample_and_log_prob(params["posterior"], sample_key, m[None],
                                                       s[None], c[None])
        features = parts.decoder.apply(params["decoder"], z)
        log_px = parts.likelihood.log_prob(params["likelihood"], image[None], features)
        return (log_px + parts.prior.log_prob(params["prior"], z) - log_q)[0]

    example = jax.vmap(lambda i: jax.random.fold_in(key, i))(batch["index"])
    sample_keys = jax.vmap(lambda k: jax.vmap(lambda e: jax.random.fold_in(e, k))(example))(
        jnp.arange(num))  # (K, B) keys
    w = jax.jit(jax.vmap(jax.vmap(log_weight, (0, 0, 0, 0, 0)), (0, None, None, None, None)))(
        sample_keys, mean, log_std, context, batch["image"])
    assert w.shape == (num, 6) and float(jnp.std(w[:, 0])) > 0.1  # the samples differ
    want = -(jax.nn.logsumexp(w, axis=0) - jnp.log(num))
    nll, mean_w = jax.jit(lambda p: vlae.iw_nll(parts, p, batch, key, num, 2))(params)
    np.testing.assert_allclose(nll, want, rtol=2e-6, atol=1e-4)
    np.testing.assert_allclose(mean_w, jnp.mean(w, axis=0), rtol=2e-6, atol=1e-4)


def test_metric_convention_nats_and_bits_per_dim_under_one_set_of_names():
    batch = _real_batch(8)
    m, params = _tiny_model_and_params()
    assert (m.loss_unit, m.eval_metric) == ("nats", "nll_iw_nats")
    ev = jax.jit(m.evaluate)(params, batch, jax.random.PRNGKey(9))
    assert set(ev) == set(METRICS)
    bits = 1.0 / (784 * np.log(2.0))
    for name in ("nll_iw", "neg_elbo"):
        np.testing.assert_allclose(ev[f"{name}_bits_per_dim"], ev[f"{name}_nats"] * bits,
                                   rtol=1e-6)
    _, metrics = jax.jit(m.loss)(params, batch, jax.random.PRNGKey(10))
    assert set(metrics) == set(METRICS) - {"nll_iw_nats", "nll_iw_bits_per_dim"}
    np.testing.assert_allclose(metrics["neg_elbo_bits_per_dim"],
                               metrics["neg_elbo_nats"] * bits, rtol=1e-6)


def test_free_bits_floor_the_kl_and_the_true_kl_is_logged():
    batch = _real_batch(32)
    _, params = _tiny_model_and_params()
    key = jax.random.PRNGKey(4)
    m = experiment.build_model(_tiny(free_bits=1.0), (28, 28, 1), 2)  # 784 nats: far above the KL
    (loss, metrics), grads = jax.jit(jax.value_and_grad(m.loss, has_aux=True))(params, batch,
                                                                              key)
    np.testing.assert_allclose(metrics["neg_elbo_nats"],
                               metrics["recon_nats"] + metrics["kl_nats"], rtol=1e-6)
    assert 0.0 < float(metrics["kl_nats"]) < 784.0  # the true KL is logged, not the floor
    np.testing.assert_allclose(loss, metrics["recon_nats"] + 784.0, rtol=1e-6)
    # KL inside the floor: no gradient reaches the prior; the decoder still learns.
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads["prior"]))
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads["decoder"])) > 0
    m0 = experiment.build_model(_tiny(free_bits=0.0), (28, 28, 1), 2)
    loss0, metrics0 = jax.jit(m0.loss)(params, batch, key)
    np.testing.assert_allclose(loss0, metrics0["neg_elbo_nats"], rtol=1e-6)


def test_free_bits_floor_the_batch_mean_not_each_example():
    """Known KLs where a per-example floor and a batch-mean floor differ."""
    # total: examples at 2 and 12 nats, lambda 7.84: the batch mean 7 is floored -> 7.84
    # (a per-example floor would give (7.84 + 12) / 2 = 9.92).
    np.testing.assert_allclose(vlae.free_bits_total(jnp.array([2.0, 12.0]), 7.84), 7.84)
    np.testing.assert_allclose(vlae.free_bits_total(jnp.array([6.0, 12.0]), 7.84), 9.0)
    kl = jnp.array([[0.5, 0.0, 0.2, 0.05], [-0.1, 0.1, 0.2, 0.15]])  # (B=2, L=4) nats
    # Groups of 1, lambda 0.49 -> 0.1225 per element (7.84 nats over 64 latents, scaled):
    # batch means (0.2, 0.05, 0.2, 0.1) -> (0.2, 0.1225, 0.2, 0.1225).  Per example: 0.77.
    np.testing.assert_allclose(vlae.free_bits_per_group(kl, 0.49, 1), 0.645, rtol=1e-6)
    # Groups of 2 (share 0.245): group means (0.25, 0.3), both above their share.
    np.testing.assert_allclose(vlae.free_bits_per_group(kl, 0.49, 2), 0.55, rtol=1e-6)
    np.testing.assert_allclose(vlae.free_bits_per_group(kl, 1.2, 2), 0.6 + 0.6, rtol=1e-6)
    assert 0.01 * 784 / 64 == 0.1225  # the paper's budget per latent element


@pytest.mark.parametrize("prior, posterior", [("af", "diag"), ("normal", "iaf")])
def test_per_group_free_bits_loss_on_separately_computed_element_kls(prior, posterior):
    """The per_group loss is mean(recon) + sum_i max(0.1225, mean_B kl_i) on 64 latents, with
    kl_i = log N(z_0i; mean_i, std_i) - log N(u_i; 0, 1) built here from the parts (z_0 the
    documented draw, u = the AF prior's flow at z); the elements sum to the ELBO's KL."""
    batch = _real_batch(16, offset=300)
    cfg = _tiny(latent=64, prior=prior, posterior=posterior, free_bits=0.01,
                free_bits_grouping="per_group")
    m = experiment.build_model(cfg, (28, 28, 1), 2)
    parts = vlae.make_parts(cfg, (28, 28, 1), 2)
    params = _perturb(jax.jit(m.init)(jax.random.PRNGKey(11), batch), jax.random.PRNGKey(12),
                      0.05)
    key = jax.random.PRNGKey(13)
    mean, log_std, context = parts.encoder.apply(params["encoder"],
                                                 parts.x_scale(batch["image"]))
    eps = jax.vmap(lambda k, m: jax.random.normal(k, m.shape[-1:], m.dtype))(
        jax.vmap(lambda i: jax.random.fold_in(key, i))(batch["index"]), mean)
    z0 = mean + jnp.exp(log_std) * eps
    z = z0 if posterior == "diag" else parts.posterior.flow.forward(
        params["posterior"], z0, context=context)[0]
    u = z if prior == "normal" else parts.prior.bijector.forward(params["prior"]["bijector"],
                                                                  z)[0]
    log_q = -0.5 * eps ** 2 - log_std - 0.5 * np.log(2 * np.pi)
    kl = log_q - (-0.5 * u ** 2 - 0.5 * np.log(2 * np.pi))  # (16, 64)
    recon, kl_model = jax.jit(lambda p: vlae.kl_per_element(parts, p, batch, key))(params)
    np.testing.assert_allclose(kl_model, kl, rtol=1e-4, atol=1e-4)
    recon_total, kl_total = jax.jit(lambda p: vlae.elbo_terms(parts, p, batch, key))(params)
    np.testing.assert_allclose(recon, recon_total, rtol=1e-5)
    np.testing.assert_allclose(jnp.sum(kl_model, -1), kl_total, rtol=1e-4, atol=1e-3)
    means = jnp.mean(kl, axis=0)
    assert 0 < int(jnp.sum(means < 0.1225)) < 64  # some elements floored, some not
    loss, metrics = jax.jit(m.loss)(params, batch, key)
    np.testing.assert_allclose(loss, jnp.mean(recon) + jnp.sum(jnp.maximum(0.1225, means)),
                               rtol=1e-5)
    np.testing.assert_allclose(metrics["kl_nats"], jnp.mean(jnp.sum(kl, -1)), rtol=1e-4,
                               atol=1e-3)  # the true KL is logged, not the floored one
    total = experiment.build_model(_tiny(latent=64, prior=prior, posterior=posterior,
                                         free_bits=0.01), (28, 28, 1), 2)
    loss_total, _ = jax.jit(total.loss)(params, batch, key)
    np.testing.assert_allclose(loss_total, jnp.mean(recon) + jnp.maximum(
        7.84, jnp.mean(jnp.sum(kl, -1))), rtol=1e-5)


def _devices_train_step(model, state, batch, devices):
    """The trainer's step under pmap: ``batch`` split in order over ``devices``, the
    state replicated; device 0's copy of the new state and metrics."""
    step = functools.partial(steps.train_step, model=model, tx=optax.sgd(0.05), ema_decay=0.9,
                             max_nonfinite_in_a_row=10, axis_name="d")
    split = jax.tree.map(lambda v: v.reshape((devices, -1) + v.shape[1:]), batch)
    copies = jax.tree.map(lambda v: jnp.stack([v] * devices), state)
    out = jax.pmap(step, axis_name="d", devices=jax.devices()[:devices])(copies, split)
    return jax.tree.map(lambda v: v[0], out)


@pytest.mark.parametrize("objective", ["per_group", "total", "soft"])
def test_pmap_devices_floor_the_global_batch_mean_kl(objective):
    """Free bits floor (hard, per group or total) or steer the KL weight by (soft) the
    batch-mean KL.  Under pmap each device sees a quarter of the batch; sorted by KL, the
    devices' slices straddle the floor, yet the step (loss, gradient norm, new parameters,
    new KL weight) equals the whole batch's under jit.  A loss that floored each device's
    own mean (the model without ``loss_takes_axis_name``) gives another step: the test can
    fail."""
    cfg = _tiny(latent=64, posterior="diag", free_bits=0.01, free_bits_grouping="per_group")
    shape = (28, 28, 1)
    parts, obj = vlae.make_parts(cfg, shape, 2), vlae.objective(cfg)
    batch = _real_batch(16, offset=700)
    params = _perturb(jax.jit(build_model(parts, obj, shape).init)(
        jax.random.PRNGKey(21), batch), jax.random.PRNGKey(22), 0.05)
    rng = jax.random.PRNGKey(23)
    key = steps.step_key(steps.create_state(params, optax.sgd(0.05), rng))
    _, kl = jax.jit(lambda p: vlae.elbo_terms(parts, p, batch, key))(params)
    batch = jax.tree.map(lambda v: v[jnp.argsort(kl)], batch)  # device 0: the lowest KLs
    device_means = jnp.mean(jnp.sort(kl).reshape(4, 4), axis=1)
    soft = objective == "soft"
    if soft:  # lambda where the global mean moves gamma up and device 0's would move it down
        target = float(jnp.mean(kl)) / 1.1
        assert float(device_means[0]) < target
        obj = dataclasses.replace(obj, free_bits=target / 784, soft_free_bits=True)
    elif objective == "total":  # lambda above device 0's mean KL, below the global mean
        target = (float(device_means[0]) + float(jnp.mean(kl))) / 2
        obj = dataclasses.replace(obj, free_bits=target / 784, free_bits_grouping="total")
    model = build_model(parts, obj, shape)
    assert model.loss_takes_axis_name
    model_state = {"kl_weight": jnp.float32(0.5)} if soft else None
    state = steps.create_state(params, optax.sgd(0.05), rng, model_state)
    whole = jax.jit(functools.partial(
        steps.train_step, model=model, tx=optax.sgd(0.05), ema_decay=0.9,
        max_nonfinite_in_a_row=10))(state, batch)
    if objective == "per_group":  # element batch means either side of the floor (0.1225)
        _, elements = jax.jit(lambda p: vlae.kl_per_element(parts, p, batch, key))(params)
        means = jnp.mean(elements, 0)
        assert 0 < int(jnp.sum(means < 0.1225)) < 64
    updates = jax.tree.map(lambda a, b: a - b, whole[0].params, params)

    def assert_same(got, same=True):
        new, metrics = got
        close = [np.allclose(metrics[k], whole[1][k], rtol=2e-5)
                 for k in ("loss", "grad_norm", "kl_nats", "recon_nats")]
        if soft:
            close.append(np.allclose(new.model_state["kl_weight"],
                                     whole[0].model_state["kl_weight"], rtol=1e-6))
        errs = [float(jnp.linalg.norm((b - p) - u) / (jnp.linalg.norm(u) + 1e-12))
                for u, b, p in zip(jax.tree.leaves(updates), jax.tree.leaves(new.params),
                                   jax.tree.leaves(params))]
        ok = all(close) and max(errs) < 1e-4
        assert ok == same, (close, max(errs))

    if soft:
        np.testing.assert_allclose(whole[0].model_state["kl_weight"], 0.55, rtol=1e-6)
    assert_same(_devices_train_step(model, state, batch, 4))
    per_slice = model._replace(loss_takes_axis_name=False)
    assert_same(_devices_train_step(per_slice, state, batch, 4), same=False)


def test_per_group_free_bits_settings_fail_naming_the_fix():
    with pytest.raises(ValueError, match="must divide config.model.latent=6"):
        experiment.build_model(_tiny(free_bits_grouping="per_group", free_bits_group_size=4),
                               (28, 28, 1), 2)
    with pytest.raises(ValueError, match="posterior_mean_only=True"):
        experiment.build_model(_tiny(free_bits_grouping="per_group", posterior_mean_only=False),
                               (28, 28, 1), 2)
    with pytest.raises(ValueError, match="free_bits_grouping must be one of"):
        experiment.build_model(_tiny(free_bits_grouping="groups"), (28, 28, 1), 2)


def test_band_sampling_equals_full_network_sampling():
    m, params = _tiny_model_and_params()
    parts = vlae.make_parts(_tiny(), (28, 28, 1), 2)
    z = jax.random.normal(jax.random.PRNGKey(5), (3, 6), jnp.float32)
    feats = parts.decoder.apply(params["decoder"], z)
    key = jax.random.PRNGKey(6)
    band = jax.jit(parts.likelihood.sample)(params["likelihood"], key, feats)
    full_net = parts.likelihood.__class__(**{**parts.likelihood.__dict__,
                                             "band_sampling": False})
    full = jax.jit(full_net.sample)(params["likelihood"], key, feats)
    np.testing.assert_array_equal(band, full)
    assert band.dtype == jnp.uint8 and set(np.unique(band)) <= {0, 1}


def test_samples_and_decompressions_are_binary_images_and_jit_vmap_safe():
    batch = _real_batch(32)
    m, params = _tiny_model_and_params()
    key = jax.random.PRNGKey(7)
    samples = jax.jit(m.sample, static_argnums=2)(params, key, 5)
    assert samples.shape == (5, 28, 28, 1) and samples.dtype == jnp.uint8
    assert set(np.unique(samples)) <= {0, 1}
    recon = jax.jit(m.reconstruct)(params, batch, key)
    assert recon.shape == batch["image"].shape and recon.dtype == jnp.uint8
    assert set(np.unique(recon)) <= {0, 1}
    # vmap over single images gives the batched values (per-example keys, no batch mixing).
    ev_jit = jax.jit(m.evaluate)(params, batch, key)
    parts = vlae.make_parts(_tiny(), (28, 28, 1), 2)
    k_single = jax.random.split(key)[0]

    def one(img, i):
        recon, kl = vlae.elbo_terms(parts, params, {"image": img[None], "index": i[None]},
                                    k_single)
        return recon[0] + kl[0]

    per_image = jax.jit(jax.vmap(one))(batch["image"][:8], batch["index"][:8])
    np.testing.assert_allclose(per_image, ev_jit["neg_elbo_nats"][:8], rtol=2e-4, atol=1e-3)


def test_factorized_bernoulli_and_normal_prior_options_build_and_run():
    batch = _real_batch(8)
    m = experiment.build_model(_tiny(likelihood="bernoulli", prior="normal", posterior="diag"),
                     (28, 28, 1), 2)
    params = jax.jit(m.init)(jax.random.PRNGKey(0), batch)
    assert set(params["prior"]) == set() and "first" not in params["likelihood"]["params"]
    loss, metrics = jax.jit(m.loss)(params, batch, jax.random.PRNGKey(1))
    assert np.isfinite(loss) and np.isfinite(float(metrics["kl_nats"]))
    # Diagonal q and N(0, I): the single-sample KL averages near the analytic KL.
    parts = vlae.make_parts(_tiny(likelihood="bernoulli", prior="normal", posterior="diag"),
                            (28, 28, 1), 2)
    mean, log_std, _ = parts.encoder.apply(params["encoder"], parts.x_scale(batch["image"]))
    analytic = 0.5 * jnp.sum(mean ** 2 + jnp.exp(2 * log_std) - 1 - 2 * log_std, -1)
    assert np.all(analytic >= 0)


def test_bad_configs_fail_naming_the_fix():
    with pytest.raises(KeyError, match="pixelcnn_layers"):
        experiment.build_model(_tiny(pixelcnn_layer=3), (28, 28, 1), 2)
    with pytest.raises(ValueError, match="binarization"):
        experiment.build_model(_tiny(), (28, 28, 1), 256)
    with pytest.raises(ValueError, match="posterior"):
        experiment.build_model(_tiny(posterior="flow"), (28, 28, 1), 2)


def test_one_validator_names_the_nearest_key_for_either_family():
    with pytest.raises(KeyError, match=r"Did you mean 'model.prior_steps'"):
        vlae.settings({"family": "binary", "prior_step": 2})
    with pytest.raises(KeyError, match=r"Did you mean 'model.receptive_field'"):
        vlae.settings({"family": "cifar", "recepive_field": (7, 4)})
    with pytest.raises(KeyError, match="a key of family='cifar'"):
        vlae.settings({"family": "binary", "receptive_field": (7, 4)})
    with pytest.raises(ValueError, match="family must be one of"):
        vlae.settings({"family": "rgb"})
    with pytest.raises(ValueError, match="iw_samples and iw_chunk must be >= 1"):
        vlae.settings({"iw_chunk": 0})
    assert vlae.settings({"family": "cifar"})["prior_steps"] == 6


# ---- configs and a run through the trainer ---------------------------------------------------

@pytest.mark.parametrize("name", CONFIGS)
def test_configs_describe(name):
    info = experiment.describe(_config(name, "smoke"))
    assert info["model"] == "vlae" and info["num_params"] > 0
    full = _config(name)
    assert full.optim.name == "adamax" and full.optim.learning_rate == 0.002
    assert full.optim.ema_decay == 0.998 and full.model.free_bits == 0.01
    assert full.model.pixelcnn_share_weights == (name == "vlae_static_mnist")
    with pytest.raises(ValueError, match="smoke"):
        _config(name, "tiny")


PAPER_SPLITS = {"vlae_static_mnist": ("train+valid", "validation", 60_000),
                "vlae_caltech": ("train+valid", "validation", 4_100 + 2_264),
                "vlae_dynamic_mnist": ("train", "test", 60_000),
                "vlae_omniglot": ("train", "test", None)}  # no chardata.mat here


@pytest.mark.parametrize("name", CONFIGS)
def test_paper_presets_follow_the_papers_protocol(name):
    """Tuning (no preset): train, evaluate on validation where there is one; :paper: the final
    training set, test; :paper_eval: :paper's model and data with 4,096 IW samples on the
    whole test split; every preset floors each latent element's KL at 0.1225 nats."""
    train_split, tuning_eval, size = PAPER_SPLITS[name]
    tuning, paper, paper_eval = (_config(name, arg) for arg in (None, "paper", "paper_eval"))
    assert (tuning.data.train_split, tuning.data.eval_split) == ("train", tuning_eval)
    assert (paper.data.train_split, paper.data.eval_split) == (train_split, "test")
    assert paper_eval.data.to_dict() == paper.data.to_dict()
    assert paper_eval.model.iw_samples == 4096 == presets_vlae.PAPER_IW_SAMPLES
    assert paper_eval.eval.max_examples is None  # the whole test split
    changed = {k for k in paper.model if paper.model[k] != paper_eval.model[k]}
    assert changed == {"iw_samples", "iw_chunk"}  # it evaluates a :paper workdir as trained
    for c in (tuning, paper, paper_eval, _config(name, "cpu"), _config(name, "smoke")):
        assert (c.model.free_bits_grouping, c.model.free_bits_group_size) == ("per_group", 1)
    assert _config(name, "cpu").data.train_split == train_split
    root = os.environ.get("FLOWZOO_DATA_DIR")
    if size and root:  # the split the paper preset trains on, from the real files
        images = data.load(paper.data.name, paper.data.train_split, data_dir=root)
        assert len(images) == size


def test_cifar_paper_eval_is_512_samples_on_the_whole_test_split():
    cifar = importlib.import_module("experiments.configs.vlae_cifar10")
    c = cifar.get_config("rf7x4,paper_eval")
    assert c.model.iw_samples == 512 == presets_vlae.PAPER_IW_SAMPLES_CIFAR
    assert c.eval.max_examples is None and 10_000 % c.eval.batch_size == 0
    assert (c.data.train_split, c.data.eval_split) == ("train", "test")
    assert c.model.receptive_field == (7, 4)


def test_smoke_config_trains_on_real_binarized_mnist(tmp_path):
    _real_batch(1)  # skips without the data
    config = _config("vlae_static_mnist", "smoke")
    with config.unlocked():
        config.data.data_dir = os.environ["FLOWZOO_DATA_DIR"]
        config.data.source = "files"
        config.parallel = "jit"
    summary = experiment.train_and_evaluate(config, str(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert len(losses) >= 3 and losses[-1] < losses[0] - 50, losses
    ev = summary["eval"]
    assert np.isfinite(ev["nll_iw_nats"]) and ev["nll_iw_nats"] <= ev["neg_elbo_nats"] + 1.0
    assert ev["loss"] == ev["nll_iw_nats"]  # the headline, in the loss's unit (nats)
    assert os.path.exists(summary["reconstructions_png"])
    assert os.path.exists(summary["samples_png"])
