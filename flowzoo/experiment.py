"""An experiment: the model registry wired to the trainer.

The trainer (``flowzoo.training``) is handed a model builder and never imports the models;
this module, above both, names the models and fills that in.  From a notebook:

    from flowzoo import experiment
    summary = experiment.train_and_evaluate(config, "workdirs/run")   # resumes if it can
    metrics = experiment.evaluate(config, "workdirs/run")
    experiment.describe(config)["num_params"]
"""

from __future__ import annotations

import difflib
import functools

from flowzoo.errors import ConfigError
from flowzoo.models import flowpp, small_flow, vlae
from flowzoo.training import trainer

MODELS = {"small_flow": small_flow.build, "flowpp": flowpp.build, "vlae": vlae.build}


def build_model(model_config, image_shape, num_levels):
    """``config.model`` -> the registered model's ``Model`` of pure functions."""
    name = model_config.get("name")
    if name not in MODELS:
        near = difflib.get_close_matches(str(name), list(MODELS), n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"Unknown config.model.name {name!r}.{hint} Known models: "
                          f"{sorted(MODELS)}.")
    return MODELS[name](model_config, tuple(image_shape), int(num_levels))


def _with_registry(function):
    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        return function(*args, build_model=build_model, **kwargs)
    return wrapped


train_and_evaluate = _with_registry(trainer.train_and_evaluate)
evaluate = _with_registry(trainer.evaluate)
sample = _with_registry(trainer.sample)
describe = _with_registry(trainer.describe)
