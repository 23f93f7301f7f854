"""Tests for the flowzoo distributions (x64 is on, see conftest; float32 is passed explicitly)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps
import scipy.stats

from flowzoo.distributions import (
    Bernoulli, DiscretizedLogisticMixture as DLM, Distribution, Logistic, MixtureOfLogistics,
    Normal, StandardNormal,
)

N_SAMPLES = 200_000
F32, F64 = jnp.float32, jnp.float64
K = 3
LOC_SCALE = {"normal": Normal(), "logistic": Logistic()}


def rng(seed):
    """Seeded key; "rbg" compiles ~8x faster than the default threefry on CPU."""
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
        return scale * sps.ndtri(self.uniform(shape))

    def integers(self, shape, high):
        return (self.uniform(shape) * high).astype(np.int32)


def as_arrays(params, dtype):
    return {k: jnp.asarray(np.asarray(v, dtype)) for k, v in params.items()}


def loc_scale_params(draws, shape, dtype):
    loc, log_scale = draws.normal(shape, 2.0), draws.uniform(shape, -1.5, 1.5)
    return as_arrays({"loc": loc, "log_scale": log_scale}, dtype)


def mixture_params(draws, shape, num_k, dtype, log_scale_range=(-4.0, 1.0)):
    full = tuple(shape) + (num_k,)
    return as_arrays({"logits": draws.normal(full, 1.5), "means": draws.normal(full, 2.0),
                      "log_scales": draws.uniform(full, *log_scale_range)}, dtype)


def dlm_params(draws, pixel_shape, num_k, dtype, coupled, extreme=False):
    """DLM params; ``extreme``: means in {-3 .. 3} incl. +-1, log_scales in {-9, -7, 3}."""
    chan = pixel_shape + ((3, num_k) if coupled else (num_k,))
    if extreme:
        means = np.array([-3.0, -1.5, -1.0, -0.999, 0.0, 1.0, 1.5, 3.0])[draws.integers(chan, 8)]
        log_scales = np.array([-9.0, -7.0, 3.0])[draws.integers(chan, 3)]
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
    np.testing.assert_array_less(abs(samples.mean(0) - mean), n_se * samples.std(0) / root_n)
    np.testing.assert_array_less(abs(samples.var(0) - var), n_se * sq_dev.std(0) / root_n)


# ---- normalisation ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", ["normal", "logistic", "mixture"])
def test_density_integrates_to_one(name, seed):
    if name == "mixture":  # K=5, scales down to 0.007
        dist = MixtureOfLogistics()
        p = mixture_params(Draws(seed), (), 5, F64, log_scale_range=(-5.0, 1.0))
        centres, scales = p["means"], np.exp(p["log_scales"])
    else:
        dist, p = LOC_SCALE[name], loc_scale_params(Draws(seed), (), F64)
        centres, scales = p["loc"], np.exp(p["log_scale"])
    # Union of per-component grids: every component is resolved on its own scale.
    offsets = np.linspace(-60.0, 60.0, 40_001)
    grid = np.sort((np.reshape(centres, (-1, 1)) + np.reshape(scales, (-1, 1)) * offsets).ravel())
    assert abs(np.trapezoid(np.exp(log_prob(dist, p, grid)), grid) - 1.0) < 1e-6


@pytest.mark.parametrize("dtype,atol", [(F64, 1e-10), (F32, 1e-4)])
@pytest.mark.parametrize("coupled", [False, True], ids=["uncoupled", "coupled"])
def test_discretized_pmf_sums_to_one(coupled, dtype, atol):
    """Sum over all levels (all 8^3 RGB triples when coupled), random and extreme params."""
    draws = Draws(4)
    both = [dlm_params(draws, (12,), 4, dtype, coupled, extreme) for extreme in (False, True)]
    p = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), *both)  # 24 pixels
    if coupled:
        dist = DLM(num_bins=8, event_ndims=1, channel_coupled=True)
        x = np.indices((8, 8, 8)).reshape(3, -1).T
    else:
        dist, x = DLM(num_bins=256, event_ndims=0), np.arange(256, dtype=np.int32)
    log_pmf = log_prob(dist, p, x[:, None])  # (num_x, 24)
    assert log_pmf.shape == (len(x), 24) and log_pmf.dtype == dtype
    np.testing.assert_allclose(jnp.exp(log_pmf).sum(0), 1.0, atol=atol)
    if dtype == F32:  # log masses stay accurate where the bin masses underflow; grads finite
        p64 = jax.tree.map(lambda a: a.astype(F64), p)
        np.testing.assert_allclose(log_pmf, log_prob(dist, p64, x[:, None]), rtol=1e-4, atol=1e-3)
        grad = jax.jit(jax.grad(lambda q: log_prob(dist, q, x[:, None]).mean()))(p)
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad))


# ---- agreement with scipy / numpy references ---------------------------------------------


def test_continuous_log_probs_match_scipy():
    draws = Draws(7)
    p, x = loc_scale_params(draws, (50,), F64), draws.normal((50,), 3.0)
    for dist, ref in ((Normal(), scipy.stats.norm), (Logistic(), scipy.stats.logistic)):
        expected = ref.logpdf(x, np.asarray(p["loc"]), np.exp(p["log_scale"]))
        np.testing.assert_allclose(log_prob(dist, p, x), expected, rtol=1e-12)
    z, expected = x.reshape(25, 2), scipy.stats.norm.logpdf(x.reshape(25, 2)).sum(-1)
    np.testing.assert_allclose(log_prob(StandardNormal((2,)), (), z), expected, rtol=1e-12)
    q = {k: np.asarray(v) for k, v in mixture_params(draws, (50,), 5, F64).items()}
    comp = scipy.stats.logistic.logpdf(x[:, None], q["means"], np.exp(q["log_scales"]))
    expected = sps.logsumexp(comp + sps.log_softmax(q["logits"], -1), axis=-1)
    np.testing.assert_allclose(log_prob(MixtureOfLogistics(), q, x), expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_bernoulli_matches_scipy_and_sums_to_one(dtype):
    draws = Draws(10)
    logits = np.concatenate([draws.normal((30,), 3.0), [-1e3, -50.0, 0.0, 50.0, 1e3]])
    x, p = draws.integers((35,), 2), {"logits": jnp.asarray(logits, dtype)}
    expected = np.where(x == 1, -np.logaddexp(0, -logits), -np.logaddexp(0, logits))  # exact tails
    scipy_logpmf = scipy.stats.bernoulli.logpmf(x[:30], sps.expit(logits[:30]))
    np.testing.assert_allclose(expected[:30], scipy_logpmf)
    for xs in (x.astype(bool), x, x.astype(np.float64)):  # bool, int and float data
        lp = log_prob(Bernoulli(), p, xs)
        assert lp.dtype == dtype
        np.testing.assert_allclose(lp, expected, rtol=1e-5 if dtype == F32 else 1e-10)
    total = sum(jnp.exp(log_prob(Bernoulli(), p, np.full(35, v))) for v in (0, 1))
    np.testing.assert_allclose(total, 1.0, atol=1e-6 if dtype == F32 else 1e-14)


def reference_component_mass(levels, means, log_scales, num_bins):
    """Independent float64 numpy log P(level | k); levels broadcast against (..., K)."""
    centred = 2.0 * levels / (num_bins - 1) - 1.0
    h, inv_s = 1.0 / (num_bins - 1), np.exp(-np.maximum(log_scales, -7.0))
    upper = np.where(levels == num_bins - 1, np.inf, (centred + h - means) * inv_s)
    lower = np.where(levels == 0, -np.inf, (centred - h - means) * inv_s)
    flip = (upper + lower) > 0  # difference of the two small CDF values: no cancellation
    hi, lo = np.where(flip, -lower, upper), np.where(flip, -upper, lower)
    return np.log(sps.expit(hi) - sps.expit(lo))


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
    per_unit = sps.logsumexp(comp + sps.log_softmax(p["logits"], -1), axis=-1)
    expected = per_unit.reshape(2, -1).sum(-1)
    np.testing.assert_allclose(log_prob(DLM(channel_coupled=coupled), p, x), expected, rtol=1e-10)


# ---- sample moments ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["normal", "logistic", "standard_normal", "mixture", "bernoulli"])
def test_sample_moments(name):
    draws = Draws(13)
    if name in ("normal", "logistic"):
        dist, p = LOC_SCALE[name], loc_scale_params(draws, (3,), F32)
        mean, var = np.asarray(p["loc"], F64), np.exp(2.0 * np.asarray(p["log_scale"], F64))
        var = var * (np.pi**2 / 3 if name == "logistic" else 1.0)
    elif name == "standard_normal":
        dist, p, mean, var = StandardNormal((2, 3)), (), 0.0, 1.0
    elif name == "mixture":
        dist, p = MixtureOfLogistics(), mixture_params(draws, (3,), 5, F32)
        w, mu = sps.softmax(np.asarray(p["logits"], F64), -1), np.asarray(p["means"], F64)
        comp_var = np.exp(2.0 * np.asarray(p["log_scales"], F64)) * np.pi**2 / 3
        mean = (w * mu).sum(-1)
        var = (w * (comp_var + mu**2)).sum(-1) - mean**2
    else:
        dist, p = Bernoulli(), {"logits": jnp.array([-3.0, -0.5, 0.0, 1.0, 4.0], F32)}
        mean = sps.expit(np.asarray(p["logits"], F64))
        var = mean * (1 - mean)
    samples = sample(dist, p, rng(113), N_SAMPLES)
    assert samples.dtype == F32
    assert name != "bernoulli" or set(np.unique(samples)) <= {0.0, 1.0}
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
    tolerance = 5 * np.sqrt(pmf * (1 - pmf) / N_SAMPLES) + 2e-5
    np.testing.assert_array_less(np.abs(freq - pmf), tolerance)
    mean = pmf @ triples
    check_moments(samples, mean, pmf @ triples**2 - mean**2)


# ---- contract: shapes, dtypes, jit, vmap, grad --------------------------------------------


_MAKE_X = {"reals": lambda r: r.normal((4, 5)).astype(np.float32),
           "bits": lambda r: r.integers((4, 5), 2),
           "levels": lambda r: r.integers((2, 4, 4, 3), 256)}

CASES = {  # name: (dist, make_params(draws), kind of x); the batch is x's first axis
    "normal": (Normal(1), lambda r: loc_scale_params(r, (4, 5), F32), "reals"),
    "standard_normal": (StandardNormal((5,)), lambda r: (), "reals"),
    "logistic": (Logistic(1), lambda r: loc_scale_params(r, (4, 5), F32), "reals"),
    "mixture_logistic": (MixtureOfLogistics(1), lambda r: mixture_params(r, (4, 5), K, F32),
                         "reals"),
    "bernoulli": (Bernoulli(1), lambda r: as_arrays({"logits": r.normal((4, 5))}, F32), "bits"),
    "discretized": (DLM(), lambda r: dlm_params(r, (2, 4, 4, 3), K, F32, False), "levels"),
    "discretized_coupled": (DLM(channel_coupled=True),
                            lambda r: dlm_params(r, (2, 4, 4), K, F32, True), "levels"),
}


@pytest.fixture(params=sorted(CASES), name="case")
def _case_fixture(request):
    dist, make_params, x_kind = CASES[request.param]
    draws = Draws(100 + sorted(CASES).index(request.param))
    return dist, make_params(draws), jnp.asarray(_MAKE_X[x_kind](draws))


def test_contract(case):
    """float32 shapes and dtypes (x64 is on), jit and vmap equal eager, finite gradients."""
    dist, params, x = case
    assert isinstance(dist, Distribution) and hash(dist) is not None  # static-argument safe
    sample_shape = (5,) if params == () else x.shape  # StandardNormal((5,)) has no params
    sample_dtype = jnp.int32 if isinstance(dist, DLM) else F32
    assert jax.eval_shape(dist.sample, params, rng(0)) == jax.ShapeDtypeStruct(sample_shape,
                                                                              sample_dtype)
    many = sample(dist, params, rng(0), 7)
    assert many.shape == (7,) + sample_shape and many.dtype == sample_dtype
    assert jax.eval_shape(dist.log_prob, params, many).dtype == F32
    lp = log_prob(dist, params, x)
    assert lp.shape == x.shape[:1] and lp.dtype == F32
    np.testing.assert_allclose(lp, dist.log_prob(params, x), rtol=1e-5)
    in_axes = (None if params == () else 0, 0)
    np.testing.assert_allclose(jax.jit(jax.vmap(dist.log_prob, in_axes))(params, x), lp, rtol=1e-5)
    if not isinstance(dist, (DLM, MixtureOfLogistics)):  # eager sampling: slow per-op compiles
        np.testing.assert_allclose(many, dist.sample(params, rng(0), 7), rtol=1e-5)
    if params == ():  # parameter-free: differentiate wrt x instead
        leaves = [jax.jit(jax.grad(lambda v: log_prob(dist, (), v).mean()))(x)]
    else:
        leaves = jax.tree.leaves(jax.jit(jax.grad(lambda q: log_prob(dist, q, x).mean()))(params))
    assert all(leaf.dtype == F32 and np.all(np.isfinite(leaf)) for leaf in leaves)
    assert any(np.any(leaf != 0) for leaf in leaves)


# ---- event_ndims and init ------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Normal, DLM])
def test_event_ndims_sums_trailing_axes(cls):
    draws = Draws(20)
    if cls is DLM:
        params = dlm_params(draws, (2, 3, 4), K, F64, coupled=False)
        x = draws.integers((2, 3, 4), 256)
    else:
        params, x = loc_scale_params(draws, (3, 4), F64), draws.normal((2, 3, 4))
    elementwise = log_prob(cls(event_ndims=0), params, x)
    for nd in (1, 2, 3):
        lp = log_prob(cls(event_ndims=nd), params, x)
        assert lp.shape == (2, 3, 4)[: 3 - nd]
        np.testing.assert_allclose(lp, elementwise.sum(tuple(range(3 - nd, 3))), rtol=1e-12)


def test_init_shapes_and_dtypes():
    x = jnp.zeros((8, 4, 5), F32)
    for dist in (Normal(2), Logistic(2)):
        p = dist.init(rng(0), x)
        assert set(p) == {"loc", "log_scale"}
        assert all(v.shape == (4, 5) and v.dtype == F32 and not v.any() for v in p.values())
        assert log_prob(dist, p, x).shape == (8,)
    assert StandardNormal((4, 5)).init(rng(0), x) == ()
    assert Bernoulli(event_ndims=1).init(rng(0), x)["logits"].shape == (5,)
    p = MixtureOfLogistics(event_ndims=1, num_components=4).init(rng(0), x)
    assert p["means"].shape == (5, 4) and p["means"].dtype == F32
    d = StandardNormal([2, 3], dtype=jnp.float64)  # list and dtype object are normalised
    assert d.event_shape == (2, 3) and d.dtype == "float64" and d.event_ndims == 2
    assert hash(d) == hash(StandardNormal((2, 3), "float64"))
    levels = jnp.zeros((2, 4, 4, 3), jnp.int32)
    for dist in (MixtureOfLogistics(), DLM(), DLM(channel_coupled=True)):
        with pytest.raises(NotImplementedError, match="network"):  # no num_components given
            dist.init(rng(0), levels.astype(F32))
    for coupled in (False, True):
        dist = DLM(channel_coupled=coupled, num_components=5)
        p = dist.init(rng(0), levels)
        assert p["means"].shape == (4, 4, 3, 5) and p["logits"].dtype == F32
        assert p["logits"].shape == ((4, 4, 5) if coupled else (4, 4, 3, 5))
        assert ("coeffs" in p) == coupled and np.all(np.isfinite(log_prob(dist, p, levels)))


# ---- bad inputs -------------------------------------------------------------------------------
# Parameter values are never used here: every check fails at trace time on shapes and dtypes.

_Z3 = {"loc": np.zeros(3), "log_scale": np.zeros(3)}
_MIX = {"logits": np.zeros((3, K)), "means": np.zeros((3, K)), "log_scales": np.zeros((3, K))}
_RGB = {"logits": np.zeros((4, K)), "means": np.zeros((4, 3, K)),
        "log_scales": np.zeros((4, 3, K)), "coeffs": np.zeros((4, 3, K))}
_I3, _F3 = np.zeros(3, np.int32), np.zeros(3)
_RGB_DLM = DLM(event_ndims=2, channel_coupled=True)

BAD_INPUTS = {  # name: (thunk, exception, message regex)
    "int_logits": (lambda: Bernoulli().log_prob({"logits": _I3}, _I3), TypeError, "logits.*float"),
    "int_loc": (lambda: Normal().log_prob({**_Z3, "loc": _I3}, _F3), TypeError, "loc.*float"),
    "int_dlm_logits": (lambda: DLM(event_ndims=1).log_prob(
        {**_MIX, "logits": np.zeros((3, K), int)}, _I3), TypeError, "logits.*floating-point"),
    "int_normal_x": (lambda: Normal().log_prob(_Z3, _I3), TypeError, "x.*floating-point"),
    "mixture_k_mismatch": (lambda: MixtureOfLogistics().log_prob(
        {**_MIX, "means": np.zeros((3, K - 1))}, _F3), ValueError, "mixture components K"),
    "dlm_k_mismatch": (lambda: DLM(event_ndims=1).sample(
        {**_MIX, "log_scales": np.zeros((3, K + 1))}, rng(0)), ValueError, "mixture components K"),
    "coupled_x_4_channels": (lambda: _RGB_DLM.log_prob(_RGB, np.zeros((4, 4), int)), ValueError,
                             "3 channels"),
    "coupled_means_4_channels": (lambda: _RGB_DLM.log_prob(
        {**_RGB, "means": np.zeros((4, 4, K))}, np.zeros((4, 3), int)), ValueError, "3 channels"),
    "coupled_event_ndims_0": (lambda: DLM(event_ndims=0, channel_coupled=True), ValueError,
                              "event_ndims"),
    "missing_key": (lambda: Normal().log_prob({"loc": _F3}, _F3), KeyError, "log_scale"),
    "wrong_event_shape": (lambda: StandardNormal((2, 3)).log_prob((), np.zeros((4, 3, 2))),
                          ValueError, r"\(\*batch, \*\(2, 3\)\)"),
    "float_n": (lambda: Normal().sample(_Z3, rng(0), n=2.5), TypeError, "n must be"),
    "too_few_axes": (lambda: Normal(2).log_prob(_Z3, _F3), ValueError, "event_ndims=2"),
    "negative_event_ndims": (lambda: Normal(event_ndims=-1), ValueError, "event_ndims"),
    "one_bin": (lambda: DLM(num_bins=1), ValueError, "num_bins"),
    "zero_components": (lambda: MixtureOfLogistics(num_components=0), ValueError, "num_components"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_raises_clear_error(name):
    thunk, exception, message = BAD_INPUTS[name]
    with pytest.raises(exception, match=message):
        thunk()
