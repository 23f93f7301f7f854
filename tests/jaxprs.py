"""Walking jaxprs in tests: every equation, the sub-jaxprs of loops and calls included."""

from __future__ import annotations

import jax.extend.core


def equations(jaxpr):
    """The equations of ``jaxpr`` and of every jaxpr nested in its equations, depth first."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from equations(sub)


def dot_operand_dtypes(jaxpr):
    """The operand dtypes of every ``dot_general`` in ``jaxpr``, as pairs of names."""
    return [tuple(str(v.aval.dtype) for v in eqn.invars) for eqn in equations(jaxpr)
            if eqn.primitive.name == "dot_general"]
