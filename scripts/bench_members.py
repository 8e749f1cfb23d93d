"""Members inside the training program: time per model with S members against one alone.

What ``rnnlab.loop`` runs for a job of S seeds (or a packed program of S members): the chunk
program ``jax.jit(jax.vmap(trainer.run_chunk))`` of ``make_train(compose(...))`` (batch
generation, forward, BPTT, clipping, Adam; ``train.log_every`` steps per call), its state
initialised by ``jax.vmap(trainer.init)`` and placed as :func:`rnnlab.loop.member_sharding`
places it (on this CPU, one JAX device per core: S = 8 runs as 4 + 4 rows on two devices; one
member on the first device, as a one-seed run does). The evaluations between chunks are left
out (the same for both, and not training).

Per cell and chunk size (``--chunks``; rnnlab's default ``train.log_every`` is 100), every
program is compiled and warmed up twice, then the rounds time each once, the order rotated.
A call of S = 1 with a chunk below 100 steps is repeated to 100 steps. Printed: ms per
model-step (median over rounds) and the ratio ``(time per model at S) / (time at S = 1)``, the
median over rounds of the per-round ratio (robust to the load drifting between rounds), with
its range. The target of issue 11 is <= 0.6 at S = 8.

  python scripts/bench_members.py --quick                         # small, validates the script
  python scripts/bench_members.py --json docs/bench_members_program.json
  python scripts/bench_members.py --cells lstm --chunks 100 --members 1,2,8 --rounds 8
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import rnnlab  # noqa: F401  (one CPU device per core, XLA flags, before the backend starts)
from rnnlab.config import compose
from rnnlab.loop import member_sharding, padded_members
from rnnlab.train import make_train


def overrides(cell: str, members: int, chunk: int, args) -> list[str]:
    return [f"cell={cell}", "task=adding", f"task.length={args.length}",
            f"cell.hidden_size={args.hidden}", f"train.batch_size={args.batch}",
            f"train.num_seeds={members}", f"train.log_every={chunk}", f"train.steps={chunk}",
            "train.eval_batch_size=8", "logger.wandb.mode=disabled", "logger.progress=false"]


def program(cell: str, members: int, chunk: int, args):
    """``(call, state, rows)``: the compiled, warmed-up chunk program and its placed state."""
    cfg = compose(overrides(cell, members, chunk, args))
    trainer = make_train(cfg)
    state = jax.jit(jax.vmap(trainer.init))(jax.vmap(jax.random.key)(np.arange(members)))
    sharding = member_sharding(cfg, members)
    rows = padded_members(sharding, members)
    if rows > members:  # padded as rnnlab.loop pads: copies of the first member
        state = jax.tree.map(
            lambda v: jnp.concatenate([v, jnp.repeat(v[:1], rows - members, 0)]), state)
    if sharding is not None:
        state = jax.device_put(state, sharding)
    call = jax.jit(jax.vmap(trainer.run_chunk))
    for _ in range(2):
        state, m = call(state)
        jax.block_until_ready(m)
    return call, state, (1 if sharding is None else sharding.mesh.size)


def timed(entry: dict, steps: int) -> float:
    """Seconds per model-step of ``steps`` steps (whole calls of the program)."""
    calls = max(1, steps // entry["chunk"])
    t0 = time.perf_counter()
    for _ in range(calls):
        entry["state"], m = entry["call"](entry["state"])
    jax.block_until_ready(m)
    return (time.perf_counter() - t0) / (calls * entry["chunk"] * entry["S"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--members", default="1,8", help="comma-separated S; the first is the "
                        "reference (1)")
    parser.add_argument("--chunks", default="10,100", help="steps per call (train.log_every)")
    parser.add_argument("--length", type=int, default=100, help="the adding task's T")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="T=20, H=16, 2 rounds")
    parser.add_argument("--json", help="write every number here")
    args = parser.parse_args()
    if args.quick:
        args.length, args.hidden, args.rounds = 20, 16, 2
    cells = args.cells.split(",")
    members = [int(s) for s in args.members.split(",")]
    chunks = [int(c) for c in args.chunks.split(",")]
    if members[0] != 1:
        sys.exit("--members must start with 1 (the reference)")
    load_start = [round(v, 2) for v in os.getloadavg()]
    devices = jax.local_devices()
    print(f"- {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{len(devices)} JAX {devices[0].platform} devices, jax {jax.__version__}; "
          f"load average at the start {load_start}")
    print(f"- adding task T={args.length}, B={args.batch}, H={args.hidden}, Adam, clipping; "
          f"{args.rounds} rounds, order rotated\n")
    print("| cell | steps per call | S | devices | ms per model-step | per model / S=1 "
          "(median of rounds) | range |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for cell in cells:
        for chunk in chunks:
            entries = []
            for S in members:
                call, state, used = program(cell, S, chunk, args)
                entries.append({"S": S, "chunk": chunk, "call": call, "state": state,
                                "devices": used, "times": []})
            steps = max(chunk, 100)
            for r in range(args.rounds):
                order = entries[r % len(entries):] + entries[:r % len(entries)]
                for e in order:
                    e["times"].append(timed(e, steps))
            ref = entries[0]["times"]
            for e in entries:
                ratios = [a / b for a, b in zip(e["times"], ref, strict=True)]
                row = {"cell": cell, "steps_per_call": chunk, "S": e["S"],
                       "devices": e["devices"], "ms_per_model_step":
                       statistics.median(e["times"]) * 1e3,
                       "per_model/S=1": statistics.median(ratios),
                       "range": [min(ratios), max(ratios)],
                       "ms_per_model_step_rounds": [t * 1e3 for t in e["times"]]}
                results.append(row)
                print(f"| {cell} | {chunk} | {e['S']} | {e['devices']} | "
                      f"{row['ms_per_model_step']:.2f} | {row['per_model/S=1']:.3f} | "
                      f"{min(ratios):.2f}-{max(ratios):.2f} |", flush=True)
            del entries
    load_end = [round(v, 2) for v in os.getloadavg()]
    print(f"\nload average at the end: {load_end}")
    if args.json:
        import flax
        import optax

        env = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "python": platform.python_version(), "jax": jax.__version__,
               "flax": flax.__version__, "optax": optax.__version__, "numpy": np.__version__,
               "cpu_count": os.cpu_count(), "devices": len(devices),
               "load_average_start": load_start, "load_average_end": load_end,
               "args": vars(args)}
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": results}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
