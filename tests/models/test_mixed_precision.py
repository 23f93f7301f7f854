"""Mixed precision (``config.model.compute_dtype``): what bfloat16 networks cost in accuracy.

On the same float32 parameters (fresh from a float32 init), a bfloat16 model must give every
example the float32 model's bits/dim within ``BPD_TOLERANCE``, and Flow++'s round trip
x -> z -> x must stay below ``ROUND_TRIP_TOLERANCE`` pixel levels: the networks' rounding
moves each coupling's parameters a little, but the coupling inverts the very same
parameters, so bfloat16 arithmetic inside the bijectors (mixture CDF, its bisection,
log-dets) is what would break the round trip here.  (In a large network it is not exact:
the inverse feeds each conditioner its input with float32 error, which now and then rounds
to the other neighbouring bfloat16 value; the official CIFAR-10 model's largest error is
then a sizeable fraction of a level, so exact decoding wants ``compute_dtype='float32'``
on the same parameters: flowzoo/models/precision.py.)  The jaxpr checks keep the policy
honest both ways: the float32 default has no bfloat16 operation at all, the bfloat16 one
multiplies in bfloat16 with float32 results, sums nothing in bfloat16 in its forward pass,
and its parameters, gradients and loss are float32; Flow++'s ``bfloat16_products`` computes
nothing in bfloat16 but the products (its activations stay float32).
Tiny models and single-sample bounds keep the compiles short.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from flowzoo import experiment
from flowzoo.errors import ConfigError
from flowzoo.models import vlae
from tests import jaxprs

# Largest per-example |bits/dim(bf16) - bits/dim(f32)| allowed; measured on these models
# (6 examples): Flow++ 4.9e-4, binary VLAE 4.6e-5, CIFAR VLAE 4.7e-5.
BPD_TOLERANCE = 1e-3
ROUND_TRIP_TOLERANCE = 1e-3  # pixel levels (0..255), max over the image

FLOWPP = dict(name="flowpp", filters=8, blocks=1, num_components=4, num_heads=2, dropout=0.0,
              layout="stripe:1", dequant_filters=8, dequant_blocks=1, dequant_steps=1,
              dequant_context_filters=4, dequant_context_blocks=1, iw_samples=1, iw_chunk=1)
VLAE_BINARY = dict(name="vlae", channels=(4,), blocks_between=0, hidden=24, latent=6,
                   features=2, pixelcnn_layers=2, pixelcnn_filters=4, prior_steps=2,
                   prior_hidden=16, posterior="iaf", posterior_steps=1, posterior_hidden=16,
                   posterior_context=4, iw_samples=1, iw_chunk=1)
VLAE_CIFAR = dict(name="vlae", family="cifar", latent_channels=4, channels=(8, 8, 8),
                  blocks=(1, 1, 1), prior_steps=1, prior_hidden=8, receptive_field=(3, 2),
                  pixelcnn_filters=8, pixelcnn_blocks=1, num_mixtures=2, iw_samples=1,
                  iw_chunk=1)
CASES = {"flowpp": (FLOWPP, (8, 8, 3), 256), "vlae_binary": (VLAE_BINARY, (28, 28, 1), 2),
         "vlae_cifar": (VLAE_CIFAR, (8, 8, 3), 256)}


def _config(name, compute_dtype):
    cfg, _, _ = CASES[name]
    return ml_collections.ConfigDict({**cfg, "compute_dtype": compute_dtype})


def _batch(name, n=6, seed=0):
    _, shape, levels = CASES[name]
    images = np.random.default_rng(seed).integers(0, levels, (n,) + shape, dtype=np.uint8)
    return {"image": jnp.asarray(images), "index": jnp.arange(n, dtype=jnp.int32)}


def _model(name, compute_dtype):
    _, shape, levels = CASES[name]
    return experiment.build_model(_config(name, compute_dtype), shape, levels)


@functools.lru_cache(maxsize=None)
def _float32_params(name):
    return jax.jit(_model(name, "float32").init)(jax.random.PRNGKey(0), _batch(name, seed=1))


def _loss_args(model, params, batch):
    args = (params, batch, jax.random.PRNGKey(2))
    return args + ((model.init_model_state(),) if model.init_model_state else ())


@pytest.mark.parametrize("name", ["flowpp", "vlae_binary"])
def test_compute_dtype_takes_the_three_policies_only(name):
    _, shape, levels = CASES[name]
    with pytest.raises(ConfigError, match=r"compute_dtype must be one of \('float32', "
                                          r"'bfloat16', 'bfloat16_products'\), got 'float16'"):
        experiment.build_model(_config(name, "float16"), shape, levels)


@pytest.mark.parametrize("name", ["vlae_binary", "vlae_cifar"])
def test_vlae_refuses_the_flowpp_only_products_policy(name):
    _, shape, levels = CASES[name]
    with pytest.raises(ConfigError, match="Flow\\+\\+ option"):
        experiment.build_model(_config(name, "bfloat16_products"), shape, levels)


def _products(jaxpr):
    return [e for e in jaxprs.equations(jaxpr)
            if e.primitive.name in ("dot_general", "conv_general_dilated")]


def _dtypes_of_products(jaxpr):
    """{(operand dtype, result dtype)} of every dot and convolution, loop bodies included."""
    return {(str(e.invars[0].aval.dtype), str(e.outvars[0].aval.dtype))
            for e in _products(jaxpr)}


def _bfloat16_sums(jaxpr):
    """Number of sums (``reduce_sum``, loop bodies included) over bfloat16 operands."""
    return sum(e.primitive.name == "reduce_sum" and e.invars[0].aval.dtype == jnp.bfloat16
               for e in jaxprs.equations(jaxpr))


# What may produce a bfloat16 value under "bfloat16_products": conversions and data
# movement of the narrowed operands, and the convolutions' tap products (float32 results).
_MOVES = {"convert_element_type", "pad", "slice", "dynamic_slice", "dynamic_update_slice",
          "transpose", "reshape", "concatenate", "broadcast_in_dim", "squeeze",
          "expand_dims", "rev", "copy", "select_n", "stack"}


def _bfloat16_out(eqn):
    return any(getattr(v.aval, "dtype", None) == jnp.bfloat16 for v in eqn.outvars)


def _bfloat16_arithmetic(jaxpr):
    """Primitives other than conversions and data movement with a bfloat16 result (loops,
    jits, checkpoints themselves aside: what they compute is checked inside)."""
    return {e.primitive.name for e in jaxprs.equations(jaxpr)
            if e.primitive.name not in _MOVES and _bfloat16_out(e)
            and not list(jax.extend.core.jaxprs_in_params(e.params))}


def _has_bfloat16(jaxpr):
    return any(_bfloat16_out(e) for e in jaxprs.equations(jaxpr))


@pytest.mark.parametrize("name", sorted(CASES))
def test_bfloat16_products_accumulate_in_float32_and_the_training_step_stays_float32(name):
    """Traced, not compiled: the loss and its gradient (Flow++ with its default scanned,
    rematerialised blocks and looped attention, whose gradients are hand-written).  The
    float32 default is the program without the option (no bfloat16 anywhere)."""
    batch = _batch(name)
    params = jax.eval_shape(_model(name, "float32").init, jax.random.PRNGKey(0), batch)
    policies = ("float32", "bfloat16") + (("bfloat16_products",) if name == "flowpp" else ())
    for compute_dtype in policies:
        model = _model(name, compute_dtype)
        if compute_dtype != "float32":  # the same parameters
            assert jax.tree.map(lambda p: (p.shape, p.dtype), jax.eval_shape(
                model.init, jax.random.PRNGKey(0), batch)) == jax.tree.map(
                lambda p: (p.shape, p.dtype), params)

        def loss(p, *rest, model=model):
            return model.loss(p, *rest)[0]

        closed = jax.make_jaxpr(jax.value_and_grad(loss))(*_loss_args(model, params, batch))
        assert {a.dtype for a in closed.out_avals} == {jnp.dtype(jnp.float32)}  # loss, grads
        if compute_dtype == "float32":
            assert not _has_bfloat16(closed.jaxpr)
        else:
            products = _dtypes_of_products(closed.jaxpr)
            assert ("bfloat16", "float32") in products
            assert ("bfloat16", "bfloat16") not in products  # accumulation is float32
            # The forward pass sums nothing in bfloat16: log-dets, mixture weights (log-
            # softmax), LayerNorm statistics, softmax denominators and the loss are float32.
            forward = jax.make_jaxpr(loss)(*_loss_args(model, params, batch))
            assert _bfloat16_sums(forward.jaxpr) == 0
        if compute_dtype == "bfloat16_products":
            # Activations stay float32: nothing but the products' operands is narrowed.
            assert _bfloat16_arithmetic(closed.jaxpr) == set()
        elif compute_dtype == "bfloat16":
            assert _bfloat16_arithmetic(closed.jaxpr)  # the check above can fail


def _per_example(name, compute_dtype):
    """Per-example bits/dim on the float32 params: Flow++'s evaluation (one dequantization
    sample, with its round-trip errors), the VLAE's single-sample bound."""
    params, batch, key = _float32_params(name), _batch(name), jax.random.PRNGKey(5)
    if name == "flowpp":
        metrics = jax.jit(_model(name, compute_dtype).evaluate)(params, batch, key)
        return {k: np.asarray(v) for k, v in metrics.items()}
    _, shape, levels = CASES[name]
    parts = vlae.make_parts(_config(name, compute_dtype), shape, levels)
    recon, kl = jax.jit(lambda p: vlae.elbo_terms(parts, p, batch, key))(params)
    return {"bits_per_dim": np.asarray(recon + kl) / np.float32(np.prod(shape) * np.log(2.0))}


@pytest.mark.parametrize("name, compute_dtype", [(name, "bfloat16") for name in sorted(CASES)]
                         + [("flowpp", "bfloat16_products")])
def test_bfloat16_bits_per_dim_match_float32_on_the_same_params(name, compute_dtype):
    bpd = "bits_per_dim"
    wide, narrow = _per_example(name, "float32"), _per_example(name, compute_dtype)
    assert narrow[bpd].dtype == np.float32
    assert np.all(np.isfinite(narrow[bpd]))
    np.testing.assert_allclose(narrow[bpd], wide[bpd], rtol=0, atol=BPD_TOLERANCE)
    assert not np.array_equal(narrow[bpd], wide[bpd]), "bfloat16 changed nothing"
    if name == "flowpp":
        assert np.max(narrow["recon_error"]) < ROUND_TRIP_TOLERANCE
        assert np.max(narrow["dequant_recon_error"]) < ROUND_TRIP_TOLERANCE


def _product_operand_dtypes(jaxpr):
    """Operand dtypes of every convolution and every product without batch axes (the
    networks' convolutions; the attention's products have batch axes), loops included."""
    return [str(e.invars[0].aval.dtype) for e in _products(jaxpr)
            if e.primitive.name == "conv_general_dilated"
            or not e.params["dimension_numbers"][1][0]]


@pytest.mark.parametrize("net", ["attention", "gated_nin", "context"])
def test_bfloat16_products_narrow_every_convolution_of_each_network(net):
    """``operand_dtype`` reaches every convolution of the Flow++ networks: both mixers'
    coupling networks (scanned, rematerialised blocks) and the context network with
    LayerNorms and attention (the official ImageNet dequantizer's).  Float32 in, float32
    out, bfloat16 operands only."""
    from flowzoo.models.flowpp import nets
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 4, 4, 6)), jnp.float32)
    if net == "context":
        module = nets.ContextNet(filters=8, blocks=2, norm=True, attention=True, num_heads=2,
                                 operand_dtype=jnp.bfloat16)
    else:
        module = nets.CouplingNet(out_features=6, filters=8, blocks=2, mixer=net, num_heads=2,
                                  scan_blocks=True, remat=True, operand_dtype=jnp.bfloat16)
    params = module.init(jax.random.PRNGKey(0), x)
    jaxpr = jax.make_jaxpr(lambda p: module.apply(p, x))(params)
    assert jaxpr.out_avals[0].dtype == jnp.float32
    dtypes = _product_operand_dtypes(jaxpr.jaxpr)
    assert len(dtypes) >= 4 and set(dtypes) == {"bfloat16"}, dtypes
