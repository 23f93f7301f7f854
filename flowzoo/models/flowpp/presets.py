"""Flow++ config presets shared by experiments/configs/flowpp_*.py.

The official CIFAR-10 model and training settings (as in the authors' code and the
paper), a ``smoke`` shrink for tests, a ``cpu`` model for CPU experiments, the paper's
evaluation protocol ``paper_eval``, and :func:`config` which the experiment files call with
their dataset and overrides.
"""

from ml_collections import config_dict

from flowzoo.training.config import assemble

PAPER_IW_SAMPLES = 4096


# The official CIFAR-10 Flow++ model; also the defaults of config.model keys left unset.
OFFICIAL_MODEL = dict(
    filters=96, blocks=10, num_components=32, coupling="mixture",
    mixer="attention",  # or "gated_nin" (the no-attention ablation), "none"
    num_heads=4, dropout=0.2,
    # Main-flow groups (flows.py): the latent is 16x16x12 on CIFAR-10.
    layout="stripe:4,squeeze,channel:2,stripe:3",
    pointwise=True,  # a 1x1 conv per half in every step (not in the ImageNet models)
    swap_back_odd=True,  # flowzoo's choice after odd groups; the official code: False
    weight_norm=False,  # conditioner convolutions (the official ImageNet 32x32 model: True)
    elu_before_output=False,  # concat_elu before each conditioner's last conv (ImageNet)
    alpha=0.05,
    dequantization="variational", dequant_filters=96, dequant_blocks=2, dequant_steps=4,
    dequant_mixer=None,  # None: the main flow's mixer
    dequant_context_filters=32, dequant_context_blocks=3,
    dequant_context_norm=False, dequant_context_attention=False,  # True in ImageNet models
    iw_samples=16,  # the paper: PAPER_IW_SAMPLES, in a final --mode=eval
    iw_chunk=1,  # samples per lax.map step: memory of one eval batch
    sample_temperature=1.0,
    # What the optimizer differentiates: "nats", the official loss (mean negative
    # log-likelihood per example, in nats: clipping at 1.0 and Adam's epsilon on that
    # scale), or "bits_per_dim".  The logged loss is bits/dim either way.
    loss_scale="nats",
    # An official TF checkpoint prefix to start from instead of a data-dependent init
    # (official.py), and whether to take its EMA shadows (what the official evaluation uses).
    init_from_official=None, official_ema=True,
    # Execution only (same function, same parameter count): conditioner blocks under
    # nn.scan (compile once, not `blocks` times) and rematerialised in the backward pass;
    # the steps of each flow group under lax.scan (False: unrolled, the same parameters);
    # attention one example at a time on CPU ("auto"; "examples", "off": attention.py).
    scan_blocks=True, remat=True, scan_steps=True, attention_loop="auto")


# The official ImageNet models (flows_imagenet/launchers/*_official.py), as overrides of
# OFFICIAL_MODEL; experiments/configs/flowpp_imagenet*.py say what each key reproduces.
IMAGENET32_MODEL = dict(
    filters=128, blocks=20, num_components=32, mixer="attention", num_heads=4, dropout=0.0,
    layout="stripe:4,stripe:3,squeeze,channel:3,stripe:3", pointwise=False,
    swap_back_odd=False, weight_norm=True, elu_before_output=True,
    dequant_filters=128, dequant_blocks=8, dequant_steps=8, dequant_context_filters=32,
    dequant_context_blocks=8, dequant_context_norm=True, dequant_context_attention=True)
IMAGENET64_MODEL = dict(
    filters=96, blocks=16, num_components=4, mixer="attention", num_heads=4, dropout=0.0,
    layout="squeeze,stripe:4,squeeze,channel:2,stripe:2,squeeze,channel:2,stripe:2",
    pointwise=False, swap_back_odd=False, weight_norm=False, elu_before_output=True,
    dequant_filters=96, dequant_blocks=5, dequant_steps=4, dequant_mixer="none",
    dequant_context_filters=32, dequant_context_blocks=5, dequant_context_norm=True,
    dequant_context_attention=False)

# flows_celeba/launchers/celeba128_5bit_official.py: the ImageNet 64x64 model with one more
# squeeze in front (128x128x3 -> 32x32x48 before the first steps) and 12 blocks.
CELEBA128_MODEL = dict(IMAGENET64_MODEL, blocks=12, layout="squeeze," + IMAGENET64_MODEL["layout"])


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
    """A tiny model of the same structure and a seconds-long run (tests)."""
    m = c.model
    m.filters = 8
    m.blocks = 1
    m.num_components = 4
    m.num_heads = 2
    m.layout = "stripe:1,squeeze,channel:1,stripe:1"
    m.dequant_filters = 8
    m.dequant_blocks = 1
    m.dequant_steps = 2
    m.dequant_context_filters = 8
    m.dequant_context_blocks = 1
    m.iw_samples = 4
    m.iw_chunk = 2
    c.train.batch_size = 16
    c.train.num_steps = 20
    c.train.init_batch_size = 128
    c.train.log_every = 5
    c.train.eval_every = 10
    c.train.checkpoint_every = 10
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 5
    c.optim.ema_decay = 0.9
    c.eval.batch_size = 32
    c.eval.max_examples = 32
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
