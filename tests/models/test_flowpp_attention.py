"""Flow++ self-attention: the late-normalised softmax equals textbook attention, and the
per-example loop with its hand-written backward pass (``loop="examples"``) computes the same
values and gradients as the batched form, keeps a device-sharded batch sharded, works under
vmap, and lets a rematerialised block keep its output instead of recomputing it."""

from __future__ import annotations

import json

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from flowzoo.models.flowpp import attention, nets
from tests import jaxprs


def _qkv(lead, length=12, heads=2, depth=3, seed=0):
    rng = np.random.default_rng(seed)
    # Spread-out logits (scale 3) so the max shift in the softmax matters.
    return tuple(jnp.asarray(3.0 * rng.normal(size=lead + (length, heads, depth)), jnp.float64)
                 for _ in range(3))


def _stacked(q, k, v):
    return jnp.stack([q, k, v], axis=-3)  # (*batch, L, 3, heads, d), as self_attention takes


def _textbook(q, k, v):
    logits = jnp.einsum("...qhd,...khd->...hqk", q, k) / np.sqrt(q.shape[-1])
    return jnp.einsum("...hqk,...khd->...qhd", jax.nn.softmax(logits, axis=-1), v)


def test_attend_is_softmax_attention_with_its_gradients():
    q, k, v = _qkv((2,))
    np.testing.assert_allclose(attention.attend(q, k, v), _textbook(q, k, v), rtol=1e-12)
    w = jnp.asarray(np.random.default_rng(1).normal(size=q.shape))
    grads = jax.grad(lambda *a: jnp.sum(w * attention.attend(*a)), argnums=(0, 1, 2))(q, k, v)
    expected = jax.grad(lambda *a: jnp.sum(w * _textbook(*a)), argnums=(0, 1, 2))(q, k, v)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("lead", [(), (4,), (3,), (12,), (16,), (3, 5)])
def test_example_loop_matches_the_batched_attention(lead):
    # 8 test devices: groups of gcd(N, 8) examples, loops of 1, 1, 3, 3, 2 and 15 iterations.
    q, k, v = _qkv(lead, seed=sum(lead))
    w = jnp.asarray(np.random.default_rng(2).normal(size=q.shape))

    def loss(loop):
        return jax.jit(jax.value_and_grad(
            lambda *a: jnp.sum(w * attention.self_attention(_stacked(*a), loop=loop)),
            argnums=(0, 1, 2)))

    jaxpr = jax.make_jaxpr(lambda qkv: attention.self_attention(qkv, loop="examples"))(
        _stacked(q, k, v))
    assert "scan" in jaxpr.pretty_print()
    value, grads = loss("examples")(q, k, v)
    ref_value, ref_grads = loss("off")(q, k, v)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(value, jnp.sum(w * _textbook(q, k, v)), rtol=1e-12)
    for g, e in zip(grads, ref_grads):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


def test_query_tiles_cover_the_rows_within_the_byte_budget(monkeypatch):
    # The official full-resolution couplings: L = 512 in 128-row tiles of 1 MiB, L = 256 whole.
    assert attention.query_tiles(512, 4) == tuple(slice(i, i + 128) for i in range(0, 512, 128))
    assert attention.query_tiles(256, 4) == (slice(0, 256),)
    monkeypatch.setattr(attention, "TILE_BYTES", 4 * 2 * 100 * 20)  # 20 rows -> 16
    tiles = attention.query_tiles(100, 2)
    assert [(t.start, t.stop) for t in tiles] == [(i, min(i + 16, 100)) for i in range(0, 100, 16)]
    monkeypatch.setattr(attention, "TILE_BYTES", 1)  # at least 8 rows a tile
    assert attention.query_tiles(20, 2) == (slice(0, 8), slice(8, 16), slice(16, 20))


@pytest.mark.parametrize("lead", [(3,), (16,)])
def test_query_tiles_give_the_untiled_values_and_gradients(monkeypatch, lead):
    # L = 20 in tiles of 8, 8 and 4 rows where nothing differentiates; a gradient's forward
    # and backward passes take the whole weights.  16 examples on the 8 test devices make
    # groups of 8.
    monkeypatch.setattr(attention, "TILE_BYTES", 4 * 2 * 20 * 8)
    q, k, v = _qkv(lead, length=20, seed=7)
    w = jnp.asarray(np.random.default_rng(8).normal(size=q.shape))

    def loss(loop, qkv):
        return jnp.sum(w * attention.self_attention(qkv, loop=loop))

    grad = jax.value_and_grad(lambda qkv: loss("examples", qkv))
    assert len(_dot_batch_ranks(jax.make_jaxpr(lambda qkv: loss("examples", qkv))(
        _stacked(q, k, v)).jaxpr)) == 3 * 2
    assert len(_dot_batch_ranks(jax.make_jaxpr(grad)(_stacked(q, k, v)).jaxpr)) == 2 + 5
    value = jax.jit(lambda qkv: loss("examples", qkv))(_stacked(q, k, v))
    grad_value, grads = jax.jit(grad)(_stacked(q, k, v))
    ref_value, ref_grads = jax.value_and_grad(lambda qkv: loss("off", qkv))(_stacked(q, k, v))
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad_value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grads, ref_grads, rtol=1e-10, atol=1e-12)


def test_self_attention_names_the_stacked_layout_it_takes():
    q, k, v = _qkv((2,))
    with pytest.raises(ValueError, match=r"\(\*batch, L, 3, heads, d\)"):
        attention.self_attention(q, loop="examples")


def test_auto_loops_on_cpu_only_and_bad_values_name_the_config_key():
    assert attention.loops_over_examples("auto") == (jax.default_backend() == "cpu")
    assert attention.loops_over_examples("examples") and not attention.loops_over_examples("off")
    with pytest.raises(ValueError, match="config.model.attention_loop"):
        attention.loops_over_examples("per_example")


def test_example_loop_keeps_a_sharded_batch_sharded():
    mesh = Mesh(np.array(jax.devices()), ("data",))
    q, k, v = _qkv((2 * jax.device_count(),))  # 2 examples per device: a 2-step loop
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    fn = jax.jit(lambda qkv: attention.self_attention(qkv, loop="examples"),
                 in_shardings=sharding, out_shardings=sharding)
    qkv = _stacked(q, k, v)
    hlo = fn.lower(qkv).compile().as_text()
    assert "while" in hlo and "all-gather" not in hlo and "all-to-all" not in hlo
    out = fn(jax.device_put(qkv, sharding))
    np.testing.assert_allclose(out, attention.attend(q, k, v), rtol=1e-12)


def test_example_loop_under_vmap():
    q, k, v = _qkv((2, 3))
    out = jax.vmap(lambda qkv: attention.self_attention(qkv, loop="examples"))(
        _stacked(q, k, v))
    np.testing.assert_allclose(out, attention.attend(q, k, v), rtol=1e-12)


def test_gated_attention_is_the_same_module_with_either_layout():
    x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 4, 4, 8)), jnp.float64)
    pos = jnp.asarray(np.random.default_rng(5).normal(size=(4, 4, 8)), jnp.float64)
    looped, batched = (nets.GatedAttention(num_heads=2, loop=loop) for loop in ("examples", "off"))
    params = looped.init(jax.random.PRNGKey(0), x, pos)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(
        jnp.shape, batched.init(jax.random.PRNGKey(0), x, pos))
    np.testing.assert_allclose(looped.apply(params, x, pos), batched.apply(params, x, pos),
                               rtol=1e-12)


def test_rematerialised_block_keeps_the_attention_output(capsys):
    q, k, v = _qkv((2,))

    def block(q):
        return jnp.sum(jnp.sin(attention.self_attention(_stacked(q, k, v), loop="examples")))

    jax.ad_checkpoint.print_saved_residuals(jax.checkpoint(block, policy=nets.REMAT_POLICY), q)
    saved = capsys.readouterr().out
    # The output (T, G, L, H, d) and the log-normaliser (T, G, H, L, 1), nothing (L, L)-sized.
    assert saved.count(f"named '{attention.ATTENTION_OUTPUT}'") == 2, saved
    assert "f64[1,2,12,2,3]" in saved and "f64[1,2,2,12,1]" in saved, saved  # T=1, G=2


def test_model_config_rejects_an_unknown_attention_loop():
    from flowzoo.models import flowpp
    with pytest.raises(ValueError, match="config.model.attention_loop"):
        flowpp.make_flow({"attention_loop": "sometimes"}, (8, 8, 1), 256)


def test_products_benchmark_times_every_layout_and_marks_the_ones_attention_uses():
    import inspect

    from experiments.benchmarks import attention_products
    rows = list(attention_products.time_cases(length=8, heads=2, depth=3, rounds=1, calls=1))
    assert len(rows) == sum(map(len, attention_products.LAYOUTS.values()))
    assert all(r["best_ms"] > 0 for r in rows)
    used = [r for r in rows if r["used"]]
    assert sorted(r["product"] for r in used) == sorted(attention_products.LAYOUTS)
    source = inspect.getsource(attention)
    assert all(f'"{r["einsum"]}"' in source for r in used), used


def _dot_batch_ranks(jaxpr):
    """The number of batch dimensions of every dot_general in a jaxpr and its sub-jaxprs."""
    ranks = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            ranks.append(len(eqn.params["dimension_numbers"][1][0]))
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            ranks += _dot_batch_ranks(sub)
    return ranks


def test_a_group_of_examples_multiplies_as_merged_heads():
    # 16 examples on the 8 test devices: a loop of 2 steps of G = 8 examples each.  The group
    # is merged into the head axis of every product, forward and backward (one batch axis);
    # a vmapped group gave each device dots with a unit batch axis, which XLA:CPU ran slower.
    assert jax.device_count() == 8
    q, k, v = _qkv((16,))
    closed = jax.make_jaxpr(jax.grad(
        lambda qkv: jnp.sum(jnp.sin(attention.self_attention(qkv, loop="examples")))))(
        _stacked(q, k, v))
    ranks = _dot_batch_ranks(closed.jaxpr)
    assert len(ranks) == 7 and set(ranks) == {1}, ranks  # 2 forward + 5 backward products


def test_layout_benchmark_times_each_tile_budget(capsys):
    from experiments.benchmarks import attention_layout
    attention_layout.main(["--batch_sizes", "1", "--blocks", "1", "--repeats", "1",
                           "--tile_bytes", "524288,8388608"])
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [(r["loop"], r["query_tiles"]) for r in lines] == [
        ("off", None), ("examples", 8), ("examples", 1)]
    assert all(r["grad_s"] > 0 and r["forward_s"] > 0 for r in lines)
    assert all(r["max_rel_diff_vs_off"] < 1e-4 for r in lines)
    assert attention.TILE_BYTES == 1 << 20  # restored


def test_narrow_backward_multiplies_bfloat16_over_positions_only():
    """``backward_dtype=bfloat16`` (``"bfloat16_products"``): float32 q, k, v; the forward
    pass is unchanged, and of the backward pass's five products the three that contract
    the positions (weights x d_out, d_logits x k, d_logits x q) take bfloat16 operands,
    accumulating in float32; the gradient is the float32 one to bfloat16 rounding."""
    q, k, v = (x.astype(jnp.float32) for x in _qkv((4,), length=16, seed=9))
    w = jnp.asarray(np.random.default_rng(10).normal(size=q.shape), jnp.float32)
    qkv = _stacked(q, k, v)

    def loss(narrow):
        return lambda qkv: jnp.sum(w * attention.self_attention(
            qkv, loop="examples", backward_dtype=narrow))

    value, grads = jax.jit(jax.value_and_grad(loss(jnp.bfloat16)))(qkv)
    ref_value, ref_grads = jax.jit(jax.value_and_grad(loss(None)))(qkv)
    assert grads.dtype == jnp.float32
    np.testing.assert_array_equal(value, ref_value)
    scale = float(jnp.max(jnp.abs(ref_grads)))
    error = float(jnp.max(jnp.abs(grads - ref_grads))) / scale
    assert 1e-5 < error < 2e-2, error  # rounded (not float32), to bfloat16's resolution
    dtypes = jaxprs.dot_operand_dtypes(jax.make_jaxpr(jax.grad(loss(jnp.bfloat16)))(qkv).jaxpr)
    assert sorted(dtypes) == sorted([("float32", "float32")] * 4
                                    + [("bfloat16", "bfloat16")] * 3), dtypes
