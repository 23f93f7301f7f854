"""Optimizer from config: Adam or Adamax, linear warm-up, global-norm clipping."""

from __future__ import annotations

import optax

from flowzoo.errors import ConfigError

_OPTIMIZERS = {"adam": optax.adam, "adamax": optax.adamax}


def learning_rate(cfg) -> optax.Schedule:
    """Step -> learning rate: a linear rise from 0 over ``warmup_steps``, then constant
    (Flow++: 3e-4 over 2,000 steps)."""
    if cfg.warmup_steps <= 0:
        return optax.constant_schedule(cfg.learning_rate)
    return optax.linear_schedule(0.0, cfg.learning_rate, int(cfg.warmup_steps))


def make_optimizer(cfg) -> optax.GradientTransformation:
    """cfg: name, learning_rate, warmup_steps, b1, b2, eps, grad_clip (0 = off)."""
    if cfg.name not in _OPTIMIZERS:
        raise ConfigError(f"config.optim.name must be one of {sorted(_OPTIMIZERS)}, got "
                          f"{cfg.name!r}.")
    # A constant rate is passed as a number: optax then keeps no step counter for it, as
    # checkpoints of such runs expect.
    rate = learning_rate(cfg) if cfg.warmup_steps > 0 else cfg.learning_rate
    opt = _OPTIMIZERS[cfg.name](rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    if cfg.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
    return opt
