"""The distribution contract shared by every flowzoo distribution.

Like a bijector, a distribution is a frozen dataclass holding *static*
configuration only (event rank, number of bins, switches).  Its parameters live
outside it, in an explicit pytree owned by the caller (usually a dict of arrays,
often produced by a network such as a VLAE decoder), and every method is a pure
function of its arguments:

    params  = dist.init(key, x)
    log_p   = dist.log_prob(params, x)
    samples = dist.sample(params, key)          # one draw
    samples = dist.sample(params, key, n=7)     # shape (7, *one_draw_shape)

Conventions
  * ``event_ndims`` trailing axes form one event; all leading axes are batch
    axes.  ``log_prob`` evaluates the per-element log density (or log mass) on
    the broadcast of ``x`` against the parameters and sums it over the trailing
    ``event_ndims`` axes, so its shape is the batch shape.
  * Parameters broadcast against ``x``.  ``init(key, x)`` returns parameters for
    *one event* shaped like ``x.shape[x.ndim - event_ndims:]`` (the batch axes of
    ``x`` are dropped; the parameters broadcast over them).  Parameter-free
    distributions return ``()``.  Distributions whose parameters come from a
    network raise ``NotImplementedError`` unless told their size.
  * ``sample(params, key)`` returns one draw shaped like the (broadcast)
    parameters' sample shape, e.g. ``loc.shape`` for a Normal, ``S`` for a
    mixture whose parameters are ``S + (K,)``.  ``sample(params, key, n)`` with a
    Python int ``n`` returns ``n`` independent draws stacked on a new leading
    axis.  ``n`` is static: close over it (``functools.partial``) under ``jit``.
  * Dtypes: continuous samples and every ``log_prob`` have the floating dtype of
    the parameters (float32 in -> float32 out; nothing is upcast internally,
    even with ``jax_enable_x64``).  For continuous distributions ``log_prob``
    follows JAX's promotion of ``x`` against the parameters.  Discrete
    distributions accept integer or float ``x``, cast it to the parameters'
    dtype, return float ``log_prob`` and sample in the documented dtype
    (Bernoulli: the logits' float dtype, 0./1.; discretized mixtures: int32
    levels).  A value outside a discrete distribution's support (Bernoulli:
    anything but 0 and 1; discretized mixtures: anything but the levels
    0..num_bins-1) has ``log_prob`` -inf: it cannot be checked at trace time.
  * ``x`` may be a Python scalar or list; it is converted with ``jnp.asarray``.
  * No method has side effects or touches global state, so all are safe under
    ``jax.jit``, ``jax.vmap`` and ``jax.grad``.  The distribution object is
    hashable and may be a static argument to ``jit``.
  * Bad inputs (integer parameters, mismatched mixture axes, missing keys) fail
    at trace time with a message naming the fix.

Subclasses implement ``log_prob`` and ``_sample(params, key, sample_shape)``;
the base class turns ``n`` into ``sample_shape`` (``()`` or ``(n,)``).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping
from typing import Any

import jax

from flowzoo import _checks

Array = jax.Array
Params = Any  # a pytree of arrays (a dict for every built-in distribution)


@dataclasses.dataclass(frozen=True)
class Distribution:
    """Base class.  Subclasses define an ``event_ndims`` field (or property)."""

    def __post_init__(self):
        ndims = self.event_ndims
        if isinstance(ndims, bool) or not isinstance(ndims, int) or ndims < 0:
            raise ValueError(
                f"{type(self).__name__}: event_ndims must be a non-negative int, "
                f"got {ndims!r}."
            )
        num_k = getattr(self, "num_components", None)  # mixtures only
        bad_k = isinstance(num_k, bool) or not isinstance(num_k, int) or num_k < 1
        if num_k is not None and bad_k:
            raise ValueError(
                f"{type(self).__name__}: num_components must be None or an int >= 1, "
                f"got {num_k!r}."
            )

    @property
    def event_ndims(self) -> int:  # overridden by a dataclass field
        raise NotImplementedError(f"{type(self).__name__} must define event_ndims.")

    def init(self, key: Array, x: Array) -> Params:
        """Returns parameters for events shaped like ``x``'s trailing axes."""
        del key, x
        raise NotImplementedError(
            f"{type(self).__name__} has no default initialisation; its "
            "parameters are produced by a network or built explicitly."
        )

    def log_prob(self, params: Params, x: Array) -> Array:
        """log p(x) summed over the event axes; shape = batch shape."""
        raise NotImplementedError

    def sample(self, params: Params, key: Array, n: int | None = None) -> Array:
        """One draw (``n=None``) or ``n`` draws stacked on a leading axis."""
        if n is None:
            sample_shape = ()
        else:
            try:
                n = operator.index(n)
            except TypeError:
                raise TypeError(
                    f"{type(self).__name__}.sample: n must be None or a Python "
                    f"int, got {type(n).__name__}; under jit pass it statically."
                ) from None
            if n < 0:
                raise ValueError(f"{type(self).__name__}.sample: n must be >= 0, got {n}.")
            sample_shape = (n,)
        return self._sample(params, key, sample_shape)

    def _sample(self, params: Params, key: Array, sample_shape: tuple[int, ...]) -> Array:
        raise NotImplementedError

    # ---- helpers for subclasses -------------------------------------------

    def _sum_event(self, elementwise: Array) -> Array:
        """Sums the trailing ``event_ndims`` axes of a per-element log prob."""
        _checks.check_min_ndim(
            elementwise, self.event_ndims, f"{type(self).__name__}.log_prob",
            f"(*batch, *event) with event_ndims={self.event_ndims} (x broadcast "
            "against the parameters)",
        )
        return _checks.sum_last(elementwise, self.event_ndims)

    def _unpack(self, params: Params, names: tuple[str, ...], method: str) -> tuple:
        """Returns ``params[name]`` for each name, checking keys and float dtype."""
        what = f"{type(self).__name__}.{method}"
        values = _checks.unpack(params, names, what)
        for k, v in zip(names, values):
            _checks.check_float(v, f"{what} params[{k!r}]")
        return values


def check_same_trailing(arrays: Mapping[str, Any], axis: int, what: str, meaning: str) -> int:
    """Raises ValueError unless every array has the same size on ``axis``.

    Returns that size.  ``meaning`` names the axis in the message, e.g.
    ``"number of mixture components K"``.
    """
    sizes = {}
    for name, a in arrays.items():
        if a.ndim < -axis:
            raise ValueError(
                f"{what}: params[{name!r}] must have at least {-axis} axes "
                f"(axis {axis} is the {meaning}), got shape {tuple(a.shape)}."
            )
        sizes[name] = a.shape[axis]
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"{what}: parameters disagree on the {meaning} (axis {axis}): "
            + ", ".join(f"{k} has {v}" for k, v in sizes.items())
            + "."
        )
    return next(iter(sizes.values()))
