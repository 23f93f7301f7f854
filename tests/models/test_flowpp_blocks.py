"""Flow++ conditioner execution options: scanned and rematerialised blocks compute the
same function and gradients as the unrolled blocks, and the data-dependent init under
``nn.scan`` normalises every block on its own input."""

from __future__ import annotations

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jax_core
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from flowzoo.models.flowpp import nets, ops
from tests import jaxprs

BLOCKS = 3


def _net(scan_blocks, remat):
    return nets.CouplingNet(out_features=6, filters=8, blocks=BLOCKS, num_heads=2,
                            dropout_rate=0.3, index=7, scan_blocks=scan_blocks, remat=remat)


def _unstack(params):
    """Scanned layout (``blocks`` stacked on axis 0) -> the unrolled ``block_{b}`` layout."""
    p = dict(params["params"])
    stacked = p.pop("blocks")
    for b in range(BLOCKS):
        p[f"block_{b}"] = jax.tree.map(lambda a, b=b: a[b], stacked)
    return {"params": p}


def _inputs():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(4, 8, 8, 3)), jnp.float64)  # float64: exact comparisons
    context = jnp.asarray(rng.normal(size=(4, 8, 8, 5)), jnp.float64)
    return x, context


def test_scan_and_remat_match_the_unrolled_blocks_with_dropout():
    x, context = _inputs()
    scanned = _net(True, True)
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          scanned.init({"params": jax.random.PRNGKey(0)}, x, context))
    unrolled_params = _unstack(params)
    key = jax.random.PRNGKey(5)

    def loss(net, p, x):
        return jnp.sum(jnp.sin(net.apply(p, x, context, dropout_key=key)))

    reference_value, (reference_grad_p, reference_grad_x) = jax.value_and_grad(
        lambda p, x: loss(_net(False, False), p, x), argnums=(0, 1))(unrolled_params, x)
    # Dropout is on: without a key the same network gives another value.
    assert abs(jnp.sum(jnp.sin(_net(False, False).apply(unrolled_params, x, context)))
               - reference_value) > 1e-3
    for scan_blocks, remat in ((True, True), (True, False), (False, True)):
        p = params if scan_blocks else unrolled_params
        value, (grad_p, grad_x) = jax.jit(jax.value_and_grad(
            lambda p, x, n=_net(scan_blocks, remat): loss(n, p, x), argnums=(0, 1)))(p, x)
        np.testing.assert_allclose(value, reference_value, rtol=1e-10)
        np.testing.assert_allclose(grad_x, reference_grad_x, rtol=1e-8, atol=1e-12)
        grad_p = _unstack(grad_p) if scan_blocks else grad_p
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12),
                     grad_p, reference_grad_p)


def test_data_dependent_init_under_scan_normalises_each_block():
    """Each block's first conv has per-channel mean 0, variance 1 on the init batch: its
    bias was computed from that block's own weights and inputs inside the scan."""
    x, context = _inputs()
    params = _net(True, True).init({"params": jax.random.PRNGKey(1)}, x, context)
    _, state = _net(False, False).apply(_unstack(params), x, context,
                                        capture_intermediates=True)
    blocks = state["intermediates"]
    for b in range(BLOCKS):
        out = blocks[f"block_{b}"]["conv"]["conv_in"]["__call__"][0]
        np.testing.assert_allclose(jnp.mean(out, axis=(0, 1, 2)), 0.0, atol=1e-4)
        np.testing.assert_allclose(jnp.var(out, axis=(0, 1, 2)), 1.0, rtol=1e-3)
    kernels = params["params"]["blocks"]["conv"]["conv_in"]["kernel"]
    assert not np.allclose(kernels[0], kernels[1])  # one weight draw per block


def test_conv_same_gradients_equal_autodiff_of_the_plain_convolution():
    """``ops.conv_same`` writes its gradients by hand (a fast path for XLA:CPU inside
    ``nn.scan``); they must equal autodiff of ``lax.conv_general_dilated``, for square and
    non-square odd kernels and non-square images, and with more output than input channels
    and the other way round (the kernel gradient is a convolution when x is the wider side,
    shifted-window products otherwise: both forms are checked on both sides)."""
    rng = np.random.default_rng(11)
    for (kh, kw), (c_in, c_out) in itertools.product(((3, 3), (1, 3), (5, 3)), ((4, 7), (8, 3))):
        x = jnp.asarray(rng.normal(size=(2, 6, 5, c_in)), jnp.float64)
        kernel = jnp.asarray(rng.normal(size=(kh, kw, c_in, c_out)), jnp.float64)
        weights = jnp.asarray(rng.normal(size=(2, 6, 5, c_out)), jnp.float64)

        def plain(x, k):
            return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))

        def loss(conv):
            return lambda x, k: jnp.sum(jnp.tanh(conv(x, k)) * weights)

        np.testing.assert_allclose(ops.conv_same(x, kernel), plain(x, kernel), rtol=1e-12)
        got = jax.grad(loss(ops.conv_same), argnums=(0, 1))(x, kernel)
        want = jax.grad(loss(plain), argnums=(0, 1))(x, kernel)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
        _, vjp = jax.vjp(plain, x, kernel)
        dy = jnp.asarray(rng.normal(size=(2, 6, 5, c_out)), jnp.float64)
        for form in (ops._kernel_gradient_as_conv, ops._kernel_gradient_as_products):
            np.testing.assert_allclose(form(x, dy, kh, kw), vjp(dy)[1], rtol=1e-10,
                                       atol=1e-12, err_msg=form.__name__)
        # The rule batches (vmap over kernels) and jits to the same numbers.
        kernels = jnp.stack([kernel, -0.5 * kernel])
        got_v = jax.jit(jax.vmap(jax.grad(loss(ops.conv_same), argnums=1),
                                 in_axes=(None, 0)))(x, kernels)
        want_v = jax.vmap(jax.grad(loss(plain), argnums=1), in_axes=(None, 0))(x, kernels)
        np.testing.assert_allclose(got_v, want_v, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="odd kernel sizes"):
        ops.conv_same(x, jnp.ones((2, 3, c_in, c_out), x.dtype))


def test_conv_product_forms_equal_the_plain_convolution_and_its_kernel_gradient():
    """The bfloat16 CPU path's forms (``_conv_as_products``: shifted taps summed on the
    output; ``_kernel_gradient_as_one_product``: the narrower side's windows against the
    other's rows) compute the same sums as the plain convolution, in float64, for square and
    non-square odd kernels, both sides of the kernel gradient's shift."""
    rng = np.random.default_rng(12)
    for (kh, kw), (c_in, c_out) in itertools.product(((3, 3), (1, 3), (5, 3)), ((4, 7), (8, 3))):
        x = jnp.asarray(rng.normal(size=(2, 6, 5, c_in)), jnp.float64)
        kernel = jnp.asarray(rng.normal(size=(kh, kw, c_in, c_out)), jnp.float64)
        dy = jnp.asarray(rng.normal(size=(2, 6, 5, c_out)), jnp.float64)
        np.testing.assert_allclose(ops._conv_as_products(x, kernel), ops.conv_nhwc(x, kernel),
                                   rtol=1e-12, atol=1e-12)
        _, vjp = jax.vjp(ops.conv_nhwc, x, kernel)
        np.testing.assert_allclose(ops._kernel_gradient_as_one_product(x, dy, kh, kw),
                                   vjp(dy)[1], rtol=1e-10, atol=1e-12)


# (I, O, convolutions left in conv_same's program, forward and backward).  Products where
# the output width is a multiple of 32 and at most twice the input's, the input at least 32
# wide (padded with zeros to 32s): (40, 32)'s input gradient (40 wide) and (32, 40)'s
# forward stay convolutions, as do (32, 96)'s forward (too wide) and both of (16, 32)'s.
BF16_CONV_CASES = [(64, 32, 0), (32, 64, 0), (40, 32, 1), (32, 40, 1), (32, 96, 1), (16, 32, 2)]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU backend's bfloat16 path")
@pytest.mark.parametrize("c_in, c_out, convolutions", BF16_CONV_CASES)
def test_bfloat16_conv_same_multiplies_taps_on_cpu(c_in, c_out, convolutions):
    """On a CPU backend a bfloat16 3x3 ``conv_same`` runs its forward and input gradient as
    tap products by the width rule above, and its kernel gradient as one product always,
    accumulating in float32: the output equals the float32 convolution of the same bfloat16
    operands to float32 rounding, the gradients to bfloat16's (they return in bfloat16)."""
    rng = np.random.default_rng(13)
    x = jnp.asarray(rng.normal(size=(2, 6, 5, c_in)), jnp.bfloat16)
    kernel = jnp.asarray(0.1 * rng.normal(size=(3, 3, c_in, c_out)), jnp.bfloat16)
    weights = jnp.asarray(rng.normal(size=(2, 6, 5, c_out)), jnp.float32)

    def loss(conv):
        return lambda x, k: jnp.sum(conv(x, k).astype(jnp.float32) * weights)

    def f32(x, k):  # what the products compute: exact products of the bfloat16 values
        return ops.conv_nhwc(x.astype(jnp.float32), k.astype(jnp.float32))

    y = ops.conv_same(x, kernel)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, f32(x, kernel), rtol=1e-5, atol=1e-5)
    # The backward pass rounds dy to bfloat16 before its products, as the reference here.
    rounded = weights.astype(jnp.bfloat16).astype(jnp.float32)
    want = jax.grad(lambda x, k: jnp.sum(f32(x, k) * rounded), argnums=(0, 1))(
        x.astype(jnp.float32), kernel.astype(jnp.float32))
    got = jax.grad(loss(ops.conv_same), argnums=(0, 1))(x, kernel)
    for g, w in zip(got, want):
        assert g.dtype == jnp.bfloat16
        np.testing.assert_allclose(g.astype(jnp.float32), w, rtol=2 ** -7, atol=1e-2)
    jaxpr = jax.make_jaxpr(jax.grad(lambda x, k: jnp.sum(ops.conv_same(x, k)),
                                    argnums=(0, 1)))(x, kernel)
    assert _count_primitive(jaxpr.jaxpr, "conv_general_dilated") == convolutions


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 5, 4)])
def test_dense_gradients_equal_autodiff_of_the_plain_product(shape):
    """``ops.dense`` (the 1x1 convolutions) writes its gradients by hand; in float64 they
    equal autodiff of the plain product, jitted and vmapped over kernels."""
    rng = np.random.default_rng(15)
    x = jnp.asarray(rng.normal(size=shape), jnp.float64)
    kernel = jnp.asarray(rng.normal(size=(4, 7)), jnp.float64)
    weights = jnp.asarray(rng.normal(size=shape[:-1] + (7,)), jnp.float64)

    def loss(product):
        return lambda x, k: jnp.sum(jnp.tanh(product(x, k)) * weights)

    np.testing.assert_allclose(ops.dense(x, kernel), x @ kernel, rtol=1e-13)
    got = jax.jit(jax.grad(loss(ops.dense), argnums=(0, 1)))(x, kernel)
    want = jax.grad(loss(jnp.matmul), argnums=(0, 1))(x, kernel)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)
    kernels = jnp.stack([kernel, -0.5 * kernel])
    got_v = jax.vmap(jax.grad(loss(ops.dense), argnums=1), in_axes=(None, 0))(x, kernels)
    want_v = jax.vmap(jax.grad(loss(jnp.matmul), argnums=1), in_axes=(None, 0))(x, kernels)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-12, atol=1e-13)


def test_bfloat16_dense_multiplies_bfloat16_operands_in_both_gradients():
    """A bfloat16 1x1 convolution's gradients round the float32 output gradient to bfloat16
    and multiply bfloat16 operands, accumulating in float32 (autodiff multiplies the float32
    output gradient: on XLA:CPU a float32 product); the values are those of the float32
    products of the same rounded operands, returned in bfloat16."""
    rng = np.random.default_rng(16)
    x = jnp.asarray(rng.normal(size=(2, 6, 5, 32)), jnp.bfloat16)
    kernel = jnp.asarray(0.1 * rng.normal(size=(32, 48)), jnp.bfloat16)
    weights = jnp.asarray(rng.normal(size=(2, 6, 5, 48)), jnp.float32)

    def loss(x, k):
        return jnp.sum(ops.dense(x, k) * weights)

    y = ops.dense(x, kernel)
    assert y.dtype == jnp.float32
    f32 = lambda x, k: x.astype(jnp.float32) @ k.astype(jnp.float32)  # noqa: E731
    np.testing.assert_allclose(y, f32(x, kernel), rtol=1e-5, atol=1e-5)
    rounded = weights.astype(jnp.bfloat16).astype(jnp.float32)
    want = jax.grad(lambda x, k: jnp.sum(f32(x, k) * rounded), argnums=(0, 1))(x, kernel)
    got = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, kernel)
    for g, w in zip(got, want):
        assert g.dtype == jnp.bfloat16
        np.testing.assert_allclose(g.astype(jnp.float32), w.astype(jnp.float32),
                                   rtol=2 ** -7, atol=1e-2)
    grad_jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(x, kernel).jaxpr
    dots = jaxprs.dot_operand_dtypes(grad_jaxpr)
    assert len(dots) == 3 and set(dots) == {("bfloat16", "bfloat16")}, dots


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's bfloat16 products")
def test_bfloat16_dense_kernel_gradient_stays_bfloat16_and_sharded_on_cpu():
    """XLA:CPU computes a bfloat16 product whose left operand contracts its leading axis in
    float32, so the kernel gradient's left operand is a channels-first copy; that copy, like
    the rest of the gradient, keeps a batch sharded over devices (a layout constraint,
    tried, gathered the whole batch on every device)."""
    mesh = Mesh(np.asarray(jax.devices()[:2]), ("data",))
    rng = np.random.default_rng(17)
    batch = NamedSharding(mesh, PartitionSpec("data"))
    x = jax.device_put(jnp.asarray(rng.normal(size=(4, 8, 8, 32)), jnp.bfloat16), batch)
    weights = jax.device_put(jnp.asarray(rng.normal(size=(4, 8, 8, 64)), jnp.float32), batch)
    kernel = jnp.asarray(rng.normal(size=(32, 64)), jnp.bfloat16)
    grad = jax.jit(jax.grad(lambda x, k, w: jnp.sum(ops.dense(x, k) * w), argnums=(0, 1)))
    hlo = grad.lower(x, kernel, weights).compile().as_text()
    assert "all-gather" not in hlo
    # Per device 128 of the 256 positions: the kernel gradient, channels first against the
    # output gradient's rows, and the input gradient.
    assert sorted(_compiled_dot_operand_types(hlo)) == [("bf16[128,64]", "bf16[32,64]"),
                                                        ("bf16[32,128]", "bf16[128,64]")]


def _compiled_dot_operand_types(hlo):
    """The operand types (``bf16[...]``, ``f32[...]``) of every dot in compiled HLO text,
    looked up among the instructions of the computation the dot is in."""
    found, types = [], {}
    for line in hlo.splitlines():
        if line.endswith("{") and not line.startswith(" "):
            types = {}  # a new computation
        defined = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (\w+\[[\d,]*\])", line)
        if defined:
            types[defined.group(1)] = defined.group(2)
        product = re.search(r" dot\(%([\w.\-]+), %([\w.\-]+)\)", line)
        if product:
            found.append(tuple(types[name] for name in product.groups()))
    return found


@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
def test_add_position_gradients_equal_autodiff_of_the_broadcast_sum(lead):
    rng = np.random.default_rng(12)
    x = jnp.asarray(rng.normal(size=lead + (4, 5, 6)), jnp.float64)
    pos = jnp.asarray(rng.normal(size=(4, 5, 6)), jnp.float64)
    weights = jnp.asarray(rng.normal(size=x.shape), jnp.float64)

    def loss(add):
        return lambda x, p: jnp.sum(jnp.sin(add(x, p)) * weights)

    np.testing.assert_allclose(ops.add_position(x, pos), x + pos, rtol=1e-15)
    got = jax.jit(jax.grad(loss(ops.add_position), argnums=(0, 1)))(x, pos)
    want = jax.grad(loss(jnp.add), argnums=(0, 1))(x, pos)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


def test_add_position_keeps_dtypes_and_sums_bfloat16_gradients_in_float32():
    rng = np.random.default_rng(13)
    x = jnp.asarray(rng.normal(size=(64, 2, 2, 3)), jnp.bfloat16)
    pos = jnp.asarray(rng.normal(size=(2, 2, 3)), jnp.float32)
    # Cotangent 1 + n/64 for example n (exact in bfloat16); their sum, 95.5, is exact in
    # float32, while a bfloat16 running sum (resolution 0.25 above 32) would round.
    weights = 1.0 + jnp.arange(64.0).reshape(64, 1, 1, 1) / 64

    def loss(x, p):
        return jnp.sum(ops.add_position(x, p).astype(jnp.float32) * weights)

    g_x, g_pos = jax.grad(loss, argnums=(0, 1))(x, pos)
    assert ops.add_position(x, pos).dtype == jnp.bfloat16
    assert g_x.dtype == jnp.bfloat16 and g_pos.dtype == jnp.float32
    np.testing.assert_array_equal(g_pos, np.full((2, 2, 3), 95.5))


@pytest.mark.parametrize("dtype, tol", [(jnp.float64, 1e-13), (jnp.float32, 1e-6),
                                        (jnp.bfloat16, 1e-2)])
def test_concat_elu_and_its_gradient_equal_the_textbook_elu_of_x_and_minus_x(dtype, tol):
    """Values equal; gradients (read from the output) to rounding, in x's dtype, exact zeros
    included, where both ELU halves have slope 1; NaN and infinities as the textbook's."""
    rng = np.random.default_rng(14)
    x = rng.normal(size=(3, 4, 5, 6)) * 3
    x.reshape(-1)[::17] = 0.0
    x = jnp.asarray(x, dtype)
    weights = jnp.asarray(rng.normal(size=x.shape[:-1] + (12,)), dtype)

    def textbook(v):
        return jax.nn.elu(jnp.concatenate([v, -v], axis=-1))

    def loss(f):
        return lambda v: jnp.sum((jnp.sin(f(v)) * weights).astype(jnp.float32))

    got = jax.jit(ops.concat_elu)(x)
    assert got.dtype == dtype and got.shape == (3, 4, 5, 12)
    np.testing.assert_array_equal(got, textbook(x))
    g = jax.jit(jax.grad(loss(ops.concat_elu)))(x)
    want = jax.grad(loss(textbook))(x)
    assert g.dtype == dtype
    np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(want, np.float64),
                               rtol=tol, atol=tol)
    # At exact zeros the gradient is the two halves' cotangents with slope 1 each.
    zero = np.asarray(x) == 0
    cot = np.asarray(jnp.cos(textbook(x)) * weights, np.float64)
    np.testing.assert_allclose(np.asarray(g, np.float64)[zero],
                               (cot[..., :6] - cot[..., 6:])[zero], rtol=tol, atol=tol)
    special = jnp.asarray([np.nan, np.inf, -np.inf, 1.5], dtype)
    np.testing.assert_array_equal(ops.concat_elu(special), textbook(special))
    cotangent = jnp.asarray([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], dtype)
    np.testing.assert_array_equal(jax.vjp(ops.concat_elu, special)[1](cotangent),
                                  jax.vjp(textbook, special)[1](cotangent))


def _count_primitive(jaxpr, name):
    """Occurrences of primitive ``name`` in ``jaxpr`` and in every jaxpr nested in it."""
    return sum((eqn.primitive.name == name)
               + sum(_count_primitive(sub, name) for sub in jax_core.jaxprs_in_params(eqn.params))
               for eqn in jaxpr.eqns)


def test_rematerialised_blocks_do_not_run_their_3x3_convolution_again():
    """The remat policy saves each gated conv's hidden layer, so the gradient of a
    rematerialised network runs exactly the convolutions of a stored one (forward, and one
    per input gradient), not the blocks' 3x3 convolutions a second time."""
    x, context = _inputs()
    params = _net(False, False).init({"params": jax.random.PRNGKey(0)}, x, context)

    def convolutions(remat):
        def loss(p, x):
            return jnp.sum(jnp.sin(_net(False, remat).apply(p, x, context,
                                                             dropout_key=jax.random.PRNGKey(1))))

        jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(params, x).jaxpr
        return _count_primitive(jaxpr, "conv_general_dilated")

    # proj_in, proj_out and one 3x3 conv per block, each forward and for its input gradient,
    # and the kernel gradients of those with more input than output channels (the blocks'
    # 2F -> F, proj_out's 8 -> 6), which ops computes as convolutions.
    expected = 2 * (BLOCKS + 2) + BLOCKS + 1
    assert convolutions(remat=False) == expected
    assert convolutions(remat=True) == expected


def test_keep_masks_are_the_16_bit_halves_of_one_flat_draw():
    """keep_masks decides two elements per 32-bit draw (low half, then high half), keeping
    an element when its half is below (1 - rate) * 2^16: the documented stream, which a
    resumed run relies on staying the same."""
    key = jax.random.PRNGKey(11)
    shape = (3, 5, 7)  # 105 elements: the last draw's high half goes unused
    got = nets.keep_masks(key, 0.2, shape)
    bits = np.asarray(jax.random.bits(key, (53,), jnp.uint32))
    halves = np.stack([bits & 0xFFFF, bits >> 16], axis=-1).reshape(-1)[:105]
    np.testing.assert_array_equal(got, (halves < 52429).reshape(shape))
    assert got.dtype == jnp.bool_
    assert nets.keep_masks(key, 0.0, shape) is None and nets.keep_masks(None, 0.2, shape) is None


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_keep_masks_keep_with_probability_one_minus_rate_independently(rate):
    n = 1 << 20
    keep = np.asarray(nets.keep_masks(jax.random.PRNGKey(3), rate, (n,)))
    p = 1.0 - rate
    # Five standard deviations of the sample frequencies.
    assert abs(keep.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    both = (keep[0::2] & keep[1::2]).mean()  # the two halves of each draw
    assert abs(both - p * p) < 5 * np.sqrt(p * p * (1 - p * p) / (n // 2))
    other = np.asarray(nets.keep_masks(jax.random.PRNGKey(4), rate, (n,)))
    assert abs((keep & other).mean() - p * p) < 5 * np.sqrt(p * p * (1 - p * p) / n)


def test_keep_masks_of_a_sharded_batch_are_drawn_shard_by_shard():
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    shape = (2 * jax.device_count(), 4, 4, 6)
    draw = jax.jit(lambda key: nets.keep_masks(key, 0.2, shape), out_shardings=sharding)
    hlo = draw.lower(jax.random.PRNGKey(5)).compile().as_text()
    assert not any(c in hlo for c in ("all-gather", "all-to-all", "collective-permute",
                                      "all-reduce")), "the mask is not computed per shard"
    np.testing.assert_array_equal(draw(jax.random.PRNGKey(5)),
                                  nets.keep_masks(jax.random.PRNGKey(5), 0.2, shape))


@pytest.mark.parametrize("make_keys", [
    lambda: jax.random.split(jax.random.PRNGKey(12), 3),  # raw uint32 key data
    lambda: jax.random.split(jax.random.key(12), 3)])     # typed keys
def test_keep_masks_with_one_key_per_example_draw_each_example_from_its_key(make_keys):
    keys = make_keys()
    shape = (3, 5, 7)
    got = nets.keep_masks(keys, 0.2, shape)
    for i in range(3):
        np.testing.assert_array_equal(got[i], nets.keep_masks(keys[i], 0.2, shape[1:]))
    assert len({np.asarray(m).tobytes() for m in got}) == 3
    with pytest.raises(ValueError, match="must start with the keys' batch shape"):
        nets.keep_masks(keys, 0.2, (4, 5, 7))


def test_keep_masks_of_per_example_keys_are_drawn_shard_by_shard():
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    n = 2 * jax.device_count()
    keys = jax.device_put(jax.random.split(jax.random.PRNGKey(5), n), sharding)
    draw = jax.jit(lambda k: nets.keep_masks(k, 0.2, (n, 4, 4, 6)), out_shardings=sharding)
    hlo = draw.lower(keys).compile().as_text()
    assert not any(c in hlo for c in ("all-gather", "all-to-all", "collective-permute",
                                      "all-reduce")), "the mask is not computed per shard"
