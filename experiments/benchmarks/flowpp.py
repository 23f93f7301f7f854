"""Flow++ speed and memory: train step, evaluation and sampling at a given config.

For each batch size it reports, as one JSON line:
  * ``compile_s``: lowering + XLA compile of the train step (what the first step waits for),
    cold: each batch size gets an empty persistent compilation cache; ``relaunch_compile_s``:
    the same in a fresh process with that cache filled, what a relaunch of the launcher
    (resume, eval) waits for (tracing and lowering are not cached, XLA's compile is);
    ``init_s``: the data-dependent init on 16 images, compile included (waited for once);
  * ``train_img_s``: images per second of the jitted train step (Adam, EMA, clipping: the
    trainer's own ``train_step``), median over the timed steps;
  * ``eval_img_s``: the single-sample bound plus round trip (the trainer's ``evaluate`` with
    ``iw_samples=1``); ``bound_img_s``: the single-sample bound alone, no dropout (what a
    test-set pass costs, and what the PyTorch port's ``test()`` times); ``sample_img_s``:
    ``sample`` (z -> x through the exact inverse);
  * ``train_temp_gib``: XLA's temporary buffer size for the train step (its activation and
    workspace memory; ``memory_analysis``), and ``peak_rss_gib`` (CPU: the process's peak
    resident set, measured in a fresh subprocess per batch size, at the end) or
    ``peak_device_gib`` (GPU); ``train_peak_rss_gib``: the peak resident set right after the
    timed train steps, before evaluation and sampling compile (a training run's peak);
  * ``recon_error`` / ``dequant_recon_error``: max round-trip error on the batch;
  * ``train_gflop``: matmul + convolution FLOPs of one train step without remat and with the
    batched attention (counted on its jaxpr, loops times their length), and ``mfu`` from it
    given ``--peak_tflops``;
  * ``train_cpu_cores_used``: process CPU seconds per wall second while timing the train
    step (on a 2-core machine, well under 2 means other processes took the cores);
    ``train_page_faults_per_step``: minor page faults per timed step (CPU: the temporaries
    XLA maps afresh every call, 4 KiB a fault).

    python experiments/benchmarks/flowpp.py                       # CIFAR-10 config, batch 4, 16
    python experiments/benchmarks/flowpp.py --batch_sizes=16 --steps=3 \\
        --override=model.remat=False --override=model.scan_blocks=False
    python experiments/benchmarks/flowpp.py --batch_sizes=16 --compute_dtype=float32,bfloat16

``--compute_dtype`` (``config.model.compute_dtype``; several, comma-separated) measures each
in turn at every batch size, then prints one ``{"compare": ...}`` line per batch size with
each speed and memory figure of the others relative to the first (``train_img_s`` 0.8:
bfloat16 trains at 0.8x float32's images per second).  On a GPU or TPU give
``--peak_tflops`` of the dtype measured (bf16 dense peak for bfloat16).

Images are uniform random levels by default (the timing does not depend on pixel values:
every loop in the model has a static trip count); ``--images=dataset`` loads the config's
dataset instead (through its loader, which may download it), falling back to random levels
when it is found nowhere.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import types

import jax
import numpy as np
from jax.extend import core as jax_core


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from experiments.benchmarks.common import minor_page_faults  # noqa: E402


def load_config(spec, overrides):
    """``path[:arg]`` -> the config, as ``--config`` reads it, then ``key=json`` overrides."""
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("benchmark_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    with config.unlocked():
        for item in overrides:
            dotted, value = item.split("=", 1)
            *parents, leaf = dotted.split(".")
            node = config
            for p in parents:
                node = node[p]
            node[leaf] = type(node[leaf])(json.loads(value)) if node[leaf] is not None \
                else json.loads(value)
    return config


def _images(config, n, source):
    from flowzoo import data
    info = data.DATASETS[config.data.name]
    if source == "random":
        rng = np.random.default_rng(0)
        images = rng.integers(0, info.num_levels, (n,) + tuple(info.shape), dtype=np.uint8)
        return images, info.num_levels, "uniform random levels"
    try:
        ds = data.load(config.data.name, "train", source=config.data.source,
                       data_dir=config.data.data_dir, manual_dir=config.data.manual_dir)
        return ds.images[:n], ds.num_levels, f"{config.data.name} (real)"
    except data.DataNotFoundError:
        images, num_levels, _ = _images(config, n, "random")
        return images, num_levels, "uniform random levels (the dataset was found nowhere)"


def product_flops(eqn) -> float:
    """FLOPs (2 per multiply-add) of one ``dot_general`` or ``conv_general_dilated``
    equation; 0 for any other primitive."""
    name, params = eqn.primitive.name, eqn.params
    if name == "dot_general":
        (contract, _), _ = params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        return 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[d] for d in contract])
    if name == "conv_general_dilated":
        rhs = eqn.invars[1].aval.shape
        spec = params["dimension_numbers"].rhs_spec  # (out, in, spatial...)
        per_output = rhs[spec[1]] * np.prod([rhs[d] for d in spec[2:]])
        return 2.0 * np.prod(eqn.outvars[0].aval.shape) * per_output
    return 0.0


def _jaxpr_flops(jaxpr) -> float:
    """Matmul and convolution FLOPs of a jaxpr (2 per multiply-add), loop bodies counted
    ``length`` times.  XLA's own count sees a loop body once, so it undercounts a scanned
    model; this is the count for model FLOP utilisation (elementwise work left out)."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name, params = eqn.primitive.name, eqn.params
        total += product_flops(eqn)
        multiplier = params.get("length", 1) if name == "scan" else 1
        for sub in jax_core.jaxprs_in_params(params):
            total += multiplier * _jaxpr_flops(sub)
    return total


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_gib():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


def _timed(fn, steps):
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _setup(args):
    """Config, model, optimizer, a batch, the init batch and the jitted train step."""
    from flowzoo import experiment
    from flowzoo.training import compilation_cache, optim, steps

    compilation_cache.enable(args.cache_dir or "")  # the parent's fresh folder, or none
    config = load_config(args.config, args.override + ["model.iw_samples=1"])
    batch_size = args.batch_size
    images, num_levels, source = _images(config, max(batch_size, 16), args.images)
    batch = {"image": images[:batch_size], "index": np.arange(batch_size, dtype=np.int32)}
    model = experiment.build_model(config.model, images.shape[1:], num_levels)
    tx = optim.make_optimizer(config.optim)
    init_batch = {"image": images[:16], "index": np.arange(16, dtype=np.int32)}
    train = jax.jit(lambda s, b: steps.train_step(
        s, b, model=model, tx=tx, ema_decay=config.optim.ema_decay,
        max_nonfinite_in_a_row=config.train.max_nonfinite_in_a_row), donate_argnums=0)
    return types.SimpleNamespace(config=config, model=model, tx=tx, batch=batch,
                                 init_batch=init_batch, train=train, source=source,
                                 shape=images.shape[1:], num_levels=num_levels)


def relaunch(args) -> dict:
    """Lowering + compile of the train step from abstract state, as a resumed run does,
    in a fresh process whose compilation cache ``measure`` filled."""
    from flowzoo.training import steps

    run = _setup(args)
    key = jax.random.PRNGKey(0)
    state = jax.eval_shape(
        lambda: steps.create_state(run.model.init(key, run.init_batch), run.tx, key))
    events = []
    jax.monitoring.register_event_listener(lambda name, **_: events.append(name))
    start = time.perf_counter()
    lowered = run.train.lower(state, run.batch)
    lower_s = time.perf_counter() - start
    lowered.compile()
    return dict(relaunch_compile_s=round(time.perf_counter() - start, 2),
                relaunch_lower_s=round(lower_s, 2),
                relaunch_cache_hits=events.count("/jax/compilation_cache/cache_hits"))


def measure(args) -> dict:
    """One batch size, in this process (run it in a fresh one for a clean peak RSS)."""
    from flowzoo import experiment
    from flowzoo.models import flowpp
    from flowzoo.training import host_memory, steps

    run = _setup(args)
    config, model, tx, batch, train = run.config, run.model, run.tx, run.batch, run.train
    batch_size = args.batch_size
    start = time.perf_counter()
    params = jax.block_until_ready(jax.jit(model.init)(jax.random.PRNGKey(0), run.init_batch))
    init_s = time.perf_counter() - start
    host_memory.release_free_memory()  # as the trainer does after the init
    state = steps.create_state(params, tx, jax.random.PRNGKey(1))

    start = time.perf_counter()
    compiled = train.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    host_memory.release_free_memory()  # as the trainer does before its first step
    memory = compiled.memory_analysis()
    # Model FLOPs: the same step without remat and with the batched attention (the
    # recomputation of either, e.g. the looped attention's second q k^T, is not model work).
    no_remat = load_config(args.config, args.override + ["model.iw_samples=1",
                                                          "model.remat=false",
                                                          'model.attention_loop="off"'])
    flop_model = experiment.build_model(no_remat.model, run.shape, run.num_levels)
    flops = _jaxpr_flops(jax.make_jaxpr(lambda s, b: steps.train_step(
        s, b, model=flop_model, tx=tx, ema_decay=config.optim.ema_decay,
        max_nonfinite_in_a_row=config.train.max_nonfinite_in_a_row))(state, batch).jaxpr)

    holder = [compiled(state, batch)[0]]  # the first step: state now donated and replaced

    def one_train_step():
        holder[0], metrics = compiled(holder[0], batch)
        return metrics["loss"]

    cpu_before, wall_before = _cpu_seconds(), time.perf_counter()
    faults_before = minor_page_faults()
    train_s = _timed(one_train_step, args.steps)
    faults = (minor_page_faults() - faults_before) / args.steps
    cpu_util = (_cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before)
    train_peak_rss = _peak_rss_gib()
    params = holder[0].ema_params

    flow = flowpp.make_flow(config.model, run.shape, run.num_levels)
    bound = jax.jit(lambda p, b, k: flowpp.iw_log_likelihood(flow, p, b, k, 1, 1))
    jax.block_until_ready(bound(params, batch, jax.random.PRNGKey(3)))  # compile
    bound_s = _timed(lambda: bound(params, batch, jax.random.PRNGKey(3)), args.steps)

    evaluate = jax.jit(model.evaluate)
    key = jax.random.PRNGKey(2)
    eval_out = jax.block_until_ready(evaluate(params, batch, key))
    eval_s = _timed(lambda: evaluate(params, batch, key), args.steps)
    sample = jax.jit(model.sample, static_argnums=2)
    jax.block_until_ready(sample(params, key, batch_size))
    sample_s = _timed(lambda: sample(params, key, batch_size), args.steps)
    result = dict(
        config=args.config, overrides=args.override, batch_size=batch_size, images=run.source,
        compute_dtype=config.model.compute_dtype,
        init_s=round(init_s, 2), compile_s=round(compile_s, 2), train_img_s=round(batch_size / train_s, 3),
        train_step_s=round(train_s, 3), train_cpu_cores_used=round(cpu_util, 2),
        train_page_faults_per_step=round(faults),
        bound_img_s=round(batch_size / bound_s, 3), eval_img_s=round(batch_size / eval_s, 3),
        sample_img_s=round(batch_size / sample_s, 3),
        train_temp_gib=round(memory.temp_size_in_bytes / 2**30, 3) if memory else None,
        recon_error=float(np.max(eval_out["recon_error"])),
        dequant_recon_error=float(np.max(eval_out.get("dequant_recon_error", np.zeros(1)))),
        train_gflop=round(flops / 1e9, 1), backend=jax.default_backend(),
        device=str(jax.devices()[0].device_kind), machine=platform.machine(),
        cpu_count=os.cpu_count())
    stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
    if stats:
        result["peak_device_gib"] = round(stats.get("peak_bytes_in_use", 0) / 2**30, 3)
    result["train_peak_rss_gib"] = train_peak_rss
    result["peak_rss_gib"] = _peak_rss_gib()
    if args.peak_tflops:
        result["mfu"] = round(flops / train_s / (args.peak_tflops * 1e12), 4)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(ROOT, "experiments", "configs",
                                                         "flowpp_cifar10.py"))
    parser.add_argument("--batch_sizes", default="4,16")
    parser.add_argument("--batch_size", type=int, help=argparse.SUPPRESS)  # one, in-process
    parser.add_argument("--steps", type=int, default=3, help="timed calls per measurement")
    parser.add_argument("--images", choices=("random", "dataset"), default="random",
                        help="random levels, or the config's dataset (may download it)")
    parser.add_argument("--override", action="append", default=[],
                        help="dotted.key=json_value, e.g. model.remat=false")
    parser.add_argument("--peak_tflops", type=float, default=0.0,
                        help="device peak (dense, the dtype used) for model FLOP utilisation")
    parser.add_argument("--compute_dtype", default="",
                        help="comma-separated config.model.compute_dtype values to measure "
                             "in turn (float32,bfloat16,bfloat16_products); default: the "
                             "config's")
    parser.add_argument("--cache_dir", help=argparse.SUPPRESS)  # set by the parent
    parser.add_argument("--relaunch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch_size:
        print(json.dumps(relaunch(args) if args.relaunch else measure(args)), flush=True)
        return
    dtypes = [d for d in args.compute_dtype.split(",") if d] or [None]
    for size in (int(s) for s in args.batch_sizes.split(",")):
        results = [_measure_in_subprocesses(args, size, dtype) for dtype in dtypes]
        for result in results:
            print(json.dumps(result), flush=True)
        if len(results) > 1:
            print(json.dumps({"compare": _relative(results)}), flush=True)


COMPARED = ("train_img_s", "bound_img_s", "eval_img_s", "sample_img_s", "compile_s",
            "train_temp_gib", "train_peak_rss_gib", "peak_rss_gib", "peak_device_gib")


def _relative(results):
    """Each later result's speeds and memory as multiples of the first's."""
    first = results[0]
    out = {"batch_size": first["batch_size"], "baseline": first["compute_dtype"]}
    for result in results[1:]:
        out[result["compute_dtype"]] = {
            k: round(result[k] / first[k], 3) for k in COMPARED
            if result.get(k) and first.get(k)}
    return out


def _measure_in_subprocesses(args, size, compute_dtype):
    """``measure`` and ``relaunch`` for one batch size (and compute dtype), each in a fresh
    process sharing one empty compilation cache."""
    overrides = list(args.override)
    if compute_dtype:
        overrides.append(f"model.compute_dtype={json.dumps(compute_dtype)}")
    with tempfile.TemporaryDirectory(prefix="flowpp-bench-cache-") as cache_dir:
        cmd = [sys.executable, os.path.abspath(__file__), f"--config={args.config}",
               f"--batch_size={size}", f"--steps={args.steps}",
               f"--peak_tflops={args.peak_tflops}", f"--images={args.images}",
               f"--cache_dir={cache_dir}"]
        cmd += [f"--override={o}" for o in overrides]
        result = {}
        for extra in ([], ["--relaunch"]):
            out = subprocess.run(cmd + extra, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"batch {size} ({compute_dtype or 'config dtype'}) failed:\n"
                         f"{out.stderr[-4000:]}")
            result.update(json.loads(out.stdout.strip().splitlines()[-1]))
    return result

if __name__ == "__main__":
    main()
