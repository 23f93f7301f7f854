"""The CIFAR VLAE AF prior (masked PixelCNN steps on an (h, w, c) latent) and posterior.

Tiny latents (3x3x4 = 36 dimensions) in float64 with fresh random inputs: the autoregressive
property is checked by Jacobians (exact zeros), the log-det against a float64 Jacobian.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo.models.vlae.flows import GaussianPosterior, flow_steps
from flowzoo.models.vlae.prior_pixelcnn import PixelCNNStep, pixelcnn_af_prior

SHAPE = (3, 3, 4)
DIM = math.prod(SHAPE)


@functools.lru_cache(maxsize=None)
def _prior(mean_only, steps=2):
    prior = pixelcnn_af_prior(SHAPE, steps, (8, 8), 3, mean_only)
    z = jax.random.normal(jax.random.PRNGKey(1), (16,) + SHAPE, jnp.float64)
    return prior, prior.init(jax.random.PRNGKey(2), z)


def _fresh(seed, n=1):
    return jax.random.normal(jax.random.PRNGKey(seed), (n,) + SHAPE, jnp.float64)


@pytest.mark.parametrize("mean_only", [True, False])
def test_each_step_output_ignores_its_own_and_later_elements(mean_only):
    """d mu_i / d z_j (and d s_i / d z_j) is exactly 0 for j >= i in raster (row, col,
    channel) order, and nonzero for the nearest earlier elements (the step is not trivial)."""
    prior, params = _prior(mean_only)
    (step, step_params), _ = flow_steps(prior.bijector, params["bijector"])
    net = step.conditioner

    def outputs(flat):
        return net.apply(step_params, flat.reshape((1,) + SHAPE)).reshape(-1)

    jac = np.asarray(jax.jit(jax.jacobian(outputs))(_fresh(3).reshape(-1)))
    jac = jac.reshape(SHAPE[:2] + (-1, SHAPE[2], DIM))  # (h, w, parameter, c, input)
    assert jac.shape[2] == (1 if mean_only else 2)
    h, w, c = np.unravel_index(np.arange(DIM), SHAPE)
    same_row_before = (c > 0) | (w > 0)  # the previous element is at (i, j) or (i, j - 1)
    for p in range(jac.shape[2]):
        part = jac[:, :, p].reshape(DIM, DIM)
        assert np.all(np.triu(part) == 0.0)  # itself and later: exactly zero
        previous = np.concatenate([[0.0], np.diag(part, k=-1)])
        assert np.all(previous[1:][same_row_before[1:]] != 0.0)  # the element just before
    # Channel c at (1, 1) sees the whole position to its left, (1, 0), every channel.
    row = jac[1, 1, 0, 2].reshape(SHAPE)
    assert np.all(row[1, 0] != 0) and np.all(row[1, 2] == 0) and np.all(row[2] == 0)


def test_odd_steps_run_in_reversed_order():
    prior, params = _prior(True)
    steps = flow_steps(prior.bijector, params["bijector"])
    assert [s.reverse for s, _ in steps] == [False, True]
    z = _fresh(4).reshape(-1)

    def step(k, flat):
        bijector, p = steps[k]
        return bijector.forward(p, flat.reshape((1,) + SHAPE))[0].reshape(-1)

    j0 = np.asarray(jax.jacobian(functools.partial(step, 0))(z))
    j1 = np.asarray(jax.jacobian(functools.partial(step, 1))(z))
    np.testing.assert_array_equal(np.diag(j0), 1.0)
    np.testing.assert_array_equal(np.diag(j1), 1.0)
    assert np.all(np.triu(j0, 1) == 0) and np.any(np.tril(j0, -1) != 0)  # forward order
    assert np.all(np.tril(j1, -1) == 0) and np.any(np.triu(j1, 1) != 0)  # reversed order


@pytest.mark.parametrize("mean_only", [True, False])
def test_log_det_matches_float64_jacobian(mean_only):
    prior, params = _prior(mean_only, steps=3)  # odd count: not a symmetric arrangement
    flow, flow_params = prior.bijector, params["bijector"]
    z = _fresh(5, n=2)
    _, log_det = flow.forward(flow_params, z)
    for b in range(2):
        jac = jax.jacobian(lambda f: flow.forward(flow_params, f.reshape((1,) + SHAPE))[0]
                           .reshape(-1))(z[b].reshape(-1))
        sign, want = np.linalg.slogdet(np.asarray(jac))
        assert sign == 1.0
        np.testing.assert_allclose(log_det[b], want, atol=1e-10)
    if mean_only:  # volume preserving
        np.testing.assert_array_equal(log_det, 0.0)
    else:
        assert np.all(np.abs(log_det) > 1e-6)


def test_sampling_inverts_the_flow_and_log_prob_is_a_density():
    prior, params = _prior(False, steps=3)  # affine: exercises shift and scale
    flow, flow_params = prior.bijector, params["bijector"]
    u = _fresh(6, n=3)
    z = jax.jit(flow.inverse)(flow_params, u)[0]
    np.testing.assert_allclose(flow.forward(flow_params, z)[0], u, atol=1e-10)
    samples = prior.sample(params, jax.random.PRNGKey(7), 5)
    assert samples.shape == (5,) + SHAPE
    # log p(z) = log N(u) + log det: compare with the change of variables done by hand.
    lp = prior.log_prob(params, z)
    u_hat, log_det = flow.forward(flow_params, z)
    want = (-0.5 * jnp.sum(u_hat ** 2, axis=(1, 2, 3)) - 0.5 * DIM * math.log(2 * math.pi)
            + log_det)
    np.testing.assert_allclose(lp, want, rtol=1e-12)


def test_paper_prior_shape_and_mask_density():
    """6 steps of (16 -> 128 -> 128 -> 16) masked 3x3 convs on 8x8x16."""
    prior = pixelcnn_af_prior((8, 8, 16), 6, (128, 128), 3, True)
    z = jnp.zeros((2, 8, 8, 16))
    shapes = jax.eval_shape(prior.init, jax.random.PRNGKey(0), z)
    steps = flow_steps(prior.bijector, jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                                                    shapes["bijector"]))
    assert len(steps) == 6
    for _, p in steps:
        assert [p["params"][f"conv{i}"]["v"].shape for i in range(3)] == [
            (3, 3, 16, 128), (3, 3, 128, 128), (3, 3, 128, 16)]
    # The centre tap of the output layer connects hidden degree d to outputs c > d only.
    centre = PixelCNNStep(16).masks()[-1][1, 1]
    assert centre.sum() == sum(8 * c for c in range(16))


def test_gaussian_posterior_log_density():
    mean, log_std = _fresh(8, n=2), 0.3 * _fresh(9, n=2)
    z, log_q = GaussianPosterior(3).sample_and_log_prob((), jax.random.PRNGKey(0), mean,
                                                        log_std, None)
    std = jnp.exp(log_std)
    want = jnp.sum(-0.5 * ((z - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi),
                   axis=(1, 2, 3))
    np.testing.assert_allclose(log_q, want, rtol=1e-12)


def test_bad_latent_shape_is_rejected():
    prior, params = _prior(True)
    with pytest.raises(ValueError, match="rank >= 3"):
        prior.log_prob(params, jnp.ones((2, 36)))
    with pytest.raises(ValueError, match=r"expects x shaped \(\*batch, \*\(3, 3, 4\)\)"):
        prior.log_prob(params, jnp.ones((2, 4, 4, 4)))
    with pytest.raises(ValueError, match="kernel must be odd"):
        pixelcnn_af_prior(SHAPE, 2, (8,), 2, True)
