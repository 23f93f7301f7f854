"""VLAE on statically binarized MNIST (Larochelle & Murray), the paper's headline binary model:
ResNet VAE (latent 64), AF prior (4 mean-only MADE steps of 640 units), masked PixelCNN
decoder (6 weight-shared masked 3x3 layers of 12 filters), Adamax 0.002, Polyak 0.998, free
bits 0.01 nats/dim.  Paper: test NLL 79.03 nats (4,096 importance samples), KL 13.3 nats.

    python experiments/main.py --config experiments/configs/vlae_static_mnist.py[:smoke|:cpu] \\
        --workdir W [--config.model.pixelcnn_layers=L] [--config.model.posterior=iaf \\
        --config.model.prior=normal]

Without a preset this is the tuning protocol (train on the 50,000 training images, evaluate on
the 10,000 validation images); ``:paper`` is the paper's final protocol (train on train +
validation, evaluate on test) and ``:paper_eval`` its NLL evaluation (``--mode=eval``).
"""

from flowzoo.configs import vlae as presets


PRESETS = {
    "paper": "the paper's final protocol: train on train+valid (50,000 + 10,000), evaluate on test",
    "paper_eval": ":paper with the paper's NLL: 4,096 importance samples per image, the whole "
                  "test split, EMA weights (--mode=eval on a :paper workdir)",
    "cpu": ":paper's protocol, 2,000 steps of batch 64 on the full model (the results suite)",
    "smoke": "a tiny model of the same structure; under a minute cold on 2 CPU cores (tests)",
}


def get_config(arg: str | None = None):
    return presets.config("binarized_mnist", arg, name="vlae_static_mnist.py",
                          model=dict(pixelcnn_share_weights=True))
