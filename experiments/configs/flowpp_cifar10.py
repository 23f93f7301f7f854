"""Flow++ on CIFAR-10, the official configuration (31,443,440 parameters).

Training as in the paper's code: Adam 3e-4 with a 2,000-step linear warm-up, global-norm
clipping 1.0, batch 64, dropout 0.2, EMA 0.999, data-dependent init on 128 images.

The loss is the official one: the gradient of the mean negative log-likelihood in nats
(``model.loss_scale="nats"``; the logged loss is bits/dim).

Evaluation reports the single-sample bound (``bits_per_dim``, the headline metric) and the
importance-weighted bound over ``model.iw_samples`` dequantization samples
(``iw_bits_per_dim``), computed ``model.iw_chunk`` samples at a time.  The paper's 3.08
bits/dim is the IW bound with 4,096 samples on all 10,000 test images with the EMA weights;
that costs 4,096 forward passes per image, so the periodic evaluations during training use
16 and the paper's number is a separate final evaluation, the ``paper_eval`` preset:

    python experiments/main.py --config experiments/configs/flowpp_cifar10.py:paper_eval \
        --workdir W --mode=eval

An official checkpoint of the authors' TensorFlow code (prefix P, without ``.index``) is
evaluated and sampled the same way by loading it into a new workdir with zero training steps
(its EMA weights; ``--config.model.official_ema=False`` for the raw ones):

    python experiments/main.py --config experiments/configs/flowpp_cifar10.py:paper_eval \
        --workdir W --config.model.init_from_official=P --config.train.num_steps=0

``flowpp_cifar10.py:smoke`` is a tiny model of the same structure.
"""

from flowzoo.configs import flowpp as presets

PRESETS = presets.PRESETS  # smoke, cpu, paper_eval (flowzoo/configs/flowpp.py)


def get_config(arg: str | None = None):
    return presets.config("cifar10", arg, name="flowpp_cifar10.py")
