"""Operand layouts of the looped Flow++ attention's products, timed on this backend.

Why this exists: one example's attention (``flowzoo/models/flowpp/attention.py``) is made
of three kinds of products on (H, L, L) weights and (L, H, d) queries/keys/values, and
XLA:CPU's YNNPACK products ran the same arithmetic up to 5x slower in some operand and
result layouts than in others (docs/decisions.md#fpp-attention-layouts).  attention.py
uses the layouts marked ``"used": true``; rerun this on a new machine or after a JAX
upgrade to check them.

    python experiments/benchmarks/attention_products.py [--length 512] [--heads 4] [--depth 24]

Prints one JSON line per (product, layout): the einsum, the best and median milliseconds
over interleaved rounds, GFLOP/s at the best, and whether attention.py uses it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from flowzoo.models.flowpp import attention  # noqa: E402

# (product, einsum, layout of the (L, H, d) operand(s)); the first of each is attention.py's.
# Layouts: "lhd" (L, H, d), "hld" (H, L, d), "hdl" (H, d, L).
LAYOUTS = {
    "logits": [("hqd,hdk->hqk", ("hld", "hdl")), ("qhd,khd->hqk", ("lhd", "lhd")),
               ("hqd,hkd->hqk", ("hld", "hld")), ("hdq,hdk->hqk", ("hdl", "hdl"))],
    "weights_values": [("hqk,khd->hqd", "lhd"), ("hqk,khd->qhd", "lhd"),
                       ("hqk,hkd->hqd", "hld"), ("hqk,hdk->hqd", "hdl"),
                       ("hqk,hkd->hdq", "hld")],
    "transposed_weights_values": [("hqk,qhd->khd", "lhd"), ("hqk,hqd->hkd", "hld"),
                                  ("hqk,hqd->khd", "hld"), ("hqk,hdq->hdk", "hdl"),
                                  ("hqk,qhd->hkd", "lhd")],
}
_FROM_LHD = {"lhd": (0, 1, 2), "hld": (1, 0, 2), "hdl": (1, 2, 0)}


def cases(length, heads, depth, seed=0):
    """Yields (product, einsum, used, fn, args) on random operands of the given shape."""
    rng = np.random.default_rng(seed)
    weights = jnp.asarray(rng.normal(size=(heads, length, length)), jnp.float32)
    lhd = [jnp.asarray(rng.normal(size=(length, heads, depth)), jnp.float32) for _ in range(2)]

    def laid_out(t, layout):
        return jnp.transpose(t, _FROM_LHD[layout])

    for product, options in LAYOUTS.items():
        for i, (spec, layouts) in enumerate(options):
            if product == "logits":
                args = tuple(laid_out(t, lay) for t, lay in zip(lhd, layouts))
            else:
                args = (weights, laid_out(lhd[0], layouts))
            fn = jax.jit(lambda a, b, s=spec: attention._product(s, a, b))
            yield product, spec, i == 0, fn, args


def time_cases(length, heads, depth, rounds, calls):
    """Interleaved timing: every round calls each case ``calls`` times in turn."""
    table = list(cases(length, heads, depth))
    for *_, fn, args in table:
        jax.block_until_ready(fn(*args))
    times = [[] for _ in table]
    for _ in range(rounds):
        for i, (*_, fn, args) in enumerate(table):
            start = time.perf_counter()
            for _ in range(calls):
                out = fn(*args)
            jax.block_until_ready(out)
            times[i].append((time.perf_counter() - start) / calls)
    flop = 2 * heads * length * length * depth
    for (product, spec, used, _, _), t in zip(table, times):
        yield dict(product=product, einsum=spec, used=used,
                   best_ms=round(1e3 * min(t), 4), median_ms=round(1e3 * float(np.median(t)), 4),
                   gflop_s=round(flop / min(t) / 1e9, 1), length=length, heads=heads,
                   depth=depth, backend=jax.default_backend())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=32 * 16)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--depth", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv)
    for row in time_cases(args.length, args.heads, args.depth, args.rounds, args.calls):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
