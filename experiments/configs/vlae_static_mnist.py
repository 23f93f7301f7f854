"""VLAE on statically binarized MNIST (Larochelle & Murray), the paper's headline binary model:
ResNet VAE (latent 64), AF prior (4 mean-only MADE steps of 640 units), masked PixelCNN
decoder (6 weight-shared masked 3x3 layers of 12 filters), Adamax 0.002, Polyak 0.998, free
bits 0.01 nats/dim.  Paper: test NLL 79.03 nats (4,096 importance samples), KL 13.3 nats.

    python experiments/main.py --config experiments/configs/vlae_static_mnist.py[:smoke|:cpu] \\
        --workdir W [--config.model.pixelcnn_layers=L] [--config.model.posterior=iaf \\
        --config.model.prior=normal]

The paper trains its final models on train + validation; this trains on train (50k).
"""

from flowzoo.configs import vlae as presets


def get_config(arg: str | None = None):
    return presets.config("binarized_mnist", arg, name="vlae_static_mnist.py",
                          model=dict(pixelcnn_share_weights=True))
