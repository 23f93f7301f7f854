"""Weight-normalised Dense and Conv layers with data-dependent init (Salimans & Kingma 2016).

    w = exp(log_g) * v / ||v||          (norm over all axes but the output axis)
    y = x @ w + b                       (Dense)   or   conv(x, w) + b   (Conv, NHWC / HWIO)

Parameters ``{'v', 'log_g', 'b'}``.  The gain is stored as a log and used as ``exp(log_g)``
both when it is initialised and in the forward pass (the official IAF TF code initialises
``g = log(s) / 3`` but applies ``exp(g)``; we keep one parameterisation throughout).

Data-dependent init (``init(key, x) -> (params, y)``): ``v ~ N(0, 0.05)`` (masked if a
mask is given), ``t = x @ (v / ||v||)``; with m, s2 the per-output-unit mean and variance of
``t`` over the batch (and positions), ``exp(log_g) = init_scale / sqrt(s2 + 1e-10)`` and
``b = -m * exp(log_g)``.  Then ``y`` has zero mean and standard deviation ``init_scale`` per
unit on the init batch; ``y`` is returned so callers chain DDI through a network.
Default ``init_scale`` is 0.1, as the IAF code's convolutions.

Masks (MADE, masked PixelCNN) multiply ``v`` before the norm: masked weights are exactly
zero in every forward pass and get zero gradient.  Layers follow the input dtype.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

INIT_STD = 0.05
DEFAULT_INIT_SCALE = 0.1


def _weight(params, mask, reduce_axes):
    v = params["v"]
    if mask is not None:
        v = v * jnp.asarray(mask, v.dtype)
    return jnp.exp(params["log_g"]) * _unit(v, reduce_axes)


def _unit(v, reduce_axes):
    """v / ||v||, and 0 for an all-zero column (MADE outputs that see no input) with a
    finite gradient: a '+ eps' inside the sqrt gives 0/0 in the backward pass there."""
    ssq = jnp.sum(jnp.square(v), axis=reduce_axes, keepdims=True)
    nonzero = ssq > 0
    return jnp.where(nonzero, v, 0.0) / jnp.sqrt(jnp.where(nonzero, ssq, 1.0))


def _ddi(t, v, moment_axes, init_scale):
    mean = jnp.mean(t, axis=moment_axes)
    var = jnp.var(t, axis=moment_axes)
    scale = init_scale / jnp.sqrt(var + 1e-10)
    params = {"v": v, "log_g": jnp.log(scale), "b": -mean * scale}
    return params, (t - mean) * scale


def _float_dtype(x):
    return x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32


@dataclasses.dataclass(frozen=True)
class WNDense:
    """Weight-normalised dense layer on the last axis: (..., I) -> (..., features).

    ``mask``: optional (I, features) 0/1 numpy array (static; compared by identity)."""

    features: int
    init_scale: float = DEFAULT_INIT_SCALE
    mask: Any = dataclasses.field(default=None, compare=False, hash=False)

    def init(self, key, x):
        x = jnp.asarray(x)
        dtype = _float_dtype(x)
        v = INIT_STD * jax.random.normal(key, (x.shape[-1], self.features), dtype)
        if self.mask is not None:
            _check_mask(self.mask, v.shape, "WNDense")
            v = v * jnp.asarray(self.mask, dtype)
        t = x.astype(dtype) @ _unit(v, (0,))
        return _ddi(t, v, tuple(range(t.ndim - 1)), self.init_scale)

    def apply(self, params, x):
        w = _weight(params, self.mask, (0,))
        return x @ w + params["b"]


def conv2d(x, w, stride=1):
    """NHWC x, HWIO w, SAME padding; 1x1 kernels as an einsum (cheaper on CPU)."""
    if w.shape[0] == 1 and w.shape[1] == 1 and stride == 1:
        return jnp.einsum("...c,cd->...d", x, w[0, 0])
    return jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


@dataclasses.dataclass(frozen=True)
class WNConv:
    """Weight-normalised 2-D convolution, NHWC (B, H, W, I) -> (B, H', W', features).

    SAME padding; ``stride`` 2 halves H and W (rounding up: 7 -> 4).  ``mask``: optional
    (kh, kw, I, features) 0/1 numpy array applied to ``v`` (masked PixelCNN)."""

    features: int
    kernel: tuple = (3, 3)
    stride: int = 1
    init_scale: float = DEFAULT_INIT_SCALE
    mask: Any = dataclasses.field(default=None, compare=False, hash=False)

    def init(self, key, x):
        x = jnp.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"WNConv expects NHWC input (B, H, W, C), got shape {x.shape}.")
        dtype = _float_dtype(x)
        shape = tuple(self.kernel) + (x.shape[-1], self.features)
        v = INIT_STD * jax.random.normal(key, shape, dtype)
        if self.mask is not None:
            _check_mask(self.mask, shape, "WNConv")
            v = v * jnp.asarray(self.mask, dtype)
        t = conv2d(x.astype(dtype), _unit(v, (0, 1, 2)), self.stride)
        return _ddi(t, v, (0, 1, 2), self.init_scale)

    def apply(self, params, x):
        w = _weight(params, self.mask, (0, 1, 2))
        return conv2d(x, w, self.stride) + params["b"]


def _check_mask(mask, shape, name):
    if tuple(np.shape(mask)) != tuple(shape):
        raise ValueError(f"{name}: mask shape {np.shape(mask)} does not match the weight "
                         f"shape {tuple(shape)}.")


def resize_nearest(x, height, width):
    """Nearest-neighbour resize of NHWC ``x`` to (height, width) (decoder upsampling:
    4 -> 7 -> 14 -> 28 for MNIST)."""
    return jax.image.resize(x, x.shape[:1] + (height, width) + x.shape[3:], "nearest")
