"""Flow++: exact parameter counts, every config describes, and a real MNIST smoke run.

The count tests only trace (``jax.eval_shape`` through ``training.describe``).  The MNIST
tests need the official MNIST files under ``$FLOWZOO_DATA_DIR/mnist`` and skip otherwise.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import data, experiment
from flowzoo.models import flowpp
from flowzoo.training import optim, steps
from flowzoo.training.checkpoint import Checkpointer

CONFIGS = ("flowpp_cifar10", "flowpp_cifar10_uniform_dequant", "flowpp_cifar10_affine",
           "flowpp_cifar10_no_attention", "flowpp_imagenet32", "flowpp_imagenet64",
           "flowpp_imagenet64_5bit", "flowpp_celeba64_5bit", "flowpp_celeba64_3bit",
           "flowpp_celeba128_5bit", "flowpp_mnist")
# Traced at full size by tests/training/test_runs.py and (counts) test_flowpp_layouts.py.
TRACED_ELSEWHERE = ("flowpp_imagenet32", "flowpp_imagenet64", "flowpp_imagenet64_5bit",
                    "flowpp_celeba64_5bit", "flowpp_celeba64_3bit", "flowpp_celeba128_5bit",
                    "flowpp_mnist")


def _config(name, arg=None):
    return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


def _describe(name, arg=None):
    return _describe_cached(name, arg)  # one cache key whether or not arg is given


@functools.lru_cache(maxsize=None)
def _describe_cached(name, arg):
    return experiment.describe(_config(name, arg))


def _parts(info):
    """Parameter counts of the main flow, the dequantizer's context net and noise flow."""
    parts = {"main": 0, "context": 0, "noise": 0}
    for path, shape in info["shapes"].items():
        for part, prefix in (("main", "['main']"), ("context", "['dequant']['context']"),
                             ("noise", "['dequant']['noise']")):
            if path.startswith(prefix):
                parts[part] += math.prod(shape)
    assert sum(parts.values()) == info["num_params"], "a parameter outside the known parts"
    return parts


def test_official_cifar10_parameter_count_and_its_parts():
    info = _describe("flowpp_cifar10")
    assert info["num_params"] == 31_443_440
    assert _parts(info) == {"main": 27_976_464, "context": 167_936, "noise": 3_299_040}


def test_uniform_dequantization_ablation_parameter_count():
    info = _describe("flowpp_cifar10_uniform_dequant")
    assert info["num_params"] == 32_324_408
    assert _parts(info) == {"main": 32_324_408, "context": 0, "noise": 0}


def test_affine_coupling_ablation_parameter_count():
    assert _describe("flowpp_cifar10_affine")["num_params"] == 32_045_708


def test_structure_per_element_actnorm_and_one_pointwise_matrix_per_half():
    shapes = _describe("flowpp_cifar10")["shapes"]
    # main: ImageToLogit, 4 stripe steps (one ScanChain: parameters stacked on axis 0),
    # squeeze, 2 channel steps, 3 stripe steps, the swap that puts the halves back.
    # A step is (ActNorm per half, 1x1 conv per half, coupling, swap).
    # At 32x32x3 (stripe halves 32x16x3): ActNorm per element, a 3x3 matrix per half.
    assert shapes["['main'][1][0][0]['scale']"] == [4, 32, 16, 3]
    assert shapes["['main'][1][1][0]['kernel']"] == [4, 3, 3]
    assert shapes["['main'][1][1][1]['kernel']"] == [4, 3, 3]
    assert shapes["['main'][1][2]['params']['pos_emb']"] == [4, 32, 16, 96]
    # After the squeeze: channel halves 16x16x6, then stripe halves 16x8x12.
    assert shapes["['main'][3][1][0]['kernel']"] == [2, 6, 6]
    assert shapes["['main'][4][1][1]['kernel']"] == [3, 12, 12]
    assert shapes["['main'][4][0][1]['scale']"] == [3, 16, 8, 12]
    # Blocks stacked inside each coupling network: (steps, blocks, ...).
    assert shapes["['main'][4][2]['params']['blocks']['attn']['qkv']['kernel']"] == [
        3, 10, 1, 1, 96, 288]
    assert not any(k.startswith("['main'][5]") for k in shapes)  # the swap: no parameters


@pytest.mark.parametrize("arg", [None, "smoke"])
@pytest.mark.parametrize("name", CONFIGS)
def test_describe_works_for_every_flowpp_config(name, arg):
    if arg is None and name in TRACED_ELSEWHERE:
        pytest.skip("traced by tests/training/test_runs.py already (the smoke variant, "
                    "which has the same code path, is traced here)")
    info = _describe(name, arg)
    assert info["model"] == "flowpp" and info["num_params"] > 0
    if arg is None and name == "flowpp_cifar10_no_attention":
        assert info["num_params"] == 31_443_440  # the official gated_nin ablation


@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_attention_runs_at_most_at_32x32_like_the_official_models(name):
    """:smoke keeps the architecture's leading squeezes (ImageNet 64, CelebA), so attention
    sees at most 32x32 positions: at 128x128 (16,384 positions) one smoke run took over six
    minutes instead of under one (docs/benchmarks.md#smoke)."""
    shapes = _describe(name, "smoke")["shapes"]
    # A network's positions: its positional embedding's (H, W); attention where it has 'attn'.
    positions = [math.prod(shape[-3:-1]) for path, shape in shapes.items()
                 if path.endswith("['pos_emb']") and any(
                     k.startswith(path[:-len("['pos_emb']")] + "['blocks']['attn']")
                     for k in shapes)]
    assert bool(positions) == (_config(name, "smoke").model.mixer == "attention")
    assert max(positions, default=0) <= 32 * 32, positions
    official = _config(name).model.layout.split(",")
    smoke = _config(name, "smoke").model.layout.split(",")
    leading = next(i for i, g in enumerate(official + [""]) if g != "squeeze")
    assert smoke[:leading] == ["squeeze"] * leading and smoke[leading] != "squeeze"


def test_training_settings_follow_the_reference():
    c = _config("flowpp_cifar10")
    assert (c.optim.learning_rate, c.optim.warmup_steps, c.optim.grad_clip) == (3e-4, 2000, 1.0)
    assert (c.train.batch_size, c.train.init_batch_size, c.optim.ema_decay) == (64, 128, 0.999)
    assert c.model.dropout == 0.2 and c.model.iw_samples >= 1
    assert c.model.loss_scale == "nats" and c.model.init_from_official is None


def test_paper_eval_preset_is_the_papers_protocol():
    c = _config("flowpp_cifar10", "paper_eval")
    assert c.model.iw_samples == 4096 and c.eval.max_examples is None  # all 10,000 images
    assert 10_000 % c.eval.batch_size == 0
    assert c.model.loss_scale == "nats" and c.model.dropout == 0.2  # the model unchanged


# --------------------------------------------------------------------------- real MNIST

def _data_dir():
    path = os.environ.get("FLOWZOO_DATA_DIR")
    if not path:
        pytest.skip("FLOWZOO_DATA_DIR is not set: point it at a folder holding mnist/ "
                    "(the official MNIST files) to run the MNIST tests.")
    return path


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """A short smoke run on real MNIST through the trainer, with the multi-scale layout of the
    official model (squeeze and channel split; the :smoke preset itself has one group);
    returns the config, workdir, summary and the trained state (restored from its checkpoint
    without compiling init)."""
    data_dir = _data_dir()
    workdir = tmp_path_factory.mktemp("flowpp_mnist")
    config = _config("flowpp_mnist", "smoke")
    with config.unlocked():
        config.data.data_dir = data_dir
        config.data.source = "files"
        config.parallel = "jit"
        config.model.layout = "stripe:1,squeeze,channel:1,stripe:1"
        config.train.num_steps = 20
        config.train.log_every = 1
        config.train.eval_every = 1000
        config.train.checkpoint_every = 1000
    summary = experiment.train_and_evaluate(config, str(workdir))
    model = experiment.build_model(config.model, (28, 28, 1), 256)
    n = config.train.init_batch_size
    batch = {"image": jax.ShapeDtypeStruct((n, 28, 28, 1), jnp.uint8),
             "index": jax.ShapeDtypeStruct((n,), jnp.int32)}
    tx = optim.make_optimizer(config.optim)
    template = jax.eval_shape(lambda b: steps.create_state(
        model.init(jax.random.PRNGKey(0), b), tx, jax.random.PRNGKey(0)), batch)
    checkpointer = Checkpointer(str(workdir), save_every=1, keep=3)
    state, step = checkpointer.restore_latest(template)
    checkpointer.close()
    assert step == 20
    return config, workdir, summary, state


def test_mnist_smoke_training_bits_per_dim_fall(mnist_run):
    _, workdir, summary, _ = mnist_run
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in rows if r["split"] == "train"]
    assert len(train) == 20 and np.all(np.isfinite(train))
    # Per-batch losses are noisy (MNIST pixels that are blank in the whole init batch get
    # large per-element ActNorm scales), so compare medians of the first and last steps.
    assert np.median(train[-6:]) < np.median(train[:6]) - 0.5, train
    assert summary["samples_png"] and os.path.exists(summary["samples_png"])


def test_mnist_importance_weighted_bound_is_tighter(mnist_run):
    """On the same 32 test images (averaged): the IW bound (4 samples) <= single sample."""
    ev = mnist_run[2]["eval"]
    assert np.isfinite(ev["bits_per_dim"]) and np.isfinite(ev["iw_bits_per_dim"])
    assert 0 < ev["iw_bits_per_dim"] <= ev["bits_per_dim"], ev


def test_mnist_round_trip_through_flow_and_dequantizer(mnist_run):
    config, _, summary, state = mnist_run
    # Logged at every eval: the mean over images of the per-image max error.
    assert summary["eval"]["recon_error"] < 5e-4 and summary["eval"]["dequant_recon_error"] < 1e-4
    images = np.asarray(data.load("mnist", "test", source="files",
                                  data_dir=config.data.data_dir).images[:32])
    batch = {"image": jnp.asarray(images), "index": jnp.arange(32, dtype=jnp.int32)}
    flow = flowpp.make_flow(config.model, images.shape[1:], 256)

    @jax.jit
    def check(params, batch, key):
        errors = flowpp.round_trip_errors(flow, params, batch, key)
        z = flowpp.encode(flow, params, batch["image"], key)
        return errors, z, flowpp.decode(flow, params, z)

    errors, z, decoded = check(state.ema_params, batch, jax.random.PRNGKey(1))
    assert z.shape == (32, 14, 14, 4) and z.dtype == jnp.float32
    # x -> z -> x on dequantized pixels y in [0, 256), float32 (one ulp at 255 is 1.5e-5):
    # below 1e-4 of the pixel range, and a few tens of ulps absolute.
    recon = float(jnp.max(errors["recon_error"]))
    assert recon / 256 < 1e-4 and recon < 5e-4, recon
    # eps -> u -> eps through the dequantizer's exact inverse.
    assert float(jnp.max(errors["dequant_recon_error"])) < 1e-4
    # image -> latent -> image gives back the integer image (floor of y = x + u).
    assert float(jnp.mean(decoded == batch["image"])) > 0.999
