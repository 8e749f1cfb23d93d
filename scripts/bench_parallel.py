"""Times minGRU/minLSTM's parallel mode (``scan_parallel``, ``jax.lax.associative_scan``)
against their sequential mode (``step`` in the shared ``lax.scan`` driver).

One measurement is forward + backward through time in float32 of the loss ``sum(y**2)``,
gradients with respect to the parameters, ``jax.jit``-compiled, warmed up twice, then the
median of ``--reps`` calls (the two modes interleaved) with ``block_until_ready``. Prints a
markdown table with the machine, the JAX version and the device.

  python scripts/bench_parallel.py                       # T = 1,000 and 10,000
  python scripts/bench_parallel.py --lengths 1000 --batch 16 --hidden 128
"""

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp

import rnnlab  # noqa: F401  (XLA flags before the backend starts)
from rnnlab.cells import MinGRU, MinLSTM
from rnnlab.recurrent import scan_driver


def programs(cell, params, x):
    def sequential(p):
        xp = cell.project(p, x)
        y, _ = scan_driver(cell.step, p, xp, cell.initial_carry(p, x.shape[0]))
        return jnp.sum(y ** 2)

    def parallel(p):
        xp = cell.project(p, x)
        y, _ = cell.scan_parallel(p, xp, cell.initial_carry(p, x.shape[0]))
        return jnp.sum(y ** 2)

    return {"sequential": jax.jit(jax.grad(sequential)), "parallel": jax.jit(jax.grad(parallel))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="1000,10000", help="comma-separated T values")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    print(f"- machine: {platform.processor() or platform.machine()}, "
          f"device {jax.devices()[0].device_kind}, jax {jax.__version__}")
    print(f"- B={args.batch}, D={args.features}, H={args.hidden}, float32, "
          f"grad of sum(y**2), median of {args.reps}\n")
    print("| cell | T | sequential ms | parallel ms | speed-up |\n|---|---|---|---|---|")
    for cls in (MinGRU, MinLSTM):
        cell = cls(hidden_size=args.hidden)
        params = cell.init(jax.random.key(0), args.features)
        for T in (int(t) for t in args.lengths.split(",")):
            x = jax.random.normal(jax.random.key(1), (args.batch, T, args.features))
            fns = programs(cell, params, x)
            for fn in fns.values():
                for _ in range(2):
                    jax.block_until_ready(fn(params))
            times = {name: [] for name in fns}
            for _ in range(args.reps):
                for name, fn in fns.items():
                    start = time.perf_counter()
                    jax.block_until_ready(fn(params))
                    times[name].append(1e3 * (time.perf_counter() - start))
            seq, par = (statistics.median(times[k]) for k in ("sequential", "parallel"))
            print(f"| {cell.registered_name} | {T:,} | {seq:.2f} | {par:.2f} | "
                  f"{seq / par:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
