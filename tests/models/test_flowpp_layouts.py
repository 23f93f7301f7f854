"""Every official Flow++ config, exactly: parameter counts from the authors' launchers (traced
only), and the pieces the ImageNet / CelebA models add (flow layouts with the official
odd-group behaviour, weight-normalised convolutions, the gated-NIN ablation)."""

from __future__ import annotations

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import experiment
from flowzoo.models import flowpp
from flowzoo.models.flowpp import nets

# Counts printed by the official code (its docstrings and the fixture's variable totals).
OFFICIAL_COUNTS = {
    "flowpp_cifar10": 31_443_440,  # flows/run_cifar.py
    "flowpp_cifar10_no_attention": 31_443_440,  # flows/ablations/abl_noattn.py
    "flowpp_cifar10_uniform_dequant": 32_324_408,  # flows/ablations/abl_nodequant.py
    "flowpp_cifar10_affine": 32_045_708,  # flows/ablations/abl_nomixlog.py
    "flowpp_imagenet32": 168_955_724,  # flows_imagenet/launchers/imagenet32_official.py
    "flowpp_imagenet64": 73_489_960,  # .../imagenet64_official.py
    "flowpp_imagenet64_5bit": 73_489_960,  # .../imagenet64_5bit_official.py
    "flowpp_celeba64_5bit": 73_489_960,  # flows_celeba/launchers/celeba64_5bit_official.py
    "flowpp_celeba64_3bit": 73_489_960,  # .../celeba64_3bit_official.py
    "flowpp_celeba128_5bit": 122_790_952,  # .../celeba128_5bit_official.py
}


@functools.lru_cache(maxsize=None)
def _describe(name):
    return experiment.describe(importlib.import_module(f"experiments.configs.{name}").get_config())


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_describe_gives_the_official_parameter_count(name):
    assert _describe(name)["num_params"] == OFFICIAL_COUNTS[name]


def test_imagenet_models_have_weight_norm_no_pointwise_and_the_official_context():
    shapes = _describe("flowpp_imagenet32")["shapes"]
    # Main flow: ImageToLogit, stripe:4, stripe:3 (no swap back), squeeze, channel:3, ...
    step = "['main'][2]"
    assert shapes[f"{step}[0][0]['scale']"] == [3, 32, 16, 3]  # ActNorm, then the coupling:
    assert shapes[f"{step}[1]['params']['proj_in']['scale']"] == [3, 128]  # weight norm
    assert shapes[f"{step}[1]['params']['proj_out']['kernel']"] == [3, 3, 3, 256, 3 * 98]
    assert not any(k.startswith(f"{step}[3]") for k in shapes)  # the swap only
    context = "['dequant']['context']['params']"
    assert shapes[f"{context}['pos_emb']"] == [32, 16, 32]
    assert shapes[f"{context}['attn_7']['qkv']['kernel']"] == [1, 1, 32, 96]
    shapes64 = _describe("flowpp_imagenet64")["shapes"]
    noise = "['dequant']['noise'][0][1]['params']['blocks']"
    assert not any(k.startswith(noise + "['attn']") for k in shapes64)  # dequant_mixer none
    assert shapes64["['main'][2][1]['params']['blocks']['conv']['conv_in']['kernel']"] == [
        4, 16, 3, 3, 192, 96]


def test_layout_errors_name_the_fix():
    with pytest.raises(ValueError, match="bad group 'stripes:4'"):
        flowpp.make_flow({"layout": "stripes:4,squeeze"}, (8, 8, 3), 256)
    with pytest.raises(ValueError, match="needs an even height"):
        flowpp.make_flow({"layout": "stripe:1,squeeze,squeeze,channel:1"}, (6, 8, 3), 256)


TINY = dict(filters=4, blocks=1, num_components=2, num_heads=2, dropout=0.0,
            dequantization="uniform", remat=False, attention_loop="off")


def _main(**model):
    return flowpp.make_flow({**TINY, **model}, (4, 8, 2), 256).main


def test_groups_without_swap_back_continue_from_the_flipped_halves_as_official():
    """The official code merges the flipped halves after an odd group and splits them again,
    so ``stripe:1, stripe:1`` without swapping back is ``stripe:2``; with flowzoo's swap back
    the second group transforms the other half."""
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 256, (3, 4, 8, 2)), jnp.float32)
    one_group = _main(layout="stripe:2", swap_back_odd=False)
    params = one_group.init(jax.random.PRNGKey(0), x)
    z, log_det = one_group.forward(params, x)
    first, second = (jax.tree.map(lambda a, i=i: a[i:i + 1], params[1]) for i in (0, 1))
    official = _main(layout="stripe:1,stripe:1", swap_back_odd=False)
    z2, log_det2 = official.forward((params[0], first, second), x)
    np.testing.assert_allclose(z2, z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_det2, log_det, rtol=1e-5)
    swapping = _main(layout="stripe:1,stripe:1")  # ..., group, SwapHalves, group, SwapHalves
    z3, _ = swapping.forward((params[0], first, (), second, ()), x)
    assert not np.allclose(z3, z, atol=1e-3)


def test_weight_normalised_conv_init_normalises_the_init_batch():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(16, 5, 5, 3)), jnp.float64)
    conv = nets.DDConv(4, 3, init_scale=0.1, weight_norm=True)
    params = conv.init({"params": jax.random.PRNGKey(2)}, x)
    p = params["params"]
    assert set(p) == {"kernel", "scale", "bias"} and p["scale"].shape == (4,)
    y = conv.apply(params, x)
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(jnp.std(y, axis=(0, 1, 2)), 0.1, rtol=1e-6)
    # The weight is scale * kernel / |kernel|: rescaling the kernel changes nothing.
    scaled = {"params": dict(p, kernel=3.0 * p["kernel"])}
    np.testing.assert_allclose(conv.apply(scaled, x), y, rtol=1e-12)


def test_gated_nin_takes_the_max_of_each_channels_three_outputs():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 3, 3, 4)))
    pos_emb = jnp.asarray(rng.normal(size=(3, 3, 4)))
    layer = nets.GatedNIN()
    params = layer.init({"params": jax.random.PRNGKey(0)}, x, pos_emb)
    p = params["params"]
    h = np.einsum("bhwc,cd->bhwd", x + pos_emb, p["proj"]["kernel"][0, 0]) + p["proj"]["bias"]
    h = np.stack([h[..., 3 * c:3 * c + 3].max(axis=-1) for c in range(4)], axis=-1)
    g = np.einsum("bhwc,cd->bhwd", h, p["gate"]["kernel"][0, 0]) + p["gate"]["bias"]
    expected = x + g[..., :4] / (1.0 + np.exp(-g[..., 4:]))
    np.testing.assert_allclose(layer.apply(params, x, pos_emb), expected, rtol=1e-10)
