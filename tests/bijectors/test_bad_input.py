"""Bad input fails at trace time with a message naming what was expected."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from flowzoo import bijectors as fb

KEY = jax.random.PRNGKey(0)
IMG = jnp.ones((2, 4, 4, 2)) * 0.5


@pytest.mark.parametrize("bijector", [fb.Squeeze(), fb.Coupling(
    fb.StripeSplit(), lambda x1: jnp.concatenate([x1, x1], -1), fb.AffineInner())])
def test_odd_width_names_the_width(bijector):
    with pytest.raises(ValueError, match="width"):
        bijector.forward((), jnp.ones((2, 4, 5, 2)))


def test_checkerboard_odd_height():
    with pytest.raises(ValueError, match="even height"):
        fb.CheckerboardSplit().split(jnp.ones((2, 3, 4, 2)))


def test_channel_halves_of_odd_channels():
    with pytest.raises(ValueError, match="even channel count"):
        fb.ChannelSplit().split(jnp.ones((2, 5)))


@pytest.mark.parametrize("bijector", [fb.Squeeze(), fb.ActNorm(), fb.Invertible1x1Conv()])
def test_wrong_rank_names_the_layout(bijector):
    with pytest.raises(ValueError, match="rank >= 3"):
        bijector.init(KEY, jnp.ones((4, 4)))
    with pytest.raises(ValueError, match="rank >= 3"):
        bijector.forward((), jnp.ones((4, 4)))


@pytest.mark.parametrize("bijector", [fb.Affine(), fb.Sigmoid(), fb.ImageToLogit(),
                                      fb.ActNorm(), fb.LogisticMixtureCDF(num_components=2)])
def test_integer_input_names_the_cast(bijector):
    with pytest.raises(TypeError, match="astype"):
        bijector.init(KEY, jnp.ones((2, 4, 4, 2), jnp.int32))
    with pytest.raises(TypeError, match="astype"):
        bijector.forward((), jnp.ones((2, 4, 4, 2), jnp.int32))


def test_conditioner_with_wrong_number_of_parameters():
    bad = fb.Coupling(fb.StripeSplit(), lambda x1: jnp.concatenate([x1] * 3, -1),
                      fb.MixtureCDFInner(num_components=4))
    with pytest.raises(ValueError, match=r"expected \(2, 4, 2, 28\).*2 transformed channels x 14"):
        bad.init(KEY, IMG)
    with pytest.raises(ValueError, match="output 28 features"):
        jax.jit(bad.forward)((), IMG)


def test_chain_of_mismatched_event_ndims_fails_when_built():
    with pytest.raises(ValueError, match=r"Affine has event_ndims=0 but ActNorm has "
                                         r"event_ndims=3.*build Affine\(\.\.\., event_ndims=3\)"):
        fb.Chain([fb.Affine(event_ndims=0), fb.ActNorm()])
    # The fix names the side that can change: Squeeze's event_ndims is fixed at 3.
    with pytest.raises(ValueError, match=r"build Sigmoid\(\.\.\., event_ndims=3\)"):
        fb.Chain([fb.Squeeze(), fb.Sigmoid(event_ndims=1)])


def test_params_for_other_channel_count():
    params = fb.Invertible1x1Conv().init(KEY, jnp.ones((1, 2, 2, 3)))
    with pytest.raises(ValueError, match="re-run init"):
        fb.Invertible1x1Conv().forward(params, jnp.ones((1, 2, 2, 4)))


def test_bad_static_configuration():
    with pytest.raises(ValueError, match="each of 0..2 exactly once"):
        fb.Permute((0, 0, 2))
    with pytest.raises(ValueError, match="per must be one of"):
        fb.ActNorm(per="pixel")
    with pytest.raises(ValueError, match="log_scale_fn must be one of"):
        fb.AffineInner("softplus")
    with pytest.raises(ValueError, match="event_ndims >= 3"):
        fb.Coupling(fb.StripeSplit(), lambda x: x, fb.AffineInner(), event_ndims=1)
    with pytest.raises(TypeError, match="not a Bijector"):
        fb.Chain([fb.Sigmoid(), "sigmoid"])
    with pytest.raises(ValueError, match="components"):
        fb.LogisticMixtureCDF(num_components=3).forward(
            fb.LogisticMixtureCDF(num_components=2).init(KEY, IMG), IMG)
