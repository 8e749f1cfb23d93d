"""Conversion to and from PyTorch's and Keras' layouts (rnnlab.convert).

Three kinds of check:

* round trips (ours -> torch -> ours, ours -> keras -> ours) are exact, and the layouts put
  each gate block where the other framework expects it;
* PyTorch agreement: converted PyTorch weights run through rnnlab's ``Recurrent`` /
  ``RecurrentStack`` give PyTorch's outputs, final states and gradients (parameters in
  PyTorch's layout via ``to_torch(..., gradient=True)``, inputs, initial states). The expected
  values come from two independent sources: (1) ``tests/fixtures/torch_golden.npz``, written by
  PyTorch itself with ``scripts/make_torch_golden.py`` (these tests skip while the file is
  absent), and (2) a float64 transcription of PyTorch's documented equations in PyTorch's
  layout (``torch_reference`` below; gradients by ``jax.grad`` of that transcription), which
  shares no code with rnnlab's cells;
* Keras agreement: a NumPy transcription of Keras' LSTM, GRU (both reset forms), SimpleRNN and
  PeepholeLSTMCell equations in Keras' layout against rnnlab's cells fed ``from_keras`` weights.

Updating the golden file is right only when its cases change (edit CASES in the script and
regenerate with ``python scripts/make_torch_golden.py tests/fixtures/torch_golden.npz``) or
PyTorch changes its documented equations; it is never the fix for a failing comparison, which
means rnnlab's cells, driver or convert.py disagree with PyTorch.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.cells import GRU, LSTM, HiddenCarry, LSTMCarry, PeepholeLSTM, SimpleRNN
from rnnlab.convert import (
    carries_from_torch,
    carries_to_torch,
    from_keras,
    from_torch,
    stack_from_torch,
    stack_to_torch,
    to_keras,
    to_torch,
)
from rnnlab.recurrent import Recurrent, RecurrentStack

FIXTURE = Path(__file__).parent / "fixtures" / "torch_golden.npz"
B, T, D, H = 3, 7, 4, 5
# name: (torch module kind, num_layers, bidirectional, random initial state); the same cases
# as scripts/make_torch_golden.py.
CASES = {
    "lstm": ("lstm", 1, False, True),
    "gru": ("gru", 1, False, True),
    "rnn": ("rnn", 1, False, True),
    "lstm_bi2": ("lstm", 2, True, False),
}
CELL_CLASSES = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
GOLDEN_HINT = ("rnnlab disagrees with PyTorch's golden values (scripts/make_torch_golden.py); "
               "fix rnnlab or convert.py, do not regenerate the fixture")


# ---- PyTorch's documented equations, PyTorch's layout, any array module --------------------
def _sigmoid(z, xp):
    return 1.0 / (1.0 + xp.exp(-z))


def _torch_step(kind, sd, s, x_BxD, h, c, xp):
    """One step of torch.nn.LSTM / GRU / RNN(tanh) as documented, weights [G, D]."""
    gi = x_BxD @ sd[f"weight_ih{s}"].T + sd[f"bias_ih{s}"][None, :]
    gh = h @ sd[f"weight_hh{s}"].T + sd[f"bias_hh{s}"][None, :]
    if kind == "lstm":
        i, f, g, o = xp.split(gi + gh, 4, axis=-1)
        c = _sigmoid(f, xp) * c + _sigmoid(i, xp) * xp.tanh(g)
        return _sigmoid(o, xp) * xp.tanh(c), c
    if kind == "gru":
        i_r, i_z, i_n = xp.split(gi, 3, axis=-1)
        h_r, h_z, h_n = xp.split(gh, 3, axis=-1)
        r, z = _sigmoid(i_r + h_r, xp), _sigmoid(i_z + h_z, xp)
        n = xp.tanh(i_n + r * h_n)
        return (1.0 - z) * n + z * h, None
    return xp.tanh(gi + gh), None


def torch_reference(kind, sd, x, h0, c0, num_layers, bidirectional, xp):
    """PyTorch's multi-layer, optionally bidirectional module, batch_first: returns
    ``(out [B, T, dirs*H], h_n [L*dirs, B, H], c_n or None)``."""
    dirs = 2 if bidirectional else 1
    inp, hs, cs = x, [], []
    steps = x.shape[1]
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            s = f"_l{layer}" + ("_reverse" if d else "")
            h, c = h0[layer * dirs + d], None if c0 is None else c0[layer * dirs + d]
            ys = [None] * steps
            for t in (range(steps - 1, -1, -1) if d else range(steps)):
                h, c = _torch_step(kind, sd, s, inp[:, t], h, c, xp)
                ys[t] = h
            outs.append(xp.stack(ys, axis=1))
            hs.append(h)
            cs.append(c)
        inp = xp.concatenate(outs, axis=-1)
    return inp, xp.stack(hs), None if c0 is None else xp.stack(cs)


def _loss(out, h_n, c_n, w):
    loss = (out * w["w_out"]).sum() + (h_n * w["w_h"]).sum()
    return loss if c_n is None else loss + (c_n * w["w_c"]).sum()


def reference_case(name: str, seed: int) -> dict[str, np.ndarray]:
    """A case in the fixture's format, computed from ``torch_reference`` instead of PyTorch."""
    kind, num_layers, bidirectional, random_state = CASES[name]
    rng = np.random.default_rng(seed)
    dirs = 2 if bidirectional else 1
    G, k = GATES[kind] * H, 1.0 / np.sqrt(H)
    sd = {}
    for layer in range(num_layers):
        for d in range(dirs):
            s = f"_l{layer}" + ("_reverse" if d else "")
            d_in = D if layer == 0 else dirs * H
            sd[f"weight_ih{s}"] = rng.uniform(-k, k, (G, d_in))
            sd[f"weight_hh{s}"] = rng.uniform(-k, k, (G, H))
            sd[f"bias_ih{s}"] = rng.uniform(-1.0, 1.0, (G,))
            sd[f"bias_hh{s}"] = rng.uniform(-1.0, 1.0, (G,))
    x = rng.standard_normal((B, T, D))
    scale = 0.5 if random_state else 0.0
    h0 = scale * rng.standard_normal((num_layers * dirs, B, H))
    c0 = scale * rng.standard_normal((num_layers * dirs, B, H)) if kind == "lstm" else None
    out, h_n, c_n = torch_reference(kind, sd, x, h0, c0, num_layers, bidirectional, np)
    w = {"w_out": rng.standard_normal(out.shape), "w_h": rng.standard_normal(h_n.shape)}
    if c_n is not None:
        w["w_c"] = rng.standard_normal(c_n.shape)

    def loss_fn(sd, x, h0, c0):
        return _loss(*torch_reference(kind, sd, x, h0, c0, num_layers, bidirectional, jnp),
                     {k: jnp.asarray(v) for k, v in w.items()})

    with jax.enable_x64(True):
        args = jax.tree.map(jnp.asarray, (sd, x, h0, c0))
        loss, grads = jax.value_and_grad(loss_fn, argnums=(0, 1, 2, 3))(*args)
        grads = jax.tree.map(np.asarray, grads)
    case = {"x": x, "h0": h0, "out": out, "h_n": h_n, "loss": np.asarray(loss), **w,
            "grad/x": grads[1], "grad/h0": grads[2]}
    if c0 is not None:
        case.update({"c0": c0, "c_n": c_n, "grad/c0": grads[3]})
    case.update({f"param/{k}": v for k, v in sd.items()})
    case.update({f"grad/{k}": v for k, v in grads[0].items()})
    return case


def test_torch_reference_by_hand():
    """The transcription itself, checked once by hand-unrolled arithmetic: an RNN with one
    unit and one input, h1 = tanh(w x1 + b_ih + u h0 + b_hh)."""
    sd = {"weight_ih_l0": np.array([[0.5]]), "weight_hh_l0": np.array([[-2.0]]),
          "bias_ih_l0": np.array([0.1]), "bias_hh_l0": np.array([0.2])}
    x = np.array([[[1.0], [3.0]]])
    out, h_n, _ = torch_reference("rnn", sd, x, np.array([[[0.25]]]), None, 1, False, np)
    h1 = np.tanh(0.5 * 1.0 + 0.1 - 2.0 * 0.25 + 0.2)
    h2 = np.tanh(0.5 * 3.0 + 0.1 - 2.0 * h1 + 0.2)
    np.testing.assert_allclose(out[0, :, 0], [h1, h2], rtol=1e-15)
    np.testing.assert_allclose(h_n[0, 0, 0], h2, rtol=1e-15)


# ---- running rnnlab on a case ------------------------------------------------------------
def _torch_rows(carries, bidirectional):
    """Carries in PyTorch's row order (layer-major, forward before backward)."""
    return [c for layer in carries for c in (layer if bidirectional else (layer,))]


def rnnlab_case(case, name, dtype):
    """rnnlab's outputs, final states and gradients on ``case``, in PyTorch's layout."""
    kind, num_layers, bidirectional, _ = CASES[name]
    cast = {"float32": np.float32, "float64": np.float64}[dtype]
    sd = {k.split("/", 1)[1]: v for k, v in case.items() if k.startswith("param/")}
    cell = CELL_CLASSES[kind](hidden_size=H, dtype=dtype, param_dtype=dtype)
    x = jnp.asarray(case["x"].astype(cast))
    w = {k: jnp.asarray(case[k].astype(cast)) for k in ("w_out", "w_h", "w_c") if k in case}
    lstm = kind == "lstm"
    stacked = num_layers > 1 or bidirectional

    if stacked:
        if np.any(case["h0"]) or ("c0" in case and np.any(case["c0"])):
            pytest.fail(f"case {name}: RecurrentStack starts from zeros; the case must too")
        params = stack_from_torch(cell, sd, dtype=cast)
        model = RecurrentStack([cell] * num_layers, bidirectional=bidirectional)

        def run(params, x, carry):
            del carry
            y, carries = model.apply({"params": params}, x)
            return y, _torch_rows(carries, bidirectional)

        carry0 = None
    else:
        params = {"cell": from_torch(cell, sd, dtype=cast)}
        model = Recurrent(cell)
        carry0 = carries_from_torch(case["h0"].astype(cast),
                                    case["c0"].astype(cast) if lstm else None)[0]

        def run(params, x, carry):
            y, final = model.apply({"params": params}, x, initial_carry=carry)
            return y, [final]

    params = jax.tree.map(jnp.asarray, params)
    carry0 = jax.tree.map(jnp.asarray, carry0)

    def loss_fn(params, x, carry):
        y, rows = run(params, x, carry)
        h_n = jnp.stack([r.h for r in rows])
        c_n = jnp.stack([r.c for r in rows]) if lstm else None
        return _loss(y, h_n, c_n, w), (y, rows)

    (loss, (y, rows)), (g_params, g_x, g_carry) = jax.jit(jax.value_and_grad(
        loss_fn, argnums=(0, 1, 2), has_aux=True))(params, x, carry0)
    h_n, c_n = carries_to_torch([jax.tree.map(np.asarray, r) for r in rows])
    got = {"out": np.asarray(y), "h_n": h_n, "loss": np.asarray(loss), "grad/x": np.asarray(g_x)}
    if lstm:
        got["c_n"] = c_n
    g_params = jax.tree.map(np.asarray, g_params)
    if stacked:
        g_sd = stack_to_torch(cell, g_params, gradient=True)
    else:
        g_sd = to_torch(cell, g_params["cell"], gradient=True)
        g_h0, g_c0 = carries_to_torch([jax.tree.map(np.asarray, g_carry)])
        got["grad/h0"] = g_h0
        if lstm:
            got["grad/c0"] = g_c0
    got.update({f"grad/{k}": v for k, v in g_sd.items()})
    return got


def _compare(case, name, dtype, source):
    with jax.enable_x64(dtype == "float64"):
        got = rnnlab_case(case, name, dtype)
    expected_keys = {k for k in case if k in ("out", "h_n", "c_n", "loss")
                     or k.startswith("grad/")}
    if CASES[name][1] > 1 or CASES[name][2]:
        # RecurrentStack starts from zeros; it takes no initial state to differentiate.
        expected_keys -= {"grad/h0", "grad/c0"}
    assert set(got) == expected_keys, f"compared {sorted(got)}; case has {sorted(expected_keys)}"
    tol = {"float32": 1e-5, "float64": 1e-10}[dtype]
    for key in sorted(expected_keys):
        np.testing.assert_allclose(got[key], case[key], rtol=tol, atol=tol,
                                   err_msg=f"{source} case {name!r}, {key}: "
                                           + (GOLDEN_HINT if source == "golden" else ""))


@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_reference_equations(name):
    """float64 only: agreement to 1e-10 leaves no room for a conversion error hidden by the
    float32 tolerance (the golden test runs both precisions)."""
    _compare(reference_case(name, seed=list(CASES).index(name)), name, "float64", "reference")


@pytest.fixture(scope="module")
def golden():
    if not FIXTURE.exists():
        relative = FIXTURE.relative_to(FIXTURE.parents[2])
        pytest.skip(f"{relative} is absent; generate it where PyTorch is installed: "
                    f"python scripts/make_torch_golden.py {relative}")
    with np.load(FIXTURE, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_golden(golden, name, dtype):
    assert name in set(golden["cases"].tolist()), (
        f"fixture (torch {golden['torch_version']}) lacks case {name!r}; it has "
        f"{golden['cases'].tolist()}: regenerate it with scripts/make_torch_golden.py")
    case = {k.split("/", 1)[1]: v for k, v in golden.items() if k.startswith(f"{name}/")}
    _compare(case, name, dtype, "golden")


# ---- round trips and layouts --------------------------------------------------------------
TORCH_CELLS = [LSTM(hidden_size=H), GRU(hidden_size=H), SimpleRNN(hidden_size=H)]
KERAS_CELLS = [*TORCH_CELLS, GRU(hidden_size=H, reset_after=False), PeepholeLSTM(hidden_size=H)]


def _random_params(cell, key, input_size=D):
    """Params of ``cell.init``'s structure with every entry random (biases included), so a
    round trip that drops or swaps anything shows. Shapes come from ``jax.eval_shape``: no
    initializer runs."""
    shapes = jax.eval_shape(lambda k: cell.init(k, input_size), key)
    return _randomize(shapes, seed=int(cell.hidden_size))


def _randomize(shapes, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


@pytest.mark.parametrize("cell", TORCH_CELLS, ids=lambda c: c.registered_name)
def test_torch_round_trip_is_exact(cell, key):
    params = _random_params(cell, key)
    sd = to_torch(cell, params)
    back = from_torch(cell, sd)
    assert set(back) == set(params)
    for k in params:
        np.testing.assert_array_equal(back[k], params[k], err_msg=k)
    # Layout: PyTorch's W is ours transposed; LSTM/RNN export the bias as (bias, zeros).
    np.testing.assert_array_equal(sd["weight_ih_l0"], params["kernel"].T)
    np.testing.assert_array_equal(sd["weight_hh_l0"], params["recurrent_kernel"].T)
    np.testing.assert_array_equal(sd["bias_ih_l0"], params["bias"])
    expected_hh = params.get("recurrent_bias", np.zeros_like(params["bias"]))
    np.testing.assert_array_equal(sd["bias_hh_l0"], expected_hh)


def test_torch_biases_sum_on_import():
    rng = np.random.default_rng(0)
    sd = {"weight_ih_l0": rng.normal(size=(4 * H, D)), "weight_hh_l0": rng.normal(size=(4 * H, H)),
          "bias_ih_l0": rng.normal(size=4 * H), "bias_hh_l0": rng.normal(size=4 * H)}
    params = from_torch("lstm", sd)
    np.testing.assert_allclose(params["bias"], sd["bias_ih_l0"] + sd["bias_hh_l0"], rtol=1e-15)
    # bias=False modules have no bias keys: zero biases.
    no_bias = from_torch("lstm", {k: v for k, v in sd.items() if k.startswith("weight")})
    np.testing.assert_array_equal(no_bias["bias"], np.zeros(4 * H))
    # A gradient exports to both of PyTorch's biases.
    g = to_torch("lstm", params, gradient=True)
    np.testing.assert_array_equal(g["bias_ih_l0"], params["bias"])
    np.testing.assert_array_equal(g["bias_hh_l0"], params["bias"])


def test_torch_accepts_tensor_like_values_and_prefix(key):
    class FakeTensor:
        """Duck-typed torch.Tensor: detach().cpu().numpy()."""

        def __init__(self, a):
            self.a = a

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.a

    params = _random_params(GRU(hidden_size=H), key)
    sd = {f"enc.rnn.{k}": FakeTensor(v) for k, v in to_torch("gru", params).items()}
    back = from_torch("gru", sd, prefix="enc.rnn.", dtype=np.float64)
    for k in params:
        np.testing.assert_array_equal(back[k], params[k].astype(np.float64), err_msg=k)
        assert back[k].dtype == np.float64


def test_stack_round_trip_and_naming(key):
    cell = LSTM(hidden_size=H)
    model = RecurrentStack([cell, cell], bidirectional=True)
    params = _randomize(jax.eval_shape(model.init, key, jnp.zeros((B, T, D)))["params"], 3)
    sd = stack_to_torch("lstm", params, prefix="rnn.")
    assert sorted(sd) == sorted(f"rnn.{w}_l{k}{r}" for w in ("weight_ih", "weight_hh", "bias_ih",
                                                            "bias_hh")
                                for k in (0, 1) for r in ("", "_reverse"))
    assert sd["rnn.weight_ih_l1_reverse"].shape == (4 * H, 2 * H)  # reads [fwd, bwd]
    back = stack_from_torch("lstm", sd, prefix="rnn.")
    assert jax.tree.structure(back) == jax.tree.structure(params)
    jax.tree.map(np.testing.assert_array_equal, back, params)


def test_carries_round_trip():
    rng = np.random.default_rng(1)
    h, c = rng.normal(size=(4, B, H)), rng.normal(size=(4, B, H))
    carries = carries_from_torch(h, c, bidirectional=True)
    assert len(carries) == 2 and isinstance(carries[1][0], LSTMCarry)
    np.testing.assert_array_equal(carries[1][1].h, h[3])  # layer 1, backward = row 1*2+1
    h2, c2 = carries_to_torch(carries)
    np.testing.assert_array_equal(h2, h)
    np.testing.assert_array_equal(c2, c)
    single = carries_from_torch(h[:1])
    assert isinstance(single[0], HiddenCarry)
    assert carries_to_torch(single)[1] is None


@pytest.mark.parametrize("cell", KERAS_CELLS,
                         ids=lambda c: f"{c.registered_name}{getattr(c, 'reset_after', '')}")
def test_keras_round_trip_is_exact(cell, key):
    params = _random_params(cell, key)
    weights = to_keras(cell, params)
    back = from_keras(cell, weights)
    assert set(back) == set(params)
    for k in params:
        np.testing.assert_array_equal(back[k], params[k], err_msg=k)


def test_keras_gru_gate_order_and_bias_rows():
    """Each of our gate blocks filled with its index: Keras' blocks read z, r, h = 1, 0, 2."""
    blocks = np.repeat(np.arange(3.0), H)  # r r r ... z z z ... n n n
    params = {"kernel": np.tile(blocks, (D, 1)), "recurrent_kernel": np.tile(blocks, (H, 1)),
              "bias": blocks, "recurrent_bias": blocks + 10.0}
    kernel, recurrent, bias = to_keras("gru", params)
    expected = np.repeat([1.0, 0.0, 2.0], H)
    np.testing.assert_array_equal(kernel[0], expected)
    np.testing.assert_array_equal(recurrent[0], expected)
    np.testing.assert_array_equal(bias, np.stack([expected, expected + 10.0]))


# ---- Keras' equations, Keras' layout ------------------------------------------------------
def keras_reference(name, weights, x, reset_after=True):
    """Keras' LSTM / GRU / SimpleRNN / PeepholeLSTMCell over time, zero initial state, from
    ``get_weights()`` arrays (transcribed from Keras' cell ``call`` methods)."""
    kernel, rec, bias = weights[:3]
    u = rec.shape[0]
    h = np.zeros((x.shape[0], u))
    c = np.zeros_like(h)
    ys = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        if name in ("lstm", "peephole"):
            z0, z1, z2, z3 = np.split(xt @ kernel + h @ rec + bias, 4, axis=-1)
            if name == "peephole":
                p_i, p_f, p_o = weights[3:]
                i, f = _sigmoid(z0 + p_i * c, np), _sigmoid(z1 + p_f * c, np)
                c = f * c + i * np.tanh(z2)
                o = _sigmoid(z3 + p_o * c, np)
            else:
                i, f, o = _sigmoid(z0, np), _sigmoid(z1, np), _sigmoid(z3, np)
                c = f * c + i * np.tanh(z2)
            h = o * np.tanh(c)
        elif name == "gru":
            b_in, b_rec = (bias[0], bias[1]) if reset_after else (bias, np.zeros_like(bias))
            x_z, x_r, x_h = np.split(xt @ kernel + b_in, 3, axis=-1)
            if reset_after:
                m_z, m_r, m_h = np.split(h @ rec + b_rec, 3, axis=-1)
                z, r = _sigmoid(x_z + m_z, np), _sigmoid(x_r + m_r, np)
                hh = np.tanh(x_h + r * m_h)
            else:
                z = _sigmoid(x_z + h @ rec[:, :u], np)
                r = _sigmoid(x_r + h @ rec[:, u:2 * u], np)
                hh = np.tanh(x_h + (r * h) @ rec[:, 2 * u:])
            h = z * h + (1.0 - z) * hh
        else:
            h = np.tanh(xt @ kernel + bias + h @ rec)
        ys.append(h)
    return np.stack(ys, axis=1)


@pytest.mark.parametrize("cell", KERAS_CELLS,
                         ids=lambda c: f"{c.registered_name}{getattr(c, 'reset_after', '')}")
def test_matches_keras_reference_equations(cell, key):
    rng = np.random.default_rng(2)
    params = {k: 0.5 * v for k, v in _random_params(cell, key).items()}
    weights = [w.astype(np.float64) for w in to_keras(cell, params)]
    x = rng.standard_normal((B, T, D))
    expected = keras_reference(cell.registered_name, weights, x,
                               reset_after=getattr(cell, "reset_after", True))
    got, _ = Recurrent(cell).apply({"params": {"cell": from_keras(cell, weights,
                                                                   dtype=np.float32)}},
                                   jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


# ---- errors -------------------------------------------------------------------------------
def test_errors_name_the_problem(key):
    lstm = _random_params(LSTM(hidden_size=H), key)
    with pytest.raises(ValueError, match="'peephole' has no PyTorch counterpart"):
        to_torch("peephole", _random_params(PeepholeLSTM(hidden_size=H), key))
    # one list per framework, the same whichever way the cell is unknown to it
    torch_cells = r"PyTorch converts \['gru', 'lstm', 'rnn'\]"
    with pytest.raises(ValueError, match="'transformer' has no PyTorch counterpart; "
                                         + torch_cells):
        to_torch("transformer", lstm)
    with pytest.raises(ValueError, match="'peephole' has no PyTorch counterpart; " + torch_cells):
        to_torch("peephole", lstm)
    with pytest.raises(ValueError, match=r"'transformer' has no Keras counterpart; Keras "
                                         r"converts \['gru', 'lstm', 'peephole', 'rnn'\]"):
        to_keras("transformer", lstm)
    with pytest.raises(ValueError, match=r"pass params\['cell'\]"):
        to_torch("lstm", {"cell": lstm})
    with pytest.raises(ValueError, match=r"kernel must be \[D, 4H\].*\(4, 15\)"):
        to_torch("lstm", {**lstm, "kernel": np.zeros((D, 15), np.float32)})
    with pytest.raises(ValueError, match="reset_after=True"):
        to_torch(GRU(hidden_size=H, reset_after=False),
                 _random_params(GRU(hidden_size=H, reset_after=False), key))
    with pytest.raises(ValueError, match=r"computes \(activation, recurrent_activation\)"):
        to_torch(LSTM(hidden_size=H, activation="relu"), lstm)
    with pytest.raises(ValueError, match="hidden_size=6"):
        to_torch(LSTM(hidden_size=6), lstm)
    sd = to_torch("lstm", lstm)
    with pytest.raises(ValueError, match=r"no \['weight_ih_l1', 'weight_hh_l1'\]"):
        from_torch("lstm", sd, layer=1)
    with pytest.raises(ValueError, match=r"weight_ih_l0 must be \[3H, D\].*\(20, 4\)"):
        from_torch("gru", sd)
    with pytest.raises(ValueError, match="both bias_ih_l0 and bias_hh_l0"):
        from_torch("lstm", {k: v for k, v in sd.items() if k != "bias_hh_l0"})
    with pytest.raises(ValueError, match="'weight_hr_l0' is not a recurrent weight"):
        stack_from_torch("lstm", {**sd, "weight_hr_l0": np.zeros((H, H))})
    with pytest.raises(ValueError, match="reverse direction for every layer"):
        stack_from_torch("lstm", {**sd, **to_torch("lstm", lstm, layer=1),
                                  **to_torch("lstm", lstm, layer=1, reverse=True)})
    wide = _random_params(LSTM(hidden_size=H + 1), key)
    with pytest.raises(ValueError, match=r"one hidden_size for all layers.*\[5, 6\]"):
        stack_to_torch("lstm", {"layer_0": {"cell": lstm}, "layer_1": {"cell": wide}})
    with pytest.raises(ValueError, match="no learned initial carry"):
        stack_to_torch("lstm", {"layer_0": {"cell": lstm, "initial_carry": {}}})
    with pytest.raises(ValueError, match=r"get_weights\(\).*got 2 arrays"):
        from_keras("lstm", to_keras("lstm", lstm)[:2])
    with pytest.raises(ValueError, match=r"bias must be \[2, 3H\]"):
        from_keras("gru", [np.zeros((D, 3 * H)), np.zeros((H, 3 * H)), np.zeros((3, 3 * H))])
    # the message names the whole [2, 3H] bias it was given, not half of it
    with pytest.raises(ValueError, match=rf"bias must be \[2, 3H\] = \(2, {3 * H}\) .*got "
                                         rf"\(2, {3 * H - 1}\)"):
        from_keras("gru", [np.zeros((D, 3 * H)), np.zeros((H, 3 * H)),
                           np.zeros((2, 3 * H - 1))])
    # a negative layer number and an integer dtype (it turned every weight into 0)
    with pytest.raises(ValueError, match=r"layer must be an int >= 0 .*got -1"):
        to_torch("lstm", lstm, layer=-1)
    with pytest.raises(ValueError, match=r"layer must be an int >= 0"):
        from_torch("lstm", sd, layer=-1)
    for convert in (lambda: from_torch("lstm", sd, dtype=np.int32),
                    lambda: stack_from_torch("lstm", sd, dtype=np.int32),
                    lambda: from_keras("lstm", to_keras("lstm", lstm), dtype="int32")):
        with pytest.raises(TypeError, match=r"dtype must be a floating-point type .*got int32"):
            convert()
