"""Flow++ on ImageNet 64x64 (reference: 4 mixture components, 16 blocks, batch 72).

Only those settings are known here; everything else is the CIFAR-10 architecture.  This
gives 41,388,368 parameters, not the paper's 73.5M: the official ImageNet models differ in
ways not recorded in our reference (they also use weight norm, which flowzoo's conditioners
do not, but that adds only one vector per convolution).  Treat the count as unverified.
"""

from flowzoo.models.flowpp import presets


def get_config(arg: str | None = None):
    return presets.config("imagenet64", arg, name="flowpp_imagenet64.py",
                          data=dict(eval_split="validation"),
                          model=dict(num_components=4, blocks=16), train=dict(batch_size=72))
