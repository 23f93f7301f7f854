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


_LAYOUT = "(..., channels last)"


def _linalg_dtype(dtype):
    """float32 at least: LAPACK has no float16/bfloat16 routines."""
    return jnp.promote_types(dtype, jnp.float32)


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
    (``_refined_log_abs_det``); cast back to the input dtype.  float16 and bfloat16 inputs
    work: the log-det and the inverse matrix are computed in float32 at least (LAPACK has
    no half-precision routines) and the mixing in the input's dtype.
    """

    event_ndims: int = 3
    init_kind: str = "identity_noise"
    noise_scale: float = 1e-3

    def __post_init__(self):
        if self.init_kind not in _INITS:
            raise ValueError(f"Invertible1x1Conv.init_kind must be one of {_INITS}, "
                             f"got {self.init_kind!r}.")
        _checks.check_int(self.event_ndims, "event_ndims", 1, "Invertible1x1Conv")
        super().__post_init__()

    def init(self, key, x, **context):
        x = self._check_input(x, "init", layout=_LAYOUT)
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
        return _refined_log_abs_det(kernel.astype(_linalg_dtype(kernel.dtype)))

    def _kernel(self, params, x, method):
        (kernel,) = _checks.unpack(params, ("kernel",), f"Invertible1x1Conv.{method}")
        kernel = jnp.asarray(kernel)
        if kernel.shape != (x.shape[-1],) * 2:
            raise ValueError(f"Invertible1x1Conv kernel has shape {kernel.shape} but the "
                             f"input has {x.shape[-1]} channels; re-run init on this input.")
        return kernel

    def forward(self, params, x, **context):
        x = self._check_input(x, "forward", layout=_LAYOUT)
        kernel = self._kernel(params, x, "forward")
        log_det = _batch_log_det(self._log_abs_det(kernel), x, self.event_ndims)
        return _mix_channels(x, kernel), log_det

    def inverse(self, params, y, **context):
        y = self._check_input(y, "inverse", layout=_LAYOUT)
        kernel = self._kernel(params, y, "inverse")
        log_det = _batch_log_det(-self._log_abs_det(kernel), y, self.event_ndims)
        inverse = jnp.linalg.inv(kernel.astype(_linalg_dtype(kernel.dtype)))
        return _mix_channels(y, inverse), log_det


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

    def __post_init__(self):
        _checks.check_int(self.event_ndims, "event_ndims", 1, "LUInvertible1x1Conv")
        _checks.check_int(self.permutation_seed, "permutation_seed", 0, "LUInvertible1x1Conv",
                          allow_none=True)
        super().__post_init__()

    def init(self, key, x, **context):
        x = self._check_input(x, "init", layout=_LAYOUT)
        c = x.shape[-1]
        k_low, k_up = jax.random.split(key)
        return {
            "lower": self.noise_scale * jax.random.normal(k_low, (c, c), x.dtype),
            "upper": self.noise_scale * jax.random.normal(k_up, (c, c), x.dtype),
            "log_diag": jnp.zeros((c,), x.dtype),
        }

    def _factors(self, params, x, method):
        c = x.shape[-1]
        names = ("lower", "upper", "log_diag")
        values = [jnp.asarray(v) for v in
                  _checks.unpack(params, names, f"LUInvertible1x1Conv.{method}")]
        got = tuple(v.shape for v in values)
        if got != ((c, c), (c, c), (c,)):
            raise ValueError(f"LUInvertible1x1Conv.{method}: params {names} have shapes {got}, "
                             f"expected {((c, c), (c, c), (c,))} for an input with {c} "
                             f"channels; re-run init on this input.")
        low, up, log_diag = values
        eye = jnp.eye(c, dtype=low.dtype)
        lower = jnp.tril(low, -1) + eye
        upper = jnp.triu(up, 1) + jnp.diag(jnp.exp(log_diag))
        if self.permutation_seed is None:
            perm = np.arange(c)
        else:
            perm = np.random.RandomState(self.permutation_seed).permutation(c)
        return perm, lower, upper, log_diag

    def forward(self, params, x, **context):
        x = self._check_input(x, "forward", layout=_LAYOUT)
        perm, lower, upper, log_diag = self._factors(params, x, "forward")
        # (P L U)[i, j] = (L U)[perm[i], j]: mix with L U, then gather channels.
        y = _mix_channels(x, lower @ upper)[..., perm]
        log_det = _batch_log_det(jnp.sum(log_diag), x, self.event_ndims)
        return y, log_det

    def inverse(self, params, y, **context):
        y = self._check_input(y, "inverse", layout=_LAYOUT)
        perm, lower, upper, log_diag = self._factors(params, y, "inverse")
        z = jnp.zeros_like(y).at[..., perm].set(y)  # undo the permutation
        flat = z.reshape(-1, z.shape[-1]).T
        flat = jax.scipy.linalg.solve_triangular(lower.astype(y.dtype), flat, lower=True,
                                                 unit_diagonal=True)
        flat = jax.scipy.linalg.solve_triangular(upper.astype(y.dtype), flat, lower=False)
        log_det = _batch_log_det(-jnp.sum(log_diag), y, self.event_ndims)
        return flat.T.reshape(y.shape), log_det
