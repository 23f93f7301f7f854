"""Optimizer from config: Adam or Adamax, linear warm-up, global-norm clipping."""

from __future__ import annotations

import optax

from flowzoo.errors import ConfigError

_OPTIMIZERS = {"adam": optax.adam, "adamax": optax.adamax}


def learning_rate(cfg) -> optax.Schedule:
    """Step -> learning rate: a linear rise from 0 over ``warmup_steps`` (Flow++ CIFAR-10: to
    3e-4 over 2,000 steps), constant, then, if ``decay_rate < 1``, multiplied by
    ``decay_rate`` every step after ``decay_start`` down to ``min_learning_rate`` (the
    official ImageNet and CelebA Flow++ schedules: e.g. 0.99995 per step from 50,000 to 3e-4).
    """
    if not 0 < cfg.decay_rate <= 1:
        raise ConfigError(f"config.optim.decay_rate={cfg.decay_rate} must be in (0, 1] "
                          f"(1: no decay).")
    if cfg.decay_rate < 1 and cfg.decay_start < cfg.warmup_steps:
        raise ConfigError(f"config.optim.decay_start={cfg.decay_start} must not come before "
                          f"the end of the warm-up (config.optim.warmup_steps="
                          f"{cfg.warmup_steps}).")
    warmup = int(max(cfg.warmup_steps, 0))
    after = optax.constant_schedule(cfg.learning_rate)
    if cfg.decay_rate < 1:
        after = optax.exponential_decay(cfg.learning_rate, transition_steps=1,
                                        decay_rate=cfg.decay_rate,
                                        transition_begin=int(cfg.decay_start) - warmup,
                                        end_value=cfg.min_learning_rate)
    if warmup == 0:
        return after
    return optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.learning_rate, warmup), after], [warmup])


def make_optimizer(cfg) -> optax.GradientTransformation:
    """cfg: name, learning_rate (:func:`learning_rate`'s keys), b1, b2, eps, grad_clip
    (0 = off)."""
    if cfg.name not in _OPTIMIZERS:
        raise ConfigError(f"config.optim.name must be one of {sorted(_OPTIMIZERS)}, got "
                          f"{cfg.name!r}.")
    # A constant rate is passed as a number: optax then keeps no step counter for it, as
    # checkpoints of such runs expect.
    constant = cfg.warmup_steps <= 0 and cfg.decay_rate == 1
    rate = cfg.learning_rate if constant else learning_rate(cfg)
    opt = _OPTIMIZERS[cfg.name](rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    if cfg.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
    return opt
