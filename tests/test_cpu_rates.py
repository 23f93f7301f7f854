"""experiments/benchmarks/cpu_rates.py: the shifted-window convolution it times is the
convolution, and the script prints a rate for every product and dtype."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np

from experiments.benchmarks import cpu_rates


def test_shifted_window_conv_equals_the_convolution():
    rng = np.random.default_rng(21)
    x = jnp.asarray(rng.normal(size=(2, 5, 4, 6)), jnp.float64)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 6, 3)), jnp.float64)
    np.testing.assert_allclose(cpu_rates.conv3x3_shifted(x, kernel),
                               cpu_rates.conv3x3(x, kernel), rtol=1e-12, atol=1e-12)


def test_prints_a_rate_for_every_product_and_dtype(capsys):
    cpu_rates.main(["--batch=1", "--height=4", "--width=4", "--filters=8",
                    "--matmul_size=16", "--repeats=2"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    products = {"matmul", "pointwise", "row_product_narrow_first", "row_product_wide_first",
                "conv3x3", "conv3x3_shifted", "conv_same_train"}
    assert {(line["dtype"], line["product"]) for line in lines} == {
        (dtype, product) for dtype in ("float32", "bfloat16") for product in products}
    assert all(line["gflop_s"] > 0 and line["best_ms"] <= line["median_ms"] for line in lines)
    assert all(line["machine"]["cores"] >= 1 for line in lines)
