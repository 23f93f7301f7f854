"""Wall time of every config's ``:smoke`` run, each in a fresh process with an empty
compilation cache (what a user's first smoke run costs, compile included).

    FLOWZOO_DATA_DIR=DATA python experiments/benchmarks/smoke.py [--only flowpp_mnist,...]

Configs whose data is not on this machine run on ``tfds.testing.mock_data`` (random images of
the right shape, marked "mock"); data only available as files (CelebA arrays) is reported as
not measured.  Prints one row per config and a markdown table at the end.
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN = """
import sys
from flowzoo import experiment
from flowzoo.training import compilation_cache
sys.path.insert(0, {root!r})
import importlib.util
spec = importlib.util.spec_from_file_location("config", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
config = module.get_config("smoke")
compilation_cache.enable({cache!r})
if {mock}:
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=256):
        experiment.train_and_evaluate(config, {workdir!r})
else:
    experiment.train_and_evaluate(config, {workdir!r})
"""


def measure(path: pathlib.Path, mock: bool) -> tuple[float, int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        code = RUN.format(root=str(ROOT), path=str(path), cache=os.path.join(tmp, "cache"),
                          workdir=os.path.join(tmp, "run"), mock=mock)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
        return time.perf_counter() - start, result.returncode, result.stderr


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated config names")
    args = parser.parse_args()
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    rows = []
    for path in sorted((ROOT / "experiments" / "configs").glob("[!_]*.py")):
        if only and path.stem not in only:
            continue
        seconds, code, stderr = measure(path, mock=False)
        data = "real"
        if code != 0 and "No data found" in stderr:
            seconds, code, stderr = measure(path, mock=True)
            data = "mock"
        status = "ok" if code == 0 else (stderr.strip().splitlines() or ["failed"])[-1][:100]
        rows.append((path.name, data, seconds, status))
        print(f"{path.name:34s} {data:5s} {seconds:6.1f} s  {status}", flush=True)
    load = os.getloadavg()[0]
    print(f"\n| config | data | wall s (cold cache) | status |\n|---|---|---|---|")
    for name, data, seconds, status in rows:
        print(f"| `{name}:smoke` | {data} | {seconds:.1f} | {status} |")
    print(f"\n{os.cpu_count()} CPUs, load average at the end {load:.2f}")


if __name__ == "__main__":
    main()
