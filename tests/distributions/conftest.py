"""Run the distribution tests in float64-capable mode, like the top-level conftest."""

import jax

jax.config.update("jax_enable_x64", True)
