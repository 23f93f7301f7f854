"""Test-wide JAX settings.

x64 is on so that precision checks (Jacobians, round trips) can use float64;
float32 behaviour is tested by passing float32 arrays explicitly, which also
catches any accidental upcast.  Eight CPU devices let tests exercise
data-parallel compilation.  Both must be set before JAX creates its backend.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_num_cpu_devices", 8)
