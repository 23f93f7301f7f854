"""Flow++ config assembly shared by experiments/configs/flowpp_*.py.

The official CIFAR-10 model and training settings (as in the authors' code and the
paper), a ``smoke`` shrink for tests, a ``cpu`` model for CPU experiments, the paper's
evaluation protocol ``paper_eval``, and :func:`config` which the experiment files call with
their dataset and overrides.
"""

import math

from ml_collections import config_dict

from flowzoo.configs.common import assemble
from flowzoo.data import DATASETS
from flowzoo.models.flowpp.architectures import (CELEBA128_MODEL, IMAGENET32_MODEL,
                                                 IMAGENET64_MODEL, OFFICIAL_MODEL)

PAPER_IW_SAMPLES = 4096
__all__ = ["CELEBA128_MODEL", "IMAGENET32_MODEL", "IMAGENET64_MODEL", "OFFICIAL_MODEL",
           "PAPER_IW_SAMPLES", "config"]


def flowpp_model(c):
    """Fills ``c.model`` with the official CIFAR-10 Flow++ settings."""
    c.model.name = "flowpp"
    for key, value in OFFICIAL_MODEL.items():
        c.model[key] = value
    c.model.init_from_official = config_dict.placeholder(str)
    c.model.dequant_mixer = config_dict.placeholder(str)


def flowpp_training(c):
    c.train.batch_size = 64
    c.train.init_batch_size = 128
    c.train.num_steps = 1_000_000
    c.train.log_every = 100
    c.train.eval_every = 20_000
    c.train.checkpoint_every = 2_000
    c.optim.name = "adam"
    c.optim.learning_rate = 3e-4
    c.optim.warmup_steps = 2000
    c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.999, 1e-8
    c.optim.grad_clip = 1.0
    c.optim.ema_decay = 0.999


def smoke(c):
    """A tiny Flow++ (variational dequantizer, mixture couplings, gated convs with attention;
    one group of two steps after the architecture's leading squeezes, so that attention on
    64x64 and 128x128 images runs at 32x32 as in the official models) and a 20-step run
    (batch 16, evaluation on 32 images; 8 and 16 on images larger than 32x32x3): under 60 s
    on 2 CPU cores with a cold compilation cache (most of it compiling), a few seconds with
    a warm one (docs/benchmarks.md#smoke)."""
    m = c.model
    groups = m.layout.split(",")
    leading_squeezes = next(i for i, g in enumerate(groups + [""]) if g.strip() != "squeeze")
    m.filters = 8
    m.blocks = 1
    m.num_components = 4
    m.num_heads = 2
    m.layout = "squeeze," * leading_squeezes + "stripe:2"
    m.dequant_filters = 8
    m.dequant_blocks = 1
    m.dequant_steps = 1
    m.dequant_context_filters = 8
    m.dequant_context_blocks = 1
    m.iw_samples = 2
    m.iw_chunk = 2
    large = math.prod(DATASETS[c.data.name].shape) > 32 * 32 * 3
    c.train.batch_size = 8 if large else 16
    c.train.num_steps = 20
    c.train.init_batch_size = 32 if large else 128
    c.train.log_every = 5
    c.train.eval_every = 20  # the final evaluation only
    c.train.checkpoint_every = 10
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 5
    c.optim.ema_decay = 0.9
    c.eval.batch_size = 16 if large else 32
    c.eval.max_examples = 16 if large else 32
    c.eval.num_samples = 4
    m.loss_scale = "bits_per_dim"  # the scale its learning rate and tests were tuned on


def cpu(c):
    """A small Flow++ of the same structure for CPU experiments, such as variational vs
    uniform dequantization on MNIST (``--config.model.dequantization=uniform``)."""
    m = c.model
    m.filters = 32
    m.blocks = 1
    m.num_components = 8
    m.num_heads = 4
    m.dropout = 0.0
    m.layout = "stripe:2,squeeze,channel:2,stripe:2"
    m.dequant_filters = 32
    m.dequant_blocks = 1
    m.dequant_steps = 2
    m.dequant_context_filters = 16
    m.dequant_context_blocks = 1
    m.iw_samples = 4
    m.iw_chunk = 4
    m.remat = False  # small activations; recomputing them would only cost time on CPU
    m.loss_scale = "bits_per_dim"  # the scale its learning rate was tuned (and measured) on
    c.train.batch_size = 16
    c.train.num_steps = 600
    c.train.init_batch_size = 128
    c.train.log_every = 50
    c.train.eval_every = 600
    c.train.checkpoint_every = 200
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 50
    c.optim.ema_decay = 0.99
    c.eval.batch_size = 100
    c.eval.max_examples = 500
    c.eval.num_samples = 36


def paper_eval(c):
    """The paper's evaluation protocol (use with --mode=eval, or --mode=train with
    --config.train.num_steps=0 on an official checkpoint): the importance-weighted bound
    with 4,096 dequantization samples per image over the whole test split, with the EMA
    weights (the trainer always evaluates those)."""
    c.model.iw_samples = PAPER_IW_SAMPLES
    c.model.iw_chunk = 8  # 8 x eval.batch_size images per forward pass
    c.eval.batch_size = 50  # divides the 10,000 CIFAR-10 test images
    c.eval.max_examples = None  # all of them


PRESETS = {"smoke": smoke, "cpu": cpu, "paper_eval": paper_eval}


def config(dataset: str, arg, *, name: str, model=None, train=None, optim=None, data=None):
    """The official settings on ``dataset``, then the given overrides, then ``:smoke``/``:cpu``."""
    return assemble(dataset, arg, name=name, defaults=(flowpp_model, flowpp_training),
                    presets=PRESETS,
                    overrides=dict(model=model, train=train, optim=optim, data=data))
