"""A one-process launch on a CPU asks for one device per core, as many as divide the batches;
the user's --jax_num_cpu_devices or JAX_NUM_CPU_DEVICES wins."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import pytest

from flowzoo.training import cpu_devices
from tests.training.helpers import MAIN, ROOT, SMOKE, smoke_config


@pytest.mark.parametrize("cores, train, evaluation, parallel, expected", [
    (2, 16, 256, "sharded", 2),
    (6, 16, 256, "sharded", 4),  # 6 and 5 do not divide 16
    (3, 64, 100, "pmap", 2),
    (8, 64, 12, "sharded", 4),  # the eval batch limits it
    (2, 15, 256, "sharded", 1),
    (1, 16, 256, "sharded", 1),
    (8, 16, None, "sharded", 8),  # no eval batch size: only the train batch counts
    (64, 64, 256, "sharded", 8),  # at most MAX_AUTO_DEVICES
    (8, 64, 256, "jit", 1),
])
def test_the_count_is_the_largest_divisor_of_the_batches_up_to_the_cores(
        cores, train, evaluation, parallel, expected):
    config = smoke_config(parallel=parallel, **{"train.batch_size": train})
    with config.unlocked():
        config.eval.batch_size = evaluation
    assert cpu_devices.count_for(config, cores) == expected


@pytest.mark.parametrize("flag, environment, chose", [
    (False, {}, False),
    (True, {}, True),
    (False, {"JAX_NUM_CPU_DEVICES": "1"}, True),
    (False, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}, True),
    (False, {"XLA_FLAGS": "--xla_backend_optimization_level=0"}, False),
])
def test_the_users_own_count_wins(monkeypatch, flag, environment, chose):
    for name in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert cpu_devices.user_chose(flag) is chose


def test_a_cgroup_quota_or_the_affinity_mask_bounds_the_cores():
    cores = cpu_devices.usable_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))


def _launch_on_two_cores(tmp_path, name, *flags, env_devices=None):
    env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
               XLA_FLAGS=" ".join(f for f in env.get("XLA_FLAGS", "").split()
                                  if "xla_force_host_platform_device_count" not in f))
    if env_devices is not None:
        env["JAX_NUM_CPU_DEVICES"] = str(env_devices)
    cores = sorted(os.sched_getaffinity(0))[:2]
    # A small interpreter pins itself to those cores, then becomes the launcher.
    pin = (f"import os, sys; os.sched_setaffinity(0, {cores}); "
           f"os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
    result = subprocess.run(
        [sys.executable, "-c", pin, str(MAIN), f"--config={SMOKE}",
         f"--workdir={tmp_path / name}", "--config.train.num_steps=2",
         "--config.train.eval_every=2", *flags],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, len(cores)


@pytest.mark.skipif(cpu_devices.usable_cores() < 2, reason="needs 2 cores")
def test_a_launch_splits_over_one_device_per_core_unless_told(tmp_path):
    out, _ = _launch_on_two_cores(tmp_path, "default")
    assert "cpu: 2 x cpu (2 local)" in out, out
    out, _ = _launch_on_two_cores(tmp_path, "flag", "--jax_num_cpu_devices=1")
    assert "cpu: 1 x cpu (1 local)" in out, out
    out, _ = _launch_on_two_cores(tmp_path, "env", env_devices=1)
    assert "cpu: 1 x cpu (1 local)" in out, out


def test_once_jax_has_started_the_devices_are_kept(monkeypatch):
    """In this test process JAX's backend runs with 8 CPU devices (conftest): choosing
    afterwards leaves them, instead of failing."""
    for name in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS"):
        monkeypatch.delenv(name, raising=False)
    assert jax.device_count() == 8
    assert cpu_devices.choose(smoke_config(), False, cores=2) is None
    assert jax.device_count() == 8
