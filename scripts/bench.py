"""Times one training step of each recurrent cell: rnnlab vs Flax nn.RNN vs PyTorch.

A training step is forward + backpropagation through time in float32 with the loss
``sum(y**2)`` over all outputs, gradients with respect to the parameters: for JAX,
``jax.jit(jax.grad(loss))`` (compiled, then timed with ``block_until_ready``); for PyTorch,
``module(x)``, ``loss.backward()`` (cuDNN on a GPU) and a device synchronisation. Every
implementation of a shape is warmed up first, then the repetitions are interleaved (one of each
in turn) so that drift in the machine's load hits all alike; the table reports medians.

  rnnlab   rnnlab.recurrent.Recurrent(cell), projection="auto" (in_scan on CPU, hoisted on
           GPU/TPU); the other projection is timed too ("other projection ms")
  flax     flax.linen.RNN(cell) with nn.OptimizedLSTMCell and nn.LSTMCell (lstm), nn.GRUCell
           (gru), nn.SimpleCell (rnn); the peephole LSTM has no Flax cell (n/a)
  torch    torch.nn.LSTM / GRU / RNN(tanh), batch_first, when torch imports (n/a otherwise)

Imports only rnnlab.cells / rnnlab.recurrent, jax, flax, numpy and (optionally) torch; no
hydra or wandb. Examples:

  python scripts/bench.py --quick
  python scripts/bench.py --device gpu --out bench_gpu.md
  python scripts/bench.py --shapes 64,128,32,128 --cells lstm,gru --no-torch --out cpu.csv
"""

import argparse
import csv
import dataclasses
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

# JAX and PyTorch share the GPU in one process: keep JAX from preallocating 75% of it.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.cells import GRU, LSTM, PeepholeLSTM, SimpleRNN
from rnnlab.recurrent import Recurrent, resolve_projection

DEFAULT_SHAPES = "64,128,32,128;32,512,64,256"  # B,T,D,H;...
QUICK_SHAPES = "8,16,8,16;16,64,16,32"
CELLS = ("lstm", "peephole", "gru", "rnn")

RNNLAB_CELLS = {"lstm": LSTM, "peephole": PeepholeLSTM, "gru": GRU, "rnn": SimpleRNN}
# cell -> [(label, Flax cell class)]; the first is the one rnnlab/flax compares against.
FLAX_CELLS = {
    "lstm": [("OptimizedLSTMCell", nn.OptimizedLSTMCell), ("LSTMCell", nn.LSTMCell)],
    "peephole": [],
    "gru": [("GRUCell", nn.GRUCell)],
    "rnn": [("SimpleCell", nn.SimpleCell)],
}
TORCH_MODULES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}  # peephole: none


@dataclasses.dataclass(frozen=True)
class Shape:
    B: int
    T: int
    D: int
    H: int

    def __str__(self) -> str:
        return f"{self.B}x{self.T}x{self.D}x{self.H}"


def parse_shapes(text: str) -> list[Shape]:
    shapes = []
    for part in text.split(";"):
        dims = part.strip().split(",")
        if len(dims) != 4 or not all(d.strip().isdigit() and int(d) > 0 for d in dims):
            raise SystemExit(f"--shapes takes 'B,T,D,H;B,T,D,H...' positive ints; got {part!r}")
        shapes.append(Shape(*(int(d) for d in dims)))
    return shapes


# ---- the timed steps: each builder returns a zero-argument function running one step --------
def jax_step(model: nn.Module, shape: Shape, seed: int) -> Callable[[], None]:
    kx, kp = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(kx, (shape.B, shape.T, shape.D), jnp.float32)
    params = model.init(kp, x)

    def loss(params, x):
        y = model.apply(params, x)
        y = y[0] if isinstance(y, tuple) else y  # Recurrent returns (y, carry)
        return jnp.sum(y * y)

    grad = jax.jit(jax.grad(loss))

    def run():
        jax.block_until_ready(grad(params, x))

    return run


def rnnlab_step(cell: str, shape: Shape, unroll: int, projection: str) -> Callable[[], None]:
    model = Recurrent(RNNLAB_CELLS[cell](hidden_size=shape.H), unroll=unroll,
                      projection=projection)
    return jax_step(model, shape, seed=0)


def flax_step(flax_cell, shape: Shape, unroll: int) -> Callable[[], None]:
    return jax_step(nn.RNN(flax_cell(features=shape.H), unroll=unroll), shape, seed=0)


def torch_step(torch, cell: str, shape: Shape, device: str) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    module = getattr(torch.nn, TORCH_MODULES[cell])(shape.D, shape.H, batch_first=True)
    module = module.to(device)
    x = torch.randn(shape.B, shape.T, shape.D, generator=gen).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run():
        module.zero_grad(set_to_none=True)
        y, _ = module(x)
        (y * y).sum().backward()
        sync()

    return run


# ---- measurement ---------------------------------------------------------------------------
def measure(steps: dict[str, Callable[[], None]], warmup: int, reps: int) -> dict[str, float]:
    """Median milliseconds of each step; repetitions interleaved across the steps."""
    for run in steps.values():
        for _ in range(warmup):  # the first call compiles
            run()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(reps):
        for name, run in steps.items():
            t0 = time.perf_counter()
            run()
            times[name].append(1e3 * (time.perf_counter() - t0))
    return {name: statistics.median(ts) for name, ts in times.items()}


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def bench_shape(shape: Shape, cells: list[str], torch, torch_device: str, args) -> list[dict]:
    steps: dict[str, Callable[[], None]] = {}
    for cell in cells:
        for projection in ("hoisted", "in_scan"):
            steps[f"rnnlab/{cell}/{projection}"] = rnnlab_step(cell, shape, args.unroll,
                                                               projection)
        for label, flax_cell in FLAX_CELLS[cell]:
            steps[f"flax/{cell}/{label}"] = flax_step(flax_cell, shape, args.unroll)
        if torch is not None and cell in TORCH_MODULES:
            steps[f"torch/{cell}"] = torch_step(torch, cell, shape, torch_device)
    ms = measure(steps, args.warmup, args.reps)
    rows = []
    for cell in cells:
        auto = resolve_projection("auto")
        other = "hoisted" if auto == "in_scan" else "in_scan"
        r, t = ms[f"rnnlab/{cell}/{auto}"], ms.get(f"torch/{cell}")
        variants = FLAX_CELLS[cell] or [("n/a", None)]
        for label, _ in variants:
            f = ms.get(f"flax/{cell}/{label}")
            rows.append({"shape": str(shape), "cell": cell, "rnnlab_ms": r,
                         "projection": auto, "other_ms": ms[f"rnnlab/{cell}/{other}"],
                         "flax_cell": label,
                         "flax_ms": f, "torch_ms": t, "rnnlab/flax": ratio(r, f),
                         "rnnlab/torch": ratio(r, t)})
    return rows


COLUMNS = ["shape", "cell", "projection", "rnnlab_ms", "other_ms", "flax_cell", "flax_ms",
           "torch_ms", "rnnlab/flax", "rnnlab/torch"]


def as_text(row: dict, key: str) -> str:
    v = row[key]
    if isinstance(v, str):
        return v
    return fmt(v, 3 if "/" in key else 2)


def markdown_table(rows: list[dict]) -> str:
    head = ["B×T×D×H", "cell", "projection (auto)", "rnnlab ms", "other projection ms",
            "flax cell", "flax ms", "torch ms", "rnnlab/flax", "rnnlab/torch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(as_text(r, k) for k in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def environment(torch, torch_device: str, args) -> dict[str, str]:
    torch_note = "skipped (--no-torch)" if args.no_torch else "not importable"
    env = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "jax_device": str(jax.devices()[0]),
        "cpu_count": str(os.cpu_count()),
        "torch": torch_note if torch is None else torch.__version__,
        "torch_device": "n/a" if torch is None else torch_device,
        "precision": args.precision,
        "reps": f"median of {args.reps} (after {args.warmup} warm-up calls), interleaved",
        "unroll": str(args.unroll),
        "loss": "sum(y**2), grad w.r.t. parameters, float32",
    }
    if torch is not None:
        env["torch_threads"] = str(torch.get_num_threads())
        if torch_device == "cuda":
            env["torch_gpu"] = torch.cuda.get_device_name()
    return env


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 1)[1])
    parser.add_argument("--shapes", default=None,
                        help=f"B,T,D,H;... (default {DEFAULT_SHAPES!r}; --quick: {QUICK_SHAPES!r})")
    parser.add_argument("--quick", action="store_true", help="small shapes, 5 repetitions")
    parser.add_argument("--cells", default=",".join(CELLS), help=f"subset of {CELLS}")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="cpu: JAX and PyTorch on the CPU; gpu: both on the GPU (fails "
                             "without one); auto: the GPU when JAX has one")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--precision", choices=("default", "highest"), default="default",
                        help="float32 matmul precision: default lets JAX and PyTorch use TF32 "
                             "on GPUs that have it; highest forbids it in both")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls after compiling")
    parser.add_argument("--unroll", type=int, default=1, help="scan unroll (rnnlab and flax)")
    parser.add_argument("--out", default=None, help="write the table to this .md or .csv file")
    args = parser.parse_args(argv)
    args.reps = args.reps or (5 if args.quick else 20)
    shapes = parse_shapes(args.shapes or (QUICK_SHAPES if args.quick else DEFAULT_SHAPES))
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = sorted(set(cells) - set(CELLS))
    if unknown:
        raise SystemExit(f"--cells {unknown} unknown; accepted: {CELLS}")
    if args.out and not args.out.endswith((".md", ".csv")):
        raise SystemExit(f"--out must end in .md or .csv; got {args.out!r}")

    if args.device == "cpu":
        jax.config.update("jax_platforms", "cpu")
    if args.precision == "highest":
        jax.config.update("jax_default_matmul_precision", "highest")
    on_gpu = jax.default_backend() == "gpu"
    if args.device == "gpu" and not on_gpu:
        raise SystemExit(f"--device gpu but JAX's backend is {jax.default_backend()!r}")

    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("torch is not importable: PyTorch columns are n/a", file=sys.stderr)
    torch_device = "cpu"
    if torch is not None:
        if on_gpu and torch.cuda.is_available():
            torch_device = "cuda"
        elif on_gpu:
            raise SystemExit("JAX runs on the GPU but torch.cuda is unavailable; use --no-torch "
                             "or --device cpu")
        allow_tf32 = args.precision == "default"
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        torch.backends.cudnn.allow_tf32 = allow_tf32

    env = environment(torch, torch_device, args)
    for k, v in env.items():
        print(f"# {k}: {v}")
    rows = []
    for shape in shapes:
        print(f"# shape B×T×D×H = {shape} ...", flush=True)
        rows += bench_shape(shape, cells, torch, torch_device, args)
    table = markdown_table(rows)
    print(table)
    if args.out:
        folder = os.path.dirname(os.path.abspath(args.out))
        os.makedirs(folder, exist_ok=True)
        if args.out.endswith(".csv"):
            with open(args.out, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=[*COLUMNS, *env])
                writer.writeheader()
                for row in rows:
                    writer.writerow({**{k: as_text(row, k) for k in COLUMNS}, **env})
        else:
            with open(args.out, "w") as f:
                f.write("".join(f"- {k}: {v}\n" for k, v in env.items()) + "\n" + table + "\n")
        print(f"# wrote {args.out}")


if __name__ == "__main__":
    main()
