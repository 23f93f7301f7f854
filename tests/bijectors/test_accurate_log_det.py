"""Float64 accuracy without x64: the error-free transformations of ``flowzoo._compensated``
and the 1x1 convolution's log-determinant (Flow++ computes it in float64)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from flowzoo import _compensated
from flowzoo import bijectors as fb
from flowzoo.bijectors import conv1x1


def _float32(rng, *shape, scale=1.0):
    return (scale * rng.normal(size=shape)).astype(np.float32)


def test_two_sum_and_two_product_are_exact():
    rng = np.random.default_rng(0)
    a, b = _float32(rng, 1000, scale=1e3), _float32(rng, 1000, scale=1e-3)
    s, e = jax.jit(_compensated.two_sum)(a, b)
    assert s.dtype == jnp.float32 and np.any(np.asarray(e) != 0)
    np.testing.assert_array_equal(np.float64(s) + np.float64(e), np.float64(a) + b)
    p, e = jax.jit(_compensated.two_product)(a, b)
    assert np.any(np.asarray(e) != 0)
    np.testing.assert_array_equal(np.float64(p) + np.float64(e), np.float64(a) * b)


def test_accurate_sum_and_residual_match_float64():
    rng = np.random.default_rng(1)
    # Cancelling large terms around small ones: a float32 sum loses the small ones.
    big = 1e3 * rng.normal(size=(1000, 3))
    x = rng.permuted(np.concatenate([big, -big, rng.normal(size=(100, 3))]), axis=0)
    x = x.astype(np.float32)
    total = jax.jit(_compensated.accurate_sum)(jnp.asarray(x))
    exact = np.array([math.fsum(col) for col in x.astype(np.float64).T])
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(total, exact, rtol=eps, atol=1e-12 * np.abs(x).sum())
    plain = np.sum(x, axis=0, dtype=np.float32)
    assert np.max(np.abs(plain - exact) / np.abs(exact)) > 100 * eps  # a float32 sum is not
    left, right = _float32(rng, 6, 6), _float32(rng, 6, 6)
    target = (left.astype(np.float64) @ right).astype(np.float32)  # residual ~ rounding
    residual = jax.jit(_compensated.residual_of_product)(target, left, right)
    np.testing.assert_allclose(residual, target - left.astype(np.float64) @ right,
                               rtol=1e-6, atol=1e-12)


def test_float32_log_det_is_as_accurate_as_float64_rounded():
    """Within 2 float32 ulps of the float64 log-det (Flow++ rounds it to float32: half an
    ulp), where a plain float32 slogdet is off by 4 to thousands of ulps."""
    rng = np.random.default_rng(2)
    plain_worse = 0
    for c, noise in ((3, 1e-3), (12, 1e-3), (12, 0.3), (48, 1e-3), (48, 0.3)):
        for _ in range(5):
            w = (np.eye(c) + noise * rng.normal(size=(c, c))).astype(np.float32)
            exact = np.linalg.slogdet(w.astype(np.float64))[1]
            ulp = np.spacing(np.float32(abs(exact)))
            ours = float(jax.jit(conv1x1._refined_log_abs_det)(jnp.asarray(w)))
            assert abs(ours - exact) <= 2 * ulp, (c, noise, ours - exact, ulp)
            plain = float(jnp.linalg.slogdet(jnp.asarray(w))[1])
            plain_worse += abs(plain - exact) > 2 * ulp
    assert plain_worse >= 15  # of 25


def test_conv1x1_without_x64_uses_the_accurate_log_det_and_its_gradient():
    rng = np.random.default_rng(3)
    kernel = jnp.asarray((np.eye(12) + 0.3 * rng.normal(size=(12, 12))).astype(np.float32))
    x = jnp.asarray(_float32(rng, 2, 4, 4, 12))
    bijector = fb.Invertible1x1Conv()
    exact = 16 * np.linalg.slogdet(np.asarray(kernel, np.float64))[1]
    with jax.enable_x64(False):
        _, log_det = jax.jit(bijector.forward)({"kernel": kernel}, x)
        grad = jax.jit(jax.grad(lambda k: bijector.forward({"kernel": k}, x)[1][0]))(kernel)
    assert log_det.dtype == jnp.float32
    np.testing.assert_allclose(log_det, exact, atol=16 * 2 * np.spacing(np.float32(exact / 16)))
    np.testing.assert_allclose(grad, 16 * np.linalg.inv(np.asarray(kernel, np.float64)).T,
                               rtol=1e-4, atol=1e-5)
