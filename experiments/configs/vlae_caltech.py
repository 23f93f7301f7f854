"""VLAE on Caltech-101 Silhouettes 28x28 (already binary); the static-MNIST hyperparameters,
masked layers untied.  Paper: test NLL 77.36 nats."""

from flowzoo.configs import vlae as presets


PRESETS = {
    "paper": "the paper's final protocol: train on train+valid (4,100 + 2,264), evaluate on test",
    "paper_eval": ":paper with the paper's NLL: 4,096 importance samples per image, the whole "
                  "test split, EMA weights (--mode=eval on a :paper workdir)",
    "cpu": ":paper's protocol, 2,000 steps of batch 64 on the full model (the results suite)",
    "smoke": "a tiny model of the same structure; under a minute cold on 2 CPU cores (tests)",
}


def get_config(arg: str | None = None):
    return presets.config("caltech101_silhouettes", arg, name="vlae_caltech.py")
