"""Array operations of the Flow++ conditioner networks, written for XLA:CPU's speed.

Each computes the plain function (tests compare them with autodiff of the textbook form);
what differs is the program XLA gets:

* :func:`conv_same`: a 'SAME' convolution with hand-written gradients (the kernel's as one
  plain convolution or kh*kw matmuls, whichever side is wider; the input's a flipped-kernel
  convolution); autodiff's kernel gradient ran several times slower inside ``nn.scan``
  (docs/decisions.md#fpp-conv-same, #fpp-kernel-gradient).  With bfloat16 operands on a CPU
  the kernel gradient, and where the widths suit (``_forward_as_products``) the forward and
  input gradient, are matrix products, which reach the CPU's bfloat16 units where XLA:CPU's
  bfloat16 convolutions do not (docs/decisions.md#fpp-bf16-conv-products).  The form is
  chosen at trace time from ``jax.default_backend()``, as ``attention_loop="auto"`` is; both
  compute the same values.
* :func:`conv`: ``conv_same``, or for a 1x1 kernel :func:`dense`, a product on (positions,
  channels) rows with hand-written gradients (for bfloat16, products that reach the CPU's
  bfloat16 units; docs/decisions.md#fpp-bf16-dense).
* :func:`add_position`: ``x + pos_emb`` whose pos_emb gradient is a matrix-vector product.
* :func:`concat_elu`: ``elu([x, -x])`` with one expm1 per element and a gradient from its output.

Figures: docs/decisions.md#fpp-zen4-adopted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flowzoo.models import precision


def conv_nhwc(x, kernel):
    """'SAME' stride-1 convolution, (N, H, W, I) x (kh, kw, I, O) -> (N, H, W, O); bfloat16
    operands accumulate (and return) in float32 (``precision.accumulation``)."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        preferred_element_type=precision.accumulation(x.dtype))


def _check_odd(kernel):
    if kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"Flow++ convolutions take odd kernel sizes, got {kernel.shape[:2]}.")


@jax.custom_vjp
def conv_same(x, kernel):
    """``conv_nhwc`` with hand-written gradients: the kernel's by :func:`_kernel_gradient` and
    the input's as a plain forward convolution with the flipped kernel.  Same values as
    autodiff.  Why: inside a while loop (``nn.scan`` over blocks) XLA's CPU backend runs the
    kernel gradient that autodiff emits several times slower than outside one
    (experiments/benchmarks/conv_in_scan.py; docs/decisions.md#fpp-conv-same).
    Being a ``custom_vjp``, it supports reverse mode only: use ``jax.jacrev``, not
    ``jax.jacfwd``, for Jacobians through a Flow++ conditioner.  Odd kernel sizes only (the
    backward pass pads k // 2 on each side; even ones are refused)."""
    _check_odd(kernel)
    return _forward(x, kernel)


def _conv_same_fwd(x, kernel):
    _check_odd(kernel)
    return _forward(x, kernel), (x, kernel)


# bfloat16 convolutions on XLA:CPU.  XLA:CPU (jaxlib 0.10.2) runs a bfloat16 convolution no
# faster than a float32 one, while its bfloat16 matrix products reach the CPU's bfloat16
# units (AMX here).  On one core, 8x32x16 positions: 192 -> 96 channels 8.5 ms as a float32
# or bfloat16 convolution, 2.6-2.8 ms as nine bfloat16 products; 96 -> 192 8.5 against 3.9;
# 294 -> 96 (its 294 padded with zeros to 320) 13.6 against 3.6.  But 96 -> 294 and wider
# outputs ran slower as products, padded to 32s or not (20-25 ms against 14).  Hence the rule
# below (the model's widths are multiples of 32 or the output convolution's); the kernel
# gradient is one product in every case (docs/decisions.md#fpp-bf16-conv-products).
_PRODUCT_CHANNELS = 32


def _bf16_on_cpu(dtype):
    return dtype == jnp.bfloat16 and jax.default_backend() == "cpu"


def _forward_as_products(dtype, kernel_shape):
    """Whether ``conv_same`` computes ``dtype`` operands with a (kh, kw, I, O) kernel as
    matrix products: bfloat16 on a CPU backend, O a multiple of ``_PRODUCT_CHANNELS`` and
    no wider than 2 I (the wider outputs ran slower), I at least ``_PRODUCT_CHANNELS``."""
    kh, kw, c_in, c_out = kernel_shape
    return (_bf16_on_cpu(dtype) and (kh, kw) != (1, 1) and c_out % _PRODUCT_CHANNELS == 0
            and _PRODUCT_CHANNELS <= c_in and c_out <= 2 * c_in)


def _forward(x, kernel):
    """``conv_nhwc``, or (``_forward_as_products``) the same sum as
    :func:`_conv_as_products` with the input channels padded with zeros to a multiple of
    ``_PRODUCT_CHANNELS``."""
    if not _forward_as_products(x.dtype, kernel.shape):
        return conv_nhwc(x, kernel)
    extra = -x.shape[-1] % _PRODUCT_CHANNELS
    if extra:
        x = jnp.pad(x, ((0, 0),) * 3 + ((0, extra),))
        kernel = jnp.pad(kernel, ((0, 0), (0, 0), (0, extra), (0, 0)))
    return _conv_as_products(x, kernel)


def _conv_as_products(x, kernel):
    """``conv_nhwc`` as kh*kw products of x's (positions, I) rows with one tap (I, O) of the
    kernel each, every product shifted into place on the output (padded by k // 2, then
    sliced) and summed: y[h, w] = sum_ab (x @ K[a, b])[h + a - ph, w + b - pw]."""
    kh, kw, c_in, c_out = kernel.shape
    n, h, w, _ = x.shape
    ph, pw = kh // 2, kw // 2
    rows = x.reshape(-1, c_in)
    y = None
    for a in range(kh):
        for b in range(kw):
            tap = jnp.dot(rows, kernel[a, b],
                          preferred_element_type=precision.accumulation(x.dtype))
            tap = jnp.pad(tap.reshape(n, h, w, c_out), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
            tap = tap[:, a:a + h, b:b + w]
            y = tap if y is None else y + tap
    return y


def _kernel_gradient_as_one_product(x, dy, kh, kw):
    """The kernel gradient (kh, kw, I, O) as one matrix product: the kh*kw shifted windows
    of the narrower side, channels first ((kh * kw * C, positions)), against the other side's
    (positions, C') rows.  The form that reaches XLA:CPU's bfloat16 units (the narrow side
    first: each product contracts its left operand's last axis)."""
    h, w = x.shape[1], x.shape[2]
    ph, pw = kh // 2, kw // 2
    shift_x = x.shape[-1] <= dy.shape[-1]
    narrow, wide = (x, dy) if shift_x else (dy, x)
    padded = jnp.transpose(jnp.pad(narrow, ((0, 0), (ph, ph), (pw, pw), (0, 0))), (3, 0, 1, 2))

    def window(a, b):
        i, j = _window_start(a, b, kh, kw, shift_x)
        return padded[:, :, i:i + h, j:j + w]

    cols = jnp.stack([window(a, b) for a in range(kh) for b in range(kw)])
    product = jnp.dot(cols.reshape(kh * kw * narrow.shape[-1], -1),
                      wide.reshape(-1, wide.shape[-1]),
                      preferred_element_type=precision.accumulation(x.dtype))
    product = product.reshape(kh, kw, narrow.shape[-1], wide.shape[-1])
    return product if shift_x else jnp.transpose(product, (0, 1, 3, 2))


def _window_start(a, b, kh, kw, shift_x):
    """Where tap (a, b)'s window starts in the shifted side, padded by k // 2 (odd k) on
    each side: dK[a, b] = sum over positions of x[h + a - ph, w + b - pw] dy[h, w], which is
    padded x from (a, b) against dy, or (the same sum over x's positions) x against dy[h - a
    + ph, w - b + pw], padded dy from (kh - 1 - a, kw - 1 - b)."""
    return (a, b) if shift_x else (kh - 1 - a, kw - 1 - b)


def _kernel_gradient(x, dy, kh, kw):
    """d kernel (kh, kw, I, O) of ``conv_nhwc(x, kernel)``: for bfloat16 on a CPU
    :func:`_kernel_gradient_as_one_product` (its bfloat16 units); otherwise
    :func:`_kernel_gradient_as_conv` when x is the wider side (I > O: the blocks' 3x3 conv,
    2F in, F out), else :func:`_kernel_gradient_as_products`.  On XLA:CPU each form is the
    faster one on its side of that line, by 10-30% at the official shapes in float32
    (docs/decisions.md#fpp-kernel-gradient)."""
    if _bf16_on_cpu(x.dtype):
        return _kernel_gradient_as_one_product(x, dy, kh, kw)
    if x.shape[-1] > dy.shape[-1]:
        return _kernel_gradient_as_conv(x, dy, kh, kw)
    return _kernel_gradient_as_products(x, dy, kh, kw)


def _kernel_gradient_as_conv(x, dy, kh, kw):
    """The kernel gradient as one plain convolution (the form XLA:CPU's convolution
    library runs): dy (N, H, W, O) read as O images (O, H, W, N) with the batch as their
    channels, x (N, H, W, I) as a kernel (H, W, N, I) slid over them with padding k // 2,
    which gives (O, kh, kw, I), flipped spatially.  (Autodiff's own kernel-gradient
    convolution, with the feature axes swapped in its dimension numbers, ran ~90x slower
    inside ``nn.scan``.)"""
    ph, pw = kh // 2, kw // 2
    images = jnp.transpose(dy, (3, 1, 2, 0))
    kernel = jnp.transpose(x, (1, 2, 0, 3))
    out = jax.lax.conv_general_dilated(images, kernel, (1, 1), ((ph, ph), (pw, pw)),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                       preferred_element_type=precision.accumulation(x.dtype))
    # out[o, a, b, i] = sum x[n, h, w, i] dy[n, h + a - ph, w + b - pw, o] = dK[kh-1-a, kw-1-b]
    return jnp.flip(jnp.transpose(out, (1, 2, 3, 0)), (0, 1))


def _kernel_gradient_as_products(x, dy, kh, kw):
    """The kernel gradient as kh*kw matmuls, each of one side against a shifted window of
    the other.  A window is a copy, so the side with fewer channels is the one shifted
    (docs/decisions.md#fpp-conv-same-narrow).  Each product contracts the rows of two
    (positions, channels) matrices: from 4-d operands XLA:CPU transposes both first
    (docs/decisions.md#fpp-zen4-adopted)."""
    h, w = x.shape[1], x.shape[2]
    ph, pw = kh // 2, kw // 2
    pad = ((0, 0), (ph, ph), (pw, pw), (0, 0))
    shift_x = x.shape[-1] <= dy.shape[-1]
    padded = jnp.pad(x if shift_x else dy, pad)

    def operands(a, b):
        i, j = _window_start(a, b, kh, kw, shift_x)
        window = padded[:, i:i + h, j:j + w]
        return (window, dy) if shift_x else (x, window)

    def product(a, b):  # on (positions, channels) rows: no transposed copies (XLA:CPU)
        return jnp.einsum("ri,ro->io", a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]),
                          preferred_element_type=precision.accumulation(x.dtype))

    return jnp.stack([jnp.stack([product(*operands(i, j)) for j in range(kw)])
                      for i in range(kh)])


def _conv_same_bwd(saved, dy):
    """Both gradients from operands in the forward's dtype (float32 accumulation for
    bfloat16 ones), returned in the dtypes of x and the kernel."""
    x, kernel = saved
    kh, kw, _, _ = kernel.shape
    dy = dy.astype(x.dtype)
    d_x = _forward(dy, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))
    return d_x.astype(x.dtype), _kernel_gradient(x, dy, kh, kw).astype(kernel.dtype)


conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)


@jax.custom_vjp
def dense(x, kernel):
    """A 1x1 convolution: (..., I) x (I, O) -> (..., O), one product on (positions, I) rows,
    float32-accumulated for bfloat16 operands.  Gradients by :func:`conv_same`'s convention:
    both from operands in the forward's dtype (the output gradient rounded to it), so that
    bfloat16 ones reach the CPU's bfloat16 units; autodiff would run both gradient products
    in float32 (the float32 output gradient against the upcast operand).  Reverse mode only
    (docs/decisions.md#fpp-bf16-dense)."""
    y = jnp.dot(x.reshape(-1, x.shape[-1]), kernel,
                preferred_element_type=precision.accumulation(x.dtype))
    return y.reshape(x.shape[:-1] + y.shape[-1:])


def _dense_fwd(x, kernel):
    return dense(x, kernel), (x, kernel)


def _dense_bwd(saved, dy):
    x, kernel = saved
    accumulation = precision.accumulation(x.dtype)
    dy = dy.astype(x.dtype).reshape(-1, dy.shape[-1])
    d_x = jnp.einsum("ro,io->ri", dy, kernel, preferred_element_type=accumulation)
    d_kernel = jnp.dot(_channels_first(x), dy, preferred_element_type=accumulation)
    return d_x.reshape(x.shape).astype(x.dtype), d_kernel.astype(kernel.dtype)


dense.defvjp(_dense_fwd, _dense_bwd)


def _channels_first(x):
    """(..., I) -> (I, positions), the kernel gradient's left operand.  Transposed as a
    moved axis of the N-d array for bfloat16 on a CPU: XLA folds a 2-d transpose into the
    product, which then contracts its left operand's leading axis, a form XLA:CPU computes
    in float32 (one core, 4096 rows, 192 -> 192: 2.7 ms, against 0.9 ms from the copy).  In
    float32 that folded product is the faster one (docs/decisions.md#fpp-zen4-adopted)."""
    if _bf16_on_cpu(x.dtype) and x.ndim > 2:
        return jnp.moveaxis(x, -1, 0).reshape(x.shape[-1], -1)
    return x.reshape(-1, x.shape[-1]).T


def conv(x, kernel):
    """``conv_same`` of (..., H, W, I) ``x``; a 1x1 kernel is a matrix product.  Operands in
    x's dtype; the result is float32 for bfloat16 operands."""
    kernel = kernel.astype(x.dtype)
    if kernel.shape[0] == 1 and kernel.shape[1] == 1:
        # On (positions, C) rows: the kernel gradient is then one product contracting the
        # rows of both operands; from the N-d form XLA:CPU first transposes the output
        # gradient (docs/decisions.md#fpp-zen4-adopted).
        return dense(x, kernel[0, 0])
    lead = x.shape[:-3]
    y = conv_same(x.reshape((-1,) + x.shape[-3:]), kernel)
    return y.reshape(lead + y.shape[-3:])


@jax.custom_vjp
def add_position(x, pos_emb):
    """``x + pos_emb`` in x's dtype: x (..., H, W, F), pos_emb (H, W, F).  The gradient of
    pos_emb, a sum over x's leading axes, is one matrix-vector product with a row of ones
    (float32 accumulation, full precision): XLA:CPU's YNNPACK reduction over a leading axis
    ran ~60x slower than that product (docs/decisions.md#fpp-zen4-adopted)."""
    return x + pos_emb.astype(x.dtype)


def _add_position_fwd(x, pos_emb):
    return add_position(x, pos_emb), pos_emb


def _add_position_bwd(pos_emb, g):
    rows = g.reshape((-1, pos_emb.size))
    ones = jnp.ones((1, rows.shape[0]), g.dtype)
    d_pos = jnp.matmul(ones, rows, precision=jax.lax.Precision.HIGHEST,
                       preferred_element_type=precision.wide(g.dtype))
    return g, d_pos.reshape(pos_emb.shape).astype(pos_emb.dtype)


add_position.defvjp(_add_position_fwd, _add_position_bwd)


@jax.custom_vjp
def concat_elu(x):
    """``jax.nn.elu(concatenate([x, -x], -1))``: (..., C) -> (..., 2C) in x's dtype, the
    conditioners' nonlinearity.  Of x and -x one is positive (its ELU itself) and the other's
    ELU is ``expm1(-|x|)``, so one expm1 per element serves both halves, where autodiff of
    the textbook form takes one per half, forward and again in a rematerialised block's
    backward pass.  The gradient reads the output: elu'(t) = 1 + elu(t) for t <= 0, and
    the non-positive half of the output is min(y+, y-) (docs/decisions.md#fpp-concat-elu).
    Equal values (the sign of a zero aside).  Reverse mode only, like :func:`conv_same` in
    the same networks."""
    e = jnp.expm1(-jnp.abs(x))
    return jnp.concatenate([jnp.where(x > 0, x, e), jnp.where(x < 0, -x, e)], axis=-1)


def _concat_elu_fwd(x):
    y = concat_elu(x)
    return y, y


def _concat_elu_bwd(y, g):
    y_pos, y_neg = jnp.split(y, 2, axis=-1)  # y_pos > 0 where x > 0, y_neg > 0 where x < 0
    g_pos, g_neg = jnp.split(g, 2, axis=-1)
    slope = 1 + jnp.minimum(y_pos, y_neg)  # exp(-|x|), as autodiff of expm1 computes it
    return (jnp.where(y_pos > 0, g_pos, g_pos * slope)
            - jnp.where(y_neg > 0, g_neg, g_neg * slope),)


concat_elu.defvjp(_concat_elu_fwd, _concat_elu_bwd)
