"""Flow++ ablation: no self-attention; in its place the official ``gated_nin`` (x + positional
embedding, 1x1 conv to 3F, max over each channel's three, dropout, 1x1 conv to 2F, gate),
which has the same parameter count: 31,443,440."""

from flowzoo.configs import flowpp as presets

PRESETS = presets.PRESETS  # smoke, cpu, paper_eval (flowzoo/configs/flowpp.py)


def get_config(arg: str | None = None):
    return presets.config("cifar10", arg, name="flowpp_cifar10_no_attention.py",
                          model=dict(mixer="gated_nin"))
