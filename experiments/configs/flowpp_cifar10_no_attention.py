"""Flow++ ablation: no self-attention (a gated pointwise network of about the same size in
its place; about 31.4M parameters)."""

from flowzoo.models.flowpp import presets


def get_config(arg: str | None = None):
    return presets.config("cifar10", arg, name="flowpp_cifar10_no_attention.py",
                          model=dict(attention=False))
