"""rnnlab: recurrent-cell experiments in JAX/Flax."""

import logging
import os

# JAX logs at INFO every accelerator plugin it probes and cannot start ("Unable to initialize
# backend 'tpu': ... libtpu.so"); Hydra's own logging (INFO, "[HYDRA]") printed that on CPU
# machines whenever a config callback first touched the devices. A backend asked for
# explicitly (JAX_PLATFORMS) still fails with an error.
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)

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

# One JAX CPU device per usable core, so that the seeds (and packed members) of a run on a
# CPU are sharded over the cores (rnnlab.loop.member_sharding) as they are over GPUs: XLA:CPU
# runs a recurrent loop's small per-step products on one core, so a second device runs other
# members on the other core at the same time (the time per model of 8 members 0.64-0.67 of
# one member's in the training program on 2 cores, against 0.90-1.06 on one device:
# docs/benchmarks.md). A program of one member runs on the first device, as before. Like the
# flag above, XLA reads it when its CPU backend starts. JAX_NUM_CPU_DEVICES, the
# jax_num_cpu_devices option or --xla_force_host_platform_device_count in XLA_FLAGS choose
# another count (1: one device); train.devices=1 keeps one run on one device.
_DEVICE_COUNT_FLAG = "xla_force_host_platform_device_count"


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


if ("JAX_NUM_CPU_DEVICES" not in os.environ
        and _DEVICE_COUNT_FLAG not in os.environ.get("XLA_FLAGS", "")):
    os.environ["XLA_FLAGS"] = (f"{os.environ.get('XLA_FLAGS', '')} "
                               f"--{_DEVICE_COUNT_FLAG}={_cpu_cores()}").strip()

__version__ = "0.1.0"
