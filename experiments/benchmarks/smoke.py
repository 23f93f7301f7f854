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
import importlib.util
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from flowzoo.data import dataset, files, loading, tfds_source  # noqa: E402

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
if {mock!r} == "files":
    import os
    import numpy as np
    from flowzoo.data import dataset, files
    name, info = config.data.name, dataset.info(config.data.name)
    path = os.path.join({tmp!r}, "data", files.FOLDERS[name], files.file_names(name, "train")[0])
    os.makedirs(os.path.dirname(path))
    levels = np.random.default_rng(0).integers(0, info.num_levels, (256, *info.shape))
    np.save(path, levels.astype(np.uint8))
    with config.unlocked():
        config.data.data_dir = os.path.dirname(os.path.dirname(path))
    experiment.train_and_evaluate(config, {workdir!r})
elif {mock!r} == "tfds":
    import numpy as np
    from flowzoo.data import dataset, tfds_source

    def mock_load_tfds(name, split, **unused):
        info = dataset.info(name)
        levels = np.random.default_rng(0).integers(0, info.num_levels, (256, *info.shape))
        return dataset.ImageDataset(name, split, levels.astype(np.uint8), info.num_levels)

    tfds_source.load_tfds = mock_load_tfds
    experiment.train_and_evaluate(config, {workdir!r})
else:
    experiment.train_and_evaluate(config, {workdir!r})
"""


def measure(path: pathlib.Path, mock: str) -> tuple[float, int, str]:
    """Seconds, exit code and output of one cold ``:smoke`` run; ``mock`` is "", "tfds" or
    "files"."""
    with tempfile.TemporaryDirectory() as tmp:
        code = RUN.format(root=str(ROOT), path=str(path), cache=os.path.join(tmp, "cache"),
                          workdir=os.path.join(tmp, "run"), mock=mock, tmp=tmp)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
        return time.perf_counter() - start, result.returncode, result.stdout + result.stderr


def data_kind(path: pathlib.Path) -> str:
    """"real" when the smoke run's splits are on this machine (embedded, local files or
    prepared TFDS data), else the mock to use: "tfds" or "files".  Decided before the run, so
    that a timed run never waits on a download."""
    spec = importlib.util.spec_from_file_location("config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    d = module.get_config("smoke").data
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
    args = parser.parse_args()
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
