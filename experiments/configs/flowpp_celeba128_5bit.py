"""Flow++ on 5-bit CelebA-HQ 128x128: the official model
(flows_celeba/launchers/celeba128_5bit_official.py, 122,790,952 parameters).

The ImageNet 64x64 architecture with one more squeeze in front (128x128x3 -> 32x32x48 before
the first steps; latent 8x8x768) and 12 blocks per coupling, on the authors' 5-bit array
(dataset ``celeba128_5bit``: ``celeba_128pixels_5bit_full.npy`` under ``DATA_DIR/celeba/``).
Training: batch 48, data-dependent init on 64 images, Adam at 1e-5 after a 50,000-step
warm-up, then constant, EMA 0.999, clipping at 1.0 on the nats loss.  Evaluation runs on
the training images (the official data has no held-out split).
"""

from flowzoo.configs import flowpp as presets

PRESETS = presets.PRESETS  # smoke, cpu, paper_eval (flowzoo/configs/flowpp.py)


def get_config(arg: str | None = None):
    return presets.config("celeba128_5bit", arg, name="flowpp_celeba128_5bit.py",
                          data=dict(eval_split="train"), model=presets.CELEBA128_MODEL,
                          train=dict(batch_size=48, init_batch_size=64),
                          optim=dict(learning_rate=1e-5, warmup_steps=50_000, ema_decay=0.999))
