"""MaskedAutoregressiveAffine against its formula, in both orders, and its errors (the
conformance suite in test_conformance.py checks the bijector contract on its cases)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import bijectors as fb


def _exclusive_cumsum(flat):
    return jnp.cumsum(flat, axis=-1) - flat


def _shift_and_log_scale(params, x, event_ndims):
    """A hand-made autoregressive conditioner on the flattened event: element i gets
    mu_i = 0.5 sum_{j<i} x_j + b_i and s_i = 0.3 sum_{j<i} sin(x_j) + d_i."""
    lead, event = x.shape[:x.ndim - event_ndims], x.shape[x.ndim - event_ndims:]
    flat = x.reshape(lead + (-1,))
    mu = 0.5 * _exclusive_cumsum(flat) + params["b"]
    s = 0.3 * _exclusive_cumsum(jnp.sin(flat)) + params["d"]
    return mu.reshape(lead + event), s.reshape(lead + event)


def _conditioner(event_ndims):
    def init(key, x):
        size = int(np.prod(x.shape[x.ndim - event_ndims:]))
        kb, kd = jax.random.split(key)
        return {"b": jax.random.normal(kb, (size,), x.dtype),
                "d": 0.5 * jax.random.normal(kd, (size,), x.dtype)}

    def apply(params, x):
        mu, s = _shift_and_log_scale(params, x, event_ndims)
        return jnp.concatenate([mu, s], axis=-1)  # (..., 2C): shift, then log-scale
    return fb.Conditioner(init=init, apply=apply)


@pytest.mark.parametrize("shape,event_ndims", [((3, 6), 1), ((2, 3, 2, 4), 3)])
@pytest.mark.parametrize("reverse", [False, True])
def test_forward_and_inverse_follow_the_formula(shape, event_ndims, reverse):
    """y = (x - mu) exp(-s) with mu, s from the conditioner on x (reverse: on x flipped on
    every event axis, the outputs flipped back); log-det -sum s; inverse recovers x."""
    bijector = fb.MaskedAutoregressiveAffine(_conditioner(event_ndims), event_ndims,
                                             reverse=reverse)
    kx, kp = jax.random.split(jax.random.PRNGKey(sum(shape) + reverse))
    x = jax.random.normal(kx, shape, jnp.float64)
    params = bijector.init(kp, x)
    axes = tuple(range(x.ndim - event_ndims, x.ndim))
    flip = (lambda a: jnp.flip(a, axis=axes)) if reverse else (lambda a: a)
    mu, s = (flip(a) for a in _shift_and_log_scale(params, flip(x), event_ndims))
    y, log_det = bijector.forward(params, x)
    np.testing.assert_allclose(y, (x - mu) * jnp.exp(-s), rtol=1e-12)
    np.testing.assert_allclose(log_det, -jnp.sum(s, axis=axes), rtol=1e-12)
    x_back, inverse_log_det = jax.jit(bijector.inverse)(params, y)
    np.testing.assert_allclose(x_back, x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(inverse_log_det, jnp.sum(s, axis=axes), rtol=1e-10)
    shift_only = fb.MaskedAutoregressiveAffine(
        fb.Conditioner(init=lambda k, v: params,
                       apply=lambda p, v: _shift_and_log_scale(p, v, event_ndims)[0]),
        event_ndims, shift_only=True, reverse=reverse)
    y_shift, log_det_shift = shift_only.forward(params, x)
    np.testing.assert_allclose(y_shift, x - mu, rtol=1e-12)
    np.testing.assert_array_equal(log_det_shift, 0.0)
    assert log_det_shift.shape == x.shape[:x.ndim - event_ndims]


def test_errors_name_the_fix():
    x = jnp.ones((2, 5))
    wrong = fb.MaskedAutoregressiveAffine(
        fb.Conditioner(init=lambda k, v: (), apply=lambda p, v: jnp.concatenate([v] * 3, -1)))
    with pytest.raises(ValueError, match=r"expected \(2, 10\).*output 10 features"):
        wrong.init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="output 10 features"):
        jax.jit(wrong.forward)((), x)
    with pytest.raises(ValueError, match="event_ndims must be an int >= 1"):
        fb.MaskedAutoregressiveAffine(_conditioner(1), event_ndims=0)
    with pytest.raises(TypeError, match="Flax module or have init"):
        fb.MaskedAutoregressiveAffine(lambda v: v)
    with pytest.raises(TypeError, match="astype"):
        fb.MaskedAutoregressiveAffine(_conditioner(1)).forward((), jnp.ones((2, 5), jnp.int32))
    with pytest.raises(ValueError, match="rank >= 3"):
        fb.MaskedAutoregressiveAffine(_conditioner(3), event_ndims=3).forward((), x)
