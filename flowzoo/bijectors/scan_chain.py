"""A chain of identical steps with their own parameters, compiled once with ``lax.scan``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from flowzoo import _checks
from flowzoo.bijectors.base import Bijector
from flowzoo.model import fold_in_keys


@dataclasses.dataclass(frozen=True)
class ScanChain(Bijector):
    """``step`` applied ``num_steps`` times, each time with its own parameters.

    The map is ``Chain((step,) * num_steps)``; the difference is the program: forward and
    inverse are one ``lax.scan`` over the steps, so XLA compiles one step body instead of
    ``num_steps`` (a Flow++ model compiles several times faster this way).

    params: ``step``'s parameter pytree with a new leading axis of length ``num_steps``
    (step i's parameters are ``tree_map(lambda a: a[i], params)``), as ``nn.scan`` stacks them.
    ``step`` must keep its input's shape and dtype.

    ``fold_keys``: names of context entries that are PRNG keys (e.g. ``"dropout_key"``), one
    key or an array of keys (one per example); step i receives each key with i folded in
    (``flowzoo.model.fold_in_keys``), so no two steps share randomness.  Other
    context is passed unchanged to every step.  ``unroll=True`` unrolls the scan (the same
    function and parameters; one body per step in the compiled program).  ``event_ndims`` is
    the step's.
    """

    step: Bijector
    num_steps: int
    fold_keys: tuple[str, ...] = ()
    unroll: bool = False

    def __post_init__(self):
        if not isinstance(self.step, Bijector):
            raise TypeError(f"ScanChain: step is a {type(self.step).__name__}, not a Bijector.")
        _checks.check_int(self.num_steps, "num_steps", 1, "ScanChain")
        object.__setattr__(self, "fold_keys", tuple(self.fold_keys))
        super().__post_init__()

    @property
    def event_ndims(self) -> int:
        return self.step.event_ndims

    def _step_context(self, context, i):
        folded = {name: fold_in_keys(context[name], i) for name in self.fold_keys
                  if context.get(name) is not None}
        return {**context, **folded}

    def _check_shape_kept(self, out, x):
        if out.shape != x.shape or out.dtype != x.dtype:
            raise ValueError(f"ScanChain: the step ({type(self.step).__name__}) maps "
                             f"{x.shape} {x.dtype} to {out.shape} {out.dtype}; a scanned step "
                             f"must keep shape and dtype.  Use Chain for such steps.")

    def _check_params(self, params):
        lengths = {a.shape[0] if a.ndim else None for a in jax.tree.leaves(params)}
        if lengths - {self.num_steps}:
            raise ValueError(f"ScanChain of {self.num_steps} steps got parameters whose leading "
                             f"axes are {sorted(lengths, key=str)}; use the output of "
                             f"ScanChain.init (per-step parameters stacked on axis 0).")

    def _scan(self, fn, carry, xs, reverse=False):
        return jax.lax.scan(fn, carry, xs, reverse=reverse,
                            unroll=self.num_steps if self.unroll else 1)

    def _keys_and_indices(self, key):
        return jax.random.split(key, self.num_steps), jnp.arange(self.num_steps)

    def init_and_forward(self, key, x, **context):
        x = _checks.as_float_array(x, "ScanChain.init")

        def body(v, key_and_index):
            k, i = key_and_index
            p, out, log_det = self.step.init_and_forward(k, v, **self._step_context(context, i))
            self._check_shape_kept(out, v)
            return out, (p, log_det)

        x, (params, log_dets) = self._scan(body, x, self._keys_and_indices(key))
        return params, x, jnp.sum(log_dets, axis=0)

    def init(self, key, x, **context):
        return self.init_and_forward(key, x, **context)[0]

    def init_inverse(self, key, y, **context):
        y = _checks.as_float_array(y, "ScanChain.init_inverse")

        def body(v, key_and_index):
            k, i = key_and_index
            ctx = self._step_context(context, i)
            p = self.step.init_inverse(k, v, **ctx)
            out = self.step.inverse(p, v, **ctx)[0]
            self._check_shape_kept(out, v)
            return out, p

        return self._scan(body, y, self._keys_and_indices(key), reverse=True)[1]

    def _apply(self, method, params, x, context, reverse):
        self._check_params(params)
        x = _checks.as_float_array(x, f"ScanChain.{method}")
        apply = getattr(self.step, method)

        def body(v, params_and_index):
            p, i = params_and_index
            out, log_det = apply(p, v, **self._step_context(context, i))
            self._check_shape_kept(out, v)
            return out, log_det

        x, log_dets = self._scan(body, x, (params, jnp.arange(self.num_steps)), reverse)
        return x, jnp.sum(log_dets, axis=0)

    def forward(self, params, x, **context):
        return self._apply("forward", params, x, context, reverse=False)

    def inverse(self, params, y, **context):
        return self._apply("inverse", params, y, context, reverse=True)
