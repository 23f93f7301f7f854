"""SIGTERM and preemption notices, at any moment of a run.

One process: a SIGTERM handler sets a flag.  The trainer asks :meth:`StopSignal.at_step`
after every step (then saves and exits 143) and :meth:`StopSignal.check` at the other safe
points (after start-up, between evaluation batches), which raises :class:`Preempted`.

Several processes must stop at the same step, or the collective save would hang.  JAX's
preemption service (started by ``jax.distributed.initialize``) owns SIGTERM there: it catches
the notice on any process and agrees on a step for all of them
(``multihost_utils.reached_preemption_sync_point``), so no Python handler is installed and a
notice during start-up, compilation or evaluation takes effect at the next training step.
"""

from __future__ import annotations

import signal

import jax
from jax.experimental import multihost_utils

EXIT_CODE = 143  # 128 + SIGTERM: what schedulers expect from a preempted job


class Preempted(Exception):
    """Raised at a safe point after SIGTERM; the trainer saves what is worth saving."""


class StopSignal:
    """Context manager; installs the SIGTERM handler for a single-process run."""

    def __init__(self, received: bool = False):
        """``received``: a SIGTERM already caught by an earlier handler (the launcher's,
        during its imports)."""
        self.received = received
        self._previous = None

    def __enter__(self):
        if jax.process_count() == 1:
            try:
                self._previous = signal.signal(signal.SIGTERM, self._handle)
            except ValueError:  # not the main thread (a notebook worker): no handler
                self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, *_):
        self.received = True

    def check(self):
        """Raises Preempted if SIGTERM arrived (a safe point outside the step loop)."""
        if self.received:
            raise Preempted()

    def at_step(self, step: int) -> bool:
        """True when the run should save ``step`` and stop; every process gets the same
        answer for the same step.  Call after every training step."""
        if jax.process_count() == 1:
            return self.received
        return _reached_sync_point(step)


def _reached_sync_point(step: int) -> bool:
    try:
        return multihost_utils.reached_preemption_sync_point(step)
    except RuntimeError:  # the preemption service is off (jax_enable_preemption_service)
        return False
