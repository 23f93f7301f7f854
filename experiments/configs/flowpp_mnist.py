"""Flow++ on MNIST (28x28x1, 256 levels): the CIFAR-10 architecture and training settings on
another dataset.  ``flowpp_mnist.py:smoke`` is a tiny run used by the tests (under a minute cold on 2 CPU cores)."""

from flowzoo.configs import flowpp as presets

PRESETS = presets.PRESETS  # smoke, cpu, paper_eval (flowzoo/configs/flowpp.py)


def get_config(arg: str | None = None):
    return presets.config("mnist", arg, name="flowpp_mnist.py")
