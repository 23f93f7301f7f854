"""Flow++ on ImageNet 32x32 (reference: 128 filters, 20 blocks, learning rate 1e-3).

Only those settings are known here; everything else is the CIFAR-10 architecture.  This
gives 90,652,816 parameters, not the paper's 169.0M: the official ImageNet models differ in
ways not recorded in our reference (they also use weight norm, which flowzoo's conditioners
do not, but that adds only one vector per convolution).  Treat the count as unverified.
"""

from flowzoo.models.flowpp import presets


def get_config(arg: str | None = None):
    return presets.config("imagenet32", arg, name="flowpp_imagenet32.py",
                          data=dict(eval_split="validation"),
                          model=dict(filters=128, blocks=20), optim=dict(learning_rate=1e-3))
