"""Initialisation: data-dependent init, Flow++ init values, composition."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import bijectors as fb


def _batch(key, shape=(64, 4, 4, 3)):
    return 3.0 + 2.5 * jax.random.normal(key, shape)


@pytest.mark.parametrize("per,axes", [("element", (0,)), ("channel", (0, 1, 2))])
def test_actnorm_init_normalises_its_batch(per, axes):
    x = _batch(jax.random.PRNGKey(0))
    bijector = fb.ActNorm(per=per)
    y, _ = bijector.forward(bijector.init(jax.random.PRNGKey(1), x), x)
    np.testing.assert_allclose(jnp.mean(y, axis=axes), 0.0, atol=1e-10)
    np.testing.assert_allclose(jnp.var(y, axis=axes), 1.0, atol=1e-6)


def test_invert_actnorm_init_normalises_in_the_inverse_direction():
    y = _batch(jax.random.PRNGKey(2))
    bijector = fb.Invert(fb.ActNorm(per="channel"))
    out, _ = bijector.forward(bijector.init(jax.random.PRNGKey(1), y), y)
    np.testing.assert_allclose(jnp.mean(out, axis=(0, 1, 2)), 0.0, atol=1e-10)
    np.testing.assert_allclose(jnp.var(out, axis=(0, 1, 2)), 1.0, atol=1e-6)


def test_chain_init_is_sequential_data_dependent():
    """The second ActNorm is initialised on the first one's output."""
    x = _batch(jax.random.PRNGKey(3))
    chain = fb.Chain([fb.ActNorm(), fb.Affine(event_ndims=3), fb.ActNorm()])
    params = chain.init(jax.random.PRNGKey(0), x)
    np.testing.assert_allclose(params[2]["scale"], 1.0, atol=1e-6)
    np.testing.assert_allclose(params[2]["shift"], 0.0, atol=1e-6)


def test_chain_init_inverse_initialises_from_outputs():
    y = _batch(jax.random.PRNGKey(4))
    chain = fb.Chain([fb.Invertible1x1Conv(), fb.ActNorm(per="channel")])
    params = chain.init_inverse(jax.random.PRNGKey(0), y)
    x, _ = chain.inverse(params, y)
    np.testing.assert_allclose(jnp.var(x, axis=(0, 1, 2)), 1.0, atol=1e-2)


def test_flowpp_pointwise_init_is_identity_plus_small_noise():
    x = _batch(jax.random.PRNGKey(5))
    kernel = fb.Invertible1x1Conv().init(jax.random.PRNGKey(0), x)["kernel"]
    off = kernel - jnp.eye(3)
    assert 0 < float(jnp.max(jnp.abs(off))) < 5e-3


def test_conv1x1_log_det_uses_slogdet_of_kernel():
    x = _batch(jax.random.PRNGKey(6), (2, 5, 7, 3))
    kernel = jnp.asarray([[2.0, 0.3, 0.0], [0.0, -1.5, 0.2], [0.1, 0.0, 0.5]])
    _, log_det = fb.Invertible1x1Conv().forward({"kernel": kernel}, x)
    np.testing.assert_allclose(log_det, 35 * np.log(abs(np.linalg.det(np.asarray(kernel)))))


def test_coupling_with_flax_conditioner_passes_dropout_rngs():
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, deterministic=True):
            h = nn.Dropout(0.5, deterministic=deterministic)(nn.Dense(16)(x))
            return nn.Dense(2 * 2)(h)

    x = jax.random.normal(jax.random.PRNGKey(0), (8, 4))
    coupling = fb.Coupling(fb.ChannelSplit(), Net(), fb.AffineInner(), event_ndims=1)
    params = coupling.init(jax.random.PRNGKey(1), x)
    a = coupling.forward(params, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(2)})
    b = coupling.forward(params, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(3)})
    c = coupling.forward(params, x)
    assert not np.allclose(a[0], b[0])
    inv, _ = coupling.inverse(params, a[0], deterministic=False,
                              rngs={"dropout": jax.random.PRNGKey(2)})
    np.testing.assert_allclose(inv, x, atol=1e-10)
    assert c[0].shape == x.shape


def test_per_half_init_inverse_normalises_each_half_in_the_inverse_direction():
    y = _batch(jax.random.PRNGKey(7), (64, 4, 4, 2))
    bijector = fb.Invert(fb.PerHalf(fb.StripeSplit(), fb.ActNorm(per="channel")))
    out, _ = bijector.forward(bijector.init(jax.random.PRNGKey(1), y), y)
    for half in fb.StripeSplit().split(out):
        np.testing.assert_allclose(jnp.var(half, axis=(0, 1, 2)), 1.0, atol=1e-6)
