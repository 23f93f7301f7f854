"""Training curves in float32 and bfloat16 (``config.model.compute_dtype``) on real data.

Both runs start from the same float32 parameters (one init, by the float32 model), take the
same batches in the same order and the same step keys, with the trainer's own
``train_step`` (optimizer, EMA and clipping of the config).  ``--float32_seeds=N`` adds N
float32 runs that differ from the reference only in their step keys (dropout and
dequantization noise): their distance from the reference is the seed-to-seed spread that a
bfloat16 difference is judged against.  Printed, as JSON lines:

  * per window of ``--window`` steps: each run's mean training loss (the config's unit) and
    each run's difference from the float32 reference;
  * ``summary``: the largest and the last window difference, and each run's held-out loss
    (its EMA parameters, ``--eval_examples`` images of the test split, the model's own
    ``evaluate`` headline) evaluated in its own compute dtype and in float32, with a flow's
    round-trip errors (pixel levels) in both; the time per step of each run, and the machine
    (CPU model, cores, load average).

    FLOWZOO_DATA_DIR=... python experiments/benchmarks/mixed_precision_curves.py \\
        --config=experiments/configs/flowpp_mnist.py:smoke --steps=300 \
        --override='optim.learning_rate=5e-4' --float32_seeds=2

The data come from the config's dataset (``data.load``: ``$FLOWZOO_DATA_DIR`` or the
config's data settings); a missing dataset stops the script with the loader's message.  The
backend is JAX's default: the same command measures a GPU or TPU where one is present.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from experiments.benchmarks.common import load_average, machine  # noqa: E402
from experiments.benchmarks.flowpp import load_config  # noqa: E402


def _data(config, split):
    from flowzoo import data
    return data.load(config.data.name, split, source=config.data.source,
                     data_dir=config.data.data_dir, manual_dir=config.data.manual_dir)


def _num_levels(config, ds):
    """Of the data the model sees: 2 once binarized (as the trainer's)."""
    return 2 if config.data.binarization != "none" else ds.num_levels


def _run(config, compute_dtype, params, batches, num_steps, seed=1):
    """Trains ``num_steps`` from ``params`` with step keys from ``seed``: (per-step losses,
    EMA params, seconds per step after the first, the model)."""
    from flowzoo import experiment
    from flowzoo.training import optim, steps

    with config.unlocked():
        config.model.compute_dtype = compute_dtype
    ds = batches.ds
    model = experiment.build_model(config.model, ds.images.shape[1:], _num_levels(config, ds))
    tx = optim.make_optimizer(config.optim)
    model_state = model.init_model_state() if model.init_model_state else None
    state = steps.create_state(jax.tree.map(np.copy, params), tx, jax.random.PRNGKey(seed),
                               model_state)
    step = jax.jit(lambda s, b: steps.train_step(
        s, b, model=model, tx=tx, ema_decay=config.optim.ema_decay,
        max_nonfinite_in_a_row=config.train.max_nonfinite_in_a_row), donate_argnums=0)
    losses, start = [], None
    for i in range(num_steps):
        state, metrics = step(state, batches.batch(i))
        losses.append(float(metrics["loss"]))  # waits for the step
        if i == 0:
            start = time.perf_counter()
    step_s = (time.perf_counter() - start) / max(num_steps - 1, 1)
    return np.array(losses), state.ema_params, step_s, model


def _held_out(model, params, batch):
    """The mean headline metric, and for a flow the round trip x -> z -> x: the largest,
    the median and the 99th percentile over examples of each example's largest error."""
    metrics = jax.jit(model.evaluate)(params, batch, jax.random.PRNGKey(7))
    out = {"loss": round(float(np.mean(metrics[model.eval_metric])), 4)}
    for key in ("recon_error", "dequant_recon_error"):
        if key in metrics:
            errors = np.asarray(metrics[key])
            out[key] = {"max": float(errors.max()), "median": float(np.median(errors)),
                        "p99": float(np.percentile(errors, 99))}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(
        ROOT, "experiments", "configs", "flowpp_mnist.py") + ":smoke")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=None, help="default: the config's")
    parser.add_argument("--window", type=int, default=25, help="steps per averaged point")
    parser.add_argument("--eval_examples", type=int, default=256)
    parser.add_argument("--compute_dtypes", default="float32,bfloat16",
                        help="the reference first")
    parser.add_argument("--float32_seeds", type=int, default=0,
                        help="extra reference-dtype runs with other step keys (the spread)")
    parser.add_argument("--override", action="append", default=[],
                        help="key=json config override, e.g. optim.learning_rate=5e-4")
    args = parser.parse_args()
    if args.float32_seeds < 0:
        parser.error("--float32_seeds must be >= 0")

    from flowzoo import data, experiment

    config = load_config(args.config, args.override)
    with config.unlocked():
        config.model.iw_samples = 1  # the held-out figure is the single-sample bound
        config.model.iw_chunk = 1
    batch_size = args.batch_size or config.train.batch_size
    train = _data(config, "train")
    batches = data.Batches(train, batch_size, seed=0,
                           binarization=config.data.binarization)
    test = _data(config, "test")
    eval_batch = data.Batches(test, args.eval_examples, seed=0, shuffle=False,
                              binarization=config.data.binarization).batch(0)
    init_batches = data.Batches(train, config.train.init_batch_size, seed=1,
                                binarization=config.data.binarization)
    dtypes = args.compute_dtypes.split(",")
    with config.unlocked():
        config.model.compute_dtype = dtypes[0]
    reference = experiment.build_model(config.model, train.images.shape[1:],
                                       _num_levels(config, train))
    params = jax.jit(reference.init)(jax.random.PRNGKey(0), init_batches.batch(0))
    params = jax.tree.map(np.asarray, params)

    base = dtypes[0]
    # Each run: (name, compute dtype, step-key seed); the reference uses seed 1.
    plan = [(d, d, 1) for d in dtypes]
    spread_runs = [(f"{base}@seed{s}", base, s) for s in range(2, 2 + args.float32_seeds)]
    plan += spread_runs
    runs = {}
    for name, dtype, seed in plan:
        losses, ema, step_s, model = _run(config, dtype, params, batches, args.steps, seed)
        runs[name] = dict(losses=losses, step_s=step_s,
                          held_out=_held_out(model, ema, eval_batch),
                          held_out_float32=_held_out(reference, ema, eval_batch),
                          load=load_average())
    others = [name for name, _, _ in plan[1:]]
    diffs = {name: [] for name in others}
    for start in range(0, args.steps, args.window):
        point = {"steps": [start, min(start + args.window, args.steps) - 1]}
        for name in runs:
            point[name] = round(float(np.mean(runs[name]["losses"][start:start + args.window])),
                                4)
        for name in others:
            diffs[name].append(point[name] - point[base])
            point[f"{name}-{base}"] = round(diffs[name][-1], 4)
        print(json.dumps(point), flush=True)
    summary = {"config": os.path.relpath(args.config, ROOT), "overrides": args.override,
               "steps": args.steps, "batch_size": batch_size, "window": args.window,
               "loss_unit": reference.loss_unit, "data": f"{config.data.name} (real)",
               "eval_examples": args.eval_examples,
               "machine": {**machine(), "backend": jax.default_backend(),
                           "device": jax.devices()[0].device_kind}}
    for name, run in runs.items():
        summary[name] = {"step_s": round(run["step_s"], 4),
                         "held_out": run["held_out"],
                         "held_out_in_float32": run["held_out_float32"],
                         "load_avg_at_end": run["load"]}
        if name != base:
            window = np.abs(np.array(diffs[name]))
            summary[name]["max_abs_window_diff"] = round(float(window.max()), 4)
            summary[name]["last_window_diff"] = round(float(diffs[name][-1]), 4)
    if spread_runs:  # the margin a bf16 run is judged by
        summary["float32_seed_spread"] = max(summary[name]["max_abs_window_diff"]
                                             for name, _, _ in spread_runs)
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()
