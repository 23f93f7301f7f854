"""Optimizer from config: Adam or Adamax, linear warm-up, global-norm clipping."""

from __future__ import annotations

import optax

_OPTIMIZERS = {"adam": optax.adam, "adamax": optax.adamax}


def make_optimizer(cfg) -> optax.GradientTransformation:
    """cfg: name, learning_rate, warmup_steps, b1, b2, eps, grad_clip (0 = off).

    The learning rate rises linearly from 0 over ``warmup_steps`` and then stays
    constant (Flow++: 3e-4 over 2,000 steps, clipping at 1.0).
    """
    if cfg.name not in _OPTIMIZERS:
        raise ValueError(f"config.optim.name must be one of {sorted(_OPTIMIZERS)}, got {cfg.name!r}.")
    schedule = optax.linear_schedule(0.0, cfg.learning_rate, max(int(cfg.warmup_steps), 1))
    if cfg.warmup_steps <= 0:
        schedule = cfg.learning_rate
    opt = _OPTIMIZERS[cfg.name](schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    if cfg.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
    return opt
