"""What the benchmarks print beside their figures: the machine they were measured on."""

from __future__ import annotations

import os
import platform
import resource


def machine() -> dict:
    """CPU model, core count and the load average (1, 5, 15 minutes) now: a figure measured
    on a shared machine is read with the load it ran under."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "load_avg": load_average()}


def load_average():
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def minor_page_faults() -> int:
    """Minor page faults of this process so far: pages the OS mapped on first touch.  On
    XLA:CPU a jitted step allocates its temporaries afresh each call (glibc serves a buffer
    that large with a new ``mmap``), so every step faults them in again; the difference across
    timed steps shows that cost (docs/decisions.md#fpp-zen4-tried)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
