"""Flow++ ablation: uniform dequantization (104 filters, 32,324,408 parameters)."""

from flowzoo.models.flowpp import presets


def get_config(arg: str | None = None):
    return presets.config("cifar10", arg, name="flowpp_cifar10_uniform_dequant.py",
                          model=dict(dequantization="uniform", filters=104))
