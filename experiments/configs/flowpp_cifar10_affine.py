"""Flow++ ablation: affine couplings everywhere (108 filters, 32,045,708 parameters)."""

from flowzoo.configs import flowpp as presets

PRESETS = presets.PRESETS  # smoke, cpu, paper_eval (flowzoo/configs/flowpp.py)


def get_config(arg: str | None = None):
    return presets.config("cifar10", arg, name="flowpp_cifar10_affine.py",
                          model=dict(coupling="affine", filters=108, dequant_filters=108))
