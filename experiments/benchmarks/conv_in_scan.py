"""Gradient of a stack of 3x3 convolutions, scanned vs unrolled, autodiff vs ``conv_same``.

Why this exists: on XLA's CPU backend the kernel gradient that autodiff emits for
``lax.conv_general_dilated`` runs 10-20x slower inside a while loop (``lax.scan``,
``nn.scan``) than outside one.  Flow++ scans its conditioner blocks, so
``flowzoo.models.flowpp.ops.conv_same`` writes the gradients by hand.  Rerun this after a
JAX upgrade: when the ``autodiff`` rows agree, ``conv_same`` is no longer needed.

    python experiments/benchmarks/conv_in_scan.py [--batch 4] [--layers 10]

Prints one JSON line per (convolution, loop) pair: seconds per gradient evaluation (median).
The block is Flow++'s shape: ``x + tanh(conv3x3(concat(x, -x)))``, 96 -> 192 -> 96 channels
on 32 x 16 positions.

``--kernel_gradient_shapes N,H,W,I,O ...`` times instead the two forms of ``conv_same``'s
kernel gradient (``ops._kernel_gradient_as_conv``, ``_as_products``) inside a scan over
``--layers`` inputs, interleaved, milliseconds per gradient (median of ``--repeats``); run
it under ``taskset -c 0`` to see one device of a sharded batch.  ``ops._kernel_gradient``
picks between them by which side is wider (docs/decisions.md#fpp-kernel-gradient).
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

from flowzoo.models.flowpp import ops  # noqa: E402
from flowzoo.models.flowpp.ops import conv_nhwc, conv_same  # noqa: E402

KERNEL_GRADIENT_FORMS = {"conv": ops._kernel_gradient_as_conv,
                         "products": ops._kernel_gradient_as_products}


def loss_fn(conv, scanned):
    def block(h, kernel):
        return h + jnp.tanh(conv(jnp.concatenate([h, -h], axis=-1), kernel))

    def loss(kernels, x):
        if scanned:
            h, _ = jax.lax.scan(lambda h, k: (block(h, k), None), x, kernels)
        else:
            h = x
            for i in range(kernels.shape[0]):
                h = block(h, kernels[i])
        return jnp.sum(h ** 2)

    return loss


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kernel_gradient_shapes", nargs="*", default=None,
                        help="N,H,W,I,O shapes (e.g. 8,32,16,192,96): time the kernel-gradient "
                             "forms instead")
    args = parser.parse_args(argv)
    if args.kernel_gradient_shapes:
        for shape in args.kernel_gradient_shapes:
            time_kernel_gradients(tuple(int(v) for v in shape.split(",")), args.layers,
                                  args.repeats)
        return
    features = 96
    x = jax.random.normal(jax.random.PRNGKey(0), (args.batch, 32, 16, features))
    kernels = 0.03 * jax.random.normal(jax.random.PRNGKey(1),
                                       (args.layers, 3, 3, 2 * features, features))
    for name, conv in (("autodiff", conv_nhwc), ("conv_same", conv_same)):
        for scanned in (True, False):
            grad = jax.jit(jax.grad(loss_fn(conv, scanned), argnums=(0, 1)))
            jax.block_until_ready(grad(kernels, x))
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                jax.block_until_ready(grad(kernels, x))
                times.append(time.perf_counter() - start)
            print(json.dumps(dict(conv=name, loop="scan" if scanned else "unrolled",
                                  batch=args.batch, layers=args.layers,
                                  grad_s=round(float(np.median(times)), 4),
                                  backend=jax.default_backend())), flush=True)


def time_kernel_gradients(shape, layers, repeats):
    """One JSON line: each form's milliseconds per kernel gradient of a (N, H, W, I) input
    and (N, H, W, O) output gradient, 3x3, inside a scan over ``layers`` pairs."""
    n, h, w, c_in, c_out = shape
    xs = jax.random.normal(jax.random.PRNGKey(0), (layers, n, h, w, c_in))
    dys = jax.random.normal(jax.random.PRNGKey(1), (layers, n, h, w, c_out))
    compiled = {name: jax.jit(lambda xs, dys, f=form: jax.lax.scan(
                    lambda c, a: (c, f(*a, 3, 3)), 0.0, (xs, dys))[1])
                for name, form in KERNEL_GRADIENT_FORMS.items()}
    results = {name: fn(xs, dys) for name, fn in compiled.items()}
    np.testing.assert_allclose(results["conv"], results["products"], rtol=1e-3, atol=1e-2)
    times = {name: [] for name in compiled}
    for _ in range(repeats):
        for name, fn in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(xs, dys))
            times[name].append((time.perf_counter() - start) / layers * 1e3)
    print(json.dumps(dict(shape=list(shape), **{f"{k}_ms": round(float(np.median(v)), 2)
                                                 for k, v in times.items()},
                          picked="conv" if c_in > c_out else "products",
                          backend=jax.default_backend())), flush=True)


if __name__ == "__main__":
    main()
