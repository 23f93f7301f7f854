"""Train state and the pure train / eval steps the parallel wrappers compile."""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

# Why a step was skipped: the first of these that was not finite.
NONFINITE_METRICS = {1: "loss", 2: "gradient", 3: "updated parameters or optimizer state"}


@flax.struct.dataclass
class TrainState:
    """Everything a resumed run needs, as one pytree (Orbax saves it whole)."""

    step: jax.Array  # int32 scalar: steps taken, also the data position
    params: Any
    ema_params: Any  # Polyak average, used for evaluation and sampling
    opt_state: Any
    rng: jax.Array  # uint32 key data of the run key
    nonfinite_streak: jax.Array  # int32: consecutive skipped steps
    nonfinite_total: jax.Array  # int32: skipped steps in the whole run
    nonfinite_metric: jax.Array  # int32: NONFINITE_METRICS code of the last skip
    nonfinite_limit_step: jax.Array  # int32: first step ending a streak of the limit; 0: none
    model_state: Any = flax.struct.field(default_factory=dict)  # Model.init_model_state()


def create_state(params, tx, rng_key, model_state=None) -> TrainState:
    def zero():  # a new buffer each time: the train step donates every leaf
        return jnp.zeros((), jnp.int32)

    ema = jax.tree.map(jnp.copy, params)
    return TrainState(step=zero(), params=params, ema_params=ema, opt_state=tx.init(params),
                      rng=jax.random.key_data(rng_key), nonfinite_streak=zero(),
                      nonfinite_total=zero(), nonfinite_metric=zero(),
                      nonfinite_limit_step=zero(),
                      model_state={} if model_state is None else model_state)


def step_key(state: TrainState):
    return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def train_step(state: TrainState, batch, *, model, tx, ema_decay, max_nonfinite_in_a_row,
               axis_name=None):
    """One optimizer step.  A step whose loss, gradients, new parameters or new optimizer
    state are not all finite leaves the state as it was: only the step counter and the skip
    counters move, and ``nonfinite_limit_step`` records the step at which
    ``max_nonfinite_in_a_row`` skips in a row were first reached.  The decision is made
    here, on the device; the host reads the counters when it logs."""
    key = step_key(state)
    model_loss = (functools.partial(model.loss, axis_name=axis_name)
                  if model.loss_takes_axis_name else model.loss)
    if model.init_model_state is None:
        (loss, metrics), grads = jax.value_and_grad(model_loss, has_aux=True)(
            state.params, batch, key)
        model_state = state.model_state
    else:
        def objective(params):
            loss, metrics, new_state = model_loss(params, batch, key, state.model_state)
            return loss, (metrics, jax.lax.stop_gradient(new_state))

        (loss, (metrics, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params)
    if axis_name is not None:  # pmap: average over devices
        loss, metrics, grads, model_state = jax.lax.pmean(
            (loss, metrics, grads, model_state), axis_name)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    loss_ok, grad_ok = jnp.isfinite(loss), jnp.isfinite(grad_norm)
    update_ok = _all_finite((params, opt_state))
    ok = loss_ok & grad_ok & update_ok

    def accept(old):
        ema = optax.incremental_update(params, old.ema_params, 1.0 - ema_decay)
        return old.replace(params=params, ema_params=ema, opt_state=opt_state,
                           model_state=model_state)

    # A branch that computes the EMA, rather than a select per leaf: the same result, and
    # XLA:CPU compiles it faster for Flow++'s ~100 parameter arrays (docs/decisions.md).
    state = jax.lax.cond(ok, accept, lambda old: old, state)
    streak = jnp.where(ok, 0, state.nonfinite_streak + 1)
    step = state.step + 1
    first_limit = (streak >= max_nonfinite_in_a_row) & (state.nonfinite_limit_step == 0)
    state = state.replace(
        step=step,
        nonfinite_streak=streak,
        nonfinite_total=state.nonfinite_total + (~ok).astype(jnp.int32),
        nonfinite_metric=jnp.where(ok, state.nonfinite_metric,
                                   jnp.where(~loss_ok, 1, jnp.where(~grad_ok, 2, 3))),
        nonfinite_limit_step=jnp.where(first_limit, step, state.nonfinite_limit_step),
    )
    return state, dict(metrics, loss=loss, grad_norm=grad_norm,
                       param_norm=optax.tree.norm(state.params))


def eval_step(params, batch, key, *, model, axis_name=None):
    """Masked sums of the model's per-example metrics, plus the example count."""
    per_example = model.evaluate(params, batch, key)
    mask = batch["mask"].astype(jnp.float32)
    sums = {k: jnp.sum(jnp.where(batch["mask"], v, 0.0)) for k, v in per_example.items()}
    sums["count"] = jnp.sum(mask)
    if axis_name is not None:
        sums = jax.lax.psum(sums, axis_name)
    return sums
