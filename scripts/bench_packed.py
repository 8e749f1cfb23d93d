"""Packed against unpacked sweeps: the wall time of one small sweep (learning rates x seeds)
trained as one program per job (what Hydra's basic launcher does) and as one packed program
(``hydra/launcher=packed``), measured side by side and interleaved, in one process.

    python scripts/bench_packed.py                 # 3 learning rates x 2 seeds, LSTM, adding
    python scripts/bench_packed.py --quick         # a tiny check that the script runs
    python scripts/bench_packed.py --lrs 1e-3,3e-3,1e-2,3e-2 --seeds 2 --repeats 3

Each repetition builds every program afresh with the persistent compilation cache off, so a
sweep's time includes its compilations, as a fresh sweep's does (``--warm`` keeps one warm-up
repetition out of the numbers). Prints each repetition's times, the medians and the ratio
packed / unpacked (< 1: packing is faster), and the machine's load (``os.getloadavg``): on a
loaded machine the numbers are provisional.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lrs", default="1e-3,3e-3,1e-2", help="learning rates (one job each)")
    ap.add_argument("--seeds", type=int, default=2, help="train.num_seeds per job")
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--task", default="adding")
    ap.add_argument("--length", type=int, default=50, help="task.length")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2, help="measured repetitions (interleaved)")
    ap.add_argument("--warm", action="store_true", help="one unmeasured repetition first")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: check that it runs")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args(argv)
    if args.quick:
        args.hidden, args.length, args.steps, args.log_every, args.repeats = 8, 5, 4, 2, 1

    from rnnlab.config import compose
    from rnnlab.loop import build, execute
    from rnnlab.packing import execute_packed

    lrs = [float(x) for x in args.lrs.split(",")]
    common = [f"cell={args.cell}", f"cell.hidden_size={args.hidden}", f"task={args.task}",
              f"task.length={args.length}", f"train.steps={args.steps}",
              f"train.log_every={args.log_every}", f"train.batch_size={args.batch}",
              f"train.num_seeds={args.seeds}", "train.checkpoint_every=0",
              "train.compilation_cache=null", "gradients.enabled=false",
              "logger.progress=false", "logger.plots=false", "logger.wandb.mode=disabled"]
    cfgs = [compose([*common, f"optim.learning_rate={lr}"]) for lr in lrs]
    root = Path(tempfile.mkdtemp(prefix="bench_packed_"))

    def unpacked(rep: int) -> float:
        t0 = time.perf_counter()
        for i, cfg in enumerate(cfgs):
            execute(cfg, root / f"alone_{rep}_{i}")
        return time.perf_counter() - t0

    def packed(rep: int) -> float:
        t0 = time.perf_counter()
        out = execute_packed([(cfg, root / f"packed_{rep}_{i}", build(cfg))
                              for i, cfg in enumerate(cfgs)])
        bad = [o for o in out if isinstance(o, Exception)]
        if bad:
            raise bad[0]
        return time.perf_counter() - t0

    print(f"[bench_packed] {len(lrs)} learning rates x {args.seeds} seeds = "
          f"{len(lrs) * args.seeds} members; {args.cell} H={args.hidden} {args.task} "
          f"T={args.length} steps={args.steps} batch={args.batch}; load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    times: dict[str, list[float]] = {"unpacked": [], "packed": []}
    reps = args.repeats + (1 if args.warm else 0)
    for rep in range(reps):
        order = [("unpacked", unpacked), ("packed", packed)]
        if rep % 2:
            order.reverse()  # interleaved: neither always runs first
        for name, fn in order:
            seconds = fn(rep)
            if args.warm and rep == 0:
                continue
            times[name].append(seconds)
            print(f"[bench_packed] repetition {rep}: {name} {seconds:.2f} s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["packed"] / med["unpacked"]
    load = os.getloadavg()
    print(f"sweep wall time (median of {args.repeats}, compilation included): unpacked "
          f"{med['unpacked']:.2f} s, packed {med['packed']:.2f} s; packed / unpacked = "
          f"{ratio:.3f} ({1 / ratio:.2f}x faster); load {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "times": times, "median": med, "ratio": ratio,
                                         "load": load}, indent=2))


if __name__ == "__main__":
    main()
