"""End to end: ``python -m rnnlab.run`` on the adding problem against a plain PyTorch loop.

Both train the same model for the same number of steps on the same problem, each in a fresh
process, run one after the other (the order alternating between repeats):

  rnnlab   python -m rnnlab.run task=adding task.length=T cell=lstm cell.hidden_size=H
           train.batch_size=B train.num_seeds=1 train.steps=N optim=adam
           optim.learning_rate=1e-3 optim.grad_clip=1.0 train.log_every=100
           train.eval_batch_size=512 logger.progress=false logger.wandb.mode=disabled
           (gradient probe at its default), in a temporary run folder; the compilation cache
           cold (a fresh folder; --cache warm: filled by an untimed run first; off: null)
  torch    python scripts/torch_adding_loop.py --steps N (the same T, H, B, Adam, clipping,
           evaluation every 100 steps on 512 sequences; data drawn on the fly)

Printed side by side, with their ratio (rnnlab / torch; below 1 rnnlab is faster):

  total wall     the process from start to exit (imports, compilation, training, evaluation,
                 the run folder's plots and summary for rnnlab)
  ms per step    after start-up: rnnlab from the time its first chunk's metrics appear in
                 metrics.jsonl to the time its last chunk's do (so compilation of the
                 training chunk is left out; the evaluations between chunks are in, as are
                 the torch loop's), divided by the steps in between; torch after its first
                 --warmup-steps steps

  python scripts/bench_e2e.py --steps 1000
  python scripts/bench_e2e.py --steps 200                     # a short validation run
  python scripts/bench_e2e.py --steps 1000 --repeats 3 --torch-threads 1 --json e2e.json
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class MetricsWatcher(threading.Thread):
    """Records when each training step's line first appears in ``metrics.jsonl``."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.seen, self.done, self.offset = path, {}, threading.Event(), 0

    def run(self) -> None:
        while not self.done.is_set():
            self.poll()
            time.sleep(0.01)
        self.poll()

    def poll(self) -> None:
        now = time.perf_counter()
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read().decode()
        except OSError:
            return
        lines = chunk.split("\n")
        complete, rest = lines[:-1], lines[-1]
        self.offset += len(chunk.encode()) - len(rest.encode())
        for line in complete:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("split") == "train":
                self.seen.setdefault(int(row["step"]), now)


def rnnlab_command(args, run_dir: Path, cache: str) -> list[str]:
    return [sys.executable, "-m", "rnnlab.run", "task=adding", f"task.length={args.length}",
            "cell=lstm", f"cell.hidden_size={args.hidden_size}",
            f"train.batch_size={args.batch_size}", "train.num_seeds=1",
            f"train.steps={args.steps}", "optim=adam", "optim.learning_rate=1e-3",
            "optim.grad_clip=1.0", "train.log_every=100", "train.eval_batch_size=512",
            "logger.progress=false", f"logger.wandb.mode={args.wandb}",
            f"train.compilation_cache={cache}", f"hydra.run.dir={run_dir}",
            *args.rnnlab_args]


def run_rnnlab(args, tmp: Path, index: int, cache: str) -> dict:
    run_dir = tmp / f"rnnlab_{index}"
    run_dir.mkdir(parents=True)
    watcher = MetricsWatcher(run_dir / "metrics.jsonl")
    watcher.start()
    t0 = time.perf_counter()
    proc = subprocess.run(rnnlab_command(args, run_dir, cache), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    watcher.done.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"rnnlab.run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    steps = sorted(watcher.seen)
    per_step = None
    if len(steps) >= 2:
        first, last = steps[0], steps[-1]
        per_step = 1e3 * (watcher.seen[last] - watcher.seen[first]) / (last - first)
    return {"wall_seconds": wall, "train_seconds": summary.get("train_seconds"),
            "ms_per_step": per_step, "first_chunk_seconds":
                None if not steps else watcher.seen[steps[0]] - t0,
            "final_eval_mse": summary["final"]["mse"]["mean"],
            "steps_run": summary.get("steps_run")}


def run_torch(args, tmp: Path, index: int) -> dict | None:
    out = tmp / f"torch_{index}.json"
    cmd = [sys.executable, str(HERE / "torch_adding_loop.py"), f"--steps={args.steps}",
           f"--length={args.length}", f"--hidden-size={args.hidden_size}",
           f"--batch-size={args.batch_size}", f"--json={out}",
           f"--warmup-steps={min(20, args.steps - 1)}"]
    if args.torch_threads is not None:
        cmd.append(f"--threads={args.torch_threads}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"torch_adding_loop.py failed ({proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    result = json.loads(out.read_text())
    return {"wall_seconds": wall, "train_seconds": result["loop_seconds"],
            "ms_per_step": result["ms_per_step"], "final_eval_mse": result["final_eval_mse"],
            "threads": result["threads"], "torch": result["torch"]}


def median(rows: list[dict], key: str):
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 1)[1])
    parser.add_argument("--steps", type=int, default=1000,
                        help="training steps, a multiple of 100 (rnnlab's log_every)")
    parser.add_argument("--length", type=int, default=100, help="T")
    parser.add_argument("--hidden-size", type=int, default=128, help="H")
    parser.add_argument("--batch-size", type=int, default=64, help="B")
    parser.add_argument("--repeats", type=int, default=1,
                        help="pairs of runs, the order alternating; medians reported")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="threads of the PyTorch loop (default: torch's own choice)")
    parser.add_argument("--wandb", choices=("disabled", "offline"), default="disabled",
                        help="rnnlab's logger.wandb.mode")
    parser.add_argument("--cache", choices=("cold", "warm", "off"), default="cold",
                        help="rnnlab's compilation cache: a fresh folder (cold), one filled by "
                             "an untimed run first (warm), or none (off)")
    parser.add_argument("--rnnlab-args", nargs="*", default=[],
                        help="further overrides for rnnlab.run (e.g. model.bptt=fused)")
    parser.add_argument("--json", default=None, help="write every number to this JSON file")
    args = parser.parse_args(argv)
    if args.steps < 200 or args.steps % 100:
        raise SystemExit(f"--steps must be a multiple of 100 (train.log_every) and >= 200, so "
                         f"that a per-step time can be taken after the first chunk; got "
                         f"{args.steps}")
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1; got {args.repeats}")

    load_start = [round(v, 2) for v in os.getloadavg()]
    rnnlab_rows, torch_rows = [], []
    with tempfile.TemporaryDirectory(prefix="rnnlab_e2e_") as tmp_name:
        tmp = Path(tmp_name)
        cache = "null" if args.cache == "off" else str(tmp / "jax_cache")
        if args.cache == "warm":
            print("# filling the compilation cache (untimed rnnlab run) ...", flush=True)
            run_rnnlab(args, tmp, -1, cache)
        for i in range(args.repeats):
            order = ("rnnlab", "torch") if i % 2 == 0 else ("torch", "rnnlab")
            for side in order:
                print(f"# repeat {i + 1}/{args.repeats}: {side} ...", flush=True)
                if side == "rnnlab":
                    # cold: every repeat starts with an empty cache of its own
                    c = str(tmp / f"jax_cache_{i}") if args.cache == "cold" else cache
                    rnnlab_rows.append(run_rnnlab(args, tmp, i, c))
                else:
                    torch_rows.append(run_torch(args, tmp, i))
    load_end = [round(v, 2) for v in os.getloadavg()]

    lines = ["| measure | rnnlab | torch | rnnlab/torch |", "|---|---|---|---|"]
    summary = {}
    for key, label, scale in (("wall_seconds", "total wall (s)", 1.0),
                              ("train_seconds", "training loop (s)", 1.0),
                              ("ms_per_step", "ms per step after start-up", 1.0)):
        r, t = median(rnnlab_rows, key), median(torch_rows, key)
        q = None if r is None or t is None else r / t
        summary[key] = {"rnnlab": r, "torch": t, "rnnlab/torch": q}
        cells = [("n/a" if v is None else f"{v * scale:.3f}") for v in (r, t, q)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    mse_r, mse_t = median(rnnlab_rows, "final_eval_mse"), median(torch_rows, "final_eval_mse")
    lines.append(f"| final held-out MSE | {mse_r:.4f} | {mse_t:.4f} | |")
    first = median(rnnlab_rows, "first_chunk_seconds")
    print(f"# adding T={args.length}, LSTM H={args.hidden_size}, B={args.batch_size}, "
          f"{args.steps} steps, Adam 1e-3, clip 1.0, one seed; repeats {args.repeats}; "
          f"rnnlab W&B {args.wandb}, compilation cache {args.cache}; torch threads "
          f"{torch_rows[0]['threads']}")
    print(f"# load average: start {load_start}, end {load_end}")
    print("\n".join(lines))
    if first is not None:
        print(f"- rnnlab: process start to the first chunk's metrics {first:.1f} s (imports, "
              f"compilation, the initial evaluation and gradient probe, 100 steps)")
    verdict = summary["wall_seconds"]["rnnlab/torch"]
    print(f"- target (rnnlab reaches {args.steps} steps in less wall time than the PyTorch "
          f"loop): {'met' if verdict < 1 else 'not met'} ({verdict:.3f})")
    if args.json:
        result = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                  "args": vars(args), "load_average_start": load_start,
                  "load_average_end": load_end, "summary": summary,
                  "rnnlab_runs": rnnlab_rows, "torch_runs": torch_rows,
                  "rnnlab_command": rnnlab_command(args, Path("RUN_DIR"), "CACHE")}
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
