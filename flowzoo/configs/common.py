"""Config assembly for the shipped experiment configs (experiments/configs/*.py).

The launcher's layer: it starts from the trainer's template (``flowzoo.training.config``)
and fills in a model family's settings (``flowzoo.configs.flowpp``, ``.vlae``).  Neither the
models nor the trainer import it.  The experiment files load by path (ml_collections,
benchmarks), so their shared helpers live in this installed package rather than beside them.
"""

from __future__ import annotations

from flowzoo.errors import ConfigError
from flowzoo.training.config import base_config


def assemble(dataset: str, arg: str, *, name: str, defaults, presets, overrides=None):
    """A locked experiment config: :func:`base_config` with ``data.name = dataset``, then each
    function in ``defaults`` (a model family's settings), then ``overrides``
    (``{"model": {...}, "train": {...}}``), then the preset named by the config argument
    (``file.py:smoke``); ``presets`` maps argument names to functions editing the config."""
    c = base_config()
    c.data.name = dataset
    for fill in defaults:
        fill(c)
    for section, values in (overrides or {}).items():
        for key, value in (values or {}).items():
            c[section][key] = value
    if arg in presets:
        presets[arg](c)
    elif arg:
        choices = ", ".join(repr(k) for k in presets)
        raise ConfigError(f"{name} takes no argument or one of {choices}; got {arg!r}.")
    c.lock()
    return c
