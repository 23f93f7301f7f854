"""VLAE on dynamically binarized MNIST (each image re-binarized by sampling Bernoulli(p/255)
every time it is used); the static-MNIST hyperparameters, masked layers untied.
Paper: test NLL 78.53 nats."""

from flowzoo.configs import vlae as presets


def get_config(arg: str | None = None):
    return presets.config("mnist", arg, name="vlae_dynamic_mnist.py",
                          data=dict(binarization="dynamic"))
