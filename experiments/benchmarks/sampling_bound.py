"""Flow++ sampling speed if every kind of work ran at its isolated rate on this machine.

Why this exists: issue 23 asks sampling 2.5x the PyTorch port, or a measured argument that
the gap is arithmetic the CPU cannot do.  This counts what one sample needs, by kind, on
the jaxpr of ``model.sample`` (loop bodies times their trip counts; of a ``cond`` the
costliest branch; a ``while`` loop is refused):

* products: 3x3 convolutions, plain matmuls (1x1 convolutions, projections) and the
  attention's batched products (logits, weights x values);
* exponentials (the ``exp`` primitive only): the softmax's (those under the attention's
  :data:`~flowzoo.models.flowpp.attention.SOFTMAX_SCOPE` name scope) and all others
  (mostly the mixture CDF inverse's bisection).

It times each kind alone at the official model's full-resolution shapes, in float32, two
ways (:func:`rates`), keeps the faster, and prints the time per image at those rates with
all other work free: reductions, norms, ELUs, sigmoids, logarithms, selects, copies and
loop plumbing.  It is an estimate, not a proof: inside the compiled sample XLA fuses the
products and exponentials with their neighbours (the logits with their row maxima, the
exponentials with their sums), which an operation timed alone, writing its whole output,
does not get, so the program can run some kinds faster than they run alone.  It says
nothing about bfloat16, whose products run on other hardware.

    python experiments/benchmarks/sampling_bound.py [--batch_size 16] [--repeats 20]

Read it against the port's sampling rate measured the same hour on the same machine
(``port_comparison.py``): rates drift with the VM's state.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments.benchmarks import cpu_rates, flowpp  # noqa: E402
from experiments.benchmarks.common import machine  # noqa: E402
from flowzoo.models.flowpp import attention, ops  # noqa: E402
from flowzoo.training import cpu_devices  # noqa: E402


def count(jaxpr, multiplier=1, totals=None) -> dict:
    """FLOPs (2 per multiply-add) by product kind and exponentials by kind in a jaxpr."""
    totals = {} if totals is None else totals

    def add(kind, amount):
        totals[kind] = totals.get(kind, 0.0) + multiplier * float(amount)

    for eqn in jaxpr.eqns:
        name, params = eqn.primitive.name, eqn.params
        if name == "dot_general":
            _, (batch, _) = params["dimension_numbers"]
            add("attention_product_flop" if batch else "matmul_flop", flowpp.product_flops(eqn))
        elif name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            window = tuple(rhs[d] for d in params["dimension_numbers"].rhs_spec[2:])
            add("conv3x3_flop" if window == (3, 3) else "matmul_flop", flowpp.product_flops(eqn))
        elif name == "exp":
            softmax = attention.SOFTMAX_SCOPE in str(eqn.source_info.name_stack)
            add("softmax_exp" if softmax else "other_exp", np.prod(eqn.invars[0].aval.shape))
        if name == "while":
            raise ValueError("sampling_bound.count: a while loop has no static trip count; "
                             "only scans (and fori_loops with static bounds) are counted.")
        if name == "cond":  # the costliest branch
            branches = [count(b.jaxpr, multiplier, {}) for b in params["branches"]]
            for kind, amount in max(branches, key=lambda c: sum(c.values())).items():
                totals[kind] = totals.get(kind, 0.0) + amount
            continue
        inner = multiplier * (params.get("length", 1) if name == "scan" else 1)
        for sub in jax.extend.core.jaxprs_in_params(params):
            count(sub, inner, totals)
    return totals


def rates(repeats, batch=16, height=32, width=16, filters=96, heads=4, loop=8,
          seed=0) -> dict:
    """Isolated rates at the official CIFAR-10 model's full-resolution shapes: FLOP/s of a
    block's 3x3 convolution (2F -> F) and of a (positions, 2F) x (2F, 2F) matmul on
    ``batch`` images, of one example's two attention products, and exponentials per second
    on one example's logits.  Each kind is timed two ways and the faster counts (so the
    bound stays an upper bound): one call on the first device, its threads on every core;
    and split as sampling runs, every local device its share (``batch / devices`` images,
    or one example) ``loop`` times in a loop inside one program, dispatch amortised.
    Returns {kind: {"whole": rate, "split": rate, "best": the larger}}."""
    devices = jax.local_devices()
    n, positions, depth = len(devices), height * width, filters // heads
    mesh = Mesh(np.asarray(devices), ("d",))
    rng = np.random.default_rng(seed)

    def draw(*shape):
        return jnp.asarray(rng.normal(size=shape), jnp.float32)

    def per_call(op, args):
        return cpu_rates.measure(op, args, repeats)[0]  # best seconds

    def per_share(op, args):  # seconds per share, n devices each looping over `loop` shares
        sharding = NamedSharding(mesh, P("d"))
        stacked = tuple(jax.device_put(jnp.broadcast_to(a, (n, loop) + a.shape), sharding)
                        for a in args)

        def local(*blocks):
            out = jax.lax.map(lambda xs: op(*xs), tuple(b[0] for b in blocks))
            return jax.tree.map(lambda o: o[None], out)

        fn = jax.shard_map(local, mesh=mesh, in_specs=(P("d"),) * len(args), out_specs=P("d"))
        return per_call(fn, stacked) / (n * loop)

    def attention(q, k, w, v):  # one example's products as attention.py lays them out
        return jnp.einsum("hqd,hdk->hqk", q, k), jnp.einsum("hqk,khd->hqd", w, v)

    share = batch // n
    x, kernel = draw(batch, height, width, 2 * filters), draw(3, 3, 2 * filters, filters)
    a, b = draw(batch * positions, 2 * filters), draw(2 * filters, 2 * filters)
    example = (draw(heads, positions, depth), draw(heads, depth, positions),
               draw(heads, positions, positions), draw(positions, heads, depth))
    conv_flop = 2 * positions * 9 * 2 * filters * filters  # per image
    matmul_flop = 2 * positions * (2 * filters) ** 2  # per image
    attention_flop = 2 * 2 * heads * positions * positions * depth  # per example
    exps = heads * positions * positions  # per example
    result = {
        "conv3x3": (batch * conv_flop / per_call(ops.conv_nhwc, (x, kernel)),
                    share * conv_flop / per_share(ops.conv_nhwc, (x[:share], kernel))),
        "matmul": (batch * matmul_flop / per_call(jnp.matmul, (a, b)),
                   share * matmul_flop / per_share(jnp.matmul, (a[:share * positions], b))),
        "attention_product": (attention_flop / per_call(attention, example),
                              attention_flop / per_share(attention, example)),
        "exp": (exps / per_call(jnp.exp, example[2:3]),
                exps / per_share(jnp.exp, example[2:3])),
    }
    return {kind: {"whole": whole, "split": split, "best": max(whole, split)}
            for kind, (whole, split) in result.items()}


def bound(per_image: dict, rate: dict) -> dict:
    """Milliseconds per image by kind at the given rates, their sum and its img/s."""
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
            "total_ms_per_image": round(1e3 * total, 1), "img_s": round(1 / total, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/configs/flowpp_cifar10.py")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    if not cpu_devices.user_chose(False):  # the launcher's devices, as sampling uses them
        try:
            jax.config.update("jax_num_cpu_devices", cpu_devices.largest_count(
                [args.batch_size], cpu_devices.usable_cores()))
        except RuntimeError:  # JAX started already (a notebook, the tests): keep its devices
            pass
    run = flowpp._setup(types.SimpleNamespace(
        config=args.config, batch_size=args.batch_size, images="random",
        override=['model.compute_dtype="float32"'], cache_dir=None))
    params = jax.eval_shape(run.model.init, jax.random.PRNGKey(0), run.init_batch)
    n = args.batch_size
    closed = jax.make_jaxpr(lambda p, key: run.model.sample(p, key, n))(
        params, jax.random.PRNGKey(1))
    per_image = {k: v / n for k, v in count(closed.jaxpr).items()}
    measured = rates(args.repeats)
    print(json.dumps({
        "machine": machine(), "backend": jax.default_backend(),
        "devices": jax.local_device_count(),
        "per_image": {k: (round(v / 1e9, 3) if k.endswith("flop") else round(v / 1e6, 1))
                      for k, v in per_image.items()},
        "units": "GFLOP (*_flop), million exponentials (*_exp)",
        "rates": {k: {way: round(v / 1e9, 1) for way, v in r.items()}
                  for k, r in measured.items()},
        "rate_units": "GFLOP/s, or 1e9 exponentials/s (exp)",
        **bound(per_image, {k: r["best"] for k, r in measured.items()})}), flush=True)


if __name__ == "__main__":
    main()
