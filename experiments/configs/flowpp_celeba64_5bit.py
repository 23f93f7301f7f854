"""Flow++ on 5-bit CelebA-HQ 64x64: the official model
(flows_celeba/launchers/celeba64_5bit_official.py, 73,489,960 parameters).

The ImageNet 64x64 architecture (``flowpp_imagenet64.py``) on the authors' 5-bit CelebA-HQ
array (dataset ``celeba64_5bit``: ``celeba_full_64x64_5bit.npy`` under
``DATA_DIR/celeba/``).  Training: batch 56, data-dependent init on 56 images, Adam at 4e-5
after a 20,000-step warm-up, decaying by 0.9995 per step from step 50,000 down to 1e-5 (as
the official schedule), EMA 0.999, clipping at 1.0 on the nats loss.  The official data has no held-out split, so evaluation runs on (the first
``eval.max_examples`` of) the training images.
"""

from flowzoo.configs import flowpp as presets

PRESETS = presets.PRESETS  # smoke, cpu, paper_eval (flowzoo/configs/flowpp.py)


def get_config(arg: str | None = None):
    return presets.config("celeba64_5bit", arg, name="flowpp_celeba64_5bit.py",
                          data=dict(eval_split="train"), model=presets.IMAGENET64_MODEL,
                          train=dict(batch_size=56, init_batch_size=56),
                          optim=dict(learning_rate=4e-5, warmup_steps=20_000,
                                     decay_start=50_000, decay_rate=0.9995,
                                     min_learning_rate=1e-5, ema_decay=0.999))
