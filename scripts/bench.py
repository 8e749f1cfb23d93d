"""Times one training step of each recurrent cell: rnnlab vs Flax nn.RNN vs PyTorch.

Mode ``train`` (the default) times a full training step, float32, in one process:

  forward over [B, T, D] -> final hidden state h_T [B, H] -> dense head [H, O=1] -> loss
  mean((head(h_T) - target)**2) -> backpropagation through time -> global-norm clipping to
  1.0 -> Adam (lr 1e-3, eps 1e-7, rnnlab's defaults) -> parameters updated.

  rnnlab   RecurrentStack((cell,)) + flax Dense head, optax.chain(clip_by_global_norm(1.0),
           adam), one ``jax.jit`` program with the parameters and optimizer state donated.
           Timed with the default ``bptt`` and, when the installed rnnlab has the option,
           with ``bptt="fused"`` and ``bptt="autodiff"`` side by side (n/a otherwise, or for
           a cell the fused path refuses). ``projection="auto"``.
  flax     flax.linen.RNN(cell, return_carry=True) with nn.OptimizedLSTMCell (lstm),
           nn.GRUCell (gru), nn.SimpleCell (rnn), the same head, loss and optax chain; the
           peephole LSTM has no Flax cell (n/a).
  torch    torch.nn.LSTM / GRU / RNN(tanh), batch_first, + nn.Linear head, the same loss,
           torch.nn.utils.clip_grad_norm_(1.0), torch.optim.Adam(lr 1e-3, eps 1e-7); on the
           CPU with --torch-threads threads (default: torch's own count), when torch imports.

  members  the rnnlab step ``jax.vmap``-ed over S independent members (parameters,
           optimizer states and batches of their own; rnnlab's loop trains seeds this way),
           S in --members (default 1,8): time per model = time / S, and the ratio
           (time per model at S) / (time at S=1). The members are sharded over the local
           devices as rnnlab shards a run's seeds (as many as divide S; on a CPU rnnlab
           makes one device per core), and the largest S runs on one device too
           (variant devices=1). Beside it a hand-written LSTM step with
           the members written into the recurrent product in other layouts (batched
           dot_general 'sbh,shg->sbg', members minor 'bsh,shg->bsg', one block-diagonal
           matmul, S separate dots), and a summary of the HLO XLA compiles for the vmapped
           step's loops (dots, transposes, copies inside while bodies).
  floor    the machine's float32 matmul rate (GFLOP/s) at the step's recurrent-product size
           and for a large square matmul, and the step's matmul FLOPs (forward: input and
           recurrent products and the head; backward: the weight gradients of all three and
           the data gradient through the recurrent product and the head), divided by each
           rate: a lower bound no implementation of that step can beat on this machine.

Mode ``grad`` is the earlier benchmark: forward + BPTT of one layer, loss sum(y**2) over all
outputs, gradients only (no head, no clipping, no optimizer).

Every implementation of a shape is compiled and warmed up first, then the repetitions are
interleaved (one of each in turn, the order rotated every round) so that drift in the
machine's load hits all alike; the tables report medians, and the train mode's ratios are
the median of the per-round ratios (paired: robust to load that changes between rounds).
Ratios above 1 mean the first-named side is slower. The train table also gives each side's
minor page faults per step: with glibc's defaults a large block freed by one step is unmapped
and mapped afresh by the next, and every page of it faults on first touch (PyTorch's CPU
tensors and XLA:CPU's buffers alike); ``--malloc reuse`` reruns the script with glibc
tunables that keep freed memory for reuse, for the comparison without that cost.

Imports only rnnlab.cells / rnnlab.recurrent, jax, flax, optax, numpy and (optionally) torch;
no hydra or wandb. Examples:

  python scripts/bench.py --quick                          # every part on small shapes
  python scripts/bench.py --json bench_cpu.json            # default shapes, all parts
  python scripts/bench.py --parts step --cells lstm,gru    # only the step table
  python scripts/bench.py --mode grad --out grad.md        # the forward + BPTT benchmark
  python scripts/bench.py --device gpu --no-torch --out bench_gpu.md
"""

import argparse
import csv
import dataclasses
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable

# JAX and PyTorch share the GPU in one process: keep JAX from preallocating 75% of it.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnlab.cells import GRU, LSTM, PeepholeLSTM, SimpleRNN
from rnnlab.recurrent import Recurrent, RecurrentStack, resolve_projection

DEFAULT_SHAPES = "64,128,32,128;32,512,64,256;64,100,2,128"  # B,T,D,H;...
QUICK_SHAPES = "16,32,4,32"
MEMBERS_SHAPE = "64,100,2,128"  # the adding task's LSTM (issue's members measurement)
QUICK_MEMBERS_SHAPE = "16,32,2,32"
CELLS = ("lstm", "peephole", "gru", "rnn")
PARTS = ("step", "members", "layouts", "hlo", "floor")
# glibc malloc tunables (mallopt(3)) that keep freed memory mapped for reuse: one arena (the
# others are mmap-ed heaps that serve a large block from a fresh mapping: XLA:CPU's
# temporaries, ~170 MB per step at 32x512x64x256, are allocated on its worker threads), no
# mmap for any block, never trim the heap, grow it 256 MiB at a time
MALLOC_REUSE = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0",
                "MALLOC_TRIM_THRESHOLD_": "4294967295", "MALLOC_TOP_PAD_": "268435456"}
OUT_FEATURES = 1  # O: the head's width (a regression read at the last step, as the adding task)
LEARNING_RATE, ADAM_EPS, CLIP = 1e-3, 1e-7, 1.0  # rnnlab's conf/optim/adam.yaml

RNNLAB_CELLS = {"lstm": LSTM, "peephole": PeepholeLSTM, "gru": GRU, "rnn": SimpleRNN}
GATES = {"lstm": 4, "peephole": 4, "gru": 3, "rnn": 1}  # G / H of each cell's products
# cell -> [(label, Flax cell class)]; the first is the one rnnlab/flax compares against.
FLAX_CELLS = {
    "lstm": [("OptimizedLSTMCell", nn.OptimizedLSTMCell), ("LSTMCell", nn.LSTMCell)],
    "peephole": [],
    "gru": [("GRUCell", nn.GRUCell)],
    "rnn": [("SimpleCell", nn.SimpleCell)],
}
TORCH_MODULES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}  # peephole: none
HAS_BPTT = "bptt" in {f.name for f in dataclasses.fields(Recurrent)}


@dataclasses.dataclass(frozen=True)
class Shape:
    B: int
    T: int
    D: int
    H: int

    def __str__(self) -> str:
        return f"{self.B}x{self.T}x{self.D}x{self.H}"


def parse_shapes(text: str, flag: str = "--shapes") -> list[Shape]:
    shapes = []
    for part in text.split(";"):
        dims = part.strip().split(",")
        if len(dims) != 4 or not all(d.strip().isdigit() and int(d) > 0 for d in dims):
            raise SystemExit(f"{flag} takes 'B,T,D,H;B,T,D,H...' positive ints; got {part!r}")
        shapes.append(Shape(*(int(d) for d in dims)))
    return shapes


def parse_ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise SystemExit(f"{flag} takes comma-separated positive ints; got {text!r}")
    return values


# ---- mode grad: forward + BPTT, loss sum(y**2), gradients only --------------------------
def jax_grad_step(model: nn.Module, shape: Shape, seed: int) -> Callable[[], None]:
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


def torch_grad_step(torch, cell: str, shape: Shape, device: str) -> Callable[[], None]:
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


# ---- mode train: forward, BPTT, clipping, Adam ------------------------------------------
class RnnlabRegressor(nn.Module):
    """rnnlab's stack with one layer, read at its final hidden state, and a dense head."""

    cell: object
    unroll: int = 1
    projection: str = "auto"
    bptt: str | None = None  # None: the installed rnnlab's default (or no such option)
    remat: bool = False

    @nn.compact
    def __call__(self, x_BxTxD):
        opts = {} if self.bptt is None else {"bptt": self.bptt}
        _, carries = RecurrentStack((self.cell,), unroll=self.unroll, remat=self.remat,
                                    projection=self.projection, **opts)(x_BxTxD)
        return nn.Dense(OUT_FEATURES)(carries[-1].h)


class FlaxRegressor(nn.Module):
    """flax.linen.RNN read at its final hidden state, and the same dense head."""

    cell: nn.Module
    unroll: int = 1

    @nn.compact
    def __call__(self, x_BxTxD):
        carry, _ = nn.RNN(self.cell, return_carry=True, unroll=self.unroll)(x_BxTxD)
        h_BxH = carry[1] if isinstance(carry, tuple) else carry  # LSTM carries are (c, h)
        return nn.Dense(OUT_FEATURES)(h_BxH)


def optimizer() -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(CLIP), optax.adam(LEARNING_RATE, eps=ADAM_EPS))


def data(shape: Shape, seed: int, members: int | None = None):
    lead = () if members is None else (members,)
    kx, ky = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(kx, (*lead, shape.B, shape.T, shape.D), jnp.float32)
    y = jax.random.normal(ky, (*lead, shape.B, OUT_FEATURES), jnp.float32)
    return x, y


def make_train_step(model: nn.Module, tx: optax.GradientTransformation):
    def loss_fn(params, x, y):
        return jnp.mean((model.apply(params, x) - y) ** 2)

    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


class Stepper:
    """Holds the training state between calls; ``run()`` is one step, blocked on."""

    def __init__(self, fn, params, opt_state, x, y):
        self.fn, self.state, self.x, self.y = fn, (params, opt_state), x, y

    def __call__(self) -> None:
        params, opt_state, loss = self.fn(*self.state, self.x, self.y)
        self.state = (params, opt_state)
        jax.block_until_ready(loss)


def member_devices(members: int) -> int:
    """The devices rnnlab shards ``members`` over by default (``train.devices=null``:
    :func:`rnnlab.loop.member_layout`, the fewest members per device; on a CPU one device per
    core, see rnnlab/__init__.py)."""
    from rnnlab.loop import member_layout

    return member_layout(members, len(jax.local_devices()))[0]


def jax_train_step(model: nn.Module, shape: Shape, members: int | None = None,
                   seed: int = 0, chunk: int | None = None, devices: int = 1) -> Stepper:
    """One jitted training step of ``model``; with ``members``, ``jax.vmap`` of it over that
    many independent members (parameters, optimizer states and batches of their own); with
    ``chunk`` too, the members run ``chunk`` at a time: ``jax.lax.map`` over
    ``members // chunk`` groups of a step vmapped over ``chunk`` (same results); with
    ``devices`` > 1, the members sharded over that many local devices (as rnnlab shards a
    run's seeds: :func:`member_devices`), padded to a multiple of them with more members as
    rnnlab pads (the step then computes the padded count; per model, divide by ``members``)."""
    tx = optimizer()
    if members is not None and devices > 1:
        members = -(-members // devices) * devices
    x, y = data(shape, seed, members)
    step = make_train_step(model, tx)
    if members is None:
        params = model.init(jax.random.key(seed + 1), x)
        opt_state = tx.init(params)
    else:
        keys = jax.random.split(jax.random.key(seed + 1), members)
        params = jax.vmap(model.init)(keys, x)
        opt_state = jax.vmap(tx.init)(params)
        step = jax.vmap(step)
        if chunk is not None and chunk < members:
            if members % chunk:
                raise ValueError(f"chunk={chunk} must divide members={members}")
            step = chunked(step, members // chunk)
        if devices > 1:
            from jax.sharding import Mesh, NamedSharding, PartitionSpec

            mesh = Mesh(np.asarray(jax.local_devices()[:devices]), ("members",))
            params, opt_state, x, y = jax.device_put(
                (params, opt_state, x, y), NamedSharding(mesh, PartitionSpec("members")))
    return Stepper(jax.jit(step, donate_argnums=(0, 1)), params, opt_state, x, y)


def chunked(step_v, groups: int):
    """``step_v`` (vmapped over members) applied to ``groups`` groups in turn."""
    def split(t):
        return jax.tree.map(lambda v: v.reshape(groups, v.shape[0] // groups, *v.shape[1:]), t)

    def merge(t):
        return jax.tree.map(lambda v: v.reshape(v.shape[0] * v.shape[1], *v.shape[2:]), t)

    def step(*args):
        return merge(jax.lax.map(lambda a: step_v(*a), split(args)))

    return step


def rnnlab_model(cell: str, shape: Shape, unroll: int, bptt: str | None,
                 projection: str = "auto", remat: bool = False) -> nn.Module:
    return RnnlabRegressor(RNNLAB_CELLS[cell](hidden_size=shape.H), unroll=unroll, bptt=bptt,
                           projection=projection, remat=remat)


def torch_train_step(torch, cell: str, shape: Shape, device: str) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    rnn = getattr(torch.nn, TORCH_MODULES[cell])(shape.D, shape.H, batch_first=True).to(device)
    head = torch.nn.Linear(shape.H, OUT_FEATURES).to(device)
    params = [*rnn.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=LEARNING_RATE, eps=ADAM_EPS)
    x = torch.randn(shape.B, shape.T, shape.D, generator=gen).to(device)
    target = torch.randn(shape.B, OUT_FEATURES, generator=gen).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run():
        opt.zero_grad(set_to_none=True)
        _, h_n = rnn(x)
        h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # LSTM: (h_n, c_n)
        loss = ((head(h_n[-1]) - target) ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        loss.item()  # waits for the step, as block_until_ready does
        sync()

    return run


# ---- measurement ---------------------------------------------------------------------------
class Timings(dict):
    """Median milliseconds per step name (the dict), with each round's times (``rounds``:
    name -> list of ms, round ``i`` of every name measured within the same round) and the
    median minor page faults per call (``faults``)."""

    def __init__(self, medians: dict, rounds: dict, faults: dict):
        super().__init__(medians)
        self.rounds, self.faults = rounds, faults

    def paired(self, a: str, b: str) -> float | None:
        """The median over rounds of ``time(a) / time(b)`` within each round: the ratio of
        two steps measured side by side, robust to load that changes between rounds (the
        ratio of the medians is not)."""
        if a not in self.rounds or b not in self.rounds:
            return None
        return statistics.median(x / y for x, y in zip(self.rounds[a], self.rounds[b],
                                                       strict=True))


def minor_faults() -> int:
    """This process's minor page faults so far (first touches of freshly mapped memory)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(steps: dict[str, Callable[[], None]], warmup: int, reps: int) -> Timings:
    """Median milliseconds of each step; repetitions interleaved across the steps, the order
    rotated every round (so that no step always follows the same one: PyTorch's and XLA's
    thread pools spin for a while after a call), with the page faults of every call."""
    for run in steps.values():
        for _ in range(warmup):  # the first call compiles
            run()
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    faults: dict[str, list[int]] = {name: [] for name in names}
    for i in range(reps):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            f0, t0 = minor_faults(), time.perf_counter()
            steps[name]()
            times[name].append(1e3 * (time.perf_counter() - t0))
            faults[name].append(minor_faults() - f0)
    return Timings({name: statistics.median(ts) for name, ts in times.items()}, times,
                   {name: statistics.median(fs) for name, fs in faults.items()})


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def fmt(v, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str | int):
        return str(v)
    return f"{v:.{digits}f}"


def try_build(builder: Callable[[], Callable[[], None]], label: str, notes: list[str]):
    """The step, compiled and run once; None (with a note) when the variant is refused."""
    try:
        run = builder()
        run()
        return run
    except (ValueError, TypeError, NotImplementedError) as err:
        notes.append(f"{label}: n/a ({type(err).__name__}: {str(err).splitlines()[0][:120]})")
        return None


def markdown_table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt(v, 3 if isinstance(v, float) and abs(v) < 10 else 2)
                                for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ---- FLOPs and the machine's matmul rate ----------------------------------------------------
def step_flops(cell: str, shape: Shape) -> float:
    """Matmul FLOPs of one training step (2 per multiply-add): forward input product
    ``[B,D]x[D,G]`` and recurrent product ``[B,H]x[H,G]`` per step and the head ``[B,H]x[H,O]``;
    backward the weight gradients of all three (``[D,B]x[B,G]``, ``[H,B]x[B,G]``, the head's)
    and the data gradients through the recurrent product (``[B,G]x[G,H]``) and the head.
    The input's own gradient is not needed. Elementwise work (gates, Adam) is not counted."""
    B, T, D, H = shape.B, shape.T, shape.D, shape.H
    G = GATES[cell] * H
    per_step = 2 * B * G * (2 * D + 3 * H)
    head = 2 * B * H * OUT_FEATURES * 3
    return float(T * per_step + head)


def einsum_rate(spec: str, sizes: dict[str, int], reps: int) -> float:
    """GFLOP/s of a jitted float32 ``jnp.einsum(spec, a, b)`` (2 FLOPs per multiply-add;
    median of ``reps``), e.g. ``"mk,kn->mn"`` for a matmul; ``sizes`` maps each index letter
    to its length. Several products run per timed call, so that dispatch does not dominate
    small sizes."""
    lhs, rhs = spec.split("->")[0].split(",")
    a = jax.random.normal(jax.random.key(0), tuple(sizes[c] for c in lhs), jnp.float32)
    b = jax.random.normal(jax.random.key(1), tuple(sizes[c] for c in rhs), jnp.float32)
    flops = 2.0 * float(np.prod([sizes[c] for c in set(lhs + rhs)]))
    inner = max(1, int(4e8 // flops))

    @jax.jit
    def many(a, b):
        # one element of the operand, carried through the loop, is overwritten with the loop
        # index each time (in place: O(1)), so that XLA cannot hoist the product out of the
        # loop; the last product is the result. (An earlier version added i * 1e-9 to the
        # whole operand and summed the products: elementwise passes per product that cost
        # XLA up to half the rate of the large products against PyTorch's bare torch.mm. An
        # optimization barrier does not stop the hoisting: XLA:CPU removes barriers first.)
        out = jax.eval_shape(lambda: jnp.einsum(spec, a, b))

        def body(i, carry):
            a_i = carry[0].at[(0,) * a.ndim].set(i.astype(a.dtype))
            return a_i, jnp.einsum(spec, a_i, b)
        return jax.lax.fori_loop(0, inner, body, (a, jnp.zeros(out.shape, out.dtype)))[1]

    jax.block_until_ready(many(a, b))
    ms = measure({"mm": lambda: jax.block_until_ready(many(a, b))}, 1, reps)["mm"]
    return flops * inner / (ms * 1e-3) / 1e9


def matmul_rate(m: int, k: int, n: int, reps: int) -> float:
    """GFLOP/s of a jitted float32 ``[m,k]x[k,n]`` matmul."""
    return einsum_rate("mk,kn->mn", {"m": m, "k": k, "n": n}, reps)


def torch_matmul_rate(torch, m: int, k: int, n: int, reps: int) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    inner = max(1, int(4e8 // (2 * m * k * n)))

    def run():
        for _ in range(inner):
            torch.mm(a, b)

    ms = measure({"mm": run}, 1, reps)["mm"]
    return 2.0 * m * k * n * inner / (ms * 1e-3) / 1e9


def matmul_rates(shapes: list[Shape], members_shape: Shape, members: int, torch,
                 torch_device: str, args) -> tuple[dict, dict]:
    """The float32 matmul rates the floor column uses (each shape's recurrent product
    ``[B,H]x[H,4H]``, and a large square one), and, at the members shape, the products of
    the step as XLA runs them: the weight gradient ``[H,B]x[B,G]`` (contracting the batch),
    and the vmapped (batched) forms with S members."""
    n = 256 if args.quick else 2048
    reps = 3 if args.quick else 7
    table: dict = {}
    rates: dict = {"step_size": {}, "large": None}

    def add(label, spec, sizes, torch_mkn=None):
        entry = {"einsum": spec, "sizes": sizes, "jax_gflops": einsum_rate(spec, sizes, reps)}
        if torch_mkn is not None and torch is not None and torch_device == "cpu":
            entry["torch_gflops"] = torch_matmul_rate(torch, *torch_mkn, reps)
        table[label] = entry
        return entry["jax_gflops"]

    for shape in shapes:
        B, H = shape.B, shape.H
        if (B, H) not in rates["step_size"]:
            rates["step_size"][(B, H)] = add(f"h@U B={B} H={H}", "bh,hg->bg",
                                             {"b": B, "h": H, "g": 4 * H}, (B, H, 4 * H))
    rates["large"] = add(f"large {n}^3", "mk,kn->mn", {"m": n, "k": n, "n": n}, (n, n, n))
    if not args.quick:
        # the fused backward pass's one weight-gradient product over all steps (rows
        # [h_{t-1}, x_t, 1] against the gate gradients): the share of the step where PyTorch's
        # GEMM and XLA:CPU's differ most
        for shape in shapes:
            K, R, G = shape.T * shape.B, shape.H + shape.D + 1, 4 * shape.H
            add(f"fused dU,dW,db [H+D+1,T*B]x[T*B,4H] {shape}", "rk,kg->rg",
                {"r": R, "k": K, "g": G}, (R, K, G))
    if not args.quick and ("members" in args.parts or "layouts" in args.parts
                           or "floor" in args.parts):
        B, H, S = members_shape.B, members_shape.H, members
        dims = {"s": S, "b": B, "h": H, "g": 4 * H}
        add(f"h@U B={B} H={H} (members shape)", "bh,hg->bg", dims)
        add(f"dU = h^T dz B={B} H={H}", "bh,bg->hg", dims)
        add(f"h@U vmapped S={S}", "sbh,shg->sbg", dims)
        add(f"dU vmapped S={S}", "sbh,sbg->shg", dims)
        add(f"h@U members in rows [S*B,H]x[H,G] (one shared U, for scale) S={S}",
            "bh,hg->bg", {**dims, "b": S * B})
    print("\n## float32 matmul rate (GFLOP/s)")
    for label, m in table.items():
        print(f"- {label} ({m['einsum']}): jax {m['jax_gflops']:.1f}"
              + (f", torch {m['torch_gflops']:.1f}" if "torch_gflops" in m else ""))
    print("(the floor columns divide each shape's matmul FLOPs by its h@U rate and by the "
          "large rate)", flush=True)
    return rates, table


# ---- part: the training step table ----------------------------------------------------------
def bench_train_shape(shape: Shape, cells: list[str], torch, torch_device: str, args,
                      rates: dict) -> tuple[list[dict], list[str]]:
    steps: dict[str, Callable[[], None]] = {}
    notes: list[str] = []
    bptts = ["fused", "autodiff"] if HAS_BPTT else []
    for cell in cells:
        steps[f"rnnlab/{cell}"] = try_build(
            lambda c=cell: jax_train_step(rnnlab_model(c, shape, args.unroll, None), shape),
            f"rnnlab {cell} {shape}", notes)
        for bptt in bptts:
            steps[f"rnnlab/{cell}/{bptt}"] = try_build(
                lambda c=cell, b=bptt: jax_train_step(rnnlab_model(c, shape, args.unroll, b),
                                                      shape),
                f"rnnlab {cell} bptt={bptt} {shape}", notes)
        for label, flax_cell in FLAX_CELLS[cell][:1 if args.quick else None]:
            steps[f"flax/{cell}/{label}"] = jax_train_step(
                FlaxRegressor(flax_cell(features=shape.H), unroll=args.unroll), shape)
        if torch is not None and cell in TORCH_MODULES:
            steps[f"torch/{cell}"] = torch_train_step(torch, cell, shape, torch_device)
    ms = measure({k: v for k, v in steps.items() if v is not None}, args.warmup, args.reps)
    rows = []
    for cell in cells:
        r, t = ms.get(f"rnnlab/{cell}"), ms.get(f"torch/{cell}")
        faults = {"rnnlab_faults": ms.faults.get(f"rnnlab/{cell}"),
                  "torch_faults": ms.faults.get(f"torch/{cell}")}
        fused, auto = ms.get(f"rnnlab/{cell}/fused"), ms.get(f"rnnlab/{cell}/autodiff")
        fused_auto = ms.paired(f"rnnlab/{cell}/fused", f"rnnlab/{cell}/autodiff")
        flops = step_flops(cell, shape)
        for label, _ in FLAX_CELLS[cell][:1 if args.quick else None] or [("n/a", None)]:
            f = ms.get(f"flax/{cell}/{label}")
            rows.append({
                "shape": str(shape), "cell": cell, "rnnlab_ms": r, "fused_ms": fused,
                "autodiff_ms": auto, "fused/autodiff": fused_auto, "flax_cell": label,
                "flax_ms": f, "torch_ms": t,
                "rnnlab/flax": ms.paired(f"rnnlab/{cell}", f"flax/{cell}/{label}"),
                "rnnlab/torch": ms.paired(f"rnnlab/{cell}", f"torch/{cell}"),
                "rnnlab/torch_of_medians": ratio(r, t), **faults,
                "faults": f"{fmt(faults['rnnlab_faults'], 0)}, {fmt(faults['torch_faults'], 0)}",
                "step_gflop": flops / 1e9,
                "floor_ms_step_size": 1e3 * flops / (rates["step_size"][(shape.B, shape.H)]
                                                     * 1e9),
                "floor_ms_large": 1e3 * flops / (rates["large"] * 1e9)})
    # the peephole LSTM against the LSTM (target: within 1.15x)
    for row in rows:
        if row["cell"] == "peephole":
            row["peephole/lstm"] = ms.paired("rnnlab/peephole", "rnnlab/lstm")
    return rows, notes


TRAIN_HEAD = ["B×T×D×H", "cell", "rnnlab ms", "fused ms", "autodiff ms", "fused/autodiff",
              "flax cell", "flax ms", "torch ms", "rnnlab/flax", "rnnlab/torch",
              "page faults per step (rnnlab, torch)", "GFLOP", "floor ms (step-size rate)",
              "floor ms (large rate)"]
TRAIN_KEYS = ["shape", "cell", "rnnlab_ms", "fused_ms", "autodiff_ms", "fused/autodiff",
              "flax_cell", "flax_ms", "torch_ms", "rnnlab/flax", "rnnlab/torch", "faults",
              "step_gflop", "floor_ms_step_size", "floor_ms_large"]


# ---- part: vmapped members -----------------------------------------------------------------
def bench_members(shape: Shape, cells: list[str], sizes: list[int], args) -> list[dict]:
    """The rnnlab step vmapped over each S, and at the largest S also with the other input
    projection (``hoisted`` on CPU: the input product and its weight gradient leave the loop)
    and, when available, with each ``bptt`` path, and with ``remat``."""
    steps = {}
    other = "hoisted" if resolve_projection("auto") == "in_scan" else "in_scan"
    variants = [] if args.quick else [("projection", other, {"projection": other})]
    variants += [("chunk", 2, {"chunk": 2})]
    variants += [("bptt", b, {"bptt": b}) for b in (("fused", "autodiff") if HAS_BPTT else ())]
    # the backward pass from the carries alone (the forward loop keeps no products): the
    # working set per member shrinks, one more recurrent product per step
    variants += [("remat", True, {"remat": True})]
    big = max(sizes)
    if member_devices(big) > 1:  # rnnlab's default shards the members over the devices
        variants += [("devices", 1, {"devices": 1})]
    for cell in cells:
        model = rnnlab_model(cell, shape, args.unroll, None)
        steps[f"{cell}/plain"] = jax_train_step(model, shape)
        for s in sizes:
            steps[f"{cell}/S={s}"] = jax_train_step(model, shape, members=s,
                                                    devices=member_devices(s))
        for kind, value, opts in variants:
            model_opts = {k: v for k, v in opts.items() if k not in ("chunk", "devices")}
            ch, dev = opts.get("chunk"), opts.get("devices")
            for s in sorted({big} if kind in ("chunk", "devices") else {1, big}):
                steps[f"{cell}/S={s}/{kind}={value}"] = try_build(
                    lambda c=cell, o=model_opts, s=s, ch=ch, d=dev:
                    jax_train_step(rnnlab_model(c, shape, args.unroll, **{"bptt": None, **o}),
                                   shape, members=s, chunk=ch,
                                   devices=member_devices(s) if d is None else d),
                    f"members {cell} S={s} {kind}={value}", [])
    ms = measure({k: v for k, v in steps.items() if v is not None}, args.warmup, args.reps)
    rows = []
    for cell in cells:
        base = ms[f"{cell}/S=1"] if 1 in sizes else ms[f"{cell}/plain"]
        for s in sizes:
            per = ms[f"{cell}/S={s}"] / s
            rows.append({"shape": str(shape), "cell": cell, "S": s,
                         "ms": ms[f"{cell}/S={s}"], "ms_per_model": per,
                         "per_model/S=1": per / base,
                         "unvmapped_ms": ms[f"{cell}/plain"], "variant": "default",
                         "devices": member_devices(s),
                         "per_model/default_S=1": per / base})
        for kind, value, _ in variants:
            one = ms.get(f"{cell}/S=1/{kind}={value}")
            many = ms.get(f"{cell}/S={big}/{kind}={value}")
            for s, t in ((1, one), (big, many)) if kind not in ("chunk", "devices") \
                    else ((big, many),):
                rows.append({"shape": str(shape), "cell": cell, "S": s, "ms": t,
                             "ms_per_model": None if t is None else t / s,
                             "per_model/S=1": None if t is None or one is None
                             else t / s / one,
                             "per_model/default_S=1": None if t is None else t / s / base,
                             "unvmapped_ms": ms[f"{cell}/plain"],
                             "variant": f"{kind}={value}",
                             "devices": 1 if kind == "devices" else member_devices(s)})
    return rows


# ---- part: member layouts of the recurrent product (hand-written LSTM) -------------------
LAYOUTS = ("batched", "members_minor", "blockdiag", "split", "fused")


def recurrent_product(layout: str, h_SxBxH, U_SxHxG):
    """``h_s @ U_s`` for every member s, written four ways (same values)."""
    S, B, H = h_SxBxH.shape
    G = U_SxHxG.shape[-1]
    if layout == "batched":  # what jax.vmap of h @ U gives: one dot_general, batch dim S
        return jnp.einsum("sbh,shg->sbg", h_SxBxH, U_SxHxG)
    if layout == "members_minor":  # members next to the features: [B, S, H]
        out = jnp.einsum("bsh,shg->bsg", jnp.swapaxes(h_SxBxH, 0, 1), U_SxHxG)
        return jnp.swapaxes(out, 0, 1)
    if layout == "blockdiag":  # one [B, S*H] x [S*H, S*G] matmul (S times the FLOPs)
        eye = jnp.eye(S, dtype=U_SxHxG.dtype)
        U_bd = jnp.einsum("sr,shg->shrg", eye, U_SxHxG).reshape(S * H, S * G)
        out = jnp.swapaxes(h_SxBxH, 0, 1).reshape(B, S * H) @ U_bd
        return jnp.swapaxes(out.reshape(B, S, G), 0, 1)
    if layout == "split":  # S separate [B, H] x [H, G] dots
        return jnp.stack([h_SxBxH[s] @ U_SxHxG[s] for s in range(S)])
    raise ValueError(f"layout {layout!r}; accepted: {LAYOUTS}")


def lstm_pointwise(z_SxBxG, c_SxBxH):
    """The LSTM's update after its products (gate order i, f, g, o): ``(h, c)``."""
    i, f, g, o = jnp.split(z_SxBxG, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c_SxBxH + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def _fused_forward(W, U, b, xs_TxSxBxD, unroll):
    S, B, H = xs_TxSxBxD.shape[1], xs_TxSxBxD.shape[2], U.shape[1]

    def body(carry, x_SxBxD):
        h, c = carry
        z = (jnp.einsum("sbd,sdg->sbg", x_SxBxD, W) + b[:, None]
             + jnp.einsum("sbh,shg->sbg", h, U))
        h_new, c_new = lstm_pointwise(z, c)
        return (h_new, c_new), (h, c, z)

    zeros = jnp.zeros((S, B, H), jnp.float32)
    return jax.lax.scan(body, (zeros, zeros), xs_TxSxBxD, unroll=unroll)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def fused_lstm(W, U, b, xs_TxSxBxD, unroll=1):
    """Final hidden state ``[S, B, H]`` of an LSTM over ``xs`` (S members); its backward pass
    runs only the data gradient ``dz_t U^T`` in the reverse loop and forms the weight
    gradients after it, each as one product over all steps (cuDNN's and PyTorch's order; the
    pointwise update is differentiated per step with ``jax.vjp``)."""
    (h, _), _ = _fused_forward(W, U, b, xs_TxSxBxD, unroll)
    return h


def _fused_fwd(W, U, b, xs, unroll=1):
    (h, _), saved = _fused_forward(W, U, b, xs, unroll)
    return h, (W, U, xs, saved)


def _fused_bwd(unroll, res, dh_SxBxH):
    W, U, xs, (h_prev, c_prev, z) = res

    def body(carry, inputs):
        dh, dc = carry
        z_t, c_t = inputs
        _, vjp = jax.vjp(lstm_pointwise, z_t, c_t)
        dz, dc_prev = vjp((dh, dc))
        return (jnp.einsum("sbg,shg->sbh", dz, U), dc_prev), dz

    _, dz_TxSxBxG = jax.lax.scan(body, (dh_SxBxH, jnp.zeros_like(dh_SxBxH)), (z, c_prev),
                                 reverse=True, unroll=unroll)
    dU = jnp.einsum("tsbh,tsbg->shg", h_prev, dz_TxSxBxG)  # one [H, T*B] x [T*B, G] each
    dW = jnp.einsum("tsbd,tsbg->sdg", xs, dz_TxSxBxG)
    dxs = jnp.einsum("tsbg,sdg->tsbd", dz_TxSxBxG, W)
    return dW, dU, dz_TxSxBxG.sum(axis=(0, 2)), dxs


fused_lstm.defvjp(_fused_fwd, _fused_bwd)


def lstm_members_step(shape: Shape, S: int, layout: str, unroll: int) -> Stepper:
    """A hand-written LSTM training step with S members explicit in every array (no vmap):
    the same model, loss, clipping (per member) and Adam as the rnnlab step; the input
    product runs inside the scan (rnnlab's CPU default)."""
    B, D, H = shape.B, shape.D, shape.H
    G = 4 * H
    k = jax.random.split(jax.random.key(3), 4)
    params = {"W": jax.random.normal(k[0], (S, D, G)) / float(np.sqrt(D)),
              "U": jax.random.normal(k[1], (S, H, G)) / float(np.sqrt(H)),
              "b": jnp.zeros((S, G)), "Wo": jax.random.normal(k[2], (S, H, 1)) / float(np.sqrt(H)),
              "bo": jnp.zeros((S, 1))}
    x, y = data(shape, 0, S)
    adam = optax.adam(LEARNING_RATE, eps=ADAM_EPS)
    opt_state = adam.init(params)

    def loss_fn(p, x_SxBxTxD, y_SxBx1):
        xs = jnp.moveaxis(x_SxBxTxD, 2, 0)  # [T, S, B, D]

        def body(carry, x_SxBxD):
            h, c = carry
            z = (jnp.einsum("sbd,sdg->sbg", x_SxBxD, p["W"]) + p["b"][:, None]
                 + recurrent_product(layout, h, p["U"]))
            return lstm_pointwise(z, c), None

        if layout == "fused":
            h = fused_lstm(p["W"], p["U"], p["b"], xs, unroll)
        else:
            zeros = jnp.zeros((S, B, H), jnp.float32)
            (h, _), _ = jax.lax.scan(body, (zeros, zeros), xs, unroll=unroll)
        out = jnp.einsum("sbh,sho->sbo", h, p["Wo"]) + p["bo"][:, None]
        return jnp.sum(jnp.mean((out - y_SxBx1) ** 2, axis=(1, 2)))  # members independent

    def step(p, opt_state, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        sq = sum(jnp.sum(v.reshape(S, -1) ** 2, axis=1) for v in jax.tree.leaves(g))
        scale = jnp.minimum(1.0, CLIP / jnp.maximum(jnp.sqrt(sq), 1e-30))  # per member
        g = jax.tree.map(lambda v: v * scale.reshape((S,) + (1,) * (v.ndim - 1)), g)
        updates, opt_state = adam.update(g, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    return Stepper(jax.jit(step, donate_argnums=(0, 1)), params, opt_state, x, y)


def bench_layouts(shape: Shape, sizes: list[int], args) -> list[dict]:
    """The hand-written members step in each layout at the largest S, against S=1; and the
    fused-BPTT form (weight gradients after the reverse loop) at S=1 and the largest S."""
    steps = {"S=1": lstm_members_step(shape, 1, "batched", args.unroll),
             "S=1/fused": lstm_members_step(shape, 1, "fused", args.unroll)}
    big = [max(sizes)] if max(sizes) > 1 else []  # the block-diagonal one costs S^2 FLOPs
    for s in big:
        for layout in LAYOUTS:
            steps[f"S={s}/{layout}"] = lstm_members_step(shape, s, layout, args.unroll)
    ms = measure(steps, args.warmup, args.reps)
    rows = [{"shape": str(shape), "S": 1, "layout": "batched", "ms": ms["S=1"],
             "ms_per_model": ms["S=1"], "per_model/S=1": 1.0},
            {"shape": str(shape), "S": 1, "layout": "fused", "ms": ms["S=1/fused"],
             "ms_per_model": ms["S=1/fused"], "per_model/S=1": ms["S=1/fused"] / ms["S=1"]}]
    for s in big:
        for layout in LAYOUTS:
            t = ms[f"S={s}/{layout}"]
            rows.append({"shape": str(shape), "S": s, "layout": layout, "ms": t,
                         "ms_per_model": t / s, "per_model/S=1": t / s / ms["S=1"]})
    return rows


# ---- part: the HLO of the vmapped step --------------------------------------------------------
OP_RE = re.compile(r"=\s*(\S+)\s+(dot|transpose|copy|fusion|custom-call|dynamic-slice|"
                   r"dynamic-update-slice|while)\(")


def hlo_summary(shape: Shape, members: int, unroll: int) -> dict:
    """Ops of the compiled vmapped rnnlab LSTM step inside its while loops' bodies: counts of
    dots, transposes, copies, fusions, and each dot's result shape and dimension numbers."""
    model = rnnlab_model("lstm", shape, unroll, None)
    stepper = jax_train_step(model, shape, members=members)
    text = stepper.fn.lower(*stepper.state, stepper.x, stepper.y).compile().as_text()
    bodies, current, name = {}, None, None
    for line in text.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if head:
            name, current = head.group(1), []
            bodies[name] = current
        elif line.startswith("}"):
            name, current = None, None
        elif current is not None:
            current.append(line.strip())
    # the computations used as while bodies, and everything they call (fusions)
    body_names = set(re.findall(r"body=%?([\w.\-]+)", text))
    called: dict[str, set[str]] = {
        n: set(re.findall(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)", "\n".join(ls)))
        for n, ls in bodies.items()}
    summary = {}
    for body in sorted(body_names):
        seen, todo = set(), [body]
        while todo:
            n = todo.pop()
            if n in seen or n not in bodies:
                continue
            seen.add(n)
            todo += sorted(called.get(n, ()) - body_names)
        counts: dict[str, int] = {}
        dots = []
        for n in seen:
            for line in bodies[n]:
                m = OP_RE.search(line)
                if not m:
                    continue
                counts[m.group(2)] = counts.get(m.group(2), 0) + 1
                if m.group(2) == "dot":
                    dims = ", ".join(re.findall(r"(\w+_dims=\{[\d,]*\})", line))
                    origin = re.search(r'op_name="([^"]*)"', line)
                    side = ("?" if origin is None else "backward"
                            if "transpose(" in origin.group(1) else "forward")
                    dots.append(f"{m.group(1)} dot, {dims} ({side})")
        summary[body] = {"ops": counts, "dots": sorted(dots)}
    # the loops' state: what each while carries, in MB, and how much of it is stacked over
    # the T steps (the activations the forward loop saves for the backward one)
    loops = []
    for line in text.splitlines():
        m = re.search(r"=\s*\((.*?)\)\s+while\(.*body=%?([\w.\-]+)", line)
        if not m:
            continue
        dims = [[int(d) for d in g.split(",") if d]
                for g in re.findall(r"f32\[([\d,]*)\]", m.group(1))]
        total = sum(4 * int(np.prod(d)) for d in dims)
        stacked = sum(4 * int(np.prod(d)) for d in dims if d and d[0] == shape.T)
        loops.append({"body": m.group(2), "state_mb": total / 2**20,
                      "stacked_over_T_mb": stacked / 2**20,
                      "stacked_arrays": sum(1 for d in dims if d and d[0] == shape.T)})
    return {"shape": str(shape), "members": members, "while_bodies": summary,
            "loops": loops, "hlo_chars": len(text)}


# ---- environment -------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions(torch) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    out["torch"] = "not importable" if torch is None else torch.__version__
    return out


def environment(torch, torch_device: str, args) -> dict:
    env = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **versions(torch),
        "jax_device": str(jax.devices()[0]),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        "mode": args.mode,
        "precision": args.precision,
        "reps": f"median of {args.reps} (after {args.warmup} warm-up calls), interleaved",
        "unroll": args.unroll,
        "rnnlab_bptt_option": HAS_BPTT,
        "rnnlab_projection": resolve_projection("auto"),
        "torch_device": "n/a" if torch is None else torch_device,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "malloc": args.malloc + ("" if args.malloc == "glibc" else " " + " ".join(
            f"{k}={os.environ.get(k)}" for k in MALLOC_REUSE)),
        "ratios": "median over rounds of the per-round ratio (each round times every "
                  "implementation once, order rotated)",
    }
    if args.no_torch:
        env["torch"] = "skipped (--no-torch)"
    if args.mode == "train":
        env["step"] = (f"final h -> Dense({OUT_FEATURES}) -> MSE; clip_by_global_norm "
                       f"{CLIP}; Adam lr {LEARNING_RATE} eps {ADAM_EPS}; float32")
    else:
        env["step"] = "sum(y**2) over all outputs, grad w.r.t. parameters, float32"
    if torch is not None and torch_device == "cuda":
        env["torch_gpu"] = torch.cuda.get_device_name()
    return env


# ---- the earlier forward + BPTT mode ---------------------------------------------------------
def bench_grad_shape(shape: Shape, cells: list[str], torch, torch_device: str, args):
    steps: dict[str, Callable[[], None]] = {}
    for cell in cells:
        for projection in ("hoisted", "in_scan"):
            model = Recurrent(RNNLAB_CELLS[cell](hidden_size=shape.H), unroll=args.unroll,
                              projection=projection)
            steps[f"rnnlab/{cell}/{projection}"] = jax_grad_step(model, shape, seed=0)
        for label, flax_cell in FLAX_CELLS[cell]:
            steps[f"flax/{cell}/{label}"] = jax_grad_step(
                nn.RNN(flax_cell(features=shape.H), unroll=args.unroll), shape, seed=0)
        if torch is not None and cell in TORCH_MODULES:
            steps[f"torch/{cell}"] = torch_grad_step(torch, cell, shape, torch_device)
    ms = measure(steps, args.warmup, args.reps)
    rows = []
    auto = resolve_projection("auto")
    other = "hoisted" if auto == "in_scan" else "in_scan"
    for cell in cells:
        r, t = ms[f"rnnlab/{cell}/{auto}"], ms.get(f"torch/{cell}")
        for label, _ in FLAX_CELLS[cell] or [("n/a", None)]:
            f = ms.get(f"flax/{cell}/{label}")
            rows.append({"shape": str(shape), "cell": cell, "projection": auto,
                         "rnnlab_ms": r, "other_ms": ms[f"rnnlab/{cell}/{other}"],
                         "flax_cell": label, "flax_ms": f, "torch_ms": t,
                         "rnnlab/flax": ratio(r, f), "rnnlab/torch": ratio(r, t)})
    return rows


GRAD_HEAD = ["B×T×D×H", "cell", "projection (auto)", "rnnlab ms", "other projection ms",
             "flax cell", "flax ms", "torch ms", "rnnlab/flax", "rnnlab/torch"]
GRAD_KEYS = ["shape", "cell", "projection", "rnnlab_ms", "other_ms", "flax_cell", "flax_ms",
             "torch_ms", "rnnlab/flax", "rnnlab/torch"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 1)[1])
    parser.add_argument("--mode", choices=("train", "grad"), default="train",
                        help="train: forward, BPTT, clipping, Adam (default); grad: forward + "
                             "BPTT only, loss sum(y**2) (the earlier benchmark)")
    parser.add_argument("--shapes", default=None,
                        help=f"B,T,D,H;... (default {DEFAULT_SHAPES!r}; --quick: {QUICK_SHAPES!r})")
    parser.add_argument("--quick", action="store_true",
                        help="one small shape, 3 repetitions, one Flax LSTM cell, no "
                             "members-shape matmul rates, members without the other "
                             "projection: a check that every part runs")
    parser.add_argument("--cells", default=",".join(CELLS), help=f"subset of {CELLS}")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"train mode: which parts to run, a subset of {PARTS}")
    parser.add_argument("--members", default="1,8", help="member counts S (default 1,8)")
    parser.add_argument("--members-shape", default=None,
                        help=f"B,T,D,H of the members parts (default {MEMBERS_SHAPE})")
    parser.add_argument("--members-cells", default="lstm", help="cells of the members part")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="cpu: JAX and PyTorch on the CPU; gpu: both on the GPU (fails "
                             "without one); auto: the GPU when JAX has one")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's own choice)")
    parser.add_argument("--precision", choices=("default", "highest"), default="default",
                        help="float32 matmul precision: default lets JAX and PyTorch use TF32 "
                             "on GPUs that have it; highest forbids it in both")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls after compiling")
    parser.add_argument("--unroll", type=int, default=1, help="scan unroll (rnnlab and flax)")
    parser.add_argument("--malloc", choices=("glibc", "reuse"), default="glibc",
                        help="glibc: the C allocator's defaults (what a plain script gets); "
                             "reuse: rerun this process with " + " ".join(
                                 f"{k}={v}" for k, v in MALLOC_REUSE.items())
                             + " so that freed memory stays mapped and is reused (no page "
                               "faults from fresh mappings; PyTorch's CPU tensors and XLA's "
                               "buffers both come from this allocator)")
    parser.add_argument("--out", default=None, help="write the step table to this .md or .csv")
    parser.add_argument("--json", default=None, help="write every number to this JSON file")
    args = parser.parse_args(argv)
    if args.malloc == "reuse" and any(os.environ.get(k) != v for k, v in MALLOC_REUSE.items()):
        # glibc reads these once, at start-up: run this script again with them
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  {**os.environ, **MALLOC_REUSE})
    args.reps = args.reps or (3 if args.quick else 15)
    if args.quick:
        args.warmup = min(args.warmup, 1)
    shapes = parse_shapes(args.shapes or (QUICK_SHAPES if args.quick else DEFAULT_SHAPES))
    members_shape = parse_shapes(
        args.members_shape or (QUICK_MEMBERS_SHAPE if args.quick else MEMBERS_SHAPE),
        "--members-shape")[0]
    sizes = parse_ints(args.members, "--members")
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    members_cells = [c.strip() for c in args.members_cells.split(",") if c.strip()]
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    args.parts = parts
    for flag, values, accepted in (("--cells", cells, CELLS),
                                   ("--members-cells", members_cells, CELLS),
                                   ("--parts", parts, PARTS)):
        unknown = sorted(set(values) - set(accepted))
        if unknown:
            raise SystemExit(f"{flag} {unknown} unknown; accepted: {accepted}")
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
        if args.torch_threads is not None:
            torch.set_num_threads(args.torch_threads)
        allow_tf32 = args.precision == "default"
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        torch.backends.cudnn.allow_tf32 = allow_tf32

    env = environment(torch, torch_device, args)
    for k, v in env.items():
        print(f"# {k}: {v}")
    result: dict = {"environment": env}
    t_start = time.perf_counter()

    if args.mode == "grad":
        rows = []
        for shape in shapes:
            print(f"# shape B×T×D×H = {shape} ...", flush=True)
            rows += bench_grad_shape(shape, cells, torch, torch_device, args)
        table = markdown_table(GRAD_HEAD, [[r[k] for k in GRAD_KEYS] for r in rows])
        print(table)
        result["grad"] = rows
        write_outputs(args, env, result, table, rows, GRAD_KEYS, t_start)
        return

    # train mode: the machine's matmul rate first (the floor column needs it)
    rates: dict = {"step_size": {}, "large": None}
    if "floor" in parts or "step" in parts:
        rates, result["matmul"] = matmul_rates(shapes, members_shape, max(sizes), torch,
                                               torch_device, args)

    table, rows = "", []
    if "step" in parts:
        notes: list[str] = []
        for shape in shapes:
            print(f"# training step, shape B×T×D×H = {shape} ...", flush=True)
            shape_rows, shape_notes = bench_train_shape(shape, cells, torch, torch_device,
                                                        args, rates)
            rows += shape_rows
            notes += shape_notes
        table = markdown_table(TRAIN_HEAD, [[r.get(k) for k in TRAIN_KEYS] for r in rows])
        print("\n## training step (forward, BPTT, clipping, Adam), ms, medians")
        print(table)
        for r in rows:
            if "peephole/lstm" in r:
                print(f"- peephole/lstm at {r['shape']}: {fmt(r['peephole/lstm'], 3)} "
                      f"(target <= 1.15)")
        if not HAS_BPTT:
            print("- fused / autodiff: n/a (this rnnlab's Recurrent has no bptt option)")
        for note in notes:
            print(f"- {note}")
        result["train"] = rows
        result["train_notes"] = notes

    if "members" in parts:
        print(f"# vmapped members, shape {members_shape} ...", flush=True)
        mrows = bench_members(members_shape, members_cells, sizes, args)
        print("\n## rnnlab step vmapped over S members (target: per model at S=8 <= 0.6 of "
              "S=1)")
        print(markdown_table(["B×T×D×H", "cell", "variant", "S", "devices", "ms per step",
                              "ms per model", "per model / S=1 (same variant)",
                              "per model / S=1 (default)", "unvmapped ms (default)"],
                             [[r["shape"], r["cell"], r["variant"], r["S"], r["devices"],
                               r["ms"],
                               r["ms_per_model"], r["per_model/S=1"],
                               r["per_model/default_S=1"], r["unvmapped_ms"]]
                              for r in mrows]))
        result["members"] = mrows

    if "layouts" in parts:
        print(f"# member layouts of the recurrent product, shape {members_shape} ...",
              flush=True)
        lrows = bench_layouts(members_shape, sizes, args)
        print("\n## hand-written LSTM step, members in the recurrent product laid out as ...")
        print(markdown_table(["B×T×D×H", "S", "layout", "ms per step", "ms per model",
                              "per model / S=1"],
                             [[r["shape"], r["S"], r["layout"], r["ms"], r["ms_per_model"],
                               r["per_model/S=1"]] for r in lrows]))
        result["layouts"] = lrows

    if "hlo" in parts:
        hlo = {s: hlo_summary(members_shape, s, args.unroll)
               for s in sorted({max(sizes)} if args.quick else {1, max(sizes)})}
        print("\n## compiled HLO of the vmapped rnnlab LSTM step: ops inside while bodies")
        for s, h in hlo.items():
            for loop in h["loops"]:
                print(f"- S={s} loop {loop['body']}: state {loop['state_mb']:.1f} MB, of which "
                      f"{loop['stacked_arrays']} arrays stacked over T = "
                      f"{loop['stacked_over_T_mb']:.1f} MB")
            for body, info in h["while_bodies"].items():
                print(f"- S={s} {body}: {info['ops']}")
                for d in info["dots"]:
                    print(f"    {d}")
        result["hlo"] = hlo

    write_outputs(args, env, result, table, rows, TRAIN_KEYS, t_start)


def write_outputs(args, env, result, table, rows, keys, t_start) -> None:
    env["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    env["bench_seconds"] = round(time.perf_counter() - t_start, 1)
    print(f"\n# load average at the end: {env['load_average_end']}; "
          f"{env['bench_seconds']} s")
    if args.out and rows:
        folder = os.path.dirname(os.path.abspath(args.out))
        os.makedirs(folder, exist_ok=True)
        if args.out.endswith(".csv"):
            with open(args.out, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=[*keys, *env])
                writer.writeheader()
                for row in rows:
                    writer.writerow({**{k: fmt(row.get(k), 4) for k in keys},
                                     **{k: str(v) for k, v in env.items()}})
        else:
            with open(args.out, "w") as f:
                f.write("".join(f"- {k}: {v}\n" for k, v in env.items()) + "\n" + table + "\n")
        print(f"# wrote {args.out}")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(folder, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
