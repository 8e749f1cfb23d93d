"""Compile time against run time of a run's programs at two XLA optimisation settings.

``rnnlab.loop`` compiles the programs a run calls rarely (initialisation, evaluation,
gradient probe) with :data:`rnnlab.loop.LIGHT_COMPILE` on the CPU and the training chunk
with XLA's defaults. This script checks that choice for one config: each of the four
programs (``jax.jit(jax.vmap(...))`` as the loop builds them) is lowered and compiled at
XLA's default level and at the light one, compile times measured one after the other
(``--rounds`` times, alternating, the persistent cache off), then each compiled program is
run ``--reps`` times, interleaved, and its outputs compared bitwise between the two.

  python scripts/bench_compile_level.py
  python scripts/bench_compile_level.py cell=gru task.length=400 cell.hidden_size=256
  python scripts/bench_compile_level.py --json level.json cell=peephole

Positional arguments are Hydra overrides of rnnlab's config (default: the adding task,
T=100, LSTM 128, one seed, batch 64, 512 held-out sequences).
"""

import argparse
import json
import statistics
import time

import jax
import numpy as np

from rnnlab import config, loop, train

DEFAULT = ["task=adding", "task.length=100", "cell=lstm", "cell.hidden_size=128",
           "train.batch_size=64", "train.num_seeds=1", "train.eval_batch_size=512",
           "train.steps=100", "train.log_every=100", "train.compilation_cache=null"]
FULL = {}  # XLA's defaults


def leaves(tree) -> list[np.ndarray]:
    def host(v):
        if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key):
            v = jax.random.key_data(v)
        return np.asarray(v)

    return [host(v) for v in jax.tree.leaves(tree)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("overrides", nargs="*", help="rnnlab config overrides")
    ap.add_argument("--rounds", type=int, default=2, help="compiles per program and setting")
    ap.add_argument("--reps", type=int, default=7, help="timed calls per program and setting")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)

    cfg = config.compose(DEFAULT + list(args.overrides))
    trainer = train.make_train(cfg)
    keys = train.seed_keys(cfg)
    settings = {"default": FULL, "light": loop.LIGHT_COMPILE}
    state = jax.jit(jax.vmap(trainer.init))(keys)
    programs = {"init": (trainer.init, keys), "evaluate": (trainer.evaluate, state),
                "probe": (trainer.probe, state), "run_chunk": (trainer.run_chunk, state)}
    rows = []
    print(f"backend {jax.default_backend()}, jax {jax.__version__}; "
          f"light = {loop.LIGHT_COMPILE}; overrides {DEFAULT + list(args.overrides)}")
    print("| program | compile s (default) | compile s (light) | light/default compile "
          "| run ms (default) | run ms (light) | light/default run | bitwise |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (fn, arg) in programs.items():
        lowered = jax.jit(jax.vmap(fn)).lower(arg)
        compile_s = {k: [] for k in settings}
        compiled = {}
        for _ in range(args.rounds):
            for k, options in settings.items():
                jax.clear_caches()  # else the second compile of a program is JAX's cached one
                t0 = time.perf_counter()
                compiled[k] = lowered.compile(options)
                compile_s[k].append(time.perf_counter() - t0)
        outputs = {k: leaves(c(arg)) for k, c in compiled.items()}
        run_ms = {k: [] for k in settings}
        for _ in range(args.reps):
            for k, c in compiled.items():
                t0 = time.perf_counter()
                jax.block_until_ready(c(arg))
                run_ms[k].append(1e3 * (time.perf_counter() - t0))
        same = all(np.array_equal(a, b) for a, b in zip(outputs["default"], outputs["light"],
                                                          strict=True))
        row = {"program": name, **{f"compile_s_{k}": statistics.median(v)
                                   for k, v in compile_s.items()},
               **{f"run_ms_{k}": statistics.median(v) for k, v in run_ms.items()},
               "bitwise": same}
        rows.append(row)
        print(f"| {name} | {row['compile_s_default']:.2f} | {row['compile_s_light']:.2f} | "
              f"{row['compile_s_light'] / row['compile_s_default']:.2f} | "
              f"{row['run_ms_default']:.1f} | {row['run_ms_light']:.1f} | "
              f"{row['run_ms_light'] / row['run_ms_default']:.2f} | {same} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"jax": jax.__version__, "backend": jax.default_backend(),
                       "light": loop.LIGHT_COMPILE, "overrides": DEFAULT + list(args.overrides),
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
