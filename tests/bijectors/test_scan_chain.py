"""ScanChain is Chain((step,) * n) with stacked parameters; SwapHalves is the tuple flip."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import bijectors as fb
from tests.bijectors.cases import _ConvConditioner


class _DropoutConditioner:
    """A pure-function conditioner whose output depends on a ``dropout_key`` context."""

    def init(self, key, x1, dropout_key=None):
        return {"w": 0.3 * jax.random.normal(key, (x1.shape[-1], 2 * x1.shape[-1]), x1.dtype)}

    def apply(self, params, x1, dropout_key=None):
        h = jnp.tanh(x1 @ params["w"])
        if dropout_key is not None:
            h = h * jax.random.bernoulli(dropout_key, 0.5, h.shape)
        return h


def _step():
    split = fb.StripeSplit()
    return fb.Chain([fb.PerHalf(split, fb.ActNorm(per="element")),
                     fb.PerHalf(split, fb.Invertible1x1Conv()),
                     fb.Coupling(split, _ConvConditioner(2 * 8),
                                 fb.MixtureCDFInner(num_components=2)),
                     fb.SwapHalves(split)])


def _unstack(params, n):
    return tuple(jax.tree.map(lambda a: a[i], params) for i in range(n))


def test_scan_chain_is_the_chain_of_its_steps():
    key_init, key_x = jax.random.split(jax.random.PRNGKey(3))
    x = jax.random.normal(key_x, (4, 4, 6, 2), jnp.float64)
    scanned = fb.ScanChain(_step(), 3)
    chain = fb.Chain((_step(),) * 3)
    params = jax.jit(scanned.init)(key_init, x)
    assert {a.shape[0] for a in jax.tree.leaves(params)} == {3}
    per_step = _unstack(params, 3)
    # The same data-dependent init as the chain (same per-step keys, same batch; the Flax
    # conditioner keeps float32 weights, hence the tolerance).
    for a, b in zip(jax.tree.leaves(per_step), jax.tree.leaves(chain.init(key_init, x))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    y, log_det = jax.jit(scanned.forward)(params, x)
    y_chain, log_det_chain = chain.forward(per_step, x)
    np.testing.assert_allclose(y, y_chain, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(log_det, log_det_chain, rtol=1e-10)
    y_unrolled, _ = jax.jit(fb.ScanChain(_step(), 3, unroll=True).forward)(params, x)
    np.testing.assert_allclose(y_unrolled, y, rtol=1e-10, atol=1e-12)
    x_back, inv_log_det = jax.jit(scanned.inverse)(params, y)
    np.testing.assert_allclose(x_back, x, atol=1e-8)
    np.testing.assert_allclose(inv_log_det, -log_det, rtol=1e-8)
    inverse_init = fb.ScanChain(_step(), 3).init_inverse(key_init, y)
    chain_inverse_init = chain.init_inverse(key_init, y)
    for a, b in zip(jax.tree.leaves(_unstack(inverse_init, 3)),
                    jax.tree.leaves(chain_inverse_init)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_scan_chain_gradients_match_the_chain():
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 4, 6, 2), jnp.float64)
    scanned, chain = fb.ScanChain(_step(), 2), fb.Chain((_step(),) * 2)
    params = scanned.init(jax.random.PRNGKey(1), x)
    g_scan = jax.grad(lambda p: jnp.sum(scanned.forward(p, x)[1]))(params)
    g_chain = jax.grad(lambda p: jnp.sum(chain.forward(p, x)[1]))(_unstack(params, 2))
    for a, b in zip(jax.tree.leaves(_unstack(g_scan, 2)), jax.tree.leaves(g_chain)):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def _two_dropout_steps(conditioner):
    """(x, a 2-step ScanChain of couplings with ``conditioner``, its params)."""
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 6), jnp.float32)
    step = fb.Coupling(fb.ChannelSplit(), conditioner, fb.AffineInner(), event_ndims=1)
    scanned = fb.ScanChain(fb.Chain([step, fb.SwapHalves(fb.ChannelSplit(), event_ndims=1)]),
                           2, fold_keys=("dropout_key",))
    return x, scanned, scanned.init(jax.random.PRNGKey(1), x)


def test_scan_chain_folds_the_step_number_into_key_context():
    x, scanned, params = _two_dropout_steps(_DropoutConditioner())
    # Same parameters in both steps, so only the dropout masks can tell the steps apart.
    params = jax.tree.map(lambda a: jnp.broadcast_to(a[:1], a.shape), params)
    key = jax.random.PRNGKey(7)
    y, _ = scanned.forward(params, x, dropout_key=key)
    chain = fb.Chain((scanned.step,) * 2)
    per_step = _unstack(params, 2)
    h = x
    for i in range(2):
        h, _ = scanned.step.forward(per_step[i], h, dropout_key=jax.random.fold_in(key, i))
    np.testing.assert_allclose(y, h, rtol=1e-6)
    same_key, _ = chain.forward(per_step, x, dropout_key=key)  # one key for both steps
    assert not np.allclose(y, same_key)
    np.testing.assert_allclose(scanned.forward(params, x)[0], chain.forward(per_step, x)[0],
                               rtol=1e-6)  # no key: the context passes through unchanged


def test_swap_halves_flips_stripes_and_is_its_own_inverse():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 4, 2))
    swap = fb.SwapHalves(fb.StripeSplit())
    y, log_det = swap.forward((), x)
    np.testing.assert_array_equal(y[:, :, 0::2], x[:, :, 1::2])
    np.testing.assert_array_equal(y[:, :, 1::2], x[:, :, 0::2])
    np.testing.assert_array_equal(swap.inverse((), y)[0], x)
    assert log_det.shape == (2,) and not np.any(log_det)


def test_bad_input_names_the_fix():
    x = jnp.ones((2, 5))
    with pytest.raises(ValueError, match="equal shape"):
        fb.SwapHalves(fb.ChannelSplit(num_first=2), event_ndims=1).forward((), x)
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        fb.ScanChain(fb.Affine(event_ndims=1), 0)
    with pytest.raises(TypeError, match="not a Bijector"):
        fb.ScanChain(lambda v: v, 2)
    squeeze = fb.ScanChain(fb.Squeeze(), 2)
    with pytest.raises(ValueError, match="keep shape and dtype"):
        squeeze.forward((), jnp.ones((1, 4, 4, 1)))
    affine = fb.ScanChain(fb.Affine(event_ndims=1), 3)
    params = affine.init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="use the output of ScanChain.init"):
        affine.forward(jax.tree.map(lambda a: a[:2], params), x)


class _PerExampleDropoutConditioner(_DropoutConditioner):
    """Its ``dropout_key`` holds one key per example (row of x1)."""

    def apply(self, params, x1, dropout_key=None):
        h = jnp.tanh(x1 @ params["w"])
        if dropout_key is not None:
            h = h * jax.vmap(lambda k: jax.random.bernoulli(k, 0.5, h.shape[1:]))(dropout_key)
        return h


@pytest.mark.parametrize("split_keys", [jax.random.PRNGKey, jax.random.key])
def test_scan_chain_folds_the_step_number_into_every_key_of_a_key_array(split_keys):
    x, scanned, params = _two_dropout_steps(_PerExampleDropoutConditioner())
    keys = jax.random.split(split_keys(7), 4)  # one per example
    y, _ = scanned.forward(params, x, dropout_key=keys)
    h = x
    for i, p in enumerate(_unstack(params, 2)):
        folded = jax.vmap(lambda k: jax.random.fold_in(k, i))(keys)
        h, _ = scanned.step.forward(p, h, dropout_key=folded)
    np.testing.assert_allclose(y, h, rtol=1e-6)
