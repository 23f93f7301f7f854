"""The launcher as a user meets it: each mistake ends in at most three lines naming the fix,
with no traceback and nothing created on disk; ``--help`` lists the configs; subcommands,
JAX's flags and the installed ``flowzoo`` command work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from flowzoo import config_catalog
from tests.training.helpers import MAIN, ROOT, SMOKE

CONFIGS = ROOT / "experiments" / "configs"


def _launch(*args, devices=1, timeout=300):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(MAIN), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def _assert_short_error(result, *words):
    """Non-zero exit; stderr's message is 1-3 lines plus the --verbose_errors hint."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Error: "))
    message = lines[start:]
    assert message[-1] == "(--verbose_errors shows the traceback)", message
    assert 1 <= len(message) - 1 <= 3, message
    text = "\n".join(message)
    for word in words:
        assert word in text, (word, text)


@pytest.mark.parametrize("args, words", [
    (["--config.train.num_step=5"], ["--config.train.num_steps", "unknown config key"]),
    (["--config.trian.num_steps=5"], ["did you mean --config.train?"]),
    (["--config.train.num_steps=abc"], ["num_steps", "abc"]),
    (["--workdri=x"], ["workdir"]),
    (["--config.train.profile_steps=7"], ["profile_steps", "FIRST,LAST"]),
], ids=["key", "section", "value", "flag", "profile_steps"])
def test_a_mistyped_flag_or_key_names_the_fix(tmp_path, args, words):
    workdir = tmp_path / "run"
    _assert_short_error(_launch(f"--config={SMOKE}", f"--workdir={workdir}", *args), *words)
    assert not workdir.exists()


def test_a_missing_config_file_lists_the_configs(tmp_path):
    result = _launch(f"--config={CONFIGS / 'digit_flow.py'}", f"--workdir={tmp_path / 'w'}")
    _assert_short_error(result, "not found", "digits_flow.py", "vlae_static_mnist.py")
    _assert_short_error(_launch(f"--workdir={tmp_path / 'w'}"), "--config is required")
    _assert_short_error(_launch(f"--config={CONFIGS / 'digits_flow.py'}:smok",
                                f"--workdir={tmp_path / 'w'}"), "'smoke'", "smok")
    assert not (tmp_path / "w").exists()


def test_a_workdir_that_cannot_be_written_is_named(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    _assert_short_error(_launch(f"--config={SMOKE}", f"--workdir={a_file}"),
                        str(a_file), "is a file")
    _assert_short_error(_launch(f"--config={SMOKE}", f"--workdir={a_file / 'run'}"),
                        "cannot be written", str(a_file))


def test_a_batch_the_devices_do_not_divide_names_the_divisor(tmp_path):
    result = _launch(f"--config={SMOKE}", f"--workdir={tmp_path / 'w'}",
                     "--config.train.batch_size=12", devices=8)
    _assert_short_error(result, "config.train.batch_size=12", "divisible by the 8 devices")
    assert not (tmp_path / "w").exists()


def test_eval_of_an_empty_workdir_creates_nothing(tmp_path):
    workdir = tmp_path / "never_trained"
    for mode in ("eval", "sample"):
        _assert_short_error(_launch(mode, f"--config={SMOKE}", f"--workdir={workdir}"),
                            "No checkpoint", "train first")
    assert not workdir.exists()


def test_missing_data_names_the_data_dir_flag(tmp_path):
    result = _launch(f"--config={CONFIGS / 'vlae_static_mnist.py'}:smoke",
                     f"--workdir={tmp_path / 'w'}", "--config.data.source=files",
                     f"--config.data.data_dir={tmp_path / 'no_data'}")
    _assert_short_error(result, "binarized_mnist", "--config.data.data_dir")
    assert not (tmp_path / "w").exists()


def test_verbose_errors_brings_the_traceback_back(tmp_path):
    result = _launch(f"--config={SMOKE}", f"--workdir={tmp_path / 'w'}", "--mode=eval",
                     "--verbose_errors")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_help_lists_configs_with_presets():
    result = _launch("--help")
    assert result.returncode == 0
    assert "digits_flow.py" in result.stdout and ":smoke" in result.stdout
    assert "vlae_static_mnist.py" in result.stdout and "--workdir" in result.stdout


def test_subcommand_jax_flags_and_describe(tmp_path):
    result = _launch("describe", f"--config={SMOKE}", "--jax_platforms=cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"num_params"' in result.stdout


def test_the_installed_flowzoo_command_is_the_launcher(tmp_path):
    command = shutil.which("flowzoo", path=os.path.dirname(sys.executable))
    if command is None:
        pytest.skip("the flowzoo command is not installed (pip install -e .)")
    result = subprocess.run([command, "describe", f"--config={SMOKE}"], capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"model": "small_flow"' in result.stdout


def test_every_config_lists_its_presets_and_each_one_loads():
    """--help reads each config's PRESETS; every config has :smoke, and every preset it
    lists builds a config (a listed preset that fails to load would mislead users)."""
    for name in config_catalog.names():
        path = config_catalog.folder() / name
        _, presets = config_catalog.describe(path)
        assert "smoke" in presets, name
        for preset in presets:
            config = config_catalog._load(f"{path}:{preset}")
            assert config.model.name, (name, preset)
