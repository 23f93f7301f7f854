"""Orbax checkpoints: async saves every N steps, keep the last K, restore the
newest readable one, and never leave with a save unfinished."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from absl import logging


class Checkpointer:
    """Wraps ``ocp.CheckpointManager`` for one TrainState pytree."""

    def __init__(self, workdir, *, save_every: int, keep: int):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.save_every = save_every
        # The interval is decided here (Orbax would also save the first step).
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep,
                                                 enable_async_checkpointing=True))

    def save(self, step: int, state, *, force: bool = False) -> bool:
        """Starts an async save if ``step`` is due (or ``force``); returns whether it did.
        A step that is already saved is not saved again."""
        if self.manager.latest_step() == step or not (force or step % self.save_every == 0):
            return False
        saved = self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self.manager.check_for_errors()  # surface an earlier async failure now
        return saved

    def reached_preemption(self, step: int) -> bool:
        return self.manager.reached_preemption(step)

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore_latest(self, template):
        """The newest checkpoint that reads back, as a pytree laid out like
        ``template``; ``(None, None)`` when there is none.  An unreadable
        (truncated, corrupted) newest checkpoint is reported and skipped."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        failures = []
        for step in reversed(self.steps()):
            try:
                state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as err:  # noqa: BLE001 - any read failure means: try an older one
                logging.error("Checkpoint at step %d in %s could not be read (%s: %s); "
                              "trying the previous one.", step, self.directory,
                              type(err).__name__, err)
                failures.append((step, err))
                continue
            if failures:
                logging.warning("Resumed from step %d; unreadable newer checkpoints: %s",
                                step, [s for s, _ in failures])
            return state, step
        if failures:
            raise RuntimeError(
                f"No checkpoint in {self.directory} could be read (steps "
                f"{[s for s, _ in failures]}); last error: {failures[-1][1]!r}.  Move the folder "
                f"aside to start afresh; it was left untouched.")
        return None, None

    def wait(self):
        """Blocks until async saves are done and re-raises their errors."""
        self.manager.wait_until_finished()
        self.manager.check_for_errors()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()
