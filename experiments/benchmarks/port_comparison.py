"""flowzoo's Flow++ against the PyTorch port (chrischute/flowplusplus), alternately, one run.

Each round runs the port, then flowzoo in each ``--compute_dtypes`` (``--rounds`` of them),
every measurement in a fresh subprocess, and prints one JSON line per measurement and a
``summary`` line: the medians of train img/s (one optimizer step: forward, backward,
clipping, Adam; median over ``--steps`` timed steps after a first, untimed one), peak
resident memory after those steps (CPU) or peak device memory (GPU), and sample img/s
(z -> x, a batch of ``--batch_size``), with the ratios flowzoo / port (per compute dtype)
and the machine (CPU model, cores, load average before and after each measurement).

    python experiments/benchmarks/port_comparison.py --port_dir=/path/to/flowplusplus \\
        --torch_python=/path/to/venv/bin/python --batch_size=16 --steps=2 \\
        --compute_dtypes=float32,bfloat16

The port runs at its own CIFAR-10 defaults (``train.py``: 96 channels, 10 blocks, 32
components, 2 dequantization blocks, attention, dropout 0.2), flowzoo at
``experiments/configs/flowpp_cifar10.py`` (the official model; ``--override`` for others),
both on uniform random levels (no loop in either depends on the pixel values); the parameter
counts of both are printed.  torch is not a flowzoo dependency: install it into a separate
virtual environment and give its interpreter as ``--torch_python``.  The port is copied
into a temporary folder and, in the copy only, two in-place operations that current torch
refuses in autograd (``weights += self.bias``, ``q *= key_depth_per_head ** -0.5``) are made
out-of-place; the checkout given is never written to.  ``--device=gpu`` runs both on the GPU
(CUDA for torch, JAX's GPU backend); the default is the CPU.  ``--max_rss_gib`` stops a
measurement whose resident memory passes it (default: 80% of the memory available at start;
the port needs about 18 GiB at batch 16 on CPU), reported as ``"stopped"``.
flowzoo runs as the launcher runs it: on a CPU the batch and the samples split over one
device per core, as many as divide ``--batch_size`` (flowzoo/training/cpu_devices.py; the
trainer's ``sharded`` mode and its sampler).  ``--cpu_devices=1,2`` measures given counts
instead, each its own implementation in the summary (``flowzoo``, ``flowzoo-2dev``).  On 2
cores the two halves' programs run side by side and fill the gaps that one program's sequence
of small operations leaves (docs/benchmarks.md#cpu-devices).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from experiments.benchmarks.common import load_average, machine  # noqa: E402

# The two lines of the port that current torch rejects (an in-place change of a tensor
# autograd saved), and their out-of-place forms.
PORT_FIXES = {
    os.path.join("models", "flowplusplus", "nn.py"): (
        ("weights += self.bias", "weights = weights + self.bias"),
        ("q *= key_depth_per_head ** -0.5", "q = q * key_depth_per_head ** -0.5")),
}
PORT_MODEL = dict(scales=((0, 4), (2, 3)), in_shape=(3, 32, 32), mid_channels=96,
                  num_blocks=10, num_dequant_blocks=2, num_components=32, use_attn=True,
                  drop_prob=0.2)
PORT_OPTIM = dict(lr=1e-3, weight_decay=5e-5, max_grad_norm=1.0)  # the port's defaults


def _rss_gib():
    """Peak resident set of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


def _median_seconds(fn, steps, sync):
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---- the workers (each runs in its own process) ---------------------------------------------

def port_worker(args) -> dict:
    """The port's train step and sampling, in the torch interpreter."""
    sys.path.insert(0, args.port_copy)
    import torch
    import util  # the port's
    from models import FlowPlusPlus  # the port's

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "gpu" else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    net = FlowPlusPlus(**PORT_MODEL).to(device)
    loss_fn = util.NLLLoss().to(device)
    groups = util.get_param_groups(net, PORT_OPTIM["weight_decay"], norm_suffix="weight_g")
    optimizer = torch.optim.Adam(groups, lr=PORT_OPTIM["lr"])
    gen = torch.Generator().manual_seed(0)
    x = (torch.randint(0, 256, (args.batch_size, 3, 32, 32), generator=gen) / 255.0).to(device)

    def train_step():
        optimizer.zero_grad()
        z, sldj = net(x, reverse=False)
        loss = loss_fn(z, sldj)
        loss.backward()
        util.clip_grad_norm(optimizer, PORT_OPTIM["max_grad_norm"])
        optimizer.step()

    net.train()
    train_step()  # the first forward also runs the port's data-dependent init
    sync()
    train_s = _median_seconds(train_step, args.steps, sync)
    out = {"train_img_s": args.batch_size / train_s, "train_peak_rss_gib": _rss_gib()}
    if device == "cuda":
        out["train_peak_device_gib"] = torch.cuda.max_memory_allocated() / 2**30
    net.eval()
    z = torch.randn((args.batch_size, 3, 32, 32), generator=gen).to(device)

    @torch.no_grad()
    def sample():
        return torch.sigmoid(net(z, reverse=True)[0])  # as the port's sample()

    sample()
    sync()
    out["sample_img_s"] = args.batch_size / _median_seconds(sample, args.steps, sync)
    out["params"] = sum(p.numel() for p in net.parameters())
    out["framework"] = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    return out


def flowzoo_worker(args) -> dict:
    """flowzoo's jitted train step (the trainer's) and sampling, in this interpreter."""
    import jax
    import numpy as np

    from experiments.benchmarks import flowpp as flowpp_benchmark
    from flowzoo import experiment
    from flowzoo.training import compilation_cache, optim, steps
    from flowzoo.training.parallel import Parallel

    if args.device == "cpu" and args.cpu_devices > 1:
        # Before any computation: the CPU backend is created with this many devices.
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    compilation_cache.enable(args.cache_dir)  # shared by the rounds: compiled once
    dtype = args.compute_dtype
    overrides = args.override + ["model.iw_samples=1",
                                 f"model.compute_dtype={json.dumps(dtype)}"]
    config = flowpp_benchmark.load_config(args.config, overrides)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (max(args.batch_size, 16), 32, 32, 3), dtype=np.uint8)
    batch = {"image": images[:args.batch_size],
             "index": np.arange(args.batch_size, dtype=np.int32)}
    init_batch = {"image": images[:16], "index": np.arange(16, dtype=np.int32)}
    model = experiment.build_model(config.model, images.shape[1:], 256)
    tx = optim.make_optimizer(config.optim)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), init_batch)
    # The trainer's default mode: state replicated, batch split over the devices.
    parallel = Parallel("sharded", model, tx, config.optim.ema_decay, args.batch_size, None,
                        max_nonfinite_in_a_row=config.train.max_nonfinite_in_a_row)
    state = parallel.put_state(steps.create_state(params, tx, jax.random.PRNGKey(1)))
    batch = parallel.put_batch(batch)
    holder = [parallel.train(state, batch)[0]]  # compile (or load from the cache), run once
    jax.block_until_ready(holder[0])

    def train_step():
        holder[0], metrics = parallel.train(holder[0], batch)
        return metrics

    def sync():
        jax.block_until_ready(holder[0])

    train_s = _median_seconds(train_step, args.steps, sync)
    out = {"train_img_s": args.batch_size / train_s, "train_peak_rss_gib": _rss_gib()}
    stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
    if stats:
        out["train_peak_device_gib"] = stats.get("peak_bytes_in_use", 0) / 2**30
    sample = parallel.sampler(model.sample)  # the trainer's: split over the devices
    ema = parallel.get_state(holder[0]).ema_params
    key = jax.random.PRNGKey(2)
    samples = [sample(ema, key, args.batch_size)]
    jax.block_until_ready(samples[0])

    def draw():
        samples[0] = sample(ema, key, args.batch_size)

    out["sample_img_s"] = args.batch_size / _median_seconds(
        draw, args.steps, lambda: jax.block_until_ready(samples[0]))
    out["params"] = int(sum(np.size(p) for p in jax.tree.leaves(params)))
    out["framework"] = (f"jax {jax.__version__} ({jax.default_backend()}), "
                        f"compute_dtype {dtype}, {jax.device_count()} device(s)")
    return out


# ---- the parent ------------------------------------------------------------------------------

def prepare_port(port_dir, into) -> str:
    """A copy of the port's code in ``into`` with :data:`PORT_FIXES` applied."""
    for folder in ("models", "util"):
        if not os.path.isdir(os.path.join(port_dir, folder)):
            sys.exit(f"--port_dir={port_dir} is not a checkout of chrischute/flowplusplus "
                     f"(no {folder}/ folder); clone it and pass its path.")
        shutil.copytree(os.path.join(port_dir, folder), os.path.join(into, folder))
    for path, fixes in PORT_FIXES.items():
        full = os.path.join(into, path)
        with open(full) as f:
            text = f.read()
        for old, new in fixes:
            if text.count(old) != 1:
                sys.exit(f"{path} of --port_dir does not contain {old!r} exactly once; this "
                         f"script knows the port at commit 4f12a46 (2019).")
            text = text.replace(old, new)
        with open(full, "w") as f:
            f.write(text)
    return into


def _available_gib():
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) / 2**20
    except (OSError, KeyError, ValueError):
        return None


def _rss_of(pid):
    """Resident memory of process ``pid`` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def run_worker(cmd, max_rss_gib):
    """Runs one worker; stops it if its resident memory passes ``max_rss_gib``."""
    load_before = load_average()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        stopped = False
        while proc.poll() is None:
            if max_rss_gib and _rss_of(proc.pid) > max_rss_gib:
                proc.kill()
                proc.wait()
                stopped = True
                break
            time.sleep(0.5)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    result = {"load_avg_before": load_before, "load_avg_after": load_average()}
    if stopped:
        return {**result, "stopped": f"resident memory passed --max_rss_gib={max_rss_gib:.1f}"}
    if proc.returncode:
        return {**result, "failed": stderr.strip()[-2000:]}
    return {**result, **json.loads(stdout.strip().splitlines()[-1])}


def cpu_device_counts(flag: str, batch_size: int, device: str, cores=None) -> list:
    """``--cpu_devices`` -> the device counts to measure ("auto": the launcher's count on a
    CPU, 1 on a GPU, where the count does not apply)."""
    from flowzoo.training import cpu_devices  # not at the top: the port's Python has no jax

    if flag == "auto":
        if device != "cpu":
            return [1]
        cores = cpu_devices.usable_cores() if cores is None else cores
        return [cpu_devices.largest_count([batch_size], cores)]
    try:
        counts = [int(n) for n in flag.split(",") if n.strip()]
    except ValueError:
        counts = []
    if not counts or any(n < 1 or batch_size % n for n in counts):
        raise ValueError(f"--cpu_devices takes device counts that divide --batch_size="
                         f"{batch_size}, comma-separated, or auto; got {flag!r}")
    return counts


def impl_name(dtype, cpu_devices):
    """"flowzoo", then "-bfloat16" for that dtype and "-2dev" for 2 CPU devices."""
    return ("flowzoo" + ("" if dtype == "float32" else f"-{dtype}")
            + ("" if cpu_devices == 1 else f"-{cpu_devices}dev"))


def _summary(results, batch_size):
    """Medians per implementation ("port", "flowzoo", "flowzoo-bfloat16", ...) and each
    flowzoo variant's ratios to the port (``ratios_<impl>_over_port``)."""
    summary = {"batch_size": batch_size}
    impls = list(dict.fromkeys(r["impl"] for r in results))
    for impl in impls:
        ok = [r for r in results if r["impl"] == impl and "train_img_s" in r]
        if ok:
            summary[impl] = {k: round(statistics.median(r[k] for r in ok), 3) for k in
                             ("train_img_s", "train_peak_rss_gib", "sample_img_s")}
            for k in ("train_peak_device_gib",):
                if all(k in r for r in ok):
                    summary[impl][k] = round(statistics.median(r[k] for r in ok), 3)
            summary[impl]["runs"] = len(ok)
    for impl in impls:
        if impl != "port" and "port" in summary and impl in summary:
            port, ours = summary["port"], summary[impl]
            summary[f"ratios_{impl}_over_port"] = {
                k: round(ours[k] / port[k], 3) for k in port
                if k != "runs" and k in ours and port[k]}
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port_dir", help="a checkout of chrischute/flowplusplus (read only)")
    parser.add_argument("--torch_python", default=sys.executable,
                        help="a Python with torch installed (a separate virtual environment)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="port, flowzoo alternations")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch intra-op threads (XLA:CPU uses every core)")
    parser.add_argument("--config", default=os.path.join(ROOT, "experiments", "configs",
                                                         "flowpp_cifar10.py"))
    parser.add_argument("--override", action="append", default=[],
                        help="flowzoo config dotted.key=json_value")
    parser.add_argument("--compute_dtypes", default="float32",
                        help="flowzoo's model.compute_dtype, comma-separated: each is measured "
                             "in every round (e.g. float32,bfloat16_products)")
    parser.add_argument("--compute_dtype", default="float32",
                        help=argparse.SUPPRESS)  # one, in a worker
    parser.add_argument("--cpu_devices", default="auto",
                        help="flowzoo's CPU devices (jax_num_cpu_devices), comma-separated: "
                             "each is measured in every round, the batch split over the "
                             "devices as the trainer does (e.g. 1,2; must divide "
                             "--batch_size); auto: the launcher's count, one per core as "
                             "far as they divide --batch_size")
    parser.add_argument("--max_rss_gib", type=float, default=None,
                        help="stop a measurement past this resident memory (default: 80%% "
                             "of the memory available at start)")
    parser.add_argument("--worker", choices=("port", "flowzoo"), help=argparse.SUPPRESS)
    parser.add_argument("--port_copy", help=argparse.SUPPRESS)
    parser.add_argument("--cache_dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.cpu_devices = int(args.cpu_devices) if args.worker == "flowzoo" else 1
        if args.device == "cpu":
            os.environ.setdefault("JAX_PLATFORMS", "cpu")
        worker = port_worker if args.worker == "port" else flowzoo_worker
        print(json.dumps(worker(args)), flush=True)
        return
    if not args.port_dir:
        parser.error("--port_dir is required: a checkout of chrischute/flowplusplus")
    from flowzoo.models.precision import COMPUTE_DTYPES  # not in the port's interpreter
    dtypes = [d.strip() for d in args.compute_dtypes.split(",") if d.strip()]
    if not dtypes or set(dtypes) - set(COMPUTE_DTYPES):
        parser.error(f"--compute_dtypes takes some of {', '.join(COMPUTE_DTYPES)}, got "
                     f"{args.compute_dtypes!r}")
    try:
        device_counts = cpu_device_counts(args.cpu_devices, args.batch_size, args.device)
    except ValueError as err:
        parser.error(str(err))
    available = _available_gib()
    max_rss = args.max_rss_gib or (0.8 * available if available else None)
    print(json.dumps({"machine": machine(), "available_gib": available and round(available, 1),
                      "max_rss_gib": max_rss and round(max_rss, 1)}), flush=True)
    common = [f"--batch_size={args.batch_size}", f"--steps={args.steps}",
              f"--device={args.device}", f"--threads={args.threads}"]
    results = []
    with tempfile.TemporaryDirectory(prefix="port-comparison-") as tmp:
        port_copy = prepare_port(args.port_dir, os.path.join(tmp, "port"))
        cache = os.path.join(tmp, "jax-cache")
        ours = {(dtype, n): [sys.executable, os.path.abspath(__file__), "--worker=flowzoo",
                             f"--config={args.config}", f"--compute_dtype={dtype}",
                             f"--cpu_devices={n}", f"--cache_dir={cache}"]
                + [f"--override={o}" for o in args.override]
                for dtype in dtypes for n in device_counts}
        theirs = [args.torch_python, os.path.abspath(__file__), "--worker=port",
                  f"--port_copy={port_copy}"]
        plan = [("port", theirs)] + [(impl_name(dtype, n), cmd)
                                     for (dtype, n), cmd in ours.items()]
        for r in range(args.rounds):
            for impl, cmd in plan:
                result = {"impl": impl, "round": r, **run_worker(cmd + common, max_rss)}
                results.append(result)
                print(json.dumps(result), flush=True)
    print(json.dumps({"summary": _summary(results, args.batch_size)}), flush=True)


if __name__ == "__main__":
    main()
