"""rnnlab: recurrent-cell experiments in JAX/Flax."""

import os

# XLA:CPU's concurrency-optimized scheduler deadlocks on this package's vmapped, stacked
# recurrent programs on small (2-core) machines: the first jitted call waits forever with every
# thread idle. Turning it off fixed every hang seen; XLA reads the flag when its first backend
# starts, so this works even if jax was imported first, as long as nothing has run yet.
# Known to jaxlib 0.10 (CPU) and 0.11 (CUDA); users can override it in XLA_FLAGS.
_XLA_CPU_FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"
if _XLA_CPU_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --{_XLA_CPU_FLAG}=false".strip()

__version__ = "0.1.0"
