"""Flow++ on 5-bit ImageNet 64x64: the official model
(flows_imagenet/launchers/imagenet64_5bit_official.py, 73,489,960 parameters).

The ImageNet 64x64 architecture (``flowpp_imagenet64.py``) on the top 5 bits of each pixel
(``data.num_bits=5``: 32 levels, which the input map and the dequantizer's context use, as
the official ``x * 0.9 / 32`` and ``x / 32 - 0.5`` do).  Training: batch 60, data-dependent
init on 60 images, Adam at 4e-4 after a 10,000-step warm-up, EMA 0.999, clipping at 1.0 on
the nats loss; decaying by 0.9995 per step from step 50,000 down to 3e-4 as the official
schedule does.  Not reproduced: its later phase (a new warm-up to 1e-5 at step 110,000);
resume with ``--config.optim.learning_rate=1e-5 --allow_config_change`` to follow it.
"""

from flowzoo.configs import flowpp as presets

PRESETS = presets.PRESETS  # smoke, cpu, paper_eval (flowzoo/configs/flowpp.py)


def get_config(arg: str | None = None):
    return presets.config("imagenet64", arg, name="flowpp_imagenet64_5bit.py",
                          data=dict(eval_split="validation", num_bits=5),
                          model=presets.IMAGENET64_MODEL,
                          train=dict(batch_size=60, init_batch_size=60),
                          optim=dict(learning_rate=4e-4, warmup_steps=10_000,
                                     decay_start=50_000, decay_rate=0.9995,
                                     min_learning_rate=3e-4, ema_decay=0.999))
