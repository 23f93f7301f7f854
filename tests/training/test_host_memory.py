"""Freed host memory goes back to the OS, and ``Parallel.train`` compiles the train step
once, in every parallel mode, trimming the heap between that compile and the first run."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from flowzoo import experiment
from flowzoo.training import host_memory
from flowzoo.training import run as run_lib
from tests.training.helpers import smoke_config

HAS_MALLOC_TRIM = host_memory._malloc_trim() is not None
MIB = 2**20


def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not HAS_MALLOC_TRIM, reason="the C library has no malloc_trim (not glibc)")
def test_release_returns_freed_heap_blocks_to_the_os():
    start = _resident_bytes()
    # 250 MiB in 64 KiB blocks (under glibc's mmap threshold, so on the heap), written to;
    # every 50th stays alive, spread through the heap, so free() cannot shrink it from the top.
    blocks = [np.full(16 * 1024, i, np.float32) for i in range(4000)]
    survivors = blocks[::50]
    del blocks
    before = _resident_bytes()
    if before - start < 128 * MIB:
        pytest.skip("the allocator gave the freed blocks back by itself (MALLOC_* settings or "
                    "an LD_PRELOADed malloc): nothing left for malloc_trim to show")
    assert host_memory.release_free_memory()
    released = before - _resident_bytes()
    assert released > 128 * MIB, f"only {released / MIB:.0f} MiB went back to the OS"
    assert all(float(b[0]) == 50 * i for i, b in enumerate(survivors))  # live blocks intact


def test_release_is_a_no_op_without_malloc_trim(monkeypatch):
    monkeypatch.setattr(host_memory, "_malloc_trim", lambda: None)
    assert host_memory.release_free_memory() is False


@pytest.mark.parametrize("mode", ["jit", "sharded", "pmap"])
def test_train_step_compiles_once_and_the_heap_is_trimmed_before_it_runs(mode, tmp_path,
                                                                          monkeypatch):
    run = run_lib.setup(smoke_config(parallel=mode), str(tmp_path), experiment.build_model)
    state = run.parallel.put_state(run_lib.fresh_state(run))
    events = []
    monkeypatch.setattr(host_memory, "release_free_memory", lambda: events.append(("release",)))
    real_train = run.parallel._train

    def recording_train(*args):
        events.append(("run",))
        return real_train(*args)

    recording_train.lower = real_train.lower
    monkeypatch.setattr(run.parallel, "_train", recording_train)

    def on_duration(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(("compile", kwargs.get("fun_name")))

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    try:
        for step in range(2):
            state, metrics = run.parallel.train(state, run.parallel.put_batch(
                run.batches.batch(step)))
        jax.block_until_ready(metrics)
    finally:
        jax.monitoring.unregister_event_duration_listener(on_duration)
    assert events.count(("release",)) == 1 and events.count(("run",)) == 2, events
    trim = events.index(("release",))
    assert events[trim + 1] == ("run",), events  # nothing between the trim and the first run
    train_compile = events[trim - 1]  # compile() is the last thing before the trim
    assert train_compile[0] == "compile", events
    assert train_compile not in events[trim:], f"the train step compiled again: {events}"
