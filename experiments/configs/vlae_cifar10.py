"""VLAE on CIFAR-10 (Chen et al. 2017): ResNet (or DenseNet) VAE with an 8x8x16 latent, a
6-step PixelCNN AF prior, and a conditional PixelCNN++ decoder with a small receptive field.

    python experiments/main.py --config experiments/configs/vlae_cifar10.py:VARIANT \\
        --workdir W [--mode=train|eval|sample|describe]

VARIANT (comma-separated, e.g. ``rf4x2,smoke``):
    rf7x4 (default)  decoder receptive field 7x4 (paper: 2.95 bits/dim with DenseNet)
    rf5x3, rf4x2     smaller receptive fields (paper: 4x2 gives 3.12)
    gray7x4          7x4, the decoder sees only the grayscale image (colour goes into z)
    densenet         each group of ResNet blocks -> one 3-step DenseNet block (paper: 2.95)
    paper            the paper's protocol: train on the 50,000 training images (CIFAR-10 has
                     no validation split), evaluate on test (what the default does too)
    paper_eval       the paper's NLL evaluation: 512 importance samples per image, the whole
                     test split, EMA weights (--mode=eval on a trained workdir)
    smoke            a tiny model of the same structure; under a minute cold on 2 cores
Training: soft free bits (lambda = free_bits * 3072 nats), Adamax 0.002, EMA 0.999 (the IAF
code's CIFAR settings); batch 64 and the run length are our choice.  Data: TFDS ``cifar10``
(``--config.data.data_dir``).  Evaluation reports every VLAE metric in nats and bits/dim; the
headline ``nll_iw_bits_per_dim`` is the importance-weighted bound with ``model.iw_samples``
samples (small during training); the paper's protocol (512 samples on the test set) is a final

    python experiments/main.py --config experiments/configs/vlae_cifar10.py:rf7x4,paper_eval \\
        --workdir W --mode=eval
"""

from flowzoo.configs.vlae import PAPER_IW_SAMPLES_CIFAR as PAPER_IW_SAMPLES
from flowzoo.models.vlae.config import defaults
from flowzoo.training.config import base_config

PRESETS = {
    "rf7x4": "decoder receptive field 7x4, the default (paper: 2.95 bits/dim with DenseNet)",
    "rf5x3": "receptive field 5x3",
    "rf4x2": "receptive field 4x2 (paper: 3.12 bits/dim)",
    "gray7x4": "7x4, the decoder sees only the grayscale image (colour goes into z)",
    "densenet": "DenseNet blocks instead of pairs of ResNet blocks (paper: 2.95 bits/dim)",
    "paper": "the paper's protocol: train on the 50,000 training images, evaluate on test",
    "paper_eval": "the paper's NLL: 512 importance samples, whole test split, EMA weights "
                  "(--mode=eval)",
    "smoke": "a tiny model of the same structure; under a minute cold on 2 CPU cores (tests)",
}
VARIANTS = tuple(PRESETS)


def _model(c):
    for key, value in defaults("cifar").items():
        c.model[key] = value
    c.model.iw_samples = 8  # the paper: PAPER_IW_SAMPLES, in a final --mode=eval
    c.model.iw_chunk = 4


def _training(c):
    c.train.batch_size = 64
    c.train.init_batch_size = 128
    c.train.num_steps = 500_000
    c.train.log_every = 200
    c.train.eval_every = 20_000
    c.train.checkpoint_every = 2_000
    c.optim.name = "adamax"
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 0
    c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.999, 1e-8
    c.optim.grad_clip = 0.0
    c.optim.ema_decay = 0.999
    c.eval.batch_size = 64
    c.eval.num_samples = 16


def _smoke(c):
    m = c.model
    m.channels = (4, 8, 8)
    m.blocks = (1, 1, 1)
    m.growth = (2, 4, 4)
    m.latent_channels = 2
    m.prior_steps = 2
    m.prior_hidden = 8
    m.pixelcnn_filters = 8
    m.num_mixtures = 2
    m.iw_samples = 2
    m.iw_chunk = 2
    c.train.batch_size = 8
    c.train.init_batch_size = 16
    c.train.num_steps = 10
    c.train.log_every = 5
    c.train.eval_every = 10
    c.train.checkpoint_every = 10
    c.optim.ema_decay = 0.9
    c.eval.batch_size = 8
    c.eval.max_examples = 8
    c.eval.num_samples = 2


def _paper_eval(c):
    c.model.iw_samples = PAPER_IW_SAMPLES
    c.model.iw_chunk = 8  # 8 x eval.batch_size images per forward pass
    c.eval.batch_size = 50  # divides the 10,000 test images
    c.eval.max_examples = None


def get_config(arg: str | None = None):
    c = base_config()
    c.data.name = "cifar10"
    _model(c)
    _training(c)
    for variant in [v.strip() for v in (arg or "").split(",") if v.strip()]:
        if variant not in VARIANTS:
            raise ValueError(f"vlae_cifar10.py: unknown variant {variant!r}; choose from "
                             f"{VARIANTS} (comma-separated, e.g. 'rf4x2,smoke').")
        if variant.startswith("rf"):
            a, b = variant[2:].split("x")
            c.model.receptive_field = (int(a), int(b))
        elif variant == "gray7x4":
            c.model.receptive_field = (7, 4)
            c.model.grayscale = True
        elif variant == "densenet":
            c.model.block = "densenet"
        elif variant == "paper":
            c.data.train_split, c.data.eval_split = "train", "test"
        elif variant == "paper_eval":
            _paper_eval(c)
        else:
            _smoke(c)
    c.lock()
    return c
