"""A persistent XLA compilation cache for launches.

Relaunching an experiment (resuming after a preemption, ``--mode=eval`` or ``sample`` after
training, the same config on another seed) compiles the same programs again: about a minute
for the official Flow++ train step on CPU.  With the cache on, the relaunch loads them from
disk instead.  Entries are keyed by the program, the XLA flags, the devices and the jaxlib
version, so a hit is the executable a compile would have built.  ``experiments/main.py``
turns it on by default (``--compilation_cache_dir``); notebooks can call :func:`enable`.
"""

from __future__ import annotations

import os

from absl import logging

DEFAULT_DIR = "~/.cache/flowzoo/jax"
MAX_BYTES = 4 << 30  # least recently used entries are evicted past this


def enable(path: str | None = None, max_bytes: int = MAX_BYTES) -> str | None:
    """Points JAX's persistent compilation cache at ``path`` (``~`` expanded, created if
    missing) holding at most ``max_bytes``.  ``path=None`` means ``$JAX_COMPILATION_CACHE_DIR``
    if set (set but empty: off), else :data:`DEFAULT_DIR`; ``path=""`` turns the cache off.
    Returns the directory in use, or None.  Call it before the first compile: JAX sets the
    cache up once per process.  A directory that cannot be created is a warning, not an
    error: the run goes on without the cache."""
    import jax

    if path is None:
        path = os.environ.get("JAX_COMPILATION_CACHE_DIR", DEFAULT_DIR)
    if not path:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    remote = "://" in path  # e.g. gs://bucket/cache on a TPU pod: JAX writes it through epath
    directory = path if remote else os.path.abspath(os.path.expanduser(path))
    if not remote:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            logging.warning("Compilation cache off: cannot create %s (%s). Pass "
                            "--compilation_cache_dir=<a writable folder>, or '' to turn it "
                            "off.", directory, e)
            jax.config.update("jax_enable_compilation_cache", False)
            return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_compilation_cache_max_size", int(max_bytes))
    return directory
