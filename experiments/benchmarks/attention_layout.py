"""Flow++ self-attention, batched vs one example at a time (``attention.self_attention``).

Why this exists: on a CPU the (N, heads, L, L) logits of a batch outgrow the cache
(64 MiB at N = 16 for the official CIFAR-10 couplings), so the softmax passes stream them
through memory; ``loop="examples"`` keeps one example's logits in cache and has a
flash-style backward pass.  ``"auto"``, the model default, picks the loop on CPU backends
only.  Rerun this on a new machine or after a JAX upgrade to check that choice.

    python experiments/benchmarks/attention_layout.py [--batch_sizes 4,16] [--blocks 10]

Where nothing differentiates, the loop's forward pass computes the softmax weights in query
tiles of at most ``attention.TILE_BYTES`` (1 MiB) each, sized for a 2 MiB L2 cache
(``forward_s``; a gradient keeps the whole weights); ``--tile_bytes`` times other budgets (a
budget of 4 MiB or more leaves L = 512 whole).

    python experiments/benchmarks/attention_layout.py --tile_bytes 524288,1048576,8388608

Prints one JSON line per (batch, loop, tile budget): seconds per gradient evaluation and per
forward evaluation (medians) of ``blocks`` scanned, rematerialised residual attention blocks
on Flow++'s full-resolution shape (32 x 16 positions, 4 heads of 24 channels; remat policy
``nets.REMAT_POLICY``, as in the model), and the gradient's difference from ``loop="off"``.
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
from flowzoo.models.flowpp.nets import REMAT_POLICY  # noqa: E402

LENGTH, HEADS, DEPTH = 32 * 16, 4, 24


def loss_fn(loop):
    def block(h, w):
        qkv = (h @ w).reshape(h.shape[:-1] + (3, HEADS, DEPTH))
        out = attention.self_attention(qkv, loop)
        h = h + out.reshape(h.shape)
        return h / jnp.sqrt(1.0 + jnp.mean(h * h, axis=-1, keepdims=True)), None

    block = jax.checkpoint(block, policy=REMAT_POLICY)

    def loss(weights, x):
        h, _ = jax.lax.scan(block, x, weights)
        return jnp.sum(h ** 2)

    return loss


def _median_seconds(fn, args, repeats):
    """(median seconds of ``repeats`` calls, first call's seconds, first result)."""
    start = time.perf_counter()
    result = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times)), first, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_sizes", default="4,16")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tile_bytes", default=str(attention.TILE_BYTES),
                        help="comma-separated query-tile budgets for loop='examples'")
    args = parser.parse_args(argv)
    budgets = [int(t) for t in args.tile_bytes.split(",")]
    if min(budgets) <= 0:
        parser.error(f"--tile_bytes takes positive byte counts, got {args.tile_bytes!r}")
    features = HEADS * DEPTH
    weights = 0.1 * jax.random.normal(jax.random.PRNGKey(1), (args.blocks, features, 3 * features))
    default_tile_bytes = attention.TILE_BYTES
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        x = jax.random.normal(jax.random.PRNGKey(0), (batch, LENGTH, features))
        reference = None
        cases = [("off", None)] + [("examples", t) for t in budgets]
        try:
            for loop, tile_bytes in cases:
                attention.TILE_BYTES = tile_bytes or default_tile_bytes
                loss = loss_fn(loop)  # traced afresh: the tiles are chosen at trace time
                grad_s, compile_s, result = _median_seconds(
                    jax.jit(jax.grad(loss, argnums=(0, 1))), (weights, x), args.repeats)
                forward_s, _, _ = _median_seconds(jax.jit(loss), (weights, x), args.repeats)
                reference = result if reference is None else reference
                rel = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                          for a, b in zip(result, reference))
                tiles = len(attention.query_tiles(LENGTH, HEADS)) if loop == "examples" else None
                print(json.dumps(dict(loop=loop, tile_bytes=tile_bytes, query_tiles=tiles,
                                      batch=batch, blocks=args.blocks,
                                      grad_s=round(grad_s, 4), forward_s=round(forward_s, 4),
                                      first_call_s=round(compile_s, 2),
                                      max_rel_diff_vs_off=float(f"{rel:.2g}"),
                                      backend=jax.default_backend())), flush=True)
        finally:
            attention.TILE_BYTES = default_tile_bytes


if __name__ == "__main__":
    main()
