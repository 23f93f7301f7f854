"""Checkpoint integrity: checksums, one-line reports, fallback that moves damage aside
and saves again, independent restore attempts, config mismatches, pre-checksum checkpoints."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from flowzoo.training import checkpoint, steps
from flowzoo.training.checkpoint import Checkpointer

TX = optax.adam(1e-3)


def _state(seed: int):
    rng = np.random.default_rng(seed)
    params = {"kernel": jnp.asarray(rng.normal(size=(32, 48)), jnp.float32),
              "bias": jnp.asarray(rng.normal(size=(48,)), jnp.float32)}
    return steps.create_state(params, TX, jax.random.PRNGKey(seed))


def _abstract():
    return jax.eval_shape(lambda: _state(0))


def _saved_run(workdir, steps_=(10, 20, 30)):
    """Checkpoints at ``steps_``, each of a different state; returns {step: state}."""
    states = {}
    ckpt = Checkpointer(workdir, save_every=10, keep=5)
    for step in steps_:
        states[step] = _state(step).replace(step=jnp.int32(step))
        assert ckpt.save(step, states[step])
    ckpt.close()
    return states


def _assert_same(a, b):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


def test_intact_checkpoints_restore_exactly_and_carry_checksums(tmp_path):
    states = _saved_run(tmp_path)
    state, step = Checkpointer(tmp_path, save_every=10, keep=5).restore_latest(_abstract())
    assert step == 30
    _assert_same(state, states[30])
    stored = json.loads((tmp_path / "checkpoints" / "30" / "integrity" / "metadata").read_text())
    assert stored["arrays"][".params['kernel']"]["dtype"] == "float32"
    assert len(stored["arrays"][".params['kernel']"]["sha256"]) == 64


def test_content_that_differs_from_its_checksums_is_moved_aside_and_saved_again(tmp_path, capsys):
    """Step 30's arrays replaced by valid but different ones (step 20's): Orbax reads them
    happily; the checksums written with step 30 do not match."""
    states = _saved_run(tmp_path)
    target = tmp_path / "checkpoints" / "30" / "state"
    shutil.rmtree(target)
    shutil.copytree(tmp_path / "checkpoints" / "20" / "state", target)
    ckpt = Checkpointer(tmp_path, save_every=10, keep=5)
    state, step = ckpt.restore_latest(_abstract())
    assert step == 20
    _assert_same(state, states[20])
    lines = [l for l in capsys.readouterr().out.splitlines() if "damaged" in l]
    assert len(lines) == 1 and "checksum mismatch in .ema_params['bias']" in lines[0], lines
    moved = list((tmp_path / checkpoint.MOVED_ASIDE).glob("30-*"))
    assert len(moved) == 1 and (moved[0] / "state").is_dir()  # kept, not deleted
    assert "checksum mismatch" in (moved[0] / checkpoint.REASON_FILE).read_text()
    # The retrained step 30 is saved again (the damaged folder no longer hides it).
    retrained = _state(31)
    assert ckpt.save(30, retrained)
    ckpt.close()
    again, step = Checkpointer(tmp_path, save_every=10, keep=5).restore_latest(_abstract())
    assert step == 30
    _assert_same(again, retrained)


def test_random_bytes_in_the_data_file_never_restore_silently_wrong(tmp_path, capsys):
    """16 random bytes at random places of the newest step's largest data file: each time,
    either the values read are exactly those saved (the bytes were not array data) or the
    step is reported and an older one used.  Orbax alone restores some of these changes
    without a word (TensorStore does not checksum its chunks); the checksums catch them."""
    pristine = tmp_path / "pristine"
    states = _saved_run(pristine, steps_=(10, 20))
    rng = np.random.default_rng(16)
    for trial in range(12):
        workdir = tmp_path / f"trial{trial}"
        shutil.copytree(pristine, workdir)
        files = [p for p in (workdir / "checkpoints" / "20" / "state").rglob("*") if p.is_file()]
        path = max(files, key=lambda p: p.stat().st_size)
        data = bytearray(path.read_bytes())
        at = int(rng.integers(0, len(data) - 16))
        data[at:at + 16] = rng.bytes(16)
        path.write_bytes(bytes(data))
        state, step = Checkpointer(workdir, save_every=10, keep=5).restore_latest(
            _abstract(), move_damaged_aside=False)
        _assert_same(state, states[step])
    reports = [l for l in capsys.readouterr().out.splitlines() if "damaged" in l]
    assert any("checksum mismatch" in line for line in reports), reports


def test_missing_item_folder_falls_back_and_older_steps_still_restore(tmp_path, capsys):
    """Each attempt is independent: a step without its state folder does not spoil the
    restore of the intact older ones."""
    states = _saved_run(tmp_path)
    shutil.rmtree(tmp_path / "checkpoints" / "30" / "state")
    shutil.rmtree(tmp_path / "checkpoints" / "20" / "integrity")
    state, step = Checkpointer(tmp_path, save_every=10, keep=5).restore_latest(_abstract())
    assert step == 10
    _assert_same(state, states[10])
    out = capsys.readouterr().out
    assert out.count("damaged") == 2 and all(len(l) < 400 for l in out.splitlines())
    assert "tensorstore" not in out.lower()  # no TensorStore spec dump


def test_truncated_data_is_reported_in_one_line(tmp_path, capsys):
    _saved_run(tmp_path)
    for path in (tmp_path / "checkpoints" / "30" / "state").rglob("*"):
        if path.is_file() and path.stat().st_size > 100:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    _, step = Checkpointer(tmp_path, save_every=10, keep=5).restore_latest(_abstract())
    assert step == 20
    (line,) = [l for l in capsys.readouterr().out.splitlines() if "damaged" in l]
    assert len(line) < 400, line


def test_reading_for_evaluation_moves_nothing(tmp_path):
    _saved_run(tmp_path)
    shutil.rmtree(tmp_path / "checkpoints" / "30" / "state")
    ckpt = Checkpointer(tmp_path, save_every=10, keep=5)
    _, step = ckpt.restore_latest(_abstract(), move_damaged_aside=False)
    assert step == 20
    assert (tmp_path / "checkpoints" / "30").is_dir()
    assert not (tmp_path / checkpoint.MOVED_ASIDE).exists()


def test_no_intact_step_is_an_error_that_moves_nothing(tmp_path):
    _saved_run(tmp_path, steps_=(10, 20))
    for step in (10, 20):
        shutil.rmtree(tmp_path / "checkpoints" / str(step) / "state")
    with pytest.raises(checkpoint.DamagedCheckpoint, match=r"No checkpoint .* is intact"):
        Checkpointer(tmp_path, save_every=10, keep=5).restore_latest(_abstract())
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "20"]


def test_a_state_of_another_config_is_named_not_called_damage(tmp_path):
    _saved_run(tmp_path, steps_=(10,))
    other = jax.eval_shape(lambda: steps.create_state(
        {"kernel": jnp.zeros((32, 48)), "bias": jnp.zeros((47,))}, TX, jax.random.PRNGKey(0)))
    with pytest.raises(checkpoint.IncompatibleCheckpoint, match=r"does not fit this config"):
        Checkpointer(tmp_path, save_every=10, keep=5).restore_latest(other)
    assert (tmp_path / "checkpoints" / "10" / "state").is_dir()


def test_checkpoints_from_before_checksums_still_restore(tmp_path):
    """A pre-checksum step: one unnamed item, and a TrainState without the newest field."""
    state = _state(3)
    old_fields = {k: v for k, v in vars(state).items() if k != "nonfinite_limit_step"}
    manager = ocp.CheckpointManager(tmp_path / "checkpoints")
    manager.save(7, args=ocp.args.StandardSave(old_fields))
    manager.wait_until_finished()
    manager.close()
    restored, step = Checkpointer(tmp_path, save_every=10, keep=5).restore_latest(_abstract())
    assert step == 7 and int(restored.nonfinite_limit_step) == 0
    _assert_same(restored.params, state.params)
    _assert_same(restored.opt_state, state.opt_state)


def test_checksums_cover_dtype_and_shape_and_survive_a_cast():
    value = np.arange(6, dtype=np.float32)
    sums = checkpoint.checksums({"x": value})
    assert sums != checkpoint.checksums({"x": value.reshape(2, 3)})
    assert sums != checkpoint.checksums({"x": value.astype(np.float64)})
    checkpoint.verify({"x": value.astype(np.float64)}, sums)  # restored under x64: cast back
    with pytest.raises(checkpoint.DamagedCheckpoint, match=r"\['x'\]"):
        checkpoint.verify({"x": value + 1}, sums)
