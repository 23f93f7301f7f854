"""Flow++ on ImageNet 32x32: the official model (flows_imagenet/launchers/imagenet32_official.py,
168,955,724 parameters).

Architecture, as the authors' launcher builds it: weight-normalised conditioner convolutions,
no 1x1 convolution in the steps, the main flow ``stripe:4, stripe:3, squeeze, channel:3,
stripe:3`` (7 steps before the squeeze; the official code merges the flipped halves after
its odd groups: ``swap_back_odd=False``), 128 filters, 20 blocks, 32 mixture components, a
concat_elu before each conditioner's last convolution; the dequantizer's context network has
8 blocks of gated conv, LayerNorm, attention and LayerNorm, and its noise flow 8 steps of
8-block couplings.  Training: dropout 0, batch 32, data-dependent init on 32 images, Adam at
1e-3 after a 5,000-step warm-up, then decaying by 0.99995 per step from step 50,000 down
to 3e-4, EMA 0.999222, clipping at 1.0 on the nats loss.
"""

from flowzoo.configs import flowpp as presets

PRESETS = presets.PRESETS  # smoke, cpu, paper_eval (flowzoo/configs/flowpp.py)


def get_config(arg: str | None = None):
    return presets.config("imagenet32", arg, name="flowpp_imagenet32.py",
                          data=dict(eval_split="validation"), model=presets.IMAGENET32_MODEL,
                          train=dict(batch_size=32, init_batch_size=32),
                          optim=dict(learning_rate=1e-3, warmup_steps=5000,
                                     decay_start=50_000, decay_rate=0.99995,
                                     min_learning_rate=3e-4, ema_decay=0.999222))
