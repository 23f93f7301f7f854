"""One trainer for every model: a model supplies pure functions, the trainer the rest."""

from flowzoo.model import Model, example_keys
from flowzoo.training.trainer import describe, evaluate, sample, train_and_evaluate

__all__ = ["Model", "describe", "evaluate", "example_keys", "sample", "train_and_evaluate"]
