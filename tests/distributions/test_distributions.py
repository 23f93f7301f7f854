"""Tests for flowzoo.distributions (x64 is on: see conftest; float32 is passed explicitly)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from flowzoo.distributions import (
    Bernoulli, DiscretizedLogisticMixture, Distribution, Logistic, MixtureOfLogistics, Normal,
    StandardNormal,
)

N_SAMPLES = 200_000
F32, F64 = jnp.float32, jnp.float64
K = 3
DLM = DiscretizedLogisticMixture


def rng(seed):
    """Seeded key; "rbg" compiles ~8x faster than threefry on CPU (one test uses threefry)."""
    return jax.random.key(seed, impl="rbg")


@functools.cache
def _jitted(dist):
    return jax.jit(dist.log_prob), jax.jit(dist.sample, static_argnames="n")


def log_prob(dist, params, x):
    """``dist.log_prob`` under jit: one compile per call site instead of one per op."""
    return _jitted(dist)[0](params, x)


def sample(dist, params, key, n=None):
    return _jitted(dist)[1](params, key, n=n)


@jax.jit
def _uniform_pool(key):
    return jax.random.uniform(key, (1 << 15,), F64, minval=1e-12, maxval=1.0)


class Draws:
    """Fresh random numbers from a seeded jax key: one compiled pool, shaped in numpy."""

    def __init__(self, seed):
        self._pool, self._used = np.asarray(_uniform_pool(rng(seed))), 0

    def uniform(self, shape, low=0.0, high=1.0):
        size = int(np.prod(shape))
        u = self._pool[self._used:self._used + size].reshape(shape)
        self._used += size
        return low + (high - low) * u

    def normal(self, shape, scale=1.0):
        return scale * scipy.special.ndtri(self.uniform(shape))

    def choice(self, values, shape):
        return np.asarray(values)[(self.uniform(shape) * len(values)).astype(np.int64)]

    def integers(self, shape, high):
        return (self.uniform(shape) * high).astype(np.int32)


def as_arrays(params, dtype):
    return {k: jnp.asarray(np.asarray(v, dtype)) for k, v in params.items()}


def loc_scale_params(draws, shape, dtype):
    return as_arrays({"loc": draws.normal(shape, 2.0), "log_scale": draws.uniform(shape, -1.5, 1.5)}, dtype)


def mixture_params(draws, shape, num_k, dtype, log_scale_range=(-4.0, 1.0)):
    full = tuple(shape) + (num_k,)
    return as_arrays({"logits": draws.normal(full, 1.5), "means": draws.normal(full, 2.0),
                      "log_scales": draws.uniform(full, *log_scale_range)}, dtype)


def dlm_params(draws, pixel_shape, num_k, dtype, coupled, extreme=False):
    """DLM params; ``extreme``: means in {-3 .. 3} incl. +-1, log_scales in {-9, -7, 3}."""
    chan = pixel_shape + ((3, num_k) if coupled else (num_k,))
    if extreme:
        means = draws.choice([-3.0, -1.5, -1.0, -0.999, 0.0, 1.0, 1.5, 3.0], chan)
        log_scales = draws.choice([-9.0, -7.0, 3.0], chan)
    else:
        means, log_scales = draws.uniform(chan, -1.2, 1.2), draws.uniform(chan, -4.0, 0.0)
    logits = draws.normal((pixel_shape if coupled else chan[:-1]) + (num_k,), 1.5)
    params = {"logits": logits, "means": means, "log_scales": log_scales}
    if coupled:
        params["coeffs"] = draws.normal(chan, 6.0 if extreme else 1.5)
    return as_arrays(params, dtype)


def check_moments(samples, mean, var, n_se=5.0):
    """Sample mean and variance (axis 0) within ``n_se`` standard errors of the exact ones."""
    samples = np.asarray(samples, np.float64)
    root_n, sq_dev = np.sqrt(len(samples)), (samples - samples.mean(0)) ** 2
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), n_se * samples.std(0) / root_n + 1e-12)
    np.testing.assert_array_less(np.abs(samples.var(0) - var), n_se * sq_dev.std(0) / root_n + 1e-12)


# ---- normalisation ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", ["normal", "logistic", "mixture"])
def test_density_integrates_to_one(name, seed):
    if name == "mixture":  # K=5, scales down to 0.007
        dist, p = MixtureOfLogistics(), mixture_params(Draws(seed), (), 5, F64, log_scale_range=(-5.0, 1.0))
        centres, scales = p["means"], np.exp(p["log_scales"])
    else:
        dist, p = (Normal() if name == "normal" else Logistic()), loc_scale_params(Draws(seed), (), F64)
        centres, scales = p["loc"], np.exp(p["log_scale"])
    # Union of per-component grids: every component is resolved on its own scale.
    offsets = np.linspace(-60.0, 60.0, 40_001)
    grid = np.sort((np.reshape(centres, (-1, 1)) + np.reshape(scales, (-1, 1)) * offsets).ravel())
    assert abs(np.trapezoid(np.exp(log_prob(dist, p, grid)), grid) - 1.0) < 1e-6


@pytest.mark.parametrize("dtype,atol", [(F64, 1e-10), (F32, 1e-4)])
@pytest.mark.parametrize("coupled", [False, True], ids=["uncoupled", "coupled"])
def test_discretized_pmf_sums_to_one(coupled, dtype, atol):
    """All num_bins levels (num_bins^3 RGB triples when coupled), random and extreme params."""
    draws = Draws(4)
    both = [dlm_params(draws, (12,), 4, dtype, coupled, extreme) for extreme in (False, True)]
    p = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), *both)  # 24 pixels
    if coupled:
        dist, x = DLM(num_bins=8, event_ndims=1, channel_coupled=True), np.indices((8,) * 3).reshape(3, -1).T
    else:
        dist, x = DLM(num_bins=256, event_ndims=0), np.arange(256, dtype=np.int32)
    log_pmf = log_prob(dist, p, x[:, None])  # (num_x, 24)
    assert log_pmf.shape == (len(x), 24) and log_pmf.dtype == dtype and np.all(np.isfinite(log_pmf))
    np.testing.assert_allclose(jnp.exp(log_pmf).sum(0), 1.0, atol=atol)


def test_discretized_float32_tails_match_float64():
    """Log masses (and gradients) stay accurate in float32 where the bin masses underflow."""
    dist, levels = DLM(num_bins=256, event_ndims=0), np.arange(256)[:, None]
    p64 = dlm_params(Draws(6), (16,), 3, F64, coupled=False, extreme=True)
    p32 = jax.tree.map(lambda a: a.astype(F32), p64)
    np.testing.assert_allclose(log_prob(dist, p32, levels), log_prob(dist, p64, levels), rtol=1e-4, atol=1e-3)
    grad = jax.jit(jax.grad(lambda q: log_prob(dist, q, levels).mean()))(p32)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad))


# ---- agreement with scipy / numpy references ---------------------------------------------


@pytest.mark.parametrize("dist,ref", [(Normal(), scipy.stats.norm), (Logistic(), scipy.stats.logistic)],
                         ids=["normal", "logistic"])
def test_log_prob_matches_scipy(dist, ref):
    draws = Draws(7)
    p, x = loc_scale_params(draws, (50,), F64), draws.normal((50,), 3.0)
    expected = ref.logpdf(x, np.asarray(p["loc"]), np.exp(p["log_scale"]))
    np.testing.assert_allclose(log_prob(dist, p, x), expected, rtol=1e-12)
    x = draws.normal((6, 2, 3))
    expected = scipy.stats.norm.logpdf(x).sum((-2, -1))
    np.testing.assert_allclose(log_prob(StandardNormal((2, 3)), (), x), expected, rtol=1e-12)


def test_mixture_of_logistics_matches_scipy():
    draws = Draws(9)
    p = {k: np.asarray(v) for k, v in mixture_params(draws, (40,), 5, F64).items()}
    x = draws.normal((40,), 3.0)
    comp = scipy.stats.logistic.logpdf(x[:, None], p["means"], np.exp(p["log_scales"]))
    expected = scipy.special.logsumexp(comp + scipy.special.log_softmax(p["logits"], -1), axis=-1)
    np.testing.assert_allclose(log_prob(MixtureOfLogistics(), p, x), expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_bernoulli_matches_scipy_and_sums_to_one(dtype):
    draws = Draws(10)
    logits = np.concatenate([draws.normal((30,), 3.0), [-1e3, -50.0, 0.0, 50.0, 1e3]])
    x, p = draws.integers((35,), 2), {"logits": jnp.asarray(logits, dtype)}
    expected = np.where(x == 1, -np.logaddexp(0.0, -logits), -np.logaddexp(0.0, logits))  # exact at +-1e3
    np.testing.assert_allclose(expected[:30], scipy.stats.bernoulli.logpmf(x, scipy.special.expit(logits))[:30])
    for xs in (x.astype(bool), x, x.astype(np.float64)):  # bool, int and float data
        lp = log_prob(Bernoulli(), p, xs)
        assert lp.dtype == dtype
        np.testing.assert_allclose(lp, expected, rtol=1e-5 if dtype == F32 else 1e-10)
    total = jnp.exp(log_prob(Bernoulli(), p, np.ones(35))) + jnp.exp(log_prob(Bernoulli(), p, np.zeros(35, int)))
    np.testing.assert_allclose(total, 1.0, atol=1e-6 if dtype == F32 else 1e-14)


def reference_component_mass(levels, means, log_scales, num_bins):
    """Independent float64 numpy log P(level | k); levels broadcast against (..., K)."""
    centred = 2.0 * levels / (num_bins - 1) - 1.0
    h, inv_s = 1.0 / (num_bins - 1), np.exp(-np.maximum(log_scales, -7.0))
    upper = np.where(levels == num_bins - 1, np.inf, (centred + h - means) * inv_s)
    lower = np.where(levels == 0, -np.inf, (centred - h - means) * inv_s)
    flip = (upper + lower) > 0  # difference of the two small CDF values: no cancellation
    hi, lo = np.where(flip, -lower, upper), np.where(flip, -upper, lower)
    return np.log(scipy.special.expit(hi) - scipy.special.expit(lo))


@pytest.mark.parametrize("coupled", [False, True], ids=["uncoupled", "coupled"])
def test_discretized_matches_reference(coupled):
    draws = Draws(11)
    pixels = (2, 4, 4) if coupled else (2, 4, 4, 3)
    p = {k: np.asarray(v) for k, v in dlm_params(draws, pixels, 5, F64, coupled).items()}
    x = draws.integers((2, 4, 4, 3), 256)
    means = p["means"].copy()
    if coupled:
        c, a = 2.0 * x / 255.0 - 1.0, np.tanh(p["coeffs"])
        means[..., 1, :] += a[..., 0, :] * c[..., 0, None]
        means[..., 2, :] += a[..., 1, :] * c[..., 0, None] + a[..., 2, :] * c[..., 1, None]
    comp = reference_component_mass(x[..., None], means, p["log_scales"], 256)
    comp = comp.sum(-2) if coupled else comp
    per_unit = scipy.special.logsumexp(comp + scipy.special.log_softmax(p["logits"], -1), axis=-1)
    expected = per_unit.reshape(2, -1).sum(-1)
    np.testing.assert_allclose(log_prob(DLM(channel_coupled=coupled), p, x), expected, rtol=1e-10)


# ---- sample moments ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["normal", "logistic", "standard_normal", "mixture", "bernoulli"])
def test_sample_moments(name):
    draws = Draws(13)
    if name in ("normal", "logistic"):
        dist, p = (Normal() if name == "normal" else Logistic()), loc_scale_params(draws, (3,), F32)
        mean, var = np.asarray(p["loc"], F64), np.exp(2.0 * np.asarray(p["log_scale"], F64))
        var = var * (np.pi**2 / 3 if name == "logistic" else 1.0)
    elif name == "standard_normal":
        dist, p, mean, var = StandardNormal((2, 3)), (), 0.0, 1.0
    elif name == "mixture":
        dist, p = MixtureOfLogistics(), mixture_params(draws, (3,), 5, F32)
        w, mu = scipy.special.softmax(np.asarray(p["logits"], F64), -1), np.asarray(p["means"], F64)
        comp_var = np.exp(2.0 * np.asarray(p["log_scales"], F64)) * np.pi**2 / 3
        mean = (w * mu).sum(-1)
        var = (w * (comp_var + mu**2)).sum(-1) - mean**2
    else:
        dist, p = Bernoulli(), {"logits": jnp.array([-3.0, -0.5, 0.0, 1.0, 4.0], F32)}
        mean = scipy.special.expit(np.asarray(p["logits"], F64))
        var = mean * (1 - mean)
    samples = sample(dist, p, rng(113), N_SAMPLES)
    assert samples.dtype == F32
    if name == "bernoulli":
        assert set(np.unique(samples)) <= {0.0, 1.0}
    check_moments(samples, mean, var)


@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_discretized_uncoupled_sample_moments(extreme):
    dist, levels = DLM(num_bins=256, event_ndims=0), np.arange(256)[:, None]
    p = dlm_params(Draws(17), (6,), 4, F32, coupled=False, extreme=extreme)
    pmf = np.exp(np.asarray(log_prob(dist, p, levels), F64))
    mean = (pmf * levels).sum(0)
    samples = sample(dist, p, rng(117), N_SAMPLES)
    assert samples.dtype == jnp.int32 and samples.min() >= 0 and samples.max() <= 255
    check_moments(samples, mean, (pmf * (levels - mean) ** 2).sum(0))


def test_discretized_coupled_sample_histogram():
    """The joint RGB histogram matches the pmf, so the channel coupling is sampled right."""
    dist = DLM(num_bins=8, event_ndims=1, channel_coupled=True)
    p = dlm_params(Draws(18), (), 3, F32, coupled=True)
    p["coeffs"] = 3.0 * p["coeffs"]  # strong coupling
    triples = np.indices((8, 8, 8)).reshape(3, -1).T  # row i is the base-8 code i
    pmf = np.exp(np.asarray(log_prob(dist, p, triples), F64))
    samples = np.asarray(sample(dist, p, rng(118), N_SAMPLES))
    assert samples.shape == (N_SAMPLES, 3)
    freq = np.bincount(samples @ np.array([64, 8, 1]), minlength=512) / N_SAMPLES
    np.testing.assert_array_less(np.abs(freq - pmf), 5 * np.sqrt(pmf * (1 - pmf) / N_SAMPLES) + 2e-5)
    mean = pmf @ triples
    check_moments(samples, mean, pmf @ triples**2 - mean**2)


# ---- contract: shapes, dtypes, jit, vmap, grad --------------------------------------------


def _floats_x(draws, dtype):
    return jnp.asarray(draws.normal((4, 5)), dtype)


def _levels_x(draws, dtype):
    return jnp.asarray(draws.integers((2, 4, 4, 3), 256))


# name: (dist, make_params(draws, dtype), make_x(draws, dtype), batch shape, sample shape, sample dtype)
CASES = {
    "normal": (Normal(event_ndims=1), lambda r, d: loc_scale_params(r, (4, 5), d), _floats_x, (4,), (4, 5), F32),
    "standard_normal": (StandardNormal((5,)), lambda r, d: (), _floats_x, (4,), (5,), F32),
    "logistic": (Logistic(1), lambda r, d: loc_scale_params(r, (4, 5), d), _floats_x, (4,), (4, 5), F32),
    "mixture_logistic": (MixtureOfLogistics(event_ndims=1), lambda r, d: mixture_params(r, (4, 5), K, d),
                         _floats_x, (4,), (4, 5), F32),
    "bernoulli": (Bernoulli(event_ndims=1), lambda r, d: as_arrays({"logits": r.normal((4, 5))}, d),
                  lambda r, d: jnp.asarray(r.integers((4, 5), 2)), (4,), (4, 5), F32),
    "discretized": (DLM(), lambda r, d: dlm_params(r, (2, 4, 4, 3), K, d, False), _levels_x, (2,),
                    (2, 4, 4, 3), jnp.int32),
    "discretized_coupled": (DLM(channel_coupled=True), lambda r, d: dlm_params(r, (2, 4, 4), K, d, True),
                            _levels_x, (2,), (2, 4, 4, 3), jnp.int32),
}


@pytest.fixture(params=sorted(CASES), name="case")
def _case_fixture(request):
    dist, make_params, make_x, batch, sample_shape, sample_dtype = CASES[request.param]
    draws = Draws(100 + sorted(CASES).index(request.param))
    return dist, make_params(draws, F32), make_x(draws, F32), batch, sample_shape, sample_dtype


def test_float32_shapes_and_dtypes(case):
    dist, params, x, batch, sample_shape, sample_dtype = case
    assert isinstance(dist, Distribution) and hash(dist) is not None  # usable as a static jit argument
    lp = jax.eval_shape(dist.log_prob, params, x)  # abstract evaluation: no compile
    assert lp.shape == batch and lp.dtype == F32
    one = jax.eval_shape(dist.sample, params, rng(0))
    assert one.shape == sample_shape and one.dtype == sample_dtype
    many = sample(dist, params, rng(0), 7)
    assert many.shape == (7,) + sample_shape and many.dtype == sample_dtype
    assert jax.eval_shape(dist.log_prob, params, many).dtype == F32


def test_jit_and_vmap_match_eager(case):
    dist, params, x, *_ = case
    jitted = log_prob(dist, params, x)
    np.testing.assert_allclose(jitted, dist.log_prob(params, x), rtol=1e-5)
    vmapped = jax.jit(jax.vmap(dist.log_prob, in_axes=(None if params == () else 0, 0)))(params, x)
    np.testing.assert_allclose(vmapped, jitted, rtol=1e-5)
    if not isinstance(dist, DLM):  # eager sampling there costs seconds of per-op compiles
        np.testing.assert_allclose(sample(dist, params, rng(0), 7), dist.sample(params, rng(0), 7), rtol=1e-5)


def test_grad_is_finite(case):
    dist, params, x, *_ = case
    if params == ():  # parameter-free: differentiate wrt x instead
        leaves = [jax.jit(jax.grad(lambda v: log_prob(dist, (), v).mean()))(x)]
    else:
        leaves = jax.tree.leaves(jax.jit(jax.grad(lambda q: log_prob(dist, q, x).mean()))(params))
    assert all(leaf.dtype == F32 and np.all(np.isfinite(leaf)) for leaf in leaves)
    assert any(np.any(leaf != 0) for leaf in leaves)


# ---- event_ndims ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Normal, Logistic, Bernoulli, DLM])
def test_event_ndims_sums_trailing_axes(cls):
    draws = Draws(20)
    if cls is DLM:
        params, x = dlm_params(draws, (2, 3, 4), K, F64, coupled=False), draws.integers((2, 3, 4), 256)
    elif cls is Bernoulli:
        params, x = as_arrays({"logits": draws.normal((3, 4))}, F64), draws.integers((2, 3, 4), 2)
    else:
        params, x = loc_scale_params(draws, (3, 4), F64), draws.normal((2, 3, 4))
    elementwise = log_prob(cls(event_ndims=0), params, x)
    for nd in (1, 2, 3):
        lp = log_prob(cls(event_ndims=nd), params, x)
        assert lp.shape == (2, 3, 4)[: 3 - nd]
        np.testing.assert_allclose(lp, elementwise.sum(tuple(range(3 - nd, 3))), rtol=1e-12)
    if cls is DLM:  # coupled: the channel axis is consumed per pixel
        pc = dlm_params(draws, (2, 3), K, F64, coupled=True)
        x = draws.integers((2, 3, 3), 256)
        per_pixel = log_prob(DLM(event_ndims=1, channel_coupled=True), pc, x)
        assert per_pixel.shape == (2, 3)
        np.testing.assert_allclose(log_prob(DLM(channel_coupled=True), pc, x), per_pixel.sum(), rtol=1e-12)


# ---- init -----------------------------------------------------------------------------------------


def test_init_shapes_and_dtypes():
    x = jnp.zeros((8, 4, 5), F32)
    for cls in (Normal, Logistic):
        p = cls(event_ndims=2).init(rng(0), x)
        assert set(p) == {"loc", "log_scale"}
        assert all(v.shape == (4, 5) and v.dtype == F32 and np.all(v == 0) for v in p.values())
        assert log_prob(cls(event_ndims=2), p, x).shape == (8,)
    assert StandardNormal((4, 5)).init(rng(0), x) == ()
    assert Bernoulli(event_ndims=1).init(rng(0), x)["logits"].shape == (5,)
    with pytest.raises(NotImplementedError):
        MixtureOfLogistics().init(rng(0), x)
    p = MixtureOfLogistics(event_ndims=1, num_components=4).init(rng(0), x)
    assert p["means"].shape == (5, 4) and p["means"].dtype == F32
    d = StandardNormal([2, 3], dtype=jnp.float64)  # list and dtype object are normalised
    assert d.event_shape == (2, 3) and d.dtype == "float64" and d.event_ndims == 2
    assert hash(d) == hash(StandardNormal((2, 3), "float64"))


@pytest.mark.parametrize("coupled", [False, True], ids=["uncoupled", "coupled"])
def test_discretized_init(coupled):
    x = jnp.zeros((2, 4, 4, 3), jnp.int32)
    with pytest.raises(NotImplementedError, match="network"):
        DLM(channel_coupled=coupled).init(rng(0), x)
    dist = DLM(channel_coupled=coupled, num_components=5)
    p = dist.init(rng(0), x)
    assert p["means"].shape == (4, 4, 3, 5) and p["logits"].dtype == F32
    assert p["logits"].shape == ((4, 4, 5) if coupled else (4, 4, 3, 5))
    assert ("coeffs" in p) == coupled
    lp = log_prob(dist, p, x)
    assert lp.shape == (2,) and np.all(np.isfinite(lp))
    if not coupled:  # also sample with the default (threefry) key implementation
        assert sample(dist, p, jax.random.key(0)).shape == (4, 4, 3)


# ---- bad inputs ----------------------------------------------------------------------------------

_Z3 = {"loc": jnp.zeros(3), "log_scale": jnp.zeros(3)}


def _edited(params, key, edit):
    return {**params, key: edit(params[key])}


BAD_INPUTS = {  # name: (thunk, exception, message regex)
    "int_logits": (lambda: Bernoulli().log_prob({"logits": jnp.array([1, 2])}, jnp.array([0, 1])),
                   TypeError, "logits.*floating-point"),
    "int_loc": (lambda: Normal().log_prob({**_Z3, "loc": jnp.arange(3)}, jnp.zeros(3)), TypeError, "loc.*floating"),
    "int_dlm_logits": (lambda: DLM(event_ndims=1).log_prob(
        _edited(dlm_params(Draws(0), (3,), K, F32, False), "logits", lambda a: a.astype(int)), np.zeros(3, int)),
        TypeError, "logits.*floating-point"),
    "int_normal_x": (lambda: Normal().log_prob(_Z3, jnp.arange(3)), TypeError, "x.*floating-point"),
    "int_standard_normal_x": (lambda: StandardNormal((3,)).log_prob((), jnp.arange(3)), TypeError, "x.*floating"),
    "mixture_k_mismatch": (lambda: MixtureOfLogistics().log_prob(
        _edited(mixture_params(Draws(0), (3,), 4, F32), "means", lambda a: a[..., :3]), jnp.zeros(3)),
        ValueError, "mixture components K"),
    "dlm_k_mismatch": (lambda: DLM(event_ndims=1).sample(
        _edited(dlm_params(Draws(0), (3,), 4, F32, False), "log_scales", lambda a: a[..., :2]), rng(0)),
        ValueError, "mixture components K"),
    "coupled_x_4_channels": (lambda: DLM(channel_coupled=True).log_prob(
        dlm_params(Draws(0), (2, 4, 4), K, F32, True), np.zeros((2, 4, 4, 4), int)), ValueError, "3 channels"),
    "coupled_means_4_channels": (lambda: DLM(channel_coupled=True).log_prob(
        {**dlm_params(Draws(0), (2, 4, 4), K, F32, True), "means": jnp.zeros((2, 4, 4, 4, K), F32)},
        np.zeros((2, 4, 4, 3), int)), ValueError, "3 channels"),
    "coupled_event_ndims_0": (lambda: DLM(event_ndims=0, channel_coupled=True), ValueError, "event_ndims"),
    "missing_key": (lambda: Normal().log_prob({"loc": jnp.zeros(2)}, jnp.zeros(2)), KeyError, "log_scale"),
    "wrong_event_shape": (lambda: StandardNormal((2, 3)).log_prob((), jnp.zeros((4, 3, 2))), ValueError,
                          r"\(\*batch, \*\(2, 3\)\)"),
    "float_n": (lambda: Normal().sample(_Z3, rng(0), n=2.5), TypeError, "n must be"),
    "too_few_axes": (lambda: Normal(event_ndims=2).log_prob(_Z3, jnp.zeros(3)), ValueError, "event_ndims=2"),
    "negative_event_ndims": (lambda: Normal(event_ndims=-1), ValueError, "event_ndims"),
    "one_bin": (lambda: DLM(num_bins=1), ValueError, "num_bins"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_raises_clear_error(name):
    thunk, exception, message = BAD_INPUTS[name]
    with pytest.raises(exception, match=message):
        thunk()
