"""Composition and inversion of bijectors."""

from __future__ import annotations

import dataclasses

import jax

from flowzoo.bijectors.base import Bijector


def check_same_event_ndims(first, other, where: str) -> None:
    """Raises ValueError naming both bijectors unless their event_ndims agree.

    The fix it names raises the smaller event_ndims (an elementwise bijector can sum
    its log-det over any number of axes; a structured one such as Squeeze cannot).
    """
    if first.event_ndims == other.event_ndims:
        return
    low, high = sorted((first, other), key=lambda b: b.event_ndims)
    settable = [b for b in (low, high) if "event_ndims" in {f.name for f in dataclasses.fields(b)}]
    if settable:
        target = high if settable[0] is low else low
        fix = f"build {type(settable[0]).__name__}(..., event_ndims={target.event_ndims})"
    else:
        fix = "build the parts of one with the other's event_ndims"
    raise ValueError(
        f"{where}: {type(first).__name__} has event_ndims={first.event_ndims} but "
        f"{type(other).__name__} has event_ndims={other.event_ndims}.  Their log-dets are "
        f"summed, so they must sum over the same event axes: {fix}.")


def _check_log_det_shape(total, log_det, index, bijector):
    if total is not None and total.shape != log_det.shape:
        raise ValueError(
            f"Chain: bijector {index} ({type(bijector).__name__}) returned a log-det of "
            f"shape {log_det.shape}, earlier ones {total.shape}; it does not honour its "
            f"event_ndims={bijector.event_ndims}.")


@dataclasses.dataclass(frozen=True)
class Chain(Bijector):
    """Applies ``bijectors`` in order, first to last, in the forward direction.

    (This is the order of a flow's steps, the reverse of ``distrax.Chain``.)
    params: a tuple with one entry per bijector.  Log-dets are summed, so every
    bijector must have the same ``event_ndims`` (checked when the chain is built);
    it is the chain's ``event_ndims``.
    """

    bijectors: tuple[Bijector, ...]

    def __post_init__(self):
        bijectors = tuple(self.bijectors)
        if not bijectors:
            raise ValueError("Chain needs at least one bijector.")
        for i, b in enumerate(bijectors):
            if not isinstance(b, Bijector):
                raise TypeError(f"Chain: item {i} is a {type(b).__name__}, not a Bijector.")
            check_same_event_ndims(bijectors[0], b, f"Chain: bijectors 0 and {i}")
        object.__setattr__(self, "bijectors", bijectors)
        super().__post_init__()

    @property
    def event_ndims(self) -> int:
        return self.bijectors[0].event_ndims

    def init_and_forward(self, key, x, **context):
        params, total = [], None
        for i, (b, k) in enumerate(zip(self.bijectors, jax.random.split(key, len(self.bijectors)))):
            p, x, log_det = b.init_and_forward(k, x, **context)
            _check_log_det_shape(total, log_det, i, b)
            total = log_det if total is None else total + log_det
            params.append(p)
        return tuple(params), x, total

    def init(self, key, x, **context):
        return self.init_and_forward(key, x, **context)[0]

    def init_inverse(self, key, y, **context):
        keys = jax.random.split(key, len(self.bijectors))
        params = [None] * len(self.bijectors)
        for i in reversed(range(len(self.bijectors))):
            b = self.bijectors[i]
            params[i] = b.init_inverse(keys[i], y, **context)
            y, _ = b.inverse(params[i], y, **context)
        return tuple(params)

    def _check_params(self, params):
        if not isinstance(params, (tuple, list)) or len(params) != len(self.bijectors):
            got = (f"{len(params)} parameter entries" if isinstance(params, (tuple, list))
                   else f"a {type(params).__name__}")
            raise ValueError(f"Chain of {len(self.bijectors)} bijectors expects a tuple of "
                             f"{len(self.bijectors)} parameter entries, got {got}; use the "
                             f"output of Chain.init.")

    def forward(self, params, x, **context):
        self._check_params(params)
        total = None
        for i, (b, p) in enumerate(zip(self.bijectors, params)):
            x, log_det = b.forward(p, x, **context)
            _check_log_det_shape(total, log_det, i, b)
            total = log_det if total is None else total + log_det
        return x, total

    def inverse(self, params, y, **context):
        self._check_params(params)
        total = None
        for i in reversed(range(len(self.bijectors))):
            b = self.bijectors[i]
            y, log_det = b.inverse(params[i], y, **context)
            _check_log_det_shape(total, log_det, i, b)
            total = log_det if total is None else total + log_det
        return y, total


@dataclasses.dataclass(frozen=True)
class Invert(Bijector):
    """Swaps forward and inverse; params and event_ndims are the wrapped bijector's."""

    bijector: Bijector

    def __post_init__(self):
        if not isinstance(self.bijector, Bijector):
            raise TypeError(f"Invert: bijector is a {type(self.bijector).__name__}, "
                            f"not a Bijector.")
        super().__post_init__()

    @property
    def event_ndims(self) -> int:
        return self.bijector.event_ndims

    def init(self, key, x, **context):
        return self.bijector.init_inverse(key, x, **context)

    def init_inverse(self, key, y, **context):
        return self.bijector.init(key, y, **context)

    def forward(self, params, x, **context):
        return self.bijector.inverse(params, x, **context)

    def inverse(self, params, y, **context):
        return self.bijector.forward(params, y, **context)
