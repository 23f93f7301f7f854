"""Flow++'s logistic-mixture CDF transform and its coupling factory.

    y = exp(a) * logit(F(x)) + b,   F(x) = sum_k pi_k sigmoid((x - mu_k) / s_k)

Forward and log-det are evaluated in log space (``log F`` and ``log(1 - F)``
via ``log_sigmoid`` + ``logsumexp``), so the transform stays exact where F
rounds to 0 or 1 in float32.

The inverse solves ``logit F(x) = t`` with ``t = (y - b) exp(-a)``.  Because F
is a convex combination of sigmoids, ``logit F(x)`` lies between the smallest
and largest ``(x - mu_k) / s_k``, so ``x`` lies in the tight bracket
``[min_k mu_k + t s_k, max_k mu_k + t s_k]``.  A fixed number of bisection steps
in that bracket is followed by safeguarded Newton steps; everything has a static
trip count, so it compiles with no host round trips.  The inverse's derivatives are
those of the implicit-function theorem at the solution (a ``custom_jvp``), computed only
where something differentiates.

Neither needs a logarithm.  ``logit F(x) < t`` exactly where
``D(x) = F e^-min(t,0) - (1 - F) e^max(t,0) < 0``; each side is a sum of positive terms,
at least 1/2 near the root for any t, so neither loses precision nor under/overflows
where it matters.  Bisection takes D's sign (:func:`_is_below`, one reduction a step;
speed against log-space comparisons: experiments/benchmarks/mixture_cdf_inverse.py,
docs/decisions.md#core-mixture-bisection), and Newton steps on D itself
(:func:`_scaled_difference`, its value and slope from the same exponentials) set the final
accuracy (docs/decisions.md#core-mixture-scaled-newton).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from flowzoo import _checks, _logistic
from flowzoo.bijectors.base import Bijector


# Float32 bisection steps before Newton (12 fail the accuracy tests, 14 pass).
BISECTION_STEPS = 16


def _logit_cdf_and_log_slope(x, logits, means, log_scales):
    """logit F(x) and log d logit F / dx = log f - log F - log(1 - F)."""
    log_cdf, log_sf = _logistic.mixture_log_cdf_and_sf(x, logits, means, log_scales)
    log_pdf = _logistic.mixture_log_pdf(x, logits, means, log_scales)
    return log_cdf - log_sf, log_pdf - log_cdf - log_sf


def _scaled_terms(x, log_weights_cdf, log_weights_sf, means, inv_scales):
    """Per component: z_k = (x - mu_k) / s_k, u_k = e^-|z_k|, r_k = 1 / (1 + u_k), and the
    terms e^(w_k + min(z_k,0)) and e^(v_k - max(z_k,0)) of D's two sides before their
    common factor r_k (:func:`_scaled_difference`)."""
    z = (x[..., None] - means) * inv_scales
    u = jnp.exp(-jnp.abs(z))
    r = 1.0 / (1.0 + u)
    return (z, u, r, jnp.exp(log_weights_cdf + jnp.minimum(z, 0.0)),
            jnp.exp(log_weights_sf - jnp.maximum(z, 0.0)))


def _scaled_difference(x, log_weights_cdf, log_weights_sf, means, inv_scales):
    """D(x) = F e^-min(t,0) - (1 - F) e^max(t,0), increasing in x and zero at the root of
    logit F(x) = t, and its slope dD/dx, elementwise, without logarithms (t enters
    through the weights).

    With z_k = (x - mu_k) / s_k, u_k = e^-|z_k| and r_k = 1 / (1 + u_k),
    sigmoid(z_k) = e^min(z_k,0) r_k and sigmoid(-z_k) = e^-max(z_k,0) r_k, so
    D = sum_k c_k - d_k with c_k = e^(w_k + min(z_k,0)) r_k and d_k = e^(v_k - max(z_k,0)) r_k
    for the loop invariants w = log pi - min(t,0) and v = log pi + max(t,0), and
    dD/dx = sum_k (c_k sigmoid(-z_k) + d_k sigmoid(z_k)) / s_k.  Near the root both sums
    are at least 1/2, so D is no less precise than the log-space residual; far from it the
    terms of one side may overflow to inf (those of the other are at most 1, so no
    inf - inf), which still has the right sign.
    """
    z, u, r, cdf_terms, sf_terms = _scaled_terms(x, log_weights_cdf, log_weights_sf, means,
                                                 inv_scales)
    cdf_terms, sf_terms = cdf_terms * r, sf_terms * r
    positive = z > 0
    sigmoid_z, sigmoid_minus_z = jnp.where(positive, r, u * r), jnp.where(positive, u * r, r)
    slope = jnp.sum((cdf_terms * sigmoid_minus_z + sf_terms * sigmoid_z) * inv_scales, axis=-1)
    return jnp.sum(cdf_terms - sf_terms, axis=-1), slope


def _is_below(x, log_weights_cdf, log_weights_sf, means, inv_scales):
    """logit F(x) < t, elementwise: the sign of D (:func:`_scaled_difference`), with one
    reduction and no slope."""
    _, _, r, cdf_terms, sf_terms = _scaled_terms(x, log_weights_cdf, log_weights_sf, means,
                                                 inv_scales)
    return jnp.sum((cdf_terms - sf_terms) * r, axis=-1) < 0


def _solve_logit_cdf(t, logits, means, log_scales, num_bisection_steps, num_newton_steps):
    """x with logit F(x) = t, elementwise; no gradient (see ``_inverse_logit_cdf``)."""
    knots = means + t[..., None] * jnp.exp(log_scales)
    lo, hi = jnp.min(knots, axis=-1), jnp.max(knots, axis=-1)
    log_pi = jax.nn.log_softmax(logits, axis=-1)
    log_weights_cdf = log_pi - jnp.minimum(t, 0.0)[..., None]
    log_weights_sf = log_pi + jnp.maximum(t, 0.0)[..., None]
    inv_scales = jnp.exp(-log_scales)

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        below = _is_below(mid, log_weights_cdf, log_weights_sf, means, inv_scales)
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, num_bisection_steps, bisect, (lo, hi))

    def newton(_, state):
        x, lo, hi = state
        d, slope = _scaled_difference(x, log_weights_cdf, log_weights_sf, means, inv_scales)
        lo = jnp.where(d < 0, x, lo)
        hi = jnp.where(d < 0, hi, x)
        step = x - d / slope
        # Keep Newton inside the bracket, ends included (a converged step stays where it is,
        # on the end it has just become); fall back to bisection if it leaves.  A NaN or
        # inf step (d / slope with an overflowed or vanished slope) compares False, so it
        # falls back too.
        inside = (step >= lo) & (step <= hi)
        return jnp.where(inside, step, 0.5 * (lo + hi)), lo, hi

    x, _, _ = jax.lax.fori_loop(0, num_newton_steps, newton, (0.5 * (lo + hi), lo, hi))
    return x


@functools.partial(jax.custom_jvp, nondiff_argnums=(4, 5))
def _inverse_logit_cdf(t, logits, means, log_scales, num_bisection_steps, num_newton_steps):
    """Solution of logit F(x) = t with implicit-function-theorem derivatives, which run only
    where something differentiates (sampling evaluates the solve alone)."""
    return _solve_logit_cdf(t, logits, means, log_scales, num_bisection_steps, num_newton_steps)


@_inverse_logit_cdf.defjvp
def _inverse_logit_cdf_jvp(num_bisection_steps, num_newton_steps, primals, tangents):
    """dx = -(d logit F at fixed x - dt) / (d logit F / dx), at the solution x."""
    x = _inverse_logit_cdf(*primals, num_bisection_steps, num_newton_steps)

    def residual(t, logits, means, log_scales):
        g, log_slope = _logit_cdf_and_log_slope(x, logits, means, log_scales)
        return g - t, log_slope

    _, residual_dot, log_slope = jax.jvp(residual, primals, tangents, has_aux=True)
    return x, -residual_dot * jnp.exp(-log_slope)


@dataclasses.dataclass(frozen=True)
class LogisticMixtureCDF(Bijector):
    """Elementwise y = exp(a) * logit(MixLogisticCDF(x)) + b (Flow++).

    params: ``{'logits', 'means', 'log_scales'}`` of shape ``x.shape + (K,)`` (or
    broadcastable), and ``{'log_scale', 'shift'}`` (a, b) broadcastable to ``x``.
    Mixture log-scales are clamped at ``log_scale_min`` (Flow++: -7).
    ``num_bisection_steps=None`` picks the count from the dtype: ``BISECTION_STEPS`` (16)
    for float32 (then Newton reaches float32 precision;
    docs/decisions.md#core-mixture-scaled-newton), 50 for float64.
    """

    num_components: int = 32
    event_ndims: int = 0
    log_scale_min: float = -7.0
    num_bisection_steps: int | None = None
    num_newton_steps: int = 4

    def __post_init__(self):
        _check_solver_settings(self)
        super().__post_init__()

    def init(self, key, x, **context):
        """A random mixture per event element (for standalone use; couplings
        get their parameters from a conditioner instead)."""
        x = self._check_input(x, "init")
        shape = x.shape[x.ndim - self.event_ndims:]
        k_logits, k_means = jax.random.split(key)
        mix_shape = shape + (self.num_components,)
        return {
            "logits": 0.1 * jax.random.normal(k_logits, mix_shape, x.dtype),
            "means": jax.random.normal(k_means, mix_shape, x.dtype),
            "log_scales": jnp.zeros(mix_shape, x.dtype),
            "log_scale": jnp.zeros(shape, x.dtype),
            "shift": jnp.zeros(shape, x.dtype),
        }

    def _params(self, params, x, method):
        """(logits, means, log_scales, a, b) in x's dtype, shapes checked against x."""
        what = f"LogisticMixtureCDF.{method}"
        values = self._unpack_params(params, _PARAM_NAMES, x, method)
        k = self.num_components
        for name, value in zip(_PARAM_NAMES[:3], values[:3]):
            if value.ndim < 1 or value.shape[-1] != k or not _checks.broadcasts_to(
                    value.shape[:-1], x.shape):
                raise ValueError(
                    f"{what}: params[{name!r}] has shape {tuple(value.shape)}, expected "
                    f"{tuple(x.shape) + (k,)} (the input's shape {tuple(x.shape)} + "
                    f"num_components={k}), or a shape broadcasting to it.")
        for name, value in zip(_PARAM_NAMES[3:], values[3:]):
            _checks.check_broadcasts_to(value, x.shape, name, what,
                                        "x.shape or a shape broadcasting to it")
        logits, means, log_scales, a, b = values
        return logits, means, jnp.maximum(log_scales, self.log_scale_min), a, b

    def forward(self, params, x, **context):
        x = self._check_input(x, "forward")
        logits, means, log_scales, a, b = self._params(params, x, "forward")
        t, log_slope = _logit_cdf_and_log_slope(x, logits, means, log_scales)
        y = t * jnp.exp(a) + b
        log_det = jnp.broadcast_to(a + log_slope, y.shape)
        return y, _checks.sum_last(log_det, self.event_ndims)

    def inverse(self, params, y, **context):
        y = self._check_input(y, "inverse")
        logits, means, log_scales, a, b = self._params(params, y, "inverse")
        t = (y - b) * jnp.exp(-a)
        t, logits, means, log_scales = _broadcast_mixture(t, logits, means, log_scales)
        steps = self.num_bisection_steps
        if steps is None:
            steps = BISECTION_STEPS if jnp.finfo(t.dtype).bits <= 32 else 50
        x = _inverse_logit_cdf(t, logits, means, log_scales, steps, self.num_newton_steps)
        _, log_slope = _logit_cdf_and_log_slope(x, logits, means, log_scales)
        log_det = jnp.broadcast_to(-(a + log_slope), x.shape)
        return x, _checks.sum_last(log_det, self.event_ndims)


_PARAM_NAMES = ("logits", "means", "log_scales", "log_scale", "shift")


def _check_solver_settings(config):
    what = type(config).__name__
    _checks.check_int(config.num_components, "num_components", 1, what)
    _checks.check_int(config.num_newton_steps, "num_newton_steps", 0, what)
    _checks.check_int(config.num_bisection_steps, "num_bisection_steps", 0, what,
                      allow_none=True)


def _broadcast_mixture(t, logits, means, log_scales):
    """Broadcasts t to the mixture's element shape and the mixture to t's."""
    shape = jnp.broadcast_shapes(t.shape, logits.shape[:-1], means.shape[:-1],
                                 log_scales.shape[:-1])
    k = logits.shape[-1]
    return (jnp.broadcast_to(t, shape),
            *(jnp.broadcast_to(p, shape + (k,)) for p in (logits, means, log_scales)))


@dataclasses.dataclass(frozen=True)
class MixtureCDFInner:
    """Coupling factory: raw conditioner output ``(..., 2 + 3K)`` -> LogisticMixtureCDF.

    Layout of the last axis, as in the official Flow++ code:
    ``[raw_a, b, logits (K), means (K), log_scales (K)]`` with ``a = tanh(raw_a)``.
    """

    num_components: int = 32
    log_scale_min: float = -7.0
    num_bisection_steps: int | None = None
    num_newton_steps: int = 4

    def __post_init__(self):
        _check_solver_settings(self)

    @property
    def num_params(self) -> int:
        return 2 + 3 * self.num_components

    def __call__(self, raw):
        k = self.num_components
        bijector = LogisticMixtureCDF(
            num_components=k, event_ndims=0, log_scale_min=self.log_scale_min,
            num_bisection_steps=self.num_bisection_steps,
            num_newton_steps=self.num_newton_steps)
        params = {
            "log_scale": jnp.tanh(raw[..., 0]),
            "shift": raw[..., 1],
            "logits": raw[..., 2:2 + k],
            "means": raw[..., 2 + k:2 + 2 * k],
            "log_scales": raw[..., 2 + 2 * k:2 + 3 * k],
        }
        return bijector, params
