"""The official-checkpoint converter: its TF checkpoint reader, the variable layout of every
official CIFAR-10 model (the fixture's full-size variable lists), EMA selection, errors that
name missing, unexpected or misshapen variables, and the launcher path
``config.model.init_from_official``.  Shape checks only trace (``jax.eval_shape``)."""

from __future__ import annotations

import importlib
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import experiment
from flowzoo.models import flowpp
from flowzoo.models.flowpp import official, tf_checkpoint
from tests.models import flowpp_fixture as fx

# The fixture's full-size variable lists and the flowzoo config of each official model.
OFFICIAL_LISTS = {
    "cifar10_variables.txt": ("flowpp_cifar10", 31_443_440),
    "ablation_noattn_variables.txt": ("flowpp_cifar10_no_attention", 31_443_440),
    "ablation_nodequant_variables.txt": ("flowpp_cifar10_uniform_dequant", 32_324_408),
    "ablation_nomixlog_variables.txt": ("flowpp_cifar10_affine", 32_045_708),
}


def _config(name, arg=None):
    return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


def test_reader_gives_the_checkpoint_bit_for_bit_without_tensorflow():
    stored = tf_checkpoint.load_checkpoint(fx.prefix())
    expected = fx.arrays("variables.npz")  # written by the generator from the same session
    assert sorted(stored) == sorted(expected)
    for name, array in expected.items():
        assert stored[name].dtype == np.float32
        np.testing.assert_array_equal(stored[name], array, err_msg=name)
    assert tf_checkpoint.variable_shapes(fx.prefix()) == fx.variable_list("variables.txt")
    assert sum(a.size for a in stored.values()) == 678_592


def test_reader_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="without the .index"):
        tf_checkpoint.load_checkpoint(fx.prefix() + ".index")
    (tmp_path / "bad.index").write_bytes(b"not a table" * 10)
    with pytest.raises(ValueError, match="not a TensorFlow checkpoint index"):
        tf_checkpoint.variable_shapes(str(tmp_path / "bad"))
    with pytest.raises(KeyError, match="Norm_99/norm0/g"):
        tf_checkpoint.load_checkpoint(fx.prefix(), ["Norm_99/norm0/g"])


@pytest.mark.parametrize("listing", sorted(OFFICIAL_LISTS))
def test_every_official_cifar10_variable_maps_onto_one_flowzoo_parameter(listing):
    config_name, count = OFFICIAL_LISTS[listing]
    shapes = fx.variable_list(listing)
    assert sum(math.prod(s) for s in shapes.values()) == count
    config = _config(config_name)
    flow = flowpp.make_flow(config.model, (32, 32, 3), 256)
    names = official.official_variable_names(flow)
    assert len(names) == len(set(names)) == len(shapes)  # each used exactly once
    plan = official.ConversionPlan(flow, shapes, False, flowpp.template_params(flow))  # raises on any name or shape mismatch
    assert sum(math.prod(s.shape) for s in jax.tree.leaves(plan.template)) == count


def test_conversion_is_exact_and_reports_missing_extra_and_misshapen_variables():
    flow, stored = fx.small_flow(), fx.arrays("variables.npz")
    params = fx.converted_params()
    main_group = params["main"][1]  # the first group: 4 steps stacked on axis 0
    np.testing.assert_array_equal(main_group[1][0]["kernel"][2],
                                  stored["Pointwise_6/W0"].T)  # dequantizer has steps 0-3
    np.testing.assert_array_equal(main_group[0][1]["scale"][0], stored["Norm_4/norm1/g"])
    blocks = params["dequant"]["noise"][0][2]["params"]["blocks"]
    np.testing.assert_array_equal(blocks["attn"]["qkv"]["kernel"][3, 1, 0, 0],
                                  stored["MixLogisticAttnCoupling_3/block1/attn/proj1/W"])
    np.testing.assert_array_equal(blocks["norm_conv"]["scale"][0, 0],
                                  stored["MixLogisticAttnCoupling/block0/ln1/g"][0, 0, 0])

    missing = dict(stored)
    del missing["MixLogisticAttnCoupling_7/block1/attn/proj2/b"]
    with pytest.raises(KeyError, match="lacks 1 variable.*MixLogisticAttnCoupling_7/block1/"
                                       "attn/proj2/b"):
        flowpp.official_params(flow, missing)
    extra = dict(stored, **{"Norm_13/norm0/g": stored["Norm_12/norm0/g"]})
    with pytest.raises(KeyError, match="does not use: Norm_13/norm0/g"):
        flowpp.official_params(flow, extra)
    misshapen = dict(stored, **{"Pointwise_9/W1": np.eye(5, dtype=np.float32)})
    with pytest.raises(ValueError, match="Pointwise_9/W1"):
        flowpp.official_params(flow, misshapen)


def test_ema_shadows_are_taken_when_asked_from_a_train_checkpoint_layout():
    """A checkpoint laid out as the official ``train()`` saves it (params, EMA shadows, Adam
    slots, beta powers: the fixture's listing) converts either way."""
    flow, stored = fx.small_flow(), fx.arrays("variables.npz")
    listing = fx.variable_list("official_layout_variables.txt")
    assert len(listing) == 1942
    full = {}
    for name in listing:
        base = name.split(official.EMA_SUFFIX)[0].removesuffix("/Adam_1").removesuffix("/Adam")
        if name.endswith(official.EMA_SUFFIX):
            full[name] = stored[base] * 2.0  # shadows distinguishable from the raw weights
        elif name in stored:
            full[name] = stored[name]
        else:  # Adam slots, beta powers
            full[name] = np.zeros(listing[name], np.float32)
    raw, ema = fx.converted_params(), flowpp.official_params(flow, full, ema=True)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(b, 2.0 * a), raw, ema)
    jax.tree.map(np.testing.assert_array_equal,
                 flowpp.official_params(flow, full, ema=False), raw)
    with pytest.raises(KeyError, match="no EMA shadows: convert with ema=False"):
        flowpp.official_params(flow, stored, ema=True)


@pytest.mark.parametrize("overrides, message", [
    (dict(coupling="affine", mixer="gated_nin"), "affine couplings with mixer 'gated_nin'"),
    (dict(num_heads=2), "num_heads=2"),
    (dict(layout="stripe:3,squeeze,channel:2,stripe:3"), "a group of 3 steps before the last"),
    (dict(pointwise=False, weight_norm=True), "pointwise=False, weight_norm=True"),
])
def test_configs_without_an_official_counterpart_are_refused(overrides, message):
    flow = flowpp.make_flow({**fx.SMALL_MODEL, **overrides}, fx.IMAGE_SHAPE, 256)
    with pytest.raises(ValueError, match=message):
        official.official_variable_names(flow)


def _small_config(**model):
    config = _config("flowpp_cifar10")
    with config.unlocked():
        config.model.update({k: v for k, v in fx.SMALL_MODEL.items() if k != "name"})
        config.model.update(model)
        config.train.init_batch_size = 8
    return config


def test_launcher_path_init_from_official_gives_the_converted_weights():
    config = _small_config(init_from_official=fx.prefix(), official_ema=False)
    model = experiment.build_model(config.model, fx.IMAGE_SHAPE, 256)
    batch = {"image": jnp.zeros((8,) + fx.IMAGE_SHAPE, jnp.uint8),
             "index": jnp.arange(8, dtype=jnp.int32)}
    params = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
    jax.tree.map(np.testing.assert_array_equal, params, fx.converted_params())
    assert experiment.describe(config)["num_params"] == 678_592
    with pytest.raises(KeyError, match="no EMA shadows"):  # checked when init is traced
        jax.eval_shape(experiment.build_model(_small_config(init_from_official=fx.prefix()).model,
                                    fx.IMAGE_SHAPE, 256).init, jax.random.PRNGKey(0), batch)
    missing = os.path.join(fx.fixture_dir(), "no_such_checkpoint")
    with pytest.raises(FileNotFoundError, match="no_such_checkpoint.index"):
        experiment.build_model(_small_config(init_from_official=missing).model, fx.IMAGE_SHAPE, 256)
