"""Product rates (GFLOP/s) of the Flow++ train step's shapes on this backend, per dtype.

Why this exists: whether ``model.compute_dtype="bfloat16"`` can pay on a CPU depends on
which of the step's products the backend runs on bfloat16 hardware (AVX512_BF16, AMX).  On
the Xeon with AMX (docs/benchmarks.md#xeon-amx) a bfloat16 matmul ran 5x faster than a
float32 one while XLA's bfloat16 3x3 convolution ran no faster than float32, and the
kernel-gradient products (contracting the rows of both operands) ran slower.  Run this on a
new machine or after a JAX upgrade before reaching for bfloat16 on a CPU.

    python experiments/benchmarks/cpu_rates.py [--dtypes float32,bfloat16] [--batch 16]

One JSON line per (dtype, product): the best and median milliseconds over ``--repeats``
calls, GFLOP/s at the best, and the machine.  Products (F = ``--filters``, the official 96;
positions R = batch x ``--height`` x ``--width``, the 32x16 of a squeezed CIFAR-10 half):

* ``matmul``: a square ``--matmul_size`` product (the backend's best case);
* ``pointwise``: a 1x1 convolution F -> 2F on (R, F) rows (a gated conv's second layer);
* ``row_product_narrow_first`` / ``_wide_first``: the (F, 2F) kernel gradient of a 1x1
  convolution, a^T b of (R, F) and (R, 2F) rows, with either operand first;
* ``conv3x3``: ``lax.conv_general_dilated`` 2F -> F ('SAME'; a block's first layer) and
  ``conv3x3_shifted``: the same as nine matrix products of shifted windows, summed;
* ``conv_same_train``: the model's own ``ops.conv_same`` 2F -> F with both its gradients
  (forward and backward, 3x the forward's FLOPs), in whichever form it takes for the dtype
  on this backend (bfloat16 on a CPU: tap products; docs/decisions.md#fpp-bf16-conv-products).

Products of bfloat16 operands accumulate in float32, as the mixed-precision policy does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments.benchmarks.common import machine  # noqa: E402
from flowzoo.models import precision  # noqa: E402
from flowzoo.models.flowpp import ops  # noqa: E402


conv3x3 = ops.conv_nhwc  # the model's 'SAME' convolution (forward)


def conv3x3_shifted(x, kernel):
    """``conv3x3`` as the sum over the 9 taps of (R, I) windows times (I, O) kernels."""
    n, h, w, i = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    total = 0.0
    for dh in range(3):
        for dw in range(3):
            window = padded[:, dh:dh + h, dw:dw + w].reshape(-1, i)
            total = total + jnp.einsum("ri,io->ro", window, kernel[dh, dw],
                                       preferred_element_type=precision.accumulation(x.dtype))
    return total.reshape(n, h, w, -1)


def cases(dtype, batch, height, width, filters, matmul_size, seed=0):
    """Yields (name, fn, args, flop) on random operands of ``dtype``."""
    rng = np.random.default_rng(seed)

    def draw(*shape):
        return jnp.asarray(rng.normal(size=shape), dtype)

    acc = precision.accumulation(dtype)
    rows = batch * height * width
    f = filters
    a, b = draw(matmul_size, matmul_size), draw(matmul_size, matmul_size)
    yield "matmul", lambda a, b: jnp.dot(a, b, preferred_element_type=acc), (a, b), \
        2 * matmul_size ** 3
    x, w, g = draw(rows, f), draw(f, 2 * f), draw(rows, 2 * f)
    yield "pointwise", lambda x, w: jnp.einsum("rc,cd->rd", x, w, preferred_element_type=acc), \
        (x, w), 2 * rows * f * 2 * f
    yield "row_product_narrow_first", \
        lambda x, g: jnp.einsum("ri,ro->io", x, g, preferred_element_type=acc), (x, g), \
        2 * rows * f * 2 * f
    yield "row_product_wide_first", \
        lambda x, g: jnp.einsum("ro,ri->oi", g, x, preferred_element_type=acc), (x, g), \
        2 * rows * f * 2 * f
    image, kernel = draw(batch, height, width, 2 * f), draw(3, 3, 2 * f, f)
    flop = 2 * rows * 9 * 2 * f * f
    yield "conv3x3", conv3x3, (image, kernel), flop
    yield "conv3x3_shifted", conv3x3_shifted, (image, kernel), flop
    dy = draw(batch, height, width, f)
    yield "conv_same_train", conv_same_train, (image, kernel, dy), 3 * flop


def conv_same_train(x, kernel, dy):
    """``ops.conv_same``'s output and its input and kernel gradients for cotangent dy."""
    y, vjp = jax.vjp(ops.conv_same, x, kernel)
    return (y,) + vjp(dy.astype(y.dtype))


def measure(fn, args, repeats):
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--filters", type=int, default=96)
    parser.add_argument("--matmul_size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    info = machine()
    for name in args.dtypes.split(","):
        dtype = jnp.dtype(name)
        for product, fn, operands, flop in cases(dtype, args.batch, args.height, args.width,
                                                 args.filters, args.matmul_size):
            best, median = measure(fn, operands, args.repeats)
            print(json.dumps(dict(dtype=name, product=product, best_ms=round(best * 1e3, 3),
                                  median_ms=round(median * 1e3, 3),
                                  gflop_s=float(f"{flop / best / 1e9:.4g}"), machine=info)),
                  flush=True)


if __name__ == "__main__":
    main()
