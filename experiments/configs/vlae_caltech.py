"""VLAE on Caltech-101 Silhouettes 28x28 (already binary); the static-MNIST hyperparameters,
masked layers untied.  Paper: test NLL 77.36 nats."""

from flowzoo.configs import vlae as presets


def get_config(arg: str | None = None):
    return presets.config("caltech101_silhouettes", arg, name="vlae_caltech.py")
