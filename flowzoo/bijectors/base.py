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
  * ``event_ndims`` trailing axes form one event; all leading axes are batch
    axes.  ``log_det`` is ``log|det J|`` of the map actually applied, summed over
    the event axes, so it has the batch shape (``x.shape[:-event_ndims]``).
    Hence ``inverse(params, forward(params, x)[0])[1] == -forward(params, x)[1]``.
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
    bijector object itself is hashable and may be a static argument to ``jit``.
  * A float32 input gives float32 outputs (log-det included).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

Array = jax.Array
Params = Any  # any pytree of arrays; () for parameter-free bijectors


@dataclasses.dataclass(frozen=True)
class Bijector:
    """Base class: subclasses implement ``forward`` and ``inverse``.

    Subclasses with parameters override ``init`` (and ``init_inverse`` when the
    initialisation is data-dependent).
    """

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
