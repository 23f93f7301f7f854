"""An upper bound on Flow++ sampling speed from this machine's own product and exp rates.

Why this exists: issue 23 asks sampling 2.5x the PyTorch port, or a measured argument that
the gap is arithmetic the CPU cannot do.  This counts what one sample needs, by kind, on
the jaxpr of ``model.sample`` (loop bodies times their trip counts):

* products: 3x3 convolutions, other convolutions and plain matmuls (1x1 convolutions,
  projections), and the attention's batched products (logits, weights x values);
* exponentials: the softmax's (on (..., L, L) arrays) and all others (mostly the mixture
  CDF inverse's bisection).

It then times each kind in isolation at the official model's full-resolution shapes (the
best of ``--repeats`` calls, whole machine) and prints the time per image if every product
ran at its kind's isolated rate and every exponential at the isolated ``exp`` rate, with all
other work (reductions, norms, ELUs, selects, copies, loop plumbing) free:

    python experiments/benchmarks/sampling_bound.py [--batch_size 16] [--repeats 20]

Read the bound against the port's sampling rate measured the same day on the same machine
(``port_comparison.py``): rates drift with the VM's state.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments.benchmarks import flowpp  # noqa: E402
from experiments.benchmarks.common import machine  # noqa: E402
from flowzoo.models.flowpp import ops  # noqa: E402


def count(jaxpr, multiplier=1, totals=None) -> dict:
    """FLOPs (2 per multiply-add) by product kind and exponentials by kind in a jaxpr."""
    totals = {} if totals is None else totals

    def add(kind, amount):
        totals[kind] = totals.get(kind, 0.0) + multiplier * float(amount)

    for eqn in jaxpr.eqns:
        name, params = eqn.primitive.name, eqn.params
        out = eqn.outvars[0].aval.shape if eqn.outvars else ()
        if name == "dot_general":
            (contract, _), (batch, _) = params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            flop = 2 * np.prod(out) * np.prod([lhs[d] for d in contract])
            add("attention_product_flop" if batch else "matmul_flop", flop)
        elif name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            spec = params["dimension_numbers"].rhs_spec  # (out, in, spatial...)
            window = tuple(rhs[d] for d in spec[2:])
            flop = 2 * np.prod(out) * rhs[spec[1]] * np.prod(window)
            add("conv3x3_flop" if window == (3, 3) else "matmul_flop", flop)
        elif name == "exp":
            shape = eqn.invars[0].aval.shape
            softmax = len(shape) >= 2 and shape[-1] == shape[-2] and shape[-1] >= 64
            add("softmax_exp" if softmax else "other_exp", np.prod(shape))
        inner = multiplier * (params.get("length", 1) if name == "scan" else 1)
        for sub in jax.extend.core.jaxprs_in_params(params):
            count(sub, inner, totals)
    return totals


def _best_seconds(fn, args, repeats):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def rates(repeats, batch=16, positions=32 * 16, filters=96, heads=4, seed=0) -> dict:
    """Isolated rates at the official CIFAR-10 model's full-resolution shapes: FLOP/s of a
    block's 3x3 convolution (2F -> F), of a (positions, 2F) x (2F, 2F) matmul and of one
    example's two attention products; exponentials per second on one example's logits."""
    rng = np.random.default_rng(seed)

    def draw(*shape):
        return jnp.asarray(rng.normal(size=shape), jnp.float32)

    rows = batch * positions
    x, kernel = draw(batch, 32, 16, 2 * filters), draw(3, 3, 2 * filters, filters)
    a, b = draw(rows, 2 * filters), draw(2 * filters, 2 * filters)
    depth = filters // heads
    q, k = draw(heads, positions, depth), draw(heads, depth, positions)
    weights, values = draw(heads, positions, positions), draw(positions, heads, depth)
    # The two products as attention.py lays them out (logits, weights x values).
    attention = jax.jit(lambda q, k, w, v: (jnp.einsum("hqd,hdk->hqk", q, k),
                                            jnp.einsum("hqk,khd->hqd", w, v)))
    seconds = {
        "conv3x3": _best_seconds(jax.jit(ops.conv_nhwc), (x, kernel), repeats),
        "matmul": _best_seconds(jax.jit(jnp.matmul), (a, b), repeats),
        "attention_product": _best_seconds(attention, (q, k, weights, values), repeats),
        "exp": _best_seconds(jax.jit(jnp.exp), (weights,), repeats),
    }
    work = {"conv3x3": 2 * rows * 9 * 2 * filters * filters,
            "matmul": 2 * rows * (2 * filters) ** 2,
            "attention_product": 2 * 2 * heads * positions * positions * depth,
            "exp": weights.size}
    return {kind: work[kind] / s for kind, s in seconds.items()}


def bound(per_image: dict, rate: dict) -> dict:
    """Seconds per image by kind at the isolated rates, their sum and the img/s it allows."""
    seconds = {
        "conv3x3": per_image.get("conv3x3_flop", 0.0) / rate["conv3x3"],
        "matmul": per_image.get("matmul_flop", 0.0) / rate["matmul"],
        "attention_product": per_image.get("attention_product_flop", 0.0)
        / rate["attention_product"],
        "softmax_exp": per_image.get("softmax_exp", 0.0) / rate["exp"],
        "other_exp": per_image.get("other_exp", 0.0) / rate["exp"],
    }
    total = sum(seconds.values())
    return {"ms_per_image": {k: round(1e3 * v, 1) for k, v in seconds.items()},
            "total_ms_per_image": round(1e3 * total, 1), "max_img_s": round(1 / total, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/configs/flowpp_cifar10.py")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    run = flowpp._setup(types.SimpleNamespace(
        config=args.config, batch_size=args.batch_size, images="random",
        override=['model.compute_dtype="float32"'], cache_dir=None))
    params = jax.eval_shape(run.model.init, jax.random.PRNGKey(0), run.init_batch)
    n = args.batch_size
    closed = jax.make_jaxpr(lambda p, key: run.model.sample(p, key, n))(
        params, jax.random.PRNGKey(1))
    per_image = {k: v / n for k, v in count(closed.jaxpr).items()}
    rate = rates(args.repeats)
    print(json.dumps({
        "machine": machine(), "backend": jax.default_backend(),
        "per_image": {k: (round(v / 1e9, 3) if k.endswith("flop") else round(v / 1e6, 1))
                      for k, v in per_image.items()},
        "units": "GFLOP (*_flop), million exponentials (*_exp)",
        "rates": {k: round(v / 1e9, 1) for k, v in rate.items()},
        "rate_units": "GFLOP/s, or 1e9 exponentials/s (exp)",
        **bound(per_image, rate)}), flush=True)


if __name__ == "__main__":
    main()
