"""Float32 accuracy and speed of the logistic-mixture-CDF inverse.

Compares flowzoo's inverse (tight bracket, bisection and Newton steps on the scaled
difference F e^-min(t,0) - (1 - F) e^max(t,0))
with the bisection the official Flow++ code uses (x-space, CDF compared in
probability space, bounds mu -/+ 200 * sum(scales), 200 steps), on random
mixtures at points where the CDF is a given distance from 0 or 1.

    python experiments/benchmarks/mixture_cdf_inverse.py [--k 32] [--n 4096]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from flowzoo import _logistic
from flowzoo.bijectors import LogisticMixtureCDF


def official_style_inverse(y, p, steps=200):
    """x-space bisection on F(x) = sigmoid(t) as in the official TF code (float32)."""
    t = (y - p["shift"]) * jnp.exp(-p["log_scale"])
    target = jax.nn.sigmoid(t)
    log_s = jnp.maximum(p["log_scales"], -7.0)
    pi = jax.nn.softmax(p["logits"], -1)
    cdf = lambda x: jnp.sum(pi * jax.nn.sigmoid((x[..., None] - p["means"]) * jnp.exp(-log_s)), -1)
    spread = 200.0 * jnp.sum(jnp.exp(log_s), -1)
    lo = jnp.min(p["means"], -1) - spread
    hi = jnp.max(p["means"], -1) + spread

    def body(_, b):
        lo, hi = b
        mid = 0.5 * (lo + hi)
        below = cdf(mid) < target
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)
    lo, hi = jax.lax.fori_loop(0, steps, body, (lo, hi))
    return 0.5 * (lo + hi)


def x_at_cdf(p, cdf, iters=200):
    """Reference x with F(x) = cdf, by float64 bisection in logit space."""
    with jax.enable_x64(True):
        q = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), p)
        target = np.log(cdf) - np.log1p(-cdf)
        n = q["shift"].shape[0]
        lo, hi = jnp.full((n,), -1e4), jnp.full((n,), 1e4)
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            lc, ls = _logistic.mixture_log_cdf_and_sf(
                mid, q["logits"], q["means"], jnp.maximum(q["log_scales"], -7.0))
            below = lc - ls < target
            lo, hi = jnp.where(below, mid, lo), jnp.where(below, hi, mid)
        return np.asarray(0.5 * (lo + hi), np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--n", type=int, default=4096)
    args = parser.parse_args()
    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    n, k = args.n, args.k
    p = {"logits": 2.0 * jax.random.normal(keys[0], (n, k)),
         "means": 3.0 * jax.random.normal(keys[1], (n, k)),
         "log_scales": jax.random.uniform(keys[2], (n, k), minval=-7.0, maxval=1.0),
         "log_scale": 0.5 * jax.random.normal(keys[3], (n,)),
         "shift": jax.random.normal(keys[4], (n,))}
    bijector = LogisticMixtureCDF(num_components=k)
    forward, inverse = jax.jit(bijector.forward), jax.jit(bijector.inverse)
    official = jax.jit(official_style_inverse)
    print(f"K={k}, {n} random mixtures, log-scales in [-7, 1], float32, {jax.devices()[0]}")
    print(f"{'F(x)':>12} {'max |x|':>9} {'flowzoo max err':>16} {'official-style max err':>23}")
    for cdf in (1e-9, 1e-6, 1e-4, 0.5, 1 - 1e-4, 1 - 1e-6, 1 - 1e-9):
        x = jnp.asarray(x_at_cdf(p, cdf))
        y, _ = forward(p, x)
        ours = float(jnp.max(jnp.abs(inverse(p, y)[0] - x)))
        theirs = float(jnp.max(jnp.abs(official(y, p) - x)))
        print(f"{cdf:>12.9g} {float(jnp.max(jnp.abs(x))):>9.2f} {ours:>16.2e} {theirs:>23.2e}")
    y, _ = forward(p, jnp.asarray(x_at_cdf(p, 0.5)))
    for name, fn in (("flowzoo", lambda: inverse(p, y)[0]), ("official-style", lambda: official(y, p))):
        fn().block_until_ready()
        start = time.perf_counter()
        for _ in range(10):
            fn().block_until_ready()
        print(f"{name} inverse: {(time.perf_counter() - start) / 10 * 1e3:.1f} ms per {n} elements")


if __name__ == "__main__":
    main()
