"""flowzoo._threefry: the written-out Threefry hash gives jax.random.bits' words."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import _threefry


def test_hash_matches_the_published_threefry_2x32_test_vectors():
    """Random123's known answers for Threefry-2x32 with 20 rounds."""
    cases = [((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
             ((0xFFFFFFFF,) * 2, (0xFFFFFFFF,) * 2, (0x1CB996FC, 0xBB002BE7)),
             ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0))]
    for key, counter, want in cases:
        words = jnp.asarray(key, jnp.uint32)
        got = _threefry.threefry_2x32(words, *(jnp.asarray([c], jnp.uint32) for c in counter))
        assert [int(g[0]) for g in got] == list(want)


@pytest.mark.parametrize("n", [1, 7, 1000, 36_865])
def test_bits_are_jax_random_bits_for_raw_and_typed_keys(n):
    for key in (jax.random.PRNGKey(0), jax.random.fold_in(jax.random.PRNGKey(3), 11),
                jax.random.key(12345)):
        want = jax.random.bits(key, (n,), jnp.uint32)
        np.testing.assert_array_equal(jax.jit(_threefry.bits, static_argnums=1)(key, n), want)
    keys = jax.random.split(jax.random.PRNGKey(5), 3)  # vmapped over keys, as keep_masks is
    np.testing.assert_array_equal(jax.vmap(lambda k: _threefry.bits(k, n))(keys),
                                  jax.vmap(lambda k: jax.random.bits(k, (n,), jnp.uint32))(keys))


def test_bits_compile_without_a_loop_where_jax_random_bits_loops_on_cpu():
    """The point of the module: the hash is straight-line code, one fusion, not JAX's CPU
    lowering of five iterations in a while loop."""
    def loops(fn):
        hlo = jax.jit(fn).lower(jax.random.PRNGKey(0)).compile().as_text()
        return sum(" while(" in line for line in hlo.splitlines())

    assert loops(lambda k: _threefry.bits(k, 4096)) == 0
    if jax.default_backend() == "cpu":
        assert loops(lambda k: jax.random.bits(k, (4096,), jnp.uint32)) > 0


def test_other_key_implementations_and_settings_fall_back_to_jax_random_bits():
    rbg = jax.random.key(4, impl="rbg")
    np.testing.assert_array_equal(_threefry.bits(rbg, 100),
                                  jax.random.bits(rbg, (100,), jnp.uint32))
    key = jax.random.PRNGKey(9)
    with jax.threefry_partitionable(False):
        np.testing.assert_array_equal(_threefry.bits(key, 100),
                                      jax.random.bits(key, (100,), jnp.uint32))
