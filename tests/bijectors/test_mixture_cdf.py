"""Accuracy of the logistic-mixture CDF inverse in float32, tails included."""

from __future__ import annotations

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import _logistic
from flowzoo import bijectors as fb

N = 512  # independent mixtures per draw


def _random_mixtures(key, k, min_log_scale, dtype=jnp.float32):
    kl, km, ks, ka, kb = jax.random.split(key, 5)
    return {
        "logits": 2.0 * jax.random.normal(kl, (N, k), dtype),
        "means": 3.0 * jax.random.normal(km, (N, k), dtype),
        "log_scales": jax.random.uniform(ks, (N, k), dtype, min_log_scale, 1.0),
        "log_scale": 0.5 * jax.random.normal(ka, (N,), dtype),
        "shift": jax.random.normal(kb, (N,), dtype),
    }


def _x_where_cdf_is(params, cdf):
    """Per mixture, the x with F(x) = cdf, by float64 bisection (reference)."""
    p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    return np.asarray(_reference_bisection(p, np.log(cdf) - np.log1p(-cdf)))


@jax.jit
def _reference_bisection(p, target):
    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        lc, ls = _logistic.mixture_log_cdf_and_sf(
            mid, p["logits"], p["means"], jnp.maximum(p["log_scales"], -7.0))
        below = lc - ls < target
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    n = p["shift"].shape
    lo, hi = jax.lax.fori_loop(0, 200, body, (jnp.full(n, -1e4), jnp.full(n, 1e4)))
    return 0.5 * (lo + hi)


@pytest.mark.parametrize("k,min_log_scale", [(4, -3.0), (32, -7.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_float32_round_trip_in_the_tails(k, min_log_scale, seed):
    """< 1e-4 round-trip error out to where F is within 1e-6 of 0 or 1 (and beyond)."""
    bijector = fb.LogisticMixtureCDF(num_components=k)
    params = _random_mixtures(jax.random.PRNGKey(100 * k + seed), k, min_log_scale)
    forward, inverse = jax.jit(bijector.forward), jax.jit(bijector.inverse)
    for cdf in (1e-6, 1e-4, 1 - 1e-4, 1 - 1e-6, 1e-9, 1 - 1e-9):
        x = jnp.asarray(_x_where_cdf_is(params, cdf), jnp.float32)
        y, log_det = forward(params, x)
        x_back, inv_log_det = inverse(params, y)
        assert x_back.dtype == jnp.float32
        err = float(jnp.max(jnp.abs(x_back - x)))
        assert err < 1e-4, f"cdf={cdf}: max round-trip error {err}"
        np.testing.assert_allclose(inv_log_det, -log_det, atol=1e-3)


def test_float32_inverse_is_accurate_to_the_conditioning_everywhere():
    """Over the whole range the errors are those float32 itself forces:
    in y (backward error) a few ulps of y plus slope x ulps of x; in x a few
    ulps of x plus ulps of y / slope (large only where the density ~ 0)."""
    k = 32
    bijector = fb.LogisticMixtureCDF(num_components=k)
    eps = float(jnp.finfo(jnp.float32).eps)
    forward, inverse = jax.jit(bijector.forward), jax.jit(bijector.inverse)
    for seed in (7, 8):
        params = _random_mixtures(jax.random.PRNGKey(seed), k, -7.0)
        lo = _x_where_cdf_is(params, 1e-6)
        hi = _x_where_cdf_is(params, 1 - 1e-6)
        u = np.asarray(jax.random.uniform(jax.random.PRNGKey(seed + 100), (8, N)))
        for row in u:
            x = jnp.asarray(lo + (hi - lo) * row, jnp.float32)
            y, log_det = forward(params, x)
            x_back, _ = inverse(params, y)
            y_back, _ = forward(params, x_back)
            slope = jnp.exp(log_det)
            ulp_x, ulp_y = eps * (1 + jnp.abs(x)), eps * (1 + jnp.abs(y))
            assert bool(jnp.all(jnp.abs(y_back - y) <= 64 * ulp_y + 8 * slope * ulp_x))
            assert bool(jnp.all(jnp.abs(x_back - x) <= 8 * ulp_x + 64 * ulp_y / slope))


@pytest.mark.parametrize("logit", [60.0, 100.0, 1000.0])
def test_float32_inverse_where_the_cdf_underflows(logit):
    """|logit F| from 60 to 1000 (F or 1 - F below float32's smallest normal beyond
    ~87): the bisection's scaled comparison neither overflows nor loses the root, so
    the inverse is finite and forward(inverse(y)) returns y to float32 precision."""
    bijector = fb.LogisticMixtureCDF(num_components=32)
    params = _random_mixtures(jax.random.PRNGKey(11), 32, -7.0)
    sign = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(12), 0.5, (N,)), 1.0, -1.0)
    y = sign * logit * jnp.exp(params["log_scale"]) + params["shift"]
    x, _ = jax.jit(bijector.inverse)(params, y)
    y_back, _ = jax.jit(bijector.forward)(params, x)
    assert bool(jnp.all(jnp.isfinite(x)))
    assert float(jnp.max(jnp.abs(y_back - y) / jnp.abs(y))) < 1e-5


def test_inverse_gradient_is_implicit_function_derivative():
    """d inverse / d y = 1 / (d forward / d x), and parameter gradients agree
    with finite differences (float64)."""
    k = 5
    bijector = fb.LogisticMixtureCDF(num_components=k)
    params = jax.tree.map(lambda a: a[:8].astype(jnp.float64),
                          _random_mixtures(jax.random.PRNGKey(3), k, -2.0))
    x = jnp.asarray(_x_where_cdf_is(params, 0.3))
    y, log_det = bijector.forward(params, x)
    dx_dy = jax.vmap(jax.grad(lambda p, v: bijector.inverse(p, v)[0], argnums=1), in_axes=(
        {key: 0 for key in params}, 0))(params, y)
    np.testing.assert_allclose(dx_dy, jnp.exp(-log_det), rtol=1e-8)

    def first_output(shift_of_means):
        p = dict(params, means=params["means"] + shift_of_means)
        return bijector.inverse(p, y)[0][0]

    grad = jax.grad(first_output)(0.0)
    eps = 1e-6
    fd = (first_output(eps) - first_output(-eps)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-5)


def test_scaled_difference_has_the_sign_of_the_logit_residual_and_its_slope():
    """D(x) = F e^-min(t,0) - (1-F) e^max(t,0) (float64): its sign is that of logit F - t,
    and its slope is dD/dx (against autodiff of D)."""
    from flowzoo.bijectors import mixture_cdf
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          _random_mixtures(jax.random.PRNGKey(9), 6, -3.0))
    t = jnp.asarray(np.random.default_rng(9).normal(size=N) * 4.0)
    log_pi = jax.nn.log_softmax(params["logits"], axis=-1)
    weights = (log_pi - jnp.minimum(t, 0.0)[:, None], log_pi + jnp.maximum(t, 0.0)[:, None])
    inv_scales = jnp.exp(-params["log_scales"])
    x = jnp.asarray(np.random.default_rng(10).normal(size=N) * 3.0)

    def scaled(x):
        return mixture_cdf._scaled_difference(x, *weights, params["means"], inv_scales)

    (d, slope), (d_dot, _) = jax.jvp(scaled, (x,), (jnp.ones_like(x),))
    g, _ = mixture_cdf._logit_cdf_and_log_slope(x, params["logits"], params["means"],
                                                params["log_scales"])
    np.testing.assert_array_equal(np.sign(d), np.sign(g - t))
    np.testing.assert_allclose(slope, d_dot, rtol=1e-12)


def test_newton_converges_from_a_coarse_bracket_and_stays_converged():
    """Float64, well-conditioned mixtures: 8 bisection steps leave a bracket ~1/256 of its
    start, and Newton on the scaled difference takes x to 1e-10 of the root; a converged
    step is kept, not thrown back to the bracket's midpoint."""
    bijector = fb.LogisticMixtureCDF(num_components=5, num_bisection_steps=8,
                                     num_newton_steps=8)
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          _random_mixtures(jax.random.PRNGKey(4), 5, -2.0))
    for cdf in (0.01, 0.3, 0.9):
        x = jnp.asarray(_x_where_cdf_is(params, cdf))
        y, _ = bijector.forward(params, x)
        x_back, _ = jax.jit(bijector.inverse)(params, y)
        assert float(jnp.max(jnp.abs(x_back - x))) < 1e-10, cdf


def test_the_solve_takes_no_logarithm_and_derivatives_only_when_asked():
    """The solve (bisection, then Newton on the scaled difference) runs without the
    log-space evaluation of the mixture (log-sigmoids: log1p); the implicit-function
    derivative's appears only in a differentiated program."""
    from flowzoo.bijectors import mixture_cdf
    params = _random_mixtures(jax.random.PRNGKey(5), 4, -7.0)
    t = jnp.linspace(-3.0, 3.0, N)
    args = (t, params["logits"], params["means"], params["log_scales"])

    def primitives(fn, *a):
        names, todo = set(), [jax.make_jaxpr(fn)(*a).jaxpr]
        while todo:
            jaxpr = todo.pop()
            for eqn in jaxpr.eqns:
                names.add(eqn.primitive.name)
                todo += list(jax.extend.core.jaxprs_in_params(eqn.params))
        return names

    def solve(*a):
        return mixture_cdf._inverse_logit_cdf(*a, 20, 4)

    assert "log1p" not in primitives(solve, *args)
    assert "log1p" in primitives(jax.grad(lambda t: jnp.sum(solve(t, *args[1:]))), t)


def test_coupling_factory_layout_matches_flowpp():
    """Raw (..., 2 + 3K) -> a = tanh(raw[0]), b = raw[1], then logits, means, log-scales."""
    k = 3
    raw = jax.random.normal(jax.random.PRNGKey(0), (2, 2 + 3 * k))
    bijector, params = fb.MixtureCDFInner(num_components=k)(raw)
    assert bijector.num_components == k and bijector.event_ndims == 0
    np.testing.assert_array_equal(params["log_scale"], jnp.tanh(raw[:, 0]))
    np.testing.assert_array_equal(params["shift"], raw[:, 1])
    np.testing.assert_array_equal(params["logits"], raw[:, 2:5])
    np.testing.assert_array_equal(params["means"], raw[:, 5:8])
    np.testing.assert_array_equal(params["log_scales"], raw[:, 8:11])
    assert fb.MixtureCDFInner(num_components=32).num_params == 98


def test_log_scales_are_clamped_at_minus_seven():
    bijector = fb.LogisticMixtureCDF(num_components=2)
    x = jnp.linspace(-1.0, 1.0, 7)
    base = {"logits": jnp.zeros((7, 2)), "means": jnp.asarray([[-0.5, 0.5]] * 7),
            "log_scale": jnp.zeros(7), "shift": jnp.zeros(7)}
    at_min = bijector.forward(dict(base, log_scales=jnp.full((7, 2), -7.0)), x)
    below = bijector.forward(dict(base, log_scales=jnp.full((7, 2), -30.0)), x)
    np.testing.assert_array_equal(at_min[0], below[0])
