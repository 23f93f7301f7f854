"""VLAE config assembly shared by experiments/configs/vlae_*.py (binary images).

The paper's binary-image model (one set of hyperparameters for all four datasets, tuned on
static MNIST) and its training settings, then a preset named by the config argument:

- (none): the tuning protocol: train on ``train``, evaluate on ``validation`` (on ``test``
  for datasets without one: dynamic MNIST, OMNIGLOT);
- ``:paper``: the paper's final protocol: train on ``train+valid`` (static MNIST 50,000 +
  10,000, Caltech-101 Silhouettes 4,100 + 2,264; ``train`` where there is no validation
  split), evaluate on ``test``;
- ``:paper_eval``: ``:paper`` with the paper's NLL evaluation: :data:`PAPER_IW_SAMPLES`
  importance samples per image over the whole test split (the trainer always evaluates the
  EMA weights); ``--mode=eval`` on a workdir trained with ``:paper``;
- ``:cpu``: ``:paper`` shrunk to a run sized for a 2-core CPU (the results suite,
  ``experiments/reproduce.py``); ``:smoke``: a tiny run for tests, under a minute cold on 2
  CPU cores.

Free bits: every preset uses ``free_bits_grouping="per_group"`` with one group per latent
element (0.01 nats/dim x 784 / 64 = 0.1225 nats each), as the IAF code that VLAE builds on
floors each group's batch-mean KL; a single floor on the total (``total``, 7.84 nats) is
inactive once the KL passes 7.84 nats, well below the paper's ~13.  The PixelCNN depth,
which sets the decoder's receptive field, is ``--config.model.pixelcnn_layers=L`` (L masked
3x3 layers: L rows above, L columns either side).
"""

from flowzoo.data import DATASETS
from flowzoo.models.vlae.config import defaults
from flowzoo.configs.common import assemble

PAPER_IW_SAMPLES = 4096  # the paper's NLL protocol on the binary datasets
PAPER_IW_SAMPLES_CIFAR = 512  # ... and on CIFAR-10 (experiments/configs/vlae_cifar10.py)


def vlae_model(c):
    """Fills ``c.model`` with the paper's binary-image VLAE (every key, so overrides from the
    command line work on a locked config); free bits per latent element (module docstring)."""
    for key, value in defaults("binary").items():
        c.model[key] = value
    c.model.free_bits_grouping = "per_group"
    c.model.free_bits_group_size = 1


def vlae_training(c):
    """Adamax 0.002 and Polyak averaging 0.998 (the paper); batch size and length are not
    stated in the paper: 64 and 300k steps (~380 epochs of 50k) are our choice."""
    c.train.batch_size = 64
    c.train.init_batch_size = 256
    c.train.num_steps = 300_000
    c.train.log_every = 200
    c.train.eval_every = 10_000
    c.train.checkpoint_every = 2_000
    c.optim.name = "adamax"
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 0
    c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.999, 1e-8
    c.optim.grad_clip = 0.0  # none in the IAF code; the loss is in nats per image
    c.optim.ema_decay = 0.998
    c.eval.batch_size = 100
    c.eval.num_samples = 64
    has_validation = "validation" in DATASETS[c.data.name].splits
    c.data.train_split = "train"
    c.data.eval_split = "validation" if has_validation else "test"


def paper(c):
    """The paper's final protocol: train on train + validation, evaluate on test."""
    has_validation = "validation" in DATASETS[c.data.name].splits
    c.data.train_split = "train+valid" if has_validation else "train"
    c.data.eval_split = "test"


def paper_eval(c):
    """``paper`` with the paper's evaluation: 4,096 importance samples per test image, the
    whole test split, the EMA weights (the trainer evaluates those)."""
    paper(c)
    c.model.iw_samples = PAPER_IW_SAMPLES
    c.model.iw_chunk = 32  # 32 x eval.batch_size images per forward pass
    c.eval.batch_size = 100
    c.eval.max_examples = None


def smoke(c):
    """A tiny model of the same structure; the run takes under a minute cold on 2 CPU cores
    (tests; docs/benchmarks.md#smoke)."""
    m = c.model
    m.channels = (4, 8)
    m.blocks_between = 0
    m.hidden = 32
    m.latent = 8
    m.pixelcnn_layers = 2
    m.pixelcnn_filters = 4
    m.prior_steps = 2
    m.prior_hidden = 16
    m.posterior_steps = 2
    m.posterior_hidden = 16
    m.posterior_context = 8
    m.iw_samples = 4
    m.iw_chunk = 2
    c.train.batch_size = 16
    c.train.num_steps = 30
    c.train.init_batch_size = 64
    c.train.log_every = 5
    c.train.eval_every = 15
    c.train.checkpoint_every = 15
    c.optim.learning_rate = 3e-3
    c.optim.ema_decay = 0.9
    c.eval.batch_size = 32
    c.eval.max_examples = 32
    c.eval.num_samples = 4


def cpu(c):
    """``paper``'s protocol and the full architecture for 2,000 steps of batch 64 (sized for
    2 CPU cores); evaluates the EMA params on a fixed 1,000 test images with 32 importance
    samples."""
    paper(c)
    c.train.batch_size = 64
    c.train.num_steps = 2_000
    c.train.log_every = 100
    c.train.eval_every = 100_000  # only the final evaluation
    c.train.checkpoint_every = 1_000
    c.model.iw_samples = 32
    c.model.iw_chunk = 8
    c.optim.ema_decay = 0.99  # 0.998 averages over ~500 steps: too long for 3k steps
    c.eval.batch_size = 100
    c.eval.max_examples = 1_000
    c.eval.num_samples = 16


PRESETS = {"smoke": smoke, "cpu": cpu, "paper": paper, "paper_eval": paper_eval}


def config(dataset: str, arg, *, name: str, model=None, train=None, optim=None, data=None):
    """The paper's settings on ``dataset``, then the given overrides, then the preset."""
    return assemble(dataset, arg, name=name, defaults=(vlae_model, vlae_training),
                    presets=PRESETS,
                    overrides=dict(model=model, train=train, optim=optim, data=data))
