"""Flow++ ablation: uniform dequantization (104 filters, 32,324,408 parameters)."""

from flowzoo.configs import flowpp as presets

PRESETS = presets.PRESETS  # smoke, cpu, paper_eval (flowzoo/configs/flowpp.py)


def get_config(arg: str | None = None):
    return presets.config("cifar10", arg, name="flowpp_cifar10_uniform_dequant.py",
                          model=dict(dequantization="uniform", filters=104))
