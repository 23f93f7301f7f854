"""The contract's corners: hashability, dtypes, scalars, degenerate init, bad params, configs."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import bijectors as fb
from flowzoo import distributions as fd

KEY = jax.random.PRNGKey(0)


def _normal(seed, shape, dtype=jnp.float32):
    return jax.random.normal(jax.random.PRNGKey(seed), shape, dtype)


def _readme_flow():
    """The README's flow, whose conditioner is an nn.Sequential holding a list."""
    inner = fb.MixtureCDFInner(num_components=4)
    conditioner = nn.Sequential([nn.Conv(8, (3, 3)), nn.elu, nn.Conv(inner.num_params, [3, 3])])
    return fd.TransformedDistribution(
        fd.StandardNormal((4, 4, 4)),
        fb.Chain([fb.ImageToLogit(num_levels=256), fb.ActNorm(),
                  fb.Coupling(fb.StripeSplit(), conditioner, inner), fb.Squeeze()]))


def test_flow_with_sequential_conditioner_is_a_static_jit_argument():
    flow = _readme_flow()
    assert hash(flow) == hash(_readme_flow()) and flow == _readme_flow()
    images = jax.random.uniform(KEY, (6, 8, 8, 1), maxval=256.0)
    params = flow.init(jax.random.PRNGKey(1), images)
    log_prob = jax.jit(lambda f, p, x: f.log_prob(p, x), static_argnums=0)
    np.testing.assert_allclose(log_prob(flow, params, images), flow.log_prob(params, images),
                               rtol=1e-5)
    # Freezing the lists into tuples keeps the parameter tree Flax would build.
    coupling = flow.bijector.bijectors[2]
    assert set(params["bijector"][2]["params"]) == {"layers_0", "layers_2"}
    assert isinstance(coupling.conditioner.layers, tuple)


def test_unhashable_configuration_names_the_field():
    with pytest.raises(TypeError,
                       match=r"(?s)Coupling is not hashable \(field conditioner.*tuples"):
        fb.Coupling(fb.ChannelSplit(), nn.Dense(4, dot_general_cls={"a": 1}), fb.AffineInner(),
                    event_ndims=1)


@pytest.mark.parametrize("param_dtype", [jnp.float16, jnp.bfloat16, jnp.int32, jnp.float64])
@pytest.mark.parametrize("bijector", [fb.Affine(event_ndims=1), fb.ActNorm(event_ndims=1),
                                      fb.LogisticMixtureCDF(num_components=3, event_ndims=1)],
                         ids=["affine", "actnorm", "mixture_cdf"])
def test_outputs_and_log_det_take_the_input_dtype_not_the_params(bijector, param_dtype):
    x = _normal(0, (4, 5))
    params = jax.tree.map(lambda a: (a + 1.0).astype(param_dtype), bijector.init(KEY, x))
    y, log_det = bijector.forward(params, x)
    x_back, inv_log_det = bijector.inverse(params, y)
    for out in (y, log_det, x_back, inv_log_det):
        assert out.dtype == jnp.float32, (out.dtype, param_dtype)


def test_int_params_act_as_their_float_values():
    x = _normal(1, (4, 3))
    y, log_det = fb.Affine(event_ndims=1).forward(
        {"shift": jnp.array([1, 2, 3]), "log_scale": jnp.array([0, 1, 0])}, x)
    np.testing.assert_allclose(y, x * np.exp([0.0, 1.0, 0.0]) + np.array([1.0, 2.0, 3.0]),
                               rtol=1e-6)
    np.testing.assert_allclose(log_det, np.ones(4))
    assert y.dtype == log_det.dtype == jnp.float32


@pytest.mark.parametrize("bijector", [fb.Affine(), fb.Sigmoid(), fb.Logit(),
                                      fb.LogisticMixtureCDF(num_components=2)])
def test_python_scalar_input_works_for_elementwise_bijectors(bijector):
    params = bijector.init(KEY, 0.3)
    y, log_det = bijector.forward(params, 0.3)
    expected = bijector.forward(params, jnp.asarray(0.3))
    np.testing.assert_allclose(y, expected[0])
    np.testing.assert_allclose(log_det, expected[1])
    assert jnp.shape(bijector.inverse(params, float(y))[0]) == ()


@pytest.mark.parametrize("bijector", [fb.ActNorm(), fb.Squeeze(), fb.Reverse(),
                                      fb.Chain([fb.Reverse()]), fb.ScanChain(fb.Reverse(), 2),
                                      fb.PerHalf(fb.ChannelSplit(), fb.Sigmoid(event_ndims=1)),
                                      fb.SwapHalves(fb.ChannelSplit(), event_ndims=1)],
                         ids=lambda b: type(b).__name__)
def test_python_scalar_input_to_a_shaped_bijector_names_the_layout(bijector):
    params = bijector.init(KEY, _normal(0, (3, 4, 4, 2)))
    with pytest.raises(ValueError, match="expects an array of rank >= "):
        bijector.forward(params, 0.5)
    with pytest.raises(ValueError, match="expects an array of rank >= "):
        bijector.inverse(params, 1.5)


def test_python_int_input_names_the_cast():
    with pytest.raises(TypeError, match="astype"):
        fb.Sigmoid().forward((), 1)


@pytest.mark.parametrize("bijector", [fb.Reverse(), fb.Permute((1, 0, 3, 2)),
                                      fb.SwapHalves(fb.StripeSplit()), fb.Squeeze(),
                                      fb.ScanChain(fb.Reverse(), 2),
                                      fb.PerHalf(fb.StripeSplit(), fb.Reverse(event_ndims=3))],
                         ids=lambda b: type(b).__name__)
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_])
def test_every_permutation_rejects_integer_input_alike(bijector, dtype):
    """One rule: bijectors take floats (a log-det has the input's float dtype)."""
    x = jnp.ones((2, 4, 4, 4), dtype)
    params = bijector.init(KEY, x.astype(jnp.float32))
    for method in (bijector.forward, bijector.inverse):
        with pytest.raises(TypeError, match=r"floating-point.*astype\(jnp.float32\)"):
            method(params, x)


def test_actnorm_init_on_an_empty_batch_raises():
    for per in ("element", "channel"):
        with pytest.raises(ValueError, match="from 0 value.*init_batch_size"):
            fb.ActNorm(per=per).init(KEY, jnp.ones((0, 4, 4, 2)))


def test_actnorm_init_on_one_example_per_element_raises_and_per_channel_works():
    x = 3.0 + _normal(2, (1, 4, 4, 2), jnp.float64)
    with pytest.raises(ValueError, match="from 1 value.*per='channel'"):
        fb.ActNorm().init(KEY, x)
    with pytest.raises(ValueError, match="init_inverse estimates a variance from 1 value"):
        fb.Invert(fb.ActNorm()).init(KEY, x)
    params = fb.ActNorm(per="channel").init(KEY, x)
    y, _ = fb.ActNorm(per="channel").forward(params, x)
    np.testing.assert_allclose(jnp.var(y, axis=(0, 1, 2)), 1.0, atol=1e-6)
    assert float(jnp.max(params["scale"])) < 10.0


def test_actnorm_init_on_two_examples_normalises():
    x = 3.0 + _normal(3, (2, 4, 4, 2), jnp.float64)
    y, _ = fb.ActNorm().forward(fb.ActNorm().init(KEY, x), x)
    np.testing.assert_allclose(jnp.var(y, axis=0), 1.0, atol=1e-4)  # eps / var


_IMG = _normal(4, (2, 4, 4, 3))
_VEC = _normal(5, (2, 5))


@pytest.mark.parametrize("bijector,x,params,message", [
    (fb.ActNorm(), _IMG, {"scale": jnp.ones((4, 4, 2)), "shift": jnp.zeros((4, 4, 3))},
     r"ActNorm.forward: params\['scale'\] has shape \(4, 4, 2\).*\(2, 4, 4, 3\).*"
     r"expected \(4, 4, 3\) from ActNorm.init"),
    (fb.ActNorm(per="channel"), _IMG, {"scale": jnp.ones(4), "shift": jnp.zeros(3)},
     r"params\['scale'\] has shape \(4,\).*expected \(3,\)"),
    (fb.Affine(event_ndims=1), _VEC, {"shift": jnp.zeros(5), "log_scale": jnp.zeros(4)},
     r"Affine.forward: params\['log_scale'\] has shape \(4,\).*expected \(5,\)"),
    (fb.LogisticMixtureCDF(num_components=3, event_ndims=1), _VEC,
     {"logits": jnp.zeros((5, 3)), "means": jnp.zeros((4, 3)), "log_scales": jnp.zeros((5, 3)),
      "log_scale": jnp.zeros(5), "shift": jnp.zeros(5)},
     r"LogisticMixtureCDF.forward: params\['means'\] has shape \(4, 3\), expected \(2, 5, 3\)"),
    (fb.LogisticMixtureCDF(num_components=3, event_ndims=1), _VEC,
     {"logits": jnp.zeros((5, 3)), "means": jnp.zeros((5, 3)), "log_scales": jnp.zeros((5, 2)),
      "log_scale": jnp.zeros(5), "shift": jnp.zeros(5)},
     r"params\['log_scales'\] has shape \(5, 2\).*num_components=3"),
    (fb.LogisticMixtureCDF(num_components=3, event_ndims=1), _VEC,
     {"logits": jnp.zeros((5, 3)), "means": jnp.zeros((5, 3)), "log_scales": jnp.zeros((5, 3)),
      "log_scale": jnp.zeros(5), "shift": jnp.zeros(3)},
     r"params\['shift'\] has shape \(3,\)"),
    (fb.LUInvertible1x1Conv(), _IMG,
     {"lower": jnp.zeros((3, 3)), "upper": jnp.zeros((3, 2)), "log_diag": jnp.zeros(3)},
     r"LUInvertible1x1Conv.forward: params.*\(3, 2\).*expected"),
], ids=["actnorm_element", "actnorm_channel", "affine", "mixture_means", "mixture_k",
        "mixture_shift", "lu_conv"])
def test_param_shape_mismatch_names_the_bijector_and_shapes(bijector, x, params, message):
    for method, point in ((bijector.forward, x), (bijector.inverse, x)):
        with pytest.raises(ValueError, match=message.replace("forward", "(forward|inverse)")):
            method(params, point)


@pytest.mark.parametrize("bijector,x,params,error,message", [
    (fb.ActNorm(), _IMG, (), TypeError, r"ActNorm.forward expects params as a dict with keys "
                                        r"\['scale', 'shift'\], got tuple"),
    (fb.ActNorm(), _IMG, {"scale": 1.0}, KeyError, r"ActNorm.forward: params is missing "
                                                   r"\['shift'\]"),
    (fb.Affine(), _VEC, {"loc": 0.0, "log_scale": 0.0}, KeyError, r"Affine.forward.*\['shift'\]"),
    (fb.Invertible1x1Conv(), _IMG, {"w": jnp.eye(3)}, KeyError, r"Invertible1x1Conv.*'kernel'"),
    (fb.LUInvertible1x1Conv(), _IMG, [jnp.eye(3)], TypeError, "LUInvertible1x1Conv.*got list"),
    (fb.LogisticMixtureCDF(num_components=2), _VEC, {"logits": 0.0}, KeyError,
     "LogisticMixtureCDF.*missing"),
    (fb.Chain([fb.Sigmoid(), fb.Affine()]), _VEC, {"a": (), "b": ()}, ValueError,
     "Chain of 2 bijectors expects a tuple of 2 parameter entries, got a dict"),
    (fb.PerHalf(fb.ChannelSplit(), fb.Affine(event_ndims=1)), _normal(6, (2, 4)), {"shift": 0.0},
     ValueError, r"PerHalf.forward expects params as a pair"),
], ids=["actnorm_tuple", "actnorm_missing", "affine_keys", "conv_key", "lu_list",
        "mixture_missing", "chain_dict", "per_half_dict"])
def test_wrong_params_structure_names_the_bijector(bijector, x, params, error, message):
    with pytest.raises(error, match=message):
        bijector.forward(params, x)


@pytest.mark.parametrize("build,error,message", [
    (lambda: fb.LogisticMixtureCDF(num_components=0), ValueError, "num_components must be >= 1"),
    (lambda: fb.MixtureCDFInner(num_components=-2), ValueError, "num_components must be >= 1"),
    (lambda: fb.MixtureCDFInner(num_components=2.0), TypeError, "num_components must be an int"),
    (lambda: fb.LogisticMixtureCDF(num_newton_steps=-1), ValueError, "num_newton_steps"),
    (lambda: fb.ImageToLogit(num_levels=255.5), TypeError, "num_levels must be an int"),
    (lambda: fb.ImageToLogit(num_levels=True), TypeError, "num_levels must be an int"),
    (lambda: fb.Sigmoid(event_ndims=-1), ValueError, "Sigmoid: event_ndims must be >= 0"),
    (lambda: fb.Affine(event_ndims=1.0), TypeError, "Affine: event_ndims must be an int"),
    (lambda: fb.Reverse(event_ndims=-2), ValueError, "event_ndims must be >= 0"),
    (lambda: fb.ActNorm(event_ndims=0), ValueError, "ActNorm: event_ndims must be >= 1"),
    (lambda: fb.Invertible1x1Conv(event_ndims=-1), ValueError, "event_ndims must be >= 1"),
    (lambda: fb.Squeeze(factor=1.5), TypeError, "factor must be an int"),
    (lambda: fb.ScanChain(fb.Sigmoid(), 2.5), TypeError, "num_steps must be an int"),
    (lambda: fb.Permute((0, 1.5, 2)), TypeError, "permutation entry must be an int"),
], ids=["mixture_k0", "inner_k_negative", "inner_k_float", "newton_negative",
        "levels_float", "levels_bool", "sigmoid_negative", "affine_float", "reverse_negative",
        "actnorm_zero", "conv_negative", "squeeze_float", "scan_float", "permute_float"])
def test_bad_static_configuration_is_rejected_when_built(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_coupling_rejects_an_inner_factory_that_is_not_elementwise():
    class VectorInner:
        num_params = 2

        def __call__(self, raw):
            return fb.Affine(event_ndims=1), {"shift": raw[..., 1], "log_scale": raw[..., 0]}

    with pytest.raises(ValueError, match="VectorInner returns Affine with event_ndims=1.*"
                                         "event_ndims=0"):
        fb.Coupling(fb.ChannelSplit(), lambda x1: x1, VectorInner(), event_ndims=1)


def test_per_half_needs_the_split_axes_inside_the_event():
    with pytest.raises(ValueError, match="PerHalf: StripeSplit.*event_ndims >= 3.*Affine has "
                                         "event_ndims=1"):
        fb.PerHalf(fb.StripeSplit(), fb.Affine(event_ndims=1))


def test_a_bijector_without_event_ndims_fails_when_built():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class NoEvent(fb.Bijector):
        def forward(self, params, x, **context):
            return x, jnp.zeros(x.shape[:-1])

    with pytest.raises(NotImplementedError, match="NoEvent does not define event_ndims"):
        NoEvent()


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("x64", [True, False])
@pytest.mark.parametrize("cls", [fb.Invertible1x1Conv, fb.LUInvertible1x1Conv])
def test_1x1_convs_run_in_half_precision(cls, dtype, x64):
    """No LAPACK routine takes float16/bfloat16: log-det and inverse go through float32."""
    with jax.enable_x64(x64):
        bijector = cls()
        x = _normal(7, (2, 4, 4, 3)).astype(dtype)
        params = bijector.init(jax.random.PRNGKey(8), x)
        params = jax.tree.map(lambda a: a + 0.1 * _normal(9, a.shape).astype(a.dtype), params)
        y, log_det = jax.jit(bijector.forward)(params, x)
        x_back, inv_log_det = jax.jit(bijector.inverse)(params, y)
        assert y.dtype == log_det.dtype == x_back.dtype == inv_log_det.dtype == dtype
        reference = bijector.forward(jax.tree.map(lambda a: a.astype(jnp.float32), params),
                                     x.astype(jnp.float32))
        np.testing.assert_allclose(np.asarray(log_det, np.float32), reference[1], rtol=2e-2)
        np.testing.assert_allclose(np.asarray(x_back, np.float32), np.asarray(x, np.float32),
                                   atol=0.1)
