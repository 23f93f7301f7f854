"""Discretized mixture of logistics: the PixelCNN++ / VLAE pixel likelihood.

Data are integer levels ``x`` in ``0 .. num_bins-1`` (int or float dtype, but
integer-valued: data scaled to [0, 1] or [-1, 1] must be converted back to
levels first).  Any other value (out of range, or between levels) has
probability zero: ``log_prob`` is -inf there.  Level ``x`` is centred at
``c = 2 x / (num_bins-1) - 1`` in [-1, 1] and owns the bin ``[c - h, c + h]``
with ``h = 1 / (num_bins-1)``; the lowest and highest bins extend to -inf and
+inf so the masses sum to one::

    log P(x | k) = log_sigmoid((c + h - mu_k) / s_k)                x = 0
                 = log_sigmoid(-(c - h - mu_k) / s_k)               x = num_bins-1
                 = log(sigmoid((c+h-mu_k)/s_k) - sigmoid((c-h-mu_k)/s_k))  otherwise

with ``log s_k`` clamped at >= -7 as in PixelCNN++.  The interior bin is computed
as ``log sigmoid(a) + log sigmoid(-b) + log(1 - e^(b-a))`` with ``a - b`` = bin
width / s_k, which stays accurate in float32 for wide components (large s_k),
where the difference of two nearly equal CDFs would not.

Parameters (``S = x.shape``, any broadcastable shapes work):

* ``channel_coupled=False``: an independent K-mixture per sub-pixel;
  ``{'logits', 'means', 'log_scales'}`` each ``S + (K,)``.
* ``channel_coupled=True``: PixelCNN++ RGB, ``x`` is ``(..., 3)``; one mixture
  weight per pixel, ``logits`` ``S[:-1] + (K,)``; ``means`` and ``log_scales``
  ``S + (K,)``; ``coeffs`` ``S[:-1] + (3, K)``, squashed by tanh, couple the
  channel means to the (centred) values of earlier channels:
  ``mu_g += tanh(a0) c_r``, ``mu_b += tanh(a1) c_r + tanh(a2) c_g``.
  ``log P(pixel) = logsumexp_k(log pi_k + sum_channels log P(x_c | k))``.

``sample`` returns int32 levels shaped like the data (``S``); coupled sampling
draws red, then green given red's sampled bin centre, then blue.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from flowzoo import _checks, _logistic
from flowzoo.distributions.base import Array, Distribution, Params, check_same_trailing
from flowzoo.distributions.mixture_logistic import draw_components, gather_components

MIN_LOG_SCALE = -7.0
_K = "number of mixture components K"


@dataclasses.dataclass(frozen=True)
class DiscretizedLogisticMixture(Distribution):
    """Discretized logistic mixture over ``num_bins`` levels (see module doc).

    ``init`` raises NotImplementedError unless ``num_components`` is set (the
    parameters normally come from a decoder network).  With it, ``init`` returns
    parameters for one event ``x.shape[x.ndim-event_ndims:]``: equal weights,
    means uniform in (-1, 1) drawn with ``key``, scales 1/K, zero coeffs.
    """

    num_bins: int = 256
    event_ndims: int = 3
    channel_coupled: bool = False
    num_components: int | None = None

    def __post_init__(self):
        bins = self.num_bins
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ValueError(
                f"DiscretizedLogisticMixture: num_bins must be an int >= 2, got {bins!r}."
            )
        if self.channel_coupled and self.event_ndims < 1:
            raise ValueError(
                "DiscretizedLogisticMixture(channel_coupled=True) needs event_ndims >= 1 "
                "(the channel axis is part of the event)."
            )
        super().__post_init__()

    @property
    def _names(self) -> tuple[str, ...]:
        base = ("logits", "means", "log_scales")
        return base + ("coeffs",) if self.channel_coupled else base

    # ---- parameters -------------------------------------------------------

    def init(self, key: Array, x: Array) -> Params:
        if self.num_components is None:
            raise NotImplementedError(
                "DiscretizedLogisticMixture parameters come from a network (e.g. a "
                "decoder); build the params dict yourself or set num_components to "
                "get a data-independent initialisation."
            )
        x = jnp.asarray(x)
        self._check_levels(x, "init")
        _checks.check_min_ndim(
            x, self.event_ndims, "DiscretizedLogisticMixture.init", "(*batch, *event)"
        )
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
        num_k = self.num_components
        event = x.shape[x.ndim - self.event_ndims:]
        per_pixel = event[:-1] if self.channel_coupled else event
        means = jax.random.uniform(key, event + (num_k,), dtype=dtype, minval=-1.0, maxval=1.0)
        params = {
            "logits": jnp.zeros(per_pixel + (num_k,), dtype=dtype),
            "means": means,
            "log_scales": jnp.full(event + (num_k,), -math.log(num_k), dtype=dtype),
        }
        if self.channel_coupled:
            params["coeffs"] = jnp.zeros(per_pixel + (3, num_k), dtype=dtype)
        return params

    def _params(self, params, method):
        what = f"DiscretizedLogisticMixture.{method}"
        values = tuple(jnp.asarray(p) for p in self._unpack(params, self._names, method))
        named = dict(zip(self._names, values))
        check_same_trailing(named, -1, what, _K)
        if self.channel_coupled:
            check_same_trailing(
                {k: named[k] for k in ("means", "log_scales", "coeffs")}, -2, what,
                "RGB axis (3 channels for means/log_scales, 3 coefficients for coeffs)",
            )
            if named["means"].shape[-2] != 3:
                raise ValueError(
                    f"{what}: channel_coupled=True needs means/log_scales shaped "
                    f"(..., 3, K) and coeffs (..., 3, K) for 3 channels (RGB), got "
                    f"means shape {tuple(named['means'].shape)}."
                )
        return values

    # ---- log_prob ---------------------------------------------------------

    def _check_levels(self, x, method):
        if not (jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.floating)):
            raise TypeError(
                f"DiscretizedLogisticMixture.{method} expects integer levels "
                f"0..{self.num_bins - 1} (int or float dtype), got dtype {x.dtype}."
            )
        if self.channel_coupled and (x.ndim < 1 or x.shape[-1] != 3):
            raise ValueError(
                f"DiscretizedLogisticMixture(channel_coupled=True).{method} needs 3 "
                f"channels (RGB) on the last axis of x, got shape {tuple(x.shape)}."
            )

    def _centre(self, levels):
        return levels * (2.0 / (self.num_bins - 1)) - 1.0

    def _component_log_mass(self, levels, centred, means, log_scales):
        """log P(level | k): levels/centred broadcast against ``means`` (..., K)."""
        half_width = 1.0 / (self.num_bins - 1)
        log_scales = jnp.maximum(log_scales, MIN_LOG_SCALE)
        inv_scale = jnp.exp(-log_scales)
        upper = (centred + half_width - means) * inv_scale
        lower = (centred - half_width - means) * inv_scale
        # The bin's width in standard units, from the scale rather than upper - lower.
        log_gap = math.log(2.0 * half_width) - log_scales
        interior = _logistic.log_diff_sigmoid(upper, lower, log_gap)
        lowest_bin = jax.nn.log_sigmoid(upper)  # integrates from -inf
        highest_bin = jax.nn.log_sigmoid(-lower)  # integrates to +inf
        return jnp.where(
            levels < 0.5, lowest_bin,
            jnp.where(levels > self.num_bins - 1.5, highest_bin, interior),
        )

    def log_prob(self, params: Params, x: Array) -> Array:
        values = self._params(params, "log_prob")
        x = jnp.asarray(x)
        self._check_levels(x, "log_prob")
        dtype = jnp.result_type(*values)
        levels = x.astype(dtype)
        centred = self._centre(levels)
        on_a_level = (levels >= 0) & (levels <= self.num_bins - 1) & (levels == jnp.round(levels))
        impossible = jnp.asarray(-jnp.inf, dtype)
        if not self.channel_coupled:
            logits, means, log_scales = values
            comp = self._component_log_mass(
                levels[..., None], centred[..., None], means, log_scales
            )
            elementwise = logsumexp(jax.nn.log_softmax(logits, axis=-1) + comp, axis=-1)
            return self._sum_event(jnp.where(on_a_level, elementwise, impossible))

        logits, means, log_scales, coeffs = values
        tanh_coeffs = jnp.tanh(coeffs)
        c_red, c_green = centred[..., 0, None], centred[..., 1, None]
        mean_r = means[..., 0, :]
        mean_g = means[..., 1, :] + tanh_coeffs[..., 0, :] * c_red
        mean_b = (means[..., 2, :] + tanh_coeffs[..., 1, :] * c_red
                  + tanh_coeffs[..., 2, :] * c_green)
        coupled_means = jnp.stack(jnp.broadcast_arrays(mean_r, mean_g, mean_b), axis=-2)
        comp = self._component_log_mass(
            levels[..., None], centred[..., None], coupled_means, log_scales
        )
        per_pixel = logsumexp(jax.nn.log_softmax(logits, axis=-1) + comp.sum(axis=-2), axis=-1)
        per_pixel = jnp.where(jnp.all(on_a_level, axis=-1), per_pixel, impossible)
        pixel_ndims = self.event_ndims - 1
        _checks.check_min_ndim(
            per_pixel, pixel_ndims, "DiscretizedLogisticMixture.log_prob",
            f"(*batch, *event) with event_ndims={self.event_ndims}",
        )
        return _checks.sum_last(per_pixel, pixel_ndims)

    # ---- sample -----------------------------------------------------------

    def _to_level(self, value):
        """Continuous value in [-1, 1] coordinates -> nearest level (float)."""
        top = self.num_bins - 1
        return jnp.clip(jnp.round((value + 1.0) * (top / 2.0)), 0, top)

    def _sample(self, params, key, sample_shape):
        values = self._params(params, "sample")
        dtype = jnp.result_type(*values)
        key_k, key_noise = jax.random.split(key)
        if not self.channel_coupled:
            logits, means, log_scales = values
            batch = jnp.broadcast_shapes(logits.shape, means.shape, log_scales.shape)[:-1]
            k = draw_components(key_k, logits, sample_shape, batch)
            loc = gather_components(means, k)
            log_scale = jnp.maximum(gather_components(log_scales, k), MIN_LOG_SCALE)
            noise = jax.random.logistic(key_noise, k.shape, dtype=dtype)
            return self._to_level(loc + jnp.exp(log_scale) * noise).astype(jnp.int32)

        logits, means, log_scales, coeffs = values
        pixels = jnp.broadcast_shapes(
            logits.shape[:-1], means.shape[:-2], log_scales.shape[:-2], coeffs.shape[:-2]
        )
        k = draw_components(key_k, logits, sample_shape, pixels)
        k_rgb = jnp.broadcast_to(k[..., None], k.shape + (3,))
        loc = gather_components(means, k_rgb)
        scale = jnp.exp(jnp.maximum(gather_components(log_scales, k_rgb), MIN_LOG_SCALE))
        tanh_coeffs = jnp.tanh(gather_components(coeffs, k_rgb))
        noise = jax.random.logistic(key_noise, k_rgb.shape, dtype=dtype)
        draw = loc + scale * noise  # uncoupled continuous draws, (..., 3)

        level_r = self._to_level(draw[..., 0])
        c_red = self._centre(level_r)
        level_g = self._to_level(draw[..., 1] + tanh_coeffs[..., 0] * c_red)
        c_green = self._centre(level_g)
        level_b = self._to_level(
            draw[..., 2] + tanh_coeffs[..., 1] * c_red + tanh_coeffs[..., 2] * c_green
        )
        return jnp.stack([level_r, level_g, level_b], axis=-1).astype(jnp.int32)
