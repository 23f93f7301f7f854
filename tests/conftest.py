"""Test-wide JAX settings.

x64 is on so that precision checks (Jacobians, round trips) can use float64;
float32 behaviour is tested by passing float32 arrays explicitly, which also
catches any accidental upcast.  Eight CPU devices let tests exercise
data-parallel compilation.  Both must be set before JAX creates its backend.

The tests' tiny models spend most of their time in XLA's CPU compiler, so LLVM
optimisation is turned off (``--xla_backend_optimization_level=0``): compiles take
less than half as long.  Code generation differs, so results can differ from the default
level in the last bits; tests that compare two runs give both the same XLA_FLAGS (see
BUILD_NOTES.md).  Subprocesses the tests launch inherit it.  Set XLA_FLAGS yourself to
choose otherwise.
"""

import os

if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402  (after XLA_FLAGS, which the backend reads when it starts)

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_num_cpu_devices", 8)
