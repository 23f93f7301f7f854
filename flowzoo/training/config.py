"""The trainer's config template and its validation.

Experiment configs start from :func:`base_config` and fill in ``model``
(``flowzoo.configs`` assembles the shipped ones).  Keys
are checked before anything runs: a mistyped key fails at once naming the
nearest valid key (locked ConfigDicts also do this for ``--config.x=`` flags).
"""

from __future__ import annotations

import difflib

import ml_collections
from ml_collections import config_dict

from flowzoo.errors import ConfigKeyError


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.parallel = "sharded"  # "jit" | "sharded" | "pmap"
    c.data = dict(
        name="digits", source="auto", data_dir=config_dict.placeholder(str),
        manual_dir=config_dict.placeholder(str), num_bits=config_dict.placeholder(int),
        binarization="none", train_split="train", eval_split="test")
    c.train = dict(
        batch_size=64, num_steps=1000, init_batch_size=128, log_every=50, eval_every=500,
        checkpoint_every=250, keep_checkpoints=3, max_nonfinite_in_a_row=10,
        profile_steps="")  # "a,b": a jax.profiler trace of steps a..b in WORKDIR/profile
    c.optim = dict(name="adam", learning_rate=1e-3, warmup_steps=100, decay_start=0,
                   decay_rate=1.0, min_learning_rate=0.0, b1=0.9, b2=0.999, eps=1e-8,
                   grad_clip=1.0, ema_decay=0.999)
    c.eval = dict(batch_size=256, max_examples=config_dict.placeholder(int), num_samples=64,
                  sample_temperature=1.0)
    c.model = ml_collections.ConfigDict()  # filled in by each experiment config
    return c


def _check_keys(config, template, prefix):
    for key in config.keys():
        path = f"{prefix}{key}"
        if key not in template:
            near = difflib.get_close_matches(key, list(template.keys()), n=1)
            hint = f" Did you mean '{prefix}{near[0]}'?" if near else ""
            raise ConfigKeyError(f"Unknown config key '{path}'.{hint} Valid keys under "
                           f"'{prefix or 'config.'}': {sorted(template.keys())}")
        if isinstance(template[key], ml_collections.ConfigDict) and key != "model":
            _check_keys(config[key], template[key], path + ".")


def validate(config) -> None:
    """Raises KeyError naming the nearest valid key for any unknown key
    (``model`` is the model's own and is checked by the model builder)."""
    _check_keys(config, base_config(), "")
    for key in base_config().keys():
        if key not in config:
            raise ConfigKeyError(f"config is missing '{key}'; start experiment configs from "
                           f"flowzoo.training.config.base_config().")
