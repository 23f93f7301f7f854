"""VLAE on OMNIGLOT 28x28 (Burda et al.'s chardata.mat, dynamically binarized as in IWAE);
the static-MNIST hyperparameters, masked layers untied.  Paper: test NLL 90.98 nats
(89.83 fine-tuned)."""

from flowzoo.configs import vlae as presets


PRESETS = {
    "paper": "the paper's final protocol: train on train (24,345; no validation split), evaluate on test",
    "paper_eval": ":paper with the paper's NLL: 4,096 importance samples per image, the whole "
                  "test split, EMA weights (--mode=eval on a :paper workdir)",
    "cpu": ":paper's protocol, 2,000 steps of batch 64 on the full model (the results suite)",
    "smoke": "a tiny model of the same structure; under a minute cold on 2 CPU cores (tests)",
}


def get_config(arg: str | None = None):
    return presets.config("omniglot", arg, name="vlae_omniglot.py",
                          data=dict(binarization="dynamic"))
