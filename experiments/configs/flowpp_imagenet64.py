"""Flow++ on ImageNet 64x64: the official model (flows_imagenet/launchers/imagenet64_official.py,
73,489,960 parameters).

Architecture, as the authors' launcher builds it: a multi-level main flow ``squeeze,
stripe:4, squeeze, channel:2, stripe:2, squeeze, channel:2, stripe:2`` (latent 8x8x192, no
dimensions factored out), no 1x1 convolution, plain (not weight-normalised) convolutions,
96 filters, 16 blocks, 4 mixture components, a concat_elu before each conditioner's last
convolution; the dequantizer's context network has 5 blocks of gated conv and LayerNorm,
and its noise flow 4 steps of 5-block couplings without attention (``dequant_mixer="none"``;
their unused positional embeddings are kept, as in the official variables).  Training:
dropout 0, batch 72, data-dependent init on 72 images, Adam at 4e-4 after a 10,000-step
warm-up, then decaying by 0.99995 per step from step 50,000 down to 3e-4 (the official
schedule jumps from 3.1e-4 to 3e-4 at step 55,000; this reaches 3e-4 about 750 steps later),
EMA 0.999, clipping at 1.0 on the nats loss.  Not reproduced: the official schedule's
hand-made phases after step 230,000 (new warm-ups to 1e-5 and 1e-6, "to prevent any NaNs");
resume with ``--config.optim.learning_rate=... --allow_config_change`` to follow them.
``flowpp_imagenet64_5bit.py`` is the 5-bit variant.
"""

from flowzoo.configs import flowpp as presets

PRESETS = presets.PRESETS  # smoke, cpu, paper_eval (flowzoo/configs/flowpp.py)


def get_config(arg: str | None = None):
    return presets.config("imagenet64", arg, name="flowpp_imagenet64.py",
                          data=dict(eval_split="validation"), model=presets.IMAGENET64_MODEL,
                          train=dict(batch_size=72, init_batch_size=72),
                          optim=dict(learning_rate=4e-4, warmup_steps=10_000,
                                     decay_start=50_000, decay_rate=0.99995,
                                     min_learning_rate=3e-4, ema_decay=0.999))
