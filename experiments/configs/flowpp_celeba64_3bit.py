"""Flow++ on 3-bit CelebA-HQ 64x64: the official model
(flows_celeba/launchers/celeba64_3bit_official.py, 73,489,960 parameters).

As ``flowpp_celeba64_5bit.py`` (the same architecture and training settings) on the 3-bit
array (dataset ``celeba64_3bit``: ``celeba_full_64x64_3bit.npy``, 8 levels, which the input
map and the dequantizer's context use, as the official ``x * 0.9 / 8`` and ``x / 8 - 0.5``
do).  Evaluation runs on the training images (the official data has no held-out split).
"""

from flowzoo.configs import flowpp as presets

PRESETS = presets.PRESETS  # smoke, cpu, paper_eval (flowzoo/configs/flowpp.py)


def get_config(arg: str | None = None):
    return presets.config("celeba64_3bit", arg, name="flowpp_celeba64_3bit.py",
                          data=dict(eval_split="train"), model=presets.IMAGENET64_MODEL,
                          train=dict(batch_size=56, init_batch_size=56),
                          optim=dict(learning_rate=4e-5, warmup_steps=20_000,
                                     decay_start=50_000, decay_rate=0.9995,
                                     min_learning_rate=1e-5, ema_decay=0.999))
