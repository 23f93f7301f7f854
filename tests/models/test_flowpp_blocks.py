"""Flow++ conditioner execution options: scanned and rematerialised blocks compute the
same function and gradients as the unrolled blocks, and the data-dependent init under
``nn.scan`` normalises every block on its own input."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jax_core

from flowzoo.models.flowpp import nets

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
    """``nets.conv_same`` writes its gradients by hand (a fast path for XLA:CPU inside
    ``nn.scan``); they must equal autodiff of ``lax.conv_general_dilated``, for square and
    non-square odd kernels and non-square images, and with more output than input channels
    and the other way round (the kernel gradient shifts the narrower side)."""
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

        np.testing.assert_allclose(nets.conv_same(x, kernel), plain(x, kernel), rtol=1e-12)
        got = jax.grad(loss(nets.conv_same), argnums=(0, 1))(x, kernel)
        want = jax.grad(loss(plain), argnums=(0, 1))(x, kernel)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
        # The rule batches (vmap over kernels) and jits to the same numbers.
        kernels = jnp.stack([kernel, -0.5 * kernel])
        got_v = jax.jit(jax.vmap(jax.grad(loss(nets.conv_same), argnums=1),
                                 in_axes=(None, 0)))(x, kernels)
        want_v = jax.vmap(jax.grad(loss(plain), argnums=1), in_axes=(None, 0))(x, kernels)
        np.testing.assert_allclose(got_v, want_v, rtol=1e-10, atol=1e-12)


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

    # proj_in, proj_out and one 3x3 conv per block, each forward and for its input gradient.
    assert convolutions(remat=False) == 2 * (BLOCKS + 2)
    assert convolutions(remat=True) == 2 * (BLOCKS + 2)


def test_keep_masks_are_the_plain_bernoulli_draw_of_that_shape():
    """keep_masks draws flat and reshapes (cheaper to compile); the masks, and so every
    dropout stream of a run, must stay those of a bernoulli draw of the full shape."""
    key = jax.random.PRNGKey(11)
    shape = (3, 4, 6, 10)
    got = nets.keep_masks(key, 0.2, shape)
    np.testing.assert_array_equal(got, jax.random.bernoulli(key, 0.8, shape))
    assert got.shape == shape and 0.7 < float(jnp.mean(got)) < 0.9
    assert nets.keep_masks(key, 0.0, shape) is None and nets.keep_masks(None, 0.2, shape) is None
