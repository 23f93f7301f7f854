"""The default experiment: a small flow on scikit-learn's 8x8 digits (17 levels).

The data ships inside scikit-learn, so this runs on a fresh machine with no
download.  ``digits_flow.py:smoke`` is a seconds-long run for tests.
"""

from flowzoo.training.config import base_config

PRESETS = {"smoke": "20 steps of a tiny flow: about 15 s on 2 CPU cores, compile included"}


def get_config(arg: str | None = None):
    c = base_config()
    c.data.name = "digits"
    c.model.name = "small_flow"
    c.model.steps_per_scale = 4
    c.model.hidden = 64
    c.model.num_components = 8
    c.train.batch_size = 64
    c.train.num_steps = 2000
    c.train.log_every = 100
    c.train.eval_every = 1000
    c.train.checkpoint_every = 500
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 100
    c.optim.ema_decay = 0.995
    if arg == "smoke":
        c.model.steps_per_scale = 1
        c.model.hidden = 8
        c.model.num_components = 2
        c.train.batch_size = 16
        c.train.num_steps = 20
        c.train.init_batch_size = 32
        c.train.log_every = 5
        c.train.eval_every = 10
        c.train.checkpoint_every = 10
        c.eval.max_examples = 64
        c.eval.num_samples = 16
    elif arg:
        raise ValueError(f"digits_flow.py takes no argument or 'smoke', got {arg!r}.")
    c.lock()
    return c
