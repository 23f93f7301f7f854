"""VLAE speed and memory on one config (default: the full static-MNIST model), one JSON line.

  * ``compile_s``: the first train step (trace + XLA compile + one step);
  * ``train_img_s``: images/s of the trainer's own jitted ``train_step`` (Adamax, EMA),
    median over ``--steps`` timed steps;
  * ``eval_img_s``: the trainer's ``evaluate`` (single-sample ELBO terms + IW NLL with
    ``iw_samples`` = K, reported) per image;
  * ``sample_img_s``: prior -> decoder -> compiled PixelCNN ancestral sampling (784 passes);
  * ``peak_rss_gib`` (CPU: ``ru_maxrss`` of this process) or ``peak_device_gib`` (GPU:
    ``memory_stats()['peak_bytes_in_use']``).

    python experiments/benchmarks/vlae.py [--config experiments/configs/vlae_static_mnist.py]
        [--batch_size 64] [--steps 10] [--eval_batch 100] [--samples 64] [--iw_samples 16]
        [--compute_dtype bfloat16]

``--compute_dtype`` sets ``config.model.compute_dtype`` (run once per dtype to compare).

Images are real (``$FLOWZOO_DATA_DIR`` or the config's data settings) when present, else
random bits (timing does not depend on the pixel values).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import resource
import sys
import time

import jax
import numpy as np


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def _config(spec):
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("vlae_benchmark_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


def _images(config, n):
    from flowzoo import data
    try:
        ds = data.load(config.data.name, "train", data_dir=config.data.data_dir,
                       source="files" if config.data.source == "auto" else config.data.source)
        images = ds.images[:n]
        if config.data.binarization != "none":
            batches = data.Batches(ds, n, seed=0, binarization=config.data.binarization)
            images = batches.batch(0)["image"]
        return np.asarray(images), "real"
    except (data.DataNotFoundError, ValueError):
        rng = np.random.default_rng(0)
        shape = tuple(data.DATASETS[config.data.name].shape)
        return rng.integers(0, 2, (n,) + shape, dtype=np.uint8), "random bits"


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(ROOT, "experiments", "configs",
                                                         "vlae_static_mnist.py"))
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eval_batch", type=int, default=100)
    parser.add_argument("--iw_samples", type=int, default=None, help="default: the config's")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--compute_dtype", default=None,
                        help="config.model.compute_dtype (float32, bfloat16); default: the "
                             "config's")
    args = parser.parse_args()

    from flowzoo import experiment
    from flowzoo.training import optim, steps

    config = _config(args.config)
    with config.unlocked():
        if args.iw_samples:
            config.model.iw_samples = args.iw_samples
        if args.compute_dtype:
            config.model.compute_dtype = args.compute_dtype
    n = max(args.batch_size, args.eval_batch, config.train.init_batch_size)
    images, source = _images(config, n)
    model = experiment.build_model(config.model, images.shape[1:], 2)

    def batch_of(b):
        return {"image": jax.numpy.asarray(images[:b]),
                "index": jax.numpy.arange(b, dtype=jax.numpy.int32)}

    init_batch = batch_of(min(config.train.init_batch_size, n))
    start = time.perf_counter()
    params = jax.block_until_ready(jax.jit(model.init)(jax.random.PRNGKey(0), init_batch))
    init_s = time.perf_counter() - start
    tx = optim.make_optimizer(config.optim)
    state = steps.create_state(params, tx, jax.random.PRNGKey(1))
    step = jax.jit(functools.partial(
        steps.train_step, model=model, tx=tx, ema_decay=config.optim.ema_decay,
        max_nonfinite_in_a_row=config.train.max_nonfinite_in_a_row), donate_argnums=0)
    batch = batch_of(args.batch_size)
    start = time.perf_counter()
    state, _ = step(state, batch)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - start

    holder = {"state": state}

    def one_step():
        holder["state"], metrics = step(holder["state"], batch)
        return metrics["loss"]

    train_s = _median_time(one_step, args.steps)

    eval_batch = batch_of(args.eval_batch)
    evaluate = jax.jit(model.evaluate)
    key = jax.random.PRNGKey(2)
    start = time.perf_counter()
    jax.block_until_ready(evaluate(holder["state"].ema_params, eval_batch, key))
    eval_compile_s = time.perf_counter() - start
    eval_s = _median_time(lambda: evaluate(holder["state"].ema_params, eval_batch, key), 3)

    sample = jax.jit(model.sample, static_argnums=2)
    start = time.perf_counter()
    jax.block_until_ready(sample(holder["state"].ema_params, key, args.samples))
    sample_first_s = time.perf_counter() - start
    sample_s = _median_time(lambda: sample(holder["state"].ema_params, key, args.samples), 2)

    out = {
        "config": os.path.relpath(args.config, ROOT), "images": source,
        "backend": jax.default_backend(), "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "num_params": int(sum(np.size(x) for x in jax.tree.leaves(params))),
        "compute_dtype": config.model.compute_dtype,
        "batch_size": args.batch_size, "init_s": round(init_s, 2),
        "compile_s": round(compile_s, 2), "train_step_s": round(train_s, 4),
        "train_img_s": round(args.batch_size / train_s, 1),
        "iw_samples": int(config.model.iw_samples), "eval_batch": args.eval_batch,
        "eval_compile_s": round(eval_compile_s, 2),
        "eval_img_s": round(args.eval_batch / eval_s, 2),
        "samples": args.samples, "sample_first_s": round(sample_first_s, 2),
        "sample_img_s": round(args.samples / sample_s, 2),
    }
    if jax.default_backend() == "cpu":
        out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                    / 2 ** 20, 3)
    else:
        stats = jax.devices()[0].memory_stats() or {}
        out["peak_device_gib"] = round(stats.get("peak_bytes_in_use", 0) / 2 ** 30, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
