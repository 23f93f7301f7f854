"""Weight-normalised Flax layers with data-dependent init (Salimans & Kingma 2016): the one
weight-norm layer family of VLAE's networks (the IAF and PixelCNN++ codes both use it).

    w = exp(log_g) * v / ||v||          (norm over all axes but the output axis)
    y = x @ w + b  (WNDense)   or   conv(x, w) + b  (WNConv, FootprintConv; NHWC / HWIO)

Parameters ``{'v', 'log_g', 'b'}``.  The gain is stored as a log and used as ``exp(log_g)``
both when it is initialised and in the forward pass (the official IAF TF code initialises
``g = log(s) / 3`` but applies ``exp(g)``; we keep one parameterisation throughout).

Data-dependent init (in ``Module.init``, on the batch it is given): ``v ~ N(0, 0.05)``
(masked if a mask is given), ``t = op(x, v / ||v||)``; with m, s2 the per-output-unit mean
and variance of ``t`` over every other axis, ``exp(log_g) = init_scale / sqrt(s2 + 1e-10)``
and ``b = -m * exp(log_g)``, so the layer's output has zero mean and standard deviation
``init_scale`` per unit on the init batch, and the next layer initialises on it.  A layer
called again after its first call (shared weights) uses the parameters it already has.
Default ``init_scale`` is 0.1, as the IAF code's convolutions.

Masks (MADE, masked PixelCNN) are a call argument (a static 0/1 numpy array shaped like
``v``) and multiply ``v`` before the norm: masked weights are exactly zero in every forward
pass and get zero gradient.  Layers compute in the input's float dtype.  Parameters and the
weight-norm arithmetic stay at least float32 (``precision.wide``); with bfloat16 input
(``config.model.compute_dtype``) the weight is narrowed only as an operand, the product
accumulates in float32, and the float32 bias is added before the result is narrowed (to
``out_dtype``, default the input's dtype).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowzoo.models import precision

INIT_STD = 0.05
DEFAULT_INIT_SCALE = 0.1


def _unit(v, reduce_axes):
    """v / ||v||, and 0 for an all-zero column (MADE outputs that see no input) with a
    finite gradient: a '+ eps' inside the sqrt gives 0/0 in the backward pass there."""
    ssq = jnp.sum(jnp.square(v), axis=reduce_axes, keepdims=True)
    nonzero = ssq > 0
    return jnp.where(nonzero, v, 0.0) / jnp.sqrt(jnp.where(nonzero, ssq, 1.0))


def weight_normed(module: nn.Module, x, shape, op: Callable, init_scale: float, mask=None,
                  out_dtype=None):
    """``op(x, w) + b`` with weight-normalised ``w`` of ``shape`` (output axis last),
    declaring ``v``, ``log_g`` and ``b`` on ``module`` (DDI on its first call in init).
    ``op`` multiplies operands of x's dtype, accumulating in float32 when that is narrower
    (``precision.accumulation``); the result is in ``out_dtype`` (None: x's dtype)."""
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
    x = x.astype(dtype)
    wide = precision.wide(dtype)
    reduce_axes = tuple(range(len(shape) - 1))
    if mask is not None and tuple(np.shape(mask)) != tuple(shape):
        raise ValueError(f"{type(module).__name__}: mask shape {np.shape(mask)} does not "
                         f"match the weight shape {tuple(shape)}.")
    mask = None if mask is None else jnp.asarray(mask, wide)
    v0 = log_g0 = b0 = None
    if module.is_initializing() and not module.has_variable("params", "v"):
        v0 = INIT_STD * jax.random.normal(module.make_rng("params"), shape, wide)
        if mask is not None:
            v0 = v0 * mask
        t = op(x, _unit(v0, reduce_axes).astype(dtype))
        moment_axes = tuple(range(t.ndim - 1))
        scale = init_scale / jnp.sqrt(jnp.var(t, axis=moment_axes) + 1e-10)
        log_g0, b0 = jnp.log(scale), -jnp.mean(t, axis=moment_axes) * scale
    v = module.param("v", lambda _: v0)
    log_g = module.param("log_g", lambda _: log_g0)
    b = module.param("b", lambda _: b0)
    v, log_g, b = (p.astype(wide) for p in (v, log_g, b))
    if mask is not None:
        v = v * mask
    w = jnp.exp(log_g) * _unit(v, reduce_axes)
    return (op(x, w.astype(dtype)) + b).astype(out_dtype or dtype)


class WNDense(nn.Module):
    """Weight-normalised dense layer on the last axis: (..., I) -> (..., features)."""

    features: int
    init_scale: float = DEFAULT_INIT_SCALE
    out_dtype: Any = None

    @nn.compact
    def __call__(self, x, mask=None):
        """``mask``: optional (I, features) 0/1 numpy array."""
        return weight_normed(self, x, (x.shape[-1], self.features), _matmul,
                             self.init_scale, mask, self.out_dtype)


def _matmul(x, w):
    return jnp.matmul(x, w, preferred_element_type=precision.accumulation(x.dtype))


def conv2d(x, w, stride=1):
    """(..., H, W, I) x HWIO w, SAME padding (any leading axes); 1x1 kernels as an einsum
    (cheaper on CPU).  bfloat16 operands accumulate (and return) in float32."""
    acc = precision.accumulation(x.dtype)
    if w.shape[0] == 1 and w.shape[1] == 1 and stride == 1:
        return jnp.einsum("...c,cd->...d", x, w[0, 0], preferred_element_type=acc)
    lead = x.shape[:-3]
    y = jax.lax.conv_general_dilated(x.reshape((-1,) + x.shape[-3:]), w, (stride, stride),
                                     "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     preferred_element_type=acc)
    return y.reshape(lead + y.shape[1:])


class WNConv(nn.Module):
    """Weight-normalised 2-D convolution, (..., H, W, I) -> (..., H', W', features).

    SAME padding; ``stride`` 2 halves H and W (rounding up: 7 -> 4)."""

    features: int
    kernel: tuple = (3, 3)
    stride: int = 1
    init_scale: float = DEFAULT_INIT_SCALE
    out_dtype: Any = None

    @nn.compact
    def __call__(self, x, mask=None):
        """``mask``: optional (kh, kw, I, features) 0/1 numpy array (masked PixelCNN)."""
        if x.ndim < 3:
            raise ValueError(f"WNConv expects (..., H, W, C) input, got shape {x.shape}.")
        shape = tuple(self.kernel) + (x.shape[-1], self.features)
        return weight_normed(self, x, shape, lambda a, w: conv2d(a, w, self.stride),
                             self.init_scale, mask, self.out_dtype)


def footprint_conv(x, w, dy, dx):
    """out[i, j] = sum_ab w[a, b] x[i + dy0 + a, j + dx0 + b], zero outside the image: the
    kernel covers exactly the offsets dy0..dy1, dx0..dx1 (explicit padding + VALID)."""
    height, width = x.shape[1], x.shape[2]
    lo_h, hi_h = max(-dy[0], 0), max(dy[1], 0)
    lo_w, hi_w = max(-dx[0], 0), max(dx[1], 0)
    x = jnp.pad(x, ((0, 0), (lo_h, hi_h), (lo_w, hi_w), (0, 0)))
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     preferred_element_type=precision.accumulation(x.dtype))
    oy, ox = lo_h + dy[0], lo_w + dx[0]  # y[p] starts at input row p - lo_h
    return y[:, oy:oy + height, ox:ox + width]


class FootprintConv(nn.Module):
    """A weight-normalised NHWC convolution whose kernel covers exactly the offsets dy in
    [dy0, dy1], dx in [dx0, dx1] of the output position (``footprint_conv``)."""

    features: int
    dy: tuple
    dx: tuple
    init_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        shape = (self.dy[1] - self.dy[0] + 1, self.dx[1] - self.dx[0] + 1, x.shape[-1],
                 self.features)
        return weight_normed(self, x, shape,
                             lambda a, w: footprint_conv(a, w, self.dy, self.dx),
                             self.init_scale)


class ResNetBlock(nn.Module):
    """An IAF-style ResNet block (ELU, residual branch scaled by ``residual_scale``), the block
    of both VLAE backbones; ``mode`` 'res' | 'down' | 'up' (``size``: output H, W for 'up'):

        res(x)  = x + r * conv3x3(elu(conv3x3(elu(x))))
        down(x) = conv3x3_stride2(x) + r * conv3x3(elu(conv3x3_stride2(elu(x))))
        up(x)   = conv3x3(u) + r * conv3x3(elu(conv3x3(elu(u)))),  u = resize_nearest(x)

    Parameters ``conv1``, ``conv2`` (init scale 0.1) and, where the shape changes, ``skip``
    (init scale 1.0)."""

    features: int
    mode: str = "res"
    size: tuple = ()
    residual_scale: float = 0.1

    @nn.compact
    def __call__(self, x):
        stride = 2 if self.mode == "down" else 1
        if self.mode == "up":
            x = resize_nearest(x, *self.size)
        h = WNConv(self.features, (3, 3), stride, name="conv1")(jax.nn.elu(x))
        h = WNConv(self.features, (3, 3), name="conv2")(jax.nn.elu(h))
        if self.mode != "res":
            x = WNConv(self.features, (3, 3), stride, init_scale=1.0, name="skip")(x)
        return x + self.residual_scale * h


def resize_nearest(x, height, width):
    """Nearest-neighbour resize of NHWC ``x`` to (height, width) (decoder upsampling:
    4 -> 7 -> 14 -> 28 for MNIST)."""
    return jax.image.resize(x, x.shape[:1] + (height, width) + x.shape[3:], "nearest")
