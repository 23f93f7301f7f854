"""Multi-head dot-product self-attention for the Flow++ conditioner.

``softmax(q k^T / sqrt(d)) v`` per head over all positions (no mask), computed as
``exp(s - max s) v / sum exp(s - max s)`` with ``s = (q / sqrt(d)) k^T``: the normalisation
divides the (L, d) output rather than the (L, L) weights.

Two layouts of the same function (``loop``):

* ``"off"``: :func:`attend` on the whole batch, differentiated by autodiff.  For accelerators.
* ``"examples"``: a loop over the examples with a hand-written backward pass (the one of
  flash attention: the forward keeps only the output and the log-normaliser per query, and
  the backward recomputes the weights from them).  Why: on a CPU the (N, heads, L, L) logits
  of a batch outgrow the cache (64 MiB for the official CIFAR-10 couplings at N = 16,
  L = 512) and every softmax pass streams them through memory, while one example's 4 MiB
  stay in cache.  Where nothing differentiates (sampling, evaluation) the forward pass goes
  further and takes them a tile of query rows at a time (:func:`query_tiles`, at most 1 MiB
  a tile), within a core's L2.  The output and
  log-normaliser carry the checkpoint name :data:`ATTENTION_OUTPUT`, so a rematerialised
  block that saves that name does not run the attention forward again in its backward pass.
  Reverse mode only (``jax.grad``/``jacrev``).
  The loop runs over the examples within each of ``G = gcd(N, jax.device_count())`` groups,
  G examples per iteration, so a batch sharded over the devices stays sharded (a loop over a
  sharded axis would make XLA gather the whole batch on every device).

``"auto"`` (the model default) picks ``"examples"`` on CPU backends and ``"off"`` elsewhere.

Precision: q, k, v in bfloat16 (``config.model.compute_dtype``) give float32 logits
(float32 accumulation), a float32 softmax and log-normaliser, bfloat16 weights in the
weighted sum of v (float32 accumulation), and a bfloat16 output; the backward pass the same.
With float32 q, k, v, ``backward_dtype=bfloat16`` (``"bfloat16_products"``) narrows only
the looped backward pass's three products over positions (:func:`_step_backward`).
Figures: docs/decisions.md#fpp-attention-loop, #fpp-attention-layouts, #fpp-attention-tiles;
``experiments/benchmarks/attention_layout.py``, ``attention_products.py``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from flowzoo.models import precision

ATTENTION_LOOPS = ("auto", "examples", "off")
ATTENTION_OUTPUT = "flowpp_attention_output"
# The name scope of the softmax exponentials (in profiles, and for the sampling benchmark's
# counts, experiments/benchmarks/sampling_bound.py).
SOFTMAX_SCOPE = "flowpp_attention_softmax"


def _product(spec, a, b):
    """``einsum(spec, a, b)`` with a and b in a's dtype, accumulated in float32 when that
    is narrower (the result is then float32)."""
    return jnp.einsum(spec, a, b.astype(a.dtype),
                      preferred_element_type=precision.accumulation(a.dtype))


def attend(q, k, v):
    """Softmax attention.  q, k, v: (..., L, heads, d) -> (..., L, heads, d)."""
    s = _product("...qhd,...khd->...hqk", q * (q.shape[-1] ** -0.5), k)
    # Softmax does not depend on the shift, so the max needs no gradient.
    with jax.named_scope(SOFTMAX_SCOPE):
        e = jnp.exp(s - jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True)))
    out = _product("...hqk,...khd->...qhd", e.astype(v.dtype), v)
    return (out / jnp.swapaxes(jnp.sum(e, axis=-1), -1, -2)[..., None]).astype(v.dtype)


def check_loop(loop: str) -> None:
    if loop not in ATTENTION_LOOPS:
        raise ValueError(f"config.model.attention_loop must be one of {ATTENTION_LOOPS}, "
                         f"got {loop!r}.")


def loops_over_examples(loop: str) -> bool:
    """Resolves ``loop`` ("auto", "examples" or "off") for the default backend."""
    check_loop(loop)
    if loop == "auto":
        return jax.default_backend() == "cpu"
    return loop == "examples"


def _scale(qkv):
    return qkv.shape[-1] ** -0.5  # 1 / sqrt(d), applied to the queries


def _split(qkv):
    """([G,] L, 3, H, d) -> q scaled by d^-1/2, k, v, each ([G,] L, H, d)."""
    return qkv[..., 0, :, :] * _scale(qkv), qkv[..., 1, :, :], qkv[..., 2, :, :]


# The products' operand and result layouts: XLA:CPU's YNNPACK products ran the same
# arithmetic up to 5x slower in some layouts than in others for these shapes (L = 512, H = 4,
# d = 24), e.g. weights x values into (L, H, d) 1.4x slower than into (H, L, d), transposed
# weights x values into (H, L, d) 4x slower than into (L, H, d).  The layouts below are among
# the fast ones (experiments/benchmarks/attention_products.py; docs/decisions.md#fpp-attention-
# layouts).  The transposes they need touch (L, H, d) arrays only, never (H, L, L) ones.
#
# A loop step holds one example (L, H, d) or a group of G (G, L, H, d), one per device of a
# sharded batch.  A group's examples are merged into the products' head axis (G * H heads)
# rather than vmapped: each device then multiplies (H, L, L) blocks, where a vmapped group
# gave it dots with a unit batch axis that XLA:CPU ran slower (forward and backward of 16
# examples on 2 devices 48 -> 45 ms; docs/decisions.md#fpp-attention-groups).
def _heads_first(t):
    """(L, H, d) -> (H, L, d); (G, L, H, d) -> (G * H, L, d)."""
    if t.ndim == 3:
        return jnp.swapaxes(t, 0, 1)
    g, length, h, d = t.shape
    return jnp.swapaxes(t, 1, 2).reshape(g * h, length, d)


def _from_heads_first(t, like):
    """Inverse of :func:`_heads_first`, back to ``like``'s layout."""
    if like.ndim == 3:
        return jnp.swapaxes(t, 0, 1)
    return jnp.swapaxes(t.reshape((like.shape[0], -1) + t.shape[1:]), 1, 2)


def _rows(t):
    """(L, H, d) as it is; (G, L, H, d) -> (L, G * H, d)."""
    if t.ndim == 3:
        return t
    g, length, h, d = t.shape
    return jnp.swapaxes(t, 0, 1).reshape(length, g * h, d)


def _from_rows(t, like):
    """Inverse of :func:`_rows`, back to ``like``'s layout."""
    if like.ndim == 3:
        return t
    return jnp.swapaxes(t.reshape((t.shape[0], like.shape[0], -1, t.shape[-1])), 0, 1)


def _columns(t):
    """(L, H, d) -> (H, d, L); (G, L, H, d) -> (G * H, d, L): the right operand of the
    logits, sum_d a[h, q, d] b[h, d, k] -> (heads, L, L)."""
    return jnp.swapaxes(_heads_first(t), 1, 2)


# Query tiles: a step that nothing differentiates (sampling, evaluation; a gradient's
# forward pass keeps the whole weights, tiled it measured no faster) computes its
# (heads, L, L) weights a tile of query rows at a time, so
# that each tile's float32 weights (heads, rows, L) stay within TILE_BYTES and the softmax
# passes over them (max, exp, sum, the weights x values product) run from a core's L2 cache
# rather than memory.  On the Xeon AMX VM (2 MiB L2 a core) 128-row tiles of L = 512 ran
# one core's forward of 8 examples in 12.0-12.5 ms against 13.8-14.9 untiled, while tiling
# L = 256 (1 MiB untiled) was slower (3.2 against 2.6 ms); docs/decisions.md#fpp-attention-tiles.
TILE_BYTES = 1 << 20


def query_tiles(length: int, heads: int) -> tuple[slice, ...]:
    """Row slices of at most TILE_BYTES of float32 weights (heads, rows, length) each, in
    multiples of 8 rows; one slice (no tiling) where all the weights fit.  ``heads`` is one
    example's: a loop step's group of G examples is meant to be sharded one example per
    device, so each device holds one example's weights (unsharded, a tile holds G times
    the budget).  The budget counts 4 bytes an element (float64 weights take twice it)."""
    rows = TILE_BYTES // (4 * heads * length)
    if rows >= length:
        return (slice(0, length),)
    rows = max(8, rows - rows % 8)
    return tuple(slice(i, min(i + rows, length)) for i in range(0, length, rows))


def _step_forward(qkv, tiled):
    """One loop step.  qkv ([G,] L, 3, H, d) -> out ([G,] L, H, d) in qkv's dtype and the
    log-normaliser ([G,] H, L, 1), at least float32.  ``tiled``: in :func:`query_tiles`
    (where nothing differentiates: sampling, evaluation), else the whole weights (the
    forward pass of a gradient, where tiles measured no faster)."""
    q, k, v = _split(qkv)
    q_heads, k_columns, v_rows = _heads_first(q), _columns(k), _rows(v)
    outs, lses = [], []
    length = q.shape[-3]
    for rows in query_tiles(length, q.shape[-2]) if tiled else (slice(0, length),):
        s = _product("hqd,hdk->hqk", q_heads[:, rows], k_columns)
        m = jnp.max(s, axis=-1, keepdims=True)
        with jax.named_scope(SOFTMAX_SCOPE):
            e = jnp.exp(s - m)
        total = jnp.sum(e, axis=-1, keepdims=True)
        outs.append(_product("hqk,khd->hqd", e.astype(v.dtype), v_rows) / total)
        lses.append(m + jnp.log(total))
    out, lse = jnp.concatenate(outs, axis=1), jnp.concatenate(lses, axis=1)
    if v.ndim == 4:
        lse = lse.reshape((v.shape[0], -1) + lse.shape[1:])  # (G * H, ...) -> (G, H, ...)
    return _from_heads_first(out, v).astype(v.dtype), lse


def _step_backward(qkv, out, lse, d_out, narrow=None):
    """The gradient of qkv ([G,] L, 3, H, d) in its dtype; softmax weights and their
    gradient in (at least) float32, narrowed only as operands of the products.  Whole
    weights, not query tiles: tiled, the train step was no faster
    (docs/decisions.md#fpp-attention-tiles).  ``narrow`` (None or bfloat16): the operand
    dtype of the three products that contract the L positions (the weights or their
    gradient against d_out, k or q), float32-accumulated; the two over d keep qkv's dtype
    (docs/decisions.md#fpp-attention-bf16-backward)."""
    q, k, v = _split(qkv)
    s = _product("hqd,hdk->hqk", _heads_first(q), _columns(k))
    with jax.named_scope(SOFTMAX_SCOPE):
        p = jnp.exp(s - lse.reshape((-1,) + lse.shape[-2:]))  # the weights again
    d_out = d_out.astype(v.dtype)
    over_positions = narrow or qkv.dtype  # the three products over the L positions
    d_v = _from_rows(_product("hqk,qhd->khd", p.astype(over_positions), _rows(d_out)), v)
    d_p = _product("hqd,hdk->hqk", _heads_first(d_out), _columns(v))
    row = _heads_first(jnp.sum(d_out.astype(p.dtype) * out, axis=-1, keepdims=True))
    d_s = (p * (d_p - row)).astype(over_positions)  # (heads, L, L)
    d_q = _from_heads_first(_product("hqk,khd->hqd", d_s, _rows(k)), k) * _scale(qkv)
    d_k = _from_rows(_product("hqk,qhd->khd", d_s, _rows(q)), k)
    return jnp.stack([d_q, d_k, d_v], axis=-3).astype(qkv.dtype)


def _looped_forward(narrow, qkv, tiled=False):
    del narrow  # the forward pass computes in qkv's dtype
    out, lse = jax.lax.map(lambda step: _step_forward(step, tiled), qkv)
    out, lse = checkpoint_name(out, ATTENTION_OUTPUT), checkpoint_name(lse, ATTENTION_OUTPUT)
    return out, (qkv, out, lse)


def _looped_backward(narrow, residuals, d_out):
    return (jax.lax.map(lambda args: _step_backward(*args, narrow=narrow),
                        residuals + (d_out,)),)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _looped(narrow, qkv):
    """Attention looped over axis 0: qkv (T, [G,] L, 3, H, d) -> (T, [G,] L, H, d)."""
    return _looped_forward(narrow, qkv, tiled=True)[0]


_looped.defvjp(_looped_forward, _looped_backward)


def self_attention(qkv, loop: str = "auto", backward_dtype=None):
    """:func:`attend` over a batch, optionally looped over the examples (module docstring).

    qkv: (*batch, L, 3, heads, d), the queries, keys and values stacked on axis -3 (as a
    1x1 convolution to 3 * heads * d channels lays them out) -> (*batch, L, heads, d).
    Taken stacked so that the looped backward pass writes one stacked gradient rather than
    three that autodiff would pad and add.  ``backward_dtype`` (None, or bfloat16 for
    ``"bfloat16_products"``): in the looped form, the operand dtype of the backward pass's
    products over positions (:func:`_step_backward`); the batched form ignores it.
    """
    if qkv.ndim < 4 or qkv.shape[-3] != 3:
        raise ValueError(f"self_attention takes qkv of shape (*batch, L, 3, heads, d), got "
                         f"{qkv.shape}.")
    if not loops_over_examples(loop):
        return attend(qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :])
    n = math.prod(qkv.shape[:-4])
    groups = math.gcd(n, jax.device_count())
    # (*batch, ...) -> (n // G, [G,] ...); example g * n / G + i at [i, g]
    looped = jnp.swapaxes(qkv.reshape((groups, n // groups) + qkv.shape[-4:]), 0, 1)
    narrow = None if backward_dtype is None else jnp.dtype(backward_dtype)
    out = _looped(narrow, looped[:, 0] if groups == 1 else looped)
    if groups > 1:
        out = jnp.swapaxes(out, 0, 1)
    return out.reshape(qkv.shape[:-4] + out.shape[-3:])
