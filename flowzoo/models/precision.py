"""Mixed precision for the models' networks: ``config.model.compute_dtype``.

The policy (docs/decisions.md, mixed precision):

* ``"float32"`` (the default): every network computes in its input's dtype, float32 in a
  model; the exact program of a model built before the option existed.
* ``"bfloat16"``: the conditioner and decoder networks take bfloat16 activations; every
  matrix product and convolution multiplies bfloat16 operands and accumulates in float32
  (``preferred_element_type``), then adds its float32 bias; LayerNorm statistics and the
  attention softmax are float32; parameters stay float32 (cast where used, so gradients,
  the optimizer and EMA see float32) and each network returns float32 from its last
  layer's float32 accumulator.  What the likelihood's accuracy rests on stays float32: the
  bijectors (log-dets, mixture CDF and its bisection, logit/sigmoid, actnorm, 1x1
  convolutions), priors and base densities, the loss.

* ``"bfloat16_products"`` (Flow++ only): activations stay float32; the operands of the
  conditioners' convolutions (3x3 and 1x1) are narrowed to bfloat16, accumulating in
  float32, and so are the gradients through them (rounded to bfloat16 before their
  products).  The attention's forward pass computes in float32; its looped (CPU) backward
  pass multiplies bfloat16 operands in the three products over positions
  (docs/decisions.md#fpp-attention-bf16-backward).  The CPU layout: XLA:CPU computes
  bfloat16 elementwise work through float32 with a conversion each way, which costs the
  ``"bfloat16"`` policy more than its products gain, while bfloat16 matrix products reach
  the CPU's bfloat16 units (``ops.conv_same``, ``ops.dense``;
  docs/decisions.md#fpp-bf16-conv-products).  It narrows a subset of what ``"bfloat16"``
  narrows: not the activations, nor the attention's q, k, v.  Its data-dependent init, like
  ``"bfloat16"``'s, takes its statistics from the bfloat16 products, so init values differ
  from float32's.

In VLAE the encoder, the decoder and the likelihood's network are narrowed; its priors and
posterior flows (MADE, PixelCNN AF/IAF) stay float32 like the other bijectors.

The option changes the computed function, not the parameters: a model trained in
bfloat16 evaluates, encodes and decodes in float32 by setting the option back.  Exact
round trips want float32: a flow's inverse gives each conditioner its input with float32
error, and in a large network some of those inputs (or activations) then round to the
neighbouring bfloat16 value, so z -> x is no longer exact to float32 precision (the figures:
experiments/benchmarks/flowpp.py ``recon_error`` with ``--compute_dtype``).

A network takes ``dtype``: None (follow the input) or the narrow dtype; the layers inside
follow their input's dtype and ask :func:`accumulation` for the products' result type.
"""

from __future__ import annotations

import jax.numpy as jnp

from flowzoo.errors import ConfigError

COMPUTE_DTYPES = ("float32", "bfloat16", "bfloat16_products")


def check(compute_dtype: str) -> None:
    if compute_dtype not in COMPUTE_DTYPES:
        raise ConfigError(f"config.model.compute_dtype must be one of {COMPUTE_DTYPES}, got "
                          f"{compute_dtype!r} ('float32' is the default; 'bfloat16' is "
                          f"mixed precision; 'bfloat16_products', Flow++ only, narrows only "
                          f"the operands of the convolutions).")


def network_dtype(compute_dtype: str):
    """The ``dtype`` a network's activations get for ``config.model.compute_dtype``: None
    for ``"float32"`` and ``"bfloat16_products"`` (no casts of activations: the networks
    follow their float32 input), bfloat16 for ``"bfloat16"``."""
    check(compute_dtype)
    return jnp.bfloat16 if compute_dtype == "bfloat16" else None


def operand_dtype(compute_dtype: str):
    """The dtype the Flow++ networks' convolutions multiply in: None (their input's) for
    ``"float32"``, bfloat16 otherwise (for ``"bfloat16"`` the input is bfloat16 already)."""
    check(compute_dtype)
    return None if compute_dtype == "float32" else jnp.bfloat16


def accumulation(dtype):
    """``preferred_element_type`` of a product of ``dtype`` operands: float32 when ``dtype``
    is a float narrower than float32, else None (the operands' own type)."""
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4:
        return jnp.float32
    return None


def cast(x, dtype):
    """``x`` in ``dtype``; unchanged when ``dtype`` or ``x`` is None."""
    return x if dtype is None or x is None else x.astype(dtype)


def wide(dtype):
    """The dtype parameters and statistics are kept in for ``dtype`` activations: at least
    float32 (float64 stays float64)."""
    return jnp.promote_types(dtype, jnp.float32)
