"""Hands freed host memory back to the operating system between the phases of a run.

XLA's compiler (LLVM) and a data-dependent init allocate and free gigabytes of host memory
in small blocks.  glibc's allocator keeps freed blocks in its heap, still resident, so the
next phase (the first train step's temporaries) is allocated beside them and the process's
peak resident memory is the sum of the two.  :func:`release_free_memory` calls glibc's
``malloc_trim(0)``, which returns every free page of the heap to the OS.  The trainer calls
it after the init, between compiling the train step and running it, and after each periodic
evaluation; the peak resident memory it saves is measured by
``experiments/benchmarks/flowpp.py`` (docs/decisions.md#train-host-memory).  Off Linux, or where the C library has no ``malloc_trim``
(musl), it does nothing; nor does it help where another allocator (jemalloc, tcmalloc through
``LD_PRELOAD``) serves ``malloc``.  It is thread-safe (glibc locks each heap in turn), so XLA's
threads and asynchronous checkpoint writes may run meanwhile.
"""

from __future__ import annotations

import ctypes
import functools
import sys


@functools.cache
def _malloc_trim():
    """glibc's ``int malloc_trim(size_t pad)``, or None where the process has none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        symbols = ctypes.CDLL(None)  # the symbols already loaded into the process, libc's too
    except OSError:
        return None
    trim = getattr(symbols, "malloc_trim", None)
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Asks glibc to return its free heap pages to the OS; False where there is no
    ``malloc_trim`` to ask.  Costs milliseconds: call it between phases, not per step."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
