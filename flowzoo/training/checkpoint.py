"""Orbax checkpoints that say when they are damaged.

Each step folder holds two Orbax items: ``state`` (the TrainState) and ``integrity`` (a
sha256 of every array's host value, computed on what is saved).  Restoring tries the newest
step first; a step that cannot be read, or whose arrays do not match their checksums, is
reported in one line and the next older one is tried, each attempt with its own reader.
When training falls back past damaged steps, they are moved aside into
``WORKDIR/checkpoints_moved_aside/`` (never deleted), so the retrained steps are saved again.
When no step is intact, nothing is moved and restoring fails with the list of problems.

Checkpoints written before checksums existed (one unnamed ``default`` item) still restore,
without verification; fields the TrainState gained since are filled with their initial values.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from flowzoo.errors import UserError
from flowzoo.training import workdir as workdir_lib

STATE, INTEGRITY, LEGACY_ITEM = "state", "integrity", "default"
MOVED_ASIDE = "checkpoints_moved_aside"
REASON_FILE = "why_moved_aside.txt"  # written into each moved step folder


class DamagedCheckpoint(UserError, RuntimeError):
    """A step that cannot be read or does not match its checksums."""


class IncompatibleCheckpoint(UserError, ValueError):
    """An intact step holding a different state than this config builds."""


def host_value(leaf) -> np.ndarray:
    """The host copy of one array: for a replicated array spread over processes, this
    process's copy."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        leaf = leaf.addressable_data(0)
    return np.asarray(jax.device_get(leaf))


def _digest(value: np.ndarray) -> str:
    value = np.ascontiguousarray(value)
    digest = hashlib.sha256(f"{value.dtype.str}{value.shape}".encode())
    digest.update(value.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def checksums(tree) -> dict[str, dict[str, str]]:
    """``{tree path: {"dtype", "sha256"}}``: a sha256 over each leaf's dtype, shape and
    bytes, as saved."""
    sums = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        value = host_value(leaf)
        sums[jax.tree_util.keystr(path)] = {"dtype": value.dtype.name, "sha256": _digest(value)}
    return sums


def verify(tree, stored: dict[str, dict[str, str]]) -> None:
    """Raises DamagedCheckpoint naming the arrays whose checksum differs.  A restore may
    cast (float32 saved, float64 asked for under ``jax_enable_x64``): each value is cast
    back to the saved dtype, which is exact, before it is hashed."""
    found = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = jax.tree_util.keystr(path)
        value = host_value(leaf)
        if name in stored:
            value = value.astype(stored[name]["dtype"], copy=False)
        found[name] = _digest(value)
    bad = sorted(k for k in found.keys() | stored.keys()
                 if k not in stored or found.get(k) != stored[k]["sha256"])
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise DamagedCheckpoint(f"checksum mismatch in {', '.join(bad[:3])}{more}")


def one_line(err: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message``, cut at ``limit`` characters (TensorStore errors
    carry a multi-kilobyte spec after the first line)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text if len(text) <= limit else text[:limit] + "…"
    return text if isinstance(err, DamagedCheckpoint) else f"{type(err).__name__}: {text}"


def _all_processes_agree(ok: bool) -> bool:
    if jax.process_count() == 1:
        return ok
    return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


class NoCheckpoint(UserError, FileNotFoundError):
    """Evaluation or sampling asked of a workdir without checkpoints."""


class Checkpointer:
    """Saves every ``save_every`` steps (async, the last ``keep`` kept) and restores the
    newest intact step."""

    def __init__(self, workdir, *, save_every: int, keep: int):
        root = workdir_lib.resolve(workdir)
        self.directory = root / "checkpoints"
        self.moved_aside_directory = root / MOVED_ASIDE
        self.save_every = save_every
        self._options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=True, cleanup_tmp_directories=True)
        self.manager = None  # created on the first save: reading creates nothing on disk

    def _manager(self) -> ocp.CheckpointManager:
        if self.manager is None:
            self.manager = ocp.CheckpointManager(self.directory, options=self._options)
        return self.manager

    # -- saving -----------------------------------------------------------------
    def due(self, step: int, *, force: bool = False) -> bool:
        """Whether :meth:`save` would save ``step``: it is due (or ``force``) and not saved
        yet.  Lets a caller skip preparing a state that would not be saved (a pmap state's
        conversion waits for the step and copies every leaf)."""
        return (force or step % self.save_every == 0) and step not in self._manager().all_steps()

    def save(self, step: int, state, *, force: bool = False) -> bool:
        """Starts an async save of ``state`` (a pytree of arrays every process can save) if
        ``step`` is due or ``force``; a step already saved is not saved again."""
        if not self.due(step, force=force):
            return False
        manager = self._manager()
        integrity = {"algorithm": "sha256", "arrays": checksums(state)}
        saved = manager.save(step, args=ocp.args.Composite(
            **{STATE: ocp.args.StandardSave(state), INTEGRITY: ocp.args.JsonSave(integrity)}),
            force=True)
        manager.check_for_errors()  # surface an earlier async failure now
        return saved

    def wait(self):
        """Blocks until async saves are committed and re-raises their errors."""
        if self.manager is not None:
            self.manager.wait_until_finished()
            self.manager.check_for_errors()

    def close(self):
        if self.manager is not None:
            self.manager.wait_until_finished()
            self.manager.close()
            self.manager = None

    # -- restoring --------------------------------------------------------------
    def steps(self) -> list[int]:
        """Committed steps, oldest first (read from storage, not cached)."""
        if not self.directory.exists():
            return []
        return sorted(ocp.utils.checkpoint_steps(self.directory))

    def restore_latest(self, abstract_state, *, move_damaged_aside: bool = True):
        """``(state, step)`` of the newest intact step, laid out like ``abstract_state``
        (ShapeDtypeStructs with shardings); ``(None, None)`` when there is no step.
        Damaged newer steps are moved aside when ``move_damaged_aside`` (training), and
        only reported otherwise (evaluation reads, it does not change the workdir)."""
        damaged = []
        for step in reversed(self.steps()):
            try:
                state = self._restore_step(step, abstract_state)
                problem = None
            except IncompatibleCheckpoint:
                raise  # not damage: falling back to an older step would not help
            except Exception as err:  # noqa: BLE001 - any failure: report it, try an older step
                state, problem = None, one_line(err)
            if _all_processes_agree(problem is None):
                for bad_step, reason in damaged:
                    where = (f"moved to {self._move_aside(bad_step, reason)}"
                             if move_damaged_aside else "left in place (read-only)")
                    _report(f"Checkpoint step {bad_step} is damaged ({reason}); {where}; "
                            f"using step {step}.")
                if damaged and move_damaged_aside:
                    self.close()  # the manager's step list is stale now
                return state, step
            damaged.append((step, problem or "another process could not restore it"))
        if damaged:
            listing = "; ".join(f"step {s}: {r}" for s, r in damaged)
            raise DamagedCheckpoint(
                f"No checkpoint in {self.directory} is intact ({listing}). Nothing was moved "
                f"or deleted; move that folder aside to start afresh.")
        return None, None

    def _restore_step(self, step: int, abstract_state):
        step_dir = self.directory / str(step)
        if (step_dir / LEGACY_ITEM).exists() and not (step_dir / STATE).exists():
            return _restore_legacy(step_dir / LEGACY_ITEM, abstract_state)
        _check_layout(step, _tree_metadata(step_dir / STATE), abstract_state)
        with ocp.StandardCheckpointer() as reader:
            state = reader.restore(step_dir / STATE, abstract_state)
        with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as reader:
            integrity = reader.restore(step_dir / INTEGRITY)
        verify(state, integrity["arrays"])
        return state

    def _move_aside(self, step: int, reason: str) -> epath.Path:
        """Moves a damaged step out of Orbax's sight, with a note of why; returns where."""
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = self.moved_aside_directory / f"{step}-{stamp}"
        if jax.process_index() == 0:
            workdir_lib.make_dirs(self.moved_aside_directory)
            note = self.moved_aside_directory / "README.txt"
            if not note.exists():  # on object stores this also makes the folder exist
                workdir_lib.write_atomic(note, "Checkpoint steps that failed to restore, "
                                         "moved here by flowzoo instead of being deleted.\n")
            (self.directory / str(step)).rename(target)
            workdir_lib.write_atomic(target / REASON_FILE, reason + "\n")
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"flowzoo_moved_aside_{step}")
        return target


def _report(message: str):
    """One line on the console (process 0) and in the log."""
    logging.warning(message)
    if jax.process_index() == 0:
        print(message, flush=True)


def _tree_metadata(item_dir: epath.Path):
    """The saved tree of ArrayMetadata (names, shapes, dtypes) of one item."""
    handler = ocp.StandardCheckpointHandler()
    try:
        return handler.metadata(item_dir).tree
    finally:
        handler.close()


def _check_layout(step: int, tree_metadata, abstract_state) -> None:
    """Raises IncompatibleCheckpoint unless the saved arrays have the names and shapes of
    ``abstract_state`` (a changed optimizer or model setting changes them)."""
    saved = {m.name: tuple(m.shape) for m in jax.tree.leaves(tree_metadata)}
    flat = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(abstract_state, keep_empty_nodes=True),
                                 sep=".")
    expected = {name: tuple(leaf.shape) for name, leaf in flat.items()}
    if saved == expected:
        return
    differ = sorted(k for k in saved.keys() | expected.keys() if saved.get(k) != expected.get(k))
    raise IncompatibleCheckpoint(
        f"Checkpoint step {step} does not fit this config: {len(differ)} arrays differ "
        f"({', '.join(differ[:3])}{', …' if len(differ) > 3 else ''}).  Resume with the config "
        f"the run was started with (its config.json), or start a new --workdir.")


def _restore_legacy(item_dir: epath.Path, abstract_state):
    """A pre-checksum checkpoint: restore the fields it has, the rest from the template."""
    saved_fields = set(_tree_metadata(item_dir).keys())
    fields = {f.name: getattr(abstract_state, f.name)
              for f in dataclasses.fields(abstract_state) if f.name in saved_fields}
    with ocp.StandardCheckpointer() as reader:
        restored = reader.restore(item_dir, fields)
    logging.warning("Checkpoint %s predates checksums: restored without verification.",
                    item_dir.parent)
    missing = {f.name: jax.tree.map(lambda s: jax.numpy.zeros(s.shape, s.dtype, device=s.sharding),
                                    getattr(abstract_state, f.name))
               for f in dataclasses.fields(abstract_state) if f.name not in saved_fields}
    return abstract_state.replace(**restored, **missing)
