"""The CIFAR VLAE decoder likelihood (conditional PixelCNN++ with an A x B receptive field).

Receptive fields are measured by gradients on fresh random images and random (DDI) weights:
the set of input pixels that output (i, j) depends on must equal the configured A x B
window exactly, with nothing at or after (i, j).  No CIFAR files are needed.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo.models.vlae.likelihood_pixelcnnpp import GRAY_WEIGHTS, CifarPixelCNNpp

SIZE = 10


def _model(rf, grayscale=False, size=SIZE, **kw):
    kw = {"filters": 4, "num_components": 2, "blocks": 2, **kw}
    return CifarPixelCNNpp((size, size, 3), receptive_field=rf, grayscale=grayscale, **kw)


def _init(model, seed, batch=4, feature_maps=3):
    h, w, c = model.image_shape
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.randint(keys[0], (batch, h, w, c), 0, model.num_levels)
    features = jax.random.normal(keys[1], (batch, h, w, feature_maps), jnp.float64)
    return model.init(keys[2], x, features), x, features


def _jacobian(model, params, x, features, seed):
    """d (random projection of the outputs at each pixel) / d image: (H, W, H, W, C)."""
    proj = jax.random.normal(jax.random.PRNGKey(seed), (model.num_outputs,), jnp.float64)

    def outputs(image):
        return model.network(params, image[None], features[:1])[0] @ proj

    return np.asarray(jax.jit(jax.jacrev(outputs))(x[0].astype(jnp.float64)))


def _seen(jac, i, j):
    nz = np.abs(jac[i, j]).sum(-1) > 0
    return {(int(a) - i, int(b) - j) for a, b in zip(*np.nonzero(nz))}


@pytest.mark.parametrize("rf,grayscale,blocks", [((4, 2), False, 2), ((5, 3), False, 2),
                                                 ((7, 4), False, 4), ((7, 4), True, 2)])
def test_measured_receptive_field_is_exactly_a_by_b(rf, grayscale, blocks):
    """7x4 with the paper's 4 blocks; the others with 2 (the field does not depend on depth
    beyond the minimum: convolutions after the field is complete are 1x1 in width/height)."""
    model = _model(rf, grayscale, blocks=blocks)
    params, x, features = _init(model, seed=sum(rf) + grayscale)
    jac = _jacobian(model, params, x, features, seed=7)
    want = model.receptive_offsets()
    a, b = rf
    assert len(want) == a * b + model.left
    assert _seen(jac, 6, 5) == want  # an interior pixel: the whole window fits
    for i, j in itertools.product(range(SIZE), range(SIZE)):  # every pixel: clipped window
        clipped = {(dy, dx) for dy, dx in want if 0 <= i + dy < SIZE and 0 <= j + dx < SIZE}
        assert _seen(jac, i, j) == clipped, (i, j)
    if grayscale:  # only 0.299 R + 0.587 G + 0.114 B is seen: channel gradients in that ratio
        ratio = jac / np.asarray(GRAY_WEIGHTS)
        np.testing.assert_allclose(ratio[..., 1], ratio[..., 0], rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(ratio[..., 2], ratio[..., 0], rtol=1e-9, atol=1e-14)


def test_left_and_right_extent_of_each_configured_field():
    assert [(_model(rf).left, _model(rf).right) for rf in ((4, 2), (5, 3), (7, 4))] == [
        (2, 1), (2, 2), (3, 3)]


def test_likelihood_is_normalised_over_every_image():
    """A leak from a pixel to its own prediction would break normalisation."""
    model = CifarPixelCNNpp((1, 2, 3), num_levels=3, receptive_field=(4, 2), filters=4,
                            blocks=1, num_components=2)
    params, _, features = _init(model, seed=3, batch=2)
    images = np.array(list(itertools.product(range(3), repeat=6))).reshape(-1, 1, 2, 3)
    feats = jnp.broadcast_to(features[:1], (len(images),) + features.shape[1:])
    log_p = model.log_prob(params, jnp.asarray(images, jnp.uint8), feats)
    assert log_p.shape == (729,)
    np.testing.assert_allclose(jax.nn.logsumexp(log_p), 0.0, atol=1e-10)


def test_compiled_sampler_draws_each_pixel_from_the_model():
    """Redrawing every pixel with its key from the parameters computed on the finished
    sample (teacher forcing) reproduces the sample: the row/pixel fast path agrees with the
    full network, and each pixel was drawn given the pixels before it."""
    model = _model((5, 3), grayscale=True, size=5)
    params, _, features = _init(model, seed=11, batch=3)
    key = jax.random.PRNGKey(5)
    sample = jax.jit(model.sample)(params, key, features)
    assert sample.shape == (3, 5, 5, 3) and sample.dtype == jnp.uint8
    assert len(np.unique(np.asarray(sample))) > 20  # not a constant image
    raw = model.network(params, sample, features)
    for i, j in itertools.product(range(5), range(5)):
        redraw = model.distribution.sample(model._split(raw[:, i, j]),
                                           model.pixel_key(key, i, j))
        np.testing.assert_array_equal(redraw, sample[:, i, j])


def test_bad_configuration_names_the_fix():
    with pytest.raises(ValueError, match="A >= 2"):
        _model((1, 2))
    with pytest.raises(ValueError, match="blocks >= 2"):
        _model((7, 4), blocks=1)
    with pytest.raises(ValueError, match="RGB"):
        CifarPixelCNNpp((8, 8, 1))
