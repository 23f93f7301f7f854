"""Flow++ self-attention, batched vs one example at a time (``attention.self_attention``).

Why this exists: on a CPU the (N, heads, L, L) logits of a batch outgrow the cache
(64 MiB at N = 16 for the official CIFAR-10 couplings), so the softmax passes stream them
through memory; ``loop="examples"`` keeps one example's logits in cache and has a
flash-style backward pass.  ``"auto"``, the model default, picks the loop on CPU backends
only.  Rerun this on a new machine or after a JAX upgrade to check that choice.

    python experiments/benchmarks/attention_layout.py [--batch_sizes 4,16] [--blocks 10]

Prints one JSON line per (batch, loop): seconds per gradient evaluation (median) of
``blocks`` scanned, rematerialised residual attention blocks on Flow++'s full-resolution
shape (32 x 16 positions, 4 heads of 24 channels; remat policy ``nets.REMAT_POLICY``, as in
the model), and the result's difference from ``loop="off"``.
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

from flowzoo.models.flowpp.attention import self_attention  # noqa: E402
from flowzoo.models.flowpp.nets import REMAT_POLICY  # noqa: E402

LENGTH, HEADS, DEPTH = 32 * 16, 4, 24


def loss_fn(loop):
    def block(h, w):
        qkv = (h @ w).reshape(h.shape[:-1] + (3, HEADS, DEPTH))
        out = self_attention(qkv, loop)
        h = h + out.reshape(h.shape)
        return h / jnp.sqrt(1.0 + jnp.mean(h * h, axis=-1, keepdims=True)), None

    block = jax.checkpoint(block, policy=REMAT_POLICY)

    def loss(weights, x):
        h, _ = jax.lax.scan(block, x, weights)
        return jnp.sum(h ** 2)

    return loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_sizes", default="4,16")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    features = HEADS * DEPTH
    weights = 0.1 * jax.random.normal(jax.random.PRNGKey(1), (args.blocks, features, 3 * features))
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        x = jax.random.normal(jax.random.PRNGKey(0), (batch, LENGTH, features))
        reference = None
        for loop in ("off", "examples"):
            grad = jax.jit(jax.grad(loss_fn(loop), argnums=(0, 1)))
            start = time.perf_counter()
            result = jax.block_until_ready(grad(weights, x))
            compile_s = time.perf_counter() - start
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                jax.block_until_ready(grad(weights, x))
                times.append(time.perf_counter() - start)
            reference = result if reference is None else reference
            rel = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                      for a, b in zip(result, reference))
            print(json.dumps(dict(loop=loop, batch=batch, blocks=args.blocks,
                                  grad_s=round(float(np.median(times)), 4),
                                  first_call_s=round(compile_s, 2),
                                  max_rel_diff_vs_off=float(f"{rel:.2g}"),
                                  backend=jax.default_backend())), flush=True)


if __name__ == "__main__":
    main()
