"""TransformedDistribution: a base pushed through a bijector (data -> base)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import bijectors as fb
from flowzoo import distributions as fd


def _flow_1d(key):
    """A 1-D flow with random parameters: affine -> mixture CDF -> affine."""
    bijector = fb.Chain([fb.Affine(event_ndims=1),
                         fb.LogisticMixtureCDF(num_components=4, event_ndims=1),
                         fb.Affine(event_ndims=1)])
    dist = fd.TransformedDistribution(fd.StandardNormal((1,), dtype="float64"), bijector)
    k_init, k_pert = jax.random.split(key)
    params = dist.init(k_init, jnp.zeros((2, 1), jnp.float64) + 0.5)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(k_pert, len(leaves))
    leaves = [a + 0.5 * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)]
    return dist, jax.tree.unflatten(treedef, leaves)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_density_integrates_to_one(seed):
    dist, params = _flow_1d(jax.random.PRNGKey(seed))
    grid = jnp.linspace(-80.0, 80.0, 400_001)[:, None]
    density = jnp.exp(jax.jit(dist.log_prob)(params, grid))
    total = jnp.trapezoid(density, grid[:, 0])
    np.testing.assert_allclose(total, 1.0, atol=2e-4)


def test_sample_moments_match_the_density():
    dist, params = _flow_1d(jax.random.PRNGKey(5))
    grid = jnp.linspace(-80.0, 80.0, 400_001)[:, None]
    density = jnp.exp(dist.log_prob(params, grid))
    mean = jnp.trapezoid(density * grid[:, 0], grid[:, 0])
    var = jnp.trapezoid(density * (grid[:, 0] - mean) ** 2, grid[:, 0])
    n = 100_000
    samples = jax.jit(lambda p, k: dist.sample(p, k, n))(params, jax.random.PRNGKey(6))
    assert samples.shape == (n, 1)
    stderr = float(jnp.sqrt(var / n))
    assert abs(float(jnp.mean(samples)) - float(mean)) < 5 * stderr
    np.testing.assert_allclose(jnp.var(samples), var, rtol=0.05)


def _image_flow():
    bijector = fb.Chain([
        fb.ImageToLogit(num_levels=17),
        fb.ActNorm(),
        fb.Squeeze(),
        fb.Coupling(fb.ChannelSplit(), lambda x1: jnp.concatenate([jnp.tanh(x1)] * 2, -1),
                    fb.AffineInner()),
    ])
    return fd.TransformedDistribution(fd.StandardNormal((2, 2, 4)), bijector)


def test_image_flow_shapes_dtypes_and_sample_log_prob_consistency():
    dist = _image_flow()
    x = jax.random.uniform(jax.random.PRNGKey(0), (6, 4, 4, 1), jnp.float32, 0.0, 17.0)
    params = dist.init(jax.random.PRNGKey(1), x)
    log_p = jax.jit(dist.log_prob)(params, x)
    assert log_p.shape == (6,) and log_p.dtype == jnp.float32
    samples, sample_log_p = jax.jit(lambda p, k: dist.sample_and_log_prob(p, k, 5))(
        params, jax.random.PRNGKey(2))
    assert samples.shape == (5, 4, 4, 1) and samples.dtype == jnp.float32
    np.testing.assert_allclose(sample_log_p, dist.log_prob(params, samples), rtol=1e-4, atol=1e-3)
    one = dist.sample(params, jax.random.PRNGKey(3))
    assert one.shape == (4, 4, 1)


def test_init_is_data_dependent_through_the_flow():
    dist = _image_flow()
    x = jax.random.uniform(jax.random.PRNGKey(0), (64, 4, 4, 1), jnp.float64, 0.0, 17.0)
    params = dist.init(jax.random.PRNGKey(1), x)
    h, _ = dist.bijector.bijectors[0].forward((), x)
    h, _ = dist.bijector.bijectors[1].forward(params["bijector"][1], h)
    np.testing.assert_allclose(jnp.mean(h, axis=0), 0.0, atol=1e-8)


def test_gradient_of_log_prob_is_finite():
    dist = _image_flow()
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 4, 4, 1), jnp.float32, 0.0, 17.0)
    params = dist.init(jax.random.PRNGKey(1), x)
    grads = jax.grad(lambda p: -jnp.mean(dist.log_prob(p, x)))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_mismatched_event_ndims_fails_when_built():
    with pytest.raises(ValueError, match="base Normal has event_ndims=0 but the bijector "
                                         "Affine has event_ndims=1"):
        fd.TransformedDistribution(fd.Normal(event_ndims=0), fb.Affine(event_ndims=1))
    with pytest.raises(ValueError, match="StandardNormal has event_ndims=3 but the bijector "
                                         "Chain has event_ndims=1"):
        fd.TransformedDistribution(fd.StandardNormal((2, 2, 1)),
                                   fb.Chain([fb.Sigmoid(event_ndims=1)]))


def test_wrong_component_types_are_rejected():
    with pytest.raises(TypeError, match="must be a Bijector"):
        fd.TransformedDistribution(fd.Normal(), lambda x: x)
    with pytest.raises(TypeError, match="must be a Distribution"):
        fd.TransformedDistribution(fb.Sigmoid(), fb.Sigmoid())
