"""Tests for flowzoo.distributions (run with jax_enable_x64 on; see conftest)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from flowzoo.distributions import (
    Bernoulli,
    DiscretizedLogisticMixture,
    Distribution,
    Logistic,
    MixtureOfLogistics,
    Normal,
    StandardNormal,
)

N_SAMPLES = 200_000
F32, F64 = jnp.float32, jnp.float64


def rng(seed):
    """A seeded key.  "rbg" keys compile ~8x faster than threefry on CPU, which
    keeps this file fast; one test checks the default implementation too."""
    return jax.random.key(seed, impl="rbg")


@functools.cache
def _jitted(dist):
    return jax.jit(dist.log_prob), jax.jit(dist.sample, static_argnames="n")


def log_prob(dist, params, x):
    """``dist.log_prob`` under jit: one compile per test instead of one per op."""
    return _jitted(dist)[0](params, x)


def sample(dist, params, key, n=None):
    return _jitted(dist)[1](params, key, n=n)


_POOL_SIZE = 1 << 15


@jax.jit
def _uniform_pool(key):
    return jax.random.uniform(key, (_POOL_SIZE,), F64, minval=1e-12, maxval=1.0)


class Draws:
    """Fresh random numbers for one test from a seeded jax key.

    One compiled pool of float64 uniforms per seed, shaped and transformed in
    numpy, so building parameters of a new shape costs no XLA compilation.
    """

    def __init__(self, seed):
        self._pool = np.asarray(_uniform_pool(rng(seed)))
        self._used = 0

    def uniform(self, shape, low=0.0, high=1.0):
        size = int(np.prod(shape))
        assert self._used + size <= _POOL_SIZE, "enlarge _POOL_SIZE"
        u = self._pool[self._used:self._used + size].reshape(shape)
        self._used += size
        return low + (high - low) * u

    def normal(self, shape, scale=1.0):
        return scale * scipy.special.ndtri(self.uniform(shape))

    def choice(self, values, shape):
        values = np.asarray(values)
        return values[(self.uniform(shape) * len(values)).astype(np.int64)]

    def integers(self, shape, high, dtype=np.int32):
        return (self.uniform(shape) * high).astype(dtype)


def as_arrays(params, dtype):
    return {k: jnp.asarray(np.asarray(v, dtype)) for k, v in params.items()}


def loc_scale_params(draws, shape, dtype):
    return as_arrays({"loc": draws.normal(shape, 2.0), "log_scale": draws.uniform(shape, -1.5, 1.5)}, dtype)


def mixture_params(draws, shape, num_k, dtype, log_scale_range=(-4.0, 1.0)):
    full = tuple(shape) + (num_k,)
    return as_arrays({
        "logits": draws.normal(full, 1.5),
        "means": draws.normal(full, 2.0),
        "log_scales": draws.uniform(full, *log_scale_range),
    }, dtype)


def dlm_params(draws, pixel_shape, num_k, dtype, coupled, extreme=False):
    """Random DLM params; ``extreme`` draws means in [-3, 3] and log_scales in {-9, -7, 3}."""
    chan = pixel_shape + (3, num_k) if coupled else pixel_shape + (num_k,)
    if extreme:
        means = draws.choice([-3.0, -1.5, -1.0, -0.999, 0.0, 1.0, 1.5, 3.0], chan)
        log_scales = draws.choice([-9.0, -7.0, 3.0], chan)
    else:
        means = draws.uniform(chan, -1.2, 1.2)
        log_scales = draws.uniform(chan, -4.0, 0.0)
    params = {
        "logits": draws.normal((pixel_shape if coupled else chan[:-1]) + (num_k,), 1.5),
        "means": means,
        "log_scales": log_scales,
    }
    if coupled:
        params["coeffs"] = draws.normal(chan, 6.0 if extreme else 1.5)
    return as_arrays(params, dtype)


def all_rgb_levels(num_bins):
    return np.indices((num_bins,) * 3).reshape(3, -1).T  # (num_bins**3, 3)


def check_moments(samples, mean, var, n_se=5.0):
    """Sample mean/variance within ``n_se`` standard errors of the exact values."""
    samples = np.asarray(samples, np.float64)
    n = samples.shape[0]
    centred = samples - samples.mean(0)
    se_mean = samples.std(0) / np.sqrt(n)
    se_var = (centred**2).std(0) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), n_se * se_mean + 1e-12)
    np.testing.assert_array_less(np.abs(samples.var(0) - var), n_se * se_var + 1e-12)


# ---- normalisation ----------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dist", [Normal(), Logistic()], ids=["normal", "logistic"])
def test_continuous_density_integrates_to_one(dist, seed):
    p = loc_scale_params(rng(seed), (), F64)
    grid = p["loc"] + jnp.exp(p["log_scale"]) * jnp.linspace(-60.0, 60.0, 400_001, dtype=F64)
    total = np.trapezoid(np.exp(log_prob(dist, p, grid)), np.asarray(grid))
    assert abs(total - 1.0) < 1e-8


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixture_of_logistics_integrates_to_one(seed):
    p = mixture_params(rng(seed), (), 5, F64, log_scale_range=(-5.0, 1.0))
    # Union of per-component grids: each component is resolved on its own scale.
    offsets = jnp.linspace(-60.0, 60.0, 40_001, dtype=F64)
    grid = jnp.sort((p["means"][:, None] + jnp.exp(p["log_scales"])[:, None] * offsets).ravel())
    total = np.trapezoid(np.exp(log_prob(MixtureOfLogistics(), p, grid)), np.asarray(grid))
    assert abs(total - 1.0) < 1e-6


@pytest.mark.parametrize("dtype", [F32, F64])
def test_bernoulli_probabilities_sum_to_one(dtype):
    logits = jnp.concatenate([
        5.0 * jax.random.normal(rng(3), (20,), dtype),
        jnp.array([-1e3, -50.0, 0.0, 50.0, 1e3], dtype),
    ])
    dist, p = Bernoulli(), {"logits": logits}
    total = jnp.exp(log_prob(dist, p, jnp.ones_like(logits))) + jnp.exp(log_prob(dist, p, jnp.zeros(20 + 5, jnp.int32)))
    assert total.dtype == dtype
    np.testing.assert_allclose(total, 1.0, atol=1e-6 if dtype == F32 else 1e-14)


def random_and_extreme_dlm_params(seed, pixels, num_k, dtype, coupled):
    """Random params for ``pixels`` pixels followed by extreme ones for as many."""
    k1, k2 = split(seed, 2)
    both = (dlm_params(k1, (pixels,), num_k, dtype, coupled, extreme=False),
            dlm_params(k2, (pixels,), num_k, dtype, coupled, extreme=True))
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), *both)


@pytest.mark.parametrize("dtype,atol", [(F64, 1e-10), (F32, 1e-4)])
def test_discretized_uncoupled_pmf_sums_to_one(dtype, atol):
    dist = DiscretizedLogisticMixture(num_bins=256, event_ndims=0)
    p = random_and_extreme_dlm_params(4, 12, 3, dtype, coupled=False)
    levels = jnp.arange(256, dtype=jnp.int32)[:, None]  # (256, 1) against params (24, K)
    log_pmf = log_prob(dist, p, levels)
    assert log_pmf.shape == (256, 24) and log_pmf.dtype == dtype
    assert np.all(np.isfinite(log_pmf))
    np.testing.assert_allclose(jnp.exp(log_pmf).sum(0), 1.0, atol=atol)


@pytest.mark.parametrize("dtype,atol", [(F64, 1e-10), (F32, 1e-4)])
def test_discretized_coupled_pmf_sums_to_one(dtype, atol):
    dist = DiscretizedLogisticMixture(num_bins=8, event_ndims=1, channel_coupled=True)
    p = random_and_extreme_dlm_params(5, 12, 4, dtype, coupled=True)
    triples = jnp.asarray(all_rgb_levels(8))[:, None, :]  # (512, 1, 3) against 24 pixels
    log_pmf = log_prob(dist, p, triples)
    assert log_pmf.shape == (512, 24) and log_pmf.dtype == dtype
    assert np.all(np.isfinite(log_pmf))
    np.testing.assert_allclose(jnp.exp(log_pmf).sum(0), 1.0, atol=atol)


def test_discretized_float32_tails_match_float64():
    """Log masses stay accurate in float32 where the bin mass underflows."""
    dist = DiscretizedLogisticMixture(num_bins=256, event_ndims=0)
    p64 = dlm_params(rng(6), (16,), 3, F64, coupled=False, extreme=True)
    p32 = jax.tree.map(lambda a: a.astype(F32), p64)
    levels = jnp.arange(256)[:, None]
    lp64 = np.asarray(log_prob(dist, p64, levels))
    lp32 = np.asarray(log_prob(dist, p32, levels))
    np.testing.assert_allclose(lp32, lp64, rtol=1e-4, atol=1e-3)


# ---- agreement with scipy / numpy references --------------------------------


@pytest.mark.parametrize(
    "dist,ref", [(Normal(), scipy.stats.norm), (Logistic(), scipy.stats.logistic)], ids=["normal", "logistic"]
)
def test_log_prob_matches_scipy(dist, ref):
    k1, k2 = split(7, 2)
    p = loc_scale_params(k1, (50,), F64)
    x = 3.0 * jax.random.normal(k2, (50,), F64)
    expected = ref.logpdf(np.asarray(x), np.asarray(p["loc"]), np.exp(np.asarray(p["log_scale"])))
    np.testing.assert_allclose(log_prob(dist, p, x), expected, rtol=1e-12)


def test_standard_normal_matches_scipy():
    x = jax.random.normal(rng(8), (6, 2, 3), F64)
    expected = scipy.stats.norm.logpdf(np.asarray(x)).sum((-2, -1))
    np.testing.assert_allclose(log_prob(StandardNormal((2, 3)), (), x), expected, rtol=1e-12)


def test_mixture_of_logistics_matches_scipy():
    k1, k2 = split(9, 2)
    p = {k: np.asarray(v) for k, v in mixture_params(k1, (40,), 5, F64).items()}
    x = np.asarray(3.0 * jax.random.normal(k2, (40,), F64))
    comp = scipy.stats.logistic.logpdf(x[:, None], p["means"], np.exp(p["log_scales"]))
    expected = scipy.special.logsumexp(comp + scipy.special.log_softmax(p["logits"], -1), axis=-1)
    np.testing.assert_allclose(log_prob(MixtureOfLogistics(), p, x), expected, rtol=1e-12)


def test_bernoulli_matches_scipy():
    k1, k2 = split(10, 2)
    logits = 3.0 * jax.random.normal(k1, (30,), F64)
    x = jax.random.bernoulli(k2, 0.5, (30,))
    expected = scipy.stats.bernoulli.logpmf(np.asarray(x), scipy.special.expit(np.asarray(logits)))
    for xs in (x, x.astype(jnp.int32), x.astype(F64)):
        np.testing.assert_allclose(log_prob(Bernoulli(), {"logits": logits}, xs), expected, rtol=1e-10)


def reference_component_mass(levels, means, log_scales, num_bins):
    """Naive float64 numpy log P(level | k), levels broadcast against (..., K)."""
    centred = 2.0 * levels / (num_bins - 1) - 1.0
    h, inv_s = 1.0 / (num_bins - 1), np.exp(-np.maximum(log_scales, -7.0))
    upper = np.where(levels == num_bins - 1, np.inf, (centred + h - means) * inv_s)
    lower = np.where(levels == 0, -np.inf, (centred - h - means) * inv_s)
    # Work on the side of zero where the CDF values are small (no cancellation).
    flip = (upper + lower) > 0
    hi, lo = np.where(flip, -lower, upper), np.where(flip, -upper, lower)
    with np.errstate(divide="ignore"):
        return np.log(scipy.special.expit(hi) - scipy.special.expit(lo))


def test_discretized_uncoupled_matches_reference():
    k1, k2 = split(11, 2)
    p = {k: np.asarray(v) for k, v in dlm_params(k1, (2, 4, 4, 3), 5, F64, coupled=False).items()}
    x = np.asarray(jax.random.randint(k2, (2, 4, 4, 3), 0, 256))
    comp = reference_component_mass(x[..., None], p["means"], p["log_scales"], 256)
    per_elem = scipy.special.logsumexp(comp + scipy.special.log_softmax(p["logits"], -1), axis=-1)
    actual = log_prob(DiscretizedLogisticMixture(), p, x)
    np.testing.assert_allclose(actual, per_elem.sum((1, 2, 3)), rtol=1e-10)


def test_discretized_coupled_matches_reference():
    k1, k2 = split(12, 2)
    p = {k: np.asarray(v) for k, v in dlm_params(k1, (2, 4, 4), 5, F64, coupled=True).items()}
    x = np.asarray(jax.random.randint(k2, (2, 4, 4, 3), 0, 256))
    c = 2.0 * x / 255.0 - 1.0
    a = np.tanh(p["coeffs"])
    m = p["means"].copy()
    m[..., 1, :] += a[..., 0, :] * c[..., 0, None]
    m[..., 2, :] += a[..., 1, :] * c[..., 0, None] + a[..., 2, :] * c[..., 1, None]
    comp = reference_component_mass(x[..., None], m, p["log_scales"], 256).sum(-2)
    per_pixel = scipy.special.logsumexp(comp + scipy.special.log_softmax(p["logits"], -1), axis=-1)
    actual = log_prob(DiscretizedLogisticMixture(channel_coupled=True), p, x)
    np.testing.assert_allclose(actual, per_pixel.sum((1, 2)), rtol=1e-10)


# ---- sample moments ---------------------------------------------------------


@pytest.mark.parametrize("dist", [Normal(), Logistic()], ids=["normal", "logistic"])
def test_loc_scale_sample_moments(dist):
    k1, k2 = split(13, 2)
    p = loc_scale_params(k1, (3,), F32)
    samples = sample(dist, p, k2, N_SAMPLES)
    scale = np.exp(np.asarray(p["log_scale"], np.float64))
    var = scale**2 * (np.pi**2 / 3 if isinstance(dist, Logistic) else 1.0)
    check_moments(samples, np.asarray(p["loc"], np.float64), var)


def test_standard_normal_sample_moments():
    samples = sample(StandardNormal((2, 3), dtype="float64"), (), rng(14), N_SAMPLES)
    assert samples.shape == (N_SAMPLES, 2, 3)
    check_moments(samples, 0.0, 1.0)


def test_mixture_of_logistics_sample_moments():
    k1, k2 = split(15, 2)
    p = mixture_params(k1, (3,), 5, F32)
    samples = sample(MixtureOfLogistics(), p, k2, N_SAMPLES)
    w = scipy.special.softmax(np.asarray(p["logits"], np.float64), -1)
    mu = np.asarray(p["means"], np.float64)
    comp_var = np.exp(2 * np.asarray(p["log_scales"], np.float64)) * np.pi**2 / 3
    mean = (w * mu).sum(-1)
    var = (w * (comp_var + mu**2)).sum(-1) - mean**2
    check_moments(samples, mean, var)


def test_bernoulli_sample_moments():
    logits = jnp.array([-3.0, -0.5, 0.0, 1.0, 4.0], F32)
    samples = sample(Bernoulli(), {"logits": logits}, rng(16), N_SAMPLES)
    assert set(np.unique(samples)) <= {0.0, 1.0}
    p1 = scipy.special.expit(np.asarray(logits, np.float64))
    check_moments(samples, p1, p1 * (1 - p1))


@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_discretized_uncoupled_sample_moments(extreme):
    dist = DiscretizedLogisticMixture(num_bins=256, event_ndims=0)
    k1, k2 = split(17, 2)
    p = dlm_params(k1, (6,), 4, F32, coupled=False, extreme=extreme)
    levels = np.arange(256.0)[:, None]
    pmf = np.exp(np.asarray(log_prob(dist, p, jnp.arange(256)[:, None]), np.float64))
    pmf /= pmf.sum(0)
    mean = (pmf * levels).sum(0)
    var = (pmf * (levels - mean) ** 2).sum(0)
    samples = sample(dist, p, k2, N_SAMPLES)
    assert samples.dtype == jnp.int32
    assert samples.min() >= 0 and samples.max() <= 255
    check_moments(samples, mean, var)


def test_discretized_coupled_sample_histogram():
    """The joint RGB histogram matches the pmf (so the coupling is sampled right)."""
    num_bins = 8
    dist = DiscretizedLogisticMixture(num_bins=num_bins, event_ndims=1, channel_coupled=True)
    k1, k2 = split(18, 2)
    p = dlm_params(k1, (), 3, F32, coupled=True)
    p["coeffs"] = 3.0 * p["coeffs"]  # strong coupling
    triples = all_rgb_levels(num_bins)
    pmf = np.exp(np.asarray(log_prob(dist, p, jnp.asarray(triples)), np.float64))
    samples = np.asarray(sample(dist, p, k2, N_SAMPLES))
    assert samples.shape == (N_SAMPLES, 3)
    codes = (samples * np.array([num_bins**2, num_bins, 1])).sum(-1)
    freq = np.bincount(codes, minlength=num_bins**3) / N_SAMPLES
    expected_codes = (triples * np.array([num_bins**2, num_bins, 1])).sum(-1)
    pmf = pmf[np.argsort(expected_codes)]
    se = np.sqrt(pmf * (1 - pmf) / N_SAMPLES)
    np.testing.assert_array_less(np.abs(freq - pmf), 5 * se + 2e-5)
    check_moments(samples, (pmf[:, None] * triples[np.argsort(expected_codes)]).sum(0),
                  (pmf[:, None] * triples[np.argsort(expected_codes)] ** 2).sum(0)
                  - (pmf[:, None] * triples[np.argsort(expected_codes)]).sum(0) ** 2)


# ---- contract: shapes, dtypes, jit, vmap, grad -------------------------------

K = 3


def _case(dist, make_params, make_x, batch, sample_shape, sample_dtype):
    return dist, make_params, make_x, batch, sample_shape, sample_dtype


CASES = {
    "normal": _case(Normal(event_ndims=1), lambda k, d: loc_scale_params(k, (4, 5), d),
                    lambda k, d: jax.random.normal(k, (4, 5), d), (4,), (4, 5), F32),
    "standard_normal": _case(StandardNormal((5,)), lambda k, d: (),
                             lambda k, d: jax.random.normal(k, (4, 5), d), (4,), (5,), F32),
    "logistic": _case(Logistic(event_ndims=1), lambda k, d: loc_scale_params(k, (4, 5), d),
                      lambda k, d: jax.random.normal(k, (4, 5), d), (4,), (4, 5), F32),
    "mixture_logistic": _case(MixtureOfLogistics(event_ndims=1), lambda k, d: mixture_params(k, (4, 5), K, d),
                              lambda k, d: jax.random.normal(k, (4, 5), d), (4,), (4, 5), F32),
    "bernoulli": _case(Bernoulli(event_ndims=1), lambda k, d: {"logits": jax.random.normal(k, (4, 5), d)},
                       lambda k, d: jax.random.bernoulli(k, 0.5, (4, 5)).astype(jnp.int32), (4,), (4, 5), F32),
    "discretized": _case(DiscretizedLogisticMixture(), lambda k, d: dlm_params(k, (2, 4, 4, 3), K, d, False),
                         lambda k, d: jax.random.randint(k, (2, 4, 4, 3), 0, 256, jnp.int32), (2,),
                         (2, 4, 4, 3), jnp.int32),
    "discretized_coupled": _case(DiscretizedLogisticMixture(channel_coupled=True),
                                 lambda k, d: dlm_params(k, (2, 4, 4), K, d, True),
                                 lambda k, d: jax.random.randint(k, (2, 4, 4, 3), 0, 256, jnp.int32), (2,),
                                 (2, 4, 4, 3), jnp.int32),
}


@pytest.fixture(params=sorted(CASES), name="case")
def _case_fixture(request):
    dist, make_params, make_x, batch, sample_shape, sample_dtype = CASES[request.param]
    k1, k2 = split(sorted(CASES).index(request.param), 2)
    return dist, make_params(k1, F32), make_x(k2, F32), batch, sample_shape, sample_dtype


def test_float32_shapes_and_dtypes(case):
    dist, params, x, batch, sample_shape, sample_dtype = case
    assert isinstance(dist, Distribution)
    hash(dist)  # usable as a static jit argument
    # Abstract evaluation: checks shapes and dtypes (x64 is on) without compiling.
    lp = jax.eval_shape(dist.log_prob, params, x)
    assert lp.shape == batch and lp.dtype == F32
    one = jax.eval_shape(dist.sample, params, rng(0))
    assert one.shape == sample_shape and one.dtype == sample_dtype
    many = sample(dist, params, rng(0), 7)
    assert many.shape == (7,) + sample_shape and many.dtype == sample_dtype
    assert jax.eval_shape(dist.log_prob, params, many).dtype == F32


def test_jit_matches_eager(case):
    dist, params, x, *_ = case
    np.testing.assert_allclose(log_prob(dist, params, x), dist.log_prob(params, x), rtol=1e-5)
    if not isinstance(dist, DiscretizedLogisticMixture):  # eager sampling there is slow to compile
        key = rng(1)
        jitted = sample(dist, params, key, 7)  # same compiled program as the shapes test
        np.testing.assert_allclose(jitted, dist.sample(params, key, 7), rtol=1e-5, atol=1e-5)


def test_vmap_matches_batched(case):
    dist, params, x, *_ = case
    param_axes = None if params == () else 0
    vmapped = jax.jit(jax.vmap(dist.log_prob, in_axes=(param_axes, 0)))(params, x)
    np.testing.assert_allclose(vmapped, log_prob(dist, params, x), rtol=1e-5)


def test_grad_is_finite(case):
    dist, params, x, *_ = case
    if params == ():
        grad = jax.jit(jax.grad(lambda v: log_prob(dist, (), v).mean()))(x)
        leaves = [grad]
    else:
        grad = jax.jit(jax.grad(lambda q: log_prob(dist, q, x).mean()))(params)
        leaves = jax.tree.leaves(grad)
    assert all(leaf.dtype == F32 and np.all(np.isfinite(leaf)) for leaf in leaves)
    assert any(np.any(leaf != 0) for leaf in leaves)


def test_grad_finite_with_extreme_discretized_params():
    dist = DiscretizedLogisticMixture(num_bins=256, event_ndims=0)
    p = dlm_params(rng(19), (16,), 3, F32, coupled=False, extreme=True)
    grad = jax.jit(jax.grad(lambda q: log_prob(dist, q, jnp.arange(256)[:, None]).mean()))(p)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad))


# ---- event_ndims summing ------------------------------------------------------


@pytest.mark.parametrize("cls", [Normal, Logistic, Bernoulli], ids=["normal", "logistic", "bernoulli"])
def test_event_ndims_sums_trailing_axes(cls):
    k1, k2 = split(20, 2)
    x = jax.random.normal(k1, (2, 3, 4), F64)
    if cls is Bernoulli:
        params, x = {"logits": jax.random.normal(k2, (3, 4), F64)}, (x > 0).astype(jnp.int32)
    else:
        params = loc_scale_params(k2, (3, 4), F64)
    elementwise = log_prob(cls(), params, x)
    for event_ndims in (1, 2, 3):
        lp = log_prob(cls(event_ndims=event_ndims), params, x)
        assert lp.shape == (2, 3, 4)[: 3 - event_ndims]
        np.testing.assert_allclose(lp, elementwise.sum(tuple(range(3 - event_ndims, 3))), rtol=1e-12)


def test_discretized_event_ndims_sums_trailing_axes():
    k1, k2 = split(21, 2)
    p = dlm_params(k1, (2, 4, 3), K, F64, coupled=False)
    x = jax.random.randint(k2, (2, 4, 3), 0, 256)
    per_elem = log_prob(DiscretizedLogisticMixture(event_ndims=0), p, x)
    for nd in (2, 3):
        lp = log_prob(DiscretizedLogisticMixture(event_ndims=nd), p, x)
        np.testing.assert_allclose(lp, per_elem.sum(tuple(range(3 - nd, 3))), rtol=1e-12)
    pc = dlm_params(k1, (2, 4), K, F64, coupled=True)
    per_pixel = log_prob(DiscretizedLogisticMixture(event_ndims=1, channel_coupled=True), pc, x)
    assert per_pixel.shape == (2, 4)
    lp = log_prob(DiscretizedLogisticMixture(event_ndims=3, channel_coupled=True), pc, x)
    np.testing.assert_allclose(lp, per_pixel.sum(), rtol=1e-12)


# ---- init ----------------------------------------------------------------------


def test_init_shapes_and_dtypes():
    x = jnp.zeros((8, 4, 5), F32)
    for cls in (Normal, Logistic):
        p = cls(event_ndims=2).init(rng(0), x)
        assert set(p) == {"loc", "log_scale"}
        assert all(v.shape == (4, 5) and v.dtype == F32 and np.all(v == 0) for v in p.values())
        assert log_prob(cls(event_ndims=2), p, x).shape == (8,)
    assert StandardNormal((4, 5)).init(rng(0), x) == ()
    assert Bernoulli(event_ndims=1).init(rng(0), x)["logits"].shape == (5,)
    p = MixtureOfLogistics(event_ndims=1, num_components=4).init(rng(0), x)
    assert p["means"].shape == (5, 4) and p["means"].dtype == F32
    assert log_prob(MixtureOfLogistics(event_ndims=1), p, x).shape == (8, 4)


@pytest.mark.parametrize("coupled", [False, True])
def test_discretized_init(coupled):
    x = jnp.zeros((2, 4, 4, 3), jnp.int32)
    with pytest.raises(NotImplementedError, match="network"):
        DiscretizedLogisticMixture(channel_coupled=coupled).init(rng(0), x)
    dist = DiscretizedLogisticMixture(channel_coupled=coupled, num_components=5)
    p = dist.init(rng(0), x)
    assert p["means"].shape == (4, 4, 3, 5) and p["logits"].dtype == F32
    assert p["logits"].shape == ((4, 4, 5) if coupled else (4, 4, 3, 5))
    assert ("coeffs" in p) == coupled
    lp = log_prob(dist, p, x)
    assert lp.shape == (2,) and np.all(np.isfinite(lp))


def test_standard_normal_normalises_fields():
    d = StandardNormal([2, 3], dtype=jnp.float64)
    assert d.event_shape == (2, 3) and d.dtype == "float64" and d.event_ndims == 2
    assert hash(d) == hash(StandardNormal((2, 3), "float64"))


# ---- bad inputs -----------------------------------------------------------------


def test_integer_params_raise():
    with pytest.raises(TypeError, match="logits.*floating-point"):
        Bernoulli().log_prob({"logits": jnp.array([1, 2])}, jnp.array([0, 1]))
    with pytest.raises(TypeError, match="loc.*floating-point"):
        Normal().log_prob({"loc": jnp.array([1]), "log_scale": jnp.zeros(1)}, jnp.zeros(1))
    p = dlm_params(rng(0), (3,), K, F32, coupled=False)
    p["logits"] = p["logits"].astype(jnp.int32)
    with pytest.raises(TypeError, match="logits.*floating-point"):
        DiscretizedLogisticMixture(event_ndims=1).log_prob(p, jnp.zeros((3,), jnp.int32))


def test_continuous_x_must_be_float():
    with pytest.raises(TypeError, match="floating-point"):
        Normal().log_prob({"loc": jnp.zeros(2), "log_scale": jnp.zeros(2)}, jnp.array([0, 1]))
    with pytest.raises(TypeError, match="floating-point"):
        StandardNormal((2,)).log_prob((), jnp.array([0, 1]))


def test_mixture_component_mismatch_raises():
    p = mixture_params(rng(0), (3,), 4, F32)
    p["means"] = p["means"][..., :3]
    with pytest.raises(ValueError, match="mixture components K"):
        MixtureOfLogistics().log_prob(p, jnp.zeros(3, F32))
    q = dlm_params(rng(0), (3,), 4, F32, coupled=False)
    q["log_scales"] = q["log_scales"][..., :2]
    with pytest.raises(ValueError, match="mixture components K"):
        DiscretizedLogisticMixture(event_ndims=1).sample(q, rng(0))


def test_coupled_needs_three_channels():
    dist = DiscretizedLogisticMixture(event_ndims=3, channel_coupled=True)
    p = dlm_params(rng(0), (2, 4, 4), K, F32, coupled=True)
    with pytest.raises(ValueError, match="3 channels"):
        dist.log_prob(p, jnp.zeros((2, 4, 4, 4), jnp.int32))
    p["means"] = jnp.zeros((2, 4, 4, 4, K), F32)
    with pytest.raises(ValueError, match="RGB axis|3 channels"):
        dist.log_prob(p, jnp.zeros((2, 4, 4, 3), jnp.int32))
    with pytest.raises(ValueError, match="event_ndims"):
        DiscretizedLogisticMixture(event_ndims=0, channel_coupled=True)


def test_other_bad_inputs_raise():
    with pytest.raises(KeyError, match="log_scale"):
        Normal().log_prob({"loc": jnp.zeros(2)}, jnp.zeros(2))
    with pytest.raises(ValueError, match=r"\(\*batch, \*\(2, 3\)\)"):
        StandardNormal((2, 3)).log_prob((), jnp.zeros((4, 3, 2)))
    with pytest.raises(TypeError, match="n must be"):
        Normal().sample({"loc": jnp.zeros(2), "log_scale": jnp.zeros(2)}, rng(0), n=2.5)
    with pytest.raises(ValueError, match="event_ndims"):
        Normal(event_ndims=-1)
    with pytest.raises(ValueError, match="event_ndims=2"):
        Normal(event_ndims=2).log_prob({"loc": jnp.zeros(3), "log_scale": jnp.zeros(3)}, jnp.zeros(3))
    with pytest.raises(ValueError, match="num_bins"):
        DiscretizedLogisticMixture(num_bins=1)


def test_sample_with_default_threefry_key():
    dist = DiscretizedLogisticMixture(event_ndims=0)
    draws = sample(dist, mixture_params(rng(22), (3,), K, F32), jax.random.key(0), 2)
    assert draws.shape == (2, 3) and draws.dtype == jnp.int32
