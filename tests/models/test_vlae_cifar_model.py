"""The CIFAR VLAE assembly: nets' shapes, parameter counts, configs, soft free bits.

CIFAR-10 is not among the test data, so the end-to-end check runs the smoke-sized parts on
random 8x8x3 images: a shape / gradient / state check only, not a claim about data.
"""

from __future__ import annotations

import functools
import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import experiment
from flowzoo.models.vlae import model as vlae_model
from flowzoo.models.vlae.backbone_spatial import CifarDecoder, CifarEncoder
from flowzoo.models.vlae.core import update_kl_weight
from flowzoo.training import optim, steps

VARIANTS = ("rf7x4", "rf5x3", "rf4x2", "gray7x4", "densenet")


def _config(arg=None):
    return importlib.import_module("experiments.configs.vlae_cifar10").get_config(arg)


@functools.lru_cache(maxsize=None)
def _describe(arg):
    return experiment.describe(_config(arg))


def _count(info, part):
    return sum(math.prod(s) for p, s in info["shapes"].items() if p.startswith(f"['{part}']"))


# ---- soft free bits -----------------------------------------------------------------------

def test_kl_weight_moves_by_ten_percent_steps_around_lambda():
    lam = 100.0
    assert float(update_kl_weight(0.5, 80.0, lam)) == pytest.approx(0.45)  # KL < lambda
    assert float(update_kl_weight(0.5, 103.0, lam)) == pytest.approx(0.5)  # within 5%
    assert float(update_kl_weight(0.5, 100.0, lam)) == pytest.approx(0.5)
    assert float(update_kl_weight(0.5, 106.0, lam)) == pytest.approx(0.55)  # > 5% above
    assert float(update_kl_weight(0.95, 500.0, lam)) == 1.0  # capped at 1
    assert float(update_kl_weight(1e-4, 0.0, lam)) == pytest.approx(1e-4)  # floor
    # Jittable and vectorised; a long run of small KL can always recover.
    gamma = jnp.float32(1.0)
    step = jax.jit(update_kl_weight)
    for _ in range(300):
        gamma = step(gamma, 1.0, lam)
    assert float(gamma) == pytest.approx(1e-4)
    for _ in range(200):
        gamma = step(gamma, 1e3, lam)
    assert float(gamma) == 1.0


@pytest.fixture(scope="module")
def smoke():
    """Smoke-sized parts (receptive field 4x2, one PixelCNN++ block) on random 8x8x3 images,
    initialised: a shape / gradient check only."""
    cfg = dict(_config("rf4x2,smoke").model, pixelcnn_blocks=1)
    model = vlae_model.build(cfg, (8, 8, 3), 256)
    key = jax.random.PRNGKey(0)
    batch = {"image": jax.random.randint(key, (6, 8, 8, 3), 0, 256).astype(jnp.uint8),
             "index": jnp.arange(6)}
    params = jax.jit(model.init)(jax.random.PRNGKey(1), batch)
    return model, params, batch


def test_trainer_step_uses_and_updates_the_kl_weight(smoke):
    """Through the trainer's own train_step (model state kept in TrainState)."""
    model, params, batch = smoke
    tx = optim.make_optimizer(_config("smoke").optim)
    state = steps.create_state(params, tx, jax.random.PRNGKey(2), model.init_model_state())
    assert float(state.model_state["kl_weight"]) == 1.0
    step = jax.jit(functools.partial(steps.train_step, model=model, tx=tx, ema_decay=0.9,
                                     max_nonfinite_in_a_row=10))
    new, m = step(state, batch)
    per_dim = 1.0 / (8 * 8 * 3 * math.log(2.0))
    lam = 0.01 * 8 * 8 * 3
    assert float(m["kl_weight"]) == 1.0
    np.testing.assert_allclose(m["loss"], (m["recon_nats"] + m["kl_nats"]) * per_dim,
                               rtol=1e-6)
    np.testing.assert_allclose(m["neg_elbo_bits_per_dim"], m["neg_elbo_nats"] * per_dim,
                               rtol=1e-6)
    np.testing.assert_allclose(new.model_state["kl_weight"],
                               update_kl_weight(1.0, m["kl_nats"], lam))
    for part in ("encoder", "decoder", "likelihood", "prior"):  # every component learns
        moved = jax.tree.map(lambda a, b: float(jnp.sum(jnp.abs(a - b))), new.params[part],
                             params[part])
        assert all(v > 0 for v in jax.tree.leaves(moved)), part
    # gamma weights the KL term of the loss (and only it).
    half = state.replace(model_state={"kl_weight": jnp.float32(0.5)})
    _, m_half = step(half, batch)
    assert float(m_half["kl_weight"]) == 0.5
    np.testing.assert_allclose(m_half["loss"],
                               (m_half["recon_nats"] + 0.5 * m_half["kl_nats"]) * per_dim,
                               rtol=1e-6)
    np.testing.assert_allclose(m_half["neg_elbo_bits_per_dim"], m["neg_elbo_bits_per_dim"],
                               rtol=1e-6)


def test_evaluate_in_nats_and_bits_per_dim_and_sample(smoke):
    """The binary family's metric names (both units); the headline is in the loss's unit."""
    model, params, batch = smoke
    assert (model.loss_unit, model.eval_metric) == ("bits/dim", "nll_iw_bits_per_dim")
    out = jax.jit(model.evaluate)(params, batch, jax.random.PRNGKey(4))
    assert set(out) == {"nll_iw_nats", "nll_iw_bits_per_dim", "neg_elbo_nats",
                        "neg_elbo_bits_per_dim", "kl_nats", "recon_nats"}
    assert all(v.shape == (6,) and bool(jnp.all(jnp.isfinite(v))) for v in out.values())
    per_dim = 1.0 / (8 * 8 * 3 * math.log(2.0))
    for name in ("nll_iw", "neg_elbo"):
        np.testing.assert_allclose(out[f"{name}_bits_per_dim"], out[f"{name}_nats"] * per_dim,
                                   rtol=1e-6)
    # Sampling composes (traced only: the samplers themselves are tested with their parts).
    images = jax.eval_shape(lambda p, k: model.sample(p, k, 2), params, jax.random.PRNGKey(5))
    assert images.shape == (2, 8, 8, 3) and images.dtype == jnp.uint8


# ---- encoder / decoder structure and parameter counts ----------------------------------------

@pytest.mark.parametrize("block", ["resnet", "densenet"])
def test_encoder_decoder_shapes_on_32x32(block):
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    z = jax.ShapeDtypeStruct((2, 8, 8, 16), jnp.float32)
    enc, dec = CifarEncoder(block=block), CifarDecoder(block=block)
    variables = jax.eval_shape(enc.init, jax.random.PRNGKey(0), x)
    mean, log_std, context = jax.eval_shape(enc.apply, variables, x)
    assert mean.shape == log_std.shape == (2, 8, 8, 16) and context is None
    pd = jax.eval_shape(dec.init, jax.random.PRNGKey(0), z)
    assert jax.eval_shape(dec.apply, pd, z).shape == (2, 32, 32, dec.features)
    assert dec.features == (48 if block == "resnet" else 48 + 3 * 24)
    # Stage layout: in-conv, group, stride-2, group, stride-2, group, 1x1 out.
    pe = variables["params"]
    assert set(pe) == {"in", "group0", "down1", "group1", "down2", "group2", "out"}
    assert [len(pe[g]) for g in ("group0", "group1", "group2")] == (
        [2, 2, 3] if block == "resnet" else [3, 3, 3])
    wide = (0, 0, 0) if block == "resnet" else (3 * 24, 3 * 48, 3 * 48)  # DenseNet concat
    assert pe["down1"]["v"].shape == (3, 3, 48 + wide[0], 96)
    assert pe["down2"]["v"].shape == (3, 3, 96 + wide[1], 96)
    assert pe["out"]["v"].shape == (1, 1, 96 + wide[2], 32)


def test_parameter_counts_of_every_variant():
    """Regression counts (``--mode=describe``); the paper does not state them."""
    counts = {v: _describe(v)["num_params"] for v in VARIANTS}
    assert counts == {"rf7x4": 3_617_944, "rf5x3": 3_543_960, "rf4x2": 3_511_192,
                      "gray7x4": 3_617_176, "densenet": 3_081_400}
    info = _describe("rf7x4")
    assert {p: _count(info, p) for p in ("encoder", "decoder", "likelihood", "prior")} == {
        "encoder": 1_044_016, "decoder": 1_041_120, "likelihood": 423_624,
        "prior": 1_109_184}
    # Receptive field 7x4 with exact kernels: the v stream's input conv covers 1 row x 3.
    assert info["shapes"]["['likelihood']['params']['v0']['v']"] == [1, 3, 4, 64]
    assert info["shapes"]["['likelihood']['params']['h0']['v']"] == [1, 3, 4, 64]


def test_config_variants_and_errors():
    assert tuple(_config().model.receptive_field) == (7, 4)
    assert tuple(_config("rf4x2").model.receptive_field) == (4, 2)
    gray = _config("gray7x4").model
    assert gray.grayscale and tuple(gray.receptive_field) == (7, 4)
    assert _config("densenet").model.block == "densenet"
    small = _config("rf5x3,smoke")
    assert tuple(small.model.receptive_field) == (5, 3) and small.train.num_steps == 10
    assert _config().data.name == "cifar10" and _config().optim.name == "adamax"
    with pytest.raises(ValueError, match="unknown variant"):
        _config("rf9x9")
    cfg = dict(_config().model)
    cfg["recepive_field"] = cfg.pop("receptive_field")
    with pytest.raises(KeyError, match="Did you mean 'model.receptive_field'"):
        vlae_model.make_parts(cfg, (32, 32, 3), 256)
    with pytest.raises(ValueError, match="RGB"):
        vlae_model.make_parts(_config().model, (28, 28, 1), 256)
