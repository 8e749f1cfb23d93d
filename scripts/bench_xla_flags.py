"""XLA:CPU's concurrency-optimized scheduler on vs off: training-step time, and a hang check.

``--xla_cpu_enable_concurrency_optimized_scheduler`` picks the HLO scheduler XLA:CPU orders
each computation with before buffer assignment: ``true`` (XLA's default) a breadth-first
scheduler that starts independent work early (more buffers live at once, more thunks free to
run concurrently), ``false`` (rnnlab's default, set in ``rnnlab/__init__.py``) the
depth-first, memory-minimising scheduler. XLA reads XLA_FLAGS when its CPU backend starts, so
each setting runs in its own subprocess with the flag given explicitly in XLA_FLAGS (rnnlab
leaves an explicit setting alone).

``time`` mode. A training step is rnnlab's own: ``jax.jit(jax.vmap(trainer.run_chunk))`` of
``make_train(compose(...))`` (batch generation, forward, BPTT, clipping, Adam), on the adding
task (T=100, B=64, H=128, LSTM), ``train.log_every`` steps per call; the cases are one layer
and a two-layer stack, each with 1 and 4 seeds vmapped. Each subprocess compiles every case,
warms it up, then times the cases in turn (interleaved); the parent alternates the two
settings over ``--rounds`` subprocess pairs (on, off, on, off, ...) and reports, per case, the
median ms per step (per seed-step too) and the ratio on/off (> 1: XLA's default, on, is
slower than rnnlab's off).

``hang`` mode. Runs the configurations the hang was seen with (a vmapped stacked LSTM:
``experiments/seed_stock_lstm`` with four LSTM(50) layers and three seeds through
``python -m rnnlab.run``; the adding task with a two-layer LSTM and 3-4 seeds; a direct
``jit(vmap(trainer.init))`` then ``jit(vmap(run_chunk))``, the initialisation compiled as
rnnlab.loop does (``vmap``), with ``compiler_options`` turning the scheduler off for that one
program, or as ``jax.lax.map`` over the seeds) with the scheduler ON (and, with
``--control``, OFF), each ``--attempts`` times in a fresh subprocess under ``--hang-timeout``
seconds; a run that does not finish in time is reported as a hang with the CPU time it used
(an idle deadlock uses almost none) and, with ``--gdb``, its native thread stacks are
written next to ``--json``.

  python scripts/bench_xla_flags.py --quick          # small sizes, 1 round, 1 hang attempt
  python scripts/bench_xla_flags.py                  # 5 rounds; hang check 3 attempts each
  python scripts/bench_xla_flags.py --mode hang --attempts 1 --control --gdb --json h.json
  python scripts/bench_xla_flags.py --mode time --rounds 7
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"
ROOT = Path(__file__).resolve().parent.parent

# name -> (num_layers, num_seeds)
CASES = {"1 layer, 1 seed": (1, 1), "1 layer, 4 seeds": (1, 4),
         "2 layers, 1 seed": (2, 1), "2 layers, 4 seeds": (2, 4)}


def flags_env(on: bool) -> dict:
    env = dict(os.environ)
    rest = " ".join(f for f in env.get("XLA_FLAGS", "").split() if FLAG not in f)
    env["XLA_FLAGS"] = f"{rest} --{FLAG}={'true' if on else 'false'}".strip()
    env.setdefault("PYTHONPATH", str(ROOT / "src"))
    return env


def overrides(layers: int, seeds: int, args) -> list[str]:
    return [f"model.num_layers={layers}", f"train.num_seeds={seeds}",
            f"cell.hidden_size={args.hidden}", f"task.length={args.length}",
            f"train.batch_size={args.batch}", f"train.log_every={args.chunk}",
            f"train.steps={args.chunk}", "train.eval_batch_size=8",
            "logger.wandb.mode=disabled", "logger.progress=false"]


def time_child(args) -> None:
    import jax
    import numpy as np

    from rnnlab.config import compose
    from rnnlab.train import make_train

    assert f"--{FLAG}=" in os.environ.get("XLA_FLAGS", ""), "XLA_FLAGS lacks the flag"
    compiled, states = {}, {}
    for name, (layers, seeds) in CASES.items():
        trainer = make_train(compose(overrides(layers, seeds, args)))
        keys = jax.vmap(jax.random.key)(np.arange(seeds))
        states[name] = jax.jit(jax.vmap(trainer.init))(keys)
        compiled[name] = jax.jit(jax.vmap(trainer.run_chunk))
        for _ in range(2):  # compile, warm up
            states[name], m = compiled[name](states[name])
            jax.block_until_ready(m)
    times = {name: [] for name in CASES}
    for _ in range(args.reps):
        for name in CASES:  # interleaved
            t0 = time.perf_counter()
            states[name], m = compiled[name](states[name])
            jax.block_until_ready(m)
            times[name].append((time.perf_counter() - t0) / args.chunk * 1e3)
    print(json.dumps({name: statistics.median(t) for name, t in times.items()}))


def run_time(args) -> dict:
    per = {True: [], False: []}
    # a persistent compilation cache shared by the rounds (its key includes XLA_FLAGS, so the
    # two settings never share a program); only compilation gets faster
    cache = tempfile.TemporaryDirectory()
    for r in range(args.rounds):
        for on in (True, False) if r % 2 == 0 else (False, True):
            cmd = [sys.executable, __file__, "--child", "time", *child_args(args)]
            env = {**flags_env(on), "JAX_COMPILATION_CACHE_DIR": cache.name,
                   "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                   "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  timeout=args.time_timeout)
            if proc.returncode != 0:
                sys.exit(f"time child (flag {'on' if on else 'off'}) failed:\n"
                         f"{proc.stderr[-3000:]}")
            per[on].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"round {r} flag {'on' if on else 'off'}: {per[on][-1]}", file=sys.stderr,
                  flush=True)
    load = os.getloadavg()
    print(f"\n## training step, scheduler on vs off (adding T={args.length}, B={args.batch}, "
          f"H={args.hidden}, LSTM, {args.chunk} steps per call, {args.rounds} rounds x "
          f"{args.reps} reps)")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| case | on ms/step | off ms/step | on ms/seed-step | off ms/seed-step | on/off "
          "(median of rounds) | on/off per round |")
    print("|---|---|---|---|---|---|---|")
    table = {}
    for name, (_, seeds) in CASES.items():
        on = statistics.median(d[name] for d in per[True])
        off = statistics.median(d[name] for d in per[False])
        rounds = [a[name] / b[name] for a, b in zip(per[True], per[False], strict=True)]
        table[name] = {"on_ms": on, "off_ms": off, "ratio": statistics.median(rounds),
                       "ratios": rounds}
        print(f"| {name} | {on:.2f} | {off:.2f} | {on / seeds:.2f} | {off / seeds:.2f} "
              f"| {statistics.median(rounds):.3f} | "
              f"{', '.join(f'{x:.2f}' for x in rounds)} |")
    cache.cleanup()
    return {"load": load, "table": table, "raw": per}


HANG_CHILD_DIRECT = """
import jax, numpy as np
from rnnlab.config import compose
from rnnlab.train import make_train
import json, sys
ov, init_mode = json.loads(sys.argv[1]), sys.argv[2]
trainer = make_train(compose(ov))
seeds = int([o for o in ov if o.startswith("train.num_seeds=")][0].split("=")[1])
keys = jax.vmap(jax.random.key)(np.arange(seeds))
if init_mode == "vmap":  # as rnnlab.loop does
    init = jax.jit(jax.vmap(trainer.init))
elif init_mode == "vmap, init scheduler off":  # only this program with the DFS scheduler
    init = jax.jit(jax.vmap(trainer.init),
                   compiler_options={"xla_cpu_enable_concurrency_optimized_scheduler": False})
elif init_mode == "lax.map":  # seeds one after another: unbatched LAPACK calls
    init = jax.jit(lambda k: jax.lax.map(trainer.init, k))
state = init(keys)
jax.block_until_ready(state)
chunk = jax.jit(jax.vmap(trainer.run_chunk))
for _ in range(3):
    state, m = chunk(state)
    jax.block_until_ready(m)
print("done", float(m["loss"].mean()))
"""


def hang_configs(args) -> list[tuple[str, list[str]]]:
    quiet = ["logger.wandb.mode=disabled", "logger.progress=false", "logger.plots=false"]
    stock = ["+experiment=seed_stock_lstm", "train.steps=2", "train.log_every=1",
             "train.eval_batch_size=8", "gradients.enabled=false", *quiet]
    adding = ["task=adding", f"task.length={args.length}", "train.steps=4", "train.log_every=2",
              "train.eval_batch_size=8", "gradients.every=2", "gradients.batch_size=4",
              *quiet]
    stock_like = [*overrides(4, 3, args)[:2], "cell.hidden_size=50", *overrides(4, 3, args)[3:]]
    return [
        ("cli: seed_stock_lstm, 4 x LSTM(50), 3 seeds", ["cli", *stock, "train.num_seeds=3"]),
        ("cli: seed_stock_lstm, 4 x LSTM(50), 2 seeds", ["cli", *stock, "train.num_seeds=2"]),
        ("cli: adding, 2 x LSTM(128), 3 seeds",
         ["cli", *adding, "model.num_layers=2", "train.num_seeds=3"]),
        ("cli: adding, 2 x LSTM(128), 4 seeds",
         ["cli", *adding, "model.num_layers=2", "train.num_seeds=4"]),
        ("direct jit(vmap(run_chunk)): adding, 2 x LSTM(128), 4 seeds",
         ["direct", "vmap", *overrides(2, 4, args)]),
        *((f"direct jit(vmap(run_chunk)): adding, 4 x LSTM(50), 3 seeds; init: {mode}",
           ["direct", mode, *stock_like])
          for mode in ("vmap", "vmap, init scheduler off", "lax.map")),
    ]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc): a hung process that is idle
    (deadlocked) shows little; one that is only slow shows about its wall time."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def native_stacks(pid: int) -> str:
    try:
        out = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 25"],
                             capture_output=True, text=True, timeout=120)
        return out.stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"gdb failed: {e}"


def run_hang(args) -> dict:
    results = []
    settings = (True, False) if args.control else (True,)
    for name, spec in hang_configs(args):
        if args.only and args.only not in name:
            continue
        kind, ov = spec[0], spec[1:]
        for attempt, on in ((a, on) for a in range(args.attempts) for on in settings):
            with tempfile.TemporaryDirectory() as tmp:
                if kind == "cli":
                    cmd = [sys.executable, "-m", "rnnlab.run", *ov, f"hydra.run.dir={tmp}/run"]
                else:
                    cmd = [sys.executable, "-c", HANG_CHILD_DIRECT, json.dumps(ov[1:]), ov[0]]
                t0 = time.perf_counter()
                proc = subprocess.Popen(cmd, env=flags_env(on), cwd=tmp, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                try:
                    _, err = proc.communicate(timeout=args.hang_timeout)
                    outcome = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
                    detail = "" if proc.returncode == 0 else err[-800:]
                except subprocess.TimeoutExpired:
                    cpu = process_cpu_seconds(proc.pid)
                    outcome = f"HANG (> {args.hang_timeout:.0f} s, {cpu:.0f} s CPU)"
                    detail = native_stacks(proc.pid) if args.gdb else ""
                    if detail and args.json:
                        stacks = Path(f"{args.json}.stacks.{len(results)}.txt")
                        stacks.write_text(f"{name} #{attempt} flag on\n{detail}")
                        print(f"native stacks: {stacks}", file=sys.stderr, flush=True)
                    proc.kill()
                    proc.communicate()
                wall = time.perf_counter() - t0
            results.append({"config": name, "flag": on, "attempt": attempt,
                            "outcome": outcome, "wall_s": wall, "detail": detail})
            print(f"{name} #{attempt} flag {'on' if on else 'off'}: {outcome} in {wall:.1f} s",
                  file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(f"\n## hang check, {args.attempts} attempts each, timeout "
          f"{args.hang_timeout:.0f} s; load average at the end {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}\n")
    print("| configuration | scheduler | outcomes | wall s |")
    print("|---|---|---|---|")
    for name, _ in hang_configs(args):
        if args.only and args.only not in name:
            continue
        for on in settings:
            rs = [r for r in results if r["config"] == name and r["flag"] == on]
            print(f"| {name} | {'on' if on else 'off'} | "
                  f"{', '.join(r['outcome'] for r in rs)} | "
                  f"{', '.join(format(r['wall_s'], '.0f') for r in rs)} |")
    return {"load": load, "results": results}


def child_args(args) -> list[str]:
    return ["--hidden", str(args.hidden), "--length", str(args.length), "--batch",
            str(args.batch), "--chunk", str(args.chunk), "--reps", str(args.reps)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", choices=["time"], help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["time", "hang", "both"], default="both")
    p.add_argument("--quick", action="store_true",
                   help="H=16, T=20, B=8, 1 round of 3 reps, 1 hang attempt")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--chunk", type=int, default=10, help="training steps per timed call")
    p.add_argument("--reps", type=int, default=5, help="timed calls per case per subprocess")
    p.add_argument("--rounds", type=int, default=5, help="on/off subprocess pairs")
    p.add_argument("--attempts", type=int, default=3, help="hang check: runs per config")
    p.add_argument("--hang-timeout", type=float, default=240)
    p.add_argument("--time-timeout", type=float, default=1200)
    p.add_argument("--gdb", action="store_true", help="native stacks of a hung run (gdb)")
    p.add_argument("--only", help="hang check: only configurations whose name holds this")
    p.add_argument("--control", action="store_true",
                   help="hang check: run every configuration with the scheduler off too")
    p.add_argument("--json", help="write the raw results to this file")
    args = p.parse_args()
    if args.child == "time":
        time_child(args)
        return
    if args.quick:
        args.hidden, args.length, args.batch, args.reps, args.rounds = 16, 20, 8, 3, 1
        args.attempts, args.hang_timeout = 1, 120
    import jax

    print(f"# jax {jax.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, XLA_FLAGS outside: {os.environ.get('XLA_FLAGS', '')!r}")
    out = {}
    if args.mode in ("time", "both"):
        out["time"] = run_time(args)
    if args.mode in ("hang", "both"):
        out["hang"] = run_hang(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
