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
  stay in cache.  The output and log-normaliser carry the checkpoint name
  :data:`ATTENTION_OUTPUT`, so a rematerialised block that saves that name does not run the
  attention forward again in its backward pass.  Reverse mode only (``jax.grad``/``jacrev``).
  The loop runs over the examples within each of ``G = gcd(N, jax.device_count())`` groups,
  G examples per iteration, so a batch sharded over the devices stays sharded (a loop over a
  sharded axis would make XLA gather the whole batch on every device).

``"auto"`` (the model default) picks ``"examples"`` on CPU backends and ``"off"`` elsewhere.

Precision: q, k, v in bfloat16 (``config.model.compute_dtype``) give float32 logits
(float32 accumulation), a float32 softmax and log-normaliser, bfloat16 weights in the
weighted sum of v (float32 accumulation), and a bfloat16 output; the backward pass the same.
Figures: docs/decisions.md#fpp-attention-loop; ``experiments/benchmarks/attention_layout.py``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from flowzoo.models import precision

ATTENTION_LOOPS = ("auto", "examples", "off")
ATTENTION_OUTPUT = "flowpp_attention_output"


def _product(spec, a, b):
    """``einsum(spec, a, b)`` with a and b in a's dtype, accumulated in float32 when that
    is narrower (the result is then float32)."""
    return jnp.einsum(spec, a, b.astype(a.dtype),
                      preferred_element_type=precision.accumulation(a.dtype))


def attend(q, k, v):
    """Softmax attention.  q, k, v: (..., L, heads, d) -> (..., L, heads, d)."""
    s = _product("...qhd,...khd->...hqk", q * (q.shape[-1] ** -0.5), k)
    # Softmax does not depend on the shift, so the max needs no gradient.
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


def _example_forward(q, k, v):
    """One example, q pre-scaled.  (L, H, d) each -> out (L, H, d) in v's dtype, lse
    (H, L, 1) at least float32."""
    s = _product("qhd,khd->hqk", q, k)
    m = jnp.max(s, axis=-1, keepdims=True)
    e = jnp.exp(s - m)
    total = jnp.sum(e, axis=-1, keepdims=True)
    out = _product("hqk,khd->qhd", e.astype(v.dtype), v) / jnp.swapaxes(total, 0, 1)
    return out.astype(v.dtype), m + jnp.log(total)


def _example_backward(q, k, v, out, lse, d_out):
    """Gradients of q, k, v in their dtypes; softmax weights and their gradient in (at
    least) float32, narrowed only as operands of the products."""
    p = jnp.exp(_product("qhd,khd->hqk", q, k) - lse)  # the softmax weights again
    d_out = d_out.astype(v.dtype)
    d_v = _product("hqk,qhd->khd", p.astype(v.dtype), d_out)
    d_p = _product("qhd,khd->hqk", d_out, v)
    row = jnp.swapaxes(jnp.sum(d_out.astype(p.dtype) * out, axis=-1), 0, 1)[..., None]
    d_s = (p * (d_p - row)).astype(q.dtype)  # (H, L, L)
    return (_product("hqk,khd->qhd", d_s, k).astype(q.dtype),
            _product("hqk,qhd->khd", d_s, q).astype(k.dtype), d_v.astype(v.dtype))


def _per_step(fn, args):
    """One loop step: one example (L, H, d), or G of them (G, L, H, d) vmapped.  The unit
    group axis is dropped rather than vmapped: XLA:CPU ran those dots ~20% slower."""
    return fn(*args) if args[0].ndim == 3 else jax.vmap(fn)(*args)


def _looped_forward(q, k, v):
    out, lse = jax.lax.map(lambda qkv: _per_step(_example_forward, qkv), (q, k, v))
    out, lse = checkpoint_name(out, ATTENTION_OUTPUT), checkpoint_name(lse, ATTENTION_OUTPUT)
    return out, (q, k, v, out, lse)


def _looped_backward(residuals, d_out):
    return jax.lax.map(lambda args: _per_step(_example_backward, args), residuals + (d_out,))


@jax.custom_vjp
def _looped(q, k, v):
    """Attention of pre-scaled q looped over axis 0: (T, [G,] L, H, d) each -> same."""
    return _looped_forward(q, k, v)[0]


_looped.defvjp(_looped_forward, _looped_backward)


def self_attention(q, k, v, loop: str = "auto"):
    """:func:`attend` over a batch, optionally looped over the examples (module docstring).

    q, k, v: (*batch, L, heads, d) -> (*batch, L, heads, d).
    """
    if not loops_over_examples(loop):
        return attend(q, k, v)
    n = math.prod(q.shape[:-3])
    groups = math.gcd(n, jax.device_count())

    def to_loop(t):  # (*batch, ...) -> (n // G, [G,] ...); example g * n / G + i at [i, g]
        t = jnp.swapaxes(t.reshape((groups, n // groups) + t.shape[-3:]), 0, 1)
        return t[:, 0] if groups == 1 else t

    out = _looped(to_loop(q * (q.shape[-1] ** -0.5)), to_loop(k), to_loop(v))
    if groups == 1:
        return out.reshape(q.shape)
    return jnp.swapaxes(out, 0, 1).reshape(q.shape)
