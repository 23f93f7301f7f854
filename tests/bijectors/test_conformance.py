"""One conformance suite for every bijector (cases registered in ``cases.py``)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from flowzoo import bijectors as fb
from flowzoo import distributions as fd
from tests.bijectors.cases import BATCH, CASES

IDS = [c.name for c in CASES]


@functools.lru_cache(maxsize=None)
def _build(case, dtype, seed=0):
    """(bijector, params, x, context) for a case; seeded by the case name."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(case.name.encode()))
    return case.make(key, dtype)


@functools.lru_cache(maxsize=None)
def _jitted(case, dtype):
    """Compiled (forward, inverse) for a case, shared by the checks."""
    bijector, *_ = _build(case, dtype)
    return (jax.jit(lambda p, v, c: bijector.forward(p, v, **c)),
            jax.jit(lambda p, v, c: bijector.inverse(p, v, **c)))


def _exported_bijector_classes():
    return sorted(
        (obj for name in fb.__all__ if inspect.isclass(obj := getattr(fb, name))
         and issubclass(obj, fb.Bijector) and obj is not fb.Bijector),
        key=lambda c: c.__name__)


def test_every_exported_bijector_has_conformance_cases():
    covered = {c.cls for c in CASES}
    missing = [c.__name__ for c in _exported_bijector_classes() if c not in covered]
    assert not missing, f"bijectors without conformance cases in tests/bijectors/cases.py: {missing}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_case_builds_the_declared_class(case):
    bijector, *_ = _build(case, jnp.float64)
    assert type(bijector) is case.cls


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_event_ndims_is_declared_and_checked_when_composed(case):
    """event_ndims is part of the static configuration; a composition whose parts
    disagree fails when it is built, naming both parts."""
    bijector, params, x, ctx = _build(case, jnp.float64)
    n = bijector.event_ndims
    assert type(n) is int and n == case.event_ndims
    _, log_det = jax.eval_shape(lambda p, v, c: bijector.forward(p, v, **c), params, x, ctx)
    assert log_det.shape == x.shape[:x.ndim - n]
    assert fb.Invert(bijector).event_ndims == n
    assert fb.ScanChain(bijector, 2).event_ndims == n
    other = fb.Sigmoid(event_ndims=n + 1)
    name = type(bijector).__name__
    inverted_in_scan = lambda: fb.ScanChain(fb.Chain([fb.Invert(bijector), other]), 2)  # noqa: E731
    for build, named in ((lambda: fb.Chain([bijector, other]), name),
                         (lambda: fb.Chain([other, bijector]), name), (inverted_in_scan, "Invert")):
        with pytest.raises(ValueError) as error:
            build()
        for part in (f"{named} has event_ndims={n}", f"Sigmoid has event_ndims={n + 1}", "build "):
            assert part in str(error.value)
    with pytest.raises(ValueError, match=f"has event_ndims={n + 1} but the bijector"):
        fd.TransformedDistribution(fd.StandardNormal((1,) * (n + 1)), bijector)
    if "event_ndims" in {f.name for f in dataclasses.fields(bijector)}:
        for bad in (-1, 1.0, None):
            with pytest.raises((ValueError, TypeError), match="event_ndims"):
                dataclasses.replace(bijector, event_ndims=bad)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bijector_is_hashable_and_a_static_jit_argument(case):
    bijector, params, x, ctx = _build(case, jnp.float32)
    rebuilt = dataclasses.replace(bijector)  # a new object through __init__ again
    assert rebuilt == bijector and hash(rebuilt) == hash(bijector)
    forward = jax.jit(lambda b, p, v, c: b.forward(p, v, **c), static_argnums=0)
    traced = forward.trace(bijector, params, x, ctx)
    assert traced.out_info[1].shape == x.shape[:x.ndim - case.event_ndims]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_outputs_take_the_input_dtype_whatever_the_params_dtype(case):
    bijector, params, x, ctx = _build(case, jnp.float32)
    y, _ = _jitted(case, jnp.float32)[0](params, x, ctx)
    for param_dtype in (jnp.float16, jnp.float64):
        cast = jax.tree.map(lambda a: a.astype(param_dtype)
                            if jnp.issubdtype(a.dtype, jnp.floating) else a, params)
        for method, point in ((bijector.forward, x), (bijector.inverse, y)):
            out = jax.eval_shape(lambda p, v, c: method(p, v, **c), cast, point, ctx)
            assert [a.dtype for a in out] == [jnp.float32] * 2, (param_dtype, out)


def _close(a, b, tol):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_round_trip_both_ways(case):
    _, params, x, ctx = _build(case, jnp.float64)
    forward, inverse = _jitted(case, jnp.float64)
    y, _ = forward(params, x, ctx)
    x_back, _ = inverse(params, y, ctx)
    _close(x_back, x, 1e-7)
    # The other way: start from an output-space point not produced from x.
    _, _, x_other, _ = _build(case, jnp.float64, seed=1)
    y_other, _ = forward(params, x_other, ctx)
    x_mid, _ = inverse(params, y_other, ctx)
    y_back, _ = forward(params, x_mid, ctx)
    _close(y_back, y_other, 1e-7)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_log_det_matches_jacobian(case):
    """log_det == log|det J| of the map, from jax.jacfwd + slogdet in float64."""
    bijector, params, x, ctx = _build(case, jnp.float64)
    x0 = x[0]
    ctx0 = jax.tree.map(lambda c: c[0], ctx)

    def flat_forward(v):
        return bijector.forward(params, v.reshape(x0.shape), **ctx0)[0].reshape(-1)

    def flat_inverse(v):
        return bijector.inverse(params, v.reshape(y0.shape), **ctx0)[0].reshape(-1)

    forward, inverse = _jitted(case, jnp.float64)
    y0, log_det = forward(params, x0, ctx0)
    expected = jnp.linalg.slogdet(jax.jit(jax.jacfwd(flat_forward))(x0.reshape(-1)))[1]
    _close(jnp.sum(log_det), expected, 1e-8)
    _, inv_log_det = inverse(params, y0, ctx0)
    expected_inv = jnp.linalg.slogdet(jax.jit(jax.jacfwd(flat_inverse))(y0.reshape(-1)))[1]
    _close(jnp.sum(inv_log_det), expected_inv, 1e-8)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_log_det_is_minus_inverse_log_det(case):
    _, params, x, ctx = _build(case, jnp.float64)
    forward, inverse = _jitted(case, jnp.float64)
    y, fwd = forward(params, x, ctx)
    _, inv = inverse(params, y, ctx)
    assert fwd.shape == x.shape[:x.ndim - case.event_ndims]
    assert inv.shape == fwd.shape
    _close(inv, -fwd, 1e-8)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jit_equals_eager(case):
    bijector, params, x, ctx = _build(case, jnp.float32)
    y, _ = bijector.forward(params, x, **ctx)
    for method, point in ((bijector.forward, x), (bijector.inverse, y)):
        eager = method(params, point, **ctx)
        jitted = jax.jit(method)(params, point, **ctx)
        jax.tree.map(lambda a, b: _close(a, b, 1e-5), eager, jitted)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vmap_over_batch_equals_batched_call(case):
    _, params, x, ctx = _build(case, jnp.float64)
    forward, inverse = _jitted(case, jnp.float64)
    y, _ = forward(params, x, ctx)
    for method, point in ((forward, x), (inverse, y)):
        batched = method(params, point, ctx)
        mapped = jax.jit(jax.vmap(method, in_axes=(None, 0, 0)))(params, point, ctx)
        jax.tree.map(lambda a, b: _close(a, b, 1e-10), batched, mapped)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_are_finite(case):
    bijector, params, x, ctx = _build(case, jnp.float32)

    def objective(method):
        def f(p, v):
            out, log_det = method(p, v, **ctx)
            return jnp.sum(out ** 2) + jnp.sum(log_det)
        return f

    y, _ = _jitted(case, jnp.float32)[0](params, x, ctx)
    for method, point in ((bijector.forward, x), (bijector.inverse, y)):
        g_params, g_input = jax.jit(jax.grad(objective(method), argnums=(0, 1)))(params, point)
        for leaf in jax.tree.leaves((g_params, g_input)):
            assert bool(jnp.all(jnp.isfinite(leaf)))
        assert float(jnp.max(jnp.abs(g_input))) > 0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float32_in_float32_out(case):
    _, params, x, ctx = _build(case, jnp.float32)
    forward, inverse = _jitted(case, jnp.float32)
    assert x.dtype == jnp.float32
    y, fwd = forward(params, x, ctx)
    x_back, inv = inverse(params, y, ctx)
    for out in (y, fwd, x_back, inv):
        assert out.dtype == jnp.float32, out.dtype
    _close(x_back, x, 1e-3)
    # Backward error y -> x -> y, which ill-conditioning cannot inflate.
    y_back, _ = forward(params, x_back, ctx)
    _close(y_back, y, 1e-4)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_data_parallel_jit_matches_single_device(case):
    """Sharding the batch over devices gives the single-device result."""
    bijector, params, x, ctx = _build(case, jnp.float32)
    mesh = Mesh(np.array(jax.devices()[:BATCH]), ("data",))
    shard = NamedSharding(mesh, PartitionSpec("data"))
    replicate = NamedSharding(mesh, PartitionSpec())
    x_s = jax.device_put(x, shard)
    ctx_s = jax.device_put(ctx, shard)
    params_r = jax.device_put(params, replicate)
    sharded = jax.jit(lambda p, v, c: bijector.forward(p, v, **c))(params_r, x_s, ctx_s)
    single = _jitted(case, jnp.float32)[0](params, x, ctx)
    jax.tree.map(lambda a, b: _close(a, b, 1e-5), sharded, single)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_init_is_pure_and_jittable(case):
    bijector, _, x, ctx = _build(case, jnp.float32)
    key = jax.random.PRNGKey(3)
    eager = bijector.init(key, x, **ctx)
    jitted = jax.jit(lambda k, v, c: bijector.init(k, v, **c))(key, x, ctx)
    jax.tree.map(lambda a, b: _close(a, b, 1e-5), eager, jitted)
    y, log_det = bijector.forward(eager, x, **ctx)
    # init_and_forward (which compositions override) is init, then forward.
    jax.tree.map(lambda a, b: _close(a, b, 1e-5), bijector.init_and_forward(key, x, **ctx),
                 (eager, y, log_det))
    shapes = jax.tree.map(jnp.shape, bijector.init_inverse(key, y, **ctx))
    assert shapes == jax.tree.map(jnp.shape, eager)


def test_every_exported_coupling_factory_is_exercised():
    """Inner factories (AffineInner, MixtureCDFInner, ...) are covered through
    Coupling cases; a new factory needs one."""
    exported = {obj for name in fb.__all__ if inspect.isclass(obj := getattr(fb, name))
                and name.endswith("Inner")}
    used = {type(_build(c, jnp.float64)[0].inner) for c in CASES if c.cls is fb.Coupling}
    missing = sorted(c.__name__ for c in exported - used)
    assert not missing, f"coupling factories without a Coupling case: {missing}"
