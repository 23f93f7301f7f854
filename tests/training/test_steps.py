"""The pure train step: optimizer, EMA, non-finite guard; and the optimizer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from flowzoo.training import Model, optim, steps
from flowzoo.training import config as config_lib


def _quadratic_model(poison_index=-1):
    """loss = mean (w - x)^2 over the batch; NaN if ``poison_index`` is in it."""
    def loss(params, batch, key):
        x = batch["image"].astype(jnp.float32).mean(axis=(1, 2, 3))
        per = (params["w"] - x) ** 2
        per = jnp.where(batch["index"] == poison_index, jnp.nan, per)
        return jnp.mean(per), {}
    return Model(init=None, loss=loss, evaluate=None, sample=None)


def _batch(index):
    rng = np.random.default_rng(int(index[0]) + 7)
    return {"image": rng.integers(0, 17, (len(index), 2, 2, 1)).astype(np.uint8),
            "index": np.asarray(index, np.int32)}


def _train_step(state, batch, **kwargs):
    return steps.train_step(state, batch, **{"max_nonfinite_in_a_row": 3, **kwargs})


def _state(tx):
    return steps.create_state({"w": jnp.float32(3.0)}, tx, jax.random.PRNGKey(0))


def test_step_updates_params_ema_and_counter():
    tx = optax.sgd(0.1)
    state = _state(tx)
    new, metrics = _train_step(state, _batch([0, 1]), model=_quadratic_model(), tx=tx,
                                    ema_decay=0.9)
    assert int(new.step) == 1
    assert float(new.params["w"]) != 3.0
    np.testing.assert_allclose(new.ema_params["w"], 0.9 * 3.0 + 0.1 * new.params["w"], rtol=1e-6)
    assert np.isfinite(float(metrics["grad_norm"])) and float(metrics["grad_norm"]) > 0


def test_non_finite_loss_never_reaches_params_or_optimizer_state():
    tx = optax.adam(0.1)
    model = _quadratic_model(poison_index=5)
    state = _state(tx)
    state, _ = _train_step(state, _batch([0, 1]), model=model, tx=tx, ema_decay=0.9)
    before = state
    state, metrics = _train_step(state, _batch([4, 5]), model=model, tx=tx, ema_decay=0.9)
    assert not np.isfinite(float(metrics["loss"]))
    assert int(state.step) == 2  # the data position still advances
    jax.tree.map(np.testing.assert_array_equal, (state.params, state.ema_params, state.opt_state),
                 (before.params, before.ema_params, before.opt_state))
    assert int(state.nonfinite_streak) == 1 and int(state.nonfinite_total) == 1
    assert steps.NONFINITE_METRICS[int(state.nonfinite_metric)] == "loss"
    state, _ = _train_step(state, _batch([0, 1]), model=model, tx=tx, ema_decay=0.9)
    assert int(state.nonfinite_streak) == 0 and int(state.nonfinite_total) == 1


def test_non_finite_gradient_is_named():
    def loss(params, batch, key):  # finite value, infinite gradient at w = 0
        return jnp.sqrt(jnp.abs(params["w"])) * 0.0, {}
    tx = optax.sgd(0.1)
    state = steps.create_state({"w": jnp.float32(0.0)}, tx, jax.random.PRNGKey(0))
    state, _ = _train_step(state, _batch([0]), model=Model(None, loss, None, None), tx=tx,
                                ema_decay=0.9)
    assert steps.NONFINITE_METRICS[int(state.nonfinite_metric)] == "gradient"


def test_non_finite_update_is_skipped_though_loss_and_gradient_are_finite():
    """An infinite learning rate makes finite gradients into NaN parameters and Adam
    moments: the step is skipped and named, and the limit step is recorded once."""
    tx = optax.adam(jnp.inf)
    state = _state(tx)
    before = state
    for expected_step in (1, 2, 3, 4):
        state, metrics = _train_step(state, _batch([0, 1]), model=_quadratic_model(), tx=tx,
                                     ema_decay=0.9)
        assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["grad_norm"]))
        assert int(state.step) == expected_step
    jax.tree.map(np.testing.assert_array_equal, (state.params, state.ema_params, state.opt_state),
                 (before.params, before.ema_params, before.opt_state))
    assert steps.NONFINITE_METRICS[int(state.nonfinite_metric)].startswith("updated parameters")
    assert int(state.nonfinite_streak) == 4 and int(state.nonfinite_total) == 4
    assert int(state.nonfinite_limit_step) == 3  # the limit (3 in a row) was reached at step 3


def test_limit_step_stays_recorded_after_the_streak_ends():
    tx = optax.sgd(0.1)
    model = _quadratic_model(poison_index=5)
    state = _state(tx)
    for index in ([5], [5], [5], [0], [5]):
        state, _ = _train_step(state, _batch(index), model=model, tx=tx, ema_decay=0.9)
    assert int(state.nonfinite_streak) == 1 and int(state.nonfinite_limit_step) == 3


def _optim_cfg(**kw):
    base = config_lib.base_config().optim
    base.update(kw)
    return base


def test_warmup_is_linear_then_constant_and_clipping_applies():
    tx = optim.make_optimizer(_optim_cfg(name="adam", learning_rate=1e-2, warmup_steps=10,
                                         grad_clip=1.0))
    params = {"w": jnp.zeros(3)}
    state = tx.init(params)
    sizes = []
    for _ in range(12):
        updates, state = tx.update({"w": jnp.full(3, 1e6)}, state, params)
        sizes.append(float(jnp.abs(updates["w"][0])))
    # Adam's normalised step is ~lr: 0 at step 0, rising linearly, then flat.
    np.testing.assert_allclose(sizes[0], 0.0, atol=1e-9)
    np.testing.assert_allclose(sizes[5], 5e-3, rtol=1e-3)
    np.testing.assert_allclose(sizes[10:], 1e-2, rtol=1e-3)


def test_adamax_and_bad_name():
    tx = optim.make_optimizer(_optim_cfg(name="adamax", warmup_steps=0))
    assert tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.zeros(2)}))[0]["w"].shape == (2,)
    with pytest.raises(ValueError, match="adam"):
        optim.make_optimizer(_optim_cfg(name="sgd"))


def test_unknown_config_key_names_the_nearest():
    c = config_lib.base_config()
    c.train.lerning_rate = 1.0
    with pytest.raises(KeyError, match="Did you mean 'train.log_every'|Valid keys"):
        config_lib.validate(c)
    c = config_lib.base_config()
    c.optim.learnig_rate = 1.0
    with pytest.raises(KeyError, match="Did you mean 'optim.learning_rate'"):
        config_lib.validate(c)
    locked = config_lib.base_config()
    locked.lock()
    with pytest.raises(AttributeError, match='Did you mean "batch_size"'):
        locked.train.bach_size = 3
    assert isinstance(locked, ml_collections.ConfigDict)


def _stateful_model():
    """The quadratic loss, plus a state that tracks an average of the batch means."""
    base = _quadratic_model(poison_index=5)

    def loss(params, batch, key, model_state):
        value, metrics = base.loss(params, batch, key)
        x = batch["image"].astype(jnp.float32).mean()
        new = {"avg": 0.5 * model_state["avg"] + 0.5 * x + 0.0 * params["w"],
               "seen": model_state["seen"] + 1.0}
        return value, metrics, new
    return base._replace(loss=loss, init_model_state=lambda: {"avg": jnp.float32(0.0),
                                                              "seen": jnp.float32(0.0)})


def test_model_state_moves_each_step_is_kept_on_skips_and_gets_no_gradient():
    tx = optax.sgd(0.1)
    model = _stateful_model()
    state = steps.create_state({"w": jnp.float32(3.0)}, tx, jax.random.PRNGKey(0),
                               model.init_model_state())
    batch = _batch([0, 1])
    state, metrics = _train_step(state, batch, model=model, tx=tx, ema_decay=0.9)
    mean = batch["image"].astype(np.float32).mean()
    np.testing.assert_allclose(state.model_state["avg"], 0.5 * mean, rtol=1e-6)
    assert float(state.model_state["seen"]) == 1.0
    # the gradient is the quadratic loss's alone: the state's params dependence is cut
    x = batch["image"].astype(np.float32).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(metrics["grad_norm"], abs(np.mean(2 * (3.0 - x))), rtol=1e-5)
    before = state.model_state
    state, _ = _train_step(state, _batch([4, 5]), model=model, tx=tx, ema_decay=0.9)
    jax.tree.map(np.testing.assert_array_equal, state.model_state, before)  # skipped step


def test_learning_rate_decays_geometrically_after_decay_start_down_to_the_floor():
    """The official ImageNet 32x32 schedule: warm-up to 1e-3 over 5,000 steps, constant,
    x0.99995 per step after step 50,000, never below 3e-4."""
    cfg = _optim_cfg(learning_rate=1e-3, warmup_steps=5000, decay_start=50_000,
                     decay_rate=0.99995, min_learning_rate=3e-4)
    rate = optim.learning_rate(cfg)
    assert float(rate(2500)) == pytest.approx(5e-4)
    assert float(rate(50_000)) == pytest.approx(1e-3)
    assert float(rate(50_001)) == pytest.approx(1e-3 * 0.99995, rel=1e-6)
    assert float(rate(60_000)) == pytest.approx(1e-3 * 0.99995 ** 10_000, rel=1e-5)
    assert float(rate(200_000)) == pytest.approx(3e-4)
    with pytest.raises(ValueError, match="decay_rate"):
        optim.learning_rate(_optim_cfg(decay_rate=1.5))
    with pytest.raises(ValueError, match="decay_start"):
        optim.learning_rate(_optim_cfg(warmup_steps=100, decay_start=10, decay_rate=0.9))
