"""Memory and time of one training step on long sequences: ``Recurrent(cell, remat=True)`` vs
``remat=False`` (and, as a measured lever, a sqrt(T) two-level checkpointed scan written here).

The training step: one LSTM layer ``Recurrent(LSTM(H))`` over ``x [B, T, D]``, a linear head on
the last step's output, loss = mean squared error against a target ``[B, 1]``,
``jax.value_and_grad`` with respect to all parameters, then one Adam update (optax, lr 1e-3);
parameters and optimizer state are donated, as in a training loop. float32 throughout.

Variants (same parameters, same loss, same gradients up to float rounding):

  none    Recurrent(cell, remat=False): the scan's autodiff stores every step's residuals
          (gate activations, cell state, ...) for the backward pass: O(T*B*H*k), k ~ 10
  step    Recurrent(cell, remat=True): jax.checkpoint around the scan body; the backward pass
          recomputes each step from its stored input carry, so the scan stores the carries
          (h, c) per step: O(T*B*H*2) plus the outputs
  sqrt    (this script only; not part of rnnlab) the sequence split into T/K chunks of K
          steps (K: the divisor of T closest to sqrt(T)); an outer scan over chunks whose
          body (an inner scan over K steps) is wrapped in jax.checkpoint: only the
          chunk-boundary carries are stored
          (O(T/K*B*H)), and one chunk's residuals (O(K*B*H*k)) live during its backward pass;
          only the last step's output leaves the layer
  sqrt_y  as sqrt, but the layer returns every step's output ``y [B, T, H]`` as
          ``Recurrent`` does (a stacked layer needs them all), the loss still reading the last:
          what a two-level checkpointed scan inside ``Recurrent`` would cost

For each (variant, H, T) it reports, from a fresh subprocess each (so that the peak resident
set size belongs to that variant alone):

  temp MB     XLA's compiled memory analysis: temp_size_in_bytes (buffers live inside the
              program: residuals, carries, gradients); arg/out MB: argument/output sizes
  RSS MB      the process's peak resident set size (getrusage ru_maxrss) after compiling and
              after running the steps; "run - base" is the increase over the peak before the
              first step ran (imports, data, compilation included in the base)
  step s      median wall time of a training step (after one warm-up step)
  loss        the last loss (must be finite)

Ratios are against ``none`` at the same (H, T). Subprocesses run interleaved: for each
repetition, every variant in turn. Examples:

  python scripts/bench_remat.py --quick                      # T=1000 and 200, H=32, seconds
  python scripts/bench_remat.py                              # T=10000 and 1000, H=128 and 256
  python scripts/bench_remat.py --T 10000 --H 128 --steps 5 --variants step,none
"""

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

VARIANTS = ("none", "step", "sqrt", "sqrt_y")


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def sqrt_chunked_layer(cell, K: int, all_outputs: bool = False):
    """A layer with the same parameters as ``Recurrent(cell)`` (``params["cell"]``) whose scan
    is two-level checkpointed: ``(cell_params, x_BxTxD) -> h_BxH``, the last step's output
    (``all_outputs``: ``y_BxTxH``, every step's). T must be a multiple of K
    (:func:`pick_chunk` picks a divisor)."""
    import jax
    import jax.numpy as jnp

    def run(params, x_BxTxD):
        B, T, _ = x_BxTxD.shape
        assert T % K == 0, (T, K)
        carry = cell.initial_carry(params, B)
        x_CxKxBxD = jnp.swapaxes(x_BxTxD, 0, 1).reshape(T // K, K, B, -1)

        def inner(c, x_BxD):
            return cell.step(params, c, cell.project_step(params, x_BxD))

        @jax.checkpoint
        def chunk(c, x_KxBxD):
            c, y_KxBxH = jax.lax.scan(inner, c, x_KxBxD)
            return c, (y_KxBxH if all_outputs else y_KxBxH[-1])

        carry, y = jax.lax.scan(chunk, carry, x_CxKxBxD)
        if all_outputs:
            return jnp.swapaxes(y.reshape(T, B, -1), 0, 1)
        return carry.h

    return run


def pick_chunk(T: int) -> int:
    """The divisor of T closest to sqrt(T)."""
    root = math.sqrt(T)
    return min((k for k in range(1, T + 1) if T % k == 0), key=lambda k: abs(k - root))


def child(args) -> None:
    import jax
    import jax.numpy as jnp
    import optax

    from rnnlab.cells import LSTM
    from rnnlab.recurrent import Recurrent

    B, T, D, H = args.B, args.T, args.D, args.H
    cell = LSTM(hidden_size=H)
    layer = Recurrent(cell, remat=args.variant == "step")
    key = jax.random.key(0)
    kx, ky, kp, kh = jax.random.split(key, 4)
    x = jax.random.normal(kx, (B, T, D), jnp.float32)
    target = jax.random.normal(ky, (B, 1), jnp.float32)
    params = {"rnn": layer.init(kp, x[:, :2])["params"],
              "head": {"w": jax.random.normal(kh, (H, 1), jnp.float32) / math.sqrt(H),
                       "b": jnp.zeros((1,), jnp.float32)}}
    if args.variant in ("sqrt", "sqrt_y"):
        K = pick_chunk(T)
        chunked = sqrt_chunked_layer(cell, K, all_outputs=args.variant == "sqrt_y")

        def last_h(p, x):
            out = chunked(p["rnn"]["cell"], x)
            return out[:, -1] if args.variant == "sqrt_y" else out
    else:
        K = None

        def last_h(p, x):
            y, _ = layer.apply({"params": p["rnn"]}, x)
            return y[:, -1]

    def loss_fn(p, x, target):
        pred = last_h(p, x) @ p["head"]["w"] + p["head"]["b"]
        return jnp.mean((pred - target) ** 2)

    opt = optax.adam(1e-3)

    def train_step(p, s, x, target):
        loss, g = jax.value_and_grad(loss_fn)(p, x, target)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    opt_state = opt.init(params)
    jitted = jax.jit(train_step, donate_argnums=(0, 1))
    t0 = time.perf_counter()
    compiled = jitted.lower(params, opt_state, x, target).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    rss_compiled = rss_peak_mb()
    times, losses = [], []
    for _ in range(args.steps + 1):
        t0 = time.perf_counter()
        params, opt_state, loss = compiled(params, opt_state, x, target)
        losses.append(float(loss))  # blocks until the step is done
        times.append(time.perf_counter() - t0)
    print(json.dumps({
        "variant": args.variant, "B": B, "T": T, "D": D, "H": H, "K": K,
        "temp_mb": mem.temp_size_in_bytes / 2**20 if mem else None,
        "arg_mb": mem.argument_size_in_bytes / 2**20 if mem else None,
        "out_mb": mem.output_size_in_bytes / 2**20 if mem else None,
        "rss_compiled_mb": rss_compiled, "rss_peak_mb": rss_peak_mb(),
        "compile_s": compile_s,
        "step_s": statistics.median(times[1:]) if len(times) > 1 else times[0],
        "losses": losses, "finite": all(math.isfinite(v) for v in losses),
    }))


def run_child(variant, B, T, D, H, steps, timeout) -> dict:
    cmd = [sys.executable, __file__, "--child", "--variant", variant, "--B", str(B),
           "--T", str(T), "--D", str(D), "--H", str(H), "--steps", str(steps)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"variant": variant, "T": T, "H": H, "error": f"timeout after {timeout} s"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        return {"variant": variant, "T": T, "H": H,
                "error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(v, spec=".1f"):
    return "n/a" if v is None else format(v, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="none", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="T=1000,200, H=32, 2 steps, 1 rep")
    p.add_argument("--B", type=int, default=16)
    p.add_argument("--D", type=int, default=1)
    p.add_argument("--H", default="128,256", help="hidden sizes, comma-separated")
    p.add_argument("--T", default="10000,1000", help="sequence lengths, comma-separated")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    p.add_argument("--reps", type=int, default=1, help="subprocesses per variant (interleaved)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per subprocess")
    p.add_argument("--json", help="also write the raw results to this file")
    args = p.parse_args()
    if args.child:
        args.T, args.H = int(args.T), int(args.H)
        child(args)
        return
    if args.quick:
        args.T, args.H, args.steps = "1000,200", "32", 2
    variants = args.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        p.error(f"--variants: unknown {sorted(unknown)}; accepted: {list(VARIANTS)}")
    Hs = [int(h) for h in args.H.split(",")]
    Ts = [int(t) for t in args.T.split(",")]
    results = []
    for H in Hs:
        for T in Ts:
            for _ in range(args.reps):  # interleaved: every variant in turn
                for v in variants:
                    r = run_child(v, args.B, T, args.D, H, args.steps, args.timeout)
                    print(json.dumps(r), file=sys.stderr, flush=True)
                    results.append(r)
    import jax
    load = os.getloadavg()
    print(f"# one LSTM layer, training step (MSE on the last step, Adam), B={args.B}, "
          f"D={args.D}, float32")
    print(f"# jax {jax.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (at the end)")
    print("| H | T | variant | temp MB | arg MB | out MB | peak RSS MB | RSS run - base MB "
          "| step s | temp / none | RSS / none | step / none | loss finite |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for H in Hs:
        for T in Ts:
            rows = {}
            for v in variants:
                rs = [r for r in results if r["variant"] == v and r["T"] == T and r["H"] == H]
                ok = [r for r in rs if "error" not in r]
                if not ok:
                    rows[v] = {"error": rs[0]["error"] if rs else "not run"}
                    continue
                rows[v] = {
                    "temp_mb": statistics.median(r["temp_mb"] for r in ok),
                    "arg_mb": ok[0]["arg_mb"], "out_mb": ok[0]["out_mb"],
                    "rss": statistics.median(r["rss_peak_mb"] for r in ok),
                    "rss_run": statistics.median(r["rss_peak_mb"] - r["rss_compiled_mb"]
                                                 for r in ok),
                    "step_s": statistics.median(r["step_s"] for r in ok),
                    "finite": all(r["finite"] for r in ok),
                    "K": ok[0]["K"]}
            base = rows.get("none", {})
            for v, row in rows.items():
                name = v if row.get("K") is None else f"{v} (K={row['K']})"
                if "error" in row:
                    print(f"| {H} | {T} | {name} | {row['error']} |" + " |" * 10)
                    continue

                def ratio(k, row=row, base=base):
                    b = base.get(k)
                    return fmt(row[k] / b, ".2f") if b else "n/a"

                print(f"| {H} | {T} | {name} | {fmt(row['temp_mb'])} | {fmt(row['arg_mb'])} "
                      f"| {fmt(row['out_mb'])} | {fmt(row['rss'], '.0f')} "
                      f"| {fmt(row['rss_run'], '.0f')} | {fmt(row['step_s'], '.3f')} "
                      f"| {ratio('temp_mb')} | {ratio('rss')} | {ratio('step_s')} "
                      f"| {'yes' if row['finite'] else 'NO'} |")
    for H in Hs:
        for T in Ts:
            curves = {tuple(r["losses"]) for r in results
                      if r["H"] == H and r["T"] == T and "error" not in r}
            if not curves:
                continue
            print(f"\nH={H}, T={T}: the variants' losses over the steps are "
                  f"{'bitwise identical' if len(curves) == 1 else 'NOT identical'}"
                  + ("" if len(curves) == 1 else f": {sorted(curves)}"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load": load, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
