"""The bijector contract shared by every flowzoo bijector.

A bijector is a frozen dataclass holding *static* configuration only (sizes,
switches, sub-bijectors).  Its parameters live outside it, in an explicit pytree
that the caller owns, and every method is a pure function of its arguments:

    params          = bijector.init(key, x, **context)
    y, log_det      = bijector.forward(params, x, **context)
    x, log_det      = bijector.inverse(params, y, **context)

Conventions
  * ``forward`` is the *normalizing* direction (data -> latent), as in Flow++:
    the cheap direction is the one used for training.  ``inverse`` maps back.
  * ``event_ndims`` (an int >= 0, part of every bijector's static configuration)
    trailing axes form one event; all leading axes are batch axes.  ``log_det``
    is ``log|det J|`` of the map actually applied, summed over the event axes,
    so it has the batch shape (``x.shape[:-event_ndims]``).  Hence
    ``inverse(params, forward(params, x)[0])[1] == -forward(params, x)[1]``.
    Input and output have the same ``event_ndims``.  Compositions (Chain,
    ScanChain, PerHalf, Invert, TransformedDistribution) take theirs from their
    parts and check, when they are built, that the parts agree.
  * ``init(key, x)`` takes an example batch of *forward inputs*.  Bijectors with
    a data-dependent initialisation (ActNorm, Flax conditioners) compute it from
    that batch.  ``init_inverse(key, y)`` takes an example of forward *outputs*
    and initialises so that ``inverse`` is the data-dependent direction; it is
    what :class:`~flowzoo.bijectors.Invert` calls.  The default works for any
    bijector whose parameters depend only on shapes.
  * Optional keyword ``context`` (e.g. a conditioning tensor, ``rngs`` for
    dropout) is passed unchanged to every sub-bijector and conditioner;
    bijectors that do not use it ignore it.
  * No method has side effects or touches global state, so all of them are safe
    under ``jax.jit``, ``jax.vmap``, ``jax.grad`` and sharded compilation.  The
    bijector object itself is hashable (checked when it is built) and may be a
    static argument to ``jit``.
  * Inputs are floating-point arrays (every bijector, permutations included,
    rejects integer input with a message naming the cast: a log-det has the
    input's float dtype).  Python scalars and lists are converted with
    ``jnp.asarray``.  Outputs and log-det have the input's dtype whatever the
    parameters' dtype: parameters are cast to it (float16 or int parameters
    with a float32 input give float32 results).
  * Parameters of the wrong structure or shape fail with a message naming the
    bijector and what was expected.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from flowzoo import _checks

Array = jax.Array
Params = Any  # any pytree of arrays; () for parameter-free bijectors


@dataclasses.dataclass(frozen=True)
class Bijector:
    """Base class: subclasses implement ``forward`` and ``inverse``.

    Subclasses define ``event_ndims`` (a dataclass field, or a property for
    compositions), and call ``super().__post_init__()`` at the end of their own
    ``__post_init__``, which validates ``event_ndims`` and hashability.
    Subclasses with parameters override ``init`` (and ``init_inverse`` when the
    initialisation is data-dependent).
    """

    def __post_init__(self):
        name = type(self).__name__
        _checks.check_int(self.event_ndims, "event_ndims", 0, name)
        _check_hashable(self)

    @property
    def event_ndims(self) -> int:  # overridden by a dataclass field or a property
        raise NotImplementedError(
            f"{type(self).__name__} does not define event_ndims; declare it as a dataclass "
            f"field (e.g. `event_ndims: int = 0`) or a property.")

    def _check_input(self, x, method: str, min_ndim: int | None = None,
                     layout: str | None = None) -> Array:
        """``x`` as a float array of rank >= ``min_ndim`` (default: event_ndims)."""
        what = f"{type(self).__name__}.{method}"
        x = _checks.as_float_array(x, what)
        ndims = self.event_ndims if min_ndim is None else min_ndim
        _checks.check_min_ndim(x, ndims, what, layout or f"(..., {self.event_ndims} event axes)")
        return x

    def _unpack_params(self, params, names: tuple[str, ...], x, method: str) -> tuple:
        """``params[name]`` for each name, cast to ``x``'s dtype (the contract's dtype rule)."""
        values = _checks.unpack(params, names, f"{type(self).__name__}.{method}")
        return tuple(jnp.asarray(v).astype(x.dtype) for v in values)

    def init(self, key: Array, x: Array, **context) -> Params:
        """Returns the parameter pytree for inputs shaped like ``x``.

        The default is for parameter-free bijectors: it returns ``()`` after a
        shape-only dry run of ``forward``, so bad input fails here already.
        """
        del key
        jax.eval_shape(lambda v: self.forward((), v, **context), x)
        return ()

    def init_and_forward(self, key: Array, x: Array, **context) -> tuple[Params, Array, Array]:
        """``(params, y, log_det)``: ``init`` and then ``forward`` on the same batch.

        Compositions (Chain, ScanChain) override it so that a data-dependent init runs the
        forward pass once, not once per level of nesting."""
        params = self.init(key, x, **context)
        return (params,) + tuple(self.forward(params, x, **context))

    def init_inverse(self, key: Array, y: Array, **context) -> Params:
        """Like ``init`` but from an example of forward outputs ``y``."""
        return self.init(key, y, **context)

    def forward(self, params: Params, x: Array, **context) -> tuple[Array, Array]:
        raise NotImplementedError

    def inverse(self, params: Params, y: Array, **context) -> tuple[Array, Array]:
        raise NotImplementedError


def _check_hashable(bijector) -> None:
    """Raises TypeError naming the field that makes ``bijector`` unhashable."""
    try:
        hash(bijector)
    except TypeError as error:
        name = type(bijector).__name__
        bad = [f.name for f in dataclasses.fields(bijector)
               if not _hashes(getattr(bijector, f.name))]
        raise TypeError(
            f"{name} is not hashable (field {', '.join(bad) or '?'}: {error}); a bijector is "
            f"static configuration and must be hashable to be a static jit argument.  Hold "
            f"sequences as tuples, not lists, and mappings as tuples of pairs.") from None


def _hashes(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
