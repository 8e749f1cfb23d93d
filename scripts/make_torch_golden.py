"""Golden values from PyTorch's nn.LSTM, nn.GRU and nn.RNN for tests/test_convert.py.

Standalone: imports only torch and numpy (not rnnlab), so the values are PyTorch's alone.
Everything runs in float64 on the CPU with fixed seeds.

Cases (batch_first, B=3, T=7, D=4, H=5):
  lstm           nn.LSTM, 1 layer, random initial (h0, c0)
  gru            nn.GRU, 1 layer, random initial h0
  rnn            nn.RNN(nonlinearity="tanh"), 1 layer, random initial h0
  lstm_bi2       nn.LSTM(num_layers=2, bidirectional=True), zero initial states

For each case the loss is
  loss = sum(out * w_out) + sum(h_n * w_h) [+ sum(c_n * w_c) for LSTMs]
with fixed random w_*, and the file holds, under "<case>/":
  x [B,T,D], h0 [L*dirs,B,H] (c0 for LSTMs), param/<torch key>, out [B,T,dirs*H],
  h_n (c_n), w_out, w_h (w_c), loss [], grad/<torch key>, grad/x, grad/h0 (grad/c0),
plus "cases" (names) and "torch_version".

Usage:
  python scripts/make_torch_golden.py tests/fixtures/torch_golden.npz
"""

import argparse
import os

import numpy as np
import torch

B, T, D, H = 3, 7, 4, 5
SEED = 20240531

CASES = {
    # name: (module class, kwargs, random initial state?)
    "lstm": (torch.nn.LSTM, {}, True),
    "gru": (torch.nn.GRU, {}, True),
    "rnn": (torch.nn.RNN, {"nonlinearity": "tanh"}, True),
    "lstm_bi2": (torch.nn.LSTM, {"num_layers": 2, "bidirectional": True}, False),
}


def make_case(index: int, name: str, module_cls, kwargs: dict, random_state: bool) -> dict:
    gen = torch.Generator().manual_seed(SEED + index)
    torch.manual_seed(SEED + index)  # the module's default init draws from the global RNG
    module = module_cls(D, H, batch_first=True, **kwargs).double()
    # PyTorch's default init is U(-1/sqrt(H), 1/sqrt(H)); widen the biases so the two PyTorch
    # biases are clearly distinct and the gates are far from their midpoints.
    with torch.no_grad():
        for key, p in module.named_parameters():
            if key.startswith("bias"):
                p.uniform_(-1.0, 1.0, generator=gen)
    is_lstm = module_cls is torch.nn.LSTM
    rows = module.num_layers * (2 if module.bidirectional else 1)
    x = torch.randn(B, T, D, generator=gen, dtype=torch.float64, requires_grad=True)
    if random_state:
        h0 = 0.5 * torch.randn(rows, B, H, generator=gen, dtype=torch.float64)
        c0 = 0.5 * torch.randn(rows, B, H, generator=gen, dtype=torch.float64)
    else:
        h0 = torch.zeros(rows, B, H, dtype=torch.float64)
        c0 = torch.zeros(rows, B, H, dtype=torch.float64)
    h0.requires_grad_(True)
    c0.requires_grad_(True)

    out, state = module(x, (h0, c0) if is_lstm else h0)
    h_n, c_n = state if is_lstm else (state, None)
    w_out = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    w_h = torch.randn(h_n.shape, generator=gen, dtype=torch.float64)
    loss = (out * w_out).sum() + (h_n * w_h).sum()
    if is_lstm:
        w_c = torch.randn(c_n.shape, generator=gen, dtype=torch.float64)
        loss = loss + (c_n * w_c).sum()
    loss.backward()

    def np64(t):
        return t.detach().cpu().numpy().astype(np.float64)

    arrays = {"x": np64(x), "h0": np64(h0), "out": np64(out), "h_n": np64(h_n),
              "w_out": np64(w_out), "w_h": np64(w_h), "loss": np64(loss),
              "grad/x": np64(x.grad), "grad/h0": np64(h0.grad)}
    if is_lstm:
        arrays.update({"c0": np64(c0), "c_n": np64(c_n), "w_c": np64(w_c),
                       "grad/c0": np64(c0.grad)})
    for key, p in module.named_parameters():
        arrays[f"param/{key}"] = np64(p)
        arrays[f"grad/{key}"] = np64(p.grad)
    return {f"{name}/{k}": v for k, v in arrays.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="path of the .npz to write, e.g. "
                                       "tests/fixtures/torch_golden.npz")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    arrays: dict[str, np.ndarray] = {}
    for index, (name, (module_cls, kwargs, random_state)) in enumerate(CASES.items()):
        case = make_case(index, name, module_cls, kwargs, random_state)
        arrays.update(case)
        params = sorted(k.split("/", 2)[2] for k in case if k.startswith(f"{name}/param/"))
        print(f"{name:9s} out {case[f'{name}/out'].shape} h_n {case[f'{name}/h_n'].shape} "
              f"loss {float(case[f'{name}/loss']):+.10f} params {params}")
    arrays["cases"] = np.array(list(CASES))
    arrays["torch_version"] = np.array(torch.__version__)
    folder = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(folder, exist_ok=True)
    np.savez_compressed(args.output, **arrays)
    print(f"wrote {args.output}: {len(arrays)} arrays, {os.path.getsize(args.output)} bytes, "
          f"torch {torch.__version__}")


if __name__ == "__main__":
    main()
