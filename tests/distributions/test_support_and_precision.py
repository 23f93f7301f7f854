"""Values outside the support, Python scalars, and the discretized mixture's float32 bins."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps

from flowzoo.distributions import (
    Bernoulli, DiscretizedLogisticMixture as DLM, Logistic, MixtureOfLogistics, Normal,
    StandardNormal,
)

F32, F64 = np.float32, np.float64


def _uniform(seed, shape, low, high):
    return np.asarray(jax.random.uniform(jax.random.PRNGKey(seed), shape, F64, low, high))


def _bin_log_mass_reference(levels, means, log_scales, num_bins):
    """log P(level) of one logistic per element, in float64 with SciPy (no cancellation
    issue at these scales: the narrowest bin here is 1e-5 wide in standard units)."""
    c = levels * (2.0 / (num_bins - 1)) - 1.0
    h = 1.0 / (num_bins - 1)
    s = np.exp(log_scales)
    upper, lower = sps.expit((c + h - means) / s), sps.expit((c - h - means) / s)
    mass = np.where(levels == 0, upper, np.where(levels == num_bins - 1, 1.0 - lower,
                                                 upper - lower))
    return np.log(mass)


@pytest.mark.parametrize("log_scale", [0.0, 2.0, 4.0, 6.0])
def test_dlm_float32_bins_stay_accurate_for_wide_components(log_scale):
    """Each bin's log mass in float32 is within 1e-5 nats of float64, even where the
    bin is a sliver of a wide logistic (the difference of two CDFs would lose ~1e-2)."""
    levels = np.arange(256)
    means = _uniform(int(log_scale), (256,), -1.0, 1.0).astype(F32)
    params = {"logits": np.zeros((256, 1), F32), "means": means[:, None],
              "log_scales": np.full((256, 1), log_scale, F32)}
    got = jax.jit(DLM(event_ndims=0).log_prob)(params, levels)
    assert got.dtype == F32
    expected = _bin_log_mass_reference(levels, means.astype(F64), log_scale, 256)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_dlm_bin_of_a_very_wide_component_is_finite_with_finite_gradients():
    """At log-scale 60 the bin's width in standard units underflows float32."""
    dist = DLM(event_ndims=0)
    params = {"logits": np.zeros((1,), F32), "means": np.array([0.1], F32),
              "log_scales": np.array([60.0], F32)}
    lp = dist.log_prob(params, np.array(100))
    expected = math.log(2.0 / 255) - 60.0 + 2.0 * math.log(0.5)
    np.testing.assert_allclose(lp, expected, rtol=1e-6)
    grads = jax.grad(lambda p: dist.log_prob(p, np.array(100)))(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    np.testing.assert_allclose(grads["log_scales"], -1.0, rtol=1e-5)


def _mixture(num_pixels, coupled, seed=0):
    shape = (num_pixels, 3, 2)
    params = {"logits": _uniform(seed, (num_pixels, 2) if coupled else shape, -1, 1),
              "means": _uniform(seed + 1, shape, -1, 1),
              "log_scales": _uniform(seed + 2, shape, -3, 0)}
    if coupled:
        params["coeffs"] = _uniform(seed + 3, shape, -1, 1)
    return params


@pytest.mark.parametrize("coupled", [False, True])
def test_dlm_values_off_the_levels_have_zero_probability(coupled):
    dist = DLM(num_bins=16, event_ndims=1, channel_coupled=coupled)
    params = _mixture(7, coupled)
    x = np.array([[0, 5, 15], [-1, 5, 15], [0, 16, 3], [2.5, 3, 4], [300, 0, 0],
                  [1, 2, 3], [15, 15, 0]], F64)
    lp = np.asarray(jax.jit(dist.log_prob)(params, x))
    assert np.all(np.isfinite(lp[[0, 5, 6]]))
    np.testing.assert_array_equal(lp[[1, 2, 3, 4]], -np.inf)
    # Integer input gives the same answers.
    rows = [0, 5, 6]
    np.testing.assert_array_equal(lp[rows], dist.log_prob(
        {k: v[rows] for k, v in params.items()}, x[rows].astype(int)))


def test_dlm_levels_still_sum_to_one():
    dist = DLM(num_bins=6, event_ndims=0)
    params = {k: v[:1, 0] for k, v in _mixture(1, False).items()}
    total = sum(np.exp(dist.log_prob(params, np.array(v))) for v in range(6))
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)
    assert dist.log_prob(params, np.array(6)) == -np.inf


def test_bernoulli_values_other_than_0_and_1_have_zero_probability():
    logits = np.array([-2.0, 0.5, 3.0, 1.0, -1.0, 0.0])
    x = np.array([0.0, 1.0, 0.5, 2.0, -1.0, np.nan])
    lp = np.asarray(Bernoulli().log_prob({"logits": logits}, x))
    np.testing.assert_allclose(lp[:2], [np.log(sps.expit(2.0)), np.log(sps.expit(0.5))])
    np.testing.assert_array_equal(lp[2:], -np.inf)
    assert Bernoulli().log_prob({"logits": np.array([1.0])}, np.array([3], np.int32))[0] == -np.inf


@pytest.mark.parametrize("dist,params", [
    (Normal(), {"loc": 0.2, "log_scale": -0.3}),
    (Logistic(), {"loc": 0.2, "log_scale": -0.3}),
    (MixtureOfLogistics(), {"logits": np.zeros(2), "means": np.array([0.0, 1.0]),
                            "log_scales": np.zeros(2)}),
    (StandardNormal(()), ()),
], ids=["normal", "logistic", "mixture", "standard_normal"])
def test_python_scalar_input_works(dist, params):
    got = dist.log_prob(params, 0.7)
    np.testing.assert_allclose(got, dist.log_prob(params, np.array(0.7)))
    assert jnp.shape(got) == ()
    with pytest.raises(TypeError, match="floating-point"):
        dist.log_prob(params, 1)
