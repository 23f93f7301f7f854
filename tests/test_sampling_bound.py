"""experiments/benchmarks/sampling_bound.py: the counts multiply loop bodies by their trip
counts and sort products and exponentials by kind, and the script prints the time per image
at the measured rates."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.benchmarks import sampling_bound
from flowzoo.models.flowpp import attention, ops


@pytest.mark.parametrize("tile_rows", [64, 16])
def test_count_multiplies_loop_bodies_and_sorts_the_kinds(monkeypatch, tile_rows):
    # Untiled, and in 16-row query tiles (the softmax exponentials are then (4, 16, 64):
    # 2 examples on the 8 test devices make one group of 2, merged into 4 heads).
    monkeypatch.setattr(attention, "TILE_BYTES", 4 * 2 * 64 * tile_rows)
    rng = np.random.default_rng(3)
    qkv = jnp.asarray(rng.normal(size=(2, 64, 3, 2, 4)), jnp.float32)  # 2 examples, L = 64
    x = jnp.asarray(rng.normal(size=(1, 4, 4, 6)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 6, 5)), jnp.float32)
    a, b = jnp.asarray(rng.normal(size=(7, 6))), jnp.asarray(rng.normal(size=(6, 5)))

    def body(carry, _):
        out = attention.self_attention(qkv, loop="examples")  # the looped, grouped form
        return carry + jnp.sum(out) + jnp.sum(ops.conv_nhwc(x, kernel)), jnp.exp(a @ b)

    closed = jax.make_jaxpr(lambda: jax.lax.scan(body, 0.0, None, length=3))()
    counts = sampling_bound.count(closed.jaxpr)
    per_example = 2 * (2 * 2 * 64 * 64 * 4)  # logits and weights x values, 2 heads of d = 4
    assert counts["attention_product_flop"] == 3 * 2 * per_example
    assert counts["softmax_exp"] == 3 * 2 * (2 * 64 * 64)
    assert counts["conv3x3_flop"] == 3 * 2 * (4 * 4 * 5) * 6 * 9
    assert counts["matmul_flop"] == 3 * 2 * (7 * 5) * 6
    assert counts["other_exp"] == 3 * 7 * 5


def test_bound_adds_the_kinds_at_their_rates():
    per_image = {"conv3x3_flop": 2e9, "matmul_flop": 1e9, "attention_product_flop": 1e9,
                 "softmax_exp": 1e8, "other_exp": 2e8}
    rate = {"conv3x3": 2e11, "matmul": 1e11, "attention_product": 5e10, "exp": 1e10}
    result = sampling_bound.bound(per_image, rate)
    assert result["total_ms_per_image"] == 10 + 10 + 20 + 10 + 20
    assert result["img_s"] == round(1 / 0.07, 2)


def test_prints_counts_rates_and_the_bound(capsys):
    sampling_bound.main(["--config", "experiments/configs/flowpp_cifar10.py:smoke",
                         "--batch_size", "2", "--repeats", "1"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(line["rates"]) == {"conv3x3", "matmul", "attention_product", "exp"}
    assert all(v > 0 for r in line["rates"].values() for v in r.values())
    assert line["per_image"]["conv3x3_flop"] > 0 and line["per_image"]["softmax_exp"] > 0
    assert line["img_s"] > 0 and line["machine"]["cores"] >= 1
    assert all(r["best"] == max(r["whole"], r["split"]) for r in line["rates"].values())


def test_count_takes_the_costliest_branch_and_refuses_a_while_loop():
    a = jnp.ones((4, 3))

    def branches(flag):
        return jax.lax.cond(flag, lambda: jnp.sum(a @ a.T @ a), lambda: jnp.sum(a @ a.T))

    counts = sampling_bound.count(jax.make_jaxpr(branches)(True).jaxpr)
    assert counts["matmul_flop"] == 2 * 4 * 4 * 3 + 2 * 4 * 3 * 4  # the two-product branch
    looped = jax.make_jaxpr(lambda n: jax.lax.while_loop(lambda x: x < n, lambda x: x + 1, 0))
    with pytest.raises(ValueError, match="no static trip count"):
        sampling_bound.count(looped(3).jaxpr)
