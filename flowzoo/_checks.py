"""Input validation shared by bijectors and distributions.

Every check runs at trace time on static shapes and dtypes, so it costs nothing
inside ``jit`` and fails before any computation with a message naming the fix.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

import jax.numpy as jnp


def check_float(x, what: str) -> None:
    """Raises TypeError unless ``x`` has a floating dtype."""
    dtype = jnp.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{what} expects a floating-point array, got dtype {dtype}; "
            f"cast it first, e.g. x.astype(jnp.float32)."
        )


def as_float_array(x, what: str):
    """``x`` as an array (Python scalars and lists included), checked to be floating."""
    x = x if hasattr(x, "ndim") and hasattr(x, "dtype") else jnp.asarray(x)
    check_float(x, what)
    return x


def check_min_ndim(x, min_ndim: int, what: str, layout: str) -> None:
    """Raises ValueError unless ``x`` has at least ``min_ndim`` axes."""
    if x.ndim < min_ndim:
        raise ValueError(
            f"{what} expects an array of rank >= {min_ndim} laid out as {layout}, "
            f"got shape {tuple(x.shape)}."
        )


def check_even(size: int, axis_name: str, what: str, shape) -> None:
    """Raises ValueError unless ``size`` is even."""
    if size % 2:
        raise ValueError(
            f"{what} needs an even {axis_name}, got {axis_name}={size} in shape "
            f"{tuple(shape)}; crop or pad the input to an even {axis_name}."
        )


def check_int(value, name: str, minimum: int, what: str,
              allow_none: bool = False) -> int | None:
    """Returns ``value`` as an int, or raises unless it is an integer >= ``minimum``.

    Accepts Python and NumPy integers (not bools, not floats such as 2.0): a
    configuration value that is not an integer is a typo more often than not.
    """
    if value is None and allow_none:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{what}: {name} must be an int{' or None' if allow_none else ''}, "
                        f"got {value!r} ({type(value).__name__}).") from None
    if number < minimum:
        raise ValueError(f"{what}: {name} must be >= {minimum}, got {number}.")
    return number


def unpack(params, names: tuple[str, ...], what: str) -> tuple:
    """``params[name]`` for each name, checking that ``params`` is a dict holding them."""
    if not isinstance(params, Mapping):
        raise TypeError(
            f"{what} expects params as a dict with keys {list(names)}, got "
            f"{type(params).__name__}; pass the output of init."
        )
    missing = [k for k in names if k not in params]
    if missing:
        raise KeyError(
            f"{what}: params is missing {missing}; expected keys {list(names)}, "
            f"got {sorted(params)}."
        )
    return tuple(params[k] for k in names)


def broadcasts_to(value_shape, shape) -> bool:
    """Whether an array of ``value_shape`` broadcasts to ``shape`` without growing it."""
    value_shape, shape = tuple(value_shape), tuple(shape)
    return len(value_shape) <= len(shape) and all(
        v in (1, s) for v, s in zip(value_shape[::-1], shape[::-1]))


def check_broadcasts_to(value, shape, name: str, what: str, expected: str) -> None:
    """Raises ValueError unless ``value``'s shape broadcasts to ``shape`` unchanged.

    ``expected`` describes the shapes that fit, e.g. ``"(5,) from Affine.init"``.
    """
    value_shape = tuple(jnp.shape(value))
    if not broadcasts_to(value_shape, shape):
        raise ValueError(
            f"{what}: params[{name!r}] has shape {value_shape}, which does not broadcast to "
            f"the input's shape {tuple(shape)}; expected {expected}."
        )


def sum_last(x, ndims: int):
    """Sums the trailing ``ndims`` axes (``ndims == 0`` returns ``x``)."""
    if ndims == 0:
        return x
    return jnp.sum(x, axis=tuple(range(x.ndim - ndims, x.ndim)))
