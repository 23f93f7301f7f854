"""Wall time of every config's ``:smoke`` run, each in a fresh process with an empty
compilation cache (what a user's first smoke run costs, compile included).

    FLOWZOO_DATA_DIR=DATA python experiments/benchmarks/smoke.py [--only flowpp_mnist,...]

Configs whose data is not on this machine run on mock data of the right shape and number of
levels (256 random images), marked "mock": TFDS datasets through a stand-in for flowzoo's
TFDS reader (``tfds.testing.mock_data`` makes ImageNet images of random sizes), datasets that
only come as files (the CelebA-HQ arrays) through a temporary data folder holding a random
level array.  Prints one row per config and a markdown table at the end.
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from experiments.benchmarks.flowpp import load_config  # noqa: E402
from flowzoo.data import dataset, files, loading, tfds_source  # noqa: E402


def _random_levels(name: str) -> np.ndarray:
    """256 images of dataset ``name``'s shape, uniform over its levels (uint8)."""
    info = dataset.info(name)
    return np.random.default_rng(0).integers(
        0, info.num_levels, (256, *info.shape)).astype(np.uint8)


def run_one(path: str, mock: str, tmp: str):
    """One ``:smoke`` run (in the measured process): ``mock`` "tfds" stands in for flowzoo's
    TFDS reader, "files" writes the dataset's file into a data folder under ``tmp``."""
    from flowzoo import experiment
    from flowzoo.training import compilation_cache, cpu_devices

    config = load_config(f"{path}:smoke", [])
    cpu_devices.choose(config, False)  # the launcher's CPU devices, before JAX starts
    compilation_cache.enable(os.path.join(tmp, "cache"))
    if mock == "files":
        name = config.data.name
        folder = os.path.join(tmp, "data", files.FOLDERS[name])
        os.makedirs(folder)
        np.save(os.path.join(folder, files.file_names(name, "train")[0]), _random_levels(name))
        with config.unlocked():
            config.data.data_dir = os.path.dirname(folder)
    elif mock == "tfds":
        tfds_source.load_tfds = lambda name, split, **_: dataset.ImageDataset(
            name, split, _random_levels(name), dataset.info(name).num_levels)
    experiment.train_and_evaluate(config, os.path.join(tmp, "run"))


def measure(path: pathlib.Path, mock: str) -> tuple[float, int, str]:
    """Seconds, exit code and output of one cold ``:smoke`` run in a fresh process; ``mock``
    is "", "tfds" or "files"."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, __file__, f"--run_one={path}", f"--mock={mock}", f"--tmp={tmp}"],
            capture_output=True, text=True)
        return time.perf_counter() - start, result.returncode, result.stdout + result.stderr


def data_kind(path: pathlib.Path) -> str:
    """"real" when the smoke run's splits are on this machine (embedded, local files or
    prepared TFDS data), else the mock to use: "tfds" or "files".  Decided before the run, so
    that a timed run never waits on a download."""
    d = load_config(f"{path}:smoke", []).data
    sources = dataset.info(d.name).sources
    if "embedded" in sources:
        return "real"
    splits = {p for s in (d.train_split, d.eval_split) for p in loading.split_parts(d.name, s)}
    local = files.resolve_data_dir(d.data_dir)
    if ("files" in sources and d.source in ("auto", "files")
            and all(files.find(d.name, s, local) for s in splits)):
        return "real"
    if ("tfds" in sources and d.source in ("auto", "tfds")
            and tfds_source.builder(d.name, d.data_dir).is_prepared()):
        return "real"
    return "tfds" if "tfds" in sources else "files"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated config names")
    parser.add_argument("--run_one", help=argparse.SUPPRESS)  # a measured run: config path
    parser.add_argument("--mock", default="", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        return run_one(args.run_one, args.mock, args.tmp)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    rows = []
    for path in sorted((ROOT / "experiments" / "configs").glob("[!_]*.py")):
        if only and path.stem not in only:
            continue
        kind = data_kind(path)
        seconds, code, output = measure(path, mock="" if kind == "real" else kind)
        data = "real" if kind == "real" else "mock"
        # The trainer's closing "Time: start-up ..., compilation ..." line: where it went.
        parts = [line.split("Time: ", 1)[1].rstrip(".") for line in output.splitlines()
                 if "Time: start-up" in line]
        status = ("ok" if code == 0 else
                  (output.strip().splitlines() or ["failed"])[-1][:100])
        rows.append((path.name, data, seconds, status, parts[-1] if parts else ""))
        print(f"{path.name:34s} {data:5s} {seconds:6.1f} s  {status}  {rows[-1][-1]}",
              flush=True)
    load = os.getloadavg()[0]
    print("\n| config | data | wall s (cold cache) | status | of which (the trainer's report) |"
          "\n|---|---|---|---|---|")
    for name, data, seconds, status, parts in rows:
        print(f"| `{name}:smoke` | {data} | {seconds:.1f} | {status} | {parts} |")
    print(f"\n{os.cpu_count()} CPUs, load average at the end {load:.2f}")


if __name__ == "__main__":
    main()
