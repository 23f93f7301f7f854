"""Flow++ conditioning networks (Flax linen), written against the official architecture.

Pieces:
  * :class:`DDConv`: a convolution with plain weights (no weight norm) initialised as in
    Flow++: ``V ~ N(0, 0.05)``, then a data-dependent rescaling on the init batch,
    ``W = V * s``, ``b = -mean * s``, ``s = init_scale / sqrt(var + 1e-8)`` (the official
    epsilon), where mean and var are the per-channel moments of ``conv(x, V)``.  The bias is computed for the very
    weight that is stored (one draw of V per layer).
  * :class:`GatedConv`: ``h = conv3x3(concat_elu(x)) [+ conv1x1(concat_elu(context))]``,
    ``h = conv_k(dropout(concat_elu(h)))`` to 2F channels (init scale 0.1),
    ``out = x + a * sigmoid(b)``.  ``k = 1`` in the coupling networks, ``k = 3`` in the
    dequantizer's context network (this is what reproduces the official parameter counts).
  * :class:`GatedAttention`: 4-head self-attention over all positions (no mask) of
    ``x + pos_emb``, dropout on its output, then a gated residual through a 1x1 conv.
  * :class:`GatedNIN`: the official no-attention ablation (``gated_nin``): ``x + pos_emb``,
    1x1 conv to 3F, max over each channel's three outputs, dropout, 1x1 conv to 2F, gated
    residual; the same parameter count as attention.
  * :class:`GatedBlock`: gated conv -> LayerNorm -> attention -> LayerNorm.
  * :class:`CouplingNet`: the coupling conditioner (3x3 conv -> ``blocks`` GatedBlocks,
    optionally scanned and rematerialised -> 3x3 conv with init scale 0.1).
  * :class:`ContextNet`: the dequantizer's context network.

Dropout is explicit: modules take ``dropout_key`` (None: deterministic), one key or one key
per example (``keep_masks``); every network folds in a static index, and a coupling
network's blocks their numbers (the context network's blocks take channel slices of one
draw), so no two dropout sites share a mask.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from flowzoo import _threefry
from flowzoo.model import fold_in_keys, key_batch_shape, map_keys
from flowzoo.models import precision
from flowzoo.models.flowpp import ops
from flowzoo.models.flowpp.ops import concat_elu
from flowzoo.models.flowpp.attention import ATTENTION_OUTPUT, self_attention

_INIT_STD = 0.05
_INIT_EPS = 1e-8  # the official conv2d / dense data-dependent init: rsqrt(var + 1e-8)


DROPOUT_MASK = "flowpp_dropout_mask"
GATED_CONV_HIDDEN = "flowpp_gated_conv_hidden"
# Rematerialised blocks keep their dropout masks (one byte per element) rather than draw
# them again in the backward pass: every random-bit generator site is several LLVM modules
# of threefry rounds in a CPU compile (docs/decisions.md#fpp-dropout-masks).  They also keep
# the looped attention's output and log-normaliser (attention.py), so the backward pass does
# not run the attention forward again, and the gated conv's hidden layer (the output of its
# 3x3 conv, F channels: the block's most expensive op, two thirds of what the backward pass
# would otherwise recompute; docs/decisions.md#fpp-remat-hidden).
REMAT_POLICY = jax.checkpoint_policies.save_only_these_names(
    DROPOUT_MASK, ATTENTION_OUTPUT, GATED_CONV_HIDDEN)


def keep_masks(key, rate, shape):
    """Boolean keep-masks of ``shape`` (True with probability 1 - rate, to 2^-16), or None
    when dropout is off.  One draw serves all dropout sites of a block (split on the channel
    axis), so a block body holds one random-bit generator, not one per site.

    ``key``: one key for the whole mask, or an array of keys, one per example (``shape``
    then starts with the keys' batch shape): each example's mask is then drawn from its own
    key, so it does not depend on which other examples share the batch or the device, and
    jit, sharded jit and pmap draw the same masks (the model passes ``example_keys``)."""
    if key is None or rate <= 0.0:
        return None
    batch = key_batch_shape(key)
    if tuple(shape[:len(batch)]) != batch:
        raise ValueError(f"keep_masks: {math.prod(batch)} keys of batch shape {batch} for "
                         f"masks of shape {tuple(shape)}; the mask shape must start with the "
                         f"keys' batch shape (one key per example).")
    n = math.prod(shape[len(batch):])

    # Each 32-bit draw decides two elements (its low and high 16 bits, compared with the
    # keep probability rounded to a multiple of 2^-16, i.e. within 8e-6): half the threefry
    # work of one uniform float per element (docs/decisions.md#fpp-zen4-adopted).  Drawn
    # flat, then reshaped: 1-D counter arithmetic instead of one iota per axis; element j of
    # a key's mask depends on its draw j // 2 only, so a batch-sharded mask is computed
    # shard by shard.  The words are jax.random.bits', with the hash written out for XLA:CPU
    # (flowzoo/_threefry.py).
    def draw(k):
        bits = _threefry.bits(k, -(-n // 2))
        return jnp.stack([bits & 0xFFFF, bits >> 16], axis=-1).reshape(-1)[:n]

    keep = (map_keys(draw, key) < jnp.uint32(round((1.0 - rate) * 65536))).reshape(shape)
    return checkpoint_name(keep, DROPOUT_MASK)


def dropout(x, rate, keep):
    """Inverted dropout with a given keep-mask; identity when ``keep`` is None."""
    if keep is None:
        return x
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def _split_mask(keep, sizes):
    if keep is None:
        return (None,) * len(sizes)
    return tuple(jnp.split(keep, list(itertools.accumulate(sizes))[:-1], axis=-1))


def _fold(key, i):
    return None if key is None else fold_in_keys(key, i)


def _gate(h):
    a, b = jnp.split(h, 2, axis=-1)
    return a * jax.nn.sigmoid(b)


def _unit(v):
    """``v`` scaled to unit norm over all axes but the output axis (weight norm); the
    epsilon is ``tf.nn.l2_normalize``'s."""
    squares = jnp.sum(jnp.square(v), axis=tuple(range(v.ndim - 1)))
    return v * jax.lax.rsqrt(jnp.maximum(squares, 1e-12))


class DDConv(nn.Module):
    """Convolution (``kernel_size`` 1 is a per-position dense layer) with Flow++'s
    data-dependent init.  Parameters: ``kernel`` (k, k, C_in, features), ``bias``, and with
    ``weight_norm`` (the official ImageNet models) ``scale`` (features,): the weight is then
    ``scale * kernel / |kernel|`` and the init sets ``scale``, not ``kernel``.

    Computes in x's dtype; parameters are at least float32 (``precision.wide``), the
    product accumulates in float32, the bias is added in float32, and the result is cast to
    ``out_dtype`` (None: x's dtype).  ``operand_dtype`` (None: x's dtype) narrows x and the
    kernel as the product's operands only (``"bfloat16_products"``, ``precision``)."""

    features: int
    kernel_size: int = 3
    init_scale: float = 1.0
    weight_norm: bool = False
    out_dtype: Any = None
    operand_dtype: Any = None

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        shape = (k, k, x.shape[-1], self.features)
        out_dtype = self.out_dtype or x.dtype
        x = precision.cast(x, self.operand_dtype)
        kernel0 = bias0 = scale0 = None
        if self.is_initializing():
            v = _INIT_STD * jax.random.normal(self.make_rng("params"), shape,
                                              precision.wide(x.dtype))
            y = ops.conv(x, _unit(v) if self.weight_norm else v)
            axes = tuple(range(y.ndim - 1))
            scale0 = self.init_scale / jnp.sqrt(jnp.var(y, axis=axes) + _INIT_EPS)
            kernel0 = v if self.weight_norm else v * scale0
            bias0 = -jnp.mean(y, axis=axes) * scale0
        kernel = self.param("kernel", lambda _: kernel0)
        if self.weight_norm:
            kernel = self.param("scale", lambda _: scale0) * _unit(kernel)
        bias = self.param("bias", lambda _: bias0)
        y = ops.conv(x, kernel)
        return (y + bias.astype(y.dtype)).astype(out_dtype)


class GatedConv(nn.Module):
    features: int
    second_kernel_size: int = 1
    dropout_rate: float = 0.0
    weight_norm: bool = False
    operand_dtype: Any = None

    @nn.compact
    def __call__(self, x, context=None, keep=None):
        """``keep``: None, or the dropout keep-mask of shape (..., 2 * features)."""
        conv = functools.partial(DDConv, weight_norm=self.weight_norm,
                                 operand_dtype=self.operand_dtype)
        h = conv(self.features, 3, name="conv_in")(concat_elu(x))
        if context is not None:
            h = h + conv(self.features, 1, name="context_proj")(concat_elu(context))
        h = checkpoint_name(h, GATED_CONV_HIDDEN)
        h = dropout(concat_elu(h), self.dropout_rate, keep)
        h = conv(2 * self.features, self.second_kernel_size, init_scale=0.1,
                 name="conv_out")(h)
        return x + _gate(h)


class GatedAttention(nn.Module):
    """``loop``: how the attention is laid out (``attention.self_attention``); same function."""

    num_heads: int = 4
    dropout_rate: float = 0.0
    loop: str = "auto"
    weight_norm: bool = False
    operand_dtype: Any = None

    @nn.compact
    def __call__(self, x, pos_emb, keep=None):
        *lead, h, w, f = x.shape
        if f % self.num_heads:
            raise ValueError(f"GatedAttention: {f} filters are not divisible by "
                             f"{self.num_heads} heads.")
        d = f // self.num_heads
        conv = functools.partial(DDConv, weight_norm=self.weight_norm,
                                 operand_dtype=self.operand_dtype)
        qkv = conv(3 * f, 1, name="qkv")(ops.add_position(x, pos_emb))
        qkv = qkv.reshape(tuple(lead) + (h * w, 3, self.num_heads, d))
        out = self_attention(qkv, self.loop, backward_dtype=self.operand_dtype)
        out = out.reshape(x.shape)
        out = dropout(out, self.dropout_rate, keep)
        return x + _gate(conv(2 * f, 1, init_scale=0.1, name="gate")(out))


class GatedNIN(nn.Module):
    """The official no-attention ablation (``gated_nin``): ``c = x + pos_emb``, a 1x1 conv
    to 3F read as (F, 3) per position, the max over those three, dropout, a 1x1 conv to 2F
    (init scale 0.1) and the gated residual.  Its 1x1 convs have the shapes of the
    attention's, hence the same parameter count."""

    dropout_rate: float = 0.0
    weight_norm: bool = False
    operand_dtype: Any = None

    @nn.compact
    def __call__(self, x, pos_emb, keep=None):
        f = x.shape[-1]
        conv = functools.partial(DDConv, weight_norm=self.weight_norm,
                                 operand_dtype=self.operand_dtype)
        h = conv(3 * f, 1, name="proj")(ops.add_position(x, pos_emb))
        h = jnp.max(h.reshape(h.shape[:-1] + (f, 3)), axis=-1)
        h = dropout(h, self.dropout_rate, keep)
        return x + _gate(conv(2 * f, 1, init_scale=0.1, name="gate")(h))


MIXERS = ("attention", "gated_nin", "none")


def block_mask_widths(filters, mixer):
    """Channels of one block's dropout masks: (gated conv[, attention or gated NIN])."""
    return (2 * filters,) if mixer == "none" else (2 * filters, filters)


class GatedBlock(nn.Module):
    """One conditioner block: gated conv -> LayerNorm [-> mixer -> LayerNorm], the mixer
    being ``"attention"``, ``"gated_nin"`` (the official no-attention ablation) or
    ``"none"`` (the official ImageNet dequantizer's couplings).  ``block`` (an int, or a
    traced int under ``scan``) is folded into the dropout key; one mask draw (widths
    ``block_mask_widths``) serves every dropout site of the block."""

    filters: int
    mixer: str = "attention"
    num_heads: int = 4
    dropout_rate: float = 0.0
    attention_loop: str = "auto"
    weight_norm: bool = False
    operand_dtype: Any = None

    @nn.compact
    def __call__(self, h, pos_emb, context, dropout_key, block):
        widths = block_mask_widths(self.filters, self.mixer)
        keep = keep_masks(_fold(dropout_key, block), self.dropout_rate,
                          h.shape[:-1] + (sum(widths),))
        keep_conv, *keep_mix = _split_mask(keep, widths)
        h = GatedConv(self.filters, 1, self.dropout_rate, self.weight_norm,
                      operand_dtype=self.operand_dtype, name="conv")(
            h, context, keep_conv)
        h = nn.LayerNorm(epsilon=1e-5, dtype=h.dtype, name="norm_conv")(h)
        if self.mixer == "none":
            return h
        if self.mixer == "attention":
            h = GatedAttention(self.num_heads, self.dropout_rate, self.attention_loop,
                               self.weight_norm, operand_dtype=self.operand_dtype,
                               name="attn")(
                h, pos_emb, *keep_mix)
        else:
            h = GatedNIN(self.dropout_rate, self.weight_norm,
                         operand_dtype=self.operand_dtype, name="nin")(h, pos_emb, *keep_mix)
        return nn.LayerNorm(epsilon=1e-5, dtype=h.dtype, name="norm_attn")(h)


class _ScanBody(GatedBlock):
    """``GatedBlock`` as a scan body: (carry h, block index) -> (h, None)."""

    def __call__(self, h, pos_emb, context, dropout_key, block):
        return super().__call__(h, pos_emb, context, dropout_key, block), None


class CouplingNet(nn.Module):
    """Conditioner of one coupling: x1 (..., H, W, C1) -> (..., H, W, out_features).

    ``index`` is a static number unique to the coupling; it is folded into the dropout key.
    ``scan_blocks``: the blocks run under ``nn.scan`` (parameters stacked on a leading axis
    of length ``blocks``; one block body to compile instead of ``blocks``).  ``remat``: each
    block's activations are recomputed in the backward pass instead of stored.  Neither
    changes the function or the parameter count; nor does ``attention_loop``
    (``attention.self_attention``).  ``dtype``: None, or the narrow dtype the network
    computes in (``precision``); the result is in x's dtype either way.  ``operand_dtype``:
    None, or the dtype its convolutions multiply in (``"bfloat16_products"``).
    """

    out_features: int
    filters: int = 96
    blocks: int = 10
    mixer: str = "attention"
    num_heads: int = 4
    dropout_rate: float = 0.0
    index: int = 0
    scan_blocks: bool = False
    remat: bool = False
    attention_loop: str = "auto"
    weight_norm: bool = False
    elu_before_output: bool = False
    dtype: Any = None
    operand_dtype: Any = None

    @nn.compact
    def __call__(self, x, context=None, dropout_key=None):
        key = _fold(dropout_key, self.index)
        conv = functools.partial(DDConv, weight_norm=self.weight_norm,
                                 operand_dtype=self.operand_dtype)
        out_dtype = x.dtype
        x, context = precision.cast(x, self.dtype), precision.cast(context, self.dtype)
        h = conv(self.filters, 3, name="proj_in")(x)
        # Every official coupling has one, even those whose blocks have no mixer to use it
        # (ImageNet's dequantizer): kept for the official parameter count and layout.
        pos_emb = self.param("pos_emb", nn.initializers.normal(0.01),
                             x.shape[-3:-1] + (self.filters,), jnp.float32)
        block_args = dict(filters=self.filters, mixer=self.mixer,
                          num_heads=self.num_heads, dropout_rate=self.dropout_rate,
                          attention_loop=self.attention_loop, weight_norm=self.weight_norm,
                          operand_dtype=self.operand_dtype)
        if self.scan_blocks:
            body = nn.remat(_ScanBody, policy=REMAT_POLICY) if self.remat else _ScanBody
            scanned = nn.scan(body, variable_axes={"params": 0}, split_rngs={"params": True},
                              in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, 0),
                              length=self.blocks)
            h, _ = scanned(name="blocks", **block_args)(h, pos_emb, context, key,
                                                         jnp.arange(self.blocks))
        else:
            block = nn.remat(GatedBlock, policy=REMAT_POLICY) if self.remat else GatedBlock
            for b in range(self.blocks):
                h = block(name=f"block_{b}", **block_args)(h, pos_emb, context, key, b)
        if self.elu_before_output:  # the official ImageNet couplings
            h = concat_elu(h)
        return conv(self.out_features, 3, init_scale=0.1, out_dtype=out_dtype,
                    name="proj_out")(h)


class ContextNet(nn.Module):
    """Dequantizer context: split halves of ``x / num_levels - 0.5`` concatenated on the
    channel axis -> 3x3 conv to ``filters`` -> ``blocks`` gated convs (3x3, dropout), each
    followed (official ImageNet models) by a LayerNorm when ``norm``, and by attention over
    ``x + pos_emb`` and another LayerNorm when ``attention``.  ``dtype`` and
    ``operand_dtype`` as :class:`CouplingNet`'s; the result is in the input's dtype."""

    filters: int = 32
    blocks: int = 3
    dropout_rate: float = 0.0
    index: int = 1000
    norm: bool = False
    attention: bool = False
    num_heads: int = 4
    attention_loop: str = "auto"
    weight_norm: bool = False
    dtype: Any = None
    operand_dtype: Any = None

    @nn.compact
    def __call__(self, halves, dropout_key=None):
        key = _fold(dropout_key, self.index)
        h = DDConv(self.filters, 3, weight_norm=self.weight_norm,
                   operand_dtype=self.operand_dtype, name="proj_in")(
            precision.cast(halves, self.dtype))
        pos_emb = None
        if self.attention:
            pos_emb = self.param("pos_emb", nn.initializers.normal(0.01),
                                 h.shape[-3:-1] + (self.filters,), jnp.float32)
        # One draw for the masks of all its blocks (no remat here; small at 32 filters),
        # block b's on channels [b * width, (b + 1) * width).
        widths = block_mask_widths(self.filters, "attention" if self.attention else "none")
        masks = keep_masks(key, self.dropout_rate,
                           h.shape[:-1] + (self.blocks * sum(widths),))
        masks = _split_mask(masks, (sum(widths),) * self.blocks)
        for b in range(self.blocks):
            keep_conv, *keep_attn = _split_mask(masks[b], widths)
            h = GatedConv(self.filters, 3, self.dropout_rate, self.weight_norm,
                          operand_dtype=self.operand_dtype, name=f"conv_{b}")(
                h, None, keep_conv)
            if self.norm:
                h = nn.LayerNorm(epsilon=1e-5, dtype=h.dtype, name=f"norm_{b}")(h)
            if self.attention:
                h = GatedAttention(self.num_heads, self.dropout_rate, self.attention_loop,
                                   self.weight_norm, operand_dtype=self.operand_dtype,
                                   name=f"attn_{b}")(h, pos_emb, *keep_attn)
                h = nn.LayerNorm(epsilon=1e-5, dtype=h.dtype, name=f"norm_attn_{b}")(h)
        return h.astype(halves.dtype)
