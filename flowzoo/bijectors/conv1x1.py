"""Invertible 1x1 convolutions: a full C x C matrix, and its LU form (Glow)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from flowzoo import _checks, _compensated
from flowzoo.bijectors.base import Bijector

_INITS = ("identity_noise", "orthogonal")


def _check(x, event_ndims, what):
    _checks.check_float(x, what)
    _checks.check_min_ndim(x, event_ndims, what, "(..., channels last)")


def _spatial_size(x, event_ndims) -> int:
    """Number of positions the C x C matrix is applied at within one event."""
    return math.prod(x.shape[x.ndim - event_ndims:x.ndim - 1])


def _mix_channels(x, matrix):
    """y[..., i] = sum_j matrix[i, j] x[..., j]."""
    return jnp.einsum("...j,ij->...i", x, matrix.astype(x.dtype))


def _refined_log_abs_det(matrix):
    """log|det matrix| to about twice the matrix's precision, for float32 without x64: the
    log-det of its LU factors plus the first-order correction trace(U^-1 L^-1 R) for the
    residual R = P matrix - L U, which error-free products give exactly enough
    (``flowzoo._compensated``).  The correction is constant to first order, so the gradient
    is the LU log-det's."""
    lu, _, perm = jax.lax.linalg.lu(matrix)
    c = matrix.shape[-1]
    lower = jnp.tril(lu, -1) + jnp.eye(c, dtype=lu.dtype)
    upper = jnp.triu(lu)
    permuted = jnp.take_along_axis(matrix, perm[..., :, None], axis=-2)
    residual = _compensated.residual_of_product(permuted, lower, upper)
    solved = jax.lax.linalg.triangular_solve(lower, residual, left_side=True, lower=True,
                                             unit_diagonal=True)
    solved = jax.lax.linalg.triangular_solve(upper, solved, left_side=True, lower=False)
    terms = jnp.concatenate([jnp.log(jnp.abs(jnp.diagonal(lu, axis1=-2, axis2=-1))),
                             jax.lax.stop_gradient(jnp.diagonal(solved, axis1=-2, axis2=-1))],
                            axis=-1)
    return _compensated.accurate_sum(terms, axis=-1)


def _batch_log_det(log_abs_det, x, event_ndims):
    per_event = _spatial_size(x, event_ndims) * log_abs_det
    return jnp.broadcast_to(per_event.astype(x.dtype), x.shape[:x.ndim - event_ndims])


@dataclasses.dataclass(frozen=True)
class Invertible1x1Conv(Bijector):
    """y = W x at every position, W a free C x C matrix (Flow++'s 'Pointwise').

    params: ``{'kernel': (C, C)}``.  ``init='identity_noise'`` gives
    I + noise_scale * N(0, 1) (Flow++); ``'orthogonal'`` a random rotation (Glow).
    The log-det is as accurate as Flow++'s float64 one: ``slogdet`` in float64 when JAX's
    x64 mode is on, else an LU log-det with a compensated residual correction
    (``_refined_log_abs_det``); cast back to the input dtype.
    """

    event_ndims: int = 3
    init_kind: str = "identity_noise"
    noise_scale: float = 1e-3

    def __post_init__(self):
        if self.init_kind not in _INITS:
            raise ValueError(f"Invertible1x1Conv.init_kind must be one of {_INITS}, "
                             f"got {self.init_kind!r}.")

    def init(self, key, x, **context):
        _check(x, self.event_ndims, "Invertible1x1Conv")
        c = x.shape[-1]
        if self.init_kind == "orthogonal":
            kernel = jax.nn.initializers.orthogonal()(key, (c, c), x.dtype)
        else:
            kernel = jnp.eye(c, dtype=x.dtype) + self.noise_scale * jax.random.normal(
                key, (c, c), x.dtype)
        return {"kernel": kernel}

    def _log_abs_det(self, kernel):
        if jax.config.jax_enable_x64 or kernel.dtype == jnp.float64:
            return jnp.linalg.slogdet(kernel.astype(jnp.float64))[1]
        return _refined_log_abs_det(kernel)

    def _kernel(self, params, x):
        kernel = params["kernel"]
        if kernel.shape != (x.shape[-1],) * 2:
            raise ValueError(f"Invertible1x1Conv kernel has shape {kernel.shape} but the "
                             f"input has {x.shape[-1]} channels; re-run init on this input.")
        return kernel

    def forward(self, params, x, **context):
        _check(x, self.event_ndims, "Invertible1x1Conv")
        kernel = self._kernel(params, x)
        log_det = _batch_log_det(self._log_abs_det(kernel), x, self.event_ndims)
        return _mix_channels(x, kernel), log_det

    def inverse(self, params, y, **context):
        _check(y, self.event_ndims, "Invertible1x1Conv")
        kernel = self._kernel(params, y)
        log_det = _batch_log_det(-self._log_abs_det(kernel), y, self.event_ndims)
        return _mix_channels(y, jnp.linalg.inv(kernel)), log_det


@dataclasses.dataclass(frozen=True)
class LUInvertible1x1Conv(Bijector):
    """y = W x with W = P L U (Glow's LU form): O(C) log-det, cheap inverse.

    params: ``{'lower': (C, C), 'upper': (C, C), 'log_diag': (C,)}``; only the
    strictly lower / upper triangles are used, L has a unit diagonal and U the
    diagonal ``exp(log_diag)``, so ``log|det W| = sum(log_diag)``.  P is a fixed
    channel permutation drawn from ``permutation_seed`` (None: identity), part
    of the static configuration so no optimizer can ever change it.  Init:
    L, U = identity + noise_scale * N(0, 1) off the diagonal, log_diag = 0.
    """

    event_ndims: int = 3
    permutation_seed: int | None = 0
    noise_scale: float = 1e-3

    def init(self, key, x, **context):
        _check(x, self.event_ndims, "LUInvertible1x1Conv")
        c = x.shape[-1]
        k_low, k_up = jax.random.split(key)
        return {
            "lower": self.noise_scale * jax.random.normal(k_low, (c, c), x.dtype),
            "upper": self.noise_scale * jax.random.normal(k_up, (c, c), x.dtype),
            "log_diag": jnp.zeros((c,), x.dtype),
        }

    def _factors(self, params, x):
        c = x.shape[-1]
        if params["log_diag"].shape != (c,):
            raise ValueError(f"LUInvertible1x1Conv parameters are for "
                             f"{params['log_diag'].shape[0]} channels but the input has "
                             f"{c}; re-run init on this input.")
        eye = jnp.eye(c, dtype=params["lower"].dtype)
        lower = jnp.tril(params["lower"], -1) + eye
        upper = jnp.triu(params["upper"], 1) + jnp.diag(jnp.exp(params["log_diag"]))
        if self.permutation_seed is None:
            perm = np.arange(c)
        else:
            perm = np.random.RandomState(self.permutation_seed).permutation(c)
        return perm, lower, upper

    def forward(self, params, x, **context):
        _check(x, self.event_ndims, "LUInvertible1x1Conv")
        perm, lower, upper = self._factors(params, x)
        # (P L U)[i, j] = (L U)[perm[i], j]: mix with L U, then gather channels.
        y = _mix_channels(x, lower @ upper)[..., perm]
        log_det = _batch_log_det(jnp.sum(params["log_diag"]), x, self.event_ndims)
        return y, log_det

    def inverse(self, params, y, **context):
        _check(y, self.event_ndims, "LUInvertible1x1Conv")
        perm, lower, upper = self._factors(params, y)
        z = jnp.zeros_like(y).at[..., perm].set(y)  # undo the permutation
        flat = z.reshape(-1, z.shape[-1]).T
        flat = jax.scipy.linalg.solve_triangular(lower.astype(y.dtype), flat, lower=True,
                                                 unit_diagonal=True)
        flat = jax.scipy.linalg.solve_triangular(upper.astype(y.dtype), flat, lower=False)
        log_det = _batch_log_det(-jnp.sum(params["log_diag"]), y, self.event_ndims)
        return flat.T.reshape(y.shape), log_det
