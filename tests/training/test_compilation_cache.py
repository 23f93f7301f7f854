"""The launcher's persistent compilation cache: a relaunch loads what the first launch
compiled, '' turns it off, and a folder that cannot be made leaves the run going.

Each case runs in a fresh process: JAX sets its cache up once per process (and the test
session's own cache, from conftest.py, is already set up in this one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.training.helpers import ROOT

# Compiles one program (kept however fast it compiled) and reports what the cache did.
SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp
from flowzoo.training import compilation_cache

events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
used = compilation_cache.enable(None if sys.argv[1] == "<default>" else sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

@jax.jit
def f(x):
    for i in range(20):
        x = jnp.tanh(x @ x.T + i)
    return x.sum()

value = float(f(jnp.linspace(-1.0, 1.0, 64).reshape(8, 8)))
print(json.dumps({"dir": used, "value": value,
                  "hits": events.count("/jax/compilation_cache/cache_hits"),
                  "misses": events.count("/jax/compilation_cache/cache_misses")}))
"""


def _launch(path, env_dir=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    if env_dir is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(env_dir)
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def _entries(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith("-cache"))


def test_a_relaunch_loads_the_compiled_program_from_the_cache(tmp_path):
    cache = tmp_path / "nested" / "cache"  # made on first use
    first, _ = _launch(cache)
    assert first["dir"] == str(cache) and first["hits"] == 0 and first["misses"] >= 1
    assert any(name.startswith("jit_f-") for name in _entries(cache))
    second, _ = _launch(cache)
    assert second["hits"] >= 1 and second["misses"] == 0, second
    assert second["value"] == first["value"]


def test_default_is_jax_compilation_cache_dir_when_set(tmp_path):
    report, _ = _launch("<default>", env_dir=tmp_path / "from_env")
    assert report["dir"] == str(tmp_path / "from_env")
    assert _entries(tmp_path / "from_env")


def test_empty_path_or_empty_variable_turns_the_cache_off(tmp_path):
    report, _ = _launch("", env_dir=tmp_path / "from_env")
    assert report["dir"] is None and report["hits"] == 0
    assert not (tmp_path / "from_env").exists()
    report, _ = _launch("<default>", env_dir="")
    assert report["dir"] is None


def test_a_folder_that_cannot_be_made_warns_and_the_run_goes_on(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    report, stderr = _launch(blocker / "cache")
    assert report["dir"] is None and report["hits"] == 0
    assert "Compilation cache off" in stderr and "--compilation_cache_dir" in stderr
