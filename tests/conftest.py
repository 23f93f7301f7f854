"""Test-wide JAX settings.

x64 is on so that precision checks (Jacobians, round trips) can use float64;
float32 behaviour is tested by passing float32 arrays explicitly, which also
catches any accidental upcast.  Eight CPU devices let tests exercise
data-parallel compilation.  Both must be set before JAX creates its backend.

The tests' tiny models spend most of their time in XLA's CPU compiler, so LLVM
optimisation is turned off (``--xla_backend_optimization_level=0``: compiles take less
than half as long) and so are XLA:CPU's MLIR fusion emitters
(``--xla_cpu_use_fusion_emitters=false``: the Flow++ smoke train step compiles in 14.5 s
instead of 27.6 s; on the official CIFAR-10 model turning them off saves no compile time
and makes the step 1.5x slower, so only the tests do it).  Code generation differs, so
results can differ from the default flags in the last bits; tests that compare two runs
give both the same XLA_FLAGS (see docs/decisions.md#tests-llvm-level0).  Subprocesses the tests launch inherit
it.  Set XLA_FLAGS yourself to choose otherwise.
"""

import os

for _flag in ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"):
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

# Launches of experiments/main.py from the tests keep out of the user's compilation cache
# (~/.cache/flowzoo/jax): set but empty means off; tests that need a cache pass a folder.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", "")

import jax  # noqa: E402  (after XLA_FLAGS, which the backend reads when it starts)

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_num_cpu_devices", 8)
