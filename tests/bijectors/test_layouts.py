"""Exact layouts: squeeze order, split patterns, permutations, preprocessing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import bijectors as fb


def _indexed_image(h, w, c):
    """x[i, j, ch] = 100 * i + 10 * j + ch, so every value names its position."""
    i, j, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    return jnp.asarray(100.0 * i + 10.0 * j + ch)


def test_squeeze_matches_tensorflow_space_to_depth_order():
    x = _indexed_image(4, 6, 3)
    y, log_det = fb.Squeeze().forward((), x[None])
    assert y.shape == (1, 2, 3, 12) and log_det.shape == (1,)
    for i in range(2):
        for j in range(3):
            for dy in range(2):
                for dx in range(2):
                    for c in range(3):
                        # tf.nn.space_to_depth: out channel (dy * 2 + dx) * C + c
                        assert y[0, i, j, (dy * 2 + dx) * 3 + c] == x[2 * i + dy, 2 * j + dx, c]


def test_stripe_split_takes_alternating_columns():
    x = _indexed_image(3, 6, 2)
    x1, x2 = fb.StripeSplit().split(x)
    np.testing.assert_array_equal(x1, x[:, 0::2])
    np.testing.assert_array_equal(x2, x[:, 1::2])
    np.testing.assert_array_equal(fb.StripeSplit().merge(x1, x2), x)


def test_checkerboard_split_takes_pixels_by_parity():
    x = _indexed_image(4, 6, 2)
    x1, x2 = fb.CheckerboardSplit().split(x)
    assert x1.shape == x2.shape == (4, 3, 2)
    for i in range(4):
        np.testing.assert_array_equal(x1[i], x[i, i % 2::2])
        np.testing.assert_array_equal(x2[i], x[i, 1 - i % 2::2])
    np.testing.assert_array_equal(fb.CheckerboardSplit().merge(x1, x2), x)


def test_channel_split_halves_and_custom_point():
    x = _indexed_image(2, 2, 6)
    x1, x2 = fb.ChannelSplit().split(x)
    np.testing.assert_array_equal(x1, x[..., :3])
    x1, x2 = fb.ChannelSplit(num_first=2).split(x)
    assert x1.shape[-1] == 2 and x2.shape[-1] == 4
    np.testing.assert_array_equal(fb.ChannelSplit(num_first=2).merge(x1, x2), x)


def test_coupling_leaves_the_conditioning_half_unchanged():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 2))
    coupling = fb.Coupling(fb.StripeSplit(), lambda x1: jnp.concatenate([x1, x1], -1),
                           fb.AffineInner("identity"))
    y, _ = coupling.forward((), x)
    np.testing.assert_array_equal(y[:, :, 0::2], x[:, :, 0::2])
    assert not np.allclose(y[:, :, 1::2], x[:, :, 1::2])
    swapped, _ = fb.Coupling(fb.StripeSplit(), coupling.conditioner,
                             fb.AffineInner("identity"), swap=True).forward((), x)
    np.testing.assert_array_equal(swapped[:, :, 1::2], x[:, :, 1::2])


def test_permutation_and_reverse():
    x = jnp.arange(5.0)[None]
    y, _ = fb.Permute((3, 0, 4, 1, 2)).forward((), x)
    np.testing.assert_array_equal(y, [[3.0, 0.0, 4.0, 1.0, 2.0]])
    np.testing.assert_array_equal(fb.Reverse().forward((), x)[0], [[4.0, 3.0, 2.0, 1.0, 0.0]])


@pytest.mark.parametrize("num_levels", [256, 32, 17])
def test_image_to_logit_is_flowpp_preprocessing(num_levels):
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 3, 3, 1), minval=0, maxval=num_levels)
    y, log_det = fb.ImageToLogit(num_levels=num_levels).forward((), x)
    p = x * 0.9 / num_levels + 0.05
    np.testing.assert_allclose(y, jnp.log(p / (1 - p)), rtol=1e-10)
    expected = jnp.sum(jnp.log(0.9 / num_levels) - jnp.log(p) - jnp.log1p(-p), axis=(1, 2, 3))
    np.testing.assert_allclose(log_det, expected, rtol=1e-10)


def test_lu_conv_permutation_is_static_and_seeded():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 2, 2, 6))
    b0, b1 = fb.LUInvertible1x1Conv(permutation_seed=0), fb.LUInvertible1x1Conv(permutation_seed=1)
    p = b0.init(jax.random.PRNGKey(1), x)
    assert set(p) == {"lower", "upper", "log_diag"}  # nothing for an optimizer to corrupt
    assert not np.allclose(b0.forward(p, x)[0], b1.forward(p, x)[0])
    ident = fb.LUInvertible1x1Conv(permutation_seed=None, noise_scale=0.0)
    np.testing.assert_array_equal(ident.forward(ident.init(jax.random.PRNGKey(1), x), x)[0], x)
