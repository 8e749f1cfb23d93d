"""rnnlab: recurrent-cell experiments in JAX/Flax."""

import os

# XLA:CPU's concurrency-optimized (breadth-first) HLO scheduler lets the initialisation of a
# vmapped, stacked model deadlock on a machine with few cores (jaxlib 0.10.2, 2 cores: a
# 4-layer LSTM with 3 seeds hung in every try). The orthogonal initialiser's QR runs as a
# batched LAPACK call (lapack_sgeqrf_ffi, batched over the vmapped seeds) that splits its
# batch over XLA's intra-op thread pool and blocks its own pool thread until the pieces are
# done; the breadth-first schedule leaves the layers' QR calls free to run at the same time,
# so as many start as the pool has threads and each waits on pieces queued behind the others.
# The depth-first scheduler (this flag off) reuses buffers between them and so runs them one
# at a time. Per-program compiler_options do not change this choice in jaxlib 0.10, so it is
# set for the process; see docs/benchmarks.md ("XLA:CPU's concurrency-optimized scheduler")
# for the native stacks, the check (scripts/bench_xla_flags.py) and what the flag costs.
# XLA reads the flag when its first backend starts, so this works even if jax was imported
# first, as long as nothing has run yet. Known to jaxlib 0.10 (CPU) and 0.11 (CUDA); users
# can override it in XLA_FLAGS.
_XLA_CPU_FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"
if _XLA_CPU_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --{_XLA_CPU_FLAG}=false".strip()

__version__ = "0.1.0"
