"""A plain PyTorch training loop for the adding problem: the reference for rnnlab's run.

The same problem as ``rnnlab.tasks.adding`` (Hochreiter & Schmidhuber 1997, experiment 4, in
the form of Arjovsky, Shah & Bengio 2016, section 4.2), generated on the fly on the CPU:

  input  float [B, T, 2]: channel 0 uniform in [0, 1); channel 1 is 1.0 at two positions,
         one uniform in [0, T // 2), the other uniform in [T // 2, T), and 0.0 elsewhere
  target float [B, 1]: the sum of the two marked values
  model  torch.nn.LSTM(2, H, batch_first) read at its final hidden state -> nn.Linear(H, 1)
  loss   mean squared error

and rnnlab's training defaults: Adam (lr 1e-3, eps 1e-7, conf/optim/adam.yaml), global-norm
clipping to 1.0 (torch.nn.utils.clip_grad_norm_), a held-out evaluation on 512 fresh
sequences every 100 steps (rnnlab's ``train.log_every`` and ``train.eval_batch_size``), one
seed. The initialisation is PyTorch's default (rnnlab starts the LSTM from orthogonal
recurrent kernels and a forget bias of 1); that changes the learning curve, not the cost of
a step.

Prints one JSON line with steps, wall times (total from the start of the process, the loop,
and per step after the first ``--warmup-steps``), steps/second and the final held-out MSE.

  python scripts/torch_adding_loop.py --steps 1000
  python scripts/torch_adding_loop.py --steps 1000 --threads 1 --json torch_loop.json
"""

import time

T_PROCESS = time.perf_counter()  # before the imports: the wall time a user waits

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402

LEARNING_RATE, ADAM_EPS, CLIP = 1e-3, 1e-7, 1.0  # rnnlab's conf/optim/adam.yaml


def adding_batch(gen: torch.Generator, batch_size: int, length: int):
    """``(x [B, T, 2], y [B, 1])`` drawn as ``rnnlab.tasks.adding.AddingTask.sample``."""
    half = length // 2
    values = torch.rand(batch_size, length, generator=gen)
    first = torch.randint(0, half, (batch_size,), generator=gen)
    second = torch.randint(half, length, (batch_size,), generator=gen)
    t = torch.arange(length)[None, :]
    marks = ((t == first[:, None]) | (t == second[:, None])).float()
    x = torch.stack([values, marks], dim=-1)
    y = (values * marks).sum(dim=1, keepdim=True)
    return x, y


class Model(torch.nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.rnn = torch.nn.LSTM(2, hidden_size, batch_first=True)
        self.head = torch.nn.Linear(hidden_size, 1)

    def forward(self, x):
        _, (h_n, _) = self.rnn(x)
        return self.head(h_n[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 1)[1])
    parser.add_argument("--steps", type=int, default=1000, help="training steps (updates)")
    parser.add_argument("--length", type=int, default=100, help="T, steps per sequence")
    parser.add_argument("--hidden-size", type=int, default=128, help="H")
    parser.add_argument("--batch-size", type=int, default=64, help="B")
    parser.add_argument("--eval-every", type=int, default=100,
                        help="steps between held-out evaluations (0: only at the end)")
    parser.add_argument("--eval-batch-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's own choice)")
    parser.add_argument("--warmup-steps", type=int, default=20,
                        help="steps left out of the per-step time")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    for name in ("steps", "length", "hidden_size", "batch_size", "eval_batch_size"):
        if getattr(args, name) < (2 if name == "length" else 1):
            raise SystemExit(f"--{name.replace('_', '-')} must be >= "
                             f"{2 if name == 'length' else 1}; got {getattr(args, name)}")
    if not 0 <= args.warmup_steps < args.steps:
        raise SystemExit(f"--warmup-steps must lie in [0, --steps={args.steps}); got "
                         f"{args.warmup_steps}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    eval_gen = torch.Generator().manual_seed(args.seed + 1_000_003)
    model = Model(args.hidden_size)
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=LEARNING_RATE, eps=ADAM_EPS)

    def evaluate() -> float:
        x, y = adding_batch(eval_gen, args.eval_batch_size, args.length)
        with torch.no_grad():
            return float(((model(x) - y) ** 2).mean())

    t_loop = time.perf_counter()
    t_warm = t_loop
    mse = float("nan")
    losses = []
    for step in range(1, args.steps + 1):
        x, y = adding_batch(gen, args.batch_size, args.length)
        opt.zero_grad(set_to_none=True)
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        losses.append(loss.item())
        if (args.eval_every and step % args.eval_every == 0) or step == args.steps:
            mse = evaluate()
        if step == args.warmup_steps:
            t_warm = time.perf_counter()
    t_end = time.perf_counter()
    timed = args.steps - args.warmup_steps
    result = {
        "steps": args.steps, "T": args.length, "H": args.hidden_size, "B": args.batch_size,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "loop_seconds": t_end - t_loop, "process_seconds": t_end - T_PROCESS,
        "ms_per_step": 1e3 * (t_end - t_warm) / timed,
        "steps_per_second": args.steps / (t_end - t_loop),
        "final_eval_mse": mse, "final_train_loss": sum(losses[-100:]) / len(losses[-100:]),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
